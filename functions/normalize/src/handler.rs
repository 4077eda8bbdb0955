//! The normalize handler: one raw object in, Parquet partitions and rejects out.
//!
//! Idempotent: output keys derive from the raw key, so a retry or a second notification for the
//! same object overwrites what the first run wrote. A marker under `_state/normalized/` records
//! the outcome so pollers and backfills can skip finished objects.

use std::sync::Arc;

use natlake_core::lake::writer::{self, LakeError, Output, WriteOptions};
use natlake_core::model::{Envelope, Event, Micros, Provenance, Reject, Row, SharedStr};
use natlake_core::parsers::{self, Format, ParseCtx, netflow};
use natlake_core::time::{MAX_TIME, MIN_TIME, Zone};
use natlake_raw::{BatchReader, InputKind, RecordRef};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::enrich::{EnrichConfig, EnrichHandle};

pub use natlake_core::lake::state::{
    ACCEPTED_PREFIX, DEAD_LETTER_PREFIX, NORMALIZED_PREFIX as STATE_PREFIX,
};

/// Settings of the normalize function.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Parser to use for every record ("auto" detects per record).
    pub format: String,
    /// Device time zones, for timestamps without an offset (`--time-zones FILE`, `--tz ZONE`).
    #[serde(skip)]
    pub time_zones: crate::time_zones::TimeZones,
    /// Events more than this far ahead of their receive time are rejected as absurd.
    pub max_future_secs: i64,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Enrichment sources (`--enrich-config FILE`); see `crate::enrich`.
    pub enrich: EnrichConfig,
    /// The sources loaded from `enrich` ([`NormalizeConfig::load_enrichment`]); none by default.
    #[serde(skip)]
    pub enricher: EnrichHandle,
    /// The store completes its operations on the calling thread (a local directory or memory:
    /// [`natlake_store::completes_inline`]), so each object is read, normalized and written in
    /// one CPU pool job. False for S3, whose requests need the async runtime.
    #[serde(skip)]
    pub inline_io: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        let w = WriteOptions::ingest();
        Self {
            format: "auto".into(),
            time_zones: Default::default(),
            max_future_secs: 86_400,
            zstd_level: w.zstd_level,
            row_group_rows: w.row_group_rows,
            enrich: EnrichConfig::default(),
            enricher: EnrichHandle::default(),
            inline_io: false,
        }
    }
}

impl NormalizeConfig {
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            zstd_level: self.zstd_level,
            row_group_rows: self.row_group_rows,
            ..WriteOptions::ingest()
        }
    }

    /// Loads the enrichment sources `enrich` names. Fatal on failure: rows written without
    /// the configured context would look complete and not be.
    pub async fn load_enrichment(
        mut self,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<Self, NormalizeError> {
        self.enricher = EnrichHandle::load(store, &self.enrich)
            .await
            .map_err(|e| NormalizeError::Config(e.to_string()))?;
        Ok(self)
    }

    pub fn parsed_format(&self) -> Result<Format, NormalizeError> {
        Format::parse(&self.format)
            .ok_or_else(|| NormalizeError::Config(format!("unknown format {:?}", self.format)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("reading {key}: {source}")]
    Read {
        key: String,
        source: object_store::Error,
    },
    #[error("writing outputs of {key}: {source}")]
    Write { key: String, source: LakeError },
}

impl NormalizeError {
    /// Store trouble is worth retrying; configuration errors are not.
    pub fn is_transient(&self) -> bool {
        !matches!(self, NormalizeError::Config(_))
    }
}

/// What normalizing one raw object did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub raw_key: String,
    pub records: u64,
    /// Context records (replayed templates) are read but produce no rows.
    pub context: u64,
    pub events: u64,
    pub rejects: u64,
    /// IPFIX / NetFlow v9 data records decoded (one datagram holds many).
    #[serde(default)]
    pub flow_records: u64,
    /// IPFIX / NetFlow v9 data sets whose template was unknown (each one a reject).
    #[serde(default)]
    pub template_missing: u64,
    /// Data sets that came before their template in the object (the exporter's periodic
    /// template refresh later in the batch): decoded again at the object's end; those still
    /// unknown then are counted in `template_missing`.
    #[serde(default)]
    pub template_late: u64,
    /// Decoded flow data records that hold nothing the lake keeps (NAT alarms, records without
    /// addresses); options data records are not counted here.
    #[serde(default)]
    pub flow_skipped: u64,
    /// Set when the object could only be read in part (truncated, corrupt): what was wrong.
    pub damage: Option<String>,
    pub outputs: Vec<String>,
}

/// Rows and rejects of one raw object: the pure part of the handler.
pub struct Normalized {
    pub rows: Vec<Row>,
    pub rejects: Vec<Reject>,
    pub report: Report,
}

/// Why a record was rejected, in a few words: the `reason` label of the rejects counter (the
/// reject's own `reason` text says exactly what was wrong, with values, and is not a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RejectClass {
    /// The whole raw object could not be opened.
    UnreadableObject,
    /// The raw object ends in damage; the records before it were read.
    DamagedObject,
    /// No parser recognised the message.
    Unrecognised,
    /// A parser recognised the message and found it invalid.
    Invalid,
    /// An event time outside what the receive time allows.
    AbsurdTime,
    /// A flow data set whose template was not seen.
    MissingTemplate,
    /// A flow message damaged or not expressible.
    FlowInvalid,
    /// The raw object's `tz` label names no zone, and no `[[source]]` entry names the sender's.
    BadTimeZone,
}

impl RejectClass {
    fn as_str(self) -> &'static str {
        match self {
            Self::UnreadableObject => "unreadable_object",
            Self::DamagedObject => "damaged_object",
            Self::Unrecognised => "unrecognised",
            Self::Invalid => "invalid",
            Self::AbsurdTime => "absurd_time",
            Self::MissingTemplate => "missing_template",
            Self::FlowInvalid => "flow_invalid",
            Self::BadTimeZone => "bad_time_zone",
        }
    }
}

// Every reject is built here; the arguments are its fields.
#[allow(clippy::too_many_arguments)]
fn reject(
    key: &str,
    index: u64,
    recv: Micros,
    class: RejectClass,
    reason: String,
    format: &str,
    kind: &str,
    peer: Option<String>,
    payload: Vec<u8>,
) -> Reject {
    // Per source (input kind), parser and class: bounded label sets, so a flood of junk cannot
    // grow the metrics.
    metrics::counter!(
        "natlake_normalize_rejects_total",
        "source" => kind.to_string(),
        "format" => format.to_string(),
        "reason" => class.as_str()
    )
    .increment(1);
    Reject {
        recv_time: recv,
        reason,
        format: format.to_string(),
        input_kind: kind.to_string(),
        peer,
        payload,
        provenance: Provenance {
            raw_key: key.into(),
            raw_record: index,
        },
    }
}

