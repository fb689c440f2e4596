//! Toto's causal patch std/mean scaler (`CausalPatchStdMeanScaler`) on the host, in f64 as
//! toto-ts does.

use burn::tensor::Tensor;
#[cfg(feature = "wgpu")]
use burn::tensor::{DType, Device, TensorData};
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
    RowState::start(x, w, p).extend(x, w, loc, scale, p.patch);
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
    fn to_words(self) -> [f64; 6] {
        let (lo, hi) = if self.hi.is_finite() {
            (self.lo, self.hi)
        } else {
            (0.0, 0.0)
        };
        [lo, hi, self.wsum, self.xsum, self.m2, self.mu_prev]
    }

    fn from_words(w: &[f64]) -> Self {
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
            let sigma = (var + MINIMUM_SCALE).sqrt();
            let factor = 10f64.powf(p.exponent);
            (MINIMUM_SCALE.max(sigma / factor), sigma * factor)
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

    /// Runs the recurrence over `x` (whole patches of `patch` steps, the last may be short),
    /// writing each patch's statistics, taken at its last step, over the patch.
    pub(crate) fn extend(
        &mut self,
        x: &[f32],
        w: &[f32],
        loc: &mut [f32],
        scale: &mut [f32],
        patch: usize,
    ) {
        let t = x.len();
        for start in (0..t).step_by(patch) {
            let end = (start + patch).min(t);
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
                sigma = (var + MINIMUM_SCALE)
                    .sqrt()
                    .clamp(self.lo.min(self.hi), self.hi);
            }
            loc[start..end].fill(mu as f32);
            scale[start..end].fill(sigma as f32);
        }
    }
}

/// The running statistics of Toto's causal scaler for a batch of series, so that a decode step
/// computes the statistics of its new patch from its own values alone (in f64, exactly as the
/// scaler over the whole series would).
///
/// Made empty ([`ScalerState::default`]); the first
/// [`Backend::patch_scaler_extend`](crate::Backend::patch_scaler_extend) call sets the clamp
/// bounds from its steps (its `prefix` first steps) and every call continues the series.
///
/// The statistics live where the backend that runs the scaler keeps them: on the host for
/// [`NdArray`](crate::NdArray), in a GPU buffer for [`Wgpu`](crate::Wgpu) on adapters with f64
/// shaders. A state moves (one small read or upload) if the op moves between backends.
#[derive(Debug, Clone, Default)]
pub struct ScalerState {
    /// `[B, V]` of the series, once started.
    pub(crate) shape: Option<[usize; 2]>,
    pub(crate) rows: Vec<RowState>,
    /// The same statistics as a `[B·V, 6]` f64 tensor on a GPU, when a device kernel keeps them
    /// (`rows` is then stale).
    pub(crate) device: Option<Tensor<2>>,
}

impl ScalerState {
    /// Whether no step has been seen yet.
    pub fn is_empty(&self) -> bool {
        self.shape.is_none()
    }

    /// The state of every series repeated `times` along the batch (sample index outer).
    pub(crate) fn repeat(&self, times: usize) -> Self {
        ScalerState {
            shape: self.shape.map(|[b, v]| [b * times, v]),
            rows: match self.device {
                Some(_) => Vec::new(),
                None => (0..times).flat_map(|_| self.rows.iter().copied()).collect(),
            },
            device: self.device.as_ref().map(|t| t.clone().repeat_dim(0, times)),
        }
    }

    /// The statistics as a `[B·V, 6]` f64 tensor on `device` (uploading host statistics once);
    /// `None` before the first step.
    #[cfg(feature = "wgpu")]
    pub(crate) fn on_device(&mut self, device: &Device) -> Option<Tensor<2>> {
        self.shape?;
        if self.device.is_none() {
            let words: Vec<f64> = self.rows.iter().flat_map(|r| r.to_words()).collect();
            let rows = self.rows.len();
            self.device = Some(Tensor::from_data(
                TensorData::new(words, [rows, 6]),
                (device, DType::F64),
            ));
        }
        self.device.clone()
    }

    /// Brings device statistics back to the host (a small read), for the host recurrence.
    fn bring_home(&mut self) -> crate::Result<()> {
        if let Some(t) = self.device.take() {
            let data = t.try_into_data().map_err(|e| crate::Error::ReadBack {
                what: "patch_scaler state".to_owned(),
                device: "gpu".to_owned(),
                reason: e.to_string(),
            })?;
            let words =
                data.convert::<f64>()
                    .try_to_vec::<f64>()
                    .map_err(|e| crate::Error::ReadBack {
                        what: "patch_scaler state".to_owned(),
                        device: "gpu".to_owned(),
                        reason: format!("{e:?}"),
                    })?;
            self.rows = words.chunks(6).map(RowState::from_words).collect();
        }
        Ok(())
    }

    /// Checks that new steps of batch shape `[b, v]` continue this state.
    pub(crate) fn check_shape(&self, b: usize, v: usize) -> crate::Result<()> {
        match self.shape {
            Some(seen) if seen != [b, v] => Err(crate::Error::Input {
                what: "patch_scaler_extend",
                reason: format!(
                    "the state holds series of shape {seen:?} (batch, variates); the new \
                     steps have {:?}",
                    [b, v]
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Continues every series with `values`/`weights` (row-major `[B·V, T]`), returning the
    /// new steps' `(loc, scale)`.
    pub(crate) fn extend(
        &mut self,
        shape: [usize; 3],
        values: &[f32],
        weights: &[f32],
        spec: ScalerSpec,
    ) -> crate::Result<(Vec<f32>, Vec<f32>)> {
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
                .for_each(|((state, (loc, scale)), (x, w))| {
                    state.extend(x, w, loc, scale, spec.patch)
                });
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

    #[test]
    fn extending_patch_by_patch_equals_the_whole_series() {
        // Two series of 6 patches of 4 with padding and an offset; the state starts on the
        // first 3 patches (the prefix) and continues one patch at a time.
        let (p, t) = (4, 24);
        let spec = ScalerSpec {
            patch: p,
            prefix: Some(12),
            stabilize: true,
            exponent: 10.0,
        };
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
}
