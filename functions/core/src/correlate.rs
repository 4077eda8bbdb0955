//! Correlation: NAT events into mapping intervals, and the attribution rule.
//!
//! Pure functions over rows the query layer fetched. The rule errs towards "ambiguous" and "no
//! match" rather than a guess: a wrong answer names an innocent person.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::model::{Micros, NatEventKind};

/// A NAT event as the lake stores it, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NatRow {
    pub time: Micros,
    pub event: NatEventKind,
    pub protocol: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub x_ip: IpAddr,
    pub x_port: Option<u16>,
    pub x_port_end: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub vrf: Option<String>,
    pub direction: Option<String>,
    pub device: Option<String>,
    pub end_time: Option<Micros>,
    pub subscriber: Option<String>,
    pub raw_key: String,
    pub raw_record: u64,
}

impl NatRow {
    /// Whether `other` is a copy of this event: the same record and every field equal, the
    /// subscriber too unless one copy has none (a record normalized again, with identity
    /// data it lacked before). Copies that name different subscribers (normalized again from
    /// corrected identity data) are both kept: which one is right is not something the lake
    /// knows, so the answer names both and is ambiguous. One raw record can hold several
    /// events (an IPFIX datagram), so the provenance alone does not make a copy.
    pub fn same_event(&self, other: &NatRow) -> bool {
        let plain = |r: &NatRow| NatRow {
            subscriber: None,
            ..r.clone()
        };
        let subscribers_agree = match (&self.subscriber, &other.subscriber) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.raw_key == other.raw_key
            && self.raw_record == other.raw_record
            && subscribers_agree
            && plain(self) == plain(other)
    }
}

/// `rows` (each with something that travels along) without copies of an event (see
/// [`NatRow::same_event`]), the first of each kept (with a copy's subscriber when the first
/// has none); ordered by provenance.
pub fn drop_copies<E>(mut rows: Vec<(NatRow, E)>) -> Vec<(NatRow, E)> {
    rows.sort_by(|(a, _), (b, _)| (&a.raw_key, a.raw_record).cmp(&(&b.raw_key, b.raw_record)));
    let mut kept: Vec<(NatRow, E)> = Vec::with_capacity(rows.len());
    // Where the kept rows of the current record begin: copies are looked for among them only.
    let mut record_start = 0;
    for (row, e) in rows {
        if kept
            .last()
            .is_none_or(|(l, _)| (&l.raw_key, l.raw_record) != (&row.raw_key, row.raw_record))
        {
            record_start = kept.len();
        }
        let copy = if row.raw_key.is_empty() {
            None
        } else {
            kept[record_start..]
                .iter_mut()
                .find(|(k, _)| k.same_event(&row))
        };
        match copy {
            Some((k, _)) => {
                if k.subscriber.is_none() {
                    k.subscriber = row.subscriber;
                }
            }
            None => kept.push((row, e)),
        }
    }
    kept
}

/// Where a piece of evidence lives: the raw object and the record index in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Evidence {
    pub key: String,
    pub record: u64,
}

/// A mapping held over [start, end). `start_known` is false when the opening event lies before
/// the searched range (only its close or interim records were seen); `end` is None while open.
/// `subscriber` is the opening event's; `other_subscribers` those its later events (or copies
/// of them) name instead: the inside address changed hands while the mapping was held, or the
/// identity data changed between normalizations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    pub device: Option<String>,
    pub vrf: Option<String>,
    pub protocol: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub x_ip: IpAddr,
    pub x_port: Option<u16>,
    pub x_port_end: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub start: Micros,
    pub start_known: bool,
    pub end: Option<Micros>,
    pub subscriber: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_subscribers: Vec<String>,
    /// Times of the first and the last of this mapping's events that were read.
    pub first_seen: Micros,
    pub last_seen: Micros,
    pub evidence: Vec<Evidence>,
    /// A mapping seen at instants only (session start logs, conntrack listing lines, one-packet
    /// flows): held from its first sighting to its last (`start`..`end`; sightings of the same
    /// mapping less than its idle reach apart are one holding), for how long after is not known
    /// (see [`doubt_seen_once`]).
    #[serde(skip)]
    pub sighted: bool,
}

impl Interval {
    /// Another event of this mapping: its evidence, and its subscriber when it names another.
    fn absorb(&mut self, r: &NatRow) {
        self.first_seen = self.first_seen.min(r.time);
        self.last_seen = self.last_seen.max(r.time);
        let ev = Evidence {
            key: r.raw_key.clone(),
            record: r.raw_record,
        };
        if self.evidence.last() != Some(&ev) {
            self.evidence.push(ev);
        }
        note_subscriber(
            &mut self.subscriber,
            &mut self.other_subscribers,
            r.subscriber.as_deref(),
        );
    }

    /// Every subscriber this mapping's events name.
    fn subscribers(&self) -> impl Iterator<Item = &String> {
        self.subscriber.iter().chain(&self.other_subscribers)
    }
}

/// Records `seen` as the subscriber, or among the others when a different one is already named.
fn note_subscriber(first: &mut Option<String>, others: &mut Vec<String>, seen: Option<&str>) {
    let Some(seen) = seen else { return };
    match first {
        None => *first = Some(seen.to_string()),
        Some(f) if f == seen => {}
        Some(_) => {
            if !others.iter().any(|o| o == seen) {
                others.push(seen.to_string());
            }
        }
    }
}

/// Where an event falls among those of one mapping at the same instant: what opens it, then
/// what says it is still held, then what ends it. (A port block's interim record logged in
/// the second of its release must not reopen it.)
fn phase(k: NatEventKind) -> u8 {
    if k.opens() {
        0
    } else if k == NatEventKind::PortBlockInterim {
        1
    } else if k.closes() {
        2
    } else {
        3
    }
}

type MappingKey<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<u8>,
    IpAddr,
    Option<u16>,
    Option<u16>,
    Option<IpAddr>,
    Option<u16>,
    Option<IpAddr>,
    Option<u16>,
);

/// Whether two mappings are the same inside and public address:port (any destination).
fn same_holding(a: &MappingKey, b: &MappingKey) -> bool {
    (a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7) == (b.0, b.1, b.2, b.3, b.4, b.5, b.6, b.7)
}

/// A record of a mapping in use at an instant whose end it does not state: a session start log,
/// a listing line, a packet log line (`end_time` null). One whose end is its start is read so
/// too: objects written before sightings had a null `end_time` stored them that way, and a
/// session closed as it began leaves the mapping's own end as unknown as a sighting does.
pub fn is_sighting(r: &NatRow) -> bool {
    r.event == NatEventKind::MappingObserved && r.end_time.is_none_or(|e| e <= r.time)
}

fn mapping_key(r: &NatRow) -> MappingKey<'_> {
    // Port-block and address events have no destination; sessions pair per destination because
    // one public port can carry several conntrack entries at once (endpoint-independent mapping).
    let (dst_ip, dst_port) = match r.event {
        NatEventKind::SessionCreate
        | NatEventKind::SessionDelete
        | NatEventKind::MappingObserved => (r.dst_ip, r.dst_port),
        _ => (None, None),
    };
    (
        r.device.as_deref(),
        r.vrf.as_deref(),
        r.protocol,
        r.x_ip,
        r.x_port,
        r.x_port_end,
        r.src_ip,
        r.src_port,
        dst_ip,
        dst_port,
    )
}

fn new_interval(r: &NatRow, start: Micros, start_known: bool) -> Interval {
    Interval {
        device: r.device.clone(),
        vrf: r.vrf.clone(),
        protocol: r.protocol,
        src_ip: r.src_ip,
        src_port: r.src_port,
        x_ip: r.x_ip,
        x_port: r.x_port,
        x_port_end: r.x_port_end,
        dst_ip: r.dst_ip,
        dst_port: r.dst_port,
        start,
        start_known,
        end: None,
        subscriber: r.subscriber.clone(),
        other_subscribers: Vec::new(),
        first_seen: r.time,
        last_seen: r.time,
        evidence: vec![Evidence {
            key: r.raw_key.clone(),
            record: r.raw_record,
        }],
        sighted: false,
    }
}

