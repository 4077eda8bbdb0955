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
use crate::scan::done_among;

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

/// [`hour_of`] for the flag `--{flag}`, with an error that names it.
pub fn hour_flag(flag: &str, v: &str) -> Result<String, SelectionError> {
    hour_of(v).ok_or_else(|| SelectionError::Hour {
        flag: flag.to_owned(),
        value: v.to_owned(),
    })
}

/// Which raw objects a backfill takes, and how it runs: the flags `normalize run` and
/// `natlake normalize` share (each binary adds `--workers` with its own default).
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Key prefix to normalize: raw/, raw/<kind>/ or raw/<kind>/hour=…/
    #[arg(long, default_value = "raw/")]
    pub prefix: String,
    /// First hour of raw objects to include (`2026-11-23T10`, RFC 3339 or epoch seconds): the
    /// hour a raw object's key names, when its batch was opened.
    #[arg(long)]
    pub since: Option<String>,
    /// Last hour to include (same forms; the whole hour is included).
    #[arg(long)]
    pub until: Option<String>,
    /// Re-normalize objects already done (outputs are overwritten, never duplicated).
    #[arg(long)]
    pub force: bool,
    /// How often to print a progress line when stderr is not a terminal (0: never).
    #[arg(long, default_value = "10s", value_parser = natlake_core::runtime::parse_duration)]
    pub progress_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("--{flag} {value:?}: expected an hour (2026-11-23T10), RFC 3339 or epoch seconds")]
    Hour { flag: String, value: String },
    #[error("--since {since} is after --until {until}")]
    Reversed { since: String, until: String },
    #[error("listing {prefix}: {source}")]
    List {
        prefix: String,
        source: object_store::Error,
    },
}

impl Selection {
    /// The `--since` / `--until` hour labels, checked to be in order.
    pub fn hours(&self) -> Result<(Option<String>, Option<String>), SelectionError> {
        let since = self
            .since
            .as_deref()
            .map(|v| hour_flag("since", v))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|v| hour_flag("until", v))
            .transpose()?;
        if let (Some(s), Some(u)) = (&since, &until)
            && s > u
        {
            return Err(SelectionError::Reversed {
                since: s.clone(),
                until: u.clone(),
            });
        }
        Ok((since, until))
    }

    /// The raw object keys selected, oldest hour first.
    pub async fn keys(&self, store: &Arc<dyn ObjectStore>) -> Result<Vec<String>, SelectionError> {
        let (since, until) = self.hours()?;
        crate::scan::raw_keys(store, &self.prefix, since.as_deref(), until.as_deref())
            .await
            .map_err(|source| SelectionError::List {
                prefix: self.prefix.clone(),
                source,
            })
    }
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
    let listed = if force {
        None
    } else {
        done_among(store, &keys).await
    };
    let listed = &listed;
    futures::stream::iter(keys)
        .for_each_concurrent(workers.max(1), |key| async move {
            let c = counters;
            let done = !force
                && match listed {
                    Some(done) => done.contains(&key),
                    None => match is_done(store, &key).await {
                        Ok(d) => d,
                        Err(e) => {
                            // Normalizing again is harmless (same output keys): do it.
                            observer.println(format!("checking {key}: {e}; normalizing it"));
                            false
                        }
                    },
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
    use crate::handler::tests::{CT_NEW, raw_object};
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    struct Quiet;
    impl Observer for Quiet {
        fn println(&self, _msg: String) {}
    }

    /// Objects with a done marker are skipped (found by one listing per hour directory), the
    /// rest normalized; `force` does them all again.
    #[tokio::test]
    async fn done_objects_are_skipped_unless_forced() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let keys: Vec<String> = [
            "raw/syslog_udp/hour=2023-11-14T22/t_a.nlraw.zst",
            "raw/syslog_udp/hour=2023-11-14T22/t_b.nlraw.zst",
            "raw/syslog_udp/hour=2023-11-14T23/t_c.nlraw.zst",
        ]
        .map(String::from)
        .to_vec();
        for k in &keys {
            let obj = raw_object(&[CT_NEW.as_bytes()]);
            store
                .put(&Path::from(k.as_str()), PutPayload::from(obj))
                .await
                .unwrap();
        }
        let cfg = NormalizeConfig::default();
        crate::handler::normalize_object(&store, &keys[1], &cfg)
            .await
            .unwrap();
        let pass = |force| {
            let (store, cfg, keys) = (&store, &cfg, keys.clone());
            async move {
                let c = Counters::default();
                let s = run(store, cfg, keys, 2, force, &c, &Quiet).await;
                (s.normalized, s.skipped, s.failed, s.events)
            }
        };
        assert_eq!(pass(false).await, (2, 1, 0, 2));
        assert_eq!(pass(false).await, (0, 3, 0, 0));
        assert_eq!(pass(true).await, (3, 0, 0, 3));
        for k in &keys {
            assert!(is_done(&store, k).await.unwrap(), "{k}");
        }
    }

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
