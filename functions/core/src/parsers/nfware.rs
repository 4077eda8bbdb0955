//! nfware vCGNAT syslog messages (docs.nfware.com, NAT → Logging → message format), the MSG part
//! of its RFC 5424 messages:
//!
//! ```text
//! A VRF 0 6 INT 10.0.0.1:57938 EXT 100.64.0.1:28475 DST 185.165.123.206:443 DIR OUT   session
//! A VRF 0 6 INT 10.0.0.1:57938 EXT 100.64.0.1:28475                                  port mapping
//! A VRF 0 INT 10.0.0.1 EXT 100.64.0.1:1024-1535                                      port block
//! A VRF 0 INT 10.0.0.1 EXT 100.64.0.1                                                address mapping
//! ```
//!
//! `A` adds a mapping, `D` deletes it. INT is the inside (private) side, EXT the public side.
//! Kinds: session → session_create / session_delete with the destination; port mapping (no
//! destination) → session_create / session_delete too, the closest kind for a single-port
//! mapping; port block → port_block_alloc / release with `x_port..=x_port_end` and no protocol
//! (a block serves every protocol); address mapping → address_bind / address_release.
//! `VRF <id>` is kept verbatim in `vrf`. The messages carry no time: the envelope's stands.

use crate::model::{Event, Micros, NatEvent, NatEventKind, protocol_number};

use super::ParseError;
use super::endpoint;
use super::util::parse_u16;

const FORMAT: &str = "nfware";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection: `A VRF ` / `D VRF `.
pub fn looks_like(body: &str) -> bool {
    let b = body.trim_start().as_bytes();
    matches!(b.first(), Some(b'A' | b'D')) && b.get(1..6) == Some(b" VRF ".as_slice())
}

