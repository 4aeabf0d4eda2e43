#########
# Alarms
#########

# What says "records are not reaching New Relic" before anyone opens New Relic: data in the
# backup bucket, errors in the stream's error log, failing or late HTTP delivery, failing
# transforms, failing writes to the backup bucket, and producers near or over the quota.
# Thresholds are inputs; missing data (no traffic) never alarms.
# https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html
# https://docs.aws.amazon.com/firehose/latest/dev/firehose-cloudwatch-metrics-best-practices.html

locals {
  alarm_actions = local.sns_topic_arn == null ? [] : [local.sns_topic_arn]

  stream_dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.this.name }
  lambda_dimensions = { FunctionName = aws_lambda_function.this.function_name }

  # Metric filters on the stream's error log group (/aws/kinesisfirehose/<name>). Firehose writes
  # one JSON event per error, with an `errorCode` such as `HttpEndpoint.DestinationException` or
  # `Lambda.FunctionError` (HttpEndpointDelivery stream: delivery and transform errors) or
  # `S3.AccessDenied` / `S3.KMS.NotFoundException` (BackupDelivery stream: writes to the bucket).
  # These do not depend on which S3 metrics an HTTP-endpoint stream emits (unconfirmed, see the
  # README), so they are the backstop for the backup-records and S3-success alarms.
  # https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-logs.html
  # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/matching-terms-json-log-events.html
  #
  # The third filter reads the transform's own log: a record the function answers ProcessingFailed
  # (invalid base64 or UTF-8, gzip data) leaves a successful
  # invocation, so neither ExecuteProcessing.Success nor Lambda Errors moves, and Firehose logs no
  # error for it (AWS: log such failures from the function). The function writes one flattened JSON
  # line per invocation, `"message":"invocation done"` with a `failed` count
  # (services/transform/src/telemetry.rs); the metric sums those counts.
  error_log_metric_namespace = "FirehoseErrorLogs/${var.name}"
  error_log_filters = {
    delivery_error_logs = {
      metric    = "DeliveryErrors"
      log_group = aws_cloudwatch_log_group.firehose.name
      # Every code but the backup's (S3.*, counted below): besides HttpEndpoint.* and Lambda.*,
      # a license-key secret Firehose cannot read (access denied, deleted, not the documented
      # JSON, its KMS key) fails every batch under a code of its own, whose spelling AWS does not
      # document; an allow-list would miss it.
      pattern = "{ ($.errorCode = \"*\") && ($.errorCode != \"S3.*\") }"
      value   = "1"
      # Firehose logs every failed attempt, and retries; error counts cannot tell a blip the
      # next attempt got past from a batch that ran out of retries and went to the backup. This
      # is the backstop for records that missed New Relic (with AllData, or if the stream emits
      # no S3 metrics, backup_records sees nothing), so it pages on the first period by default;
      # `alarm_delivery_error_evaluation_periods` trades that for fewer pages on blips.
      periods = var.alarm_delivery_error_evaluation_periods
      text    = "New Relic rejected or timed out requests, the license-key secret could not be read, or the transform failed (any errorCode but S3.* in ${local.firehose_log_group_name}: HttpEndpoint.*, Lambda.*, ...). Retried for ${var.retry_duration_seconds} s, then backed up to s3://${aws_s3_bucket.backup.id}/${local.backup_error_output_prefix_fixed} (except a 413, which AWS's 2023 spec says is not backed up: see the module README); replay from there."
    }
    backup_error_logs = {
      metric    = "BackupErrors"
      log_group = aws_cloudwatch_log_group.firehose.name
      pattern   = "{ $.errorCode = \"S3.*\" }"
      value     = "1"
      # The backup is where nothing-lost ends: a failing write pages at once.
      periods = 1
      text    = "Firehose cannot write to the backup bucket (S3.* in ${local.firehose_log_group_name}): check the bucket policy, the role and the KMS key. It retries for up to 24 h, then the data is lost."
    }
    transform_failed_records = {
      metric    = "TransformFailedRecords"
      log_group = aws_cloudwatch_log_group.lambda.name
      pattern   = "{ ($.message = \"invocation done\") && ($.failed > 0) }"
      value     = "$.failed"
      # Those records already missed New Relic.
      periods = 1
      text    = "The transform answered ProcessingFailed for records (invalid base64 or UTF-8, or gzip-compressed data; the transform's FirehoseTransform metrics split them by reason): they went to s3://${aws_s3_bucket.backup.id}/${local.backup_error_output_prefix_fixed} (processing-failed) without reaching New Relic; replay them with --error-type processing-failed once the cause is fixed. ${local.lambda_log_group_name} names record ids and reasons."
    }
  }

  # Single-metric alarms. Ratios, and the Lambda's own error count (Firehose retries failed
  # invocations, and a batch that runs out of retries logs Lambda.* errors that
  # delivery_error_logs counts), must breach `alarm_evaluation_periods` periods in a row (one
  # bad period is not loss); counts of what already missed New Relic or may have alarm on the
  # first period.
  metric_alarms = merge(
    {
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
      # AWS: alarm when DataFreshness exceeds the buffering limit (at most 15 minutes).
      http_endpoint_data_freshness = {
        description = "The oldest record not yet delivered to New Relic is older than ${local.alarm_data_freshness_max_seconds} s: delivery is stuck or retrying."
        namespace   = "AWS/Firehose"
        metric      = "DeliveryToHttpEndpoint.DataFreshness"
        statistic   = "Maximum"
        operator    = "GreaterThanThreshold"
        threshold   = local.alarm_data_freshness_max_seconds
        periods     = var.alarm_data_freshness_evaluation_periods
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
        # Firehose retries a failed invocation (processor_number_of_retries): one timeout that
        # the retry gets past loses nothing. Errors that persist page; a batch that runs out of
        # retries also leaves Lambda.* errors in the stream's log (delivery_error_logs).
        periods    = var.alarm_evaluation_periods
        dimensions = local.lambda_dimensions
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
      # Writes to the backup bucket. AWS documents DeliveryToS3.Success ("S3 put commands that
      # succeeded over all") as emitted whenever S3 backup is enabled for Splunk and always for
      # OpenSearch, and BackupToS3.Success for backups of all documents; it lists no S3 metric for
      # HTTP-endpoint streams. Both are watched (Minimum < 1: a put failed in the period); if the
      # stream emits neither, both stay OK (missing data) and backup_error_logs is the signal.
      s3_delivery_success = {
        description = "Writes to the backup bucket fail (DeliveryToS3.Success < 1): failed records cannot be backed up; Firehose retries for up to 24 h. See the BackupDelivery log stream."
        namespace   = "AWS/Firehose"
        metric      = "DeliveryToS3.Success"
        statistic   = "Minimum"
        operator    = "LessThanThreshold"
        threshold   = 1
        periods     = var.alarm_evaluation_periods
        dimensions  = local.stream_dimensions
      }
      s3_backup_success = {
        description = "Writes to the backup bucket fail (BackupToS3.Success < 1): records cannot be backed up; Firehose retries for up to 24 h. See the BackupDelivery log stream."
        namespace   = "AWS/Firehose"
        metric      = "BackupToS3.Success"
        statistic   = "Minimum"
        operator    = "LessThanThreshold"
        threshold   = 1
        periods     = var.alarm_evaluation_periods
        dimensions  = local.stream_dimensions
      }
    },
    {
      for k, f in local.error_log_filters : k => {
        description = f.text
        namespace   = local.error_log_metric_namespace
        metric      = f.metric
        statistic   = "Sum"
        operator    = "GreaterThanThreshold"
        threshold   = var.alarm_error_log_events_threshold
        periods     = f.periods
        dimensions  = {}
      }
    },
  )

  # Early warning before ThrottledRecords, as AWS recommends: incoming per second (Sum per period
  # divided by the period) approaching the matching *PerSecondLimit metric.
  quota_alarms = {
    bytes = {
      incoming = "IncomingBytes"
      limit    = "BytesPerSecondLimit"
    }
    records = {
      incoming = "IncomingRecords"
      limit    = "RecordsPerSecondLimit"
    }
    put_requests = {
      incoming = "IncomingPutRequests"
      limit    = "PutRequestsPerSecondLimit"
    }
  }

  # Customer-managed stream key: AWS documents these SSE metrics, counting the KMS exceptions
  # Firehose hits for the stream. Any of them means PutRecordBatch calls are being rejected.
  stream_kms_metrics = {
    access_denied = "KMSKeyAccessDenied"
    disabled      = "KMSKeyDisabled"
    invalid_state = "KMSKeyInvalidState"
    not_found     = "KMSKeyNotFound"
  }
  stream_kms_alarm = var.create_alarms && local.stream_cmk
}

