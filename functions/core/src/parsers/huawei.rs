//! Huawei USG / NGFW (and CGN firewall) logs in the `%%01MODULE/severity/NAME(l):` form, the
//! syslog envelope already peeled. A device stamp in front of the tag (`2018/10/05 09:52:14
//! USG6300`, `2018-10-05 10:52:13 USG6300`, `Oct  5 2018 10:52:19 USG6300`) is the device's
//! local time, read in the device's zone.
//!
//! - `SECLOG/…/SESSION_TEARDOWN`: `Key=Value,` pairs (`SourceIP`, `SourceNatIP`,
//!   `BeginTime` / `EndTime` in epoch seconds, `SendBytes` / `RcvBytes`, `SourceVpnID`). With a
//!   stated source translation the record yields two NAT events: SessionCreate at `BeginTime`
//!   and SessionDelete at `EndTime` (with counters and `end_time`): Huawei logs sessions once,
//!   at teardown, so the record is the only statement of when the mapping began. Without
//!   translation it is a flow record over [BeginTime, EndTime].
//! - `SECLOG/…/SESSION_URL` (and other SECLOG session records with NAT fields): the mapping seen
//!   in use → MappingObserved over [BeginTime, EndTime]; without translation they are not flows
//!   (one URL, not a session summary) and are rejected.
//! - `POLICY/…/POLICYPERMIT` / `POLICYDENY`: firewall allow / deny with `rule-name`; its
//!   `time=2018/10/5 09:52:19` is the event time.
//!
//! Values may contain commas (`Page=/x?a=1,2,3`): a comma ends a value only when a `Key=`
//! follows. The record's final `.` is not part of the last value. `SourceVpnID` / `vsys` become
//! `vrf` unless they name the default instance (`0`, `public`).
//! NE40E "flexible template" session logs (`NAT444:SessionbasedA [17 …]`) have a configurable
//! field order that the line does not state: rejected, as are URL-filter and other messages.

use std::net::IpAddr;

use super::fields::{clean_ports, dec_epoch, port_for, slash_datetime, sum, translated};
use super::util::{
    contains_lit, find_lit, parse_bsd_prefix, parse_ip, parse_iso_prefix, parse_u16, parse_u64,
};
use super::{ParseCtx, ParseError};
use crate::model::{
    Event, FirewallAction, FirewallEvent, FlowRecord, Micros, NatEvent, NatEventKind,
    protocol_number,
};

const FORMAT: &str = "huawei";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection: `%%NN` then `MODULE/digit/`, or the NE40E CGN form.
pub fn looks_like(body: &str) -> bool {
    find_tag(body).is_some() || contains_lit(body, "NAT444:Sessionbased")
}

/// The tag `%%01SECLOG/6/SESSION_TEARDOWN(l):` → (offset, module, name, payload).
fn find_tag(body: &str) -> Option<(usize, &str, &str, &str)> {
    let at = find_lit(body, "%%")?;
    let rest = body.get(at + 2..)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits != 2 {
        return None;
    }
    let rest = rest.get(2..)?;
    let (module, rest) = rest.split_once('/')?;
    if module.is_empty() || !module.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (sev, rest) = rest.split_once('/')?;
    if sev.len() != 1 || !sev.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let end = rest.find(['(', ':'])?;
    let name = rest.get(..end)?;
    let after = rest.get(end..)?;
    let payload = match after.find(':') {
        Some(i) => after.get(i + 1..)?,
        None => "",
    };
    Some((at, module, name, payload))
}

