//! Rows into Parquet objects: split by partition, sort for lookups, encode, publish.
//!
//! Objects are encoded whole in memory and published with one `put`, which object stores make
//! atomic (S3 PUT; a temp file and rename on local disk): a reader never sees half an object.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_writer::{
    ArrowRowGroupWriterFactory, ArrowWriterOptions, compute_leaves,
};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::columns::{self, Built, Column, schema_of};
use super::constant;
use super::delta;
use super::dictionary;
use super::layout;
use crate::model::{Event, Micros, Reject, Row, Table};

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
    /// Page-level statistics with the page index (column and offset indexes). Off, a file
    /// keeps its statistics per column chunk only and writes no page index (normalize's
    /// per-object outputs, see [`WriteOptions::ingest`]).
    pub page_index: bool,
    /// Normalize's per-object outputs (a few hundred rows each, rewritten by compaction):
    /// columns whose values are nearly all distinct in so few rows skip the dictionary, and
    /// only the columns queries filter on keep statistics ([`filter_columns`]).
    pub ingest: bool,
    /// Compress with LZ4_RAW instead of zstd at `zstd_level` (normalize's per-object outputs;
    /// see [`WriteOptions::ingest`]).
    pub lz4: bool,
}

/// Row-group size unless `NATLAKE_ROW_GROUP_ROWS` says otherwise. Chosen by bench/normalize.sh
/// (README): on a compacted hour of one public /24 (~72,000 rows), 16,384 rows make a point
/// lookup decode 22,007 rows instead of 53,516 at 65,536, for 4 % more bytes (23.0 against
/// 22.1 per row); 8,192 decode 13,937 but cost 9 % more.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 16 * 1024;

impl Default for WriteOptions {
    /// The defaults, with `NATLAKE_ROW_GROUP_ROWS` and `NATLAKE_ZSTD_LEVEL` as overrides so the
    /// benchmark can try settings on every binary that writes (normalize, compact, natlake).
    fn default() -> Self {
        fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
            std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
        }
        Self {
            zstd_level: env("NATLAKE_ZSTD_LEVEL").unwrap_or(3),
            row_group_rows: env("NATLAKE_ROW_GROUP_ROWS")
                .filter(|&n: &usize| n > 0)
                .unwrap_or(DEFAULT_ROW_GROUP_ROWS),
            bloom_filters: true,
            page_index: true,
            ingest: false,
            lz4: false,
        }
    }
}

/// zstd level of the per-object files normalize writes when they are zstd rather than LZ4_RAW
/// (`NATLAKE_ZSTD_LEVEL` set, or `lz4` turned off): compaction rewrites them within the
/// hour at the default level, so they only need to be small enough until then, and level 1
/// costs less CPU per row than 3 at no loss on these small pages (bench/normalize.sh, 3 h:
/// 39.7 MB of `nat_events` objects at level 1 against 40.2 MB at 3).
pub const INGEST_ZSTD_LEVEL: i32 = 1;

impl WriteOptions {
    /// The defaults for normalize's per-object outputs: LZ4_RAW, unless `NATLAKE_ZSTD_LEVEL`
    /// names a zstd level.
    ///
    /// These objects live until compaction rewrites them within the hour (at zstd level 3),
    /// so their encoding is paid for in CPU once per row and their size only briefly.
    /// bench/normalize.sh's 3-hour day, callgrind over 60 objects: zstd level 1 cost 10.4 % of
    /// normalize's instructions (a compression context set up per column chunk on top of the
    /// pages' few hundred values), LZ4_RAW 4.4 %; the per-object `nat_events` files grow by
    /// 32 %. LZ4_RAW is in the Parquet format since 2.9; DuckDB, pyarrow and Spark read it.
    ///
    /// No bloom filters and no page index either: such a file is one raw object's rows of one
    /// partition (~500 on average on the generated day), read whole when a lookup or the merge
    /// opens it (≤ 64 KiB), and readers prune it by its column-chunk statistics, which stay.
    /// A filter or index could only spare decoding a few hundred values of a file already in
    /// memory; building them cost 2.2 % of normalize's instructions (callgrind, 60 objects of
    /// the 3-hour day: blooms 1.35 %, page statistics and indexes 0.9 %). Compaction writes both.
    pub fn ingest() -> Self {
        let mut w = Self::default();
        if std::env::var_os("NATLAKE_ZSTD_LEVEL").is_none() {
            w.zstd_level = INGEST_ZSTD_LEVEL;
            w.lz4 = true;
        }
        w.ingest = true;
        w.bloom_filters = false;
        w.page_index = false;
        w
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

/// The columns queries filter on besides the sort and bloom columns (`lookup`'s attribution
/// and sessions: the port range's end, the protocol, the event kind, the session's end).
const FILTERED: [&str; 4] = ["x_port_end", "protocol", "event", "end_time"];

/// Whether a column of `table` is one queries filter on: its [`sort_columns`], its bloom
/// columns and [`FILTERED`]. Per-object outputs keep statistics on these only.
pub fn filter_columns(table: Table, name: &str) -> bool {
    sort_columns(table).contains(&name)
        || bloom_columns(table).contains(&name)
        || FILTERED.contains(&name)
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
///
/// Sized to the batch: a normalize output holds one raw object's rows of one partition (often a
/// few hundred), so fixed per-column costs dominate. Bloom filters are sized for the rows they
/// will hold (parquet otherwise allocates one for a full row group and folds it down), and
/// columns with no value at all (enrichment not configured, fields a vendor never logs) skip the
/// dictionary and zstd: their pages are a few bytes of definition levels.
fn properties(
    table: Table,
    schema: &Schema,
    kinds: &[Kind],
    rows: usize,
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
    let row_group_rows = opts.row_group_rows.max(1);
    let codec = if opts.lz4 {
        Compression::LZ4_RAW
    } else {
        Compression::ZSTD(ZstdLevel::try_new(opts.zstd_level)?)
    };
    // Without the page index the statistics are kept per column chunk (the offset index is
    // only written apart from page statistics when it is not disabled).
    let stats = if opts.page_index {
        EnabledStatistics::Page
    } else {
        EnabledStatistics::Chunk
    };
    let mut props = WriterProperties::builder()
        .set_compression(codec)
        .set_statistics_enabled(stats)
        .set_offset_index_disabled(!opts.page_index)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_sorting_columns(Some(sorting))
        .set_key_value_metadata(Some(vec![sort_order_marker()]))
        .set_created_by(format!("natlake {}", env!("CARGO_PKG_VERSION")));
    let second_sort = sort_columns(table).get(1).copied();
    for (field, kind) in schema.fields().iter().zip(kinds) {
        let col = ColumnPath::from(field.name().as_str());
        if opts.ingest && !filter_columns(table, field.name()) {
            // Min/max of every page of a column nobody filters on (for strings a comparison
            // per value) cost 3.7 % of normalize's instructions; a per-object file is a few
            // hundred rows, read whole until compaction rewrites it with full statistics.
            props = props.set_column_statistics_enabled(col.clone(), EnabledStatistics::None);
        }
        if *kind == Kind::Null {
            props = props
                .set_column_compression(col.clone(), Compression::UNCOMPRESSED)
                .set_column_dictionary_enabled(col, false);
            continue;
        }
        let single = *kind == Kind::Single;
        if single {
            // One value (the raw key, the format, often the device): a one-entry dictionary
            // and a run of index 0 are a few bytes; zstd would only add its frame and the
            // set-up of a compression context per column.
            props = props.set_column_compression(col.clone(), Compression::UNCOMPRESSED);
        }
        // Whether the column's values are stored plain (no dictionary, no deltas).
        let mut plain = false;
        if matches!(field.data_type(), DataType::Timestamp(..))
            || Some(field.name().as_str()) == second_sort
            || field.name() == columns::RECV_DELAY
        {
            // Times are nearly all distinct (a dictionary only adds a page to throw away) and
            // the public port ascends within each address: deltas take a few bits where
            // dictionary indices took 16 (bench/normalize.sh, compacted nat_events: x_port
            // 2.97 -> 0.62 bytes per row, time 5.4 -> 4.1, recv_time 6.5 -> 4.2). The receive
            // delay is a few values per device (transit plus the part of a second its clock
            // leaves out), mixed by the lake's order: on the 3-hour day's compacted nat_events
            // its deltas took 1.21 bytes per row, a dictionary 1.82, plain values under zstd
            // 5.10 (per-object files: 1.32 against 4.02 and 6.02).
            props = props
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col.clone(), Encoding::DELTA_BINARY_PACKED);
        } else if opts.ingest && !single && INGEST_DELTA.contains(&field.name().as_str()) {
            // A few hundred rows per object: counters, record indices, inside ports and
            // addresses hardly repeat, so a dictionary is built only to be paid for (compaction
            // keeps it: across objects they do repeat). One value is still a one-entry
            // dictionary (above). Deltas, bit-packed, instead of plain values under LZ4: the
            // numbers take their few significant bits and addresses share their prefix with
            // the one before, so nothing is left to compress (60 objects of the 3-hour day:
            // nat_events 4.63 -> 4.12 MB, 2,576 -> 2,536 M instructions).
            let encoding = if matches!(field.data_type(), DataType::Utf8) {
                Encoding::DELTA_BYTE_ARRAY
            } else {
                Encoding::DELTA_BINARY_PACKED
            };
            props = props
                .set_column_dictionary_enabled(col.clone(), false)
                .set_column_encoding(col.clone(), encoding);
        } else if field.name() == "src_port" {
            // Inside ports are random: a dictionary of up to 64k values costs more than it
            // saves; plain values under zstd are near their 16 bits.
            props = props.set_column_dictionary_enabled(col.clone(), false);
            plain = true;
        }
        if opts.ingest && opts.lz4 && !plain {
            // Per-object outputs compress only their plain columns (none now: addresses,
            // counters and record indices are deltas, above). Bit-packed deltas and
            // dictionary indices leave it nothing to find (0.93-1.0 on the 3-hour day's
            // nat_events objects), and on a page of a few hundred bytes its per-call set-up
            // (a zeroed hash table) costs more than the page: they stay as they are.
            props = props.set_column_compression(col, Compression::UNCOMPRESSED);
        }
    }
    if opts.bloom_filters {
        let ndv = rows.clamp(1, row_group_rows) as u64;
        for c in bloom_columns(table) {
            let col = ColumnPath::from(*c);
            props = props
                .set_column_bloom_filter_enabled(col.clone(), true)
                .set_column_bloom_filter_max_ndv(col, ndv);
        }
    }
    Ok(props.build())
}

/// Columns of normalize's per-object outputs written without a dictionary, as deltas (see
/// `properties`): counters, record indices, inside ports, and the inside and destination
/// addresses (they repeat little in a few hundred rows: interning the addresses cost 1.2 % of
/// normalize's instructions).
const INGEST_DELTA: [&str; 10] = [
    "src_port",
    "src_ip",
    "dst_ip",
    "raw_record",
    "bytes_out",
    "bytes_in",
    "packets_out",
    "packets_in",
    "bytes",
    "packets",
];

/// What the writer's settings look at in a column: no value, one value, or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Single,
    Values,
}

/// The [`Kind`] of each of a batch's columns (an empty column counts as null).
fn kinds(batch: &RecordBatch) -> Vec<Kind> {
    batch
        .columns()
        .iter()
        .map(|a| {
            if a.null_count() == a.len() {
                Kind::Null
            } else if single_value(a.as_ref()) {
                Kind::Single
            } else {
                Kind::Values
            }
        })
        .collect()
}

/// True when every row holds the same non-null value.
fn single_value(array: &dyn arrow::array::Array) -> bool {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int16Type, Int32Type, Int64Type, TimestampMicrosecondType};
    if array.null_count() > 0 || array.is_empty() {
        return false;
    }
    fn same<T: PartialEq + Copy>(v: &[T]) -> bool {
        v.first().is_some_and(|f| v.iter().all(|x| x == f))
    }
    match array.data_type() {
        DataType::Utf8 => {
            // Every value as long as the first, and the text equal to itself shifted by that
            // length (so each value equals the one before it): one comparison of the column's
            // bytes instead of a call per row (per-object raw keys are ~60 bytes × every row).
            let a = array.as_string::<i32>();
            let offsets = a.value_offsets();
            let width = a.value(0).len();
            if !offsets
                .windows(2)
                .all(|w| usize::try_from(w[1] - w[0]).is_ok_and(|n| n == width))
            {
                return false;
            }
            let (Some(&start), Some(&end)) = (offsets.first(), offsets.last()) else {
                return false;
            };
            let text = a
                .value_data()
                .get(start as usize..end as usize)
                .unwrap_or_default();
            let head = text.len().checked_sub(width).and_then(|n| text.get(..n));
            text.get(width..) == head
        }
        DataType::Int16 => same(array.as_primitive::<Int16Type>().values()),
        DataType::Int32 => same(array.as_primitive::<Int32Type>().values()),
        DataType::Int64 => same(array.as_primitive::<Int64Type>().values()),
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => {
            same(array.as_primitive::<TimestampMicrosecondType>().values())
        }
        _ => false,
    }
}

