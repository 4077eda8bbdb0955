# natlake on MinIO: bucket, users, policies and the webhook that feeds the normalize service.
# The services run next to MinIO from deploy/ (systemd or compose); see docs/deploy-minio.md.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    minio = {
      source  = "aminueza/minio"
      version = ">= 3.40.1"
    }
  }
}

# Admin credentials for Terraform itself; from MINIO_USER / MINIO_PASSWORD when not set here.
provider "minio" {
  minio_server = var.minio_server
  minio_ssl    = var.minio_ssl
  minio_region = var.region
}

module "natlake" {
  source = "../../modules/minio"

  bucket_name           = var.bucket_name
  endpoint_url          = "${var.minio_ssl ? "https" : "http"}://${var.minio_server}"
  region                = var.region
  raw_expiration_days   = var.raw_expiration_days
  lake_retention_days   = var.lake_retention_days
  object_lock_days      = var.object_lock_days
  normalize_webhook_url = var.normalize_webhook_url
  webhook_auth_token    = var.webhook_auth_token
  analysts              = var.analysts
}
