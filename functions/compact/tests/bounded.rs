//! Compaction in bounded memory: a partition far larger than the merge's budget, with copies of
//! rows across objects and overlapping key ranges, compacts to exactly what the in-memory merge
//! (`compact::merge`, kept as the reference) and carry (`compact::carry`) give; an object that
//! breaks part way through the merge is quarantined and nothing half-written is published.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use natlake_compact::run;
use natlake_core::lake::compact::{self, table_schema};
use natlake_core::lake::layout;
use natlake_core::lake::read::parquet_batches;
use natlake_core::lake::writer::{WriteOptions, encode_outputs, publish};
use natlake_core::model::{Micros, NatEventKind, Row, Table};
use natlake_core::testing::{keys_under, nat_row};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

mod common;
use common::{H, H0, S, raw, tiny_budget};

/// One raw object's NAT rows: sessions opening and closing on ports spread over the whole
/// range (every object overlaps every other), some left open at the hour's end.
fn raw_rows(obj: u64, n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let port = 1024 + ((i * 7_919 + obj * 104_729) % 3_000) as u16;
            let kind = match i % 4 {
                0 | 2 => NatEventKind::SessionCreate,
                1 => NatEventKind::SessionDelete,
                _ => NatEventKind::PortBlockInterim,
            };
            let t = H0 + ((i * 13 + obj * 7) % 3_600) as Micros * S;
            let inside = format!("100.64.{}.{}", obj % 200, i % 250);
            let mut r = nat_row(t, kind, &inside, port, &raw(obj), i);
            // Public addresses whose text order is not their numeric order (the writer sorts
            // by number, compaction by text).
            if let natlake_core::model::Event::Nat(e) = &mut r.event {
                let x = [7, 9, 10, 99, 100, 255][(i % 6) as usize];
                e.x_ip = format!("198.51.100.{x}").parse().ok();
            }
            r
        })
        .collect()
}

async fn normalize_like(store: &Arc<dyn ObjectStore>, obj: u64, rows: &[Row], opts: &WriteOptions) {
    let outs = encode_outputs(&raw(obj), rows, &[], opts).unwrap();
    publish(store, outs).await.unwrap();
}

fn part(table: Table, hour: Micros) -> String {
    layout::partition_dir(table, hour / S, "198.51.100.7".parse().ok())
}

async fn read(store: &Arc<dyn ObjectStore>, key: &Path) -> Vec<RecordBatch> {
    let bytes = store.get(key).await.unwrap().bytes().await.unwrap();
    parquet_batches(bytes).unwrap()
}

/// Every batch of every object under `prefix`, in listing order.
async fn read_all(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for k in keys_under(store, prefix).await {
        out.extend(read(store, &k).await);
    }
    out
}

fn one(table: Table, batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(&table_schema(table), batches).unwrap()
}

