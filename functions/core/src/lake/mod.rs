//! The lake: layout of keys, table columns, and the Parquet writer.

pub mod columns;
pub mod compact;
mod constant;
mod delta;
mod dictionary;
pub mod late;
pub mod layout;
pub mod merge;
pub mod read;
pub mod relays;
mod rle;
pub mod sink;
pub mod state;
pub mod writer;
