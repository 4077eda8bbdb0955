//! Nokia (Alcatel-Lucent) 7750 SR NAT port-block events, event 2012 `tmnxNatPlBlockAllocationLsn`
//! (and 2013, L2-aware), as the SR OS logger sends them to syslog (envelope already peeled):
//!
//! ```text
//! TMNX: 58 Base NAT-MINOR-tmnxNatPlBlockAllocationLsn-2012 [NAT]:  {2} Map 203.0.113.1 [2001-2005] MDA 1/2 -- 276824064 classic-lsn-sub %1 vprn1 100.64.0.101 at 2015/03/24 16:04:57
//! ```
//!
//! - `Map` → PortBlockAlloc, `Free` → PortBlockRelease; the outside address and its port range
//!   follow; after `--` come the NAT policy id, the subscriber type (`classic-lsn-sub`,
//!   `dslite-lsn-sub`, `nat64-lsn-sub`), `%<subscriber id>`, the inside router instance (kept as
//!   `vrf`, "Base" meaning the default instance → None) and the inside address (IPv6 for
//!   DS-Lite / NAT64).
//! - `at YYYY/MM/DD HH:MM:SS` is the device's local time, read in the device's zone.
//!
//! The shape is Nokia's documented message format for these events: the corpus holds no
//! captured 7750 syslog line (only an IPFIX export), so the tests build lines from it.
//! L2-aware subscribers are named by a string, not an inside address: those lines are rejected.
//! So is event 2021 `tmnxNatLsnSubBlksFree`, which stands for the Free of a subscriber's last
//! block unless the NAT group sets `no-lsn-sub-blks-free`: its text is undocumented in public.

use super::fields::{port_range, slash_datetime};
use super::util::{contains_lit, parse_ip};
use super::{ParseCtx, ParseError};
use crate::model::{Event, Micros, NatEvent, NatEventKind};

const FORMAT: &str = "nokia";

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Cheap check used by format detection.
pub fn looks_like(body: &str) -> bool {
    contains_lit(body, "tmnxNatPlBlockAllocation")
        || contains_lit(body, "tmnxNatLsnSubBlksFree")
        || (contains_lit(body, "-lsn-sub %")
            && (contains_lit(body, " Map ") || contains_lit(body, " Free ")))
}

