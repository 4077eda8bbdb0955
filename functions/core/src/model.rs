//! The typed event model at the centre of natlake. Parsers produce these; the lake stores them.
//! Column-by-column documentation lives in `docs/schema.md`; keep the two in step.

use std::net::IpAddr;

use serde::Serialize;

/// Microseconds since the Unix epoch, UTC. Every time in the lake has this unit.
pub type Micros = i64;

/// What happened to a NAT mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum NatEventKind {
    /// A session / port mapping was created (cgn-ec "A").
    SessionCreate,
    /// A session / port mapping was deleted (cgn-ec "D").
    SessionDelete,
    /// A block of public ports was allocated to an inside address.
    PortBlockAlloc,
    /// A port block was released.
    PortBlockRelease,
    /// An interim record: the port block is still held.
    PortBlockInterim,
    /// A public address was bound to an inside address (1:1 / address pooling).
    AddressBind,
    /// The address binding ended.
    AddressRelease,
    /// The mapping was seen in use between `time` and `end_time` (flow records with post-NAT
    /// fields): evidence of an interval without create/delete events.
    MappingObserved,
}

impl NatEventKind {
    pub const ALL: [NatEventKind; 8] = [
        Self::SessionCreate,
        Self::SessionDelete,
        Self::PortBlockAlloc,
        Self::PortBlockRelease,
        Self::PortBlockInterim,
        Self::AddressBind,
        Self::AddressRelease,
        Self::MappingObserved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreate => "session_create",
            Self::SessionDelete => "session_delete",
            Self::PortBlockAlloc => "port_block_alloc",
            Self::PortBlockRelease => "port_block_release",
            Self::PortBlockInterim => "port_block_interim",
            Self::AddressBind => "address_bind",
            Self::AddressRelease => "address_release",
            Self::MappingObserved => "mapping_observed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// True for the events that open an interval.
    pub fn opens(self) -> bool {
        matches!(
            self,
            Self::SessionCreate | Self::PortBlockAlloc | Self::AddressBind
        )
    }

    /// True for the events that close an interval.
    pub fn closes(self) -> bool {
        matches!(
            self,
            Self::SessionDelete | Self::PortBlockRelease | Self::AddressRelease
        )
    }

    /// The cgn-ec event letter: "A" for allocations, "D" for deletions, "I" for interim/observed.
    pub fn cgn_ec_letter(self) -> &'static str {
        if self.opens() {
            "A"
        } else if self.closes() {
            "D"
        } else {
            "I"
        }
    }
}

/// A NAT mapping event. `src_*` is the inside (private) side, `x_*` the translated public side.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NatEvent {
    pub time: Micros,
    pub event: Option<NatEventKind>,
    /// IANA protocol number (6 TCP, 17 UDP, 1 ICMP, …); None for address-level events.
    pub protocol: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    /// Public (post-NAT) address: the partition key of the lake.
    pub x_ip: Option<IpAddr>,
    pub x_port: Option<u16>,
    /// Last port of a port block (inclusive); None for single-port mappings.
    pub x_port_end: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    /// VRF / routing instance as the device names it.
    pub vrf: Option<String>,
    /// "out" (inside → outside) or "in".
    pub direction: Option<&'static str>,
    /// End of an observed interval (MappingObserved) or the device's session end time.
    pub end_time: Option<Micros>,
    pub bytes_out: Option<u64>,
    pub bytes_in: Option<u64>,
    pub packets_out: Option<u64>,
    pub packets_in: Option<u64>,
}

/// A flow record (NetFlow / IPFIX / goflow2 / pmacct), with post-NAT fields when exported.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct FlowRecord {
    pub time: Micros,
    pub end_time: Option<Micros>,
    pub protocol: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub post_nat_src_ip: Option<IpAddr>,
    pub post_nat_src_port: Option<u16>,
    pub post_nat_dst_ip: Option<IpAddr>,
    pub post_nat_dst_port: Option<u16>,
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    pub in_if: Option<u32>,
    pub out_if: Option<u32>,
    pub sampling_rate: Option<u64>,
    /// The exporter address the record names (goflow2 `sampler_address`).
    pub exporter: Option<IpAddr>,
    pub vrf: Option<String>,
}

/// What a packet filter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallAction {
    Allow,
    Deny,
    /// Logged without a verdict the line states.
    Log,
}

impl FirewallAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Log => "log",
        }
    }
}

/// A firewall / packet-filter log event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirewallEvent {
    pub time: Micros,
    pub action: FirewallAction,
    /// The rule or log prefix (iptables `--log-prefix`, e.g. Cloud Foundry `OK_<container>`).
    pub rule: Option<String>,
    pub protocol: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub in_if: Option<String>,
    pub out_if: Option<String>,
    pub length: Option<u32>,
    pub vrf: Option<String>,
}

