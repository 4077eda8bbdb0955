output "bucket_name" {
  description = "Name of the bucket that holds the store."
  value       = aws_s3_bucket.store.id
}

output "bucket_arn" {
  description = "ARN of the bucket that holds the store."
  value       = aws_s3_bucket.store.arn
}

output "store_url" {
  description = "The store URL every natlake program takes (--store / NATLAKE_STORE)."
  value       = local.store_url
}

output "region" {
  description = "AWS region of the deployment (AWS_REGION for the relay and local tools)."
  value       = data.aws_region.current.id
}

output "function_arns" {
  description = "ARNs of the deployed functions, by function name (normalize, compact, lookup)."
  value = {
    normalize = aws_lambda_function.normalize.arn
    compact   = aws_lambda_function.compact.arn
    lookup    = aws_lambda_function.lookup.arn
  }
}

output "function_role_arns" {
  description = "ARNs of the functions' execution roles, by function name."
  value       = { for k, r in aws_iam_role.fn : k => r.arn }
}

output "lookup_url" {
  description = "The lookup function URL (AWS_IAM auth: sign requests with SigV4, service \"lambda\")."
  value       = aws_lambda_function_url.lookup.function_url
}

output "failure_queue_url" {
  description = "SQS queue receiving invocations that failed after Lambda's retries (normalize and compact)."
  value       = aws_sqs_queue.failures.url
}

output "failure_queue_arn" {
  description = "ARN of the failure queue."
  value       = aws_sqs_queue.failures.arn
}

output "relay_role_arn" {
  description = "Role the edge relay assumes to write raw/ (null when relay_trusted_principal_arns is empty)."
  value       = one(aws_iam_role.relay[*].arn)
}

output "relay_settings" {
  description = "What the edge relay needs: its --store flag and environment (credentials come from the role, or from relay_access_key below)."
  value = {
    store      = local.store_url
    AWS_REGION = data.aws_region.current.id
    role_arn   = one(aws_iam_role.relay[*].arn)
  }
}

output "relay_access_key" {
  description = "Access key of the relay user (null unless create_relay_user): AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the relay's environment."
  sensitive   = true
  value = var.create_relay_user ? {
    AWS_ACCESS_KEY_ID     = aws_iam_access_key.relay[0].id
    AWS_SECRET_ACCESS_KEY = aws_iam_access_key.relay[0].secret
  } : null
}

output "glue_database_name" {
  description = "Glue database with the lake tables (null unless create_glue_catalog)."
  value       = one(aws_glue_catalog_database.lake[*].name)
}

output "athena_workgroup" {
  description = "Athena workgroup for lake queries (null unless create_glue_catalog)."
  value       = one(aws_athena_workgroup.lake[*].name)
}

output "analyst_policy_arn" {
  description = "Managed policy for read-only analysts (null unless create_glue_catalog)."
  value       = one(aws_iam_policy.analyst[*].arn)
}
