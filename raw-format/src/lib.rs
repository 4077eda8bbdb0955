//! The raw batch format: what `edge-relay` writes to `raw/` and the functions read back.
//!
//! A raw object is one or more zstd frames, back to back, whose content is:
//!
//! ```text
//! magic    b"NLRAW"                     5 bytes
//! version  u8 (= 1)                     1 byte
//! hlen     u32 LE                       length of the header
//! header   JSON (BatchHeader)           hlen bytes: who wrote it, which kind, when
//! record*  repeated until end of stream
//!   len      u32 LE  length of everything after this field (fixed part + payload)
//!   crc      u32 LE  CRC-32 (IEEE) of everything after this field
//!   time     i64 LE  receive time, nanoseconds since the Unix epoch (UTC)
//!   kind     u8      InputKind
//!   flags    u8      bit 0: context record (e.g. an IPFIX template replayed into this batch)
//!   family   u8      0 = no peer, 4 = IPv4, 6 = IPv6
//!   reserved u8      0
//!   addr     [u8;16] peer address (IPv4 in the first 4 bytes)
//!   port     u16 LE  peer port
//!   payload  len - 34 bytes, exactly as received (binary-safe)
//! ```
//!
//! Each record carries its own length and checksum, so a damaged or truncated object still yields
//! every record before the damage, and the damage is reported rather than silently dropped.
//! The record index (0-based, counting context records) is the provenance the lake keeps.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 5] = b"NLRAW";
pub const VERSION: u8 = 1;
/// File name suffix of raw objects.
pub const SUFFIX: &str = ".nlraw.zst";
const FIXED: usize = 4 + 8 + 4 + 16 + 2; // crc + time + kind/flags/family/reserved + addr + port
/// Upper bound on a single record; anything larger is corruption, not data.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;
const MAX_HEADER: usize = 1024 * 1024;

/// Flag: the record is context (a template), not an event received in this batch's window.
pub const FLAG_CONTEXT: u8 = 1;

/// How a record reached the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    SyslogUdp,
    SyslogTcp,
    Ipfix,
    Netflow,
    ConntrackNetlink,
    JsonLines,
    File,
}

impl InputKind {
    pub const ALL: [InputKind; 7] = [
        Self::SyslogUdp,
        Self::SyslogTcp,
        Self::Ipfix,
        Self::Netflow,
        Self::ConntrackNetlink,
        Self::JsonLines,
        Self::File,
    ];

