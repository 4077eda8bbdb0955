//! What the functions record under `_state/` about the objects they worked on, and the listings
//! that read it back:
//!
//! ```text
//! _state/normalized/<raw key>.json        normalize finished the raw object
//! _state/dead-letter/<raw key>.json       normalize gave up on it ({"error": …})
//! _state/quarantine/<lake key>            compaction could not read a lake object: its copy,
//! _state/quarantine/<lake key>.reason.json   and why ({"reason": …})
//! ```
//!
//! Normalize's poller and backfill list them to find work; lookups list them to say when an
//! answer could not see everything it needs (a raw object not yet, or never, normalized; a lake
//! object set aside) instead of answering as if the lake were whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

/// Done markers of normalized raw objects.
pub const NORMALIZED_PREFIX: &str = "_state/normalized";
/// Raw objects normalize gave up on after its retries.
pub const DEAD_LETTER_PREFIX: &str = "_state/dead-letter";
/// Lake objects compaction could not read, copied here with the reason and removed from the lake.
pub const QUARANTINE_DIR: &str = "_state/quarantine/";

/// Reasons read per listing at most: a backlog of thousands of failures is reported by key, not
/// fetched object by object on every lookup.
const REASONS_READ: usize = 20;

/// `<state>/<raw key>.json`.
pub fn marker_key(state: &str, raw_key: &str) -> Path {
    Path::from(format!("{state}/{raw_key}.json"))
}

/// Where compaction copies an unreadable lake object.
pub fn quarantine_key(lake_key: &str) -> String {
    format!("{QUARANTINE_DIR}{lake_key}")
}

/// Where compaction records why it set a lake object aside.
pub fn quarantine_reason_key(lake_key: &str) -> String {
    format!("{QUARANTINE_DIR}{lake_key}.reason.json")
}

/// Data an answer may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The raw object (pending, failed) or lake object (quarantined).
    pub key: String,
    pub state: GapState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapState {
    /// A raw object no normalize run has finished yet: in flight, or a backlog.
    Pending,
    /// A raw object normalize gave up on (a dead letter): its records are in no table.
    Failed,
    /// A lake object compaction could not read and set aside: its rows are in no answer until
    /// the raw object it came from is normalized again.
    Quarantined,
    /// What a relay received after its newest raw object in the store (`key`): still in the
    /// relay's open batch or its spool, or lost with the relay.
    NotReceived,
}

/// The raw objects of some hours: what of them is in no table, and each relay's newest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawListing {
    pub gaps: Vec<Gap>,
    /// By relay id: its newest raw object's key and when it was stored (µs; its records were
    /// all received before).
    pub newest: BTreeMap<String, (String, crate::model::Micros)>,
}

/// The relay id in a raw key (`…/<relay>_<batch>.nlraw.zst`; relay ids have no `_`).
pub fn relay_of(raw_key: &str) -> Option<&str> {
    natlake_raw::key::stem(raw_key)
        .split_once('_')
        .map(|(relay, _)| relay)
}

