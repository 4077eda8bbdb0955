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

pub mod heartbeat;

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

/// A record's fixed part; its payload is `buf[start + FIXED..start + len]` of the reader.
struct Fixed {
    recv_ns: i64,
    kind: InputKind,
    flags: u8,
    peer: Option<SocketAddr>,
    start: usize,
    len: usize,
}

/// Why a record could not be read: the object's damage, or the input restarted from its
/// beginning to read carefully (see [`Decoded`]).
enum Miss {
    Raw(RawError),
    Restarted,
}

impl From<RawError> for Miss {
    fn from(e: RawError) -> Self {
        Self::Raw(e)
    }
}

/// A [`Decoded`] input restarts once at most; a second time would be a bug, reported as damage.
fn restarted_twice(index: u64) -> RawError {
    RawError::Truncated {
        index,
        reason: "the input restarted twice".into(),
    }
}

/// The reader's buffer when reading ahead. Zeroed once per object, so kept small: 256 KiB
/// cost normalize 0.7 % of its instructions in that memset; at 64 KiB the unconsumed tail (a
/// step and a part record) moves to the front every 32 KiB instead of every 128 KiB.
const CHUNK: usize = 64 * 1024;
/// Decoded bytes asked of the input at a time when reading ahead (unless a record needs more):
/// zstd copies them out of its window, and copies this short stay vector moves.
const STEP: usize = 4 * 1024;

