//! Rows for tests of the lake and its functions (feature `testing`; always on in this crate's
//! own tests).

use crate::model::{Envelope, Event, Micros, NatEvent, NatEventKind, Provenance, Row};

/// A TCP NAT event of device `cgn1` on public 198.51.100.7, inside port 40000, to
/// 203.0.113.80:443, with its provenance.
pub fn nat_row(
    t: Micros,
    kind: NatEventKind,
    inside: &str,
    x_port: u16,
    raw_key: &str,
    raw_record: u64,
) -> Row {
    Row {
        event: Event::Nat(NatEvent {
            time: t,
            event: Some(kind),
            protocol: Some(6),
            src_ip: inside.parse().ok(),
            src_port: Some(40000),
            x_ip: "198.51.100.7".parse().ok(),
            x_port: Some(x_port),
            dst_ip: "203.0.113.80".parse().ok(),
            dst_port: Some(443),
            ..Default::default()
        }),
        envelope: Envelope {
            recv_time: t,
            device: Some("cgn1".into()),
            format: "test",
            ..Default::default()
        },
        provenance: Provenance {
            raw_key: raw_key.into(),
            raw_record,
        },
    }
}
