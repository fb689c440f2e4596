//! What a forecast returns, whichever model made it: the mean path and the forecast
//! distribution (sample paths or quantile knots), with quantiles at any level, the median, the
//! spread and draws; with the `plot` feature, fan charts; the progress callback both
//! generations' forecasts report to; and what a forecast takes, [`Series`].

mod anomaly;
mod forecaster;
#[cfg(feature = "plot")]
mod plot;
mod progress;
mod request;
mod series;
mod stream;

pub use self::anomaly::AnomalyScores;
pub(crate) use self::forecaster::sealed::Sealed;
pub use self::forecaster::{Forecaster, Generation};
pub(crate) use self::progress::Passes;
pub use self::progress::{Progress, Step};
pub use self::request::{ForecastOptions, ForecastRequest, Toto2Settings, TotoSettings};
pub(crate) use self::request::{check_covariates, toto1_refuses_covariates};
pub use self::series::Series;
pub use self::stream::{Stream, StreamContext, StreamCovariates, StreamOptions, StreamStats};

#[cfg(feature = "plot")]
pub use self::plot::FanChart;

use burn::tensor::Tensor;

use crate::backend::Backend;
use crate::distr::{Cdf, Distribution, QuantileKnots};
use crate::error::{Error, InputKind, Result};

/// A [`Forecast`]'s tensors on one device, without its distribution object: what
/// [`MultiDevice`](crate::multi::MultiDevice) moves from each device to the first.
#[allow(clippy::large_enum_variant)] // one per device and call, moved once: no gain in boxing
pub(crate) enum ForecastParts {
    Mean(Tensor<3>),
    Samples { mean: Tensor<3>, paths: Tensor<4> },
    Quantiles { levels: Vec<f64>, knots: Tensor<4> },
}

/// A forecast, whichever model made it, in one of three states: the mean path alone (Toto 1.0's
/// mean mode), sample paths (Toto 1.0) or quantile knots (Toto 2.0), each with the mean path.
///
/// Sample paths and quantile knots answer [`Forecast::quantile`] at any level,
/// [`Forecast::quantiles_at`], [`Forecast::median`], [`Forecast::std`] and [`Forecast::draw`];
/// [`Forecast::Mean`] has no distribution and answers them with [`Error::Input`]. Match on the
/// variants for the raw tensors.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Forecast<B: Backend> {
    /// The mean path alone, `[B, V, prediction_length]`: Toto 1.0's mean mode (the analytic
    /// mean fed back).
    Mean(Tensor<3>),
    /// Sample paths: Toto 1.0's sample mode.
    Samples {
        /// `[B, V, prediction_length]`: the mean of the paths.
        mean: Tensor<3>,
        /// `[B, V, prediction_length, num_samples]`.
        paths: Tensor<4>,
    },
    /// Quantile knots: Toto 2.0.
    Quantiles {
        /// `[B, V, prediction_length]`: the mean of the knots' distribution.
        mean: Tensor<3>,
        /// The distribution per series and step, batch shape `[B, V, prediction_length]`.
        knots: QuantileKnots<B, 3, 4>,
    },
}

impl<B: Backend> Forecast<B> {
    /// A forecast of quantile knots; its mean is the knots' distribution's.
    pub(crate) fn from_quantiles(knots: QuantileKnots<B, 3, 4>) -> Self {
        Forecast::Quantiles {
            mean: knots.mean(),
            knots,
        }
    }

    /// This forecast without its first `skip` steps (what a streaming session returns between
    /// patch boundaries).
    pub(crate) fn skip_steps(self, skip: usize) -> Result<Self> {
        if skip == 0 {
            return Ok(self);
        }
        let h = self.mean().dims()[2];
        let keep = h.saturating_sub(skip);
        let cut3 = |x: Tensor<3>| x.narrow(2, skip, keep);
        let cut4 = |x: Tensor<4>| x.narrow(2, skip, keep);
        Ok(match self {
            Forecast::Mean(mean) => Forecast::Mean(cut3(mean)),
            Forecast::Samples { mean, paths } => Forecast::Samples {
                mean: cut3(mean),
                paths: cut4(paths),
            },
            Forecast::Quantiles { knots, .. } => {
                let levels = knots.levels().to_vec();
                let values = cut4(knots.values().clone());
                Forecast::from_quantiles(QuantileKnots::new(knots.backend(), &levels, values)?)
            }
        })
    }

    /// The mean path, `[B, V, prediction_length]`: the sample mean, the fed-back analytic mean
    /// (Toto 1.0's mean mode), or the mean of the quantile knots' distribution (Toto 2.0).
    pub fn mean(&self) -> &Tensor<3> {
        match self {
            Forecast::Mean(mean)
            | Forecast::Samples { mean, .. }
            | Forecast::Quantiles { mean, .. } => mean,
        }
    }

    /// The mean path, taken out of the forecast.
    pub fn into_mean(self) -> Tensor<3> {
        match self {
            Forecast::Mean(mean)
            | Forecast::Samples { mean, .. }
            | Forecast::Quantiles { mean, .. } => mean,
        }
    }

    /// `[B, V, prediction_length, num_samples]`: the sample paths of a [`Forecast::Samples`].
    pub fn samples(&self) -> Option<&Tensor<4>> {
        match self {
            Forecast::Samples { paths, .. } => Some(paths),
            _ => None,
        }
    }

    /// The quantile knots of a [`Forecast::Quantiles`] (Toto 2.0): the distribution per series
    /// and step, with its levels, values, cdf, sampling and weighted quantile loss.
    pub fn quantiles(&self) -> Option<&QuantileKnots<B, 3, 4>> {
        match self {
            Forecast::Quantiles { knots, .. } => Some(knots),
            _ => None,
        }
    }

