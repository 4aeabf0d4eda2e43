##########
# General
##########

variable "name" {
  description = "Name of the delivery stream. Also the stem of every other name the module creates (`<name>-transform` function, `<name>-firehose` role, `/aws/kinesisfirehose/<name>` log group, ...). Changing it replaces the stream and the backup bucket: see \"Renaming\" in the README first. IAM role names are global to the account, not per region: the same `name` in two regions of one account collides at apply (EntityAlreadyExists); give each region its own (e.g. `events-euw1`)."
  type        = string

  validation {
    # Firehose allows 1-64 of [a-zA-Z0-9_.-]; Lambda function names disallow `.`. The longest
    # suffix the module appends is 12 characters (`-ingest-irsa` on the IRSA role; IAM role and
    # Lambda function names allow 64), so the stem is held to 1-40 characters. The first one must
    # be a letter or digit: the bucket prefix is the lowercased name with `_` turned into `-`, and
    # S3 bucket names must start with a letter or digit (a leading `-`/`_` fails only at apply).
    # https://docs.aws.amazon.com/firehose/latest/APIReference/API_CreateDeliveryStream.html
    # https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9_-]{0,39}$", var.name))
    error_message = "name must be 1-40 characters of letters, digits, '_' or '-', starting with a letter or digit (it becomes the stream, function, role, log group and bucket names)."
  }

  validation {
    # The generated bucket prefix (lowercased, `_` as `-`) must not start with a prefix S3
    # reserves; a given backup_bucket_name is checked on its own.
    condition     = var.backup_bucket_name != null || !can(regex("^(xn--|sthree-|amzn-s3-demo-)", replace(lower(var.name), "_", "-")))
    error_message = "name starts with a bucket-name prefix S3 reserves (xn--, sthree-, amzn-s3-demo-, in any case, '_' counting as '-'): the backup bucket's generated name would be refused. Choose another name or set backup_bucket_name."
  }
}

variable "tags" {
  description = "Tags added to every resource that supports them."
  type        = map(string)
  default     = {}
}

############
# New Relic
############

variable "newrelic_region" {
  description = "New Relic data center of the account: `US` (https://aws-api.newrelic.com/firehose/v1) or `EU` (https://aws-api.eu.newrelic.com/firehose/v1). Ignored when `newrelic_endpoint_url` is set."
  type        = string
  default     = "US"

  validation {
    condition     = contains(["US", "EU"], var.newrelic_region)
    error_message = "newrelic_region must be \"US\" or \"EU\" (New Relic documents no other Firehose endpoint; FedRAMP accounts must not use Firehose). For any other URL set newrelic_endpoint_url."
  }
}

variable "newrelic_endpoint_url" {
  description = "Overrides the URL derived from `newrelic_region`: any HTTPS endpoint that speaks the Firehose HTTP endpoint protocol (port 443 only). Not New Relic's Log API (`log-api.newrelic.com/log/v1`): see the README."
  type        = string
  default     = null

  validation {
    # The API model: Url is 1-1000 characters matching `https://.*`; only port 443 is accepted.
    # The host ends at the first ':', '/', '?' or '#'; after it an optional `:443`, then a path
    # or a query string (`https://host?token=...` is valid: a custom endpoint may carry a token).
    # https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointConfiguration.html
    # https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html
    condition     = var.newrelic_endpoint_url == null || can(regex("^https://[^/:?#]+(:443)?([/?].*)?$", coalesce(var.newrelic_endpoint_url, "-"))) && length(coalesce(var.newrelic_endpoint_url, "-")) <= 1000
    error_message = "newrelic_endpoint_url must be an https:// URL on port 443, at most 1000 characters: Firehose delivers to nothing else."
  }

  validation {
    condition     = var.newrelic_endpoint_url == null || !can(regex("log-api\\.", coalesce(var.newrelic_endpoint_url, "-")))
    error_message = "newrelic_endpoint_url points at New Relic's Log API, which does not speak the Firehose protocol (other auth header, other body, answers 202). Use the Firehose endpoint: https://aws-api.newrelic.com/firehose/v1 (US) or https://aws-api.eu.newrelic.com/firehose/v1 (EU)."
  }
}

