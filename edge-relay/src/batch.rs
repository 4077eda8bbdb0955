//! The queue between the sources and the batcher, and the batcher thread.
//!
//! Sources hand over [`Chunk`]s (the messages of one `recvmmsg` call or one TCP read) through a
//! queue bounded both in chunks and in payload bytes. A source never blocks on it for long: UDP
//! threads drop a chunk at once when it is full, TCP connections wait at most `queue_wait`; both
//! count the drop as `queue_full`.
//!
//! The batcher is one thread (compression is CPU work that must not sit on the async runtime).
//! It keeps one open raw object writer ([`RawWriter`]) per input kind, closes it when its uncompressed records
//! reach `max_bytes` or it is `max_age` old, and hands the finished object to the spool thread,
//! which writes it durably (fsync) and wakes the uploader. The fsync is off the batcher thread so
//! that a slow disk (fsync stalls of a second or more are common on a busy host) does not stop
//! the compression and overflow the queue: finished batches wait for the spool thread, at most
//! [`SPOOL_PENDING_BYTES`] of them (compressed; one batch always passes), before the batcher
//! itself waits. A flush or shutdown is acknowledged only once the spool thread has written
//! everything closed before it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use natlake_raw::{BatchHeader, InputKind};
use tokio::sync::{Notify, oneshot};

use crate::raw_writer::RawWriter;
use crate::spool::Spool;
use crate::{Counters, DropReason, RateLimit, RelayError, now_ns};

/// Bytes a record adds to the uncompressed stream besides its payload (length, crc, fixed part).
pub const RECORD_OVERHEAD: u64 = 38;

/// Accounting overhead per queued message (its metadata), so tiny messages are bounded too.
const META_COST: u64 = 32;

/// Compressed bytes of finished batches that may wait for the spool thread.
pub const SPOOL_PENDING_BYTES: u64 = 8 * 1024 * 1024;

/// One received message's metadata; its payload is the next `len` bytes of [`Chunk::data`].
#[derive(Debug, Clone, Copy)]
pub struct MsgMeta {
    pub recv_ns: i64,
    pub peer: Option<SocketAddr>,
    pub len: u32,
}

/// Messages of one kind, payloads stored back to back.
#[derive(Debug)]
pub struct Chunk {
    pub kind: InputKind,
    pub data: Vec<u8>,
    pub msgs: Vec<MsgMeta>,
    /// Set once the chunk had to wait for room; released when the batcher has taken it in.
    held: Option<Held>,
}

impl Chunk {
    pub fn new(kind: InputKind) -> Self {
        Self {
            kind,
            data: Vec::new(),
            msgs: Vec::new(),
            held: None,
        }
    }

    pub fn with_capacity(kind: InputKind, bytes: usize, msgs: usize) -> Self {
        Self {
            kind,
            data: Vec::with_capacity(bytes),
            msgs: Vec::with_capacity(msgs),
            held: None,
        }
    }

    pub fn push(&mut self, recv_ns: i64, peer: Option<SocketAddr>, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.msgs.push(MsgMeta {
            recv_ns,
            peer,
            len: payload.len() as u32,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    fn cost(&self) -> u64 {
        self.data.len() as u64 + META_COST * self.msgs.len() as u64
    }

    /// Iterates `(meta, payload)`.
    pub fn iter(&self) -> impl Iterator<Item = (&MsgMeta, &[u8])> {
        let mut off = 0usize;
        self.msgs.iter().map(move |m| {
            let p = &self.data[off..off + m.len as usize];
            off += m.len as usize;
            (m, p)
        })
    }
}

pub(crate) enum Input {
    Chunk(Chunk),
    /// Close every open batch and spool it, then answer.
    Flush(oneshot::Sender<()>),
    /// Like flush, then exit.
    Shutdown(oneshot::Sender<()>),
    /// Answer, once every batch closed before is in the spool, with the oldest receive time in
    /// each kind's open batch (for the heartbeat).
    Mark(oneshot::Sender<OpenOldest>),
}

/// By [`slot`]: the oldest receive time (ns) in the kind's open batch, `None` when none is open.
pub(crate) type OpenOldest = [Option<i64>; InputKind::ALL.len()];

/// The sending side of the queue (cloned into every source).
#[derive(Clone)]
pub(crate) struct QueueTx {
    tx: SyncSender<Input>,
    queued: Arc<AtomicU64>,
    max_bytes: u64,
    counters: Arc<Counters>,
    waiting: Arc<Waiting>,
}

/// Chunks that had to wait for room in the queue (TCP, tailed files), from their first refusal
/// until the batcher has taken them in: the heartbeat must not claim their messages stored
/// because its mark overtook them.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    next: AtomicU64,
    held: Mutex<Vec<(u64, InputKind, i64)>>,
}

impl Waiting {
    /// The oldest receive time (ns) of the held chunks of each kind, by [`slot`].
    pub fn oldest(&self) -> OpenOldest {
        let mut out = OpenOldest::default();
        for &(_, kind, ns) in self.held.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let o = &mut out[slot(kind)];
            *o = Some(o.map_or(ns, |v: i64| v.min(ns)));
        }
        out
    }

    fn hold(self: &Arc<Self>, chunk: &mut Chunk) {
        if chunk.held.is_some() {
            return;
        }
        let Some(oldest) = chunk.msgs.iter().map(|m| m.recv_ns).min() else {
            return;
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, chunk.kind, oldest));
        chunk.held = Some(Held {
            waiting: self.clone(),
            id,
        });
    }
}