    /// This forecast's tensors, moved to `device`, without the distribution built over them
    /// (the quantile knots are rebuilt once, by [`Forecast::concat`]).
    pub(crate) fn into_parts(self, device: &burn::tensor::Device) -> ForecastParts {
        match self {
            Forecast::Mean(mean) => ForecastParts::Mean(mean.to_device(device)),
            Forecast::Samples { mean, paths } => ForecastParts::Samples {
                mean: mean.to_device(device),
                paths: paths.to_device(device),
            },
            Forecast::Quantiles { knots, .. } => ForecastParts::Quantiles {
                levels: knots.levels().to_vec(),
                knots: knots.values().clone().to_device(device),
            },
        }
    }

    /// The forecasts of consecutive slices of a batch ([`Forecast::into_parts`], on
    /// `backend`'s device) as one forecast of the batch, concatenated along the batch. Every
    /// part must be of one kind (mean, samples or knots at the same levels).
    pub(crate) fn concat(parts: Vec<ForecastParts>, backend: &B) -> Result<Self> {
        let mismatch = || {
            Error::input(
                "Forecast::concat",
                InputKind::Failed,
                "the parts are forecasts of different kinds".to_owned(),
            )
        };
        let mut parts = parts.into_iter();
        let Some(first) = parts.next() else {
            return Err(mismatch());
        };
        match first {
            ForecastParts::Mean(mean) => {
                let mut means = vec![mean];
                for part in parts {
                    let ForecastParts::Mean(m) = part else {
                        return Err(mismatch());
                    };
                    means.push(m);
                }
                Ok(Forecast::Mean(Tensor::cat(means, 0)))
            }
            ForecastParts::Samples { mean, paths } => {
                let (mut means, mut all) = (vec![mean], vec![paths]);
                for part in parts {
                    let ForecastParts::Samples { mean, paths } = part else {
                        return Err(mismatch());
                    };
                    means.push(mean);
                    all.push(paths);
                }
                Ok(Forecast::Samples {
                    mean: Tensor::cat(means, 0),
                    paths: Tensor::cat(all, 0),
                })
            }
            ForecastParts::Quantiles { levels, knots } => {
                let mut all = vec![knots];
                for part in parts {
                    match part {
                        ForecastParts::Quantiles { levels: l, knots } if l == levels => {
                            all.push(knots);
                        }
                        _ => return Err(mismatch()),
                    }
                }
                let knots = QuantileKnots::new(backend, &levels, Tensor::cat(all, 0))?;
                Ok(Forecast::from_quantiles(knots))
            }
        }
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
        let [b, v, t] = self.mean().dims();
        Ok(self.quantiles_at(&[q])?.reshape([b, v, t]))
    }

    /// The quantiles at `levels` per step, `[B, V, H, levels.len()]`, level by level as
    /// [`Forecast::quantile`] computes them, from one sort of the sample paths. The sort runs
    /// on the forecast's device (a bitonic network of tensor ops: burn 0.22 itself sorts on the
    /// host on GPUs), so nothing is read back.
    ///
    /// ```
    /// use toto_fallback::forecast::{ForecastRequest, Forecaster, Series, read_series};
    /// use toto_fallback::{AutoToto, NdArray};
    ///
    /// let model = AutoToto::from_dir(&NdArray::seeded(0), "tests/fixtures/tiny")?;
    /// let series = Series::from_variates(&[vec![1.0f32; 40], vec![1.0; 40]])?;
    /// let forecast = model.predict(&ForecastRequest::new(series, 12).with_samples(Some(16)))?;
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
        let input = |kind, reason: String| Error::input("Forecast::quantile", kind, reason);
        if let Some(&q) = levels.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return Err(input(
                InputKind::OutOfRange,
                format!("the level must be in [0, 1]; got {q}"),
            ));
        }
        if levels.is_empty() {
            return Err(input(InputKind::Empty, "no level asked for".to_owned()));
        }
        let [b, v, t] = self.mean().dims();
        let shape = [b, v, t, levels.len()];
        crate::shape::element_count(&shape).map_err(|elements| Error::TooLarge {
            what: "Forecast::quantiles_at (the result)",
            shape: shape.to_vec(),
            elements,
            limit: crate::shape::MAX_ELEMENTS,
            fix: "ask for fewer levels at a time",
        })?;
        if let Some(knots) = self.quantiles() {
            let at = levels
                .iter()
                .map(|&q| {
                    let p = Tensor::<3>::full([b, v, t], q, &self.mean().device());
                    knots.quantile(p)
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Tensor::stack(at, 3));
        }
        let Some(samples) = self.samples() else {
            return Err(input(InputKind::NoDistribution, MEAN_MODE.to_owned()));
        };
        let n = samples.dims()[3];
        if n == 0 {
            return Err(input(
                InputKind::NoDistribution,
                "the forecast holds no sample path".to_owned(),
            ));
        }
        let sorted = crate::backend::layers::composed::sort_last(samples.clone());
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
        if let Some(knots) = self.quantiles() {
            return Ok(knots.stddev());
        }
        let Some(s) = self.samples() else {
            return Err(Error::input(
                "Forecast::std",
                InputKind::NoDistribution,
                MEAN_MODE.to_owned(),
            ));
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
        if let Some(knots) = self.quantiles() {
            let x: Tensor<4> = knots.sample(&[n])?; // [n, B, V, H]
            return Ok(x.permute([1, 2, 3, 0]));
        }
        let input =
            |reason: String| Error::input("Forecast::draw", InputKind::NoDistribution, reason);
        match self.samples() {
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
    if crate::backend::transfer::in_host_memory(device) || !log::log_enabled!(log::Level::Info) {
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
