//! The handler: one run over the lake.
//!
//! For every finished hour that needs it, oldest first:
//! 1. each partition's small objects (one per raw object) are merged into `compacted.parquet`,
//!    sorted for lookups, copies of a row removed; the small objects are deleted after the merged
//!    object is published, so a reader sees the rows at least once at every moment (readers
//!    remove copies by provenance). The merge streams in bounded memory: the small objects and
//!    the previous `compacted.parquet` are merged a batch at a time
//!    (`natlake_core::lake::merge`) and written a row group at a time through a multipart upload
//!    completed only at the end (`natlake_core::lake::sink`). Small objects that do not declare
//!    the lake order (written by older versions) or turn out not to be in it are first sorted
//!    into a local run;
//! 2. the NAT mappings still open at the end of the hour are carried into the next hour's
//!    `nat_carry` partition: the carry of the hour plus the hour's events give the next carry,
//!    computed in the same pass over the merged events (`CarryBuilder`);
//! 3. a marker `_state/carry/hour=<next>.json` says the carry into the next hour is complete.
//!    A lookup trusts a carry only when its marker exists.
//!
//! An hour is worked on when its marker is missing or it holds small objects (late data); work on
//! an hour makes every later hour's carry stale, so the run continues hour by hour to the last
//! finished one. A run does at most `max_hours` hours; the next run resumes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use natlake_core::lake::compact::{CarryBuilder, CarryStats, CarryWants};
use natlake_core::lake::merge::{
    MergeBudget, MergeError, MergeInput, SortedMerge, is_store_error, spill_merged, spill_sorted,
};
use natlake_core::lake::sink::ParquetSink;
use natlake_core::lake::writer::{LakeError, WriteOptions};
use natlake_core::lake::{late, layout, state};
use natlake_core::model::{Micros, Table};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::digest::{self, RowDigest};

pub use natlake_core::lake::layout::{CARRY, COMPACTED};
/// Where objects that cannot be read are copied, with the reason, before they are set aside.
pub use natlake_core::lake::state::QUARANTINE_DIR;

const HOUR: Micros = 3_600_000_000;

/// Decoded bytes per row assumed when sizing the sorted runs' row groups (a `nat_events` row
/// decodes to ~300–500 bytes).
const RUN_ROW_BYTES: usize = 512;

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
    /// Memory for the merge's input batches; a partition of any size is merged within it
    /// (plus one row group being written and the upload's part buffer).
    pub merge: MergeBudget,
    /// Where a partition merged in groups puts its sorted runs (None: `$TMPDIR`); it needs
    /// about twice the partition's uncompacted bytes, checked before each such partition.
    pub spill_dir: Option<std::path::PathBuf>,
}

