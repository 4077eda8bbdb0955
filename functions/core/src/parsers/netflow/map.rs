//! One data record's fields → natlake events.
//!
//! - natEvent (230) present: a NAT event (RFC 8158 codes, and the historic 1/2 that Cisco NEL
//!   still sends). Alarms (addresses/ports exhausted, quota, threshold) hold no mapping: skipped.
//! - Cisco NSEL / IANA firewallEvent (233, 40005): a denied flow is a firewall event; a created
//!   or deleted flow with translated addresses is a session create / delete.
//! - Anything else is a flow record; when it carries a post-NAT source address it also yields a
//!   MappingObserved NAT event (as the goflow2 parser does), so attribution can use flows where
//!   no NAT log exists.
//!
//! The inside (pre-NAT) side is `src_*`; the public (post-NAT) side is `x_*`.

use std::net::IpAddr;

use crate::model::{
    Event, FirewallAction, FirewallEvent, FlowRecord, Micros, NatEvent, NatEventKind,
};

use super::fields::Fields;

/// Times from the message header, to resolve uptime-relative fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderTimes {
    /// v9 unix_secs / IPFIX export time, seconds.
    pub export_secs: u32,
    /// v9 sysUptime in ms; None for IPFIX.
    pub uptime_ms: Option<u32>,
}

/// What one record became.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Events for the lake (one, or a flow plus its MappingObserved NAT event).
    Events(Vec<Event>),
    /// A valid record that holds nothing the lake keeps (NAT alarms, records without addresses):
    /// counted, not stored.
    Skipped(&'static str),
    /// A record the model cannot express without lying: goes to rejects with this reason.
    Unrepresentable(String),
}

const NAT_ALARMS: [u8; 4] = [3, 12, 13, 18];

fn nat_kind(code: u8) -> Option<NatEventKind> {
    use NatEventKind::*;
    Some(match code {
        // 1/2: historic create/delete; 4–7 NAT44/NAT64 sessions; 8–11 NAT44/NAT64 BIB entries
        // (an endpoint-independent port mapping is a port mapping too).
        1 | 4 | 6 | 8 | 10 => SessionCreate,
        2 | 5 | 7 | 9 | 11 => SessionDelete,
        14 => AddressBind,
        15 => AddressRelease,
        16 => PortBlockAlloc,
        17 => PortBlockRelease,
        _ => return None,
    })
}

/// Firewall event codes (IANA firewallEvent registry; NSEL uses the same numbers).
const FW_CREATED: u8 = 1;
const FW_DELETED: u8 = 2;
const FW_DENIED: u8 = 3;
const FW_ALERT: u8 = 4;

impl Fields {
    /// An uptime-relative v9 time (ms since the exporter booted) in epoch µs: the header gives
    /// the uptime and the wall clock at export. The difference is read as signed so a flow
    /// stamped a little after the header's uptime does not become 49 days old.
    fn uptime_time(&self, ms: Option<u32>, h: &HeaderTimes) -> Option<Micros> {
        let ms = ms?;
        if let Some(init) = self.system_init_ms {
            // IPFIX: flow*SysUpTime counts from systemInitTimeMilliseconds.
            let t = i64::try_from(init).ok()?.checked_add(i64::from(ms))?;
            return t.checked_mul(1000);
        }
        let uptime = h.uptime_ms?;
        let age = i64::from(uptime.wrapping_sub(ms) as i32);
        (i64::from(h.export_secs) * 1000 - age).checked_mul(1000)
    }

    fn start_time(&self, h: &HeaderTimes) -> Option<Micros> {
        self.start
            .or_else(|| self.uptime_time(self.start_uptime_ms, h))
    }

    fn end_time(&self, h: &HeaderTimes) -> Option<Micros> {
        self.end.or_else(|| self.uptime_time(self.end_uptime_ms, h))
    }