/// Parses one message into one NAT event; returns the number of events pushed (1).
pub fn parse(line: &str, default_time: Micros, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let mut toks = line.split_ascii_whitespace();
    let adds = match toks.next() {
        Some("A") => true,
        Some("D") => false,
        Some(t) => return Err(err(format!("unknown action {t:?} (want A or D)"))),
        None => return Err(err("empty message")),
    };
    if toks.next() != Some("VRF") {
        return Err(err("no VRF after the action"));
    }
    let vrf = toks.next().ok_or_else(|| err("VRF without an id"))?;
    let mut tok = toks
        .next()
        .ok_or_else(|| err("message ends after the VRF"))?;
    let protocol = if tok == "INT" {
        None
    } else {
        let p = protocol_number(tok).ok_or_else(|| err(format!("bad protocol {tok:?}")))?;
        tok = toks
            .next()
            .ok_or_else(|| err("message ends after the protocol"))?;
        if tok != "INT" {
            return Err(err(format!("expected INT, found {tok:?}")));
        }
        Some(p)
    };
    let int = toks.next().ok_or_else(|| err("INT without an address"))?;
    if toks.next() != Some("EXT") {
        return Err(err("no EXT after INT"));
    }
    let ext = toks.next().ok_or_else(|| err("EXT without an address"))?;
    let mut dst = None;
    let mut dir = None;
    while let Some(k) = toks.next() {
        let v = toks
            .next()
            .ok_or_else(|| err(format!("{k} without a value")))?;
        match k {
            "DST" if dst.is_none() => dst = Some(v),
            "DIR" if dir.is_none() => dir = Some(v),
            _ => return Err(err(format!("unexpected {k:?} after EXT"))),
        }
    }

    let mut ev = NatEvent {
        time: default_time,
        protocol,
        vrf: Some(vrf.to_owned()),
        ..NatEvent::default()
    };
    match protocol {
        Some(_) => {
            // Session or port mapping: one inside port to one public port.
            let ports = endpoint::has_ports(protocol);
            let (src, sport) =
                endpoint::maybe_port(int, ports).ok_or_else(|| err(format!("bad INT {int:?}")))?;
            let (x, xport) =
                endpoint::maybe_port(ext, ports).ok_or_else(|| err(format!("bad EXT {ext:?}")))?;
            (ev.src_ip, ev.src_port, ev.x_ip, ev.x_port) = (Some(src), sport, Some(x), xport);
            if let Some(d) = dst {
                let (dip, dport) =
                    endpoint::maybe_port(d, ports).ok_or_else(|| err(format!("bad DST {d:?}")))?;
                (ev.dst_ip, ev.dst_port) = (Some(dip), dport);
            }
            ev.direction = match dir {
                None => None,
                Some(d) if d.eq_ignore_ascii_case("OUT") => Some("out"),
                Some(d) if d.eq_ignore_ascii_case("IN") => Some("in"),
                Some(d) => return Err(err(format!("bad DIR {d:?}"))),
            };
            ev.event = Some(if adds {
                NatEventKind::SessionCreate
            } else {
                NatEventKind::SessionDelete
            });
        }
        None => {
            if dst.is_some() || dir.is_some() {
                return Err(err("DST / DIR without a protocol"));
            }
            ev.src_ip =
                Some(endpoint::addr_only(int).ok_or_else(|| err(format!("bad INT {int:?}")))?);
            // EXT is either an address or `address:first-last`.
            if let Some(a) = endpoint::addr_only(ext) {
                ev.x_ip = Some(a);
                ev.event = Some(if adds {
                    NatEventKind::AddressBind
                } else {
                    NatEventKind::AddressRelease
                });
            } else {
                let (addr, range) = ext
                    .rsplit_once(':')
                    .ok_or_else(|| err(format!("bad EXT {ext:?}")))?;
                let (lo, hi) = range
                    .split_once('-')
                    .ok_or_else(|| err(format!("EXT {ext:?}: a port without a protocol")))?;
                let x = endpoint::addr_only(addr).ok_or_else(|| err(format!("bad EXT {ext:?}")))?;
                let (lo, hi) = match (parse_u16(lo), parse_u16(hi)) {
                    (Some(l), Some(h)) if l <= h => (l, h),
                    _ => return Err(err(format!("bad port range in EXT {ext:?}"))),
                };
                (ev.x_ip, ev.x_port, ev.x_port_end) = (Some(x), Some(lo), Some(hi));
                ev.event = Some(if adds {
                    NatEventKind::PortBlockAlloc
                } else {
                    NatEventKind::PortBlockRelease
                });
            }
        }
    }
    out.push(Event::Nat(ev));
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip, nat, one_pushed};
    use super::super::util::test_corpus;
    use super::*;

    fn one(line: &str) -> NatEvent {
        nat(one_pushed(line, |l, out| parse(l, T0, out)))
    }

    #[test]
    fn kinds_and_sides() {
        let e = one(
            "D VRF 7 17 INT [2001:db8::5]:5353 EXT 203.0.113.9:1100 DST 198.51.100.2:53 DIR IN",
        );
        assert_eq!(e.event, Some(NatEventKind::SessionDelete));
        assert_eq!((e.src_ip, e.src_port), (ip("2001:db8::5"), Some(5353)));
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.9"), Some(1100)));
        assert_eq!((e.dst_ip, e.dst_port), (ip("198.51.100.2"), Some(53)));
        assert_eq!(
            (e.protocol, e.direction, e.vrf.as_deref(), e.time),
            (Some(17), Some("in"), Some("7"), T0)
        );
        // ICMP: the identifier after the colon is not a port.
        let e = one("A VRF 0 1 INT 10.0.0.1:771 EXT 203.0.113.9:2048");
        assert_eq!(
            (e.event, e.src_port, e.x_port),
            (Some(NatEventKind::SessionCreate), None, None)
        );
        let e = one("D VRF 0 INT 10.0.0.1 EXT 203.0.113.9:2048-3071");
        assert_eq!(
            (e.event, e.x_port, e.x_port_end, e.protocol),
            (
                Some(NatEventKind::PortBlockRelease),
                Some(2048),
                Some(3071),
                None
            )
        );
        let e = one("D VRF 0 INT 10.0.0.1 EXT 203.0.113.9");
        assert_eq!(e.event, Some(NatEventKind::AddressRelease));
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for bad in [
            "",
            "X VRF 0 INT 10.0.0.1 EXT 203.0.113.9",
            "A VRF",
            "A VRF 0 6 INT 10.0.0.1 EXT 203.0.113.9:1",
            "A VRF 0 6 INT 10.0.0.1:1 EXT 203.0.113.9:70000",
            "A VRF 0 INT 10.0.0.1 EXT 203.0.113.9:2000-1000",
            "A VRF 0 INT 10.0.0.1 EXT 203.0.113.9:2000",
            "A VRF 0 INT 10.0.0.1:5 EXT 203.0.113.9",
            "A VRF 0 6 INT 10.0.0.1:1 EXT 203.0.113.9:2 DST 198.51.100.1:3 DIR SIDEWAYS",
            "A VRF 0 6 INT 10.0.0.1:1 EXT 203.0.113.9:2 EXTRA 1",
            "A VRF 0 INT 10.0.0.1 EXT 203.0.113.9 DST 198.51.100.1:3",
            "A VRF 0 frob INT 10.0.0.1:1 EXT 203.0.113.9:2",
        ] {
            assert!(parse(bad, T0, &mut out).is_err(), "{bad}");
        }
        assert!(out.is_empty());
    }

    /// The nfware block of other_cgn.txt: the test fixture asserts the message type of each
    /// line (session, address, port, port block mapping, in that order); the fields are read
    /// independently from the line and compared.
    #[test]
    fn corpus_nfware() {
        let samples: Vec<_> = test_corpus::samples("other_cgn.txt")
            .into_iter()
            .filter(|s| looks_like(&s.line))
            .collect();
        assert_eq!(samples.len(), 4);
        let want = [
            NatEventKind::SessionCreate,
            NatEventKind::AddressBind,
            NatEventKind::SessionCreate,
            NatEventKind::PortBlockAlloc,
        ];
        for (smp, kind) in samples.iter().zip(want) {
            let e = one(&smp.line);
            assert_eq!(e.event, Some(kind), "line {}", smp.line_no);
            let after = |k: &str| {
                let mut it = smp.line.split_whitespace();
                it.find(|t| *t == k)?;
                it.next().map(str::to_owned)
            };
            let int = after("INT").unwrap();
            let ext = after("EXT").unwrap();
            assert_eq!(
                e.src_ip.map(|a| a.to_string()).as_deref(),
                int.split(':').next()
            );
            assert_eq!(
                e.x_ip.map(|a| a.to_string()).as_deref(),
                ext.split(':').next()
            );
            assert_eq!(e.vrf, after("VRF"));
            match kind {
                NatEventKind::SessionCreate => {
                    assert_eq!(e.protocol, Some(6));
                    assert_eq!(
                        e.src_port.map(|p| p.to_string()).as_deref(),
                        int.split(':').nth(1)
                    );
                    assert_eq!(
                        e.x_port.map(|p| p.to_string()).as_deref(),
                        ext.split(':').nth(1)
                    );
                    let dst = after("DST");
                    assert_eq!(
                        e.dst_ip.map(|a| a.to_string()),
                        dst.as_deref()
                            .and_then(|d| d.split(':').next())
                            .map(str::to_owned)
                    );
                    assert_eq!(e.direction, dst.map(|_| "out"));
                }
                NatEventKind::PortBlockAlloc => {
                    let range = ext.split(':').nth(1).unwrap();
                    let (lo, hi) = range.split_once('-').unwrap();
                    assert_eq!(e.x_port, lo.parse().ok());
                    assert_eq!(e.x_port_end, hi.parse().ok());
                    assert_eq!(e.protocol, None);
                }
                _ => assert_eq!((e.x_port, e.protocol), (None, None)),
            }
        }
    }
}
