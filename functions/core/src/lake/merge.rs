//! A k-way streaming merge of sorted lake objects, in bounded memory.
//!
//! The merge order is the lake order (`writer::SORT_ORDER`): the sort columns as stored
//! (addresses as *text*), then raw_key, raw_record. Objects written in that order (normalize's
//! since the order marker, every `compacted.parquet` and carry) are read directly: each input is
//! read a batch at a time (`ParquetRecordBatchStream` over `ObjectReader`), a tree of losers over
//! the inputs' current rows (arrow's row format of the sort keys, compared as bytes) picks the
//! next row, and output batches are assembled with `interleave`. Memory is the inputs' current
//! batches (sized from a budget) and one output batch, whatever the partition's size.
//!
//! Objects written before the marker sort addresses as numbers (198.18.0.2 before 198.18.0.10,
//! which text puts after): the caller reads each whole (one raw object's rows: bounded by the
//! relay's batch size), sorts it and spills it as a sorted run to a local temporary store
//! ([`spill_sorted`]) first. Every input's order is checked as it streams, marker or not: an
//! input out of order stops the merge ([`MergeError::Unsorted`]) rather than misplace a row.
//!
//! The result is the same as [`super::compact::merge`] on all the objects at once: conformed to
//! the table's schema, sorted by the sort columns then raw_key, raw_record (nulls first), and of
//! each run of rows with the same provenance only the first kept.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::compute::{SortOptions, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use bytes::Bytes;
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::compact::table_schema;
use super::read::conform;
use super::writer::{LakeError, declares_sort_order, sort_columns};
use crate::model::Table;

/// How much memory a merge may give its inputs' decoded batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeBudget {
    /// Bytes for the inputs' current (and just-finished) batches, all inputs together.
    pub input_bytes: usize,
    /// Rows per output batch.
    pub output_rows: usize,
    /// Inputs merged at once at most. Each open input holds its footer, a fetched row group
    /// (a small object whole) and a decoded batch of at least [`MIN_BATCH_ROWS`] rows whatever
    /// the budget, so a partition with more objects than this is merged in groups into local
    /// sorted runs first, and the runs merged.
    pub fan_in: usize,
}

/// Rows per input batch stay within these bounds whatever the budget: fewer than 64 makes the
/// per-batch overhead dominate; more than 8,192 buys nothing.
const MIN_BATCH_ROWS: usize = 64;
const MAX_BATCH_ROWS: usize = 8192;

impl Default for MergeBudget {
    fn default() -> Self {
        Self {
            input_bytes: 64 << 20,
            output_rows: 8192,
            fan_in: 16,
        }
    }
}

impl MergeBudget {
    /// Rows per input batch for `inputs` inputs of about `row_bytes` bytes a row decoded: half
    /// the budget for the current batches, half for finished ones still referenced by the
    /// output batch being assembled.
    pub fn batch_rows(&self, inputs: usize, row_bytes: usize) -> usize {
        let per_input = self.input_bytes / 2 / inputs.max(1);
        (per_input / row_bytes.max(1)).clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS)
    }
}

/// An error of a merge: reading one input (the caller may set that object aside and start over
/// without it), or anything else.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("input {index}: {source}")]
    Input { index: usize, source: LakeError },
    /// An input is not in the merge order (an object written by another version?): merging it
    /// would misplace rows, so the merge stops.
    #[error("input {index} is not sorted in the merge order (row {row} of a batch)")]
    Unsorted { index: usize, row: usize },
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// Whether a read error came from the store (transient or a vanished object: retry the run)
/// rather than from the object's bytes (unreadable: quarantine it).
pub fn is_store_error(e: &LakeError) -> bool {
    match e {
        LakeError::Store(_) => true,
        LakeError::Parquet(parquet::errors::ParquetError::External(inner)) => {
            inner.downcast_ref::<object_store::Error>().is_some()
        }
        _ => false,
    }
}

/// Range reads of one object of known size (from its listing). An object no larger than the
/// footer prefetch (most of normalize's) is read whole with one request and its ranges served
/// from memory; a larger one has its footer fetched with one request that usually holds the
/// whole of its metadata, then the column chunks it needs.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    whole: Option<Bytes>,
}

