# Optional Glue catalog and Athena workgroup over the lake. Columns follow docs/schema.md (the
# terraform structural test in tests/ compares them). Partitions are not crawled: partition
# projection computes them, `hour` as a date range and `x_net` injected — every Athena query names
# its x_net (e.g. WHERE x_net = '198.51.100.0_24'), which is how lookups use the lake anyway.

locals {
  glue_tables = {
    nat_events = {
      by_net = true
      columns = [
        { name = "time", type = "timestamp" },
        { name = "event", type = "string" },
        { name = "protocol", type = "smallint" },
        { name = "src_ip", type = "string" },
        { name = "src_port", type = "int" },
        { name = "x_ip", type = "string" },
        { name = "x_port", type = "int" },
        { name = "x_port_end", type = "int" },
        { name = "dst_ip", type = "string" },
        { name = "dst_port", type = "int" },
        { name = "vrf", type = "string" },
        { name = "direction", type = "string" },
        { name = "end_time", type = "timestamp" },
        { name = "bytes_out", type = "bigint" },
        { name = "bytes_in", type = "bigint" },
        { name = "packets_out", type = "bigint" },
        { name = "packets_in", type = "bigint" },
        { name = "recv_delay_us", type = "bigint" },
        { name = "device", type = "string" },
        { name = "format", type = "string" },
        { name = "subscriber", type = "string" },
        { name = "site", type = "string" },
        { name = "prefix", type = "string" },
        { name = "role", type = "string" },
        { name = "dst_asn", type = "bigint" },
        { name = "dst_as_org", type = "string" },
        { name = "dst_country", type = "string" },
        { name = "raw_key", type = "string" },
        { name = "raw_record", type = "bigint" },
        # Objects written before recv_delay_us kept the receive time itself.
        { name = "recv_time", type = "timestamp" },
      ]
    }
    flows = {
      by_net = true
      columns = [
        { name = "time", type = "timestamp" },
        { name = "end_time", type = "timestamp" },
        { name = "protocol", type = "smallint" },
        { name = "src_ip", type = "string" },
        { name = "src_port", type = "int" },
        { name = "dst_ip", type = "string" },
        { name = "dst_port", type = "int" },
        { name = "post_nat_src_ip", type = "string" },
        { name = "post_nat_src_port", type = "int" },
        { name = "post_nat_dst_ip", type = "string" },
        { name = "post_nat_dst_port", type = "int" },
        { name = "bytes", type = "bigint" },
        { name = "packets", type = "bigint" },
        { name = "in_if", type = "bigint" },
        { name = "out_if", type = "bigint" },
        { name = "sampling_rate", type = "bigint" },
        { name = "exporter", type = "string" },
        { name = "vrf", type = "string" },
        { name = "recv_delay_us", type = "bigint" },
        { name = "device", type = "string" },
        { name = "format", type = "string" },
        { name = "subscriber", type = "string" },
        { name = "site", type = "string" },
        { name = "prefix", type = "string" },
        { name = "role", type = "string" },
        { name = "dst_asn", type = "bigint" },
        { name = "dst_as_org", type = "string" },
        { name = "dst_country", type = "string" },
        { name = "raw_key", type = "string" },
        { name = "raw_record", type = "bigint" },
        # Objects written before recv_delay_us kept the receive time itself.
        { name = "recv_time", type = "timestamp" },
      ]
    }
    firewall = {
      by_net = true
      columns = [
        { name = "time", type = "timestamp" },
        { name = "action", type = "string" },
        { name = "rule", type = "string" },
        { name = "protocol", type = "smallint" },
        { name = "src_ip", type = "string" },
        { name = "src_port", type = "int" },
        { name = "dst_ip", type = "string" },
        { name = "dst_port", type = "int" },
        { name = "in_if", type = "string" },
        { name = "out_if", type = "string" },
        { name = "length", type = "bigint" },
        { name = "vrf", type = "string" },
        { name = "cf_event", type = "string" },
        { name = "cf_container", type = "string" },
        { name = "cf_app", type = "string" },
        { name = "cf_app_name", type = "string" },
        { name = "cf_space", type = "string" },
        { name = "cf_org", type = "string" },
        { name = "recv_delay_us", type = "bigint" },
        { name = "device", type = "string" },
        { name = "format", type = "string" },
        { name = "subscriber", type = "string" },
        { name = "site", type = "string" },
        { name = "prefix", type = "string" },
        { name = "role", type = "string" },
        { name = "dst_asn", type = "bigint" },
        { name = "dst_as_org", type = "string" },
        { name = "dst_country", type = "string" },
        { name = "raw_key", type = "string" },
        { name = "raw_record", type = "bigint" },
        # Objects written before recv_delay_us kept the receive time itself.
        { name = "recv_time", type = "timestamp" },
      ]
    }
    http_access = {
      by_net = true
      columns = [
        { name = "time", type = "timestamp" },
        { name = "server", type = "string" },
        { name = "vhost", type = "string" },
        { name = "server_port", type = "int" },
        { name = "client_ip", type = "string" },
        { name = "client_port", type = "int" },
        { name = "user", type = "string" },
        { name = "method", type = "string" },
        { name = "path", type = "string" },
        { name = "protocol", type = "string" },
        { name = "request", type = "string" },
        { name = "status", type = "smallint" },
        { name = "bytes", type = "bigint" },
        { name = "referer", type = "string" },
        { name = "user_agent", type = "string" },
        { name = "forwarded_for", type = "string" },
        { name = "request_time_ms", type = "bigint" },
        { name = "upstream_time_ms", type = "bigint" },
        { name = "recv_delay_us", type = "bigint" },
        { name = "device", type = "string" },
        { name = "format", type = "string" },
        { name = "subscriber", type = "string" },
        { name = "site", type = "string" },
        { name = "prefix", type = "string" },
        { name = "role", type = "string" },
        { name = "dst_asn", type = "bigint" },
        { name = "dst_as_org", type = "string" },
        { name = "dst_country", type = "string" },
        { name = "raw_key", type = "string" },
        { name = "raw_record", type = "bigint" },
        # Objects written before recv_delay_us kept the receive time itself.
        { name = "recv_time", type = "timestamp" },
      ]
    }
    mail = {
      by_net = true
      columns = [
        { name = "time", type = "timestamp" },
        { name = "process", type = "string" },
        { name = "pid", type = "bigint" },
        { name = "queue_id", type = "string" },
        { name = "event", type = "string" },
        { name = "client_host", type = "string" },
        { name = "client_ip", type = "string" },
        { name = "client_port", type = "int" },
        { name = "from", type = "string" },
        { name = "to", type = "string" },
        { name = "orig_to", type = "string" },
        { name = "relay_host", type = "string" },
        { name = "relay_ip", type = "string" },
        { name = "relay_port", type = "int" },
        { name = "status", type = "string" },
        { name = "dsn", type = "string" },
        { name = "delay_ms", type = "bigint" },
        { name = "size", type = "bigint" },
        { name = "nrcpt", type = "bigint" },
        { name = "message_id", type = "string" },
        { name = "sasl_username", type = "string" },
        { name = "helo", type = "string" },
        { name = "response", type = "string" },
        { name = "message", type = "string" },
        { name = "recv_delay_us", type = "bigint" },
        { name = "device", type = "string" },
        { name = "format", type = "string" },
        { name = "subscriber", type = "string" },
        { name = "site", type = "string" },
        { name = "prefix", type = "string" },
        { name = "role", type = "string" },
        { name = "dst_asn", type = "bigint" },
        { name = "dst_as_org", type = "string" },
        { name = "dst_country", type = "string" },
        { name = "raw_key", type = "string" },
        { name = "raw_record", type = "bigint" },
        # Objects written before recv_delay_us kept the receive time itself.
        { name = "recv_time", type = "timestamp" },
      ]
    }
    auth = {
      by_net = true
      columns = [
        { name = "time", type = "timestamp" },
        { name = "process", type = "string" },
        { name = "pid", type = "bigint" },
        { name = "event", type = "string" },
        { name = "result", type = "string" },
        { name = "method", type = "string" },
        { name = "user", type = "string" },
        { name = "user_status", type = "string" },
        { name = "src_ip", type = "string" },
        { name = "src_port", type = "int" },
        { name = "key", type = "string" },
        { name = "repeats", type = "bigint" },
        { name = "message", type = "string" },
        { name = "recv_delay_us", type = "bigint" },
        { name = "device", type = "string" },
        { name = "format", type = "string" },
        { name = "subscriber", type = "string" },
        { name = "site", type = "string" },
        { name = "prefix", type = "string" },
        { name = "role", type = "string" },
        { name = "dst_asn", type = "bigint" },
        { name = "dst_as_org", type = "string" },
        { name = "dst_country", type = "string" },
        { name = "raw_key", type = "string" },
        { name = "raw_record", type = "bigint" },
        # Objects written before recv_delay_us kept the receive time itself.
        { name = "recv_time", type = "timestamp" },
      ]
    }
    rejects = {
      by_net = false
      columns = [
        { name = "recv_time", type = "timestamp" },
        { name = "reason", type = "string" },
        { name = "format", type = "string" },
        { name = "input_kind", type = "string" },
        { name = "peer", type = "string" },
        { name = "payload", type = "binary" },
        { name = "raw_key", type = "string" },
        { name = "raw_record", type = "bigint" },
      ]
    }
  }

  # Athena's date projection format (Java DateTimeFormatter) of our hour=YYYY-MM-DDTHH.
  hour_projection = {
    "projection.enabled"            = "true"
    "projection.hour.type"          = "date"
    "projection.hour.format"        = "yyyy-MM-dd'T'HH"
    "projection.hour.range"         = "${var.glue_hour_range_start},NOW"
    "projection.hour.interval"      = "1"
    "projection.hour.interval.unit" = "HOURS"
  }
}

