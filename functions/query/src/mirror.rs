//! A local copy of a remote lake's prefixes, for `natlake sql` over S3.
//!
//! natlake's DuckDB has no httpfs (extensions cannot be fetched at run time, here or on
//! Lambda), so the objects are read through object_store into a directory laid out like the
//! store, and DuckDB reads that. Each run makes the copy hold exactly the objects under the
//! prefixes asked: new or changed objects (size or modification time differ) are fetched, and
//! every other local file under the prefixes' top directories is removed — objects gone from the
//! store (small files replaced by compaction) and hours a previous run asked for — so no row is
//! counted twice and no stale hour answers.

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::QueryError;

/// Objects fetched at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MirrorStats {
    /// Objects under the prefixes in the store.
    pub objects: usize,
    pub fetched: usize,
    pub fetched_bytes: u64,
    /// Local files removed because their object is gone.
    pub removed: usize,
}

/// Makes `dest` hold the store's objects under `prefixes` (`lake/`, `audit/hour=H/`, …) and
/// nothing else under their top directories (`lake/`, `audit/`).
pub async fn mirror(
    store: &dyn ObjectStore,
    prefixes: &[String],
    dest: &FsPath,
) -> Result<MirrorStats, QueryError> {
    let mut stats = MirrorStats::default();
    let mut wanted: HashSet<PathBuf> = HashSet::new();
    for prefix in prefixes {
        let listed: Vec<ObjectMeta> = store
            .list(Some(&Path::from(prefix.as_str())))
            .try_collect()
            .await?;
        stats.objects += listed.len();
        wanted.extend(listed.iter().map(|m| dest.join(m.location.as_ref())));
        let stale: Vec<&ObjectMeta> = listed
            .iter()
            .filter(|m| !is_current(&dest.join(m.location.as_ref()), m))
            .collect();
        let mut fetches = futures::stream::iter(stale)
            .map(|m| fetch(store, m, dest))
            .buffer_unordered(CONCURRENCY);
        while let Some(r) = fetches.next().await {
            stats.fetched += 1;
            stats.fetched_bytes += r?;
        }
    }
    let tops: HashSet<&str> = prefixes
        .iter()
        .filter_map(|p| p.split('/').next())
        .filter(|t| !t.is_empty())
        .collect();
    for top in tops {
        stats.removed += remove_unlisted(&dest.join(top), &wanted);
    }
    Ok(stats)
}

fn is_current(path: &FsPath, meta: &ObjectMeta) -> bool {
    let Ok(md) = std::fs::metadata(path) else {
        return false;
    };
    md.len() == meta.size && md.modified().ok() == Some(SystemTime::from(meta.last_modified))
}

async fn fetch(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    dest: &FsPath,
) -> Result<u64, QueryError> {
    let path = dest.join(meta.location.as_ref());
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    // Streamed to disk (a compacted hour can be large; eight are fetched at once), written
    // aside and renamed, so a reader never sees half an object under its real name.
    let tmp = path.with_extension(format!("mirror-tmp{}", std::process::id()));
    let mut file = tokio::fs::File::create(&tmp).await?;
    let mut chunks = store.get(&meta.location).await?.into_stream();
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    file.flush().await?;
    file.into_std()
        .await
        .set_modified(SystemTime::from(meta.last_modified))?;
    tokio::fs::rename(&tmp, &path).await?;
    Ok(written)
}

/// Removes files under `dir` that are not in `wanted` (and directories left empty).
fn remove_unlisted(dir: &FsPath, wanted: &HashSet<PathBuf>) -> usize {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    let mut dirs = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        dirs.push(d);
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !wanted.contains(&p) && std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
    }
    // Deepest first; a directory that still has files stays.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    async fn put(store: &InMemory, key: &str, body: &str) {
        store
            .put(&Path::from(key), PutPayload::from(body.to_owned()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_copy_follows_the_store() {
        let store = InMemory::new();
        put(
            &store,
            "lake/nat_events/hour=2026-11-23T10/x_net=a/1.parquet",
            "one",
        )
        .await;
        put(
            &store,
            "lake/nat_events/hour=2026-11-23T10/x_net=a/2.parquet",
            "two",
        )
        .await;
        put(&store, "raw/conntrack/x.zst", "not asked for").await;
        let dir = tempfile::tempdir().unwrap();
        let prefixes = ["lake/".to_owned()];
        let s = mirror(&store, &prefixes, dir.path()).await.unwrap();
        assert_eq!(
            (s.objects, s.fetched, s.fetched_bytes, s.removed),
            (2, 2, 6, 0)
        );
        let p1 = dir
            .path()
            .join("lake/nat_events/hour=2026-11-23T10/x_net=a/1.parquet");
        assert_eq!(std::fs::read_to_string(&p1).unwrap(), "one");
        assert!(!dir.path().join("raw").exists());

        // Nothing changed: nothing fetched.
        let s = mirror(&store, &prefixes, dir.path()).await.unwrap();
        assert_eq!((s.objects, s.fetched, s.removed), (2, 0, 0));

        // Compaction: the small files go, one object replaces them; a rewrite changes a size.
        store
            .delete(&Path::from(
                "lake/nat_events/hour=2026-11-23T10/x_net=a/1.parquet",
            ))
            .await
            .unwrap();
        store
            .delete(&Path::from(
                "lake/nat_events/hour=2026-11-23T10/x_net=a/2.parquet",
            ))
            .await
            .unwrap();
        put(
            &store,
            "lake/nat_events/hour=2026-11-23T10/x_net=a/compacted.parquet",
            "onetwo",
        )
        .await;
        let s = mirror(&store, &prefixes, dir.path()).await.unwrap();
        assert_eq!((s.objects, s.fetched, s.removed), (1, 1, 2));
        assert!(!p1.exists());
        assert_eq!(
            std::fs::read_to_string(p1.with_file_name("compacted.parquet")).unwrap(),
            "onetwo"
        );
        // Asking for one hour only: the other hour's copy goes too.
        put(
            &store,
            "lake/flows/hour=2026-11-23T11/x_net=b/9.parquet",
            "later",
        )
        .await;
        let s = mirror(&store, &prefixes, dir.path()).await.unwrap();
        assert_eq!((s.objects, s.fetched, s.removed), (2, 1, 0));
        let only = ["lake/nat_events/hour=2026-11-23T10/".to_owned()];
        let s = mirror(&store, &only, dir.path()).await.unwrap();
        assert_eq!((s.objects, s.fetched, s.removed), (1, 0, 1));
        assert!(!dir.path().join("lake/flows").exists());
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(p1.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
