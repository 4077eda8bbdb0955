//! Flow records as JSON lines: goflow2 `-format=json` (v2 snake_case fields, and v1's
//! CamelCase), and pmacct's JSON output (`ip_src`, `post_nat_ip_src`, `timestamp_start`, …).
//!
//! Every line yields one `Event::Flow`. When the record carries a post-NAT source address it also
//! yields an `Event::Nat` of kind MappingObserved: the inside `src_ip:src_port` was seen mapped
//! to `x_ip:x_port` between the flow's start (`time`) and end (`end_time`), talking to
//! `dst_ip:dst_port`. That lets attribution use flows where no NAT log exists.
//!
//! goflow2 has no built-in post-NAT fields: exporters' IEs 225–228 / 281–282 reach the JSON only
//! through a `-mapping` file, under whatever name it gives (`postnat` in goflow2 issue #279,
//! `post_nat_src_ipv4_address`, …) and rendered as the mapping says — an IP string with
//! `render: ip`, otherwise hex (goflow2) or base64 (protobuf JSON). All the spellings below and
//! all those encodings are accepted. pmacct writes absent NAT fields as "" and 0: absent here too,
//! as are `0.0.0.0` and `::`.
//!
//! Times: the flow start is the record's time (goflow2 `time_flow_start_ns`, v1
//! `TimeFlowStart[Ms]`, pmacct `timestamp_start`), else the collector's receive time, else the
//! caller's default. Units are inferred from magnitude (s / ms / µs / ns), so a mapping that
//! renames a field without its unit still works. A `sampling_rate` of 0 means "unknown": None.

use serde::Deserialize;

use super::ParseError;
use super::util::{Scalar, find_by_words, set_ip, set_port, word_hits};
use crate::model::protocol_number as proto_number;
use crate::model::{Event, FlowRecord, Micros, NatEvent, NatEventKind};

const FORMAT: &str = "goflow2";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// The fields natlake reads, by slot. Several spellings of the same datum are separate slots
/// (not one) where one record could carry more than one of them, since a duplicate key is an
/// error; they are merged in `first_ip` / `first_port`.
const RECEIVED_NS: usize = 0;
const RECEIVED: usize = 1;
const START_NS: usize = 2;
const END_NS: usize = 3;
const START_MS: usize = 4;
const END_MS: usize = 5;
const START: usize = 6;
const END: usize = 7;
const TS_START: usize = 8;
const TS_END: usize = 9;
const BYTES: usize = 10;
const PACKETS: usize = 11;
const SRC: usize = 12;
const DST: usize = 13;
const PROTO: usize = 14;
const SRC_PORT: usize = 15;
const DST_PORT: usize = 16;
const IN_IF: usize = 17;
const OUT_IF: usize = 18;
const SAMPLER: usize = 19;
const SAMPLING_RATE: usize = 20;
const VRF: usize = 21;
/// Post-NAT source address, source port, destination address and port: the slots of each
/// datum's spellings, in the order they are tried.
const POST_SRC_IP: std::ops::Range<usize> = 22..31;
const POST_SRC_PORT: std::ops::Range<usize> = 31..38;
const POST_DST_IP: std::ops::Range<usize> = 38..45;
const POST_DST_PORT: std::ops::Range<usize> = 45..50;
const SLOTS: usize = 50;

