variable "minio_server" {
  description = "MinIO S3 API address as host:port, e.g. minio.example.net:9000."
  type        = string
}

variable "minio_ssl" {
  description = "Whether the MinIO API is served over TLS."
  type        = bool
  default     = true
}

variable "region" {
  description = "Region name MinIO is configured with."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "Name of the store bucket."
  type        = string
  default     = "natlake"
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
  description = "Object Lock (compliance mode) retention in days; 0 for none."
  type        = number
  default     = 0
}

variable "normalize_webhook_url" {
  description = "URL of the normalize service's webhook as MinIO reaches it."
  type        = string
  default     = "http://127.0.0.1:9101/v1/notify"
}

variable "webhook_auth_token" {
  description = "Bearer token MinIO sends with notifications; null for none."
  type        = string
  default     = null
  sensitive   = true
}

variable "analysts" {
  description = "Read-only analyst user names."
  type        = set(string)
  default     = []
}