/// Decodes and parses a raw object's bytes. Never fails: what cannot be read becomes a reject.
pub fn normalize_bytes(
    key: &str,
    bytes: &[u8],
    format: Format,
    cfg: &NormalizeConfig,
) -> Normalized {
    // Rows reserved once from the object's size (the relay's objects hold ~50 compressed bytes
    // per record): growing the vector copied every row several times over.
    let mut rows = spare_rows();
    rows.reserve((bytes.len() / 48).clamp(16, 1 << 16));
    let mut out = Normalized {
        rows,
        rejects: Vec::new(),
        report: Report {
            raw_key: key.to_string(),
            ..Report::default()
        },
    };
    let now = natlake_core::time::now_micros();
    let shared_key: SharedStr = key.into();
    let mut reader = match BatchReader::from_compressed(bytes) {
        Ok(r) => r,
        Err(e) => {
            // The whole object is unreadable: one reject that points at it, with its bytes.
            let reason = format!("unreadable raw object: {e}");
            out.report.damage = Some(reason.clone());
            out.rejects.push(reject(
                key,
                0,
                now,
                RejectClass::UnreadableObject,
                reason,
                "raw",
                "unknown",
                None,
                bytes.to_vec(),
            ));
            out.report.rejects = 1;
            return out;
        }
    };
    let mut events: Vec<Event> = Vec::with_capacity(4);
    let utc_everywhere = cfg.time_zones.is_utc_everywhere()
        && !reader
            .header()
            .labels
            .contains_key(crate::time_zones::LABEL);
    // A `tz` label that names no zone: the records that would need it are rejected with the
    // reason (kept, for a re-run once the relay's label is fixed), never read in a guessed zone.
    let object_zone = cfg
        .time_zones
        .object_zone(&reader.header().labels)
        .map_err(|e| {
            tracing::warn!(
                key,
                "{e}: records of senders without a [[source]] zone rejected"
            );
            format!("the raw object's tz label: {e}")
        });
    let mut names = DeviceNames::default();
    // One template cache per object: it learns only from this object's records (context first),
    // so the object decodes the same alone, in any order, or on a re-run.
    let mut flows = netflow::Decoder::new();
    let mut flow_events: Vec<netflow::DecodedEvent> = Vec::new();
    let mut before_template: Vec<Deferred> = Vec::new();
    while let Some(item) = reader.next_ref() {
        let (index, rec) = match item {
            Ok(x) => x,
            Err(e) => {
                let index = match &e {
                    natlake_raw::RawError::Record { index, .. }
                    | natlake_raw::RawError::Truncated { index, .. } => *index,
                    _ => out.report.records,
                };
                let reason = format!("raw object damaged: {e}");
                out.report.damage = Some(reason.clone());
                out.rejects.push(reject(
                    key,
                    index,
                    now,
                    RejectClass::DamagedObject,
                    reason,
                    "raw",
                    "unknown",
                    None,
                    Vec::new(),
                ));
                break;
            }
        };
        out.report.records += 1;
        let is_flow = matches!(rec.kind, InputKind::Ipfix | InputKind::Netflow);
        if rec.is_context() {
            out.report.context += 1;
        }
        if is_flow {
            // Replayed templates (context records) are learned, never turned into rows.
            flow_events.clear();
            let waiting = before_template.len();
            let learned = decode_flow(
                &mut out,
                &mut flows,
                &mut flow_events,
                &shared_key,
                index,
                &rec,
                cfg,
                Some(&mut before_template),
            );
            out.report.template_late += (before_template.len() - waiting) as u64;
            // Data sets that came before their template are decoded with the first
            // definition that follows them (a template id redefined later in the object, after
            // an exporter's restart, must not decode them).
            if learned > 0 && !before_template.is_empty() {
                let waiting = std::mem::take(&mut before_template);
                let mut flow = FlowState {
                    decoder: &mut flows,
                    events: &mut flow_events,
                    key: &shared_key,
                };
                flow.decode_again(&mut out, waiting, cfg, Some(&mut before_template));
            }
            continue;
        }
        if rec.is_context() {
            continue;
        }
        let recv = rec.recv_ns.div_euclid(1000);
        // Text of the sender only for rejects: rendering it for every record cost more than
        // parsing some of them.
        let peer = || rec.peer.map(|p| p.to_string());
        let format = match rec.kind {
            // The relay renders netlink events as `conntrack -E -o timestamp,extended` lines.
            InputKind::ConntrackNetlink => Format::Conntrack,
            _ => format,
        };
        let zone = if utc_everywhere {
            Zone::UTC
        } else {
            match cfg
                .time_zones
                .zone_for(rec.peer.map(|p| p.ip()), &object_zone)
            {
                Ok(z) => z,
                Err(reason) => {
                    out.rejects.push(reject(
                        key,
                        index,
                        recv,
                        RejectClass::BadTimeZone,
                        reason.clone(),
                        "raw",
                        rec.kind.as_str(),
                        peer(),
                        rec.payload.to_vec(),
                    ));
                    continue;
                }
            }
        };
        let ctx = ParseCtx {
            recv_time: recv,
            zone,
        };
        events.clear();
        match parsers::parse_message(rec.payload, format, &ctx, &mut events) {
            Ok(parsed) => {
                let limit = recv.saturating_add(cfg.max_future_secs.saturating_mul(1_000_000));
                if let Some(bad) = events
                    .iter()
                    .find(|e| !(MIN_TIME..=limit.min(MAX_TIME)).contains(&e.time()))
                {
                    let reason = format!(
                        "absurd event time {} (received {})",
                        natlake_core::time::format_time(bad.time()),
                        natlake_core::time::format_time(recv)
                    );
                    out.rejects.push(reject(
                        key,
                        index,
                        recv,
                        RejectClass::AbsurdTime,
                        reason,
                        parsed.format,
                        rec.kind.as_str(),
                        peer(),
                        rec.payload.to_vec(),
                    ));
                    continue;
                }
                let device = match parsed.host {
                    Some(host) => Some(names.host(host)),
                    None => rec.peer.map(|p| names.peer(p.ip())),
                };
                for ev in events.drain(..) {
                    out.rows.push(Row {
                        event: ev,
                        envelope: Envelope {
                            recv_time: recv,
                            device: device.clone(),
                            format: parsed.format,
                            ..Envelope::default()
                        },
                        provenance: Provenance {
                            raw_key: shared_key.clone(),
                            raw_record: index,
                        },
                    });
                }
            }
            Err(e) => {
                let class = if e.format == Format::Auto.as_str() {
                    RejectClass::Unrecognised
                } else {
                    RejectClass::Invalid
                };
                out.rejects.push(reject(
                    key,
                    index,
                    recv,
                    class,
                    e.reason,
                    e.format,
                    rec.kind.as_str(),
                    peer(),
                    rec.payload.to_vec(),
                ));
            }
        }
    }
    // Data sets whose template never came in the object: rejected, with their bytes.
    let mut flow = FlowState {
        decoder: &mut flows,
        events: &mut flow_events,
        key: &shared_key,
    };
    flow.decode_again(&mut out, before_template, cfg, None);
    if let Some(enricher) = cfg.enricher.snapshot() {
        out.rows.iter_mut().for_each(|r| enricher.apply(r));
    }
    out.report.events = out.rows.len() as u64;
    out.report.rejects = out.rejects.len() as u64;
    out
}

thread_local! {
    /// The row vector of this CPU thread's last object, emptied, for its next one: a new vector
    /// per object was a large allocation and free (glibc then merges its free lists) and fresh
    /// pages to fault in, for every object.
    static SPARE_ROWS: std::cell::Cell<Vec<Row>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Most rows a kept vector may hold (8 MiB of rows): an object far larger than usual does not
/// leave its vector held for the rest of the run.
const SPARE_ROWS_MAX: usize = (8 << 20) / std::mem::size_of::<Row>();

/// An empty row vector, with the capacity this thread's last object left it.
fn spare_rows() -> Vec<Row> {
    SPARE_ROWS.take()
}

/// Gives an object's row vector back, emptied, for the next object on this thread.
fn recycle_rows(mut rows: Vec<Row>) {
    if rows.capacity() <= SPARE_ROWS_MAX {
        rows.clear();
        SPARE_ROWS.set(rows);
    }
}

/// Records' device names, shared by their rows: an object's records nearly all name one device
/// (a syslog HOSTNAME, else the sender's address), so the last name is kept and handed out
/// again while it repeats. A string per row was an allocation and a free per row, and
/// rendering the sender's address for every record cost more than parsing some of them.
#[derive(Default)]
struct DeviceNames {
    host: Option<SharedStr>,
    peer: Option<(std::net::IpAddr, SharedStr)>,
}

impl DeviceNames {
    fn host(&mut self, host: &str) -> SharedStr {
        match &self.host {
            Some(name) if **name == *host => name.clone(),
            _ => self.host.insert(host.into()).clone(),
        }
    }

    fn peer(&mut self, ip: std::net::IpAddr) -> SharedStr {
        match &self.peer {
            Some((at, name)) if *at == ip => name.clone(),
            _ => self.peer.insert((ip, ip.to_string().into())).1.clone(),
        }
    }
}

/// A data set of a record whose template the object had not yet shown (an exporter refreshes
/// its templates every few minutes; after a relay restart the first data of a batch can
/// precede them).
struct Deferred {
    index: u64,
    recv_ns: i64,
    kind: InputKind,
    peer: Option<std::net::SocketAddr>,
    payload: Vec<u8>,
}

/// What decoding a flow datagram of the object uses.
struct FlowState<'a> {
    decoder: &'a mut netflow::Decoder,
    events: &'a mut Vec<netflow::DecodedEvent>,
    key: &'a SharedStr,
}

impl FlowState<'_> {
    /// Decodes set-aside data sets again; with `defer`, those still without a template go back
    /// there, else to rejects.
    fn decode_again(
        &mut self,
        out: &mut Normalized,
        waiting: Vec<Deferred>,
        cfg: &NormalizeConfig,
        mut defer: Option<&mut Vec<Deferred>>,
    ) {
        for d in waiting {
            self.events.clear();
            decode_flow(
                out,
                self.decoder,
                self.events,
                self.key,
                d.index,
                &d.as_record(),
                cfg,
                defer.as_deref_mut(),
            );
        }
    }
}

impl Deferred {
    fn as_record(&self) -> RecordRef<'_> {
        RecordRef {
            recv_ns: self.recv_ns,
            kind: self.kind,
            flags: 0,
            peer: self.peer,
            payload: &self.payload,
        }
    }
}

/// Decodes one IPFIX / NetFlow v9 datagram into rows; what cannot become rows (unknown
/// templates, damage, unrepresentable records, absurd times) goes to rejects with its bytes.
/// Context records (replayed templates) only teach the decoder. With `defer`, data sets of a
/// data record whose template is unknown yet are set aside there instead of rejected. Returns
/// how many templates the datagram defined.
#[allow(clippy::too_many_arguments)]
fn decode_flow(
    out: &mut Normalized,
    flows: &mut netflow::Decoder,
    events: &mut Vec<netflow::DecodedEvent>,
    key: &SharedStr,
    index: u64,
    rec: &RecordRef<'_>,
    cfg: &NormalizeConfig,
    mut defer: Option<&mut Vec<Deferred>>,
) -> u64 {
    let recv = rec.recv_ns.div_euclid(1000);
    let peer = rec.peer.map(|p| p.to_string());
    let kind = rec.kind.as_str();
    let context = rec.is_context();
    let decoded = match flows.decode(rec.peer.map(|p| p.ip()), rec.payload, recv, events) {
        Ok(d) => d,
        Err(e) => {
            let reason = if context {
                format!("context record: {e}")
            } else {
                e.to_string()
            };
            out.rejects.push(reject(
                key,
                index,
                recv,
                RejectClass::FlowInvalid,
                reason,
                kind,
                kind,
                peer,
                rec.payload.to_vec(),
            ));
            return 0;
        }
    };
    let learned = decoded.templates;
    for p in decoded.problems {
        if let Some(d) = defer
            .as_deref_mut()
            .filter(|_| !context && p.kind == netflow::ProblemKind::MissingTemplate)
        {
            d.push(Deferred {
                index,
                recv_ns: rec.recv_ns,
                kind: rec.kind,
                peer: rec.peer,
                payload: p.payload,
            });
            continue;
        }
        let class = if p.kind == netflow::ProblemKind::MissingTemplate {
            out.report.template_missing += 1;
            RejectClass::MissingTemplate
        } else {
            RejectClass::FlowInvalid
        };
        let reason = if context {
            format!("context record: {}", p.reason)
        } else {
            p.reason
        };
        out.rejects.push(reject(
            key,
            index,
            recv,
            class,
            reason,
            decoded.format,
            kind,
            peer.clone(),
            p.payload,
        ));
    }
    if context {
        return learned;
    }
    out.report.flow_records += decoded.data_records;
    out.report.flow_skipped += decoded.skipped;
    let limit = recv
        .saturating_add(cfg.max_future_secs.saturating_mul(1_000_000))
        .min(MAX_TIME);
    let device: Option<SharedStr> = rec.peer.map(|p| p.ip().to_string().into());
    let mut absurd: Option<(usize, Micros)> = None;
    for ev in events.drain(..) {
        let t = ev.event.time();
        if !(MIN_TIME..=limit).contains(&t) {
            absurd.get_or_insert((0, t)).0 += 1;
            continue;
        }
        out.rows.push(Row {
            event: ev.event,
            envelope: Envelope {
                recv_time: recv,
                device: device.clone(),
                format: decoded.format,
                // Nokia natSubString: the subscriber as the device names it.
                subscriber: ev.subscriber,
                ..Envelope::default()
            },
            provenance: Provenance {
                raw_key: key.clone(),
                raw_record: index,
            },
        });
    }
    if let Some((n, first)) = absurd {
        // One reject per datagram, with the datagram: its other events are in the lake.
        let reason = format!(
            "{n} events with absurd times, first {} (received {})",
            natlake_core::time::format_time(first),
            natlake_core::time::format_time(recv)
        );
        out.rejects.push(reject(
            key,
            index,
            recv,
            RejectClass::AbsurdTime,
            reason,
            decoded.format,
            kind,
            peer,
            rec.payload.to_vec(),
        ));
    }
    learned
}

