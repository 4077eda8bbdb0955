//! The normalize handler: one raw object in, Parquet partitions and rejects out.
//!
//! Idempotent: output keys derive from the raw key, so a retry or a second notification for the
//! same object overwrites what the first run wrote. A marker under `_state/normalized/` records
//! the outcome so pollers and backfills can skip finished objects.

use std::sync::Arc;

use natlake_core::lake::writer::{self, LakeError, Output, WriteOptions};
use natlake_core::model::{Envelope, Event, Micros, Provenance, Reject, Row};
use natlake_core::parsers::{self, Format, ParseCtx};
use natlake_core::time::{MAX_TIME, MIN_TIME};
use natlake_raw::{BatchReader, InputKind};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

pub const STATE_PREFIX: &str = "_state/normalized";

/// Settings of the normalize function.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Parser to use for every record ("auto" detects per record).
    pub format: String,
    /// Device clock offset from UTC in seconds, for timestamps without one (RFC 3164).
    pub tz_offset_secs: i32,
    /// Events more than this far ahead of their receive time are rejected as absurd.
    pub max_future_secs: i64,
    pub zstd_level: i32,
    pub row_group_rows: usize,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        let w = WriteOptions::default();
        Self {
            format: "auto".into(),
            tz_offset_secs: 0,
            max_future_secs: 86_400,
            zstd_level: w.zstd_level,
            row_group_rows: w.row_group_rows,
        }
    }
}

impl NormalizeConfig {
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            zstd_level: self.zstd_level,
            row_group_rows: self.row_group_rows,
            ..WriteOptions::default()
        }
    }

    pub fn parsed_format(&self) -> Result<Format, NormalizeError> {
        Format::parse(&self.format)
            .ok_or_else(|| NormalizeError::Config(format!("unknown format {:?}", self.format)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("reading {key}: {source}")]
    Read {
        key: String,
        source: object_store::Error,
    },
    #[error("writing outputs of {key}: {source}")]
    Write { key: String, source: LakeError },
}

impl NormalizeError {
    /// Store trouble is worth retrying; configuration errors are not.
    pub fn is_transient(&self) -> bool {
        !matches!(self, NormalizeError::Config(_))
    }
}

/// What normalizing one raw object did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub raw_key: String,
    pub records: u64,
    /// Context records (replayed templates) are read but produce no rows.
    pub context: u64,
    pub events: u64,
    pub rejects: u64,
    /// Set when the object could only be read in part (truncated, corrupt): what was wrong.
    pub damage: Option<String>,
    pub outputs: Vec<String>,
}

/// Rows and rejects of one raw object: the pure part of the handler.
pub struct Normalized {
    pub rows: Vec<Row>,
    pub rejects: Vec<Reject>,
    pub report: Report,
}

fn reject(
    key: &str,
    index: u64,
    recv: Micros,
    reason: String,
    format: &str,
    kind: &str,
    peer: Option<String>,
    payload: Vec<u8>,
) -> Reject {
    metrics::counter!("natlake_normalize_rejects_total", "format" => format.to_string())
        .increment(1);
    Reject {
        recv_time: recv,
        reason,
        format: format.to_string(),
        input_kind: kind.to_string(),
        peer,
        payload,
        provenance: Provenance {
            raw_key: key.to_string(),
            raw_record: index,
        },
    }
}

