//! Merging a partition's many small objects into one, and choosing the carry rows.
//!
//! Pure functions over Arrow batches; the compact function does the listing, reading and
//! publishing. [`merge`] and [`carry`] work on whole batches: the compact function streams
//! instead (`super::merge::SortedMerge`, [`CarryBuilder`]), and these stay as the reference its
//! tests compare with (and [`CarryBuilder`] runs [`carry`] on each chunk). Copies of a row (a raw
//! object normalized twice, a compacted object next to the small objects it replaced) have the
//! same provenance (raw object key, record index) and the same values, and collapse into one;
//! one raw record may hold several events, so provenance alone identifies a record, not a row.

use std::collections::VecDeque;
use std::net::IpAddr;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, filter_record_batch, interleave_record_batch,
    take_record_batch,
};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, Row, RowConverter, Rows, SortField};
// The carry builds a few maps per (x_ip, x_port) group, hundreds of thousands an hour: SipHash
// was a tenth of its instructions.
use foldhash::{HashMap, HashSet};

use super::columns;
use super::read::{conform, nat_rows_indexed, provenance};
use super::writer::{LakeError, sort_columns};
use crate::correlate::{self, Evidence, NatRow};
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
    // The sorted batch already holds the key columns in order.
    let key_columns: Vec<ArrayRef> = sort_columns(table)
        .iter()
        .chain(["raw_key", "raw_record"].iter())
        .filter_map(|name| sorted.column_by_name(name).cloned())
        .collect();
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| {
                SortField::new_with_options(
                    c.data_type().clone(),
                    SortOptions {
                        descending: false,
                        nulls_first: true,
                    },
                )
            })
            .collect(),
    )?;
    let key_rows = converter.convert_columns(&key_columns)?;
    // Copies of a row sort next to each other, among the rows of the same key (sort columns
    // and provenance): drop a row equal in every column to one already kept from that run. One
    // raw record can hold several events (an IPFIX datagram), some with the same key, so the
    // same provenance alone does not make a copy.
    let prov = provenance(&sorted)?;
    let mut run: Vec<usize> = Vec::new();
    let keep: BooleanArray = (0..prov.len())
        .map(|i| {
            if run
                .first()
                .is_none_or(|&r| key_rows.row(r) != key_rows.row(i))
            {
                run.clear();
            }
            let copy = prov[i].0.is_some()
                && run
                    .iter()
                    .any(|&r| super::merge::rows_equal(&sorted, r, &sorted, i));
            if !copy {
                run.push(i);
            }
            Some(!copy)
        })
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

/// A row of one (x_ip, x_port) group by its record (raw key numbered by [`RawKeys`], record
/// index).
type RecordKey = (u32, u64);
/// A row of a group by its record, inside address:port and destination: the mapping it is about.
type EventKey = (
    u32,
    u64,
    Option<IpAddr>,
    Option<u16>,
    Option<IpAddr>,
    Option<u16>,
);

/// The raw keys of one carry's rows, numbered: the maps below hash and copy integers instead of
/// cloning and hashing an object key per row (hashing those keys alone took 6.6 % of
/// compaction's CPU on the 3-hour bench day).
#[derive(Default)]
struct RawKeys(HashMap<String, u32>);

impl RawKeys {
    fn id(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.0.get(key) {
            return id;
        }
        let id = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        self.0.insert(key.to_owned(), id);
        id
    }

    fn record(&self, e: &Evidence) -> Option<RecordKey> {
        Some((*self.0.get(e.key.as_str())?, e.record))
    }
}

