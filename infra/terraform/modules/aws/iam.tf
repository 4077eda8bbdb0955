# One role per function, each allowed only the prefixes its code touches:
#   normalize  reads raw/ and its enrichment (config/, enrich/), writes lake/, its done markers and the markers of objects it writes into ended hours (_state/late/) (Lambda retries; failures go to SQS)
#   compact    reads, rewrites and deletes lake/ objects, keeps its carry markers in _state/carry/, consumes _state/late/, sets unreadable objects aside in _state/quarantine/ (and removes them there once a new object took their key)
#   lookup     lists and reads lake/, lists the carry markers in _state/carry/ and the late markers in _state/late/, lists raw/ with its done markers and dead letters and _state/quarantine/ (reads their reasons), lists/reads the relays' heartbeats (_state/relays/), reads config/ (deterministic NAT, enrichment) and enrich/ (identity sources), writes audit/
#   relay      writes raw/ and its heartbeat in _state/relays/, nothing else

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "fn" {
  for_each           = local.functions
  name               = "${var.name}-${each.key}"
  description        = "natlake ${each.key} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "normalize" {
  statement {
    sid       = "ReadRaw"
    actions   = ["s3:GetObject"]
    resources = [local.objects["raw"]]
  }
  statement {
    sid       = "ReadEnrichment"
    actions   = ["s3:GetObject"]
    resources = [local.objects["config"], local.objects["enrich"]]
  }
  statement {
    sid     = "WriteLakeAndMarkers"
    actions = ["s3:PutObject"]
    resources = [
      local.objects["lake"],
      local.objects["_state/normalized"],
      local.objects["_state/dead-letter"],
      local.objects["_state/late"],
    ]
  }
  statement {
    # An accepted loss (natlake dead-letters accept) of an object a later run normalized.
    sid       = "ResolveAcceptedLosses"
    actions   = ["s3:DeleteObject"]
    resources = [local.objects["_state/accepted"]]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn["normalize"].arn}:*"]
  }
  statement {
    sid       = "FailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failures.arn]
  }
  dynamic "statement" {
    for_each = local.sse_kms ? [1] : []
    content {
      sid       = "Kms"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

data "aws_iam_policy_document" "compact" {
  statement {
    sid       = "ListLakeAndState"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.root}lake/*", "${local.root}_state/carry/*", "${local.root}_state/late/*", "${local.root}_state/quarantine/*"]
    }
  }
  statement {
    sid       = "RewriteLake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.objects["lake"]]
  }
  statement {
    sid       = "CompactState"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.objects["_state/carry"], local.objects["_state/quarantine"]]
  }
  statement {
    # A quarantined object whose key a new object took (its raw object normalized again).
    sid       = "ReleaseQuarantine"
    actions   = ["s3:DeleteObject"]
    resources = [local.objects["_state/quarantine"]]
  }
  statement {
    sid       = "ConsumeLateMarkers"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.objects["_state/late"]]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn["compact"].arn}:*"]
  }
  statement {
    sid       = "FailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failures.arn]
  }
  dynamic "statement" {
    for_each = local.sse_kms ? [1] : []
    content {
      sid       = "Kms"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

data "aws_iam_policy_document" "lookup" {
  statement {
    # raw/ and the normalize and compact state: what an answer could not see is reported.
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.root}lake/*", "${local.root}_state/carry/*", "${local.root}_state/late/*", "${local.root}raw/*", "${local.root}_state/normalized/*", "${local.root}_state/dead-letter/*", "${local.root}_state/accepted/*", "${local.root}_state/quarantine/*", "${local.root}_state/relays/*"]
    }
  }
  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = [local.objects["lake"]]
  }
  statement {
    # The reasons of dead letters, accepted losses and quarantined objects; the relays'
    # heartbeats and retirements.
    sid       = "ReadFailures"
    actions   = ["s3:GetObject"]
    resources = [local.objects["_state/dead-letter"], local.objects["_state/accepted"], local.objects["_state/quarantine"], local.objects["_state/relays"]]
  }
  statement {
    # config/deterministic_nat.toml, the enrichment configuration and its identity sources.
    sid       = "ReadConfig"
    actions   = ["s3:GetObject"]
    resources = [local.objects["config"], local.objects["enrich"]]
  }
  statement {
    sid       = "WriteAudit"
    actions   = ["s3:PutObject"]
    resources = [local.objects["audit"]]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn["lookup"].arn}:*"]
  }
  dynamic "statement" {
    for_each = local.sse_kms ? [1] : []
    content {
      sid       = "Kms"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

locals {
  function_policies = {
    normalize = data.aws_iam_policy_document.normalize.json
    compact   = data.aws_iam_policy_document.compact.json
    lookup    = data.aws_iam_policy_document.lookup.json
  }
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.functions
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.fn[each.key].id
  policy   = local.function_policies[each.key]
}

# The edge relay: PutObject under raw/ and of its heartbeat under _state/relays/ only. A role for relays that can assume one; a user with
# an access key only when asked for (relays outside AWS without Roles Anywhere).
data "aws_iam_policy_document" "relay" {
  statement {
    sid       = "WriteRaw"
    actions   = ["s3:PutObject"]
    resources = [local.objects["raw"]]
  }
  statement {
    # Its heartbeat: up to when each input is stored (lookups read it).
    sid       = "WriteHeartbeat"
    actions   = ["s3:PutObject"]
    resources = [local.objects["_state/relays"]]
  }
  dynamic "statement" {
    for_each = local.sse_kms ? [1] : []
    content {
      sid = "Kms"
      # Decrypt as well: multipart uploads of large batches read back the data key.
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

data "aws_iam_policy_document" "relay_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = length(var.relay_trusted_principal_arns) > 0 ? var.relay_trusted_principal_arns : ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_iam_role" "relay" {
  count              = length(var.relay_trusted_principal_arns) > 0 ? 1 : 0
  name               = "${var.name}-relay"
  description        = "natlake edge relay: PutObject under raw/ and _state/relays/ only"
  assume_role_policy = data.aws_iam_policy_document.relay_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "relay" {
  count  = length(aws_iam_role.relay)
  name   = "${var.name}-relay"
  role   = aws_iam_role.relay[0].id
  policy = data.aws_iam_policy_document.relay.json
}

resource "aws_iam_user" "relay" {
  count = var.create_relay_user ? 1 : 0
  name  = "${var.name}-relay"
  tags  = local.tags
}

resource "aws_iam_user_policy" "relay" {
  count  = length(aws_iam_user.relay)
  name   = "${var.name}-relay"
  user   = aws_iam_user.relay[0].name
  policy = data.aws_iam_policy_document.relay.json
}

resource "aws_iam_access_key" "relay" {
  count = length(aws_iam_user.relay)
  user  = aws_iam_user.relay[0].name
}
