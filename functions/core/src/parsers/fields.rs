//! Token helpers shared by the vendor syslog parsers (Juniper, Cisco, A10, F5, Nokia, Huawei):
//! `address<sep>port` pairs, port ranges, quoted `key="value"` lists, durations and epoch stamps
//! as devices print them. Everything takes untrusted text and returns `Option`.

use std::net::IpAddr;

use super::util::{
    MICROS_PER_SEC, civil_micros, dotted_quad, find_any, parse_ip, parse_u16, parse_u64,
    split_once_byte, trim_ws,
};
use crate::model::{Micros, NatEvent};
use crate::time::Clock;

/// `addr<sep>port` → address and port. With `:` as separator an IPv6 address is split at its
/// last colon (devices print `2001:db8::1:5000`); `[v6]:port` is accepted too. A bare address
/// (no separator, or a valid address as a whole) has no port.
pub(crate) fn addr_port(s: &str, sep: char) -> Option<(IpAddr, Option<u16>)> {
    let s = trim_ws(s);
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']')?;
        let ip = parse_ip(a)?;
        return match p.strip_prefix(sep) {
            Some(port) => Some((ip, Some(parse_u16(trim_ws(port))?))),
            None if p.is_empty() => Some((ip, None)),
            None => None,
        };
    }
    if sep != ':'
        && let Some((a, p)) = rsplit_once(s, sep)
    {
        return Some((parse_ip(a)?, Some(parse_u16(trim_ws(p))?)));
    }
    // `a.b.c.d:port` (JSERVICES, conntrack JSON): a dotted quad before the last colon is never
    // part of an IPv6 address (its IPv4 part comes last), so the whole is not tried first; that
    // try failed only after a second scan of the text.
    if sep == ':'
        && let Some((a, p)) = rsplit_once(s, ':')
        && let Some(v4) = dotted_quad(a.as_bytes())
    {
        return Some((IpAddr::V4(v4), Some(parse_u16(trim_ws(p))?)));
    }
    if let Some(ip) = parse_ip(s) {
        // "2001:db8::1" is an address, not "2001:db8:" port 1; an IPv4 never contains ':'.
        if sep != ':' || ip.is_ipv4() || !looks_like_v6_with_port(s) {
            return Some((ip, None));
        }
    }
    let (a, p) = rsplit_once(s, sep)?;
    Some((parse_ip(a)?, Some(parse_u16(trim_ws(p))?)))
}

/// `s.rsplit_once(sep)` by a byte search when `sep` is ASCII (every separator devices use):
/// the char searcher cost ~170 instructions per Cisco or JSERVICES endpoint.
fn rsplit_once(s: &str, sep: char) -> Option<(&str, &str)> {
    if !sep.is_ascii() {
        return s.rsplit_once(sep);
    }
    // An ASCII byte is never inside a multi-byte character, so both sides are whole text.
    let at = s.bytes().rposition(|b| char::from(b) == sep)?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// `2001:db8::1:80` parses as an address too; a v6 address with a port has a `::` and a
/// trailing group that is pure decimal after a group boundary. Devices that print v6 with a
/// colon port give us nothing better: a whole address wins unless the remainder, without the
/// last group, is itself a valid address ending in a group that contains a `::` run.
fn looks_like_v6_with_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((a, p)) => {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.len() <= 5
                && a.contains("::")
                && !a.ends_with(':')
                && parse_ip(a).is_some_and(|ip| ip.is_ipv6())
        }
        None => false,
    }
}

/// `lo-hi` (spaces allowed around the dash) → (lo, hi) with lo ≤ hi.
pub(crate) fn port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (lo, hi) = (parse_u16(a.trim())?, parse_u16(b.trim())?);
    (lo <= hi).then_some((lo, hi))
}

/// Parameters of one structured-data element or a similar `key="value" key="value"` list.
/// Values keep their backslash escapes except `\"`, which ends nothing. Unquoted values run
/// to the next space. Stops at an unbalanced `]` (the element's end).
pub(crate) fn quoted_params(s: &str) -> Vec<(&str, &str)> {
    // One allocation: a parameter takes at least ~16 bytes of text (Junos RT_FLOW: ~35 in 900).
    let mut out = Vec::with_capacity(s.len() / 16 + 1);
    out.extend(QuotedParams::new(s));
    out
}

/// The pairs of [`quoted_params`] one at a time, for callers that keep only a few of them
/// (Junos RT_FLOW sessions read 15 of ~35 parameters without building the list).
pub(crate) struct QuotedParams<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> QuotedParams<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        QuotedParams { s, i: 0 }
    }
}

impl<'a> Iterator for QuotedParams<'a> {
    type Item = (&'a str, &'a str);

