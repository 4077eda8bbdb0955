//! `natlake relays`: the relays' heartbeats (up to when each input kind is stored), and
//! retiring a relay that is gone for good so lookups stop waiting on it.

use std::io::Write;

use anyhow::Context;
use natlake_core::lake::relays;
use natlake_core::time::format_time;

use super::LakeArgs;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// One JSON object per relay: its heartbeat with the times written out, how long ago it
    /// was written, and its retirement if any.
    List {
        #[command(flatten)]
        lake: LakeArgs,
    },
    /// Declare a relay gone for good (decommissioned, or its disk lost) after checking it:
    /// lookups then list it under `accepted_losses`, with the reason, instead of answering
    /// ambiguous for every question after its last heartbeat's claim. A heartbeat the relay
    /// writes later undoes it. Prints what it recorded.
    Retire {
        #[command(flatten)]
        lake: LakeArgs,
        /// Why the relay's undelivered messages are acceptable to lose.
        #[arg(long)]
        reason: String,
        /// Relay ids, as in raw keys (`natlake relays list`).
        #[arg(required = true)]
        relays: Vec<String>,
    },
}

pub async fn run(cmd: Cmd) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::List { lake } => {
            let url = lake.url()?;
            let store = natlake_store::open(&url, &Default::default())?;
            let l = relays::list(&store)
                .await
                .with_context(|| format!("listing {url}"))?;
            let now = natlake_core::time::now_micros();
            for (relay, hb) in &l.heartbeats {
                let mut v = serde_json::json!({ "relay": relay });
                match hb {
                    Ok(hb) => {
                        v["written"] = format_time(hb.written_us).into();
                        v["age_seconds"] = ((now - hb.written_us) / 1_000_000).into();
                        v["started"] = format_time(hb.started_us).into();
                        v["stopped"] = hb.stopped.into();
                        v["stored_through"] = hb
                            .kinds
                            .iter()
                            .map(|(k, p)| (k.clone(), format_time(p.complete_through_us).into()))
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                        v["spooled_batches"] = hb
                            .kinds
                            .iter()
                            .map(|(k, p)| (k.clone(), p.spooled_batches.into()))
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                        v["dropped"] = serde_json::to_value(&hb.dropped)?;
                    }
                    Err(e) => v["error"] = e.clone().into(),
                }
                if let Some(r) = l.retirement(relay) {
                    v["retired"] = serde_json::json!({
                        "at": format_time(r.at_us),
                        "reason": r.reason,
                    });
                }
                writeln!(out, "{v}")?;
            }
        }
        Cmd::Retire {
            lake,
            reason,
            relays: ids,
        } => {
            let url = lake.url()?;
            let store = natlake_store::open(&url, &Default::default())?;
            let now = natlake_core::time::now_micros();
            let mut failed = 0;
            for id in &ids {
                match relays::retire(&store, id, &reason, now).await {
                    Ok(r) => writeln!(out, "{}", serde_json::to_string(&r)?)?,
                    Err(e) => {
                        eprintln!("natlake: {id}: {e}");
                        failed += 1;
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} of {} not retired", ids.len());
        }
    }
    Ok(())
}
