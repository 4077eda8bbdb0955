//! Identity over time: who held an inside address when. A dynamic address resolves to the
//! subscriber who had it at the event's time, not to whoever has it now.
//!
//! What is held is an address or, in IPv6 access networks, a prefix: a subscriber's hosts use
//! any address inside their delegated prefix (SLAAC, privacy addresses), so an address resolves
//! through the intervals of the address itself and of every prefix containing it.
//!
//! Sources (each becomes intervals `[start, end]` per address or prefix):
//! - RADIUS accounting (`radius_json`: a JSON list or JSON lines of records; `radius_csv`: a
//!   header of attribute names). Attributes: `Acct-Status-Type` (Start, Interim-Update / Alive,
//!   Stop, or 1 / 3 / 2); what the session holds: `Framed-IP-Address`, `Framed-IPv6-Address`,
//!   `Framed-IPv6-Prefix` (the WAN /64) and `Delegated-IPv6-Prefix` (DHCPv6-PD), every one a
//!   record carries; `User-Name` (the subscriber), `Event-Timestamp` (epoch seconds, RFC 3339
//!   or FreeRADIUS's `Nov 23 2026 10:00:00 UTC`), optional `Acct-Session-Id` and
//!   `Acct-Session-Time`. Values may be plain or FreeRADIUS `rlm_json` objects (`{"type": …,
//!   "value": [v]}`). A record with an unreadable address or prefix is rejected whole.
//!   A Start opens; a Stop closes (a Stop without its Start covers `Acct-Session-Time` before
//!   it), and with an `Acct-Session-Id` it also closes what the session's earlier records opened
//!   and the Stop does not repeat; an Interim-Update opens a session whose Start was missed,
//!   and an address or prefix first seen in an Interim-Update of a known session (a delegation
//!   made after the Start) is held from that update on.
//! - Kea memfile lease CSV (`kea_csv`, v4 or v6 header): `[expire - valid_lifetime, expire]`
//!   per row; the subscriber is the column `id_field` names (default `hwaddr`, else `duid` /
//!   `client_id`); declined leases (state 1) are skipped; a row with `valid_lifetime` 0 is a
//!   release and ends the address's lease at `expire`. A v6 row of `lease_type` 2 (IA_PD) holds
//!   the prefix `address/prefix_len`.
//! - ISC dhcpd `dhcpd.leases` (`dhcpd_leases`): `lease ADDR { starts …; ends …; hardware
//!   ethernet …; }` blocks (times UTC; `ends never` is open); abandoned leases are skipped.
//! - Plain intervals (`csv`): header `ip,subscriber,start,end` (RFC 3339 or epoch; empty end
//!   = still held); `ip` is an address or a prefix (`2001:db8:1200::/56`).
//!
//! An address or prefix has one holder at a time: a lease that overlaps the next holder's is
//! cut at the next one's start (a missed Stop, an early release). Where two holders still both
//! fit a time (the instant of the handover) the answer is [`Holder::Ambiguous`], never a guess.
//! Across an address and the prefixes containing it the answers are combined, not ranked: the
//! same subscriber through several (a Framed-IPv6-Address inside its own Framed-IPv6-Prefix)
//! is that subscriber; different subscribers at once (a /56 delegated to one while a /128
//! inside it is framed to another) is `Ambiguous`. Such an overlap means the pools or the
//! accounting disagree, and the most specific is not reliably the right one: a lost Stop keeps
//! a stale /128 open as easily as a stale /56.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::NaiveDateTime;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use super::{EnrichError, LoadStats, Loaded, csv_reader, field, header_index, json_text};
use crate::model::Micros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityFormat {
    RadiusJson,
    RadiusCsv,
    KeaCsv,
    DhcpdLeases,
    Csv,
}

/// An address or prefix held by one subscriber from `start` to `end` (inclusive; None: still held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub start: Micros,
    pub end: Option<Micros>,
    pub subscriber: String,
}

impl Interval {
    fn contains(&self, t: Micros) -> bool {
        self.start <= t && self.end.is_none_or(|e| t <= e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    /// The source does not speak of the address at that time.
    Nobody,
    /// The source shows the address held by no one then: the time falls between two of its
    /// holdings (after one ended, before the next began), so the source covers it.
    Free,
    One(&'a str),
    /// More than one subscriber fits the time.
    Ambiguous,
}

impl<'a> Holder<'a> {
    /// Two answers for the same address and time together: `Ambiguous` when either is, or
    /// when they name different subscribers; a holder named by one outweighs the other's
    /// "free" (a static assignment in one source, a lapsed lease in another).
    pub fn and(self, other: Holder<'a>) -> Holder<'a> {
        match (self, other) {
            (Holder::Nobody, h) | (h, Holder::Nobody) => h,
            (Holder::Free, h) | (h, Holder::Free) => h,
            (Holder::One(a), Holder::One(b)) if a == b => Holder::One(a),
            _ => Holder::Ambiguous,
        }
    }
}

/// The events an identity source speaks for. Where inside addresses are reused across BNGs
/// or VRFs (100.64.0.0/10 per region), each source's addresses mean something only there: an
/// unscoped source would stamp one region's subscriber on another's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only events of this VRF / routing instance.
    pub vrf: Option<String>,
    /// Only events logged by this device.
    pub device: Option<String>,
}

impl Scope {
    pub fn covers(&self, vrf: Option<&str>, device: Option<&str>) -> bool {
        self.vrf.as_deref().is_none_or(|v| Some(v) == vrf)
            && self.device.as_deref().is_none_or(|d| Some(d) == device)
    }
}

#[derive(Debug, Default)]
pub struct IdentityTable {
    /// Per address, sorted by start.
    by_ip: HashMap<IpAddr, Vec<Interval>>,
    /// Per prefix (host bits zero, shorter than an address), sorted by start.
    by_net: HashMap<IpNet, Vec<Interval>>,
    /// The prefix lengths `by_net` holds per family, longest first: a lookup masks the
    /// address to each (a handful: /56, /60, /64) instead of walking a trie. Empty for a
    /// source of addresses only, which so looks up as before.
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
    /// The events this source speaks for (every event by default).
    pub scope: Scope,
}

impl IdentityTable {
    /// Who held `ip` at `t`, by the address's intervals and those of every prefix containing
    /// it, combined ([`Holder::and`]).
    pub fn lookup(&self, ip: IpAddr, t: Micros) -> Holder<'_> {
        let mut found = self
            .by_ip
            .get(&ip)
            .map_or(Holder::Nobody, |v| holder_in(v, t));
        let lens = match ip {
            IpAddr::V4(_) => &self.v4_lens,
            IpAddr::V6(_) => &self.v6_lens,
        };
        for &len in lens {
            if found == Holder::Ambiguous {
                break;
            }
            let Ok(net) = IpNet::new(ip, len) else {
                continue;
            };
            if let Some(v) = self.by_net.get(&net.trunc()) {
                found = found.and(holder_in(v, t));
            }
        }
        found
    }

    /// Every interval of the address `ip` itself, in order.
    pub fn intervals(&self, ip: IpAddr) -> &[Interval] {
        self.by_ip.get(&ip).map_or(&[], Vec::as_slice)
    }

    /// Every interval of a prefix, in order (an address-length `net` is the address).
    pub fn prefix_intervals(&self, net: IpNet) -> &[Interval] {
        let net = net.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            return self.intervals(net.addr());
        }
        self.by_net.get(&net).map_or(&[], Vec::as_slice)
    }

    /// How many addresses and prefixes have intervals.
    pub fn addresses(&self) -> usize {
        self.by_ip.len() + self.by_net.len()
    }

    /// Sorts and cuts overlaps between different holders; joins overlapping or touching
    /// intervals of the same holder (lease renewals). Per address or prefix: a prefix and an
    /// address inside it are different keys, combined only at lookup.
    fn from_intervals(raw: HashMap<IpNet, Vec<Interval>>) -> Self {
        let mut table = Self::default();
        for (net, v) in raw {
            let v = cut(v);
            if net.prefix_len() == net.max_prefix_len() {
                table.by_ip.insert(net.addr(), v);
                continue;
            }
            let lens = match net {
                IpNet::V4(_) => &mut table.v4_lens,
                IpNet::V6(_) => &mut table.v6_lens,
            };
            if !lens.contains(&net.prefix_len()) {
                lens.push(net.prefix_len());
            }
            table.by_net.insert(net, v);
        }
        table.v4_lens.sort_unstable_by(|a, b| b.cmp(a));
        table.v6_lens.sort_unstable_by(|a, b| b.cmp(a));
        table
    }
}

/// The holder at `t` among one key's intervals (sorted, cut by [`cut`]).
fn holder_in(v: &[Interval], t: Micros) -> Holder<'_> {
    // Intervals are sorted by start and cut so that they do not overlap except at a
    // handover instant: only the last two starting at or before t can hold it.
    let upto = v.partition_point(|iv| iv.start <= t);
    let mut found: Option<&str> = None;
    for iv in v[..upto].iter().rev().take(2) {
        if iv.contains(t) {
            match found {
                Some(f) if f != iv.subscriber => return Holder::Ambiguous,
                _ => found = Some(&iv.subscriber),
            }
        }
    }
    match found {
        Some(s) => Holder::One(s),
        // Between a holding that ended before t and one that begins after it.
        None if upto > 0 && upto < v.len() && v[upto - 1].end.is_some_and(|e| e < t) => {
            Holder::Free
        }
        None => Holder::Nobody,
    }
}

