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

  assert {
    condition = {
      for k, a in aws_cloudwatch_metric_alarm.this : k => [a.namespace, a.metric_name, a.statistic, a.comparison_operator, a.threshold, a.evaluation_periods]
      } == {
      http_endpoint_success        = ["AWS/Firehose", "DeliveryToHttpEndpoint.Success", "Average", "LessThanThreshold", 0.95, 3]
      http_endpoint_data_freshness = ["AWS/Firehose", "DeliveryToHttpEndpoint.DataFreshness", "Maximum", "GreaterThanThreshold", 900, 3]
      processing_success           = ["AWS/Firehose", "ExecuteProcessing.Success", "Average", "LessThanThreshold", 0.99, 3]
      lambda_errors                = ["AWS/Lambda", "Errors", "Sum", "GreaterThanThreshold", 0, 1]
      lambda_throttles             = ["AWS/Lambda", "Throttles", "Sum", "GreaterThanThreshold", 0, 1]
      throttled_records            = ["AWS/Firehose", "ThrottledRecords", "Sum", "GreaterThanThreshold", 0, 1]
    }
    error_message = "Each alarm must watch its metric with the documented default threshold."
  }

  assert {
    condition = alltrue([
      for k, a in aws_cloudwatch_metric_alarm.this :
      a.dimensions == (a.namespace == "AWS/Lambda" ? { FunctionName = "events-transform" } : { DeliveryStreamName = "events" })
    ])
    error_message = "Firehose alarms must be scoped to the stream, Lambda alarms to the transform."
  }

  assert {
    condition     = alltrue([for a in concat(values(aws_cloudwatch_metric_alarm.this), aws_cloudwatch_metric_alarm.backup_records) : a.treat_missing_data == "notBreaching"])
    error_message = "No traffic must not alarm."
  }

  assert {
    condition = alltrue(concat(
      [for a in values(aws_cloudwatch_metric_alarm.this) : a.period == 300],
      [for q in aws_cloudwatch_metric_alarm.backup_records[0].metric_query : q.metric[0].period == 300 if length(q.metric) > 0],
    ))
    error_message = "Periods must default to 5 minutes (Firehose's publishing interval)."
  }

  assert {
    condition     = alltrue([for a in concat(values(aws_cloudwatch_metric_alarm.this), aws_cloudwatch_metric_alarm.backup_records) : length(a.alarm_actions) == 0])
    error_message = "Without a topic the alarms notify nothing."
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
}

run "thresholds_are_inputs_and_alarms_notify_the_created_topic" {
  command = apply

  variables {
    create_sns_topic                  = true
    alarm_http_success_min            = 0.9
    alarm_data_freshness_max_seconds  = 600
    alarm_throttled_records_threshold = 100
    alarm_backup_records_threshold    = 10
    alarm_evaluation_periods          = 2
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.this["http_endpoint_success"].threshold == 0.9 &&
      aws_cloudwatch_metric_alarm.this["http_endpoint_success"].evaluation_periods == 2 &&
      aws_cloudwatch_metric_alarm.this["http_endpoint_data_freshness"].threshold == 600 &&
      aws_cloudwatch_metric_alarm.this["throttled_records"].threshold == 100 &&
      aws_cloudwatch_metric_alarm.backup_records[0].threshold == 10
    )
    error_message = "Alarm thresholds must follow the inputs."
  }

  assert {
    condition = alltrue([
      for a in concat(values(aws_cloudwatch_metric_alarm.this), aws_cloudwatch_metric_alarm.backup_records) :
      a.alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:events-alarms"]) && a.ok_actions == toset(["arn:aws:sns:eu-west-1:123456789012:events-alarms"])
    ])
    error_message = "Every alarm must notify the created topic on alarm and on recovery."
  }

  assert {
    condition     = length(output.alarm_arns) == 7 && output.alarm_sns_topic_arn == "arn:aws:sns:eu-west-1:123456789012:events-alarms"
    error_message = "All seven alarm ARNs and the topic must be outputs."
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
    condition     = length(aws_sns_topic.alarms) == 0 && length(aws_cloudwatch_metric_alarm.this) == 0 && length(aws_cloudwatch_metric_alarm.backup_records) == 0
    error_message = "create_alarms = false must create no alarms, and an existing topic no new topic."
  }
}

run "rejects_a_success_ratio_above_one" {
  command = plan

  variables {
    alarm_http_success_min = 95
  }

  expect_failures = [var.alarm_http_success_min]
}