/// A chunk's entry in [`Waiting`], removed when the chunk is dropped (taken in by the batcher,
/// or dropped and counted).
#[derive(Debug)]
struct Held {
    waiting: Arc<Waiting>,
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.waiting
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|h| h.0 != self.id);
    }
}

pub(crate) struct QueueRx {
    rx: Receiver<Input>,
    queued: Arc<AtomicU64>,
}

pub(crate) fn queue(chunks: usize, max_bytes: u64, counters: Arc<Counters>) -> (QueueTx, QueueRx) {
    let (tx, rx) = std::sync::mpsc::sync_channel(chunks);
    let queued = Arc::new(AtomicU64::new(0));
    (
        QueueTx {
            tx,
            queued: queued.clone(),
            max_bytes,
            counters,
            waiting: Arc::default(),
        },
        QueueRx { rx, queued },
    )
}

static QUEUE_FULL_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

impl QueueTx {
    /// Hands a chunk to the batcher without waiting; gives it back when the queue is full.
    pub fn try_push(&self, chunk: Chunk) -> Result<(), Chunk> {
        let cost = chunk.cost();
        let before = self.queued.fetch_add(cost, Ordering::AcqRel);
        // A chunk larger than the whole budget still goes through when the queue is empty.
        if before > 0 && before + cost > self.max_bytes {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return Err(chunk);
        }
        match self.tx.try_send(Input::Chunk(chunk)) {
            Ok(()) => Ok(()),
            Err(
                TrySendError::Full(Input::Chunk(c)) | TrySendError::Disconnected(Input::Chunk(c)),
            ) => {
                self.queued.fetch_sub(cost, Ordering::AcqRel);
                Err(c)
            }
            Err(_) => unreachable!("we sent a chunk"),
        }
    }

    /// [`QueueTx::try_push`], counting the chunk as dropped (`queue_full`) when it does not fit.
    pub fn push_or_drop(&self, chunk: Chunk, source: &str) -> bool {
        match self.try_push(chunk) {
            Ok(()) => true,
            Err(c) => {
                self.count_full(c, source);
                false
            }
        }
    }

