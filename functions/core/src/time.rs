//! Time parsing and formatting at the edges (API parameters, JSON output), and the device
//! clocks that wall-clock stamps are read in.

use chrono::{DateTime, LocalResult, Offset, SecondsFormat, TimeZone, Utc};

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?} (an IANA name such as \"Europe/Berlin\", or \"+05:30\")")]
pub struct ZoneError(pub String);

/// The zone a device's clock runs in: an IANA zone (its daylight-saving rules apply) or a fixed
/// offset in seconds east of UTC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(i32),
}

impl Zone {
    pub const UTC: Zone = Zone::Fixed(0);

    /// An IANA name, or "+05:30", "-0800", "+5", "UTC", "GMT", "Z". Not "UTC+2": the IANA names
    /// `Etc/GMT+2` mean two hours *behind* UTC, and a form that reads either way is refused.
    pub fn parse(s: &str) -> Result<Self, ZoneError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ZoneError(s.to_owned()));
        }
        if let Some(secs) = fixed_offset(s) {
            return Ok(Zone::Fixed(secs));
        }
        s.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| ZoneError(s.to_owned()))
    }

    /// Seconds east of UTC at `at` (UTC).
    pub fn offset_at(self, at: Micros) -> i32 {
        match self {
            Zone::Fixed(s) => s,
            Zone::Named(tz) => DateTime::from_timestamp_micros(at)
                .map(|t| {
                    tz.offset_from_utc_datetime(&t.naive_utc())
                        .fix()
                        .local_minus_utc()
                })
                .unwrap_or(0),
        }
    }

    /// The UTC time of a wall-clock reading `local` (microseconds since 1970 as if the reading
    /// were UTC), by the zone's rules at that reading, not at the time it was received: a
    /// device that buffered its logs across a clock change, or a stamp written just before the
    /// change and received just after, keeps its own offset. Two cases the rules leave open:
    /// - the hour repeated when clocks go back holds each reading twice: the one nearer `near`
    ///   (the receive time) wins, as a device logs in real time far more often than not;
    /// - the hour skipped when clocks go forward holds no reading a device following the rules
    ///   would write: it is read at the offset in force at `near`.
    pub fn local_to_utc(self, local: Micros, near: Micros) -> Option<Micros> {
        let fixed = |off: i32| local.checked_sub(i64::from(off) * 1_000_000);
        let tz = match self {
            Zone::Fixed(off) => return fixed(off),
            Zone::Named(tz) => tz,
        };
        let naive = DateTime::from_timestamp_micros(local)?.naive_utc();
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => Some(t.timestamp_micros()),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.timestamp_micros(), b.timestamp_micros());
                let dist = |t: Micros| t.saturating_sub(near).saturating_abs();
                Some(if dist(b) < dist(a) { b } else { a })
            }
            LocalResult::None => fixed(self.offset_at(near)),
        }
    }
}

/// "+05:30", "-0800", "+5" offsets, and "UTC" / "GMT" / "Z".
fn fixed_offset(s: &str) -> Option<i32> {
    if matches!(s, "UTC" | "GMT" | "Z") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, s.get(1..)?),
        b'-' => (-1, s.get(1..)?),
        _ => return None,
    };
    // Digits and one colon only, so the split below is on a character boundary.
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

/// How to read one record's wall-clock stamps: the device's zone, and the receive time that
/// settles what a stamp leaves out (the year) or leaves open (a repeated hour).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub zone: Zone,
    pub near: Micros,
}

impl Clock {
    /// For stamps that carry their own date and offset context (the zone is all that matters).
    pub const UTC: Clock = Clock {
        zone: Zone::UTC,
        near: 0,
    };

    pub fn new(zone: Zone, near: Micros) -> Self {
        Self { zone, near }
    }

    /// The same receive time in another zone (a stamp that names its own offset).
    pub fn with_offset(self, offset_secs: i32) -> Self {
        Self {
            zone: Zone::Fixed(offset_secs),
            ..self
        }
    }

    /// UTC of the wall-clock reading `local` (see [`Zone::local_to_utc`]).
    pub fn to_utc(self, local: Micros) -> Option<Micros> {
        self.zone.local_to_utc(local, self.near)
    }

    /// The zone's offset at the receive time: what the device's calendar read then, for
    /// placing a stamp without a year.
    pub fn offset_near(self) -> i32 {
        self.zone.offset_at(self.near)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_micros()
    }

    /// A wall-clock reading as micros "as if UTC", the form parsers hand to a clock.
    fn wall(s: &str) -> i64 {
        micros(&format!("{s}Z"))
    }

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

