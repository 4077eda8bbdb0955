//! `kill -9` of the relay binary under UDP load, then a restart on the same spool: every batch
//! that was in the spool at the kill is uploaded, and nothing is uploaded twice.
//!
//! To have batches waiting in the spool at the moment of the kill, the store is made to fail
//! halfway through the load (its `raw` directory is swapped for a plain file, so puts fail), and
//! repaired after the kill.

mod support;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use natlake_raw::Record;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_edge-relay");

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(store: &Path, spool: &Path, port: u16, log: &Path) -> Relay {
    let child = Command::new(BIN)
        .arg("--store")
        .arg(natlake_store::dir_url(store).unwrap())
        .arg("--spool")
        .arg(spool)
        .arg("--syslog-udp")
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--batch-bytes",
            "64KiB",
            "--batch-age",
            "1h",
            "--relay-id",
            "k9",
        ])
        .env("RUST_LOG", "info")
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let r = Relay(child);
    wait_until("the relay to start", || {
        std::fs::read_to_string(log).is_ok_and(|l| l.matches("edge-relay started").count() >= 1)
    });
    r
}

/// Spooled batches (complete files only; `.tmp-` files are half-written).
fn spool_files(spool: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".spool") && !name.starts_with(".tmp-")
        })
        .collect();
    v.sort();
    v
}

fn payload_counts<'a>(recs: impl Iterator<Item = &'a Record>) -> HashMap<Vec<u8>, u32> {
    let mut m = HashMap::new();
    for r in recs {
        *m.entry(r.payload.clone()).or_insert(0) += 1;
    }
    m
}

