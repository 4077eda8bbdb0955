//! The receive time is stored as `recv_delay_us` (µs after `time`); objects of older versions
//! store `recv_time` itself. A lake holding both kinds must show every row's receive time
//! unchanged: through the views (`natlake sql`'s DuckDB and the stock DuckDB CLI), after
//! compaction merged the old object with the new one (the delay derived from the old column),
//! in the carry, and for lookups.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};
use bytes::Bytes;
use natlake_core::lake::columns::RECV_DELAY;
use natlake_core::lake::layout;
use natlake_core::lake::read::{parquet_batches, with_recv_time};
use natlake_core::lake::writer::{WriteOptions, encode_batch, encode_outputs, publish};
use natlake_core::model::{Event, Micros, NatEventKind, Row, Table};
use natlake_core::testing::{keys_under, nat_row};
use natlake_query::attribution::{Question, attribute};
use natlake_query::{Lake, sql};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const S: Micros = 1_000_000;
/// 2026-11-23T00:00Z
const H0: Micros = 1_795_392_000 * S;

fn raw(n: u64) -> String {
    format!("raw/conntrack/hour=2026-11-23T00/relay_{n:04}.nlraw.zst")
}

/// Object `obj`'s rows: sessions on public 198.51.100.7, each subscriber on its own port; the
/// receive time runs from 2 s before the event (device clock ahead) to 40 s after it. Sessions
/// of even records are left open at the end of the hour (they go into the carry).
fn rows(obj: u64) -> Vec<Row> {
    (0..40u64)
        .map(|i| {
            let t = H0 + (100 + obj as Micros * 600 + i as Micros * 7) * S + 123_457;
            let port = 2000 + (obj * 100 + i) as u16;
            let mut r = nat_row(
                t,
                NatEventKind::SessionCreate,
                &format!("100.64.{obj}.{i}"),
                port,
                &raw(obj),
                i,
            );
            r.envelope.recv_time = t + (i as Micros * 997_003 % 42_000_000) - 2_000_000;
            if let Event::Nat(e) = &mut r.event {
                e.src_port = Some(40000 + i as u16);
            }
            r
        })
        .chain((1..40u64).step_by(2).map(|i| {
            // Odd sessions close 20 minutes in.
            let t = H0 + (1_200 + obj as Micros * 600 + i as Micros) * S;
            let mut r = nat_row(
                t,
                NatEventKind::SessionDelete,
                &format!("100.64.{obj}.{i}"),
                2000 + (obj * 100 + i) as u16,
                &raw(obj),
                100 + i,
            );
            r.envelope.recv_time = t + 15_000;
            if let Event::Nat(e) = &mut r.event {
                e.src_port = Some(40000 + i as u16);
            }
            r
        }))
        .collect()
}

/// (raw_key, raw_record) -> receive time, as the rows were received.
fn expected(objs: &[u64]) -> BTreeMap<(String, i64), Micros> {
    objs.iter()
        .flat_map(|&o| rows(o))
        .map(|r| {
            (
                (
                    r.provenance.raw_key.to_string(),
                    r.provenance.raw_record as i64,
                ),
                r.envelope.recv_time,
            )
        })
        .collect()
}

/// A normalize output as versions before `recv_delay_us` wrote it: the same columns with
/// `recv_time` (timestamp[us, UTC]) where the delay is now.
fn old_object(rows: &[Row]) -> (String, Bytes) {
    old_object_with(rows, None)
}

