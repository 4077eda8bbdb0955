//! `address:port` endpoints as CGN and router logs print them (`10.0.0.1:57938`,
//! `[2001:db8::1]:443`, `2001:db8::1:443`), shared by the MikroTik, nfware and 6WIND parsers.
//!
//! A bare IPv6 address with a port glued on is ambiguous (`2001:db8::1:443` is also an address),
//! so callers say whether the position carries a port: with a port the last colon splits; without
//! one the whole text is the address.

use std::net::IpAddr;

use super::util::{parse_ip, parse_u16};

/// `addr:port` (IPv4, bracketed IPv6, or bare IPv6 split at its last colon).
pub(crate) fn with_port(s: &str) -> Option<(IpAddr, u16)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']')?;
        let port = tail.strip_prefix(':')?;
        return Some((parse_ip(addr)?, parse_u16(port)?));
    }
    let (addr, port) = s.rsplit_once(':')?;
    Some((parse_ip(addr)?, parse_u16(port)?))
}

/// An address without a port; brackets are tolerated.
pub(crate) fn addr_only(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    parse_ip(s)
}

/// `addr:port` when the protocol has ports. Otherwise (ICMP, GRE, …) the address, with any
/// `:id` suffix dropped: an ICMP identifier is not a port, and conntrack leaves it out too.
pub(crate) fn maybe_port(s: &str, has_ports: bool) -> Option<(IpAddr, Option<u16>)> {
    if has_ports {
        with_port(s).map(|(a, p)| (a, Some(p)))
    } else {
        addr_only(s)
            .or_else(|| with_port(s).map(|(a, _)| a))
            .map(|a| (a, None))
    }
}

/// Protocols whose tuples carry ports: TCP, UDP, SCTP, UDP-Lite, DCCP.
pub(crate) fn has_ports(protocol: Option<u8>) -> bool {
    matches!(protocol, Some(6 | 17 | 33 | 132 | 136))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forms() {
        assert_eq!(with_port("10.0.0.1:57938"), Some((ip("10.0.0.1"), 57938)));
        assert_eq!(
            with_port("[2001:db8::1]:443"),
            Some((ip("2001:db8::1"), 443))
        );
        assert_eq!(with_port("2001:db8::1:443"), Some((ip("2001:db8::1"), 443)));
        // IPv4-mapped IPv6 folds to IPv4 like everywhere else in the lake.
        assert_eq!(
            with_port("[::ffff:192.0.2.1]:80"),
            Some((ip("192.0.2.1"), 80))
        );
        assert_eq!(addr_only("2001:db8::1:443"), Some(ip("2001:db8::1:443")));
        assert_eq!(addr_only("[2001:db8::2]"), Some(ip("2001:db8::2")));
        assert_eq!(
            maybe_port("192.0.2.1", false),
            Some((ip("192.0.2.1"), None))
        );
        assert_eq!(
            maybe_port("192.0.2.1:771", false),
            Some((ip("192.0.2.1"), None))
        );
        assert_eq!(maybe_port("192.0.2.1", true), None);
        for bad in [
            "10.0.0.1",
            "10.0.0.1:",
            "10.0.0.1:70000",
            "[::1]443",
            "x:1",
            "",
        ] {
            assert_eq!(with_port(bad), None, "{bad}");
        }
        assert!(has_ports(Some(6)) && has_ports(Some(17)) && !has_ports(Some(1)));
    }
}
