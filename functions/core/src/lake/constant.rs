//! Column chunks that hold one value in every row, or none: written as their pages directly.
//!
//! Normalize's per-object outputs are one raw object's rows of one partition, so many columns
//! hold a single value (the raw key, the format, usually the device, often the public address
//! and the protocol) and the enrichment columns nothing at all. Through parquet's column
//! writer every such row is interned into the dictionary (a hash and a probe), and its
//! definition level and dictionary index computed and run-length encoded, to arrive at what is
//! known before the first row: a one-entry dictionary and one run of index 0, or one run of
//! "null". Here those pages are written once per column chunk, whatever the row count.
//!
//! The pages are what parquet writes for such a chunk: a PLAIN dictionary page and a v1 data
//! page of RLE definition levels and RLE_DICTIONARY indices of bit width 0 (as parquet writes a
//! one-entry dictionary), or a data page of definition levels alone, uncompressed.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type, TimeUnit};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, ColumnChunkMetaDataBuilder, PageEncodingStats};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Longest value written this way with statistics: parquet truncates longer min/max values
/// (64 bytes by default), so such a column goes through its writer to get the same statistics.
const MAX_STATS_VALUE: usize = 64;

/// One column chunk, encoded: its bytes and what the row group records of it.
pub struct Chunk {
    pub bytes: Bytes,
    pub close: ColumnCloseResult,
}

/// The chunk of `rows` nulls in a column of type `t`; None for a type or shape left to the
/// column writer. `statistics`: whether the column keeps (column-chunk) statistics.
pub fn null_chunk(
    descr: &ColumnDescPtr,
    t: &DataType,
    rows: usize,
    statistics: bool,
) -> Result<Option<Chunk>, ParquetError> {
    let Some(n) = flat_rows(descr, rows) else {
        return Ok(None);
    };
    let stats = match statistics {
        false => None,
        true => match null_statistics(t, rows as u64) {
            Some(s) => Some(s),
            None => return Ok(None),
        },
    };
    let mut out = TrackedWrite::new(Vec::with_capacity(64));
    let mut pages = SerializedPageWriter::new(&mut out);
    let spec = pages.write_page(data_page(levels(n, false), n, Encoding::PLAIN))?;
    let mut b = data_page_metadata(descr, Encoding::PLAIN, &spec, n);
    if let Some(s) = stats {
        b = b.set_statistics(s);
    }
    finish(out, b, n)
}

/// The chunk of `rows` rows that all hold `one`'s (first) value; None for a type or shape left
/// to the column writer, or a value longer than parquet keeps whole in statistics.
pub fn single_chunk(
    descr: &ColumnDescPtr,
    one: &dyn Array,
    rows: usize,
    statistics: bool,
) -> Result<Option<Chunk>, ParquetError> {
    let Some(n) = flat_rows(descr, rows) else {
        return Ok(None);
    };
    if one.is_empty() {
        return Ok(None);
    }
    let Some((plain, stats)) = plain_value(one, descr.sort_order().is_signed()) else {
        return Ok(None);
    };
    if statistics && plain.len() > MAX_STATS_VALUE + 4 {
        return Ok(None);
    }
    let mut out = TrackedWrite::new(Vec::with_capacity(128));
    let mut pages = SerializedPageWriter::new(&mut out);
    let dict = pages.write_page(uncompressed(Page::DictionaryPage {
        buf: plain.into(),
        num_values: 1,
        encoding: Encoding::PLAIN,
        is_sorted: false,
    }))?;
    // The values: bit width 0, then one run of `n` zero-width indices (no value bytes).
    let mut data = levels(n, true).to_vec();
    data.push(0);
    varint(&mut data, u64::from(n) << 1);
    let spec = pages.write_page(data_page(data.into(), n, Encoding::RLE_DICTIONARY))?;
    let mut b = dictionary_metadata(descr, &dict, &spec, n);
    if statistics {
        b = b.set_statistics(stats);
    }
    finish(out, b, n)
}

/// What the column writer records of an uncompressed chunk of one data page (`spec`) of `n`
/// levels whose values have `encoding` (levels are RLE).
pub(super) fn data_page_metadata(
    descr: &ColumnDescPtr,
    encoding: Encoding,
    spec: &PageWriteSpec,
    n: u32,
) -> ColumnChunkMetaDataBuilder {
    ColumnChunkMetaData::builder(Arc::clone(descr))
        .set_compression(Compression::UNCOMPRESSED)
        .set_encodings(vec![Encoding::RLE, encoding])
        .set_page_encoding_stats(vec![PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding,
            count: 1,
        }])
        .set_total_compressed_size(spec.compressed_size as i64)
        .set_total_uncompressed_size(spec.uncompressed_size as i64)
        .set_num_values(i64::from(n))
        .set_data_page_offset(spec.offset as i64)
}

/// What the column writer records of an uncompressed chunk of a PLAIN dictionary page (`dict`)
/// and one RLE_DICTIONARY data page (`data`) of `n` levels.
pub(super) fn dictionary_metadata(
    descr: &ColumnDescPtr,
    dict: &PageWriteSpec,
    data: &PageWriteSpec,
    n: u32,
) -> ColumnChunkMetaDataBuilder {
    ColumnChunkMetaData::builder(Arc::clone(descr))
        .set_compression(Compression::UNCOMPRESSED)
        .set_encodings(vec![
            Encoding::PLAIN,
            Encoding::RLE,
            Encoding::RLE_DICTIONARY,
        ])
        .set_page_encoding_stats(vec![
            PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            },
            PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::RLE_DICTIONARY,
                count: 1,
            },
        ])
        .set_total_compressed_size((dict.compressed_size + data.compressed_size) as i64)
        .set_total_uncompressed_size((dict.uncompressed_size + data.uncompressed_size) as i64)
        .set_num_values(i64::from(n))
        .set_dictionary_page_offset(Some(dict.offset as i64))
        .set_data_page_offset(data.offset as i64)
}