/// Pairs events into intervals. `range_start` is where the fetched rows begin: an interval whose
/// opening event was not fetched starts there, marked `start_known = false` — or where the same
/// mapping last ended, if later: one inside address:port cannot hold the same mapping twice at
/// once.
pub fn intervals(mut rows: Vec<NatRow>, range_start: Micros) -> Vec<Interval> {
    rows.sort_by(|a, b| {
        a.time
            .cmp(&b.time)
            .then(phase(a.event).cmp(&phase(b.event)))
            .then(a.event.cmp(&b.event))
            .then(a.raw_record.cmp(&b.raw_record))
    });
    // Each row's mapping as a dense id, numbered in the mappings' order: the state below is
    // then indexed by id instead of kept in ordered maps keyed by the mapping (compaction calls
    // this once per (x_ip, x_port) group, hundreds of thousands of times an hour, and the maps'
    // node allocations and key copies were most of a call), and the intervals still open at
    // the end come out in the mappings' order, as from an ordered map.
    let (ids, keys) = mapping_ids(&rows);
    let mut state: Vec<MappingState> = (0..keys.len()).map(|_| MappingState::default()).collect();
    let mut done: Vec<Interval> = Vec::with_capacity(rows.len());
    // Per mapping, its latest span of sightings (an index into `done`).
    let mut sightings = Sightings::new(keys.len());
    let unknown_start = |closed: Option<usize>, done: &[Interval], t: Micros| {
        let after = closed.and_then(|i| done[i].end).unwrap_or(range_start);
        range_start.max(after).min(t)
    };
    for (r, &id) in rows.iter().zip(&ids) {
        let key = &keys[id];
        let sighting = is_sighting(r);
        if !sighting && !sightings.is_empty() {
            // Any other record of the mapping — an open, a close, a whole session — ends a span
            // of sightings: the next one is another holding. A record for every destination
            // (an ASA translation) ends those of every destination.
            if key.8.is_none() && key.9.is_none() {
                sightings.retain(|k| !same_holding(&keys[k], key));
            } else {
                sightings.remove(id);
            }
        }
        let st = &mut state[id];
        match r.event {
            k if k.opens() => match &mut st.open {
                // A repeated create for a mapping already open (e.g. two collectors) is more
                // evidence for the same interval, not a new one.
                Some(iv) => {
                    iv.absorb(r);
                    if iv.start < r.time {
                        st.reopened = Some(r);
                    }
                }
                None => st.open = Some(new_interval(r, r.time, true)),
            },
            k if k.closes() => {
                let mut iv = match st.open.take() {
                    Some(iv) => iv,
                    None => {
                        // The same close again (a second collector's copy): more evidence
                        // for the interval it ended, not one reaching back to `range_start`.
                        if let Some(i) = st.closed
                            && done[i].end == Some(r.time)
                        {
                            done[i].absorb(r);
                            continue;
                        }
                        new_interval(r, unknown_start(st.closed, &done, r.time), false)
                    }
                };
                let reopen = st.reopened.take().filter(|o| {
                    o.time == r.time && !(o.raw_key == r.raw_key && o.raw_record < r.raw_record)
                });
                if let Some(o) = reopen {
                    iv.evidence
                        .retain(|e| !(e.key == o.raw_key && e.record == o.raw_record));
                }
                iv.absorb(r);
                iv.end = Some(r.time);
                st.closed = Some(done.len());
                done.push(iv);
                if let Some(o) = reopen {
                    st.open = Some(new_interval(o, o.time, true));
                }
            }
            NatEventKind::MappingObserved => {
                if sighting {
                    // Seen again within its idle reach (or a copy from another collector):
                    // held in between, as between a create and its delete; another host seen
                    // in between is a candidate too.
                    if let Some(i) = sightings.get(id)
                        && let Some(last) = done[i].end
                        && r.time - last <= seen_once_reach(r.protocol)
                    {
                        done[i].absorb(r);
                        done[i].end = Some(r.time);
                        continue;
                    }
                    sightings.insert(id, done.len());
                }
                let end = r.end_time.unwrap_or(r.time).max(r.time);
                let mut iv = new_interval(r, r.time, true);
                iv.end = Some(end);
                iv.last_seen = end;
                iv.sighted = sighting;
                done.push(iv);
            }
            _ => match &mut st.open {
                // Interim: still held.
                Some(iv) => iv.absorb(r),
                None => {
                    st.open = Some(new_interval(
                        r,
                        unknown_start(st.closed, &done, r.time),
                        false,
                    ))
                }
            },
        }
    }
    done.extend(state.into_iter().filter_map(|s| s.open));
    done
}

/// What [`intervals`] knows of one mapping while it reads the rows in time order.
#[derive(Default)]
struct MappingState<'a> {
    open: Option<Interval>,
    /// An opening event for the mapping while it was already open since earlier: more evidence
    /// for it — unless a close of it follows at the same instant (opens sort first) that the
    /// device did not log after it (a later record of the same raw object): then the close
    /// ends the old holding and this opens the next (a block released and allocated again in
    /// one second).
    reopened: Option<&'a NatRow>,
    /// Its last closed interval (an index into the intervals done).
    closed: Option<usize>,
}

/// Each row's mapping as an index into the distinct mappings, which are in ascending order.
fn mapping_ids(rows: &[NatRow]) -> (Vec<usize>, Vec<MappingKey<'_>>) {
    let mut keyed: Vec<(MappingKey, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (mapping_key(r), i))
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut ids = vec![0; rows.len()];
    let mut keys: Vec<MappingKey> = Vec::with_capacity(keyed.len());
    for (key, i) in keyed {
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        ids[i] = keys.len() - 1;
    }
    (ids, keys)
}

/// Per mapping id, its latest span of sightings (an index into the intervals done), with the
/// ids that have one listed so that ending them all is not a walk over every mapping.
struct Sightings {
    span: Vec<Option<usize>>,
    /// Ids with a span, and ids whose span was removed since (and maybe set again, so listed
    /// twice): `retain` drops those, bounded by the rows read.
    listed: Vec<usize>,
    live: usize,
}

impl Sightings {
    fn new(mappings: usize) -> Self {
        Self {
            span: vec![None; mappings],
            listed: Vec::new(),
            live: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn get(&self, id: usize) -> Option<usize> {
        self.span[id]
    }

    fn insert(&mut self, id: usize, done: usize) {
        if self.span[id].replace(done).is_none() {
            self.live += 1;
            self.listed.push(id);
        }
    }

    fn remove(&mut self, id: usize) {
        if self.span[id].take().is_some() {
            self.live -= 1;
        }
    }

    /// Keeps the spans of the mappings `keep` says yes to.
    fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let span = &mut self.span;
        let live = &mut self.live;
        self.listed.retain(|&id| {
            if span[id].is_some() && !keep(id) {
                span[id] = None;
                *live -= 1;
            }
            span[id].is_some()
        });
    }
}

/// Whether `iv` covers any instant of [at - window, at + window]. Closed intervals are [start, end]
/// inclusive of the end instant: devices log the delete at or after the last packet.
pub fn overlaps(iv: &Interval, at: Micros, window: Micros) -> bool {
    iv.start <= at + window && iv.end.is_none_or(|e| e >= at - window)
}

/// Distance from `at` to the interval (0 inside it): the ranking of candidates.
pub fn distance(iv: &Interval, at: Micros) -> Micros {
    if at < iv.start {
        iv.start - at
    } else {
        match iv.end {
            Some(e) if at > e => at - e,
            _ => 0,
        }
    }
}

/// One attribution candidate: an inside address:port that held the public address:port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub x_ip: IpAddr,
    pub x_port: Option<u16>,
    pub x_port_end: Option<u16>,
    pub protocol: Option<u8>,
    pub vrf: Option<String>,
    pub device: Option<String>,
    pub start: Micros,
    pub start_known: bool,
    pub end: Option<Micros>,
    pub distance: Micros,
    pub subscriber: Option<String>,
    /// Other subscribers this inside address:port's events name within the window (see
    /// [`Interval::other_subscribers`]); any makes the answer ambiguous.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_subscribers: Vec<String>,
    /// Who held `src_ip` at the question's time by the identity sources the lookup reads (see
    /// [`add_identity_at`]); None when it reads none or they know no one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_at_time: Option<String>,
    pub destinations: Vec<(Option<IpAddr>, Option<u16>)>,
    /// Times of the first and last of its events that were read.
    pub first_seen: Micros,
    pub last_seen: Micros,
    /// Why its own events do not establish that it held the port at the question's time (its
    /// opening or its close was never read); any makes the answer ambiguous.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub doubts: Vec<String>,
    pub evidence: Vec<Evidence>,
    /// Set when the candidate was computed from a deterministic NAT configuration rather than
    /// read from logs (then `evidence` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<crate::deterministic::RuleEvidence>,
}