/// The slot a key fills; None for keys natlake does not read. One table for both readers.
fn slot(key: &str) -> Option<usize> {
    Some(match key {
        "time_received_ns" | "TimeReceivedNs" => RECEIVED_NS,
        "time_received" | "TimeReceived" => RECEIVED,
        "time_flow_start_ns" | "TimeFlowStartNs" => START_NS,
        "time_flow_end_ns" | "TimeFlowEndNs" => END_NS,
        "time_flow_start_ms" | "TimeFlowStartMs" => START_MS,
        "time_flow_end_ms" | "TimeFlowEndMs" => END_MS,
        "time_flow_start" | "TimeFlowStart" => START,
        "time_flow_end" | "TimeFlowEnd" => END,
        "timestamp_start" => TS_START,
        "timestamp_end" => TS_END,
        "bytes" | "Bytes" => BYTES,
        "packets" | "Packets" => PACKETS,
        "src_addr" | "SrcAddr" | "ip_src" | "src_ip" => SRC,
        "dst_addr" | "DstAddr" | "ip_dst" | "dst_ip" => DST,
        "proto" | "Proto" | "ip_proto" | "protocol" => PROTO,
        "src_port" | "SrcPort" | "port_src" => SRC_PORT,
        "dst_port" | "DstPort" | "port_dst" => DST_PORT,
        "in_if" | "InIf" | "iface_in" => IN_IF,
        "out_if" | "OutIf" | "iface_out" => OUT_IF,
        "sampler_address" | "SamplerAddress" | "peer_ip_src" => SAMPLER,
        "sampling_rate" | "SamplingRate" => SAMPLING_RATE,
        "vrf" | "vrf_name" | "VrfName" => VRF,
        // Post-NAT source address, in the spellings mappings and collectors use.
        "post_nat_src_ipv4_address" => 22,
        "post_nat_src_ipv6_address" => 23,
        "post_nat_source_ipv4_address" => 24,
        "post_nat_source_ipv6_address" => 25,
        "post_nat_src_addr" => 26,
        "post_nat_src_ip" => 27,
        "post_nat_ip_src" => 28,
        "postnat" => 29,
        "postnat_src" => 30,
        // Post-NAT source port.
        "post_nat_src_transport_port" => 31,
        "post_napt_source_transport_port" => 32,
        "post_nat_source_transport_port" => 33,
        "post_nat_src_port" => 34,
        "post_nat_port_src" => 35,
        "postnat_port" => 36,
        "postnat_src_port" => 37,
        // Post-NAT destination.
        "post_nat_dst_ipv4_address" => 38,
        "post_nat_dst_ipv6_address" => 39,
        "post_nat_destination_ipv4_address" => 40,
        "post_nat_destination_ipv6_address" => 41,
        "post_nat_dst_addr" => 42,
        "post_nat_dst_ip" => 43,
        "post_nat_ip_dst" => 44,
        "post_nat_dst_transport_port" => 45,
        "post_napt_destination_transport_port" => 46,
        "post_nat_destination_transport_port" => 47,
        "post_nat_dst_port" => 48,
        "post_nat_port_dst" => 49,
        _ => return None,
    })
}

/// One record's values by slot (`null` and absent are both None).
#[derive(Debug, PartialEq)]
struct FlowJson<'a> {
    slots: [Option<Scalar<'a>>; SLOTS],
}

impl<'a> FlowJson<'a> {
    fn new() -> Self {
        FlowJson {
            slots: std::array::from_fn(|_| None),
        }
    }

    fn get(&self, i: usize) -> Option<&Scalar<'a>> {
        self.slots.get(i).and_then(Option::as_ref)
    }
}

/// The general reader: any JSON object, a key given twice is an error, other keys are skipped.
impl<'de: 'a, 'a> Deserialize<'de> for FlowJson<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FlowVisitor(std::marker::PhantomData))
    }
}

struct FlowVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for FlowVisitor<'a> {
    type Value = FlowJson<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a flow record object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut j = FlowJson::new();
        let mut seen = 0u64;
        while let Some(Key(key, at)) = map.next_key()? {
            match at.and_then(|i| j.slots.get_mut(i).map(|s| (i, s))) {
                Some((i, s)) => {
                    if seen & (1 << i) != 0 {
                        return Err(serde::de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    seen |= 1 << i;
                    *s = map.next_value()?;
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(j)
    }
}

/// A key and its slot.
struct Key(String, Option<usize>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                let at = slot(v);
                // Only a known key is named again (in a duplicate's error).
                Ok(Key(at.map(|_| v.to_owned()).unwrap_or_default(), at))
            }
        }
        d.deserialize_str(V)
    }
}