    /// Waits up to `wait` for room (TCP: the peer is held back by flow control meanwhile), then drops.
    pub async fn push_wait(&self, chunk: Chunk, wait: Duration, source: &str) -> bool {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        let mut chunk = match self.try_push(chunk) {
            Ok(()) => return true,
            Err(c) => c,
        };
        self.hold(&mut chunk);
        loop {
            match self.try_push(chunk) {
                Ok(()) => return true,
                Err(c) => {
                    if Instant::now() >= deadline {
                        self.count_full(c, source);
                        return false;
                    }
                    chunk = c;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// Registers a chunk that has to wait for room (see [`Waiting`]); once is enough.
    pub fn hold(&self, chunk: &mut Chunk) {
        self.waiting.hold(chunk)
    }

    /// The chunks sources hold while they wait for room.
    pub fn waiting(&self) -> &Waiting {
        &self.waiting
    }

    /// Asks the batcher for its open batches' oldest receive times, once everything queued
    /// before is in an open batch and every batch closed before is in the spool.
    pub async fn mark(&self) -> Result<OpenOldest, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.send_control(Input::Mark(tx)).await?;
        rx.await.map_err(|_| RelayError::Stopped)
    }

    fn count_full(&self, c: Chunk, source: &str) {
        let since = c
            .msgs
            .iter()
            .map(|m| m.recv_ns)
            .min()
            .unwrap_or_else(now_ns);
        self.counters.count_drop_since(
            DropReason::QueueFull,
            c.kind,
            c.len() as u64,
            c.data.len() as u64,
            since,
        );
        if let Some(suppressed) = QUEUE_FULL_LOG.allow() {
            tracing::warn!(
                source,
                dropped = c.len(),
                suppressed,
                "queue to the batcher is full; dropping messages (counted as queue_full)"
            );
        }
    }

    /// Sends a control message, waiting for room (used off the hot path).
    async fn send_control(&self, msg: Input) -> Result<(), RelayError> {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(msg).map_err(|_| RelayError::Stopped))
            .await
            .map_err(|_| RelayError::Stopped)?
    }
}

pub(crate) struct BatcherSettings {
    pub relay_id: String,
    pub labels: BTreeMap<String, String>,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub zstd_level: i32,
    /// At most one per kind (see [`ContextHook`]).
    pub context_hooks: Vec<Box<dyn ContextHook>>,
}

/// Receives context records: `(receive time, peer, payload)`.
pub(crate) type EmitContext<'a> = dyn FnMut(i64, Option<SocketAddr>, &[u8]) + 'a;

/// Lets an input kind write context records (IPFIX / NetFlow v9 templates) into its batches.
/// Called on the batcher thread for every record of its kind, in order, just before the record
/// is added to the open batch; `new_batch` is true when that batch holds no record yet. Records
/// passed to `emit` go into the same batch with `natlake_raw::FLAG_CONTEXT`.
pub(crate) trait ContextHook: Send {
    fn kind(&self) -> InputKind;
    fn before_record(
        &mut self,
        new_batch: bool,
        recv_ns: i64,
        peer: Option<SocketAddr>,
        payload: &[u8],
        emit: &mut EmitContext<'_>,
    );
}

pub(crate) struct Batcher {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Batcher {
    pub fn start(
        settings: BatcherSettings,
        rx: QueueRx,
        spool: Arc<Spool>,
        uploader: Arc<Notify>,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let spooler = SpoolWriter::start(spool, uploader, counters.clone())?;
        let thread = std::thread::Builder::new()
            .name("relay-batcher".into())
            .spawn(move || {
                let mut settings = settings;
                let mut hooks: [Option<Box<dyn ContextHook>>; InputKind::ALL.len()] =
                    Default::default();
                for h in settings.context_hooks.drain(..) {
                    let i = slot(h.kind());
                    hooks[i] = Some(h);
                }
                let mut w = Worker {
                    hooks,
                    s: settings,
                    open: Default::default(),
                    spooler,
                    counters,
                };
                w.run(rx);
            })?;
        Ok(Self {
            thread: Some(thread),
        })
    }

    pub async fn flush(&self, q: &QueueTx) -> Result<(), RelayError> {
        let (tx, rx) = oneshot::channel();
        q.send_control(Input::Flush(tx)).await?;
        rx.await.map_err(|_| RelayError::Stopped)
    }

    /// Closes and spools the open batches, then stops the thread.
    pub async fn shutdown(mut self, q: &QueueTx) -> Result<(), RelayError> {
        let (tx, rx) = oneshot::channel();
        let sent = q.send_control(Input::Shutdown(tx)).await;
        let acked = match sent {
            Ok(()) => rx.await.map_err(|_| RelayError::Stopped),
            Err(e) => Err(e),
        };
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        acked
    }
}

struct Open {
    writer: RawWriter,
    created_ns: i64,
    /// The oldest receive time among its records (a record may have waited in the queue, so
    /// it can be older than `created_ns`).
    oldest_ns: i64,
    batch_id: String,
    deadline: Instant,
    payload_bytes: u64,
}

#[derive(Clone, Copy)]
enum CloseReason {
    Size,
    Age,
    Flush,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Age => "age",
            Self::Flush => "flush",
        }
    }
}

struct Worker {
    hooks: [Option<Box<dyn ContextHook>>; InputKind::ALL.len()],
    s: BatcherSettings,
    open: [Option<Open>; InputKind::ALL.len()],
    spooler: SpoolWriter,
    counters: Arc<Counters>,
}

/// A finished batch on its way to the spool.
struct SpoolJob {
    key: String,
    kind: InputKind,
    records: u64,
    oldest_ns: i64,
    payload_bytes: u64,
    bytes: Vec<u8>,
}

enum SpoolMsg {
    Write(SpoolJob),
    /// Answered once every batch sent before it is written (or counted as dropped).
    Barrier(Sender<()>),
}

/// The spool thread and the bound on what waits for it.
struct SpoolWriter {
    tx: Option<Sender<SpoolMsg>>,
    /// Compressed bytes sent and not yet written.
    pending: Arc<(Mutex<u64>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    spool: Arc<Spool>,
    uploader: Arc<Notify>,
    counters: Arc<Counters>,
}

impl SpoolWriter {
    fn start(
        spool: Arc<Spool>,
        uploader: Arc<Notify>,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<SpoolMsg>();
        let pending = Arc::new((Mutex::new(0u64), Condvar::new()));
        let thread = {
            let (spool, uploader, counters, pending) = (
                spool.clone(),
                uploader.clone(),
                counters.clone(),
                pending.clone(),
            );
            std::thread::Builder::new()
                .name("relay-spool".into())
                .spawn(move || {
                    for msg in rx {
                        match msg {
                            SpoolMsg::Write(job) => {
                                let len = job.bytes.len() as u64;
                                write_job(&spool, &uploader, &counters, job);
                                let (lock, cv) = &*pending;
                                let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                                *p = p.saturating_sub(len);
                                cv.notify_all();
                            }
                            SpoolMsg::Barrier(ack) => {
                                let _ = ack.send(());
                            }
                        }
                    }
                })?
        };
        Ok(Self {
            tx: Some(tx),
            pending,
            thread: Some(thread),
            spool,
            uploader,
            counters,
        })
    }