/// Parses one message; returns the number of events pushed (1, or 2 for a translated
/// teardown).
pub fn parse(
    body: &str,
    default_time: Micros,
    ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let Some((at, module, name, payload)) = find_tag(body) else {
        if body.contains("NAT444:Sessionbased") {
            return Err(err(
                "NAT444 flexible-template session log: its field order is configured on the \
                 device and not stated in the line",
            ));
        }
        return Err(err("no %%NNMODULE/severity/NAME tag"));
    };
    let time = device_stamp(body.get(..at).unwrap_or(""), ctx).unwrap_or(default_time);
    let kv = pairs(payload);
    match (module, name) {
        ("SECLOG", "SESSION_TEARDOWN") => session(&kv, true, time, out),
        ("SECLOG", n) if n.starts_with("SESSION") => session(&kv, false, time, out),
        ("POLICY", n) if n.starts_with("POLICYPERMIT") || n.starts_with("POLICYDENY") => {
            let action = if n.starts_with("POLICYPERMIT") {
                FirewallAction::Allow
            } else {
                FirewallAction::Deny
            };
            out.push(Event::Firewall(policy(&kv, action, time, ctx)?));
            Ok(1)
        }
        _ => Err(err(format!(
            "{module}/{name} carries no NAT, flow or firewall record"
        ))),
    }
}

/// The device's own stamp in front of the tag.
fn device_stamp(prefix: &str, ctx: &ParseCtx) -> Option<Micros> {
    let p = prefix.trim_start();
    if let Some((ts, _)) = parse_iso_prefix(p) {
        return ts.to_micros(ctx.clock());
    }
    if let Some((t, _)) = slash_datetime(p, ctx.clock()) {
        return Some(t);
    }
    let (ts, _) = parse_bsd_prefix(p)?;
    ts.to_micros(ctx.clock())
}

/// `Key=Value,Key2=Value, with, commas,Key3=V.` → pairs; keys trimmed, the record's final
/// period dropped.
fn pairs(payload: &str) -> Vec<(&str, &str)> {
    let p = payload.trim();
    let p = p.strip_suffix('.').unwrap_or(p);
    let b = p.as_bytes();
    let mut cuts = vec![0usize];
    for (i, &c) in b.iter().enumerate() {
        if c != b',' {
            continue;
        }
        let mut j = i + 1;
        while b.get(j) == Some(&b' ') {
            j += 1;
        }
        let k = j;
        while b
            .get(j)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        {
            j += 1;
        }
        if j > k && b.get(j) == Some(&b'=') && b.get(k).is_some_and(u8::is_ascii_alphabetic) {
            cuts.push(i + 1);
        }
    }
    cuts.push(p.len() + 1);
    cuts.windows(2)
        .filter_map(|w| {
            let seg = p.get(w.first().copied()?..w.get(1)?.saturating_sub(1))?;
            let (k, v) = seg.split_once('=')?;
            Some((k.trim(), v.trim()))
        })
        .collect()
}

fn get<'a>(kv: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    kv.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty() && *v != "--")
}

fn ip(kv: &[(&str, &str)], key: &str) -> Result<Option<IpAddr>, ParseError> {
    get(kv, key)
        .map(|v| parse_ip(v).ok_or_else(|| err(format!("bad {key}={v:?}"))))
        .transpose()
}

fn port(kv: &[(&str, &str)], key: &str) -> Result<Option<u16>, ParseError> {
    get(kv, key)
        .map(|v| parse_u16(v).ok_or_else(|| err(format!("bad {key}={v:?}"))))
        .transpose()
}

fn count(kv: &[(&str, &str)], key: &str) -> Option<u64> {
    get(kv, key).and_then(parse_u64)
}

fn vrf(v: Option<&str>) -> Option<String> {
    v.filter(|v| *v != "0" && !v.eq_ignore_ascii_case("public"))
        .map(str::to_owned)
}