/// Bytes read with the footer: a normalize output's metadata fits (tens of kilobytes).
const FOOTER_PREFETCH: usize = 64 << 10;

impl ObjectReader {
    fn cached(&self, range: &std::ops::Range<u64>) -> Option<parquet::errors::Result<Bytes>> {
        let whole = self.whole.as_ref()?;
        let (start, end) = (
            usize::try_from(range.start).ok()?,
            usize::try_from(range.end).ok()?,
        );
        Some(if start <= end && end <= whole.len() {
            Ok(whole.slice(start..end))
        } else {
            Err(ParquetError::EOF(format!(
                "range {start}..{end} beyond the object's {} bytes",
                whole.len()
            )))
        })
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            if let Some(b) = self.cached(&range) {
                return b;
            }
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            if self.whole.is_some() {
                return ranges
                    .iter()
                    .map(|r| {
                        self.cached(r).unwrap_or_else(|| {
                            Err(ParquetError::EOF(format!("range {r:?} out of reach")))
                        })
                    })
                    .collect();
            }
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            if size <= FOOTER_PREFETCH as u64 && self.whole.is_none() {
                // The prefetch would fetch all of it anyway: keep it, and read no more.
                let bytes = self
                    .store
                    .get_range(&self.path, 0..size)
                    .await
                    .map_err(|e| ParquetError::External(Box::new(e)))?;
                self.whole = Some(bytes);
            }
            let md = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}

/// One object opened for reading: its footer is read, no rows yet.
pub struct MergeInput {
    builder: ParquetRecordBatchStreamBuilder<ObjectReader>,
    rows: usize,
    /// Estimated Arrow bytes per row once decoded (see [`decoded_row_bytes`]).
    row_bytes: usize,
}

/// Arrow bytes per row an object decodes to: fixed-width columns at their width, strings and
/// binaries at their unencoded length (which the writer records per column chunk) plus an
/// offset. The Parquet sizes alone underestimate it badly: a dictionary-encoded string that
/// repeats (the raw key, the device) takes a bit per row in Parquet and its whole length in
/// Arrow. Without the unencoded length (older writers), twice the uncompressed size.
fn decoded_row_bytes(md: &ParquetMetaData) -> usize {
    use parquet::basic::Type;
    let mut bytes: i64 = 0;
    let mut rows: i64 = 0;
    for rg in md.row_groups() {
        let n = rg.num_rows();
        rows += n;
        for c in rg.columns() {
            bytes += match c.column_type() {
                Type::BOOLEAN => n,
                Type::INT32 | Type::FLOAT => 4 * n,
                Type::INT64 | Type::DOUBLE => 8 * n,
                Type::INT96 => 12 * n,
                Type::BYTE_ARRAY | Type::FIXED_LEN_BYTE_ARRAY => c
                    .unencoded_byte_array_data_bytes()
                    .map_or(2 * c.uncompressed_size(), |b| b + 4 * n),
            };
        }
    }
    usize::try_from(bytes / rows.max(1)).unwrap_or(0)
}

impl MergeInput {
    /// Reads the object's footer. An unreadable footer is an error here, before any output.
    pub async fn open(store: Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Result<Self, LakeError> {
        let reader = ObjectReader {
            store,
            path: meta.location.clone(),
            size: meta.size,
            whole: None,
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let md = builder.metadata();
        let rows = usize::try_from(md.file_metadata().num_rows()).unwrap_or(0);
        let row_bytes = decoded_row_bytes(md);
        Ok(Self {
            builder,
            rows,
            row_bytes,
        })
    }

    /// Rows the footer announces.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the object's metadata declares the lake order (`writer::SORT_ORDER`): such an
    /// object can be merged as it is. The merge checks the order anyway.
    pub fn declares_lake_order(&self) -> bool {
        declares_sort_order(self.builder.metadata().file_metadata().key_value_metadata())
    }
}

/// One input's current batch, with its sort keys in row format and its provenance columns.
struct Loaded {
    batch: RecordBatch,
    keys: Rows,
    raw_key: StringArray,
    raw_record: Int64Array,
}

impl Loaded {
    fn provenance(&self, i: usize) -> (Option<&str>, Option<i64>) {
        (
            self.raw_key.is_valid(i).then(|| self.raw_key.value(i)),
            self.raw_record
                .is_valid(i)
                .then(|| self.raw_record.value(i)),
        )
    }
}

struct Cursor {
    /// The input's position in the list given to [`SortedMerge::new`] (errors name it; equal
    /// rows come out in this order).
    index: usize,
    /// None once every row of the input is loaded: a finished stream still holds its column
    /// readers, each with zstd contexts (~1.2 MB an object), and a partition-hour merges
    /// hundreds of one-batch objects at once.
    stream: Option<ParquetRecordBatchStream<ObjectReader>>,
    current: Arc<Loaded>,
    /// Index of `current` in the merge's slab.
    slab: usize,
    pos: usize,
}

/// Whether row `i` of `a` and row `j` of `b` (batches of one schema) hold the same values in
/// every column.
pub fn rows_equal(a: &RecordBatch, i: usize, b: &RecordBatch, j: usize) -> bool {
    a.num_columns() == b.num_columns()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(x, y)| x.slice(i, 1).as_ref() == y.slice(j, 1).as_ref())
}

/// Whether `keys` ascend within the batch and from `before` (the previous batch's last key);
/// Err(row) names the first row out of order.
fn check_sorted(keys: &Rows, before: Option<arrow::row::Row<'_>>) -> Result<(), usize> {
    if let (Some(b), true) = (before, keys.num_rows() > 0)
        && keys.row(0) < b
    {
        return Err(0);
    }
    for i in 1..keys.num_rows() {
        if keys.row(i) < keys.row(i - 1) {
            return Err(i);
        }
    }
    Ok(())
}

impl Cursor {
    fn key(&self) -> (arrow::row::Row<'_>, usize) {
        (self.current.keys.row(self.pos), self.index)
    }
}

/// What turns an input's batches into merge rows: the table's schema and its sort keys.
struct Decoder {
    schema: SchemaRef,
    converter: RowConverter,
    key_columns: Vec<usize>,
}

impl Decoder {
    /// The next non-empty batch of an input, conformed, with its keys; None at its end.
    async fn load(
        &self,
        stream: &mut ParquetRecordBatchStream<ObjectReader>,
    ) -> Result<Option<Loaded>, LakeError> {
        while let Some(batch) = stream.next().await {
            let batch = conform(&batch?, &self.schema)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let cols: Vec<ArrayRef> = self
                .key_columns
                .iter()
                .map(|&i| batch.column(i).clone())
                .collect();
            let keys = self.converter.convert_columns(&cols)?;
            let raw_key = batch
                .column_by_name("raw_key")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .cloned()
                .ok_or_else(|| LakeError::Schema("column \"raw_key\" missing".into()))?;
            let raw_record = batch
                .column_by_name("raw_record")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .cloned()
                .ok_or_else(|| LakeError::Schema("column \"raw_record\" missing".into()))?;
            return Ok(Some(Loaded {
                batch,
                keys,
                raw_key,
                raw_record,
            }));
        }
        Ok(None)
    }
}

/// The k-way merge of a partition's objects; [`SortedMerge::next_batch`] yields the merged rows
/// in order, at most `output_rows` at a time.
pub struct SortedMerge {
    decoder: Decoder,
    /// The inputs that had rows, in the order given; None once exhausted.
    cursors: Vec<Option<Cursor>>,
    /// A tree of losers over `cursors` by (current row, input index), an exhausted input
    /// last: `losers[0]` is the winner, the next row to take; each other node holds the loser
    /// of its match. Taking a row replays one leaf-to-root path, ⌈log₂ k⌉ comparisons of row
    /// keys; the binary heap this replaced sifted with two per level (9 % of compaction's CPU,
    /// with ~180 inputs to a partition-hour).
    losers: Vec<usize>,
    /// Batches that pending rows refer to: every cursor's current one, and finished ones not
    /// yet assembled into output.
    slab: Vec<RecordBatch>,
    pending: Vec<(usize, usize)>,
    /// The rows kept so far of the current run of equal merge keys (usually one).
    run: Vec<(Arc<Loaded>, usize)>,
    output_rows: usize,
    inputs: usize,
    rows_in: usize,
}

impl SortedMerge {
    /// Starts the merge: sizes each input's batches from the budget and reads the first batch
    /// of every input. Inputs must each be sorted as the table's objects are.
    pub async fn new(
        table: Table,
        inputs: Vec<MergeInput>,
        budget: MergeBudget,
    ) -> Result<Self, MergeError> {
        let schema = table_schema(table);
        let mut key_columns = Vec::new();
        let mut fields = Vec::new();
        for name in merge_key_columns(table) {
            if let Ok(i) = schema.index_of(name) {
                key_columns.push(i);
                fields.push(SortField::new_with_options(
                    schema.field(i).data_type().clone(),
                    SortOptions {
                        descending: false,
                        nulls_first: true,
                    },
                ));
            }
        }
        let converter = RowConverter::new(fields).map_err(LakeError::from)?;
        let row_bytes = inputs
            .iter()
            .map(|i| i.row_bytes)
            .max()
            .unwrap_or(0)
            .max(64);
        let batch_rows = budget.batch_rows(inputs.len(), row_bytes);
        let mut merge = Self {
            decoder: Decoder {
                schema,
                converter,
                key_columns,
            },
            cursors: Vec::with_capacity(inputs.len()),
            losers: Vec::new(),
            slab: Vec::new(),
            pending: Vec::new(),
            run: Vec::new(),
            output_rows: budget.output_rows.max(1),
            inputs: inputs.len(),
            rows_in: 0,
        };
        for (index, input) in inputs.into_iter().enumerate() {
            let err = |source| MergeError::Input { index, source };
            let input_rows = input.rows;
            let mut stream = input
                .builder
                .with_batch_size(batch_rows)
                .with_projection(ProjectionMask::all())
                .build()
                .map_err(|e| err(e.into()))?;
            if let Some(loaded) = merge.decoder.load(&mut stream).await.map_err(err)? {
                check_sorted(&loaded.keys, None)
                    .map_err(|row| MergeError::Unsorted { index, row })?;
                merge.rows_in += loaded.batch.num_rows();
                merge.slab.push(loaded.batch.clone());
                let all_loaded = loaded.batch.num_rows() >= input_rows;
                merge.cursors.push(Some(Cursor {
                    index,
                    stream: (!all_loaded).then_some(stream),
                    current: Arc::new(loaded),
                    slab: merge.slab.len() - 1,
                    pos: 0,
                }));
            }
        }
        merge.build_losers();
        Ok(merge)
    }