variable "newrelic_license_key_secret_arn" {
  description = "ARN of a Secrets Manager secret holding the New Relic license (ingest) key as JSON `{\"api_key\": \"<key>\"}`. Preferred over `newrelic_license_key`: the key stays out of Terraform state. Exactly one of the two must be set."
  type        = string
  default     = null

  validation {
    # The complete ARN, with the six random characters Secrets Manager appends to the name.
    # Firehose may accept a partial ARN, but the role's grant names this exact ARN, which
    # then matches no secret: every GetSecretValue would be denied and every batch backed up.
    condition     = var.newrelic_license_key_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", coalesce(var.newrelic_license_key_secret_arn, "-")))
    error_message = "newrelic_license_key_secret_arn must be the complete ARN of a Secrets Manager secret, with the six random characters after its name (arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf, as `aws secretsmanager describe-secret` prints it)."
  }

  validation {
    condition     = (var.newrelic_license_key_secret_arn == null) != (var.newrelic_license_key == null)
    error_message = "Set exactly one of newrelic_license_key_secret_arn (recommended) or newrelic_license_key."
  }
}

variable "newrelic_license_key_secret_kms_key_arn" {
  description = "ARN of the customer-managed KMS key that encrypts the license-key secret, if any; the Firehose role gets `kms:Decrypt` on it through Secrets Manager only. Leave null for the AWS-managed `aws/secretsmanager` key. Only with `newrelic_license_key_secret_arn`."
  type        = string
  default     = null

  validation {
    condition     = var.newrelic_license_key_secret_kms_key_arn == null || can(regex(local.kms_key_arn_pattern, coalesce(var.newrelic_license_key_secret_kms_key_arn, "-")))
    error_message = "newrelic_license_key_secret_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias."
  }

  validation {
    # Without a secret the key would be granted for nothing (the policy statement is only made
    # for a secret), so a key on its own is a configuration mistake.
    condition     = var.newrelic_license_key_secret_kms_key_arn == null || var.newrelic_license_key_secret_arn != null
    error_message = "newrelic_license_key_secret_kms_key_arn is the key of the license-key secret: set it only together with newrelic_license_key_secret_arn."
  }
}

variable "newrelic_license_key" {
  description = "The New Relic license (ingest) key, sent as Firehose's access key. Stored in Terraform state: prefer `newrelic_license_key_secret_arn`."
  type        = string
  default     = null
  sensitive   = true

  validation {
    # X-Amz-Firehose-Access-Key: 0-4096 characters.
    # https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html
    # Empty would pass the API and make New Relic answer every request 403.
    # (`try`: `||` does not short-circuit, and coalesce() would skip an empty string.)
    condition     = var.newrelic_license_key == null || try(trimspace(var.newrelic_license_key) != "" && length(var.newrelic_license_key) <= 4096, false)
    error_message = "newrelic_license_key must be a New Relic license key: not empty, at most 4096 characters (Firehose's access-key limit)."
  }
}

variable "common_attributes" {
  description = "Attributes Firehose adds to every request (`X-Amz-Firehose-Common-Attributes`); New Relic puts them on every log event, e.g. `{ env = \"prod\", service = \"checkout\" }`."
  type        = map(string)
  default     = {}

  validation {
    # 0-50 entries; name 1-256 characters, value 0-1024 characters.
    # https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointCommonAttribute.html
    condition = length(var.common_attributes) <= 50 && alltrue([
      for k, v in var.common_attributes : length(k) >= 1 && length(k) <= 256 && length(v) <= 1024
    ])
    error_message = "common_attributes holds at most 50 entries, names of 1-256 characters and values of at most 1024 characters."
  }
}

