//! Where things live in the store. Hive-style so DuckDB, Athena, Trino and Spark read it as is:
//!
//! ```text
//! raw/<input kind>/hour=YYYY-MM-DDTHH/<relay>_<batch>.nlraw.zst            (natlake_raw::key)
//! lake/<table>/hour=YYYY-MM-DDTHH/x_net=<public network>/<raw stem>.parquet
//! lake/rejects/hour=YYYY-MM-DDTHH/<raw stem>.parquet
//! ```
//!
//! `x_net` is the public address's /24 (IPv4) or /48 (IPv6), written so it needs no escaping in
//! any tool: `203.0.113.0_24`, `2001-db8-1--_48` (colons become dashes). A lookup computes it
//! from the IP it is asked about and lists only that one narrow prefix — never the bucket.
//! Rows with no public address go to `x_net=none`.
//! Lake objects are named after the raw object they came from, so normalizing the same raw object
//! twice overwrites the same keys instead of adding duplicates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{Micros, Table};

pub const LAKE_PREFIX: &str = "lake";
/// Partition column name of the public network.
pub const NET_KEY: &str = "x_net";
pub const NONE_NET: &str = "none";
pub const V4_PREFIX_LEN: u8 = 24;
pub const V6_PREFIX_LEN: u8 = 48;

/// The `x_net` partition value for an address.
pub fn net_value(ip: Option<IpAddr>) -> String {
    match ip {
        None => NONE_NET.to_string(),
        Some(IpAddr::V4(a)) => {
            let o = a.octets();
            format!("{}.{}.{}.0_{V4_PREFIX_LEN}", o[0], o[1], o[2])
        }
        Some(IpAddr::V6(a)) => {
            let s = a.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{}_{V6_PREFIX_LEN}", net.to_string().replace(':', "-"))
        }
    }
}

/// Parses an `x_net` value back into its network address and prefix length.
pub fn parse_net_value(v: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = v.rsplit_once('_')?;
    let len: u8 = len.parse().ok()?;
    if addr.contains('-') {
        let ip: Ipv6Addr = addr.replace('-', ":").parse().ok()?;
        Some((IpAddr::V6(ip), len))
    } else {
        let ip: Ipv4Addr = addr.parse().ok()?;
        Some((IpAddr::V4(ip), len))
    }
}

/// The hour an event time falls in, as seconds since the epoch (start of the hour).
pub fn hour_start(t: Micros) -> i64 {
    t.div_euclid(1_000_000).div_euclid(3600) * 3600
}

/// `YYYY-MM-DDTHH` for the hour containing `t`.
pub fn hour_label(t: Micros) -> String {
    natlake_raw::key::hour_label(t.div_euclid(1_000_000))
}

/// `lake/<table>/hour=H/x_net=N/` — the directory a lookup lists.
pub fn partition_dir(table: Table, hour_secs: i64, ip: Option<IpAddr>) -> String {
    let hour = natlake_raw::key::hour_label(hour_secs);
    match table {
        Table::Rejects => format!("{LAKE_PREFIX}/{}/hour={hour}/", table.as_str()),
        _ => format!(
            "{LAKE_PREFIX}/{}/hour={hour}/{NET_KEY}={}/",
            table.as_str(),
            net_value(ip)
        ),
    }
}

/// The object a raw object's rows for one partition are written to.
pub fn lake_key(table: Table, hour_secs: i64, net: &str, raw_key: &str) -> String {
    let hour = natlake_raw::key::hour_label(hour_secs);
    let stem = natlake_raw::key::stem(raw_key);
    match table {
        Table::Rejects => format!(
            "{LAKE_PREFIX}/{}/hour={hour}/{stem}.parquet",
            table.as_str()
        ),
        _ => format!(
            "{LAKE_PREFIX}/{}/hour={hour}/{NET_KEY}={net}/{stem}.parquet",
            table.as_str()
        ),
    }
}

/// The hour (epoch seconds) a `YYYY-MM-DDTHH` label names; None for anything else.
pub fn parse_hour_label(label: &str) -> Option<i64> {
    let t = chrono::NaiveDateTime::parse_from_str(&format!("{label}:00:00"), "%Y-%m-%dT%H:%M:%S")
        .ok()?;
    let secs = t.and_utc().timestamp();
    // Only the canonical spelling: `2026-11-23T5` must not name a partition.
    (natlake_raw::key::hour_label(secs) == label).then_some(secs)
}