    #[test]
    fn zones_by_name_with_daylight_saving_and_fixed() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.offset_at(micros("2026-01-15T12:00:00Z")), 3600);
        assert_eq!(berlin.offset_at(micros("2026-07-15T12:00:00Z")), 7200);
        // The spring change: 01:00 UTC on the last Sunday of March.
        assert_eq!(berlin.offset_at(micros("2026-03-29T00:59:59Z")), 3600);
        assert_eq!(berlin.offset_at(micros("2026-03-29T01:00:00Z")), 7200);
        for (s, want) in [
            ("+05:30", 19_800),
            ("-0800", -28_800),
            ("+2", 7200),
            ("UTC", 0),
            ("Z", 0),
        ] {
            assert_eq!(Zone::parse(s).unwrap(), Zone::Fixed(want), "{s}");
        }
        // IANA's own sign convention, kept as IANA defines it.
        let etc = Zone::parse("Etc/GMT+5").unwrap();
        assert_eq!(etc.offset_at(0), -5 * 3600);
        for bad in [
            "Mars/Olympus",
            "+25:00",
            "+05:77",
            "",
            "Europe/",
            "UTC+2",
            "GMT-3",
            "+1é1",
            "-é",
            "+0é",
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wall_clock_stamps_read_by_the_rules_at_their_own_time() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // Written at 01:59:59 CET, one second before the spring change, and received after it:
        // the offset in force at the receive time (+2) would put it an hour early.
        let recv = micros("2026-03-29T01:00:00.500Z");
        assert_eq!(
            berlin.local_to_utc(wall("2026-03-29T01:59:59"), recv),
            Some(micros("2026-03-29T00:59:59Z"))
        );
        assert_eq!(
            berlin.local_to_utc(wall("2026-03-29T03:00:00"), recv),
            Some(micros("2026-03-29T01:00:00Z"))
        );
        // A winter stamp buffered by the device and delivered in summer keeps its winter offset.
        assert_eq!(
            berlin.local_to_utc(
                wall("2026-01-15T12:00:00.250"),
                micros("2026-07-01T00:00:00Z")
            ),
            Some(micros("2026-01-15T11:00:00.250Z"))
        );
        // The hour repeated in autumn: each reading is the one nearer its receive time.
        let repeated = wall("2026-10-25T02:30:00");
        assert_eq!(
            berlin.local_to_utc(repeated, micros("2026-10-25T00:30:02Z")),
            Some(micros("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            berlin.local_to_utc(repeated, micros("2026-10-25T01:30:02Z")),
            Some(micros("2026-10-25T01:30:00Z"))
        );
        // Written at 02:59:59 CEST, the second before the autumn change, and received after
        // it: the first occurrence (nearer), where the receive time's offset (+1) would put it
        // an hour late.
        assert_eq!(
            berlin.local_to_utc(
                wall("2026-10-25T02:59:59"),
                micros("2026-10-25T01:00:00.5Z")
            ),
            Some(micros("2026-10-25T00:59:59Z"))
        );
        // The skipped hour in spring has no reading: read at the offset of the receive time.
        let skipped = wall("2026-03-29T02:30:00");
        assert_eq!(
            berlin.local_to_utc(skipped, micros("2026-03-29T02:00:00Z")),
            Some(micros("2026-03-29T00:30:00Z"))
        );
        assert_eq!(
            berlin.local_to_utc(skipped, micros("2026-03-29T00:00:00Z")),
            Some(micros("2026-03-29T01:30:00Z"))
        );
        // Fixed offsets ignore the receive time; out-of-range readings give None, not a panic.
        let kolkata = Zone::parse("+05:30").unwrap();
        assert_eq!(
            kolkata.local_to_utc(wall("2026-03-29T05:30:00"), 0),
            Some(micros("2026-03-29T00:00:00Z"))
        );
        assert_eq!(berlin.local_to_utc(i64::MAX, 0), None);
        assert_eq!(kolkata.local_to_utc(i64::MIN, 0), None);
        // A clock carries its receive time for the year and the repeated hour.
        let clock = Clock::new(berlin, micros("2026-10-25T01:30:02Z"));
        assert_eq!(clock.offset_near(), 3600);
        assert_eq!(clock.to_utc(repeated), Some(micros("2026-10-25T01:30:00Z")));
        assert_eq!(
            clock.with_offset(0).to_utc(repeated),
            Some(micros("2026-10-25T02:30:00Z"))
        );
    }
}
