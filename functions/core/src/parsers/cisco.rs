//! Cisco ASA / PIX / FTD and IOS-XE NAT messages (the syslog envelope already peeled). The
//! message tag (`%ASA-6-305011:`, `ASA-6-302013:`, `302020:`, `%ASA-123456:`, the EMBLEM-like
//! `6|Nov 28 2014 12:59:03|302021:`) is optional: relays and test suites strip it, so the text
//! itself decides, which also covers anonymised ids.
//!
//! - `Built|Teardown dynamic|static PROTO translation from IF:real/port to IF:mapped/port`
//!   (305011 / 305012): a port mapping → SessionCreate / SessionDelete; without PROTO and ports
//!   (305009 / 305010) an address binding → AddressBind / AddressRelease.
//! - `Built inbound|outbound PROTO connection ID for IF:A/p (A'/p') to IF:B/q (B'/q')` (302013 /
//!   302015, and teardowns in that form): A is the foreign side, B the local one with its mapped
//!   address in parentheses. B ≠ B' → NAT event (src = B, x = B', dst = A); else a flow record
//!   (initiator as source: B for outbound, A for inbound). The NAT event is a MappingObserved
//!   at the log time (over `duration` for a teardown in that form), not a session start: the
//!   usual teardowns carry no mapped address and could never close it.
//! - `Built|Teardown … ICMP connection for faddr F gaddr G laddr L` (302020 / 302021): L is
//!   local, G its global (mapped) address.
//! - `Teardown TCP|UDP|GRE connection ID for IF:A/p to IF:B/q duration D bytes N` (302014 /
//!   302016 / 302018): no mapped addresses → a flow record (local side B as source) that started
//!   D before the log time.
//! - 106xxx denies (`Deny tcp src IF:ip/port dst IF:ip/port by access-group "ACL"`, `Deny inbound
//!   UDP from … on interface IF`, `Deny TCP (no connection) …`, `Inbound TCP connection denied …`,
//!   land / teardrop / spoof / reverse-path denies, `access-list ACL permitted|denied …`, 106002)
//!   → firewall events. A destination given as a name (`inside:www.example.com/23`) keeps its
//!   port and no address; a source that is not an address rejects the line.
//! - IOS-XE `%NAT-6-LOG_TRANSLATION: Created|Deleted Translation PROTO il:p ig:p ol:p og:p`:
//!   inside local → inside global, destination = outside global. The device stamp in front of
//!   the tag (`May 21 12:00:01.123 gmt:`) is used when present; `gmt` / `utc` mean offset 0.
//!
//! Durations (`duration 0:02:32`) give translation teardowns an `end_time` equal to their time;
//! a connection teardown in the mapped form becomes the span [log time − duration, log time].
//! Everything else (logins, failover, AAA, URL, IPS, connection limits) is rejected.

use std::net::IpAddr;

use super::fields::{addr_port, clean_ports, duration_hms, port_for, translated};
use super::util::{
    MICROS_PER_SEC, contains_lit, find_any, find_lit, parse_bsd_prefix, parse_u8, parse_u64,
    split_once_byte, whitespace_tokens,
};
use super::{ParseCtx, ParseError};
use crate::model::{
    Event, FirewallAction, FirewallEvent, FlowRecord, Micros, NatEvent, NatEventKind,
    protocol_number,
};

const FORMAT: &str = "cisco";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Message texts recognised without a tag (what relays and test suites leave of a message).
const TEXT_STARTS: [&str; 16] = [
    "Built dynamic ",
    "Built static ",
    "Teardown dynamic ",
    "Teardown static ",
    "Built inbound ",
    "Built outbound ",
    "Teardown TCP connection ",
    "Teardown UDP connection ",
    "Teardown ICMP connection ",
    "Teardown GRE connection ",
    "Teardown SCTP connection ",
    "Deny tcp src ",
    "Deny udp src ",
    "Deny protocol ",
    "Deny TCP (no connection)",
    "access-list ",
];

const PLATFORMS: [&str; 4] = ["ASA-", "PIX-", "FTD-", "FWSM-"];

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    let b = body.trim_start();
    let head = b.get(..b.len().min(48)).unwrap_or(b);
    platform_tag_at(head).is_some()
        || PLATFORMS.iter().any(|p| b.starts_with(p))
        || contains_lit(b, "%NAT-6-LOG_TRANSLATION:")
        || split_numeric_tag(b).is_some()
        || pipe_form(b).is_some()
        || TEXT_STARTS.iter().any(|t| b.starts_with(t))
}

