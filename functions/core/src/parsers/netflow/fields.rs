//! The information elements natlake maps, collected from one data record.
//!
//! `netflow_parser` types each value by its own IE registry; here every value is taken back as
//! its wire bytes (`FieldValue::write_be_bytes`, lossless for the types involved) and read by IE
//! number, so NetFlow v9 and IPFIX, known and unknown fields (v9 361–364, NSEL 40001–40005) go
//! through one path and a field of an unexpected length is ignored rather than misread.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use netflow_parser::variable_versions::ipfix::lookup::IPFixField;

use crate::model::Micros;

/// Nokia (Alcatel-Lucent) private enterprise number.
pub const PEN_NOKIA: u32 = 637;

/// The elements that are mapped; everything else in a record is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ie {
    OctetDelta,
    PacketDelta,
    OctetTotal,
    PacketTotal,
    Protocol,
    SrcPort,
    SrcIp4,
    IngressIf,
    DstPort,
    DstIp4,
    EgressIf,
    /// v9 LAST_SWITCHED / IPFIX flowEndSysUpTime (ms of exporter uptime).
    EndUptime,
    /// v9 FIRST_SWITCHED / IPFIX flowStartSysUpTime.
    StartUptime,
    SrcIp6,
    DstIp6,
    SamplingInterval,
    StartSeconds,
    EndSeconds,
    StartMillis,
    EndMillis,
    StartMicros,
    EndMicros,
    StartNanos,
    EndNanos,
    /// systemInitTimeMilliseconds: the epoch IPFIX uptime fields count from.
    SystemInitMillis,
    PostSrcIp4,
    PostDstIp4,
    PostSrcPort,
    PostDstPort,
    NatEvent,
    InitiatorOctets,
    ResponderOctets,
    FirewallEvent,
    IngressVrf,
    EgressVrf,
    PostSrcIp6,
    PostDstIp6,
    InitiatorPackets,
    ResponderPackets,
    SamplingPacketInterval,
    ObservationMillis,
    PortRangeStart,
    PortRangeEnd,
    PortRangeStep,
    PortRangeCount,
    /// Cisco NSEL before IANA numbers: NF_F_XLATE_SRC_ADDR_IPV4 …
    NselXlateSrcIp4,
    NselXlateDstIp4,
    NselXlateSrcPort,
    NselXlateDstPort,
    NselFwEvent,
    NselIngressAcl,
    NselFwExtEvent,
    /// Nokia natSubString: the subscriber as the BNG names it ("USER1@10.10.0.123").
    NokiaSubscriber,
}

/// (enterprise number, element id) → element; enterprise 0 is IANA (and every v9 field).
const TABLE: &[(u32, u16, Ie)] = &[
    (0, 1, Ie::OctetDelta),
    (0, 2, Ie::PacketDelta),
    (0, 4, Ie::Protocol),
    (0, 7, Ie::SrcPort),
    (0, 8, Ie::SrcIp4),
    (0, 10, Ie::IngressIf),
    (0, 11, Ie::DstPort),
    (0, 12, Ie::DstIp4),
    (0, 14, Ie::EgressIf),
    (0, 21, Ie::EndUptime),
    (0, 22, Ie::StartUptime),
    (0, 27, Ie::SrcIp6),
    (0, 28, Ie::DstIp6),
    (0, 34, Ie::SamplingInterval),
    (0, 85, Ie::OctetTotal),
    (0, 86, Ie::PacketTotal),
    (0, 150, Ie::StartSeconds),
    (0, 151, Ie::EndSeconds),
    (0, 152, Ie::StartMillis),
    (0, 153, Ie::EndMillis),
    (0, 154, Ie::StartMicros),
    (0, 155, Ie::EndMicros),
    (0, 156, Ie::StartNanos),
    (0, 157, Ie::EndNanos),
    (0, 160, Ie::SystemInitMillis),
    (0, 225, Ie::PostSrcIp4),
    (0, 226, Ie::PostDstIp4),
    (0, 227, Ie::PostSrcPort),
    (0, 228, Ie::PostDstPort),
    (0, 230, Ie::NatEvent),
    (0, 231, Ie::InitiatorOctets),
    (0, 232, Ie::ResponderOctets),
    (0, 233, Ie::FirewallEvent),
    (0, 234, Ie::IngressVrf),
    (0, 235, Ie::EgressVrf),
    (0, 281, Ie::PostSrcIp6),
    (0, 282, Ie::PostDstIp6),
    (0, 298, Ie::InitiatorPackets),
    (0, 299, Ie::ResponderPackets),
    (0, 305, Ie::SamplingPacketInterval),
    (0, 323, Ie::ObservationMillis),
    (0, 361, Ie::PortRangeStart),
    (0, 362, Ie::PortRangeEnd),
    (0, 363, Ie::PortRangeStep),
    (0, 364, Ie::PortRangeCount),
    (0, 40001, Ie::NselXlateSrcIp4),
    (0, 40002, Ie::NselXlateDstIp4),
    (0, 40003, Ie::NselXlateSrcPort),
    (0, 40004, Ie::NselXlateDstPort),
    (0, 40005, Ie::NselFwEvent),
    (0, 33000, Ie::NselIngressAcl),
    (0, 33002, Ie::NselFwExtEvent),
    // Nokia's natInsideSvcid / natOutsideSvcid: the service (VPRN) the inside / outside
    // address lives in — what other exporters call the ingress / egress VRF.
    (PEN_NOKIA, 91, Ie::IngressVrf),
    (PEN_NOKIA, 92, Ie::EgressVrf),
    (PEN_NOKIA, 93, Ie::NokiaSubscriber),
];

