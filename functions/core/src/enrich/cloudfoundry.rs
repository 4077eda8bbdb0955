//! Cloud Foundry container traffic: the records silk-release's `iptables-logger` forwards
//! (`cfnetworking.iptables.ingress-allowed` …), rebuilt from the kernel LOG lines the lake
//! already holds plus container metadata by address.
//!
//! As the forwarder does it: a firewall row whose log prefix starts `OK_` (allowed) or `DENY_`
//! (denied) is Cloud Foundry's; it is ingress when the packet leaves on a container interface
//! (`OUT=s-…`), else egress; the app is the destination's container for ingress and the
//! source's for egress. One check more than the forwarder: when the prefix names a container
//! handle (`OK_<handle>`, `DENY_<handle>`, `DENY_C2C_<handle>`, cut to the kernel's 29
//! characters) and the metadata's container at that address has another handle, the address
//! has been reused since the line was logged and no app is named.
//!
//! Container metadata, either shape (JSON):
//! - silk's container datastore as the cell keeps it (`/var/vcap/data/container-metadata/
//!   store.json`): `{"<handle>": {"handle", "ip", "ipv6", "metadata": {"app_id", "space_id",
//!   "org_id", …}}}`;
//! - a list built from the Cloud Controller / Diego APIs: `[{"container_ip", "container_id",
//!   "app_guid", "app_name", "space_guid", "organization_guid"}]` (`container_ip` may also be
//!   a list of addresses; `space` / `organization` are accepted for the GUIDs).

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::{EnrichError, LoadStats, Loaded, json_text};
use crate::model::{CfTraffic, Event, FirewallEvent, Row};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    pub container_id: Option<String>,
    pub app_guid: Option<String>,
    pub app_name: Option<String>,
    pub space_guid: Option<String>,
    pub organization_guid: Option<String>,
}

#[derive(Debug, Default)]
pub struct Containers {
    by_ip: HashMap<IpAddr, Container>,
}

