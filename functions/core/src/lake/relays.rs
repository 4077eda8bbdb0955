//! The relays' heartbeats and retirements under `_state/relays/` ([`natlake_raw::heartbeat`]):
//! read by lookups to say when a relay has not delivered what it received, written by
//! `natlake relays retire` when an operator declares a relay gone and `natlake relays
//! accept-drops` when one accepts the loss of what a relay dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
pub use natlake_raw::heartbeat::{self, DropAcceptance, DropSpan, Heartbeat, Retirement};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::model::Micros;

/// Heartbeats and retirements as listed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Relays {
    /// By relay id: its heartbeat, or why it could not be read.
    pub heartbeats: BTreeMap<String, Result<Heartbeat, String>>,
    /// By relay id (an unreadable retirement is left out: the relay is then waited on).
    pub retired: BTreeMap<String, Retirement>,
}

impl Relays {
    /// The relay's retirement, unless a heartbeat written after it shows the relay back.
    pub fn retirement(&self, relay: &str) -> Option<&Retirement> {
        let r = self.retired.get(relay)?;
        match self.heartbeats.get(relay) {
            Some(Ok(hb)) if hb.written_us > r.at_us => None,
            _ => Some(r),
        }
    }
}

/// Reads at most this many objects at once.
const READS_AT_ONCE: usize = 16;

/// Lists `_state/relays/` (not its `drops/`) and reads every heartbeat and retirement in it.
pub async fn list(store: &Arc<dyn ObjectStore>) -> Result<Relays, object_store::Error> {
    let metas = store
        .list_with_delimiter(Some(&Path::from(heartbeat::PREFIX)))
        .await?
        .objects;
    let reads = metas.into_iter().filter_map(|m| {
        let key = m.location.to_string();
        let (relay, retired) = heartbeat::parse_key(&key)?;
        let relay = relay.to_owned();
        Some(async move {
            let body = match store.get(&m.location).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            (relay, retired, body)
        })
    });
    let mut out = Relays::default();
    let mut got = futures::stream::iter(reads).buffer_unordered(READS_AT_ONCE);
    while let Some((relay, retired, body)) = got.next().await {
        let body = match body {
            // Replaced or removed between the listing and the read: as if not listed.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => Err(e.to_string()),
            Ok(b) => Ok(b),
        };
        if retired {
            if let Ok(r) = body.and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                out.retired.insert(relay, r);
            }
        } else {
            let hb = body.and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| format!("unreadable heartbeat: {e}"))
            });
            out.heartbeats.insert(relay, hb);
        }
    }
    Ok(out)
}

/// A span of dropped messages as listed: its key, and the span when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub key: String,
    pub relay: String,
    pub kind: String,
    pub span: Result<DropSpan, String>,
    /// An operator's acceptance of the span, when one was listed and read.
    pub accepted: Option<DropAcceptance>,
}

impl Dropped {
    /// The acceptance, if it covers the span as read now (an unreadable span, or one grown
    /// since it was accepted, is not covered).
    pub fn accepted(&self) -> Option<&DropAcceptance> {
        let span = self.span.as_ref().ok()?;
        self.accepted.as_ref().filter(|a| a.covers(span))
    }
}

/// Reads the JSON object at `key`.
async fn read_json<T: serde::de::DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    key: &str,
) -> Result<T, String> {
    let bytes = match store.get(&Path::from(key)).await {
        Ok(r) => r.bytes().await.map_err(|e| e.to_string())?,
        Err(e) => return Err(e.to_string()),
    };
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable: {e}"))
}

