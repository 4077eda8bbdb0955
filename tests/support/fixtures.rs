//! Inputs and checks shared by the normalize end-to-end tests (Lambda, webhook, backfill): raw
//! objects built from real corpus lines, S3 notifications in the shapes AWS and MinIO send, and
//! the lake read back from a store and compared with what the handler makes of the same bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use futures::TryStreamExt;
use natlake_core::lake::read;
use natlake_core::lake::writer::{self, WriteOptions};
use natlake_core::model::{Reject, Row};
use natlake_raw::{BatchHeader, BatchWriter, InputKind, Record};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

/// The sample lines of a corpus file, verbatim (leading blanks are part of conntrack's output):
/// every line that is neither empty nor a `#` comment.
pub fn corpus_samples(file: &str) -> anyhow::Result<Vec<String>> {
    let path = crate::corpus(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("corpus file {} (set NATLAKE_CORPUS)", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// A raw object as the relay writes it: one record per line, received one millisecond apart
/// from `created_ns` on. Returns its bytes.
pub fn raw_object(
    kind: InputKind,
    created_ns: i64,
    relay: &str,
    batch: &str,
    lines: &[String],
) -> anyhow::Result<Vec<u8>> {
    let header = BatchHeader {
        format_version: natlake_raw::VERSION,
        relay_id: relay.into(),
        batch_id: batch.into(),
        kind,
        created_ns,
        labels: Default::default(),
    };
    let mut w = BatchWriter::new(&header, 3)?;
    for (i, line) in lines.iter().enumerate() {
        w.push(&Record {
            recv_ns: created_ns + i as i64 * 1_000_000,
            kind,
            flags: 0,
            peer: Some("192.0.2.7:514".parse()?),
            payload: line.as_bytes().to_vec(),
        })?;
    }
    Ok(w.finish()?)
}

/// Go's `url.QueryEscape`, which MinIO applies to the whole object name: everything but
/// `A-Za-z0-9-_.~` is percent-encoded (`/` too), a space becomes `+`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// How AWS writes keys in S3 event notifications: form-encoded like `query_escape`, but `/`
/// stays as is (`hour=…` arrives as `hour%3D…`).
pub fn aws_key_escape(key: &str) -> String {
    key.split('/')
        .map(query_escape)
        .collect::<Vec<_>>()
        .join("/")
}

/// An S3 `ObjectCreated:Put` event in the shape AWS documents (and Lambda receives).
pub fn aws_put_event(bucket: &str, escaped_key: &str, size: usize) -> serde_json::Value {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T10:00:05.123Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "172.16.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "natlake-raw",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": format!("arn:aws:s3:::{bucket}")
            },
            "object": {
                "key": escaped_key,
                "size": size,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "sequencer": "0055AED6DCD90281E5"
            }
        }
    }]})
}

/// The body MinIO's webhook target POSTs for a PUT (MinIO's `event.Log`): `EventName`, `Key`
/// (bucket/name, unescaped) and the AWS-shaped `Records`, whose key is `url.QueryEscape`d.
pub fn minio_webhook_body(bucket: &str, name: &str, size: usize) -> serde_json::Value {
    serde_json::json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": format!("{bucket}/{name}"),
        "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-11-23T10:00:05.123Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "natlake"},
            "requestParameters": {"principalId": "natlake", "region": "", "sourceIPAddress": "127.0.0.1"},
            "responseElements": {
                "x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
                "x-amz-request-id": "187A2C5D1E3F4A6B",
                "x-minio-deployment-id": "6d0c4e4a-6a0b-4d38-9a51-5e4b9f5c2a11",
                "x-minio-origin-endpoint": "http://127.0.0.1:9000"
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": {"principalId": "natlake"},
                    "arn": format!("arn:aws:s3:::{bucket}")
                },
                "object": {
                    "key": query_escape(name),
                    "size": size,
                    "eTag": "4c5b8b0f2a0e3d7f9c1a2b3c4d5e6f70",
                    "contentType": "application/octet-stream",
                    "userMetadata": {"content-type": "application/octet-stream"},
                    "sequencer": "187A2C5D1E6B8C90"
                }
            },
            "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.90"}
        }]
    })
}

/// Opens the store a test's program was given, with the server's credentials.
pub fn open_s3(weed: &crate::weed::Weed, url: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(natlake_store::open(
        url,
        &natlake_store::S3Options {
            endpoint: Some(weed.endpoint()),
            access_key_id: Some(crate::weed::S3_KEY.into()),
            secret_access_key: Some(crate::weed::S3_SECRET.into()),
            ..Default::default()
        },
    )?)
}

