# Least privilege, checked on the decoded policy documents: every statement names its resource
# (no "*" where a resource can be named), and each role trusts exactly one principal.

mock_provider "aws" {
  source = "./tests/mocks"
}

override_resource {
  target = aws_cloudwatch_log_group.lambda
  values = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/events-transform"
  }
}

# One ARN per log stream (the shared mock gives every stream the same one), so that a policy
# granting one stream twice and the other never fails the exact-resource check below.
override_resource {
  target = aws_cloudwatch_log_stream.firehose["http_endpoint"]
  values = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/kinesisfirehose/events:log-stream:HttpEndpointDelivery"
  }
}

override_resource {
  target = aws_cloudwatch_log_stream.firehose["backup"]
  values = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/kinesisfirehose/events:log-stream:BackupDelivery"
  }
}

override_resource {
  target = aws_iam_role.irsa
  values = {
    arn = "arn:aws:iam::123456789012:role/events-ingest-irsa"
  }
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

run "firehose_role_reaches_only_its_bucket_function_log_streams_and_secret" {
  command = apply

  assert {
    condition = jsondecode(aws_iam_role_policy.firehose.policy).Statement == [
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
        Resource = ["arn:aws:s3:::events-backup-20261125", "arn:aws:s3:::events-backup-20261125/*"]
      },
      {
        Sid      = "InvokeTransform"
        Effect   = "Allow"
        Action   = ["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"]
        Resource = ["arn:aws:lambda:eu-west-1:123456789012:function:events-transform:live"]
      },
      {
        Sid    = "WriteDeliveryErrorLogs"
        Effect = "Allow"
        Action = ["logs:PutLogEvents"]
        Resource = [
          "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/kinesisfirehose/events:log-stream:BackupDelivery",
          "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/kinesisfirehose/events:log-stream:HttpEndpointDelivery",
        ]
      },
      {
        Sid      = "ReadLicenseKey"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:newrelic/license-AbCdEf"]
      },
    ]
    error_message = "The Firehose role's policy must grant exactly the bucket, the transform's alias, the log streams and the secret."
  }

  # The role is scoped to exactly the qualified ARN Firehose invokes: no function:*, no $LATEST.
  assert {
    condition = one([
      for p in aws_kinesis_firehose_delivery_stream.this.http_endpoint_configuration[0].processing_configuration[0].processors[0].parameters :
      p.parameter_value if p.parameter_name == "LambdaArn"
    ]) == one([for s in jsondecode(aws_iam_role_policy.firehose.policy).Statement : one(s.Resource) if s.Sid == "InvokeTransform"])
    error_message = "The Firehose role must be granted exactly the LambdaArn the processor uses."
  }

  assert {
    condition = (
      length(aws_cloudwatch_log_stream.firehose) == 2 &&
      alltrue([for s in values(aws_cloudwatch_log_stream.firehose) : s.log_group_name == "/aws/kinesisfirehose/events"]) &&
      toset([for s in values(aws_cloudwatch_log_stream.firehose) : s.name]) == toset(["HttpEndpointDelivery", "BackupDelivery"])
    )
    error_message = "The log-stream ARNs granted must be the stream's two pre-created log streams."
  }

  assert {
    condition = jsondecode(aws_iam_role.firehose.assume_role_policy).Statement == [{
      Sid       = "FirehoseAssumeRole"
      Effect    = "Allow"
      Principal = { Service = "firehose.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = "123456789012" } }
    }]
    error_message = "Only Firehose, for this account, may assume the Firehose role."
  }
}

run "no_allow_statement_uses_a_bare_wildcard" {
  command = apply

  variables {
    newrelic_license_key_secret_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000001"
    backup_kms_key_arn                      = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000002"
    stream_kms_key_arn                      = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000003"
  }

  # Wildcards appear only after a named resource: objects in the bucket, streams in the log group.
  # Never "*" alone, never in the service, region or account field.
  assert {
    condition = alltrue(flatten([
      for doc in [aws_iam_role_policy.firehose.policy, aws_iam_role_policy.lambda.policy, aws_iam_role_policy.irsa[0].policy, output.replay_policy_json] : [
        for s in jsondecode(doc).Statement : [
          for r in s.Resource : r != "*" && can(regex("^arn:aws:[a-z0-9-]+:[a-z0-9-]*:[0-9]{0,12}:[^*]+", r)) && length(split("*", r)) <= 2
        ]
      ]
    ]))
    error_message = "Every IAM resource must be a named ARN (a trailing wildcard at most)."
  }

  # Actions are named one by one: no "*", no "s3:*", no "kinesis:Put*".
  assert {
    condition = alltrue(flatten([
      for doc in [aws_iam_role_policy.firehose.policy, aws_iam_role_policy.lambda.policy, aws_iam_role_policy.irsa[0].policy] : [
        for s in jsondecode(doc).Statement : [
          for a in flatten([s.Action]) : !strcontains(a, "*") && can(regex("^[a-z0-9-]+:[A-Za-z0-9]+$", a))
        ]
      ]
    ]))
    error_message = "Every IAM action must be named in full (service:Action), without wildcards."
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.firehose.policy).Statement : s if s.Sid == "DecryptLicenseKey"
      ] == [{
        Sid       = "DecryptLicenseKey"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = ["arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000001"]
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.eu-west-1.amazonaws.com" } }
    }]
    error_message = "Firehose may decrypt the secret's key only through Secrets Manager."
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.firehose.policy).Statement : s if s.Sid == "EncryptBackups"
      ] == [{
        Sid      = "EncryptBackups"
        Effect   = "Allow"
        Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource = ["arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000002"]
        Condition = {
          StringEquals = { "kms:ViaService" = "s3.eu-west-1.amazonaws.com" }
          StringLike   = { "kms:EncryptionContext:aws:s3:arn" = ["arn:aws:s3:::events-backup-20261125", "arn:aws:s3:::events-backup-20261125/*"] }
        }
    }]
    error_message = "Firehose may use the backup key only through S3 and only for the backup bucket."
  }
}