#[tokio::test]
async fn partition_larger_than_the_budget_compacts_as_the_in_memory_merge() {
    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    let cfg = tiny_budget();
    let opts = WriteOptions::default();
    for obj in 0..24 {
        normalize_like(&store, obj, &raw_rows(obj, 200 + 17 * obj), &opts).await;
    }
    let nat = part(Table::NatEvents, H0);
    let before = read_all(&store, &nat).await;
    let want = compact::merge(Table::NatEvents, &before).unwrap();
    let idle_cutoff = H0 + H - cfg.max_idle;
    let (want_carry, want_stats) = compact::carry(None, Some(&want), H0, idle_cutoff).unwrap();
    assert!(want_carry.num_rows() > 100, "the test needs a real carry");

    let now = H0 + H + 11 * 60 * S;
    let r = run(&store, &cfg, now).await.unwrap();
    assert_eq!(r.hours.len(), 1, "{r:?}");
    let h = &r.hours[0];
    assert_eq!((h.objects_merged, h.rows_written), (24, want.num_rows()));
    // 24 objects, 3 at a time: 8 runs, merged into 3, which the last merge reads.
    assert_eq!(h.runs_merged, 8 + 3, "{h:?}");
    assert_eq!(
        (h.carried, h.expired),
        (want_stats.carried, want_stats.expired)
    );
    let merged = keys_under(&store, &nat).await;
    assert_eq!(merged, [Path::from(format!("{nat}compacted.parquet"))]);
    let got = read(&store, &merged[0]).await;
    assert_eq!(one(Table::NatEvents, &got), want);
    let carry = read_all(&store, &part(Table::NatCarry, H0 + H)).await;
    assert_eq!(one(Table::NatCarry, &carry), want_carry);

    // Late data: copies of rows already compacted (two raw objects normalized again) and new
    // objects. The merge of compacted.parquet with them keeps each row once, in order, and the
    // carry chains from the previous one exactly as the in-memory carry does.
    for obj in [3, 11] {
        normalize_like(&store, obj, &raw_rows(obj, 200 + 17 * obj), &opts).await;
    }
    for obj in 30..34 {
        normalize_like(&store, obj, &raw_rows(obj, 500), &opts).await;
    }
    let before = read_all(&store, &nat).await;
    let want = compact::merge(Table::NatEvents, &before).unwrap();
    let r = run(&store, &cfg, now).await.unwrap();
    assert_eq!(r.hours[0].objects_merged, 6, "{r:?}");
    // compacted.parquet and 6 objects: 3 runs.
    assert_eq!(r.hours[0].runs_merged, 3, "{r:?}");
    assert_eq!(r.hours[0].rows_written, want.num_rows());
    let got = read_all(&store, &nat).await;
    assert_eq!(one(Table::NatEvents, &got), want);
    let (want_carry, _) = compact::carry(None, Some(&want), H0, idle_cutoff).unwrap();
    let carry = read_all(&store, &part(Table::NatCarry, H0 + H)).await;
    assert_eq!(one(Table::NatCarry, &carry), want_carry);

    // The next hour: its carry comes from the previous carry and its own events, streamed.
    for obj in 40..44 {
        let rows: Vec<Row> = raw_rows(obj, 300)
            .into_iter()
            .map(|mut r| {
                if let natlake_core::model::Event::Nat(e) = &mut r.event {
                    e.time += H;
                }
                r.envelope.recv_time += H;
                r
            })
            .collect();
        normalize_like(&store, obj, &rows, &opts).await;
    }
    let events = compact::merge(
        Table::NatEvents,
        &read_all(&store, &part(Table::NatEvents, H0 + H)).await,
    )
    .unwrap();
    let prev = one(Table::NatCarry, &carry);
    let (want_next, want_stats) =
        compact::carry(Some(&prev), Some(&events), H0 + H, idle_cutoff + H).unwrap();
    let r = run(&store, &cfg, now + H).await.unwrap();
    let h = r.hours.last().unwrap();
    assert_eq!(
        (h.carried, h.expired),
        (want_stats.carried, want_stats.expired)
    );
    let next = read_all(&store, &part(Table::NatCarry, H0 + 2 * H)).await;
    assert_eq!(one(Table::NatCarry, &next), want_next);
}

