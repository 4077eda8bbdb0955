//! Door 2: the long-running local service (MinIO, on-prem) — also what `natlake up` runs in
//! process. Work arrives two ways, both idempotent:
//! - `POST /v1/notify` with an S3-style notification (MinIO's webhook target sends the AWS
//!   `Records` shape); answered 202 once queued, 503 when the queue is full so MinIO retries;
//!   with a webhook token configured, 401 without MinIO's `Authorization` header and 403 with
//!   a wrong one;
//! - a poller that lists the recent `raw/` hours and picks up objects without a done-marker
//!   (stores without notifications, missed notifications, restarts), and every ten minutes
//!   the last week's hours (objects a relay uploaded late into an old hour).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::s3::S3Event;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use object_store::ObjectStore;
use tokio::sync::mpsc;

use crate::events::{StoreScope, raw_keys};
use crate::handler::{
    ACCEPTED_PREFIX, DEAD_LETTER_PREFIX, NormalizeConfig, STATE_PREFIX, is_done,
    normalize_with_retry,
};
use crate::scan;
use natlake_core::secret;

#[derive(Clone)]
pub struct Normalizer {
    pub store: Arc<dyn ObjectStore>,
    pub scope: StoreScope,
    pub cfg: NormalizeConfig,
    queue: mpsc::Sender<String>,
    /// SHA-256 of the token MinIO's webhook target sends (`auth_token`); None: not checked.
    webhook_token: Option<[u8; 32]>,
}

/// The workers of a [`Normalizer`], not yet started: they take keys off its queue.
pub struct Workers {
    store: Arc<dyn ObjectStore>,
    cfg: NormalizeConfig,
    rx: mpsc::Receiver<String>,
}

/// Default queue depth between notifications/poller and the workers.
pub const QUEUE: usize = 10_000;
/// How often the poller looks back further than the last two hours.
pub const WIDE_PASS_EVERY: Duration = Duration::from_secs(600);
/// How far back the poller's wide pass looks by default.
pub const RESCAN: Duration = Duration::from_secs(7 * 24 * 3600);
/// Attempts before a raw object is recorded as a dead letter.
const ATTEMPTS: u32 = 5;

impl Normalizer {
    /// Starts `workers` normalize workers; returns the handle used to enqueue keys.
    pub fn start(
        store: Arc<dyn ObjectStore>,
        scope: StoreScope,
        cfg: NormalizeConfig,
        workers: usize,
    ) -> Self {
        let (n, w) = Self::new(store, scope, cfg, QUEUE);
        w.spawn(workers);
        n
    }

