//! `natlake raw cat`: the records of a raw object as JSON lines.

use std::io::Write;

use anyhow::Context;
use object_store::ObjectStoreExt;
use object_store::path::Path;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Print a raw object's records, one JSON object per line (payload as text when UTF-8,
    /// else payload_base64). The header goes first with "header": true.
    Cat {
        /// Read KEY from this store (file:///…, s3://…) instead of a local file.
        #[arg(long, env = "NATLAKE_STORE")]
        store: Option<String>,
        /// A local file, or the object key with --store.
        target: String,
    },
}

pub async fn run(cmd: Cmd) -> anyhow::Result<()> {
    let Cmd::Cat { store, target } = cmd;
    let bytes = match store {
        Some(url) => {
            let s = natlake_store::open(&url, &Default::default())?;
            s.get(&Path::from(target.as_str()))
                .await
                .with_context(|| format!("reading {target}"))?
                .bytes()
                .await?
                .to_vec()
        }
        None => std::fs::read(&target).with_context(|| format!("reading {target}"))?,
    };
    let reader = natlake_raw::BatchReader::from_compressed(&bytes)
        .with_context(|| format!("{target} is not a readable raw object"))?;
    let mut out = std::io::stdout().lock();
    let mut header = serde_json::to_value(reader.header())?;
    header["header"] = serde_json::Value::Bool(true);
    writeln!(out, "{header}")?;
    for item in reader {
        match item {
            Ok((i, rec)) => writeln!(out, "{}", natlake_raw::record_to_json(i, &rec))?,
            Err(e) => anyhow::bail!("{target}: {e} (records before it were printed)"),
        }
    }
    Ok(())
}