resource "aws_glue_catalog_database" "lake" {
  count       = var.create_glue_catalog ? 1 : 0
  name        = var.glue_database_name
  description = "natlake lake tables (${local.store_url}/lake/)"
}

resource "aws_glue_catalog_table" "lake" {
  for_each      = { for k, v in local.glue_tables : k => v if var.create_glue_catalog }
  database_name = aws_glue_catalog_database.lake[0].name
  name          = each.key
  table_type    = "EXTERNAL_TABLE"

  parameters = merge(local.hour_projection, {
    "EXTERNAL"                  = "TRUE"
    "classification"            = "parquet"
    "parquet.compression"       = "ZSTD"
    "storage.location.template" = each.value.by_net ? "${local.store_url}/lake/${each.key}/hour=$${hour}/x_net=$${x_net}/" : "${local.store_url}/lake/${each.key}/hour=$${hour}/"
    # A for-expression, not a conditional: both arms of one must have the same object type.
  }, { for k, v in { "projection.x_net.type" = "injected" } : k => v if each.value.by_net })

  partition_keys {
    name = "hour"
    type = "string"
  }

  dynamic "partition_keys" {
    for_each = each.value.by_net ? ["x_net"] : []
    content {
      name = partition_keys.value
      type = "string"
    }
  }

  storage_descriptor {
    location      = "${local.store_url}/lake/${each.key}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = each.value.columns
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}

resource "aws_athena_workgroup" "lake" {
  count         = var.create_glue_catalog ? 1 : 0
  name          = var.name
  description   = "natlake queries over the ${var.glue_database_name} Glue database"
  force_destroy = var.force_destroy

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    result_configuration {
      output_location = "${local.store_url}/athena-results/"
      encryption_configuration {
        encryption_option = local.sse_kms ? "SSE_KMS" : "SSE_S3"
        kms_key_arn       = var.kms_key_arn
      }
    }
  }

  tags = local.tags
}

