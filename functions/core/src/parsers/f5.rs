//! F5 BIG-IP CGNAT / LSN log lines (the syslog envelope already peeled). BIG-IP writes them in
//! three shapes, the same fields in each (event, client, translation):
//!
//! ```text
//! "LSN_ADD""10.10.10.1:33950""5.5.5.1:10000"                       default (legacy) format
//! lsn_event="LSN_ADD",cli="10.10.10.1:33950",nat="5.5.5.1:10000"    Splunk (key=value) format
//! LSN_ADD 100.64.0.5%2:40000 6 203.0.113.9%0:2001 198.51.100.1 443  cgn-ec's generator (unverified)
//! ```
//!
//! - The first two shapes are F5's "NAPT log examples" (BIG-IP CGNAT Implementations, "Using
//!   CGNAT Translation Modes", 13.1 and 15.0). They carry no protocol and no destination. (The
//!   manual's remote-server example shows a space after each address's colon; read as an RFC
//!   3164 TAG, that line is rejected, with its bytes kept: no device line confirms it.) The third is the
//!   only other public description (cgn-ec-consumer's synthetic generator); it is kept because
//!   deployments configured after it exist, and it is the only one with protocol and destination.
//! - `LSN_ADD` / `LSN_DELETE` (and `LSN_INBOUND_ADD` / `LSN_INBOUND_DELETE`, direction "in") →
//!   SessionCreate / SessionDelete. `LSN_PB_ALLOCATED` / `LSN_PB_RELEASED` → PortBlockAlloc /
//!   PortBlockRelease with the translation written `addr:first-last`; no public line of these was
//!   found, so their shape is the session one with a port range — unverified.
//! - Endpoints: `addr:port`, `addr%rd:port` (`%rd` the BIG-IP route domain, kept as `vrf` unless
//!   it is 0, the default, as conntrack zone 0 is), and IPv6 clients (NAT64, DS-Lite) as
//!   `addr.port`.

use std::net::IpAddr;

use super::fields::{addr_port, clean_ports, port_range};
use super::util::{find_lit, parse_ip, parse_u8, parse_u16, parse_u32};
use super::{ParseCtx, ParseError};
use crate::model::{Event, Micros, NatEvent, NatEventKind};

const FORMAT: &str = "f5";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

const EVENTS: [(&str, NatEventKind, &str); 6] = [
    ("LSN_ADD", NatEventKind::SessionCreate, "out"),
    ("LSN_DELETE", NatEventKind::SessionDelete, "out"),
    ("LSN_INBOUND_ADD", NatEventKind::SessionCreate, "in"),
    ("LSN_INBOUND_DELETE", NatEventKind::SessionDelete, "in"),
    ("LSN_PB_ALLOCATED", NatEventKind::PortBlockAlloc, "out"),
    ("LSN_PB_RELEASED", NatEventKind::PortBlockRelease, "out"),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// `"LSN_ADD""client""translation"`
    Quoted,
    /// `lsn_event="LSN_ADD",cli="…",nat="…"`
    KeyValue,
    /// `LSN_ADD client proto translation [dst dport]`
    Spaced,
}

/// The fields of a line, whatever its shape.
#[derive(Debug, Default)]
struct Fields<'a> {
    client: Option<&'a str>,
    translation: Option<&'a str>,
    protocol: Option<&'a str>,
    dst: Option<&'a str>,
    dst_port: Option<&'a str>,
}

/// Cheap check used by format detection: a known `LSN_…` event word in one of the shapes.
pub fn looks_like(body: &str) -> bool {
    find_event(body).is_some_and(|(name, shape, rest)| match shape {
        Shape::Quoted | Shape::KeyValue => EVENTS.iter().any(|(n, _, _)| *n == name),
        Shape::Spaced => rest
            .split_whitespace()
            .next()
            .is_some_and(|t| t.contains('%')),
    })
}

/// The event word, the shape it is written in (from the character before it) and the text after.
fn find_event(body: &str) -> Option<(&str, Shape, &str)> {
    let mut from = 0;
    while let Some(rel) = find_lit(body.get(from..)?, "LSN_") {
        let at = from + rel;
        let shape = match body.get(..at)? {
            "" => Some(Shape::Spaced),
            b if b.ends_with("=\"") => Some(Shape::KeyValue),
            b if b.ends_with('"') => Some(Shape::Quoted),
            b if b.ends_with(' ') => Some(Shape::Spaced),
            _ => None,
        };
        let rest = body.get(at..)?;
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(rest.len());
        if let Some(shape) = shape {
            return Some((rest.get(..end)?, shape, rest.get(end..)?));
        }
        from = at + 4;
    }
    None
}

