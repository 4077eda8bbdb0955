//! A real S3 server for end-to-end tests: SeaweedFS, from `natlake-test-weed` (shared with
//! edge-relay's tests).

pub use natlake_test_weed::*;
