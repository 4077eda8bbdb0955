//! Linux conntrack text: `conntrack -E [-o timestamp,extended,id]` event lines, `conntrack -L`
//! and `/proc/net/nf_conntrack` listing lines, and the old bracket-less `NEW tcp 120 …` form.
//!
//! ```text
//! [1700000000.123456]    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.0.2 dst=198.51.100.7 sport=40000 dport=443 [UNREPLIED] src=198.51.100.7 dst=203.0.113.5 sport=443 dport=1025 zone=3
//! ```
//!
//! Mapping (source NAT is what attribution needs):
//! - the ORIGINAL tuple is the inside view: `src_ip:src_port → dst_ip:dst_port`;
//! - the public side is the REPLY tuple's destination: `x_ip = reply.dst`, `x_port = reply.dport`
//!   — replies travel to the translated address. Without source NAT the reply goes back to the
//!   original source, so the same rule yields `x = original src:sport`: the host's own address is
//!   its public address. That is deliberate: the event is still evidence of who used the address.
//!   `direction` is "out" only when a source translation is visible.
//! - Inbound destination NAT (a port forward): no source translation, the reply comes from
//!   another address or port than the original was sent to (`reply.src:sport ≠ orig.dst:dport`),
//!   and the original sender is a global address. A second event then has the ORIGINAL
//!   destination as the public side and the reply's source as the inside host:
//!   `x = orig.dst:dport`, `src = reply.src:sport`, `dst = orig.src:sport` (the remote),
//!   `direction = "in"`, counters seen from the inside host — else a question about the
//!   forwarded public port would find nothing. The first event (the sender at its own address)
//!   is kept: conntrack cannot tell a port forward from a subscriber with a public address being
//!   redirected (DNS to the ISP's resolver, a captive portal), who must still be found by its own
//!   address. A sender in private, shared (100.64/10), loopback or link-local space is a
//!   subscriber being redirected (a transparent proxy, `REDIRECT`): the first event only.
//! - `[NEW]` → SessionCreate, `[DESTROY]` → SessionDelete. `[UPDATE]` lines are validated but
//!   produce no event: the mapping is fixed when the entry is created, and UPDATE only reports
//!   state changes (SYN_RECV, ESTABLISHED, FIN_WAIT …) that would multiply rows 3–5× per TCP
//!   session without adding attribution evidence.
//! - Listing lines (no event tag) are snapshots: MappingObserved without `end_time` (a
//!   sighting: held then, its end not known).
//! - `packets=`/`bytes=` of the original direction are `*_out`, of the reply `*_in`.
//! - `zone=N` becomes `vrf = "N"`; zone 0 is the default zone and maps to None, so /proc lines
//!   (which always print `zone=0`) and `conntrack -E` lines (which omit it) agree.
//! - ICMP tuples carry `type= code= id=` instead of ports: ports stay None.
//! - The `[sec.usec]` prefix of `-o timestamp` is the event time; without it the caller's
//!   default applies.

use crate::model::{Event, Micros, NatEvent, NatEventKind};
use std::net::IpAddr;

use super::ParseError;
use super::util::{
    MICROS_PER_SEC, ascii_words, digits_at, dotted_quad_at, find_any, fraction_micros, is_split_ws,
    parse_ip, parse_u8, parse_u64, trim_start_ws, trim_ws, word_end,
};

const FORMAT: &str = "conntrack";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// What a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CtKind {
    New,
    Update,
    Destroy,
    /// `-L` / `/proc` listing: no event tag.
    Listing,
}

impl CtKind {
    pub(crate) fn from_tag(tag: &str) -> Option<Self> {
        // The exact forms first (what the bracket or the token holds in practice): the
        // general path's trims cost more than the compare.
        match tag.as_bytes() {
            b"NEW" => return Some(CtKind::New),
            b"UPDATE" => return Some(CtKind::Update),
            b"DESTROY" => return Some(CtKind::Destroy),
            _ => {}
        }
        let t = tag.trim().trim_start_matches('[').trim_end_matches(']');
        if t.eq_ignore_ascii_case("NEW") {
            Some(CtKind::New)
        } else if t.eq_ignore_ascii_case("UPDATE") {
            Some(CtKind::Update)
        } else if t.eq_ignore_ascii_case("DESTROY") {
            Some(CtKind::Destroy)
        } else {
            None
        }
    }
}

/// One direction of a conntrack entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