/// Name of the merged object of a partition (compaction's).
pub const COMPACTED: &str = "compacted.parquet";
/// Name of a carry object (compaction's).
pub const CARRY: &str = "carry.parquet";

/// Where the compact function records that the carry into an hour is complete.
pub const CARRY_MARKER_DIR: &str = "_state/carry/";

/// The marker saying the carry into `hour_secs` is complete; lookups trust a carry only then.
pub fn carry_marker_key(hour_secs: i64) -> String {
    format!(
        "{CARRY_MARKER_DIR}hour={}.json",
        natlake_raw::key::hour_label(hour_secs)
    )
}

/// `lake/<table>/` — under it, one `hour=` directory per hour.
pub fn table_dir(table: Table) -> String {
    format!("{LAKE_PREFIX}/{}/", table.as_str())
}

/// `lake/<table>/hour=H/` — every partition of one hour.
pub fn hour_dir(table: Table, hour_secs: i64) -> String {
    format!(
        "{LAKE_PREFIX}/{}/hour={}/",
        table.as_str(),
        natlake_raw::key::hour_label(hour_secs)
    )
}

/// Hours (as epoch seconds) from `from` to `to` inclusive, oldest first.
pub fn hours_between(from: Micros, to: Micros) -> impl Iterator<Item = i64> {
    let (a, b) = (hour_start(from), hour_start(to));
    (0..)
        .map(move |i| a + i * 3600)
        .take_while(move |h| *h <= b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_labels_round_trip() {
        let h = 1_700_000_000 / 3600 * 3600;
        let label = natlake_raw::key::hour_label(h);
        assert_eq!(parse_hour_label(&label), Some(h));
        assert_eq!(parse_hour_label("2026-11-23T05"), Some(1_795_410_000));
        for bad in [
            "2026-11-23",
            "2026-11-23T5",
            "2026-13-01T00",
            "x",
            "2026-11-23T05:00",
        ] {
            assert_eq!(parse_hour_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn net_values_are_computable_and_reversible() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(net_value(Some(v4)), "203.0.113.0_24");
        assert_eq!(
            parse_net_value("203.0.113.0_24"),
            Some(("203.0.113.0".parse().unwrap(), 24))
        );
        let v6: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        assert_eq!(net_value(Some(v6)), "2001-db8-1--_48");
        assert_eq!(
            parse_net_value("2001-db8-1--_48"),
            Some(("2001:db8:1::".parse().unwrap(), 48))
        );
        let v6b: IpAddr = "2001:db8:abcd:ffff::1".parse().unwrap();
        assert_eq!(net_value(Some(v6b)), "2001-db8-abcd--_48");
        assert_eq!(net_value(None), "none");
        // Nothing that needs percent-encoding in Hive paths or S3 keys.
        for v in [
            net_value(Some(v4)),
            net_value(Some(v6)),
            net_value(Some(v6b)),
        ] {
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{v}"
            );
        }
    }

    #[test]
    fn keys_derive_from_the_raw_object() {
        let raw = "raw/syslog_udp/hour=2023-11-14T22/edge1_0190abc.nlraw.zst";
        let h = hour_start(1_700_000_000_000_000);
        assert_eq!(h, 1_699_999_200);
        assert_eq!(
            lake_key(Table::NatEvents, h, "203.0.113.0_24", raw),
            "lake/nat_events/hour=2023-11-14T22/x_net=203.0.113.0_24/edge1_0190abc.parquet"
        );
        assert_eq!(
            lake_key(Table::Rejects, h, "none", raw),
            "lake/rejects/hour=2023-11-14T22/edge1_0190abc.parquet"
        );
        assert_eq!(
            partition_dir(Table::NatEvents, h, Some("203.0.113.9".parse().unwrap())),
            "lake/nat_events/hour=2023-11-14T22/x_net=203.0.113.0_24/"
        );
        let hours: Vec<_> = hours_between(1_700_000_000_000_000, 1_700_007_300_000_000).collect();
        assert_eq!(hours, vec![1_699_999_200, 1_700_002_800, 1_700_006_400]);
    }
}
