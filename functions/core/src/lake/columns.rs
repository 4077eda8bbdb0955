//! Each table's columns, defined once: name, Arrow type, and how to read the value from a row.
//! The Parquet writer, the schema docs test and the query layer all use these definitions.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, ArrowPrimitiveType, BinaryBuilder, PrimitiveArray, StringArray, StringBuilder,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Field, Int16Type, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};

use crate::model::{Event, Micros, Reject, Row, Table};

/// How a column's value is read from a lake row: its type and the extractor, kept as the
/// closure itself so that building a column is one loop with the extractor inlined (through a
/// function pointer each value cost a call: ~3.5 M of them for 60 raw objects). String
/// extractors append to the column's value text and return false for null, so building a
/// column allocates nothing per row.
pub struct Get<R> {
    ty: Ty,
    ops: Box<dyn Ops<R>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Time,
    Str,
    I16,
    I32,
    I64,
    Bin,
}

impl<R: 'static> Get<R> {
    pub fn time(f: impl Fn(&R) -> Option<Micros> + 'static) -> Self {
        Self::primitive::<TimestampMicrosecondType>(Ty::Time, f)
    }

    pub fn text(f: impl Fn(&R, &mut TextBuf) -> bool + 'static) -> Self {
        Self {
            ty: Ty::Str,
            ops: Box::new(Text(f)),
        }
    }

    /// A string column whose value the row holds as text: constant columns are found by
    /// comparing the borrowed values (the same text is often the same pointer), not copies.
    pub fn str(f: impl for<'a> Fn(&'a R) -> Option<&'a str> + 'static) -> Self {
        Self {
            ty: Ty::Str,
            ops: Box::new(Str(f)),
        }
    }

    /// An address column, stored as its canonical text: constant columns are found by
    /// comparing the addresses (the text is one-to-one with them), formatted only when built.
    pub fn ip(f: impl Fn(&R) -> Option<IpAddr> + 'static) -> Self {
        Self {
            ty: Ty::Str,
            ops: Box::new(Ip(f)),
        }
    }

    pub fn i16(f: impl Fn(&R) -> Option<i16> + 'static) -> Self {
        Self::primitive::<Int16Type>(Ty::I16, f)
    }

    pub fn i32(f: impl Fn(&R) -> Option<i32> + 'static) -> Self {
        Self::primitive::<Int32Type>(Ty::I32, f)
    }

    pub fn i64(f: impl Fn(&R) -> Option<i64> + 'static) -> Self {
        Self::primitive::<Int64Type>(Ty::I64, f)
    }

    pub fn bin(f: impl for<'a> Fn(&'a R) -> Option<&'a [u8]> + 'static) -> Self {
        Self {
            ty: Ty::Bin,
            ops: Box::new(Bin(f)),
        }
    }

    fn primitive<T: ArrowPrimitiveType>(
        ty: Ty,
        f: impl Fn(&R) -> Option<T::Native> + 'static,
    ) -> Self {
        Self {
            ty,
            ops: Box::new(Primitive::<T, _>(f, std::marker::PhantomData)),
        }
    }
}

/// A column's work on a set of rows, with its extractor inlined.
trait Ops<R> {
    fn build(&self, rows: &[&R]) -> ArrayRef;
    /// Some(whether it is null) when every row has the first row's value; None otherwise or
    /// without rows.
    fn constant(&self, rows: &[&R]) -> Option<bool>;
}

struct Primitive<T, F>(F, std::marker::PhantomData<T>);
struct Text<F>(F);
struct Bin<F>(F);
struct Str<F>(F);
struct Ip<F>(F);

impl<R, T: ArrowPrimitiveType, F: Fn(&R) -> Option<T::Native>> Ops<R> for Primitive<T, F> {
    fn build(&self, rows: &[&R]) -> ArrayRef {
        let a = build_primitive::<R, T>(&self.0, rows);
        if let DataType::Timestamp(unit, _) = T::DATA_TYPE {
            // The lake's times are UTC (`with_timezone`, for the one timestamp type used).
            return Arc::new(a.with_data_type(DataType::Timestamp(unit, Some("UTC".into()))));
        }
        Arc::new(a)
    }

    fn constant(&self, rows: &[&R]) -> Option<bool> {
        same_value(&self.0, rows)
    }
}

impl<R, F: Fn(&R, &mut TextBuf) -> bool> Ops<R> for Text<F> {
    fn build(&self, rows: &[&R]) -> ArrayRef {
        build_str(&self.0, rows)
    }

    fn constant(&self, rows: &[&R]) -> Option<bool> {
        same_text(&self.0, rows)
    }
}

impl<R, F: for<'a> Fn(&'a R) -> Option<&'a str>> Ops<R> for Str<F> {
    fn build(&self, rows: &[&R]) -> ArrayRef {
        build_str(&|r: &R, b: &mut TextBuf| opt_str(b, (self.0)(r)), rows)
    }

    fn constant(&self, rows: &[&R]) -> Option<bool> {
        let (first, rest) = rows.split_first()?;
        let v = (self.0)(first);
        let same = |w: Option<&str>| match (w, v) {
            (Some(a), Some(b)) => std::ptr::eq(a, b) || a == b,
            (a, b) => a.is_none() && b.is_none(),
        };
        rest.iter()
            .all(|r| same((self.0)(r)))
            .then_some(v.is_none())
    }
}

impl<R, F: Fn(&R) -> Option<IpAddr>> Ops<R> for Ip<F> {
    fn build(&self, rows: &[&R]) -> ArrayRef {
        build_str(&IpText(&self.0), rows)
    }

    fn constant(&self, rows: &[&R]) -> Option<bool> {
        same_value(&self.0, rows)
    }
}

