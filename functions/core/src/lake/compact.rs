//! Merging a partition's many small objects into one, and choosing the carry rows.
//!
//! Pure functions over Arrow batches; the compact function does the listing, reading and
//! publishing. A row is identified by its provenance (raw object key, record index): copies of
//! the same row (a raw object normalized twice, a compacted object next to the small objects it
//! replaced) collapse into one.

use std::collections::HashSet;

use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, filter_record_batch, take_record_batch,
};
use arrow::datatypes::SchemaRef;

use super::columns;
use super::read::{conform, nat_rows, provenance};
use super::writer::{LakeError, sort_columns};
use crate::correlate::{self, Evidence};
use crate::model::{Micros, Table};

/// The current schema of a table's objects.
pub fn table_schema(table: Table) -> SchemaRef {
    match columns::event_columns(table) {
        Some(cols) => columns::schema_of(&cols),
        None => columns::schema_of(&columns::rejects()),
    }
}

/// One object from many: conformed to the table's schema, sorted as the writer sorts (then by
/// provenance), copies of a row removed.
pub fn merge(table: Table, batches: &[RecordBatch]) -> Result<RecordBatch, LakeError> {
    let schema = table_schema(table);
    let conformed = batches
        .iter()
        .map(|b| conform(b, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    let all = concat_batches(&schema, &conformed)?;
    if all.num_rows() == 0 {
        return Ok(all);
    }
    let keys: Vec<SortColumn> = sort_columns(table)
        .iter()
        .chain(["raw_key", "raw_record"].iter())
        .filter_map(|name| all.column_by_name(name))
        .map(|c| SortColumn {
            values: c.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    let order = arrow::compute::lexsort_to_indices(&keys, None)?;
    let sorted = take_record_batch(&all, &order)?;
    // Identical rows sort next to each other: keep the first of each provenance run.
    let prov = provenance(&sorted)?;
    let keep: BooleanArray = (0..prov.len())
        .map(|i| Some(i == 0 || prov[i] != prov[i - 1] || prov[i].0.is_none()))
        .collect();
    Ok(filter_record_batch(&sorted, &keep)?)
}

/// What the carry of one partition found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CarryStats {
    /// Mappings still open at the end of the hour, carried.
    pub carried: usize,
    /// Mappings still open but idle longer than the limit, dropped from the carry.
    pub expired: usize,
}

/// The carry into the next hour: from the previous carry and this hour's events (both
/// `nat_events`-shaped), the row that opened each mapping still open at `hour_end` (its first
/// evidence). Mappings whose last event is older than `idle_cutoff` are not carried: a delete
/// that was never logged must not keep a mapping alive for ever. Such a mapping then answers "no
/// match" rather than a guess.
pub fn carry(
    previous: Option<&RecordBatch>,
    events: Option<&RecordBatch>,
    range_start: Micros,
    idle_cutoff: Micros,
) -> Result<(RecordBatch, CarryStats), LakeError> {
    let schema = table_schema(Table::NatCarry);
    let parts: Vec<RecordBatch> = previous
        .into_iter()
        .chain(events)
        .map(|b| conform(b, &schema))
        .collect::<Result<_, _>>()?;
    let all = concat_batches(&schema, &parts)?;
    let rows = nat_rows(&all)?;
    let last_seen: std::collections::HashMap<Evidence, Micros> = rows
        .iter()
        .map(|r| {
            (
                Evidence {
                    key: r.raw_key.clone(),
                    record: r.raw_record,
                },
                r.time,
            )
        })
        .collect();
    let mut stats = CarryStats::default();
    let mut wanted: HashSet<Evidence> = HashSet::new();
    for iv in correlate::intervals(rows, range_start) {
        if iv.end.is_some() {
            continue;
        }
        let last = iv
            .evidence
            .iter()
            .filter_map(|e| last_seen.get(e))
            .max()
            .map_or(iv.start, |t| *t);
        if last < idle_cutoff {
            stats.expired += 1;
            continue;
        }
        if let Some(first) = iv.evidence.first() {
            stats.carried += 1;
            wanted.insert(first.clone());
        }
    }
    let prov = provenance(&all)?;
    let mut seen: HashSet<(&str, i64)> = HashSet::new();
    let indices: UInt32Array = prov
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let (k, r) = (p.0?, p.1?);
            let ev = Evidence {
                key: k.to_owned(),
                record: u64::try_from(r).ok()?,
            };
            (wanted.contains(&ev) && seen.insert((k, r))).then_some(i as u32)
        })
        .collect();
    let picked = take_record_batch(&all, &indices)?;
    let merged = merge(Table::NatCarry, std::slice::from_ref(&picked))?;
    Ok((merged, stats))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::lake::read::parquet_batches;
    use crate::lake::writer::{WriteOptions, encode};
    use crate::model::{NatEventKind, Row};
    use crate::testing::nat_row as nat;

    const S: Micros = 1_000_000;
    const H: Micros = 3600 * S;

    /// Rows through the real writer and reader, as the lake holds them.
    fn object(rows: &[Row]) -> RecordBatch {
        let refs: Vec<&Row> = rows.iter().collect();
        let cols = columns::nat_events();
        let bytes = encode(Table::NatEvents, &cols, &refs, &WriteOptions::default()).unwrap();
        let batches = parquet_batches(bytes).unwrap();
        concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    fn ports(b: &RecordBatch) -> Vec<(u16, String)> {
        nat_rows(b)
            .unwrap()
            .into_iter()
            .map(|r| (r.x_port.unwrap(), r.event.as_str().to_owned()))
            .collect()
    }

    #[test]
    fn merge_sorts_and_removes_copies() {
        use NatEventKind::*;
        let a = object(&[
            nat(5 * S, SessionCreate, "100.64.0.2", 2000, "raw/a", 0),
            nat(6 * S, SessionCreate, "100.64.0.1", 1000, "raw/a", 1),
        ]);
        // The same raw object normalized again, plus a second object.
        let b = object(&[
            nat(6 * S, SessionCreate, "100.64.0.1", 1000, "raw/a", 1),
            nat(7 * S, SessionDelete, "100.64.0.1", 1000, "raw/b", 0),
        ]);
        let m = merge(Table::NatEvents, &[a, b]).unwrap();
        assert_eq!(m.num_rows(), 3);
        assert_eq!(
            ports(&m),
            vec![
                (1000, "session_create".into()),
                (1000, "session_delete".into()),
                (2000, "session_create".into())
            ]
        );
    }

    #[test]
    fn conform_refuses_to_drop_unknown_columns() {
        let b = object(&[nat(
            S,
            NatEventKind::SessionCreate,
            "100.64.0.1",
            1,
            "raw/a",
            0,
        )]);
        let mut fields: Vec<_> = b.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            "future_column",
            arrow::datatypes::DataType::Int64,
            true,
        )));
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(arrow::array::Int64Array::from(vec![Some(1)])));
        let wider =
            RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols).unwrap();
        let err = merge(Table::NatEvents, &[wider]).unwrap_err();
        assert!(err.to_string().contains("future_column"), "{err}");
        // An older object missing a column is filled with nulls.
        let narrower = b.project(&[0, 1, 5, 6]).unwrap();
        let m = merge(Table::NatEvents, &[narrower]).unwrap();
        assert_eq!(m.num_columns(), columns::nat_events().len());
        assert_eq!(m.num_rows(), 1);
    }

    #[test]
    fn carry_keeps_only_open_mappings_and_chains() {
        use NatEventKind::*;
        let h0 = 100 * H;
        // Hour 0: A opens (port 1000); B opens and closes (2000); a port block gets an interim
        // record only (its allocation lies before the data); C opened long ago and went idle.
        let ev0 = object(&[
            nat(h0 + 10 * S, SessionCreate, "100.64.0.1", 1000, "raw/0", 0),
            nat(h0 + 20 * S, SessionCreate, "100.64.0.2", 2000, "raw/0", 1),
            nat(h0 + 30 * S, SessionDelete, "100.64.0.2", 2000, "raw/0", 2),
            nat(
                h0 + 40 * S,
                PortBlockInterim,
                "100.64.0.3",
                3000,
                "raw/0",
                3,
            ),
            nat(
                h0 - 9 * 24 * H,
                SessionCreate,
                "100.64.0.4",
                4000,
                "raw/old",
                0,
            ),
        ]);
        let cutoff = h0 + H - 7 * 24 * H;
        let (c1, st) = carry(None, Some(&ev0), h0, cutoff).unwrap();
        assert_eq!(
            st,
            CarryStats {
                carried: 2,
                expired: 1
            }
        );
        assert_eq!(
            ports(&c1),
            vec![
                (1000, "session_create".into()),
                (3000, "port_block_interim".into())
            ]
        );
        // Hour 1: A closes. The carry of hour 1 plus hour 1's events leaves the port block.
        let ev1 = object(&[nat(
            h0 + H + 5 * S,
            SessionDelete,
            "100.64.0.1",
            1000,
            "raw/1",
            0,
        )]);
        let (c2, st) = carry(Some(&c1), Some(&ev1), h0 + H, cutoff + H).unwrap();
        assert_eq!(
            st,
            CarryStats {
                carried: 1,
                expired: 0
            }
        );
        assert_eq!(ports(&c2), vec![(3000, "port_block_interim".into())]);
        // Nothing in, nothing carried.
        let (c3, st) = carry(None, None, h0, cutoff).unwrap();
        assert_eq!((c3.num_rows(), st.carried), (0, 0));
    }
}
