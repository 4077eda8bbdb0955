//! The normalize function as AWS Lambda runs it, against a real S3 server (SeaweedFS).
//!
//! `cargo lambda watch` (PyPI cargo-lambda, installed by .ci/run) emulates the Lambda Runtime
//! API; the `normalize` binary this package builds runs under it with no arguments, exactly as
//! the `bootstrap` of the zip does, configured only through the environment (store URL, AWS_*
//! endpoint and credentials). `cargo lambda invoke --data-file` sends it an S3 ObjectCreated
//! event in the shape AWS documents, key URL-encoded. The test then reads the lake back from
//! SeaweedFS and compares it with what the handler makes of the same bytes in process.
//!
//! The function is started by the test (`watch --only-lambda-apis`) rather than built by
//! `watch` itself: a `cargo build -p natlake-normalize` resolves features apart from the
//! workspace's test build and recompiles arrow and parquet (10.5 min measured on 2 cores), while
//! the binary under test is already built by this `cargo test`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use natlake_core::parsers::Format;
use natlake_e2e::fixtures::{self, Translation};
use natlake_e2e::repo_dir;
use natlake_e2e::weed::{BUCKET, Weed};
use natlake_normalize::{NormalizeConfig, Report};
use natlake_raw::InputKind;

const NORMALIZE: &str = env!("CARGO_BIN_EXE_normalize");
/// 2026-11-23T10:00:00Z: the batch's creation and first receive time.
const CREATED_NS: i64 = 1_795_428_000_000_000_000;

