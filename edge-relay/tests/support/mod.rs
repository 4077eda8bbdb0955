//! Helpers shared by the integration tests: polling with deadlines, reading raw objects back,
//! the binary-test corpus, and the SeaweedFS server of `natlake-test-weed`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use natlake_raw::{BatchHeader, BatchReader, Record};

pub const DEADLINE: Duration = Duration::from_secs(90);

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `DEADLINE`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every raw object under `raw/` in a file store, sorted by key: (key, header, records).
pub fn read_store(store: &Path) -> Vec<(String, BatchHeader, Vec<Record>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.to_string_lossy().ends_with(natlake_raw::SUFFIX) {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&store.join("raw"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let key = p
                .strip_prefix(store)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let (header, recs) = decode_object(&bytes);
            (key, header, recs)
        })
        .collect()
}

/// Decodes one raw object, asserting it is undamaged.
pub fn decode_object(bytes: &[u8]) -> (BatchHeader, Vec<Record>) {
    let rd = BatchReader::from_compressed(bytes).unwrap();
    let header = rd.header().clone();
    let recs = rd.map(|r| r.unwrap().1).collect();
    (header, recs)
}

/// Asserts that `records` hold exactly the `want` payloads, each once.
pub fn assert_exactly_once(records: &[&Record], want: &[Vec<u8>]) {
    let mut counts: HashMap<&[u8], i64> = HashMap::new();
    for w in want {
        *counts.entry(w).or_default() += 1;
    }
    for r in records {
        *counts.entry(&r.payload).or_default() -= 1;
    }
    let bad: Vec<_> = counts
        .iter()
        .filter(|(_, c)| **c != 0)
        .map(|(p, c)| (String::from_utf8_lossy(&p[..p.len().min(80)]), *c))
        .collect();
    assert!(
        bad.is_empty(),
        "{} payloads missing (>0) or extra (<0), e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert_eq!(records.len(), want.len());
}

/// The shared binary corpus (`../shared/corpus/bin`, or `NATLAKE_CORPUS_BIN`). Never copied
/// into the repository: read at test time.
pub fn corpus_bin() -> PathBuf {
    let dir = std::env::var_os("NATLAKE_CORPUS_BIN")
        .map(PathBuf::from)
        // Cargo's run-time value first: a test binary reused from a checkout at another path
        // (a shared build directory) would read that checkout's corpus otherwise.
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
                .join("../../shared/corpus/bin")
        });
    assert!(
        dir.join("logstash-codec-netflow").is_dir(),
        "the binary corpus is missing at {} (set NATLAKE_CORPUS_BIN)",
        dir.display()
    );
    dir
}

/// SeaweedFS, shared with the end-to-end tests.
#[allow(unused_imports)] // not every test binary starts a server
pub use natlake_test_weed::{BUCKET, S3_KEY, S3_SECRET, Weed};