/// Offset just past the `%` of a `%ASA-` / `%PIX-` / `%FTD-` / `%FWSM-` tag in `head`.
/// A byte search from `%` to `%`: `match_indices('%')` set up a char searcher per line.
fn platform_tag_at(head: &str) -> Option<usize> {
    let b = head.as_bytes();
    let mut from = 0;
    while let Some(p) = b.get(from..).and_then(|r| find_any(r, [b'%'])) {
        let i = from + p + 1;
        if head
            .get(i..)
            .is_some_and(|r| PLATFORMS.iter().any(|p| r.starts_with(p)))
        {
            return Some(i);
        }
        from = i;
    }
    None
}

/// `302020: text` → text.
fn split_numeric_tag(s: &str) -> Option<&str> {
    let colon = find_lit(s, ": ")?;
    let (id, rest) = (s.get(..colon)?, s.get(colon + 2..)?);
    (id.len() == 6 && id.bytes().all(|c| c.is_ascii_digit())).then_some(rest)
}

/// `6|Nov 28 2014 12:59:03|302021: text` → (stamp, rest).
fn pipe_form(s: &str) -> Option<(&str, &str)> {
    let rest = s
        .strip_prefix(|c: char| c.is_ascii_digit())?
        .strip_prefix('|')?;
    let (stamp, rest) = rest.split_once('|')?;
    parse_bsd_prefix(stamp)?;
    Some((stamp, rest))
}

/// Parses one message into at most one event; returns the number pushed.
pub fn parse(
    body: &str,
    default_time: Micros,
    ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let body = body.trim();
    if let Some(at) = find_lit(body, "%NAT-6-LOG_TRANSLATION:") {
        let time = device_stamp(body.get(..at).unwrap_or(""), ctx).unwrap_or(default_time);
        let text = body
            .get(at + "%NAT-6-LOG_TRANSLATION:".len()..)
            .unwrap_or("");
        out.push(Event::Nat(ios_translation(text, time)?));
        return Ok(1);
    }
    let (tag, text, time) = split_tag(body, ctx);
    let time = time.unwrap_or(default_time);
    let text = text.trim();
    let ev = if text.starts_with("Built ") || text.starts_with("Teardown ") {
        built_or_teardown(text, time)
    } else if text.starts_with("Deny ")
        || (text.starts_with("Inbound ") && text.contains(" connection denied "))
        || text.starts_with("access-list ")
        || text.contains(" connection denied by outbound list ")
    {
        firewall(text, time).map(Event::Firewall)
    } else {
        Err(skip())
    };
    let ev = ev.map_err(|e| {
        if e.reason.is_empty() {
            not_mapped(tag, text)
        } else {
            e
        }
    })?;
    out.push(ev);
    Ok(1)
}

fn not_mapped(tag: Option<&str>, text: &str) -> ParseError {
    let what = tag.map_or_else(
        || {
            format!(
                "{:?}",
                text.split(' ').take(3).collect::<Vec<_>>().join(" ")
            )
        },
        str::to_owned,
    );
    err(format!("{what} carries no NAT, flow or firewall record"))
}

/// An empty reason marks "not one of ours": the caller names the message instead.
fn skip() -> ParseError {
    err("")
}

/// Splits off the tag and the device stamp of the pipe form: (tag, text, time).
fn split_tag<'a>(s: &'a str, ctx: &ParseCtx) -> (Option<&'a str>, &'a str, Option<Micros>) {
    let mut s = s;
    let mut time = None;
    if let Some((stamp, rest)) = pipe_form(s) {
        time = parse_bsd_prefix(stamp).and_then(|(ts, _)| ts.to_micros(ctx.clock()));
        s = rest;
    }
    if let Some(rest) = split_numeric_tag(s) {
        return (s.get(..6), rest, time);
    }
    let head = s.get(..s.len().min(48)).unwrap_or(s);
    let tag_start =
        platform_tag_at(head).or_else(|| PLATFORMS.iter().any(|p| s.starts_with(p)).then_some(0));
    if let Some(at) = tag_start {
        let rest = s.get(at..).unwrap_or("");
        // "%ASA-6-302013: text", and "%ASA-4-401004 Shunned …" without the colon.
        let end = rest.find([':', ' ']).unwrap_or(rest.len());
        let tag = rest.get(..end).unwrap_or("");
        let text = rest.get(end..).unwrap_or("");
        let text = text.strip_prefix(':').unwrap_or(text);
        return (Some(tag), text, time);
    }
    (None, s, time)
}

