//! The audit log as an SQL table for `natlake sql`.
//!
//! The lookup writes one JSON object per answered request under `audit/hour=H/`. natlake's
//! bundled DuckDB has no JSON reader, so the records are read here and appended to an `audit`
//! table with the same columns as the view `queries/audit.sql` defines for a stock DuckDB CLI:
//! who asked, when, what (`asked_ip` / `asked_port` / `asked_at` for single questions; the whole request as JSON text)
//! and who was named (subscribers and inside addresses, over every answer of a batch).

use std::path::Path;

use duckdb::{Connection, params};
use natlake_core::time::parse_time;
use serde_json::Value;

use crate::QueryError;

/// The `audit` table's columns, as `queries/audit.sql` defines them too.
const CREATE: &str = "CREATE OR REPLACE TEMP TABLE audit_stage (
    time_us BIGINT, who VARCHAR, endpoint VARCHAR, asked_ip VARCHAR, asked_port INTEGER,
    asked_at VARCHAR,
    named_subscribers VARCHAR, named_inside VARCHAR, ambiguous BOOLEAN,
    asked VARCHAR, answered VARCHAR, hour VARCHAR, key VARCHAR)";

/// Lists are staged as text joined by the unit separator (no id or address contains it).
const SEP: char = '\u{1f}';

const PUBLISH: &str = "CREATE OR REPLACE TABLE audit AS
SELECT make_timestamp(time_us)::TIMESTAMPTZ AS time, who, endpoint, asked_ip, asked_port, asked_at,
       CASE WHEN named_subscribers = '' THEN []::VARCHAR[]
            ELSE string_split(named_subscribers, chr(31)) END AS named_subscribers,
       CASE WHEN named_inside = '' THEN []::VARCHAR[]
            ELSE string_split(named_inside, chr(31)) END AS named_inside,
       ambiguous, asked, answered, hour, key
FROM audit_stage ORDER BY time_us, key;
DROP TABLE audit_stage;";

/// One audit record, flattened.
#[derive(Debug, Default, PartialEq)]
pub struct AuditRow {
    pub time_us: i64,
    pub who: Option<String>,
    pub endpoint: Option<String>,
    pub ip: Option<String>,
    pub port: Option<i32>,
    pub at: Option<String>,
    pub named_subscribers: Vec<String>,
    pub named_inside: Vec<String>,
    pub ambiguous: Option<bool>,
    pub asked: String,
    pub answered: String,
    pub hour: Option<String>,
    pub key: String,
}

/// Flattens one record (`key` is its object key, `audit/hour=H/…json`).
pub fn flatten(key: &str, body: &[u8]) -> Result<AuditRow, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let time = v["time"]
        .as_str()
        .ok_or("no \"time\" field")
        .and_then(|t| parse_time(t).map_err(|_| "\"time\" is not an RFC 3339 time"))?;
    let text = |x: &Value| x.as_str().map(str::to_owned);
    let asked = &v["asked"];
    let answered = &v["answered"];
    // A batch's answer is a list of single answers; a single answer has `matches`.
    let answers: Vec<&Value> = match answered {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut subscribers = Vec::new();
    let mut inside = Vec::new();
    for m in answers
        .iter()
        .filter_map(|a| a["matches"].as_array())
        .flatten()
    {
        subscribers.extend(text(&m["subscriber"]));
        inside.extend(text(&m["src_ip"]));
    }
    Ok(AuditRow {
        time_us: time,
        who: text(&v["who"]),
        endpoint: text(&v["endpoint"]),
        ip: text(&asked["ip"]),
        port: asked["port"]
            .as_str()
            .and_then(|p| p.trim().parse().ok())
            .or_else(|| asked["port"].as_i64().and_then(|p| i32::try_from(p).ok())),
        at: text(&asked["at"]),
        named_subscribers: subscribers,
        named_inside: inside,
        ambiguous: answered["ambiguous"].as_bool(),
        asked: asked.to_string(),
        answered: answered.to_string(),
        hour: key
            .split('/')
            .find_map(|s| s.strip_prefix("hour="))
            .map(str::to_owned),
        key: key.to_owned(),
    })
}

/// What loading found.
#[derive(Debug, Default, PartialEq)]
pub struct Loaded {
    pub records: usize,
    /// Objects that are not audit records (key, reason); they stay in the store untouched.
    pub unreadable: Vec<(String, String)>,
}

