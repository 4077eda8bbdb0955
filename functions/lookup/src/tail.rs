//! `GET /v1/tail?table=nat_events[&ip=A][&poll_ms=N][&max_secs=N]`: rows as they reach the lake,
//! as Server-Sent Events (one event per row, named after the table, `id` = object key and row).
//!
//! The lake has no change feed, so the tail polls: it lists the table's partitions of the current
//! and the previous hour and reads the objects it has not seen. What existed when the client
//! connected is not replayed. `compacted.parquet` objects are skipped: they hold rows already
//! sent from the small objects they replace. On AWS Lambda the function URL buffers the response,
//! so there the tail is a long poll: it ends after `max_secs` and the client reconnects.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, TryStreamExt};
use natlake_core::lake::{layout, read};
use natlake_core::model::Table;
use natlake_query::Lake;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

#[derive(Debug, Deserialize)]
pub struct TailParams {
    pub table: Option<String>,
    /// Only rows where one of the address columns (public, inside, destination) is this address.
    pub ip: Option<String>,
    pub poll_ms: Option<u64>,
    pub max_secs: Option<u64>,
}

/// A validated tail request.
#[derive(Debug, Clone)]
pub struct Tail {
    pub table: Table,
    pub ip: Option<IpAddr>,
    pub poll: Duration,
    pub max: Duration,
}

const DEFAULT_POLL_MS: u64 = 2_000;
const MIN_POLL_MS: u64 = 500;
const DEFAULT_MAX_SECS: u64 = 3_600;
const MAX_MAX_SECS: u64 = 86_400;
/// Rows waiting to be sent per client; the tail reads no further objects until they drain.
const MAX_PENDING: usize = 50_000;
/// The columns an `ip` filter looks at.
const ADDRESS_COLUMNS: [&str; 5] = ["x_ip", "src_ip", "dst_ip", "post_nat_src_ip", "peer"];

impl TailParams {
    pub fn validate(&self) -> Result<Tail, String> {
        let name = self
            .table
            .as_deref()
            .ok_or("table is required (nat_events, flows, firewall, rejects, …)")?;
        let table = Table::parse(name)
            .filter(|t| *t != Table::NatCarry)
            .ok_or_else(|| format!("unknown table {name:?}"))?;
        let ip = self
            .ip
            .as_deref()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| format!("ip: not an IP address: {s:?}"))
            })
            .transpose()?;
        let poll = self.poll_ms.unwrap_or(DEFAULT_POLL_MS);
        if poll < MIN_POLL_MS {
            return Err(format!("poll_ms must be at least {MIN_POLL_MS}"));
        }
        let max = self.max_secs.unwrap_or(DEFAULT_MAX_SECS);
        if max == 0 || max > MAX_MAX_SECS {
            return Err(format!("max_secs must be 1..={MAX_MAX_SECS}"));
        }
        Ok(Tail {
            table,
            ip,
            poll: Duration::from_millis(poll),
            max: Duration::from_secs(max),
        })
    }
}