/// One key's intervals sorted, overlaps between different holders cut at the later start,
/// overlapping or touching intervals of the same holder joined.
fn cut(mut v: Vec<Interval>) -> Vec<Interval> {
    v.sort_by(|a, b| a.start.cmp(&b.start).then(a.end.cmp(&b.end)));
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for iv in v {
        if let Some(last) = out.last_mut() {
            let overlaps = last.end.is_none_or(|e| e >= iv.start);
            if overlaps && last.subscriber == iv.subscriber {
                last.end = match (last.end, iv.end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                continue;
            }
            if overlaps {
                last.end = Some(iv.start);
            }
        }
        out.push(iv);
    }
    out
}

/// An address, or a prefix `addr/len` (host bits dropped: `2001:db8:1200::1/56` as typed
/// means its network). An address is its own full-length prefix.
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if s.contains('/') {
        s.parse::<IpNet>()
            .ok()
            .map(|n| n.trunc())
            .filter(|n| one_holder(*n))
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// Whether one subscriber can hold `net`: not shorter than an IPv4 /16 or an IPv6 /32. A pool
/// or an ISP's allocation typed in by mistake would otherwise give every address in it a second
/// holder (every answer ambiguous) or a holder where there is none.
fn one_holder(net: IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() >= 16,
        IpNet::V6(n) => n.prefix_len() >= 32,
    }
}

/// Options of an identity source.
#[derive(Debug, Clone, Default)]
pub struct IdentityOptions {
    /// Kea: the column that names the subscriber (default `hwaddr`, then `duid`, `client_id`).
    pub id_field: Option<String>,
}

pub fn load(
    bytes: &[u8],
    format: IdentityFormat,
    opts: &IdentityOptions,
) -> Result<Loaded<IdentityTable>, EnrichError> {
    let mut stats = LoadStats::default();
    let mut raw: HashMap<IpNet, Vec<Interval>> = HashMap::new();
    match format {
        IdentityFormat::RadiusJson => radius(radius_json(bytes)?, &mut stats, &mut raw),
        IdentityFormat::RadiusCsv => radius(radius_csv(bytes)?, &mut stats, &mut raw),
        IdentityFormat::KeaCsv => kea(bytes, opts, &mut stats, &mut raw)?,
        IdentityFormat::DhcpdLeases => dhcpd(bytes, &mut stats, &mut raw)?,
        IdentityFormat::Csv => plain_csv(bytes, &mut stats, &mut raw)?,
    }
    Ok(Loaded {
        data: IdentityTable::from_intervals(raw),
        stats,
    })
}

/// Epoch seconds (fractions allowed), RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or FreeRADIUS's
/// `%b %e %Y %H:%M:%S UTC`.
fn parse_when(s: &str) -> Option<Micros> {
    let s = s.trim();
    if let Ok(t) = crate::time::parse_time(s) {
        return Some(t);
    }
    let utc = s
        .strip_suffix(" UTC")
        .or_else(|| s.strip_suffix(" GMT"))
        .unwrap_or(s);
    let squeezed = utc.split_whitespace().collect::<Vec<_>>().join(" ");
    [
        "%b %d %Y %H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y/%m/%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(&squeezed, f).ok())
    .map(|dt| dt.and_utc().timestamp_micros())
    .filter(|t| (crate::time::MIN_TIME..=crate::time::MAX_TIME).contains(t))
}

// ---- RADIUS accounting ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Start,
    Interim,
    Stop,
}

/// One accounting record's attributes by lower-cased name, or why it is unusable.
type Attrs = HashMap<String, String>;

fn radius_json(bytes: &[u8]) -> Result<Vec<Result<Attrs, String>>, EnrichError> {
    let mut out = Vec::new();
    for doc in serde_json::Deserializer::from_slice(bytes).into_iter::<Value>() {
        let doc = doc.map_err(|e| EnrichError::Format(format!("RADIUS JSON: {e}")))?;
        let records = match doc {
            Value::Array(v) => v,
            other => vec![other],
        };
        for r in records {
            out.push(match r {
                Value::Object(m) => Ok(m
                    .iter()
                    .filter_map(|(k, v)| attr_value(v).map(|v| (k.to_ascii_lowercase(), v)))
                    .collect()),
                _ => Err("not a JSON object".to_string()),
            });
        }
    }
    Ok(out)
}

/// A plain value, `[v]`, or FreeRADIUS rlm_json's `{"type": "…", "value": [v]}`.
fn attr_value(v: &Value) -> Option<String> {
    match v {
        Value::Array(a) => a.first().and_then(attr_value),
        Value::Object(o) => o.get("value").and_then(attr_value),
        other => json_text(Some(other)),
    }
}

fn radius_csv(bytes: &[u8]) -> Result<Vec<Result<Attrs, String>>, EnrichError> {
    let mut rdr = csv_reader(bytes);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| EnrichError::Format(format!("RADIUS CSV header: {e}")))?
        .iter()
        .map(str::to_ascii_lowercase)
        .collect();
    if !headers.iter().any(|h| h == "acct-status-type") {
        return Err(EnrichError::Format(
            "RADIUS CSV: no Acct-Status-Type column in the header".into(),
        ));
    }
    Ok(rdr
        .records()
        .map(|r| {
            r.map_err(|e| e.to_string()).map(|rec| {
                headers
                    .iter()
                    .zip(rec.iter())
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.trim_matches('"').to_owned()))
                    .collect()
            })
        })
        .collect())
}

