//! FortiGate (FortiOS) traffic logs: `key=value` pairs, values optionally double-quoted.
//!
//! ```text
//! date=2019-05-13 time=11:45:04 logid="0000000013" type="traffic" subtype="forward" vd="vdom1"
//!   eventtime=1557773104815101919 srcip=10.1.100.11 srcport=60446 srcintf="port12" dstip=…
//!   dstport=80 dstintf="port11" proto=6 action="close" policyid=4 trandisp="snat"
//!   transip=172.16.200.2 transport=60446 duration=1 sentbyte=412 rcvdbyte=2286 sentpkt=6 rcvdpkt=6
//! ```
//!
//! FortiOS 3/4 spell the same fields `src`, `dst`, `src_port`, `dst_port`, `status`, `tran_ip`,
//! `tran_port`, `sent`, `rcvd`, `sent_pkt`, `rcvd_pkt`, `src_int`, `dst_int`; both are read.
//!
//! - Only `type=traffic` logs are events. Event, UTM (IPS, web filter, app control, AV, SSL) and
//!   anomaly logs are rejected: they describe a session whose traffic log carries the verdict,
//!   or no session at all.
//! - Time: `eventtime` (epoch, s / ms / µs / ns by magnitude, UTC) when present, else `date` +
//!   `time` in the log's `tz` (`tz="+0200"`, FortiOS 6.2+) or the device's configured zone,
//!   else `logtime` / `itime` (epoch), else the envelope's. A collector's stamp in front of the
//!   body is only the fallback: the device's own time wins.
//! - FortiGate writes traffic logs when a session ends (`action=close|timeout|client-rst|…|deny`)
//!   and, with "log at session start", when it starts (`action=start`). The log time is the end;
//!   `duration` (seconds) gives the start.
//! - Source NAT (`transip`/`transport` set and differing from `srcip`/`srcport`) → NAT event,
//!   `src = srcip:srcport`, `x = transip:transport`, `dst = dstip:dstport`, sent bytes/packets
//!   → `*_out`, received → `*_in`, `vd` → `vrf`. Start logs → mapping_observed at their
//!   instant (the end log closes nothing, so an opening would never close). End logs →
//!   mapping_observed over [end − duration, end]: the record states the whole interval the
//!   mapping held, which a session_delete would not carry (its opening would be unknown and the
//!   lookup would have to assume it reached back to the start of the searched range). This
//!   holds for denied sessions too: FortiGate only fills `transip` once a policy translated the
//!   session, and a later drop (application control, `appact=drop-session`) does not undo the
//!   traffic that used the mapping.
//! - No source NAT: denied sessions (`action=deny`, `ip-conn`) → firewall event with the policy
//!   id as rule, interfaces, `vd`; others → flow record over [start, end], bytes and packets both
//!   ways summed (a flow row has one counter), destination NAT (`tranip`/`tranport`) as the
//!   post-NAT destination.

use std::net::IpAddr;

use crate::model::{
    Event, FirewallAction, FirewallEvent, FlowRecord, Micros, NatEvent, NatEventKind,
};

use super::ParseError;
use super::endpoint::has_ports;
use super::util::{
    MICROS_PER_SEC, epoch_int_micros, parse_ip, parse_iso_prefix, parse_u8, parse_u16, parse_u64,
};
use crate::time::Clock;

const FORMAT: &str = "fortigate";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection: a `logid=` (or v3/v4 `log_id=`) and a `type=` key.
pub fn looks_like(body: &str) -> bool {
    let b = body.trim_start();
    let first = b.split(' ').next().unwrap_or("");
    first.contains('=') && (has_key(b, "logid") || has_key(b, "log_id")) && has_key(b, "type")
}

/// `key=` at the start or after a space.
fn has_key(b: &str, key: &str) -> bool {
    let mut from = 0;
    while let Some(p) = b.get(from..).and_then(|r| r.find(key)) {
        let at = from + p;
        let before_ok = at == 0 || b.as_bytes().get(at - 1) == Some(&b' ');
        if before_ok && b.as_bytes().get(at + key.len()) == Some(&b'=') {
            return true;
        }
        from = at + key.len();
    }
    false
}