impl<R, F: for<'a> Fn(&'a R) -> Option<&'a [u8]>> Ops<R> for Bin<F> {
    fn build(&self, rows: &[&R]) -> ArrayRef {
        let mut b = BinaryBuilder::with_capacity(rows.len(), rows.len() * 128);
        rows.iter().for_each(|r| b.append_option((self.0)(r)));
        Arc::new(b.finish())
    }

    fn constant(&self, _rows: &[&R]) -> Option<bool> {
        None
    }
}

pub struct Column<R: 'static> {
    pub name: &'static str,
    pub doc: &'static str,
    pub get: Get<R>,
}

impl<R> Column<R> {
    pub fn data_type(&self) -> DataType {
        match self.get.ty {
            Ty::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Ty::Str => DataType::Utf8,
            Ty::I16 => DataType::Int16,
            Ty::I32 => DataType::Int32,
            Ty::I64 => DataType::Int64,
            Ty::Bin => DataType::Binary,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.get.ty {
            Ty::Time => "timestamp[us, UTC]",
            Ty::Str => "string",
            Ty::I16 => "int16",
            Ty::I32 => "int32",
            Ty::I64 => "int64",
            Ty::Bin => "binary",
        }
    }

    /// Builds this column for `rows`.
    pub fn build(&self, rows: &[&R]) -> ArrayRef {
        self.get.ops.build(rows)
    }
}

/// What a column holds for a set of rows, as normalize's per-object writer takes it.
pub enum Built {
    /// No row has a value.
    Null,
    /// Every row has this value: a one-row array.
    Single(ArrayRef),
    /// Anything else: the column's array.
    Values(ArrayRef),
}

impl<R> Column<R> {
    /// [`Column::build`], except that a column whose rows are all null or all one value is
    /// found out by comparing each row's value with the first and is not built (a per-object
    /// output's raw key, format, device, enrichment and the fields its vendor never logs: over
    /// half of its column chunks). Other columns cost the comparisons up to their first
    /// differing row, then the build.
    pub fn build_or_constant(&self, rows: &[&R]) -> Built {
        match self.get.ops.constant(rows) {
            Some(true) => Built::Null,
            Some(false) => Built::Single(self.build(&rows[..1])),
            None => Built::Values(self.build(rows)),
        }
    }
}

/// Some(whether it is null) when every row has the first row's value; None otherwise or
/// without rows.
fn same_value<R, T: PartialEq>(f: &impl Fn(&R) -> Option<T>, rows: &[&R]) -> Option<bool> {
    let (first, rest) = rows.split_first()?;
    let v = f(first);
    rest.iter().all(|r| f(r) == v).then_some(v.is_none())
}

/// [`same_value`] for text: each row's text is appended after the first's, compared with it
/// and cut off again.
fn same_text<R>(f: &impl Fn(&R, &mut TextBuf) -> bool, rows: &[&R]) -> Option<bool> {
    let (first, rest) = rows.split_first()?;
    let mut buf = TextBuf(Vec::new());
    let present = f(first, &mut buf);
    if !present {
        // An extractor that wrote before saying "null" leaves nothing behind.
        buf.0.clear();
    }
    let n = buf.0.len();
    for r in rest {
        let p = f(r, &mut buf);
        let same = p == present && (!p || buf.0[n..] == buf.0[..n]);
        buf.0.truncate(n);
        if !same {
            return None;
        }
    }
    Some(!present)
}

/// A primitive column collected straight into its value buffer (one allocation of the exact
/// size) with a validity bitmap made only when a value is missing: the same array as a
/// `PrimitiveBuilder` gives (0 in null slots), without its per-value call and capacity checks
/// (per-object outputs build ~15 primitive columns per row).
fn build_primitive<R, T: ArrowPrimitiveType>(
    f: &impl Fn(&R) -> Option<T::Native>,
    rows: &[&R],
) -> PrimitiveArray<T> {
    let mut nulls = NullBufferBuilder::new(rows.len());
    let values: Vec<T::Native> = rows
        .iter()
        .map(|r| match f(r) {
            Some(v) => {
                nulls.append_non_null();
                v
            }
            None => {
                nulls.append_null();
                T::Native::default()
            }
        })
        .collect();
    PrimitiveArray::new(ScalarBuffer::from(values), nulls.finish())
}

/// The value text of a string column being built: UTF-8 appended piece by piece (only `&str`
/// or ASCII goes in) and checked once, when the column's array is made.
pub struct TextBuf(Vec<u8>);

impl TextBuf {
    pub fn push_str(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// The first `n` of some ASCII bytes (digits, dots), appended without a UTF-8 check of
    /// their own. All `N` are appended, then cut to `n`: a copy of fixed length is a few
    /// moves, one of a variable length a call to memcpy.
    #[inline(always)]
    fn push_ascii_head<const N: usize>(&mut self, b: &[u8; N], n: usize) {
        debug_assert!(n <= N && b[..n].is_ascii());
        let end = self.0.len() + n.min(N);
        self.0.extend_from_slice(b);
        self.0.truncate(end);
    }
}

impl std::fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

/// What a string column's loop calls for each row: appends the row's text, says whether it
/// has one. A trait, so the address columns' formatting is inlined into the loop (as a
/// closure it stayed a call per row).
trait Texts<R> {
    fn text(&self, r: &R, b: &mut TextBuf) -> bool;
}

impl<R, F: Fn(&R, &mut TextBuf) -> bool> Texts<R> for F {
    #[inline(always)]
    fn text(&self, r: &R, b: &mut TextBuf) -> bool {
        self(r, b)
    }
}

/// An address column's text: the address of its extractor, formatted.
struct IpText<'a, F>(&'a F);

impl<R, F: Fn(&R) -> Option<IpAddr>> Texts<R> for IpText<'_, F> {
    #[inline(always)]
    fn text(&self, r: &R, b: &mut TextBuf) -> bool {
        ip(b, (self.0)(r))
    }
}

/// The most a string column reserves from its first value's length (1 MiB).
const FIRST_RESERVE_CAP: usize = 1 << 20;

