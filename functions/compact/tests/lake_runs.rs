//! The compact handler on a real file store: objects written by the lake writer exactly as
//! normalize writes them, several runs, late data, an unreadable object.

use std::sync::Arc;

use futures::TryStreamExt;
use natlake_compact::{CompactConfig, run};
use natlake_core::lake::layout;
use natlake_core::lake::read::{nat_rows, parquet_batches};
use natlake_core::lake::writer::{WriteOptions, encode_outputs, publish};
use natlake_core::model::{Micros, NatEventKind, Row, Table};
use natlake_core::testing::nat_row;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

mod common;
use common::{H, H0, S, raw};

/// Writes rows the way normalize does for one raw object.
async fn normalize_like(store: &Arc<dyn ObjectStore>, raw_key: &str, rows: &[Row]) {
    let outs = encode_outputs(raw_key, rows, &[], &WriteOptions::default()).unwrap();
    publish(store, outs).await.unwrap();
}

async fn keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let p = Path::from(prefix);
    let mut v: Vec<String> = store
        .list(Some(&p))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

/// (x_port, event) of the carry into `hour`.
async fn carry_into(store: &Arc<dyn ObjectStore>, hour: Micros) -> Vec<(u16, String)> {
    let dir = layout::partition_dir(Table::NatCarry, hour / S, "198.51.100.7".parse().ok());
    let mut out = Vec::new();
    for k in keys(store, &dir).await {
        let bytes = store
            .get(&Path::from(k.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        for b in parquet_batches(bytes).unwrap() {
            out.extend(
                nat_rows(&b)
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.x_port.unwrap(), r.event.as_str().to_owned())),
            );
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn carry_chains_hours_compacts_and_recomputes_after_late_data() {
    use NatEventKind::*;
    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    // Hour 0: A (port 1000) opens; B (2000) opens and closes — in two raw objects.
    normalize_like(
        &store,
        &raw(1),
        &[
            nat_row(H0 + 10 * S, SessionCreate, "100.64.0.1", 1000, &raw(1), 0),
            nat_row(H0 + 20 * S, SessionCreate, "100.64.0.2", 2000, &raw(1), 1),
        ],
    )
    .await;
    normalize_like(
        &store,
        &raw(2),
        &[nat_row(
            H0 + 30 * S,
            SessionDelete,
            "100.64.0.2",
            2000,
            &raw(2),
            0,
        )],
    )
    .await;
    // Hour 2: C (3000) opens. Hour 1 has no events at all: the carry must chain through it.
    normalize_like(
        &store,
        &raw(3),
        &[nat_row(
            H0 + 2 * H + 5 * S,
            SessionCreate,
            "100.64.0.3",
            3000,
            &raw(3),
            0,
        )],
    )
    .await;

    let cfg = CompactConfig::default();
    // Nothing is finished before hour 0 ends plus the grace.
    let early = run(&store, &cfg, H0 + H + 60 * S).await.unwrap();
    assert!(early.hours.is_empty(), "{early:?}");

    let now = H0 + 3 * H + 11 * 60 * S;
    let r = run(&store, &cfg, now).await.unwrap();
    let hours: Vec<&str> = r.hours.iter().map(|h| h.hour.as_str()).collect();
    assert_eq!(hours, ["2026-11-23T00", "2026-11-23T01", "2026-11-23T02"]);
    assert_eq!((r.hours[0].objects_merged, r.hours[0].rows_written), (2, 3));
    assert_eq!(
        carry_into(&store, H0 + H).await,
        [(1000, "session_create".to_owned())]
    );
    assert_eq!(
        carry_into(&store, H0 + 2 * H).await,
        [(1000, "session_create".to_owned())]
    );
    assert_eq!(
        carry_into(&store, H0 + 3 * H).await,
        [
            (1000, "session_create".to_owned()),
            (3000, "session_create".to_owned())
        ]
    );
    for h in 0..=3 {
        let m = layout::carry_marker_key((H0 + h * H) / S);
        assert!(
            store.head(&Path::from(m.as_str())).await.is_ok(),
            "marker {m}"
        );
    }
    // Hour 0's partition is one merged object now.
    let part = layout::partition_dir(Table::NatEvents, H0 / S, "198.51.100.7".parse().ok());
    assert_eq!(
        keys(&store, &part).await,
        [format!("{part}compacted.parquet")]
    );

    // A second run has nothing to do.
    let again = run(&store, &cfg, now).await.unwrap();
    assert!(again.hours.is_empty(), "{again:?}");

    // Late data in hour 0 that opens and closes within it: the carry into hour 1 (A) comes out
    // with the digest its marker recorded, so the run stops after hour 0.
    normalize_like(
        &store,
        &raw(5),
        &[
            nat_row(H0 + 40 * S, SessionCreate, "100.64.0.4", 4000, &raw(5), 0),
            nat_row(H0 + 45 * S, SessionDelete, "100.64.0.4", 4000, &raw(5), 1),
        ],
    )
    .await;
    let short = run(&store, &cfg, now).await.unwrap();
    assert_eq!(short.hours.len(), 1, "{short:?}");
    assert!(
        short.hours[0].carry_unchanged && short.hours[0].carried == 1,
        "{short:?}"
    );

    // Late data: A's delete, in hour 0, arrives after the hour was compacted. The run merges it
    // and recomputes every later carry: A is no longer carried anywhere.
    normalize_like(
        &store,
        &raw(4),
        &[nat_row(
            H0 + 50 * S,
            SessionDelete,
            "100.64.0.1",
            1000,
            &raw(4),
            0,
        )],
    )
    .await;
    let late = run(&store, &cfg, now).await.unwrap();
    assert_eq!(late.hours.len(), 3, "{late:?}");
    assert_eq!(late.hours[0].objects_merged, 1);
    assert!(carry_into(&store, H0 + H).await.is_empty());
    assert!(carry_into(&store, H0 + 2 * H).await.is_empty());
    assert_eq!(
        carry_into(&store, H0 + 3 * H).await,
        [(3000, "session_create".to_owned())]
    );
    let merged = keys(&store, &part).await;
    let bytes = store
        .get(&Path::from(merged[0].as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rows: usize = parquet_batches(bytes)
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 6, "the merged object holds each event once");
}

#[tokio::test]
async fn unreadable_object_is_quarantined_with_its_reason() {
    use NatEventKind::*;
    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    normalize_like(
        &store,
        &raw(1),
        &[nat_row(
            H0 + 10 * S,
            SessionCreate,
            "100.64.0.1",
            1000,
            &raw(1),
            0,
        )],
    )
    .await;
    let part = layout::partition_dir(Table::NatEvents, H0 / S, "198.51.100.7".parse().ok());
    let bad = format!("{part}relay_9999.parquet");
    store
        .put(
            &Path::from(bad.as_str()),
            PutPayload::from_static(b"PAR1 this is not parquet"),
        )
        .await
        .unwrap();
    let r = run(&store, &CompactConfig::default(), H0 + H + 11 * 60 * S)
        .await
        .unwrap();
    assert_eq!(r.hours[0].quarantined, std::slice::from_ref(&bad));
    assert_eq!(
        carry_into(&store, H0 + H).await,
        [(1000, "session_create".to_owned())]
    );
    let q = keys(&store, "_state/quarantine/").await;
    assert_eq!(
        q,
        [
            format!("_state/quarantine/{bad}"),
            format!("_state/quarantine/{bad}.reason.json")
        ]
    );
    let why = store
        .get(&Path::from(q[1].as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let why: serde_json::Value = serde_json::from_slice(&why).unwrap();
    assert_eq!(why["key"], bad.as_str());
    assert!(
        why["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("parquet"),
        "{why}"
    );

    // The raw object normalized again puts a readable object at the key: once it is merged,
    // the quarantine entry goes (lookups stop reporting its rows as missing) and its rows are in.
    let raw9 = raw(9999);
    normalize_like(
        &store,
        &raw9,
        &[nat_row(
            H0 + 30 * S,
            SessionCreate,
            "100.64.0.9",
            1009,
            &raw9,
            0,
        )],
    )
    .await;
    assert!(
        keys(&store, &part).await.contains(&bad),
        "{bad} written again"
    );
    let r = run(&store, &CompactConfig::default(), H0 + H + 12 * 60 * S)
        .await
        .unwrap();
    let hour0 = r.hours.iter().find(|h| h.hour == layout::hour_label(H0));
    assert_eq!(
        hour0.map(|h| h.restored.clone()),
        Some(vec![bad.clone()]),
        "{r:?}"
    );
    assert_eq!(
        keys(&store, "_state/quarantine/").await,
        Vec::<String>::new()
    );
    assert_eq!(
        carry_into(&store, H0 + H).await,
        [
            (1000, "session_create".to_owned()),
            (1009, "session_create".to_owned())
        ]
    );
}

/// A record of a whole session (FortiGate, PAN-OS, a flow with post-NAT fields) is stored in
/// the hour its span began; the carry holds it for every later hour the span reaches, so a
/// lookup there (which reads from that hour's carry on) still finds the session.
#[tokio::test]
async fn spans_are_carried_into_the_hours_they_reach() {
    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    let span = |start: Micros, end: Micros, inside: &str, port: u16, record: u64| {
        let mut r = nat_row(
            start,
            NatEventKind::MappingObserved,
            inside,
            port,
            &raw(1),
            record,
        );
        if let natlake_core::model::Event::Nat(e) = &mut r.event {
            e.end_time = Some(end);
        }
        r
    };
    normalize_like(
        &store,
        &raw(1),
        &[
            // Within hour 0.
            span(H0 + 60 * S, H0 + 120 * S, "100.64.0.1", 1000, 0),
            // From hour 0 into hour 2.
            span(
                H0 + 50 * 60 * S,
                H0 + 2 * H + 5 * 60 * S,
                "100.64.0.2",
                2000,
                1,
            ),
        ],
    )
    .await;
    let r = run(&store, &CompactConfig::default(), H0 + 3 * H + 11 * 60 * S)
        .await
        .unwrap();
    assert_eq!(r.hours.len(), 3, "{r:?}");
    let long = [(2000, "mapping_observed".to_owned())];
    assert_eq!(carry_into(&store, H0 + H).await, long);
    assert_eq!(carry_into(&store, H0 + 2 * H).await, long);
    assert!(carry_into(&store, H0 + 3 * H).await.is_empty());
}