    fn observation_time(&self) -> Option<Micros> {
        self.observation_ms
            .and_then(|v| i64::try_from(v).ok())
            .and_then(|v| v.checked_mul(1000))
    }

    /// When a NAT event happened: its own stamp first; an opening when its flow started, a
    /// close (a teardown without a stamp) when its flow ended — at its start it would end the
    /// mapping before the traffic it carried.
    fn event_time(&self, h: &HeaderTimes, kind: NatEventKind, default_time: Micros) -> Micros {
        self.observation_time()
            .or_else(|| {
                if kind.closes() {
                    self.end_time(h).or_else(|| self.start_time(h))
                } else {
                    self.start_time(h)
                }
            })
            .or_else(|| Fields::export_time(h))
            .unwrap_or(default_time)
    }

    fn export_time(h: &HeaderTimes) -> Option<Micros> {
        (h.export_secs != 0).then(|| i64::from(h.export_secs) * 1_000_000)
    }

    /// The post-NAT source differs from the source: a translation, not a connection that
    /// crossed the device untranslated. Cisco ASA fills the xlate source on every NSEL record,
    /// equal to the real one when nothing was translated (as its syslog says `B == B'`); such a
    /// record is a flow, and a NAT row for it would claim the host "held" its own address.
    fn source_translated(&self) -> bool {
        self.post_src_ip.is_some_and(|x| {
            Some(x) != self.src_ip || self.post_src_port.is_some_and(|p| Some(p) != self.src_port)
        })
    }

    /// The inside VRF id as the device numbers it; 0 is the global table, i.e. no VRF. Only
    /// the ingress id (IE 234, Nokia's natInsideSvcid) says it: RFC 8158 puts the private realm
    /// there and the public one in the egress id, so the egress id never stands in — an inside
    /// address labelled with the outside VRF would match the wrong identity source.
    fn vrf(&self) -> Option<String> {
        self.ingress_vrf.filter(|v| *v != 0).map(|v| v.to_string())
    }
}

/// Maps one record. `exporter` is the datagram's sender; `default_time` stands in when the
/// record and header carry no time at all.
pub fn map_record(
    f: &Fields,
    h: &HeaderTimes,
    exporter: Option<IpAddr>,
    default_time: Micros,
) -> Mapped {
    if let Some(code) = f.nat_event {
        return nat_event(f, h, code, default_time);
    }
    match f.fw_event {
        Some(FW_DENIED | FW_ALERT) => return firewall(f, h, default_time),
        Some(code @ (FW_CREATED | FW_DELETED)) if f.source_translated() => {
            let kind = if code == FW_CREATED {
                NatEventKind::SessionCreate
            } else {
                NatEventKind::SessionDelete
            };
            return nsel_session(f, h, kind, default_time);
        }
        // Updates and other codes: the record is a flow.
        _ => {}
    }
    flow(f, h, exporter, default_time)
}

fn nat_event(f: &Fields, h: &HeaderTimes, code: u8, default_time: Micros) -> Mapped {
    if NAT_ALARMS.contains(&code) {
        return Mapped::Skipped("NAT alarm (no mapping)");
    }
    let Some(kind) = nat_kind(code) else {
        return Mapped::Unrepresentable(format!("unknown natEvent {code}"));
    };
    if f.src_ip.is_none() && f.post_src_ip.is_none() {
        return Mapped::Skipped("NAT event without addresses");
    }
    if f.post_src_ip.is_none() {
        // Stored, it would sit in no public address's partition where no lookup reads: kept in
        // rejects instead (the message, with the reason), e.g. a post-NAT address of a length
        // other than 4 or 16 bytes.
        return Mapped::Unrepresentable(format!(
            "natEvent {code} without a post-NAT source address (IE 225 / 281)"
        ));
    }
    let (x_port, x_port_end) = match kind {
        NatEventKind::PortBlockAlloc | NatEventKind::PortBlockRelease => match port_block(f) {
            Ok(r) => r,
            Err(reason) => return Mapped::Unrepresentable(reason),
        },
        _ => (f.post_src_port, None),
    };
    let time = f.event_time(h, kind, default_time);
    nat_row(NatEvent {
        time,
        event: Some(kind),
        protocol: f.protocol.filter(|p| *p != 0),
        src_ip: f.src_ip,
        src_port: f.src_port,
        x_ip: f.post_src_ip,
        x_port,
        x_port_end,
        dst_ip: f.dst_ip,
        dst_port: f.dst_port,
        vrf: f.vrf(),
        direction: Some("out"),
        end_time: if kind.closes() { f.end_time(h) } else { None },
        bytes_out: f.initiator_octets,
        bytes_in: f.responder_octets,
        packets_out: f.initiator_packets,
        packets_in: f.responder_packets,
    })
}