/// One normalized event, before provenance and envelope fields are attached.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub enum Event {
    #[serde(rename = "nat_events")]
    Nat(NatEvent),
    #[serde(rename = "flows")]
    Flow(FlowRecord),
    #[serde(rename = "firewall")]
    Firewall(FirewallEvent),
}

impl Event {
    pub fn time(&self) -> Micros {
        match self {
            Event::Nat(e) => e.time,
            Event::Flow(e) => e.time,
            Event::Firewall(e) => e.time,
        }
    }

    pub fn set_time(&mut self, t: Micros) {
        match self {
            Event::Nat(e) => e.time = t,
            Event::Flow(e) => e.time = t,
            Event::Firewall(e) => e.time = t,
        }
    }

    pub fn table(&self) -> Table {
        match self {
            Event::Nat(_) => Table::NatEvents,
            Event::Flow(_) => Table::Flows,
            Event::Firewall(_) => Table::Firewall,
        }
    }

    /// The address the lake partitions this event by: the public side where there is one.
    pub fn partition_ip(&self) -> Option<IpAddr> {
        match self {
            Event::Nat(e) => e.x_ip,
            Event::Flow(e) => e.post_nat_src_ip.or(e.src_ip),
            Event::Firewall(e) => e.src_ip,
        }
    }
}

/// The lake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    NatEvents,
    Flows,
    Firewall,
    Rejects,
    /// The `nat_events` rows that opened the mappings still open when an hour began, written by
    /// the compact function so a lookup reads one hour plus this carry instead of a day.
    NatCarry,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::NatEvents,
        Table::Flows,
        Table::Firewall,
        Table::Rejects,
        Table::NatCarry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::NatEvents => "nat_events",
            Table::Flows => "flows",
            Table::Firewall => "firewall",
            Table::Rejects => "rejects",
            Table::NatCarry => "nat_carry",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a row came from: the raw object and the record's index in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub raw_key: String,
    pub raw_record: u64,
}

/// Fields every row carries besides the event itself, filled by the normalizer from the raw
/// record and the syslog envelope.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Envelope {
    /// When the relay received the record.
    pub recv_time: Micros,
    /// The device: syslog HOSTNAME, else the sender's address.
    pub device: Option<String>,
    /// The parser that produced the event (`conntrack`, `goflow2`, …).
    pub format: &'static str,
    /// Subscriber id from enrichment, when known.
    pub subscriber: Option<String>,
    /// What the enrichment sources (IPAM, GeoIP/ASN, Cloud Foundry) added; empty without them.
    #[serde(flatten)]
    pub enrichment: Enrichment,
}

/// Context added by the normalizer's enrichment sources (`crate::enrich`), all optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Enrichment {
    /// Site of the longest prefix holding the inside address.
    pub site: Option<String>,
    /// That prefix itself.
    pub prefix: Option<ipnet::IpNet>,
    /// Its role (IPAM role: customer, infrastructure, …).
    pub role: Option<String>,
    /// Destination's autonomous system number (MMDB ASN database).
    pub dst_asn: Option<u32>,
    pub dst_as_org: Option<String>,
    /// Destination's country, ISO 3166-1 alpha-2 (MMDB country/city database).
    pub dst_country: Option<String>,
    /// Cloud Foundry container traffic (firewall rows with `OK_` / `DENY_` prefixes).
    pub cf: Option<CfTraffic>,
}

/// The Cloud Foundry forwarder's (silk-release iptables-logger) view of a firewall event.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CfTraffic {
    /// `ingress-allowed`, `ingress-denied`, `egress-allowed` or `egress-denied`.
    pub event: &'static str,
    /// The app's container: the destination for ingress, the source for egress. None when no
    /// container metadata matched the address.
    pub container_id: Option<String>,
    pub app_guid: Option<String>,
    pub app_name: Option<String>,
    pub space_guid: Option<String>,
    pub organization_guid: Option<String>,
}

/// A parsed, enveloped event ready for the lake.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub event: Event,
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// A record that could not be normalized, kept whole with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reject {
    pub recv_time: Micros,
    pub reason: String,
    /// The parser that tried, or "auto" when no format matched.
    pub format: String,
    pub input_kind: String,
    pub peer: Option<String>,
    pub payload: Vec<u8>,
    pub provenance: Provenance,
}

/// IANA protocol number from a name or number as logs spell it (no allocation: this is on the
/// hot path of every conntrack and iptables line).
pub fn protocol_number(name: &str) -> Option<u8> {
    const NAMES: [(&str, u8); 12] = [
        ("tcp", 6),
        ("udp", 17),
        ("icmp", 1),
        ("icmpv6", 58),
        ("ipv6-icmp", 58),
        ("icmp6", 58),
        ("gre", 47),
        ("esp", 50),
        ("ah", 51),
        ("sctp", 132),
        ("udplite", 136),
        ("igmp", 2),
    ];
    let n = name.trim();
    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
        return n.parse::<u8>().ok();
    }
    NAMES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(n))
        .map(|(_, v)| *v)
}
