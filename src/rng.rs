//! The counter-based generator behind the native samplers: Philox4x32-10 (Salmon, Moraes, Dror
//! & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11), keyed by the seed and indexed
//! by `(element, call, slot)`.
//!
//! A counter-based generator is a keyed bijection: output block `n` is `philox(n, key)`, with no
//! state carried from one block to the next. Every output element of a sampling call therefore
//! gets its own block, addressed by its index, so a draw depends on the seed, the call and the
//! element's index — never on how a GPU launch splits the work, how many threads a CPU uses, or
//! how a batch is cut into chunks. The same arithmetic runs in the [`Wgpu`](crate::Wgpu)
//! kernels (32-bit integers only, as WGSL has no 64-bit types) and in [`NdArray`](crate::NdArray)'s
//! uniform sampler, so both produce the same uniforms, bit for bit, for the same seed and call
//! sequence.
//!
//! Counter layout of one block (four 32-bit words):
//!
//! | word | holds |
//! |---|---|
//! | 0, 1 | the block's index (low, high 32 bits) |
//! | 2 | the call: the `k`-th sampling call after `seed(s)` |
//! | 3 | the slot: 0, or the attempt number of a rejection sampler |
//!
//! The key is the seed (low, high 32 bits). A block yields four words, and serves as many
//! consecutive elements as its words cover: element `g` (its flat index in the call's output
//! plus the call's offset) is served by block `g / L` where `L` is 4 for uniforms (one word
//! each: [`DrawKey::uniform`]) and normals (Box–Muller on words 0-1 and 2-3), 2 for Student-T
//! draws (Bailey's method on words 0-1 or 2-3), and 1 for gamma draws (one block per attempt,
//! the attempt in word 3) and mixture draws (a component word and two Student-T words).
//!
//! ```
//! use toto_fallback::rng::{DrawKey, philox4x32_10, unit_f32};
//!
//! // Random123's known-answer vector for counter 0, key 0.
//! assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
//! // Uniform 10 of the first call after seed(7): word 2 of block 2, wherever it is computed.
//! let key = DrawKey::new(7, 0);
//! let u = key.uniform(10);
//! assert_eq!(u, unit_f32(philox4x32_10([2, 0, 0, 0], [7, 0])[2]));
//! assert!((0.0..1.0).contains(&u));
//! ```

// Philox's multipliers and Weyl key increments (Random123's `PHILOX_M4x32_0/1`,
// `PHILOX_W32_0/1`), shared with the GPU kernels.
/// Philox's first round multiplier (`PHILOX_M4x32_0`).
pub(crate) const M0: u32 = 0xD251_1F53;
/// Philox's second round multiplier (`PHILOX_M4x32_1`).
pub(crate) const M1: u32 = 0xCD9E_8D57;
/// The Weyl increment of the key's first word (`PHILOX_W32_0`).
pub(crate) const W0: u32 = 0x9E37_79B9;
/// The Weyl increment of the key's second word (`PHILOX_W32_1`).
pub(crate) const W1: u32 = 0xBB67_AE85;
/// Philox rounds (the `10` of Philox4x32-10).
pub(crate) const ROUNDS: u32 = 10;

/// `2^-24`: the spacing of the 24-bit uniforms.
pub const UNIT: f32 = 1.0 / 16_777_216.0;

/// Philox4x32 with 10 rounds: the block of `counter` under `key`.
///
/// Bit-compatible with Random123's `philox4x32_10` (checked against its known-answer vectors).
pub const fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    let mut round = 0;
    while round < ROUNDS {
        let p0 = (M0 as u64) * (c0 as u64);
        let p1 = (M1 as u64) * (c2 as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
        round += 1;
    }
    [c0, c1, c2, c3]
}

/// A word as a uniform in `[0, 1)`: its top 24 bits times `2^-24`. Exact in `f32`, so every
/// device computes the same value.
#[inline]
pub const fn unit_f32(word: u32) -> f32 {
    (word >> 8) as f32 * UNIT
}

/// A word as a uniform in `(0, 1]`: `(top 24 bits + 1) · 2^-24`, for a logarithm that must be
/// finite.
#[inline]
pub const fn unit_open_f32(word: u32) -> f32 {
    ((word >> 8) + 1) as f32 * UNIT
}

/// Which blocks a sampling call reads: the seed, the call's number and an element offset.
///
/// The `offset` shifts every element's index: drawing `n` elements at offset `a` gives exactly
/// the elements `a..a + n` of a larger draw made by the same call, which is how a batch cut into
/// chunks reproduces the unchunked draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrawKey {
    /// The seed: the generator's 64-bit key.
    pub seed: u64,
    /// The call's number after seeding (counter word 2).
    pub call: u32,
    /// Added to each element's flat index (counter words 0 and 1).
    pub offset: u64,
}

impl DrawKey {
    /// The key of call `call` after seeding with `seed`, at offset 0.
    pub const fn new(seed: u64, call: u32) -> Self {
        DrawKey {
            seed,
            call,
            offset: 0,
        }
    }

    /// This key with every element index shifted by `offset`.
    #[must_use]
    pub const fn with_offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// The Philox key: the seed's low and high words.
    pub const fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// The counter of block `block` (no offset applied) in slot `slot`.
    pub const fn counter(&self, block: u64, slot: u32) -> [u32; 4] {
        [block as u32, (block >> 32) as u32, self.call, slot]
    }

    /// The four words of block `block`, slot `slot`.
    pub const fn block(&self, block: u64, slot: u32) -> [u32; 4] {
        philox4x32_10(self.counter(block, slot), self.key())
    }

    /// Uniform `index` of the call (its flat position in the output; the offset is added):
    /// word `g mod 4` of block `g / 4`, `g = offset + index`, as [`unit_f32`].
    pub const fn uniform(&self, index: u64) -> f32 {
        let g = self.offset.wrapping_add(index);
        unit_f32(self.block(g >> 2, 0)[(g & 3) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123 `tests/kat_vectors`, the three `philox4x32 10` lines (counter, key, expected).
    #[test]
    fn philox_matches_random123_known_answers() {
        let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
            ),
            (
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0],
                [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
            ),
        ];
        for (counter, key, want) in cases {
            assert_eq!(philox4x32_10(counter, key), want, "counter {counter:x?}");
        }
    }

    #[test]
    fn units_cover_their_intervals_exactly() {
        assert_eq!(unit_f32(0), 0.0);
        assert_eq!(unit_f32(u32::MAX), 1.0 - UNIT);
        assert_eq!(unit_open_f32(0), UNIT);
        assert_eq!(unit_open_f32(u32::MAX), 1.0);
    }

    #[test]
    fn blocks_and_offsets_address_elements() {
        let key = DrawKey::new(u64::MAX, 3);
        assert_eq!(key.counter((1 << 32) + 7, 5), [7, 1, 3, 5]);
        assert_eq!(key.key(), [u32::MAX, u32::MAX]);
        let plain = DrawKey::new(9, 0);
        assert_eq!(plain.with_offset(41).uniform(2), plain.uniform(43));
        assert_eq!(plain.uniform(43), unit_f32(plain.block(10, 0)[3]));
        // The offset's high word carries.
        let far = DrawKey::new(9, 0).with_offset(u64::MAX - 1);
        assert_eq!(far.uniform(3), plain.uniform(1));
    }
}
