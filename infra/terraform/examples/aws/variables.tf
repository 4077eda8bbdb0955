variable "region" {
  description = "AWS region to deploy into."
  type        = string
}

variable "name" {
  description = "Name prefix of the deployment's resources."
  type        = string
  default     = "natlake"
}

variable "bucket_name" {
  description = "Globally unique name of the store bucket."
  type        = string
}

variable "artifacts_dir" {
  description = "Directory with <function>/bootstrap.zip, as `scripts/package-lambdas.sh --arch arm64` writes them (relative to this directory)."
  type        = string
  default     = "../../../../target/lambda/arm64"
}

variable "raw_expiration_days" {
  description = "Days raw batches are kept (the replay source)."
  type        = number
  default     = 30
}

variable "lake_retention_days" {
  description = "Days the Parquet lake is kept: your retention obligation."
  type        = number
  default     = 365
}

variable "object_lock_days" {
  description = "Object Lock (compliance mode) retention in days; 0 for none. Only settable when the bucket is created."
  type        = number
  default     = 0
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for SSE-KMS; null for SSE-S3."
  type        = string
  default     = null
}

variable "lookup_invoker_arns" {
  description = "Principals allowed to call the lookup URL."
  type        = list(string)
  default     = []
}

variable "relay_trusted_principal_arns" {
  description = "Principals that may assume the relay role."
  type        = list(string)
  default     = []
}

variable "create_relay_user" {
  description = "Create an IAM user and access key for relays outside AWS."
  type        = bool
  default     = false
}

variable "alarm_actions" {
  description = "SNS topic ARNs notified by the failure and error alarms."
  type        = list(string)
  default     = []
}