/// Encodes rows (already in the order to write) as one Parquet file.
pub fn encode<R>(
    table: Table,
    cols: &[Column<R>],
    rows: &[&R],
    opts: &WriteOptions,
) -> Result<Bytes, LakeError> {
    let schema = schema_of(cols);
    if per_object(opts) {
        let built: Vec<Built> = cols.iter().map(|c| c.build_or_constant(rows)).collect();
        return encode_per_object(table, &schema, &built, rows.len(), opts, |i, start, len| {
            cols[i].build(&rows[start..start + len])
        });
    }
    let arrays = cols.iter().map(|c| c.build(rows)).collect::<Vec<_>>();
    let batch = RecordBatch::try_new(schema, arrays)?;
    encode_batch(table, &batch, opts)
}

/// Whether `opts` are normalize's per-object settings, which [`encode_per_object`] writes.
fn per_object(opts: &WriteOptions) -> bool {
    opts.ingest && !opts.bloom_filters && !opts.page_index
}

/// Encodes one batch (already in the order to write) as one Parquet file.
pub fn encode_batch(
    table: Table,
    batch: &RecordBatch,
    opts: &WriteOptions,
) -> Result<Bytes, LakeError> {
    let schema = batch.schema();
    let kinds = kinds(batch);
    if per_object(opts) {
        let built: Vec<Built> = kinds
            .iter()
            .zip(batch.columns())
            .map(|(k, a)| match k {
                Kind::Null => Built::Null,
                Kind::Single => Built::Single(a.slice(0, 1)),
                Kind::Values => Built::Values(Arc::clone(a)),
            })
            .collect();
        return encode_per_object(table, &schema, &built, batch.num_rows(), opts, |i, s, n| {
            batch.column(i).slice(s, n)
        });
    }
    let props = properties(table, &schema, &kinds, batch.num_rows(), opts)?;
    let mut buf = Vec::with_capacity(4096);
    // Per-object outputs leave out the Arrow schema (a 2 KB base64 footer entry, encoded anew
    // for each file): every lake reader conforms batches to the table's own schema
    // (`read::conform`), and the Parquet types alone give the same Arrow types.
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(opts.ingest);
    let mut w = ArrowWriter::try_new_with_options(&mut buf, schema, options)?;
    w.write(batch)?;
    w.close()?;
    Ok(Bytes::from(buf))
}

/// Normalize's per-object outputs: `ArrowWriter`'s encoding, except that a column chunk of one
/// value or none is written as its pages directly ([`constant`]): on the 3-hour day's objects
/// over half the column chunks are such, and the column writer spent a dictionary lookup, a
/// level and an index on each of their rows. No Arrow schema in the footer (see
/// [`encode_batch`]); no bloom filters or page index (see [`WriteOptions::ingest`]).
///
/// `built` holds the columns of `rows` rows; `values(i, start, len)` builds rows
/// `start..start + len` of column `i` when a column of one value or none has to go through
/// the column writer after all (a value too long to keep whole in statistics).
fn encode_per_object(
    table: Table,
    schema: &SchemaRef,
    built: &[Built],
    rows: usize,
    opts: &WriteOptions,
    values: impl Fn(usize, usize, usize) -> ArrayRef,
) -> Result<Bytes, LakeError> {
    let kinds: Vec<Kind> = built
        .iter()
        .map(|b| match b {
            Built::Null => Kind::Null,
            Built::Single(_) => Kind::Single,
            Built::Values(_) => Kind::Values,
        })
        .collect();
    let shape = Shape::of(table, schema, kinds, opts)?;
    let props = &shape.props;
    let group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
    // The writer starts a new page after this many rows: longer chunks of deltas go through it.
    let page_rows = props.data_page_row_count_limit();
    let page_bytes = props.data_page_size_limit();
    let mut buf = Vec::with_capacity(4096);
    let mut w = SerializedFileWriter::new(&mut buf, Arc::clone(&shape.root), Arc::clone(props))?;
    let parquet_schema = &shape.parquet;
    let mut start = 0;
    let mut index = 0;
    while start < rows {
        let len = group_rows.min(rows - start);
        let mut writers = shape.values.create_column_writers(index)?.into_iter();
        let mut group = w.next_row_group()?;
        for (i, field) in schema.fields().iter().enumerate() {
            let descr = parquet_schema.column(i);
            let stats = shape.statistics[i];
            let chunk = match &built[i] {
                Built::Null => constant::null_chunk(&descr, field.data_type(), len, stats)?,
                Built::Single(one) => constant::single_chunk(&descr, one.as_ref(), len, stats)?,
                Built::Values(a) if shape.direct[i] != Direct::No && len <= page_rows => {
                    let a = a.slice(start, len);
                    match shape.direct[i] {
                        Direct::Deltas => delta::delta_chunk(&descr, &a, stats, page_bytes)?,
                        _ => dictionary::dictionary_chunk(&descr, &a, stats, page_bytes)?,
                    }
                }
                Built::Values(_) => None,
            };
            if let Some(c) = chunk {
                #[cfg(test)]
                if matches!(built[i], Built::Values(_)) {
                    DIRECT_CHUNKS.with_borrow_mut(|n| n.push(shape.direct[i]));
                }
                group.append_column(&c.bytes, c.close)?;
                continue;
            }
            let (array, writer) = match &built[i] {
                Built::Values(a) if shape.direct[i] == Direct::No => {
                    (a.slice(start, len), writers.next())
                }
                // A column of one value or none that has to go through a writer after all (a
                // value too long to keep whole in statistics), or one of deltas longer than a
                // page: rare, so a writer of every column is made to use one.
                _ => (
                    values(i, start, len),
                    shape.all.create_column_writers(index)?.into_iter().nth(i),
                ),
            };
            let Some(mut writer) = writer else {
                return Err(LakeError::Schema(format!(
                    "no column writer for {}",
                    field.name()
                )));
            };
            for leaf in compute_leaves(field, &array)? {
                writer.write(&leaf)?;
            }
            writer.close()?.append_to_row_group(&mut group)?;
        }
        group.close()?;
        start += len;
        index += 1;
    }
    w.close()?;
    Ok(Bytes::from(buf))
}

