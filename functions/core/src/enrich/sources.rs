//! Enrichment sources (for normalize, and the identity sources for lookups): where they live
//! (local files or objects in the store), loading them at start, and reloading the ones that
//! changed.
//!
//! Loading at start is all or nothing: a source that cannot be read stops the function with a
//! message naming it (running without it would write rows that silently lack the context). A
//! reload that fails keeps the previous data, counts the error and tries again at the next
//! check. Sources are checked at most every `reload_secs` (file mtime and size, object ETag).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{
    EnrichError, Enricher, LoadStats, cloudfoundry, geo,
    identity::{self, IdentityFormat, IdentityOptions},
    prefixes::{self, PrefixFormat, PrefixOptions},
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Deserialize;

/// The `enrich` section of the normalize configuration (TOML: `--enrich-config FILE`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// Check the sources for changes at most this often (0: load once, never reload).
    pub reload_secs: u64,
    pub prefixes: Option<PrefixSource>,
    /// Identity over time; several sources must agree on a subscriber.
    pub identity: Vec<IdentitySource>,
    pub geo: Option<GeoSources>,
    pub cloudfoundry: Option<CfSource>,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            reload_secs: 300,
            prefixes: None,
            identity: Vec::new(),
            geo: None,
            cloudfoundry: None,
        }
    }
}