resource "aws_cloudwatch_log_metric_filter" "errors" {
  for_each = var.create_alarms ? local.error_log_filters : {}

  name           = "${var.name}-${replace(each.key, "_", "-")}"
  log_group_name = each.value.log_group
  pattern        = each.value.pattern

  metric_transformation {
    namespace = local.error_log_metric_namespace
    name      = each.value.metric
    value     = each.value.value
    unit      = "Count"
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
  dimensions          = length(each.value.dimensions) > 0 ? each.value.dimensions : null
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = var.tags

  # The log-based alarms watch metrics that exist only once their filter does.
  depends_on = [aws_cloudwatch_log_metric_filter.errors]
}

# The seed's alarm: records written to the backup bucket. AWS documents BackupToS3.Records for
# backups and the seed watched DeliveryToS3.Records; which one an HTTP-endpoint stream emits is not
# documented, so the alarm adds both (each filled with 0 when absent).
#
# Only with FailedDataOnly: with AllData Firehose backs up every source record, so this count is
# the traffic, not the failures, and a threshold-0 alarm would fire in every period with traffic.
# With AllData, records that missed New Relic show up in delivery_error_logs, http_endpoint_success
# and http_endpoint_data_freshness instead.
# https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointDestinationConfiguration.html
resource "aws_cloudwatch_metric_alarm" "backup_records" {
  count = var.create_alarms && var.s3_backup_mode == "FailedDataOnly" ? 1 : 0

  alarm_name          = "${var.name}-backup-records"
  alarm_description   = "More than ${var.alarm_backup_records_threshold} records went to the backup bucket in ${var.alarm_period_seconds} s: they did not reach New Relic. Replay them: replay s3://${aws_s3_bucket.backup.id}/${local.backup_error_output_prefix_fixed} --error-type http-endpoint-failed (or processing-failed) --to-stream ${aws_kinesis_firehose_delivery_stream.this.name} --checkpoint <file> (services/replay)."
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

# Quota early warning: one alarm per Direct PUT quota (bytes, records, put requests per second).
resource "aws_cloudwatch_metric_alarm" "quota" {
  for_each = var.create_alarms ? local.quota_alarms : {}

  alarm_name          = "${var.name}-quota-${replace(each.key, "_", "-")}"
  alarm_description   = "${each.value.incoming} per second is above ${var.alarm_quota_utilization_max * 100}% of ${each.value.limit}: the front door will soon be throttled. Request a quota increase."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_quota_utilization_max
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"

  metric_query {
    id          = "utilization"
    expression  = "(incoming / ${var.alarm_period_seconds}) / limit"
    label       = "${each.value.incoming} per second / ${each.value.limit}"
    return_data = true
  }

  metric_query {
    id = "incoming"
    metric {
      namespace   = "AWS/Firehose"
      metric_name = each.value.incoming
      stat        = "Sum"
      period      = var.alarm_period_seconds
      dimensions  = local.stream_dimensions
    }
  }

  metric_query {
    id = "limit"
    metric {
      namespace   = "AWS/Firehose"
      metric_name = each.value.limit
      stat        = "Minimum"
      period      = var.alarm_period_seconds
      dimensions  = local.stream_dimensions
    }
  }

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = var.tags
}

# SSE with a customer-managed key: KMS refusing the key rejects records at the front door.
resource "aws_cloudwatch_metric_alarm" "stream_kms_errors" {
  count = local.stream_kms_alarm ? 1 : 0

  alarm_name          = "${var.name}-stream-kms-errors"
  alarm_description   = "Firehose hits KMS errors on the stream key ${coalesce(var.stream_kms_key_arn, "-")} (access denied, disabled, invalid state, not found): records cannot be encrypted, so puts fail. Check the key policy and the key's state."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"

  metric_query {
    id          = "kms_errors"
    expression  = join(" + ", [for k in keys(local.stream_kms_metrics) : "FILL(${k}, 0)"])
    label       = "KMS errors on the stream key"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = local.stream_kms_metrics
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/Firehose"
        metric_name = metric_query.value
        stat        = "Sum"
        period      = var.alarm_period_seconds
        dimensions  = local.stream_dimensions
      }
    }
  }

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions
  tags          = var.tags
}

# The default notifies nobody (no topic is created or passed), which stays the default so that
# applying the module never creates an SNS topic unasked. This check makes it visible: a warning
# at plan and apply, not an error.
check "alarm_notifications" {
  assert {
    condition     = !var.create_alarms || var.alarm_sns_topic_arn != null || var.create_sns_topic
    error_message = "The CloudWatch alarms notify nobody: create_alarms is true but neither alarm_sns_topic_arn nor create_sns_topic is set. Set one of them (or create_alarms = false)."
  }
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
