//! What the functions record under `_state/` about the objects they worked on, and the listings
//! that read it back:
//!
//! ```text
//! _state/normalized/<raw key>.json        normalize finished the raw object
//! _state/dead-letter/<raw key>.json       normalize gave up on it ({"error": …})
//! _state/accepted/<raw key>.json          an operator accepted its loss ({"reason": …, "error": …})
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
/// Raw objects whose loss an operator accepted after checking them (`natlake dead-letters
/// accept`): a foreign file dropped in `raw/`, an object of a device that serves no question.
/// Lookups still list them, apart from what makes an answer ambiguous.
pub const ACCEPTED_PREFIX: &str = "_state/accepted";
/// Lake objects compaction could not read, copied here with the reason and removed from the lake.
pub const QUARANTINE_DIR: &str = "_state/quarantine/";

/// Reasons read per listing at most by lookups: a backlog of thousands of failures is reported
/// by key, not fetched object by object on every lookup.
pub const REASONS_READ: usize = 20;

/// `<state>/<raw key>.json`.
pub fn marker_key(state: &str, raw_key: &str) -> Path {
    Path::from(format!("{state}/{raw_key}.json"))
}

/// The raw key a `state` marker is for: [`marker_key`] read backwards.
fn marked_key<'a>(state: &str, marker: &'a str) -> Option<&'a str> {
    marker
        .strip_prefix(state)?
        .strip_prefix('/')?
        .strip_suffix(".json")
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
    /// A loss an operator accepted — a raw object (`natlake dead-letters accept`) or a span of
    /// messages a relay dropped (`natlake relays accept-drops`; `key`: the acceptance beside
    /// the span): its records are in no table, and the operator judged no answer needs them.
    Accepted,
    /// A lake object compaction could not read and set aside: its rows are in no answer until
    /// the raw object it came from is normalized again.
    Quarantined,
    /// What a relay received after its newest raw object in the store, or after the time its
    /// heartbeat (`key`) says everything is stored up to: still in the relay's open batch or
    /// its spool, or lost with the relay.
    NotReceived,
    /// Messages a relay received and could not keep (queue or spool full, oversized, …;
    /// `key`: the relay's record of them): whatever they held is in no table.
    Dropped,
    /// A relay an operator retired (`natlake relays retire`): what it did not deliver is lost,
    /// and the operator judged that no answer needs it.
    Retired,
}

/// The raw objects of some hours: those no normalize run has finished, and each relay's newest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawListing {
    /// Pending: neither a done marker nor a dead letter.
    pub pending: Vec<Gap>,
    /// By (input kind, relay id): its newest raw object's key and when it was stored (µs; the
    /// records in it were all received before).
    pub newest: BTreeMap<(String, String), (String, crate::model::Micros)>,
}

/// The relay id in a raw key (`…/<relay>_<batch>.nlraw.zst`; relay ids have no `_`).
pub fn relay_of(raw_key: &str) -> Option<&str> {
    natlake_raw::key::stem(raw_key)
        .split_once('_')
        .map(|(relay, _)| relay)
}

pub use natlake_raw::key::{hour_of, kind_of};

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
        .iter()
        .filter_map(|m| marked_key(state, m.location.as_ref()).map(str::to_owned))
        .collect())
}

