//! The spool: every finished batch is on disk (fsynced) before it is uploaded, and leaves the disk
//! only after the store confirmed it.
//!
//! Files are named `<spool_ns:020>-<seq:08>-<records>-<oldest_ns>_<key>.spool` where `<key>` is
//! the object key with `%` and `/` percent-encoded and `<oldest_ns>` the oldest receive time in
//! the batch (for the heartbeat; names from before it lack it), so a restart knows where each
//! file goes and in which order they were written. A batch is written as `.tmp-<name>`, fsynced, renamed to its final name and
//! the directory fsynced: a crash leaves either a complete file or a temp file, and temp files are
//! deleted at start. A lock file keeps two relays from sharing one spool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Counters, DropReason, RateLimit, RelayError, now_ns};

pub const SUFFIX: &str = ".spool";
const TMP_PREFIX: &str = ".tmp-";
const LOCK_FILE: &str = ".lock";

/// A batch waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub path: PathBuf,
    /// Object key it is uploaded under.
    pub key: String,
    pub records: u64,
    /// The oldest receive time in the batch (ns); `None` for a file spooled by an older relay.
    pub oldest_ns: Option<i64>,
    pub size: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    bytes: AtomicU64,
    files: AtomicU64,
    seq: AtomicU64,
    counters: Arc<Counters>,
    _lock: File,
}

static FULL_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static IO_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