thread_local! {
    /// The buffer of the last reader this thread dropped, for its next: a new one per object
    /// was a 64 KiB allocation, zeroed, and freed again.
    static SPARE_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Reads a raw object. Iterates records; after an error the reader stops.
pub struct BatchReader<R: Read> {
    input: R,
    header: BatchHeader,
    index: u64,
    done: bool,
    /// Decoded bytes; `buf[pos..end]` are not consumed yet. Reused: it only grows.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Read exactly the bytes each record needs (the length, then the record), as the reader
    /// always did: how much a damaged zstd stream yields depends on the read sizes. Otherwise
    /// (a [`Decoded`] input) read ahead in large steps; on damage the input restarts and the
    /// object is read again carefully.
    careful: bool,
    /// The input ended cleanly, or failed: no more bytes will come.
    eof: bool,
    failed: Option<io::Error>,
}

impl<'a> BatchReader<Decoded<'a>> {
    /// Opens a compressed raw object held in memory.
    ///
    /// The object is decoded ahead into the reader's buffer, a few KiB at a time, and records
    /// are read there: two reads through a streaming decoder per record (a `BufReader` and a
    /// zstd call each) cost normalize 2.1 % of its instructions (bench/normalize.sh's 3-hour
    /// day, 60 objects: 18,603 -> 18,219 per row). A damaged or truncated object is read again
    /// from its start as before (see [`Decoded`]), so it yields the same records and error.
    pub fn from_compressed(bytes: &'a [u8]) -> Result<Self, RawError> {
        let mut input = Decoded::new(bytes)?;
        let header = match read_header(&mut input) {
            Err(_) if input.restarted() => read_header(&mut input)?,
            h => h?,
        };
        let careful = input.restarted();
        Ok(Self::with_header(input, header, careful))
    }
}

/// The magic, version and JSON header at the start of a raw object.
fn read_header<R: Read>(input: &mut R) -> Result<BatchHeader, RawError> {
    let mut pre = [0u8; 10];
    read_exact_or(input, &mut pre).map_err(|_| RawError::BadMagic)?;
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
    serde_json::from_slice(&json).map_err(|e| RawError::Header(e.to_string()))
}

impl<R: Read> BatchReader<R> {
    /// Opens an uncompressed stream.
    pub fn new(mut input: R) -> Result<Self, RawError> {
        let header = read_header(&mut input)?;
        Ok(Self::with_header(input, header, true))
    }

    fn with_header(input: R, header: BatchHeader, careful: bool) -> Self {
        Self {
            input,
            header,
            index: 0,
            done: false,
            // Its bytes are stale, never read: only `buf[pos..end]` holds this object's.
            buf: SPARE_BUF.take(),
            pos: 0,
            end: 0,
            careful,
            eof: false,
            failed: None,
        }
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Index the next record will have.
    pub fn next_index(&self) -> u64 {
        self.index
    }

    /// Makes `need` unconsumed bytes available if the input has them; returns how many are.
    /// Fewer means the input ended (`eof`) or failed (`failed`).
    fn fill(&mut self, need: usize) -> Result<usize, Miss> {
        loop {
            let avail = self.end - self.pos;
            if avail >= need || self.eof || self.failed.is_some() {
                return Ok(avail);
            }
            // Unconsumed bytes move to the front when the record would not fit after them, or
            // (reading ahead) when less than half a chunk is left to read into.
            let tail = self.buf.len() - self.end;
            if self.buf.len() - self.pos < need || (!self.careful && tail < CHUNK / 2) {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end = avail;
                self.pos = 0;
                let len = if self.careful { need } else { need.max(CHUNK) };
                if self.buf.len() < len {
                    self.buf.resize(len, 0);
                }
            }
            let to = if self.careful {
                self.pos + need
            } else {
                (self.end + STEP).max(self.pos + need).min(self.buf.len())
            };
            match self.input.read(&mut self.buf[self.end..to]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if Restarted::is(&e) => return Err(Miss::Restarted),
                Err(e) => self.failed = Some(e),
            }
        }
    }

    /// The input's damage, for a record whose `need` bytes did not all come.
    fn short(&mut self, index: u64, got: usize, need: usize, what: &str) -> RawError {
        let reason = match &self.failed {
            Some(e) => e.to_string(),
            None => format!("{got} of {need} {what}"),
        };
        RawError::Truncated { index, reason }
    }

    /// The input restarted from the object's beginning (see [`Decoded`]): from now on read
    /// carefully, past the header and the records already read, to where the reading was.
    fn restart(&mut self) -> Result<(), RawError> {
        let reached = self.index;
        self.careful = true;
        (self.pos, self.end, self.eof, self.failed) = (0, 0, false, None);
        read_header(&mut self.input).map_err(|_| RawError::Truncated {
            index: reached,
            reason: "the header could not be read again".into(),
        })?;
        self.index = 0;
        while self.index < reached {
            match self.read_record() {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(RawError::Truncated {
                        index: self.index,
                        reason: "the object ended early when read again".into(),
                    });
                }
                Err(Miss::Raw(e)) => return Err(e),
                Err(Miss::Restarted) => return Err(restarted_twice(self.index)),
            }
        }
        Ok(())
    }

    /// Reads the next record, restarting the reading carefully if the input asks to.
    fn read_one(&mut self) -> Result<Option<Fixed>, RawError> {
        match self.read_record() {
            Ok(r) => Ok(r),
            Err(Miss::Raw(e)) => Err(e),
            Err(Miss::Restarted) => {
                self.restart()?;
                match self.read_record() {
                    Ok(r) => Ok(r),
                    Err(Miss::Raw(e)) => Err(e),
                    Err(Miss::Restarted) => Err(restarted_twice(self.index)),
                }
            }
        }
    }

    /// Reads the next record into `self.buf`: its 4 length bytes, then the record.
    fn read_record(&mut self) -> Result<Option<Fixed>, Miss> {
        let index = self.index;
        let got = self.fill(4)?;
        if got == 0 && self.failed.is_none() {
            return Ok(None);
        }
        if got < 4 {
            return Err(self.short(index, got, 4, "length bytes").into());
        }
        let at = self.pos;
        let len = u32::from_le_bytes([
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ]) as usize;
        self.pos += 4;
        if !(FIXED..=MAX_RECORD).contains(&len) {
            return Err(RawError::Record {
                index,
                reason: format!("record length {len} out of range"),
            }
            .into());
        }
        let got = self.fill(len)?;
        if got < len {
            return Err(self.short(index, got, len, "bytes").into());
        }
        let start = self.pos;
        self.pos += len;
        let buf = &self.buf[start..start + len];
        let crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if crc32fast::hash(&buf[4..]) != crc {
            return Err(RawError::Record {
                index,
                reason: "checksum mismatch".into(),
            }
            .into());
        }
        let f = &buf[4..FIXED];
        let recv_ns = i64::from_le_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]]);
        let kind = InputKind::from_code(f[8]).ok_or_else(|| RawError::Record {
            index,
            reason: format!("unknown input kind {}", f[8]),
        })?;
        let flags = f[9];
        let port = u16::from_le_bytes([f[28], f[29]]);
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&f[12..28]);
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
                }
                .into());
            }
        };
        self.index += 1;
        Ok(Some(Fixed {
            recv_ns,
            kind,
            flags,
            peer,
            start,
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
        let payload = self
            .buf
            .get(fixed.start + FIXED..fixed.start + fixed.len)
            .unwrap_or_default();
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

impl<R: Read> Drop for BatchReader<R> {
    fn drop(&mut self) {
        // One enlarged for a long record is not kept.
        if self.buf.len() <= CHUNK {
            SPARE_BUF.set(std::mem::take(&mut self.buf));
        }
    }
}

impl<R: Read> Iterator for BatchReader<R> {
    type Item = Result<(u64, Record), RawError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref()
            .map(|r| r.map(|(index, rec)| (index, rec.to_record())))
    }
}

/// The error a [`Decoded`] input returns once, when it has restarted from the object's
/// beginning; private, so no other input can return it.
#[derive(Debug)]
struct Restarted;

impl std::fmt::Display for Restarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("restarted from the beginning")
    }
}

