//! End-to-end tests on real sockets and a real `file://` store in a temp dir.
//!
//! Nothing here sleeps to assert: every wait polls a condition with a generous deadline, so the
//! tests hold on a loaded 2-core machine.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_relay::{
    ByteSize, DropReason, InputKind, Relay, RelayConfig, RelayHandle, SourceConfig,
    TcpSourceConfig, UdpSourceConfig,
};
use natlake_raw::{BatchHeader, BatchReader, Record};

const DEADLINE: Duration = Duration::from_secs(60);

fn base_config(store: &Path, spool: &Path) -> RelayConfig {
    let mut cfg = RelayConfig::new(natlake_store::dir_url(store).unwrap(), spool);
    cfg.relay_id = Some("test-relay".into());
    cfg.labels.insert("site".into(), "lab".into());
    cfg.batch.max_age = Duration::from_secs(3600);
    cfg.sink.retry_initial = Duration::from_millis(20);
    cfg.sink.retry_max = Duration::from_millis(200);
    cfg.shutdown_timeout = Duration::from_secs(30);
    cfg
}

fn udp_source(cfg: &mut RelayConfig) {
    cfg.sources
        .push(SourceConfig::SyslogUdp(UdpSourceConfig::new(
            "127.0.0.1:0".parse().unwrap(),
        )));
}

fn tcp_source(cfg: &mut RelayConfig) -> &mut TcpSourceConfig {
    cfg.sources
        .push(SourceConfig::SyslogTcp(TcpSourceConfig::new(
            "127.0.0.1:0".parse().unwrap(),
        )));
    match cfg.sources.last_mut().unwrap() {
        SourceConfig::SyslogTcp(t) => t,
        _ => unreachable!(),
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends datagrams in small bursts, each time waiting until the relay has taken them, so that a
/// small kernel receive buffer (no CAP_NET_ADMIN, low rmem_max) cannot lose any.
async fn send_udp(relay: &RelayHandle, sock: &UdpSocket, payloads: &[Vec<u8>]) {
    let to = relay.local_addr(InputKind::SyslogUdp).unwrap();
    let base = relay.stats().received_messages + relay.stats().dropped(DropReason::Oversized);
    let mut sent = 0u64;
    for burst in payloads.chunks(64) {
        for p in burst {
            sock.send_to(p, to).unwrap();
        }
        sent += burst.len() as u64;
        wait_for("the relay to receive a burst", || {
            let s = relay.stats();
            s.received_messages + s.dropped(DropReason::Oversized) >= base + sent
        })
        .await;
    }
}

/// Every raw object under `raw/` in a file store: (key, header, records).
fn read_store(store: &Path) -> Vec<(String, BatchHeader, Vec<Record>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
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
            let rd = BatchReader::from_compressed(&bytes).unwrap();
            let header = rd.header().clone();
            let recs = rd.map(|r| r.unwrap().1).collect();
            let key = p
                .strip_prefix(store)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (key, header, recs)
        })
        .collect()
}

fn all_records(store: &Path) -> Vec<Record> {
    read_store(store)
        .into_iter()
        .flat_map(|(_, _, r)| r)
        .collect()
}

/// Asserts that `records` hold exactly the `want` payloads, each once.
fn assert_exactly_once(records: &[Record], want: &[Vec<u8>]) {
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
        .map(|(p, c)| (String::from_utf8_lossy(p), *c))
        .collect();
    assert!(
        bad.is_empty(),
        "payloads missing (>0) or extra (<0): {:?}",
        &bad[..bad.len().min(10)]
    );
    assert_eq!(records.len(), want.len());
}

