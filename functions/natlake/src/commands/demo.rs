//! `natlake demo`: the embedded stack on a fresh directory, a few real-format NAT events sent
//! over UDP syslog, and a real lookup answer — the quickest proof the path works end to end.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::up::{Args as UpArgs, Stack};

#[derive(clap::Args)]
pub struct Args {
    /// Keep the data here (default: a new temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Sample events in three formats natlake reads, stamped around `now` (seconds). Addresses are
/// from the documentation and shared-address ranges (RFC 5737, RFC 6598).
pub fn sample_messages(now: f64) -> Vec<String> {
    let t = |off: f64| now + off;
    let ts = |off: f64| natlake_core::time::format_time((t(off) * 1e6) as i64);
    vec![
        // conntrack -E -o timestamp,extended inside an RFC 5424 message
        format!(
            "<134>1 {} cgn-1 conntrack - - - [{:.6}]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.0.10 dst=203.0.113.5 sport=40001 dport=443 [UNREPLIED] src=203.0.113.5 dst=198.51.100.20 sport=443 dport=61001",
            ts(-30.0),
            t(-30.0)
        ),
        format!(
            "<134>1 {} cgn-1 conntrack - - - [{:.6}]\t[DESTROY] ipv4     2 tcp      6 src=100.64.0.10 dst=203.0.113.5 sport=40001 dport=443 packets=12 bytes=2048 src=203.0.113.5 dst=198.51.100.20 sport=443 dport=61001 packets=10 bytes=9000 [ASSURED]",
            ts(-10.0),
            t(-10.0)
        ),
        // the same public port reused by another subscriber afterwards
        format!(
            "<134>1 {} cgn-1 conntrack - - - [{:.6}]\t    [NEW] ipv4     2 udp      17 30 src=100.64.0.11 dst=203.0.113.9 sport=5353 dport=53 [UNREPLIED] src=203.0.113.9 dst=198.51.100.20 sport=53 dport=61001",
            ts(-5.0),
            t(-5.0)
        ),
        // goflow2 JSON with post-NAT fields, as a bare line
        format!(
            r#"{{"type":"IPFIX","time_received_ns":{r},"sampler_address":"192.0.2.1","time_flow_start_ns":{s},"time_flow_end_ns":{e},"bytes":1500,"packets":3,"src_addr":"100.64.0.12","dst_addr":"203.0.113.7","proto":"TCP","src_port":50000,"dst_port":80,"post_nat_src_ipv4_address":"198.51.100.21","post_nat_src_transport_port":62000}}"#,
            r = (t(-1.0) * 1e9) as i64,
            s = (t(-20.0) * 1e9) as i64,
            e = (t(-2.0) * 1e9) as i64
        ),
    ]
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (dir, _tmp) = match args.data_dir {
        Some(d) => (d, None),
        None => {
            let tmp = tempfile::tempdir()?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let up = UpArgs {
        data_dir: dir.clone(),
        syslog_udp: "127.0.0.1:0".parse()?,
        http: "127.0.0.1:0".parse()?,
        batch_age: Duration::from_secs(1),
        format: "auto".into(),
        compact_every: Duration::from_secs(300),
        deterministic: None,
        conntrack: false,
        enrich_config: None,
        time_zones: Default::default(),
    };
    let stack = Stack::start(&up).await?;
    let now = natlake_core::time::now_micros() as f64 / 1e6;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let msgs = sample_messages(now);
    for m in &msgs {
        sock.send_to(m.as_bytes(), stack.syslog_udp).await?;
    }
    eprintln!(
        "demo: sent {} events to {} (data in {})",
        msgs.len(),
        stack.syslog_udp,
        dir.display()
    );
    // Datagrams can still sit in the socket or the relay's queue: flush once all arrived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.relay.stats().received_messages < msgs.len() as u64
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.relay.flush_now().await?;
    stack.relay.wait_uploaded(Duration::from_secs(30)).await?;
    wait_normalized(&stack, Duration::from_secs(30)).await?;

    let at = natlake_core::time::format_time(((now - 20.0) * 1e6) as i64);
    let url = format!(
        "http://{}/v1/attribution?ip=198.51.100.20&port=61001&at={at}&proto=tcp",
        stack.http
    );
    eprintln!("demo: GET {url}");
    let body = http_get(&url).await?;
    println!("{body}");
    stack.stop().await
}

/// Waits until every raw object in the store has its done-marker.
pub async fn wait_normalized(stack: &Stack, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let store = &stack.normalizer.store;
    loop {
        let keys = natlake_normalize::scan::raw_keys(store, "raw", None, None).await?;
        let mut pending = 0;
        for k in &keys {
            if !natlake_normalize::handler::is_done(store, k).await? {
                pending += 1;
            }
        }
        if !keys.is_empty() && pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{pending} raw objects still not normalized after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn http_get(url: &str) -> anyhow::Result<String> {
    let resp = reqwest::get(url)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    anyhow::ensure!(status.is_success(), "lookup failed: {status}: {body}");
    let json: serde_json::Value =
        serde_json::from_str(&body).context("lookup answer is not JSON")?;
    Ok(serde_json::to_string_pretty(&json)?)
}
