# The alarms watch what the issue lists, with the thresholds given, and notify the SNS topic.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name                            = "events"
  lambda_zip_path                 = "tests/fixtures/bootstrap.zip"
  newrelic_license_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:newrelic/license-AbCdEf"
  irsa_oidc_provider_arn          = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789"
}

run "every_alarm_watches_its_metric_with_default_thresholds" {
  command = plan

  # By default no topic is created or passed: the alarms notify nobody, which the check
  # "alarm_notifications" reports (a warning in plan/apply, a failure expected here).
  expect_failures = [check.alarm_notifications]

  assert {
    condition = {
      for k, a in aws_cloudwatch_metric_alarm.this : k => [a.namespace, a.metric_name, a.statistic, a.comparison_operator, a.threshold, a.evaluation_periods]
      } == {
      http_endpoint_success        = ["AWS/Firehose", "DeliveryToHttpEndpoint.Success", "Average", "LessThanThreshold", 0.95, 3]
      http_endpoint_data_freshness = ["AWS/Firehose", "DeliveryToHttpEndpoint.DataFreshness", "Maximum", "GreaterThanThreshold", 600, 1]
      processing_success           = ["AWS/Firehose", "ExecuteProcessing.Success", "Average", "LessThanThreshold", 0.99, 3]
      lambda_errors                = ["AWS/Lambda", "Errors", "Sum", "GreaterThanThreshold", 0, 3]
      lambda_throttles             = ["AWS/Lambda", "Throttles", "Sum", "GreaterThanThreshold", 0, 1]
      throttled_records            = ["AWS/Firehose", "ThrottledRecords", "Sum", "GreaterThanThreshold", 0, 1]
      s3_delivery_success          = ["AWS/Firehose", "DeliveryToS3.Success", "Minimum", "LessThanThreshold", 1, 3]
      s3_backup_success            = ["AWS/Firehose", "BackupToS3.Success", "Minimum", "LessThanThreshold", 1, 3]
      delivery_error_logs          = ["FirehoseErrorLogs/events", "DeliveryErrors", "Sum", "GreaterThanThreshold", 0, 1]
      backup_error_logs            = ["FirehoseErrorLogs/events", "BackupErrors", "Sum", "GreaterThanThreshold", 0, 1]
      transform_failed_records     = ["FirehoseErrorLogs/events", "TransformFailedRecords", "Sum", "GreaterThanThreshold", 0, 1]
    }
    error_message = "Each alarm must watch its metric with the documented default threshold."
  }

  assert {
    condition = alltrue([
      for k, a in aws_cloudwatch_metric_alarm.this :
      a.namespace == "AWS/Lambda" ? a.dimensions == tomap({ FunctionName = "events-transform" }) :
      a.namespace == "AWS/Firehose" ? a.dimensions == tomap({ DeliveryStreamName = "events" }) :
      a.dimensions == null
    ])
    error_message = "Firehose alarms must be scoped to the stream, Lambda alarms to the transform; log-metric alarms have no dimensions (their namespace names the stream)."
  }

  assert {
    condition     = alltrue([for a in concat(values(aws_cloudwatch_metric_alarm.this), aws_cloudwatch_metric_alarm.backup_records, values(aws_cloudwatch_metric_alarm.quota)) : a.treat_missing_data == "notBreaching"])
    error_message = "No traffic must not alarm."
  }

  assert {
    condition = alltrue(concat(
      [for a in values(aws_cloudwatch_metric_alarm.this) : a.period == 300],
      [for q in aws_cloudwatch_metric_alarm.backup_records[0].metric_query : q.metric[0].period == 300 if length(q.metric) > 0],
    ))
    error_message = "Periods must default to 5 minutes."
  }

  assert {
    condition     = alltrue([for a in concat(values(aws_cloudwatch_metric_alarm.this), aws_cloudwatch_metric_alarm.backup_records, values(aws_cloudwatch_metric_alarm.quota)) : length(a.alarm_actions) == 0])
    error_message = "Without a topic the alarms notify nothing (the default stays; the check warns)."
  }

  # The seed's alarm: records written to the backup bucket, summed over the two metric names AWS
  # has used for it.
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.backup_records[0].comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.backup_records[0].threshold == 0 &&
      toset([for q in aws_cloudwatch_metric_alarm.backup_records[0].metric_query : q.metric[0].metric_name if length(q.metric) > 0]) == toset(["BackupToS3.Records", "DeliveryToS3.Records"]) &&
      one([for q in aws_cloudwatch_metric_alarm.backup_records[0].metric_query : q.expression if q.return_data == true]) == "FILL(backup, 0) + FILL(delivery, 0)"
    )
    error_message = "The backup alarm must fire on any record written to the backup bucket."
  }

  # No customer-managed stream key, no KMS alarm.
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.stream_kms_errors) == 0
    error_message = "The stream-key KMS alarm exists only with stream_kms_key_arn."
  }
}

