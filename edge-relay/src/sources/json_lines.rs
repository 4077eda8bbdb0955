//! JSON lines (goflow2 `-format=json`, conntrack-event-collector, ...): one LF-terminated line is
//! one record, kept byte for byte (without its LF). Nothing is parsed; a line is not even checked
//! to be JSON (the normalizer decides). Three transports:
//!
//! - **TCP** (`json_tcp`): the syslog TCP listener in LF-only mode (same limits and counters).
//! - **stdin** (`json_stdin`).
//! - **a tailed file** (`json_file`), polled every `poll_interval`:
//!   - *rename rotation* (`mv f f.1`, the writer reopens `f` on SIGHUP): when the path names a new
//!     inode, the old file stays open and is read to its end, and for `rotate_wait` more (the
//!     writer keeps appending to it until it reopens), then the new file is read from its start;
//!   - *copy-truncate rotation*: a file shorter than the read position is read again from its start;
//!   - a **checkpoint** `json-file-<name>.checkpoint` in the spool directory records
//!     `(device, inode, offset of the end of the last complete line handed to the batcher)`.
//!     It is rewritten (atomically, temp + rename) after every read that completed lines, and
//!     fsynced at stop. A restart resumes there — also when the file was rotated meanwhile: the
//!     old inode is looked up in the same directory and finished first. A graceful restart
//!     neither loses nor re-reads a line. After `kill -9`, lines handed to the batcher but not
//!     yet spooled are lost with the open batch, as for every input (see the README's loss
//!     window); the file is never read twice.
//!   - The queue to the batcher is never a reason to drop here: the file is the buffer, so the
//!     tailer waits for room (back-pressure) instead.
//!   - A line longer than `max_line` is skipped and counted as `frame_too_large`; a last line
//!     without LF is held until its LF arrives (or, in a rotated-away file, taken as is).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use natlake_raw::InputKind;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::tcp_syslog::{Event, Framer};
use crate::batch::{Chunk, QueueTx};
use crate::config::{JsonFileSourceConfig, JsonStdinSourceConfig};
use crate::{Counters, DropReason, RateLimit, now_ns};

const READ_SIZE: usize = 256 * 1024;

static TOO_LONG_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));
static IO_LOG: RateLimit = RateLimit::new(Duration::from_secs(10));

fn received(counters: &Counters, m: &::metrics::Counter, b: &::metrics::Counter, chunk: &Chunk) {
    let (msgs, bytes) = (chunk.len() as u64, chunk.data.len() as u64);
    counters
        .received_messages
        .fetch_add(msgs, Ordering::Relaxed);
    counters.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    m.increment(msgs);
    b.increment(bytes);
}

fn too_long(counters: &Counters, name: &str, len: usize, max: usize) {
    counters.count_drop(
        DropReason::FrameTooLarge,
        InputKind::JsonLines,
        1,
        len as u64,
    );
    if let Some(suppressed) = TOO_LONG_LOG.allow() {
        tracing::warn!(
            source = name,
            len,
            max_line = max,
            suppressed,
            "line longer than max_line skipped (counted as frame_too_large)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// stdin

pub(crate) fn start_stdin(
    cfg: &JsonStdinSourceConfig,
    name: String,
    queue: QueueTx,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let max = cfg.max_line.0 as usize;
    tokio::spawn(async move {
        let m = ::metrics::counter!("edge_relay_received_messages_total", "source" => name.clone(), "kind" => "json_lines");
        let b = ::metrics::counter!("edge_relay_received_bytes_total", "source" => name.clone(), "kind" => "json_lines");
        let mut stdin = tokio::io::stdin();
        let mut framer = Framer::lf_only(max);
        let mut rbuf = vec![0u8; 64 * 1024];
        let mut eof = false;
        while !eof {
            let n = tokio::select! {
                _ = super::stopped(&mut stop) => break,
                r = stdin.read(&mut rbuf) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(source = %name, error = %e, "reading stdin failed; the source stops");
                        0
                    }
                },
            };
            let now = now_ns();
            let mut chunk = Chunk::new(InputKind::JsonLines);
            let mut on = |ev: Event<'_>| match ev {
                Event::Frame(f) => chunk.push(now, None, f),
                Event::TooLarge(len) | Event::Incomplete(len) => {
                    too_long(&counters, &name, len, max)
                }
            };
            if n == 0 {
                eof = true;
                framer.finish(&mut on);
            } else {
                framer.feed(&rbuf[..n], &mut on);
            }
            if !chunk.is_empty() {
                received(&counters, &m, &b, &chunk);
                // Stdin can wait: the writer is held back by the pipe meanwhile.
                queue
                    .push_wait(chunk, Duration::from_secs(3600), &name)
                    .await;
            }
        }
        if eof {
            tracing::info!(source = %name, "stdin closed");
        }
    })
}

