//! 6WIND Turbo Router / 6WINDGate fast-path CG-NAT (`fp-cgnat`) events, as its user guide
//! quotes them (the syslog header already peeled):
//!
//! ```text
//! NEW CONN: fwd proto 6 10.100.0.1:4241 -> 10.200.0.1:33815, back proto 6 10.200.0.1:33815 --> 10.175.0.3:10752
//! DESTROY CONN: fwd proto 6 … -> …, back proto 6 … -> …
//! USER 100.64.0.1 (matching rule 1): NEW BLOCK (pool "mypool", ip public 192.0.2.33, proto 6, port 1 - 512)
//! USER 100.64.0.1 (matching rule 1): DESTROY BLOCK (pool "mypool", ip public 192.0.2.33, proto 6, port 1 - 512)
//! USER 100.64.0.1 (matching rule 1): NEW BLOCK (ip public 32.96.119.1, proto 6, port 1024 - 1536) at Tue Jun 11 08:03:09 2019
//! ```
//!
//! The last shape is the CG-NAT deployment guides' (`fp-cgnat-logd`, Turbo Router 3 / vSR):
//! the pool is optional and a block event ends with its own time, `at` and a ctime-style date
//! with the year, in the device's time zone; that time is the event's.
//!
//! Connection tuples read like conntrack's: `fwd` is the original direction (inside source →
//! destination), `back` the reply direction (destination → public address). So the inside side
//! is `fwd`'s source, the destination `fwd`'s destination, and the public side `back`'s
//! destination — the reply's back tuple starts where `fwd` ended (10.200.0.1:33815 in both). The
//! guide's arrow is `-->` in one quote and `->` in the other; both are accepted. `back`'s source
//! may differ from `fwd`'s destination when the destination was translated too; it is not
//! stored. NEW / DESTROY CONN → session_create / session_delete; NEW / DESTROY BLOCK →
//! port_block_alloc / port_block_release with the block's protocol. Pool name and rule number
//! have no column. Daemon notices (`CGNAT Log listen on 5001`) are rejected: no mapping.

use crate::model::{Event, Micros, NatEvent, NatEventKind, protocol_number};

use super::ParseError;
use super::endpoint;
use super::util::{civil_micros, month_number, parse_u16, parse_u32};
use crate::time::Clock;

const FORMAT: &str = "sixwind";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    let b = strip_tag(body.trim_start());
    b.starts_with("NEW CONN: fwd ")
        || b.starts_with("DESTROY CONN: fwd ")
        || (b.starts_with("USER ") && b.contains(" BLOCK ("))
        || b.starts_with("CGNAT Log ")
}

/// `fp-cgnat[2484]: ` (or `fp-cgnat-logd@main[4269]: `) in front of a message that reached us
/// without a syslog parser.
fn strip_tag(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("fp-cgnat")
        && let Some((_, after)) = rest.split_once("]: ")
    {
        return after;
    }
    s
}

/// Parses one fp-cgnat message into one NAT event; returns the number of events pushed (1).
/// `device`: the device's clock, for the local time a BLOCK event ends with.
pub fn parse(
    line: &str,
    default_time: Micros,
    device: Clock,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let s = strip_tag(line.trim());
    let ev = if let Some(rest) = s.strip_prefix("NEW CONN:") {
        conn(rest, NatEventKind::SessionCreate, default_time)?
    } else if let Some(rest) = s.strip_prefix("DESTROY CONN:") {
        conn(rest, NatEventKind::SessionDelete, default_time)?
    } else if let Some(rest) = s.strip_prefix("USER ") {
        block(rest, default_time, device)?
    } else if s.starts_with("CGNAT Log ") {
        return Err(err("fp-cgnat daemon notice, no mapping"));
    } else {
        return Err(err("not an fp-cgnat CONN or BLOCK event"));
    };
    out.push(Event::Nat(ev));
    Ok(1)
}

