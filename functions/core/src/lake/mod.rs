//! The lake: layout of keys, table columns, and the Parquet writer.

pub mod columns;
pub mod compact;
mod constant;
pub mod late;
pub mod layout;
pub mod merge;
pub mod read;
pub mod relays;
pub mod sink;
pub mod state;
pub mod writer;