/// Creates the `audit` table from the records under `root/audit/` (none: an empty table).
pub fn load(conn: &Connection, root: &Path) -> Result<Loaded, QueryError> {
    conn.execute_batch(CREATE)?;
    let mut loaded = Loaded::default();
    {
        let mut app = conn.appender("audit_stage")?;
        for path in crate::sql::files_with_extension(&root.join("audit"), "json", false) {
            let key = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| path.display().to_string());
            let row = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| flatten(&key, &b));
            match row {
                Ok(r) => {
                    app.append_row(params![
                        r.time_us,
                        r.who,
                        r.endpoint,
                        r.ip,
                        r.port,
                        r.at,
                        join(&r.named_subscribers),
                        join(&r.named_inside),
                        r.ambiguous,
                        r.asked,
                        r.answered,
                        r.hour,
                        r.key,
                    ])?;
                    loaded.records += 1;
                }
                Err(e) => loaded.unreadable.push((key, e)),
            }
        }
        app.flush()?;
    }
    conn.execute_batch(PUBLISH)?;
    Ok(loaded)
}

fn join(items: &[String]) -> String {
    items
        .iter()
        .map(|s| s.replace(SEP, ""))
        .collect::<Vec<_>>()
        .join(&SEP.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINGLE: &str = r#"{"time":"2026-11-23T10:00:01.5Z","who":"desk","endpoint":"attribution",
        "asked":{"ip":"198.51.100.7","port":"4000","at":"2026-11-23T09:00:00Z"},
        "answered":{"matches":[{"src_ip":"100.64.0.1","src_port":1234,"subscriber":"alice"},
                               {"src_ip":"100.64.0.2","src_port":1,"subscriber":null}],
                    "ambiguous":true,"errors":0,"error":null}}"#;
    const BATCH: &str = r#"{"time":"2026-11-23T10:00:02Z","who":"liaison","endpoint":"attribution_batch",
        "asked":[{"ip":"192.0.2.1","port":80,"at":"2026-11-23T09:00:00Z"}],
        "answered":[{"matches":[{"src_ip":"100.64.1.1","subscriber":"bob"}],"ambiguous":false},
                    {"matches":[],"ambiguous":false}]}"#;

    #[test]
    fn records_flatten_for_single_and_batch_answers() {
        let r = flatten("audit/hour=2026-11-23T10/1-a.json", SINGLE.as_bytes()).unwrap();
        assert_eq!(r.time_us, 1_795_428_001_500_000);
        assert_eq!(r.ip.as_deref(), Some("198.51.100.7"));
        assert_eq!(r.port, Some(4000));
        assert_eq!(r.named_subscribers, ["alice"]);
        assert_eq!(r.named_inside, ["100.64.0.1", "100.64.0.2"]);
        assert_eq!(r.ambiguous, Some(true));
        assert_eq!(r.hour.as_deref(), Some("2026-11-23T10"));
        let b = flatten("audit/hour=2026-11-23T10/2-b.json", BATCH.as_bytes()).unwrap();
        assert_eq!(b.ip, None, "a batch has no single question");
        assert_eq!(b.named_subscribers, ["bob"]);
        assert_eq!(b.ambiguous, None);
        assert!(b.asked.contains("192.0.2.1"), "{}", b.asked);
        assert!(flatten("k", b"{").unwrap_err().contains("not JSON"));
        assert!(flatten("k", b"{}").unwrap_err().contains("time"));
        assert!(
            flatten("k", br#"{"time":"yesterday"}"#)
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn the_audit_table_answers_who_asked_and_who_was_named() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("audit/hour=2026-11-23T10");
        std::fs::create_dir_all(&hour).unwrap();
        std::fs::write(hour.join("1-a.json"), SINGLE).unwrap();
        std::fs::write(hour.join("2-b.json"), BATCH).unwrap();
        std::fs::write(hour.join("3-c.json"), "truncated {").unwrap();
        let conn = crate::duck::connect(dir.path()).unwrap();
        let got = load(&conn, dir.path()).unwrap();
        assert_eq!(got.records, 2);
        assert_eq!(got.unreadable.len(), 1);
        assert!(got.unreadable[0].0.ends_with("3-c.json"));
        let (who, n): (String, i64) = conn
            .query_row(
                "SELECT who, count(*) FROM audit WHERE list_contains(named_subscribers, 'bob') GROUP BY who",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((who.as_str(), n), ("liaison", 1));
        let (first, len, epoch): (String, i64, i64) = conn
            .query_row(
                "SELECT who, len(named_inside), epoch_us(time) FROM audit ORDER BY time LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((first.as_str(), len), ("desk", 2));
        assert_eq!(epoch, 1_795_428_001_500_000);
        // No audit directory: an empty table, so queries still bind.
        let empty = tempfile::tempdir().unwrap();
        let conn = crate::duck::connect(empty.path()).unwrap();
        assert_eq!(load(&conn, empty.path()).unwrap().records, 0);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
