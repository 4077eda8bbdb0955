//! Juniper SRX / MX session and CGNAT logs (the syslog envelope already peeled), in both the
//! structured-data form (`RT_FLOW - RT_FLOW_SESSION_CREATE [junos@2636… source-address="…" …]`,
//! also reached from an RFC 5424 envelope through `structured_tail`) and the BSD text form
//! (`RT_FLOW_SESSION_CREATE: session created 10.0.0.1/5000->198.51.100.1/80 …`):
//!
//! - `RT_FLOW_SESSION_CREATE` / `_CLOSE` (also the MX-SPC3 `_USF` variants): a NAT event when the
//!   source was translated (`nat-source-address:port` differs from `source-address:port`),
//!   else a flow record. Close records carry counters and `elapsed-time`: a NAT close gets
//!   `end_time` = its time; a flow close starts `elapsed` seconds before it.
//! - `RT_FLOW_SESSION_DENY` and structured `RT_SCREEN_*` drops: firewall events (rule = policy or
//!   attack name).
//! - `RT_SRC_NAT_PBA_ALLOC` / `_RELEASE` / `_INTERIM` (SRX port-block allocation) and
//!   `JSERVICES_NAT_PORT_BLOCK_ALLOC` / `_RELEASE` / `_ACTIVE` (MX MS-MPC): port-block events.
//!   Their epoch stamp (`epoch 0x6a44007a`, `epoch-time-64="624b0492"`, hex seconds) is the
//!   device's own UTC time and wins over the envelope's.
//! - `JSERVICES_SESSION_OPEN` / `_CLOSE` and the older `MSVCS_LOG_SESSION_OPEN` / `_CLOSE`:
//!   `src:port [nat:port] -> dst:port (PROTO)`; without the bracket there was no translation.
//! - ScreenOS (`NetScreen device_id=… system-notification-00257(traffic): …`) traffic logs with
//!   `src-xlated ip= port=`: NAT when the source was translated, deny → firewall, else flow.
//!   Times come from `start_time` (device local time) and `duration`.
//!
//! Other Junos messages (RULE_MATCH, RPF failures, configuration and login messages) are
//! rejected with their tag named: they state no mapping.
//!
//! The routing instance (`routing-instance`, else `src-vrf-grp`) becomes `vrf`. Service-set
//! names (`{sset}`) and logical-system ids are not VRFs and are not kept.

use std::net::IpAddr;

use super::fields::{
    addr_port, clean_ports, dec_epoch, hex_epoch, is_null, param, port_for, port_range,
    quoted_params, sum, translated,
};
use super::util::{
    MICROS_PER_SEC, find_any, parse_ip, parse_iso_prefix, parse_u8, parse_u16, parse_u64,
    trim_start_ws, trim_ws, whitespace_tokens,
};
use super::{ParseCtx, ParseError};
use crate::model::{
    Event, FirewallAction, FirewallEvent, FlowRecord, Micros, NatEvent, NatEventKind,
    protocol_number,
};

const FORMAT: &str = "juniper";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Message tags this parser maps, matched as prefixes (`RT_FLOW_SESSION_CREATE_USF`).
const TAGS: [&str; 14] = [
    "RT_FLOW_SESSION_CREATE",
    "RT_FLOW_SESSION_CLOSE",
    "RT_FLOW_SESSION_DENY",
    "RT_SRC_NAT_PBA_ALLOC",
    "RT_SRC_NAT_PBA_RELEASE",
    "RT_SRC_NAT_PBA_INTERIM",
    "JSERVICES_NAT_PORT_BLOCK_ALLOC",
    "JSERVICES_NAT_PORT_BLOCK_RELEASE",
    "JSERVICES_NAT_PORT_BLOCK_ACTIVE",
    "JSERVICES_SESSION_OPEN",
    "JSERVICES_SESSION_CLOSE",
    "MSVCS_LOG_SESSION_OPEN",
    "MSVCS_LOG_SESSION_CLOSE",
    "RT_SCREEN_",
];

/// Prefixes of Junos message tags in general (for detection and for naming what is rejected).
const FAMILIES: [&str; 6] = [
    "RT_FLOW",
    "RT_NAT",
    "RT_SRC_NAT",
    "RT_SCREEN",
    "JSERVICES_",
    "MSVCS_LOG_",
];

/// What [`looks_like`] finds: the families and the ScreenOS header, each with the offset of
/// its first `_` (`looks_like_marks_hold_an_underscore`).
const MARKS: [(&str, usize); 7] = [
    ("RT_FLOW", 2),
    ("RT_NAT", 2),
    ("RT_SRC_NAT", 2),
    ("RT_SCREEN", 2),
    ("JSERVICES_", 9),
    ("MSVCS_LOG_", 5),
    ("NetScreen device_id=", 16),
];

/// Cheap check used by format detection: a Junos tag near the start, or a ScreenOS header.
///
/// Every mark holds a `_`: one `memchr` for it, and each mark compared where its first `_`
/// would put it (an occurrence of a mark has its first `_` there), instead of seven vector
/// searches (~350 instructions for a Cisco line, which has no `_`).
pub fn looks_like(body: &str) -> bool {
    let head = head(body, 160).as_bytes();
    memchr::memchr_iter(b'_', head).any(|at| {
        MARKS.iter().any(|(mark, k)| {
            at.checked_sub(*k)
                .and_then(|start| head.get(start..))
                .is_some_and(|r| r.starts_with(mark.as_bytes()))
        })
    })
}

fn head(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// For an RFC 5424 message: the slice from a Junos MSGID we map onwards (`RT_FLOW_SESSION_CREATE
/// [junos@… …]`), which the envelope parser would otherwise split into MSGID and SD.
pub fn structured_tail(msg: &str) -> Option<&str> {
    // The earliest valid tag wins, and a tag follows a space: one pass over the spaces,
    // left to right, stops at the first (the header's MSGID for Junos) instead of searching
    // the whole message once per family.
    let b = msg.as_bytes();
    for sp in memchr::memchr_iter(b' ', b) {
        let at = sp + 1;
        // Every family starts with R, J or M: one byte turns most words away before six
        // prefix compares.
        if !matches!(b.get(at), Some(b'R' | b'J' | b'M')) {
            continue;
        }
        let Some(rest) = msg.get(at..) else { continue };
        if !FAMILIES.iter().any(|f| rest.starts_with(f)) {
            continue;
        }
        // An inlined byte search: `split(' ')` set up a char searcher (~170 instructions).
        let end = find_any(rest.as_bytes(), [b' ']).unwrap_or(rest.len());
        let tok = rest.get(..end).unwrap_or("");
        let after = rest.get(end..).unwrap_or("");
        if TAGS.iter().any(|t| tok.starts_with(t)) && after.starts_with(" [") {
            return Some(rest);
        }
    }
    None
}

/// A syslog TAG that is really a Junos message tag (`host JSERVICES_NAT_PORT_BLOCK_ALLOC: …`).
pub fn is_tag(app: &str) -> bool {
    TAGS.iter().any(|t| app.starts_with(t))
}

/// Parses one message into at most one event; returns the number pushed.
pub fn parse(
    body: &str,
    default_time: Micros,
    ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let body = trim_ws(body);
    // A prebuilt vector searcher: `str::contains` set up its search anew on every ~900-byte
    // RT_FLOW line.
    static SCREENOS: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("NetScreen device_id="));
    // Only where detection looks for it (`looks_like`: the first 160 bytes), where ScreenOS
    // prints it: searching the whole of a ~1,000-byte RT_FLOW line cost ~250 instructions, and
    // the phrase inside a session's values does not make it a ScreenOS log.
    if SCREENOS.find(head(body, 160).as_bytes()).is_some() {
        return screenos(body, ctx, out);
    }
    let (tag, rest) = find_tag(body)?;
    let rest = trim_start_ws(rest);
    let sd = rest.strip_prefix('[');
    let ev = match (tag_kind(tag), sd) {
        // Sessions are most of what SRXs log: their ~35 parameters are read in one pass that
        // keeps the 15 used, instead of a list searched once per field.
        (Some(Tag::FlowCreate), Some(p)) => {
            session_from_params(&SessionParams::scan(p), false).map(Some)?
        }
        (Some(Tag::FlowClose), Some(p)) => {
            session_from_params(&SessionParams::scan(p), true).map(Some)?
        }
        (Some(Tag::FlowCreate), None) => session_from_text(rest, false).map(Some)?,
        (Some(Tag::FlowClose), None) => session_from_text(rest, true).map(Some)?,
        (Some(Tag::FlowDeny), Some(p)) => {
            out.push(Event::Firewall(deny_from_params(
                &quoted_params(p),
                default_time,
            )?));
            return Ok(1);
        }
        (Some(Tag::FlowDeny), None) => {
            out.push(Event::Firewall(deny_from_text(rest, default_time)?));
            return Ok(1);
        }
        (Some(Tag::Screen), Some(p)) => {
            out.push(Event::Firewall(screen_from_params(
                tag,
                &quoted_params(p),
                default_time,
            )?));
            return Ok(1);
        }
        (Some(Tag::Screen), None) => {
            return Err(err(format!("{tag}: only the structured form is read")));
        }
        (Some(Tag::Pba(kind)), sd) => {
            let e = match sd {
                Some(p) => pba_from_params(&quoted_params(p), kind, default_time)?,
                None => pba_from_text(rest, kind, default_time)?,
            };
            out.push(Event::Nat(e));
            return Ok(1);
        }
        (Some(Tag::Block(kind)), _) => {
            out.push(Event::Nat(block_from_text(rest, kind, default_time)?));
            return Ok(1);
        }
        (Some(Tag::Jsession(close)), _) => jsession_from_text(rest, close).map(Some)?,
        (None, _) => None,
    };
    let Some(s) = ev else {
        return Err(err(format!(
            "{tag} carries no NAT, flow or firewall record"
        )));
    };
    out.push(s.into_event(default_time));
    Ok(1)
}

