//! OpenSSH sshd messages (auth.log / secure), after the syslog envelope:
//!
//! ```text
//! Accepted publickey for drewr from 69.245.39.97 port 34202 ssh2: RSA 01:67:…
//! Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2
//! Invalid user test9 from 52.80.34.196 [port 36060]
//! Disconnected from authenticating user root 203.0.113.5 port 4242 [preauth]
//! Connection closed by 212.47.254.145 [port 22] [preauth]
//! Received disconnect from 52.80.34.196 [port 36060]: 11: Bye Bye [preauth]
//! message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]
//! ```
//!
//! Every sshd message becomes one row; `event` says what it was and the user, method, address
//! and port it names are filled. User names are the client's to choose ("Invalid user admin
//! from 1.2.3.4 port 22 ssh2 from …"), so the address is taken from the *last* ` from ` of a
//! verdict, after the name, where sshd writes it. A message that names an address that does not
//! parse, or is cut before the address, is an error. Messages without a shape read here
//! (pam_unix, `input_userauth_request`, `fatal: …`) are kept as `other` with their text and no
//! address: their text can carry client-chosen words that must not become fields.

use crate::model::{AuthEvent, Event, Micros};

use super::util::{parse_ip, parse_u16, parse_u32, snippet};
use super::{ParseError, bare_tag};

const FORMAT: &str = "sshd";
const QUOTE: usize = 60;

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// The syslog tags sshd logs under (`sshd-session` since OpenSSH 9.8).
pub fn is_tag(app: &str) -> bool {
    app == "sshd" || app == "sshd-session"
}

/// Cheap check used by format detection on bodies without a syslog tag: a bare `sshd[pid]:`
/// prefix.
pub fn looks_like(body: &str) -> bool {
    bare_tag(body).is_some_and(|(p, _, _)| is_tag(p))
}

/// Parses one sshd message into one event. `program` / `pid` come from the syslog tag; a body
/// that still starts with `sshd[pid]: ` (no envelope) supplies them itself.
pub fn parse(
    body: &str,
    default_time: Micros,
    program: Option<&str>,
    pid: Option<u32>,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let mut text = body.trim();
    let (mut program, mut pid) = (program.map(str::to_owned), pid);
    if program.is_none()
        && let Some((p, id, rest)) = bare_tag(text)
    {
        program = Some(p.to_owned());
        pid = id;
        text = rest;
    }
    if text.is_empty() {
        return Err(err("empty sshd message"));
    }
    let mut ev = AuthEvent {
        time: default_time,
        process: program,
        pid,
        event: "other",
        message: text.to_owned(),
        ..AuthEvent::default()
    };
    let mut msg = text;
    // rsyslog's repeat compression: "message repeated 5 times: [ Failed password for …]".
    if let Some(rest) = msg.strip_prefix("message repeated ")
        && let Some((n, inner)) = rest.split_once(" times: [")
    {
        ev.repeats = Some(parse_u32(n).ok_or_else(|| err(format!("bad repeat count {n:?}")))?);
        msg = inner.trim_end_matches(']').trim();
    }
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    let msg = msg.strip_suffix(" [preauth]").unwrap_or(msg);
    read(msg, &mut ev)?;
    out.push(Event::Auth(Box::new(ev)));
    Ok(1)
}

