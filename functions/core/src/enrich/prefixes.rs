//! Subscriber, site and role by longest-prefix match on the inside address.
//!
//! Sources:
//! - NetBox: what `GET /api/ipam/prefixes/` returns — one page (`{"count", "next", "results":
//!   […]}`), a bare list of prefix objects, or several pages concatenated as JSON lines. Per
//!   prefix: `site.name` (NetBox < 4.2) or `scope.name` when `scope_type` is `dcim.site`
//!   (4.2+), `role.name`, and the subscriber from the custom field the configuration names
//!   (default `subscriber`), else `tenant.name`; none for a prefix marked `is_pool` (its tenant
//!   runs the pool). Deprecated prefixes are skipped.
//! - CSV with a header: `prefix` (required), `subscriber` (or `tenant`), `site`, `role`, `vrf`.
//!
//! VRFs: NetBox's `vrf` (matched by its `name` or its `rd`) or the CSV's `vrf` column put a
//! prefix in that VRF's table; without one it is in the global table. A row that names its VRF
//! (routing instance, conntrack zone, IPFIX VRF id) is matched in that VRF's table, then in the
//! global one. A row without a VRF is matched in the global table; failing that, in the VRF
//! tables only when exactly one of them holds the address (overlapping private space in two
//! VRFs names no one). The same prefix listed twice in one table with different data keeps only
//! the fields the entries agree on.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use prefix_trie::joint::map::JointPrefixMap;
use serde::Deserialize;
use serde_json::Value;

