//! `natlake sql`: DuckDB over the lake with the standard views and the audit table.

use std::path::PathBuf;

use anyhow::Context;
use natlake_core::lake::layout;
use natlake_core::model::Table;
use natlake_query::sql::{self, OutputFormat};

use super::LakeArgs;
use natlake_normalize::backfill::hour_flag;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lake: LakeArgs,
    /// Read the SQL from a file (e.g. queries/reports/top_inside.sql).
    #[arg(short = 'f', long = "file", conflicts_with = "query")]
    file: Option<std::path::PathBuf>,
    /// The SQL text.
    query: Option<String>,
    /// table, csv or json (one object per line).
    #[arg(long, default_value = "table")]
    output: String,
    /// On a remote store, copy only these hours' partitions (`2026-11-23T10`, RFC 3339 or epoch
    /// seconds); without them the whole lake and audit log are copied.
    #[arg(long)]
    since: Option<String>,
    /// Last hour to copy (inclusive; same forms).
    #[arg(long)]
    until: Option<String>,
    /// Where the local copy of a remote store is kept between runs (default: under the temp
    /// directory, one per store URL).
    #[arg(long)]
    mirror_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let fmt = OutputFormat::parse(&args.output)
        .ok_or_else(|| anyhow::anyhow!("--output must be table, csv or json"))?;
    let text = match (&args.file, &args.query) {
        (Some(f), _) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, Some(q)) => q.clone(),
        (None, None) => anyhow::bail!("give SQL text or -f FILE"),
    };
    let lake = args.lake.lake()?;
    let root = match lake.local_root() {
        Some(p) => p.to_path_buf(),
        None => mirror(&args, &lake).await?,
    };
    let scratch = lake.scratch.clone();
    let out = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let conn = sql::open_with_views(&root, &scratch)?;
        let batches = sql::run(&conn, &text)?;
        Ok(sql::render(&batches, fmt)?)
    })
    .await??;
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// A remote store: its lake (and audit log) copied into a local directory DuckDB can read.
async fn mirror(args: &Args, lake: &natlake_query::Lake) -> anyhow::Result<PathBuf> {
    let url = args.lake.url()?;
    let dir = match &args.mirror_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join("natlake-sql").join(
            url.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>(),
        ),
    };
    let hours = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
        v.as_deref()
            .map(|v| {
                let label = hour_flag(flag, v)?;
                layout::parse_hour_label(&label).context("hour label")
            })
            .transpose()
    };
    let prefixes = match (hours("since", &args.since)?, hours("until", &args.until)?) {
        (None, None) => vec!["lake/".to_owned(), "audit/".to_owned()],
        (since, until) => {
            let now = natlake_core::time::now_micros();
            let since = since.unwrap_or_else(|| layout::hour_start(now));
            let until = until.unwrap_or_else(|| layout::hour_start(now));
            anyhow::ensure!(since <= until, "--since is after --until");
            let mut p = Vec::new();
            for h in layout::hours_between(since * 1_000_000, until * 1_000_000) {
                p.extend(Table::ALL.map(|t| layout::hour_dir(t, h)));
                p.push(format!("audit/hour={}/", natlake_raw::key::hour_label(h)));
            }
            p
        }
    };
    let stats = natlake_query::mirror::mirror(lake.store.as_ref(), &prefixes, &dir)
        .await
        .with_context(|| format!("copying {url} into {}", dir.display()))?;
    eprintln!(
        "natlake sql: {} objects under {} prefixes of {url}; fetched {} ({} bytes), removed {} stale, in {}",
        stats.objects,
        prefixes.len(),
        stats.fetched,
        stats.fetched_bytes,
        stats.removed,
        dir.display()
    );
    Ok(dir)
}
