variable "name" {
  description = "Name prefix of the MinIO users, policies and the webhook target this module creates."
  type        = string
  default     = "natlake"
}

variable "bucket_name" {
  description = "Name of the bucket that holds raw/, lake/, _state/ and audit/ (created by this module)."
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

variable "endpoint_url" {
  description = "S3 endpoint URL of the MinIO deployment as the services reach it (AWS_ENDPOINT_URL), e.g. https://minio.example.net:9000."
  type        = string
}

variable "region" {
  description = "Region name MinIO is configured with (AWS_REGION for the clients)."
  type        = string
  default     = "us-east-1"
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects. Keep false in production."
  type        = bool
  default     = false
}

variable "raw_expiration_days" {
  description = "Days after which raw batches (raw/) and done markers (_state/normalized/) expire."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_expiration_days >= 1
    error_message = "raw_expiration_days must be at least 1."
  }
}

variable "lake_retention_days" {
  description = "Days after which lake/ objects, compaction state (carry, quarantine), dead letters and accepted losses expire: your retention obligation. No default on purpose."
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
  description = "Days a replaced or deleted object version is kept (versioning is on)."
  type        = number
  default     = 7
}

variable "object_lock_days" {
  description = "Default Object Lock retention in days (COMPLIANCE mode) for new objects; 0 disables it. Must be decided when the bucket is created."
  type        = number
  default     = 0
}

variable "normalize_webhook_url" {
  description = "URL MinIO posts bucket notifications to: the normalize service's webhook, e.g. http://normalize-host:9101/v1/notify."
  type        = string
}

variable "webhook_auth_token" {
  description = "Token MinIO sends with each notification (Authorization: Bearer <token>); null for none. Give normalize serve its digest: --webhook-token-sha256 $(printf %s TOKEN | sha256sum), and it refuses notifications without it (401) or with another (403)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_queue_dir" {
  description = "Directory on the MinIO servers where undelivered notifications are persisted while normalize is down; null keeps them in memory only (normalize's poller still finds the objects)."
  type        = string
  default     = "/var/lib/minio/events/natlake"
}

variable "analysts" {
  description = "Names of read-only analyst users to create (read lake/ only)."
  type        = set(string)
  default     = []
}

variable "normalize_poll" {
  description = "How often the normalize service also lists raw/ for objects without a done marker (the safety net for lost notifications), as NATLAKE_POLL."
  type        = string
  default     = "60s"
}