/// `IF:addr/port`, `addr/port` or `addr` → address and port. A name where the address should
/// be (`inside:www.example.com/23`, `a.b.c.d/3782`) yields no address but keeps the port.
fn endpoint(tok: &str) -> (Option<IpAddr>, Option<u16>) {
    let t = tok.trim_end_matches([',', ';', '.']);
    if let Some(v) = addr_port(t, '/') {
        return (Some(v.0), v.1);
    }
    if let Some((_, rest)) = split_once_byte(t, b':')
        && let Some(v) = addr_port(rest, '/')
    {
        return (Some(v.0), v.1);
    }
    let port = t.rsplit_once('/').and_then(|(_, p)| p.parse::<u16>().ok());
    (None, port)
}

/// `(addr/port)` right after an endpoint: the mapped address.
fn mapped(tok: Option<&&str>) -> Option<(IpAddr, Option<u16>)> {
    let inner = tok?.strip_prefix('(')?.strip_suffix(')')?;
    addr_port(inner, '/')
}

fn word_after<'a>(toks: &[&'a str], word: &str) -> Option<(usize, &'a str)> {
    let i = toks.iter().position(|t| *t == word)?;
    toks.get(i + 1).map(|t| (i + 1, *t))
}

/// The `IF:addr/port` token at or after `i`: interface names may hold spaces (`NP Identity
/// Ifc:10.1.1.1/22`, the ASA itself), so the words before the one with the colon are skipped.
fn endpoint_from<'a>(toks: &[&'a str], i: usize) -> Option<(usize, &'a str)> {
    toks.iter()
        .enumerate()
        .skip(i)
        .take(4)
        .find(|(_, t)| t.contains(':') || t.contains('/'))
        .map(|(j, t)| (j, *t))
}

fn protocol_word(w: &str) -> Option<u8> {
    protocol_number(w)
}

fn built_or_teardown(text: &str, time: Micros) -> Result<Event, ParseError> {
    let toks = whitespace_tokens(text);
    let close = toks.first() == Some(&"Teardown");
    let w2 = toks.get(1).copied().unwrap_or("");
    match w2 {
        "dynamic" | "static" | "identity" | "portmap" => translation(&toks, close, time),
        "inbound" | "outbound" => connection(&toks, close, Some(w2), time),
        _ if toks.get(2) == Some(&"connection") && protocol_word(w2).is_some() => {
            connection(&toks, close, None, time)
        }
        _ => Err(skip()),
    }
}

/// 305009–305012.
fn translation(toks: &[&str], close: bool, time: Micros) -> Result<Event, ParseError> {
    let (_, from) = word_after(toks, "from").ok_or_else(|| err("translation without from"))?;
    let (_, to) = word_after(toks, "to").ok_or_else(|| err("translation without to"))?;
    let protocol = toks
        .get(2)
        .filter(|_| toks.get(3) == Some(&"translation"))
        .map(|w| protocol_word(w).ok_or_else(|| err(format!("unknown protocol {w:?}"))))
        .transpose()?;
    let (src, sport) = endpoint(from);
    let (x, xport) = endpoint(to);
    let (Some(src), Some(x)) = (src, x) else {
        return Err(err(format!("translation {from} to {to}: not addresses")));
    };
    let duration = word_after(toks, "duration").and_then(|(_, d)| duration_hms(d));
    let kind = match (protocol.is_some() || sport.is_some(), close) {
        (true, false) => NatEventKind::SessionCreate,
        (true, true) => NatEventKind::SessionDelete,
        (false, false) => NatEventKind::AddressBind,
        (false, true) => NatEventKind::AddressRelease,
    };
    let mut e = NatEvent {
        time,
        event: Some(kind),
        protocol,
        src_ip: Some(src),
        src_port: sport,
        x_ip: Some(x),
        x_port: xport,
        direction: Some("out"),
        end_time: duration.filter(|_| close).map(|_| time),
        ..NatEvent::default()
    };
    clean_ports(&mut e);
    Ok(Event::Nat(e))
}