    // Inlined into the loops that walk it: a call per parameter (~30 per RT_FLOW line) paid
    // for saving six registers and building the masks' constants again each time. `always`:
    // the release build kept it out of line with a plain hint (thin LTO at the time).
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let b = s.as_bytes();
        let mut i = self.i;
        loop {
            while b.get(i).is_some_and(|c| *c == b' ') {
                i += 1;
            }
            if b.get(i).is_none_or(|c| *c == b']') {
                self.i = b.len();
                return None;
            }
            let key_start = i;
            i = b
                .get(i..)
                .and_then(|r| find_any(r, [b'=', b' ', b']']))
                .map_or(b.len(), |p| i + p);
            if b.get(i) != Some(&b'=') {
                // A bare word (e.g. the SD-ID "junos@2636.1.1.1.2.39"): skip it.
                continue;
            }
            let Some(key) = s.get(key_start..i) else {
                self.i = b.len();
                return None;
            };
            i += 1;
            if b.get(i) == Some(&b'"') {
                let start = i + 1;
                let mut j = start;
                // To the closing quote, stepping over escapes: memchr finds the next candidate.
                loop {
                    match b.get(j..).and_then(|r| find_any(r, [b'"', b'\\'])) {
                        Some(rel) if b.get(j + rel) == Some(&b'"') => {
                            j += rel;
                            break;
                        }
                        Some(rel) => j += rel + 2,
                        None => {
                            j = b.len();
                            break;
                        }
                    }
                }
                self.i = j + 1;
                // An unterminated quote (a line cut short) keeps what there is.
                match s.get(start..j) {
                    Some(v) => return Some((key, v)),
                    None => {
                        i = j + 1;
                        continue;
                    }
                }
            } else {
                let start = i;
                i = b
                    .get(i..)
                    .and_then(|r| find_any(r, [b' ', b']']))
                    .map_or(b.len(), |p| i + p);
                self.i = i;
                match s.get(start..i) {
                    Some(v) => return Some((key, v)),
                    None => continue,
                }
            }
        }
    }
}

/// The value of `key` in a parameter list; None for absent, empty, `N/A`, `None` and `-`.
pub(crate) fn param<'a>(params: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
        .filter(|v| !is_null(v))
}

/// Placeholders devices print for "no value".
pub(crate) fn is_null(v: &str) -> bool {
    v.is_empty()
        || v == "-"
        || v.eq_ignore_ascii_case("N/A")
        || v.eq_ignore_ascii_case("None")
        || v.eq_ignore_ascii_case("null")
        || v == "(null)"
}

/// `h:mm:ss` (hours unbounded; ASA prints `0:02:32`, also `1d2h` in old PIX — refused) → seconds.
pub(crate) fn duration_hms(s: &str) -> Option<i64> {
    let s = s.trim_end_matches(['.', ',']);
    // Byte splits: `split(':')` set up a char searcher (~450 instructions an ASA teardown).
    // A third ':' leaves one in the seconds, which then do not parse.
    let (h, rest) = split_once_byte(s, b':')?;
    let (m, sec) = split_once_byte(rest, b':')?;
    let (h, m, sec) = (parse_u64(h)?, parse_u64(m)?, parse_u64(sec)?);
    if m > 59 || sec > 60 {
        return None;
    }
    i64::try_from(h.checked_mul(3600)?.checked_add(m * 60 + sec)?).ok()
}

/// Epoch seconds written in hex, with or without `0x` (Junos `epoch 0x6a44007a`,
/// `epoch-time-64="624b0492"`). Zero means "not set".
pub(crate) fn hex_epoch(s: &str) -> Option<Micros> {
    let h = s
        .trim()
        .strip_prefix("0x")
        .or_else(|| s.trim().strip_prefix("0X"))
        .unwrap_or(s.trim());
    if h.is_empty() || h.len() > 16 {
        return None;
    }
    let v = i64::try_from(u64::from_str_radix(h, 16).ok()?).ok()?;
    (v > 0).then(|| v.checked_mul(MICROS_PER_SEC)).flatten()
}

/// Decimal epoch seconds (Huawei `BeginTime=1538736476`); zero means "not set".
pub(crate) fn dec_epoch(s: &str) -> Option<Micros> {
    let v = i64::try_from(parse_u64(s.trim())?).ok()?;
    (v > 0).then(|| v.checked_mul(MICROS_PER_SEC)).flatten()
}

