# The backup bucket keeps what did not reach New Relic: private, encrypted, TLS-only, with failed
# records under !{firehose:error-output-type}, kept until deleted by default; AllData copies expire.

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

run "failed_data_only_by_default_gzip_under_error_type_prefix" {
  command = apply

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].s3_backup_mode == "FailedDataOnly"
    error_message = "Only failed data must be backed up by default."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].s3_configuration[0].bucket_arn == "arn:aws:s3:::events-backup-20261125"
    error_message = "Firehose must back up to the module's bucket."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].s3_configuration[0].compression_format == "GZIP"
    error_message = "Backups must be GZIP-compressed."
  }

  assert {
    condition     = strcontains(aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].s3_configuration[0].error_output_prefix, "!{firehose:error-output-type}")
    error_message = "Failed records must land under !{firehose:error-output-type} (http-endpoint-failed/, processing-failed/)."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].s3_configuration[0].cloudwatch_logging_options[0].log_stream_name == "BackupDelivery"
    error_message = "Backup write errors must be logged to their own stream."
  }

  assert {
    condition     = output.backup_error_output_prefix == "failed/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"
    error_message = "The error prefix must be an output for the replay tool."
  }

  assert {
    condition     = aws_s3_bucket.backup.bucket_prefix == "events-backup-" && aws_s3_bucket.backup.force_destroy == false
    error_message = "The bucket must get a unique <name>-backup- name and survive terraform destroy while it holds data."
  }

  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.backup.block_public_acls,
      aws_s3_bucket_public_access_block.backup.block_public_policy,
      aws_s3_bucket_public_access_block.backup.ignore_public_acls,
      aws_s3_bucket_public_access_block.backup.restrict_public_buckets,
    ])
    error_message = "Every kind of public access must be blocked."
  }

  assert {
    condition     = aws_s3_bucket_ownership_controls.backup.rule[0].object_ownership == "BucketOwnerEnforced"
    error_message = "Objects must be owner-enforced (ACLs disabled)."
  }

  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.backup.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "AES256"
    error_message = "Without a KMS key the bucket must use SSE-S3."
  }

  assert {
    condition     = aws_s3_bucket_versioning.backup.versioning_configuration[0].status == "Enabled"
    error_message = "The bucket must be versioned."
  }

  assert {
    condition     = output.replay_source == "s3://events-backup-20261125/failed/"
    error_message = "replay_source must name the bucket and the fixed start of the error prefix."
  }

  # Versioned bucket: expiry turns an object into a noncurrent version, which is deleted
  # noncurrent_days later. 30 + 1 days, not 30 + 30; and only for the AllData copies under
  # source/: failed records are the only copy and do not expire by default.
  assert {
    condition = (
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-source-copies"]).status == "Enabled" &&
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-source-copies"]).filter[0].prefix == "source/" &&
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-source-copies"]).expiration[0].days == 30 &&
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "noncurrent-versions-and-uploads"]).noncurrent_version_expiration[0].noncurrent_days == 1
    )
    error_message = "AllData copies (source/) must expire after 30 days and noncurrent versions 1 day later by default."
  }

  # Failed records do not expire by default: the only rule with a day count is the one for the
  # AllData copies (checked above to filter on source/), and the failed-records rule has no
  # expiration. (By rule id: a filter's prefix is computed, and the mock provider fills one left
  # unset with a random string, which a check of the prefixes alone would take as fine.)
  assert {
    condition = [
      for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r.id
      if coalesce(try(r.expiration[0].days, null), 0) > 0
    ] == ["expire-source-copies"]
    error_message = "Failed records must not expire by default: only expire-source-copies may have a day count."
  }

  assert {
    condition = (
      length(one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-failed-records"]).expiration) == 0 &&
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-failed-records"]).filter[0].prefix == "failed/"
    )
    error_message = "By default the failed-records rule (failed/) must not expire anything."
  }

  assert {
    condition = anytrue([
      for r in aws_s3_bucket_lifecycle_configuration.backup.rule :
      r.status == "Enabled" && try(r.expiration[0].expired_object_delete_marker, false) == true
    ])
    error_message = "A lifecycle rule must remove expired object delete markers."
  }

  # TLS only: one Deny for every request without aws:SecureTransport, on the bucket and its objects.
  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.backup.policy).Statement :
      s.Effect == "Deny" && s.Principal == "*" && s.Action == "s3:*" &&
      s.Condition == { Bool = { "aws:SecureTransport" = "false" } } &&
      toset(s.Resource) == toset(["arn:aws:s3:::events-backup-20261125", "arn:aws:s3:::events-backup-20261125/*"])
    ])
    error_message = "The bucket policy must deny every request that does not use TLS."
  }
}

