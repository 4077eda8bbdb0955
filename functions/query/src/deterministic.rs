//! Where the lookup finds the deterministic NAT configuration: a fixed one (a file given on the
//! command line) or the object `config/deterministic_nat.toml` in the store, re-read every
//! minute so a change published there reaches running lookups (and cold Lambdas) without a
//! restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use natlake_core::deterministic::{DetConfig, STORE_KEY};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// How long a configuration read from the store is used before it is read again.
const STORE_TTL: Duration = Duration::from_secs(60);

enum Origin {
    Fixed(Arc<DetConfig>),
    Store(Arc<dyn ObjectStore>),
}

/// The configuration as of the last read, or why it could not be read.
type Loaded = Result<Option<Arc<DetConfig>>, String>;

pub struct DetSource {
    origin: Origin,
    label: String,
    cache: tokio::sync::Mutex<Option<(Instant, Loaded)>>,
}

impl DetSource {
    /// The store's `config/deterministic_nat.toml`; absent means no deterministic NAT.
    pub fn store(store: Arc<dyn ObjectStore>) -> DetSource {
        DetSource {
            origin: Origin::Store(store),
            label: format!("store:{STORE_KEY}"),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A configuration already loaded (and validated), named by where it came from.
    pub fn fixed(cfg: DetConfig, label: impl Into<String>) -> DetSource {
        DetSource {
            origin: Origin::Fixed(Arc::new(cfg)),
            label: label.into(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Where the configuration is read from, as answers name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The configuration in force now (None: none configured). An unreadable or invalid store
    /// object is an error the answer reports; it is never taken for "no configuration".
    pub async fn current(&self) -> Loaded {
        let store = match &self.origin {
            Origin::Fixed(cfg) => return Ok(Some(cfg.clone())),
            Origin::Store(store) => store,
        };
        let mut cache = self.cache.lock().await;
        if let Some((at, loaded)) = cache.as_ref()
            && at.elapsed() < STORE_TTL
        {
            return loaded.clone();
        }
        let loaded = read_store(store.as_ref()).await.map(|c| c.map(Arc::new));
        *cache = Some((Instant::now(), loaded.clone()));
        loaded
    }
}

async fn read_store(store: &dyn ObjectStore) -> Result<Option<DetConfig>, String> {
    let bytes = match store.get(&Path::from(STORE_KEY)).await {
        Ok(r) => r.bytes().await.map_err(|e| e.to_string())?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{STORE_KEY} is not UTF-8"))?;
    DetConfig::parse(text)
        .map(Some)
        .map_err(|e| format!("{STORE_KEY}: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path}: {error}")]
    File { path: String, error: String },
    #[error("the stored configuration cannot be read: {0}")]
    Stored(String),
    #[error("{0}")]
    Config(#[from] natlake_core::deterministic::ConfigError),
    #[error("store: {0}")]
    Store(#[from] object_store::Error),
}

/// Reads and validates a configuration file (TOML, or JSON when it starts with `{`).
pub fn read_file(path: &std::path::Path) -> Result<DetConfig, PublishError> {
    let file_err = |error: String| PublishError::File {
        path: path.display().to_string(),
        error,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    DetConfig::parse(&text).map_err(|e| file_err(e.to_string()))
}

/// Publishes `cfg` as the store's configuration after checking that it only extends the stored
/// history (past periods unchanged, open ones at most closed). Returns whether anything changed.
pub async fn publish(store: &Arc<dyn ObjectStore>, cfg: &DetConfig) -> Result<bool, PublishError> {
    let stored = read_store(store.as_ref())
        .await
        .map_err(PublishError::Stored)?;
    if let Some(old) = &stored {
        old.check_successor(cfg)?;
        if old == cfg {
            return Ok(false);
        }
    }
    let text = cfg.to_toml()?;
    store
        .put(&Path::from(STORE_KEY), PutPayload::from(text.into_bytes()))
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use natlake_core::lake::writer::{WriteOptions, encode_outputs, publish as publish_rows};
    use natlake_core::model::NatEventKind;
    use natlake_core::testing::nat_row;
    use natlake_core::time::parse_time;

    use super::*;
    use crate::Lake;
    use crate::attribution::{DEFAULT_LOOKBACK, Question, attribute};

    /// 198.51.100.4/30 (nat_row's 198.51.100.7 is its last address), 16 blocks of 4000.
    const V1: &str = r#"
[[mapping]]
id = "cgn1-a"
device = "cgn1"
inside = "100.64.0.0/26"
public = "198.51.100.4/30"
ports_per_subscriber = 4000
valid_from = "2026-11-01T00:00:00Z"
"#;

    /// V1 closed on 2026-11-20 and a new mapping from then on: 32 blocks of 2000.
    fn v2() -> String {
        V1.replace(
            "valid_from = \"2026-11-01T00:00:00Z\"\n",
            "valid_from = \"2026-11-01T00:00:00Z\"\nvalid_until = \"2026-11-20T00:00:00Z\"\n",
        ) + r#"
[[mapping]]
id = "cgn1-b"
device = "cgn1"
inside = "100.64.0.0/25"
public = "198.51.100.4/30"
ports_per_subscriber = 2000
valid_from = "2026-11-20T00:00:00Z"
"#
    }

    fn question(at: &str, port: u16) -> Question {
        Question {
            ip: "198.51.100.7".parse().unwrap(),
            port,
            at: parse_time(at).unwrap(),
            protocol: Some(6),
            window: 2_000_000,
            lookback: DEFAULT_LOOKBACK,
            dst_ip: None,
            dst_port: None,
        }
    }

    fn lake(store: &Arc<dyn ObjectStore>, scratch: &std::path::Path) -> Lake {
        Lake::with_store(store.clone(), None, scratch)
    }

    #[tokio::test]
    async fn answers_from_the_configuration_and_reports_contradicting_logs() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let scratch = tempfile::tempdir().unwrap();
        // No configuration, no logs: nothing.
        let q = question("2026-11-23T10:00:00Z", 9000);
        let a = attribute(&lake(&store, scratch.path()), &q).await.unwrap();
        assert!(a.attribution.matches.is_empty());
        assert!(a.deterministic.is_none());

        assert!(
            publish(&store, &DetConfig::parse(V1).unwrap())
                .await
                .unwrap()
        );
        // An empty lake and the configuration alone: 198.51.100.7 is address 3 → subscribers
        // 48..63; port 9000 is block 1 → 100.64.0.49, ports 5024-9023.
        let a = attribute(&lake(&store, scratch.path()), &q).await.unwrap();
        assert_eq!(a.objects, 0);
        assert!(!a.attribution.ambiguous);
        assert_eq!(a.attribution.matches.len(), 1, "{:?}", a.attribution);
        let c = &a.attribution.matches[0];
        assert_eq!(c.src_ip, Some("100.64.0.49".parse().unwrap()));
        assert_eq!((c.x_port, c.x_port_end), (Some(5024), Some(9023)));
        let rule = c.rule.as_ref().unwrap();
        assert_eq!(
            (rule.entry.as_str(), rule.config.as_str()),
            ("cgn1-a", "store:config/deterministic_nat.toml")
        );
        assert_eq!(a.deterministic.as_ref().unwrap().mappings, 1);

        // A NAT log in the lake that names someone else for the same port and time.
        let t = parse_time("2026-11-23T09:59:00Z").unwrap();
        let rows = vec![nat_row(
            t,
            NatEventKind::SessionCreate,
            "100.64.0.50",
            9000,
            "raw/x/1.nlraw.zst",
            0,
        )];
        let outputs =
            encode_outputs("raw/x/1.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap();
        publish_rows(&store, outputs).await.unwrap();
        let a = attribute(&lake(&store, scratch.path()), &q).await.unwrap();
        assert!(a.objects >= 1);
        assert!(a.attribution.ambiguous, "{:?}", a.attribution);
        let mut named: Vec<(String, bool)> = a
            .attribution
            .matches
            .iter()
            .map(|c| (c.src_ip.unwrap().to_string(), c.rule.is_some()))
            .collect();
        named.sort();
        assert_eq!(
            named,
            vec![("100.64.0.49".into(), true), ("100.64.0.50".into(), false)]
        );
        // A log that agrees (the computed subscriber, another port of its block): not ambiguous.
        let q2 = question("2026-11-23T10:00:00Z", 5024);
        let rows = vec![nat_row(
            t,
            NatEventKind::SessionCreate,
            "100.64.0.49",
            5024,
            "raw/x/2.nlraw.zst",
            0,
        )];
        let outputs =
            encode_outputs("raw/x/2.nlraw.zst", &rows, &[], &WriteOptions::default()).unwrap();
        publish_rows(&store, outputs).await.unwrap();
        let a = attribute(&lake(&store, scratch.path()), &q2).await.unwrap();
        assert!(!a.attribution.ambiguous, "{:?}", a.attribution);
        assert_eq!(a.attribution.matches.len(), 2);
    }

    #[tokio::test]
    async fn a_past_time_is_answered_with_the_configuration_then_in_force() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let scratch = tempfile::tempdir().unwrap();
        publish(&store, &DetConfig::parse(V1).unwrap())
            .await
            .unwrap();
        let v2_cfg = DetConfig::parse(&v2()).unwrap();
        assert!(publish(&store, &v2_cfg).await.unwrap());
        assert!(
            !publish(&store, &v2_cfg).await.unwrap(),
            "republishing changes nothing"
        );
        let lake = lake(&store, scratch.path());
        let who = |a: &crate::attribution::Answer| {
            assert_eq!(a.attribution.matches.len(), 1, "{:?}", a.attribution);
            let c = &a.attribution.matches[0];
            (
                c.src_ip.unwrap().to_string(),
                c.rule.as_ref().unwrap().entry.clone(),
            )
        };
        let old = attribute(&lake, &question("2026-11-10T10:00:00Z", 9000))
            .await
            .unwrap();
        assert_eq!(who(&old), ("100.64.0.49".into(), "cgn1-a".into()));
        // New: address 3 → subscribers 96..127; port 9000 is block 3 → 100.64.0.99.
        let new = attribute(&lake, &question("2026-11-23T10:00:00Z", 9000))
            .await
            .unwrap();
        assert_eq!(who(&new), ("100.64.0.99".into(), "cgn1-b".into()));
        // At the change itself (within the window) both configurations fit: ambiguous.
        let edge = attribute(&lake, &question("2026-11-20T00:00:01Z", 9000))
            .await
            .unwrap();
        assert!(edge.attribution.ambiguous);
        assert_eq!(edge.attribution.matches.len(), 2);

        // Rewriting the past is refused and the stored history stays.
        let edited = DetConfig::parse(&v2().replacen(
            "ports_per_subscriber = 4000",
            "ports_per_subscriber = 3000",
            1,
        ))
        .unwrap();
        let err = publish(&store, &edited).await.unwrap_err().to_string();
        assert!(
            err.contains("cgn1-a") && err.contains("never edited"),
            "{err}"
        );
        let again = attribute(&lake, &question("2026-11-10T10:00:00Z", 9000))
            .await
            .unwrap();
        assert_eq!(who(&again), ("100.64.0.49".into(), "cgn1-a".into()));
    }

    #[tokio::test]
    async fn an_unreadable_configuration_is_reported_not_ignored() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let scratch = tempfile::tempdir().unwrap();
        store
            .put(
                &Path::from(STORE_KEY),
                PutPayload::from(b"[[mapping]]\nid = 'x'\n".to_vec()),
            )
            .await
            .unwrap();
        let a = attribute(
            &lake(&store, scratch.path()),
            &question("2026-11-23T10:00:00Z", 9000),
        )
        .await
        .unwrap();
        assert_eq!(a.errors.len(), 1);
        assert!(
            a.errors[0]
                .error
                .contains("deterministic NAT configuration"),
            "{:?}",
            a.errors
        );
        // What could not be read may name someone: not a confident answer.
        assert!(a.attribution.ambiguous);
        // Publishing over an invalid stored copy is refused too (its history cannot be checked).
        assert!(matches!(
            publish(&store, &DetConfig::parse(V1).unwrap()).await,
            Err(PublishError::Stored(_))
        ));
    }

    /// A Junos mapping whose block size (1954) does not divide 64,512: where the two readings
    /// of its algorithm name different subscribers the lookup answer lists both and is
    /// ambiguous; where they agree it is not.
    #[tokio::test]
    async fn a_contested_junos_computation_is_answered_ambiguous() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let scratch = tempfile::tempdir().unwrap();
        let cfg = DetConfig::parse(
            r#"
[[mapping]]
id = "mx1"
device = "mx1"
inside = "100.64.32.0/21"
public = "198.51.100.1-198.51.100.62"
ports_per_subscriber = 1954
order = "juniper"
valid_from = "2026-11-01T00:00:00Z"
"#,
        )
        .unwrap();
        publish(&store, &cfg).await.unwrap();
        let lake = lake(&store, scratch.path());
        let ask = |port: u16| Question {
            ip: "198.51.100.2".parse().unwrap(),
            port,
            at: parse_time("2026-11-23T10:00:00Z").unwrap(),
            protocol: Some(6),
            window: 2_000_000,
            lookback: DEFAULT_LOOKBACK,
            dst_ip: None,
            dst_port: None,
        };
        let named = |a: &crate::attribution::Answer| {
            let mut v: Vec<(String, String)> = a
                .attribution
                .matches
                .iter()
                .map(|c| {
                    let reading = c.rule.as_ref().unwrap().reading.unwrap();
                    (format!("{reading:?}"), c.src_ip.unwrap().to_string())
                })
                .collect();
            v.sort();
            v
        };
        // Port 2960 of the second address: subscriber 34 (linear) or 33 (per address).
        let a = attribute(&lake, &ask(2960)).await.unwrap();
        assert!(a.attribution.ambiguous, "{:?}", a.attribution);
        assert_eq!(
            named(&a),
            vec![
                ("Linear".into(), "100.64.32.35".into()),
                ("PerAddress".into(), "100.64.32.34".into())
            ]
        );
        // The serialized answer says why: each computed candidate is marked contested.
        let json = serde_json::to_value(&a).unwrap();
        let matches = json["matches"].as_array().unwrap();
        assert_eq!(matches.len(), 2);
        assert!(
            matches.iter().all(|m| m["rule"]["contested"] == true),
            "{json}"
        );
        // Port 1500: both readings name subscriber 33.
        let a = attribute(&lake, &ask(1500)).await.unwrap();
        assert!(!a.attribution.ambiguous, "{:?}", a.attribution);
        assert_eq!(
            named(&a),
            vec![
                ("Linear".into(), "100.64.32.34".into()),
                ("PerAddress".into(), "100.64.32.34".into())
            ]
        );
    }
}
