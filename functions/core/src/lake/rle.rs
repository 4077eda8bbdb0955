//! parquet 60's RLE / bit-packed hybrid encoder (`encodings/rle.rs`, `RleEncoder`), step for
//! step, for the pages [`super::delta`] and [`super::dictionary`] write: definition levels
//! (bit width 1, fed a value at a time as the column writer feeds them) and dictionary indices
//! (fed as one batch). The encoder finds runs only from a group of 8 on, closes bit-packed runs
//! at 63 groups and pads the last group with 0s; its batch path takes whole groups at a time.
//! The same steps give the same bytes (the writers' tests compare whole files).

use super::constant::varint;

const GROUP: usize = 8;
const MAX_GROUPS: usize = 1 << 6;

pub struct Rle {
    out: Vec<u8>,
    width: u32,
    pending: Vec<u64>,
    current: u64,
    repeat: usize,
}

impl Rle {
    /// An encoder of `width`-bit values appending to `out`.
    pub fn new(out: Vec<u8>, width: u32) -> Self {
        Self {
            out,
            width,
            pending: Vec::with_capacity(GROUP * MAX_GROUPS),
            current: 0,
            repeat: 0,
        }
    }

    pub fn put(&mut self, v: u64) {
        if self.current == v {
            self.repeat += 1;
            if self.repeat > GROUP {
                return;
            }
        } else {
            if self.repeat >= GROUP {
                self.flush_rle_run();
            }
            self.repeat = 1;
            self.current = v;
        }
        self.pending.push(v);
        if self.pending.len().is_multiple_of(GROUP) {
            self.commit_group();
        }
    }

    pub fn put_batch(&mut self, values: &[u64]) {
        let mut i = 0;
        while i < values.len() {
            if self.repeat >= GROUP && values[i] == self.current {
                let run = values[i..]
                    .iter()
                    .take_while(|&&v| v == self.current)
                    .count();
                self.repeat += run;
                i += run;
                continue;
            }
            if self.repeat < GROUP
                && self.pending.len().is_multiple_of(GROUP)
                && values.len() - i >= GROUP
            {
                let group = &values[i..i + GROUP];
                i += GROUP;
                if group.iter().all(|&v| v == group[0]) {
                    if !self.pending.is_empty() {
                        self.close_bit_packed_run();
                    }
                    self.current = group[0];
                    self.repeat = GROUP;
                } else {
                    self.pending.extend_from_slice(group);
                    self.current = group[GROUP - 1];
                    if self.pending.len() / GROUP + 1 >= MAX_GROUPS {
                        self.close_bit_packed_run();
                    }
                }
                continue;
            }
            self.put(values[i]);
            i += 1;
        }
    }

    fn commit_group(&mut self) {
        if self.repeat >= GROUP {
            self.pending.truncate(self.pending.len() - GROUP);
            if !self.pending.is_empty() {
                self.close_bit_packed_run();
            }
            return;
        }
        if self.pending.len() / GROUP + 1 >= MAX_GROUPS {
            self.close_bit_packed_run();
        }
        self.repeat = 0;
    }

    /// The encoded values appended to the buffer given to [`Rle::new`].
    pub fn finish(mut self) -> Vec<u8> {
        if !self.pending.is_empty() || self.repeat > 0 {
            let tail = self.pending.len() % GROUP;
            let all_repeat = self.pending.len() == tail && (self.repeat == tail || tail == 0);
            if self.repeat > 0 && all_repeat {
                self.flush_rle_run();
            } else {
                if tail > 0 {
                    self.pending.resize(self.pending.len() + GROUP - tail, 0);
                }
                if !self.pending.is_empty() {
                    self.close_bit_packed_run();
                }
            }
        }
        self.out
    }

    fn flush_rle_run(&mut self) {
        varint(&mut self.out, (self.repeat as u64) << 1);
        let bytes = self.width.div_ceil(8) as usize;
        self.out
            .extend_from_slice(&self.current.to_le_bytes()[..bytes]);
        self.pending.clear();
        self.repeat = 0;
    }

    fn close_bit_packed_run(&mut self) {
        let groups = self.pending.len() / GROUP;
        self.out.push(((groups << 1) | 1) as u8);
        let n = self.pending.len();
        pack(&mut self.out, self.pending.iter().copied(), n, self.width);
        self.pending.clear();
    }
}

/// Appends `count` values bit-packed at `width` bits each, least significant bit first (as
/// parquet's `BitWriter` packs): those of `values`, then 0s. `count * width` is a multiple of 8
/// (groups of 8 here, miniblocks of 32 or 64 in [`super::delta`]).
pub fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, count: usize, width: u32) {
    if width == 0 {
        return;
    }
    let end = out.len() + count * width as usize / 8;
    if width <= 32 {
        // Whole 32-bit words out of a 64-bit accumulator.
        let mut acc = 0u64;
        let mut bits = 0u32;
        for v in values {
            acc |= v << bits;
            bits += width;
            if bits >= 32 {
                out.extend_from_slice(&(acc as u32).to_le_bytes());
                acc >>= 32;
                bits -= 32;
            }
        }
        out.extend_from_slice(&acc.to_le_bytes()[..bits.div_ceil(8) as usize]);
    } else {
        let mut acc = 0u128;
        let mut bits = 0u32;
        for v in values {
            acc |= u128::from(v) << bits;
            bits += width;
            if bits >= 64 {
                out.extend_from_slice(&(acc as u64).to_le_bytes());
                acc >>= 64;
                bits -= 64;
            }
        }
        out.extend_from_slice(&acc.to_le_bytes()[..bits.div_ceil(8) as usize]);
    }
    out.resize(end, 0);
}