variable "buffering_size_mib" {
  description = "HTTP endpoint buffer size in MiB, measured before compression. New Relic accepts at most 1 MB per POST, so 1 (the smallest Firehose allows) is the only value accepted for New Relic URLs; other endpoints may use 1-64."
  type        = number
  default     = 1

  validation {
    # Firehose: SizeInMBs 1-64. New Relic: use 1 MiB with GZIP, larger buffers get 413.
    # https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointBufferingHints.html
    # https://docs.newrelic.com/docs/logs/forward-logs/stream-logs-using-kinesis-data-firehose/
    condition     = floor(var.buffering_size_mib) == var.buffering_size_mib && var.buffering_size_mib >= 1 && var.buffering_size_mib <= 64
    error_message = "buffering_size_mib must be a whole number of MiB from 1 to 64 (Firehose's range)."
  }

  validation {
    condition     = var.buffering_size_mib <= 1 || (var.newrelic_endpoint_url != null && !can(regex("newrelic\\.com|nr-data\\.net", coalesce(var.newrelic_endpoint_url, "-"))))
    error_message = "buffering_size_mib must be 1 for New Relic: it accepts at most 1 MB per POST and answers 413 to larger requests, which Firehose does not retry."
  }
}

variable "buffering_interval_seconds" {
  description = "HTTP endpoint buffer interval in seconds: Firehose delivers when `buffering_size_mib` or this much time is reached, whichever comes first."
  type        = number
  default     = 60

  validation {
    # IntervalInSeconds 0-900.
    # https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointBufferingHints.html
    condition     = floor(var.buffering_interval_seconds) == var.buffering_interval_seconds && var.buffering_interval_seconds >= 0 && var.buffering_interval_seconds <= 900
    error_message = "buffering_interval_seconds must be a whole number from 0 to 900."
  }
}

variable "retry_duration_seconds" {
  description = "How long Firehose keeps retrying a failed delivery to New Relic before it writes the batch to the backup bucket (0 = no retries). The clock starts after the first failed attempt."
  type        = number
  default     = 60

  validation {
    # DurationInSeconds 0-7200.
    # https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointRetryOptions.html
    condition     = floor(var.retry_duration_seconds) == var.retry_duration_seconds && var.retry_duration_seconds >= 0 && var.retry_duration_seconds <= 7200
    error_message = "retry_duration_seconds must be a whole number from 0 to 7200 (Firehose's range)."
  }
}

#############
# S3 backup
#############

variable "s3_backup_mode" {
  description = "What goes to the backup bucket: `FailedDataOnly` (records New Relic did not accept in time, and records the transform failed) or `AllData` (every source record as well)."
  type        = string
  default     = "FailedDataOnly"

  validation {
    condition     = contains(["FailedDataOnly", "AllData"], var.s3_backup_mode)
    error_message = "s3_backup_mode must be \"FailedDataOnly\" or \"AllData\"."
  }
}

variable "backup_bucket_name" {
  description = "Name of the backup bucket to create. Null: a unique name starting with `<name>-backup-`."
  type        = string
  default     = null

  validation {
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
    condition     = var.backup_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", coalesce(var.backup_bucket_name, "-")))
    error_message = "backup_bucket_name must be 3-63 characters of lowercase letters, digits, '.' or '-', starting and ending with a letter or digit."
  }

  validation {
    condition = var.backup_bucket_name == null || !(
      strcontains(coalesce(var.backup_bucket_name, "-"), "..") ||
      can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", coalesce(var.backup_bucket_name, "-")))
    )
    error_message = "backup_bucket_name must not contain two adjacent periods or look like an IP address (S3 bucket naming rules)."
  }

  validation {
    # Reserved by S3 for its own names (access point aliases, Object Lambda, Multi-Region Access
    # Points, directory buckets; `--table-s3` is reserved for table buckets). Such a name passes
    # plan and fails only at apply.
    condition     = var.backup_bucket_name == null || !can(regex("^(xn--|sthree-|amzn-s3-demo-)|(-s3alias|--ol-s3|[.]mrap|--x-s3|--table-s3)$", coalesce(var.backup_bucket_name, "-")))
    error_message = "backup_bucket_name must not start with xn--, sthree- or amzn-s3-demo-, nor end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3: S3 reserves them."
  }
}

