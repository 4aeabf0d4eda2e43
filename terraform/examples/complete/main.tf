# The whole AWS side for one environment: Firehose -> New Relic (EU) through the Rust transform,
# failed records in S3, the front door's IRSA role, alarms to an SNS topic.
#
#   scripts/build-lambda-zip.sh                      # from the repository root
#   cd terraform/examples/complete
#   terraform init && terraform apply -var newrelic_license_key_secret_arn=... -var eks_oidc_provider_arn=...

provider "aws" {
  region = var.region
}

module "firehose_newrelic" {
  source = "../../"

  name = var.name

  newrelic_region                 = var.newrelic_region
  newrelic_license_key_secret_arn = var.newrelic_license_key_secret_arn
  common_attributes = {
    env     = "prod"
    service = "ingest"
  }

  lambda_zip_path     = var.lambda_zip_path
  lambda_architecture = var.lambda_architecture
  lambda_environment  = { RUST_LOG = "info" }

  irsa_oidc_provider_arn = var.eks_oidc_provider_arn
  irsa_namespace         = "ingest"
  irsa_service_account   = "ingest"

  create_sns_topic = true

  tags = {
    project = "firehose-newrelic"
  }
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = module.firehose_newrelic.alarm_sns_topic_arn
  protocol  = "email"
  endpoint  = var.alarm_email
}
