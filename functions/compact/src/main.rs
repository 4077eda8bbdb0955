//! `compact`: the hourly compact function as a Lambda (`compact lambda`, EventBridge schedule), a
//! local service (`compact serve`, a timer), or one run (`compact once`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use clap::{Parser, Subcommand};
use natlake_compact::service::{Compactor, router};
use natlake_compact::{CompactConfig, lambda};

#[derive(Parser)]
#[command(
    name = "compact",
    version,
    about = "natlake compact function: carry open NAT mappings hour to hour, merge small objects"
)]
struct Cli {
    /// Store URL: file:///abs/dir, s3://bucket[/prefix] (endpoint and credentials from AWS_* variables).
    #[arg(long, env = "NATLAKE_STORE", global = true)]
    store: Option<String>,
    /// How long after an hour ends before it is compacted (late batches from relays).
    #[arg(long, env = "NATLAKE_COMPACT_GRACE", default_value = "10m", value_parser = natlake_core::runtime::parse_duration, global = true)]
    grace: Duration,
    /// Open mappings idle longer than this are not carried (a lost delete must not hold a port for ever).
    #[arg(long, env = "NATLAKE_CARRY_MAX_IDLE", default_value = "7days", value_parser = natlake_core::runtime::parse_duration, global = true)]
    max_idle: Duration,
    /// Hours worked on per run at most (the next run resumes).
    #[arg(
        long,
        env = "NATLAKE_COMPACT_MAX_HOURS",
        default_value_t = 48,
        global = true
    )]
    max_hours: usize,
    /// Memory for the merge's input batches, in MiB: a partition of any size is merged
    /// within it (plus one row group being written and the upload's 5 MiB parts).
    #[arg(
        long,
        env = "NATLAKE_COMPACT_MEMORY_MIB",
        default_value_t = 64,
        global = true
    )]
    merge_memory_mib: usize,
    /// Objects merged at once at most: a partition-hour with more (a busy CGNAT's hour of full
    /// batches) is merged in groups into local sorted runs in $TMPDIR first. Each open object
    /// costs memory beyond the batch budget (its footer and a fetched row group). Small objects,
    /// together within an eighth of --merge-memory-mib, are merged all at once (up to 256).
    #[arg(
        long,
        env = "NATLAKE_COMPACT_FAN_IN",
        default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(2..),
        global = true
    )]
    merge_fan_in: u16,
    /// Where those local sorted runs go (default $TMPDIR). A partition-hour merged in groups
    /// needs about twice its uncompacted bytes there, checked before it starts.
    #[arg(long, env = "NATLAKE_COMPACT_SPILL_DIR", global = true)]
    spill_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    door: Door,
}

#[derive(Subcommand)]
enum Door {
    /// Run under AWS Lambda, invoked by an EventBridge schedule (the default on Lambda).
    Lambda,
    /// Run as a long-running service with a timer.
    Serve {
        /// Address for POST /v1/compact, /healthz and /metrics.
        #[arg(long, env = "NATLAKE_LISTEN", default_value = "127.0.0.1:9103")]
        listen: SocketAddr,
        #[arg(long, env = "NATLAKE_COMPACT_EVERY", default_value = "5m", value_parser = natlake_core::runtime::parse_duration)]
        every: Duration,
    },
    /// One run, then exit; prints the report as JSON.
    Once {
        /// Pretend it is this time (RFC 3339): compact every hour finished by then.
        #[arg(long)]
        now: Option<String>,
    },
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (on_lambda, args) = natlake_core::runtime::args_or_lambda("compact");
    let cli = Cli::parse_from(args);
    natlake_core::runtime::init_tracing(!on_lambda);
    let url = cli.store.context("--store or NATLAKE_STORE is required")?;
    let store = natlake_store::open(&url, &Default::default())?;
    let defaults = CompactConfig::default();
    let cfg = CompactConfig {
        grace: micros(cli.grace),
        max_idle: micros(cli.max_idle),
        max_hours: cli.max_hours,
        merge: natlake_core::lake::merge::MergeBudget {
            input_bytes: cli.merge_memory_mib.saturating_mul(1 << 20),
            fan_in: usize::from(cli.merge_fan_in),
            ..defaults.merge
        },
        spill_dir: cli.spill_dir,
        ..defaults
    };
    match cli.door {
        Door::Lambda => lambda::run(store, cfg)
            .await
            .map_err(|e| anyhow::anyhow!(e)),
        Door::Once { now } => {
            let now = match now {
                Some(t) => {
                    natlake_core::time::parse_time(&t).map_err(|e| anyhow::anyhow!("--now: {e}"))?
                }
                None => natlake_core::time::now_micros(),
            };
            let report = natlake_compact::run(&store, &cfg, now).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Door::Serve { listen, every } => {
            let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .context("installing the metrics recorder")?;
            let compactor = Compactor::new(store, cfg);
            tokio::spawn(compactor.clone().every(every));
            let app = router(compactor)
                .route("/healthz", get(|| async { "ok" }))
                .route(
                    "/metrics",
                    get(move || std::future::ready(metrics.render())),
                );
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(%listen, %url, "compact service listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(natlake_core::runtime::shutdown_signal())
                .await?;
            Ok(())
        }
    }
}
