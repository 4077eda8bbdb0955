output "bucket_name" {
  description = "Name of the bucket that holds the store."
  value       = minio_s3_bucket.store.bucket
}

output "store_url" {
  description = "The store URL every natlake program takes (--store / NATLAKE_STORE)."
  value       = local.store_url
}

output "webhook_queue_arn" {
  description = "ARN of the MinIO notification target that feeds normalize (arn:minio:sqs::<target>:webhook)."
  value       = "arn:minio:sqs::${local.webhook_target}:webhook"
}

output "webhook_restart_required" {
  description = "True when MinIO must be restarted before the new webhook target delivers notifications."
  value       = minio_notify_webhook.normalize.restart_required
}

output "service_env" {
  description = "Environment files (KEY=value lines) for the services, by name: normalize, compact, lookup (systemd EnvironmentFile / compose env_file) and relay. Holds secret keys."
  sensitive   = true
  value = {
    for svc in ["normalize", "compact", "lookup", "relay"] : svc => format("%s\n", join("\n", concat(
      [
        "NATLAKE_STORE=${local.store_url}",
        "AWS_ENDPOINT_URL=${var.endpoint_url}",
        "AWS_REGION=${var.region}",
        "AWS_ACCESS_KEY_ID=${minio_iam_user.user["${var.name}-${svc}"].name}",
        "AWS_SECRET_ACCESS_KEY=${minio_iam_user.user["${var.name}-${svc}"].secret}",
      ],
      svc == "normalize" ? ["NATLAKE_POLL=${var.normalize_poll}"] : [],
    )))
  }
}

output "relay_settings" {
  description = "What the edge relay needs besides its secret: --store and the endpoint; its keys are in service_env[\"relay\"]."
  value = {
    store             = local.store_url
    AWS_ENDPOINT_URL  = var.endpoint_url
    AWS_REGION        = var.region
    AWS_ACCESS_KEY_ID = minio_iam_user.user["${var.name}-relay"].name
  }
}

output "analyst_credentials" {
  description = "Access and secret keys of the read-only analyst users, by user name."
  sensitive   = true
  value = {
    for a in var.analysts : a => {
      access_key = minio_iam_user.user[a].name
      secret_key = minio_iam_user.user[a].secret
    }
  }
}
