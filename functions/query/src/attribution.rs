//! "Which subscriber held public IP X, port Y at time T?"

use std::net::IpAddr;
use std::path::PathBuf;

use natlake_core::correlate::{self, Attribution, NatRow};
use natlake_core::model::{Micros, NatEventKind, Table};
use serde::Serialize;

use crate::{Lake, ObjectError, QueryError, duck};

/// An attribution question.
#[derive(Debug, Clone)]
pub struct Question {
    pub ip: IpAddr,
    pub port: u16,
    pub at: Micros,
    pub protocol: Option<u8>,
    /// Tolerance around `at` for clock skew between the logger and whoever reports the abuse.
    pub window: Micros,
    /// How far before `at` to look for the event that opened the mapping (and after it for the
    /// one that closed it).
    pub lookback: Micros,
}

pub const DEFAULT_WINDOW: Micros = 2_000_000;
pub const DEFAULT_LOOKBACK: Micros = 24 * 3_600_000_000;

/// The answer with what it was computed from.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    #[serde(flatten)]
    pub attribution: Attribution,
    /// Partition objects read.
    pub objects: usize,
    /// Partition objects that could not be read: the answer may be incomplete when non-empty.
    pub errors: Vec<ObjectError>,
}

/// The NAT event columns as [`row_to_nat`] expects them.
pub(crate) const NAT_COLUMNS: &str = "epoch_us(time), event, protocol, src_ip, src_port, x_ip, x_port, x_port_end, dst_ip, dst_port, vrf, direction, device, epoch_us(end_time), subscriber, raw_key, raw_record";

/// The rows of the given files that concern ip:port (single ports, port blocks containing it,
/// and address-level bindings), at or before `until`.
fn fetch_rows(
    conn: &duckdb::Connection,
    files: &[PathBuf],
    q: &Question,
    until: Micros,
) -> Result<Vec<NatRow>, QueryError> {
    let sql = format!(
        "SELECT {NAT_COLUMNS} FROM read_parquet({}, union_by_name = true) \
         WHERE x_ip = ? AND (x_port IS NULL OR (x_port <= ? AND coalesce(x_port_end, x_port) >= ?)) \
           AND (?::SMALLINT IS NULL OR protocol IS NULL OR protocol = ?::SMALLINT) \
           AND epoch_us(time) <= ?",
        duck::path_list(files.iter().map(|p| p.as_path()))
    );
    let mut stmt = conn.prepare(&sql)?;
    let proto = q.protocol.map(i16::from);
    let port = i32::from(q.port);
    let rows = stmt.query_map(
        duckdb::params![q.ip.to_string(), port, port, proto, proto, until],
        row_to_nat,
    )?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(r) = r? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Maps a result row to a NatRow; None for rows the lake should never hold (unknown event
/// names, unparseable addresses), which are skipped rather than guessed at.
pub(crate) fn row_to_nat(row: &duckdb::Row<'_>) -> duckdb::Result<Option<NatRow>> {
    let ip = |s: Option<String>| s.and_then(|s| s.parse::<IpAddr>().ok());
    let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
    let event: Option<String> = row.get(1)?;
    let Some(event) = event.as_deref().and_then(NatEventKind::parse) else {
        return Ok(None);
    };
    let Some(x_ip) = ip(row.get(5)?) else {
        return Ok(None);
    };
    Ok(Some(NatRow {
        time: row.get(0)?,
        event,
        protocol: row
            .get::<_, Option<i16>>(2)?
            .and_then(|p| u8::try_from(p).ok()),
        src_ip: ip(row.get(3)?),
        src_port: port(row.get(4)?),
        x_ip,
        x_port: port(row.get(6)?),
        x_port_end: port(row.get(7)?),
        dst_ip: ip(row.get(8)?),
        dst_port: port(row.get(9)?),
        vrf: row.get(10)?,
        direction: row.get(11)?,
        device: row.get(12)?,
        end_time: row.get(13)?,
        subscriber: row.get(14)?,
        raw_key: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
        raw_record: row
            .get::<_, Option<i64>>(16)?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
    }))
}

/// Reads `files` in one query; if that fails, file by file, so one corrupt object is reported
/// instead of failing the whole answer.
pub(crate) fn read_resilient<T>(
    files: &[(String, PathBuf)],
    errors: &mut Vec<ObjectError>,
    mut read: impl FnMut(&[PathBuf]) -> Result<Vec<T>, QueryError>,
) -> Vec<T> {
    if files.is_empty() {
        return Vec::new();
    }
    let paths: Vec<PathBuf> = files.iter().map(|f| f.1.clone()).collect();
    match read(&paths) {
        Ok(rows) => rows,
        Err(_) => {
            let mut rows = Vec::new();
            for (key, path) in files {
                match read(std::slice::from_ref(path)) {
                    Ok(mut r) => rows.append(&mut r),
                    Err(e) => errors.push(ObjectError {
                        key: key.clone(),
                        error: e.to_string(),
                    }),
                }
            }
            rows
        }
    }
}

/// Answers one question.
pub async fn attribute(lake: &Lake, q: &Question) -> Result<Answer, QueryError> {
    if q.window < 0 || q.window > 3_600_000_000 {
        return Err(QueryError::BadRequest(
            "window must be between 0 and 3600 seconds".into(),
        ));
    }
    let from = q.at - q.lookback - q.window;
    // Rows after `at` are read too, so an interval that was open at `at` gets its real end
    // (the delete) rather than looking open; intervals that begin after the window are
    // discarded by the attribution rule.
    let until = q.at + q.window + q.lookback;
    let objects = lake
        .partition_objects(Table::NatEvents, q.ip, from, until)
        .await?;
    let (files, mut errors) = lake.local_paths(&objects).await;
    let scratch = lake.scratch.clone();
    let q2 = q.clone();
    let (rows, errors) = tokio::task::spawn_blocking(move || -> Result<_, QueryError> {
        let conn = duck::connect(&scratch)?;
        let rows = read_resilient(&files, &mut errors, |paths| {
            fetch_rows(&conn, paths, &q2, until)
        });
        Ok((rows, errors))
    })
    .await
    .map_err(|e| QueryError::Internal(e.to_string()))??;
    let range_start = natlake_core::lake::layout::hour_start(from) * 1_000_000;
    let ivs = correlate::intervals(rows, range_start);
    Ok(Answer {
        attribution: correlate::attribute(ivs, q.at, q.window),
        objects: objects.len(),
        errors,
    })
}
