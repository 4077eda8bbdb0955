//! Prometheus metrics (through the `metrics` facade) and the `/metrics` listener.
//!
//! Metric names (all prefixed `edge_relay_`):
//! - `received_messages_total`, `received_bytes_total` {source, kind}
//! - `dropped_messages_total`, `dropped_bytes_total` {reason, kind}
//! - `tcp_connections` {source} (gauge), `tcp_connections_refused_total` {source}
//! - `tls_handshakes_total` {source}, `tls_handshake_failures_total`
//!   {source, reason = error | timeout | plaintext}
//! - `batches_closed_total` {kind, reason = size | age | flush}
//! - `batches_uploaded_total`, `uploaded_bytes_total`, `upload_errors_total`,
//!   `upload_duration_seconds` (histogram)
//! - `spool_files`, `spool_bytes` (gauges)
//! - `udp_kernel_drops` {source}: the kernel's receive-buffer drop counter of our sockets, read
//!   from `/proc/net/udp` and `/proc/net/udp6`
//!
//! When a relay is given a metrics address and no global recorder exists yet, it installs a
//! Prometheus recorder and serves it over a minimal HTTP/1.1 responder (`GET /metrics`). An
//! embedding program that installed its own recorder gets the same metrics through it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Counters;
use crate::spool::Spool;

const TICK: Duration = Duration::from_secs(5);

pub(crate) struct MetricsTask {
    addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl MetricsTask {
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use. `None` when another
/// recorder was installed first.
pub fn prometheus_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("edge_relay_upload_duration_seconds".into()),
                    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
                )
                .expect("non-empty buckets");
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics is not served by the relay");
                    None
                }
            }
        })
        .clone()
}

/// Starts the periodic collector (kernel drops, spool gauges, recorder upkeep) and, when an
/// address is given, the `/metrics` listener.
pub(crate) async fn start(
    addr: Option<SocketAddr>,
    udp_inodes: Vec<(String, u64)>,
    counters: Arc<Counters>,
    spool: Arc<Spool>,
) -> std::io::Result<MetricsTask> {
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let handle = if addr.is_some() {
        prometheus_handle()
    } else {
        None
    };
    let mut bound = None;
    if let (Some(addr), Some(h)) = (addr, handle.clone()) {
        let listener = TcpListener::bind(addr).await?;
        bound = Some(listener.local_addr()?);
        tracing::info!(addr = %bound.expect("just bound"), "serving Prometheus metrics on /metrics");
        tasks.push(tokio::spawn(serve(listener, h, stop_rx.clone())));
    }
    tasks.push(tokio::spawn(collect(
        udp_inodes, counters, spool, handle, stop_rx,
    )));
    Ok(MetricsTask {
        addr: bound,
        stop,
        tasks,
    })
}

async fn collect(
    udp_inodes: Vec<(String, u64)>,
    counters: Arc<Counters>,
    spool: Arc<Spool>,
    handle: Option<PrometheusHandle>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::sources::stopped(&mut stop) => break,
            _ = tick.tick() => {}
        }
        if !udp_inodes.is_empty() {
            let (inodes, c) = (udp_inodes.clone(), counters.clone());
            let _ = tokio::task::spawn_blocking(move || refresh_kernel_drops(&inodes, &c)).await;
        }
        ::metrics::gauge!("edge_relay_spool_files").set(spool.files() as f64);
        ::metrics::gauge!("edge_relay_spool_bytes").set(spool.bytes() as f64);
        if let Some(h) = &handle {
            h.run_upkeep();
        }
    }
}

/// Reads the kernel drop counters of our UDP sockets into the metrics and the relay's counters.
pub(crate) fn refresh_kernel_drops(udp_inodes: &[(String, u64)], counters: &Counters) {
    let mut total = 0;
    for (source, n) in kernel_udp_drops(udp_inodes) {
        ::metrics::counter!("edge_relay_udp_kernel_drops", "source" => source).absolute(n);
        total += n;
    }
    counters.kernel_drops.store(total, Ordering::Relaxed);
}

/// Kernel drop counters per source for the given socket inodes (sources whose sockets could not
/// be found are absent).
pub fn kernel_udp_drops(inodes: &[(String, u64)]) -> HashMap<String, u64> {
    let mut by_inode = HashMap::new();
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            by_inode.extend(parse_proc_net_udp(&text));
        }
    }
    let mut out = HashMap::new();
    for (source, inode) in inodes {
        if let Some(d) = by_inode.get(inode) {
            *out.entry(source.clone()).or_insert(0) += d;
        }
    }
    out
}

/// `inode → drops` from the text of `/proc/net/udp{,6}`.
pub fn parse_proc_net_udp(text: &str) -> HashMap<u64, u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            let inode = f.get(9)?.parse().ok()?;
            let drops = f.get(12)?.parse().ok()?;
            Some((inode, drops))
        })
        .collect()
}

async fn serve(listener: TcpListener, handle: PrometheusHandle, mut stop: watch::Receiver<bool>) {
    loop {
        let (mut sock, _) = tokio::select! {
            _ = crate::sources::stopped(&mut stop) => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let mut req = Vec::with_capacity(1024);
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = req.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or(&[]);
                let mut parts = line.split(|&b| b == b' ');
                let (method, path) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
                let path = path.split(|&b| b == b'?').next().unwrap_or(&[]);
                let (status, ctype, body) = if method != b"GET" && method != b"HEAD" {
                    ("405 Method Not Allowed", "text/plain", "method not allowed\n".to_string())
                } else if path == b"/metrics" {
                    ("200 OK", "text/plain; version=0.0.4", handle.render())
                } else if path == b"/" || path == b"/health" {
                    ("200 OK", "text/plain", "edge-relay: see /metrics\n".to_string())
                } else {
                    ("404 Not Found", "text/plain", "not found\n".to_string())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                if method != b"HEAD" {
                    let _ = sock.write_all(body.as_bytes()).await;
                }
                let _ = sock.shutdown().await;
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_udp() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
          1: 00000000:0202 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 17\n\
          2: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 999 2 0000000000000000 0\n";
        let m = parse_proc_net_udp(text);
        assert_eq!(m.get(&12345), Some(&17));
        assert_eq!(m.get(&999), Some(&0));
        assert_eq!(m.len(), 2);
    }
}
