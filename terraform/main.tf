# Firehose -> New Relic with S3 backup, the Rust transform, IAM (IRSA) and alarms.
#
# One file per concern: firehose.tf (the delivery stream), lambda.tf (the transform), s3.tf (the
# backup bucket), iam.tf (the Firehose and Lambda roles), irsa.tf (the front door's role),
# alarms.tf (CloudWatch alarms, SNS). This file holds what they share: the account/region lookups
# and the derived names and values.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  region = data.aws_region.current.name
  # Service endpoints' domain: `amazonaws.com`, `amazonaws.com.cn` in China. The KMS ViaService
  # conditions name endpoints, so they must not assume the first (they would never match).
  dns_suffix = data.aws_partition.current.dns_suffix
  account_id = data.aws_caller_identity.current.account_id

  # New Relic's Firehose endpoints for logs, as New Relic documents them. The Log API
  # (log-api.newrelic.com/log/v1) is a different protocol: see README.md.
  # https://docs.newrelic.com/docs/logs/forward-logs/stream-logs-using-kinesis-data-firehose/
  newrelic_firehose_urls = {
    US = "https://aws-api.newrelic.com/firehose/v1"
    EU = "https://aws-api.eu.newrelic.com/firehose/v1"
  }
  endpoint_url = coalesce(var.newrelic_endpoint_url, local.newrelic_firehose_urls[var.newrelic_region])

  use_secrets_manager = var.newrelic_license_key_secret_arn != null
  # A customer-managed key for the stream (a validation allows one only with stream encryption).
  stream_cmk = var.stream_kms_key_arn != null
  # The shape of a KMS key ARN, for the validations of the three key inputs.
  kms_key_arn_pattern = "^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$"

  function_name = "${var.name}-transform"

  # Bucket names are lowercase, without '_'; a bucket_prefix is at most 37 characters.
  bucket_prefix = "${substr(replace(lower(var.name), "_", "-"), 0, 29)}-backup-"

  firehose_log_group_name = "/aws/kinesisfirehose/${var.name}"
  # Conventional stream names (what the console creates): one for delivery to the endpoint, one
  # for writes to the backup bucket. Both are pre-created so Firehose can only write to them.
  firehose_log_streams = {
    http_endpoint = "HttpEndpointDelivery"
    backup        = "BackupDelivery"
  }

  lambda_log_group_name = "/aws/lambda/${local.function_name}"

  # The freshness alarm's threshold: as set, or what a healthy record can wait (transform buffer,
  # endpoint buffer, retries) plus 300 s for the waits on New Relic's answers, which the retry
  # duration does not count (up to the acknowledgement timeout per attempt); at least 600 s.
  alarm_data_freshness_max_seconds = coalesce(
    var.alarm_data_freshness_max_seconds,
    max(600, var.processor_buffer_interval_seconds + var.buffering_interval_seconds + var.retry_duration_seconds + 300),
  )

  # The Lambda processor's parameters. Firehose's defaults (NumberOfRetries 3, BufferSizeInMBs 1,
  # BufferIntervalInSeconds 60, RoleArn = the stream's role) are deliberately left out when the
  # input equals them: the provider drops parameters equal to these defaults when it reads the
  # stream back (`defaultProcessorParameters` in internal/service/firehose/delivery_stream.go; the
  # note under `parameters` in the resource docs), so declaring them makes every plan show a diff.
  # Omitted, Firehose applies exactly these values, and the plan stays clean. See README.md,
  # "Why NumberOfRetries = 3 is not written out".
  processor_defaults = {
    NumberOfRetries         = "3"
    BufferSizeInMBs         = "1"
    BufferIntervalInSeconds = "60"
  }
  processor_inputs = {
    NumberOfRetries         = tostring(var.processor_number_of_retries)
    BufferSizeInMBs         = tostring(var.processor_buffer_size_mb)
    BufferIntervalInSeconds = tostring(var.processor_buffer_interval_seconds)
  }
  processor_parameters = merge(
    # The `live` alias (lambda.tf): a qualified ARN that follows each published version, so
    # Firehose never runs $LATEST and its role is granted this one ARN.
    { LambdaArn = aws_lambda_alias.this.arn },
    { for k, v in local.processor_inputs : k => v if v != local.processor_defaults[k] },
  )

  sns_topic_arn = var.alarm_sns_topic_arn != null ? var.alarm_sns_topic_arn : (var.create_sns_topic ? aws_sns_topic.alarms[0].arn : null)
}