/// The NAT events of a NEW / DESTROY / listing entry, pushed to `out` (see the module doc for
/// the rules): one, or two for a destination NAT from a global address. Shared with the JSON
/// form. Pushes nothing for UPDATE; returns how many it pushed.
pub(crate) fn push_events(
    kind: CtKind,
    protocol: Option<u8>,
    orig: &Tuple,
    reply: &Tuple,
    zone: Option<u32>,
    time: Micros,
    out: &mut Vec<Event>,
) -> usize {
    let event = match kind {
        CtKind::New => NatEventKind::SessionCreate,
        CtKind::Destroy => NatEventKind::SessionDelete,
        CtKind::Listing => NatEventKind::MappingObserved,
        CtKind::Update => return 0,
    };
    let vrf = || zone.filter(|z| *z != 0).map(|z| z.to_string());
    let translated = reply.dst != orig.src || reply.dport != orig.sport;
    let forwarded = reply.src != orig.dst || reply.sport != orig.dport;
    let mut n = 0;
    if !translated && forwarded && orig.src.is_some_and(|a| !is_local_scope(a)) {
        out.push(Event::Nat(NatEvent {
            time,
            event: Some(event),
            protocol,
            src_ip: reply.src,
            src_port: reply.sport,
            x_ip: orig.dst,
            x_port: orig.dport,
            x_port_end: None,
            dst_ip: orig.src,
            dst_port: orig.sport,
            vrf: vrf(),
            direction: Some("in"),
            end_time: None,
            bytes_out: reply.bytes,
            bytes_in: orig.bytes,
            packets_out: reply.packets,
            packets_in: orig.packets,
        }));
        n += 1;
    }
    // The sender's own view too, also beside a forward: a subscriber with a public address
    // whose traffic is redirected (DNS to the ISP's resolver, a captive portal) is still
    // found by its own address and port. Beside a forward it carries no counters: the traffic
    // views would count the session's bytes twice.
    let counted = n == 0;
    out.push(Event::Nat(NatEvent {
        time,
        event: Some(event),
        protocol,
        src_ip: orig.src,
        src_port: orig.sport,
        x_ip: reply.dst,
        x_port: reply.dport,
        x_port_end: None,
        dst_ip: orig.dst,
        dst_port: orig.dport,
        vrf: vrf(),
        direction: translated.then_some("out"),
        end_time: None,
        bytes_out: orig.bytes.filter(|_| counted),
        bytes_in: reply.bytes.filter(|_| counted),
        packets_out: orig.packets.filter(|_| counted),
        packets_in: reply.packets.filter(|_| counted),
    }));
    n + 1
}

/// Addresses a subscriber or a local service uses, never a remote on the Internet: RFC 1918,
/// shared (RFC 6598), loopback, link-local, unspecified, IPv6 unique-local.
fn is_local_scope(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_scope(IpAddr::V4(v4)),
            None => {
                let s0 = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (s0 & 0xfe00) == 0xfc00
                    || (s0 & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Layer-4 protocol names as libnetfilter_conntrack prints them. "unknown" is followed by the
/// number; it yields `Some(None)`.
/// The numbers are `protocol_number`'s (`l4_names_number_as_protocol_number_does`), written out:
/// looking the name up again cost ~100 instructions per line.
pub(crate) fn l4_name(tok: &str) -> Option<Option<u8>> {
    Some(Some(match tok {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        "udplite" => 136,
        "sctp" => 132,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "igmp" => 2,
        "dccp" => 33,
        "unknown" => return Some(None),
        _ => return None,
    }))
}

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    let mut s = trim_start_ws(body);
    if s.starts_with('[')
        && let Some((inside, after)) = bracket(s)
        && trim_start_ws(inside)
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_digit)
    {
        s = trim_start_ws(after);
    }
    let mut toks = ascii_words(s);
    let first = toks.next().unwrap_or("");
    let second = toks.next().unwrap_or("");
    let head_ok = CtKind::from_tag(first)
        .is_some_and(|_| first.starts_with('[') || l4_name(second).is_some())
        || first == "ipv4"
        || first == "ipv6"
        || l4_name(first).is_some();
    head_ok && s.contains("src=")
}

/// Parses one line, pushing at most one event. `default_time` is used when the line has no
/// `[timestamp]` of its own. Returns the number of events pushed.
pub fn parse(line: &str, default_time: Micros, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let mut s = trim_ws(line);
    if s.is_empty() {
        return Err(err("empty line"));
    }
    // `-o timestamp`: "[1700000000.123456]\t".
    let mut time = None;
    if s.starts_with('[')
        && let Some((inside, after)) = bracket(s)
        && trim_start_ws(inside)
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_digit)
    {
        time = Some(
            parse_event_stamp(inside).ok_or_else(|| err(format!("bad timestamp [{inside}]")))?,
        );
        s = trim_start_ws(after);
    }
    // Event tag: "[NEW]" (right-aligned in the output), or "NEW" in old versions.
    let mut kind = CtKind::Listing;
    if s.starts_with('[') {
        let (inside, after) = bracket(s).ok_or_else(|| err("unterminated '['"))?;
        kind =
            CtKind::from_tag(inside).ok_or_else(|| err(format!("unknown event tag [{inside}]")))?;
        s = after;
    } else if let Some((first, after)) = s.split_once(|c: char| c.is_ascii_whitespace())
        && let Some(k) = CtKind::from_tag(first)
    {
        kind = k;
        s = after;
    }
    let mut toks = ascii_words(s);
    let mut tok = toks
        .next()
        .ok_or_else(|| err("no protocol after event tag"))?;
    // `-o extended` / /proc: "ipv4     2" before the layer-4 protocol.
    if tok == "ipv4" || tok == "ipv6" {
        let _l3num = toks
            .next()
            .and_then(parse_u8)
            .ok_or_else(|| err("bad layer-3 protocol number"))?;
        tok = toks.next().ok_or_else(|| err("no layer-4 protocol"))?;
    }
    let named = l4_name(tok).ok_or_else(|| {
        err(format!(
            "unrecognised protocol {:?}",
            super::util::snippet(tok, 20)
        ))
    })?;
    // The number after the name; old versions print the timeout there instead, so a number
    // that disagrees with a known name is left for the field loop (which skips bare numbers).
    let protocol = match named {
        Some(n) => {
            let mut ahead = toks.clone();
            if ahead.next().and_then(parse_u8) == Some(n) {
                toks = ahead;
            }
            n
        }
        None => toks
            .next()
            .and_then(parse_u8)
            .ok_or_else(|| err("\"unknown\" protocol without its number"))?,
    };

    let fields = scan_fields(toks.rest())?;
    let (orig, reply) = (fields.orig, fields.reply);
    if orig.src.is_none() || orig.dst.is_none() {
        return Err(err("missing original tuple (src=/dst=)"));
    }
    if reply.src.is_none() || reply.dst.is_none() {
        return Err(err("missing reply tuple (second src=/dst=)"));
    }
    let time = time.unwrap_or(default_time);
    Ok(push_events(
        kind,
        Some(protocol),
        &orig,
        &reply,
        fields.zone,
        time,
        out,
    ))
}