/// The flat object goflow2 writes, read without serde: keys and strings without escapes or
/// control characters, unsigned integers below 10^19, `null`, JSON whitespace. Anything
/// else — escapes, signs, fractions, nested values, booleans, a key given twice, a syntax
/// error — returns None and the line goes to serde_json, which reads it or names the error;
/// what this returns is what serde_json would (`fast_reader_agrees_with_serde`).
fn read_flat(line: &str) -> Option<FlowJson<'_>> {
    let b = line.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut j = FlowJson::new();
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(j);
    }
    let mut seen = 0u64;
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, next) = plain_string(line, i + 1)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let (value, next) = plain_scalar(line, skip_ws(b, i + 1))?;
        if let Some(at) = slot(key) {
            let s = j.slots.get_mut(at)?;
            if seen & (1 << at) != 0 {
                return None;
            }
            seen |= 1 << at;
            *s = value;
        }
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(j),
            _ => return None,
        }
    }
}

/// JSON's whitespace from `i` on.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The string whose text starts at `from` (after its quote) and the index after its closing
/// quote; None if it holds an escape or a control character, or has no end.
fn plain_string(line: &str, from: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    let end = from + string_stop(b.get(from..)?)?;
    if b.get(end) != Some(&b'"') {
        return None;
    }
    Some((line.get(from..end)?, end + 1))
}

/// Position of the first `"`, `\` or control byte (below 0x20) of `b`, eight bytes at a time:
/// keys and values are ~5–20 bytes, where a `memchr2` call and a second pass for control bytes
/// cost ~100 instructions a string.
#[inline]
fn string_stop(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    find_by_words(
        b,
        // Bytes below 0x20 flagged like the two needles: the lowest flag is a true one, and
        // bytes with the high bit set are never flagged.
        |w| word_hits(w, [b'"', b'\\']) | (w.wrapping_sub(LO * 0x20) & !w & HI),
        |c| matches!(c, b'"' | b'\\') || c < 0x20,
    )
}

/// A string, an unsigned integer below 10^19 (no leading zero) or `null` at `i`, and the
/// index after it; None for anything else. The caller checks what follows.
fn plain_scalar(line: &str, i: usize) -> Option<(Option<Scalar<'_>>, usize)> {
    let b = line.as_bytes();
    match b.get(i)? {
        b'"' => {
            let (v, next) = plain_string(line, i + 1)?;
            Some((Some(Scalar::Str(std::borrow::Cow::Borrowed(v))), next))
        }
        b'n' => (b.get(i..i + 4)? == b"null").then_some((None, i + 4)),
        first @ b'0'..=b'9' => {
            // Counted and read in one pass (goflow2's nanosecond stamps are 19 digits).
            // Nineteen digits stay below 10^19 < 2^64; a twentieth is refused.
            let mut v: u64 = 0;
            let mut digits = 0;
            for c in b.get(i..)? {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                if digits == 19 {
                    return None;
                }
                v = v * 10 + u64::from(d);
                digits += 1;
            }
            if digits > 1 && *first == b'0' {
                return None;
            }
            Some((Some(Scalar::U64(v)), i + digits))
        }
        _ => None,
    }
}

/// Keys whose presence marks a flow record, for format detection.
const MARKERS: [&str; 9] = [
    "\"src_addr\"",
    "\"SrcAddr\"",
    "\"ip_src\"",
    "\"time_received_ns\"",
    "\"time_flow_start_ns\"",
    "\"sampler_address\"",
    "\"peer_ip_src\"",
    "\"TimeFlowStart\"",
    "\"post_nat_",
];

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    let b = body.trim_start();
    b.starts_with('{') && MARKERS.iter().any(|m| b.contains(m))
}

