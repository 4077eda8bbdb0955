//! Parsers: pure functions from one message's bytes to typed events.
//!
//! A message arrives either bare or wrapped in a syslog envelope (RFC 3164 / RFC 5424). The envelope
//! is peeled first (`syslog.rs`), then the body goes to the format's parser, chosen by name or
//! detected (`detect`). Parsers push into `out` rather than return vectors so the hot path does
//! not allocate per line.

use crate::model::{Event, Micros};

pub mod conntrack;
pub mod conntrack_json;
pub mod goflow2;
pub mod iptables;
pub mod netflow;
pub mod syslog;
mod util;

/// What a parser needs to know besides the bytes.
#[derive(Debug, Clone)]
pub struct ParseCtx {
    /// When the relay received the message; resolves missing years and stands in for missing times.
    pub recv_time: Micros,
    /// The device's UTC offset in seconds, for timestamps that carry none (RFC 3164).
    pub tz_offset_secs: i32,
}

/// Formats natlake can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Auto,
    /// `conntrack -E -o timestamp,extended` event lines (also `-L` listings).
    Conntrack,
    /// conntrack-event-collector JSON lines.
    ConntrackJson,
    /// goflow2 `-format=json` lines (and pmacct-style post-NAT JSON).
    Goflow2,
    /// iptables / nftables kernel LOG lines.
    Iptables,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Auto,
        Format::Conntrack,
        Format::ConntrackJson,
        Format::Goflow2,
        Format::Iptables,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Conntrack => "conntrack",
            Format::ConntrackJson => "conntrack_json",
            Format::Goflow2 => "goflow2",
            Format::Iptables => "iptables",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format}: {reason}")]
pub struct ParseError {
    /// The parser that failed ("auto" when nothing matched).
    pub format: &'static str,
    pub reason: String,
}

impl ParseError {
    pub fn new(format: &'static str, reason: impl Into<String>) -> Self {
        Self {
            format,
            reason: reason.into(),
        }
    }
}

/// What parsing one message found out besides the events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// The parser that produced the events.
    pub format: &'static str,
    /// Syslog HOSTNAME, when there was an envelope with one.
    pub host: Option<String>,
    /// Number of events pushed (0 is valid: e.g. conntrack UPDATE lines carry nothing new).
    pub events: usize,
}

/// Guesses the format of a message body (envelope already peeled) from cheap checks: JSON
/// objects by their keys, conntrack by its leading tokens, kernel LOG lines by `IN= … OUT=` and
/// `SRC=`. None when nothing fits.
pub fn detect(body: &str) -> Option<Format> {
    let b = body.trim_start();
    if b.starts_with('{') {
        if conntrack_json::looks_like(b) {
            Some(Format::ConntrackJson)
        } else if goflow2::looks_like(b) {
            Some(Format::Goflow2)
        } else {
            None
        }
    } else if conntrack::looks_like(b) {
        Some(Format::Conntrack)
    } else if iptables::looks_like(b) {
        Some(Format::Iptables)
    } else {
        None
    }
}

/// How much of an unrecognised body an error message quotes.
const SNIPPET_CHARS: usize = 60;

