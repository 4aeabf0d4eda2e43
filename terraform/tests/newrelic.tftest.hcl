# The delivery stream is configured for New Relic as New Relic documents it, and inputs that would
# break delivery are rejected at plan time.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name                            = "events"
  lambda_zip_path                 = "tests/fixtures/bootstrap.zip"
  newrelic_license_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:newrelic/license-AbCdEf"
  irsa_oidc_provider_arn          = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789"
  # A topic, so check "alarm_notifications" (alarms notifying nobody) holds; alarms.tftest.hcl
  # covers the default without one.
  alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:platform-alerts"
}

run "defaults_follow_new_relics_firehose_guide" {
  command = plan

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.destination == "http_endpoint"
    error_message = "The stream must deliver to an HTTP endpoint."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].url == "https://aws-api.newrelic.com/firehose/v1"
    error_message = "The default region (US) must use New Relic's US Firehose endpoint."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].buffering_size == 1
    error_message = "New Relic needs a 1 MiB buffer (it accepts at most 1 MB per POST)."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].buffering_interval == 60
    error_message = "The buffer interval must default to 60 s."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].request_configuration[0].content_encoding == "GZIP"
    error_message = "Requests to New Relic must be GZIP-encoded."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].retry_duration == 60
    error_message = "The retry duration must default to the seed's 60 s."
  }

  assert {
    condition     = length(aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].request_configuration[0].common_attributes) == 0
    error_message = "No common attributes are sent unless configured."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].access_key == null
    error_message = "With a secret ARN the license key must not also be set as a plain access key."
  }

  assert {
    condition = (
      aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].secrets_manager_configuration[0].enabled == true &&
      aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].secrets_manager_configuration[0].secret_arn == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:newrelic/license-AbCdEf"
    )
    error_message = "The license key must come from the given Secrets Manager secret."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.server_side_encryption[0].enabled && aws_kinesis_firehose_delivery_stream.this.server_side_encryption[0].key_type == "AWS_OWNED_CMK"
    error_message = "The stream must be encrypted at rest with an AWS-owned key by default."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].cloudwatch_logging_options[0].enabled && aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].cloudwatch_logging_options[0].log_group_name == "/aws/kinesisfirehose/events"
    error_message = "Delivery errors must be logged to /aws/kinesisfirehose/<name>."
  }
}

run "eu_region_uses_the_eu_endpoint_and_common_attributes_are_sent" {
  command = plan

  variables {
    newrelic_region   = "EU"
    common_attributes = { env = "prod", service = "checkout" }
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].url == "https://aws-api.eu.newrelic.com/firehose/v1"
    error_message = "EU must use New Relic's EU Firehose endpoint."
  }

  assert {
    condition = {
      for a in aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].request_configuration[0].common_attributes : a.name => a.value
    } == { env = "prod", service = "checkout" }
    error_message = "Every common attribute must be sent as a name/value pair."
  }
}

run "any_https_url_can_replace_new_relic" {
  command = plan

  variables {
    newrelic_endpoint_url = "https://firehose-sink.example.com/v1/firehose"
    buffering_size_mib    = 4
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].url == "https://firehose-sink.example.com/v1/firehose"
    error_message = "newrelic_endpoint_url must override the region's URL."
  }

  # The URL may carry a token, and the API model marks Url sensitive.
  assert {
    condition     = issensitive(output.endpoint_url) && nonsensitive(output.endpoint_url) == "https://firehose-sink.example.com/v1/firehose"
    error_message = "The endpoint_url output must be sensitive."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].buffering_size == 4
    error_message = "A non-New Relic endpoint may use a larger buffer."
  }
}

# A custom endpoint authenticated by a query-string token, with an explicit :443.
run "a_url_with_port_443_and_a_query_token_is_accepted" {
  command = plan

  variables {
    newrelic_endpoint_url = "https://firehose-sink.example.com:443?token=abc:def"
    buffering_size_mib    = 4
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].url == "https://firehose-sink.example.com:443?token=abc:def"
    error_message = "A query string (after the host or :443) must be allowed."
  }
}