# Read-only analysts: attach this policy to their group or role. They read lake/ (never raw/,
# _state/ or audit/) and keep their Athena results in athena-results/.
data "aws_iam_policy_document" "analyst" {
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.root}lake/*", "${local.root}athena-results/*"]
    }
  }
  statement {
    sid       = "ReadLake"
    actions   = ["s3:GetObject"]
    resources = [local.objects["lake"]]
  }
  statement {
    sid       = "AthenaResults"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [local.objects["athena-results"]]
  }
  statement {
    sid = "Catalog"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:GetTables",
      "glue:GetPartition",
      "glue:GetPartitions",
    ]
    resources = [
      "arn:${data.aws_partition.current.partition}:glue:${data.aws_region.current.id}:${data.aws_caller_identity.current.account_id}:catalog",
      "arn:${data.aws_partition.current.partition}:glue:${data.aws_region.current.id}:${data.aws_caller_identity.current.account_id}:database/${var.glue_database_name}",
      "arn:${data.aws_partition.current.partition}:glue:${data.aws_region.current.id}:${data.aws_caller_identity.current.account_id}:table/${var.glue_database_name}/*",
    ]
  }
  statement {
    sid = "Athena"
    actions = [
      "athena:StartQueryExecution",
      "athena:StopQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:GetWorkGroup",
    ]
    resources = ["arn:${data.aws_partition.current.partition}:athena:${data.aws_region.current.id}:${data.aws_caller_identity.current.account_id}:workgroup/${var.name}"]
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

resource "aws_iam_policy" "analyst" {
  count       = var.create_glue_catalog ? 1 : 0
  name        = "${var.name}-analyst"
  description = "natlake read-only analysts: lake/ through Athena"
  policy      = data.aws_iam_policy_document.analyst.json
  tags        = local.tags
}