/// The pairs of one log, values without their quotes. First occurrence of a key wins.
struct Kv<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Kv<'a> {
    fn parse(s: &'a str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        let mut pairs = Vec::with_capacity(48);
        let mut i = 0;
        while i < b.len() {
            if b.get(i) == Some(&b' ') {
                i += 1;
                continue;
            }
            let start = i;
            while b.get(i).is_some_and(|c| *c != b'=' && *c != b' ') {
                i += 1;
            }
            if b.get(i) != Some(&b'=') {
                continue; // a word without `=`: not a field
            }
            let key = s.get(start..i).unwrap_or("");
            i += 1;
            let value = if b.get(i) == Some(&b'"') {
                let vstart = i + 1;
                let mut j = vstart;
                loop {
                    match b.get(j) {
                        None => return Err(err(format!("unterminated quote in {key}="))),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
                s.get(vstart..j).unwrap_or("")
            } else {
                let vstart = i;
                while b.get(i).is_some_and(|c| *c != b' ') {
                    i += 1;
                }
                s.get(vstart..i).unwrap_or("")
            };
            pairs.push((key, value));
        }
        Ok(Kv(pairs))
    }

    /// The value of the first of `keys` present; "" and "N/A" count as absent.
    fn get(&self, keys: &[&str]) -> Option<&'a str> {
        keys.iter().find_map(|k| {
            self.0
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| *v)
                .filter(|v| !v.is_empty() && *v != "N/A")
        })
    }

    fn u64(&self, keys: &[&str]) -> Result<Option<u64>, ParseError> {
        match self.get(keys) {
            Some(v) => parse_u64(v)
                .map(Some)
                .ok_or_else(|| err(format!("bad {}={v:?}", keys[0]))),
            None => Ok(None),
        }
    }

    fn ip(&self, keys: &[&str]) -> Result<Option<IpAddr>, ParseError> {
        match self.get(keys) {
            Some(v) => parse_ip(v)
                .map(Some)
                .ok_or_else(|| err(format!("bad {}={v:?}", keys[0]))),
            None => Ok(None),
        }
    }

    fn port(&self, keys: &[&str]) -> Result<Option<u16>, ParseError> {
        match self.get(keys) {
            Some(v) => parse_u16(v)
                .map(|p| (p != 0).then_some(p))
                .ok_or_else(|| err(format!("bad {}={v:?}", keys[0]))),
            None => Ok(None),
        }
    }
}

