//! `lookup`: the lookup function on AWS Lambda (`lookup lambda`, function URL / API Gateway) or
//! as a local service (`lookup serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use natlake_query::Lake;

#[derive(Parser)]
#[command(
    name = "lookup",
    version,
    about = "natlake lookup function: attribution and sessions over HTTP"
)]
struct Cli {
    /// Store URL: file:///abs/dir or s3://bucket[/prefix] (endpoint and credentials from AWS_*).
    #[arg(long, env = "NATLAKE_STORE", global = true)]
    store: Option<String>,
    /// DuckDB home/temp and the object cache (Lambda: /tmp).
    #[arg(long, env = "NATLAKE_SCRATCH", global = true)]
    scratch: Option<PathBuf>,
    /// API keys as name:sha256-hex pairs, comma-separated (the digest of a key:
    /// `printf %s KEY | sha256sum`); none: open.
    #[arg(long, env = "NATLAKE_API_KEYS", global = true, hide_env_values = true)]
    api_keys: Option<String>,
    /// Deterministic NAT configuration (TOML or JSON): checked against the history in the
    /// store (past periods must be unchanged) and published to config/deterministic_nat.toml,
    /// which every lookup reads. Without it the stored configuration, if any, is used.
    #[arg(long, env = "NATLAKE_DETERMINISTIC", global = true)]
    deterministic: Option<PathBuf>,
    /// Enrichment configuration (TOML, as normalize's `--enrich-config`): its identity sources
    /// (RADIUS, DHCP) are read at each question's time, beside the subscriber the events
    /// recorded; a holder that differs makes the answer ambiguous.
    #[arg(long, env = "NATLAKE_ENRICH_CONFIG", global = true)]
    enrich_config: Option<PathBuf>,
    #[command(subcommand)]
    door: Door,
}

#[derive(Subcommand)]
enum Door {
    /// Serve under AWS Lambda (the default on Lambda).
    Lambda,
    /// Serve HTTP locally.
    Serve {
        #[arg(long, env = "NATLAKE_LISTEN", default_value = "127.0.0.1:9102")]
        listen: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (on_lambda, args) = natlake_core::runtime::args_or_lambda("lookup");
    let cli = Cli::parse_from(args);
    natlake_core::runtime::init_tracing(!on_lambda);
    let url = cli.store.context("--store or NATLAKE_STORE is required")?;
    let scratch = cli.scratch.unwrap_or_else(std::env::temp_dir);
    let mut lake = Lake::open(&url, &scratch)?;
    if let Some(path) = &cli.enrich_config {
        let cfg =
            natlake_core::enrich::sources::EnrichConfig::read(Some(path), &lake.store).await?;
        let identity =
            natlake_core::enrich::sources::EnrichHandle::load(&lake.store, &cfg.identity_only())
                .await
                .context("loading the identity sources")?;
        lake = lake.with_identity(identity);
    }
    let lake = Arc::new(lake);
    if let Some(path) = &cli.deterministic {
        let cfg = natlake_query::deterministic::read_file(path)?;
        let changed = natlake_query::deterministic::publish(&lake.store, &cfg)
            .await
            .context("publishing the deterministic NAT configuration")?;
        tracing::info!(
            mappings = cfg.entries.len(),
            changed,
            "deterministic NAT configuration published"
        );
    }
    let keys = natlake_lookup::access::ApiKeys::parse(&cli.api_keys.unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("--api-keys: {e}"))?;
    if keys.is_empty() && matches!(cli.door, Door::Serve { .. }) {
        tracing::warn!(
            "no API keys configured: the lookup service answers anyone who can reach it"
        );
    }
    let app = natlake_lookup::api::router_with_keys(lake, keys);
    match cli.door {
        Door::Lambda => lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e)),
        Door::Serve { listen } => {
            // Outside the API-key layer, like /healthz: counters only, for the scraper.
            let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .context("installing the metrics recorder")?;
            let app = app.route(
                "/metrics",
                axum::routing::get(move || std::future::ready(metrics.render())),
            );
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(%listen, %url, "lookup service listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(natlake_core::runtime::shutdown_signal())
                .await?;
            Ok(())
        }
    }
}
