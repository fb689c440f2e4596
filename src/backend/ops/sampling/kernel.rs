//! The sampler kernels: one Philox block per thread ([`super::super::cube`]), the output
//! elements it serves written by index.

use cubecl::prelude::*;

use crate::backend::ops::cube::{
    Stream, TAU, block_at, cos_turn, polar_t, runtime_nan, unit, unit_open, write_lane,
};

/// Uniforms (or normals) a Philox block serves: one per word.
pub(crate) const FOUR_LANES: u32 = 4;
/// Student-T draws a Philox block serves: two words each.
pub(crate) const TWO_LANES: u32 = 2;

#[cube(launch)]
pub(crate) fn uniform_kernel(out: &mut [f32], threads: u32, stream: Stream, shift: u32) {
    let t = u32::cast_from(ABSOLUTE_POS);
    if t >= threads {
        terminate!();
    }
    let b = block_at(t, 0u32, &stream);
    write_lane(out, t, 0u32, FOUR_LANES, shift, unit(b.w0));
    write_lane(out, t, 1u32, FOUR_LANES, shift, unit(b.w1));
    write_lane(out, t, 2u32, FOUR_LANES, shift, unit(b.w2));
    write_lane(out, t, 3u32, FOUR_LANES, shift, unit(b.w3));
}

/// Box–Muller on words 0-1 (lanes 0, 1: cosine, sine) and 2-3 (lanes 2, 3).
#[cube(launch)]
pub(crate) fn normal_kernel(out: &mut [f32], threads: u32, stream: Stream, shift: u32) {
    let t = u32::cast_from(ABSOLUTE_POS);
    if t >= threads {
        terminate!();
    }
    let b = block_at(t, 0u32, &stream);
    let r0 = f32::sqrt(-2.0f32 * f32::ln(unit_open(b.w0)));
    let a0 = (unit(b.w1) - 0.5f32) * TAU;
    let r1 = f32::sqrt(-2.0f32 * f32::ln(unit_open(b.w2)));
    let a1 = (unit(b.w3) - 0.5f32) * TAU;
    write_lane(out, t, 0u32, FOUR_LANES, shift, r0 * f32::cos(a0));
    write_lane(out, t, 1u32, FOUR_LANES, shift, r0 * f32::sin(a0));
    write_lane(out, t, 2u32, FOUR_LANES, shift, r1 * f32::cos(a1));
    write_lane(out, t, 3u32, FOUR_LANES, shift, r1 * f32::sin(a1));
}

/// Two Student-T draws per block: lane 0 from words 0-1, lane 1 from words 2-3.
#[cube(launch)]
pub(crate) fn student_t_kernel(
    df: &[f32],
    out: &mut [f32],
    threads: u32,
    stream: Stream,
    shift: u32,
) {
    let t = u32::cast_from(ABSOLUTE_POS);
    if t >= threads {
        terminate!();
    }
    let b = block_at(t, 0u32, &stream);
    let g = t * TWO_LANES;
    if g >= shift {
        let i = (g - shift) as usize;
        if i < out.len() {
            out[i] = polar_t(df[i], b.w0, b.w1);
        }
    }
    let i = (g + 1u32 - shift) as usize;
    if i < out.len() {
        out[i] = polar_t(df[i], b.w2, b.w3);
    }
}

/// Marsaglia & Tsang (2000) with the `α < 1` boost `Gamma(α + 1) · U^(1/α)`.
///
/// Attempt `a` of element `i` reads block `(i, call, a)`: words 0-1 make the normal (Box–Muller),
/// word 2 the acceptance uniform, word 3 of the accepted attempt the boost uniform (independent
/// of the acceptance, which reads words 0-2 only). Each attempt is accepted with probability
/// above 0.95, so a warp of 32 finishes in about three; the loop has no bound because a bound
/// would leave some element unfinished, but the chance of 20 rejections in a row is below 1e-26.
/// A two-kernel split (one attempt each, then the rejected elements from an atomic list) keeps
/// warps converged but measured slower on an H100 (docs/PERFORMANCE.md).
#[allow(unused_assignments)] // `accepted` and `w3` are written before the loop breaks.
#[cube(launch)]
pub(crate) fn gamma_kernel(alpha: &[f32], out: &mut [f32], stream: Stream) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let a = alpha[i];
    let mut result = runtime_nan(a);
    if a > 0.0f32 {
        let boost = a < 1.0f32;
        let mut shape = a;
        if boost {
            shape = a + 1.0f32;
        }
        let d = shape - 0.333_333_34f32;
        let c = 1.0f32 / f32::sqrt(9.0f32 * d);
        let index = u32::cast_from(i);
        let mut attempt = 0u32;
        let mut accepted = 0.0f32;
        let mut w3 = 0u32;
        loop {
            let b = block_at(index, attempt, &stream);
            let x = f32::sqrt(-2.0f32 * f32::ln(unit_open(b.w0))) * cos_turn(unit(b.w1));
            let v = 1.0f32 + c * x;
            if v > 0.0f32 {
                let v3 = v * v * v;
                let u = unit_open(b.w2);
                let x2 = x * x;
                if u < 1.0f32 - 0.0331f32 * x2 * x2
                    || f32::ln(u) < 0.5f32 * x2 + d * (1.0f32 - v3 + f32::ln(v3))
                {
                    accepted = d * v3;
                    w3 = b.w3;
                    break;
                }
            }
            attempt += 1u32;
        }
        result = accepted;
        if boost {
            result = accepted * f32::exp(f32::ln(unit_open(w3)) / a);
        }
        if a > 3.0e38f32 {
            result = a;
        }
        result = f32::max(result, f32::MIN_POSITIVE);
    }
    out[i] = result;
}
