output "store_url" {
  description = "NATLAKE_STORE / --store for every natlake program."
  value       = module.natlake.store_url
}

output "lookup_url" {
  description = "The lookup function URL (SigV4, service lambda)."
  value       = module.natlake.lookup_url
}

output "relay_settings" {
  description = "Store URL, region and role of the edge relay."
  value       = module.natlake.relay_settings
}

output "relay_access_key" {
  description = "Relay user's access key, when create_relay_user is set."
  value       = module.natlake.relay_access_key
  sensitive   = true
}

output "failure_queue_url" {
  description = "Queue of invocations that failed after retries."
  value       = module.natlake.failure_queue_url
}

output "athena_workgroup" {
  description = "Athena workgroup over the Glue tables."
  value       = module.natlake.athena_workgroup
}

output "analyst_policy_arn" {
  description = "Policy to attach to read-only analysts."
  value       = module.natlake.analyst_policy_arn
}