/// Small objects, more than the fan-in but together well within the budget, are merged at once
/// without local runs, to the same objects as the grouped merge.
#[tokio::test]
async fn small_objects_beyond_the_fan_in_merge_at_once_as_in_groups() {
    let grouped = tiny_budget();
    let at_once = natlake_compact::CompactConfig {
        merge: natlake_core::lake::merge::MergeBudget {
            input_bytes: 64 << 20,
            ..grouped.merge
        },
        ..grouped.clone()
    };
    let now = H0 + H + 11 * 60 * S;
    let mut lakes = Vec::new();
    for cfg in [&grouped, &at_once] {
        let dir = tempfile::tempdir().unwrap();
        let url = natlake_store::dir_url(dir.path()).unwrap();
        let store = natlake_store::open(&url, &Default::default()).unwrap();
        for obj in 0..24 {
            normalize_like(&store, obj, &raw_rows(obj, 200 + 17 * obj), &cfg.write).await;
        }
        let r = run(&store, cfg, now).await.unwrap();
        let h = &r.hours[0];
        assert_eq!(h.objects_merged, 24, "{h:?}");
        let nat = one(
            Table::NatEvents,
            &read_all(&store, &part(Table::NatEvents, H0)).await,
        );
        let carry = one(
            Table::NatCarry,
            &read_all(&store, &part(Table::NatCarry, H0 + H)).await,
        );
        lakes.push((h.runs_merged, nat, carry, dir));
    }
    assert_eq!(lakes[0].0, 8 + 3, "the grouped merge writes runs");
    assert_eq!(lakes[1].0, 0, "small objects need no runs");
    assert!(lakes[1].1.num_rows() > 0 && lakes[1].2.num_rows() > 100);
    assert_eq!(
        lakes[0].1, lakes[1].1,
        "the same compacted rows, in the same order"
    );
    assert_eq!(lakes[0].2, lakes[1].2, "the same carry");
}

#[tokio::test]
async fn object_broken_part_way_is_quarantined_and_the_partition_merged_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    // Row groups of 100 rows: the compacted object reads fine at first and breaks in its third
    // row group, after the merge has already written output.
    let mut cfg = tiny_budget();
    cfg.write.row_group_rows = 100;
    let opts = WriteOptions::default();
    for obj in 0..4 {
        normalize_like(&store, obj, &raw_rows(obj, 400), &opts).await;
    }
    let now = H0 + H + 11 * 60 * S;
    run(&store, &cfg, now).await.unwrap();
    let nat = part(Table::NatEvents, H0);
    let broken = Path::from(format!("{nat}compacted.parquet"));
    let bytes = store.get(&broken).await.unwrap().bytes().await.unwrap();
    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(bytes.clone()).unwrap();
    use parquet::file::reader::FileReader;
    let md = reader.metadata();
    assert!(md.num_row_groups() >= 3);
    let time = md
        .row_group(2)
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "time")
        .unwrap();
    let at = usize::try_from(time.data_page_offset()).unwrap();
    let mut damaged = bytes.to_vec();
    damaged[at..at + 16].fill(0xff);
    store.put(&broken, PutPayload::from(damaged)).await.unwrap();
    // Late data arrives: the hour is merged again, with the damaged object among its inputs.
    for obj in 10..13 {
        normalize_like(&store, obj, &raw_rows(obj, 300), &opts).await;
    }
    let late: Vec<RecordBatch> = {
        let mut v = Vec::new();
        for k in keys_under(&store, &nat)
            .await
            .iter()
            .filter(|k| **k != broken)
        {
            v.extend(read(&store, k).await);
        }
        v
    };
    let want = compact::merge(Table::NatEvents, &late).unwrap();

    let r = run(&store, &cfg, now).await.unwrap();
    let h = &r.hours[0];
    assert_eq!(h.quarantined, [broken.to_string()]);
    assert_eq!((h.objects_merged, h.rows_written), (3, want.num_rows()));
    let merged = keys_under(&store, &nat).await;
    assert_eq!(merged, std::slice::from_ref(&broken));
    assert_eq!(one(Table::NatEvents, &read(&store, &merged[0]).await), want);
    let q = keys_under(&store, &format!("_state/quarantine/{nat}")).await;
    assert_eq!(
        q,
        [
            Path::from(format!("_state/quarantine/{broken}")),
            Path::from(format!("_state/quarantine/{broken}.reason.json"))
        ]
    );
    // The copy in quarantine is the damaged object as it was.
    let kept = store.get(&q[0]).await.unwrap().bytes().await.unwrap();
    assert_eq!(kept.len(), bytes.len());
}

