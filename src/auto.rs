//! One interface for both Toto generations: [`AutoToto::from_dir`] loads whichever a directory
//! holds, and forecasts return the same [`Forecast`].

use std::fmt;
use std::path::Path;

use burn::tensor::{Bool, Int, Tensor};

use crate::backend::LayerOps;
use crate::error::{Error, Result};
use crate::forecast::{Forecast, Progress, Series};
#[cfg(feature = "hub")]
use crate::hub::HubOptions;
use crate::toto::{ForecastOptions, Toto};
use crate::toto2::{Toto2, Toto2Options};

/// A Toto generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Generation {
    /// Toto 1.0 (`Datadog/Toto-Open-Base-1.0`, toto-ts): a Student-T mixture, sampled paths.
    V1,
    /// Toto 2.0 (`Datadog/Toto-2.0-*`, toto-2): nine quantiles per step.
    V2,
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Generation::V1 => "Toto 1.0",
            Generation::V2 => "Toto 2.0",
        })
    }
}

impl Generation {
    /// The generation of a model directory, from its `config.json`: Toto 1.0's has
    /// `embed_dim`, Toto 2.0's `d_model`.
    ///
    /// # Errors
    /// [`Error::Io`] if `config.json` cannot be read; [`Error::Config`] if it is not JSON or
    /// has neither key.
    pub fn of_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
        Self::of_config(&text)
    }

    /// The generation of the text of a `config.json`.
    ///
    /// # Errors
    /// As [`Generation::of_dir`].
    pub fn of_config(text: &str) -> Result<Self> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(Error::config_json)?;
        match (json.get("d_model"), json.get("embed_dim")) {
            (Some(_), _) => Ok(Generation::V2),
            (None, Some(_)) => Ok(Generation::V1),
            (None, None) => Err(Error::config(
                "config.json",
                "has neither `embed_dim` (Toto 1.0) nor `d_model` (Toto 2.0): not a Toto model",
            )),
        }
    }
}

/// How to forecast with either generation: the horizon, and each generation's own options
/// (their `prediction_length` is replaced by [`AutoOptions::prediction_length`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoOptions {
    /// Steps to predict.
    pub prediction_length: usize,
    /// Toto 1.0's options: sample paths, batching, KV cache.
    pub v1: ForecastOptions,
    /// Toto 2.0's options: block decoding, cap, backfill.
    pub v2: Toto2Options,
    /// Told after each model pass, whichever the generation ([`Progress`]); `None`: the
    /// generation's own option.
    pub progress: Option<Progress>,
}

impl AutoOptions {
    /// Each generation's defaults, with the horizon `prediction_length`.
    pub fn new(prediction_length: usize) -> Self {
        AutoOptions {
            prediction_length,
            v1: ForecastOptions::default(),
            v2: Toto2Options::default(),
            progress: None,
        }
    }
}

/// Toto 1.0 or Toto 2.0, whichever a directory holds, behind one forecasting interface.
///
/// ```
/// use toto_fallback::auto::{AutoOptions, AutoToto, Generation};
/// use toto_fallback::{Backend, NdArray};
///
/// let cpu = NdArray::seeded(0);
/// for (dir, generation) in [("tests/fixtures/tiny", Generation::V1), ("tests/fixtures/toto2-tiny", Generation::V2)] {
///     let model = AutoToto::from_dir(&cpu, dir)?;
///     assert_eq!(model.generation(), generation);
///     let series = burn::tensor::Tensor::<3>::ones([1, 2, 40], cpu.device());
///     let mut options = AutoOptions::new(12);
///     options.v1.num_samples = Some(8);
///     options.v1.samples_per_batch = 8;
///     let forecast = model.forecast(series, None, None, &options)?;
///     // Both generations give quantiles at any level, the median and draws.
///     assert_eq!(forecast.quantile(0.9)?.dims(), [1, 2, 12]);
///     assert_eq!(forecast.draw(4)?.dims(), [1, 2, 12, 4]);
/// }
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AutoToto<B: LayerOps> {
    /// Toto 1.0.
    V1(Box<Toto<B>>),
    /// Toto 2.0.
    V2(Box<Toto2<B>>),
}

impl<B: LayerOps> AutoToto<B> {
    /// Loads the model of a directory (`config.json` and its weights), of either generation.
    ///
    /// # Errors
    /// As [`Generation::of_dir`], [`Toto::from_dir`] and [`Toto2::from_dir`].
    pub fn from_dir(backend: &B, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        Ok(match Generation::of_dir(dir)? {
            Generation::V1 => AutoToto::V1(Box::new(Toto::from_dir(backend, dir)?)),
            Generation::V2 => AutoToto::V2(Box::new(Toto2::from_dir(backend, dir)?)),
        })
    }