// ---------------------------------------------------------------------------------------------
// tailed file

/// Where the tailer is: a file identity and the offset just after the last complete line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

impl Checkpoint {
    fn parse(s: &str) -> Option<Self> {
        let mut it = s.split_whitespace();
        let v = it.next()?;
        if v != "v1" {
            return None;
        }
        Some(Self {
            dev: it.next()?.parse().ok()?,
            ino: it.next()?.parse().ok()?,
            offset: it.next()?.parse().ok()?,
        })
    }

    fn load(path: &Path) -> Option<Self> {
        let s = fs::read_to_string(path).ok()?;
        let c = Self::parse(&s);
        if c.is_none() {
            tracing::warn!(file = %path.display(), "ignoring an unreadable checkpoint");
        }
        c
    }

    fn store(&self, path: &Path, sync: bool) -> io::Result<()> {
        let tmp = path.with_extension("checkpoint-tmp");
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "v1 {} {} {}", self.dev, self.ino, self.offset)?;
            if sync {
                f.sync_all()?;
            }
        }
        fs::rename(&tmp, path)?;
        if sync && let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The checkpoint file of a `json_file` source in the spool directory.
pub fn checkpoint_path(spool_dir: &Path, source_name: &str) -> PathBuf {
    let safe: String = source_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    spool_dir.join(format!("json-file-{safe}.checkpoint"))
}

pub(crate) fn start_file(
    cfg: &JsonFileSourceConfig,
    name: String,
    spool_dir: &Path,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let ckpt = checkpoint_path(spool_dir, &name);
    let t = Tailer {
        path: cfg.path.clone(),
        max_line: cfg.max_line.0 as usize,
        poll: cfg.poll_interval,
        rotate_wait: cfg.rotate_wait,
        received: ::metrics::counter!("edge_relay_received_messages_total", "source" => name.clone(), "kind" => "json_lines"),
        received_bytes: ::metrics::counter!("edge_relay_received_bytes_total", "source" => name.clone(), "kind" => "json_lines"),
        name,
        ckpt_path: ckpt,
        saved: None,
        queue,
        counters,
        stop,
        cur: None,
    };
    std::thread::Builder::new()
        .name("relay-json-file".into())
        .spawn(move || t.run())
}

struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes read from the file so far.
    read_pos: u64,
    /// Offset just after the last complete line (what the checkpoint stores).
    committed: u64,
    /// Bytes after the last LF, waiting for theirs.
    pending: Vec<u8>,
    /// Inside an over-long line: discard up to the next LF.
    skipping: bool,
    /// When the path was first seen naming another file.
    rotated_at: Option<Instant>,
}

impl OpenFile {
    fn open(path: &Path, offset: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let md = file.metadata()?;
        let offset = if md.len() < offset { 0 } else { offset };
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            file,
            dev: md.dev(),
            ino: md.ino(),
            read_pos: offset,
            committed: offset,
            pending: Vec::new(),
            skipping: false,
            rotated_at: None,
        })
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            dev: self.dev,
            ino: self.ino,
            offset: self.committed,
        }
    }
}

struct Tailer {
    path: PathBuf,
    name: String,
    max_line: usize,
    poll: Duration,
    rotate_wait: Duration,
    ckpt_path: PathBuf,
    saved: Option<Checkpoint>,
    queue: QueueTx,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    cur: Option<OpenFile>,
    received: ::metrics::Counter,
    received_bytes: ::metrics::Counter,
}