/// 302013–302021 (TCP, UDP, SCTP, GRE, ICMP).
fn connection(
    toks: &[&str],
    close: bool,
    dir: Option<&str>,
    time: Micros,
) -> Result<Event, ParseError> {
    let pw = if dir.is_some() {
        toks.get(2)
    } else {
        toks.get(1)
    };
    let pw = pw.copied().unwrap_or("");
    let protocol = Some(protocol_word(pw).ok_or_else(|| err(format!("unknown protocol {pw:?}")))?);
    // (foreign, its mapped), (local, its mapped)
    let (a, b, bm) = if let Some((_, f)) = word_after(toks, "faddr") {
        let g = word_after(toks, "gaddr").map(|(_, g)| g);
        let l = word_after(toks, "laddr").map(|(_, l)| l);
        let (Some(g), Some(l)) = (g, l) else {
            return Err(err("ICMP connection without gaddr / laddr"));
        };
        (endpoint(f), endpoint(l), addr_port(g, '/'))
    } else {
        let (fi, _) = word_after(toks, "for")
            .or_else(|| word_after(toks, "from"))
            .ok_or_else(|| err("connection without for / from"))?;
        let (fi, f) =
            endpoint_from(toks, fi).ok_or_else(|| err("connection without for / from"))?;
        let (li, l) = toks
            .iter()
            .enumerate()
            .skip(fi + 1)
            .find(|(_, t)| **t == "to")
            .and_then(|(i, _)| endpoint_from(toks, i + 1))
            .ok_or_else(|| err("connection without to"))?;
        (endpoint(f), endpoint(l), mapped(toks.get(li + 1)))
    };
    let (Some(aip), Some(bip)) = (a.0, b.0) else {
        return Err(err("connection endpoints are not addresses"));
    };
    let duration = word_after(toks, "duration").and_then(|(_, d)| duration_hms(d));
    let bytes = word_after(toks, "bytes").and_then(|(_, b)| parse_u64(b));
    let (bmip, bmport) = match bm {
        Some((ip, p)) => (Some(ip), p),
        None => (None, None),
    };
    if translated(Some(bip), b.1, bmip, bmport) {
        // An observation, not a session start: the teardown (302014 / 302016) names no mapped
        // address, so a start read from here would never close and would name this subscriber
        // for the port until the carry's idle limit. The mapping's lifetime comes from the
        // translation messages (305011 / 305012) logged at the same level.
        let start = match duration {
            Some(d) if close => time.saturating_sub(d.saturating_mul(MICROS_PER_SEC)),
            _ => time,
        };
        let mut e = NatEvent {
            time: start,
            event: Some(NatEventKind::MappingObserved),
            protocol,
            src_ip: Some(bip),
            src_port: b.1,
            x_ip: bmip,
            x_port: bmport,
            dst_ip: Some(aip),
            dst_port: a.1,
            direction: match dir {
                Some("inbound") => Some("in"),
                Some(_) => Some("out"),
                None => None,
            },
            // A connection built is a sighting: its end is not known here.
            end_time: close.then_some(time),
            ..NatEvent::default()
        };
        clean_ports(&mut e);
        return Ok(Event::Nat(e));
    }
    // The initiator is the source: the local side unless the connection was inbound.
    let ((sip, sport), (dip, dport)) = if dir == Some("inbound") {
        ((aip, a.1), (bip, b.1))
    } else {
        ((bip, b.1), (aip, a.1))
    };
    let start = match duration {
        Some(d) if close => time.saturating_sub(d.saturating_mul(MICROS_PER_SEC)),
        _ => time,
    };
    Ok(Event::Flow(FlowRecord {
        time: start,
        end_time: close.then_some(time),
        protocol,
        src_ip: Some(sip),
        src_port: port_for(protocol, sport),
        dst_ip: Some(dip),
        dst_port: port_for(protocol, dport),
        bytes,
        ..FlowRecord::default()
    }))
}

/// 106xxx denies and 106100 access-list hits.
fn firewall(text: &str, time: Micros) -> Result<FirewallEvent, ParseError> {
    let toks = whitespace_tokens(text);
    if toks.first() == Some(&"access-list") {
        return access_list(&toks, time);
    }
    let action = FirewallAction::Deny;
    let mut rule = None;
    let (src_tok, dst_tok, protocol);
    if let Some(i) = text.find(" connection denied by outbound list ") {
        // 106002: "udp connection denied by outbound list 30 src A 138 dest B 138".
        protocol = protocol_word(text.get(..i).unwrap_or("").trim());
        rule = word_after(&toks, "list").map(|(_, r)| r.to_owned());
        let s = word_after(&toks, "src");
        let d = word_after(&toks, "dest");
        let join = |w: Option<(usize, &str)>| {
            w.map(
                |(i, a)| match toks.get(i + 1).and_then(|p| p.parse::<u16>().ok()) {
                    Some(p) => format!("{a}/{p}"),
                    None => a.to_owned(),
                },
            )
        };
        src_tok = join(s);
        dst_tok = join(d);
    } else {
        // The protocol word follows "Deny", "Deny inbound", "Deny inbound (No xlate)" or
        // "Inbound"; "protocol N" spells it as a number.
        let mut i = 1;
        if toks.get(i) == Some(&"inbound") {
            i += 1;
        }
        if toks.get(i) == Some(&"(No") {
            i += 2;
        }
        let w = toks.get(i).copied().unwrap_or("");
        protocol = if w == "protocol" {
            toks.get(i + 1).and_then(|n| parse_u8(n))
        } else {
            protocol_word(w)
        };
        let (s, d) = if let Some((si, s)) = word_after(&toks, "src") {
            // "dst" may be the last word (PIX 106011 cut short).
            let d = toks
                .iter()
                .skip(si)
                .position(|t| *t == "dst")
                .and_then(|k| toks.get(si + k + 1))
                .copied();
            (Some(s), d)
        } else {
            let s = word_after(&toks, "from").map(|(_, s)| s);
            let d = word_after(&toks, "to").map(|(_, d)| d);
            (s, d)
        };
        src_tok = s.map(str::to_owned);
        dst_tok = d.map(str::to_owned);
        if let Some((_, g)) = word_after(&toks, "access-group") {
            rule = Some(g.trim_matches('"').to_owned());
        }
        if text.starts_with("Deny TCP (no connection)") {
            rule = Some("no connection".to_owned());
        }
    }
    let src_tok = src_tok.ok_or_else(|| err("deny without a source"))?;
    let (src_ip, src_port) = endpoint(&src_tok);
    let src_ip = Some(src_ip.ok_or_else(|| err(format!("bad source {src_tok:?}")))?);
    let (dst_ip, dst_port) = dst_tok.as_deref().map(endpoint).unwrap_or((None, None));
    let in_if = word_after(&toks, "interface").map(|(_, i)| i.trim_end_matches('.').to_owned());
    Ok(FirewallEvent {
        time,
        action,
        rule,
        protocol,
        src_ip,
        src_port: port_for(protocol, src_port),
        dst_ip,
        dst_port: port_for(protocol, dst_port),
        in_if,
        out_if: None,
        length: None,
        vrf: None,
    })
}