/// The same on a real S3 server (SeaweedFS): ranged reads of the objects, the upload of the
/// merged object and the carry, the server-side copy of an unreadable object into quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacts_on_s3_as_the_in_memory_merge() {
    let dir = tempfile::tempdir().unwrap();
    let weed = natlake_e2e::weed::Weed::start(dir.path()).unwrap();
    let url = format!("s3://{}/compact", natlake_e2e::weed::BUCKET);
    let store = natlake_e2e::fixtures::open_s3(&weed, &url).unwrap();
    let cfg = tiny_budget();
    let opts = WriteOptions::default();
    for obj in 0..12 {
        normalize_like(&store, obj, &raw_rows(obj, 300 + 11 * obj), &opts).await;
    }
    let nat = part(Table::NatEvents, H0);
    let want = compact::merge(Table::NatEvents, &read_all(&store, &nat).await).unwrap();
    let (want_carry, _) = compact::carry(None, Some(&want), H0, H0 + H - cfg.max_idle).unwrap();
    let bad = Path::from(format!("{nat}relay_9999.parquet"));
    store
        .put(&bad, PutPayload::from_static(b"PAR1 this is not parquet"))
        .await
        .unwrap();

    let r = run(&store, &cfg, H0 + H + 11 * 60 * S).await.unwrap();
    let h = &r.hours[0];
    assert_eq!(h.quarantined, [bad.to_string()], "{}", weed.log_tail());
    assert_eq!((h.objects_merged, h.rows_written), (12, want.num_rows()));
    let merged = keys_under(&store, &nat).await;
    assert_eq!(merged, [Path::from(format!("{nat}compacted.parquet"))]);
    assert_eq!(one(Table::NatEvents, &read(&store, &merged[0]).await), want);
    let carry = read_all(&store, &part(Table::NatCarry, H0 + H)).await;
    assert_eq!(one(Table::NatCarry, &carry), want_carry);
    let q = store
        .get(&Path::from(format!("_state/quarantine/{bad}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&q[..], b"PAR1 this is not parquet");
}

/// One raw object whose records each hold four events (as an IPFIX datagram does): creates on
/// neighbouring ports of one public address, which sort next to each other, plus a second
/// subscriber on the same port in the same record (port overloading towards another
/// destination).
fn datagram_rows(obj: u64) -> Vec<Row> {
    (0..60u64)
        .map(|i| {
            let record = i / 4;
            let port = 5000 + (obj * 100 + record * 3 + (i % 4).min(2)) as u16;
            let t = H0 + (obj * 60 + record) as Micros * S;
            let inside = format!("100.64.{obj}.{}", i % 4);
            let mut r = nat_row(
                t,
                NatEventKind::SessionCreate,
                &inside,
                port,
                &raw(obj),
                record,
            );
            if let natlake_core::model::Event::Nat(e) = &mut r.event
                && i % 4 == 3
            {
                e.dst_ip = "192.0.2.1".parse().ok();
            }
            r
        })
        .collect()
}

#[tokio::test]
async fn records_with_several_events_lose_none_in_the_merge_or_the_carry() {
    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    let cfg = tiny_budget();
    let opts = WriteOptions::default();
    for obj in 0..7 {
        normalize_like(&store, obj, &datagram_rows(obj), &opts).await;
    }
    let nat = part(Table::NatEvents, H0);
    let now = H0 + H + 11 * 60 * S;
    let r = run(&store, &cfg, now).await.unwrap();
    let h = &r.hours[0];
    assert!(h.runs_merged > 0, "the test needs the grouped merge: {h:?}");
    let got = one(Table::NatEvents, &read_all(&store, &nat).await);
    // Every event is distinct: none may be taken for a copy of its neighbour.
    assert_eq!(got.num_rows(), 7 * 60, "{h:?}");
    // Every mapping is still open at the hour's end: all are carried, each from its own row.
    let carry = one(
        Table::NatCarry,
        &read_all(&store, &part(Table::NatCarry, H0 + H)).await,
    );
    assert_eq!(h.carried, carry.num_rows(), "{h:?}");
    let rows = natlake_core::lake::read::nat_rows(&carry).unwrap();
    let mut mappings: Vec<(String, u16)> = rows
        .iter()
        .map(|r| (r.src_ip.unwrap().to_string(), r.x_port.unwrap()))
        .collect();
    mappings.sort();
    mappings.dedup();
    assert_eq!(mappings.len(), carry.num_rows(), "a mapping carried twice");
    let want: usize = (0..7).map(|o| datagram_rows(o).len()).sum();
    assert_eq!(carry.num_rows(), want, "{h:?}");

    // A raw object normalized again after compaction: its rows are copies, kept once.
    normalize_like(&store, 3, &datagram_rows(3), &opts).await;
    let r = run(&store, &cfg, now).await.unwrap();
    assert_eq!(r.hours[0].objects_merged, 1, "{r:?}");
    let got = one(Table::NatEvents, &read_all(&store, &nat).await);
    assert_eq!(got.num_rows(), 7 * 60);
}

/// Unmounts the test's tmpfs however the test ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Whether this process may mount file systems (CAP_SYS_ADMIN in its effective set), as root
/// in CI is; root in an unprivileged container is not.
fn may_mount() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
    })
}

