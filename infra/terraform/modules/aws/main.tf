# natlake on AWS: one bucket, three functions (normalize, compact, lookup), least-privilege roles.
#
# One bucket with prefixes, not one per stage: every function opens the store as one root
# (NATLAKE_STORE=s3://bucket[/prefix]) and addresses raw/, lake/, _state/ and audit/ inside it, so
# one bucket keeps one URL for the relay, the functions and the analysts; lifecycle rules and IAM
# statements are scoped by prefix just as well as by bucket. The price: Object Lock, when on,
# covers every prefix alike (raw batches and markers are locked as long as the lake).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  # Keys under the store root start with this ("" or "prefix/").
  root = var.store_prefix == "" ? "" : "${var.store_prefix}/"

  store_url = var.store_prefix == "" ? "s3://${var.bucket_name}" : "s3://${var.bucket_name}/${var.store_prefix}"

  bucket_arn = aws_s3_bucket.store.arn
  # ARN of every object under a store prefix, e.g. local.objects["raw"] = arn:…:bucket/raw/*.
  objects = {
    for p in ["raw", "lake", "audit", "athena-results", "config", "enrich", "_state/normalized", "_state/dead-letter", "_state/accepted", "_state/carry", "_state/quarantine", "_state/late", "_state/relays"] :
    p => "${aws_s3_bucket.store.arn}/${local.root}${p}/*"
  }

  # The functions this module deploys: name => workspace package that builds the binary.
  functions = {
    normalize = "natlake-normalize"
    compact   = "natlake-compact"
    lookup    = "natlake-lookup"
  }

  sse_kms = var.kms_key_arn != null

  # Functions on Lambda have no configuration files: the enrichment TOML is an object.
  enrich_env = var.enrich_config_key == null ? {} : { NATLAKE_ENRICH_CONFIG = "store:${var.enrich_config_key}" }

  tags = merge({ "natlake:deployment" = var.name }, var.tags)
}
