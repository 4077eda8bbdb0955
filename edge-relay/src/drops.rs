//! Spans of dropped messages: when the relay could not keep what it received (queue full,
//! spool full, oversized, …), by input kind. The heartbeat writes each span that changed
//! ([`natlake_raw::heartbeat::DropSpan`]) before itself, so lookups can say that an answer's
//! hours lost messages instead of answering as if the log were whole.

use std::collections::BTreeMap;
use std::sync::Mutex;

use natlake_raw::InputKind;
use natlake_raw::heartbeat::{DropSpan, UNCLEAN_STOP};

use crate::batch::slot;

/// A span closes after this long without a drop of its kind...
const QUIET_NS: i64 = 60_000_000_000;
/// ...or once it is this long, so one span never covers hours.
const LONGEST_NS: i64 = 600_000_000_000;
/// Spans kept while the store cannot take them; past it, drops go into each kind's last span.
const MAX_SPANS: usize = 1000;

#[derive(Debug, Clone)]
struct Span {
    kind: InputKind,
    first_ns: i64,
    last_ns: i64,
    messages: u64,
    reasons: BTreeMap<&'static str, u64>,
    /// Changed since the heartbeat last wrote it.
    dirty: bool,
}

#[derive(Debug, Default)]
pub(crate) struct DropLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The open span of each kind (by [`slot`]), then closed ones not yet written.
    spans: Vec<Span>,
    open: [Option<i64>; InputKind::ALL.len()],
}

impl DropLog {
    /// Records `messages` dropped for `reason`, received from `since_ns` up to `now_ns`.
    pub fn record(
        &self,
        kind: InputKind,
        reason: &'static str,
        messages: u64,
        since_ns: i64,
        now_ns: i64,
    ) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { spans, open } = &mut *g;
        let since_ns = since_ns.min(now_ns);
        let i = slot(kind);
        let current = open[i].and_then(|first| {
            spans
                .iter()
                .position(|s| s.kind == kind && s.first_ns == first)
        });
        let fits = |s: &Span| now_ns - s.last_ns <= QUIET_NS && now_ns - s.first_ns <= LONGEST_NS;
        let (at, is_open) = match current {
            Some(p) if fits(&spans[p]) => (Some(p), true),
            // The store has not taken the spans for a while: coarser, not unbounded.
            _ if spans.len() >= MAX_SPANS => (spans.iter().rposition(|s| s.kind == kind), false),
            _ => (None, true),
        };
        let s = match at {
            Some(p) => &mut spans[p],
            None => {
                spans.push(Span {
                    kind,
                    first_ns: since_ns,
                    last_ns: now_ns,
                    messages: 0,
                    reasons: BTreeMap::new(),
                    dirty: true,
                });
                open[i] = Some(since_ns);
                spans.last_mut().expect("pushed")
            }
        };
        s.first_ns = s.first_ns.min(since_ns);
        s.last_ns = s.last_ns.max(now_ns);
        s.messages += messages;
        *s.reasons.entry(reason).or_default() += messages;
        s.dirty = true;
        // The key is the span's first time: an earlier `since` moves it, so track it.
        if is_open {
            open[i] = Some(s.first_ns);
        }
    }

    /// The spans that changed since the last call (marked written), for `relay`; closed spans
    /// already written are forgotten. Give back what could not be written with [`DropLog::retry`].
    pub fn take_changed(&self, relay: &str, now_ns: i64) -> Vec<DropSpan> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { spans, open } = &mut *g;
        let mut out = Vec::new();
        for s in spans.iter_mut().filter(|s| s.dirty) {
            s.dirty = false;
            out.push(DropSpan {
                relay: relay.to_owned(),
                kind: s.kind.as_str().to_owned(),
                first_us: s.first_ns.div_euclid(1000),
                last_us: s.last_ns.div_euclid(1000),
                messages: s.messages,
                reasons: s.reasons.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            });
        }
        let still_open = |s: &Span| {
            open[slot(s.kind)] == Some(s.first_ns)
                && now_ns - s.last_ns <= QUIET_NS
                && now_ns - s.first_ns <= LONGEST_NS
        };
        spans.retain(|s| s.dirty || still_open(s));
        for (i, o) in open.iter_mut().enumerate() {
            if o.is_some_and(|first| {
                !spans
                    .iter()
                    .any(|s| slot(s.kind) == i && s.first_ns == first)
            }) {
                *o = None;
            }
        }
        out
    }

    /// Marks spans that could not be written as changed again (re-adding forgotten ones).
    pub fn retry(&self, failed: &[DropSpan]) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for d in failed {
            let Some(kind) = InputKind::parse(&d.kind) else {
                continue;
            };
            let first_ns = d.first_us * 1000;
            let at = g
                .spans
                .iter()
                .position(|s| s.kind == kind && s.first_ns.div_euclid(1000) == d.first_us);
            match at {
                Some(p) => g.spans[p].dirty = true,
                None if g.spans.len() < MAX_SPANS => g.spans.push(Span {
                    kind,
                    first_ns,
                    last_ns: d.last_us * 1000,
                    messages: d.messages,
                    reasons: d
                        .reasons
                        .iter()
                        .filter_map(|(r, n)| {
                            let r = crate::DropReason::ALL
                                .iter()
                                .map(|x| x.as_str())
                                .chain([UNCLEAN_STOP])
                                .find(|x| x == r)?;
                            Some((r, *n))
                        })
                        .collect(),
                    dirty: true,
                }),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn drops_close_together_share_a_span_and_quiet_or_length_closes_it() {
        let log = DropLog::default();
        let k = InputKind::SyslogUdp;
        log.record(k, "queue_full", 3, 100 * S, 100 * S);
        log.record(k, "oversized", 1, 130 * S, 130 * S);
        let got = log.take_changed("r1", 131 * S);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].first_us, got[0].last_us),
            (100_000_000, 130_000_000)
        );
        assert_eq!(got[0].messages, 4);
        assert_eq!(got[0].reasons["queue_full"], 3);
        // Nothing new: nothing to write.
        assert!(log.take_changed("r1", 132 * S).is_empty());
        // A drop 61 s after the last opens a new span; the old one is written and forgotten.
        log.record(k, "queue_full", 1, 191 * S, 191 * S);
        let got = log.take_changed("r1", 192 * S);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].first_us, 191_000_000);
        // Other kinds keep their own spans; a batch lost to a full spool covers its receive times.
        log.record(InputKind::Ipfix, "spool_full", 50, 150 * S, 200 * S);
        log.record(k, "queue_full", 1, 200 * S, 200 * S);
        let mut got = log.take_changed("r1", 201 * S);
        got.sort_by_key(|d| d.first_us);
        assert_eq!(
            got.iter()
                .map(|d| (d.kind.as_str(), d.first_us / 1_000_000, d.messages))
                .collect::<Vec<_>>(),
            [("ipfix", 150, 50), ("syslog_udp", 191, 2)]
        );
        // Ten minutes of steady drops: split, never one span for hours.
        for t in (202..=900).step_by(10) {
            log.record(k, "queue_full", 1, t * S, t * S);
        }
        let spans = log.take_changed("r1", 901 * S);
        assert!(spans.len() >= 2, "{spans:?}");
        assert!(spans.iter().all(|d| d.last_us - d.first_us <= 600_000_000));
        // A failed write is written again at the next heartbeat.
        log.retry(&spans);
        assert_eq!(log.take_changed("r1", 902 * S).len(), spans.len());
    }
}