variable "backup_force_destroy" {
  description = "Let `terraform destroy` delete the backup bucket with the failed records still in it. Keep false in production: those objects are the only copy."
  type        = bool
  default     = false
}

variable "backup_expiration_days" {
  description = "Days after which the `AllData` copies of source records (under `backup_prefix`) expire: they become noncurrent versions, which `backup_noncurrent_expiration_days` later are deleted for good. Records that did not reach New Relic are kept by `failed_records_expiration_days` instead."
  type        = number
  default     = 30

  validation {
    condition     = floor(var.backup_expiration_days) == var.backup_expiration_days && var.backup_expiration_days >= 1
    error_message = "backup_expiration_days must be a whole number of at least 1."
  }
}

variable "failed_records_expiration_days" {
  description = "Days after which records that did not reach New Relic (under the fixed start of `backup_error_output_prefix`, `failed/` by default) expire. Null (the default): never. They are the only copy of those records, and one that expires before it was replayed is lost without any alarm; set a number only with a replay routine that runs well within it."
  type        = number
  default     = null

  validation {
    condition     = var.failed_records_expiration_days == null || try(floor(var.failed_records_expiration_days) == var.failed_records_expiration_days && var.failed_records_expiration_days >= 1, false)
    error_message = "failed_records_expiration_days must be null (never) or a whole number of at least 1."
  }
}

variable "backup_noncurrent_expiration_days" {
  description = "Days a noncurrent object version (an expired or deleted backup object) is kept before S3 deletes it for good. AllData copies therefore live about `backup_expiration_days` + this; it is also how long an object deleted by hand, failed records included, can be restored."
  type        = number
  default     = 1

  validation {
    condition     = floor(var.backup_noncurrent_expiration_days) == var.backup_noncurrent_expiration_days && var.backup_noncurrent_expiration_days >= 1
    error_message = "backup_noncurrent_expiration_days must be a whole number of at least 1."
  }
}

variable "backup_kms_key_arn" {
  description = "ARN of a customer-managed KMS key for the backup bucket's default encryption and Firehose's writes. Null: SSE-S3 (AES256)."
  type        = string
  default     = null

  validation {
    condition     = var.backup_kms_key_arn == null || can(regex(local.kms_key_arn_pattern, coalesce(var.backup_kms_key_arn, "-")))
    error_message = "backup_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias."
  }
}

variable "backup_prefix" {
  description = "Key prefix for source records backed up with `s3_backup_mode = \"AllData\"`. Firehose appends `yyyy/MM/dd/HH/` when the prefix has no `!{...}` expression. Must not contain `!{firehose:error-output-type}`."
  type        = string
  default     = "source/"

  validation {
    # https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    condition     = !strcontains(var.backup_prefix, "!{firehose:error-output-type}") && endswith(var.backup_prefix, "/") && length(var.backup_prefix) <= 1024
    error_message = "backup_prefix must end with '/', be at most 1024 characters and must not contain !{firehose:error-output-type} (only the error prefix may)."
  }

  # The AllData copies expire by a lifecycle rule on this prefix's fixed start (S3 filters by
  # literal prefix). It must be a folder of its own, or the rule would expire failed records too.
  validation {
    condition = (
      split("!{", var.backup_prefix)[0] != "" &&
      !startswith(split("!{", var.backup_error_output_prefix)[0], split("!{", var.backup_prefix)[0])
    )
    error_message = "backup_prefix must start with a fixed folder (such as the default \"source/\") that the fixed start of backup_error_output_prefix does not also start with: the AllData copies expire by that literal prefix, and failed records under it would expire with them."
  }
}

