//! What the compact tests share: the hours they write in and the raw keys their rows cite.

use natlake_core::model::Micros;

pub const S: Micros = 1_000_000;
pub const H: Micros = 3600 * S;
/// 2026-11-23T00:00Z
pub const H0: Micros = 1_795_392_000 * S;

/// The key of raw object `n` of hour 0.
pub fn raw(n: u64) -> String {
    format!("raw/conntrack/hour=2026-11-23T00/relay_{n:04}.nlraw.zst")
}