/// `fwd proto P A -> B, back proto P C --> D`.
fn conn(rest: &str, kind: NatEventKind, time: Micros) -> Result<NatEvent, ParseError> {
    let (fwd, back) = rest
        .split_once(", back ")
        .ok_or_else(|| err("no back tuple"))?;
    let fwd = fwd
        .trim()
        .strip_prefix("fwd ")
        .ok_or_else(|| err("no fwd tuple"))?;
    let (p1, src, dst) = tuple(fwd, "fwd")?;
    let (p2, _, public) = tuple(back, "back")?;
    if p1 != p2 {
        return Err(err(format!("fwd proto {p1} differs from back proto {p2}")));
    }
    let ports = endpoint::has_ports(Some(p1));
    let end = |s: &str, what: &str| {
        endpoint::maybe_port(s, ports).ok_or_else(|| err(format!("bad {what} address {s:?}")))
    };
    let (src_ip, src_port) = end(src, "fwd source")?;
    let (dst_ip, dst_port) = end(dst, "fwd destination")?;
    let (x_ip, x_port) = end(public, "back destination")?;
    Ok(NatEvent {
        time,
        event: Some(kind),
        protocol: Some(p1),
        src_ip: Some(src_ip),
        src_port,
        x_ip: Some(x_ip),
        x_port,
        dst_ip: Some(dst_ip),
        dst_port,
        direction: Some("out"),
        ..NatEvent::default()
    })
}

/// `proto P A -> B` (or `-->`): protocol, left and right endpoint texts.
fn tuple<'a>(s: &'a str, what: &str) -> Result<(u8, &'a str, &'a str), ParseError> {
    let mut t = s.split_ascii_whitespace();
    if t.next() != Some("proto") {
        return Err(err(format!("{what} tuple without proto")));
    }
    let p = t.next().unwrap_or("");
    let proto = protocol_number(p).ok_or_else(|| err(format!("bad {what} proto {p:?}")))?;
    let (a, arrow, b) = (t.next(), t.next(), t.next());
    match (a, arrow, b, t.next()) {
        (Some(a), Some("->" | "-->"), Some(b), None) => Ok((proto, a, b)),
        _ => Err(err(format!("{what} tuple is not `A -> B`"))),
    }
}

/// `100.64.0.1 (matching rule 1): NEW BLOCK (pool "p", ip public X, proto 6, port 1 - 512)`.
/// Optionally followed by ` at Tue Jun 11 08:03:09 2019` (device-local), the event's time.
fn block(rest: &str, default_time: Micros, device: Clock) -> Result<NatEvent, ParseError> {
    let (user, after) = rest
        .split_once(' ')
        .ok_or_else(|| err("USER without an address"))?;
    let src = endpoint::addr_only(user).ok_or_else(|| err(format!("bad USER {user:?}")))?;
    let (_, msg) = after
        .split_once("): ")
        .ok_or_else(|| err("no `(matching rule N):` after USER"))?;
    let (kind, inner) = if let Some(r) = msg.strip_prefix("NEW BLOCK (") {
        (NatEventKind::PortBlockAlloc, r)
    } else if let Some(r) = msg.strip_prefix("DESTROY BLOCK (") {
        (NatEventKind::PortBlockRelease, r)
    } else {
        return Err(err("USER message is not NEW / DESTROY BLOCK"));
    };
    let (inner, time) = match inner.rsplit_once(") at ") {
        Some((details, when)) => (
            details,
            ctime_micros(when, device).ok_or_else(|| err(format!("bad BLOCK time {when:?}")))?,
        ),
        None => (
            inner
                .trim_end()
                .strip_suffix(')')
                .ok_or_else(|| err("BLOCK details not closed"))?,
            default_time,
        ),
    };
    let (mut x_ip, mut proto, mut range) = (None, None, None);
    for item in split_outside_quotes(inner) {
        let item = item.trim();
        if let Some(v) = item.strip_prefix("ip public ") {
            x_ip = Some(endpoint::addr_only(v).ok_or_else(|| err(format!("bad ip public {v:?}")))?);
        } else if let Some(v) = item.strip_prefix("proto ") {
            proto = Some(protocol_number(v).ok_or_else(|| err(format!("bad proto {v:?}")))?);
        } else if let Some(v) = item.strip_prefix("port ") {
            let (lo, hi) = v
                .split_once('-')
                .ok_or_else(|| err(format!("bad port range {v:?}")))?;
            range = match (parse_u16(lo.trim()), parse_u16(hi.trim())) {
                (Some(l), Some(h)) if l <= h => Some((l, h)),
                _ => return Err(err(format!("bad port range {v:?}"))),
            };
        }
    }
    let x_ip = x_ip.ok_or_else(|| err("BLOCK without ip public"))?;
    let (lo, hi) = range.ok_or_else(|| err("BLOCK without a port range"))?;
    Ok(NatEvent {
        time,
        event: Some(kind),
        protocol: proto,
        src_ip: Some(src),
        x_ip: Some(x_ip),
        x_port: Some(lo),
        x_port_end: Some(hi),
        ..NatEvent::default()
    })
}