/// A NAT event without ICMP (and GRE) identifiers in its port columns, as the text parsers
/// store it: an identifier equal to an asked port is not that port.
fn without_icmp_ports(mut e: NatEvent) -> NatEvent {
    crate::parsers::fields::clean_ports(&mut e);
    e
}

fn nat_row(e: NatEvent) -> Mapped {
    Mapped::Events(vec![Event::Nat(without_icmp_ports(e))])
}

/// Port block bounds: start and end (362), or start, size (364) and step (363). A step above 1
/// interleaves blocks of different subscribers; one range would cover ports that belong to
/// someone else, so such a block is not stored as a range.
fn port_block(f: &Fields) -> Result<(Option<u16>, Option<u16>), String> {
    let Some(start) = f.port_start else {
        return Ok((None, f.port_end));
    };
    if let Some(end) = f.port_end {
        if end < start {
            return Err(format!("port block end {end} below start {start}"));
        }
        return Ok((Some(start), Some(end)));
    }
    let step = f.port_step.unwrap_or(1).max(1);
    match f.port_count {
        None | Some(0) => Ok((Some(start), None)),
        Some(_) if step > 1 => Err(format!(
            "port block from {start} with step {step} is not a contiguous range"
        )),
        Some(n) => {
            let end = u32::from(start) + u32::from(n) - 1;
            match u16::try_from(end) {
                Ok(end) => Ok((Some(start), Some(end))),
                Err(_) => Err(format!(
                    "port block from {start} of {n} ports runs past 65535"
                )),
            }
        }
    }
}

/// NSEL flow create / teardown with translated addresses.
fn nsel_session(f: &Fields, h: &HeaderTimes, kind: NatEventKind, default_time: Micros) -> Mapped {
    let time = f.event_time(h, kind, default_time);
    nat_row(NatEvent {
        time,
        event: Some(kind),
        protocol: f.protocol.filter(|p| *p != 0),
        src_ip: f.src_ip,
        src_port: f.src_port,
        x_ip: f.post_src_ip,
        x_port: f.post_src_port,
        x_port_end: None,
        dst_ip: f.dst_ip,
        dst_port: f.dst_port,
        vrf: f.vrf(),
        direction: Some("out"),
        end_time: None,
        bytes_out: f.initiator_octets.or(f.octets),
        bytes_in: f.responder_octets,
        packets_out: f.initiator_packets.or(f.packets),
        packets_in: f.responder_packets,
    })
}