#[derive(Debug, Clone, Copy)]
enum Tag {
    FlowCreate,
    FlowClose,
    FlowDeny,
    Screen,
    /// SRX port-block allocation.
    Pba(NatEventKind),
    /// MX MS-MPC port blocks.
    Block(NatEventKind),
    /// JSERVICES / MSVCS session open (false) or close (true).
    Jsession(bool),
}

fn tag_kind(tag: &str) -> Option<Tag> {
    use NatEventKind::*;
    Some(match tag {
        t if t.starts_with("RT_FLOW_SESSION_CREATE") => Tag::FlowCreate,
        t if t.starts_with("RT_FLOW_SESSION_CLOSE") => Tag::FlowClose,
        t if t.starts_with("RT_FLOW_SESSION_DENY") => Tag::FlowDeny,
        t if t.starts_with("RT_SCREEN_") => Tag::Screen,
        "RT_SRC_NAT_PBA_ALLOC" => Tag::Pba(PortBlockAlloc),
        "RT_SRC_NAT_PBA_RELEASE" => Tag::Pba(PortBlockRelease),
        "RT_SRC_NAT_PBA_INTERIM" => Tag::Pba(PortBlockInterim),
        "JSERVICES_NAT_PORT_BLOCK_ALLOC" => Tag::Block(PortBlockAlloc),
        "JSERVICES_NAT_PORT_BLOCK_RELEASE" => Tag::Block(PortBlockRelease),
        "JSERVICES_NAT_PORT_BLOCK_ACTIVE" => Tag::Block(PortBlockInterim),
        "JSERVICES_SESSION_OPEN" | "MSVCS_LOG_SESSION_OPEN" => Tag::Jsession(false),
        "JSERVICES_SESSION_CLOSE" | "MSVCS_LOG_SESSION_CLOSE" => Tag::Jsession(true),
        _ => return None,
    })
}

/// The message tag and what follows it. Tokens may carry a service-set prefix
/// (`{sset}MSVCS_LOG_SESSION_OPEN:`, `{sset}[jservices-nat]: JSERVICES_…:`); an app name
/// followed by ` - ` (`RT_FLOW - RT_FLOW_SESSION_CREATE`) is not the tag.
fn find_tag(body: &str) -> Result<(&str, &str), ParseError> {
    let mut rest = body;
    for _ in 0..12 {
        let t = trim_start_ws(rest);
        let end = find_any(t.as_bytes(), [b' ']).unwrap_or(t.len());
        let raw = t.get(..end).unwrap_or("");
        let after = t.get(end..).unwrap_or("");
        let mut tok = raw;
        // Strip "{service-set}" and "[jservices-nat]:" prefixes.
        if tok.starts_with('{')
            && let Some(close) = tok.find('}')
        {
            tok = tok.get(close + 1..).unwrap_or("");
        }
        if tok.starts_with('[')
            && let Some(close) = tok.find(']')
        {
            tok = tok.get(close + 1..).unwrap_or("");
        }
        let tok = tok.trim_end_matches(':');
        let is_ident = !tok.is_empty()
            && tok
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if is_ident && FAMILIES.iter().any(|f| tok.starts_with(f)) {
            let app_name = trim_start_ws(after).starts_with("- ");
            if !app_name {
                return Ok((tok, after));
            }
        }
        if after.is_empty() {
            break;
        }
        rest = after;
    }
    Err(err(format!("no Junos message tag in {:?}", head(body, 60))))
}

/// A session as the logs state it, before the NAT / flow decision.
#[derive(Debug, Default)]
struct Session {
    close: bool,
    protocol: Option<u8>,
    src: Option<IpAddr>,
    sport: Option<u16>,
    dst: Option<IpAddr>,
    dport: Option<u16>,
    nat_src: Option<IpAddr>,
    nat_sport: Option<u16>,
    bytes_out: Option<u64>,
    bytes_in: Option<u64>,
    packets_out: Option<u64>,
    packets_in: Option<u64>,
    /// Session duration in seconds (close records).
    elapsed: Option<i64>,
    vrf: Option<String>,
    /// The record's own time, when it has one (ScreenOS).
    time: Option<Micros>,
}

impl Session {
    fn into_event(self, default_time: Micros) -> Event {
        let time = self.time.unwrap_or(default_time);
        if translated(self.src, self.sport, self.nat_src, self.nat_sport) {
            let mut e = NatEvent {
                time,
                event: Some(if self.close {
                    NatEventKind::SessionDelete
                } else {
                    NatEventKind::SessionCreate
                }),
                protocol: self.protocol,
                src_ip: self.src,
                src_port: self.sport,
                x_ip: self.nat_src,
                x_port: self.nat_sport,
                x_port_end: None,
                dst_ip: self.dst,
                dst_port: self.dport,
                vrf: self.vrf,
                direction: Some("out"),
                end_time: self.elapsed.filter(|_| self.close).map(|_| time),
                bytes_out: self.bytes_out,
                bytes_in: self.bytes_in,
                packets_out: self.packets_out,
                packets_in: self.packets_in,
            };
            clean_ports(&mut e);
            Event::Nat(e)
        } else {
            let start = match self.elapsed {
                Some(s) if self.close => time.saturating_sub(s.saturating_mul(MICROS_PER_SEC)),
                _ => time,
            };
            Event::Flow(FlowRecord {
                time: start,
                end_time: self.close.then_some(time),
                protocol: self.protocol,
                src_ip: self.src,
                src_port: port_for(self.protocol, self.sport),
                dst_ip: self.dst,
                dst_port: port_for(self.protocol, self.dport),
                // Both directions of the session: the flows table has one counter.
                bytes: sum(self.bytes_out, self.bytes_in),
                packets: sum(self.packets_out, self.packets_in),
                vrf: self.vrf,
                ..FlowRecord::default()
            })
        }
    }
}

/// Where the session fields come from: a parameter list, or [`SessionParams`].
trait Lookup<'a> {
    /// The value of `key` as [`param`] reads it: None for absent and null placeholders.
    fn get(&self, key: &str) -> Option<&'a str>;
}

impl<'a> Lookup<'a> for [(&str, &'a str)] {
    fn get(&self, key: &str) -> Option<&'a str> {
        param(self, key)
    }
}

impl<'a> Lookup<'a> for Vec<(&str, &'a str)> {
    fn get(&self, key: &str) -> Option<&'a str> {
        param(self, key)
    }
}

/// The RT_FLOW session parameters [`session_from_params`] reads, collected in one pass over
/// the structured data. Like [`param`], the first occurrence of a key wins, then it is trimmed
/// and null placeholders read as absent.
#[derive(Default)]
struct SessionParams<'a> {
    slots: [Option<&'a str>; SESSION_KEYS.len()],
}

const SESSION_KEYS: [&str; 15] = [
    "source-address",
    "source-port",
    "destination-address",
    "destination-port",
    "nat-source-address",
    "nat-source-port",
    "protocol-id",
    "protocol-name",
    "bytes-from-client",
    "bytes-from-server",
    "packets-from-client",
    "packets-from-server",
    "elapsed-time",
    "routing-instance",
    "src-vrf-grp",
];

