//! iptables / nftables kernel LOG lines (the syslog envelope already peeled):
//!
//! ```text
//! [4475569.016000] DROP_IN IN=eth0 OUT= MAC=… SRC=198.51.100.9 DST=203.0.113.1 LEN=60 … PROTO=TCP SPT=51000 DPT=22 …
//! ```
//!
//! - An optional kernel uptime bracket (`[ 3529.289825]`) is skipped: it is seconds since boot,
//!   not wall time, so the event time is the envelope's (the caller's `default_time`).
//! - The log prefix is everything before `IN=` (the kernel prints it verbatim, often without a
//!   trailing space: `DROP(src wan)IN=eth0`, `Shorewall:net2fw:DROP:IN=eth1`); it is kept as the
//!   rule. Its words give the action: Cloud Foundry's `OK_<container>` is Allow and `DENY_…`
//!   Deny (silk-release iptables-logger); otherwise DROP/DENY/REJECT/BLOCK → Deny,
//!   ACCEPT/ALLOW/PERMIT/ACC/OK → Allow, anything else (`[UFW AUDIT]`, no prefix) → Log.
//! - For each key the first occurrence wins: `LEN=` and `ID=` repeat (IP, then UDP / ICMP), and
//!   ICMP errors quote the offending packet in brackets (`[SRC=… DST=…]`), where parsing stops.
//! - ICMP `TYPE=`/`CODE=` have no column in the model: ports stay None.

use std::sync::LazyLock;

use crate::model::{Event, FirewallAction, FirewallEvent, Micros};
use memchr::memmem::Finder;

use super::ParseError;
use super::util::{find_any, parse_ip, parse_u16, parse_u32, split_once_byte};
use crate::model::protocol_number as proto_number;

const FORMAT: &str = "iptables";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    static SRC: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("SRC="));
    find_in(body).is_some() && SRC.find(body.as_bytes()).is_some()
}

/// Parses one LOG line into one firewall event; returns the number of events pushed (1).
pub fn parse(line: &str, default_time: Micros, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let s = strip_uptime(line.trim());
    let pos = find_in(s).ok_or_else(|| err("no IN= field"))?;
    let prefix = s.get(..pos).unwrap_or("").trim();
    let fields = s.get(pos..).unwrap_or("");

    let mut f = Fields::default();
    for tok in fields.split_ascii_whitespace() {
        if tok.starts_with('[') {
            break; // the quoted packet of an ICMP error
        }
        // Keys we read start with I, O, S, D, L or P; skip the rest on one byte.
        if !matches!(
            tok.as_bytes().first(),
            Some(b'I' | b'O' | b'S' | b'D' | b'L' | b'P')
        ) {
            continue;
        }
        let Some((k, v)) = split_once_byte(tok, b'=') else {
            continue;
        };
        let slot = match k {
            "IN" => &mut f.in_if,
            "OUT" => &mut f.out_if,
            "SRC" => &mut f.src,
            "DST" => &mut f.dst,
            "LEN" => &mut f.len,
            "PROTO" => &mut f.proto,
            "SPT" => &mut f.spt,
            "DPT" => &mut f.dpt,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v);
        }
        if k == "DPT" {
            break; // the kernel prints DPT after every field read here
        }
    }
    let src = f.src.ok_or_else(|| err("no SRC= field"))?;
    let src_ip = Some(parse_ip(src).ok_or_else(|| err(format!("bad SRC={src}")))?);
    let dst = f.dst.ok_or_else(|| err("no DST= field"))?;
    let dst_ip = Some(parse_ip(dst).ok_or_else(|| err(format!("bad DST={dst}")))?);
    let protocol = match f.proto {
        Some(p) => Some(proto_number(p).ok_or_else(|| err(format!("unknown PROTO={p}")))?),
        None => None,
    };
    let port = |v: Option<&str>, k: &str| match v {
        Some(p) => parse_u16(p)
            .map(Some)
            .ok_or_else(|| err(format!("bad {k}={p}"))),
        None => Ok(None),
    };
    let ev = FirewallEvent {
        time: default_time,
        action: action_of(prefix),
        rule: (!prefix.is_empty()).then(|| prefix.to_owned()),
        protocol,
        src_ip,
        src_port: port(f.spt, "SPT")?,
        dst_ip,
        dst_port: port(f.dpt, "DPT")?,
        in_if: f.in_if.filter(|i| !i.is_empty()).map(str::to_owned),
        out_if: f.out_if.filter(|i| !i.is_empty()).map(str::to_owned),
        length: f.len.and_then(parse_u32),
        vrf: None,
    };
    out.push(Event::Firewall(ev));
    Ok(1)
}

