//! IPFIX / NetFlow v9 over UDP with the real export packets of the shared corpus
//! (`../shared/corpus/bin/logstash-codec-netflow`, read at test time, never copied here).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use edge_relay::templates::{self, TemplateOp};
use edge_relay::{DropReason, FlowSourceConfig, InputKind, Relay, RelayConfig, SourceConfig};
use natlake_raw::Record;
use support::*;

/// Exporters of the corpus: (template files, data files).
const EXPORTERS: &[(&[&str], &[&str])] = &[
    (
        &["ipfix_test_mikrotik_tpl.dat"],
        &[
            "ipfix_test_mikrotik_data258.dat",
            "ipfix_test_mikrotik_data259.dat",
        ],
    ),
    (
        &["ipfix_test_nokia_bras_tpl.dat"],
        &["ipfix_test_nokia_bras_data256.dat"],
    ),
    (
        &["netflow9_test_cisco_asa_1_tpl.dat"],
        &["netflow9_test_cisco_asa_1_data.dat"],
    ),
    (
        &[
            "netflow9_test_cisco_asa_2_tpl_26x.dat",
            "netflow9_test_cisco_asa_2_tpl_27x.dat",
        ],
        &["netflow9_test_cisco_asa_2_data.dat"],
    ),
    (
        &["netflow9_test_cisco_asr9k_tpl260.dat"],
        &["netflow9_test_cisco_asr9k_data260.dat"],
    ),
    (
        &["netflow9_test_fortigate_fortios_542_appid_tpl258-269.dat"],
        &["netflow9_test_fortigate_fortios_542_appid_data258_262.dat"],
    ),
    (
        &["netflow9_test_paloalto_panos_tpl.dat"],
        &["netflow9_test_paloalto_panos_data.dat"],
    ),
    (
        &["netflow9_test_paloalto_81_tpl256-263.dat"],
        &["netflow9_test_paloalto_81_data257_1flowset_in_large_zerofilled_packet.dat"],
    ),
];

