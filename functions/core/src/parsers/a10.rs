//! A10 Thunder CGN (ACOS) logs, the syslog envelope already peeled.
//!
//! CEF (`CEF:0|A10|CFW|6.0.0-P1|CGN 106|Nat Port Batch Pool Allocated|5|proto=UDP src=… …`,
//! also without the `CEF:` prefix when a collector split it off as the program name). The event
//! name decides:
//! - `Nat Port Allocated` / `Nat Port Freed` (CGN 100 / 101): one port mapping →
//!   SessionCreate / SessionDelete (with the destination when given);
//! - `Nat Session Created` / `… Deleted|Freed|Closed` (CGN 102 / 103): a session;
//! - `Nat Port Batch Pool Allocated` / `… Freed` (CGN 106 / 107): a port block from
//!   `sourceTranslatedPort` to `cn3` (`cn3Label=Last Nat Port`).
//!
//! Extension values run to the next ` key=` (`cn3Label=Last Nat Port` holds spaces); `\=` is an
//! escaped `=`. A numeric `rt=` (epoch milliseconds) is the event time.
//!
//! ASCII (`NAT-TCP-C: …`, event letter C = created, F / D = freed / deleted), in the two shapes
//! the only public source (cgn-ec-consumer) shows:
//! - session: `src:sport<->dst:dport, nat:nport<-->dst:dport`;
//! - port mapping: `src:sport -> nat: nport` or `src:sport<-->nat:nport to dst:dport`;
//! - fixed NAT: `FIXED-NAT-PORTS inside->public:lo-hi` → a port block.
//!   No public ASCII port-batch line was found, so none is read.
//!
//! ICMP identifiers sit in the port fields; they are not kept as ports.

use std::net::IpAddr;

use super::fields::{addr_port, clean_ports, port_range};
use super::util::{contains_lit, find_lit, parse_ip, parse_u16, parse_u64};
use super::{ParseCtx, ParseError};
use crate::model::{Event, Micros, NatEvent, NatEventKind, protocol_number};

const FORMAT: &str = "a10";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    contains_lit(body, "|A10|")
        || ascii_tag(body).is_some()
        || contains_lit(body, "FIXED-NAT-PORTS ")
}

/// Parses one message into one NAT event; returns the number pushed (1).
pub fn parse(
    body: &str,
    default_time: Micros,
    _ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let body = body.trim();
    let ev = if let Some(p) = body.find("|A10|") {
        cef(body, p, default_time)?
    } else if let Some((proto, letter, rest)) = ascii_tag(body) {
        ascii(proto, letter, rest, default_time)?
    } else if let Some(p) = body.find("FIXED-NAT-PORTS ") {
        fixed_nat(
            body.get(p + "FIXED-NAT-PORTS ".len()..).unwrap_or(""),
            default_time,
        )?
    } else {
        return Err(err("no CEF header or NAT-<proto>-<event> tag"));
    };
    out.push(Event::Nat(ev));
    Ok(1)
}

/// A syslog TAG that is really A10's message tag (`host NAT-TCP-C: …` reads as TAG "NAT-TCP-C").
pub fn is_ascii_tag(app: &str) -> bool {
    app.strip_prefix("NAT-")
        .and_then(|t| t.split_once('-'))
        .is_some_and(|(p, l)| tag_word(p) && tag_word(l))
}

fn tag_word(t: &str) -> bool {
    !t.is_empty() && t.len() <= 5 && t.bytes().all(|b| b.is_ascii_uppercase())
}

/// `NAT-TCP-C: rest` anywhere in the line → ("TCP", "C", rest).
fn ascii_tag(s: &str) -> Option<(&str, &str, &str)> {
    let at = find_lit(s, "NAT-")?;
    let tail = s.get(at + 4..)?;
    let (tag, rest) = tail.split_once(": ").or_else(|| tail.split_once(':'))?;
    let (proto, letter) = tag.split_once('-')?;
    (tag_word(proto) && tag_word(letter)).then_some((proto, letter, rest))
}

