//! conntrack events as JSON lines, as written by conntrack-event-collector
//! (github.com/aarnaud/conntrack-event-collector, `conntrack/flow.go`):
//!
//! ```json
//! {"Timestamp":0,"Type":"NEW","Id":0,
//!  "Original":{"Layer3":{"Protonum":2,"Protoname":"ipv4","Src":"100.64.0.2","Dst":"198.51.100.7"},
//!              "Layer4":{"Protonum":0,"Protoname":"tcp","Sport":40000,"Dport":443},
//!              "Counter":{"Packets":0,"Bytes":0}},
//!  "Reply":{…},"UNREPLIED":false,"ASSURED":false}
//! ```
//!
//! Quirks of that collector this parser absorbs: `Timestamp` is `strconv.Atoi` of conntrack's
//! "sec.usec" stamp, which fails and leaves 0 — so 0 means "unknown"; `Layer4.Protonum` is never
//! filled (always 0), so the protocol comes from `Protoname`; counters are 0 when the text had
//! none, so an event whose four counters are all 0 gets no counters.
//!
//! Other shapes seen for the same data are accepted too: lower-case / snake_case keys
//! (`type`, `orig`/`original`, `reply`, `layer3`, `src`, `sport`, `counters` — the shape of
//! XML-to-JSON converters of `conntrack -o xml`), `SrcIP`/`DstIP`/`SrcPort`/`DstPort`/`Proto`,
//! and tuples with the address and port keys directly in `Original`/`Reply`.
//!
//! The NAT mapping rules are the text parser's (`conntrack::push_events`): x = reply dst.

use serde::Deserialize;

use super::ParseError;
use super::conntrack::{CtKind, Tuple, push_events};
use super::util::Scalar;
use crate::model::protocol_number as proto_number;
use crate::model::{Event, Micros};

const FORMAT: &str = "conntrack_json";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

#[derive(Deserialize)]
struct CtJson<'a> {
    #[serde(
        borrow,
        rename = "Type",
        alias = "type",
        alias = "TYPE",
        alias = "event",
        alias = "Event",
        alias = "event_type",
        alias = "EventType"
    )]
    kind: Option<Scalar<'a>>,
    #[serde(
        borrow,
        rename = "Timestamp",
        alias = "timestamp",
        alias = "TimeStamp",
        alias = "ts",
        alias = "time",
        alias = "Time"
    )]
    timestamp: Option<Scalar<'a>>,
    #[serde(
        borrow,
        rename = "Original",
        alias = "original",
        alias = "orig",
        alias = "Orig",
        alias = "ORIGINAL"
    )]
    original: Option<Meta<'a>>,
    #[serde(
        borrow,
        rename = "Reply",
        alias = "reply",
        alias = "REPLY",
        alias = "repl"
    )]
    reply: Option<Meta<'a>>,
    #[serde(borrow, rename = "Zone", alias = "zone")]
    zone: Option<Scalar<'a>>,
}