#[derive(Default)]
struct Fields<'a> {
    in_if: Option<&'a str>,
    out_if: Option<&'a str>,
    src: Option<&'a str>,
    dst: Option<&'a str>,
    len: Option<&'a str>,
    proto: Option<&'a str>,
    spt: Option<&'a str>,
    dpt: Option<&'a str>,
}

/// Drops a leading `kernel:` tag (lines that did not come through a syslog parser) and the
/// `[uptime]` bracket.
fn strip_uptime(s: &str) -> &str {
    let s = s.strip_prefix("kernel:").map_or(s, str::trim_start);
    if let Some(rest) = s.strip_prefix('[')
        && let Some(close) = rest.find(']')
        && rest.get(..close).is_some_and(|t| {
            let t = t.trim();
            !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        })
    {
        return rest.get(close + 1..).unwrap_or("").trim_start();
    }
    s
}

/// Byte offset of the `IN=` that starts the kernel's fields: the first one whose value is
/// followed by ` OUT=`. The prefix before it may be glued to it and may contain anything.
fn find_in(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    // Detection runs this over every line that is not conntrack: a `memchr` for the `I`, rare
    // in other logs, and a compare at each. The vector searcher for "IN=" stepped 32 bytes per
    // ~10 instructions (~370 a Junos RT_FLOW line), `memchr` 128. "IN=" cannot overlap
    // itself, so every occurrence is tried, as that search's loop did.
    for at in memchr::memchr_iter(b'I', b) {
        if b.get(at + 1..at + 3) != Some(b"N=".as_slice()) {
            continue;
        }
        let after = s.get(at + 3..)?;
        // A byte search: `str::find(char)` sets up a char searcher per call (~170
        // instructions), and detection runs this over most lines.
        let val_end = find_any(after.as_bytes(), [b' ']).unwrap_or(after.len());
        if after.get(val_end..).is_some_and(|r| r.starts_with(" OUT=")) {
            return Some(at);
        }
    }
    None
}

/// The verdict a log prefix states (also used for MikroTik log prefixes).
pub(crate) fn action_of(prefix: &str) -> FirewallAction {
    // Cloud Foundry: "OK_<container handle>" / "DENY_<handle>" / "DENY_C2C_<guid>"; the handle
    // is arbitrary text, so the leading marker decides before any word search.
    if starts_with_ci(prefix, "OK_") {
        return FirewallAction::Allow;
    }
    if starts_with_ci(prefix, "DENY_") {
        return FirewallAction::Deny;
    }
    let mut allow = false;
    for word in prefix
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if [
            "DROP", "DENY", "REJECT", "BLOCK", "DROPPED", "DENIED", "REJECTED", "BLOCKED",
        ]
        .iter()
        .any(|d| word.eq_ignore_ascii_case(d))
            || contains_ci(word, "DROP")
            || contains_ci(word, "REJECT")
        {
            return FirewallAction::Deny;
        }
        allow |= [
            "ACCEPT",
            "ALLOW",
            "PERMIT",
            "ACC",
            "OK",
            "ACCEPTED",
            "ALLOWED",
            "PERMITTED",
        ]
        .iter()
        .any(|a| word.eq_ignore_ascii_case(a))
            || contains_ci(word, "ACCEPT")
            || contains_ci(word, "ALLOW");
    }
    if allow {
        FirewallAction::Allow
    } else {
        FirewallAction::Log
    }
}