/// A string column written straight into its value and offset buffers: the extractors append
/// to the value text itself, so a value is neither copied through a scratch string nor pushed
/// through the builder's checks (per-object outputs build ~10 string columns per row).
fn build_str<R>(f: &impl Texts<R>, rows: &[&R]) -> ArrayRef {
    let mut values = TextBuf(Vec::new());
    let mut offsets: Vec<i32> = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    let mut nulls = NullBufferBuilder::new(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let start = values.0.len();
        if f.text(r, &mut values) {
            nulls.append_non_null();
            if start == 0 {
                // The first value sizes the buffer: most columns' values are of one length or
                // near it (one raw key, one format, addresses), so this is the one allocation.
                // Capped, so one long first message (a 64 KiB mail line) does not reserve that
                // much for every row of a free-text column; the buffer grows past it as needed.
                // (With room for the bytes appended past a value before it is cut to its
                // length, see `TextBuf::push_ascii_head`.)
                let guess = (values.0.len() + 1).saturating_mul(rows.len() - i);
                values.0.reserve(guess.min(FIRST_RESERVE_CAP) + 16);
            }
        } else {
            // An extractor that wrote before saying "null" leaves nothing behind.
            values.0.truncate(start);
            nulls.append_null();
        }
        // Wraps only past 2 GiB of text, which is checked once below.
        offsets.push(values.0.len() as i32);
    }
    if i32::try_from(values.0.len()).is_ok() {
        // The offsets ascend and the text is checked as UTF-8 here, once for the column.
        let array = StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from(values.0),
            nulls.finish(),
        );
        if let Ok(a) = array {
            return Arc::new(a);
        }
    }
    // Over 2 GiB of text (never for one object's rows): the builder's large-offset checks.
    // `TextBuf` takes only `&str` and table ASCII, so the lossy conversion replaces nothing.
    let mut b = StringBuilder::with_capacity(rows.len(), 0);
    let mut buf = TextBuf(Vec::new());
    for r in rows {
        buf.0.clear();
        if f.text(r, &mut buf) {
            b.append_value(String::from_utf8_lossy(&buf.0))
        } else {
            b.append_null()
        }
    }
    Arc::new(b.finish())
}

