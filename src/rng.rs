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

/// Which part of a batched call's draws a handle computes: the call's output seen as
/// `[outer, items, inner]` (a batch of `items` items, `inner` elements per item, repeated
/// `outer` times, as Toto 1.0's sample paths lay out `[samples, batch, variates · patch]`), of
/// which the handle's call computes the items `first..first + len`, `[outer, len, inner]`.
///
/// Element `i` of such a call is element [`DrawWindow::index`]`(i)` of the whole call, so a
/// forecast cut into slices of items on several devices draws exactly what one device would
/// draw for the whole batch ([`Backend::with_draw_window`](crate::Backend::with_draw_window)).
///
/// ```
/// use toto_fallback::rng::DrawWindow;
///
/// // Items 1..3 of a batch of 4, 2 elements per item: [outer, 2, 2] of [outer, 4, 2].
/// let window = DrawWindow::new(4, 1, 2, 2).expect("items 1..3 lie inside the batch");
/// let whole: Vec<u64> = (0..8).map(|i| window.index(i)).collect();
/// assert_eq!(whole, [2, 3, 4, 5, 10, 11, 12, 13]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrawWindow {
    items: u64,
    first: u64,
    len: u64,
    inner: u64,
}

impl DrawWindow {
    /// Items `first..first + len` of a batch of `items`, `inner` elements per item; `None`
    /// unless `len >= 1`, `inner >= 1` and `first + len <= items`.
    pub const fn new(items: usize, first: usize, len: usize, inner: usize) -> Option<Self> {
        if len == 0 || inner == 0 || first > items || len > items - first {
            return None;
        }
        Some(DrawWindow {
            items: items as u64,
            first: first as u64,
            len: len as u64,
            inner: inner as u64,
        })
    }

    /// The index in the whole call of this window's element `i`.
    #[inline]
    pub const fn index(&self, i: u64) -> u64 {
        let chunk = self.len * self.inner;
        (i / chunk) * (self.items * self.inner) + self.first * self.inner + i % chunk
    }

    /// The elements of the whole call whose window holds `n` elements: `n / (len·inner)`
    /// repetitions of the whole batch (saturating).
    pub const fn whole(&self, n: u64) -> u64 {
        (n / (self.len * self.inner)).saturating_mul(self.items.saturating_mul(self.inner))
    }

    /// The window as the kernels take it: the offset of element 0 (`first · inner`), the
    /// elements per repetition (`len · inner`) and the repetition's stride in the whole call
    /// (`items · inner`); `None` if one does not fit 32 bits.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))] // the wgpu kernels' arguments
    pub(crate) fn words(&self) -> Option<(u64, u32, u32)> {
        let chunk = u32::try_from(self.len * self.inner).ok()?;
        let stride = u32::try_from(self.items * self.inner).ok()?;
        Some((self.first * self.inner, chunk, stride))
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

    #[test]
    fn windows_of_a_split_cover_the_whole_call_once() {
        // A batch of 5 items, 3 elements each, repeated 4 times, cut 2 + 2 + 1.
        let (items, inner, outer) = (5usize, 3usize, 4u64);
        let mut seen = vec![0u32; items * inner * outer as usize];
        for (first, len) in [(0, 2), (2, 2), (4, 1)] {
            let w = DrawWindow::new(items, first, len, inner).unwrap();
            let n = outer * (len * inner) as u64;
            assert_eq!(w.whole(n), seen.len() as u64);
            for i in 0..n {
                let g = w.index(i);
                // Element i is item first + (i / inner) % len of repetition i / (len·inner).
                let rep = i / (len * inner) as u64;
                let item = first as u64 + (i / inner as u64) % len as u64;
                assert_eq!(
                    g,
                    (rep * items as u64 + item) * inner as u64 + i % inner as u64
                );
                seen[g as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
        assert!(DrawWindow::new(5, 4, 2, 3).is_none());
        assert!(DrawWindow::new(5, 6, 0, 3).is_none());
        assert!(DrawWindow::new(5, 0, 0, 3).is_none());
        assert!(DrawWindow::new(5, 0, 1, 0).is_none());
        assert!(DrawWindow::new(usize::MAX, usize::MAX, 1, 1).is_none());
    }
}