impl Default for CompactConfig {
    fn default() -> Self {
        let write = WriteOptions::default();
        let merge = merge_budget_for(&write);
        Self {
            grace: 10 * 60 * 1_000_000,
            max_idle: 7 * 24 * HOUR,
            max_hours: 48,
            rescan: 48 * HOUR,
            write,
            merge,
            spill_dir: None,
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
    /// Not enough local disk for a partition's sorted runs: checked before the work starts,
    /// so the pass stops with the reason instead of failing part-way on a full disk.
    #[error(
        "{partition}: merging {objects} objects ({input_bytes} bytes) in groups needs up to \
         {need_bytes} bytes of local disk for sorted runs, {dir} has {free_bytes} free; \
         compaction stops at this hour until there is room: point --spill-dir (or TMPDIR) at a \
         larger disk or raise the Lambda's ephemeral storage (compact.ephemeral_mb)"
    )]
    SpillSpace {
        partition: String,
        objects: usize,
        input_bytes: u64,
        need_bytes: u64,
        dir: String,
        free_bytes: u64,
    },
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
    /// Small objects not in the lake order (written before it, or found out of order while
    /// merged) that were sorted into a local run first; the others were merged as they are.
    pub objects_spilled: usize,
    /// Local sorted runs written by merging groups of objects, or of such runs (partitions
    /// with more objects than the merge's fan-in).
    pub runs_merged: usize,
    /// Mappings carried into the next hour, and open ones dropped for idling too long.
    pub carried: usize,
    pub expired: usize,
    /// Digest of the carry written into the next hour (`digest`), so a later run can tell
    /// whether recomputing this hour changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carry_digest: Option<String>,
    /// The carry came out as the marker said it was: later hours need no work for this one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub carry_unchanged: bool,
    /// Objects that could not be read: copied to `_state/quarantine/` and set aside.
    pub quarantined: Vec<String>,
    /// Objects quarantined earlier whose key a new object took (its raw object normalized
    /// again) and that merged: their quarantine entries are removed, so lookups stop reporting
    /// the rows as missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub hours: Vec<HourReport>,
    /// Finished hours from the one this run stopped at (max_hours reached) through the last:
    /// an upper bound of the work left, as an unchanged carry may cut it short.
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

/// The carry digest a marker recorded, if the marker exists and has one (markers written
/// before digests were recorded have none: the carry then counts as changed).
async fn recorded_digest(
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<Option<String>, CompactError> {
    let bytes = match store.get(key).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // An unreadable marker is not an error here: the hour is simply recomputed onwards.
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(v.pointer("/from/carry_digest")
        .and_then(|d| d.as_str())
        .map(str::to_owned))
}

/// What the run knows at its start about which hours need work.
struct Dirt {
    /// Hours whose carry into the next hour has a marker.
    done: BTreeSet<i64>,
    /// Hours late objects landed in.
    late: BTreeSet<i64>,
    /// Hours with a directory in some table.
    hours: BTreeSet<i64>,
    /// Hours from here on are also checked for small objects (the rescan).
    recent: i64,
}

impl Dirt {
    /// Whether hour `h` needs work for its own sake: its carry is missing, late objects landed
    /// in it, or (recent hours) it holds small objects.
    async fn is_dirty(&self, store: &dyn ObjectStore, h: i64) -> Result<bool, CompactError> {
        if !self.done.contains(&(h + 3600)) || self.late.contains(&h) {
            return Ok(true);
        }
        if h >= self.recent && self.hours.contains(&h) {
            for t in COMPACTED_TABLES {
                let parts = hour_partitions(store, t, h).await?;
                if parts.values().flatten().any(is_small) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The first hour in `from..=to` that needs work.
    async fn first_dirty(
        &self,
        store: &dyn ObjectStore,
        from: i64,
        to: i64,
    ) -> Result<Option<i64>, CompactError> {
        for h in (from..=to).step_by(3600) {
            if self.is_dirty(store, h).await? {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }
}

fn is_small(meta: &ObjectMeta) -> bool {
    meta.location.filename() != Some(COMPACTED)
}

/// Objects compaction wrote itself, in the merge order whatever version wrote them: streamed
/// from the store as they are, never spilled (they can be any size).
fn written_by_compaction(meta: &ObjectMeta) -> bool {
    matches!(meta.location.filename(), Some(COMPACTED) | Some(CARRY))
}

/// Where sorted runs of one pass over a partition go: a local temporary directory (in `parent`,
/// else `$TMPDIR`), made when the first run is (most partitions need none) and deleted with the
/// pass.
struct Spill {
    parent: Option<std::path::PathBuf>,
    dir: Option<(Arc<dyn ObjectStore>, tempfile::TempDir)>,
}

/// Local disk a grouped merge of `metas` needs at its peak. Runs are LZ4 without dictionaries,
/// bigger than what they merge: one busy hour's largest partition (60 LZ4 objects, 60.8 MB)
/// peaked at 78.3 MB of runs (1.29×). Small objects count twice their size (zstd ones, with
/// `NATLAKE_ZSTD_LEVEL`, are ~1/3 smaller for the same rows); objects compaction wrote (zstd,
/// dictionaries, 21.6 B per NAT event against a run's ~51) three times. With more than
/// fan-in² objects the runs are merged again, and a group's run is written before the runs it
/// merges are deleted: up to twice the first level's runs.
fn spill_need(metas: &[ObjectMeta], fan_in: usize) -> u64 {
    let runs = metas.iter().fold(0u64, |sum, m| {
        let per_byte = if written_by_compaction(m) { 3 } else { 2 };
        sum.saturating_add(m.size.saturating_mul(per_byte))
    });
    if metas.len() > fan_in.saturating_mul(fan_in) {
        runs.saturating_mul(2)
    } else {
        runs
    }
}

impl Spill {
    /// Stops before a grouped merge of `metas` whose runs would not fit on the disk of the
    /// spill directory.
    fn ensure_room(&mut self, metas: &[ObjectMeta], fan_in: usize) -> Result<(), CompactError> {
        self.store()?;
        let Some((_, dir)) = &self.dir else {
            return Ok(());
        };
        let need_bytes = spill_need(metas, fan_in);
        let partition = metas.first().map_or("", |m| {
            m.location
                .as_ref()
                .rsplit_once('/')
                .map_or("", |(dir, _)| dir)
        });
        // A file system that cannot say is not refused: the write fails clearly if it is full.
        let Ok(st) = rustix::fs::statvfs(dir.path()) else {
            return Ok(());
        };
        let free_bytes = st.f_bavail.saturating_mul(st.f_frsize);
        if free_bytes >= need_bytes {
            return Ok(());
        }
        Err(CompactError::SpillSpace {
            partition: partition.to_owned(),
            objects: metas.len(),
            input_bytes: metas.iter().map(|m| m.size).sum(),
            need_bytes,
            dir: dir.path().display().to_string(),
            free_bytes,
        })
    }

    fn store(&mut self) -> Result<Arc<dyn ObjectStore>, CompactError> {
        if let Some((store, _)) = &self.dir {
            return Ok(store.clone());
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("natlake-compact-");
        let made = match &self.parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        };
        let dir = made.map_err(|e| {
            CompactError::Lake(LakeError::Store(object_store::Error::Generic {
                store: "spill",
                source: Box::new(e),
            }))
        })?;
        let store: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path())?,
        );
        self.dir = Some((store.clone(), dir));
        Ok(store)
    }
}

/// The merge's inputs of one pass and the objects they read.
#[derive(Default)]
struct Inputs {
    inputs: Vec<MergeInput>,
    /// The objects still in the merge (unreadable ones quarantined), in listing order.
    metas: Vec<ObjectMeta>,
    /// Per input: the object it reads (an index into `metas`), or None for a run merged from
    /// several objects.
    objects: Vec<Option<usize>>,
    /// Per input: whether it is a local sorted run (of one object or of several).
    spilled: Vec<bool>,
    /// Objects sorted into a local run of their own (not in the lake order).
    objects_spilled: usize,
    /// Runs merged from groups (of objects, then of runs).
    runs_merged: usize,
}

impl Inputs {
    /// The object input `index` reads (an index into `metas`), and whether it is a local run.
    fn origin(&self, index: usize) -> (Option<usize>, bool) {
        (
            self.objects.get(index).copied().flatten(),
            self.spilled.get(index).copied().unwrap_or(true),
        )
    }
}

/// Most rows in one merged batch, whatever the row-group size: a batch is held decoded (with
/// the input batches it still references), so `NATLAKE_ROW_GROUP_ROWS` set to a million must
/// not make it a million rows.
const MAX_OUTPUT_ROWS: usize = 65_536;

/// The merge's default budget for outputs written with `write`: merged batches as long as the
/// output's row groups (up to [`MAX_OUTPUT_ROWS`]), so each row group is encoded from one batch
/// as it is, where concatenating several copied every column once more (~4 % of the 3-hour
/// day's compaction instructions).
fn merge_budget_for(write: &WriteOptions) -> MergeBudget {
    MergeBudget {
        output_rows: write.row_group_rows.clamp(1, MAX_OUTPUT_ROWS),
        ..MergeBudget::default()
    }
}

/// Most objects merged at once when they are small (below): each open input holds its footer
/// and reader state beyond the batch budget. 180 of normalize's ~20 KB objects open together
/// peaked at 151 MB RSS (72 MB in groups of 16, 107 MB with a 16 MiB budget).
const SMALL_FAN_IN_MAX: usize = 256;

/// Inputs merged at once for `metas`: all of them when the objects are small, together no more
/// than an eighth of the merge budget (8 MiB of the default 64) and at most
/// [`SMALL_FAN_IN_MAX`], else the budget's fan-in. A quiet hour's partition holds one small
/// object per raw object (60 of ~20 KB on the benchmark's day); merging them in groups wrote
/// and read every row once more in the local runs, 28 % of compaction's instructions on that day. The
/// budget still bounds their decoded batches; a busy CGNAT's objects (~1 MB each) stay grouped.
fn fan_in_for(metas: &[ObjectMeta], budget: MergeBudget) -> usize {
    let fan_in = budget.fan_in.max(2);
    let bytes = metas.iter().fold(0u64, |sum, m| sum.saturating_add(m.size));
    let small = (budget.input_bytes / 8) as u64;
    if metas.len() <= SMALL_FAN_IN_MAX && bytes <= small {
        fan_in.max(metas.len())
    } else {
        fan_in
    }
}

/// The merge's inputs for `metas`. Up to `fan_in` objects are opened as they are
/// ([`open_objects`]); more are merged `fan_in` at a time into local sorted runs, and the runs
/// again until at most `fan_in` are left, so memory stays within the budget whatever the number
/// of objects. Groups keep the listing order and the merge keeps the first of equal rows by
/// input order, so the result is that of one merge over all the objects.
#[allow(clippy::too_many_arguments)]
async fn open_inputs(
    store: &Arc<dyn ObjectStore>,
    spill: &mut Spill,
    name: &str,
    table: Table,
    metas: &[ObjectMeta],
    resort: &mut HashSet<Path>,
    budget: MergeBudget,
    report: &mut HourReport,
) -> Result<Inputs, CompactError> {
    let fan_in = fan_in_for(metas, budget);
    // Run row groups are what the merge reads of each input at a time.
    let run_rows = budget.batch_rows(metas.len().min(fan_in), RUN_ROW_BYTES);
    if metas.len() <= fan_in {
        return open_objects(store, spill, name, table, metas, resort, run_rows, report).await;
    }
    spill.ensure_room(metas, fan_in)?;
    let mut out = Inputs::default();
    let mut runs = Vec::new();
    for (g, group) in metas.chunks(fan_in).enumerate() {
        let mut group = group.to_vec();
        let (run, objects_spilled) = loop {
            let mut opened = open_objects(
                store,
                spill,
                &format!("{name}{g}"),
                table,
                &group,
                resort,
                run_rows,
                report,
            )
            .await?;
            group = std::mem::take(&mut opened.metas);
            let path = Path::from(format!("{name}{g}-run.parquet"));
            let inputs = std::mem::take(&mut opened.inputs);
            let merged = match SortedMerge::new(table, inputs, budget).await {
                Ok(merge) => spill_merged(&spill.store()?, &path, merge, run_rows).await,
                Err(e) => Err(e),
            };
            match merged {
                Ok(run) => break (run, opened.objects_spilled),
                Err(e) => match merge_failure(e, false) {
                    Failure::Input { index, fault, .. } => {
                        let origin = opened.origin(index);
                        set_aside(store, &mut group, origin, fault, resort, report).await?;
                    }
                    Failure::Other(e) => return Err(e),
                },
            }
        };
        // The group's one-object runs are in its run now: free their disk.
        if objects_spilled > 0 {
            let spill_store = spill.store()?;
            for i in 0..fan_in {
                let path = Path::from(format!("{name}{g}-{i}.parquet"));
                match spill_store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        out.objects_spilled += objects_spilled;
        out.metas.extend(group);
        runs.push(run);
        out.runs_merged += 1;
    }
    let spill_store = spill.store()?;
    let mut level = 1;
    while runs.len() > fan_in {
        let mut next = Vec::new();
        for (g, group) in runs.chunks(fan_in).enumerate() {
            let mut inputs = Vec::with_capacity(group.len());
            for r in group {
                inputs.push(MergeInput::open(spill_store.clone(), r).await?);
            }
            let path = Path::from(format!("{name}-l{level}-{g}-run.parquet"));
            let merge = SortedMerge::new(table, inputs, budget)
                .await
                .map_err(run_error)?;
            next.push(
                spill_merged(&spill_store, &path, merge, run_rows)
                    .await
                    .map_err(run_error)?,
            );
            for r in group {
                spill_store.delete(&r.location).await?;
            }
            out.runs_merged += 1;
        }
        runs = next;
        level += 1;
    }
    for r in &runs {
        out.inputs
            .push(MergeInput::open(spill_store.clone(), r).await?);
        out.objects.push(None);
        out.spilled.push(true);
    }
    Ok(out)
}

/// A run this pass wrote itself that cannot be merged: local trouble (disk), not an object's.
fn run_error(e: MergeError) -> CompactError {
    match e {
        MergeError::Input { source, .. } | MergeError::Lake(source) => CompactError::Lake(source),
        MergeError::Unsorted { .. } => CompactError::Lake(LakeError::Schema(e.to_string())),
    }
}

/// Opens the objects of a partition for the merge: objects in the lake order are read as they
/// are; other small objects (written before the order marker, or in `resort`: found out of
/// order by an earlier pass) are sorted into a local run first. One that cannot be read is
/// quarantined and left out.
#[allow(clippy::too_many_arguments)]
async fn open_objects(
    store: &Arc<dyn ObjectStore>,
    spill: &mut Spill,
    name: &str,
    table: Table,
    metas: &[ObjectMeta],
    resort: &HashSet<Path>,
    run_rows: usize,
    report: &mut HourReport,
) -> Result<Inputs, CompactError> {
    let mut out = Inputs::default();
    for (i, m) in metas.iter().enumerate() {
        // The footer says whether the object is in the lake order.
        let mut opened = MergeInput::open(store.clone(), m).await;
        let mut spilled = false;
        if let Ok(input) = &opened
            && !written_by_compaction(m)
            && (!input.declares_lake_order() || resort.contains(&m.location))
        {
            // Store errors (transient, or the object vanished) fail the run: retried later.
            let bytes = store.get(&m.location).await?.bytes().await?;
            let path = Path::from(format!("{name}-{i}.parquet"));
            let spill = spill.store()?;
            opened = match spill_sorted(&spill, &path, table, bytes, run_rows).await {
                Ok(run) => MergeInput::open(spill, &run).await,
                Err(e) => Err(e),
            };
            spilled = true;
        }
        match opened {
            Ok(input) => {
                out.inputs.push(input);
                out.objects.push(Some(out.metas.len()));
                out.metas.push(m.clone());
                out.spilled.push(spilled);
                out.objects_spilled += usize::from(spilled);
            }
            Err(e) if is_store_error(&e) => {
                return Err(CompactError::Object {
                    key: m.location.to_string(),
                    source: e,
                });
            }
            Err(e) => {
                quarantine(store.as_ref(), m, &e.to_string()).await?;
                report.quarantined.push(m.location.to_string());
            }
        }
    }
    Ok(out)
}

/// After an input failed (`object`: the index in `metas` of the object it reads, if one;
/// `spilled`: it is a local run): the object is quarantined and removed from
/// `metas` (unreadable), or marked to be sorted from now on (it declared the lake order and is
/// not in it); either way the caller merges again. A failure no retry cures (a run this pass
/// wrote, a compaction output out of order) stops the partition.
async fn set_aside(
    store: &Arc<dyn ObjectStore>,
    metas: &mut Vec<ObjectMeta>,
    (object, spilled): (Option<usize>, bool),
    fault: InputFault,
    resort: &mut HashSet<Path>,
    report: &mut HourReport,
) -> Result<(), CompactError> {
    match (fault, object) {
        // A local run that cannot be read back is local trouble (the object was read whole to
        // make it), not the object's: it falls through to the error below.
        (InputFault::Unreadable(e), Some(j)) if j < metas.len() && !spilled => {
            let m = metas.remove(j);
            quarantine(store.as_ref(), &m, &e.to_string()).await?;
            report.quarantined.push(m.location.to_string());
            Ok(())
        }
        (InputFault::Unreadable(e), _) => Err(CompactError::Lake(e)),
        (InputFault::Unsorted(message), Some(j)) if j < metas.len() => {
            let m = &metas[j];
            // A compaction output, or a run this pass sorted itself, out of order is a bug no
            // retry cures: stop rather than write rows in the wrong place.
            if written_by_compaction(m) || spilled || !resort.insert(m.location.clone()) {
                return Err(CompactError::Object {
                    key: m.location.to_string(),
                    source: LakeError::Schema(message),
                });
            }
            tracing::warn!(key = %m.location, %message, "object declares the lake order but is not in it: sorting it and merging the partition again");
            metrics::counter!("natlake_compact_unsorted_objects_total").increment(1);
            Ok(())
        }
        (InputFault::Unsorted(message), _) => Err(CompactError::Lake(LakeError::Schema(message))),
    }
}

async fn quarantine(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    reason: &str,
) -> Result<(), CompactError> {
    tracing::error!(key = %meta.location, reason, "unreadable lake object quarantined");
    metrics::counter!("natlake_compact_quarantined_total").increment(1);
    let key = meta.location.as_ref();
    // A server-side copy: the object is not held in memory whatever its size.
    store
        .copy(
            &meta.location,
            &Path::from(state::quarantine_key(key).as_str()),
        )
        .await?;
    let why = serde_json::json!({ "key": key, "reason": reason });
    store
        .put(
            &Path::from(state::quarantine_reason_key(key).as_str()),
            PutPayload::from(serde_json::to_vec(&why)?),
        )
        .await?;
    // Set aside, not kept in the lake: a reader would fail on it at every lookup. Its rows are
    // still in the raw object it came from; re-normalizing restores them.
    store.delete(&meta.location).await?;
    Ok(())
}

/// Deletes `paths` with the store's bulk delete: on S3 one request per 1,000 keys (a partition-
/// hour merges ~180 small objects, each a request of its own before), elsewhere a few at a
/// time. The first failure is returned; keys not yet deleted stay (a run stopped in between).
async fn delete_all(store: &dyn ObjectStore, paths: Vec<Path>) -> Result<(), CompactError> {
    use futures::StreamExt;
    store
        .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed())
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Removes the quarantine entry of `key`: a new object at that key merged into the lake.
async fn restore(store: &dyn ObjectStore, key: &str) -> Result<(), CompactError> {
    tracing::info!(
        key,
        "quarantined lake object restored by a new object at its key"
    );
    metrics::counter!("natlake_compact_restored_total").increment(1);
    for k in [
        state::quarantine_key(key),
        state::quarantine_reason_key(key),
    ] {
        match store.delete(&Path::from(k.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One partition's work: its objects (merged into `compacted.parquet` when any is small) and,
/// for `nat_events`, the carry into the next hour from the previous carry's objects and the
/// merged events.
struct Job<'a> {
    table: Table,
    /// The partition directory (`lake/<table>/hour=…/x_net=…`); None when the partition has
    /// no objects of this hour (a carry from the previous carry alone).
    dir: Option<&'a str>,
    metas: Vec<ObjectMeta>,
    /// The carry: previous carry objects and where the next carry goes.
    carry: Option<CarryJob>,
}

struct CarryJob {
    previous: Vec<ObjectMeta>,
    /// The next hour's carry partition directory.
    dir: String,
    range_start: Micros,
    idle_cutoff: Micros,
}

/// What stopped a pass over a partition.
enum Failure {
    /// An input of the merge (events) or of the previous carry (`previous`) could not be read,
    /// or was not in the merge order.
    Input {
        previous: bool,
        index: usize,
        fault: InputFault,
    },
    Other(CompactError),
}

enum InputFault {
    Unreadable(LakeError),
    /// Not in the merge order; the message says which row.
    Unsorted(String),
}

impl<E: Into<CompactError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

fn merge_failure(e: MergeError, previous: bool) -> Failure {
    match e {
        MergeError::Unsorted { index, .. } => Failure::Input {
            previous,
            index,
            fault: InputFault::Unsorted(e.to_string()),
        },
        MergeError::Input { index, source } if !is_store_error(&source) => Failure::Input {
            previous,
            index,
            fault: InputFault::Unreadable(source),
        },
        MergeError::Input { source, .. } | MergeError::Lake(source) => {
            Failure::Other(CompactError::Lake(source))
        }
    }
}

/// What a finished pass wrote.
struct Written {
    rows: usize,
    carried: Option<(usize, CarryStats, [u8; 32])>,
}

/// Runs a job to the end. An object that turns out unreadable part way (a corrupt page) is
/// quarantined and the partition started over without it: nothing is published until a pass
/// has read every input to its end.
async fn run_job(
    store: &Arc<dyn ObjectStore>,
    mut job: Job<'_>,
    cfg: &CompactConfig,
    quarantined: &HashSet<String>,
    report: &mut HourReport,
) -> Result<Option<(String, [u8; 32])>, CompactError> {
    // Small objects that declared the lake order and were found out of it: sorted from then on.
    let mut resort: HashSet<Path> = HashSet::new();
    loop {
        let mut spill = Spill {
            parent: cfg.spill_dir.clone(),
            dir: None,
        };
        let mut events = open_inputs(
            store,
            &mut spill,
            "e",
            job.table,
            &job.metas,
            &mut resort,
            cfg.merge,
            report,
        )
        .await?;
        job.metas = std::mem::take(&mut events.metas);
        let mut previous = match &job.carry {
            Some(c) => {
                open_inputs(
                    store,
                    &mut spill,
                    "p",
                    Table::NatCarry,
                    &c.previous,
                    &mut resort,
                    cfg.merge,
                    report,
                )
                .await?
            }
            None => Inputs::default(),
        };
        if let Some(c) = &mut job.carry {
            c.previous = std::mem::take(&mut previous.metas);
        }
        let spilled = events.objects_spilled + previous.objects_spilled;
        let smalls: Vec<ObjectMeta> = job.metas.iter().filter(|m| is_small(m)).cloned().collect();
        let sink = match (job.dir, smalls.is_empty()) {
            (Some(dir), false) => Some(ParquetSink::new(
                store.clone(),
                Path::from(format!("{dir}/{COMPACTED}").as_str()),
                job.table,
                cfg.write.clone(),
            )),
            _ => None,
        };
        let carry_sink = job.carry.as_ref().map(|c| {
            ParquetSink::new(
                store.clone(),
                Path::from(format!("{}/{CARRY}", c.dir).as_str()),
                Table::NatCarry,
                cfg.write.clone(),
            )
        });
        let (event_inputs, previous_inputs) = (
            std::mem::take(&mut events.inputs),
            std::mem::take(&mut previous.inputs),
        );
        match pass(&job, event_inputs, previous_inputs, sink, carry_sink, cfg).await {
            Ok(w) => {
                // Before the small objects go: a run stopped in between leaves an entry whose
                // key is still in the lake (cleared next time), never one whose key is gone.
                for m in smalls
                    .iter()
                    .filter(|m| quarantined.contains(m.location.as_ref()))
                {
                    restore(store.as_ref(), m.location.as_ref()).await?;
                    report.restored.push(m.location.to_string());
                }
                let keys = smalls.iter().map(|m| m.location.clone()).collect();
                delete_all(store.as_ref(), keys).await?;
                report.objects_spilled += spilled;
                report.runs_merged += events.runs_merged + previous.runs_merged;
                metrics::counter!("natlake_compact_runs_merged_total", "table" => job.table.as_str())
                    .increment((events.runs_merged + previous.runs_merged) as u64);
                metrics::counter!("natlake_compact_objects_spilled_total", "table" => job.table.as_str())
                    .increment(spilled as u64);
                if !smalls.is_empty() {
                    report.partitions_compacted += 1;
                    report.objects_merged += smalls.len();
                    report.rows_written += w.rows;
                    metrics::counter!("natlake_compact_objects_merged_total", "table" => job.table.as_str())
                        .increment(smalls.len() as u64);
                }
                let Some((carry_rows, st, digest)) = w.carried else {
                    return Ok(None);
                };
                report.carried += st.carried;
                report.expired += st.expired;
                let dir = job.carry.map(|c| (c.dir, digest));
                return Ok(dir.filter(|_| carry_rows > 0));
            }
            Err(Failure::Input {
                previous: prev,
                index,
                fault,
            }) => {
                let (metas, opened) = match (&mut job.carry, prev) {
                    (Some(c), true) => (&mut c.previous, &previous),
                    _ => (&mut job.metas, &events),
                };
                let origin = opened.origin(index);
                set_aside(store, metas, origin, fault, &mut resort, report).await?;
            }
            Err(Failure::Other(e)) => return Err(e),
        }
    }
}

/// One pass: the merge streamed into the compacted object and the carry. Sinks are completed
/// only when everything was read; on any failure both are aborted.
async fn pass(
    job: &Job<'_>,
    inputs: Vec<MergeInput>,
    previous: Vec<MergeInput>,
    mut sink: Option<ParquetSink>,
    mut carry_sink: Option<ParquetSink>,
    cfg: &CompactConfig,
) -> Result<Written, Failure> {
    let mut digest = RowDigest::new();
    let result = stream(
        job,
        inputs,
        previous,
        &mut sink,
        &mut carry_sink,
        &mut digest,
        cfg,
    )
    .await;
    match result {
        Ok(stats) => {
            let rows = match sink {
                Some(s) => s.finish().await?.0,
                None => 0,
            };
            let carried = match (carry_sink, stats) {
                (Some(s), Some(st)) => Some((s.finish().await?.0, st, digest.finish())),
                _ => None,
            };
            Ok(Written { rows, carried })
        }
        Err(e) => {
            // Best effort: an upload left unfinished is invisible anyway.
            for s in [sink, carry_sink].into_iter().flatten() {
                let _ = s.abort().await;
            }
            Err(e)
        }
    }
}

async fn stream(
    job: &Job<'_>,
    inputs: Vec<MergeInput>,
    previous: Vec<MergeInput>,
    sink: &mut Option<ParquetSink>,
    carry_sink: &mut Option<ParquetSink>,
    digest: &mut RowDigest,
    cfg: &CompactConfig,
) -> Result<Option<CarryStats>, Failure> {
    let mut events = SortedMerge::new(job.table, inputs, cfg.merge)
        .await
        .map_err(|e| merge_failure(e, false))?;
    let Some(c) = &job.carry else {
        while let Some(b) = events
            .next_batch()
            .await
            .map_err(|e| merge_failure(e, false))?
        {
            if let Some(s) = sink.as_mut() {
                s.write(&b).await?;
            }
        }
        return Ok(None);
    };
    let mut prev = SortedMerge::new(Table::NatCarry, previous, cfg.merge)
        .await
        .map_err(|e| merge_failure(e, true))?;
    let mut carry = CarryBuilder::new(c.range_start, c.idle_cutoff, cfg.merge.output_rows)?;
    loop {
        match carry.wants() {
            CarryWants::Previous => {
                let b = prev
                    .next_batch()
                    .await
                    .map_err(|e| merge_failure(e, true))?;
                carry.push_previous(b.as_ref())?;
            }
            CarryWants::Events => {
                let b = events
                    .next_batch()
                    .await
                    .map_err(|e| merge_failure(e, false))?;
                if let (Some(s), Some(b)) = (sink.as_mut(), &b) {
                    s.write(b).await?;
                }
                carry.push_events(b.as_ref())?;
            }
            CarryWants::Done => break,
        }
        while let Some(out) = carry.take_output() {
            digest.update(&out)?;
            if let Some(s) = carry_sink.as_mut() {
                s.write(&out).await?;
            }
        }
    }
    Ok(Some(carry.stats().clone()))
}

/// `x_net=…` of a partition directory.
fn net_of(dir: &str) -> Option<&str> {
    dir.rsplit('/')
        .next()?
        .strip_prefix(&format!("{}=", layout::NET_KEY))
}

/// Works on one hour: compaction of every table, and the carry into the next hour computed in
/// the same pass over each `nat_events` partition.
async fn work_hour(
    store: &Arc<dyn ObjectStore>,
    hour: i64,
    cfg: &CompactConfig,
) -> Result<HourReport, CompactError> {
    let mut report = HourReport {
        hour: layout::hour_label(hour * 1_000_000),
        ..Default::default()
    };
    let next = hour + 3600;
    let range_start = hour * 1_000_000;
    let idle_cutoff = (next * 1_000_000) - cfg.max_idle;
    // Previous carry (into this hour) by network.
    let mut previous: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for (dir, metas) in hour_partitions(store.as_ref(), Table::NatCarry, hour).await? {
        if let Some(net) = net_of(&dir) {
            previous.entry(net.to_owned()).or_default().extend(metas);
        }
    }
    let stale = hour_partitions(store.as_ref(), Table::NatCarry, next).await?;
    let carry_job = |net: &str, previous: Vec<ObjectMeta>| CarryJob {
        previous,
        dir: format!(
            "{}{}={net}",
            layout::hour_dir(Table::NatCarry, next),
            layout::NET_KEY
        ),
        range_start,
        idle_cutoff,
    };
    // Objects of this hour set aside earlier: one listing per table, normally empty.
    let mut quarantined = HashSet::new();
    for table in COMPACTED_TABLES {
        let dir = layout::hour_dir(table, hour);
        quarantined.extend(
            state::quarantined(store, &dir)
                .await?
                .into_iter()
                .map(|g| g.key),
        );
    }
    // Carry partitions written, with the digest of their rows.
    let mut written = BTreeMap::new();
    for table in COMPACTED_TABLES {
        for (dir, metas) in hour_partitions(store.as_ref(), table, hour).await? {
            let carry = match (table, net_of(&dir)) {
                (Table::NatEvents, Some(net)) => {
                    Some(carry_job(net, previous.remove(net).unwrap_or_default()))
                }
                _ => None,
            };
            let job = Job {
                table,
                dir: Some(&dir),
                metas,
                carry,
            };
            if let Some((carry_dir, digest)) =
                run_job(store, job, cfg, &quarantined, &mut report).await?
            {
                written.insert(carry_dir, digest);
            }
        }
    }
    // Networks with a carry into this hour but no events in it.
    for (net, metas) in std::mem::take(&mut previous) {
        let job = Job {
            table: Table::NatEvents,
            dir: None,
            metas: Vec::new(),
            carry: Some(carry_job(&net, metas)),
        };
        if let Some((carry_dir, digest)) =
            run_job(store, job, cfg, &quarantined, &mut report).await?
        {
            written.insert(carry_dir, digest);
        }
    }
    // A carry computed earlier from data since rewritten must not survive.
    for (dir, metas) in stale {
        if !written.contains_key(&dir) {
            let keys = metas.into_iter().map(|m| m.location).collect();
            delete_all(store.as_ref(), keys).await?;
        }
    }
    let marker_key = Path::from(layout::carry_marker_key(next).as_str());
    let before = recorded_digest(store.as_ref(), &marker_key).await?;
    let digest = digest::of_hour(&written);
    report.carry_unchanged = before.as_deref() == Some(digest.as_str());
    report.carry_digest = Some(digest);
    let marker = serde_json::json!({
        "hour": layout::hour_label(next * 1_000_000),
        "from": &report,
        "computed_at": natlake_core::time::format_time(natlake_core::time::now_micros()),
    });
    store
        .put(
            &marker_key,
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
    // Hours that late objects landed in since their carry was computed, whatever their age
    // (the rescan below only looks back so far); read before any hour's objects are listed,
    // so an object whose marker is seen here is in what the hour's work reads.
    let late: Vec<late::Marker> = late::list_all(store)
        .await?
        .into_iter()
        .filter(|m| m.hour <= last_finished)
        .collect();
    let dirt = Dirt {
        late: late.iter().map(|m| m.hour).collect(),
        recent: layout::hour_start(now - cfg.rescan),
        hours,
        done,
    };
    let Some(start) = dirt
        .first_dirty(store.as_ref(), first, last_finished)
        .await?
    else {
        return Ok(Report::default());
    };
    if start == first && !dirt.done.contains(&first) {
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
    let mut report = Report::default();
    // The resume marker this run last wrote (see `late`).
    let mut resume: Option<String> = None;
    let mut todo = Some(start);
    while let Some(h) = todo {
        if report.hours.len() >= cfg.max_hours.max(1) {
            report.remaining = ((last_finished - h) / 3600 + 1) as usize;
            break;
        }
        // Before the hour's work publishes a carry into h + 1, a resume marker there says the
        // carries after it are not yet recomputed from it: should the run stop between the
        // two, the next run, finding that carry's digest already in its marker, would
        // otherwise take the later carries (computed from the old one) as current.
        let ahead = match h + 3600 {
            n if n <= last_finished => Some(late::mark_all(store, n).await?),
            _ => None,
        };
        let r = work_hour(store, h, cfg).await?;
        tracing::info!(hour = %r.hour, merged = r.objects_merged, carried = r.carried, expired = r.expired, unchanged = r.carry_unchanged, "hour compacted");
        // Work on an hour makes the later carries stale, unless the carry it wrote is the one
        // already there: then the later ones are too, and the run goes on at the next hour that
        // needs work of its own (a late object days back costs an hour or two, not days).
        todo = if h + 3600 > last_finished {
            None
        } else if r.carry_unchanged {
            dirt.first_dirty(store.as_ref(), h + 3600, last_finished)
                .await?
        } else {
            Some(h + 3600)
        };
        if r.carry_unchanged {
            metrics::counter!("natlake_compact_carry_unchanged_total").increment(1);
        }
        report.hours.push(r);
        // Progress, hour by hour, so a run that fails or times out later is not done again
        // from its first hour: the carries into every hour through h + 1 now include what the
        // markers listed at the start named for hours up to h (each listed marker's hour is
        // due, so at or after the first hour worked on, and is passed once); a marker for every
        // partition at the next hour to work on says the later ones do not yet (the next run
        // resumes there).
        let next = match todo {
            Some(n) if n == h + 3600 => ahead.clone(),
            Some(n) => Some(late::mark_all(store, n).await?),
            None => None,
        };
        let done_markers = late
            .iter()
            .filter(|m| m.hour == h)
            .map(|m| m.key.clone())
            .chain(resume.take())
            .chain(ahead);
        for key in done_markers {
            if Some(&key) != next.as_ref() {
                match store.delete(&Path::from(key.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        resume = next;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(key),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn merged_batches_follow_the_row_groups_up_to_a_bound() {
        let with_groups = |row_group_rows: usize| {
            merge_budget_for(&WriteOptions {
                row_group_rows,
                ..WriteOptions::default()
            })
            .output_rows
        };
        assert_eq!(with_groups(16_384), 16_384);
        assert_eq!(with_groups(300), 300);
        assert_eq!(with_groups(0), 1);
        assert_eq!(with_groups(1 << 20), MAX_OUTPUT_ROWS);
        assert_eq!(
            merge_budget_for(&WriteOptions::default()).input_bytes,
            MergeBudget::default().input_bytes
        );
    }

    #[test]
    fn small_objects_are_merged_at_once_large_ones_in_groups() {
        let dir = "lake/nat_events/hour=2026-11-23T00/x_net=198.51.100.0_24";
        let objects = |n: usize, size: u64| -> Vec<ObjectMeta> {
            (0..n)
                .map(|i| meta(&format!("{dir}/part-{i}.parquet"), size))
                .collect()
        };
        let budget = MergeBudget::default();
        // A quiet hour: 60 objects of 20 KB, 1.2 MB together.
        assert_eq!(fan_in_for(&objects(60, 20_000), budget), 60);
        // Fewer objects than the fan-in: the fan-in (nothing is grouped either way).
        assert_eq!(fan_in_for(&objects(5, 20_000), budget), 16);
        // A busy hour: 60 objects of 1 MB.
        assert_eq!(fan_in_for(&objects(60, 1 << 20), budget), 16);
        // Many tiny objects: no more than the cap open at once.
        assert_eq!(fan_in_for(&objects(300, 1_000), budget), 16);
        assert_eq!(
            fan_in_for(&objects(SMALL_FAN_IN_MAX, 1_000), budget),
            SMALL_FAN_IN_MAX
        );
        // Exactly an eighth of the budget still counts as small; a byte more does not.
        let eighth = (budget.input_bytes / 8) as u64;
        let mut edge = objects(20, eighth / 20);
        assert_eq!(fan_in_for(&edge, budget), 20);
        edge[0].size += eighth - edge.iter().map(|m| m.size).sum::<u64>() + 1;
        assert_eq!(fan_in_for(&edge, budget), 16);
        // A smaller budget shrinks what counts as small.
        let tight = MergeBudget {
            input_bytes: 4 << 20,
            ..budget
        };
        assert_eq!(fan_in_for(&objects(60, 20_000), tight), 16);
    }

    #[test]
    fn spill_need_counts_what_expands_most_and_a_second_level() {
        let dir = "lake/nat_events/hour=2026-11-23T00/x_net=198.51.100.0_24";
        let small = |n: usize| meta(&format!("{dir}/part-{n}.parquet"), 1_000);
        let objects: Vec<ObjectMeta> = (0..20).map(small).collect();
        assert_eq!(spill_need(&objects, 16), 20 * 2_000);
        // A late-data pass: the compacted object expands more than the small ones.
        let mut late = objects.clone();
        late.push(meta(&format!("{dir}/{COMPACTED}"), 10_000));
        assert_eq!(spill_need(&late, 16), 20 * 2_000 + 30_000);
        // More than fan-in² objects: the runs are merged again.
        assert_eq!(spill_need(&objects, 4), 2 * 20 * 2_000);
        assert_eq!(spill_need(&objects, 5), 20 * 2_000);
    }
}
