//! Postfix messages, after the syslog envelope (`postfix/smtpd[123]: …`):
//!
//! ```text
//! smtpd    connect from host[ip]            disconnect from host[ip] ehlo=1 … commands=5
//!          QID: client=host[ip][, sasl_method=PLAIN, sasl_username=u]
//!          NOQUEUE: reject: RCPT from host[ip]: 554 5.7.1 <…>: Relay access denied; from=<…> to=<…> proto=ESMTP helo=<…>
//!          lost connection after DATA from host[ip]         warning: host[ip]: SASL LOGIN authentication failed: …
//! cleanup  QID: message-id=<…>
//! qmgr     QID: from=<…>, size=5360, nrcpt=1 (queue active)          QID: removed
//! smtp     QID: to=<…>, [orig_to=<…>,] relay=host[ip]:25, delay=3.6, delays=…, dsn=2.0.0, status=sent (250 …)
//! ```
//!
//! Every message of a Postfix program becomes one row with the message text; `event` and the
//! fields say what it was. `key=value` lists are read left to right, so a value cannot be read
//! as a key (`from=<a to=<b>@x>` is one sender). Client addresses are read only where Postfix
//! writes them (after `connect from`, `client=`, `… from` of rejections and lost connections,
//! right after `warning: `); an address there that does not parse is an error, `unknown` is
//! "not known".

use std::net::IpAddr;

use crate::model::{Event, MailEvent, Micros};

use super::util::{parse_ip, parse_u16, parse_u32, parse_u64, snippet};
use super::{ParseError, bare_tag};

const FORMAT: &str = "postfix";
const QUOTE: usize = 60;

fn err(reason: impl Into<String>) -> ParseError {
    ParseError::new(FORMAT, reason)
}

/// Postfix syslog tags: `postfix/smtpd`, `postfix-incoming/smtpd` (multi-instance), ….
pub fn is_tag(app: &str) -> bool {
    // "postfix" holds no '/', so the prefix test first turns other tags away without a search.
    app.starts_with("postfix")
        && app
            .split_once('/')
            .is_some_and(|(a, p)| a.starts_with("postfix") && !p.is_empty())
}

/// Cheap check used by format detection on bodies without a syslog tag.
pub fn looks_like(body: &str) -> bool {
    bare_tag(body).is_some_and(|(p, _, _)| is_tag(p))
}

/// Parses one Postfix message into one event. `program` / `pid` come from the syslog tag; a
/// body that still starts with `postfix/…[pid]: ` supplies them itself.
pub fn parse(
    body: &str,
    default_time: Micros,
    program: Option<&str>,
    pid: Option<u32>,
    out: &mut Vec<Event>,
) -> Result<usize, ParseError> {
    let mut text = body.trim();
    let (mut program, mut pid) = (program, pid);
    if program.is_none()
        && let Some((p, id, rest)) = bare_tag(text)
    {
        program = Some(p);
        pid = id;
        text = rest;
    }
    if text.is_empty() {
        return Err(err("empty Postfix message"));
    }
    let (queue_id, msg) = match queue_id(text) {
        Some((q, rest)) => (Some(q), rest),
        None => (None, text),
    };
    let mut ev = MailEvent {
        time: default_time,
        process: program.map(str::to_owned),
        pid,
        queue_id: queue_id.map(str::to_owned),
        event: "other",
        message: msg.to_owned(),
        ..MailEvent::default()
    };
    read(msg, &mut ev)?;
    out.push(Event::Mail(Box::new(ev)));
    Ok(1)
}

/// `4104E3D: …` / `NOQUEUE: …` / long ids (`4N1ZCt0sBLz9rx4: …`): the id and what follows.
fn queue_id(s: &str) -> Option<(&str, &str)> {
    let (id, rest) = s.split_once(": ")?;
    let ok = id == "NOQUEUE"
        || ((5..=20).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric())
            && id.bytes().any(|b| b.is_ascii_digit())
            && id.bytes().any(|b| b.is_ascii_uppercase()));
    ok.then_some((id, rest))
}

