//! TCP syslog with RFC 6587 framing: octet counting (`<len> <msg>`) and non-transparent LF framing,
//! detected per frame (a frame starting with a digit and `digits SP` is octet-counted; anything
//! else runs to the next LF, which is not part of the message).
//!
//! Bounded everywhere: at most `max_connections` connections (more are closed at once and counted
//! as refused), at most `max_frame` bytes buffered per connection (longer frames are skipped and
//! counted as `frame_too_large`), connections silent for `idle_timeout` are closed. A connection
//! that ends inside an octet-counted frame counts it as `incomplete_frame`; an unterminated last
//! LF line is kept (many senders never terminate their last line).
//!
//! A full queue holds the connection (TCP flow control pushes back on the sender) for at most
//! `queue_wait`, then drops the chunk as `queue_full`.
//!
//! With `tls` set the listener speaks TLS only (RFC 5425): each connection's task runs the
//! handshake (bounded by `handshake_timeout`) before the same framing. Failed handshakes are
//! counted by [`TlsFailure`] and logged at a bounded rate; they never stop the listener.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use natlake_raw::InputKind;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::batch::{Chunk, QueueTx};
use crate::config::TcpSourceConfig;
use crate::tls::{self, TlsFailure};
use crate::{Counters, DropReason, RateLimit, now_ns};

/// Longest octet count accepted (10 digits is beyond any max_frame).
const MAX_DIGITS: usize = 10;
const READ_SIZE: usize = 64 * 1024;

/// What the framer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Frame(&'a [u8]),
    /// A frame above `max_frame` (its length, or what was seen of it), skipped.
    TooLarge(usize),
    /// The stream ended inside an octet-counted frame (bytes seen).
    Incomplete(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// Skipping the rest of an oversized octet-counted frame.
    SkipOctets(usize),
    /// Skipping an oversized LF frame up to its LF.
    SkipLine,
}

/// Splits a byte stream into RFC 6587 frames. Buffers at most `max_frame` plus one read.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max_frame: usize,
    /// LF framing only (JSON lines): a line starting with `digits SP` is not an octet count.
    lf_only: bool,
    state: State,
    /// How far the current LF frame has been searched for its LF.
    scanned: usize,
}

enum Header {
    /// `digits SP` found: frame length and header length.
    Octets(usize, usize),
    /// Only digits so far: cannot tell yet.
    NeedMore,
    /// Not an octet count: LF framing.
    NotOctets,
}

fn octet_header(b: &[u8]) -> Header {
    let digits = b
        .iter()
        .take(MAX_DIGITS + 1)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 || digits > MAX_DIGITS {
        return Header::NotOctets;
    }
    match b.get(digits) {
        None => Header::NeedMore,
        Some(b' ') => {
            let n = std::str::from_utf8(&b[..digits])
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            match n {
                Some(n) => Header::Octets(n, digits + 1),
                None => Header::NotOctets,
            }
        }
        Some(_) => Header::NotOctets,
    }
}

