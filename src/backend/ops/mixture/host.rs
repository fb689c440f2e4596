//! The categorical and mixture draws on the host, for CPU backends: one fused pass per row
//! (max, vectorised exponential, cumulative sum), then one uniform and a linear scan per draw.
//! The mixture draw computes what the wgpu kernel computes, from the same Philox blocks.

use std::f32::consts::TAU;

use rand::RngExt;
use rayon::prelude::*;

use crate::backend::cpu::CpuKernels;
use crate::backend::cpu::vector::exp_in_place;
use crate::backend::ops::sampling::host::{CHUNK, fill};
use crate::backend::stream::StreamKey;
use crate::rng::{DrawKey, DrawWindow, unit_f32, unit_open_f32};

/// `samples` category indices per row of `logits` (`rows × k`, row-major, unnormalised
/// log-weights), as `[samples, rows]` row-major. Each row becomes, in place, the cumulative sums
/// of `exp(logit − row max)` (one fused pass); a uniform scaled by the row's total is then located
/// in them by a linear scan (K is small: Toto's mixtures have 24 components).
pub(crate) fn categorical(key: StreamKey, logits: Vec<f32>, k: usize, samples: usize) -> Vec<i64> {
    let rows = logits.len() / k;
    let cdf = cumulative(logits, k);
    let mut out = vec![0i64; samples * rows];
    fill(key, &mut out, |rng, offset, chunk| {
        for (j, o) in chunk.iter_mut().enumerate() {
            let row = &cdf[((offset + j) % rows) * k..][..k];
            *o = pick(row, rng.random::<f32>()) as i64;
        }
    });
    out
}

/// The component a uniform `u` picks from a row of cumulative weights: the first whose
/// cumulative weight exceeds `u · total`. Rounding can leave `u · total` at the total, and a row
/// without a finite logit is NaN: the last component then (as the wgpu kernel).
#[inline]
fn pick(cdf: &[f32], u: f32) -> usize {
    let target = u * cdf[cdf.len() - 1];
    cdf.iter()
        .position(|&c| target < c)
        .unwrap_or(cdf.len() - 1)
}

/// Bailey's polar Student-T without rejection from two Philox words, as the wgpu kernels
/// compute it: `cos(2π u₂) · sqrt(ν · expm1(−(2/ν) ln u₁))`, `u₁ ∈ (0, 1]`; the normal limit
/// for `ν = +∞`; NaN unless `ν > 0`.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(ν > 0)` is true for NaN too, on purpose.
#[inline]
fn polar_t(nu: f32, w1: u32, w2: u32) -> f32 {
    let ln_u = unit_open_f32(w1).ln();
    let r2 = if nu > 3.0e38 {
        -2.0 * ln_u
    } else {
        nu * (ln_u * (-2.0 / nu)).exp_m1()
    };
    if !(nu > 0.0) {
        return f32::NAN;
    }
    r2.sqrt() * ((unit_f32(w2) - 0.5) * TAU).cos()
}

/// The first half of a Student-T mixture draw, `[samples, rows]` of them, one Philox block per
/// draw as the wgpu kernel reads them: word 0 picks the component against the row's cumulative
/// weights (returned as its index in `0..k`), words 1-2 are kept for the Student-T
/// ([`student_t_from_words`]). Draw `i` reads block `key.offset + i`, or, through a `window`,
/// `key.offset + window.index(i)`: the draws depend on neither the thread count nor how a batch
/// is cut into slices.
pub(crate) fn pick_components(
    key: DrawKey,
    window: Option<DrawWindow>,
    logits: Vec<f32>,
    k: usize,
    samples: usize,
) -> (Vec<i64>, Vec<[u32; 2]>) {
    let rows = logits.len() / k;
    let cdf = cumulative(logits, k);
    let n = samples * rows;
    let mut index = vec![0i64; n];
    let mut words = vec![[0u32; 2]; n];
    index
        .par_chunks_mut(CHUNK)
        .zip(words.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, (index, words))| {
            for (j, (o, w)) in index.iter_mut().zip(words.iter_mut()).enumerate() {
                let i = (c * CHUNK + j) as u64;
                let g = window.map_or(i, |w| w.index(i));
                let [w0, w1, w2, _] = key.block(key.offset.wrapping_add(g), 0);
                let r = (c * CHUNK + j) % rows;
                *o = pick(&cdf[r * k..][..k], unit_f32(w0)) as i64;
                *w = [w1, w2];
            }
        });
    (index, words)
}

/// The second half: `loc + scale · T(df)` per draw from the chosen components' parameters and
/// the draw's two Philox words (Bailey's polar method, as the wgpu kernel).
pub(crate) fn student_t_from_words(
    df: &[f32],
    loc: &[f32],
    scale: &[f32],
    words: &[[u32; 2]],
) -> Vec<f32> {
    let mut out = vec![0.0f32; words.len()];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let at = c * CHUNK;
            for (j, o) in chunk.iter_mut().enumerate() {
                let [w1, w2] = words[at + j];
                *o = loc[at + j] + scale[at + j] * polar_t(df[at + j], w1, w2);
            }
        });
    out
}

/// Each row of `logits` (`k` wide) as the cumulative sums of `exp(logit − row max)`, in place
/// (one fused pass per block of rows, in parallel).
fn cumulative(logits: Vec<f32>, k: usize) -> Vec<f32> {
    let mut cdf = logits;
    // Blocks of whole rows, about one CHUNK of values each, so rayon's splitting is amortised.
    let block = k * (CHUNK / k).max(1);
    cdf.par_chunks_mut(block).for_each(|block| {
        for row in block.chunks_exact_mut(k) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|w| *w -= max);
        }
        exp_in_place(CpuKernels::Auto.target(), block);
        for row in block.chunks_exact_mut(k) {
            let mut acc = 0.0;
            row.iter_mut().for_each(|w| {
                acc += *w;
                *w = acc;
            });
        }
    });
    cdf
}
