//! The reports in `queries/reports/` run over a small lake with known traffic and give the
//! numbers that traffic implies.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float64Type;
use arrow::record_batch::RecordBatch;
use natlake_core::lake::writer::{self, WriteOptions};
use natlake_core::model::{CfTraffic, Event, FirewallAction, FirewallEvent, NatEventKind};
use natlake_core::testing::nat_row;

use crate::sql;

const T0: i64 = 1_793_491_200_000_000; // 2026-11-01T00:00:00Z
const MIN: i64 = 60_000_000;

fn write_lake(root: &Path) {
    let mut rows = Vec::new();
    let mut session = |t: i64, end: i64, inside: &str, x_port: u16, bytes: u64, i: u64| {
        rows.push(nat_row(
            t,
            NatEventKind::SessionCreate,
            inside,
            x_port,
            "raw/k.nlraw.zst",
            i,
        ));
        let mut d = nat_row(
            end,
            NatEventKind::SessionDelete,
            inside,
            x_port,
            "raw/k.nlraw.zst",
            i + 1,
        );
        if let Event::Nat(e) = &mut d.event {
            e.bytes_out = Some(bytes);
            e.bytes_in = Some(bytes * 9);
            e.packets_out = Some(1);
            e.packets_in = Some(2);
        }
        // Destination ASN by session: 64500 for the first two, 64501 for the third.
        d.envelope.enrichment.dst_asn = Some(if i < 4 { 64500 } else { 64501 });
        d.envelope.enrichment.dst_as_org = Some(format!("AS-{i}"));
        rows.push(d);
    };
    // 100.64.0.1: two sessions at once (ports 2000, 2001) in minute 0; 100.64.1.5: one in minute 3.
    session(T0 + 10_000_000, T0 + 50_000_000, "100.64.0.1", 2000, 100, 0);
    session(T0 + 20_000_000, T0 + 55_000_000, "100.64.0.1", 2001, 200, 2);
    session(
        T0 + 3 * MIN,
        T0 + 3 * MIN + 5_000_000,
        "100.64.1.5",
        2002,
        1000,
        4,
    );
    // A port block of 512 ports held by 100.64.0.7 from minute 1 to minute 7.
    let mut alloc = nat_row(
        T0 + MIN,
        NatEventKind::PortBlockAlloc,
        "100.64.0.7",
        4096,
        "raw/k.nlraw.zst",
        6,
    );
    let mut release = nat_row(
        T0 + 7 * MIN,
        NatEventKind::PortBlockRelease,
        "100.64.0.7",
        4096,
        "raw/k.nlraw.zst",
        7,
    );
    for r in [&mut alloc, &mut release] {
        if let Event::Nat(e) = &mut r.event {
            e.x_port_end = Some(4607);
            e.protocol = None;
            e.src_port = None;
        }
    }
    rows.push(alloc);
    rows.push(release);
    // Cloud Foundry: app-a denied twice on ingress (from two peers), app-b once on egress, and
    // one allowed packet that the report must not count.
    let fw = |t: i64, src: &str, dst: &str, event: &'static str, app: &str, i: u64| {
        let mut r = nat_row(
            t,
            NatEventKind::SessionCreate,
            "10.255.0.1",
            1,
            "raw/k.nlraw.zst",
            i,
        );
        r.event = Event::Firewall(FirewallEvent {
            time: t,
            action: if event.ends_with("allowed") {
                FirewallAction::Allow
            } else {
                FirewallAction::Deny
            },
            rule: None,
            protocol: Some(6),
            src_ip: src.parse().ok(),
            src_port: Some(5555),
            dst_ip: dst.parse().ok(),
            dst_port: Some(8080),
            in_if: None,
            out_if: None,
            length: None,
            vrf: None,
        });
        r.envelope.enrichment.cf = Some(CfTraffic {
            event,
            container_id: Some(format!("c-{app}")),
            app_guid: Some(format!("guid-{app}")),
            app_name: Some(app.into()),
            space_guid: Some("space-1".into()),
            organization_guid: Some("org-1".into()),
        });
        r
    };
    rows.push(fw(
        T0 + MIN,
        "10.0.0.9",
        "10.255.0.1",
        "ingress-denied",
        "app-a",
        10,
    ));
    rows.push(fw(
        T0 + 2 * MIN,
        "10.0.0.8",
        "10.255.0.1",
        "ingress-denied",
        "app-a",
        11,
    ));
    rows.push(fw(
        T0 + 2 * MIN,
        "10.255.0.2",
        "192.0.2.1",
        "egress-denied",
        "app-b",
        12,
    ));
    rows.push(fw(
        T0 + 3 * MIN,
        "10.255.0.2",
        "192.0.2.1",
        "egress-allowed",
        "app-b",
        13,
    ));
    let outputs =
        writer::encode_outputs("raw/k.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap();
    for (o, bytes) in outputs {
        let path = root.join(&o.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn report(root: &Path, scratch: &Path, name: &str, setup: &str) -> RecordBatch {
    let file = natlake_core::testing::repo_dir()
        .join("queries/reports")
        .join(name);
    let text = std::fs::read_to_string(&file).unwrap();
    let conn = sql::open_with_views(root, scratch).unwrap();
    let batches = sql::run(&conn, &format!("{setup}\n{text}")).unwrap();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn col_str(b: &RecordBatch, name: &str) -> Vec<String> {
    let c = arrow::compute::cast(
        b.column_by_name(name).unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let s = c.as_string::<i32>();
    (0..s.len())
        .map(|i| {
            if s.is_null(i) {
                "null".into()
            } else {
                s.value(i).to_string()
            }
        })
        .collect()
}

#[test]
fn top_inside_ranks_networks_and_addresses_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let b = report(dir.path(), dir.path(), "top_inside.sql", "");
    let level = col_str(&b, "level");
    let inside = col_str(&b, "inside");
    let bytes = col_str(&b, "bytes");
    let flows = col_str(&b, "flows");
    let got: Vec<(String, String, String, String)> = (0..b.num_rows())
        .map(|i| {
            (
                level[i].clone(),
                inside[i].clone(),
                bytes[i].clone(),
                flows[i].clone(),
            )
        })
        .collect();
    // bytes = out + in = 10 × out.
    assert_eq!(
        got,
        vec![
            (
                "network".into(),
                "100.64.1.0/24".into(),
                "10000".into(),
                "1".into()
            ),
            (
                "network".into(),
                "100.64.0.0/24".into(),
                "3000".into(),
                "2".into()
            ),
            (
                "address".into(),
                "100.64.1.5".into(),
                "10000".into(),
                "1".into()
            ),
            (
                "address".into(),
                "100.64.0.1".into(),
                "3000".into(),
                "2".into()
            ),
        ]
    );
}

#[test]
fn five_minute_buckets_count_sessions_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let b = report(
        dir.path(),
        dir.path(),
        "traffic_per_minute.sql",
        "SET VARIABLE report_bucket = INTERVAL 5 MINUTE;",
    );
    assert_eq!(b.num_rows(), 2, "minutes 0–4 and 5–9");
    assert_eq!(col_str(&b, "sessions_created"), ["3", "0"]);
    assert_eq!(col_str(&b, "bytes"), ["13000", "0"]);
    assert_eq!(col_str(&b, "port_blocks_allocated"), ["1", "0"]);
    assert_eq!(col_str(&b, "port_blocks_released"), ["0", "1"]);
    let one = report(dir.path(), dir.path(), "traffic_per_minute.sql", "");
    // Minutes 0, 1, 3, 7 have events.
    assert_eq!(one.num_rows(), 4);
    assert_eq!(col_str(&one, "sessions_created"), ["2", "0", "1", "0"]);
}

#[test]
fn port_utilisation_is_the_peak_of_ports_held() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let b = report(dir.path(), dir.path(), "port_block_utilisation.sql", "");
    let kind = col_str(&b, "kind");
    let peak = col_str(&b, "peak_ports_held");
    let pct = b
        .column_by_name("peak_utilisation_pct")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let block = kind.iter().position(|k| k == "port_block").unwrap();
    assert_eq!(peak[block], "512");
    assert!(
        (pct.value(block) - 0.79).abs() < 1e-9,
        "{}",
        pct.value(block)
    );
    let sessions = kind.iter().position(|k| k == "session").unwrap();
    assert_eq!(peak[sessions], "2", "two sessions overlapped at most");
}

#[test]
fn destination_asns_per_inside_network_and_address() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let b = report(dir.path(), dir.path(), "destination_asns.sql", "");
    assert_eq!(col_str(&b, "inside"), ["100.64.0.0/24", "100.64.1.0/24"]);
    assert_eq!(col_str(&b, "dst_asn"), ["64500", "64501"]);
    assert_eq!(col_str(&b, "bytes"), ["3000", "10000"]);
    assert_eq!(col_str(&b, "flows"), ["2", "1"]);
    let a = report(
        dir.path(),
        dir.path(),
        "destination_asns.sql",
        "SET VARIABLE report_level = 'address';",
    );
    assert_eq!(col_str(&a, "inside"), ["100.64.0.1", "100.64.1.5"]);
}

#[test]
fn cf_denied_traffic_is_counted_per_app() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let b = report(dir.path(), dir.path(), "cf_denied_per_app.sql", "");
    assert_eq!(col_str(&b, "cf_app_name"), ["app-a", "app-b"]);
    assert_eq!(col_str(&b, "cf_event"), ["ingress-denied", "egress-denied"]);
    assert_eq!(col_str(&b, "packets_denied"), ["2", "1"]);
    assert_eq!(col_str(&b, "peers"), ["2", "1"]);
}
