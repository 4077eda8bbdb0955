//! IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) over UDP, kept raw: one datagram is one record.
//!
//! One listener receives both: the version field picks the kind (10 → `ipfix`, 9 → `netflow`;
//! the legacy NetFlow v1/v5/v7 are kept as `netflow` too, counted as `legacy_version`). Nothing is
//! decoded here: [`crate::templates::check`] only validates the header and the set framing.
//!
//! - Not a flow export at all (unknown version, or shorter than its header): dropped, counted as
//!   `unknown_version` / `truncated_header`.
//! - A sane header with damage behind it (IPFIX length beyond the datagram, a set running past
//!   the end, a set length below 4, ...): kept raw, counted in
//!   `edge_relay_flow_decode_issues_total{reason}`; the normalizer decides.
//!
//! Templates are replayed into every batch by the batcher hook [`crate::templates::FlowContext`].
//!
//! A dedicated thread blocks on the socket, then drains what else is already queued (up to
//! [`DRAIN`] datagrams) with `MSG_DONTWAIT`, and hands one chunk per kind to the batcher.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use natlake_raw::InputKind;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::batch::{Chunk, QueueTx};
use crate::config::FlowSourceConfig;
use crate::templates::{self, Reject};
use crate::{Counters, DropReason, RateLimit, now_ns};

const STOP_POLL: Duration = Duration::from_millis(100);
/// Datagrams taken per wake-up.
const DRAIN: usize = 256;
/// A UDP payload never exceeds 65,507 bytes (IPv4) / 65,527 (IPv6 without jumbograms).
const SLOT: usize = 65_536;

pub(crate) struct Started {
    pub addr: SocketAddr,
    pub thread: std::thread::JoinHandle<()>,
    pub inode: u64,
}

pub(crate) fn start(
    cfg: &FlowSourceConfig,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> io::Result<Started> {
    let sock = Socket::new(
        Domain::for_address(cfg.address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    super::set_receive_buffer(sock.as_raw_fd(), cfg.receive_buffer.0 as usize, &name);
    sock.set_read_timeout(Some(STOP_POLL))?;
    sock.bind(&SockAddr::from(cfg.address))?;
    let addr = sock
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))?;
    let inode = super::socket_inode(sock.as_raw_fd()).unwrap_or(0);
    let label = |k: InputKind| {
        (
            ::metrics::counter!("edge_relay_received_messages_total", "source" => name.clone(), "kind" => k.as_str()),
            ::metrics::counter!("edge_relay_received_bytes_total", "source" => name.clone(), "kind" => k.as_str()),
        )
    };
    let w = Worker {
        sock,
        queue,
        counters,
        stop,
        ipfix: label(InputKind::Ipfix),
        netflow: label(InputKind::Netflow),
        name,
    };
    let thread = std::thread::Builder::new()
        .name("relay-flow".into())
        .spawn(move || w.run())?;
    Ok(Started {
        addr,
        thread,
        inode,
    })
}

struct Worker {
    sock: Socket,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    ipfix: (::metrics::Counter, ::metrics::Counter),
    netflow: (::metrics::Counter, ::metrics::Counter),
}

static REJECT_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static ISSUE_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static RECV_ERR_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

impl Worker {
    fn run(self) {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); SLOT];
        let mut ipfix = Chunk::new(InputKind::Ipfix);
        let mut netflow = Chunk::new(InputKind::Netflow);
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            // Blocking for the first datagram (unless stopping), then whatever is queued.
            let mut got = 0;
            for i in 0..DRAIN {
                let flags = if i == 0 && !stopping {
                    0
                } else {
                    libc::MSG_DONTWAIT
                };
                match self.sock.recv_from_with_flags(&mut buf, flags) {
                    Ok((n, from)) => {
                        got += 1;
                        // SAFETY: recv_from initialised the first `n` bytes.
                        let pkt = unsafe {
                            std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n.min(SLOT))
                        };
                        let peer = from.as_socket().map(unmap);
                        self.classify(pkt, peer, &mut ipfix, &mut netflow);
                    }
                    Err(e) => {
                        match e.raw_os_error() {
                            Some(libc::EAGAIN | libc::EINTR) => {}
                            _ => {
                                if let Some(suppressed) = RECV_ERR_LOG.allow() {
                                    tracing::error!(source = %self.name, error = %e, suppressed, "UDP receive failed");
                                }
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                        break;
                    }
                }
            }
            for (chunk, kind) in [
                (&mut ipfix, InputKind::Ipfix),
                (&mut netflow, InputKind::Netflow),
            ] {
                if !chunk.is_empty() {
                    let full = std::mem::replace(chunk, Chunk::new(kind));
                    self.deliver(full);
                }
            }
            if stopping && got == 0 {
                return;
            }
        }
    }

    fn classify(
        &self,
        pkt: &[u8],
        peer: Option<SocketAddr>,
        ipfix: &mut Chunk,
        netflow: &mut Chunk,
    ) {
        match templates::check(pkt) {
            Ok(c) => {
                if let Some(issue) = c.issue {
                    self.counters.count_issue(c.kind, issue);
                    if issue != templates::Issue::LegacyVersion
                        && let Some(suppressed) = ISSUE_LOG.allow()
                    {
                        tracing::warn!(source = %self.name, ?peer, len = pkt.len(), reason = issue.as_str(), suppressed,
                            "damaged flow datagram kept raw (counted in edge_relay_flow_decode_issues_total)");
                    }
                }
                let chunk = if c.kind == InputKind::Ipfix {
                    ipfix
                } else {
                    netflow
                };
                chunk.push(now_ns(), peer, pkt);
            }
            Err(r) => {
                let (reason, version) = match r {
                    Reject::UnknownVersion(v) => (DropReason::UnknownVersion, Some(v)),
                    Reject::TruncatedHeader => (DropReason::TruncatedHeader, None),
                };
                // Filed under ipfix: the kind the listener was set up for.
                self.counters
                    .count_drop(reason, InputKind::Ipfix, 1, pkt.len() as u64);
                if let Some(suppressed) = REJECT_LOG.allow() {
                    tracing::warn!(source = %self.name, ?peer, len = pkt.len(), ?version, reason = reason.as_str(), suppressed,
                        "datagram is not an IPFIX / NetFlow export; dropped (counted)");
                }
            }
        }
    }

    fn deliver(&self, chunk: Chunk) {
        let (msgs, bytes) = (chunk.len() as u64, chunk.data.len() as u64);
        self.counters.add_received(msgs, bytes);
        let (m, b) = if chunk.kind == InputKind::Ipfix {
            &self.ipfix
        } else {
            &self.netflow
        };
        m.increment(msgs);
        b.increment(bytes);
        self.queue.push_or_drop(chunk, &self.name);
    }
}

/// IPv4 senders on a dual-stack socket are recorded as IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}