fn firewall(f: &Fields, h: &HeaderTimes, default_time: Micros) -> Mapped {
    let time = f
        .observation_time()
        .or_else(|| f.start_time(h))
        .or_else(|| Fields::export_time(h))
        .unwrap_or(default_time);
    let action = if f.fw_event == Some(FW_DENIED) {
        FirewallAction::Deny
    } else {
        FirewallAction::Log
    };
    // The ACL that matched (NSEL: 12 bytes of ACL id, rule id, hash) and the extended event
    // code are what an analyst looks up on the device.
    let rule = match (&f.ingress_acl, f.fw_ext_event) {
        (Some(acl), ext) => {
            let hex: String = acl.iter().map(|b| format!("{b:02x}")).collect();
            Some(match ext {
                Some(e) => format!("acl {hex} ext {e}"),
                None => format!("acl {hex}"),
            })
        }
        (None, Some(e)) => Some(format!("ext {e}")),
        (None, None) => None,
    };
    Mapped::Events(vec![Event::Firewall(FirewallEvent {
        time,
        action,
        rule,
        protocol: f.protocol.filter(|p| *p != 0),
        src_ip: f.src_ip,
        src_port: f.src_port,
        dst_ip: f.dst_ip,
        dst_port: f.dst_port,
        in_if: f.in_if.map(|i| i.to_string()),
        out_if: f.out_if.map(|i| i.to_string()),
        length: None,
        vrf: f.vrf(),
    })])
}

fn flow(f: &Fields, h: &HeaderTimes, exporter: Option<IpAddr>, default_time: Micros) -> Mapped {
    if f.src_ip.is_none() && f.dst_ip.is_none() {
        return Mapped::Skipped("record without addresses");
    }
    let start = f.start_time(h);
    let end = f.end_time(h);
    let time = start
        .or_else(|| f.observation_time())
        .or(end)
        .or_else(|| Fields::export_time(h))
        .unwrap_or(default_time);
    let bytes = f.octets.or(f.initiator_octets);
    let packets = f.packets.or(f.initiator_packets);
    let rec = FlowRecord {
        time,
        end_time: end,
        protocol: f.protocol,
        src_ip: f.src_ip,
        src_port: f.src_port,
        dst_ip: f.dst_ip,
        dst_port: f.dst_port,
        post_nat_src_ip: f.post_src_ip,
        post_nat_src_port: f.post_src_port,
        post_nat_dst_ip: f.post_dst_ip,
        post_nat_dst_port: f.post_dst_port,
        bytes,
        packets,
        in_if: f.in_if,
        out_if: f.out_if,
        sampling_rate: f.sampling,
        exporter,
        vrf: f.vrf(),
    };
    let nat = f
        .post_src_ip
        .filter(|_| f.source_translated())
        .map(|x_ip| NatEvent {
            time,
            event: Some(NatEventKind::MappingObserved),
            protocol: f.protocol,
            src_ip: f.src_ip,
            src_port: f.src_port,
            x_ip: Some(x_ip),
            x_port: f.post_src_port,
            x_port_end: None,
            dst_ip: f.dst_ip,
            dst_port: f.dst_port,
            vrf: rec.vrf.clone(),
            direction: Some("out"),
            end_time: end,
            bytes_out: bytes,
            bytes_in: f.responder_octets,
            packets_out: packets,
            packets_in: f.responder_packets,
        })
        .map(without_icmp_ports);
    let mut events = vec![Event::Flow(rec)];
    events.extend(nat.map(Event::Nat));
    Mapped::Events(events)
}

#[cfg(test)]
mod tests {
    use super::super::super::test_support::ip;
    use super::*;

    const H: HeaderTimes = HeaderTimes {
        export_secs: 1_700_000_000,
        uptime_ms: Some(100_000),
    };