/// The spans of dropped messages that began in the hours from `since` to `until` (Unix
/// seconds), with their acceptances; at most `max_read` spans are read, the rest keep their
/// key and say so.
pub async fn drops(
    store: &Arc<dyn ObjectStore>,
    since: i64,
    until: i64,
    max_read: usize,
) -> Result<Vec<Dropped>, object_store::Error> {
    // One listing from the first hour on (S3's StartAfter), not one per hour: the lookback of
    // an answer is a day. Keys sort by hour; later hours are filtered out, not cut off, since a
    // local filesystem does not list in order.
    let offset = Path::from(heartbeat::drops_dir(since));
    let past = heartbeat::drops_dir((until.div_euclid(3600) + 1) * 3600);
    let keys: Vec<String> = store
        .list_with_offset(Some(&Path::from(heartbeat::DROPS_PREFIX)), &offset)
        .map_ok(|m| m.location.to_string())
        .try_filter(|k| std::future::ready(*k < past))
        .try_collect()
        .await?;
    let accepted: std::collections::BTreeSet<String> = keys
        .iter()
        .filter_map(|k| heartbeat::parse_drops_accepted_key(k))
        .collect();
    // Collected first: a stream over borrowing closures would not be `Send` for the lookup's
    // handler (rustc's higher-ranked lifetime limitation).
    let spans: Vec<(String, String, String, bool)> = keys
        .iter()
        .filter_map(|key| {
            let (relay, kind, _) = heartbeat::parse_drops_key(key)?;
            let accepted = accepted.contains(key);
            Some((key.clone(), relay.to_owned(), kind.to_owned(), accepted))
        })
        .collect();
    let reads = spans
        .into_iter()
        .enumerate()
        .map(|(i, (key, relay, kind, accepted))| {
            async move {
                if i >= max_read {
                    let span = Err(format!(
                        "not read: more than {max_read} spans in these hours"
                    ));
                    return Dropped {
                        key,
                        relay,
                        kind,
                        span,
                        accepted: None,
                    };
                }
                let span = read_json::<DropSpan>(store, &key)
                    .await
                    .map_err(|e| format!("cannot read the span: {e}"));
                // An unreadable acceptance accepts nothing: the span stays reported.
                let accepted = match heartbeat::drops_accepted_key(&key) {
                    Some(a) if accepted && span.is_ok() => read_json(store, &a).await.ok(),
                    _ => None,
                };
                Dropped {
                    key,
                    relay,
                    kind,
                    span,
                    accepted,
                }
            }
        });
    Ok(futures::stream::iter(reads)
        .buffer_unordered(READS_AT_ONCE)
        .collect()
        .await)
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptDropsError {
    #[error("a reason is required")]
    NoReason,
    #[error(
        "{0} is not a span of drops (keys are `_state/relays/drops/hour=…/<relay>_<kind>_<µs>.json`, as answers list them)"
    )]
    NotASpan(String),
    #[error("no span of drops at {0}")]
    Unknown(String),
    #[error("span {0} cannot be read ({1}): there is nothing to accept")]
    Unreadable(String, String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// Records that an operator accepted the loss of the messages of the span of drops at `key`,
/// as it is now: lookups then list it under the accepted losses with `reason` instead of
/// answering ambiguous. More drops added to the span later are reported again.
pub async fn accept_drops(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    reason: &str,
    now: Micros,
) -> Result<DropAcceptance, AcceptDropsError> {
    if reason.trim().is_empty() {
        return Err(AcceptDropsError::NoReason);
    }
    let accepted_key =
        heartbeat::drops_accepted_key(key).ok_or_else(|| AcceptDropsError::NotASpan(key.into()))?;
    let bytes = match store.get(&Path::from(key)).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(AcceptDropsError::Unknown(key.into()));
        }
        Err(e) => return Err(e.into()),
    };
    let span: DropSpan = serde_json::from_slice(&bytes)
        .map_err(|e| AcceptDropsError::Unreadable(key.into(), e.to_string()))?;
    let a = DropAcceptance {
        key: key.to_owned(),
        at_us: now,
        reason: reason.trim().to_owned(),
        last_us: span.last_us,
        messages: span.messages,
    };
    let body = serde_json::to_vec(&a).unwrap_or_default();
    store.put(&Path::from(accepted_key), body.into()).await?;
    Ok(a)
}

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error("a reason is required")]
    NoReason,
    #[error(
        "relay {0} has no heartbeat in this store (relay ids are as in raw keys: `natlake relays list`)"
    )]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// Records that an operator retired a relay: lookups stop waiting on what it did not deliver