/// `block`: a port-block event (its spaced shape has no protocol).
fn fields<'a>(
    shape: Shape,
    block: bool,
    body: &'a str,
    rest: &'a str,
) -> Result<Fields<'a>, ParseError> {
    let mut f = Fields::default();
    match shape {
        Shape::Quoted => {
            // rest starts at the event's closing quote: `"` `"client"` `"translation"` …
            let mut quoted = rest
                .strip_prefix('"')
                .ok_or_else(|| err("unterminated event field"))?
                .split('"')
                .skip(1)
                .step_by(2);
            f.client = quoted.next();
            f.translation = quoted.next();
        }
        Shape::KeyValue => {
            for pair in body.split(',') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim() {
                    "cli" => f.client = Some(v),
                    "nat" => f.translation = Some(v),
                    "dst" => f.dst = Some(v),
                    "proto" | "protocol" => f.protocol = Some(v),
                    _ => {}
                }
            }
        }
        Shape::Spaced => {
            let mut toks = rest.split_whitespace();
            f.client = toks.next();
            if !block {
                f.protocol = Some(toks.next().ok_or_else(|| err("no protocol"))?);
            }
            f.translation = toks.next();
            f.dst = toks.next();
            f.dst_port = toks.next();
        }
    }
    Ok(f)
}

/// Parses one line into one NAT event; returns the number pushed (1).
pub fn parse(
    body: &str,
    default_time: Micros,
    _ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let (name, shape, rest) = find_event(body).ok_or_else(|| err("no LSN_ event word"))?;
    let &(_, kind, direction) = EVENTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| err(format!("{name} carries no NAT mapping")))?;
    let block = matches!(
        kind,
        NatEventKind::PortBlockAlloc | NatEventKind::PortBlockRelease
    );
    let f = fields(shape, block, body, rest)?;
    let client = f.client.ok_or_else(|| err("no client address"))?;
    let (src_ip, rd, src_port) = rd_endpoint(client)?;
    let mut e = NatEvent {
        time: default_time,
        event: Some(kind),
        src_ip: Some(src_ip),
        vrf: rd.filter(|r| *r != 0).map(|r| r.to_string()),
        direction: Some(direction),
        ..NatEvent::default()
    };
    if let Some(p) = f.protocol {
        e.protocol = Some(parse_u8(p).ok_or_else(|| err(format!("bad protocol {p:?}")))?);
    }
    if block {
        let t = f.translation.ok_or_else(|| err("no translation address"))?;
        let (addr, range) = t
            .rsplit_once(':')
            .ok_or_else(|| err(format!("no port range in {t:?}")))?;
        let addr = addr.split_once('%').map_or(addr, |(a, _)| a);
        e.x_ip = Some(parse_ip(addr).ok_or_else(|| err(format!("bad address {addr:?}")))?);
        let (lo, hi) = port_range(range).ok_or_else(|| err(format!("bad port range {range:?}")))?;
        e.x_port = Some(lo);
        e.x_port_end = Some(hi);
    } else {
        e.src_port = src_port;
        let t = f.translation.ok_or_else(|| err("no translation address"))?;
        let (x_ip, _, x_port) = rd_endpoint(t)?;
        e.x_ip = Some(x_ip);
        e.x_port = x_port;
        if let Some(d) = f.dst {
            let (dst_ip, _, dst_port) = rd_endpoint(d)?;
            e.dst_ip = Some(dst_ip);
            e.dst_port = match f.dst_port {
                Some(p) => Some(parse_u16(p).ok_or_else(|| err(format!("bad port {p:?}")))?),
                None => dst_port,
            };
        }
        clean_ports(&mut e);
    }
    out.push(Event::Nat(e));
    Ok(1)
}