/// [`old_object`], with the `time` of record `null_time` (if any) left null: a row no version of
/// normalize writes, whose receive time has nothing to be a delay after.
fn old_object_with(rows: &[Row], null_time: Option<i64>) -> (String, Bytes) {
    let outs = encode_outputs(
        &rows[0].provenance.raw_key,
        rows,
        &[],
        &WriteOptions::ingest(),
    )
    .expect("encode");
    assert_eq!(outs.len(), 1);
    let (out, bytes) = outs.into_iter().next().expect("one output");
    let batch = one_batch(bytes);
    let by_rec: BTreeMap<i64, Micros> = rows
        .iter()
        .map(|r| (r.provenance.raw_record as i64, r.envelope.recv_time))
        .collect();
    let rec = batch
        .column_by_name("raw_record")
        .expect("raw_record")
        .as_primitive::<Int64Type>();
    let recv: TimestampMicrosecondArray = rec
        .values()
        .iter()
        .map(|r| Some(by_rec[r]))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let schema = batch.schema();
    let at = schema
        .index_of(RECV_DELAY)
        .expect("the new schema has the delay");
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = Field::new(
        "recv_time",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    );
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[at] = Arc::new(recv);
    if let Some(n) = null_time {
        let t = schema.index_of("time").expect("time");
        let time: TimestampMicrosecondArray = cols[t]
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .zip(rec.values().iter())
            .map(|(v, r)| if *r == n { None } else { v })
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC");
        cols[t] = Arc::new(time);
    }
    let old = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("old batch");
    let bytes = encode_batch(Table::NatEvents, &old, &WriteOptions::ingest()).expect("encode old");
    (out.key, bytes)
}

fn one_batch(bytes: Bytes) -> RecordBatch {
    let batches = parquet_batches(bytes).expect("read back");
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

/// (raw_key, raw_record) -> receive time of every row of a stored batch, and whether the batch
/// stores the delay (true) or `recv_time` (false).
fn stored_recv(batch: &RecordBatch) -> (BTreeMap<(String, i64), Micros>, bool) {
    let delay = batch.column_by_name(RECV_DELAY).is_some();
    let shown = with_recv_time(batch).expect("recv_time");
    assert!(shown.column_by_name(RECV_DELAY).is_none());
    let key = shown
        .column_by_name("raw_key")
        .expect("raw_key")
        .as_string::<i32>();
    let rec = shown
        .column_by_name("raw_record")
        .expect("raw_record")
        .as_primitive::<Int64Type>();
    let recv = shown
        .column_by_name("recv_time")
        .expect("recv_time")
        .as_primitive::<TimestampMicrosecondType>();
    let map = (0..shown.num_rows())
        .map(|i| {
            assert!(recv.is_valid(i), "row {i} lost its receive time");
            ((key.value(i).to_string(), rec.value(i)), recv.value(i))
        })
        .collect();
    (map, delay)
}

async fn get(store: &Arc<dyn ObjectStore>, key: &Path) -> RecordBatch {
    one_batch(
        store
            .get(key)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes"),
    )
}

/// (raw_key, raw_record) -> epoch µs of `recv_time` through `natlake sql`'s views.
fn view_recv(root: &std::path::Path, table: &str) -> BTreeMap<(String, i64), Micros> {
    let scratch = tempfile::tempdir().expect("scratch");
    let conn = sql::open_with_views(root, scratch.path()).expect("views");
    if table == "nat_carry" {
        let carry = include_str!("../../../queries/carry.sql");
        conn.execute_batch(carry).expect("carry.sql");
    }
    // The view shows recv_time second, right after time, and not the stored delay.
    let cols: Vec<String> = conn
        .prepare(&format!("SELECT * FROM {table} LIMIT 0"))
        .and_then(|mut s| {
            drop(s.query([])?);
            Ok(s.column_names())
        })
        .expect("columns");
    assert_eq!(cols[..2], ["time", "recv_time"], "{cols:?}");
    assert!(!cols.iter().any(|c| c == RECV_DELAY), "{cols:?}");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT raw_key, raw_record, epoch_us(recv_time) FROM {table}"
        ))
        .expect("prepare");
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The same through the stock DuckDB CLI running queries/views.sql (the CI installs
/// duckdb-cli; without it this part is reported and left out).
fn cli_recv(root: &std::path::Path) -> Option<BTreeMap<(String, i64), Micros>> {
    let views = natlake_core::testing::repo_dir().join("queries/views.sql");
    let views = views.display();
    let script = format!(
        "SET VARIABLE natlake_lake = '{}';\n.read {views}\n\
         SELECT raw_key, raw_record, epoch_us(recv_time) FROM nat_events;\n",
        root.display()
    );
    // On standard input the CLI goes on past the views of tables without objects (here all
    // but nat_events), which fail to bind; `-f` would stop at the first.
    let child = std::process::Command::new("duckdb")
        .args(["-csv", "-noheader"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duckdb CLI not run ({e}): pip install duckdb-cli");
            return None;
        }
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(script.as_bytes()).expect("write script");
    }
    let out = child.wait_with_output().expect("duckdb CLI");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    Some(
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(
                    f.len(),
                    3,
                    "{l:?}; stderr {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (
                    (f[0].to_string(), f[1].parse().expect("record")),
                    f[2].parse().expect("micros"),
                )
            })
            .collect(),
    )
}

