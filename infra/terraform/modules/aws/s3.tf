resource "aws_s3_bucket" "store" {
  bucket              = var.bucket_name
  force_destroy       = var.force_destroy
  object_lock_enabled = var.object_lock_days > 0
  tags                = local.tags
}

resource "aws_s3_bucket_public_access_block" "store" {
  bucket                  = aws_s3_bucket.store.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# No ACLs: access is decided by IAM alone.
resource "aws_s3_bucket_ownership_controls" "store" {
  bucket = aws_s3_bucket.store.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "store" {
  bucket = aws_s3_bucket.store.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "store" {
  bucket = aws_s3_bucket.store.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.sse_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    # One KMS data key per bucket instead of a KMS call per object: the lake writes many objects.
    bucket_key_enabled = local.sse_kms
  }
}

resource "aws_s3_bucket_object_lock_configuration" "store" {
  count  = var.object_lock_days > 0 ? 1 : 0
  bucket = aws_s3_bucket.store.id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.store]
}

# Expiry by prefix. With versioning (and Object Lock) an expiry adds a delete marker; the
# version itself goes noncurrent_version_days later, and never before its lock runs out.
resource "aws_s3_bucket_lifecycle_configuration" "store" {
  bucket = aws_s3_bucket.store.id

  rule {
    id     = "raw"
    status = "Enabled"
    filter {
      prefix = "${local.root}raw/"
    }
    expiration {
      days = var.raw_expiration_days
    }
  }

  rule {
    id     = "done-markers"
    status = "Enabled"
    filter {
      prefix = "${local.root}_state/normalized/"
    }
    expiration {
      days = var.raw_expiration_days
    }
  }

  rule {
    id     = "lake"
    status = "Enabled"
    filter {
      prefix = "${local.root}lake/"
    }
    expiration {
      days = var.lake_retention_days
    }
  }

  rule {
    id     = "dead-letters"
    status = "Enabled"
    filter {
      prefix = "${local.root}_state/dead-letter/"
    }
    expiration {
      days = var.lake_retention_days
    }
  }

  rule {
    # Raw objects whose loss an operator accepted: reported by lookups as long as the lake.
    id     = "accepted-losses"
    status = "Enabled"
    filter {
      prefix = "${local.root}_state/accepted/"
    }
    expiration {
      days = var.lake_retention_days
    }
  }

  rule {
    # What relays dropped: reported by lookups over those hours, as long as the lake.
    id     = "relay-drops"
    status = "Enabled"
    filter {
      prefix = "${local.root}_state/relays/drops/"
    }
    expiration {
      days = var.lake_retention_days
    }
  }

  rule {
    id     = "compact-state"
    status = "Enabled"
    filter {
      prefix = "${local.root}_state/carry/"
    }
    expiration {
      days = var.lake_retention_days
    }
  }

  rule {
    # Copies of lake objects compaction could not read: lake data, kept no longer than the lake.
    id     = "quarantine"
    status = "Enabled"
    filter {
      prefix = "${local.root}_state/quarantine/"
    }
    expiration {
      days = var.lake_retention_days
    }
  }

  rule {
    id     = "audit"
    status = "Enabled"
    filter {
      prefix = "${local.root}audit/"
    }
    expiration {
      days = var.audit_retention_days
    }
  }

  rule {
    id     = "athena-results"
    status = "Enabled"
    filter {
      prefix = "${local.root}athena-results/"
    }
    expiration {
      days = 7
    }
  }

  rule {
    id     = "old-versions-and-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expired-delete-markers"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.store]
}

# TLS only, for everyone.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyPlainHttp"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.store.arn,
      "${aws_s3_bucket.store.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "store" {
  bucket     = aws_s3_bucket.store.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.store]
}

# New raw batches start the normalize function.
resource "aws_s3_bucket_notification" "raw" {
  bucket = aws_s3_bucket.store.id

  lambda_function {
    id                  = "natlake-normalize"
    lambda_function_arn = aws_lambda_function.normalize.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "${local.root}raw/"
    filter_suffix       = ".nlraw.zst"
  }

  depends_on = [aws_lambda_permission.normalize_from_s3]
}
