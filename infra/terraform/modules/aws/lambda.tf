resource "aws_cloudwatch_log_group" "fn" {
  for_each          = local.functions
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

# Where failed asynchronous invocations end up after Lambda's retries: a raw object that could
# not be normalized must stay visible, never vanish with a log line.
resource "aws_sqs_queue" "failures" {
  name                      = "${var.name}-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = local.sse_kms ? null : true
  kms_master_key_id         = var.kms_key_arn
  tags                      = local.tags
}

resource "aws_lambda_function" "normalize" {
  function_name                  = "${var.name}-normalize"
  description                    = "natlake normalize: raw batches into the Parquet lake"
  role                           = aws_iam_role.fn["normalize"].arn
  filename                       = "${var.artifacts_dir}/normalize/bootstrap.zip"
  source_code_hash               = filebase64sha256("${var.artifacts_dir}/normalize/bootstrap.zip")
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = [var.architecture]
  memory_size                    = var.normalize.memory_mb
  timeout                        = var.normalize.timeout_s
  reserved_concurrent_executions = var.normalize.reserved_concurrency

  ephemeral_storage {
    size = var.normalize.ephemeral_mb
  }

  environment {
    variables = merge({
      NATLAKE_STORE = local.store_url
      NATLAKE_TZ    = var.device_time_zone
      RUST_LOG      = var.log_level
    }, local.enrich_env)
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.fn["normalize"].name
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.fn]
}

resource "aws_lambda_function" "compact" {
  function_name                  = "${var.name}-compact"
  description                    = "natlake compact: hourly merge of small lake objects"
  role                           = aws_iam_role.fn["compact"].arn
  filename                       = "${var.artifacts_dir}/compact/bootstrap.zip"
  source_code_hash               = filebase64sha256("${var.artifacts_dir}/compact/bootstrap.zip")
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = [var.architecture]
  memory_size                    = var.compact.memory_mb
  timeout                        = var.compact.timeout_s
  reserved_concurrent_executions = var.compact.reserved_concurrency

  ephemeral_storage {
    size = var.compact.ephemeral_mb
  }

  environment {
    variables = {
      NATLAKE_STORE   = local.store_url
      NATLAKE_SCRATCH = "/tmp"
      HOME            = "/tmp"
      RUST_LOG        = var.log_level
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.fn["compact"].name
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.fn]
}

resource "aws_lambda_function" "lookup" {
  function_name                  = "${var.name}-lookup"
  description                    = "natlake lookup: attribution and sessions API"
  role                           = aws_iam_role.fn["lookup"].arn
  filename                       = "${var.artifacts_dir}/lookup/bootstrap.zip"
  source_code_hash               = filebase64sha256("${var.artifacts_dir}/lookup/bootstrap.zip")
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = [var.architecture]
  memory_size                    = var.lookup.memory_mb
  timeout                        = var.lookup.timeout_s
  reserved_concurrent_executions = var.lookup.reserved_concurrency

  ephemeral_storage {
    size = var.lookup.ephemeral_mb
  }

  environment {
    variables = merge({
      NATLAKE_STORE = local.store_url
      # DuckDB wants a writable home and temp directory; on Lambda only /tmp is.
      NATLAKE_SCRATCH = "/tmp"
      HOME            = "/tmp"
      RUST_LOG        = var.log_level
    }, local.enrich_env)
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.fn["lookup"].name
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.fn]
}

# normalize: S3 invokes it asynchronously for each new raw batch.
resource "aws_lambda_permission" "normalize_from_s3" {
  statement_id   = "s3-raw-objects"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.normalize.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.store.arn
  source_account = data.aws_caller_identity.current.account_id
}

resource "aws_lambda_function_event_invoke_config" "normalize" {
  function_name                = aws_lambda_function.normalize.function_name
  maximum_retry_attempts       = var.failure_retry_attempts
  maximum_event_age_in_seconds = 21600
  destination_config {
    on_failure {
      destination = aws_sqs_queue.failures.arn
    }
  }
}

# compact: hourly, from an EventBridge schedule.
resource "aws_cloudwatch_event_rule" "compact" {
  name                = "${var.name}-compact-hourly"
  description         = "natlake hourly compaction"
  schedule_expression = var.compact_schedule
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "compact" {
  rule = aws_cloudwatch_event_rule.compact.name
  arn  = aws_lambda_function.compact.arn
}

resource "aws_lambda_permission" "compact_from_schedule" {
  statement_id  = "eventbridge-hourly"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.compact.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.compact.arn
}

resource "aws_lambda_function_event_invoke_config" "compact" {
  function_name                = aws_lambda_function.compact.function_name
  maximum_retry_attempts       = var.failure_retry_attempts
  maximum_event_age_in_seconds = 3600
  destination_config {
    on_failure {
      destination = aws_sqs_queue.failures.arn
    }
  }
}

# lookup: a function URL that only SigV4-signed requests of the named principals may call.
resource "aws_lambda_function_url" "lookup" {
  function_name      = aws_lambda_function.lookup.function_name
  authorization_type = "AWS_IAM"
}

resource "aws_lambda_permission" "lookup_url" {
  for_each               = toset(var.lookup_invoker_arns)
  statement_id           = "url-${substr(sha256(each.value), 0, 16)}"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.lookup.function_name
  principal              = each.value
  function_url_auth_type = "AWS_IAM"
}

# Function URLs created since late 2025 also check lambda:InvokeFunction for the caller.
resource "aws_lambda_permission" "lookup_invoke" {
  for_each      = toset(var.lookup_invoker_arns)
  statement_id  = "invoke-${substr(sha256(each.value), 0, 16)}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.lookup.function_name
  principal     = each.value
}

resource "aws_cloudwatch_metric_alarm" "failures" {
  alarm_name          = "${var.name}-failure-queue-not-empty"
  alarm_description   = "A natlake invocation failed after its retries: see the ${aws_sqs_queue.failures.name} queue and docs/deploy-aws.md (replay)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.failures.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  for_each            = local.functions
  alarm_name          = "${var.name}-${each.key}-errors"
  alarm_description   = "natlake ${each.key} returned errors."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = "${var.name}-${each.key}" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = local.tags
}
