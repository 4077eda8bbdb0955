//! A relay's progress record, `_state/relays/<relay>.json`: rewritten by the relay every
//! `sink.heartbeat_interval`, read by lookups.
//!
//! A raw object says what a relay received up to the moment the batch opened; it cannot say
//! that nothing else is on its way. The heartbeat does: for each input kind, the time before
//! which every message the relay received is in a stored raw object (or counted as dropped).
//! A relay that dies stops rewriting it, so its claim stays behind and every later question
//! about what it logged stays reported as not received — until an operator retires the relay
//! (`<relay>.retired.json`, written by `natlake relays retire`). What a relay dropped goes into
//! spans under [`DROPS_PREFIX`]; an operator who has checked one may accept its loss
//! (`<span>.accepted.json`, written by `natlake relays accept-drops`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where heartbeats and retirements live.
pub const PREFIX: &str = "_state/relays";
/// Where relays record what they dropped, by the hour it began in (`hour=YYYY-MM-DDTHH/`).
pub const DROPS_PREFIX: &str = "_state/relays/drops";
const RETIRED_SUFFIX: &str = ".retired.json";
/// An operator's acceptance of a span of drops sits beside the span, so one listing finds both.
const ACCEPTED_SUFFIX: &str = ".accepted.json";

/// The heartbeat key of a relay (its id as it appears in raw keys).
pub fn key(relay: &str) -> String {
    format!("{PREFIX}/{}.json", crate::key::sanitize_relay_id(relay))
}

/// The retirement key of a relay.
pub fn retired_key(relay: &str) -> String {
    format!(
        "{PREFIX}/{}{RETIRED_SUFFIX}",
        crate::key::sanitize_relay_id(relay)
    )
}

/// What a key under [`PREFIX`] is: `(relay, retired?)`; `None` for anything else.
pub fn parse_key(key: &str) -> Option<(&str, bool)> {
    let name = key.strip_prefix(PREFIX)?.strip_prefix('/')?;
    if name.contains('/') {
        return None;
    }
    if let Some(relay) = name.strip_suffix(RETIRED_SUFFIX) {
        return (!relay.is_empty()).then_some((relay, true));
    }
    let relay = name.strip_suffix(".json")?;
    (!relay.is_empty()).then_some((relay, false))
}

/// The key of a span of dropped messages: `<DROPS_PREFIX>/hour=H/<relay>_<kind>_<first_us>.json`.
/// The span grows in place (the same key) until it closes.
pub fn drops_key(relay: &str, kind: &str, first_us: i64) -> String {
    format!(
        "{}/{}_{kind}_{first_us}.json",
        drops_dir(first_us.div_euclid(1_000_000)),
        crate::key::sanitize_relay_id(relay)
    )
}

/// The directory of the spans that began in the hour of `unix_secs`.
pub fn drops_dir(unix_secs: i64) -> String {
    format!("{DROPS_PREFIX}/hour={}", crate::key::hour_label(unix_secs))
}

/// `(relay, kind, first_us)` of a [`drops_key`].
pub fn parse_drops_key(key: &str) -> Option<(&str, &str, i64)> {
    let name = key.strip_prefix(DROPS_PREFIX)?.rsplit('/').next()?;
    let stem = name.strip_suffix(".json")?;
    if stem.ends_with(".accepted") {
        return None;
    }
    // Relay ids have no `_`; kinds may (`syslog_udp`); the time has none.
    let (relay, rest) = stem.split_once('_')?;
    let (kind, first) = rest.rsplit_once('_')?;
    Some((relay, kind, first.parse().ok()?))
}

/// The key of an operator's acceptance of the span at `span_key`; `None` if it is not a span's.
pub fn drops_accepted_key(span_key: &str) -> Option<String> {
    parse_drops_key(span_key)?;
    Some(format!(
        "{}{ACCEPTED_SUFFIX}",
        span_key.strip_suffix(".json")?
    ))
}

/// The span key an acceptance key ([`drops_accepted_key`]) is for.
pub fn parse_drops_accepted_key(key: &str) -> Option<String> {
    let span = format!("{}.json", key.strip_suffix(ACCEPTED_SUFFIX)?);
    parse_drops_key(&span)?;
    Some(span)
}

/// The reason of a span an unclean stop left (kill -9, crash, power loss): the relay lost what
/// it had received and not yet spooled; how many messages is unknown (counted 0).
pub const UNCLEAN_STOP: &str = "unclean_stop";

