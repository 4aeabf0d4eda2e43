##################
# Delivery stream
##################

output "delivery_stream_name" {
  description = "Name of the delivery stream: the Helm chart's `config.deliveryStream`."
  value       = aws_kinesis_firehose_delivery_stream.this.name
}

output "delivery_stream_arn" {
  description = "ARN of the delivery stream."
  value       = aws_kinesis_firehose_delivery_stream.this.arn
}

output "region" {
  description = "Region of the delivery stream: the Helm chart's `config.region`."
  value       = local.region
}

output "endpoint_url" {
  description = "The HTTP endpoint the stream delivers to. Sensitive: the API model marks `Url` sensitive, and a custom endpoint may carry a token in its query string (`terraform output -raw endpoint_url` shows it)."
  value       = local.endpoint_url
  sensitive   = true
}

output "firehose_role_arn" {
  description = "ARN of the role Firehose assumes (transform, backup bucket, logs, license key)."
  value       = aws_iam_role.firehose.arn
}

output "firehose_log_group_name" {
  description = "CloudWatch log group with the stream's delivery errors."
  value       = aws_cloudwatch_log_group.firehose.name
}

################
# Backup bucket
################

output "backup_bucket_name" {
  description = "Name of the backup bucket (failed records; all source records with AllData)."
  value       = aws_s3_bucket.backup.id
}

output "backup_bucket_arn" {
  description = "ARN of the backup bucket."
  value       = aws_s3_bucket.backup.arn
}

output "replay_source" {
  description = "Where the replay tool reads failed records: `s3://<bucket>/<fixed start of backup_error_output_prefix>`, e.g. `replay <this> --error-type http-endpoint-failed --to-stream <delivery_stream_name> --checkpoint <file>` (services/replay)."
  value       = "s3://${aws_s3_bucket.backup.id}/${local.backup_error_output_prefix_fixed}"
}

output "replay_policy_json" {
  description = "IAM policy (JSON) for whoever runs the replay tool: list and read the backup bucket (and decrypt it with `backup_kms_key_arn`), and put records into the stream as the front door does. Attach it to the role replay runs as."
  value       = local.replay_policy
}

output "backup_error_output_prefix" {
  description = "Key prefix of failed records in the backup bucket (`!{firehose:error-output-type}` becomes `http-endpoint-failed` or `processing-failed`): where the replay tool reads."
  value       = var.backup_error_output_prefix
}

############
# Transform
############

output "lambda_function_arn" {
  description = "ARN of the transform function."
  value       = aws_lambda_function.this.arn
}

output "lambda_function_name" {
  description = "Name of the transform function."
  value       = aws_lambda_function.this.function_name
}

output "lambda_alias_arn" {
  description = "Qualified ARN of the transform's `live` alias: what Firehose invokes (the latest published version)."
  value       = aws_lambda_alias.this.arn
}

output "lambda_role_arn" {
  description = "ARN of the transform function's execution role."
  value       = aws_iam_role.lambda.arn
}

#######
# IRSA
#######

output "irsa_role_arn" {
  description = "ARN of the front door's IRSA role: the Helm chart's `serviceAccount.roleArn` (annotation `eks.amazonaws.com/role-arn`). Empty when `create_irsa_role` is false."
  value       = try(aws_iam_role.irsa[0].arn, "")
}

#########
# Alarms
#########

output "alarm_arns" {
  description = "ARNs of the CloudWatch alarms by name: `http_endpoint_success`, `http_endpoint_data_freshness`, `processing_success`, `lambda_errors`, `lambda_throttles`, `throttled_records`, `s3_delivery_success`, `s3_backup_success`, `delivery_error_logs`, `backup_error_logs`, `transform_failed_records`, `quota_bytes`, `quota_records`, `quota_put_requests`, plus `backup_records` (FailedDataOnly only) and `stream_kms_errors` (with `stream_kms_key_arn` only). Empty when `create_alarms` is false."
  value = merge(
    { for k, a in aws_cloudwatch_metric_alarm.this : k => a.arn },
    { for a in aws_cloudwatch_metric_alarm.backup_records : "backup_records" => a.arn },
    { for k, a in aws_cloudwatch_metric_alarm.quota : "quota_${k}" => a.arn },
    { for a in aws_cloudwatch_metric_alarm.stream_kms_errors : "stream_kms_errors" => a.arn },
  )
}

output "alarm_sns_topic_arn" {
  description = "SNS topic the alarms notify, or null when they notify nothing."
  value       = local.sns_topic_arn
}