struct State {
    lake: Arc<Lake>,
    tail: Tail,
    /// Keys seen, per hour label (only the last two hours are kept).
    seen: BTreeMap<String, HashSet<Path>>,
    pending: VecDeque<Event>,
    started: bool,
    next_poll: Instant,
    end: Instant,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl State {
    /// Lists the current and previous hour; reads new objects into `pending` (unless this is the
    /// first listing, which only records what exists).
    async fn poll(&mut self) {
        let now = now_micros().div_euclid(1_000_000);
        let hours = [now - 3600, now];
        let labels: Vec<String> = hours
            .iter()
            .map(|s| natlake_raw::key::hour_label(*s))
            .collect();
        self.seen.retain(|h, _| labels.contains(h));
        for (secs, label) in hours.iter().zip(&labels) {
            let prefix = Path::from(layout::hour_dir(self.tail.table, *secs).as_str());
            let listed: Result<Vec<_>, _> = self.lake.store.list(Some(&prefix)).try_collect().await;
            let mut metas = match listed {
                Ok(m) => m,
                Err(e) => {
                    metrics::counter!("natlake_tail_errors_total", "stage" => "list").increment(1);
                    tracing::warn!(error = %e, %prefix, "tail: listing failed; retrying");
                    continue;
                }
            };
            metas.sort_by(|a, b| a.location.cmp(&b.location));
            let seen = self.seen.entry(label.clone()).or_default();
            for m in metas {
                let key = m.location;
                let name = key.filename().unwrap_or_default();
                if !name.ends_with(".parquet") || name.starts_with("compacted") {
                    continue;
                }
                if self.pending.len() >= MAX_PENDING {
                    break; // the rest on a later poll, once the client has caught up
                }
                if !seen.insert(key.clone()) || !self.started {
                    continue;
                }
                match read_rows(&self.lake, &key, self.tail.ip).await {
                    Ok(rows) => {
                        for (i, row) in rows {
                            let ev = Event::default()
                                .event(self.tail.table.as_str())
                                .id(format!("{key}#{i}"))
                                .json_data(row);
                            if let Ok(ev) = ev {
                                self.pending.push_back(ev);
                            }
                        }
                    }
                    Err(e) => {
                        metrics::counter!("natlake_tail_errors_total", "stage" => "read")
                            .increment(1);
                        let ev = Event::default()
                            .event("error")
                            .json_data(serde_json::json!({"key": key.to_string(), "error": e}));
                        if let Ok(ev) = ev {
                            self.pending.push_back(ev);
                        }
                    }
                }
            }
        }
        self.started = true;
    }
}

/// The rows of one object as JSON objects, with their index, filtered by address.
async fn read_rows(
    lake: &Lake,
    key: &Path,
    ip: Option<IpAddr>,
) -> Result<Vec<(usize, Value)>, String> {
    let bytes = lake
        .store
        .get(key)
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let batches = read::parquet_batches(bytes).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        for b in &batches {
            // Rows as the views show them: `recv_time`, not the stored delay.
            let b = read::with_recv_time(b).map_err(|e| e.to_string())?;
            w.write(&b).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    let want = ip.map(|i| i.to_string());
    let mut out = Vec::new();
    for (i, line) in buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let keep = match &want {
            None => true,
            Some(w) => ADDRESS_COLUMNS
                .iter()
                .any(|c| v.get(*c).and_then(Value::as_str) == Some(w.as_str())),
        };
        if keep {
            out.push((i, v));
        }
    }
    Ok(out)
}

/// The event stream of one tail: ends after `max`.
pub fn stream(lake: Arc<Lake>, tail: Tail) -> impl Stream<Item = Result<Event, Infallible>> {
    let now = Instant::now();
    let state = State {
        lake,
        end: now + tail.max,
        tail,
        seen: BTreeMap::new(),
        pending: VecDeque::new(),
        started: false,
        next_poll: now,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.pending.pop_front() {
                metrics::counter!("natlake_tail_rows_total").increment(1);
                return Some((Ok(ev), s));
            }
            let now = Instant::now();
            if now >= s.end {
                return None;
            }
            if now < s.next_poll {
                tokio::time::sleep_until(s.next_poll.min(s.end)).await;
                continue;
            }
            s.next_poll = now + s.tail.poll;
            s.poll().await;
        }
    })
}