/// Object 0 as an older version wrote it (`old_key`, `old_bytes`), object 1 as this one does.
async fn put_old_and_new(store: &Arc<dyn ObjectStore>, old_key: &str, old_bytes: Bytes) {
    store
        .put(&Path::from(old_key), PutPayload::from_bytes(old_bytes))
        .await
        .expect("put old");
    publish(
        store,
        encode_outputs(&raw(1), &rows(1), &[], &WriteOptions::ingest()).expect("encode"),
    )
    .await
    .expect("publish");
}

#[tokio::test]
async fn old_and_new_objects_show_the_same_receive_times_before_and_after_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = natlake_store::dir_url(dir.path()).expect("url");
    let store = natlake_store::open(&url, &Default::default()).expect("store");

    // Object 0 as an older version wrote it, object 1 as this one does.
    let (old_key, old_bytes) = old_object(&rows(0));
    put_old_and_new(&store, &old_key, old_bytes).await;
    let want = expected(&[0, 1]);
    assert_eq!(want.len(), 120);
    // Both kinds are really there.
    let nat = layout::partition_dir(Table::NatEvents, H0 / S, "198.51.100.7".parse().ok());
    let objects = keys_under(&store, &nat).await;
    assert_eq!(objects.len(), 2);
    let mut kinds = Vec::new();
    for k in &objects {
        let b = get(&store, k).await;
        kinds.push((
            b.column_by_name("recv_time").is_some(),
            b.column_by_name(RECV_DELAY).is_some(),
        ));
    }
    kinds.sort();
    assert_eq!(kinds, [(false, true), (true, false)]);

    assert_eq!(view_recv(dir.path(), "nat_events"), want);
    if let Some(cli) = cli_recv(dir.path()) {
        assert_eq!(cli, want);
    }

    // A lookup over the mixed lake finds the old object's subscriber and the new one's.
    let lake = Lake::open(&url, &dir.path().join("scratch")).expect("lake");
    for (obj, i) in [(0u64, 3u64), (1, 4)] {
        let q = Question::new(
            "198.51.100.7".parse().expect("ip"),
            2000 + (obj * 100 + i) as u16,
            H0 + (100 + obj as Micros * 600 + i as Micros * 7 + 1) * S,
        );
        let a = attribute(&lake, &q).await.expect("attribute");
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!(a.attribution.matches.len(), 1, "{a:?}");
        assert_eq!(
            a.attribution.matches[0].src_ip,
            format!("100.64.{obj}.{i}").parse().ok()
        );
    }

    // Compaction merges both into one object that stores the delay, derived for the old rows.
    let report = natlake_compact::run(&store, &Default::default(), H0 + 3 * 3600 * S)
        .await
        .expect("compact");
    assert!(!report.hours.is_empty(), "{report:?}");
    let merged = keys_under(&store, &nat).await;
    assert_eq!(merged, [Path::from(format!("{nat}compacted.parquet"))]);
    let compacted = get(&store, &merged[0]).await;
    assert!(compacted.column_by_name("recv_time").is_none());
    let (got, delay) = stored_recv(&compacted);
    assert!(delay);
    assert_eq!(got, want);
    let delays = compacted
        .column_by_name(RECV_DELAY)
        .expect("delay")
        .as_primitive::<Int64Type>();
    assert_eq!(delays.null_count(), 0);
    assert!(delays.values().iter().any(|d| *d < 0), "a clock ahead");

    // The carry holds the sessions still open at the end of the hour, with their times.
    let carry_dir = layout::partition_dir(
        Table::NatCarry,
        (H0 + 3600 * S) / S,
        "198.51.100.7".parse().ok(),
    );
    let carry = keys_under(&store, &carry_dir).await;
    assert_eq!(carry.len(), 1, "{carry:?}");
    let (carried, delay) = stored_recv(&get(&store, &carry[0]).await);
    assert!(delay);
    assert_eq!(carried.len(), 40, "the even sessions of both objects");
    for (k, v) in &carried {
        assert_eq!(want.get(k), Some(v), "{k:?}");
    }
    assert_eq!(view_recv(dir.path(), "nat_carry"), carried);

    // The views show the same receive times after compaction.
    assert_eq!(view_recv(dir.path(), "nat_events"), want);
    if let Some(cli) = cli_recv(dir.path()) {
        assert_eq!(cli, want);
    }
}

