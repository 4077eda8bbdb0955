//! `natlake sql --store s3://…` against a real S3 server (SeaweedFS): the lake is copied through
//! object_store into a local directory DuckDB reads (natlake's DuckDB has no httpfs), and the
//! answers equal those over a `file://` store normalized from the same raw objects. `--since /
//! --until` copy only those hours; an object removed from the store (as compaction removes small
//! files) leaves the copy too, so no row is counted twice; the audit log is a table. `natlake
//! lookup` on the same store lists what the lake lacks (raw objects pending or failed, messages
//! a relay dropped) and what an operator accepted.

use std::process::Command;

use anyhow::{Context, bail, ensure};
use natlake_e2e::fixtures;
use natlake_e2e::weed::{BUCKET, Weed};
use natlake_raw::InputKind;
use object_store::ObjectStoreExt;
use serde_json::Value;

const NATLAKE: &str = env!("CARGO_BIN_EXE_natlake");
/// 2026-11-23T10:00:00Z.
const T10: i64 = 1_795_428_000_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;
const COUNT: &str = "SELECT hour, count(*) AS n FROM nat_events GROUP BY hour ORDER BY hour";

fn natlake(weed: &Weed, args: &[&str]) -> anyhow::Result<(String, String)> {
    let out = Command::new(NATLAKE)
        .args(args)
        .envs(weed.env())
        .env("RUST_LOG", "warn")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("natlake {args:?} failed ({}): {stderr}", out.status);
    }
    Ok((stdout, stderr))
}