/// The carry into the next hour: from the previous carry and this hour's events (both
/// `nat_events`-shaped), the row that opened each mapping still open at the hour's end (its first
/// evidence), and each record of a span that reaches past it (a whole-session record such as
/// FortiGate's or a flow's, stored in the hour the span began: without it, a lookup in a later
/// hour, which reads from that hour's carry on, would not see the session). Mappings whose
/// last event is older than `idle_cutoff` are not carried: a delete that was never logged must
/// not keep a mapping alive for ever. Such a mapping then answers "no match" rather than a
/// guess. `range_start` is the start of the hour compacted.
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
    // The rows of both inputs, numbered as if the previous carry's came first in one batch.
    // The inputs stay where they are (the carried rows are taken from each at the end):
    // concatenating them copied every column (~2 % of compaction's instructions).
    // Each row in a slot its group takes it from (rows are ~230 bytes: every move of them all
    // is a visible share of the carry).
    let mut slots: Vec<Option<(usize, NatRow)>> = Vec::new();
    let mut starts = Vec::with_capacity(parts.len());
    let mut start = 0;
    for part in &parts {
        starts.push(start);
        slots.extend(
            nat_rows_indexed(part)?
                .into_iter()
                .map(|(i, r)| Some((start + i, r))),
        );
        start += part.num_rows();
    }
    // Every row of a mapping, and so of its intervals, has the same (x_ip, x_port): each such
    // group is carried on its own, its rows in their order (the previous carry's first). The
    // correlation's sort and maps then stay as small as a group (on the whole chunk they took
    // half the carry's instructions), and the maps below key a row by its record alone.
    // Sorted as integers (the address's bits; the family and the port in the second): the
    // order of (`IpAddr`, `Option<u16>`) at less cost (626 → 446 M instructions on the 3-hour
    // day).
    let mut order: Vec<(u128, u32, u32)> = slots
        .iter()
        .enumerate()
        .filter_map(|(j, slot)| {
            let (_, r) = slot.as_ref()?;
            let (bits, family) = match r.x_ip {
                IpAddr::V4(a) => (u128::from(u32::from(a)), 0),
                IpAddr::V6(a) => (u128::from(a), 1 << 17),
            };
            Some((
                bits,
                family | r.x_port.map_or(0, |p| u32::from(p) + 1),
                j as u32,
            ))
        })
        .collect();
    order.sort_unstable();
    let mut group = Group {
        range_start,
        hour_end: range_start.saturating_add(3_600_000_000),
        idle_cutoff,
        raw_keys: RawKeys::default(),
        stats: CarryStats::default(),
        picked: Vec::new(),
        scratch: Scratch::default(),
    };
    // One vector for every group's rows (a group holds about two): one per group was an
    // allocation and a free apiece.
    let mut rows: Vec<(usize, NatRow)> = Vec::new();
    for g in order.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        rows.extend(
            g.iter()
                .filter_map(|&(_, _, j)| slots.get_mut(j as usize)?.take()),
        );
        group.carry(&mut rows);
    }
    let Group {
        mut picked, stats, ..
    } = group;
    picked.sort_unstable();
    picked.dedup();
    let picked = match parts.as_slice() {
        [] => RecordBatch::new_empty(schema),
        [one] => take_record_batch(one, &UInt32Array::from(picked))?,
        _ => {
            // Each carried row by its input and its index there.
            let at: Vec<(usize, usize)> = picked
                .iter()
                .map(|&j| {
                    let j = j as usize;
                    let part = starts.partition_point(|&s| s <= j).saturating_sub(1);
                    (part, j - starts.get(part).copied().unwrap_or(0))
                })
                .collect();
            let refs: Vec<&RecordBatch> = parts.iter().collect();
            interleave_record_batch(&refs, &at)?
        }
    };
    let merged = merge(Table::NatCarry, std::slice::from_ref(&picked))?;
    Ok((merged, stats))
}

/// The carry of one (x_ip, x_port) group at a time; see [`carry`].
struct Group {
    range_start: Micros,
    hour_end: Micros,
    idle_cutoff: Micros,
    raw_keys: RawKeys,
    stats: CarryStats,
    /// Indices (in the carry's input) of the rows carried.
    picked: Vec<u32>,
    scratch: Scratch,
}

/// The maps and lists a group's carry fills, emptied and kept for the next group: a group holds
/// about two rows (631,512 groups on the benchmark's 3-hour day), and making them anew cost an
/// allocation and a free apiece for each group.
#[derive(Default)]
struct Scratch {
    last_seen: HashMap<RecordKey, Micros>,
    keys: Vec<(usize, EventKey)>,
    wanted: HashSet<EventKey>,
    every: HashSet<RecordKey>,
    found: HashSet<EventKey>,
    missing: HashSet<RecordKey>,
    loose_found: HashSet<RecordKey>,
}