/// Fails with a clear message when cargo-lambda is missing (CI installs it).
fn cargo_lambda() -> anyhow::Result<String> {
    let out = Command::new("cargo")
        .args(["lambda", "--version"])
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!(
            "cargo-lambda is not installed (`cargo lambda` failed: {}): install it with \
             `pip install -r .ci/requirements.txt` (cargo-lambda==1.9.2), as .ci/run does",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process in its own process group, ended with the group (SIGTERM, then SIGKILL) on
/// drop: `cargo lambda watch` has children of its own.
struct Group {
    child: Child,
    what: &'static str,
}

impl Group {
    fn spawn(cmd: &mut Command, what: &'static str) -> anyhow::Result<Group> {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Group { child, what })
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }

    fn exited(&mut self) -> anyhow::Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!("{} exited early ({st})", self.what);
        }
        Ok(())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

/// `cargo lambda watch --only-lambda-apis` on a free port, and the `normalize` binary polling
/// it as a Lambda function would. Returns both and the port for `invoke`.
fn start_lambda(weed: &Weed, store_url: &str, logs: &Path) -> anyhow::Result<(Group, Group, u16)> {
    let port = free_port()?;
    let workspace = repo_dir();
    let mut watch = Group::spawn(
        Command::new("cargo")
            .current_dir(&workspace)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.join("watch.log"))?),
        "cargo lambda watch",
    )?;
    // The runtime API is up when the port accepts connections.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        watch.exited()?;
        ensure!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen on {port}: {}",
            std::fs::read_to_string(logs.join("watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The variables `watch --only-lambda-apis` says a function needs, then the function's own
    // configuration. No arguments: on Lambda the binary is the bootstrap.
    let mut cmd = Command::new(NORMALIZE);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("NATLAKE_STORE", store_url)
        .env("RUST_LOG", "info")
        .envs(weed.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.join("function.log"))?);
    let function = Group::spawn(&mut cmd, "normalize (Lambda)")?;
    Ok((watch, function, port))
}

/// `cargo lambda invoke --data-file`: the function's response, or its error. Fails (instead of
/// waiting for ever) when the function has died or does not answer in time.
fn invoke(
    port: u16,
    event: &Path,
    function: &mut Group,
    logs: &Path,
) -> anyhow::Result<serde_json::Value> {
    let (out_path, err_path) = (logs.join("invoke.out"), logs.join("invoke.err"));
    let mut child = Command::new("cargo")
        .args(["lambda", "invoke", "-A", "127.0.0.1", "-P"])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(event)
        .args(["--output-format", "json"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("running cargo lambda invoke")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        let dead = function.exited().err();
        if dead.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{}; function log:\n{}",
                dead.map_or("no answer within 120 s".to_string(), |e| e.to_string()),
                std::fs::read_to_string(logs.join("function.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path)?;
    if !status.success() {
        bail!(
            "invoke failed ({status}): {stdout}{}",
            std::fs::read_to_string(&err_path)?
        );
    }
    serde_json::from_str(&stdout).with_context(|| format!("invoke printed {stdout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_event_through_the_emulated_runtime_normalizes_into_seaweedfs() {
    if let Err(e) = run().await {
        panic!("{e:#}");
    }
}

async fn run() -> anyhow::Result<()> {
    let version = cargo_lambda()?;
    eprintln!("{version}");
    let dir = tempfile::tempdir()?;
    let weed = Weed::start(dir.path())?;
    let store_url = format!("s3://{BUCKET}/natlake");
    let store = fixtures::open_s3(&weed, &store_url)?;

    // A raw batch of real conntrack lines, under the key the relay would give it.
    let lines = fixtures::corpus_samples("conntrack.txt")?;
    ensure!(
        lines.len() >= 20,
        "too few conntrack samples: {}",
        lines.len()
    );
    let raw_key = natlake_raw::key::raw_key(
        InputKind::ConntrackNetlink,
        CREATED_NS,
        "cgn-1.example",
        "019ab0c0-2b40-7000-8000-0000000000aa",
    );
    let raw = fixtures::raw_object(
        InputKind::ConntrackNetlink,
        CREATED_NS,
        "cgn-1.example",
        "019ab0c0-2b40-7000-8000-0000000000aa",
        &lines,
    )?;
    fixtures::put(&store, &raw_key, raw.clone()).await?;

    let (_watch, mut function, port) = start_lambda(&weed, &store_url, dir.path())?;
    let logs = dir.path();
    // The bucket-relative key as S3 reports it: URL-encoded (`hour=` arrives as `hour%3D`).
    let escaped = fixtures::aws_key_escape(&format!("natlake/{raw_key}"));
    ensure!(escaped.contains("hour%3D2026-11-23T10"), "{escaped}");
    let event = fixtures::write_temp(
        dir.path(),
        "event.json",
        &fixtures::aws_put_event(BUCKET, &escaped, raw.len()).to_string(),
    )?;
    let response = invoke(port, &event, &mut function, logs)?;
    let reports: Vec<Report> =
        serde_json::from_value(response.clone()).with_context(|| format!("response {response}"))?;
    ensure!(reports.len() == 1, "one report per record: {response}");
    let report = &reports[0];

    // What the handler makes of these bytes, in process: the lake must hold exactly that.
    let n = natlake_normalize::handler::normalize_bytes(
        &raw_key,
        &raw,
        Format::Auto,
        &NormalizeConfig::default(),
    );
    ensure!(report.raw_key == raw_key, "decoded key {}", report.raw_key);
    ensure!(
        report.records == lines.len() as u64,
        "records {} of {}",
        report.records,
        lines.len()
    );
    ensure!(
        (report.events, report.rejects) == (n.report.events, n.report.rejects),
        "report {report:?} vs in-process {:?}",
        n.report
    );
    ensure!(report.events > 0 && report.rejects > 0, "{report:?}");
    let want = fixtures::expected_lake(&raw_key, &n.rows, &n.rejects)?;
    let lake = fixtures::check_lake(&store, &raw_key, &want, lines.len()).await?;
    let mut outputs = report.outputs.clone();
    outputs.sort();
    ensure!(
        outputs.iter().eq(lake.keys()),
        "the report names {outputs:?}, the bucket holds {:?}",
        lake.keys().collect::<Vec<_>>()
    );
    let rows: usize = lake
        .iter()
        .filter(|(k, _)| !k.starts_with("lake/rejects/"))
        .map(|(_, r)| r.len())
        .sum();
    ensure!(rows as u64 == report.events, "{rows} rows in the lake");

    // The translation the corpus source annotates is in nat_events, in the hour the line was
    // received (the line has no time of its own) and the public address's /24 partition.
    let nat = fixtures::nat_rows(&store, &lake).await?;
    let translations = fixtures::corpus_translations("conntrack.txt")?;
    ensure!(
        !translations.is_empty(),
        "no annotated translation in the corpus"
    );
    for Translation {
        src,
        sport,
        x,
        xport,
    } in &translations
    {
        let found = nat.iter().find(|r| {
            r.src_ip == Some(*src)
                && r.src_port == Some(*sport)
                && r.x_ip == *x
                && r.x_port == Some(*xport)
        });
        let Some(row) = found else {
            bail!("no nat_events row {src}:{sport} -> {x}:{xport}");
        };
        ensure!(row.protocol == Some(6) && row.raw_key == raw_key, "{row:?}");
        let hour = natlake_core::lake::layout::hour_label(row.time);
        ensure!(hour == "2026-11-23T10", "row time {}", row.time);
        let part = natlake_core::lake::layout::net_value(Some(*x));
        ensure!(
            lake.keys().any(
                |k| k.starts_with(&format!("lake/nat_events/hour=2026-11-23T10/x_net={part}/"))
            ),
            "no nat_events object in x_net={part}"
        );
    }
    ensure!(
        natlake_normalize::handler::is_done(&store, &raw_key).await?,
        "no done-marker"
    );

    // An event for one of the function's own outputs is not work: an empty answer, no error.
    let own = fixtures::write_temp(
        dir.path(),
        "own.json",
        &fixtures::aws_put_event(
            BUCKET,
            &fixtures::aws_key_escape(&format!("natlake/{}", outputs[0])),
            1,
        )
        .to_string(),
    )?;
    ensure!(invoke(port, &own, &mut function, logs)? == serde_json::json!([]));

    // An event for an object that does not exist fails the invocation (Lambda retries, then
    // the on-failure destination gets it): never an empty success.
    let missing = fixtures::write_temp(
        dir.path(),
        "missing.json",
        &fixtures::aws_put_event(
            BUCKET,
            &fixtures::aws_key_escape(
                "natlake/raw/conntrack_netlink/hour=2026-11-23T10/gone_1.nlraw.zst",
            ),
            1,
        )
        .to_string(),
    )?;
    let err = invoke(port, &missing, &mut function, logs)
        .err()
        .context("a missing object must fail")?;
    ensure!(format!("{err:#}").contains("gone_1"), "{err:#}");
    eprintln!(
        "lambda: {} records -> {} events, {} rejects in {} objects",
        report.records,
        report.events,
        report.rejects,
        outputs.len()
    );
    Ok(())
}