    /// Loads the model of a Hugging Face Hub repository, of either generation (feature `hub`):
    /// its files are downloaded into the Hub's cache shared with Python (or found there), then
    /// read by [`AutoToto::from_dir`]. `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`,
    /// `HF_HUB_OFFLINE` and `HF_TOKEN` apply; [`AutoToto::from_pretrained_with`] sets them in
    /// code.
    ///
    /// ```no_run
    /// use toto_fallback::{AutoToto, NdArray, hub::HubOptions};
    ///
    /// let cpu = NdArray::new();
    /// let v1 = AutoToto::from_pretrained(&cpu, "Datadog/Toto-Open-Base-1.0")?;
    /// // From the cache only, never the network (as HF_HUB_OFFLINE=1):
    /// let options = HubOptions::default().with_offline(true);
    /// let v2 = AutoToto::from_pretrained_with(&cpu, "Datadog/Toto-2.0-22m", &options)?;
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`hub::download`](crate::hub::download) and [`AutoToto::from_dir`].
    #[cfg(feature = "hub")]
    pub fn from_pretrained(backend: &B, repo_id: &str) -> Result<Self> {
        Self::from_pretrained_with(backend, repo_id, &HubOptions::default())
    }

    /// As [`AutoToto::from_pretrained`], with a revision, cache directory, offline mode,
    /// progress bar, endpoint or token from `options`.
    ///
    /// # Errors
    /// As [`AutoToto::from_pretrained`].
    #[cfg(feature = "hub")]
    pub fn from_pretrained_with(backend: &B, repo_id: &str, options: &HubOptions) -> Result<Self> {
        Self::from_dir(backend, crate::hub::download(repo_id, options)?)
    }

    /// Makes two forecasts of a synthetic `[batch, variates, context]` series with `options` and
    /// waits for their values, so that the kernels of that shape are compiled and tuned: on a GPU
    /// the first forecast of each shape in a process takes seconds to tens of seconds (autotuning
    /// and shader compilation), and the second is still slower than the steady state (on an
    /// H100, W-small: 0.45–0.91 s after a tuning first forecast, 68–98 ms in a later process, for
    /// a 45–64 ms forecast; burn's fusion learns where each operation sequence ends on its first
    /// repetition; docs/PERFORMANCE.md, "Cold start"); from the third on, milliseconds. A
    /// service calls it at start-up with the shapes it serves. Returns the time both took.
    ///
    /// Sampling draws advance the backend's random stream: seed it after warming up when
    /// forecasts must be reproducible.
    ///
    /// ```
    /// use toto_fallback::auto::{AutoOptions, AutoToto};
    /// use toto_fallback::NdArray;
    ///
    /// let model = AutoToto::from_dir(&NdArray::new(), "tests/fixtures/toto2-tiny")?;
    /// let took = model.warm_up([1, 2, 64], &AutoOptions::new(32))?;
    /// println!("warm in {took:?}");
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`AutoToto::forecast`] for that shape and those options; [`Error::ReadBack`] if the
    /// device failed.
    pub fn warm_up(
        &self,
        [b, v, t]: [usize; 3],
        options: &AutoOptions,
    ) -> Result<std::time::Duration> {
        let start = std::time::Instant::now();
        // The forecast's own checks first: the synthetic series is not built for a request
        // the forecast would refuse.
        let device = match self {
            AutoToto::V1(m) => {
                m.check_request([b, v, t], &v1_options(options))?;
                m.backend().device()
            }
            AutoToto::V2(m) => {
                m.check_request([b, v, t], &v2_options(options))?;
                m.backend().device()
            }
        };
        let n = crate::shape::element_count(&[b, v, t]).map_err(|elements| Error::TooLarge {
            what: "AutoToto::warm_up: the series [B, V, T]",
            shape: vec![b, v, t],
            elements,
            limit: crate::shape::MAX_ELEMENTS,
            fix: "warm up with the shape of the series you will forecast",
        })?;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i % t.max(1)) as f32 * 0.1).sin())
            .collect();
        let series =
            Tensor::<3>::from_data(burn::tensor::TensorData::new(values, [b, v, t]), device);
        for _ in 0..2 {
            let forecast = self.forecast(series.clone(), None, None, options)?;
            // The median sorts the paths (kernels to warm as well); mean mode has the mean.
            let point = forecast.median().unwrap_or_else(|_| forecast.mean.clone());
            point
                .try_into_data()
                .map_err(|e| Error::read_back("AutoToto::warm_up", device, e.into()))?
                .iter::<f32>()
                .for_each(drop);
        }
        Ok(start.elapsed())
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        match self {
            AutoToto::V1(m) => m.backend(),
            AutoToto::V2(m) => m.backend(),
        }
    }

    /// The checks `forecast` makes of the options and the request's size, without inputs.
    pub(crate) fn check_request(&self, dims: [usize; 3], options: &AutoOptions) -> Result<()> {
        match self {
            AutoToto::V1(m) => m.check_request(dims, &v1_options(options)),
            AutoToto::V2(m) => m.check_request(dims, &v2_options(options)),
        }
    }

    /// Which generation this is.
    pub fn generation(&self) -> Generation {
        match self {
            AutoToto::V1(_) => Generation::V1,
            AutoToto::V2(_) => Generation::V2,
        }
    }

    /// The number of parameters.
    pub fn parameter_count(&self) -> u64 {
        match self {
            AutoToto::V1(m) => m.config().parameter_count() as u64,
            AutoToto::V2(m) => m.config().parameter_count(),
        }
    }

    /// The patch size of the model (a context that is a multiple of it needs no padding).
    pub fn patch_size(&self) -> usize {
        match self {
            AutoToto::V1(m) => m.config().patch_size,
            AutoToto::V2(m) => m.config().patch_size,
        }
    }

    /// Forecasts `series` (`[B, V, T]`): [`Toto::forecast`] (sample paths, or the mean path)
    /// or [`Toto2::forecast`] (quantile knots).
    ///
    /// - `mask`: true for observed values (`None`: all observed).
    /// - `series_ids`: `[B, V]`, variates with equal ids inform each other (`None`: all in one
    ///   group); Toto 1.0 takes them as its constant `id_mask`.
    ///
    /// # Errors
    /// As the generation's `forecast`; [`Error::Input`] if `series_ids` is not `[B, V]`.
    pub fn forecast(
        &self,
        series: Tensor<3>,
        mask: Option<Tensor<3, Bool>>,
        series_ids: Option<Tensor<2, Int>>,
        options: &AutoOptions,
    ) -> Result<Forecast<B>> {
        match self {
            AutoToto::V1(m) => {
                let [b, v, t] = series.dims();
                let ids = match series_ids {
                    None => None,
                    Some(ids) if ids.dims() == [b, v] => {
                        Some(ids.reshape([b, v, 1]).expand([b, v, t]))
                    }
                    Some(ids) => {
                        return Err(Error::Input {
                            what: "AutoToto::forecast",
                            reason: format!(
                                "series_ids {:?} must be [B, V] = {:?}",
                                ids.dims(),
                                [b, v]
                            ),
                        });
                    }
                };
                m.forecast(series, mask, ids, &v1_options(options))
            }
            AutoToto::V2(m) => m.forecast(series, mask, series_ids, None, &v2_options(options)),
        }
    }

    /// Forecasts a [`Series`] (host data; variable lengths left-padded, NaN unobserved) with
    /// [`Toto::forecast_series`] or [`Toto2::forecast_series`].
    ///
    /// ```
    /// use toto_fallback::auto::{AutoOptions, AutoToto};
    /// use toto_fallback::{NdArray, forecast::{Series, read_series}};
    ///
    /// let model = AutoToto::from_dir(&NdArray::seeded(0), "tests/fixtures/toto2-tiny")?;
    /// let history: Vec<f32> = (0..40).map(|t| (t as f32 / 5.0).sin()).collect();
    /// let forecast = model.forecast_series(&Series::from_values(&history)?, &AutoOptions::new(12))?;
    /// let median = read_series(forecast.median()?)?; // median[series][variate][step]
    /// assert_eq!(median[0][0].len(), 12);
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the generation's `forecast_series`.
    pub fn forecast_series(&self, series: &Series, options: &AutoOptions) -> Result<Forecast<B>> {
        match self {
            AutoToto::V1(m) => m.forecast_series(series, &v1_options(options)),
            AutoToto::V2(m) => m.forecast_series(series, &v2_options(options)),
        }
    }
}

impl AutoOptions {
    /// Toto 1.0's options of these ([`AutoToto`] forecasts with them).
    pub(crate) fn for_v1(&self) -> ForecastOptions {
        v1_options(self)
    }

    /// Toto 2.0's options of these.
    pub(crate) fn for_v2(&self) -> Toto2Options {
        v2_options(self)
    }
}

/// Toto 1.0's options from `options`: its own, with the shared horizon and progress callback.
fn v1_options(options: &AutoOptions) -> ForecastOptions {
    ForecastOptions {
        prediction_length: options.prediction_length,
        progress: options
            .progress
            .clone()
            .or_else(|| options.v1.progress.clone()),
        ..options.v1.clone()
    }
}

/// Toto 2.0's options from `options`: its own, with the shared horizon and progress callback.
fn v2_options(options: &AutoOptions) -> Toto2Options {
    Toto2Options {
        prediction_length: options.prediction_length,
        progress: options
            .progress
            .clone()
            .or_else(|| options.v2.progress.clone()),
        ..options.v2.clone()
    }
}
