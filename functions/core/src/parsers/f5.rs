//! F5 BIG-IP CGNAT / LSN log lines (the syslog envelope already peeled):
//!
//! ```text
//! LSN_ADD 100.64.0.5%2:40000 6 203.0.113.9%0:2001 198.51.100.1 443
//! LSN_PB_ALLOCATED 100.64.0.5%2 203.0.113.9%0:2048-2303
//! ```
//!
//! - `LSN_ADD` / `LSN_DELETE` (and `LSN_INBOUND_ADD` / `LSN_INBOUND_DELETE`, direction "in"):
//!   `client%rd:port protocol translation%rd:port [dst_ip dst_port]` → SessionCreate /
//!   SessionDelete. Field order from the only public description (cgn-ec-consumer's generator
//!   template and parser regex); the destination is optional because mapping-only logs omit it.
//! - `LSN_PB_ALLOCATED` / `LSN_PB_RELEASED`: `client%rd translation%rd:first-last` →
//!   PortBlockAlloc / PortBlockRelease. No public line of this event was found; the shape is the
//!   session form without ports and protocol, with the block's range.
//! - `%rd` is the BIG-IP route domain of the client: kept as `vrf` (route domain 0, the
//!   default, is None, as conntrack zone 0 is). IPv6 clients (NAT64 / DS-Lite) work the same
//!   way: the `%` separates the address from the route domain.
//!
//! F5's Splunk-formatted (key=value) CGNAT logs are not read.

use std::net::IpAddr;

use super::fields::{addr_port, clean_ports, port_range};
use super::util::{parse_ip, parse_u8, parse_u16, parse_u32};
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

/// Cheap check used by format detection: an `LSN_…` word followed by an `addr%rd` token.
pub fn looks_like(body: &str) -> bool {
    find_event(body).is_some_and(|(_, rest)| {
        rest.split_whitespace()
            .next()
            .is_some_and(|t| t.contains('%'))
    })
}

fn find_event(body: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(rel) = body.get(from..)?.find("LSN_") {
        let at = from + rel;
        let before_ok = at == 0 || body.get(..at).is_some_and(|b| b.ends_with(' '));
        let rest = body.get(at..)?;
        let end = rest.find(' ').unwrap_or(rest.len());
        if before_ok {
            return Some((rest.get(..end)?, rest.get(end..)?));
        }
        from = at + 4;
    }
    None
}

/// Parses one line into one NAT event; returns the number pushed (1).
pub fn parse(
    body: &str,
    default_time: Micros,
    _ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let (name, rest) = find_event(body).ok_or_else(|| err("no LSN_ event word"))?;
    let &(_, kind, direction) = EVENTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| err(format!("{name} carries no NAT mapping")))?;
    let toks: Vec<&str> = rest.split_whitespace().collect();
    let client = toks.first().ok_or_else(|| err("no client address"))?;
    let (src_ip, rd, src_port) = rd_endpoint(client)?;
    let mut e = NatEvent {
        time: default_time,
        event: Some(kind),
        src_ip: Some(src_ip),
        vrf: rd.filter(|r| *r != 0).map(|r| r.to_string()),
        direction: Some(direction),
        ..NatEvent::default()
    };
    if matches!(
        kind,
        NatEventKind::PortBlockAlloc | NatEventKind::PortBlockRelease
    ) {
        let t = toks.get(1).ok_or_else(|| err("no translation address"))?;
        let (addr, range) = t
            .rsplit_once(':')
            .ok_or_else(|| err(format!("no port range in {t:?}")))?;
        let addr = addr.split_once('%').map_or(addr, |(a, _)| a);
        e.x_ip = Some(parse_ip(addr).ok_or_else(|| err(format!("bad address {addr:?}")))?);
        let (lo, hi) = port_range(range).ok_or_else(|| err(format!("bad port range {range:?}")))?;
        e.x_port = Some(lo);
        e.x_port_end = Some(hi);
    } else {
        let p = toks.get(1).ok_or_else(|| err("no protocol"))?;
        e.protocol = Some(parse_u8(p).ok_or_else(|| err(format!("bad protocol {p:?}")))?);
        e.src_port = src_port;
        let t = toks.get(2).ok_or_else(|| err("no translation address"))?;
        let (x_ip, _, x_port) = rd_endpoint(t)?;
        e.x_ip = Some(x_ip);
        e.x_port = x_port;
        if let Some(d) = toks.get(3) {
            e.dst_ip = Some(parse_ip(d).ok_or_else(|| err(format!("bad destination {d:?}")))?);
            e.dst_port = match toks.get(4) {
                Some(p) => Some(parse_u16(p).ok_or_else(|| err(format!("bad port {p:?}")))?),
                None => None,
            };
        }
        clean_ports(&mut e);
    }
    out.push(Event::Nat(e));
    Ok(1)
}

/// `addr%rd:port`, `addr%rd`, or `addr:port` without a route domain.
fn rd_endpoint(tok: &str) -> Result<(IpAddr, Option<u32>, Option<u16>), ParseError> {
    let bad = || err(format!("bad endpoint {tok:?}"));
    match tok.split_once('%') {
        Some((addr, rest)) => {
            let ip = parse_ip(addr).ok_or_else(bad)?;
            let (rd, port) = match rest.split_once(':') {
                Some((rd, p)) => (rd, Some(parse_u16(p).ok_or_else(bad)?)),
                None => (rest, None),
            };
            Ok((ip, Some(parse_u32(rd).ok_or_else(bad)?), port))
        }
        None => {
            let (ip, port) = addr_port(tok, ':').ok_or_else(bad)?;
            Ok((ip, None, port))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::test_support::{self, T0, assert_rejects, one_auto, utc_ctx};
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