/// What every per-object file of one table, column shape ([`Kind`]s) and settings shares, made
/// once per thread: the writer settings, the Parquet schema, which columns keep statistics,
/// and column writers for the columns that go through them (the others are written as their
/// pages, [`constant`]). Made for each file, they cost 3.6 % of normalize's instructions
/// (settings 0.9 %, schema 0.6 %, a column writer for every column 1.1 %).
struct Shape {
    /// The Arrow schema it was made for (with the [`ShapeKey`]).
    schema: SchemaRef,
    props: Arc<WriterProperties>,
    root: parquet::schema::types::TypePtr,
    parquet: parquet::schema::types::SchemaDescPtr,
    statistics: Vec<bool>,
    /// How each column's [`Kind::Values`] chunks are written.
    direct: Vec<Direct>,
    /// Writers of the other [`Kind::Values`] columns only, in schema order.
    values: ArrowRowGroupWriterFactory,
    /// Writers of every column.
    all: ArrowRowGroupWriterFactory,
}

/// What a [`Shape`] is made from.
type ShapeKey = (Table, Vec<Kind>, i32, usize, bool);

thread_local! {
    static SHAPES: std::cell::RefCell<Vec<(ShapeKey, std::rc::Rc<Shape>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Shape {
    /// Shapes kept per thread; a raw object's outputs use a few, a day's a few dozen.
    const KEPT: usize = 256;

    fn of(
        table: Table,
        schema: &SchemaRef,
        kinds: Vec<Kind>,
        opts: &WriteOptions,
    ) -> Result<std::rc::Rc<Self>, LakeError> {
        let key: ShapeKey = (table, kinds, opts.zstd_level, opts.row_group_rows, opts.lz4);
        let found = SHAPES.with_borrow(|shapes| {
            shapes
                .iter()
                .find(|(k, s)| *k == key && s.schema == *schema)
                .map(|(_, s)| std::rc::Rc::clone(s))
        });
        if let Some(s) = found {
            return Ok(s);
        }
        let shape = std::rc::Rc::new(Self::new(table, schema, &key.1, opts)?);
        SHAPES.with_borrow_mut(|shapes| {
            if shapes.len() >= Self::KEPT {
                shapes.clear();
            }
            shapes.push((key, std::rc::Rc::clone(&shape)));
        });
        Ok(shape)
    }

    fn new(
        table: Table,
        schema: &SchemaRef,
        kinds: &[Kind],
        opts: &WriteOptions,
    ) -> Result<Self, LakeError> {
        // Rows only size bloom filters, which per-object files do not have.
        let props = Arc::new(properties(table, schema, kinds, 0, opts)?);
        let converter = ArrowSchemaConverter::new().with_coerce_types(props.coerce_types());
        let parquet = converter.convert(schema)?;
        let statistics = parquet
            .columns()
            .iter()
            .map(|d| props.statistics_enabled(d.path()) != EnabledStatistics::None)
            .collect();
        // The factories take their schema and settings from a file writer; these write
        // nowhere.
        let factory = |arrow: SchemaRef| -> Result<ArrowRowGroupWriterFactory, LakeError> {
            let parquet = converter.convert(&arrow)?;
            let w = SerializedFileWriter::new(
                std::io::sink(),
                parquet.root_schema_ptr(),
                Arc::clone(&props),
            )?;
            Ok(ArrowRowGroupWriterFactory::new(&w, arrow))
        };
        let direct: Vec<Direct> = parquet
            .columns()
            .iter()
            .zip(kinds)
            .map(|(d, k)| match k {
                Kind::Values => Direct::of(&props, d),
                _ => Direct::No,
            })
            .collect();
        let values: Vec<_> = schema
            .fields()
            .iter()
            .zip(kinds)
            .zip(&direct)
            .filter(|((_, k), direct)| **k == Kind::Values && **direct == Direct::No)
            .map(|((f, _), _)| Arc::clone(f))
            .collect();
        let values = factory(Arc::new(Schema::new(values)))?;
        let all = factory(Arc::clone(schema))?;
        Ok(Self {
            schema: Arc::clone(schema),
            root: parquet.root_schema_ptr(),
            parquet: Arc::new(parquet),
            statistics,
            direct,
            values,
            all,
            props,
        })
    }
}

/// How a column's chunks of several values are written: by parquet's column writer, or as
/// their pages directly ([`delta`], [`dictionary`]) when its settings are normalize's
/// per-object ones (`properties`): uncompressed v1 pages, as deltas or with a dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direct {
    No,
    Deltas,
    Dictionary,
}

impl Direct {
    fn of(props: &WriterProperties, d: &parquet::schema::types::ColumnDescriptor) -> Self {
        use parquet::basic::Type;
        let path = d.path();
        if props.compression(path) != Compression::UNCOMPRESSED
            || props.writer_version() != parquet::file::properties::WriterVersion::PARQUET_1_0
            || props.statistics_enabled(path) == EnabledStatistics::Page
            || props.bloom_filter_properties(path).is_some()
            || !direct_enabled()
        {
            return Self::No;
        }
        let deltas = match d.physical_type() {
            Type::INT32 | Type::INT64 => Encoding::DELTA_BINARY_PACKED,
            Type::BYTE_ARRAY => Encoding::DELTA_BYTE_ARRAY,
            _ => return Self::No,
        };
        if props.dictionary_enabled(path) {
            Self::Dictionary
        } else if props.encoding(path) == Some(deltas) {
            Self::Deltas
        } else {
            Self::No
        }
    }
}

#[cfg(not(test))]
fn direct_enabled() -> bool {
    true
}

#[cfg(test)]
thread_local! {
    /// Tests turn [`delta`] off to compare its files with the column writer's.
    static WRITER_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// How the chunks of several values written as their pages were written, for tests.
    static DIRECT_CHUNKS: std::cell::RefCell<Vec<Direct>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn direct_enabled() -> bool {
    !WRITER_ONLY.get()
}

/// One output object: where it goes and how many rows it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Output {
    pub key: String,
    pub table: Table,
    /// The partition's hour (epoch seconds) and `x_net` value, as in the key.
    #[serde(skip)]
    pub hour: i64,
    #[serde(skip)]
    pub net: String,
    pub rows: usize,
    pub bytes: usize,
}

/// One partition's rows: (table, hour start, x_net) and the rows in lookup order.
pub type Partition<'a> = ((Table, i64, String), Vec<&'a Row>);

/// Key-value metadata entry naming the row order of an object (see [`SORT_ORDER`]).
pub const SORT_ORDER_KEY: &str = "natlake.sort_order";
/// The lake order, v2: the table's [`sort_columns`] as stored (addresses compared as their
/// *text*, as the string column, its statistics and the declared sorting columns order them;
/// nulls first), then `raw_key`, `raw_record`. Objects without this marker (written before
/// it) sort addresses as numbers and are re-sorted by compaction.
pub const SORT_ORDER: &str = "v2";

/// The metadata entry every object in the lake order carries.
pub fn sort_order_marker() -> parquet::file::metadata::KeyValue {
    parquet::file::metadata::KeyValue::new(SORT_ORDER_KEY.to_owned(), SORT_ORDER.to_owned())
}

/// Whether an object's key-value metadata declares the lake order.
pub fn declares_sort_order(kv: Option<&Vec<parquet::file::metadata::KeyValue>>) -> bool {
    kv.is_some_and(|kv| {
        kv.iter()
            .any(|e| e.key == SORT_ORDER_KEY && e.value.as_deref() == Some(SORT_ORDER))
    })
}

/// Groups rows by (table, hour, x_net), each group in the lake order ([`SORT_ORDER`]), groups
/// in key order.
///
/// One sort of compact keys does both: a row's partition (table, hour, network as bytes) and its
/// order inside it (the rank of its address's text, port, time, raw_record, then its position,
/// so ties keep their input order). The few distinct addresses are formatted and ranked once; no
/// row is formatted or allocated for: the `x_net` text is made once per group.
pub fn partition(rows: &[Row]) -> Vec<Partition<'_>> {
    let ranks = AddressRanks::new(rows);
    let keys = RawKeyRanks::new(rows);
    // Rows are sorted by their partition's number in order of first appearance, not by the
    // packed partition key itself: the groups are put in key order at the end anyway.
    let mut numbers = PartNumbers::default();
    let mut hours = LastHour::default();
    let keyed: Vec<(u32, SortKey)> = rows
        .iter()
        .zip(&ranks.rows)
        .map(|(r, &rank)| {
            let part = numbers.of(part_key(r, &mut hours));
            (part, sort_key(r, rank, &keys))
        })
        .collect();
    let order = match Packing::of(&keyed) {
        Some(packing) => packing.order(&keyed),
        None => tuple_order(&keyed),
    };
    let mut parts: Vec<Partition<'_>> = Vec::new();
    let mut current: Option<u32> = None;
    for (pk, i) in order {
        let row = &rows[i as usize];
        if current != Some(pk) {
            current = Some(pk);
            let net = layout::net_value(row.event.partition_ip());
            let key = (row.event.table(), layout::hour_start(row.event.time()), net);
            parts.push((key, Vec::new()));
        }
        if let Some((_, group)) = parts.last_mut() {
            group.push(row);
        }
    }
    // The text order of x_net (e.g. "198.18.10.0_24" < "198.18.2.0_24") names the outputs' order.
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts
}

/// (partition number, row position) of every row in the lake order: the (partition number,
/// [`SortKey`], position) tuples sorted.
fn tuple_order(keyed: &[(u32, SortKey)]) -> Vec<(u32, u32)> {
    let mut tuples: Vec<(u32, SortKey, u32)> = (0u32..)
        .zip(keyed)
        .map(|(i, (pk, sk))| (*pk, *sk, i))
        .collect();
    tuples.sort_unstable();
    tuples.into_iter().map(|(pk, _, i)| (pk, i)).collect()
}

