//! `mix`: a generated day of mixed-vendor NAT, flow and firewall logs for the conversion
//! benchmark (bench/normalize.sh), written as the relay stores them (one raw object per input
//! kind per 60 s of event time), plus the rows the lake should hold as JSON lines and CSV for the
//! DuckDB side-by-side.
//!
//! Subscribers sit behind six devices; each owns a share of the public addresses (in its own
//! /24 of 198.18.0.0/15, the benchmarking range) and so a share of the sessions:
//!
//! | device | share | raw kind | per session |
//! |---|---|---|---|
//! | Linux conntrack (netlink) | 40 % | conntrack_netlink | NEW + DESTROY lines |
//! | Juniper SRX, RT_FLOW (RFC 5424 structured data) | 25 % | syslog_udp | SESSION_CREATE + SESSION_CLOSE |
//! | Juniper MX, JSERVICES (BSD syslog) | 10 % | syslog_udp | SESSION_OPEN + SESSION_CLOSE |
//! | Cisco ASA (305011 / 305012) | 10 % | syslog_udp | Built + Teardown translation |
//! | goflow2 JSON with post-NAT fields | 10 % | json_lines | one flow record (a `flows` row and a `mapping_observed` row) |
//! | iptables LOG on a border firewall behind the CGN (firewall) | 5 % | syslog_udp | one DROP line: outbound SMTP (port 25) blocked, as ISPs do; it sees the public address |
//!
//! Destinations: 70 % from 2,000 popular addresses, the rest anywhere; ports 443/80/53/123/other.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use natlake_raw::{BatchHeader, BatchWriter, InputKind, Record};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SEC: i64 = 1_000_000;
const INSIDE_BASE: u32 = u32::from_be_bytes([100, 64, 0, 1]);
const RELAY: &str = "bench-edge-1";

#[derive(clap::Args)]
pub struct MixArgs {
    /// Store URL the raw objects go to (file:///… or s3://…).
    #[arg(long)]
    store: String,
    /// The rows the lake should hold, as JSON lines (for DuckDB's read_json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The same rows as CSV with a header (for DuckDB's read_csv).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Every record's payload as written into the raw objects, one per line: the input itself,
    /// for a DuckDB run that has to parse the logs as natlake does.
    #[arg(long)]
    lines: Option<PathBuf>,
    /// Close a raw object at this many uncompressed bytes, as the relay does (its default);
    /// objects are also closed every `batch_age` seconds of event time. A busy CGNAT fills them
    /// by size.
    #[arg(long, default_value_t = 8 << 20)]
    batch_bytes: u64,
    /// Close a raw object after this many seconds of event time (the relay's `batch.max_age`,
    /// default 60). The generated day is ~108 events/s; a longer age gives the objects a busier
    /// relay fills by size.
    #[arg(long, default_value_t = 60)]
    batch_age: i64,
    #[command(flatten)]
    day: crate::DayArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Device {
    Conntrack,
    Srx,
    Jservices,
    Asa,
    Goflow,
    Iptables,
}

impl Device {
    /// (device, share in twentieths of the public addresses)
    const SHARES: [(Device, u32); 6] = [
        (Device::Conntrack, 8),
        (Device::Srx, 5),
        (Device::Jservices, 2),
        (Device::Asa, 2),
        (Device::Goflow, 2),
        (Device::Iptables, 1),
    ];

    fn index(self) -> u32 {
        Self::SHARES
            .iter()
            .position(|(d, _)| *d == self)
            .unwrap_or(0) as u32
    }

    fn kind(self) -> InputKind {
        match self {
            Device::Conntrack => InputKind::ConntrackNetlink,
            Device::Goflow => InputKind::JsonLines,
            _ => InputKind::SyslogUdp,
        }
    }

