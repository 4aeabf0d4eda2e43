##################
# Delivery stream
##################

# Direct PUT stream (the front door calls PutRecordBatch) delivering to New Relic's Firehose
# endpoint through the transform, with failed data backed up to S3.
resource "aws_kinesis_firehose_delivery_stream" "this" {
  name        = var.name
  destination = "http_endpoint"

  dynamic "server_side_encryption" {
    for_each = var.stream_encryption_enabled ? [1] : []
    content {
      enabled  = true
      key_type = var.stream_kms_key_arn == null ? "AWS_OWNED_CMK" : "CUSTOMER_MANAGED_CMK"
      key_arn  = var.stream_kms_key_arn
    }
  }

  http_endpoint_configuration {
    url  = local.endpoint_url
    name = "New Relic"

    # Set only without Secrets Manager; Terraform stores it in state (marked sensitive).
    access_key = local.use_secrets_manager ? null : var.newrelic_license_key

    # New Relic: 1 MiB before compression + GZIP keeps each POST under its 1 MB limit.
    buffering_size     = var.buffering_size_mib
    buffering_interval = var.buffering_interval_seconds
    retry_duration     = var.retry_duration_seconds

    role_arn       = aws_iam_role.firehose.arn
    s3_backup_mode = var.s3_backup_mode

    dynamic "secrets_manager_configuration" {
      for_each = local.use_secrets_manager ? [1] : []
      content {
        enabled    = true
        secret_arn = var.newrelic_license_key_secret_arn
        role_arn   = aws_iam_role.firehose.arn
      }
    }

    request_configuration {
      content_encoding = "GZIP"

      dynamic "common_attributes" {
        for_each = var.common_attributes
        content {
          name  = common_attributes.key
          value = common_attributes.value
        }
      }
    }

    processing_configuration {
      enabled = true

      processors {
        type = "Lambda"

        dynamic "parameters" {
          for_each = local.processor_parameters
          content {
            parameter_name  = parameters.key
            parameter_value = parameters.value
          }
        }
      }
    }

    s3_configuration {
      role_arn            = aws_iam_role.firehose.arn
      bucket_arn          = aws_s3_bucket.backup.arn
      prefix              = var.backup_prefix
      error_output_prefix = var.backup_error_output_prefix
      compression_format  = "GZIP"
      # Firehose writes with the bucket's default encryption unless a key is named here.
      kms_key_arn = var.backup_kms_key_arn

      cloudwatch_logging_options {
        enabled         = true
        log_group_name  = aws_cloudwatch_log_group.firehose.name
        log_stream_name = aws_cloudwatch_log_stream.firehose["backup"].name
      }
    }

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose["http_endpoint"].name
    }
  }

  tags = var.tags

  # The role's policies must exist before Firehose validates access on create.
  depends_on = [aws_iam_role_policy.firehose]
}

##########################
# Delivery-error logging
##########################

resource "aws_cloudwatch_log_group" "firehose" {
  #checkov:skip=CKV_AWS_158:Firehose error logs hold no record payloads; a customer-managed key adds a key policy to maintain for no gain. AWS encrypts log groups at rest by default.
  #checkov:skip=CKV_AWS_338:Retention is an input (firehose_log_retention_days, default 30 days); these are operational error logs, not an audit trail.
  name              = local.firehose_log_group_name
  retention_in_days = var.firehose_log_retention_days
  tags              = var.tags
}

resource "aws_cloudwatch_log_stream" "firehose" {
  for_each = local.firehose_log_streams

  name           = each.value
  log_group_name = aws_cloudwatch_log_group.firehose.name
}
