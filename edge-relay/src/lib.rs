//! edge-relay: a tiny, lossless relay from network log inputs into raw batches in object storage.
//!
//! Data path (one direction, every hop bounded):
//!
//! ```text
//! sources (UDP threads with recvmmsg, TCP tasks)
//!    │  chunks of messages; bounded queue (count and bytes); full → counted drop "queue_full"
//!    ▼
//! batcher thread: one open raw object writer per input kind; closes by size or age
//!    │  finished object bytes + key
//!    ▼
//! spool: temp file → fsync → rename → fsync dir; bounded by bytes; full → counted drop "spool_full"
//!    │  notify
//!    ▼
//! uploader task: put in spool order, retry forever with capped, jittered backoff;
//!                delete the spool file only after the store confirmed the put
//! ```
//!
//! Beside them, the heartbeat task rewrites `_state/relays/<relay>.json`: up to when each kind
//! is stored (see [`natlake_raw::heartbeat`]).
//!
//! The all-in-one binary embeds it with [`Relay::start`] and stops it with [`RelayHandle::shutdown`].

mod batch;
pub mod config;
mod drops;
mod heartbeat;
pub mod metrics;
mod raw_writer;
mod sources;
mod spool;
pub mod templates;
mod tls;
mod upload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use config::{
    BatchConfig, ByteSize, Cli, ConfigError, ConntrackSourceConfig, FlowSourceConfig,
    JsonFileSourceConfig, JsonStdinSourceConfig, MetricsConfig, ReceiveMode, RelayConfig,
    SinkConfig, SourceConfig, SpoolConfig, TcpSourceConfig, TlsConfig, UdpSourceConfig,
};
pub use natlake_raw::InputKind;
pub use natlake_store::DynStore;
pub use tls::{TlsError, TlsFailure};

/// Errors the library reports to its caller. Everything after start-up is counted, not returned.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] natlake_store::StoreError),
    #[error("spool {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    #[error("spool {0} is in use by another relay")]
    SpoolLocked(String),
    #[error("starting {kind} source {name:?} on {endpoint}: {source}")]
    Bind {
        kind: InputKind,
        name: String,
        endpoint: String,
        source: std::io::Error,
    },
    #[error("metrics listener on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the relay has stopped")]
    Stopped,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Why a message (or a connection) was not accepted. Every one is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The queue between the sources and the batcher was full.
    QueueFull,
    /// A datagram larger than the source's `max_message` (truncated by the kernel).
    Oversized,
    /// A TCP frame larger than `max_frame`, or an octet count above it.
    FrameTooLarge,
    /// A TCP connection ended (or idled out) in the middle of a frame.
    IncompleteFrame,
    /// The spool has no room for the batch.
    SpoolFull,
    /// Writing the batch to the spool failed (disk error).
    SpoolError,
    /// The raw format refused the record (larger than its limit) or the batch could not be encoded.
    EncodeError,
    /// A UDP datagram on a flow port that is neither NetFlow (v1/5/7/9) nor IPFIX.
    UnknownVersion,
    /// A flow datagram shorter than its version's header.
    TruncatedHeader,
    /// The kernel could not deliver netlink events (ENOBUFS): one count per overrun; how many
    /// events were lost is unknown.
    NetlinkOverrun,
    /// A netlink message that could not be decoded.
    DecodeError,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        Self::QueueFull,
        Self::Oversized,
        Self::FrameTooLarge,
        Self::IncompleteFrame,
        Self::SpoolFull,
        Self::SpoolError,
        Self::EncodeError,
        Self::UnknownVersion,
        Self::TruncatedHeader,
        Self::NetlinkOverrun,
        Self::DecodeError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Oversized => "oversized",
            Self::FrameTooLarge => "frame_too_large",
            Self::IncompleteFrame => "incomplete_frame",
            Self::SpoolFull => "spool_full",
            Self::SpoolError => "spool_error",
            Self::EncodeError => "encode_error",
            Self::UnknownVersion => "unknown_version",
            Self::TruncatedHeader => "truncated_header",
            Self::NetlinkOverrun => "netlink_overrun",
            Self::DecodeError => "decode_error",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).expect("listed")
    }
}