#[test]
fn kill_9_under_load_then_restart_uploads_every_spooled_batch_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let spool = dir.path().join("spool");
    let log = dir.path().join("relay.log");
    std::fs::create_dir_all(&store).unwrap();
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut relay = spawn(&store, &spool, port, &log);

    // Load: ~20k lines/s from another thread until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..200 {
                    let line = format!(
                        "<134>Nov 23 10:00:00 cgn-1 nat: SNAT seq={i} 100.64.{}.{}:{} -> 198.51.100.1:{}",
                        (i / 250) % 250,
                        i % 250,
                        1024 + i % 60000,
                        20000 + i % 1000
                    );
                    let _ = s.send_to(line.as_bytes(), ("127.0.0.1", port));
                    i += 1;
                }
                sent.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // Phase 1: the store works; batches are uploaded as they close.
    wait_until("uploads while the store works", || {
        std::fs::read_dir(store.join("raw")).is_ok_and(|mut d| d.next().is_some())
            && sent.load(Ordering::Relaxed) > 20_000
    });
    // Phase 2: the store fails (puts under raw/ cannot create their directories).
    std::fs::rename(store.join("raw"), store.join("raw.hold")).unwrap();
    std::fs::write(store.join("raw"), b"not a directory").unwrap();
    let at = sent.load(Ordering::Relaxed);
    wait_until("batches to pile up in the spool", || {
        spool_files(&spool).len() >= 5 && sent.load(Ordering::Relaxed) > at + 20_000
    });

    // kill -9 while the load goes on.
    // SAFETY: kill on our own child's pid.
    assert_eq!(unsafe { libc::kill(relay.0.id() as i32, libc::SIGKILL) }, 0);
    let killed_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let status = relay.0.wait().unwrap();
    assert!(!status.success());
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let total_sent = sent.load(Ordering::Relaxed);

    // What was in the spool at the kill: each file is a finished object.
    let spooled = spool_files(&spool);
    assert!(spooled.len() >= 5, "{spooled:?}");
    let mut at_kill: Vec<Record> = Vec::new();
    for f in &spooled {
        let (_, recs) = decode_object(&std::fs::read(f).unwrap());
        at_kill.extend(recs);
    }
    let uploaded_before: Vec<Record> = read_store(&store)
        .into_iter()
        .flat_map(|(_, _, r)| r)
        .chain(
            // The objects uploaded in phase 1 sit in raw.hold for now.
            {
                let tmp = dir.path().join("phase1");
                std::fs::create_dir_all(&tmp).unwrap();
                std::fs::rename(store.join("raw.hold"), tmp.join("raw")).unwrap();
                let recs: Vec<Record> = read_store(&tmp)
                    .into_iter()
                    .flat_map(|(_, _, r)| r)
                    .collect();
                std::fs::remove_file(store.join("raw")).unwrap();
                std::fs::rename(tmp.join("raw"), store.join("raw")).unwrap();
                recs
            },
        )
        .collect();
    assert!(!uploaded_before.is_empty());

    // Restart on the same spool: the spool is replayed first.
    let started = Instant::now();
    let mut relay = spawn(&store, &spool, port, &log);
    wait_until("the spool to drain after the restart", || {
        spool_files(&spool).is_empty()
    });
    eprintln!(
        "kill -9 left {} batches ({} records) in the spool; replayed in {:?}; {} lines sent, {} uploaded before the kill",
        spooled.len(),
        at_kill.len(),
        started.elapsed(),
        total_sent,
        uploaded_before.len()
    );
    // A graceful stop of the second run (nothing new was sent: it uploads nothing more).
    // SAFETY: as above.
    unsafe { libc::kill(relay.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + DEADLINE;
    while relay.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(relay.0.wait().unwrap().success());
    drop(relay);

    // The store now holds exactly what was uploaded before the kill plus what was spooled.
    let objects = read_store(&store);
    let all: Vec<&Record> = objects.iter().flat_map(|(_, _, r)| r.iter()).collect();
    let got = payload_counts(all.iter().copied());
    let dups: Vec<_> = got.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated records: {dups:?}");
    let want = payload_counts(uploaded_before.iter().chain(at_kill.iter()));
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    assert_eq!(missing, 0, "records spooled before the kill are missing");
    let extra: Vec<(String, String)> = objects
        .iter()
        .flat_map(|(k, _, r)| r.iter().map(move |r| (k, r)))
        .filter(|(_, r)| !want.contains_key(&r.payload))
        .take(5)
        .map(|(k, r)| (k.clone(), String::from_utf8_lossy(&r.payload).into_owned()))
        .collect();
    assert!(
        extra.is_empty(),
        "records that were neither spooled nor uploaded before the kill: {extra:#?}\nspooled: {spooled:#?}\nlog: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(got.len(), want.len());
    for k in want.keys() {
        assert!(k.starts_with(b"<134>"), "only what was sent");
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("replaying batches left in the spool"),
        "{log_text}"
    );
    // The restart knew the first run stopped uncleanly and recorded when (not how many): a span
    // from the last heartbeat's claim to the restart, which lookups report; the graceful stop
    // after it is marked as such.
    assert!(log_text.contains("did not stop cleanly"), "{log_text}");
    let drops = store.join(natlake_raw::heartbeat::DROPS_PREFIX);
    let spans: Vec<natlake_raw::heartbeat::DropSpan> = std::fs::read_dir(&drops)
        .unwrap()
        .flat_map(|h| std::fs::read_dir(h.unwrap().path()).unwrap())
        .map(|f| serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap())
        .collect();
    let unclean: Vec<_> = spans
        .iter()
        .filter(|d| d.reasons.contains_key(natlake_raw::heartbeat::UNCLEAN_STOP))
        .collect();
    assert_eq!(unclean.len(), 1, "{spans:?}");
    let d = unclean[0];
    assert_eq!((d.relay.as_str(), d.kind.as_str()), ("k9", "syslog_udp"));
    assert!(
        d.first_us <= killed_us && killed_us <= d.last_us,
        "{killed_us} {d:?}"
    );
    let hb: natlake_raw::heartbeat::Heartbeat = serde_json::from_slice(
        &std::fs::read(store.join(natlake_raw::heartbeat::key("k9"))).unwrap(),
    )
    .unwrap();
    assert!(hb.stopped, "{hb:?}");
}
