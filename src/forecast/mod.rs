//! What a forecast returns, whichever model made it: the mean path and the forecast
//! distribution (sample paths or quantile knots), with quantiles at any level, the median, the
//! spread and draws; with the `plot` feature, fan charts; and the progress callback both
//! generations' forecasts report to.

#[cfg(feature = "plot")]
mod plot;
mod progress;

pub(crate) use self::progress::Passes;
pub use self::progress::{Progress, Step};

#[cfg(feature = "plot")]
pub use self::plot::FanChart;

use burn::tensor::Tensor;

use crate::backend::Backend;
use crate::distr::{Cdf, Distribution, QuantileKnots};
use crate::error::{Error, Result};

/// A forecast, whichever model made it: the mean path, and the forecast distribution per step
/// as sample paths (Toto 1.0's sample mode) or quantile knots (Toto 2.0); Toto 1.0's mean mode
/// has the mean path alone.
///
/// Every representation answers [`Forecast::quantile`] at any level, [`Forecast::median`],
/// [`Forecast::std`] and [`Forecast::draw`]; the fields and [`Forecast::quantiles`] give the raw
/// tensors.
#[derive(Debug, Clone)]
pub struct Forecast<B: Backend> {
    /// `[B, V, prediction_length]`: the sample mean, the fed-back analytic mean (Toto 1.0's
    /// mean mode), or the mean of the quantile knots' distribution (Toto 2.0).
    pub mean: Tensor<3>,
    /// `[B, V, prediction_length, num_samples]`: Toto 1.0's sample paths, in sample mode.
    pub samples: Option<Tensor<4>>,
    /// The quantile knots, batch shape `[B, V, prediction_length]` (Toto 2.0).
    quantiles: Option<QuantileKnots<B, 3, 4>>,
}

impl<B: Backend> Forecast<B> {
    /// A forecast of the mean path alone (Toto 1.0's mean mode).
    pub(crate) fn from_mean(mean: Tensor<3>) -> Self {
        Forecast {
            mean,
            samples: None,
            quantiles: None,
        }
    }

    /// A forecast of sample paths (`[B, V, H, N]`) and their mean.
    pub(crate) fn from_samples(mean: Tensor<3>, samples: Tensor<4>) -> Self {
        Forecast {
            mean,
            samples: Some(samples),
            quantiles: None,
        }
    }

    /// A forecast of quantile knots; its mean is the knots' distribution's.
    pub(crate) fn from_quantiles(knots: QuantileKnots<B, 3, 4>) -> Self {
        Forecast {
            mean: knots.mean(),
            samples: None,
            quantiles: Some(knots),
        }
    }

    /// The quantile knots of a quantile forecast (Toto 2.0): the distribution per series and
    /// step, with its levels, values, cdf, sampling and weighted quantile loss.
    pub fn quantiles(&self) -> Option<&QuantileKnots<B, 3, 4>> {
        self.quantiles.as_ref()
    }

    /// The `q`-quantile per step: between order statistics at `q·(n − 1)` of the sample paths
    /// (torch's linear interpolation), or between the quantile knots (linear, with the linear
    /// tails of [`QuantileKnots`]); the mean path in mean mode.
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
        if let Some(knots) = &self.quantiles {
            let p = Tensor::<3>::full(self.mean.dims(), q, &self.mean.device());
            return knots.quantile(p);
        }
        let Some(samples) = &self.samples else {
            return Ok(self.mean.clone());
        };
        let [b, v, t, n] = samples.dims();
        if n == 0 {
            return Err(Error::Input {
                what: "Forecast::quantile",
                reason: "the forecast holds no sample path".to_owned(),
            });
        }
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

    /// The standard deviation per step: of the sample paths (Bessel-corrected), of the quantile
    /// knots' distribution; zeros in mean mode.
    pub fn std(&self) -> Tensor<3> {
        if let Some(knots) = &self.quantiles {
            return knots.stddev();
        }
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

    /// `n` draws per series and step, `[B, V, H, n]`: the first `n` sample paths of a sampled
    /// forecast, or draws from the quantile knots by inverse transform (independent across
    /// steps: marginal draws, not paths).
    ///
    /// # Errors
    /// [`Error::Input`] in mean mode (there is nothing to draw from: forecast with
    /// `num_samples`), or if a sampled forecast holds fewer than `n` paths; the backend's
    /// errors.
    pub fn draw(&self, n: usize) -> Result<Tensor<4>> {
        if let Some(knots) = &self.quantiles {
            let x: Tensor<4> = knots.sample(&[n])?; // [n, B, V, H]
            return Ok(x.permute([1, 2, 3, 0]));
        }
        let input = |reason: String| Error::Input {
            what: "Forecast::draw",
            reason,
        };
        match &self.samples {
            Some(s) if s.dims()[3] >= n => Ok(s.clone().narrow(3, 0, n)),
            Some(s) => Err(input(format!(
                "the forecast holds {} sample paths; asked for {n}",
                s.dims()[3]
            ))),
            None => Err(input(
                "a mean-mode forecast has no distribution to draw from; forecast with `num_samples`"
                    .to_owned(),
            )),
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

/// Logs at info level, once per process, model, device and request (`what`: the input shape,
/// horizon and the options that change the kernels; built only when the line may be logged), that a forecast of a new shape is
/// compiling and tuning its GPU kernels: the reason a first forecast takes seconds where later
/// ones take milliseconds. Called before the work, after the request's checks. Nothing for CPU
/// devices (nothing is compiled there); at most 1024 requests are remembered.
pub(crate) fn note_first_run(
    model: &str,
    device: &burn::tensor::Device,
    what: impl FnOnce() -> String,
) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    #[cfg(feature = "wgpu")]
    #[allow(unreachable_patterns)]
    let gpu = matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_));
    #[cfg(not(feature = "wgpu"))]
    let gpu = {
        let _ = device;
        false
    };
    if !gpu || !log::log_enabled!(log::Level::Info) {
        return;
    }
    let what = what();
    let key = format!("{model} {device:?} {what}");
    let new = SEEN
        .get_or_init(Default::default)
        .lock()
        .map(|mut seen| seen.len() < 1024 && seen.insert(key))
        .unwrap_or(false);
    if new {
        log::info!(
            "{model}: first forecast of {what} in this process: compiling GPU kernels (first run \
             of a shape only; autotune results and, with the `vulkan` feature, compiled kernels \
             are kept across runs by the `cache` feature; `AutoToto::warm_up` pays this at \
             start-up)"
        );
    }
}
