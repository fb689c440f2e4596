//! The categorical draw on the host, for CPU backends: one fused pass per row (max,
//! vectorised exponential, cumulative sum), then one uniform and a linear scan per draw.

use rand::RngExt;
use rayon::prelude::*;

use crate::backend::cpu_gemm::exp_in_place;
use crate::backend::ops::sampling::host::{CHUNK, fill};
use crate::backend::stream::StreamKey;

/// `samples` category indices per row of `logits` (`rows × k`, row-major, unnormalised
/// log-weights), as `[samples, rows]` row-major. Each row becomes, in place, the cumulative sums
/// of `exp(logit − row max)` (one fused pass); a uniform scaled by the row's total is then located
/// in them by a linear scan (K is small: Toto's mixtures have 24 components).
pub(crate) fn categorical(key: StreamKey, logits: Vec<f32>, k: usize, samples: usize) -> Vec<i64> {
    let rows = logits.len() / k;
    let mut cdf = logits;
    // Blocks of whole rows, about one CHUNK of values each, so rayon's splitting is amortised.
    let block = k * (CHUNK / k).max(1);
    cdf.par_chunks_mut(block).for_each(|block| {
        for row in block.chunks_exact_mut(k) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|w| *w -= max);
        }
        exp_in_place(block);
        for row in block.chunks_exact_mut(k) {
            let mut acc = 0.0;
            row.iter_mut().for_each(|w| {
                acc += *w;
                *w = acc;
            });
        }
    });
    let mut out = vec![0i64; samples * rows];
    fill(key, &mut out, |rng, offset, chunk| {
        for (j, o) in chunk.iter_mut().enumerate() {
            let row = &cdf[((offset + j) % rows) * k..][..k];
            let u = rng.random::<f32>() * row[k - 1];
            // Rounding can leave u at the total, and a row without a finite logit is NaN:
            // the last index then.
            *o = row.iter().position(|&c| u < c).unwrap_or(k - 1) as i64;
        }
    });
    out
}