run "the_check_holds_with_a_topic" {
  command = plan

  variables {
    alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
  }

  # No expect_failures: a failing check would fail this run.
  assert {
    condition = alltrue([
      for a in concat(values(aws_cloudwatch_metric_alarm.this), aws_cloudwatch_metric_alarm.backup_records, values(aws_cloudwatch_metric_alarm.quota)) :
      a.alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:platform-alerts"])
    ])
    error_message = "Every alarm must notify the given topic."
  }
}

run "the_check_is_quiet_without_alarms" {
  command = plan

  variables {
    create_alarms = false
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.this) == 0
    error_message = "create_alarms = false must create no alarms."
  }
}

run "thresholds_are_inputs_and_alarms_notify_the_created_topic" {
  command = apply

  variables {
    create_sns_topic                        = true
    alarm_http_success_min                  = 0.9
    alarm_data_freshness_max_seconds        = 300
    alarm_data_freshness_evaluation_periods = 2
    alarm_throttled_records_threshold       = 100
    alarm_backup_records_threshold          = 10
    alarm_evaluation_periods                = 2
    alarm_delivery_error_evaluation_periods = 3
    alarm_error_log_events_threshold        = 5
    alarm_quota_utilization_max             = 0.5
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.this["http_endpoint_success"].threshold == 0.9 &&
      aws_cloudwatch_metric_alarm.this["http_endpoint_success"].evaluation_periods == 2 &&
      aws_cloudwatch_metric_alarm.this["http_endpoint_data_freshness"].threshold == 300 &&
      aws_cloudwatch_metric_alarm.this["http_endpoint_data_freshness"].evaluation_periods == 2 &&
      aws_cloudwatch_metric_alarm.this["throttled_records"].threshold == 100 &&
      aws_cloudwatch_metric_alarm.this["s3_delivery_success"].evaluation_periods == 2 &&
      aws_cloudwatch_metric_alarm.this["delivery_error_logs"].threshold == 5 &&
      aws_cloudwatch_metric_alarm.this["delivery_error_logs"].evaluation_periods == 3 &&
      aws_cloudwatch_metric_alarm.this["lambda_errors"].evaluation_periods == 2 &&
      aws_cloudwatch_metric_alarm.this["backup_error_logs"].evaluation_periods == 1 &&
      aws_cloudwatch_metric_alarm.this["transform_failed_records"].evaluation_periods == 1 &&
      aws_cloudwatch_metric_alarm.this["backup_error_logs"].threshold == 5 &&
      aws_cloudwatch_metric_alarm.backup_records[0].threshold == 10 &&
      alltrue([for a in values(aws_cloudwatch_metric_alarm.quota) : a.threshold == 0.5])
    )
    error_message = "Alarm thresholds must follow the inputs."
  }

  assert {
    condition = alltrue([
      for a in concat(values(aws_cloudwatch_metric_alarm.this), aws_cloudwatch_metric_alarm.backup_records, values(aws_cloudwatch_metric_alarm.quota)) :
      a.alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:events-alarms"]) && a.ok_actions == toset(["arn:aws:sns:eu-west-1:123456789012:events-alarms"])
    ])
    error_message = "Every alarm must notify the created topic on alarm and on recovery."
  }

  assert {
    condition = (
      toset(keys(output.alarm_arns)) == toset([
        "http_endpoint_success", "http_endpoint_data_freshness", "processing_success", "lambda_errors",
        "lambda_throttles", "throttled_records", "s3_delivery_success", "s3_backup_success",
        "delivery_error_logs", "backup_error_logs", "transform_failed_records", "backup_records",
        "quota_bytes", "quota_records", "quota_put_requests",
      ]) &&
      output.alarm_sns_topic_arn == "arn:aws:sns:eu-west-1:123456789012:events-alarms"
    )
    error_message = "All alarm ARNs and the topic must be outputs."
  }
}

