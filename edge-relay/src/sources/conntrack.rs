//! Linux conntrack events read from netlink (ctnetlink): NEW and DESTROY, no `conntrack` binary.
//!
//! The socket joins the `NFNLGRP_CONNTRACK_NEW` and `NFNLGRP_CONNTRACK_DESTROY` multicast groups
//! (CAP_NET_ADMIN; the events are those of the network namespace the relay runs in). Messages are
//! parsed with `netlink-packet-netfilter`; attributes it leaves raw (counters, timestamps, zones,
//! ICMP ids) are read here.
//!
//! **Record payload: one text line in the exact format of `conntrack -E -o timestamp,extended`**
//! (libnetfilter_conntrack's default output), e.g. (`\t` is a tab)
//!
//! ```text
//! [1700000000.123456]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.0.2 dst=192.0.2.2 sport=40000 dport=80 [UNREPLIED] src=192.0.2.2 dst=198.51.100.1 sport=80 dport=20000
//! [1700000030.654321]\t[DESTROY] ipv4     2 tcp      6 src=100.64.0.2 dst=192.0.2.2 sport=40000 dport=80 packets=6 bytes=330 src=192.0.2.2 dst=198.51.100.1 sport=80 dport=20000 packets=4 bytes=222 [ASSURED] delta-time=30
//! ```
//!
//! Why text rather than the netlink bytes: the normalizer already parses this format (it is what
//! operators capture with `conntrack -E`), the line is self-describing in the raw object, and it
//! is what a human reading a raw batch during an investigation expects. Nothing the kernel sent
//! is lost in the rendering: tuples, zone (`zone=`, also per direction), mark (`mark=`), counters
//! (`packets= bytes=` when `nf_conntrack_acct=1`), status flags, TCP state, timeout and, with
//! `nf_conntrack_timestamp=1`, `delta-time=`. The bracketed time at the start is the kernel's
//! stop timestamp of a DESTROY event when timestamps are enabled (NEW events carry no kernel
//! timestamp), else the receive time — as `conntrack -E` prints it (seconds.microseconds).
//!
//! Overruns: when events arrive faster than they are read, the kernel drops them and the next
//! receive fails with ENOBUFS. Each one is counted as a `netlink_overrun` drop (the number of
//! lost events is unknown) and logged at a bounded rate; size `receive_buffer` to avoid them.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use natlake_raw::InputKind;
use netlink_packet_core::{
    DefaultNla, NLM_F_CREATE, NetlinkMessage, NetlinkPayload, Nla, NlasIterator,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};

use crate::batch::{Chunk, QueueTx};
use crate::config::ConntrackSourceConfig;
use crate::{Counters, DropReason, RateLimit, now_ns};

const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
const STOP_POLL: Duration = Duration::from_millis(100);
const RECV_BUF: usize = 256 * 1024;
/// Events handed to the batcher per chunk at most.
const CHUNK_EVENTS: usize = 256;

const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ZONE: u16 = 18;
const CTA_TIMESTAMP: u16 = 20;
const CTA_TUPLE_ZONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

pub(crate) fn start(
    cfg: &ConntrackSourceConfig,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    for g in [NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY] {
        sock.add_membership(g).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("joining the conntrack event group {g} (needs CAP_NET_ADMIN): {e}"),
            )
        })?;
    }
    let fd = sock.as_raw_fd();
    super::set_receive_buffer(fd, cfg.receive_buffer.0 as usize, &name);
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: STOP_POLL.subsec_micros() as _,
    };
    // SAFETY: setsockopt with a valid fd and a timeval of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let w = Worker {
        received: ::metrics::counter!("edge_relay_received_messages_total", "source" => name.clone(), "kind" => InputKind::ConntrackNetlink.as_str()),
        received_bytes: ::metrics::counter!("edge_relay_received_bytes_total", "source" => name.clone(), "kind" => InputKind::ConntrackNetlink.as_str()),
        sock,
        name,
        queue,
        counters,
        stop,
    };
    std::thread::Builder::new()
        .name("relay-conntrack".into())
        .spawn(move || w.run())
}