pub fn schema_of<R>(cols: &[Column<R>]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(c.name, c.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

#[inline(always)]
fn ip(buf: &mut TextBuf, v: Option<IpAddr>) -> bool {
    match v {
        Some(IpAddr::V4(a)) => {
            push_ipv4(buf, a);
            true
        }
        Some(a) => push_other(buf, a),
        None => false,
    }
}

/// An IPv6 address's text (rare in the lake's rows: kept out of the column loops).
#[inline(never)]
fn push_other(buf: &mut TextBuf, a: IpAddr) -> bool {
    write!(buf, "{a}").is_ok()
}

/// Dotted quad without the formatting machinery: three addresses per NAT row make `Display`
/// a visible share of the writer's time. Each octet's text with its dot comes from a table as
/// an integer; the four are shifted together into one and appended at once (stepping through
/// the quad a byte range at a time cost twice the instructions).
#[inline(always)]
fn push_ipv4(buf: &mut TextBuf, a: std::net::Ipv4Addr) {
    let [t0, t1, t2, t3] = a.octets().map(|o| OCTET_DOT[usize::from(o)]);
    // Two octets with their dots take at most 8 bytes; the quad at most 16 with its last dot.
    let half =
        |(a, n): (u32, u8), (b, m): (u32, u8)| (u64::from(a) | u64::from(b) << (8 * n), n + m);
    let (head, h) = half(t0, t1);
    let (tail, t) = half(t2, t3);
    let quad = u128::from(head) | u128::from(tail) << (8 * h);
    // Without the last dot.
    buf.push_ascii_head(&quad.to_le_bytes(), usize::from(h + t - 1));
}

/// The decimal text of 0..=255 followed by a dot, as the bytes of a little-endian integer,
/// and its length (2 to 4).
const OCTET_DOT: [(u32, u8); 256] = {
    const fn digit(d: u32) -> u32 {
        b'0' as u32 + d
    }
    let mut t = [(0u32, 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let v = i as u32;
        t[i] = if v >= 100 {
            let text = digit(v / 100) | digit(v / 10 % 10) << 8 | digit(v % 10) << 16;
            (text | (b'.' as u32) << 24, 4)
        } else if v >= 10 {
            (digit(v / 10) | digit(v % 10) << 8 | (b'.' as u32) << 16, 3)
        } else {
            (digit(v) | (b'.' as u32) << 8, 2)
        };
        i += 1;
    }
    t
};

fn opt_str(buf: &mut TextBuf, v: Option<&str>) -> bool {
    match v {
        Some(s) => {
            buf.push_str(s);
            true
        }
        None => false,
    }
}

fn port(v: Option<u16>) -> Option<i32> {
    v.map(i32::from)
}

fn count(v: Option<u64>) -> Option<i64> {
    v.map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

macro_rules! nat {
    ($r:ident, $e:ident => $body:expr) => {
        |$r: &Row| match &$r.event {
            Event::Nat($e) => $body,
            _ => None,
        }
    };
}

macro_rules! flow {
    ($r:ident, $e:ident => $body:expr) => {
        |$r: &Row| match &$r.event {
            Event::Flow($e) => $body,
            _ => None,
        }
    };
}

macro_rules! fw {
    ($r:ident, $e:ident => $body:expr) => {
        |$r: &Row| match &$r.event {
            Event::Firewall($e) => $body,
            _ => None,
        }
    };
}

/// The stored form of an event row's receive time: its delay after `time` in µs. Parquet cannot
/// encode one column against another, and the receive time alone takes ~33 bits a row however
/// it is encoded (an hour is 2^32 µs); the delay is a device's clock skew plus transit, a few
/// bits. Rejects, which have no `time`, keep `recv_time` itself.
pub const RECV_DELAY: &str = "recv_delay_us";

/// `recv_time − time`. Normalize bounds `time` to 1990..2200, so the difference overflows only
/// for a receive stamp near year −290,000 (a broken relay clock): then null, never a wrong value.
fn recv_delay(r: &Row) -> Option<i64> {
    r.envelope.recv_time.checked_sub(r.event.time())
}

/// Columns every event table ends with: envelope and provenance.
fn common() -> Vec<Column<Row>> {
    vec![
        Column {
            name: RECV_DELAY,
            doc: "When the relay received the record, as µs after `time` (`recv_time − time`; negative when the device's clock is ahead). The views, `natlake sql` and the live tail show `recv_time` = `time` + this; objects written before it hold `recv_time` instead",
            get: Get::i64(recv_delay),
        },
        Column {
            name: "device",
            doc: "Device that logged it: syslog HOSTNAME, else the sender's address",
            get: Get::str(|r: &Row| r.envelope.device.as_deref()),
        },
        Column {
            name: "format",
            doc: "Parser that produced the row (conntrack, goflow2, iptables, …)",
            get: Get::str(|r: &Row| Some(r.envelope.format)),
        },
        Column {
            name: "subscriber",
            doc: "Subscriber id from enrichment, when known",
            get: Get::str(|r: &Row| r.envelope.subscriber.as_deref()),
        },
        Column {
            name: "site",
            doc: "Enrichment: site of the longest IPAM prefix holding the inside address (src_ip)",
            get: Get::str(|r: &Row| r.envelope.enrichment.site.as_deref()),
        },
        Column {
            name: "prefix",
            doc: "Enrichment: that prefix (CIDR)",
            get: Get::text(
                |r: &Row, b: &mut TextBuf| match r.envelope.enrichment.prefix {
                    Some(p) => write!(b, "{p}").is_ok(),
                    None => false,
                },
            ),
        },
        Column {
            name: "role",
            doc: "Enrichment: that prefix's role",
            get: Get::str(|r: &Row| r.envelope.enrichment.role.as_deref()),
        },
        Column {
            name: "dst_asn",
            doc: "Enrichment: autonomous system number of dst_ip (MMDB ASN database)",
            get: Get::i64(|r: &Row| r.envelope.enrichment.dst_asn.map(i64::from)),
        },
        Column {
            name: "dst_as_org",
            doc: "Enrichment: organisation of that autonomous system",
            get: Get::str(|r: &Row| r.envelope.enrichment.dst_as_org.as_deref()),
        },
        Column {
            name: "dst_country",
            doc: "Enrichment: country of dst_ip, ISO 3166-1 alpha-2 (MMDB country / city database)",
            get: Get::str(|r: &Row| r.envelope.enrichment.dst_country.as_deref()),
        },
        Column {
            name: "raw_key",
            doc: "Provenance: key of the raw object the row came from",
            get: Get::str(|r: &Row| Some(&r.provenance.raw_key)),
        },
        Column {
            name: "raw_record",
            doc: "Provenance: index of the record in that raw object (0-based)",
            get: Get::i64(|r: &Row| Some(r.provenance.raw_record as i64)),
        },
    ]
}

pub fn nat_events() -> Vec<Column<Row>> {
    let mut v = vec![
        Column {
            name: "time",
            doc: "Event time (device clock when it logs one, else receive time), UTC",
            get: Get::time(|r: &Row| Some(r.event.time())),
        },
        Column {
            name: "event",
            doc: "session_create, session_delete, port_block_alloc, port_block_release, port_block_interim, address_bind, address_release, mapping_observed",
            get: Get::str(nat!(r, e => e.event.map(|k| k.as_str()))),
        },
        Column {
            name: "protocol",
            doc: "IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)",
            get: Get::i16(nat!(r, e => e.protocol.map(i16::from))),
        },
        Column {
            name: "src_ip",
            doc: "Inside (private, pre-NAT) address",
            get: Get::ip(nat!(r, e => e.src_ip)),
        },
        Column {
            name: "src_port",
            doc: "Inside port",
            get: Get::i32(nat!(r, e => port(e.src_port))),
        },
        Column {
            name: "x_ip",
            doc: "Public (translated, post-NAT) address",
            get: Get::ip(nat!(r, e => e.x_ip)),
        },
        Column {
            name: "x_port",
            doc: "Public port; first port of a port block",
            get: Get::i32(nat!(r, e => port(e.x_port))),
        },
        Column {
            name: "x_port_end",
            doc: "Last port of a port block (inclusive); null for single ports",
            get: Get::i32(nat!(r, e => port(e.x_port_end))),
        },
        Column {
            name: "dst_ip",
            doc: "Destination address, when the device logs it",
            get: Get::ip(nat!(r, e => e.dst_ip)),
        },
        Column {
            name: "dst_port",
            doc: "Destination port",
            get: Get::i32(nat!(r, e => port(e.dst_port))),
        },
        Column {
            name: "vrf",
            doc: "The inside VRF / routing instance / conntrack zone as the device names it (IPFIX: ingressVRFID, never the egress, public-side id; 0 = none)",
            get: Get::str(nat!(r, e => e.vrf.as_deref())),
        },
        Column {
            name: "direction",
            doc: "out (inside to outside) or in",
            get: Get::str(nat!(r, e => e.direction)),
        },
        Column {
            name: "end_time",
            doc: "End of an observed mapping (flows, whole-session records) or the device's session end; null on a mapping_observed sighting (start log, listing line, packet log line): its end is not known",
            get: Get::time(nat!(r, e => e.end_time)),
        },
        Column {
            name: "bytes_out",
            doc: "Bytes inside to outside (conntrack orig counters)",
            get: Get::i64(nat!(r, e => count(e.bytes_out))),
        },
        Column {
            name: "bytes_in",
            doc: "Bytes outside to inside (conntrack reply counters)",
            get: Get::i64(nat!(r, e => count(e.bytes_in))),
        },
        Column {
            name: "packets_out",
            doc: "Packets inside to outside",
            get: Get::i64(nat!(r, e => count(e.packets_out))),
        },
        Column {
            name: "packets_in",
            doc: "Packets outside to inside",
            get: Get::i64(nat!(r, e => count(e.packets_in))),
        },
    ];
    v.extend(common());
    v
}

pub fn flows() -> Vec<Column<Row>> {
    let mut v = vec![
        Column {
            name: "time",
            doc: "Flow start, UTC",
            get: Get::time(|r: &Row| Some(r.event.time())),
        },
        Column {
            name: "end_time",
            doc: "Flow end, UTC",
            get: Get::time(flow!(r, e => e.end_time)),
        },
        Column {
            name: "protocol",
            doc: "IANA protocol number",
            get: Get::i16(flow!(r, e => e.protocol.map(i16::from))),
        },
        Column {
            name: "src_ip",
            doc: "Source address (pre-NAT)",
            get: Get::ip(flow!(r, e => e.src_ip)),
        },
        Column {
            name: "src_port",
            doc: "Source port",
            get: Get::i32(flow!(r, e => port(e.src_port))),
        },
        Column {
            name: "dst_ip",
            doc: "Destination address",
            get: Get::ip(flow!(r, e => e.dst_ip)),
        },
        Column {
            name: "dst_port",
            doc: "Destination port",
            get: Get::i32(flow!(r, e => port(e.dst_port))),
        },
        Column {
            name: "post_nat_src_ip",
            doc: "Source address after NAT (IPFIX IE 225/281)",
            get: Get::ip(flow!(r, e => e.post_nat_src_ip)),
        },
        Column {
            name: "post_nat_src_port",
            doc: "Source port after NAT (IE 227)",
            get: Get::i32(flow!(r, e => port(e.post_nat_src_port))),
        },
        Column {
            name: "post_nat_dst_ip",
            doc: "Destination address after NAT (IE 226/282)",
            get: Get::ip(flow!(r, e => e.post_nat_dst_ip)),
        },
        Column {
            name: "post_nat_dst_port",
            doc: "Destination port after NAT (IE 228)",
            get: Get::i32(flow!(r, e => port(e.post_nat_dst_port))),
        },
        Column {
            name: "bytes",
            doc: "Bytes (as exported; multiply by sampling_rate for an estimate)",
            get: Get::i64(flow!(r, e => count(e.bytes))),
        },
        Column {
            name: "packets",
            doc: "Packets",
            get: Get::i64(flow!(r, e => count(e.packets))),
        },
        Column {
            name: "in_if",
            doc: "Input interface index",
            get: Get::i64(flow!(r, e => e.in_if.map(i64::from))),
        },
        Column {
            name: "out_if",
            doc: "Output interface index",
            get: Get::i64(flow!(r, e => e.out_if.map(i64::from))),
        },
        Column {
            name: "sampling_rate",
            doc: "Sampling rate (0 or null: unsampled)",
            get: Get::i64(flow!(r, e => count(e.sampling_rate))),
        },
        Column {
            name: "exporter",
            doc: "Exporter address named in the record",
            get: Get::ip(flow!(r, e => e.exporter)),
        },
        Column {
            name: "vrf",
            doc: "VRF / routing instance",
            get: Get::str(flow!(r, e => e.vrf.as_deref())),
        },
    ];
    v.extend(common());
    v
}

pub fn firewall() -> Vec<Column<Row>> {
    let mut v = vec![
        Column {
            name: "time",
            doc: "Event time, UTC",
            get: Get::time(|r: &Row| Some(r.event.time())),
        },
        Column {
            name: "action",
            doc: "allow, deny or log",
            get: Get::str(fw!(r, e => Some(e.action.as_str()))),
        },
        Column {
            name: "rule",
            doc: "Rule name or log prefix (e.g. Cloud Foundry OK_<container>)",
            get: Get::str(fw!(r, e => e.rule.as_deref())),
        },
        Column {
            name: "protocol",
            doc: "IANA protocol number",
            get: Get::i16(fw!(r, e => e.protocol.map(i16::from))),
        },
        Column {
            name: "src_ip",
            doc: "Source address",
            get: Get::ip(fw!(r, e => e.src_ip)),
        },
        Column {
            name: "src_port",
            doc: "Source port",
            get: Get::i32(fw!(r, e => port(e.src_port))),
        },
        Column {
            name: "dst_ip",
            doc: "Destination address",
            get: Get::ip(fw!(r, e => e.dst_ip)),
        },
        Column {
            name: "dst_port",
            doc: "Destination port",
            get: Get::i32(fw!(r, e => port(e.dst_port))),
        },
        Column {
            name: "in_if",
            doc: "Input interface name",
            get: Get::str(fw!(r, e => e.in_if.as_deref())),
        },
        Column {
            name: "out_if",
            doc: "Output interface name",
            get: Get::str(fw!(r, e => e.out_if.as_deref())),
        },
        Column {
            name: "length",
            doc: "Packet length",
            get: Get::i64(fw!(r, e => e.length.map(i64::from))),
        },
        Column {
            name: "vrf",
            doc: "VRF / routing instance",
            get: Get::str(fw!(r, e => e.vrf.as_deref())),
        },
        Column {
            name: "cf_event",
            doc: "Cloud Foundry (OK_ / DENY_ prefixes): ingress-allowed, ingress-denied, egress-allowed or egress-denied, as silk's iptables-logger names it",
            get: Get::str(|r: &Row| cf(r).map(|c| c.event)),
        },
        Column {
            name: "cf_container",
            doc: "Cloud Foundry: container id (handle) of the app's side: destination for ingress, source for egress",
            get: Get::str(|r: &Row| cf(r).and_then(|c| c.container_id.as_deref())),
        },
        Column {
            name: "cf_app",
            doc: "Cloud Foundry: that container's app GUID",
            get: Get::str(|r: &Row| cf(r).and_then(|c| c.app_guid.as_deref())),
        },
        Column {
            name: "cf_app_name",
            doc: "Cloud Foundry: the app's name, when the metadata has it",
            get: Get::str(|r: &Row| cf(r).and_then(|c| c.app_name.as_deref())),
        },
        Column {
            name: "cf_space",
            doc: "Cloud Foundry: the app's space GUID",
            get: Get::str(|r: &Row| cf(r).and_then(|c| c.space_guid.as_deref())),
        },
        Column {
            name: "cf_org",
            doc: "Cloud Foundry: the app's organization GUID",
            get: Get::str(|r: &Row| cf(r).and_then(|c| c.organization_guid.as_deref())),
        },
    ];
    v.extend(common());
    v
}

fn cf(r: &Row) -> Option<&crate::model::CfTraffic> {
    r.envelope.enrichment.cf.as_ref()
}

/// Reads one field of one event variant: `ev!(Http, r, e => …)`.
macro_rules! ev {
    ($v:ident, $r:ident, $e:ident => $body:expr) => {
        |$r: &Row| match &$r.event {
            Event::$v($e) => $body,
            _ => None,
        }
    };
}

fn millis(v: Option<u64>) -> Option<i64> {
    count(v)
}

pub fn http_access() -> Vec<Column<Row>> {
    let mut v = vec![
        Column {
            name: "time",
            doc: "Request time (the log's own stamp), UTC",
            get: Get::time(|r: &Row| Some(r.event.time())),
        },
        Column {
            name: "server",
            doc: "nginx or apache when known (format named, or the syslog tag); null when auto-detected from the line alone",
            get: Get::str(ev!(Http, r, e => e.server)),
        },
        Column {
            name: "vhost",
            doc: "Virtual host (Apache vhost_combined %v)",
            get: Get::str(ev!(Http, r, e => e.vhost.as_deref())),
        },
        Column {
            name: "server_port",
            doc: "Server port (Apache vhost_combined %p)",
            get: Get::i32(ev!(Http, r, e => port(e.server_port))),
        },
        Column {
            name: "client_ip",
            doc: "Client address (%h / $remote_addr): behind a CGNAT, the public address",
            get: Get::ip(ev!(Http, r, e => e.client_ip)),
        },
        Column {
            name: "client_port",
            doc: "Client port, when the log writes the client as address:port",
            get: Get::i32(ev!(Http, r, e => port(e.client_port))),
        },
        Column {
            name: "user",
            doc: "Authenticated user (%u / $remote_user)",
            get: Get::str(ev!(Http, r, e => e.user.as_deref())),
        },
        Column {
            name: "method",
            doc: "Request method",
            get: Get::str(ev!(Http, r, e => e.method.as_deref())),
        },
        Column {
            name: "path",
            doc: "Request target as logged (path and query)",
            get: Get::str(ev!(Http, r, e => e.path.as_deref())),
        },
        Column {
            name: "protocol",
            doc: "HTTP/1.0, HTTP/1.1, HTTP/2.0, …; null for HTTP/0.9 request lines",
            get: Get::str(ev!(Http, r, e => e.protocol.as_deref())),
        },
        Column {
            name: "request",
            doc: "The request line as logged, only when it could not be split into method, path and protocol (answered 4xx)",
            get: Get::str(ev!(Http, r, e => e.request.as_deref())),
        },
        Column {
            name: "status",
            doc: "Response status (100-599)",
            get: Get::i16(ev!(Http, r, e => e.status.and_then(|s| i16::try_from(s).ok()))),
        },
        Column {
            name: "bytes",
            doc: "Response bytes (%b / %O / $body_bytes_sent)",
            get: Get::i64(ev!(Http, r, e => count(e.bytes))),
        },
        Column {
            name: "referer",
            doc: "Referer header as logged",
            get: Get::str(ev!(Http, r, e => e.referer.as_deref())),
        },
        Column {
            name: "user_agent",
            doc: "User-Agent header as logged",
            get: Get::str(ev!(Http, r, e => e.user_agent.as_deref())),
        },
        Column {
            name: "forwarded_for",
            doc: "X-Forwarded-For as logged (nginx main format)",
            get: Get::str(ev!(Http, r, e => e.forwarded_for.as_deref())),
        },
        Column {
            name: "request_time_ms",
            doc: "Request processing time in ms (nginx $request_time)",
            get: Get::i64(ev!(Http, r, e => millis(e.request_time_ms))),
        },
        Column {
            name: "upstream_time_ms",
            doc: "First upstream's response time in ms (nginx $upstream_response_time)",
            get: Get::i64(ev!(Http, r, e => millis(e.upstream_time_ms))),
        },
    ];
    v.extend(common());
    v
}

pub fn mail() -> Vec<Column<Row>> {
    let mut v = vec![
        Column {
            name: "time",
            doc: "Event time (syslog stamp), UTC",
            get: Get::time(|r: &Row| Some(r.event.time())),
        },
        Column {
            name: "process",
            doc: "Syslog tag (postfix/smtpd, postfix/qmgr, …)",
            get: Get::str(ev!(Mail, r, e => e.process.as_deref())),
        },
        Column {
            name: "pid",
            doc: "Process id from the syslog tag",
            get: Get::i64(ev!(Mail, r, e => e.pid.map(i64::from))),
        },
        Column {
            name: "queue_id",
            doc: "Postfix queue id (NOQUEUE for rejections before one was assigned)",
            get: Get::str(ev!(Mail, r, e => e.queue_id.as_deref())),
        },
        Column {
            name: "event",
            doc: "connect, disconnect, client, reject, lost_connection, warning, message_id, queued, removed, pickup, delivery, other",
            get: Get::str(ev!(Mail, r, e => Some(e.event))),
        },
        Column {
            name: "client_host",
            doc: "SMTP client host name as Postfix resolved it (unknown when it did not)",
            get: Get::str(ev!(Mail, r, e => e.client_host.as_deref())),
        },
        Column {
            name: "client_ip",
            doc: "SMTP client address",
            get: Get::ip(ev!(Mail, r, e => e.client_ip)),
        },
        Column {
            name: "client_port",
            doc: "SMTP client port (smtpd_client_port_logging)",
            get: Get::i32(ev!(Mail, r, e => port(e.client_port))),
        },
        Column {
            name: "from",
            doc: "Envelope sender (empty for bounces)",
            get: Get::str(ev!(Mail, r, e => e.from.as_deref())),
        },
        Column {
            name: "to",
            doc: "Envelope recipient",
            get: Get::str(ev!(Mail, r, e => e.to.as_deref())),
        },
        Column {
            name: "orig_to",
            doc: "Original recipient before aliasing",
            get: Get::str(ev!(Mail, r, e => e.orig_to.as_deref())),
        },
        Column {
            name: "relay_host",
            doc: "Next hop the message went to (host name, none, local, a transport)",
            get: Get::str(ev!(Mail, r, e => e.relay_host.as_deref())),
        },
        Column {
            name: "relay_ip",
            doc: "Next hop address",
            get: Get::ip(ev!(Mail, r, e => e.relay_ip)),
        },
        Column {
            name: "relay_port",
            doc: "Next hop port",
            get: Get::i32(ev!(Mail, r, e => port(e.relay_port))),
        },
        Column {
            name: "status",
            doc: "sent, deferred, bounced, expired, … (deliveries); reject (rejections)",
            get: Get::str(ev!(Mail, r, e => e.status.as_deref())),
        },
        Column {
            name: "dsn",
            doc: "Enhanced status code (RFC 3463), e.g. 2.0.0",
            get: Get::str(ev!(Mail, r, e => e.dsn.as_deref())),
        },
        Column {
            name: "delay_ms",
            doc: "Total delay from arrival to this delivery attempt, in ms",
            get: Get::i64(ev!(Mail, r, e => millis(e.delay_ms))),
        },
        Column {
            name: "size",
            doc: "Message size in bytes (qmgr)",
            get: Get::i64(ev!(Mail, r, e => count(e.size))),
        },
        Column {
            name: "nrcpt",
            doc: "Number of recipients (qmgr)",
            get: Get::i64(ev!(Mail, r, e => e.nrcpt.map(i64::from))),
        },
        Column {
            name: "message_id",
            doc: "Message-ID header (cleanup)",
            get: Get::str(ev!(Mail, r, e => e.message_id.as_deref())),
        },
        Column {
            name: "sasl_username",
            doc: "SMTP AUTH user name (smtpd)",
            get: Get::str(ev!(Mail, r, e => e.sasl_username.as_deref())),
        },
        Column {
            name: "helo",
            doc: "HELO / EHLO name the client gave",
            get: Get::str(ev!(Mail, r, e => e.helo.as_deref())),
        },
        Column {
            name: "response",
            doc: "Remote server's reply (deliveries) or the rejection text",
            get: Get::str(ev!(Mail, r, e => e.response.as_deref())),
        },
        Column {
            name: "message",
            doc: "Message text after the queue id, as logged",
            get: Get::str(ev!(Mail, r, e => Some(&e.message))),
        },
    ];
    v.extend(common());
    v
}

pub fn auth() -> Vec<Column<Row>> {
    let mut v = vec![
        Column {
            name: "time",
            doc: "Event time (syslog stamp), UTC",
            get: Get::time(|r: &Row| Some(r.event.time())),
        },
        Column {
            name: "process",
            doc: "Syslog tag (sshd, sshd-session)",
            get: Get::str(ev!(Auth, r, e => e.process.as_deref())),
        },
        Column {
            name: "pid",
            doc: "Process id from the syslog tag: ties one connection's messages together",
            get: Get::i64(ev!(Auth, r, e => e.pid.map(i64::from))),
        },
        Column {
            name: "event",
            doc: "accepted, failed, postponed, partial, invalid_user, max_auth_tries, connection, disconnected, connection_closed, connection_reset, received_disconnect, no_identification, other",
            get: Get::str(ev!(Auth, r, e => Some(e.event))),
        },
        Column {
            name: "result",
            doc: "success (Accepted) or failure (Failed); null for other messages",
            get: Get::str(ev!(Auth, r, e => e.result)),
        },
        Column {
            name: "method",
            doc: "Authentication method (password, publickey, keyboard-interactive/pam, none, …)",
            get: Get::str(ev!(Auth, r, e => e.method.as_deref())),
        },
        Column {
            name: "user",
            doc: "User name as sshd logged it (attacker-chosen for invalid users)",
            get: Get::str(ev!(Auth, r, e => e.user.as_deref())),
        },
        Column {
            name: "user_status",
            doc: "invalid (no such account) or authenticating (not yet authenticated), as sshd says",
            get: Get::str(ev!(Auth, r, e => e.user_status)),
        },
        Column {
            name: "src_ip",
            doc: "Client address: behind a CGNAT, the public address",
            get: Get::ip(ev!(Auth, r, e => e.src_ip)),
        },
        Column {
            name: "src_port",
            doc: "Client port",
            get: Get::i32(ev!(Auth, r, e => port(e.src_port))),
        },
        Column {
            name: "key",
            doc: "Public key type and fingerprint (publickey messages)",
            get: Get::str(ev!(Auth, r, e => e.key.as_deref())),
        },
        Column {
            name: "repeats",
            doc: "N of syslog's \"message repeated N times\"; null for a single message",
            get: Get::i64(ev!(Auth, r, e => e.repeats.map(i64::from))),
        },
        Column {
            name: "message",
            doc: "Message text, as logged",
            get: Get::str(ev!(Auth, r, e => Some(&e.message))),
        },
    ];
    v.extend(common());
    v
}

pub fn rejects() -> Vec<Column<Reject>> {
    vec![
        Column {
            name: "recv_time",
            doc: "When the relay received the record",
            get: Get::time(|r: &Reject| Some(r.recv_time)),
        },
        Column {
            name: "reason",
            doc: "Why it was rejected",
            get: Get::str(|r: &Reject| Some(&r.reason)),
        },
        Column {
            name: "format",
            doc: "Parser that tried (auto: no format matched)",
            get: Get::str(|r: &Reject| Some(&r.format)),
        },
        Column {
            name: "input_kind",
            doc: "How the record reached the relay (syslog_udp, …)",
            get: Get::str(|r: &Reject| Some(&r.input_kind)),
        },
        Column {
            name: "peer",
            doc: "Sender address:port",
            get: Get::str(|r: &Reject| r.peer.as_deref()),
        },
        Column {
            name: "payload",
            doc: "The record's bytes, exactly as received",
            get: Get::bin(|r: &Reject| Some(&r.payload)),
        },
        Column {
            name: "raw_key",
            doc: "Provenance: raw object key",
            get: Get::str(|r: &Reject| Some(&r.provenance.raw_key)),
        },
        Column {
            name: "raw_record",
            doc: "Provenance: record index in the raw object",
            get: Get::i64(|r: &Reject| Some(r.provenance.raw_record as i64)),
        },
    ]
}

/// Columns of an event table; None for rejects, whose rows are [`Reject`]s.
pub fn event_columns(table: Table) -> Option<Vec<Column<Row>>> {
    match table {
        Table::NatEvents | Table::NatCarry => Some(nat_events()),
        Table::Flows => Some(flows()),
        Table::Firewall => Some(firewall()),
        Table::HttpAccess => Some(http_access()),
        Table::Mail => Some(mail()),
        Table::Auth => Some(auth()),
        Table::Rejects => None,
    }
}

/// The schema as documented in `docs/schema.md` (a test keeps the file in step).
pub fn schema_markdown() -> String {
    fn table<R>(out: &mut String, name: &str, about: &str, cols: &[Column<R>]) {
        out.push_str(&format!(
            "\n## `{name}`\n\n{about}\n\n| column | type | meaning |\n|---|---|---|\n"
        ));
        for c in cols {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c.name,
                c.type_name(),
                c.doc
            ));
        }
    }
    let mut out = String::from(
        "# natlake lake schema\n\n\
         Generated from `functions/core/src/lake/columns.rs` (`NATLAKE_BLESS=1 cargo test -p natlake-core schema_doc`\n\
         rewrites it). Every column is nullable. Addresses are text in canonical form (IPv4 dotted quad,\n\
         IPv6 RFC 5952), ports and protocol numbers are integers, times are UTC microseconds.\n\
         Besides these columns every table has its Hive partition columns from the object path:\n\
         `hour` (`YYYY-MM-DDTHH`, UTC) and, except `rejects`, `x_net` (the public /24 or /48, see\n\
         `docs/lake-layout.md`).\n",
    );
    table(
        &mut out,
        "nat_events",
        "NAT mapping events: sessions, port blocks, address bindings, and mappings observed in flow records. `src_*` is the inside (private) side, `x_*` the public (translated) side.",
        &nat_events(),
    );
    table(
        &mut out,
        "flows",
        "Flow records (NetFlow v9, IPFIX, goflow2 JSON, pmacct JSON), with post-NAT fields when exported. A flow with a post-NAT source also yields a `mapping_observed` row in `nat_events`.",
        &flows(),
    );
    table(
        &mut out,
        "firewall",
        "Packet-filter log events (iptables / nftables LOG, Cloud Foundry `OK_` / `DENY_` prefixes).",
        &firewall(),
    );
    table(
        &mut out,
        "http_access",
        "Web server access logs: nginx (combined, main, with $request_time / upstream times) and Apache httpd (common, combined, vhost_combined). Partitioned by `client_ip`.",
        &http_access(),
    );
    table(
        &mut out,
        "mail",
        "Postfix log messages (smtpd, cleanup, qmgr, smtp, …), one row each. Partitioned by `client_ip` (`x_net=none` without one).",
        &mail(),
    );
    table(
        &mut out,
        "auth",
        "sshd log messages (auth.log / secure), one row each. Partitioned by `src_ip`.",
        &auth(),
    );
    out.push_str(
        "\n## `nat_carry`\n\nThe same columns as `nat_events`: for each hour, the rows that opened the mappings still \
         open when the hour began (written by the compact function; see `docs/lake-layout.md`).\n",
    );
    table(
        &mut out,
        "rejects",
        "Records that could not be normalized, kept whole with the reason.",
        &rejects(),
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv4_text_is_canonical() {
        for a in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "100.64.0.1",
            "198.18.3.250",
        ] {
            let mut b = super::TextBuf(Vec::new());
            assert!(super::ip(&mut b, a.parse().ok()));
            assert_eq!(b.0, a.as_bytes());
        }
        // Every octet value in every position, against the standard library's text.
        for o in 0..=255u8 {
            let a = std::net::Ipv4Addr::new(o, 255 - o, o / 3, o.wrapping_mul(7));
            let mut b = super::TextBuf(b"x".to_vec());
            super::push_ipv4(&mut b, a);
            assert_eq!(b.0, format!("x{a}").into_bytes());
        }
        let mut b = super::TextBuf(Vec::new());
        assert!(super::ip(&mut b, "2001:db8::1".parse().ok()));
        assert_eq!(b.0, b"2001:db8::1");
    }

    #[test]
    fn schema_doc_is_current() {
        let path = crate::testing::repo_dir().join("docs/schema.md");
        let want = super::schema_markdown();
        if std::env::var_os("NATLAKE_BLESS").is_some() {
            std::fs::write(&path, &want).expect("write docs/schema.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/schema.md is stale: run NATLAKE_BLESS=1 cargo test -p natlake-core schema_doc"
        );
    }
}