impl EnrichConfig {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The configuration at `at`: `store:KEY` names an object in the store (how a function on
    /// Lambda, which has no configuration files, is given one), anything else a local file;
    /// the empty configuration without one.
    pub async fn read(
        at: Option<&std::path::Path>,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<Self, SourceError> {
        let Some(at) = at else {
            return Ok(Self::default());
        };
        let shown = at.display().to_string();
        // In the sources' notation (`locate`): a bare key, or `file:` and a path.
        let loc = match shown.strip_prefix("store:") {
            Some(key) => key.to_string(),
            None => format!("file:{shown}"),
        };
        let err = |reason: String| SourceError {
            source_name: "configuration".into(),
            path: shown.clone(),
            reason,
        };
        let bytes = fetch(store, &loc).await.map_err(err)?;
        let text = String::from_utf8(bytes).map_err(|e| err(e.to_string()))?;
        Self::from_toml(&text).map_err(err)
    }

    /// Only the identity sources: what lookups read at a question's time.
    pub fn identity_only(&self) -> Self {
        Self {
            reload_secs: self.reload_secs,
            identity: self.identity.clone(),
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_none()
            && self.identity.is_empty()
            && self
                .geo
                .as_ref()
                .is_none_or(|g| g.asn.is_none() && g.country.is_none())
            && self.cloudfoundry.is_none()
    }

    fn sources(&self) -> Vec<Source> {
        let mut v = Vec::new();
        if let Some(p) = &self.prefixes {
            v.push(Source::Prefixes(p.clone()));
        }
        for (i, s) in self.identity.iter().enumerate() {
            v.push(Source::Identity(i, s.clone()));
        }
        if let Some(g) = &self.geo {
            if let Some(p) = &g.asn {
                v.push(Source::Asn(p.clone()));
            }
            if let Some(p) = &g.country {
                v.push(Source::Country(p.clone()));
            }
        }
        if let Some(c) = &self.cloudfoundry {
            v.push(Source::Cf(c.path.clone()));
        }
        v
    }
}

/// Where a source lives: `file:/abs/path` or `file:relative/path` on this machine, anything
/// else a key in the store (`enrich/prefixes.json`).
pub type Location = String;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixSource {
    pub path: Location,
    pub format: PrefixFormat,
    /// NetBox custom field with the subscriber id (default `subscriber`; then the tenant).
    #[serde(default)]
    pub subscriber_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySource {
    pub path: Location,
    pub format: IdentityFormat,
    /// Kea lease files: the column naming the subscriber (default hwaddr, duid, client_id).
    #[serde(default)]
    pub id_field: Option<String>,
    /// Only for events of this VRF / routing instance (inside addresses reused across VRFs).
    #[serde(default)]
    pub vrf: Option<String>,
    /// Only for events logged by this device (a BNG / CGN of its own).
    #[serde(default)]
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoSources {
    /// GeoLite2-ASN (or compatible) MMDB.
    pub asn: Option<Location>,
    /// GeoLite2-Country / -City (or compatible) MMDB.
    pub country: Option<Location>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CfSource {
    /// Container metadata: silk's datastore JSON or a list (see `natlake_core::enrich::cloudfoundry`).
    pub path: Location,
}

#[derive(Debug, thiserror::Error)]
#[error("enrichment source {source_name} ({path}): {reason}")]
pub struct SourceError {
    pub source_name: String,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Source {
    Prefixes(PrefixSource),
    Identity(usize, IdentitySource),
    Asn(Location),
    Country(Location),
    Cf(Location),
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Prefixes(_) => "prefixes".into(),
            Source::Identity(i, _) => format!("identity[{i}]"),
            Source::Asn(_) => "geo.asn".into(),
            Source::Country(_) => "geo.country".into(),
            Source::Cf(_) => "cloudfoundry".into(),
        }
    }

    fn path(&self) -> &str {
        match self {
            Source::Prefixes(p) => &p.path,
            Source::Identity(_, s) => &s.path,
            Source::Asn(p) | Source::Country(p) | Source::Cf(p) => p,
        }
    }

    fn error(&self, reason: impl std::fmt::Display) -> SourceError {
        SourceError {
            source_name: self.name(),
            path: self.path().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Parses `bytes` into this source's slot of `into`.
    fn install(&self, bytes: Vec<u8>, into: &mut Enricher) -> Result<LoadStats, EnrichError> {
        Ok(match self {
            Source::Prefixes(p) => {
                let opts = PrefixOptions {
                    subscriber_field: p
                        .subscriber_field
                        .clone()
                        .unwrap_or_else(|| PrefixOptions::default().subscriber_field),
                };
                let l = prefixes::load(&bytes, p.format, &opts)?;
                into.prefixes = Some(Arc::new(l.data));
                l.stats
            }
            Source::Identity(i, s) => {
                let opts = IdentityOptions {
                    id_field: s.id_field.clone(),
                };
                let mut l = identity::load(&bytes, s.format, &opts)?;
                l.data.scope = identity::Scope {
                    vrf: s.vrf.clone(),
                    device: s.device.clone(),
                };
                let t = Arc::new(l.data);
                match into.identity.get_mut(*i) {
                    Some(slot) => *slot = t,
                    None => into.identity.push(t),
                }
                l.stats
            }
            Source::Asn(_) => {
                let l = geo::load(bytes)?;
                into.asn = Some(Arc::new(l.data));
                l.stats
            }
            Source::Country(_) => {
                let l = geo::load(bytes)?;
                into.country = Some(Arc::new(l.data));
                l.stats
            }
            Source::Cf(_) => {
                let l = cloudfoundry::load(&bytes)?;
                into.cloudfoundry = Some(Arc::new(l.data));
                l.stats
            }
        })
    }
}

enum Where {
    File(PathBuf),
    Key(Path),
}

fn locate(loc: &str) -> Where {
    match loc.strip_prefix("file:") {
        // file:///abs, file:/abs and file:rel all name local files.
        Some(rest) => Where::File(PathBuf::from(rest.strip_prefix("//").unwrap_or(rest))),
        None => Where::Key(Path::from(loc)),
    }
}

/// A cheap fingerprint of the source's current content (mtime and size, or the ETag).
async fn version(store: &Arc<dyn ObjectStore>, loc: &str) -> Result<String, String> {
    match locate(loc) {
        Where::File(p) => {
            let m = tokio::fs::metadata(&p).await.map_err(|e| e.to_string())?;
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Ok(format!("{mtime}/{}", m.len()))
        }
        Where::Key(k) => {
            let m = store.head(&k).await.map_err(|e| e.to_string())?;
            Ok(m.e_tag
                .unwrap_or_else(|| format!("{}/{}", m.last_modified.timestamp_micros(), m.size)))
        }
    }
}

async fn fetch(store: &Arc<dyn ObjectStore>, loc: &str) -> Result<Vec<u8>, String> {
    match locate(loc) {
        Where::File(p) => tokio::fs::read(&p).await.map_err(|e| e.to_string()),
        Where::Key(k) => async { store.get(&k).await?.bytes().await }
            .await
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string()),
    }
}

/// Fetches and installs one source; the version is read first so a change during the fetch
/// is picked up by the next check.
async fn load_one(
    store: &Arc<dyn ObjectStore>,
    src: &Source,
    into: &mut Enricher,
) -> Result<String, SourceError> {
    let ver = version(store, src.path()).await.map_err(|e| src.error(e))?;
    let bytes = fetch(store, src.path()).await.map_err(|e| src.error(e))?;
    // Parsing a large MMDB or lease file is CPU work: off the async workers.
    let (src2, mut scratch) = (src.clone(), into.clone());
    let (stats, scratch) = tokio::task::spawn_blocking(move || {
        let r = src2.install(bytes, &mut scratch);
        (r, scratch)
    })
    .await
    .map_err(|e| src.error(format!("loader task failed: {e}")))?;
    let stats = stats.map_err(|e| src.error(e))?;
    *into = scratch;
    let name = src.name();
    metrics::gauge!("natlake_enrich_records", "source" => name.clone()).set(stats.loaded as f64);
    metrics::gauge!("natlake_enrich_bad_records", "source" => name.clone()).set(stats.bad as f64);
    if stats.bad > 0 {
        tracing::warn!(source = name, path = src.path(), bad = stats.bad, first = ?stats.reasons, "enrichment source has bad records (skipped)");
    }
    tracing::info!(
        source = name,
        path = src.path(),
        records = stats.records,
        loaded = stats.loaded,
        skipped = stats.skipped,
        bad = stats.bad,
        "enrichment source loaded"
    );
    Ok(ver)
}

struct Live {
    sources: Vec<Source>,
    every: Duration,
    current: RwLock<Arc<Enricher>>,
    check: tokio::sync::Mutex<Check>,
    reload_errors: std::sync::atomic::AtomicU64,
}

struct Check {
    at: Instant,
    versions: HashMap<String, String>,
}

/// The loaded enrichment, shared by every worker; cheap to clone. The default holds nothing
/// and enriches nothing.
#[derive(Clone, Default)]
pub struct EnrichHandle {
    live: Option<Arc<Live>>,
}

impl std::fmt::Debug for EnrichHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.live {
            None => f.write_str("EnrichHandle(none)"),
            Some(l) => f
                .debug_struct("EnrichHandle")
                .field(
                    "sources",
                    &l.sources.iter().map(Source::name).collect::<Vec<_>>(),
                )
                .field("every", &l.every)
                .finish(),
        }
    }
}

impl EnrichHandle {
    /// Loads every configured source; the first that fails is the error.
    pub async fn load(
        store: &Arc<dyn ObjectStore>,
        cfg: &EnrichConfig,
    ) -> Result<Self, SourceError> {
        if cfg.is_empty() {
            return Ok(Self::default());
        }
        let sources = cfg.sources();
        let mut enricher = Enricher::default();
        let mut versions = HashMap::new();
        for s in &sources {
            let v = load_one(store, s, &mut enricher).await?;
            versions.insert(s.name(), v);
        }
        Ok(Self {
            live: Some(Arc::new(Live {
                sources,
                every: Duration::from_secs(cfg.reload_secs),
                current: RwLock::new(Arc::new(enricher)),
                check: tokio::sync::Mutex::new(Check {
                    at: Instant::now(),
                    versions,
                }),
                reload_errors: Default::default(),
            })),
        })
    }

    /// The enrichment in force now; None when nothing is configured.
    pub fn snapshot(&self) -> Option<Arc<Enricher>> {
        let live = self.live.as_ref()?;
        let guard = live.current.read().unwrap_or_else(|p| p.into_inner());
        Some(guard.clone())
    }

    /// Reload failures since start (also the `natlake_enrich_reload_errors_total` counter).
    pub fn reload_errors(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| {
            l.reload_errors.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Reloads the sources that changed, when the last check is `reload_secs` old. One worker
    /// checks at a time; the others go on with the data in force.
    pub async fn refresh(&self, store: &Arc<dyn ObjectStore>) {
        let Some(live) = &self.live else { return };
        if live.every.is_zero() {
            return;
        }
        let Ok(mut check) = live.check.try_lock() else {
            return;
        };
        if check.at.elapsed() < live.every {
            return;
        }
        check.at = Instant::now();
        for s in &live.sources {
            let name = s.name();
            let fail = |e: &dyn std::fmt::Display| {
                live.reload_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics::counter!("natlake_enrich_reload_errors_total", "source" => name.clone())
                    .increment(1);
                tracing::warn!(source = name, path = s.path(), error = %e, "enrichment reload failed; keeping the previous data");
            };
            let ver = match version(store, s.path()).await {
                Ok(v) => v,
                Err(e) => {
                    fail(&e);
                    continue;
                }
            };
            if check.versions.get(&name) == Some(&ver) {
                continue;
            }
            let mut next = match self.snapshot() {
                Some(e) => (*e).clone(),
                None => return,
            };
            match load_one(store, s, &mut next).await {
                Ok(v) => {
                    *live.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                    check.versions.insert(name.clone(), v);
                    metrics::counter!("natlake_enrich_reloads_total", "source" => name.clone())
                        .increment(1);
                }
                Err(e) => fail(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    /// On Lambda the configuration is an object in the store; a local path still reads a file.
    #[tokio::test]
    async fn the_configuration_is_read_from_the_store_or_a_file() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let text = "reload_secs = 60\nidentity = [{ path = \"enrich/radius.json\", format = \"radius_json\" }]\n";
        store
            .put(
                &Path::from("config/enrich.toml"),
                PutPayload::from(text.as_bytes().to_vec()),
            )
            .await
            .unwrap();
        let at = std::path::Path::new("store:config/enrich.toml");
        let cfg = EnrichConfig::read(Some(at), &store).await.unwrap();
        assert_eq!(cfg.reload_secs, 60);
        assert_eq!(cfg.identity[0].path, "enrich/radius.json");
        assert_eq!(cfg.identity_only(), cfg, "it names identity sources only");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("enrich.toml");
        std::fs::write(&file, text).unwrap();
        assert_eq!(EnrichConfig::read(Some(&file), &store).await.unwrap(), cfg);

        let missing = std::path::Path::new("store:config/none.toml");
        let e = EnrichConfig::read(Some(missing), &store).await.unwrap_err();
        assert!(e.to_string().contains("store:config/none.toml"), "{e}");
        assert_eq!(
            EnrichConfig::read(None, &store).await.unwrap(),
            EnrichConfig::default()
        );
    }
}
