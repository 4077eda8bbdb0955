//! The lake: layout of keys, table columns, and the Parquet writer.

pub mod columns;
pub mod compact;
pub mod layout;
pub mod read;
pub mod writer;
