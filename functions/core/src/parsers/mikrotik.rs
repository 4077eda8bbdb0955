//! MikroTik RouterOS firewall log lines (topic `firewall,info`; a rule with `log=yes` logs each
//! packet it matches), the syslog header already peeled:
//!
//! ```text
//! [firewall,info ][PREFIX ]forward: in:bridge out:ether1, [connection-state:…,] [src-mac …,]
//!     proto TCP (SYN), 192.168.88.7:40000->129.6.15.28:123, NAT (192.168.88.7:40000->203.0.113.5:40000)->129.6.15.28:123, len 76
//! ```
//!
//! - The chain (`forward`, `input`, `output`, `srcnat`, `dstnat`, custom) is the word before
//!   `: in:`; text before it is the rule's log prefix, glued or not (`0-Napbiotec: forward:`).
//!   Interface names may hold spaces (`out:Inspira Fibre Uplink,`); a comma ends them.
//! - The NAT annotation shows the translation conntrack applied: `NAT (a:p->x:y)->b:q` for
//!   source NAT, `NAT a:p->(b:q->c:r)` for destination NAT, `NAT (a:p->x:y)->(b:q->c:r)` for
//!   both. A source translation (x:y differs from a:p) is the mapping attribution needs: the
//!   line becomes a NAT event with `src = a:p`, `x = x:y`, `dst = b:q` (the address the
//!   subscriber sent to). The line is one packet, not a session start or end, so the kind is
//!   mapping_observed at that instant with no `end_time`: a sighting, its end not known.
//! - Without a source translation the line is a firewall event. RouterOS does not print the
//!   rule's action, so the verdict comes from the prefix words as for iptables (`…-accept` →
//!   allow, `drop` → deny, none → log). The rule is the prefix, else the chain.
//! - Ports only for TCP / UDP / SCTP / UDP-Lite / DCCP; ICMP's `(type 8, code 0)` is skipped.
//! - The line carries no time of its own: the envelope's stands.

use std::net::IpAddr;

use crate::model::{
    Event, FirewallEvent, Micros, NatEvent, NatEventKind, protocol_number as proto_number,
};

use super::ParseError;
use super::endpoint;
use super::iptables::action_of;
use super::util::parse_u32;

const FORMAT: &str = "mikrotik";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    find_in(body).is_some()
        && body.contains(" out:")
        && body.contains("proto ")
        && body.contains("->")
}

/// Byte offset of the `in:` that starts the interface list: at the start or after `: `.
fn find_in(s: &str) -> Option<usize> {
    if s.starts_with("in:") {
        return Some(0);
    }
    s.find(": in:").map(|p| p + 2)
}

type Endpoint = (IpAddr, Option<u16>);

/// Parses one log line into one NAT or firewall event; returns the number of events pushed (1).
pub fn parse(line: &str, default_time: Micros, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let s = strip_topics(line.trim());
    let at = find_in(s).ok_or_else(|| err("no `in:` interface field"))?;
    // "[prefix ]chain: " before in:.
    let head = s.get(..at).unwrap_or("").trim_end();
    let head = head.strip_suffix(':').unwrap_or(head).trim_end();
    let (prefix, chain) = match head.rsplit_once(' ') {
        Some((p, c)) => (p.trim().trim_end_matches(':').trim(), c),
        None => ("", head),
    };
    let rest = s.get(at + 3..).unwrap_or("");
    let (in_if, rest) = rest
        .split_once(" out:")
        .ok_or_else(|| err("no `out:` interface field"))?;
    let (out_if, rest) = rest
        .split_once(',')
        .ok_or_else(|| err("nothing after the interfaces"))?;
    let pos = rest.find("proto ").ok_or_else(|| err("no `proto` field"))?;
    let rest = rest.get(pos + 6..).unwrap_or("");
    // "TCP (SYN), a->b, …" / "ICMP (type 8, code 0), a->b, …" / "UDP, a->b, …".
    let name_end = rest.find([' ', ',']).unwrap_or(rest.len());
    let name = rest.get(..name_end).unwrap_or("");
    let protocol = Some(
        proto_number(name)
            .or_else(|| routeros_proto(name))
            .ok_or_else(|| err(format!("unknown protocol {name:?}")))?,
    );
    let mut rest = rest.get(name_end..).unwrap_or("").trim_start();
    if let Some(r) = rest.strip_prefix('(') {
        let close = r
            .find(')')
            .ok_or_else(|| err("protocol details not closed"))?;
        rest = r.get(close + 1..).unwrap_or("");
    }
    let rest = rest
        .trim_start()
        .strip_prefix(',')
        .ok_or_else(|| err("no address pair after the protocol"))?;
    let ports = endpoint::has_ports(protocol);

    let (mut tuple, mut nat, mut length) = (None, None, None);
    for item in rest.split(", ").map(str::trim) {
        if let Some(n) = item.strip_prefix("NAT ") {
            nat = Some(n);
        } else if let Some(l) = item.strip_prefix("len ") {
            length = Some(parse_u32(l).ok_or_else(|| err(format!("bad len {l:?}")))?);
        } else if tuple.is_none() {
            tuple = Some(item);
        }
    }
    let tuple = tuple.ok_or_else(|| err("no address pair"))?;
    let (src, dst) = pair(tuple, ports)?;
    let snat = match nat {
        Some(n) => source_translation(n, ports)?,
        None => None,
    };

    let ev = match snat {
        Some((inside, public)) if inside != public => Event::Nat(NatEvent {
            time: default_time,
            event: Some(NatEventKind::MappingObserved),
            protocol,
            src_ip: Some(inside.0),
            src_port: inside.1,
            x_ip: Some(public.0),
            x_port: public.1,
            dst_ip: Some(dst.0),
            dst_port: dst.1,
            direction: Some("out"),
            // A packet log line is a sighting: the mapping's end is not known.
            end_time: None,
            ..NatEvent::default()
        }),
        _ => {
            let iface = |v: &str| {
                let v = v.trim();
                (!v.is_empty() && !v.starts_with("(unknown")).then(|| v.to_owned())
            };
            let rule = if prefix.is_empty() { chain } else { prefix };
            Event::Firewall(FirewallEvent {
                time: default_time,
                action: action_of(prefix),
                rule: (!rule.is_empty()).then(|| rule.to_owned()),
                protocol,
                src_ip: Some(src.0),
                src_port: src.1,
                dst_ip: Some(dst.0),
                dst_port: dst.1,
                in_if: iface(in_if),
                out_if: iface(out_if),
                length,
                vrf: None,
            })
        }
    };
    out.push(ev);
    Ok(1)
}