fn read(name: &str) -> Vec<u8> {
    let p = corpus_bin().join("logstash-codec-netflow").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Template id → (is options, fixed record length or None when a field is variable-length).
fn templates_of(pkt: &[u8]) -> BTreeMap<u16, Option<usize>> {
    let h = templates::header(pkt).unwrap();
    let (tpl, opt) = if h.version == 10 { (2, 3) } else { (0, 1) };
    let mut out = BTreeMap::new();
    let issue = templates::walk_sets(pkt, &h, |id, body| {
        if id != tpl && id != opt {
            return;
        }
        let ok = templates::template_records(h.version, id == opt, body, |op| {
            if let TemplateOp::Define(t, options, rec) = op {
                out.insert(t, record_len(h.version, options, rec));
            }
        });
        assert!(ok, "malformed template record in a context packet");
    });
    assert_eq!(issue, None, "context packet is not well framed");
    out
}

/// Length of one data record described by a template record (None if variable).
fn record_len(version: u16, options: bool, rec: &[u8]) -> Option<usize> {
    let be = |i: usize| u16::from_be_bytes([rec[i], rec[i + 1]]) as usize;
    let mut total = 0;
    if version == 10 {
        let count = be(2);
        let mut p = if options { 6 } else { 4 };
        for _ in 0..count {
            let ie = be(p);
            let len = be(p + 2);
            if len == 0xffff {
                return None;
            }
            total += len;
            p += if ie & 0x8000 != 0 { 8 } else { 4 };
        }
    } else {
        let fields = if options { (be(2) + be(4)) / 4 } else { be(2) };
        let start = if options { 6 } else { 4 };
        for i in 0..fields {
            total += be(start + 4 * i + 2);
        }
    }
    Some(total)
}

/// Data set ids with their body lengths.
fn data_sets(pkt: &[u8]) -> Vec<(u16, usize)> {
    let h = templates::header(pkt).unwrap();
    let mut out = Vec::new();
    templates::walk_sets(pkt, &h, |id, body| {
        if id >= 256 {
            out.push((id, body.len()));
        }
    });
    out
}

fn domain_of(pkt: &[u8]) -> (u16, u32) {
    let h = templates::header(pkt).unwrap();
    (h.version, h.domain)
}

fn flow_config(store: &std::path::Path, spool: &std::path::Path) -> RelayConfig {
    let mut cfg = RelayConfig::new(natlake_store::dir_url(store).unwrap(), spool);
    cfg.relay_id = Some("flow-relay".into());
    cfg.batch.max_age = Duration::from_secs(3600);
    cfg.sink.retry_initial = Duration::from_millis(20);
    cfg.sink.retry_max = Duration::from_millis(200);
    cfg.sources
        .push(SourceConfig::IpfixUdp(FlowSourceConfig::new(
            "127.0.0.1:0".parse().unwrap(),
        )));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_exports_are_kept_raw_and_every_batch_carries_its_templates() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let relay = Relay::start(flow_config(store.path(), spool.path()))
        .await
        .unwrap();
    let to = relay.local_addr(InputKind::Ipfix).unwrap();

    // One socket per exporter, each from its own loopback address (exporters are told apart
    // by address, as in the field).
    let socks: Vec<UdpSocket> = (0..EXPORTERS.len())
        .map(|i| UdpSocket::bind(format!("127.0.0.{}:0", i + 2)).unwrap())
        .collect();
    let mut sent = 0u64;
    let send = |i: usize, pkt: &[u8], sent: &mut u64| {
        socks[i].send_to(pkt, to).unwrap();
        *sent += 1;
    };

    // 1. Template packets, in a batch of their own.
    for (i, (tpls, _)) in EXPORTERS.iter().enumerate() {
        for t in *tpls {
            send(i, &read(t), &mut sent);
        }
        // Keep the burst small (the kernel buffer may be small without CAP_NET_ADMIN).
        wait_for("the template packets", || {
            relay.stats().received_messages >= sent
        })
        .await;
    }
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
    let first_objects = read_store(store.path()).len();
    assert!(first_objects >= 2, "one ipfix and one netflow batch");

    // 2. Data packets only.
    let mut want_data: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, (_, datas)) in EXPORTERS.iter().enumerate() {
        for d in *datas {
            let pkt = read(d);
            send(i, &pkt, &mut sent);
            want_data.push((i, pkt));
        }
        wait_for("the data packets", || {
            relay.stats().received_messages >= sent
        })
        .await;
    }
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();

    let objects = read_store(store.path());
    // The batches of step 2: those holding a data packet.
    let wanted: BTreeSet<&[u8]> = want_data.iter().map(|(_, p)| p.as_slice()).collect();
    let second: Vec<&(String, natlake_raw::BatchHeader, Vec<Record>)> = objects
        .iter()
        .filter(|(_, _, recs)| recs.iter().any(|r| wanted.contains(r.payload.as_slice())))
        .collect();
    assert_eq!(second.len(), 2, "one ipfix and one netflow batch of data");

    let data_recs: Vec<&Record> = second
        .iter()
        .flat_map(|(_, _, r)| r.iter())
        .filter(|r| !r.is_context())
        .collect();
    let payloads: Vec<Vec<u8>> = want_data.iter().map(|(_, p)| p.clone()).collect();
    // Byte-identical, each exactly once, nothing else in these batches but context.
    assert_exactly_once(&data_recs, &payloads);

    let mut decoded_records = BTreeMap::new();
    for (key, header, recs) in &second {
        let want_kind = header.kind;
        assert!(
            key.starts_with(&format!("raw/{}/", want_kind.as_str())),
            "{key}"
        );
        // The templates a decoder that reads this object alone has seen so far, per
        // (exporter address, version, domain).
        let mut known: BTreeMap<(IpAddr, u16, u32), BTreeMap<u16, Option<usize>>> = BTreeMap::new();
        for r in recs {
            assert_eq!(r.kind, want_kind);
            let peer = r.peer.expect("flow records keep the exporter address");
            let (version, domain) = domain_of(&r.payload);
            let k = (peer.ip(), version, domain);
            if r.is_context() {
                assert_eq!(r.flags, natlake_raw::FLAG_CONTEXT);
                known.entry(k).or_default().extend(templates_of(&r.payload));
                continue;
            }
            let i = want_data
                .iter()
                .find(|(_, p)| *p == r.payload)
                .map(|(i, _)| *i)
                .unwrap();
            assert_eq!(peer, socks[i].local_addr().unwrap());
            let tpls = known.get(&k).unwrap_or_else(|| {
                panic!("{key}: a data packet from {peer} precedes any template context")
            });
            for (set_id, body_len) in data_sets(&r.payload) {
                let len = tpls.get(&set_id).unwrap_or_else(|| {
                    panic!(
                        "{key}: no context template {set_id} for {peer} (have {:?})",
                        tpls.keys()
                    )
                });
                if let Some(len) = *len {
                    assert!(len > 0);
                    // Whole records, then at most padding shorter than a record.
                    let n = body_len / len;
                    assert!(n >= 1, "set {set_id}: {body_len} bytes < record {len}");
                    *decoded_records.entry(EXPORTERS[i].1[0]).or_insert(0usize) += n;
                }
            }
        }
    }
    // Expected record counts from logstash-codec-netflow's spec for the fixed-length exporters.
    assert_eq!(decoded_records["ipfix_test_mikrotik_data258.dat"], 46);
    assert_eq!(decoded_records["netflow9_test_cisco_asa_1_data.dat"], 14);
    assert_eq!(decoded_records["netflow9_test_cisco_asa_2_data.dat"], 19);
    assert_eq!(
        decoded_records["netflow9_test_fortigate_fortios_542_appid_data258_262.dat"],
        17
    );

    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert!(stats.templates_cached > 0, "{stats:?}");
    assert_eq!(stats.template_evictions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_foreign_datagrams_are_counted_and_never_crash() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = flow_config(store.path(), spool.path());
    if let SourceConfig::IpfixUdp(f) = &mut cfg.sources[0] {
        f.max_templates = 1;
    }
    let relay = Relay::start(cfg).await.unwrap();
    let to = relay.local_addr(InputKind::Ipfix).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();

    let tpl = read("ipfix_test_mikrotik_tpl.dat");
    let data = read("ipfix_test_mikrotik_data258.dat");
    let truncated = data[..data.len() / 2].to_vec();
    let short = data[..10].to_vec();
    let mut foreign = data.clone();
    foreign[0..2].copy_from_slice(&42u16.to_be_bytes());
    let kept = [tpl.clone(), truncated.clone()];
    for p in [&tpl, &truncated, &short, &foreign] {
        sock.send_to(p, to).unwrap();
    }
    // Junk of every length up to 64 bytes (most have no sane header).
    for n in 0..64usize {
        let junk: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
        sock.send_to(&junk, to).unwrap();
        if n % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_for("every datagram to be accounted for", || {
        let s = relay.stats();
        s.received_messages + s.dropped_total() >= 4 + 64
    })
    .await;
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();

    let stats = relay.stats();
    assert!(
        stats.flow_issues.get("truncated").copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert!(stats.dropped(DropReason::TruncatedHeader) >= 2, "{stats:?}");
    assert!(stats.dropped(DropReason::UnknownVersion) >= 1, "{stats:?}");
    // The cache is bounded: the MikroTik template packet holds two templates (258, 259).
    assert_eq!(stats.templates_cached, 1, "{stats:?}");
    assert!(stats.template_evictions >= 1, "{stats:?}");

    let recs: Vec<Record> = read_store(store.path())
        .into_iter()
        .flat_map(|(_, _, r)| r)
        .collect();
    for k in &kept {
        assert!(
            recs.iter().any(|r| !r.is_context() && &r.payload == k),
            "a datagram with a sane header is kept raw"
        );
    }
    assert!(
        !recs
            .iter()
            .any(|r| r.payload == short || r.payload == foreign)
    );
    let peer: SocketAddr = sock.local_addr().unwrap();
    assert!(recs.iter().all(|r| r.peer == Some(peer)));
    relay.shutdown().await.unwrap();
}