/// Messages a relay received and could not keep (counted by reason), received within
/// [first_us, last_us] on its clock. Written before the heartbeat whose claim passes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropSpan {
    pub relay: String,
    pub kind: String,
    pub first_us: i64,
    pub last_us: i64,
    pub messages: u64,
    pub reasons: BTreeMap<String, u64>,
}

/// A relay's heartbeat. Times are microseconds since the Unix epoch on the relay's clock (the
/// clock that stamps `recv_time`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub relay: String,
    pub written_us: i64,
    /// When this relay process started.
    pub started_us: i64,
    /// The relay's last heartbeat before it stopped on request: nothing is received after it.
    #[serde(default)]
    pub stopped: bool,
    /// By input kind (`InputKind::as_str`): the kinds the relay receives or still holds.
    pub kinds: BTreeMap<String, KindProgress>,
    /// Messages dropped since the process started, by reason (counted, never stored).
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindProgress {
    /// Every message of this kind the relay received before this time is in a stored raw
    /// object, or was counted as dropped.
    pub complete_through_us: i64,
    /// Batches of this kind in the spool (closed, not yet confirmed by the store).
    pub spooled_batches: u64,
}

impl Heartbeat {
    /// Up to when `kind` is stored; `None` when the relay does not report the kind.
    pub fn complete_through(&self, kind: &str) -> Option<i64> {
        self.kinds.get(kind).map(|k| k.complete_through_us)
    }
}

/// An operator's record that a relay is gone for good (decommissioned, or its loss accepted):
/// lookups then no longer wait on it. A heartbeat written after `at_us` undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    pub relay: String,
    pub at_us: i64,
    pub reason: String,
}

/// An operator's record that the messages of a span of drops are acceptable to lose (checked:
/// no answer needs them). It covers the span as it was accepted: if the span grows after
/// (more drops under the same key), lookups report it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropAcceptance {
    /// The span's key.
    pub key: String,
    pub at_us: i64,
    pub reason: String,
    /// The span's `last_us` and `messages` when it was accepted.
    pub last_us: i64,
    pub messages: u64,
}

impl DropAcceptance {
    /// Whether this acceptance still covers `span` (it has not grown since).
    pub fn covers(&self, span: &DropSpan) -> bool {
        span.last_us <= self.last_us && span.messages <= self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        assert_eq!(key("edge-1"), "_state/relays/edge-1.json");
        assert_eq!(parse_key(&key("edge-1")), Some(("edge-1", false)));
        assert_eq!(parse_key(&retired_key("edge-1")), Some(("edge-1", true)));
        assert_eq!(parse_key("_state/relays/x/y.json"), None);
        assert_eq!(parse_key("_state/relays/.json"), None);
        assert_eq!(parse_key("_state/normalized/a.json"), None);
        // Ids are sanitized as in raw keys, so the lookup finds the relay of a raw key.
        assert_eq!(key("edge 1/a"), "_state/relays/edge-1-a.json");
        let d = drops_key("edge-1", "syslog_udp", 1_795_510_800_000_001);
        assert_eq!(
            d,
            "_state/relays/drops/hour=2026-11-24T09/edge-1_syslog_udp_1795510800000001.json"
        );
        assert_eq!(
            parse_drops_key(&d),
            Some(("edge-1", "syslog_udp", 1_795_510_800_000_001))
        );
        assert_eq!(parse_key(&d), None);
        let a = drops_accepted_key(&d).unwrap();
        assert_eq!(
            a,
            "_state/relays/drops/hour=2026-11-24T09/edge-1_syslog_udp_1795510800000001.accepted.json"
        );
        assert_eq!(parse_drops_key(&a), None);
        assert_eq!(parse_drops_accepted_key(&a), Some(d.clone()));
        assert_eq!(parse_drops_accepted_key(&d), None);
        assert_eq!(drops_accepted_key("_state/relays/edge-1.json"), None);
    }

    #[test]
    fn reads_what_it_writes() {
        let hb = Heartbeat {
            relay: "r1".into(),
            written_us: 2,
            started_us: 1,
            stopped: false,
            kinds: [(
                "syslog_udp".to_string(),
                KindProgress {
                    complete_through_us: 1,
                    spooled_batches: 3,
                },
            )]
            .into(),
            dropped: BTreeMap::new(),
        };
        let back: Heartbeat = serde_json::from_slice(&serde_json::to_vec(&hb).unwrap()).unwrap();
        assert_eq!(back, hb);
        assert_eq!(back.complete_through("syslog_udp"), Some(1));
        assert_eq!(back.complete_through("ipfix"), None);
    }
}