/// A partition merged in groups writes local sorted runs. With too little disk for them the
/// pass stops before it starts, says why and what to change, and leaves every object where it
/// was; with room, the same hour compacts. A 64 KiB tmpfs stands for a small Lambda /tmp.
#[tokio::test]
async fn too_little_spill_disk_stops_the_partition_before_it_starts() {
    let spill = tempfile::tempdir().unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "natlake-spill-test"])
        .arg(spill.path())
        .output();
    match mount {
        Ok(out) if out.status.success() => {}
        other => {
            // CI runs as root with CAP_SYS_ADMIN (the conntrack tests' namespaces need it
            // too): there it must not skip.
            assert!(
                !may_mount(),
                "mounting a tmpfs failed with CAP_SYS_ADMIN: {other:?}"
            );
            eprintln!("skipped: mounting a small tmpfs needs CAP_SYS_ADMIN ({other:?})");
            return;
        }
    }
    let _mounted = Mounted(spill.path().to_owned());

    let dir = tempfile::tempdir().unwrap();
    let url = natlake_store::dir_url(dir.path()).unwrap();
    let store = natlake_store::open(&url, &Default::default()).unwrap();
    let opts = WriteOptions::default();
    for obj in 0..6 {
        normalize_like(&store, obj, &raw_rows(obj, 2_000), &opts).await;
    }
    let nat = part(Table::NatEvents, H0);
    let before = keys_under(&store, "lake/").await;
    let mut cfg = tiny_budget();
    cfg.spill_dir = Some(spill.path().to_owned());
    let now = H0 + H + 11 * 60 * S;
    let err = run(&store, &cfg, now).await.unwrap_err();
    let msg = err.to_string();
    match &err {
        natlake_compact::run::CompactError::SpillSpace {
            partition,
            objects,
            input_bytes,
            need_bytes,
            free_bytes,
            ..
        } => {
            assert_eq!(format!("{partition}/"), nat);
            assert_eq!(*objects, 6);
            assert!(*input_bytes > 64 * 1024, "{msg}");
            assert!(need_bytes > free_bytes && *free_bytes <= 64 * 1024, "{msg}");
        }
        other => panic!("expected SpillSpace, got {other}"),
    }
    assert!(msg.contains("TMPDIR") && msg.contains("ephemeral"), "{msg}");
    // Nothing published, nothing deleted, nothing left on the small disk.
    assert_eq!(keys_under(&store, "lake/").await, before);
    assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), 0);

    cfg.spill_dir = None;
    let r = run(&store, &cfg, now).await.unwrap();
    let h = &r.hours[0];
    assert_eq!(
        (h.objects_merged, h.runs_merged, h.rows_written),
        (6, 2, 12_000),
        "{r:?}"
    );
    assert_eq!(
        keys_under(&store, &nat).await,
        [Path::from(format!("{nat}compacted.parquet"))]
    );
}