impl Framer {
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_frame,
            lf_only: false,
            state: State::Start,
            scanned: 0,
        }
    }

    /// A framer for LF-terminated lines only (JSON lines).
    pub fn lf_only(max_frame: usize) -> Self {
        Self {
            lf_only: true,
            ..Self::new(max_frame)
        }
    }

    fn header(&self, b: &[u8]) -> Header {
        if self.lf_only {
            Header::NotOctets
        } else {
            octet_header(b)
        }
    }

    /// Bytes held for an unfinished frame.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds received bytes and reports every complete frame and every skipped one.
    pub fn feed(&mut self, data: &[u8], mut on: impl FnMut(Event<'_>)) {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            match self.state {
                State::SkipOctets(left) => {
                    let n = left.min(rest.len());
                    pos += n;
                    if n == left {
                        self.state = State::Start;
                        continue;
                    }
                    self.state = State::SkipOctets(left - n);
                    break;
                }
                State::SkipLine => match memchr(b'\n', rest) {
                    Some(i) => {
                        pos += i + 1;
                        self.state = State::Start;
                    }
                    None => {
                        pos += rest.len();
                        break;
                    }
                },
                State::Start => {
                    if rest.is_empty() {
                        break;
                    }
                    match self.header(rest) {
                        Header::Octets(len, hlen) => {
                            if len > self.max_frame {
                                on(Event::TooLarge(len));
                                pos += hlen;
                                self.state = State::SkipOctets(len);
                                continue;
                            }
                            if rest.len() < hlen + len {
                                break;
                            }
                            if len > 0 {
                                on(Event::Frame(&rest[hlen..hlen + len]));
                            }
                            pos += hlen + len;
                        }
                        Header::NeedMore => break,
                        Header::NotOctets => {
                            let from = self.scanned.min(rest.len());
                            match memchr(b'\n', &rest[from..]) {
                                Some(i) => {
                                    let end = from + i;
                                    let frame = &rest[..end];
                                    self.scanned = 0;
                                    pos += end + 1;
                                    if frame.len() > self.max_frame {
                                        on(Event::TooLarge(frame.len()));
                                    } else if !is_blank(frame) {
                                        on(Event::Frame(frame));
                                    }
                                }
                                None if rest.len() > self.max_frame => {
                                    on(Event::TooLarge(rest.len()));
                                    self.scanned = 0;
                                    pos += rest.len();
                                    self.state = State::SkipLine;
                                    break;
                                }
                                None => {
                                    self.scanned = rest.len();
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
        self.buf.drain(..pos);
        if self.buf.capacity() > 2 * (self.max_frame + READ_SIZE) && self.buf.len() < self.max_frame
        {
            self.buf.shrink_to(self.max_frame);
        }
    }

    /// The stream ended (or idled out): what is left becomes a last LF frame, or an incomplete one.
    pub fn finish(&mut self, mut on: impl FnMut(Event<'_>)) {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        let state = std::mem::replace(&mut self.state, State::Start);
        match state {
            State::SkipOctets(_) | State::SkipLine => {}
            State::Start => match self.header(&rest) {
                Header::Octets(_, _) => on(Event::Incomplete(rest.len())),
                Header::NeedMore | Header::NotOctets => {
                    if !is_blank(&rest) {
                        on(Event::Frame(&rest));
                    }
                }
            },
        }
    }
}

fn is_blank(frame: &[u8]) -> bool {
    frame.iter().all(|&b| b == b'\r' || b == 0)
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Binds the listener and starts accepting.
/// What a TCP listener carries: syslog (RFC 6587 framing) or JSON lines (LF framing only).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    pub kind: InputKind,
    pub lf_only: bool,
}

impl Mode {
    pub const SYSLOG: Mode = Mode {
        kind: InputKind::SyslogTcp,
        lf_only: false,
    };
    pub const JSON_LINES: Mode = Mode {
        kind: InputKind::JsonLines,
        lf_only: true,
    };
}

pub(crate) async fn start(
    cfg: &TcpSourceConfig,
    mode: Mode,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    // Built before binding: a configuration that validated can still fail here if its files
    // changed since.
    let tls = match &cfg.tls {
        Some(t) => Some(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(
                tls::server_config(t).map_err(io::Error::other)?,
            ),
            handshake_timeout: t.handshake_timeout,
            ok: ::metrics::counter!("edge_relay_tls_handshakes_total", "source" => name.clone()),
            failed: TlsFailure::ALL.map(|f| {
                ::metrics::counter!("edge_relay_tls_handshake_failures_total", "source" => name.clone(), "reason" => f.as_str())
            }),
        }),
        None => None,
    };
    let listener = TcpListener::bind(cfg.address).await?;
    let addr = listener.local_addr()?;
    let ctx = Arc::new(Ctx {
        tls,
        name: name.clone(),
        kind: mode.kind,
        lf_only: mode.lf_only,
        queue,
        counters,
        max_frame: cfg.max_frame.0 as usize,
        idle_timeout: cfg.idle_timeout,
        queue_wait: cfg.queue_wait,
        received: ::metrics::counter!("edge_relay_received_messages_total", "source" => name.clone(), "kind" => mode.kind.as_str()),
        received_bytes: ::metrics::counter!("edge_relay_received_bytes_total", "source" => name.clone(), "kind" => mode.kind.as_str()),
        active: ::metrics::gauge!("edge_relay_tcp_connections", "source" => name.clone()),
    });
    let task = tokio::spawn(accept_loop(listener, ctx, cfg.max_connections, stop));
    Ok((addr, task))
}

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    ok: ::metrics::Counter,
    failed: [::metrics::Counter; TlsFailure::ALL.len()],
}

struct Ctx {
    tls: Option<Tls>,
    name: String,
    kind: InputKind,
    lf_only: bool,
    queue: QueueTx,
    counters: Arc<Counters>,
    max_frame: usize,
    idle_timeout: Duration,
    queue_wait: Duration,
    received: ::metrics::Counter,
    received_bytes: ::metrics::Counter,
    active: ::metrics::Gauge,
}

static REFUSED_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static ACCEPT_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static FRAME_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static TLS_LOG: [RateLimit; TlsFailure::ALL.len()] = [
    RateLimit::new(Duration::from_secs(10)),
    RateLimit::new(Duration::from_secs(10)),
    RateLimit::new(Duration::from_secs(10)),
];

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut conns = JoinSet::new();
    let conn_stop = stop.clone();
    let refused = ::metrics::counter!("edge_relay_tcp_connections_refused_total", "source" => ctx.name.clone());
    loop {
        tokio::select! {
            _ = super::stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((sock, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        ctx.counters.tcp_connections_accepted.fetch_add(1, Ordering::Relaxed);
                        let ctx = ctx.clone();
                        let stop = conn_stop.clone();
                        conns.spawn(async move {
                            ctx.active.increment(1.0);
                            match &ctx.tls {
                                None => {
                                    let _ = sock.set_nodelay(true);
                                    connection(sock, peer, &ctx, stop).await
                                }
                                Some(tls) => {
                                    if let Some(s) = handshake(tls, sock, peer, &ctx, stop.clone()).await {
                                        connection(s, peer, &ctx, stop).await;
                                    }
                                }
                            }
                            ctx.active.decrement(1.0);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        ctx.counters.tcp_connections_refused.fetch_add(1, Ordering::Relaxed);
                        refused.increment(1);
                        let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
                        drop(sock);
                        if let Some(suppressed) = REFUSED_LOG.allow() {
                            tracing::warn!(source = %ctx.name, %peer, max_connections, suppressed,
                                "too many connections; refusing (counted)");
                        }
                    }
                },
                Err(e) => {
                    if let Some(suppressed) = ACCEPT_LOG.allow() {
                        tracing::error!(source = %ctx.name, error = %e, suppressed, "accept failed");
                    }
                    // EMFILE and friends: give the system a moment instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// The TLS handshake of one connection; `None` (counted and logged) when it failed or the relay
/// is stopping.
async fn handshake(
    tls: &Tls,
    sock: TcpStream,
    peer: SocketAddr,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let _ = sock.set_nodelay(true);
    let result = tokio::select! {
        _ = super::stopped(&mut stop) => return None,
        r = tls::accept(&tls.acceptor, sock, tls.handshake_timeout) => r,
    };
    match result {
        Ok(s) => {
            tls.ok.increment(1);
            Some(s)
        }
        Err((failure, why)) => {
            ctx.counters.tls_handshake_failures[failure.index()].fetch_add(1, Ordering::Relaxed);
            tls.failed[failure.index()].increment(1);
            if let Some(suppressed) = TLS_LOG[failure.index()].allow() {
                tracing::warn!(source = %ctx.name, %peer, reason = failure.as_str(), error = %why,
                    suppressed, "TLS handshake failed; connection closed (counted)");
            }
            None
        }
    }
}

async fn connection<S: AsyncRead + Unpin>(
    mut sock: S,
    peer: SocketAddr,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) {
    let mut framer = if ctx.lf_only {
        Framer::lf_only(ctx.max_frame)
    } else {
        Framer::new(ctx.max_frame)
    };
    let mut rbuf = vec![0u8; READ_SIZE];
    let mut stopping = false;
    loop {
        let read = if stopping {
            // Stopping: take what is already there (kernel, TLS buffers), without waiting.
            match sock.read(&mut rbuf).now_or_never() {
                None => break,
                Some(r) => Ok(r),
            }
        } else {
            tokio::select! {
                _ = super::stopped(&mut stop) => {
                    stopping = true;
                    continue;
                }
                r = tokio::time::timeout(ctx.idle_timeout, sock.read(&mut rbuf)) => r,
            }
        };
        let n = match read {
            Err(_idle) => {
                tracing::debug!(source = %ctx.name, %peer, "idle timeout; closing");
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(source = %ctx.name, %peer, error = %e, "connection error");
                break;
            }
        };
        let now = now_ns();
        let mut chunk = Chunk::new(ctx.kind);
        framer.feed(&rbuf[..n], |ev| on_event(ctx, &mut chunk, ev, now, peer));
        if !chunk.is_empty() {
            deliver(ctx, chunk).await;
        }
    }
    let mut chunk = Chunk::new(ctx.kind);
    let now = now_ns();
    framer.finish(|ev| on_event(ctx, &mut chunk, ev, now, peer));
    if !chunk.is_empty() {
        deliver(ctx, chunk).await;
    }
}

fn on_event(ctx: &Ctx, chunk: &mut Chunk, ev: Event<'_>, now: i64, peer: SocketAddr) {
    match ev {
        Event::Frame(f) => chunk.push(now, Some(peer), f),
        Event::TooLarge(len) => {
            ctx.counters
                .count_drop(DropReason::FrameTooLarge, ctx.kind, 1, len as u64);
            if let Some(suppressed) = FRAME_LOG.allow() {
                tracing::warn!(source = %ctx.name, %peer, len, max_frame = ctx.max_frame, suppressed,
                    "frame larger than max_frame skipped (counted as frame_too_large)");
            }
        }
        Event::Incomplete(len) => {
            ctx.counters
                .count_drop(DropReason::IncompleteFrame, ctx.kind, 1, len as u64);
            if let Some(suppressed) = FRAME_LOG.allow() {
                tracing::warn!(source = %ctx.name, %peer, len, suppressed,
                    "connection ended inside a frame (counted as incomplete_frame)");
            }
        }
    }
}

async fn deliver(ctx: &Ctx, chunk: Chunk) {
    let (msgs, bytes) = (chunk.len() as u64, chunk.data.len() as u64);
    ctx.counters
        .received_messages
        .fetch_add(msgs, Ordering::Relaxed);
    ctx.counters
        .received_bytes
        .fetch_add(bytes, Ordering::Relaxed);
    ctx.received.increment(msgs);
    ctx.received_bytes.increment(bytes);
    ctx.queue.push_wait(chunk, ctx.queue_wait, &ctx.name).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum E {
        F(Vec<u8>),
        Big(usize),
        Inc(usize),
    }

    fn run(max: usize, pieces: &[&[u8]]) -> Vec<E> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        let mut push = |ev: Event<'_>| {
            out.push(match ev {
                Event::Frame(b) => E::F(b.to_vec()),
                Event::TooLarge(n) => E::Big(n),
                Event::Incomplete(n) => E::Inc(n),
            })
        };
        for p in pieces {
            f.feed(p, &mut push);
            assert!(f.buffered() <= max + p.len() + MAX_DIGITS + 1);
        }
        f.finish(&mut push);
        out
    }

    fn f(s: &str) -> E {
        E::F(s.as_bytes().to_vec())
    }

    #[test]
    fn octet_counting_and_lf_mix() {
        let got = run(100, &[b"5 hello<13>lf line\n11 <14>two\nxyz3 abc"]);
        assert_eq!(
            got,
            vec![f("hello"), f("<13>lf line"), f("<14>two\nxyz"), f("abc")]
        );
    }

    #[test]
    fn frames_split_across_reads_at_every_byte() {
        let stream = b"12 <13>abcdefgh<14>line two\r\n\n7 x\ny\nzzz\n";
        let want = vec![f("<13>abcdefgh"), f("<14>line two\r"), f("x\ny\nzzz")];
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(run(100, &[a, b]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(100, &bytes), want);
    }

    #[test]
    fn oversized_frames_are_skipped_and_the_stream_resyncs() {
        let big = "x".repeat(50);
        let s = format!("50 {big}4 okay{big}\n<1>after\n");
        assert_eq!(
            run(20, &[s.as_bytes()]),
            vec![E::Big(50), f("okay"), E::Big(50), f("<1>after")]
        );
        // Also when the oversized line arrives in pieces.
        let pieces: Vec<&[u8]> = s.as_bytes().chunks(7).collect();
        let got = run(20, &pieces);
        assert_eq!(got.first(), Some(&E::Big(50)));
        assert!(
            got.contains(&f("okay")) && got.ends_with(&[f("<1>after")]),
            "{got:?}"
        );
        assert_eq!(
            got.iter().filter(|e| matches!(e, E::Big(_))).count(),
            2,
            "{got:?}"
        );
    }

    #[test]
    fn eof_inside_frames() {
        assert_eq!(run(100, &[b"10 abc"]), vec![E::Inc(6)]);
        assert_eq!(
            run(100, &[b"<13>no newline at end"]),
            vec![f("<13>no newline at end")]
        );
        assert_eq!(run(100, &[b"123"]), vec![f("123")]);
        assert_eq!(run(100, &[b"\n\r\n\n"]), vec![]);
    }

    #[test]
    fn garbage_is_bounded() {
        let junk: Vec<u8> = (0..10_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .filter(|b| *b != b'\n')
            .collect();
        let got = run(64, &[&junk]);
        assert!(got.iter().all(|e| matches!(e, E::Big(_))), "{got:?}");
        assert_eq!(run(64, &[b"99999999999 x\n"]), vec![f("99999999999 x")]);
        assert_eq!(run(64, &[b"0 1 a\n"]), vec![f("a")]);
    }
}
