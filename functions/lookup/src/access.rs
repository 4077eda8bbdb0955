//! Who may ask, and the record of what was asked.
//!
//! API keys (local service): `Authorization: Bearer <key>`; keys are configured by name and
//! SHA-256 digest only (`NATLAKE_API_KEYS=desk:9f86d0…,police-liaison:…`), never in clear. With no
//! keys configured the service is open (loopback / `natlake up`); on Lambda the function URL's
//! AWS_IAM auth stands in front.
//!
//! Audit: every answered request is appended to the store as one object under
//! `audit/hour=YYYY-MM-DDTHH/` (who, when, what was asked, what was answered) before the answer
//! leaves; if it cannot be written the request fails (503) rather than go unrecorded.

use std::sync::Arc;

use natlake_core::secret;
use natlake_core::time::{format_time, now_micros};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

/// The name a request is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Configured API keys: (name, SHA-256 of the key).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Vec<(String, [u8; 32])>);

impl ApiKeys {
    /// `name:hexdigest[,name:hexdigest…]` (blank: no keys).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, hex) = item
                .split_once(':')
                .ok_or_else(|| format!("API key {item:?}: expected name:sha256-hex"))?;
            let digest = secret::parse_digest(hex)
                .ok_or_else(|| format!("API key {name:?}: the digest must be 64 hex digits"))?;
            keys.push((name.trim().to_owned(), digest));
        }
        Ok(Self(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name of the key presented, if it is one of ours.
    pub fn who(&self, presented: &str) -> Option<&str> {
        // Every key compared in full: the time taken says nothing about which one matched.
        let mut found = None;
        for (name, want) in &self.0 {
            if secret::matches(want, presented) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// The SHA-256 hex digest to configure for a key.
pub fn key_digest(key: &str) -> String {
    secret::digest_hex(key)
}

/// Appends audit records to the store.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn ObjectStore>,
}

impl Audit {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Writes one record; the key is unique (time + UUIDv7), so records never overwrite.
    pub async fn record(
        &self,
        caller: &Caller,
        endpoint: &str,
        asked: Value,
        answered: Value,
    ) -> Result<String, object_store::Error> {
        let now = now_micros();
        let key = format!(
            "audit/hour={}/{now:016}-{}.json",
            natlake_core::lake::layout::hour_label(now),
            uuid::Uuid::now_v7()
        );
        let body = json!({
            "time": format_time(now),
            "who": caller.0,
            "endpoint": endpoint,
            "asked": asked,
            "answered": answered,
        });
        self.store
            .put(
                &Path::from(key.as_str()),
                PutPayload::from(body.to_string().into_bytes()),
            )
            .await?;
        metrics::counter!("natlake_lookup_audit_records_total", "endpoint" => endpoint.to_owned())
            .increment(1);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_matched_by_digest_only() {
        let spec = format!(
            "desk:{},liaison:{}",
            key_digest("s3cret"),
            key_digest("other")
        );
        let keys = ApiKeys::parse(&spec).unwrap();
        assert_eq!(keys.who("s3cret"), Some("desk"));
        assert_eq!(keys.who("other"), Some("liaison"));
        assert_eq!(keys.who("s3cret "), None);
        assert_eq!(keys.who(""), None);
        assert!(ApiKeys::parse("").unwrap().is_empty());
        assert!(ApiKeys::parse("desk").unwrap_err().contains("name:sha256"));
        assert!(ApiKeys::parse("desk:abc").unwrap_err().contains("64 hex"));
        // The digest of "test", as sha256sum prints it.
        assert_eq!(
            key_digest("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[tokio::test]
    async fn audit_records_are_objects_under_audit() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let audit = Audit::new(store.clone());
        let caller = Caller("desk".into());
        let k1 = audit
            .record(
                &caller,
                "attribution",
                json!({"ip": "198.51.100.7"}),
                json!({"matches": 1}),
            )
            .await
            .unwrap();
        let k2 = audit
            .record(&caller, "attribution", json!({}), json!({}))
            .await
            .unwrap();
        assert_ne!(k1, k2);
        assert!(
            k1.starts_with("audit/hour=") && k1.ends_with(".json"),
            "{k1}"
        );
        let got = store
            .get(&Path::from(k1.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(v["who"], "desk");
        assert_eq!(v["endpoint"], "attribution");
        assert_eq!(v["asked"]["ip"], "198.51.100.7");
    }
}