run "license_key_variable_is_sent_as_the_access_key" {
  command = plan

  variables {
    newrelic_license_key_secret_arn = null
    newrelic_license_key            = "0123456789abcdef0123456789abcdef01234567"
  }

  assert {
    condition     = nonsensitive(aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].access_key == "0123456789abcdef0123456789abcdef01234567")
    error_message = "The license key variable must become the stream's access key."
  }

  assert {
    condition     = length(aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].secrets_manager_configuration) == 0
    error_message = "Without a secret ARN there must be no Secrets Manager configuration."
  }
}

run "processor_runs_the_transform_and_omits_firehose_defaults" {
  command = apply

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].processing_configuration[0].enabled
    error_message = "The transform must be enabled."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].processing_configuration[0].processors[0].type == "Lambda"
    error_message = "The processor must be the Lambda transform."
  }

  # Only LambdaArn: NumberOfRetries=3, BufferSizeInMBs=1 and BufferIntervalInSeconds=60 are
  # Firehose's defaults, which the provider never stores in state; written out they would make
  # every plan show a diff (see README.md). LambdaArn is the `live` alias, never $LATEST.
  assert {
    condition = {
      for p in aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].processing_configuration[0].processors[0].parameters : p.parameter_name => p.parameter_value
    } == { LambdaArn = "arn:aws:lambda:eu-west-1:123456789012:function:events-transform:live" }
    error_message = "At defaults the processor must name only the transform's alias."
  }

  assert {
    condition = (
      aws_lambda_function.this.publish == true &&
      aws_lambda_alias.this.name == "live" &&
      aws_lambda_alias.this.function_name == "events-transform" &&
      aws_lambda_alias.this.function_version == aws_lambda_function.this.version &&
      output.lambda_alias_arn == "arn:aws:lambda:eu-west-1:123456789012:function:events-transform:live"
    )
    error_message = "The function must publish versions and the alias must point at the published one."
  }
}

run "processor_writes_out_values_that_differ_from_firehose_defaults" {
  command = apply

  variables {
    processor_number_of_retries       = 5
    processor_buffer_size_mb          = 0.5
    processor_buffer_interval_seconds = 30
  }

  assert {
    condition = {
      for p in aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].processing_configuration[0].processors[0].parameters : p.parameter_name => p.parameter_value
      } == {
      LambdaArn               = "arn:aws:lambda:eu-west-1:123456789012:function:events-transform:live"
      NumberOfRetries         = "5"
      BufferSizeInMBs         = "0.5"
      BufferIntervalInSeconds = "30"
    }
    error_message = "Non-default processor settings must be passed to Firehose."
  }
}

run "transform_function_is_the_rust_zip" {
  command = plan

  variables {
    lambda_architecture = "arm64"
  }

  assert {
    condition = (
      aws_lambda_function.this.runtime == "provided.al2023" &&
      aws_lambda_function.this.handler == "bootstrap" &&
      aws_lambda_function.this.architectures == tolist(["arm64"]) &&
      aws_lambda_function.this.filename == "tests/fixtures/bootstrap.zip" &&
      aws_lambda_function.this.source_code_hash == filebase64sha256("tests/fixtures/bootstrap.zip")
    )
    error_message = "The transform must be the provided.al2023 `bootstrap` zip, on the chosen architecture, hashed for updates."
  }

  assert {
    condition     = aws_cloudwatch_log_group.lambda.name == "/aws/lambda/events-transform" && aws_cloudwatch_log_group.lambda.retention_in_days == 30
    error_message = "The transform's log group must exist with a 30-day retention."
  }
}

# --- Inputs that must be rejected --------------------------------------------------------------

run "rejects_a_buffer_over_new_relics_limit" {
  command = plan

  variables {
    buffering_size_mib = 5
  }

  expect_failures = [var.buffering_size_mib]
}

run "rejects_a_buffer_over_firehoses_range" {
  command = plan

  variables {
    newrelic_endpoint_url = "https://firehose-sink.example.com/v1"
    buffering_size_mib    = 65
  }

  expect_failures = [var.buffering_size_mib]
}

run "rejects_a_retry_duration_out_of_range" {
  command = plan

  variables {
    retry_duration_seconds = 7201
  }

  expect_failures = [var.retry_duration_seconds]
}

