//! natlake-query: DuckDB-backed answers over the lake — attribution, sessions and ad-hoc SQL.
//!
//! DuckDB reads local Parquet files. Objects on a `file://` store are handed over by path;
//! objects on S3 are fetched through `object_store` into a bounded local cache first (no DuckDB
//! extensions are needed, none can be downloaded on Lambda). Which objects to read is computed
//! from the hour and the public address ([`natlake_core::lake::layout`]), never by listing the lake.

pub mod attribution;
pub mod audit;
pub mod deterministic;
pub mod duck;
pub mod files;
pub mod mirror;
pub mod sessions;
pub mod sql;

#[cfg(test)]
mod reports_test;

pub use files::Lake;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The caller asked for something invalid: an HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    #[error("store: {0}")]
    Store(#[from] object_store::Error),
    #[error("duckdb: {0}")]
    Duck(#[from] duckdb::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal: {0}")]
    Internal(String),
}

/// A partition object that could not be read; reported in answers instead of failing them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObjectError {
    pub key: String,
    pub error: String,
}
