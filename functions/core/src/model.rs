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
    /// fields, whole-session records): evidence of an interval without create/delete events.
    /// Without `end_time`, a sighting (a session start log, a listing line, a packet log line):
    /// held at `time`, its end not known.
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
    /// End of an observed interval (MappingObserved; None for a sighting, whose end is not
    /// known) or the device's session end time.
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

/// One HTTP request as a web server's access log records it (nginx, Apache httpd). Text fields
/// are kept as logged (with the server's own escapes), so a row matches the log byte for byte.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HttpAccess {
    pub time: Micros,
    /// "nginx" or "apache" when known (the format was named, or the syslog tag said so).
    pub server: Option<&'static str>,
    /// Apache `%v` (vhost_combined): the virtual host that served the request.
    pub vhost: Option<String>,
    /// Apache `%p` (vhost_combined): the server port.
    pub server_port: Option<u16>,
    pub client_ip: Option<IpAddr>,
    /// Only when the log writes the client as `address:port`.
    pub client_port: Option<u16>,
    /// Authenticated user (`%u` / `$remote_user`).
    pub user: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// `HTTP/1.1`, …; None for HTTP/0.9 request lines.
    pub protocol: Option<String>,
    /// The request line as logged, when it could not be split into method, path and protocol
    /// (what a scanner or a TLS client on a plain port sends; the server answered 4xx).
    pub request: Option<String>,
    pub status: Option<u16>,
    /// Response bytes (`%b` / `%O` / `$body_bytes_sent`).
    pub bytes: Option<u64>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// nginx `main`: `$http_x_forwarded_for`.
    pub forwarded_for: Option<String>,
    /// nginx `$request_time`, in milliseconds.
    pub request_time_ms: Option<u64>,
    /// nginx `$upstream_response_time` (the first upstream's), in milliseconds.
    pub upstream_time_ms: Option<u64>,
}

/// One Postfix log message (smtpd, cleanup, qmgr, smtp, …). Every message of a Postfix program
/// becomes a row; `event` says which kind it was and the fields it names are filled.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MailEvent {
    pub time: Micros,
    /// The syslog tag: `postfix/smtpd`, `postfix-incoming/smtpd`, ….
    pub process: Option<String>,
    pub pid: Option<u32>,
    /// Queue id, or `NOQUEUE` for a message rejected before it got one.
    pub queue_id: Option<String>,
    /// connect, disconnect, client, reject, lost_connection, warning, message_id, queued,
    /// removed, pickup, delivery, other.
    pub event: &'static str,
    pub client_host: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub client_port: Option<u16>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub orig_to: Option<String>,
    pub relay_host: Option<String>,
    pub relay_ip: Option<IpAddr>,
    pub relay_port: Option<u16>,
    /// sent, deferred, bounced, expired, … (delivery); reject for rejections.
    pub status: Option<String>,
    /// Enhanced status code (RFC 3463), e.g. `2.0.0`.
    pub dsn: Option<String>,
    pub delay_ms: Option<u64>,
    pub size: Option<u64>,
    pub nrcpt: Option<u32>,
    pub message_id: Option<String>,
    pub sasl_username: Option<String>,
    pub helo: Option<String>,
    /// The remote server's reply (delivery) or the rejection text.
    pub response: Option<String>,
    /// The message text after the queue id, as logged.
    pub message: String,
}