struct Acct {
    time: Micros,
    status: Status,
    /// What the record says the session holds: addresses and prefixes, without repeats.
    nets: Vec<IpNet>,
    user: String,
    session: Option<String>,
    session_time: Option<i64>,
}

/// The attributes naming what a session holds, and whether each is a prefix. A dual-stack
/// session carries several: each is held.
const HELD: [(&str, bool); 4] = [
    ("Framed-IP-Address", false),
    ("Framed-IPv6-Address", false),
    ("Framed-IPv6-Prefix", true),
    ("Delegated-IPv6-Prefix", true),
];

fn acct(a: &Attrs) -> Result<Option<Acct>, String> {
    let get = |k: &str| a.get(k).map(String::as_str);
    let status = match get("acct-status-type")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("start" | "1") => Status::Start,
        Some("stop" | "2") => Status::Stop,
        Some("interim-update" | "alive" | "3") => Status::Interim,
        // Accounting-On / -Off and the rest name no session.
        Some(_) => return Ok(None),
        None => return Err("no Acct-Status-Type".into()),
    };
    let mut nets = Vec::new();
    for (name, prefix) in HELD {
        let Some(text) = get(&name.to_ascii_lowercase()) else {
            continue;
        };
        let net = if prefix {
            // host bits dropped: the prefix is its network.
            parse_net(text).filter(|_| text.contains('/'))
        } else {
            text.trim().parse::<IpAddr>().ok().map(IpNet::from)
        };
        nets.push(net.ok_or_else(|| format!("bad {name} {text:?}"))?);
    }
    if nets.is_empty() {
        return Err(
            "no Framed-IP-Address, Framed-IPv6-Address, Framed-IPv6-Prefix or Delegated-IPv6-Prefix"
                .into(),
        );
    }
    nets.sort_unstable();
    nets.dedup();
    let user = get("user-name").ok_or("no User-Name")?.to_owned();
    let ts = get("event-timestamp")
        .or_else(|| get("timestamp"))
        .ok_or("no Event-Timestamp")?;
    let time = parse_when(ts).ok_or_else(|| format!("bad Event-Timestamp {ts:?}"))?;
    Ok(Some(Acct {
        time,
        status,
        nets,
        user,
        session: get("acct-session-id").map(str::to_owned),
        session_time: get("acct-session-time").and_then(|s| s.parse().ok()),
    }))
}

fn radius(
    records: Vec<Result<Attrs, String>>,
    stats: &mut LoadStats,
    raw: &mut HashMap<IpNet, Vec<Interval>>,
) {
    let mut accts: Vec<Acct> = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        stats.records += 1;
        match r.and_then(|a| acct(&a)) {
            Ok(Some(a)) => accts.push(a),
            Ok(None) => stats.skipped += 1,
            Err(e) => stats.bad(format!("record {i}: {e}")),
        }
    }
    accts.sort_by_key(|a| a.time);
    // The open session per address or prefix: (user, session id, start).
    let mut open: HashMap<IpNet, (String, Option<String>, Micros)> = HashMap::new();
    // What each Acct-Session-Id opened: its Stop closes all of it even when the Stop does not
    // repeat every attribute, and a known session's Interim-Update that names something new
    // (a prefix delegated after the Start) dates it from that update, not from the session's
    // start.
    let mut by_session: HashMap<String, Vec<IpNet>> = HashMap::new();
    for a in accts {
        stats.loaded += 1;
        let same = |o: &(String, Option<String>, Micros)| match (&o.1, &a.session) {
            (Some(x), Some(y)) => x == y,
            _ => o.0 == a.user,
        };
        let began = a.session_time.map_or(a.time, |s| {
            a.time.saturating_sub(s.saturating_mul(1_000_000))
        });
        match a.status {
            Status::Start | Status::Interim => {
                let known = a
                    .session
                    .as_ref()
                    .is_some_and(|s| by_session.contains_key(s));
                for &net in &a.nets {
                    if let Some(o) = open.get(&net) {
                        if same(o) {
                            continue;
                        }
                        // Another session holds it now: the previous one's Stop was lost.
                        if let Some((user, _, start)) = open.remove(&net) {
                            raw.entry(net).or_default().push(Interval {
                                start,
                                end: Some(a.time),
                                subscriber: user,
                            });
                        }
                    }
                    let start = if a.status == Status::Start || known {
                        a.time
                    } else {
                        began
                    };
                    open.insert(net, (a.user.clone(), a.session.clone(), start));
                    if let Some(s) = &a.session {
                        by_session.entry(s.clone()).or_default().push(net);
                    }
                }
            }
            Status::Stop => {
                let mut nets = a.nets.clone();
                if let Some(opened) = a.session.as_ref().and_then(|s| by_session.remove(s)) {
                    for n in opened {
                        if !nets.contains(&n) && open.get(&n).is_some_and(same) {
                            nets.push(n);
                        }
                    }
                }
                for net in nets {
                    let start = match open.get(&net) {
                        Some(o) if same(o) => open.remove(&net).map_or(began, |o| o.2),
                        _ => began,
                    };
                    raw.entry(net).or_default().push(Interval {
                        start,
                        end: Some(a.time),
                        subscriber: a.user.clone(),
                    });
                }
            }
        }
    }
    for (net, (user, _, start)) in open {
        raw.entry(net).or_default().push(Interval {
            start,
            end: None,
            subscriber: user,
        });
    }
}

