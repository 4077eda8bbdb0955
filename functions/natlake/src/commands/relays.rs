//! `natlake relays`: the relays' heartbeats (up to when each input kind is stored), retiring a
//! relay that is gone for good so lookups stop waiting on it, and what relays dropped.

use std::io::Write;

use anyhow::Context;
use natlake_core::lake::relays;
use natlake_core::time::{format_time, parse_time};

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
    /// One JSON object per span of messages relays dropped (queue or spool full, oversized,
    /// unclean stop, …) that began in the hours given, with its acceptance if any.
    Drops {
        #[command(flatten)]
        lake: LakeArgs,
        /// From (RFC 3339 or epoch seconds; default: a day before `--until`).
        #[arg(long)]
        since: Option<String>,
        /// Until (RFC 3339 or epoch seconds; default: now).
        #[arg(long)]
        until: Option<String>,
    },
    /// Accept the loss of spans of dropped messages after checking them (the relay was idle
    /// for the addresses concerned, the device re-sent, …): answers then list each under
    /// `accepted_losses`, with the reason, instead of answering ambiguous. A span that grows
    /// after (more drops under the same key) is reported again. Prints what it recorded.
    AcceptDrops {
        #[command(flatten)]
        lake: LakeArgs,
        /// Why the dropped messages are acceptable to lose.
        #[arg(long)]
        reason: String,
        /// Span keys, as answers list them under `unread` (`natlake relays drops`).
        #[arg(required = true)]
        keys: Vec<String>,
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
        Cmd::Drops { lake, since, until } => {
            let url = lake.url()?;
            let store = natlake_store::open(&url, &Default::default())?;
            let until = match until {
                Some(t) => parse_time(&t)?,
                None => natlake_core::time::now_micros(),
            };
            let since = match since {
                Some(t) => parse_time(&t)?,
                None => until - 86_400_000_000,
            };
            anyhow::ensure!(since <= until, "--since is after --until");
            let spans = relays::drops(
                &store,
                since.div_euclid(1_000_000),
                until.div_euclid(1_000_000),
                usize::MAX,
            )
            .await
            .with_context(|| format!("listing {url}"))?;
            for d in &spans {
                let mut v = serde_json::json!({ "key": d.key, "relay": d.relay, "kind": d.kind });
                match &d.span {
                    Ok(s) => {
                        v["first"] = format_time(s.first_us).into();
                        v["last"] = format_time(s.last_us).into();
                        v["messages"] = s.messages.into();
                        v["reasons"] = serde_json::to_value(&s.reasons)?;
                    }
                    Err(e) => v["error"] = e.clone().into(),
                }
                if let Some(a) = &d.accepted {
                    v["accepted"] = serde_json::json!({
                        "at": format_time(a.at_us),
                        "reason": a.reason,
                        "covers_span": d.accepted().is_some(),
                    });
                }
                writeln!(out, "{v}")?;
            }
        }
        Cmd::AcceptDrops { lake, reason, keys } => {
            let url = lake.url()?;
            let store = natlake_store::open(&url, &Default::default())?;
            let now = natlake_core::time::now_micros();
            let mut failed = 0;
            for key in &keys {
                match relays::accept_drops(&store, key, &reason, now).await {
                    Ok(a) => writeln!(out, "{}", serde_json::to_string(&a)?)?,
                    Err(e) => {
                        eprintln!("natlake: {e}");
                        failed += 1;
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} of {} not accepted", keys.len());
        }
    }
    Ok(())
}