/// Shared counters of one relay instance (also exported as Prometheus metrics).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received_messages: AtomicU64,
    pub received_bytes: AtomicU64,
    pub dropped_messages: [AtomicU64; DropReason::ALL.len()],
    pub dropped_bytes: [AtomicU64; DropReason::ALL.len()],
    pub tcp_connections_accepted: AtomicU64,
    pub tcp_connections_refused: AtomicU64,
    /// TLS connections that never carried a message, by [`TlsFailure`].
    pub tls_handshake_failures: [AtomicU64; TlsFailure::ALL.len()],
    pub batches_spooled: AtomicU64,
    pub batches_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub records_uploaded: AtomicU64,
    pub upload_errors: AtomicU64,
    pub kernel_drops: AtomicU64,
    /// Flow datagrams kept raw despite damage, by [`templates::Issue`].
    pub flow_issues: [AtomicU64; templates::Issue::ALL.len()],
    pub templates_cached: AtomicU64,
    pub template_evictions: AtomicU64,
    /// UDP receive threads running on io_uring, and those that fell back to recvmmsg because
    /// io_uring was unavailable (`receive = "auto"`).
    pub udp_io_uring_workers: AtomicU64,
    pub udp_receive_fallbacks: AtomicU64,
    /// The latest failed put, explained (cleared by nothing: it is history).
    pub last_upload_error: std::sync::Mutex<Option<String>>,
    /// When drops happened, for the heartbeat to publish.
    pub drops: drops::DropLog,
}

impl Counters {
    /// Messages and bytes a source accepted (before any later drop).
    pub(crate) fn add_received(&self, msgs: u64, bytes: u64) {
        self.received_messages
            .fetch_add(msgs, std::sync::atomic::Ordering::Relaxed);
        self.received_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Counters {
    /// Counts a drop of `messages` messages totalling `bytes` payload bytes, received now.
    pub fn count_drop(&self, reason: DropReason, kind: InputKind, messages: u64, bytes: u64) {
        self.count_drop_since(reason, kind, messages, bytes, now_ns());
    }

    /// [`Counters::count_drop`] for messages received from `since_ns` on (a whole batch).
    pub fn count_drop_since(
        &self,
        reason: DropReason,
        kind: InputKind,
        messages: u64,
        bytes: u64,
        since_ns: i64,
    ) {
        self.drops
            .record(kind, reason.as_str(), messages, since_ns, now_ns());
        let i = reason.index();
        self.dropped_messages[i].fetch_add(messages, Ordering::Relaxed);
        self.dropped_bytes[i].fetch_add(bytes, Ordering::Relaxed);
        ::metrics::counter!("edge_relay_dropped_messages_total", "reason" => reason.as_str(), "kind" => kind.as_str())
            .increment(messages);
        ::metrics::counter!("edge_relay_dropped_bytes_total", "reason" => reason.as_str(), "kind" => kind.as_str())
            .increment(bytes);
    }

    /// Counts a flow datagram kept raw despite `issue`.
    pub fn count_issue(&self, kind: InputKind, issue: templates::Issue) {
        self.flow_issues[issue.index()].fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!("edge_relay_flow_decode_issues_total", "reason" => issue.as_str(), "kind" => kind.as_str())
            .increment(1);
    }
}

/// A snapshot of what the relay did. Returned by [`RelayHandle::stats`] and [`RelayHandle::shutdown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted by the sources (before any later drop).
    pub received_messages: u64,
    pub received_bytes: u64,
    /// Dropped messages by reason (`DropReason::as_str`); reasons with no drop are absent.
    pub dropped_messages: BTreeMap<&'static str, u64>,
    pub dropped_bytes: BTreeMap<&'static str, u64>,
    pub tcp_connections_accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub tcp_connections_refused: u64,
    /// Failed TLS handshakes by reason (`TlsFailure::as_str`); reasons with none are absent.
    pub tls_handshake_failures: BTreeMap<&'static str, u64>,
    pub batches_spooled: u64,
    pub batches_uploaded: u64,
    /// Compressed bytes confirmed by the store.
    pub bytes_uploaded: u64,
    pub records_uploaded: u64,
    /// Failed put attempts (each is retried).
    pub upload_errors: u64,
    /// Files and bytes waiting in the spool.
    pub spool_files: u64,
    pub spool_bytes: u64,
    /// Kernel receive-buffer drops of our UDP sockets (from /proc/net/udp, where readable).
    pub kernel_drops: u64,
    /// Flow datagrams kept raw despite damage, by reason (`templates::Issue::as_str`).
    pub flow_issues: BTreeMap<&'static str, u64>,
    /// IPFIX / NetFlow v9 template records currently cached, and evicted so far.
    pub templates_cached: u64,
    pub template_evictions: u64,
    /// UDP syslog receive threads on io_uring.
    pub udp_io_uring_workers: u64,
    /// UDP syslog receive threads that wanted io_uring (`receive = "auto"`), could not have it
    /// (old kernel, seccomp, `kernel.io_uring_disabled`) and run on recvmmsg instead.
    pub udp_receive_fallbacks: u64,
    /// The latest failed upload attempt, explained (e.g. refused credentials), if any.
    pub last_upload_error: Option<String>,
}

impl Stats {
    /// Total messages dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_messages.values().sum()
    }

