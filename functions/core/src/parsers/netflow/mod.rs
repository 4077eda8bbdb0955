//! NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export messages → events, with NAT event logging
//! (RFC 8158, Cisco NEL / NSEL, Nokia) first in mind.
//!
//! A [`Decoder`] holds one `netflow_parser` template cache per (exporter address, version,
//! observation domain / source id), so two exporters' template 256 never mix. The normalizer
//! makes one decoder per raw object and feeds it the object's context records (the templates the
//! relay replays at the start of every batch) before the data, so each object decodes on its own.
//!
//! The crate does the template bookkeeping and record splitting; this module frames the message
//! itself (`framing`) to find damage and to cut out data sets whose template is unknown, collects
//! the mapped elements of each record (`fields`) and turns them into events (`map`).

mod fields;
mod framing;
mod map;

use std::collections::HashMap;
use std::net::IpAddr;

use netflow_parser::variable_versions::{ipfix, v9};
use netflow_parser::{NetflowPacket, NetflowParser};

use crate::model::{Event, Micros};

pub use fields::PEN_NOKIA;
pub use map::HeaderTimes;

/// `format` of events decoded from NetFlow v9.
pub const FORMAT_V9: &str = "netflow_v9";
/// `format` of events decoded from IPFIX.
pub const FORMAT_IPFIX: &str = "ipfix";

/// Why a whole message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a flow export message: {0}")]
    NotExport(String),
    #[error("NetFlow v{0} (fixed record format) is not decoded by this version")]
    Legacy(u16),
    #[error("{0}")]
    Truncated(String),
    #[error("corrupt message: {0}")]
    Corrupt(String),
}

/// Template caches are per exporter and domain (RFC 7011 §8, RFC 3954 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainKey {
    pub exporter: Option<IpAddr>,
    pub version: u16,
    pub domain: u32,
}

/// An event with what the record said about the subscriber (Nokia natSubString), which the
/// event model has no field for; the caller decides where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    pub event: Event,
    pub subscriber: Option<String>,
}

/// Something in a message that did not become events, with the bytes to keep for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub reason: String,
    /// For a missing template: the header plus that data set (a message of its own, decodable
    /// once the template is known). Otherwise the whole message.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A data set whose template this decoder has not seen.
    MissingTemplate,
    /// Truncation or damage after the decoded part.
    Damaged,
    /// A record the model cannot express (e.g. an interleaved port block).
    Unrepresentable,
}

/// What decoding one message found, besides the events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// [`FORMAT_V9`] or [`FORMAT_IPFIX`].
    pub format: &'static str,
    pub domain: u32,
    /// Template and options template records learned.
    pub templates: u64,
    /// Data records decoded (each gives events, a skip or a problem).
    pub data_records: u64,
    /// Options data records (exporter metadata: sampling, interface names), read and not kept.
    pub options_records: u64,
    /// Data records that hold nothing the lake keeps (NAT alarms, records without addresses).
    pub skipped: u64,
    pub problems: Vec<Problem>,
}

/// Template caches of the exporters seen so far, and the decoding of their messages.
#[derive(Debug, Default)]
pub struct Decoder {
    domains: HashMap<DomainKey, NetflowParser>,
}