/// The rows' (partition number, [`SortKey`], position) packed into one u128 that sorts the
/// same way, each field in the bits its values in this batch need (times and record indices
/// as offsets from their least): a raw object's rows take ~100 bits. Sorting 16-byte integers
/// instead of 40-byte tuples compared field by field cost a third of the instructions (bench/
/// normalize.sh's 3-hour day: ~50 M -> ~21 M over 60 objects; a radix sort of the same keys,
/// a byte at a time, took ~45 M). Batches whose fields do not fit sort as tuples.
struct Packing {
    /// Bit widths: partition, address rank, port, time, raw-key rank, record, position.
    widths: [u32; 7],
    min_time: i64,
    min_record: i64,
}

impl Packing {
    fn of(keyed: &[(u32, SortKey)]) -> Option<Self> {
        let (first, _) = keyed.split_first()?;
        let (mut min_time, mut max_time) = (first.1.1, first.1.1);
        let (mut min_record, mut max_record) = (first.1.3, first.1.3);
        let (mut pk, mut rank, mut port, mut key) = (0u32, 0u64, 0u64, 0u32);
        for (p, (addr, time, k, record)) in keyed {
            pk = pk.max(*p);
            rank = rank.max(addr >> 32);
            port = port.max(addr & 0xffff_ffff);
            key = key.max(*k);
            min_time = min_time.min(*time);
            max_time = max_time.max(*time);
            min_record = min_record.min(*record);
            max_record = max_record.max(*record);
        }
        let bits = |v: u64| u64::BITS - v.leading_zeros();
        let span = |lo: i64, hi: i64| hi.abs_diff(lo);
        let widths = [
            bits(u64::from(pk)),
            bits(rank),
            bits(port),
            bits(span(min_time, max_time)),
            bits(u64::from(key)),
            bits(span(min_record, max_record)),
            bits(keyed.len() as u64 - 1),
        ];
        (widths.iter().sum::<u32>() <= u128::BITS).then_some(Self {
            widths,
            min_time,
            min_record,
        })
    }

    /// (partition number, row position) of every row, in the lake order.
    fn order(&self, keyed: &[(u32, SortKey)]) -> Vec<(u32, u32)> {
        let w = self.widths;
        let mut packed: Vec<u128> = (0u64..)
            .zip(keyed)
            .map(|(i, (pk, (addr, time, key, record)))| {
                let fields = [
                    u64::from(*pk),
                    addr >> 32,
                    addr & 0xffff_ffff,
                    time.abs_diff(self.min_time),
                    u64::from(*key),
                    record.abs_diff(self.min_record),
                    i,
                ];
                // A zero width shifts by 0 and adds a 0.
                w.iter()
                    .zip(fields)
                    .fold(0u128, |acc, (bits, v)| (acc << bits) | u128::from(v))
            })
            .collect();
        packed.sort_unstable();
        let below_pk: u32 = w[1..].iter().sum();
        let position = (1u128 << w[6]) - 1;
        packed
            .into_iter()
            .map(|k| {
                // Both fit in u32: they were made from u32s.
                let pk = if w[0] == 0 { 0 } else { (k >> below_pk) as u32 };
                (pk, (k & position) as u32)
            })
            .collect()
    }
}

/// Numbers the distinct partition keys of a batch in order of first appearance. A raw object's
/// rows fall into a few partitions: they are searched in a short list (the last one found
/// first), and in a map only once there are many.
#[derive(Default)]
struct PartNumbers {
    keys: Vec<PartKey>,
    last: u32,
    many: std::collections::HashMap<PartKey, u32>,
}

impl PartNumbers {
    /// Distinct keys searched in the list before the map takes over.
    const LIST: usize = 16;

    fn of(&mut self, key: PartKey) -> u32 {
        if self.keys.get(self.last as usize) == Some(&key) {
            return self.last;
        }
        let n = if self.keys.len() <= Self::LIST {
            match self.keys.iter().position(|k| *k == key) {
                Some(i) => i as u32,
                None => {
                    self.keys.push(key);
                    if self.keys.len() > Self::LIST {
                        self.many = (0u32..).zip(&self.keys).map(|(i, k)| (*k, i)).collect();
                    }
                    (self.keys.len() - 1) as u32
                }
            }
        } else {
            let next = self.keys.len() as u32;
            let n = *self.many.entry(key).or_insert(next);
            if n == next {
                self.keys.push(key);
            }
            n
        };
        self.last = n;
        n
    }
}

/// (table, hour start, partition network) packed into one integer that sorts the same way:
/// table (8 bits), hour start in seconds with its sign flipped (64), the network's family
/// (8) and its /24 or /48 prefix bits (48). The sort moves and compares these keys for every
/// row; packed, most comparisons stop at one u128.
type PartKey = u128;
/// (rank of the sort address's text << 32 | sort port + 1 or 0 for none, time, rank of
/// raw_key, raw_record): the table's sort columns then the provenance, as the merge compares
/// them.
type SortKey = (u64, i64, u32, i64);

fn ip_key(ip: Option<std::net::IpAddr>) -> (u8, u128) {
    match ip {
        None => (0, 0),
        Some(std::net::IpAddr::V4(a)) => (1, u128::from(u32::from(a))),
        Some(std::net::IpAddr::V6(a)) => (2, u128::from(a)),
    }
}

/// The last hour a time fell in: a raw object's rows fall in one or two hours, and the two
/// divisions of [`layout::hour_start`] cost more than the rest of a row's partition key.
#[derive(Default)]
struct LastHour {
    /// Times `from..to` (µs) start hour `start` (s); empty until the first time.
    from: i64,
    to: i64,
    start: i64,
}

impl LastHour {
    fn start(&mut self, t: Micros) -> i64 {
        if (self.from..self.to).contains(&t) {
            return self.start;
        }
        let start = layout::hour_start(t);
        let from = start.checked_mul(1_000_000);
        let to = from.and_then(|f| f.checked_add(3_600_000_000));
        // An hour at the ends of the range is not kept: recomputed each time.
        (self.from, self.to) = from.zip(to).unwrap_or((0, 0));
        self.start = start;
        start
    }
}

fn part_key(r: &Row, hours: &mut LastHour) -> PartKey {
    let (fam, bits) = ip_key(r.event.partition_ip());
    let net = match fam {
        1 => bits >> (32 - u32::from(layout::V4_PREFIX_LEN)),
        2 => bits >> (128 - u32::from(layout::V6_PREFIX_LEN)),
        _ => 0,
    };
    let hour = (hours.start(r.event.time()) as u64) ^ (1 << 63);
    (u128::from(r.event.table() as u8) << 120)
        | (u128::from(hour) << 56)
        | (u128::from(fam) << 48)
        | (net & ((1 << 48) - 1))
}

/// The address and port a row sorts by: the first two of its table's [`sort_columns`] (a
/// table sorted by address then time has no port here).
fn sort_address(r: &Row) -> (Option<std::net::IpAddr>, Option<u16>) {
    match &r.event {
        Event::Nat(e) => (e.x_ip, e.x_port),
        Event::Flow(e) => (e.post_nat_src_ip, e.post_nat_src_port),
        Event::Firewall(e) => (e.src_ip, None),
        Event::Http(e) => (e.client_ip, None),
        Event::Mail(e) => (e.client_ip, None),
        Event::Auth(e) => (e.src_ip, None),
    }
}

/// The text rank of each row's sort address among the batch's distinct ones (the order of the
/// string column): the row sort compares integers and each address is formatted once however
/// many rows hold it. The distinct addresses are numbered as they are found, so a row's rank
/// is read by that number, not searched for (a binary search per row cost 0.9 % of normalize's
/// instructions).
struct AddressRanks {
    /// The rank of each row's address; no address (null, first in the lake order) ranks 0.
    rows: Vec<u32>,
}

impl AddressRanks {
    fn new(rows: &[Row]) -> Self {
        let (keys, ids) = distinct(rows.iter().map(|r| ip_key(sort_address(r).0)));
        // None's empty text sorts first: nulls first. Distinct addresses have distinct text.
        let mut by_text: Vec<(String, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (ip_of(*k).map(|a| a.to_string()).unwrap_or_default(), i))
            .collect();
        by_text.sort_unstable();
        let mut ranks = vec![0u32; keys.len()];
        for (rank, (_, i)) in by_text.iter().enumerate() {
            ranks[*i] = rank as u32;
        }
        let rows = ids
            .iter()
            .map(|&i| ranks.get(i as usize).copied().unwrap_or(u32::MAX))
            .collect();
        Self { rows }
    }
}

/// The address of an [`ip_key`].
fn ip_of((family, bits): (u8, u128)) -> Option<std::net::IpAddr> {
    match family {
        1 => Some(std::net::Ipv4Addr::from(bits as u32).into()),
        2 => Some(std::net::Ipv6Addr::from(bits).into()),
        _ => None,
    }
}

/// The distinct keys among many (a raw object's rows hold a few dozen public addresses), in
/// order of first appearance, and the number (index among them) of each key given: an
/// open-addressed table probed from a multiplicative hash. Sorting every row's address to
/// deduplicate them cost 1.3 % of normalize's instructions.
fn distinct(keys: impl Iterator<Item = (u8, u128)>) -> (Vec<(u8, u128)>, Vec<u32>) {
    fn slot((family, bits): (u8, u128), mask: usize) -> usize {
        let x = (bits as u64) ^ ((bits >> 64) as u64) ^ u64::from(family);
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
    }
    let mut out: Vec<(u8, u128)> = Vec::new();
    let mut ids: Vec<u32> = Vec::with_capacity(keys.size_hint().0);
    // (key, its number) of the keys found so far.
    let mut table: Vec<Option<((u8, u128), u32)>> = vec![None; 64];
    for key in keys {
        if out.len() * 2 >= table.len() {
            // At most half full: rebuilt twice as large from the keys found so far.
            table = vec![None; table.len() * 2];
            let mask = table.len() - 1;
            for (id, k) in (0u32..).zip(&out) {
                let mut at = slot(*k, mask);
                while table[at].is_some() {
                    at = (at + 1) & mask;
                }
                table[at] = Some((*k, id));
            }
        }
        let mask = table.len() - 1;
        let mut at = slot(key, mask);
        let id = loop {
            match table[at] {
                None => {
                    let id = out.len() as u32;
                    table[at] = Some((key, id));
                    out.push(key);
                    break id;
                }
                Some((k, id)) if k == key => break id,
                Some(_) => at = (at + 1) & mask,
            }
        };
        ids.push(id);
    }
    (out, ids)
}