fn starts_with_ci(s: &str, p: &str) -> bool {
    s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
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
    fn find_in_agrees_with_a_substring_search() {
        // What find_in returned with a search for every "IN=".
        fn by_search(s: &str) -> Option<usize> {
            s.match_indices("IN=").map(|(at, _)| at).find(|at| {
                let after = &s[at + 3..];
                let end = after.find(' ').unwrap_or(after.len());
                after[end..].starts_with(" OUT=")
            })
        }
        let mut lines: Vec<String> = [
            "IN=eth0 OUT=eth1 SRC=1.2.3.4",
            "IIN=eth0 OUT=",
            "IN=IN= OUT=",
            "xIN=a OUT=b IN=c OUT=",
            "IN=a  OUT=b",
            "IN=",
            "I",
            "IN",
            "IN= OUT=",
            "é IN=é OUT=",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for name in [
            "iptables.txt",
            "juniper.txt",
            "cisco_asa.txt",
            "syslog_edge.txt",
        ] {
            lines.extend(test_corpus::samples(name).into_iter().map(|s| s.line));
        }
        for l in &lines {
            assert_eq!(find_in(l), by_search(l), "{l:?}");
        }
    }

    #[test]
    fn basic_fields() {
        let e = one(
            "[ 3529.289825] [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=198.51.100.9 DST=203.0.113.1 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=0 DF PROTO=TCP SPT=51000 DPT=22 WINDOW=8192 RES=0x00 SYN URGP=0",
        );
        assert_eq!(e.time, T0);
        assert_eq!(e.action, FirewallAction::Deny);
        assert_eq!(e.rule.as_deref(), Some("[UFW BLOCK]"));
        assert_eq!(
            (e.src_ip, e.dst_ip),
            (ip("198.51.100.9"), ip("203.0.113.1"))
        );
        assert_eq!(
            (e.protocol, e.src_port, e.dst_port, e.length),
            (Some(6), Some(51000), Some(22), Some(60))
        );
        assert_eq!(
            (e.in_if.as_deref(), e.out_if.as_deref()),
            (Some("eth0"), None)
        );
    }

    #[test]
    fn cloud_foundry_prefixes() {
        // Shapes from silk-release's iptables-logger tests, with documentation addresses.
        let tail = "IN=s-010255015007 OUT=eth0 MAC=aa:aa:0a:ff:0f:07:ee:ee:0a:ff:0f:07:08:00 SRC=100.64.15.7 DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=49466 DPT=80 WINDOW=29200 RES=0x00 SYN URGP=0 MARK=0x2";
        for (prefix, action) in [
            ("OK_d538d169-f2f6-4587-77b1-f ", FirewallAction::Allow),
            ("OK_0002_e9e8959f-3828-4136-8 ", FirewallAction::Allow),
            ("DENY_d538d169-f2f6-4587-77b1 ", FirewallAction::Deny),
            ("DENY_C2C_cb40f81e-52ce-41c5- ", FirewallAction::Deny),
            // The kernel prints the prefix verbatim: a 29-char prefix can be glued to IN=.
            ("OK_container-handle-drop-long", FirewallAction::Allow),
        ] {
            let e = one(&format!("[88032.025828] {prefix}{tail}"));
            assert_eq!(e.action, action, "{prefix}");
            assert_eq!(e.rule.as_deref(), Some(prefix.trim()));
            assert_eq!((e.src_port, e.dst_port), (Some(49466), Some(80)));
        }
    }

    #[test]
    fn icmp_ipv6_and_numbers() {
        // ICMP error quoting the packet that caused it: the outer addresses win.
        let e = one(
            "REJECT IN=eth0 OUT= SRC=203.0.113.1 DST=198.51.100.9 LEN=88 TOS=0x00 PREC=0xC0 TTL=64 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=198.51.100.9 DST=203.0.113.1 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=0 PROTO=UDP SPT=53 DPT=9999 LEN=40 ]",
        );
        assert_eq!(
            (e.src_ip, e.dst_ip, e.protocol),
            (ip("203.0.113.1"), ip("198.51.100.9"), Some(1))
        );
        assert_eq!((e.src_port, e.dst_port, e.length), (None, None, Some(88)));
        let e = one(
            "IN=eth0 OUT=eth1 MAC= SRC=2001:0db8:0000:0000:0000:0000:0000:0001 DST=2001:db8::2 LEN=104 TC=0 HOPLIMIT=63 FLOWLBL=0 PROTO=ICMPv6 TYPE=128 CODE=0 ID=1 SEQ=1",
        );
        assert_eq!(
            (e.src_ip, e.protocol, e.action, e.rule),
            (ip("2001:db8::1"), Some(58), FirewallAction::Log, None)
        );
        let e = one("IN=eth0 OUT= SRC=198.51.100.1 DST=224.0.0.1 LEN=32 PROTO=2");
        assert_eq!(e.protocol, Some(2));
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for bad in [
            "",
            "IN=eth0 SRC=1.2.3.4",
            "DROP IN=eth0 OUT= DST=198.51.100.1",
            "DROP IN=eth0 OUT= SRC=198.51.100.1",
            "DROP IN=eth0 OUT= SRC=300.1.1.1 DST=198.51.100.1",
            "DROP IN=eth0 OUT= SRC=198.51.100.1 DST=198.51.100.2 PROTO=TCP SPT=99999",
            "DROP IN=eth0 OUT= SRC=198.51.100.1 DST=198.51.100.2 PROTO=FOO",
            "2014-07-18 10:51:43 ERROR: '/sbin/iptables -D INPUT_ZONES' failed",
        ] {
            assert!(parse(bad, T0, &mut out).is_err(), "{bad}");
        }
        assert!(out.is_empty());
    }

    #[test]
    fn actions() {
        use FirewallAction::*;
        for (p, a) in [
            ("DROP(src wan)", Deny),
            ("Shorewall:FORWARD:REJECT:", Deny),
            ("SFW2-INext-DROP-DEFLT", Deny),
            ("SFW2-INext-ACC-TCP", Allow),
            ("[UFW ALLOW]", Allow),
            ("[UFW AUDIT]", Log),
            ("FIREWALL_OUT", Log),
            ("nft-accept-in:", Allow),
            ("", Log),
        ] {
            assert_eq!(action_of(p), a, "{p}");
        }
    }

    /// Every line of iptables.txt, through the syslog envelope as it arrives.
    #[test]
    fn corpus_iptables() {
        let ctx = ParseCtx {
            recv_time: T0,
            zone: crate::time::Zone::Fixed(0),
        };
        let samples = test_corpus::samples("iptables.txt");
        let (mut parsed, mut rejected, mut checked) = (0, Vec::new(), 0);
        for smp in &samples {
            let env = syslog::peel(&smp.line, &ctx);
            let mut out = Vec::new();
            let e = match parse(env.body, env.time.unwrap_or(ctx.recv_time), &mut out) {
                Ok(_) => match out.pop() {
                    Some(Event::Firewall(e)) => e,
                    other => panic!("{other:?}"),
                },
                Err(e) => {
                    rejected.push((smp.clone(), e));
                    continue;
                }
            };
            parsed += 1;
            // Independent reading of the line's first SRC= / DST= / SPT= / DPT= / PROTO=.
            let kv = |k: &str| {
                smp.line
                    .split_whitespace()
                    .filter_map(|t| t.split_once('='))
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(
                e.src_ip,
                kv("SRC").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                e.dst_ip,
                kv("DST").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                e.src_port,
                kv("SPT").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                e.dst_port,
                kv("DPT").and_then(|v| v.parse().ok()),
                "line {}",
                smp.line_no
            );
            assert_eq!(
                e.protocol,
                kv("PROTO").and_then(|v| proto_number(&v)),
                "line {}",
                smp.line_no
            );
            checked += 5;
            // The kernel line's time is the envelope's BSD stamp, in the year nearest T0.
            let stamp = chrono::DateTime::from_timestamp_micros(e.time)
                .unwrap()
                .format("%b %e %H:%M:%S")
                .to_string();
            let head: String = smp
                .line
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(
                stamp.split_whitespace().collect::<Vec<_>>().join(" "),
                head,
                "line {}",
                smp.line_no
            );
            // Action from the prefix words as the annotations name them.
            let want = if smp.line.contains("DROP")
                || smp.line.contains("REJECT")
                || smp.line.contains("BLOCK")
            {
                FirewallAction::Deny
            } else if smp.line.contains("-ACC-") {
                FirewallAction::Allow
            } else {
                FirewallAction::Log
            };
            assert_eq!(e.action, want, "line {}", smp.line_no);
            checked += 2;
            // logstash's shorewall expectations.
            if let Some(x) = smp.expect().filter(|x| x.contains("nf_src_ip")) {
                let v = |k: &str| test_corpus::annotation_value(x, k);
                assert_eq!(env.host, v("nf_host").as_deref(), "line {}", smp.line_no);
                assert_eq!(e.in_if, v("nf_in_interface"));
                assert_eq!(e.out_if, v("nf_out_interface"));
                assert_eq!(e.src_ip, v("nf_src_ip").and_then(|a| a.parse().ok()));
                assert_eq!(e.dst_ip, v("nf_dst_ip").and_then(|a| a.parse().ok()));
                assert_eq!(e.length, v("nf_len").and_then(|a| a.parse().ok()));
                assert_eq!(e.protocol, v("nf_protocol").and_then(|a| proto_number(&a)));
                assert_eq!(e.src_port, v("nf_src_port").and_then(|a| a.parse().ok()));
                assert_eq!(e.dst_port, v("nf_dst_port").and_then(|a| a.parse().ok()));
                assert!(
                    e.rule
                        .as_deref()
                        .is_some_and(|r| r.contains(v("nf_action2").unwrap().as_str()))
                );
                checked += 10;
            }
        }
        // 4 wazuh custom-action lines, 1 + 19 drop, 19 OpenWRT, 2 UFW block, 5 SFW2 / SuSE,
        // 2 Shorewall, 1 UFW audit.
        assert_eq!(parsed, 51, "parsed lines");
        // The three firewalld daemon messages are not packet logs (their wazuh tests expect the
        // kernel decoder NOT to match).
        assert_eq!(rejected.len(), 3, "{rejected:?}");
        for (smp, e) in &rejected {
            assert!(
                smp.line.contains(" firewalld: "),
                "line {}: {e}",
                smp.line_no
            );
        }
        assert!(checked > 300);
    }

    #[test]
    fn detection() {
        assert!(looks_like("DROP IN=eth0 OUT= SRC=1.2.3.4 DST=1.2.3.5"));
        assert!(looks_like(
            "Shorewall:net2fw:DROP:IN=eth1 OUT= MAC= SRC=1.2.3.4"
        ));
        assert!(!looks_like("IN=eth0 SRC=1.2.3.4"));
        assert!(!looks_like("ERROR: ZONE_ALREADY_SET"));
    }
}
