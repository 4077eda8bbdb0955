//! The two UDP receive paths (io_uring multishot recvmsg and recvmmsg) on real sockets, and the
//! fallback from io_uring to recvmmsg where a seccomp filter forbids io_uring (as container
//! runtimes do).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_relay::{
    ByteSize, DropReason, InputKind, ReceiveMode, Relay, RelayConfig, RelayHandle, SourceConfig,
    UdpSourceConfig,
};
use natlake_raw::{BatchReader, Record};

const DEADLINE: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_edge-relay");

fn config(store: &Path, spool: &Path, udp: UdpSourceConfig) -> RelayConfig {
    let mut cfg = RelayConfig::new(natlake_store::dir_url(store).unwrap(), spool);
    cfg.relay_id = Some("rx-test".into());
    cfg.batch.max_age = Duration::from_secs(3600);
    cfg.sources.push(SourceConfig::SyslogUdp(udp));
    cfg
}

fn records(store: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    let mut stack = vec![store.join("raw")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p: PathBuf = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(natlake_raw::SUFFIX) {
                let bytes = std::fs::read(&p).unwrap();
                out.extend(
                    BatchReader::from_compressed(&bytes)
                        .unwrap()
                        .map(|r| r.unwrap().1),
                );
            }
        }
    }
    out
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends in bursts of `burst` datagrams without pause, waiting after each burst until the
/// relay has taken it (received or counted as oversized).
async fn send(relay: &RelayHandle, sock: &UdpSocket, payloads: &[Vec<u8>], burst: usize) {
    let to = relay.local_addr(InputKind::SyslogUdp).unwrap();
    let seen = |r: &RelayHandle| {
        let s = r.stats();
        s.received_messages + s.dropped(DropReason::Oversized)
    };
    let base = seen(relay);
    let mut sent = 0u64;
    for b in payloads.chunks(burst) {
        for p in b {
            sock.send_to(p, to).unwrap();
        }
        sent += b.len() as u64;
        wait_for("the relay to take a burst", || seen(relay) >= base + sent).await;
    }
}

fn lines(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "<134>1 2026-11-23T10:00:00Z cgn-1 nat - - - {tag} SNAT 100.64.{}.{} -> 198.51.100.20:{} seq={i}",
                i / 256 % 256,
                i % 256,
                1024 + i % 60000
            )
            .into_bytes()
        })
        .collect()
}

/// Whether this process may use io_uring at all (a container's seccomp profile or
/// `kernel.io_uring_disabled` can forbid it): asked of the kernel directly, not of the relay, so
/// that a bug in the relay's setup fails the tests instead of skipping them.
fn io_uring_allowed() -> bool {
    let mut params = [0u8; 120]; // struct io_uring_params
    // SAFETY: io_uring_setup with one entry and a zeroed params struct of the kernel's size.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        eprintln!(
            "skipped: io_uring_setup is refused here ({})",
            std::io::Error::last_os_error()
        );
        return false;
    }
    // SAFETY: closing the fd we just got.
    unsafe { libc::close(fd as i32) };
    true
}