    /// Failed TLS handshakes for `failure`.
    pub fn tls_failures(&self, failure: TlsFailure) -> u64 {
        self.tls_handshake_failures
            .get(failure.as_str())
            .copied()
            .unwrap_or(0)
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_messages
            .get(reason.as_str())
            .copied()
            .unwrap_or(0)
    }
}

/// One source as started (useful when the configuration asked for port 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSource {
    pub name: String,
    pub kind: InputKind,
    /// The bound socket address; `None` for netlink, files and stdin.
    pub addr: Option<SocketAddr>,
}

/// Entry point.
pub struct Relay;

impl Relay {
    /// Opens the store named by `cfg.sink`, then starts everything (see [`Relay::start_with_store`]).
    pub async fn start(cfg: RelayConfig) -> Result<RelayHandle, RelayError> {
        cfg.validate()?;
        let store = natlake_store::open(&cfg.sink.store, &cfg.sink.s3)?;
        Self::start_with_store(cfg, store).await
    }

    /// Starts the relay against an already opened store: opens (and locks) the spool, starts the
    /// uploader (which replays whatever an earlier run left in the spool first), the batcher, the
    /// sources and the metrics listener. Must be called inside a Tokio runtime.
    pub async fn start_with_store(
        cfg: RelayConfig,
        store: DynStore,
    ) -> Result<RelayHandle, RelayError> {
        cfg.validate()?;
        if cfg.metrics.address.is_some() {
            // Before any metric handle is registered, or those handles would go nowhere.
            metrics::prometheus_handle();
        }
        let counters = Arc::new(Counters::default());
        let spool = Arc::new(spool::Spool::open(
            &cfg.spool.dir,
            cfg.spool.max_bytes.0,
            counters.clone(),
        )?);
        if spool.files() > 0 {
            tracing::info!(
                files = spool.files(),
                bytes = spool.bytes(),
                dir = %cfg.spool.dir.display(),
                "replaying batches left in the spool"
            );
        }
        // With the spool locked: only this relay reads and writes its local heartbeat.
        heartbeat::recover(
            &cfg.spool.dir,
            &cfg.relay_id(),
            &source_kinds(&cfg.sources),
            &counters,
        );
        let uploader = upload::Uploader::start(
            spool.clone(),
            store.clone(),
            cfg.sink.clone(),
            counters.clone(),
        );

        let (queue_tx, queue_rx) = batch::queue(
            cfg.batch.queue_chunks,
            cfg.batch.queue_bytes.0,
            counters.clone(),
        );
        let batcher = batch::Batcher::start(
            batch::BatcherSettings {
                relay_id: cfg.relay_id(),
                labels: cfg.labels.clone(),
                max_bytes: cfg.batch.max_bytes.0,
                max_age: cfg.batch.max_age,
                zstd_level: cfg.batch.zstd_level,
                context_hooks: flow_hooks(&cfg, &counters),
            },
            queue_rx,
            spool.clone(),
            uploader.notifier(),
            counters.clone(),
        )
        .map_err(|source| RelayError::Spool {
            path: "batcher thread".into(),
            source,
        })?;

        let heartbeat = heartbeat::HeartbeatTask::start(
            heartbeat::Beat {
                relay_id: cfg.relay_id(),
                started_us: now_ns() / 1000,
                kinds: source_kinds(&cfg.sources),
                store: store.clone(),
                spool: spool.clone(),
                queue: queue_tx.clone(),
                counters: counters.clone(),
            },
            cfg.sink.heartbeat_interval,
            uploader.uploaded(),
        );

        let stop = sources::Stop::new();
        let (bound, running) =
            match sources::start_all(&cfg.sources, &cfg.spool.dir, &queue_tx, &counters, &stop)
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    // Release the spool lock and the threads before reporting.
                    heartbeat.stop().await;
                    let _ = batcher.shutdown(&queue_tx).await;
                    uploader.stop(Duration::ZERO).await;
                    return Err(e);
                }
            };
        let metrics = match metrics::start(
            cfg.metrics.address,
            running.udp_inodes.clone(),
            counters.clone(),
            spool.clone(),
        )
        .await
        {
            Ok(m) => m,
            Err(source) => {
                heartbeat.stop().await;
                stop.stop_all(running.tasks).await;
                let _ = batcher.shutdown(&queue_tx).await;
                uploader.stop(Duration::ZERO).await;
                let addr = cfg.metrics.address.expect("only binds when set");
                return Err(RelayError::Metrics { addr, source });
            }
        };
        tracing::info!(
            relay_id = %cfg.relay_id(),
            store = %cfg.sink.store,
            sources = ?bound.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
            "edge-relay started"
        );
        Ok(RelayHandle {
            bound,
            counters,
            spool,
            queue_tx,
            batcher,
            uploader,
            stop,
            udp_inodes: running.udp_inodes,
            source_tasks: running.tasks,
            metrics,
            heartbeat,
            shutdown_timeout: cfg.shutdown_timeout,
        })
    }
}

