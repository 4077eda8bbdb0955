//! pfSense / OPNsense `filterlog` lines: pf's packet log as CSV (Netgate "Raw Filter Log
//! Format"; OPNsense writes the same columns with a rule hash as the label):
//!
//! ```text
//! 5,,,1000102433,em0,match,block,in,4,0x0,,128,24677,0,none,17,udp,186,10.9.0.119,10.9.0.255,17500,17600,166
//! ```
//!
//! Common columns: rule number, sub-rule, anchor, tracker (the rule's stable id / label),
//! interface, reason, action, direction, IP version. Then IPv4: TOS, ECN, TTL, ID, offset,
//! flags, protocol id, protocol name; IPv6: class, flow label, hop limit, protocol name,
//! protocol id. Then length, source, destination, and for TCP / UDP source port, destination
//! port, data length (TCP adds flags, sequence, …, which are not read).
//!
//! Every line is a firewall event: `pass` → allow, `block` / `reject` → deny, anything else pf
//! logs (`nat`, `rdr`, `binat`, `scrub`) → log. filterlog never states the translated address,
//! so no NAT event can come from it. The rule is the tracker when set (it survives rule
//! reordering; `0` means none), else the rule number. The interface goes to `in_if` for
//! `in` packets and `out_if` for `out`. Time: the envelope's (filterlog has none of its own).

use crate::model::{Event, FirewallAction, FirewallEvent, Micros};

use super::ParseError;
use super::util::{parse_ip, parse_u8, parse_u16, parse_u32};

const FORMAT: &str = "pfsense";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Columns before the IP-version-specific part.
const COMMON: usize = 9;

/// Cheap check used by format detection: direction and IP version in columns 8 and 9.
pub fn looks_like(body: &str) -> bool {
    let mut f = strip_tag(body.trim()).splitn(COMMON + 1, ',');
    let rule = f.next().unwrap_or("");
    let dir = f.nth(6).unwrap_or("");
    let ver = f.next().unwrap_or("");
    !rule.is_empty()
        && rule.bytes().all(|b| b.is_ascii_digit())
        && matches!(dir, "in" | "out")
        && matches!(ver, "4" | "6")
        && f.next().is_some()
}

/// `filterlog:` / `filterlog[123]:` in front of a line that did not come through a syslog parser.
fn strip_tag(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("filterlog")
        && let Some((tag, after)) = rest.split_once(':')
        && (tag.is_empty() || (tag.starts_with('[') && tag.ends_with(']')))
    {
        return after.trim_start();
    }
    s
}

