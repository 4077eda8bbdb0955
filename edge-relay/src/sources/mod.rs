//! Inputs. Each source turns what it receives into [`crate::batch::Chunk`]s for the batcher.

pub mod tcp_syslog;
pub mod udp_syslog;

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
        let result = match cfg {
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
                s.addr
            }),
            SourceConfig::SyslogTcp(t) => tcp_syslog::start(
                t,
                name.clone(),
                queue.clone(),
                counters.clone(),
                stop.subscribe(),
            )
            .await
            .map(|(addr, task)| {
                running.tasks.push(SourceTask::Task(task));
                addr
            }),
        };
        match result {
            Ok(addr) => bound.push(BoundSource { name, kind, addr }),
            Err(source) => {
                stop.stop_all(std::mem::take(&mut running.tasks)).await;
                return Err(RelayError::Bind {
                    kind,
                    name,
                    addr: cfg.address(),
                    source,
                });
            }
        }
    }
    Ok((bound, running))
}
