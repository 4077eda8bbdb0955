//! Small helpers shared by the parsers: number, address and time scanning without allocation.
//!
//! Everything here takes untrusted text and returns `Option`: nothing may panic on input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;

use crate::model::Micros;
use crate::time::Clock;

pub(crate) const MICROS_PER_SEC: i64 = 1_000_000;

/// Up to `max` chars of `s`, cut on a char boundary: error messages quote what they saw.
pub(crate) fn snippet(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// Byte offset of `inner` inside `outer` when `inner` is a sub-slice of it. Parsers built on
/// borrowed slices (nom, serde) hand back pieces of their input; this recovers where they sit.
pub(crate) fn offset_in(outer: &str, inner: &str) -> Option<usize> {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    let off = i.checked_sub(o)?;
    (off + inner.len() <= outer.len()).then_some(off)
}

/// The bytes of `char::is_whitespace` below 0x80 (vertical tab included, unlike
/// `u8::is_ascii_whitespace`).
fn is_ascii_ws(c: &u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `str::trim_start` with the ASCII run done byte by byte (the char iterator cost more than
/// the header split around it); non-ASCII whitespace still goes to `trim_start`.
///
/// Inlined with a test of the first byte: most calls meet text that starts with a visible
/// ASCII byte, which no whitespace (ASCII or not) is, and return it as it is.
#[inline]
pub(crate) fn trim_start_ws(s: &str) -> &str {
    if s.as_bytes().first().is_some_and(u8::is_ascii_graphic) {
        return s;
    }
    trim_start_ws_slow(s)
}

fn trim_start_ws_slow(s: &str) -> &str {
    let n = s.bytes().take_while(is_ascii_ws).count();
    let rest = s.get(n..).unwrap_or("");
    if rest.as_bytes().first().is_some_and(|c| !c.is_ascii()) {
        rest.trim_start()
    } else {
        rest
    }
}

/// `str::trim` the same way: ASCII runs by bytes, anything else by `trim`.
///
/// Inlined with a test of both ends: a field value or line with nothing to trim (nearly all
/// of them, ~800,000 calls per 125,000 rows) costs two byte tests instead of a call of ~40
/// instructions.
#[inline]
pub(crate) fn trim_ws(s: &str) -> &str {
    let b = s.as_bytes();
    if b.first().is_some_and(u8::is_ascii_graphic) && b.last().is_some_and(u8::is_ascii_graphic) {
        return s;
    }
    trim_ws_slow(s)
}

fn trim_ws_slow(s: &str) -> &str {
    let s = trim_start_ws(s);
    let n = s.bytes().rev().take_while(is_ascii_ws).count();
    let head = s.get(..s.len() - n).unwrap_or("");
    if head.as_bytes().last().is_some_and(|c| !c.is_ascii()) {
        head.trim_end()
    } else {
        head
    }
}

/// `text.split_whitespace().collect()` without the char iterator: for ASCII text the Unicode
/// whitespace set is exactly these six bytes (vertical tab included, unlike
/// `u8::is_ascii_whitespace`), and the vector is sized once (a token and its separator take at
/// least two bytes). Other text goes through `split_whitespace` itself.
pub(crate) fn whitespace_tokens(text: &str) -> Vec<&str> {
    if !text.is_ascii() {
        return text.split_whitespace().collect();
    }
    let b = text.as_bytes();
    // Grows with the tokens found, not the input's length (a record may be megabytes).
    let mut out = Vec::with_capacity((b.len() / 2 + 1).min(64));
    let mut i = 0;
    loop {
        while b.get(i).is_some_and(is_ascii_ws) {
            i += 1;
        }
        if i >= b.len() {
            return out;
        }
        // Token ends eight bytes at a time: a byte loop cost ~65 instructions per Cisco token.
        let end = sep_at_or_after(b, i, |c| is_ascii_ws(&c));
        if let Some(tok) = text.get(i..end) {
            out.push(tok);
        }
        i = end;
    }
}

/// `s.split_once(sep)` for an ASCII `sep` by a byte search: `str::split_once(char)` sets up a
/// char searcher per call (~150 instructions), more than the short tokens it splits. An ASCII
/// byte is never inside a multi-byte character, so both sides are whole text.
#[inline]
pub(crate) fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let at = find_any(s.as_bytes(), [sep])?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// `hay.find(needle)` for the format checks that every unmatched line goes through: a
/// `memchr` for one rare byte of the needle (its first uppercase letter, `%`, `|` or `_`, else
/// its first byte) and a compare at each hit. `str::find` sets up a Two-Way searcher per call,
/// which cost more than scanning a ~150-byte line. Candidates come in increasing order, so the
/// first match found is the leftmost, as `str::find` gives.
pub(crate) fn find_lit(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some(k) = n
        .iter()
        .position(|c| c.is_ascii_uppercase() || matches!(c, b'%' | b'|' | b'_'))
        .or_else(|| (!n.is_empty()).then_some(0))
    else {
        return Some(0);
    };
    let probe = *n.get(k)?;
    for at in memchr::memchr_iter(probe, h) {
        let Some(start) = at.checked_sub(k) else {
            continue;
        };
        if h.get(start..start + n.len()) == Some(n) {
            return Some(start);
        }
    }
    None
}

/// `hay.contains(needle)` by [`find_lit`].
pub(crate) fn contains_lit(hay: &str, needle: &str) -> bool {
    find_lit(hay, needle).is_some()
}

/// `str::split_ascii_whitespace` for hot tokenizers: the same tokens (split on space, tab, LF,
/// FF and CR; empty ones skipped), with the scan for a token's end done eight bytes at a time.
/// The std iterator tests one byte per step through a closure; conntrack lines are ~250 bytes
/// of ~20 tokens.
#[derive(Debug, Clone)]
pub(crate) struct AsciiWords<'a> {
    s: &'a str,
    pos: usize,
}

pub(crate) fn ascii_words(s: &str) -> AsciiWords<'_> {
    AsciiWords { s, pos: 0 }
}

impl<'a> AsciiWords<'a> {
    /// What the iterator has not yet read (from the separator after the last token).
    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }
}

/// The bytes `u8::is_ascii_whitespace` accepts (vertical tab excluded).
#[inline]
pub(crate) fn is_split_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

/// Position of the first `is_split_ws` (`u8::is_ascii_whitespace`) byte of `b` at or after
/// `from` (`b.len()` when none).
#[inline]
pub(crate) fn word_end(b: &[u8], from: usize) -> usize {
    sep_at_or_after(b, from, is_split_ws)
}