impl Group {
    /// Carries the rows (with their indices, ascending) of one group, and empties `rows`.
    fn carry(&mut self, rows: &mut Vec<(usize, NatRow)>) {
        // One raw record can hold several events (an IPFIX datagram: many ports, maybe several
        // subscribers on one port), so a row is found by its record *and* its mapping.
        let Scratch {
            last_seen,
            keys,
            wanted,
            every,
            found,
            missing,
            loose_found,
        } = &mut self.scratch;
        last_seen.clear();
        // Each row's key, kept by its index: the rows themselves go to the correlation.
        keys.clear();
        wanted.clear();
        every.clear();
        let rows: Vec<NatRow> = rows
            .drain(..)
            .map(|(i, r)| {
                // The destination too: one record can close one session and open another of
                // the same inside address:port on this public port (an IPFIX datagram).
                let key = (
                    self.raw_keys.id(&r.raw_key),
                    r.raw_record,
                    r.src_ip,
                    r.src_port,
                    r.dst_ip,
                    r.dst_port,
                );
                // A span was last seen at its end.
                let t = r.end_time.map_or(r.time, |e| e.max(r.time));
                let e = last_seen.entry((key.0, key.1)).or_insert(t);
                *e = (*e).max(t);
                keys.push((i, key));
                r
            })
            .collect();
        // `wanted`: the events carried. `every`: mappings whose events name more than one
        // subscriber carry every row that says so: a lookup in a later hour must see the change
        // too (the opening row alone would name its subscriber plainly).
        let ivs = correlate::intervals(rows, self.range_start);
        // Every record of the group is older than a question that reads this carry.
        let fates = correlate::sightings(&ivs, Micros::MAX);
        for (i, iv) in ivs.iter().enumerate() {
            let superseded = fates.get(i).is_some_and(|f| f.settled);
            // A mapping seen at instants that no record read shows ended is named, in doubt, by
            // lookups up to its idle reach after its last sighting (`correlate::doubt_seen_once`):
            // carried that far, so the answer does not change when the hour is compacted.
            let seen_once = iv.sighted
                && !superseded
                && iv
                    .end
                    .unwrap_or(iv.start)
                    .saturating_add(correlate::seen_once_reach(iv.protocol))
                    >= self.hour_end;
            // Closed before the hour's end: done. A closed interval that reaches past it is a
            // single record stating its span (a delete is never later than its hour).
            if !seen_once
                && iv
                    .end
                    .is_some_and(|e| e < self.hour_end || iv.evidence.len() > 1)
            {
                continue;
            }
            let last = iv
                .evidence
                .iter()
                .filter_map(|e| last_seen.get(&self.raw_keys.record(e)?))
                .max()
                .map_or(iv.start, |t| *t);
            if last < self.idle_cutoff {
                self.stats.expired += 1;
                continue;
            }
            if let Some((id, record)) = iv.evidence.first().and_then(|e| self.raw_keys.record(e)) {
                self.stats.carried += 1;
                wanted.insert((id, record, iv.src_ip, iv.src_port, iv.dst_ip, iv.dst_port));
                // Its latest event too (a port block's interim record): the next hour's idle
                // check counts from it, not from the opening — a block held for days with an
                // interim record every day must not expire a week after its allocation.
                if let Some(last) = iv.evidence.last().and_then(|e| self.raw_keys.record(e))
                    && last != (id, record)
                {
                    wanted.insert((
                        last.0,
                        last.1,
                        iv.src_ip,
                        iv.src_port,
                        iv.dst_ip,
                        iv.dst_port,
                    ));
                }
            }
            if !iv.other_subscribers.is_empty() {
                every.extend(iv.evidence.iter().filter_map(|e| self.raw_keys.record(e)));
            }
        }
        if wanted.is_empty() && every.is_empty() {
            return;
        }
        // The first row of each wanted event; a mapping whose fields the correlation completed
        // from later rows (its opening row lacks the inside address) is found by its record.
        found.clear();
        for (i, k) in keys.iter() {
            if wanted.contains(k) && found.insert(*k) {
                self.picked.push(*i as u32);
            }
        }
        missing.clear();
        missing.extend(
            wanted
                .iter()
                .filter(|k| !found.contains(*k))
                .map(|&(id, record, ..)| (id, record)),
        );
        if !missing.is_empty() {
            loose_found.clear();
            for &(i, (id, record, ..)) in keys.iter() {
                if missing.contains(&(id, record)) && loose_found.insert((id, record)) {
                    self.picked.push(i as u32);
                }
            }
        }
        if !every.is_empty() {
            for &(i, (id, record, ..)) in keys.iter() {
                if every.contains(&(id, record)) {
                    self.picked.push(i as u32);
                }
            }
        }
    }
}

