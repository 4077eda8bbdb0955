//! Query parameters into typed questions, with reasons a caller can act on.

use std::collections::HashMap;
use std::net::IpAddr;

use natlake_core::model::{Micros, protocol_number};
use natlake_core::time::{now_micros, parse_time};
use natlake_query::attribution::{DEFAULT_LOOKBACK, DEFAULT_WINDOW, Question};
use natlake_query::sessions::{EventFilter, SessionsQuery};

pub type Params = HashMap<String, String>;

fn req<'a>(p: &'a Params, name: &str) -> Result<&'a str, String> {
    p.get(name)
        .map(|s| s.as_str())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("missing parameter {name}"))
}

fn ip(p: &Params, name: &str) -> Result<IpAddr, String> {
    let v = req(p, name)?;
    // As the parsers store addresses: ::ffff:a.b.c.d is the IPv4 address a.b.c.d.
    v.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| format!("{name}: {v:?} is not an IPv4 or IPv6 address"))
}

fn port(v: &str, name: &str) -> Result<u16, String> {
    v.trim()
        .parse::<u16>()
        .map_err(|_| format!("{name}: {v:?} is not a port (0-65535)"))
}

fn time(p: &Params, name: &str) -> Result<Option<Micros>, String> {
    match p.get(name).filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(v) => parse_time(v).map(Some).map_err(|e| format!("{name}: {e}")),
    }
}

fn seconds(p: &Params, name: &str, default: Micros, max_secs: f64) -> Result<Micros, String> {
    match p.get(name).filter(|s| !s.trim().is_empty()) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=max_secs).contains(&s) => Ok((s * 1e6) as Micros),
            _ => Err(format!(
                "{name}: {v:?} must be a number of seconds between 0 and {max_secs}"
            )),
        },
    }
}

fn proto(p: &Params) -> Result<Option<u8>, String> {
    match p.get("proto").filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(v) => protocol_number(v)
            .map(Some)
            .ok_or_else(|| format!("proto: {v:?} is not a protocol name or number")),
    }
}

/// `/v1/attribution?ip=&port=&at=&proto=&window=&lookback=`
pub fn question(p: &Params) -> Result<Question, String> {
    Ok(Question {
        ip: ip(p, "ip")?,
        port: port(req(p, "port")?, "port")?,
        at: time(p, "at")?.ok_or("missing parameter at")?,
        protocol: proto(p)?,
        window: seconds(p, "window", DEFAULT_WINDOW, 3600.0)?,
        lookback: seconds(p, "lookback", DEFAULT_LOOKBACK, 7.0 * 86400.0)?,
        dst_ip: p
            .get("dst_ip")
            .filter(|s| !s.trim().is_empty())
            .map(|_| ip(p, "dst_ip"))
            .transpose()?,
        dst_port: p
            .get("dst_port")
            .filter(|s| !s.trim().is_empty())
            .map(|v| port(v, "dst_port"))
            .transpose()?,
    })
}

/// `/v1/sessions?x_ip=&x_port=&timestamp_gt=&timestamp_lt=&limit=&offset=`; the range defaults
/// to the 24 hours before `timestamp_lt` (default now).
pub fn sessions(p: &Params) -> Result<SessionsQuery, String> {
    let before = time(p, "timestamp_lt")?.unwrap_or_else(now_micros);
    let after = time(p, "timestamp_gt")?.unwrap_or(before - 24 * 3_600_000_000);
    let num = |name: &str, default: usize| -> Result<usize, String> {
        match p.get(name).filter(|s| !s.trim().is_empty()) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("{name}: {v:?} is not a non-negative integer")),
        }
    };
    Ok(SessionsQuery {
        events: EventFilter::All,
        x_ip: ip(p, "x_ip")?,
        x_port: p
            .get("x_port")
            .filter(|s| !s.trim().is_empty())
            .map(|v| port(v, "x_port"))
            .transpose()?,
        after,
        before,
        limit: num("limit", 1000)?,
        offset: num("offset", 0)?,
    })
}

/// Questions one batch may hold: bigger batches are split by the caller (a 400 says so).
pub const MAX_BATCH: usize = 1000;

