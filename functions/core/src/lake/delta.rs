//! Integer column chunks stored as deltas (DELTA_BINARY_PACKED, uncompressed): written as their
//! one data page directly.
//!
//! Normalize's per-object outputs store times, ports, counters and record indices this way
//! (`writer::properties`). Through parquet's column writer each value is copied into its level
//! and value buffers, run through a generic encoder and the page assembled around them; a
//! chunk of a few hundred rows also pays the writer's set-up and close. Here the page is
//! encoded straight from the Arrow array, with the bytes parquet 60 writes for it (one v1 data
//! page: the definition levels in its RLE / bit-packed hybrid, then the deltas in blocks of 4
//! miniblocks of 32 (INT32) or 64 (INT64) values) and the column chunk metadata and
//! statistics its writer records. A test encodes the same columns through both and compares
//! the files byte for byte.

use arrow::array::{Array, AsArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::PageWriter;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::LevelHistogram;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::constant::{
    Chunk, data_page, data_page_metadata, finish, flat_column, text_fits, varint,
};
use super::rle::{Rle, pack};

/// Miniblocks per block, as parquet's encoder writes them.
const MINIBLOCKS: usize = 4;

/// The chunk of `array` (a flat nullable INT32 or INT64 column: ports, counters, times) as one
/// DELTA_BINARY_PACKED page; None for another type or shape, which the column writer takes.
/// `statistics`: whether the column keeps (column-chunk) statistics. The caller sees to the
/// rest of what the writer would do differently: the column's settings (deltas, no dictionary,
/// uncompressed, v1 pages) and one page for the chunk (no more rows than a page holds).
pub fn delta_chunk(
    descr: &ColumnDescPtr,
    array: &dyn Array,
    statistics: bool,
    page_bytes: usize,
) -> Result<Option<Chunk>, ParquetError> {
    let Some((n, nulls)) = flat_column(descr, array) else {
        return Ok(None);
    };
    let nulls = nulls.as_ref();
    let mut page = levels(nulls, n);
    let mut text_bytes = None;
    let mut encoding = Encoding::DELTA_BINARY_PACKED;
    let stats = match (array.data_type(), descr.physical_type()) {
        (DataType::Utf8, PhysicalType::BYTE_ARRAY) => {
            let a = array.as_string::<i32>();
            // Two lengths of at most 4 bytes each besides the text.
            if !text_fits(a, 8, page_bytes) {
                return Ok(None);
            }
            encoding = Encoding::DELTA_BYTE_ARRAY;
            match encode_text(a, nulls, &mut page, statistics) {
                Ok(Some((s, bytes))) => {
                    text_bytes = Some(bytes);
                    Some(s)
                }
                Ok(None) => None,
                Err(TooLong) => return Ok(None),
            }
        }
        (DataType::Int32, PhysicalType::INT32) => {
            let v = array.as_primitive::<Int32Type>().values();
            encode::<I32>(v, nulls, &mut page, statistics)
        }
        (DataType::Int64, PhysicalType::INT64) => {
            let v = array.as_primitive::<Int64Type>().values();
            encode::<I64>(v, nulls, &mut page, statistics)
        }
        (DataType::Timestamp(TimeUnit::Microsecond, _), PhysicalType::INT64) => {
            let v = array.as_primitive::<TimestampMicrosecondType>().values();
            encode::<I64>(v, nulls, &mut page, statistics)
        }
        _ => return Ok(None),
    };
    let mut out = TrackedWrite::new(Vec::with_capacity(page.len() + 64));
    let mut pages = SerializedPageWriter::new(&mut out);
    let spec = pages.write_page(data_page(page.into(), n, encoding))?;
    let mut b = data_page_metadata(descr, encoding, &spec, n);
    if let Some(s) = stats {
        // The writer counts definition levels whenever it keeps statistics.
        let present = nulls.map_or(array.len(), |b| array.len() - b.null_count()) as i64;
        let histogram = LevelHistogram::from(vec![array.len() as i64 - present, present]);
        b = b
            .set_statistics(s)
            .set_definition_level_histogram(Some(histogram));
        if let Some(t) = text_bytes {
            b = b.set_unencoded_byte_array_data_bytes(Some(t as i64));
        }
    }
    finish(out, b, n)
}

/// A v1 data page's definition levels (1 a value, 0 a null): their byte length, then the
/// levels as parquet's `RleEncoder` writes them, fed one at a time. Without nulls that is one
/// run of 1s.
pub(super) fn levels(nulls: Option<&NullBuffer>, n: u32) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    match nulls {
        None => {
            varint(&mut out, u64::from(n) << 1);
            out.push(1);
        }
        Some(b) => {
            let mut rle = Rle::new(out, 1);
            rle.put_bits(b.inner());
            out = rle.finish();
        }
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// What the encoding needs of a physical type.
trait Physical {
    /// Values and their deltas: deltas wrap at the type's width, as parquet computes them.
    type Native: Copy + Ord + Into<i64>;
    /// Values per miniblock.
    const MINI: usize;
    /// The most values of the type.
    const MAX: Self::Native;
    fn sub(a: Self::Native, b: Self::Native) -> Self::Native;
    /// `a − b` as the unsigned number that is bit-packed.
    fn sub_u64(a: Self::Native, b: Self::Native) -> u64;
    fn statistics(min: Self::Native, max: Self::Native, nulls: u64) -> Statistics;
}

struct I32;
struct I64;

impl Physical for I32 {
    type Native = i32;
    const MINI: usize = 32;
    const MAX: i32 = i32::MAX;
    fn sub(a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    fn sub_u64(a: i32, b: i32) -> u64 {
        u64::from(a.wrapping_sub(b) as u32)
    }
    fn statistics(min: i32, max: i32, nulls: u64) -> Statistics {
        Statistics::Int32(value_statistics(min, max, nulls))
    }
}

impl Physical for I64 {
    type Native = i64;
    const MINI: usize = 64;
    const MAX: i64 = i64::MAX;
    fn sub(a: i64, b: i64) -> i64 {
        a.wrapping_sub(b)
    }
    fn sub_u64(a: i64, b: i64) -> u64 {
        a.wrapping_sub(b) as u64
    }
    fn statistics(min: i64, max: i64, nulls: u64) -> Statistics {
        Statistics::Int64(value_statistics(min, max, nulls))
    }
}

/// Chunk statistics as the column writer records them for a signed integer column.
fn value_statistics<T>(min: T, max: T, nulls: u64) -> ValueStatistics<T> {
    ValueStatistics::new(Some(min), Some(max), None, Some(nulls), false)
        .with_backwards_compatible_min_max(true)
}

/// A value longer than parquet keeps whole in statistics.
struct TooLong;

/// Longest value kept whole in statistics (parquet's default truncation length).
const MAX_STATS_VALUE: usize = 64;

/// Appends the DELTA_BYTE_ARRAY encoding of the present values of `a` to `out` (each value's
/// prefix shared with the one before, then the rest: the prefix lengths and the suffix lengths
/// as DELTA_BINARY_PACKED INT32, then the suffixes); returns their statistics and text length
/// when `statistics` (None without a present value).
fn encode_text(
    a: &arrow::array::StringArray,
    nulls: Option<&NullBuffer>,
    out: &mut Vec<u8>,
    statistics: bool,
) -> Result<Option<(Statistics, usize)>, TooLong> {
    let (offsets, data) = (a.value_offsets(), a.value_data());
    let value = |i: usize| -> &[u8] {
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        data.get(start..end).unwrap_or_default()
    };
    let present: Vec<&[u8]> = match nulls {
        None => (0..a.len()).map(value).collect(),
        Some(b) => b.valid_indices().map(value).collect(),
    };
    let mut prefixes = Vec::with_capacity(present.len());
    let mut suffixes = Vec::with_capacity(present.len());
    let mut last: &[u8] = &[];
    for v in &present {
        let p = common_prefix(last, v);
        prefixes.push(p as i32);
        suffixes.push((v.len() - p) as i32);
        last = v;
    }
    delta_values::<I32>(&prefixes, out);
    delta_values::<I32>(&suffixes, out);
    for (v, p) in present.iter().zip(&prefixes) {
        out.extend_from_slice(&v[*p as usize..]);
    }
    if !statistics {
        return Ok(None);
    }
    let Some((&first, rest)) = present.split_first() else {
        return Ok(None);
    };
    let (mut min, mut max) = (first, first);
    for &v in rest {
        if v < min {
            min = v;
        } else if v > max {
            max = v;
        }
    }
    if min.len() > MAX_STATS_VALUE || max.len() > MAX_STATS_VALUE {
        return Err(TooLong);
    }
    let nulls = nulls.map_or(0, |b| b.null_count() as u64);
    // Byte arrays sort unsigned: no deprecated min/max fields.
    let stats = ValueStatistics::new(
        Some(ByteArray::from(min.to_vec())),
        Some(ByteArray::from(max.to_vec())),
        None,
        Some(nulls),
        false,
    )
    .with_backwards_compatible_min_max(false);
    let bytes = present.iter().map(|v| v.len()).sum();
    Ok(Some((Statistics::ByteArray(stats), bytes)))
}

/// The length of the prefix `a` and `b` share, compared eight bytes at a time (addresses share
/// 4-10 bytes with the one before).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let (Ok(x), Ok(y)) = (
            <[u8; 8]>::try_from(&a[i..i + 8]),
            <[u8; 8]>::try_from(&b[i..i + 8]),
        ) else {
            break;
        };
        let diff = u64::from_le_bytes(x) ^ u64::from_le_bytes(y);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Appends the DELTA_BINARY_PACKED encoding of the present values of `values` to `out`; returns
/// their statistics when `statistics` (None without a present value).
fn encode<P: Physical>(
    values: &[P::Native],
    nulls: Option<&NullBuffer>,
    out: &mut Vec<u8>,
    statistics: bool,
) -> Option<Statistics>
where
    P::Native: PartialOrd,
{
    let present: Vec<P::Native>;
    let values = match nulls {
        None => values,
        Some(b) => {
            present = b.valid_indices().map(|i| values[i]).collect();
            &present
        }
    };
    delta_values::<P>(values, out);
    let (&first, rest) = values.split_first()?;
    statistics.then(|| {
        let (mut min, mut max) = (first, first);
        for &v in rest {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let nulls = nulls.map_or(0, |b| b.null_count() as u64);
        P::statistics(min, max, nulls)
    })
}

/// Appends `values` as DELTA_BINARY_PACKED: the header (block size, miniblocks, value count,
/// first value), then blocks of deltas.
fn delta_values<P: Physical>(values: &[P::Native], out: &mut Vec<u8>) {
    let block = P::MINI * MINIBLOCKS;
    // Header: block size, miniblocks, value count, first value (zigzag).
    varint(out, block as u64);
    varint(out, MINIBLOCKS as u64);
    varint(out, values.len() as u64);
    let Some((&first, rest)) = values.split_first() else {
        varint(out, 0);
        return;
    };
    varint(out, zigzag(first.into()));
    // Deltas at the type's own width: 32-bit ones compare four to a vector register, where
    // 64-bit comparisons are emulated (the baseline x86-64 has none).
    let mut deltas = [first; 256];
    let mut previous = first;
    for chunk in rest.chunks(block) {
        for (d, &v) in deltas.iter_mut().zip(chunk) {
            *d = P::sub(v, previous);
            previous = v;
        }
        write_block::<P>(&deltas[..chunk.len()], out);
    }
}

/// One block: its least delta, the bit width of each miniblock, then each miniblock's deltas
/// less the least, bit-packed and padded to a whole miniblock with 0s; miniblocks past the
/// values have width 0 and no bytes.
fn write_block<P: Physical>(deltas: &[P::Native], out: &mut Vec<u8>) {
    let min = deltas.iter().copied().fold(P::MAX, Ord::min);
    varint(out, zigzag(min.into()));
    let widths_at = out.len();
    out.extend_from_slice(&[0u8; MINIBLOCKS]);
    for (i, mini) in deltas.chunks(P::MINI).enumerate() {
        // The width of the largest delta less the least: every one is at least the least, so
        // the highest bit set in any of them (their OR) is the largest's, without comparisons.
        let any = mini.iter().fold(0u64, |acc, &d| acc | P::sub_u64(d, min));
        let width = u64::BITS - any.leading_zeros();
        out[widths_at + i] = width as u8;
        // Padded with 0s to a whole miniblock, which then ends on a byte boundary at any width.
        let values = mini.iter().map(|&d| P::sub_u64(d, min));
        pack(out, values, P::MINI, width);
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
