//! What the compact tests share: the hours they write in and the raw keys their rows cite.

use natlake_compact::CompactConfig;
use natlake_core::lake::merge::MergeBudget;
use natlake_core::lake::writer::WriteOptions;
use natlake_core::model::Micros;

pub const S: Micros = 1_000_000;
pub const H: Micros = 3600 * S;
/// 2026-11-23T00:00Z
pub const H0: Micros = 1_795_392_000 * S;

/// The key of raw object `n` of hour 0.
pub fn raw(n: u64) -> String {
    format!("raw/conntrack/hour=2026-11-23T00/relay_{n:04}.nlraw.zst")
}

/// The smallest merge batches (1 byte of budget: 64 rows per input whatever the partition), at
/// most 3 inputs per merge (so a partition of more than 9 objects is merged in two levels of
/// local runs first) and small row groups, so every input is read in many batches and every
/// output in many groups.
#[allow(dead_code)] // lake_runs.rs does not use it
pub fn tiny_budget() -> CompactConfig {
    CompactConfig {
        merge: MergeBudget {
            input_bytes: 1,
            output_rows: 100,
            fan_in: 3,
        },
        write: WriteOptions {
            row_group_rows: 500,
            ..WriteOptions::default()
        },
        ..CompactConfig::default()
    }
}