/// The `raw/<kind>/hour=H/` directories under `prefix` whose hour label lies in [since, until]
/// (`YYYY-MM-DDTHH` labels compare as strings); a prefix without hour directories is its own leaf.
pub async fn raw_hour_dirs(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<Vec<Path>, object_store::Error> {
    let prefix = prefix.trim_matches('/');
    let mut out = Vec::new();
    // raw/<kind>/hour=H/ : walk kinds and hours with delimiters so a time range lists only its hours.
    let kinds = if prefix == "raw" {
        store
            .list_with_delimiter(Some(&Path::from("raw")))
            .await?
            .common_prefixes
    } else {
        vec![Path::from(prefix)]
    };
    for kind in kinds {
        let hours = store
            .list_with_delimiter(Some(&kind))
            .await?
            .common_prefixes;
        let leaf = hours.is_empty();
        let dirs = if leaf { vec![kind.clone()] } else { hours };
        for dir in dirs {
            let label = dir
                .filename()
                .and_then(|f| f.strip_prefix("hour="))
                .unwrap_or("")
                .to_string();
            if !label.is_empty()
                && (since.is_some_and(|s| label.as_str() < s)
                    || until.is_some_and(|u| label.as_str() > u))
            {
                continue;
            }
            out.push(dir);
        }
    }
    Ok(out)
}

/// The raw objects directly in `dir`.
pub async fn list_raw(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
) -> Result<Vec<String>, object_store::Error> {
    store
        .list(Some(dir))
        .map_ok(|m| m.location.to_string())
        .try_filter(|k| futures::future::ready(k.ends_with(natlake_raw::SUFFIX)))
        .try_collect()
        .await
}

/// The raw keys under `dir` that have a `state` marker: one listing of `<state>/<dir>/`, not a
/// HEAD request per key.
pub async fn marked(
    store: &Arc<dyn ObjectStore>,
    state: &str,
    dir: &Path,
) -> Result<HashSet<String>, object_store::Error> {
    let under = Path::from(format!("{state}/{dir}"));
    let metas: Vec<_> = store.list(Some(&under)).try_collect().await?;
    Ok(metas
        .into_iter()
        .filter_map(|m| {
            m.location
                .as_ref()
                .strip_prefix(state)?
                .strip_prefix('/')?
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .collect())
}

/// The raw objects of the hours [since, until] (labels): those in no table, pending (no done
/// marker, no dead letter) and failed (a dead letter and no done marker since — a later run
/// that succeeded leaves the dead letter behind), oldest first — a dead letter counts even when
/// its raw object has expired: its records are lost to the lake either way; and each relay's
/// newest object.
pub async fn raw_listing(
    store: &Arc<dyn ObjectStore>,
    since: &str,
    until: &str,
) -> Result<RawListing, object_store::Error> {
    let dirs = raw_hour_dirs(store, "raw", Some(since), Some(until)).await?;
    let per_dir = dirs.iter().map(|dir| async move {
        let (metas, done, dead) = futures::try_join!(
            store
                .list(Some(dir))
                .try_filter(|m| futures::future::ready(
                    m.location.as_ref().ends_with(natlake_raw::SUFFIX)
                ))
                .try_collect::<Vec<_>>(),
            marked(store, NORMALIZED_PREFIX, dir),
            marked(store, DEAD_LETTER_PREFIX, dir),
        )?;
        let mut newest: BTreeMap<String, (String, crate::model::Micros)> = BTreeMap::new();
        for m in &metas {
            let key = m.location.as_ref();
            let Some(relay) = relay_of(key) else { continue };
            let stored = m.last_modified.timestamp_micros();
            let e = newest.entry(relay.to_owned()).or_default();
            if stored > e.1 {
                *e = (key.to_owned(), stored);
            }
        }
        let raw = metas.into_iter().map(|m| m.location.to_string());
        let mut gaps: Vec<Gap> = dead
            .iter()
            .filter(|k| !done.contains(*k))
            .map(|k| Gap {
                key: k.clone(),
                state: GapState::Failed,
                reason: None,
            })
            .collect();
        gaps.extend(
            raw.into_iter()
                .filter(|k| !done.contains(k) && !dead.contains(k))
                .map(|key| Gap {
                    key,
                    state: GapState::Pending,
                    reason: None,
                }),
        );
        Ok::<_, object_store::Error>((gaps, newest))
    });
    let mut out = RawListing::default();
    for (gaps, newest) in futures::future::try_join_all(per_dir).await? {
        out.gaps.extend(gaps);
        for (relay, (key, stored)) in newest {
            let e = out.newest.entry(relay).or_default();
            if stored > e.1 {
                *e = (key, stored);
            }
        }
    }
    out.gaps.sort_by(|a, b| a.key.cmp(&b.key));
    let failed = out.gaps.iter_mut().filter(|g| g.state == GapState::Failed);
    for g in failed.take(REASONS_READ) {
        g.reason = read_reason(store, &marker_key(DEAD_LETTER_PREFIX, &g.key), "/error").await;
    }
    Ok(out)
}

/// Objects of the lake partition directory `dir` that compaction set aside as unreadable, with
/// the reason. An entry stays until compaction merges a new object at the same key (the raw
/// object normalized again) — callers that see such an object in the partition may take the
/// entry as restored.
pub async fn quarantined(
    store: &Arc<dyn ObjectStore>,
    dir: &str,
) -> Result<Vec<Gap>, object_store::Error> {
    let under = Path::from(quarantine_key(dir.trim_end_matches('/')).as_str());
    let metas: Vec<_> = store.list(Some(&under)).try_collect().await?;
    let mut gaps: Vec<Gap> = metas
        .iter()
        .filter_map(|m| m.location.as_ref().strip_prefix(QUARANTINE_DIR))
        .filter(|k| k.ends_with(".parquet"))
        .map(|key| Gap {
            key: key.to_owned(),
            state: GapState::Quarantined,
            reason: None,
        })
        .collect();
    gaps.sort_by(|a, b| a.key.cmp(&b.key));
    for g in gaps.iter_mut().take(REASONS_READ) {
        let why = Path::from(quarantine_reason_key(&g.key).as_str());
        g.reason = read_reason(store, &why, "/reason").await;
    }
    Ok(gaps)
}

/// A JSON record's reason field; None when it cannot be read (the gap is reported all the same).
async fn read_reason(store: &Arc<dyn ObjectStore>, key: &Path, pointer: &str) -> Option<String> {
    let bytes = store.get(key).await.ok()?.bytes().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.pointer(pointer)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;

    async fn put(store: &Arc<dyn ObjectStore>, key: &str, body: &str) {
        store
            .put(&Path::from(key), PutPayload::from(body.as_bytes().to_vec()))
            .await
            .unwrap();
    }

    /// Pending and failed raw objects of the hours asked, with the dead letter's error; a dead
    /// letter whose object was normalized since is no gap, and neither are other hours.
    #[tokio::test]
    async fn unnormalized_raw_objects_are_pending_or_failed() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = "raw/syslog_udp/hour=2026-11-24T10";
        for n in ["a", "b", "c", "d"] {
            put(&store, &format!("{dir}/r_{n}.nlraw.zst"), "x").await;
        }
        put(
            &store,
            "raw/syslog_udp/hour=2026-11-24T12/r_e.nlraw.zst",
            "x",
        )
        .await;
        // Stored last (a later modification time than the others).
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        put(&store, "raw/ipfix/hour=2026-11-24T11/r_f.nlraw.zst", "x").await;
        put(
            &store,
            &format!("{NORMALIZED_PREFIX}/{dir}/r_a.nlraw.zst.json"),
            "{}",
        )
        .await;
        // Failed, then normalized by a later run: no gap.
        put(
            &store,
            &format!("{NORMALIZED_PREFIX}/{dir}/r_b.nlraw.zst.json"),
            "{}",
        )
        .await;
        put(
            &store,
            &format!("{DEAD_LETTER_PREFIX}/{dir}/r_b.nlraw.zst.json"),
            "{}",
        )
        .await;
        put(
            &store,
            &format!("{DEAD_LETTER_PREFIX}/{dir}/r_c.nlraw.zst.json"),
            r#"{"raw_key": "x", "error": "zstd: truncated"}"#,
        )
        .await;
        // A dead letter whose raw object expired still counts.
        put(
            &store,
            &format!("{DEAD_LETTER_PREFIX}/{dir}/r_gone.nlraw.zst.json"),
            r#"{"error": "gone"}"#,
        )
        .await;
        let listing = raw_listing(&store, "2026-11-24T10", "2026-11-24T11")
            .await
            .unwrap();
        let got: Vec<(&str, GapState, Option<&str>)> = listing
            .gaps
            .iter()
            .map(|g| (g.key.as_str(), g.state, g.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "raw/ipfix/hour=2026-11-24T11/r_f.nlraw.zst",
                    GapState::Pending,
                    None
                ),
                (
                    "raw/syslog_udp/hour=2026-11-24T10/r_c.nlraw.zst",
                    GapState::Failed,
                    Some("zstd: truncated")
                ),
                (
                    "raw/syslog_udp/hour=2026-11-24T10/r_d.nlraw.zst",
                    GapState::Pending,
                    None
                ),
                (
                    "raw/syslog_udp/hour=2026-11-24T10/r_gone.nlraw.zst",
                    GapState::Failed,
                    Some("gone")
                ),
            ]
        );
        // Relay `r`'s newest object in those hours is the last one stored (r_f).
        let newest: Vec<(&str, &str)> = listing
            .newest
            .iter()
            .map(|(relay, (key, _))| (relay.as_str(), key.as_str()))
            .collect();
        assert_eq!(
            newest,
            [("r", "raw/ipfix/hour=2026-11-24T11/r_f.nlraw.zst")]
        );
    }

    /// A partition's quarantined objects with their reasons; another partition's are not listed.
    #[tokio::test]
    async fn quarantined_objects_of_a_partition() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = "lake/nat_events/hour=2026-11-24T10/x_net=198.51.100.0_24";
        let key = format!("{dir}/r_a.parquet");
        put(&store, &quarantine_key(&key), "PAR1").await;
        put(
            &store,
            &quarantine_reason_key(&key),
            r#"{"key": "k", "reason": "bad footer"}"#,
        )
        .await;
        let other = "lake/nat_events/hour=2026-11-24T10/x_net=198.51.10.0_24/r_b.parquet";
        put(&store, &quarantine_key(other), "PAR1").await;
        let gaps = quarantined(&store, &format!("{dir}/")).await.unwrap();
        assert_eq!(
            gaps,
            vec![Gap {
                key,
                state: GapState::Quarantined,
                reason: Some("bad footer".into())
            }]
        );
    }
}