/// Every key under `prefix`, sorted.
pub async fn list_keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = store
        .list(Some(&StorePath::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    keys.sort();
    Ok(keys)
}

/// Each lake object's rows by their provenance: key → sorted (raw_key, raw_record).
pub type LakeRows = BTreeMap<String, Vec<(String, i64)>>;

fn provenance_of(bytes: bytes::Bytes) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for batch in read::parquet_batches(bytes)? {
        for (k, r) in read::provenance(&batch)? {
            out.push((
                k.context("row without raw_key")?.to_string(),
                r.context("row without raw_record")?,
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// The lake objects the handler writes for these rows and rejects (the caller computes them in
/// process with `natlake_normalize::handler::normalize_bytes`), with their rows.
pub fn expected_lake(raw_key: &str, rows: &[Row], rejects: &[Reject]) -> anyhow::Result<LakeRows> {
    let mut out = LakeRows::new();
    for (o, data) in writer::encode_outputs(raw_key, rows, rejects, &WriteOptions::default())? {
        out.insert(o.key, provenance_of(data)?);
    }
    Ok(out)
}

/// The lake objects in the store that came from `raw_key`, with their rows.
pub async fn stored_lake(store: &Arc<dyn ObjectStore>, raw_key: &str) -> anyhow::Result<LakeRows> {
    let stem = natlake_raw::key::stem(raw_key);
    let mut out = LakeRows::new();
    for key in list_keys(store, "lake").await? {
        if !key.ends_with(&format!("/{stem}.parquet")) {
            continue;
        }
        let bytes = store
            .get(&StorePath::from(key.as_str()))
            .await?
            .bytes()
            .await?;
        out.insert(key, provenance_of(bytes)?);
    }
    Ok(out)
}

/// Checks that the store holds exactly the lake objects `want` names (same keys, same rows by
/// provenance), every row pointing at a record of this raw object. (A record can yield no row
/// and no reject: conntrack `[UPDATE]` lines parse but carry no new mapping.) Returns the
/// stored objects.
pub async fn check_lake(
    store: &Arc<dyn ObjectStore>,
    raw_key: &str,
    want: &LakeRows,
    records: usize,
) -> anyhow::Result<LakeRows> {
    let got = stored_lake(store, raw_key).await?;
    ensure!(
        got.keys().eq(want.keys()),
        "lake objects of {raw_key}:\n got {:?}\nwant {:?}",
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (key, rows) in want {
        ensure!(&got[key] == rows, "rows of {key} differ from the handler's");
    }
    for rows in got.values() {
        for (k, r) in rows {
            ensure!(
                k == raw_key,
                "a row names raw object {k:?}, not {raw_key:?}"
            );
            if usize::try_from(*r).ok().is_none_or(|i| i >= records) {
                bail!("a row names record {r} of a {records}-record object");
            }
        }
    }
    ensure!(!got.is_empty(), "nothing in the lake from {raw_key}");
    Ok(got)
}

/// The `nat_events` rows of the stored objects.
pub async fn nat_rows(
    store: &Arc<dyn ObjectStore>,
    lake: &LakeRows,
) -> anyhow::Result<Vec<natlake_core::correlate::NatRow>> {
    let mut out = Vec::new();
    for key in lake.keys().filter(|k| k.starts_with("lake/nat_events/")) {
        let bytes = store
            .get(&StorePath::from(key.as_str()))
            .await?
            .bytes()
            .await?;
        for batch in read::parquet_batches(bytes)? {
            out.extend(read::nat_rows(&batch)?);
        }
    }
    Ok(out)
}

/// A NAT translation a corpus source annotates (`# derived …: … orig.src=A … orig.sport=P …
/// => nat.src=X nat.sport=Q`): the subscriber side and the public side of one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub src: std::net::IpAddr,
    pub sport: u16,
    pub x: std::net::IpAddr,
    pub xport: u16,
}

/// The translations annotated in a corpus file.
pub fn corpus_translations(file: &str) -> anyhow::Result<Vec<Translation>> {
    let path = crate::corpus(file);
    let text = std::fs::read_to_string(&path)?;
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with('#') && l.contains("=> nat.src="))
    {
        let field = |name: &str| -> anyhow::Result<&str> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .with_context(|| format!("{name} missing in {line:?}"))
        };
        out.push(Translation {
            src: field("orig.src=")?.parse()?,
            sport: field("orig.sport=")?.parse()?,
            x: field("nat.src=")?.parse()?,
            xport: field("nat.sport=")?.parse()?,
        });
    }
    Ok(out)
}

/// Writes `bytes` under `key` in `store`.
pub async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    store
        .put(&StorePath::from(key), bytes.into())
        .await
        .with_context(|| format!("putting {key}"))?;
    Ok(())
}

/// A temporary file holding `text`.
pub fn write_temp(dir: &Path, name: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}