/// One sshd log message. Every sshd message becomes a row; `event` says which kind it was.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AuthEvent {
    pub time: Micros,
    /// The syslog tag: `sshd`, `sshd-session`.
    pub process: Option<String>,
    pub pid: Option<u32>,
    /// accepted, failed, postponed, partial, invalid_user, max_auth_tries, connection,
    /// disconnected, connection_closed, connection_reset, received_disconnect,
    /// no_identification, other.
    pub event: &'static str,
    /// success (Accepted …) or failure (Failed …); None for other messages.
    pub result: Option<&'static str>,
    /// password, publickey, keyboard-interactive/pam, none, hostbased, gssapi-with-mic.
    pub method: Option<String>,
    pub user: Option<String>,
    /// invalid (no such account) or authenticating (not yet authenticated), as sshd says.
    pub user_status: Option<&'static str>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    /// The key after `ssh2:` (`RSA SHA256:…`) of publickey messages.
    pub key: Option<String>,
    /// N of syslog's "message repeated N times: [ … ]"; None for a single message.
    pub repeats: Option<u32>,
    /// The message text, as logged.
    pub message: String,
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
    // The log-aggregation events are boxed: they are several times the size of a NAT event,
    // and every `Event` (and every lake `Row`) is as large as its largest variant, which made
    // moving and scanning NAT rows cost memory bandwidth for fields they never have.
    #[serde(rename = "http_access")]
    Http(Box<HttpAccess>),
    #[serde(rename = "mail")]
    Mail(Box<MailEvent>),
    #[serde(rename = "auth")]
    Auth(Box<AuthEvent>),
}

impl Event {
    pub fn time(&self) -> Micros {
        match self {
            Event::Nat(e) => e.time,
            Event::Flow(e) => e.time,
            Event::Firewall(e) => e.time,
            Event::Http(e) => e.time,
            Event::Mail(e) => e.time,
            Event::Auth(e) => e.time,
        }
    }

    pub fn set_time(&mut self, t: Micros) {
        match self {
            Event::Nat(e) => e.time = t,
            Event::Flow(e) => e.time = t,
            Event::Firewall(e) => e.time = t,
            Event::Http(e) => e.time = t,
            Event::Mail(e) => e.time = t,
            Event::Auth(e) => e.time = t,
        }
    }

    pub fn table(&self) -> Table {
        match self {
            Event::Nat(_) => Table::NatEvents,
            Event::Flow(_) => Table::Flows,
            Event::Firewall(_) => Table::Firewall,
            Event::Http(_) => Table::HttpAccess,
            Event::Mail(_) => Table::Mail,
            Event::Auth(_) => Table::Auth,
        }
    }