/// The raw objects of the hours [since, until] (labels) that no normalize run has finished and
/// none gave up on (pending: in flight, or a backlog), oldest first, and each relay's newest
/// object of each kind.
pub async fn raw_listing(
    store: &Arc<dyn ObjectStore>,
    since: &str,
    until: &str,
) -> Result<RawListing, object_store::Error> {
    let dirs = raw_hour_dirs(store, "raw", Some(since), Some(until)).await?;
    let per_dir = dirs.iter().map(|dir| async move {
        let (metas, done, dead, accepted) = futures::try_join!(
            store
                .list(Some(dir))
                .try_filter(|m| futures::future::ready(
                    m.location.as_ref().ends_with(natlake_raw::SUFFIX)
                ))
                .try_collect::<Vec<_>>(),
            marked(store, NORMALIZED_PREFIX, dir),
            marked(store, DEAD_LETTER_PREFIX, dir),
            marked(store, ACCEPTED_PREFIX, dir),
        )?;
        Ok::<_, object_store::Error>((metas, done, dead, accepted))
    });
    let mut out = RawListing::default();
    for (metas, done, dead, accepted) in futures::future::try_join_all(per_dir).await? {
        for m in metas {
            let key = m.location.as_ref();
            if let (Some(kind), Some(relay)) = (kind_of(key), relay_of(key)) {
                let stored = m.last_modified.timestamp_micros();
                let e = out
                    .newest
                    .entry((kind.to_owned(), relay.to_owned()))
                    .or_default();
                if stored > e.1 {
                    *e = (key.to_owned(), stored);
                }
            }
            if !done.contains(key) && !dead.contains(key) && !accepted.contains(key) {
                out.pending.push(Gap {
                    key: key.to_owned(),
                    state: GapState::Pending,
                    reason: None,
                });
            }
        }
    }
    out.pending.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The raw keys of the hours [since, until] (labels) that have a `state` marker, oldest first:
/// listed from the markers themselves, which outlive the raw objects.
async fn marked_in_hours(
    store: &Arc<dyn ObjectStore>,
    state: &str,
    since: &str,
    until: &str,
) -> Result<Vec<String>, object_store::Error> {
    let root = Path::from(format!("{state}/raw"));
    let kinds = store
        .list_with_delimiter(Some(&root))
        .await?
        .common_prefixes;
    let per_kind = kinds
        .iter()
        .map(|kind| async move { store.list(Some(kind)).try_collect::<Vec<_>>().await });
    let mut keys: Vec<String> = Vec::new();
    for metas in futures::future::try_join_all(per_kind).await? {
        keys.extend(metas.iter().filter_map(|m| {
            let key = marked_key(state, m.location.as_ref())?;
            let hour = hour_of(key)?;
            (since <= hour && hour <= until).then(|| key.to_owned())
        }));
    }
    keys.sort();
    Ok(keys)
}

/// `keys` as gaps in `state`, with the reason read from each one's `marker` (the first
/// `reasons`) at `pointer`.
async fn gaps_with_reasons(
    store: &Arc<dyn ObjectStore>,
    keys: Vec<String>,
    reasons: usize,
    state: GapState,
    marker: &str,
    pointer: &str,
) -> Vec<Gap> {
    let reasons = futures::future::join_all(
        keys.iter()
            .take(reasons)
            .map(|key| read_reason(store, marker_key(marker, key), pointer)),
    )
    .await;
    keys.into_iter()
        .enumerate()
        .map(|(i, key)| Gap {
            key,
            state,
            reason: reasons.get(i).cloned().flatten(),
        })
        .collect()
}

/// Raw objects lost for good, of the hours [since, until] (labels), oldest first:
/// - failed: normalize gave up on them and no later run normalized them (a dead letter without a
///   done marker), with the dead letter's error;
/// - accepted: an operator accepted the loss (see [`accept_loss`]), with the operator's reason.
///
/// Listed from the dead letters and acceptances themselves, which outlive the raw objects and
/// their done markers (a run that succeeds later removes both): a lost object is reported for
/// as long as the lake holds its hours.
pub async fn losses(
    store: &Arc<dyn ObjectStore>,
    since: &str,
    until: &str,
    reasons: usize,
) -> Result<(Vec<Gap>, Vec<Gap>), object_store::Error> {
    let (dead, accepted) = futures::try_join!(
        marked_in_hours(store, DEAD_LETTER_PREFIX, since, until),
        marked_in_hours(store, ACCEPTED_PREFIX, since, until),
    )?;
    // An accepted object that failed again (a backfill retried it) stays accepted.
    let acc: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let dead: Vec<String> = dead
        .into_iter()
        .filter(|k| !acc.contains(k.as_str()))
        .collect();
    // A dead letter left by a run before dead letters were removed on success, or an object
    // normalized where neither is removed (the Lambda handler): not lost if a done marker says so.
    let (failed, accepted) =
        futures::try_join!(not_normalized(store, dead), not_normalized(store, accepted))?;
    let (failed, accepted) = futures::join!(
        gaps_with_reasons(
            store,
            failed,
            reasons,
            GapState::Failed,
            DEAD_LETTER_PREFIX,
            "/error"
        ),
        gaps_with_reasons(
            store,
            accepted,
            reasons,
            GapState::Accepted,
            ACCEPTED_PREFIX,
            "/reason"
        ),
    );
    Ok((failed, accepted))
}

/// The keys without a done marker: one listing of the done markers per hour directory of the
/// keys (losses are few). Not a HEAD per key: S3 answers a HEAD of a missing object with 403,
/// not 404, to a role without an unconditioned `s3:ListBucket`, which lookups do not have.
async fn not_normalized(
    store: &Arc<dyn ObjectStore>,
    keys: Vec<String>,
) -> Result<Vec<String>, object_store::Error> {
    let dirs: std::collections::BTreeSet<Path> = keys
        .iter()
        .filter_map(|k| k.rsplit_once('/').map(|(dir, _)| Path::from(dir)))
        .collect();
    let listed =
        futures::future::try_join_all(dirs.iter().map(|dir| marked(store, NORMALIZED_PREFIX, dir)))
            .await?;
    let done: HashSet<String> = listed.into_iter().flatten().collect();
    Ok(keys.into_iter().filter(|k| !done.contains(k)).collect())
}

/// What [`accept_loss`] recorded.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Acceptance {
    pub raw_key: String,
    /// Why the operator accepted the loss.
    pub reason: String,
    /// The dead letter's error, when there was one (none where failures go to a queue instead,
    /// as on AWS).
    pub error: Option<String>,
    pub accepted_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("{0} was normalized: there is no loss to accept")]
    Normalized(String),
    #[error("{0}: no such raw object and no dead letter for it")]
    Unknown(String),
    #[error("{0} is not a raw object key (raw/<kind>/hour=<hour>/<relay>_<batch>{suffix})", suffix = natlake_raw::SUFFIX)]
    NotRaw(String),
    #[error("a reason is required")]
    NoReason,
    #[error(
        "{0} has no dead letter: it may still be normalized; accept it anyway with --force (failures on AWS go to the failure queue, not to dead letters)"
    )]
    NoDeadLetter(String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// Records that an operator accepted the loss of a raw object normalize could not read, after
/// checking it, and removes its dead letter (an object without one only with `force`: it may
/// merely not be normalized yet): lookups then list it under the accepted losses
/// instead of making every answer over its hours ambiguous. The acceptance is written before
/// the dead letter is removed, so a failure in between leaves the object accepted (and is
/// reported; accepting again finishes). A later normalize run that succeeds removes it.
pub async fn accept_loss(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
    reason: &str,
    force: bool,
    now: crate::model::Micros,
) -> Result<Acceptance, AcceptError> {
    if reason.trim().is_empty() {
        return Err(AcceptError::NoReason);
    }
    if kind_of(raw_key).is_none()
        || hour_of(raw_key).is_none()
        || !raw_key.ends_with(natlake_raw::SUFFIX)
    {
        return Err(AcceptError::NotRaw(raw_key.to_owned()));
    }
    match store.head(&marker_key(NORMALIZED_PREFIX, raw_key)).await {
        Ok(_) => return Err(AcceptError::Normalized(raw_key.to_owned())),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let dead = marker_key(DEAD_LETTER_PREFIX, raw_key);
    let error = read_reason(store, dead.clone(), "/error").await;
    if error.is_none() {
        // No dead letter (or an unreadable one): only with `force` (failures on AWS go to the
        // failure queue), and the raw object itself must exist.
        match store.head(&dead).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) if !force => {
                return Err(AcceptError::NoDeadLetter(raw_key.to_owned()));
            }
            Err(object_store::Error::NotFound { .. }) => {
                match store.head(&Path::from(raw_key)).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(AcceptError::Unknown(raw_key.to_owned()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let acceptance = Acceptance {
        raw_key: raw_key.to_owned(),
        reason: reason.trim().to_owned(),
        error,
        accepted_at: crate::time::format_time(now),
    };
    let body = serde_json::to_vec(&acceptance).unwrap_or_default();
    store
        .put(&marker_key(ACCEPTED_PREFIX, raw_key), body.into())
        .await?;
    match store.delete(&dead).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(acceptance)
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
    let reasons = futures::future::join_all(gaps.iter().take(REASONS_READ).map(|g| {
        read_reason(
            store,
            Path::from(quarantine_reason_key(&g.key).as_str()),
            "/reason",
        )
    }))
    .await;
    for (g, why) in gaps.iter_mut().zip(reasons) {
        g.reason = why;
    }
    Ok(gaps)
}

/// A JSON record's reason field; None when it cannot be read (the gap is reported all the same).
async fn read_reason(store: &Arc<dyn ObjectStore>, key: Path, pointer: &str) -> Option<String> {
    let bytes = store.get(&key).await.ok()?.bytes().await.ok()?;
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

    /// Pending raw objects of the hours asked and each relay's newest object per kind; failed
    /// ones from the dead letters, with the error — one whose raw object expired too, and not
    /// one whose object a later run normalized.
    #[tokio::test]
    async fn raw_objects_not_normalized_are_pending_or_failed() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = "raw/syslog_udp/hour=2026-11-24T10";
        for n in ["a", "b", "c", "d"] {
            put(&store, &format!("{dir}/r_{n}.nlraw.zst"), "x").await;
        }
        let late = "raw/syslog_udp/hour=2026-11-24T12/r_e.nlraw.zst";
        put(&store, late, "x").await;
        // Stored last (a later modification time than the others).
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        put(&store, "raw/ipfix/hour=2026-11-24T11/r_f.nlraw.zst", "x").await;
        let done = |key: &str| format!("{NORMALIZED_PREFIX}/{key}.json");
        let dead = |key: &str| format!("{DEAD_LETTER_PREFIX}/{key}.json");
        put(&store, &done(&format!("{dir}/r_a.nlraw.zst")), "{}").await;
        // Failed, then normalized by a later run that left the dead letter: no gap.
        put(&store, &done(&format!("{dir}/r_b.nlraw.zst")), "{}").await;
        put(&store, &dead(&format!("{dir}/r_b.nlraw.zst")), "{}").await;
        let c = format!("{dir}/r_c.nlraw.zst");
        put(
            &store,
            &dead(&c),
            r#"{"raw_key": "x", "error": "zstd: truncated"}"#,
        )
        .await;
        // A dead letter whose raw object (and hour directory) expired still counts.
        let gone = "raw/syslog_udp/hour=2026-11-24T09/r_gone.nlraw.zst";
        put(&store, &dead(gone), r#"{"error": "gone"}"#).await;
        put(&store, &dead(late), "{}").await;

        let listing = raw_listing(&store, "2026-11-24T10", "2026-11-24T11")
            .await
            .unwrap();
        let pending: Vec<&str> = listing.pending.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(
            pending,
            [
                "raw/ipfix/hour=2026-11-24T11/r_f.nlraw.zst",
                "raw/syslog_udp/hour=2026-11-24T10/r_d.nlraw.zst",
            ]
        );
        let kinds: Vec<(&str, &str)> = listing
            .newest
            .keys()
            .map(|(kind, relay)| (kind.as_str(), relay.as_str()))
            .collect();
        assert_eq!(kinds, [("ipfix", "r"), ("syslog_udp", "r")]);
        let ipfix = &listing.newest[&("ipfix".to_owned(), "r".to_owned())];
        assert_eq!(ipfix.0, "raw/ipfix/hour=2026-11-24T11/r_f.nlraw.zst");
        let syslog = &listing.newest[&("syslog_udp".to_owned(), "r".to_owned())];
        assert!(syslog.1 < ipfix.1, "{listing:?}");

        let (failed, accepted) = losses(&store, "2026-11-24T09", "2026-11-24T11", REASONS_READ)
            .await
            .unwrap();
        assert!(accepted.is_empty());
        let got: Vec<(&str, GapState, Option<&str>)> = failed
            .iter()
            .map(|g| (g.key.as_str(), g.state, g.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (gone, GapState::Failed, Some("gone")),
                (c.as_str(), GapState::Failed, Some("zstd: truncated")),
            ]
        );
    }

    /// An operator accepts the loss of a failed object (its dead letter goes, the error is kept)
    /// and of one that failed where no dead letter is written: neither is failed or pending any
    /// more; both are listed as accepted. Acceptance needs a reason and a raw object that was not
    /// normalized.
    #[tokio::test]
    async fn an_accepted_loss_is_neither_failed_nor_pending() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = "raw/syslog_udp/hour=2026-11-24T10";
        let (a, b, c) = (
            format!("{dir}/r_a.nlraw.zst"),
            format!("{dir}/r_b.nlraw.zst"),
            format!("{dir}/r_c.nlraw.zst"),
        );
        for k in [&a, &b, &c] {
            put(&store, k, "x").await;
        }
        put(
            &store,
            &format!("{DEAD_LETTER_PREFIX}/{a}.json"),
            r#"{"error": "not a natlake raw object"}"#,
        )
        .await;
        put(&store, &format!("{NORMALIZED_PREFIX}/{c}.json"), "{}").await;
        let t = crate::time::parse_time("2026-11-24T12:00:00Z").unwrap();

        let got = accept_loss(&store, &a, " a foreign file ", false, t)
            .await
            .unwrap();
        assert_eq!(got.error.as_deref(), Some("not a natlake raw object"));
        assert_eq!(got.reason, "a foreign file");
        assert!(
            store
                .head(&marker_key(DEAD_LETTER_PREFIX, &a))
                .await
                .is_err(),
            "dead letter removed"
        );
        // No dead letter (failures went to a queue): refused unless forced, then the raw object
        // itself is accepted.
        let e = accept_loss(&store, &b, "device decommissioned", false, t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        let got = accept_loss(&store, &b, "device decommissioned", true, t)
            .await
            .unwrap();
        assert_eq!(got.error, None);

        for (key, reason, want) in [
            (c.as_str(), "x", "was normalized"),
            (&format!("{dir}/r_z.nlraw.zst"), "x", "no such raw object"),
            (a.as_str(), "  ", "reason is required"),
            ("lake/nat_events/x.parquet", "x", "not a raw object key"),
        ] {
            let e = accept_loss(&store, key, reason, true, t).await.unwrap_err();
            assert!(e.to_string().contains(want), "{key}: {e}");
        }

        let listing = raw_listing(&store, "2026-11-24T10", "2026-11-24T10")
            .await
            .unwrap();
        assert!(listing.pending.is_empty(), "{listing:?}");
        // A backfill retried the accepted object and it failed again: still accepted.
        put(&store, &format!("{DEAD_LETTER_PREFIX}/{a}.json"), "{}").await;
        let (failed, accepted) = losses(&store, "2026-11-24T10", "2026-11-24T10", REASONS_READ)
            .await
            .unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        let got: Vec<(&str, GapState, Option<&str>)> = accepted
            .iter()
            .map(|g| (g.key.as_str(), g.state, g.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (a.as_str(), GapState::Accepted, Some("a foreign file")),
                (
                    b.as_str(),
                    GapState::Accepted,
                    Some("device decommissioned")
                ),
            ]
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
