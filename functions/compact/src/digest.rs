//! A digest of the rows a carry holds, recorded in the carry's marker.
//!
//! Late data in an old hour makes every later carry suspect, but usually only for an hour or
//! two: the late sessions close, the chain of carries comes back to what it was. When the carry
//! into an hour comes out with the same digest as the one its marker recorded, the later carries
//! are unchanged too (their own inputs are), and the run can stop there instead of re-reading
//! every hour since — which a device whose clock runs days slow would otherwise cause on every run.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::row::{RowConverter, SortField};
use natlake_core::lake::writer::LakeError;
use sha2::{Digest, Sha256};

/// The rows of one partition's carry, in the order written.
pub struct RowDigest {
    converter: Option<RowConverter>,
    hash: Sha256,
}

impl RowDigest {
    pub fn new() -> Self {
        RowDigest {
            converter: None,
            hash: Sha256::new(),
        }
    }

    /// Adds a batch's rows. The row encoding (nulls normalised, one byte string per row) does
    /// not depend on how the rows were cut into batches or on buffer layouts.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        if self.converter.is_none() {
            let fields = batch
                .schema()
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        let Some(conv) = &self.converter else {
            return Ok(());
        };
        let rows = conv.convert_columns(batch.columns())?;
        for row in rows.iter() {
            let bytes = row.as_ref();
            self.hash.update((bytes.len() as u64).to_le_bytes());
            self.hash.update(bytes);
        }
        Ok(())
    }

    pub fn finish(self) -> [u8; 32] {
        self.hash.finalize().into()
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