/// The raw keys of a batch of rows ranked by their text. Normalize's rows come from one raw
/// object and share one key: then every rank is 0 and a row costs a pointer comparison.
struct RawKeyRanks<'a> {
    /// Distinct keys, ascending; empty when every row has the same key.
    keys: Vec<&'a str>,
}

impl<'a> RawKeyRanks<'a> {
    fn new(rows: &'a [Row]) -> Self {
        let Some(first) = rows.first().map(|r| &r.provenance.raw_key) else {
            return Self { keys: Vec::new() };
        };
        let same = |k: &crate::model::SharedStr| std::rc::Rc::ptr_eq(k, first) || k == first;
        if rows.iter().all(|r| same(&r.provenance.raw_key)) {
            return Self { keys: Vec::new() };
        }
        let mut keys: Vec<&str> = rows.iter().map(|r| &*r.provenance.raw_key).collect();
        keys.sort_unstable();
        keys.dedup();
        Self { keys }
    }

    fn rank(&self, key: &str) -> u32 {
        if self.keys.is_empty() {
            return 0;
        }
        self.keys.binary_search(&key).map_or(u32::MAX, |i| i as u32)
    }
}

/// The lake order inside a partition ([`SORT_ORDER`]).
/// `rank`: the text rank of the row's sort address ([`AddressRanks`]).
fn sort_key(r: &Row, rank: u32, keys: &RawKeyRanks<'_>) -> SortKey {
    let (_, port) = sort_address(r);
    let port = port.map_or(0, |p| u64::from(p) + 1);
    (
        (u64::from(rank) << 32) | port,
        r.event.time(),
        keys.rank(&r.provenance.raw_key),
        // As stored (the column is Int64).
        r.provenance.raw_record as i64,
    )
}