/// Finds the file with this identity in `dir` (a rotated file, renamed next to the path).
fn find_inode(dir: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let md = e.metadata().ok()?;
        (md.is_file() && md.dev() == dev && md.ino() == ino).then(|| e.path())
    })
}

impl Tailer {
    fn run(mut self) {
        self.resume();
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if self.cur.is_none() {
                match OpenFile::open(&self.path, 0) {
                    Ok(f) => {
                        tracing::info!(source = %self.name, file = %self.path.display(), "tailing from the start");
                        self.cur = Some(f);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => self.io_error("open", &e),
                }
            }
            if self.cur.is_some() {
                self.read_to_end(&mut buf);
                self.check_rotation();
            }
            self.save_checkpoint(stopping);
            if stopping {
                return;
            }
            // Wait one poll interval (waking early on stop).
            let until = Instant::now() + self.poll;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(self.poll.min(Duration::from_millis(50)));
            }
        }
    }

    /// Opens where the checkpoint says (finishing a file rotated away while we were down).
    fn resume(&mut self) {
        let Some(c) = Checkpoint::load(&self.ckpt_path) else {
            return;
        };
        self.saved = Some(c);
        let same = fs::metadata(&self.path)
            .map(|m| m.dev() == c.dev && m.ino() == c.ino)
            .unwrap_or(false);
        let target = if same {
            Some(self.path.clone())
        } else {
            let dir = self
                .path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            find_inode(dir, c.dev, c.ino)
        };
        match target {
            Some(p) => match OpenFile::open(&p, c.offset) {
                Ok(mut f) => {
                    if f.committed != c.offset {
                        tracing::warn!(source = %self.name, file = %p.display(), offset = c.offset,
                            "file is shorter than the checkpoint (truncated): reading it from the start");
                    }
                    if !same {
                        tracing::info!(source = %self.name, file = %p.display(),
                            "the file was rotated while stopped: finishing the old one first");
                        f.rotated_at = Some(Instant::now());
                    }
                    tracing::info!(source = %self.name, file = %p.display(), offset = f.committed, "resuming from the checkpoint");
                    self.cur = Some(f);
                }
                Err(e) => self.io_error("reopen", &e),
            },
            None => tracing::warn!(source = %self.name, file = %self.path.display(),
                "the checkpointed file is gone (rotated and deleted while stopped); its unread lines are lost; starting the current file from its start"),
        }
    }

    fn io_error(&self, what: &str, e: &io::Error) {
        if let Some(suppressed) = IO_LOG.allow() {
            tracing::error!(source = %self.name, file = %self.path.display(), error = %e, suppressed, "{what} failed");
        }
    }

    /// Reads the current file to its end, handing complete lines to the batcher.
    fn read_to_end(&mut self, buf: &mut [u8]) {
        loop {
            let Some(f) = self.cur.as_mut() else {
                return;
            };
            let n = match f.file.read(buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.io_error("read", &e);
                    return;
                }
            };
            let now = now_ns();
            let mut chunk = Chunk::new(InputKind::JsonLines);
            let mut dropped = Vec::new();
            let data = &buf[..n];
            let mut start = 0;
            let base = f.read_pos;
            for (i, &b) in data.iter().enumerate() {
                if b != b'\n' {
                    continue;
                }
                let piece = &data[start..i];
                if f.skipping {
                    f.skipping = false;
                } else if f.pending.len() + piece.len() > self.max_line {
                    dropped.push(f.pending.len() + piece.len());
                    f.pending.clear();
                } else if f.pending.is_empty() {
                    push_line(&mut chunk, now, piece);
                } else {
                    f.pending.extend_from_slice(piece);
                    push_line(&mut chunk, now, &f.pending);
                    f.pending.clear();
                }
                start = i + 1;
                f.committed = base + start as u64;
            }
            let tail = &data[start..];
            if !f.skipping {
                if f.pending.len() + tail.len() > self.max_line {
                    dropped.push(f.pending.len() + tail.len());
                    f.pending.clear();
                    f.skipping = true;
                } else {
                    f.pending.extend_from_slice(tail);
                }
            }
            f.read_pos += n as u64;
            for len in dropped {
                too_long(&self.counters, &self.name, len, self.max_line);
            }
            self.deliver(chunk);
        }
    }

    /// Hands a chunk over, waiting for room: the file is the buffer, so nothing is dropped here
    /// (except after 60 s of a stuck batcher while stopping).
    fn deliver(&self, mut chunk: Chunk) {
        if chunk.is_empty() {
            return;
        }
        received(&self.counters, &self.received, &self.received_bytes, &chunk);
        let mut pause = Duration::from_millis(1);
        let mut stopping_since: Option<Instant> = None;
        loop {
            match self.queue.try_push(chunk) {
                Ok(()) => return,
                Err(c) => chunk = c,
            }
            self.queue.hold(&mut chunk);
            if self.stop.load(Ordering::Relaxed) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    let _ = self.queue.push_or_drop(chunk, &self.name);
                    return;
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn check_rotation(&mut self) {
        let Some(f) = self.cur.as_mut() else {
            return;
        };
        match fs::metadata(&self.path) {
            Ok(md) if md.dev() == f.dev && md.ino() == f.ino => {
                if md.len() < f.read_pos {
                    tracing::warn!(source = %self.name, file = %self.path.display(), was = f.read_pos, now = md.len(),
                        "file truncated (copy-truncate rotation): reading it again from the start");
                    if let Err(e) = f.file.seek(SeekFrom::Start(0)) {
                        self.io_error("seek", &e);
                        return;
                    }
                    f.read_pos = 0;
                    f.committed = 0;
                    f.pending.clear();
                    f.skipping = false;
                }
            }
            Ok(_) => {
                // The path names another file: the old one was renamed. It has been read to its
                // end just now; give the writer `rotate_wait` to reopen, then switch.
                let since = *f.rotated_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.rotate_wait {
                    let mut chunk = Chunk::new(InputKind::JsonLines);
                    if !f.skipping && !f.pending.is_empty() {
                        push_line(&mut chunk, now_ns(), &f.pending);
                    }
                    self.deliver(chunk);
                    match OpenFile::open(&self.path, 0) {
                        Ok(nf) => {
                            tracing::info!(source = %self.name, file = %self.path.display(), "rotated: now reading the new file");
                            self.cur = Some(nf);
                        }
                        Err(e) => {
                            self.io_error("open after rotation", &e);
                            self.cur = None;
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Renamed and not yet recreated: keep reading the old file.
                f.rotated_at.get_or_insert_with(Instant::now);
            }
            Err(e) => self.io_error("stat", &e),
        }
    }

    fn save_checkpoint(&mut self, sync: bool) {
        let Some(c) = self.cur.as_ref().map(|f| f.checkpoint()) else {
            return;
        };
        if self.saved == Some(c) && !sync {
            return;
        }
        match c.store(&self.ckpt_path, sync) {
            Ok(()) => self.saved = Some(c),
            Err(e) => self.io_error("writing the checkpoint", &e),
        }
    }
}

fn push_line(chunk: &mut Chunk, now: i64, line: &[u8]) {
    // A CRLF writer: the CR is not part of the JSON.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.is_empty() {
        chunk.push(now, None, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_rejects_junk() {
        let c = Checkpoint {
            dev: 1,
            ino: 2,
            offset: 3,
        };
        assert_eq!(Checkpoint::parse("v1 1 2 3\n"), Some(c));
        assert_eq!(Checkpoint::parse("v2 1 2 3"), None);
        assert_eq!(Checkpoint::parse("v1 1 x 3"), None);
        assert_eq!(Checkpoint::parse(""), None);
        assert_eq!(
            checkpoint_path(Path::new("/s"), "json_file@/var/log/g.log"),
            PathBuf::from("/s/json-file-json_file__var_log_g.log.checkpoint")
        );
    }
}