/// Parses one JSON line: one Flow event, plus a MappingObserved NAT event when the record has
/// a post-NAT source address. Returns the number of events pushed.
pub fn parse(line: &str, default_time: Micros, out: &mut Vec<Event>) -> Result<usize, ParseError> {
    let line = line.trim();
    let j = match read_flat(line) {
        Some(j) => j,
        None => serde_json::from_str::<FlowJson<'_>>(line)
            .map_err(|e| err(format!("invalid JSON: {e}")))?,
    };
    let ip = |i: usize| j.get(i).and_then(Scalar::as_ip);
    let port = |i: usize| j.get(i).and_then(Scalar::as_port);
    let num = |i: usize| j.get(i).and_then(Scalar::as_u64);
    let when = |i: usize| j.get(i).and_then(Scalar::as_epoch_micros);

    let src_ip = ip(SRC);
    let dst_ip = ip(DST);
    if src_ip.is_none() && dst_ip.is_none() {
        return Err(err("no source or destination address"));
    }
    let start = when(START_NS)
        .or_else(|| when(START_MS))
        .or_else(|| when(START))
        .or_else(|| when(TS_START));
    let end = when(END_NS)
        .or_else(|| when(END_MS))
        .or_else(|| when(END))
        .or_else(|| when(TS_END));
    let received = when(RECEIVED_NS).or_else(|| when(RECEIVED));
    let time = start.or(received).unwrap_or(default_time);

    let protocol = j.get(PROTO).and_then(|p| match p {
        Scalar::Str(s) => proto_number(s),
        other => other.as_u64().and_then(|n| u8::try_from(n).ok()),
    });
    let post_src_ip = first_ip(&j, POST_SRC_IP);
    let post_src_port = first_port(&j, POST_SRC_PORT);
    let post_dst_ip = first_ip(&j, POST_DST_IP);
    let post_dst_port = first_port(&j, POST_DST_PORT);
    let flow = FlowRecord {
        time,
        end_time: end,
        protocol,
        src_ip,
        src_port: port(SRC_PORT),
        dst_ip,
        dst_port: port(DST_PORT),
        post_nat_src_ip: post_src_ip,
        post_nat_src_port: post_src_port,
        post_nat_dst_ip: post_dst_ip,
        post_nat_dst_port: post_dst_port,
        bytes: num(BYTES),
        packets: num(PACKETS),
        in_if: num(IN_IF).and_then(|v| u32::try_from(v).ok()),
        out_if: num(OUT_IF).and_then(|v| u32::try_from(v).ok()),
        sampling_rate: num(SAMPLING_RATE).filter(|r| *r != 0),
        exporter: ip(SAMPLER),
        vrf: j
            .get(VRF)
            .and_then(Scalar::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    };
    let nat = post_src_ip.map(|x_ip| NatEvent {
        time,
        event: Some(NatEventKind::MappingObserved),
        protocol,
        src_ip: flow.src_ip,
        src_port: flow.src_port,
        x_ip: Some(x_ip),
        x_port: post_src_port,
        x_port_end: None,
        dst_ip: flow.dst_ip,
        dst_port: flow.dst_port,
        vrf: flow.vrf.clone(),
        direction: Some("out"),
        end_time: end,
        bytes_out: flow.bytes,
        bytes_in: None,
        packets_out: flow.packets,
        packets_in: None,
    });
    out.push(Event::Flow(flow));
    match nat {
        Some(n) => {
            out.push(Event::Nat(n));
            Ok(2)
        }
        None => Ok(1),
    }
}

/// The first slot of `slots` that holds a set address (see [`set_ip`]).
fn first_ip(j: &FlowJson<'_>, slots: std::ops::Range<usize>) -> Option<std::net::IpAddr> {
    let vals = j.slots.get(slots)?;
    vals.iter().find_map(set_ip)
}

fn first_port(j: &FlowJson<'_>, slots: std::ops::Range<usize>) -> Option<u16> {
    let vals = j.slots.get(slots)?;
    vals.iter().find_map(set_port)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, ip};
    use super::super::util::test_corpus;
    use super::*;

    fn run(line: &str) -> (FlowRecord, Option<NatEvent>) {
        let mut out = Vec::new();
        let n = parse(line, T0, &mut out).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(n, out.len());
        let mut it = out.into_iter();
        let Some(Event::Flow(f)) = it.next() else {
            panic!("first event must be the flow")
        };
        let nat = match it.next() {
            Some(Event::Nat(n)) => Some(n),
            None => None,
            Some(other) => panic!("{other:?}"),
        };
        (f, nat)
    }

    #[test]
    fn goflow2_with_post_nat_encodings() {
        let base = r#"{"type":"IPFIX","time_received_ns":1700000001000000000,"sampling_rate":100,"sampler_address":"192.0.2.1","time_flow_start_ns":1700000000000000000,"time_flow_end_ns":1700000000500000000,"bytes":1500,"packets":3,"src_addr":"100.64.5.6","dst_addr":"198.51.100.10","etype":"IPv4","proto":"TCP","src_port":40001,"dst_port":443,"in_if":2,"out_if":3,POSTNAT}"#;
        for post in [
            r#""post_nat_src_ipv4_address":"203.0.113.77","post_nat_src_transport_port":61001"#,
            r#""postnat":"cb00714d","post_nat_src_port":"0xee49""#,
            r#""post_nat_src_addr":"0xcb00714d","post_nat_port_src":61001"#,
            r#""post_nat_src_ip":"ywBxTQ==","post_nat_src_transport_port":"ee49""#,
            r#""post_nat_ip_src":"203.0.113.77","post_nat_port_src":"7kk=""#,
        ] {
            let (f, nat) = run(&base.replace("POSTNAT", post));
            assert_eq!(f.time, 1_700_000_000_000_000);
            assert_eq!(f.end_time, Some(1_700_000_000_500_000));
            assert_eq!(
                (f.protocol, f.bytes, f.packets, f.sampling_rate),
                (Some(6), Some(1500), Some(3), Some(100))
            );
            assert_eq!(
                (f.in_if, f.out_if, f.exporter),
                (Some(2), Some(3), ip("192.0.2.1"))
            );
            assert_eq!(
                (f.post_nat_src_ip, f.post_nat_src_port),
                (ip("203.0.113.77"), Some(61001)),
                "{post}"
            );
            let n = nat.expect("post-NAT source gives a mapping");
            assert_eq!(n.event, Some(NatEventKind::MappingObserved));
            assert_eq!(
                (n.time, n.end_time),
                (1_700_000_000_000_000, Some(1_700_000_000_500_000))
            );
            assert_eq!((n.src_ip, n.src_port), (ip("100.64.5.6"), Some(40001)));
            assert_eq!((n.x_ip, n.x_port), (ip("203.0.113.77"), Some(61001)));
            assert_eq!(
                (n.dst_ip, n.dst_port, n.protocol),
                (ip("198.51.100.10"), Some(443), Some(6))
            );
            assert_eq!((n.bytes_out, n.packets_out), (Some(1500), Some(3)));
        }
    }

    #[test]
    fn ipv6_post_nat_and_v1_names() {
        let (f, nat) = run(
            r#"{"Type":"NETFLOW_V9","TimeReceived":1700000002,"TimeFlowStart":1700000000,"TimeFlowEnd":1700000001,"Bytes":10,"Packets":1,"SrcAddr":"2001:db8::10","DstAddr":"2001:db8:1::1","Proto":17,"SrcPort":5000,"DstPort":53,"post_nat_src_ipv6_address":"20010db8ffff00000000000000000001"}"#,
        );
        assert_eq!(
            (f.time, f.end_time, f.protocol),
            (1_700_000_000_000_000, Some(1_700_000_001_000_000), Some(17))
        );
        assert_eq!(f.post_nat_src_ip, ip("2001:db8:ffff::1"));
        let n = nat.unwrap();
        assert_eq!((n.x_ip, n.x_port), (ip("2001:db8:ffff::1"), None));
    }

    #[test]
    fn absent_post_nat_values() {
        for post in [
            r#""post_nat_ip_src":"","post_nat_port_src":0"#,
            r#""post_nat_src_ipv4_address":"0.0.0.0""#,
            r#""postnat":"00000000""#,
            r#""post_nat_src_addr":null"#,
            r#""post_nat_src_addr":"::""#,
        ] {
            let (f, nat) = run(&format!(
                r#"{{"src_addr":"100.64.0.1","dst_addr":"198.51.100.1",{post}}}"#
            ));
            assert_eq!(
                (f.post_nat_src_ip, f.post_nat_src_port),
                (None, None),
                "{post}"
            );
            assert!(nat.is_none(), "{post}");
            assert_eq!(f.time, T0, "no time in the record: the caller's default");
        }
    }

    #[test]
    fn rejects() {
        let mut out = Vec::new();
        for bad in [
            "",
            "{",
            r#"{"type":"IPFIX"}"#,
            r#"{"src_addr":"bogus"}"#,
            r#"{"src_addr":"198.51.100.1","bytes":-1}"#,
            "[1,2]",
        ] {
            let r = parse(bad, T0, &mut out);
            // A negative byte count is not a count: the field is dropped, the record kept.
            if bad.contains("-1") {
                assert_eq!(r, Ok(1), "{bad}");
                let Some(Event::Flow(f)) = out.pop() else {
                    panic!()
                };
                assert_eq!(f.bytes, None);
                continue;
            }
            assert!(r.is_err(), "{bad}");
        }
        assert!(out.is_empty());
    }

    /// goflow2.jsonl: two goflow2 lines (asserted by their source test) and three pmacct lines
    /// whose post-NAT fields are "" / 0 (the exporter sent none): five flows, no mappings.
    #[test]
    fn corpus_goflow2() {
        let samples = test_corpus::samples("goflow2.jsonl");
        assert_eq!(samples.len(), 5);
        let (mut flows, mut checked) = (0, 0);
        for smp in &samples {
            let (f, nat) = run(&smp.line);
            flows += 1;
            assert!(
                nat.is_none(),
                "line {}: no post-NAT data in the corpus",
                smp.line_no
            );
            // Independent reading with serde_json::Value.
            let v: serde_json::Value = serde_json::from_str(&smp.line).unwrap();
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            let n = |k: &str| v.get(k).and_then(|x| x.as_u64());
            let src = s("src_addr").or_else(|| s("ip_src")).unwrap();
            let dst = s("dst_addr").or_else(|| s("ip_dst")).unwrap();
            assert_eq!(f.src_ip, src.parse().ok(), "line {}", smp.line_no);
            assert_eq!(f.dst_ip, dst.parse().ok(), "line {}", smp.line_no);
            assert_eq!(f.bytes, n("bytes"));
            assert_eq!(f.packets, n("packets"));
            assert_eq!(
                f.src_port,
                n("src_port").or_else(|| n("port_src")).map(|p| p as u16)
            );
            assert_eq!(f.protocol, Some(17), "all corpus records are UDP");
            if let Some(ns) = n("time_flow_start_ns") {
                assert_eq!(f.time, (ns / 1000) as i64);
                assert_eq!(
                    f.exporter,
                    s("sampler_address").and_then(|a| a.parse().ok())
                );
                assert_eq!(f.sampling_rate, None, "sampling_rate 0 is unknown");
            } else {
                let start: f64 = s("timestamp_start").unwrap().parse().unwrap();
                let end: f64 = s("timestamp_end").unwrap().parse().unwrap();
                assert_eq!(f.time, (start * 1e6) as i64);
                assert_eq!(f.end_time, Some((end * 1e6) as i64));
                assert_eq!(f.exporter, s("peer_ip_src").and_then(|a| a.parse().ok()));
                assert_eq!(
                    (f.in_if, f.out_if),
                    (
                        n("iface_in").map(|x| x as u32),
                        n("iface_out").map(|x| x as u32)
                    )
                );
            }
            // The source test's own assertion: "type=IPFIX bytes=143 packets=1 src_addr=…".
            if let Some(e) = smp.expect() {
                let want = |k: &str| test_corpus::annotation_value(e, k);
                assert_eq!(f.bytes, want("bytes").and_then(|b| b.parse().ok()));
                assert_eq!(f.packets, want("packets").and_then(|b| b.parse().ok()));
                assert_eq!(f.src_ip, want("src_addr").and_then(|b| b.parse().ok()));
                checked += 1;
            }
        }
        assert_eq!((flows, checked), (5, 1));
        let v6 = samples
            .iter()
            .filter(|s| s.line.contains("\"ip_src\": \"2001:"))
            .count();
        assert_eq!(v6, 1, "one pmacct IPv6 record");
    }

    /// Wherever the serde-free reader answers, serde_json reads the same values; and it does
    /// answer for the shape goflow2 writes (otherwise it would only add cost).
    #[test]
    fn fast_reader_agrees_with_serde() {
        let goflow = r#"{"type":"IPFIX","time_received_ns":1793498220188778000,"sequence_num":389653,"sampling_rate":0,"sampler_address":"192.0.2.14","time_flow_start_ns":1793498213631774000,"time_flow_end_ns":1793498220168778000,"bytes":7260,"packets":15,"src_addr":"100.64.18.187","dst_addr":"39.51.43.54","etype":"IPv4","proto":"TCP","src_port":7210,"dst_port":443,"in_if":2,"out_if":3,"post_nat_src_ipv4_address":"198.18.4.4","post_nat_src_transport_port":3898}"#;
        let fast = read_flat(goflow).expect("goflow2's own shape is read without serde");
        assert_eq!(fast.get(SRC), Some(&Scalar::Str("100.64.18.187".into())));
        assert_eq!(
            fast.get(RECEIVED_NS),
            Some(&Scalar::U64(1_793_498_220_188_778_000))
        );
        let mut lines: Vec<String> = vec![goflow.to_owned()];
        for smp in test_corpus::samples("goflow2.jsonl") {
            lines.push(smp.line.clone());
        }
        // Every known key (each slot's spellings) and an unknown one, with each kind of value.
        let keys = [
            "src_addr",
            "SrcAddr",
            "ip_src",
            "src_ip",
            "TimeFlowStart",
            "timestamp_end",
            "vrf",
            "VrfName",
            "postnat",
            "post_nat_port_dst",
            "post_napt_source_transport_port",
            "Bytes",
            "iface_out",
            "unknown",
            "",
        ];
        let values = [
            "\"1.2.3.4\"",
            "17",
            "0",
            "null",
            "\"\"",
            "-1",
            "1.5",
            "1e3",
            "true",
            "[1]",
            "{\"a\":1}",
            "\"a\\\"b\"",
            "\"\\u0041\"",
            "01",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "\"tab\there\"",
            "nul",
            "\"x",
            // Long strings: the stops eight bytes at a time, control bytes and escapes past
            // the first word, bytes above 0x7f and DEL.
            "\"abcdefghijklmnopqrstuvwxyz0123456789\"",
            "\"abcdefghij\u{1}klm\"",
            "\"abcdefghijklmnopq\u{1f}\"",
            "\"abcdefghi\\\"j\"",
            "\"abcdefghijklmnop\\u0041\"",
            "\"\u{e9}\u{20ac}\u{a2}abcdefgh\u{7f}\u{a2}\u{a2}\"",
            "\"\u{a2}\u{a2}\u{a2}\u{a2}\u{a2}\u{a2}\u{a2}\u{a2}\u{a2}\"",
            "1234567890123456789",
            "00",
            "0",
        ];
        for k in keys {
            for v in values {
                lines.push(format!(r#"{{"dst_addr":"5.6.7.8","{k}":{v}}}"#));
                lines.push(format!(r#"{{ "{k}" : {v} , "bytes":3 }}"#));
                lines.push(format!("\t{{\"{k}\":{v}}}\r\n"));
            }
        }
        for odd in [
            "{}",
            "{ }",
            "",
            "{",
            "}",
            "[1,2]",
            "null",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":1}x",
            "{\"a\":1}}",
            "{,}",
            "{\"bytes\":1,\"Bytes\":2}",
            "{\"bytes\":null,\"bytes\":2}",
            "{\"ip_src\":\"1.2.3.4\",\"src_addr\":\"1.2.3.4\"}",
            "{\"u\":1,\"u\":2}",
            "{\"a\\u0062\":1}",
            "{\"by\\tes\":1}",
            "{\"bytes\":1 2}",
            "{'bytes':1}",
        ] {
            lines.push(odd.to_owned());
        }
        let mut fast_count = 0;
        for line in &lines {
            let line = line.trim();
            let slow = serde_json::from_str::<FlowJson<'_>>(line);
            if let Some(fast) = read_flat(line) {
                fast_count += 1;
                assert_eq!(slow.as_ref().ok(), Some(&fast), "{line}");
            }
        }
        assert!(
            fast_count > lines.len() / 4,
            "{fast_count} of {}",
            lines.len()
        );
    }

    #[test]
    fn detection() {
        assert!(looks_like(r#"{"type":"IPFIX","src_addr":"198.51.100.1"}"#));
        assert!(looks_like(
            r#"{"peer_ip_src": "192.0.2.1", "ip_src": "198.51.100.1"}"#
        ));
        assert!(!looks_like(r#"{"Type":"NEW","Original":{},"Reply":{}}"#));
        assert!(!looks_like("src_addr"));
    }
}