/// The `key=` tokens [`scan_fields`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Src,
    Dst,
    Sport,
    Dport,
    Packets,
    Bytes,
    Zone,
}

struct Fields {
    orig: Tuple,
    reply: Tuple,
    zone: Option<u32>,
}

/// Walks `key=value` tokens (split as `str::split_ascii_whitespace` splits). The first `src=`
/// opens the original tuple, the second the reply tuple; counters belong to the tuple they
/// follow. Flags (`[ASSURED]`), the timeout, the TCP state and keys we do not use (`mark=`,
/// `use=`, `id=`, `secctx=` …) are skipped.
///
/// One pass over the bytes: a value is read in place (an address or a number, then a
/// separator or the end must follow) instead of finding each token's end first and reading
/// its bytes again; any other value takes the token and the general reader
/// (`scan_reads_like_the_token_walk` compares the two on the corpus and on mutations).
fn scan_fields(s: &str) -> Result<Fields, ParseError> {
    let b = s.as_bytes();
    let mut f = Fields {
        orig: Tuple::default(),
        reply: Tuple::default(),
        zone: None,
    };
    let mut in_reply = false;
    let mut in_bracket = false;
    let mut i = 0;
    loop {
        while b.get(i).is_some_and(|c| is_split_ws(*c)) {
            i += 1;
        }
        let Some(&first) = b.get(i) else {
            return Ok(f);
        };
        // "[start=Thu Nov 23 02:33:00 2025]" (-o ktimestamp) spans several tokens.
        if in_bracket || first == b'[' {
            let end = word_end(b, i);
            in_bracket = b.get(end - 1) != Some(&b']');
            i = end;
            continue;
        }
        // The keys we read, recognised by their prefix with the '=' (the key is what precedes
        // a token's first '='): one dispatch on the first byte, then a short compare, instead
        // of finding the '=' and matching the key text (~21 tokens a line).
        let t = b.get(i..).unwrap_or(&[]);
        let (key, n) = match first {
            b's' if t.starts_with(b"src=") => (Key::Src, 4),
            b's' if t.starts_with(b"sport=") => (Key::Sport, 6),
            b'd' if t.starts_with(b"dst=") => (Key::Dst, 4),
            b'd' if t.starts_with(b"dport=") => (Key::Dport, 6),
            b'p' if t.starts_with(b"packets=") => (Key::Packets, 8),
            b'b' if t.starts_with(b"bytes=") => (Key::Bytes, 6),
            b'z' if t.starts_with(b"zone=") => (Key::Zone, 5),
            b'z' if t.starts_with(b"zone-orig=") => (Key::Zone, 10),
            _ => {
                i = word_end(b, i);
                continue;
            }
        };
        let at = i + n;
        // The second src= opens the reply tuple.
        if key == Key::Src && (if in_reply { f.reply.src } else { f.orig.src }).is_some() {
            if in_reply {
                return Err(err("more than two tuples"));
            }
            in_reply = true;
        }
        let t = if in_reply { &mut f.reply } else { &mut f.orig };
        // A value ends at a separator or at the end of the line.
        let ends = |end: usize| b.get(end).is_none_or(|c| is_split_ws(*c));
        match key {
            Key::Src | Key::Dst => {
                let (ip, end) = match dotted_quad_at(b, at) {
                    Some((v4, end)) if ends(end) => (IpAddr::V4(v4), end),
                    _ => {
                        let end = word_end(b, at);
                        let v = s.get(at..end).unwrap_or("");
                        let ip = parse_ip(v).ok_or_else(|| {
                            let k = if key == Key::Src { "src" } else { "dst" };
                            err(format!("bad {k}={v}"))
                        })?;
                        (ip, end)
                    }
                };
                if key == Key::Src {
                    t.src = Some(ip);
                } else {
                    t.dst = Some(ip);
                }
                i = end;
            }
            _ => {
                let (v, end) = match digits_at(b, at) {
                    Some((v, end)) if ends(end) => (Some(v), end),
                    _ => {
                        let end = word_end(b, at);
                        (s.get(at..end).and_then(parse_u64), end)
                    }
                };
                let k = s.get(i..at - 1).unwrap_or("");
                let bad = || err(format!("bad {k}={}", s.get(at..end).unwrap_or("")));
                match key {
                    Key::Sport => {
                        t.sport = Some(v.and_then(|v| u16::try_from(v).ok()).ok_or_else(bad)?)
                    }
                    Key::Dport => {
                        t.dport = Some(v.and_then(|v| u16::try_from(v).ok()).ok_or_else(bad)?)
                    }
                    Key::Packets => t.packets = Some(v.ok_or_else(bad)?),
                    Key::Bytes => t.bytes = Some(v.ok_or_else(bad)?),
                    _ => f.zone = Some(v.and_then(|v| u32::try_from(v).ok()).ok_or_else(bad)?),
                }
                i = end;
            }
        }
    }
}