/// Drops the `firewall,info` topics RouterOS puts in front when the syslog tag did not take
/// them.
fn strip_topics(s: &str) -> &str {
    let (tok, rest) = s.split_once(' ').unwrap_or((s, ""));
    if tok == "firewall" || tok.starts_with("firewall,") {
        rest.trim_start()
    } else {
        s
    }
}

/// Protocol names RouterOS prints that the shared table lacks.
fn routeros_proto(name: &str) -> Option<u8> {
    [
        ("ipsec-esp", 50),
        ("ipsec-ah", 51),
        ("ipencap", 4),
        ("ipv6-encap", 41),
    ]
    .iter()
    .find(|(k, _)| k.eq_ignore_ascii_case(name))
    .map(|(_, v)| *v)
}

/// `a:p->b:q`.
fn pair(s: &str, ports: bool) -> Result<(Endpoint, Endpoint), ParseError> {
    let (a, b) = s
        .split_once("->")
        .ok_or_else(|| err(format!("bad address pair {s:?}")))?;
    let a = endpoint::maybe_port(a, ports).ok_or_else(|| err(format!("bad source {a:?}")))?;
    let b = endpoint::maybe_port(b, ports).ok_or_else(|| err(format!("bad destination {b:?}")))?;
    Ok((a, b))
}