/// `Tue Jun 11 08:03:09 2019` (C's ctime, day of month space-padded) in the device's zone → UTC.
fn ctime_micros(s: &str, device: Clock) -> Option<Micros> {
    let mut t = s.split_ascii_whitespace();
    let (_weekday, month, day, hms, year) = (t.next()?, t.next()?, t.next()?, t.next()?, t.next()?);
    if t.next().is_some() {
        return None;
    }
    let mut hms = hms.split(':').map(parse_u32);
    let (h, mi, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let local = civil_micros(
        i32::try_from(parse_u32(year)?).ok()?,
        month_number(month.as_bytes())?,
        parse_u32(day)?,
        h,
        mi,
        sec,
        0,
    )?;
    device.to_utc(local)
}

/// Splits on commas that are not inside double quotes (a pool name may hold a comma).
fn split_outside_quotes(s: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(s.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s.get(start..).unwrap_or(""));
    parts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip};
    use super::super::util::test_corpus;
    use super::super::{ParseCtx, syslog};
    use super::*;

    #[test]
    fn ipv6_and_rejects() {
        let mut out = Vec::new();
        parse(
            "NEW CONN: fwd proto 17 2001:db8::7:5000 -> 64:ff9b::c633:6401:53, back proto 17 [64:ff9b::c633:6401]:53 -> 203.0.113.4:1030",
            T0,
            Clock::UTC,
            &mut out,
        )
        .unwrap();
        let Some(Event::Nat(e)) = out.pop() else {
            panic!()
        };
        assert_eq!((e.src_ip, e.src_port), (ip("2001:db8::7"), Some(5000)));
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.4"), Some(1030)));
        assert_eq!(e.dst_ip, ip("64:ff9b::c633:6401"));
        for bad in [
            "NEW CONN: fwd proto 6 10.0.0.1:1 -> 198.51.100.1:2",
            "NEW CONN: fwd proto 6 10.0.0.1:1 -> 198.51.100.1:2, back proto 17 198.51.100.1:2 -> 203.0.113.1:3",
            "NEW CONN: fwd proto 6 10.0.0.1 -> 198.51.100.1:2, back proto 6 198.51.100.1:2 -> 203.0.113.1:3",
            "NEW CONN: fwd proto 6 10.0.0.1:1 => 198.51.100.1:2, back proto 6 198.51.100.1:2 -> 203.0.113.1:3",
            "USER 100.64.0.1 (matching rule 1): NEW BLOCK (pool \"p\", ip public 192.0.2.1, proto 6, port 512 - 1)",
            "USER 100.64.0.1 (matching rule 1): NEW BLOCK (pool \"p\", proto 6, port 1 - 512)",
            "USER 100.64.0.1 (matching rule 1): QUOTA EXCEEDED",
            "CGNAT Log listen on 5001",
            "hello",
        ] {
            assert!(parse(bad, T0, Clock::UTC, &mut out).is_err(), "{bad}");
        }
        assert!(out.is_empty());
    }

    /// The block shapes of 6WIND's CG-NAT deployment guides (`fp-cgnat-logd`, with and without
    /// the pool, each ending with its device-local time), through auto-detection.
    #[test]
    fn deployment_guide_blocks() {
        let ctx = ParseCtx {
            recv_time: T0,
            zone: crate::time::Zone::Fixed(2 * 3600),
        };
        for (line, kind) in [
            (
                r#"<134>Jun 11 08:03:10 vsr fp-cgnat-logd[4269]: USER 100.64.0.1 (matching rule 1): NEW BLOCK (pool "mypool", ip public 32.96.119.1, proto 6, port 1024 - 1536) at Tue Jun 11 08:03:09 2019"#,
                NatEventKind::PortBlockAlloc,
            ),
            (
                "<134>Jun 11 08:03:10 vsr fp-cgnat-logd@main[4269]: USER 100.64.0.1 (matching rule 1): DESTROY BLOCK (ip public 32.96.119.1, proto 6, port 1024 - 1536) at Tue Jun 11 08:03:09 2019",
                NatEventKind::PortBlockRelease,
            ),
        ] {
            let e = super::super::test_support::nat(super::super::test_support::one_auto(
                line, &ctx, "sixwind",
            ));
            assert_eq!(e.event, Some(kind), "{line}");
            assert_eq!((e.src_ip, e.x_ip), (ip("100.64.0.1"), ip("32.96.119.1")));
            assert_eq!(
                (e.protocol, e.x_port, e.x_port_end),
                (Some(6), Some(1024), Some(1536))
            );
            // 08:03:09 at UTC+2 is 06:03:09 UTC, whatever the syslog header said.
            assert_eq!(
                e.time,
                super::super::util::civil_micros(2019, 6, 11, 6, 3, 9, 0).unwrap(),
                "{line}"
            );
        }
        let mut out = Vec::new();
        for bad in [
            "USER 100.64.0.1 (matching rule 1): NEW BLOCK (ip public 32.96.119.1, proto 6, port 1024 - 1536) at Tue Jun 31 08:03:09 2019",
            "USER 100.64.0.1 (matching rule 1): NEW BLOCK (ip public 32.96.119.1, proto 6, port 1024 - 1536) at yesterday",
        ] {
            let e = parse(bad, T0, Clock::UTC, &mut out).unwrap_err();
            assert!(e.reason.contains("bad BLOCK time"), "{e}");
        }
        assert!(out.is_empty());
    }

    /// The 6WIND block of other_cgn.txt through the syslog envelope: 4 events, the daemon notice
    /// rejected. Fields are compared with an independent reading of each line.
    #[test]
    fn corpus_sixwind() {
        let ctx = ParseCtx {
            recv_time: T0,
            zone: crate::time::Zone::Fixed(0),
        };
        let (mut parsed, mut rejected) = (0, 0);
        for smp in test_corpus::samples("other_cgn.txt") {
            if !smp.line.contains("fp-cgnat[") {
                continue;
            }
            let env = syslog::peel(&smp.line, &ctx);
            assert!(looks_like(env.body), "line {}", smp.line_no);
            let mut out = Vec::new();
            let time = env.time.unwrap();
            let e = match parse(env.body, time, Clock::UTC, &mut out) {
                Ok(1) => match out.pop() {
                    Some(Event::Nat(e)) => e,
                    other => panic!("{other:?}"),
                },
                Ok(n) => panic!("{n} events"),
                Err(e) => {
                    assert!(smp.line.contains("CGNAT Log listen"), "{e}");
                    rejected += 1;
                    continue;
                }
            };
            parsed += 1;
            assert_eq!(e.time, time);
            // Independent reading: the addr:port tokens in order, and the block fields.
            let eps: Vec<&str> = smp
                .line
                .split([' ', ','])
                .filter(|t| t.contains(':') && t.contains('.'))
                .collect();
            if smp.line.contains(" CONN: ") {
                let [src, dst, _back_src, public] = eps.as_slice() else {
                    panic!("line {}: {eps:?}", smp.line_no)
                };
                let pair = |s: &str| {
                    let (a, p) = s.rsplit_once(':').unwrap();
                    (a.parse().ok(), p.parse().ok())
                };
                assert_eq!((e.src_ip, e.src_port), pair(src));
                assert_eq!((e.dst_ip, e.dst_port), pair(dst));
                assert_eq!((e.x_ip, e.x_port), pair(public));
                assert_eq!(e.protocol, Some(6));
                let want = if smp.line.contains("NEW CONN") {
                    NatEventKind::SessionCreate
                } else {
                    NatEventKind::SessionDelete
                };
                assert_eq!(e.event, Some(want));
            } else {
                let user = smp.line.split("USER ").nth(1).unwrap();
                assert_eq!(
                    e.src_ip.map(|a| a.to_string()).as_deref(),
                    user.split(' ').next()
                );
                let public = smp.line.split("ip public ").nth(1).unwrap();
                assert_eq!(
                    e.x_ip.map(|a| a.to_string()).as_deref(),
                    public.split(',').next()
                );
                let ports = smp.line.split(", port ").nth(1).unwrap();
                let (lo, hi) = ports.trim_end_matches(')').split_once(" - ").unwrap();
                assert_eq!((e.x_port, e.x_port_end), (lo.parse().ok(), hi.parse().ok()));
                let want = if smp.line.contains("NEW BLOCK") {
                    NatEventKind::PortBlockAlloc
                } else {
                    NatEventKind::PortBlockRelease
                };
                assert_eq!(e.event, Some(want));
            }
        }
        assert_eq!((parsed, rejected), (4, 1));
    }
}
