//! Late NAT events: an object that lands in an hour after compaction computed the carry into
//! the next. Until compaction runs again the carry is stale; a lookup in a later hour must not
//! take it on trust (it would name a subscriber whose mapping the late object closed), and
//! compaction must fold the late hour in however old it is.

use std::sync::Arc;

use natlake_core::lake::writer::{WriteOptions, encode_outputs, publish};
use natlake_core::lake::{late, layout};
use natlake_core::model::{Micros, NatEventKind, Row};
use natlake_core::testing::{keys_under, nat_row};
use natlake_query::Lake;
use natlake_query::attribution::{Question, attribute};
use object_store::ObjectStore;

const S: Micros = 1_000_000;
const H: Micros = 3600 * S;
/// 2026-11-23T00:00Z
const H0: Micros = 1_795_392_000 * S;

fn raw(n: u64) -> String {
    format!("raw/conntrack/hour=2026-11-23T00/relay_{n:04}.nlraw.zst")
}

/// Normalize's last steps for `rows` of raw object `n`, at `now`: publish, then mark late.
async fn normalized(store: &Arc<dyn ObjectStore>, n: u64, rows: &[Row], now: Micros) -> usize {
    let outputs = encode_outputs(&raw(n), rows, &[], &WriteOptions::ingest()).expect("encode");
    let published = publish(store, outputs).await.expect("publish");
    late::mark(store, &published, &raw(n), now)
        .await
        .expect("mark")
}

async fn who(lake: &Lake, at: Micros) -> Vec<String> {
    who_port(lake, 5000, at).await
}

async fn who_port(lake: &Lake, port: u16, at: Micros) -> Vec<String> {
    let q = Question::new("198.51.100.7".parse().unwrap(), port, at);
    let a = attribute(lake, &q).await.expect("attribute");
    a.attribution
        .matches
        .iter()
        .filter_map(|c| c.src_ip.map(|i| i.to_string()))
        .collect()
}

/// One compaction run at `now` over a lake compacted never before: every one of its `hours`
/// finished hours worked on, none left.
async fn compacted_through(
    store: &Arc<dyn ObjectStore>,
    now: Micros,
    hours: usize,
) -> natlake_compact::Report {
    let cfg = natlake_compact::CompactConfig::default();
    let r = natlake_compact::run(store, &cfg, now)
        .await
        .expect("compact");
    assert_eq!((r.hours.len(), r.remaining), (hours, 0), "{r:?}");
    r
}

async fn late_markers(store: &Arc<dyn ObjectStore>) -> usize {
    keys_under(store, late::LATE_DIR).await.len()
}

/// A `file://` lake where 100.64.0.1 takes public port 5000 at 00:10, written in time (no
/// marker).
async fn lake_with_open_mapping() -> (tempfile::TempDir, Arc<dyn ObjectStore>, Lake) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = natlake_store::dir_url(dir.path()).expect("url");
    let store = natlake_store::open(&url, &Default::default()).expect("store");
    let lake = Lake::with_store(
        store.clone(),
        Some(dir.path().to_path_buf()),
        &dir.path().join("scratch"),
    );
    let open = nat_row(
        H0 + 600 * S,
        NatEventKind::SessionCreate,
        "100.64.0.1",
        5000,
        &raw(1),
        0,
    );
    assert_eq!(normalized(&store, 1, &[open], H0 + 700 * S).await, 0);
    (dir, store, lake)
}

#[tokio::test]
async fn a_late_delete_is_seen_before_and_after_compaction_whatever_its_age() {
    let (_dir, store, lake) = lake_with_open_mapping().await;
    use NatEventKind::*;
    let cfg = natlake_compact::CompactConfig::default();
    natlake_compact::run(&store, &cfg, H0 + H + 11 * 60 * S)
        .await
        .expect("compact");
    // The carry into 01:00 holds the mapping open: at 01:30 it answers 100.64.0.1.
    assert_eq!(who(&lake, H0 + H + 1800 * S).await, ["100.64.0.1"]);

    // Its delete (00:20) arrives late, after that compaction.
    let close = nat_row(H0 + 1200 * S, SessionDelete, "100.64.0.1", 5000, &raw(2), 0);
    assert_eq!(
        normalized(&store, 2, &[close], H0 + H + 20 * 60 * S).await,
        1
    );
    // The stale carry would still name 100.64.0.1 at 01:30; the lookup reads hour 00 instead.
    assert!(who(&lake, H0 + H + 1800 * S).await.is_empty());
    assert_eq!(who(&lake, H0 + 900 * S).await, ["100.64.0.1"]);

    // Compaction five days later — far past its 48 h rescan — still folds the hour in (in
    // runs of at most 48 hours, each resuming where the last stopped).
    let later = H0 + 5 * 24 * H;
    let r = natlake_compact::run(&store, &cfg, later)
        .await
        .expect("compact late");
    assert_eq!(r.hours[0].hour, layout::hour_label(H0), "{r:?}");
    let mut runs = 1;
    let mut remaining = r.remaining;
    while remaining > 0 {
        assert!(runs < 5, "compaction does not progress");
        remaining = natlake_compact::run(&store, &cfg, later)
            .await
            .expect("resume")
            .remaining;
        runs += 1;
    }
    assert_eq!(runs, 3, "120 hours in runs of 48");
    assert_eq!(late_markers(&store).await, 0, "markers consumed");
    assert!(who(&lake, H0 + H + 1800 * S).await.is_empty());
    assert_eq!(who(&lake, H0 + 900 * S).await, ["100.64.0.1"]);
}