    /// A normalizer whose queue holds `capacity` keys, and its workers, to be started with
    /// [`Workers::spawn`]. Until then keys only queue up.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        scope: StoreScope,
        cfg: NormalizeConfig,
        capacity: usize,
    ) -> (Self, Workers) {
        let (tx, rx) = mpsc::channel::<String>(capacity.max(1));
        let workers = Workers {
            store: store.clone(),
            cfg: cfg.clone(),
            rx,
        };
        let n = Self {
            store,
            scope,
            cfg,
            queue: tx,
            webhook_token: None,
        };
        (n, workers)
    }

    /// Requires this token on `POST /v1/notify`, given as the SHA-256 hex digest of what MinIO's
    /// webhook target is configured with (`auth_token`), so the token is never stored in clear.
    pub fn with_webhook_token_sha256(mut self, hex: &str) -> Result<Self, String> {
        self.webhook_token = Some(
            secret::parse_digest(hex)
                .ok_or("the webhook token digest must be 64 hex digits (sha256sum of the token)")?,
        );
        Ok(self)
    }

    /// Enqueues a key without waiting; false when the queue is full.
    pub fn try_enqueue(&self, key: String) -> bool {
        match self.queue.try_send(key) {
            Ok(()) => true,
            Err(_) => {
                metrics::counter!("natlake_normalize_queue_full_total").increment(1);
                false
            }
        }
    }

    /// Waits for queue space.
    pub async fn enqueue(&self, key: String) {
        let _ = self.queue.send(key).await;
    }

    /// Polls the store every `interval` for raw objects without a done-marker: the last two
    /// hours on every pass (a HEAD per key not seen before), and every [`WIDE_PASS_EVERY`] the
    /// hours back to `rescan` by listings — the first pass every hour there is. Raw keys are
    /// named by the hour their batch began, so a relay that uploads from its spool hours late
    /// (the store was down) writes into old hours; if that object's notification is lost, only
    /// the wide pass finds it. Dead letters are retried by the first pass after a restart
    /// only (or a backfill).
    pub async fn poll_forever(self, interval: Duration, rescan: Duration) {
        self.poll_with(interval, rescan, WIDE_PASS_EVERY).await
    }

    async fn poll_with(self, interval: Duration, rescan: Duration, wide_every: Duration) {
        let mut seen: HashSet<String> = HashSet::new();
        // Keys a wide pass queued that were still pending at the last wide pass: queued or in
        // a worker's hands, not to be queued again (a backlog longer than a pass would be
        // normalized twice over).
        let mut wide_queued: HashSet<String> = HashSet::new();
        let mut last_wide: Option<Instant> = None;
        loop {
            let wide = last_wide.is_none_or(|t| t.elapsed() >= wide_every);
            let narrow = format!("hour={}", natlake_raw::key::hour_label(now_secs() - 3600));
            let listed = if wide {
                let since = last_wide
                    .map(|_| natlake_raw::key::hour_label(now_secs() - rescan.as_secs() as i64));
                // The first pass (a restart) retries dead letters too, as an operator would
                // expect after fixing what made them fail; later ones leave them be. Accepted
                // losses are never retried here (a backfill may): failing again would undo
                // the acceptance.
                let markers: &[&str] = if last_wide.is_none() {
                    &[STATE_PREFIX, ACCEPTED_PREFIX]
                } else {
                    &[STATE_PREFIX, DEAD_LETTER_PREFIX, ACCEPTED_PREFIX]
                };
                scan::pending_keys(&self.store, "raw", since.as_deref(), None, markers)
                    .await
                    .map(|keys| (keys, true))
            } else {
                let since = natlake_raw::key::hour_label(now_secs() - 3600);
                scan::raw_keys(&self.store, "raw", Some(&since), None)
                    .await
                    .map(|keys| (keys, false))
            };
            match listed {
                Ok((keys, pending)) => {
                    if pending {
                        let now_pending: HashSet<&String> = keys.iter().collect();
                        wide_queued.retain(|k| now_pending.contains(k));
                    }
                    for key in keys {
                        if seen.contains(&key) || wide_queued.contains(&key) {
                            continue;
                        }
                        if !pending {
                            match is_done(&self.store, &key).await {
                                Ok(true) => {
                                    seen.insert(key);
                                    continue;
                                }
                                Ok(false) => {}
                                Err(e) => {
                                    tracing::warn!(key, error = %e, "checking done-marker failed");
                                    continue;
                                }
                            }
                        }
                        if last_wide.is_some() && pending && hour_of(&key) < narrow.as_str() {
                            // Outside the narrow window: a notification was lost (or never sent).
                            metrics::counter!("natlake_normalize_poll_found_late_total")
                                .increment(1);
                        }
                        self.enqueue(key.clone()).await;
                        if pending {
                            wide_queued.insert(key.clone());
                        }
                        seen.insert(key);
                    }
                    if wide {
                        last_wide = Some(Instant::now());
                    }
                    // Forget keys older than the window the narrow pass lists: bounded memory
                    // (`wide_queued` holds only keys still pending).
                    let cutoff =
                        format!("hour={}", natlake_raw::key::hour_label(now_secs() - 7200));
                    seen.retain(|k| hour_of(k) >= cutoff.as_str());
                }
                Err(e) => {
                    metrics::counter!("natlake_normalize_poll_errors_total").increment(1);
                    tracing::warn!(error = %e, "listing raw objects failed");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// The `hour=…` part of a raw key (`raw/<kind>/hour=…/<name>`); empty when it has none.
fn hour_of(key: &str) -> &str {
    key.split('/').nth(2).unwrap_or("")
}

impl Workers {
    /// Starts `n` (at least one) workers on the tokio runtime.
    pub fn spawn(self, n: usize) {
        let rx = Arc::new(tokio::sync::Mutex::new(self.rx));
        for _ in 0..n.max(1) {
            let (store, cfg, rx) = (self.store.clone(), self.cfg.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(key) = next else { break };
                    // A key can be queued twice (a webhook and the poller, MinIO retrying a
                    // notification): the second finds the first's done marker.
                    if is_done(&store, &key).await.unwrap_or(false) {
                        continue;
                    }
                    // Failures are retried and dead-lettered inside; the worker keeps going.
                    let _ = normalize_with_retry(&store, &key, &cfg, ATTEMPTS).await;
                }
            });
        }
    }
}

fn now_secs() -> i64 {
    natlake_core::time::now_micros().div_euclid(1_000_000)
}

fn answer(status: StatusCode, body: serde_json::Value) -> (StatusCode, Json<serde_json::Value>) {
    (status, Json(body))
}

/// The body is parsed here rather than by axum's `Json` extractor: every unreadable body gets
/// 400 with the reason (the extractor answers 415 or 422 for some), whatever the Content-Type.
async fn notify(State(n): State<Normalizer>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    if let Some(want) = &n.webhook_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(presented) = presented else {
            metrics::counter!("natlake_normalize_unauthorized_notifications_total").increment(1);
            return answer(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "a webhook token is required (Authorization header)"}),
            );
        };
        if !token_matches(want, presented) {
            metrics::counter!("natlake_normalize_unauthorized_notifications_total").increment(1);
            return answer(
                StatusCode::FORBIDDEN,
                serde_json::json!({"error": "this webhook token is not accepted"}),
            );
        }
    }
    let event: S3Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            metrics::counter!("natlake_normalize_bad_notifications_total").increment(1);
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("not an S3 event notification: {e}")}),
            );
        }
    };
    let keys = match raw_keys(&event, &n.scope) {
        Ok(k) => k,
        Err(e) => {
            metrics::counter!("natlake_normalize_bad_notifications_total").increment(1);
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": e.to_string()}),
            );
        }
    };
    let mut queued = 0;
    for key in keys {
        if !n.try_enqueue(key) {
            // MinIO retries the whole event later; the keys queued now are normalized twice,
            // which overwrites the same outputs.
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "queue full, retry later", "queued": queued}),
            );
        }
        queued += 1;
    }
    answer(StatusCode::ACCEPTED, serde_json::json!({"queued": queued}))
}

