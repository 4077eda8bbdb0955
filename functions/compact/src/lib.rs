//! The compact function: hourly, it carries the NAT mappings still open at the end of each
//! finished hour into the next hour's `nat_carry` partition (so a lookup reads the hour of T plus
//! that carry instead of a day of events) and merges each finished hour's small objects.
//!
//! One handler ([`run::run`]) behind three doors: AWS Lambda on an EventBridge schedule
//! ([`lambda`]), a long-running local service with a timer ([`service`]), and the embedded
//! `natlake up`, which runs the same timer in process.

mod digest;
pub mod lambda;
pub mod run;
pub mod service;

pub use run::{CompactConfig, CompactError, Report, run};
