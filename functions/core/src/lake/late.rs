//! Late NAT events: objects written into an hour that has already ended.
//!
//! The carry into every later hour is computed from the hours before it; an object that lands
//! in an ended hour makes those carries stale until compaction computes them again. A marker
//! per late object, `_state/late/x_net=N/hour=H/<stem>.json`, written by normalize *after* the
//! object, tells both sides: lookups for a public address in `N` read from the carry at or
//! before `H` instead of a newer, stale one, and compaction works on `H` whatever its age (its
//! own rescan of small objects looks back only so far). Compaction deletes the markers it saw
//! once it has recomputed every hour from theirs to the last finished one; a run cut short
//! by its hour limit leaves one marker for every partition, `x_net=_all`, at the first hour it
//! did not reach, so the next run resumes there and lookups meanwhile distrust later carries.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::layout::{self, NET_KEY};
use super::writer::Output;
use crate::model::{Micros, Table};

pub const LATE_DIR: &str = "_state/late/";
/// The `x_net` of markers that concern every partition (a compaction run cut short).
pub const ALL_NETS: &str = "_all";

/// A marker: the partition (`x_net` value) and hour (epoch seconds) it names, and its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Marker {
    pub hour: i64,
    pub net: String,
    pub key: String,
}

/// `_state/late/x_net=N/` — the markers of one partition.
pub fn net_dir(net: &str) -> String {
    format!("{LATE_DIR}{NET_KEY}={net}/")
}

fn marker_key(net: &str, hour_secs: i64, name: &str) -> String {
    format!(
        "{}hour={}/{name}.json",
        net_dir(net),
        natlake_raw::key::hour_label(hour_secs)
    )
}

/// Reads a marker key back; None for anything else under [`LATE_DIR`].
pub fn parse(key: &str) -> Option<Marker> {
    let rest = key.strip_prefix(LATE_DIR)?;
    let mut parts = rest.split('/');
    let net = parts.next()?.strip_prefix(&format!("{NET_KEY}="))?;
    let hour = layout::parse_hour_label(parts.next()?.strip_prefix("hour=")?)?;
    parts.next()?.strip_suffix(".json")?;
    Some(Marker {
        hour,
        net: net.to_string(),
        key: key.to_string(),
    })
}

/// The markers `outputs` (published from `raw_key` at `now`) call for: one per `nat_events`
/// object in an hour that ended before `now`.
pub fn markers_for(outputs: &[Output], raw_key: &str, now: Micros) -> Vec<String> {
    let stem = natlake_raw::key::stem(raw_key);
    outputs
        .iter()
        .filter(|o| o.table == Table::NatEvents && (o.hour + 3600) * 1_000_000 <= now)
        .map(|o| marker_key(&o.net, o.hour, stem))
        .collect()
}

/// Writes the markers of `outputs` (call after publishing them). Returns how many.
pub async fn mark(
    store: &Arc<dyn ObjectStore>,
    outputs: &[Output],
    raw_key: &str,
    now: Micros,
) -> Result<usize, object_store::Error> {
    let keys = markers_for(outputs, raw_key, now);
    for k in &keys {
        let body = serde_json::json!({ "raw_key": raw_key }).to_string();
        store
            .put(&Path::from(k.as_str()), PutPayload::from(body.into_bytes()))
            .await?;
    }
    Ok(keys.len())
}

/// Marks every partition late from `hour_secs` on (a compaction run that stopped before it).
pub async fn mark_all(
    store: &Arc<dyn ObjectStore>,
    hour_secs: i64,
) -> Result<String, object_store::Error> {
    let key = marker_key(ALL_NETS, hour_secs, "resume");
    store
        .put(&Path::from(key.as_str()), PutPayload::from_static(b"{}"))
        .await?;
    Ok(key)
}

/// Every marker in the store.
pub async fn list_all(store: &Arc<dyn ObjectStore>) -> Result<Vec<Marker>, object_store::Error> {
    list_under(store, LATE_DIR).await
}

/// The hours with late objects that concern a public address in partition `net` (its own
/// markers and those for every partition), oldest first.
pub async fn hours_for(
    store: &Arc<dyn ObjectStore>,
    net: &str,
) -> Result<BTreeSet<i64>, object_store::Error> {
    // Two listings, at once: a lookup waits for them before it knows where to read from.
    let (own_dir, all_dir) = (net_dir(net), net_dir(ALL_NETS));
    let (own, all) = futures::try_join!(list_under(store, &own_dir), list_under(store, &all_dir))?;
    Ok(own.into_iter().chain(all).map(|m| m.hour).collect())
}

async fn list_under(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<Vec<Marker>, object_store::Error> {
    let metas: Vec<_> = store.list(Some(&Path::from(prefix))).try_collect().await?;
    let mut out: Vec<Marker> = metas
        .iter()
        .filter_map(|m| parse(m.location.as_ref()))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 1_795_392_000; // 2026-11-23T00 (epoch seconds)

    fn output(table: Table, hour: i64, net: &str) -> Output {
        Output {
            key: layout::lake_key(table, hour, net, "raw/syslog_udp/hour=x/b-1.nlraw.zst"),
            table,
            hour,
            net: net.to_string(),
            rows: 1,
            bytes: 1,
        }
    }

    #[test]
    fn only_nat_events_objects_of_ended_hours_are_marked() {
        let outputs = [
            output(Table::NatEvents, H, "198.51.100.0_24"),
            output(Table::NatEvents, H + 3600, "198.51.100.0_24"),
            output(Table::Flows, H, "198.51.100.0_24"),
            output(Table::NatEvents, H, "2001-db8--_48"),
        ];
        // At 01:30 hour 00 has ended, hour 01 has not.
        let keys = markers_for(
            &outputs,
            "raw/syslog_udp/hour=x/b-1.nlraw.zst",
            (H + 5400) * 1_000_000,
        );
        assert_eq!(
            keys,
            [
                "_state/late/x_net=198.51.100.0_24/hour=2026-11-23T00/b-1.json",
                "_state/late/x_net=2001-db8--_48/hour=2026-11-23T00/b-1.json",
            ]
        );
        let m = parse(&keys[1]).unwrap();
        assert_eq!((m.hour, m.net.as_str()), (H, "2001-db8--_48"));
        // At the hour's last instant it has not ended yet.
        assert!(
            markers_for(
                &outputs[..1],
                "raw/b-1.nlraw.zst",
                (H + 3600) * 1_000_000 - 1
            )
            .is_empty()
        );
        assert_eq!(parse("_state/late/x_net=n/hour=nonsense/a.json"), None);
        assert_eq!(parse("_state/carry/hour=2026-11-23T00.json"), None);
    }

    #[tokio::test]
    async fn lookups_see_their_partitions_markers_and_those_for_all() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let outputs = [
            output(Table::NatEvents, H, "198.51.100.0_24"),
            output(Table::NatEvents, H + 7200, "203.0.113.0_24"),
        ];
        let n = mark(
            &store,
            &outputs,
            "raw/b-1.nlraw.zst",
            (H + 3 * 3600) * 1_000_000,
        )
        .await
        .unwrap();
        assert_eq!(n, 2);
        mark_all(&store, H + 3600).await.unwrap();
        let mine: Vec<i64> = hours_for(&store, "198.51.100.0_24")
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(mine, [H, H + 3600]);
        assert_eq!(list_all(&store).await.unwrap().len(), 3);
    }
}