// ---- DHCP ----

fn kea(
    bytes: &[u8],
    opts: &IdentityOptions,
    stats: &mut LoadStats,
    raw: &mut HashMap<IpNet, Vec<Interval>>,
) -> Result<(), EnrichError> {
    let mut rdr = csv_reader(bytes);
    let headers = rdr
        .headers()
        .map_err(|e| EnrichError::Format(format!("Kea lease CSV header: {e}")))?
        .clone();
    let id_names: Vec<&str> = match &opts.id_field {
        Some(f) => vec![f.as_str()],
        None => vec!["hwaddr", "duid", "client_id"],
    };
    let [address, valid, expire, state, lease_type, prefix_len] = header_index(
        &headers,
        [
            &["address"],
            &["valid_lifetime"],
            &["expire"],
            &["state"],
            &["lease_type"],
            &["prefix_len"],
        ],
    );
    let ids: Vec<usize> = id_names
        .iter()
        .filter_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n)))
        .collect();
    let (Some(address), Some(valid), Some(expire)) = (address, valid, expire) else {
        return Err(EnrichError::Format(
            "Kea lease CSV: the header needs address, valid_lifetime and expire".into(),
        ));
    };
    if ids.is_empty() {
        return Err(EnrichError::Format(format!(
            "Kea lease CSV: no subscriber column ({})",
            id_names.join(", ")
        )));
    }
    let mut releases: Vec<(IpNet, Micros)> = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        stats.records += 1;
        let line = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                stats.bad(format!("line {line}: {e}"));
                continue;
            }
        };
        let text = rec.get(address).unwrap_or("");
        let Ok(ip) = text.parse::<IpAddr>() else {
            stats.bad(format!("line {line}: bad address {text:?}"));
            continue;
        };
        // lease6 `lease_type` 2 is IA_PD: the row holds `address/prefix_len`. IA_NA / IA_TA
        // rows (0 / 1, prefix_len 128) and lease4 rows hold the address.
        let net = if field(&rec, lease_type) == Some("2") {
            let len = field(&rec, prefix_len).and_then(|s| s.parse::<u8>().ok());
            match len
                .and_then(|l| IpNet::new(ip, l).ok())
                .filter(|n| one_holder(*n))
            {
                Some(n) => n.trunc(),
                None => {
                    stats.bad(format!(
                        "line {line}: IA_PD lease {text} without a usable prefix_len"
                    ));
                    continue;
                }
            }
        } else {
            IpNet::from(ip)
        };
        let num = |i: usize| rec.get(i).and_then(|s| s.parse::<i64>().ok());
        let (Some(valid), Some(expire)) = (num(valid), num(expire)) else {
            stats.bad(format!("line {line}: bad valid_lifetime or expire"));
            continue;
        };
        let Some(end) = expire
            .checked_mul(1_000_000)
            .filter(|t| (crate::time::MIN_TIME..=crate::time::MAX_TIME).contains(t))
        else {
            stats.bad(format!("line {line}: expire {expire} out of range"));
            continue;
        };
        if field(&rec, state) == Some("1") {
            stats.skipped += 1; // declined: nobody holds it
            continue;
        }
        if valid == 0 {
            releases.push((net, end));
            stats.loaded += 1;
            continue;
        }
        // Kea writes hwaddr / duid with ':' separators; anything non-empty is an id.
        let Some(id) = ids.iter().find_map(|&i| field(&rec, Some(i))) else {
            stats.bad(format!(
                "line {line}: no subscriber id ({})",
                id_names.join(", ")
            ));
            continue;
        };
        raw.entry(net).or_default().push(Interval {
            start: end.saturating_sub(valid.saturating_mul(1_000_000)),
            end: Some(end),
            subscriber: id.to_owned(),
        });
        stats.loaded += 1;
    }
    for (net, at) in releases {
        for iv in raw.get_mut(&net).into_iter().flatten() {
            if iv.contains(at) {
                iv.end = Some(at);
            }
        }
    }
    Ok(())
}

fn dhcpd(
    bytes: &[u8],
    stats: &mut LoadStats,
    raw: &mut HashMap<IpNet, Vec<Interval>>,
) -> Result<(), EnrichError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| EnrichError::Format(format!("dhcpd.leases is not text: {e}")))?;
    let mut rest = text;
    let mut blocks = 0;
    while let Some(at) = rest.find("lease ") {
        // Only at the start of a line: "lease" also appears inside comments and statements.
        let line_start = at == 0 || rest[..at].ends_with('\n');
        let after = &rest[at + 6..];
        if !line_start {
            rest = after;
            continue;
        }
        let Some(open) = after.find('{') else { break };
        let Some(close) = after[open..].find('}') else {
            stats.records += 1;
            stats.bad("unterminated lease block at the end of the file");
            break;
        };
        rest = &after[open + close + 1..];
        blocks += 1;
        stats.records += 1;
        let addr = after[..open].trim();
        let body = &after[open + 1..open + close];
        match dhcpd_block(addr, body) {
            Ok(Some((ip, iv))) => {
                raw.entry(IpNet::from(ip)).or_default().push(iv);
                stats.loaded += 1;
            }
            Ok(None) => stats.skipped += 1,
            Err(e) => stats.bad(format!("lease {addr}: {e}")),
        }
    }
    // A fresh server's file holds only comments and statements: valid, and empty.
    let junk = text
        .lines()
        .map(str::trim)
        .any(|l| !(l.is_empty() || l.starts_with('#') || l.ends_with(';') || l.ends_with('}')));
    if blocks == 0 && junk {
        return Err(EnrichError::Format("dhcpd.leases: no lease blocks".into()));
    }
    Ok(())
}

fn dhcpd_block(addr: &str, body: &str) -> Result<Option<(IpAddr, Interval)>, String> {
    let ip: IpAddr = addr.parse().map_err(|_| "bad address".to_string())?;
    let (mut starts, mut ends, mut hw, mut state) = (None, None, None, None);
    // Comments run to the end of the line (`starts epoch N; # Mon Nov 23 …`).
    let body: String = body
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    for stmt in body.split(';').map(str::trim) {
        let mut w = stmt.split_whitespace();
        match (w.next(), w.next()) {
            // "starts 4 2026/11/23 10:00:00" (weekday, date, time, UTC) or "starts epoch N".
            (Some("starts"), Some(_)) => starts = Some(dhcpd_time(stmt)?),
            (Some("ends"), Some("never")) => ends = Some(None),
            (Some("ends"), Some(_)) => ends = Some(Some(dhcpd_time(stmt)?)),
            (Some("hardware"), Some(_)) => hw = w.next().map(str::to_owned),
            (Some("binding"), Some("state")) => state = w.next().map(str::to_owned),
            _ => {}
        }
    }
    if matches!(state.as_deref(), Some("abandoned" | "backup")) {
        return Ok(None);
    }
    let start = starts.ok_or("no starts")?;
    let end = ends.ok_or("no ends")?;
    let subscriber = hw.ok_or("no hardware address")?;
    Ok(Some((
        ip,
        Interval {
            start,
            end,
            subscriber,
        },
    )))
}

