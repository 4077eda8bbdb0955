//! Enrichment: context the devices do not log, added to every row by the normalizer.
//!
//! - [`prefixes`]: subscriber, site, prefix and role by longest-prefix match on the inside
//!   address (a NetBox `/api/ipam/prefixes/` export or a CSV);
//! - [`identity`]: who held a dynamic inside address *at the event's time* (RADIUS accounting,
//!   Kea / ISC dhcpd leases, or plain intervals);
//! - [`geo`]: destination ASN, AS organisation and country from MaxMind-format databases;
//! - [`cloudfoundry`]: the Cloud Foundry forwarder's view of container traffic (app, space,
//!   organization by container address).
//!
//! Loaders are pure functions from bytes (the normalizer fetches the bytes from a file or the
//! store and reloads them); lookups do no I/O. A bad record in a source is counted and its reason
//! kept, never a panic and never a reason to drop the rest of the file.

pub mod cloudfoundry;
pub mod geo;
pub mod identity;
pub mod prefixes;
pub mod sources;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{Event, Row};

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// The source as a whole cannot be read (not JSON, no CSV header, not an MMDB file).
    #[error("{0}")]
    Format(String),
}

/// How many reasons of bad records a load keeps (the count is always complete).
pub const MAX_REASONS: usize = 5;

/// What loading one source saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadStats {
    /// Records read.
    pub records: usize,
    /// Records that became lookup entries.
    pub loaded: usize,
    /// Records ignored on purpose (deprecated prefixes, accounting-on/off, declined leases).
    pub skipped: usize,
    /// Records that could not be used; the first [`MAX_REASONS`] reasons are in `reasons`.
    pub bad: usize,
    pub reasons: Vec<String>,
}

impl LoadStats {
    pub(crate) fn bad(&mut self, reason: impl Into<String>) {
        self.bad += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason.into());
        }
    }
}

/// A loaded source and what loading it saw.
#[derive(Debug)]
pub struct Loaded<T> {
    pub data: T,
    pub stats: LoadStats,
}

/// Every configured source, applied together to rows. Sources are shared (`Arc`) so a reload of
/// one builds a new `Enricher` without copying the others.
#[derive(Debug, Clone, Default)]
pub struct Enricher {
    pub prefixes: Option<Arc<prefixes::PrefixTable>>,
    /// Identity sources (RADIUS, DHCP, …): they must agree, or the subscriber stays unknown.
    pub identity: Vec<Arc<identity::IdentityTable>>,
    pub asn: Option<Arc<geo::GeoDb>>,
    pub country: Option<Arc<geo::GeoDb>>,
    pub cloudfoundry: Option<Arc<cloudfoundry::Containers>>,
}