/// The source translation of a NAT annotation, `(a:p->x:y)->…`: (inside, public). None for a
/// destination-only translation `a:p->(b:q->c:r)`.
fn source_translation(n: &str, ports: bool) -> Result<Option<(Endpoint, Endpoint)>, ParseError> {
    let n = n.trim();
    let Some(inner) = n.strip_prefix('(') else {
        // Destination NAT only; still check its shape so garbage does not pass as a packet log.
        let (_, d) = n
            .split_once("->(")
            .ok_or_else(|| err(format!("bad NAT annotation {n:?}")))?;
        d.strip_suffix(')')
            .and_then(|d| d.split_once("->"))
            .ok_or_else(|| err(format!("bad NAT annotation {n:?}")))?;
        return Ok(None);
    };
    let close = inner
        .find(')')
        .ok_or_else(|| err(format!("bad NAT annotation {n:?}")))?;
    let (inside, public) = pair(inner.get(..close).unwrap_or(""), ports)?;
    if !inner.get(close + 1..).is_some_and(|r| r.starts_with("->")) {
        return Err(err(format!("bad NAT annotation {n:?}")));
    }
    Ok(Some((inside, public)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip, one_pushed};
    use super::super::util::test_corpus;
    use super::super::{ParseCtx, syslog};
    use super::*;
    use crate::model::FirewallAction;

    fn run(line: &str) -> Event {
        one_pushed(line, |l, out| parse(l, T0, out))
    }

    #[test]
    fn firewall_dstnat_icmp_ipv6() {
        let Event::Firewall(e) = run(
            "input: in:ether1 out:(unknown 0), src-mac 00:00:5e:00:53:01, proto ICMP (type 8, code 0), 198.51.100.7->203.0.113.1, len 84",
        ) else {
            panic!()
        };
        assert_eq!(
            (e.action, e.rule.as_deref(), e.protocol),
            (FirewallAction::Log, Some("input"), Some(1))
        );
        assert_eq!((e.src_port, e.dst_port, e.length), (None, None, Some(84)));
        assert_eq!((e.in_if.as_deref(), e.out_if), (Some("ether1"), None));
        // Destination NAT only: no source translation, a firewall event on the original tuple.
        let Event::Firewall(e) = run(
            "drop-wan forward: in:ether1 out:bridge, proto TCP (SYN), 198.51.100.7:50000->203.0.113.1:8080, NAT 198.51.100.7:50000->(203.0.113.1:8080->192.168.88.10:80), len 60",
        ) else {
            panic!()
        };
        assert_eq!(e.action, FirewallAction::Deny);
        assert_eq!((e.dst_ip, e.dst_port), (ip("203.0.113.1"), Some(8080)));
        // Both translations: the source one is the mapping.
        let Event::Nat(n) = run(
            "forward: in:bridge out:ether1, proto UDP, 192.168.88.7:40000->203.0.113.1:53, NAT (192.168.88.7:40000->203.0.113.5:41000)->(203.0.113.1:53->198.51.100.53:53), len 70",
        ) else {
            panic!()
        };
        assert_eq!((n.x_ip, n.x_port), (ip("203.0.113.5"), Some(41000)));
        assert_eq!((n.dst_ip, n.dst_port), (ip("203.0.113.1"), Some(53)));
        // IPv6 with brackets.
        let Event::Firewall(e) = run(
            "forward: in:bridge out:ether1, proto TCP (SYN), [2001:db8::5]:50000->[2001:db8:1::1]:443, len 80",
        ) else {
            panic!()
        };
        assert_eq!((e.src_ip, e.dst_port), (ip("2001:db8::5"), Some(443)));
        // A NAT annotation that translates nothing is not a mapping.
        let ev = run(
            "forward: in:bridge out:ether1, proto UDP, 192.168.88.7:40000->203.0.113.1:53, NAT (192.168.88.7:40000->192.168.88.7:40000)->203.0.113.1:53, len 70",
        );
        assert!(matches!(ev, Event::Firewall(_)), "{ev:?}");
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for bad in [
            "",
            "forward: out:ether1, proto UDP, 10.0.0.1:1->198.51.100.1:2, len 1",
            "forward: in:bridge out:ether1 proto UDP 10.0.0.1:1->198.51.100.1:2",
            "forward: in:bridge out:ether1, proto FROB, 10.0.0.1:1->198.51.100.1:2, len 1",
            "forward: in:bridge out:ether1, proto TCP (SYN, 10.0.0.1:1->198.51.100.1:2",
            "forward: in:bridge out:ether1, proto TCP (SYN), 10.0.0.1:1->198.51.100.1",
            "forward: in:bridge out:ether1, proto TCP (SYN), 10.0.0.1:1->198.51.100.1:2, NAT (10.0.0.1:1->203.0.113.1)->198.51.100.1:2",
            "forward: in:bridge out:ether1, proto TCP (SYN), 10.0.0.1:1->198.51.100.1:2, NAT garbage",
            "forward: in:bridge out:ether1, proto TCP (SYN), 10.0.0.1:1->198.51.100.1:2, len x",
            "system,info user admin logged in from 10.0.0.1 via winbox",
        ] {
            assert!(parse(bad, T0, &mut out).is_err(), "{bad}");
        }
        assert!(out.is_empty());
    }

    /// Every line of mikrotik.txt through the envelope. The four complete lines state a source
    /// translation: NAT events whose fields match the sources' expectations (the Go test table's
    /// `nat=` pair, the C# test's post-NAT address) or, without one, an independent reading of
    /// the `NAT (…)` annotation. The record broken over two physical lines is rejected line by
    /// line; joined back it parses to the derived reading.
    #[test]
    fn corpus_mikrotik() {
        let ctx = ParseCtx {
            recv_time: T0,
            zone: crate::time::Zone::Fixed(3 * 3600),
        };
        let samples = test_corpus::samples("mikrotik.txt");
        let (mut parsed, mut rejected) = (0, Vec::new());
        for smp in &samples {
            let env = syslog::peel(&smp.line, &ctx);
            let mut out = Vec::new();
            let time = env.time.unwrap_or(ctx.recv_time);
            if let Err(e) = parse(env.body, time, &mut out) {
                rejected.push((smp.line_no, e));
                continue;
            }
            parsed += 1;
            assert!(looks_like(env.body), "line {}", smp.line_no);
            let Some(Event::Nat(e)) = out.pop() else {
                panic!("line {}", smp.line_no)
            };
            assert_eq!(e.event, Some(NatEventKind::MappingObserved));
            assert_eq!((e.time, e.end_time), (time, None), "a sighting");
            // Independent reading of "NAT (a:p->x:y)->b:q".
            let nat = smp.line.split("NAT (").nth(1).unwrap();
            let (inner, after) = nat.split_once(")->").unwrap();
            let (a, x) = inner.split_once("->").unwrap();
            let dst = after.split(',').next().unwrap();
            let sp = |s: &str| {
                let (h, p) = s.rsplit_once(':').unwrap();
                (h.parse().ok(), p.parse().ok())
            };
            assert_eq!((e.src_ip, e.src_port), sp(a), "line {}", smp.line_no);
            assert_eq!((e.x_ip, e.x_port), sp(x), "line {}", smp.line_no);
            assert_eq!((e.dst_ip, e.dst_port), sp(dst), "line {}", smp.line_no);
            let proto = smp.line.split("proto ").nth(1).unwrap();
            let proto = proto.split([' ', ',']).next().unwrap();
            assert_eq!(e.protocol, proto_number(proto));
            if let Some(x) = smp.expect() {
                let v = |k: &str| test_corpus::annotation_value(x, k);
                if let Some(pair) = v("nat") {
                    // The Go table: nat="inside->public", src/dst/sport/dport, in/out.
                    let (inside, public) = pair.split_once("->").unwrap();
                    assert_eq!((e.src_ip, e.src_port), sp(inside));
                    assert_eq!((e.x_ip, e.x_port), sp(public));
                    assert_eq!(e.src_ip, v("src").and_then(|a| a.parse().ok()));
                    assert_eq!(e.dst_ip, v("dst").and_then(|a| a.parse().ok()));
                    assert_eq!(e.src_port, v("sport").and_then(|a| a.parse().ok()));
                    assert_eq!(e.dst_port, v("dport").and_then(|a| a.parse().ok()));
                    assert_eq!(e.protocol, v("proto").and_then(|p| proto_number(&p)));
                    // Its envelope is "<134>Oct  1 12:00:00 gw": device-local time, UTC+3 here.
                    assert_eq!(
                        chrono::DateTime::from_timestamp_micros(e.time + 3 * 3_600_000_000)
                            .unwrap()
                            .format("%m-%d %H:%M:%S")
                            .to_string(),
                        "10-01 12:00:00"
                    );
                } else {
                    // The C# test maps the post-NAT address as its "src": that is our x side.
                    assert_eq!(e.x_ip, v("src").and_then(|a| a.parse().ok()));
                    assert_eq!(e.dst_ip, v("dst").and_then(|a| a.parse().ok()));
                    assert_eq!(e.src_port, v("sport").and_then(|a| a.parse().ok()));
                    assert_eq!(e.dst_port, v("dport").and_then(|a| a.parse().ok()));
                }
            }
        }
        assert_eq!(parsed, 4, "{rejected:?}");
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        // The two halves of the broken record, then the record joined.
        let halves: Vec<_> = samples
            .iter()
            .filter(|s| rejected.iter().any(|(n, _)| *n == s.line_no))
            .collect();
        let joined = format!("{}{}", halves[0].line, halves[1].line);
        let env = syslog::peel(&joined, &ctx);
        let mut out = Vec::new();
        parse(env.body, env.time.unwrap(), &mut out).unwrap();
        let Some(Event::Nat(e)) = out.pop() else {
            panic!()
        };
        let d = halves[0].derived().unwrap();
        let v = |k: &str| test_corpus::annotation_value(d, k);
        assert_eq!(e.src_ip, v("src").and_then(|a| a.parse().ok()));
        assert_eq!(e.src_port, v("sport").and_then(|a| a.parse().ok()));
        assert_eq!(e.dst_ip, v("dst").and_then(|a| a.parse().ok()));
        assert_eq!(e.dst_port, v("dport").and_then(|a| a.parse().ok()));
        assert_eq!(e.x_ip, v("nat.src").and_then(|a| a.parse().ok()));
        assert_eq!(e.x_port, v("nat.sport").and_then(|a| a.parse().ok()));
        // "2026-04-20 10:15:32" has no zone: the device's (UTC+3) applies.
        assert_eq!(
            Some(e.time),
            super::super::util::civil_micros(2026, 4, 20, 7, 15, 32, 0)
        );
    }
}