impl std::error::Error for Restarted {}

impl Restarted {
    fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Restarted>())
    }
}

/// The input of [`BatchReader::from_compressed`]: zstd frames held in memory, decoded straight
/// from the slice into however large a buffer the reader offers.
///
/// How much a damaged stream yields depends on the read sizes (zstd drops what it decoded in a
/// call that then fails), so on any damage — a corrupt block, a truncated frame — it starts
/// over: it returns [`Restarted`] once, and from then on reads the object from its beginning
/// through the streaming decoder the reader always used, which the reader reads carefully
/// again. A damaged object thus yields exactly the records and the error it always did.
pub struct Decoded<'a> {
    compressed: &'a [u8],
    decoder: zstd::stream::raw::Decoder<'static>,
    /// Compressed bytes consumed.
    pos: usize,
    /// The last frame decoded ended (a clean end of input is only one after a whole frame).
    frame_done: bool,
    careful: Option<zstd::stream::read::Decoder<'static, io::BufReader<&'a [u8]>>>,
}

impl<'a> Decoded<'a> {
    fn new(compressed: &'a [u8]) -> io::Result<Self> {
        Ok(Self {
            compressed,
            decoder: zstd::stream::raw::Decoder::new()?,
            pos: 0,
            frame_done: false,
            careful: None,
        })
    }

    /// Whether the input started over (see [`Decoded`]).
    fn restarted(&self) -> bool {
        self.careful.is_some()
    }

    fn restart(&mut self) -> io::Result<usize> {
        self.careful = Some(zstd::stream::read::Decoder::new(self.compressed)?);
        Err(io::Error::other(Restarted))
    }
}