impl<'a> SessionParams<'a> {
    /// The pairs `QuotedParams` yields, kept for the 15 keys read
    /// (`session_scan_reads_like_quoted_params` compares them on random text). Junos prints a
    /// session's parameters in one order ([`ORDER`]), so the key after the last one read is
    /// tried first: when the text is that name and a `=`, the key is read without searching
    /// for its end or matching it against the names (text equal to a name holds none of the
    /// bytes where `QuotedParams` stops before the `=`). Anything else takes the general way,
    /// a search for the stops, and sets where the order continues.
    fn scan(sd: &'a str) -> Self {
        let b = sd.as_bytes();
        let mut p = SessionParams::default();
        let mut i = 0;
        // The index in ORDER of the key expected next.
        let mut next = 0;
        loop {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            if b.get(i).is_none_or(|c| *c == b']') {
                return p;
            }
            let key_start = i;
            let expected = ORDER.get(next).map(|(k, _)| k.as_bytes()).filter(|k| {
                b.get(i..).is_some_and(|r| starts_with_key(r, k))
                    && b.get(i + k.len()) == Some(&b'=')
            });
            let at = if let Some(k) = expected {
                i += k.len();
                Some(next)
            } else {
                i = b
                    .get(i..)
                    .and_then(|r| find_any(r, [b'=', b' ', b']']))
                    .map_or(b.len(), |r| i + r);
                if b.get(i) != Some(&b'=') {
                    // A bare word (e.g. the SD-ID "junos@2636.1.1.1.2.39"): skip it.
                    continue;
                }
                sd.get(key_start..i).and_then(order_index)
            };
            if let Some(n) = at {
                next = n + 1;
            }
            i += 1;
            let (start, end) = if b.get(i) == Some(&b'"') {
                let start = i + 1;
                let end = closing_quote(b, start);
                i = end + 1;
                (start, end)
            } else {
                let start = i;
                i = b
                    .get(i..)
                    .and_then(|r| find_any(r, [b' ', b']']))
                    .map_or(b.len(), |r| i + r);
                (start, i)
            };
            if let Some(n) = at.and_then(|n| ORDER.get(n)).and_then(|(_, slot)| *slot)
                && let Some(slot) = p.slots.get_mut(n)
                && slot.is_none()
            {
                *slot = sd.get(start..end);
            }
        }
    }

    /// The index of `key` in [`SESSION_KEYS`]; a `match` so the compiler dispatches on the
    /// length first instead of comparing with each name in turn. Inlined so that lookups by a
    /// constant name (`session_from_params`) fold to their index.
    #[inline(always)]
    fn slot(key: &str) -> Option<usize> {
        Some(match key {
            "source-address" => 0,
            "source-port" => 1,
            "destination-address" => 2,
            "destination-port" => 3,
            "nat-source-address" => 4,
            "nat-source-port" => 5,
            "protocol-id" => 6,
            "protocol-name" => 7,
            "bytes-from-client" => 8,
            "bytes-from-server" => 9,
            "packets-from-client" => 10,
            "packets-from-server" => 11,
            "elapsed-time" => 12,
            "routing-instance" => 13,
            "src-vrf-grp" => 14,
            _ => return None,
        })
    }
}

impl<'a> Lookup<'a> for SessionParams<'a> {
    #[inline(always)]
    fn get(&self, key: &str) -> Option<&'a str> {
        Self::slot(key)
            .and_then(|i| self.slots.get(i).copied().flatten())
            .map(trim_ws)
            .filter(|v| !is_null(v))
    }
}

/// RT_FLOW session parameters in the order Junos prints them (a close; a create leaves out
/// `reason` and the counters), each with its index in [`SESSION_KEYS`] when a session reads
/// it. Every name is made of `a-z`, `0-9` and `-`. A name missing here or a device printing
/// another order costs a search, never a value.
const ORDER: [(&str, Option<usize>); 40] = [
    ("reason", None),
    ("source-address", Some(0)),
    ("source-port", Some(1)),
    ("destination-address", Some(2)),
    ("destination-port", Some(3)),
    ("connection-tag", None),
    ("service-name", None),
    ("nat-source-address", Some(4)),
    ("nat-source-port", Some(5)),
    ("nat-destination-address", None),
    ("nat-destination-port", None),
    ("nat-connection-tag", None),
    ("src-nat-rule-type", None),
    ("src-nat-rule-name", None),
    ("dst-nat-rule-type", None),
    ("dst-nat-rule-name", None),
    ("protocol-id", Some(6)),
    ("policy-name", None),
    ("source-zone-name", None),
    ("destination-zone-name", None),
    ("session-id", None),
    ("packets-from-client", Some(10)),
    ("bytes-from-client", Some(8)),
    ("packets-from-server", Some(11)),
    ("bytes-from-server", Some(9)),
    ("elapsed-time", Some(12)),
    ("username", None),
    ("roles", None),
    ("packet-incoming-interface", None),
    ("application", None),
    ("nested-application", None),
    ("encrypted", None),
    ("application-category", None),
    ("application-sub-category", None),
    ("application-risk", None),
    ("application-characteristics", None),
    ("protocol-name", Some(7)),
    ("routing-instance", Some(13)),
    ("src-vrf-grp", Some(14)),
    ("session-id-32", None),
];

/// The index of `key` in [`ORDER`] (a `match`: a dispatch on the length, then word compares).
#[inline(always)]
fn order_index(key: &str) -> Option<usize> {
    Some(match key {
        "reason" => 0,
        "source-address" => 1,
        "source-port" => 2,
        "destination-address" => 3,
        "destination-port" => 4,
        "connection-tag" => 5,
        "service-name" => 6,
        "nat-source-address" => 7,
        "nat-source-port" => 8,
        "nat-destination-address" => 9,
        "nat-destination-port" => 10,
        "nat-connection-tag" => 11,
        "src-nat-rule-type" => 12,
        "src-nat-rule-name" => 13,
        "dst-nat-rule-type" => 14,
        "dst-nat-rule-name" => 15,
        "protocol-id" => 16,
        "policy-name" => 17,
        "source-zone-name" => 18,
        "destination-zone-name" => 19,
        "session-id" => 20,
        "packets-from-client" => 21,
        "bytes-from-client" => 22,
        "packets-from-server" => 23,
        "bytes-from-server" => 24,
        "elapsed-time" => 25,
        "username" => 26,
        "roles" => 27,
        "packet-incoming-interface" => 28,
        "application" => 29,
        "nested-application" => 30,
        "encrypted" => 31,
        "application-category" => 32,
        "application-sub-category" => 33,
        "application-risk" => 34,
        "application-characteristics" => 35,
        "protocol-name" => 36,
        "routing-instance" => 37,
        "src-vrf-grp" => 38,
        "session-id-32" => 39,
        _ => return None,
    })
}

/// `h.starts_with(k)` by word compares at fixed places (the first and last four or eight
/// bytes, and the words between for longer keys): a call to `bcmp` cost ~20 instructions a
/// key, a loop over the words ~10 a word.
#[inline(always)]
fn starts_with_key(h: &[u8], k: &[u8]) -> bool {
    let n = k.len();
    let Some(h) = h.get(..n) else {
        return false;
    };
    let w8 = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|x| <[u8; 8]>::try_from(x).ok())
            .map(u64::from_le_bytes)
    };
    let w4 = |s: &[u8], at: usize| {
        s.get(at..at + 4)
            .and_then(|x| <[u8; 4]>::try_from(x).ok())
            .map(u32::from_le_bytes)
    };
    match n {
        0..4 | 33.. => h == k,
        4..8 => w4(h, 0) == w4(k, 0) && w4(h, n - 4) == w4(k, n - 4),
        _ => {
            w8(h, 0) == w8(k, 0)
                && w8(h, n - 8) == w8(k, n - 8)
                && (n <= 16 || w8(h, 8) == w8(k, 8))
                && (n <= 24 || w8(h, 16) == w8(k, 16))
        }
    }
}

/// Where the quoted value starting at `start` ends, as `QuotedParams` walks it: a `"` that no
/// backslash precedes is the end whatever came before (an escape takes only the byte after
/// it), so the walk over escapes runs only when the first quote has a backslash before it.
#[inline(always)]
fn closing_quote(b: &[u8], start: usize) -> usize {
    let first = b
        .get(start..)
        .and_then(|r| find_any(r, [b'"']))
        .map_or(b.len(), |r| start + r);
    if first == start || b.get(first - 1) != Some(&b'\\') {
        return first;
    }
    let mut j = start;
    loop {
        match b.get(j..).and_then(|r| find_any(r, [b'"', b'\\'])) {
            Some(rel) if b.get(j + rel) == Some(&b'"') => return j + rel,
            // An escape takes the next byte whatever it is.
            Some(rel) => j += rel + 2,
            None => return b.len(),
        }
    }
}