run "rejects_a_negative_retry_duration" {
  command = plan

  variables {
    retry_duration_seconds = -1
  }

  expect_failures = [var.retry_duration_seconds]
}

run "rejects_an_unknown_region" {
  command = plan

  variables {
    newrelic_region = "APAC"
  }

  expect_failures = [var.newrelic_region]
}

run "rejects_the_log_api_url" {
  command = plan

  variables {
    newrelic_endpoint_url = "https://log-api.newrelic.com/log/v1"
  }

  expect_failures = [var.newrelic_endpoint_url]
}

run "rejects_a_plain_http_url" {
  command = plan

  variables {
    newrelic_endpoint_url = "http://localhost:8080/firehose"
  }

  expect_failures = [var.newrelic_endpoint_url]
}

run "rejects_both_a_secret_and_a_plain_license_key" {
  command = plan

  variables {
    newrelic_license_key = "0123456789abcdef0123456789abcdef01234567"
  }

  expect_failures = [var.newrelic_license_key_secret_arn]
}

run "rejects_a_missing_license_key" {
  command = plan

  variables {
    newrelic_license_key_secret_arn = null
  }

  expect_failures = [var.newrelic_license_key_secret_arn]
}

run "rejects_a_processor_buffer_over_3_mb" {
  command = plan

  variables {
    processor_buffer_size_mb = 4
  }

  expect_failures = [var.processor_buffer_size_mb]
}

run "rejects_more_than_50_common_attributes" {
  command = plan

  variables {
    common_attributes = { for i in range(51) : "attr${i}" => "v" }
  }

  expect_failures = [var.common_attributes]
}

run "rejects_a_missing_zip" {
  command = plan

  variables {
    lambda_zip_path = "tests/fixtures/no-such-file.zip"
  }

  expect_failures = [var.lambda_zip_path]
}

run "rejects_a_name_lambda_cannot_take" {
  command = plan

  variables {
    name = "events.v2"
  }

  expect_failures = [var.name]
}

run "rejects_a_name_starting_with_a_dash" {
  command = plan

  variables {
    name = "-events"
  }

  expect_failures = [var.name]
}

run "rejects_a_name_starting_with_an_underscore" {
  command = plan

  variables {
    name = "_events"
  }

  expect_failures = [var.name]
}

run "rejects_a_port_other_than_443_before_a_query" {
  command = plan

  variables {
    newrelic_endpoint_url = "https://firehose-sink.example.com:8443?token=abc"
  }

  expect_failures = [var.newrelic_endpoint_url]
}

run "rejects_a_secret_key_that_is_not_a_kms_key_arn" {
  command = plan

  variables {
    newrelic_license_key_secret_kms_key_arn = "alias/newrelic"
  }

  expect_failures = [var.newrelic_license_key_secret_kms_key_arn]
}

run "rejects_a_secret_key_without_a_secret" {
  command = plan

  variables {
    newrelic_license_key_secret_arn         = null
    newrelic_license_key                    = "0123456789abcdef0123456789abcdef01234567"
    newrelic_license_key_secret_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000001"
  }

  expect_failures = [var.newrelic_license_key_secret_kms_key_arn]
}

run "rejects_a_stream_key_without_stream_encryption" {
  command = plan

  variables {
    stream_encryption_enabled = false
    stream_kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000003"
  }

  expect_failures = [var.stream_kms_key_arn]
}

run "rejects_a_partial_secret_arn" {
  command = plan

  # Without the six random characters the role's grant would match no secret.
  variables {
    newrelic_license_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:newrelic/license"
  }

  expect_failures = [var.newrelic_license_key_secret_arn]
}

run "rejects_an_empty_license_key" {
  command = plan

  variables {
    newrelic_license_key_secret_arn = null
    newrelic_license_key            = ""
  }

  expect_failures = [var.newrelic_license_key]
}

run "rejects_a_blank_license_key" {
  command = plan

  variables {
    newrelic_license_key_secret_arn = null
    newrelic_license_key            = "   "
  }

  expect_failures = [var.newrelic_license_key]
}
