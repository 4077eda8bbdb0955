//! Correlation: NAT events into mapping intervals, and the attribution rule.
//!
//! Pure functions over rows the query layer fetched. The rule errs towards "ambiguous" and "no
//! match" rather than a guess: a wrong answer names an innocent person.

use std::collections::BTreeMap;
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
    /// enrichment aside (a record normalized again may have been enriched from newer data).
    /// One raw record can hold several events (an IPFIX datagram), so the provenance alone
    /// does not make a copy.
    pub fn same_event(&self, other: &NatRow) -> bool {
        let plain = |r: &NatRow| NatRow {
            subscriber: None,
            ..r.clone()
        };
        self.raw_key == other.raw_key
            && self.raw_record == other.raw_record
            && plain(self) == plain(other)
    }
}

/// `rows` (each with something that travels along) without copies of an event (see
/// [`NatRow::same_event`]), the first of each kept; ordered by provenance.
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
        let copy =
            !row.raw_key.is_empty() && kept[record_start..].iter().any(|(k, _)| k.same_event(&row));
        if !copy {
            kept.push((row, e));
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
    pub evidence: Vec<Evidence>,
}

type MappingKey = (
    Option<String>,
    Option<String>,
    Option<u8>,
    IpAddr,
    Option<u16>,
    Option<u16>,
    Option<IpAddr>,
    Option<u16>,
    Option<IpAddr>,
    Option<u16>,
);

fn mapping_key(r: &NatRow) -> MappingKey {
    // Port-block and address events have no destination; sessions pair per destination because
    // one public port can carry several conntrack entries at once (endpoint-independent mapping).
    let (dst_ip, dst_port) = match r.event {
        NatEventKind::SessionCreate
        | NatEventKind::SessionDelete
        | NatEventKind::MappingObserved => (r.dst_ip, r.dst_port),
        _ => (None, None),
    };
    (
        r.device.clone(),
        r.vrf.clone(),
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
        evidence: vec![Evidence {
            key: r.raw_key.clone(),
            record: r.raw_record,
        }],
    }
}

/// Pairs events into intervals. `range_start` is where the fetched rows begin: an interval whose
/// opening event was not fetched starts there, marked `start_known = false`.
pub fn intervals(mut rows: Vec<NatRow>, range_start: Micros) -> Vec<Interval> {
    rows.sort_by(|a, b| {
        a.time
            .cmp(&b.time)
            .then(a.event.cmp(&b.event))
            .then(a.raw_record.cmp(&b.raw_record))
    });
    let mut open: BTreeMap<MappingKey, Interval> = BTreeMap::new();
    let mut done = Vec::new();
    for r in rows {
        let key = mapping_key(&r);
        let ev = Evidence {
            key: r.raw_key.clone(),
            record: r.raw_record,
        };
        match r.event {
            k if k.opens() => match open.get_mut(&key) {
                // A repeated create for a mapping already open (e.g. two collectors) is more
                // evidence for the same interval, not a new one.
                Some(iv) => iv.evidence.push(ev),
                None => {
                    open.insert(key, new_interval(&r, r.time, true));
                }
            },
            k if k.closes() => {
                let mut iv = open
                    .remove(&key)
                    .unwrap_or_else(|| new_interval(&r, range_start.min(r.time), false));
                if iv.evidence.last() != Some(&ev) {
                    iv.evidence.push(ev);
                }
                iv.end = Some(r.time);
                done.push(iv);
            }
            NatEventKind::MappingObserved => {
                let mut iv = new_interval(&r, r.time, true);
                iv.end = Some(r.end_time.unwrap_or(r.time).max(r.time));
                done.push(iv);
            }
            _ => match open.get_mut(&key) {
                // Interim: still held.
                Some(iv) => iv.evidence.push(ev),
                None => {
                    open.insert(key, new_interval(&r, range_start.min(r.time), false));
                }
            },
        }
    }
    done.extend(open.into_values());
    done
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
    pub destinations: Vec<(Option<IpAddr>, Option<u16>)>,
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
            subscriber: iv.subscriber.clone(),
            destinations: Vec::new(),
            evidence: Vec::new(),
            rule: None,
        });
        if iv.start < c.start {
            c.start = iv.start;
            c.start_known = iv.start_known;
        }
        c.end = match (c.end, iv.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        c.distance = c.distance.min(d);
        if c.subscriber.is_none() {
            c.subscriber = iv.subscriber.clone();
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
    }
    matches.sort_by(|a, b| a.distance.cmp(&b.distance).then(b.start.cmp(&a.start)));
    let mut who: Vec<String> = matches
        .iter()
        .map(|c| {
            c.subscriber
                .clone()
                .unwrap_or_else(|| c.src_ip.map(|i| i.to_string()).unwrap_or_default())
        })
        .collect();
    who.sort();
    who.dedup();
    Attribution {
        ambiguous: who.len() > 1,
        matches,
    }
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

    #[test]
    fn port_blocks_cover_their_range_and_observed_flows_count() {
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
}
