//! What a forecast returns, whichever model made it: the mean path and the forecast
//! distribution (sample paths or quantile knots), with quantiles at any level, the median, the
//! spread and draws; with the `plot` feature, fan charts; the progress callback both
//! generations' forecasts report to; and what a forecast takes, [`Series`].

#[cfg(feature = "plot")]
mod plot;
mod progress;
mod series;
mod sort;

pub(crate) use self::progress::Passes;
pub use self::progress::{Progress, Step};
pub use self::series::Series;

#[cfg(feature = "plot")]
pub use self::plot::FanChart;

use burn::tensor::Tensor;

use crate::backend::Backend;
use crate::distr::{Cdf, Distribution, QuantileKnots};
use crate::error::{Error, Result};

/// A [`Forecast`]'s tensors on one device, without its distribution object: what
/// [`MultiDevice`](crate::multi::MultiDevice) moves from each device to the first.
pub(crate) struct ForecastParts {
    mean: Tensor<3>,
    samples: Option<Tensor<4>>,
    knots: Option<(Vec<f64>, Tensor<4>)>,
}

/// A forecast, whichever model made it: the mean path, and the forecast distribution per step
/// as sample paths (Toto 1.0's sample mode) or quantile knots (Toto 2.0); Toto 1.0's mean mode
/// has the mean path alone.
///
/// Sample paths and quantile knots answer [`Forecast::quantile`] at any level,
/// [`Forecast::quantiles_at`], [`Forecast::median`], [`Forecast::std`] and [`Forecast::draw`];
/// a mean-mode forecast has only its mean and answers them with [`Error::Input`]. The fields and
/// [`Forecast::quantiles`] give the raw tensors.
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

    /// This forecast's tensors, moved to `device`, without the distribution built over them
    /// (the quantile knots are rebuilt once, by [`Forecast::concat`]).
    pub(crate) fn into_parts(self, device: &burn::tensor::Device) -> ForecastParts {
        ForecastParts {
            mean: self.mean.to_device(device),
            samples: self.samples.map(|s| s.to_device(device)),
            knots: self
                .quantiles
                .map(|q| (q.levels().to_vec(), q.values().clone().to_device(device))),
        }
    }

    /// The forecasts of consecutive slices of a batch ([`Forecast::into_parts`], on
    /// `backend`'s device) as one forecast of the batch, concatenated along the batch. Every
    /// part must be of one kind (mean, samples or knots at the same levels).
    pub(crate) fn concat(parts: Vec<ForecastParts>, backend: &B) -> Result<Self> {
        let mismatch = || Error::Input {
            what: "Forecast::concat",
            reason: "the parts are forecasts of different kinds".to_owned(),
        };
        let n = parts.len();
        let mut means = Vec::with_capacity(n);
        let mut samples = Vec::new();
        let mut knots = Vec::new();
        let mut levels: Option<Vec<f64>> = None;
        for part in parts {
            means.push(part.mean);
            samples.extend(part.samples);
            if let Some((l, values)) = part.knots {
                match &levels {
                    Some(seen) if *seen != l => return Err(mismatch()),
                    Some(_) => {}
                    None => levels = Some(l),
                }
                knots.push(values);
            }
        }
        if (!samples.is_empty() && samples.len() != n) || (!knots.is_empty() && knots.len() != n) {
            return Err(mismatch());
        }
        let quantiles = match levels {
            Some(levels) => Some(QuantileKnots::new(backend, &levels, Tensor::cat(knots, 0))?),
            None => None,
        };
        Ok(Forecast {
            mean: Tensor::cat(means, 0),
            samples: (!samples.is_empty()).then(|| Tensor::cat(samples, 0)),
            quantiles,
        })
    }

    /// The quantile knots of a quantile forecast (Toto 2.0): the distribution per series and
    /// step, with its levels, values, cdf, sampling and weighted quantile loss.
    pub fn quantiles(&self) -> Option<&QuantileKnots<B, 3, 4>> {
        self.quantiles.as_ref()
    }

    /// The `q`-quantile per step, `[B, V, H]`: between order statistics at `q·(n − 1)` of the
    /// sample paths (torch's linear interpolation), or between the quantile knots (linear, with
    /// the linear tails of [`QuantileKnots`]). For several levels, [`Forecast::quantiles_at`]
    /// sorts the paths once.
    ///
    /// # Errors
    /// [`Error::Input`] unless `q` is in `[0, 1]`, or for a mean-mode forecast (it has no
    /// distribution: forecast with `num_samples`, or read [`Forecast::mean`]).
    pub fn quantile(&self, q: f64) -> Result<Tensor<3>> {
        let [b, v, t] = self.mean.dims();
        Ok(self.quantiles_at(&[q])?.reshape([b, v, t]))
    }

    /// The quantiles at `levels` per step, `[B, V, H, levels.len()]`, level by level as
    /// [`Forecast::quantile`] computes them, from one sort of the sample paths. The sort runs
    /// on the forecast's device (a bitonic network of tensor ops: burn 0.22 itself sorts on the
    /// host on GPUs), so nothing is read back.
    ///
    /// ```
    /// use toto_fallback::auto::{AutoOptions, AutoToto};
    /// use toto_fallback::{Backend, NdArray, forecast::read_series};
    ///
    /// let cpu = NdArray::seeded(0);
    /// let model = AutoToto::from_dir(&cpu, "tests/fixtures/tiny")?;
    /// let series = burn::tensor::Tensor::<3>::ones([1, 2, 40], cpu.device());
    /// let mut options = AutoOptions::new(12);
    /// options.v1.num_samples = Some(16);
    /// options.v1.samples_per_batch = 16;
    /// let forecast = model.forecast(series, None, None, &options)?;
    /// let bands = forecast.quantiles_at(&[0.1, 0.5, 0.9])?; // [1, 2, 12, 3]
    /// assert_eq!(bands.dims(), [1, 2, 12, 3]);
    /// let median = read_series(forecast.median()?)?; // median[series][variate][step]
    /// assert_eq!((median.len(), median[0].len(), median[0][1].len()), (1, 2, 12));
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Input`] for a level outside `[0, 1]`, an empty `levels`, a forecast without
    /// sample paths, or a mean-mode forecast (forecast with `num_samples`); [`Error::TooLarge`]
    /// when the result would pass [`MAX_ELEMENTS`](crate::MAX_ELEMENTS).
    pub fn quantiles_at(&self, levels: &[f64]) -> Result<Tensor<4>> {
        let input = |reason: String| Error::Input {
            what: "Forecast::quantile",
            reason,
        };
        if let Some(&q) = levels.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return Err(input(format!("the level must be in [0, 1]; got {q}")));
        }
        if levels.is_empty() {
            return Err(input("no level asked for".to_owned()));
        }
        let [b, v, t] = self.mean.dims();
        let shape = [b, v, t, levels.len()];
        crate::shape::element_count(&shape).map_err(|elements| Error::TooLarge {
            what: "Forecast::quantiles_at (the result)",
            shape: shape.to_vec(),
            elements,
            limit: crate::shape::MAX_ELEMENTS,
            fix: "ask for fewer levels at a time",
        })?;
        if let Some(knots) = &self.quantiles {
            let at = levels
                .iter()
                .map(|&q| {
                    let p = Tensor::<3>::full(self.mean.dims(), q, &self.mean.device());
                    knots.quantile(p)
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Tensor::stack(at, 3));
        }
        let Some(samples) = &self.samples else {
            return Err(input(MEAN_MODE.to_owned()));
        };
        let n = samples.dims()[3];
        if n == 0 {
            return Err(input("the forecast holds no sample path".to_owned()));
        }
        let sorted = sort::sort_last(samples.clone());
        let at = |i: usize| sorted.clone().narrow(3, i, 1).reshape([b, v, t]);
        let at = levels
            .iter()
            .map(|&q| {
                let pos = q * (n - 1) as f64;
                let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
                let hi = (lo + 1).min(n - 1);
                at(lo).mul_scalar(1.0 - frac).add(at(hi).mul_scalar(frac))
            })
            .collect();
        Ok(Tensor::stack(at, 3))
    }

    /// The median (the 0.5-quantile): the point forecast of the GIFT-Eval and BOOM evaluations.
    ///
    /// # Errors
    /// As [`Forecast::quantile`]: a mean-mode forecast has no median (read its mean).
    pub fn median(&self) -> Result<Tensor<3>> {
        self.quantile(0.5)
    }

    /// The standard deviation per step: of the sample paths (Bessel-corrected; NaN for one
    /// path), or of the quantile knots' distribution.
    ///
    /// # Errors
    /// [`Error::Input`] for a mean-mode forecast (forecast with `num_samples`).
    pub fn std(&self) -> Result<Tensor<3>> {
        if let Some(knots) = &self.quantiles {
            return Ok(knots.stddev());
        }
        let Some(s) = &self.samples else {
            return Err(Error::Input {
                what: "Forecast::std",
                reason: MEAN_MODE.to_owned(),
            });
        };
        let n = s.dims()[3];
        let [b, v, t, _] = s.dims();
        Ok(s.clone()
            .var(3)
            .mul_scalar(if n > 1 { 1.0 } else { f64::NAN })
            .sqrt()
            .reshape([b, v, t]))
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
            None => Err(input(MEAN_MODE.to_owned())),
        }
    }
}

/// Why a mean-mode forecast answers no quantile, spread or draw.
const MEAN_MODE: &str = "a mean-mode forecast (Toto 1.0 without `num_samples`) has only its \
    mean path and no distribution; forecast with `num_samples` (sample paths) for quantiles, \
    spread and draws, or read `Forecast::mean`";

/// A `[B, V, H]` result (a mean, a median, a quantile) read into host memory, one `Vec` of `H`
/// values per series and variate: `rows[b][v][h]`. On a GPU this waits for the device.
///
/// # Errors
/// [`Error::ReadBack`] when the device failed computing it (out of memory, a lost device).
pub fn read_series(x: Tensor<3>) -> Result<Vec<Vec<Vec<f32>>>> {
    let [b, v, h] = x.dims();
    let flat = crate::backend::read_back("forecast::read_series", x)?;
    Ok((0..b)
        .map(|i| {
            (0..v)
                .map(|j| flat[(i * v + j) * h..(i * v + j + 1) * h].to_vec())
                .collect()
        })
        .collect())
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
