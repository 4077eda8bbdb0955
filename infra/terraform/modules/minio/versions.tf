terraform {
  required_version = ">= 1.5.0"

  required_providers {
    minio = {
      source = "aminueza/minio"
      # 3.40.1: fixed anonymous-access policies; minio_notify_webhook and
      # minio_s3_bucket_object_lock_configuration are there.
      version = ">= 3.40.1"
    }
  }
}
