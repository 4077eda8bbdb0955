//! `natlake normalize`: backfill — normalize raw objects already in a store. Parallel
//! (`--workers`), resumable: objects with a done-marker are skipped (counted as skipped) unless
//! `--force`, so a run stopped half way picks up where it was. Progress goes to stderr: a bar
//! when stderr is a terminal, a plain line every `--progress-every` otherwise (logs, CI); the
//! summary is printed as JSON on stdout at the end.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use natlake_normalize::handler::{NormalizeConfig, is_done, normalize_with_retry};

#[derive(clap::Args)]
pub struct Args {
    /// Store URL (file:///…, s3://…).
    #[arg(long, env = "NATLAKE_STORE")]
    store: String,
    /// Key prefix to normalize: raw/, raw/<kind>/ or raw/<kind>/hour=…/
    #[arg(long, default_value = "raw/")]
    prefix: String,
    /// First hour of raw objects to include (`2026-11-23T10`, RFC 3339 or epoch seconds): the
    /// hour a raw object's key names, when its batch was opened.
    #[arg(long)]
    since: Option<String>,
    /// Last hour to include (same forms; the whole hour is included).
    #[arg(long)]
    until: Option<String>,
    /// Objects normalized at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Re-normalize objects already done (outputs are overwritten, never duplicated).
    #[arg(long)]
    force: bool,
    #[arg(long, default_value = "auto")]
    format: String,
    /// Enrichment sources (TOML; README "Enrichment").
    #[arg(long, env = "NATLAKE_ENRICH_CONFIG")]
    enrich_config: Option<std::path::PathBuf>,
    /// How often to print a progress line when stderr is not a terminal.
    #[arg(long, default_value = "10s", value_parser = natlake_core::runtime::parse_duration)]
    progress_every: Duration,
}

/// An hour label (`YYYY-MM-DDTHH`) from a flag: an hour label itself, RFC 3339 or epoch seconds.
pub(crate) fn hour_of(flag: &str, v: &str) -> anyhow::Result<String> {
    if natlake_core::lake::layout::parse_hour_label(v.trim()).is_some() {
        return Ok(v.trim().to_string());
    }
    let t = natlake_core::time::parse_time(v).with_context(|| {
        format!("--{flag} {v:?}: expected an hour (2026-11-23T10), RFC 3339 or epoch seconds")
    })?;
    Ok(natlake_core::lake::layout::hour_label(t))
}

/// What a run did, so far or in the end.
#[derive(Default)]
struct Counters {
    seen: AtomicU64,
    normalized: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
    rejects: AtomicU64,
}

impl Counters {
    fn line(&self, total: usize) -> String {
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

    fn json(&self, total: usize, secs: f64) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "objects": total,
            "normalized": g(&self.normalized),
            "skipped": g(&self.skipped),
            "failed": g(&self.failed),
            "events": g(&self.events),
            "rejects": g(&self.rejects),
            "seconds": (secs * 1000.0).round() / 1000.0,
        })
    }
}

/// Progress on stderr: a bar on a terminal, periodic plain lines elsewhere.
enum Progress {
    Bar(ProgressBar),
    Lines(tokio::task::JoinHandle<()>),
}

impl Progress {
    fn start(total: usize, counters: &Arc<Counters>, every: Duration) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} objects, eta {eta} {msg}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Progress::Bar(bar)
        } else {
            let counters = counters.clone();
            let every = every.max(Duration::from_millis(100));
            Progress::Lines(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    eprintln!("normalize: {}", counters.line(total));
                }
            }))
        }
    }

    /// One object finished.
    fn step(&self, counters: &Counters) {
        if let Progress::Bar(bar) = self {
            let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
            bar.set_message(format!(
                "({} skipped, {} failed, {} events)",
                g(&counters.skipped),
                g(&counters.failed),
                g(&counters.events)
            ));
            bar.inc(1);
        }
    }

    /// Prints above the bar (or plainly).
    fn println(&self, msg: String) {
        match self {
            Progress::Bar(bar) => bar.println(msg),
            Progress::Lines(_) => eprintln!("{msg}"),
        }
    }

    fn finish(self) {
        match self {
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Lines(task) => task.abort(),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = natlake_store::open(&args.store, &Default::default())?;
    let since = args
        .since
        .as_deref()
        .map(|v| hour_of("since", v))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|v| hour_of("until", v))
        .transpose()?;
    if let (Some(s), Some(u)) = (&since, &until) {
        anyhow::ensure!(s <= u, "--since {s} is after --until {u}");
    }
    let cfg = NormalizeConfig {
        format: args.format.clone(),
        enrich: natlake_normalize::enrich::EnrichConfig::from_file(args.enrich_config.as_deref())?,
        ..NormalizeConfig::default()
    };
    cfg.parsed_format()?;
    let cfg = cfg.load_enrichment(&store).await?;
    let keys =
        natlake_normalize::scan::raw_keys(&store, &args.prefix, since.as_deref(), until.as_deref())
            .await
            .with_context(|| format!("listing {}", args.prefix))?;
    let total = keys.len();
    eprintln!(
        "normalize: {total} raw objects under {} (hours {} to {})",
        args.prefix,
        since.as_deref().unwrap_or("any"),
        until.as_deref().unwrap_or("any")
    );
    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(total, &counters, args.progress_every);
    let store = Arc::new(store);
    futures::stream::iter(keys)
        .for_each_concurrent(args.workers.max(1), |key| {
            let (store, cfg, c, progress) = (store.clone(), cfg.clone(), &counters, &progress);
            async move {
                let done = if args.force {
                    false
                } else {
                    match is_done(&store, &key).await {
                        Ok(d) => d,
                        Err(e) => {
                            // Normalizing again is harmless (same output keys): do it.
                            progress.println(format!("checking {key}: {e}; normalizing it"));
                            false
                        }
                    }
                };
                if done {
                    c.skipped.fetch_add(1, Ordering::Relaxed);
                } else {
                    match normalize_with_retry(&store, &key, &cfg, 3).await {
                        Ok(r) => {
                            c.normalized.fetch_add(1, Ordering::Relaxed);
                            c.events.fetch_add(r.events, Ordering::Relaxed);
                            c.rejects.fetch_add(r.rejects, Ordering::Relaxed);
                        }
                        Err(e) => {
                            c.failed.fetch_add(1, Ordering::Relaxed);
                            progress.println(format!("failed: {key}: {e}"));
                        }
                    }
                }
                c.seen.fetch_add(1, Ordering::Relaxed);
                progress.step(c);
            }
        })
        .await;
    progress.finish();
    eprintln!("normalize: {}", counters.line(total));
    println!("{}", counters.json(total, started.elapsed().as_secs_f64()));
    let failed = counters.failed.load(Ordering::Relaxed);
    anyhow::ensure!(
        failed == 0,
        "{failed} objects failed (recorded under _state/dead-letter/); run again to retry them"
    );
    Ok(())
}