/// Parses one message: checks it is UTF-8 text, peels the syslog envelope, picks the parser
/// (`format`, or by `detect` for `Format::Auto`) and pushes its events onto `out`.
///
/// Times: a parser that finds a time of its own in the body (conntrack's `[sec.usec]`, a flow's
/// start) uses it; otherwise the event gets the envelope's device time, else `ctx.recv_time`.
/// Parsers receive that fallback as `default_time`, so "no time found" never has to be encoded
/// in an event (0 is a valid epoch).
///
/// On error nothing is pushed. The error's `format` is the parser that failed, or "auto" when
/// the message was empty, not UTF-8 under `Format::Auto`, or matched no format.
pub fn parse_message(
    msg: &[u8],
    format: Format,
    ctx: &ParseCtx,
    out: &mut Vec<Event>,
) -> Result<Parsed, ParseError> {
    let text = std::str::from_utf8(msg).map_err(|e| {
        ParseError::new(
            format.as_str(),
            format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ParseError::new(format.as_str(), "empty message"));
    }
    let env = syslog::peel(text, ctx);
    let chosen = match format {
        Format::Auto => detect(env.body).ok_or_else(|| unrecognised(env.body))?,
        f => f,
    };
    let default_time = env.time.unwrap_or(ctx.recv_time);
    let before = out.len();
    let result = match chosen {
        Format::Conntrack => conntrack::parse(env.body, default_time, out),
        Format::ConntrackJson => conntrack_json::parse(env.body, default_time, out),
        Format::Goflow2 => goflow2::parse(env.body, default_time, out),
        Format::Iptables => iptables::parse(env.body, default_time, out),
        // `detect` never returns Auto; a caller passing it explicitly was handled above.
        Format::Auto => Err(unrecognised(env.body)),
    };
    match result {
        Ok(events) => Ok(Parsed {
            format: chosen.as_str(),
            host: env.host.map(str::to_owned),
            events,
        }),
        Err(e) => {
            // Parsers push only on success; this keeps the promise even if one slips.
            out.truncate(before);
            Err(e)
        }
    }
}

fn unrecognised(body: &str) -> ParseError {
    if body.trim().is_empty() {
        return ParseError::new("auto", "empty body after the syslog header");
    }
    ParseError::new(
        "auto",
        format!(
            "unrecognised message: {:?}",
            util::snippet(body, SNIPPET_CHARS)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::util::{civil_micros, test_corpus};
    use super::*;
    use crate::model::{FirewallAction, NatEventKind};

    fn ctx() -> ParseCtx {
        ParseCtx {
            recv_time: civil_micros(2024, 6, 15, 12, 0, 0, 0).unwrap(),
            tz_offset_secs: 0,
        }
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
    }

    #[test]
    fn errors() {
        let c = ctx();
        let mut out = Vec::new();
        let e = parse_message(b"", Format::Auto, &c, &mut out).unwrap_err();
        assert_eq!((e.format, e.reason.as_str()), ("auto", "empty message"));
        let e = parse_message(b" \t\r\n ", Format::Conntrack, &c, &mut out).unwrap_err();
        assert_eq!(
            (e.format, e.reason.as_str()),
            ("conntrack", "empty message")
        );
        let e = parse_message(b"[NEW] tcp \xff\xfe", Format::Auto, &c, &mut out).unwrap_err();
        assert_eq!(e.format, "auto");
        assert!(e.reason.starts_with("not UTF-8"), "{e}");
        let long = format!("hello world {}", "x".repeat(200));
        let e = parse_message(long.as_bytes(), Format::Auto, &c, &mut out).unwrap_err();
        assert_eq!(e.format, "auto");
        assert!(
            e.reason
                .starts_with("unrecognised message: \"hello world xxx"),
            "{e}"
        );
        assert!(e.reason.len() < 100, "quotes ~60 chars: {e}");
        let e = parse_message(b"<14>Jun 15 11:00:00 gw1", Format::Auto, &c, &mut out).unwrap_err();
        assert_eq!(e.reason, "empty body after the syslog header");
        let e = parse_message(
            b"[NEW] tcp 6 src=100.64.0.1",
            Format::Conntrack,
            &c,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.format, "conntrack");
        assert!(out.is_empty());
    }

    #[test]
    fn times_come_from_body_then_envelope_then_recv() {
        let c = ctx();
        let mut out = Vec::new();
        let line = "    [NEW] udp      17 30 src=100.64.0.9 dst=198.51.100.53 sport=5000 dport=53 [UNREPLIED] src=198.51.100.53 dst=203.0.113.9 sport=53 dport=1024";
        // Bare: recv_time.
        let p = parse_message(line.as_bytes(), Format::Auto, &c, &mut out).unwrap();
        assert_eq!(
            (p.format, p.host.as_deref(), p.events),
            ("conntrack", None, 1)
        );
        assert_eq!(out.pop().unwrap().time(), c.recv_time);
        // In an envelope: the device's time, and its host.
        let wrapped = format!("<14>Jun 15 11:30:00 gw7 conntrack: {}", line.trim());
        let p = parse_message(wrapped.as_bytes(), Format::Auto, &c, &mut out).unwrap();
        assert_eq!(p.host.as_deref(), Some("gw7"));
        assert_eq!(
            out.pop().unwrap().time(),
            civil_micros(2024, 6, 15, 11, 30, 0, 0).unwrap()
        );
        // The body's own stamp beats the envelope's; 0 is a valid epoch, not "unknown".
        let stamped = format!(
            "<14>Jun 15 11:30:00 gw7 conntrack: [0.000001]\t{}",
            line.trim()
        );
        parse_message(stamped.as_bytes(), Format::Auto, &c, &mut out).unwrap();
        assert_eq!(out.pop().unwrap().time(), 1);
    }

    #[test]
    fn named_formats_and_detection() {
        let c = ctx();
        let mut out = Vec::new();
        let fw = "<4>Jun 15 11:59:00 edge kernel: [ 1.0] DENY_C2C_0123 IN=s-01 OUT=s-02 SRC=100.64.0.7 DST=100.64.0.8 LEN=60 PROTO=TCP SPT=1 DPT=8080";
        let p = parse_message(fw.as_bytes(), Format::Iptables, &c, &mut out).unwrap();
        assert_eq!((p.format, p.events), ("iptables", 1));
        let Some(Event::Firewall(e)) = out.pop() else {
            panic!()
        };
        assert_eq!(
            (e.action, e.rule.as_deref()),
            (FirewallAction::Deny, Some("DENY_C2C_0123"))
        );
        // A named format that does not fit fails with that format's name.
        let e = parse_message(fw.as_bytes(), Format::Goflow2, &c, &mut out).unwrap_err();
        assert_eq!(e.format, "goflow2");
        let flow = r#"{"src_addr":"100.64.0.1","dst_addr":"198.51.100.1","post_nat_src_ipv4_address":"203.0.113.1","post_nat_src_transport_port":1024}"#;
        let p = parse_message(flow.as_bytes(), Format::Auto, &c, &mut out).unwrap();
        assert_eq!((p.format, p.events), ("goflow2", 2));
        assert!(
            matches!(out.pop(), Some(Event::Nat(n)) if n.event == Some(NatEventKind::MappingObserved))
        );
        out.clear();
        assert_eq!(
            detect(r#"{"Type":"NEW","Original":{},"Reply":{}}"#),
            Some(Format::ConntrackJson)
        );
        assert_eq!(detect(r#"{"hello":"world"}"#), None);
        assert_eq!(
            detect("IN=eth0 OUT= SRC=100.64.0.1 DST=198.51.100.1"),
            Some(Format::Iptables)
        );
        assert_eq!(
            detect("tcp      6 118 TIME_WAIT src=100.64.0.1 dst=198.51.100.1"),
            Some(Format::Conntrack)
        );
        assert_eq!(detect(""), None);
    }

    /// Every line of every corpus file, whole and truncated, plus random and mutated bytes,
    /// through every format: errors are fine, panics are not.
    #[test]
    fn never_panics() {
        let c = ctx();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let dir = test_corpus::dir();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("corpus dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(files.len() >= 15, "corpus files: {}", files.len());
        for f in &files {
            let data = std::fs::read(f).unwrap();
            lines.extend(
                data.split(|&b| b == b'\n')
                    .filter(|l| !l.starts_with(b"#"))
                    .map(<[u8]>::to_vec),
            );
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for l in &lines {
            inputs.push(l.clone());
            // Truncations at a spread of byte offsets (not only char boundaries).
            let step = (l.len() / 12).max(1);
            inputs.extend((0..l.len()).step_by(step).map(|i| l[..i].to_vec()));
            // A few random byte flips and splices.
            for _ in 0..3 {
                let mut m = l.clone();
                if !m.is_empty() {
                    let i = rng.below(m.len());
                    m[i] = rng.next() as u8;
                    let j = rng.below(m.len());
                    m.insert(j, b"[]{}<>=:\" \t0x"[rng.below(13)]);
                }
                inputs.push(m);
            }
        }
        let prefixes: [&[u8]; 8] = [
            b"",
            b"<",
            b"<13>",
            b"[",
            b"{",
            b"[NEW] ",
            b"Jan  1 00:00:00 ",
            b"2024-01-01T00:00:00Z ",
        ];
        for _ in 0..3000 {
            let mut m = prefixes[rng.below(prefixes.len())].to_vec();
            let n = rng.below(80);
            m.extend((0..n).map(|_| {
                let r = rng.next();
                if r.is_multiple_of(3) {
                    b"src=dst=IN=OUT=SRC=DST=1.2.3.4 :[]{}\"0123456789abcdef"
                        [(r >> 8) as usize % 48]
                } else {
                    r as u8
                }
            }));
            inputs.push(m);
        }
        let mut out = Vec::new();
        let (mut ok, mut err) = (0usize, 0usize);
        for m in &inputs {
            for f in Format::ALL {
                out.clear();
                match parse_message(m, f, &c, &mut out) {
                    Ok(p) => {
                        assert_eq!(p.events, out.len());
                        ok += 1;
                    }
                    Err(e) => {
                        assert!(out.is_empty(), "partial output on error {e}");
                        err += 1;
                    }
                }
            }
        }
        assert!(inputs.len() > 10_000, "inputs {}", inputs.len());
        assert!(ok > 500 && err > 10_000, "ok {ok} err {err}");
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Auto-detection over the spine corpora, end to end: per-file parsed / rejected counts.
    #[test]
    fn corpus_auto_counts() {
        let c = ctx();
        let mut out = Vec::new();
        let mut count = |file: &str| {
            let (mut parsed, mut rejected) = (0, 0);
            for smp in test_corpus::samples(file) {
                match parse_message(smp.line.as_bytes(), Format::Auto, &c, &mut out) {
                    Ok(_) => parsed += 1,
                    Err(_) => rejected += 1,
                }
            }
            (parsed, rejected)
        };
        // conntrack.txt: 25 text lines parse (9 of them UPDATE, 0 events); "garbage line" and
        // the conntrack -o xml lines are rejected.
        let (p, r) = count("conntrack.txt");
        assert_eq!(p, 25, "conntrack parsed");
        assert!(r > 80, "conntrack rejected {r}");
        assert_eq!(count("goflow2.jsonl"), (5, 0));
        // iptables.txt: all kernel LOG lines; the 3 firewalld messages are rejected.
        assert_eq!(count("iptables.txt"), (51, 3));
        // syslog_edge.txt: the only payload natlake parses is the RFC 5424 iptables line.
        let (p, _) = count("syslog_edge.txt");
        assert_eq!(p, 1);
    }
}