    /// The sender address the relay records (None: netlink has no peer).
    fn peer(self) -> Option<std::net::SocketAddr> {
        let last = 10 + self.index() as u8;
        match self {
            Device::Conntrack => None,
            Device::Goflow => Some((Ipv4Addr::new(192, 0, 2, last), 8125).into()),
            _ => Some((Ipv4Addr::new(192, 0, 2, last), 514).into()),
        }
    }

    /// Host name in the lines (what the `device` column holds).
    fn host(self) -> Option<&'static str> {
        match self {
            Device::Conntrack => None,
            Device::Srx => Some("srx1"),
            Device::Jservices => Some("mx1"),
            Device::Asa => None, // the ASA's header carries no host name: the peer address
            Device::Goflow => None,
            Device::Iptables => Some("fw1"),
        }
    }

    fn format(self) -> &'static str {
        match self {
            Device::Conntrack => "conntrack",
            Device::Srx | Device::Jservices => "juniper",
            Device::Asa => "cisco",
            Device::Goflow => "goflow2",
            Device::Iptables => "iptables",
        }
    }

    /// Time precision the device logs, in µs.
    fn precision(self) -> i64 {
        match self {
            Device::Conntrack | Device::Goflow => 1,
            Device::Srx => 1_000,
            Device::Jservices | Device::Asa | Device::Iptables => SEC,
        }
    }
}

/// Device of a public address index (0..n): each device owns a contiguous share.
fn device_of(i: u32, n: u32) -> Device {
    let twentieth = i * 20 / n.max(1);
    let mut acc = 0;
    for (d, share) in Device::SHARES {
        acc += share;
        if twentieth < acc {
            return d;
        }
    }
    Device::Conntrack
}

/// Public address `i` of `n`: in the device's own /24 of 198.18.0.0/15.
fn public_of(i: u32, n: u32) -> Ipv4Addr {
    let d = device_of(i, n);
    let first = (0..n).find(|&j| device_of(j, n) == d).unwrap_or(0);
    Ipv4Addr::new(198, 18, d.index() as u8, (i - first + 1) as u8)
}

#[derive(Clone, Copy)]
struct Session {
    start: i64,
    end: i64,
    proto: u8,
    inside: Ipv4Addr,
    sport: u16,
    public: Ipv4Addr,
    xport: u16,
    dst: Ipv4Addr,
    dport: u16,
    device: Device,
    id: u64,
}

impl Session {
    fn packets(&self) -> (u64, u64) {
        let secs = ((self.end - self.start) / SEC).max(0) as u64;
        (secs + 2, secs + 1)
    }
    fn bytes(&self) -> (u64, u64) {
        let (po, pi) = self.packets();
        (po * 120, pi * 900)
    }
}

fn duration(rng: &mut SmallRng) -> i64 {
    let r: f64 = rng.random();
    let secs = if r < 0.5 {
        rng.random_range(0.05..10.0)
    } else if r < 0.9 {
        rng.random_range(10.0..300.0)
    } else {
        rng.random_range(300.0..10_800.0)
    };
    (secs * 1e6) as i64
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Civil {
    y: i64,
    mo: u32,
    d: u32,
    h: i64,
    mi: i64,
    s: i64,
    us: i64,
}

fn civil(t: i64) -> Civil {
    let secs = t.div_euclid(SEC);
    let (y, mo, d) = natlake_raw::key::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    Civil {
        y,
        mo,
        d,
        h: s / 3600,
        mi: s / 60 % 60,
        s: s % 60,
        us: t.rem_euclid(SEC),
    }
}

/// RFC 3339 with microseconds (what DuckDB reads as a timestamp).
fn iso(t: i64, out: &mut String) {
    let c = civil(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        c.y, c.mo, c.d, c.h, c.mi, c.s, c.us
    );
}

/// `Nov  1 00:00:01` (RFC 3164).
fn bsd(t: i64, out: &mut String) {
    let c = civil(t);
    let _ = write!(
        out,
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(c.mo - 1) as usize],
        c.d,
        c.h,
        c.mi,
        c.s
    );
}

