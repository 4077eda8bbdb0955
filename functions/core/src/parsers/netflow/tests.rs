//! Decoding the real export packets of `corpus/bin/` (read at test time) against the values the
//! sources' own tests assert (`bin/README.md`).

use std::net::IpAddr;

use super::super::util::test_corpus;
use super::*;
use crate::model::{FlowRecord, NatEvent, NatEventKind};

fn bin(name: &str) -> Vec<u8> {
    let path = test_corpus::dir().join("bin").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn logstash(name: &str) -> Vec<u8> {
    bin(&format!("logstash-codec-netflow/{name}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The UDP payload and IPv4 source of the first packet of a classic pcap (Ethernet, IPv4, UDP),
/// headers checked rather than assumed.
fn pcap_udp(pcap: &[u8]) -> (IpAddr, Vec<u8>) {
    let le = match pcap.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => false,
        other => panic!("not a classic pcap: {other:?}"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = pcap[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "link type Ethernet");
    let incl = u32_at(24 + 8) as usize;
    let frame = &pcap[40..40 + incl];
    assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 ethertype");
    let ipv4 = &frame[14..];
    assert_eq!(ipv4[0] >> 4, 4);
    assert_eq!(ipv4[9], 17, "UDP");
    let ihl = usize::from(ipv4[0] & 0x0f) * 4;
    let src = IpAddr::from(<[u8; 4]>::try_from(&ipv4[12..16]).unwrap());
    let udp = &ipv4[ihl..];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    (src, udp[8..udp_len].to_vec())
}

struct Run {
    decoded: Vec<Decoded>,
    events: Vec<DecodedEvent>,
}

impl Run {
    fn records(&self) -> u64 {
        self.decoded.iter().map(|d| d.data_records).sum()
    }
    fn problems(&self) -> Vec<&Problem> {
        self.decoded.iter().flat_map(|d| &d.problems).collect()
    }
    fn nat(&self) -> Vec<&NatEvent> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Nat(n) => Some(n),
                _ => None,
            })
            .collect()
    }
    fn flows(&self) -> Vec<&FlowRecord> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Flow(f) => Some(f),
                _ => None,
            })
            .collect()
    }
}

const EXPORTER: &str = "192.0.2.9";

