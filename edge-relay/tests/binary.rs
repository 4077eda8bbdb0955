//! The `edge-relay` binary: `--check-config`, and SIGTERM flushing everything to the store.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use natlake_raw::BatchReader;

const BIN: &str = env!("CARGO_BIN_EXE_edge-relay");

#[test]
fn check_config_accepts_a_good_file_and_names_the_problem_in_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        r#"
relay_id = "edge-1"
[[sources]]
type = "syslog_udp"
address = "0.0.0.0:514"
receive_buffer = "16MiB"
[[sources]]
type = "syslog_tcp"
address = "0.0.0.0:601"
[sink]
store = "s3://bucket/prefix"
[spool]
dir = "/var/spool/edge-relay"
max_bytes = "2GiB"
[batch]
max_bytes = "8MiB"
max_age = "60s"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok") && stdout.contains("2 source(s)"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[sink]\nstore = \"file:///tmp/x\"\n[batch]\nmax_bytes = \"8 parsecs\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("parsecs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let missing = dir.path().join("nosources.toml");
    std::fs::write(
        &missing,
        "[sink]\nstore = \"file:///tmp/x\"\n[spool]\ndir = \"/tmp/s\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--check-config")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sources"));
}

#[test]
fn sigterm_flushes_open_batches_to_the_store_and_exits_zero() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    // A free port: bind, note, release (the relay binds it right after).
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["--store", &natlake_store::dir_url(store.path()).unwrap()])
        .arg("--spool")
        .arg(spool.path())
        .args([
            "--syslog-udp",
            &format!("127.0.0.1:{port}"),
            "--relay-id",
            "bin-test",
            "--batch-age",
            "1h",
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let start = Instant::now();
    loop {
        let line = lines.next().expect("relay exited before starting").unwrap();
        if line.contains("edge-relay started") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no start line");
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let n = 200;
    for i in 0..n {
        sock.send_to(
            format!("<13>sigterm test {i}").as_bytes(),
            ("127.0.0.1", port),
        )
        .unwrap();
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(5)); // pacing, not an assertion
        }
    }
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "relay did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = log.join().unwrap();
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        log.join("\n")
    );

    let mut got = Vec::new();
    let mut stack = vec![store.path().join("raw")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(natlake_raw::SUFFIX) {
                let bytes = std::fs::read(&p).unwrap();
                for r in BatchReader::from_compressed(&bytes).unwrap() {
                    got.push(String::from_utf8(r.unwrap().1.payload).unwrap());
                }
            }
        }
    }
    got.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("<13>sigterm test {i}")).collect();
    want.sort();
    assert_eq!(got, want, "log:\n{}", log.join("\n"));
    let left: Vec<_> = std::fs::read_dir(spool.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "spool not empty after a clean stop");
}