fn proto_name(p: u8) -> &'static str {
    if p == 6 { "tcp" } else { "udp" }
}

/// The device's log line for a session event; `new` = create / open.
fn render(s: &Session, new: bool, t: i64, out: &mut String) {
    let (po, pi) = s.packets();
    let (bo, bi) = s.bytes();
    match s.device {
        Device::Conntrack => {
            let _ = write!(
                out,
                "[{}.{:06}]\t{:>9} ipv4     2 {:<8} {} ",
                t.div_euclid(SEC),
                t.rem_euclid(SEC),
                if new { "[NEW]" } else { "[DESTROY]" },
                proto_name(s.proto),
                s.proto
            );
            if new {
                let _ = write!(out, "{} ", if s.proto == 6 { 120 } else { 30 });
                if s.proto == 6 {
                    out.push_str("SYN_SENT ");
                }
            }
            let _ = write!(
                out,
                "src={} dst={} sport={} dport={} ",
                s.inside, s.dst, s.sport, s.dport
            );
            if new {
                out.push_str("[UNREPLIED] ");
            } else {
                let _ = write!(out, "packets={po} bytes={bo} ");
            }
            let _ = write!(
                out,
                "src={} dst={} sport={} dport={}",
                s.dst, s.public, s.dport, s.xport
            );
            if !new {
                let _ = write!(out, " packets={pi} bytes={bi} [ASSURED]");
            }
        }
        Device::Srx => {
            out.push_str("<14>1 ");
            // SRX stamps milliseconds.
            let c = civil(t);
            let _ = write!(
                out,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z srx1 RT_FLOW - ",
                c.y,
                c.mo,
                c.d,
                c.h,
                c.mi,
                c.s,
                c.us / 1000
            );
            let service = match s.dport {
                443 => "junos-https",
                80 => "junos-http",
                53 => "junos-dns-udp",
                123 => "junos-ntp",
                _ => "None",
            };
            if new {
                out.push_str("RT_FLOW_SESSION_CREATE [junos@2636.1.1.1.2.40 ");
            } else {
                out.push_str("RT_FLOW_SESSION_CLOSE [junos@2636.1.1.1.2.40 reason=\"");
                out.push_str(if s.proto == 6 {
                    "TCP FIN"
                } else {
                    "idle Timeout"
                });
                out.push_str("\" ");
            }
            let _ = write!(
                out,
                "source-address=\"{}\" source-port=\"{}\" destination-address=\"{}\" destination-port=\"{}\" connection-tag=\"0\" service-name=\"{service}\" nat-source-address=\"{}\" nat-source-port=\"{}\" nat-destination-address=\"{}\" nat-destination-port=\"{}\" nat-connection-tag=\"0\" src-nat-rule-type=\"source rule\" src-nat-rule-name=\"cgn-pool\" dst-nat-rule-type=\"N/A\" dst-nat-rule-name=\"N/A\" protocol-id=\"{}\" policy-name=\"subscribers-out\" source-zone-name=\"trust\" destination-zone-name=\"untrust\" session-id=\"{}\" ",
                s.inside, s.sport, s.dst, s.dport, s.public, s.xport, s.dst, s.dport, s.proto, s.id
            );
            if !new {
                let _ = write!(
                    out,
                    "packets-from-client=\"{po}\" bytes-from-client=\"{bo}\" packets-from-server=\"{pi}\" bytes-from-server=\"{bi}\" elapsed-time=\"{}\" ",
                    (s.end - s.start) / SEC
                );
            }
            out.push_str("username=\"N/A\" roles=\"N/A\" packet-incoming-interface=\"ge-0/0/1.0\" application=\"UNKNOWN\" nested-application=\"UNKNOWN\" encrypted=\"UNKNOWN\"]");
        }
        Device::Jservices => {
            out.push_str("<14>");
            bsd(t, out);
            let _ = write!(
                out,
                " mx1 {{cgn-sset1}}[jservices-nat]: JSERVICES_SESSION_{}: application:none, xe-0/0/0.0 {}:{} [{}:{}] -> {}:{} ({})",
                if new { "OPEN" } else { "CLOSE" },
                s.inside,
                s.sport,
                s.public,
                s.xport,
                s.dst,
                s.dport,
                if s.proto == 6 { "TCP" } else { "UDP" }
            );
        }
        Device::Asa => {
            let c = civil(t);
            let _ = write!(
                out,
                "<166>{} {:02} {:04} {:02}:{:02}:{:02}: ",
                MONTHS[(c.mo - 1) as usize],
                c.d,
                c.y,
                c.h,
                c.mi,
                c.s
            );
            let p = if s.proto == 6 { "TCP" } else { "UDP" };
            if new {
                let _ = write!(
                    out,
                    "%ASA-6-305011: Built dynamic {p} translation from inside:{}/{} to outside:{}/{}",
                    s.inside, s.sport, s.public, s.xport
                );
            } else {
                let d = (s.end - s.start) / SEC;
                let _ = write!(
                    out,
                    "%ASA-6-305012: Teardown dynamic {p} translation from inside:{}/{} to outside:{}/{} duration {}:{:02}:{:02}",
                    s.inside,
                    s.sport,
                    s.public,
                    s.xport,
                    d / 3600,
                    d / 60 % 60,
                    d % 60
                );
            }
        }
        Device::Goflow => {
            let _ = write!(
                out,
                "{{\"type\":\"IPFIX\",\"time_received_ns\":{},\"sequence_num\":{},\"sampling_rate\":0,\"sampler_address\":\"192.0.2.14\",\"time_flow_start_ns\":{},\"time_flow_end_ns\":{},\"bytes\":{},\"packets\":{},\"src_addr\":\"{}\",\"dst_addr\":\"{}\",\"etype\":\"IPv4\",\"proto\":\"{}\",\"src_port\":{},\"dst_port\":{},\"in_if\":2,\"out_if\":3,\"post_nat_src_ipv4_address\":\"{}\",\"post_nat_src_transport_port\":{}}}",
                (s.end + 20_000) * 1000,
                s.id,
                s.start * 1000,
                s.end * 1000,
                bo + bi,
                po + pi,
                s.inside,
                s.dst,
                if s.proto == 6 { "TCP" } else { "UDP" },
                s.sport,
                s.dport,
                s.public,
                s.xport
            );
        }
        Device::Iptables => {
            out.push_str("<4>");
            bsd(t, out);
            let _ = write!(
                out,
                " fw1 kernel: [{}.{:06}] DROP_SMTP IN=eth0 OUT=eth1 MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={} DST={} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=0 DF PROTO={} SPT={} DPT={} ",
                (t / SEC) % 10_000_000,
                t.rem_euclid(SEC),
                s.public,
                s.dst,
                if s.proto == 6 { "TCP" } else { "UDP" },
                s.xport,
                s.dport
            );
            if s.proto == 6 {
                out.push_str("WINDOW=65535 RES=0x00 SYN URGP=0");
            } else {
                out.push_str("LEN=40");
            }
        }
    }
}