fn syslog_lines(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "<134>1 2024-05-01T12:00:00Z cgnat-1 nat - - - {tag} SNAT 100.64.{}.{} -> 203.0.113.9:{} seq={i}",
                i / 256 % 256,
                i % 256,
                1024 + i % 60000
            )
            .into_bytes()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_arrive_exactly_once_with_peer_and_kind() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from_a = syslog_lines("a", 3000);
    let mut from_b = syslog_lines("b", 500);
    from_b.push(Vec::new()); // an empty datagram is a message too
    from_b.push(vec![0, 159, 146, 150, 255, b'\n', 0]); // binary junk is kept as is
    send_udp(&relay, &a, &from_a).await;
    send_udp(&relay, &b, &from_b).await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();

    let objects = read_store(store.path());
    assert!(!objects.is_empty());
    for (key, header, _) in &objects {
        assert!(key.starts_with("raw/syslog_udp/hour="), "{key}");
        assert!(key.contains("/test-relay_"), "{key}");
        assert_eq!(header.kind, InputKind::SyslogUdp);
        assert_eq!(header.relay_id, "test-relay");
        assert_eq!(header.labels["site"], "lab");
        assert_eq!(
            natlake_raw::key::stem(key),
            format!("test-relay_{}", header.batch_id)
        );
    }
    let recs = all_records(store.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    for r in &recs {
        assert_eq!(r.kind, InputKind::SyslogUdp);
        assert_eq!(r.flags, 0);
        assert!(
            now - r.recv_ns < 600_000_000_000 && r.recv_ns <= now,
            "recv_ns {}",
            r.recv_ns
        );
        let want_peer = if from_a.contains(&r.payload) {
            a.local_addr()
        } else {
            b.local_addr()
        };
        assert_eq!(r.peer, Some(want_peer.unwrap()));
    }
    let want: Vec<_> = from_a.iter().chain(&from_b).cloned().collect();
    assert_exactly_once(&recs, &want);

    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.received_messages, want.len() as u64);
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert_eq!(stats.records_uploaded, want.len() as u64);
    assert_eq!(stats.spool_files, 0);
    assert_eq!(stats.batches_uploaded, objects.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_close_by_size_without_a_flush() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    cfg.batch.max_bytes = ByteSize::kib(4);
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines = syslog_lines("size", 600);
    send_udp(&relay, &sock, &lines).await;
    // Size alone closes batches: most records get uploaded with no flush and no age limit.
    wait_for("size-closed batches to be uploaded", || {
        relay.stats().records_uploaded as usize + 40 >= lines.len()
    })
    .await;
    let objects = read_store(store.path());
    assert!(objects.len() >= 10, "{} objects", objects.len());
    for (_, _, recs) in &objects {
        let raw: usize = recs.iter().map(|r| r.encoded_len()).sum();
        assert!(raw <= 4096, "batch of {raw} raw bytes exceeds max_bytes");
        assert!(raw + 200 > 4096, "batch of {raw} raw bytes closed early");
    }
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    assert_exactly_once(&all_records(store.path()), &lines);
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_close_by_age_without_a_flush() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    cfg.batch.max_age = Duration::from_millis(200);
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines = syslog_lines("age", 5);
    send_udp(&relay, &sock, &lines).await;
    wait_for("the aged batch to be uploaded", || {
        relay.stats().records_uploaded == 5
    })
    .await;
    assert_exactly_once(&all_records(store.path()), &lines);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.records_uploaded, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_keeps_batches_in_the_spool_until_it_recovers() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    // A regular file where the store needs the `raw/` directory: every put fails (even as root).
    let blocker = store.path().join("raw");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines = syslog_lines("outage", 300);
    send_udp(&relay, &sock, &lines[..150]).await;
    relay.flush_now().await.unwrap();
    send_udp(&relay, &sock, &lines[150..]).await;
    relay.flush_now().await.unwrap();
    wait_for("several failed attempts", || {
        relay.stats().upload_errors >= 3
    })
    .await;
    let s = relay.stats();
    assert_eq!((s.spool_files, s.batches_uploaded), (2, 0), "{s:?}");
    assert!(s.spool_bytes > 0);
    assert_eq!(
        std::fs::read_dir(spool.path())
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        2
    );

    std::fs::remove_file(&blocker).unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    assert_exactly_once(&all_records(store.path()), &lines);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.batches_uploaded, 2);
    assert_eq!(stats.dropped_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_keeps_the_spool_and_a_restart_replays_it_exactly_once() {
    let good_store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(good_store.path(), spool.path());
    // Nothing listens on port 1; explicit credentials keep the client off any metadata service.
    cfg.sink.store = "s3://bucket/lake".into();
    cfg.sink.s3 = natlake_store::S3Options {
        endpoint: Some("http://127.0.0.1:1".into()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test-secret".into()),
        virtual_hosted: false,
    };
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let first = syslog_lines("before-restart", 400);
    send_udp(&relay, &sock, &first).await;
    relay.flush_now().await.unwrap();
    let stats = relay
        .shutdown_within(Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(stats.batches_uploaded, 0);
    assert_eq!(stats.spool_files, 1, "{stats:?}");
    assert_eq!(stats.received_messages, 400);

    // Same spool, a store that works: the left-over batch goes first, then new data.
    let mut cfg = base_config(good_store.path(), spool.path());
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    assert_exactly_once(&all_records(good_store.path()), &first);
    let second = syslog_lines("after-restart", 100);
    send_udp(&relay, &sock, &second).await;
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.spool_files, 0);
    let want: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_exactly_once(&all_records(good_store.path()), &want);
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_whole_batches_and_counts_them() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let blocker = store.path().join("raw");
    std::fs::write(&blocker, b"x").unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    cfg.spool.max_bytes = ByteSize::mib(1);
    cfg.batch.max_bytes = ByteSize::kib(256);
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Incompressible payloads: ~1.6 MB of batches cannot fit in a 1 MiB spool.
    let payloads: Vec<Vec<u8>> = (0..1600).map(|i| noise(i + 1, 1000)).collect();
    send_udp(&relay, &sock, &payloads).await;
    relay.flush_now().await.unwrap();
    let s = relay.stats();
    assert!(s.dropped(DropReason::SpoolFull) > 0, "{s:?}");
    assert!(s.spool_bytes <= 1 << 20);
    assert_eq!(s.batches_uploaded, 0);

    std::fs::remove_file(&blocker).unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let stats = relay.shutdown().await.unwrap();
    let recs = all_records(store.path());
    // Every message is either in the store or counted as dropped; none twice.
    assert_eq!(
        recs.len() as u64 + stats.dropped(DropReason::SpoolFull),
        1600,
        "{stats:?}"
    );
    let mut seen = std::collections::HashSet::new();
    for r in &recs {
        assert!(seen.insert(r.payload.clone()), "duplicate payload");
        assert!(payloads.contains(&r.payload));
    }
    // The heartbeat recorded when: spans under _state/relays/drops/ whose counts add up, within
    // the receive times of the records (the dropped batches were received among them).
    let mut spans = Vec::new();
    let dir = store.path().join(natlake_raw::heartbeat::DROPS_PREFIX);
    for hour in std::fs::read_dir(&dir).unwrap() {
        for f in std::fs::read_dir(hour.unwrap().path()).unwrap() {
            let d: natlake_raw::heartbeat::DropSpan =
                serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
            spans.push(d);
        }
    }
    assert_eq!(
        spans.iter().map(|d| d.reasons["spool_full"]).sum::<u64>(),
        stats.dropped(DropReason::SpoolFull),
        "{spans:?}"
    );
    let first = recs.iter().map(|r| r.recv_ns / 1000).min().unwrap();
    for d in &spans {
        assert_eq!(
            (d.relay.as_str(), d.kind.as_str()),
            ("test-relay", "syslog_udp")
        );
        assert!(d.first_us >= first - 1 && d.first_us <= d.last_us, "{d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_datagrams_are_counted_and_dropped() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    cfg.sources.push(SourceConfig::SyslogUdp(UdpSourceConfig {
        max_message: ByteSize::kib(1),
        ..UdpSourceConfig::new("127.0.0.1:0".parse().unwrap())
    }));
    let relay = Relay::start(cfg).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let small = syslog_lines("ok", 10);
    let mut all = small.clone();
    all.insert(3, vec![b'x'; 1025]);
    all.insert(7, vec![b'y'; 4000]);
    all.push(vec![b'z'; 1024]); // exactly max_message is kept
    send_udp(&relay, &sock, &all).await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let mut want = small;
    want.push(vec![b'z'; 1024]);
    assert_exactly_once(&all_records(store.path()), &want);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.dropped(DropReason::Oversized), 2);
    assert_eq!(
        stats.dropped_bytes["oversized"], 2048,
        "the kept (truncated) bytes are counted"
    );
}

