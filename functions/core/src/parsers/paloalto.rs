//! Palo Alto Networks PAN-OS TRAFFIC logs in the syslog CSV format (PAN-OS admin guide, "Traffic
//! Log Fields"). Columns by position, 0-based; PAN-OS versions only ever append columns, so
//! these positions hold from 6.x to 11.x:
//!
//! ```text
//!  0 FUTURE_USE   1 receive time   2 serial   3 type (TRAFFIC)   4 subtype (start|end|drop|deny)
//!  6 generated time   7 source   8 destination   9 NAT source   10 NAT destination   11 rule
//! 15 virtual system   18 inbound interface   19 outbound interface   24 source port
//! 25 destination port   26 NAT source port   27 NAT destination port   29 protocol   30 action
//! 31 bytes   32 bytes sent   33 bytes received   34 packets   35 start time   36 elapsed (s)
//! 44 packets sent   45 packets received   46 session end reason
//! ```
//!
//! - Only TRAFFIC logs are events; THREAT, SYSTEM, CONFIG and the other types are rejected.
//!   Fields are quoted when they hold commas; at least 37 columns are required.
//! - Times are device-local `YYYY/MM/DD HH:MM:SS`. PAN-OS 10+ appends a high-resolution
//!   timestamp with the zone (`2021-07-15T11:59:03.547+01:00`); its offset, found among the
//!   trailing columns, is the zone of the other stamps; without it the device's zone is.
//!   The generated time is the event (for `end` logs: the session end); the start time, or
//!   generated − elapsed, the session start.
//! - Source NAT (`natsrc` set, not 0.0.0.0, and differing from the source address or port) → NAT
//!   event: `src = source:sport`, `x = natsrc:natsport`, `dst = destination:dport` (pre-NAT, what
//!   the subscriber addressed), sent bytes/packets → `*_out`, received → `*_in`, vsys → `vrf`.
//!   `start` logs → mapping_observed at the start time alone (an opening would never close: the
//!   `end` log closes nothing). `end` logs → mapping_observed over
//!   [start, end]: the record states the whole interval, which a session_delete would not carry
//!   (the lookup would have to assume it began at the searched range's start). `drop` / `deny`
//!   logs that state a translation are kept the same way: the device says the translation was
//!   applied to the subscriber's packets at that time.
//! - No source NAT: `deny` / `drop` subtypes and deny / drop / reset actions → firewall event with
//!   the rule name; others → flow record (total bytes and packets; destination NAT as post-NAT
//!   destination). The session end reason has no column and is not kept.

use std::net::IpAddr;

use crate::model::{
    Event, FirewallAction, FirewallEvent, FlowRecord, Micros, NatEvent, NatEventKind,
    protocol_number,
};

use super::ParseError;
use super::endpoint::has_ports;
use super::util::{parse_ip, parse_iso_prefix, parse_u16, parse_u64};
use crate::time::{Clock, Zone};

const FORMAT: &str = "paloalto";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Columns a TRAFFIC log must have (through elapsed time).
const MIN_COLUMNS: usize = 37;
/// The high-resolution timestamp sits well after the fixed columns (102 in PAN-OS 10.1).
const HIGH_RES_FROM: usize = 60;

/// Cheap check used by format detection: a `YYYY/MM/DD HH:MM:SS` second column and an
/// upper-case log type in the fourth.
pub fn looks_like(body: &str) -> bool {
    let mut f = body.trim_start().splitn(5, ',');
    let _future = f.next();
    let recv = f.next().unwrap_or("");
    let _serial = f.next();
    let ty = f.next().unwrap_or("");
    date_shape(recv)
        && !ty.is_empty()
        && ty.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        && f.next().is_some()
}

/// `dddd/dd/dd dd:dd:dd`, digits not validated.
fn date_shape(s: &str) -> bool {
    s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'/',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
}

