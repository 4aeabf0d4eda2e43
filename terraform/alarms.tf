#########
# Alarms
#########

# What says "records are not reaching New Relic" before anyone opens New Relic: data in the
# backup bucket, failing or late HTTP delivery, failing transforms, and producers over the quota.
# Thresholds are inputs; missing data (no traffic) never alarms.
# https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html

locals {
  alarm_actions = local.sns_topic_arn == null ? [] : [local.sns_topic_arn]

  stream_dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.this.name }
  lambda_dimensions = { FunctionName = aws_lambda_function.this.function_name }

  # Single-metric alarms. Ratios and freshness must breach `alarm_evaluation_periods` periods in a
  # row (Firehose retries, so one bad period is not loss); counts alarm on the first period.
  metric_alarms = {
    http_endpoint_success = {
      description = "Less than ${var.alarm_http_success_min * 100}% of requests to New Relic succeed: check the license key, the URL and New Relic's status. Failed batches are retried for ${var.retry_duration_seconds} s, then backed up."
      namespace   = "AWS/Firehose"
      metric      = "DeliveryToHttpEndpoint.Success"
      statistic   = "Average"
      operator    = "LessThanThreshold"
      threshold   = var.alarm_http_success_min
      periods     = var.alarm_evaluation_periods
      dimensions  = local.stream_dimensions
    }
    http_endpoint_data_freshness = {
      description = "The oldest record not yet delivered to New Relic is older than ${var.alarm_data_freshness_max_seconds} s: delivery is stuck or retrying."
      namespace   = "AWS/Firehose"
      metric      = "DeliveryToHttpEndpoint.DataFreshness"
      statistic   = "Maximum"
      operator    = "GreaterThanThreshold"
      threshold   = var.alarm_data_freshness_max_seconds
      periods     = var.alarm_evaluation_periods
      dimensions  = local.stream_dimensions
    }
    processing_success = {
      description = "Less than ${var.alarm_processing_success_min * 100}% of transform invocations succeed: after ${var.processor_number_of_retries} retries whole batches go to processing-failed/."
      namespace   = "AWS/Firehose"
      metric      = "ExecuteProcessing.Success"
      statistic   = "Average"
      operator    = "LessThanThreshold"
      threshold   = var.alarm_processing_success_min
      periods     = var.alarm_evaluation_periods
      dimensions  = local.stream_dimensions
    }
    lambda_errors = {
      description = "The transform function ${local.function_name} reports errors (crashes, timeouts, out of memory)."
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      statistic   = "Sum"
      operator    = "GreaterThanThreshold"
      threshold   = var.alarm_lambda_errors_threshold
      periods     = 1
      dimensions  = local.lambda_dimensions
    }
    lambda_throttles = {
      description = "The transform function ${local.function_name} is throttled: check the account's concurrency limit."
      namespace   = "AWS/Lambda"
      metric      = "Throttles"
      statistic   = "Sum"
      operator    = "GreaterThanThreshold"
      threshold   = var.alarm_lambda_throttles_threshold
      periods     = 1
      dimensions  = local.lambda_dimensions
    }
    throttled_records = {
      description = "Firehose throttles records from producers: the front door is over the stream's quota (records/s, requests/s or MiB/s) and must retry."
      namespace   = "AWS/Firehose"
      metric      = "ThrottledRecords"
      statistic   = "Sum"
      operator    = "GreaterThanThreshold"
      threshold   = var.alarm_throttled_records_threshold
      periods     = 1
      dimensions  = local.stream_dimensions
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = var.create_alarms ? local.metric_alarms : {}

  alarm_name          = "${var.name}-${replace(each.key, "_", "-")}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  comparison_operator = each.value.operator
  threshold           = each.value.threshold
  evaluation_periods  = each.value.periods
  period              = var.alarm_period_seconds
  dimensions          = each.value.dimensions
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = var.tags
}

# The seed's alarm: records written to the backup bucket. AWS documents BackupToS3.Records for
# backups and the seed watched DeliveryToS3.Records; which one an HTTP-endpoint stream emits is not
# documented, so the alarm adds both (each filled with 0 when absent).
resource "aws_cloudwatch_metric_alarm" "backup_records" {
  count = var.create_alarms ? 1 : 0

  alarm_name          = "${var.name}-backup-records"
  alarm_description   = "More than ${var.alarm_backup_records_threshold} records went to the backup bucket in ${var.alarm_period_seconds} s: they did not reach New Relic. Replay them from ${var.backup_error_output_prefix}."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_backup_records_threshold
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"

  metric_query {
    id          = "backed_up"
    expression  = "FILL(backup, 0) + FILL(delivery, 0)"
    label       = "Records written to the backup bucket"
    return_data = true
  }

  metric_query {
    id = "backup"
    metric {
      namespace   = "AWS/Firehose"
      metric_name = "BackupToS3.Records"
      stat        = "Sum"
      period      = var.alarm_period_seconds
      dimensions  = local.stream_dimensions
    }
  }

  metric_query {
    id = "delivery"
    metric {
      namespace   = "AWS/Firehose"
      metric_name = "DeliveryToS3.Records"
      stat        = "Sum"
      period      = var.alarm_period_seconds
      dimensions  = local.stream_dimensions
    }
  }

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = var.tags
}

###############
# Notification
###############

resource "aws_sns_topic" "alarms" {
  # Not encrypted with a KMS key: CloudWatch alarms cannot publish to a topic encrypted with the
  # AWS-managed aws/sns key, and a customer key needs a key policy allowing CloudWatch. Pass
  # alarm_sns_topic_arn to use such a topic. Alarm texts hold no record data.
  count = var.create_sns_topic && var.alarm_sns_topic_arn == null ? 1 : 0

  name = "${var.name}-alarms"
  tags = var.tags
}
