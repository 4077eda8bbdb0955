//! Finding raw objects to normalize: for the poller in the local service and `natlake up`, and
//! for backfills. Lists only `raw/<kind>/hour=…/` prefixes in the asked range.

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
    let prefix = prefix.trim_matches('/');
    let mut keys = Vec::new();
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
            let mut found: Vec<String> = store
                .list(Some(&dir))
                .map_ok(|m| m.location.to_string())
                .try_filter(|k| futures::future::ready(k.ends_with(natlake_raw::SUFFIX)))
                .try_collect()
                .await?;
            keys.append(&mut found);
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}