/// `access-list ACL permitted|denied|est-allowed PROTO IF/ip(port) -> IF/ip(port) hit-cnt …`.
fn access_list(toks: &[&str], time: Micros) -> Result<FirewallEvent, ParseError> {
    let acl = toks
        .get(1)
        .ok_or_else(|| err("access-list without a name"))?;
    let action = match toks.get(2).copied() {
        Some("permitted" | "est-allowed") => FirewallAction::Allow,
        Some("denied") => FirewallAction::Deny,
        other => return Err(err(format!("access-list action {other:?}"))),
    };
    let protocol = toks.get(3).and_then(|p| protocol_word(p));
    let side = |t: Option<&&str>| -> (Option<IpAddr>, Option<u16>, Option<String>) {
        let Some(t) = t else {
            return (None, None, None);
        };
        let (iface, rest) = t.split_once('/').unwrap_or(("", t));
        let (addr, port) = match rest.split_once('(') {
            Some((a, p)) => (a, p.strip_suffix(')').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
        (
            super::util::parse_ip(addr),
            port,
            (!iface.is_empty()).then(|| iface.to_owned()),
        )
    };
    let (sip, sport, sif) = side(toks.get(4));
    let (dip, dport, dif) = side(toks.get(6));
    if toks.get(5) != Some(&"->") || sip.is_none() {
        return Err(err("access-list hit without a source -> destination"));
    }
    Ok(FirewallEvent {
        time,
        action,
        rule: Some((*acl).to_owned()),
        protocol,
        src_ip: sip,
        src_port: port_for(protocol, sport),
        dst_ip: dip,
        dst_port: port_for(protocol, dport),
        in_if: sif,
        out_if: dif,
        length: None,
        vrf: None,
    })
}

/// `Created|Deleted Translation PROTO insideLocal:p insideGlobal:p outsideLocal:p
/// outsideGlobal:p …`.
fn ios_translation(text: &str, time: Micros) -> Result<NatEvent, ParseError> {
    let toks = whitespace_tokens(text);
    let kind = match toks.first().copied() {
        Some("Created") => NatEventKind::SessionCreate,
        Some("Deleted") => NatEventKind::SessionDelete,
        other => return Err(err(format!("LOG_TRANSLATION verb {other:?}"))),
    };
    if toks.get(1) != Some(&"Translation") {
        return Err(err("LOG_TRANSLATION without 'Translation'"));
    }
    let pw = toks.get(2).copied().unwrap_or("");
    let protocol = Some(protocol_word(pw).ok_or_else(|| err(format!("unknown protocol {pw:?}")))?);
    let ep = |i: usize| {
        toks.get(i)
            .and_then(|t| addr_port(t, ':'))
            .ok_or_else(|| err(format!("bad address in field {}", i - 2)))
    };
    let (il, ilp) = ep(3)?;
    let (ig, igp) = ep(4)?;
    let (og, ogp) = ep(6)?;
    let mut e = NatEvent {
        time,
        event: Some(kind),
        protocol,
        src_ip: Some(il),
        src_port: ilp,
        x_ip: Some(ig),
        x_port: igp,
        dst_ip: Some(og),
        dst_port: ogp,
        direction: Some("out"),
        ..NatEvent::default()
    };
    clean_ports(&mut e);
    Ok(e)
}

/// A BSD stamp among the words before the message tag (`HOSTNAME: May 21 12:00:01.123 gmt:`);
/// a `gmt` / `utc` word after it means UTC, otherwise the device's zone applies.
fn device_stamp(prefix: &str, ctx: &ParseCtx) -> Option<Micros> {
    let mut from = 0;
    while from < prefix.len() {
        let rest = prefix.get(from..)?;
        if let Some((ts, n)) = parse_bsd_prefix(rest) {
            let zone = rest
                .get(n..)
                .and_then(|r| r.split_whitespace().next())
                .map(|z| z.trim_end_matches(':'));
            let tz = match zone {
                Some(z) if z.eq_ignore_ascii_case("gmt") || z.eq_ignore_ascii_case("utc") => {
                    ctx.clock().with_offset(0)
                }
                _ => ctx.clock(),
            };
            return ts.to_micros(tz);
        }
        from += rest.find(' ').map_or(prefix.len(), |i| i + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_rejects, ip, nat, one_auto, utc_ctx};
    use super::super::util::{civil_micros, test_corpus};
    use super::super::{Format, parse_message};
    use super::*;

    fn ctx() -> ParseCtx {
        utc_ctx(civil_micros(2024, 6, 15, 12, 0, 0, 0).unwrap())
    }

    fn one(line: &str, c: &ParseCtx) -> Event {
        one_auto(line, c, "cisco")
    }

    #[test]
    fn xlate_build_teardown_and_address_bind() {
        let c = ctx();
        let e = nat(one(
            "<166>Jun 15 2024 11:00:00: %ASA-6-305011: Built dynamic TCP translation from inside:100.64.0.5/51000 to outside:203.0.113.7/1028",
            &c,
        ));
        assert_eq!(e.time, civil_micros(2024, 6, 15, 11, 0, 0, 0).unwrap());
        assert_eq!(
            (e.event, e.protocol, e.src_ip, e.src_port, e.x_ip, e.x_port),
            (
                Some(NatEventKind::SessionCreate),
                Some(6),
                ip("100.64.0.5"),
                Some(51000),
                ip("203.0.113.7"),
                Some(1028)
            )
        );
        // The device's zone (UTC+2) shifts a stamp without offset; the duration marks the end.
        let c2 = ParseCtx {
            zone: crate::time::Zone::Fixed(7200),
            ..ctx()
        };
        let e = nat(one(
            "<166>Jun 15 2024 13:00:00: %ASA-6-305012: Teardown dynamic UDP translation from inside:2001:db8::5/5353 to outside:203.0.113.7/1029 duration 1:00:02",
            &c2,
        ));
        let t = civil_micros(2024, 6, 15, 11, 0, 0, 0).unwrap();
        assert_eq!((e.time, e.end_time), (t, Some(t)));
        assert_eq!(
            (e.src_ip, e.event),
            (ip("2001:db8::5"), Some(NatEventKind::SessionDelete))
        );
        let e = nat(one(
            "%ASA-6-305009: Built static translation from inside:10.1.1.1 to outside:203.0.113.50",
            &c,
        ));
        assert_eq!(
            (e.event, e.protocol, e.x_port),
            (Some(NatEventKind::AddressBind), None, None)
        );
        let e = nat(one(
            "%ASA-6-305010: Teardown static translation from inside:10.1.1.1 to outside:203.0.113.50 duration 0:10:00",
            &c,
        ));
        assert_eq!(e.event, Some(NatEventKind::AddressRelease));
    }

    #[test]
    fn connections_inbound_outbound_and_flows() {
        let c = ctx();
        let e = nat(one(
            "%ASA-6-302013: Built inbound TCP connection 77 for outside:198.51.100.9/40000 (198.51.100.9/40000) to dmz:10.9.9.9/443 (203.0.113.80/443)",
            &c,
        ));
        assert_eq!(e.direction, Some("in"));
        assert_eq!(
            (e.src_ip, e.x_ip, e.dst_ip),
            (ip("10.9.9.9"), ip("203.0.113.80"), ip("198.51.100.9"))
        );
        let Event::Flow(f) = one(
            "%ASA-6-302016: Teardown UDP connection 5 for outside:198.51.100.53/53 to inside:10.0.0.2/5353 duration 0:00:10 bytes 300",
            &c,
        ) else {
            panic!()
        };
        assert_eq!(
            (f.src_ip, f.dst_ip, f.bytes),
            (ip("10.0.0.2"), ip("198.51.100.53"), Some(300))
        );
        assert_eq!(
            (f.time, f.end_time),
            (c.recv_time - 10 * MICROS_PER_SEC, Some(c.recv_time))
        );
    }

    /// Connections to the ASA itself name the interface `NP Identity Ifc` (with spaces).
    #[test]
    fn connections_to_the_device_itself() {
        let c = ctx();
        let Event::Flow(f) = one(
            "%ASA-6-302013: Built inbound TCP connection 8 for inside:10.1.1.2/12523 (10.1.1.2/12523) to NP Identity Ifc:10.1.1.1/22 (10.1.1.1/22)",
            &c,
        ) else {
            panic!()
        };
        assert_eq!(
            (f.src_ip, f.src_port, f.dst_ip, f.dst_port),
            (ip("10.1.1.2"), Some(12523), ip("10.1.1.1"), Some(22))
        );
    }

    #[test]
    fn ios_xe_translation() {
        let c = ctx();
        let e = nat(one(
            "<14>123: gw: Jun 15 10:00:00.250 utc: %IOSXE-6-PLATFORM: F0: cpp_cp: QFP:0.0 Thread:105 TS:00000000000000 %NAT-6-LOG_TRANSLATION: Deleted Translation TCP 10.0.0.1:4000 203.0.113.1:5000 198.51.100.1:80 198.51.100.1:80 0",
            &c,
        ));
        assert_eq!(
            e.time,
            civil_micros(2024, 6, 15, 10, 0, 0, 250_000).unwrap()
        );
        assert_eq!(
            (e.event, e.src_port, e.x_ip, e.x_port, e.dst_port),
            (
                Some(NatEventKind::SessionDelete),
                Some(4000),
                ip("203.0.113.1"),
                Some(5000),
                Some(80)
            )
        );
    }

    #[test]
    fn rejects_with_reasons() {
        let c = ctx();
        assert_rejects(
            Format::Cisco,
            &c,
            [
                (
                    "%ASA-5-111008: User 'x' executed the 'enable' command.",
                    "ASA-5-111008 carries no",
                ),
                (
                    "%PIX-2-106006: Deny inbound UDP from ***/20031 to ***/20031 on",
                    "bad source",
                ),
                (
                    "%ASA-6-305011: Built dynamic TCP translation from inside:x/1 to outside:y/2",
                    "not addresses",
                ),
                (
                    "%NAT-6-LOG_TRANSLATION: Created Translation TCP 10.0.0.1:1",
                    "bad address",
                ),
            ],
        );
    }

    /// Every line of cisco_asa.txt through auto-detection; the sources' expectations where they
    /// give values.
    #[test]
    fn corpus_cisco() {
        let c = ctx();
        let (mut nats, mut flows, mut fws, mut rejected, mut checked) = (0, 0, 0, Vec::new(), 0);
        for smp in test_corpus::samples("cisco_asa.txt") {
            let mut out = Vec::new();
            let line = smp.line.as_str();
            let ev = match parse_message(line.as_bytes(), Format::Auto, &c, &mut out) {
                Ok(p) => {
                    assert_eq!(p.format, "cisco", "line {}", smp.line_no);
                    out.pop().unwrap()
                }
                Err(e) => {
                    rejected.push((smp.line_no, e.to_string()));
                    continue;
                }
            };
            let x = smp.expect().unwrap_or("");
            let v = |k: &str| test_corpus::annotation_value(x, k);
            let vip = |k: &str| v(k).and_then(|a| a.parse::<IpAddr>().ok());
            match ev {
                Event::Nat(n) => {
                    nats += 1;
                    assert!(
                        n.x_ip.is_some() && n.src_ip.is_some(),
                        "line {}",
                        smp.line_no
                    );
                    // Every translation line names "from IF:inside to IF:mapped" or the
                    // mapped address in parentheses / gaddr: the public side must occur in it.
                    let x_text = n.x_ip.unwrap().to_string();
                    assert!(line.contains(&x_text), "line {}", smp.line_no);
                    // xlate lines: "from IF:real/port to IF:mapped/port", read by plain splits.
                    if line.contains(" translation from ") {
                        let rest = line.split(" translation from ").nth(1).unwrap();
                        let (from, to) = rest.split_once(" to ").unwrap();
                        let to = to.split_whitespace().next().unwrap();
                        let side = |t: &str| {
                            let (ip, port) = t.split_once(':').unwrap().1.rsplit_once('/').unwrap();
                            (ip.parse::<IpAddr>().ok(), port.parse::<u16>().ok())
                        };
                        assert_eq!((n.src_ip, n.src_port), side(from), "line {}", smp.line_no);
                        assert_eq!((n.x_ip, n.x_port), side(to), "line {}", smp.line_no);
                        checked += 2;
                    }
                    if let Some(sip) = vip("source.ip").or(vip("src_ip")) {
                        assert_eq!(n.src_ip, Some(sip), "line {}", smp.line_no);
                        checked += 1;
                    }
                    if let Some(xip) = vip("source.nat.ip").or(vip("src_xlated_ip")) {
                        assert_eq!(n.x_ip, Some(xip), "line {}", smp.line_no);
                        checked += 1;
                    }
                    // (logstash's ECS reading of 305011 calls the mapped side "destination".)
                    if let Some(d) = vip("destination.ip").filter(|_| n.dst_ip.is_some()) {
                        assert_eq!(n.dst_ip, Some(d), "line {}", smp.line_no);
                        checked += 1;
                    }
                    // Connections (302013 …) are observations; translations open and close.
                    let connection = line.contains(" connection ");
                    if connection {
                        assert_eq!(n.event, Some(NatEventKind::MappingObserved));
                        // The span: the duration a teardown states, or the log instant alone; a
                        // connection built is a sighting (no end).
                        let secs = line
                            .split(" duration ")
                            .nth(1)
                            .and_then(|d| d.split_whitespace().next())
                            .map_or(0, |d| {
                                d.split(':')
                                    .fold(0i64, |acc, f| acc * 60 + f.parse::<i64>().unwrap())
                            });
                        let want = (!line.contains("Built")).then_some(secs * 1_000_000);
                        assert_eq!(n.end_time.map(|e| e - n.time), want, "line {}", smp.line_no);
                    } else if line.contains("Teardown") || line.contains("Deleted") {
                        assert!(n.event.is_some_and(NatEventKind::closes));
                    } else {
                        assert!(n.event.is_some_and(NatEventKind::opens));
                    }
                    if line.contains("duration") && !connection {
                        assert_eq!(n.end_time, Some(n.time));
                    }
                    checked += 2;
                }
                Event::Flow(f) => {
                    flows += 1;
                    if let (Some(a), Some(b)) = (vip("src_ip"), vip("dst_ip")) {
                        // logstash's legacy fields name the pair as printed (foreign first).
                        assert_eq!((f.dst_ip, f.src_ip), (Some(a), Some(b)));
                        checked += 2;
                    }
                    if let Some(b) = line.split(" bytes ").nth(1) {
                        let b: u64 = b.split_whitespace().next().unwrap().parse().unwrap();
                        assert_eq!(f.bytes, Some(b), "line {}", smp.line_no);
                        checked += 1;
                    }
                }
                Event::Firewall(fw) => {
                    fws += 1;
                    let want = if line.contains(" permitted ") {
                        FirewallAction::Allow
                    } else {
                        FirewallAction::Deny
                    };
                    assert_eq!(fw.action, want, "line {}", smp.line_no);
                    let s_text = fw.src_ip.unwrap().to_string();
                    assert!(line.contains(&s_text), "line {}", smp.line_no);
                    checked += 1;
                    if let Some(s) = vip("src_ip") {
                        assert_eq!(fw.src_ip, Some(s), "line {}", smp.line_no);
                        assert_eq!(fw.src_port, v("src_port").and_then(|p| p.parse().ok()));
                        checked += 2;
                    }
                    if let Some(d) = vip("destination.ip") {
                        assert_eq!(fw.dst_ip, Some(d));
                        assert_eq!(
                            fw.dst_port,
                            v("destination.port").and_then(|p| p.parse().ok())
                        );
                        checked += 2;
                    }
                    if let Some(g) = line.split("access-group \"").nth(1) {
                        assert_eq!(fw.rule.as_deref(), g.split('"').next());
                        checked += 1;
                    }
                }
                other => panic!("not a Cisco event: {other:?}"),
            }
        }
        // Translations: 305011 ×4, 305012 ×6, 302013 with a mapped address, 302015 ×2,
        // 302020 / 302021 (faddr form), IOS-XE LOG_TRANSLATION.
        assert_eq!(nats, 16, "nat");
        // 302013 ×2 without translation, 302014 ×2, 302018, 302021 (pairs form).
        assert_eq!(flows, 6, "flows");
        // 106001 ×3, 106006 ×2, 106010 ×2, 106011 ×2, 106014, 106015 ×3, 106017, 106020 –
        // 106022, 106023 ×7 (incl. the 102030-tagged one), 106002, 106100 ×2.
        assert_eq!(fws, 27, "firewall; rejected: {rejected:#?}");
        assert_eq!(
            rejected.len(),
            test_corpus::samples("cisco_asa.txt").len() - 49
        );
        for (n, e) in &rejected {
            assert!(
                e.contains("carries no NAT") || e.contains("bad source") || e.starts_with("auto:"),
                "line {n}: {e}"
            );
        }
        assert!(checked >= 60, "checked {checked}");
    }
}