impl Containers {
    pub fn get(&self, ip: IpAddr) -> Option<&Container> {
        self.by_ip.get(&ip)
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

pub fn load(bytes: &[u8]) -> Result<Loaded<Containers>, EnrichError> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| EnrichError::Format(format!("container metadata JSON: {e}")))?;
    let mut stats = LoadStats::default();
    let mut by_ip: HashMap<IpAddr, Container> = HashMap::new();
    let mut add = |ips: Vec<&str>, c: Container, stats: &mut LoadStats, what: &str| {
        stats.records += 1;
        if ips.is_empty() {
            stats.bad(format!("{what}: no address"));
            return;
        }
        for text in ips {
            match text.parse::<IpAddr>() {
                Ok(ip) => {
                    by_ip.insert(ip, c.clone());
                }
                Err(_) => {
                    stats.bad(format!("{what}: bad address {text:?}"));
                    return;
                }
            }
        }
        stats.loaded += 1;
    };
    match &doc {
        // silk's datastore: keyed by handle.
        Value::Object(m) => {
            for (handle, v) in m {
                let meta = v.get("metadata").unwrap_or(&Value::Null);
                let s = |k: &str| json_text(meta.get(k));
                let c = Container {
                    container_id: json_text(v.get("handle")).or_else(|| Some(handle.clone())),
                    app_guid: s("app_id"),
                    app_name: s("app_name"),
                    space_guid: s("space_id"),
                    organization_guid: s("org_id"),
                };
                let ips: Vec<&str> = ["ip", "ipv6"]
                    .iter()
                    .filter_map(|k| v.get(*k).and_then(Value::as_str))
                    .filter(|s| !s.is_empty())
                    .collect();
                add(ips, c, &mut stats, &format!("container {handle}"));
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                let s = |keys: &[&str]| keys.iter().find_map(|k| json_text(v.get(*k)));
                let c = Container {
                    container_id: s(&["container_id", "handle"]),
                    app_guid: s(&["app_guid", "app_id"]),
                    app_name: s(&["app_name"]),
                    space_guid: s(&["space_guid", "space"]),
                    organization_guid: s(&["organization_guid", "organization"]),
                };
                let ips: Vec<&str> = match v.get("container_ip") {
                    Some(Value::String(s)) => vec![s.as_str()],
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                add(ips, c, &mut stats, &format!("entry {i}"));
            }
        }
        _ => {
            return Err(EnrichError::Format(
                "container metadata: expected silk's datastore object or a list".into(),
            ));
        }
    }
    Ok(Loaded {
        data: Containers { by_ip },
        stats,
    })
}

/// Whether a Cloud Foundry log prefix allows, and what it names after its marker.
fn prefix_parts(rule: &str) -> Option<(bool, &str)> {
    let after = |p: &str| {
        rule.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
            .then(|| &rule[p.len()..])
    };
    after("DENY_C2C_")
        .or_else(|| after("DENY_"))
        .map(|rest| (false, rest))
        .or_else(|| after("OK_").map(|rest| (true, rest)))
}

/// The forwarder's record for a firewall event, or None when it is not Cloud Foundry's.
pub fn traffic(fw: &FirewallEvent, containers: Option<&Containers>) -> Option<CfTraffic> {
    let rule = fw.rule.as_deref()?.trim();
    let (allowed, named) = prefix_parts(rule)?;
    let ingress = fw.out_if.as_deref().is_some_and(|o| o.contains("s-"));
    let event = match (ingress, allowed) {
        (true, true) => "ingress-allowed",
        (true, false) => "ingress-denied",
        (false, true) => "egress-allowed",
        (false, false) => "egress-denied",
    };
    let mut out = CfTraffic {
        event,
        ..CfTraffic::default()
    };
    let ip = if ingress { fw.dst_ip } else { fw.src_ip };
    let Some(c) = ip.and_then(|ip| containers?.get(ip)) else {
        return Some(out);
    };
    // OK_<tag>_<app guid> names an app, the other forms a container handle (both cut short).
    let (is_app, named) = match named.split_once('_') {
        Some((tag, rest))
            if tag.len() == 4 && tag.bytes().all(|b| b.is_ascii_hexdigit()) && allowed =>
        {
            (true, rest)
        }
        _ => (false, named),
    };
    let have = if is_app { &c.app_guid } else { &c.container_id };
    if let Some(h) = have
        && !named.is_empty()
        && !h.starts_with(named)
    {
        metrics::counter!("natlake_enrich_cf_stale_total").increment(1);
        return Some(out);
    }
    out.container_id = c.container_id.clone();
    out.app_guid = c.app_guid.clone();
    out.app_name = c.app_name.clone();
    out.space_guid = c.space_guid.clone();
    out.organization_guid = c.organization_guid.clone();
    Some(out)
}

/// Protocol as the kernel prints `PROTO=` (what the forwarder copies).
fn proto_name(p: Option<u8>) -> String {
    match p {
        Some(6) => "TCP".into(),
        Some(17) => "UDP".into(),
        Some(1) => "ICMP".into(),
        Some(58) => "ICMPv6".into(),
        Some(132) => "SCTP".into(),
        Some(136) => "UDPLITE".into(),
        Some(n) => n.to_string(),
        None => String::new(),
    }
}

/// A firewall row as the forwarder's JSON object (lager's shape: `timestamp` as seconds with
/// nine decimals, `source`, `message`, `log_level`, `data` with `packet` and the app's side).
/// Fields the lake does not keep (`mark`, `icmp_type`, `icmp_code`, `host_ip`, `host_guid`) and
/// unknown apps are the forwarder's own zero values ("" / 0), as it writes them itself.
/// None for rows that are not Cloud Foundry traffic.
pub fn forwarder_json(row: &Row) -> Option<Value> {
    let Event::Firewall(fw) = &row.event else {
        return None;
    };
    let cf = row.envelope.enrichment.cf.as_ref()?;
    let (direction, _) = cf.event.split_once('-')?;
    let ip = |v: Option<IpAddr>| v.map(|a| a.to_string()).unwrap_or_default();
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let packet = json!({
        "direction": direction,
        "allowed": cf.event.ends_with("allowed"),
        "src_ip": ip(fw.src_ip),
        "dst_ip": ip(fw.dst_ip),
        "src_port": fw.src_port.unwrap_or(0),
        "dst_port": fw.dst_port.unwrap_or(0),
        "protocol": proto_name(fw.protocol),
        "mark": "",
        "icmp_type": 0,
        "icmp_code": 0,
    });
    let app = json!({
        "container_id": s(&cf.container_id),
        "app_guid": s(&cf.app_guid),
        "space_guid": s(&cf.space_guid),
        "organization_guid": s(&cf.organization_guid),
        "host_ip": "",
        "host_guid": "",
    });
    let mut data = Map::new();
    data.insert(
        if direction == "ingress" {
            "destination"
        } else {
            "source"
        }
        .into(),
        app,
    );
    data.insert("packet".into(), packet);
    let t = fw.time;
    Some(json!({
        "timestamp": format!("{}.{:06}000", t.div_euclid(1_000_000), t.rem_euclid(1_000_000)),
        "source": "cfnetworking.iptables",
        "message": format!("cfnetworking.iptables.{}", cf.event),
        "log_level": 1,
        "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Envelope, Provenance};

    /// silk's container datastore as a cell keeps it (handles and GUIDs of the shape silk's
    /// docs show, documentation-range addresses).
    const STORE: &str = r#"{
      "bfce786c-ab07-40ad-79f9-8f21": {"handle": "bfce786c-ab07-40ad-79f9-8f21", "ip": "10.255.73.3", "ipv6": "",
        "metadata": {"app_id": "bc6f229d-5e4a-4c41-a63f-e8795496c283", "space_id": "b9f86312-a7d7-4bcf-b70f-a440436c210b",
                     "org_id": "604bd59e-4139-4734-a3be-4e97836eb790", "policy_group_id": "bc6f229d-5e4a-4c41-a63f-e8795496c283",
                     "ports": "8080"}},
      "d5978989-1401-49ff-46cd-33e5": {"handle": "d5978989-1401-49ff-46cd-33e5", "ip": "10.255.73.2",
        "metadata": {"app_id": "bc6f229d-5e4a-4c41-a63f-e8795496c283", "space_id": "b9f86312-a7d7-4bcf-b70f-a440436c210b",
                     "org_id": "604bd59e-4139-4734-a3be-4e97836eb790"}},
      "broken": {"handle": "broken", "ip": "10.255.999.1", "metadata": {}}
    }"#;

    const HEAD: &str = "IN=s-010255073003 MAC=aa:aa:0a:ff:49:03:ee:ee:0a:ff:49:03:08:00";

    fn row(prefix: &str, out_if: &str, dst: &str, dpt: u16, store: &Containers) -> Row {
        let (in_if, mac) = HEAD.split_once(' ').unwrap();
        let line = format!(
            "[1468637.581122] {prefix} {in_if} OUT={out_if} {mac} SRC=10.255.73.3 DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=15946 DF PROTO=TCP SPT=51858 DPT={dpt} WINDOW=27400 RES=0x00 SYN URGP=0 MARK=0x1"
        );
        let mut out = Vec::new();
        // 1500923950.331232 s: the forwarder's sample time.
        crate::parsers::iptables::parse(&line, 1_500_923_950_331_232, &mut out).unwrap();
        let Some(Event::Firewall(fw)) = out.pop() else {
            panic!("{line}")
        };
        let mut env = Envelope::default();
        env.enrichment.cf = traffic(&fw, Some(store));
        Row {
            event: Event::Firewall(fw),
            envelope: env,
            provenance: Provenance {
                raw_key: "k".into(),
                raw_record: 0,
            },
        }
    }

    #[test]
    fn forwarder_records_from_kernel_lines() {
        let l = load(STORE.as_bytes()).unwrap();
        assert_eq!((l.stats.records, l.stats.loaded, l.stats.bad), (3, 2, 1));
        let store = l.data;

        // ASG egress allowed: the source container's app, under "source".
        let r = row(
            "OK_bfce786c-ab07-40ad-79f9-8",
            "eth0",
            "198.51.100.8",
            80,
            &store,
        );
        let want = json!({
          "timestamp": "1500923950.331232000",
          "source": "cfnetworking.iptables",
          "message": "cfnetworking.iptables.egress-allowed",
          "log_level": 1,
          "data": {
            "packet": {"direction": "egress", "allowed": true, "src_ip": "10.255.73.3", "dst_ip": "198.51.100.8",
                       "src_port": 51858, "dst_port": 80, "protocol": "TCP", "mark": "", "icmp_type": 0, "icmp_code": 0},
            "source": {"container_id": "bfce786c-ab07-40ad-79f9-8f21", "app_guid": "bc6f229d-5e4a-4c41-a63f-e8795496c283",
                       "space_guid": "b9f86312-a7d7-4bcf-b70f-a440436c210b", "organization_guid": "604bd59e-4139-4734-a3be-4e97836eb790",
                       "host_ip": "", "host_guid": ""}
          }
        });
        assert_eq!(forwarder_json(&r).unwrap(), want);

        // ASG egress denied.
        let r = row(
            "DENY_bfce786c-ab07-40ad-79f9",
            "eth0",
            "192.0.2.10",
            80,
            &store,
        );
        let j = forwarder_json(&r).unwrap();
        assert_eq!(j["message"], "cfnetworking.iptables.egress-denied");
        assert_eq!(j["data"]["packet"]["allowed"], false);
        assert_eq!(
            j["data"]["source"]["container_id"],
            "bfce786c-ab07-40ad-79f9-8f21"
        );

        // C2C ingress allowed and denied: the destination container's app, under "destination".
        let r = row(
            "OK_0001_bc6f229d-5e4a-4c41-a",
            "s-010255073002",
            "10.255.73.2",
            8080,
            &store,
        );
        let j = forwarder_json(&r).unwrap();
        assert_eq!(j["message"], "cfnetworking.iptables.ingress-allowed");
        assert_eq!(j["data"]["packet"]["direction"], "ingress");
        assert_eq!(
            j["data"]["destination"]["container_id"],
            "d5978989-1401-49ff-46cd-33e5"
        );
        assert!(j["data"].get("source").is_none());
        let r = row(
            "DENY_C2C_d5978989-1401-49ff-",
            "s-010255073002",
            "10.255.73.2",
            8081,
            &store,
        );
        let cf = r.envelope.enrichment.cf.as_ref().unwrap();
        assert_eq!(cf.event, "ingress-denied");
        assert_eq!(
            cf.app_guid.as_deref(),
            Some("bc6f229d-5e4a-4c41-a63f-e8795496c283")
        );

        // The prefix names another container than the one now at the address: reused, no app.
        let r = row(
            "DENY_C2C_0000dead-1401-49ff-",
            "s-010255073002",
            "10.255.73.2",
            8081,
            &store,
        );
        let cf = r.envelope.enrichment.cf.as_ref().unwrap();
        assert_eq!(
            (cf.event, cf.container_id.as_ref()),
            ("ingress-denied", None)
        );
        // Unknown container: the forwarder's empty fields.
        let r = row(
            "OK_ffff786c-ab07-40ad-79f9-8",
            "eth0",
            "198.51.100.8",
            80,
            &Containers::default(),
        );
        assert_eq!(
            forwarder_json(&r).unwrap()["data"]["source"]["app_guid"],
            ""
        );
        // Not Cloud Foundry's.
        let r = row("[UFW BLOCK]", "eth0", "198.51.100.8", 80, &store);
        assert!(r.envelope.enrichment.cf.is_none() && forwarder_json(&r).is_none());
    }

    #[test]
    fn list_shape_with_names_and_ipv6() {
        let list = r#"[{"container_ip": ["10.255.1.5", "fd00:255::5"], "container_id": "c-1", "app_guid": "a-1",
                        "app_name": "billing", "space": "s-1", "organization": "o-1"},
                       {"container_id": "c-2"}]"#;
        let l = load(list.as_bytes()).unwrap();
        assert_eq!((l.stats.loaded, l.stats.bad), (1, 1));
        let c = l.data.get("fd00:255::5".parse().unwrap()).unwrap();
        assert_eq!(
            (
                c.app_name.as_deref(),
                c.space_guid.as_deref(),
                c.organization_guid.as_deref()
            ),
            (Some("billing"), Some("s-1"), Some("o-1"))
        );
        assert!(load(b"3").is_err());
    }
}