/// Parses one event line into one NAT event; returns the number pushed (1).
pub fn parse(
    body: &str,
    default_time: Micros,
    ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    if body.contains("tmnxNatLsnSubBlksFree") {
        // Event 2021 replaces the Free of a subscriber's last block when the NAT group has
        // `no-lsn-sub-blks-free` unset (TIMETRA-NAT-MIB). No sample of its text is public, so it
        // is kept in rejects, with this reason, rather than guessed at: until it is read, that
        // last block has no end in the lake.
        return Err(err(
            "tmnxNatLsnSubBlksFree (all of a subscriber's blocks freed) is not read yet",
        ));
    }
    if body.contains("tmnxNat") && !body.contains("tmnxNatPlBlockAllocation") {
        return Err(err("NAT event other than a port-block allocation"));
    }
    let toks: Vec<&str> = body.split_whitespace().collect();
    let (at, kind) = toks
        .iter()
        .enumerate()
        .find_map(|(i, t)| match *t {
            "Map" => Some((i, NatEventKind::PortBlockAlloc)),
            "Free" => Some((i, NatEventKind::PortBlockRelease)),
            _ => None,
        })
        .ok_or_else(|| err("no Map / Free verb"))?;
    let outside = toks.get(at + 1).ok_or_else(|| err("no outside address"))?;
    let x_ip = parse_ip(outside).ok_or_else(|| err(format!("bad outside address {outside:?}")))?;
    let range = toks.get(at + 2).ok_or_else(|| err("no port range"))?;
    let (lo, hi) = range
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(port_range)
        .ok_or_else(|| err(format!("bad port range {range:?}")))?;
    let sub = toks
        .iter()
        .skip(at)
        .position(|t| t.ends_with("-sub"))
        .map(|k| at + k)
        .ok_or_else(|| err("no subscriber type"))?;
    let sub_type = toks.get(sub).copied().unwrap_or("");
    if !toks.get(sub + 1).is_some_and(|t| t.starts_with('%')) {
        return Err(err("no %subscriber-id after the subscriber type"));
    }
    let vrtr = toks.get(sub + 2).ok_or_else(|| err("no inside router"))?;
    let inside = toks.get(sub + 3).ok_or_else(|| err("no inside address"))?;
    let src_ip = parse_ip(inside)
        .ok_or_else(|| err(format!("{sub_type}: inside {inside:?} is not an address")))?;
    let time = match toks.iter().skip(sub).position(|t| *t == "at") {
        Some(k) => {
            let from = toks.get(sub + k + 1..).unwrap_or(&[]).join(" ");
            slash_datetime(&from, ctx.clock())
                .map(|(t, _)| t)
                .ok_or_else(|| err(format!("bad time {from:?}")))?
        }
        None => default_time,
    };
    out.push(Event::Nat(NatEvent {
        time,
        event: Some(kind),
        src_ip: Some(src_ip),
        x_ip: Some(x_ip),
        x_port: Some(lo),
        x_port_end: Some(hi),
        vrf: (!vrtr.eq_ignore_ascii_case("Base")).then(|| (*vrtr).to_owned()),
        direction: Some("out"),
        ..NatEvent::default()
    }));
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::test_support::{self, assert_rejects, one_auto};
    use super::super::util::{civil_micros, test_corpus};
    use super::*;
    use std::net::IpAddr;

    /// The documented message shape, filled at test time (nokia.txt has no syslog sample).
    fn line(verb: &str, outside: &str, range: &str, sub: &str, vrtr: &str, inside: &str) -> String {
        format!(
            "<188>Mar 24 16:04:58 sr1 TMNX: 58 Base NAT-MINOR-tmnxNatPlBlockAllocationLsn-2012 [NAT]:  {{2}} {verb} {outside} [{range}] MDA 1/2 -- 276824064 {sub} %1 {vrtr} {inside} at 2015/03/24 16:04:57"
        )
    }

    fn ctx(tz: i32) -> ParseCtx {
        ParseCtx {
            recv_time: civil_micros(2015, 3, 24, 16, 10, 0, 0).unwrap(),
            zone: crate::time::Zone::Fixed(tz),
        }
    }

    fn nat(l: &str, c: &ParseCtx) -> NatEvent {
        test_support::nat(one_auto(l, c, "nokia"))
    }

    #[test]
    fn map_and_free_v4_and_dslite() {
        // The corpus has no 7750 syslog line: the file only points at an IPFIX capture.
        assert!(test_corpus::samples("nokia.txt").is_empty());
        let c = ctx(3600);
        let e = nat(
            &line(
                "Map",
                "203.0.113.1",
                "2001-2005",
                "classic-lsn-sub",
                "vprn1",
                "100.64.0.101",
            ),
            &c,
        );
        assert_eq!(e.event, Some(NatEventKind::PortBlockAlloc));
        assert_eq!(e.src_ip, Some("100.64.0.101".parse::<IpAddr>().unwrap()));
        assert_eq!(
            (e.x_ip, e.x_port, e.x_port_end),
            (Some("203.0.113.1".parse().unwrap()), Some(2001), Some(2005))
        );
        assert_eq!(e.vrf.as_deref(), Some("vprn1"));
        // 16:04:57 at UTC+1 is 15:04:57 UTC.
        assert_eq!(e.time, civil_micros(2015, 3, 24, 15, 4, 57, 0).unwrap());
        let e = nat(
            &line(
                "Free",
                "203.0.113.1",
                "1024-1279",
                "dslite-lsn-sub",
                "Base",
                "2001:db8::1",
            ),
            &ctx(0),
        );
        assert_eq!(
            (e.event, e.src_ip, e.vrf),
            (
                Some(NatEventKind::PortBlockRelease),
                Some("2001:db8::1".parse().unwrap()),
                None
            )
        );
    }

    #[test]
    fn rejects() {
        let c = ctx(0);
        assert_rejects(
            Format::Nokia,
            &c,
            [
                (
                    line(
                        "Map",
                        "203.0.113.1",
                        "2005-2001",
                        "classic-lsn-sub",
                        "vprn1",
                        "100.64.0.1",
                    ),
                    "bad port range",
                ),
                (
                    line(
                        "Map",
                        "203.0.113.1",
                        "1-2",
                        "l2-aware-sub",
                        "vprn1",
                        "subscriber-7",
                    ),
                    "is not an address",
                ),
                (
                    line(
                        "Map",
                        "203.0.113.x",
                        "1-2",
                        "classic-lsn-sub",
                        "vprn1",
                        "100.64.0.1",
                    ),
                    "bad outside address",
                ),
                (
                    "TMNX: 59 Base NAT-MINOR-tmnxNatPlAddrFree-2005 [NAT]: addresses freed"
                        .to_string(),
                    "other than a port-block",
                ),
                (
                    "TMNX: 60 Base NAT-MINOR-tmnxNatLsnSubBlksFree-2021 [NAT]: {2} Free 203.0.113.1"
                        .to_string(),
                    "not read yet",
                ),
            ],
        );
    }
}
