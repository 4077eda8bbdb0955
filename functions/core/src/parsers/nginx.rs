//! nginx access logs. The CLF part is Apache's (`apache::parse_clf`); nginx adds fields after
//! the user agent in its stock and commonly documented formats:
//!
//! ```text
//! combined   $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! main       … "$http_user_agent" "$http_x_forwarded_for"           (the stock nginx.conf)
//! timed      … "$http_x_forwarded_for" $request_time $upstream_response_time
//! upstream   … rt=$request_time uct="…" uht="…" urt="$upstream_response_time"   (nginx.com blog)
//! ```
//!
//! After the user agent: the first quoted field is X-Forwarded-For; `rt=` / `request_time=`
//! and `urt=` / `upstream_response_time=` are read by name; otherwise the first two bare
//! decimals are the request and upstream times. `$upstream_response_time` lists one time per
//! upstream tried (`0.002, 0.004`, or `:` across upstream groups): the first is kept. Fields
//! that are none of these are ignored: custom formats vary, the CLF part does not.

use crate::model::{Event, HttpAccess};

use super::ParseError;
use super::apache::{parse_clf, quoted};
use super::util::parse_u64;

const FORMAT: &str = "nginx";

/// A CLF line found by detection, with no tag or named format to say which server wrote it:
/// read as nginx when it has fields after the user agent (nginx's `main` and timed formats),
/// else as Apache. `server` stays unknown. Returns whether it was read as nginx.
pub(crate) fn parse_detected(line: &str, out: &mut Vec<Event>) -> Result<bool, ParseError> {
    let (mut ev, tail) = parse_clf(line, None, super::apache::FORMAT)?;
    let nginx = !tail.is_empty();
    if nginx {
        extras(tail, &mut ev);
    }
    out.push(Event::Http(Box::new(ev)));
    Ok(nginx)
}

/// Parses one nginx access log line into one event.
pub fn parse(
    line: &str,
    server: Option<&'static str>,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let (mut ev, tail) = parse_clf(line, server, FORMAT)?;
    extras(tail, &mut ev);
    out.push(Event::Http(Box::new(ev)));
    Ok(1)
}

fn extras(mut tail: &str, ev: &mut HttpAccess) {
    let mut bare = 0;
    loop {
        tail = tail.trim_start();
        if tail.is_empty() {
            break;
        }
        if tail.starts_with('"') {
            let Some((v, rest)) = quoted(tail) else {
                break;
            };
            if ev.forwarded_for.is_none() && bare == 0 {
                ev.forwarded_for = (v != "-" && !v.is_empty()).then(|| v.to_owned());
            }
            tail = rest;
            continue;
        }
        let (tok, rest) = tail.split_once(' ').unwrap_or((tail, ""));
        tail = rest;
        if let Some((k, v)) = tok.split_once('=') {
            let v = v.trim_matches('"');
            match k {
                "rt" | "request_time" => ev.request_time_ms = seconds_ms(v),
                "urt" | "upstream_response_time" => ev.upstream_time_ms = first_time(v),
                _ => {}
            }
        } else if let Some(ms) = first_time(tok) {
            match bare {
                0 => ev.request_time_ms = Some(ms),
                1 => ev.upstream_time_ms = Some(ms),
                _ => {}
            }
            bare += 1;
        } else if tok == "-" && bare > 0 {
            // `$upstream_response_time` is `-` when no upstream was asked.
            bare += 1;
        }
    }
}

/// The first time of an upstream list (`0.002, 0.004` / `0.002 : 0.004` / `0.002,`).
fn first_time(v: &str) -> Option<u64> {
    let first = v
        .split([',', ':', ' '])
        .find(|p| !p.trim().is_empty())?
        .trim();
    seconds_ms(first)
}

