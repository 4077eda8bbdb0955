//! The batcher's writer of raw objects: the records of `natlake_raw::BatchWriter` (header, then
//! records), cheaper per record.
//!
//! `BatchWriter` hands every record to a zstd stream as four small writes, each a call into zstd
//! (`ZSTD_compressStream`) that copies a few bytes into its input buffer. Here records are encoded
//! into a plain staging buffer, and every [`FRAME`] bytes of it become one zstd frame, compressed
//! in one call by a reused context. The object is those frames back to back, which zstd decoders
//! read as one stream (the raw format allows it). One-shot frames matter: a zstd stream's input
//! buffer is a ring of one window (512 KiB at level 1), and once it wraps, every block is
//! matched in zstd's slower external-dictionary mode; measured on bench/relay.sh's lines that
//! cost 0.82 µs per line at level 1 against 0.68 µs in 1 MiB frames, for 0.05 % more bytes.
//!
//! The record encoding is written out here rather than through `natlake_raw::encode_parts`:
//! the fixed part and the payload are laid down first and the CRC runs once over both, in place,
//! from a hasher cloned from one made at start (`crc32fast::Hasher::new` detects the CPU's
//! SIMD support on every call). A unit test checks the plaintext against `BatchWriter`'s.

use std::io::Cursor;
use std::net::SocketAddr;

use natlake_raw::{BatchHeader, InputKind, RawError};

use crate::batch::RECORD_OVERHEAD;

/// Plaintext compressed as one zstd frame (a record may take it past this).
const FRAME: usize = 1024 * 1024;

/// The record's fixed part after length and CRC: time 8, kind, flags, family, reserved,
/// address 16, port 2 (`natlake_raw`'s layout).
const FIXED_TAIL: usize = 30;
/// Length and CRC.
const PREFIX: usize = 8;
const _: () = assert!(PREFIX + FIXED_TAIL == RECORD_OVERHEAD as usize);

pub(crate) struct RawWriter {
    comp: zstd::bulk::Compressor<'static>,
    /// The frames so far.
    out: Vec<u8>,
    stage: Vec<u8>,
    /// A fresh hasher with the CPU's implementation already chosen.
    crc: crc32fast::Hasher,
    records: u64,
    raw_bytes: u64,
}

impl RawWriter {
    pub fn new(header: &BatchHeader, level: i32) -> Result<Self, RawError> {
        let comp = zstd::bulk::Compressor::new(level)?;
        let mut stage = Vec::with_capacity(FRAME + 2 * 1024);
        natlake_raw::encode_header(&mut stage, header)?;
        Ok(Self {
            comp,
            out: Vec::new(),
            stage,
            crc: crc32fast::Hasher::new(),
            records: 0,
            raw_bytes: 0,
        })
    }

    /// Appends one record; a record the format refuses leaves the writer unchanged.
    pub fn push_parts(
        &mut self,
        recv_ns: i64,
        kind: InputKind,
        flags: u8,
        peer: Option<SocketAddr>,
        payload: &[u8],
    ) -> Result<(), RawError> {
        // Checks the size before writing anything, so an error adds no partial record.
        let len = PREFIX - 4 + FIXED_TAIL + payload.len();
        if len > natlake_raw::MAX_RECORD {
            return Err(RawError::TooLarge(payload.len()));
        }
        let mut fixed = [0u8; FIXED_TAIL];
        fixed[..8].copy_from_slice(&recv_ns.to_le_bytes());
        fixed[8] = kind.code();
        fixed[9] = flags;
        match peer {
            None => {}
            Some(SocketAddr::V4(a)) => {
                fixed[10] = 4;
                fixed[12..16].copy_from_slice(&a.ip().octets());
                fixed[28..30].copy_from_slice(&a.port().to_le_bytes());
            }
            Some(SocketAddr::V6(a)) => {
                fixed[10] = 6;
                fixed[12..28].copy_from_slice(&a.ip().octets());
                fixed[28..30].copy_from_slice(&a.port().to_le_bytes());
            }
        }
        let at = self.stage.len();
        self.stage.reserve(PREFIX + FIXED_TAIL + payload.len());
        self.stage.extend_from_slice(&(len as u32).to_le_bytes());
        self.stage.extend_from_slice(&[0; 4]);
        self.stage.extend_from_slice(&fixed);
        self.stage.extend_from_slice(payload);
        let mut crc = self.crc.clone();
        crc.update(&self.stage[at + PREFIX..]);
        self.stage[at + 4..at + PREFIX].copy_from_slice(&crc.finalize().to_le_bytes());
        self.records += 1;
        self.raw_bytes += RECORD_OVERHEAD + payload.len() as u64;
        if self.stage.len() >= FRAME {
            self.seal()?;
        }
        Ok(())
    }