    fn nat(m: Mapped) -> NatEvent {
        match m {
            Mapped::Events(mut v) if v.len() == 1 => match v.remove(0) {
                Event::Nat(n) => n,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nat_event_codes_map_to_kinds() {
        let base = Fields {
            src_ip: ip("100.64.0.1"),
            src_port: Some(40000),
            post_src_ip: ip("198.51.100.7"),
            post_src_port: Some(61000),
            observation_ms: Some(1_700_000_000_250),
            ..Fields::default()
        };
        for (code, kind) in [
            (1, NatEventKind::SessionCreate),
            (2, NatEventKind::SessionDelete),
            (4, NatEventKind::SessionCreate),
            (7, NatEventKind::SessionDelete),
            (8, NatEventKind::SessionCreate),
            (11, NatEventKind::SessionDelete),
            (14, NatEventKind::AddressBind),
            (15, NatEventKind::AddressRelease),
        ] {
            let f = Fields {
                nat_event: Some(code),
                ..base.clone()
            };
            let n = nat(map_record(&f, &H, None, 0));
            assert_eq!(n.event, Some(kind), "natEvent {code}");
            assert_eq!((n.x_ip, n.x_port), (ip("198.51.100.7"), Some(61000)));
            assert_eq!(n.time, 1_700_000_000_250_000);
        }
        for alarm in NAT_ALARMS {
            let f = Fields {
                nat_event: Some(alarm),
                ..base.clone()
            };
            assert!(matches!(map_record(&f, &H, None, 0), Mapped::Skipped(_)));
        }
        let f = Fields {
            nat_event: Some(99),
            ..base
        };
        assert!(matches!(
            map_record(&f, &H, None, 0),
            Mapped::Unrepresentable(_)
        ));
    }

    /// ICMP identifiers are not ports: an asked port must not match one.
    #[test]
    fn icmp_identifiers_are_not_stored_as_ports() {
        let f = Fields {
            nat_event: Some(1),
            protocol: Some(1),
            src_ip: ip("100.64.0.1"),
            src_port: Some(771),
            post_src_ip: ip("198.51.100.7"),
            post_src_port: Some(5000),
            dst_ip: ip("192.0.2.1"),
            dst_port: Some(2048),
            ..Fields::default()
        };
        let n = nat(map_record(&f, &H, None, 0));
        assert_eq!((n.x_ip, n.protocol), (ip("198.51.100.7"), Some(1)));
        assert_eq!((n.src_port, n.x_port, n.dst_port), (None, None, None));
        let tcp = nat(map_record(
            &Fields {
                protocol: Some(6),
                ..f
            },
            &H,
            None,
            0,
        ));
        assert_eq!((tcp.src_port, tcp.x_port), (Some(771), Some(5000)));
    }

    /// The inside VRF comes from the ingress id alone: the egress id is the public realm's.
    #[test]
    fn the_vrf_is_the_inside_one_or_none() {
        let base = Fields {
            nat_event: Some(1),
            src_ip: ip("100.64.0.1"),
            src_port: Some(40000),
            post_src_ip: ip("198.51.100.7"),
            post_src_port: Some(61000),
            ..Fields::default()
        };
        for (ingress, egress, want) in [
            (Some(7), Some(9), Some("7")),
            (Some(7), None, Some("7")),
            (Some(0), Some(9), None),
            (None, Some(9), None),
            (None, None, None),
        ] {
            let f = Fields {
                ingress_vrf: ingress,
                egress_vrf: egress,
                ..base.clone()
            };
            let n = nat(map_record(&f, &H, None, 0));
            assert_eq!(n.vrf.as_deref(), want, "{ingress:?} {egress:?}");
        }
    }

    #[test]
    fn port_blocks_from_end_or_size_and_never_from_a_stride() {
        let base = Fields {
            nat_event: Some(16),
            src_ip: ip("100.64.0.1"),
            post_src_ip: ip("198.51.100.7"),
            port_start: Some(1024),
            ..Fields::default()
        };
        let n = nat(map_record(
            &Fields {
                port_end: Some(1535),
                ..base.clone()
            },
            &H,
            None,
            0,
        ));
        assert_eq!(
            (n.event, n.x_port, n.x_port_end),
            (Some(NatEventKind::PortBlockAlloc), Some(1024), Some(1535))
        );
        let n = nat(map_record(
            &Fields {
                nat_event: Some(17),
                port_count: Some(512),
                port_step: Some(1),
                ..base.clone()
            },
            &H,
            None,
            0,
        ));
        assert_eq!(
            (n.event, n.x_port, n.x_port_end),
            (Some(NatEventKind::PortBlockRelease), Some(1024), Some(1535))
        );
        for bad in [
            Fields {
                port_count: Some(512),
                port_step: Some(4),
                ..base.clone()
            },
            Fields {
                port_count: Some(65000),
                ..base.clone()
            },
            Fields {
                port_end: Some(10),
                ..base
            },
        ] {
            assert!(
                matches!(map_record(&bad, &H, None, 0), Mapped::Unrepresentable(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn uptime_relative_times_use_the_header() {
        let f = Fields {
            src_ip: ip("10.0.0.1"),
            dst_ip: ip("10.0.0.2"),
            start_uptime_ms: Some(90_000),
            end_uptime_ms: Some(100_500), // a little after the header's uptime
            ..Fields::default()
        };
        let Mapped::Events(ev) = map_record(&f, &H, ip("192.0.2.1"), 0) else {
            panic!()
        };
        let Event::Flow(fl) = &ev[0] else { panic!() };
        assert_eq!(fl.time, (1_700_000_000_000 - 10_000) * 1000);
        assert_eq!(fl.end_time, Some((1_700_000_000_000 + 500) * 1000));
        assert_eq!(fl.exporter, ip("192.0.2.1"));
        assert_eq!(ev.len(), 1, "no post-NAT source, no mapping event");
    }

    #[test]
    fn nsel_events() {
        let base = Fields {
            protocol: Some(6),
            src_ip: ip("192.168.0.1"),
            src_port: Some(5000),
            dst_ip: ip("192.0.2.80"),
            dst_port: Some(80),
            post_src_ip: ip("203.0.113.1"),
            post_src_port: Some(7000),
            observation_ms: Some(1_700_000_000_000),
            ..Fields::default()
        };
        let create = nat(map_record(
            &Fields {
                fw_event: Some(1),
                ..base.clone()
            },
            &H,
            None,
            0,
        ));
        assert_eq!(create.event, Some(NatEventKind::SessionCreate));
        // A teardown with no event stamp ends the mapping when its flow ended, not at its start
        // (which would close it before the traffic it carried); its create, at the start.
        let unstamped = Fields {
            observation_ms: None,
            start: Some(1_700_000_000_000_000),
            end: Some(1_700_000_090_000_000),
            ..base.clone()
        };
        for (code, kind, time) in [
            (1, NatEventKind::SessionCreate, 1_700_000_000_000_000),
            (2, NatEventKind::SessionDelete, 1_700_000_090_000_000),
        ] {
            let row = nat(map_record(
                &Fields {
                    fw_event: Some(code),
                    ..unstamped.clone()
                },
                &H,
                None,
                0,
            ));
            assert_eq!((row.event, row.time), (Some(kind), time));
        }
        let Mapped::Events(ev) = map_record(
            &Fields {
                fw_event: Some(3),
                fw_ext_event: Some(1001),
                ..base.clone()
            },
            &H,
            None,
            0,
        ) else {
            panic!()
        };
        let Event::Firewall(fw) = &ev[0] else {
            panic!()
        };
        assert_eq!(fw.action, FirewallAction::Deny);
        assert_eq!(fw.rule.as_deref(), Some("ext 1001"));
        // Created without translation — no xlate fields, or xlate fields that repeat the real
        // source (ASA): a flow, and no NAT row beside it.
        for post_src_ip in [None, base.src_ip] {
            let Mapped::Events(ev) = map_record(
                &Fields {
                    fw_event: Some(1),
                    post_src_ip,
                    post_src_port: base.src_port,
                    ..base.clone()
                },
                &H,
                None,
                0,
            ) else {
                panic!()
            };
            assert!(matches!(ev.as_slice(), [Event::Flow(_)]), "{ev:?}");
        }
        // The same address with another port is a translation (PAT on the host's address).
        let same_ip = nat(map_record(
            &Fields {
                fw_event: Some(1),
                post_src_ip: base.src_ip,
                ..base
            },
            &H,
            None,
            0,
        ));
        assert_eq!(same_ip.x_port, Some(7000));
    }
}
