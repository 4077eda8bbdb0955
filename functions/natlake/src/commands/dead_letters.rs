//! `natlake dead-letters`: the raw objects normalize gave up on, and accepting their loss once
//! an operator has checked them. Until then every lookup over their hours is ambiguous.

use std::io::Write;

use anyhow::Context;
use natlake_core::lake::state;

use super::LakeArgs;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List the raw objects normalize gave up on ("failed", with the error) and those whose
    /// loss was accepted ("accepted", with the reason), one JSON object per line, oldest first.
    List {
        #[command(flatten)]
        lake: LakeArgs,
        /// First hour (YYYY-MM-DDTHH, UTC) whose objects are listed; default: all.
        #[arg(long)]
        since: Option<String>,
        /// Last hour listed; default: all.
        #[arg(long)]
        until: Option<String>,
    },
    /// Accept the loss of raw objects after checking them (`natlake raw cat`): lookups then list
    /// them under `accepted_losses`, with the reason, instead of answering ambiguous. An object
    /// without a dead letter (where failures go to a queue, as on AWS) needs --force. A later
    /// normalize run that succeeds removes the acceptance. Prints what it recorded.
    Accept {
        #[command(flatten)]
        lake: LakeArgs,
        /// Why the loss is acceptable (kept with it and shown in every answer over its hours).
        #[arg(long)]
        reason: String,
        /// Accept objects that have no dead letter (failed on AWS, in the failure queue).
        #[arg(long)]
        force: bool,
        /// Raw object keys (raw/<kind>/hour=…/….nlraw.zst).
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

pub async fn run(cmd: Cmd) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::List { lake, since, until } => {
            let url = lake.url()?;
            let store = natlake_store::open(&url, &Default::default())?;
            // Hour labels compare as strings; these bound every label.
            let (since, until) = (
                since.as_deref().unwrap_or("0"),
                until.as_deref().unwrap_or("9"),
            );
            let (failed, accepted) = state::losses(&store, since, until, usize::MAX)
                .await
                .with_context(|| format!("listing {url}"))?;
            for g in failed.iter().chain(&accepted) {
                writeln!(out, "{}", serde_json::to_string(g)?)?;
            }
        }
        Cmd::Accept {
            lake,
            reason,
            force,
            keys,
        } => {
            let url = lake.url()?;
            let store = natlake_store::open(&url, &Default::default())?;
            let now = natlake_core::time::now_micros();
            let mut failed = 0;
            for key in &keys {
                match state::accept_loss(&store, key, &reason, force, now).await {
                    Ok(a) => writeln!(out, "{}", serde_json::to_string(&a)?)?,
                    Err(e) => {
                        eprintln!("natlake: {key}: {e}");
                        failed += 1;
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} of {} not accepted", keys.len());
        }
    }
    Ok(())
}