/// `natlake sql` on a lake without objects of a table gives it an empty view: with the same
/// columns, in the same order and of the same types as the view over real objects.
#[tokio::test]
async fn the_empty_view_has_the_columns_of_the_real_one() {
    let describe = |root: &std::path::Path| -> Vec<(String, String)> {
        let scratch = tempfile::tempdir().expect("scratch");
        let conn = sql::open_with_views(root, scratch.path()).expect("views");
        let mut stmt = conn
            .prepare("SELECT column_name, column_type FROM (DESCRIBE nat_events)")
            .expect("describe");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let full = tempfile::tempdir().expect("tempdir");
    let url = natlake_store::dir_url(full.path()).expect("url");
    let store = natlake_store::open(&url, &Default::default()).expect("store");
    publish(
        &store,
        encode_outputs(&raw(1), &rows(1), &[], &WriteOptions::ingest()).expect("encode"),
    )
    .await
    .expect("publish");
    let empty = tempfile::tempdir().expect("tempdir");
    let real = describe(full.path());
    assert_eq!(
        real[1],
        ("recv_time".into(), "TIMESTAMP WITH TIME ZONE".into())
    );
    assert_eq!(describe(empty.path()), real);
}

/// An old object with a receive time that cannot become a delay (its row has no `time`) is not
/// rewritten without it: compaction quarantines the object whole, with the reason, and merges
/// the partition's other objects.
#[tokio::test]
async fn an_old_object_whose_receive_time_has_no_delay_is_quarantined_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = natlake_store::dir_url(dir.path()).expect("url");
    let store = natlake_store::open(&url, &Default::default()).expect("store");
    // Record 4 opens a session that is never closed: its port is its own, so a null time
    // leaves the object in the lake order.
    let (old_key, old_bytes) = old_object_with(&rows(0), Some(4));
    let old_key = Path::from(old_key.as_str());
    put_old_and_new(&store, old_key.as_ref(), old_bytes.clone()).await;
    let report = natlake_compact::run(&store, &Default::default(), H0 + 3 * 3600 * S)
        .await
        .expect("compact");
    let h = &report.hours[0];
    assert_eq!(h.quarantined, [old_key.to_string()], "{report:?}");
    let nat = layout::partition_dir(Table::NatEvents, H0 / S, "198.51.100.7".parse().ok());
    let merged = keys_under(&store, &nat).await;
    assert_eq!(merged, [Path::from(format!("{nat}compacted.parquet"))]);
    let (got, _) = stored_recv(&get(&store, &merged[0]).await);
    assert_eq!(got, expected(&[1]));
    let q = format!("_state/quarantine/{old_key}");
    let kept = store
        .get(&Path::from(q.as_str()))
        .await
        .expect("quarantined copy")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(kept, old_bytes);
    let reason = store
        .get(&Path::from(format!("{q}.reason.json")))
        .await
        .expect("reason")
        .bytes()
        .await
        .expect("bytes");
    let reason = String::from_utf8_lossy(&reason);
    assert!(reason.contains("cannot be stored as a delay"), "{reason}");
}
