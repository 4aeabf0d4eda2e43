#######################
# IAM: delivery stream
#######################

# The role Firehose assumes to invoke the transform, write the backup bucket, log delivery errors
# and read the license-key secret: each statement names its one resource. Policies are built with
# jsonencode (not aws_iam_policy_document) so `terraform test` can decode and check them.
resource "aws_iam_role" "firehose" {
  name               = "${var.name}-firehose"
  description        = "Firehose delivery stream ${var.name}: transform, backup bucket, logs, license key"
  assume_role_policy = local.firehose_assume_role_policy
  tags               = var.tags
}

resource "aws_iam_role_policy" "firehose" {
  name   = "delivery"
  role   = aws_iam_role.firehose.id
  policy = local.firehose_policy
}

locals {
  firehose_assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "FirehoseAssumeRole"
      Effect    = "Allow"
      Principal = { Service = "firehose.amazonaws.com" }
      Action    = "sts:AssumeRole"
      # Confused-deputy guard recommended by the Firehose guide: only this account's streams.
      # https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html
      Condition = { StringEquals = { "sts:ExternalId" = local.account_id } }
    }]
  })

  # The backup key, used through S3 for this bucket only, as the Firehose guide grants it for S3
  # destinations (the bucket ARN itself covers S3 Bucket Keys, whose context is the bucket): the
  # condition of Firehose's writes and of replay's reads alike.
  backup_key_through_s3 = {
    StringEquals = { "kms:ViaService" = "s3.${local.region}.${local.dns_suffix}" }
    StringLike   = { "kms:EncryptionContext:aws:s3:arn" = [aws_s3_bucket.backup.arn, "${aws_s3_bucket.backup.arn}/*"] }
  }

  firehose_statements = concat(
    [
      {
        Sid    = "WriteBackupBucket"
        Effect = "Allow"
        Action = [
          "s3:AbortMultipartUpload",
          "s3:GetBucketLocation",
          "s3:GetObject",
          "s3:ListBucket",
          "s3:ListBucketMultipartUploads",
          "s3:PutObject",
        ]
        Resource = [aws_s3_bucket.backup.arn, "${aws_s3_bucket.backup.arn}/*"]
      },
      {
        # Exactly the qualified ARN Firehose is configured with (the `live` alias): it invokes it
        # and reads its configuration through it. AWS's policy for Lambda transforms grants both
        # actions on `function:function-name:function-version` only.
        # https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html
        Sid      = "InvokeTransform"
        Effect   = "Allow"
        Action   = ["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"]
        Resource = [aws_lambda_alias.this.arn]
      },
      {
        Sid      = "WriteDeliveryErrorLogs"
        Effect   = "Allow"
        Action   = ["logs:PutLogEvents"]
        Resource = [for s in values(aws_cloudwatch_log_stream.firehose) : s.arn]
      },
    ],
    local.use_secrets_manager ? [
      {
        Sid      = "ReadLicenseKey"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [var.newrelic_license_key_secret_arn]
      },
    ] : [],
    # (A validation allows the key only with a secret.)
    var.newrelic_license_key_secret_kms_key_arn != null ? [
      {
        Sid       = "DecryptLicenseKey"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [var.newrelic_license_key_secret_kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${local.region}.${local.dns_suffix}" } }
      },
    ] : [],
    var.backup_kms_key_arn != null ? [
      {
        Sid       = "EncryptBackups"
        Effect    = "Allow"
        Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource  = [var.backup_kms_key_arn]
        Condition = local.backup_key_through_s3
      },
    ] : [],
  )

  firehose_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.firehose_statements
  })
}

#################
# IAM: transform
#################

# The transform only writes its own log group.
resource "aws_iam_role" "lambda" {
  name               = "${var.name}-transform"
  description        = "Firehose transform ${local.function_name}: its own logs only"
  assume_role_policy = local.lambda_assume_role_policy
  tags               = var.tags
}

resource "aws_iam_role_policy" "lambda" {
  name   = "logs"
  role   = aws_iam_role.lambda.id
  policy = local.lambda_policy
}

locals {
  lambda_assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "LambdaAssumeRole"
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  lambda_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "WriteOwnLogs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
    }]
  })
}

################
# IAM: replay
################

# What the replay tool (services/replay) needs to put failed records back into the stream: read
# the backup bucket, decrypt its objects (with a KMS key), and what the front door may do on the
# stream. An output, not a role: replay runs wherever an operator runs it (a laptop, a Job, a
# CI runner), each with its own way to assume a role; attach this to that one.
locals {
  replay_statements = concat(
    [
      {
        Sid      = "ListBackups"
        Effect   = "Allow"
        Action   = ["s3:ListBucket", "s3:GetBucketLocation"]
        Resource = [aws_s3_bucket.backup.arn]
      },
      {
        Sid      = "ReadBackups"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = ["${aws_s3_bucket.backup.arn}/*"]
      },
    ],
    var.backup_kms_key_arn != null ? [
      {
        Sid       = "DecryptBackups"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [var.backup_kms_key_arn]
        Condition = local.backup_key_through_s3
      },
    ] : [],
    # --to-stream: the front door's permissions on the stream (irsa.tf), key included.
    local.irsa_statements,
  )

  replay_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.replay_statements
  })
}