    fn alive(&self) -> bool {
        self.tx.is_some() && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Queues a finished batch; waits while more than [`SPOOL_PENDING_BYTES`] are queued.
    fn write(&self, job: SpoolJob) {
        let len = job.bytes.len() as u64;
        let (lock, cv) = &*self.pending;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *p > 0 && *p + len > SPOOL_PENDING_BYTES && self.alive() {
            p = cv
                .wait_timeout(p, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *p += len;
        drop(p);
        let job = match &self.tx {
            Some(tx) => match tx.send(SpoolMsg::Write(job)) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(SpoolMsg::Write(job))) => job,
                Err(_) => unreachable!("we sent a write"),
            },
            None => job,
        };
        // The spool thread is gone (it cannot be, short of a panic): write here.
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        *p = p.saturating_sub(len);
        drop(p);
        write_job(&self.spool, &self.uploader, &self.counters, job);
    }

    /// Returns once everything queued before is written.
    fn barrier(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        if let Some(tx) = &self.tx
            && tx.send(SpoolMsg::Barrier(ack)).is_ok()
        {
            let _ = done.recv();
        }
    }

    /// Writes what is queued and stops the thread.
    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_job(spool: &Spool, uploader: &Notify, counters: &Counters, job: SpoolJob) {
    match spool.write(&job.key, job.records, job.oldest_ns, &job.bytes) {
        Ok(()) => uploader.notify_one(),
        Err(reason) => counters.count_drop_since(
            reason,
            job.kind,
            job.records,
            job.payload_bytes,
            job.oldest_ns,
        ),
    }
}

static ENCODE_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

pub(crate) fn slot(kind: InputKind) -> usize {
    kind.code() as usize - 1
}

impl Worker {
    fn run(&mut self, q: QueueRx) {
        loop {
            let now = Instant::now();
            let wait = self
                .open
                .iter()
                .flatten()
                .map(|o| o.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(3600));
            match q.rx.recv_timeout(wait) {
                Ok(Input::Chunk(c)) => {
                    q.queued.fetch_sub(c.cost(), Ordering::AcqRel);
                    self.add(&c);
                }
                Ok(Input::Flush(ack)) => {
                    self.close_all(CloseReason::Flush);
                    self.spooler.barrier();
                    let _ = ack.send(());
                }
                Ok(Input::Mark(ack)) => {
                    self.spooler.barrier();
                    let mut out = OpenOldest::default();
                    for (o, slot) in self.open.iter().zip(out.iter_mut()) {
                        *slot = o
                            .as_ref()
                            .filter(|o| o.writer.records() > 0)
                            .map(|o| o.oldest_ns);
                    }
                    let _ = ack.send(out);
                }
                Ok(Input::Shutdown(ack)) => {
                    self.close_all(CloseReason::Flush);
                    self.spooler.stop();
                    let _ = ack.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.close_all(CloseReason::Flush);
                    self.spooler.stop();
                    return;
                }
            }
            let now = Instant::now();
            for kind in InputKind::ALL {
                if self.open[slot(kind)]
                    .as_ref()
                    .is_some_and(|o| o.deadline <= now)
                {
                    self.close(kind, CloseReason::Age);
                }
            }
        }
    }

    fn add(&mut self, c: &Chunk) {
        let kind = c.kind;
        let i = slot(kind);
        for (m, payload) in c.iter() {
            let need = RECORD_OVERHEAD + payload.len() as u64;
            if self.open[i].as_ref().is_some_and(|o| {
                o.writer.records() > 0 && o.writer.raw_bytes() + need > self.s.max_bytes
            }) {
                self.close(kind, CloseReason::Size);
            }
            if self.open[i].is_none() {
                match self.new_batch(kind) {
                    Ok(o) => self.open[i] = Some(o),
                    Err(e) => {
                        self.counters.count_drop(
                            DropReason::EncodeError,
                            kind,
                            1,
                            payload.len() as u64,
                        );
                        if let Some(suppressed) = ENCODE_LOG.allow() {
                            tracing::error!(%kind, error = %e, suppressed, "cannot open a batch");
                        }
                        continue;
                    }
                }
            }
            let o = self.open[i].as_mut().expect("opened above");
            if let Some(hook) = self.hooks[i].as_mut() {
                let w = &mut o.writer;
                hook.before_record(
                    w.records() == 0,
                    m.recv_ns,
                    m.peer,
                    payload,
                    &mut |t, p, b| {
                        // Context records are small (< 64 KiB): the format cannot refuse them.
                        let _ = w.push_parts(t, kind, natlake_raw::FLAG_CONTEXT, p, b);
                    },
                );
            }
            match o.writer.push_parts(m.recv_ns, kind, 0, m.peer, payload) {
                Ok(()) => {
                    o.payload_bytes += payload.len() as u64;
                    o.oldest_ns = o.oldest_ns.min(m.recv_ns);
                }
                Err(e) => {
                    self.counters.count_drop(
                        DropReason::EncodeError,
                        kind,
                        1,
                        payload.len() as u64,
                    );
                    if let Some(suppressed) = ENCODE_LOG.allow() {
                        tracing::warn!(%kind, len = payload.len(), error = %e, suppressed, "record refused");
                    }
                }
            }
            if o.writer.raw_bytes() >= self.s.max_bytes {
                self.close(kind, CloseReason::Size);
            }
        }
    }

    fn new_batch(&self, kind: InputKind) -> Result<Open, natlake_raw::RawError> {
        let created_ns = now_ns();
        let batch_id = uuid::Uuid::now_v7().to_string();
        let header = BatchHeader {
            format_version: natlake_raw::VERSION,
            relay_id: self.s.relay_id.clone(),
            batch_id: batch_id.clone(),
            kind,
            created_ns,
            labels: self.s.labels.clone(),
        };
        let writer = RawWriter::new(&header, self.s.zstd_level)?;
        Ok(Open {
            writer,
            created_ns,
            oldest_ns: i64::MAX,
            batch_id,
            deadline: Instant::now() + self.s.max_age,
            payload_bytes: 0,
        })
    }

    fn close_all(&mut self, why: CloseReason) {
        for kind in InputKind::ALL {
            self.close(kind, why);
        }
    }

    fn close(&mut self, kind: InputKind, why: CloseReason) {
        let Some(o) = self.open[slot(kind)].take() else {
            return;
        };
        let records = o.writer.records();
        if records == 0 {
            return;
        }
        let raw_bytes = o.writer.raw_bytes();
        let bytes = match o.writer.finish() {
            Ok(b) => b,
            Err(e) => {
                self.counters.count_drop_since(
                    DropReason::EncodeError,
                    kind,
                    records,
                    o.payload_bytes,
                    o.oldest_ns.min(o.created_ns),
                );
                if let Some(suppressed) = ENCODE_LOG.allow() {
                    tracing::error!(%kind, records, error = %e, suppressed, "cannot finish a batch");
                }
                return;
            }
        };
        let key = natlake_raw::key::raw_key(kind, o.created_ns, &self.s.relay_id, &o.batch_id);
        ::metrics::counter!("edge_relay_batches_closed_total", "kind" => kind.as_str(), "reason" => why.as_str())
            .increment(1);
        tracing::debug!(%key, records, raw_bytes, compressed = bytes.len(), reason = why.as_str(), "batch closed");
        self.spooler.write(SpoolJob {
            key,
            kind,
            records,
            oldest_ns: o.oldest_ns.min(o.created_ns),
            payload_bytes: o.payload_bytes,
            bytes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_overhead_matches_the_format() {
        let r = natlake_raw::Record {
            recv_ns: 0,
            kind: InputKind::SyslogUdp,
            flags: 0,
            peer: None,
            payload: vec![1, 2, 3],
        };
        assert_eq!(r.encoded_len() as u64, RECORD_OVERHEAD + 3);
    }

    #[test]
    fn chunk_iterates_payloads_in_order() {
        let mut c = Chunk::new(InputKind::SyslogUdp);
        c.push(1, None, b"ab");
        c.push(2, None, b"");
        c.push(3, Some("127.0.0.1:9".parse().unwrap()), b"cde");
        let got: Vec<_> = c.iter().map(|(m, p)| (m.recv_ns, p.to_vec())).collect();
        assert_eq!(
            got,
            vec![(1, b"ab".to_vec()), (2, vec![]), (3, b"cde".to_vec())]
        );
    }

    /// A chunk that had to wait for room stays in the heartbeat's view until the batcher has
    /// taken it in, not just until it is in the queue (a mark queued before it would answer
    /// without it).
    #[test]
    fn a_waiting_chunk_is_held_until_the_batcher_takes_it() {
        let counters = Arc::new(Counters::default());
        let (tx, rx) = queue(1, 100_000, counters);
        let mk = |recv_ns: i64| {
            let mut c = Chunk::new(InputKind::SyslogTcp);
            c.push(recv_ns, None, b"x");
            c.push(recv_ns + 1, None, b"y");
            c
        };
        let held = |tx: &QueueTx| tx.waiting().oldest()[slot(InputKind::SyslogTcp)];
        tx.try_push(mk(5)).unwrap();
        let mut c = tx.try_push(mk(3)).unwrap_err();
        assert_eq!(held(&tx), None);
        tx.hold(&mut c);
        tx.hold(&mut c);
        assert_eq!(held(&tx), Some(3));
        let first = rx.rx.recv().unwrap();
        drop(first);
        tx.try_push(c).unwrap();
        assert_eq!(held(&tx), Some(3), "in the queue, not yet taken in");
        match rx.rx.recv().unwrap() {
            Input::Chunk(c) => drop(c),
            _ => panic!("a chunk was queued"),
        }
        assert_eq!(held(&tx), None);
        assert!(tx.waiting().held.lock().unwrap().is_empty());
    }

    #[test]
    fn queue_is_bounded_by_bytes_and_counts() {
        let counters = Arc::new(Counters::default());
        let (tx, rx) = queue(2, 100_000, counters.clone());
        let mk = |n: usize| {
            let mut c = Chunk::new(InputKind::SyslogUdp);
            c.push(0, None, &vec![b'x'; n]);
            c
        };
        // Alone, even an over-budget chunk passes; after it the budget is exhausted.
        assert!(tx.try_push(mk(200_000)).is_ok());
        assert!(tx.try_push(mk(10)).is_err());
        drop(rx);
        let (tx, _rx) = queue(2, 100_000, counters.clone());
        assert!(tx.try_push(mk(10)).is_ok());
        assert!(tx.try_push(mk(10)).is_ok());
        assert!(
            tx.try_push(mk(10)).is_err(),
            "two chunks is the channel's bound"
        );
        assert!(!tx.push_or_drop(mk(10), "t"));
        assert_eq!(
            counters.dropped_messages[DropReason::QueueFull.index()].load(Ordering::Relaxed),
            1
        );
    }
}