fn rows(stdout: &str) -> anyhow::Result<Vec<Value>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{l:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_s3_matches_the_local_lake() {
    if let Err(e) = run().await {
        panic!("{e:#}");
    }
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let weed = Weed::start(dir.path())?;
    let url = format!("s3://{BUCKET}/sql");
    let s3 = fixtures::open_s3(&weed, &url)?;
    let local_dir = dir.path().join("local");
    std::fs::create_dir_all(&local_dir)?;
    let local_url = format!("file://{}", local_dir.display());
    let local = natlake_store::open(&local_url, &Default::default())?;

    // The real conntrack lines, once at 10h and once at 11h, into both stores.
    let lines = fixtures::corpus_samples("conntrack.txt")?;
    for (i, at) in [T10 + 60, T10 + HOUR_NS + 60].into_iter().enumerate() {
        let batch = format!("019ab0c0-2b40-7000-8000-00000000001{i}");
        let key = natlake_raw::key::raw_key(InputKind::ConntrackNetlink, at, "cgn-1", &batch);
        let bytes = fixtures::raw_object(InputKind::ConntrackNetlink, at, "cgn-1", &batch, &lines)?;
        fixtures::put(&s3, &key, bytes.clone()).await?;
        fixtures::put(&local, &key, bytes).await?;
    }
    natlake(&weed, &["normalize", "--store", &url])?;
    natlake(&weed, &["normalize", "--store", &local_url])?;
    // An audit record in the lookup's shape, in the S3 store only.
    let audit = r#"{"time":"2026-11-23T11:30:00Z","who":"desk","endpoint":"attribution","asked":{"ip":"198.51.100.7","port":"4000","at":"2026-11-23T10:15:00Z"},"answered":{"matches":[{"src_ip":"100.64.0.9","src_port":5555,"subscriber":"sub-9"}],"ambiguous":false,"errors":0,"error":null}}"#;
    fixtures::put(
        &s3,
        "audit/hour=2026-11-23T11/0001795431000000000-x.json",
        audit.as_bytes().to_vec(),
    )
    .await?;

    let mirror = dir.path().join("mirror");
    let m = mirror.to_str().context("mirror path")?;
    let want = rows(
        &natlake(
            &weed,
            &["sql", "--store", &local_url, "--output", "json", COUNT],
        )?
        .0,
    )?;
    ensure!(want.len() == 2, "two hours in the local lake: {want:?}");
    ensure!(
        want.iter().all(|r| r["n"].as_u64().unwrap_or(0) > 0),
        "{want:?}"
    );

    // `natlake sql` on the S3 store through the copy in `m`, with extra flags.
    let s3_sql = |extra: &[&str], query: &str| -> anyhow::Result<(Vec<Value>, String)> {
        let mut args = vec![
            "sql",
            "--store",
            url.as_str(),
            "--mirror-dir",
            m,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        args.push(query);
        let (out, err) = natlake(&weed, &args)?;
        Ok((rows(&out)?, err))
    };
    let ten = ["--since", "2026-11-23T10", "--until", "2026-11-23T10"];

    // 1. The whole lake: the same answer as the local store; the audit record is a row.
    let (got, err) = s3_sql(&[], COUNT)?;
    ensure!(got == want, "s3 {got:?} vs local {want:?}");
    ensure!(err.contains("fetched"), "{err}");
    let (a, _) = s3_sql(
        &[],
        "SELECT who, asked_ip, asked_port, named_subscribers[1] AS sub FROM audit",
    )?;
    ensure!(a.len() == 1, "{a:?}");
    ensure!(
        a[0]["who"] == "desk" && a[0]["asked_ip"] == "198.51.100.7",
        "{a:?}"
    );
    ensure!(
        a[0]["asked_port"] == 4000 && a[0]["sub"] == "sub-9",
        "{a:?}"
    );

    // 2. One hour asked for: only that hour is in the copy (the other is removed from it).
    let (got, err) = s3_sql(&ten, COUNT)?;
    ensure!(got == want[..1], "{got:?} vs {:?}; {err}", &want[..1]);
    let (got, _) = s3_sql(&ten, "SELECT count(*) AS n FROM audit")?;
    ensure!(got[0]["n"] == 0, "the 11h audit record is outside: {got:?}");

    // 3. The 11h objects leave the store (as when compaction replaces files): after a run over
    // everything, the copy no longer counts them.
    let gone = fixtures::list_keys(&s3, "lake/nat_events/hour=2026-11-23T11").await?;
    ensure!(!gone.is_empty());
    for k in &gone {
        s3.delete(&object_store::path::Path::from(k.as_str()))
            .await?;
    }
    let (got, err) = s3_sql(&[], COUNT)?;
    ensure!(got == want[..1], "{got:?}; {err}");

    // A store that cannot be read is a clear error, not an empty answer.
    let bad = Command::new(NATLAKE)
        .args(["sql", "--store", &url, "--mirror-dir", m, COUNT])
        .envs(weed.env())
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .output()?;
    let err = String::from_utf8_lossy(&bad.stderr);
    ensure!(!bad.status.success() && err.contains("copying"), "{err}");

    // 4. `natlake lookup` over S3 says what the lake lacks for the hours it reads, from the
    // listings of raw/ and the state markers on the S3 server: nothing while every raw object
    // is normalized; a raw object of 10h put since is pending, then failed once a dead letter
    // names it.
    let q = rows(
        &natlake(
            &weed,
            &[
                "sql",
                "--store",
                &local_url,
                "--output",
                "json",
                "SELECT x_ip, x_port, epoch_us(time) // 1000000 AS t FROM nat_events \
                 WHERE hour = '2026-11-23T10' AND x_port IS NOT NULL ORDER BY time LIMIT 1",
            ],
        )?
        .0,
    )?;
    let (ip, port, at) = (
        q[0]["x_ip"].as_str().context("x_ip")?.to_owned(),
        q[0]["x_port"].to_string(),
        q[0]["t"].to_string(),
    );
    let lookup = || -> anyhow::Result<Value> {
        let (out, _) = natlake(
            &weed,
            &[
                "lookup", "--store", &url, "--ip", &ip, "--port", &port, "--at", &at,
            ],
        )?;
        Ok(serde_json::from_str(&out)?)
    };
    let a = lookup()?;
    ensure!(
        !a["matches"].as_array().context("matches")?.is_empty(),
        "{a}"
    );
    ensure!(
        a["unread_total"] == 0 && a["unread"] == serde_json::json!([]),
        "{a}"
    );
    let batch = "019ab0c0-2b40-7000-8000-000000000019";
    let late = natlake_raw::key::raw_key(InputKind::ConntrackNetlink, T10 + 120, "cgn-1", batch);
    let bytes = fixtures::raw_object(
        InputKind::ConntrackNetlink,
        T10 + 120,
        "cgn-1",
        batch,
        &lines,
    )?;
    fixtures::put(&s3, &late, bytes).await?;
    let a = lookup()?;
    ensure!(a["ambiguous"] == true && a["unread_total"] == 1, "{a}");
    ensure!(
        a["unread"][0]["key"] == late.as_str() && a["unread"][0]["state"] == "pending",
        "{a}"
    );
    let dead = format!("_state/dead-letter/{late}.json");
    fixtures::put(&s3, &dead, br#"{"error": "zstd: truncated"}"#.to_vec()).await?;
    let a = lookup()?;
    ensure!(
        a["unread"][0]["state"] == "failed" && a["unread"][0]["reason"] == "zstd: truncated",
        "{a}"
    );
    ensure!(a["accepted_losses"] == serde_json::json!([]), "{a}");

    // 5. The operator lists the dead letters, checks the object and accepts its loss: the
    // answer is no longer ambiguous and says what it was computed without.
    let (out, _) = natlake(&weed, &["dead-letters", "list", "--store", &url])?;
    let listed: Vec<Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(
        listed
            == [serde_json::json!({"key": late, "state": "failed", "reason": "zstd: truncated"})],
        "{out}"
    );
    let refused = Command::new(NATLAKE)
        .args(["dead-letters", "accept", "--store", &url, "--reason", ""])
        .arg(&late)
        .envs(weed.env())
        .output()?;
    ensure!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("a reason is required"),
        "{refused:?}"
    );
    let (out, _) = natlake(
        &weed,
        &[
            "dead-letters",
            "accept",
            "--store",
            &url,
            "--reason",
            "test object, checked with natlake raw cat",
            &late,
        ],
    )?;
    let accepted: Value = serde_json::from_str(out.trim())?;
    ensure!(accepted["error"] == "zstd: truncated", "{out}");
    let a = lookup()?;
    ensure!(
        a["ambiguous"] == false && a["unread_total"] == 0,
        "accepted loss still ambiguous: {a}"
    );
    ensure!(
        a["accepted_losses"]
            == serde_json::json!([{"key": late, "state": "accepted",
                "reason": "test object, checked with natlake raw cat"}]),
        "{a}"
    );
    let (out, _) = natlake(&weed, &["dead-letters", "list", "--store", &url])?;
    ensure!(
        out.contains("\"state\":\"accepted\"") && !out.contains("failed"),
        "{out}"
    );

    // 6. Messages cgn-1 dropped five hours before the question — before any hour the answer
    // reads, inside its day of lookback (one listing with StartAfter on the S3 server) — make
    // the answer ambiguous; a span after the window does not. The operator lists the spans
    // and accepts the loss of the first.
    let at_us = at.parse::<i64>()? * 1_000_000;
    let kind = InputKind::ConntrackNetlink.as_str();
    let mut spans = Vec::new();
    for first_us in [at_us - 5 * 3_600_000_000, at_us + 2 * 3_600_000_000] {
        let key = natlake_raw::heartbeat::drops_key("cgn-1", kind, first_us);
        let span = natlake_raw::heartbeat::DropSpan {
            relay: "cgn-1".into(),
            kind: kind.into(),
            first_us,
            last_us: first_us + 30_000_000,
            messages: 40,
            reasons: [("spool_full".to_string(), 40)].into(),
        };
        fixtures::put(&s3, &key, serde_json::to_vec(&span)?).await?;
        spans.push(key);
    }
    let a = lookup()?;
    ensure!(
        a["ambiguous"] == true
            && a["unread_total"] == 1
            && a["unread"][0]["key"] == spans[0].as_str()
            && a["unread"][0]["state"] == "dropped",
        "{a}"
    );
    let (out, _) = natlake(
        &weed,
        &[
            "relays",
            "drops",
            "--store",
            &url,
            "--since",
            "2026-11-23T00:00:00Z",
            "--until",
            "2026-11-23T23:59:59Z",
        ],
    )?;
    let listed = rows(&out)?;
    ensure!(
        listed.len() == 2 && listed.iter().all(|d| d["messages"] == 40),
        "{out}"
    );
    natlake(
        &weed,
        &[
            "relays",
            "accept-drops",
            "--store",
            &url,
            "--reason",
            "spool full during a store outage, checked",
            &spans[0],
        ],
    )?;
    let a = lookup()?;
    ensure!(a["ambiguous"] == false && a["unread_total"] == 0, "{a}");
    let losses = a["accepted_losses"].as_array().context("accepted_losses")?;
    ensure!(
        losses.len() == 2
            && losses.iter().any(|g| g["key"]
                .as_str()
                .is_some_and(|k| k.ends_with(".accepted.json"))),
        "{a}"
    );
    Ok(())
}