/// A flat column's row count as a page holds it ([`flat_rows`]) and its nulls, None when it
/// has none.
pub(super) fn flat_column(
    descr: &ColumnDescPtr,
    array: &dyn Array,
) -> Option<(u32, Option<arrow::buffer::NullBuffer>)> {
    let n = flat_rows(descr, array.len())?;
    let nulls = array.logical_nulls().filter(|b| b.null_count() > 0);
    Some((n, nulls))
}

/// Whether a text column fits in one page of `page_bytes` with `per_value` bytes besides each
/// value's text (the column writer starts another page past it; never near it for one raw
/// object's rows).
pub(super) fn text_fits(
    a: &arrow::array::StringArray,
    per_value: usize,
    page_bytes: usize,
) -> bool {
    let offsets = a.value_offsets();
    let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else {
        return false;
    };
    ((last - first) as usize).saturating_add(per_value * a.len()) < page_bytes
}

/// The row count as a page holds it, for a flat nullable column (every lake column:
/// definition level 1 is a value, 0 a null); None for other shapes or no rows.
pub(super) fn flat_rows(descr: &ColumnDescPtr, rows: usize) -> Option<u32> {
    if rows == 0 || descr.max_def_level() != 1 || descr.max_rep_level() != 0 {
        return None;
    }
    u32::try_from(rows).ok()
}

/// A v1 data page of `n` values, levels in RLE, without page statistics (the writer keeps
/// them per column chunk here).
pub(super) fn data_page(buf: Bytes, n: u32, encoding: Encoding) -> CompressedPage {
    uncompressed(Page::DataPage {
        buf,
        num_values: n,
        encoding,
        def_level_encoding: Encoding::RLE,
        rep_level_encoding: Encoding::RLE,
        statistics: None,
    })
}

pub(super) fn uncompressed(page: Page) -> CompressedPage {
    let len = page.buffer().len();
    CompressedPage::new(page, len)
}

pub(super) fn finish(
    out: TrackedWrite<Vec<u8>>,
    metadata: ColumnChunkMetaDataBuilder,
    n: u32,
) -> Result<Option<Chunk>, ParquetError> {
    let bytes = Bytes::from(out.into_inner()?);
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: u64::from(n),
        metadata: metadata.build()?,
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    };
    Ok(Some(Chunk { bytes, close }))
}

/// A v1 data page's definition levels for `n` rows all present (1) or all null (0): the
/// 4-byte length, then one RLE run (bit width 1: one value byte).
fn levels(n: u32, present: bool) -> Bytes {
    let mut run = Vec::with_capacity(10);
    varint(&mut run, u64::from(n) << 1);
    run.push(u8::from(present));
    let mut out = Vec::with_capacity(run.len() + 4);
    out.extend_from_slice(&(run.len() as u32).to_le_bytes());
    out.extend_from_slice(&run);
    out.into()
}

/// ULEB128, as RLE run headers are written.
pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The PLAIN encoding of the first value and the chunk statistics for a column holding only
/// it (min = max, no nulls), for the lake's column types; None for others.
fn plain_value(array: &dyn Array, signed: bool) -> Option<(Vec<u8>, Statistics)> {
    // min = max = the value; no nulls; the deprecated min/max fields as parquet sets them.
    fn one<T: Clone>(v: T, signed: bool) -> ValueStatistics<T> {
        ValueStatistics::new(Some(v.clone()), Some(v), None, Some(0), false)
            .with_backwards_compatible_min_max(signed)
    }
    if array.is_null(0) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Utf8 => {
            let v = array.as_string::<i32>().value(0).as_bytes();
            let mut plain = Vec::with_capacity(4 + v.len());
            plain.extend_from_slice(&(v.len() as u32).to_le_bytes());
            plain.extend_from_slice(v);
            let stats = Statistics::ByteArray(one(ByteArray::from(v.to_vec()), signed));
            (plain, stats)
        }
        // Parquet stores 16-bit integers as INT32.
        DataType::Int16 => {
            let v = i32::from(array.as_primitive::<Int16Type>().value(0));
            (v.to_le_bytes().to_vec(), Statistics::Int32(one(v, signed)))
        }
        DataType::Int32 => {
            let v = array.as_primitive::<Int32Type>().value(0);
            (v.to_le_bytes().to_vec(), Statistics::Int32(one(v, signed)))
        }
        DataType::Int64 => {
            let v = array.as_primitive::<Int64Type>().value(0);
            (v.to_le_bytes().to_vec(), Statistics::Int64(one(v, signed)))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let v = array
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0);
            (v.to_le_bytes().to_vec(), Statistics::Int64(one(v, signed)))
        }
        _ => return None,
    })
}

/// Statistics of a column chunk of `nulls` nulls: no min or max.
fn null_statistics(t: &DataType, nulls: u64) -> Option<Statistics> {
    Some(match t {
        DataType::Utf8 | DataType::Binary => {
            Statistics::ByteArray(ValueStatistics::new(None, None, None, Some(nulls), false))
        }
        DataType::Int16 | DataType::Int32 => {
            Statistics::Int32(ValueStatistics::new(None, None, None, Some(nulls), false))
        }
        DataType::Int64 | DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Statistics::Int64(ValueStatistics::new(None, None, None, Some(nulls), false))
        }
        _ => return None,
    })
}
