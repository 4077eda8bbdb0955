//! Time parsing and formatting at the edges (API parameters, JSON output).

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::Micros;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {input:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or Unix epoch seconds")]
pub struct TimeError {
    pub input: String,
}

/// Earliest and latest times natlake accepts anywhere (1990 .. 2200): anything outside is a typo
/// or a broken clock, and would otherwise create absurd partitions.
pub const MIN_TIME: Micros = 631_152_000_000_000;
pub const MAX_TIME: Micros = 7_258_118_400_000_000;

/// Parses RFC 3339 or epoch seconds (fractions allowed) into microseconds.
pub fn parse_time(s: &str) -> Result<Micros, TimeError> {
    let err = || TimeError {
        input: s.to_string(),
    };
    let t = s.trim();
    let micros = if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        dt.timestamp_micros()
    } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let secs: i64 = int.parse().map_err(|_| err())?;
        let mut frac_us = 0i64;
        for (i, b) in frac.bytes().take(6).enumerate() {
            frac_us += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
        }
        secs.checked_mul(1_000_000)
            .and_then(|v| v.checked_add(frac_us))
            .ok_or_else(err)?
    } else {
        return Err(err());
    };
    if !(MIN_TIME..=MAX_TIME).contains(&micros) {
        return Err(err());
    }
    Ok(micros)
}

/// RFC 3339 UTC with microseconds when there are any (`2024-05-01T12:00:00.250Z`).
pub fn format_time(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => t.to_string(),
    }
}

pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_rejects_nonsense() {
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000_000_000
        );
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000);
        assert_eq!(parse_time("1700000000.25").unwrap(), 1_700_000_000_250_000);
        for bad in [
            "",
            "yesterday",
            "1.2.3",
            "99999999999999999999",
            "0",
            "-5",
            "1700000000.x",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format_time(1_700_000_000_250_000),
            "2023-11-14T22:13:20.250Z"
        );
        assert_eq!(format_time(1_700_000_000_000_000), "2023-11-14T22:13:20Z");
    }
}