/// A run stopped by its hour limit leaves a marker for every partition at the first hour it
/// did not reach; the next run resumes there, even over hours whose carry was computed before
/// (nothing else would make them due), and even when more late data landed in between.
#[tokio::test]
async fn a_run_cut_short_resumes_where_it_stopped() {
    let (_dir, store, lake) = lake_with_open_mapping().await;
    use NatEventKind::*;
    let now = H0 + 4 * H + 11 * 60 * S;
    // Every hour compacted: the carries into 01..04 hold the mapping open.
    compacted_through(&store, now, 4).await;
    assert_eq!(who(&lake, H0 + 3 * H + 1800 * S).await, ["100.64.0.1"]);

    // Its delete lands late in hour 00; runs of two hours at most.
    let close = nat_row(H0 + 1200 * S, SessionDelete, "100.64.0.1", 5000, &raw(2), 0);
    normalized(&store, 2, &[close], now).await;
    let cut = natlake_compact::CompactConfig {
        max_hours: 2,
        ..Default::default()
    };
    let r = natlake_compact::run(&store, &cut, now).await.expect("cut");
    assert_eq!((r.hours.len(), r.remaining), (2, 2), "{r:?}");
    let markers = late::list_all(&store).await.expect("list");
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert_eq!(
        (markers[0].net.as_str(), markers[0].hour),
        (late::ALL_NETS, H0 / S + 2 * 3600)
    );
    // The carries into 03 and 04 are still the old ones: lookups there do not trust them.
    assert!(who(&lake, H0 + 3 * H + 1800 * S).await.is_empty());

    // More late data for hour 00 before the next run: it starts over at 00, and still leaves
    // the resume marker where it stops.
    let again = nat_row(H0 + 1300 * S, SessionCreate, "100.64.0.9", 5001, &raw(3), 0);
    normalized(&store, 3, &[again], now).await;
    let r = natlake_compact::run(&store, &cut, now)
        .await
        .expect("again");
    let hours: Vec<&str> = r.hours.iter().map(|h| h.hour.as_str()).collect();
    assert_eq!(hours, ["2026-11-23T00", "2026-11-23T01"], "{r:?}");
    let markers = late::list_all(&store).await.expect("list");
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert_eq!(markers[0].hour, H0 / S + 2 * 3600);

    let r = natlake_compact::run(&store, &cut, now)
        .await
        .expect("resume");
    let hours: Vec<&str> = r.hours.iter().map(|h| h.hour.as_str()).collect();
    assert_eq!(hours, ["2026-11-23T02", "2026-11-23T03"], "{r:?}");
    assert_eq!(r.remaining, 0);
    assert_eq!(late_markers(&store).await, 0);
    assert!(who(&lake, H0 + 3 * H + 1800 * S).await.is_empty());
}

/// A device whose clock runs behind sends a whole session late into an old hour. Compaction
/// recomputes from that hour only until the carry comes out as it was, not through every hour
/// since — and the answers are those of a full recomputation.
#[tokio::test]
async fn a_late_session_costs_compaction_the_hours_it_spans() {
    let (_dir, store, lake) = lake_with_open_mapping().await;
    use NatEventKind::*;
    let now = H0 + 6 * H + 11 * 60 * S;
    let cfg = natlake_compact::CompactConfig::default();
    let r = compacted_through(&store, now, 6).await;
    assert!(
        r.hours.iter().all(|h| !h.carry_unchanged),
        "first computation: {r:?}"
    );

    // 100.64.0.2 holds public port 5001 00:40–01:10, while 100.64.0.1 keeps 5000; both of its
    // records arrive late (markers in hours 00 and 01).
    let open = nat_row(H0 + 2400 * S, SessionCreate, "100.64.0.2", 5001, &raw(2), 0);
    let close = nat_row(
        H0 + H + 600 * S,
        SessionDelete,
        "100.64.0.2",
        5001,
        &raw(3),
        0,
    );
    assert_eq!(normalized(&store, 2, &[open], now).await, 1);
    assert_eq!(normalized(&store, 3, &[close], now).await, 1);

    let r = natlake_compact::run(&store, &cfg, now)
        .await
        .expect("compact late");
    let worked: Vec<(&str, bool)> = r
        .hours
        .iter()
        .map(|h| (h.hour.as_str(), h.carry_unchanged))
        .collect();
    // 00: the carry into 01 gains the late mapping; 01: the carry into 02 is the old one again,
    // so 02..05 are left as they are.
    assert_eq!(
        worked,
        [("2026-11-23T00", false), ("2026-11-23T01", true)],
        "{r:?}"
    );
    assert_eq!(r.remaining, 0);
    assert_eq!(late_markers(&store).await, 0, "markers consumed");
    // Nothing left to do.
    let r = natlake_compact::run(&store, &cfg, now)
        .await
        .expect("again");
    assert!(r.hours.is_empty(), "{r:?}");

    // The answers: the late session in its span, the old mapping throughout.
    assert_eq!(
        who_port(&lake, 5001, H0 + H + 300 * S).await,
        ["100.64.0.2"]
    );
    assert!(
        who_port(&lake, 5001, H0 + 3 * H).await.is_empty(),
        "closed at 01:10"
    );
    assert_eq!(who(&lake, H0 + 5 * H + 1800 * S).await, ["100.64.0.1"]);
}