variable "backup_error_output_prefix" {
  description = "Key prefix for failed records. Must contain `!{firehose:error-output-type}`, which becomes `http-endpoint-failed` or `processing-failed`; the replay tool reads these."
  type        = string
  default     = "failed/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"

  validation {
    # https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    condition     = strcontains(var.backup_error_output_prefix, "!{firehose:error-output-type}") && endswith(var.backup_error_output_prefix, "/") && length(var.backup_error_output_prefix) <= 1024
    error_message = "backup_error_output_prefix must contain !{firehose:error-output-type}, end with '/' and be at most 1024 characters."
  }

  # Failed records are kept (or expired) by a lifecycle rule on this prefix's fixed start, and
  # the AllData copies' rule must not cover it: with no fixed start, any data prefix could
  # (`http-endpoint-failed/`, `2027/`).
  validation {
    condition     = split("!{", var.backup_error_output_prefix)[0] != ""
    error_message = "backup_error_output_prefix must start with a fixed folder (such as the default \"failed/\"), not an expression: the lifecycle rules tell failed records from the AllData copies by that literal prefix."
  }
}

#####################
# Lambda (transform)
#####################

variable "lambda_zip_path" {
  description = "Path of the transform's deployment zip (`bootstrap` at its root), built outside Terraform by `scripts/build-lambda-zip.sh` into `target/lambda/transform/bootstrap.zip` (x86_64), or by `scripts/build-lambda-zip.sh arm64` into `target/lambda-arm64/transform/bootstrap.zip` (for `lambda_architecture = \"arm64\"`)."
  type        = string

  validation {
    condition     = endswith(var.lambda_zip_path, ".zip") && fileexists(var.lambda_zip_path)
    error_message = "lambda_zip_path must name an existing .zip file: build it first with scripts/build-lambda-zip.sh (it writes target/lambda/transform/bootstrap.zip)."
  }
}