/// `POST /v1/attribution/batch` with `{"queries": [{"ip": …, "port": …, "at": …, "proto": …,
/// "window": …}, …]}`: each item checked on its own, so one bad line of an abuse report does not
/// sink the rest. The whole request fails only when it is not such a list or is too long.
pub fn batch(body: &[u8]) -> Result<Vec<Result<Question, String>>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let items = v
        .get("queries")
        .and_then(|q| q.as_array())
        .ok_or("body must be an object with a \"queries\" array")?;
    if items.is_empty() {
        return Err("queries is empty".into());
    }
    if items.len() > MAX_BATCH {
        return Err(format!(
            "{} queries in one batch; at most {MAX_BATCH}: split the list",
            items.len()
        ));
    }
    Ok(items
        .iter()
        .map(|item| {
            let obj = item.as_object().ok_or("each query must be an object")?;
            let mut p = Params::new();
            for (k, v) in obj {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Null => continue,
                    other => return Err(format!("{k}: {other} is not a string or number")),
                };
                p.insert(k.clone(), text);
            }
            question(&p)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn attribution_parameters_are_checked_with_reasons() {
        let q = question(&p(&[
            ("ip", "198.51.100.7"),
            ("port", "5000"),
            ("at", "1700000000"),
            ("proto", "tcp"),
        ]))
        .unwrap();
        assert_eq!(
            (q.port, q.at, q.protocol, q.window),
            (5000, 1_700_000_000_000_000, Some(6), DEFAULT_WINDOW)
        );
        // An IPv4-mapped IPv6 address asks about the IPv4 address (its partition).
        let mapped = question(&p(&[
            ("ip", "::ffff:198.51.100.7"),
            ("port", "5000"),
            ("at", "1700000000"),
        ]))
        .unwrap();
        assert_eq!(mapped.ip, q.ip);
        let e = |pairs: &[(&str, &str)]| question(&p(pairs)).unwrap_err();
        assert_eq!(
            e(&[("port", "1"), ("at", "1700000000")]),
            "missing parameter ip"
        );
        assert!(
            e(&[("ip", "300.1.1.1"), ("port", "1"), ("at", "1700000000")])
                .contains("not an IPv4 or IPv6")
        );
        assert!(
            e(&[("ip", "1.1.1.1"), ("port", "70000"), ("at", "1700000000")]).contains("not a port")
        );
        assert!(e(&[("ip", "1.1.1.1"), ("port", "1"), ("at", "soon")]).starts_with("at:"));
        assert!(
            e(&[
                ("ip", "1.1.1.1"),
                ("port", "1"),
                ("at", "1700000000"),
                ("window", "-1")
            ])
            .starts_with("window:")
        );
        assert!(
            e(&[
                ("ip", "1.1.1.1"),
                ("port", "1"),
                ("at", "1700000000"),
                ("proto", "carrier-pigeon")
            ])
            .starts_with("proto:")
        );
        let base = [("ip", "1.1.1.1"), ("port", "1"), ("at", "1700000000")];
        let with = |k: &'static str, v: &'static str| {
            let mut v2 = base.to_vec();
            v2.push((k, v));
            v2
        };
        assert!(e(&with("dst_ip", "example.com")).starts_with("dst_ip:"));
        assert!(e(&with("dst_port", "99999")).starts_with("dst_port:"));
        let q = question(&p(&with("dst_ip", "203.0.113.80"))).unwrap();
        assert_eq!(
            (q.dst_ip, q.dst_port),
            (Some("203.0.113.80".parse().unwrap()), None)
        );
    }

    #[test]
    fn batches_are_checked_item_by_item() {
        let body = br#"{"queries": [
            {"ip": "198.51.100.7", "port": 5000, "at": "1700000000", "proto": "udp"},
            {"ip": "198.51.100.7", "port": "x", "at": 1700000000},
            7
        ]}"#;
        let got = batch(body).unwrap();
        assert_eq!(got.len(), 3);
        let q = got[0].as_ref().unwrap();
        assert_eq!((q.port, q.protocol), (5000, Some(17)));
        assert!(
            got[1].as_ref().unwrap_err().contains("not a port"),
            "{got:?}"
        );
        assert_eq!(got[2].as_ref().unwrap_err(), "each query must be an object");
        assert!(batch(b"[]").unwrap_err().contains("queries"));
        assert!(batch(b"{\"queries\": []}").unwrap_err().contains("empty"));
        assert!(
            batch(b"not json")
                .unwrap_err()
                .starts_with("body is not JSON")
        );
        let many = format!(
            "{{\"queries\": [{}]}}",
            vec![r#"{"ip":"1.1.1.1","port":1,"at":1}"#; MAX_BATCH + 1].join(",")
        );
        assert!(batch(many.as_bytes()).unwrap_err().contains("at most 1000"));
    }
}