/// Decodes and parses a raw object's bytes. Never fails: what cannot be read becomes a reject.
pub fn normalize_bytes(
    key: &str,
    bytes: &[u8],
    format: Format,
    cfg: &NormalizeConfig,
) -> Normalized {
    let mut out = Normalized {
        rows: Vec::new(),
        rejects: Vec::new(),
        report: Report {
            raw_key: key.to_string(),
            ..Report::default()
        },
    };
    let now = natlake_core::time::now_micros();
    let reader = match BatchReader::from_compressed(bytes) {
        Ok(r) => r,
        Err(e) => {
            // The whole object is unreadable: one reject that points at it, with its bytes.
            let reason = format!("unreadable raw object: {e}");
            out.report.damage = Some(reason.clone());
            out.rejects.push(reject(
                key,
                0,
                now,
                reason,
                "raw",
                "unknown",
                None,
                bytes.to_vec(),
            ));
            out.report.rejects = 1;
            return out;
        }
    };
    let mut events: Vec<Event> = Vec::with_capacity(4);
    for item in reader {
        let (index, rec) = match item {
            Ok(x) => x,
            Err(e) => {
                let index = match &e {
                    natlake_raw::RawError::Record { index, .. }
                    | natlake_raw::RawError::Truncated { index, .. } => *index,
                    _ => out.report.records,
                };
                let reason = format!("raw object damaged: {e}");
                out.report.damage = Some(reason.clone());
                out.rejects.push(reject(
                    key,
                    index,
                    now,
                    reason,
                    "raw",
                    "unknown",
                    None,
                    Vec::new(),
                ));
                break;
            }
        };
        out.report.records += 1;
        if rec.is_context() {
            out.report.context += 1;
            continue;
        }
        let recv = rec.recv_ns.div_euclid(1000);
        let peer = rec.peer.map(|p| p.to_string());
        let format = match rec.kind {
            // Kept raw by the relay; the IPFIX / NetFlow v9 decoder is not part of this version,
            // so the records wait in rejects (with their bytes) for a re-run that decodes them.
            InputKind::Ipfix | InputKind::Netflow => {
                let reason = format!("{} records are not decoded by this version", rec.kind);
                out.rejects.push(reject(
                    key,
                    index,
                    recv,
                    reason,
                    rec.kind.as_str(),
                    rec.kind.as_str(),
                    peer,
                    rec.payload,
                ));
                continue;
            }
            // The relay renders netlink events as `conntrack -E -o timestamp,extended` lines.
            InputKind::ConntrackNetlink => Format::Conntrack,
            _ => format,
        };
        let ctx = ParseCtx {
            recv_time: recv,
            tz_offset_secs: cfg.tz_offset_secs,
        };
        events.clear();
        match parsers::parse_message(&rec.payload, format, &ctx, &mut events) {
            Ok(parsed) => {
                let limit = recv.saturating_add(cfg.max_future_secs.saturating_mul(1_000_000));
                if let Some(bad) = events
                    .iter()
                    .find(|e| !(MIN_TIME..=limit.min(MAX_TIME)).contains(&e.time()))
                {
                    let reason = format!(
                        "absurd event time {} (received {})",
                        natlake_core::time::format_time(bad.time()),
                        natlake_core::time::format_time(recv)
                    );
                    out.rejects.push(reject(
                        key,
                        index,
                        recv,
                        reason,
                        parsed.format,
                        rec.kind.as_str(),
                        peer,
                        rec.payload,
                    ));
                    continue;
                }
                let device = parsed
                    .host
                    .clone()
                    .or_else(|| rec.peer.map(|p| p.ip().to_string()));
                for ev in events.drain(..) {
                    out.rows.push(Row {
                        event: ev,
                        envelope: Envelope {
                            recv_time: recv,
                            device: device.clone(),
                            format: parsed.format,
                            subscriber: None,
                        },
                        provenance: Provenance {
                            raw_key: key.to_string(),
                            raw_record: index,
                        },
                    });
                }
            }
            Err(e) => {
                out.rejects.push(reject(
                    key,
                    index,
                    recv,
                    e.reason,
                    e.format,
                    rec.kind.as_str(),
                    peer,
                    rec.payload,
                ));
            }
        }
    }
    out.report.events = out.rows.len() as u64;
    out.report.rejects = out.rejects.len() as u64;
    out
}

fn marker_key(raw_key: &str) -> Path {
    Path::from(format!("{STATE_PREFIX}/{raw_key}.json"))
}

