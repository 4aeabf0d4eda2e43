################
# Backup bucket
################

# Where Firehose writes what it could not deliver (http-endpoint-failed/), what the transform
# failed (processing-failed/), and with AllData every source record. These objects are the only
# copy of those records: private, owner-enforced, encrypted, TLS-only, versioned; the AllData
# copies expire, failed records only when failed_records_expiration_days says so.
resource "aws_s3_bucket" "backup" {
  #checkov:skip=CKV_AWS_18:Access logging needs a second, log-target bucket this module would have to own; enable it in the account's logging baseline if required.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles the cost of a bucket of failed records and AllData copies; replay, not replication, is the recovery path, and the bucket is versioned against deletion by hand.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; the backup-records alarm signals new failed data.
  bucket        = var.backup_bucket_name
  bucket_prefix = var.backup_bucket_name == null ? local.bucket_prefix : null
  force_destroy = var.backup_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "backup" {
  bucket = aws_s3_bucket.backup.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "backup" {
  bucket = aws_s3_bucket.backup.id

  rule {
    # ACLs disabled: the bucket owner owns every object Firehose writes.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backup" {
  bucket = aws_s3_bucket.backup.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.backup_kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.backup_kms_key_arn
    }
    bucket_key_enabled = var.backup_kms_key_arn != null
  }
}

resource "aws_s3_bucket_versioning" "backup" {
  bucket = aws_s3_bucket.backup.id

  versioning_configuration {
    # An overwritten or deleted backup object can be recovered for
    # backup_noncurrent_expiration_days (the lifecycle rule below).
    status = "Enabled"
  }
}

locals {
  # S3 lifecycle filters match a literal key prefix: the part of each prefix before its first
  # `!{...}` expression (`source/`, `failed/` by default). backup_prefix's validation keeps the
  # first from covering the second.
  backup_prefix_fixed              = split("!{", var.backup_prefix)[0]
  backup_error_output_prefix_fixed = split("!{", var.backup_error_output_prefix)[0]
}

# What expires, and when:
# * the AllData copies of source records (under backup_prefix) after backup_expiration_days: they
#   are copies of records New Relic took;
# * records that did not reach New Relic (under the error prefix) never by default, as the seed's
#   design keeps them ("Retention: Permanent"): they are the only copy, and one that expired before
#   anyone replayed it would be lost with no alarm left to say so. failed_records_expiration_days
#   sets a limit for those who replay on a schedule.
# On a versioned bucket, expiration does not delete: it adds a delete marker and makes the object a
# noncurrent version, which noncurrent_version_expiration deletes `noncurrent_days` later. So an
# object lives backup_expiration_days + backup_noncurrent_expiration_days (default 30 + 1), not
# 2 x backup_expiration_days. The last rule removes the delete markers left once no version
# remains (ExpiredObjectDeleteMarker cannot share an expiration with Days, hence its own rule).
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_LifecycleExpiration.html
resource "aws_s3_bucket_lifecycle_configuration" "backup" {
  bucket = aws_s3_bucket.backup.id

  # Every object: versions replaced or deleted (by expiry or by hand) go for good
  # backup_noncurrent_expiration_days later, and uploads Firehose never completed are cleaned up.
  rule {
    id     = "noncurrent-versions-and-uploads"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.backup_noncurrent_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "expire-source-copies"
    status = "Enabled"

    filter {
      prefix = local.backup_prefix_fixed
    }

    expiration {
      days = var.backup_expiration_days
    }
  }

  # Only with failed_records_expiration_days; the rule is there either way (a `dynamic "rule"`
  # hides every rule from checkov's CKV_AWS_300), and a rule needs an action, so it also aborts
  # uploads left incomplete under the prefix, as the rule for every object does.
  rule {
    id     = "expire-failed-records"
    status = "Enabled"

    filter {
      prefix = local.backup_error_output_prefix_fixed
    }

    dynamic "expiration" {
      for_each = var.failed_records_expiration_days == null ? [] : [var.failed_records_expiration_days]

      content {
        days = expiration.value
      }
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "remove-expired-delete-markers"
    status = "Enabled"

    filter {}

    expiration {
      expired_object_delete_marker = true
    }
  }

  # Lifecycle rules on a versioned bucket act on the versioning state.
  depends_on = [aws_s3_bucket_versioning.backup]
}

resource "aws_s3_bucket_policy" "backup" {
  bucket = aws_s3_bucket.backup.id
  policy = local.backup_bucket_policy

  # A bucket policy cannot be put while public access is still being configured.
  depends_on = [aws_s3_bucket_public_access_block.backup]
}

locals {
  backup_bucket_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.backup.arn, "${aws_s3_bucket.backup.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}
