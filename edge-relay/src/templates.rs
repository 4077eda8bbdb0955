//! Just enough of IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) to keep flow exports raw *and*
//! self-contained: the message header, the set (flowset) headers, and the template records.
//! Flow records are never decoded.
//!
//! - [`check`] validates a datagram's header and set framing; the source uses it to pick the input
//!   kind, to drop what is not a flow export at all, and to count what is damaged (kept anyway).
//! - [`TemplateCache`] keeps the latest template records per (exporter address, version,
//!   observation domain / source id, template id), bounded in entries (oldest evicted, counted),
//!   and renders them as synthetic export packets (a header plus template sets) that a decoder
//!   can read exactly like the exporter's own template packets.
//! - [`FlowContext`] is the batcher hook: the first time a batch receives a packet from an
//!   (exporter, domain), it writes that domain's synthetic template packet(s) into the batch as
//!   context records (`natlake_raw::FLAG_CONTEXT`), then learns the packet's own templates.
//!   It runs on the batcher thread, in record order, so the context in a batch is always the state
//!   just before the batch's first packet from that exporter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use natlake_raw::InputKind;

use crate::batch::{ContextHook, EmitContext};
use crate::{Counters, RateLimit};

pub const IPFIX_VERSION: u16 = 10;
pub const V9_VERSION: u16 = 9;
const IPFIX_HEADER: usize = 16;
const V9_HEADER: usize = 20;
/// Largest synthetic packet (UDP can carry 65,507 bytes over IPv4).
const MAX_PACKET: usize = 65_000;

/// Why a datagram is not kept at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not NetFlow v1/5/7/9 nor IPFIX.
    UnknownVersion(u16),
    /// Shorter than its version's header.
    TruncatedHeader,
}

/// Damage in a datagram that is kept raw anyway (the normalizer decides what to make of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Issue {
    /// The IPFIX length field or a set length runs past the end of the datagram.
    Truncated,
    /// The IPFIX length field is shorter than the datagram (trailing bytes), or below the header.
    BadLength,
    /// A set length below 4, or a template record that runs past its set.
    BadSet,
    /// NetFlow v1/v5/v7: kept as `netflow`, no templates involved.
    LegacyVersion,
}

impl Issue {
    pub const ALL: [Issue; 4] = [
        Self::Truncated,
        Self::BadLength,
        Self::BadSet,
        Self::LegacyVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::BadLength => "bad_length",
            Self::BadSet => "bad_set",
            Self::LegacyVersion => "legacy_version",
        }
    }

    pub(crate) fn index(self) -> usize {
        Self::ALL.iter().position(|i| *i == self).expect("listed")
    }
}

/// The header fields the cache needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    /// IPFIX observation domain id, or NetFlow v9 source id.
    pub domain: u32,
    /// IPFIX export time / v9 unix_secs.
    pub export_secs: u32,
    /// v9 sysUptime (ms); 0 for IPFIX.
    pub uptime_ms: u32,
    pub sequence: u32,
}

/// What [`check`] found: the kind to file the datagram under and its first problem, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub kind: InputKind,
    pub header: Option<Header>,
    pub issue: Option<Issue>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses the message header of an IPFIX or v9 packet.
pub fn header(pkt: &[u8]) -> Result<Header, Reject> {
    let version = be16(pkt, 0).ok_or(Reject::TruncatedHeader)?;
    match version {
        IPFIX_VERSION if pkt.len() >= IPFIX_HEADER => Ok(Header {
            version,
            export_secs: be32(pkt, 4).unwrap_or(0),
            sequence: be32(pkt, 8).unwrap_or(0),
            domain: be32(pkt, 12).unwrap_or(0),
            uptime_ms: 0,
        }),
        V9_VERSION if pkt.len() >= V9_HEADER => Ok(Header {
            version,
            uptime_ms: be32(pkt, 4).unwrap_or(0),
            export_secs: be32(pkt, 8).unwrap_or(0),
            sequence: be32(pkt, 12).unwrap_or(0),
            domain: be32(pkt, 16).unwrap_or(0),
        }),
        IPFIX_VERSION | V9_VERSION => Err(Reject::TruncatedHeader),
        v => Err(Reject::UnknownVersion(v)),
    }
}

