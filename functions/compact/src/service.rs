//! Door 2: the long-running local service (MinIO, on-prem) — also what `natlake up` runs in
//! process: a timer, plus `POST /v1/compact` to run at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use object_store::ObjectStore;
use tokio::sync::Mutex;

use crate::run::{CompactConfig, run};

/// Runs one compaction at a time; the timer and HTTP requests share it.
#[derive(Clone)]
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    cfg: CompactConfig,
    lock: Arc<Mutex<()>>,
}

impl Compactor {
    pub fn new(store: Arc<dyn ObjectStore>, cfg: CompactConfig) -> Self {
        Self {
            store,
            cfg,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// One run now; errors are logged and counted (the next tick retries).
    pub async fn tick(&self) -> Result<crate::Report, crate::CompactError> {
        let _one = self.lock.lock().await;
        let r = run(&self.store, &self.cfg, natlake_core::time::now_micros()).await;
        match &r {
            Ok(rep) if !rep.hours.is_empty() => {
                tracing::info!(
                    hours = rep.hours.len(),
                    remaining = rep.remaining,
                    "compaction run"
                )
            }
            Ok(_) => {}
            Err(e) => {
                metrics::counter!("natlake_compact_errors_total").increment(1);
                tracing::error!(error = %e, "compaction run failed; the next run retries");
            }
        }
        r
    }

    /// Runs every `every` until the task is dropped; a run with hours left runs again at once.
    pub async fn every(self, every: Duration) {
        loop {
            let more = matches!(self.tick().await, Ok(r) if r.remaining > 0);
            if !more {
                tokio::time::sleep(every).await;
            }
        }
    }
}

async fn compact_now(State(c): State<Compactor>) -> impl IntoResponse {
    match c.tick().await {
        Ok(r) => (
            StatusCode::OK,
            Json(serde_json::to_value(r).unwrap_or_default()),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

/// `POST /v1/compact`.
pub fn router(c: Compactor) -> Router {
    Router::new()
        .route("/v1/compact", post(compact_now))
        .with_state(c)
}
