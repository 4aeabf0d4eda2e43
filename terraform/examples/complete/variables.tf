variable "region" {
  description = "AWS region of the delivery stream and the EKS cluster."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name of the delivery stream (and stem of the other names)."
  type        = string
  default     = "events-to-newrelic"
}

variable "newrelic_region" {
  description = "New Relic data center of the account: US or EU."
  type        = string
  default     = "EU"
}

variable "newrelic_license_key_secret_arn" {
  description = "Secrets Manager secret holding {\"api_key\": \"<New Relic license key>\"}."
  type        = string
}

variable "eks_oidc_provider_arn" {
  description = "IAM OIDC provider of the EKS cluster the front door runs in."
  type        = string
}

variable "lambda_zip_path" {
  description = "The transform's zip, from scripts/build-lambda-zip.sh (run from the repository root)."
  type        = string
  default     = "../../../target/lambda/transform/bootstrap.zip"
}

variable "lambda_architecture" {
  description = "Instruction set the zip was built for: arm64 or x86_64."
  type        = string
  default     = "x86_64"
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic; null for none."
  type        = string
  default     = null
}