/// Walks the sets of a v9 / IPFIX packet whose header is sane, calling `on_set(set_id, body)` for
/// every complete set; returns the first framing problem.
pub fn walk_sets(pkt: &[u8], h: &Header, mut on_set: impl FnMut(u16, &[u8])) -> Option<Issue> {
    let (start, mut end, mut issue) = if h.version == IPFIX_VERSION {
        let declared = be16(pkt, 2).unwrap_or(0) as usize;
        if declared < IPFIX_HEADER {
            (IPFIX_HEADER, pkt.len(), Some(Issue::BadLength))
        } else if declared > pkt.len() {
            (IPFIX_HEADER, pkt.len(), Some(Issue::Truncated))
        } else if declared < pkt.len() {
            (IPFIX_HEADER, declared, Some(Issue::BadLength))
        } else {
            (IPFIX_HEADER, declared, None)
        }
    } else {
        (V9_HEADER, pkt.len(), None)
    };
    end = end.min(pkt.len());
    let mut at = start;
    while at < end {
        let rest = &pkt[at..end];
        if rest.len() < 4 || (h.version == V9_VERSION && rest.iter().all(|&b| b == 0)) {
            // v9 exporters may pad the datagram; IPFIX has no padding after the last set.
            if h.version == IPFIX_VERSION {
                issue.get_or_insert(Issue::Truncated);
            }
            break;
        }
        let id = be16(rest, 0).unwrap_or(0);
        let len = be16(rest, 2).unwrap_or(0) as usize;
        if len < 4 {
            issue.get_or_insert(Issue::BadSet);
            break;
        }
        if len > rest.len() {
            issue.get_or_insert(Issue::Truncated);
            break;
        }
        on_set(id, &rest[4..len]);
        at += len;
    }
    issue
}

/// Classifies a received datagram (see the module doc).
pub fn check(pkt: &[u8]) -> Result<Checked, Reject> {
    match header(pkt) {
        Ok(h) => {
            let kind = if h.version == IPFIX_VERSION {
                InputKind::Ipfix
            } else {
                InputKind::Netflow
            };
            let issue = walk_sets(pkt, &h, |_, _| {});
            Ok(Checked {
                kind,
                header: Some(h),
                issue,
            })
        }
        Err(Reject::UnknownVersion(v @ (1 | 5 | 7))) => {
            let need = if v == 1 { 16 } else { 24 };
            if pkt.len() < need {
                return Err(Reject::TruncatedHeader);
            }
            Ok(Checked {
                kind: InputKind::Netflow,
                header: None,
                issue: Some(Issue::LegacyVersion),
            })
        }
        Err(e) => Err(e),
    }
}

/// Set ids that carry templates: (template set, options template set) per version.
fn template_set_ids(version: u16) -> (u16, u16) {
    if version == IPFIX_VERSION {
        (2, 3)
    } else {
        (0, 1)
    }
}

/// One template record as found in a template set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOp<'a> {
    /// A (re)definition: template id, whether it is an options template, the record bytes.
    Define(u16, bool, &'a [u8]),
    /// IPFIX withdrawal of one template id (field count 0).
    Withdraw(u16),
    /// IPFIX withdrawal of every (options) template of the domain.
    WithdrawAll(bool),
}