/// Parses one filterlog line into one firewall event; returns the number of events pushed (1).
pub fn parse(line: &str, default_time: Micros, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let f: Vec<&str> = strip_tag(line.trim()).split(',').collect();
    let col = |i: usize| f.get(i).copied().unwrap_or("");
    if f.len() < COMMON + 8 {
        return Err(err(format!("{} columns, want at least 17", f.len())));
    }
    let (rule_nr, tracker, iface, action, dir, ver) =
        (col(0), col(3), col(4), col(6), col(7), col(8));
    if rule_nr.is_empty() || !rule_nr.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("bad rule number {rule_nr:?}")));
    }
    // Column of the protocol id, of the length, and where source / destination begin.
    let (proto_col, len_col) = match ver {
        "4" => (15, 17),
        "6" => (13, 14),
        v => return Err(err(format!("bad IP version {v:?}"))),
    };
    let proto_txt = col(proto_col);
    let protocol =
        Some(parse_u8(proto_txt).ok_or_else(|| err(format!("bad protocol id {proto_txt:?}")))?);
    let length = parse_u32(col(len_col));
    let addr = |i: usize, what: &str| {
        let v = col(i);
        parse_ip(v).ok_or_else(|| err(format!("bad {what} address {v:?}")))
    };
    let src_ip = Some(addr(len_col + 1, "source")?);
    let dst_ip = Some(addr(len_col + 2, "destination")?);
    let (mut src_port, mut dst_port) = (None, None);
    if matches!(protocol, Some(6 | 17)) {
        let port = |i: usize, what: &str| {
            let v = col(i);
            parse_u16(v)
                .map(Some)
                .ok_or_else(|| err(format!("bad {what} port {v:?}")))
        };
        src_port = port(len_col + 3, "source")?;
        dst_port = port(len_col + 4, "destination")?;
    }
    let action = match action {
        "pass" => FirewallAction::Allow,
        "block" | "reject" => FirewallAction::Deny,
        "" => return Err(err("empty action")),
        _ => FirewallAction::Log,
    };
    let iface = (!iface.is_empty()).then(|| iface.to_owned());
    let (in_if, out_if) = match dir {
        "in" => (iface, None),
        "out" => (None, iface),
        d => return Err(err(format!("bad direction {d:?}"))),
    };
    let rule = if !tracker.is_empty() && tracker != "0" {
        tracker
    } else {
        rule_nr
    };
    out.push(Event::Firewall(FirewallEvent {
        time: default_time,
        action,
        rule: Some(rule.to_owned()),
        protocol,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        in_if,
        out_if,
        length,
        vrf: None,
    }));
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, firewall, ip, one_pushed};
    use super::super::util::test_corpus;
    use super::super::{ParseCtx, syslog};
    use super::*;

    fn one(line: &str) -> FirewallEvent {
        firewall(one_pushed(line, |l, out| parse(l, T0, out)))
    }

    #[test]
    fn ipv6_tcp_and_opnsense_label() {
        // Column layout of the Netgate grammar for IPv6 TCP; OPNsense-style hash label.
        let e = one(
            "filterlog[4242]: 77,,,02f4bab031b57d1e30553ce08e0ec131,igb1,match,pass,out,6,0x00,0x00000,64,tcp,6,80,2001:db8::10,2001:db8:1::20,50432,443,0,S,1519102343,,65228,,mss;nop;wscale;sackOK;TS",
        );
        assert_eq!(e.action, FirewallAction::Allow);
        assert_eq!(e.rule.as_deref(), Some("02f4bab031b57d1e30553ce08e0ec131"));
        assert_eq!(
            (e.src_ip, e.dst_ip),
            (ip("2001:db8::10"), ip("2001:db8:1::20"))
        );
        assert_eq!(
            (e.protocol, e.src_port, e.dst_port, e.length),
            (Some(6), Some(50432), Some(443), Some(80))
        );
        assert_eq!((e.in_if, e.out_if.as_deref()), (None, Some("igb1")));
        let e =
            one("9,,,0,em1,match,reject,in,6,0x00,0x00000,255,ipv6-icmp,58,32,fe80::1,ff02::1,");
        assert_eq!(
            (e.action, e.protocol, e.src_port, e.rule.as_deref()),
            (FirewallAction::Deny, Some(58), None, Some("9"))
        );
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for bad in [
            "",
            "5,,,1,em0,match,block,in,4",
            "x,,,1,em0,match,block,in,4,0x0,,128,1,0,none,17,udp,186,10.9.0.119,10.9.0.255,1,2,3",
            "5,,,1,em0,match,block,in,5,0x0,,128,1,0,none,17,udp,186,10.9.0.119,10.9.0.255,1,2,3",
            "5,,,1,em0,match,block,in,4,0x0,,128,1,0,none,17,udp,186,10.9.0.999,10.9.0.255,1,2,3",
            "5,,,1,em0,match,block,in,4,0x0,,128,1,0,none,17,udp,186,10.9.0.1,10.9.0.255,1,",
            "5,,,1,em0,match,block,sideways,4,0x0,,128,1,0,none,17,udp,186,10.9.0.1,10.9.0.255,1,2,3",
            "5,,,1,em0,match,block,in,4,0x0,,128,1,0,none,udp,17,186,10.9.0.1,10.9.0.255,1,2,3",
        ] {
            assert!(parse(bad, T0, &mut out).is_err(), "{bad}");
        }
        assert!(out.is_empty());
    }

    /// pfsense.txt through the envelope: both wazuh samples parse; the "drop event" test
    /// (rule 87701, alert level 5) is a block, the generic one (87700, level 0) a pass. Fields
    /// are compared with the columns read independently.
    #[test]
    fn corpus_pfsense() {
        let ctx = ParseCtx {
            recv_time: T0,
            zone: crate::time::Zone::Fixed(0),
        };
        let samples = test_corpus::samples("pfsense.txt");
        assert_eq!(samples.len(), 2);
        for smp in &samples {
            let env = syslog::peel(&smp.line, &ctx);
            assert!(looks_like(env.body), "line {}", smp.line_no);
            let mut out = Vec::new();
            parse(env.body, env.time.unwrap(), &mut out).unwrap();
            let Some(Event::Firewall(e)) = out.pop() else {
                panic!()
            };
            let csv: Vec<&str> = smp
                .line
                .split_once("filterlog: ")
                .unwrap()
                .1
                .split(',')
                .collect();
            let rule = test_corpus::annotation_value(smp.expect().unwrap(), "wazuh_rule").unwrap();
            let want = if rule == "87701" {
                FirewallAction::Deny
            } else {
                FirewallAction::Allow
            };
            assert_eq!(e.action, want, "line {}", smp.line_no);
            assert_eq!(e.src_ip, csv[18].parse().ok());
            assert_eq!(e.dst_ip, csv[19].parse().ok());
            assert_eq!(e.length, csv[17].parse().ok());
            assert_eq!(e.protocol, csv[15].parse().ok());
            let iface = Some(csv[4].to_owned());
            if csv[7] == "in" {
                assert_eq!((&e.in_if, &e.out_if), (&iface, &None));
            } else {
                assert_eq!((&e.in_if, &e.out_if), (&None, &iface));
            }
            if csv[16] == "udp" {
                assert_eq!(e.src_port, csv[20].parse().ok());
                assert_eq!(e.dst_port, csv[21].parse().ok());
            } else {
                assert_eq!((e.src_port, e.dst_port), (None, None));
            }
            let tracker = csv[3];
            let rule_want = if tracker == "0" { csv[0] } else { tracker };
            assert_eq!(e.rule.as_deref(), Some(rule_want));
            // The BSD stamp in front, in the year nearest T0.
            let stamp = chrono::DateTime::from_timestamp_micros(e.time)
                .unwrap()
                .format("%b %e %H:%M:%S")
                .to_string();
            let head: Vec<&str> = smp.line.split_whitespace().take(3).collect();
            assert_eq!(stamp.split_whitespace().collect::<Vec<_>>(), head);
        }
    }
}
