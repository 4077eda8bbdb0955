//! One Parquet object written incrementally to the store, a row group at a time.
//!
//! Each row group is encoded by the writer's own [`encode_batch`] (the same zstd levels,
//! encodings, statistics, bloom filters and sort metadata as every other lake object) into a
//! small in-memory file, whose column chunks are then spliced into the output file
//! (`append_column`, with their bloom filters and page indexes) without decoding them again.
//! The bytes go to the store through a multipart upload that is completed only by
//! [`ParquetSink::finish`]: until then no reader can see the object, and [`ParquetSink::abort`]
//! leaves nothing behind. Memory: one row group of rows and its encoding, plus the upload's
//! part buffer.

use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::bloom_filter::Sbbf;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use super::writer::{LakeError, WriteOptions, encode_batch};
use crate::model::Table;

/// Multipart part size: S3's minimum, so memory stays small.
const PART_BYTES: usize = 5 << 20;

/// An object being written; see the module docs.
pub struct ParquetSink {
    table: Table,
    opts: WriteOptions,
    upload: BufWriter,
    /// Created with the first row group (its schema and file metadata come from there).
    file: Option<SerializedFileWriter<Vec<u8>>>,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    rows: usize,
    bytes: usize,
}

impl ParquetSink {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, table: Table, opts: WriteOptions) -> Self {
        // Parts in flight at once: two, so the upload keeps going while the next is filled.
        let upload = BufWriter::with_capacity(store, path, PART_BYTES).with_max_concurrency(2);
        Self {
            table,
            opts,
            upload,
            file: None,
            buffered: Vec::new(),
            buffered_rows: 0,
            rows: 0,
            bytes: 0,
        }
    }

    fn row_group_rows(&self) -> usize {
        self.opts.row_group_rows.max(1)
    }

    /// Adds rows (in the order to write); full row groups are encoded and uploaded.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.row_group_rows() - self.buffered_rows).min(batch.num_rows() - offset);
            self.buffered.push(batch.slice(offset, take));
            self.buffered_rows += take;
            offset += take;
            if self.buffered_rows == self.row_group_rows() {
                self.flush_row_group().await?;
            }
        }
        Ok(())
    }

    async fn flush_row_group(&mut self) -> Result<(), LakeError> {
        let Some(schema) = self.buffered.first().map(|b| b.schema()) else {
            return Ok(());
        };
        let rows = concat_batches(&schema, &self.buffered)?;
        self.buffered.clear();
        self.buffered_rows = 0;
        let encoded = encode_batch(self.table, &rows, &self.opts)?;
        drop(rows);
        let md = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&encoded)?;
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(start_file(&md)?),
        };
        if md.file_metadata().schema_descr().root_schema() != file.schema_descr().root_schema() {
            return Err(LakeError::Schema(
                "row groups of one object encode different schemas".into(),
            ));
        }
        append_row_groups(file, &md, &encoded)?;
        self.rows += usize::try_from(md.file_metadata().num_rows()).unwrap_or(0);
        let out = std::mem::take(file.inner_mut());
        self.bytes += out.len();
        self.upload.put(Bytes::from(out)).await?;
        Ok(())
    }

    /// Rows written so far (in complete row groups).
    pub fn rows(&self) -> usize {
        self.rows + self.buffered_rows
    }

    /// Writes the last row group and the footer and completes the upload: the object appears
    /// whole. Without any row the upload is aborted and no object is written. Returns (rows,
    /// bytes) written.
    pub async fn finish(mut self) -> Result<(usize, usize), LakeError> {
        let done = self.finish_inner().await;
        if done.is_err() {
            let _ = self.upload.abort().await;
        }
        done
    }

    async fn finish_inner(&mut self) -> Result<(usize, usize), LakeError> {
        self.flush_row_group().await?;
        let Some(mut file) = self.file.take() else {
            self.upload.abort().await?;
            return Ok((0, 0));
        };
        file.finish()?;
        let out = std::mem::take(file.inner_mut());
        self.bytes += out.len();
        self.upload.put(Bytes::from(out)).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut self.upload)
            .await
            .map_err(|e| {
                LakeError::Store(object_store::Error::Generic {
                    store: "upload",
                    source: Box::new(e),
                })
            })?;
        Ok((self.rows, self.bytes))
    }

    /// Abandons the object: nothing is published.
    pub async fn abort(mut self) -> Result<(), LakeError> {
        self.upload.abort().await?;
        Ok(())
    }
}

/// The output file, with the file-level metadata of the first encoded row group (its Arrow
/// schema, writer name and sort order), so a reader sees what `encode_batch` would have written.
fn start_file(md: &ParquetMetaData) -> Result<SerializedFileWriter<Vec<u8>>, LakeError> {
    let fm = md.file_metadata();
    let mut props = WriterProperties::builder()
        .set_key_value_metadata(fm.key_value_metadata().cloned())
        .set_sorting_columns(
            md.row_groups()
                .first()
                .and_then(|rg| rg.sorting_columns().cloned()),
        );
    if let Some(by) = fm.created_by() {
        props = props.set_created_by(by.to_owned());
    }
    Ok(SerializedFileWriter::new(
        Vec::new(),
        fm.schema_descr().root_schema_ptr(),
        Arc::new(props.build()),
    )?)
}