/// Which input [`CarryBuilder`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarryWants {
    /// The next batch of the previous carry (or None at its end).
    Previous,
    /// The next batch of the hour's merged events (or None at their end).
    Events,
    /// Both inputs are consumed; the output is complete.
    Done,
}

/// A batch received and not yet carried: rows from `start` on are pending.
struct Pending {
    batch: RecordBatch,
    keys: Rows,
    start: usize,
}

/// One input of the carry.
#[derive(Default)]
struct CarrySide {
    pending: VecDeque<Pending>,
    done: bool,
}

impl CarrySide {
    fn last_key(&self) -> Option<Row<'_>> {
        self.pending
            .back()
            .map(|p| p.keys.row(p.keys.num_rows() - 1))
    }

    /// Pending rows whose key is below `bound` (all of them without one).
    fn rows_below(&self, bound: Option<&OwnedRow>) -> usize {
        self.pending.iter().map(|p| below(p, bound) - p.start).sum()
    }

    /// Takes the pending rows whose key is below `bound` (all without one), as one batch.
    fn take_below(
        &mut self,
        bound: Option<&OwnedRow>,
        schema: &SchemaRef,
    ) -> Result<Option<RecordBatch>, LakeError> {
        let mut parts = Vec::new();
        while let Some(p) = self.pending.front_mut() {
            let end = below(p, bound);
            if end > p.start {
                parts.push(p.batch.slice(p.start, end - p.start));
            }
            if end < p.batch.num_rows() {
                p.start = end;
                break;
            }
            self.pending.pop_front();
        }
        match parts.len() {
            0 => Ok(None),
            // One slice is used as it is: a copy would cost a memcpy of every column.
            1 => Ok(parts.pop()),
            _ => Ok(Some(concat_batches(schema, &parts)?)),
        }
    }
}