/// One raw object being filled: its key and how many records it holds.
struct Open {
    window: i64,
    key: String,
    writer: BatchWriter,
    records: u64,
}

/// Raw objects, one open per input kind, closed every `batch_age` of event time or at
/// `batch_bytes` like the relay.
struct Sinks {
    store: natlake_store::DynStore,
    /// A copy of every payload, newline-terminated (`--lines`).
    lines: Option<BufWriter<std::fs::File>>,
    batch_bytes: u64,
    /// µs.
    batch_age: i64,
    open: HashMap<InputKind, Open>,
    seq: u64,
    objects: u64,
    bytes: u64,
}

impl Sinks {
    /// Appends a record; returns (raw key, record index).
    async fn push(
        &mut self,
        device: Device,
        t: i64,
        payload: &[u8],
    ) -> anyhow::Result<(String, u64)> {
        let kind = device.kind();
        let window = t.div_euclid(self.batch_age);
        if self.open.get(&kind).is_some_and(|o| o.window != window) {
            self.flush(kind).await?;
        }
        if !self.open.contains_key(&kind) {
            self.seq += 1;
            let batch = format!("00000000-0000-7000-8000-{:012x}", self.seq);
            let created_ns = window * self.batch_age * 1000;
            let header = BatchHeader {
                format_version: natlake_raw::VERSION,
                relay_id: RELAY.into(),
                batch_id: batch.clone(),
                kind,
                created_ns,
                labels: Default::default(),
            };
            self.open.insert(
                kind,
                Open {
                    window,
                    key: natlake_raw::key::raw_key(kind, created_ns, RELAY, &batch),
                    writer: BatchWriter::new(&header, 1)?,
                    records: 0,
                },
            );
        }
        if let Some(l) = &mut self.lines {
            l.write_all(payload)?;
            l.write_all(b"\n")?;
        }
        let o = self.open.get_mut(&kind).context("sink just opened")?;
        o.writer.push(&Record {
            recv_ns: (t + 20_000) * 1000, // the relay receives it 20 ms later
            kind,
            flags: 0,
            peer: device.peer(),
            payload: payload.to_vec(),
        })?;
        o.records += 1;
        let at = (o.key.clone(), o.records - 1);
        if o.writer.raw_bytes() >= self.batch_bytes {
            self.flush(kind).await?;
        }
        Ok(at)
    }

