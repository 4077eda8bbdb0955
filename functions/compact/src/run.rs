//! The handler: one run over the lake.
//!
//! For every finished hour that needs it, oldest first:
//! 1. each partition's small objects (one per raw object) are merged into `compacted.parquet`,
//!    sorted for lookups, copies of a row removed; the small objects are deleted after the merged
//!    object is published, so a reader sees the rows at least once at every moment (readers
//!    remove copies by provenance);
//! 2. the NAT mappings still open at the end of the hour are carried into the next hour's
//!    `nat_carry` partition: the carry of the hour plus the hour's events give the next carry;
//! 3. a marker `_state/carry/hour=<next>.json` says the carry into the next hour is complete.
//!    A lookup trusts a carry only when its marker exists.
//!
//! An hour is worked on when its marker is missing or it holds small objects (late data); work on
//! an hour makes every later hour's carry stale, so the run continues hour by hour to the last
//! finished one. A run does at most `max_hours` hours; the next run resumes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::TryStreamExt;
use natlake_core::lake::compact::{self, CarryStats};
use natlake_core::lake::layout;
use natlake_core::lake::read::parquet_batches;
use natlake_core::lake::writer::{LakeError, WriteOptions, encode_batch};
use natlake_core::model::{Micros, Table};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

/// Name of the merged object of a partition.
pub const COMPACTED: &str = "compacted.parquet";
/// Name of a carry object.
pub const CARRY: &str = "carry.parquet";
/// Where objects that cannot be read are copied, with the reason, before they are set aside.
pub const QUARANTINE_DIR: &str = "_state/quarantine/";

const HOUR: Micros = 3_600_000_000;

/// Tables whose hours are compacted.
const COMPACTED_TABLES: [Table; 7] = [
    Table::NatEvents,
    Table::Flows,
    Table::Firewall,
    Table::Rejects,
    Table::HttpAccess,
    Table::Mail,
    Table::Auth,
];

#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// How long after an hour ends before it counts as finished (late batches from relays).
    pub grace: Micros,
    /// A mapping with no event for this long is not carried (a lost delete must not keep it
    /// open for ever).
    pub max_idle: Micros,
    /// Hours worked on per run at most; the next run resumes.
    pub max_hours: usize,
    /// Late data is looked for (small objects in compacted hours) this far back.
    pub rescan: Micros,
    pub write: WriteOptions,
}

