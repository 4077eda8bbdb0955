//! Helpers the parsers' unit tests share: the usual receive time, a parse context, literal
//! addresses and "this line yields exactly one event".

use std::net::IpAddr;

use super::{Format, ParseCtx, ParseError, parse_message};
use crate::model::{Event, FirewallEvent, Micros, NatEvent};

/// 2024-06-15T12:00:00Z: mid-year, so year-less syslog stamps resolve to 2024 or late 2023.
pub const T0: Micros = 1_718_452_800_000_000;

/// A context for lines received at `recv_time` from devices that log in UTC.
pub fn utc_ctx(recv_time: Micros) -> ParseCtx {
    ParseCtx {
        recv_time,
        zone: crate::time::Zone::Fixed(0),
    }
}

/// A literal address in a test (panics on a typo in the test itself).
pub fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// The one event `line` yields through auto-detection, which must pick `format`.
pub fn one_auto(line: &str, c: &ParseCtx, format: &str) -> Event {
    let mut out = Vec::new();
    let p = parse_message(line.as_bytes(), Format::Auto, c, &mut out)
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!((p.format, p.events), (format, 1), "{line}");
    out.pop().unwrap()
}

/// The one event a module's own `parse` (given the line and the output) pushes for `line`.
pub fn one_pushed(
    line: &str,
    parse: impl FnOnce(&str, &mut Vec<Event>) -> Result<usize, ParseError>,
) -> Event {
    let mut out = Vec::new();
    assert_eq!(parse(line, &mut out), Ok(1), "{line}");
    out.pop().unwrap()
}

pub fn nat(e: Event) -> NatEvent {
    match e {
        Event::Nat(n) => n,
        other => panic!("{other:?}"),
    }
}

pub fn firewall(e: Event) -> FirewallEvent {
    match e {
        Event::Firewall(f) => f,
        other => panic!("{other:?}"),
    }
}

/// Each line, read as `format`, fails with a reason that contains its paired text, and none
/// of them pushes an event.
pub fn assert_rejects<'a, L: AsRef<str>>(
    format: Format,
    c: &ParseCtx,
    cases: impl IntoIterator<Item = (L, &'a str)>,
) {
    let mut out = Vec::new();
    for (line, want) in cases {
        let line = line.as_ref();
        let e = parse_message(line.as_bytes(), format, c, &mut out).unwrap_err();
        assert!(e.reason.contains(want), "{line}: {e}");
    }
    assert!(out.is_empty());
}