variable "lambda_architecture" {
  description = "Instruction set the zip was built for: `arm64` (`cargo lambda build --arm64`) or `x86_64`. A mismatch makes every invocation fail, and every record lands in `processing-failed/`."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "lambda_memory_size_mb" {
  description = "Memory of the transform function in MB (CPU scales with it)."
  type        = number
  default     = 256

  validation {
    # https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
    condition     = floor(var.lambda_memory_size_mb) == var.lambda_memory_size_mb && var.lambda_memory_size_mb >= 128 && var.lambda_memory_size_mb <= 10240
    error_message = "lambda_memory_size_mb must be a whole number from 128 to 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of the transform function. Firehose waits at most 5 minutes for a transform invocation."
  type        = number
  default     = 60

  validation {
    # https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    condition     = floor(var.lambda_timeout_seconds) == var.lambda_timeout_seconds && var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 300
    error_message = "lambda_timeout_seconds must be a whole number from 1 to 300 (Firehose's 5-minute limit for a transform)."
  }
}

variable "lambda_environment" {
  description = "Extra environment variables of the transform function (e.g. `RUST_LOG`). Never put secrets here."
  type        = map(string)
  default     = {}
}

variable "lambda_log_retention_days" {
  description = "Retention of the transform's log group `/aws/lambda/<name>-transform`."
  type        = number
  default     = 30

  validation {
    # https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.lambda_log_retention_days)
    error_message = "lambda_log_retention_days must be one of CloudWatch Logs' values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "processor_buffer_size_mb" {
  description = "Firehose's buffer before it invokes the transform, in MB. The transform's 6 MB response limit applies to what it returns."
  type        = number
  default     = 1

  validation {
    # BufferSizeInMBs 0.2-3.
    # https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    condition     = var.processor_buffer_size_mb >= 0.2 && var.processor_buffer_size_mb <= 3
    error_message = "processor_buffer_size_mb must be from 0.2 to 3 (Firehose's range for Lambda processors)."
  }
}

variable "processor_buffer_interval_seconds" {
  description = "Longest time Firehose buffers records before it invokes the transform."
  type        = number
  default     = 60

  validation {
    # BufferIntervalInSeconds 0-900.
    # https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    condition     = floor(var.processor_buffer_interval_seconds) == var.processor_buffer_interval_seconds && var.processor_buffer_interval_seconds >= 0 && var.processor_buffer_interval_seconds <= 900
    error_message = "processor_buffer_interval_seconds must be a whole number from 0 to 900."
  }
}

variable "processor_number_of_retries" {
  description = "How often Firehose retries a failed transform invocation before the batch goes to `processing-failed/` (the seed used 3, Firehose's default)."
  type        = number
  default     = 3

  validation {
    # AWS publishes no upper bound; only whole, non-negative numbers make sense.
    # https://docs.aws.amazon.com/firehose/latest/APIReference/API_ProcessorParameter.html
    condition     = floor(var.processor_number_of_retries) == var.processor_number_of_retries && var.processor_number_of_retries >= 0
    error_message = "processor_number_of_retries must be a whole number of at least 0."
  }
}

##############################
# Delivery-stream encryption
##############################

variable "stream_encryption_enabled" {
  description = "Encrypt records at rest inside Firehose (server-side encryption of the Direct PUT stream)."
  type        = bool
  default     = true
}

variable "stream_kms_key_arn" {
  description = "Customer-managed KMS key for the stream's server-side encryption. Null: an AWS-owned key. With a key, producers need `kms:GenerateDataKey` and `kms:Decrypt` on it (AWS rule for streams created from 2026-04-20); the IRSA role gets them. Use a key for this stream alone, whose key policy lets IAM policies grant its use (README)."
  type        = string
  default     = null

  validation {
    condition     = var.stream_kms_key_arn == null || can(regex(local.kms_key_arn_pattern, coalesce(var.stream_kms_key_arn, "-")))
    error_message = "stream_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias."
  }

  validation {
    # Without SSE the key would be ignored by the stream yet granted to the IRSA role.
    condition     = var.stream_kms_key_arn == null || var.stream_encryption_enabled
    error_message = "stream_kms_key_arn needs stream_encryption_enabled = true (the key is only used for server-side encryption)."
  }
}

#####################
# CloudWatch logging
#####################

variable "firehose_log_retention_days" {
  description = "Retention of the delivery stream's error log group `/aws/kinesisfirehose/<name>`."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.firehose_log_retention_days)
    error_message = "firehose_log_retention_days must be one of CloudWatch Logs' values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

#################################
# IRSA (the front door's role)
#################################

variable "create_irsa_role" {
  description = "Create the IAM role the front door's Kubernetes service account assumes (IRSA) to put records into this stream."
  type        = bool
  default     = true
}

variable "irsa_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (`arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>`). Required when `create_irsa_role` is true."
  type        = string
  default     = null

  validation {
    condition     = var.irsa_oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", coalesce(var.irsa_oidc_provider_arn, "-")))
    error_message = "irsa_oidc_provider_arn must be an IAM OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/<issuer host and path>)."
  }

  validation {
    condition     = !var.create_irsa_role || var.irsa_oidc_provider_arn != null
    error_message = "irsa_oidc_provider_arn is required when create_irsa_role is true (or set create_irsa_role = false)."
  }
}

variable "irsa_namespace" {
  description = "Kubernetes namespace of the front door's service account."
  type        = string
  default     = "ingest"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.irsa_namespace))
    error_message = "irsa_namespace must be a Kubernetes namespace name (DNS-1123 label: lowercase letters, digits, '-', at most 63 characters)."
  }
}

variable "irsa_service_account" {
  description = "Name of the front door's Kubernetes service account (the Helm chart's `serviceAccount.name`)."
  type        = string
  default     = "ingest"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.irsa_service_account))
    error_message = "irsa_service_account must be a Kubernetes object name (DNS-1123 subdomain: lowercase letters, digits, '-', '.')."
  }
}

#########
# Alarms
#########

variable "create_alarms" {
  description = "Create the CloudWatch alarms (and the metric filters on the error log group they use). Without `alarm_sns_topic_arn` or `create_sns_topic` they notify nobody; a `check` warns about that at plan time."
  type        = bool
  default     = true
}

variable "create_sns_topic" {
  description = "Create an SNS topic `<name>-alarms` that the alarms notify. Ignored when `alarm_sns_topic_arn` is set."
  type        = bool
  default     = false
}