    /// The schema of the merged batches (the table's current schema).
    pub fn schema(&self) -> &SchemaRef {
        &self.decoder.schema
    }

    /// Rows read from the inputs so far (before copies were removed).
    pub fn rows_in(&self) -> usize {
        self.rows_in
    }

    /// Whether cursor `a`'s current row comes after cursor `b`'s (an exhausted one after all).
    fn after(&self, a: usize, b: usize) -> bool {
        match (&self.cursors[a], &self.cursors[b]) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => x.key() > y.key(),
        }
    }

    /// The match node above cursor `i`'s leaf (leaves are numbered after the k - 1 matches).
    fn leaf_node(&self, i: usize) -> usize {
        (self.cursors.len() + i) / 2
    }

    /// Plays every cursor in: each climbs until a node is empty (it waits there) or the root.
    fn build_losers(&mut self) {
        const EMPTY: usize = usize::MAX;
        self.losers = vec![EMPTY; self.cursors.len()];
        for i in 0..self.cursors.len() {
            let mut winner = i;
            let mut node = self.leaf_node(i);
            while node != 0 && self.losers[node] != EMPTY {
                let other = self.losers[node];
                if self.after(winner, other) {
                    self.losers[node] = winner;
                    winner = other;
                }
                node /= 2;
            }
            self.losers[node] = winner;
        }
    }

