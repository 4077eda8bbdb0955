//! `/v1/sessions`: NAT events for a public address in a time range, in the cgn-ec shape.

use std::net::IpAddr;
use std::path::PathBuf;

use natlake_core::correlate::NatRow;
use natlake_core::model::{Micros, Table};
use natlake_core::time::format_time;
use serde::Serialize;

use crate::attribution::{NAT_COLUMNS, read_resilient, row_to_nat};
use crate::{Lake, ObjectError, QueryError, duck};

/// Which NAT events a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventFilter {
    /// Every NAT event (`/v1/sessions`, the cgn-ec contract).
    #[default]
    All,
    /// Port-block allocations, interim records and releases (`/v1/port_blocks`).
    PortBlocks,
    /// Address bindings and releases (`/v1/address_mappings`).
    AddressMappings,
}

impl EventFilter {
    /// A constant SQL condition: never built from user input.
    fn sql(self) -> &'static str {
        match self {
            EventFilter::All => "true",
            EventFilter::PortBlocks => {
                "event IN ('port_block_alloc', 'port_block_interim', 'port_block_release')"
            }
            EventFilter::AddressMappings => "event IN ('address_bind', 'address_release')",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionsQuery {
    pub events: EventFilter,
    pub x_ip: IpAddr,
    pub x_port: Option<u16>,
    /// Exclusive bounds.
    pub after: Micros,
    pub before: Micros,
    pub limit: usize,
    pub offset: usize,
}

/// Longest range one request may scan: hours are listed one by one.
pub const MAX_RANGE: Micros = 31 * 24 * 3_600_000_000;
pub const MAX_LIMIT: usize = 10_000;

/// One row in the cgn-ec field names, plus natlake's provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    pub timestamp: String,
    pub event: &'static str,
    pub event_type: &'static str,
    pub protocol: Option<u8>,
    pub src_ip: Option<String>,
    pub src_port: Option<u16>,
    pub x_ip: String,
    pub x_port: Option<u16>,
    pub x_port_end: Option<u16>,
    pub dst_ip: Option<String>,
    pub dst_port: Option<u16>,
    pub vrf_id: Option<String>,
    pub direction: Option<String>,
    pub device: Option<String>,
    pub subscriber: Option<String>,
    pub raw_key: String,
    pub raw_record: u64,
}

impl From<NatRow> for SessionRow {
    fn from(r: NatRow) -> Self {
        SessionRow {
            timestamp: format_time(r.time),
            event: r.event.cgn_ec_letter(),
            event_type: r.event.as_str(),
            protocol: r.protocol,
            src_ip: r.src_ip.map(|i| i.to_string()),
            src_port: r.src_port,
            x_ip: r.x_ip.to_string(),
            x_port: r.x_port,
            x_port_end: r.x_port_end,
            dst_ip: r.dst_ip.map(|i| i.to_string()),
            dst_port: r.dst_port,
            vrf_id: r.vrf,
            direction: r.direction,
            device: r.device,
            subscriber: r.subscriber,
            raw_key: r.raw_key,
            raw_record: r.raw_record,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionsPage {
    pub rows: Vec<SessionRow>,
    /// Offset of the next page when there are more rows; never a silent cap.
    pub next_offset: Option<usize>,
    pub errors: Vec<ObjectError>,
}

fn fetch(
    conn: &duckdb::Connection,
    files: &[PathBuf],
    q: &SessionsQuery,
) -> Result<Vec<NatRow>, QueryError> {
    let sql = format!(
        "SELECT {NAT_COLUMNS} FROM read_parquet({}, union_by_name = true) \
         WHERE x_ip = ? AND (?::INTEGER IS NULL OR (x_port <= ?::INTEGER AND coalesce(x_port_end, x_port) >= ?::INTEGER)) \
           AND epoch_us(time) > ? AND epoch_us(time) < ? AND {} \
         ORDER BY time, raw_key, raw_record LIMIT ?",
        duck::path_list(files.iter().map(|p| p.as_path())),
        q.events.sql()
    );
    let mut stmt = conn.prepare(&sql)?;
    let port = q.x_port.map(i32::from);
    let rows = stmt.query_map(
        duckdb::params![
            q.x_ip.to_string(),
            port,
            port,
            port,
            q.after,
            q.before,
            (q.offset + q.limit + 1) as i64
        ],
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

pub async fn sessions(lake: &Lake, q: &SessionsQuery) -> Result<SessionsPage, QueryError> {
    if q.before <= q.after {
        return Err(QueryError::BadRequest(
            "timestamp_lt must be after timestamp_gt".into(),
        ));
    }
    if q.before - q.after > MAX_RANGE {
        return Err(QueryError::BadRequest(
            "time range longer than 31 days; split the request".into(),
        ));
    }
    if q.limit == 0 || q.limit > MAX_LIMIT {
        return Err(QueryError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let objects = lake
        .partition_objects(Table::NatEvents, q.x_ip, q.after, q.before)
        .await?;
    let (files, mut errors) = lake.local_paths(&objects).await;
    let lake2 = lake.clone();
    let q2 = q.clone();
    let (rows, errors) = tokio::task::spawn_blocking(move || -> Result<_, QueryError> {
        let conn = lake2.connection()?;
        let mut rows = read_resilient(&files, &mut errors, |paths| fetch(&conn, paths, &q2));
        // Per-file fallback loses the global order; restore it. Each file returned at most
        // offset + limit + 1 rows, so the page and whether more follow are still exact.
        rows.sort_by(|a, b| {
            a.time
                .cmp(&b.time)
                .then_with(|| a.raw_key.cmp(&b.raw_key))
                .then(a.raw_record.cmp(&b.raw_record))
        });
        // A merged object next to the objects it replaced (compaction in progress) holds the
        // same rows twice: one row per provenance.
        rows.dedup_by(|a, b| {
            !a.raw_key.is_empty() && a.raw_key == b.raw_key && a.raw_record == b.raw_record
        });
        Ok((rows, errors))
    })
    .await
    .map_err(|e| QueryError::Internal(e.to_string()))??;
    let total = rows.len();
    let page: Vec<SessionRow> = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(SessionRow::from)
        .collect();
    let next_offset = (q.offset + page.len() < total).then_some(q.offset + page.len());
    Ok(SessionsPage {
        rows: page,
        next_offset,
        errors,
    })
}