variable "alarm_sns_topic_arn" {
  description = "Existing SNS topic the alarms notify (alarm and OK). Null: the topic from `create_sns_topic`, or no notifications."
  type        = string
  default     = null

  validation {
    # Topic names: 1-256 of letters, digits, '-' and '_' (FIFO topics end in `.fifo`).
    # https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html
    condition     = var.alarm_sns_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$", coalesce(var.alarm_sns_topic_arn, "-")))
    error_message = "alarm_sns_topic_arn must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic name>)."
  }
}

variable "alarm_period_seconds" {
  description = "Period of every alarm's metric in seconds. AWS's two statements differ: the developer guide says Firehose pushes metrics every five minutes, the PutRecord API reference says it publishes them in one-minute intervals (see the README); 300 works with either, 60 may see gaps."
  type        = number
  default     = 300

  validation {
    condition     = contains([60, 300, 900, 3600], var.alarm_period_seconds)
    error_message = "alarm_period_seconds must be 60, 300, 900 or 3600."
  }
}

variable "alarm_evaluation_periods" {
  description = "Consecutive breaching periods before a ratio alarm (HTTP success, transform success, S3 write success) or the Lambda errors alarm fires; other count alarms fire on the first, the delivery error logs have `alarm_delivery_error_evaluation_periods`, freshness has `alarm_data_freshness_evaluation_periods`."
  type        = number
  default     = 3

  validation {
    condition     = floor(var.alarm_evaluation_periods) == var.alarm_evaluation_periods && var.alarm_evaluation_periods >= 1
    error_message = "alarm_evaluation_periods must be a whole number of at least 1."
  }
}

variable "alarm_delivery_error_evaluation_periods" {
  description = "Consecutive periods with errors other than `S3.*` (`HttpEndpoint.*`, `Lambda.*`, secret access) in the stream's error log before `delivery_error_logs` fires. Firehose logs every failed attempt and retries, and the counts cannot tell a blip the retries got past from a batch that ran out of `retry_duration_seconds` and went to the backup; this alarm is the backstop for such records (with `AllData`, or when the stream emits no S3 metrics, `backup_records` sees nothing). 1 pages on any error period; raise it (e.g. to 3) to page only on errors that last, once `backup_records` is known to work."
  type        = number
  default     = 1

  validation {
    condition     = floor(var.alarm_delivery_error_evaluation_periods) == var.alarm_delivery_error_evaluation_periods && var.alarm_delivery_error_evaluation_periods >= 1
    error_message = "alarm_delivery_error_evaluation_periods must be a whole number of at least 1."
  }
}

variable "alarm_backup_records_threshold" {
  description = "Alarm when more records than this are written to the backup bucket in one period (the seed's alarm; every such record missed New Relic). Only with `s3_backup_mode = \"FailedDataOnly\"`: with AllData every record is backed up, so the count says nothing about failures."
  type        = number
  default     = 0

  validation {
    condition     = var.alarm_backup_records_threshold >= 0
    error_message = "alarm_backup_records_threshold must be at least 0."
  }
}

variable "alarm_http_success_min" {
  description = "Alarm when `DeliveryToHttpEndpoint.Success` (average, 0-1) stays below this. A small dip is retried, not lost."
  type        = number
  default     = 0.95

  validation {
    condition     = var.alarm_http_success_min > 0 && var.alarm_http_success_min <= 1
    error_message = "alarm_http_success_min is a ratio: greater than 0, at most 1."
  }
}