/// The answer to "who held x_ip:x_port at `at`?".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    pub matches: Vec<Candidate>,
    /// More than one subscriber (or inside address, when subscribers are unknown) fits.
    pub ambiguous: bool,
}

/// (inside address, inside port, protocol, …): the candidates of one attribution.
type InsideKey = (
    Option<IpAddr>,
    Option<u16>,
    Option<u8>,
    Option<String>,
    Option<String>,
    Option<u16>,
);

impl Candidate {
    /// The inside host it stands for (its key in [`attribute`]).
    fn inside_key(&self) -> InsideKey {
        (
            self.src_ip,
            self.src_port,
            self.protocol,
            self.vrf.clone(),
            self.device.clone(),
            self.x_port,
        )
    }
}

/// Applies the attribution rule to the intervals of one public address:port.
pub fn attribute(ivs: Vec<Interval>, at: Micros, window: Micros) -> Attribution {
    let mut by_inside: BTreeMap<InsideKey, Candidate> = BTreeMap::new();
    for iv in ivs.into_iter().filter(|iv| overlaps(iv, at, window)) {
        let d = distance(&iv, at);
        let key = (
            iv.src_ip,
            iv.src_port,
            iv.protocol,
            iv.vrf.clone(),
            iv.device.clone(),
            iv.x_port,
        );
        let c = by_inside.entry(key).or_insert_with(|| Candidate {
            src_ip: iv.src_ip,
            src_port: iv.src_port,
            x_ip: iv.x_ip,
            x_port: iv.x_port,
            x_port_end: iv.x_port_end,
            protocol: iv.protocol,
            vrf: iv.vrf.clone(),
            device: iv.device.clone(),
            start: iv.start,
            start_known: iv.start_known,
            end: iv.end,
            distance: d,
            subscriber: None,
            other_subscribers: Vec::new(),
            subscriber_at_time: None,
            destinations: Vec::new(),
            first_seen: iv.first_seen,
            last_seen: iv.last_seen,
            doubts: Vec::new(),
            evidence: Vec::new(),
            rule: None,
        });
        c.first_seen = c.first_seen.min(iv.first_seen);
        c.last_seen = c.last_seen.max(iv.last_seen);
        if iv.start < c.start {
            c.start = iv.start;
            c.start_known = iv.start_known;
        }
        c.end = match (c.end, iv.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        c.distance = c.distance.min(d);
        for s in iv.subscribers() {
            note_subscriber(&mut c.subscriber, &mut c.other_subscribers, Some(s));
        }
        if iv.dst_ip.is_some() || iv.dst_port.is_some() {
            c.destinations.push((iv.dst_ip, iv.dst_port));
        }
        c.evidence.extend(iv.evidence);
    }
    let mut matches: Vec<Candidate> = by_inside.into_values().collect();
    for c in &mut matches {
        c.evidence.sort();
        c.evidence.dedup();
        c.destinations.sort();
        c.destinations.dedup();
        // Only a close (or interim record) after the question's time was read: the mapping
        // may have begun after it, its create lost.
        if !c.start_known && c.first_seen > at + window {
            c.doubts.push(format!(
                "its opening was not read: its first event read is at {}, after the question's time",
                crate::time::format_time(c.first_seen)
            ));
        }
    }
    matches.sort_by(|a, b| a.distance.cmp(&b.distance).then(b.start.cmp(&a.start)));
    Attribution {
        ambiguous: unsettled(&matches),
        matches,
    }
}

/// Whether two mappings are held by different hosts: another inside address (or VRF), unless
/// both name the same subscriber.
fn other_holder(c: &Candidate, iv: &Interval) -> bool {
    if let (Some(a), Some(b)) = (&c.subscriber, &iv.subscriber)
        && a == b
    {
        return false;
    }
    (c.src_ip, &c.vrf) != (iv.src_ip, &iv.vrf)
}

/// Doubts a candidate still open at the question's time whose close was never read when another
/// host began holding the same public port (`all`: every interval of the port that was read,
/// those a destination filter left out included) after the candidate's last event and by the
/// question's time: its close was most likely lost (a UDP syslog line), and naming it would
/// name whoever held the port last before the loss. (A NAT that shares one public port between
/// hosts towards different destinations makes this a false doubt; the answer then errs
/// towards ambiguous, never towards a name.)
pub fn doubt_superseded(att: &mut Attribution, all: &[Interval], at: Micros, window: Micros) {
    for c in att.matches.iter_mut().filter(|c| c.end.is_none()) {
        let protocols_meet = |iv: &Interval| {
            c.protocol.is_none() || iv.protocol.is_none() || c.protocol == iv.protocol
        };
        let later = all
            .iter()
            .filter(|iv| {
                iv.start > c.last_seen
                    && iv.start <= at + window
                    && protocols_meet(iv)
                    && other_holder(c, iv)
            })
            .min_by_key(|iv| iv.start);
        if let Some(iv) = later {
            let who = iv.src_ip.map(|i| i.to_string()).unwrap_or_default();
            c.doubts.push(format!(
                "its close was not read, and {who} held this public port from {}, after this mapping's last event at {}",
                crate::time::format_time(iv.start),
                crate::time::format_time(c.last_seen)
            ));
        }
    }
    att.ambiguous = att.ambiguous || unsettled(&att.matches);
}

/// How long after a mapping seen at one instant it may still be held, by protocol: RFC 5382's
/// least idle timeout for an established TCP session (2 h 4 min) for TCP and protocols not
/// known; UDP 5 min (RFC 4787 asks for at least 2 and recommends 5; the common defaults are
/// 30 s to 3 min); ICMP 60 s (RFC 5508).
pub fn seen_once_reach(protocol: Option<u8>) -> Micros {
    match protocol {
        Some(17) => 300_000_000,
        Some(1 | 58) => 60_000_000,
        _ => 7_440_000_000,
    }
}

/// What the other records read say of a span of sightings (see [`sightings`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SightingFate {
    /// Another record says how long after its last sighting the mapping was held.
    pub settled: bool,
    /// The same mapping was sighted again later (after `until` too): seen on both sides of a
    /// question between the two.
    pub seen_again: bool,
}

