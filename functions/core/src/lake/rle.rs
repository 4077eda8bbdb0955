//! parquet 60's RLE / bit-packed hybrid encoder (`encodings/rle.rs`, `RleEncoder`), step for
//! step, for the pages [`super::delta`] and [`super::dictionary`] write: definition levels
//! (bit width 1, fed a value at a time as the column writer feeds them) and dictionary indices
//! (fed as one batch). The encoder finds runs only from a group of 8 on, closes bit-packed runs
//! at 63 groups and pads the last group with 0s; its batch path takes whole groups at a time.
//! The same steps give the same bytes (the writers' tests compare whole files).

use arrow::buffer::BooleanBuffer;

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

    /// Puts each bit of `bits` as a value of its own, giving what [`Rle::put`] gives fed them
    /// one at a time (definition levels: 1 a value, 0 a null) with a group of 8 taken at once
    /// where `put` would start one, and a run's repeats counted eight at a time: a call per
    /// level cost 1.2 % of normalize's instructions. For an encoder of width 1.
    pub fn put_bits(&mut self, bits: &BooleanBuffer) {
        let (bytes, offset, n) = (bits.values(), bits.offset(), bits.len());
        let byte = |k: usize| u16::from(bytes.get(k).copied().unwrap_or(0));
        // The 8 bits from `i`, the first the lowest, and the one at `i`.
        let eight = |i: usize| {
            let j = offset + i;
            u64::from(((byte(j / 8) | byte(j / 8 + 1) << 8) >> (j % 8)) & 0xff)
        };
        let bit = |i: usize| {
            let j = offset + i;
            u64::from((byte(j / 8) >> (j % 8)) & 1)
        };
        let mut i = 0;
        while i < n {
            if self.repeat >= GROUP {
                // In a run: `put` only counts values equal to it.
                let v = self.current;
                let all = if v == 0 { 0 } else { 0xff };
                while n - i >= GROUP && eight(i) == all {
                    self.repeat += GROUP;
                    i += GROUP;
                }
                while i < n && bit(i) == v {
                    self.repeat += 1;
                    i += 1;
                }
                if i < n {
                    self.put(bit(i));
                    i += 1;
                }
                continue;
            }
            if self.repeat == 0 && self.pending.len().is_multiple_of(GROUP) && n - i >= GROUP {
                // At a group's start, eight `put`s then `commit_group`: all equal, a run starts
                // (the group is not kept and the pending ones are written); otherwise the group
                // is kept, and the last value is the one a run would repeat.
                let g = eight(i);
                i += GROUP;
                if g == 0 || g == 0xff {
                    if !self.pending.is_empty() {
                        self.close_bit_packed_run();
                    }
                    self.current = g & 1;
                    self.repeat = GROUP;
                } else {
                    self.pending.extend((0..GROUP).map(|k| (g >> k) & 1));
                    self.current = g >> (GROUP - 1);
                    if self.pending.len() / GROUP + 1 >= MAX_GROUPS {
                        self.close_bit_packed_run();
                    }
                }
                continue;
            }
            self.put(bit(i));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `put_bits` gives the bytes `put` does fed the same bits one at a time: runs short and
    /// long, groups across bytes, bitmaps starting inside a byte.
    #[test]
    fn bits_at_once_encode_as_one_at_a_time() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..3000 {
            let len = (next() % 700) as usize;
            // Runs of random lengths: mostly short, some past a group or many groups.
            let mut bits = Vec::with_capacity(len);
            let mut v = next() % 2 == 0;
            while bits.len() < len {
                let run = match next() % 4 {
                    0 => 1 + next() % 3,
                    1 => 1 + next() % 12,
                    2 => 1 + next() % 40,
                    _ => 1 + next() % 600,
                } as usize;
                bits.extend(std::iter::repeat_n(v, run.min(len - bits.len())));
                v = if next() % 5 == 0 { v } else { !v };
            }
            let offset = (next() % 9) as usize;
            let mut padded = vec![next() % 2 == 0; offset];
            padded.extend(&bits);
            let buffer = BooleanBuffer::from(padded).slice(offset, len);
            let prefix = vec![7u8; (case % 3) as usize];
            let mut one = Rle::new(prefix.clone(), 1);
            bits.iter().for_each(|&b| one.put(u64::from(b)));
            let mut all = Rle::new(prefix, 1);
            all.put_bits(&buffer);
            assert_eq!(all.finish(), one.finish(), "case {case}");
        }
    }
}
