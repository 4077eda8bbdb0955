//! Message header and set framing of NetFlow v9 (RFC 3954 §5) and IPFIX (RFC 7011 §3), read here
//! rather than trusted to the decoding crate: it finds truncation and damage (and where the good
//! part ends), and it gives each set's bytes so a data set whose template is unknown can be kept
//! as a message of its own.

use std::ops::Range;

use super::DecodeError;

pub const V9: u16 = 9;
pub const IPFIX: u16 = 10;
const V9_HEADER: usize = 20;
const IPFIX_HEADER: usize = 16;

/// The header fields natlake uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    /// v9 source id / IPFIX observation domain id.
    pub domain: u32,
    /// v9 unix_secs / IPFIX export time.
    pub export_secs: u32,
    /// v9 sysUptime (ms); None for IPFIX.
    pub uptime_ms: Option<u32>,
}

impl Header {
    pub fn len(&self) -> usize {
        if self.version == IPFIX {
            IPFIX_HEADER
        } else {
            V9_HEADER
        }
    }
}

/// One set (flowset): its id and where its bytes are in the message, header included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub id: u16,
    pub bytes: Range<usize>,
}

/// A message cut into sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    /// The complete sets, in order.
    pub sets: Vec<Set>,
    /// What is wrong past the last complete set (truncation, bad lengths, trailing bytes).
    pub damage: Option<String>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the header and walks the sets. Errors only when there is no usable header.
pub fn frame(pkt: &[u8]) -> Result<Frame, DecodeError> {
    let version = be16(pkt, 0)
        .ok_or_else(|| DecodeError::Truncated(format!("{} bytes: no message header", pkt.len())))?;
    let header = match version {
        V9 => Header {
            version,
            uptime_ms: be32(pkt, 4),
            export_secs: be32(pkt, 8).unwrap_or(0),
            domain: be32(pkt, 16).unwrap_or(0),
        },
        IPFIX => Header {
            version,
            uptime_ms: None,
            export_secs: be32(pkt, 4).unwrap_or(0),
            domain: be32(pkt, 12).unwrap_or(0),
        },
        1 | 5 | 7 => return Err(DecodeError::Legacy(version)),
        v => {
            return Err(DecodeError::NotExport(format!(
                "version {v} is neither NetFlow v9 nor IPFIX"
            )));
        }
    };
    if pkt.len() < header.len() {
        return Err(DecodeError::Truncated(format!(
            "{} bytes, shorter than the {}-byte header",
            pkt.len(),
            header.len()
        )));
    }
    let mut damage = None;
    let mut end = pkt.len();
    if version == IPFIX {
        let declared = usize::from(be16(pkt, 2).unwrap_or(0));
        if declared < IPFIX_HEADER {
            return Err(DecodeError::Corrupt(format!(
                "message length field {declared} is below the header length"
            )));
        }
        if declared > pkt.len() {
            damage = Some(format!(
                "truncated: message length field says {declared} bytes, {} received",
                pkt.len()
            ));
        } else if declared < pkt.len() {
            damage = Some(format!(
                "{} bytes after the {declared}-byte message",
                pkt.len() - declared
            ));
            end = declared;
        }
    }
    let mut sets = Vec::new();
    let mut at = header.len();
    while at < end {
        let rest = pkt.get(at..end).unwrap_or_default();
        // v9 exporters pad the datagram (PAN-OS fills it with zeros); IPFIX has no such padding.
        if version == V9 && rest.iter().all(|&b| b == 0) {
            break;
        }
        let (Some(id), Some(len)) = (be16(rest, 0), be16(rest, 2)) else {
            damage.get_or_insert_with(|| {
                format!("truncated: {} stray bytes at offset {at}", rest.len())
            });
            break;
        };
        let len = usize::from(len);
        if len < 4 {
            damage.get_or_insert_with(|| {
                format!("set {id} at offset {at} has length {len}, below its header")
            });
            break;
        }
        if len > rest.len() {
            damage.get_or_insert_with(|| {
                format!(
                    "truncated: set {id} at offset {at} declares {len} bytes, {} remain",
                    rest.len()
                )
            });
            break;
        }
        sets.push(Set {
            id,
            bytes: at..at + len,
        });
        at += len;
    }
    Ok(Frame {
        header,
        sets,
        damage,
    })
}

/// A message of the given header and sets only: for IPFIX the length field is rewritten; v9 has
/// none (its count field is informational and left as is).
pub fn rebuild(pkt: &[u8], header: &Header, sets: &[&Set]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(header.len() + sets.iter().map(|s| s.bytes.len()).sum::<usize>());
    out.extend_from_slice(pkt.get(..header.len()).unwrap_or_default());
    for s in sets {
        out.extend_from_slice(pkt.get(s.bytes.clone()).unwrap_or_default());
    }
    if header.version == IPFIX
        && let Ok(len) = u16::try_from(out.len())
        && let Some(field) = out.get_mut(2..4)
    {
        field.copy_from_slice(&len.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipfix(sets: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = vec![0, 10, 0, 0];
        p.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&42u32.to_be_bytes());
        for (id, body) in sets {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
            p.extend_from_slice(body);
        }
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    #[test]
    fn frames_sets_and_finds_damage() {
        let p = ipfix(&[(2, &[1, 0, 0, 1, 0, 8, 0, 4]), (256, &[10, 0, 0, 1])]);
        let f = frame(&p).unwrap();
        assert_eq!(f.header.domain, 42);
        assert_eq!(f.damage, None);
        assert_eq!(
            f.sets,
            vec![
                Set {
                    id: 2,
                    bytes: 16..28
                },
                Set {
                    id: 256,
                    bytes: 28..36
                }
            ]
        );
        // Cut inside the second set: the first stays usable.
        let f = frame(&p[..33]).unwrap();
        assert_eq!(f.sets.len(), 1);
        assert!(f.damage.unwrap().starts_with("truncated"));
        // Trailing bytes beyond the message length.
        let mut t = p.clone();
        t.extend_from_slice(&[9, 9]);
        let f = frame(&t).unwrap();
        assert_eq!(f.sets.len(), 2);
        assert!(f.damage.is_some());
        // A rebuilt message of one set is a valid message.
        let one = rebuild(&p, &f.header, &[&f.sets[1]]);
        assert_eq!(frame(&one).unwrap().sets.len(), 1);
        assert_eq!(frame(&one).unwrap().damage, None);
        assert!(matches!(frame(&p[..10]), Err(DecodeError::Truncated(_))));
        assert!(matches!(frame(&[0, 5, 0, 0]), Err(DecodeError::Legacy(5))));
        assert!(matches!(
            frame(b"hello world"),
            Err(DecodeError::NotExport(_))
        ));
        assert!(matches!(frame(&[]), Err(DecodeError::Truncated(_))));
    }
}