impl Read for Decoded<'_> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        if let Some(c) = &mut self.careful {
            return c.read(dst);
        }
        if dst.is_empty() {
            return Ok(0);
        }
        loop {
            let rest = self.compressed.get(self.pos..).unwrap_or_default();
            if rest.is_empty() {
                return if self.frame_done {
                    Ok(0)
                } else {
                    // Truncated: the streaming decoder says so, as it always has.
                    self.restart()
                };
            }
            if self.frame_done {
                // The next frame of the object.
                if self.decoder.reinit().is_err() {
                    return self.restart();
                }
                self.frame_done = false;
            }
            let mut src = InBuffer::around(rest);
            let mut out = OutBuffer::around(dst);
            let hint = match self.decoder.run(&mut src, &mut out) {
                Ok(h) => h,
                Err(_) => return self.restart(),
            };
            let (read, written) = (src.pos(), out.pos());
            self.pos += read;
            self.frame_done = hint == 0;
            if written > 0 {
                return Ok(written);
            }
            if read == 0 && !self.frame_done {
                // No progress on input it has: let the streaming decoder judge it.
                return self.restart();
            }
        }
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

    /// Everything a reader yields, as text: the header or the error opening it, then each
    /// record or error.
    fn everything<R: Read>(reader: Result<BatchReader<R>, RawError>) -> Vec<String> {
        match reader {
            Err(e) => vec![format!("open: {e:?}")],
            Ok(rd) => std::iter::once(format!("{:?}", rd.header()))
                .chain(rd.map(|r| format!("{r:?}")))
                .collect(),
        }
    }

    /// Reading ahead in large steps yields what reading each record through the streaming
    /// decoder did, for objects damaged anywhere (a flipped byte, a cut) and for whole ones:
    /// the same records, then the same error at the same index.
    #[test]
    fn reading_ahead_yields_what_careful_reading_did() {
        let mut w = BatchWriter::new(&header(), 1).unwrap();
        let mut seed = 7u64;
        for i in 0..3000u32 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (seed >> 56) as usize;
            let payload: Vec<u8> = (0..n)
                .map(|k| b"abcdefgh 0123"[(k + i as usize) % 13])
                .collect();
            w.push(&Record {
                recv_ns: i64::from(i) * 1_000_003,
                kind: InputKind::SyslogUdp,
                flags: 0,
                peer: Some("192.0.2.1:514".parse().unwrap()),
                payload,
            })
            .unwrap();
        }
        let whole = w.finish().unwrap();
        // Two frames, as the relay writes one per MiB of plaintext.
        let mut plain = Vec::new();
        zstd::stream::read::Decoder::new(&whole[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        let mut framed = zstd::bulk::compress(&plain[..plain.len() / 2], 1).unwrap();
        framed.extend(zstd::bulk::compress(&plain[plain.len() / 2..], 1).unwrap());
        let careful = |b: &[u8]| {
            everything(
                zstd::stream::read::Decoder::new(b)
                    .map_err(RawError::from)
                    .and_then(BatchReader::new),
            )
        };
        let mut partial = 0;
        for object in [&whole, &framed] {
            let mut rd = BatchReader::from_compressed(object).unwrap();
            while rd.next_ref().is_some() {}
            assert!(!rd.careful, "a whole object is read ahead to its end");
            let all = everything(BatchReader::from_compressed(object));
            assert_eq!(all.len(), 3001);
            assert_eq!(all, careful(object));
            let step = (object.len() / 97).max(1);
            for at in (0..object.len()).step_by(step) {
                let mut bad = object.to_vec();
                bad[at] ^= 0x5a;
                let got = everything(BatchReader::from_compressed(&bad));
                partial += usize::from((3..3001).contains(&got.len()));
                assert_eq!(got, careful(&bad), "byte {at} flipped");
                let cut = &object[..at];
                assert_eq!(
                    everything(BatchReader::from_compressed(cut)),
                    careful(cut),
                    "cut at {at}"
                );
            }
        }
        assert!(partial > 50, "damage part-way: {partial} objects");
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

    /// The input kind in a raw key (`raw/<kind>/…`).
    pub fn kind_of(raw_key: &str) -> Option<&str> {
        raw_key.strip_prefix("raw/")?.split('/').next()
    }

    /// The hour label of a raw key (`…/hour=<label>/…`): the hour its batch was created in.
    pub fn hour_of(raw_key: &str) -> Option<&str> {
        raw_key.split('/').find_map(|seg| seg.strip_prefix("hour="))
    }

    /// A [`hour_label`] read back: the hour's start in Unix seconds.
    pub fn parse_hour_label(label: &str) -> Option<i64> {
        let b = label.as_bytes();
        if b.len() != 13 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = label.get(r)?;
            s.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| s.parse().ok())?
        };
        let (y, m, d, h) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
            return None;
        }
        // Days from civil (H. Hinnant), the inverse of `civil_from_days`.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + h * 3600;
        // A label that does not round-trip (31 February) is not one.
        (hour_label(secs) == label).then_some(secs)
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
        fn hour_labels_read_back() {
            for secs in [0, 1_795_510_800, 951_782_400, -3600] {
                assert_eq!(parse_hour_label(&hour_label(secs)), Some(secs));
            }
            for bad in [
                "2026-02-31T00",
                "2026-11-24T24",
                "2026-11-24 10",
                "2026-11-2",
                "2026-1a-24T10",
            ] {
                assert_eq!(parse_hour_label(bad), None, "{bad}");
            }
        }

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