    async fn flush(&mut self, kind: InputKind) -> anyhow::Result<()> {
        let Some(o) = self.open.remove(&kind) else {
            return Ok(());
        };
        let bytes = o.writer.finish()?;
        self.bytes += bytes.len() as u64;
        self.objects += 1;
        self.store
            .put(&Path::from(o.key.as_str()), PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing {}", o.key))?;
        Ok(())
    }

    async fn flush_all(&mut self) -> anyhow::Result<()> {
        let kinds: Vec<InputKind> = self.open.keys().copied().collect();
        for k in kinds {
            self.flush(k).await?;
        }
        Ok(())
    }
}

const COLUMNS: &str = "tbl,time,event,protocol,src_ip,src_port,x_ip,x_port,dst_ip,dst_port,end_time,bytes_out,bytes_in,packets_out,packets_in,recv_time,device,format,raw_key,raw_record";

/// (src, src port, public address:port, destination address:port)
type Addrs = (
    Ipv4Addr,
    u16,
    Option<(Ipv4Addr, u16)>,
    Option<(Ipv4Addr, u16)>,
);

/// One expected lake row, for the JSON and CSV files.
struct Expected<'a> {
    table: &'static str,
    time: i64,
    event: Option<&'static str>,
    s: &'a Session,
    addrs: Addrs,
    end_time: Option<i64>,
    /// (bytes out, bytes in, packets out, packets in)
    counters: Option<(u64, Option<u64>, u64, Option<u64>)>,
    recv: i64,
    key: &'a str,
    record: u64,
}

struct Outputs {
    json: Option<BufWriter<std::fs::File>>,
    csv: Option<BufWriter<std::fs::File>>,
    rows: HashMap<&'static str, u64>,
    line: String,
}