    pub fn code(self) -> u8 {
        match self {
            Self::SyslogUdp => 1,
            Self::SyslogTcp => 2,
            Self::Ipfix => 3,
            Self::Netflow => 4,
            Self::ConntrackNetlink => 5,
            Self::JsonLines => 6,
            Self::File => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The name used in object keys and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyslogUdp => "syslog_udp",
            Self::SyslogTcp => "syslog_tcp",
            Self::Ipfix => "ipfix",
            Self::Netflow => "netflow",
            Self::ConntrackNetlink => "conntrack_netlink",
            Self::JsonLines => "json_lines",
            Self::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for InputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON header at the start of every raw object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// Layout version of the records that follow (same as the binary version byte).
    pub format_version: u8,
    /// Identifies the relay instance (host name by default).
    pub relay_id: String,
    /// Unique id of this batch (UUIDv7: time ordered, unique across restarts and relays).
    pub batch_id: String,
    /// The input kind most records have; records carry their own kind too.
    pub kind: InputKind,
    /// When the batch was opened, nanoseconds since the Unix epoch.
    pub created_ns: i64,
    /// Free-form labels from the relay configuration (site, device time zone, …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub recv_ns: i64,
    pub kind: InputKind,
    pub flags: u8,
    pub peer: Option<SocketAddr>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn is_context(&self) -> bool {
        self.flags & FLAG_CONTEXT != 0
    }

    /// Encoded size of this record in the uncompressed stream.
    pub fn encoded_len(&self) -> usize {
        4 + FIXED + self.payload.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("not a natlake raw object (bad magic)")]
    BadMagic,
    #[error("unsupported raw format version {0}")]
    Version(u8),
    #[error("bad batch header: {0}")]
    Header(String),
    #[error("record {index}: {reason}")]
    Record { index: u64, reason: String },
    #[error("record {index}: truncated ({reason})")]
    Truncated { index: u64, reason: String },
    #[error("payload of {0} bytes exceeds the record limit")]
    TooLarge(usize),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

fn encode_peer(peer: Option<SocketAddr>) -> (u8, [u8; 16], u16) {
    let mut addr = [0u8; 16];
    match peer {
        None => (0, addr, 0),
        Some(SocketAddr::V4(a)) => {
            addr[..4].copy_from_slice(&a.ip().octets());
            (4, addr, a.port())
        }
        Some(SocketAddr::V6(a)) => {
            addr.copy_from_slice(&a.ip().octets());
            (6, addr, a.port())
        }
    }
}

/// Writes one record into an uncompressed stream (the writer compresses).
pub fn encode_record<W: Write>(out: &mut W, rec: &Record) -> Result<(), RawError> {
    encode_parts(
        out,
        rec.recv_ns,
        rec.kind,
        rec.flags,
        rec.peer,
        &rec.payload,
    )
}

/// Same as [`encode_record`] without building a `Record` (the relay's hot path).
pub fn encode_parts<W: Write>(
    out: &mut W,
    recv_ns: i64,
    kind: InputKind,
    flags: u8,
    peer: Option<SocketAddr>,
    payload: &[u8],
) -> Result<(), RawError> {
    if payload.len() + FIXED > MAX_RECORD {
        return Err(RawError::TooLarge(payload.len()));
    }
    let (family, addr, port) = encode_peer(peer);
    let mut fixed = [0u8; FIXED - 4];
    fixed[..8].copy_from_slice(&recv_ns.to_le_bytes());
    fixed[8] = kind.code();
    fixed[9] = flags;
    fixed[10] = family;
    fixed[12..28].copy_from_slice(&addr);
    fixed[28..30].copy_from_slice(&port.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&fixed);
    crc.update(payload);
    let len = (FIXED + payload.len()) as u32;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&fixed)?;
    out.write_all(payload)?;
    Ok(())
}

/// Writes the magic, version and header.
pub fn encode_header<W: Write>(out: &mut W, header: &BatchHeader) -> Result<(), RawError> {
    let json = serde_json::to_vec(header).map_err(|e| RawError::Header(e.to_string()))?;
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    out.write_all(&(json.len() as u32).to_le_bytes())?;
    out.write_all(&json)?;
    Ok(())
}

/// Builds a complete raw object in memory: header, records, zstd.
pub struct BatchWriter {
    enc: zstd::stream::write::Encoder<'static, Vec<u8>>,
    records: u64,
    raw_bytes: u64,
}

impl BatchWriter {
    pub fn new(header: &BatchHeader, level: i32) -> Result<Self, RawError> {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), level)?;
        encode_header(&mut enc, header)?;
        Ok(Self {
            enc,
            records: 0,
            raw_bytes: 0,
        })
    }

    pub fn push(&mut self, rec: &Record) -> Result<(), RawError> {
        self.push_parts(rec.recv_ns, rec.kind, rec.flags, rec.peer, &rec.payload)
    }

    pub fn push_parts(
        &mut self,
        recv_ns: i64,
        kind: InputKind,
        flags: u8,
        peer: Option<SocketAddr>,
        payload: &[u8],
    ) -> Result<(), RawError> {
        encode_parts(&mut self.enc, recv_ns, kind, flags, peer, payload)?;
        self.records += 1;
        self.raw_bytes += (4 + FIXED + payload.len()) as u64;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Uncompressed bytes of records so far (what batch-size limits count).
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    pub fn finish(self) -> Result<Vec<u8>, RawError> {
        Ok(self.enc.finish()?)
    }
}

/// A record read in place: `payload` borrows the reader's buffer and lives until the next read.
/// The normalizer's hot path uses it ([`BatchReader::next_ref`]); allocating each record and
/// copying its payload out cost more than some parsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub recv_ns: i64,
    pub kind: InputKind,
    pub flags: u8,
    pub peer: Option<SocketAddr>,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    pub fn is_context(&self) -> bool {
        self.flags & FLAG_CONTEXT != 0
    }

    pub fn to_record(&self) -> Record {
        Record {
            recv_ns: self.recv_ns,
            kind: self.kind,
            flags: self.flags,
            peer: self.peer,
            payload: self.payload.to_vec(),
        }
    }
}

/// A record's fixed part; its payload is `buf[FIXED..len]` of the reader.
struct Fixed {
    recv_ns: i64,
    kind: InputKind,
    flags: u8,
    peer: Option<SocketAddr>,
    len: usize,
}

