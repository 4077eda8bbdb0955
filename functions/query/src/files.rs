//! From lake keys to files DuckDB can open.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use natlake_core::lake::layout;
use natlake_core::model::{Micros, Table};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::{ObjectError, QueryError};

/// The lake as the query layer sees it.
#[derive(Clone)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    /// Set for `file://` stores: objects are read in place.
    local_root: Option<PathBuf>,
    /// Where remote objects are cached (bounded by `cache_bytes`).
    cache_dir: PathBuf,
    cache_bytes: u64,
    /// DuckDB's home and temp directory (`/tmp` on Lambda).
    pub scratch: PathBuf,
    /// One DuckDB database per lake, opened on first use; each query gets its own connection
    /// to it, so Parquet footers stay cached between lookups instead of being parsed per answer.
    duck: Arc<std::sync::Mutex<Option<duckdb::Connection>>>,
    /// The deterministic NAT configuration (default: the store's `config/deterministic_nat.toml`).
    pub deterministic: Arc<crate::deterministic::DetSource>,
    /// Identity sources (RADIUS, DHCP) read at each question's time; none by default.
    pub identity: natlake_core::enrich::sources::EnrichHandle,
}

impl Lake {
    /// Opens the lake at a store URL. `scratch` holds DuckDB's temp files and the object cache.
    pub fn open(url: &str, scratch: &FsPath) -> Result<Self, QueryError> {
        let store = natlake_store::open(url, &Default::default())
            .map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let local_root = url::Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok());
        Ok(Self::with_store(store, local_root, scratch))
    }

    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        local_root: Option<PathBuf>,
        scratch: &FsPath,
    ) -> Self {
        Self {
            deterministic: Arc::new(crate::deterministic::DetSource::store(store.clone())),
            store,
            local_root,
            cache_dir: scratch.join("natlake-cache"),
            cache_bytes: 1 << 30,
            scratch: scratch.to_path_buf(),
            duck: Arc::default(),
            identity: Default::default(),
        }
    }

    /// Reads these identity sources at each question's time (see
    /// `natlake_core::correlate::add_identity_at`).
    pub fn with_identity(mut self, identity: natlake_core::enrich::sources::EnrichHandle) -> Self {
        self.identity = identity;
        self
    }

    /// A connection to the lake's DuckDB database (blocking: call from `spawn_blocking`).
    pub fn connection(&self) -> Result<duckdb::Connection, QueryError> {
        let mut base = self
            .duck
            .lock()
            .map_err(|_| QueryError::Internal("DuckDB handle poisoned".into()))?;
        if base.is_none() {
            *base = Some(crate::duck::connect(&self.scratch)?);
        }
        match base.as_ref() {
            Some(c) => Ok(c.try_clone()?),
            None => Err(QueryError::Internal("DuckDB handle missing".into())),
        }
    }

    /// Answers from this deterministic NAT configuration instead of the store's.
    pub fn with_deterministic(mut self, source: crate::deterministic::DetSource) -> Self {
        self.deterministic = Arc::new(source);
        self
    }

    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// The Parquet objects of `table` for the public address `ip` in the hours covering
    /// [from, to]. Lists only those partitions' prefixes.
    pub async fn partition_objects(
        &self,
        table: Table,
        ip: std::net::IpAddr,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<ObjectMeta>, QueryError> {
        let dirs: Vec<String> = layout::hours_between(from, to)
            .map(|h| layout::partition_dir(table, h, Some(ip)))
            .collect();
        let lists = dirs.iter().map(|d| {
            let p = Path::from(d.as_str());
            async move { self.store.list(Some(&p)).try_collect::<Vec<_>>().await }
        });
        let mut out = Vec::new();
        for r in futures::future::join_all(lists).await {
            out.extend(
                r?.into_iter()
                    .filter(|m| m.location.as_ref().ends_with(".parquet")),
            );
        }
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    /// Local paths for objects: in place on `file://`, fetched into the cache otherwise.
    /// Objects that cannot be fetched are returned as errors alongside the paths that could.
    pub async fn local_paths(
        &self,
        objects: &[ObjectMeta],
    ) -> (Vec<(String, PathBuf)>, Vec<ObjectError>) {
        if let Some(root) = &self.local_root {
            return (
                objects
                    .iter()
                    .map(|m| (m.location.to_string(), root.join(m.location.as_ref())))
                    .collect(),
                Vec::new(),
            );
        }
        let fetches = objects.iter().map(|m| async move {
            let key = m.location.to_string();
            self.fetch(m)
                .await
                .map(|p| (key.clone(), p))
                .map_err(|e| ObjectError {
                    key,
                    error: e.to_string(),
                })
        });
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for r in futures::future::join_all(fetches).await {
            match r {
                Ok(p) => ok.push(p),
                Err(e) => bad.push(e),
            }
        }
        if !ok.is_empty() {
            self.evict().await;
        }
        (ok, bad)
    }

    async fn fetch(&self, meta: &ObjectMeta) -> Result<PathBuf, QueryError> {
        // Lake objects are immutable once written except for idempotent rewrites, which keep
        // their size only if identical: size + mtime in the name keeps stale copies out.
        let stamp = format!("{}-{}", meta.size, meta.last_modified.timestamp_micros());
        let path = self
            .cache_dir
            .join(format!("{}.{stamp}", meta.location.as_ref()));
        if tokio::fs::metadata(&path).await.is_ok() {
            return Ok(path);
        }
        let bytes = self.store.get(&meta.location).await?.bytes().await?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(path)
    }

    /// Keeps the cache under its byte budget, oldest files first.
    async fn evict(&self) {
        let dir = self.cache_dir.clone();
        let budget = self.cache_bytes;
        let _ = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let Ok(md) = e.metadata() else { continue };
                    if md.is_dir() {
                        stack.push(e.path());
                    } else {
                        files.push((md.modified().ok(), md.len(), e.path()));
                    }
                }
            }
            let mut total: u64 = files.iter().map(|f| f.1).sum();
            files.sort();
            for (_, len, path) in files {
                if total <= budget {
                    break;
                }
                if std::fs::remove_file(&path).is_ok() {
                    total -= len;
                }
            }
        })
        .await;
    }
}