    /// The address the lake partitions this event by: the public side where there is one.
    pub fn partition_ip(&self) -> Option<IpAddr> {
        match self {
            Event::Nat(e) => e.x_ip,
            Event::Flow(e) => e.post_nat_src_ip.or(e.src_ip),
            Event::Firewall(e) => e.src_ip,
            // Log-aggregation tables go by the remote party's address: the client of a web
            // request or an SMTP session, the source of an SSH login. That is the address an
            // abuse report names, and behind a CGNAT it is the public address `nat_events`
            // partitions by, so the request and the mapping that explains it share an `x_net`
            // and one narrow listing finds both. Postfix messages without a client (qmgr,
            // cleanup, deliveries) go to `x_net=none`.
            Event::Http(e) => e.client_ip,
            Event::Mail(e) => e.client_ip,
            Event::Auth(e) => e.src_ip,
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
    /// Web server access logs (nginx, Apache httpd).
    HttpAccess,
    /// Postfix mail logs.
    Mail,
    /// sshd authentication logs.
    Auth,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::NatEvents,
        Table::Flows,
        Table::Firewall,
        Table::Rejects,
        Table::NatCarry,
        Table::HttpAccess,
        Table::Mail,
        Table::Auth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::NatEvents => "nat_events",
            Table::Flows => "flows",
            Table::Firewall => "firewall",
            Table::Rejects => "rejects",
            Table::NatCarry => "nat_carry",
            Table::HttpAccess => "http_access",
            Table::Mail => "mail",
            Table::Auth => "auth",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Text that many rows hold one copy of (a raw object's key, a device's name).
///
/// Counted without atomics: rows are made, written and dropped on one thread (normalize turns
/// an object into rows and files inside one job), and an atomic count on every row's clone and
/// drop cost ~2 % of normalize's CPU (seven interleaved pairs, bench/README.md). The price:
/// rows are not `Send`, so code that wants them on another thread must say so to the compiler.
pub type SharedStr = std::rc::Rc<str>;

/// Where a row came from: the raw object and the record's index in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// Shared by every row of one raw object (a copy per row was a visible share of normalize).
    #[serde(serialize_with = "serialize_str")]
    pub raw_key: SharedStr,
    pub raw_record: u64,
}

fn serialize_str<S: serde::Serializer>(v: &SharedStr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn serialize_opt_str<S: serde::Serializer>(v: &Option<SharedStr>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().serialize(s)
}

/// Fields every row carries besides the event itself, filled by the normalizer from the raw
/// record and the syslog envelope.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Envelope {
    /// When the relay received the record.
    pub recv_time: Micros,
    /// The device: syslog HOSTNAME, else the sender's address. Shared: an object's records
    /// nearly all name one device, and a string of its own for every row was an allocation
    /// per row.
    #[serde(serialize_with = "serialize_opt_str")]
    pub device: Option<SharedStr>,
    /// The parser that produced the event (`conntrack`, `goflow2`, …).
    pub format: &'static str,
    /// Subscriber id from enrichment, when known.
    pub subscriber: Option<String>,
    /// What the enrichment sources (IPAM, GeoIP/ASN, Cloud Foundry) added; empty without them.
    #[serde(flatten)]
    pub enrichment: Enriched,
}

/// A row's [`Enrichment`], held apart from the row: reads see the empty one when nothing was
/// added, and the first write makes room. Kept inline it made every row 264 bytes larger
/// (576 instead of 320) for fields most rows never have — bytes each row pays for when it is
/// moved into place, read column by column by the writer, and dropped.
#[derive(Debug, Clone, Default)]
pub struct Enriched(Option<Box<Enrichment>>);

/// The enrichment of a row that has none.
static NO_ENRICHMENT: Enrichment = Enrichment {
    site: None,
    prefix: None,
    role: None,
    dst_asn: None,
    dst_as_org: None,
    dst_country: None,
    cf: None,
};

impl std::ops::Deref for Enriched {
    type Target = Enrichment;
    fn deref(&self) -> &Enrichment {
        self.0.as_deref().unwrap_or(&NO_ENRICHMENT)
    }
}

/// Writing a field gives the row its own enrichment (reads through [`Deref`] never do).
///
/// [`Deref`]: std::ops::Deref
impl std::ops::DerefMut for Enriched {
    fn deref_mut(&mut self) -> &mut Enrichment {
        self.0.get_or_insert_with(Box::default)
    }
}

/// Equal when what they hold is equal: an enrichment written empty equals none.
impl PartialEq for Enriched {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// As the fields themselves (flattened into the row: every key, null when absent).
impl Serialize for Enriched {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A row's enrichment held apart reads as empty until written, compares by what it holds,
    /// and serializes flattened into the row with every key (null when absent), as when it was
    /// held inline.
    #[test]
    fn enrichment_reads_empty_until_written() {
        let mut row =
            crate::testing::nat_row(1, NatEventKind::SessionCreate, "10.0.0.1", 1, "k", 0);
        assert_eq!(row.envelope.enrichment.site, None);
        let json = serde_json::to_value(&row).unwrap();
        for key in [
            "site",
            "prefix",
            "role",
            "dst_asn",
            "dst_as_org",
            "dst_country",
            "cf",
        ] {
            assert_eq!(
                json.get(key),
                Some(&serde_json::Value::Null),
                "{key}: {json}"
            );
        }
        let plain = row.clone();
        row.envelope.enrichment.site = None;
        assert_eq!(row, plain, "written empty equals none");
        row.envelope.enrichment.site = Some("ams-1".into());
        row.envelope.enrichment.dst_asn = Some(64500);
        assert_ne!(row, plain);
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(
            (json["site"].as_str(), json["dst_asn"].as_u64()),
            (Some("ams-1"), Some(64500))
        );
        assert_eq!(json["device"], "cgn1");
    }
}