/// Reads a raw object. Iterates records; after an error the reader stops.
pub struct BatchReader<R: Read> {
    input: R,
    header: BatchHeader,
    index: u64,
    done: bool,
    /// The current record (crc, fixed part, payload), reused: it only grows.
    buf: Vec<u8>,
}

impl<'a> BatchReader<zstd::stream::read::Decoder<'static, io::BufReader<&'a [u8]>>> {
    /// Opens a compressed raw object held in memory.
    pub fn from_compressed(bytes: &'a [u8]) -> Result<Self, RawError> {
        let dec = zstd::stream::read::Decoder::new(bytes)?;
        Self::new(dec)
    }
}

impl<R: Read> BatchReader<R> {
    /// Opens an uncompressed stream.
    pub fn new(mut input: R) -> Result<Self, RawError> {
        let mut pre = [0u8; 10];
        read_exact_or(&mut input, &mut pre).map_err(|_| RawError::BadMagic)?;
        if &pre[..5] != MAGIC {
            return Err(RawError::BadMagic);
        }
        if pre[5] != VERSION {
            return Err(RawError::Version(pre[5]));
        }
        let hlen = u32::from_le_bytes([pre[6], pre[7], pre[8], pre[9]]) as usize;
        if hlen > MAX_HEADER {
            return Err(RawError::Header(format!("header length {hlen} is absurd")));
        }
        let mut json = vec![0u8; hlen];
        input
            .read_exact(&mut json)
            .map_err(|e| RawError::Header(format!("truncated header: {e}")))?;
        let header: BatchHeader =
            serde_json::from_slice(&json).map_err(|e| RawError::Header(e.to_string()))?;
        Ok(Self {
            input,
            header,
            index: 0,
            done: false,
            buf: Vec::new(),
        })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Index the next record will have.
    pub fn next_index(&self) -> u64 {
        self.index
    }

    /// Reads the next record into `self.buf`. The read sizes (4 bytes, then the record) are
    /// what they always were, so a damaged zstd stream yields the same records before the
    /// damage.
    fn read_one(&mut self) -> Result<Option<Fixed>, RawError> {
        let index = self.index;
        let mut len = [0u8; 4];
        match read_exact_or(&mut self.input, &mut len) {
            Ok(0) => return Ok(None),
            Ok(4) => {}
            Ok(n) => {
                return Err(RawError::Truncated {
                    index,
                    reason: format!("{n} of 4 length bytes"),
                });
            }
            Err(e) => {
                return Err(RawError::Truncated {
                    index,
                    reason: e.to_string(),
                });
            }
        }
        let len = u32::from_le_bytes(len) as usize;
        if !(FIXED..=MAX_RECORD).contains(&len) {
            return Err(RawError::Record {
                index,
                reason: format!("record length {len} out of range"),
            });
        }
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let buf = &mut self.buf[..len];
        let got = read_exact_or(&mut self.input, buf).map_err(|e| RawError::Truncated {
            index,
            reason: e.to_string(),
        })?;
        if got != len {
            return Err(RawError::Truncated {
                index,
                reason: format!("{got} of {len} bytes"),
            });
        }
        let crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if crc32fast::hash(&buf[4..]) != crc {
            return Err(RawError::Record {
                index,
                reason: "checksum mismatch".into(),
            });
        }
        let f = &buf[4..FIXED];
        let recv_ns = i64::from_le_bytes(f[..8].try_into().expect("8 bytes"));
        let kind = InputKind::from_code(f[8]).ok_or_else(|| RawError::Record {
            index,
            reason: format!("unknown input kind {}", f[8]),
        })?;
        let flags = f[9];
        let port = u16::from_le_bytes([f[28], f[29]]);
        let addr: [u8; 16] = f[12..28].try_into().expect("16 bytes");
        let peer = match f[10] {
            0 => None,
            4 => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
                port,
            )),
            6 => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(addr)), port)),
            other => {
                return Err(RawError::Record {
                    index,
                    reason: format!("unknown address family {other}"),
                });
            }
        };
        self.index += 1;
        Ok(Some(Fixed {
            recv_ns,
            kind,
            flags,
            peer,
            len,
        }))
    }

    /// The next record, borrowed from the reader (see [`RecordRef`]); None at the end. After
    /// an error the reader stops, as the iterator does.
    pub fn next_ref(&mut self) -> Option<Result<(u64, RecordRef<'_>), RawError>> {
        if self.done {
            return None;
        }
        let index = self.index;
        let fixed = match self.read_one() {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let payload = self.buf.get(FIXED..fixed.len).unwrap_or_default();
        Some(Ok((
            index,
            RecordRef {
                recv_ns: fixed.recv_ns,
                kind: fixed.kind,
                flags: fixed.flags,
                peer: fixed.peer,
                payload,
            },
        )))
    }
}

