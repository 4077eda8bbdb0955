//! UDP syslog: one datagram is one message (RFC 3164, RFC 5424 over RFC 5426), kept byte for byte.
//!
//! Each worker is a dedicated thread on a blocking socket that receives up to `recv_batch`
//! datagrams per `recvmmsg(MSG_WAITFORONE)` call and copies them into a [`Chunk`]. While calls
//! come back full (more is waiting), it keeps reading (`MSG_DONTWAIT`) into the same chunk, up
//! to [`CHUNK_MAX_MSGS`] / [`CHUNK_MAX_BYTES`]; once the socket is drained it hands the chunk to
//! the batcher without waiting (a full queue drops the chunk, counted as `queue_full`). So under
//! load one hand-over (and one wake-up of the batcher) carries a whole pause's worth of
//! datagrams. The receive time is taken once per `recvmmsg` call: datagrams received together
//! share it.
//! Datagrams larger than `max_message` arrive truncated (`MSG_TRUNC`) and are dropped as
//! `oversized`. After a call that did not fill its batch the worker pauses `recv_pause` (default
//! 0.5 ms) so that, under load, one wake-up serves many datagrams. With `workers > 1` every worker has its own `SO_REUSEPORT` socket and the kernel
//! spreads senders over them.
//!
//! That is the `recvmmsg` path. By default (`receive = "auto"`) a worker first tries io_uring
//! ([`super::udp_uring`]): the same loop — wait, collect, hand over, pause — but one
//! `io_uring_enter` receives everything queued, without per-datagram system call work. Where
//! io_uring is unavailable the worker falls back to `recvmmsg`, logs it once and counts it
//! (`edge_relay_udp_receive_fallbacks_total`, `Stats::udp_receive_fallbacks`). The receive time
//! is taken once per collection on both paths: datagrams collected together share it.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use natlake_raw::InputKind;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::udp_uring::{Event, UringRx};
use crate::batch::{Chunk, QueueTx};
use crate::config::{ReceiveMode, UdpSourceConfig};
use crate::{Counters, DropReason, RateLimit, now_ns};

/// How often a blocked worker wakes up to look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// At most this many `recvmmsg` calls drain the socket at stop.
const STOP_DRAIN_CALLS: usize = 4096;
/// A chunk is handed over once it holds this many messages…
const CHUNK_MAX_MSGS: usize = 1024;
/// …or this many payload bytes (well under the queue's byte budget).
const CHUNK_MAX_BYTES: usize = 256 * 1024;

pub(crate) struct Started {
    pub addr: SocketAddr,
    pub threads: Vec<std::thread::JoinHandle<()>>,
    pub inodes: Vec<u64>,
}

/// Binds the socket(s) and starts the worker thread(s).
pub(crate) fn start(
    cfg: &UdpSourceConfig,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> io::Result<Started> {
    let reuse = cfg.reuse_port || cfg.workers > 1;
    let mut sockets = Vec::with_capacity(cfg.workers);
    let first = bind(cfg.address, reuse, cfg.receive_buffer.0 as usize, &name)?;
    let addr = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))?;
    sockets.push(first);
    for _ in 1..cfg.workers {
        sockets.push(bind(addr, true, cfg.receive_buffer.0 as usize, &name)?);
    }
    let mut threads = Vec::new();
    let mut inodes = Vec::new();
    let mut ready = Vec::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        inodes.push(socket_inode(sock.as_raw_fd()).unwrap_or(0));
        let w = Worker {
            sock,
            name: name.clone(),
            queue: queue.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            slot: cfg.max_message.0 as usize,
            batch: cfg.recv_batch,
            pause: cfg.recv_pause,
            received: ::metrics::counter!("edge_relay_received_messages_total", "source" => name.clone(), "kind" => "syslog_udp"),
            received_bytes: ::metrics::counter!("edge_relay_received_bytes_total", "source" => name.clone(), "kind" => "syslog_udp"),
            mode: cfg.receive,
            uring_buffers: cfg.uring_buffers,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        ready.push(rx);
        let spawned = std::thread::Builder::new()
            .name(format!("relay-udp-{i}"))
            .spawn(move || w.run(tx));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
    }
    // Each worker says which receive path it took (or why it could not start).
    let mut failed = None;
    for rx in ready {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(_) => failed = failed.or(Some(io::Error::other("UDP worker did not start"))),
        }
    }
    if let Some(e) = failed {
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    Ok(Started {
        addr,
        threads,
        inodes,
    })
}

