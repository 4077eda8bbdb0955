//! The normalize service fed by S3-style bucket notifications over HTTP, in the body MinIO's
//! webhook target POSTs (`EventName`, `Key`, AWS-shaped `Records` with the object name
//! `url.QueryEscape`d), against a real S3 server (SeaweedFS).
//!
//! - `normalize serve` as a process with polling off, so only the notification can have made
//!   the lake objects; a key with a space, a colon and a `+` in it, which MinIO escapes as
//!   `+`, `%3A` and `%2B`; unreadable bodies get 400, other events are skipped.
//! - the same service in process with a one-key queue and its workers not yet started, to see
//!   503 on a full queue (what makes MinIO keep and resend the event) without timing games.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use natlake_core::parsers::Format;
use natlake_e2e::fixtures;
use natlake_e2e::weed::{BUCKET, Weed};
use natlake_normalize::NormalizeConfig;
use natlake_normalize::events::StoreScope;
use natlake_normalize::handler::is_done;
use natlake_normalize::service::{Normalizer, router};
use natlake_raw::InputKind;
use object_store::ObjectStore;

const NORMALIZE: &str = env!("CARGO_BIN_EXE_normalize");
/// 2026-11-23T10:00:00Z.
const CREATED_NS: i64 = 1_795_428_000_000_000_000;
const PREFIX: &str = "site-a";
const DEADLINE: Duration = Duration::from_secs(60);

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A raw object of conntrack corpus lines under `key` (relative to the store).
async fn put_raw(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    lines: &[String],
) -> anyhow::Result<Vec<u8>> {
    let raw = fixtures::raw_object(
        InputKind::ConntrackNetlink,
        CREATED_NS,
        "imported",
        "x",
        lines,
    )?;
    fixtures::put(store, key, raw.clone()).await?;
    Ok(raw)
}

