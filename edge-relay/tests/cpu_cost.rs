//! A rough, in-process measurement of the relay's CPU cost per UDP line (not the benchmark of
//! issue 3, which runs the binary against rsyslog). Ignored by default:
//!
//! ```sh
//! cargo test --release -p edge-relay --test cpu_cost -- --ignored --nocapture
//! ```
//!
//! Environment: `RELAY_COST_LINES` (default 400000), `RELAY_COST_RATE` lines/s (default 200000),
//! `RELAY_COST_PAUSE_US` (the source's `recv_pause`, default 500), `RELAY_COST_RECV_BATCH` (64),
//! `RELAY_COST_ZSTD` (batch zstd level, 3).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use edge_relay::{InputKind, Relay, RelayConfig, SourceConfig, UdpSourceConfig};

fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage into a zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds per thread name, from /proc/self/task/*/stat (clock ticks).
fn threads_cpu() -> std::collections::BTreeMap<String, f64> {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let t = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick;
        *out.entry(name).or_insert(0.0) += t;
    }
    out
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn udp_cpu_per_line() {
    let lines = env_or("RELAY_COST_LINES", 400_000);
    let rate = env_or("RELAY_COST_RATE", 200_000);
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = RelayConfig::new(natlake_store::dir_url(store.path()).unwrap(), spool.path());
    cfg.relay_id = Some("cost".into());
    cfg.batch.zstd_level = env_or("RELAY_COST_ZSTD", 3) as i32;
    let mut udp = UdpSourceConfig::new("127.0.0.1:0".parse().unwrap());
    udp.receive_buffer = edge_relay::ByteSize::mib(32);
    udp.recv_pause = Duration::from_micros(env_or("RELAY_COST_PAUSE_US", 500));
    udp.recv_batch = env_or("RELAY_COST_RECV_BATCH", 64) as usize;
    cfg.sources.push(SourceConfig::SyslogUdp(udp));
    let relay = Relay::start(cfg).await.unwrap();
    let to = relay.local_addr(InputKind::SyslogUdp).unwrap();

    let msgs: Vec<Vec<u8>> = (0..lines)
        .map(|i| {
            format!(
                "<134>1 2024-05-01T12:00:{:02}Z cgnat-1 nat - - - SNAT TCP 100.64.{}.{}:{} -> 203.0.113.9:{} seq={i}",
                i % 60,
                i / 256 % 256,
                i % 256,
                1024 + i % 50_000,
                2048 + i % 50_000
            )
            .into_bytes()
        })
        .collect();
    let cpu0 = cpu(libc::RUSAGE_SELF);
    let threads0 = threads_cpu();
    let wall0 = Instant::now();
    let sender = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(to).unwrap();
        let t0 = cpu(libc::RUSAGE_THREAD);
        let start = Instant::now();
        let mut sent = 0u64;
        for burst in msgs.chunks(200) {
            for m in burst {
                let _ = s.send(m);
            }
            sent += burst.len() as u64;
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        (cpu(libc::RUSAGE_THREAD) - t0, start.elapsed())
    });
    let (sender_cpu, send_wall) = tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.stats().received_messages < lines && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(Duration::from_secs(60)).await.unwrap();
    let relay_cpu = cpu(libc::RUSAGE_SELF) - cpu0 - sender_cpu;
    let threads1 = threads_cpu();
    for (name, t) in &threads1 {
        let d = t - threads0.get(name).copied().unwrap_or(0.0);
        if d > 0.0 {
            println!(
                "  thread {name:<20} {d:.2}s = {:.3} µs/line",
                d * 1e6 / lines as f64
            );
        }
    }
    let stats = relay.shutdown().await.unwrap();
    println!(
        "sent {lines} lines in {:.2}s ({:.0}/s); received {} (lost {}), kernel drops {}, dropped {:?}; \
         relay CPU {:.3}s = {:.3} µs/line (whole flush+upload included; wall {:.2}s); {} batches, {} bytes",
        send_wall.as_secs_f64(),
        lines as f64 / send_wall.as_secs_f64(),
        stats.received_messages,
        lines - stats.received_messages,
        stats.kernel_drops,
        stats.dropped_messages,
        relay_cpu.as_secs_f64(),
        relay_cpu.as_secs_f64() * 1e6 / lines as f64,
        wall0.elapsed().as_secs_f64(),
        stats.batches_uploaded,
        stats.bytes_uploaded,
    );
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn zstd_modes_per_line() {
    use natlake_raw::{BatchHeader, BatchWriter, InputKind as K};
    let lines: Vec<Vec<u8>> = (0..55_000u64)
        .map(|i| {
            format!(
                "<134>1 2024-05-01T12:00:{:02}Z cgnat-1 nat - - - SNAT TCP 100.64.{}.{}:{} -> 203.0.113.9:{} seq={i}",
                i % 60,
                i / 256 % 256,
                i % 256,
                1024 + i * 7 % 50_000,
                2048 + i * 13 % 50_000
            )
            .into_bytes()
        })
        .collect();
    let header = BatchHeader {
        format_version: natlake_raw::VERSION,
        relay_id: "r".into(),
        batch_id: "b".into(),
        kind: K::SyslogUdp,
        created_ns: 0,
        labels: Default::default(),
    };
    let peer = Some("192.0.2.1:514".parse().unwrap());
    for level in [1, 3] {
        let t = Instant::now();
        let mut w = BatchWriter::new(&header, level).unwrap();
        for (i, l) in lines.iter().enumerate() {
            w.push_parts(i as i64, K::SyslogUdp, 0, peer, l).unwrap();
        }
        let out = w.finish().unwrap();
        let el = t.elapsed();
        println!(
            "BatchWriter streaming level {level}: {:.3} µs/line, {} -> {} bytes",
            el.as_secs_f64() * 1e6 / lines.len() as f64,
            lines.iter().map(|l| l.len() + 38).sum::<usize>(),
            out.len()
        );
        let t = Instant::now();
        let mut plain = Vec::with_capacity(9 << 20);
        natlake_raw::encode_header(&mut plain, &header).unwrap();
        for (i, l) in lines.iter().enumerate() {
            natlake_raw::encode_parts(&mut plain, i as i64, K::SyslogUdp, 0, peer, l).unwrap();
        }
        let enc = t.elapsed();
        let out2 = zstd_bulk(&plain, level);
        let el = t.elapsed();
        println!(
            "encode to Vec + one-shot level {level}: {:.3} µs/line (encode alone {:.3}), {} bytes",
            el.as_secs_f64() * 1e6 / lines.len() as f64,
            enc.as_secs_f64() * 1e6 / lines.len() as f64,
            out2.len()
        );
    }
}

fn zstd_bulk(plain: &[u8], level: i32) -> Vec<u8> {
    // Through the streaming API with one big write, as the relay could do per chunk.
    use std::io::Write;
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
    e.write_all(plain).unwrap();
    e.finish().unwrap()
}
