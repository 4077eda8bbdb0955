//! A digest of the rows a carry holds, recorded in the carry's marker.
//!
//! Late data in an old hour makes every later carry suspect, but usually only for an hour or
//! two: the late sessions close, the chain of carries comes back to what it was. When the carry
//! into an hour comes out with the same digest as the one its marker recorded, the later carries
//! are unchanged too (their own inputs are), and the run can stop there instead of re-reading
//! every hour since — which a device whose clock runs days slow would otherwise cause on every run.
//!
//! Every carry is hashed every hour, so the digest reads the columns' own buffers: per column,
//! a stream of validity bytes, one of values (fixed-width values as stored, text and binary
//! bytes) and, for text and binary, one of lengths; a null's value is zero or empty. The bytes
//! hashed do not depend on how the rows were cut into batches. (Until session 16 the rows went
//! through Arrow's row format, ~1,170 bytes a carried row. A marker with the old digest never
//! matches a new one: the first run after the upgrade re-reads one more stretch of hours.)

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, GenericBinaryType, GenericStringType};
use arrow::row::{RowConverter, SortField};
use natlake_core::lake::writer::LakeError;
use sha2::{Digest, Sha256};

/// The rows of one partition's carry, in the order written.
pub struct RowDigest {
    columns: Vec<ColumnDigest>,
}

/// One column's streams (separate, so that batch cuts do not interleave them differently).
struct ColumnDigest {
    validity: Sha256,
    /// Text and binary: each value's length.
    lengths: Sha256,
    values: Sha256,
    /// For types read by their row encoding (none in today's schema).
    rows: Option<RowConverter>,
}

/// Validity bytes of a run without nulls, fed a slice at a time.
const VALID: [u8; 1024] = [1; 1024];

impl RowDigest {
    pub fn new() -> Self {
        RowDigest {
            columns: Vec::new(),
        }
    }

    /// Adds a batch's rows.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        if self.columns.is_empty() {
            for f in batch.schema().fields() {
                let rows = match f.data_type() {
                    t if t.is_primitive() => None,
                    DataType::Utf8 | DataType::Binary => None,
                    t => Some(RowConverter::new(vec![SortField::new(t.clone())])?),
                };
                self.columns.push(ColumnDigest {
                    validity: Sha256::new(),
                    lengths: Sha256::new(),
                    values: Sha256::new(),
                    rows,
                });
            }
        }
        for (c, col) in self.columns.iter_mut().zip(batch.columns()) {
            c.update(col)?;
        }
        Ok(())
    }

    pub fn finish(self) -> [u8; 32] {
        let mut h = Sha256::new();
        for c in self.columns {
            h.update(c.validity.finalize());
            h.update(c.lengths.finalize());
            h.update(c.values.finalize());
        }
        h.finalize().into()
    }
}

impl ColumnDigest {
    fn update(&mut self, col: &ArrayRef) -> Result<(), LakeError> {
        let n = col.len();
        match col.logical_nulls() {
            None => {
                for chunk in (0..n).step_by(VALID.len()) {
                    self.validity.update(&VALID[..VALID.len().min(n - chunk)]);
                }
            }
            Some(nulls) => {
                let bytes: Vec<u8> = nulls.iter().map(u8::from).collect();
                self.validity.update(&bytes);
            }
        }
        if let Some(conv) = &self.rows {
            let rows = conv.convert_columns(std::slice::from_ref(col))?;
            for row in rows.iter() {
                let bytes = row.as_ref();
                self.values.update((bytes.len() as u64).to_le_bytes());
                self.values.update(bytes);
            }
            return Ok(());
        }
        match col.data_type() {
            DataType::Utf8 => {
                let a = col.as_bytes::<GenericStringType<i32>>();
                self.variable(a.value_offsets(), a.values(), col);
            }
            DataType::Binary => {
                let a = col.as_bytes::<GenericBinaryType<i32>>();
                self.variable(a.value_offsets(), a.values(), col);
            }
            t => {
                // Fixed width: the values as stored, a null's slot as zeros (it may hold anything).
                let width = t.primitive_width().unwrap_or(0);
                let data = col.to_data();
                let start = data.offset() * width;
                let values = &data.buffers()[0].as_slice()[start..start + n * width];
                if col.null_count() == 0 {
                    self.values.update(values);
                } else {
                    let mut owned = values.to_vec();
                    for (i, slot) in owned.chunks_mut(width).enumerate() {
                        if col.is_null(i) {
                            slot.fill(0);
                        }
                    }
                    self.values.update(&owned);
                }
            }
        }
        Ok(())
    }

    /// Text or binary: each value's length (u32 LE) then its bytes; a null is length 0.
    fn variable(&mut self, offsets: &[i32], data: &[u8], col: &ArrayRef) {
        let mut lengths = Vec::with_capacity(4 * col.len());
        for (i, w) in offsets.windows(2).enumerate() {
            let len = if col.is_null(i) { 0 } else { w[1] - w[0] };
            lengths.extend_from_slice(&(len as u32).to_le_bytes());
        }
        self.lengths.update(&lengths);
        if col.null_count() == 0 {
            let (lo, hi) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
            self.values.update(&data[lo..hi]);
        } else {
            for (i, w) in offsets.windows(2).enumerate() {
                if !col.is_null(i) {
                    self.values.update(&data[w[0] as usize..w[1] as usize]);
                }
            }
        }
    }
}