use super::{EnrichError, LoadStats, Loaded, csv_reader, field, header_index, json_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixFormat {
    Netbox,
    Csv,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrefixInfo {
    pub subscriber: Option<String>,
    pub site: Option<String>,
    pub role: Option<String>,
}

impl PrefixInfo {
    /// Field by field: what both say, else nothing.
    fn agree(&mut self, other: &PrefixInfo) {
        for (a, b) in [
            (&mut self.subscriber, &other.subscriber),
            (&mut self.site, &other.site),
            (&mut self.role, &other.role),
        ] {
            if a != b {
                *a = None;
            }
        }
    }
}

type Table = JointPrefixMap<IpNet, PrefixInfo>;

#[derive(Debug, Default)]
pub struct PrefixTable {
    global: Table,
    /// VRF tables by every name a VRF is known by (NetBox name and RD point to one table).
    vrfs: Vec<Table>,
    vrf_names: HashMap<String, usize>,
}

impl PrefixTable {
    /// The longest prefix holding `ip` in the global table, with what is known of it.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNet, &PrefixInfo)> {
        self.lookup_in(ip, None)
    }

    /// The longest prefix holding `ip` for a row in `vrf` (see the module's rules).
    pub fn lookup_in(&self, ip: IpAddr, vrf: Option<&str>) -> Option<(IpNet, &PrefixInfo)> {
        let net = IpNet::from(ip);
        if let Some(t) = vrf.and_then(|v| self.vrf_names.get(v.trim()))
            && let Some(hit) = self.vrfs[*t].get_lpm(&net)
        {
            return Some(hit);
        }
        if let Some(hit) = self.global.get_lpm(&net) {
            return Some(hit);
        }
        if vrf.is_some() {
            return None;
        }
        let mut hits = self.vrfs.iter().filter_map(|t| t.get_lpm(&net));
        match (hits.next(), hits.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// Prefixes loaded, over every table.
    pub fn len(&self) -> usize {
        self.global.len() + self.vrfs.iter().map(Table::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&mut self, vrf: &[String]) -> &mut Table {
        if vrf.is_empty() {
            return &mut self.global;
        }
        let i = match vrf.iter().find_map(|n| self.vrf_names.get(n)) {
            Some(i) => *i,
            None => {
                self.vrfs.push(Table::new());
                self.vrfs.len() - 1
            }
        };
        for n in vrf {
            self.vrf_names.entry(n.clone()).or_insert(i);
        }
        &mut self.vrfs[i]
    }
}

/// Options of the prefix source.
#[derive(Debug, Clone)]
pub struct PrefixOptions {
    /// NetBox custom field holding the subscriber id (before the tenant).
    pub subscriber_field: String,
}

impl Default for PrefixOptions {
    fn default() -> Self {
        Self {
            subscriber_field: "subscriber".into(),
        }
    }
}

pub fn load(
    bytes: &[u8],
    format: PrefixFormat,
    opts: &PrefixOptions,
) -> Result<Loaded<PrefixTable>, EnrichError> {
    let mut stats = LoadStats::default();
    let mut entries: Vec<Entry> = Vec::new();
    match format {
        PrefixFormat::Netbox => netbox(bytes, opts, &mut stats, &mut entries)?,
        PrefixFormat::Csv => csv(bytes, &mut stats, &mut entries)?,
    }
    let mut table = PrefixTable::default();
    for Entry { net, info, vrf } in entries {
        // trunc(): "10.0.0.1/24" as typed by a person means its network.
        let net = net.trunc();
        let map = table.table(&vrf);
        match map.get_mut(&net) {
            Some(have) => have.agree(&info),
            None => {
                map.insert(net, info);
            }
        }
        stats.loaded += 1;
    }
    Ok(Loaded { data: table, stats })
}

/// One prefix as a source lists it; `vrf` holds the names its VRF goes by (none: global).
struct Entry {
    net: IpNet,
    info: PrefixInfo,
    vrf: Vec<String>,
}

fn netbox(
    bytes: &[u8],
    opts: &PrefixOptions,
    stats: &mut LoadStats,
    out: &mut Vec<Entry>,
) -> Result<(), EnrichError> {
    let mut objects: Vec<Value> = Vec::new();
    for doc in serde_json::Deserializer::from_slice(bytes).into_iter::<Value>() {
        let doc = doc.map_err(|e| EnrichError::Format(format!("NetBox export: {e}")))?;
        match doc {
            Value::Object(mut page) if page.contains_key("results") => match page.remove("results")
            {
                Some(Value::Array(r)) => objects.extend(r),
                _ => {
                    return Err(EnrichError::Format(
                        "NetBox page: results is not a list".into(),
                    ));
                }
            },
            Value::Array(list) => objects.extend(list),
            Value::Object(_) => objects.push(doc),
            _ => {
                return Err(EnrichError::Format(
                    "NetBox export: expected a page, a list or prefix objects".into(),
                ));
            }
        }
    }
    for (i, p) in objects.iter().enumerate() {
        stats.records += 1;
        let Some(text) = p.get("prefix").and_then(Value::as_str) else {
            stats.bad(format!("result {i}: no prefix"));
            continue;
        };
        let Ok(net) = text.trim().parse::<IpNet>() else {
            stats.bad(format!("result {i}: bad prefix {text:?}"));
            continue;
        };
        if status(p).is_some_and(|s| s.eq_ignore_ascii_case("deprecated")) {
            stats.skipped += 1;
            continue;
        }
        let name = |v: Option<&Value>| json_text(v.and_then(|o| o.get("name")));
        let site = name(p.get("site")).or_else(|| {
            (p.get("scope_type").and_then(Value::as_str) == Some("dcim.site"))
                .then(|| name(p.get("scope")))
                .flatten()
        });
        // A pool (`is_pool`: CGNAT inside ranges, DHCP pools) is shared by many subscribers:
        // its tenant is the operator or a reseller, never the person behind an address in it.
        let pool = p.get("is_pool").and_then(Value::as_bool) == Some(true);
        let subscriber = json_text(
            p.get("custom_fields")
                .and_then(|c| c.get(&opts.subscriber_field)),
        )
        .or_else(|| name(p.get("tenant")))
        .filter(|_| !pool);
        let vrf = p.get("vrf");
        out.push(Entry {
            net,
            info: PrefixInfo {
                subscriber,
                site,
                role: name(p.get("role")),
            },
            vrf: [name(vrf), json_text(vrf.and_then(|v| v.get("rd")))]
                .into_iter()
                .flatten()
                .collect(),
        });
    }
    Ok(())
}

/// `status.value` ({"value": "active", "label": "Active"}) or a plain string.
fn status(p: &Value) -> Option<&str> {
    let s = p.get("status")?;
    s.get("value")
        .and_then(Value::as_str)
        .or_else(|| s.as_str())
}

fn csv(bytes: &[u8], stats: &mut LoadStats, out: &mut Vec<Entry>) -> Result<(), EnrichError> {
    let mut rdr = csv_reader(bytes);
    let headers = rdr
        .headers()
        .map_err(|e| EnrichError::Format(format!("prefix CSV header: {e}")))?
        .clone();
    let [prefix, subscriber, site, role, vrf] = header_index(
        &headers,
        [
            &["prefix", "cidr", "network"],
            &["subscriber", "tenant"],
            &["site"],
            &["role"],
            &["vrf", "routing_instance"],
        ],
    );
    let Some(prefix) = prefix else {
        return Err(EnrichError::Format(
            "prefix CSV: no `prefix` column in the header".into(),
        ));
    };
    for (i, rec) in rdr.records().enumerate() {
        stats.records += 1;
        let line = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                stats.bad(format!("line {line}: {e}"));
                continue;
            }
        };
        let text = rec.get(prefix).unwrap_or("");
        let Ok(net) = text.parse::<IpNet>() else {
            stats.bad(format!("line {line}: bad prefix {text:?}"));
            continue;
        };
        let s = |i| field(&rec, i).map(str::to_owned);
        out.push(Entry {
            net,
            info: PrefixInfo {
                subscriber: s(subscriber),
                site: s(site),
                role: s(role),
            },
            vrf: s(vrf).into_iter().collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One page of `GET /api/ipam/prefixes/` as NetBox 4.x returns it (fields trimmed to the
    /// ones that matter plus a few that must be ignored), with documentation addresses.
    const NETBOX_PAGE: &str = r#"{
      "count": 5, "next": null, "previous": null,
      "results": [
        {"id": 11, "url": "https://netbox.example/api/ipam/prefixes/11/", "display": "100.64.0.0/10",
         "family": {"value": 4, "label": "IPv4"}, "prefix": "100.64.0.0/10",
         "site": {"id": 1, "url": "https://netbox.example/api/dcim/sites/1/", "display": "FRA1", "name": "FRA1", "slug": "fra1"},
         "vrf": null, "tenant": null, "vlan": null,
         "status": {"value": "container", "label": "Container"},
         "role": {"id": 3, "url": "https://netbox.example/api/ipam/roles/3/", "display": "CGNAT pool", "name": "CGNAT pool", "slug": "cgnat-pool"},
         "is_pool": true, "mark_utilized": false, "description": "", "comments": "", "tags": [],
         "custom_fields": {"subscriber": null}, "created": "2026-01-10T09:00:00Z", "last_updated": "2026-01-10T09:00:00Z",
         "children": 2, "_depth": 0},
        {"id": 12, "prefix": "100.64.1.0/24", "family": {"value": 4, "label": "IPv4"},
         "scope_type": "dcim.site", "scope_id": 2,
         "scope": {"id": 2, "url": "https://netbox.example/api/dcim/sites/2/", "display": "BER2", "name": "BER2", "slug": "ber2"},
         "tenant": {"id": 7, "url": "https://netbox.example/api/tenancy/tenants/7/", "display": "Acme GmbH", "name": "Acme GmbH", "slug": "acme"},
         "status": {"value": "active", "label": "Active"},
         "role": {"id": 1, "name": "Business", "slug": "business"},
         "custom_fields": {"subscriber": "CUST-0042"}, "_depth": 1},
        {"id": 13, "prefix": "100.64.1.16/28", "status": {"value": "active", "label": "Active"},
         "tenant": {"id": 8, "name": "Beta KG", "slug": "beta"}, "role": null, "custom_fields": {}, "_depth": 2},
        {"id": 14, "prefix": "2001:db8:100::/48", "family": {"value": 6, "label": "IPv6"},
         "site": {"id": 1, "name": "FRA1", "slug": "fra1"}, "status": {"value": "active", "label": "Active"},
         "role": {"id": 2, "name": "Residential", "slug": "residential"},
         "custom_fields": {"subscriber": 90017}},
        {"id": 15, "prefix": "100.64.2.0/24", "status": {"value": "deprecated", "label": "Deprecated"},
         "tenant": {"id": 9, "name": "Gone Ltd", "slug": "gone"}},
        {"id": 16, "prefix": "not-a-prefix"},
        {"id": 17, "display": "no prefix field"}
      ]
    }"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn netbox_page_longest_prefix_wins() {
        let l = load(
            NETBOX_PAGE.as_bytes(),
            PrefixFormat::Netbox,
            &PrefixOptions::default(),
        )
        .unwrap();
        assert_eq!(
            (
                l.stats.records,
                l.stats.loaded,
                l.stats.skipped,
                l.stats.bad
            ),
            (7, 4, 1, 2)
        );
        assert!(l.stats.reasons[0].contains("not-a-prefix"), "{:?}", l.stats);
        let t = l.data;
        // The /28 inside the /24 inside the /10: the most specific answers.
        let (net, i) = t.lookup(ip("100.64.1.20")).unwrap();
        assert_eq!(net.to_string(), "100.64.1.16/28");
        assert_eq!(i.subscriber.as_deref(), Some("Beta KG"), "tenant name");
        assert_eq!((i.site.as_deref(), i.role.as_deref()), (None, None));
        // The /24: custom field before tenant, NetBox 4.2 scope as the site.
        let (net, i) = t.lookup(ip("100.64.1.1")).unwrap();
        assert_eq!(net.to_string(), "100.64.1.0/24");
        assert_eq!(
            (
                i.subscriber.as_deref(),
                i.site.as_deref(),
                i.role.as_deref()
            ),
            (Some("CUST-0042"), Some("BER2"), Some("Business"))
        );
        // The deprecated /24 is gone: its addresses fall back to the pool container.
        let (net, i) = t.lookup(ip("100.64.2.9")).unwrap();
        assert_eq!(net.to_string(), "100.64.0.0/10");
        assert_eq!(
            (
                i.subscriber.as_deref(),
                i.site.as_deref(),
                i.role.as_deref()
            ),
            (None, Some("FRA1"), Some("CGNAT pool"))
        );
        // IPv6, a numeric custom field.
        let (net, i) = t.lookup(ip("2001:db8:100:7::1")).unwrap();
        assert_eq!(net.to_string(), "2001:db8:100::/48");
        assert_eq!(i.subscriber.as_deref(), Some("90017"));
        assert!(t.lookup(ip("198.51.100.1")).is_none());
        assert!(t.lookup(ip("2001:db8:200::1")).is_none());
    }

    #[test]
    fn netbox_list_and_custom_field_name() {
        let list = r#"[{"prefix": "192.0.2.0/24", "tenant": {"name": "T"}, "custom_fields": {"sub_id": "S-1"}}]"#;
        let opts = PrefixOptions {
            subscriber_field: "sub_id".into(),
        };
        let t = load(list.as_bytes(), PrefixFormat::Netbox, &opts)
            .unwrap()
            .data;
        assert_eq!(
            t.lookup(ip("192.0.2.5")).unwrap().1.subscriber.as_deref(),
            Some("S-1")
        );
        assert!(load(b"{\"results\": 3}", PrefixFormat::Netbox, &opts).is_err());
        assert!(load(b"<html>", PrefixFormat::Netbox, &opts).is_err());
    }

    #[test]
    fn csv_with_duplicates_keeps_what_agrees() {
        let csv = "Prefix,Subscriber,Site,Role\n\
                   100.64.8.0/22,,MUC1,residential\n\
                   100.64.9.0/24,sub-9,MUC1,residential\n\
                   # the same /24 in a second VRF, another subscriber\n\
                   100.64.9.0/24,sub-99,MUC1,residential\n\
                   100.64.10.7/24,sub-10,MUC1,business\n\
                   2001:db8:9::/56,sub-v6,MUC1,residential\n\
                   100.64.300.0/24,x,y,z\n";
        let l = load(csv.as_bytes(), PrefixFormat::Csv, &PrefixOptions::default()).unwrap();
        assert_eq!((l.stats.records, l.stats.loaded, l.stats.bad), (6, 5, 1));
        let t = l.data;
        let (_, i) = t.lookup(ip("100.64.9.1")).unwrap();
        assert_eq!(i.subscriber, None, "two VRFs disagree: no subscriber");
        assert_eq!(i.site.as_deref(), Some("MUC1"));
        // A host address with a mask means its network.
        let (net, i) = t.lookup(ip("100.64.10.200")).unwrap();
        assert_eq!(
            (net.to_string(), i.subscriber.as_deref()),
            ("100.64.10.0/24".to_string(), Some("sub-10"))
        );
        assert_eq!(
            t.lookup(ip("2001:db8:9:ff::1"))
                .unwrap()
                .1
                .subscriber
                .as_deref(),
            Some("sub-v6")
        );
        assert!(load(b"net,site\n", PrefixFormat::Csv, &PrefixOptions::default()).is_err());
    }

    #[test]
    fn vrfs_keep_overlapping_space_apart() {
        // The same 10.0.0.0/24 in two customers' VRFs (NetBox: by name or RD), a global pool.
        let page = r#"[
          {"prefix": "10.0.0.0/24", "vrf": {"id": 1, "name": "cust-a", "rd": "65000:1"}, "custom_fields": {"subscriber": "A"}},
          {"prefix": "10.0.0.0/24", "vrf": {"id": 2, "name": "cust-b", "rd": "65000:2"}, "custom_fields": {"subscriber": "B"}},
          {"prefix": "10.0.5.0/24", "vrf": {"id": 2, "name": "cust-b", "rd": "65000:2"}, "custom_fields": {"subscriber": "B5"}},
          {"prefix": "100.64.0.0/10", "vrf": null, "role": {"name": "CGNAT pool"}}
        ]"#;
        let t = load(
            page.as_bytes(),
            PrefixFormat::Netbox,
            &PrefixOptions::default(),
        )
        .unwrap()
        .data;
        assert_eq!(t.len(), 4);
        let sub = |ip_s: &str, vrf: Option<&str>| {
            t.lookup_in(ip(ip_s), vrf)
                .and_then(|(_, i)| i.subscriber.clone())
        };
        assert_eq!(sub("10.0.0.9", Some("cust-a")).as_deref(), Some("A"));
        assert_eq!(sub("10.0.0.9", Some("cust-b")).as_deref(), Some("B"));
        assert_eq!(
            sub("10.0.0.9", Some("65000:2")).as_deref(),
            Some("B"),
            "by RD"
        );
        // No VRF on the row: two VRFs hold the address, so nobody is named; one VRF does: it.
        assert_eq!(t.lookup_in(ip("10.0.0.9"), None), None);
        assert_eq!(sub("10.0.5.1", None).as_deref(), Some("B5"));
        // A VRF the IPAM does not know, or a miss in the row's VRF: the global table.
        let (net, i) = t.lookup_in(ip("100.64.3.3"), Some("cust-a")).unwrap();
        assert_eq!(
            (net.to_string(), i.role.as_deref()),
            ("100.64.0.0/10".into(), Some("CGNAT pool"))
        );
        assert!(t.lookup_in(ip("100.64.3.3"), Some("nonesuch")).is_some());
        // The row's VRF misses and the global table misses: not another VRF's answer.
        assert_eq!(t.lookup_in(ip("10.0.5.1"), Some("cust-a")), None);

        let csv = "prefix,subscriber,vrf\n10.0.0.0/24,A,cust-a\n10.0.0.0/24,B,cust-b\n";
        let t = load(csv.as_bytes(), PrefixFormat::Csv, &PrefixOptions::default())
            .unwrap()
            .data;
        assert_eq!(
            t.lookup_in(ip("10.0.0.1"), Some("cust-b"))
                .unwrap()
                .1
                .subscriber
                .as_deref(),
            Some("B")
        );
        assert_eq!(t.lookup_in(ip("10.0.0.1"), None), None);
    }
}