variable "alarm_data_freshness_max_seconds" {
  description = "Alarm when `DeliveryToHttpEndpoint.DataFreshness` (age of the oldest undelivered record, Maximum) exceeds this many seconds. AWS recommends alarming when freshness exceeds the buffering limit. Unset (null): derived from the settings a healthy record waits through, `max(600, processor_buffer_interval_seconds + buffering_interval_seconds + retry_duration_seconds + 300)` (300 s for the waits on New Relic's answers, which the retry duration does not count), so 600 s at the defaults and more when `retry_duration_seconds` is raised. A value you set must be above the three intervals' sum, or the alarm fires during normal retries."
  type        = number
  default     = null

  validation {
    condition     = var.alarm_data_freshness_max_seconds == null || try(var.alarm_data_freshness_max_seconds >= 60, false)
    error_message = "alarm_data_freshness_max_seconds must be at least 60 (the buffer interval alone can reach that)."
  }

  validation {
    condition     = var.alarm_data_freshness_max_seconds == null || try(var.alarm_data_freshness_max_seconds > var.processor_buffer_interval_seconds + var.buffering_interval_seconds + var.retry_duration_seconds, false)
    error_message = "alarm_data_freshness_max_seconds must be above processor_buffer_interval_seconds + buffering_interval_seconds + retry_duration_seconds: a record can wait that long while delivery is healthy, so the alarm would fire during normal retries. Leave it unset to derive it."
  }
}

variable "alarm_data_freshness_evaluation_periods" {
  description = "Consecutive breaching periods before the freshness alarm fires. Freshness is already an age, so one period suffices: with the defaults the alarm fires at most one period (5 min) after the oldest record passes 600 s."
  type        = number
  default     = 1

  validation {
    condition     = floor(var.alarm_data_freshness_evaluation_periods) == var.alarm_data_freshness_evaluation_periods && var.alarm_data_freshness_evaluation_periods >= 1
    error_message = "alarm_data_freshness_evaluation_periods must be a whole number of at least 1."
  }
}

variable "alarm_processing_success_min" {
  description = "Alarm when `ExecuteProcessing.Success` (average, 0-1: successful transform invocations over all) stays below this."
  type        = number
  default     = 0.99

  validation {
    condition     = var.alarm_processing_success_min > 0 && var.alarm_processing_success_min <= 1
    error_message = "alarm_processing_success_min is a ratio: greater than 0, at most 1."
  }
}

variable "alarm_lambda_errors_threshold" {
  description = "Alarm when the transform function reports more errors than this in each of `alarm_evaluation_periods` periods in a row (Firehose retries failed invocations)."
  type        = number
  default     = 0

  validation {
    condition     = var.alarm_lambda_errors_threshold >= 0
    error_message = "alarm_lambda_errors_threshold must be at least 0."
  }
}

variable "alarm_lambda_throttles_threshold" {
  description = "Alarm when the transform function is throttled more often than this in one period."
  type        = number
  default     = 0

  validation {
    condition     = var.alarm_lambda_throttles_threshold >= 0
    error_message = "alarm_lambda_throttles_threshold must be at least 0."
  }
}

variable "alarm_throttled_records_threshold" {
  description = "Alarm when Firehose throttles more producer records than this in one period (`ThrottledRecords`: the front door is over the stream's quota)."
  type        = number
  default     = 0

  validation {
    condition     = var.alarm_throttled_records_threshold >= 0
    error_message = "alarm_throttled_records_threshold must be at least 0."
  }
}

variable "alarm_error_log_events_threshold" {
  description = "Alarm when more error events than this reach the stream's error log group in a period: every code but `S3.*` (delivery to New Relic, the license-key secret, the transform; for `alarm_delivery_error_evaluation_periods` periods in a row), and `S3.*` codes (writes to the backup bucket; one period). Firehose samples these logs when errors are frequent, so any count is a signal. Also the threshold for records the transform answered ProcessingFailed (`transform_failed_records`, counted from the function's log)."
  type        = number
  default     = 0

  validation {
    condition     = var.alarm_error_log_events_threshold >= 0
    error_message = "alarm_error_log_events_threshold must be at least 0."
  }
}

variable "alarm_quota_utilization_max" {
  description = "Early warning before `ThrottledRecords`: alarm when incoming bytes, records or put requests per second (Sum per period / period) exceed this share of the stream's `BytesPerSecondLimit`, `RecordsPerSecondLimit` or `PutRequestsPerSecondLimit`."
  type        = number
  default     = 0.8

  validation {
    condition     = var.alarm_quota_utilization_max > 0 && var.alarm_quota_utilization_max <= 1
    error_message = "alarm_quota_utilization_max is a ratio: greater than 0, at most 1."
  }
}