/// One direction. The same struct reads the nested objects (`Layer3`, `Layer4`, `Counter`) and
/// flat tuples (keys directly in `Original`), so one set of key spellings serves both.
#[derive(Deserialize, Default)]
struct Meta<'a> {
    #[serde(
        borrow,
        rename = "Layer3",
        alias = "layer3",
        alias = "L3",
        alias = "l3"
    )]
    layer3: Option<Box<Meta<'a>>>,
    #[serde(
        borrow,
        rename = "Layer4",
        alias = "layer4",
        alias = "L4",
        alias = "l4"
    )]
    layer4: Option<Box<Meta<'a>>>,
    #[serde(
        borrow,
        rename = "Counter",
        alias = "counter",
        alias = "Counters",
        alias = "counters"
    )]
    counter: Option<Box<Meta<'a>>>,
    #[serde(
        borrow,
        rename = "Src",
        alias = "src",
        alias = "SrcIP",
        alias = "SrcIp",
        alias = "src_ip",
        alias = "Source",
        alias = "source",
        alias = "SourceAddress",
        alias = "saddr"
    )]
    src: Option<Scalar<'a>>,
    #[serde(
        borrow,
        rename = "Dst",
        alias = "dst",
        alias = "DstIP",
        alias = "DstIp",
        alias = "dst_ip",
        alias = "Destination",
        alias = "destination",
        alias = "DestinationAddress",
        alias = "daddr"
    )]
    dst: Option<Scalar<'a>>,
    #[serde(
        borrow,
        rename = "Sport",
        alias = "sport",
        alias = "SrcPort",
        alias = "src_port",
        alias = "SourcePort",
        alias = "source_port"
    )]
    sport: Option<Scalar<'a>>,
    #[serde(
        borrow,
        rename = "Dport",
        alias = "dport",
        alias = "DstPort",
        alias = "dst_port",
        alias = "DestinationPort",
        alias = "destination_port"
    )]
    dport: Option<Scalar<'a>>,
    #[serde(borrow, rename = "Protonum", alias = "protonum", alias = "ProtoNum")]
    protonum: Option<Scalar<'a>>,
    #[serde(borrow, rename = "Protoname", alias = "protoname", alias = "ProtoName")]
    protoname: Option<Scalar<'a>>,
    #[serde(
        borrow,
        rename = "Proto",
        alias = "proto",
        alias = "Protocol",
        alias = "protocol"
    )]
    proto: Option<Scalar<'a>>,
    #[serde(borrow, rename = "Packets", alias = "packets")]
    packets: Option<Scalar<'a>>,
    #[serde(borrow, rename = "Bytes", alias = "bytes")]
    bytes: Option<Scalar<'a>>,
}

/// Cheap check used by format detection: a JSON object with an original and a reply tuple.
pub fn looks_like(body: &str) -> bool {
    let b = body.trim_start();
    b.starts_with('{')
        && has_original_key(b.as_bytes())
        && (b.contains("\"Reply\"") || b.contains("\"reply\""))
}

/// Whether `b` holds `"Original"`, `"original"` or `"orig"`. Each has `rig` two bytes in, so
/// one search for `rig` and a look around each find answers for the three: detection runs
/// this over every JSON line (goflow2's ~700-byte records), where three searches cost ~1,100
/// instructions.
fn has_original_key(b: &[u8]) -> bool {
    static RIG: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("rig"));
    // `find` from each next byte: `find_iter` copied the searcher (~240 instructions a call).
    let mut from = 0;
    while let Some(rel) = b.get(from..).and_then(|r| RIG.find(r)) {
        let at = from + rel;
        let (Some(&quote), Some(&o)) = (b.get(at.wrapping_sub(2)), b.get(at.wrapping_sub(1)))
        else {
            from = at + 1;
            continue;
        };
        let rest = b.get(at + 3..).unwrap_or_default();
        if quote == b'"'
            && ((matches!(o, b'O' | b'o') && rest.starts_with(b"inal\""))
                || (o == b'o' && rest.starts_with(b"\"")))
        {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Parses one JSON line, pushing at most one event; `default_time` applies when the line has
/// no usable timestamp. Returns the number of events pushed.
pub fn parse(line: &str, default_time: Micros, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let j: CtJson<'_> =
        serde_json::from_str(line.trim()).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let kind_text = j
        .kind
        .as_ref()
        .and_then(Scalar::as_str)
        .ok_or_else(|| err("no Type"))?;
    let kind = match CtKind::from_tag(kind_text) {
        Some(CtKind::Listing) | None => return Err(err(format!("unknown Type {kind_text:?}"))),
        Some(k) => k,
    };
    let orig_meta = j
        .original
        .as_ref()
        .ok_or_else(|| err("no Original tuple"))?;
    let reply_meta = j.reply.as_ref().ok_or_else(|| err("no Reply tuple"))?;
    let mut orig = tuple(orig_meta).map_err(|w| err(format!("Original: {w}")))?;
    let mut reply = tuple(reply_meta).map_err(|w| err(format!("Reply: {w}")))?;
    if [orig.packets, orig.bytes, reply.packets, reply.bytes]
        .iter()
        .all(|c| c.is_none_or(|v| v == 0))
    {
        // The collector writes 0 when conntrack printed no counters: unknown, not zero traffic.
        (orig.packets, orig.bytes, reply.packets, reply.bytes) = (None, None, None, None);
    }
    let protocol = protocol_of(orig_meta).or_else(|| protocol_of(reply_meta));
    let zone = j
        .zone
        .as_ref()
        .and_then(Scalar::as_u64)
        .and_then(|z| u32::try_from(z).ok());
    let time = j
        .timestamp
        .as_ref()
        .and_then(Scalar::as_epoch_micros)
        .unwrap_or(default_time);
    Ok(push_events(kind, protocol, &orig, &reply, zone, time, out))
}

fn tuple(m: &Meta<'_>) -> Result<Tuple, &'static str> {
    // Nested objects when present, else the flat keys of the tuple itself.
    let l3 = m.layer3.as_deref().unwrap_or(m);
    let l4 = m.layer4.as_deref().unwrap_or(m);
    let c = m.counter.as_deref().unwrap_or(m);
    let ip = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_ip);
    // Port 0 is the collector's "no port" (ICMP): None.
    let port = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_port).filter(|p| *p != 0);
    let count = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_u64);
    let t = Tuple {
        src: ip(&l3.src),
        dst: ip(&l3.dst),
        sport: port(&l4.sport),
        dport: port(&l4.dport),
        packets: count(&c.packets),
        bytes: count(&c.bytes),
    };
    if t.src.is_none() {
        return Err("missing or bad source address");
    }
    if t.dst.is_none() {
        return Err("missing or bad destination address");
    }
    Ok(t)
}