pub fn sse(lake: Arc<Lake>, tail: Tail) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(stream(lake, tail)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use natlake_core::lake::writer::{self, WriteOptions};
    use natlake_core::model::NatEventKind;
    use natlake_core::testing::nat_row;
    use object_store::PutPayload;

    async fn put_rows(lake: &Lake, raw_key: &str, insides: &[&str], rename: Option<&str>) {
        // The rows (not `Send`: they share their key non-atomically) are gone before the awaits.
        let outputs = {
            let t = now_micros();
            let rows: Vec<_> = insides
                .iter()
                .enumerate()
                .map(|(i, ip)| {
                    nat_row(
                        t,
                        NatEventKind::SessionCreate,
                        ip,
                        1000 + i as u16,
                        raw_key,
                        i as u64,
                    )
                })
                .collect();
            writer::encode_outputs(raw_key, &rows, &[], &WriteOptions::default()).unwrap()
        };
        for (o, bytes) in outputs {
            let key = match rename {
                Some(name) => format!("{}{name}", &o.key[..=o.key.rfind('/').unwrap()]),
                None => o.key,
            };
            lake.store
                .put(&Path::from(key.as_str()), PutPayload::from_bytes(bytes))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn new_objects_stream_once_and_compaction_outputs_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let lake = Arc::new(Lake::open(&url, dir.path()).unwrap());
        // Already there when the client connects: not replayed.
        put_rows(&lake, "raw/x/hour=h/old.nlraw.zst", &["100.64.0.1"], None).await;
        let tail = TailParams {
            table: Some("nat_events".into()),
            ip: None,
            poll_ms: Some(500),
            max_secs: Some(4),
        }
        .validate()
        .unwrap();
        let mut s = Box::pin(stream(lake.clone(), tail));
        let writer_lake = lake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            put_rows(
                &writer_lake,
                "raw/x/hour=h/new.nlraw.zst",
                &["100.64.0.2", "100.64.0.3"],
                None,
            )
            .await;
            // A compaction output holding the same rows again: must not be sent twice.
            put_rows(
                &writer_lake,
                "raw/x/hour=h/new.nlraw.zst",
                &["100.64.0.2", "100.64.0.3"],
                Some("compacted.parquet"),
            )
            .await;
        });
        let mut got = Vec::new();
        while let Some(Ok(ev)) = s.next().await {
            got.push(format!("{ev:?}"));
        }
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].contains("100.64.0.2") && got[1].contains("100.64.0.3"),
            "{got:#?}"
        );
        assert!(got.iter().all(|e| !e.contains("100.64.0.1")));
    }

    #[tokio::test]
    async fn rows_show_their_receive_time_not_the_stored_delay() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let lake = Lake::open(&url, dir.path()).unwrap();
        let t = 1_795_392_000_000_000; // 2026-11-23T00:00Z
        let mut rows: Vec<_> = (0..2u16)
            .map(|i| {
                nat_row(
                    t,
                    NatEventKind::SessionCreate,
                    "100.64.0.1",
                    1000 + i,
                    "raw/k",
                    u64::from(i),
                )
            })
            .collect();
        rows[0].envelope.recv_time = t + 20_250;
        rows[1].envelope.recv_time = t - 3_000_000; // the device's clock ahead
        let outputs =
            writer::encode_outputs("raw/k", &rows, &[], &WriteOptions::default()).unwrap();
        let (o, bytes) = outputs.into_iter().next().unwrap();
        let key = Path::from(o.key.as_str());
        lake.store
            .put(&key, PutPayload::from_bytes(bytes))
            .await
            .unwrap();
        let got = read_rows(&lake, &key, None).await.unwrap();
        assert_eq!(got.len(), 2);
        for (i, v) in &got {
            assert!(v.get("recv_delay_us").is_none(), "{v}");
            let shown = v["recv_time"].as_str().unwrap_or_default();
            let want = rows[v["raw_record"].as_u64().unwrap() as usize]
                .envelope
                .recv_time;
            assert_eq!(
                natlake_core::time::parse_time(shown).ok(),
                Some(want),
                "row {i}: {v}"
            );
        }
    }

    #[tokio::test]
    async fn the_ip_filter_keeps_matching_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let lake = Arc::new(Lake::open(&url, dir.path()).unwrap());
        let tail = TailParams {
            table: Some("nat_events".into()),
            ip: Some("100.64.0.9".into()),
            poll_ms: Some(500),
            max_secs: Some(3),
        }
        .validate()
        .unwrap();
        let mut s = Box::pin(stream(lake.clone(), tail));
        let writer_lake = lake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            put_rows(
                &writer_lake,
                "raw/x/hour=h/a.nlraw.zst",
                &["100.64.0.8", "100.64.0.9"],
                None,
            )
            .await;
        });
        let mut got = Vec::new();
        while let Some(Ok(ev)) = s.next().await {
            got.push(format!("{ev:?}"));
        }
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("100.64.0.9"));
    }

    #[test]
    fn bad_parameters_are_explained() {
        let p = |table: Option<&str>, ip: Option<&str>, poll: Option<u64>, max: Option<u64>| {
            TailParams {
                table: table.map(Into::into),
                ip: ip.map(Into::into),
                poll_ms: poll,
                max_secs: max,
            }
            .validate()
            .unwrap_err()
        };
        assert!(p(None, None, None, None).contains("table is required"));
        assert!(p(Some("nat_carry"), None, None, None).contains("unknown table"));
        assert!(p(Some("nat_events"), Some("1.2.3"), None, None).contains("not an IP"));
        assert!(p(Some("flows"), None, Some(10), None).contains("poll_ms"));
        assert!(p(Some("flows"), None, None, Some(0)).contains("max_secs"));
    }
}