struct Worker {
    sock: netlink_sys::Socket,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    received: ::metrics::Counter,
    received_bytes: ::metrics::Counter,
}

static OVERRUN_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static DECODE_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static RECV_ERR_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

impl Worker {
    fn run(self) {
        let fd = self.sock.as_raw_fd();
        let mut buf = vec![0u8; RECV_BUF];
        let mut chunk = Chunk::new(InputKind::ConntrackNetlink);
        let mut line = String::with_capacity(512);
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            let flags = if stopping || !chunk.is_empty() {
                libc::MSG_DONTWAIT
            } else {
                0
            };
            // SAFETY: recv into a buffer of the stated length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => {
                        if !chunk.is_empty() {
                            self.deliver(std::mem::replace(
                                &mut chunk,
                                Chunk::new(InputKind::ConntrackNetlink),
                            ));
                        } else if stopping {
                            return;
                        }
                    }
                    Some(libc::ENOBUFS) => self.overrun(),
                    _ => {
                        if let Some(suppressed) = RECV_ERR_LOG.allow() {
                            tracing::error!(source = %self.name, error = %e, suppressed, "netlink receive failed");
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
            let now = now_ns();
            let data = &buf[..n as usize];
            let mut off = 0usize;
            while off + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes(data[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
                if len < 16 || off + len > data.len() {
                    self.decode_error(data.len() - off, "bad netlink message length");
                    break;
                }
                let msg = &data[off..off + len];
                off += (len + 3) & !3;
                line.clear();
                match render(msg, now, &mut line) {
                    Ok(true) => chunk.push(now, None, line.as_bytes()),
                    Ok(false) => {}
                    Err(e) => self.decode_error(msg.len(), &e),
                }
            }
            if chunk.len() >= CHUNK_EVENTS {
                self.deliver(std::mem::replace(
                    &mut chunk,
                    Chunk::new(InputKind::ConntrackNetlink),
                ));
            }
        }
    }

    fn overrun(&self) {
        self.counters.count_drop(
            DropReason::NetlinkOverrun,
            InputKind::ConntrackNetlink,
            1,
            0,
        );
        if let Some(suppressed) = OVERRUN_LOG.allow() {
            tracing::error!(source = %self.name, suppressed,
                "conntrack events lost: netlink receive buffer overrun (ENOBUFS; counted as netlink_overrun); raise receive_buffer");
        }
    }

    fn decode_error(&self, len: usize, why: &str) {
        self.counters.count_drop(
            DropReason::DecodeError,
            InputKind::ConntrackNetlink,
            1,
            len as u64,
        );
        if let Some(suppressed) = DECODE_LOG.allow() {
            tracing::warn!(source = %self.name, len, error = why, suppressed, "undecodable netlink message dropped (counted)");
        }
    }

    fn deliver(&self, chunk: Chunk) {
        let (msgs, bytes) = (chunk.len() as u64, chunk.data.len() as u64);
        self.counters.add_received(msgs, bytes);
        self.received.increment(msgs);
        self.received_bytes.increment(bytes);
        self.queue.push_or_drop(chunk, &self.name);
    }
}

/// One direction of a connection.
#[derive(Debug, Default)]
struct Dir {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<u8>,
    sport: Option<u16>,
    dport: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    icmp_id: Option<u16>,
    zone: Option<u16>,
    packets: Option<u64>,
    bytes: Option<u64>,
}

fn raw(nla: &DefaultNla) -> Vec<u8> {
    let mut v = vec![0u8; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn be_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

/// `(kind, value)` of every attribute in `b` (flags masked off).
fn nested(b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    NlasIterator::new(b)
        .filter_map(|r| r.ok())
        .map(|n| (n.kind() & NLA_TYPE_MASK, n.value().to_vec()))
        .collect()
}

fn read_tuple(tuples: &[Tuple], d: &mut Dir) {
    for t in tuples {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => d.src = Some(*a),
                        IPTuple::DestinationAddress(a) => d.dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(pr) => d.proto = Some(u8::from(*pr)),
                        ProtoTuple::SourcePort(v) => d.sport = Some(*v),
                        ProtoTuple::DestinationPort(v) => d.dport = Some(*v),
                        ProtoTuple::Other(n) => {
                            let v = raw(n);
                            match n.kind() & NLA_TYPE_MASK {
                                4 | 7 => d.icmp_id = be_u16(&v),
                                5 | 8 => d.icmp_type = v.first().copied(),
                                6 | 9 => d.icmp_code = v.first().copied(),
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
            }
            Tuple::Other(n) if n.kind() & NLA_TYPE_MASK == CTA_TUPLE_ZONE => {
                d.zone = be_u16(&raw(n));
            }
            _ => {}
        }
    }
}

fn read_counters(b: &[u8], d: &mut Dir) {
    for (k, v) in nested(b) {
        match k {
            1 => d.packets = be_u64(&v),
            2 => d.bytes = be_u64(&v),
            3 => {
                d.packets = v
                    .get(..4)
                    .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as u64)
            }
            4 => {
                d.bytes = v
                    .get(..4)
                    .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as u64)
            }
            _ => {}
        }
    }
}

fn tcp_state(s: u8) -> &'static str {
    const STATES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "LISTEN",
    ];
    STATES.get(s as usize).copied().unwrap_or("UNKNOWN")
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        136 => "udplite",
        1 => "icmp",
        58 => "icmpv6",
        132 => "sctp",
        47 => "gre",
        33 => "dccp",
        _ => "unknown",
    }
}