fn bind(addr: SocketAddr, reuse_port: bool, rcvbuf: usize, name: &str) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    set_receive_buffer(&sock, rcvbuf, name);
    sock.set_read_timeout(Some(STOP_POLL))?;
    sock.bind(&SockAddr::from(addr))?;
    Ok(sock)
}

/// SO_RCVBUFFORCE when we may (CAP_NET_ADMIN), else SO_RCVBUF capped by net.core.rmem_max.
fn set_receive_buffer(sock: &Socket, want: usize, name: &str) {
    let v = want.min(i32::MAX as usize / 2) as libc::c_int;
    // SAFETY: setsockopt with a valid fd and an int option value of the right size.
    let forced = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced && let Err(e) = sock.set_recv_buffer_size(want) {
        tracing::warn!(source = name, error = %e, "cannot set the UDP receive buffer");
    }
    // Linux reports twice the requested size (bookkeeping overhead included).
    let got = sock.recv_buffer_size().unwrap_or(0) / 2;
    if got + 4096 < want {
        tracing::warn!(
            source = name,
            wanted = want,
            got,
            "UDP receive buffer is smaller than configured: raise net.core.rmem_max (sysctl) or grant CAP_NET_ADMIN"
        );
    } else {
        tracing::debug!(source = name, bytes = got, forced, "UDP receive buffer set");
    }
}

fn socket_inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat on a valid fd into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino as u64)
}

struct Worker {
    sock: Socket,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    slot: usize,
    batch: usize,
    pause: Duration,
    received: ::metrics::Counter,
    received_bytes: ::metrics::Counter,
    mode: ReceiveMode,
    uring_buffers: usize,
}

/// The fallback is logged once per process (every fallback is counted).
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);
static OVERSIZED_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static RECV_ERR_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

/// The buffers of one `recvmmsg` call. The headers point into the other vectors, which are never
/// resized after construction.
struct Mmsg {
    buf: Vec<u8>,
    slot: usize,
    _iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new(n: usize, slot: usize) -> Self {
        let mut buf = vec![0u8; n * slot];
        // SAFETY: plain C structs for which all-zero is a valid value.
        let mut names: Vec<libc::sockaddr_storage> = (0..n).map(|_| unsafe { zeroed() }).collect();
        let mut iov: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                iov_base: buf[i * slot..].as_mut_ptr().cast(),
                iov_len: slot,
            })
            .collect();
        let hdrs = (0..n)
            .map(|i| {
                // SAFETY: as above.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = &mut iov[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        Self {
            buf,
            slot,
            _iov: iov,
            names,
            hdrs,
        }
    }

    /// Receives 1..=n datagrams (waits for the first up to the socket's read timeout).
    fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the sizes it states.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    fn len(&self, i: usize) -> usize {
        (self.hdrs[i].msg_len as usize).min(self.slot)
    }

    fn truncated(&self, i: usize) -> bool {
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    fn payload(&self, i: usize) -> &[u8] {
        &self.buf[i * self.slot..i * self.slot + self.len(i)]
    }

    fn peer(&self, i: usize) -> Option<SocketAddr> {
        sockaddr_to_std(&self.names[i], self.hdrs[i].msg_hdr.msg_namelen)
    }
}