impl Outputs {
    fn row(&mut self, e: &Expected) -> anyhow::Result<()> {
        *self.rows.entry(e.table).or_default() += 1;
        let device =
            e.s.device
                .host()
                .map(str::to_string)
                .or_else(|| e.s.device.peer().map(|p| p.ip().to_string()));
        let (src, sport, x, dst) = e.addrs;
        let pair = |v: Option<(Ipv4Addr, u16)>| match v {
            Some((i, p)) => (i.to_string(), p.to_string()),
            None => (String::new(), String::new()),
        };
        let ((xi, xp), (dst, dport)) = (pair(x), pair(dst));
        let (bo, bi, po, pi) = match e.counters {
            Some((a, b, c, d)) => {
                let o = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
                (a.to_string(), o(b), c.to_string(), o(d))
            }
            None => Default::default(),
        };
        let l = &mut self.line;
        let mut time = String::new();
        iso(e.time, &mut time);
        let mut recv = String::new();
        iso(e.recv, &mut recv);
        let mut end = String::new();
        if let Some(t) = e.end_time {
            iso(t, &mut end);
        }
        if let Some(j) = &mut self.json {
            l.clear();
            let q = |v: &str| {
                if v.is_empty() {
                    "null".to_string()
                } else {
                    format!("\"{v}\"")
                }
            };
            let n = |v: &str| {
                if v.is_empty() {
                    "null".to_string()
                } else {
                    v.to_string()
                }
            };
            let _ = write!(
                l,
                "{{\"tbl\":\"{}\",\"time\":\"{time}\",\"event\":{},\"protocol\":{},\"src_ip\":\"{src}\",\"src_port\":{sport},\"x_ip\":{},\"x_port\":{},\"dst_ip\":{},\"dst_port\":{},\"end_time\":{},\"bytes_out\":{},\"bytes_in\":{},\"packets_out\":{},\"packets_in\":{},\"recv_time\":\"{recv}\",\"device\":{},\"format\":\"{}\",\"raw_key\":\"{}\",\"raw_record\":{}}}",
                e.table,
                q(e.event.unwrap_or("")),
                e.s.proto,
                q(&xi),
                n(&xp),
                q(&dst),
                n(&dport),
                q(&end),
                n(&bo),
                n(&bi),
                n(&po),
                n(&pi),
                q(device.as_deref().unwrap_or("")),
                e.s.device.format(),
                e.key,
                e.record
            );
            writeln!(j, "{l}")?;
        }
        if let Some(c) = &mut self.csv {
            writeln!(
                c,
                "{},{time},{},{},{src},{sport},{xi},{xp},{dst},{dport},{end},{bo},{bi},{po},{pi},{recv},{},{},{},{}",
                e.table,
                e.event.unwrap_or(""),
                e.s.proto,
                device.as_deref().unwrap_or(""),
                e.s.device.format(),
                e.key,
                e.record
            )?;
        }
        Ok(())
    }
}