/// Parses one FortiGate log into one event; returns the number of events pushed (1).
/// `device` is the device's clock, for `date`/`time` without a `tz` field.
pub fn parse(
    line: &str,
    default_time: Micros,
    device: Clock,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let kv = Kv::parse(line.trim())?;
    let ty = kv.get(&["type"]).ok_or_else(|| err("no type= field"))?;
    if ty != "traffic" {
        let sub = kv.get(&["subtype"]).unwrap_or("-");
        return Err(err(format!("type={ty} subtype={sub}: not a traffic log")));
    }
    let end = log_time(&kv, default_time, device)?;
    let src_ip = kv
        .ip(&["srcip", "src"])?
        .ok_or_else(|| err("traffic log without srcip"))?;
    let dst_ip = kv
        .ip(&["dstip", "dst"])?
        .ok_or_else(|| err("traffic log without dstip"))?;
    let protocol = match kv.get(&["proto"]) {
        Some(p) => Some(parse_u8(p).ok_or_else(|| err(format!("bad proto={p:?}")))?),
        None => None,
    };
    let ports = has_ports(protocol);
    let port = |keys: &[&str]| -> Result<Option<u16>, ParseError> {
        let p = kv.port(keys)?;
        Ok(p.filter(|_| ports))
    };
    let src_port = port(&["srcport", "src_port"])?;
    let dst_port = port(&["dstport", "dst_port"])?;
    let action = kv
        .get(&["action", "status"])
        .ok_or_else(|| err("traffic log without action"))?;
    let duration = kv.u64(&["duration"])?;
    let start = match duration {
        Some(d) => {
            let us = i64::try_from(d)
                .ok()
                .and_then(|d| d.checked_mul(MICROS_PER_SEC))
                .ok_or_else(|| err(format!("bad duration={d}")))?;
            end.checked_sub(us)
                .ok_or_else(|| err(format!("bad duration={d}")))?
        }
        None => end,
    };
    let sent = kv.u64(&["sentbyte", "sent"])?;
    let rcvd = kv.u64(&["rcvdbyte", "rcvd"])?;
    let sent_pkt = kv.u64(&["sentpkt", "sent_pkt"])?;
    let rcvd_pkt = kv.u64(&["rcvdpkt", "rcvd_pkt"])?;
    let vrf = kv.get(&["vd"]).map(str::to_owned);

    // Source NAT: a public side that differs from the inside one.
    let trans_ip = kv
        .ip(&["transip", "tran_ip"])?
        .filter(|a| !a.is_unspecified());
    let trans_port = port(&["transport", "tran_port"])?;
    if let Some(x_ip) = trans_ip
        && (x_ip != src_ip || (trans_port.is_some() && trans_port != src_port))
    {
        // A start log is the mapping seen at one instant, not an opening: the session's end
        // comes as a whole-session record, which closes nothing, so an opening would stay open
        // (and name this subscriber) until the carry's idle limit. Until the end record is
        // read, lookups name it in doubt (`correlate::doubt_seen_once`).
        let is_start = action == "start";
        out.push(Event::Nat(NatEvent {
            time: if is_start { end } else { start },
            event: Some(NatEventKind::MappingObserved),
            protocol,
            src_ip: Some(src_ip),
            src_port,
            x_ip: Some(x_ip),
            x_port: trans_port,
            x_port_end: None,
            dst_ip: Some(dst_ip),
            dst_port,
            vrf,
            direction: Some("out"),
            // A start log is a sighting: its end is not known.
            end_time: (!is_start).then_some(end),
            bytes_out: sent,
            bytes_in: rcvd,
            packets_out: sent_pkt,
            packets_in: rcvd_pkt,
        }));
        return Ok(1);
    }

    let iface = |keys: &[&str]| {
        kv.get(keys)
            .filter(|v| !v.starts_with("unknown"))
            .map(str::to_owned)
    };
    if matches!(action, "deny" | "ip-conn" | "blocked" | "dropped") {
        out.push(Event::Firewall(FirewallEvent {
            time: end,
            action: FirewallAction::Deny,
            rule: kv.get(&["policyid", "policyname"]).map(str::to_owned),
            protocol,
            src_ip: Some(src_ip),
            src_port,
            dst_ip: Some(dst_ip),
            dst_port,
            in_if: iface(&["srcintf", "src_int"]),
            out_if: iface(&["dstintf", "dst_int"]),
            length: None,
            vrf,
        }));
        return Ok(1);
    }
    // Destination NAT (port forwards): the translated destination when it differs.
    let tran_dst = kv.ip(&["tranip"])?.filter(|a| !a.is_unspecified());
    let tran_dport = port(&["tranport"])?;
    let dnat =
        tran_dst.is_some_and(|d| d != dst_ip) || (tran_dport.is_some() && tran_dport != dst_port);
    let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
    out.push(Event::Flow(FlowRecord {
        time: start,
        end_time: (action != "start").then_some(end),
        protocol,
        src_ip: Some(src_ip),
        src_port,
        dst_ip: Some(dst_ip),
        dst_port,
        post_nat_dst_ip: if dnat {
            tran_dst.or(Some(dst_ip))
        } else {
            None
        },
        post_nat_dst_port: if dnat { tran_dport.or(dst_port) } else { None },
        bytes: sum(sent, rcvd),
        packets: sum(sent_pkt, rcvd_pkt),
        vrf,
        ..FlowRecord::default()
    }));
    Ok(1)
}

