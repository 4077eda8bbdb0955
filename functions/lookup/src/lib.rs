//! The lookup function: attribution and sessions over HTTP.
//!
//! One axum router ([`api::router`]) behind three doors: AWS Lambda via `lambda_http` (function
//! URL or API Gateway), a long-running local service, and the embedded `natlake up`.

pub mod access;
pub mod api;
pub mod params;
pub mod tail;
