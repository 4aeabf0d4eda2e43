##########################
# Transform (Rust Lambda)
##########################

# The Firehose data-transformation function: services/transform, built by
# scripts/build-lambda-zip.sh into a zip holding the `bootstrap` executable. The zip is built
# outside Terraform (no archive provider), so the hash below changes exactly when the build does.
resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:Firehose invokes the transform synchronously; a DLQ only applies to asynchronous invocations. Failed batches go to the backup bucket under processing-failed/.
  #checkov:skip=CKV_AWS_117:The function calls no network service (it only reshapes records Firehose hands it), so it gains nothing from a VPC and would need NAT or endpoints to log.
  #checkov:skip=CKV_AWS_115:A concurrency cap would throttle Firehose's invocations and push whole batches to processing-failed/; Firehose already bounds concurrency by its own buffering.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (only settings such as RUST_LOG); Lambda encrypts it at rest with an AWS-managed key.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the platform may not have; the zip is built from this repository by CI and pinned by source_code_hash.
  function_name = local.function_name
  description   = "Firehose transform for ${var.name} (services/transform)"
  role          = aws_iam_role.lambda.arn

  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  # Every code or configuration change publishes a new version; the `live` alias below follows it
  # and is what Firehose invokes (never $LATEST).
  publish       = true
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.lambda_architecture]

  memory_size = var.lambda_memory_size_mb
  timeout     = var.lambda_timeout_seconds

  dynamic "environment" {
    for_each = length(var.lambda_environment) > 0 ? [1] : []
    content {
      variables = var.lambda_environment
    }
  }

  tracing_config {
    # Keep any trace header Firehose passes on without sampling (and paying for) traces ourselves.
    mode = "PassThrough"
  }

  tags = var.tags

  # The log group must exist (with its retention) before the first invocation creates it.
  depends_on = [
    aws_cloudwatch_log_group.lambda,
    aws_iam_role_policy.lambda,
  ]
}

# What Firehose invokes: a qualified ARN (`function:<name>:live`), so the Firehose role is granted
# that one ARN instead of `function:<name>:*`. An alias rather than the version's qualified_arn:
# a deploy then only moves the alias (one atomic update). With the version ARN in the stream and
# the policy, Terraform would narrow the policy to the new version before the stream switches to
# it (the stream waits for the policy), and invocations of the old version in between would be
# denied and their batches sent to processing-failed/.
# https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html (grants on
# `function:function-name:function-version`)
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-aliases.html
resource "aws_lambda_alias" "this" {
  name             = "live"
  description      = "The version Firehose ${var.name} invokes"
  function_name    = aws_lambda_function.this.function_name
  function_version = aws_lambda_function.this.version
}

resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_158:The transform logs counts and error reasons, not record payloads; a customer-managed key adds a key policy to maintain for no gain. AWS encrypts log groups at rest by default.
  #checkov:skip=CKV_AWS_338:Retention is an input (lambda_log_retention_days, default 30 days); these are operational logs, not an audit trail.
  name              = local.lambda_log_group_name
  retention_in_days = var.lambda_log_retention_days
  tags              = var.tags
}
