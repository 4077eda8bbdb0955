//! Door 2: the long-running local service (MinIO, on-prem) — also what `natlake up` runs in
//! process. Work arrives two ways, both idempotent:
//! - `POST /v1/notify` with an S3-style notification (MinIO's webhook target sends the AWS
//!   `Records` shape); answered 202 once queued, 503 when the queue is full so MinIO retries;
//!   with a webhook token configured, 401 without MinIO's `Authorization` header and 403 with
//!   a wrong one;
//! - a poller that lists the recent `raw/` hours and picks up objects without a done-marker
//!   (stores without notifications, missed notifications, restarts).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

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
use crate::handler::{NormalizeConfig, is_done, normalize_with_retry};
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

    /// Polls the store every `interval` for raw objects without a done-marker. The first pass
    /// looks at every hour; later passes at the last two hours (plus keys queued before).
    pub async fn poll_forever(self, interval: Duration) {
        let mut seen: HashSet<String> = HashSet::new();
        let mut first = true;
        loop {
            let since = if first {
                None
            } else {
                Some(natlake_raw::key::hour_label(now_secs() - 3600))
            };
            match scan::raw_keys(&self.store, "raw", since.as_deref(), None).await {
                Ok(keys) => {
                    for key in keys {
                        if seen.contains(&key) {
                            continue;
                        }
                        match is_done(&self.store, &key).await {
                            Ok(true) => {}
                            Ok(false) => self.enqueue(key.clone()).await,
                            Err(e) => {
                                tracing::warn!(key, error = %e, "checking done-marker failed");
                                continue;
                            }
                        }
                        seen.insert(key);
                    }
                    first = false;
                    // Forget keys older than the window the next pass lists: bounded memory.
                    let cutoff =
                        format!("hour={}", natlake_raw::key::hour_label(now_secs() - 7200));
                    seen.retain(|k| k.split('/').nth(2).is_some_and(|h| h >= cutoff.as_str()));
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
