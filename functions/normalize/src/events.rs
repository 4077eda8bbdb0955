//! S3 event notifications (AWS and MinIO send the same `Records` shape) into raw object keys.

use aws_lambda_events::s3::S3Event;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("record {0} has no object key")]
    NoKey(usize),
    #[error("object {key:?} in bucket {bucket:?} is outside this function's store ({expected})")]
    Foreign {
        bucket: String,
        key: String,
        expected: String,
    },
}

/// Where this function's store lives, to recognise the keys that belong to it.
#[derive(Debug, Clone)]
pub struct StoreScope {
    /// Bucket name; None for stores without buckets (file://).
    pub bucket: Option<String>,
    /// Prefix inside the bucket, without slashes at the ends ("" for none).
    pub prefix: String,
}

impl StoreScope {
    /// From a store URL such as `s3://bucket/prefix` or `file:///data`.
    pub fn from_url(url: &str) -> Self {
        match url
            .strip_prefix("s3://")
            .or_else(|| url.strip_prefix("s3a://"))
        {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Self {
                    bucket: Some(bucket.to_string()),
                    prefix: prefix.trim_matches('/').to_string(),
                }
            }
            None => Self {
                bucket: None,
                prefix: String::new(),
            },
        }
    }
}

/// S3 notification keys are URL-encoded with `+` for spaces.
pub fn decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether a record announces a new object. AWS names events `ObjectCreated:Put`, MinIO
/// `s3:ObjectCreated:Put`; a record without a name is taken as a creation (hand-made events).
fn is_created(event_name: Option<&str>) -> bool {
    event_name.is_none_or(|n| n.contains("ObjectCreated:"))
}

/// The store-relative raw keys an event names. Keys outside `raw/` (our own outputs, if a
/// notification is configured too broadly) and records of other events (a deleted or read
/// object: normalizing it would only fail) are skipped, not errors.
pub fn raw_keys(event: &S3Event, scope: &StoreScope) -> Result<Vec<String>, EventError> {
    let mut keys = Vec::new();
    for (i, rec) in event.records.iter().enumerate() {
        if !is_created(rec.event_name.as_deref()) {
            continue;
        }
        let raw = rec.s3.object.key.as_deref().ok_or(EventError::NoKey(i))?;
        let key = decode_key(raw);
        let bucket = rec.s3.bucket.name.clone().unwrap_or_default();
        if let Some(b) = &scope.bucket
            && !bucket.is_empty()
            && &bucket != b
        {
            return Err(EventError::Foreign {
                bucket,
                key,
                expected: b.clone(),
            });
        }
        let rel = if scope.prefix.is_empty() {
            key.as_str()
        } else {
            match key
                .strip_prefix(&scope.prefix)
                .and_then(|k| k.strip_prefix('/'))
            {
                Some(k) => k,
                None => {
                    return Err(EventError::Foreign {
                        bucket,
                        key: key.clone(),
                        expected: scope.prefix.clone(),
                    });
                }
            }
        };
        if rel.starts_with("raw/") && rel.ends_with(natlake_raw::SUFFIX) {
            keys.push(rel.to_string());
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bucket: &str, key: &str) -> S3Event {
        named_event("ObjectCreated:Put", bucket, key)
    }

    fn named_event(name: &str, bucket: &str, key: &str) -> S3Event {
        serde_json::from_value(serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2024-05-01T12:00:00.000Z", "eventName": name,
            "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "192.0.2.10"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "raw",
                   "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
                   "object": {"key": key, "size": 10, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"}}
        }]}))
        .unwrap()
    }

    #[test]
    fn keys_are_decoded_scoped_and_filtered() {
        let scope = StoreScope::from_url("s3://lake-bucket/site%201");
        assert_eq!(scope.prefix, "site%201");
        let scope = StoreScope {
            bucket: Some("lake-bucket".into()),
            prefix: "site 1".into(),
        };
        let ev = event(
            "lake-bucket",
            "site+1/raw/syslog_udp/hour=2024-05-01T12/r1_a%3Ab.nlraw.zst",
        );
        assert_eq!(
            raw_keys(&ev, &scope).unwrap(),
            vec!["raw/syslog_udp/hour=2024-05-01T12/r1_a:b.nlraw.zst"]
        );
        let other = event("other", "site+1/raw/x.nlraw.zst");
        assert!(matches!(
            raw_keys(&other, &scope),
            Err(EventError::Foreign { .. })
        ));
        let ours = event("lake-bucket", "site+1/lake/nat_events/x.parquet");
        assert!(raw_keys(&ours, &scope).unwrap().is_empty());
    }

    #[test]
    fn only_creations_name_work() {
        let scope = StoreScope::from_url("s3://lake");
        let key = "raw/syslog_udp/hour=2024-05-01T12/r1_b.nlraw.zst";
        for name in [
            "ObjectCreated:Put",
            "ObjectCreated:CompleteMultipartUpload",
            "s3:ObjectCreated:Put",
            "s3:ObjectCreated:Copy",
        ] {
            assert_eq!(
                raw_keys(&named_event(name, "lake", key), &scope).unwrap(),
                vec![key],
                "{name}"
            );
        }
        for name in [
            "ObjectRemoved:Delete",
            "s3:ObjectRemoved:Delete",
            "s3:ObjectAccessed:Get",
        ] {
            assert!(
                raw_keys(&named_event(name, "lake", key), &scope)
                    .unwrap()
                    .is_empty(),
                "{name}"
            );
        }
    }

    /// MinIO escapes the whole object name with Go's `url.QueryEscape` (`/` too, space as `+`)
    /// and adds `EventName`, `Key` and `source` around the AWS shape.
    #[test]
    fn minio_webhook_body_decodes() {
        let body = serde_json::json!({
            "EventName": "s3:ObjectCreated:Put",
            "Key": "lake/site 1/raw/syslog_udp/hour=2024-05-01T12/r1_a:b.nlraw.zst",
            "Records": [{
                "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
                "eventTime": "2024-05-01T12:00:01.123Z", "eventName": "s3:ObjectCreated:Put",
                "userIdentity": {"principalId": "minioadmin"},
                "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8", "x-amz-request-id": "17F4C2A7A3A1E1B2", "x-minio-deployment-id": "2c4f0e39-8a3e-4b0c-9b1e-3c1f2a7d9e10", "x-minio-origin-endpoint": "http://127.0.0.1:9000"},
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                       "bucket": {"name": "lake", "ownerIdentity": {"principalId": "minioadmin"}, "arn": "arn:aws:s3:::lake"},
                       "object": {"key": "site+1%2Fraw%2Fsyslog_udp%2Fhour%3D2024-05-01T12%2Fr1_a%3Ab.nlraw.zst", "size": 10, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "contentType": "application/zstd", "userMetadata": {"content-type": "application/zstd"}, "sequencer": "17F4C2A7A3B6C0D4"}},
                "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"}
            }]
        });
        let ev: S3Event = serde_json::from_value(body).unwrap();
        let scope = StoreScope {
            bucket: Some("lake".into()),
            prefix: "site 1".into(),
        };
        assert_eq!(
            raw_keys(&ev, &scope).unwrap(),
            vec!["raw/syslog_udp/hour=2024-05-01T12/r1_a:b.nlraw.zst"]
        );
    }
}
