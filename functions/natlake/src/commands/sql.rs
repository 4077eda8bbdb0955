//! `natlake sql`: DuckDB over the lake with the standard views.

use anyhow::Context;
use natlake_query::sql::{self, OutputFormat};

use super::LakeArgs;

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
    let root = lake
        .local_root()
        .map(|p| p.to_path_buf())
        .context("natlake sql reads a local lake (--data-dir or a file:// store); for S3, see queries/views.sql for the DuckDB settings")?;
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
