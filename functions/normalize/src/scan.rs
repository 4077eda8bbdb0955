//! Finding raw objects to normalize: for the poller in the local service and `natlake up`, and
//! for backfills. Lists only `raw/<kind>/hour=…/` prefixes in the asked range.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use natlake_core::lake::state::{self, list_raw, raw_hour_dirs};
use object_store::ObjectStore;
use object_store::path::Path;

/// Raw object keys under `prefix` (default `raw/`) whose hour directory lies in [since, until]
/// (`YYYY-MM-DDTHH` labels compare as strings), oldest first.
pub async fn raw_keys(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<Vec<String>, object_store::Error> {
    let mut keys = Vec::new();
    for dir in raw_hour_dirs(store, prefix, since, until).await? {
        keys.append(&mut list_raw(store, &dir).await?);
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// Raw object keys in [since, until] that have neither a done-marker nor a dead letter: per hour
/// directory one listing of its raw objects and one of each marker directory (`<state>/<dir>/`),
/// instead of a HEAD request per key — so a pass over days of hours stays cheap.
pub async fn pending_keys(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    since: Option<&str>,
    until: Option<&str>,
    marker_prefixes: &[&str],
) -> Result<Vec<String>, object_store::Error> {
    let mut keys = Vec::new();
    for dir in raw_hour_dirs(store, prefix, since, until).await? {
        let raw = list_raw(store, &dir).await?;
        if raw.is_empty() {
            continue;
        }
        let mut marked = HashSet::new();
        for state in marker_prefixes {
            marked.extend(state::marked(store, state, &dir).await?);
        }
        keys.extend(raw.into_iter().filter(|k| !marked.contains(k)));
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The keys among `keys` that have a done marker, from one listing of each hour directory's
/// markers instead of a HEAD request per key (fewer requests on S3, no blocking-pool round trip
/// per key on a local directory). None if a listing failed: each key is then checked on its own.
/// A marker written by another run after the listing only means that object is done twice.
pub async fn done_among(store: &Arc<dyn ObjectStore>, keys: &[String]) -> Option<HashSet<String>> {
    let dirs: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.rsplit_once('/').map(|(dir, _)| dir))
        .collect();
    let mut done = HashSet::new();
    for dir in dirs {
        match state::marked(store, state::NORMALIZED_PREFIX, &Path::from(dir)).await {
            Ok(marked) => done.extend(marked),
            Err(e) => {
                tracing::warn!(dir, error = %e, "listing done markers failed; checking each object");
                return None;
            }
        }
    }
    Some(done)
}