/// Whether a raw object was already normalized (its marker exists).
pub async fn is_done(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
) -> Result<bool, object_store::Error> {
    match store.head(&marker_key(raw_key)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The handler every door calls: read, normalize, publish, mark done.
pub async fn normalize_object(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
    cfg: &NormalizeConfig,
) -> Result<Report, NormalizeError> {
    let format = cfg.parsed_format()?;
    let started = std::time::Instant::now();
    let bytes = async { store.get(&Path::from(raw_key)).await?.bytes().await }
        .await
        .map_err(|source| NormalizeError::Read {
            key: raw_key.to_string(),
            source,
        })?;
    let key = raw_key.to_string();
    let cfg2 = cfg.clone();
    // Parsing and encoding are CPU-bound: keep them off the async workers.
    let joined = tokio::task::spawn_blocking(move || {
        let n = normalize_bytes(&key, &bytes, format, &cfg2);
        let outputs = writer::encode_outputs(&key, &n.rows, &n.rejects, &cfg2.write_options());
        (n.report, outputs)
    })
    .await;
    let (mut report, outputs) = match joined {
        Ok(x) => x,
        Err(e) => {
            return Err(NormalizeError::Config(format!(
                "normalize task failed: {e}"
            )));
        }
    };
    let outputs = outputs.map_err(|source| NormalizeError::Write {
        key: raw_key.to_string(),
        source,
    })?;
    let published: Vec<Output> =
        writer::publish(store, outputs)
            .await
            .map_err(|source| NormalizeError::Write {
                key: raw_key.to_string(),
                source,
            })?;
    report.outputs = published.iter().map(|o| o.key.clone()).collect();
    let marker = serde_json::to_vec(&report).unwrap_or_default();
    store
        .put(&marker_key(raw_key), PutPayload::from(marker))
        .await
        .map_err(|source| NormalizeError::Write {
            key: raw_key.to_string(),
            source: LakeError::Store(source),
        })?;
    metrics::counter!("natlake_normalize_objects_total").increment(1);
    metrics::counter!("natlake_normalize_records_total").increment(report.records);
    metrics::counter!("natlake_normalize_events_total").increment(report.events);
    metrics::histogram!("natlake_normalize_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(
        raw_key,
        records = report.records,
        events = report.events,
        rejects = report.rejects,
        outputs = report.outputs.len(),
        "normalized"
    );
    Ok(report)
}

/// Retries transient failures with backoff; after the last attempt the failure is recorded under
/// `_state/dead-letter/` (never dropped silently) and returned.
pub async fn normalize_with_retry(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
    cfg: &NormalizeConfig,
    attempts: u32,
) -> Result<Report, NormalizeError> {
    let mut delay = std::time::Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match normalize_object(store, raw_key, cfg).await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_transient() && attempt < attempts => {
                tracing::warn!(raw_key, attempt, error = %e, "normalize failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                attempt += 1;
            }
            Err(e) => {
                metrics::counter!("natlake_normalize_dead_letters_total").increment(1);
                let body = serde_json::json!({"raw_key": raw_key, "error": e.to_string(), "attempts": attempt, "at": natlake_core::time::format_time(natlake_core::time::now_micros())});
                let dl = Path::from(format!("_state/dead-letter/{raw_key}.json"));
                if let Err(pe) = store
                    .put(&dl, PutPayload::from(body.to_string().into_bytes()))
                    .await
                {
                    tracing::error!(raw_key, error = %pe, "could not record dead letter");
                }
                tracing::error!(raw_key, error = %e, "normalize gave up; recorded as dead letter");
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use natlake_raw::{BatchHeader, BatchWriter, Record};

    const CT_NEW: &str = "<134>1 2023-11-14T22:13:20Z cgn1 ct - - - [1700000000.000000]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.0.1 dst=203.0.113.5 sport=40000 dport=443 [UNREPLIED] src=203.0.113.5 dst=198.51.100.7 sport=443 dport=61000";

    fn raw_object(payloads: &[&[u8]]) -> Vec<u8> {
        let header = BatchHeader {
            format_version: natlake_raw::VERSION,
            relay_id: "t".into(),
            batch_id: "b".into(),
            kind: InputKind::SyslogUdp,
            created_ns: 1_700_000_000_000_000_000,
            labels: Default::default(),
        };
        let mut w = BatchWriter::new(&header, 3).unwrap();
        for p in payloads {
            w.push(&Record {
                recv_ns: 1_700_000_001_000_000_000,
                kind: InputKind::SyslogUdp,
                flags: 0,
                peer: Some("192.0.2.1:514".parse().unwrap()),
                payload: p.to_vec(),
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    async fn keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
        let mut k: Vec<String> = store
            .list(Some(&Path::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        k.sort();
        k
    }

    #[tokio::test]
    async fn normalizes_idempotently_and_keeps_rejects() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let key = "raw/syslog_udp/hour=2023-11-14T22/t_b.nlraw.zst";
        let absurd = CT_NEW.replace("[1700000000.000000]", "[4102444800.000000]");
        let obj = raw_object(&[
            CT_NEW.as_bytes(),
            b"\xff\xfe binary junk",
            absurd.as_bytes(),
        ]);
        store
            .put(&Path::from(key), PutPayload::from(obj))
            .await
            .unwrap();
        let cfg = NormalizeConfig::default();
        let r1 = normalize_object(&store, key, &cfg).await.unwrap();
        assert_eq!((r1.records, r1.events, r1.rejects), (3, 1, 2));
        assert_eq!(
            r1.outputs,
            vec![
                "lake/nat_events/hour=2023-11-14T22/x_net=198.51.100.0_24/t_b.parquet".to_string(),
                "lake/rejects/hour=2023-11-14T22/t_b.parquet".to_string(),
            ]
        );
        assert!(is_done(&store, key).await.unwrap());
        let before = keys(&store, "lake").await;
        let r2 = normalize_object(&store, key, &cfg).await.unwrap();
        assert_eq!(r1, r2, "same input, same report");
        assert_eq!(
            keys(&store, "lake").await,
            before,
            "a second run writes the same keys"
        );
    }

    #[test]
    fn damaged_objects_keep_what_precedes_the_damage() {
        let obj = raw_object(&[CT_NEW.as_bytes(), CT_NEW.as_bytes()]);
        let cut = &obj[..obj.len() - 8];
        let n = normalize_bytes(
            "raw/k.nlraw.zst",
            cut,
            Format::Auto,
            &NormalizeConfig::default(),
        );
        assert!(n.report.damage.is_some(), "{:?}", n.report);
        assert_eq!(n.rejects.len(), 1, "the damage is one reject");
        let n = normalize_bytes(
            "raw/k.nlraw.zst",
            b"definitely not zstd",
            Format::Auto,
            &NormalizeConfig::default(),
        );
        assert_eq!((n.rows.len(), n.rejects.len()), (0, 1));
        assert_eq!(n.rejects[0].payload, b"definitely not zstd");
        assert!(n.rejects[0].reason.starts_with("unreadable raw object"));
    }
}
