output "store_url" {
  description = "NATLAKE_STORE / --store for every natlake program."
  value       = module.natlake.store_url
}

output "service_env" {
  description = "Environment files for the services (write each to /etc/natlake/<name>.env)."
  value       = module.natlake.service_env
  sensitive   = true
}

output "relay_settings" {
  description = "Store URL, endpoint and access key id of the edge relay."
  value       = module.natlake.relay_settings
}

output "webhook_restart_required" {
  description = "True when MinIO needs a restart before the webhook target works."
  value       = module.natlake.webhook_restart_required
}

output "analyst_credentials" {
  description = "Analyst users' keys."
  value       = module.natlake.analyst_credentials
  sensitive   = true
}
