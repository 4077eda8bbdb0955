//! One order for the whole lake: normalize's objects (which declare it in their metadata) are
//! merged as they are, with no local run; objects written before the marker (addresses in
//! numeric order) are sorted into a run first and compact to the same rows; an object that
//! declares the order but is out of it is caught while merging and sorted, never merged
//! misplaced.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use bytes::Bytes;
use natlake_compact::run;
use natlake_core::lake::compact::{self, table_schema};
use natlake_core::lake::layout;
use natlake_core::lake::merge::sort_rows;
use natlake_core::lake::read::parquet_batches;
use natlake_core::lake::writer::{WriteOptions, encode_outputs, publish, sort_order_marker};
use natlake_core::model::{Micros, NatEventKind, Row, Table};
use natlake_core::testing::{keys_under, nat_row};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::file::properties::WriterProperties;

mod common;
use common::{H, H0, S, raw, tiny_budget};

/// One raw object's NAT rows on six public addresses whose text order is not their numeric
/// order, ports spread so that every object overlaps every other.
fn raw_rows(obj: u64, n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let port = 1024 + ((i * 7_919 + obj * 104_729) % 3_000) as u16;
            let kind = if i % 3 == 1 {
                NatEventKind::SessionDelete
            } else {
                NatEventKind::SessionCreate
            };
            let t = H0 + ((i * 13 + obj * 7) % 3_600) as Micros * S;
            let inside = format!("100.64.{}.{}", obj % 200, i % 250);
            let mut r = nat_row(t, kind, &inside, port, &raw(obj), i);
            if let natlake_core::model::Event::Nat(e) = &mut r.event {
                let x = [7, 9, 10, 99, 100, 255][(i % 6) as usize];
                e.x_ip = format!("198.51.100.{x}").parse().ok();
            }
            r
        })
        .collect()
}

async fn store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    (dir, store)
}

async fn normalize_like(store: &Arc<dyn ObjectStore>, obj: u64, rows: &[Row]) {
    let outs = encode_outputs(&raw(obj), rows, &[], &WriteOptions::ingest()).unwrap();
    publish(store, outs).await.unwrap();
}

fn nat_dir() -> String {
    layout::partition_dir(Table::NatEvents, H0 / S, "198.51.100.7".parse().ok())
}

async fn read(store: &Arc<dyn ObjectStore>, key: &Path) -> RecordBatch {
    let bytes = store.get(key).await.unwrap().bytes().await.unwrap();
    concat_batches(
        &table_schema(Table::NatEvents),
        &parquet_batches(bytes).unwrap(),
    )
    .unwrap()
}

/// Rewrites an object as versions before the order marker wrote it: addresses in numeric
/// order (then port, time, record), without the marker unless `marker` (a writer that claims
/// an order it does not keep).
async fn rewrite_numeric(store: &Arc<dyn ObjectStore>, key: &Path, marker: bool) {
    let b = read(store, key).await;
    let numeric = natlake_core::testing::numeric_order(&b);
    // The test is only worth something if numeric order is not the lake order here.
    assert_ne!(sort_rows(Table::NatEvents, &numeric).unwrap(), numeric);
    let props = WriterProperties::builder()
        .set_key_value_metadata(marker.then(|| vec![sort_order_marker()]))
        .build();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, b.schema(), Some(props)).unwrap();
    w.write(&numeric).unwrap();
    w.close().unwrap();
    store
        .put(key, PutPayload::from_bytes(Bytes::from(buf)))
        .await
        .unwrap();
}

/// Runs compaction of hour H0 and checks the merged object and the carry against the
/// in-memory reference over the objects as they were; returns the hour's report.
async fn compact_and_check(store: &Arc<dyn ObjectStore>) -> natlake_compact::run::HourReport {
    let cfg = tiny_budget();
    let nat = nat_dir();
    let mut before = Vec::new();
    for k in keys_under(store, &nat).await {
        before.push(read(store, &k).await);
    }
    let want = compact::merge(Table::NatEvents, &before).unwrap();
    let (want_carry, _) = compact::carry(None, Some(&want), H0, H0 + H - cfg.max_idle).unwrap();
    assert!(want_carry.num_rows() > 0);
    let r = run(store, &cfg, H0 + H + 11 * 60 * S).await.unwrap();
    assert_eq!(r.hours.len(), 1, "{r:?}");
    let merged = keys_under(store, &nat).await;
    assert_eq!(merged, [Path::from(format!("{nat}compacted.parquet"))]);
    let got = read(store, &merged[0]).await;
    assert_eq!(got, want);
    assert_eq!(sort_rows(Table::NatEvents, &got).unwrap(), got);
    let carry_dir =
        layout::partition_dir(Table::NatCarry, (H0 + H) / S, "198.51.100.7".parse().ok());
    let carry = keys_under(store, &carry_dir).await;
    assert_eq!(carry.len(), 1);
    assert_eq!(read(store, &carry[0]).await, want_carry);
    r.hours[0].clone()
}

#[tokio::test]
async fn objects_in_the_lake_order_merge_without_a_local_run() {
    let (_dir, store) = store().await;
    for obj in 0..16 {
        normalize_like(&store, obj, &raw_rows(obj, 150 + 23 * obj)).await;
    }
    // One raw object normalized twice over: copies collapse in the direct merge too.
    normalize_like(&store, 3, &raw_rows(3, 150 + 23 * 3)).await;
    let h = compact_and_check(&store).await;
    assert_eq!(h.objects_merged, 16);
    assert_eq!(h.objects_spilled, 0, "{h:?}");
}

#[tokio::test]
async fn objects_written_before_the_order_marker_are_sorted_first() {
    let (_dir, store) = store().await;
    for obj in 0..12 {
        normalize_like(&store, obj, &raw_rows(obj, 200 + 11 * obj)).await;
    }
    // Half the partition as an older normalize wrote it (an upgrade in the middle of an hour).
    let smalls = keys_under(&store, &nat_dir()).await;
    for k in smalls.iter().step_by(2) {
        rewrite_numeric(&store, k, false).await;
    }
    let h = compact_and_check(&store).await;
    assert_eq!(h.objects_merged, 12);
    assert_eq!(h.objects_spilled, 6, "{h:?}");
}

#[tokio::test]
async fn an_object_that_declares_the_order_but_breaks_it_is_sorted_not_misplaced() {
    let (_dir, store) = store().await;
    for obj in 0..6 {
        normalize_like(&store, obj, &raw_rows(obj, 300)).await;
    }
    let smalls = keys_under(&store, &nat_dir()).await;
    rewrite_numeric(&store, &smalls[4], true).await;
    let h = compact_and_check(&store).await;
    assert_eq!(h.objects_merged, 6);
    assert_eq!(h.objects_spilled, 1, "{h:?}");
    assert!(h.quarantined.is_empty());
}