# With AllData every source record goes to the bucket, so "records written to the backup bucket"
# is the traffic: the seed's alarm (threshold 0) would fire in every period with traffic.
run "all_data_has_no_backup_records_alarm" {
  command = plan

  variables {
    s3_backup_mode      = "AllData"
    alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.backup_records) == 0
    error_message = "With AllData the backup-records alarm must not exist (every record is backed up)."
  }

  assert {
    condition     = contains(keys(aws_cloudwatch_metric_alarm.this), "delivery_error_logs") && contains(keys(aws_cloudwatch_metric_alarm.this), "http_endpoint_success")
    error_message = "With AllData, failed deliveries must still be watched (error logs, HTTP success)."
  }
}

# Delivery and transform errors from the stream's error log, independent of the S3 metrics.
run "error_log_filters_feed_their_alarms" {
  command = apply

  variables {
    alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
  }

  assert {
    condition = {
      for k, f in aws_cloudwatch_log_metric_filter.errors : k => [f.log_group_name, f.pattern, f.metric_transformation[0].namespace, f.metric_transformation[0].name, f.metric_transformation[0].value]
      } == {
      delivery_error_logs      = ["/aws/kinesisfirehose/events", "{ ($.errorCode = \"*\") && ($.errorCode != \"S3.*\") }", "FirehoseErrorLogs/events", "DeliveryErrors", "1"]
      backup_error_logs        = ["/aws/kinesisfirehose/events", "{ $.errorCode = \"S3.*\" }", "FirehoseErrorLogs/events", "BackupErrors", "1"]
      transform_failed_records = ["/aws/lambda/events-transform", "{ ($.message = \"invocation done\") && ($.failed > 0) }", "FirehoseErrorLogs/events", "TransformFailedRecords", "$.failed"]
    }
    error_message = "The error log group must be filtered for every error code but S3.* (delivery, transform, secret) and for S3.* (backup) apart, and the transform's log for records it answered ProcessingFailed."
  }

  assert {
    condition = alltrue([
      for k, f in aws_cloudwatch_log_metric_filter.errors :
      aws_cloudwatch_metric_alarm.this[k].namespace == f.metric_transformation[0].namespace &&
      aws_cloudwatch_metric_alarm.this[k].metric_name == f.metric_transformation[0].name &&
      aws_cloudwatch_metric_alarm.this[k].comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.this[k].threshold == 0 &&
      aws_cloudwatch_metric_alarm.this[k].alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:platform-alerts"])
    ])
    error_message = "Each error-log metric must have an alarm (> 0) wired to the alarm topic."
  }
}

# Quota early warning: incoming per second over the matching *PerSecondLimit.
run "quota_alarms_compare_incoming_with_the_limits" {
  command = plan

  variables {
    alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
  }

  assert {
    condition = {
      for k, a in aws_cloudwatch_metric_alarm.quota : k => {
        for q in a.metric_query : q.id => (length(q.metric) > 0 ? "${q.metric[0].metric_name}/${q.metric[0].stat}" : q.expression)
      }
      } == {
      bytes        = { utilization = "(incoming / 300) / limit", incoming = "IncomingBytes/Sum", limit = "BytesPerSecondLimit/Minimum" }
      records      = { utilization = "(incoming / 300) / limit", incoming = "IncomingRecords/Sum", limit = "RecordsPerSecondLimit/Minimum" }
      put_requests = { utilization = "(incoming / 300) / limit", incoming = "IncomingPutRequests/Sum", limit = "PutRequestsPerSecondLimit/Minimum" }
    }
    error_message = "Each quota alarm must divide incoming per second by its limit."
  }

  assert {
    condition     = alltrue([for a in values(aws_cloudwatch_metric_alarm.quota) : a.threshold == 0.8 && a.comparison_operator == "GreaterThanThreshold"])
    error_message = "Quota alarms must fire above 80 % of the limit by default."
  }
}