/// Rejects of one hour in the lake order: `recv_time`, then provenance (ties keep their order).
pub fn sort_rejects(group: &mut [&Reject]) {
    group.sort_by(|a, b| {
        a.recv_time
            .cmp(&b.recv_time)
            .then_with(|| a.provenance.raw_key.cmp(&b.provenance.raw_key))
            .then_with(|| (a.provenance.raw_record as i64).cmp(&(b.provenance.raw_record as i64)))
    });
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
                hour,
                net,
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
    for (hour, mut group) in by_hour {
        sort_rejects(&mut group);
        let bytes = encode(Table::Rejects, &cols, &group, opts)?;
        let key = layout::lake_key(Table::Rejects, hour, layout::NONE_NET, raw_key);
        out.push((
            Output {
                key,
                table: Table::Rejects,
                hour,
                net: layout::NONE_NET.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NatEventKind::{SessionCreate, SessionDelete};
    use crate::testing::nat_row;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    const H: i64 = 1_793_491_200_000_000; // 2026-11-01T00

    fn with_x(mut r: Row, x: &str) -> Row {
        if let Event::Nat(e) = &mut r.event {
            e.x_ip = x.parse().ok();
        }
        r
    }

    /// The packed sort orders rows as the tuples do, fields of every width included, and
    /// batches whose fields need more than 128 bits are left to the tuples.
    #[test]
    fn packed_keys_sort_like_the_tuples() {
        let mut seed = 3u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 11
        };
        for case in 0..200u64 {
            let n = 1 + (next() % 300) as usize;
            // Few or many distinct values per field, times and records anywhere.
            let spread = |v: u64, m: u64| if m == 0 { 0 } else { v % m };
            let (parts, addrs, ports) = (next() % 5, next() % 70, next() % 66_000);
            let time_span = 1u64 << (next() % 40);
            let time_base = (next() as i64) - (1 << 51);
            let keyed: Vec<(u32, SortKey)> = (0..n)
                .map(|_| {
                    let rank = spread(next(), addrs);
                    let port = spread(next(), ports);
                    (
                        spread(next(), parts) as u32,
                        (
                            (rank << 32) | port,
                            time_base + spread(next(), time_span) as i64,
                            spread(next(), case % 3) as u32,
                            spread(next(), 1000) as i64 - 10,
                        ),
                    )
                })
                .collect();
            let packing = Packing::of(&keyed).expect("these fit in 128 bits");
            assert_eq!(packing.order(&keyed), tuple_order(&keyed), "case {case}");
        }
        let keys: Vec<(u8, u128)> = (0..20_000)
            .map(|_| ((next() % 3) as u8, u128::from(next() % 700)))
            .collect();
        let mut want = keys.clone();
        want.sort_unstable();
        want.dedup();
        let (mut got, ids) = distinct(keys.iter().copied());
        // Each key's number names it among the distinct keys, numbered as first found.
        assert_eq!(ids.len(), keys.len());
        for (k, id) in keys.iter().zip(&ids) {
            assert_eq!(got[*id as usize], *k);
        }
        // Numbered as found: each id at most one past the highest so far.
        assert!(
            ids.iter()
                .try_fold(0u32, |next, &id| (id <= next).then(|| next.max(id + 1)))
                .is_some()
        );
        got.sort_unstable();
        assert_eq!(got, want);
        let wide = vec![
            (0, (1 << 40, i64::MIN, 0, i64::MAX)),
            (1, (0, i64::MAX, 0, i64::MIN)),
        ];
        assert!(Packing::of(&wide).is_none());
        assert!(Packing::of(&[]).is_none());
    }

    #[test]
    fn partitions_sorted_by_key_then_lookup_order() {
        let rows = vec![
            with_x(
                nat_row(H + 5, SessionCreate, "100.64.0.1", 2000, "k", 0),
                "198.18.2.9",
            ),
            with_x(
                nat_row(H + 9, SessionCreate, "100.64.0.2", 1500, "k", 1),
                "198.18.10.1",
            ),
            with_x(
                nat_row(H + 1, SessionCreate, "100.64.0.3", 1500, "k", 2),
                "198.18.2.9",
            ),
            with_x(
                nat_row(H + 3, SessionDelete, "100.64.0.3", 1500, "k", 3),
                "198.18.2.9",
            ),
            // Same key as record 3: ties keep their input order.
            with_x(
                nat_row(H + 3, SessionDelete, "100.64.0.4", 1500, "k", 4),
                "198.18.2.9",
            ),
            with_x(
                nat_row(H + 3_600_000_000, SessionCreate, "100.64.0.5", 7, "k", 5),
                "198.18.2.1",
            ),
        ];
        let parts = partition(&rows);
        let shape: Vec<(String, i64, Vec<u64>)> = parts
            .iter()
            .map(|((_, hour, net), g)| {
                (
                    net.clone(),
                    *hour,
                    g.iter().map(|r| r.provenance.raw_record).collect(),
                )
            })
            .collect();
        let h = H / 1_000_000;
        assert_eq!(
            shape,
            vec![
                ("198.18.10.0_24".to_string(), h, vec![1]),
                ("198.18.2.0_24".to_string(), h, vec![2, 3, 4, 0]),
                ("198.18.2.0_24".to_string(), h + 3600, vec![5]),
            ]
        );
    }

    fn x_order(group: &[&Row]) -> Vec<(String, Option<u16>, u64)> {
        group
            .iter()
            .map(|r| match &r.event {
                Event::Nat(e) => (
                    e.x_ip.map(|a| a.to_string()).unwrap_or_default(),
                    e.x_port,
                    r.provenance.raw_record,
                ),
                _ => unreachable!("NAT rows only"),
            })
            .collect()
    }

    #[test]
    fn addresses_sort_by_their_text_not_their_number() {
        // As numbers: .2 < .9 < .10 < .99 < .100 < .255; as text: .10 < .100 < .2 < .255 <
        // .9 < .99. Input in numeric order, ports descending so no other key hides the order.
        let addrs = ["2", "9", "10", "99", "100", "255"];
        let mut rows: Vec<Row> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                with_x(
                    nat_row(
                        H + 1,
                        SessionCreate,
                        "100.64.0.1",
                        9000 - i as u16,
                        "k",
                        i as u64,
                    ),
                    &format!("198.18.0.{a}"),
                )
            })
            .collect();
        // No public address at all (a row the lake keeps under x_net=none): its own partition.
        let mut none = nat_row(H + 1, SessionCreate, "100.64.0.1", 1, "k", 99);
        if let Event::Nat(e) = &mut none.event {
            e.x_ip = None;
        }
        rows.push(none);
        let parts = partition(&rows);
        assert_eq!(parts.len(), 2);
        let got: Vec<String> = x_order(&parts[0].1).into_iter().map(|r| r.0).collect();
        let want: Vec<String> = ["10", "100", "2", "255", "9", "99"]
            .iter()
            .map(|a| format!("198.18.0.{a}"))
            .collect();
        assert_eq!(got, want);
        assert_eq!(parts[1].0.2, "none");
    }

    #[test]
    fn single_valued_string_columns() {
        use arrow::array::{Array, StringArray};
        let col = |v: &[Option<&str>]| StringArray::from(v.to_vec());
        let k = "raw/syslog_udp/hour=2026-11-01T00/relay_0001.nlraw.zst";
        assert!(single_value(&col(&[Some(k); 5])));
        assert!(single_value(&col(&[Some(""), Some("")])));
        assert!(single_value(&col(&[Some("a")])));
        // A differing value anywhere, of the same length or not; a null; nothing.
        let mut other = k.replace("0001", "0002");
        for at in 0..5 {
            let mut v = vec![Some(k); 5];
            v[at] = Some(&other);
            assert!(!single_value(&col(&v)), "{at}");
        }
        other.push('x');
        assert!(!single_value(&col(&[Some(k), Some(&other)])));
        assert!(!single_value(&col(&[Some("ab"), Some("a"), Some("b")])));
        assert!(!single_value(&col(&[Some("ab"), Some("abab")])));
        assert!(!single_value(&col(&[Some(k), None])));
        assert!(!single_value(&col(&[])));
        // A slice of a column: its own offsets, not the buffer's start.
        let c = col(&[Some("x"), Some(k), Some(k), Some("y")]);
        assert!(single_value(&c.slice(1, 2)));
        assert!(!single_value(&c.slice(0, 2)));
        assert!(!single_value(&c.slice(2, 2)));
        assert_eq!(c.slice(1, 2).len(), 2);
    }

    #[test]
    fn many_interleaved_partitions_group_and_sort_like_few() {
        // 40 public /24s, more than `PartNumbers` searches in its list, rows interleaved.
        let rows: Vec<Row> = (0..600u64)
            .map(|i| {
                let net = (i * 7) % 40;
                let x = format!("198.{}.{}.{}", 18 + net / 20, net % 20, (i * 13) % 5);
                let port = 1024 + ((i * 31) % 97) as u16;
                let t = H + (i as i64 % 11) * 1_000;
                with_x(nat_row(t, SessionCreate, "100.64.0.1", port, "k", i), &x)
            })
            .collect();
        let parts = partition(&rows);
        assert_eq!(parts.len(), 40);
        assert!(parts.windows(2).all(|w| w[0].0 < w[1].0));
        let key = |r: &Row| match &r.event {
            Event::Nat(e) => (
                e.x_ip.map(|a| a.to_string()),
                e.x_port,
                e.time,
                r.provenance.raw_record,
            ),
            _ => unreachable!("NAT rows only"),
        };
        let mut seen = 0;
        for ((_, _, net), group) in &parts {
            seen += group.len();
            assert!(
                group
                    .iter()
                    .all(|r| layout::net_value(r.event.partition_ip()) == *net)
            );
            assert!(group.windows(2).all(|w| key(w[0]) <= key(w[1])), "{net}");
        }
        assert_eq!(seen, rows.len());
    }

    #[test]
    fn ipv6_addresses_sort_by_their_text() {
        // Numerically 2001:db8:1::9 < ::a < ::10 < ::1:0; as text "…::10" < "…::1:0" <
        // "…::9" < "…::a". One /48, so one partition.
        let addrs = [
            "2001:db8:1::a",
            "2001:db8:1::10",
            "2001:db8:1::9",
            "2001:db8:1::1:0",
        ];
        let rows: Vec<Row> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                with_x(
                    nat_row(H, SessionCreate, "100.64.0.1", 80, "k", i as u64),
                    a,
                )
            })
            .collect();
        let parts = partition(&rows);
        assert_eq!(parts.len(), 1);
        let got: Vec<String> = x_order(&parts[0].1).into_iter().map(|r| r.0).collect();
        assert_eq!(
            got,
            [
                "2001:db8:1::10",
                "2001:db8:1::1:0",
                "2001:db8:1::9",
                "2001:db8:1::a"
            ]
        );
    }

    #[test]
    fn ties_sort_by_record_then_input_order_and_ports_absent_first() {
        let x = "198.18.0.7";
        let rows = vec![
            with_x(nat_row(H + 5, SessionCreate, "100.64.0.1", 2000, "k", 7), x),
            with_x(nat_row(H + 5, SessionDelete, "100.64.0.2", 2000, "k", 3), x),
            with_x(nat_row(H + 5, SessionCreate, "100.64.0.3", 2000, "k", 3), x),
            with_x(nat_row(H + 1, SessionCreate, "100.64.0.4", 2000, "k", 9), x),
            // A port block or address binding logged without a port: nulls first.
            {
                let mut r = with_x(nat_row(H + 9, SessionCreate, "100.64.0.5", 0, "k", 8), x);
                if let Event::Nat(e) = &mut r.event {
                    e.x_port = None;
                }
                r
            },
        ];
        let parts = partition(&rows);
        let got: Vec<(Option<u16>, u64, Option<String>)> = parts[0]
            .1
            .iter()
            .map(|r| match &r.event {
                Event::Nat(e) => (
                    e.x_port,
                    r.provenance.raw_record,
                    e.src_ip.map(|a| a.to_string()),
                ),
                _ => unreachable!(),
            })
            .collect();
        let ip = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            vec![
                (None, 8, ip("100.64.0.5")),
                (Some(2000), 9, ip("100.64.0.4")),
                (Some(2000), 3, ip("100.64.0.2")),
                (Some(2000), 3, ip("100.64.0.3")),
                (Some(2000), 7, ip("100.64.0.1")),
            ]
        );
    }

    #[test]
    fn rows_of_several_raw_objects_tie_break_on_the_raw_key_first() {
        let x = "198.18.0.7";
        let rows = vec![
            with_x(nat_row(H, SessionCreate, "100.64.0.1", 80, "raw/b", 1), x),
            with_x(nat_row(H, SessionCreate, "100.64.0.2", 80, "raw/a", 5), x),
            with_x(nat_row(H, SessionCreate, "100.64.0.3", 80, "raw/b", 0), x),
        ];
        let parts = partition(&rows);
        let got: Vec<(String, u64)> = parts[0]
            .1
            .iter()
            .map(|r| (r.provenance.raw_key.to_string(), r.provenance.raw_record))
            .collect();
        let want = [("raw/a", 5), ("raw/b", 0), ("raw/b", 1)];
        assert_eq!(got, want.map(|(k, r)| (k.to_string(), r)));
    }

    #[test]
    fn tables_without_a_port_in_their_sort_columns_sort_by_address_then_time() {
        use crate::model::{FirewallAction, FirewallEvent};
        let fw = |src: &str, port: u16, t: i64, rec: u64| {
            let mut r = nat_row(H + t, SessionCreate, "100.64.0.1", 1, "k", rec);
            r.event = Event::Firewall(FirewallEvent {
                time: H + t,
                action: FirewallAction::Deny,
                rule: None,
                protocol: Some(6),
                src_ip: src.parse().ok(),
                src_port: Some(port),
                dst_ip: None,
                dst_port: None,
                in_if: None,
                out_if: None,
                length: None,
                vrf: None,
            });
            r
        };
        // Source ports descending with time ascending: the order must follow time.
        let rows = vec![
            fw("203.0.113.9", 100, 3, 0),
            fw("203.0.113.10", 900, 1, 1),
            fw("203.0.113.9", 900, 1, 2),
        ];
        let parts = partition(&rows);
        let got: Vec<u64> = parts[0].1.iter().map(|r| r.provenance.raw_record).collect();
        assert_eq!(got, vec![1, 2, 0]);
        assert_eq!(sort_columns(Table::Firewall), ["src_ip", "time"]);
    }

    /// What normalize writes is exactly the merge's order (the merge's own sort leaves it as
    /// it is) and says so in its metadata.
    #[test]
    fn objects_are_written_in_the_merge_order_with_the_marker() {
        let xs = ["198.18.0.2", "198.18.0.10", "198.18.0.100", "198.18.0.3"];
        let rows: Vec<Row> = (0..400u64)
            .map(|i| {
                let kind = if i % 2 == 0 {
                    SessionCreate
                } else {
                    SessionDelete
                };
                let port = 1024 + ((i * 7_919) % 300) as u16;
                let mut r = with_x(
                    nat_row(
                        H + (i as i64 % 17) * 1_000,
                        kind,
                        "100.64.0.9",
                        port,
                        "k",
                        i / 2,
                    ),
                    xs[(i % 4) as usize],
                );
                if i % 37 == 0
                    && let Event::Nat(e) = &mut r.event
                {
                    e.x_port = None;
                }
                r
            })
            .collect();
        let out = encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &WriteOptions::ingest()).unwrap();
        assert_eq!(out.len(), 1);
        let file = SerializedFileReader::new(out[0].1.clone()).unwrap();
        assert!(declares_sort_order(
            file.metadata().file_metadata().key_value_metadata()
        ));
        let batches = crate::lake::read::parquet_batches(out[0].1.clone()).unwrap();
        let schema = crate::lake::compact::table_schema(Table::NatEvents);
        // No Arrow schema in the footer: the Parquet types give the table's Arrow types.
        assert!(
            file.metadata()
                .file_metadata()
                .key_value_metadata()
                .is_none_or(|kv| kv.iter().all(|e| e.key != "ARROW:schema"))
        );
        assert_eq!(batches[0].schema(), schema);
        let written = arrow::compute::concat_batches(&schema, &batches).unwrap();
        assert_eq!(written.num_rows(), 400);
        let resorted = crate::lake::merge::sort_rows(Table::NatEvents, &written).unwrap();
        assert_eq!(resorted, written);
        // And the order is not trivially so: numeric order would differ.
        let x_ip = written
            .column_by_name("x_ip")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        use arrow::array::Array;
        let first_non_null = (0..x_ip.len()).find(|&i| x_ip.is_valid(i)).unwrap();
        assert_eq!(x_ip.value(first_non_null), "198.18.0.10");
    }

    #[test]
    fn rejects_are_written_in_receive_order() {
        let reject = |t: i64, rec: u64| Reject {
            recv_time: H + t,
            reason: "no parser matched".into(),
            format: "auto".into(),
            input_kind: "syslog_udp".into(),
            peer: None,
            payload: b"junk".to_vec(),
            provenance: crate::model::Provenance {
                raw_key: "raw/x/k.nlraw.zst".into(),
                raw_record: rec,
            },
        };
        let rejects = vec![reject(5, 0), reject(1, 2), reject(5, 1), reject(1, 1)];
        let out =
            encode_outputs("raw/x/k.nlraw.zst", &[], &rejects, &WriteOptions::ingest()).unwrap();
        let batches = crate::lake::read::parquet_batches(out[0].1.clone()).unwrap();
        let recs: Vec<i64> = batches[0]
            .column_by_name("raw_record")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(recs, vec![1, 2, 0, 1]);
    }

    /// Per-object outputs store distinct addresses, ports, counters and record indices as
    /// deltas, uncompressed, and read back as the same rows as compaction's encoding.
    #[test]
    fn per_object_outputs_store_distinct_values_as_deltas() {
        let rows: Vec<Row> = (0..500u32)
            .map(|i| {
                let inside = format!("100.64.{}.{}", i % 7, (i * 37) % 251);
                let mut r = nat_row(
                    H + i64::from(i) * 1_000,
                    SessionDelete,
                    &inside,
                    1024 + i as u16,
                    "k",
                    u64::from((i * 7_919) % 500),
                );
                if let Event::Nat(e) = &mut r.event {
                    e.src_port = Some(1 + ((i * 40_503) % 65_535) as u16);
                    e.dst_ip = format!("2001:db8::{:x}", i * 13).parse().ok();
                    // Counters missing on some rows (a session's create carries none).
                    e.bytes_out = (i % 3 != 0).then_some(u64::from(i) * 1_234_567);
                    e.packets_in = Some(u64::from(i % 11));
                }
                r
            })
            .collect();
        let out = encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &WriteOptions::ingest()).unwrap();
        let file = SerializedFileReader::new(out[0].1.clone()).unwrap();
        let rg = file.metadata().row_group(0);
        let col = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap()
        };
        for (name, want) in [
            ("src_ip", Encoding::DELTA_BYTE_ARRAY),
            ("dst_ip", Encoding::DELTA_BYTE_ARRAY),
            ("src_port", Encoding::DELTA_BINARY_PACKED),
            ("bytes_out", Encoding::DELTA_BINARY_PACKED),
            ("packets_in", Encoding::DELTA_BINARY_PACKED),
            ("raw_record", Encoding::DELTA_BINARY_PACKED),
        ] {
            let c = col(name);
            let encodings: Vec<_> = c.encodings().collect();
            assert!(encodings.contains(&want), "{name}: {encodings:?}");
            assert!(
                !encodings.contains(&Encoding::RLE_DICTIONARY),
                "{name}: {encodings:?}"
            );
            assert_eq!(c.compression(), Compression::UNCOMPRESSED, "{name}");
        }
        let read = |b: &Bytes| {
            let batches = crate::lake::read::parquet_batches(b.clone()).unwrap();
            arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
        };
        let full =
            encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap();
        let got = read(&out[0].1);
        assert_eq!(got.num_rows(), 500);
        assert_eq!(got, read(&full[0].1));
    }

    /// Per-object outputs write columns of one value or none as their pages directly: the same
    /// rows and the same statistics as parquet's column writer gives them, in every row group.
    #[test]
    fn per_object_columns_of_one_value_or_none_read_back_with_their_statistics() {
        let rows: Vec<Row> = (0..700u16)
            .map(|i| {
                let mut r = nat_row(
                    H + i64::from(i) * 1_000,
                    SessionCreate,
                    "100.64.0.9",
                    1024 + i,
                    "raw/x/k.nlraw.zst",
                    u64::from(i),
                );
                if let Event::Nat(e) = &mut r.event {
                    // Null in some rows only: not a column of one value.
                    e.dst_port = (i % 5 != 0).then_some(443);
                }
                r
            })
            .collect();
        let opts = WriteOptions {
            row_group_rows: 300,
            ..WriteOptions::ingest()
        };
        let out = encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &opts).unwrap();
        let full =
            encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap();
        let read = |b: &Bytes| {
            let batches = crate::lake::read::parquet_batches(b.clone()).unwrap();
            arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
        };
        assert_eq!(read(&out[0].1).num_rows(), 700);
        assert_eq!(read(&out[0].1), read(&full[0].1));
        let file = SerializedFileReader::new(out[0].1.clone()).unwrap();
        assert_eq!(file.metadata().num_row_groups(), 3);
        for (g, rg) in file.metadata().row_groups().iter().enumerate() {
            let col = |name: &str| {
                rg.columns()
                    .iter()
                    .find(|c| c.column_path().string() == name)
                    .unwrap()
            };
            let n = rg.num_rows() as u64;
            // One value: a one-entry dictionary, uncompressed, min = max on filter columns.
            for name in ["x_ip", "protocol", "raw_key", "device", "format", "event"] {
                let c = col(name);
                assert!(c.dictionary_page_offset().is_some(), "{name} in {g}");
                let encodings: Vec<_> = c.encodings().collect();
                assert!(encodings.contains(&Encoding::RLE_DICTIONARY), "{name}");
                assert_eq!(c.compression(), Compression::UNCOMPRESSED, "{name}");
            }
            let x_ip = col("x_ip").statistics().unwrap();
            assert_eq!(x_ip.min_bytes_opt(), Some(&b"198.51.100.7"[..]));
            assert_eq!(x_ip.max_bytes_opt(), Some(&b"198.51.100.7"[..]));
            assert_eq!(x_ip.null_count_opt(), Some(0));
            let protocol = col("protocol").statistics().unwrap();
            assert_eq!(protocol.min_bytes_opt(), Some(&6i32.to_le_bytes()[..]));
            assert_eq!(protocol.null_count_opt(), Some(0));
            assert!(col("raw_key").statistics().is_none());
            // No value: definition levels alone; a filter column counts its nulls.
            let end = col("end_time");
            assert!(end.dictionary_page_offset().is_none());
            let s = end.statistics().unwrap();
            assert_eq!((s.min_bytes_opt(), s.null_count_opt()), (None, Some(n)));
            assert!(col("subscriber").statistics().is_none());
            // Several values: parquet's writer, as before.
            let dst = col("dst_port");
            assert!(dst.dictionary_page_offset().is_some());
        }
    }

    /// A value longer than parquet keeps whole in statistics goes through its column writer,
    /// which truncates the statistics as compaction's files have them.
    #[test]
    fn per_object_long_single_values_keep_the_writers_statistics() {
        use arrow::array::StringArray;
        use arrow::datatypes::Field;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let long = "x".repeat(100);
        let schema = Arc::new(Schema::new(vec![Field::new("x_ip", DataType::Utf8, true)]));
        let values: ArrayRef = Arc::new(StringArray::from(vec![long.as_str(); 3]));
        let batch = RecordBatch::try_new(schema, vec![values]).unwrap();
        let b = encode_batch(Table::NatEvents, &batch, &WriteOptions::ingest()).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(b.clone())
            .unwrap()
            .build()
            .unwrap();
        let back: Vec<RecordBatch> = reader.map(|r| r.unwrap()).collect();
        assert_eq!(back[0].column(0).as_ref(), batch.column(0).as_ref());
        let file = SerializedFileReader::new(b).unwrap();
        let stats = file.metadata().row_group(0).column(0).statistics().unwrap();
        assert_eq!(stats.min_bytes_opt().map(<[u8]>::len), Some(64));
    }

    /// Per-object columns of several values are written as their pages (`delta`,
    /// `dictionary`) exactly as parquet's column writer writes them: the files are the same
    /// bytes, whatever the nulls, the values' spread (64-bit wrapping deltas included), the row
    /// count against blocks, miniblocks and run groups, few or many distinct values, statistics
    /// or none, several row groups, or a chunk longer than a page (left to the writer).
    #[test]
    fn per_object_pages_are_the_column_writers_bytes() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases = 0;
        for (case, n) in [
            1usize, 2, 3, 8, 9, 33, 64, 65, 100, 129, 256, 257, 511, 530, 1025, 3000,
        ]
        .into_iter()
        .enumerate()
        {
            let rows: Vec<Row> = (0..n)
                .map(|i| {
                    let r0 = next();
                    let mut r = nat_row(
                        H + (r0 % 3_600_000_000) as i64,
                        SessionDelete,
                        "100.64.1.2",
                        (next() % 65_536) as u16,
                        "k",
                        i as u64,
                    );
                    let nulls = match case % 4 {
                        0 => 0,
                        1 => 50,
                        2 => 95,
                        _ => 5,
                    };
                    let null = |v: u64| v % 100 < nulls;
                    // Runs of nulls too: every 40th row starts 20 in a row.
                    let run = case % 3 == 0 && i % 40 < 20;
                    if let Event::Nat(e) = &mut r.event {
                        e.src_port = (!null(next())).then_some((next() % 65_536) as u16);
                        e.bytes_out = match next() % 4 {
                            0 => Some(u64::MAX),
                            1 => Some(0),
                            _ => Some(next()),
                        }
                        .filter(|_| !run && !null(next()));
                        e.bytes_in = (!null(next())).then_some(next() % 1_000);
                        e.packets_out = Some(next() % 3);
                        e.packets_in = (!run).then_some(7);
                        e.end_time = (!null(next())).then_some(H + (next() % 1_000) as i64);
                        // Dictionary columns of a few values, or many (dst_port).
                        e.x_ip = format!("198.51.100.{}", next() % (1 + case as u64 % 5))
                            .parse()
                            .ok();
                        e.protocol = Some(if next() % 4 == 0 { 17 } else { 6 });
                        e.dst_port = match case % 3 {
                            0 => (next() % 65_536) as u16,
                            _ => [53, 443, 80][(next() % 3) as usize],
                        }
                        .into();
                        e.dst_port = e.dst_port.filter(|_| !null(next()));
                        e.direction = (!run).then_some(if next() % 2 == 0 { "out" } else { "in" });
                        if next() % 2 == 0 {
                            e.event = Some(SessionCreate);
                        }
                        // Addresses sharing prefixes of any length, IPv6 among them.
                        e.src_ip = format!("100.64.{}.{}", next() % 3, next() % 256)
                            .parse()
                            .ok();
                        e.dst_ip = match next() % 3 {
                            0 => format!("2001:db8::{:x}", next() % 4_096).parse().ok(),
                            _ => format!("203.0.{}.{}", next() % 200, next() % 256)
                                .parse()
                                .ok(),
                        }
                        .filter(|_| !null(next()));
                    }
                    r.envelope.device = Some(format!("cgn{}", next() % 3).into());
                    if case % 2 == 1 && i % 3 == 0 {
                        // Firewall rows: deltas of addresses that keep statistics (src_ip).
                        let src = format!("10.0.{}.{}", next() % 2, next() % 256);
                        r.event = Event::Firewall(crate::model::FirewallEvent {
                            time: H + (next() % 3_600_000_000) as i64,
                            action: crate::model::FirewallAction::Deny,
                            rule: None,
                            protocol: Some(6),
                            src_ip: src.parse().ok().filter(|_| !null(next())),
                            src_port: (!null(next())).then_some((next() % 65_536) as u16),
                            dst_ip: "203.0.113.9".parse().ok(),
                            dst_port: Some(22),
                            in_if: None,
                            out_if: None,
                            length: (!null(next())).then_some((next() % 1_500) as u32),
                            vrf: None,
                        });
                    }
                    r
                })
                .collect();
            for opts in [
                WriteOptions::ingest(),
                WriteOptions {
                    row_group_rows: 300,
                    ..WriteOptions::ingest()
                },
            ] {
                let encode_with = |writer_only: bool| {
                    WRITER_ONLY.set(writer_only);
                    SHAPES.with_borrow_mut(Vec::clear);
                    let out = encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &opts).unwrap();
                    WRITER_ONLY.set(false);
                    SHAPES.with_borrow_mut(Vec::clear);
                    out
                };
                let (direct, writer) = (encode_with(false), encode_with(true));
                assert_eq!(direct.len(), writer.len());
                for ((o, a), (_, b)) in direct.iter().zip(&writer) {
                    if a != b {
                        let meta = |b: &Bytes| {
                            let f = SerializedFileReader::new(b.clone()).unwrap();
                            f.metadata().row_group(0).columns().to_vec()
                        };
                        for (x, y) in meta(a).iter().zip(meta(b)) {
                            assert_eq!(x, &y, "{n} rows, case {case}, {}", o.key);
                        }
                    }
                    assert!(a == b, "{n} rows, case {case}, {}: files differ", o.key);
                    cases += 1;
                }
            }
        }
        assert!(cases >= 32);
        let direct = DIRECT_CHUNKS.take();
        for kind in [Direct::Deltas, Direct::Dictionary] {
            assert!(
                direct.iter().filter(|d| **d == kind).count() > 100,
                "{kind:?}"
            );
        }
        // Longer than a page: the writer's pages.
        let rows: Vec<Row> = (0..20_001u32)
            .map(|i| {
                let mut r = nat_row(H + i64::from(i), SessionDelete, "100.64.1.2", 7, "k", 0);
                if let Event::Nat(e) = &mut r.event {
                    e.bytes_out = (i % 3 != 0).then_some(u64::from(i) * 977);
                }
                r
            })
            .collect();
        let opts = WriteOptions::ingest();
        WRITER_ONLY.set(true);
        SHAPES.with_borrow_mut(Vec::clear);
        let writer = encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &opts).unwrap();
        WRITER_ONLY.set(false);
        SHAPES.with_borrow_mut(Vec::clear);
        let direct = encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &opts).unwrap();
        assert!(direct[0].1 == writer[0].1);
    }

    #[test]
    fn encodings_per_column() {
        let rows: Vec<Row> = (0..300u16)
            .map(|i| {
                nat_row(
                    H + i64::from(i) * 7_919,
                    SessionCreate,
                    "100.64.0.9",
                    1024 + i * 3,
                    "k",
                    u64::from(i),
                )
            })
            .collect();
        let out =
            encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap();
        assert_eq!(out.len(), 1);
        let file = SerializedFileReader::new(out[0].1.clone()).unwrap();
        let rg = file.metadata().row_group(0);
        let enc = |name: &str| {
            let c = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap();
            (c.encodings().collect::<Vec<_>>(), c.compression())
        };
        let (time, _) = enc("time");
        assert!(time.contains(&Encoding::DELTA_BINARY_PACKED), "{time:?}");
        assert!(!time.contains(&Encoding::RLE_DICTIONARY), "{time:?}");
        let (port, _) = enc("x_port");
        assert!(port.contains(&Encoding::DELTA_BINARY_PACKED), "{port:?}");
        // The receive time is stored as its delay after `time`, delta-packed too.
        assert!(
            rg.columns()
                .iter()
                .all(|c| c.column_path().string() != "recv_time")
        );
        let (delay, _) = enc("recv_delay_us");
        assert!(delay.contains(&Encoding::DELTA_BINARY_PACKED), "{delay:?}");
        assert!(!delay.contains(&Encoding::RLE_DICTIONARY), "{delay:?}");
        let (src, _) = enc("src_ip");
        assert!(src.contains(&Encoding::RLE_DICTIONARY), "{src:?}");
        // No enrichment configured: nothing to compress.
        let (_, comp) = enc("subscriber");
        assert_eq!(comp, Compression::UNCOMPRESSED);
        let (_, comp) = enc("time");
        assert!(matches!(comp, Compression::ZSTD(_)));
        // One destination, one raw key for all rows: dictionary and index run uncompressed.
        let (_, comp) = enc("dst_ip");
        assert_eq!(comp, Compression::UNCOMPRESSED);
        // One raw key for all rows: its dictionary and index run are left uncompressed.
        let (key, comp) = enc("raw_key");
        assert_eq!(comp, Compression::UNCOMPRESSED);
        assert!(key.contains(&Encoding::RLE_DICTIONARY), "{key:?}");
        // Outside normalize, record indices keep their dictionary (they repeat across objects).
        let (rec, comp) = enc("raw_record");
        assert!(rec.contains(&Encoding::RLE_DICTIONARY), "{rec:?}");
        assert!(matches!(comp, Compression::ZSTD(_)));
        // normalize's per-object outputs: no dictionary for distinct values, deltas instead.
        let opts = WriteOptions::ingest();
        assert!(opts.ingest);
        let out = encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &opts).unwrap();
        let file = SerializedFileReader::new(out[0].1.clone()).unwrap();
        let rg = file.metadata().row_group(0);
        let rec = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "raw_record")
            .unwrap();
        let encodings: Vec<_> = rec.encodings().collect();
        assert!(
            !encodings.contains(&Encoding::RLE_DICTIONARY),
            "{encodings:?}"
        );
        assert!(
            encodings.contains(&Encoding::DELTA_BINARY_PACKED),
            "{encodings:?}"
        );
        // Nothing left to compress; statistics only where queries filter.
        let col = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap()
        };
        assert_eq!(col("raw_record").compression(), Compression::UNCOMPRESSED);
        assert_eq!(col("subscriber").compression(), Compression::UNCOMPRESSED);
        // Bit-packed deltas are left as they are.
        for name in ["time", "recv_delay_us", "x_port"] {
            assert_eq!(col(name).compression(), Compression::UNCOMPRESSED, "{name}");
        }
        for name in ["x_ip", "x_port", "time", "protocol", "src_ip"] {
            assert!(col(name).statistics().is_some(), "{name} has no statistics");
        }
        for name in ["recv_delay_us", "raw_record", "bytes_out", "dst_port"] {
            assert!(col(name).statistics().is_none(), "{name} has statistics");
        }
        // The same rows either way.
        let read = |b: &Bytes| {
            let batches = crate::lake::read::parquet_batches(b.clone()).unwrap();
            arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
        };
        let full =
            encode_outputs("raw/x/k.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap();
        assert_eq!(read(&out[0].1), read(&full[0].1));
        // Per-object outputs: no bloom filter and no page index; the statistics are the
        // column chunk's.
        for c in rg.columns() {
            let name = c.column_path().string();
            assert!(
                c.bloom_filter_offset().is_none(),
                "{name} has a bloom filter"
            );
            assert!(
                c.column_index_offset().is_none(),
                "{name} has a column index"
            );
            assert!(
                c.offset_index_offset().is_none(),
                "{name} has an offset index"
            );
        }
        let x_ip = col("x_ip").statistics().unwrap();
        assert_eq!(x_ip.min_bytes_opt(), Some(&b"198.51.100.7"[..]));
        // Everything else: bloom filters on the lookup columns, sized to the rows, and the
        // page index.
        let file = SerializedFileReader::new(full[0].1.clone()).unwrap();
        let rg = file.metadata().row_group(0);
        for c in rg.columns() {
            let name = c.column_path().string();
            let bloom = ["x_ip", "x_port", "src_ip"].contains(&name.as_str());
            let len = c.bloom_filter_length().unwrap_or(0);
            assert_eq!(bloom, len > 0, "{name}: bloom filter of {len} bytes");
            assert!(
                len < 4096,
                "{name}: bloom filter of {len} bytes for 300 rows"
            );
            assert!(
                c.offset_index_offset().is_some(),
                "{name} has no offset index"
            );
        }
    }
}
