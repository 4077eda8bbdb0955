//! Device time zones: which zone a source's clock is in, for timestamps that carry no offset
//! (RFC 3164 headers, Junos and ASA stamps, FortiGate `date=`/`time=`, Nokia `at …`).
//!
//! ```toml
//! default = "UTC"                      # sources not listed below (the default)
//!
//! [[source]]
//! peer = "192.0.2.0/24"                # the address the relay received from
//! zone = "Europe/Berlin"               # IANA name: its daylight-saving rules apply
//!
//! [[source]]
//! peer = "2001:db8:10::/48"
//! zone = "+05:30"                      # or a fixed offset ("+HH[:MM]", "-HHMM")
//! ```
//!
//! A record's zone is the longest `peer` prefix that holds its sender; else the raw object's
//! `tz` label (a relay started with `--label tz=America/Chicago` stamps it on every batch);
//! else `default`. The offset is the zone's at the record's receive time, which is right except
//! for stamps written before a clock change and received after it (the change's hour, or a
//! device that buffered its logs across it). A `tz` label naming no zone is not guessed at: the
//! handler rejects the records that need it.

use std::net::IpAddr;
use std::path::Path;

use chrono::{Offset, TimeZone};
use ipnet::IpNet;
use serde::Deserialize;

/// The raw-object label that names the zone of every record in it.
pub const LABEL: &str = "tz";

#[derive(Debug, thiserror::Error)]
pub enum TimeZoneError {
    #[error("time zones file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("unknown time zone {0:?} (an IANA name such as \"Europe/Berlin\", or \"+05:30\")")]
    Zone(String),
}

/// A zone by name or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(i32),
}

impl Zone {
    pub fn parse(s: &str) -> Result<Self, TimeZoneError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TimeZoneError::Zone(s.to_owned()));
        }
        if let Some(secs) = fixed_offset(s) {
            return Ok(Zone::Fixed(secs));
        }
        s.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| TimeZoneError::Zone(s.to_owned()))
    }

    /// Seconds east of UTC at `at_micros` (UTC).
    pub fn offset_at(self, at_micros: i64) -> i32 {
        match self {
            Zone::Fixed(s) => s,
            Zone::Named(tz) => chrono::DateTime::from_timestamp_micros(at_micros)
                .map(|t| {
                    tz.offset_from_utc_datetime(&t.naive_utc())
                        .fix()
                        .local_minus_utc()
                })
                .unwrap_or(0),
        }
    }
}

/// "+05:30", "-0800", "+5" offsets, and "UTC" / "GMT" / "Z". Not "UTC+2": the IANA names
/// `Etc/GMT+2` mean two hours *behind* UTC, and a form that reads either way is refused.
fn fixed_offset(s: &str) -> Option<i32> {
    if matches!(s, "UTC" | "GMT" | "Z") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, s.get(1..)?),
        b'-' => (-1, s.get(1..)?),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    default: Option<String>,
    #[serde(default)]
    source: Vec<SourceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceEntry {
    peer: IpNet,
    zone: String,
}

/// The zones of every source, resolved per record.
#[derive(Debug, Clone, Default)]
pub struct TimeZones {
    default: Option<Zone>,
    /// Longest prefix first, so the first match is the most specific.
    sources: Vec<(IpNet, Zone)>,
}