/// Datagrams in, records out: every payload once with its sender's address and a receive time
/// within the test; oversized ones counted, not stored; the path in use is reported.
async fn round_trip(mode: ReceiveMode, bind: &str) {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let udp = UdpSourceConfig {
        receive: mode,
        max_message: ByteSize::kib(1),
        // 8 buffers and bursts of 100: the ring runs dry again and again and must be re-armed
        // with nothing lost (the kernel keeps the rest in the socket buffer meanwhile).
        uring_buffers: 8,
        ..UdpSourceConfig::new(bind.parse().unwrap())
    };
    let relay = Relay::start(config(store.path(), spool.path(), udp))
        .await
        .unwrap();
    let started = relay.stats();
    assert_eq!(
        started.udp_io_uring_workers,
        u64::from(mode == ReceiveMode::IoUring),
        "{mode:?}"
    );
    assert_eq!(started.udp_receive_fallbacks, 0);

    let t0 = now_ns();
    let senders: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind(bind).unwrap()).collect();
    let mut want: HashMap<Vec<u8>, SocketAddr> = HashMap::new();
    for (i, s) in senders.iter().enumerate() {
        let mut batch = lines(&format!("{}-s{i}", mode.as_str()), 700);
        if i == 1 {
            batch.insert(10, vec![b'x'; 1025]); // one byte too many
            batch.insert(20, vec![b'y'; 9000]);
            batch.push(vec![b'z'; 1024]); // exactly max_message is kept
            batch.push(Vec::new()); // an empty datagram is a message too
        }
        send(&relay, s, &batch, 100).await;
        for p in batch {
            if p.len() <= 1024 {
                want.insert(p, s.local_addr().unwrap());
            }
        }
    }
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let t1 = now_ns();
    let recs = records(store.path());
    assert_eq!(recs.len(), want.len(), "{mode:?}: every kept datagram once");
    let mut seen = std::collections::HashSet::new();
    for r in &recs {
        assert_eq!(r.kind, InputKind::SyslogUdp);
        let Some(peer) = want.get(&r.payload) else {
            panic!(
                "{mode:?}: unexpected payload {:?}",
                String::from_utf8_lossy(&r.payload)
            );
        };
        assert!(seen.insert(r.payload.clone()), "{mode:?}: duplicate");
        assert_eq!(r.peer, Some(*peer), "{mode:?}: peer");
        assert!(
            t0 <= r.recv_ns && r.recv_ns <= t1,
            "{mode:?}: receive time {}",
            r.recv_ns
        );
    }
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.received_messages, want.len() as u64);
    assert_eq!(stats.dropped(DropReason::Oversized), 2, "{stats:?}");
    assert_eq!(
        stats.dropped_bytes["oversized"], 2048,
        "the kept (cut) bytes are counted, as on the recvmmsg path"
    );
    assert_eq!(stats.dropped_total(), 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_receives_every_datagram_with_its_peer() {
    if !io_uring_allowed() {
        return;
    }
    round_trip(ReceiveMode::IoUring, "127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recvmmsg_receives_every_datagram_with_its_peer() {
    round_trip(ReceiveMode::Recvmmsg, "127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_over_ipv6_keeps_the_v6_peer() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    if !io_uring_allowed() {
        return;
    }
    round_trip(ReceiveMode::IoUring, "[::1]:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_uses_io_uring_here_and_stops_cleanly_under_load() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let udp = UdpSourceConfig::new("127.0.0.1:0".parse().unwrap());
    let relay = Relay::start(config(store.path(), spool.path(), udp))
        .await
        .unwrap();
    let s = relay.stats();
    assert_eq!(
        (s.udp_io_uring_workers, s.udp_receive_fallbacks),
        if io_uring_allowed() { (1, 0) } else { (0, 1) }
    );
    let to = relay.local_addr(InputKind::SyslogUdp).unwrap();
    // Datagrams still arriving while the relay stops: whatever it counted as received is stored.
    let sender = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ls = lines("stop", 20_000);
        for (i, l) in ls.iter().enumerate() {
            let _ = s.send_to(l, to);
            if i % 200 == 199 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let stats = relay.shutdown().await.unwrap();
    sender.join().unwrap();
    assert!(stats.received_messages > 0);
    assert_eq!(stats.records_uploaded, stats.received_messages, "{stats:?}");
    assert_eq!(records(store.path()).len() as u64, stats.received_messages);
}

// --- fallback where io_uring is forbidden ----------------------------------------------------

/// A seccomp filter (installed in the child before exec) that fails `io_uring_setup` with EPERM,
/// as Docker's default profile does; everything else is allowed.
#[cfg(target_arch = "x86_64")]
fn forbid_io_uring(cmd: &mut Command) {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const IO_URING_SETUP: u32 = 425;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let prog = [
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        f(RET_K, 0, 0, RET_ALLOW),
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        f(JEQ_K, 0, 1, IO_URING_SETUP),
        f(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        f(RET_K, 0, 0, RET_ALLOW),
    ];
    // SAFETY: after fork, before exec: only prctl calls on a filter that lives on this stack
    // frame's copy in the child (the closure owns `prog`).
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

fn free_port(tcp: bool) -> u16 {
    if tcp {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

fn relay_cmd(store: &Path, spool: &Path, udp_port: u16, mode: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--store", &natlake_store::dir_url(store).unwrap()])
        .arg("--spool")
        .arg(spool)
        .args([
            "--syslog-udp",
            &format!("127.0.0.1:{udp_port}"),
            "--udp-receive",
            mode,
            "--relay-id",
            "seccomp-test",
            "--batch-age",
            "1h",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    cmd
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "relay did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn auto_falls_back_to_recvmmsg_where_seccomp_forbids_io_uring() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port(true)).parse().unwrap();
    let mut cmd = relay_cmd(store.path(), spool.path(), port, "auto");
    cmd.args(["--metrics", &metrics.to_string()]);
    forbid_io_uring(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before_start = Vec::new();
    let start = Instant::now();
    loop {
        let line = log.next().expect("relay exited before starting").unwrap();
        if line.contains("edge-relay started") {
            break;
        }
        before_start.push(line);
        assert!(start.elapsed() < DEADLINE, "no start line");
    }
    let log = std::thread::spawn(move || log.map_while(Result::ok).collect::<Vec<_>>());
    assert!(
        before_start.iter().any(
            |l| l.contains("io_uring receive unavailable; using recvmmsg")
                && l.contains("Operation not permitted")
        ),
        "fallback not logged:\n{}",
        before_start.join("\n")
    );
    let m = http_get(metrics, "/metrics");
    assert!(
        m.lines()
            .any(|l| l.starts_with("edge_relay_udp_receive_fallbacks_total") && l.ends_with(" 1")),
        "{m}"
    );

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let want = lines("fallback", 300);
    for (i, l) in want.iter().enumerate() {
        sock.send_to(l, ("127.0.0.1", port)).unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5)); // pacing, not an assertion
        }
    }
    // Taken by the recvmmsg path: the relay counts them before we stop it.
    let deadline = Instant::now() + DEADLINE;
    while !http_get(metrics, "/metrics")
        .lines()
        .any(|l| l.starts_with("edge_relay_received_messages_total") && l.ends_with(" 300"))
    {
        assert!(Instant::now() < deadline, "datagrams not received");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut child);
    let log = log.join().unwrap();
    assert!(status.success(), "{status:?}\n{}", log.join("\n"));
    let recs = records(store.path());
    let mut got: Vec<_> = recs.iter().map(|r| r.payload.clone()).collect();
    got.sort();
    let mut want = want;
    want.sort();
    assert_eq!(got, want);
    assert!(
        recs.iter()
            .all(|r| r.peer == Some(sock.local_addr().unwrap()))
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn forced_io_uring_fails_to_start_with_a_clear_error_where_forbidden() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = relay_cmd(store.path(), spool.path(), free_port(false), "io_uring");
    forbid_io_uring(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = wait_exit(&mut child);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("io_uring receive unavailable") && err.contains("Operation not permitted"),
        "{err}"
    );
}