/// `[inside]rest` → (inside, rest).
fn bracket(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('[')?;
    // Eight bytes at a time: the `-o timestamp` stamp is 17 bytes, the char searcher's
    // set-up costs more than the scan, a byte loop 3 instructions a byte.
    let close = find_any(body.as_bytes(), [b']'])?;
    Some((body.get(..close)?, body.get(close + 1..)?))
}

/// The `-o timestamp` stamp. Current conntrack prints `%ld.%.6ld` (zero-padded µs); some old
/// builds printed `%-6ld` — µs left-aligned and space-padded, so "[1459848491.18004 ]" means
/// 18004 µs, not 0.18004 s. Trailing padding inside the bracket marks that form.
fn parse_event_stamp(inside: &str) -> Option<Micros> {
    // What current conntrack prints, read in place: seconds, a dot and six digits (the general
    // way below trimmed, searched and read each part again, ~150 instructions a line).
    let b = inside.as_bytes();
    if let Some((sec, dot)) = digits_at(b, 0)
        && b.get(dot) == Some(&b'.')
        && let Some((us, end)) = digits_at(b, dot + 1)
        && end == b.len()
        && end - dot == 7
    {
        return i64::try_from(sec)
            .ok()?
            .checked_mul(MICROS_PER_SEC)?
            .checked_add(i64::try_from(us).ok()?);
    }
    any_event_stamp(inside)
}