/// Splits a CSV line; a field that starts with `"` runs to its closing quote (`""` inside is an
/// escaped quote and stays as is). The quotes are not part of the returned field.
fn split_csv(s: &str) -> Result<Vec<&str>, ParseError> {
    let b = s.as_bytes();
    let mut fields = Vec::with_capacity(112);
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            loop {
                match (b.get(j), b.get(j + 1)) {
                    (None, _) => return Err(err("unterminated quoted field")),
                    (Some(b'"'), Some(b'"')) => j += 2,
                    (Some(b'"'), _) => break,
                    _ => j += 1,
                }
            }
            fields.push(s.get(start..j).unwrap_or(""));
            i = j + 1;
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(err("text after a closing quote")),
            }
        } else {
            let end = s
                .get(i..)
                .and_then(|r| r.find(','))
                .map_or(b.len(), |p| i + p);
            fields.push(s.get(i..end).unwrap_or(""));
            if end >= b.len() {
                break;
            }
            i = end + 1;
        }
    }
    Ok(fields)
}

/// Parses one PAN-OS log into one event; returns the number of events pushed (1).
/// `device` is the device's clock, for stamps when the log carries no offset. Every
/// TRAFFIC log has its own generated time, so no fallback time is needed.
pub fn parse(line: &str, device: Clock, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let f = split_csv(line.trim())?;
    let col = |i: usize| f.get(i).copied().unwrap_or("").trim();
    let ty = col(3);
    if ty != "TRAFFIC" {
        return Err(err(format!("PAN-OS {ty} log: not a traffic log")));
    }
    if f.len() < MIN_COLUMNS {
        return Err(err(format!(
            "TRAFFIC log with {} columns, want at least {MIN_COLUMNS}",
            f.len()
        )));
    }
    let subtype = col(4);
    let addr = |i: usize, what: &str| -> Result<Option<IpAddr>, ParseError> {
        let v = col(i);
        if v.is_empty() {
            return Ok(None);
        }
        parse_ip(v)
            .map(Some)
            .ok_or_else(|| err(format!("bad {what} address {v:?}")))
    };
    let src_ip = addr(7, "source")?.ok_or_else(|| err("no source address"))?;
    let dst_ip = addr(8, "destination")?.ok_or_else(|| err("no destination address"))?;
    let nat_src = addr(9, "NAT source")?.filter(|a| !a.is_unspecified());
    let nat_dst = addr(10, "NAT destination")?.filter(|a| !a.is_unspecified());
    let proto_name = col(29);
    let protocol = protocol_number(proto_name);
    let ports = has_ports(protocol);
    let port = |i: usize, what: &str| -> Result<Option<u16>, ParseError> {
        let v = col(i);
        if v.is_empty() {
            return Ok(None);
        }
        let p = parse_u16(v).ok_or_else(|| err(format!("bad {what} port {v:?}")))?;
        Ok((p != 0 && ports).then_some(p))
    };
    let src_port = port(24, "source")?;
    let dst_port = port(25, "destination")?;
    let nat_sport = port(26, "NAT source")?;
    let nat_dport = port(27, "NAT destination")?;
    let count = |i: usize| -> Result<Option<u64>, ParseError> {
        let v = col(i);
        if v.is_empty() {
            return Ok(None);
        }
        parse_u64(v)
            .map(Some)
            .ok_or_else(|| err(format!("bad counter {v:?} in column {i}")))
    };

    let tz = high_res_offset(&f).map_or(device, |off| device.with_offset(off));
    let generated =
        pan_time(col(6), tz).ok_or_else(|| err(format!("bad generated time {:?}", col(6))))?;
    let elapsed = count(36)?;
    // The high-resolution column's offset is the generated time's; a start before a clock
    // change had the other one, which a named zone knows.
    let start_clock = match device.zone {
        Zone::Named(_) => device,
        Zone::Fixed(_) => tz,
    };
    let start = match pan_time(col(35), start_clock) {
        Some(t) if t <= generated => t,
        _ => elapsed
            .and_then(|e| i64::try_from(e).ok())
            .and_then(|e| e.checked_mul(1_000_000))
            .and_then(|e| generated.checked_sub(e))
            .unwrap_or(generated),
    };
    let vrf = Some(col(15)).filter(|v| !v.is_empty()).map(str::to_owned);
    let action = col(30);

    if let Some(x_ip) = nat_src
        && (x_ip != src_ip || (nat_sport.is_some() && nat_sport != src_port))
    {
        // A start log is the mapping seen at one instant, not an opening: the end log is a
        // whole-session record that closes nothing, so an opening would never close. Until
        // that end log is read, lookups name it in doubt (`correlate::doubt_seen_once`).
        let is_start = subtype == "start";
        out.push(Event::Nat(NatEvent {
            time: start,
            event: Some(NatEventKind::MappingObserved),
            protocol,
            src_ip: Some(src_ip),
            src_port,
            x_ip: Some(x_ip),
            x_port: nat_sport,
            x_port_end: None,
            dst_ip: Some(dst_ip),
            dst_port,
            vrf,
            direction: Some("out"),
            // A start log is a sighting: its end is not known.
            end_time: (!is_start).then_some(generated),
            bytes_out: count(32)?,
            bytes_in: count(33)?,
            packets_out: count(44)?,
            packets_in: count(45)?,
        }));
        return Ok(1);
    }

    let iface = |i: usize| Some(col(i)).filter(|v| !v.is_empty()).map(str::to_owned);
    let denied = matches!(subtype, "deny" | "drop")
        || action.starts_with("deny")
        || action.starts_with("drop")
        || action.starts_with("reset");
    if denied {
        out.push(Event::Firewall(FirewallEvent {
            time: generated,
            action: FirewallAction::Deny,
            rule: Some(col(11)).filter(|r| !r.is_empty()).map(str::to_owned),
            protocol,
            src_ip: Some(src_ip),
            src_port,
            dst_ip: Some(dst_ip),
            dst_port,
            in_if: iface(18),
            out_if: iface(19),
            length: None,
            vrf,
        }));
        return Ok(1);
    }
    let dnat =
        nat_dst.is_some_and(|d| d != dst_ip) || (nat_dport.is_some() && nat_dport != dst_port);
    out.push(Event::Flow(FlowRecord {
        time: start,
        end_time: (subtype != "start").then_some(generated),
        protocol,
        src_ip: Some(src_ip),
        src_port,
        dst_ip: Some(dst_ip),
        dst_port,
        post_nat_dst_ip: if dnat { nat_dst.or(Some(dst_ip)) } else { None },
        post_nat_dst_port: if dnat { nat_dport.or(dst_port) } else { None },
        bytes: count(31)?,
        packets: count(34)?,
        vrf,
        ..FlowRecord::default()
    }));
    Ok(1)
}

