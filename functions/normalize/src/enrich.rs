//! Enrichment sources: the loader lives in `natlake_core::enrich::sources`, shared with the
//! lookup function (which reads the identity sources at a question's time).

pub use natlake_core::enrich::sources::*;
