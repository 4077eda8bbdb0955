//! One-shot normalizing of raw objects already in a store: the backfill loop shared by
//! `normalize run` (the small binary, no DuckDB; what the conversion benchmark times) and
//! `natlake normalize` (which adds a progress bar). Resumable: objects with a done-marker are
//! skipped unless `force`; failures are retried, recorded as dead letters and counted, never
//! dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::ObjectStore;
use serde::Serialize;

use crate::handler::{NormalizeConfig, is_done, normalize_with_retry};

/// An hour label (`YYYY-MM-DDTHH`) from a flag value: an hour label, RFC 3339 or epoch seconds.
pub fn hour_of(v: &str) -> Option<String> {
    let v = v.trim();
    if natlake_core::lake::layout::parse_hour_label(v).is_some() {
        return Some(v.to_string());
    }
    natlake_core::time::parse_time(v)
        .ok()
        .map(natlake_core::lake::layout::hour_label)
}

/// What a run did, so far or in the end.
#[derive(Debug, Default)]
pub struct Counters {
    pub seen: AtomicU64,
    pub normalized: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    pub records: AtomicU64,
    pub events: AtomicU64,
    pub rejects: AtomicU64,
}

/// The summary printed at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub objects: usize,
    pub normalized: u64,
    pub skipped: u64,
    pub failed: u64,
    pub records: u64,
    pub events: u64,
    pub rejects: u64,
    pub seconds: f64,
}

impl Counters {
    pub fn line(&self, total: usize) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{}/{total} objects: {} normalized, {} skipped (done before), {} failed; {} events, {} rejects",
            g(&self.seen),
            g(&self.normalized),
            g(&self.skipped),
            g(&self.failed),
            g(&self.events),
            g(&self.rejects)
        )
    }

    fn summary(&self, total: usize, secs: f64) -> Summary {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            objects: total,
            normalized: g(&self.normalized),
            skipped: g(&self.skipped),
            failed: g(&self.failed),
            records: g(&self.records),
            events: g(&self.events),
            rejects: g(&self.rejects),
            seconds: (secs * 1000.0).round() / 1000.0,
        }
    }
}

/// Where a run reports: messages about single objects, and each object finished.
pub trait Observer: Sync {
    fn println(&self, msg: String);
    fn step(&self, _counters: &Counters) {}
}

/// Messages to stderr, nothing per object.
pub struct Stderr;

impl Observer for Stderr {
    fn println(&self, msg: String) {
        eprintln!("{msg}");
    }
}

/// A progress line on stderr every `every` until aborted (zero: none).
pub fn progress_lines(
    counters: Arc<Counters>,
    total: usize,
    every: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    (!every.is_zero()).then(|| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("normalize: {}", counters.line(total));
            }
        })
    })
}

/// Normalizes `keys`, `workers` at a time, counting into `counters`.
pub async fn run(
    store: &Arc<dyn ObjectStore>,
    cfg: &NormalizeConfig,
    keys: Vec<String>,
    workers: usize,
    force: bool,
    counters: &Counters,
    observer: &dyn Observer,
) -> Summary {
    let total = keys.len();
    let started = Instant::now();
    futures::stream::iter(keys)
        .for_each_concurrent(workers.max(1), |key| async move {
            let c = counters;
            let done = !force
                && match is_done(store, &key).await {
                    Ok(d) => d,
                    Err(e) => {
                        // Normalizing again is harmless (same output keys): do it.
                        observer.println(format!("checking {key}: {e}; normalizing it"));
                        false
                    }
                };
            if done {
                c.skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                match normalize_with_retry(store, &key, cfg, 3).await {
                    Ok(r) => {
                        c.normalized.fetch_add(1, Ordering::Relaxed);
                        c.records.fetch_add(r.records, Ordering::Relaxed);
                        c.events.fetch_add(r.events, Ordering::Relaxed);
                        c.rejects.fetch_add(r.rejects, Ordering::Relaxed);
                    }
                    Err(e) => {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        observer.println(format!("failed: {key}: {e}"));
                    }
                }
            }
            c.seen.fetch_add(1, Ordering::Relaxed);
            observer.step(c);
        })
        .await;
    counters.summary(total, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_flags() {
        assert_eq!(hour_of("2026-11-23T10").as_deref(), Some("2026-11-23T10"));
        assert_eq!(
            hour_of("2026-11-23T10:59:59Z").as_deref(),
            Some("2026-11-23T10")
        );
        assert_eq!(hour_of("1793491200").as_deref(), Some("2026-11-01T00"));
        assert_eq!(hour_of("yesterday"), None);
    }
}