    /// After the winner's row changed (its next row, or it is exhausted): replays its path.
    fn replay(&mut self) {
        let Some(&first) = self.losers.first() else {
            return;
        };
        let mut winner = first;
        let mut node = self.leaf_node(winner);
        while node != 0 {
            let other = self.losers[node];
            if self.after(winner, other) {
                self.losers[node] = winner;
                winner = other;
            }
            node /= 2;
        }
        self.losers[0] = winner;
    }

    /// The next merged batch, or None when every input is exhausted.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>, MergeError> {
        while self.pending.len() < self.output_rows {
            // The winner is exhausted only when every input is.
            let Some(top) = self.losers.first().and_then(|&w| self.cursors[w].as_mut()) else {
                break;
            };
            let (current, pos) = (top.current.clone(), top.pos);
            let prov = current.provenance(pos);
            // Copies of a row sort next to each other, among the rows of the same merge key
            // (sort columns and provenance): drop a row equal in every column to one already
            // kept from that run (rows without a raw key are never taken for copies). One raw
            // record can hold several events (an IPFIX datagram), some with the same key, so
            // the same provenance alone does not make a copy.
            if self
                .run
                .first()
                .is_none_or(|(l, i)| l.keys.row(*i) != current.keys.row(pos))
            {
                self.run.clear();
            }
            let copy = prov.0.is_some()
                && self
                    .run
                    .iter()
                    .any(|(l, i)| rows_equal(&l.batch, *i, &current.batch, pos));
            if !copy {
                self.pending.push((top.slab, pos));
                self.run.push((current.clone(), pos));
            }
            if pos + 1 < current.batch.num_rows() {
                top.pos += 1;
                self.replay();
                continue;
            }
            // This input's batch is done: read its next one, or drop the input.
            let next = match top.stream.as_mut() {
                Some(stream) => self.decoder.load(stream).await,
                None => Ok(None),
            };
            match next {
                Ok(Some(next)) => {
                    let before = current.keys.row(pos);
                    check_sorted(&next.keys, Some(before)).map_err(|row| MergeError::Unsorted {
                        index: top.index,
                        row,
                    })?;
                    self.rows_in += next.batch.num_rows();
                    self.slab.push(next.batch.clone());
                    top.current = Arc::new(next);
                    top.slab = self.slab.len() - 1;
                    top.pos = 0;
                    self.replay();
                }
                Ok(None) => {
                    let winner = self.losers[0];
                    self.cursors[winner] = None;
                    self.replay();
                }
                Err(source) => {
                    return Err(MergeError::Input {
                        index: top.index,
                        source,
                    });
                }
            }
            // Finished batches are held until assembled: bound them.
            if self.slab.len() > 2 * self.inputs + 1 {
                break;
            }
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.assemble()?))
    }

    /// Builds the pending rows into a batch and drops the finished batches.
    fn assemble(&mut self) -> Result<RecordBatch, LakeError> {
        let refs: Vec<&RecordBatch> = self.slab.iter().collect();
        let out = interleave_record_batch(&refs, &self.pending)?;
        self.pending.clear();
        let mut slab = Vec::with_capacity(self.cursors.len());
        for cur in self.cursors.iter_mut().flatten() {
            slab.push(cur.current.batch.clone());
            cur.slab = slab.len() - 1;
        }
        self.slab = slab;
        Ok(out)
    }
}