/// Protocol number: a non-zero number, else a name (`Protoname`, or `Proto` as name or number).
fn protocol_of(m: &Meta<'_>) -> Option<u8> {
    let l4 = m.layer4.as_deref().unwrap_or(m);
    let num = |v: &Option<Scalar<'_>>| {
        v.as_ref()
            .and_then(Scalar::as_u64)
            .filter(|n| *n != 0)
            .and_then(|n| u8::try_from(n).ok())
    };
    let name = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_str).and_then(proto_number);
    num(&l4.protonum)
        .or_else(|| name(&l4.protoname))
        .or_else(|| num(&l4.proto))
        .or_else(|| name(&l4.proto))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip, nat, one_pushed};
    use super::super::util::test_corpus;
    use super::*;
    use crate::model::{NatEvent, NatEventKind};

    #[test]
    fn original_key_check_agrees_with_three_searches() {
        let by_search = |s: &str| {
            s.contains("\"Original\"") || s.contains("\"original\"") || s.contains("\"orig\"")
        };
        let mut lines: Vec<String> = [
            "\"Original\"",
            "\"original\"",
            "\"orig\"",
            "\"Orig\"",
            "\"origin\"",
            "\"Original",
            "Original\"",
            "rig",
            "\"orig",
            "ri",
            "",
            "\"\"orig\"\"",
            "x\"originals\"",
            "\"rigorig\"",
            "\"oorig\"",
            "\"Origina\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for name in ["goflow2.jsonl", "conntrack.txt"] {
            lines.extend(test_corpus::samples(name).into_iter().map(|s| s.line));
        }
        for l in &lines {
            assert_eq!(has_original_key(l.as_bytes()), by_search(l), "{l:?}");
        }
    }

    fn one(line: &str) -> NatEvent {
        nat(one_pushed(line, |l, out| parse(l, T0, out)))
    }

    /// The collector's own shape (its README example, with documentation addresses).
    #[test]
    fn collector_shape() {
        let line = r#"{"Timestamp":0,"Type":"NEW","Id":0,"Original":{"Layer3":{"Protonum":2,"Protoname":"ipv4","Src":"100.64.1.20","Dst":"198.51.100.80"},"Layer4":{"Protonum":0,"Protoname":"tcp","Sport":42216,"Dport":80},"Counter":{"Packets":0,"Bytes":0}},"Reply":{"Layer3":{"Protonum":2,"Protoname":"ipv4","Src":"198.51.100.80","Dst":"203.0.113.9"},"Layer4":{"Protonum":0,"Protoname":"tcp","Sport":80,"Dport":61000},"Counter":{"Packets":0,"Bytes":0}},"UNREPLIED":false,"ASSURED":false}"#;
        let e = one(line);
        assert_eq!(e.event, Some(NatEventKind::SessionCreate));
        assert_eq!(e.time, T0, "Timestamp 0 is unknown");
        assert_eq!(e.protocol, Some(6), "from Protoname, Protonum is always 0");
        assert_eq!((e.src_ip, e.src_port), (ip("100.64.1.20"), Some(42216)));
        assert_eq!((e.dst_ip, e.dst_port), (ip("198.51.100.80"), Some(80)));
        assert_eq!((e.x_ip, e.x_port), (ip("203.0.113.9"), Some(61000)));
        assert_eq!(
            (e.packets_out, e.bytes_in),
            (None, None),
            "all-zero counters are unknown"
        );

        let destroy = line
            .replace("\"NEW\"", "\"DESTROY\"")
            .replacen(
                "\"Packets\":0,\"Bytes\":0",
                "\"Packets\":4,\"Bytes\":305",
                1,
            )
            .replace("\"Timestamp\":0", "\"Timestamp\":1700000000");
        let e = one(&destroy);
        assert_eq!(e.event, Some(NatEventKind::SessionDelete));
        assert_eq!(e.time, 1_700_000_000_000_000);
        assert_eq!(
            (e.packets_out, e.bytes_out, e.packets_in, e.bytes_in),
            (Some(4), Some(305), Some(0), Some(0))
        );

        let mut out = Vec::new();
        assert_eq!(
            parse(&line.replace("\"NEW\"", "\"UPDATE\""), T0, &mut out),
            Ok(0)
        );
    }

    #[test]
    fn other_key_spellings() {
        let e = one(
            r#"{"type":"destroy","timestamp":"1700000000.250000","orig":{"SrcIP":"2001:db8::5","DstIP":"2001:db8:1::1","SrcPort":"5000","DstPort":443,"Proto":"TCP","packets":3,"bytes":180},"reply":{"SrcIP":"2001:db8:1::1","DstIP":"2001:db8:ff::1","SrcPort":443,"DstPort":1024},"zone":7}"#,
        );
        assert_eq!(e.time, 1_700_000_000_250_000);
        assert_eq!(e.protocol, Some(6));
        assert_eq!((e.x_ip, e.x_port), (ip("2001:db8:ff::1"), Some(1024)));
        assert_eq!(
            (e.packets_out, e.bytes_out, e.packets_in),
            (Some(3), Some(180), None)
        );
        assert_eq!(e.vrf.as_deref(), Some("7"));
        let e = one(
            r#"{"Type":"NEW","Original":{"layer3":{"src":"100.64.0.1","dst":"198.51.100.1"},"layer4":{"protonum":1}},"Reply":{"layer3":{"src":"198.51.100.1","dst":"203.0.113.1"}}}"#,
        );
        assert_eq!((e.protocol, e.src_port, e.x_port), (Some(1), None, None));
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for bad in [
            "",
            "{",
            "[]",
            r#"{"Type":"NEW"}"#,
            r#"{"Type":"BOGUS","Original":{},"Reply":{}}"#,
            r#"{"Original":{"Src":"100.64.0.1","Dst":"198.51.100.1"},"Reply":{"Src":"198.51.100.1","Dst":"203.0.113.1"}}"#,
            r#"{"Type":"NEW","Original":{"Src":"999.1.1.1","Dst":"198.51.100.1"},"Reply":{"Src":"198.51.100.1","Dst":"203.0.113.1"}}"#,
            r#"{"Type":"NEW","Original":{"Src":"100.64.0.1","Dst":"198.51.100.1"}}"#,
            r#"{"Type":"NEW","Original":{"Src":"100.64.0.1","Dst":"198.51.100.1"},"Reply":{"Src":"198.51.100.1","Dst":"203.0.113.1"}} trailing"#,
        ] {
            assert!(parse(bad, T0, &mut out).is_err(), "{bad}");
        }
        assert!(out.is_empty());
    }

    /// conntrack.txt has no JSON lines: its JSON expectations (JSON1, JSON2 of a Python test)
    /// describe `conntrack -o xml` flows. Here each annotated expectation is turned into a JSON
    /// line of the lower-case converter shape at test time, parsed, and checked against the
    /// expectation's own values. `<flow>` XML itself is not a supported input (see mod.rs).
    #[test]
    fn corpus_conntrack_expectations() {
        let text = test_corpus::read("conntrack.txt");
        let mut checked = 0;
        for line in text.lines().filter(|l| {
            l.starts_with("# expect FLOW") || l.starts_with("# derived (not from source) FLOW")
        }) {
            let v = |k: &str| test_corpus::annotation_value(line, k);
            let (Some(kind), Some(orig)) = (v("type"), v("orig")) else {
                continue;
            };
            let (o_src, o_dst) = endpoints(&orig);
            // FLOW2's expectation names no reply tuple; it is "unreplied" and its XML shows the
            // plain reverse of the original (no NAT), which is what is built here.
            let (r_src, r_dst) = match v("reply") {
                Some(reply) => endpoints(&reply),
                None => (o_dst.clone(), o_src.clone()),
            };
            let proto = ["tcp", "udp", "icmp"]
                .into_iter()
                .find(|p| line.contains(&format!(" {p} ")) || line.contains(&format!("proto={p}")))
                .unwrap_or("tcp");
            let counters = |side: &str| -> String {
                match (v(&format!("{side}.packets")), v(&format!("{side}.bytes"))) {
                    (Some(p), Some(b)) => format!(r#","counters":{{"packets":{p},"bytes":{b}}}"#),
                    _ => String::new(),
                }
            };
            let json = format!(
                r#"{{"type":"{kind}","orig":{{"layer3":{{"src":"{}","dst":"{}"}},"layer4":{{"protoname":"{proto}","sport":{},"dport":{}}}{}}},"reply":{{"layer3":{{"src":"{}","dst":"{}"}},"layer4":{{"protoname":"{proto}","sport":{},"dport":{}}}{}}}}}"#,
                o_src.0,
                o_dst.0,
                o_src.1,
                o_dst.1,
                counters("orig"),
                r_src.0,
                r_dst.0,
                r_src.1,
                r_dst.1,
                counters("reply")
            );
            let e = one(&json);
            let want_kind = if kind == "new" {
                NatEventKind::SessionCreate
            } else {
                NatEventKind::SessionDelete
            };
            assert_eq!(e.event, Some(want_kind), "{line}");
            assert_eq!(
                (e.src_ip, e.src_port),
                (o_src.0.parse().ok(), Some(o_src.1)),
                "{line}"
            );
            assert_eq!(
                (e.dst_ip, e.dst_port),
                (o_dst.0.parse().ok(), Some(o_dst.1)),
                "{line}"
            );
            assert_eq!(
                (e.x_ip, e.x_port),
                (r_dst.0.parse().ok(), Some(r_dst.1)),
                "{line}"
            );
            assert_eq!(
                e.packets_out,
                v("orig.packets").and_then(|p| p.parse().ok()),
                "{line}"
            );
            assert_eq!(
                e.bytes_in,
                v("reply.bytes")
                    .and_then(|p| p.parse().ok())
                    .filter(|_| e.packets_out.is_some()),
                "{line}"
            );
            checked += 1;
        }
        // FLOW1 (new, unreplied, no NAT), FLOW2 (destroy with counters), FLOW7 (SNAT destroy).
        // FLOW5/6 (ICMP) and the IPv6 dump carry no JSON expectation.
        assert_eq!(checked, 3);
    }

    /// "10.0.0.139:57812->52.98.152.178:443" → ((addr, port), (addr, port)).
    fn endpoints(s: &str) -> ((String, u16), (String, u16)) {
        let (a, b) = s.split_once("->").unwrap();
        let split = |e: &str| {
            let (ip, port) = e.rsplit_once(':').unwrap();
            (
                ip.trim_matches(['[', ']']).to_string(),
                port.parse().unwrap(),
            )
        };
        (split(a), split(b))
    }

    #[test]
    fn detection() {
        assert!(looks_like(r#"{"Type":"NEW","Original":{},"Reply":{}}"#));
        assert!(looks_like(r#" {"type":"new","orig":{},"reply":{}}"#));
        assert!(!looks_like(r#"{"type":"IPFIX","src_addr":"198.51.100.1"}"#));
    }
}
