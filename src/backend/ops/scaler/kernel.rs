//! The scaler kernels, in f64 on adapters with f64 shaders: one thread per series runs the
//! host's recurrence ([`super::host`]) in the same order.

use cubecl::prelude::*;

use super::STATE_WORDS;

/// [`STATE_WORDS`] as the kernels' index type.
const STATE: u32 = STATE_WORDS as u32;

/// The state before a series' first step: the clamp bounds from its first `end` steps (the
/// weighted mean and variance without Bessel correction, as toto-ts), zero sums.
#[cube(launch)]
pub(crate) fn scaler_start_kernel(
    x: &[f32],
    w: &[f32],
    state: &mut [f64],
    rows: u32,
    t: u32,
    end: u32,
    stabilize: u32,
    factor: f64,
    variance_floor: f64,
) {
    let r = u32::cast_from(ABSOLUTE_POS);
    if r >= rows {
        terminate!();
    }
    let base = r * t;
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    if stabilize != 0u32 {
        let mut wg = 0.0f64;
        let mut sg = 0.0f64;
        for i in 0..end {
            let wi = f64::cast_from(w[(base + i) as usize]);
            wg += wi;
            sg += wi * f64::cast_from(x[(base + i) as usize]);
        }
        wg = f64::max(wg, 1.0f64);
        let mu = sg / wg;
        let mut ss = 0.0f64;
        for i in 0..end {
            let d = (f64::cast_from(x[(base + i) as usize]) - mu)
                * f64::cast_from(w[(base + i) as usize]);
            ss += d * d;
        }
        let sigma = f64::sqrt(ss / wg + variance_floor);
        lo = f64::max(variance_floor, sigma / factor);
        hi = sigma * factor;
    }
    let s = (r * STATE) as usize;
    state[s] = lo;
    state[s + 1] = hi;
    state[s + 2] = 0.0f64;
    state[s + 3] = 0.0f64;
    state[s + 4] = 0.0f64;
    state[s + 5] = 0.0f64;
}

/// Continues each series over `t` steps (whole patches of `patch`, the last may be short): the
/// running weighted mean and Bessel-corrected variance in f64,
/// `σ = max(sqrt(var + variance_floor), scale_floor)` clamped, each patch's statistics at its
/// last step written over the patch.
// `mu` and `sigma` are written by the first step before use; CubeCL has no `is_multiple_of`.
#[allow(unused_assignments, clippy::manual_is_multiple_of)]
#[cube(launch)]
pub(crate) fn scaler_extend_kernel(
    x: &[f32],
    w: &[f32],
    state_in: &[f64],
    state_out: &mut [f64],
    loc: &mut [f32],
    scale: &mut [f32],
    rows: u32,
    t: u32,
    patch: u32,
    variance_floor: f64,
    scale_floor: f64,
) {
    let r = u32::cast_from(ABSOLUTE_POS);
    if r >= rows {
        terminate!();
    }
    let base = r * t;
    let s = (r * STATE) as usize;
    let lo = state_in[s];
    let hi = state_in[s + 1];
    let mut wsum = state_in[s + 2];
    let mut xsum = state_in[s + 3];
    let mut m2 = state_in[s + 4];
    let mut mu_prev = state_in[s + 5];
    let mut start = 0u32;
    let mut mu = 0.0f64;
    let mut sigma = 0.0f64;
    for i in 0..t {
        let xi = f64::cast_from(x[(base + i) as usize]);
        let wi = f64::cast_from(w[(base + i) as usize]);
        wsum += wi;
        xsum += wi * xi;
        let denom = f64::max(wsum, 1.0f64);
        mu = xsum / denom;
        m2 += wi * (xi - mu_prev) * (xi - mu);
        mu_prev = mu;
        let var = m2 / f64::max(denom - 1.0f64, 1.0f64);
        sigma = f64::sqrt(var + variance_floor);
        // As torch's `clamp(min=)`: a NaN stays NaN.
        if sigma < scale_floor {
            sigma = scale_floor;
        }
        if hi > 0.0f64 {
            sigma = f64::min(f64::max(sigma, f64::min(lo, hi)), hi);
        }
        if (i + 1u32) % patch == 0u32 || i + 1u32 == t {
            let m = f32::cast_from(mu);
            let sd = f32::cast_from(sigma);
            for j in start..i + 1u32 {
                loc[(base + j) as usize] = m;
                scale[(base + j) as usize] = sd;
            }
            start = i + 1u32;
        }
    }
    state_out[s] = lo;
    state_out[s + 1] = hi;
    state_out[s + 2] = wsum;
    state_out[s + 3] = xsum;
    state_out[s + 4] = m2;
    state_out[s + 5] = mu_prev;
}
