//! "Which subscriber held public IP X, port Y at time T?"

use std::net::IpAddr;
use std::path::PathBuf;

use natlake_core::correlate::{self, Attribution, NatRow};
use natlake_core::deterministic;
use natlake_core::model::{Micros, NatEventKind, Table};
use serde::Serialize;

use natlake_core::lake::relays::{self, heartbeat};
use natlake_core::lake::state::{self, Gap};
use natlake_core::lake::{late, layout};

use crate::{Lake, ObjectError, QueryError, duck};

mod scan;

/// An attribution question.
#[derive(Debug, Clone)]
pub struct Question {
    pub ip: IpAddr,
    pub port: u16,
    pub at: Micros,
    pub protocol: Option<u8>,
    /// Tolerance around `at` for clock skew between the logger and whoever reports the abuse.
    pub window: Micros,
    /// How far before `at` to look for the event that opened the mapping (and after it for the
    /// one that closed it).
    pub lookback: Micros,
    /// The destination the abuse report names, when it names one: mappings whose logs carry a
    /// different destination are left out. Mappings logged without one (port blocks, address
    /// bindings, sessions without destinations) cannot be excluded and stay.
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
}

impl Question {
    /// Who held `ip:port` at `at`, any protocol, with the default window and lookback and no
    /// destination named.
    pub fn new(ip: IpAddr, port: u16, at: Micros) -> Self {
        Self {
            ip,
            port,
            at,
            protocol: None,
            window: DEFAULT_WINDOW,
            lookback: DEFAULT_LOOKBACK,
            dst_ip: None,
            dst_port: None,
        }
    }

    /// Whether a mapping's logged destination is consistent with the one asked about.
    fn destination_fits(&self, iv: &correlate::Interval) -> bool {
        let ip_fits = match (self.dst_ip, iv.dst_ip) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        let port_fits = match (self.dst_port, iv.dst_port) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        ip_fits && port_fits
    }
}

pub const DEFAULT_WINDOW: Micros = 2_000_000;
/// Gaps listed in an answer at most (a backlog of thousands of raw objects is counted, not listed).
pub const UNREAD_LISTED: usize = 50;
pub const DEFAULT_LOOKBACK: Micros = 24 * 3_600_000_000;

/// The answer with what it was computed from.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    #[serde(flatten)]
    pub attribution: Attribution,
    /// The events read span [read_from, read_until]; a mapping open before read_from is known
    /// through the carry, and one still open at read_until is reported with `end: null`.
    pub read_from: Micros,
    pub read_until: Micros,
    /// The hour whose carry (mappings open when it began) was read, when the compact function
    /// had computed one; otherwise the whole lookback was read.
    pub carry_hour: Option<String>,
    /// Partition objects read.
    pub objects: usize,
    /// Partition objects that could not be read: the answer may be incomplete when non-empty.
    pub errors: Vec<ObjectError>,
    /// Data the answer could not see (the first [`UNREAD_LISTED`]): raw objects received in
    /// the hours read that are in no table yet or failed, and this address's partition objects
    /// in those hours that compaction set aside. Any makes the answer ambiguous.
    pub unread: Vec<Gap>,
    /// How many there are in all.
    pub unread_total: usize,
    /// Raw objects of the lookback normalize could not read whose loss an operator accepted
    /// (the first [`UNREAD_LISTED`]; `natlake dead-letters accept`), with the operator's reason:
    /// listed so the answer says what it was computed without, but not making it ambiguous.
    pub accepted_losses: Vec<Gap>,
    /// The deterministic NAT configuration consulted, when there is one.
    pub deterministic: Option<DeterministicUse>,
    /// The inside enrichment of the events read, by evidence; see [`Answer::enrichment_of`].
    #[serde(skip)]
    pub enrichment: EnrichmentByEvidence,
}

impl Answer {
    /// The enrichment recorded with a candidate's events (the first of its evidence that has
    /// any), None when the events carry none (or the candidate was computed).
    pub fn enrichment_of(&self, c: &correlate::Candidate) -> Option<&InsideEnrichment> {
        c.evidence
            .iter()
            .find_map(|e| self.enrichment.get(&(e.key.clone(), e.record, c.src_ip)))
    }
}

/// Which deterministic NAT configuration an answer consulted.
#[derive(Debug, Clone, Serialize)]
pub struct DeterministicUse {
    pub config: String,
    /// Mappings in the configuration (all periods).
    pub mappings: usize,
}

/// What normalize's enrichment recorded about a row's inside address (IPAM site, prefix, role),
/// as it was when the event was normalized.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InsideEnrichment {
    pub site: Option<String>,
    pub prefix: Option<String>,
    pub role: Option<String>,
}

impl InsideEnrichment {
    fn is_empty(&self) -> bool {
        self.site.is_none() && self.prefix.is_none() && self.role.is_none()
    }
}

/// Enrichment by evidence (raw object key, record index) and inside address: one record may
/// hold several subscribers' events (an IPFIX datagram), and the enrichment is the inside
/// address's.
pub type EnrichmentByEvidence =
    std::collections::HashMap<(String, u64, Option<IpAddr>), InsideEnrichment>;

/// The enrichment columns, read after [`NAT_COLUMNS`] (a lake written before enrichment
/// existed lacks them: then rows are read without).
const ENRICHMENT_COLUMNS: &str = "site, prefix, role";

/// The NAT event columns as [`row_to_nat`] expects them.
pub(crate) const NAT_COLUMNS: &str = "epoch_us(time), event, protocol, src_ip, src_port, x_ip, x_port, x_port_end, dst_ip, dst_port, vrf, direction, device, epoch_us(end_time), subscriber, raw_key, raw_record";
/// How many [`NAT_COLUMNS`] there are, and where `device` is among them.
const NAT_WIDTH: usize = 17;
const DEVICE_COLUMN: usize = 12;

/// The rows that concern ip:port, by parameters (x_ip, port, port, protocol, protocol, until):
/// single ports, port blocks containing it, and address-level bindings, at or before `until`.
const ROW_FILTER: &str = "x_ip = ? AND ((x_port IS NULL AND event IN ('address_bind', 'address_release')) \
                             OR (x_port <= ? AND coalesce(x_port_end, x_port) >= ?)) \
           AND (?::SMALLINT IS NULL OR protocol IS NULL OR protocol = ?::SMALLINT) \
           AND epoch_us(time) <= ?";

/// The inside enrichment read after the [`NAT_COLUMNS`] (none from objects without it).
fn enrichment_of(row: &duckdb::Row<'_>, enriched: bool) -> duckdb::Result<InsideEnrichment> {
    if !enriched {
        return Ok(InsideEnrichment::default());
    }
    Ok(InsideEnrichment {
        site: row.get(NAT_WIDTH)?,
        prefix: row.get(NAT_WIDTH + 1)?,
        role: row.get(NAT_WIDTH + 2)?,
    })
}

/// The rows of the given files that concern ip:port (single ports, port blocks containing it,
/// and address-level bindings), at or before `until`, with their inside enrichment. A row with
/// no public port holds every port only when it binds the whole address: an ICMP session, a
/// port block whose range the device did not send, or a flow without its post-NAT port says
/// nothing about this port.
fn fetch_rows(
    conn: &duckdb::Connection,
    files: &[PathBuf],
    q: &Question,
    until: Micros,
) -> Result<Vec<(NatRow, InsideEnrichment)>, QueryError> {
    match fetch_rows_with(conn, files, q, until, true) {
        // Objects from before the enrichment columns: the same rows, unenriched.
        Err(QueryError::Duck(e)) if e.to_string().contains("\"site\"") => {
            fetch_rows_with(conn, files, q, until, false)
        }
        other => other,
    }
}