/// `addr%rd:port`, `addr%rd`, `addr:port`, `addr` — and IPv6 with its port after a dot
/// (`2001:db8::5.39900`, `2001:db8::5%3.39900`), as BIG-IP writes NAT64 / DS-Lite clients.
fn rd_endpoint(tok: &str) -> Result<(IpAddr, Option<u32>, Option<u16>), ParseError> {
    let bad = || err(format!("bad endpoint {tok:?}"));
    let (addr, rd_port) = match tok.split_once('%') {
        Some((addr, rest)) => (addr, Some(rest)),
        None => (tok, None),
    };
    // IPv6 with a dotted port: the address has a colon, the part after the last dot is a port
    // and what precedes it parses as IPv6 (so "::ffff:1.2.3.4" stays an address).
    let v6_dot_port = |s: &str| -> Option<(IpAddr, u16)> {
        let (a, p) = s.rsplit_once('.')?;
        let ip = parse_ip(a).filter(|ip| ip.is_ipv6())?;
        Some((ip, parse_u16(p)?))
    };
    match rd_port {
        Some(rest) => {
            let ip = parse_ip(addr).ok_or_else(bad)?;
            let sep = if ip.is_ipv6() && !rest.contains(':') {
                '.'
            } else {
                ':'
            };
            let (rd, port) = match rest.split_once(sep) {
                Some((rd, p)) => (rd, Some(parse_u16(p).ok_or_else(bad)?)),
                None => (rest, None),
            };
            Ok((ip, Some(parse_u32(rd).ok_or_else(bad)?), port))
        }
        None if addr.contains(':') && !addr.starts_with('[') => match v6_dot_port(addr) {
            Some((ip, port)) => Ok((ip, None, Some(port))),
            None => {
                let (ip, port) = addr_port(addr, ':').ok_or_else(bad)?;
                Ok((ip, None, port))
            }
        },
        None => {
            let (ip, port) = addr_port(addr, ':').ok_or_else(bad)?;
            Ok((ip, None, port))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::test_support::{self, T0, assert_rejects, ip, one_auto, utc_ctx};
    use super::super::util::{civil_micros, test_corpus};
    use super::*;

    fn ctx() -> ParseCtx {
        utc_ctx(T0)
    }

    fn nat(line: &str) -> NatEvent {
        test_support::nat(one_auto(line, &ctx(), "f5"))
    }

    /// Lines built at test time from f5.txt's `# template:` (f5.txt holds no captured line):
    /// every placeholder is filled, in the template's order, and each event word is tried.
    #[test]
    fn template_lines_from_corpus() {
        let text = test_corpus::read("f5.txt");
        let template = text
            .lines()
            .find_map(|l| l.strip_prefix("# template: "))
            .expect("f5.txt template");
        let shape = template.split("     ").next().unwrap().trim();
        assert!(shape.starts_with("test LSN_{event} "), "{shape}");
        assert!(test_corpus::samples("f5.txt").is_empty());
        let events: Vec<&str> = template
            .split("event in ")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split('|')
            .collect();
        assert_eq!(events, ["ADD", "DELETE", "INBOUND_ADD", "INBOUND_DELETE"]);
        let cases = [
            (
                "100.64.7.9",
                "2",
                "40001",
                "6",
                "203.0.113.44",
                "1034",
                "198.51.100.5",
                "443",
            ),
            (
                "2001:db8:5::9",
                "0",
                "5353",
                "17",
                "203.0.113.45",
                "6000",
                "198.51.100.53",
                "53",
            ),
        ];
        let mut n = 0;
        for (src, vrf, sport, proto, x, xport, dst, dport) in cases {
            for ev in &events {
                let line = format!(
                    "<134>Jun 15 11:00:00 {}",
                    shape
                        .replace("{event}", ev)
                        .replace("{src_ip}", src)
                        .replace("{vrf_id}", vrf)
                        .replace("{src_port}", sport)
                        .replace("{protocol}", proto)
                        .replace("{x_ip}", x)
                        .replace("{x_port}", xport)
                        .replace("{dst_ip}", dst)
                        .replace("{dst_port}", dport)
                );
                let e = nat(&line);
                assert_eq!(e.time, civil_micros(2024, 6, 15, 11, 0, 0, 0).unwrap());
                let want = if ev.ends_with("ADD") {
                    NatEventKind::SessionCreate
                } else {
                    NatEventKind::SessionDelete
                };
                assert_eq!(e.event, Some(want), "{line}");
                assert_eq!(
                    e.direction,
                    Some(if ev.starts_with("INBOUND") {
                        "in"
                    } else {
                        "out"
                    })
                );
                assert_eq!(e.src_ip, src.parse().ok());
                assert_eq!(e.src_port, sport.parse().ok());
                assert_eq!(e.protocol, proto.parse().ok());
                assert_eq!(e.x_ip, x.parse().ok());
                assert_eq!(e.x_port, xport.parse().ok());
                assert_eq!(e.dst_ip, dst.parse().ok());
                assert_eq!(e.dst_port, dport.parse().ok());
                assert_eq!(e.vrf, (vrf != "0").then(|| vrf.to_string()));
                n += 1;
            }
        }
        assert_eq!(n, 8);
    }

    /// The shapes of F5's "NAPT log examples" (BIG-IP CGNAT Implementations 13.1 / 15.0, "Using
    /// CGNAT Translation Modes"): default format to a remote server and to local syslog, the
    /// Splunk key=value format, route domains, and a NAT64 client with its port after a dot.
    #[test]
    fn documented_shapes() {
        let v4 = (ip("10.10.10.1"), ip("5.5.5.1"));
        for (line, client, sport, x_port, vrf, kind) in [
            (
                r#"<134>Mar 27 11:17:39 10.10.10.200 "LSN_ADD""10.10.10.1:33950""5.5.5.1:10000""#,
                v4.0,
                33950,
                10000,
                None,
                NatEventKind::SessionCreate,
            ),
            (
                r#"<30>Mar 27 11:23:17 localhost info tmm[32683]: "LSN_ADD""10.10.10.1:33950""5.5.5.1:10000""#,
                v4.0,
                33950,
                10000,
                None,
                NatEventKind::SessionCreate,
            ),
            (
                r#"<134>Mar 27 11:17:39 bigip1 lsn_event="LSN_ADD",cli="10.10.10.1:33950",nat="5.5.5.1:10000""#,
                v4.0,
                33950,
                10000,
                None,
                NatEventKind::SessionCreate,
            ),
            (
                r#"<134>Mar 27 11:17:39 bigip1 lsn_event="LSN_INBOUND_DELETE",cli="10.10.10.1%11:59187",nat="5.5.5.1%22:10000""#,
                v4.0,
                59187,
                10000,
                Some("11"),
                NatEventKind::SessionDelete,
            ),
            (
                r#"<134>Mar 27 11:17:39 10.10.10.200 "LSN_ADD""2701:1:12:123:1234:432:43:100.39900""5.5.5.1:10000""#,
                ip("2701:1:12:123:1234:432:43:100"),
                39900,
                10000,
                None,
                NatEventKind::SessionCreate,
            ),
        ] {
            let e = nat(line);
            assert_eq!(e.event, Some(kind), "{line}");
            assert_eq!(e.src_ip, client, "{line}");
            assert_eq!(e.src_port, Some(sport), "{line}");
            assert_eq!(e.x_ip, v4.1, "{line}");
            assert_eq!(e.x_port, Some(x_port), "{line}");
            assert_eq!(e.vrf.as_deref(), vrf, "{line}");
            assert_eq!((e.protocol, e.dst_ip), (None, None), "{line}");
            // The lines carry no time of their own: the syslog header's is the event's.
            let (m, sec) = if line.contains("11:23:17") {
                (23, 17)
            } else {
                (17, 39)
            };
            assert_eq!(
                e.time,
                civil_micros(2024, 3, 27, 11, m, sec, 0).unwrap(),
                "{line}"
            );
        }
        let e =
            nat(r#"lsn_event="LSN_PB_ALLOCATED",cli="100.64.0.5%3",nat="203.0.113.9:2048-2303""#);
        assert_eq!(
            (e.event, e.x_ip, e.x_port, e.x_port_end, e.vrf.as_deref()),
            (
                Some(NatEventKind::PortBlockAlloc),
                ip("203.0.113.9"),
                Some(2048),
                Some(2303),
                Some("3")
            )
        );
        let e = nat(r#""LSN_PB_RELEASED""100.64.0.5""203.0.113.9%0:2048-2303""#);
        assert_eq!(
            (e.event, e.x_port_end),
            (Some(NatEventKind::PortBlockRelease), Some(2303))
        );
        assert_rejects(
            Format::F5,
            &ctx(),
            [
                (r#""LSN_ADD""10.10.10.1:33950""#, "no translation"),
                (
                    r#""LSN_ADD""10.10.10.999:33950""5.5.5.1:10000""#,
                    "bad endpoint",
                ),
                (r#"lsn_event="LSN_ADD",nat="5.5.5.1:10000""#, "no client"),
                (r#""LSN_DEBUG""10.10.10.1:1""5.5.5.1:2""#, "carries no NAT"),
            ],
        );
    }

    #[test]
    fn port_blocks_and_rejects() {
        let e = nat("bigip1 LSN_PB_ALLOCATED 100.64.0.5%3 203.0.113.9%0:2048-2303");
        assert_eq!(e.event, Some(NatEventKind::PortBlockAlloc));
        assert_eq!(
            (e.x_port, e.x_port_end, e.vrf.as_deref(), e.protocol),
            (Some(2048), Some(2303), Some("3"), None)
        );
        let e = nat("LSN_PB_RELEASED 100.64.0.5%0 203.0.113.9%0:2048-2303");
        assert_eq!(
            (e.event, e.vrf),
            (Some(NatEventKind::PortBlockRelease), None)
        );
        let e = nat("LSN_ADD 100.64.0.5%0:1000 6 203.0.113.9%0:2000");
        assert_eq!((e.dst_ip, e.dst_port), (None, None));
        assert_rejects(
            Format::F5,
            &ctx(),
            [
                (
                    "LSN_PB_ZOMBIE 100.64.0.5%0 203.0.113.9%0:1-2",
                    "carries no NAT",
                ),
                ("LSN_ADD 100.64.0.5%x:1 6 203.0.113.9%0:2", "bad endpoint"),
                ("LSN_ADD 100.64.0.5%0:1 tcp 203.0.113.9%0:2", "bad protocol"),
                (
                    "LSN_PB_ALLOCATED 100.64.0.5%0 203.0.113.9%0:300-200",
                    "bad port range",
                ),
            ],
        );
    }
}
