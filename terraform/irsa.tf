##############################
# IRSA: the front door's role
##############################

# The role the front door's Kubernetes service account assumes through the EKS cluster's OIDC
# provider (IAM Roles for Service Accounts). It may put records into this stream and describe it
# (the readiness check), nothing else. Its ARN goes into the Helm chart's service-account
# annotation `eks.amazonaws.com/role-arn`.
# https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html
resource "aws_iam_role" "irsa" {
  count = var.create_irsa_role ? 1 : 0

  name               = "${var.name}-ingest-irsa"
  description        = "Front door (${var.irsa_namespace}/${var.irsa_service_account}) -> Firehose ${var.name}"
  assume_role_policy = local.irsa_assume_role_policy
  tags               = var.tags
}

resource "aws_iam_role_policy" "irsa" {
  count = var.create_irsa_role ? 1 : 0

  name   = "put-records"
  role   = aws_iam_role.irsa[0].id
  policy = local.irsa_policy
}

locals {
  # The condition keys are named after the issuer: the provider ARN without
  # "arn:aws:iam::<account>:oidc-provider/", e.g. "oidc.eks.eu-west-1.amazonaws.com/id/ABC".
  irsa_issuer = var.irsa_oidc_provider_arn == null ? "" : element(split(":oidc-provider/", var.irsa_oidc_provider_arn), 1)

  irsa_assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "ServiceAccountAssumeRole"
      Effect    = "Allow"
      Principal = { Federated = var.irsa_oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${local.irsa_issuer}:sub" = "system:serviceaccount:${var.irsa_namespace}:${var.irsa_service_account}"
          "${local.irsa_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })

  irsa_statements = concat(
    [{
      Sid      = "PutRecords"
      Effect   = "Allow"
      Action   = ["firehose:PutRecord", "firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"]
      Resource = [aws_kinesis_firehose_delivery_stream.this.arn]
    }],
    # Streams encrypted with a customer-managed key: since 2026-04-20 (new streams; existing ones
    # from 2027-02-28) PutRecord/PutRecordBatch callers need these on the key, or they get
    # AccessDenied from KMS. No kms:ViaService condition: AWS's notice names none, and a wrong
    # guess here would reject every record at the front door. The notice ("Enhanced security
    # controls for Amazon Data Firehose", AWS Health, 2026-04-20) is quoted in
    # https://github.com/ministryofjustice/modernisation-platform/issues/12960
    local.stream_cmk ? [{
      Sid      = "EncryptRecordsWithStreamKey"
      Effect   = "Allow"
      Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
      Resource = [var.stream_kms_key_arn]
    }] : [],
  )

  irsa_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.irsa_statements
  })
}