fn write_all_slowly(s: &mut TcpStream, data: &[u8], piece: usize) {
    for p in data.chunks(piece) {
        s.write_all(p).unwrap();
        s.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_octet_counted_and_lf_framed_frames() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    tcp_source(&mut cfg).max_frame = ByteSize::kib(1);
    let relay = Relay::start(cfg).await.unwrap();
    let addr = relay.local_addr(InputKind::SyslogTcp).unwrap();

    let octet: Vec<Vec<u8>> = syslog_lines("octet", 200);
    let lf: Vec<Vec<u8>> = syslog_lines("lf", 200);
    let (oc, lc, jc, peers) = tokio::task::spawn_blocking(move || {
        // Octet counting, with a frame containing LFs and frames cut across writes.
        let mut c1 = TcpStream::connect(addr).unwrap();
        let mut stream = Vec::new();
        for m in &octet {
            stream.extend_from_slice(format!("{} ", m.len()).as_bytes());
            stream.extend_from_slice(m);
        }
        stream.extend_from_slice(b"14 multi\nline\nmsg");
        stream.extend_from_slice(format!("2000 {}", "o".repeat(2000)).as_bytes()); // > max_frame: skipped
        stream.extend_from_slice(b"5 after");
        write_all_slowly(&mut c1, &stream, 997);
        // LF framing, CRLF and a last line without LF.
        let mut c2 = TcpStream::connect(addr).unwrap();
        let mut stream = Vec::new();
        for m in &lf {
            stream.extend_from_slice(m);
            stream.push(b'\n');
        }
        stream.extend_from_slice(&[b'L'; 3000]); // > max_frame: skipped up to its LF
        stream.extend_from_slice(b"\n<13>crlf line\r\n<13>unterminated last line");
        write_all_slowly(&mut c2, &stream, 1500);
        // Binary junk and an unfinished octet frame.
        let mut c3 = TcpStream::connect(addr).unwrap();
        let junk: Vec<u8> = noise(7, 5000)
            .into_iter()
            .filter(|b| *b != b'\n' && !b.is_ascii_digit())
            .collect();
        c3.write_all(&junk).unwrap();
        c3.write_all(b"\n100 too short").unwrap();
        let peers = [
            c1.local_addr().unwrap(),
            c2.local_addr().unwrap(),
            c3.local_addr().unwrap(),
        ];
        (c1, c2, c3, peers)
    })
    .await
    .unwrap();
    drop((oc, lc, jc));
    wait_for("all TCP frames", || {
        relay.stats().received_messages == 200 + 2 + 200 + 2
    })
    .await;
    wait_for("the connections to finish", || {
        relay.stats().dropped_total() >= 4
    })
    .await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();

    let objects = read_store(store.path());
    assert!(
        objects
            .iter()
            .all(|(k, h, _)| k.starts_with("raw/syslog_tcp/") && h.kind == InputKind::SyslogTcp)
    );
    let recs = all_records(store.path());
    let mut want: Vec<Vec<u8>> = syslog_lines("octet", 200);
    want.push(b"multi\nline\nmsg".to_vec());
    want.push(b"after".to_vec());
    want.extend(syslog_lines("lf", 200));
    want.push(b"<13>crlf line\r".to_vec());
    want.push(b"<13>unterminated last line".to_vec());
    assert_exactly_once(&recs, &want);
    for r in &recs {
        assert_eq!(r.kind, InputKind::SyslogTcp);
        let p = r.peer.unwrap();
        let expect = if r
            .payload
            .starts_with(b"<134>1 2024-05-01T12:00:00Z cgnat-1 nat - - - octet")
            || r.payload == b"after"
            || r.payload.starts_with(b"multi")
        {
            peers[0]
        } else {
            peers[1]
        };
        assert_eq!(p, expect, "{}", String::from_utf8_lossy(&r.payload));
    }
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.dropped(DropReason::FrameTooLarge), 3, "{stats:?}"); // octet 2000, LF 3000, junk
    assert_eq!(stats.dropped(DropReason::IncompleteFrame), 1, "{stats:?}");
    assert_eq!(stats.tcp_connections_accepted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_above_the_limit_are_refused_and_counted() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    tcp_source(&mut cfg).max_connections = 2;
    let relay = Relay::start(cfg).await.unwrap();
    let addr = relay.local_addr(InputKind::SyslogTcp).unwrap();
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(format!("<13>held {i}\n").as_bytes()).unwrap();
        held.push(c);
    }
    wait_for("both messages", || relay.stats().received_messages == 2).await;
    let mut third = TcpStream::connect(addr).unwrap();
    wait_for("the refusal", || relay.stats().tcp_connections_refused == 1).await;
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    // Closed by the relay: end of stream or reset, never a hang.
    assert!(matches!(third.read(&mut buf), Ok(0) | Err(_)));
    // Room again once a held connection closes.
    drop(held.pop());
    wait_for("the slot to free", || {
        let mut c = TcpStream::connect(addr).unwrap();
        let _ = c.write_all(b"<13>later\n");
        drop(c);
        relay.stats().received_messages >= 3
    })
    .await;
    let stats = relay.shutdown().await.unwrap();
    assert!(stats.tcp_connections_refused >= 1);
    assert_eq!(stats.dropped_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    cfg.metrics.address = Some("127.0.0.1:0".parse().unwrap());
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_udp(&relay, &sock, &syslog_lines("m", 10)).await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let addr = relay.metrics_addr().expect("metrics bound");
    let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for name in [
        "edge_relay_received_messages_total",
        "edge_relay_batches_uploaded_total",
        "edge_relay_upload_duration_seconds_bucket",
    ] {
        assert!(body.contains(name), "{name} missing in:\n{body}");
    }
    let nf = tokio::task::spawn_blocking(move || http_get(addr, "/nope"))
        .await
        .unwrap();
    assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
    relay.shutdown().await.unwrap();
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_cannot_share_the_spool_and_bind_errors_release_it() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    udp_source(&mut cfg);
    let relay = Relay::start(cfg.clone()).await.unwrap();
    let err = Relay::start(cfg.clone())
        .await
        .err()
        .expect("spool is locked");
    assert!(
        matches!(err, edge_relay::RelayError::SpoolLocked(_)),
        "{err}"
    );
    relay.shutdown().await.unwrap();

    // A source that cannot bind fails the start, and the spool is usable again right after.
    let blocker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut bad = base_config(store.path(), spool.path());
    bad.sources
        .push(SourceConfig::SyslogUdp(UdpSourceConfig::new(
            blocker.local_addr().unwrap(),
        )));
    let err = Relay::start(bad).await.err().expect("address in use");
    assert!(matches!(err, edge_relay::RelayError::Bind { .. }), "{err}");
    let relay = Relay::start(cfg).await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_workers_share_one_port() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    // Several workers need a fixed port: take a free one.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.sources.push(SourceConfig::SyslogUdp(UdpSourceConfig {
        workers: 3,
        ..UdpSourceConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    }));
    let relay = Relay::start(cfg).await.unwrap();
    assert_eq!(relay.local_addr(InputKind::SyslogUdp).unwrap().port(), port);
    let mut want = Vec::new();
    for s in 0..8 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let lines = syslog_lines(&format!("sender{s}"), 100);
        send_udp(&relay, &sock, &lines).await;
        want.extend(lines);
    }
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.received_messages, 800);
    assert_exactly_once(&all_records(store.path()), &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_over_ipv6_keeps_the_v6_peer() {
    let Ok(sock) = UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    cfg.sources
        .push(SourceConfig::SyslogUdp(UdpSourceConfig::new(
            "[::1]:0".parse().unwrap(),
        )));
    let relay = Relay::start(cfg).await.unwrap();
    let lines = syslog_lines("v6", 50);
    send_udp(&relay, &sock, &lines).await;
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.records_uploaded, 50);
    let recs = all_records(store.path());
    assert_exactly_once(&recs, &lines);
    assert!(
        recs.iter()
            .all(|r| r.peer == Some(sock.local_addr().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_peer_that_never_finishes_a_frame_is_closed_at_idle_timeout() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    tcp_source(&mut cfg).idle_timeout = Duration::from_millis(300);
    let relay = Relay::start(cfg).await.unwrap();
    let addr = relay.local_addr(InputKind::SyslogTcp).unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"5 hello50 only part of it").unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let closed = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 8];
        matches!(c.read(&mut buf), Ok(0) | Err(_))
    });
    assert!(closed.await.unwrap(), "the relay closes an idle connection");
    wait_for("the incomplete frame to be counted", || {
        relay.stats().dropped(DropReason::IncompleteFrame) == 1
    })
    .await;
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(
        stats.records_uploaded, 1,
        "the complete frame before it is kept"
    );
    assert_eq!(all_records(store.path())[0].payload, b"hello");
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// The relay's heartbeat in a file store, once one written after `after_us` is there.
async fn heartbeat_after(store: &Path, after_us: i64) -> natlake_raw::heartbeat::Heartbeat {
    let path = store.join(natlake_raw::heartbeat::key("test-relay"));
    let start = Instant::now();
    loop {
        if let Ok(b) = std::fs::read(&path) {
            // A half-read file is impossible (written by rename) but a stale one is not.
            let hb: natlake_raw::heartbeat::Heartbeat = serde_json::from_slice(&b).unwrap();
            if hb.written_us > after_us {
                return hb;
            }
        }
        assert!(start.elapsed() < DEADLINE, "no heartbeat after {after_us}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The heartbeat claims a kind stored only up to the oldest message not in a stored object:
/// held at a message's receive time while it sits in the open batch and while its batch is in
/// the spool failing to upload; past it once the store confirmed the batch; and at the stop,
/// the last heartbeat says the relay stopped with everything stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_claims_only_what_is_stored() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = base_config(store.path(), spool.path());
    cfg.sink.heartbeat_interval = Duration::from_millis(50);
    udp_source(&mut cfg);
    let relay = Relay::start(cfg).await.unwrap();
    let claim = |hb: &natlake_raw::heartbeat::Heartbeat| hb.complete_through("syslog_udp").unwrap();

    // Nothing received yet: stored up to the mark (taken 1 s before the heartbeat is written,
    // the time a source may hold what it received before handing it over).
    let t0 = now_us();
    let hb = heartbeat_after(store.path(), t0).await;
    assert_eq!(
        hb.kinds.keys().collect::<Vec<_>>(),
        ["syslog_udp"],
        "{hb:?}"
    );
    assert!(claim(&hb) >= t0 - 2_000_000, "{hb:?}");
    assert!(claim(&hb) <= hb.written_us - 1_000_000, "{hb:?}");
    assert!(!hb.stopped);

    // A message in the open batch holds the claim at its receive time.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = now_us();
    send_udp(&relay, &sock, &syslog_lines("held", 1)).await;
    let after = now_us();
    let hb = heartbeat_after(store.path(), after + 1_500_000).await;
    assert!(
        (before..=after).contains(&claim(&hb)),
        "{before} {after} {hb:?}"
    );
    assert_eq!(hb.kinds["syslog_udp"].spooled_batches, 0);

    // Closed and spooled, but the store refuses it: the claim stays.
    let blocker = store.path().join("raw");
    std::fs::write(&blocker, b"not a directory").unwrap();
    relay.flush_now().await.unwrap();
    wait_for("failed uploads", || relay.stats().upload_errors >= 2).await;
    let hb = heartbeat_after(store.path(), now_us()).await;
    assert!(
        (before..=after).contains(&claim(&hb)),
        "{before} {after} {hb:?}"
    );
    assert_eq!(hb.kinds["syslog_udp"].spooled_batches, 1, "{hb:?}");

    // Stored: the claim moves past it.
    std::fs::remove_file(&blocker).unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let hb = heartbeat_after(store.path(), now_us() + 1_500_000).await;
    assert!(claim(&hb) > after, "{after} {hb:?}");
    assert_eq!(hb.kinds["syslog_udp"].spooled_batches, 0);

    // Stopped: nothing in hand, nothing open, nothing spooled.
    send_udp(&relay, &sock, &syslog_lines("last", 1)).await;
    let stop = now_us();
    relay.shutdown().await.unwrap();
    let hb = heartbeat_after(store.path(), stop).await;
    assert!(hb.stopped && claim(&hb) >= stop, "{stop} {hb:?}");
    assert_eq!(all_records(store.path()).len(), 2);
}