fn session(
    kv: &[(&str, &str)],
    teardown: bool,
    time: Micros,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let protocol = match get(kv, "Protocol") {
        Some(p) => Some(protocol_number(p).ok_or_else(|| err(format!("unknown Protocol={p:?}")))?),
        None => None,
    };
    let src = ip(kv, "SourceIP")?.ok_or_else(|| err("session without SourceIP"))?;
    let sport = port(kv, "SourcePort")?;
    let dst = ip(kv, "DestinationIP")?;
    let dport = port(kv, "DestinationPort")?;
    let xip = ip(kv, "SourceNatIP")?;
    let xport = port(kv, "SourceNatPort")?;
    let begin = get(kv, "BeginTime").and_then(dec_epoch);
    let end = get(kv, "EndTime").and_then(dec_epoch);
    let vrf = vrf(get(kv, "SourceVpnID"));
    if !translated(Some(src), sport, xip, xport) {
        if !teardown {
            return Err(err(
                "session record without a translation is not a flow summary",
            ));
        }
        out.push(Event::Flow(FlowRecord {
            time: begin.unwrap_or(time),
            end_time: Some(end.unwrap_or(time)),
            protocol,
            src_ip: Some(src),
            src_port: port_for(protocol, sport),
            dst_ip: dst,
            dst_port: port_for(protocol, dport),
            bytes: sum(count(kv, "SendBytes"), count(kv, "RcvBytes")),
            packets: sum(count(kv, "SendPkts"), count(kv, "RcvPkts")),
            vrf,
            ..FlowRecord::default()
        }));
        return Ok(1);
    }
    let base = NatEvent {
        time,
        event: None,
        protocol,
        src_ip: Some(src),
        src_port: sport,
        x_ip: xip,
        x_port: xport,
        x_port_end: None,
        dst_ip: dst,
        dst_port: dport,
        vrf,
        direction: Some("out"),
        end_time: None,
        bytes_out: None,
        bytes_in: None,
        packets_out: None,
        packets_in: None,
    };
    if !teardown {
        let mut e = NatEvent {
            time: begin.unwrap_or(time),
            event: Some(NatEventKind::MappingObserved),
            // Without EndTime, a sighting: its end is not known.
            end_time: end,
            ..base
        };
        clean_ports(&mut e);
        out.push(Event::Nat(e));
        return Ok(1);
    }
    let close_time = end.unwrap_or(time);
    let mut close = NatEvent {
        time: close_time,
        event: Some(NatEventKind::SessionDelete),
        end_time: Some(close_time),
        bytes_out: count(kv, "SendBytes"),
        bytes_in: count(kv, "RcvBytes"),
        packets_out: count(kv, "SendPkts"),
        packets_in: count(kv, "RcvPkts"),
        ..base.clone()
    };
    clean_ports(&mut close);
    let mut n = 0;
    if let Some(b) = begin {
        let mut open = NatEvent {
            time: b,
            event: Some(NatEventKind::SessionCreate),
            ..base
        };
        clean_ports(&mut open);
        out.push(Event::Nat(open));
        n += 1;
    }
    out.push(Event::Nat(close));
    Ok(n + 1)
}

