//! The scaler on the host, in f64 as toto-ts and toto-2 compute it: the reference every other
//! version is tested against, and [`NdArray`](crate::NdArray)'s implementation.

use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::{STATE_WORDS, ScalerSpec, ScalerState};
use crate::backend::transfer::{read_f32, upload};
use crate::error::{Error, Result};
use crate::op::Op;

/// A scaler computation on the host: `series` and `weights` read back, `(loc, scale)` computed by
/// `f` from their shape and values, both uploaded to `device`.
pub(crate) fn run(
    series: Tensor<3>,
    weights: Tensor<3>,
    device: &Device,
    f: impl FnOnce([usize; 3], &[f32], &[f32]) -> Result<(Vec<f32>, Vec<f32>)>,
) -> Result<(Tensor<3>, Tensor<3>)> {
    let shape = series.dims();
    let x = read_f32(Op::PatchScaler.name(), series)?;
    let w = read_f32(Op::PatchScaler.name(), weights)?;
    let (loc, scale) = f(shape, &x, &w)?;
    Ok((upload(loc, shape, device), upload(scale, shape, device)))
}

/// Per-patch `(loc, scale)` for `rows` series of length `t` (row-major `values` and `weights`,
/// weight 1 for a real value, 0 for padding), each broadcast over its patch: the statistics at
/// the last step of every patch, of a running (causal) Welford mean and Bessel-corrected
/// variance, `σ = max(sqrt(var + variance_floor), scale_floor)`, clamped relative to the global
/// statistics when `p.stabilize` ([`ScalerSpec`]).
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
    RowState::start(x, w, p).extend(x, w, loc, scale, p);
}

/// One series' running statistics: the clamp bounds of the global (context) statistics and the
/// f64 Welford sums after the steps seen so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowState {
    lo: f64,
    hi: f64,
    wsum: f64,
    xsum: f64,
    m2: f64,
    mu_prev: f64,
}

impl RowState {
    /// The six doubles of the device state (`lo, hi, wsum, xsum, m2, mu_prev`; no clamp is
    /// `lo = hi = 0`, as real bounds are positive).
    #[cfg(feature = "wgpu")]
    pub(crate) fn to_words(self) -> [f64; STATE_WORDS] {
        let (lo, hi) = if self.hi.is_finite() {
            (self.lo, self.hi)
        } else {
            (0.0, 0.0)
        };
        [lo, hi, self.wsum, self.xsum, self.m2, self.mu_prev]
    }

    pub(crate) fn from_words(w: &[f64]) -> Self {
        let (lo, hi) = if w[1] > 0.0 {
            (w[0], w[1])
        } else {
            (f64::NEG_INFINITY, f64::INFINITY)
        };
        RowState {
            lo,
            hi,
            wsum: w[2],
            xsum: w[3],
            m2: w[4],
            mu_prev: w[5],
        }
    }

    /// The state before the first step of `x`, with the clamp bounds from its first
    /// `p.prefix` steps (all of `x` without a prefix); no Bessel correction for them.
    pub(crate) fn start(x: &[f32], w: &[f32], p: ScalerSpec) -> Self {
        let t = x.len();
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
            let sigma = (var + p.variance_floor).sqrt();
            let factor = 10f64.powf(p.exponent);
            (p.variance_floor.max(sigma / factor), sigma * factor)
        } else {
            (f64::NEG_INFINITY, f64::INFINITY)
        };
        RowState {
            lo,
            hi,
            wsum: 0.0,
            xsum: 0.0,
            m2: 0.0,
            mu_prev: 0.0,
        }
    }

    /// The clamp bounds of the global statistics of `x`/`w` (their first `p.prefix` steps),
    /// as [`RowState::start`] sets them; `(−∞, ∞)` without `p.stabilize`.
    pub(crate) fn bounds(x: &[f32], w: &[f32], p: ScalerSpec) -> (f64, f64) {
        let s = Self::start(x, w, p);
        (s.lo, s.hi)
    }

    /// This state with the clamp bounds `(lo, hi)` (the running statistics unchanged).
    pub(crate) fn with_bounds(self, (lo, hi): (f64, f64)) -> Self {
        RowState { lo, hi, ..self }
    }

    /// Runs the recurrence over `x` (whole patches of `spec.patch` steps, the last may be short),
    /// writing each patch's statistics, taken at its last step, over the patch.
    pub(crate) fn extend(
        &mut self,
        x: &[f32],
        w: &[f32],
        loc: &mut [f32],
        scale: &mut [f32],
        spec: ScalerSpec,
    ) {
        let t = x.len();
        for start in (0..t).step_by(spec.patch) {
            let end = (start + spec.patch).min(t);
            let (mut mu, mut sigma) = (0.0, 0.0);
            for i in start..end {
                let (xi, wi) = (f64::from(x[i]), f64::from(w[i]));
                self.wsum += wi;
                self.xsum += wi * xi;
                let denom = self.wsum.max(1.0);
                mu = self.xsum / denom;
                self.m2 += wi * (xi - self.mu_prev) * (xi - mu);
                self.mu_prev = mu;
                let var = self.m2 / (denom - 1.0).max(1.0);
                sigma = (var + spec.variance_floor).sqrt();
                // As torch's `clamp(min=)`: a NaN stays NaN.
                if sigma < spec.scale_floor {
                    sigma = spec.scale_floor;
                }
                // Not `f64::clamp`, which panics on a NaN bound (a non-finite prefix): as the
                // kernel, a bound that does not compare leaves the scale alone.
                let lo = self.lo.min(self.hi);
                if sigma < lo {
                    sigma = lo;
                }
                if sigma > self.hi {
                    sigma = self.hi;
                }
            }
            loc[start..end].fill(mu as f32);
            scale[start..end].fill(sigma as f32);
        }
    }
}

