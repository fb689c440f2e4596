//! Toto's causal patch std/mean scaler (`CausalPatchStdMeanScaler`) on the host, in f64 as
//! toto-ts does.

use rayon::prelude::*;

/// The scaler's constants: toto-ts's `minimum_scale` is *added* to the variance.
pub(crate) const MINIMUM_SCALE: f64 = 0.1;

use super::ScalerSpec;

/// Per-patch `(loc, scale)` for `rows` series of length `t` (row-major `values` and `weights`,
/// weight 1 for a real value, 0 for padding), each broadcast over its patch: the statistics at
/// the last step of every patch, of a running (causal) Welford mean and Bessel-corrected
/// variance, `σ = sqrt(var + 0.1)`, clamped relative to the global statistics.
pub(crate) fn patch_stats(
    values: &[f32],
    weights: &[f32],
    t: usize,
    p: ScalerSpec,
) -> (Vec<f32>, Vec<f32>) {
    let mut loc = vec![0f32; values.len()];
    let mut scale = vec![0f32; values.len()];
    if t == 0 {
        return (loc, scale);
    }
    loc.par_chunks_mut(t)
        .zip(scale.par_chunks_mut(t))
        .zip(values.par_chunks(t).zip(weights.par_chunks(t)))
        .for_each(|((loc, scale), (x, w))| row(x, w, loc, scale, p));
    (loc, scale)
}

fn row(x: &[f32], w: &[f32], loc: &mut [f32], scale: &mut [f32], p: ScalerSpec) {
    let t = x.len();
    // Global (context-only) statistics for the clamp; no Bessel correction.
    let (lo, hi) = if p.stabilize {
        let end = p.prefix.unwrap_or(t).min(t);
        let (mut wg, mut sg) = (0.0f64, 0.0f64);
        for i in 0..end {
            wg += f64::from(w[i]);
            sg += f64::from(w[i]) * f64::from(x[i]);
        }
        let wg = wg.max(1.0);
        let mu = sg / wg;
        let var: f64 = (0..end)
            .map(|i| ((f64::from(x[i]) - mu) * f64::from(w[i])).powi(2))
            .sum::<f64>()
            / wg;
        let sigma = (var + MINIMUM_SCALE).sqrt();
        let factor = 10f64.powf(p.exponent);
        (MINIMUM_SCALE.max(sigma / factor), sigma * factor)
    } else {
        (f64::NEG_INFINITY, f64::INFINITY)
    };
    let (mut wsum, mut xsum, mut m2, mut mu_prev) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for start in (0..t).step_by(p.patch) {
        let end = (start + p.patch).min(t);
        let (mut mu, mut sigma) = (0.0, 0.0);
        for i in start..end {
            let (xi, wi) = (f64::from(x[i]), f64::from(w[i]));
            wsum += wi;
            xsum += wi * xi;
            let denom = wsum.max(1.0);
            mu = xsum / denom;
            m2 += wi * (xi - mu_prev) * (xi - mu);
            mu_prev = mu;
            let var = m2 / (denom - 1.0).max(1.0);
            sigma = (var + MINIMUM_SCALE).sqrt().clamp(lo.min(hi), hi);
        }
        loc[start..end].fill(mu as f32);
        scale[start..end].fill(sigma as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_series_has_its_mean_and_the_minimum_scale() {
        let x = vec![3.0f32; 16];
        let w = vec![1.0f32; 16];
        let params = ScalerSpec {
            patch: 8,
            prefix: None,
            stabilize: true,
            exponent: 10.0,
        };
        let (loc, scale) = patch_stats(&x, &w, 16, params);
        assert!(loc.iter().all(|&l| l == 3.0));
        // var = 0, so sigma = sqrt(0.1).
        assert!(scale.iter().all(|&s| (s - 0.1f32.sqrt()).abs() < 1e-7));
    }

    #[test]
    fn padding_is_ignored_and_stats_are_taken_at_the_patch_end() {
        // Patch 1 is padding (weight 0) with garbage values; patch 2 holds 1..=4.
        let x = [1e6f32, -1e6, 7.0, 9.0, 1.0, 2.0, 3.0, 4.0];
        let w = [0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let params = ScalerSpec {
            patch: 4,
            prefix: None,
            stabilize: false,
            exponent: 10.0,
        };
        let (loc, scale) = patch_stats(&x, &w, 8, params);
        assert_eq!(&loc[..4], &[0.0; 4], "no valid point yet: mean 0");
        assert!(loc[4..].iter().all(|&l| l == 2.5));
        // Sample variance of 1..=4 is 5/3.
        let want = (5.0f64 / 3.0 + 0.1).sqrt() as f32;
        assert!(scale[4..].iter().all(|&s| (s - want).abs() < 1e-6));
    }
}