/// Writes a session event's line and its expected rows.
async fn emit(
    sinks: &mut Sinks,
    outs: &mut Outputs,
    s: &Session,
    new: bool,
    buf: &mut String,
) -> anyhow::Result<u64> {
    // goflow2 sends one record when the flow ends; iptables logs the probe once.
    match (s.device, new) {
        (Device::Goflow, true) | (Device::Iptables, false) => return Ok(0),
        _ => {}
    }
    let at = if new { s.start } else { s.end };
    let t = at - at.rem_euclid(s.device.precision());
    buf.clear();
    render(s, new, t, buf);
    let (key, record) = sinks.push(s.device, at, buf.as_bytes()).await?;
    let recv = at + 20_000;
    let (po, pi) = s.packets();
    let (bo, bi) = s.bytes();
    // Cisco's translation messages name no destination.
    let dst = (s.device != Device::Asa).then_some((s.dst, s.dport));
    let nat = (s.inside, s.sport, Some((s.public, s.xport)), dst);
    let mut rows = 0;
    let mut one = |e: Expected| -> anyhow::Result<()> {
        rows += 1;
        outs.row(&e)
    };
    let base = Expected {
        table: "nat_events",
        time: t,
        event: Some(if new {
            "session_create"
        } else {
            "session_delete"
        }),
        s,
        addrs: nat,
        end_time: None,
        counters: None,
        recv,
        key: &key,
        record,
    };
    match s.device {
        Device::Conntrack if !new => one(Expected {
            counters: Some((bo, Some(bi), po, Some(pi))),
            ..base
        })?,
        // A close log's time is the session's end.
        Device::Srx if !new => one(Expected {
            counters: Some((bo, Some(bi), po, Some(pi))),
            end_time: Some(t),
            ..base
        })?,
        Device::Asa if !new => one(Expected {
            end_time: Some(t),
            ..base
        })?,
        Device::Goflow => {
            let flow = Expected {
                table: "flows",
                time: s.start,
                event: None,
                end_time: Some(s.end),
                counters: Some((bo + bi, None, po + pi, None)),
                ..base
            };
            one(flow)?;
            // The flow's totals, as bytes_out / packets_out.
            one(Expected {
                event: Some("mapping_observed"),
                time: s.start,
                end_time: Some(s.end),
                counters: Some((bo + bi, None, po + pi, None)),
                ..base
            })?;
        }
        Device::Iptables => one(Expected {
            table: "firewall",
            event: Some("deny"),
            addrs: (s.public, s.xport, None, Some((s.dst, s.dport))),
            ..base
        })?,
        _ => one(base)?,
    }
    Ok(rows)
}