/// and list it under the accepted losses with `reason`. A heartbeat written later undoes it.
pub async fn retire(
    store: &Arc<dyn ObjectStore>,
    relay: &str,
    reason: &str,
    now: Micros,
) -> Result<Retirement, RetireError> {
    if reason.trim().is_empty() {
        return Err(RetireError::NoReason);
    }
    match store.head(&Path::from(heartbeat::key(relay))).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => {
            return Err(RetireError::Unknown(relay.to_owned()));
        }
        Err(e) => return Err(e.into()),
    }
    let r = Retirement {
        relay: natlake_raw::key::sanitize_relay_id(relay),
        at_us: now,
        reason: reason.trim().to_owned(),
    };
    let body = serde_json::to_vec(&r).unwrap_or_default();
    store
        .put(&Path::from(heartbeat::retired_key(relay)), body.into())
        .await?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(relay: &str, written_us: i64) -> Heartbeat {
        Heartbeat {
            relay: relay.into(),
            written_us,
            started_us: 0,
            stopped: false,
            kinds: BTreeMap::new(),
            dropped: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn lists_heartbeats_and_retirements_and_a_later_heartbeat_undoes_one() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let put = |key: String, body: Vec<u8>| {
            let store = store.clone();
            async move { store.put(&Path::from(key), body.into()).await.unwrap() }
        };
        put(
            heartbeat::key("a"),
            serde_json::to_vec(&hb("a", 10)).unwrap(),
        )
        .await;
        put(heartbeat::key("b"), b"{not json".to_vec()).await;
        assert!(matches!(
            retire(&store, "a", " ", 20).await,
            Err(RetireError::NoReason)
        ));
        assert!(matches!(
            retire(&store, "nobody", "gone", 20).await,
            Err(RetireError::Unknown(_))
        ));
        retire(&store, "a", "decommissioned", 20).await.unwrap();
        let l = list(&store).await.unwrap();
        assert_eq!(l.heartbeats["a"], Ok(hb("a", 10)));
        assert!(
            l.heartbeats["b"]
                .as_ref()
                .is_err_and(|e| e.contains("unreadable"))
        );
        assert_eq!(l.retirement("a").unwrap().reason, "decommissioned");
        assert_eq!(l.retirement("b"), None);
        // The relay came back: its next heartbeat undoes the retirement.
        put(
            heartbeat::key("a"),
            serde_json::to_vec(&hb("a", 30)).unwrap(),
        )
        .await;
        assert_eq!(list(&store).await.unwrap().retirement("a"), None);
    }

    #[tokio::test]
    async fn an_accepted_span_of_drops_is_listed_as_accepted_until_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let t = 1_795_510_800_000_000; // 2026-11-24T09:00Z
        let put_span = |last_us: i64, messages: u64| {
            let store = store.clone();
            let span = DropSpan {
                relay: "edge-1".into(),
                kind: "syslog_udp".into(),
                first_us: t + 5,
                last_us,
                messages,
                reasons: [("queue_full".to_string(), messages)].into(),
            };
            async move {
                let key = heartbeat::drops_key("edge-1", "syslog_udp", t + 5);
                let body = serde_json::to_vec(&span).unwrap();
                store
                    .put(&Path::from(key.as_str()), body.into())
                    .await
                    .unwrap();
                key
            }
        };
        let key = put_span(t + 10, 3).await;
        let accept = |key: String, reason: &'static str| {
            let store = store.clone();
            async move { accept_drops(&store, &key, reason, t + 100).await }
        };
        assert!(matches!(
            accept(key.clone(), "").await,
            Err(AcceptDropsError::NoReason)
        ));
        assert!(matches!(
            accept("_state/relays/edge-1.json".into(), "x").await,
            Err(AcceptDropsError::NotASpan(_))
        ));
        let other = heartbeat::drops_key("edge-1", "syslog_udp", t + 6);
        assert!(matches!(
            accept(other, "x").await,
            Err(AcceptDropsError::Unknown(_))
        ));
        let a = accept(key, "burst during the upgrade, checked")
            .await
            .unwrap();
        assert_eq!((a.last_us, a.messages), (t + 10, 3));

        let listed = drops(&store, t / 1_000_000, t / 1_000_000, 50)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "the acceptance is not a span: {listed:?}");
        assert_eq!(listed[0].accepted(), Some(&a));
        // The span grows: the acceptance no longer covers it.
        put_span(t + 20, 4).await;
        let listed = drops(&store, t / 1_000_000, t / 1_000_000, 50)
            .await
            .unwrap();
        assert_eq!(listed[0].accepted, Some(a));
        assert_eq!(listed[0].accepted(), None);
    }
}
