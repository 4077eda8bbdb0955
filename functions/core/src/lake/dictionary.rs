//! Dictionary-encoded column chunks of several values: written as their two pages directly.
//!
//! Normalize's per-object outputs keep a dictionary on the few-valued columns (event, protocol,
//! public address, destination port, device, direction). Through parquet's column writer each
//! value is hashed into its interner and the chunk pays the writer's set-up and close; here the
//! dictionary is found with a short list (a raw object's partition holds a few distinct values
//! per column; a map takes over past [`LIST`]) and the pages are what parquet 60 writes: a PLAIN
//! dictionary page in order of first appearance, then one v1 data page of the definition levels
//! and the indices in the RLE / bit-packed hybrid, with the chunk metadata and statistics its
//! writer records. A test encodes the same columns through both and compares the files.

use std::collections::HashMap;
use std::hash::Hash;

use arrow::array::{Array, AsArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageWriter};
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::LevelHistogram;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::constant::{
    Chunk, data_page, dictionary_metadata, finish, flat_column, text_fits, uncompressed,
};
use super::delta::levels;
use super::rle::Rle;

/// Distinct values searched in a list before a map takes over.
const LIST: usize = 16;

/// Longest value kept whole in statistics (parquet's default truncation length).
const MAX_STATS_VALUE: usize = 64;

/// The chunk of `array` (a flat nullable column of the lake's types) as a dictionary page and
/// one data page; None for another type or shape, a chunk whose pages would exceed `page_bytes`
/// (where the writer starts another page or falls back to plain values), or a text value too
/// long to keep whole in statistics: the column writer takes those. `statistics`: whether the
/// column keeps (column-chunk) statistics. The caller sees to the rest: the column's settings
/// (dictionary, uncompressed, v1 pages) and no more rows than a page holds.
pub fn dictionary_chunk(
    descr: &ColumnDescPtr,
    array: &dyn Array,
    statistics: bool,
    page_bytes: usize,
) -> Result<Option<Chunk>, ParquetError> {
    let Some((n, nulls)) = flat_column(descr, array) else {
        return Ok(None);
    };
    let nulls = nulls.as_ref();
    let null_count = nulls.map_or(0, |b| b.null_count() as u64);
    let encoded = match (array.data_type(), descr.physical_type()) {
        (DataType::Utf8, PhysicalType::BYTE_ARRAY) => {
            let a = array.as_string::<i32>();
            // At most a 4-byte length per value besides the text (the dictionary page).
            if !text_fits(a, 4, page_bytes) {
                return Ok(None);
            }
            let values = present(a.len(), nulls, |i| a.value(i).as_bytes());
            match text(&values, statistics, null_count) {
                Some(e) => e,
                None => return Ok(None),
            }
        }
        // Parquet stores 16-bit integers as INT32.
        (DataType::Int16, PhysicalType::INT32) => {
            let v = array.as_primitive::<Int16Type>().values();
            numbers(
                present(v.len(), nulls, |i| i32::from(v[i])),
                statistics,
                null_count,
            )
        }
        (DataType::Int32, PhysicalType::INT32) => {
            let v = array.as_primitive::<Int32Type>().values();
            numbers(present(v.len(), nulls, |i| v[i]), statistics, null_count)
        }
        (DataType::Int64, PhysicalType::INT64) => {
            let v = array.as_primitive::<Int64Type>().values();
            numbers(present(v.len(), nulls, |i| v[i]), statistics, null_count)
        }
        (DataType::Timestamp(TimeUnit::Microsecond, _), PhysicalType::INT64) => {
            let v = array.as_primitive::<TimestampMicrosecondType>().values();
            numbers(present(v.len(), nulls, |i| v[i]), statistics, null_count)
        }
        _ => return Ok(None),
    };
    let Encoded {
        dictionary,
        entries,
        indices,
        stats,
        text_bytes,
    } = encoded;
    if entries == 0 || dictionary.len() >= page_bytes {
        return Ok(None);
    }
    let mut data = levels(nulls, n);
    // The indices: their bit width, then the hybrid encoding of all of them at once.
    let width = u64::BITS - (entries as u64 - 1).leading_zeros();
    data.push(width as u8);
    let mut rle = Rle::new(data, width);
    rle.put_batch(&indices);
    let data = rle.finish();

    let mut out = TrackedWrite::new(Vec::with_capacity(dictionary.len() + data.len() + 96));
    let mut pages = SerializedPageWriter::new(&mut out);
    let dict = pages.write_page(uncompressed(Page::DictionaryPage {
        buf: dictionary.into(),
        num_values: entries as u32,
        encoding: Encoding::PLAIN,
        is_sorted: false,
    }))?;
    let spec = pages.write_page(data_page(data.into(), n, Encoding::RLE_DICTIONARY))?;
    let mut b = dictionary_metadata(descr, &dict, &spec, n);
    if statistics {
        let Some(s) = stats else {
            return Ok(None);
        };
        // The writer counts definition levels whenever it keeps statistics.
        let present = indices.len() as i64;
        let histogram = LevelHistogram::from(vec![i64::from(n) - present, present]);
        b = b
            .set_statistics(s)
            .set_definition_level_histogram(Some(histogram))
            .set_unencoded_byte_array_data_bytes(text_bytes);
    }
    finish(out, b, n)
}