/// For each interval of `all`, what the others say of it when it is a span of sightings
/// (`Interval::sighted`; the default otherwise). It is settled by a record of the same mapping
/// (the same destination too) that covers its last sighting or follows it by `until` (a
/// whole-session record, an open create, a sighting past the idle reach), or by a record of the
/// same inside and public address:port for every destination that covers it (an ASA
/// translation, whose delete bounds the connections built under it). Records after `until`
/// (the question's time and window) do not settle it: the question falls before them. Empty
/// when no interval is a sighting (compaction asks per public port and hour). Grouped by
/// mapping, so one inside port talking to many destinations stays linear.
pub fn sightings(all: &[Interval], until: Micros) -> Vec<SightingFate> {
    if !all.iter().any(|iv| iv.sighted) {
        return Vec::new();
    }
    type Holding<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<u8>,
        IpAddr,
        Option<u16>,
        Option<u16>,
        Option<IpAddr>,
        Option<u16>,
    );
    fn holding(a: &Interval) -> Holding<'_> {
        (
            a.device.as_deref(),
            a.vrf.as_deref(),
            a.protocol,
            a.x_ip,
            a.x_port,
            a.x_port_end,
            a.src_ip,
            a.src_port,
        )
    }
    let mut by_mapping: HashMap<(Holding<'_>, Option<IpAddr>, Option<u16>), Vec<usize>> =
        HashMap::new();
    // Records for every destination, by holding.
    let mut every: HashMap<Holding<'_>, Vec<usize>> = HashMap::new();
    for (i, iv) in all.iter().enumerate() {
        if iv.dst_ip.is_none() && iv.dst_port.is_none() {
            every.entry(holding(iv)).or_default().push(i);
        }
        by_mapping
            .entry((holding(iv), iv.dst_ip, iv.dst_port))
            .or_default()
            .push(i);
    }
    let mut out = vec![SightingFate::default(); all.len()];
    for (i, iv) in all.iter().enumerate().filter(|(_, iv)| iv.sighted) {
        let last = iv.end.unwrap_or(iv.start);
        let covers = |o: &Interval| o.start <= last && o.end.is_none_or(|e| e >= last);
        let same = &by_mapping[&(holding(iv), iv.dst_ip, iv.dst_port)];
        let fate = &mut out[i];
        for &j in same.iter().filter(|&&j| j != i) {
            let o = &all[j];
            fate.settled |= covers(o) || (o.start > last && o.start <= until);
            fate.seen_again |= o.sighted && o.start > last;
        }
        if let Some(ev) = every.get(&holding(iv)) {
            fate.settled |= ev.iter().any(|&j| j != i && covers(&all[j]));
        }
    }
    out
}

/// Adds, in doubt, a mapping seen at instants only (`Interval::sighted`), last before the
/// question's time, when nothing read shows it ended (see [`sightings`]) and the question falls
/// within [`seen_once_reach`] of its last sighting — or before a later sighting of the same
/// mapping: seen on both sides, with no record of an end between. PAN-OS and FortiGate log a
/// session's start, then its whole record only when it ends: without this, a question asked
/// during a long session would be answered "no one" for a port in use. Another host seen on
/// the public port after the last sighting is named in the doubt, not taken as proof the
/// mapping ended: a NAT may share one public port between hosts towards different
/// destinations. `candidates`: the intervals the answer may name (those the question's
/// destination fits); `all`: every interval read.
pub fn doubt_seen_once(
    att: &mut Attribution,
    candidates: &[Interval],
    all: &[Interval],
    at: Micros,
    window: Micros,
) {
    let fates = sightings(candidates, at + window);
    let open: Vec<Interval> = candidates
        .iter()
        .zip(&fates)
        .filter(|(iv, fate)| {
            let last = iv.end.unwrap_or(iv.start);
            iv.sighted
                && !fate.settled
                && last < at - window
                && (at - last <= seen_once_reach(iv.protocol) || fate.seen_again)
        })
        .map(|(iv, _)| iv.clone())
        .collect();
    let Some(reach) = open.iter().map(|iv| at - iv.end.unwrap_or(iv.start)).max() else {
        return;
    };
    // One candidate per inside host (sighted towards several destinations: one), its
    // `distance` from its latest sighting: the attribution rule with a window reaching them all.
    let mut added = attribute(open, at, reach).matches;
    added.retain(|c| !att.matches.iter().any(|m| m.inside_key() == c.inside_key()));
    for c in &mut added {
        let last = at - c.distance;
        c.end = None;
        c.doubts.push(format!(
            "seen last at {} (a session start log, a listing or a packet log line) and no record of its end was read: whether it was still held at the question's time is not known",
            crate::time::format_time(last)
        ));
        // The first other host on the port after the last sighting (a lost end record, or a
        // port shared towards other destinations).
        if let Some(o) = all
            .iter()
            .filter(|o| {
                o.start > last
                    && o.start <= at + window
                    && (c.protocol.is_none() || o.protocol.is_none() || c.protocol == o.protocol)
                    && (o.src_ip, &o.vrf) != (c.src_ip, &c.vrf)
                    && !(o.subscriber.is_some() && o.subscriber == c.subscriber)
            })
            .min_by_key(|o| o.start)
        {
            c.doubts.push(format!(
                "{} held this public port from {}, after this mapping's last sighting",
                o.src_ip.map(|i| i.to_string()).unwrap_or_default(),
                crate::time::format_time(o.start)
            ));
        }
    }
    att.matches.extend(added);
    att.matches
        .sort_by(|a, b| a.distance.cmp(&b.distance).then(b.start.cmp(&a.start)));
    att.ambiguous = att.ambiguous || unsettled(&att.matches);
}

/// Rechecks the answer at a device's own time for the question when its clock is shown to run
/// ahead of the relay's by more than the window (and a second). `ahead`: one of the device's events reached the
/// relay that long before the time the device gave it, so its clock is at least that far ahead
/// (transit only adds delay; a device behind cannot be told from one that logs late, and is not
/// checked). What happened at `at` the device stamped near `at + ahead`: its candidates named at
/// one of the two times and not at the other are in doubt, and those named only at the device's
/// time are added, in doubt. `ivs`: the intervals the answer was computed from.
pub fn doubt_clock_ahead(
    att: &mut Attribution,
    ivs: &[Interval],
    at: Micros,
    window: Micros,
    device: Option<&str>,
    ahead: Micros,
) {
    // A second at least: second-stamped devices and NetFlow's second-resolution export time.
    if ahead <= window.max(1_000_000) {
        return;
    }
    let own: Vec<Interval> = ivs
        .iter()
        .filter(|iv| iv.device.as_deref() == device)
        .cloned()
        .collect();
    let shifted = attribute(own, at + ahead, window);
    let key = |c: &Candidate| (c.src_ip, c.src_port, c.protocol, c.vrf.clone(), c.x_port);
    let at_device: BTreeSet<_> = shifted.matches.iter().map(key).collect();
    let at_relay: BTreeSet<_> = att
        .matches
        .iter()
        .filter(|c| c.device.as_deref() == device)
        .map(key)
        .collect();
    let why = format!(
        "the clock of device {} runs at least {:.3} s ahead of the relay's (one of its events arrived that long before its own time)",
        device.unwrap_or("(unnamed)"),
        ahead as f64 / 1e6
    );
    let device_time = crate::time::format_time(at + ahead);
    for c in att
        .matches
        .iter_mut()
        .filter(|c| c.device.as_deref() == device && !at_device.contains(&key(c)))
    {
        c.doubts.push(format!(
            "{why}: at the device's time for the question, {device_time}, this mapping did not hold the port"
        ));
    }
    for mut c in shifted
        .matches
        .into_iter()
        .filter(|c| !at_relay.contains(&key(c)))
    {
        c.doubts.push(format!(
            "{why}: this mapping held the port at the device's time for the question, {device_time}, not at the question's"
        ));
        att.matches.push(c);
    }
    att.ambiguous = att.ambiguous || unsettled(&att.matches);
}

/// Whether the candidates leave the answer open: they name more than one subscriber (or host),
/// or one of them is in doubt.
fn unsettled(matches: &[Candidate]) -> bool {
    names(matches).len() > 1 || matches.iter().any(|c| !c.doubts.is_empty())
}

/// Who the candidates name: their subscribers, else their inside address in its VRF (the same
/// private address in two VRFs is two hosts); each once.
fn names(matches: &[Candidate]) -> Vec<String> {
    let mut who: Vec<String> = matches
        .iter()
        .flat_map(|c| {
            let named: Vec<String> = c
                .subscriber
                .iter()
                .chain(&c.other_subscribers)
                .map(|s| format!("subscriber {s}"))
                .collect();
            if named.is_empty() {
                let ip = c.src_ip.map(|i| i.to_string()).unwrap_or_default();
                vec![format!("{ip} vrf {:?}", c.vrf)]
            } else {
                named
            }
        })
        .collect();
    who.sort();
    who.dedup();
    who
}