impl Default for RowDigest {
    fn default() -> Self {
        Self::new()
    }
}

/// The digest of an hour's carry: every network's rows, networks in order. Networks that carry
/// nothing are left out (they write no object either).
pub fn of_hour(nets: &BTreeMap<String, [u8; 32]>) -> String {
    let mut h = Sha256::new();
    for (net, d) in nets {
        h.update((net.len() as u64).to_le_bytes());
        h.update(net.as_bytes());
        h.update(d);
    }
    let out: [u8; 32] = h.finalize().into();
    out.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn batch(ids: &[i64], names: &[Option<&str>]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as _),
            ("name", Arc::new(StringArray::from(names.to_vec())) as _),
        ])
        .unwrap()
    }

    fn digest(batches: &[RecordBatch]) -> [u8; 32] {
        let mut d = RowDigest::new();
        for b in batches {
            d.update(b).unwrap();
        }
        d.finish()
    }

    #[test]
    fn same_rows_same_digest_whatever_the_batches() {
        let whole = batch(&[1, 2, 3], &[Some("a"), None, Some("c")]);
        let a = digest(std::slice::from_ref(&whole));
        let b = digest(&[whole.slice(0, 1), whole.slice(1, 2)]);
        assert_eq!(a, b);
        // One value changed, a null made a value, rows in another order: all differ.
        assert_ne!(
            a,
            digest(&[batch(&[1, 2, 4], &[Some("a"), None, Some("c")])])
        );
        assert_ne!(
            a,
            digest(&[batch(&[1, 2, 3], &[Some("a"), Some(""), Some("c")])])
        );
        assert_ne!(
            a,
            digest(&[batch(&[2, 1, 3], &[None, Some("a"), Some("c")])])
        );
    }

    /// Every type the carry holds, with nulls, cut anywhere: the same digest; a null slot's
    /// stored value (which may hold anything) does not count.
    #[test]
    fn nulls_binary_and_times_whatever_the_batches() {
        use arrow::array::{BinaryArray, Int16Array, TimestampMicrosecondArray};
        use arrow::buffer::{NullBuffer, ScalarBuffer};
        let make = |hidden: i16| {
            let ports = Int16Array::new(
                ScalarBuffer::from(vec![1, hidden, 3, 4]),
                Some(NullBuffer::from(vec![true, false, true, true])),
            );
            RecordBatch::try_from_iter([
                ("port", Arc::new(ports) as _),
                (
                    "ip",
                    Arc::new(BinaryArray::from(vec![
                        Some(&[1u8, 2][..]),
                        None,
                        Some(&[][..]),
                        Some(&[9u8][..]),
                    ])) as _,
                ),
                (
                    "time",
                    Arc::new(
                        TimestampMicrosecondArray::from(vec![Some(5), Some(6), None, Some(8)])
                            .with_timezone("UTC"),
                    ) as _,
                ),
            ])
            .unwrap()
        };
        let whole = make(0);
        let a = digest(std::slice::from_ref(&whole));
        assert_eq!(a, digest(&[make(77)]));
        for cut in 0..=4 {
            let parts = [whole.slice(0, cut), whole.slice(cut, 4 - cut)];
            assert_eq!(a, digest(&parts), "cut at {cut}");
        }
        // The empty value and the null of the binary column swapped: differs.
        let swapped = RecordBatch::try_new(
            whole.schema(),
            vec![
                whole.column(0).clone(),
                Arc::new(BinaryArray::from(vec![
                    Some(&[1u8, 2][..]),
                    Some(&[][..]),
                    None,
                    Some(&[9u8][..]),
                ])),
                whole.column(2).clone(),
            ],
        )
        .unwrap();
        assert_ne!(a, digest(&[swapped]));
        // Bytes moved from one value to the next: differs (the lengths count).
        let moved = RecordBatch::try_new(
            whole.schema(),
            vec![
                whole.column(0).clone(),
                Arc::new(BinaryArray::from(vec![
                    Some(&[1u8][..]),
                    None,
                    Some(&[2u8][..]),
                    Some(&[9u8][..]),
                ])),
                whole.column(2).clone(),
            ],
        )
        .unwrap();
        assert_ne!(a, digest(&[moved]));
    }

    #[test]
    fn hour_digest_names_the_networks() {
        let d = digest(&[batch(&[1], &[Some("a")])]);
        let one = of_hour(&BTreeMap::from([("n1".to_string(), d)]));
        let other = of_hour(&BTreeMap::from([("n2".to_string(), d)]));
        assert_ne!(one, other);
        assert_eq!(one.len(), 64);
        assert_eq!(one, of_hour(&BTreeMap::from([("n1".to_string(), d)])));
    }
}