/// The merge key's columns of a table: its sort columns, then raw_key, raw_record.
fn merge_key_columns(table: Table) -> impl Iterator<Item = &'static str> {
    sort_columns(table)
        .iter()
        .copied()
        .chain(["raw_key", "raw_record"])
}

/// `batch` (conformed to the table's schema) in the merge order; copies are kept (the merge
/// removes them across all inputs at once).
pub fn sort_rows(table: Table, batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
    let keys: Vec<arrow::compute::SortColumn> = merge_key_columns(table)
        .filter_map(|name| batch.column_by_name(name))
        .map(|c| arrow::compute::SortColumn {
            values: c.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    if keys.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let order = arrow::compute::lexsort_to_indices(&keys, None)?;
    Ok(arrow::compute::take_record_batch(batch, &order)?)
}

/// Merges `merge` to its end into a sorted run at `path` in `spill`, written a row group at a
/// time (LZ4_RAW, no dictionaries, no statistics, row groups of `row_group_rows`: what the next
/// merge reads at a time; a run is written once and read once, so the cheapest encoding wins),
/// so a run of any size costs one row group of memory. An unreadable input is an error here,
/// before anything of the partition is written.
pub async fn spill_merged(
    spill: &Arc<dyn ObjectStore>,
    path: &Path,
    mut merge: SortedMerge,
    row_group_rows: usize,
) -> Result<ObjectMeta, MergeError> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::LZ4_RAW)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .build();
    let out = object_store::buffered::BufWriter::new(spill.clone(), path.clone());
    let mut w = parquet::arrow::AsyncArrowWriter::try_new(out, merge.schema().clone(), Some(props))
        .map_err(LakeError::from)?;
    while let Some(b) = merge.next_batch().await? {
        w.write(&b).await.map_err(LakeError::from)?;
    }
    w.close().await.map_err(LakeError::from)?;
    Ok(spill.head(path).await.map_err(LakeError::from)?)
}