fn new_parser() -> NetflowParser {
    // A set holds at most 65,531 bytes; the crate's default cap of 1,024 records per set would
    // drop the rest of a set of small records without a word.
    NetflowParser::builder()
        .with_allowed_versions(&[9, 10])
        .with_max_records_per_flowset(65_535)
        .build()
        .unwrap_or_default()
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (exporter, version, domain) caches held.
    pub fn domains(&self) -> usize {
        self.domains.len()
    }

    /// Decodes one export message from `exporter`, learning its templates and pushing the events
    /// of its data records. Records that cannot be decoded are returned as problems with their
    /// bytes; an error means nothing in the message could be used.
    pub fn decode(
        &mut self,
        exporter: Option<IpAddr>,
        pkt: &[u8],
        default_time: Micros,
        out: &mut Vec<DecodedEvent>,
    ) -> Result<Decoded, DecodeError> {
        let frame = framing::frame(pkt)?;
        let h = frame.header;
        if frame.sets.is_empty()
            && let Some(d) = &frame.damage
        {
            return Err(DecodeError::Truncated(d.clone()));
        }
        let key = DomainKey {
            exporter,
            version: h.version,
            domain: h.domain,
        };
        let mut d = Decoded {
            format: if h.version == framing::IPFIX {
                FORMAT_IPFIX
            } else {
                FORMAT_V9
            },
            domain: h.domain,
            ..Decoded::default()
        };
        let whole = |reason: String, kind| Problem {
            kind,
            reason,
            payload: pkt.to_vec(),
        };
        if let Some(damage) = &frame.damage {
            d.problems.push(whole(
                format!(
                    "{damage} (the {} complete sets before it were decoded)",
                    frame.sets.len()
                ),
                ProblemKind::Damaged,
            ));
        }
        // The crate sees only the complete sets: its own handling of a cut message is to fail or
        // to stop quietly, and either would lose the good part.
        let all: Vec<&framing::Set> = frame.sets.iter().collect();
        let clean = framing::rebuild(pkt, &h, &all);
        let parser = self.domains.entry(key).or_insert_with(new_parser);
        let result = parser.parse_bytes(&clean);
        let Some(packet) = result.packets.into_iter().next() else {
            let reason = result
                .error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "nothing decoded".into());
            return Err(DecodeError::Corrupt(reason));
        };
        if let Some(e) = result.error {
            d.problems.push(whole(
                format!("decoding stopped: {e}"),
                ProblemKind::Damaged,
            ));
        }
        let times = HeaderTimes {
            export_secs: h.export_secs,
            uptime_ms: h.uptime_ms,
        };
        let mut missing: Vec<u16> = Vec::new();
        let mut rec = Records {
            times,
            exporter,
            default_time,
            decoded: &mut d,
            out,
            pkt,
            buf: Vec::with_capacity(16),
        };
        let sets_seen = match &packet {
            NetflowPacket::V9(p) => {
                for fs in &p.flowsets {
                    match &fs.body {
                        v9::FlowSetBody::Template(t) => {
                            rec.decoded.templates += t.templates.len() as u64
                        }
                        v9::FlowSetBody::OptionsTemplate(t) => {
                            rec.decoded.templates += t.templates.len() as u64
                        }
                        v9::FlowSetBody::Data(data) => {
                            for r in &data.fields {
                                rec.add(r.iter().map(|(f, v)| (fields::v9_ie(u16::from(*f)), v)));
                            }
                        }
                        v9::FlowSetBody::OptionsData(o) => {
                            rec.decoded.options_records += o.fields.len() as u64
                        }
                        v9::FlowSetBody::NoTemplate(info) => missing.push(info.template_id),
                        v9::FlowSetBody::Empty => {}
                    }
                }
                p.flowsets.len()
            }
            NetflowPacket::IPFix(p) => {
                for fs in &p.flowsets {
                    use ipfix::FlowSetBody as B;
                    match &fs.body {
                        B::Template(_) | B::V9Template(_) => rec.decoded.templates += 1,
                        B::OptionsTemplate(_) | B::V9OptionsTemplate(_) => {
                            rec.decoded.templates += 1
                        }
                        B::Templates(t) => rec.decoded.templates += t.len() as u64,
                        B::V9Templates(t) => rec.decoded.templates += t.len() as u64,
                        B::OptionsTemplates(t) => rec.decoded.templates += t.len() as u64,
                        B::V9OptionsTemplates(t) => rec.decoded.templates += t.len() as u64,
                        B::Data(data) => {
                            for r in &data.fields {
                                rec.add(r.iter().map(|(f, v)| (fields::ipfix_ie(f), v)));
                            }
                        }
                        B::V9Data(data) => {
                            for r in &data.fields {
                                rec.add(r.iter().map(|(f, v)| (fields::v9_ie(u16::from(*f)), v)));
                            }
                        }
                        B::OptionsData(o) => rec.decoded.options_records += o.fields.len() as u64,
                        B::V9OptionsData(o) => rec.decoded.options_records += o.fields.len() as u64,
                        B::NoTemplate(info) => missing.push(info.template_id),
                        B::Empty => {}
                    }
                }
                p.flowsets.len()
            }
            _ => {
                return Err(DecodeError::Corrupt(
                    "decoded as a version other than v9 / IPFIX".into(),
                ));
            }
        };
        // IPFIX sets are read until the first one the crate cannot parse; what follows would be
        // lost without a trace.
        if sets_seen < frame.sets.len() {
            let next = frame.sets.get(sets_seen);
            d.problems.push(whole(
                format!(
                    "only {sets_seen} of {} sets decoded; set {} at offset {} could not be read",
                    frame.sets.len(),
                    next.map_or(0, |s| s.id),
                    next.map_or(0, |s| s.bytes.start),
                ),
                ProblemKind::Damaged,
            ));
        }
        // Each data set without a template becomes a message of its own: header plus that set.
        let mut used = vec![false; frame.sets.len()];
        for tid in missing {
            let found = frame
                .sets
                .iter()
                .enumerate()
                .find(|(i, s)| s.id == tid && !used[*i]);
            let payload = match found {
                Some((i, s)) => {
                    used[i] = true;
                    framing::rebuild(pkt, &h, &[s])
                }
                None => pkt.to_vec(),
            };
            let who = exporter.map_or_else(|| "unknown".to_string(), |e| e.to_string());
            d.problems.push(Problem {
                kind: ProblemKind::MissingTemplate,
                reason: format!(
                    "no template {tid} for exporter {who} domain {} ({})",
                    h.domain, d.format
                ),
                payload,
            });
        }
        Ok(d)
    }
}

/// Per-message state of turning records into events.
struct Records<'a> {
    times: HeaderTimes,
    exporter: Option<IpAddr>,
    default_time: Micros,
    decoded: &'a mut Decoded,
    out: &'a mut Vec<DecodedEvent>,
    pkt: &'a [u8],
    buf: Vec<u8>,
}

impl Records<'_> {
    fn add<'v>(
        &mut self,
        values: impl Iterator<
            Item = (
                Option<fields::Ie>,
                &'v netflow_parser::variable_versions::field_value::FieldValue,
            ),
        >,
    ) {
        self.decoded.data_records += 1;
        let mut f = fields::Fields::default();
        for (ie, v) in values {
            let Some(ie) = ie else { continue };
            self.buf.clear();
            if v.write_be_bytes(&mut self.buf).is_ok() {
                f.set(ie, &self.buf);
            }
        }
        match map::map_record(&f, &self.times, self.exporter, self.default_time) {
            map::Mapped::Events(events) => {
                self.out
                    .extend(events.into_iter().map(|event| DecodedEvent {
                        event,
                        subscriber: f.subscriber.clone(),
                    }))
            }
            map::Mapped::Skipped(_) => self.decoded.skipped += 1,
            map::Mapped::Unrepresentable(reason) => {
                // The record's own bytes are not at hand (the crate decoded them); the message
                // is, and decodes again with the templates this object carries.
                self.decoded.problems.push(Problem {
                    kind: ProblemKind::Unrepresentable,
                    reason,
                    payload: self.pkt.to_vec(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