fn marker_key(raw_key: &str) -> Path {
    natlake_core::lake::state::marker_key(STATE_PREFIX, raw_key)
}

/// Whether a raw object was already normalized (its marker exists).
pub async fn is_done(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
) -> Result<bool, object_store::Error> {
    match store.head(&marker_key(raw_key)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The handler every door calls: read, normalize, publish, mark done, clear the object's dead
/// letter and accepted loss if it had them.
///
/// With a store whose operations finish on the calling thread ([`NormalizeConfig::inline_io`]:
/// a local directory or memory), the whole object is done in one job on the CPU pool: the
/// store's file calls run there (object_store's local store does its I/O inline where no tokio
/// runtime is entered) instead of each going to tokio's blocking pool and back, and nothing is
/// handed between threads. Those hand-offs, ~80 futex calls per object, cost a `file://` backfill
/// about a tenth of its CPU time (bench/README.md, session 19).
pub async fn normalize_object(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
    cfg: &NormalizeConfig,
) -> Result<Report, NormalizeError> {
    if !cfg.inline_io {
        return normalize_on(store, raw_key, cfg, Cpu::Pool).await;
    }
    let (store, key, cfg) = (store.clone(), raw_key.to_string(), cfg.clone());
    crate::cpu::run(move || {
        futures::executor::block_on(normalize_on(&store, &key, &cfg, Cpu::Here))
    })
    .await
    .unwrap_or_else(|e| Err(task_failed(e)))
}

/// Where [`normalize_on`] runs its CPU-bound part.
#[derive(Clone, Copy)]
enum Cpu {
    /// Hand it to the CPU pool and wait (the caller is on an async worker).
    Pool,
    /// Run it here (the caller is a CPU pool job already).
    Here,
}

fn task_failed(e: String) -> NormalizeError {
    NormalizeError::Config(format!("normalize task failed: {e}"))
}

async fn normalize_on(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
    cfg: &NormalizeConfig,
    cpu: Cpu,
) -> Result<Report, NormalizeError> {
    let format = cfg.parsed_format()?;
    let started = std::time::Instant::now();
    cfg.enricher.refresh(store).await;
    let bytes = async { store.get(&Path::from(raw_key)).await?.bytes().await }
        .await
        .map_err(|source| NormalizeError::Read {
            key: raw_key.to_string(),
            source,
        })?;
    let key = raw_key.to_string();
    let cfg2 = cfg.clone();
    let work = move || {
        let n = normalize_bytes(&key, &bytes, format, &cfg2);
        let outputs = writer::encode_outputs(&key, &n.rows, &n.rejects, &cfg2.write_options());
        recycle_rows(n.rows);
        (n.report, outputs)
    };
    let (mut report, outputs) = match cpu {
        Cpu::Here => work(),
        Cpu::Pool => crate::cpu::run(work).await.map_err(task_failed)?,
    };
    let outputs = outputs.map_err(|source| NormalizeError::Write {
        key: raw_key.to_string(),
        source,
    })?;
    let published: Vec<Output> =
        writer::publish(store, outputs)
            .await
            .map_err(|source| NormalizeError::Write {
                key: raw_key.to_string(),
                source,
            })?;
    // After the objects, before the done marker: a retry writes them again (`docs/lake-layout.md`).
    let late = natlake_core::lake::late::mark(
        store,
        &published,
        raw_key,
        natlake_core::time::now_micros(),
    )
    .await
    .map_err(|source| NormalizeError::Write {
        key: raw_key.to_string(),
        source: LakeError::Store(source),
    })?;
    metrics::counter!("natlake_normalize_late_objects_total").increment(late as u64);
    report.outputs = published.iter().map(|o| o.key.clone()).collect();
    let marker = serde_json::to_vec(&report).unwrap_or_default();
    store
        .put(&marker_key(raw_key), PutPayload::from(marker))
        .await
        .map_err(|source| NormalizeError::Write {
            key: raw_key.to_string(),
            source: LakeError::Store(source),
        })?;
    clear_markers(store, raw_key, &[DEAD_LETTER_PREFIX, ACCEPTED_PREFIX]).await;
    metrics::counter!("natlake_normalize_objects_total").increment(1);
    metrics::counter!("natlake_normalize_records_total").increment(report.records);
    metrics::counter!("natlake_normalize_events_total").increment(report.events);
    metrics::counter!("natlake_normalize_flow_records_total").increment(report.flow_records);
    metrics::counter!("natlake_normalize_template_missing_total")
        .increment(report.template_missing);
    metrics::counter!("natlake_normalize_template_late_total").increment(report.template_late);
    metrics::histogram!("natlake_normalize_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(
        raw_key,
        records = report.records,
        events = report.events,
        rejects = report.rejects,
        flow_records = report.flow_records,
        template_missing = report.template_missing,
        template_late = report.template_late,
        outputs = report.outputs.len(),
        "normalized"
    );
    Ok(report)
}

/// Removes what earlier runs or an operator recorded about a raw object that is now normalized
/// (after its done marker): its dead letter, an accepted loss. Lookups would otherwise report the
/// object as failed or lost once its done marker expires (with raw/, long before these, kept as
/// long as the lake). A failure is logged, not returned: the object is normalized all the same.
async fn clear_markers(store: &Arc<dyn ObjectStore>, raw_key: &str, states: &[&str]) {
    futures::future::join_all(states.iter().map(|state| async move {
        let key = natlake_core::lake::state::marker_key(state, raw_key);
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(raw_key, marker = %key, error = %e, "could not remove the marker")
            }
        }
    }))
    .await;
}