/// Reads one whole object (`bytes`), sorts it in the merge order and writes it to `spill` at
/// `path` as a sorted run with row groups of `row_group_rows` (what the merge reads at a time),
/// uncompressed: it is read once, locally, and deleted. An unreadable object is an error here,
/// before anything of the partition is written.
pub async fn spill_sorted(
    spill: &Arc<dyn ObjectStore>,
    path: &Path,
    table: Table,
    bytes: Bytes,
    row_group_rows: usize,
) -> Result<ObjectMeta, LakeError> {
    let schema = table_schema(table);
    let run = {
        let batches = super::read::parquet_batches(bytes)?;
        let conformed = batches
            .iter()
            .map(|b| conform(b, &schema))
            .collect::<Result<Vec<_>, _>>()?;
        let all = arrow::compute::concat_batches(&schema, &conformed)?;
        drop(conformed);
        let sorted = sort_rows(table, &all)?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::UNCOMPRESSED)
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .build();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))?;
        w.write(&sorted)?;
        w.close()?;
        Bytes::from(buf)
    };
    spill
        .put(path, object_store::PutPayload::from_bytes(run))
        .await?;
    Ok(spill.head(path).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::compact::merge;
    use crate::lake::read::parquet_batches;
    use crate::lake::writer::{WriteOptions, encode_outputs};
    use crate::model::{Micros, NatEventKind, Row};
    use crate::testing::nat_row;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    const S: Micros = 1_000_000;
    const H0: Micros = 1_795_392_000 * S;

    /// A raw object's NAT rows: sessions on ports spread over the whole range of six public
    /// addresses whose text order is not their numeric order (…7.2 < …7.10 as numbers), so
    /// every object's key range overlaps every other's.
    fn raw_rows(obj: u64, n: u64) -> Vec<Row> {
        let key = format!("raw/conntrack/hour=2026-11-23T00/relay_{obj:04}.nlraw.zst");
        (0..n)
            .map(|i| {
                let port = 1024 + ((i * 7_919 + obj * 104_729) % 4_000) as u16;
                let kind = if i % 3 == 0 {
                    NatEventKind::SessionDelete
                } else {
                    NatEventKind::SessionCreate
                };
                let t = H0 + ((i * 13 + obj) % 3_600) as Micros * S;
                let inside = format!("100.64.{}.{}", obj % 200, i % 250);
                let mut r = nat_row(t, kind, &inside, port, &key, i);
                if let crate::model::Event::Nat(e) = &mut r.event {
                    let x = [2, 9, 10, 99, 100, 255][(i % 6) as usize];
                    e.x_ip = format!("198.51.100.{x}").parse().ok();
                }
                r
            })
            .collect()
    }

    /// Objects as normalize publishes them; returns their metas, in listing order.
    async fn publish(
        store: &Arc<dyn ObjectStore>,
        objects: &[(String, Vec<Row>)],
    ) -> Vec<ObjectMeta> {
        let mut metas = Vec::new();
        for (name, rows) in objects {
            let outs = encode_outputs(name, rows, &[], &WriteOptions::default()).unwrap();
            assert_eq!(outs.len(), 1);
            let path = Path::from(format!("lake/part/{}.parquet", metas.len()).as_str());
            store
                .put(&path, PutPayload::from_bytes(outs[0].1.clone()))
                .await
                .unwrap();
            metas.push(store.head(&path).await.unwrap());
        }
        metas
    }

    /// Each object sorted into a run (as the compact function does), then merged.
    async fn streamed(
        store: &Arc<dyn ObjectStore>,
        metas: &[ObjectMeta],
        budget: MergeBudget,
    ) -> (Vec<RecordBatch>, usize) {
        let spill: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = budget.batch_rows(metas.len(), 512);
        let mut inputs = Vec::new();
        for (i, m) in metas.iter().enumerate() {
            let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            let path = Path::from(format!("run-{i}.parquet"));
            let run = spill_sorted(&spill, &path, Table::NatEvents, bytes, rows)
                .await
                .unwrap();
            inputs.push(MergeInput::open(spill.clone(), &run).await.unwrap());
        }
        let mut merge = SortedMerge::new(Table::NatEvents, inputs, budget)
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(b) = merge.next_batch().await.unwrap() {
            assert!(b.num_rows() <= budget.output_rows);
            out.push(b);
        }
        (out, merge.rows_in())
    }

    /// Each object merged as it is, no run.
    async fn direct(
        store: &Arc<dyn ObjectStore>,
        metas: &[ObjectMeta],
        budget: MergeBudget,
    ) -> Result<(Vec<RecordBatch>, usize), MergeError> {
        let mut inputs = Vec::new();
        for m in metas {
            inputs.push(MergeInput::open(store.clone(), m).await?);
        }
        let mut merge = SortedMerge::new(Table::NatEvents, inputs, budget).await?;
        let mut out = Vec::new();
        while let Some(b) = merge.next_batch().await? {
            assert!(b.num_rows() <= budget.output_rows);
            out.push(b);
        }
        Ok((out, merge.rows_in()))
    }

    /// An object as versions before the order marker wrote it: addresses in numeric order (then
    /// port, time, record), no marker.
    fn legacy(bytes: Bytes) -> Bytes {
        let schema = table_schema(Table::NatEvents);
        let b = arrow::compute::concat_batches(&schema, &parquet_batches(bytes).unwrap()).unwrap();
        let sorted = crate::testing::numeric_order(&b);
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&sorted).unwrap();
        w.close().unwrap();
        Bytes::from(buf)
    }

    async fn in_memory(store: &Arc<dyn ObjectStore>, metas: &[ObjectMeta]) -> RecordBatch {
        let mut batches = Vec::new();
        for m in metas {
            let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            batches.extend(parquet_batches(bytes).unwrap());
        }
        merge(Table::NatEvents, &batches).unwrap()
    }

    #[tokio::test]
    async fn streaming_merge_gives_the_rows_and_order_of_the_in_memory_merge() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut objects: Vec<(String, Vec<Row>)> = (0..12)
            .map(|o| (format!("raw/{o}"), raw_rows(o, 300 + 37 * o)))
            .collect();
        // Object 3 normalized twice (every row a copy), half of object 5 once more, and a row
        // whose provenance is repeated with another port (another event of that record: kept).
        objects.push(objects[3].clone());
        objects.push((objects[5].0.clone(), objects[5].1[..150].to_vec()));
        let mut moved = objects[7].1[10].clone();
        if let crate::model::Event::Nat(e) = &mut moved.event {
            e.x_port = Some(65_000);
        }
        objects.push(("raw/moved".into(), vec![moved]));
        let metas = publish(&store, &objects).await;
        let total: usize = objects.iter().map(|(_, r)| r.len()).sum();
        let want = in_memory(&store, &metas).await;
        assert!(want.num_rows() < total, "the copies must collapse");

        // A budget far below the partition: 64-row input batches, 100-row output batches.
        let tiny = MergeBudget {
            input_bytes: 1,
            output_rows: 100,
            fan_in: 64,
        };
        let (got, rows_in) = streamed(&store, &metas, tiny).await;
        assert_eq!(rows_in, total);
        let got = arrow::compute::concat_batches(&want.schema(), &got).unwrap();
        assert_eq!(got.num_rows(), want.num_rows());
        assert_eq!(got, want);

        // The default budget (whole objects per batch) gives the same.
        let (got, _) = streamed(&store, &metas, MergeBudget::default()).await;
        let got = arrow::compute::concat_batches(&want.schema(), &got).unwrap();
        assert_eq!(got, want);

        // Every small number of inputs: the tree of losers is shaped by it.
        for n in 1..=5 {
            let want = in_memory(&store, &metas[..n]).await;
            let (got, _) = streamed(&store, &metas[..n], tiny).await;
            let got = arrow::compute::concat_batches(&want.schema(), &got).unwrap();
            assert_eq!(got, want, "{n} inputs");
        }
    }

    #[tokio::test]
    async fn objects_in_the_lake_order_merge_as_they_are() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut objects: Vec<(String, Vec<Row>)> = (0..12)
            .map(|o| (format!("raw/{o}"), raw_rows(o, 300 + 37 * o)))
            .collect();
        objects.push(objects[3].clone());
        // One object larger than the footer prefetch and than a row group: read by ranges.
        objects.push(("raw/big".into(), raw_rows(99, 20_000)));
        let metas = publish(&store, &objects).await;
        assert!(metas.last().unwrap().size > FOOTER_PREFETCH as u64);
        for m in &metas {
            let input = MergeInput::open(store.clone(), m).await.unwrap();
            assert!(input.declares_lake_order(), "{}", m.location);
        }
        let total: usize = objects.iter().map(|(_, r)| r.len()).sum();
        let want = in_memory(&store, &metas).await;
        for budget in [
            MergeBudget {
                input_bytes: 1,
                output_rows: 100,
                fan_in: 64,
            },
            MergeBudget::default(),
        ] {
            let (got, rows_in) = direct(&store, &metas, budget).await.unwrap();
            assert_eq!(rows_in, total);
            let got = arrow::compute::concat_batches(&want.schema(), &got).unwrap();
            assert_eq!(got, want);
        }
    }

    #[tokio::test]
    async fn an_input_out_of_merge_order_stops_the_merge() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // As normalize wrote it before the order marker: addresses in numeric order.
        let metas = publish(&store, &[("raw/a".into(), raw_rows(1, 300))]).await;
        let bytes = store
            .get(&metas[0].location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        store
            .put(&metas[0].location, PutPayload::from_bytes(legacy(bytes)))
            .await
            .unwrap();
        let meta = store.head(&metas[0].location).await.unwrap();
        let input = MergeInput::open(store.clone(), &meta).await.unwrap();
        assert!(!input.declares_lake_order());
        let budget = MergeBudget {
            input_bytes: 1,
            output_rows: 50,
            fan_in: 64,
        };
        let result = async {
            let mut m = SortedMerge::new(Table::NatEvents, vec![input], budget).await?;
            while m.next_batch().await?.is_some() {}
            Ok::<_, MergeError>(())
        }
        .await;
        assert!(
            matches!(result, Err(MergeError::Unsorted { index: 0, .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn nothing_to_merge() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (got, rows) = streamed(&store, &[], MergeBudget::default()).await;
        assert!(got.is_empty());
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn unreadable_input_is_named() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let metas = publish(&store, &[("raw/a".into(), raw_rows(1, 50))]).await;
        let bad = Path::from("lake/part/bad.parquet");
        store
            .put(&bad, PutPayload::from_static(b"PAR1 not parquet at all"))
            .await
            .unwrap();
        let meta = store.head(&bad).await.unwrap();
        let err = MergeInput::open(store.clone(), &meta).await.err().unwrap();
        assert!(!is_store_error(&err), "{err}");
        // A vanished object is the store's error, not the object's: never quarantined.
        store.delete(&metas[0].location).await.unwrap();
        let err = MergeInput::open(store.clone(), &metas[0])
            .await
            .err()
            .unwrap();
        assert!(is_store_error(&err), "{err}");
    }

    #[tokio::test]
    async fn decoded_size_estimate_is_close_to_the_arrow_batches() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let metas = publish(&store, &[("raw/a".into(), raw_rows(1, 2_000))]).await;
        let input = MergeInput::open(store.clone(), &metas[0]).await.unwrap();
        let bytes = store
            .get(&metas[0].location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let decoded: usize = parquet_batches(bytes)
            .unwrap()
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum();
        let actual = decoded / input.rows();
        // Arrow's buffers are rounded up to 64 bytes and over-allocated a little.
        assert!(
            input.row_bytes <= actual && input.row_bytes * 2 >= actual,
            "estimate {} bytes per row, decoded {actual}",
            input.row_bytes
        );
    }

    #[test]
    fn batch_rows_follow_the_budget() {
        let b = MergeBudget {
            input_bytes: 64 << 20,
            output_rows: 8192,
            fan_in: 64,
        };
        assert_eq!(b.batch_rows(1, 500), MAX_BATCH_ROWS);
        assert_eq!(b.batch_rows(1_000, 500), 67);
        assert_eq!(b.batch_rows(100_000, 500), MIN_BATCH_ROWS);
    }
}