/// Position of the first byte of `b` at or after `from` that `is_sep` accepts (`b.len()` when
/// none), for separator sets of bytes below 0x21 (ASCII whitespace, with or without the
/// vertical tab).
#[inline(always)]
fn sep_at_or_after(b: &[u8], from: usize, is_sep: impl Fn(u8) -> bool) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(bytes);
        // Bytes below 0x21 flagged; the lowest flag is exact (borrows only run upwards). Every
        // separator is below 0x21; other control bytes are checked and passed over.
        let hits = w.wrapping_sub(LO * 0x21) & !w & HI;
        if hits != 0 {
            let at = i + (hits.trailing_zeros() / 8) as usize;
            if b.get(at).is_some_and(|c| is_sep(*c)) {
                return at;
            }
            // A non-separator control byte (rare): bytewise from the byte after it.
            return sep_bytes(b, at + 1, is_sep);
        }
        i += 8;
    }
    sep_bytes(b, i, is_sep)
}

fn sep_bytes(b: &[u8], from: usize, is_sep: impl Fn(u8) -> bool) -> usize {
    b.get(from..)
        .and_then(|r| r.iter().position(|c| is_sep(*c)))
        .map_or(b.len(), |p| from + p)
}

impl<'a> Iterator for AsciiWords<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let mut i = self.pos;
        while b.get(i).is_some_and(|c| is_split_ws(*c)) {
            i += 1;
        }
        if i >= b.len() {
            self.pos = b.len();
            return None;
        }
        let end = word_end(b, i);
        self.pos = end;
        // Separators are ASCII, so both ends are char boundaries.
        self.s.get(i..end)
    }
}

/// Unsigned decimal, digits only (no sign, no spaces): `str::parse` accepts a leading `+`.
/// Position of the first byte of `hay` equal to one of `needles`, eight bytes at a time.
///
/// For the short spans between delimiters in structured data (keys and values of ~5–20 bytes,
/// ~70 stops in a Junos RT_FLOW line) a word-at-a-time test costs less than a byte loop or a
/// call into `memchr`, whose vector set-up is paid again at every stop.
#[inline]
pub(crate) fn find_any<const N: usize>(hay: &[u8], needles: [u8; N]) -> Option<usize> {
    find_by_words(hay, |w| word_hits(w, needles), |b| needles.contains(&b))
}

/// Position of the first byte of `hay` that `is_stop` accepts, eight bytes at a time:
/// `flags(word)` sets the high bit of stop bytes, exactly for the lowest one (the flags above
/// it may be false); the last bytes go through `is_stop` one by one.
#[inline(always)]
pub(crate) fn find_by_words(
    hay: &[u8],
    flags: impl Fn(u64) -> u64,
    is_stop: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let hits = flags(u64::from_le_bytes(bytes));
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|b| is_stop(*b))
        .map(|p| at + p)
}

/// The high bit of each byte of `w` equal to one of `needles`, for its lowest one only: the
/// lowest flagged byte is always a true match (borrows only reach bytes above a zero of
/// `w ^ needle`), the flags above it may not be.
#[inline(always)]
pub(crate) fn word_hits<const N: usize>(w: u64, needles: [u8; N]) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut hits = 0;
    for n in needles {
        let x = w ^ (LO * u64::from(n));
        hits |= x.wrapping_sub(LO) & !x & HI;
    }
    hits
}

// Always inlined (the plain hint left ~850,000 calls per 125,000 rows out of line, ~50
// instructions each); twenty digits go to the checked loop out of line.
#[inline(always)]
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    // Nineteen digits stay below 10^19 < 2^64: only a twentieth can overflow, so shorter
    // numbers (ports, counters, stamps: all of them in practice) skip the checked arithmetic.
    if s.len() < 20 {
        let mut v: u64 = 0;
        for b in s.bytes() {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
        return Some(v);
    }
    parse_u64_checked(s)
}

#[inline(never)]
fn parse_u64_checked(s: &str) -> Option<u64> {
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

#[inline]
pub(crate) fn parse_u16(s: &str) -> Option<u16> {
    parse_u64(s).and_then(|v| u16::try_from(v).ok())
}

pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

pub(crate) fn parse_u8(s: &str) -> Option<u8> {
    parse_u64(s).and_then(|v| u8::try_from(v).ok())
}

/// An address as text; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is folded to IPv4 so one host has
/// one spelling in the lake.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let b = s.as_bytes();
    if let Some(v4) = dotted_quad(b) {
        return Some(IpAddr::V4(v4));
    }
    if !could_be_v6(b) {
        return None;
    }
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// False for text the standard parser is sure to refuse, so callers that try a token as an
/// address before splitting it (`inside:100.64.0.1/1234`, `100.64.0.1:1234`) do not pay for
/// a full IPv4 and IPv6 parse: after the dotted-quad path only IPv6 remains, which is made of
/// hex digits, ':' and '.', and has its '.'s (an embedded IPv4) after its last ':'.
fn could_be_v6(b: &[u8]) -> bool {
    let mut last_colon = None;
    let mut first_dot = None;
    for (i, c) in b.iter().enumerate() {
        match c {
            b':' => last_colon = Some(i),
            b'.' => {
                if first_dot.is_none() {
                    first_dot = Some(i);
                }
            }
            c if c.is_ascii_hexdigit() => {}
            _ => return false,
        }
    }
    match (last_colon, first_dot) {
        (None, _) => false,
        (Some(c), Some(d)) => d > c,
        (Some(_), None) => true,
    }
}

/// Plain dotted-quad IPv4 (what nearly every NAT log prints) without the standard parser's
/// general machinery. Accepts exactly what `Ipv4Addr::from_str` accepts of that shape (1–3
/// digits per octet, no leading zeros, ≤ 255); None sends anything else to the full parser.
pub(crate) fn dotted_quad(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    // "0.0.0.0" to "255.255.255.255": anything shorter or longer is not this shape.
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    dotted_quad_at(b, 0).and_then(|(ip, end)| (end == b.len()).then_some(ip))
}

/// The dotted quad starting at `b[at]` and where it ends: `dotted_quad`'s shape, followed by
/// anything but a digit (a fourth digit or a leading zero before another digit is None, not a
/// shorter address). Tokenizers read an address in place with it and check the byte after,
/// instead of finding the token's end first and reading the bytes again.
#[inline(always)]
pub(crate) fn dotted_quad_at(b: &[u8], at: usize) -> Option<(std::net::Ipv4Addr, usize)> {
    let (o0, i) = octet_at(b, at)?;
    let (o1, i) = octet_at(b, dot_at(b, i)?)?;
    let (o2, i) = octet_at(b, dot_at(b, i)?)?;
    let (o3, i) = octet_at(b, dot_at(b, i)?)?;
    Some((std::net::Ipv4Addr::new(o0, o1, o2, o3), i))
}

#[inline(always)]
fn dot_at(b: &[u8], i: usize) -> Option<usize> {
    (b.get(i) == Some(&b'.')).then_some(i + 1)
}

/// One to three digits, unrolled; no leading zero before another digit, no fourth digit.
#[inline(always)]
fn octet_at(b: &[u8], i: usize) -> Option<(u8, usize)> {
    let digit = |i: usize| b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9);
    let d0 = digit(i)?;
    let Some(d1) = digit(i + 1) else {
        return Some((d0, i + 1));
    };
    if d0 == 0 {
        return None;
    }
    let Some(d2) = digit(i + 2) else {
        return Some((d0 * 10 + d1, i + 2));
    };
    if digit(i + 3).is_some() {
        return None;
    }
    let v = u16::from(d0) * 100 + u16::from(d1) * 10 + u16::from(d2);
    Some((u8::try_from(v).ok()?, i + 3))
}

