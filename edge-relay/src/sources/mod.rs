//! Inputs. Each source turns what it receives into [`crate::batch::Chunk`]s for the batcher.

pub mod conntrack;
pub mod flow_udp;
pub mod json_lines;
pub mod tcp_syslog;
pub mod udp_syslog;
pub(crate) mod udp_uring;

use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::batch::QueueTx;
use crate::config::SourceConfig;
use crate::{BoundSource, Counters, RelayError};

/// Tells every source to stop.
pub(crate) struct Stop {
    flag: Arc<AtomicBool>,
    tx: watch::Sender<bool>,
}

pub(crate) enum SourceTask {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

pub(crate) struct Running {
    pub tasks: Vec<SourceTask>,
    /// `(source name, socket inode)` of every UDP socket, for kernel drop counters.
    pub udp_inodes: Vec<(String, u64)>,
}

impl Drop for Stop {
    /// A relay dropped without `shutdown` still stops its sources (and so, in turn, the batcher).
    fn drop(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.tx.send(true);
    }
}

impl Stop {
    pub fn new() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            tx: watch::channel(false).0,
        }
    }

    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Signals stop and waits for the sources to hand over what they hold.
    pub async fn stop_all(&self, tasks: Vec<SourceTask>) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.tx.send(true);
        for t in tasks {
            match t {
                SourceTask::Thread(h) => {
                    let _ = tokio::task::spawn_blocking(move || h.join()).await;
                }
                SourceTask::Task(h) => {
                    let abort = h.abort_handle();
                    if tokio::time::timeout(Duration::from_secs(10), h)
                        .await
                        .is_err()
                    {
                        tracing::warn!("a source did not stop within 10s; aborting it");
                        abort.abort();
                    }
                }
            }
        }
    }
}

/// Resolves once `stop` says so (or its sender is gone). Holds no guard across awaits.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Binds and starts every configured source. On error, what was started is stopped again.
pub(crate) async fn start_all(
    cfgs: &[SourceConfig],
    spool_dir: &Path,
    queue: &QueueTx,
    counters: &Arc<Counters>,
    stop: &Stop,
) -> Result<(Vec<BoundSource>, Running), RelayError> {
    let mut bound = Vec::new();
    let mut running = Running {
        tasks: Vec::new(),
        udp_inodes: Vec::new(),
    };
    for cfg in cfgs {
        let name = cfg.name();
        let kind = cfg.kind();
        let result: std::io::Result<Option<std::net::SocketAddr>> = match cfg {
            SourceConfig::SyslogUdp(u) => udp_syslog::start(
                u,
                name.clone(),
                queue.clone(),
                counters.clone(),
                stop.flag(),
            )
            .map(|s| {
                running
                    .udp_inodes
                    .extend(s.inodes.into_iter().map(|i| (name.clone(), i)));
                running
                    .tasks
                    .extend(s.threads.into_iter().map(SourceTask::Thread));
                Some(s.addr)
            }),
            SourceConfig::SyslogTcp(t) | SourceConfig::JsonTcp(t) => {
                let mode = if matches!(cfg, SourceConfig::JsonTcp(_)) {
                    tcp_syslog::Mode::JSON_LINES
                } else {
                    tcp_syslog::Mode::SYSLOG
                };
                tcp_syslog::start(
                    t,
                    mode,
                    name.clone(),
                    queue.clone(),
                    counters.clone(),
                    stop.subscribe(),
                )
                .await
                .map(|(addr, task)| {
                    running.tasks.push(SourceTask::Task(task));
                    Some(addr)
                })
            }
            SourceConfig::IpfixUdp(f) | SourceConfig::NetflowUdp(f) => flow_udp::start(
                f,
                name.clone(),
                queue.clone(),
                counters.clone(),
                stop.flag(),
            )
            .map(|s| {
                running.udp_inodes.push((name.clone(), s.inode));
                running.tasks.push(SourceTask::Thread(s.thread));
                Some(s.addr)
            }),
            SourceConfig::Conntrack(c) => conntrack::start(
                c,
                name.clone(),
                queue.clone(),
                counters.clone(),
                stop.flag(),
            )
            .map(|t| {
                running.tasks.push(SourceTask::Thread(t));
                None
            }),
            SourceConfig::JsonFile(f) => json_lines::start_file(
                f,
                name.clone(),
                spool_dir,
                queue.clone(),
                counters.clone(),
                stop.flag(),
            )
            .map(|t| {
                running.tasks.push(SourceTask::Thread(t));
                None
            }),
            SourceConfig::JsonStdin(f) => Ok(json_lines::start_stdin(
                f,
                name.clone(),
                queue.clone(),
                counters.clone(),
                stop.subscribe(),
            ))
            .map(|t| {
                running.tasks.push(SourceTask::Task(t));
                None
            }),
        };
        match result {
            Ok(addr) => bound.push(BoundSource { name, kind, addr }),
            Err(source) => {
                stop.stop_all(std::mem::take(&mut running.tasks)).await;
                return Err(RelayError::Bind {
                    kind,
                    name,
                    endpoint: cfg.endpoint(),
                    source,
                });
            }
        }
    }
    Ok((bound, running))
}

/// SO_RCVBUFFORCE when we may (CAP_NET_ADMIN), else SO_RCVBUF (capped by net.core.rmem_max);
/// warns when the kernel granted less than asked.
pub(crate) fn set_receive_buffer(fd: RawFd, want: usize, name: &str) {
    let v = want.min(i32::MAX as usize / 2) as libc::c_int;
    let set = |opt| {
        // SAFETY: setsockopt with a valid fd and an int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    };
    let forced = set(libc::SO_RCVBUFFORCE);
    if !forced && !set(libc::SO_RCVBUF) {
        tracing::warn!(source = name, error = %std::io::Error::last_os_error(), "cannot set the receive buffer");
    }
    let mut got: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into an int of the stated size.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    // Linux reports twice the requested size (bookkeeping overhead included).
    let got = (got.max(0) as usize) / 2;
    if got + 4096 < want {
        tracing::warn!(
            source = name,
            wanted = want,
            got,
            "receive buffer is smaller than configured: raise net.core.rmem_max (sysctl) or grant CAP_NET_ADMIN"
        );
    } else {
        tracing::debug!(source = name, bytes = got, forced, "receive buffer set");
    }
}

pub(crate) fn socket_inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat on a valid fd into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino as u64)
}