impl Default for CompactConfig {
    fn default() -> Self {
        Self {
            grace: 10 * 60 * 1_000_000,
            max_idle: 7 * 24 * HOUR,
            max_hours: 48,
            rescan: 48 * HOUR,
            write: WriteOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{key}: {source}")]
    Object { key: String, source: LakeError },
    #[error("{0}")]
    Lake(#[from] LakeError),
    #[error("encoding marker: {0}")]
    Json(#[from] serde_json::Error),
}

/// What one hour's work did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HourReport {
    pub hour: String,
    /// Partitions merged into one object.
    pub partitions_compacted: usize,
    /// Small objects merged (and deleted).
    pub objects_merged: usize,
    pub rows_written: usize,
    /// Mappings carried into the next hour, and open ones dropped for idling too long.
    pub carried: usize,
    pub expired: usize,
    /// Objects that could not be read: copied to `_state/quarantine/` and set aside.
    pub quarantined: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub hours: Vec<HourReport>,
    /// Finished hours still needing work after this run (max_hours reached).
    pub remaining: usize,
}

/// Hours (epoch seconds) that have a directory under `lake/<table>/`.
async fn table_hours(store: &dyn ObjectStore, table: Table) -> Result<BTreeSet<i64>, CompactError> {
    let dir = Path::from(layout::table_dir(table).as_str());
    let listing = store.list_with_delimiter(Some(&dir)).await?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename())
        .filter_map(|f| f.strip_prefix("hour="))
        .filter_map(layout::parse_hour_label)
        .collect())
}

async fn markers(store: &dyn ObjectStore) -> Result<BTreeSet<i64>, CompactError> {
    let dir = Path::from(layout::CARRY_MARKER_DIR);
    let metas: Vec<ObjectMeta> = store.list(Some(&dir)).try_collect().await?;
    Ok(metas
        .iter()
        .filter_map(|m| m.location.filename())
        .filter_map(|f| f.strip_prefix("hour=")?.strip_suffix(".json"))
        .filter_map(layout::parse_hour_label)
        .collect())
}

/// The objects of one hour of a table, by partition directory.
async fn hour_partitions(
    store: &dyn ObjectStore,
    table: Table,
    hour: i64,
) -> Result<BTreeMap<String, Vec<ObjectMeta>>, CompactError> {
    let dir = Path::from(layout::hour_dir(table, hour).as_str());
    let metas: Vec<ObjectMeta> = store.list(Some(&dir)).try_collect().await?;
    let mut parts: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for m in metas {
        let key = m.location.as_ref();
        if !key.ends_with(".parquet") {
            continue;
        }
        let parent = key
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or("")
            .to_owned();
        parts.entry(parent).or_default().push(m);
    }
    Ok(parts)
}

fn is_small(meta: &ObjectMeta) -> bool {
    meta.location.filename() != Some(COMPACTED)
}

/// Reads objects; one that cannot be read is copied to quarantine with the reason and left out.
async fn read_objects(
    store: &dyn ObjectStore,
    metas: &[ObjectMeta],
    report: &mut HourReport,
) -> Result<(Vec<RecordBatch>, Vec<ObjectMeta>), CompactError> {
    let mut batches = Vec::new();
    let mut read = Vec::new();
    for m in metas {
        let bytes = store.get(&m.location).await?.bytes().await?;
        match parquet_batches(bytes.clone()) {
            Ok(b) => {
                batches.extend(b);
                read.push(m.clone());
            }
            Err(e) => {
                quarantine(store, m, bytes, &e.to_string()).await?;
                report.quarantined.push(m.location.to_string());
            }
        }
    }
    Ok((batches, read))
}

async fn quarantine(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    bytes: Bytes,
    reason: &str,
) -> Result<(), CompactError> {
    tracing::error!(key = %meta.location, reason, "unreadable lake object quarantined");
    metrics::counter!("natlake_compact_quarantined_total").increment(1);
    let base = format!("{QUARANTINE_DIR}{}", meta.location);
    store
        .put(&Path::from(base.as_str()), PutPayload::from_bytes(bytes))
        .await?;
    let why = serde_json::json!({ "key": meta.location.as_ref(), "reason": reason });
    store
        .put(
            &Path::from(format!("{base}.reason.json").as_str()),
            PutPayload::from(serde_json::to_vec(&why)?),
        )
        .await?;
    // Set aside, not kept in the lake: a reader would fail on it at every lookup. Its rows are
    // still in the raw object it came from; re-normalizing restores them.
    store.delete(&meta.location).await?;
    Ok(())
}

/// Merges a partition's objects into `compacted.parquet` (when there is anything to merge) and
/// returns the partition's rows.
async fn compact_partition(
    store: &dyn ObjectStore,
    table: Table,
    dir: &str,
    metas: &[ObjectMeta],
    cfg: &CompactConfig,
    report: &mut HourReport,
) -> Result<Option<RecordBatch>, CompactError> {
    let (batches, read) = read_objects(store, metas, report).await?;
    let merged = compact::merge(table, &batches).map_err(|source| CompactError::Object {
        key: dir.to_owned(),
        source,
    })?;
    let smalls: Vec<&ObjectMeta> = read.iter().filter(|m| is_small(m)).collect();
    if !smalls.is_empty() {
        let key = Path::from(format!("{dir}/{COMPACTED}").as_str());
        if merged.num_rows() > 0 {
            let bytes = encode_batch(table, &merged, &cfg.write)?;
            store.put(&key, PutPayload::from_bytes(bytes)).await?;
        }
        for m in &smalls {
            store.delete(&m.location).await?;
        }
        report.partitions_compacted += 1;
        report.objects_merged += smalls.len();
        report.rows_written += merged.num_rows();
        metrics::counter!("natlake_compact_objects_merged_total", "table" => table.as_str())
            .increment(smalls.len() as u64);
    }
    Ok(Some(merged).filter(|b| b.num_rows() > 0))
}

/// `x_net=…` of a partition directory.
fn net_of(dir: &str) -> Option<&str> {
    dir.rsplit('/')
        .next()?
        .strip_prefix(&format!("{}=", layout::NET_KEY))
}

/// Works on one hour: compaction of every table, then the carry into the next hour.
async fn work_hour(
    store: &dyn ObjectStore,
    hour: i64,
    cfg: &CompactConfig,
) -> Result<HourReport, CompactError> {
    let mut report = HourReport {
        hour: layout::hour_label(hour * 1_000_000),
        ..Default::default()
    };
    let mut nat: BTreeMap<String, RecordBatch> = BTreeMap::new();
    for table in COMPACTED_TABLES {
        for (dir, metas) in hour_partitions(store, table, hour).await? {
            let rows = compact_partition(store, table, &dir, &metas, cfg, &mut report).await?;
            if let (Table::NatEvents, Some(rows), Some(net)) = (table, rows, net_of(&dir)) {
                nat.insert(net.to_owned(), rows);
            }
        }
    }

    // Carry: previous carry (into this hour) + this hour's events → carry into the next hour.
    let next = hour + 3600;
    let mut previous: BTreeMap<String, RecordBatch> = BTreeMap::new();
    for (dir, metas) in hour_partitions(store, Table::NatCarry, hour).await? {
        let (batches, _) = read_objects(store, &metas, &mut report).await?;
        if let Some(net) = net_of(&dir) {
            previous.insert(net.to_owned(), compact::merge(Table::NatCarry, &batches)?);
        }
    }
    let stale = hour_partitions(store, Table::NatCarry, next).await?;
    let nets: BTreeSet<&String> = nat.keys().chain(previous.keys()).collect();
    let range_start = hour * 1_000_000;
    let idle_cutoff = (next * 1_000_000) - cfg.max_idle;
    let mut written = BTreeSet::new();
    for net in nets {
        let (rows, CarryStats { carried, expired }) =
            compact::carry(previous.get(net), nat.get(net), range_start, idle_cutoff)?;
        report.carried += carried;
        report.expired += expired;
        if rows.num_rows() == 0 {
            continue;
        }
        let dir = format!(
            "{}{}={net}",
            layout::hour_dir(Table::NatCarry, next),
            layout::NET_KEY
        );
        let bytes = encode_batch(Table::NatCarry, &rows, &cfg.write)?;
        store
            .put(
                &Path::from(format!("{dir}/{CARRY}").as_str()),
                PutPayload::from_bytes(bytes),
            )
            .await?;
        written.insert(dir);
    }
    // A carry computed earlier from data since rewritten must not survive.
    for (dir, metas) in stale {
        if !written.contains(&dir) {
            for m in metas {
                store.delete(&m.location).await?;
            }
        }
    }
    let marker = serde_json::json!({
        "hour": layout::hour_label(next * 1_000_000),
        "from": &report,
        "computed_at": natlake_core::time::format_time(natlake_core::time::now_micros()),
    });
    store
        .put(
            &Path::from(layout::carry_marker_key(next).as_str()),
            PutPayload::from(serde_json::to_vec_pretty(&marker)?),
        )
        .await?;
    metrics::counter!("natlake_compact_hours_total").increment(1);
    metrics::gauge!("natlake_compact_carried").set(report.carried as f64);
    Ok(report)
}

/// One run: every finished hour that needs work, oldest first, at most `cfg.max_hours`.
pub async fn run(
    store: &Arc<dyn ObjectStore>,
    cfg: &CompactConfig,
    now: Micros,
) -> Result<Report, CompactError> {
    let store = store.as_ref();
    let mut hours = BTreeSet::new();
    for t in COMPACTED_TABLES {
        hours.extend(table_hours(store, t).await?);
    }
    let last_finished = layout::hour_start(now - cfg.grace) - 3600;
    let Some(&first) = hours.first() else {
        return Ok(Report::default());
    };
    if first > last_finished {
        return Ok(Report::default());
    }
    let done = markers(store).await?;
    let recent = layout::hour_start(now - cfg.rescan);
    let mut start = None;
    for h in (first..=last_finished).step_by(3600) {
        let mut dirty = !done.contains(&(h + 3600));
        if !dirty && h >= recent && hours.contains(&h) {
            for t in COMPACTED_TABLES {
                let parts = hour_partitions(store, t, h).await?;
                if parts.values().flatten().any(is_small) {
                    dirty = true;
                    break;
                }
            }
        }
        if dirty {
            start = Some(h);
            break;
        }
    }
    let Some(start) = start else {
        return Ok(Report::default());
    };
    if start == first && !done.contains(&first) {
        // Nothing lies before the lake's first hour: its carry is empty and complete. Marking
        // it lets lookups in that hour read one hour instead of the whole lookback.
        let marker = serde_json::json!({
            "hour": layout::hour_label(first * 1_000_000),
            "first_hour": true,
            "computed_at": natlake_core::time::format_time(natlake_core::time::now_micros()),
        });
        store
            .put(
                &Path::from(layout::carry_marker_key(first).as_str()),
                PutPayload::from(serde_json::to_vec_pretty(&marker)?),
            )
            .await?;
    }
    let todo: Vec<i64> = (start..=last_finished).step_by(3600).collect();
    let mut report = Report::default();
    for &h in todo.iter().take(cfg.max_hours.max(1)) {
        let r = work_hour(store, h, cfg).await?;
        tracing::info!(hour = %r.hour, merged = r.objects_merged, carried = r.carried, expired = r.expired, "hour compacted");
        report.hours.push(r);
    }
    report.remaining = todo.len().saturating_sub(report.hours.len());
    Ok(report)
}
