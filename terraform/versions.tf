terraform {
  # 1.9: validation blocks may refer to other variables (the license-key, secret-key, stream-key
  # and IRSA inputs). It also covers `check` blocks (1.5, alarms.tf) and `terraform test` with
  # mock providers (1.7).
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.59.0 added `secrets_manager_configuration` to `http_endpoint_configuration`
      # (hashicorp/terraform-provider-aws#38245). 6.x is untested here: only 5.x is pinned.
      version = "~> 5.59"
    }
  }
}