/// A store that takes no write after the one to `crash_after`: the process stopped there.
/// Reads still work (what a crashed run read no longer matters; the next run reads afresh).
#[derive(Debug)]
struct CrashingStore {
    inner: Arc<dyn ObjectStore>,
    crash_after: object_store::path::Path,
    crashed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for CrashingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CrashingStore({})", self.inner)
    }
}

impl CrashingStore {
    fn check(&self) -> object_store::Result<()> {
        if self.crashed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "crashing",
                source: "the run crashed".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for CrashingStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.check()?;
        let r = self.inner.put_opts(location, payload, opts).await?;
        if *location == self.crash_after {
            self.crashed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        use futures::StreamExt;
        if self.check().is_err() {
            return locations
                .map(|l| {
                    l.and_then(|_| {
                        Err(object_store::Error::Generic {
                            store: "crashing",
                            source: "the run crashed".into(),
                        })
                    })
                })
                .boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// Compaction stops (crashes, times out) right after publishing the carry into the hour after
/// a late one, before it records anything else. That carry's marker already holds the new
/// digest, so the next run, redoing the late hour, finds the carry "unchanged": it must still
/// recompute the carries after it, which were computed from the old one.
#[tokio::test]
async fn a_run_that_stops_after_publishing_a_carry_recomputes_the_ones_after_it() {
    let (_dir, store, lake) = lake_with_open_mapping().await;
    use NatEventKind::*;
    let now = H0 + 4 * H + 11 * 60 * S;
    let cfg = natlake_compact::CompactConfig::default();
    compacted_through(&store, now, 4).await;
    assert_eq!(who(&lake, H0 + 3 * H + 1800 * S).await, ["100.64.0.1"]);

    // The delete (00:20) lands late; the run stops once the carry into 01 is published.
    let close = nat_row(H0 + 1200 * S, SessionDelete, "100.64.0.1", 5000, &raw(2), 0);
    normalized(&store, 2, &[close], now).await;
    let crash_after = object_store::path::Path::from(layout::carry_marker_key(H0 / S + 3600));
    let crashing: Arc<dyn ObjectStore> = Arc::new(CrashingStore {
        inner: store.clone(),
        crash_after: crash_after.clone(),
        crashed: Default::default(),
    });
    let err = natlake_compact::run(&crashing, &cfg, now).await;
    assert!(err.is_err(), "the run went on after its crash: {err:?}");
    use object_store::ObjectStoreExt;
    store
        .head(&crash_after)
        .await
        .expect("the carry marker was published before the crash");

    // Until the next run, lookups after the late hour do not trust the carries.
    assert!(who(&lake, H0 + 3 * H + 1800 * S).await.is_empty());

    // The next run redoes hour 00 (its carry is now "unchanged") and still works 01..03.
    let r = natlake_compact::run(&store, &cfg, now)
        .await
        .expect("resume");
    let worked: Vec<&str> = r.hours.iter().map(|h| h.hour.as_str()).collect();
    assert_eq!(
        worked,
        [
            "2026-11-23T00",
            "2026-11-23T01",
            "2026-11-23T02",
            "2026-11-23T03"
        ],
        "{r:?}"
    );
    assert_eq!(late_markers(&store).await, 0, "markers consumed");
    // The mapping closed at 00:20: no hour after names 100.64.0.1.
    for h in 1..4 {
        assert!(
            who(&lake, H0 + h * H + 1800 * S).await.is_empty(),
            "hour {h} still names the closed mapping"
        );
    }
    assert_eq!(who(&lake, H0 + 900 * S).await, ["100.64.0.1"]);
}