    /// Compresses the staged plaintext into one frame appended to the output.
    fn seal(&mut self) -> Result<(), RawError> {
        let start = self.out.len();
        self.out
            .reserve(zstd::zstd_safe::compress_bound(self.stage.len()));
        // The cursor makes zstd write after the frames already there (into reserved capacity).
        let mut at = Cursor::new(&mut self.out);
        at.set_position(start as u64);
        self.comp.compress_to_buffer(&self.stage, &mut at)?;
        self.stage.clear();
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Uncompressed bytes of records so far (what batch-size limits count).
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    pub fn finish(mut self) -> Result<Vec<u8>, RawError> {
        // An empty batch still holds its header, so the last frame is never empty.
        if !self.stage.is_empty() {
            self.seal()?;
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natlake_raw::{BatchReader, BatchWriter};
    use std::time::Instant;

    fn header() -> BatchHeader {
        BatchHeader {
            format_version: natlake_raw::VERSION,
            relay_id: "r1".into(),
            batch_id: "0192f3a0-0000-7000-8000-000000000000".into(),
            kind: InputKind::SyslogUdp,
            created_ns: 1_714_564_800_000_000_000,
            labels: [("site".to_string(), "par1".to_string())].into(),
        }
    }

    /// Lines that do not repeat (a counter and a scrambled port in each).
    fn lines(n: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(
                    "<134>1 2024-05-01T12:00:{:02}Z cgnat-1 nat - - - SNAT TCP 100.64.{}.{}:{} -> 203.0.113.9:{} seq={i}",
                    i % 60,
                    i / 256 % 256,
                    i % 256,
                    1024 + i * 7919 % 50_000,
                    2048 + i * 104_729 % 50_000
                )
                .into_bytes()
            })
            .collect()
    }

    fn plaintext(compressed: &[u8]) -> Vec<u8> {
        zstd::stream::decode_all(compressed).unwrap()
    }

    #[test]
    fn same_plaintext_as_batch_writer_and_readable() {
        let h = header();
        let lines = lines(20_000);
        let peers: [Option<SocketAddr>; 3] = [
            None,
            Some("192.0.2.7:514".parse().unwrap()),
            Some("[2001:db8::1]:6514".parse().unwrap()),
        ];
        let mut a = BatchWriter::new(&h, 1).unwrap();
        let mut b = RawWriter::new(&h, 1).unwrap();
        for (i, l) in lines.iter().enumerate() {
            let (t, p, f) = (i as i64 * 1000, peers[i % 3], (i % 2) as u8);
            a.push_parts(t, InputKind::SyslogUdp, f, p, l).unwrap();
            b.push_parts(t, InputKind::SyslogUdp, f, p, l).unwrap();
        }
        // A refused record changes neither writer.
        let huge = vec![b'x'; natlake_raw::MAX_RECORD];
        assert!(
            a.push_parts(0, InputKind::SyslogUdp, 0, None, &huge)
                .is_err()
        );
        assert!(
            b.push_parts(0, InputKind::SyslogUdp, 0, None, &huge)
                .is_err()
        );
        assert_eq!(a.records(), b.records());
        assert_eq!(a.raw_bytes(), b.raw_bytes());
        let (a, b) = (a.finish().unwrap(), b.finish().unwrap());
        assert!(plaintext(&b).len() > 2 * FRAME, "three frames were written");
        assert_eq!(frames(&b), 3);
        assert_eq!(plaintext(&a), plaintext(&b));
        let rd = BatchReader::from_compressed(&b).unwrap();
        assert_eq!(rd.header(), &h);
        let recs: Vec<_> = rd.map(|r| r.unwrap().1).collect();
        assert_eq!(recs.len(), lines.len());
        assert_eq!(recs[19_999].payload, lines[19_999]);
        assert_eq!(recs[2].peer, peers[2]);
    }

    /// The number of zstd frames in an object.
    fn frames(mut b: &[u8]) -> usize {
        let mut n = 0;
        while !b.is_empty() {
            let len = zstd::zstd_safe::find_frame_compressed_size(b).unwrap();
            b = &b[len..];
            n += 1;
        }
        n
    }

    #[test]
    fn empty_batch_holds_the_header() {
        let h = header();
        let out = RawWriter::new(&h, 1).unwrap().finish().unwrap();
        let rd = BatchReader::from_compressed(&out).unwrap();
        assert_eq!(rd.header(), &h);
        assert_eq!(rd.count(), 0);
    }

    /// CPU per record of both writers (release build):
    /// `cargo test --release -p edge-relay --lib raw_writer -- --ignored --nocapture`.
    /// `RELAY_COST_RAW=<object.nlraw.zst>` takes the lines from a raw object (e.g. one written
    /// by `bench/relay.sh` with `KEEP=1`) instead of the synthetic ones.
    #[test]
    #[ignore = "measurement"]
    fn writer_cost_per_line() {
        let lines: Vec<Vec<u8>> = match std::env::var("RELAY_COST_RAW") {
            Ok(p) => {
                let bytes = std::fs::read(p).unwrap();
                BatchReader::from_compressed(&bytes)
                    .unwrap()
                    .map(|r| r.unwrap().1.payload)
                    .collect()
            }
            Err(_) => lines(50_000),
        };
        let h = header();
        let peer = Some("192.0.2.1:514".parse().unwrap());
        // Under callgrind: RELAY_COST_ONE=1 runs one round at level 1.
        let one = std::env::var_os("RELAY_COST_ONE").is_some();
        // RELAY_COST_LEVELS=1,-1,-3 picks the zstd levels (default 1,3).
        let levels: Vec<i32> = std::env::var("RELAY_COST_LEVELS")
            .map(|v| v.split(',').map(|l| l.trim().parse().unwrap()).collect())
            .unwrap_or_else(|_| if one { vec![1] } else { vec![1, 3] });
        let rounds = if one { 1 } else { 2 };
        let plain: usize = lines
            .iter()
            .map(|l| l.len() + RECORD_OVERHEAD as usize)
            .sum();
        println!("{} lines, {plain} bytes of records", lines.len());
        for &level in &levels {
            for round in 0..rounds {
                // RELAY_COST_SKIP=batch|raw leaves one writer out (callgrind: one run each).
                let skip = std::env::var("RELAY_COST_SKIP").unwrap_or_default();
                let t = Instant::now();
                let mut a = Vec::new();
                if skip != "batch" {
                    let mut w = BatchWriter::new(&h, level).unwrap();
                    for (i, l) in lines.iter().enumerate() {
                        w.push_parts(i as i64, InputKind::SyslogUdp, 0, peer, l)
                            .unwrap();
                    }
                    a = w.finish().unwrap();
                }
                let ta = t.elapsed();
                let t = Instant::now();
                let mut b = Vec::new();
                if skip != "raw" {
                    let mut w = RawWriter::new(&h, level).unwrap();
                    for (i, l) in lines.iter().enumerate() {
                        w.push_parts(i as i64, InputKind::SyslogUdp, 0, peer, l)
                            .unwrap();
                    }
                    b = w.finish().unwrap();
                }
                let tb = t.elapsed();
                let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / lines.len() as f64;
                println!(
                    "level {level:>2} round {round}: {} lines; BatchWriter {:.3} µs/line {} B; RawWriter {:.3} µs/line {} B (ratio {:.2})",
                    lines.len(),
                    per(ta),
                    a.len(),
                    per(tb),
                    b.len(),
                    plain as f64 / b.len().max(1) as f64
                );
            }
        }
    }
}
