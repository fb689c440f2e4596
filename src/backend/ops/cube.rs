//! The kernel pieces every sampler shares: the Philox4x32-10 rounds, a block addressed by
//! `(element, call, slot)`, uniforms from words, and the polar Student-T transform.
//!
//! Every GPU thread computes one Philox block and the output elements it serves (four uniforms
//! or normals, two Student-T draws, one gamma or mixture draw), addressed by the elements'
//! indices ([`crate::rng`]), so a draw does not depend on the launch layout, and the uniforms
//! are the ones [`crate::rng`] computes on the host. Only 32-bit integers are used: CubeCL lowers
//! `mul_hi` to a native instruction on SPIR-V and emulates it from 16-bit halves on WGSL. The
//! constants are [`crate::rng`]'s.

use cubecl::prelude::*;

use crate::rng::{DrawKey, M0, M1, ROUNDS, UNIT, W0, W1};

/// `2π`, for the angles of Box–Muller and the polar method.
pub(crate) const TAU: f32 = std::f32::consts::TAU;

/// A [`DrawKey`] as the kernels' 32-bit scalars.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    k0: u32,
    k1: u32,
    offset: u64,
    call: u32,
}

impl From<DrawKey> for Key {
    fn from(key: DrawKey) -> Self {
        let [k0, k1] = key.key();
        Key {
            k0,
            k1,
            offset: key.offset,
            call: key.call,
        }
    }
}

/// A launch's Philox key and first block, as one kernel argument: block `first + t` is thread
/// `t`'s.
#[derive(CubeLaunch, CubeType)]
pub(crate) struct Stream {
    k0: u32,
    k1: u32,
    first_lo: u32,
    first_hi: u32,
    call: u32,
}

impl Key {
    /// The kernel argument for a launch serving `lanes` elements per block, and how many lanes
    /// of its first block lie before element 0.
    pub(crate) fn stream(&self, lanes: u32) -> (StreamLaunch, u32) {
        let lanes = u64::from(lanes);
        let block = self.offset / lanes;
        let first = StreamLaunch::new(
            self.k0,
            self.k1,
            block as u32,
            (block >> 32) as u32,
            self.call,
        );
        (first, (self.offset % lanes) as u32)
    }
}

/// Threads for `n` elements served `lanes` per block, starting `shift` lanes into a block.
pub(crate) fn blocks_for(n: usize, lanes: u32, shift: u32) -> usize {
    (n + shift as usize).div_ceil(lanes as usize)
}

/// The four words of one Philox block.
#[derive(CubeType, Clone, Copy)]
pub(crate) struct Block {
    pub(crate) w0: u32,
    pub(crate) w1: u32,
    pub(crate) w2: u32,
    pub(crate) w3: u32,
}

/// Philox4x32-10 (the same rounds as [`crate::rng::philox4x32_10`]).
#[cube]
pub(crate) fn philox(c0: u32, c1: u32, c2: u32, c3: u32, k0: u32, k1: u32) -> Block {
    let mut x0 = c0;
    let mut x1 = c1;
    let mut x2 = c2;
    let mut x3 = c3;
    let mut key0 = k0;
    let mut key1 = k1;
    #[unroll]
    for _ in 0..ROUNDS {
        let hi0 = x0.mul_hi(M0);
        let lo0 = x0 * M0;
        let hi1 = x2.mul_hi(M1);
        let lo1 = x2 * M1;
        let n0 = hi1 ^ x1 ^ key0;
        let n2 = hi0 ^ x3 ^ key1;
        x0 = n0;
        x1 = lo1;
        x2 = n2;
        x3 = lo0;
        key0 += W0;
        key1 += W1;
    }
    Block {
        w0: x0,
        w1: x1,
        w2: x2,
        w3: x3,
    }
}

/// Block `first + t` (a 64-bit index as two words) in slot `slot`.
#[cube]
pub(crate) fn block_at(t: u32, slot: u32, s: &Stream) -> Block {
    let lo = s.first_lo + t;
    let mut hi = s.first_hi;
    if lo < s.first_lo {
        hi += 1u32;
    }
    philox(lo, hi, s.call, slot, s.k0, s.k1)
}

/// Writes lane `lane` of thread `t`'s block (`lanes` per block, output starting `shift` lanes
/// into the first block) if it falls inside the output.
#[cube]
pub(crate) fn write_lane(out: &mut [f32], t: u32, lane: u32, lanes: u32, shift: u32, value: f32) {
    let g = t * lanes + lane;
    if g >= shift {
        let i = (g - shift) as usize;
        if i < out.len() {
            out[i] = value;
        }
    }
}

/// `[0, 1)`: the top 24 bits times 2^-24 ([`crate::rng::unit_f32`]).
#[cube]
pub(crate) fn unit(word: u32) -> f32 {
    f32::cast_from(word >> 8u32) * UNIT
}

/// `(0, 1]` ([`crate::rng::unit_open_f32`]).
#[cube]
pub(crate) fn unit_open(word: u32) -> f32 {
    f32::cast_from((word >> 8u32) + 1u32) * UNIT
}

/// `cos(2π u)` for a uniform `u`, as `cos` of an angle in `[-π, π)` (where WGSL bounds the
/// error of `cos`); the sign flip leaves the distribution unchanged.
#[cube]
pub(crate) fn cos_turn(u: f32) -> f32 {
    f32::cos((u - 0.5f32) * TAU)
}

/// NaN, computed at run time as `0/0` from `x − x` (or `inf − inf`): WGSL rejects a NaN literal
/// or constant expression.
#[allow(clippy::eq_op)] // x − x and 0 / 0 are the point: a NaN made at run time.
#[cube]
pub(crate) fn runtime_nan(x: f32) -> f32 {
    let z = x - x;
    let mut zero = z;
    if !(z == 0.0f32) {
        zero = 0.0f32;
    }
    zero / zero
}

/// `e^x − 1`, with the Taylor series below `|x| = 1/2` ([`crate::special::expm1`]).
#[cube]
pub(crate) fn expm1(x: f32) -> f32 {
    let mut out = f32::exp(x) - 1.0f32;
    if f32::abs(x) < 0.5f32 {
        let mut p = 2.755_732e-7f32; // 1/10!
        p = p * x + 2.755_731_9e-6f32; // 1/9!
        p = p * x + 2.480_158_7e-5f32;
        p = p * x + 1.984_127e-4f32;
        p = p * x + 1.388_888_9e-3f32;
        p = p * x + 8.333_333e-3f32;
        p = p * x + 4.166_666_8e-2f32;
        p = p * x + 0.166_666_67f32;
        p = p * x + 0.5f32;
        p = p * x + 1.0f32;
        out = x * p;
    }
    out
}

/// Bailey's polar Student-T without rejection: `cos(2π u₂) · sqrt(ν · expm1(−(2/ν) ln u₁))`,
/// `u₁ ∈ (0, 1]`; the normal limit `sqrt(−2 ln u₁)` for `ν = +∞`; NaN unless `ν > 0`.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(ν > 0)` is true for NaN too, on purpose.
#[cube]
pub(crate) fn polar_t(nu: f32, w1: u32, w2: u32) -> f32 {
    let ln_u = f32::ln(unit_open(w1));
    let mut r2 = nu * expm1(ln_u * (-2.0f32 / nu));
    if nu > 3.0e38f32 {
        r2 = -2.0f32 * ln_u;
    }
    let mut t = f32::sqrt(r2) * cos_turn(unit(w2));
    if !(nu > 0.0f32) {
        t = runtime_nan(nu);
    }
    t
}