run "transform_role_writes_only_its_own_logs" {
  command = apply

  assert {
    condition = jsondecode(aws_iam_role_policy.lambda.policy).Statement == [{
      Sid      = "WriteOwnLogs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = ["arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/events-transform:*"]
    }]
    error_message = "The transform may only write to its own log group."
  }

  assert {
    condition     = jsondecode(aws_iam_role.lambda.assume_role_policy).Statement[0].Principal == { Service = "lambda.amazonaws.com" }
    error_message = "Only Lambda may assume the transform's role."
  }
}

run "irsa_role_trusts_one_service_account_and_may_only_put_records" {
  command = apply

  variables {
    irsa_namespace       = "observability"
    irsa_service_account = "events-ingest"
  }

  assert {
    condition = jsondecode(aws_iam_role.irsa[0].assume_role_policy).Statement == [{
      Sid       = "ServiceAccountAssumeRole"
      Effect    = "Allow"
      Principal = { Federated = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789" }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789:sub" = "system:serviceaccount:observability:events-ingest"
          "oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789:aud" = "sts.amazonaws.com"
        }
      }
    }]
    error_message = "The IRSA role must trust only the given service account through the cluster's OIDC provider, audience sts.amazonaws.com."
  }

  assert {
    condition = jsondecode(aws_iam_role_policy.irsa[0].policy).Statement == [{
      Sid      = "PutRecords"
      Effect   = "Allow"
      Action   = ["firehose:PutRecord", "firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"]
      Resource = ["arn:aws:firehose:eu-west-1:123456789012:deliverystream/events"]
    }]
    error_message = "The front door may only put records into (and describe) this stream; no KMS without a customer key."
  }

  assert {
    condition     = output.irsa_role_arn == "arn:aws:iam::123456789012:role/events-ingest-irsa"
    error_message = "The IRSA role ARN must be an output (the Helm chart needs it)."
  }
}

