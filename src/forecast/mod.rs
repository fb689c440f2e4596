//! What a forecast returns, whichever model made it: the mean path and, when sampled, every
//! sample path, with quantiles, the median and the spread; with the `plot` feature, fan charts.

#[cfg(feature = "plot")]
mod plot;

#[cfg(feature = "plot")]
pub use self::plot::FanChart;

use burn::tensor::Tensor;

use crate::error::{Error, Result};

/// A forecast: the mean path and, in sample mode, every sample path.
#[derive(Debug, Clone)]
pub struct Forecast {
    /// `[B, V, prediction_length]`: the sample mean, or the fed-back analytic mean.
    pub mean: Tensor<3>,
    /// `[B, V, prediction_length, num_samples]` in sample mode.
    pub samples: Option<Tensor<4>>,
}

impl Forecast {
    /// The `q`-quantile of the samples per step (torch's linear interpolation between order
    /// statistics at `q·(n − 1)`); the mean path in mean mode.
    ///
    /// # Errors
    /// [`Error::Input`] unless `q` is in `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Result<Tensor<3>> {
        if !(0.0..=1.0).contains(&q) {
            return Err(Error::Input {
                what: "Forecast::quantile",
                reason: format!("the level must be in [0, 1]; got {q}"),
            });
        }
        let Some(samples) = &self.samples else {
            return Ok(self.mean.clone());
        };
        let [b, v, t, n] = samples.dims();
        let sorted = samples.clone().sort(3);
        let pos = q * (n - 1) as f64;
        let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
        let hi = (lo + 1).min(n - 1);
        let at = |i: usize| {
            sorted
                .clone()
                .slice([0..b, 0..v, 0..t, i..i + 1])
                .reshape([b, v, t])
        };
        Ok(at(lo).mul_scalar(1.0 - frac).add(at(hi).mul_scalar(frac)))
    }

    /// The median (the 0.5-quantile): the point forecast of the GIFT-Eval and BOOM evaluations.
    ///
    /// # Errors
    /// Never in practice; as [`Forecast::quantile`].
    pub fn median(&self) -> Result<Tensor<3>> {
        self.quantile(0.5)
    }

    /// The sample standard deviation per step (Bessel-corrected); zeros in mean mode.
    pub fn std(&self) -> Tensor<3> {
        match &self.samples {
            None => self.mean.zeros_like(),
            Some(s) => {
                let n = s.dims()[3];
                let [b, v, t, _] = s.dims();
                s.clone()
                    .var(3)
                    .mul_scalar(if n > 1 { 1.0 } else { f64::NAN })
                    .sqrt()
                    .reshape([b, v, t])
            }
        }
    }
}

/// Waits for the work behind `t` and reports its failure as [`Error::ReadBack`] of `what` (which
/// should say what to lower if an allocation failed). burn's tensor ops are lazy and
/// infallible: an allocation the device refuses (out of memory, or past the adapter's largest
/// buffer) marks the tensors that depend on it as failed, and the failure surfaces when they
/// are read. Reading one sum of the result here turns it into an error of the call that queued
/// the work, instead of a panic in the caller's `into_data`.
pub(crate) fn settle(what: &str, t: &Tensor<3>) -> Result<()> {
    t.clone()
        .sum()
        .try_into_data()
        .map(drop)
        .map_err(|e| Error::read_back(what, &t.device(), e.into()))
}