/// Fills `ev` from the message shapes sshd writes.
fn read(msg: &str, ev: &mut AuthEvent) -> Result<(), ParseError> {
    for (verb, event, result) in [
        ("Accepted ", "accepted", Some("success")),
        ("Failed ", "failed", Some("failure")),
        ("Postponed ", "postponed", None),
        ("Partial ", "partial", None),
    ] {
        if let Some(rest) = msg.strip_prefix(verb)
            && let Some((method, who)) = rest.split_once(" for ")
            && !method.contains(' ')
        {
            ev.event = event;
            ev.result = result;
            ev.method = Some(method.to_owned());
            let (user, addr, key) = verdict_source(who)
                .map_err(|why| err(format!("{event} message {why}: {:?}", snippet(msg, QUOTE))))?;
            user_of(user, ev);
            ev.key = key.map(str::to_owned);
            endpoint(addr, ev, true)?;
            return Ok(());
        }
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        ev.event = "invalid_user";
        ev.user_status = Some("invalid");
        let (user, addr) = rest.rsplit_once(" from ").ok_or_else(|| {
            err(format!(
                "invalid_user message without `from <address>` (truncated?): {:?}",
                snippet(msg, QUOTE)
            ))
        })?;
        ev.user = Some(user.to_owned());
        return endpoint(addr, ev, false);
    }
    if let Some(rest) = msg.strip_prefix("maximum authentication attempts exceeded for ") {
        ev.event = "max_auth_tries";
        if let Some((user, addr)) = rest.rsplit_once(" from ") {
            user_of(user, ev);
            endpoint(addr.trim_end_matches(" ssh2"), ev, true)?;
        }
        return Ok(());
    }
    if let Some(rest) = msg.strip_prefix("Connection from ") {
        // "Connection from <ip> port <n> on <local ip> port <n>[ rdomain …]"
        ev.event = "connection";
        let remote = rest.split(" on ").next().unwrap_or(rest);
        return endpoint(remote, ev, true);
    }
    if let Some(rest) = msg.strip_prefix("Received disconnect from ") {
        ev.event = "received_disconnect";
        // "<ip>: 11: text" (old) / "<ip> port <n>:11: text"
        let addr = match rest.find(" port ") {
            Some(i) => {
                let after = rest.get(i + 6..).unwrap_or("");
                let end = after.find(':').unwrap_or(after.len());
                rest.get(..i + 6 + end).unwrap_or(rest)
            }
            None => rest.split(": ").next().unwrap_or(rest),
        };
        return endpoint(addr, ev, false);
    }
    if let Some(rest) = msg.strip_prefix("Did not receive identification string from ") {
        ev.event = "no_identification";
        return endpoint(rest, ev, false);
    }
    for (prefix, event) in [
        ("Disconnected from ", "disconnected"),
        ("Connection closed by ", "connection_closed"),
        ("Connection reset by ", "connection_reset"),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            ev.event = event;
            // "[invalid user X |authenticating user X |user X ]<ip>[ port <n>]"
            let addr = match who_prefix(rest) {
                Some((status, after)) => {
                    ev.user_status = status;
                    // The user name ends at the last space before the address.
                    // The name is the client's: the address is the last word before the last
                    // " port ".
                    let (user, addr) = match after.rfind(" port ") {
                        Some(i) => {
                            let head = after.get(..i).unwrap_or("");
                            let sp = head.rfind(' ').unwrap_or(0);
                            (
                                head.get(..sp).unwrap_or(""),
                                after.get(if sp == 0 { 0 } else { sp + 1 }..).unwrap_or(""),
                            )
                        }
                        None => after.rsplit_once(' ').unwrap_or(("", after)),
                    };
                    ev.user = Some(user.to_owned());
                    addr
                }
                None => rest,
            };
            return endpoint(addr, ev, false);
        }
    }
    Ok(())
}

/// Splits "<user> from <ip> port <n> ssh2[: <info>]" into user, "<ip> port <n>" and info.
/// The user name and some infos (hostbased client user, ruser) are the client's to choose and
/// can spell " from <ip> port <n> ssh2" themselves. The source is the one ` from ` followed by
/// an address, a port and the protocol word; with none, the last ` from ` (so the error says
/// what is wrong with it); with several, there is no telling which is sshd's: error.
fn verdict_source(who: &str) -> Result<(&str, &str, Option<&str>), &'static str> {
    const TRUNCATED: &str = "without `from <address>` (truncated?)";
    let mut found: Option<(usize, usize, Option<usize>)> = None;
    let mut count = 0;
    let mut last = None;
    for (i, _) in who.match_indices(" from ") {
        last = Some(i);
        let rest = who.get(i + 6..).ok_or(TRUNCATED)?;
        let mut it = rest.splitn(4, ' ');
        let (Some(a), Some("port"), Some(p), Some(tail)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let proto_ok = tail == "ssh2"
            || tail == "ssh1"
            || tail.starts_with("ssh2: ")
            || tail.starts_with("ssh1: ");
        if parse_ip(a).is_some() && parse_u16(p).is_some() && proto_ok {
            count += 1;
            let addr_end = i + 6 + a.len() + 6 + p.len();
            let info = tail.find(": ").map(|k| addr_end + 1 + k + 2);
            found = Some((i, addr_end, info));
        }
    }
    match (count, found, last) {
        (1, Some((i, end, info)), _) => Ok((
            who.get(..i).ok_or(TRUNCATED)?,
            who.get(i + 6..end).ok_or(TRUNCATED)?,
            info.and_then(|k| who.get(k..)),
        )),
        (0, _, Some(i)) => {
            let rest = who.get(i + 6..).ok_or(TRUNCATED)?;
            let addr = rest.split(": ").next().unwrap_or(rest);
            Ok((
                who.get(..i).ok_or(TRUNCATED)?,
                addr.trim_end_matches(" ssh2").trim_end_matches(" ssh1"),
                None,
            ))
        }
        (0, _, None) => Err(TRUNCATED),
        _ => Err(
            "names more than one `from <address> port <n>` (a user name or info spelling a source)",
        ),
    }
}

