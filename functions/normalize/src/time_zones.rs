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
//! else `default`. A stamp is read by the zone's rules at the stamp's own wall-clock time, so
//! a device that buffered its logs across a clock change keeps its offset; of the two readings
//! of the hour repeated when clocks go back, the one nearer the receive time wins
//! (`natlake_core::time::Zone::local_to_utc`). A `tz` label naming no zone is not guessed at:
//! the handler rejects the records that need it.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
pub use natlake_core::time::Zone;
use serde::Deserialize;

/// The raw-object label that names the zone of every record in it.
pub const LABEL: &str = "tz";

#[derive(Debug, thiserror::Error)]
pub enum TimeZoneError {
    #[error("time zones file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(transparent)]
    Zone(#[from] natlake_core::time::ZoneError),
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
            Some(name) => Ok(Some(Zone::parse(name)?)),
            None => Ok(self.default),
        }
    }

    /// The zone of a record from `peer` in an object whose zone is `object_zone`
    /// ([`Self::object_zone`]): a `[[source]]` entry's, else the object's, else UTC. An object
    /// zone that failed is the error, for the records no entry names.
    pub fn zone_for<'a, E>(
        &self,
        peer: Option<IpAddr>,
        object_zone: &'a Result<Option<Zone>, E>,
    ) -> Result<Zone, &'a E> {
        match (self.peer_zone(peer), object_zone) {
            (Some(z), _) => Ok(z),
            (None, Ok(z)) => Ok(z.unwrap_or(Zone::UTC)),
            (None, Err(e)) => Err(e),
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
        let obj = tz.object_zone(&none);
        let at = |peer: Option<IpAddr>, obj: &Result<Option<Zone>, TimeZoneError>| {
            tz.zone_for(peer, obj).unwrap().offset_at(winter)
        };
        for (peer, want) in [
            (ip("192.0.2.1"), -5 * 3600),
            (ip("192.0.2.200"), 19_800),
            (ip("2001:db8::9"), -3 * 3600),
            (ip("198.51.100.1"), 3600),
            (None, 3600),
        ] {
            assert_eq!(at(peer, &obj), want, "{peer:?}");
        }
        let labelled: std::collections::BTreeMap<String, String> =
            [("tz".to_string(), "Europe/Berlin".to_string())].into();
        let obj = tz.object_zone(&labelled);
        assert_eq!(at(ip("198.51.100.1"), &obj), 3600);
        assert_eq!(at(ip("192.0.2.1"), &obj), -5 * 3600);
        let bad: std::collections::BTreeMap<String, String> =
            [("tz".to_string(), "Atlantis".to_string())].into();
        let bad = tz.object_zone(&bad);
        assert!(bad.is_err());
        // A sender with its own entry is still read; the others get the object's error.
        assert_eq!(at(ip("192.0.2.1"), &bad), -5 * 3600);
        assert!(tz.zone_for(ip("198.51.100.1"), &bad).is_err());
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