/// An address field that is present must parse: a masked or garbled address is an error, not
/// a silently missing value.
///
/// This and the other field readers are always inlined, so that `SessionParams::get` by a
/// constant name folds to its slot: out of line, each call matched the name again (~60
/// instructions of a port's ~150).
#[inline(always)]
fn ip_field<'a, P: Lookup<'a> + ?Sized>(p: &P, key: &str) -> Result<Option<IpAddr>, ParseError> {
    match p.get(key) {
        Some(v) => parse_ip(v)
            .map(Some)
            .ok_or_else(|| err(format!("bad {key}={v:?}"))),
        None => Ok(None),
    }
}

#[inline(always)]
fn port_field<'a, P: Lookup<'a> + ?Sized>(p: &P, key: &str) -> Result<Option<u16>, ParseError> {
    match p.get(key) {
        Some(v) => parse_u16(v)
            .map(Some)
            .ok_or_else(|| err(format!("bad {key}={v:?}"))),
        None => Ok(None),
    }
}

#[inline(always)]
fn count_field<'a, P: Lookup<'a> + ?Sized>(p: &P, key: &str) -> Option<u64> {
    p.get(key).and_then(parse_u64)
}

#[inline(always)]
fn protocol_field<'a, P: Lookup<'a> + ?Sized>(p: &P) -> Result<Option<u8>, ParseError> {
    if let Some(v) = p.get("protocol-id") {
        return parse_u8(v)
            .map(Some)
            .ok_or_else(|| err(format!("bad protocol-id={v:?}")));
    }
    Ok(p.get("protocol-name").and_then(protocol_number))
}

#[inline(always)]
fn vrf_field<'a, P: Lookup<'a> + ?Sized>(p: &P) -> Option<String> {
    p.get("routing-instance")
        .or_else(|| p.get("src-vrf-grp"))
        .filter(|v| *v != "default")
        .map(str::to_owned)
}

fn session_from_params<'a, P: Lookup<'a> + ?Sized>(
    p: &P,
    close: bool,
) -> Result<Session, ParseError> {
    let src = ip_field(p, "source-address")?;
    if src.is_none() {
        return Err(err("no source-address"));
    }
    Ok(Session {
        close,
        protocol: protocol_field(p)?,
        src,
        sport: port_field(p, "source-port")?,
        dst: ip_field(p, "destination-address")?,
        dport: port_field(p, "destination-port")?,
        nat_src: ip_field(p, "nat-source-address")?,
        nat_sport: port_field(p, "nat-source-port")?,
        bytes_out: count_field(p, "bytes-from-client"),
        bytes_in: count_field(p, "bytes-from-server"),
        packets_out: count_field(p, "packets-from-client"),
        packets_in: count_field(p, "packets-from-server"),
        elapsed: count_field(p, "elapsed-time").and_then(|v| i64::try_from(v).ok()),
        vrf: vrf_field(p),
        time: None,
    })
}

/// An address and the port printed with it.
type Endpoint = (IpAddr, Option<u16>);

/// `a/p->b/q` → both ends.
fn arrow_pair(tok: &str) -> Result<(Endpoint, Endpoint), ParseError> {
    let (a, b) = tok
        .split_once("->")
        .ok_or_else(|| err(format!("no -> in {tok:?}")))?;
    let a = addr_port(a, '/').ok_or_else(|| err(format!("bad address {a:?}")))?;
    let b = addr_port(b, '/').ok_or_else(|| err(format!("bad address {b:?}")))?;
    Ok((a, b))
}

/// `78(6657)` → (78, 6657).
fn paren_pair(tok: &str) -> Option<(u64, u64)> {
    let (a, b) = tok.strip_suffix(')')?.split_once('(')?;
    Some((parse_u64(a)?, parse_u64(b)?))
}

/// BSD text: `session created S/p->D/q SERVICE NS/np->ND/nq [rule words] PROTO POLICY …` and
/// `session closed REASON: … PROTO POLICY FROM TO ID Pc(Bc) Ps(Bs) ELAPSED …`. The protocol is
/// the first plain number after the translated tuple (connection tags print as `0x…`).
fn session_from_text(rest: &str, close: bool) -> Result<Session, ParseError> {
    let toks = whitespace_tokens(rest);
    let arrows: Vec<usize> = (0..toks.len())
        .filter(|&i| toks.get(i).is_some_and(|t| t.contains("->")))
        .collect();
    let (Some(&a1), Some(&a2)) = (arrows.first(), arrows.get(1)) else {
        return Err(err("session text without original and translated tuples"));
    };
    let ((src, sport), (dst, dport)) = arrow_pair(toks.get(a1).copied().unwrap_or(""))?;
    let ((nsrc, nsport), _) = arrow_pair(toks.get(a2).copied().unwrap_or(""))?;
    let after = toks.get(a2 + 1..).unwrap_or(&[]);
    let proto_at = after
        .iter()
        .position(|t| parse_u8(t).is_some())
        .ok_or_else(|| err("no protocol number after the translated tuple"))?;
    let protocol = after.get(proto_at).and_then(|t| parse_u8(t));
    let mut s = Session {
        close,
        protocol,
        src: Some(src),
        sport,
        dst: Some(dst),
        dport,
        nat_src: Some(nsrc),
        nat_sport: nsport,
        ..Session::default()
    };
    if close {
        let tail = after.get(proto_at..).unwrap_or(&[]);
        let counters: Vec<usize> = (0..tail.len())
            .filter(|&i| tail.get(i).and_then(|t| paren_pair(t)).is_some())
            .collect();
        if let (Some(&c), Some(&sv)) = (counters.first(), counters.get(1)) {
            let (pc, bc) = tail.get(c).and_then(|t| paren_pair(t)).unwrap_or((0, 0));
            let (ps, bs) = tail.get(sv).and_then(|t| paren_pair(t)).unwrap_or((0, 0));
            s.packets_out = Some(pc);
            s.bytes_out = Some(bc);
            s.packets_in = Some(ps);
            s.bytes_in = Some(bs);
            s.elapsed = tail
                .get(sv + 1)
                .and_then(|t| parse_u64(t))
                .and_then(|v| i64::try_from(v).ok());
        }
    }
    Ok(s)
}

fn deny_from_params(p: &[(&str, &str)], time: Micros) -> Result<FirewallEvent, ParseError> {
    let src_ip = ip_field(p, "source-address")?;
    if src_ip.is_none() {
        return Err(err("no source-address"));
    }
    let protocol = protocol_field(p)?;
    Ok(FirewallEvent {
        time,
        action: FirewallAction::Deny,
        rule: param(p, "policy-name").map(str::to_owned),
        protocol,
        src_ip,
        src_port: port_for(protocol, port_field(p, "source-port")?),
        dst_ip: ip_field(p, "destination-address")?,
        dst_port: port_for(protocol, port_field(p, "destination-port")?),
        in_if: param(p, "packet-incoming-interface").map(str::to_owned),
        out_if: None,
        length: None,
        vrf: vrf_field(p),
    })
}

/// `session denied S/p->D/q SERVICE PROTO(ICMPTYPE) POLICY FROM TO … IFACE …`.
fn deny_from_text(rest: &str, time: Micros) -> Result<FirewallEvent, ParseError> {
    let toks = whitespace_tokens(rest);
    let a1 = toks
        .iter()
        .position(|t| t.contains("->"))
        .ok_or_else(|| err("deny text without a tuple"))?;
    let ((src, sport), (dst, dport)) = arrow_pair(toks.get(a1).copied().unwrap_or(""))?;
    let after = toks.get(a1 + 1..).unwrap_or(&[]);
    let p_at = after
        .iter()
        .position(|t| paren_pair(t).is_some())
        .ok_or_else(|| err("no protocol(icmp-type) after the tuple"))?;
    let protocol = after
        .get(p_at)
        .and_then(|t| paren_pair(t))
        .and_then(|(p, _)| u8::try_from(p).ok());
    Ok(FirewallEvent {
        time,
        action: FirewallAction::Deny,
        rule: after.get(p_at + 1).map(|s| (*s).to_owned()),
        protocol,
        src_ip: Some(src),
        src_port: port_for(protocol, sport),
        dst_ip: Some(dst),
        dst_port: port_for(protocol, dport),
        in_if: None,
        out_if: None,
        length: None,
        vrf: None,
    })
}