/// The present values of a column of `len` rows, read by `value(i)`.
fn present<T>(len: usize, nulls: Option<&NullBuffer>, value: impl Fn(usize) -> T) -> Vec<T> {
    match nulls {
        None => (0..len).map(value).collect(),
        Some(b) => b.valid_indices().map(value).collect(),
    }
}

/// A column chunk's values as a dictionary: the PLAIN dictionary page, its entry count, each
/// present value's index, statistics and, for text, the values' total length.
struct Encoded {
    dictionary: Vec<u8>,
    entries: usize,
    indices: Vec<u64>,
    stats: Option<Statistics>,
    text_bytes: Option<i64>,
}

/// The entries of a dictionary in order of first appearance, and each value's index.
fn intern<T: Copy + Eq + Hash>(values: &[T]) -> (Vec<T>, Vec<u64>) {
    let mut entries: Vec<T> = Vec::new();
    let mut map: HashMap<T, u64> = HashMap::new();
    let mut last = 0u64;
    let indices = values
        .iter()
        .map(|v| {
            if entries.get(last as usize) == Some(v) {
                return last;
            }
            let i = if entries.len() <= LIST {
                match entries.iter().position(|e| e == v) {
                    Some(i) => i as u64,
                    None => {
                        entries.push(*v);
                        if entries.len() > LIST {
                            map = entries.iter().zip(0u64..).map(|(e, i)| (*e, i)).collect();
                        }
                        entries.len() as u64 - 1
                    }
                }
            } else {
                let next = entries.len() as u64;
                let i = *map.entry(*v).or_insert(next);
                if i == next {
                    entries.push(*v);
                }
                i
            };
            last = i;
            i
        })
        .collect();
    (entries, indices)
}

/// An integer the dictionary page holds PLAIN (little-endian at its physical width).
trait Number: Copy + Eq + Hash + Ord {
    fn plain(self, out: &mut Vec<u8>);
    fn statistics(min: Self, max: Self, nulls: u64) -> Statistics;
}

impl Number for i32 {
    fn plain(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn statistics(min: i32, max: i32, nulls: u64) -> Statistics {
        Statistics::Int32(signed(min, max, nulls))
    }
}

impl Number for i64 {
    fn plain(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn statistics(min: i64, max: i64, nulls: u64) -> Statistics {
        Statistics::Int64(signed(min, max, nulls))
    }
}

/// Statistics as the column writer records them for a signed integer column.
fn signed<T>(min: T, max: T, nulls: u64) -> ValueStatistics<T> {
    ValueStatistics::new(Some(min), Some(max), None, Some(nulls), false)
        .with_backwards_compatible_min_max(true)
}

fn numbers<T: Number>(values: Vec<T>, statistics: bool, nulls: u64) -> Encoded {
    let (entries, indices) = intern(&values);
    let mut dictionary = Vec::with_capacity(entries.len() * 8);
    entries.iter().for_each(|e| e.plain(&mut dictionary));
    let stats = statistics
        .then(|| {
            Some(T::statistics(
                *entries.iter().min()?,
                *entries.iter().max()?,
                nulls,
            ))
        })
        .flatten();
    Encoded {
        dictionary,
        entries: entries.len(),
        indices,
        stats,
        text_bytes: None,
    }
}

/// Text values; None when statistics are kept and a value is longer than they keep whole.
fn text(values: &[&[u8]], statistics: bool, nulls: u64) -> Option<Encoded> {
    let (entries, indices) = intern(values);
    let mut dictionary = Vec::with_capacity(entries.iter().map(|e| e.len() + 4).sum());
    for e in &entries {
        dictionary.extend_from_slice(&(e.len() as u32).to_le_bytes());
        dictionary.extend_from_slice(e);
    }
    let mut stats = None;
    let mut text_bytes = None;
    if statistics {
        let (Some(min), Some(max)) = (entries.iter().min(), entries.iter().max()) else {
            return None;
        };
        if min.len() > MAX_STATS_VALUE || max.len() > MAX_STATS_VALUE {
            return None;
        }
        // Byte arrays sort unsigned: no deprecated min/max fields.
        stats = Some(Statistics::ByteArray(
            ValueStatistics::new(
                Some(ByteArray::from(min.to_vec())),
                Some(ByteArray::from(max.to_vec())),
                None,
                Some(nulls),
                false,
            )
            .with_backwards_compatible_min_max(false),
        ));
        text_bytes = Some(values.iter().map(|v| v.len() as i64).sum());
    }
    Some(Encoded {
        dictionary,
        entries: entries.len(),
        indices,
        stats,
        text_bytes,
    })
}
