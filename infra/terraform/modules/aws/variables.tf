variable "name" {
  description = "Name prefix of every resource this module creates (functions, roles, queue, log groups)."
  type        = string
  default     = "natlake"
}

variable "bucket_name" {
  description = "Name of the S3 bucket that holds raw/, lake/, _state/ and audit/ (created by this module; globally unique)."
  type        = string
}

variable "store_prefix" {
  description = "Optional key prefix inside the bucket under which the store lives (no leading or trailing slash); \"\" for the bucket root."
  type        = string
  default     = ""

  validation {
    condition     = !startswith(var.store_prefix, "/") && !endswith(var.store_prefix, "/")
    error_message = "store_prefix must not start or end with a slash."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects. Keep false in production: the lake is evidence."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of a customer-managed KMS key for SSE-KMS on the bucket and the failure queue; null uses SSE-S3 (AES256) and SQS-managed encryption."
  type        = string
  default     = null
}

variable "raw_expiration_days" {
  description = "Days after which raw batches (raw/) and their done markers (_state/normalized/) expire. Raw is the replay source: keep it at least as long as you may need to re-normalize."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_expiration_days >= 1
    error_message = "raw_expiration_days must be at least 1."
  }
}

variable "lake_retention_days" {
  description = "Days after which Parquet objects in lake/ (and _state/carry/, _state/dead-letter/, _state/accepted/, _state/quarantine/) expire: the retention your data-retention obligations set. No default on purpose."
  type        = number

  validation {
    condition     = var.lake_retention_days >= 1
    error_message = "lake_retention_days must be at least 1."
  }
}

variable "audit_retention_days" {
  description = "Days after which the lookup audit records (audit/) expire."
  type        = number
  default     = 730
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept (versioning is on: re-normalizing and compaction replace objects)."
  type        = number
  default     = 7
}

variable "object_lock_days" {
  description = "Default Object Lock retention in days for every new object version (0 disables Object Lock). Object Lock can only be enabled when the bucket is created."
  type        = number
  default     = 0

  validation {
    condition     = var.object_lock_days >= 0
    error_message = "object_lock_days must be 0 (off) or a positive number of days."
  }
}

variable "object_lock_mode" {
  description = "Object Lock mode when object_lock_days > 0: COMPLIANCE (nobody, root included, can shorten or remove it) or GOVERNANCE."
  type        = string
  default     = "COMPLIANCE"

  validation {
    condition     = contains(["COMPLIANCE", "GOVERNANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be COMPLIANCE or GOVERNANCE."
  }
}

variable "artifacts_dir" {
  description = "Directory holding the Lambda zips as scripts/package-lambdas.sh lays them out: <dir>/<function>/bootstrap.zip (e.g. target/lambda/arm64)."
  type        = string
}

variable "architecture" {
  description = "Lambda instruction set the zips were built for: arm64 (cheaper per GB-second) or x86_64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "normalize" {
  description = "normalize function sizing: memory in MB, timeout in seconds, reserved concurrency (-1: unreserved), /tmp size in MB."
  type = object({
    memory_mb            = optional(number, 1024)
    timeout_s            = optional(number, 300)
    reserved_concurrency = optional(number, -1)
    ephemeral_mb         = optional(number, 512)
  })
  default = {}
}

variable "compact" {
  description = "compact function sizing: memory in MB, timeout in seconds, reserved concurrency (1 keeps compactions from overlapping), /tmp size in MB (a partition-hour of more than 16 small objects, together over 8 MiB, needs about 2x its uncompacted bytes there, about 80 bytes per NAT event)."
  type = object({
    memory_mb            = optional(number, 2048)
    timeout_s            = optional(number, 900)
    reserved_concurrency = optional(number, 1)
    ephemeral_mb         = optional(number, 2048)
  })
  default = {}
}

variable "lookup" {
  description = "lookup function sizing: memory in MB, timeout in seconds, reserved concurrency (-1: unreserved), /tmp size in MB (DuckDB scratch and object cache)."
  type = object({
    memory_mb            = optional(number, 2048)
    timeout_s            = optional(number, 30)
    reserved_concurrency = optional(number, -1)
    ephemeral_mb         = optional(number, 2048)
  })
  default = {}
}

variable "compact_schedule" {
  description = "EventBridge schedule expression for the hourly compaction (UTC); the default runs 15 minutes past each hour, after late raw batches of the previous hour have landed."
  type        = string
  default     = "cron(15 * * * ? *)"
}

variable "device_time_zone" {
  description = "Time zone of devices whose timestamps carry no offset (RFC 3164 and most vendor stamps): an IANA name such as \"Europe/Berlin\" or a fixed offset such as \"+05:30\". The normalize function's NATLAKE_TZ; a relay's tz label overrides it per batch."
  type        = string
  default     = "UTC"
}

variable "enrich_config_key" {
  description = "Key (under the store prefix) of the enrichment TOML, e.g. \"config/enrich.toml\"; its sources are keys under enrich/ or config/. Given to normalize (enrichment) and lookup (identity at the question's time) as NATLAKE_ENRICH_CONFIG=store:KEY. null: no enrichment."
  type        = string
  default     = null
}

variable "log_level" {
  description = "RUST_LOG filter for the functions."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the functions' log groups, in days (one of the values CloudWatch accepts)."
  type        = number
  default     = 90
}

variable "failure_retry_attempts" {
  description = "Lambda's own retries of a failed asynchronous invocation (S3 notification, schedule) before it goes to the failure queue (0-2)."
  type        = number
  default     = 2

  validation {
    condition     = var.failure_retry_attempts >= 0 && var.failure_retry_attempts <= 2
    error_message = "failure_retry_attempts must be between 0 and 2."
  }
}

variable "alarm_actions" {
  description = "ARNs (e.g. SNS topics) notified when the failure queue holds a message or a function reports errors; empty: alarms without actions."
  type        = list(string)
  default     = []
}

variable "lookup_invoker_arns" {
  description = "IAM principals (role or user ARNs, or account ids) allowed to call the lookup function URL (AWS_IAM auth, SigV4-signed requests)."
  type        = list(string)
  default     = []
}

variable "relay_trusted_principal_arns" {
  description = "Principals allowed to assume the relay's role (e.g. an EC2 instance role, an IAM Roles Anywhere profile's role); empty: no relay role."
  type        = list(string)
  default     = []
}

variable "create_relay_user" {
  description = "Create an IAM user with an access key for relays outside AWS that cannot assume a role. The secret ends up in Terraform state: protect the state."
  type        = bool
  default     = false
}

variable "create_glue_catalog" {
  description = "Create a Glue database with the lake's tables (Hive partitions, partition projection) and an Athena workgroup."
  type        = bool
  default     = false
}

variable "glue_database_name" {
  description = "Name of the Glue database (lowercase letters, digits and underscores)."
  type        = string
  default     = "natlake"
}

variable "glue_hour_range_start" {
  description = "First hour (YYYY-MM-DDTHH, UTC) partition projection knows of; Athena projects hours from it to NOW."
  type        = string
  default     = "2024-01-01T00"
}

variable "athena_bytes_scanned_cutoff" {
  description = "Athena workgroup limit of bytes scanned per query (at least 10 MB); null for no limit."
  type        = number
  default     = 10737418240
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}
