//! `natlake sql`: DuckDB with the lake's views defined, for ad-hoc questions and reports.

use std::path::Path;

use arrow::record_batch::RecordBatch;
use duckdb::Connection;
use natlake_core::lake::columns::{self, Column};
use natlake_core::model::Table;

use crate::{QueryError, duck};

/// The views every session starts with (`queries/views.sql`).
pub const VIEWS_SQL: &str = include_str!("../../../queries/views.sql");

/// How `natlake sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl OutputFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(Self::Table),
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Files under `dir` (recursively) whose extension is `ext`, sorted; `first` stops at one.
pub(crate) fn files_with_extension(dir: &Path, ext: &str, first: bool) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
                if first {
                    return out;
                }
            }
        }
    }
    out.sort();
    out
}

fn has_parquet(dir: &Path) -> bool {
    !files_with_extension(dir, "parquet", true).is_empty()
}

fn sql_type<R>(c: &Column<R>) -> &'static str {
    match c.type_name() {
        "timestamp[us, UTC]" => "TIMESTAMPTZ",
        "string" => "VARCHAR",
        "int16" => "SMALLINT",
        "int32" => "INTEGER",
        "int64" => "BIGINT",
        _ => "BLOB",
    }
}

/// An empty view with the columns the real one shows: stored columns as they are, except that
/// an event table shows `recv_time` right after `time` in place of the stored `recv_delay_us`
/// (as `natlake_events` in views.sql does), then the partition columns.
fn empty_view<R>(name: &str, cols: &[Column<R>], x_net: bool) -> String {
    let delay = cols.iter().any(|c| c.name == columns::RECV_DELAY);
    let mut items: Vec<String> = Vec::with_capacity(cols.len() + 3);
    for c in cols {
        if c.name == columns::RECV_DELAY {
            continue;
        }
        items.push(format!("NULL::{} AS {}", sql_type(c), c.name));
        if delay && c.name == "time" {
            items.push("NULL::TIMESTAMPTZ AS recv_time".into());
        }
    }
    items.push("NULL::VARCHAR AS hour".into());
    if x_net {
        items.push("NULL::VARCHAR AS x_net".into());
    }
    format!(
        "CREATE OR REPLACE VIEW {name} AS SELECT {} WHERE false;",
        items.join(", ")
    )
}

/// views.sql's `natlake_utc_us` for this DuckDB, which has no ICU extension: TIMESTAMPTZ is
/// plain UTC here, so a TIMESTAMP of the same µs casts to the same instant (views.sql's
/// `make_timestamptz(BIGINT)` is ICU's).
const UTC_US_MACRO: &str =
    "CREATE OR REPLACE MACRO natlake_utc_us(us) AS make_timestamp(us)::TIMESTAMPTZ";

/// Opens DuckDB with the views over a local lake root (a `file://` store's directory, or a
/// local mirror of a remote lake).
pub fn open_with_views(root: &Path, scratch: &Path) -> Result<Connection, QueryError> {
    let conn = duck::connect(scratch)?;
    conn.execute_batch(&format!(
        "SET VARIABLE natlake_lake = {};",
        duck::quote(&root.display().to_string())
    ))?;
    // Run views.sql statement by statement (comments first: they contain example statements);
    // a table without objects gets an empty typed view.
    let code = strip_comments(VIEWS_SQL);
    for body in code.split(';') {
        if body.trim().is_empty() {
            continue;
        }
        if body.contains("MACRO natlake_utc_us(") {
            conn.execute_batch(UTC_US_MACRO)?;
            continue;
        }
        let table = Table::ALL
            .into_iter()
            .find(|t| body.contains(&format!("VIEW {} AS", t.as_str())));
        if let Some(t) = table
            && !has_parquet(&root.join("lake").join(t.as_str()))
        {
            let sql = match columns::event_columns(t) {
                Some(cols) => empty_view(t.as_str(), &cols, true),
                None => empty_view(t.as_str(), &columns::rejects(), false),
            };
            conn.execute_batch(&sql)?;
            continue;
        }
        conn.execute_batch(body)?;
    }
    let audit = crate::audit::load(&conn, root)?;
    for (key, reason) in &audit.unreadable {
        tracing::warn!(%key, %reason, "audit object is not a record; left out of the audit table");
    }
    Ok(conn)
}

/// SQL text without its `--` comments (outside string literals), so that a `;` in a comment
/// does not split a statement.
fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        let mut in_str = false;
        let mut cut = line.len();
        let b = line.as_bytes();
        for i in 0..b.len() {
            match b[i] {
                b'\'' => in_str = !in_str,
                b'-' if !in_str && b.get(i + 1) == Some(&b'-') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Runs SQL text (one or more statements; the last one's result is returned).
pub fn run(conn: &Connection, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let code = strip_comments(sql);
    let stmts: Vec<&str> = code.split(';').filter(|s| !s.trim().is_empty()).collect();
    let Some((last, before)) = stmts.split_last() else {
        return Err(QueryError::BadRequest("no SQL statement given".into()));
    };
    for s in before {
        conn.execute_batch(s)?;
    }
    let mut stmt = conn.prepare(last)?;
    Ok(stmt.query_arrow([])?.collect())
}

/// Renders batches as a text table, CSV or JSON lines.
pub fn render(batches: &[RecordBatch], fmt: OutputFormat) -> Result<String, QueryError> {
    let err = |e: arrow::error::ArrowError| QueryError::Internal(e.to_string());
    match fmt {
        OutputFormat::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)
            .map_err(err)?
            .to_string()),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::Writer::new(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
            }
            String::from_utf8(buf).map_err(|e| QueryError::Internal(e.to_string()))
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
                w.finish().map_err(err)?;
            }
            String::from_utf8(buf).map_err(|e| QueryError::Internal(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn comments_go_but_strings_stay() {
        let got =
            super::strip_comments("-- a; b\nSELECT '--kept' AS x; -- trailing; note\nSELECT 2;");
        let stmts: Vec<&str> = got
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(stmts, ["SELECT '--kept' AS x", "SELECT 2"]);
    }
}