/// Splits a template or options template set body into records. Stops at padding; returns false
/// when a record is malformed (the records before it are still reported).
pub fn template_records<'a>(
    version: u16,
    options: bool,
    body: &'a [u8],
    mut on: impl FnMut(TemplateOp<'a>),
) -> bool {
    let mut at = 0;
    while at < body.len() {
        let rest = &body[at..];
        let min = if version == V9_VERSION && options {
            6
        } else {
            4
        };
        if rest.len() < min || rest.iter().all(|&b| b == 0) {
            return true; // padding
        }
        let tid = be16(rest, 0).unwrap_or(0);
        let count = be16(rest, 2).unwrap_or(0) as usize;
        let len = if version == IPFIX_VERSION {
            if count == 0 {
                match tid {
                    2 if !options => on(TemplateOp::WithdrawAll(false)),
                    3 if options => on(TemplateOp::WithdrawAll(true)),
                    t if t >= 256 => on(TemplateOp::Withdraw(t)),
                    _ => return false,
                }
                at += 4;
                continue;
            }
            let mut p = if options { 6 } else { 4 };
            for _ in 0..count {
                let Some(ie) = be16(rest, p) else {
                    return false;
                };
                p += if ie & 0x8000 != 0 { 8 } else { 4 };
            }
            p
        } else if options {
            // v9 options template: id, scope length (bytes), option length (bytes), fields.
            let scope = count;
            let opts = be16(rest, 4).unwrap_or(0) as usize;
            6 + scope + opts
        } else {
            4 + 4 * count
        };
        if len > rest.len() || tid < 256 {
            return false;
        }
        on(TemplateOp::Define(tid, options, &rest[..len]));
        at += len;
    }
    true
}

/// (exporter address, version, observation domain / source id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainKey {
    pub exporter: IpAddr,
    pub version: u16,
    pub domain: u32,
}

impl DomainKey {
    pub fn new(peer: Option<SocketAddr>, h: &Header) -> Self {
        Self {
            exporter: peer
                .map(|p| p.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            version: h.version,
            domain: h.domain,
        }
    }
}

#[derive(Debug)]
struct Template {
    options: bool,
    record: Vec<u8>,
    stamp: u64,
}

#[derive(Debug)]
struct Domain {
    templates: BTreeMap<u16, Template>,
    /// Header of the latest template packet (its times go into the synthetic packet).
    header: Header,
    recv_ns: i64,
    peer: Option<SocketAddr>,
    /// Rendered synthetic packets; `None` after a change.
    rendered: Option<Vec<Vec<u8>>>,
}

/// What [`TemplateCache::context`] gives: synthetic template packets of one domain.
#[derive(Debug)]
pub struct Context<'a> {
    /// Receive time and exporter of the latest template packet of the domain.
    pub recv_ns: i64,
    pub peer: Option<SocketAddr>,
    pub packets: &'a [Vec<u8>],
}

/// Latest templates per exporter and domain, bounded in template entries.
#[derive(Debug)]
pub struct TemplateCache {
    max_entries: usize,
    domains: HashMap<DomainKey, Domain>,
    /// Age order of every cached template: stamp → (domain, template id).
    lru: BTreeMap<u64, (DomainKey, u16)>,
    next_stamp: u64,
    pub evictions: u64,
    pub malformed: u64,
}

