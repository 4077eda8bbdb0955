//! The uploader: puts spooled batches in spool order, retries every failure with capped,
//! jittered exponential backoff, never gives up, and deletes a spool file only after the store
//! confirmed its put. Replay after a restart is the same loop: whatever is in the spool goes first.
//!
//! A put that succeeded but whose spool file was not yet deleted (crash in between) is put again
//! at the next start under the same key with the same bytes: an overwrite, not a duplicate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::Notify;

use crate::config::SinkConfig;
use crate::spool::{Spool, SpoolEntry};
use crate::{Counters, DynStore, RateLimit};

pub(crate) struct Uploader {
    notify: Arc<Notify>,
    uploaded: Arc<Notify>,
    spool: Arc<Spool>,
    task: tokio::task::JoinHandle<()>,
}

static ERROR_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

impl Uploader {
    pub fn start(
        spool: Arc<Spool>,
        store: DynStore,
        sink: SinkConfig,
        counters: Arc<Counters>,
    ) -> Self {
        let notify = Arc::new(Notify::new());
        let uploaded = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            spool.clone(),
            store,
            sink,
            counters,
            notify.clone(),
            uploaded.clone(),
        ));
        Self {
            notify,
            uploaded,
            spool,
            task,
        }
    }

    /// What the batcher pokes after spooling a batch.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// What the uploader pokes after the store confirmed a batch (for the heartbeat).
    pub fn uploaded(&self) -> Arc<Notify> {
        self.uploaded.clone()
    }

    /// Lets uploads go on until the spool is empty or `timeout` passed, then stops. An upload cut
    /// short leaves its file in the spool.
    pub async fn stop(self, timeout: Duration) {
        self.notify.notify_one();
        let deadline = Instant::now() + timeout;
        while self.spool.files() > 0 && Instant::now() < deadline && !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run(
    spool: Arc<Spool>,
    store: DynStore,
    sink: SinkConfig,
    counters: Arc<Counters>,
    notify: Arc<Notify>,
    uploaded: Arc<Notify>,
) {
    let backoff = Backoff::new(sink.retry_initial, sink.retry_max);
    // One lane per input kind puts that kind's batches one after another, in spool order; lanes
    // go side by side, up to `upload_concurrency`. A newer batch never lands while an older one
    // of its kind is retried (lookups and the heartbeat rely on it), and a kind whose puts fail
    // holds back no other: a lane that finished is replaced at once by the next of its kind.
    let mut lanes: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut running: std::collections::HashMap<tokio::task::Id, String> = Default::default();
    loop {
        match spool.list() {
            Ok(entries) => {
                for (kind, batches) in by_kind(entries) {
                    if running.len() >= sink.upload_concurrency
                        || running.values().any(|k| *k == kind)
                    {
                        continue;
                    }
                    let (spool, store, counters, backoff, uploaded) = (
                        spool.clone(),
                        store.clone(),
                        counters.clone(),
                        backoff.clone(),
                        uploaded.clone(),
                    );
                    let lane = lanes.spawn(async move {
                        for e in batches {
                            upload_one(&spool, &store, &counters, &backoff, e).await;
                            uploaded.notify_one();
                        }
                    });
                    running.insert(lane.id(), kind);
                }
            }
            Err(e) => {
                if let Some(suppressed) = ERROR_LOG.allow() {
                    tracing::error!(dir = %spool.dir().display(), error = %e, suppressed, "cannot list the spool");
                }
            }
        }
        // Woken by the batcher or a finished lane; the timeout is only a safety net.
        tokio::select! {
            Some(done) = lanes.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                running.remove(&id);
            }
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn upload_one(
    spool: &Spool,
    store: &DynStore,
    counters: &Counters,
    backoff: &Backoff,
    e: SpoolEntry,
) {
    let mut attempt = 0u32;
    let data = loop {
        match tokio::fs::read(&e.path).await {
            Ok(d) => break Bytes::from(d),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                counters.upload_errors.fetch_add(1, Ordering::Relaxed);
                ::metrics::counter!("edge_relay_upload_errors_total").increment(1);
                if let Some(suppressed) = ERROR_LOG.allow() {
                    tracing::error!(file = %e.path.display(), error = %err, suppressed, "cannot read a spooled batch; retrying");
                }
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    };
    let location = ObjectPath::from(e.key.as_str());
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        match store.put(&location, PutPayload::from(data.clone())).await {
            Ok(_) => {
                let secs = started.elapsed().as_secs_f64();
                ::metrics::histogram!("edge_relay_upload_duration_seconds").record(secs);
                ::metrics::counter!("edge_relay_batches_uploaded_total").increment(1);
                ::metrics::counter!("edge_relay_uploaded_bytes_total").increment(data.len() as u64);
                counters.batches_uploaded.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_uploaded
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                counters
                    .records_uploaded
                    .fetch_add(e.records, Ordering::Relaxed);
                if attempt > 0 {
                    tracing::info!(key = %e.key, attempts = attempt + 1, "batch uploaded after retries");
                } else {
                    tracing::debug!(key = %e.key, bytes = data.len(), secs, "batch uploaded");
                }
                if let Err(err) = spool.remove(&e) {
                    // Left in place it would be put again later: an overwrite with the same bytes.
                    if let Some(suppressed) = ERROR_LOG.allow() {
                        tracing::error!(file = %e.path.display(), error = %err, suppressed, "cannot delete an uploaded batch");
                    }
                }
                return;
            }
            Err(err) => {
                counters.upload_errors.fetch_add(1, Ordering::Relaxed);
                ::metrics::counter!("edge_relay_upload_errors_total").increment(1);
                let delay = backoff.delay(attempt);
                let message = describe(&err);
                if let Ok(mut last) = counters.last_upload_error.lock() {
                    *last = Some(message.clone());
                }
                if let Some(suppressed) = ERROR_LOG.allow() {
                    tracing::warn!(
                        key = %e.key,
                        attempt = attempt + 1,
                        retry_in = ?delay,
                        error = %message,
                        suppressed,
                        "upload failed; the batch stays in the spool and is retried"
                    );
                }
                tokio::time::sleep(delay).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Spool entries grouped by input kind (`raw/<kind>/…`), each group in spool order, the groups
/// in the order of their oldest entry.
fn by_kind(entries: Vec<SpoolEntry>) -> Vec<(String, Vec<SpoolEntry>)> {
    let mut groups: Vec<(String, Vec<SpoolEntry>)> = Vec::new();
    for e in entries {
        // The key's directory above `hour=…` (the whole directory for a key without one).
        let dir = e.key.rsplit_once('/').map_or("", |(d, _)| d);
        let kind = dir.split_once("/hour=").map_or(dir, |(k, _)| k).to_owned();
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, g)) => g.push(e),
            None => groups.push((kind, vec![e])),
        }
    }
    groups
}

/// The store's error, with what to do about it when it is a refusal of the credentials.
fn describe(err: &object_store::Error) -> String {
    match err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            format!(
                "the store refused the credentials (check [sink.s3] access_key_id / \
                 secret_access_key or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and the \
                 bucket's permissions): {err}"
            )
        }
        other => {
            let s = other.to_string();
            // S3 servers that answer 403 with an XML error body end up as generic errors.
            if [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "403 Forbidden",
            ]
            .iter()
            .any(|m| s.contains(m))
            {
                format!(
                    "the store refused the credentials (check [sink.s3] access_key_id / \
                     secret_access_key or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and the \
                     bucket's permissions): {s}"
                )
            } else {
                s
            }
        }
    }
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half random.
#[derive(Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in [0, 1) from a cheap thread-local generator (xorshift seeded by the clock).
fn jitter() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new((crate::now_ns() as u64 ^ 0x9E37_79B9_7F4A_7C15) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spool of `1 << 20` bytes, a `file://` store in which a regular file stands at
    /// `blocked` (so puts below it fail), and an uploader over both with quick retries.
    fn blocked_store(
        blocked: &str,
    ) -> (
        tempfile::TempDir,
        tempfile::TempDir,
        Arc<Spool>,
        Arc<Counters>,
        DynStore,
        std::path::PathBuf,
    ) {
        let store_dir = tempfile::tempdir().unwrap();
        let spool_dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(Counters::default());
        let spool = Arc::new(Spool::open(spool_dir.path(), 1 << 20, counters.clone()).unwrap());
        let blocker = store_dir.path().join(blocked);
        std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
        std::fs::write(&blocker, b"not a directory").unwrap();
        let store: DynStore = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(store_dir.path()).unwrap(),
        );
        (store_dir, spool_dir, spool, counters, store, blocker)
    }

    fn quick_retries() -> SinkConfig {
        SinkConfig {
            upload_concurrency: 2,
            retry_initial: Duration::from_millis(5),
            retry_max: Duration::from_millis(20),
            ..SinkConfig::default()
        }
    }

    /// A batch whose put keeps failing holds back the newer batches of its kind, not those of
    /// other kinds; once it lands, the rest follow.
    #[tokio::test]
    async fn a_failing_batch_holds_back_its_kind_only() {
        // A regular file where the older batch's hour directory goes: its put fails.
        let (store_dir, _spool_dir, spool, counters, store, blocker) =
            blocked_store("raw/ipfix/hour=2026-11-24T10");
        let (older, newer, other) = (
            "raw/ipfix/hour=2026-11-24T10/r1_a.nlraw.zst",
            "raw/ipfix/hour=2026-11-24T11/r1_b.nlraw.zst",
            "raw/syslog_udp/hour=2026-11-24T10/r1_c.nlraw.zst",
        );
        for key in [older, newer, other] {
            spool.write(key, 1, 0, key.as_bytes()).unwrap();
        }
        let uploader = Uploader::start(spool.clone(), store, quick_retries(), counters.clone());
        let stored = |key: &str| store_dir.path().join(key).is_file();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(stored(other) && counters.upload_errors.load(Ordering::Relaxed) >= 5) {
            assert!(Instant::now() < deadline, "the other kind was not uploaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !stored(newer),
            "a newer ipfix batch landed while an older one was failing"
        );
        std::fs::remove_file(&blocker).unwrap();
        uploader.notifier().notify_one();
        while !(stored(older) && stored(newer)) {
            assert!(
                Instant::now() < deadline,
                "the held-back batches were not uploaded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        uploader.stop(Duration::from_secs(5)).await;
        assert_eq!(spool.files(), 0);
    }

    /// While one kind's put keeps failing, batches of another kind spooled later still go out
    /// (each kind has its own lane; the uploader does not wait for every kind to finish).
    #[tokio::test]
    async fn a_failing_kind_does_not_hold_back_later_batches_of_another() {
        let (store_dir, _spool_dir, spool, counters, store, blocker) = blocked_store("raw/ipfix");
        let stuck = "raw/ipfix/hour=2026-11-24T10/r1_a.nlraw.zst";
        spool.write(stuck, 1, 0, b"a").unwrap();
        let uploader = Uploader::start(spool.clone(), store, quick_retries(), counters.clone());
        let stored = |key: &str| store_dir.path().join(key).is_file();
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0..3 {
            let key = format!("raw/syslog_udp/hour=2026-11-24T10/r1_s{i}.nlraw.zst");
            spool.write(&key, 1, 0, key.as_bytes()).unwrap();
            uploader.notifier().notify_one();
            while !stored(&key) {
                assert!(
                    Instant::now() < deadline,
                    "syslog batch {i} waited on the failing ipfix one"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        assert!(!stored(stuck) && counters.upload_errors.load(Ordering::Relaxed) > 0);
        std::fs::remove_file(&blocker).unwrap();
        while !stored(stuck) {
            assert!(Instant::now() < deadline, "the ipfix batch never landed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        uploader.stop(Duration::from_secs(5)).await;
        assert_eq!(spool.files(), 0);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let exp = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(2));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
        let ds: std::collections::HashSet<_> = (0..20).map(|_| b.delay(10)).collect();
        assert!(ds.len() > 1, "jitter varies");
    }
}