impl Spool {
    /// Creates the directory if needed, locks it, removes temp files of a crashed run and counts
    /// what is waiting.
    pub fn open(dir: &Path, max_bytes: u64, counters: Arc<Counters>) -> Result<Self, RelayError> {
        let err = |source| RelayError::Spool {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(err)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(RelayError::SpoolLocked(dir.display().to_string()));
            }
            return Err(err(e));
        }
        for entry in fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                tracing::warn!(file = %entry.path().display(), "removing a half-written spool file from a crash");
                fs::remove_file(entry.path()).map_err(err)?;
            }
        }
        let spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            counters,
            _lock: lock,
        };
        let entries = spool.list().map_err(err)?;
        spool.files.store(entries.len() as u64, Ordering::Relaxed);
        spool
            .bytes
            .store(entries.iter().map(|e| e.size).sum(), Ordering::Relaxed);
        spool.gauges();
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn files(&self) -> u64 {
        self.files.load(Ordering::SeqCst)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    fn gauges(&self) {
        ::metrics::gauge!("edge_relay_spool_files").set(self.files() as f64);
        ::metrics::gauge!("edge_relay_spool_bytes").set(self.bytes() as f64);
    }

    /// Writes a finished batch durably. On failure the caller counts the batch as dropped for the
    /// returned reason (already logged here at a bounded rate).
    pub fn write(
        &self,
        key: &str,
        records: u64,
        oldest_ns: i64,
        data: &[u8],
    ) -> Result<(), DropReason> {
        let size = data.len() as u64;
        if self.bytes() + size > self.max_bytes {
            if let Some(suppressed) = FULL_LOG.allow() {
                tracing::error!(
                    key,
                    records,
                    size,
                    spool_bytes = self.bytes(),
                    max_bytes = self.max_bytes,
                    suppressed,
                    "spool is full (is the store reachable?); dropping a batch (counted as spool_full)"
                );
            }
            return Err(DropReason::SpoolFull);
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{:020}-{seq:08}-{records}-{}_{}{SUFFIX}",
            now_ns().max(0),
            oldest_ns.max(0),
            encode_key(key)
        );
        // Counted before the rename: from then on the uploader may see the file and remove it
        // (and uncount it) before this thread would get to counting it.
        self.bytes.fetch_add(size, Ordering::SeqCst);
        self.files.fetch_add(1, Ordering::SeqCst);
        match self.write_durably(&name, data) {
            Ok(()) => {
                self.counters
                    .batches_spooled
                    .fetch_add(1, Ordering::Relaxed);
                self.gauges();
                Ok(())
            }
            Err(e) => {
                saturating_sub(&self.bytes, size);
                saturating_sub(&self.files, 1);
                if let Some(suppressed) = IO_LOG.allow() {
                    tracing::error!(
                        key,
                        records,
                        dir = %self.dir.display(),
                        error = %e,
                        suppressed,
                        "cannot write to the spool; dropping a batch (counted as spool_error)"
                    );
                }
                Err(DropReason::SpoolError)
            }
        }
    }

    fn write_durably(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let dst = self.dir.join(name);
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &dst)?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Every complete batch in the spool, oldest first.
    pub fn list(&self) -> io::Result<Vec<SpoolEntry>> {
        static ODD_LOG: RateLimit = RateLimit::new(Duration::from_secs(60));
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let Some((records, oldest_ns, key)) = parse_name(name) else {
                if let Some(suppressed) = ODD_LOG.allow() {
                    tracing::warn!(
                        file = name,
                        suppressed,
                        "ignoring a file in the spool that the relay did not write"
                    );
                }
                continue;
            };
            let size = match entry.metadata() {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(SpoolEntry {
                path: entry.path(),
                key,
                records,
                oldest_ns,
                size,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes an uploaded batch.
    pub fn remove(&self, e: &SpoolEntry) -> io::Result<()> {
        match fs::remove_file(&e.path) {
            Ok(()) => {
                saturating_sub(&self.bytes, e.size);
                saturating_sub(&self.files, 1);
                self.gauges();
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }
}

fn saturating_sub(a: &AtomicU64, n: u64) {
    let _ = a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_sub(n))
    });
}

fn encode_key(key: &str) -> String {
    key.replace('%', "%25").replace('/', "%2F")
}

fn decode_key(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("%25") => out.push('%'),
            Some("%2F") => out.push('/'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `(records, oldest receive time, key)` of a spool file name.
fn parse_name(name: &str) -> Option<(u64, Option<i64>, String)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (prefix, key) = stem.split_once('_')?;
    let mut parts = prefix.split('-');
    let (ns, seq, records) = (parts.next()?, parts.next()?, parts.next()?);
    let oldest = match parts.next() {
        Some(o) => Some(o.parse().ok()?),
        None => None,
    };
    if parts.next().is_some()
        || !ns.bytes().all(|b| b.is_ascii_digit())
        || !seq.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let records = records.parse().ok()?;
    let key = decode_key(key)?;
    (!key.is_empty()).then_some((records, oldest, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_keys() {
        let key = "raw/syslog_udp/hour=2023-11-14T22/edge-1_0190-xyz.nlraw.zst";
        let name = format!(
            "{:020}-{:08}-{}-{}_{}{SUFFIX}",
            17,
            3,
            42,
            5,
            encode_key(key)
        );
        assert_eq!(parse_name(&name), Some((42, Some(5), key.to_string())));
        // As an older relay named its files: no oldest receive time.
        let old = format!("{:020}-{:08}-{}_{}{SUFFIX}", 17, 3, 42, encode_key(key));
        assert_eq!(parse_name(&old), Some((42, None, key.to_string())));
        assert_eq!(decode_key("a%25b%2Fc"), Some("a%b/c".to_string()));
        assert_eq!(decode_key("bad%2"), None);
        assert_eq!(parse_name("notes.txt"), None);
        assert_eq!(parse_name("x_y.spool"), None);
    }

    #[test]
    fn write_list_remove_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(Counters::default());
        let spool = Spool::open(dir.path(), 100, counters.clone()).unwrap();
        spool.write("raw/a/1", 1, 10, &[1; 40]).unwrap();
        spool.write("raw/a/2", 2, 20, &[2; 40]).unwrap();
        assert_eq!(
            spool.write("raw/a/3", 3, 30, &[3; 40]),
            Err(DropReason::SpoolFull)
        );
        assert_eq!((spool.files(), spool.bytes()), (2, 80));
        let l = spool.list().unwrap();
        assert_eq!(
            l.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["raw/a/1", "raw/a/2"]
        );
        assert_eq!((l[1].records, l[1].oldest_ns), (2, Some(20)));
        // A second relay cannot take the same spool.
        assert!(matches!(
            Spool::open(dir.path(), 100, counters.clone()),
            Err(RelayError::SpoolLocked(_))
        ));
        spool.remove(&l[0]).unwrap();
        assert_eq!((spool.files(), spool.bytes()), (1, 40));
        drop(spool);
        // A crash mid-write leaves a temp file: removed, never uploaded.
        fs::write(
            dir.path().join(format!(
                "{TMP_PREFIX}00000000000000000001-00000000-1_raw%2Fx{SUFFIX}"
            )),
            b"half",
        )
        .unwrap();
        let spool = Spool::open(dir.path(), 100, counters).unwrap();
        assert_eq!((spool.files(), spool.bytes()), (1, 40));
        assert_eq!(spool.list().unwrap()[0].key, "raw/a/2");
    }
}