/// End of the rows of `p` whose key is below `bound` (keys ascend within a batch).
fn below(p: &Pending, bound: Option<&OwnedRow>) -> usize {
    let n = p.keys.num_rows();
    match bound {
        None => n,
        Some(b) => {
            let (mut lo, mut hi) = (p.start, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if p.keys.row(mid) < b.row() {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        }
    }
}

/// [`carry`] over sorted streams, in bounded memory.
///
/// The previous carry and the hour's merged events both arrive sorted by (x_ip, x_port, …), and
/// every row of a mapping has the same (x_ip, x_port): the carry of a run of whole
/// (x_ip, x_port) groups does not depend on any other row. So the builder gathers a chunk of
/// whole groups from both inputs (previous carry rows first, as [`carry`] takes them), runs
/// [`carry`] on it, and emits the chunk's carried rows, which come out in the merged order.
/// Memory: about `chunk_rows` rows of each input, plus the largest single group.
///
/// Driven by the caller: ask [`CarryBuilder::wants`], feed that input's next batch (None at its
/// end), and take output batches with [`CarryBuilder::take_output`] until `wants` says `Done`.
pub struct CarryBuilder {
    schema: SchemaRef,
    converter: RowConverter,
    group_columns: [usize; 2],
    previous: CarrySide,
    events: CarrySide,
    range_start: Micros,
    idle_cutoff: Micros,
    chunk_rows: usize,
    output: VecDeque<RecordBatch>,
    stats: CarryStats,
}

impl CarryBuilder {
    pub fn new(
        range_start: Micros,
        idle_cutoff: Micros,
        chunk_rows: usize,
    ) -> Result<Self, LakeError> {
        let schema = table_schema(Table::NatCarry);
        let mut group_columns = [0; 2];
        let mut fields = Vec::new();
        for (slot, name) in group_columns.iter_mut().zip(["x_ip", "x_port"]) {
            *slot = schema.index_of(name)?;
            fields.push(SortField::new_with_options(
                schema.field(*slot).data_type().clone(),
                SortOptions {
                    descending: false,
                    nulls_first: true,
                },
            ));
        }
        Ok(Self {
            converter: RowConverter::new(fields)?,
            schema,
            group_columns,
            previous: CarrySide::default(),
            events: CarrySide::default(),
            range_start,
            idle_cutoff,
            chunk_rows: chunk_rows.max(1),
            output: VecDeque::new(),
            stats: CarryStats::default(),
        })
    }

    /// The input to feed next.
    pub fn wants(&self) -> CarryWants {
        let (p, e) = (&self.previous, &self.events);
        match (p.done, e.done) {
            (true, true) => CarryWants::Done,
            (false, true) => CarryWants::Previous,
            (true, false) => CarryWants::Events,
            // Either side's last key bounds what is complete: extend the lower one.
            (false, false) => match (p.last_key(), e.last_key()) {
                (None, _) => CarryWants::Previous,
                (_, None) => CarryWants::Events,
                (Some(a), Some(b)) if a <= b => CarryWants::Previous,
                _ => CarryWants::Events,
            },
        }
    }

    /// The next batch of the previous carry; None at its end.
    pub fn push_previous(&mut self, batch: Option<&RecordBatch>) -> Result<(), LakeError> {
        self.push(true, batch)
    }

    /// The next batch of the hour's merged events; None at their end.
    pub fn push_events(&mut self, batch: Option<&RecordBatch>) -> Result<(), LakeError> {
        self.push(false, batch)
    }

    fn push(&mut self, previous: bool, batch: Option<&RecordBatch>) -> Result<(), LakeError> {
        let pending = match batch {
            Some(b) if b.num_rows() > 0 => {
                let batch = conform(b, &self.schema)?;
                let cols: Vec<_> = self
                    .group_columns
                    .iter()
                    .map(|&i| batch.column(i).clone())
                    .collect();
                let keys = self.converter.convert_columns(&cols)?;
                Some(Pending {
                    batch,
                    keys,
                    start: 0,
                })
            }
            Some(_) => None,
            None => {
                let side = if previous {
                    &mut self.previous
                } else {
                    &mut self.events
                };
                side.done = true;
                None
            }
        };
        if let Some(p) = pending {
            let side = if previous {
                &mut self.previous
            } else {
                &mut self.events
            };
            side.pending.push_back(p);
        }
        self.process()
    }

    /// Carries every chunk of complete groups that is large enough (everything at the end).
    fn process(&mut self) -> Result<(), LakeError> {
        let bound: Option<OwnedRow> = match (
            (!self.previous.done).then(|| self.previous.last_key()),
            (!self.events.done).then(|| self.events.last_key()),
        ) {
            (None, None) => None,
            // A side not finished but with nothing pending: nothing is known complete.
            (Some(None), _) | (_, Some(None)) => return Ok(()),
            (Some(Some(a)), None) | (None, Some(Some(a))) => Some(a.owned()),
            (Some(Some(a)), Some(Some(b))) => Some(a.min(b).owned()),
        };
        // Rows with a key below the bound are complete: no later row of either input can
        // belong to their groups.
        let ready =
            self.previous.rows_below(bound.as_ref()) + self.events.rows_below(bound.as_ref());
        if ready == 0 || (bound.is_some() && ready < self.chunk_rows) {
            return Ok(());
        }
        let prev = self.previous.take_below(bound.as_ref(), &self.schema)?;
        let events = self.events.take_below(bound.as_ref(), &self.schema)?;
        let (rows, st) = carry(
            prev.as_ref(),
            events.as_ref(),
            self.range_start,
            self.idle_cutoff,
        )?;
        self.stats.carried += st.carried;
        self.stats.expired += st.expired;
        if rows.num_rows() > 0 {
            self.output.push_back(rows);
        }
        Ok(())
    }

    /// A batch of carried rows, in order, when one is ready.
    pub fn take_output(&mut self) -> Option<RecordBatch> {
        self.output.pop_front()
    }

    /// What the carry found so far (complete once `wants` is `Done`).
    pub fn stats(&self) -> &CarryStats {
        &self.stats
    }
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
        crate::lake::read::nat_rows(b)
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

    /// A record of a whole session over [start, end].
    fn span(start: Micros, end: Micros, inside: &str, port: u16, record: u64) -> Row {
        let mut r = nat(
            start,
            NatEventKind::MappingObserved,
            inside,
            port,
            "raw/0",
            record,
        );
        if let crate::model::Event::Nat(e) = &mut r.event {
            e.end_time = Some(end);
        }
        r
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
            // Whole-session records: D's ends within the hour, E's 10 minutes into the next.
            span(h0 + 5 * 60 * S, h0 + 10 * 60 * S, "100.64.0.5", 5000, 4),
            span(
                h0 + 50 * 60 * S,
                h0 + H + 10 * 60 * S,
                "100.64.0.6",
                6000,
                5,
            ),
        ]);
        let cutoff = h0 + H - 7 * 24 * H;
        let (c1, st) = carry(None, Some(&ev0), h0, cutoff).unwrap();
        assert_eq!(
            st,
            CarryStats {
                carried: 3,
                expired: 1
            }
        );
        assert_eq!(
            ports(&c1),
            vec![
                (1000, "session_create".into()),
                (3000, "port_block_interim".into()),
                (6000, "mapping_observed".into())
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
        // E's span ends in hour 1: it is not carried on into hour 2.
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

    /// A session seen only at its start is carried as long as lookups name it (its idle reach):
    /// F's start log 30 minutes before the hour's end is carried into the next hour and not into
    /// the one after; G's start log, followed by G's whole-session record, is not carried; H's
    /// UDP start log 10 minutes before the end is past its reach.
    #[test]
    fn a_session_seen_only_at_its_start_is_carried_while_lookups_name_it() {
        let h0 = 100 * H;
        let cutoff = h0 + H - 7 * 24 * H;
        // A sighting: no end time.
        let seen = |t, inside, port, record| {
            nat(
                t,
                NatEventKind::MappingObserved,
                inside,
                port,
                "raw/0",
                record,
            )
        };
        let mut udp = seen(h0 + 50 * 60 * S, "100.64.0.9", 9000, 3);
        if let crate::model::Event::Nat(e) = &mut udp.event {
            e.protocol = Some(17);
        }
        let ev0 = object(&[
            seen(h0 + 30 * 60 * S, "100.64.0.7", 7000, 0),
            seen(h0 + 5 * 60 * S, "100.64.0.8", 8000, 1),
            span(h0 + 5 * 60 * S, h0 + 20 * 60 * S, "100.64.0.8", 8000, 2),
            udp,
            // A record whose end is its start reads as a sighting (as objects written before
            // null end times stored them).
            span(h0 + 40 * 60 * S, h0 + 40 * 60 * S, "100.64.0.10", 10000, 4),
        ]);
        let (c1, st) = carry(None, Some(&ev0), h0, cutoff).unwrap();
        assert_eq!(
            ports(&c1),
            vec![
                (7000, "mapping_observed".into()),
                (10000, "mapping_observed".into())
            ]
        );
        assert_eq!(st.carried, 2);
        // Two hours on: 2 h 30 min after F's start log, past TCP's 2 h 4 min.
        let (c2, _) = carry(Some(&c1), None, h0 + H, cutoff + H).unwrap();
        assert_eq!(ports(&c2).len(), 2);
        let (c3, _) = carry(Some(&c2), None, h0 + 2 * H, cutoff + 2 * H).unwrap();
        assert_eq!(c3.num_rows(), 0);
    }

    /// A port block whose inside address changed hands while it was held: the carry keeps the
    /// rows of both subscribers, so a lookup in a later hour reads the change and answers
    /// ambiguous instead of naming the first subscriber plainly.
    #[test]
    fn a_change_of_subscriber_is_carried_with_the_mapping() {
        use NatEventKind::*;
        let h0 = 100 * H;
        let mut alloc = nat(h0 + 10 * S, PortBlockAlloc, "100.64.1.1", 4096, "raw/0", 0);
        alloc.envelope.subscriber = Some("sub-1".into());
        let mut interim = nat(
            h0 + 50 * 60 * S,
            PortBlockInterim,
            "100.64.1.1",
            4096,
            "raw/0",
            1,
        );
        interim.envelope.subscriber = Some("sub-2".into());
        let (c1, _) = carry(None, Some(&object(&[alloc, interim])), h0, 0).unwrap();
        let subs = c1
            .column_by_name("subscriber")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect::<Vec<_>>();
        assert_eq!(subs, [Some("sub-1".to_string()), Some("sub-2".to_string())]);
        let rows: Vec<NatRow> = nat_rows_indexed(&c1)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let a = correlate::attribute(correlate::intervals(rows, h0 + H), h0 + H + 60 * S, 2 * S);
        assert!(a.ambiguous, "{a:?}");
    }

    /// A port block allocated long ago and kept alive by interim records: the carry holds its
    /// latest interim record beside the allocation, so the idle limit counts from the interim
    /// in every later hour, not from the allocation.
    #[test]
    fn a_block_kept_alive_by_interim_records_is_carried_past_the_idle_limit() {
        use NatEventKind::*;
        let h0 = 100 * H;
        let alloc = nat(h0 + 10 * S, PortBlockAlloc, "100.64.1.1", 4096, "raw/0", 0);
        let interim = nat(
            h0 + 50 * 60 * S,
            PortBlockInterim,
            "100.64.1.1",
            4096,
            "raw/0",
            1,
        );
        let (c1, st) = carry(None, Some(&object(&[alloc, interim])), h0, 0).unwrap();
        assert_eq!((st.carried, st.expired), (1, 0));
        assert_eq!(
            ports(&c1),
            [
                (4096, "port_block_alloc".into()),
                (4096, "port_block_interim".into())
            ]
        );
        // An hour later, with an idle limit that the allocation is past but the interim is not:
        // still held.
        let cutoff = h0 + 30 * 60 * S;
        let (c2, st) = carry(Some(&c1), None, h0 + H, cutoff).unwrap();
        assert_eq!((st.carried, st.expired), (1, 0), "{st:?}");
        assert_eq!(c2.num_rows(), 2);
        // Past the interim too: expired.
        let (_, st) = carry(Some(&c2), None, h0 + 2 * H, h0 + H).unwrap();
        assert_eq!((st.carried, st.expired), (0, 1));
    }

    /// One record (an IPFIX datagram) closes a session of 100.64.1.1:40000 to one
    /// destination and opens another to a second, on the same public port: the open one's row
    /// is carried, not the closed one's.
    #[test]
    fn the_open_sessions_row_is_carried_when_one_record_holds_both() {
        use NatEventKind::*;
        let h0 = 100 * H;
        let with_dst = |mut r: Row, dst: &str| {
            if let crate::model::Event::Nat(n) = &mut r.event {
                n.dst_ip = dst.parse().ok();
            }
            r
        };
        let first = with_dst(
            nat(h0 + 10 * S, SessionCreate, "100.64.1.1", 5000, "raw/0", 0),
            "192.0.2.1",
        );
        let close = with_dst(
            nat(h0 + 20 * S, SessionDelete, "100.64.1.1", 5000, "raw/0", 1),
            "192.0.2.1",
        );
        let open = with_dst(
            nat(h0 + 20 * S, SessionCreate, "100.64.1.1", 5000, "raw/0", 1),
            "192.0.2.2",
        );
        let (c1, st) = carry(None, Some(&object(&[first, close, open])), h0, 0).unwrap();
        assert_eq!(st.carried, 1);
        let rows: Vec<NatRow> = nat_rows_indexed(&c1)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0].event, rows[0].dst_ip),
            (SessionCreate, "192.0.2.2".parse().ok())
        );
    }

    /// Feeds `previous` and `events` to a [`CarryBuilder`] in slices of `step` rows.
    fn streamed_carry(
        previous: &RecordBatch,
        events: &RecordBatch,
        range_start: Micros,
        idle_cutoff: Micros,
        step: usize,
        chunk: usize,
    ) -> (RecordBatch, CarryStats) {
        let mut b = CarryBuilder::new(range_start, idle_cutoff, chunk).unwrap();
        let (mut p, mut e) = (0, 0);
        let mut out = Vec::new();
        loop {
            match b.wants() {
                CarryWants::Previous => {
                    let n = step.min(previous.num_rows() - p);
                    b.push_previous((n > 0).then(|| previous.slice(p, n)).as_ref())
                        .unwrap();
                    p += n;
                }
                CarryWants::Events => {
                    let n = step.min(events.num_rows() - e);
                    b.push_events((n > 0).then(|| events.slice(e, n)).as_ref())
                        .unwrap();
                    e += n;
                }
                CarryWants::Done => break,
            }
            out.extend(std::iter::from_fn(|| b.take_output()));
        }
        let schema = table_schema(Table::NatCarry);
        (concat_batches(&schema, &out).unwrap(), b.stats().clone())
    }

    #[test]
    fn streamed_carry_equals_the_whole_carry() {
        use NatEventKind::*;
        let h0 = 100 * H;
        let cutoff = h0 + H - 7 * 24 * H;
        // The previous carry: mappings opened in earlier hours on many ports, one long idle.
        let mut prev_rows = Vec::new();
        for i in 0..200u16 {
            let t = if i % 50 == 0 {
                h0 - 9 * 24 * H
            } else {
                h0 - H + i64::from(i) * S
            };
            prev_rows.push(nat(
                t,
                SessionCreate,
                "100.64.1.1",
                1000 + i * 5,
                "raw/prev",
                u64::from(i),
            ));
        }
        // The hour: some carried mappings close, new ones open and close, repeated creates,
        // interim records for mappings whose start is unknown, several per port.
        let mut rows = Vec::new();
        for i in 0..900u16 {
            let port = 1000 + (i * 37) % 300;
            let t = h0 + i64::from(i) * 3 * S;
            let kind = match i % 5 {
                0 | 3 => SessionCreate,
                1 | 4 => SessionDelete,
                _ => PortBlockInterim,
            };
            let inside = format!("100.64.{}.{}", i % 3, i % 7);
            rows.push(nat(
                t,
                kind,
                &inside,
                port,
                &format!("raw/{}", i % 4),
                u64::from(i),
            ));
        }
        let previous = merge(Table::NatCarry, &[object(&prev_rows)]).unwrap();
        let events = merge(Table::NatEvents, &[object(&rows)]).unwrap();
        let (want, want_stats) = carry(Some(&previous), Some(&events), h0, cutoff).unwrap();
        assert!(
            want.num_rows() > 50 && want_stats.expired > 0,
            "{want_stats:?}"
        );
        for (step, chunk) in [(1, 1), (7, 3), (64, 100), (5000, 8192)] {
            let (got, stats) = streamed_carry(&previous, &events, h0, cutoff, step, chunk);
            assert_eq!(stats, want_stats, "step {step} chunk {chunk}");
            assert_eq!(got, want, "step {step} chunk {chunk}");
        }
        // Only one of the inputs.
        let empty = previous.slice(0, 0);
        let (want, st) = carry(Some(&previous), None, h0, cutoff).unwrap();
        let (got, st2) = streamed_carry(&previous, &empty, h0, cutoff, 13, 10);
        assert_eq!((got, st2), (want, st));
        let (want, st) = carry(None, Some(&events), h0, cutoff).unwrap();
        let (got, st2) = streamed_carry(&empty, &events, h0, cutoff, 13, 10);
        assert_eq!((got, st2), (want, st));
    }
}