impl Worker {
    /// Picks the receive path, reports it on `ready`, then receives until stopped.
    fn run(self, ready: std::sync::mpsc::SyncSender<io::Result<()>>) {
        let fd = self.sock.as_raw_fd();
        let uring = match self.mode {
            ReceiveMode::Recvmmsg => None,
            ReceiveMode::IoUring | ReceiveMode::Auto => {
                match UringRx::new(fd, self.slot, self.uring_buffers) {
                    Ok(rx) => Some(rx),
                    Err(e) if self.mode == ReceiveMode::IoUring => {
                        let _ = ready.send(Err(io::Error::new(
                            e.kind(),
                            format!("io_uring receive unavailable (receive = \"io_uring\"): {e}"),
                        )));
                        return;
                    }
                    Err(e) => {
                        self.counters
                            .udp_receive_fallbacks
                            .fetch_add(1, Ordering::Relaxed);
                        ::metrics::counter!("edge_relay_udp_receive_fallbacks_total", "source" => self.name.clone())
                            .increment(1);
                        if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                            tracing::warn!(source = %self.name, error = %e, "io_uring receive unavailable; using recvmmsg (counted in edge_relay_udp_receive_fallbacks_total)");
                        }
                        None
                    }
                }
            }
        };
        match uring {
            Some(rx) => {
                self.counters
                    .udp_io_uring_workers
                    .fetch_add(1, Ordering::Relaxed);
                ::metrics::gauge!("edge_relay_udp_io_uring_workers", "source" => self.name.clone())
                    .increment(1.0);
                tracing::debug!(source = %self.name, buffers = self.uring_buffers, "UDP receive on io_uring");
                let _ = ready.send(Ok(()));
                self.run_uring(rx);
            }
            None => {
                let _ = ready.send(Ok(()));
                self.run_recvmmsg();
            }
        }
    }

    fn run_uring(&self, mut rx: UringRx) {
        let mut chunk = self.new_chunk(0, 0);
        let all = rx.capacity();
        let (mut passes, mut datagrams) = (0u64, 0u64);
        while !self.stop.load(Ordering::Relaxed) {
            // Take everything queued (after a pause, a pause's worth); if there was nothing,
            // sleep in the kernel until the next datagram (or the stop poll).
            let mut n = 0;
            for (want, wait) in [(all, Duration::ZERO), (1, STOP_POLL)] {
                if let Err(e) = rx.wait(want, wait) {
                    if let Some(suppressed) = RECV_ERR_LOG.allow() {
                        tracing::error!(source = %self.name, error = %e, suppressed, "UDP receive (io_uring) failed");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
                let now = now_ns();
                n = rx.drain(&mut |ev| self.on_event(now, ev, &mut chunk));
                passes += 1;
                if n > 0 || rx.starved() {
                    break;
                }
            }
            datagrams += n as u64;
            if rx.take_failed() {
                // A failing socket must not turn re-arming into a busy loop.
                self.hand_over(&mut chunk);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if rx.starved() {
                // The buffers ran out: the socket holds more; go on at once.
                continue;
            }
            self.hand_over(&mut chunk);
            if n > 0 && !self.pause.is_zero() {
                // Let datagrams accumulate: the next enter receives them all at once.
                std::thread::sleep(self.pause);
            }
        }
        // Stopping: take what the kernel already holds (bounded, in case senders keep sending).
        for _ in 0..STOP_DRAIN_CALLS {
            if rx.wait(all, Duration::ZERO).is_err() {
                break;
            }
            let now = now_ns();
            let n = rx.drain(&mut |ev| self.on_event(now, ev, &mut chunk));
            if n == 0 && !rx.starved() {
                break;
            }
        }
        let now = now_ns();
        rx.finish(&mut |ev| self.on_event(now, ev, &mut chunk));
        self.hand_over(&mut chunk);
        tracing::debug!(source = %self.name, passes, datagrams, "io_uring receive stopped");
    }

    fn on_event(&self, now: i64, ev: Event<'_>, chunk: &mut Chunk) {
        match ev {
            Event::Datagram { peer, payload } => {
                chunk.push(now, peer, payload);
                if chunk.len() >= CHUNK_MAX_MSGS || chunk.data.len() >= CHUNK_MAX_BYTES {
                    self.hand_over(chunk);
                }
            }
            Event::Oversized { peer, kept } => self.oversized(kept, peer),
            Event::Error(e) => {
                if let Some(suppressed) = RECV_ERR_LOG.allow() {
                    tracing::error!(source = %self.name, error = %e, suppressed, "UDP receive (io_uring) failed");
                }
            }
        }
    }

    fn run_recvmmsg(&self) {
        let fd = self.sock.as_raw_fd();
        let mut m = Mmsg::new(self.batch, self.slot);
        let mut chunk = self.new_chunk(0, 0);
        // After a full call, read on without blocking: the socket likely holds more.
        let mut more = false;
        while !self.stop.load(Ordering::Relaxed) {
            let flags = if more {
                libc::MSG_DONTWAIT
            } else {
                libc::MSG_WAITFORONE
            };
            match m.recv(fd, flags) {
                Ok(n) => {
                    self.collect(&m, n, &mut chunk);
                    more = n == self.batch;
                    if more && chunk.len() < CHUNK_MAX_MSGS && chunk.data.len() < CHUNK_MAX_BYTES {
                        continue;
                    }
                    self.hand_over(&mut chunk);
                    if !more && !self.pause.is_zero() {
                        // Let datagrams accumulate: one wake-up then serves many of them.
                        std::thread::sleep(self.pause);
                    }
                }
                Err(e) => {
                    more = false;
                    let drained = !chunk.is_empty();
                    self.hand_over(&mut chunk);
                    match e.raw_os_error() {
                        // The socket ran dry right after a full call: pause as after a partial one.
                        Some(libc::EAGAIN) if drained && !self.pause.is_zero() => {
                            std::thread::sleep(self.pause)
                        }
                        Some(libc::EAGAIN | libc::EINTR) => {}
                        _ => {
                            if let Some(suppressed) = RECV_ERR_LOG.allow() {
                                tracing::error!(source = %self.name, error = %e, suppressed, "UDP receive failed");
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            }
        }
        // Stopping: take what the kernel already holds (bounded, in case senders keep sending).
        for _ in 0..STOP_DRAIN_CALLS {
            match m.recv(fd, libc::MSG_DONTWAIT) {
                Ok(n) if n > 0 => {
                    self.collect(&m, n, &mut chunk);
                    if chunk.len() >= CHUNK_MAX_MSGS || chunk.data.len() >= CHUNK_MAX_BYTES {
                        self.hand_over(&mut chunk);
                    }
                }
                _ => break,
            }
        }
        self.hand_over(&mut chunk);
    }

    /// An empty chunk sized like the previous one (so it rarely grows while filling).
    fn new_chunk(&self, msgs: usize, bytes: usize) -> Chunk {
        let msgs = msgs.clamp(self.batch, CHUNK_MAX_MSGS + self.batch);
        let bytes = bytes.max(msgs * 256).min(CHUNK_MAX_BYTES + 64 * 1024);
        Chunk::with_capacity(InputKind::SyslogUdp, bytes, msgs)
    }

    /// Appends the `n` datagrams of the last `recvmmsg` call to `chunk`.
    fn collect(&self, m: &Mmsg, n: usize, chunk: &mut Chunk) {
        let now = now_ns();
        for i in 0..n {
            if m.truncated(i) {
                self.oversized(m.len(i), m.peer(i));
                continue;
            }
            chunk.push(now, m.peer(i), m.payload(i));
        }
    }

    /// Counts the chunk's messages as received and queues it; leaves an empty chunk behind.
    fn hand_over(&self, chunk: &mut Chunk) {
        if chunk.is_empty() {
            return;
        }
        let next = self.new_chunk(chunk.len(), chunk.data.len());
        let chunk = std::mem::replace(chunk, next);
        let (msgs, bytes) = (chunk.len() as u64, chunk.data.len() as u64);
        self.counters.add_received(msgs, bytes);
        self.received.increment(msgs);
        self.received_bytes.increment(bytes);
        self.queue.push_or_drop(chunk, &self.name);
    }

    fn oversized(&self, kept: usize, peer: Option<SocketAddr>) {
        self.counters
            .count_drop(DropReason::Oversized, InputKind::SyslogUdp, 1, kept as u64);
        if let Some(suppressed) = OVERSIZED_LOG.allow() {
            tracing::warn!(
                source = %self.name,
                peer = ?peer,
                max_message = self.slot,
                suppressed,
                "datagram larger than max_message dropped (counted as oversized)"
            );
        }
    }
}

pub(crate) fn sockaddr_to_std(
    ss: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is large enough.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            // IPv4 senders on a dual-stack socket are recorded as IPv4.
            match ip.to_ipv4_mapped() {
                Some(v4) => Some(SocketAddr::V4(SocketAddrV4::new(v4, port))),
                None => Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                ))),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_conversion() {
        for want in ["192.0.2.7:514", "[2001:db8::1]:6514"] {
            let want: SocketAddr = want.parse().unwrap();
            let sa = SockAddr::from(want);
            // SAFETY: SockAddr stores a sockaddr_storage.
            let ss = unsafe { *sa.as_ptr().cast::<libc::sockaddr_storage>() };
            assert_eq!(sockaddr_to_std(&ss, sa.len()), Some(want));
        }
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:514".parse().unwrap();
        let sa = SockAddr::from(mapped);
        // SAFETY: as above.
        let ss = unsafe { *sa.as_ptr().cast::<libc::sockaddr_storage>() };
        assert_eq!(
            sockaddr_to_std(&ss, sa.len()),
            Some("192.0.2.7:514".parse().unwrap())
        );
    }
}