fn screen_from_params(
    tag: &str,
    p: &[(&str, &str)],
    time: Micros,
) -> Result<FirewallEvent, ParseError> {
    let src_ip = ip_field(p, "source-address")?;
    if src_ip.is_none() {
        return Err(err(format!("{tag} without source-address")));
    }
    let protocol = protocol_field(p)?;
    let action = match param(p, "action") {
        Some(a) if a.eq_ignore_ascii_case("drop") || a.eq_ignore_ascii_case("deny") => {
            FirewallAction::Deny
        }
        _ => FirewallAction::Log,
    };
    Ok(FirewallEvent {
        time,
        action,
        rule: param(p, "attack-name").map(str::to_owned),
        protocol,
        src_ip,
        src_port: port_for(protocol, port_field(p, "source-port")?),
        dst_ip: ip_field(p, "destination-address")?,
        dst_port: port_for(protocol, port_field(p, "destination-port")?),
        in_if: param(p, "interface-name").map(str::to_owned),
        out_if: None,
        length: None,
        vrf: vrf_field(p),
    })
}

/// Junos epoch fields are hex seconds (`624b0492`); a 10-digit decimal value is read as decimal.
fn junos_epoch(v: &str) -> Option<Micros> {
    let v = v.trim();
    if v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit()) {
        return dec_epoch(v);
    }
    hex_epoch(v)
}

fn block_event(
    kind: NatEventKind,
    inside: IpAddr,
    public: IpAddr,
    (lo, hi): (u16, u16),
    time: Micros,
) -> NatEvent {
    NatEvent {
        time,
        event: Some(kind),
        src_ip: Some(inside),
        x_ip: Some(public),
        x_port: Some(lo),
        x_port_end: Some(hi),
        direction: Some("out"),
        ..NatEvent::default()
    }
}

fn pba_from_params(
    p: &[(&str, &str)],
    kind: NatEventKind,
    default_time: Micros,
) -> Result<NatEvent, ParseError> {
    let inside = ip_field(p, "internal-ip")?.ok_or_else(|| err("no internal-ip"))?;
    let public = ip_field(p, "reflexive-ip")?.ok_or_else(|| err("no reflexive-ip"))?;
    let lo = port_field(p, "block-port-low")?.ok_or_else(|| err("no block-port-low"))?;
    let hi = port_field(p, "block-port-high")?.ok_or_else(|| err("no block-port-high"))?;
    if lo > hi {
        return Err(err(format!("block-port-low {lo} > block-port-high {hi}")));
    }
    let time = param(p, "epoch-time-64")
        .or_else(|| param(p, "epoch-time"))
        .and_then(junos_epoch)
        .unwrap_or(default_time);
    Ok(block_event(kind, inside, public, (lo, hi), time))
}

/// `Subscriber 100.64.0.1 used/maximum [1/8] blocks, allocates port block [2048-2175] from
/// 203.0.113.1 in source pool P lsys_id: 0 [epoch 0x…]`.
fn pba_from_text(
    rest: &str,
    kind: NatEventKind,
    default_time: Micros,
) -> Result<NatEvent, ParseError> {
    let toks = whitespace_tokens(rest);
    let after = |word: &str| {
        toks.iter()
            .position(|t| t.eq_ignore_ascii_case(word))
            .and_then(|i| toks.get(i + 1))
            .map(|t| t.trim_end_matches(','))
    };
    let inside = after("Subscriber").ok_or_else(|| err("no Subscriber address"))?;
    let inside = parse_ip(inside).ok_or_else(|| err(format!("bad subscriber {inside:?}")))?;
    let block = after("block").ok_or_else(|| err("no port block"))?;
    let range = block
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .and_then(port_range)
        .ok_or_else(|| err(format!("bad port block {block:?}")))?;
    let public = after("from").ok_or_else(|| err("no public address"))?;
    let public = parse_ip(public).ok_or_else(|| err(format!("bad public address {public:?}")))?;
    let time = after("epoch").and_then(junos_epoch).unwrap_or(default_time);
    Ok(block_event(kind, inside, public, range, time))
}

/// `10.0.0.1 -> 203.0.113.1:1024-1151 [0x5a2b3c4d]` (MS-MPC port blocks; NAT64 inside
/// addresses are IPv6).
fn block_from_text(
    rest: &str,
    kind: NatEventKind,
    default_time: Micros,
) -> Result<NatEvent, ParseError> {
    let toks = whitespace_tokens(rest);
    let arrow = toks
        .iter()
        .position(|t| *t == "->")
        .ok_or_else(|| err("port block without ->"))?;
    let inside = arrow
        .checked_sub(1)
        .and_then(|i| toks.get(i))
        .ok_or_else(|| err("no inside address"))?;
    let inside = parse_ip(inside).ok_or_else(|| err(format!("bad inside address {inside:?}")))?;
    let public = toks
        .get(arrow + 1)
        .ok_or_else(|| err("no public address"))?;
    let (ip, range) = public
        .rsplit_once(':')
        .ok_or_else(|| err(format!("no port range in {public:?}")))?;
    let ip = parse_ip(ip).ok_or_else(|| err(format!("bad public address {ip:?}")))?;
    let range = port_range(range).ok_or_else(|| err(format!("bad port range {range:?}")))?;
    let time = toks
        .get(arrow + 2)
        .filter(|t| t.starts_with("0x") || t.starts_with("0X"))
        .and_then(|t| hex_epoch(t))
        .unwrap_or(default_time);
    Ok(block_event(kind, inside, ip, range, time))
}

/// `application:none, IFACE SRC:port [NAT:port] -> DST:port [DNAT:port] (PROTO)`; the interface
/// may carry an escaped newline (`xe-3/1/1.0#012`).
fn jsession_from_text(rest: &str, close: bool) -> Result<Session, ParseError> {
    let toks = whitespace_tokens(rest);
    let arrow = toks
        .iter()
        .position(|t| *t == "->")
        .ok_or_else(|| err("session without ->"))?;
    let before = toks.get(..arrow).unwrap_or(&[]);
    let (src_tok, nat_tok) = match before {
        [.., s, n] if n.starts_with('[') => (*s, Some(*n)),
        [.., s] => (*s, None),
        [] => return Err(err("no source before ->")),
    };
    let (src, sport) =
        addr_port(src_tok, ':').ok_or_else(|| err(format!("bad source {src_tok:?}")))?;
    let (nat_src, nat_sport) = match nat_tok {
        Some(n) => {
            let inner = n.trim_start_matches('[').trim_end_matches(']');
            let (a, p) = addr_port(inner, ':').ok_or_else(|| err(format!("bad NAT {n:?}")))?;
            (Some(a), p)
        }
        None => (None, None),
    };
    let dst_tok = toks.get(arrow + 1).ok_or_else(|| err("no destination"))?;
    let (dst, dport) =
        addr_port(dst_tok, ':').ok_or_else(|| err(format!("bad destination {dst_tok:?}")))?;
    let protocol = toks
        .iter()
        .skip(arrow + 2)
        .find_map(|t| t.strip_prefix('(').and_then(|t| t.strip_suffix(')')))
        .and_then(protocol_number);
    Ok(Session {
        close,
        protocol,
        src: Some(src),
        sport,
        dst: Some(dst),
        dport,
        nat_src,
        nat_sport,
        ..Session::default()
    })
}