/// The unsigned decimal starting at `b[at]` and where its digits end, for tokenizers that read
/// a number in place: None for no digit, and from the twentieth digit on (the caller takes
/// the token to `parse_u64`, which checks that one for overflow).
#[inline(always)]
pub(crate) fn digits_at(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = at;
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        if i - at == 19 {
            return None;
        }
        v = v * 10 + u64::from(d);
        i += 1;
    }
    (i > at).then_some((v, i))
}

/// An address as an exporter may render a bytes field: dotted / colon text, `0x`-hex, bare hex of
/// 8 or 32 digits, or base64 of 4 or 16 bytes (protobuf JSON renders `bytes` as base64).
pub(crate) fn parse_ip_any(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(ip) = parse_ip(s) {
        return Some(ip);
    }
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
    if let Some(h) = hex {
        return ip_from_hex(h);
    }
    // Bare hex first: 8 or 32 hex digits can also be base64 text, but base64 of that length
    // decodes to 6 or 24 bytes, never to an address, so hex is the only reading that fits.
    if (s.len() == 8 || s.len() == 32) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return ip_from_hex(s);
    }
    ip_from_base64(s)
}

fn ip_from_hex(h: &str) -> Option<IpAddr> {
    let mut buf = [0u8; 16];
    let n = h.len() / 2;
    if !h.len().is_multiple_of(2) || !(n == 4 || n == 16) {
        return None;
    }
    for (i, slot) in buf.iter_mut().take(n).enumerate() {
        let pair = h.get(2 * i..2 * i + 2)?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    ip_from_bytes(buf.get(..n)?)
}

fn ip_from_base64(s: &str) -> Option<IpAddr> {
    // 16 bytes encode to 24 chars: anything longer is not an address; refuse before decoding.
    if s.len() > 24 {
        return None;
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut buf = [0u8; 18];
    for e in engines {
        if let Ok(n) = e.decode_slice(s, &mut buf) {
            return ip_from_bytes(buf.get(..n)?);
        }
    }
    None
}

pub(crate) fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::V4(Ipv4Addr::from(a)));
    }
    if let Ok(a) = <[u8; 16]>::try_from(b) {
        return Some(IpAddr::V6(Ipv6Addr::from(a)).to_canonical());
    }
    None
}