/// `parse_event_stamp` for every form it reads.
fn any_event_stamp(inside: &str) -> Option<Micros> {
    let t = trim_start_ws(inside);
    let padded = t.ends_with(|c: char| c.is_ascii_whitespace());
    let t = t.trim_end();
    let (sec, frac) = match t.bytes().position(|c| c == b'.') {
        Some(dot) => (t.get(..dot)?, t.get(dot + 1..)?),
        None => (t, ""),
    };
    let sec = i64::try_from(parse_u64(sec)?).ok()?;
    let us = if frac.is_empty() {
        0
    } else if padded {
        u32::try_from(parse_u64(frac)?)
            .ok()
            .filter(|v| *v < 1_000_000)?
    } else {
        fraction_micros(frac)?
    };
    sec.checked_mul(MICROS_PER_SEC)?.checked_add(i64::from(us))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip, nat, one_pushed};
    use super::super::util::test_corpus;
    use super::*;

    /// T0 stands for the caller's default time.
    fn one(line: &str) -> NatEvent {
        nat(one_pushed(line, |l, out| parse(l, T0, out)))
    }

    #[test]
    fn l4_names_number_as_protocol_number_does() {
        for name in [
            "tcp", "udp", "icmp", "icmpv6", "udplite", "sctp", "gre", "esp", "ah", "igmp",
        ] {
            assert_eq!(
                l4_name(name),
                Some(crate::model::protocol_number(name)),
                "{name}"
            );
            assert!(crate::model::protocol_number(name).is_some(), "{name}");
        }
        assert_eq!(l4_name("dccp"), Some(Some(33)));
        assert_eq!(l4_name("unknown"), Some(None));
        for other in ["TCP", "tcp ", "", "ipv4", "6"] {
            assert_eq!(l4_name(other), None, "{other:?}");
        }
    }

    #[test]
    fn timestamped_extended_new_with_snat() {
        let e = one(
            "[1700000000.123456]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.0.2 dst=198.51.100.7 sport=40000 dport=443 [UNREPLIED] src=198.51.100.7 dst=203.0.113.5 sport=443 dport=1025 zone=3 id=99",
        );
        assert_eq!(e.time, 1_700_000_000_123_456);
        assert_eq!(e.event, Some(NatEventKind::SessionCreate));
        assert_eq!(e.protocol, Some(6));
        assert_eq!((e.src_ip, e.src_port), (ip("100.64.0.2"), Some(40000)));
        assert_eq!((e.dst_ip, e.dst_port), (ip("198.51.100.7"), Some(443)));
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.5"), Some(1025)));
        assert_eq!(e.vrf.as_deref(), Some("3"));
        assert_eq!(e.direction, Some("out"));
        assert_eq!(e.end_time, None);
    }

    #[test]
    fn destroy_with_counters_and_ktimestamps() {
        let e = one(
            "[1700000100.000001]\t[DESTROY] udp      17 src=100.64.0.3 dst=198.51.100.53 sport=5353 dport=53 packets=2 bytes=120 src=198.51.100.53 dst=203.0.113.5 sport=53 dport=2000 packets=1 bytes=200 [ASSURED] mark=0 [start=Thu Nov 14 22:13:20 2023] [stop=Thu Nov 14 22:15:00 2023] delta-time=100 use=1",
        );
        assert_eq!(e.time, 1_700_000_100_000_001);
        assert_eq!(e.event, Some(NatEventKind::SessionDelete));
        assert_eq!(
            (e.packets_out, e.bytes_out, e.packets_in, e.bytes_in),
            (Some(2), Some(120), Some(1), Some(200))
        );
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.5"), Some(2000)));
    }

    #[test]
    fn update_is_validated_but_silent() {
        let mut out = Vec::new();
        let line = " [UPDATE] tcp      6 60 SYN_RECV src=100.64.0.2 dst=198.51.100.7 sport=40000 dport=443 src=198.51.100.7 dst=203.0.113.5 sport=443 dport=1025";
        assert_eq!(parse(line, T0, &mut out), Ok(0));
        assert!(out.is_empty());
        assert!(
            parse(
                " [UPDATE] tcp      6 60 SYN_RECV src=100.64.0.2",
                T0,
                &mut out
            )
            .is_err()
        );
    }

    #[test]
    fn no_nat_uses_own_address() {
        let e = one(
            "    [NEW] tcp      6 120 SYN_SENT src=198.51.100.20 dst=198.51.100.7 sport=5000 dport=22 [UNREPLIED] src=198.51.100.7 dst=198.51.100.20 sport=22 dport=5000",
        );
        assert_eq!((e.x_ip, e.x_port), (ip("198.51.100.20"), Some(5000)));
        assert_eq!(e.direction, None);
        assert_eq!(e.time, T0);
    }

    #[test]
    fn inbound_port_forward_sits_in_the_public_addresss_partition() {
        // Both events of a line: the forward's, then the sender's own.
        let two = |line: &str| -> (NatEvent, NatEvent) {
            let mut out = Vec::new();
            assert_eq!(parse(line, T0, &mut out), Ok(2), "{line}");
            let own = nat(out.pop().unwrap());
            (nat(out.pop().unwrap()), own)
        };
        // Remote 198.51.100.9 → public 203.0.113.5:8080, forwarded to 192.168.1.10:80.
        let (e, own) = two(
            "[1700000000.000001]\t[DESTROY] tcp      6 src=198.51.100.9 dst=203.0.113.5 sport=51000 dport=8080 packets=5 bytes=400 src=192.168.1.10 dst=198.51.100.9 sport=80 dport=51000 packets=4 bytes=9000 [ASSURED]",
        );
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.5"), Some(8080)));
        assert_eq!((e.src_ip, e.src_port), (ip("192.168.1.10"), Some(80)));
        assert_eq!((e.dst_ip, e.dst_port), (ip("198.51.100.9"), Some(51000)));
        assert_eq!(e.direction, Some("in"));
        assert_eq!(
            (e.bytes_out, e.bytes_in, e.packets_out, e.packets_in),
            (Some(9000), Some(400), Some(4), Some(5))
        );
        assert_eq!(e.time, own.time);
        // The sender at its own address, as without NAT, its counters on the forward only.
        assert_eq!((own.x_ip, own.x_port), (ip("198.51.100.9"), Some(51000)));
        assert_eq!((own.src_ip, own.direction), (ip("198.51.100.9"), None));
        assert_eq!(
            (own.bytes_out, own.bytes_in, own.packets_out),
            (None, None, None)
        );
        // Same port, only the address forwarded; and IPv6 (or a subscriber with a public IPv6
        // address whose DNS is redirected: still found at its own address and port).
        let (e, own) = two(
            "    [NEW] udp      17 30 src=2001:db8:9::1 dst=2001:db8:ff::1 sport=4000 dport=53 [UNREPLIED] src=2001:db8:aa::53 dst=2001:db8:9::1 sport=53 dport=4000",
        );
        assert_eq!((e.x_ip, e.x_port), (ip("2001:db8:ff::1"), Some(53)));
        assert_eq!(e.src_ip, ip("2001:db8:aa::53"));
        assert_eq!(e.direction, Some("in"));
        assert_eq!((own.x_ip, own.x_port), (ip("2001:db8:9::1"), Some(4000)));
        // A subscriber in private or shared space redirected to a local proxy is not a
        // port forward: its own address stays the public one.
        for src in ["10.0.0.160", "100.64.3.4", "127.0.0.1", "fd00::1"] {
            let (d, r) = if src.contains(':') {
                ("2001:db8::8", "fd00::fe")
            } else {
                ("198.51.100.8", "10.0.0.1")
            };
            let e = one(&format!(
                "    [NEW] tcp      6 120 SYN_SENT src={src} dst={d} sport=42174 dport=443 [UNREPLIED] src={r} dst={src} sport=3129 dport=42174"
            ));
            assert_eq!((e.x_ip, e.x_port), (ip(src), Some(42174)), "{src}");
            assert_eq!(e.direction, None, "{src}");
        }
        // Source and destination NAT both (hairpin): the source translation decides.
        let e = one(
            "    [NEW] tcp      6 120 SYN_SENT src=198.51.100.9 dst=203.0.113.5 sport=51000 dport=8080 [UNREPLIED] src=192.168.1.10 dst=192.168.1.1 sport=80 dport=61000",
        );
        assert_eq!((e.x_ip, e.x_port), (ip("192.168.1.1"), Some(61000)));
        assert_eq!(e.direction, Some("out"));
    }

    #[test]
    fn ipv6_icmp_and_old_stamp_forms() {
        let e = one(
            "[1700000000.5]\t [NEW] ipv6     10 icmpv6   58 30 src=2001:db8::2 dst=2001:db8:1::1 type=128 code=0 id=7 [UNREPLIED] src=2001:db8:1::1 dst=2001:db8:ff::1 type=129 code=0 id=7",
        );
        assert_eq!(e.protocol, Some(58));
        assert_eq!((e.src_port, e.dst_port, e.x_port), (None, None, None));
        assert_eq!(e.x_ip, ip("2001:db8:ff::1"));
        assert_eq!(e.time, 1_700_000_000_500_000);
        // Space-padded microseconds from an old `%-6ld` build: 18004 µs.
        let e = one(
            "[1459848491.18004 ]\t [NEW] udp 17 30 src=100.64.0.9 dst=198.51.100.1 sport=1 dport=2 src=198.51.100.1 dst=203.0.113.9 sport=2 dport=3",
        );
        assert_eq!(e.time, 1_459_848_491_018_004);
        // "unknown" protocols print their number.
        let e = one(
            "unknown  47 599 src=100.64.0.9 dst=198.51.100.1 src=198.51.100.1 dst=203.0.113.9 mark=0 use=1",
        );
        assert_eq!(
            (e.protocol, e.event),
            (Some(47), Some(NatEventKind::MappingObserved))
        );
        // A listing line is a sighting: its end is not known.
        assert_eq!((e.time, e.end_time), (T0, None));
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for bad in [
            "",
            "garbage line",
            "[NEW] tcp 6 120 SYN_SENT src=100.64.0.1 dst=198.51.100.1 sport=1 dport=2",
            "[NEW] tcp 6 120 SYN_SENT src=100.64.0.999 dst=198.51.100.1 sport=1 dport=2 src=a dst=b",
            "[NEW] tcp 6 120 src=100.64.0.1 dst=198.51.100.1 sport=70000 dport=2 src=198.51.100.1 dst=100.64.0.1",
            "[BOGUS] tcp 6 src=1.1.1.1",
            "[1700000000.x] [NEW] tcp 6 src=1.1.1.1",
            "[NEW",
            "[NEW] ipv4 x tcp",
            "[NEW] unknown src=1.1.1.1",
            "[NEW] tcp 6 src=100.64.0.1 dst=198.51.100.1 src=198.51.100.1 dst=100.64.0.1 src=100.64.0.1",
        ] {
            assert!(
                parse(bad, T0, &mut out).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(out.is_empty());
    }

    /// The token walk `scan_fields` replaced: tokens first, then each value read whole.
    fn scan_by_tokens<'a>(
        toks: impl Iterator<Item = &'a str>,
    ) -> Result<(Tuple, Tuple, Option<u32>), ParseError> {
        use super::super::util::{parse_u16, parse_u32};
        let (mut orig, mut reply, mut zone) = (Tuple::default(), Tuple::default(), None);
        let (mut in_reply, mut in_bracket) = (false, false);
        for tok in toks {
            if in_bracket {
                in_bracket = !tok.ends_with(']');
                continue;
            }
            if tok.starts_with('[') {
                in_bracket = !tok.ends_with(']');
                continue;
            }
            let Some((k, v)) = tok.split_once('=') else {
                continue;
            };
            if !matches!(
                k,
                "src" | "dst" | "sport" | "dport" | "packets" | "bytes" | "zone" | "zone-orig"
            ) {
                continue;
            }
            if k == "src" && (if in_reply { reply.src } else { orig.src }).is_some() {
                if in_reply {
                    return Err(err("more than two tuples"));
                }
                in_reply = true;
            }
            let t = if in_reply { &mut reply } else { &mut orig };
            let bad = || err(format!("bad {k}={v}"));
            match k {
                "src" => t.src = Some(parse_ip(v).ok_or_else(bad)?),
                "dst" => t.dst = Some(parse_ip(v).ok_or_else(bad)?),
                "sport" => t.sport = Some(parse_u16(v).ok_or_else(bad)?),
                "dport" => t.dport = Some(parse_u16(v).ok_or_else(bad)?),
                "packets" => t.packets = Some(parse_u64(v).ok_or_else(bad)?),
                "bytes" => t.bytes = Some(parse_u64(v).ok_or_else(bad)?),
                _ => zone = Some(parse_u32(v).ok_or_else(bad)?),
            }
        }
        Ok((orig, reply, zone))
    }

    #[test]
    fn usual_stamps_read_as_every_form_does() {
        for st in [
            "1793496060.020751",
            "0.000000",
            "1.999999",
            "9223372036854.775807",
            "9223372036854.775808",
            "9999999999999999999.000000",
            "99999999999999999999.000000",
            "1700000000.12345",
            "1700000000.1234567",
            "1700000000.123456 ",
            " 1700000000.123456",
            "1700000000..123456",
            "1700000000.",
            ".123456",
            "1700000000",
            "1700000000.12345x",
        ] {
            assert_eq!(parse_event_stamp(st), any_event_stamp(st), "{st:?}");
        }
    }

    #[test]
    fn scan_reads_like_the_token_walk() {
        let mut lines: Vec<String> = test_corpus::samples("conntrack.txt")
            .into_iter()
            .map(|s| s.line)
            .collect();
        lines.extend(
            [
                "src=1.2.3.4 dst=5.6.7.8 sport=99999999999999999999 dport=1",
                "src=1.2.3.4 dst=5.6.7.8 bytes=18446744073709551615 packets=18446744073709551616",
                "src=1.2.3.4 dst=5.6.7.8 bytes=1844674407370955161 packets=0000000000000000000001",
                "src=1.2.3.4.5 dst=01.2.3.4 src=1.2.3.4444",
                "src=::ffff:1.2.3.4 dst=1.2.3.4:80 zone-orig=7 zone=4294967296",
                "src=255.255.255.255 dst=256.1.1.1",
                "src= dst=1.2.3.4\x0b sport=65535 dport=65536",
                "src=1.2.3.4\tdst=1.2.3.4\rsport=1\x0cdport=2\nzone=3",
                "[start=Thu Nov 23 02:33:00 2025] src=1.2.3.4 [ x ] [y] sport=1",
                "src=1.2.3.4 sport=+1 dport=1e3 bytes=-1 packets=0x10 zone=",
                "src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4",
            ]
            .map(String::from),
        );
        let check = |s: &str| {
            let want = scan_by_tokens(ascii_words(s));
            let got = scan_fields(s).map(|f| (f.orig, f.reply, f.zone));
            assert_eq!(got, want, "{s:?}");
        };
        for line in &lines {
            check(line);
            // Every byte replaced by a separator, a digit, a dot, a bracket and other bytes
            // where a value or a token ends; and every line cut short.
            for at in 0..line.len() {
                if !line.is_char_boundary(at) || !line.is_char_boundary(at + 1) {
                    continue;
                }
                for c in [
                    " ", "\t", "\x0b", "9", "0", ".", ":", "[", "]", "=", "x", "\u{e9}",
                ] {
                    let mut m = line.clone();
                    m.replace_range(at..at + 1, c);
                    check(&m);
                }
                check(&line[..at]);
            }
        }
    }

    /// `key=value` pairs of a `# derived` annotation (e.g. "orig.src=10.8.0.99").
    fn derived_pairs(text: &str) -> Vec<(String, String)> {
        text.split_whitespace()
            .filter_map(|t| t.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_end_matches([',', ';']).to_string()))
            .collect()
    }

    /// Every text line of conntrack.txt: counts, and the annotated values.
    #[test]
    fn corpus_conntrack_text() {
        let samples = test_corpus::samples("conntrack.txt");
        let (mut events, mut silent, mut rejected_xml, mut rejected_other) = (0, 0, 0, Vec::new());
        let mut checked = 0;
        for smp in &samples {
            let mut out = Vec::new();
            match parse(&smp.line, T0, &mut out) {
                Ok(0) => {
                    // Only UPDATE lines are silent.
                    assert!(
                        smp.line.contains("UPDATE"),
                        "silent non-UPDATE line {}",
                        smp.line_no
                    );
                    silent += 1;
                }
                Ok(_) => {
                    events += 1;
                    let Some(Event::Nat(e)) = out.first() else {
                        panic!("line {}", smp.line_no)
                    };
                    assert_eq!(e.time, T0, "corpus lines carry no timestamp prefix");
                    checked += check_line(&smp.line, e);
                    if let Some(d) = smp.derived() {
                        checked += check_derived(smp, d, e);
                    }
                }
                Err(_) if smp.line.trim_start().starts_with('<') => rejected_xml += 1,
                Err(e) => rejected_other.push((smp.line_no, smp.line.clone(), e)),
            }
        }
        // Events: 3 NEW of the masquerade block, its -L line, 1 NEW of the walkthrough, the
        // mailing-list NEW, the old-format NEW, 3 Go-test listing lines (tcp, tcp, icmp),
        // 3 /proc lines, 2 accounting lines. Silent: 7 + 2 + 1 UPDATE lines.
        eprintln!(
            "conntrack.txt: {events} event lines, {silent} UPDATE, {rejected_xml} xml rejected, {} other rejected, {checked} checks",
            rejected_other.len()
        );
        assert_eq!(events, 15, "event lines");
        assert_eq!(silent, 10, "UPDATE lines");
        // conntrack -o xml (multi-line and single-line <flow>): not a text format.
        assert_eq!(rejected_xml, 111, "xml lines");
        // The Go test feeds "garbage line" and expects it skipped.
        assert_eq!(rejected_other.len(), 1, "{rejected_other:?}");
        assert_eq!(rejected_other[0].1, "garbage line");
        assert!(checked >= 40, "field checks {checked}");
    }

    /// Independent reading of a text line: first/second `src=`, `dst=`, `sport=`, `dport=`.
    fn check_line(line: &str, e: &NatEvent) -> usize {
        let kv: Vec<(&str, &str)> = line
            .split_whitespace()
            .filter_map(|t| t.split_once('='))
            .collect();
        let nth =
            |key: &str, n: usize| kv.iter().filter(|(k, _)| *k == key).nth(n).map(|(_, v)| *v);
        assert_eq!(
            e.src_ip,
            nth("src", 0).and_then(|v| v.parse().ok()),
            "{line}"
        );
        assert_eq!(
            e.dst_ip,
            nth("dst", 0).and_then(|v| v.parse().ok()),
            "{line}"
        );
        assert_eq!(e.x_ip, nth("dst", 1).and_then(|v| v.parse().ok()), "{line}");
        let mut n = 3;
        if line.contains("sport=") {
            assert_eq!(
                e.src_port,
                nth("sport", 0).and_then(|v| v.parse().ok()),
                "{line}"
            );
            assert_eq!(
                e.dst_port,
                nth("dport", 0).and_then(|v| v.parse().ok()),
                "{line}"
            );
            assert_eq!(
                e.x_port,
                nth("dport", 1).and_then(|v| v.parse().ok()),
                "{line}"
            );
            n += 3;
        } else {
            assert_eq!((e.src_port, e.x_port), (None, None), "{line}");
        }
        if line.contains("packets=") {
            assert_eq!(
                e.packets_out,
                nth("packets", 0).and_then(|v| v.parse().ok()),
                "{line}"
            );
            assert_eq!(
                e.bytes_out,
                nth("bytes", 0).and_then(|v| v.parse().ok()),
                "{line}"
            );
            assert_eq!(
                e.packets_in,
                nth("packets", 1).and_then(|v| v.parse().ok()),
                "{line}"
            );
            assert_eq!(
                e.bytes_in,
                nth("bytes", 1).and_then(|v| v.parse().ok()),
                "{line}"
            );
            n += 4;
        }
        let trimmed = line.trim_start();
        let want = if trimmed.starts_with("[NEW]") || trimmed.starts_with("NEW ") {
            NatEventKind::SessionCreate
        } else if trimmed.starts_with("[DESTROY]") {
            NatEventKind::SessionDelete
        } else {
            NatEventKind::MappingObserved
        };
        assert_eq!(e.event, Some(want), "{line}");
        let proto = line.split_whitespace().find_map(|t| match t {
            "tcp" => Some(6),
            "udp" => Some(17),
            "icmp" => Some(1),
            _ => None,
        });
        assert_eq!(e.protocol, proto, "{line}");
        n + 2
    }

    /// The block's `# derived` reading, applied to the line it describes.
    fn check_derived(smp: &test_corpus::Sample, d: &str, e: &NatEvent) -> usize {
        let pairs = derived_pairs(d);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let mut n = 0;
        // "(not from source, NEW tcp line)": only that line of the block is described.
        let about_new_tcp = smp
            .block
            .iter()
            .any(|c| c.starts_with("# derived") && c.contains("NEW tcp line"));
        if about_new_tcp && !smp.line.trim_start().starts_with("[NEW] tcp") {
            return 0;
        }
        // "orig.src=… orig.dst=… orig.sport=… orig.dport=… reply.dst=… => nat.src=… nat.sport=…"
        if let (Some(os), Some(ns)) = (get("orig.src"), get("nat.src")) {
            assert_eq!(e.src_ip, os.parse().ok(), "line {}", smp.line_no);
            assert_eq!(e.x_ip, ns.parse().ok(), "line {}", smp.line_no);
            assert_eq!(
                e.dst_ip,
                get("orig.dst").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                e.src_port,
                get("orig.sport").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                e.dst_port,
                get("orig.dport").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                e.x_port,
                get("nat.sport").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(get("proto"), Some("tcp(6)"));
            assert_eq!(e.protocol, Some(6));
            assert_eq!(e.direction, Some("out"));
            n += 8;
        }
        // CT_REDIRECT: "orig.dst=8.8.8.8:443 but reply.src=…": a DNAT/REDIRECT, no source NAT.
        if let Some(od) = get("orig.dst").filter(|v| v.contains(':'))
            && d.contains("CT_REDIRECT")
            && smp.line.contains("ESTABLISHED")
        {
            let (a, p) = od.rsplit_once(':').unwrap();
            assert_eq!(
                (e.dst_ip, e.dst_port),
                (a.parse().ok(), p.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                (e.x_ip, e.x_port),
                (e.src_ip, e.src_port),
                "REDIRECT is not source NAT"
            );
            assert_eq!(e.direction, None);
            n += 3;
        }
        // "icmp line has type=/code=/id= instead of ports".
        if d.contains("icmp line") && smp.line.starts_with("icmp") {
            assert_eq!((e.protocol, e.src_port, e.dst_port), (Some(1), None, None));
            n += 1;
        }
        n
    }

    #[test]
    fn detection() {
        assert!(looks_like(
            "    [NEW] udp      17 30 src=100.64.0.1 dst=198.51.100.1"
        ));
        assert!(looks_like("[1700000000.1]\t[DESTROY] tcp 6 src=100.64.0.1"));
        assert!(looks_like("NEW tcp     120 SYN_SENT src=100.64.0.1"));
        assert!(looks_like("ipv4     2 udp      17 53 src=100.64.0.1"));
        assert!(looks_like("icmp     1 29 src=100.64.0.1"));
        assert!(!looks_like("garbage line"));
        assert!(!looks_like("NEW things src=1"));
        assert!(!looks_like("IN=eth0 OUT= SRC=100.64.0.1"));
        assert!(!looks_like(r#"{"src=":1}"#));
    }
}