/// MinIO sends `auth_token` as `Authorization: Bearer <token>` when the token is one word and
/// verbatim when it already has a scheme (`Token abc`); both forms are accepted.
fn token_matches(want: &[u8; 32], presented: &str) -> bool {
    let presented = presented.trim();
    let bare = presented
        .strip_prefix("Bearer ")
        .unwrap_or(presented)
        .trim();
    // Both compared, always: no early exit.
    secret::matches(want, bare) | secret::matches(want, presented)
}

/// HTTP routes of the normalize service (merged with the lookup API's in `natlake up`, which
/// serves `/healthz` itself).
pub fn router(n: Normalizer) -> Router {
    Router::new()
        .route("/v1/notify", post(notify))
        .with_state(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use natlake_raw::{BatchHeader, BatchWriter, InputKind, Record};
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    /// A raw object of one conntrack line, its batch begun at `created_secs`.
    fn raw_object(created_secs: i64) -> (String, Vec<u8>) {
        let header = BatchHeader {
            format_version: natlake_raw::VERSION,
            relay_id: "edge".into(),
            batch_id: format!("b{created_secs}"),
            kind: InputKind::SyslogUdp,
            created_ns: created_secs * 1_000_000_000,
            labels: Default::default(),
        };
        let line = format!(
            "<134>1 2023-11-14T22:13:20Z cgn1 ct - - - [{created_secs}.000000]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.0.1 dst=203.0.113.5 sport=40000 dport=443 [UNREPLIED] src=203.0.113.5 dst=198.51.100.7 sport=443 dport=61000"
        );
        let mut w = BatchWriter::new(&header, 3).unwrap();
        w.push(&Record {
            recv_ns: created_secs * 1_000_000_000,
            kind: InputKind::SyslogUdp,
            flags: 0,
            peer: Some("192.0.2.1:514".parse().unwrap()),
            payload: line.into_bytes(),
        })
        .unwrap();
        let key = natlake_raw::key::raw_key(
            InputKind::SyslogUdp,
            header.created_ns,
            &header.relay_id,
            &header.batch_id,
        );
        (key, w.finish().unwrap())
    }

    /// A relay's spool uploads a batch begun three hours ago, and its notification is lost:
    /// the poller's narrow pass (the last two hours) never lists that hour, its wide pass does.
    #[tokio::test]
    async fn the_poller_finds_an_object_uploaded_late_into_an_old_hour() {
        let dir = tempfile::tempdir().unwrap();
        let url = natlake_store::dir_url(dir.path()).unwrap();
        let store = natlake_store::open(&url, &Default::default()).unwrap();
        let n = Normalizer::start(
            store.clone(),
            StoreScope::from_url(&url),
            NormalizeConfig::default(),
            1,
        );
        let (key, bytes) = raw_object(now_secs() - 3 * 3600);
        let wide_every = Duration::from_millis(300);
        tokio::spawn(n.poll_with(Duration::from_millis(20), RESCAN, wide_every));
        // After the first pass (which looks at every hour) the object lands.
        tokio::time::sleep(Duration::from_millis(100)).await;
        store
            .put(&Path::from(key.as_str()), PutPayload::from(bytes))
            .await
            .unwrap();
        let start = Instant::now();
        while !is_done(&store, &key).await.unwrap() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{key} never normalized"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The wide pass's listing: raw objects with neither a done-marker nor a dead letter, in
    /// the hours asked for.
    #[tokio::test]
    async fn pending_keys_leaves_out_done_and_dead_objects() {
        let dir = tempfile::tempdir().unwrap();
        let url = natlake_store::dir_url(dir.path()).unwrap();
        let store = natlake_store::open(&url, &Default::default()).unwrap();
        let put = |k: String| {
            let store = store.clone();
            async move {
                store
                    .put(&Path::from(k.as_str()), PutPayload::from_static(b"x"))
                    .await
                    .unwrap();
            }
        };
        let old = "raw/syslog_udp/hour=2026-11-20T05";
        for name in ["a", "b", "c"] {
            put(format!("{old}/{name}{}", natlake_raw::SUFFIX)).await;
        }
        put(format!(
            "raw/syslog_udp/hour=2026-11-24T00/d{}",
            natlake_raw::SUFFIX
        ))
        .await;
        put(format!(
            "{STATE_PREFIX}/{old}/a{}.json",
            natlake_raw::SUFFIX
        ))
        .await;
        put(format!(
            "{DEAD_LETTER_PREFIX}/{old}/b{}.json",
            natlake_raw::SUFFIX
        ))
        .await;
        let markers = [STATE_PREFIX, DEAD_LETTER_PREFIX];
        let all = scan::pending_keys(&store, "raw", None, None, &markers)
            .await
            .unwrap();
        assert_eq!(
            all,
            [
                format!("{old}/c{}", natlake_raw::SUFFIX),
                format!("raw/syslog_udp/hour=2026-11-24T00/d{}", natlake_raw::SUFFIX)
            ]
        );
        let recent = scan::pending_keys(&store, "raw", Some("2026-11-21T00"), None, &markers)
            .await
            .unwrap();
        assert_eq!(recent.len(), 1, "{recent:?}");
    }
}