/// Retries transient failures with backoff; after the last attempt the failure is recorded under
/// `_state/dead-letter/` (never dropped silently) and returned.
pub async fn normalize_with_retry(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
    cfg: &NormalizeConfig,
    attempts: u32,
) -> Result<Report, NormalizeError> {
    let mut delay = std::time::Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match normalize_object(store, raw_key, cfg).await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_transient() && attempt < attempts => {
                tracing::warn!(raw_key, attempt, error = %e, "normalize failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                attempt += 1;
            }
            Err(e) => {
                metrics::counter!("natlake_normalize_dead_letters_total").increment(1);
                let body = serde_json::json!({"raw_key": raw_key, "error": e.to_string(), "attempts": attempt, "at": natlake_core::time::format_time(natlake_core::time::now_micros())});
                let dl = natlake_core::lake::state::marker_key(DEAD_LETTER_PREFIX, raw_key);
                if let Err(pe) = store
                    .put(&dl, PutPayload::from(body.to_string().into_bytes()))
                    .await
                {
                    tracing::error!(raw_key, error = %pe, "could not record dead letter");
                }
                tracing::error!(raw_key, error = %e, "normalize gave up; recorded as dead letter");
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures::TryStreamExt;
    use natlake_raw::{BatchHeader, BatchWriter, Record};

    pub(crate) const CT_NEW: &str = "<134>1 2023-11-14T22:13:20Z cgn1 ct - - - [1700000000.000000]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.0.1 dst=203.0.113.5 sport=40000 dport=443 [UNREPLIED] src=203.0.113.5 dst=198.51.100.7 sport=443 dport=61000";

    /// A record that yields several rows (a goflow2 flow with its post-NAT mapping) gives every
    /// row the sender's name, not only the last.
    #[test]
    fn every_row_of_a_record_names_its_device() {
        let line = r#"{"type":"IPFIX","time_received_ns":1700000001000000000,"sampling_rate":0,"sampler_address":"192.0.2.1","time_flow_start_ns":1700000000000000000,"time_flow_end_ns":1700000000500000000,"bytes":1500,"packets":3,"src_addr":"100.64.5.6","dst_addr":"198.51.100.10","etype":"IPv4","proto":"TCP","src_port":40001,"dst_port":443,"in_if":2,"out_if":3,"post_nat_src_ipv4_address":"203.0.113.77","post_nat_src_transport_port":61001}"#;
        assert_eq!(
            devices_of(&[("192.0.2.44:6343", line.as_bytes())]),
            [Some("192.0.2.44".into()), Some("192.0.2.44".into())]
        );
    }

    /// The device of each row normalized from `records` (`(peer, payload)`), in order.
    fn devices_of(records: &[(&str, &[u8])]) -> Vec<Option<String>> {
        let obj = labelled_object(&[], records);
        let n = normalize_bytes(
            "raw/syslog_udp/d.nlraw.zst",
            &obj,
            Format::Auto,
            &NormalizeConfig::default(),
        );
        assert_eq!(n.report.rejects, 0, "{:?}", n.rejects);
        n.rows
            .iter()
            .map(|r| r.envelope.device.as_deref().map(str::to_owned))
            .collect()
    }

    /// Records from several devices in one object, interleaved: each row names its own (the
    /// names are kept and reused while they repeat), a HOSTNAME before the sender's address.
    #[test]
    fn interleaved_devices_keep_their_own_names() {
        let line = |host: &str| {
            format!(
                "<14>1 2023-11-14T22:13:20Z {host} RT_FLOW - RT_FLOW_SESSION_CREATE [junos@2636.1.1.1.2.39 source-address=\"100.64.0.1\" source-port=\"40000\" destination-address=\"198.51.100.1\" destination-port=\"443\" nat-source-address=\"203.0.113.1\" nat-source-port=\"50000\" protocol-id=\"6\"]"
            )
        };
        let (a, b, bare) = (line("srx-a"), line("srx-b"), line("-"));
        let devices = devices_of(&[
            ("192.0.2.1:514", a.as_bytes()),
            ("192.0.2.2:514", b.as_bytes()),
            ("192.0.2.1:514", a.as_bytes()),
            ("192.0.2.3:514", bare.as_bytes()),
            ("192.0.2.4:514", bare.as_bytes()),
            ("192.0.2.3:514", bare.as_bytes()),
            ("192.0.2.2:514", b.as_bytes()),
        ]);
        let want = [
            "srx-a",
            "srx-b",
            "srx-a",
            "192.0.2.3",
            "192.0.2.4",
            "192.0.2.3",
            "srx-b",
        ];
        assert_eq!(devices, want.map(|d| Some(d.to_owned())));
    }

    pub(crate) fn raw_object(payloads: &[&[u8]]) -> Vec<u8> {
        let records: Vec<(&str, &[u8])> = payloads.iter().map(|p| ("192.0.2.1:514", *p)).collect();
        labelled_object(&[], &records)
    }

    /// A syslog raw object with header `labels`, of `(peer, payload)` records.
    fn labelled_object(labels: &[(&str, &str)], records: &[(&str, &[u8])]) -> Vec<u8> {
        labelled_object_at(1_700_000_001_000_000_000, labels, records)
    }

    /// An object of syslog records all received at `recv_ns`.
    fn labelled_object_at(
        recv_ns: i64,
        labels: &[(&str, &str)],
        records: &[(&str, &[u8])],
    ) -> Vec<u8> {
        let header = BatchHeader {
            format_version: natlake_raw::VERSION,
            relay_id: "t".into(),
            batch_id: "b".into(),
            kind: InputKind::SyslogUdp,
            created_ns: 1_700_000_000_000_000_000,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut w = BatchWriter::new(&header, 3).unwrap();
        for (peer, payload) in records {
            w.push(&Record {
                recv_ns,
                kind: InputKind::SyslogUdp,
                flags: 0,
                peer: Some(peer.parse().unwrap()),
                payload: payload.to_vec(),
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    async fn keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
        let mut k: Vec<String> = store
            .list(Some(&Path::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        k.sort();
        k
    }

    #[tokio::test]
    async fn normalizes_idempotently_and_keeps_rejects() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let key = "raw/syslog_udp/hour=2023-11-14T22/t_b.nlraw.zst";
        let absurd = CT_NEW.replace("[1700000000.000000]", "[4102444800.000000]");
        let obj = raw_object(&[
            CT_NEW.as_bytes(),
            b"\xff\xfe binary junk",
            absurd.as_bytes(),
        ]);
        store
            .put(&Path::from(key), PutPayload::from(obj))
            .await
            .unwrap();
        let cfg = NormalizeConfig::default();
        let r1 = normalize_object(&store, key, &cfg).await.unwrap();
        assert_eq!((r1.records, r1.events, r1.rejects), (3, 1, 2));
        assert_eq!(
            r1.outputs,
            vec![
                "lake/nat_events/hour=2023-11-14T22/x_net=198.51.100.0_24/t_b.parquet".to_string(),
                "lake/rejects/hour=2023-11-14T22/t_b.parquet".to_string(),
            ]
        );
        assert!(is_done(&store, key).await.unwrap());
        let before = keys(&store, "lake").await;
        let r2 = normalize_object(&store, key, &cfg).await.unwrap();
        assert_eq!(r1, r2, "same input, same report");
        assert_eq!(
            keys(&store, "lake").await,
            before,
            "a second run writes the same keys"
        );
    }

    /// A local directory store, driven inline on the CPU pool ([`NormalizeConfig::inline_io`]),
    /// writes the same files as through tokio's blocking pool, and a failure there is an error
    /// like any other (the inline path must never need the async runtime it is not in).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_store_driven_inline_writes_the_same_lake() {
        let key = "raw/syslog_udp/hour=2023-11-14T22/t_i.nlraw.zst";
        let obj = raw_object(&[CT_NEW.as_bytes(), b"\xff\xfe binary junk"]);
        let mut lakes = Vec::new();
        for inline_io in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("file://{}", dir.path().display());
            assert!(natlake_store::completes_inline(&url));
            let store = natlake_store::open(&url, &Default::default()).unwrap();
            store
                .put(&Path::from(key), PutPayload::from(obj.clone()))
                .await
                .unwrap();
            let cfg = NormalizeConfig {
                inline_io,
                ..NormalizeConfig::default()
            };
            let r = normalize_with_retry(&store, key, &cfg, 1).await.unwrap();
            assert_eq!((r.records, r.events, r.rejects), (2, 1, 1));
            assert!(is_done(&store, key).await.unwrap());
            let mut files = Vec::new();
            for k in keys(&store, "lake").await {
                let bytes = store.get(&Path::from(k.as_str())).await.unwrap();
                files.push((k, bytes.bytes().await.unwrap()));
            }
            assert_eq!(files.len(), 2, "nat_events and rejects");
            // A missing object: the read fails and is reported, inline as pooled.
            let missing = "raw/syslog_udp/hour=2023-11-14T22/gone.nlraw.zst";
            let e = normalize_object(&store, missing, &cfg).await.unwrap_err();
            assert!(
                matches!(e, NormalizeError::Read { .. }),
                "inline_io {inline_io}: {e}"
            );
            lakes.push(files);
        }
        assert_eq!(lakes[0], lakes[1]);
        assert!(!natlake_store::completes_inline("s3://bucket/lake"));
    }

    /// An object that failed before and is normalized by a later run loses its dead letter
    /// (lookups report dead letters as lost data for as long as the lake keeps them); one that
    /// fails every attempt gets one.
    #[tokio::test]
    async fn a_later_success_removes_the_dead_letter_and_the_acceptance() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let key = "raw/syslog_udp/hour=2023-11-14T22/t_d.nlraw.zst";
        let dead = natlake_core::lake::state::marker_key(DEAD_LETTER_PREFIX, key);
        let cfg = NormalizeConfig::default();
        // Not there yet: the only attempt fails, and the failure is recorded.
        assert!(normalize_with_retry(&store, key, &cfg, 1).await.is_err());
        assert!(store.head(&dead).await.is_ok(), "dead letter written");
        // An operator accepted the loss; then the object turned up after all.
        let accepted = natlake_core::lake::state::marker_key(ACCEPTED_PREFIX, key);
        store.put(&accepted, PutPayload::from("{}")).await.unwrap();
        store
            .put(
                &Path::from(key),
                PutPayload::from(raw_object(&[CT_NEW.as_bytes()])),
            )
            .await
            .unwrap();
        let r = normalize_with_retry(&store, key, &cfg, 1).await.unwrap();
        assert_eq!(r.events, 1);
        assert!(is_done(&store, key).await.unwrap());
        for (marker, what) in [(dead, "dead letter"), (accepted, "acceptance")] {
            assert!(
                matches!(
                    store.head(&marker).await,
                    Err(object_store::Error::NotFound { .. })
                ),
                "{what} removed"
            );
        }
    }

    /// A real export packet from the shared corpus (read at test time, never copied here).
    fn corpus_bin(name: &str) -> Vec<u8> {
        let dir = std::env::var_os("NATLAKE_CORPUS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| natlake_core::testing::repo_dir().join("../shared/corpus"));
        let path = dir.join("bin/logstash-codec-netflow").join(name);
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; set NATLAKE_CORPUS", path.display()))
    }

    /// Export time of a v9 / IPFIX message, in ns: what the relay's receive time would be near.
    fn export_ns(pkt: &[u8]) -> i64 {
        let at = if pkt.get(1) == Some(&9) { 8 } else { 4 };
        pkt.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| i64::from(u32::from_be_bytes(b)) * 1_000_000_000)
    }

    /// A raw object as the relay writes it: `(context?, payload)` records from one exporter.
    fn flow_object(kind: InputKind, records: &[(bool, &[u8])]) -> Vec<u8> {
        let recv_ns = records.iter().map(|(_, p)| export_ns(p)).max().unwrap_or(0) + 1_000_000_000;
        let header = BatchHeader {
            format_version: natlake_raw::VERSION,
            relay_id: "r1".into(),
            batch_id: "b".into(),
            kind,
            created_ns: recv_ns,
            labels: Default::default(),
        };
        let mut w = BatchWriter::new(&header, 3).unwrap();
        for (context, p) in records {
            w.push(&Record {
                recv_ns,
                kind,
                flags: if *context {
                    natlake_raw::FLAG_CONTEXT
                } else {
                    0
                },
                peer: Some("192.0.2.9:2055".parse().unwrap()),
                payload: p.to_vec(),
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    fn nat_rows(n: &Normalized) -> Vec<&natlake_core::model::NatEvent> {
        n.rows
            .iter()
            .filter_map(|r| match &r.event {
                Event::Nat(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// The rejects counter says where junk comes from and what kind of junk it is, with label
    /// values from fixed sets (the exact reason, with values, is in the rejects table).
    #[test]
    fn rejects_are_counted_by_source_format_and_class() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let absurd = CT_NEW.replace("[1700000000.000000]", "[4102444800.000000]");
        let obj = raw_object(&[
            CT_NEW.as_bytes(),
            b"not a log line from anything",
            b"also junk",
            absurd.as_bytes(),
            b"<134>Nov 14 22:13:20 fw1 filterlog: 5,,,1000000103,igb0,match,block,in,4,0x0,,64,0,0,DF,6,tcp,60,10.0.0.999,10.0.0.2,1,2,0,S,1,,64240,,mss",
        ]);
        let n = metrics::with_local_recorder(&recorder, || {
            normalize_bytes(
                "raw/syslog_udp/t.nlraw.zst",
                &obj,
                Format::Auto,
                &NormalizeConfig::default(),
            )
        });
        assert_eq!((n.rows.len(), n.rejects.len()), (1, 4), "{:?}", n.rejects);
        let text = handle.render();
        for (labels, count) in [
            (
                r#"source="syslog_udp",format="auto",reason="unrecognised""#,
                2,
            ),
            (
                r#"source="syslog_udp",format="conntrack",reason="absurd_time""#,
                1,
            ),
            (
                r#"source="syslog_udp",format="pfsense",reason="invalid""#,
                1,
            ),
        ] {
            let line = format!("natlake_normalize_rejects_total{{{labels}}} {count}");
            assert!(text.contains(&line), "{line} not in:\n{text}");
        }
    }

    /// RFC 3164 stamps carry no zone: each sender's comes from the time-zones file (longest
    /// peer prefix), else the object's `tz` label, else the default.
    #[test]
    fn device_time_zones_by_peer_label_and_default() {
        // Received 2023-11-14T22:13:21Z; every device stamped its local 23:13:20 (Berlin, UTC+1
        // in November) or 17:13:20 (New York, UTC-5) for the same instant.
        let line = |stamp: &str, sport: u16| {
            format!(
                "<134>Nov 14 {stamp} cgn1 conntrack: [NEW] tcp      6 120 SYN_SENT src=100.64.0.1 dst=203.0.113.5 sport={sport} dport=443 [UNREPLIED] src=203.0.113.5 dst=198.51.100.7 sport=443 dport=61000"
            )
        };
        let object = |labels: &[(&str, &str)], records: &[(&str, String)]| {
            let records: Vec<(&str, &[u8])> =
                records.iter().map(|(p, l)| (*p, l.as_bytes())).collect();
            labelled_object(labels, &records)
        };
        let times = |n: &Normalized| -> Vec<(u16, i64)> {
            let mut v: Vec<_> = nat_rows(n)
                .iter()
                .map(|e| (e.src_port.unwrap(), e.time))
                .collect();
            v.sort();
            v
        };
        let instant = 1_700_000_000_000_000; // 2023-11-14T22:13:20Z
        let cfg = NormalizeConfig {
            time_zones: crate::time_zones::TimeZones::from_toml(
                "default = \"Europe/Berlin\"\n[[source]]\npeer = \"192.0.2.0/24\"\nzone = \"America/New_York\"",
            )
            .unwrap(),
            ..NormalizeConfig::default()
        };
        let obj = object(
            &[],
            &[
                ("192.0.2.1:514", line("17:13:20", 1)),
                ("198.51.100.9:514", line("23:13:20", 2)),
            ],
        );
        let n = normalize_bytes("raw/syslog_udp/a.nlraw.zst", &obj, Format::Auto, &cfg);
        assert_eq!(times(&n), [(1, instant), (2, instant)]);

        // The relay's label names the zone of senders no entry names.
        let obj = object(
            &[("tz", "+05:30")],
            &[
                ("192.0.2.1:514", line("17:13:20", 1)),
                ("198.51.100.9:514", line("03:43:20", 2)),
            ],
        );
        let n = normalize_bytes("raw/syslog_udp/b.nlraw.zst", &obj, Format::Auto, &cfg);
        // 03:43:20 on Nov 14 at +05:30 is 22:13:20 on Nov 13: the stamp's own date counts.
        assert_eq!(times(&n), [(1, instant), (2, instant - 86_400_000_000)]);

        // A label that names no zone: the senders that need it are rejected with the reason;
        // a sender with its own [[source]] zone is still read.
        let obj = object(
            &[("tz", "Europe/Berln")],
            &[
                ("192.0.2.1:514", line("17:13:20", 1)),
                ("198.51.100.9:514", line("23:13:20", 2)),
            ],
        );
        let n = normalize_bytes("raw/syslog_udp/d.nlraw.zst", &obj, Format::Auto, &cfg);
        assert_eq!(times(&n), [(1, instant)]);
        assert_eq!(n.rejects.len(), 1);
        assert!(
            n.rejects[0].reason.contains("Europe/Berln"),
            "{}",
            n.rejects[0].reason
        );
        assert_eq!(n.rejects[0].peer.as_deref(), Some("198.51.100.9:514"));

        // Nothing configured: UTC, as before.
        let n = normalize_bytes(
            "raw/syslog_udp/c.nlraw.zst",
            &object(&[], &[("192.0.2.1:514", line("22:13:20", 1))]),
            Format::Auto,
            &NormalizeConfig::default(),
        );
        assert_eq!(times(&n), [(1, instant)]);
    }

    /// A stamp is read at its own wall-clock time's offset, not the receive time's: around a
    /// clock change, and for logs a device buffered across one, the two differ by an hour,
    /// and an hour off names whoever held the port an hour earlier.
    #[test]
    fn device_stamps_keep_their_offset_across_clock_changes() {
        let line = |stamp: &str, sport: u16| {
            format!(
                "<134>{stamp} cgn1 conntrack: [NEW] tcp      6 120 SYN_SENT src=100.64.0.1 dst=203.0.113.5 sport={sport} dport=443 [UNREPLIED] src=203.0.113.5 dst=198.51.100.7 sport=443 dport=61000"
            )
        };
        let utc = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        let cfg = NormalizeConfig {
            time_zones: crate::time_zones::TimeZones::from_toml("default = \"Europe/Berlin\"")
                .unwrap(),
            ..NormalizeConfig::default()
        };
        let run = |recv: &str, stamps: &[(&str, u16)]| -> Vec<(u16, i64)> {
            let lines: Vec<String> = stamps.iter().map(|(s, p)| line(s, *p)).collect();
            let records: Vec<(&str, &[u8])> = lines
                .iter()
                .map(|l| ("192.0.2.1:514", l.as_bytes()))
                .collect();
            let obj = labelled_object_at(utc(recv) * 1000, &[], &records);
            let n = normalize_bytes("raw/syslog_udp/z.nlraw.zst", &obj, Format::Auto, &cfg);
            assert!(n.rejects.is_empty(), "{:?}", n.rejects);
            let mut v: Vec<_> = nat_rows(&n)
                .iter()
                .map(|e| (e.src_port.unwrap(), e.time))
                .collect();
            v.sort();
            v
        };
        // Received half a second after the spring change (01:00 UTC): the stamp written a
        // second before it is CET, the one after it CEST, a January one buffered since is CET.
        assert_eq!(
            run(
                "2026-03-29T01:00:00.5Z",
                &[
                    ("Mar 29 01:59:59", 1),
                    ("Mar 29 03:00:00", 2),
                    ("Jan 15 12:00:00", 3)
                ]
            ),
            [
                (1, utc("2026-03-29T00:59:59Z")),
                (2, utc("2026-03-29T01:00:00Z")),
                (3, utc("2026-01-15T11:00:00Z"))
            ]
        );
        // The repeated autumn hour: the reading nearer the receive time. The last: written a
        // second before the change, received after it (the receive time's offset: an hour late).
        for (recv, stamp, want) in [
            (
                "2026-10-25T00:30:01Z",
                "Oct 25 02:30:00",
                "2026-10-25T00:30:00Z",
            ),
            (
                "2026-10-25T01:30:01Z",
                "Oct 25 02:30:00",
                "2026-10-25T01:30:00Z",
            ),
            (
                "2026-10-25T01:00:00.5Z",
                "Oct 25 02:59:59",
                "2026-10-25T00:59:59Z",
            ),
        ] {
            assert_eq!(run(recv, &[(stamp, 1)]), [(1, utc(want))], "{recv}");
        }
    }

    #[test]
    fn flow_objects_decode_on_their_own_from_their_context() {
        let tpl = corpus_bin("netflow9_test_cisco_asa_1_tpl.dat");
        let data = corpus_bin("netflow9_test_cisco_asa_1_data.dat");
        let cfg = NormalizeConfig::default();
        // The batch that received the template packet: templates only, nothing to store.
        let first = flow_object(InputKind::Netflow, &[(false, &tpl)]);
        let n = normalize_bytes("raw/netflow/a.nlraw.zst", &first, Format::Auto, &cfg);
        assert_eq!((n.rows.len(), n.rejects.len()), (0, 0), "{:?}", n.report);
        // The next batch: the relay replays the templates as context, then the data.
        let second = flow_object(InputKind::Netflow, &[(true, &tpl), (false, &data)]);
        let n = normalize_bytes("raw/netflow/b.nlraw.zst", &second, Format::Auto, &cfg);
        assert_eq!(n.report.records, 2);
        assert_eq!(n.report.context, 1);
        assert_eq!(n.report.flow_records, 14, "logstash decode.size");
        assert_eq!(n.report.template_missing, 0);
        assert_eq!(n.rejects.len(), 0, "{:?}", n.rejects);
        assert_eq!(n.report.events, 14);
        assert!(n.rows.iter().all(|r| r.provenance.raw_record == 1
            && r.envelope.format == "netflow_v9"
            && r.envelope.device.as_deref() == Some("192.0.2.9")));
        // record[1] of the spec: its xlate source repeats the real one (untranslated): a flow.
        let f = n
            .rows
            .iter()
            .find_map(|r| match &r.event {
                Event::Flow(f) if f.post_nat_src_port == Some(17549) => Some(f),
                _ => None,
            })
            .expect("record[1] of the spec");
        assert_eq!(f.src_ip, Some("192.168.23.22".parse().unwrap()));
        assert!(nat_rows(&n).is_empty(), "ASA #1 translates nothing");

        // The data before its template in one object (a relay restarted: no context yet, the
        // exporter's template refresh arrives after the first data): decoded at the object's end.
        let late = flow_object(InputKind::Netflow, &[(false, &data), (false, &tpl)]);
        let n = normalize_bytes("raw/netflow/d.nlraw.zst", &late, Format::Auto, &cfg);
        assert_eq!(n.report.flow_records, 14, "{:?}", n.report);
        assert!(n.report.template_late > 0);
        assert_eq!((n.report.template_missing, n.rejects.len()), (0, 0));
        assert!(n.rows.iter().all(|r| r.provenance.raw_record == 0));

        // Without the context the same data is kept in rejects, one per data set, with the
        // reason and the set's bytes.
        let alone = flow_object(InputKind::Netflow, &[(false, &data)]);
        let n = normalize_bytes("raw/netflow/c.nlraw.zst", &alone, Format::Auto, &cfg);
        assert_eq!(n.rows.len(), 0);
        assert!(n.report.template_missing > 0);
        assert_eq!(n.rejects.len() as u64, n.report.template_missing);
        for r in &n.rejects {
            assert!(
                r.reason.starts_with("no template ")
                    && r.reason.contains("for exporter 192.0.2.9 domain "),
                "{}",
                r.reason
            );
            assert_eq!(r.provenance.raw_record, 0);
            assert_eq!(r.input_kind, "netflow");
            // The message header and the set: a message of its own, no bigger than the datagram.
            assert_eq!(r.payload[..20], data[..20]);
            assert!(r.payload.len() > 20 && r.payload.len() <= data.len());
        }
    }

    /// An exporter restarts within one object and redefines its template ids: data sets that
    /// came before the first definition decode with that one, not with the last.
    #[test]
    fn data_before_a_template_decodes_with_the_definition_that_follows_it() {
        let tpl = corpus_bin("netflow9_test_cisco_asa_1_tpl.dat");
        let data = corpus_bin("netflow9_test_cisco_asa_1_data.dat");
        // The same template ids with source and destination address swapped (IE 8 <-> 12).
        let mut swapped = tpl.clone();
        let (src, dst) = ([0u8, 8, 0, 4], [0u8, 12, 0, 4]);
        let mut at = 20;
        while at + 4 <= swapped.len() {
            let field = [
                swapped[at],
                swapped[at + 1],
                swapped[at + 2],
                swapped[at + 3],
            ];
            if field == src {
                swapped[at..at + 4].copy_from_slice(&dst);
            } else if field == dst {
                swapped[at..at + 4].copy_from_slice(&src);
            }
            at += 2;
        }
        assert_ne!(swapped, tpl);
        let object = flow_object(
            InputKind::Netflow,
            &[
                (false, &data),
                (false, &tpl),
                (false, &swapped),
                (false, &data),
            ],
        );
        let n = normalize_bytes(
            "raw/netflow/e.nlraw.zst",
            &object,
            Format::Auto,
            &NormalizeConfig::default(),
        );
        assert_eq!(
            (n.report.template_missing, n.rejects.len()),
            (0, 0),
            "{:?}",
            n.report
        );
        assert_eq!(n.report.flow_records, 28, "{:?}", n.report);
        let of = |record: u64| -> Vec<&Row> {
            n.rows
                .iter()
                .filter(|r| r.provenance.raw_record == record)
                .collect()
        };
        // The first data: ASA #1 as its own template says — untranslated flows, record[1] from
        // 192.168.23.22.
        let first = of(0);
        assert_eq!(first.len(), 14);
        assert!(first.iter().all(|r| matches!(r.event, Event::Flow(_))));
        assert!(first.iter().any(|r| matches!(&r.event,
            Event::Flow(f) if f.post_nat_src_port == Some(17549)
                && f.src_ip == Some("192.168.23.22".parse().unwrap()))));
        // The data after the redefinition: addresses swapped, so the xlate source no longer
        // repeats the source and the records read as translations.
        let last = of(3);
        assert_eq!(last.len(), 14);
        assert!(last.iter().any(|r| matches!(r.event, Event::Nat(_))));
        assert!(!last.iter().any(|r| matches!(&r.event,
            Event::Flow(f) if f.src_ip == Some("192.168.23.22".parse().unwrap()))));
    }

    #[tokio::test]
    async fn ipfix_objects_reach_the_lake_with_the_subscriber() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let key = "raw/ipfix/hour=2017-01-01T00/r1_nokia.nlraw.zst";
        let obj = flow_object(
            InputKind::Ipfix,
            &[
                (true, &corpus_bin("ipfix_test_nokia_bras_tpl.dat")),
                (false, &corpus_bin("ipfix_test_nokia_bras_data256.dat")),
            ],
        );
        let n = normalize_bytes(key, &obj, Format::Auto, &NormalizeConfig::default());
        assert_eq!((n.rows.len(), n.rejects.len()), (1, 0), "{:?}", n.rejects);
        let row = &n.rows[0];
        assert_eq!(
            row.envelope.subscriber.as_deref(),
            Some("USER1@10.10.0.123")
        );
        assert_eq!(row.envelope.format, "ipfix");
        let Event::Flow(f) = &row.event else {
            panic!("{row:?}")
        };
        assert_eq!(f.src_ip, Some("10.0.1.228".parse().unwrap()));
        assert_eq!(f.dst_port, Some(80));

        // MikroTik through the whole handler: flows plus their observed mappings, partitioned.
        let obj = flow_object(
            InputKind::Ipfix,
            &[
                (true, &corpus_bin("ipfix_test_mikrotik_tpl.dat")),
                (false, &corpus_bin("ipfix_test_mikrotik_data258.dat")),
                (false, &corpus_bin("ipfix_test_mikrotik_data259.dat")),
            ],
        );
        store
            .put(&Path::from(key), PutPayload::from(obj))
            .await
            .unwrap();
        let r = normalize_object(&store, key, &NormalizeConfig::default())
            .await
            .unwrap();
        assert_eq!(r.flow_records, 46, "logstash decode.size");
        assert_eq!(r.rejects, 0);
        assert!(r.events >= 46, "{r:?}");
        assert!(
            r.outputs.iter().any(
                |k| k.starts_with("lake/nat_events/") && k.contains("/x_net=192.168.230.0_24/")
            ),
            "{:?}",
            r.outputs
        );
        assert!(r.outputs.iter().any(|k| k.starts_with("lake/flows/")));
        let marker: Report = serde_json::from_slice(
            &store
                .get(&marker_key(key))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(marker, r);
    }

    #[test]
    fn bad_flow_records_are_rejected_with_reasons() {
        let tpl = corpus_bin("netflow9_test_cisco_asa_2_tpl_26x.dat");
        let data = corpus_bin("netflow9_test_cisco_asa_2_data.dat");
        let cut = &data[..data.len() / 2];
        let obj = flow_object(
            InputKind::Netflow,
            &[
                (true, &tpl),
                (true, &corpus_bin("netflow9_test_cisco_asa_2_tpl_27x.dat")),
                (false, cut),
                (false, b"\x00\x0a\x00"),
                (false, b"certainly not a flow export"),
            ],
        );
        let n = normalize_bytes(
            "raw/netflow/d.nlraw.zst",
            &obj,
            Format::Auto,
            &NormalizeConfig::default(),
        );
        let reasons: Vec<(u64, &str)> = n
            .rejects
            .iter()
            .map(|r| (r.provenance.raw_record, r.reason.as_str()))
            .collect();
        assert!(
            reasons
                .iter()
                .any(|(i, r)| *i == 2 && r.starts_with("truncated")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|(i, r)| *i == 3 && r.contains("header")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(i, r)| *i == 4 && r.starts_with("not a flow export")),
            "{reasons:?}"
        );
        // The complete sets before the cut still gave their rows, each tied to record 2.
        assert!(n.rows.iter().all(|r| r.provenance.raw_record == 2));
        assert_eq!(n.report.events, n.rows.len() as u64);
    }

    /// One column of a lake object as text (nulls as None), for assertions.
    fn column_text(batches: &[arrow::array::RecordBatch], name: &str) -> Vec<Option<String>> {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let mut out = Vec::new();
        for b in batches {
            let col = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"));
            let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()).unwrap();
            for i in 0..b.num_rows() {
                out.push((!col.is_null(i)).then(|| f.value(i).to_string()));
            }
        }
        out
    }

    /// Web, mail and sshd lines in one raw object: each reaches its own table, partitioned by
    /// the remote party's address, and the broken ones reach rejects with what is wrong.
    #[tokio::test]
    async fn log_aggregation_lines_reach_their_tables() {
        use arrow::array::Array as _;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let key = "raw/syslog_udp/hour=2023-11-14T22/t_logs.nlraw.zst";
        // Sources: nginx shape with a documentation address; logstash-patterns-core httpd_spec
        // (@10d9a93); fail2ban logs/sshd (@5d6cead) and logs/postfix (@04e932b);
        // whyscream/postfix-grok-patterns POSTFIX_QMGR.log (@74a5248).
        let lines: [&[u8]; 8] = [
            br#"<190>Nov 14 22:10:00 web1 nginx: 2001:db8:1::5 - - [14/Nov/2023:22:09:59 +0000] "GET /a HTTP/1.1" 200 5 "-" "ua" "-""#,
            br#"83.149.9.216 - - [24/Feb/2015:23:13:42 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0""#,
            b"Sep 29 16:28:02 spaceman sshd[16699]: Failed password for dan from 127.0.0.1 port 45416 ssh1",
            b"Jul 12 07:47:48 saturn postfix/smtpd[8738]: NOQUEUE: reject: RCPT from 1-2-3-4-example.com[1.2.3.4]: 554 5.7.1 <smtp@example.com>: Relay access denied; from=<john@example.com> to=<smtp@example.org> proto=SMTP helo=<198.51.100.17>",
            b"Jul 12 07:47:49 saturn postfix/qmgr[90]: 0F5383D: from=<owner-postfix-users@postfix.org>, size=5360, nrcpt=1 (queue active)",
            br#"83.149.9.216 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 9999 1"#,
            b"Sep 29 16:28:03 spaceman sshd[16700]: Failed password for dan from 69.245.39.297 port 34203 ssh2",
            br#"<190>Nov 14 22:10:00 web1 nginx: 203.0.113.7 - - [14/Nov/2023:22:09:59 +0000] "GET /index.html HTTP/1"#,
        ];
        store
            .put(&Path::from(key), PutPayload::from(raw_object(&lines)))
            .await
            .unwrap();
        let r = normalize_object(&store, key, &NormalizeConfig::default())
            .await
            .unwrap();
        assert_eq!((r.records, r.events, r.rejects), (8, 5, 3), "{r:?}");
        let want = [
            "lake/auth/hour=2023-09-29T16/x_net=127.0.0.0_24/t_logs.parquet",
            "lake/http_access/hour=2015-02-24T23/x_net=83.149.9.0_24/t_logs.parquet",
            "lake/http_access/hour=2023-11-14T22/x_net=2001-db8-1--_48/t_logs.parquet",
            "lake/mail/hour=2023-07-12T07/x_net=1.2.3.0_24/t_logs.parquet",
            "lake/mail/hour=2023-07-12T07/x_net=none/t_logs.parquet",
            "lake/rejects/hour=2023-11-14T22/t_logs.parquet",
        ];
        let mut got = r.outputs.clone();
        got.sort();
        assert_eq!(got, want);
        let get = |k: &str| {
            let store = store.clone();
            let k = k.to_string();
            async move {
                let b = store
                    .get(&Path::from(k))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                natlake_core::lake::read::parquet_batches(b).unwrap()
            }
        };
        let web = get(want[2]).await;
        assert_eq!(
            column_text(&web, "client_ip"),
            [Some("2001:db8:1::5".into())]
        );
        assert_eq!(column_text(&web, "server"), [Some("nginx".into())]);
        assert_eq!(column_text(&web, "device"), [Some("web1".into())]);
        assert_eq!(column_text(&web, "status"), [Some("200".into())]);
        let web = get(want[1]).await;
        assert_eq!(column_text(&web, "bytes"), [Some("203023".into())]);
        assert_eq!(column_text(&web, "format"), [Some("apache".into())]);
        assert_eq!(column_text(&web, "server"), [None]);
        let ssh = get(want[0]).await;
        assert_eq!(column_text(&ssh, "user"), [Some("dan".into())]);
        assert_eq!(column_text(&ssh, "src_port"), [Some("45416".into())]);
        assert_eq!(column_text(&ssh, "result"), [Some("failure".into())]);
        assert_eq!(column_text(&ssh, "pid"), [Some("16699".into())]);
        assert_eq!(column_text(&ssh, "raw_record"), [Some("2".into())]);
        let mail = get(want[3]).await;
        assert_eq!(column_text(&mail, "client_ip"), [Some("1.2.3.4".into())]);
        assert_eq!(column_text(&mail, "dsn"), [Some("5.7.1".into())]);
        assert_eq!(column_text(&mail, "queue_id"), [Some("NOQUEUE".into())]);
        let mail = get(want[4]).await;
        assert_eq!(column_text(&mail, "size"), [Some("5360".into())]);
        assert_eq!(column_text(&mail, "event"), [Some("queued".into())]);
        let rejects = get(want[5]).await;
        let reasons = column_text(&rejects, "reason");
        let records = column_text(&rejects, "raw_record");
        let formats = column_text(&rejects, "format");
        let mut seen: Vec<(String, String, String)> = reasons
            .into_iter()
            .zip(records)
            .zip(formats)
            .map(|((a, b), c)| (b.unwrap(), c.unwrap(), a.unwrap()))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    "5".into(),
                    "apache".into(),
                    "status 9999 out of range".into()
                ),
                (
                    "6".into(),
                    "sshd".into(),
                    "invalid source address \"69.245.39.297\" in failed message".into()
                ),
                (
                    "7".into(),
                    "nginx".into(),
                    "request line has no closing quote (truncated line?)".into()
                ),
            ]
        );
        // The rejects keep the bytes as received.
        let col = rejects[0].column_by_name("payload").unwrap();
        assert_eq!((col.len(), col.null_count()), (3, 0));
    }

    #[test]
    fn damaged_objects_keep_what_precedes_the_damage() {
        let obj = raw_object(&[CT_NEW.as_bytes(), CT_NEW.as_bytes()]);
        let cut = &obj[..obj.len() - 8];
        let n = normalize_bytes(
            "raw/k.nlraw.zst",
            cut,
            Format::Auto,
            &NormalizeConfig::default(),
        );
        assert!(n.report.damage.is_some(), "{:?}", n.report);
        assert_eq!(n.rejects.len(), 1, "the damage is one reject");
        let n = normalize_bytes(
            "raw/k.nlraw.zst",
            b"definitely not zstd",
            Format::Auto,
            &NormalizeConfig::default(),
        );
        assert_eq!((n.rows.len(), n.rejects.len()), (0, 1));
        assert_eq!(n.rejects[0].payload, b"definitely not zstd");
        assert!(n.rejects[0].reason.starts_with("unreadable raw object"));
    }

    /// Column `name` of a batch as text per row (nulls as None), whatever its type.
    fn text_column(b: &arrow::array::RecordBatch, name: &str) -> Vec<Option<String>> {
        let c = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let f =
            arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default()).unwrap();
        (0..b.num_rows())
            .map(|i| c.is_valid(i).then(|| f.value(i).to_string()))
            .collect()
    }

    async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
        store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .unwrap();
    }

    async fn batch(store: &Arc<dyn ObjectStore>, key: &str) -> arrow::array::RecordBatch {
        let bytes = store
            .get(&Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut b = natlake_core::lake::read::parquet_batches(bytes).unwrap();
        assert_eq!(b.len(), 1);
        b.remove(0)
    }

    const ENRICH_TOML: &str = r#"
reload_secs = 1
[prefixes]
path = "enrich/prefixes.csv"
format = "csv"
[[identity]]
path = "enrich/radius.json"
format = "radius_json"
[geo]
asn = "enrich/asn.mmdb"
country = "enrich/country.mmdb"
[cloudfoundry]
path = "enrich/containers.json"
"#;

    const RADIUS_ALICE_BOB: &str = r#"[
      {"Acct-Status-Type": "Start", "User-Name": "alice", "Framed-IP-Address": "100.64.0.1", "Event-Timestamp": 1699999200, "Acct-Session-Id": "a"},
      {"Acct-Status-Type": "Stop", "User-Name": "alice", "Framed-IP-Address": "100.64.0.1", "Event-Timestamp": 1700000100, "Acct-Session-Id": "a"},
      {"Acct-Status-Type": "Start", "User-Name": "bob", "Framed-IP-Address": "100.64.0.1", "Event-Timestamp": 1700000400, "Acct-Session-Id": "b"}
    ]"#;

    async fn enrich_store() -> Arc<dyn ObjectStore> {
        use natlake_core::enrich::testing::mmdb;
        use serde_json::json;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        put(
            &store,
            "enrich/prefixes.csv",
            b"prefix,subscriber,site,role\n100.64.0.0/24,,FRA1,residential\n100.64.0.2/32,CUST-2,FRA1,business\n10.0.1.0/24,PREFIX-SUB,LAB,lab\n".to_vec(),
        )
        .await;
        put(
            &store,
            "enrich/radius.json",
            RADIUS_ALICE_BOB.as_bytes().to_vec(),
        )
        .await;
        put(
            &store,
            "enrich/asn.mmdb",
            mmdb(
                "GeoLite2-ASN",
                &[(
                    "203.0.113.0/24",
                    json!({"autonomous_system_number": 64496, "autonomous_system_organization": "Example Dst"}),
                )],
            ),
        )
        .await;
        put(
            &store,
            "enrich/country.mmdb",
            mmdb(
                "GeoLite2-Country",
                &[("203.0.113.0/24", json!({"country": {"iso_code": "NL"}}))],
            ),
        )
        .await;
        put(
            &store,
            "enrich/containers.json",
            br#"{"bfce786c-ab07-40ad-79f9-8f21": {"handle": "bfce786c-ab07-40ad-79f9-8f21", "ip": "10.255.73.3",
                 "metadata": {"app_id": "bc6f229d-5e4a-4c41-a63f-e8795496c283", "space_id": "b9f86312-a7d7-4bcf-b70f-a440436c210b",
                              "org_id": "604bd59e-4139-4734-a3be-4e97836eb790"}}}"#
                .to_vec(),
        )
        .await;
        store
    }

    async fn enrich_cfg(store: &Arc<dyn ObjectStore>) -> NormalizeConfig {
        NormalizeConfig {
            enrich: EnrichConfig::from_toml(ENRICH_TOML).unwrap(),
            ..NormalizeConfig::default()
        }
        .load_enrichment(store)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn enrichment_reaches_the_lake() {
        let store = enrich_store().await;
        let cfg = enrich_cfg(&store).await;
        // 100.64.0.1 at 22:13:20 (alice's session) and at 22:23:20 (bob's); 100.64.0.2 has
        // no session but a prefix of its own; a Cloud Foundry egress line from a container.
        let later = CT_NEW
            .replace("[1700000000.000000]", "[1700000600.000000]")
            .replace("sport=40000", "sport=40002")
            .replace("dport=61000", "dport=61002");
        let other = CT_NEW
            .replace("src=100.64.0.1", "src=100.64.0.2")
            .replace("dport=61000", "dport=61001");
        let cf = "<4>1 2023-11-14T22:13:30Z cell1 kernel - - - [88008.920287] OK_bfce786c-ab07-40ad-79f9-8 IN=s-010255073003 OUT=eth0 MAC=aa:aa:0a:ff:49:03:ee:ee:0a:ff:49:03:08:00 SRC=10.255.73.3 DST=203.0.113.9 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=45400 DF PROTO=TCP SPT=35236 DPT=80 WINDOW=29200 RES=0x00 SYN URGP=0 MARK=0x2";
        let key = "raw/syslog_udp/hour=2023-11-14T22/t_e.nlraw.zst";
        let obj = raw_object(&[
            CT_NEW.as_bytes(),
            later.as_bytes(),
            other.as_bytes(),
            cf.as_bytes(),
        ]);
        put(&store, key, obj.clone()).await;
        let r = normalize_object(&store, key, &cfg).await.unwrap();
        assert_eq!((r.events, r.rejects), (4, 0), "{r:?}");

        let nat = batch(
            &store,
            "lake/nat_events/hour=2023-11-14T22/x_net=198.51.100.0_24/t_e.parquet",
        )
        .await;
        let rows = natlake_core::lake::read::nat_rows(&nat).unwrap();
        let sub_at = |port: u16| {
            rows.iter()
                .find(|r| r.x_port == Some(port))
                .map(|r| r.subscriber.clone())
                .unwrap()
        };
        // The same inside address, two subscribers: who held it at each event's time.
        assert_eq!(sub_at(61000).as_deref(), Some("alice"));
        assert_eq!(sub_at(61002).as_deref(), Some("bob"));
        // No session: the prefix's own subscriber.
        assert_eq!(sub_at(61001).as_deref(), Some("CUST-2"));
        let x_port = text_column(&nat, "x_port");
        let i = x_port
            .iter()
            .position(|p| p.as_deref() == Some("61001"))
            .unwrap();
        let j = x_port
            .iter()
            .position(|p| p.as_deref() == Some("61000"))
            .unwrap();
        for (col, want_i, want_j) in [
            ("site", "FRA1", "FRA1"),
            ("prefix", "100.64.0.2/32", "100.64.0.0/24"),
            ("role", "business", "residential"),
            ("dst_asn", "64496", "64496"),
            ("dst_as_org", "Example Dst", "Example Dst"),
            ("dst_country", "NL", "NL"),
        ] {
            let c = text_column(&nat, col);
            assert_eq!(
                (c[i].as_deref(), c[j].as_deref()),
                (Some(want_i), Some(want_j)),
                "{col}"
            );
        }

        let fw = batch(
            &store,
            "lake/firewall/hour=2023-11-14T22/x_net=10.255.73.0_24/t_e.parquet",
        )
        .await;
        for (col, want) in [
            ("cf_event", Some("egress-allowed")),
            ("cf_container", Some("bfce786c-ab07-40ad-79f9-8f21")),
            ("cf_app", Some("bc6f229d-5e4a-4c41-a63f-e8795496c283")),
            ("cf_space", Some("b9f86312-a7d7-4bcf-b70f-a440436c210b")),
            ("cf_org", Some("604bd59e-4139-4734-a3be-4e97836eb790")),
            ("cf_app_name", None),
            ("dst_asn", Some("64496")),
            ("subscriber", None),
        ] {
            assert_eq!(text_column(&fw, col)[0].as_deref(), want, "{col}");
        }
        // The same row as the forwarder would have sent it.
        let n = normalize_bytes(key, &obj, Format::Auto, &cfg);
        let row = n
            .rows
            .iter()
            .find(|r| matches!(r.event, Event::Firewall(_)))
            .unwrap();
        let j = natlake_core::enrich::cloudfoundry::forwarder_json(row).unwrap();
        assert_eq!(j["message"], "cfnetworking.iptables.egress-allowed");
        assert_eq!(
            j["data"]["source"]["app_guid"],
            "bc6f229d-5e4a-4c41-a63f-e8795496c283"
        );
        assert_eq!(j["data"]["packet"]["dst_port"], 80);
    }

    #[tokio::test]
    async fn device_subscriber_is_kept_over_enrichment() {
        // Nokia logs the subscriber itself (natSubString); the prefix 10.0.1.0/24 names another.
        let store = enrich_store().await;
        let cfg = enrich_cfg(&store).await;
        let obj = flow_object(
            InputKind::Ipfix,
            &[
                (true, &corpus_bin("ipfix_test_nokia_bras_tpl.dat")),
                (false, &corpus_bin("ipfix_test_nokia_bras_data256.dat")),
            ],
        );
        let n = normalize_bytes("raw/ipfix/k.nlraw.zst", &obj, Format::Auto, &cfg);
        assert_eq!(n.rows.len(), 1);
        let env = &n.rows[0].envelope;
        assert_eq!(env.subscriber.as_deref(), Some("USER1@10.10.0.123"));
        assert_eq!(
            env.enrichment.site.as_deref(),
            Some("LAB"),
            "the rest is still added"
        );
    }

    #[tokio::test]
    async fn enrichment_reloads_what_changed_and_keeps_the_old_on_failure() {
        let store = enrich_store().await;
        let cfg = enrich_cfg(&store).await;
        let who = |cfg: &NormalizeConfig| {
            let e = cfg.enricher.snapshot().unwrap();
            e.identity_at(
                "100.64.0.1".parse().unwrap(),
                1_700_000_000_000_000,
                None,
                None,
            )
            .map(str::to_owned)
        };
        assert_eq!(who(&cfg).as_deref(), Some("alice"));
        put(
            &store,
            "enrich/radius.json",
            br#"{"Acct-Status-Type": "Start", "User-Name": "carol", "Framed-IP-Address": "100.64.0.1", "Event-Timestamp": 1699999000}"#.to_vec(),
        )
        .await;
        cfg.enricher.refresh(&store).await;
        assert_eq!(
            who(&cfg).as_deref(),
            Some("alice"),
            "checked at most every reload_secs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        cfg.enricher.refresh(&store).await;
        assert_eq!(who(&cfg).as_deref(), Some("carol"));
        // A broken upload: the previous data stays, the error is counted.
        put(
            &store,
            "enrich/radius.json",
            b"{\"Acct-Status-Type\": ".to_vec(),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        cfg.enricher.refresh(&store).await;
        assert_eq!(who(&cfg).as_deref(), Some("carol"));
        assert_eq!(cfg.enricher.reload_errors(), 1);
        // The other sources were not touched.
        assert!(cfg.enricher.snapshot().unwrap().asn.is_some());
    }

    #[tokio::test]
    async fn enrichment_that_cannot_load_is_fatal_and_named() {
        let store = enrich_store().await;
        store.delete(&Path::from("enrich/asn.mmdb")).await.unwrap();
        let err = NormalizeConfig {
            enrich: EnrichConfig::from_toml(ENRICH_TOML).unwrap(),
            ..NormalizeConfig::default()
        }
        .load_enrichment(&store)
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("geo.asn") && err.contains("enrich/asn.mmdb"),
            "{err}"
        );
        put(&store, "enrich/asn.mmdb", b"garbage".to_vec()).await;
        let err = enrich_err(&store).await;
        assert!(err.contains("not a MaxMind DB file"), "{err}");
        // Local files too, and unknown keys in the configuration are refused.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.csv");
        std::fs::write(&f, "prefix,site\n192.0.2.0/24,X\n").unwrap();
        let toml = format!(
            "[prefixes]\npath = \"file:{}\"\nformat = \"csv\"\n",
            f.display()
        );
        let cfg = NormalizeConfig {
            enrich: EnrichConfig::from_toml(&toml).unwrap(),
            ..NormalizeConfig::default()
        }
        .load_enrichment(&store)
        .await
        .unwrap();
        let e = cfg.enricher.snapshot().unwrap();
        let p = e
            .prefixes
            .as_ref()
            .unwrap()
            .lookup("192.0.2.1".parse().unwrap())
            .unwrap();
        assert_eq!(p.1.site.as_deref(), Some("X"));
        assert!(EnrichConfig::from_toml("reload_sec = 5").is_err());
        assert!(EnrichConfig::from_toml("[prefixes]\npath = \"x\"\nformat = \"xml\"").is_err());
    }

    async fn enrich_err(store: &Arc<dyn ObjectStore>) -> String {
        NormalizeConfig {
            enrich: EnrichConfig::from_toml(ENRICH_TOML).unwrap(),
            ..NormalizeConfig::default()
        }
        .load_enrichment(store)
        .await
        .unwrap_err()
        .to_string()
    }
}