fn write_dir(out: &mut String, d: &Dir, proto: u8) {
    if let (Some(s), Some(t)) = (d.src, d.dst) {
        let _ = write!(out, "src={s} dst={t} ");
    }
    match proto {
        1 | 58 => {
            let _ = write!(
                out,
                "type={} code={} id={} ",
                d.icmp_type.unwrap_or(0),
                d.icmp_code.unwrap_or(0),
                d.icmp_id.unwrap_or(0)
            );
        }
        47 => {
            let _ = write!(
                out,
                "srckey=0x{:x} dstkey=0x{:x} ",
                d.sport.unwrap_or(0),
                d.dport.unwrap_or(0)
            );
        }
        _ => {
            if let (Some(s), Some(t)) = (d.sport, d.dport) {
                let _ = write!(out, "sport={s} dport={t} ");
            }
        }
    }
    if let Some(z) = d.zone {
        let _ = write!(out, "zone={z} ");
    }
    if let (Some(p), Some(b)) = (d.packets, d.bytes) {
        let _ = write!(out, "packets={p} bytes={b} ");
    }
}

/// Renders one ctnetlink event message as a `conntrack -E -o timestamp,extended` line into
/// `out`. `Ok(false)`: not a conntrack event (skipped).
pub(crate) fn render(msg: &[u8], recv_ns: i64, out: &mut String) -> Result<bool, String> {
    let m = NetlinkMessage::<NetfilterMessage>::deserialize(msg).map_err(|e| e.to_string())?;
    let NetlinkPayload::InnerMessage(nf) = m.payload else {
        return Ok(false);
    };
    let (event, attrs) = match &nf.inner {
        NetfilterMessageInner::Conntrack(ConntrackMessage::New(a)) => {
            if m.header.flags & NLM_F_CREATE != 0 {
                ("[NEW]", a)
            } else {
                ("[UPDATE]", a)
            }
        }
        NetfilterMessageInner::Conntrack(ConntrackMessage::Delete(a)) => ("[DESTROY]", a),
        _ => return Ok(false),
    };
    let (l3, l3num) = match nf.header.family {
        NetfilterProtoFamily::IPv4 => ("ipv4", 2u8),
        NetfilterProtoFamily::IPv6 => ("ipv6", 10u8),
        other => ("unknown", u8::from(other)),
    };
    let mut orig = Dir::default();
    let mut reply = Dir::default();
    let mut status: Option<u32> = None;
    let mut timeout = None;
    let mut mark = None;
    let mut state = None;
    let mut zone = None;
    let mut ts_start: Option<u64> = None;
    let mut ts_stop: Option<u64> = None;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => read_tuple(t, &mut orig),
            ConntrackAttribute::CtaTupleReply(t) => read_tuple(t, &mut reply),
            ConntrackAttribute::CtaStatus(s) => status = Some(s.bits()),
            ConntrackAttribute::CtaTimeout(t) => timeout = Some(*t),
            ConntrackAttribute::CtaMark(v) => mark = Some(*v),
            ConntrackAttribute::CtaProtoInfo(infos) => {
                for i in infos {
                    if let ProtoInfo::TCP(tcp) = i {
                        for t in tcp {
                            if let ProtoInfoTCP::State(s) = t {
                                state = Some(*s);
                            }
                        }
                    }
                }
            }
            ConntrackAttribute::Other(n) => {
                let v = raw(n);
                match n.kind() & NLA_TYPE_MASK {
                    CTA_COUNTERS_ORIG => read_counters(&v, &mut orig),
                    CTA_COUNTERS_REPLY => read_counters(&v, &mut reply),
                    CTA_ZONE => zone = be_u16(&v),
                    CTA_TIMESTAMP => {
                        for (k, x) in nested(&v) {
                            match k {
                                1 => ts_start = be_u64(&x),
                                2 => ts_stop = be_u64(&x),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let Some(proto) = orig.proto.or(reply.proto) else {
        return Err("event without a protocol".into());
    };
    // Leading time: the kernel's stop timestamp when there is one, else the receive time.
    let ts_ns = match ts_stop {
        Some(s) if s > 0 => s as i64,
        _ => recv_ns,
    };
    let secs = ts_ns.div_euclid(1_000_000_000);
    let usecs = ts_ns.rem_euclid(1_000_000_000) / 1000;
    let _ = write!(out, "[{secs}.{usecs:06}]\t{event:>9} ");
    let _ = write!(out, "{l3:<8} {l3num} {:<8} {proto} ", proto_name(proto));
    if let Some(t) = timeout {
        let _ = write!(out, "{t} ");
    }
    if proto == 6
        && let Some(s) = state
    {
        let _ = write!(out, "{} ", tcp_state(s));
    }
    write_dir(out, &orig, proto);
    const SEEN_REPLY: u32 = 1 << 1;
    const ASSURED: u32 = 1 << 2;
    const OFFLOAD: u32 = 1 << 14;
    const HW_OFFLOAD: u32 = 1 << 15;
    if let Some(s) = status
        && s & SEEN_REPLY == 0
    {
        out.push_str("[UNREPLIED] ");
    }
    write_dir(out, &reply, proto);
    if let Some(s) = status {
        // libnetfilter_conntrack prints at most one of these, in this order of precedence.
        if s & OFFLOAD != 0 {
            out.push_str("[OFFLOAD] ");
        } else if s & HW_OFFLOAD != 0 {
            out.push_str("[HW_OFFLOAD] ");
        } else if s & ASSURED != 0 {
            out.push_str("[ASSURED] ");
        }
    }
    if let Some(m) = mark {
        let _ = write!(out, "mark={m} ");
    }
    if let Some(z) = zone {
        let _ = write!(out, "zone={z} ");
    }
    if let Some(start) = ts_start {
        let stop_s = match ts_stop {
            Some(s) if s > 0 => s / 1_000_000_000,
            _ => (recv_ns.max(0) as u64) / 1_000_000_000,
        };
        let _ = write!(
            out,
            "delta-time={} ",
            stop_s.saturating_sub(start / 1_000_000_000)
        );
    }
    while out.ends_with(' ') {
        out.pop();
    }
    Ok(true)
}