/// The element a v9 field number stands for.
pub fn v9_ie(id: u16) -> Option<Ie> {
    static MAP: OnceLock<HashMap<u16, Ie>> = OnceLock::new();
    MAP.get_or_init(|| {
        TABLE
            .iter()
            .filter(|(pen, _, _)| *pen == 0)
            .map(|(_, id, ie)| (*id, *ie))
            .collect()
    })
    .get(&id)
    .copied()
}

/// The element an IPFIX field stands for. The crate names IANA and some vendors' fields with its
/// own enums; building the same `IPFixField` from our numbers and comparing avoids depending on
/// its variant names.
pub fn ipfix_ie(field: &IPFixField) -> Option<Ie> {
    static MAP: OnceLock<HashMap<IPFixField, Ie>> = OnceLock::new();
    MAP.get_or_init(|| {
        TABLE
            .iter()
            // NSEL's 33000/40000 numbers are v9-only; in IPFIX they would carry the enterprise bit.
            .filter(|(pen, id, _)| *pen != 0 || *id < 32768)
            .map(|(pen, id, ie)| {
                let pen = (*pen != 0).then_some(*pen);
                (IPFixField::new(*id, pen), *ie)
            })
            .collect()
    })
    .get(field)
    .copied()
}

/// The mapped elements of one data record; None where the record does not carry the element or
/// carries it with a length that makes no sense for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    pub protocol: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub post_src_ip: Option<IpAddr>,
    pub post_src_port: Option<u16>,
    pub post_dst_ip: Option<IpAddr>,
    pub post_dst_port: Option<u16>,
    pub nat_event: Option<u8>,
    /// IANA firewallEvent (233) or NSEL NF_F_FW_EVENT (40005): same codes.
    pub fw_event: Option<u8>,
    pub fw_ext_event: Option<u16>,
    pub ingress_acl: Option<Vec<u8>>,
    pub ingress_vrf: Option<u32>,
    pub egress_vrf: Option<u32>,
    pub observation_ms: Option<u64>,
    pub start: Option<Micros>,
    pub end: Option<Micros>,
    pub start_uptime_ms: Option<u32>,
    pub end_uptime_ms: Option<u32>,
    pub system_init_ms: Option<u64>,
    pub octets: Option<u64>,
    pub packets: Option<u64>,
    pub initiator_octets: Option<u64>,
    pub responder_octets: Option<u64>,
    pub initiator_packets: Option<u64>,
    pub responder_packets: Option<u64>,
    pub in_if: Option<u32>,
    pub out_if: Option<u32>,
    pub sampling: Option<u64>,
    pub port_start: Option<u16>,
    pub port_end: Option<u16>,
    pub port_step: Option<u16>,
    pub port_count: Option<u16>,
    pub subscriber: Option<String>,
}

/// Seconds between the NTP epoch (1900) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

fn uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

fn ip(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        // An IPv4-mapped address is stored as the IPv4 one, as the text parsers store it.
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|a| IpAddr::V6(Ipv6Addr::from(a)).to_canonical()),
        _ => None,
    }
}

/// Exporters send 0.0.0.0 / :: for "not translated" or "unknown".
fn set_ip(b: &[u8]) -> Option<IpAddr> {
    ip(b).filter(|a| !a.is_unspecified())
}

