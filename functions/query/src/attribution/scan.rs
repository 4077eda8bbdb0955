//! The rows of a question and the device clocks in one DuckDB query: binding `read_parquet`
//! and reading the address's row groups once instead of twice (on the bench's lake, ~5 ms of
//! ~30 ms of DuckDB CPU per answer).

use std::path::PathBuf;

use natlake_core::correlate::NatRow;
use natlake_core::model::Micros;

use super::{
    DEVICE_COLUMN, ENRICHMENT_COLUMNS, InsideEnrichment, NAT_COLUMNS, NAT_WIDTH, Question,
    ROW_FILTER, enrichment_of, row_to_nat,
};
use crate::{QueryError, duck};

/// A device whose clock runs ahead, and by how much at least (see `clocks_ahead`).
pub(super) type Ahead = (Option<String>, Micros);

/// The question's rows with their enrichment, and the devices ahead.
pub(super) type RowsAndClocks = (Vec<(NatRow, InsideEnrichment)>, Vec<Ahead>);

/// What `fetch_rows` and `clocks_ahead` return for `files`, from one query; None when it
/// cannot be answered so (objects without the receive-delay column, an unreadable object):
/// the caller then reads as before, rows object by object and the clocks apart.
pub(super) fn rows_and_clocks(
    conn: &duckdb::Connection,
    files: &[PathBuf],
    q: &Question,
    from: Micros,
    until: Micros,
) -> Option<RowsAndClocks> {
    if files.is_empty() {
        return Some((Vec::new(), Vec::new()));
    }
    match query(conn, files, q, from, until, true) {
        // Objects from before the enrichment columns: the same rows, unenriched.
        Err(QueryError::Duck(e)) if e.to_string().contains("\"site\"") => {
            query(conn, files, q, from, until, false).ok()
        }
        other => other.ok(),
    }
}

fn query(
    conn: &duckdb::Connection,
    files: &[PathBuf],
    q: &Question,
    from: Micros,
    until: Micros,
    enriched: bool,
) -> Result<RowsAndClocks, QueryError> {
    let extra = if enriched {
        format!(", {ENRICHMENT_COLUMNS}")
    } else {
        String::new()
    };
    let width = NAT_WIDTH + if enriched { 3 } else { 0 };
    // The clock rows: the device in its column, NULL elsewhere, and how far ahead last.
    let clock_cols: Vec<&str> = (0..width)
        .map(|i| if i == DEVICE_COLUMN { "device" } else { "NULL" })
        .collect();
    // The same filters as `fetch_rows_with` and `clocks_ahead` (`recv_delay_us < 0` keeps what
    // their HAVING kept, and lets DuckDB skip row groups whose statistics show no such row).
    let sql = format!(
        "WITH f AS (SELECT * FROM read_parquet({}, union_by_name = true) WHERE x_ip = ?) \
         SELECT {NAT_COLUMNS}{extra}, NULL::BIGINT FROM f WHERE {ROW_FILTER} \
         UNION ALL \
         SELECT {}, -min(recv_delay_us) FROM f \
         WHERE recv_delay_us < 0 AND epoch_us(time) BETWEEN ? AND ? GROUP BY device",
        duck::path_list(files.iter().map(|p| p.as_path())),
        clock_cols.join(", "),
    );
    let mut stmt = conn.prepare(&sql)?;
    let proto = q.protocol.map(i16::from);
    let port = i32::from(q.port);
    let mut rows = Vec::new();
    let mut ahead = Vec::new();
    let mut result = stmt.query(duckdb::params![
        q.ip.to_string(),
        q.ip.to_string(),
        port,
        port,
        proto,
        proto,
        until,
        from,
        until
    ])?;
    while let Some(row) = result.next()? {
        if let Some(by) = row.get::<_, Option<i64>>(width)? {
            ahead.push((row.get::<_, Option<String>>(DEVICE_COLUMN)?, by));
            continue;
        }
        let Some(nat) = row_to_nat(row)? else {
            continue;
        };
        rows.push((nat, enrichment_of(row, enriched)?));
    }
    // `clocks_ahead`'s ORDER BY device: DuckDB sorts NULL last.
    ahead.sort_by(|a, b| (a.0.is_none(), &a.0).cmp(&(b.0.is_none(), &b.0)));
    Ok((rows, ahead))
}