run "all_data_kms_and_custom_expiry" {
  command = apply

  variables {
    s3_backup_mode                    = "AllData"
    backup_bucket_name                = "acme-events-backup"
    backup_expiration_days            = 90
    backup_noncurrent_expiration_days = 7
    backup_kms_key_arn                = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].s3_backup_mode == "AllData"
    error_message = "AllData must be passed through."
  }

  assert {
    condition     = aws_s3_bucket.backup.bucket == "acme-events-backup"
    error_message = "A given bucket name must be used as is."
  }

  assert {
    condition = (
      one(aws_s3_bucket_server_side_encryption_configuration.backup.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" &&
      one(aws_s3_bucket_server_side_encryption_configuration.backup.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555" &&
      one(aws_s3_bucket_server_side_encryption_configuration.backup.rule).bucket_key_enabled
    )
    error_message = "With a KMS key the bucket must default to SSE-KMS with that key and a bucket key."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].s3_configuration[0].kms_key_arn == "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    error_message = "Firehose must write backups with the KMS key."
  }

  assert {
    condition = (
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-source-copies"]).expiration[0].days == 90 &&
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "noncurrent-versions-and-uploads"]).noncurrent_version_expiration[0].noncurrent_days == 7
    )
    error_message = "backup_expiration_days and backup_noncurrent_expiration_days must set the expiry."
  }
}

run "failed_records_expire_only_when_asked" {
  command = apply

  variables {
    failed_records_expiration_days = 400
    backup_prefix                  = "copies/!{timestamp:yyyy/MM/dd}/"
    backup_error_output_prefix     = "undelivered/!{firehose:error-output-type}/"
  }

  assert {
    condition = (
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-failed-records"]).filter[0].prefix == "undelivered/" &&
      one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-failed-records"]).expiration[0].days == 400
    )
    error_message = "failed_records_expiration_days must expire the fixed start of the error prefix."
  }

  assert {
    condition     = one([for r in aws_s3_bucket_lifecycle_configuration.backup.rule : r if r.id == "expire-source-copies"]).filter[0].prefix == "copies/"
    error_message = "The AllData copies must expire by the fixed start of backup_prefix."
  }
}

run "rejects_a_data_prefix_whose_expiry_would_reach_failed_records" {
  command = plan

  variables {
    backup_prefix              = "events/"
    backup_error_output_prefix = "events/failed/!{firehose:error-output-type}/"
  }

  expect_failures = [var.backup_prefix]
}

run "rejects_an_error_prefix_without_a_fixed_folder" {
  command = plan

  variables {
    backup_error_output_prefix = "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"
  }

  expect_failures = [var.backup_error_output_prefix]
}

run "rejects_a_data_prefix_without_a_fixed_folder" {
  command = plan

  variables {
    backup_prefix = "!{timestamp:yyyy}/"
  }

  expect_failures = [var.backup_prefix]
}

run "rejects_a_fractional_failed_record_expiry" {
  command = plan

  variables {
    failed_records_expiration_days = 0.5
  }

  expect_failures = [var.failed_records_expiration_days]
}

run "rejects_an_unknown_backup_mode" {
  command = plan

  variables {
    s3_backup_mode = "Disabled"
  }

  expect_failures = [var.s3_backup_mode]
}

run "rejects_an_error_prefix_without_the_error_type" {
  command = plan

  variables {
    backup_error_output_prefix = "failed/!{timestamp:yyyy/MM/dd}/"
  }

  expect_failures = [var.backup_error_output_prefix]
}

run "rejects_the_error_type_in_the_data_prefix" {
  command = plan

  variables {
    backup_prefix = "all/!{firehose:error-output-type}/"
  }

  expect_failures = [var.backup_prefix]
}

run "rejects_a_zero_day_expiry" {
  command = plan

  variables {
    backup_expiration_days = 0
  }

  expect_failures = [var.backup_expiration_days]
}

run "rejects_adjacent_periods_in_the_bucket_name" {
  command = plan

  variables {
    backup_bucket_name = "acme..events"
  }

  expect_failures = [var.backup_bucket_name]
}

run "rejects_a_bucket_name_that_looks_like_an_ip_address" {
  command = plan

  variables {
    backup_bucket_name = "192.168.5.4"
  }

  expect_failures = [var.backup_bucket_name]
}

run "rejects_a_reserved_bucket_name_prefix" {
  command = plan

  variables {
    backup_bucket_name = "sthree-events-backup"
  }

  expect_failures = [var.backup_bucket_name]
}

run "rejects_a_reserved_bucket_name_suffix" {
  command = plan

  variables {
    backup_bucket_name = "events-backup--ol-s3"
  }

  expect_failures = [var.backup_bucket_name]
}

run "rejects_a_name_whose_generated_bucket_prefix_is_reserved" {
  command = plan

  variables {
    # Lowercased with '_' as '-', the bucket prefix would start with xn--.
    name = "XN__events"
  }

  expect_failures = [var.name]
}

run "a_reserved_looking_name_is_fine_with_its_own_bucket_name" {
  command = plan

  variables {
    name               = "XN__events"
    backup_bucket_name = "acme.events-backup"
  }

  assert {
    condition     = aws_s3_bucket.backup.bucket == "acme.events-backup"
    error_message = "The given bucket name must be used as is."
  }
}