impl Enricher {
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_none()
            && self.identity.is_empty()
            && self.asn.is_none()
            && self.country.is_none()
            && self.cloudfoundry.is_none()
    }

    /// The subscriber of `inside` at `time` for an event of `vrf` logged by `device`, by the
    /// identity sources: None when none knows, or when they name different subscribers (never
    /// a guess).
    pub fn identity_at(
        &self,
        inside: IpAddr,
        time: crate::model::Micros,
        vrf: Option<&str>,
        device: Option<&str>,
    ) -> Option<&str> {
        match self.holder_at(inside, time, vrf, device) {
            identity::Holder::One(s) => Some(s),
            identity::Holder::Nobody | identity::Holder::Free | identity::Holder::Ambiguous => None,
        }
    }

    /// Who held `inside` at `time` by every identity source that speaks for `vrf` and
    /// `device` ([`identity::Scope`]) together: `Ambiguous` when a source cannot tell (a
    /// handover instant) or two name different subscribers.
    pub fn holder_at(
        &self,
        inside: IpAddr,
        time: crate::model::Micros,
        vrf: Option<&str>,
        device: Option<&str>,
    ) -> identity::Holder<'_> {
        let mut found = identity::Holder::Nobody;
        for t in self.identity.iter().filter(|t| t.scope.covers(vrf, device)) {
            found = found.and(t.lookup(inside, time));
            if found == identity::Holder::Ambiguous {
                break;
            }
        }
        found
    }

    /// Adds what the sources know to `row`. The subscriber a device logged itself is kept; else
    /// identity-over-time wins over the prefix's subscriber (a pool prefix names no one person).
    pub fn apply(&self, row: &mut Row) {
        if self.is_empty() {
            return;
        }
        let (inside, dst, vrf) = match &row.event {
            Event::Nat(e) => (e.src_ip, e.dst_ip, e.vrf.as_deref()),
            Event::Flow(e) => (e.src_ip, e.dst_ip, e.vrf.as_deref()),
            Event::Firewall(e) => (e.src_ip, e.dst_ip, e.vrf.as_deref()),
            // The log-aggregation tables (http_access, mail, auth) carry no enrichment columns.
            Event::Http(_) | Event::Mail(_) | Event::Auth(_) => return,
        };
        let time = row.event.time();
        let env = &mut row.envelope;
        if let Some(ip) = inside {
            let matched = self.prefixes.as_ref().and_then(|p| p.lookup_in(ip, vrf));
            if let Some((net, info)) = matched {
                env.enrichment.prefix = Some(net);
                env.enrichment.site = info.site.clone();
                env.enrichment.role = info.role.clone();
            }
            if env.subscriber.is_none() {
                // The prefix's subscriber (a customer's own static range) only where no identity
                // source knows the address: when they disagree, or one cannot tell at a handover
                // instant, nobody is named — falling back would name the prefix's owner instead.
                env.subscriber = match self.holder_at(ip, time, vrf, env.device.as_deref()) {
                    identity::Holder::One(s) => Some(s.to_owned()),
                    // Known to the sources, held by no one then: not the prefix's owner either.
                    identity::Holder::Ambiguous | identity::Holder::Free => None,
                    identity::Holder::Nobody => matched.and_then(|(_, i)| i.subscriber.clone()),
                };
            }
        }
        if let Some(ip) = dst {
            if let Some(asn) = self.asn.as_ref().and_then(|g| g.asn(ip)) {
                env.enrichment.dst_asn = asn.number;
                env.enrichment.dst_as_org = asn.organization;
            }
            // Written only when found: a write gives the row its own enrichment.
            if let Some(country) = self.country.as_ref().and_then(|g| g.country(ip)) {
                env.enrichment.dst_country = Some(country);
            }
        }
        if let Event::Firewall(fw) = &row.event
            && let Some(cf) = cloudfoundry::traffic(fw, self.cloudfoundry.as_deref())
        {
            env.enrichment.cf = Some(cf);
        }
    }
}

/// Text of a JSON value that holds a name or id: strings as they are, numbers printed; empty
/// strings and everything else are None.
pub(crate) fn json_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A CSV reader over `bytes` with a header row, flexible row lengths and trimmed fields.
pub(crate) fn csv_reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes)
}

/// Index of each wanted header (case-insensitive), None where the file lacks it.
pub(crate) fn header_index<const N: usize>(
    headers: &csv::StringRecord,
    wanted: [&[&str]; N],
) -> [Option<usize>; N] {
    wanted.map(|names| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    })
}