/// Adds who held each candidate's inside address (in its VRF, behind its device) at the
/// question's time by the identity sources (`holder`), to what its events recorded when they were normalized. Events carry the
/// subscriber of their own time, by the identity data normalize had then: a port block held
/// while the inside address changed hands, or identity data that lagged behind, leave it
/// stale. A different holder now named makes the answer ambiguous (both are listed); so does
/// a source that cannot tell (a handover instant). Sources that know no one change nothing;
/// a source that shows the inside address held by no one at that time (between two of its
/// holdings) puts the candidate in doubt: its mapping outlived the address's assignment (a
/// lost close), or the source missed a session.
pub fn add_identity_at<'a>(
    att: &mut Attribution,
    mut holder: impl FnMut(&Candidate) -> crate::enrich::identity::Holder<'a>,
) {
    use crate::enrich::identity::Holder;
    for c in &mut att.matches {
        if c.src_ip.is_none() {
            continue;
        }
        match holder(c) {
            Holder::Nobody => {}
            Holder::Free => {
                c.doubts.push(
                    "the identity sources show its inside address held by no one at the question's time"
                        .to_string(),
                );
            }
            Holder::Ambiguous => att.ambiguous = true,
            Holder::One(s) => {
                c.subscriber_at_time = Some(s.to_string());
                note_subscriber(&mut c.subscriber, &mut c.other_subscribers, Some(s));
            }
        }
    }
    att.ambiguous = att.ambiguous || unsettled(&att.matches);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: Micros, event: NatEventKind, src: &str, sport: u16, xport: u16, rec: u64) -> NatRow {
        NatRow {
            time: t,
            event,
            protocol: Some(6),
            src_ip: Some(src.parse().unwrap()),
            src_port: Some(sport),
            x_ip: "198.51.100.7".parse().unwrap(),
            x_port: Some(xport),
            x_port_end: None,
            dst_ip: Some("203.0.113.80".parse().unwrap()),
            dst_port: Some(443),
            vrf: None,
            direction: None,
            device: Some("cgn1".into()),
            end_time: None,
            subscriber: None,
            raw_key: "raw/k".into(),
            raw_record: rec,
        }
    }

    const S: Micros = 1_000_000;

    #[test]
    fn copies_are_dropped_but_several_events_of_one_record_are_kept() {
        use NatEventKind::*;
        // One record (an IPFIX datagram) opening and closing the same mapping, and opening
        // another port; then the same record read again (a copy, enriched differently).
        let record = vec![
            row(100 * S, SessionCreate, "100.64.0.1", 40000, 5000, 7),
            row(100 * S, SessionDelete, "100.64.0.1", 40000, 5000, 7),
            row(100 * S, SessionCreate, "100.64.0.2", 40001, 5001, 7),
        ];
        let mut copy = record.clone();
        for r in &mut copy {
            r.subscriber = Some("cust-1".into());
        }
        let rows: Vec<(NatRow, usize)> = record
            .iter()
            .cloned()
            .chain(copy)
            .enumerate()
            .map(|(i, r)| (r, i))
            .collect();
        let kept = drop_copies(rows);
        let tags: Vec<usize> = kept.iter().map(|(_, i)| *i).collect();
        assert_eq!(
            tags,
            [0, 1, 2],
            "the first of each event, none of a record's own events"
        );
        // The delete survives, so the mapping is closed.
        let ivs = intervals(kept.into_iter().map(|(r, _)| r).collect(), 0);
        let closed = ivs.iter().find(|iv| iv.x_port == Some(5000)).unwrap();
        assert_eq!(closed.end, Some(100 * S));
        // Rows without a raw key are never taken for copies.
        let mut a = row(1, SessionCreate, "100.64.0.1", 1, 1, 0);
        a.raw_key.clear();
        assert_eq!(drop_copies(vec![(a.clone(), ()), (a, ())]).len(), 2);
    }

    /// The allocation of ports 4096-4159 of 198.51.100.7 to 100.64.1.1 at 100 s.
    fn block_alloc() -> NatRow {
        let mut alloc = row(
            100 * S,
            NatEventKind::PortBlockAlloc,
            "100.64.1.1",
            0,
            4096,
            0,
        );
        alloc.src_port = None;
        alloc.x_port_end = Some(4159);
        alloc.dst_ip = None;
        alloc.dst_port = None;
        alloc
    }

    fn named(mut r: NatRow, subscriber: &str) -> NatRow {
        r.subscriber = Some(subscriber.into());
        r
    }

    #[test]
    fn copies_that_name_different_subscribers_make_the_answer_ambiguous() {
        use NatEventKind::*;
        // The same two records normalized twice, from identity data corrected in between.
        let first = vec![
            named(
                row(100 * S, SessionCreate, "100.64.0.1", 40000, 5000, 0),
                "old",
            ),
            named(
                row(200 * S, SessionDelete, "100.64.0.1", 40000, 5000, 1),
                "old",
            ),
        ];
        let again: Vec<NatRow> = first.iter().map(|r| named(r.clone(), "new")).collect();
        let rows = first.into_iter().chain(again).map(|r| (r, ())).collect();
        let kept: Vec<NatRow> = drop_copies(rows).into_iter().map(|(r, _)| r).collect();
        assert_eq!(kept.len(), 4, "neither copy is silently preferred");
        let a = attribute(intervals(kept, 0), 150 * S, 2 * S);
        assert!(a.ambiguous);
        assert_eq!(a.matches.len(), 1);
        assert_eq!(
            (
                a.matches[0].subscriber.as_deref(),
                &a.matches[0].other_subscribers[..]
            ),
            (Some("old"), &["new".to_string()][..])
        );
        assert_eq!(a.matches[0].evidence.len(), 2);
    }

    #[test]
    fn an_inside_address_changing_hands_during_a_mapping_is_ambiguous() {
        use NatEventKind::*;
        // A port block allocated while sub-1 held 100.64.1.1, still held (interim) after the
        // address went to sub-2: the block's holder at 1500 s is not known from the lake.
        let alloc = named(block_alloc(), "sub-1");
        let mut interim = named(alloc.clone(), "sub-2");
        interim.event = PortBlockInterim;
        interim.time = 1000 * S;
        interim.raw_record = 1;
        let a = attribute(intervals(vec![alloc.clone(), interim], 0), 1500 * S, 2 * S);
        assert!(a.ambiguous);
        assert_eq!(a.matches[0].other_subscribers, ["sub-2"]);
        // The same subscriber throughout is a plain answer.
        let mut same = alloc.clone();
        same.event = PortBlockInterim;
        same.time = 1000 * S;
        same.raw_record = 1;
        assert!(!attribute(intervals(vec![alloc, same], 0), 1500 * S, 2 * S).ambiguous);
    }

    #[test]
    fn a_second_collectors_copy_of_a_delete_does_not_reach_back() {
        use NatEventKind::*;
        let create = row(1800 * S, SessionCreate, "100.64.0.1", 40000, 5000, 0);
        let delete = row(2400 * S, SessionDelete, "100.64.0.1", 40000, 5000, 1);
        let mut copies = vec![create.clone(), delete.clone()];
        for r in [create, delete] {
            copies.push(NatRow {
                raw_key: "raw/other-collector".into(),
                ..r
            });
        }
        let ivs = intervals(copies, 0);
        assert_eq!(ivs.len(), 1, "{ivs:?}");
        assert_eq!((ivs[0].start, ivs[0].end), (1800 * S, Some(2400 * S)));
        assert_eq!(ivs[0].evidence.len(), 4);
        // Before the create nobody held the port.
        assert!(attribute(ivs, 600 * S, 2 * S).matches.is_empty());
    }

    #[test]
    fn a_close_without_its_open_starts_no_earlier_than_the_mappings_last_end() {
        use NatEventKind::*;
        // The second session's create was lost: it began after the first one ended.
        let rows = vec![
            row(100 * S, SessionCreate, "100.64.0.1", 40000, 5000, 0),
            row(200 * S, SessionDelete, "100.64.0.1", 40000, 5000, 1),
            row(900 * S, SessionDelete, "100.64.0.1", 40000, 5000, 2),
        ];
        let mut ivs = intervals(rows, 0);
        ivs.sort_by_key(|iv| iv.start);
        let spans: Vec<_> = ivs
            .iter()
            .map(|iv| (iv.start, iv.end, iv.start_known))
            .collect();
        assert_eq!(
            spans,
            [
                (100 * S, Some(200 * S), true),
                (200 * S, Some(900 * S), false)
            ]
        );
    }

    #[test]
    fn an_interim_in_the_second_of_its_release_does_not_reopen_the_block() {
        use NatEventKind::*;
        let alloc = block_alloc();
        let mut release = alloc.clone();
        release.event = PortBlockRelease;
        release.time = 900 * S;
        release.raw_record = 1;
        let mut interim = release.clone();
        interim.event = PortBlockInterim;
        interim.raw_record = 2;
        let ivs = intervals(vec![alloc, release, interim], 0);
        assert_eq!(ivs.len(), 1, "{ivs:?}");
        assert_eq!((ivs[0].start, ivs[0].end), (100 * S, Some(900 * S)));
        assert!(attribute(ivs, 5000 * S, 2 * S).matches.is_empty());
    }

    #[test]
    fn the_holder_at_the_questions_time_is_weighed_with_the_recorded_one() {
        use crate::enrich::identity::Holder;
        use NatEventKind::*;
        let rows = vec![named(
            row(100 * S, SessionCreate, "100.64.0.1", 40000, 5000, 0),
            "sub-1",
        )];
        let base = attribute(intervals(rows, 0), 150 * S, 2 * S);
        assert!(!base.ambiguous);
        // The identity sources agree: the answer stands, with the holder shown.
        let mut a = base.clone();
        add_identity_at(&mut a, |_: &Candidate| Holder::One("sub-1"));
        assert!(!a.ambiguous);
        assert_eq!(a.matches[0].subscriber_at_time.as_deref(), Some("sub-1"));
        assert!(a.matches[0].other_subscribers.is_empty());
        // They name someone else now: both are listed, and it is ambiguous.
        let mut a = base.clone();
        add_identity_at(&mut a, |_: &Candidate| Holder::One("sub-2"));
        assert!(a.ambiguous);
        assert_eq!(a.matches[0].subscriber.as_deref(), Some("sub-1"));
        assert_eq!(a.matches[0].other_subscribers, ["sub-2"]);
        // They cannot tell (a handover instant): ambiguous.
        let mut a = base.clone();
        add_identity_at(&mut a, |_: &Candidate| Holder::Ambiguous);
        assert!(a.ambiguous);
        // They know no one: as recorded.
        let mut a = base.clone();
        add_identity_at(&mut a, |_: &Candidate| Holder::Nobody);
        assert_eq!(a, base);
        // They show the inside address held by no one then (between two of its sessions): the
        // mapping outlived the assignment, or a session was missed — in doubt.
        let mut a = base.clone();
        add_identity_at(&mut a, |_: &Candidate| Holder::Free);
        assert!(a.ambiguous);
        assert!(a.matches[0].doubts[0].contains("held by no one"), "{a:?}");
        // Events recorded no subscriber: the holder at the time names one, plainly.
        let rows = vec![row(100 * S, SessionCreate, "100.64.0.1", 40000, 5000, 0)];
        let mut a = attribute(intervals(rows, 0), 150 * S, 2 * S);
        add_identity_at(&mut a, |_: &Candidate| Holder::One("sub-3"));
        assert!(!a.ambiguous);
        assert_eq!(a.matches[0].subscriber.as_deref(), Some("sub-3"));
    }

    #[test]
    fn one_private_address_in_two_vrfs_is_two_hosts() {
        use NatEventKind::*;
        let mut red = row(100 * S, SessionCreate, "10.0.0.1", 40000, 5000, 0);
        red.vrf = Some("red".into());
        let mut blue = row(101 * S, SessionCreate, "10.0.0.1", 40000, 5000, 1);
        blue.vrf = Some("blue".into());
        let a = attribute(intervals(vec![red.clone(), blue], 0), 150 * S, 2 * S);
        assert_eq!(a.matches.len(), 2);
        assert!(a.ambiguous);
        // One VRF, two records of the same host: one answer.
        let mut again = red.clone();
        again.time = 102 * S;
        again.raw_record = 1;
        assert!(!attribute(intervals(vec![red, again], 0), 150 * S, 2 * S).ambiguous);
    }

    #[test]
    fn pairs_create_and_delete_and_attributes_inside_the_interval() {
        use NatEventKind::*;
        let rows = vec![
            row(100 * S, SessionCreate, "100.64.0.1", 40000, 5000, 0),
            row(200 * S, SessionDelete, "100.64.0.1", 40000, 5000, 1),
            row(300 * S, SessionCreate, "100.64.0.2", 41000, 5000, 2),
        ];
        let ivs = intervals(rows, 0);
        assert_eq!(ivs.len(), 2);
        let a = attribute(ivs.clone(), 150 * S, 2 * S);
        assert_eq!(a.matches.len(), 1);
        assert!(!a.ambiguous);
        assert_eq!(a.matches[0].src_ip, Some("100.64.0.1".parse().unwrap()));
        assert_eq!(a.matches[0].end, Some(200 * S));
        assert_eq!(a.matches[0].evidence.len(), 2);
        // Between the two sessions nobody held it.
        assert!(attribute(ivs.clone(), 250 * S, 2 * S).matches.is_empty());
        // Still open: the second subscriber.
        let b = attribute(ivs.clone(), 10_000 * S, 2 * S);
        assert_eq!(b.matches.len(), 1);
        assert_eq!(b.matches[0].end, None);
        // Port reuse within the window is ambiguous, never guessed.
        let rows = vec![
            row(100 * S, SessionCreate, "100.64.0.1", 40000, 5000, 0),
            row(200 * S, SessionDelete, "100.64.0.1", 40000, 5000, 1),
            row(201 * S, SessionCreate, "100.64.0.2", 41000, 5000, 2),
        ];
        let c = attribute(intervals(rows, 0), 200 * S, 2 * S);
        assert!(c.ambiguous);
        assert_eq!(c.matches.len(), 2);
        assert_eq!(
            c.matches[0].src_ip,
            Some("100.64.0.1".parse().unwrap()),
            "closest first"
        );
    }

    #[test]
    fn a_delete_without_its_create_starts_at_the_range_start() {
        let rows = vec![row(
            500 * S,
            NatEventKind::SessionDelete,
            "100.64.0.9",
            1,
            5000,
            4,
        )];
        let ivs = intervals(rows, 100 * S);
        assert_eq!(ivs.len(), 1);
        assert_eq!(ivs[0].start, 100 * S);
        assert!(!ivs[0].start_known);
    }

    /// A block released and allocated again to the same host in the same second: the release
    /// ends the old holding, the allocation opens the next (opens sort before closes at one
    /// instant, so the allocation must not be taken as more evidence for the old one).
    #[test]
    fn a_release_and_a_new_allocation_in_one_second_leave_the_block_held() {
        use NatEventKind::*;
        let alloc = block_alloc();
        let mut release = alloc.clone();
        release.event = PortBlockRelease;
        release.time = 200 * S;
        release.raw_record = 1;
        let mut again = alloc.clone();
        again.time = 200 * S;
        again.raw_record = 2;
        let ivs = intervals(vec![alloc, release.clone(), again.clone()], 0);
        assert_eq!(ivs.len(), 2, "{ivs:?}");
        let old = ivs.iter().find(|iv| iv.start == 100 * S).expect("old");
        assert_eq!(old.end, Some(200 * S));
        assert_eq!(
            old.evidence.iter().map(|e| e.record).collect::<Vec<_>>(),
            [0, 1]
        );
        let new = ivs.iter().find(|iv| iv.start == 200 * S).expect("new");
        assert_eq!((new.end, new.start_known), (None, true));
        let att = attribute(ivs, 300 * S, 2 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        assert_eq!(att.matches[0].end, None, "still held at 300 s");
        // Logged the other way round (the allocation first): one holding, ended by the release.
        let mut first = again.clone();
        first.raw_record = 1;
        let mut then = release.clone();
        then.raw_record = 2;
        let ivs = intervals(vec![block_alloc(), first, then], 0);
        assert_eq!(ivs.len(), 1, "{ivs:?}");
        assert_eq!(ivs[0].end, Some(200 * S));
    }

    /// Attribution as the lookup makes it: the intervals of what was read, then the doubts
    /// other hosts' mappings raise.
    fn answer(rows: Vec<NatRow>, at: Micros) -> Attribution {
        let ivs = intervals(rows, 0);
        let mut att = attribute(ivs.clone(), at, 2 * S);
        doubt_superseded(&mut att, &ivs, at, 2 * S);
        att
    }

    /// cgn1's clock runs 60 s ahead: A (10:00:00–10:00:30 by its clock) really held the port
    /// from 09:59:00; B took it at 10:00:40 by the clock. A question at 09:59:45 true time is
    /// 10:00:45 at the device: B held it then, not A — the answer at the question's time alone
    /// (no one) would hide B. Another device's candidates are left alone, and a clock ahead by
    /// no more than the window changes nothing.
    #[test]
    fn a_device_clock_ahead_of_the_relays_is_checked_at_the_devices_time() {
        use NatEventKind::*;
        let t = 36_000 * S;
        let a_open = row(t, SessionCreate, "100.64.0.1", 40000, 5000, 0);
        let a_close = row(t + 30 * S, SessionDelete, "100.64.0.1", 40000, 5000, 1);
        let b_open = row(t + 40 * S, SessionCreate, "100.64.0.2", 40001, 5000, 2);
        let mut other = row(t - 100 * S, SessionCreate, "100.64.9.9", 40009, 5000, 3);
        other.device = Some("cgn2".into());
        let ivs = intervals(vec![a_open, a_close, b_open, other], 0);
        let at = t - 15 * S;

        let mut att = attribute(ivs.clone(), at, 2 * S);
        assert_eq!(
            att.matches.len(),
            1,
            "only cgn2's mapping at the relay's time"
        );
        doubt_clock_ahead(&mut att, &ivs, at, 2 * S, Some("cgn1"), 60 * S);
        let named: Vec<_> = att
            .matches
            .iter()
            .map(|c| c.src_ip.unwrap().to_string())
            .collect();
        assert_eq!(named, ["100.64.9.9", "100.64.0.2"], "{att:?}");
        assert!(att.ambiguous);
        assert!(att.matches[0].doubts.is_empty(), "{att:?}");
        assert!(
            att.matches[1].doubts[0].contains("at least 60.000 s ahead"),
            "{att:?}"
        );

        let mut att = attribute(ivs.clone(), t + 10 * S, 2 * S);
        let before = att.clone();
        doubt_clock_ahead(&mut att, &ivs, t + 10 * S, 2 * S, Some("cgn1"), 2 * S);
        assert_eq!(att, before, "within the window: no change");
        let mut att = attribute(ivs.clone(), t + 10 * S, 2 * S);
        doubt_clock_ahead(&mut att, &ivs, t + 10 * S, 2 * S, Some("cgn1"), 60 * S);
        // At the relay's 10:00:10 A is named, at the device's 10:01:10 B: both, in doubt (cgn2's
        // mapping, open at both, is not).
        let named: Vec<_> = att
            .matches
            .iter()
            .map(|c| (c.src_ip.unwrap().to_string(), c.doubts.len()))
            .collect();
        let named: Vec<_> = named.iter().map(|(ip, d)| (ip.as_str(), *d)).collect();
        assert_eq!(
            named,
            [("100.64.0.1", 1), ("100.64.9.9", 0), ("100.64.0.2", 1)],
            "{att:?}"
        );
        assert!(att.ambiguous);
    }

    /// A's delete was lost; B held the port after A's create. At 11:00 A is the only mapping
    /// open — naming A would name whoever held the port last before the loss.
    #[test]
    fn an_open_mapping_another_host_held_the_port_after_is_in_doubt() {
        use NatEventKind::*;
        let h = 3600 * S;
        let a = row(9 * h, SessionCreate, "100.64.0.1", 40000, 5000, 0);
        let b_open = row(
            9 * h + 1800 * S,
            SessionCreate,
            "100.64.0.2",
            40001,
            5000,
            1,
        );
        let b_close = row(
            9 * h + 2400 * S,
            SessionDelete,
            "100.64.0.2",
            40001,
            5000,
            2,
        );
        let rows = vec![a.clone(), b_open.clone(), b_close.clone()];

        let at_11 = answer(rows.clone(), 11 * h);
        assert_eq!(at_11.matches.len(), 1);
        assert_eq!(at_11.matches[0].src_ip, a.src_ip);
        assert!(at_11.ambiguous, "{at_11:?}");
        assert!(
            at_11.matches[0].doubts[0].contains("100.64.0.2"),
            "{at_11:?}"
        );
        // Before B came, A's holding stands on its own events.
        let at_915 = answer(rows.clone(), 9 * h + 900 * S);
        assert!(
            !at_915.ambiguous && at_915.matches[0].doubts.is_empty(),
            "{at_915:?}"
        );
        // The same subscriber behind another address is not another holder.
        let named_rows = vec![
            named(a.clone(), "sub-1"),
            named(b_open.clone(), "sub-1"),
            named(b_close.clone(), "sub-1"),
        ];
        assert!(!answer(named_rows, 11 * h).ambiguous);
        // Another protocol's mapping on the same port number is not this port changing hands.
        let udp = |mut r: NatRow| {
            r.protocol = Some(17);
            r
        };
        let rows_udp = vec![a.clone(), udp(b_open), udp(b_close)];
        assert!(!answer(rows_udp, 11 * h).ambiguous);
    }

    /// A port block's interim record after another host's use of one of its ports shows the
    /// block still held: no doubt. Without it, the block is in doubt.
    #[test]
    fn an_interim_record_after_the_other_host_clears_the_doubt() {
        use NatEventKind::*;
        let mut alloc = block_alloc();
        alloc.time = 0;
        let other =
            |t: Micros, ev: NatEventKind, rec: u64| row(t, ev, "100.64.0.2", 40001, 4100, rec);
        let mut rows = vec![
            alloc.clone(),
            other(1800 * S, SessionCreate, 1),
            other(2400 * S, SessionDelete, 2),
        ];
        let at = 5400 * S;
        let doubted = answer(rows.clone(), at);
        let block = doubted
            .matches
            .iter()
            .find(|c| c.x_port_end == Some(4159))
            .expect("the block");
        assert!(!block.doubts.is_empty() && doubted.ambiguous, "{doubted:?}");
        let mut interim = alloc.clone();
        interim.event = PortBlockInterim;
        interim.time = 3600 * S;
        interim.raw_record = 3;
        rows.push(interim);
        let clear = answer(rows, at);
        assert_eq!(clear.matches.len(), 1, "{clear:?}");
        assert_eq!(clear.matches[0].last_seen, 3600 * S);
        assert!(
            !clear.ambiguous && clear.matches[0].doubts.is_empty(),
            "{clear:?}"
        );
    }

    /// Only a delete was read, after the question's time: the mapping may have begun after it.
    #[test]
    fn a_mapping_seen_only_after_the_questions_time_is_in_doubt() {
        let close = row(
            600 * S,
            NatEventKind::SessionDelete,
            "100.64.0.9",
            1,
            5000,
            4,
        );
        let before = answer(vec![close.clone()], 300 * S);
        assert_eq!(before.matches.len(), 1);
        assert!(!before.matches[0].start_known);
        assert!(
            before.ambiguous && before.matches[0].doubts[0].contains("opening"),
            "{before:?}"
        );
        // At its delete (within the window) its own event shows it held.
        let at = answer(vec![close], 599 * S);
        assert!(!at.ambiguous && at.matches[0].doubts.is_empty(), "{at:?}");
    }

    #[test]
    fn port_blocks_cover_their_range_and_observed_flows_count() {
        let alloc = block_alloc();
        let mut rel = alloc.clone();
        rel.event = NatEventKind::PortBlockRelease;
        rel.time = 900 * S;
        rel.raw_record = 1;
        let mut obs = row(
            1000 * S,
            NatEventKind::MappingObserved,
            "100.64.2.2",
            3333,
            7000,
            2,
        );
        obs.end_time = Some(1010 * S);
        let ivs = intervals(vec![alloc, rel, obs], 0);
        assert_eq!(ivs.len(), 2);
        let pb = ivs.iter().find(|i| i.x_port_end == Some(4159)).unwrap();
        assert_eq!((pb.start, pb.end), (100 * S, Some(900 * S)));
        let o = ivs.iter().find(|i| i.x_port == Some(7000)).unwrap();
        assert_eq!((o.start, o.end), (1000 * S, Some(1010 * S)));
    }

    /// A PAN-OS-like device logged A's session start at 10:00 and nothing since: at 10:20 A is
    /// named, in doubt. Its end record (the whole session, 10:00–10:05) settles it: no one at
    /// 10:20. Past the reach of its protocol, or with another record of A's mapping after the last
    /// sighting by the question's time: not added. Another host on the port since: still named,
    /// in doubt, with that host named in the doubt.
    #[test]
    fn a_mapping_seen_once_is_named_in_doubt_until_its_end_is_read() {
        use NatEventKind::*;
        let t = 36_000 * S;
        let seen = |t| row(t, MappingObserved, "100.64.0.1", 40000, 5000, 0);
        let ask = |rows: Vec<NatRow>, at: Micros| {
            let all = intervals(rows, 0);
            let mut att = attribute(all.clone(), at, 2 * S);
            doubt_seen_once(&mut att, &all, &all, at, 2 * S);
            att
        };
        let att = ask(vec![seen(t)], t + 1200 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        let c = &att.matches[0];
        assert_eq!(
            (c.src_ip, c.start, c.end),
            (Some("100.64.0.1".parse().unwrap()), t, None)
        );
        assert_eq!(c.distance, 1200 * S);
        assert!(c.doubts[0].contains("seen last at"), "{att:?}");
        assert!(att.ambiguous);

        // The end log: the whole session, 10:00–10:05.
        let mut end = row(t, MappingObserved, "100.64.0.1", 40000, 5000, 1);
        end.end_time = Some(t + 300 * S);
        let att = ask(vec![seen(t), end.clone()], t + 1200 * S);
        assert!(att.matches.is_empty(), "{att:?}");
        assert!(!att.ambiguous);
        // Within the session the end record names A with no doubt.
        let att = ask(vec![seen(t), end], t + 200 * S);
        assert_eq!(att.matches.len(), 1);
        assert!(!att.ambiguous, "{att:?}");
        // A record whose end is its start reads as a sighting (objects written before null
        // end times stored sightings so).
        let mut zero = seen(t);
        zero.end_time = Some(t);
        assert_eq!(ask(vec![zero], t + 1200 * S).matches.len(), 1);

        // B on the port after A's start: B's, and A in doubt (a lost end log, or a port shared
        // towards another destination), the doubt naming B.
        let b = row(t + 600 * S, SessionCreate, "100.64.0.2", 40001, 5000, 2);
        let att = ask(vec![seen(t), b], t + 1200 * S);
        let named: Vec<_> = att
            .matches
            .iter()
            .map(|c| (c.src_ip.unwrap().to_string(), c.doubts.len()))
            .collect();
        assert_eq!(
            named,
            [("100.64.0.2".to_owned(), 0), ("100.64.0.1".to_owned(), 2)],
            "{att:?}"
        );
        assert!(att.matches[1].doubts[1].contains("100.64.0.2 held this public port"));
        assert!(att.ambiguous);

        // Past the reach of an idle TCP session; a UDP one's is shorter.
        let reach = seen_once_reach(Some(6));
        assert_eq!(ask(vec![seen(t)], t + reach).matches.len(), 1);
        assert!(ask(vec![seen(t)], t + reach + S).matches.is_empty());
        let udp = |t| {
            let mut r = seen(t);
            r.protocol = Some(17);
            r
        };
        assert_eq!(ask(vec![udp(t)], t + 300 * S).matches.len(), 1);
        assert!(ask(vec![udp(t)], t + 1200 * S).matches.is_empty());

        // Listings every 15 minutes: held in between (one span, no doubt), and named in doubt
        // after the last one; a copy of a sighting from a second collector changes nothing.
        let mut copy = seen(t);
        copy.raw_key = "raw/other".into();
        let rows = vec![seen(t), copy, seen(t + 900 * S)];
        let att = ask(rows.clone(), t + 420 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        assert_eq!((att.matches[0].start, att.ambiguous), (t, false), "{att:?}");
        let att = ask(rows, t + 1200 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        assert!(att.matches[0].doubts[0].contains("seen last at"), "{att:?}");
        // UDP sightings further apart than UDP's reach are two holdings: between them, the
        // first is named in doubt (the later one, after the question, does not settle it),
        // past the reach too (seen on both sides).
        for at in [t + 200 * S, t + 600 * S] {
            let att = ask(vec![udp(t), udp(t + 900 * S)], at);
            assert_eq!(att.matches.len(), 1, "{att:?}");
            assert_eq!(att.matches[0].start, t);
            assert!(att.ambiguous);
        }
        // A close of the mapping between two sightings ends the first holding: between them,
        // after the close, no one (conntrack listing, DESTROY, NEW of the same 5-tuple,
        // listing).
        let del = row(t + 60 * S, SessionDelete, "100.64.0.1", 40000, 5000, 7);
        let new = row(t + 2400 * S, SessionCreate, "100.64.0.1", 40000, 5000, 8);
        let att = ask(vec![seen(t), del, new, seen(t + 2700 * S)], t + 1200 * S);
        assert!(att.matches.is_empty(), "{att:?}");
        // The same inside address:port sighted towards two destinations: one candidate.
        let mut d2 = seen(t + 10 * S);
        d2.dst_ip = Some("192.0.2.2".parse().unwrap());
        let att = ask(vec![seen(t), d2], t + 1200 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        assert_eq!(att.matches[0].destinations.len(), 2, "{att:?}");

        // An ASA translation (no destination) created before and deleted after a connection
        // built under it: the delete bounds the connection, no doubt at 10:20.
        let mut xlate = row(t - 60 * S, SessionCreate, "100.64.0.1", 40000, 5000, 4);
        xlate.dst_ip = None;
        xlate.dst_port = None;
        let mut xdel = xlate.clone();
        xdel.event = SessionDelete;
        xdel.time = t + 30 * S;
        xdel.raw_record = 5;
        let att = ask(vec![xlate, seen(t), xdel], t + 1200 * S);
        assert!(att.matches.is_empty(), "{att:?}");
        // The same subscriber's session towards another destination, later or covering, says
        // nothing of this one's end.
        let mut other = row(t + 300 * S, MappingObserved, "100.64.0.1", 40000, 5000, 6);
        other.dst_ip = Some("192.0.2.1".parse().unwrap());
        other.end_time = Some(t + 310 * S);
        let att = ask(vec![seen(t), other.clone()], t + 1200 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        assert!(att.ambiguous);
        other.time = t - 10 * S;
        let att = ask(vec![seen(t), other], t + 1200 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        assert!(att.ambiguous);

        // An open create covering the sighting: named by its own interval, not twice.
        let open = row(t - 60 * S, SessionCreate, "100.64.0.1", 40000, 5000, 3);
        let att = ask(vec![open, seen(t)], t + 1200 * S);
        assert_eq!(att.matches.len(), 1, "{att:?}");
        assert!(!att.ambiguous, "{att:?}");
    }
}