#[cfg(test)]
mod tests {
    use natlake_core::lake::writer::{self, WriteOptions};
    use natlake_core::model::{Event, NatEventKind};
    use natlake_core::testing::nat_row;

    use super::super::{clocks_ahead, fetch_rows};
    use super::*;

    const T0: i64 = 1_793_491_200_000_000; // 2026-11-01T00:00:00Z

    /// The one query gives what the two did: the same rows, and the same devices ahead in the
    /// same order (an unnamed device last), over rows of several devices, ports, protocols,
    /// addresses and times, some received before their time.
    #[test]
    fn one_query_answers_as_the_two() {
        let dir = tempfile::tempdir().unwrap();
        let s = 1_000_000;
        let mut rows = Vec::new();
        // (device, seconds received after its time, x_ip, x_port, protocol, time)
        type Spec<'a> = (Option<&'a str>, i64, &'a str, u16, u8, i64);
        let specs: [Spec; 9] = [
            (Some("cgn1"), -90, "198.51.100.7", 2000, 6, 100),
            (Some("cgn1"), -30, "198.51.100.7", 3000, 6, 200),
            (Some("cgn2"), -5, "198.51.100.7", 4000, 17, 300),
            (Some("cgn3"), 2, "198.51.100.7", 2000, 6, 400),
            (None, -40, "198.51.100.7", 5000, 6, 500),
            // Another address's clock, and a row after `until`.
            (Some("cgn4"), -70, "198.51.100.8", 2000, 6, 600),
            (Some("cgn5"), -70, "198.51.100.7", 2000, 6, 4 * 3600),
            (Some("cgn2"), -1, "198.51.100.7", 2000, 17, 700),
            (Some("cgn1"), 1, "198.51.100.7", 2000, 6, 800),
        ];
        for (i, (device, delay, x_ip, port, proto, t)) in specs.into_iter().enumerate() {
            let mut r = nat_row(
                T0 + t * s,
                NatEventKind::SessionCreate,
                "100.64.0.1",
                port,
                "raw/k.nlraw.zst",
                i as u64,
            );
            r.envelope.device = device.map(Into::into);
            r.envelope.recv_time = T0 + t * s + delay * s;
            if let Event::Nat(n) = &mut r.event {
                n.x_ip = x_ip.parse().ok();
                n.protocol = Some(proto);
            }
            rows.push(r);
        }
        let mut files = Vec::new();
        for (o, bytes) in
            writer::encode_outputs("raw/k.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap()
        {
            let path = dir.path().join(&o.key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            if o.key.ends_with(".parquet") {
                files.push(path);
            }
        }
        assert!(!files.is_empty());
        let conn = duck::connect(&dir.path().join("scratch")).unwrap();
        let (from, until) = (T0, T0 + 3 * 3600 * s - 1);
        let debug = |v: &[(NatRow, InsideEnrichment)]| {
            let mut v: Vec<String> = v.iter().map(|r| format!("{r:?}")).collect();
            v.sort();
            v
        };
        let mut saw_ahead = false;
        for (port, protocol) in [(2000, None), (2000, Some(6)), (4000, None), (9, Some(17))] {
            let mut q = Question::new("198.51.100.7".parse().unwrap(), port, T0 + 150 * s);
            q.protocol = protocol;
            let (one, ahead) = rows_and_clocks(&conn, &files, &q, from, until).unwrap();
            let two = fetch_rows(&conn, &files, &q, until).unwrap();
            assert_eq!(debug(&one), debug(&two), "{port} {protocol:?}");
            assert_eq!(ahead, clocks_ahead(&conn, &files, &q, from, until).unwrap());
            saw_ahead |= !ahead.is_empty();
            assert_eq!(
                ahead,
                [
                    (Some("cgn1".to_string()), 90 * s),
                    (Some("cgn2".to_string()), 5 * s),
                    (None, 40 * s)
                ]
            );
        }
        assert!(saw_ahead);
    }
}