/// Waits until the done-marker of `key` exists.
async fn wait_done(store: &Arc<dyn ObjectStore>, key: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !is_done(store, key).await? {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{key} was not normalized within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Checks the lake objects of `key` against the handler run in process on the same bytes.
async fn check(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    raw: &[u8],
    records: usize,
) -> anyhow::Result<fixtures::LakeRows> {
    let n = natlake_normalize::handler::normalize_bytes(
        key,
        raw,
        Format::Auto,
        &NormalizeConfig::default(),
    );
    ensure!(
        !n.rows.is_empty() || !n.rejects.is_empty(),
        "nothing from {key}"
    );
    let want = fixtures::expected_lake(key, &n.rows, &n.rejects)?;
    fixtures::check_lake(store, key, &want, records).await
}

/// The webhook token MinIO is configured with (`auth_token`); serve gets only its digest.
const TOKEN: &str = "minio-webhook-token-1";

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    post_as(http, url, Some(&format!("Bearer {TOKEN}")), body).await
}

async fn post_as(
    http: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut req = http.post(url).header("content-type", "application/json");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.body(body).send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let json = serde_json::from_str(&text).with_context(|| format!("{status}: {text:?}"))?;
    Ok((status, json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_webhook_bodies_reach_normalize_serve() {
    if let Err(e) = serve_process().await {
        panic!("{e:#}");
    }
}

async fn serve_process() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let weed = Weed::start(dir.path())?;
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let store = fixtures::open_s3(&weed, &url)?;
    let lines = fixtures::corpus_samples("conntrack.txt")?;
    // An object name that needs decoding: MinIO sends `+` for the space, %3A, %2B.
    let key =
        "raw/conntrack_netlink/hour=2026-11-23T10/imported_cgn 1 2026-11-23T10:00+00:00.nlraw.zst";
    let raw = put_raw(&store, key, &lines).await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let mut serve = Serve(
        Command::new(NORMALIZE)
            .args([
                "serve",
                "--listen",
                &listen,
                "--poll",
                "0",
                "--workers",
                "1",
            ])
            .arg("--store")
            .arg(&url)
            .arg("--webhook-token-sha256")
            .arg(natlake_core::secret::digest_hex(TOKEN))
            .envs(weed.env())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting normalize serve")?,
    );
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(st) = serve.0.try_wait()? {
            bail!("normalize serve exited ({st}): {}", read(&log));
        }
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "normalize serve did not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notify = format!("{base}/v1/notify");

    // The webhook token: none → 401, a wrong one → 403 (before the body is even read); MinIO
    // sends a one-word token as `Bearer <token>`, and the bare token is accepted too.
    let (st, body) = post_as(&http, &notify, None, "{}").await?;
    ensure!(st == 401 && body["error"].as_str().is_some(), "{st} {body}");
    let (st, body) = post_as(&http, &notify, Some("Bearer not-the-token"), "{}").await?;
    ensure!(st == 403, "{st} {body}");
    let (st, body) = post_as(&http, &notify, Some(TOKEN), "{}").await?;
    ensure!(
        st == 400,
        "the bare token passes, then the body is checked: {st} {body}"
    );

    // Unreadable bodies: 400 with the reason, nothing queued.
    let (st, body) = post(&http, &notify, "{\"Records\": [").await?;
    ensure!(st == 400 && body["error"].as_str().is_some(), "{st} {body}");
    let (st, body) = post(&http, &notify, r#"{"Records":[{"s3":{}}]}"#).await?;
    ensure!(st == 400, "a record without eventTime/object: {st} {body}");
    let foreign =
        fixtures::minio_webhook_body("other-bucket", &format!("{PREFIX}/{key}"), raw.len());
    let (st, body) = post(&http, &notify, foreign.to_string()).await?;
    ensure!(st == 400, "an object of another bucket: {st} {body}");

    // MinIO's body for the PUT: queued, normalized, the lake matches the handler's output.
    let event = fixtures::minio_webhook_body(BUCKET, &format!("{PREFIX}/{key}"), raw.len());
    let escaped = event["Records"][0]["s3"]["object"]["key"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        escaped.contains("%2Fraw%2F")
            && escaped.contains("cgn+1+")
            && escaped.contains("10%3A00%2B00%3A00"),
        "{escaped}"
    );
    let (st, body) = post(&http, &notify, event.to_string()).await?;
    ensure!(st == 202 && body["queued"] == 1, "{st} {body}");
    wait_done(&store, key).await.with_context(|| read(&log))?;
    let lake = check(&store, key, &raw, lines.len()).await?;
    let stem = natlake_raw::key::stem(key);
    ensure!(
        lake.keys()
            .all(|k| k.ends_with(&format!("/{stem}.parquet"))),
        "{lake:?}"
    );

    // The same object announced as deleted (a notification configured too broadly): skipped.
    let mut removed = event.clone();
    removed["EventName"] = "s3:ObjectRemoved:Delete".into();
    removed["Records"][0]["eventName"] = "s3:ObjectRemoved:Delete".into();
    let (st, body) = post(&http, &notify, removed.to_string()).await?;
    ensure!(st == 202 && body["queued"] == 0, "{st} {body}");
    eprintln!("webhook (serve): {} lake objects from {key:?}", lake.len());
    Ok(())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_the_refused_key_waits_for_its_resend() {
    if let Err(e) = full_queue().await {
        panic!("{e:#}");
    }
}

async fn full_queue() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let weed = Weed::start(dir.path())?;
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let store = fixtures::open_s3(&weed, &url)?;
    let lines = fixtures::corpus_samples("conntrack.txt")?;
    let (a, b) = lines.split_at(lines.len() / 2);
    let key_a = "raw/conntrack_netlink/hour=2026-11-23T10/cgn-1_a.nlraw.zst";
    let key_b = "raw/conntrack_netlink/hour=2026-11-23T10/cgn-1_b.nlraw.zst";
    let raw_a = put_raw(&store, key_a, a).await?;
    let raw_b = put_raw(&store, key_b, b).await?;

    // A one-key queue whose workers have not started: the second key cannot fit.
    let (n, workers) = Normalizer::new(
        store.clone(),
        StoreScope::from_url(&url),
        NormalizeConfig::default(),
        1,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router(n)).await });
    let notify = format!("http://{addr}/v1/notify");
    let http = reqwest::Client::new();

    // One MinIO body naming both objects (as a multi-record event would).
    let mut both = fixtures::minio_webhook_body(BUCKET, &format!("{PREFIX}/{key_a}"), raw_a.len());
    let second = fixtures::minio_webhook_body(BUCKET, &format!("{PREFIX}/{key_b}"), raw_b.len());
    let rec_b = second["Records"][0].clone();
    both["Records"]
        .as_array_mut()
        .context("Records")?
        .push(rec_b);
    let (st, body) = post(&http, &notify, both.to_string()).await?;
    ensure!(st == 503 && body["queued"] == 1, "{st} {body}");

    // Workers start: the queued key is normalized; the refused one is not (polling is off,
    // nothing else can pick it up) until its notification comes again.
    workers.spawn(1);
    wait_done(&store, key_a).await?;
    check(&store, key_a, &raw_a, a.len()).await?;
    ensure!(!is_done(&store, key_b).await?, "{key_b} was never queued");
    let (st, body) = post(&http, &notify, second.to_string()).await?;
    ensure!(st == 202 && body["queued"] == 1, "{st} {body}");
    wait_done(&store, key_b).await?;
    check(&store, key_b, &raw_b, b.len()).await?;
    server.abort();
    Ok(())
}