/// A non-empty CSV field.
pub(crate) fn field(rec: &csv::StringRecord, i: Option<usize>) -> Option<&str> {
    i.and_then(|i| rec.get(i)).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::identity::{IdentityFormat, IdentityOptions, Scope};
    use super::*;
    use crate::model::{Envelope, Event, NatEvent, Provenance};

    /// An identity source in which `user` holds 100.64.0.1 since 2020.
    fn table(user: &str, scope: Scope) -> Arc<identity::IdentityTable> {
        let csv = format!("ip,subscriber,start,end\n100.64.0.1,{user},2020-01-01T00:00:00Z,\n");
        let mut t = identity::load(
            csv.as_bytes(),
            IdentityFormat::Csv,
            &IdentityOptions::default(),
        )
        .unwrap()
        .data;
        t.scope = scope;
        Arc::new(t)
    }

    /// A NAT event of inside address `src` in 2023.
    fn row(src: &str, vrf: Option<&str>, device: Option<&str>) -> Row {
        Row {
            event: Event::Nat(NatEvent {
                time: 1_700_000_000_000_000,
                src_ip: src.parse().ok(),
                vrf: vrf.map(Into::into),
                ..NatEvent::default()
            }),
            envelope: Envelope {
                device: device.map(Into::into),
                ..Envelope::default()
            },
            provenance: Provenance {
                raw_key: "raw/k".into(),
                raw_record: 0,
            },
        }
    }

    /// When the identity sources cannot name one holder, the prefix's owner is not named in
    /// their place; a pool's tenant is never a subscriber.
    #[test]
    fn a_prefix_owner_stands_in_only_where_no_identity_source_knows_the_address() {
        let netbox = r#"[
          {"prefix": "100.64.0.0/24", "tenant": {"name": "Acme GmbH"}, "is_pool": false},
          {"prefix": "100.64.9.0/24", "tenant": {"name": "Carrier Wholesale"}, "is_pool": true}
        ]"#;
        let prefixes = prefixes::load(
            netbox.as_bytes(),
            prefixes::PrefixFormat::Netbox,
            &prefixes::PrefixOptions::default(),
        )
        .unwrap()
        .data;
        let e = Enricher {
            prefixes: Some(Arc::new(prefixes)),
            identity: vec![
                table("alice", Scope::default()),
                table("bob", Scope::default()),
            ],
            ..Enricher::default()
        };
        let who = |src| {
            let mut r = row(src, None, None);
            e.apply(&mut r);
            (
                r.envelope.subscriber,
                r.envelope.enrichment.prefix.map(|n| n.to_string()),
            )
        };
        // RADIUS and DHCP disagree on 100.64.0.1: nobody, not the range's tenant.
        assert_eq!(who("100.64.0.1"), (None, Some("100.64.0.0/24".into())));
        // An address no identity source knows: the customer's own static range names them.
        assert_eq!(who("100.64.0.9").0.as_deref(), Some("Acme GmbH"));
        // A pool: its tenant names no one.
        assert_eq!(who("100.64.9.9"), (None, Some("100.64.9.0/24".into())));
    }

    /// Two regions reuse 100.64.0.0/10, each with its own RADIUS export: a source scoped to a
    /// VRF (or device) names subscribers only on that VRF's (device's) events.
    #[test]
    fn scoped_identity_sources_speak_only_for_their_vrf_or_device() {
        let e = Enricher {
            identity: vec![
                table(
                    "alice",
                    Scope {
                        vrf: Some("red".into()),
                        device: None,
                    },
                ),
                table(
                    "bob",
                    Scope {
                        vrf: None,
                        device: Some("bng-2".into()),
                    },
                ),
            ],
            ..Enricher::default()
        };
        let who = |vrf, device| {
            let mut r = row("100.64.0.1", vrf, device);
            e.apply(&mut r);
            r.envelope.subscriber
        };
        assert_eq!(who(Some("red"), Some("bng-1")).as_deref(), Some("alice"));
        assert_eq!(who(Some("blue"), Some("bng-2")).as_deref(), Some("bob"));
        assert_eq!(
            who(Some("blue"), Some("bng-1")),
            None,
            "no source speaks for it"
        );
        // Both speak for a red event of bng-2, and disagree: no one is named.
        assert_eq!(who(Some("red"), Some("bng-2")), None);
        assert_eq!(
            e.holder_at(
                "100.64.0.1".parse().unwrap(),
                1_700_000_000_000_000,
                Some("red"),
                Some("bng-2")
            ),
            identity::Holder::Ambiguous
        );
    }
}