fn fetch_rows_with(
    conn: &duckdb::Connection,
    files: &[PathBuf],
    q: &Question,
    until: Micros,
    enriched: bool,
) -> Result<Vec<(NatRow, InsideEnrichment)>, QueryError> {
    let extra = if enriched {
        format!(", {ENRICHMENT_COLUMNS}")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {NAT_COLUMNS}{extra} FROM read_parquet({}, union_by_name = true) \
         WHERE {ROW_FILTER}",
        duck::path_list(files.iter().map(|p| p.as_path()))
    );
    let mut stmt = conn.prepare(&sql)?;
    let proto = q.protocol.map(i16::from);
    let port = i32::from(q.port);
    let rows = stmt.query_map(
        duckdb::params![q.ip.to_string(), port, port, proto, proto, until],
        |row| {
            let Some(nat) = row_to_nat(row)? else {
                return Ok(None);
            };
            Ok(Some((nat, enrichment_of(row, enriched)?)))
        },
    )?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(r) = r? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Devices whose clocks run ahead of the relay's, by how much at least: the most negative
/// receive delay among the public address's rows in [from, until] (a row received before the
/// time its device gave it), for the devices where it is below zero.
fn clocks_ahead(
    conn: &duckdb::Connection,
    files: &[PathBuf],
    q: &Question,
    from: Micros,
    until: Micros,
) -> Result<Vec<(Option<String>, Micros)>, QueryError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT device, -min(recv_delay_us) FROM read_parquet({}, union_by_name = true) \
         WHERE x_ip = ? AND epoch_us(time) BETWEEN ? AND ? \
         GROUP BY device HAVING min(recv_delay_us) < 0 ORDER BY device",
        duck::path_list(files.iter().map(|p| p.as_path()))
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(duckdb::params![q.ip.to_string(), from, until], |row| {
        Ok((row.get::<_, Option<String>>(0)?, row.get::<_, i64>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Maps a result row to a NatRow; None for rows the lake should never hold (unknown event
/// names, unparseable addresses), which are skipped rather than guessed at.
pub(crate) fn row_to_nat(row: &duckdb::Row<'_>) -> duckdb::Result<Option<NatRow>> {
    let ip = |s: Option<String>| s.and_then(|s| s.parse::<IpAddr>().ok());
    let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
    let event: Option<String> = row.get(1)?;
    let Some(event) = event.as_deref().and_then(NatEventKind::parse) else {
        return Ok(None);
    };
    let Some(x_ip) = ip(row.get(5)?) else {
        return Ok(None);
    };
    Ok(Some(NatRow {
        time: row.get(0)?,
        event,
        protocol: row
            .get::<_, Option<i16>>(2)?
            .and_then(|p| u8::try_from(p).ok()),
        src_ip: ip(row.get(3)?),
        src_port: port(row.get(4)?),
        x_ip,
        x_port: port(row.get(6)?),
        x_port_end: port(row.get(7)?),
        dst_ip: ip(row.get(8)?),
        dst_port: port(row.get(9)?),
        vrf: row.get(10)?,
        direction: row.get(11)?,
        device: row.get(12)?,
        end_time: row.get(13)?,
        subscriber: row.get(14)?,
        raw_key: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
        raw_record: row
            .get::<_, Option<i64>>(16)?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
    }))
}

/// Reads `files` in one query; if that fails, file by file, so one corrupt object is reported
/// instead of failing the whole answer.
pub(crate) fn read_resilient<T>(
    files: &[(String, PathBuf)],
    errors: &mut Vec<ObjectError>,
    mut read: impl FnMut(&[PathBuf]) -> Result<Vec<T>, QueryError>,
) -> Vec<T> {
    if files.is_empty() {
        return Vec::new();
    }
    let paths: Vec<PathBuf> = files.iter().map(|f| f.1.clone()).collect();
    match read(&paths) {
        Ok(rows) => rows,
        Err(_) => {
            let mut rows = Vec::new();
            for (key, path) in files {
                match read(std::slice::from_ref(path)) {
                    Ok(mut r) => rows.append(&mut r),
                    Err(e) => errors.push(ObjectError {
                        key: key.clone(),
                        error: e.to_string(),
                    }),
                }
            }
            rows
        }
    }
}

/// The newest hour in [lo, hi] (epoch seconds) whose carry the compact function completed: one
/// listing of the marker directory from `lo` on, never of the lake.
async fn carry_hour(lake: &Lake, lo: i64, hi: i64) -> Result<Option<i64>, QueryError> {
    use futures::StreamExt;
    let prefix = object_store::path::Path::from(layout::CARRY_MARKER_DIR);
    let offset = object_store::path::Path::from(layout::carry_marker_key(lo - 3600).as_str());
    let last = layout::carry_marker_key(hi);
    let mut found = None;
    let mut list = lake.store.list_with_offset(Some(&prefix), &offset);
    while let Some(meta) = list.next().await {
        let key = meta?.location.to_string();
        // Not a `break`: a local filesystem lists in directory order, not sorted.
        if key > last {
            continue;
        }
        let hour = key
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_prefix("hour="))
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(layout::parse_hour_label);
        if let Some(h) = hour.filter(|h| (lo..=hi).contains(h)) {
            found = found.max(Some(h));
        }
    }
    Ok(found)
}

/// Answers one question. Reads the hours of `at ± window` and the hour after (for the ends),
/// starting from the newest completed carry at or before `at - window` (within the lookback);
/// without one, from `at - window - lookback`.
pub async fn attribute(lake: &Lake, q: &Question) -> Result<Answer, QueryError> {
    let t = std::time::Instant::now();
    let answer = attribute_logs(lake, q).await?;
    let t_logs = t.elapsed();
    let mut answer = add_deterministic(lake, q, answer).await;
    tracing::debug!(logs = ?t_logs, total = ?t.elapsed(), "timing attribute");
    // What could not be read, or is not in the lake yet, may hold another holder: the answer
    // is not a confident one.
    answer.attribution.ambiguous |= !answer.errors.is_empty() || answer.unread_total > 0;
    lake.identity.refresh(&lake.store).await;
    if let Some(sources) = lake.identity.snapshot() {
        correlate::add_identity_at(&mut answer.attribution, |c| match c.src_ip {
            Some(ip) => sources.holder_at(ip, q.at, c.vrf.as_deref(), c.device.as_deref()),
            None => natlake_core::enrich::identity::Holder::Nobody,
        });
    }
    Ok(answer)
}

/// The answer from the NAT events in the lake alone.
async fn attribute_logs(lake: &Lake, q: &Question) -> Result<Answer, QueryError> {
    let first = plan(lake, q).await?;
    let answer = read(lake, q, &first).await?;
    if answer.errors.is_empty() {
        return Ok(answer);
    }
    // A compaction that replaced small objects between the listing and the read shows as
    // missing objects: read again only when a new listing differs (a corrupt object stays
    // reported, and is not read twice per lookup).
    let second = plan(lake, q).await?;
    let keys = |p: &Plan| {
        p.objects
            .iter()
            .map(|m| m.location.clone())
            .collect::<Vec<_>>()
    };
    if keys(&second) == keys(&first) {
        return Ok(answer);
    }
    read(lake, q, &second).await
}

/// Adds what the deterministic NAT configuration says about the question; a configuration that
/// cannot be read is reported in `errors` (the answer may then be incomplete).
async fn add_deterministic(lake: &Lake, q: &Question, mut answer: Answer) -> Answer {
    let source = &lake.deterministic;
    match source.current().await {
        Ok(None) => {}
        Err(e) => answer.errors.push(ObjectError {
            key: source.label().to_string(),
            error: format!("deterministic NAT configuration: {e}"),
        }),
        Ok(Some(cfg)) => {
            let hits = cfg.reverse(q.ip, q.port, q.protocol, q.at - q.window, q.at + q.window);
            answer.attribution =
                deterministic::merge(answer.attribution, hits, q.protocol, q.at, source.label());
            answer.deterministic = Some(DeterministicUse {
                config: source.label().to_string(),
                mappings: cfg.entries.len(),
            });
        }
    }
    answer
}

/// What one answer reads: the carry hour, the time span of events, the objects.
struct Plan {
    carry: Option<i64>,
    from: Micros,
    until: Micros,
    objects: Vec<object_store::ObjectMeta>,
    /// What `_state/` said before the objects were listed (see [`state_before`]).
    state: Result<StateSeen, String>,
}

/// Raw objects not (yet) in the lake, as listed before a plan's partitions.
struct StateSeen {
    raw: state::RawListing,
    failed: Vec<Gap>,
    accepted: Vec<Gap>,
    /// Read before `raw`: what a heartbeat says is stored is then in the raw listing.
    relays: relays::Relays,
    /// What relays dropped over the lookback, to the end of the question's window.
    drops: Vec<relays::Dropped>,
    /// The start of the lookback: spans that end before it are not the answer's.
    drops_from: Micros,
}

async fn plan(lake: &Lake, q: &Question) -> Result<Plan, QueryError> {
    if q.window < 0 || q.window > 3_600_000_000 {
        return Err(QueryError::BadRequest(
            "window must be between 0 and 3600 seconds".into(),
        ));
    }
    if q.lookback < 0 {
        return Err(QueryError::BadRequest(
            "lookback must not be negative".into(),
        ));
    }
    let h0 = layout::hour_start(q.at - q.window);
    let h1 = layout::hour_start(q.at + q.window);
    let lo = layout::hour_start(q.at - q.window - q.lookback);
    // A carry computed before late objects landed in an hour before it is stale until
    // compaction runs again: start from a carry at or before the oldest such hour.
    // (Transient: until the compact function's next run, which may then mean reading days.)
    let t = std::time::Instant::now();
    // The relays' heartbeats beside the markers: both before the raw listing.
    let (relays, carry) = futures::join!(relays::list(&lake.store), async {
        let late = late::hours_for(&lake.store, &layout::net_value(Some(q.ip))).await?;
        let t_late = t.elapsed();
        let (lo, newest_trusted) = match late.first() {
            Some(&l) if l < h0 => (lo.min(l - q.lookback / 1_000_000), l),
            _ => (lo, h0),
        };
        let carry = carry_hour(lake, lo, newest_trusted).await?;
        Ok::<_, QueryError>((carry, t_late))
    });
    let (carry, t_late) = carry?;
    let t_carry = t.elapsed();
    let from = match carry {
        Some(c) => c * 1_000_000,
        None => q.at - q.lookback - q.window,
    };
    // The hour after the window too, so a mapping that closed soon after `at` gets its end.
    let until = (h1 + 2 * 3600) * 1_000_000 - 1;
    // Before the partitions: normalize writes a raw object's lake objects, then its done
    // marker, so an object done by this listing has its rows in the partition listing below,
    // and one not yet done is reported — never neither.
    let state = match relays {
        Ok(relays) => state_before(lake, q, from, until, relays)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("listing the relays' heartbeats: {e}")),
    };
    let t_state = t.elapsed();
    let mut objects = lake
        .partition_objects(Table::NatEvents, q.ip, from, until)
        .await?;
    if let Some(c) = carry {
        let us = c * 1_000_000;
        objects.extend(
            lake.partition_objects(Table::NatCarry, q.ip, us, us)
                .await?,
        );
    }
    // Where an answer's time goes (RUST_LOG=natlake_query=debug), each since the plan began.
    tracing::debug!(late = ?t_late, carry = ?t_carry, state = ?t_state, partitions = ?t.elapsed(), "timing plan");
    Ok(Plan {
        carry,
        from,
        until,
        objects,
        state,
    })
}

/// Spans of dropped messages read per answer at most (the rest are reported by key).
const DROPS_READ: usize = 50;

/// Raw objects created this long after the question's time are not counted as pending: what
/// they hold the relay received after it (a batch keeps its creation hour through retries and
/// the spool), so only a device's own delay could put an event of that time in them.
const PENDING_AFTER: Micros = 10 * 60_000_000;

/// The raw objects that are not in the lake: pending ones received from the hour before `from`
/// through `until` (events are filed by the time the device gave them and reach the relay within
/// seconds; pending objects older than that are a backlog the normalize service's poller works
/// through), with each relay's newest object; and failed ones over the whole lookback — the
/// carry that lets an answer start late was computed without them, and they do not go away.
async fn state_before(
    lake: &Lake,
    q: &Question,
    from: Micros,
    until: Micros,
    relays: relays::Relays,
) -> Result<StateSeen, QueryError> {
    let (raw_since, raw_until) = (
        layout::hour_label(from - 3_600_000_000),
        layout::hour_label(until),
    );
    let failed_since = layout::hour_label(q.at - q.window - q.lookback - 3_600_000_000);
    let drops_from = (q.at - q.window - q.lookback).min(from);
    let newest_relevant = layout::hour_label(q.at + q.window + PENDING_AFTER);
    let (raw, (failed, accepted), drops) = futures::try_join!(
        state::raw_listing(&lake.store, &raw_since, &raw_until),
        state::losses(
            &lake.store,
            &failed_since,
            &newest_relevant,
            state::REASONS_READ
        ),
        // Over the whole lookback, like failed objects: a create or delete dropped before the
        // carry hour is missing from the carry too. A span is at most ten minutes long: one
        // that began before the lookback may reach into it.
        relays::drops(
            &lake.store,
            drops_from.div_euclid(1_000_000) - 600,
            (q.at + q.window).div_euclid(1_000_000),
            DROPS_READ,
        ),
    )?;
    Ok(StateSeen {
        raw,
        failed,
        accepted,
        relays,
        drops,
        drops_from,
    })
}

/// The address's partition objects in the hours a plan reads (and its carry) that compaction
/// set aside, unless normalize has since written the key again.
async fn set_aside(lake: &Lake, q: &Question, plan: &Plan) -> Result<Vec<Gap>, QueryError> {
    let mut dirs: Vec<String> = layout::hours_between(plan.from, plan.until)
        .map(|h| layout::partition_dir(Table::NatEvents, h, Some(q.ip)))
        .collect();
    if let Some(c) = plan.carry {
        dirs.push(layout::partition_dir(Table::NatCarry, c, Some(q.ip)));
    }
    let listed =
        futures::future::try_join_all(dirs.iter().map(|d| state::quarantined(&lake.store, d)))
            .await?;
    // A normalize output at a quarantined key again is its raw object normalized again; a new
    // merged or carry object is not the old one restored (it holds none of the old one's rows).
    let present: std::collections::HashSet<&str> =
        plan.objects.iter().map(|m| m.location.as_ref()).collect();
    let restored = |key: &str| {
        let name = key.rsplit('/').next().unwrap_or(key);
        present.contains(key) && name != layout::COMPACTED && name != layout::CARRY
    };
    Ok(listed
        .into_iter()
        .flatten()
        .filter(|g| !restored(&g.key))
        .collect())
}

/// Everything the answer could not see: failed raw objects, pending ones created by shortly
/// after the question's time, relays that have not delivered, objects set aside.
fn gaps(seen: &StateSeen, received: Vec<Gap>, set_aside: Vec<Gap>, q: &Question) -> Vec<Gap> {
    let newest_relevant = layout::hour_label(q.at + q.window + PENDING_AFTER);
    let mut out = received;
    out.extend(seen.failed.iter().cloned());
    out.extend(
        seen.raw
            .pending
            .iter()
            .filter(|g| state::hour_of(&g.key).is_some_and(|h| h <= newest_relevant.as_str()))
            .cloned(),
    );
    out.extend(set_aside);
    out
}

/// What the relays that logged about the address (in `rows`, the carry's included) have not
/// delivered by the question's time — it may hold the mapping that ended or began just before
/// it, and what they dropped while the events read happened — with, apart, the losses an
/// operator accepted among those (retired relays, accepted spans of drops). (Not before the end of the
/// window: a question asked seconds after its time would always wait on the relay's open batch
/// for what only the window's tolerance reaches.)
///
/// A relay's heartbeat says up to when each kind is stored, and stays behind when the relay
/// dies. A relay without one (written before heartbeats) is judged by its newest raw object of
/// the kind in the hours listed: stored before the question's time, what it received since is
/// not in the lake — which says nothing once its last object falls out of those hours.
fn not_received(rows: &[NatRow], seen: &StateSeen, q: &Question) -> (Vec<Gap>, Vec<Gap>) {
    use natlake_core::time::format_time;
    let logged: std::collections::BTreeSet<(&str, &str)> = rows
        .iter()
        .filter_map(|r| Some((state::kind_of(&r.raw_key)?, state::relay_of(&r.raw_key)?)))
        .collect();
    // `retired`: losses an operator accepted (retired relays, accepted spans of drops).
    let (mut gaps, mut retired) = (Vec::new(), Vec::new());
    let gap = |key: String, reason: String| Gap {
        key,
        state: state::GapState::NotReceived,
        reason: Some(reason),
    };
    for &(kind, relay) in &logged {
        let behind = match seen.relays.heartbeats.get(relay) {
            // A kind the relay no longer names has nothing left in it to deliver.
            Some(Ok(hb)) => hb
                .complete_through(kind)
                .filter(|through| *through < q.at)
                .map(|through| {
                    let stopped = if hb.stopped { "; it stopped then" } else { "" };
                    gap(
                        heartbeat::key(relay),
                        format!(
                            "relay {relay} has stored what it received of {kind} up to {} (heartbeat of {}{stopped}): what it received since is not in the lake",
                            format_time(through),
                            format_time(hb.written_us),
                        ),
                    )
                }),
            Some(Err(e)) => Some(gap(
                heartbeat::key(relay),
                format!("relay {relay}: {e}: what it has stored is unknown"),
            )),
            None => seen
                .raw
                .newest
                .get(&(kind.to_owned(), relay.to_owned()))
                .filter(|(_, stored)| *stored < q.at)
                .map(|(key, stored)| {
                    gap(
                        key.clone(),
                        format!(
                            "relay {relay} stored nothing it received after {}: what it received since is not in the lake",
                            format_time(*stored)
                        ),
                    )
                }),
        };
        let Some(behind) = behind else {
            continue;
        };
        // Retired: what it did not deliver is an accepted loss, listed once per relay.
        match seen.relays.retirement(relay) {
            None => gaps.push(behind),
            Some(r) => {
                let key = heartbeat::retired_key(relay);
                if !retired.iter().any(|g: &Gap| g.key == key) {
                    retired.push(Gap {
                        key,
                        state: state::GapState::Retired,
                        reason: Some(format!(
                            "relay {relay} retired at {}: {}",
                            format_time(r.at_us),
                            r.reason
                        )),
                    });
                }
            }
        }
    }
    // Messages these relays could not keep, received while the events read happened.
    let (lo, hi) = (seen.drops_from, q.at + q.window);
    for d in &seen.drops {
        if !logged.contains(&(d.kind.as_str(), d.relay.as_str())) {
            continue;
        }
        let reason = match &d.span {
            Ok(s) if s.last_us < lo || s.first_us > hi => continue,
            Ok(s) if s.reasons.contains_key(heartbeat::UNCLEAN_STOP) => format!(
                "relay {} stopped uncleanly (killed, crashed or lost power): what it received of {} between {} and {} and had not spooled is lost",
                s.relay,
                s.kind,
                format_time(s.first_us),
                format_time(s.last_us),
            ),
            Ok(s) => format!(
                "relay {} dropped {} messages of {} received between {} and {} ({}): whatever they held is in no table",
                s.relay,
                s.messages,
                s.kind,
                format_time(s.first_us),
                format_time(s.last_us),
                s.reasons
                    .iter()
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => format!("relay {} dropped messages of {}: {e}", d.relay, d.kind),
        };
        match d.accepted() {
            Some(a) => retired.push(Gap {
                key: heartbeat::drops_accepted_key(&d.key).unwrap_or_else(|| d.key.clone()),
                state: state::GapState::Accepted,
                reason: Some(format!(
                    "{reason}; loss accepted at {}: {}",
                    format_time(a.at_us),
                    a.reason
                )),
            }),
            None => {
                let grown = if d.accepted.is_some() {
                    " (accepted before; it has grown since)"
                } else {
                    ""
                };
                gaps.push(Gap {
                    key: d.key.clone(),
                    state: state::GapState::Dropped,
                    reason: Some(format!("{reason}{grown}")),
                })
            }
        }
    }
    (gaps, retired)
}

async fn read(lake: &Lake, q: &Question, plan: &Plan) -> Result<Answer, QueryError> {
    let Plan {
        carry,
        from,
        until,
        ref objects,
        ..
    } = *plan;
    let (files, errors) = lake.local_paths(objects).await;
    let lake2 = lake.clone();
    let q2 = q.clone();
    let rows = tokio::task::spawn_blocking(move || -> Result<_, QueryError> {
        let mut errors = errors;
        let t = std::time::Instant::now();
        let conn = lake2.connection()?;
        let paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
        if let Some((rows, ahead)) = scan::rows_and_clocks(&conn, &paths, &q2, from, until) {
            tracing::debug!(rows_and_clocks = ?t.elapsed(), n = paths.len(), "timing duck");
            return Ok((rows, errors, ahead));
        }
        let rows = read_resilient(&files, &mut errors, |paths| {
            fetch_rows(&conn, paths, &q2, until)
        });
        let t_rows = t.elapsed();
        // Objects without the column (older versions) or unreadable ones (in `errors` already)
        // leave the clocks unchecked.
        let ahead = clocks_ahead(&conn, &paths, &q2, from, until).unwrap_or_default();
        tracing::debug!(rows = ?t_rows, clocks = ?t.elapsed(), n = paths.len(), "timing duck");
        Ok((rows, errors, ahead))
    });
    // The quarantine listings run while DuckDB reads.
    let t = std::time::Instant::now();
    let (set_aside, rows) = tokio::join!(
        async {
            let r = set_aside(lake, q, plan).await;
            tracing::debug!(set_aside = ?t.elapsed(), "timing set_aside");
            r
        },
        rows
    );
    let t_join = t.elapsed();
    let (rows, mut errors, ahead) = rows.map_err(|e| QueryError::Internal(e.to_string()))??;
    let unchecked = |errors: &mut Vec<ObjectError>, e: String| {
        errors.push(ObjectError {
            key: "_state/".to_string(),
            error: format!("could not check what the lake is missing: {e}"),
        })
    };
    let set_aside = set_aside.unwrap_or_else(|e| {
        unchecked(&mut errors, e.to_string());
        Vec::new()
    });
    // The same row twice (a merged object beside the objects it replaced, a raw object
    // normalized twice) is one event; several events of one record (an IPFIX datagram) are not.
    let rows = correlate::drop_copies(rows);
    let mut enrichment = EnrichmentByEvidence::new();
    let rows: Vec<NatRow> = rows
        .into_iter()
        .map(|(row, e)| {
            if !e.is_empty() {
                enrichment.insert((row.raw_key.clone(), row.raw_record, row.src_ip), e);
            }
            row
        })
        .collect();
    let (mut unread, accepted_losses) = match &plan.state {
        Ok(seen) => {
            let (received, retired) = not_received(&rows, seen, q);
            let accepted = retired
                .into_iter()
                .chain(seen.accepted.iter().cloned())
                .take(UNREAD_LISTED)
                .collect();
            (gaps(seen, received, set_aside, q), accepted)
        }
        Err(e) => {
            unchecked(&mut errors, e.clone());
            (set_aside, Vec::new())
        }
    };
    let unread_total = unread.len();
    unread.truncate(UNREAD_LISTED);
    let range_start = layout::hour_start(from) * 1_000_000;
    let all = correlate::intervals(rows, range_start);
    let ivs: Vec<_> = all
        .iter()
        .filter(|iv| q.destination_fits(iv))
        .cloned()
        .collect();
    let mut attribution = correlate::attribute(ivs.clone(), q.at, q.window);
    // Other hosts' mappings to other destinations count here too: they show the port changed
    // hands even when the question names one destination.
    correlate::doubt_superseded(&mut attribution, &all, q.at, q.window);
    correlate::doubt_seen_once(&mut attribution, &ivs, &all, q.at, q.window);
    for (device, by) in ahead {
        correlate::doubt_clock_ahead(
            &mut attribution,
            &ivs,
            q.at,
            q.window,
            device.as_deref(),
            by,
        );
    }
    tracing::debug!(join = ?t_join, total = ?t.elapsed(), "timing read");
    Ok(Answer {
        attribution,
        read_from: from,
        read_until: until,
        carry_hour: carry.map(|c| layout::hour_label(c * 1_000_000)),
        objects: objects.len(),
        errors,
        unread,
        unread_total,
        accepted_losses,
        deterministic: None,
        enrichment,
    })
}

#[cfg(test)]
mod tests {
    use natlake_core::lake::writer::{self, WriteOptions};
    use natlake_core::testing::nat_row;

    use super::*;

    const T0: i64 = 1_793_491_200_000_000; // 2026-11-01T00:00:00Z

    /// The column positions the readers use are those of the column list.
    #[test]
    fn column_positions_match_the_list() {
        let cols: Vec<&str> = NAT_COLUMNS.split(", ").collect();
        assert_eq!(cols.len(), NAT_WIDTH);
        assert_eq!(cols[DEVICE_COLUMN], "device");
    }

    /// Writes `body` at `key` under `dir`, making its directories.
    fn put_file(dir: &std::path::Path, key: &str, body: &str) {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    /// A `file://` lake in `dir` holding `rows` as normalize writes them (one raw object).
    fn lake_with(dir: &std::path::Path, rows: &[natlake_core::model::Row]) -> Lake {
        for (o, bytes) in
            writer::encode_outputs("raw/k.nlraw.zst", rows, &[], &WriteOptions::default()).unwrap()
        {
            let path = dir.join(&o.key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        Lake::open(&format!("file://{}", dir.display()), &dir.join("scratch")).unwrap()
    }

    /// Writes the lake objects of `rows` from `raw_key` through the lake's store, as normalize
    /// publishes them (a put replaces an object by rename).
    async fn publish(lake: &Lake, raw_key: &str, rows: &[natlake_core::model::Row]) {
        for (o, bytes) in
            writer::encode_outputs(raw_key, rows, &[], &WriteOptions::default()).unwrap()
        {
            object_store::ObjectStoreExt::put(
                &lake.store,
                &object_store::path::Path::from(o.key.as_str()),
                bytes.into(),
            )
            .await
            .unwrap();
        }
    }

    /// DuckDB keeps Parquet footers between lookups: an object replaced at the same key (as
    /// compaction replaces its merged objects, here within the same second) is read anew, not
    /// through the old object's footer, and a new object beside it changes the answer.
    #[tokio::test]
    async fn an_object_replaced_at_its_key_is_read_anew() {
        let dir = tempfile::tempdir().unwrap();
        let opening = |inside: &str, sub: &str| {
            let mut r = nat_row(
                T0 + 10_000_000,
                NatEventKind::SessionCreate,
                inside,
                2000,
                "raw/k.nlraw.zst",
                0,
            );
            r.envelope.subscriber = Some(sub.into());
            r
        };
        let lake = lake_with(dir.path(), &[opening("100.64.0.1", "sub-1")]);
        let q = Question::new("198.51.100.7".parse().unwrap(), 2000, T0 + 30_000_000);
        let subscribers = |a: &Answer| {
            a.attribution
                .matches
                .iter()
                .map(|c| c.subscriber.clone())
                .collect::<Vec<_>>()
        };
        let a = attribute(&lake, &q).await.unwrap();
        assert_eq!(subscribers(&a), [Some("sub-1".to_string())], "{a:?}");
        // Another holder, and more rows (another footer), at the same key.
        let mut rows = vec![opening("100.64.0.2", "sub-2")];
        for port in 3000..3100 {
            rows.push(nat_row(
                T0 + 20_000_000,
                NatEventKind::SessionCreate,
                "100.64.0.3",
                port,
                "raw/k.nlraw.zst",
                u64::from(port),
            ));
        }
        publish(&lake, "raw/k.nlraw.zst", &rows).await;
        let b = attribute(&lake, &q).await.unwrap();
        assert_eq!(subscribers(&b), [Some("sub-2".to_string())], "{b:?}");
        assert!(b.errors.is_empty(), "{b:?}");
        // A new object beside it (another raw object's rows): sub-2's mapping closed before.
        let close = nat_row(
            T0 + 20_000_000,
            NatEventKind::SessionDelete,
            "100.64.0.2",
            2000,
            "raw/k2.nlraw.zst",
            0,
        );
        publish(&lake, "raw/k2.nlraw.zst", &[close]).await;
        let c = attribute(&lake, &q).await.unwrap();
        assert!(c.attribution.matches.is_empty(), "{c:?}");
        assert!(c.errors.is_empty(), "{c:?}");
    }

    /// The enrichment normalize stored with a subscriber's events is in the answer that names
    /// the subscriber; a subscriber whose events carry none gets none, even when they share a
    /// raw record with an enriched one.
    #[tokio::test]
    async fn answers_carry_the_enrichment_of_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = Vec::new();
        let mut open = nat_row(
            T0 + 10_000_000,
            NatEventKind::SessionCreate,
            "100.64.0.1",
            2000,
            "raw/k.nlraw.zst",
            0,
        );
        open.envelope.subscriber = Some("sub-1".into());
        open.envelope.enrichment.site = Some("ams-1".into());
        open.envelope.enrichment.prefix = Some("100.64.0.0/24".parse().unwrap());
        open.envelope.enrichment.role = Some("residential".into());
        rows.push(open);
        rows.push(nat_row(
            T0 + 50_000_000,
            NatEventKind::SessionDelete,
            "100.64.0.1",
            2000,
            "raw/k.nlraw.zst",
            1,
        ));
        // Another subscriber on the same port later, logged in the same raw record as sub-1's
        // opening (as in an IPFIX datagram): it must not be given sub-1's enrichment.
        rows.push(nat_row(
            T0 + 60_000_000,
            NatEventKind::SessionCreate,
            "100.64.9.9",
            2000,
            "raw/k.nlraw.zst",
            0,
        ));
        let lake = lake_with(dir.path(), &rows);
        let ask = |port: u16, at: Micros| Question::new("198.51.100.7".parse().unwrap(), port, at);
        let a = attribute(&lake, &ask(2000, T0 + 30_000_000)).await.unwrap();
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        let c = &a.attribution.matches[0];
        assert_eq!(c.subscriber.as_deref(), Some("sub-1"));
        let e = a.enrichment_of(c).expect("enrichment of the opening event");
        assert_eq!(e.site.as_deref(), Some("ams-1"));
        assert_eq!(e.prefix.as_deref(), Some("100.64.0.0/24"));
        assert_eq!(e.role.as_deref(), Some("residential"));

        let b = attribute(&lake, &ask(2000, T0 + 61_000_000)).await.unwrap();
        assert_eq!(b.attribution.matches.len(), 1, "{b:?}");
        assert_eq!(
            b.attribution.matches[0].src_ip,
            Some("100.64.9.9".parse().unwrap())
        );
        assert_eq!(b.enrichment_of(&b.attribution.matches[0]), None);
    }

    /// Objects written before the enrichment columns existed are still read (unenriched).
    #[tokio::test]
    async fn objects_without_enrichment_columns_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let part = dir.path().join(layout::partition_dir(
            Table::NatEvents,
            T0 / 1_000_000,
            Some(ip),
        ));
        std::fs::create_dir_all(&part).unwrap();
        let file = part.join("old.parquet");
        let conn = duck::connect(dir.path()).unwrap();
        conn.execute_batch(&format!(
            "COPY (SELECT make_timestamp({t}::BIGINT)::TIMESTAMPTZ AS time, 'session_create' AS event, \
               6::SMALLINT AS protocol, '100.64.0.5' AS src_ip, 40000 AS src_port, '198.51.100.7' AS x_ip, \
               3000 AS x_port, NULL::INTEGER AS x_port_end, NULL::VARCHAR AS dst_ip, NULL::INTEGER AS dst_port, \
               NULL::VARCHAR AS vrf, NULL::VARCHAR AS direction, 'cgn1' AS device, \
               NULL::TIMESTAMPTZ AS end_time, 'sub-old' AS subscriber, 'raw/old.nlraw.zst' AS raw_key, \
               7::BIGINT AS raw_record) TO {} (FORMAT parquet)",
            duck::quote(&file.display().to_string()),
            t = T0 + 5_000_000,
        ))
        .unwrap();
        let lake = Lake::open(
            &format!("file://{}", dir.path().display()),
            &dir.path().join("scratch"),
        )
        .unwrap();
        let q = Question::new(ip, 3000, T0 + 6_000_000);
        let a = attribute(&lake, &q).await.unwrap();
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        assert_eq!(
            a.attribution.matches[0].subscriber.as_deref(),
            Some("sub-old")
        );
        assert_eq!(a.enrichment_of(&a.attribution.matches[0]), None);
    }

    /// Port reuse inside the window: two subscribers on one public port. Without a destination
    /// the answer names both and is ambiguous; the reported destination picks the one whose
    /// logged session went there; a destination neither went to names no one.
    #[tokio::test]
    async fn a_reported_destination_narrows_port_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = vec![
            nat_row(
                T0 + 10_000_000,
                NatEventKind::SessionCreate,
                "100.64.0.1",
                2000,
                "raw/k.nlraw.zst",
                0,
            ),
            nat_row(
                T0 + 20_000_000,
                NatEventKind::SessionDelete,
                "100.64.0.1",
                2000,
                "raw/k.nlraw.zst",
                1,
            ),
        ];
        let mut other = nat_row(
            T0 + 21_000_000,
            NatEventKind::SessionCreate,
            "100.64.0.2",
            2000,
            "raw/k.nlraw.zst",
            2,
        );
        if let natlake_core::model::Event::Nat(e) = &mut other.event {
            e.dst_ip = "192.0.2.9".parse().ok();
            e.dst_port = Some(25);
        }
        rows.push(other);
        let lake = lake_with(dir.path(), &rows);
        let ask = |dst_ip: Option<&str>, dst_port: Option<u16>| Question {
            dst_ip: dst_ip.map(|d| d.parse().unwrap()),
            dst_port,
            ..Question::new("198.51.100.7".parse().unwrap(), 2000, T0 + 20_500_000)
        };
        let inside = |a: &Answer| -> Vec<String> {
            a.attribution
                .matches
                .iter()
                .filter_map(|c| c.src_ip.map(|i| i.to_string()))
                .collect()
        };
        let a = attribute(&lake, &ask(None, None)).await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        assert_eq!(a.attribution.matches.len(), 2);
        let a = attribute(&lake, &ask(Some("192.0.2.9"), None))
            .await
            .unwrap();
        assert_eq!(
            (inside(&a), a.attribution.ambiguous),
            (vec!["100.64.0.2".to_string()], false)
        );
        let a = attribute(&lake, &ask(Some("203.0.113.80"), Some(443)))
            .await
            .unwrap();
        assert_eq!(
            (inside(&a), a.attribution.ambiguous),
            (vec!["100.64.0.1".to_string()], false)
        );
        let a = attribute(&lake, &ask(None, Some(25))).await.unwrap();
        assert_eq!(inside(&a), vec!["100.64.0.2".to_string()]);
        let a = attribute(&lake, &ask(Some("198.18.0.1"), None))
            .await
            .unwrap();
        assert!(a.attribution.matches.is_empty(), "{a:?}");
    }

    /// A mapping without a public port answers for every port only when it binds the whole
    /// address: an ICMP session (or a port block whose range was not sent) on the same public
    /// address is not an answer to a question about a TCP port.
    #[tokio::test]
    async fn rows_without_a_port_answer_only_as_address_bindings() {
        use natlake_core::model::Event;
        let dir = tempfile::tempdir().unwrap();
        let portless = |kind: NatEventKind, inside: &str, record: u64| {
            let mut r = nat_row(T0 + 10_000_000, kind, inside, 0, "raw/k.nlraw.zst", record);
            if let Event::Nat(e) = &mut r.event {
                e.x_port = None;
                e.src_port = None;
                e.dst_port = None;
                e.protocol = Some(1);
            }
            r
        };
        let rows = vec![portless(NatEventKind::SessionCreate, "100.64.0.1", 0)];
        let q = Question::new("198.51.100.7".parse().unwrap(), 2000, T0 + 20_000_000);
        let lake = lake_with(dir.path(), &rows);
        let a = attribute(&lake, &q).await.unwrap();
        assert!(a.attribution.matches.is_empty(), "{a:?}");
        // A 1:1 binding of the address holds every port.
        let other = tempfile::tempdir().unwrap();
        let rows = vec![portless(NatEventKind::AddressBind, "100.64.0.2", 0)];
        let lake = lake_with(other.path(), &rows);
        let a = attribute(&lake, &q).await.unwrap();
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        assert_eq!(
            a.attribution.matches[0].src_ip,
            Some("100.64.0.2".parse().unwrap())
        );
    }

    /// A port block allocated while sub-1 held its inside address, still held after the
    /// address passed to sub-2: the events recorded sub-1; the identity sources the lookup
    /// reads name sub-2 at the question's time, so the answer lists both and is ambiguous.
    /// Before the handover the answer is plain.
    #[tokio::test]
    async fn the_identity_sources_are_read_at_the_questions_time() {
        use natlake_core::enrich::sources::{EnrichConfig, EnrichHandle};
        use natlake_core::model::Event;
        let dir = tempfile::tempdir().unwrap();
        let mut alloc = nat_row(
            T0 + 60_000_000,
            NatEventKind::PortBlockAlloc,
            "100.64.1.1",
            4096,
            "raw/k.nlraw.zst",
            0,
        );
        if let Event::Nat(e) = &mut alloc.event {
            e.x_port_end = Some(4159);
            e.src_port = None;
            e.dst_ip = None;
            e.dst_port = None;
        }
        alloc.envelope.subscriber = Some("sub-1".into());
        let lake = lake_with(dir.path(), &[alloc]);
        let handover = "2026-11-01T00:30:00Z";
        let ids = dir.path().join("identity.csv");
        std::fs::write(
            &ids,
            format!(
                "ip,subscriber,start,end\n100.64.1.1,sub-1,2026-11-01T00:00:00Z,{handover}\n\
                 100.64.1.1,sub-2,{handover},\n"
            ),
        )
        .unwrap();
        let cfg = EnrichConfig::from_toml(&format!(
            "identity = [{{ path = \"file:{}\", format = \"csv\" }}]",
            ids.display()
        ))
        .unwrap();
        let identity = EnrichHandle::load(&lake.store, &cfg.identity_only())
            .await
            .unwrap();
        let lake = lake.with_identity(identity);
        let ask = |at: Micros| Question::new("198.51.100.7".parse().unwrap(), 4100, at);
        let before = attribute(&lake, &ask(T0 + 20 * 60_000_000)).await.unwrap();
        let c = &before.attribution.matches[0];
        assert!(!before.attribution.ambiguous, "{before:?}");
        assert_eq!(
            (c.subscriber.as_deref(), c.subscriber_at_time.as_deref()),
            (Some("sub-1"), Some("sub-1"))
        );
        let after = attribute(&lake, &ask(T0 + 40 * 60_000_000)).await.unwrap();
        let c = &after.attribution.matches[0];
        assert!(after.attribution.ambiguous, "{after:?}");
        assert_eq!(
            (c.subscriber.as_deref(), &c.other_subscribers[..]),
            (Some("sub-1"), &["sub-2".to_string()][..])
        );
        assert_eq!(c.subscriber_at_time.as_deref(), Some("sub-2"));
    }

    /// Data not in the lake for the hours an answer reads makes it ambiguous and is listed: a
    /// raw object not yet normalized, one normalize gave up on (with its error), a partition
    /// object compaction set aside (with its reason) — until normalized, or until an object
    /// took the quarantined key again. Raw objects of hours the answer does not read are not.
    #[tokio::test]
    async fn data_missing_from_the_lake_makes_the_answer_ambiguous() {
        use natlake_core::lake::state::{
            DEAD_LETTER_PREFIX, GapState, NORMALIZED_PREFIX, quarantine_key, quarantine_reason_key,
        };
        let dir = tempfile::tempdir().unwrap();
        let k = "raw/k.nlraw.zst";
        let rows = [
            nat_row(
                T0 + 10_000_000,
                NatEventKind::SessionCreate,
                "100.64.0.1",
                2000,
                k,
                0,
            ),
            nat_row(
                T0 + 50_000_000,
                NatEventKind::SessionDelete,
                "100.64.0.1",
                2000,
                k,
                1,
            ),
        ];
        let lake = lake_with(dir.path(), &rows);
        let put = |key: &str, body: &str| put_file(dir.path(), key, body);
        let raw_dir = "raw/syslog_udp/hour=2026-11-01T00";
        let (done, late) = (
            format!("{raw_dir}/r_1.nlraw.zst"),
            format!("{raw_dir}/r_2.nlraw.zst"),
        );
        put(&done, "x");
        put(&format!("{NORMALIZED_PREFIX}/{done}.json"), "{}");
        put(&late, "x");
        // Received hours after the answer's last: not its concern; nor is an object created
        // more than ten minutes after the question's time (what it holds came later).
        put("raw/syslog_udp/hour=2026-11-01T09/r_3.nlraw.zst", "x");
        put("raw/syslog_udp/hour=2026-11-01T01/r_4.nlraw.zst", "x");
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let question = Question::new(ip, 2000, T0 + 30_000_000);
        let ask = || attribute(&lake, &question);
        let unread = |a: &Answer| {
            a.unread
                .iter()
                .map(|g| (g.key.clone(), g.state, g.reason.clone()))
                .collect::<Vec<_>>()
        };

        let a = ask().await.unwrap();
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        assert!(a.attribution.ambiguous, "{a:?}");
        assert_eq!(unread(&a), [(late.clone(), GapState::Pending, None)]);
        assert_eq!(a.unread_total, 1);

        put(
            &format!("{DEAD_LETTER_PREFIX}/{late}.json"),
            r#"{"raw_key": "r_2", "error": "zstd: unexpected end of frame"}"#,
        );
        let a = ask().await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        assert_eq!(
            unread(&a),
            [(
                late.clone(),
                GapState::Failed,
                Some("zstd: unexpected end of frame".to_owned())
            )]
        );

        put(&format!("{NORMALIZED_PREFIX}/{late}.json"), "{}");
        let a = ask().await.unwrap();
        assert!(!a.attribution.ambiguous, "{a:?}");
        assert_eq!(a.unread_total, 0, "{a:?}");

        let part = layout::partition_dir(Table::NatEvents, T0 / 1_000_000, Some(ip));
        let gone = format!("{part}r_9.parquet");
        put(&quarantine_key(&gone), "PAR1");
        put(
            &quarantine_reason_key(&gone),
            r#"{"key": "k", "reason": "bad magic"}"#,
        );
        let a = ask().await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        assert_eq!(
            unread(&a),
            [(
                gone.clone(),
                GapState::Quarantined,
                Some("bad magic".to_owned())
            )]
        );

        // Its raw object normalized again (not yet compacted): the key holds an object again.
        let first = std::fs::read_dir(dir.path().join(&part))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        std::fs::copy(&first, dir.path().join(&gone)).unwrap();
        let a = ask().await.unwrap();
        assert!(!a.attribution.ambiguous, "{a:?}");
        assert_eq!(a.unread_total, 0, "{a:?}");

        // A merged object set aside is not restored by the next merged object at its key.
        let merged = format!("{part}{}", layout::COMPACTED);
        put(&quarantine_key(&merged), "PAR1");
        std::fs::copy(&first, dir.path().join(&merged)).unwrap();
        let a = ask().await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        assert_eq!(unread(&a), [(merged, GapState::Quarantined, None)]);
    }

    /// A session start log (a mapping seen at 00:01:40 only) answers a question ten minutes
    /// later with its subscriber, in doubt; once the whole-session record is in the lake (the
    /// session ended at 00:03:20), no one held the port then.
    #[tokio::test]
    async fn a_session_seen_only_at_its_start_is_named_in_doubt() {
        let s = 1_000_000;
        let observed = |end: Option<Micros>, record: u64| {
            let mut r = nat_row(
                T0 + 100 * s,
                NatEventKind::MappingObserved,
                "100.64.0.1",
                2000,
                "raw/k.nlraw.zst",
                record,
            );
            if let natlake_core::model::Event::Nat(e) = &mut r.event {
                e.end_time = end;
            }
            r
        };
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with(dir.path(), &[observed(None, 0)]);
        let a = attribute(&lake, &Question::new(ip, 2000, T0 + 700 * s))
            .await
            .unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        let named: Vec<_> = a.attribution.matches.iter().map(|c| c.src_ip).collect();
        assert_eq!(named, [Some("100.64.0.1".parse().unwrap())], "{a:?}");
        assert!(
            a.attribution.matches[0].doubts[0].contains("seen last at"),
            "{a:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with(
            dir.path(),
            &[observed(None, 0), observed(Some(T0 + 200 * s), 1)],
        );
        let a = attribute(&lake, &Question::new(ip, 2000, T0 + 700 * s))
            .await
            .unwrap();
        assert!(a.attribution.matches.is_empty(), "{a:?}");
        assert!(!a.attribution.ambiguous, "{a:?}");
    }

    /// A device whose events reached the relay 90 s before the times it gave them runs at least
    /// 90 s ahead: a question at 00:00:50 is 00:02:20 by its clock, when B held the port — the
    /// answer names B, in doubt and ambiguous, instead of no one.
    #[tokio::test]
    async fn a_device_clock_ahead_of_the_relays_is_reported_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let k = "raw/k.nlraw.zst";
        let s = 1_000_000;
        let mut rows = [
            nat_row(
                T0 + 100 * s,
                NatEventKind::SessionCreate,
                "100.64.0.1",
                2000,
                k,
                0,
            ),
            nat_row(
                T0 + 130 * s,
                NatEventKind::SessionDelete,
                "100.64.0.1",
                2000,
                k,
                1,
            ),
            nat_row(
                T0 + 140 * s,
                NatEventKind::SessionCreate,
                "100.64.0.2",
                2000,
                k,
                2,
            ),
        ];
        for r in &mut rows {
            r.envelope.recv_time = r.event.time() - 90 * s;
        }
        let lake = lake_with(dir.path(), &rows);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let a = attribute(&lake, &Question::new(ip, 2000, T0 + 50 * s))
            .await
            .unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        let named: Vec<_> = a.attribution.matches.iter().map(|c| c.src_ip).collect();
        assert_eq!(named, [Some("100.64.0.2".parse().unwrap())], "{a:?}");
        assert!(
            a.attribution.matches[0].doubts[0].contains("cgn1 runs at least 90.000 s ahead"),
            "{a:?}"
        );
        // The same rows received in time: no one held the port at 00:00:50.
        for r in &mut rows {
            r.envelope.recv_time = r.event.time() + s;
        }
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with(dir.path(), &rows);
        let a = attribute(&lake, &Question::new(ip, 2000, T0 + 50 * s))
            .await
            .unwrap();
        assert!(
            a.attribution.matches.is_empty() && !a.attribution.ambiguous,
            "{a:?}"
        );
    }

    /// A relay whose newest raw object was stored before the question's time has not delivered
    /// what it received since: the answer, from that relay's events, lists it and is ambiguous —
    /// until an object it stored after the question's time is in the store. A relay that did not
    /// log about the address is not listed.
    #[tokio::test]
    async fn a_relay_that_stored_nothing_after_the_questions_time_is_reported() {
        use natlake_core::lake::state::{GapState, NORMALIZED_PREFIX};
        let dir = tempfile::tempdir().unwrap();
        let raw_dir = "raw/conntrack/hour=2026-11-01T00";
        let k1 = format!("{raw_dir}/cgn-1_0001.nlraw.zst");
        let rows = [nat_row(
            T0 + 10_000_000,
            NatEventKind::SessionCreate,
            "100.64.0.1",
            2000,
            &k1,
            0,
        )];
        let lake = lake_with(dir.path(), &rows);
        let stored = |key: &str, at: Micros| {
            for k in [key.to_owned(), format!("{NORMALIZED_PREFIX}/{key}.json")] {
                let path = dir.path().join(k);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let f = std::fs::File::create(&path).unwrap();
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(at as u64);
                f.set_modified(t).unwrap();
            }
        };
        stored(&k1, T0 + 20_000_000);
        // Another relay, stored before the question too, that logged nothing about it.
        stored(&format!("{raw_dir}/cgn-2_0001.nlraw.zst"), T0 + 20_000_000);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let question = Question::new(ip, 2000, T0 + 600_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        assert!(a.attribution.ambiguous, "{a:?}");
        let got: Vec<_> = a.unread.iter().map(|g| (g.key.as_str(), g.state)).collect();
        assert_eq!(got, [(k1.as_str(), GapState::NotReceived)], "{a:?}");
        assert!(
            a.unread[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("relay cgn-1"),
            "{a:?}"
        );

        let k2 = format!("{raw_dir}/cgn-1_0002.nlraw.zst");
        stored(&k2, T0 + 700_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert!(!a.attribution.ambiguous && a.unread.is_empty(), "{a:?}");
    }

    /// One mapping at T0 + 10 s, logged by relay `cgn-1` (conntrack).
    /// Writes a span of drops as the relay does: `(first_us, last_us)`, `(reason, messages)`.
    fn put_span(
        dir: &std::path::Path,
        relay: &str,
        kind: &str,
        (first_us, last_us): (i64, i64),
        (reason, messages): (&str, u64),
    ) -> String {
        let d = heartbeat::DropSpan {
            relay: relay.into(),
            kind: kind.into(),
            first_us,
            last_us,
            messages,
            reasons: [(reason.to_string(), messages)].into(),
        };
        let key = heartbeat::drops_key(relay, kind, first_us);
        put_file(dir, &key, &serde_json::to_string(&d).unwrap());
        key
    }

    fn relay_row() -> natlake_core::model::Row {
        nat_row(
            T0 + 10_000_000,
            NatEventKind::SessionCreate,
            "100.64.0.1",
            2000,
            "raw/conntrack/hour=2026-11-01T00/cgn-1_0001.nlraw.zst",
            0,
        )
    }

    /// A relay's heartbeat says up to when each kind is stored. One that stays behind the
    /// question's time (the relay died) keeps the answer ambiguous even when none of the
    /// relay's raw objects is in the hours listed — where the newest-object rule alone says
    /// nothing — until the relay catches up or an operator retires it; a heartbeat written
    /// after the retirement undoes it.
    #[tokio::test]
    async fn a_relay_whose_heartbeat_stays_behind_is_reported_until_retired() {
        use natlake_core::lake::state::GapState;
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with(dir.path(), &[relay_row()]);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let question = Question::new(ip, 2000, T0 + 2 * 3_600_000_000);
        let beat = |written_us: i64, through_us: i64| {
            let hb = heartbeat::Heartbeat {
                relay: "cgn-1".into(),
                written_us,
                started_us: T0,
                stopped: false,
                kinds: [(
                    "conntrack".to_string(),
                    heartbeat::KindProgress {
                        complete_through_us: through_us,
                        spooled_batches: 4,
                    },
                )]
                .into(),
                dropped: Default::default(),
            };
            put_file(
                dir.path(),
                &heartbeat::key("cgn-1"),
                &serde_json::to_string(&hb).unwrap(),
            );
        };
        // No heartbeat and no raw object of the relay listed: nothing to go by.
        let a = attribute(&lake, &question).await.unwrap();
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        assert!(!a.attribution.ambiguous && a.unread.is_empty(), "{a:?}");

        // Stored up to T0 + 20 s, the heartbeat last written at T0 + 30 min.
        beat(T0 + 1_800_000_000, T0 + 20_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        let got: Vec<_> = a.unread.iter().map(|g| (g.key.as_str(), g.state)).collect();
        assert_eq!(
            got,
            [("_state/relays/cgn-1.json", GapState::NotReceived)],
            "{a:?}"
        );
        let reason = a.unread[0].reason.as_deref().unwrap();
        assert!(
            reason.contains("relay cgn-1") && reason.contains("2026-11-01T00:00:20"),
            "{reason}"
        );

        // Caught up past the question's time: complete.
        beat(T0 + 3 * 3_600_000_000, T0 + 3 * 3_600_000_000 - 1_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert!(!a.attribution.ambiguous && a.unread.is_empty(), "{a:?}");

        // Behind again, then retired: listed as an accepted loss, no longer ambiguous.
        beat(T0 + 1_800_000_000, T0 + 20_000_000);
        let store = lake.store.clone();
        relays::retire(
            &store,
            "cgn-1",
            "decommissioned 2026-11-01",
            T0 + 3_600_000_000,
        )
        .await
        .unwrap();
        let a = attribute(&lake, &question).await.unwrap();
        assert!(!a.attribution.ambiguous && a.unread.is_empty(), "{a:?}");
        let got: Vec<_> = a
            .accepted_losses
            .iter()
            .map(|g| (g.key.as_str(), g.state))
            .collect();
        assert_eq!(
            got,
            [("_state/relays/cgn-1.retired.json", GapState::Retired)],
            "{a:?}"
        );
        assert!(
            a.accepted_losses[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("decommissioned 2026-11-01"),
            "{a:?}"
        );

        // The relay came back after its retirement, still behind: ambiguous again.
        beat(T0 + 3_600_000_000 + 1, T0 + 20_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert!(
            a.attribution.ambiguous && a.accepted_losses.is_empty(),
            "{a:?}"
        );

        // A heartbeat that cannot be read says nothing is known to be stored (and does not
        // undo a retirement: this one is removed first).
        std::fs::remove_file(dir.path().join(heartbeat::retired_key("cgn-1"))).unwrap();
        put_file(dir.path(), &heartbeat::key("cgn-1"), "{");
        let a = attribute(&lake, &question).await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        assert!(
            a.unread[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("unreadable heartbeat"),
            "{a:?}"
        );
    }

    /// Messages a relay that logged about the address dropped while the events read happened
    /// make the answer ambiguous, with the relay's record of them; drops of other relays or
    /// kinds, or outside the time read, do not.
    #[tokio::test]
    async fn messages_a_relay_dropped_in_the_time_read_are_reported() {
        use natlake_core::lake::state::GapState;
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with(dir.path(), &[relay_row()]);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let question = Question::new(ip, 2000, T0 + 1_800_000_000);
        let span = |relay: &str, kind: &str, first_us: i64, last_us: i64| {
            put_span(
                dir.path(),
                relay,
                kind,
                (first_us, last_us),
                ("queue_full", 7),
            )
        };
        // Another relay, another kind, and after the window: not this answer's.
        span("cgn-2", "conntrack", T0 + 60_000_000, T0 + 70_000_000);
        span("cgn-1", "syslog_udp", T0 + 60_000_000, T0 + 70_000_000);
        span("cgn-1", "conntrack", T0 + 7_200_000_000, T0 + 7_210_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert!(!a.attribution.ambiguous && a.unread.is_empty(), "{a:?}");

        let key = span("cgn-1", "conntrack", T0 + 60_000_000, T0 + 70_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        assert!(a.attribution.ambiguous, "{a:?}");
        let got: Vec<_> = a.unread.iter().map(|g| (g.key.as_str(), g.state)).collect();
        assert_eq!(got, [(key.as_str(), GapState::Dropped)], "{a:?}");
        let reason = a.unread[0].reason.as_deref().unwrap();
        assert!(
            reason.contains("dropped 7 messages") && reason.contains("queue_full: 7"),
            "{reason}"
        );

        // An unclean stop: when is known, how many is not.
        let stop_key = put_span(
            dir.path(),
            "cgn-1",
            "conntrack",
            (T0 + 100_000_000, T0 + 160_000_000),
            (heartbeat::UNCLEAN_STOP, 0),
        );
        let a = attribute(&lake, &question).await.unwrap();
        assert_eq!(a.unread.len(), 2, "{a:?}");
        assert!(
            a.unread.iter().any(|g| g
                .reason
                .as_deref()
                .unwrap()
                .contains("relay cgn-1 stopped uncleanly")),
            "{a:?}"
        );

        // An operator checks both and accepts their loss: the answer names the holder, and
        // lists them as accepted losses.
        for k in [&key, &stop_key] {
            relays::accept_drops(
                &lake.store,
                k,
                "checked: cgn-1 was idle",
                T0 + 7_000_000_000,
            )
            .await
            .unwrap();
        }
        let a = attribute(&lake, &question).await.unwrap();
        assert!(!a.attribution.ambiguous && a.unread.is_empty(), "{a:?}");
        let got: Vec<_> = a
            .accepted_losses
            .iter()
            .map(|g| (g.state, g.reason.as_deref().unwrap()))
            .collect();
        assert_eq!(got.len(), 2, "{a:?}");
        assert!(
            got.iter().all(|(s, r)| *s == GapState::Accepted
                && r.contains("loss accepted at")
                && r.contains("checked: cgn-1 was idle")),
            "{got:?}"
        );
        // More drops join the first span after it was accepted: reported again.
        span("cgn-1", "conntrack", T0 + 60_000_000, T0 + 90_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        let got: Vec<_> = a.unread.iter().map(|g| (g.key.as_str(), g.state)).collect();
        assert_eq!(got, [(key.as_str(), GapState::Dropped)], "{a:?}");
        assert!(
            a.unread[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("grown since"),
            "{a:?}"
        );
        assert_eq!(a.accepted_losses.len(), 1, "{a:?}");
    }

    /// A raw object normalize gave up on counts over the whole lookback, also before the hour
    /// whose carry the answer starts from: the carry was computed without it.
    #[tokio::test]
    async fn a_failed_object_before_the_carry_hour_is_reported() {
        use natlake_core::lake::state::{DEAD_LETTER_PREFIX, GapState};
        let dir = tempfile::tempdir().unwrap();
        let k = "raw/k.nlraw.zst";
        let h = 3_600_000_000;
        let rows = [nat_row(
            T0 + 3 * h + 10_000_000,
            NatEventKind::SessionCreate,
            "100.64.0.1",
            2000,
            k,
            0,
        )];
        let lake = lake_with(dir.path(), &rows);
        let put = |key: &str, body: &str| put_file(dir.path(), key, body);
        put(&layout::carry_marker_key((T0 + 3 * h) / 1_000_000), "{}");
        let lost = "raw/syslog_udp/hour=2026-11-01T00/r_1.nlraw.zst";
        put(
            &format!("{DEAD_LETTER_PREFIX}/{lost}.json"),
            r#"{"error": "zstd: truncated"}"#,
        );
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let a = attribute(&lake, &Question::new(ip, 2000, T0 + 3 * h + 1_800_000_000))
            .await
            .unwrap();
        assert_eq!(a.carry_hour.as_deref(), Some("2026-11-01T03"), "{a:?}");
        assert!(a.attribution.ambiguous, "{a:?}");
        let got: Vec<_> = a.unread.iter().map(|g| (g.key.as_str(), g.state)).collect();
        assert_eq!(got, [(lost, GapState::Failed)], "{a:?}");
    }

    /// Likewise a span of drops: a create or delete the relay dropped before the carry hour is
    /// missing from the carry the answer starts from. Spans before the lookback are not.
    #[tokio::test]
    async fn drops_before_the_carry_hour_are_reported_over_the_lookback() {
        use natlake_core::lake::state::GapState;
        let dir = tempfile::tempdir().unwrap();
        let h = 3_600_000_000;
        let rows = [nat_row(
            T0 + 30 * h + 10_000_000,
            NatEventKind::SessionCreate,
            "100.64.0.1",
            2000,
            "raw/conntrack/hour=2026-11-02T06/cgn-1_0001.nlraw.zst",
            0,
        )];
        let lake = lake_with(dir.path(), &rows);
        put_file(
            dir.path(),
            &layout::carry_marker_key((T0 + 30 * h) / 1_000_000),
            "{}",
        );
        let span = |first_us: i64| {
            let times = (first_us, first_us + 5_000_000);
            put_span(dir.path(), "cgn-1", "conntrack", times, ("spool_full", 3))
        };
        let question = Question::new(
            "198.51.100.7".parse().unwrap(),
            2000,
            T0 + 30 * h + 1_800_000_000,
        );
        // 29 hours before: out of the day's lookback.
        span(T0 + 90 * 60_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert_eq!(a.carry_hour.as_deref(), Some("2026-11-02T06"), "{a:?}");
        assert!(!a.attribution.ambiguous && a.unread.is_empty(), "{a:?}");
        // Twenty hours before, long before the carry hour, inside the lookback.
        let key = span(T0 + 10 * h + 600_000_000);
        let a = attribute(&lake, &question).await.unwrap();
        assert!(a.attribution.ambiguous, "{a:?}");
        let got: Vec<_> = a.unread.iter().map(|g| (g.key.as_str(), g.state)).collect();
        assert_eq!(got, [(key.as_str(), GapState::Dropped)], "{a:?}");
    }
}
