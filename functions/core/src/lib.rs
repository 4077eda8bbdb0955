//! natlake-core: the event model, parsers, lake layout and Parquet writing shared by the
//! natlake functions. No I/O happens here except through an `ObjectStore` handed in.

pub mod correlate;
pub mod deterministic;
pub mod enrich;
pub mod lake;
pub mod model;
pub mod parsers;
pub mod runtime;
pub mod secret;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
