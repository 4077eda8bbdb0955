//! Destination ASN, AS organisation and country from MaxMind DB files (GeoLite2-ASN,
//! GeoLite2-Country / -City, or any database with the same fields: `autonomous_system_number`,
//! `autonomous_system_organization`, `country.iso_code`).

use std::net::IpAddr;

use maxminddb::{PathElement, Reader};

use super::{EnrichError, LoadStats, Loaded};

pub struct GeoDb {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.reader.metadata();
        f.debug_struct("GeoDb")
            .field("database_type", &m.database_type)
            .field("node_count", &m.node_count)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsnInfo {
    pub number: Option<u32>,
    pub organization: Option<String>,
}

/// Opens an MMDB file's bytes; the whole file is checked once here (search tree and data
/// section), so a truncated or corrupt download fails at load, not on the millionth lookup.
pub fn load(bytes: Vec<u8>) -> Result<Loaded<GeoDb>, EnrichError> {
    let reader = Reader::from_source(bytes)
        .map_err(|e| EnrichError::Format(format!("not a MaxMind DB file: {e}")))?;
    reader
        .verify()
        .map_err(|e| EnrichError::Format(format!("MaxMind DB file is damaged: {e}")))?;
    let nodes = reader.metadata().node_count as usize;
    Ok(Loaded {
        data: GeoDb { reader },
        stats: LoadStats {
            records: nodes,
            loaded: nodes,
            ..LoadStats::default()
        },
    })
}

impl GeoDb {
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    pub fn asn(&self, ip: IpAddr) -> Option<AsnInfo> {
        let r = self.lookup(ip)?;
        let a: maxminddb::geoip2::Asn = r.decode().ok().flatten()?;
        let info = AsnInfo {
            number: a.autonomous_system_number,
            organization: a.autonomous_system_organization.map(str::to_owned),
        };
        (info != AsnInfo::default()).then_some(info)
    }

    /// ISO 3166-1 alpha-2 of `country`, else of `registered_country` (anycast and satellite
    /// ranges often have only the latter).
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let r = self.lookup(ip)?;
        for top in ["country", "registered_country"] {
            let path = [PathElement::Key(top), PathElement::Key("iso_code")];
            if let Ok(Some(code)) = r.decode_path::<String>(&path) {
                return Some(code);
            }
        }
        None
    }

    fn lookup(&self, ip: IpAddr) -> Option<maxminddb::LookupResult<'_, Vec<u8>>> {
        // An IPv6 address in an IPv4-only database is an error, not an absence: both mean
        // "unknown" here.
        self.reader.lookup(ip).ok().filter(|r| r.has_data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::testing::mmdb;
    use serde_json::json;

    #[test]
    fn asn_and_country_from_databases_built_here() {
        let asn = mmdb(
            "GeoLite2-ASN",
            &[
                (
                    "198.51.100.0/24",
                    json!({"autonomous_system_number": 64500, "autonomous_system_organization": "Example Transit"}),
                ),
                (
                    "198.51.100.128/25",
                    json!({"autonomous_system_number": 64501, "autonomous_system_organization": "Example Hosting"}),
                ),
                (
                    "2001:db8:a::/48",
                    json!({"autonomous_system_number": 4_200_000_001u64, "autonomous_system_organization": "Example v6 Net"}),
                ),
            ],
        );
        let db = load(asn).unwrap().data;
        assert_eq!(db.database_type(), "GeoLite2-ASN");
        let a = db.asn("198.51.100.7".parse().unwrap()).unwrap();
        assert_eq!(
            (a.number, a.organization.as_deref()),
            (Some(64500), Some("Example Transit"))
        );
        let a = db.asn("198.51.100.200".parse().unwrap()).unwrap();
        assert_eq!(a.number, Some(64501), "the more specific network");
        let a = db.asn("2001:db8:a:1::5".parse().unwrap()).unwrap();
        assert_eq!(
            (a.number, a.organization.as_deref()),
            (Some(4_200_000_001), Some("Example v6 Net"))
        );
        assert_eq!(db.asn("203.0.113.1".parse().unwrap()), None);
        assert_eq!(db.country("198.51.100.7".parse().unwrap()), None);

        let city = mmdb(
            "GeoLite2-City",
            &[
                (
                    "203.0.113.0/24",
                    json!({"city": {"geoname_id": 2950159, "names": {"en": "Berlin"}},
                           "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
                           "country": {"geoname_id": 2921044, "iso_code": "DE", "names": {"de": "Deutschland", "en": "Germany"}},
                           "location": {"accuracy_radius": 20, "latitude": 52.5, "longitude": 13.4, "time_zone": "Europe/Berlin"}}),
                ),
                (
                    "2001:db8:b::/48",
                    json!({"registered_country": {"geoname_id": 6252001, "iso_code": "US", "names": {"en": "United States"}}}),
                ),
            ],
        );
        let db = load(city).unwrap().data;
        assert_eq!(
            db.country("203.0.113.9".parse().unwrap()).as_deref(),
            Some("DE")
        );
        assert_eq!(
            db.country("2001:db8:b::1".parse().unwrap()).as_deref(),
            Some("US")
        );
        assert_eq!(db.country("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn damaged_files_fail_at_load() {
        assert!(load(b"not an mmdb".to_vec()).is_err());
        let good = mmdb(
            "GeoLite2-ASN",
            &[(
                "198.51.100.0/24",
                json!({"autonomous_system_number": 64500}),
            )],
        );
        // Cut inside the search tree: the metadata marker is gone.
        assert!(load(good[..good.len() / 3].to_vec()).is_err());
    }
}
