//! `normalize`: the normalize function as a Lambda (`normalize lambda`), a local service
//! (`normalize serve`) or a one-shot run over a store's raw objects (`normalize run`).
//! The embedded all-in-one lives in the `natlake` binary.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use natlake_normalize::events::StoreScope;
use natlake_normalize::service::{Normalizer, router};
use natlake_normalize::{NormalizeConfig, backfill, lambda};

#[derive(Parser)]
#[command(
    name = "normalize",
    version,
    about = "natlake normalize function: raw batches into the Parquet lake"
)]
struct Cli {
    /// Store URL: file:///abs/dir, s3://bucket[/prefix] (endpoint and credentials from AWS_* variables).
    #[arg(long, env = "NATLAKE_STORE", global = true)]
    store: Option<String>,
    /// Parser for every record (auto detects per record).
    #[arg(long, env = "NATLAKE_FORMAT", default_value = "auto", global = true)]
    format: String,
    /// Enrichment sources (TOML; README "Enrichment"): loaded at start, reloaded on change. A
    /// local file, or `store:KEY` for an object in the store (on Lambda).
    #[arg(long, env = "NATLAKE_ENRICH_CONFIG", global = true)]
    enrich_config: Option<std::path::PathBuf>,
    #[command(flatten)]
    time_zones: natlake_normalize::time_zones::TimeZoneArgs,
    #[command(subcommand)]
    door: Door,
}

#[derive(Subcommand)]
enum Door {
    /// Run under AWS Lambda, triggered by S3 ObjectCreated notifications (the default on Lambda).
    Lambda,
    /// Run as a long-running service: webhook notifications and/or polling.
    Serve {
        /// Address for the webhook (POST /v1/notify), /healthz and /metrics.
        #[arg(long, env = "NATLAKE_LISTEN", default_value = "127.0.0.1:9101")]
        listen: SocketAddr,
        /// Poll the store for new raw objects this often (0 disables polling).
        #[arg(long, env = "NATLAKE_POLL", default_value = "5s", value_parser = natlake_core::runtime::parse_duration)]
        poll: Duration,
        /// How far back the poller looks, every ten minutes, for raw objects nothing announced
        /// (a relay's spool uploaded late into an old hour, a lost notification).
        #[arg(long, env = "NATLAKE_RESCAN", default_value = "7days", value_parser = natlake_core::runtime::parse_duration)]
        rescan: Duration,
        #[arg(long, env = "NATLAKE_WORKERS", default_value_t = 2)]
        workers: usize,
        /// Raw objects waiting for a worker, at most; beyond it notifications get 503 (MinIO
        /// retries them) and the poller waits.
        #[arg(long, env = "NATLAKE_QUEUE", default_value_t = natlake_normalize::service::QUEUE)]
        queue: usize,
        /// Require MinIO's webhook `auth_token` on POST /v1/notify, given as its SHA-256 hex
        /// digest (`printf %s TOKEN | sha256sum`); without it notifications are not checked.
        #[arg(long, env = "NATLAKE_WEBHOOK_TOKEN_SHA256")]
        webhook_token_sha256: Option<String>,
    },
    /// Normalize the raw objects already in the store once, then exit (backfill without DuckDB;
    /// what bench/normalize.sh times). Prints a JSON summary on stdout.
    Run {
        #[command(flatten)]
        select: backfill::Selection,
        /// Objects normalized at once.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Lambda sets AWS_LAMBDA_RUNTIME_API; let the binary be the bootstrap with no arguments.
    let (on_lambda, args) = natlake_core::runtime::args_or_lambda("normalize");
    let cli = Cli::parse_from(args);
    natlake_core::runtime::init_tracing(!on_lambda);
    let url = cli.store.context("--store or NATLAKE_STORE is required")?;
    let store = natlake_store::open(&url, &Default::default())?;
    let scope = StoreScope::from_url(&url);
    let cfg = NormalizeConfig {
        format: cli.format,
        enrich: natlake_normalize::enrich::EnrichConfig::read(cli.enrich_config.as_deref(), &store)
            .await?,
        time_zones: cli.time_zones.load()?,
        inline_io: natlake_store::completes_inline(&url),
        ..NormalizeConfig::default()
    };
    cfg.parsed_format()?;
    let cfg = cfg.load_enrichment(&store).await?;
    match cli.door {
        Door::Run { select, workers } => {
            natlake_normalize::cpu::size_pool(workers);
            let keys = select.keys(&store).await?;
            eprintln!(
                "normalize: {} raw objects under {}",
                keys.len(),
                select.prefix
            );
            let counters = std::sync::Arc::new(backfill::Counters::default());
            let lines =
                backfill::progress_lines(counters.clone(), keys.len(), select.progress_every);
            let summary = backfill::run(
                &store,
                &cfg,
                keys,
                workers,
                select.force,
                &counters,
                &backfill::Stderr,
            )
            .await;
            if let Some(l) = lines {
                l.abort();
            }
            println!("{}", serde_json::to_string(&summary)?);
            anyhow::ensure!(
                summary.failed == 0,
                "{} objects failed (recorded under _state/dead-letter/); run again to retry them",
                summary.failed
            );
            Ok(())
        }
        Door::Lambda => lambda::run(store, scope, cfg)
            .await
            .map_err(|e| anyhow::anyhow!(e)),
        Door::Serve {
            listen,
            poll,
            rescan,
            workers,
            queue,
            webhook_token_sha256,
        } => {
            natlake_normalize::cpu::size_pool(workers);
            let prom = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
            let (mut n, w) = Normalizer::new(store, scope, cfg, queue);
            if let Some(hex) = webhook_token_sha256 {
                n = n
                    .with_webhook_token_sha256(&hex)
                    .map_err(|e| anyhow::anyhow!("--webhook-token-sha256: {e}"))?;
            }
            w.spawn(workers);
            if !poll.is_zero() {
                tokio::spawn(n.clone().poll_forever(poll, rescan));
            }
            let app = router(n)
                .route("/healthz", axum::routing::get(|| async { "ok" }))
                .route(
                    "/metrics",
                    axum::routing::get(move || std::future::ready(prom.render())),
                );
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(%listen, %url, "normalize service listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(natlake_core::runtime::shutdown_signal())
                .await?;
            Ok(())
        }
    }
}