/// ScreenOS traffic log (`system-notification-00257(traffic)`).
fn screenos(body: &str, ctx: &ParseCtx, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    const TRAFFIC: &str = "-00257(traffic):";
    let at = body
        .find(TRAFFIC)
        .ok_or_else(|| err("ScreenOS message is not a traffic log (system-notification-00257)"))?;
    let kv = body.get(at + TRAFFIC.len()..).unwrap_or("");
    // "src-xlated ip=… port=…" and "dst-xlated ip=… port=…" reuse the keys ip / port.
    let (main, xl) = match kv.find("src-xlated ") {
        Some(i) => (kv.get(..i).unwrap_or(""), kv.get(i..).unwrap_or("")),
        None => (kv, ""),
    };
    let (sx, dx) = match xl.find("dst-xlated ") {
        Some(i) => (xl.get(..i).unwrap_or(""), xl.get(i..).unwrap_or("")),
        None => (xl, ""),
    };
    let p = quoted_params(main);
    let sxp = quoted_params(sx);
    let tail = quoted_params(dx);
    let protocol = param(&p, "proto").and_then(parse_u8);
    let src = ip_field(&p, "src")?.ok_or_else(|| err("ScreenOS traffic log without src"))?;
    let start = param(&p, "start_time")
        .and_then(parse_iso_prefix)
        .and_then(|(ts, _)| ts.to_micros(ctx.clock()))
        .ok_or_else(|| err("ScreenOS traffic log without a start_time"))?;
    let duration = param(&p, "duration")
        .and_then(parse_u64)
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0);
    let action = param(&p, "action").unwrap_or("");
    if action.eq_ignore_ascii_case("Deny") || action.eq_ignore_ascii_case("Reject") {
        out.push(Event::Firewall(FirewallEvent {
            time: start,
            action: FirewallAction::Deny,
            rule: param(&p, "policy_id").map(|v| format!("policy_id={v}")),
            protocol,
            src_ip: Some(src),
            src_port: port_for(protocol, port_field(&p, "src_port")?),
            dst_ip: ip_field(&p, "dst")?,
            dst_port: port_for(protocol, port_field(&p, "dst_port")?),
            in_if: None,
            out_if: None,
            length: None,
            vrf: None,
        }));
        return Ok(1);
    }
    let reason = param(&tail, "reason")
        .or_else(|| param(&sxp, "reason"))
        .or_else(|| param(&p, "reason"))
        .unwrap_or("");
    // Without "reason=Creation" a traffic log is written when the session ends.
    let close = !reason.eq_ignore_ascii_case("Creation");
    let end = start.saturating_add(duration.saturating_mul(MICROS_PER_SEC));
    let s = Session {
        close,
        protocol,
        src: Some(src),
        sport: port_field(&p, "src_port")?,
        dst: ip_field(&p, "dst")?,
        dport: port_field(&p, "dst_port")?,
        nat_src: ip_field(&sxp, "ip")?,
        nat_sport: port_field(&sxp, "port")?,
        bytes_out: param(&p, "sent").and_then(parse_u64),
        bytes_in: param(&p, "rcvd").and_then(parse_u64),
        elapsed: close.then_some(duration),
        time: Some(if close { end } else { start }),
        ..Session::default()
    };
    out.push(s.into_event(start));
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_rejects, ip, nat, one_auto, utc_ctx};
    use super::super::util::{civil_micros, test_corpus};
    use super::super::{Format, parse_message};
    use super::*;

    #[test]
    fn looks_like_marks_hold_an_underscore() {
        for (mark, k) in MARKS {
            assert_eq!(mark.find('_'), Some(k), "{mark}");
        }
        let marks: Vec<&str> = MARKS.iter().map(|(m, _)| *m).collect();
        let mut want: Vec<&str> = FAMILIES.to_vec();
        want.push("NetScreen device_id=");
        assert_eq!(marks, want);
        // Against a search for each mark, on the corpus and on marks cut, shifted and
        // pushed past the first 160 bytes.
        let by_search = |body: &str| {
            let h = head(body, 160);
            marks.iter().any(|m| h.contains(m))
        };
        let mut lines: Vec<String> = Vec::new();
        for name in [
            "juniper.txt",
            "cisco_asa.txt",
            "iptables.txt",
            "syslog_edge.txt",
        ] {
            lines.extend(test_corpus::samples(name).into_iter().map(|s| s.line));
        }
        for m in &marks {
            for pad in [0, 1, 2, 9, 16, 150, 155, 158, 159, 160] {
                let p = "_".repeat(pad % 3) + &"x".repeat(pad - pad % 3);
                lines.push(format!("{p}{m} rest"));
                lines.push(format!("{p}{}", &m[..m.len() - 1]));
                lines.push(format!("{p}_{m}_"));
            }
        }
        for l in &lines {
            assert_eq!(looks_like(l), by_search(l), "{l:?}");
        }
    }

    #[test]
    fn families_start_with_the_bytes_structured_tail_checks() {
        for f in FAMILIES {
            assert!(
                matches!(f.as_bytes().first(), Some(b'R' | b'J' | b'M')),
                "{f}"
            );
        }
    }

    #[test]
    fn session_params_read_like_the_list() {
        for (i, k) in SESSION_KEYS.iter().enumerate() {
            assert_eq!(SessionParams::slot(k), Some(i), "{k}");
        }
        // First occurrence wins even when it is a null placeholder; values are trimmed.
        let sd = r#"junos@2636.1.1.1.2.40 source-address="N/A" source-address="10.0.0.1" source-port=" 40000 " nat-source-port="1\"2" routing-instance="default" src-vrf-grp="blue" other="x"]"#;
        let list = quoted_params(sd);
        let fast = SessionParams::scan(sd);
        for k in SESSION_KEYS {
            assert_eq!(Lookup::get(&fast, k), Lookup::get(&list, k), "{k}");
        }
        // Keys a session does not read are not kept.
        assert_eq!(Lookup::get(&list, "other"), Some("x"));
        assert_eq!(Lookup::get(&fast, "other"), None);
        assert_eq!(Lookup::get(&fast, "source-address"), None);
        assert_eq!(Lookup::get(&fast, "source-port"), Some("40000"));
        assert_eq!(Lookup::get(&fast, "nat-source-port"), Some(r#"1\"2"#));
        // routing-instance "default" names no VRF, and it shadows src-vrf-grp.
        assert_eq!(vrf_field(&fast), vrf_field(&list));
        assert_eq!(vrf_field(&fast), None);
    }

    #[test]
    fn starts_with_key_agrees_with_starts_with() {
        let keys = [
            "a",
            "abc",
            "roles",
            "reason",
            "abcdefg",
            "username",
            "source-port",
            "destination-port",
            "src-nat-rule-type",
            "packet-incoming-interface",
            "application-characteristics",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0",
        ];
        for k in keys {
            for cut in 0..=k.len() + 2 {
                let mut h = k.as_bytes().to_vec();
                h.truncate(cut);
                h.extend_from_slice(b"=x");
                assert_eq!(
                    starts_with_key(&h, k.as_bytes()),
                    h.starts_with(k.as_bytes()),
                    "{k} {cut}"
                );
                // One byte changed anywhere.
                for at in 0..k.len().min(h.len()) {
                    let mut g = h.clone();
                    g[at] ^= 0x20;
                    assert_eq!(
                        starts_with_key(&g, k.as_bytes()),
                        g.starts_with(k.as_bytes()),
                        "{k} {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn session_scan_reads_like_quoted_params() {
        // ORDER names each key once, with the slot SESSION_KEYS gives it, in text where
        // QuotedParams cannot stop before the `=`.
        for (n, (k, slot)) in ORDER.iter().enumerate() {
            assert_eq!(order_index(k), Some(n), "{k}");
            assert_eq!(*slot, SessionParams::slot(k), "{k}");
            assert!(
                k.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                "{k}"
            );
        }
        for k in SESSION_KEYS {
            assert!(ORDER.iter().any(|(o, _)| *o == k), "{k}");
        }
        // What QuotedParams keeps for a key: its first value, untrimmed.
        fn first<'a>(list: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
            list.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
        let check = |sd: &str| {
            let list = quoted_params(sd);
            let fast = SessionParams::scan(sd);
            for (i, k) in SESSION_KEYS.iter().enumerate() {
                assert_eq!(fast.slots[i], first(&list, k), "{k} in {sd:?}");
            }
        };
        // Random text over the bytes that steer the walk, whole keys (kept, known and
        // unknown) and the pieces they are made of.
        let pieces = [
            " ",
            " ",
            "=",
            "\"",
            "\"",
            "\\",
            "]",
            "[",
            "a",
            "-",
            "é",
            "N/A",
            "junos@2636.1",
            "source-address",
            "source-port",
            "nat-source-port",
            "src-vrf-grp",
            "reason",
            "session-id",
            "session-id-32",
            "source",
            "address",
            "=\"",
            "\" ",
            "x=",
        ];
        let mut seed = 2_463_534_242u32;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = seed as usize % 24;
            let mut sd = String::new();
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                sd.push_str(pieces[seed as usize % pieces.len()]);
            }
            check(&sd);
        }
        // Parameter lists in ORDER with keys left out, unknown keys, bare words, unquoted,
        // empty, escaped and unterminated values, and bytes the walk stops at.
        let values = [
            "\"1.2.3.4\"",
            "\"\"",
            "\"a\\\"b\"",
            "\"a\\\\\"",
            "7",
            "\"x]\"",
            "\"open",
            "v]",
            "\"é\"",
        ];
        let noise = [
            " ",
            "  ",
            "]",
            "=",
            "\"",
            "junos@2636 ",
            "other=\"o\" ",
            "x ",
            "é ",
        ];
        for _ in 0..100_000 {
            let mut sd = String::new();
            let mut n = 0;
            loop {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                n += 1 + (seed % 3) as usize / 2 + usize::from(seed.is_multiple_of(17)) * 5;
                let Some((k, _)) = ORDER.get(n % 48) else {
                    if n > 48 {
                        break;
                    }
                    continue;
                };
                if seed.is_multiple_of(13) {
                    sd.push_str(noise[(seed >> 8) as usize % noise.len()]);
                }
                if seed.is_multiple_of(11) {
                    sd.push_str(&k[..k.len() / 2]);
                } else {
                    sd.push_str(k);
                }
                sd.push('=');
                sd.push_str(values[(seed >> 12) as usize % values.len()]);
                sd.push(' ');
            }
            check(&sd);
        }
        // The corpus's structured elements.
        for smp in test_corpus::samples("juniper.txt") {
            if let Some(at) = smp.line.find(" [") {
                check(&smp.line[at + 2..]);
            }
        }
    }

    fn ctx() -> ParseCtx {
        utc_ctx(civil_micros(2026, 7, 1, 0, 0, 0, 0).unwrap())
    }

    fn one(line: &str, c: &ParseCtx) -> Event {
        one_auto(line, c, "juniper")
    }

    #[test]
    fn rfc5424_structured_create_with_nat_and_vrf() {
        let line = r#"<14>1 2024-06-15T12:00:00.500+02:00 srx1 RT_FLOW - RT_FLOW_SESSION_CREATE [junos@2636.1.1.1.2.40 source-address="100.64.1.2" source-port="40000" destination-address="198.51.100.7" destination-port="443" service-name="junos-https" nat-source-address="203.0.113.9" nat-source-port="1025" nat-destination-address="198.51.100.7" nat-destination-port="443" src-nat-rule-name="r1" protocol-id="6" policy-name="p" routing-instance="CUST-A" session-id-32="1"] session created"#;
        let e = nat(one(line, &ctx()));
        assert_eq!(e.event, Some(NatEventKind::SessionCreate));
        assert_eq!(
            e.time,
            civil_micros(2024, 6, 15, 10, 0, 0, 500_000).unwrap()
        );
        assert_eq!((e.src_ip, e.src_port), (ip("100.64.1.2"), Some(40000)));
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.9"), Some(1025)));
        assert_eq!((e.dst_ip, e.dst_port), (ip("198.51.100.7"), Some(443)));
        assert_eq!((e.protocol, e.vrf.as_deref()), (Some(6), Some("CUST-A")));
        // IPv6 source (NAT64): the inside side is v6, the public side v4.
        let line6 = line
            .replace("100.64.1.2", "2001:db8:1::2")
            .replace(" routing-instance=\"CUST-A\"", "");
        let e = nat(one(&line6, &ctx()));
        assert_eq!((e.src_ip, e.vrf), (ip("2001:db8:1::2"), None));
    }

    #[test]
    fn screenos_header_is_read_at_the_start_only() {
        // The phrase in a session's values, past where ScreenOS prints its header, leaves the
        // line an RT_FLOW session.
        let line = r#"<14>1 2024-06-15T12:00:00.500+02:00 srx1 RT_FLOW - RT_FLOW_SESSION_CREATE [junos@2636.1.1.1.2.40 source-address="100.64.1.2" source-port="40000" destination-address="198.51.100.7" destination-port="443" nat-source-address="203.0.113.9" nat-source-port="1025" protocol-id="6" policy-name="NetScreen device_id=x"]"#;
        let e = nat(one(line, &ctx()));
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.9"), Some(1025)));
    }

    #[test]
    fn bsd_close_with_counters_and_nat() {
        let line = "<14>Jun 15 11:59:00 srx1 RT_FLOW: RT_FLOW_SESSION_CLOSE: session closed TCP FIN: 100.64.0.9/5000->198.51.100.1/80 junos-http 203.0.113.4/61000->198.51.100.1/80 source rule r1 N/A N/A 6 allow trust untrust 77 10(1000) 20(30000) 45 UNKNOWN UNKNOWN N/A(N/A) ge-0/0/1.0 UNKNOWN";
        let c = ParseCtx {
            recv_time: civil_micros(2024, 6, 15, 12, 0, 0, 0).unwrap(),
            zone: crate::time::Zone::Fixed(3600),
        };
        let e = nat(one(line, &c));
        let t = civil_micros(2024, 6, 15, 10, 59, 0, 0).unwrap();
        assert_eq!((e.time, e.end_time), (t, Some(t)));
        assert_eq!(e.event, Some(NatEventKind::SessionDelete));
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.4"), Some(61000)));
        assert_eq!(
            (e.packets_out, e.bytes_out, e.packets_in, e.bytes_in),
            (Some(10), Some(1000), Some(20), Some(30000))
        );
    }

    #[test]
    fn port_blocks_all_forms() {
        let c = ctx();
        // MS-MPC port blocks with a hex epoch; NAT64 inside address.
        let e = nat(one(
            "<14>Jul  1 00:00:00 mx1 (FPC Slot 2, PIC Slot 0) {CGN}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK_ALLOC: 2001:db8::5 -> 203.0.113.1:1024-1151 0x6a44007a",
            &c,
        ));
        assert_eq!(e.event, Some(NatEventKind::PortBlockAlloc));
        assert_eq!(e.src_ip, ip("2001:db8::5"));
        assert_eq!(
            (e.x_ip, e.x_port, e.x_port_end),
            (ip("203.0.113.1"), Some(1024), Some(1151))
        );
        assert_eq!(e.time, 0x6a44007a * MICROS_PER_SEC);
        for (tag, kind) in [
            ("RELEASE", NatEventKind::PortBlockRelease),
            ("ACTIVE", NatEventKind::PortBlockInterim),
        ] {
            let e = nat(one(
                &format!(
                    "JSERVICES_NAT_PORT_BLOCK_{tag}: 100.64.0.1 -> 203.0.113.1:2048-2175 0x6a440100"
                ),
                &c,
            ));
            assert_eq!(e.event, Some(kind));
        }
        // Without an epoch the envelope's time stands; the message tag was the syslog TAG.
        let e = nat(one(
            "<14>Jul  1 00:00:05 mx1 JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.0.1 -> 203.0.113.1:2048-2175",
            &c,
        ));
        assert_eq!(e.time, civil_micros(2026, 7, 1, 0, 0, 5, 0).unwrap());
        assert_eq!(e.x_port_end, Some(2175));
    }

    #[test]
    fn jservices_sessions_with_and_without_nat() {
        let c = ctx();
        let e = nat(one(
            "{sset1}[jservices-nat]: JSERVICES_SESSION_OPEN: application:none, xe-0/0/0.0 100.64.0.7:5353 [203.0.113.2:4000] -> 198.51.100.9:53 (UDP)",
            &c,
        ));
        assert_eq!(
            (e.event, e.src_port, e.x_port, e.protocol),
            (
                Some(NatEventKind::SessionCreate),
                Some(5353),
                Some(4000),
                Some(17)
            )
        );
        let Event::Flow(f) = one(
            "JSERVICES_SESSION_CLOSE: application:none, xe-0/0/0.0 198.51.100.2:5353 -> 198.51.100.9:53 (UDP)",
            &c,
        ) else {
            panic!("untranslated session is a flow")
        };
        assert_eq!(
            (f.src_ip, f.end_time),
            (ip("198.51.100.2"), Some(c.recv_time))
        );
    }

    #[test]
    fn rejects_with_reasons() {
        let c = ctx();
        assert_rejects(
            Format::Juniper,
            &c,
            [
                (
                    "RT_FLOW - FLOW_MCAST_RPF_FAIL [junos@2636 source-address=\"1.1.1.1\"]",
                    "no Junos message tag",
                ),
                (
                    "{s}[jservices-nat]: JSERVICES_NAT_RULE_MATCH: proto 17 (UDP)",
                    "JSERVICES_NAT_RULE_MATCH carries no NAT",
                ),
                (
                    "RT_FLOW - RT_FLOW_SESSION_CREATE [junos@2636 source-address=\"10.0.0.x\"]",
                    "bad source-address",
                ),
                (
                    "RT_NAT - RT_SRC_NAT_PBA_ALLOC [internal-ip=\"10.0.0.1\" block-port-low=\"2\" block-port-high=\"1\" reflexive-ip=\"203.0.113.1\"]",
                    "block-port-low 2 > block-port-high 1",
                ),
                (
                    "NetScreen device_id=x [Root]system-information-00767: System configuration saved",
                    "not a traffic log",
                ),
            ],
        );
    }

    /// Every line of juniper.txt through auto-detection, with the sources' expectations.
    #[test]
    fn corpus_juniper() {
        let c = ctx();
        let (mut parsed, mut rejected, mut checked) = (0, Vec::new(), 0);
        for smp in test_corpus::samples("juniper.txt") {
            let mut out = Vec::new();
            let ev = match parse_message(smp.line.as_bytes(), Format::Auto, &c, &mut out) {
                Ok(p) => {
                    assert_eq!(p.format, "juniper", "line {}", smp.line_no);
                    parsed += 1;
                    out.pop().unwrap()
                }
                Err(e) => {
                    rejected.push((smp.line_no, e.reason));
                    continue;
                }
            };
            let line = smp.line.as_str();
            // The annotations directly above the line first, then the rest of its block (the
            // PBA release line's own note names only what differs from the allocation).
            let direct = smp.comments.join(" ");
            let block = smp.block.join(" ");
            let note = format!("{direct} {block}");
            let v = |k: &str| {
                test_corpus::annotation_value(&direct, k)
                    .or_else(|| test_corpus::annotation_value(&block, k))
            };
            let vip = |k: &str| v(k).and_then(|a| a.parse::<IpAddr>().ok());
            let vn = |k: &str| v(k).and_then(|a| a.parse::<u64>().ok());
            match ev {
                Event::Flow(f) if note.contains("src-ip=") => {
                    // logstash's junos_spec: nat-src equals src, so no translation is stated.
                    assert_eq!(vip("nat-src-ip"), vip("src-ip"));
                    assert_eq!(f.src_ip, vip("src-ip"), "line {}", smp.line_no);
                    assert_eq!(f.src_port.map(u64::from), vn("src-port"));
                    assert_eq!(f.dst_ip, vip("dst-ip"));
                    assert_eq!(f.dst_port.map(u64::from), vn("dst-port"));
                    assert_eq!(f.protocol.map(u64::from), vn("protocol-id"));
                    if let Some(el) = vn("elapsed-time") {
                        // 6657 + 13305 bytes, 45 s before the close.
                        assert_eq!(f.bytes, Some(vn("sent").unwrap() + vn("received").unwrap()));
                        assert_eq!(
                            f.end_time.unwrap() - f.time,
                            i64::try_from(el).unwrap() * MICROS_PER_SEC
                        );
                    }
                    checked += 5;
                }
                Event::Firewall(fw) => {
                    assert_eq!(fw.action, FirewallAction::Deny, "line {}", smp.line_no);
                    if note.contains("src-ip=") {
                        assert_eq!(fw.src_ip, vip("src-ip"));
                        assert_eq!(fw.dst_ip, vip("dst-ip"));
                        assert_eq!(fw.src_port.map(u64::from), vn("src-port"));
                        assert_eq!(fw.dst_port.map(u64::from), vn("dst-port"));
                        assert_eq!(fw.protocol.map(u64::from), vn("protocol-id"));
                        // annotation_value drops a trailing ')' ("default-deny(global)").
                        assert_eq!(
                            fw.rule.as_deref().map(|r| r.trim_end_matches(')')),
                            v("policy-name").as_deref()
                        );
                        checked += 6;
                    }
                    if line.contains("RT_FLOW_SESSION_DENY [") {
                        assert_eq!(fw.rule.as_deref(), Some("Local-Default-Deny"));
                        assert_eq!(fw.in_if.as_deref(), Some("intf2.302"));
                        checked += 2;
                    }
                }
                Event::Nat(n) if line.contains("_PBA_") => {
                    let kind = if line.contains("PBA_ALLOC") {
                        NatEventKind::PortBlockAlloc
                    } else if line.contains("PBA_RELEASE") {
                        NatEventKind::PortBlockRelease
                    } else {
                        NatEventKind::PortBlockInterim
                    };
                    assert_eq!(n.event, Some(kind), "line {}", smp.line_no);
                    let (inside, public, lo, hi, epoch) = if line.contains("Subscriber") {
                        ("subscriber", "public_ip", "port_start", "port_end", "epoch")
                    } else {
                        (
                            "internal-ip",
                            "reflexive-ip",
                            "block-port-low",
                            "block-port-high",
                            "epoch-time-64",
                        )
                    };
                    assert_eq!(n.src_ip, vip(inside), "line {}", smp.line_no);
                    assert_eq!(n.x_port.map(u64::from), vn(lo));
                    assert_eq!(n.x_port_end.map(u64::from), vn(hi));
                    assert_eq!(n.x_ip, vip(public));
                    // The block's own epoch (hex seconds) wins over the envelope.
                    let hex = v(epoch).unwrap();
                    let secs = i64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap();
                    assert_eq!(n.time, secs * MICROS_PER_SEC, "line {}", smp.line_no);
                    assert_eq!(n.src_port, None);
                    checked += 6;
                }
                Event::Nat(n) => {
                    assert!(
                        matches!(
                            n.event,
                            Some(NatEventKind::SessionCreate | NatEventKind::SessionDelete)
                        ),
                        "line {}",
                        smp.line_no
                    );
                    // Each source line names the translated source; read it independently.
                    let (x, xp) = if let Some(x) = v("nat-src") {
                        let (a, p) = x.rsplit_once(':').unwrap();
                        (a.parse().ok(), p.parse().ok())
                    } else if let Some(x) = v("nat.src") {
                        let (a, p) = x.rsplit_once(':').unwrap();
                        (a.parse().ok(), p.parse().ok())
                    } else if line.contains("source.nat.ip") || note.contains("source.nat.ip") {
                        (
                            vip("source.nat.ip"),
                            vn("source.nat.port").map(|p| p as u16),
                        )
                    } else {
                        let p = quoted_params(line.split_once('[').unwrap().1);
                        (
                            param(&p, "nat-source-address").and_then(|a| a.parse().ok()),
                            param(&p, "nat-source-port").and_then(|a| a.parse().ok()),
                        )
                    };
                    assert_eq!(n.x_ip, x, "line {}", smp.line_no);
                    if n.protocol != Some(1) {
                        assert_eq!(n.x_port, xp, "line {}", smp.line_no);
                    }
                    assert!(n.x_ip.is_some() && (n.x_ip != n.src_ip || n.x_port != n.src_port));
                    checked += 2;
                    if note.contains("source.address=") {
                        assert_eq!(n.src_ip, vip("source.address"));
                        assert_eq!(n.src_port.map(u64::from), vn("source.port"));
                        assert_eq!(n.dst_ip, vip("destination.address"));
                        // start_time "2015-11-11 10:02:10" at the device's offset (0 here).
                        assert_eq!(n.time, civil_micros(2015, 11, 11, 10, 2, 10, 0).unwrap());
                        assert_eq!(n.event, Some(NatEventKind::SessionCreate));
                        checked += 5;
                    }
                    if line.contains("RT_FLOW_SESSION_CLOSE [reason=\"TCP FIN\"") {
                        assert_eq!(
                            (n.bytes_out, n.bytes_in),
                            (Some(34501936), Some(1079262436))
                        );
                        assert_eq!(n.end_time, Some(n.time));
                        checked += 2;
                    }
                }
                other => panic!("line {}: unexpected {other:?}", smp.line_no),
            }
        }
        // 2 logstash RT_FLOW create/close (flows) + 1 deny; wazuh structured deny; 2 wazuh
        // decoder-comment RT_FLOW lines; 1 ScreenOS NAT + 2 ScreenOS denies; 1 MX PBA (BSD);
        // 3 SRX PBA + 2 SRX RT_FLOW (cgn-ec); 2 MSVCS sessions; 1 RT_SCREEN_IP drop.
        assert_eq!(parsed, 18, "parsed; rejected: {rejected:?}");
        // 3 ScreenOS system messages + the SYN-flood alarm, FLOW_MCAST_RPF_FAIL, two
        // JSERVICES_NAT_RULE_MATCH lines and the RULE_MATCH continuation "term t1".
        assert_eq!(rejected.len(), 8, "{rejected:?}");
        assert!(checked >= 60, "checked {checked}");
    }
}
