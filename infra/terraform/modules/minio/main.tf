# natlake on MinIO: one bucket with prefixes (as on AWS, see ../aws/main.tf), a user per role
# with a policy scoped to its prefixes, and a webhook notification that feeds the normalize
# service. The services themselves run next to MinIO (deploy/: systemd units, compose file).

locals {
  root      = var.store_prefix == "" ? "" : "${var.store_prefix}/"
  store_url = var.store_prefix == "" ? "s3://${var.bucket_name}" : "s3://${var.bucket_name}/${var.store_prefix}"

  bucket_arn = "arn:aws:s3:::${minio_s3_bucket.store.bucket}"
  objects = {
    for p in ["raw", "lake", "audit", "_state/normalized", "_state/dead-letter", "_state/accepted", "_state/carry", "_state/quarantine", "_state/late", "_state/relays"] :
    p => "${local.bucket_arn}/${local.root}${p}/*"
  }

  # The services this module configures: name => workspace package that builds the binary.
  functions = {
    normalize = "natlake-normalize"
    compact   = "natlake-compact"
    lookup    = "natlake-lookup"
  }

  webhook_target = "${var.name}-normalize"
}

resource "minio_s3_bucket" "store" {
  bucket         = var.bucket_name
  acl            = "private"
  force_destroy  = var.force_destroy
  object_locking = var.object_lock_days > 0
}

resource "minio_s3_bucket_versioning" "store" {
  bucket = minio_s3_bucket.store.bucket
  versioning_configuration {
    status = "Enabled"
  }
}

resource "minio_s3_bucket_object_lock_configuration" "store" {
  count               = var.object_lock_days > 0 ? 1 : 0
  bucket              = minio_s3_bucket.store.bucket
  object_lock_enabled = "Enabled"
  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = var.object_lock_days
    }
  }
  depends_on = [minio_s3_bucket_versioning.store]
}

resource "minio_ilm_policy" "store" {
  bucket = minio_s3_bucket.store.bucket

  rule {
    id         = "raw"
    filter     = "${local.root}raw/"
    expiration = "${var.raw_expiration_days}d"
  }
  rule {
    id         = "done-markers"
    filter     = "${local.root}_state/normalized/"
    expiration = "${var.raw_expiration_days}d"
  }
  rule {
    id         = "lake"
    filter     = "${local.root}lake/"
    expiration = "${var.lake_retention_days}d"
  }
  rule {
    id         = "dead-letters"
    filter     = "${local.root}_state/dead-letter/"
    expiration = "${var.lake_retention_days}d"
  }
  rule {
    # Raw objects whose loss an operator accepted: reported by lookups as long as the lake.
    id         = "accepted-losses"
    filter     = "${local.root}_state/accepted/"
    expiration = "${var.lake_retention_days}d"
  }
  rule {
    # What relays dropped: reported by lookups over those hours, as long as the lake.
    id         = "relay-drops"
    filter     = "${local.root}_state/relays/drops/"
    expiration = "${var.lake_retention_days}d"
  }
  rule {
    id         = "compact-state"
    filter     = "${local.root}_state/carry/"
    expiration = "${var.lake_retention_days}d"
  }
  rule {
    # Copies of lake objects compaction could not read: lake data, kept no longer than the lake.
    id         = "quarantine"
    filter     = "${local.root}_state/quarantine/"
    expiration = "${var.lake_retention_days}d"
  }
  rule {
    id         = "audit"
    filter     = "${local.root}audit/"
    expiration = "${var.audit_retention_days}d"
  }
  rule {
    id = "old-versions"
    noncurrent_expiration {
      days = "${var.noncurrent_version_days}d"
    }
  }

  depends_on = [minio_s3_bucket_versioning.store]
}

# The server-side webhook target, then the bucket's subscription to it for new raw batches.
resource "minio_notify_webhook" "normalize" {
  name       = local.webhook_target
  endpoint   = var.normalize_webhook_url
  auth_token = var.webhook_auth_token
  queue_dir  = var.webhook_queue_dir
  comment    = "natlake: new raw batches to the normalize service"
}

resource "minio_s3_bucket_notification" "raw" {
  bucket = minio_s3_bucket.store.bucket

  queue {
    id            = "natlake-raw"
    queue_arn     = "arn:minio:sqs::${local.webhook_target}:webhook"
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = "${local.root}raw/"
    filter_suffix = ".nlraw.zst"
  }

  depends_on = [minio_notify_webhook.normalize]
}