fn cef(body: &str, vendor_at: usize, default_time: Micros) -> Result<NatEvent, ParseError> {
    // The header starts at "CEF:" or, without it, at the version field before "|A10|".
    let start = body
        .get(..vendor_at)
        .and_then(|h| {
            h.rfind("CEF:")
                .map(|i| i + 4)
                .or_else(|| h.rfind(' ').map(|i| i + 1))
        })
        .unwrap_or(0);
    let header = body.get(start..).unwrap_or("");
    let f: Vec<&str> = header.splitn(8, '|').collect();
    let [
        _version,
        _vendor,
        _product,
        _dev_version,
        _sig,
        name,
        _sev,
        ext,
    ] = f.as_slice()
    else {
        return Err(err("CEF header with fewer than 8 fields"));
    };
    let kv = cef_extension(ext);
    let get = |k: &str| {
        kv.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    };
    let n = name.to_ascii_lowercase();
    let (kind, block) = if n.contains("batch") {
        if n.contains("alloc") {
            (NatEventKind::PortBlockAlloc, true)
        } else if n.contains("free") || n.contains("releas") {
            (NatEventKind::PortBlockRelease, true)
        } else {
            return Err(err(format!("CEF event {name:?} is not mapped")));
        }
    } else if n.contains("alloc") || n.contains("creat") {
        (NatEventKind::SessionCreate, false)
    } else if n.contains("free") || n.contains("delet") || n.contains("clos") {
        (NatEventKind::SessionDelete, false)
    } else {
        return Err(err(format!("CEF event {name:?} is not mapped")));
    };
    let ip = |k: &str| -> Result<Option<IpAddr>, ParseError> {
        get(k)
            .map(|v| parse_ip(v).ok_or_else(|| err(format!("bad {k}={v:?}"))))
            .transpose()
    };
    let port = |k: &str| -> Result<Option<u16>, ParseError> {
        get(k)
            .map(|v| parse_u16(v).ok_or_else(|| err(format!("bad {k}={v:?}"))))
            .transpose()
    };
    let protocol = match get("proto") {
        Some(p) => Some(protocol_number(p).ok_or_else(|| err(format!("unknown proto={p:?}")))?),
        None => None,
    };
    let src_ip = ip("src")?.ok_or_else(|| err("CEF record without src"))?;
    let x_ip = ip("sourceTranslatedAddress")?
        .ok_or_else(|| err("CEF record without sourceTranslatedAddress"))?;
    let x_port = port("sourceTranslatedPort")?;
    let x_port_end = if block {
        let last = get("cn3Label")
            .filter(|l| l.to_ascii_lowercase().contains("last"))
            .and(get("cn3"))
            .ok_or_else(|| err("port batch without its last port (cn3)"))?;
        let last = parse_u16(last).ok_or_else(|| err(format!("bad cn3={last:?}")))?;
        if x_port.is_none_or(|f| f > last) {
            return Err(err("port batch range is empty or reversed"));
        }
        Some(last)
    } else {
        None
    };
    // rt= is epoch milliseconds in A10's CEF; anything else keeps the envelope's time.
    let time = get("rt")
        .and_then(parse_u64)
        .and_then(|ms| i64::try_from(ms).ok())
        .and_then(|ms| ms.checked_mul(1000))
        .unwrap_or(default_time);
    let mut e = NatEvent {
        time,
        event: Some(kind),
        protocol,
        src_ip: Some(src_ip),
        src_port: if block { None } else { port("spt")? },
        x_ip: Some(x_ip),
        x_port,
        x_port_end,
        dst_ip: if block { None } else { ip("dst")? },
        dst_port: if block { None } else { port("dpt")? },
        direction: Some("out"),
        ..NatEvent::default()
    };
    clean_ports(&mut e);
    Ok(e)
}

