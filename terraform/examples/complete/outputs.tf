output "delivery_stream_name" {
  description = "Name of the delivery stream (the front door's stream)."
  value       = module.firehose_newrelic.delivery_stream_name
}

output "irsa_role_arn" {
  description = "Role ARN for the Helm chart's serviceAccount.roleArn (annotation eks.amazonaws.com/role-arn)."
  value       = module.firehose_newrelic.irsa_role_arn
}

output "backup_bucket_name" {
  description = "Bucket holding records that did not reach New Relic."
  value       = module.firehose_newrelic.backup_bucket_name
}

output "alarm_arns" {
  description = "ARNs of the CloudWatch alarms by name."
  value       = module.firehose_newrelic.alarm_arns
}
