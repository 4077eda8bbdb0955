//! Helpers for natlake's end-to-end tests: run `natlake up` as a real process, wait for
//! conditions with a deadline, locate the shared corpus.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod fixtures;
pub mod weed;

pub use natlake_core::testing::repo_dir;

/// The third-party corpus shared with this workspace (read at test time, never copied):
/// `$NATLAKE_CORPUS`, else `../shared/corpus` beside the repository.
pub fn corpus(file: &str) -> PathBuf {
    let dir = std::env::var_os("NATLAKE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("../shared/corpus"));
    dir.join(file)
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `natlake up` running in a child process on ephemeral ports.
pub struct Up {
    pub child: Child,
    pub data_dir: PathBuf,
    pub syslog_udp: SocketAddr,
    pub http: SocketAddr,
    pub stderr_lines: mpsc::Receiver<String>,
}

impl Up {
    /// Starts `natlake` (the path cargo gives tests as `CARGO_BIN_EXE_natlake`).
    pub fn start(natlake: &Path, data_dir: &Path, batch_age: &str) -> anyhow::Result<Up> {
        Self::start_in(&[], natlake, data_dir, batch_age, &[])
    }

    /// Starts `natlake up` behind a command prefix (e.g. `ip netns exec NS`), with extra flags.
    pub fn start_in(
        prefix: &[&str],
        natlake: &Path,
        data_dir: &Path,
        batch_age: &str,
        extra: &[&str],
    ) -> anyhow::Result<Up> {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(natlake);
                c
            }
            None => Command::new(natlake),
        };
        let mut child = cmd
            .args([
                "up",
                "--syslog-udp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--batch-age",
                batch_age,
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning natlake up")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut udp, mut http) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while udp.is_none() || http.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .context("natlake up did not report its addresses")?;
            if let Some(a) = line.trim().strip_prefix("syslog (UDP):") {
                udp = Some(a.trim().parse()?);
            }
            if let Some(rest) = line.trim().strip_prefix("lookup API:") {
                let host = rest.trim().trim_start_matches("http://");
                http = Some(host.split('/').next().unwrap_or_default().parse()?);
            }
        }
        Ok(Up {
            child,
            data_dir: data_dir.to_path_buf(),
            syslog_udp: udp.expect("udp"),
            http: http.expect("http"),
            stderr_lines: rx,
        })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.http, path_and_query)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("natlake up did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` whose name ends with `suffix`.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs a command, returning stdout; fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}