/// `YYYY/M/D H:MM:SS` (Huawei `time=2018/10/5 09:52:19`, Nokia `at 2015/03/24 16:04:57`) at
/// the device's clock; also `YYYY-MM-DD`. Returns the time and the bytes consumed.
pub(crate) fn slash_datetime(s: &str, device: Clock) -> Option<(Micros, usize)> {
    let (date, rest) = s.split_once(' ')?;
    let mut d = date.split(['/', '-']);
    let y = i32::try_from(parse_u64(d.next()?)?).ok()?;
    let mo = u32::try_from(parse_u64(d.next()?)?).ok()?;
    let day = u32::try_from(parse_u64(d.next()?)?).ok()?;
    if d.next().is_some() || date.len() < 8 {
        return None;
    }
    let time = rest.split([' ', ',', '.']).next()?;
    let mut t = time.split(':');
    let h = u32::try_from(parse_u64(t.next()?)?).ok()?;
    let mi = u32::try_from(parse_u64(t.next()?)?).ok()?;
    let sec = u32::try_from(parse_u64(t.next()?)?).ok()?;
    if t.next().is_some() {
        return None;
    }
    let local = civil_micros(y, mo, day, h, mi, sec, 0)?;
    let utc = device.to_utc(local)?;
    Some((utc, date.len() + 1 + time.len()))
}

/// ICMP echo ids and types sit where ports would; the model keeps ports for port protocols
/// only (as the conntrack parser does). GRE has no ports at all.
pub(crate) fn port_for(protocol: Option<u8>, port: Option<u16>) -> Option<u16> {
    if has_ports(protocol) { port } else { None }
}

fn has_ports(protocol: Option<u8>) -> bool {
    !matches!(protocol, Some(1 | 47 | 58))
}

/// Both directions' counters together; one direction alone when the other is not logged.
pub(crate) fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    }
}

/// A source translation is stated when the translated address or port differs from the
/// original one. Devices log untranslated sessions with the NAT fields copied (or 0.0.0.0).
pub(crate) fn translated(
    src: Option<IpAddr>,
    sport: Option<u16>,
    x: Option<IpAddr>,
    xport: Option<u16>,
) -> bool {
    match x {
        Some(x) if !x.is_unspecified() => {
            Some(x) != src || (xport.is_some_and(|p| p != 0) && xport != sport)
        }
        _ => false,
    }
}

