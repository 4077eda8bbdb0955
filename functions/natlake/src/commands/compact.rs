//! `natlake compact`: one run of the compact function over a lake (the same handler the hourly
//! Lambda and `natlake up`'s timer run).

use natlake_compact::CompactConfig;

use super::LakeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Pretend it is this time (RFC 3339): work on every hour finished by then.
    #[arg(long)]
    pub now: Option<String>,
    /// How long after an hour ends before it counts as finished.
    #[arg(long, default_value = "10m", value_parser = super::parse_duration)]
    pub grace: std::time::Duration,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let store = natlake_store::open(&a.lake.url()?, &Default::default())?;
    let now = match &a.now {
        Some(t) => natlake_core::time::parse_time(t).map_err(|e| anyhow::anyhow!("--now: {e}"))?,
        None => natlake_core::time::now_micros(),
    };
    let cfg = CompactConfig {
        grace: i64::try_from(a.grace.as_micros()).unwrap_or(i64::MAX),
        ..Default::default()
    };
    let report = natlake_compact::run(&store, &cfg, now).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