/// `1.234` seconds (nginx prints milliseconds) → 1234 ms.
fn seconds_ms(v: &str) -> Option<u64> {
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = parse_u64(s)?;
    let mut ms = 0u64;
    for (i, d) in frac.bytes().take(3).enumerate() {
        ms += u64::from(d - b'0') * [100, 10, 1][i];
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, assert_rejects, ip, utc_ctx};
    use super::super::util::civil_micros;
    use super::super::{Format, parse_message};
    use super::*;

    fn one(line: &str) -> HttpAccess {
        let mut out = Vec::new();
        assert_eq!(parse(line, Some("nginx"), &mut out), Ok(1), "{line}");
        match out.pop() {
            Some(Event::Http(h)) => *h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn main_format_with_forwarded_for() {
        // elastic/beats @ 77cd4354b1b702289f4c6dfb501dc2a507e43a1a,
        // filebeat/module/nginx/access/test/test.log, line 2 (nginx's stock `main`).
        let e = one(
            r#"172.17.0.1 - - [29/May/2017:19:02:48 +0000] "GET /stringpatch HTTP/1.1" 404 612 "-" "Mozilla/5.0 (Windows NT 6.1; rv:15.0) Gecko/20120716 Firefox/15.0a2" "-""#,
        );
        assert_eq!(e.client_ip, ip("172.17.0.1"));
        assert_eq!(e.time, civil_micros(2017, 5, 29, 19, 2, 48, 0).unwrap());
        assert_eq!(
            (e.method.as_deref(), e.path.as_deref()),
            (Some("GET"), Some("/stringpatch"))
        );
        assert_eq!((e.status, e.bytes), (Some(404), Some(612)));
        assert_eq!((e.referer, e.forwarded_for), (None, None));
        assert_eq!(e.server, Some("nginx"));
        // Same file, line 4: combined.
        let e = one(
            r#"81.2.69.143 - - [07/Dec/2016:11:05:07 +0100] "GET /ocelot HTTP/1.1" 200 571 "-" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36""#,
        );
        assert_eq!(e.time, civil_micros(2016, 12, 7, 10, 5, 7, 0).unwrap());
        assert_eq!((e.status, e.bytes), (Some(200), Some(571)));
        // A forwarded-for list is kept as logged.
        let e = one(
            r#"203.0.113.20 - - [07/Dec/2016:11:05:07 +0100] "GET / HTTP/2.0" 200 5 "-" "curl/8.5.0" "198.51.100.1, 2001:db8::9""#,
        );
        assert_eq!(
            e.forwarded_for.as_deref(),
            Some("198.51.100.1, 2001:db8::9")
        );
    }

    #[test]
    fn refused_requests_are_kept_with_what_the_client_sent() {
        // fail2ban/fail2ban @ dca59a12b4916e1fa4fad167b21fa4953e9d88e1,
        // fail2ban/tests/files/logs/nginx-bad-request: nginx answers 400 and logs the bytes.
        let e = one(
            r#"12.34.56.78 - - [20/Jan/2015:19:53:28 +0100] "\x03\x00\x00/*\xE0\x00\x00\x00\x00\x00Cookie: mstshash=Administr" 400 47 "-" "-" "-""#,
        );
        assert_eq!((e.method, e.status, e.bytes), (None, Some(400), Some(47)));
        assert_eq!(
            e.request.as_deref(),
            Some(r"\x03\x00\x00/*\xE0\x00\x00\x00\x00\x00Cookie: mstshash=Administr")
        );
        let e = one(r#"12.34.56.78 - root [20/Jan/2015:19:53:28 +0100] "" 400 47 "-" "-" "-""#);
        assert_eq!(
            (e.user.as_deref(), e.request, e.status),
            (Some("root"), None, Some(400))
        );
        let e = one(r#"12.34.56.78 - - [20/Jan/2015:19:54:28 +0100] "HELP" 400 47 "-" "-" "-""#);
        assert_eq!(e.request.as_deref(), Some("HELP"));
        let e = one(
            r#"7.8.9.10 - root [20/Jan/2015:01:17:07 +0100] "CONNECT 123.123.123.123 HTTP/1.1" 400 162 "-" "-" "-""#,
        );
        assert_eq!(
            (e.method.as_deref(), e.path.as_deref(), e.request),
            (Some("CONNECT"), Some("123.123.123.123"), None)
        );
    }

    #[test]
    fn request_and_upstream_times() {
        // The nginx.com "upstream_time" format (rt= uct= uht= urt=), documentation addresses.
        let e = one(
            r#"2001:db8:1::5 - - [12/Mar/2024:10:00:00 +0000] "GET /api HTTP/1.1" 200 12 "-" "k6/0.49" rt=1.204 uct="0.000" uht="1.200" urt="1.201, 0.003""#,
        );
        assert_eq!(e.client_ip, ip("2001:db8:1::5"));
        assert_eq!(
            (e.request_time_ms, e.upstream_time_ms),
            (Some(1204), Some(1201))
        );
        // main + $request_time $upstream_response_time as bare fields.
        let e = one(
            r#"198.51.100.23 - - [12/Mar/2024:10:00:00 +0000] "GET / HTTP/1.1" 502 150 "-" "ua" "-" 0.051 0.050 : 0.001"#,
        );
        assert_eq!(
            (e.request_time_ms, e.upstream_time_ms),
            (Some(51), Some(50))
        );
        // No upstream asked: "-".
        let e = one(
            r#"198.51.100.23 - - [12/Mar/2024:10:00:00 +0000] "GET / HTTP/1.1" 304 0 "-" "ua" "-" 0.000 -"#,
        );
        assert_eq!((e.request_time_ms, e.upstream_time_ms), (Some(0), None));
        assert_eq!(seconds_ms("12"), Some(12_000));
        assert_eq!(seconds_ms("0.5"), Some(500));
        assert_eq!(seconds_ms("x.5"), None);
    }

    #[test]
    fn syslog_wrapped_and_detected() {
        let c = utc_ctx(T0);
        // nginx `access_log syslog:server=…` sends RFC 3164 with the tag `nginx`.
        let m = r#"<190>Jun 15 11:59:59 web1 nginx: 2001:db8::2 - alice [15/Jun/2024:11:59:58 +0000] "GET /x HTTP/1.1" 200 3 "-" "ua""#;
        let mut out = Vec::new();
        let p = parse_message(m.as_bytes(), Format::Auto, &c, &mut out).unwrap();
        assert_eq!((p.format, p.host), ("nginx", Some("web1")));
        let Some(Event::Http(e)) = out.pop() else {
            panic!()
        };
        assert_eq!((e.server, e.client_ip), (Some("nginx"), ip("2001:db8::2")));
        // The body's own time wins over the syslog stamp.
        assert_eq!(e.time, civil_micros(2024, 6, 15, 11, 59, 58, 0).unwrap());
        // Bare `main` lines go to nginx, bare combined to apache; neither names the server.
        let bare =
            r#"172.17.0.1 - - [29/May/2017:19:02:48 +0000] "GET /s HTTP/1.1" 404 612 "-" "ua" "-""#;
        let p = parse_message(bare.as_bytes(), Format::Auto, &c, &mut out).unwrap();
        assert_eq!(p.format, "nginx");
        assert!(matches!(
            out.pop(),
            Some(Event::Http(h)) if h.server.is_none()
        ));
        let bare =
            r#"172.17.0.1 - - [29/May/2017:19:02:48 +0000] "GET /s HTTP/1.1" 404 612 "-" "ua""#;
        let p = parse_message(bare.as_bytes(), Format::Auto, &c, &mut out).unwrap();
        assert_eq!(p.format, "apache");
        assert_rejects(
            Format::Nginx,
            &c,
            [(
                // beats nginx test.log line 1: a proxy list where the client should be.
                r#"10.0.0.2, 10.0.0.1, 127.0.0.1 - - [07/Dec/2016:11:05:07 +0100] "GET /ocelot HTTP/1.1" 200 571 "-" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.12; rv:49.0) Gecko/20100101 Firefox/49.0""#,
                "invalid client address \"10.0.0.2, 10.0.0.1, 127.0.0.1 - -\"",
            )],
        );
    }
}