/// Copies every row group of an encoded file into `file`, column chunk by column chunk, with
/// bloom filters and page indexes.
fn append_row_groups(
    file: &mut SerializedFileWriter<Vec<u8>>,
    md: &ParquetMetaData,
    encoded: &Bytes,
) -> Result<(), LakeError> {
    let page_index = md.page_index();
    for (rg_idx, rg) in md.row_groups().iter().enumerate() {
        let mut out = file.next_row_group()?;
        for (col_idx, column) in rg.columns().iter().enumerate() {
            let close = ColumnCloseResult {
                bytes_written: column.compressed_size() as u64,
                rows_written: rg.num_rows() as u64,
                metadata: column.clone(),
                bloom_filter: Sbbf::read_from_column_chunk(column, encoded)?,
                column_index: page_index
                    .and_then(|pi| pi.column_index(rg_idx, col_idx))
                    .cloned(),
                offset_index: page_index
                    .and_then(|pi| pi.offset_index(rg_idx, col_idx))
                    .cloned(),
            };
            out.append_column(encoded, close)?;
        }
        out.close()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::columns;
    use crate::lake::read::parquet_batches;
    use crate::lake::writer::encode;
    use crate::model::{Micros, NatEventKind, Row};
    use crate::testing::nat_row;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    const S: Micros = 1_000_000;
    const H0: Micros = 1_795_392_000 * S;

    fn batch(n: u16) -> RecordBatch {
        let rows: Vec<Row> = (0..n)
            .map(|i| {
                nat_row(
                    H0 + i64::from(i) * S,
                    NatEventKind::SessionCreate,
                    "100.64.0.1",
                    1024 + i,
                    "raw/a",
                    u64::from(i),
                )
            })
            .collect();
        let refs: Vec<&Row> = rows.iter().collect();
        let bytes = encode(
            Table::NatEvents,
            &columns::nat_events(),
            &refs,
            &WriteOptions::default(),
        )
        .unwrap();
        let b = parquet_batches(bytes).unwrap();
        concat_batches(&b[0].schema(), &b).unwrap()
    }

    #[tokio::test]
    async fn row_groups_spliced_read_back_as_encode_batch_writes_them() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("lake/x/compacted.parquet");
        let opts = WriteOptions {
            row_group_rows: 1000,
            ..WriteOptions::default()
        };
        let all = batch(2_500);
        let mut sink =
            ParquetSink::new(store.clone(), path.clone(), Table::NatEvents, opts.clone());
        // Uneven pieces across row-group boundaries.
        for (o, n) in [(0, 1), (1, 998), (999, 1_300), (2_299, 201)] {
            sink.write(&all.slice(o, n)).await.unwrap();
            // Nothing is visible before the end.
            assert!(store.head(&path).await.is_err());
        }
        let (rows, bytes) = sink.finish().await.unwrap();
        assert_eq!(rows, 2_500);
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), bytes);
        let back = parquet_batches(got.clone()).unwrap();
        assert_eq!(concat_batches(&all.schema(), &back).unwrap(), all);

        // Per row group the same column chunks as encode_batch writes for those rows.
        let file = SerializedFileReader::new(got).unwrap();
        let md = file.metadata();
        assert_eq!(md.num_row_groups(), 3);
        let one = encode_batch(Table::NatEvents, &all.slice(1000, 1000), &opts).unwrap();
        let want = SerializedFileReader::new(one).unwrap();
        let (rg, wrg) = (md.row_group(1), want.metadata().row_group(0));
        assert_eq!(rg.num_rows(), 1000);
        assert_eq!(rg.sorting_columns(), wrg.sorting_columns());
        assert!(rg.sorting_columns().is_some());
        for (c, w) in rg.columns().iter().zip(wrg.columns()) {
            assert_eq!(c.column_path(), w.column_path());
            assert_eq!(c.compressed_size(), w.compressed_size());
            assert_eq!(
                c.encodings().collect::<Vec<_>>(),
                w.encodings().collect::<Vec<_>>()
            );
            assert_eq!(c.bloom_filter_length(), w.bloom_filter_length());
        }
        let x_ip = rg
            .columns()
            .iter()
            .position(|c| c.column_path().string() == "x_ip")
            .unwrap();
        // The bloom filter and page index came along and are readable at their new offsets.
        let rgr = file.get_row_group(1).unwrap();
        let _ = rgr;
        let bloom = Sbbf::read_from_column_chunk(
            &rg.columns()[x_ip],
            &store.get(&path).await.unwrap().bytes().await.unwrap(),
        )
        .unwrap()
        .expect("bloom filter on x_ip");
        assert!(bloom.check(&"198.51.100.7"));
        assert!(!bloom.check(&"192.0.2.1"));
        let with_index = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&store.get(&path).await.unwrap().bytes().await.unwrap())
            .unwrap();
        let pi = with_index.page_index().expect("page index");
        assert!(pi.column_index(2, x_ip).is_some());
        assert!(pi.offset_index(2, x_ip).is_some());
        assert_eq!(
            md.file_metadata().created_by(),
            want.metadata().file_metadata().created_by()
        );
    }

    #[tokio::test]
    async fn no_rows_no_object_and_abort_leaves_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("lake/x/compacted.parquet");
        let sink = ParquetSink::new(
            store.clone(),
            path.clone(),
            Table::NatEvents,
            WriteOptions::default(),
        );
        assert_eq!(sink.finish().await.unwrap(), (0, 0));
        assert!(store.head(&path).await.is_err());
        // An object already there is not touched by an aborted rewrite.
        store
            .put(&path, PutPayload::from_static(b"old"))
            .await
            .unwrap();
        let mut sink = ParquetSink::new(
            store.clone(),
            path.clone(),
            Table::NatEvents,
            WriteOptions::default(),
        );
        sink.write(&batch(100)).await.unwrap();
        sink.abort().await.unwrap();
        let kept = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&kept[..], b"old");
    }
}
