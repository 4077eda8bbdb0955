# A MinIO user per role (the access key is the user name), each with a policy scoped to the
# prefixes its code touches:
#   relay      PutObject raw/ and its heartbeat in _state/relays/
#   normalize  list/read raw/, check and write done markers, write lake/, write (and, once resolved, delete) dead letters and the markers of objects it writes into ended hours (_state/late/)
#   compact    list/read/rewrite/delete lake/, keep its carry markers in _state/carry/, consume _state/late/, set unreadable objects aside in _state/quarantine/ (and remove them there once a new object took their key)
#   lookup     list/read lake/, list the carry and late markers, list raw/ with its done markers and dead letters and _state/quarantine/ (read their reasons), list/read the relays' heartbeats (_state/relays/), write audit/
#   analysts   list/read lake/

data "minio_iam_policy_document" "relay" {
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
}

data "minio_iam_policy_document" "normalize" {
  statement {
    sid       = "ListRawAndMarkers"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.root}raw/*", "${local.root}_state/normalized/*", "${local.root}_state/dead-letter/*", "${local.root}_state/accepted/*"]
    }
  }
  statement {
    sid       = "ReadRawAndMarkers"
    actions   = ["s3:GetObject"]
    resources = [local.objects["raw"], local.objects["_state/normalized"]]
  }
  statement {
    sid     = "WriteLakeAndState"
    actions = ["s3:PutObject"]
    resources = [
      local.objects["lake"],
      local.objects["_state/normalized"],
      local.objects["_state/dead-letter"],
      local.objects["_state/late"],
    ]
  }
  statement {
    # The dead letter (or accepted loss) of an object a later run normalized.
    sid       = "ResolveDeadLetters"
    actions   = ["s3:DeleteObject"]
    resources = [local.objects["_state/dead-letter"], local.objects["_state/accepted"]]
  }
}

data "minio_iam_policy_document" "compact" {
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
}

data "minio_iam_policy_document" "lookup" {
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
    sid       = "WriteAudit"
    actions   = ["s3:PutObject"]
    resources = [local.objects["audit"]]
  }
}

data "minio_iam_policy_document" "analyst" {
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.root}lake/*"]
    }
  }
  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = [local.objects["lake"]]
  }
}

locals {
  role_policies = {
    relay     = data.minio_iam_policy_document.relay.json
    normalize = data.minio_iam_policy_document.normalize.json
    compact   = data.minio_iam_policy_document.compact.json
    lookup    = data.minio_iam_policy_document.lookup.json
    analyst   = data.minio_iam_policy_document.analyst.json
  }
  # One user per service role; analysts share the analyst policy.
  users = merge(
    { for r in ["relay", "normalize", "compact", "lookup"] : "${var.name}-${r}" => r },
    { for a in var.analysts : a => "analyst" },
  )
}

resource "minio_iam_policy" "role" {
  for_each = local.role_policies
  name     = "${var.name}-${each.key}"
  policy   = each.value
}

resource "minio_iam_user" "user" {
  for_each      = local.users
  name          = each.key
  force_destroy = true
}

resource "minio_iam_user_policy_attachment" "user" {
  for_each    = local.users
  user_name   = minio_iam_user.user[each.key].name
  policy_name = minio_iam_policy.role[each.value].name
}
