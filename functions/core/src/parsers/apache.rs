//! Apache httpd access logs, and the Common Log Format core that nginx shares (nginx's
//! `combined` is Apache's, field for field):
//!
//! ```text
//! common          %h %l %u %t "%r" %>s %b
//! combined        %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"
//! vhost_combined  %v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"
//! ```
//!
//! - The client (`%h`) must be an address: `HostnameLookups On` names and proxy lists are
//!   rejected with the field quoted, never guessed at. `address:port` / `[v6]:port` (formats
//!   that log the client port) fill `client_port`.
//! - Quoted fields keep the server's escapes (Apache `\"`, nginx `\x22`): the scanner skips
//!   `\X` pairs to find the closing quote, and a line without one is truncated.
//! - The request line splits into method, target and protocol. One that does not split (a
//!   scanner's bytes, a TLS hello on a plain port, `-` for a timed-out connection) is kept in
//!   `request` when the server answered 4xx — that is how servers log what they refused — and
//!   is an error otherwise: a 2xx for a request without a method means the line is not in the
//!   format it was read as.
//! - Times are the log's own `[10/Oct/2000:13:55:36 -0700]`, which carries its offset.

use std::net::IpAddr;

use crate::model::{Event, HttpAccess, Micros};

use super::ParseError;
use super::util::{civil_micros, month_number, parse_ip, parse_u16, parse_u64, snippet};

pub(crate) const FORMAT: &str = "apache";
/// How much of a bad field an error quotes.
const QUOTE: usize = 60;

/// Cheap check used by format detection: `] "` right after a CLF time (`…/2000:13:55:36 -0700`).
/// One substring search per line, and only reached when no NAT format matched.
pub fn looks_like(body: &str) -> bool {
    clf_time_end(body).is_some()
}

/// Parses one Apache access log line (common, combined or vhost_combined) into one event.
/// `server` is what the caller knows of the server ("apache" when the format was named or the
/// syslog tag said so).
pub fn parse(
    line: &str,
    server: Option<&'static str>,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let (ev, _) = parse_clf(line, server, FORMAT)?;
    out.push(Event::Http(Box::new(ev)));
    Ok(1)
}

/// Byte offset of the `[` that opens the CLF time and of the `]` that closes it.
fn clf_time_end(s: &str) -> Option<(usize, usize)> {
    let close = s.find("] \"").or_else(|| s.find("] -"))?;
    // "dd/Mmm/yyyy:HH:MM:SS +zzzz" is 26 bytes.
    let open = close.checked_sub(27)?;
    let b = s.as_bytes();
    (b.get(open) == Some(&b'[')
        && b.get(open + 3) == Some(&b'/')
        && b.get(open + 7) == Some(&b'/')
        && b.get(open + 12) == Some(&b':'))
    .then_some((open, close))
}

/// `10/Oct/2000:13:55:36 -0700` → µs UTC.
pub(crate) fn parse_clf_time(t: &str) -> Option<Micros> {
    let b = t.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r).and_then(parse_u64);
    let day = u32::try_from(num(0..2)?).ok()?;
    let month = month_number(b.get(3..6)?)?;
    let year = i32::try_from(num(7..11)?).ok()?;
    let hour = u32::try_from(num(12..14)?).ok()?;
    let minute = u32::try_from(num(15..17)?).ok()?;
    let second = u32::try_from(num(18..20)?).ok()?;
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let oh = i64::try_from(num(22..24)?).ok()?;
    let om = i64::try_from(num(24..26)?).ok()?;
    if oh > 23 || om > 59 {
        return None;
    }
    let local = civil_micros(year, month, day, hour, minute, second, 0)?;
    local.checked_sub(sign * (oh * 3600 + om * 60) * 1_000_000)
}

/// A quoted field at the start of `s` (which must begin with `"`): its content (escapes kept)
/// and the rest after the closing quote. None when the quote is not closed.
pub(crate) fn quoted(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some((s.get(1..i)?, s.get(i + 1..)?)),
            _ => i += 1,
        }
    }
    None
}

/// `-` is how both servers write "no value".
fn dash(v: &str) -> Option<&str> {
    (v != "-" && !v.is_empty()).then_some(v)
}

/// The client field: an address, `address:port` or `[v6]:port`.
fn client(tok: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(ip) = parse_ip(tok) {
        return Some((ip, None));
    }
    if let Some(rest) = tok.strip_prefix('[') {
        let (a, p) = rest.split_once("]:")?;
        return Some((parse_ip(a)?, Some(parse_u16(p)?)));
    }
    let (a, p) = tok.split_once(':')?;
    if p.contains(':') {
        return None;
    }
    Some((parse_ip(a)?, Some(parse_u16(p)?)))
}