impl<R: Read> Iterator for BatchReader<R> {
    type Item = Result<(u64, Record), RawError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref()
            .map(|r| r.map(|(index, rec)| (index, rec.to_record())))
    }
}

/// Like `read_exact` but returns how many bytes were read when the stream ends early.
fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The JSON line `natlake raw cat` prints for a record.
pub fn record_to_json(index: u64, rec: &Record) -> serde_json::Value {
    use base64::Engine;
    let mut v = serde_json::json!({
        "index": index,
        "recv_ns": rec.recv_ns,
        "kind": rec.kind.as_str(),
        "peer": rec.peer.map(|p| p.to_string()),
    });
    if rec.is_context() {
        v["context"] = serde_json::Value::Bool(true);
    }
    match std::str::from_utf8(&rec.payload) {
        Ok(s) => v["payload"] = s.into(),
        Err(_) => {
            v["payload_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&rec.payload)
                .into()
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BatchHeader {
        BatchHeader {
            format_version: VERSION,
            relay_id: "r1".into(),
            batch_id: "b1".into(),
            kind: InputKind::SyslogUdp,
            created_ns: 1,
            labels: Default::default(),
        }
    }

    fn records() -> Vec<Record> {
        vec![
            Record {
                recv_ns: 1_700_000_000_000_000_000,
                kind: InputKind::SyslogUdp,
                flags: 0,
                peer: Some("192.0.2.1:514".parse().unwrap()),
                payload: b"<134>hello".to_vec(),
            },
            Record {
                recv_ns: -5,
                kind: InputKind::Ipfix,
                flags: FLAG_CONTEXT,
                peer: Some("[2001:db8::1]:4739".parse().unwrap()),
                payload: vec![0, 255, 10, 13, 0],
            },
            Record {
                recv_ns: 0,
                kind: InputKind::JsonLines,
                flags: 0,
                peer: None,
                payload: vec![],
            },
        ]
    }

    fn build() -> Vec<u8> {
        let mut w = BatchWriter::new(&header(), 3).unwrap();
        for r in records() {
            w.push(&r).unwrap();
        }
        assert_eq!(w.records(), 3);
        w.finish().unwrap()
    }

    /// The decompressed bytes of [`build`]'s object.
    fn built_plaintext() -> Vec<u8> {
        let mut plain = Vec::new();
        zstd::stream::read::Decoder::new(&build()[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        plain
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let bytes = build();
        let rd = BatchReader::from_compressed(&bytes).unwrap();
        assert_eq!(rd.header(), &header());
        let got: Vec<_> = rd.map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 3);
        for (i, ((idx, rec), want)) in got.iter().zip(records()).enumerate() {
            assert_eq!(*idx, i as u64);
            assert_eq!(rec, &want);
        }
    }

    /// The format allows an object of several zstd frames back to back (edge-relay writes one per
    /// MiB of plaintext): the reader sees one stream, and a record may span two frames.
    #[test]
    fn concatenated_frames_read_as_one_stream() {
        let plain = built_plaintext();
        let cut = plain.len() - 7; // inside the last record
        let mut framed = zstd::bulk::compress(&plain[..cut], 1).unwrap();
        framed.extend(zstd::bulk::compress(&plain[cut..], 1).unwrap());
        let rd = BatchReader::from_compressed(&framed).unwrap();
        assert_eq!(rd.header(), &header());
        let got: Vec<_> = rd.map(|r| r.unwrap().1).collect();
        assert_eq!(got, records());
    }

    /// Records read in place reuse one buffer: each payload is its own length (10, 5 and 0
    /// bytes here, so a shorter one follows a longer), and a damaged tail ends the reading.
    #[test]
    fn records_read_in_place_equal_the_owned_ones() {
        let bytes = build();
        let mut rd = BatchReader::from_compressed(&bytes).unwrap();
        let mut got = Vec::new();
        while let Some(item) = rd.next_ref() {
            let (i, rec) = item.unwrap();
            assert_eq!(i, got.len() as u64);
            assert_eq!(rec.is_context(), records()[got.len()].is_context());
            got.push(rec.to_record());
        }
        assert_eq!(got, records());
        assert!(rd.next_ref().is_none());

        let plain = built_plaintext();
        let mut rd = BatchReader::new(&plain[..plain.len() - 3]).unwrap();
        assert_eq!(rd.next_ref().unwrap().unwrap().1.payload, b"<134>hello");
        assert_eq!(
            rd.next_ref().unwrap().unwrap().1.payload,
            [0, 255, 10, 13, 0]
        );
        assert!(matches!(
            rd.next_ref(),
            Some(Err(RawError::Truncated { index: 2, .. }))
        ));
        assert!(rd.next_ref().is_none());
    }

    #[test]
    fn truncation_yields_the_records_before_it_and_an_error() {
        let plain = built_plaintext();
        let cut = &plain[..plain.len() - 3];
        let items: Vec<_> = BatchReader::new(cut).unwrap().collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(
            matches!(items[2], Err(RawError::Truncated { index: 2, .. })),
            "{:?}",
            items[2]
        );
    }

    #[test]
    fn corruption_is_detected_by_checksum() {
        let mut plain = built_plaintext();
        let n = plain.len();
        plain[n - 40] ^= 0xff; // inside the second record's payload or fixed part
        let items: Vec<_> = BatchReader::new(&plain[..]).unwrap().collect();
        assert!(
            items
                .iter()
                .any(|r| matches!(r, Err(RawError::Record { .. }))),
            "{items:?}"
        );
    }

    #[test]
    fn rejects_foreign_bytes() {
        assert!(matches!(
            BatchReader::new(&b"hello world"[..]),
            Err(RawError::BadMagic)
        ));
        assert!(BatchReader::from_compressed(b"not zstd at all").is_err());
    }

    #[test]
    fn json_line_uses_text_or_base64() {
        let recs = records();
        let a = record_to_json(0, &recs[0]);
        assert_eq!(a["payload"], "<134>hello");
        assert_eq!(a["peer"], "192.0.2.1:514");
        let b = record_to_json(1, &recs[1]);
        assert_eq!(b["payload_base64"], "AP8KDQA=");
        assert_eq!(b["context"], true);
    }
}

/// Object keys of raw batches: `raw/<kind>/hour=YYYY-MM-DDTHH/<relay>_<batch>.nlraw.zst`.
///
/// The hour is the batch's creation hour (UTC), which lets backfills select by time with a
/// prefix; `relay` and `batch` (a UUIDv7) make keys unique across relays and restarts.
pub mod key {
    use super::{InputKind, SUFFIX};

    pub const RAW_PREFIX: &str = "raw";

    /// Characters allowed in a relay id as it appears in keys.
    pub fn sanitize_relay_id(id: &str) -> String {
        let s: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if s.is_empty() { "relay".to_string() } else { s }
    }

    pub fn raw_key(kind: InputKind, created_ns: i64, relay_id: &str, batch_id: &str) -> String {
        format!(
            "{RAW_PREFIX}/{}/hour={}/{}_{}{SUFFIX}",
            kind.as_str(),
            hour_label(created_ns.div_euclid(1_000_000_000)),
            sanitize_relay_id(relay_id),
            batch_id
        )
    }

    /// `YYYY-MM-DDTHH` for a Unix time in seconds (UTC).
    pub fn hour_label(unix_secs: i64) -> String {
        let days = unix_secs.div_euclid(86_400);
        let hour = unix_secs.rem_euclid(86_400) / 3600;
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}T{hour:02}")
    }

    /// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
    pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    /// The file name stem of a raw key (what lake objects derived from it are named after).
    pub fn stem(key: &str) -> &str {
        let name = key.rsplit('/').next().unwrap_or(key);
        name.strip_suffix(SUFFIX).unwrap_or(name)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_are_hive_style_and_unique_per_batch() {
            // 2023-11-14T22:13:20Z
            let k = raw_key(
                InputKind::SyslogUdp,
                1_700_000_000_000_000_000,
                "edge 1/a",
                "0190-xyz",
            );
            assert_eq!(
                k,
                "raw/syslog_udp/hour=2023-11-14T22/edge-1-a_0190-xyz.nlraw.zst"
            );
            assert_eq!(stem(&k), "edge-1-a_0190-xyz");
            assert_eq!(hour_label(0), "1970-01-01T00");
            assert_eq!(hour_label(-1), "1969-12-31T23");
            assert_eq!(hour_label(951_782_400), "2000-02-29T00");
        }
    }
}