run "irsa_role_gets_the_stream_key_for_sse_cmk_streams" {
  command = apply

  variables {
    stream_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000003"
  }

  assert {
    condition = (
      aws_kinesis_firehose_delivery_stream.this.server_side_encryption[0].key_type == "CUSTOMER_MANAGED_CMK" &&
      aws_kinesis_firehose_delivery_stream.this.server_side_encryption[0].key_arn == "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000003"
    )
    error_message = "A stream key must switch the stream to SSE with that customer-managed key."
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.irsa[0].policy).Statement : s if s.Sid == "EncryptRecordsWithStreamKey"
      ] == [{
        Sid      = "EncryptRecordsWithStreamKey"
        Effect   = "Allow"
        Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource = ["arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000003"]
    }]
    error_message = "Producers of an SSE-CMK stream need kms:GenerateDataKey and kms:Decrypt on its key."
  }
}

# Replay reads the backup (and decrypts it with the bucket's key) and puts records as the front
# door does; it may not write, delete or list anything else.
run "replay_policy_reads_the_backup_and_puts_into_the_stream" {
  command = apply

  variables {
    backup_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000002"
  }

  assert {
    condition = [for s in jsondecode(output.replay_policy_json).Statement : s.Sid] == [
      "ListBackups", "ReadBackups", "DecryptBackups", "PutRecords",
    ]
    error_message = "The replay policy must list and read the backup, decrypt it, and put records: nothing else."
  }

  assert {
    condition = [
      for s in jsondecode(output.replay_policy_json).Statement : s if s.Sid == "ReadBackups"
      ] == [{
        Sid      = "ReadBackups"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = ["${aws_s3_bucket.backup.arn}/*"]
    }]
    error_message = "Replay reads objects of the backup bucket only, and only reads them."
  }

  assert {
    condition = [
      for s in jsondecode(output.replay_policy_json).Statement : s.Resource if s.Sid == "PutRecords"
    ] == [[aws_kinesis_firehose_delivery_stream.this.arn]]
    error_message = "Replay puts records into this stream only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(output.replay_policy_json).Statement :
      alltrue([for a in s.Action : !can(regex("^s3:(Put|Delete)", a))])
    ])
    error_message = "Replay must not write or delete in the backup bucket."
  }
}

run "irsa_role_is_optional" {
  command = apply

  variables {
    create_irsa_role       = false
    irsa_oidc_provider_arn = null
  }

  assert {
    condition     = length(aws_iam_role.irsa) == 0 && output.irsa_role_arn == ""
    error_message = "create_irsa_role = false must create no IRSA role."
  }
}

run "rejects_irsa_without_an_oidc_provider" {
  command = plan

  variables {
    irsa_oidc_provider_arn = null
  }

  expect_failures = [var.irsa_oidc_provider_arn]
}

run "rejects_an_invalid_service_account_name" {
  command = plan

  variables {
    irsa_service_account = "Ingest_SA"
  }

  expect_failures = [var.irsa_service_account]
}

# In China the service endpoints end in amazonaws.com.cn: a ViaService condition naming
# `s3.<region>.amazonaws.com` would never match there, and KMS would refuse every backup write
# (helper-64, L5).
run "kms_conditions_name_the_partitions_own_endpoints" {
  command = apply

  override_data {
    target = data.aws_partition.current
    values = {
      partition  = "aws-cn"
      dns_suffix = "amazonaws.com.cn"
    }
  }

  override_data {
    target = data.aws_region.current
    values = {
      name = "cn-north-1"
    }
  }

  variables {
    newrelic_license_key_secret_kms_key_arn = "arn:aws-cn:kms:cn-north-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000001"
    backup_kms_key_arn                      = "arn:aws-cn:kms:cn-north-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000002"
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.firehose.policy).Statement : s.Condition.StringEquals["kms:ViaService"]
      if contains(["DecryptLicenseKey", "EncryptBackups"], s.Sid)
    ] == ["secretsmanager.cn-north-1.amazonaws.com.cn", "s3.cn-north-1.amazonaws.com.cn"]
    error_message = "The KMS ViaService conditions must name the partition's endpoints."
  }
}