/// `YYYY/MM/DD HH:MM:SS` in a zone `tz` seconds east of UTC.
fn pan_time(s: &str, tz: Clock) -> Option<Micros> {
    if !date_shape(s) {
        return None;
    }
    let iso = s.replace('/', "-");
    let (ts, n) = parse_iso_prefix(&iso)?;
    (n == iso.len()).then_some(())?;
    ts.to_micros(tz)
}

/// The UTC offset of PAN-OS 10+'s high-resolution timestamp column, when there is one.
fn high_res_offset(f: &[&str]) -> Option<i32> {
    f.iter().skip(HIGH_RES_FROM).rev().find_map(|v| {
        let v = v.trim();
        let (ts, n) = parse_iso_prefix(v)?;
        if n == v.len() { ts.offset } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip, one_pushed};
    use super::super::util::test_corpus;
    use super::super::{ParseCtx, syslog};
    use super::*;

    /// A TRAFFIC line in the documented column order, built from the given overrides.
    fn traffic(set: &[(usize, &str)]) -> String {
        let mut f = vec![""; 50];
        for (i, v) in [
            (0, "1"),
            (1, "2024/06/15 12:00:05"),
            (2, "013201001234"),
            (3, "TRAFFIC"),
            (4, "end"),
            (6, "2024/06/15 12:00:05"),
            (7, "100.64.1.2"),
            (8, "198.51.100.80"),
            (9, "203.0.113.10"),
            (10, "198.51.100.80"),
            (11, "cgn-out"),
            (15, "vsys2"),
            (18, "ethernet1/2"),
            (19, "ethernet1/1"),
            (24, "51000"),
            (25, "443"),
            (26, "2048"),
            (27, "443"),
            (29, "tcp"),
            (30, "allow"),
            (31, "5000"),
            (32, "1000"),
            (33, "4000"),
            (34, "12"),
            (35, "2024/06/15 12:00:00"),
            (36, "5"),
            (44, "5"),
            (45, "7"),
            (46, "tcp-fin"),
        ] {
            f[i] = v;
        }
        for &(i, v) in set {
            f[i] = v;
        }
        f.join(",")
    }

    fn run(line: &str, tz: i32) -> Event {
        one_pushed(line, |l, out| parse(l, Clock::UTC.with_offset(tz), out))
    }

    #[test]
    fn end_start_and_no_nat() {
        let Event::Nat(n) = run(&traffic(&[]), 0) else {
            panic!()
        };
        assert_eq!(n.event, Some(NatEventKind::MappingObserved));
        assert_eq!((n.time, n.end_time), (T0, Some(T0 + 5_000_000)));
        assert_eq!((n.src_ip, n.src_port), (ip("100.64.1.2"), Some(51000)));
        assert_eq!((n.x_ip, n.x_port), (ip("203.0.113.10"), Some(2048)));
        assert_eq!(
            (n.dst_ip, n.dst_port, n.protocol),
            (ip("198.51.100.80"), Some(443), Some(6))
        );
        assert_eq!(
            (n.bytes_out, n.bytes_in, n.packets_out, n.packets_in),
            (Some(1000), Some(4000), Some(5), Some(7))
        );
        assert_eq!(n.vrf.as_deref(), Some("vsys2"));
        // Start log, device at UTC+2, start column empty: generated time is the start.
        let Event::Nat(n) = run(
            &traffic(&[
                (4, "start"),
                (35, ""),
                (36, "0"),
                (6, "2024/06/15 14:00:00"),
            ]),
            7200,
        ) else {
            panic!()
        };
        assert_eq!(
            (n.event, n.time, n.end_time),
            (Some(NatEventKind::MappingObserved), T0, None)
        );
        // A quoted rule with a comma; no source NAT: a flow, with the DNAT'd destination.
        let Event::Flow(f) = run(
            &traffic(&[
                (9, "0.0.0.0"),
                (26, "0"),
                (10, "192.168.5.5"),
                (11, "\"web, in\""),
            ]),
            0,
        ) else {
            panic!()
        };
        assert_eq!(
            (f.time, f.end_time, f.bytes, f.packets),
            (T0, Some(T0 + 5_000_000), Some(5000), Some(12))
        );
        assert_eq!(
            (f.post_nat_dst_ip, f.post_nat_dst_port),
            (ip("192.168.5.5"), Some(443))
        );
        // IPv6, no NAT, denied.
        let Event::Firewall(e) = run(
            &traffic(&[
                (4, "deny"),
                (7, "2001:db8::1"),
                (8, "2001:db8:2::1"),
                (9, ""),
                (26, "0"),
                (30, "deny"),
            ]),
            0,
        ) else {
            panic!()
        };
        assert_eq!(
            (e.action, e.rule.as_deref(), e.src_ip),
            (FirewallAction::Deny, Some("cgn-out"), ip("2001:db8::1"))
        );
        assert_eq!(
            (e.in_if.as_deref(), e.out_if.as_deref(), e.time),
            (Some("ethernet1/2"), Some("ethernet1/1"), T0 + 5_000_000)
        );
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for (bad, why) in [
            (traffic(&[(3, "THREAT")]), "not a traffic log"),
            (
                "1,2024/06/15 12:00:05,0001,TRAFFIC,end".to_string(),
                "columns",
            ),
            (traffic(&[(7, "100.64.1.300")]), "bad source address"),
            (traffic(&[(8, "")]), "no destination"),
            (traffic(&[(6, "2024/06/31 12:00:05")]), "bad generated time"),
            (traffic(&[(24, "65536")]), "bad source port"),
            (traffic(&[(32, "-1")]), "bad counter"),
            (traffic(&[(11, "\"open")]), "unterminated"),
        ] {
            let e = parse(&bad, Clock::UTC, &mut out).unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
        assert!(out.is_empty());
    }

    /// paloalto.txt through the envelope: the one complete TRAFFIC log (wazuh "Palo Alto
    /// traffic") is a policy deny without NAT; the THREAT and SYSTEM logs, the truncated
    /// TRAFFIC header and the fully anonymised start/end/drop samples (addresses `00.00.000.00`,
    /// day 00) are rejected.
    #[test]
    fn corpus_paloalto() {
        let ctx = ParseCtx {
            recv_time: T0,
            zone: crate::time::Zone::Fixed(0),
        };
        let (mut parsed, mut rejected) = (Vec::new(), Vec::new());
        for smp in test_corpus::samples("paloalto.txt") {
            let env = syslog::peel(&smp.line, &ctx);
            assert!(looks_like(env.body), "line {}: {:?}", smp.line_no, env.body);
            let mut out = Vec::new();
            match parse(env.body, ctx.clock(), &mut out) {
                Ok(_) => parsed.push((smp, out.pop().unwrap())),
                Err(e) => rejected.push((smp, e)),
            }
        }
        assert_eq!(parsed.len(), 1);
        assert_eq!(rejected.len(), 15, "{rejected:?}");
        let not_traffic = rejected
            .iter()
            .filter(|(_, e)| e.reason.contains("not a traffic log"))
            .count();
        assert_eq!(not_traffic, 10);
        for (smp, e) in &rejected {
            if smp.line.contains(",TRAFFIC,") && smp.line.len() > 100 {
                assert!(
                    e.reason.starts_with("bad source address \"00.00.000.00\""),
                    "{e}"
                );
            }
        }
        let (smp, ev) = &parsed[0];
        let Event::Firewall(e) = ev else {
            panic!("{ev:?}")
        };
        let rule = test_corpus::annotation_value(smp.expect().unwrap(), "wazuh_rule");
        assert_eq!(rule.as_deref(), Some("64505"));
        // Independent reading by a CSV split of the line.
        let c: Vec<&str> = smp.line.split(',').collect();
        assert_eq!(e.action, FirewallAction::Deny);
        assert_eq!(c[30], "deny");
        assert_eq!(e.rule.as_deref(), Some(c[11]));
        assert_eq!((e.src_ip, e.dst_ip), (c[7].parse().ok(), c[8].parse().ok()));
        assert_eq!(
            (e.src_port, e.dst_port),
            (c[24].parse().ok(), c[25].parse().ok())
        );
        assert_eq!(e.protocol, protocol_number(c[29]));
        assert_eq!(
            (e.in_if.as_deref(), e.out_if.as_deref()),
            (Some(c[18]), None)
        );
        assert_eq!(e.vrf.as_deref(), Some(c[15]));
        // Generated time in the zone of the high-resolution stamp, read here with chrono.
        let hires = c
            .iter()
            .rev()
            .find_map(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
            .unwrap();
        let local = chrono::NaiveDateTime::parse_from_str(c[6], "%Y/%m/%d %H:%M:%S").unwrap();
        let want = local.and_local_timezone(*hires.offset()).unwrap();
        assert_eq!(e.time, want.timestamp_micros());
        assert_ne!(hires.offset().local_minus_utc(), 0, "the zone is exercised");
    }

    /// The high-resolution column gives the generated time's offset; a start before the spring
    /// change in a named zone is read at its own (winter) offset, not at the generated one.
    #[test]
    fn start_before_a_clock_change_keeps_its_own_offset() {
        let mut f: Vec<String> = traffic(&[
            (1, "2026/03/29 03:00:05"),
            (6, "2026/03/29 03:00:05"),
            (35, "2026/03/29 01:59:00"),
            (36, "65"),
        ])
        .split(',')
        .map(str::to_owned)
        .collect();
        f.resize(102, String::new());
        f.push("2026-03-29T03:00:05.000+02:00".into());
        let line = f.join(",");
        let utc = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        let berlin = crate::time::Zone::parse("Europe/Berlin").unwrap();
        let device = Clock::new(berlin, utc("2026-03-29T01:00:06Z"));
        let Event::Nat(n) = one_pushed(&line, |l, out| parse(l, device, out)) else {
            panic!()
        };
        assert_eq!(n.end_time, Some(utc("2026-03-29T01:00:05Z")));
        assert_eq!(n.time, utc("2026-03-29T00:59:00Z"));
        // A fixed zone knows no rules: the high-resolution offset stands for every stamp.
        let Event::Nat(n) = one_pushed(&line, |l, out| parse(l, Clock::UTC, out)) else {
            panic!()
        };
        assert_eq!(n.time, utc("2026-03-28T23:59:00Z"));
    }
}