run "a_customer_managed_stream_key_gets_a_kms_alarm" {
  command = plan

  variables {
    alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
    stream_kms_key_arn  = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000003"
  }

  assert {
    condition = (
      length(aws_cloudwatch_metric_alarm.stream_kms_errors) == 1 &&
      toset([for q in aws_cloudwatch_metric_alarm.stream_kms_errors[0].metric_query : q.metric[0].metric_name if length(q.metric) > 0]) == toset(["KMSKeyAccessDenied", "KMSKeyDisabled", "KMSKeyInvalidState", "KMSKeyNotFound"]) &&
      aws_cloudwatch_metric_alarm.stream_kms_errors[0].threshold == 0
    )
    error_message = "A customer-managed stream key must get an alarm on Firehose's KMS error metrics."
  }

  # What the other runs check of every alarm, for the one that exists only with a key.
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.stream_kms_errors[0].treat_missing_data == "notBreaching" &&
      aws_cloudwatch_metric_alarm.stream_kms_errors[0].alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:platform-alerts"]) &&
      aws_cloudwatch_metric_alarm.stream_kms_errors[0].ok_actions == toset(["arn:aws:sns:eu-west-1:123456789012:platform-alerts"]) &&
      alltrue([for q in aws_cloudwatch_metric_alarm.stream_kms_errors[0].metric_query : q.metric[0].period == 300 && q.metric[0].dimensions == tomap({ DeliveryStreamName = "events" }) if length(q.metric) > 0])
    )
    error_message = "The KMS alarm must not fire without traffic, must notify the topic on alarm and recovery, and must watch this stream over 5-minute periods."
  }
}

run "an_existing_topic_wins_and_alarms_can_be_disabled" {
  command = plan

  variables {
    create_sns_topic    = true
    alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
    create_alarms       = false
  }

  assert {
    condition = (
      length(aws_sns_topic.alarms) == 0 && length(aws_cloudwatch_metric_alarm.this) == 0 &&
      length(aws_cloudwatch_metric_alarm.backup_records) == 0 && length(aws_cloudwatch_metric_alarm.quota) == 0 &&
      length(aws_cloudwatch_log_metric_filter.errors) == 0
    )
    error_message = "create_alarms = false must create no alarms or metric filters, and an existing topic no new topic."
  }
}

run "rejects_a_success_ratio_above_one" {
  command = plan

  variables {
    alarm_http_success_min = 95
    alarm_sns_topic_arn    = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
  }

  expect_failures = [var.alarm_http_success_min]
}

run "rejects_a_topic_that_is_not_an_sns_arn" {
  command = plan

  variables {
    alarm_sns_topic_arn = "platform-alerts"
  }

  expect_failures = [var.alarm_sns_topic_arn]
}

# Unset, the freshness threshold follows what a healthy record can wait: a longer retry duration
# must not make the alarm fire during normal retries (it was a fixed 600 s).
run "the_freshness_threshold_follows_the_retry_duration" {
  command = plan

  variables {
    retry_duration_seconds = 900
    alarm_sns_topic_arn    = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
  }

  assert {
    # 60 s transform buffer + 60 s endpoint buffer + 900 s of retries + 300 s for answers.
    condition     = aws_cloudwatch_metric_alarm.this["http_endpoint_data_freshness"].threshold == 1320
    error_message = "With retry_duration_seconds = 900 the derived freshness threshold must be 1320 s."
  }
}

run "rejects_a_freshness_threshold_that_normal_retries_reach" {
  command = plan

  variables {
    retry_duration_seconds           = 900
    alarm_data_freshness_max_seconds = 600
    alarm_sns_topic_arn              = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
  }

  expect_failures = [var.alarm_data_freshness_max_seconds]
}
