//! Finding raw objects to normalize: for the poller in the local service and `natlake up`, and
//! for backfills. Lists only `raw/<kind>/hour=…/` prefixes in the asked range.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
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
    for dir in hour_dirs(store, prefix, since, until).await? {
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
    for dir in hour_dirs(store, prefix, since, until).await? {
        let raw = list_raw(store, &dir).await?;
        if raw.is_empty() {
            continue;
        }
        let mut marked = HashSet::new();
        for state in marker_prefixes {
            let under = Path::from(format!("{state}/{dir}"));
            let metas: Vec<_> = store.list(Some(&under)).try_collect().await?;
            marked.extend(metas.into_iter().filter_map(|m| {
                let k = m.location.as_ref();
                k.strip_prefix(state)?
                    .strip_prefix('/')?
                    .strip_suffix(".json")
                    .map(str::to_owned)
            }));
        }
        keys.extend(raw.into_iter().filter(|k| !marked.contains(k)));
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The `raw/<kind>/hour=H/` directories under `prefix` in [since, until] (a prefix without hour
/// directories is its own leaf).
async fn hour_dirs(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<Vec<Path>, object_store::Error> {
    let prefix = prefix.trim_matches('/');
    let mut out = Vec::new();
    // raw/<kind>/hour=H/ : walk kinds and hours with delimiters so a time range lists only its hours.
    let kinds = if prefix == "raw" {
        store
            .list_with_delimiter(Some(&Path::from("raw")))
            .await?
            .common_prefixes
    } else {
        vec![Path::from(prefix)]
    };
    for kind in kinds {
        let hours = store
            .list_with_delimiter(Some(&kind))
            .await?
            .common_prefixes;
        let leaf = hours.is_empty();
        let dirs = if leaf { vec![kind.clone()] } else { hours };
        for dir in dirs {
            let label = dir
                .filename()
                .and_then(|f| f.strip_prefix("hour="))
                .unwrap_or("")
                .to_string();
            if !label.is_empty()
                && (since.is_some_and(|s| label.as_str() < s)
                    || until.is_some_and(|u| label.as_str() > u))
            {
                continue;
            }
            out.push(dir);
        }
    }
    Ok(out)
}

async fn list_raw(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
) -> Result<Vec<String>, object_store::Error> {
    store
        .list(Some(dir))
        .map_ok(|m| m.location.to_string())
        .try_filter(|k| futures::future::ready(k.ends_with(natlake_raw::SUFFIX)))
        .try_collect()
        .await
}