/// UTC micros from civil fields; None for impossible dates. A leap second (`:60`) is folded into
/// the next second, which is what a Unix clock shows. Plain arithmetic (Hinnant's
/// days-from-civil) rather than chrono: it runs once or more per syslog line.
#[allow(clippy::too_many_arguments)]
pub(crate) fn civil_micros(
    y: i32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    us: u32,
) -> Option<Micros> {
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || s > 60
        || us > 999_999
    {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    secs.checked_mul(MICROS_PER_SEC)?.checked_add(i64::from(us))
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12, day valid).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil year of a day count since 1970-01-01.
fn year_from_days(z: i64) -> i64 {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

/// "1700000000.123456" (seconds, optional fraction of up to 9 digits) → micros.
pub(crate) fn parse_epoch_decimal(s: &str) -> Option<Micros> {
    let (sec, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let sec = i64::try_from(parse_u64(sec)?).ok()?;
    let us = if frac.is_empty() {
        0
    } else {
        fraction_micros(frac)?
    };
    sec.checked_mul(MICROS_PER_SEC)?.checked_add(i64::from(us))
}

/// Decimal fraction digits → micros (".5" is 500000 µs); extra digits beyond 6 are truncated.
pub(crate) fn fraction_micros(digits: &str) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u32 = 0;
    for b in digits.bytes().chain(std::iter::repeat(b'0')).take(6) {
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

/// An epoch number whose unit the sender did not state: seconds, ms, µs or ns by magnitude.
/// 1e11 s is the year 5138 and 1e11 ms is 1973, so each band is unambiguous for real clocks.
pub(crate) fn epoch_number_micros(v: f64) -> Option<Micros> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    let us = if v < 1e11 {
        v * 1e6
    } else if v < 1e14 {
        v * 1e3
    } else if v < 1e17 {
        v
    } else {
        v / 1e3
    };
    // i64 range check before the cast (casts saturate, but a saturated time is still wrong).
    (us < 9.0e18).then_some(us as i64)
}

/// Same for an integer, exactly (floats lose precision on ns values).
pub(crate) fn epoch_int_micros(v: u64) -> Option<Micros> {
    if v == 0 {
        return None;
    }
    let us = if v < 100_000_000_000 {
        v.checked_mul(1_000_000)?
    } else if v < 100_000_000_000_000 {
        v.checked_mul(1_000)?
    } else if v < 100_000_000_000_000_000 {
        v
    } else {
        v / 1_000
    };
    i64::try_from(us).ok()
}

/// A calendar timestamp at the start of a string: `YYYY-MM-DD[T ]HH:MM:SS[.f][Z|±HH:MM|±HHMM]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IsoTs {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
    /// Explicit UTC offset in seconds, when the text carries one.
    pub offset: Option<i32>,
    /// The fields above as micros of their wall clock: `parse_iso_prefix` computes it to
    /// validate the date, and `to_micros` need not compute it again.
    local: Micros,
}

impl IsoTs {
    /// UTC micros; `device` is the zone of a stamp that carries no offset of its own.
    pub fn to_micros(self, device: Clock) -> Option<Micros> {
        let local = self.local;
        match self.offset {
            Some(off) => local.checked_sub(i64::from(off) * MICROS_PER_SEC),
            None => device.to_utc(local),
        }
    }
}

/// Parses an ISO / RFC 3339 timestamp at the start of `s`; returns it and the bytes consumed.
pub(crate) fn parse_iso_prefix(s: &str) -> Option<(IsoTs, usize)> {
    let b = s.as_bytes();
    let year = fixed_digits(b, 0, 4)?;
    if *b.get(4)? != b'-' || *b.get(7)? != b'-' || *b.get(13)? != b':' || *b.get(16)? != b':' {
        return None;
    }
    let month = fixed_digits(b, 5, 2)?;
    let day = fixed_digits(b, 8, 2)?;
    if !matches!(b.get(10)?, b'T' | b't' | b' ') {
        return None;
    }
    let hour = fixed_digits(b, 11, 2)?;
    let minute = fixed_digits(b, 14, 2)?;
    let second = fixed_digits(b, 17, 2)?;
    let mut i = 19;
    let mut micros = 0;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        // Fractions longer than 9 digits are legal but pointless; keep the first 9.
        micros = fraction_micros(s.get(start..end.min(start + 9))?)?;
        i = end;
    }
    let mut offset = None;
    match b.get(i) {
        Some(b'Z' | b'z') => {
            offset = Some(0);
            i += 1;
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = fixed_digits(b, i + 1, 2)?;
            let (om, len) = if b.get(i + 3) == Some(&b':') {
                (fixed_digits(b, i + 4, 2)?, 6)
            } else {
                (fixed_digits(b, i + 3, 2)?, 5)
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = i32::try_from(oh * 3600 + om * 60).ok()?;
            offset = Some(if sign == b'-' { -secs } else { secs });
            i += len;
        }
        _ => {}
    }
    let year = i32::try_from(year).ok()?;
    // Validate now so callers can trust `to_micros` to fail only on range, not on shape.
    let local = civil_micros(year, month, day, hour, minute, second, micros)?;
    let ts = IsoTs {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
        offset,
        local,
    };
    Some((ts, i))
}

/// `n` ASCII digits at `at` as a number.
fn fixed_digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..n {
        let c = *b.get(at + k)?;
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// A BSD (RFC 3164) timestamp: `Mmm dd HH:MM:SS`, optionally with a year after the day
/// (`Mar  7 2008 19:06:53`, Cisco's form) and a fraction (`12:00:01.123`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BsdTs {
    pub month: u32,
    pub day: u32,
    pub year: Option<i32>,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

pub(crate) fn month_number(m: &[u8]) -> Option<u32> {
    let [a, b, c] = <[u8; 3]>::try_from(m).ok()?;
    let lower = [
        a.to_ascii_lowercase(),
        b.to_ascii_lowercase(),
        c.to_ascii_lowercase(),
    ];
    Some(match &lower {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// Parses a BSD timestamp at the start of `s`; returns it and the bytes consumed.
pub(crate) fn parse_bsd_prefix(s: &str) -> Option<(BsdTs, usize)> {
    let b = s.as_bytes();
    let month = month_number(b.get(..3)?)?;
    let mut i = skip_spaces(b, 3);
    if i == 3 {
        return None;
    }
    let (day, n) = var_digits(b, i, 2)?;
    i = skip_spaces(b, i + n);
    // Optional year between day and time (Cisco `logging timestamp` with year).
    let mut year = None;
    if let Some((y, 4)) = var_digits(b, i, 4)
        && b.get(i + 4) == Some(&b' ')
    {
        year = Some(i32::try_from(y).ok()?);
        i = skip_spaces(b, i + 4);
    }
    let (hour, n) = var_digits(b, i, 2)?;
    i += n;
    if b.get(i) != Some(&b':') {
        return None;
    }
    let (minute, n) = var_digits(b, i + 1, 2)?;
    i += 1 + n;
    if b.get(i) != Some(&b':') {
        return None;
    }
    let (second, n) = var_digits(b, i + 1, 2)?;
    i += 1 + n;
    let mut micros = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) && end < start + 9 {
            end += 1;
        }
        if end > start {
            micros = fraction_micros(s.get(start..end)?)?;
            i = end;
        }
    }
    if day == 0 || day > 31 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // The timestamp must end at a word boundary: "Mar 10 12:00:001" is not one.
    if b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    Some((
        BsdTs {
            month,
            day,
            year,
            hour,
            minute,
            second,
            micros,
        },
        i,
    ))
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// 1..=max ASCII digits at `at`: (value, count). A longer digit run is not this field (e.g. a
/// 5-digit "day").
fn var_digits(b: &[u8], at: usize, max: usize) -> Option<(u32, usize)> {
    let (v, end) = digits_at(b, at)?;
    let n = end - at;
    (n <= max).then_some((u32::try_from(v).ok()?, n))
}

/// The year that puts a year-less (month, day, time) closest to the receive time on the
/// device's calendar. Devices log in their local year; around New Year the relay's year can
/// differ by one, so the nearest of the three candidates wins. Candidates that are not a valid
/// date (29 February) are skipped; None when none is valid.
pub(crate) fn closest_year(
    device: Clock,
    month: u32,
    day: u32,
    h: u32,
    mi: u32,
    s: u32,
) -> Option<i32> {
    let local_recv = device
        .near
        .saturating_add(i64::from(device.offset_near()) * MICROS_PER_SEC);
    let year = i32::try_from(year_from_days(
        local_recv.div_euclid(MICROS_PER_SEC * 86_400),
    ))
    .ok()?;
    // The same date a year earlier or later is 365 or 366 days away: within 182 days of the
    // receive time, the receive year's date is nearer than both, so they need not be built.
    const HALF_YEAR: i64 = 182 * 86_400 * MICROS_PER_SEC;
    if let Some(t) = civil_micros(year, month, day, h, mi, s, 0)
        && t.saturating_sub(local_recv).saturating_abs() <= HALF_YEAR
    {
        return Some(year);
    }
    let mut best: Option<(i32, i64)> = None;
    for y in [year - 1, year, year + 1] {
        let Some(t) = civil_micros(y, month, day, h, mi, s, 0) else {
            continue;
        };
        let dist = t.saturating_sub(local_recv).saturating_abs();
        if best.is_none_or(|(_, d)| dist < d) {
            best = Some((y, dist));
        }
    }
    best.map(|(y, _)| y)
}

impl BsdTs {
    /// UTC micros in the device's zone, resolving a missing year against the receive time.
    pub fn to_micros(self, device: Clock) -> Option<Micros> {
        let year = match self.year {
            Some(y) => y,
            None => closest_year(
                device,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
            )?,
        };
        let local = civil_micros(
            year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.micros,
        )?;
        device.to_utc(local)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_u64_agrees_with_checked_arithmetic() {
        fn checked(s: &str) -> Option<u64> {
            if s.is_empty() || s.len() > 20 {
                return None;
            }
            s.bytes().try_fold(0u64, |v, b| {
                let d = b.wrapping_sub(b'0');
                (d <= 9).then_some(())?;
                v.checked_mul(10)?.checked_add(u64::from(d))
            })
        }
        let mut cases: Vec<String> = [
            "",
            "0",
            "7",
            "443",
            "65535",
            "65536",
            "+5",
            "-1",
            " 1",
            "1 ",
            "0x10",
            "١",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "09999999999999999999",
            "9999999999999999999",
            "000000000000000000443",
            "1844674407370955161",
            "1.5",
        ]
        .map(String::from)
        .to_vec();
        for n in 1..=21 {
            cases.push("9".repeat(n));
            cases.push(format!("1{}", "0".repeat(n)));
            cases.push(format!("{}a", "1".repeat(n)));
        }
        for c in &cases {
            assert_eq!(parse_u64(c), checked(c), "{c:?}");
            assert_eq!(
                parse_u16(c),
                checked(c).and_then(|v| u16::try_from(v).ok()),
                "{c:?}"
            );
        }
    }

    #[test]
    fn closest_year_is_the_nearest_of_three() {
        use crate::time::{Clock, Zone};
        // The three candidates compared in full, as before the half-year shortcut.
        fn nearest(c: Clock, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i32> {
            let local = c.near + i64::from(c.offset_near()) * super::MICROS_PER_SEC;
            let year = super::year_from_days(local.div_euclid(super::MICROS_PER_SEC * 86_400));
            let year = i32::try_from(year).ok()?;
            let mut best: Option<(i32, i64)> = None;
            for y in [year - 1, year, year + 1] {
                let Some(t) = super::civil_micros(y, mo, d, h, mi, s, 0) else {
                    continue;
                };
                let dist = (t - local).abs();
                if best.is_none_or(|(_, b)| dist < b) {
                    best = Some((y, dist));
                }
            }
            best.map(|(y, _)| y)
        }
        let base = super::civil_micros(2023, 1, 1, 0, 0, 0, 0).unwrap();
        for day in (0..(3 * 366)).step_by(7) {
            for offset in [0, 3600 * 13, -3600 * 11] {
                let recv = base + day * 86_400 * super::MICROS_PER_SEC + 12_345_678;
                let c = Clock::new(Zone::Fixed(offset), recv);
                for mo in 1..=12 {
                    for d in [1, 2, 15, 28, 29, 30, 31] {
                        for (h, mi, s) in [(0, 0, 0), (12, 30, 1), (23, 59, 59)] {
                            assert_eq!(
                                super::closest_year(c, mo, d, h, mi, s),
                                nearest(c, mo, d, h, mi, s),
                                "{day} {offset} {mo}-{d} {h}:{mi}:{s}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn whitespace_tokens_agree_with_split_whitespace() {
        let mut cases: Vec<String> = [
            "",
            "   ",
            "a",
            " a  b\tc\r\nd ",
            "a\x0bb\x0cc",
            "a\u{a0}b c",
            "\u{3000}a\u{85}b",
            "x\x1fy z",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for file in ["juniper.txt", "cisco_asa.txt", "syslog_edge.txt"] {
            cases.extend(test_corpus::samples(file).into_iter().map(|s| s.line));
        }
        cases.extend(
            [
                "\u{a0} a \u{a0}",
                " \u{e9} ",
                "\u{3000}\x0b",
                "a\x0b",
                "\x0b\u{85}x\u{85}\x0b",
            ]
            .map(String::from),
        );
        // Every ASCII byte and a few non-ASCII chars at either end (the inlined tests of
        // the first and last byte).
        let ends: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain(['\u{a0}', '\u{85}', '\u{3000}', '\u{e9}'])
            .collect();
        for a in &ends {
            cases.push(a.to_string());
            for b in &ends {
                cases.push(format!("{a}x{b}"));
            }
        }
        for c in &cases {
            let want: Vec<&str> = c.split_whitespace().collect();
            assert_eq!(whitespace_tokens(c), want, "{c:?}");
            assert_eq!(trim_ws(c), c.trim(), "{c:?}");
            assert_eq!(trim_start_ws(c), c.trim_start(), "{c:?}");
        }
    }

    #[test]
    fn find_lit_agrees_with_str_find() {
        let needles = [
            "",
            "%%",
            "NAT-",
            "|A10|",
            "FIXED-NAT-PORTS ",
            "tmnxNatPlBlockAllocation",
            "-lsn-sub %",
            " Map ",
            "LSN_",
            "aa",
            "a",
            "abab",
            "\u{e9}x",
            "x_y",
        ];
        let alphabet = [
            "a", "b", "%", "N", "A", "T", "-", "|", "1", "0", " ", "_", "x", "y", "\u{e9}",
        ];
        let mut seed = 99u32;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (seed >> 16) as usize % 30;
            let mut hay = String::new();
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                hay.push_str(alphabet[(seed >> 16) as usize % alphabet.len()]);
            }
            for n in needles {
                assert_eq!(find_lit(&hay, n), hay.find(n), "{hay:?} {n:?}");
            }
        }
        for file in [
            "cisco_asa.txt",
            "a10.txt",
            "nokia.txt",
            "f5.txt",
            "huawei.txt",
        ] {
            for line in test_corpus::samples(file) {
                for n in needles {
                    assert_eq!(find_lit(&line.line, n), line.line.find(n), "{n:?}");
                }
            }
        }
    }

    #[test]
    fn ascii_words_agree_with_split_ascii_whitespace() {
        let mut cases: Vec<String> = [
            "",
            " ",
            "a",
            "\tab  cd\r\nef\x0cgh ",
            // Vertical tab and other control bytes are not separators, in and out of words.
            "a\x0bb c\x01d\x1fe f\x00g",
            "0123456789abcdef\x0b0123456789abcdef 01234567\x1f89",
            "\u{a0}a\u{85}b c\u{e9}\u{3000}d",
            "12345678 12345678\t1234567 123456789",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for file in ["conntrack.txt", "juniper.txt", "syslog_edge.txt"] {
            cases.extend(test_corpus::samples(file).into_iter().map(|s| s.line));
        }
        // Every separator and a control byte at every offset of spans up to 20 bytes.
        for len in 0..20usize {
            for at in 0..len {
                for sep in [' ', '\t', '\n', '\x0c', '\r', '\x0b', '\x1f', '\u{85}'] {
                    let mut t: String = (0..len).map(|k| char::from(b'a' + k as u8)).collect();
                    t.replace_range(at..=at, &sep.to_string());
                    cases.push(t);
                }
            }
        }
        for c in &cases {
            let want: Vec<&str> = c.split_ascii_whitespace().collect();
            let got: Vec<&str> = ascii_words(c).collect();
            assert_eq!(got, want, "{c:?}");
        }
    }

    #[test]
    fn split_once_byte_agrees_with_str() {
        for t in [
            "",
            "=",
            "a=b",
            "=b",
            "a=",
            "a=b=c",
            "ab",
            "\u{e9}=\u{e9}",
            "k=v\u{3000}=w",
            "0123456789abcdef=x",
        ] {
            for sep in [b'=', b':', b'/'] {
                assert_eq!(
                    super::split_once_byte(t, sep),
                    t.split_once(char::from(sep)),
                    "{t:?} {sep}"
                );
            }
        }
    }

    #[test]
    fn find_any_agrees_with_a_byte_scan() {
        // Every needle position in spans of 0..40 bytes, over filler that includes the bytes
        // next to the needles (borrows in the word test must not fake or hide a match) and
        // high bytes (UTF-8 continuation bytes).
        let fillers: [u8; 8] = [b'a', b'!', b'#', b'=' - 1, b'=' + 1, 0x80, 0xff, 0x00];
        let needles = [b'=', b' ', b']'];
        for len in 0..40usize {
            for (fi, &fill) in fillers.iter().enumerate() {
                let base: Vec<u8> = (0..len)
                    .map(|k| fillers[(fi + k * 3) % fillers.len()].max(fill))
                    .map(|c| if needles.contains(&c) { b'x' } else { c })
                    .collect();
                assert_eq!(super::find_any(&base, needles), None, "{base:?}");
                for at in 0..len {
                    for n in needles {
                        let mut h = base.clone();
                        h[at] = n;
                        if let Some(later) = h.get_mut(at + 5) {
                            *later = b']';
                        }
                        let want = h.iter().position(|b| needles.contains(b));
                        assert_eq!(super::find_any(&h, needles), want, "{h:?}");
                        assert_eq!(want, Some(at));
                    }
                }
            }
        }
    }

    #[test]
    fn parse_ip_agrees_with_std_on_random_and_corpus_text() {
        let std_ip = |s: &str| s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        // Random strings over the bytes addresses are made of and a few that they are not.
        let alphabet = b"0123456789abcdefABCDEF.:.:.:g/ %1";
        let mut seed = 12_345u32;
        let mut valid = 0;
        for _ in 0..200_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (seed >> 16) as usize % 24;
            let t: String = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    char::from(alphabet[(seed >> 16) as usize % alphabet.len()])
                })
                .collect();
            let want = std_ip(&t);
            valid += usize::from(want.is_some());
            assert_eq!(parse_ip(&t), want, "{t:?}");
        }
        assert!(valid > 100, "{valid}");
        // Every token of the corpus, whole and split at the usual separators.
        for file in [
            "cisco_asa.txt",
            "juniper.txt",
            "conntrack.txt",
            "iptables.txt",
            "huawei.txt",
        ] {
            for line in test_corpus::samples(file) {
                for tok in line.line.split_whitespace() {
                    for part in tok.split(['=', '/', '"', ',', '(', ')', '[', ']']) {
                        assert_eq!(parse_ip(part), std_ip(part), "{part:?}");
                        if let Some((a, _)) = part.rsplit_once(':') {
                            assert_eq!(parse_ip(a), std_ip(a), "{a:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dotted_quad_fast_path_agrees_with_std() {
        for s in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "100.64.0.1",
            "10.0.0.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.",
            ".1.2.3",
            "1000.1.1.1",
            "1.2.3.-4",
            "1.2.3.+4",
            "",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "1.2.3.4:80",
            "0.00.0.0",
            "99.999.9.9",
            "1.2.3.4444",
            "001.2.3.4",
            "1.2.3.4/24",
            "inside:100.64.0.1",
            "100.64.0.1:1234",
            "::1",
            "::",
            "::ffff:100.64.0.1",
            "64:ff9b::198.51.100.1",
            "2001:db8::1.2.3.4",
            "2001:DB8::A",
            "1.2.3.4::",
            "1.2::3.4",
            "g::1",
            "fe80::1%eth0",
            "[2001:db8::1]",
            "2001:db8::1:80",
        ] {
            let std = s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
            assert_eq!(parse_ip(s), std, "{s:?}");
            if std.is_some() {
                assert!(
                    dotted_quad(s.as_bytes()).is_some() || could_be_v6(s.as_bytes()),
                    "{s:?}"
                );
            }
            if let Some(v4) = dotted_quad(s.as_bytes()) {
                assert_eq!(Some(IpAddr::V4(v4)), std, "{s:?}");
            }
        }
    }

    use super::*;

    #[test]
    fn ip_encodings() {
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(parse_ip_any("198.51.100.7"), Some(v4));
        assert_eq!(parse_ip_any("0xc6336407"), Some(v4));
        assert_eq!(parse_ip_any("c6336407"), Some(v4));
        assert_eq!(parse_ip_any("xjNkBw=="), Some(v4));
        assert_eq!(parse_ip_any("xjNkBw"), Some(v4));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(parse_ip_any("20010db8000000000000000000000001"), Some(v6));
        assert_eq!(parse_ip_any("IAENuAAAAAAAAAAAAAAAAQ=="), Some(v6));
        assert_eq!(parse_ip_any("::ffff:198.51.100.7"), Some(v4));
        assert_eq!(parse_ip_any(""), None);
        assert_eq!(parse_ip_any("hello"), None);
        assert_eq!(parse_ip_any("0x123"), None);
    }

    #[test]
    fn civil_matches_chrono() {
        use chrono::{Datelike, NaiveDate};
        let mut d = NaiveDate::from_ymd_opt(1899, 12, 25).unwrap();
        while d.year() < 2102 {
            let want = d
                .and_hms_micro_opt(13, 14, 15, 16)
                .unwrap()
                .and_utc()
                .timestamp_micros();
            assert_eq!(
                civil_micros(d.year(), d.month(), d.day(), 13, 14, 15, 16),
                Some(want),
                "{d}"
            );
            assert_eq!(
                year_from_days(want.div_euclid(86_400_000_000)),
                i64::from(d.year()),
                "{d}"
            );
            d = d.succ_opt().unwrap();
        }
        assert_eq!(civil_micros(2023, 2, 29, 0, 0, 0, 0), None);
        assert_eq!(
            civil_micros(2024, 2, 29, 0, 0, 0, 0),
            NaiveDate::from_ymd_opt(2024, 2, 29).map(|d| d
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros())
        );
        assert_eq!(civil_micros(2024, 13, 1, 0, 0, 0, 0), None);
        assert_eq!(civil_micros(2024, 4, 31, 0, 0, 0, 0), None);
        assert_eq!(civil_micros(2024, 1, 1, 24, 0, 0, 0), None);
    }

    #[test]
    fn epochs() {
        assert_eq!(
            parse_epoch_decimal("1700000000.123456"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(
            parse_epoch_decimal("1700000000.5"),
            Some(1_700_000_000_500_000)
        );
        assert_eq!(
            parse_epoch_decimal("1700000000"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(
            parse_epoch_decimal("1700000000.123456789"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(parse_epoch_decimal("-1"), None);
        assert_eq!(parse_epoch_decimal("99999999999999999999"), None);
        assert_eq!(
            epoch_int_micros(1_767_324_720_787_460_121),
            Some(1_767_324_720_787_460)
        );
        assert_eq!(epoch_int_micros(1_700_000_000), Some(1_700_000_000_000_000));
        assert_eq!(
            epoch_int_micros(1_700_000_000_123),
            Some(1_700_000_000_123_000)
        );
        assert_eq!(
            epoch_number_micros(1_700_000_000.25),
            Some(1_700_000_000_250_000)
        );
        assert_eq!(epoch_int_micros(0), None);
    }

    #[test]
    fn iso_prefix() {
        let (ts, n) = parse_iso_prefix("2019-02-13T21:53:30.605850+00:00 host").unwrap();
        assert_eq!(n, 32);
        assert_eq!(
            ts.to_micros(Clock::UTC.with_offset(3600)),
            Some(1_550_094_810_605_850)
        );
        let (ts, n) = parse_iso_prefix("2020-09-09 10:05:11 FW").unwrap();
        assert_eq!((n, ts.offset), (19, None));
        assert_eq!(
            ts.to_micros(Clock::UTC.with_offset(7200)),
            civil_micros(2020, 9, 9, 8, 5, 11, 0)
        );
        let (ts, _) = parse_iso_prefix("2016-12-31T23:59:60-04:00").unwrap();
        assert_eq!(
            ts.to_micros(Clock::UTC.with_offset(0)),
            civil_micros(2017, 1, 1, 4, 0, 0, 0)
        );
        let (ts, _) = parse_iso_prefix("2012-12-19T01:45:54.001234+11:30").unwrap();
        assert_eq!(ts.offset, Some(11 * 3600 + 1800));
        assert!(parse_iso_prefix("2019-02-30T00:00:00Z").is_none());
        assert!(parse_iso_prefix("2019-02-1").is_none());
        assert!(parse_iso_prefix("2019-02-13T21:53:30+2").is_none());
    }

    #[test]
    fn bsd_prefix_and_year() {
        let (ts, n) = parse_bsd_prefix("Feb  4 23:33:37 host").unwrap();
        assert_eq!((ts.month, ts.day, ts.year, n), (2, 4, None, 15));
        let (ts, _) = parse_bsd_prefix("Mar 7 2008 19:06:53: x").unwrap();
        assert_eq!(ts.year, Some(2008));
        let (ts, _) = parse_bsd_prefix("May 21 12:00:01.123 gmt").unwrap();
        assert_eq!(ts.micros, 123_000);
        assert!(parse_bsd_prefix("Foo 21 12:00:01").is_none());
        assert!(parse_bsd_prefix("May 21 12:00").is_none());
        // New Year: a December stamp received on 1 January belongs to the previous year.
        let recv = civil_micros(2025, 1, 1, 0, 0, 10, 0).unwrap();
        let (ts, _) = parse_bsd_prefix("Dec 31 23:59:59 h").unwrap();
        assert_eq!(
            ts.to_micros(Clock::new(crate::time::Zone::Fixed(0), recv)),
            civil_micros(2024, 12, 31, 23, 59, 59, 0)
        );
        // And a January stamp received on 31 December belongs to the next.
        let recv = civil_micros(2024, 12, 31, 23, 59, 0, 0).unwrap();
        let (ts, _) = parse_bsd_prefix("Jan  1 00:00:30 h").unwrap();
        assert_eq!(
            ts.to_micros(Clock::new(crate::time::Zone::Fixed(0), recv)),
            civil_micros(2025, 1, 1, 0, 0, 30, 0)
        );
        // 29 February resolves to the nearest leap year within one year, else fails.
        let recv = civil_micros(2024, 6, 1, 0, 0, 0, 0).unwrap();
        let (ts, _) = parse_bsd_prefix("Feb 29 12:00:00 h").unwrap();
        assert_eq!(
            ts.to_micros(Clock::new(crate::time::Zone::Fixed(0), recv)),
            civil_micros(2024, 2, 29, 12, 0, 0, 0)
        );
        let recv = civil_micros(2022, 6, 1, 0, 0, 0, 0).unwrap();
        assert_eq!(
            ts.to_micros(Clock::new(crate::time::Zone::Fixed(0), recv)),
            None
        );
        // The device's zone shifts the instant.
        let recv = civil_micros(2024, 6, 1, 0, 0, 0, 0).unwrap();
        let (ts, _) = parse_bsd_prefix("Jun  1 02:00:00 h").unwrap();
        assert_eq!(
            ts.to_micros(Clock::new(crate::time::Zone::Fixed(7200), recv)),
            Some(recv)
        );
    }

    #[test]
    fn snippets_and_offsets() {
        assert_eq!(snippet("héllo", 2), "hé");
        assert_eq!(snippet("hi", 60), "hi");
        let s = "abc def";
        assert_eq!(offset_in(s, &s[4..]), Some(4));
        let other = String::from("def");
        assert_eq!(offset_in(&other, s), None);
    }
}

/// Test-time access to the shared third-party corpus. Lines are read from disk at test time and
/// never copied into the repository. `NATLAKE_CORPUS` overrides the directory.
#[cfg(test)]
pub(crate) mod test_corpus {
    use std::path::PathBuf;

    pub fn dir() -> PathBuf {
        match std::env::var_os("NATLAKE_CORPUS") {
            Some(d) => PathBuf::from(d),
            None => crate::testing::repo_dir().join("../shared/corpus"),
        }
    }

    pub fn read(name: &str) -> String {
        let path = dir().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "corpus file {} unreadable ({e}); set NATLAKE_CORPUS",
                path.display()
            )
        })
    }

    /// One sample line with the comment lines that annotate it.
    #[derive(Debug, Clone)]
    pub struct Sample {
        /// 1-based line number in the file.
        pub line_no: usize,
        pub line: String,
        /// The comment lines directly above this line (empty for the 2nd line of a block).
        pub comments: Vec<String>,
        /// All comment lines since the last blank line: the annotations of the block.
        pub block: Vec<String>,
    }

    impl Sample {
        /// Text of the nearest `# expect…:` annotation directly above the line.
        pub fn expect(&self) -> Option<&str> {
            annotation(&self.comments, "# expect")
        }

        /// Text of the block's `# derived…:` annotation.
        pub fn derived(&self) -> Option<&str> {
            annotation(&self.block, "# derived")
        }
    }

    fn annotation<'a>(comments: &'a [String], tag: &str) -> Option<&'a str> {
        let c = comments.iter().rev().find(|c| c.starts_with(tag))?;
        let (_, rest) = c.split_once(':')?;
        Some(rest.strip_prefix(' ').unwrap_or(rest))
    }

    /// Non-comment, non-blank lines of a corpus file, with their annotations.
    pub fn samples(name: &str) -> Vec<Sample> {
        let text = read(name);
        let mut out = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        let mut block: Vec<String> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                comments.clear();
                block.clear();
            } else if raw.starts_with('#') {
                comments.push(raw.to_string());
                block.push(raw.to_string());
            } else {
                out.push(Sample {
                    line_no: i + 1,
                    line: raw.to_string(),
                    comments: std::mem::take(&mut comments),
                    block: block.clone(),
                });
            }
        }
        out
    }

    /// `key=value` from annotation text (value up to whitespace; quotes honoured; trailing
    /// punctuation dropped).
    pub fn annotation_value(text: &str, key: &str) -> Option<String> {
        let pat = format!("{key}=");
        let mut from = 0;
        while let Some(pos) = text.get(from..)?.find(&pat) {
            let at = from + pos;
            let before = text.get(..at)?.chars().next_back();
            if before.is_none_or(|c| c.is_whitespace() || c == '(' || c == ',') {
                let v = text.get(at + pat.len()..)?;
                if let Some(q) = v.strip_prefix('"') {
                    return Some(q.split('"').next()?.to_string());
                }
                let end = v.find(char::is_whitespace).unwrap_or(v.len());
                return Some(v.get(..end)?.trim_end_matches([',', ';', ')']).to_string());
            }
            from = at + pat.len();
        }
        None
    }

    /// `key="…"` whose closing quote is followed by the end, a space or punctuation; falls back
    /// to an unquoted value.
    pub fn annotation_message(text: &str, key: &str) -> Option<String> {
        let pat = format!("{key}=\"");
        if let Some(pos) = text.find(&pat) {
            let v = text.get(pos + pat.len()..)?;
            let bytes = v.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'"'
                    && bytes
                        .get(i + 1)
                        .is_none_or(|n| matches!(n, b' ' | b')' | b';' | b','))
                {
                    return Some(v.get(..i)?.to_string());
                }
            }
            return None;
        }
        annotation_value(text, key)
    }

    /// Hostname and timestamp from an rsyslog test's EXPECTED line rendered with a template
    /// (`PRI,facility,severity,TIMESTAMP,HOSTNAME,…`, the no-date variant without TIMESTAMP,
    /// or parse3's `"RFC3339", "HOSTNAME", …`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RsyslogFields {
        pub timestamp: Option<String>,
        pub hostname: Option<String>,
    }

    pub fn rsyslog_fields(expect: &str) -> Option<RsyslogFields> {
        if let Some(q) = expect.strip_prefix('"') {
            let mut it = q.split("\", \"");
            let ts = it.next()?.to_string();
            let host = it.next()?.to_string();
            return Some(RsyslogFields {
                timestamp: Some(ts),
                hostname: Some(host),
            });
        }
        let f: Vec<&str> = expect.splitn(6, ',').collect();
        let pri = f.first()?;
        if pri.is_empty() || !pri.bytes().all(|b| b.is_ascii_digit()) || f.len() < 5 {
            return None;
        }
        let f3 = f.get(3)?;
        if super::parse_bsd_prefix(f3).is_some() {
            Some(RsyslogFields {
                timestamp: Some(f3.to_string()),
                hostname: Some(f.get(4)?.to_string()),
            })
        } else {
            Some(RsyslogFields {
                timestamp: None,
                hostname: Some(f3.to_string()),
            })
        }
    }
}

/// A JSON scalar as a sender happened to type it: the JSON parsers accept numbers as strings
/// and names or numbers for protocols, so fields are read into this and interpreted after.
/// Strings borrow from the input unless they had escapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(std::borrow::Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    /// An object or array where a scalar was expected: ignored, not an error.
    Other,
}

impl<'a> Scalar<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s.as_ref()),
            _ => None,
        }
    }

    /// Non-negative integer from a number or a decimal string.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::U64(v) => Some(*v),
            Scalar::F64(f) if *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19 => Some(*f as u64),
            Scalar::Str(s) => parse_u64(s.trim()),
            _ => None,
        }
    }

    /// A port: a number, a decimal string, `0x`-hex, or 4 hex digits / base64 of 2 bytes (how
    /// goflow2 renders a `bytes` field mapped without a renderer).
    pub fn as_port(&self) -> Option<u16> {
        if let Some(v) = self.as_u64() {
            return u16::try_from(v).ok();
        }
        let s = self.as_str()?.trim();
        if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            return u16::from_str_radix(h, 16).ok();
        }
        if s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return u16::from_str_radix(s, 16).ok();
        }
        let mut buf = [0u8; 3];
        let n = base64::engine::general_purpose::STANDARD
            .decode_slice(s, &mut buf)
            .ok()?;
        let [a, b] = <[u8; 2]>::try_from(buf.get(..n)?).ok()?;
        Some(u16::from_be_bytes([a, b]))
    }

    /// An address in any of the encodings `parse_ip_any` knows, or an IPv4 as a u32.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self {
            Scalar::Str(s) => parse_ip_any(s),
            Scalar::U64(v) => u32::try_from(*v)
                .ok()
                .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
            _ => None,
        }
    }

    /// An epoch time in an unstated unit (number, or "sec.frac" / RFC 3339 string); 0 and ""
    /// mean "not set". Zone-less date-times are taken as UTC.
    pub fn as_epoch_micros(&self) -> Option<Micros> {
        match self {
            Scalar::U64(v) => epoch_int_micros(*v),
            Scalar::F64(f) => epoch_number_micros(*f),
            Scalar::Str(s) => {
                let s = s.trim();
                if let Some((ts, _)) = parse_iso_prefix(s) {
                    return ts.to_micros(Clock::UTC);
                }
                if !s.contains('.') {
                    return epoch_int_micros(parse_u64(s)?);
                }
                parse_epoch_decimal(s).filter(|t| *t > 0)
            }
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map(Scalar::U64).unwrap_or(Scalar::I64(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(std::borrow::Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(std::borrow::Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(std::borrow::Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// A present, non-empty, non-zero value: exporters fill absent NAT fields with "", 0,
/// "0.0.0.0" or "::".
pub(crate) fn set_ip(v: &Option<Scalar<'_>>) -> Option<IpAddr> {
    v.as_ref()
        .and_then(Scalar::as_ip)
        .filter(|ip| !ip.is_unspecified())
}

pub(crate) fn set_port(v: &Option<Scalar<'_>>) -> Option<u16> {
    v.as_ref().and_then(Scalar::as_port).filter(|p| *p != 0)
}