impl ScalerState {
    /// Brings device statistics back to the host (a small read), for the host recurrence;
    /// returns the bytes read.
    pub(crate) fn bring_home(&mut self) -> Result<u64> {
        let Some(t) = self.device.take() else {
            return Ok(0);
        };
        let device = t.device();
        let words = t
            .try_into_vec_as::<f64>()
            .map_err(|e| Error::read_back("patch_scaler state", &device, e))?;
        self.rows = words
            .chunks(STATE_WORDS)
            .map(RowState::from_words)
            .collect();
        Ok(8 * words.len() as u64)
    }

    /// Continues every series with `values`/`weights` (row-major `[B·V, T]`), returning the
    /// new steps' `(loc, scale)`.
    pub(crate) fn extend(
        &mut self,
        shape: [usize; 3],
        values: &[f32],
        weights: &[f32],
        spec: ScalerSpec,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let [b, v, t] = shape;
        self.check_shape(b, v)?;
        self.bring_home()?;
        if self.shape.is_none() {
            self.rows = values
                .chunks(t.max(1))
                .zip(weights.chunks(t.max(1)))
                .map(|(x, w)| RowState::start(x, w, spec))
                .collect();
            self.rows.resize(b * v, RowState::start(&[], &[], spec));
            self.shape = Some([b, v]);
        }
        let mut loc = vec![0f32; values.len()];
        let mut scale = vec![0f32; values.len()];
        if t > 0 {
            self.rows
                .par_iter_mut()
                .zip(loc.par_chunks_mut(t).zip(scale.par_chunks_mut(t)))
                .zip(values.par_chunks(t).zip(weights.par_chunks(t)))
                .for_each(|((state, (loc, scale)), (x, w))| state.extend(x, w, loc, scale, spec));
        }
        Ok((loc, scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_series_has_its_mean_and_the_minimum_scale() {
        let x = vec![3.0f32; 16];
        let w = vec![1.0f32; 16];
        let params = ScalerSpec::toto(8, None, true, 10.0);
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
        let params = ScalerSpec::toto(4, None, false, 10.0);
        let (loc, scale) = patch_stats(&x, &w, 8, params);
        assert_eq!(&loc[..4], &[0.0; 4], "no valid point yet: mean 0");
        assert!(loc[4..].iter().all(|&l| l == 2.5));
        // Sample variance of 1..=4 is 5/3.
        let want = (5.0f64 / 3.0 + 0.1).sqrt() as f32;
        assert!(scale[4..].iter().all(|&s| (s - want).abs() < 1e-6));
    }

    #[test]
    fn extending_patch_by_patch_equals_the_whole_series() {
        // Two series of 6 patches of 4 with padding and an offset; the state starts on the
        // first 3 patches (the prefix) and continues one patch at a time.
        let (p, t) = (4, 24);
        let spec = ScalerSpec::toto(p, Some(12), true, 10.0);
        let x: Vec<f32> = (0..2 * t)
            .map(|i| 1e3 + (i as f32 * 0.7).sin() * (1 + i % 5) as f32)
            .collect();
        let mut w = vec![1f32; 2 * t];
        w[0] = 0.0;
        w[1] = 0.0;
        w[t + 13] = 0.0;
        let (want_loc, want_scale) = patch_stats(&x, &w, t, spec);
        let mut state = ScalerState::default();
        let mut got = (vec![], vec![]);
        let mut start = 0;
        for len in [12, 4, 4, 4] {
            let cut = |v: &[f32]| -> Vec<f32> {
                v.chunks(t)
                    .flat_map(|row| row[start..start + len].to_vec())
                    .collect()
            };
            let (loc, scale) = state.extend([1, 2, len], &cut(&x), &cut(&w), spec).unwrap();
            got.0.push((start, len, loc));
            got.1.push(scale);
            start += len;
        }
        for ((start, len, loc), scale) in got.0.iter().zip(&got.1) {
            for r in 0..2 {
                assert_eq!(
                    &loc[r * len..(r + 1) * len],
                    &want_loc[r * t + start..r * t + start + len]
                );
                assert_eq!(
                    &scale[r * len..(r + 1) * len],
                    &want_scale[r * t + start..r * t + start + len]
                );
            }
        }
        // Another batch shape is refused.
        assert!(
            state
                .extend([2, 2, 4], &[0.0; 16], &[1.0; 16], spec)
                .is_err()
        );
    }

    #[test]
    fn toto2_scale_has_a_floor_and_no_offset() {
        // toto-2's PatchedCausalStdScaler: sqrt(var) with correction 1, at least 1e-6; one
        // observation has variance 0, so the floor.
        let x = [5.0f32, 1.0, 2.0, 3.0];
        let w = [1.0f32, 0.0, 1.0, 1.0];
        let (loc, scale) = patch_stats(&x, &w, 4, ScalerSpec::toto2(2));
        assert_eq!(
            &loc[..2],
            &[5.0, 5.0],
            "patch 1: one observation, the mean is that value"
        );
        assert_eq!(&scale[..2], &[1e-6, 1e-6]);
        // Patch 2: observations 5, 2, 3: mean 10/3, sample variance 7/3.
        assert!((loc[3] - 10.0 / 3.0).abs() < 1e-6, "{}", loc[3]);
        let want = (7.0f64 / 3.0).sqrt() as f32;
        assert!((scale[3] - want).abs() < 1e-6, "{} vs {want}", scale[3]);
    }
}
