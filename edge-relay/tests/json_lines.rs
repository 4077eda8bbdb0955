//! JSON lines from a tailed file (rotation, restart from the checkpoint), TCP and stdin.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_relay::{
    InputKind, JsonFileSourceConfig, Relay, RelayConfig, RelayHandle, SourceConfig, TcpSourceConfig,
};
use natlake_raw::Record;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_edge-relay");

fn base(store: &Path, spool: &Path) -> RelayConfig {
    let mut cfg = RelayConfig::new(natlake_store::dir_url(store).unwrap(), spool);
    cfg.relay_id = Some("json-relay".into());
    cfg.batch.max_age = Duration::from_secs(3600);
    cfg.sink.retry_initial = Duration::from_millis(20);
    cfg.sink.retry_max = Duration::from_millis(200);
    cfg
}

fn file_source(cfg: &mut RelayConfig, path: &Path) {
    let mut f = JsonFileSourceConfig::new(path);
    f.name = Some("goflow2".into());
    f.poll_interval = Duration::from_millis(20);
    // Generous: the test thread may stall on a loaded machine between the rename and the last
    // write to the old file (a real writer switches at SIGHUP, right after the rename).
    f.rotate_wait = Duration::from_secs(2);
    cfg.sources.push(SourceConfig::JsonFile(f));
}

fn flows(tag: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|i| {
            format!(
                r#"{{"type":"IPFIX","time_received_ns":{i},"sampler_address":"192.0.2.1","src_addr":"100.64.{}.{}","dst_addr":"203.0.113.9","post_nat_src_ipv4_address":"198.51.100.1","tag":"{tag}"}}"#,
                i / 250,
                i % 250
            )
            .into_bytes()
        })
        .collect()
}

fn append(path: &Path, lines: &[Vec<u8>]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l);
        buf.push(b'\n');
    }
    f.write_all(&buf).unwrap();
}

fn json_records(store: &Path) -> Vec<Record> {
    read_store(store)
        .into_iter()
        .flat_map(|(key, h, r)| {
            assert!(key.starts_with("raw/json_lines/"), "{key}");
            assert_eq!(h.kind, InputKind::JsonLines);
            r
        })
        .collect()
}

