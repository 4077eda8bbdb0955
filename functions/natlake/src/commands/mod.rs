pub mod compact;
pub mod dead_letters;
pub mod demo;
pub mod lookup;
pub mod normalize;
pub mod parse;
pub mod raw;
pub mod relays;
pub mod sql;
pub mod up;

use std::path::PathBuf;

use anyhow::Context;

/// Where a command finds the lake: a data directory (the embedded default) or a store URL.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct LakeArgs {
    /// Local data directory (as given to `natlake up`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Store URL: file:///abs/dir or s3://bucket[/prefix] (endpoint, credentials from AWS_*).
    #[arg(long, env = "NATLAKE_STORE")]
    pub store: Option<String>,
}

impl LakeArgs {
    pub fn url(&self) -> anyhow::Result<String> {
        match (&self.data_dir, &self.store) {
            (Some(d), _) => Ok(natlake_store::dir_url(d)?),
            (None, Some(s)) => Ok(s.clone()),
            (None, None) => anyhow::bail!("give --data-dir or --store"),
        }
    }

    pub fn lake(&self) -> anyhow::Result<natlake_query::Lake> {
        let url = self.url()?;
        natlake_query::Lake::open(&url, &std::env::temp_dir())
            .with_context(|| format!("opening {url}"))
    }
}

pub use natlake_core::runtime::parse_duration;
