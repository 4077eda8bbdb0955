//! The normalize function: raw batches into the Parquet lake.
//!
//! One handler ([`handler::normalize_object`]) behind three doors:
//! - AWS Lambda, triggered by S3 ObjectCreated notifications ([`lambda`]);
//! - a long-running local service that takes S3-style (MinIO webhook) notifications over HTTP
//!   and/or polls the store ([`service`]);
//! - the embedded `natlake` binary, which calls [`scan`] and the handler in process;
//! - `normalize run`, a one-shot pass over a store ([`backfill`]).

pub mod backfill;
pub mod cpu;
pub mod enrich;
pub mod events;
pub mod handler;
pub mod lambda;
pub mod scan;
pub mod service;
pub mod time_zones;

pub use handler::{
    NormalizeConfig, NormalizeError, Report, normalize_object, normalize_with_retry,
};