async fn wait_received(relay: &RelayHandle, n: u64) {
    wait_for(&format!("{n} lines"), || {
        relay.stats().received_messages >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_file_yields_every_line_exactly_once() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("goflow2.log");
    let rotated = logs.path().join("goflow2.log.1");
    let mut cfg = base(store.path(), spool.path());
    file_source(&mut cfg, &path);
    let relay = Relay::start(cfg).await.unwrap();

    // The file does not exist yet: the tailer waits for it.
    let a = flows("a", 0..2000);
    append(&path, &a[..1000]);
    // A line split across two writes is one line.
    {
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&a[1000][..10]).unwrap();
        f.flush().unwrap();
        wait_received(&relay, 1000).await;
        tokio::time::sleep(Duration::from_millis(60)).await; // a few polls see the half line
        f.write_all(&a[1000][10..]).unwrap();
        f.write_all(b"\n").unwrap();
    }
    append(&path, &a[1001..]);
    wait_received(&relay, 2000).await;

    // logrotate: rename; the writer keeps appending to the renamed file until SIGHUP...
    std::fs::rename(&path, &rotated).unwrap();
    let b = flows("b", 0..500);
    append(&rotated, &b);
    // An unterminated last line in the old file is taken when the tailer leaves it.
    let tail_line = br#"{"type":"IPFIX","last":"no newline"}"#.to_vec();
    {
        let mut f = OpenOptions::new().append(true).open(&rotated).unwrap();
        f.write_all(&tail_line).unwrap();
    }
    // ...then reopens the path: a new file.
    let c = flows("c", 0..1500);
    append(&path, &c[..700]);
    append(&path, &c[700..]);
    let total = (a.len() + b.len() + c.len() + 1) as u64;
    wait_received(&relay, total).await;
    // Copy-truncate rotation of the new file: its content is read again from the start only
    // if it shrank; here the writer truncates and writes fresh lines.
    std::fs::copy(&path, logs.path().join("goflow2.log.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    // Shorter than what was read: noticed as a truncation, read again from offset 0.
    let d = flows("d", 0..10);
    append(&path, &d);
    wait_received(&relay, total + d.len() as u64).await;

    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let recs = json_records(store.path());
    let refs: Vec<&Record> = recs.iter().collect();
    let want: Vec<Vec<u8>> = a
        .iter()
        .chain(&b)
        .chain(&c)
        .chain(std::iter::once(&tail_line))
        .chain(&d)
        .cloned()
        .collect();
    assert_exactly_once(&refs, &want);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint_even_across_a_rotation() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("flows.json");
    let mut cfg = base(store.path(), spool.path());
    file_source(&mut cfg, &path);
    // An over-long line is skipped and counted, the next one is read.
    if let SourceConfig::JsonFile(f) = &mut cfg.sources[0] {
        f.max_line = edge_relay::ByteSize(1024);
    }

    let a = flows("a", 0..1200);
    append(&path, &a);
    append(&path, &[vec![b'x'; 5000]]);
    let relay = Relay::start(cfg.clone()).await.unwrap();
    wait_received(&relay, a.len() as u64).await;
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.dropped(edge_relay::DropReason::FrameTooLarge), 1);
    let ckpt = std::fs::read_to_string(spool.path().join("json-file-goflow2.checkpoint")).unwrap();
    assert!(ckpt.starts_with("v1 "), "{ckpt}");

    // While the relay is down: more lines, a half line, then a rotation and a new file.
    let b = flows("b", 0..300);
    append(&path, &b);
    let half = flows("h", 0..1).remove(0);
    {
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&half[..20]).unwrap();
    }
    let relay2 = Relay::start(cfg.clone()).await.unwrap();
    wait_received(&relay2, b.len() as u64).await;
    relay2.flush_now().await.unwrap();
    // The half line is not taken (and not checkpointed) until its LF arrives.
    let stats = relay2.shutdown().await.unwrap();
    assert_eq!(stats.received_messages, b.len() as u64, "{stats:?}");

    {
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&half[20..]).unwrap();
        f.write_all(b"\n").unwrap();
    }
    std::fs::rename(&path, logs.path().join("flows.json.1")).unwrap();
    let c = flows("c", 0..400);
    append(&path, &c);
    let relay3 = Relay::start(cfg).await.unwrap();
    wait_received(&relay3, (1 + c.len()) as u64).await;
    relay3.flush_now().await.unwrap();
    relay3.wait_uploaded(DEADLINE).await.unwrap();
    let stats = relay3.shutdown().await.unwrap();
    assert_eq!(stats.received_messages, (1 + c.len()) as u64, "{stats:?}");

    let recs = json_records(store.path());
    let refs: Vec<&Record> = recs.iter().collect();
    let want: Vec<Vec<u8>> = a
        .iter()
        .chain(&b)
        .chain(std::iter::once(&half))
        .chain(&c)
        .cloned()
        .collect();
    assert_exactly_once(&refs, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_over_tcp_are_lf_framed_only() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base(store.path(), spool.path());
    cfg.sources.push(SourceConfig::JsonTcp(TcpSourceConfig::new(
        "127.0.0.1:0".parse().unwrap(),
    )));
    let relay = Relay::start(cfg).await.unwrap();
    let addr = relay.local_addr(InputKind::JsonLines).unwrap();
    let mut want = flows("t", 0..500);
    // Starts like an RFC 6587 octet count: still one line here.
    want.push(b"12 {\"not\":\"an octet count\"}".to_vec());
    let mut s = TcpStream::connect(addr).unwrap();
    for l in &want {
        s.write_all(l).unwrap();
        s.write_all(b"\n").unwrap();
    }
    drop(s);
    wait_received(&relay, want.len() as u64).await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let recs = json_records(store.path());
    let refs: Vec<&Record> = recs.iter().collect();
    assert_exactly_once(&refs, &want);
    assert!(recs.iter().all(|r| r.peer.is_some()));
    relay.shutdown().await.unwrap();
}

#[test]
fn json_lines_from_stdin_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let log = dir.path().join("relay.log");
    let mut child = Command::new(BIN)
        .arg("--store")
        .arg(natlake_store::dir_url(&store).unwrap())
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .args(["--json-stdin", "--relay-id", "stdin-test"])
        .stdin(Stdio::piped())
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let want = flows("s", 0..3000);
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in &want {
            stdin.write_all(l).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    } // EOF
    // Every line is handed over once the source has seen EOF; SIGTERM then flushes them.
    wait_until("the relay to read stdin to its end", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("stdin closed"))
    });
    let pid = child.id() as i32;
    wait_until("the relay to stop on SIGTERM", || {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success());
    let recs = json_records(&store);
    let refs: Vec<&Record> = recs.iter().collect();
    assert_exactly_once(&refs, &want);
}
