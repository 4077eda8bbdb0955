//! One way to open a store for every natlake program.
//!
//! - `file:///abs/path` — a local directory (the embedded default); created if missing.
//! - `s3://bucket[/prefix]` — AWS S3, MinIO or SeaweedFS. Endpoint, region and credentials come from
//!   [`S3Options`] first, then the usual `AWS_*` environment variables (`AWS_ENDPOINT_URL`,
//!   `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …).
//!   Requests are path-style unless `virtual_hosted` is set, and plain `http://` endpoints are
//!   allowed (MinIO and SeaweedFS on a LAN are commonly plain http).
//! - `memory://` — in-process, for tests.
//!
//! Every store is returned rooted at the URL's prefix, so callers use lake-relative keys only.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use serde::Deserialize;

pub use object_store;

pub type DynStore = Arc<dyn ObjectStore>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("opening store {url:?}: {source}")]
    Open {
        url: String,
        source: object_store::Error,
    },
    #[error("creating {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

/// S3 settings that override the environment. Empty fields fall back to `AWS_*` variables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub virtual_hosted: bool,
}

/// Whether the store a URL names finishes its operations on the calling thread: object_store's
/// local store does its file I/O inline when no tokio runtime is entered (otherwise it hands
/// each call to tokio's blocking pool), and the in-memory store never waits. Such a store can be
/// driven with a plain `block_on` from a CPU worker thread; S3 cannot (its requests need the
/// runtime's I/O driver).
pub fn completes_inline(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "file" | "memory"))
}

/// Opens the store a URL names.
pub fn open(url: &str, s3: &S3Options) -> Result<DynStore, StoreError> {
    let bad = |reason: &str| StoreError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "memory" => Ok(Arc::new(InMemory::new())),
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| bad("file URLs need an absolute path"))?;
            std::fs::create_dir_all(&path).map_err(|source| StoreError::Dir {
                path: path.display().to_string(),
                source,
            })?;
            let fs =
                LocalFileSystem::new_with_prefix(&path).map_err(|source| StoreError::Open {
                    url: url.to_string(),
                    source,
                })?;
            Ok(Arc::new(fs))
        }
        "s3" | "s3a" => {
            let bucket = parsed
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| bad("missing bucket"))?;
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = s3
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok());
            if let Some(ep) = &endpoint {
                b = b.with_endpoint(ep);
            }
            let env_endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .ok();
            let plain_http = endpoint
                .as_deref()
                .or(env_endpoint.as_deref())
                .is_some_and(|e| e.starts_with("http://"));
            b = b
                .with_allow_http(plain_http)
                .with_virtual_hosted_style_request(s3.virtual_hosted);
            if let Some(r) = &s3.region {
                b = b.with_region(r);
            } else if std::env::var("AWS_REGION").is_err()
                && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                // MinIO and SeaweedFS accept any region; AWS needs the real one set.
                b = b.with_region("us-east-1");
            }
            if let Some(k) = &s3.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(s) = &s3.secret_access_key {
                b = b.with_secret_access_key(s);
            }
            let s3store = b.build().map_err(|source| StoreError::Open {
                url: url.to_string(),
                source,
            })?;
            let prefix = parsed.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(s3store))
            } else {
                Ok(Arc::new(PrefixStore::new(s3store, Path::from(prefix))))
            }
        }
        other => Err(bad(&format!(
            "unsupported scheme {other:?}; use file://, s3:// or memory://"
        ))),
    }
}

/// A `file://` URL for a local directory, made absolute.
pub fn dir_url(dir: &std::path::Path) -> Result<String, StoreError> {
    let abs = std::path::absolute(dir).map_err(|source| StoreError::Dir {
        path: dir.display().to_string(),
        source,
    })?;
    url::Url::from_directory_path(&abs)
        .map(|u| u.to_string())
        .map_err(|_| StoreError::Url {
            url: abs.display().to_string(),
            reason: "not an absolute path".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutPayload};

    #[test]
    fn rejects_unknown_schemes_and_missing_buckets() {
        assert!(matches!(
            open("ftp://x/y", &S3Options::default()),
            Err(StoreError::Url { .. })
        ));
        assert!(matches!(
            open("s3:///nobucket", &S3Options::default()),
            Err(StoreError::Url { .. })
        ));
        assert!(open("not a url", &S3Options::default()).is_err());
    }

    #[tokio::test]
    async fn file_store_is_rooted_at_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir_url(dir.path()).unwrap();
        let store = open(&url, &S3Options::default()).unwrap();
        store
            .put(&Path::from("a/b.txt"), PutPayload::from_static(b"hi"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b.txt")).unwrap(), b"hi");
    }
}
