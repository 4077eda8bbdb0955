//! Rows for tests of the lake and its functions (feature `testing`; always on in this crate's
//! own tests).

use crate::model::{Envelope, Event, Micros, NatEvent, NatEventKind, Provenance, Row};

/// The checkout whose tests are running (the directory holding `Cargo.lock`), found from Cargo's
/// `CARGO_MANIFEST_DIR` at run time. Not from the path compiled in: a test binary reused from a
/// checkout at another path (CI's clone and a working tree share one build directory, and Cargo
/// does not rebuild a workspace that only moved) would read that checkout's files, or none.
pub fn repo_dir() -> std::path::PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    package
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(&package)
        .to_path_buf()
}

/// A TCP NAT event of device `cgn1` on public 198.51.100.7, inside port 40000, to
/// 203.0.113.80:443, with its provenance.
pub fn nat_row(
    t: Micros,
    kind: NatEventKind,
    inside: &str,
    x_port: u16,
    raw_key: &str,
    raw_record: u64,
) -> Row {
    Row {
        event: Event::Nat(NatEvent {
            time: t,
            event: Some(kind),
            protocol: Some(6),
            src_ip: inside.parse().ok(),
            src_port: Some(40000),
            x_ip: "198.51.100.7".parse().ok(),
            x_port: Some(x_port),
            dst_ip: "203.0.113.80".parse().ok(),
            dst_port: Some(443),
            ..Default::default()
        }),
        envelope: Envelope {
            recv_time: t,
            device: Some("cgn1".into()),
            format: "test",
            ..Default::default()
        },
        provenance: Provenance {
            raw_key: raw_key.into(),
            raw_record,
        },
    }
}

/// `batch` (a `nat_events` batch) in the order versions before the lake order wrote: public
/// addresses as numbers, then port, time, record. Tests of legacy objects build them with it.
pub fn numeric_order(batch: &arrow::array::RecordBatch) -> arrow::array::RecordBatch {
    use arrow::array::{Array, AsArray, UInt32Array};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
    let col = |name: &str| batch.column_by_name(name).expect(name);
    let x_ip = col("x_ip").as_string::<i32>();
    let x_port = col("x_port").as_primitive::<Int32Type>();
    let time = col("time").as_primitive::<TimestampMicrosecondType>();
    let rec = col("raw_record").as_primitive::<Int64Type>();
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by_key(|&i| {
        let i = i as usize;
        let ip: Option<std::net::IpAddr> = x_ip
            .is_valid(i)
            .then(|| x_ip.value(i).parse().expect("x_ip"));
        let port = x_port.is_valid(i).then(|| x_port.value(i));
        (ip, port, time.value(i), rec.value(i))
    });
    arrow::compute::take_record_batch(batch, &UInt32Array::from(order)).expect("take")
}

/// The keys of every object under `prefix`, sorted (panics when the store cannot list).
pub async fn keys_under(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> Vec<object_store::path::Path> {
    use futures::TryStreamExt;
    let mut v: Vec<object_store::path::Path> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .expect("list");
    v.sort();
    v
}