impl TemplateCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            domains: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            evictions: 0,
            malformed: 0,
        }
    }

    /// Template records held.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// Learns the template records of a packet (no-op for data-only packets).
    pub fn learn(&mut self, peer: Option<SocketAddr>, recv_ns: i64, pkt: &[u8]) {
        let Ok(h) = header(pkt) else {
            return;
        };
        let key = DomainKey::new(peer, &h);
        let (tpl, opt) = template_set_ids(h.version);
        let mut ops: Vec<(u16, bool, Option<Vec<u8>>, bool)> = Vec::new();
        let mut bad = false;
        walk_sets(pkt, &h, |id, body| {
            if id != tpl && id != opt {
                return;
            }
            let ok = template_records(h.version, id == opt, body, |op| match op {
                TemplateOp::Define(t, o, rec) => ops.push((t, o, Some(rec.to_vec()), false)),
                TemplateOp::Withdraw(t) => ops.push((t, false, None, false)),
                TemplateOp::WithdrawAll(o) => ops.push((0, o, None, true)),
            });
            bad |= !ok;
        });
        if bad {
            self.malformed += 1;
        }
        if ops.is_empty() {
            return;
        }
        for (tid, options, rec, all) in ops {
            match (rec, all) {
                (Some(record), _) => self.insert(key, &h, peer, recv_ns, tid, options, record),
                (None, false) => self.remove(&key, tid),
                (None, true) => {
                    let ids: Vec<u16> = self
                        .domains
                        .get(&key)
                        .map(|d| {
                            d.templates
                                .iter()
                                .filter(|(_, t)| t.options == options)
                                .map(|(id, _)| *id)
                                .collect()
                        })
                        .unwrap_or_default();
                    for id in ids {
                        self.remove(&key, id);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        key: DomainKey,
        h: &Header,
        peer: Option<SocketAddr>,
        recv_ns: i64,
        tid: u16,
        options: bool,
        record: Vec<u8>,
    ) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let d = self.domains.entry(key).or_insert_with(|| Domain {
            templates: BTreeMap::new(),
            header: *h,
            recv_ns,
            peer,
            rendered: None,
        });
        d.header = *h;
        d.recv_ns = recv_ns;
        d.peer = peer;
        let old = d.templates.insert(
            tid,
            Template {
                options,
                record,
                stamp,
            },
        );
        d.rendered = None;
        if let Some(old) = old {
            self.lru.remove(&old.stamp);
        }
        self.lru.insert(stamp, (key, tid));
        while self.lru.len() > self.max_entries {
            let Some((_, (k, t))) = self.lru.pop_first() else {
                break;
            };
            self.remove(&k, t);
            self.evictions += 1;
        }
    }

    fn remove(&mut self, key: &DomainKey, tid: u16) {
        let Some(d) = self.domains.get_mut(key) else {
            return;
        };
        if let Some(t) = d.templates.remove(&tid) {
            self.lru.remove(&t.stamp);
            d.rendered = None;
        }
        if d.templates.is_empty() {
            self.domains.remove(key);
        }
    }

    /// The synthetic template packet(s) of a domain, with the receive time and peer of its latest
    /// template packet. `None` when nothing is known.
    pub fn context(&mut self, key: &DomainKey) -> Option<Context<'_>> {
        let d = self.domains.get_mut(key)?;
        if d.rendered.is_none() {
            d.rendered = Some(render(key.version, &d.header, &d.templates));
        }
        let packets = d.rendered.as_deref()?;
        Some(Context {
            recv_ns: d.recv_ns,
            peer: d.peer,
            packets,
        })
    }
}

/// Builds export packets holding every template of a domain (templates first, then options
/// templates), split so that none exceeds [`MAX_PACKET`].
fn render(version: u16, h: &Header, templates: &BTreeMap<u16, Template>) -> Vec<Vec<u8>> {
    let (tpl_id, opt_id) = template_set_ids(version);
    let hdr_len = if version == IPFIX_VERSION {
        IPFIX_HEADER
    } else {
        V9_HEADER
    };
    let mut packets = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut records_in_packet = 0u16;
    let mut set_start: Option<(usize, bool)> = None;

    let close_set = |cur: &mut Vec<u8>, set_start: &mut Option<(usize, bool)>| {
        if let Some((start, _)) = set_start.take() {
            if version == V9_VERSION {
                while !(cur.len() - start).is_multiple_of(4) {
                    cur.push(0);
                }
            }
            let len = (cur.len() - start) as u16;
            cur[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    };
    let finish = |mut cur: Vec<u8>, records: u16, packets: &mut Vec<Vec<u8>>| {
        if cur.len() <= hdr_len {
            return;
        }
        if version == IPFIX_VERSION {
            let len = cur.len() as u16;
            cur[2..4].copy_from_slice(&len.to_be_bytes());
        } else {
            cur[2..4].copy_from_slice(&records.to_be_bytes());
        }
        packets.push(cur);
    };
    let start_packet = |cur: &mut Vec<u8>| {
        cur.clear();
        cur.extend_from_slice(&version.to_be_bytes());
        cur.extend_from_slice(&[0, 0]);
        if version == IPFIX_VERSION {
            cur.extend_from_slice(&h.export_secs.to_be_bytes());
            cur.extend_from_slice(&h.sequence.to_be_bytes());
        } else {
            cur.extend_from_slice(&h.uptime_ms.to_be_bytes());
            cur.extend_from_slice(&h.export_secs.to_be_bytes());
            cur.extend_from_slice(&h.sequence.to_be_bytes());
        }
        cur.extend_from_slice(&h.domain.to_be_bytes());
    };

    start_packet(&mut cur);
    // Templates first, then options templates (each group sorted by id).
    let ordered = templates
        .iter()
        .filter(|(_, t)| !t.options)
        .chain(templates.iter().filter(|(_, t)| t.options));
    for (_, t) in ordered {
        let need = t.record.len() + 4 + 3;
        if cur.len() + need > MAX_PACKET && cur.len() > hdr_len {
            close_set(&mut cur, &mut set_start);
            finish(std::mem::take(&mut cur), records_in_packet, &mut packets);
            records_in_packet = 0;
            start_packet(&mut cur);
        }
        if set_start.is_some_and(|(_, o)| o != t.options) {
            close_set(&mut cur, &mut set_start);
        }
        if set_start.is_none() {
            set_start = Some((cur.len(), t.options));
            let id = if t.options { opt_id } else { tpl_id };
            cur.extend_from_slice(&id.to_be_bytes());
            cur.extend_from_slice(&[0, 0]);
        }
        cur.extend_from_slice(&t.record);
        records_in_packet = records_in_packet.saturating_add(1);
    }
    close_set(&mut cur, &mut set_start);
    finish(cur, records_in_packet, &mut packets);
    packets
}

static MALFORMED_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static EVICT_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

/// The batcher hook of one flow kind (see the module doc).
pub(crate) struct FlowContext {
    kind: InputKind,
    cache: TemplateCache,
    emitted: HashSet<DomainKey>,
    counters: Arc<Counters>,
    evictions_reported: u64,
    malformed_reported: u64,
    gauge: ::metrics::Gauge,
    evictions: ::metrics::Counter,
}

impl FlowContext {
    pub fn new(kind: InputKind, max_entries: usize, counters: Arc<Counters>) -> Self {
        Self {
            kind,
            cache: TemplateCache::new(max_entries),
            emitted: HashSet::new(),
            counters,
            evictions_reported: 0,
            malformed_reported: 0,
            gauge: ::metrics::gauge!("edge_relay_flow_templates", "kind" => kind.as_str()),
            evictions: ::metrics::counter!("edge_relay_flow_template_evictions_total", "kind" => kind.as_str()),
        }
    }
}

impl ContextHook for FlowContext {
    fn kind(&self) -> InputKind {
        self.kind
    }

    fn before_record(
        &mut self,
        new_batch: bool,
        recv_ns: i64,
        peer: Option<SocketAddr>,
        payload: &[u8],
        emit: &mut EmitContext<'_>,
    ) {
        if new_batch {
            self.emitted.clear();
        }
        let Ok(h) = header(payload) else {
            return; // legacy NetFlow versions: no templates
        };
        let key = DomainKey::new(peer, &h);
        if self.emitted.insert(key)
            && let Some(cx) = self.cache.context(&key)
        {
            for pkt in cx.packets {
                emit(cx.recv_ns, cx.peer, pkt);
            }
        }
        self.cache.learn(peer, recv_ns, payload);

        let c = &self.counters;
        c.templates_cached
            .store(self.cache.len() as u64, Ordering::Relaxed);
        self.gauge.set(self.cache.len() as f64);
        if self.cache.evictions > self.evictions_reported {
            let n = self.cache.evictions - self.evictions_reported;
            self.evictions_reported = self.cache.evictions;
            c.template_evictions.fetch_add(n, Ordering::Relaxed);
            self.evictions.increment(n);
            if let Some(suppressed) = EVICT_LOG.allow() {
                tracing::warn!(kind = %self.kind, evicted = n, suppressed,
                    "template cache full: evicted the oldest templates (raise max_templates)");
            }
        }
        if self.cache.malformed > self.malformed_reported {
            self.malformed_reported = self.cache.malformed;
            c.count_issue(self.kind, Issue::BadSet);
            if let Some(suppressed) = MALFORMED_LOG.allow() {
                tracing::warn!(kind = %self.kind, ?peer, suppressed,
                    "malformed template record (kept raw; the templates before it are cached)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipfix(domain: u32, sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut p = vec![0, 10, 0, 0];
        p.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&domain.to_be_bytes());
        for (id, body) in sets {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
            p.extend_from_slice(body);
        }
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    fn tmpl(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
        let mut r = id.to_be_bytes().to_vec();
        r.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for (ie, len) in fields {
            r.extend_from_slice(&ie.to_be_bytes());
            r.extend_from_slice(&len.to_be_bytes());
        }
        r
    }

    #[test]
    fn check_classifies_and_counts_damage() {
        let good = ipfix(1, &[(256, vec![1, 2, 3, 4])]);
        let c = check(&good).unwrap();
        assert_eq!((c.kind, c.issue), (InputKind::Ipfix, None));
        assert_eq!(
            check(&good[..good.len() - 2]).unwrap().issue,
            Some(Issue::Truncated)
        );
        assert_eq!(check(&good[..10]), Err(Reject::TruncatedHeader));
        assert_eq!(check(&[0, 42, 0, 0]), Err(Reject::UnknownVersion(42)));
        assert_eq!(check(&[]), Err(Reject::TruncatedHeader));
        let mut bad_set = good.clone();
        bad_set[18..20].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(check(&bad_set).unwrap().issue, Some(Issue::BadSet));
        let mut v5 = vec![0u8; 24];
        v5[1] = 5;
        assert_eq!(check(&v5).unwrap().issue, Some(Issue::LegacyVersion));
        // Never panics on junk.
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            let _ = check(&junk);
            TemplateCache::new(4).learn(None, 0, &junk);
        }
    }

    #[test]
    fn cache_keeps_latest_templates_renders_them_and_evicts_the_oldest() {
        let peer: SocketAddr = "192.0.2.1:4739".parse().unwrap();
        let mut c = TemplateCache::new(2);
        let t256 = tmpl(256, &[(8, 4), (12, 4)]);
        c.learn(Some(peer), 5, &ipfix(1, &[(2, t256.clone())]));
        let key = DomainKey {
            exporter: peer.ip(),
            version: 10,
            domain: 1,
        };
        let cx = c.context(&key).unwrap();
        assert_eq!((cx.recv_ns, cx.peer), (5, Some(peer)));
        assert_eq!(cx.packets.len(), 1);
        assert_eq!(cx.packets[0], ipfix(1, &[(2, t256.clone())]));
        // Redefinition replaces; a second id adds; a third evicts the oldest.
        let t256b = tmpl(256, &[(8, 4)]);
        c.learn(Some(peer), 6, &ipfix(1, &[(2, t256b.clone())]));
        c.learn(Some(peer), 7, &ipfix(1, &[(2, tmpl(257, &[(7, 2)]))]));
        assert_eq!((c.len(), c.evictions), (2, 0));
        c.learn(Some(peer), 8, &ipfix(2, &[(2, tmpl(300, &[(7, 2)]))]));
        assert_eq!((c.len(), c.evictions), (2, 1));
        let cx = c.context(&key).unwrap();
        assert_eq!(cx.packets[0], ipfix(1, &[(2, tmpl(257, &[(7, 2)]))]));
        // Withdrawal.
        c.learn(Some(peer), 9, &ipfix(1, &[(2, vec![1, 1, 0, 0])]));
        assert!(c.context(&key).is_none());
    }
}