/// The log's own time (see the module doc for the order).
fn log_time(kv: &Kv<'_>, default_time: Micros, device: Clock) -> Result<Micros, ParseError> {
    if let Some(v) = kv.get(&["eventtime"]) {
        return parse_u64(v)
            .and_then(epoch_int_micros)
            .ok_or_else(|| err(format!("bad eventtime={v:?}")));
    }
    if let Some(date) = kv.get(&["date"]) {
        let time = kv
            .get(&["time"])
            .ok_or_else(|| err("date= without time="))?;
        let offset = match kv.get(&["tz"]) {
            Some(z) => device.with_offset(parse_tz(z).ok_or_else(|| err(format!("bad tz={z:?}")))?),
            None => device,
        };
        let text = format!("{date} {time}");
        return parse_iso_prefix(&text)
            .filter(|(_, n)| *n == text.len())
            .and_then(|(ts, _)| ts.to_micros(offset))
            .ok_or_else(|| err(format!("bad date={date:?} time={time:?}")));
    }
    if let Some(v) = kv.get(&["logtime", "itime"]) {
        return parse_u64(v)
            .and_then(epoch_int_micros)
            .ok_or_else(|| err(format!("bad logtime={v:?}")));
    }
    Ok(default_time)
}

/// `+0200`, `-07:00`, `+05:30` → seconds east of UTC.
fn parse_tz(z: &str) -> Option<i32> {
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, z.get(1..)?),
        b'-' => (-1, z.get(1..)?),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits.get(..2)?.parse().ok()?;
    let m: i32 = digits.get(2..)?.parse().ok()?;
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip, one_pushed};
    use super::super::util::{civil_micros, test_corpus};
    use super::super::{ParseCtx, syslog};
    use super::*;

    fn run(line: &str, tz: i32) -> Event {
        one_pushed(line, |l, out| {
            parse(l, T0, Clock::new(crate::time::Zone::Fixed(tz), T0), out)
        })
    }

    #[test]
    fn start_log_ipv6_and_tz() {
        let Event::Nat(n) = run(
            r#"date=2024-06-15 time=14:00:00 logid="0000000013" type="traffic" subtype="forward" tz="+0200" vd="cgn" srcip=2001:db8::7 srcport=5000 dstip=64:ff9b::c633:6401 dstport=53 proto=17 action="start" trandisp="snat" transip=203.0.113.7 transport=1040"#,
            0,
        ) else {
            panic!()
        };
        assert_eq!(n.event, Some(NatEventKind::MappingObserved));
        // A start log is a sighting: its end is not known.
        assert_eq!((n.time, n.end_time), (T0, None));
        assert_eq!(
            (n.src_ip, n.x_ip, n.x_port),
            (ip("2001:db8::7"), ip("203.0.113.7"), Some(1040))
        );
        assert_eq!(n.vrf.as_deref(), Some("cgn"));
        // No tz field: the device zone applies; a collector stamp is only the fallback.
        let Event::Firewall(f) = run(
            r#"date=2024-06-15 time=15:00:00 logid="0000000013" type="traffic" vd="root" srcip=198.51.100.9 srcport=40000 srcintf="wan1" dstip=203.0.113.1 dstport=22 dstintf="unknown-0" proto=6 action="deny" policyid=0 trandisp="noop""#,
            3 * 3600,
        ) else {
            panic!()
        };
        assert_eq!(f.time, T0);
        assert_eq!(
            (f.action, f.rule.as_deref(), f.in_if.as_deref(), f.out_if),
            (FirewallAction::Deny, Some("0"), Some("wan1"), None)
        );
        // Epoch forms by magnitude.
        for et in ["1718452800", "1718452800000", "1718452800000000000"] {
            let Event::Firewall(f) = run(
                &format!(
                    "logid=13 type=traffic eventtime={et} srcip=198.51.100.9 dstip=203.0.113.1 proto=1 action=deny"
                ),
                0,
            ) else {
                panic!()
            };
            assert_eq!((f.time, f.src_port), (T0, None), "{et}");
        }
    }

    #[test]
    fn flows_dnat_and_legacy_names() {
        // FortiOS 4 names, accepted session, destination NAT (VIP) only.
        let Event::Flow(f) = run(
            "date=2024-06-15 time=12:00:10 log_id=0038000004 type=traffic subtype=allowed pri=notice vd=root src=198.51.100.9 src_port=40000 dst=203.0.113.1 dst_port=443 tranip=192.168.1.10 tranport=8443 proto=6 status=accept duration=10 sent=100 rcvd=2000 sent_pkt=3 rcvd_pkt=4 tran_ip=0.0.0.0 tran_port=0",
            0,
        ) else {
            panic!()
        };
        assert_eq!((f.time, f.end_time), (T0, Some(T0 + 10 * MICROS_PER_SEC)));
        assert_eq!((f.bytes, f.packets), (Some(2100), Some(7)));
        assert_eq!(
            (f.post_nat_dst_ip, f.post_nat_dst_port, f.post_nat_src_ip),
            (ip("192.168.1.10"), Some(8443), None)
        );
        // transip equal to srcip and transport equal to srcport: nothing was translated.
        let ev = run(
            "logid=13 type=traffic date=2024-06-15 time=12:00:00 srcip=10.0.0.1 srcport=1 dstip=198.51.100.1 dstport=2 proto=6 action=close transip=10.0.0.1 transport=1",
            0,
        );
        assert!(matches!(ev, Event::Flow(_)), "{ev:?}");
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for (bad, why) in [
            (
                "logid=1 type=event subtype=system msg=\"x\"",
                "not a traffic log",
            ),
            ("logid=1 type=traffic srcip=10.0.0.1", "without dstip"),
            (
                "logid=1 type=traffic srcip=10.0.0.1 dstip=10.0.0.300 action=close",
                "bad dstip",
            ),
            (
                "logid=1 type=traffic date=2016-06-14 time=10: 13:03 srcip=10.0.0.1 dstip=10.0.0.2 action=close",
                "bad date",
            ),
            (
                "logid=1 type=traffic tz=+25:00 date=2016-06-14 time=10:13:03 srcip=10.0.0.1 dstip=10.0.0.2 action=close",
                "bad tz",
            ),
            (
                "logid=1 type=traffic eventtime=x srcip=10.0.0.1 dstip=10.0.0.2 action=close",
                "bad eventtime",
            ),
            (
                "logid=1 type=traffic srcip=10.0.0.1 dstip=10.0.0.2 proto=6 srcport=70000 action=close",
                "bad srcport",
            ),
            (
                "logid=1 type=traffic srcip=10.0.0.1 dstip=10.0.0.2 proto=6 action=close msg=\"open",
                "unterminated",
            ),
            (
                "logid=1 type=traffic srcip=10.0.0.1 dstip=10.0.0.2 proto=6",
                "without action",
            ),
            ("logid=1 srcip=10.0.0.1", "no type"),
        ] {
            let e = parse(bad, T0, Clock::UTC, &mut out).unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
        assert!(out.is_empty());
    }

    /// Every line of fortigate.txt through the envelope. The five FortiOS 5/6 traffic logs
    /// (wazuh rule 81618) state a source NAT and become mapping_observed rows whose fields are
    /// compared with an independent reading of the line; the FortiOS 3/4 samples carry a broken
    /// `time=10: 13:03` and are rejected for it; everything else is not a traffic log.
    #[test]
    fn corpus_fortigate() {
        let ctx = ParseCtx {
            recv_time: T0,
            zone: crate::time::Zone::Fixed(-7 * 3600),
        };
        let (mut nat, mut bad_time, mut not_traffic) = (0, 0, 0);
        for smp in test_corpus::samples("fortigate.txt") {
            let env = syslog::peel(&smp.line, &ctx);
            assert!(looks_like(env.body), "line {}", smp.line_no);
            let mut out = Vec::new();
            let def = env.time.unwrap_or(ctx.recv_time);
            match parse(env.body, def, ctx.clock(), &mut out) {
                Ok(_) => {}
                Err(e) if e.reason.contains("not a traffic log") => {
                    assert!(
                        !smp.line.contains("type=traffic")
                            && !smp.line.contains("type=\"traffic\"")
                    );
                    not_traffic += 1;
                    continue;
                }
                Err(e) => {
                    assert!(
                        e.reason.starts_with("bad date="),
                        "line {}: {e}",
                        smp.line_no
                    );
                    assert!(smp.line.contains("time=") && smp.line.contains(": "));
                    bad_time += 1;
                    continue;
                }
            }
            let Some(Event::Nat(n)) = out.pop() else {
                panic!("line {}", smp.line_no)
            };
            nat += 1;
            // The block's expectation (the 2nd line of a block has no comment right above it).
            let expect = smp
                .block
                .iter()
                .find(|c| c.starts_with("# expect"))
                .unwrap();
            let rule = test_corpus::annotation_value(expect, "wazuh_rule");
            assert_eq!(rule.as_deref(), Some("81618"), "line {}", smp.line_no);
            // Independent reading: the unquoted value of each key.
            let v = |k: &str| {
                smp.line
                    .split_whitespace()
                    .find_map(|t| t.strip_prefix(&format!("{k}=")))
                    .map(|x| x.trim_matches('"').to_string())
            };
            let num = |k: &str| v(k).and_then(|x| x.parse::<u64>().ok());
            assert_eq!(n.src_ip, v("srcip").and_then(|a| a.parse().ok()));
            assert_eq!(n.x_ip, v("transip").and_then(|a| a.parse().ok()));
            assert_eq!(n.dst_ip, v("dstip").and_then(|a| a.parse().ok()));
            assert_eq!(n.src_port.map(u64::from), num("srcport"));
            assert_eq!(n.x_port.map(u64::from), num("transport"));
            assert_eq!(n.dst_port.map(u64::from), num("dstport"));
            assert_eq!(n.protocol.map(u64::from), num("proto"));
            assert_eq!(
                (n.bytes_out, n.bytes_in),
                (num("sentbyte"), num("rcvdbyte"))
            );
            assert_eq!(
                (n.packets_out, n.packets_in),
                (num("sentpkt"), num("rcvdpkt"))
            );
            assert_eq!(n.vrf, v("vd"));
            assert_eq!(n.event, Some(NatEventKind::MappingObserved));
            let end = n.end_time.unwrap();
            assert_eq!(
                end - n.time,
                num("duration").unwrap() as i64 * MICROS_PER_SEC
            );
            // The end is eventtime when present; date+time (this corpus' devices ran at UTC−7)
            // must agree with it within the two seconds FortiOS takes to write the log.
            let date = v("date").unwrap();
            let time = v("time").unwrap();
            let (y, mo, d) = (&date[..4], &date[5..7], &date[8..10]);
            let (h, mi, s) = (&time[..2], &time[3..5], &time[6..8]);
            let local = civil_micros(
                y.parse().unwrap(),
                mo.parse().unwrap(),
                d.parse().unwrap(),
                h.parse().unwrap(),
                mi.parse().unwrap(),
                s.parse().unwrap(),
                0,
            )
            .unwrap()
                + 7 * 3600 * MICROS_PER_SEC;
            match num("eventtime") {
                Some(et) => {
                    assert_eq!(Some(end), epoch_int_micros(et));
                    assert!(
                        (end - local).abs() <= 2 * MICROS_PER_SEC,
                        "line {}",
                        smp.line_no
                    );
                }
                None => assert_eq!(end, local),
            }
        }
        assert_eq!((nat, bad_time), (5, 5));
        assert!(not_traffic >= 30, "{not_traffic}");
    }

    #[test]
    fn detection() {
        assert!(looks_like(
            "date=2019-05-13 time=11:45:04 logid=\"0000000013\" type=\"traffic\""
        ));
        assert!(looks_like("itime=1 logid=13 type=traffic"));
        assert!(!looks_like("hello logid=1 type=traffic"));
        assert!(!looks_like("date=1 mylogid=1 type=traffic"));
    }
}