fn run(packets: &[Vec<u8>]) -> Run {
    let mut dec = Decoder::new();
    let mut events = Vec::new();
    let decoded = packets
        .iter()
        .map(|p| {
            dec.decode(Some(ip(EXPORTER)), p, 0, &mut events)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    Run { decoded, events }
}

#[test]
fn akvorado_nat_events_cisco_nel() {
    let (exporter, pkt) = pcap_udp(&bin("akvorado/nat.pcap"));
    assert_eq!(exporter, ip("10.143.52.1"));
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    let d = dec.decode(Some(exporter), &pkt, 0, &mut out).unwrap();
    assert_eq!(d.format, FORMAT_V9);
    assert_eq!(d.domain, 200, "source id");
    assert_eq!(d.templates, 4, "templates 264-267");
    assert_eq!(d.data_records, 9);
    assert_eq!(d.problems, vec![]);
    assert_eq!(out.len(), 9, "one NAT event per record");
    let nat: Vec<&NatEvent> = out
        .iter()
        .map(|e| match &e.event {
            Event::Nat(n) => n,
            other => panic!("{other:?}"),
        })
        .collect();
    // akvorado TestDecodeNAT, first record.
    let first = nat[0];
    assert_eq!(first.src_ip, Some(ip("172.16.100.198")));
    assert_eq!(first.src_port, Some(35303));
    assert_eq!(first.dst_ip, Some(ip("10.89.87.1")));
    assert_eq!(first.dst_port, Some(53));
    assert_eq!(first.x_ip, Some(ip("10.143.52.29")));
    assert_eq!(first.x_port, Some(35303));
    assert_eq!(first.protocol, Some(17));
    assert_eq!(first.vrf, None, "ingressVRFID 0 is the global table");
    // Historic natEvent codes 1 and 2.
    let creates = nat
        .iter()
        .filter(|n| n.event == Some(NatEventKind::SessionCreate))
        .count();
    let deletes = nat
        .iter()
        .filter(|n| n.event == Some(NatEventKind::SessionDelete))
        .count();
    assert!(creates > 0 && deletes > 0 && creates + deletes == 9);
    // The port-translated record (ipfix_refs.md): 172.16.103.50:123 -> 10.143.52.29:640.
    assert!(nat.iter().any(|n| n.src_ip == Some(ip("172.16.103.50"))
        && n.src_port == Some(123)
        && n.x_ip == Some(ip("10.143.52.29"))
        && n.x_port == Some(640)));
    // observationTimeMilliseconds: within a minute of the header's export time.
    let export = 1_749_049_741_000_000i64;
    for n in &nat {
        assert!((n.time - export).abs() < 60_000_000, "{}", n.time);
    }
}

#[test]
fn cisco_asa_nsel_old_ids() {
    let r = run(&[
        logstash("netflow9_test_cisco_asa_1_tpl.dat"),
        logstash("netflow9_test_cisco_asa_1_data.dat"),
    ]);
    assert_eq!(r.records(), 14, "logstash decode.size");
    assert_eq!(r.problems(), Vec::<&Problem>::new());
    // record[1]: fw_event 2 (flow deleted), xlate source = real source (192.168.23.22): the
    // connection crossed untranslated, so it is a flow, not a NAT session.
    let f = r
        .flows()
        .into_iter()
        .find(|f| f.post_nat_src_port == Some(17549))
        .expect("record[1]");
    assert_eq!(f.src_ip, Some(ip("192.168.23.22")));
    assert_eq!(f.post_nat_src_ip, Some(ip("192.168.23.22")));
    assert_eq!(f.post_nat_dst_ip, Some(ip("164.164.37.11")));
    assert_eq!(r.events.len() as u64, r.records(), "one event per record");
    untranslated_is_never_nat(&r);
}

#[test]
fn cisco_asa_nsel_iana_ids() {
    let r = run(&[
        logstash("netflow9_test_cisco_asa_2_tpl_26x.dat"),
        logstash("netflow9_test_cisco_asa_2_tpl_27x.dat"),
        logstash("netflow9_test_cisco_asa_2_data.dat"),
    ]);
    assert_eq!(r.records(), 19, "logstash decode.size");
    assert_eq!(r.problems(), Vec::<&Problem>::new());
    // record[18]: 192.168.0.1:56651 -> 192.168.0.18:80, xlate identical, fw_event 2: a flow.
    let f = r
        .flows()
        .into_iter()
        .find(|f| f.src_port == Some(56651) && f.dst_port == Some(80))
        .expect("record[18]");
    assert_eq!(
        (f.src_ip, f.post_nat_src_ip, f.post_nat_src_port),
        (
            Some(ip("192.168.0.1")),
            Some(ip("192.168.0.1")),
            Some(56651)
        )
    );
    assert_eq!(f.dst_ip, Some(ip("192.168.0.18")));
    // Cross-checked record (template 263): 192.168.0.2:61775 -> 192.168.0.17:80, postNAT
    // identical.
    assert!(r.flows().iter().any(|f| f.src_ip == Some(ip("192.168.0.2"))
        && f.src_port == Some(61775)
        && f.dst_ip == Some(ip("192.168.0.17"))
        && f.post_nat_src_ip == Some(ip("192.168.0.2"))));
    untranslated_is_never_nat(&r);
}

/// No NAT row says a host held its own address and port.
fn untranslated_is_never_nat(r: &Run) {
    let own: Vec<_> = r
        .nat()
        .into_iter()
        .filter(|n| n.x_ip == n.src_ip && n.x_port == n.src_port)
        .collect();
    assert!(own.is_empty(), "{own:?}");
}

#[test]
fn mikrotik_ipfix_post_nat() {
    let r = run(&[
        logstash("ipfix_test_mikrotik_tpl.dat"),
        logstash("ipfix_test_mikrotik_data258.dat"),
        logstash("ipfix_test_mikrotik_data259.dat"),
    ]);
    assert_eq!(r.decoded[0].format, FORMAT_IPFIX);
    assert_eq!(r.records(), 46, "logstash decode.size");
    assert_eq!(r.problems(), Vec::<&Problem>::new());
    let flows = r.flows();
    assert_eq!(flows.len(), 46, "every record is a flow");
    let f = flows[0];
    assert_eq!((f.src_ip, f.src_port), (Some(ip("10.10.8.197")), Some(123)));
    assert_eq!(
        (f.dst_ip, f.dst_port),
        (Some(ip("192.168.128.17")), Some(123))
    );
    assert_eq!(f.post_nat_src_ip, Some(ip("192.168.230.216")));
    assert_eq!(f.post_nat_dst_ip, Some(ip("192.168.128.17")));
    assert_eq!(f.exporter, Some(ip(EXPORTER)));
    // Its mapping, seen in use.
    let m = r
        .nat()
        .into_iter()
        .find(|n| n.src_ip == Some(ip("10.10.8.197")))
        .expect("mapping of record[0]");
    assert_eq!(m.event, Some(NatEventKind::MappingObserved));
    assert_eq!(m.x_ip, Some(ip("192.168.230.216")));
    assert_eq!(m.time, f.time);
    assert!(
        flows[45].src_ip.is_some_and(|a| a.is_ipv6()),
        "record[45] is IPv6"
    );
}

#[test]
fn fortios_post_nat_zeros_are_absent() {
    let r = run(&[
        logstash("netflow9_test_fortigate_fortios_542_appid_tpl258-269.dat"),
        logstash("netflow9_test_fortigate_fortios_542_appid_data258_262.dat"),
    ]);
    assert_eq!(r.records(), 17, "logstash decode.size");
    let f = r
        .flows()
        .into_iter()
        .find(|f| f.src_ip == Some(ip("192.168.100.151")) && f.src_port == Some(45380))
        .expect("record[0]");
    assert_eq!(
        (f.dst_ip, f.dst_port),
        (Some(ip("182.50.136.239")), Some(80))
    );
    assert_eq!(f.post_nat_src_ip, Some(ip("10.0.0.250")));
    assert_eq!(f.post_nat_src_port, Some(45380));
    assert_eq!(
        (f.post_nat_dst_ip, f.post_nat_dst_port),
        (None, None),
        "0.0.0.0 / 0"
    );
}

#[test]
fn paloalto_flows_and_zero_padded_packet() {
    let r = run(&[
        logstash("netflow9_test_paloalto_panos_tpl.dat"),
        logstash("netflow9_test_paloalto_panos_data.dat"),
    ]);
    assert_eq!(r.records(), 8, "logstash decode.size");
    // record[1] (template 257, no NAT, firewallEvent 5 = update): a flow.
    let f = r
        .flows()
        .into_iter()
        .find(|f| f.src_ip == Some(ip("10.32.105.103")))
        .expect("record[1]");
    assert_eq!(f.src_port, Some(39702));
    assert_eq!(
        (f.dst_ip, f.dst_port),
        (Some(ip("162.115.24.30")), Some(443))
    );
    assert_eq!(f.post_nat_src_ip, None);

    // PAN-OS 8.1: one flowset in a large zero-filled datagram; the zeros are padding.
    let r = run(&[
        logstash("netflow9_test_paloalto_81_tpl256-263.dat"),
        logstash("netflow9_test_paloalto_81_data257_1flowset_in_large_zerofilled_packet.dat"),
    ]);
    assert_eq!(r.problems(), Vec::<&Problem>::new());
    assert!(r.records() > 0);
    assert!(r.flows().iter().all(|f| f.src_ip.is_some()));
}

#[test]
fn nokia_subscriber_string() {
    let r = run(&[
        logstash("ipfix_test_nokia_bras_tpl.dat"),
        logstash("ipfix_test_nokia_bras_data256.dat"),
    ]);
    assert_eq!(r.records(), 1, "logstash decode.size");
    let e = &r.events[0];
    assert_eq!(e.subscriber.as_deref(), Some("USER1@10.10.0.123"));
    let Event::Flow(f) = &e.event else {
        panic!("{e:?}")
    };
    assert_eq!((f.src_ip, f.src_port), (Some(ip("10.0.1.228")), Some(5878)));
    assert_eq!((f.dst_ip, f.dst_port), (Some(ip("10.0.0.34")), Some(80)));
    assert_eq!(f.protocol, Some(6));
    // natInsideSvcid 100 (natOutsideSvcid 0): the inside address's VPRN is the row's VRF.
    assert_eq!(f.vrf.as_deref(), Some("100"));
}

#[test]
fn asr9k_vrf_ids() {
    let r = run(&[
        logstash("netflow9_test_cisco_asr9k_tpl260.dat"),
        logstash("netflow9_test_cisco_asr9k_data260.dat"),
    ]);
    assert!(r.records() > 20);
    assert_eq!(r.events.len() as u64, r.records());
    let Event::Flow(f) = &r.events[20].event else {
        panic!()
    };
    assert_eq!(f.vrf.as_deref(), Some("1610612736"), "record[20]");
}

#[test]
fn unknown_template_is_kept_as_its_own_message() {
    let tpl = logstash("netflow9_test_cisco_asa_1_tpl.dat");
    let data = logstash("netflow9_test_cisco_asa_1_data.dat");
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    let d = dec.decode(Some(ip(EXPORTER)), &data, 0, &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(d.data_records, 0);
    assert!(!d.problems.is_empty());
    for p in &d.problems {
        assert_eq!(p.kind, ProblemKind::MissingTemplate);
        assert!(
            p.reason.starts_with("no template ")
                && p.reason.contains("for exporter 192.0.2.9 domain "),
            "{}",
            p.reason
        );
    }
    // Another exporter's templates do not apply.
    dec.decode(Some(ip("192.0.2.10")), &tpl, 0, &mut out)
        .unwrap();
    let again = dec.decode(Some(ip(EXPORTER)), &data, 0, &mut out).unwrap();
    assert_eq!(again.problems.len(), d.problems.len());
    // Once the template is known, each kept set decodes on its own: nothing was lost.
    dec.decode(Some(ip(EXPORTER)), &tpl, 0, &mut out).unwrap();
    let mut records = 0;
    for p in &d.problems {
        let r = dec
            .decode(Some(ip(EXPORTER)), &p.payload, 0, &mut out)
            .unwrap();
        assert_eq!(r.problems, vec![]);
        records += r.data_records;
    }
    assert_eq!(records, 14);
}

#[test]
fn truncated_and_garbage_messages() {
    let (exporter, pkt) = pcap_udp(&bin("akvorado/nat.pcap"));
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    // Cut inside the data set: the templates before it are learned, the cut is reported with
    // the whole message, nothing is invented.
    let cut = &pkt[..pkt.len() - 30];
    let d = dec.decode(Some(exporter), cut, 0, &mut out).unwrap();
    assert_eq!(d.templates, 4);
    assert_eq!(out.len(), 0);
    assert_eq!(d.problems.len(), 1);
    assert_eq!(d.problems[0].kind, ProblemKind::Damaged);
    assert!(
        d.problems[0].reason.starts_with("truncated"),
        "{}",
        d.problems[0].reason
    );
    assert_eq!(d.problems[0].payload, cut);
    // Header only, cut header, garbage, legacy versions: errors, never panics.
    assert!(matches!(
        dec.decode(Some(exporter), &pkt[..12], 0, &mut out),
        Err(DecodeError::Truncated(_))
    ));
    assert!(matches!(
        dec.decode(None, b"\xde\xad\xbe\xef garbage", 0, &mut out),
        Err(DecodeError::NotExport(_))
    ));
    let mut v5 = vec![0u8; 72];
    v5[1] = 5;
    assert!(matches!(
        dec.decode(None, &v5, 0, &mut out),
        Err(DecodeError::Legacy(5))
    ));
    // Every prefix and some bit flips of real messages: no panic, whatever the outcome.
    for name in [
        "ipfix_test_mikrotik_tpl.dat",
        "ipfix_test_nokia_bras_data256.dat",
        "netflow9_test_cisco_asa_2_tpl_26x.dat",
    ] {
        let m = logstash(name);
        for n in 0..m.len() {
            let _ = Decoder::new().decode(None, &m[..n], 0, &mut out);
        }
        for i in (0..m.len()).step_by(7) {
            let mut x = m.clone();
            x[i] ^= 0xa5;
            let _ = dec.decode(None, &x, 0, &mut out);
        }
    }
    assert!(dec.domains() > 0);
}

/// The port-block template of the akvorado capture (267: 8, 225, 234, 4, 230, 323, 361, 363,
/// 364) has no data records there; a record built from the capture's own template (field
/// lengths read from the packet) exercises v9's unknown 361/363/364 through the whole path.
#[test]
fn v9_port_block_through_the_captured_template() {
    let (exporter, pkt) = pcap_udp(&bin("akvorado/nat.pcap"));
    let frame = framing::frame(&pkt).unwrap();
    // Find template 267 in the template flowset (id 0): id, count, (type, length)*.
    let mut fields: Vec<(u16, u16)> = Vec::new();
    for set in frame.sets.iter().filter(|s| s.id == 0) {
        let body = &pkt[set.bytes.start + 4..set.bytes.end];
        let mut at = 0;
        while at + 4 <= body.len() {
            let id = u16::from_be_bytes([body[at], body[at + 1]]);
            let count = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
            let list: Vec<(u16, u16)> = (0..count)
                .map(|i| {
                    let p = at + 4 + 4 * i;
                    (
                        u16::from_be_bytes([body[p], body[p + 1]]),
                        u16::from_be_bytes([body[p + 2], body[p + 3]]),
                    )
                })
                .collect();
            if id == 267 {
                fields = list;
            }
            at += 4 + 4 * count;
        }
    }
    let ids: Vec<u16> = fields.iter().map(|f| f.0).collect();
    assert_eq!(ids, [8, 225, 234, 4, 230, 323, 361, 363, 364]);
    let value = |ie: u16, len: u16| -> Vec<u8> {
        let v: u64 = match ie {
            8 => u64::from(u32::from_be_bytes([100, 64, 1, 2])),
            225 => u64::from(u32::from_be_bytes([198, 51, 100, 20])),
            4 => 17,
            230 => 16, // port block allocation
            323 => 1_749_049_700_000,
            361 => 2048,
            363 => 1,
            364 => 256,
            _ => 0,
        };
        v.to_be_bytes()[8 - usize::from(len)..].to_vec()
    };
    let mut record: Vec<u8> = Vec::new();
    for (ie, len) in &fields {
        record.extend(value(*ie, *len));
    }
    let mut data = pkt[..20].to_vec();
    data.extend_from_slice(&267u16.to_be_bytes());
    data.extend_from_slice(&((record.len() + 4) as u16).to_be_bytes());
    data.extend(record);

    let mut dec = Decoder::new();
    let mut out = Vec::new();
    dec.decode(Some(exporter), &pkt, 0, &mut out).unwrap();
    out.clear();
    let d = dec.decode(Some(exporter), &data, 0, &mut out).unwrap();
    assert_eq!((d.data_records, d.problems.len()), (1, 0), "{d:?}");
    let [
        DecodedEvent {
            event: Event::Nat(n),
            ..
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(n.event, Some(NatEventKind::PortBlockAlloc));
    assert_eq!(n.src_ip, Some(ip("100.64.1.2")));
    assert_eq!(n.x_ip, Some(ip("198.51.100.20")));
    assert_eq!((n.x_port, n.x_port_end), (Some(2048), Some(2303)));
    assert_eq!(n.protocol, Some(17));
    assert_eq!(n.time, 1_749_049_700_000_000);
}