/// A running relay.
pub struct RelayHandle {
    bound: Vec<BoundSource>,
    counters: Arc<Counters>,
    spool: Arc<spool::Spool>,
    queue_tx: batch::QueueTx,
    batcher: batch::Batcher,
    uploader: upload::Uploader,
    stop: sources::Stop,
    udp_inodes: Vec<(String, u64)>,
    source_tasks: Vec<sources::SourceTask>,
    metrics: metrics::MetricsTask,
    heartbeat: heartbeat::HeartbeatTask,
    shutdown_timeout: Duration,
}

impl RelayHandle {
    /// Every source with the address it is bound to, in configuration order.
    pub fn sources(&self) -> &[BoundSource] {
        &self.bound
    }

    /// The bound address of the first source of `kind`.
    pub fn local_addr(&self, kind: InputKind) -> Option<SocketAddr> {
        self.bound
            .iter()
            .filter(|b| b.kind == kind)
            .find_map(|b| b.addr)
    }

    /// The bound address of the Prometheus listener, if one was configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.addr()
    }

    pub fn stats(&self) -> Stats {
        snapshot(&self.counters, &self.spool)
    }

    /// Closes every open batch now and writes it to the spool; returns once they are spooled
    /// (not yet uploaded: see [`RelayHandle::wait_uploaded`]). Messages the sources handed over
    /// before this call are in those batches.
    pub async fn flush_now(&self) -> Result<(), RelayError> {
        self.batcher.flush(&self.queue_tx).await
    }

    /// Waits until the spool is empty (everything spooled so far is confirmed by the store).
    pub async fn wait_uploaded(&self, timeout: Duration) -> Result<(), RelayError> {
        let deadline = Instant::now() + timeout;
        while self.spool.files() > 0 {
            if Instant::now() >= deadline {
                return Err(RelayError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// [`RelayHandle::shutdown_within`] with the configured `shutdown_timeout`.
    pub async fn shutdown(self) -> Result<Stats, RelayError> {
        let t = self.shutdown_timeout;
        self.shutdown_within(t).await
    }

    /// Stops receiving, closes the open batches, spools them and uploads what it can within
    /// `timeout`. Whatever is not confirmed by then stays in the spool for the next start.
    pub async fn shutdown_within(self, timeout: Duration) -> Result<Stats, RelayError> {
        let deadline = Instant::now() + timeout;
        let RelayHandle {
            counters,
            spool,
            queue_tx,
            batcher,
            uploader,
            stop,
            udp_inodes,
            source_tasks,
            metrics: metrics_task,
            heartbeat,
            ..
        } = self;
        let beat = heartbeat.stop().await;
        // Last look at the kernel's drop counters while our sockets still exist.
        metrics::refresh_kernel_drops(&udp_inodes, &counters);
        stop.stop_all(source_tasks).await;
        let flushed = batcher.shutdown(&queue_tx).await;
        drop(queue_tx);
        let left = deadline.saturating_duration_since(Instant::now());
        uploader.stop(left).await;
        // What is stored now, and that nothing more is received: lookups stop waiting on the
        // open batch of a relay stopped on purpose, not on what is left in its spool.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        match tokio::time::timeout(left, beat.last()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the last heartbeat"),
            Err(_) => tracing::warn!("timed out writing the last heartbeat"),
        }
        metrics_task.stop().await;
        let stats = snapshot(&counters, &spool);
        if stats.spool_files > 0 {
            tracing::warn!(
                files = stats.spool_files,
                bytes = stats.spool_bytes,
                "stopping with batches still in the spool; they are uploaded at the next start"
            );
        }
        drop(spool);
        flushed?;
        Ok(stats)
    }
}

/// The input kinds the sources produce (a flow listener takes both IPFIX and NetFlow v9).
fn source_kinds(sources: &[SourceConfig]) -> Vec<InputKind> {
    let mut kinds: Vec<InputKind> = Vec::new();
    for s in sources {
        let more: &[InputKind] = match s {
            SourceConfig::IpfixUdp(_) | SourceConfig::NetflowUdp(_) => {
                &[InputKind::Ipfix, InputKind::Netflow]
            }
            _ => &[s.kind()],
        };
        for k in more {
            if !kinds.contains(k) {
                kinds.push(*k);
            }
        }
    }
    kinds
}

/// One template-replaying batcher hook per flow kind that a source may produce.
fn flow_hooks(cfg: &RelayConfig, counters: &Arc<Counters>) -> Vec<Box<dyn batch::ContextHook>> {
    let max: usize = cfg
        .sources
        .iter()
        .filter_map(|s| match s {
            SourceConfig::IpfixUdp(f) | SourceConfig::NetflowUdp(f) => Some(f.max_templates),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    if max == 0 {
        return Vec::new();
    }
    // One UDP listener may receive both versions: both kinds get a hook.
    [InputKind::Ipfix, InputKind::Netflow]
        .into_iter()
        .map(|k| {
            Box::new(templates::FlowContext::new(k, max, counters.clone()))
                as Box<dyn batch::ContextHook>
        })
        .collect()
}

fn snapshot(c: &Counters, spool: &spool::Spool) -> Stats {
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let by_reason = |arr: &[AtomicU64; DropReason::ALL.len()]| {
        DropReason::ALL
            .iter()
            .zip(arr.iter())
            .filter_map(|(r, a)| {
                let v = ld(a);
                (v > 0).then_some((r.as_str(), v))
            })
            .collect()
    };
    Stats {
        received_messages: ld(&c.received_messages),
        received_bytes: ld(&c.received_bytes),
        dropped_messages: by_reason(&c.dropped_messages),
        dropped_bytes: by_reason(&c.dropped_bytes),
        tcp_connections_accepted: ld(&c.tcp_connections_accepted),
        tcp_connections_refused: ld(&c.tcp_connections_refused),
        tls_handshake_failures: TlsFailure::ALL
            .iter()
            .zip(c.tls_handshake_failures.iter())
            .filter_map(|(f, a)| {
                let v = ld(a);
                (v > 0).then_some((f.as_str(), v))
            })
            .collect(),
        batches_spooled: ld(&c.batches_spooled),
        batches_uploaded: ld(&c.batches_uploaded),
        bytes_uploaded: ld(&c.bytes_uploaded),
        records_uploaded: ld(&c.records_uploaded),
        upload_errors: ld(&c.upload_errors),
        spool_files: spool.files(),
        spool_bytes: spool.bytes(),
        kernel_drops: ld(&c.kernel_drops),
        flow_issues: templates::Issue::ALL
            .iter()
            .zip(c.flow_issues.iter())
            .filter_map(|(i, a)| {
                let v = ld(a);
                (v > 0).then_some((i.as_str(), v))
            })
            .collect(),
        templates_cached: ld(&c.templates_cached),
        template_evictions: ld(&c.template_evictions),
        udp_io_uring_workers: ld(&c.udp_io_uring_workers),
        udp_receive_fallbacks: ld(&c.udp_receive_fallbacks),
        last_upload_error: c.last_upload_error.lock().ok().and_then(|l| l.clone()),
    }
}

/// Lets one log line through per interval and counts the ones it held back.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval_ns: u64,
    next_ns: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval_ns: interval.as_nanos() as u64,
            next_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now; `n` lines were suppressed since the last one.
    pub fn allow(&self) -> Option<u64> {
        let now = monotonic_ns();
        let next = self.next_ns.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ns
                .compare_exchange(
                    next,
                    now + self.interval_ns,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // +1 so that the first call is never below the initial `next_ns` of 0 by accident.
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_per_interval() {
        let rl = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(rl.allow(), Some(0));
        assert_eq!(rl.allow(), None);
        assert_eq!(rl.allow(), None);
        let rl0 = RateLimit::new(Duration::ZERO);
        assert_eq!(rl0.allow(), Some(0));
    }

    #[test]
    fn drop_reasons_have_distinct_names() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
