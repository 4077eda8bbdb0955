//! Rows into Parquet objects: split by partition, sort for lookups, encode, publish.
//!
//! Objects are encoded whole in memory and published with one `put`, which object stores make
//! atomic (S3 PUT; a temp file and rename on local disk): a reader never sees half an object.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::columns::{self, Column, schema_of};
use super::layout;
use crate::model::{Event, Reject, Row, Table};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("encoding parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("store: {0}")]
    Store(#[from] object_store::Error),
    #[error("schema: {0}")]
    Schema(String),
}

/// Parquet tuning. Defaults chosen for point lookups on (x_ip, x_port, time).
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub zstd_level: i32,
    pub row_group_rows: usize,
    pub bloom_filters: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            row_group_rows: 64 * 1024,
            bloom_filters: true,
        }
    }
}

/// The columns a table's rows are sorted by (and that get bloom filters).
pub fn sort_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::NatEvents | Table::NatCarry => &["x_ip", "x_port", "time"],
        Table::Flows => &["post_nat_src_ip", "post_nat_src_port", "time"],
        Table::Firewall => &["src_ip", "time"],
        Table::HttpAccess | Table::Mail => &["client_ip", "time"],
        Table::Auth => &["src_ip", "time"],
        Table::Rejects => &["recv_time"],
    }
}

fn bloom_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::NatEvents | Table::NatCarry => &["x_ip", "x_port", "src_ip"],
        Table::Flows => &["post_nat_src_ip", "src_ip"],
        Table::Firewall => &["src_ip", "dst_ip"],
        Table::HttpAccess => &["client_ip"],
        Table::Mail => &["client_ip", "queue_id"],
        Table::Auth => &["src_ip"],
        Table::Rejects => &[],
    }
}

/// The writer settings of a table: zstd, page statistics, the sort order recorded, bloom filters
/// on the lookup columns, row groups sized for point lookups.
fn properties(
    table: Table,
    schema: &arrow::datatypes::Schema,
    opts: &WriteOptions,
) -> Result<WriterProperties, LakeError> {
    let sorting: Vec<SortingColumn> = sort_columns(table)
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: true,
        })
        .collect();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(opts.zstd_level)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("natlake {}", env!("CARGO_PKG_VERSION")));
    if opts.bloom_filters {
        for c in bloom_columns(table) {
            props = props.set_column_bloom_filter_enabled(ColumnPath::from(*c), true);
        }
    }
    Ok(props.build())
}

/// Encodes rows (already in the order to write) as one Parquet file.
pub fn encode<R>(
    table: Table,
    cols: &[Column<R>],
    rows: &[&R],
    opts: &WriteOptions,
) -> Result<Bytes, LakeError> {
    let schema = schema_of(cols);
    let arrays = cols.iter().map(|c| c.build(rows)).collect::<Vec<_>>();
    let batch = RecordBatch::try_new(schema, arrays)?;
    encode_batch(table, &batch, opts)
}

/// Encodes one batch (already in the order to write) as one Parquet file.
pub fn encode_batch(
    table: Table,
    batch: &RecordBatch,
    opts: &WriteOptions,
) -> Result<Bytes, LakeError> {
    let schema = batch.schema();
    let props = properties(table, &schema, opts)?;
    let mut buf = Vec::with_capacity(4096);
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    w.write(batch)?;
    w.close()?;
    Ok(Bytes::from(buf))
}

/// One output object: where it goes and how many rows it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Output {
    pub key: String,
    pub table: Table,
    pub rows: usize,
    pub bytes: usize,
}

/// Groups rows by (table, hour, x_net) and sorts each group for lookups.
pub fn partition(rows: &[Row]) -> BTreeMap<(Table, i64, String), Vec<&Row>> {
    let mut parts: BTreeMap<(Table, i64, String), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let key = (
            r.event.table(),
            layout::hour_start(r.event.time()),
            layout::net_value(r.event.partition_ip()),
        );
        parts.entry(key).or_default().push(r);
    }
    for rows in parts.values_mut() {
        rows.sort_by_key(|r| sort_key(r));
    }
    parts
}

/// (public ip, public port, time): keeps each address's rows together so a lookup's predicate on
/// x_ip prunes pages and row groups by their min/max statistics.
fn sort_key(r: &Row) -> (Option<std::net::IpAddr>, Option<u16>, i64) {
    match &r.event {
        Event::Nat(e) => (e.x_ip, e.x_port, e.time),
        Event::Flow(e) => (e.post_nat_src_ip, e.post_nat_src_port, e.time),
        Event::Firewall(e) => (e.src_ip, None, e.time),
        Event::Http(e) => (e.client_ip, e.client_port, e.time),
        Event::Mail(e) => (e.client_ip, e.client_port, e.time),
        Event::Auth(e) => (e.src_ip, e.src_port, e.time),
    }
}

/// Encodes every partition of one raw object's rows and rejects; returns (key, bytes) pairs.
pub fn encode_outputs(
    raw_key: &str,
    rows: &[Row],
    rejects: &[Reject],
    opts: &WriteOptions,
) -> Result<Vec<(Output, Bytes)>, LakeError> {
    let mut out = Vec::new();
    for ((table, hour, net), group) in partition(rows) {
        let Some(cols) = columns::event_columns(table) else {
            continue;
        };
        let bytes = encode(table, &cols, &group, opts)?;
        let key = layout::lake_key(table, hour, &net, raw_key);
        out.push((
            Output {
                key,
                table,
                rows: group.len(),
                bytes: bytes.len(),
            },
            bytes,
        ));
    }
    let mut by_hour: BTreeMap<i64, Vec<&Reject>> = BTreeMap::new();
    for r in rejects {
        by_hour
            .entry(layout::hour_start(r.recv_time))
            .or_default()
            .push(r);
    }
    let cols = columns::rejects();
    for (hour, group) in by_hour {
        let bytes = encode(Table::Rejects, &cols, &group, opts)?;
        let key = layout::lake_key(Table::Rejects, hour, layout::NONE_NET, raw_key);
        out.push((
            Output {
                key,
                table: Table::Rejects,
                rows: group.len(),
                bytes: bytes.len(),
            },
            bytes,
        ));
    }
    Ok(out)
}

/// Publishes encoded outputs. Each put is atomic; re-running overwrites the same keys.
pub async fn publish(
    store: &Arc<dyn ObjectStore>,
    outputs: Vec<(Output, Bytes)>,
) -> Result<Vec<Output>, LakeError> {
    let mut done = Vec::with_capacity(outputs.len());
    for (o, bytes) in outputs {
        store
            .put(&Path::from(o.key.as_str()), PutPayload::from_bytes(bytes))
            .await?;
        done.push(o);
    }
    Ok(done)
}