/// "invalid user X" / "authenticating user X" / "user X" in front of an address.
fn who_prefix(s: &str) -> Option<(Option<&'static str>, &str)> {
    if let Some(r) = s.strip_prefix("invalid user ") {
        Some((Some("invalid"), r))
    } else if let Some(r) = s.strip_prefix("authenticating user ") {
        Some((Some("authenticating"), r))
    } else {
        s.strip_prefix("user ").map(|r| (None, r))
    }
}

/// "[invalid user ]<name>" of a verdict.
fn user_of(user: &str, ev: &mut AuthEvent) {
    match user.strip_prefix("invalid user ") {
        Some(u) => {
            ev.user_status = Some("invalid");
            ev.user = Some(u.to_owned());
        }
        None => ev.user = Some(user.to_owned()),
    }
}

/// "<ip>[ port <n>]" → src_ip / src_port. `need_port`: the message always has one.
fn endpoint(s: &str, ev: &mut AuthEvent, need_port: bool) -> Result<(), ParseError> {
    let s = s.trim();
    let (addr, port) = match s.split_once(" port ") {
        Some((a, p)) => (a, Some(p.split(' ').next().unwrap_or(p))),
        None => (s.split(' ').next().unwrap_or(s), None),
    };
    let ip = parse_ip(addr).ok_or_else(|| {
        err(format!(
            "invalid source address {:?} in {} message",
            snippet(addr, QUOTE),
            ev.event
        ))
    })?;
    ev.src_ip = Some(ip);
    match port {
        Some(p) => {
            ev.src_port = Some(parse_u16(p).ok_or_else(|| {
                err(format!(
                    "invalid source port {:?} in {} message",
                    snippet(p, QUOTE),
                    ev.event
                ))
            })?);
        }
        None if need_port => {
            return Err(err(format!(
                "{} message without `port <n>` (truncated?)",
                ev.event
            )));
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, assert_rejects, ip, utc_ctx};
    use super::super::util::civil_micros;
    use super::super::{Format, ParseCtx, parse_message};
    use super::*;

    fn ctx() -> ParseCtx {
        utc_ctx(T0)
    }

    /// The one auth event of a whole syslog line, through auto-detection.
    fn auto(line: &str) -> AuthEvent {
        let mut out = Vec::new();
        let p = parse_message(line.as_bytes(), Format::Auto, &ctx(), &mut out)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!((p.format, p.events), ("sshd", 1), "{line}");
        match out.pop() {
            Some(Event::Auth(a)) => *a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loghub_openssh_lines() {
        // logpai/loghub @ 374038faa4ca122dd7ca0730372c0b78f76f8597, OpenSSH/OpenSSH_2k.log,
        // lines 2, 6, 7, 14, 29, 30 (their structured CSV names the same users and addresses).
        let e =
            auto("Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186");
        assert_eq!(
            (
                e.event,
                e.user.as_deref(),
                e.user_status,
                e.src_ip,
                e.src_port
            ),
            (
                "invalid_user",
                Some("webmaster"),
                Some("invalid"),
                ip("173.234.31.186"),
                None
            )
        );
        assert_eq!((e.process.as_deref(), e.pid), (Some("sshd"), Some(24200)));
        // No year in the stamp: the one closest to the receive time (2024-06-15).
        assert_eq!(e.time, civil_micros(2024, 12, 10, 6, 55, 46, 0).unwrap());
        let e = auto(
            "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
        );
        assert_eq!(
            (e.event, e.result, e.method.as_deref()),
            ("failed", Some("failure"), Some("password"))
        );
        assert_eq!(
            (e.user.as_deref(), e.user_status, e.src_ip, e.src_port),
            (
                Some("webmaster"),
                Some("invalid"),
                ip("173.234.31.186"),
                Some(38926)
            )
        );
        let e = auto(
            "Dec 10 06:55:48 LabSZ sshd[24200]: Connection closed by 173.234.31.186 [preauth]",
        );
        assert_eq!(
            (e.event, e.src_ip, e.src_port),
            ("connection_closed", ip("173.234.31.186"), None)
        );
        let e = auto(
            "Dec 10 07:07:45 LabSZ sshd[24206]: Received disconnect from 52.80.34.196: 11: Bye Bye [preauth]",
        );
        assert_eq!(
            (e.event, e.src_ip),
            ("received_disconnect", ip("52.80.34.196"))
        );
        let e = auto(
            "Dec 10 07:13:43 LabSZ sshd[24227]: Failed password for root from 5.36.59.76 port 42393 ssh2",
        );
        assert_eq!(
            (e.user.as_deref(), e.user_status, e.src_port),
            (Some("root"), None, Some(42393))
        );
        let e = auto(
            "Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]",
        );
        assert_eq!(
            (e.event, e.repeats, e.src_ip, e.src_port),
            ("failed", Some(5), ip("5.36.59.76"), Some(42393))
        );
        // pam_unix lines are kept as `other`, the rhost not read as a source.
        let e = auto(
            "Dec 10 06:55:46 LabSZ sshd[24200]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=173.234.31.186 ",
        );
        assert_eq!((e.event, e.src_ip), ("other", None));
        assert!(e.message.starts_with("pam_unix(sshd:auth)"));
        let e = auto(
            "Dec 10 07:34:33 LabSZ sshd[24301]: Did not receive identification string from 123.235.32.19",
        );
        assert_eq!(
            (e.event, e.src_ip),
            ("no_identification", ip("123.235.32.19"))
        );
    }

    #[test]
    fn accepted_with_keys() {
        // elastic/beats @ d13173e2df5cf5681216723b4aa70c3fbfc0d403,
        // filebeat/module/system/auth/test/secure-rhel7.log.
        let e = auto(
            "Feb 22 16:48:04 slave22 sshd[2805]: Accepted publickey for drewr from 69.245.39.97 port 34202 ssh2: RSA 01:67:32:d9:b3:20:5d:2d:5f:b4:35:c5:a5:8b:0a:5e",
        );
        assert_eq!(
            (e.event, e.result, e.method.as_deref(), e.user.as_deref()),
            (
                "accepted",
                Some("success"),
                Some("publickey"),
                Some("drewr")
            )
        );
        assert_eq!((e.src_ip, e.src_port), (ip("69.245.39.97"), Some(34202)));
        assert_eq!(
            e.key.as_deref(),
            Some("RSA 01:67:32:d9:b3:20:5d:2d:5f:b4:35:c5:a5:8b:0a:5e")
        );
        // elastic/beats @ 549c1de6e71f2c08cfc41b1363baf0107b4ed6ff,
        // filebeat/module/system/auth/test/test.log, line 2.
        let e = auto(
            "Feb 23 00:13:35 localhost sshd[7483]: Accepted password for vagrant from 192.168.33.1 port 58803 ssh2",
        );
        assert_eq!(
            (e.method.as_deref(), e.user.as_deref(), e.src_port, e.key),
            (Some("password"), Some("vagrant"), Some(58803), None)
        );
    }

    #[test]
    fn newer_openssh_shapes_and_ipv6() {
        // Shapes of OpenSSH ≥ 7.5 / 9.8 (`sshd-session`), documentation addresses.
        let e = auto(
            "<38>Jun 15 11:00:00 bastion sshd-session[901]: Accepted publickey for deploy from 2001:db8:85a3::8a2e:370:7334 port 50022 ssh2: ED25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        );
        assert_eq!(e.process.as_deref(), Some("sshd-session"));
        assert_eq!(
            (e.src_ip, e.src_port),
            (ip("2001:db8:85a3::8a2e:370:7334"), Some(50022))
        );
        assert_eq!(
            e.key.as_deref(),
            Some("ED25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")
        );
        let e = auto(
            "Jun 15 11:00:01 bastion sshd[902]: Disconnected from authenticating user root 2001:db8::66 port 4242 [preauth]",
        );
        assert_eq!(
            (e.event, e.user.as_deref(), e.user_status),
            ("disconnected", Some("root"), Some("authenticating"))
        );
        assert_eq!((e.src_ip, e.src_port), (ip("2001:db8::66"), Some(4242)));
        let e = auto(
            "Jun 15 11:00:02 bastion sshd[903]: Connection closed by invalid user admin admin 198.51.100.8 port 60001 [preauth]",
        );
        assert_eq!(
            (e.user.as_deref(), e.user_status, e.src_port),
            (Some("admin admin"), Some("invalid"), Some(60001))
        );
        let e = auto(
            "Jun 15 11:00:03 bastion sshd[904]: Invalid user oracle from 198.51.100.8 port 60002",
        );
        assert_eq!(e.src_port, Some(60002));
        let e = auto(
            "Jun 15 11:00:04 bastion sshd[905]: Received disconnect from 198.51.100.8 port 60003:11: disconnected by user",
        );
        assert_eq!((e.src_ip, e.src_port), (ip("198.51.100.8"), Some(60003)));
        let e = auto(
            "Jun 15 11:00:05 bastion sshd[906]: Connection from 198.51.100.8 port 60004 on 192.0.2.1 port 22 rdomain \"\"",
        );
        assert_eq!((e.event, e.src_port), ("connection", Some(60004)));
        // A user name chosen to look like an address: the real one is the last `from`.
        let e = auto(
            "Jun 15 11:00:06 bastion sshd[907]: Failed password for invalid user x from 192.0.2.250 port 1 ssh2 from 198.51.100.9 port 60005 ssh2",
        );
        assert_eq!(
            (e.user.as_deref(), e.src_ip, e.src_port),
            (
                Some("x from 192.0.2.250 port 1 ssh2"),
                ip("198.51.100.9"),
                Some(60005)
            )
        );
        // fail2ban/fail2ban @ 5d6cead99694efae8710ab12cd68a924a83d7396,
        // fail2ban/tests/files/logs/sshd: injections through the user name and the ruser info;
        // failJSON says the host is 127.0.0.1 in both.
        let e = auto(
            "Nov 11 08:04:51 redbamboo sshd[2737]: Failed password for invalid user from 10.10.1.1 from 127.0.0.1 port 58946 ssh2",
        );
        assert_eq!(
            (e.user.as_deref(), e.src_ip, e.src_port),
            (Some("from 10.10.1.1"), ip("127.0.0.1"), Some(58946))
        );
        let e = auto(
            "Sep 29 17:15:02 spaceman sshd[12946]: Failed password for user from 127.0.0.1 port 20000 ssh1: ruser from 1.2.3.4",
        );
        assert_eq!(
            (e.user.as_deref(), e.src_ip, e.key.as_deref()),
            (Some("user"), ip("127.0.0.1"), Some("ruser from 1.2.3.4"))
        );
        let e = auto(
            "Sep 29 17:15:02 spaceman sshd[12946]: Failed hostbased for dan from 127.0.0.1 port 45785 ssh2: RSA 8c:e3:aa:0f:64:51:02:f7:14:79:89:3f:65:84:7c:30, client user \"dan\", client host \"localhost.localdomain\"",
        );
        assert_eq!(
            (e.method.as_deref(), e.src_port),
            (Some("hostbased"), Some(45785))
        );
        // Same file: the address follows `error: ` and the reason comes from the client.
        let e = auto(
            "Nov 23 21:50:37 myhost sshd[21810]: error: maximum authentication attempts exceeded for root from 61.0.0.1 port 49940 ssh2 [preauth]",
        );
        assert_eq!(
            (e.event, e.user.as_deref(), e.src_ip, e.src_port),
            ("max_auth_tries", Some("root"), ip("61.0.0.1"), Some(49940))
        );
        // Bare lines with the tag and without.
        let mut out = Vec::new();
        parse(
            "sshd[7]: Accepted password for a from 192.0.2.7 port 2 ssh2",
            T0,
            None,
            None,
            &mut out,
        )
        .unwrap();
        let Some(Event::Auth(e)) = out.pop() else {
            panic!()
        };
        assert_eq!((e.pid, e.src_ip, e.time), (Some(7), ip("192.0.2.7"), T0));
    }

    #[test]
    fn broken_lines_say_what_is_wrong() {
        assert_rejects(
            Format::Sshd,
            &ctx(),
            [
                (
                    "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.286 port 38926 ssh2",
                    "invalid source address \"173.234.31.286\" in failed message",
                ),
                (
                    "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for root from 173.234.31.186 port 389260 ssh2",
                    "invalid source port \"389260\" in failed message",
                ),
                (
                    "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for root fr",
                    "failed message without `from <address>` (truncated?)",
                ),
                (
                    "Dec 10 06:55:48 LabSZ sshd[24200]: Accepted password for root from 173.234.31.186",
                    "accepted message without `port <n>` (truncated?)",
                ),
                (
                    // A name and an info that both spell a source: no telling which is real.
                    "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for a from 192.0.2.1 port 1 ssh2: x from 192.0.2.2 port 2 ssh2",
                    "failed message names more than one `from <address> port <n>`",
                ),
                (
                    "Dec 10 06:55:48 LabSZ sshd[24200]: Connection closed by ns.example.net [preauth]",
                    "invalid source address \"ns.example.net\" in connection_closed message",
                ),
                ("Dec 10 06:55:48 LabSZ sshd[24200]: ", "empty"),
            ],
        );
    }
}