pub async fn mix(a: MixArgs) -> anyhow::Result<()> {
    if a.day.public_ips < 20 || a.day.public_ips > 1000 || a.day.subscribers == 0 {
        bail!("--public-ips must be 20..=1000 (each device needs one) and --subscribers positive");
    }
    let create = |p: &Option<PathBuf>| -> anyhow::Result<Option<BufWriter<std::fs::File>>> {
        p.as_ref()
            .map(|p| {
                std::fs::File::create(p)
                    .map(|f| BufWriter::with_capacity(1 << 20, f))
                    .with_context(|| format!("creating {}", p.display()))
            })
            .transpose()
    };
    if !(1..=86_400).contains(&a.batch_age) {
        bail!("--batch-age must be 1..=86400 seconds");
    }
    let mut sinks = Sinks {
        store: natlake_store::open(&a.store, &Default::default())?,
        lines: create(&a.lines)?,
        batch_bytes: a.batch_bytes,
        batch_age: a.batch_age * SEC,
        open: HashMap::new(),
        seq: 0,
        objects: 0,
        bytes: 0,
    };
    let mut outs = Outputs {
        json: create(&a.json)?,
        csv: create(&a.csv)?,
        rows: HashMap::new(),
        line: String::with_capacity(512),
    };
    if let Some(c) = &mut outs.csv {
        writeln!(c, "{COLUMNS}")?;
    }
    let mut rng = SmallRng::seed_from_u64(a.day.seed);
    let popular: Vec<Ipv4Addr> = (0..2000)
        .map(|_| Ipv4Addr::from(rng.random_range(0x0100_0000u32..0xdf00_0000)))
        .collect();
    let day_start = a.day.start * SEC;
    let day_end = day_start + i64::from(a.day.hours) * 3600 * SEC;
    let per_hour = (f64::from(a.day.subscribers) * a.day.sessions_per_hour).round() as usize;
    let mut ports: HashMap<(u32, u8, u16), i64> = HashMap::new();
    let mut closes: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let mut open: HashMap<usize, Session> = HashMap::new();
    let mut next_id = 0usize;
    let (mut records, mut rows, mut exhausted) = (0u64, 0u64, 0u64);
    let mut by_device: HashMap<&'static str, u64> = HashMap::new();
    let mut buf = String::with_capacity(1024);
    for h in 0..i64::from(a.day.hours) {
        let hour = day_start + h * 3600 * SEC;
        let mut starts: Vec<i64> = (0..per_hour)
            .map(|_| hour + rng.random_range(0..3600 * SEC))
            .collect();
        starts.sort_unstable();
        for start in starts {
            while let Some(Reverse((end, id))) = closes.peek().copied() {
                if end > start {
                    break;
                }
                closes.pop();
                if let Some(s) = open.remove(&id) {
                    let n = emit(&mut sinks, &mut outs, &s, false, &mut buf).await?;
                    records += u64::from(n > 0);
                    rows += n;
                }
            }
            let sub = rng.random_range(0..a.day.subscribers);
            let pi = sub % a.day.public_ips;
            let public = public_of(pi, a.day.public_ips);
            let device = device_of(pi, a.day.public_ips);
            let r: f64 = rng.random();
            let (proto, dport) = if r < 0.62 {
                (6, 443)
            } else if r < 0.72 {
                (6, 80)
            } else if r < 0.87 {
                (17, 53)
            } else if r < 0.9 {
                (17, 123)
            } else if r < 0.95 {
                (17, 443) // QUIC
            } else {
                (6, rng.random_range(1024..=65535))
            };
            let (proto, dport) = if device == Device::Iptables {
                (6, 25)
            } else {
                (proto, dport)
            };
            let end = start + duration(&mut rng);
            let mut xport = None;
            for _ in 0..64 {
                let p: u16 = rng.random_range(1024..=65535);
                let slot = ports
                    .entry((u32::from(public), proto, p))
                    .or_insert(i64::MIN);
                if *slot <= start {
                    *slot = end;
                    xport = Some(p);
                    break;
                }
            }
            let Some(xport) = xport else {
                exhausted += 1;
                continue;
            };
            let dst = if rng.random_bool(0.7) {
                popular[rng.random_range(0..popular.len())]
            } else {
                Ipv4Addr::from(rng.random_range(0x0100_0000u32..0xdf00_0000))
            };
            let s = Session {
                start,
                end,
                proto,
                inside: Ipv4Addr::from(INSIDE_BASE + sub),
                sport: rng.random_range(1024..=65535),
                public,
                xport,
                dst,
                dport,
                device,
                id: next_id as u64,
            };
            *by_device.entry(device.format()).or_default() += 1;
            let n = emit(&mut sinks, &mut outs, &s, true, &mut buf).await?;
            records += u64::from(n > 0);
            rows += n;
            if s.end < day_end {
                closes.push(Reverse((s.end, next_id)));
            }
            open.insert(next_id, s);
            next_id += 1;
        }
    }
    while let Some(Reverse((end, id))) = closes.pop() {
        if end >= day_end {
            break;
        }
        if let Some(s) = open.remove(&id) {
            let n = emit(&mut sinks, &mut outs, &s, false, &mut buf).await?;
            records += u64::from(n > 0);
            rows += n;
        }
    }
    sinks.flush_all().await?;
    for w in [&mut outs.json, &mut outs.csv, &mut sinks.lines]
        .into_iter()
        .flatten()
    {
        w.flush()?;
    }
    println!(
        "{}",
        serde_json::json!({
            "subscribers": a.day.subscribers, "public_ips": a.day.public_ips, "hours": a.day.hours,
            "sessions": next_id, "sessions_by_format": by_device, "records": records,
            "rows": rows, "rows_by_table": outs.rows, "left_open": open.len(),
            "port_exhausted": exhausted, "raw_objects": sinks.objects, "raw_bytes": sinks.bytes,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_share_the_pool() {
        let n = 64;
        let count = |d: Device| (0..n).filter(|&i| device_of(i, n) == d).count();
        assert_eq!(count(Device::Conntrack), 26);
        assert!(Device::SHARES.iter().all(|(d, _)| count(*d) > 0));
        assert_eq!(public_of(0, n), Ipv4Addr::new(198, 18, 0, 1));
        let last = public_of(n - 1, n);
        assert_eq!(last.octets()[2], Device::Iptables.index() as u8);
    }
}
