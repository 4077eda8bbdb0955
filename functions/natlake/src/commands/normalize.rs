//! `natlake normalize`: backfill — normalize raw objects already in a store. Parallel
//! (`--workers`), resumable: objects with a done-marker are skipped (counted as skipped) unless
//! `--force`, so a run stopped half way picks up where it was. Progress goes to stderr: a bar
//! when stderr is a terminal, a plain line every `--progress-every` otherwise (logs, CI); the
//! summary is printed as JSON on stdout at the end.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use natlake_normalize::backfill::{self, Counters};
use natlake_normalize::handler::NormalizeConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Store URL (file:///…, s3://…).
    #[arg(long, env = "NATLAKE_STORE")]
    store: String,
    #[command(flatten)]
    select: backfill::Selection,
    /// Objects normalized at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value = "auto")]
    format: String,
    /// Enrichment sources (TOML; README "Enrichment").
    #[arg(long, env = "NATLAKE_ENRICH_CONFIG")]
    enrich_config: Option<std::path::PathBuf>,
    #[command(flatten)]
    time_zones: natlake_normalize::time_zones::TimeZoneArgs,
}

/// Progress on stderr: a bar on a terminal, periodic plain lines elsewhere.
enum Progress {
    Bar(ProgressBar),
    Lines(Option<tokio::task::JoinHandle<()>>),
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
            Progress::Lines(backfill::progress_lines(counters.clone(), total, every))
        }
    }

    fn finish(self) {
        match self {
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Lines(task) => {
                if let Some(t) = task {
                    t.abort();
                }
            }
        }
    }
}

impl backfill::Observer for Progress {
    /// Prints above the bar (or plainly).
    fn println(&self, msg: String) {
        match self {
            Progress::Bar(bar) => bar.println(msg),
            Progress::Lines(_) => eprintln!("{msg}"),
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
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = natlake_store::open(&args.store, &Default::default())?;
    let (since, until) = args.select.hours()?;
    let cfg = NormalizeConfig {
        format: args.format.clone(),
        enrich: natlake_normalize::enrich::EnrichConfig::read(
            args.enrich_config.as_deref(),
            &store,
        )
        .await?,
        time_zones: args.time_zones.load()?,
        inline_io: natlake_store::completes_inline(&args.store),
        ..NormalizeConfig::default()
    };
    cfg.parsed_format()?;
    let cfg = cfg.load_enrichment(&store).await?;
    let keys = args.select.keys(&store).await?;
    let total = keys.len();
    eprintln!(
        "normalize: {total} raw objects under {} (hours {} to {})",
        args.select.prefix,
        since.as_deref().unwrap_or("any"),
        until.as_deref().unwrap_or("any")
    );
    natlake_normalize::cpu::size_pool(args.workers);
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(total, &counters, args.select.progress_every);
    let summary = backfill::run(
        &store,
        &cfg,
        keys,
        args.workers,
        args.select.force,
        &counters,
        &progress,
    )
    .await;
    progress.finish();
    eprintln!("normalize: {}", counters.line(total));
    println!("{}", serde_json::to_string(&summary)?);
    anyhow::ensure!(
        summary.failed == 0,
        "{} objects failed (recorded under _state/dead-letter/); run again to retry them",
        summary.failed
    );
    Ok(())
}