/// Clears ICMP "ports" of a NAT event built from port-shaped fields.
pub(crate) fn clean_ports(e: &mut NatEvent) {
    if !has_ports(e.protocol) {
        e.src_port = None;
        e.x_port = None;
        e.x_port_end = None;
        e.dst_port = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rsplit_once_agrees_with_str() {
        let texts = [
            "",
            "/",
            "a/b",
            "a/b/c",
            "10.0.0.1/5000",
            "inside:1.2.3.4/80",
            "é/ü:ß",
            "a\u{2f}b",
            "2001:db8::1:5000",
            "x:",
            ":x",
            "日本/語:",
        ];
        for t in texts {
            for sep in ['/', ':', ' ', 'é', '語'] {
                assert_eq!(rsplit_once(t, sep), t.rsplit_once(sep), "{t:?} {sep:?}");
            }
        }
    }

    #[test]
    fn address_and_port_forms() {
        assert_eq!(
            addr_port("10.0.0.1/5000", '/'),
            Some((ip("10.0.0.1"), Some(5000)))
        );
        assert_eq!(
            addr_port("10.0.0.1:5000", ':'),
            Some((ip("10.0.0.1"), Some(5000)))
        );
        assert_eq!(addr_port("10.0.0.1", ':'), Some((ip("10.0.0.1"), None)));
        assert_eq!(
            addr_port("[2001:db8::1]:443", ':'),
            Some((ip("2001:db8::1"), Some(443)))
        );
        assert_eq!(
            addr_port("2001:db8::1:5000", ':'),
            Some((ip("2001:db8::1"), Some(5000)))
        );
        assert_eq!(
            addr_port("2001:db8::1/5000", '/'),
            Some((ip("2001:db8::1"), Some(5000)))
        );
        assert_eq!(
            addr_port("2001:db8::1", ':'),
            Some((ip("2001:db8::1"), None))
        );
        assert_eq!(addr_port("10.0.0.1:70000", ':'), None);
        assert_eq!(addr_port("a.b.c.d/1", '/'), None);
        assert_eq!(addr_port("", ':'), None);
    }

    #[test]
    fn colon_ports_after_a_dotted_quad_read_as_before() {
        // `addr_port` before the dotted-quad shortcut: the whole text as an address first.
        fn whole_first(s: &str) -> Option<(IpAddr, Option<u16>)> {
            let s = trim_ws(s);
            if let Some(ip) = parse_ip(s)
                && (ip.is_ipv4() || !looks_like_v6_with_port(s))
            {
                return Some((ip, None));
            }
            let (a, p) = rsplit_once(s, ':')?;
            Some((parse_ip(a)?, Some(parse_u16(trim_ws(p))?)))
        }
        let addrs = [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "::ffff",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "1.2.3.4:5",
            "",
            " 1.2.3.4",
            "1.2.3.4 ",
        ];
        let ports = [
            "5000", "0", "65535", "65536", "", " 80", "x", "1.2.3.4", ":80", "::1",
        ];
        for a in addrs {
            for p in ports {
                let t = format!("{a}:{p}");
                assert_eq!(addr_port(&t, ':'), whole_first(&t), "{t:?}");
            }
            assert_eq!(addr_port(a, ':'), whole_first(a), "{a:?}");
        }
    }

    #[test]
    fn params_ranges_durations_epochs() {
        let p = quoted_params(r#"junos@2636.1 a="x y" b="" c=3 d="q\"z"] tail="no""#);
        assert_eq!(
            p,
            vec![("a", "x y"), ("b", ""), ("c", "3"), ("d", r#"q\"z"#)]
        );
        assert_eq!(param(&p, "a"), Some("x y"));
        assert_eq!(param(&p, "b"), None);
        assert_eq!(port_range("1024-1151"), Some((1024, 1151)));
        assert_eq!(port_range("1 - 512"), Some((1, 512)));
        assert_eq!(port_range("2000-1000"), None);
        assert_eq!(duration_hms("0:02:32"), Some(152));
        assert_eq!(duration_hms("26:00:11."), Some(93611));
        assert_eq!(duration_hms("0:61:00"), None);
        // As the split on ':' read them before.
        let by_split = |s: &str| {
            let s = s.trim_end_matches(['.', ',']);
            let mut parts = s.split(':');
            let h = parse_u64(parts.next()?)?;
            let m = parse_u64(parts.next()?)?;
            let sec = parse_u64(parts.next()?)?;
            if parts.next().is_some() || m > 59 || sec > 60 {
                return None;
            }
            i64::try_from(h.checked_mul(3600)?.checked_add(m * 60 + sec)?).ok()
        };
        for s in [
            "1:2:3",
            "1:2:3:4",
            "1:2",
            "1",
            "",
            ":",
            "::",
            ":1:2",
            "1::2",
            "1:2:",
            "1:2:3.",
            "1:2:3,.",
            "01:02:03",
            "1:59:60",
            "1:60:0",
            "1:2:61",
            "x:2:3",
            "1:2:3 ",
            "é:1:2",
            "99999999999999999999:0:0",
            "5124095576030431:0:0",
            "2562047788015215:30:7",
        ] {
            assert_eq!(duration_hms(s), by_split(s), "{s:?}");
        }
        assert_eq!(hex_epoch("0x6a44007a"), Some(0x6a44007a * MICROS_PER_SEC));
        assert_eq!(hex_epoch("624b0492"), Some(0x624b0492 * MICROS_PER_SEC));
        assert_eq!(hex_epoch("0"), None);
        assert_eq!(hex_epoch("zz"), None);
        assert_eq!(dec_epoch("1538736476"), Some(1_538_736_476_000_000));
        let t = civil_micros(2018, 10, 5, 9, 52, 19, 0).unwrap();
        assert_eq!(
            slash_datetime("2018/10/5 09:52:19, x", Clock::UTC.with_offset(0)),
            Some((t, 18))
        );
        assert_eq!(
            slash_datetime("2018/10/05 11:52:19", Clock::UTC.with_offset(7200)),
            Some((t, 19))
        );
        assert_eq!(
            slash_datetime("2018/13/05 11:52:19", Clock::UTC.with_offset(0)),
            None
        );
        assert_eq!(
            slash_datetime("10/05 11:52:19", Clock::UTC.with_offset(0)),
            None
        );
        // Huawei and Nokia stamps in a named zone: read at their own date's offset (CET), not
        // at the receive time's (CEST, just after the spring change).
        let berlin = crate::time::Zone::parse("Europe/Berlin").unwrap();
        let after_change = civil_micros(2026, 3, 29, 1, 0, 1, 0).unwrap();
        assert_eq!(
            slash_datetime("2026/03/29 01:59:59", Clock::new(berlin, after_change)),
            Some((civil_micros(2026, 3, 29, 0, 59, 59, 0).unwrap(), 19))
        );
        assert!(translated(
            Some(ip("10.0.0.1")),
            Some(1),
            Some(ip("203.0.113.1")),
            Some(1)
        ));
        assert!(translated(
            Some(ip("10.0.0.1")),
            Some(1),
            Some(ip("10.0.0.1")),
            Some(2)
        ));
        assert!(!translated(
            Some(ip("10.0.0.1")),
            Some(1),
            Some(ip("10.0.0.1")),
            Some(1)
        ));
        assert!(!translated(
            Some(ip("10.0.0.1")),
            Some(1),
            Some(ip("0.0.0.0")),
            Some(0)
        ));
    }
}