/// `METHOD SP target [SP HTTP/x.y]` → (method, target, protocol).
fn split_request(r: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut it = r.split(' ');
    let method = it.next()?;
    let target = it.next()?;
    let proto = it.next();
    if it.next().is_some()
        || method.is_empty()
        || method.len() > 24
        || !method.as_bytes()[0].is_ascii_uppercase()
        || !method
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        || target.is_empty()
    {
        return None;
    }
    match proto {
        Some(p) if !p.starts_with("HTTP/") => None,
        _ => Some((method, target, proto)),
    }
}

fn err(format: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::new(format, reason)
}

/// Parses the CLF / combined part of a line; returns the event and what follows the user
/// agent (nginx's extra fields), trimmed.
pub(crate) fn parse_clf<'a>(
    line: &'a str,
    server: Option<&'static str>,
    format: &'static str,
) -> Result<(HttpAccess, &'a str), ParseError> {
    let s = line.trim();
    let (open, close) = clf_time_end(s).ok_or_else(|| {
        err(
            format,
            "no [dd/Mon/yyyy:HH:MM:SS +zone] time followed by a request",
        )
    })?;
    let head: Vec<&str> = s
        .get(..open)
        .unwrap_or("")
        .split_ascii_whitespace()
        .collect();
    let (vhost_field, who) = match head.len() {
        3 => (None, &head[..]),
        4 => (Some(head[0]), &head[1..]),
        _ => {
            let before = s.get(..open).unwrap_or("").trim();
            return Err(err(
                format,
                format!(
                    "invalid client address {:?}: expected `client ident user` before the time",
                    snippet(before, QUOTE)
                ),
            ));
        }
    };
    let (client_ip, client_port) = client(who[0]).ok_or_else(|| {
        err(
            format,
            format!("invalid client address {:?}", snippet(who[0], QUOTE)),
        )
    })?;
    let (vhost, server_port) = match vhost_field {
        None => (None, None),
        Some(v) => match v.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => (
                Some(h.to_owned()),
                Some(parse_u16(p).ok_or_else(|| {
                    err(
                        format,
                        format!("invalid server port in {:?}", snippet(v, QUOTE)),
                    )
                })?),
            ),
            _ => (Some(v.to_owned()), None),
        },
    };
    let time_text = s.get(open + 1..close).unwrap_or("");
    let time =
        parse_clf_time(time_text).ok_or_else(|| err(format, format!("bad time [{time_text}]")))?;

    let after_time = s.get(close + 2..).unwrap_or("");
    let (request, rest) = if after_time.starts_with('"') {
        quoted(after_time).ok_or_else(|| {
            err(
                format,
                "request line has no closing quote (truncated line?)",
            )
        })?
    } else {
        // Both servers quote the request; an unquoted `-` is read as the empty request.
        after_time.split_once(' ').unwrap_or((after_time, ""))
    };
    let mut fields = rest.trim_start().splitn(3, ' ');
    let status_text = fields
        .next()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err(format, "no status after the request (truncated line?)"))?;
    let status = match dash(status_text) {
        None => None,
        Some(t) => {
            let v = parse_u64(t).ok_or_else(|| {
                err(
                    format,
                    format!("status {:?} is not a number", snippet(t, QUOTE)),
                )
            })?;
            if !(100..=599).contains(&v) {
                return Err(err(format, format!("status {v} out of range")));
            }
            Some(v as u16)
        }
    };
    let bytes_text = fields
        .next()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err(format, "no byte count after the status (truncated line?)"))?;
    let bytes = match dash(bytes_text) {
        None => None,
        Some(t) => Some(parse_u64(t).ok_or_else(|| {
            err(
                format,
                format!("bytes {:?} is not a number", snippet(t, QUOTE)),
            )
        })?),
    };
    let mut tail = fields.next().unwrap_or("").trim_start();
    let mut referer = None;
    let mut user_agent = None;
    if tail.starts_with('"') {
        let (r, after) = quoted(tail)
            .ok_or_else(|| err(format, "referer has no closing quote (truncated line?)"))?;
        referer = dash(r).map(str::to_owned);
        tail = after.trim_start();
        if tail.starts_with('"') {
            let (u, after) = quoted(tail)
                .ok_or_else(|| err(format, "user agent has no closing quote (truncated line?)"))?;
            user_agent = dash(u).map(str::to_owned);
            tail = after.trim_start();
        } else {
            return Err(err(
                format,
                "referer without a user agent (truncated line?)",
            ));
        }
    }

    let (method, path, protocol, raw_request) = match split_request(request) {
        Some((m, t, p)) => (
            Some(m.to_owned()),
            Some(t.to_owned()),
            p.map(str::to_owned),
            None,
        ),
        None if status.is_some_and(|s| (400..500).contains(&s)) => {
            (None, None, None, dash(request).map(str::to_owned))
        }
        None => {
            let why = if request.is_empty() || request == "-" {
                "request line is empty".to_string()
            } else {
                format!("request line has no method: {:?}", snippet(request, QUOTE))
            };
            return Err(err(
                format,
                match status {
                    Some(st) => format!("{why} (status {st})"),
                    None => why,
                },
            ));
        }
    };
    Ok((
        HttpAccess {
            time,
            server,
            vhost,
            server_port,
            client_ip: Some(client_ip),
            client_port,
            user: dash(who[2]).map(str::to_owned),
            method,
            path,
            protocol,
            request: raw_request,
            status,
            bytes,
            referer,
            user_agent,
            ..HttpAccess::default()
        },
        tail,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, assert_rejects, ip, utc_ctx};
    use super::super::util::civil_micros;
    use super::super::{Format, parse_message};
    use super::*;

    fn one(line: &str) -> HttpAccess {
        let mut out = Vec::new();
        assert_eq!(parse(line, Some("apache"), &mut out), Ok(1), "{line}");
        match out.pop() {
            Some(Event::Http(h)) => *h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clf_times_carry_their_offset() {
        assert_eq!(
            parse_clf_time("10/Oct/2000:13:55:36 -0700"),
            civil_micros(2000, 10, 10, 20, 55, 36, 0)
        );
        assert_eq!(
            parse_clf_time("26/Dec/2016:16:16:29 +0200"),
            civil_micros(2016, 12, 26, 14, 16, 29, 0)
        );
        for bad in [
            "32/Oct/2000:13:55:36 -0700",
            "10/Foo/2000:13:55:36 -0700",
            "10/Oct/2000:25:55:36 -0700",
            "10/Oct/2000:13:55:36 0700",
            "10/Oct/2000:13:55:36 -07",
        ] {
            assert_eq!(parse_clf_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn combined() {
        // logstash-plugins/logstash-patterns-core @ 10d9a9318bfee2e2e320e02a67057a193661ebd9,
        // spec/patterns/httpd_spec.rb, "Typical test case" (their expected values asserted).
        let e = one(
            r#"83.149.9.216 - - [24/Feb/2015:23:13:42 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36""#,
        );
        assert_eq!(e.client_ip, ip("83.149.9.216"));
        assert_eq!(e.time, civil_micros(2015, 2, 24, 23, 13, 42, 0).unwrap());
        assert_eq!(
            (e.method.as_deref(), e.protocol.as_deref()),
            (Some("GET"), Some("HTTP/1.1"))
        );
        assert_eq!(
            e.path.as_deref(),
            Some("/presentations/logstash-monitorama-2013/images/kibana-search.png")
        );
        assert_eq!((e.status, e.bytes), (Some(200), Some(203023)));
        assert_eq!(
            e.referer.as_deref(),
            Some("http://semicomplete.com/presentations/logstash-monitorama-2013/")
        );
        assert!(e.user_agent.as_deref().unwrap().ends_with("Safari/537.36"));
        assert_eq!((e.user, e.request, e.server), (None, None, Some("apache")));
        // Same file, "Email address in auth field": an empty referer is "".
        let e = one(
            r#"10.0.0.1 - username@example.com [07/Apr/2016:18:42:24 +0000] "GET /bar/foo/users/1/username%40example.com/authenticate?token=blargh&client_id=15 HTTP/1.1" 400 75 "" "Mozilla/5.0 (iPad; CPU OS 9_3_1 like Mac OS X) AppleWebKit/601.1.46 (KHTML, like Gecko) Version/9.0 Mobile/13E238 Safari/601.1""#,
        );
        assert_eq!(e.user.as_deref(), Some("username@example.com"));
        assert_eq!((e.status, e.bytes, e.referer), (Some(400), Some(75), None));
    }

    #[test]
    fn common_ipv6_and_dashes() {
        // elastic/beats @ 998504be34f3b652ca46748906d50cbdb4ecdea5,
        // filebeat/module/apache/access/test/test.log, lines 1 and 3.
        let e = one(r#"::1 - - [26/Dec/2016:16:16:29 +0200] "GET /favicon.ico HTTP/1.1" 404 209"#);
        assert_eq!(e.client_ip, ip("::1"));
        assert_eq!((e.status, e.bytes), (Some(404), Some(209)));
        assert_eq!(e.time, civil_micros(2016, 12, 26, 14, 16, 29, 0).unwrap());
        assert_eq!((e.referer, e.user_agent), (None, None));
        // A connection that timed out before a request: request "-", status 408, bytes "-".
        let e = one(r#"::1 - - [26/Dec/2016:16:16:48 +0200] "-" 408 -"#);
        assert_eq!(
            (e.method, e.request, e.status, e.bytes),
            (None, None, Some(408), None)
        );
    }

    #[test]
    fn vhost_combined() {
        // elastic/beats @ 818dfd28a1e8401e0f5bad7d4fff69524151a0e7,
        // filebeat/module/apache/access/test/test-vhost.log (no port after the vhost there).
        let e = one(
            r#"vhost1.domaine.fr 192.168.33.2 - - [26/Dec/2016:16:22:14 +0000] "GET /hello HTTP/1.1" 404 499 "-" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.12; rv:50.0) Gecko/20100101 Firefox/50.0""#,
        );
        assert_eq!(
            (e.vhost.as_deref(), e.server_port, e.client_ip),
            (Some("vhost1.domaine.fr"), None, ip("192.168.33.2"))
        );
        assert_eq!((e.status, e.bytes), (Some(404), Some(499)));
        // Apache's own vhost_combined writes %v:%p; documentation addresses.
        let e = one(
            r#"www.example.org:443 [2001:db8::7]:51234 - - [26/Dec/2016:16:22:14 +0000] "POST /login HTTP/2.0" 302 0 "-" "curl/8.5.0""#,
        );
        assert_eq!(
            (e.vhost.as_deref(), e.server_port),
            (Some("www.example.org"), Some(443))
        );
        assert_eq!(
            (e.client_ip, e.client_port),
            (ip("2001:db8::7"), Some(51234))
        );
    }

    #[test]
    fn escapes_stay_and_quotes_inside_do_not_end_fields() {
        let e = one(
            r#"198.51.100.4 - - [26/Dec/2016:16:22:14 +0000] "GET /q?x=\"a b\" HTTP/1.1" 404 1 "-" "say \"hi\"""#,
        );
        // Apache escapes the quote; the space inside makes the request unsplittable, but the
        // server answered 404, so the line is kept with the request as logged.
        assert_eq!(e.request.as_deref(), Some(r#"GET /q?x=\"a b\" HTTP/1.1"#));
        assert_eq!(e.user_agent.as_deref(), Some(r#"say \"hi\""#));
    }

    #[test]
    fn broken_lines_say_what_is_wrong() {
        let c = utc_ctx(T0);
        let ok =
            r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 200 10 "-" "ua""#;
        assert!(parse_message(ok.as_bytes(), Format::Apache, &c, &mut Vec::new()).is_ok());
        assert_rejects(
            Format::Apache,
            &c,
            [
                (
                    r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 9999 10"#
                        .to_string(),
                    "status 9999 out of range",
                ),
                (
                    r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" OK 10"#
                        .to_string(),
                    "status \"OK\" is not a number",
                ),
                (
                    r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "/a HTTP/1.1" 200 10"#
                        .to_string(),
                    "request line has no method: \"/a HTTP/1.1\" (status 200)",
                ),
                (
                    r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "GET /index.html HTTP/1"#
                        .to_string(),
                    "request line has no closing quote",
                ),
                (
                    r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 200"#
                        .to_string(),
                    "no byte count",
                ),
                (
                    r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 200 1 "http://x/" "Mozil"#
                        .to_string(),
                    "user agent has no closing quote",
                ),
                (
                    r#"203.0.113.999 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 200 1"#
                        .to_string(),
                    "invalid client address \"203.0.113.999\"",
                ),
                // beats' apache test.log line 5: HostnameLookups names are not addresses.
                (
                    r#"monitoring-server - - [29/May/2017:19:02:48 +0000] "GET /status HTTP/1.1" 200 612 "-" "Mozilla/5.0 (Windows NT 6.1; rv:15.0) Gecko/20120716 Firefox/15.0a2" "-""#
                        .to_string(),
                    "invalid client address \"monitoring-server\"",
                ),
                (
                    r#"203.0.113.9 - - [24/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 200 1k"#
                        .to_string(),
                    "bytes \"1k\" is not a number",
                ),
                (
                    r#"203.0.113.9 - - [30/Feb/2015:23:13:42 +0000] "GET /a HTTP/1.1" 200 1"#
                        .to_string(),
                    "bad time [30/Feb/2015:23:13:42 +0000]",
                ),
                (
                    "203.0.113.9 - - [24/Feb/2015:23:13:42 +0000]".to_string(),
                    "no [dd/Mon/yyyy:HH:MM:SS +zone] time followed by a request",
                ),
            ],
        );
    }
}