impl TimeZones {
    /// Reads `path` (TOML, see the module docs). Any unknown zone or key is an error at start,
    /// not a silently shifted clock later.
    pub fn from_file(path: &Path) -> Result<Self, TimeZoneError> {
        let file_err = |reason: String| TimeZoneError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        Self::from_toml(&text).map_err(|e| match e {
            TimeZoneError::File { reason, .. } => file_err(reason),
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, TimeZoneError> {
        let f: File = toml::from_str(text).map_err(|e| TimeZoneError::File {
            path: String::new(),
            reason: e.to_string(),
        })?;
        let mut sources = f
            .source
            .into_iter()
            .map(|s| Ok((s.peer.trunc(), Zone::parse(&s.zone)?)))
            .collect::<Result<Vec<_>, TimeZoneError>>()?;
        sources.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Ok(Self {
            default: f.default.as_deref().map(Zone::parse).transpose()?,
            sources,
        })
    }

    /// Nothing configured: every clock is UTC, and no record needs a lookup.
    pub fn is_utc_everywhere(&self) -> bool {
        self.sources.is_empty() && matches!(self.default, None | Some(Zone::Fixed(0)))
    }

    /// The zone of an object's records when no `peer` entry names their sender: its `tz`
    /// label, else the default. A label naming no zone is reported, and the default used.
    pub fn object_zone(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<Zone>, TimeZoneError> {
        match labels.get(LABEL) {
            Some(name) => Zone::parse(name).map(Some),
            None => Ok(self.default),
        }
    }

    /// The zone a `[[source]]` entry gives `peer` (the longest prefix that holds it).
    pub fn peer_zone(&self, peer: Option<IpAddr>) -> Option<Zone> {
        let ip = peer?;
        self.sources
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, z)| *z)
    }

    /// The UTC offset for a record from `peer`, received at `recv_micros`.
    pub fn offset_secs(
        &self,
        peer: Option<IpAddr>,
        object_zone: Option<Zone>,
        recv_micros: i64,
    ) -> i32 {
        self.peer_zone(peer)
            .or(object_zone)
            .map_or(0, |z| z.offset_at(recv_micros))
    }
}

/// The command-line flags every door shares (`normalize`, `natlake normalize`, `natlake up`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TimeZoneArgs {
    /// Device time zones by sender (TOML: `default`, `[[source]] peer = CIDR, zone = NAME`).
    #[arg(long, env = "NATLAKE_TIME_ZONES", global = true)]
    pub time_zones: Option<std::path::PathBuf>,
    /// The zone of devices that no entry names (IANA name or "+05:30"); overrides the
    /// file's `default`.
    #[arg(long, env = "NATLAKE_TZ", global = true)]
    pub tz: Option<String>,
}

impl TimeZoneArgs {
    pub fn load(&self) -> Result<TimeZones, TimeZoneError> {
        let mut zones = match &self.time_zones {
            Some(path) => TimeZones::from_file(path)?,
            None => TimeZones::default(),
        };
        if let Some(tz) = &self.tz {
            zones.default = Some(Zone::parse(tz)?);
        }
        Ok(zones)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_micros()
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
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_peer_prefix_then_label_then_default() {
        let tz = TimeZones::from_toml(
            r#"
            default = "+01:00"
            [[source]]
            peer = "192.0.2.0/24"
            zone = "America/New_York"
            [[source]]
            peer = "192.0.2.128/25"
            zone = "Asia/Kolkata"
            [[source]]
            peer = "2001:db8::/32"
            zone = "-03:00"
            "#,
        )
        .unwrap();
        let winter = micros("2026-01-15T12:00:00Z");
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let none = std::collections::BTreeMap::new();
        let obj = tz.object_zone(&none).unwrap();
        assert_eq!(tz.offset_secs(ip("192.0.2.1"), obj, winter), -5 * 3600);
        assert_eq!(tz.offset_secs(ip("192.0.2.200"), obj, winter), 19_800);
        assert_eq!(tz.offset_secs(ip("2001:db8::9"), obj, winter), -3 * 3600);
        assert_eq!(tz.offset_secs(ip("198.51.100.1"), obj, winter), 3600);
        assert_eq!(tz.offset_secs(None, obj, winter), 3600);
        let labelled: std::collections::BTreeMap<String, String> =
            [("tz".to_string(), "Europe/Berlin".to_string())].into();
        let obj = tz.object_zone(&labelled).unwrap();
        assert_eq!(tz.offset_secs(ip("198.51.100.1"), obj, winter), 3600);
        assert_eq!(tz.offset_secs(ip("192.0.2.1"), obj, winter), -5 * 3600);
        let bad: std::collections::BTreeMap<String, String> =
            [("tz".to_string(), "Atlantis".to_string())].into();
        assert!(tz.object_zone(&bad).is_err());
        assert!(!tz.is_utc_everywhere());
        assert!(TimeZones::default().is_utc_everywhere());
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, needle) in [
            ("default = \"Nowhere/City\"", "Nowhere/City"),
            (
                "[[source]]\npeer = \"192.0.2.0/33\"\nzone = \"UTC\"",
                "peer",
            ),
            (
                "[[source]]\npeer = \"192.0.2.0/24\"\nzone = \"UTC\"\nsite = \"x\"",
                "site",
            ),
            ("defaults = \"UTC\"", "defaults"),
        ] {
            let e = TimeZones::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
