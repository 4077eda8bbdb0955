//! `natlake normalize` (the backfill) against a real S3 server (SeaweedFS): raw objects of
//! three hours, a first run limited by `--since/--until`, a second over everything that skips
//! what the first did (done-markers) and counts it as skipped, a third that finds nothing to do,
//! `--force` on one hour. Progress: plain lines when stderr is not a terminal, a bar on a
//! terminal (run under `script`, which gives it a pseudo-terminal).

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use natlake_core::parsers::Format;
use natlake_e2e::fixtures;
use natlake_e2e::weed::{BUCKET, Weed};
use natlake_normalize::NormalizeConfig;
use natlake_normalize::handler::is_done;
use natlake_raw::InputKind;
use object_store::ObjectStore;

const NATLAKE: &str = env!("CARGO_BIN_EXE_natlake");
/// 2026-11-23T09:00:00Z.
const T09: i64 = 1_795_424_400_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

struct Run {
    summary: serde_json::Value,
    stderr: String,
}

fn backfill(weed: &Weed, url: &str, extra: &[&str]) -> anyhow::Result<Run> {
    let out = Command::new(NATLAKE)
        .args(["normalize", "--store", url, "--workers", "2"])
        .args(extra)
        .envs(weed.env())
        .env("RUST_LOG", "warn")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!(
            "natlake normalize {extra:?} failed ({}): {stderr}",
            out.status
        );
    }
    let summary = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("stdout {:?}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(Run { summary, stderr })
}

fn counts(r: &Run) -> [u64; 4] {
    ["objects", "normalized", "skipped", "failed"]
        .map(|k| r.summary[k].as_u64().unwrap_or(u64::MAX))
}

struct Raw {
    key: String,
    bytes: Vec<u8>,
    records: usize,
}

async fn check(store: &Arc<dyn ObjectStore>, raw: &Raw) -> anyhow::Result<()> {
    let n = natlake_normalize::handler::normalize_bytes(
        &raw.key,
        &raw.bytes,
        Format::Auto,
        &NormalizeConfig::default(),
    );
    let want = fixtures::expected_lake(&raw.key, &n.rows, &n.rejects)?;
    fixtures::check_lake(store, &raw.key, &want, raw.records).await?;
    Ok(())
}

async fn done(store: &Arc<dyn ObjectStore>, raws: &[Raw]) -> anyhow::Result<Vec<bool>> {
    let mut out = Vec::new();
    for r in raws {
        out.push(is_done(store, &r.key).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_selects_hours_resumes_and_reports_progress() {
    if let Err(e) = run().await {
        panic!("{e:#}");
    }
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let weed = Weed::start(dir.path())?;
    let url = format!("s3://{BUCKET}/backfill");
    let store = fixtures::open_s3(&weed, &url)?;

    // Four raw objects of the real conntrack lines (each all of them, so each has events):
    // one at 09h, two at 10h, one at 11h.
    let lines = fixtures::corpus_samples("conntrack.txt")?;
    let created = [
        T09 + 60,
        T09 + HOUR_NS + 60,
        T09 + HOUR_NS + 1800,
        T09 + 2 * HOUR_NS,
    ];
    let mut raws = Vec::new();
    for (i, at) in created.into_iter().enumerate() {
        let chunk = &lines;
        let batch = format!("019ab0c0-2b40-7000-8000-00000000000{i}");
        let key = natlake_raw::key::raw_key(InputKind::ConntrackNetlink, at, "cgn-1", &batch);
        let bytes = fixtures::raw_object(InputKind::ConntrackNetlink, at, "cgn-1", &batch, chunk)?;
        fixtures::put(&store, &key, bytes.clone()).await?;
        raws.push(Raw {
            key,
            bytes,
            records: chunk.len(),
        });
    }
    ensure!(
        raws[1].key.contains("hour=2026-11-23T10/") && raws[3].key.contains("hour=2026-11-23T11/")
    );

    // Bad ranges are refused before anything runs.
    for bad in [
        &["--since", "2026-11-23T11", "--until", "2026-11-23T10"][..],
        &["--since", "yesterday"][..],
    ] {
        let out = Command::new(NATLAKE)
            .args(["normalize", "--store", &url])
            .args(bad)
            .envs(weed.env())
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains("--since"),
            "{bad:?}: {err}"
        );
    }
    ensure!(done(&store, &raws).await? == [false; 4]);

    // 1. Only 10h: an hour label and an RFC 3339 time inside the hour both name it.
    let r = backfill(
        &weed,
        &url,
        &[
            "--since",
            "2026-11-23T10",
            "--until",
            "2026-11-23T10:59:59Z",
            "--progress-every",
            "50ms",
        ],
    )?;
    ensure!(counts(&r) == [2, 2, 0, 0], "{}", r.summary);
    ensure!(done(&store, &raws).await? == [false, true, true, false]);
    check(&store, &raws[1]).await?;
    check(&store, &raws[2]).await?;
    // Not a terminal: plain lines, no bar drawing; the summary line closes the output.
    ensure!(
        !r.stderr.contains('\r') && !r.stderr.contains('\u{1b}'),
        "{:?}",
        r.stderr
    );
    let last = r.stderr.lines().last().unwrap_or_default();
    ensure!(
        last.starts_with(
            "normalize: 2/2 objects: 2 normalized, 0 skipped (done before), 0 failed;"
        ),
        "{:?}",
        r.stderr
    );
    let events = r.summary["events"].as_u64().unwrap_or(0);
    ensure!(events > 0, "{}", r.summary);

    // 2. Everything: the two done objects are skipped, the other two normalized.
    let r = backfill(&weed, &url, &[])?;
    ensure!(counts(&r) == [4, 2, 2, 0], "{}", r.summary);
    ensure!(done(&store, &raws).await? == [true; 4]);
    for raw in &raws {
        check(&store, raw).await?;
    }
    let lake = fixtures::list_keys(&store, "lake").await?;

    // 3. Nothing left to do; the lake is untouched.
    let r = backfill(&weed, &url, &["--since", "1795424400"])?;
    ensure!(counts(&r) == [4, 0, 4, 0], "{}", r.summary);
    ensure!(r.summary["events"] == 0);
    ensure!(fixtures::list_keys(&store, "lake").await? == lake);

    // 4. --force on one hour's prefix: normalized again, same objects (overwritten).
    let r = backfill(
        &weed,
        &url,
        &[
            "--force",
            "--prefix",
            "raw/conntrack_netlink/hour=2026-11-23T11/",
        ],
    )?;
    ensure!(counts(&r) == [1, 1, 0, 0], "{}", r.summary);
    ensure!(fixtures::list_keys(&store, "lake").await? == lake);
    check(&store, &raws[3]).await?;

    // 5. On a terminal the progress is a bar (indicatif), finished and cleared at the end.
    let cmd = format!(
        "{NATLAKE} normalize --store {url} --force --prefix raw/conntrack_netlink/hour=2026-11-23T09/ 2>&1 1>/dev/null"
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .envs(weed.env())
        .env("RUST_LOG", "warn")
        .output()
        .context("running script (util-linux) for a pseudo-terminal")?;
    let tty = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{tty}");
    ensure!(
        tty.contains("objects, eta") && tty.contains('\r'),
        "no bar drawn: {tty:?}"
    );
    ensure!(tty.contains("1/1 objects: 1 normalized"), "{tty:?}");
    eprintln!(
        "backfill: {events} events from the 10h objects; {} lake objects",
        lake.len()
    );
    Ok(())
}
