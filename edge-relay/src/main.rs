//! `edge-relay`: the thin binary around the library.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use edge_relay::{Cli, Relay};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("edge-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = cli.to_config()?;
    if let Some(path) = &cli.check_config {
        cfg.validate()
            .with_context(|| format!("{}", path.display()))?;
        println!(
            "{}: ok ({} source(s): {}; store {}; spool {} max {}; batches {} / {})",
            path.display(),
            cfg.sources.len(),
            cfg.sources
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
            cfg.sink.store,
            cfg.spool.dir.display(),
            cfg.spool.max_bytes,
            cfg.batch.max_bytes,
            humantime::format_duration(cfg.batch.max_age),
        );
        return Ok(());
    }
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("relay-rt")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let relay = Relay::start(cfg).await?;
        wait_for_signal().await?;
        tracing::info!("stopping: flushing open batches to the spool and the store");
        let stats = relay.shutdown().await?;
        tracing::info!(
            received = stats.received_messages,
            dropped = stats.dropped_total(),
            uploaded_batches = stats.batches_uploaded,
            left_in_spool = stats.spool_files,
            "stopped"
        );
        anyhow::Ok(())
    })?;
    // Detached blocking work (if any) must not hold the process.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    Ok(())
}