/// CEF extension `k=v k2=v with spaces k3=v`: a key is `[A-Za-z0-9_]+` right after a space
/// (or at the start) and followed by an unescaped `=`.
fn cef_extension(ext: &str) -> Vec<(&str, String)> {
    let b = ext.as_bytes();
    let mut keys: Vec<(usize, usize)> = Vec::new(); // (key start, '=' position)
    let mut i = 0;
    while i < b.len() {
        if i == 0 || b.get(i - 1) == Some(&b' ') {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                j += 1;
            }
            if j > i && b.get(j) == Some(&b'=') {
                keys.push((i, j));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    let mut out = Vec::with_capacity(keys.len());
    for (n, &(ks, eq)) in keys.iter().enumerate() {
        let vend = keys.get(n + 1).map_or(ext.len(), |(next, _)| *next);
        let (Some(k), Some(v)) = (ext.get(ks..eq), ext.get(eq + 1..vend)) else {
            continue;
        };
        out.push((k, v.trim_end().replace("\\=", "=").replace("\\\\", "\\")));
    }
    out
}

fn ascii(proto: &str, letter: &str, rest: &str, time: Micros) -> Result<NatEvent, ParseError> {
    let protocol =
        Some(protocol_number(proto).ok_or_else(|| err(format!("unknown protocol NAT-{proto}")))?);
    let kind = match letter {
        "C" => NatEventKind::SessionCreate,
        "F" | "D" => NatEventKind::SessionDelete,
        other => return Err(err(format!("NAT-{proto}-{other}: event letter not mapped"))),
    };
    // "150.150.150.150: 10000": a space after the colon in A10's port-mapping template.
    let compact = rest.replace(": ", ":");
    let ep = |s: &str| {
        addr_port(s.trim(), ':').ok_or_else(|| err(format!("bad address {:?}", s.trim())))
    };
    let ((src, sport), (x, xport), dst) = if compact.contains("<->") {
        let (fwd, rev) = compact
            .split_once(',')
            .ok_or_else(|| err("session without its reverse tuple"))?;
        let (s, d) = fwd
            .split_once("<->")
            .ok_or_else(|| err("bad forward tuple"))?;
        let (x, _) = rev
            .split_once("<-->")
            .ok_or_else(|| err("bad reverse tuple"))?;
        (ep(s)?, ep(x)?, Some(ep(d)?))
    } else {
        let (s, r) = compact
            .split_once("<-->")
            .or_else(|| compact.split_once("->"))
            .ok_or_else(|| err("port mapping without -> or <-->"))?;
        let (x, d) = match r.split_once(" to ") {
            Some((x, d)) => (x, Some(ep(d)?)),
            None => (r, None),
        };
        (ep(s)?, ep(x)?, d)
    };
    let mut e = NatEvent {
        time,
        event: Some(kind),
        protocol,
        src_ip: Some(src),
        src_port: sport,
        x_ip: Some(x),
        x_port: xport,
        dst_ip: dst.map(|d| d.0),
        dst_port: dst.and_then(|d| d.1),
        direction: Some("out"),
        ..NatEvent::default()
    };
    clean_ports(&mut e);
    Ok(e)
}

/// `10.10.10.172->192.168.9.173:3000-4000`.
fn fixed_nat(rest: &str, time: Micros) -> Result<NatEvent, ParseError> {
    let tok = rest.split_whitespace().next().unwrap_or("");
    let (inside, public) = tok
        .split_once("->")
        .ok_or_else(|| err("FIXED-NAT-PORTS without ->"))?;
    let inside = parse_ip(inside).ok_or_else(|| err(format!("bad inside address {inside:?}")))?;
    let (x, range) = public
        .rsplit_once(':')
        .ok_or_else(|| err("FIXED-NAT-PORTS without a port range"))?;
    let x = parse_ip(x).ok_or_else(|| err(format!("bad public address {x:?}")))?;
    let (lo, hi) = port_range(range).ok_or_else(|| err(format!("bad port range {range:?}")))?;
    Ok(NatEvent {
        time,
        event: Some(NatEventKind::PortBlockAlloc),
        src_ip: Some(inside),
        x_ip: Some(x),
        x_port: Some(lo),
        x_port_end: Some(hi),
        direction: Some("out"),
        ..NatEvent::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::test_support::{self, assert_rejects, ip, one_auto, utc_ctx};
    use super::super::util::{civil_micros, parse_iso_prefix, test_corpus};
    use super::*;

    fn ctx() -> ParseCtx {
        utc_ctx(civil_micros(2025, 5, 2, 12, 0, 0, 0).unwrap())
    }

    fn nat(line: &str) -> NatEvent {
        test_support::nat(one_auto(line, &ctx(), "a10"))
    }

    #[test]
    fn cef_extension_values_with_spaces_and_escapes() {
        let kv = cef_extension("a=1 cn3Label=Last Nat Port b=x\\=y c=");
        assert_eq!(
            kv,
            vec![
                ("a", "1".to_string()),
                ("cn3Label", "Last Nat Port".to_string()),
                ("b", "x=y".to_string()),
                ("c", String::new())
            ]
        );
    }

    #[test]
    fn cef_session_ipv6_and_rt() {
        let e = nat(
            "<134>May  2 12:00:00 thunder1 CEF:0|A10|CFW|6.0.0|CGN 103|Nat Session Deleted|5|rt=1746187200123 proto=TCP src=2001:db8::7 spt=40000 dst=198.51.100.1 dpt=443 sourceTranslatedAddress=203.0.113.3 sourceTranslatedPort=2048",
        );
        assert_eq!(e.event, Some(NatEventKind::SessionDelete));
        assert_eq!(e.time, 1_746_187_200_123_000);
        assert_eq!((e.src_ip, e.src_port), (ip("2001:db8::7"), Some(40000)));
        assert_eq!(
            (e.x_ip, e.x_port, e.dst_port),
            (ip("203.0.113.3"), Some(2048), Some(443))
        );
    }

    #[test]
    fn ascii_forms() {
        let e = nat(
            "<134>May  2 11:00:00 thunder1 NAT-TCP-C: 100.64.0.1:1000<->198.51.100.1:80, 203.0.113.1:2000<-->198.51.100.1:80",
        );
        assert_eq!(
            (
                e.event, e.protocol, e.src_port, e.x_ip, e.x_port, e.dst_port
            ),
            (
                Some(NatEventKind::SessionCreate),
                Some(6),
                Some(1000),
                ip("203.0.113.1"),
                Some(2000),
                Some(80)
            )
        );
        assert_eq!(e.time, civil_micros(2025, 5, 2, 11, 0, 0, 0).unwrap());
        let e = nat("thunder1 NAT-UDP-F: 100.64.0.1:10000 -> 203.0.113.1: 10001");
        assert_eq!(
            (e.event, e.src_port, e.x_port, e.dst_ip),
            (
                Some(NatEventKind::SessionDelete),
                Some(10000),
                Some(10001),
                None
            )
        );
        let e = nat("x NAT-UDP-C: 100.64.0.1:53<-->203.0.113.1:4000 to 8.8.8.8:53");
        assert_eq!((e.x_port, e.dst_ip), (Some(4000), ip("8.8.8.8")));
        let e = nat("x FIXED-NAT-PORTS 10.10.10.172->192.168.9.173:3000-4000");
        assert_eq!(
            (e.event, e.x_port, e.x_port_end),
            (Some(NatEventKind::PortBlockAlloc), Some(3000), Some(4000))
        );
        assert_rejects(
            Format::A10,
            &ctx(),
            [
                (
                    "x NAT-TCP-U: 1.1.1.1:1<->2.2.2.2:2, 3.3.3.3:3<-->2.2.2.2:2",
                    "not mapped",
                ),
                ("x NAT-TCP-C: 1.1.1.1:1<->2.2.2.2:2", "reverse tuple"),
                (
                    "CEF:0|A10|CFW|6|CGN 106|Nat Port Batch Pool Allocated|5|proto=UDP src=1.1.1.1 sourceTranslatedAddress=2.2.2.2 sourceTranslatedPort=10",
                    "last port",
                ),
                (
                    "CEF:0|A10|CFW|6|CGN 200|Nat Pool Exhausted|5|src=1.1.1.1",
                    "not mapped",
                ),
            ],
        );
    }

    /// Every line of a10.txt (all CEF; the ASCII templates are comments): values checked against
    /// the line's own CEF fields read independently, and the derived reading of line 1.
    #[test]
    fn corpus_a10() {
        let (mut parsed, mut checked) = (0, 0);
        let samples = test_corpus::samples("a10.txt");
        for smp in &samples {
            let e = nat(&smp.line);
            parsed += 1;
            let field = |k: &str| {
                smp.line
                    .split([' ', '|'])
                    .find_map(|t| t.strip_prefix(&format!("{k}=")))
                    .map(str::to_owned)
            };
            assert_eq!(e.src_ip, field("src").and_then(|v| v.parse().ok()));
            assert_eq!(
                e.x_ip,
                field("sourceTranslatedAddress").and_then(|v| v.parse().ok())
            );
            let name = smp.line.split('|').nth(5).unwrap();
            let want = match name {
                "Nat Port Batch Pool Allocated" => NatEventKind::PortBlockAlloc,
                "Nat Port Batch Pool Freed" => NatEventKind::PortBlockRelease,
                "Nat Port Allocated" | "Nat Session Created" => NatEventKind::SessionCreate,
                "Nat Port Freed" => NatEventKind::SessionDelete,
                other => panic!("{other}"),
            };
            assert_eq!(e.event, Some(want), "line {}", smp.line_no);
            if name.contains("Batch") {
                assert_eq!(
                    (e.x_port, e.x_port_end),
                    (
                        field("sourceTranslatedPort").and_then(|v| v.parse().ok()),
                        field("cn3").and_then(|v| v.parse().ok())
                    )
                );
                checked += 1;
            }
            if field("proto").as_deref() == Some("ICMP") {
                assert_eq!((e.protocol, e.src_port, e.x_port), (Some(1), None, None));
            } else {
                assert_eq!(e.protocol, field("proto").and_then(|p| protocol_number(&p)));
            }
            // The collector's stamp in front is the event time (the records carry no rt=).
            if let Some((ts, _)) = parse_iso_prefix(&smp.line) {
                assert_eq!(
                    Some(e.time),
                    ts.to_micros(crate::time::Clock::UTC),
                    "line {}",
                    smp.line_no
                );
                checked += 1;
            }
            if let Some(d) = smp
                .derived()
                .filter(|_| smp.comments.iter().any(|c| c.starts_with("# derived")))
            {
                let v = |k: &str| test_corpus::annotation_value(d, k);
                assert_eq!(e.src_ip, v("src").and_then(|a| a.parse().ok()));
                assert_eq!(e.x_ip, v("nat.ip").and_then(|a| a.parse().ok()));
                assert_eq!(e.x_port, v("port_start").and_then(|a| a.parse().ok()));
                assert_eq!(e.x_port_end, v("port_end").and_then(|a| a.parse().ok()));
                checked += 4;
            }
            checked += 4;
        }
        // 10 lines from the lab capture, 3 handler-test bodies without the "CEF:" prefix.
        assert_eq!(parsed, 13);
        assert_eq!(samples.len(), 13);
        assert!(checked >= 60, "checked {checked}");
    }
}
