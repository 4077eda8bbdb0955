//! `natlake normalize`: backfill — normalize raw objects already in a store. Resumable: objects
//! with a done-marker are skipped unless --force.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use futures::StreamExt;
use natlake_normalize::handler::{NormalizeConfig, is_done, normalize_with_retry};

#[derive(clap::Args)]
pub struct Args {
    /// Store URL (file:///…, s3://…).
    #[arg(long, env = "NATLAKE_STORE")]
    store: String,
    /// Key prefix to normalize: raw/, raw/<kind>/ or raw/<kind>/hour=…/
    #[arg(long, default_value = "raw/")]
    prefix: String,
    /// First hour to include (RFC 3339 or epoch seconds).
    #[arg(long)]
    since: Option<String>,
    /// Last hour to include.
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
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = natlake_store::open(&args.store, &Default::default())?;
    let label = |s: &Option<String>| -> anyhow::Result<Option<String>> {
        s.as_deref()
            .map(|v| natlake_core::time::parse_time(v).map(natlake_core::lake::layout::hour_label))
            .transpose()
            .map_err(Into::into)
    };
    let (since, until) = (label(&args.since)?, label(&args.until)?);
    let keys =
        natlake_normalize::scan::raw_keys(&store, &args.prefix, since.as_deref(), until.as_deref())
            .await
            .with_context(|| format!("listing {}", args.prefix))?;
    let cfg = NormalizeConfig {
        format: args.format.clone(),
        enrich: natlake_normalize::enrich::EnrichConfig::from_file(args.enrich_config.as_deref())?,
        ..NormalizeConfig::default()
    };
    cfg.parsed_format()?;
    let cfg = cfg.load_enrichment(&store).await?;
    let total = keys.len();
    let (done, skipped, failed, events) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let store = Arc::new(store);
    futures::stream::iter(keys)
        .for_each_concurrent(args.workers.max(1), |key| {
            let (store, cfg) = (store.clone(), cfg.clone());
            let (done, skipped, failed, events) = (&done, &skipped, &failed, &events);
            async move {
                if !args.force && matches!(is_done(&store, &key).await, Ok(true)) {
                    skipped.fetch_add(1, Ordering::Relaxed);
                } else {
                    match normalize_with_retry(&store, &key, &cfg, 3).await {
                        Ok(r) => {
                            events.fetch_add(r.events, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("failed: {key}: {e}");
                        }
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                eprint!(
                    "\rnormalize: {n}/{total} objects ({} skipped, {} failed, {} events)",
                    skipped.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                    events.load(Ordering::Relaxed)
                );
            }
        })
        .await;
    eprintln!();
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(
        failed == 0,
        "{failed} objects failed (recorded under _state/dead-letter/)"
    );
    Ok(())
}
