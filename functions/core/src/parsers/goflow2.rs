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
use super::util::{Scalar, set_ip, set_port};
use crate::model::protocol_number as proto_number;
use crate::model::{Event, FlowRecord, Micros, NatEvent, NatEventKind};

const FORMAT: &str = "goflow2";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// The fields natlake reads. Several spellings of the same datum are separate fields (not
/// aliases) where one record could carry more than one of them, since serde rejects a
/// duplicate field; they are merged in `first_ip` / `first_port`.
#[derive(Deserialize)]
struct FlowJson<'a> {
    #[serde(borrow, alias = "TimeReceivedNs")]
    time_received_ns: Option<Scalar<'a>>,
    #[serde(borrow, alias = "TimeReceived")]
    time_received: Option<Scalar<'a>>,
    #[serde(borrow, alias = "TimeFlowStartNs")]
    time_flow_start_ns: Option<Scalar<'a>>,
    #[serde(borrow, alias = "TimeFlowEndNs")]
    time_flow_end_ns: Option<Scalar<'a>>,
    #[serde(borrow, alias = "TimeFlowStartMs")]
    time_flow_start_ms: Option<Scalar<'a>>,
    #[serde(borrow, alias = "TimeFlowEndMs")]
    time_flow_end_ms: Option<Scalar<'a>>,
    #[serde(borrow, alias = "TimeFlowStart")]
    time_flow_start: Option<Scalar<'a>>,
    #[serde(borrow, alias = "TimeFlowEnd")]
    time_flow_end: Option<Scalar<'a>>,
    #[serde(borrow)]
    timestamp_start: Option<Scalar<'a>>,
    #[serde(borrow)]
    timestamp_end: Option<Scalar<'a>>,

    #[serde(borrow, alias = "Bytes")]
    bytes: Option<Scalar<'a>>,
    #[serde(borrow, alias = "Packets")]
    packets: Option<Scalar<'a>>,
    #[serde(borrow, alias = "SrcAddr", alias = "ip_src", alias = "src_ip")]
    src_addr: Option<Scalar<'a>>,
    #[serde(borrow, alias = "DstAddr", alias = "ip_dst", alias = "dst_ip")]
    dst_addr: Option<Scalar<'a>>,
    #[serde(borrow, alias = "Proto", alias = "ip_proto", alias = "protocol")]
    proto: Option<Scalar<'a>>,
    #[serde(borrow, alias = "SrcPort", alias = "port_src")]
    src_port: Option<Scalar<'a>>,
    #[serde(borrow, alias = "DstPort", alias = "port_dst")]
    dst_port: Option<Scalar<'a>>,
    #[serde(borrow, alias = "InIf", alias = "iface_in")]
    in_if: Option<Scalar<'a>>,
    #[serde(borrow, alias = "OutIf", alias = "iface_out")]
    out_if: Option<Scalar<'a>>,
    #[serde(borrow, alias = "SamplerAddress", alias = "peer_ip_src")]
    sampler_address: Option<Scalar<'a>>,
    #[serde(borrow, alias = "SamplingRate")]
    sampling_rate: Option<Scalar<'a>>,
    #[serde(borrow, alias = "vrf_name", alias = "VrfName")]
    vrf: Option<Scalar<'a>>,

    // Post-NAT source address, in the spellings mappings and collectors use.
    #[serde(borrow)]
    post_nat_src_ipv4_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_src_ipv6_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_source_ipv4_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_source_ipv6_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_src_addr: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_src_ip: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_ip_src: Option<Scalar<'a>>,
    #[serde(borrow)]
    postnat: Option<Scalar<'a>>,
    #[serde(borrow)]
    postnat_src: Option<Scalar<'a>>,
    // Post-NAT source port.
    #[serde(borrow)]
    post_nat_src_transport_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_napt_source_transport_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_source_transport_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_src_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_port_src: Option<Scalar<'a>>,
    #[serde(borrow)]
    postnat_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    postnat_src_port: Option<Scalar<'a>>,
    // Post-NAT destination.
    #[serde(borrow)]
    post_nat_dst_ipv4_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_dst_ipv6_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_destination_ipv4_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_destination_ipv6_address: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_dst_addr: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_dst_ip: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_ip_dst: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_dst_transport_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_napt_destination_transport_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_destination_transport_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_dst_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    post_nat_port_dst: Option<Scalar<'a>>,
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
    let j: FlowJson<'_> =
        serde_json::from_str(line.trim()).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let ip = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_ip);
    let port = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_port);
    let num = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_u64);
    let when = |v: &Option<Scalar<'_>>| v.as_ref().and_then(Scalar::as_epoch_micros);

    let src_ip = ip(&j.src_addr);
    let dst_ip = ip(&j.dst_addr);
    if src_ip.is_none() && dst_ip.is_none() {
        return Err(err("no source or destination address"));
    }
    let start = when(&j.time_flow_start_ns)
        .or_else(|| when(&j.time_flow_start_ms))
        .or_else(|| when(&j.time_flow_start))
        .or_else(|| when(&j.timestamp_start));
    let end = when(&j.time_flow_end_ns)
        .or_else(|| when(&j.time_flow_end_ms))
        .or_else(|| when(&j.time_flow_end))
        .or_else(|| when(&j.timestamp_end));
    let received = when(&j.time_received_ns).or_else(|| when(&j.time_received));
    let time = start.or(received).unwrap_or(default_time);

    let protocol = j.proto.as_ref().and_then(|p| match p {
        Scalar::Str(s) => proto_number(s),
        other => other.as_u64().and_then(|n| u8::try_from(n).ok()),
    });
    let post_src_ip = first_ip(&[
        &j.post_nat_src_ipv4_address,
        &j.post_nat_src_ipv6_address,
        &j.post_nat_source_ipv4_address,
        &j.post_nat_source_ipv6_address,
        &j.post_nat_src_addr,
        &j.post_nat_src_ip,
        &j.post_nat_ip_src,
        &j.postnat,
        &j.postnat_src,
    ]);
    let post_src_port = first_port(&[
        &j.post_nat_src_transport_port,
        &j.post_napt_source_transport_port,
        &j.post_nat_source_transport_port,
        &j.post_nat_src_port,
        &j.post_nat_port_src,
        &j.postnat_port,
        &j.postnat_src_port,
    ]);
    let post_dst_ip = first_ip(&[
        &j.post_nat_dst_ipv4_address,
        &j.post_nat_dst_ipv6_address,
        &j.post_nat_destination_ipv4_address,
        &j.post_nat_destination_ipv6_address,
        &j.post_nat_dst_addr,
        &j.post_nat_dst_ip,
        &j.post_nat_ip_dst,
    ]);
    let post_dst_port = first_port(&[
        &j.post_nat_dst_transport_port,
        &j.post_napt_destination_transport_port,
        &j.post_nat_destination_transport_port,
        &j.post_nat_dst_port,
        &j.post_nat_port_dst,
    ]);
    let flow = FlowRecord {
        time,
        end_time: end,
        protocol,
        src_ip,
        src_port: port(&j.src_port),
        dst_ip,
        dst_port: port(&j.dst_port),
        post_nat_src_ip: post_src_ip,
        post_nat_src_port: post_src_port,
        post_nat_dst_ip: post_dst_ip,
        post_nat_dst_port: post_dst_port,
        bytes: num(&j.bytes),
        packets: num(&j.packets),
        in_if: num(&j.in_if).and_then(|v| u32::try_from(v).ok()),
        out_if: num(&j.out_if).and_then(|v| u32::try_from(v).ok()),
        sampling_rate: num(&j.sampling_rate).filter(|r| *r != 0),
        exporter: ip(&j.sampler_address),
        vrf: j
            .vrf
            .as_ref()
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

fn first_ip(fields: &[&Option<Scalar<'_>>]) -> Option<std::net::IpAddr> {
    fields.iter().find_map(|f| set_ip(f))
}

fn first_port(fields: &[&Option<Scalar<'_>>]) -> Option<u16> {
    fields.iter().find_map(|f| set_port(f))
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