fn policy(
    kv: &[(&str, &str)],
    action: FirewallAction,
    time: Micros,
    ctx: &ParseCtx,
) -> Result<FirewallEvent, ParseError> {
    let protocol = match get(kv, "protocol") {
        Some(p) => Some(protocol_number(p).ok_or_else(|| err(format!("unknown protocol={p:?}")))?),
        None => None,
    };
    let src_ip = Some(ip(kv, "source-ip")?.ok_or_else(|| err("policy log without source-ip"))?);
    let time = get(kv, "time")
        .and_then(|t| slash_datetime(t, ctx.clock()))
        .map_or(time, |(t, _)| t);
    Ok(FirewallEvent {
        time,
        action,
        rule: get(kv, "rule-name").map(str::to_owned),
        protocol,
        src_ip,
        src_port: port_for(protocol, port(kv, "source-port")?),
        dst_ip: ip(kv, "destination-ip")?,
        dst_port: port_for(protocol, port(kv, "destination-port")?),
        in_if: None,
        out_if: None,
        length: None,
        vrf: vrf(get(kv, "vsys")),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_rejects, utc_ctx};
    use super::super::util::{MICROS_PER_SEC, civil_micros, test_corpus};
    use super::super::{Format, parse_message};
    use super::*;

    fn ctx() -> ParseCtx {
        utc_ctx(civil_micros(2020, 9, 9, 12, 0, 0, 0).unwrap())
    }

    #[test]
    fn pairs_with_commas_in_values() {
        let kv = pairs("A=1,Page=/p?x=20,0,1&y=2,0,Host=h.example.com.");
        assert_eq!(
            kv,
            vec![
                ("A", "1"),
                ("Page", "/p?x=20,0,1&y=2,0"),
                ("Host", "h.example.com")
            ]
        );
        let kv = pairs("vsys=public, protocol=17, rule-name=Internet Access.");
        assert_eq!(
            kv,
            vec![
                ("vsys", "public"),
                ("protocol", "17"),
                ("rule-name", "Internet Access")
            ]
        );
    }

    #[test]
    fn teardown_ipv6_with_vpn() {
        let line = "%%01SECLOG/6/SESSION_TEARDOWN(l):IPVer=6,Protocol=tcp,SourceIP=2001:db8::5,DestinationIP=2001:db8:9::1,SourcePort=40000,DestinationPort=443,SourceNatIP=2001:db8:ff::1,SourceNatPort=3000,BeginTime=1599645876,EndTime=1599645911,SendPkts=3,SendBytes=300,RcvPkts=4,RcvBytes=400,SourceVpnID=7,DestinationVpnID=7,PolicyName=p.";
        let mut out = Vec::new();
        let p = parse_message(line.as_bytes(), Format::Auto, &ctx(), &mut out).unwrap();
        assert_eq!((p.format, p.events), ("huawei", 2));
        let (Some(Event::Nat(open)), Some(Event::Nat(close))) = (out.first(), out.get(1)) else {
            panic!("{out:?}")
        };
        assert_eq!(open.event, Some(NatEventKind::SessionCreate));
        assert_eq!(open.time, 1_599_645_876 * MICROS_PER_SEC);
        assert_eq!(
            (close.time, close.end_time),
            (
                1_599_645_911 * MICROS_PER_SEC,
                Some(1_599_645_911 * MICROS_PER_SEC)
            )
        );
        assert_eq!((close.bytes_out, close.bytes_in), (Some(300), Some(400)));
        assert_eq!(close.vrf.as_deref(), Some("7"));
        assert_eq!(close.src_ip, "2001:db8::5".parse().ok());
    }

    #[test]
    fn rejects() {
        assert_rejects(
            Format::Huawei,
            &ctx(),
            [
                (
                    "%%01URL/4/FILTER(l): The URL filtering policy was matched.",
                    "URL/FILTER carries no",
                ),
                (
                    "<134> 1 2019 January 18 14:09:22 X.X.X.X cnelog - NAT444:SessionbasedA [17 X.X.X.X - X.X.X.X 1052 2000 -]",
                    "flexible-template",
                ),
                (
                    "%%01SECLOG/6/SESSION_TEARDOWN(l):IPVer=4,Protocol=udp,SourceIP=10.0.0.x",
                    "bad SourceIP",
                ),
                (
                    "%%01SECLOG/6/SESSION_URL(l):IPVer=4,Protocol=tcp,SourceIP=10.0.0.1,SourcePort=1",
                    "not a flow summary",
                ),
            ],
        );
    }

    /// Every line of huawei.txt through auto-detection, values checked against the sources'
    /// expectations and derived readings.
    #[test]
    fn corpus_huawei() {
        let c = ctx();
        let (mut parsed, mut events, mut rejected, mut checked) = (0, 0, Vec::new(), 0);
        for smp in test_corpus::samples("huawei.txt") {
            let mut out = Vec::new();
            match parse_message(smp.line.as_bytes(), Format::Auto, &c, &mut out) {
                Ok(p) => {
                    assert_eq!(p.format, "huawei", "line {}", smp.line_no);
                    parsed += 1;
                    events += p.events;
                }
                Err(e) => {
                    rejected.push((smp.line_no, e.to_string()));
                    continue;
                }
            }
            let d = smp
                .derived()
                .filter(|_| smp.comments.iter().any(|c| c.starts_with("# derived")));
            let field = |k: &str| {
                smp.line
                    .split([',', ':', '(', ' '])
                    .find_map(|t| t.strip_prefix(&format!("{k}=")))
                    .map(|v| v.trim_end_matches('.').to_string())
            };
            for ev in &out {
                match ev {
                    Event::Nat(n) => {
                        let v = |k: &str| d.and_then(|d| test_corpus::annotation_value(d, k));
                        if let Some(d) = d {
                            assert!(d.contains("SESSION_TEARDOWN"));
                            assert_eq!(n.src_ip, v("src").and_then(|a| a.parse().ok()));
                            assert_eq!(n.src_port, v("sport").and_then(|a| a.parse().ok()));
                            assert_eq!(n.x_ip, v("nat.src").and_then(|a| a.parse().ok()));
                            assert_eq!(n.x_port, v("nat.sport").and_then(|a| a.parse().ok()));
                            assert_eq!(n.dst_ip, v("dst").and_then(|a| a.parse().ok()));
                            let (b, e): (i64, i64) = (
                                v("begin").unwrap().parse().unwrap(),
                                v("end").unwrap().parse().unwrap(),
                            );
                            let want = if n.event == Some(NatEventKind::SessionCreate) {
                                b
                            } else {
                                e
                            };
                            assert_eq!(n.time, want * MICROS_PER_SEC);
                            assert_eq!(n.protocol, Some(17));
                            checked += 7;
                        } else {
                            // SESSION_URL: the mapping seen in use at its one instant.
                            assert_eq!(n.event, Some(NatEventKind::MappingObserved));
                            assert_eq!(n.x_ip, field("SourceNatIP").and_then(|a| a.parse().ok()));
                            assert_eq!(
                                n.x_port,
                                field("SourceNatPort").and_then(|a| a.parse().ok())
                            );
                            assert_eq!(n.src_ip, field("SourceIP").and_then(|a| a.parse().ok()));
                            assert_eq!(n.end_time, Some(n.time));
                            checked += 4;
                        }
                    }
                    Event::Flow(f) => {
                        assert_eq!(f.src_ip, field("SourceIP").and_then(|a| a.parse().ok()));
                        assert_eq!(
                            f.dst_port,
                            field("DestinationPort").and_then(|a| a.parse().ok())
                        );
                        assert_eq!(f.bytes, Some(2135 + 1534));
                        assert_eq!(f.time, 1_538_736_476 * MICROS_PER_SEC);
                        assert_eq!(f.end_time, Some(1_538_736_733 * MICROS_PER_SEC));
                        checked += 5;
                    }
                    Event::Firewall(fw) => {
                        assert_eq!(fw.action, FirewallAction::Allow);
                        assert_eq!(fw.rule.as_deref(), Some("Internet Access"));
                        assert_eq!(fw.src_port, Some(2426));
                        assert_eq!(fw.protocol, Some(17));
                        // time=2018/10/5 09:52:19 in the body, at the device's offset (0).
                        assert_eq!(fw.time, civil_micros(2018, 10, 5, 9, 52, 19, 0).unwrap());
                        checked += 5;
                    }
                    other => panic!("not a Huawei event: {other:?}"),
                }
            }
        }
        // POLICYPERMIT, SESSION_TEARDOWN without NAT, SESSION_TEARDOWN with NAT (2 events),
        // SESSION_URL with NAT.
        assert_eq!((parsed, events), (4, 5), "rejected: {rejected:?}");
        // URL filter alert and the two masked NAT444 flexible-template lines.
        assert_eq!(rejected.len(), 3, "{rejected:?}");
        assert!(checked >= 25, "checked {checked}");
    }
}