fn u16_of(b: &[u8]) -> Option<u16> {
    uint(b).and_then(|v| u16::try_from(v).ok())
}

fn u32_of(b: &[u8]) -> Option<u32> {
    uint(b).and_then(|v| u32::try_from(v).ok())
}

fn secs_micros(b: &[u8]) -> Option<Micros> {
    uint(b)
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| s.checked_mul(1_000_000))
}

fn millis_micros(b: &[u8]) -> Option<Micros> {
    uint(b)
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| s.checked_mul(1000))
}

/// dateTimeMicroseconds / dateTimeNanoseconds: NTP 32.32 fixed point since 1900 (RFC 7011 6.1.9).
fn ntp_micros(b: &[u8]) -> Option<Micros> {
    if b.len() != 8 {
        return None;
    }
    let secs = uint(b.get(..4)?)?.checked_sub(NTP_UNIX_OFFSET)?;
    let frac = uint(b.get(4..)?)?;
    let micros = (frac * 1_000_000) >> 32;
    i64::try_from(secs * 1_000_000 + micros).ok()
}

impl Fields {
    /// Records one element's wire bytes. The first occurrence wins when a template repeats an
    /// element (the IPv4 and IPv6 variants of an address share a slot the same way).
    pub fn set(&mut self, ie: Ie, b: &[u8]) {
        fn first<T>(slot: &mut Option<T>, v: Option<T>) {
            if slot.is_none() {
                *slot = v;
            }
        }
        match ie {
            Ie::OctetDelta | Ie::OctetTotal => first(&mut self.octets, uint(b)),
            Ie::PacketDelta | Ie::PacketTotal => first(&mut self.packets, uint(b)),
            Ie::Protocol => first(
                &mut self.protocol,
                uint(b).and_then(|v| u8::try_from(v).ok()),
            ),
            Ie::SrcPort => first(&mut self.src_port, u16_of(b)),
            Ie::DstPort => first(&mut self.dst_port, u16_of(b)),
            Ie::SrcIp4 | Ie::SrcIp6 => first(&mut self.src_ip, set_ip(b)),
            Ie::DstIp4 | Ie::DstIp6 => first(&mut self.dst_ip, set_ip(b)),
            Ie::IngressIf => first(&mut self.in_if, u32_of(b)),
            Ie::EgressIf => first(&mut self.out_if, u32_of(b)),
            Ie::EndUptime => first(&mut self.end_uptime_ms, u32_of(b)),
            Ie::StartUptime => first(&mut self.start_uptime_ms, u32_of(b)),
            Ie::SamplingInterval | Ie::SamplingPacketInterval => {
                first(&mut self.sampling, uint(b).filter(|v| *v != 0))
            }
            Ie::StartSeconds => first(&mut self.start, secs_micros(b)),
            Ie::EndSeconds => first(&mut self.end, secs_micros(b)),
            Ie::StartMillis => first(&mut self.start, millis_micros(b)),
            Ie::EndMillis => first(&mut self.end, millis_micros(b)),
            Ie::StartMicros | Ie::StartNanos => first(&mut self.start, ntp_micros(b)),
            Ie::EndMicros | Ie::EndNanos => first(&mut self.end, ntp_micros(b)),
            Ie::SystemInitMillis => first(&mut self.system_init_ms, uint(b)),
            Ie::PostSrcIp4 | Ie::PostSrcIp6 | Ie::NselXlateSrcIp4 => {
                first(&mut self.post_src_ip, set_ip(b))
            }
            Ie::PostDstIp4 | Ie::PostDstIp6 | Ie::NselXlateDstIp4 => {
                first(&mut self.post_dst_ip, set_ip(b))
            }
            Ie::PostSrcPort | Ie::NselXlateSrcPort => {
                first(&mut self.post_src_port, u16_of(b).filter(|p| *p != 0))
            }
            Ie::PostDstPort | Ie::NselXlateDstPort => {
                first(&mut self.post_dst_port, u16_of(b).filter(|p| *p != 0))
            }
            Ie::NatEvent => first(
                &mut self.nat_event,
                uint(b).and_then(|v| u8::try_from(v).ok()),
            ),
            Ie::FirewallEvent | Ie::NselFwEvent => first(
                &mut self.fw_event,
                uint(b).and_then(|v| u8::try_from(v).ok()),
            ),
            Ie::NselFwExtEvent => first(&mut self.fw_ext_event, u16_of(b)),
            Ie::NselIngressAcl => first(
                &mut self.ingress_acl,
                Some(b.to_vec()).filter(|a| a.iter().any(|x| *x != 0)),
            ),
            Ie::InitiatorOctets => first(&mut self.initiator_octets, uint(b)),
            Ie::ResponderOctets => first(&mut self.responder_octets, uint(b)),
            Ie::InitiatorPackets => first(&mut self.initiator_packets, uint(b)),
            Ie::ResponderPackets => first(&mut self.responder_packets, uint(b)),
            Ie::IngressVrf => first(&mut self.ingress_vrf, u32_of(b)),
            Ie::EgressVrf => first(&mut self.egress_vrf, u32_of(b)),
            Ie::ObservationMillis => first(&mut self.observation_ms, uint(b)),
            Ie::PortRangeStart => first(&mut self.port_start, u16_of(b)),
            Ie::PortRangeEnd => first(&mut self.port_end, u16_of(b)),
            Ie::PortRangeStep => first(&mut self.port_step, u16_of(b)),
            Ie::PortRangeCount => first(&mut self.port_count, u16_of(b)),
            Ie::NokiaSubscriber => {
                // Variable-length string; exporters pad fixed-length ones with NULs.
                let s = String::from_utf8_lossy(b);
                let s = s.trim_end_matches('\0').trim();
                first(
                    &mut self.subscriber,
                    Some(s.to_string()).filter(|s| !s.is_empty()),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_cover_v9_ipfix_and_enterprise_fields() {
        assert_eq!(v9_ie(225), Some(Ie::PostSrcIp4));
        assert_eq!(v9_ie(40001), Some(Ie::NselXlateSrcIp4));
        assert_eq!(v9_ie(9999), None);
        assert_eq!(ipfix_ie(&IPFixField::new(230, None)), Some(Ie::NatEvent));
        assert_eq!(
            ipfix_ie(&IPFixField::new(361, None)),
            Some(Ie::PortRangeStart)
        );
        assert_eq!(
            ipfix_ie(&IPFixField::new(93, Some(PEN_NOKIA))),
            Some(Ie::NokiaSubscriber)
        );
        // The same number under another enterprise is another element.
        assert_eq!(ipfix_ie(&IPFixField::new(93, Some(9))), None);
    }

    #[test]
    fn values_are_read_by_length_and_zeros_mean_absent() {
        let mut f = Fields::default();
        f.set(Ie::PostSrcIp4, &[0, 0, 0, 0]);
        assert_eq!(f.post_src_ip, None);
        f.set(Ie::PostSrcIp4, &[203, 0, 113, 9]);
        assert_eq!(f.post_src_ip, Some("203.0.113.9".parse().unwrap()));
        f.set(
            Ie::PostSrcIp6,
            &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        assert_eq!(
            f.post_src_ip,
            Some("203.0.113.9".parse().unwrap()),
            "first wins"
        );
        f.set(Ie::SrcIp4, &[10, 0, 0]); // wrong length: ignored, not misread
        assert_eq!(f.src_ip, None);
        // An IPv4-mapped IPv6 address is the IPv4 address (its partition, its lookups).
        f.set(
            Ie::SrcIp6,
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 100, 64, 0, 1],
        );
        assert_eq!(f.src_ip, Some("100.64.0.1".parse().unwrap()));
        f.src_ip = None;
        f.set(Ie::PostSrcPort, &[0, 0]);
        assert_eq!(f.post_src_port, None);
        f.set(Ie::SrcPort, &[0xee, 0x49]);
        assert_eq!(f.src_port, Some(61001));
        f.set(Ie::SrcPort, &[1, 0, 0]); // does not fit a port
        f.set(Ie::ObservationMillis, &1_749_049_741_123u64.to_be_bytes());
        assert_eq!(f.observation_ms, Some(1_749_049_741_123));
        // NTP: 2024-01-01T00:00:00.5Z
        let secs = (1_704_067_200u64 + NTP_UNIX_OFFSET) as u32;
        let mut ntp = secs.to_be_bytes().to_vec();
        ntp.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        f.set(Ie::StartMicros, &ntp);
        assert_eq!(f.start, Some(1_704_067_200_500_000));
        f.set(Ie::NokiaSubscriber, b"USER1@10.10.0.123\0\0");
        assert_eq!(f.subscriber.as_deref(), Some("USER1@10.10.0.123"));
    }
}