fn dhcpd_time(stmt: &str) -> Result<Micros, String> {
    let w: Vec<&str> = stmt.split_whitespace().collect();
    let t = match w.as_slice() {
        [_, "epoch", n, ..] => parse_when(n),
        [_, _weekday, date, time, ..] => parse_when(&format!("{date} {time}")),
        _ => None,
    };
    t.ok_or_else(|| format!("bad time in {stmt:?}"))
}

fn plain_csv(
    bytes: &[u8],
    stats: &mut LoadStats,
    raw: &mut HashMap<IpNet, Vec<Interval>>,
) -> Result<(), EnrichError> {
    let mut rdr = csv_reader(bytes);
    let headers = rdr
        .headers()
        .map_err(|e| EnrichError::Format(format!("identity CSV header: {e}")))?
        .clone();
    let [ip_col, sub_col, start_col, end_col] = header_index(
        &headers,
        [
            &["ip", "address"],
            &["subscriber"],
            &["start"],
            &["end", "stop"],
        ],
    );
    let (Some(ip_col), Some(sub_col), Some(start_col)) = (ip_col, sub_col, start_col) else {
        return Err(EnrichError::Format(
            "identity CSV: the header needs ip, subscriber, start (and end)".into(),
        ));
    };
    for (i, rec) in rdr.records().enumerate() {
        stats.records += 1;
        let line = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                stats.bad(format!("line {line}: {e}"));
                continue;
            }
        };
        let parsed = (|| {
            let net = field(&rec, Some(ip_col))
                .and_then(parse_net)
                .ok_or("bad ip")?;
            let sub = field(&rec, Some(sub_col)).ok_or("no subscriber")?;
            let start = field(&rec, Some(start_col))
                .and_then(parse_when)
                .ok_or("bad start")?;
            let end = match field(&rec, end_col) {
                None => None,
                Some(s) => Some(parse_when(s).ok_or("bad end")?),
            };
            if end.is_some_and(|e| e < start) {
                return Err("end before start");
            }
            Ok((
                net,
                Interval {
                    start,
                    end,
                    subscriber: sub.to_owned(),
                },
            ))
        })();
        match parsed {
            Ok((net, iv)) => {
                raw.entry(net).or_default().push(iv);
                stats.loaded += 1;
            }
            Err(e) => stats.bad(format!("line {line}: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn t(s: &str) -> Micros {
        crate::time::parse_time(s).unwrap()
    }

    /// FreeRADIUS-style accounting as JSON lines: the address 100.64.7.9 goes from alice to bob
    /// and back; an IPv6 session without a Stop; a NAS reboot (Accounting-On); broken records.
    const RADIUS: &str = r#"
{"Acct-Status-Type": "Start", "User-Name": "alice@isp.example", "Framed-IP-Address": "100.64.7.9", "Event-Timestamp": "Nov 23 2026 09:00:00 UTC", "Acct-Session-Id": "A1", "NAS-IP-Address": "192.0.2.1"}
{"Acct-Status-Type": "Interim-Update", "User-Name": "alice@isp.example", "Framed-IP-Address": "100.64.7.9", "Event-Timestamp": 1795426200, "Acct-Session-Id": "A1", "Acct-Session-Time": 1800}
{"Acct-Status-Type": "Stop", "User-Name": "alice@isp.example", "Framed-IP-Address": "100.64.7.9", "Event-Timestamp": "2026-11-23T10:30:00Z", "Acct-Session-Id": "A1", "Acct-Session-Time": 5400, "Acct-Terminate-Cause": "User-Request"}
{"Acct-Status-Type": {"type": "integer", "value": ["Start"]}, "User-Name": {"type": "string", "value": ["bob@isp.example"]}, "Framed-IP-Address": {"type": "ipaddr", "value": ["100.64.7.9"]}, "Event-Timestamp": {"type": "date", "value": ["Nov 23 2026 10:31:00 UTC"]}, "Acct-Session-Id": {"type": "string", "value": ["B1"]}}
{"Acct-Status-Type": "Start", "User-Name": "carol", "Framed-IPv6-Address": "2001:db8:7::9", "Event-Timestamp": "1795428000"}
{"Acct-Status-Type": "Accounting-On", "NAS-IP-Address": "192.0.2.1", "Event-Timestamp": "1795428000"}
{"Acct-Status-Type": "Stop", "User-Name": "dave", "Framed-IP-Address": "100.64.7.10", "Event-Timestamp": "1795428000", "Acct-Session-Time": 600}
{"Acct-Status-Type": "Start", "User-Name": "eve", "Framed-IP-Address": "100.64.999.1", "Event-Timestamp": "1795428000"}
{"Acct-Status-Type": "Start", "User-Name": "frank", "Framed-IP-Address": "100.64.7.11"}
[1, 2]
"#;

    #[test]
    fn radius_sessions_over_time() {
        let l = loaded(RADIUS.as_bytes(), IdentityFormat::RadiusJson);
        assert_eq!(
            (
                l.stats.records,
                l.stats.loaded,
                l.stats.skipped,
                l.stats.bad
            ),
            (11, 6, 1, 4),
            "{:?}",
            l.stats
        );
        assert!(l.stats.reasons.iter().any(|r| r.contains("100.64.999.1")));
        assert!(
            l.stats
                .reasons
                .iter()
                .any(|r| r.contains("no Event-Timestamp"))
        );
        let id = l.data;
        let a = ip("100.64.7.9");
        assert_eq!(id.lookup(a, t("2026-11-23T08:59:59Z")), Holder::Nobody);
        assert_eq!(
            id.lookup(a, t("2026-11-23T09:00:00Z")),
            Holder::One("alice@isp.example")
        );
        assert_eq!(
            id.lookup(a, t("2026-11-23T10:30:00Z")),
            Holder::One("alice@isp.example")
        );
        assert_eq!(id.lookup(a, t("2026-11-23T10:30:30Z")), Holder::Free);
        assert_eq!(
            id.lookup(a, t("2026-11-23T10:31:00Z")),
            Holder::One("bob@isp.example")
        );
        // Bob's session has no Stop yet: he still holds it.
        assert_eq!(
            id.lookup(a, t("2026-12-01T00:00:00Z")),
            Holder::One("bob@isp.example")
        );
        assert_eq!(
            id.lookup(ip("2001:db8:7::9"), t("2026-11-23T11:00:00Z")),
            Holder::One("carol")
        );
        // A Stop without its Start covers Acct-Session-Time before it.
        let d = ip("100.64.7.10");
        assert_eq!(id.lookup(d, t("2026-11-23T09:50:00Z")), Holder::One("dave"));
        assert_eq!(id.lookup(d, t("2026-11-23T09:49:59Z")), Holder::Nobody);
    }

    #[test]
    fn radius_missed_stop_and_handover() {
        let csv = "Acct-Status-Type,User-Name,Framed-IP-Address,Event-Timestamp,Acct-Session-Id\n\
                   Start,alice,100.64.0.5,2026-11-23T09:00:00Z,s1\n\
                   Start,bob,100.64.0.5,2026-11-23T12:00:00Z,s2\n\
                   Stop,bob,100.64.0.5,2026-11-23T13:00:00Z,s2\n\
                   Interim-Update,carol,100.64.0.5,2026-11-23T14:00:00Z,s3\n";
        let id = loaded(csv.as_bytes(), IdentityFormat::RadiusCsv).data;
        let a = ip("100.64.0.5");
        assert_eq!(
            id.lookup(a, t("2026-11-23T11:59:59Z")),
            Holder::One("alice")
        );
        // Alice's Stop was lost: Bob's Start ends her session. At that very second both fit.
        assert_eq!(id.lookup(a, t("2026-11-23T12:00:00Z")), Holder::Ambiguous);
        assert_eq!(id.lookup(a, t("2026-11-23T12:00:01Z")), Holder::One("bob"));
        assert_eq!(id.lookup(a, t("2026-11-23T13:30:00Z")), Holder::Free);
        // An Interim-Update without its Start (no session time): held from the update on.
        assert_eq!(
            id.lookup(a, t("2026-11-23T14:00:00Z")),
            Holder::One("carol")
        );
        assert_eq!(id.intervals(a).len(), 3);
        assert!(
            load(
                b"User-Name,Framed-IP-Address\n",
                IdentityFormat::RadiusCsv,
                &IdentityOptions::default()
            )
            .is_err()
        );
    }

    #[test]
    fn kea_lease_file() {
        // Kea memfile lease4 CSV (v2.x header); hwaddr names the subscriber. The address
        // 192.0.2.50 is leased to one client and renewed, released, then given to another;
        // a declined lease and a broken row.
        let csv = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n\
                   192.0.2.50,00:00:5e:00:53:01,01:00:00:5e:00:53:01,3600,1795424400,1,0,0,host-a,0,,0\n\
                   192.0.2.50,00:00:5e:00:53:01,01:00:00:5e:00:53:01,3600,1795426200,1,0,0,host-a,0,,0\n\
                   192.0.2.50,00:00:5e:00:53:01,01:00:00:5e:00:53:01,0,1795425000,1,0,0,host-a,0,,0\n\
                   192.0.2.50,00:00:5e:00:53:02,,3600,1795430000,1,0,0,host-b,0,,0\n\
                   192.0.2.51,00:00:5e:00:53:03,,3600,1795430000,1,0,0,,1,,0\n\
                   192.0.2.52,00:00:5e:00:53:04,,abc,1795430000,1,0,0,,0,,0\n";
        let l = loaded(csv.as_bytes(), IdentityFormat::KeaCsv);
        assert_eq!(
            (
                l.stats.records,
                l.stats.loaded,
                l.stats.skipped,
                l.stats.bad
            ),
            (6, 4, 1, 1)
        );
        let id = l.data;
        let a = ip("192.0.2.50");
        // Expires 1795424400 = 09:00:00Z after 3600 s: leased from 08:00.
        assert_eq!(id.lookup(a, t("2026-11-23T07:59:59Z")), Holder::Nobody);
        assert_eq!(
            id.lookup(a, t("2026-11-23T08:20:00Z")),
            Holder::One("00:00:5e:00:53:01")
        );
        // The renewal (to 09:30) joins it; the release (valid_lifetime 0) ends it at 09:10.
        assert_eq!(
            id.lookup(a, t("2026-11-23T09:09:59Z")),
            Holder::One("00:00:5e:00:53:01")
        );
        assert_eq!(id.lookup(a, t("2026-11-23T09:10:01Z")), Holder::Free);
        // The next client: 09:33:20 to 10:33:20.
        assert_eq!(
            id.lookup(a, t("2026-11-23T10:00:00Z")),
            Holder::One("00:00:5e:00:53:02")
        );
        assert_eq!(
            id.lookup(ip("192.0.2.51"), t("2026-11-23T10:00:00Z")),
            Holder::Nobody
        );

        // Kea lease6 with the DUID as the id.
        let csv6 = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id\n\
                    2001:db8:1::100,00:03:00:01:00:00:5e:00:53:09,7200,1795430000,1,3600,0,1,128,0,0,,,0,,,,0\n";
        let opts = IdentityOptions {
            id_field: Some("duid".into()),
        };
        let id = load(csv6.as_bytes(), IdentityFormat::KeaCsv, &opts)
            .unwrap()
            .data;
        assert_eq!(
            id.lookup(ip("2001:db8:1::100"), t("2026-11-23T10:00:00Z")),
            Holder::One("00:03:00:01:00:00:5e:00:53:09")
        );
    }

    #[test]
    fn dhcpd_leases_file() {
        let leases = "# The format of this file is documented in the dhcpd.leases(5) manual page.\n\
# This lease file was written by isc-dhcp-4.4.3\n\
\n\
# authoring-byte-order entry is generated, DO NOT DELETE\n\
authoring-byte-order little-endian;\n\
\n\
lease 192.0.2.20 {\n\
  starts 1 2026/11/23 08:00:00;\n\
  ends 1 2026/11/23 20:00:00;\n\
  cltt 1 2026/11/23 08:00:00;\n\
  binding state active;\n\
  next binding state free;\n\
  rewind binding state free;\n\
  hardware ethernet 00:00:5e:00:53:20;\n\
  uid \"\\001\\000\\000^\\000S \";\n\
  client-hostname \"laptop\";\n\
}\n\
lease 192.0.2.21 {\n\
  starts epoch 1795420800; # Mon Nov 23 08:00:00 2026\n\
  ends never;\n\
  binding state active;\n\
  hardware ethernet 00:00:5e:00:53:21;\n\
}\n\
lease 192.0.2.22 {\n\
  starts 1 2026/11/23 08:00:00;\n\
  ends 1 2026/11/23 09:00:00;\n\
  binding state abandoned;\n\
}\n\
lease 192.0.2.23 {\n\
  starts 1 2026/11/23 08:00:00;\n\
  binding state active;\n\
  hardware ethernet 00:00:5e:00:53:23;\n\
}\n\
server-duid \"\\000\\001\\000\\001\";\n";
        let l = loaded(leases.as_bytes(), IdentityFormat::DhcpdLeases);
        assert_eq!(
            (
                l.stats.records,
                l.stats.loaded,
                l.stats.skipped,
                l.stats.bad
            ),
            (4, 2, 1, 1),
            "{:?}",
            l.stats
        );
        let id = l.data;
        assert_eq!(
            id.lookup(ip("192.0.2.20"), t("2026-11-23T19:59:00Z")),
            Holder::One("00:00:5e:00:53:20")
        );
        assert_eq!(
            id.lookup(ip("192.0.2.20"), t("2026-11-23T20:00:01Z")),
            Holder::Nobody
        );
        assert_eq!(
            id.lookup(ip("192.0.2.21"), t("2027-01-01T00:00:00Z")),
            Holder::One("00:00:5e:00:53:21")
        );
        assert!(
            load(
                b"hello",
                IdentityFormat::DhcpdLeases,
                &IdentityOptions::default()
            )
            .is_err()
        );
    }

    /// A pool or an allocation typed in as one subscriber's prefix is refused, not held.
    #[test]
    fn prefixes_too_wide_for_one_subscriber_are_refused() {
        let csv = "ip,subscriber,start,end\n\
                   100.64.0.0/10,carrier,2026-11-23T00:00:00Z,\n\
                   2001:db8::/29,isp,2026-11-23T00:00:00Z,\n\
                   203.0.113.0/24,acme,2026-11-23T00:00:00Z,\n\
                   2001:db8:1200::/48,bob,2026-11-23T00:00:00Z,\n";
        let l = load(
            csv.as_bytes(),
            IdentityFormat::Csv,
            &IdentityOptions::default(),
        )
        .unwrap();
        assert_eq!((l.stats.loaded, l.stats.bad), (2, 2), "{:?}", l.stats);
        let at = t("2026-11-23T12:00:00Z");
        assert_eq!(l.data.lookup(ip("100.64.1.1"), at), Holder::Nobody);
        assert_eq!(l.data.lookup(ip("203.0.113.9"), at), Holder::One("acme"));
        assert_eq!(
            l.data.lookup(ip("2001:db8:1200:5::1"), at),
            Holder::One("bob")
        );
        assert_eq!(l.data.lookup(ip("2001:db8:99::1"), at), Holder::Nobody);
    }

    #[test]
    fn plain_intervals() {
        let csv = "ip,subscriber,start,end\n\
                   100.64.3.3,sub-1,2026-11-23T00:00:00Z,2026-11-23T06:00:00Z\n\
                   100.64.3.3,sub-2,1795413600,\n\
                   100.64.3.4,sub-3,2026-11-23T06:00:00Z,2026-11-23T05:00:00Z\n";
        let l = loaded(csv.as_bytes(), IdentityFormat::Csv);
        assert_eq!((l.stats.loaded, l.stats.bad), (2, 1));
        let a = ip("100.64.3.3");
        assert_eq!(
            l.data.lookup(a, t("2026-11-23T05:00:00Z")),
            Holder::One("sub-1")
        );
        assert_eq!(
            l.data.lookup(a, t("2026-11-23T07:00:00Z")),
            Holder::One("sub-2")
        );
    }

    /// `bytes` loaded as `format` with the default options.
    fn loaded(bytes: &[u8], format: IdentityFormat) -> Loaded<IdentityTable> {
        load(bytes, format, &IdentityOptions::default()).unwrap()
    }

    /// Asserts who `id` says held each address at each RFC 3339 time.
    fn check(id: &IdentityTable, cases: &[(&str, &str, Holder<'_>)]) {
        for (a, at, want) in cases {
            assert_eq!(&id.lookup(ip(a), t(at)), want, "{a} at {at}");
        }
    }

    /// A dual-stack IPoE session as a BNG accounts it: the Start carries the IPv4 address and
    /// the WAN /64 (Framed-IPv6-Prefix); DHCPv6-PD delegates a /56 a few seconds later, which
    /// the next Interim-Update reports; the Stop does not repeat the delegation. The /56 then
    /// goes to bob. Hosts behind the CPE use SLAAC and privacy addresses inside the /56.
    const RADIUS_PD: &str = r#"
{"Acct-Status-Type": "Start", "User-Name": "alice", "Acct-Session-Id": "S1", "Event-Timestamp": "2026-11-23T09:00:00Z", "Framed-IP-Address": "100.64.0.7", "Framed-IPv6-Prefix": "2001:db8:ff00:12::/64"}
{"Acct-Status-Type": "Interim-Update", "User-Name": "alice", "Acct-Session-Id": "S1", "Event-Timestamp": "2026-11-23T09:00:05Z", "Acct-Session-Time": 5, "Framed-IP-Address": "100.64.0.7", "Framed-IPv6-Prefix": "2001:db8:ff00:12::/64", "Delegated-IPv6-Prefix": {"type": "ipv6prefix", "value": ["2001:db8:1200::/56"]}}
{"Acct-Status-Type": "Stop", "User-Name": "alice", "Acct-Session-Id": "S1", "Event-Timestamp": "2026-11-23T11:00:00Z", "Acct-Session-Time": 7200, "Framed-IP-Address": "100.64.0.7", "Framed-IPv6-Prefix": "2001:db8:ff00:12::/64"}
{"Acct-Status-Type": "Start", "User-Name": "bob", "Acct-Session-Id": "S2", "Event-Timestamp": "2026-11-23T12:00:00Z", "Delegated-IPv6-Prefix": "2001:db8:1200::/56"}
{"Acct-Status-Type": "Start", "User-Name": "mallory", "Acct-Session-Id": "S3", "Event-Timestamp": "2026-11-23T12:00:00Z", "Framed-IP-Address": "100.64.0.8", "Delegated-IPv6-Prefix": "2001:db8:1300::/129"}
"#;

    #[test]
    fn radius_delegated_prefix() {
        let l = loaded(RADIUS_PD.as_bytes(), IdentityFormat::RadiusJson);
        assert_eq!((l.stats.records, l.stats.loaded, l.stats.bad), (5, 4, 1));
        // A record with an unreadable prefix is rejected whole, its address too.
        assert!(
            l.stats.reasons[0].contains("bad Delegated-IPv6-Prefix"),
            "{:?}",
            l.stats
        );
        let id = l.data;
        let slaac = "2001:db8:1200:34:a8bb:ccff:fedd:eeff";
        let privacy = "2001:db8:1200:ff:1c2d:3e4f:5a6b:7c8d";
        let wan = "2001:db8:ff00:12::1";
        let alice = Holder::One("alice");
        check(
            &id,
            &[
                ("100.64.0.8", "2026-11-23T12:30:00Z", Holder::Nobody),
                (slaac, "2026-11-23T10:00:00Z", alice),
                (privacy, "2026-11-23T10:00:00Z", alice),
                // Just outside the /56, and another network altogether.
                (
                    "2001:db8:1200:100::1",
                    "2026-11-23T10:00:00Z",
                    Holder::Nobody,
                ),
                ("2001:db8:1300::1", "2026-11-23T10:00:00Z", Holder::Nobody),
                // The WAN /64 from the Start on; the /56 only from the Interim-Update that
                // reported it (a known session: not from the session's start).
                (wan, "2026-11-23T09:00:00Z", alice),
                (slaac, "2026-11-23T09:00:03Z", Holder::Nobody),
                (slaac, "2026-11-23T09:00:05Z", alice),
                // The Stop closes the session's /56 though it does not name it.
                (slaac, "2026-11-23T11:00:00Z", alice),
                // Between alice's /56 and bob's: the source shows it held by no one.
                (slaac, "2026-11-23T11:00:01Z", Holder::Free),
                (wan, "2026-11-23T11:00:01Z", Holder::Nobody),
                ("100.64.0.7", "2026-11-23T10:00:00Z", alice),
                (privacy, "2026-11-23T12:00:01Z", Holder::One("bob")),
            ],
        );
        let pd: IpNet = "2001:db8:1200::/56".parse().unwrap();
        assert_eq!(id.prefix_intervals(pd).len(), 2);
        // The address itself has no interval: only its prefix has.
        assert!(id.intervals(ip(slaac)).is_empty());
    }

    /// A /56 delegated to alice while a /128 inside it is framed to bob: the pools or the
    /// accounting disagree, and the most specific is not reliably right (a lost Stop leaves a
    /// stale /128 as easily as a stale /56), so no one is named. An address and a prefix of the
    /// same subscriber agree.
    #[test]
    fn prefix_and_address_of_different_subscribers_are_ambiguous() {
        let csv = "Acct-Status-Type,User-Name,Framed-IPv6-Address,Framed-IPv6-Prefix,Delegated-IPv6-Prefix,Event-Timestamp,Acct-Session-Id\n\
                   Start,alice,2001:db8:ff00:12::1,2001:db8:ff00:12::/64,2001:db8:1200::/56,2026-11-23T09:00:00Z,s1\n\
                   Start,bob,2001:db8:1200:5::1,,,2026-11-23T10:00:00Z,s2\n\
                   Stop,bob,2001:db8:1200:5::1,,,2026-11-23T11:00:00Z,s2\n";
        let id = loaded(csv.as_bytes(), IdentityFormat::RadiusCsv).data;
        let bobs = "2001:db8:1200:5::1";
        let alice = Holder::One("alice");
        check(
            &id,
            &[
                (bobs, "2026-11-23T09:30:00Z", alice),
                (bobs, "2026-11-23T10:30:00Z", Holder::Ambiguous),
                (bobs, "2026-11-23T11:30:00Z", alice),
                // Elsewhere in the /56 only alice fits.
                ("2001:db8:1200:6::1", "2026-11-23T10:30:00Z", alice),
                // Her own address inside her own /64: one subscriber by both.
                ("2001:db8:ff00:12::1", "2026-11-23T10:30:00Z", alice),
            ],
        );
    }

    #[test]
    fn kea_lease6_prefix_delegation() {
        // Kea 2.x memfile lease6: an IA_NA address and an IA_PD /56 for one client (DUID),
        // the /56 released early (valid_lifetime 0), and an IA_PD row without prefix_len.
        let csv6 = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id\n\
                    2001:db8:1::100,00:03:00:01:00:00:5e:00:53:09,7200,1795430000,1,3600,0,1,128,0,0,,,0,,,,0\n\
                    2001:db8:1200::,00:03:00:01:00:00:5e:00:53:09,7200,1795430000,1,3600,2,2,56,0,0,,,0,,,,0\n\
                    2001:db8:1200::,00:03:00:01:00:00:5e:00:53:09,0,1795427000,1,0,2,2,56,0,0,,,0,,,,0\n\
                    2001:db8:1300::,00:03:00:01:00:00:5e:00:53:0a,7200,1795430000,1,3600,2,3,,0,0,,,0,,,,0\n";
        let opts = IdentityOptions {
            id_field: Some("duid".into()),
        };
        let l = load(csv6.as_bytes(), IdentityFormat::KeaCsv, &opts).unwrap();
        assert_eq!((l.stats.records, l.stats.loaded, l.stats.bad), (4, 3, 1));
        assert!(l.stats.reasons[0].contains("prefix_len"), "{:?}", l.stats);
        let id = l.data;
        let duid = Holder::One("00:03:00:01:00:00:5e:00:53:09");
        let host = "2001:db8:1200:ab:8c3f:11ff:fe22:3344";
        check(
            &id,
            &[
                // Leased 08:33:20 (expire 10:33:20 less 7200 s); released at 09:43:20.
                (host, "2026-11-23T08:33:19Z", Holder::Nobody),
                (host, "2026-11-23T09:00:00Z", duid),
                (host, "2026-11-23T09:43:21Z", Holder::Nobody),
                (
                    "2001:db8:1200:100::1",
                    "2026-11-23T09:00:00Z",
                    Holder::Nobody,
                ),
                // The IA_NA row is the address alone: its neighbours are nobody's.
                ("2001:db8:1::100", "2026-11-23T10:00:00Z", duid),
                ("2001:db8:1::101", "2026-11-23T10:00:00Z", Holder::Nobody),
            ],
        );
        assert_eq!(id.addresses(), 2);
    }

    #[test]
    fn plain_intervals_of_prefixes() {
        // Prefixes in the ip column, host bits as typed dropped; an IPv4 prefix too.
        let csv = "ip,subscriber,start,end\n\
                   2001:db8:1200::1/56,sub-6,2026-11-23T00:00:00Z,2026-11-23T06:00:00Z\n\
                   198.51.100.0/24,sub-4,2026-11-23T00:00:00Z,\n\
                   198.51.100.7,sub-4,2026-11-23T00:00:00Z,\n\
                   2001:db8:1300::/200,sub-x,2026-11-23T00:00:00Z,\n";
        let l = loaded(csv.as_bytes(), IdentityFormat::Csv);
        assert_eq!((l.stats.loaded, l.stats.bad), (3, 1));
        let sub4 = Holder::One("sub-4");
        check(
            &l.data,
            &[
                (
                    "2001:db8:1200:ff::9",
                    "2026-11-23T05:00:00Z",
                    Holder::One("sub-6"),
                ),
                (
                    "2001:db8:1200:ff::9",
                    "2026-11-23T07:00:00Z",
                    Holder::Nobody,
                ),
                ("198.51.100.7", "2026-11-23T07:00:00Z", sub4),
                ("198.51.100.200", "2026-11-23T07:00:00Z", sub4),
                ("198.51.101.1", "2026-11-23T07:00:00Z", Holder::Nobody),
            ],
        );
    }
}