fn read(msg: &str, ev: &mut MailEvent) -> Result<(), ParseError> {
    if let Some(rest) = msg.strip_prefix("connect from ") {
        ev.event = "connect";
        return client_at(rest, ev);
    }
    if let Some(rest) = msg.strip_prefix("disconnect from ") {
        ev.event = "disconnect";
        return client_at(rest, ev);
    }
    if let Some(rest) = msg.strip_prefix("lost connection after ") {
        ev.event = "lost_connection";
        return match rest.split_once(" from ") {
            Some((_, c)) => client_at(c, ev),
            None => Err(err(format!(
                "lost connection without `from host[address]`: {:?}",
                snippet(msg, QUOTE)
            ))),
        };
    }
    if let Some(rest) = msg.strip_prefix("reject: ") {
        return reject(rest, ev);
    }
    if let Some(rest) = msg
        .strip_prefix("milter-reject: ")
        .or_else(|| msg.strip_prefix("milter-discard: "))
    {
        return reject(rest, ev);
    }
    if let Some(rest) = msg.strip_prefix("warning: ") {
        ev.event = "warning";
        // "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: …"
        if let Some((head, _)) = rest.split_once(": ")
            && head.ends_with(']')
            && !head.contains(' ')
        {
            return client_at(head, ev);
        }
        return Ok(());
    }
    if msg == "removed" {
        ev.event = "removed";
        return Ok(());
    }
    if ev.queue_id.is_some() && msg.contains('=') {
        let pairs = pairs(msg);
        let has = |k: &str| pairs.iter().any(|(key, _)| *key == k);
        ev.event = if has("client") {
            "client"
        } else if has("message-id") {
            "message_id"
        } else if has("to") && (has("status") || has("relay")) {
            "delivery"
        } else if has("uid") {
            "pickup"
        } else if has("from") {
            "queued"
        } else {
            "other"
        };
        for (k, v) in &pairs {
            apply(k, v, ev)?;
        }
        if let Some(st) = pairs.iter().find(|(k, _)| *k == "status").map(|(_, v)| *v)
            && let Some(i) = msg.find(&format!("status={st} ("))
        {
            let reply = msg.get(i + 8 + st.len()..).unwrap_or("").trim();
            ev.response = Some(
                reply
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or(reply)
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// `CMD from host[ip]: 554 5.7.1 <…>: text; from=<…> to=<…> proto=… helo=<…>`
fn reject(rest: &str, ev: &mut MailEvent) -> Result<(), ParseError> {
    ev.event = "reject";
    ev.status = Some("reject".into());
    let (_, after) = rest.split_once(" from ").ok_or_else(|| {
        err(format!(
            "reject without `from host[address]`: {:?}",
            snippet(rest, QUOTE)
        ))
    })?;
    let (client, text) = after.split_once("]: ").map_or((after, ""), |(c, t)| (c, t));
    client_at(&format!("{client}]"), ev)?;
    // The reply, then `; key=value …` Postfix appends: the last "; from=" / "; proto=".
    let cut = text
        .rfind("; from=")
        .or_else(|| text.rfind("; proto="))
        .or_else(|| text.rfind("; to="));
    let (reply, tail) = match cut {
        Some(i) => (
            text.get(..i).unwrap_or(text),
            text.get(i + 2..).unwrap_or(""),
        ),
        None => (text, ""),
    };
    ev.response = Some(reply.trim_end_matches(';').to_owned()).filter(|r| !r.is_empty());
    // "554 5.7.1 <…>: …" (smtpd) or "5.7.1 Blocked …" (milter).
    ev.dsn = reply
        .split(' ')
        .take(2)
        .find(|d| is_dsn(d))
        .map(str::to_owned);
    for (k, v) in pairs(tail) {
        match k {
            "from" | "to" | "helo" => apply(k, v, ev)?,
            _ => {}
        }
    }
    Ok(())
}

/// `key=value` pairs, left to right: values are `<…>` (up to `>`) or run to `, ` / ` `; the
/// list ends at the first word that is not `key=` (a `(comment)`).
fn pairs(s: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest.get(..eq).unwrap_or("");
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
        {
            break;
        }
        let after = rest.get(eq + 1..).unwrap_or("");
        let (val, next) = if after.starts_with('<') {
            match after.find('>') {
                Some(i) => (
                    after.get(..=i).unwrap_or(after),
                    after.get(i + 1..).unwrap_or(""),
                ),
                None => (after, ""),
            }
        } else {
            let end = after.find([',', ' ']).unwrap_or(after.len());
            (
                after.get(..end).unwrap_or(after),
                after.get(end..).unwrap_or(""),
            )
        };
        out.push((key, val));
        rest = next.trim_start_matches(',').trim_start();
    }
    out
}

fn angle(v: &str) -> String {
    v.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(v)
        .to_owned()
}

fn is_dsn(d: &str) -> bool {
    let mut it = d.split('.');
    let ok = |p: Option<&str>, max: usize| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(d.as_bytes().first(), Some(b'2' | b'4' | b'5'))
        && ok(it.next(), 1)
        && ok(it.next(), 3)
        && ok(it.next(), 3)
        && it.next().is_none()
}

fn apply(k: &str, v: &str, ev: &mut MailEvent) -> Result<(), ParseError> {
    let num = |what: &str| err(format!("{what} {:?} is not a number", snippet(v, QUOTE)));
    match k {
        "client" => client_at(v, ev)?,
        "from" => ev.from = Some(angle(v)),
        "to" => ev.to = Some(angle(v)),
        "orig_to" => ev.orig_to = Some(angle(v)),
        "helo" => ev.helo = Some(angle(v)),
        "message-id" => ev.message_id = Some(angle(v)),
        "sasl_username" => ev.sasl_username = Some(v.to_owned()),
        "status" => ev.status = Some(v.to_owned()),
        "size" => ev.size = Some(parse_u64(v).ok_or_else(|| num("size"))?),
        "nrcpt" => ev.nrcpt = Some(parse_u32(v).ok_or_else(|| num("nrcpt"))?),
        "delay" => ev.delay_ms = Some(seconds_ms(v).ok_or_else(|| num("delay"))?),
        "dsn" => {
            if !is_dsn(v) {
                return Err(err(format!("invalid dsn {:?}", snippet(v, QUOTE))));
            }
            ev.dsn = Some(v.to_owned());
        }
        "relay" => relay(v, ev)?,
        _ => {}
    }
    Ok(())
}

/// `relay=host[ip]:port`, or `none` / `local` / a transport name.
fn relay(v: &str, ev: &mut MailEvent) -> Result<(), ParseError> {
    let Some(open) = v.find('[') else {
        ev.relay_host = Some(v.to_owned());
        return Ok(());
    };
    let (host, ip, port) = host_addr(v, open)
        .ok_or_else(|| err(format!("invalid relay address {:?}", snippet(v, QUOTE))))?;
    ev.relay_host = Some(host.to_owned());
    ev.relay_ip = ip;
    ev.relay_port = port;
    Ok(())
}

/// `host[ip][:port]` with the `[` at `open` → (host, ip, port); `unknown` is no address.
fn host_addr(s: &str, open: usize) -> Option<(&str, Option<IpAddr>, Option<u16>)> {
    let host = s.get(..open)?;
    let after = s.get(open + 1..)?;
    let close = after.find(']')?;
    let addr = after.get(..close)?;
    let addr = addr.strip_prefix("IPv6:").unwrap_or(addr);
    let ip = if addr == "unknown" {
        None
    } else {
        Some(parse_ip(addr)?)
    };
    let tail = after.get(close + 1..)?;
    let port = match tail.strip_prefix(':') {
        Some(p) => {
            let p = p.split([' ', ',', ':']).next().unwrap_or(p);
            Some(parse_u16(p)?)
        }
        None => None,
    };
    Some((host, ip, port))
}

/// The client `host[ip][:port]` at the start of `s`.
fn client_at(s: &str, ev: &mut MailEvent) -> Result<(), ParseError> {
    let s = s.trim_start();
    let word = s.split([' ', ',']).next().unwrap_or(s);
    let open = word.find('[').ok_or_else(|| {
        err(format!(
            "no client host[address] in {:?}",
            snippet(s, QUOTE)
        ))
    })?;
    let (host, ip, port) = host_addr(word, open)
        .ok_or_else(|| err(format!("invalid client address {:?}", snippet(word, QUOTE))))?;
    ev.client_host = Some(host.to_owned());
    ev.client_ip = ip;
    ev.client_port = port;
    Ok(())
}

/// Postfix delays: seconds with a fraction (`3.6`, `0.57`, `11`) → ms.
fn seconds_ms(v: &str) -> Option<u64> {
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = parse_u64(s)?.checked_mul(1000)?;
    for (i, d) in frac.bytes().take(3).enumerate() {
        ms += u64::from(d - b'0') * [100, 10, 1][i];
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{T0, assert_rejects, ip, utc_ctx};
    use super::super::util::civil_micros;
    use super::super::{Format, parse_message};
    use super::*;

    /// The one mail event of a bare Postfix message text as `program` logged it.
    fn msg(program: &str, text: &str) -> MailEvent {
        let mut out = Vec::new();
        parse(text, T0, Some(program), Some(1), &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
        match out.pop() {
            Some(Event::Mail(m)) => *m,
            other => panic!("{other:?}"),
        }
    }

    fn auto(line: &str) -> MailEvent {
        let mut out = Vec::new();
        let p = parse_message(line.as_bytes(), Format::Auto, &utc_ctx(T0), &mut out)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!((p.format, p.events), ("postfix", 1), "{line}");
        match out.pop() {
            Some(Event::Mail(m)) => *m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grok_pattern_test_lines() {
        // whyscream/postfix-grok-patterns @ 74a52485ec03ca1a23a35168a31dd344a70af6b7,
        // test/POSTFIX_SMTP.log, POSTFIX_SMTPD.log, POSTFIX_QMGR.log, POSTFIX_CLEANUP.log.
        let e = msg(
            "postfix/smtp",
            "7EE668039: to=<admin@example.com>, relay=127.0.0.1[127.0.0.1]:2525, delay=3.6, delays=0.2/0.02/0.04/3.3, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 153053D)",
        );
        assert_eq!(
            (e.event, e.queue_id.as_deref(), e.to.as_deref()),
            ("delivery", Some("7EE668039"), Some("admin@example.com"))
        );
        assert_eq!(
            (e.relay_host.as_deref(), e.relay_ip, e.relay_port),
            (Some("127.0.0.1"), ip("127.0.0.1"), Some(2525))
        );
        assert_eq!(
            (e.delay_ms, e.dsn.as_deref(), e.status.as_deref()),
            (Some(3600), Some("2.0.0"), Some("sent"))
        );
        assert_eq!(
            e.response.as_deref(),
            Some("250 2.0.0 Ok: queued as 153053D")
        );
        assert_eq!(
            (e.client_ip, e.process.as_deref()),
            (None, Some("postfix/smtp"))
        );
        let e = msg(
            "postfix/smtp",
            "0D9633D: to=<jos@example.com>, orig_to=<bestuur@example.com>, relay=mail1.example.net[10.74.103.11]:25, delay=11, delays=5.4/0.06/5.1/0.03, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as F12DF84004)",
        );
        assert_eq!(
            (
                e.orig_to.as_deref(),
                e.relay_host.as_deref(),
                e.relay_ip,
                e.delay_ms
            ),
            (
                Some("bestuur@example.com"),
                Some("mail1.example.net"),
                ip("10.74.103.11"),
                Some(11_000)
            )
        );
        let e = msg(
            "postfix/smtpd",
            "connect from 061238241086.static.ctinets.com[61.238.241.86]",
        );
        assert_eq!(
            (e.event, e.client_host.as_deref(), e.client_ip),
            (
                "connect",
                Some("061238241086.static.ctinets.com"),
                ip("61.238.241.86")
            )
        );
        let e = msg(
            "postfix/smtpd",
            "4104E3D: client=061238241086.static.ctinets.com[61.238.241.86]",
        );
        assert_eq!(
            (e.event, e.queue_id.as_deref(), e.client_ip),
            ("client", Some("4104E3D"), ip("61.238.241.86"))
        );
        let e = msg(
            "postfix/smtpd",
            "NOQUEUE: reject: RCPT from 061238241086.static.ctinets.com[61.238.241.86]: 550 5.1.1 <toernooicommissie@example.com>: Recipient address rejected: User unknown in virtual mailbox table; from=<wumt5@cchfdc.com> to=<toernooicommissie@example.com> proto=ESMTP helo=<ecsolved.com>",
        );
        assert_eq!(
            (e.event, e.queue_id.as_deref(), e.status.as_deref()),
            ("reject", Some("NOQUEUE"), Some("reject"))
        );
        assert_eq!(
            (
                e.client_ip,
                e.dsn.as_deref(),
                e.from.as_deref(),
                e.to.as_deref()
            ),
            (
                ip("61.238.241.86"),
                Some("5.1.1"),
                Some("wumt5@cchfdc.com"),
                Some("toernooicommissie@example.com")
            )
        );
        assert_eq!(e.helo.as_deref(), Some("ecsolved.com"));
        assert_eq!(
            e.response.as_deref(),
            Some(
                "550 5.1.1 <toernooicommissie@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
            )
        );
        let e = msg(
            "postfix/smtpd",
            "lost connection after STARTTLS from unknown[72.13.58.7]",
        );
        assert_eq!(
            (e.event, e.client_host.as_deref(), e.client_ip),
            ("lost_connection", Some("unknown"), ip("72.13.58.7"))
        );
        let e = msg(
            "postfix/qmgr",
            "0F5383D: from=<owner-postfix-users@postfix.org>, size=5360, nrcpt=1 (queue active)",
        );
        assert_eq!(
            (e.event, e.from.as_deref(), e.size, e.nrcpt),
            (
                "queued",
                Some("owner-postfix-users@postfix.org"),
                Some(5360),
                Some(1)
            )
        );
        assert_eq!(msg("postfix/qmgr", "0F5383D: removed").event, "removed");
        let e = msg(
            "postfix/cleanup",
            "0F5383D: message-id=<544D2523.30609@rhsoft.net>",
        );
        assert_eq!(
            (e.event, e.message_id.as_deref()),
            ("message_id", Some("544D2523.30609@rhsoft.net"))
        );
        // A warning naming no client stays `other`-like, with its text.
        let e = msg(
            "postfix/smtpd",
            "warning: hostname exemple.com does not resolve to address 185.14.29.32",
        );
        assert_eq!((e.event, e.client_ip), ("warning", None));
        assert!(e.message.starts_with("warning: hostname exemple.com"));
    }

    #[test]
    fn whole_syslog_lines() {
        // fail2ban/fail2ban @ 04e932baa2f5969fcdba911199bbf3f7866d631e,
        // fail2ban/tests/files/logs/postfix (failJSON host and time asserted).
        let e = auto(
            "Jul 12 07:47:48 saturn postfix/smtpd[8738]: NOQUEUE: reject: RCPT from 1-2-3-4-example.com[1.2.3.4]: 554 5.7.1 <smtp@example.com>: Relay access denied; from=<john@example.com> to=<smtp@example.org> proto=SMTP helo=<198.51.100.17>",
        );
        assert_eq!((e.client_ip, e.pid), (ip("1.2.3.4"), Some(8738)));
        assert_eq!(e.process.as_deref(), Some("postfix/smtpd"));
        assert_eq!(e.time, civil_micros(2024, 7, 12, 7, 47, 48, 0).unwrap());
        assert_eq!(e.helo.as_deref(), Some("198.51.100.17"));
        let e = auto(
            "Jan 31 13:55:24 xxx postfix-incoming/smtpd[3462]: NOQUEUE: reject: EHLO from s271272.static.corbina.ru[78.107.251.238]: 504 5.5.2 <User>: Helo command rejected: need fully-qualified hostname; proto=SMTP helo=<User>",
        );
        assert_eq!(
            (e.client_ip, e.dsn.as_deref(), e.helo.as_deref()),
            (ip("78.107.251.238"), Some("5.5.2"), Some("User"))
        );
        // winebarrel/postfix_status_line README (a delivery with conn_use).
        let e = auto(
            "Feb 27 09:02:37 MyHOSTNAME postfix/smtp[26490]: D53A72713E5: to=<myemail@bellsouth.net>, relay=gateway-f1.isp.att.net[204.127.217.16]:25, conn_use=2, delay=0.57, delays=0.11/0.03/0.23/0.19, dsn=2.0.0, status=sent (250 ok ; id=20120227140036M0700qer4ne)",
        );
        assert_eq!(
            (e.delay_ms, e.relay_ip, e.relay_port),
            (Some(570), ip("204.127.217.16"), Some(25))
        );
        assert_eq!(
            e.response.as_deref(),
            Some("250 ok ; id=20120227140036M0700qer4ne")
        );
        // IPv6 clients and relays (documentation addresses, Postfix's own shapes).
        let e = auto(
            "Jun 15 11:00:00 mx1 postfix/smtpd[77]: 4N1ZCt0sBLz9rx4: client=mail.example.org[2001:db8:5::25]:41234, sasl_method=PLAIN, sasl_username=alice@example.org",
        );
        assert_eq!(
            (e.queue_id.as_deref(), e.client_ip, e.client_port),
            (Some("4N1ZCt0sBLz9rx4"), ip("2001:db8:5::25"), Some(41234))
        );
        assert_eq!(e.sasl_username.as_deref(), Some("alice@example.org"));
        let e = auto(
            "Jun 15 11:00:00 mx1 postfix/smtp[78]: 4N1ZCt0sBLz9rx4: to=<bob@example.net>, relay=mx.example.net[2001:db8:6::25]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=4.7.0, status=deferred (host mx.example.net[2001:db8:6::25] said: 421 4.7.0 Try again later (in reply to end of DATA command))",
        );
        assert_eq!(
            (e.relay_ip, e.status.as_deref(), e.dsn.as_deref()),
            (ip("2001:db8:6::25"), Some("deferred"), Some("4.7.0"))
        );
        assert!(
            e.response
                .as_deref()
                .unwrap()
                .ends_with("end of DATA command)")
        );
        let e = auto(
            "Jun 15 11:00:01 mx1 postfix/smtpd[77]: warning: unknown[2001:db8:7::1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        );
        assert_eq!((e.event, e.client_ip), ("warning", ip("2001:db8:7::1")));
        let e = auto("Jun 15 11:00:02 mx1 postfix/smtpd[77]: disconnect from unknown[unknown]");
        assert_eq!(
            (e.event, e.client_host.as_deref(), e.client_ip),
            ("disconnect", Some("unknown"), None)
        );
    }

    #[test]
    fn broken_lines_say_what_is_wrong() {
        assert_rejects(
            Format::Postfix,
            &utc_ctx(T0),
            [
                (
                    "Jun 15 11:00:00 mx1 postfix/smtpd[77]: connect from mail.example.org[2001:db8::zz]",
                    "invalid client address \"mail.example.org[2001:db8::zz]\"",
                ),
                (
                    "Jun 15 11:00:00 mx1 postfix/smtpd[77]: connect from mail.example.org[192.0.2.1",
                    "invalid client address \"mail.example.org[192.0.2.1\"",
                ),
                (
                    "Jun 15 11:00:00 mx1 postfix/smtp[78]: 7EE668039: to=<a@b>, relay=x[192.0.2.1]:2525, delay=3.6, dsn=2.0, status=sent (250 ok)",
                    "invalid dsn \"2.0\"",
                ),
                (
                    "Jun 15 11:00:00 mx1 postfix/qmgr[79]: 0F5383D: from=<a@b>, size=53x0, nrcpt=1 (queue active)",
                    "size \"53x0\" is not a number",
                ),
                (
                    "Jun 15 11:00:00 mx1 postfix/smtp[78]: 7EE668039: to=<a@b>, relay=x[192.0.2.1]:99999, delay=3.6, dsn=2.0.0, status=sent (250 ok)",
                    "invalid relay address \"x[192.0.2.1]:99999\"",
                ),
                (
                    "Jun 15 11:00:00 mx1 postfix/smtpd[77]: NOQUEUE: reject: RCPT",
                    "reject without `from host[address]`",
                ),
            ],
        );
    }
}
