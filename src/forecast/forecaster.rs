//! [`Forecaster`]: the one forecasting interface of both Toto generations, and [`Generation`].

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use burn::tensor::Tensor;

use super::stream::{Stream, StreamContext, StreamOptions};
use super::{Forecast, ForecastOptions, ForecastRequest, Series};
use crate::backend::{Backend, LayerOps};
use crate::error::{Error, Result};
#[cfg(feature = "hub")]
use crate::hub::HubOptions;

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

    /// `Ok` unless the `config.json` text `text` is the other generation's than `want`:
    /// [`Error::WrongGeneration`] naming `loader` and the loader to use. Text that is not JSON,
    /// or neither generation's, is left to the caller's parser to refuse.
    pub(crate) fn expect_in_config(
        text: &str,
        want: Generation,
        loader: &'static str,
    ) -> Result<()> {
        match Self::of_config(text) {
            Ok(found) if found != want => Err(Error::WrongGeneration {
                found: match found {
                    Generation::V1 => "Toto 1.0",
                    Generation::V2 => "Toto 2.0",
                },
                key: match found {
                    Generation::V1 => "embed_dim",
                    Generation::V2 => "d_model",
                },
                loader,
                instead: match found {
                    Generation::V1 => "Toto::from_dir (or TotoConfig)",
                    Generation::V2 => "Toto2::from_dir (or Toto2Config)",
                },
            }),
            _ => Ok(()),
        }
    }
}

/// What the crate's models do alike: load, forecast a [`ForecastRequest`] into a [`Forecast`],
/// warm up. Implemented by [`Toto`](crate::Toto), [`Toto2`](crate::Toto2) and
/// [`AutoToto`](crate::AutoToto); [`MultiDevice`](crate::MultiDevice) spreads any of them over
/// several devices. Code written against it forecasts with either generation:
///
/// ```
/// use toto_fallback::forecast::{ForecastRequest, Forecaster, Series, read_series};
/// use toto_fallback::{AutoToto, NdArray, Toto2};
///
/// fn median_of<M: Forecaster>(model: &M, history: &[f32]) -> toto_fallback::Result<Vec<f32>> {
///     let request = ForecastRequest::new(Series::from_values(history)?, 12).with_samples(Some(16));
///     let forecast = model.predict(&request)?;
///     Ok(read_series(forecast.median()?)?.remove(0).remove(0)) // item 0, variate 0
/// }
///
/// let cpu = NdArray::seeded(0);
/// let history: Vec<f32> = (0..40).map(|t| (t as f32 / 5.0).sin()).collect();
/// let v2 = Toto2::from_dir(&cpu, "tests/fixtures/toto2-tiny")?;
/// let any = AutoToto::from_dir(&cpu, "tests/fixtures/tiny")?; // Toto 1.0
/// assert_eq!(median_of(&v2, &history)?.len(), 12);
/// assert_eq!(median_of(&any, &history)?.len(), 12);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Sealed: its implementations are the crate's. The tensor-level `forecast` methods of
/// [`Toto`](crate::Toto) and [`Toto2`](crate::Toto2) stay for callers who hold tensors.
pub trait Forecaster: Sized + Send + Sync + 'static + sealed::Sealed {
    /// The backend the model runs on.
    type Backend: LayerOps;

    /// Loads a model directory: `config.json` and its weights (one safetensors file, or shards
    /// with their index).
    ///
    /// # Errors
    /// [`Error::Io`] for a missing file, [`Error::Config`] for a bad or other generation's
    /// config, [`Error::Checkpoint`] for weights that do not fit it.
    fn from_dir(backend: &Self::Backend, dir: impl AsRef<Path>) -> Result<Self>;

    /// Loads a model from the Hugging Face Hub (feature `hub`), as toto-ts's and toto-2's
    /// `from_pretrained` do: its files are downloaded into the Hub's cache shared with Python
    /// (or found there), then read by [`Forecaster::from_dir`]. `HF_HOME`, `HF_HUB_CACHE`,
    /// `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_TOKEN` apply;
    /// [`Forecaster::from_pretrained_with`] sets them in code.
    ///
    /// ```no_run
    /// use toto_fallback::{AutoToto, Forecaster, NdArray, Toto, hub::HubOptions};
    ///
    /// let cpu = NdArray::new();
    /// let v1 = Toto::from_pretrained(&cpu, "Datadog/Toto-Open-Base-1.0")?;
    /// // From the cache only, never the network (as HF_HUB_OFFLINE=1):
    /// let options = HubOptions::default().with_offline(true);
    /// let v2 = AutoToto::from_pretrained_with(&cpu, "Datadog/Toto-2.0-22m", &options)?;
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`hub::download`](crate::hub::download) and [`Forecaster::from_dir`].
    #[cfg(feature = "hub")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
    fn from_pretrained(backend: &Self::Backend, repo_id: &str) -> Result<Self> {
        Self::from_pretrained_with(backend, repo_id, &HubOptions::default())
    }

    /// As [`Forecaster::from_pretrained`], with a revision, cache directory, offline mode,
    /// progress bar, endpoint or token from `options`.
    ///
    /// # Errors
    /// As [`Forecaster::from_pretrained`].
    #[cfg(feature = "hub")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
    fn from_pretrained_with(
        backend: &Self::Backend,
        repo_id: &str,
        options: &HubOptions,
    ) -> Result<Self> {
        Self::from_dir(backend, crate::hub::download(repo_id, options)?)
    }

    /// The backend the model runs on.
    fn backend(&self) -> &Self::Backend;

    /// Which generation this is.
    fn generation(&self) -> Generation;

    /// The patch size (a context that is a multiple of it needs no padding).
    fn patch_size(&self) -> usize;

    /// The number of parameters.
    fn parameter_count(&self) -> u64;

    /// Forecasts `request.series` `request.options.prediction_length` steps ahead: Toto 1.0's
    /// sample paths ([`Forecast::Samples`]) or mean path ([`Forecast::Mean`], without
    /// `num_samples`), Toto 2.0's quantile knots ([`Forecast::Quantiles`]). The options and the
    /// request's size are checked before anything is uploaded.
    ///
    /// # Errors
    /// [`Error::Input`] for bad options, an empty series, or covariates Toto 1.0 cannot use;
    /// [`Error::TooLarge`] for a request whose tensors could not be allocated; the backend's
    /// errors; [`Error::ReadBack`] if the device failed (out of memory).
    fn predict(&self, request: &ForecastRequest) -> Result<Forecast<Self::Backend>> {
        self.check_request(request.series.shape(), &request.options)?;
        self.predict_drawing(request, None)
    }

    /// The checks a forecast makes of the options and the request's size, without inputs.
    #[doc(hidden)]
    fn check_request(&self, shape: [usize; 3], options: &ForecastOptions) -> Result<()>;

    /// Elements each item draws per sampling call, when the forecast draws (Toto 1.0's sample
    /// paths: `V ·` the patch size); `None` when it draws nothing. For
    /// [`MultiDevice`](crate::multi::MultiDevice)'s draw windows.
    #[doc(hidden)]
    fn draws_per_item(&self, shape: [usize; 3], options: &ForecastOptions) -> Option<usize>;

    /// The forecast of a checked request, its paths drawn through `draws` when given (a
    /// [`Backend::with_draw_window`](crate::Backend::with_draw_window) handle).
    #[doc(hidden)]
    fn predict_drawing(
        &self,
        request: &ForecastRequest,
        draws: Option<&Self::Backend>,
    ) -> Result<Forecast<Self::Backend>>;

    /// Opens a streaming session on `request` ([`Stream`]) with the default
    /// [`StreamOptions`]: its series are the context (prefilled once), its options say what
    /// [`Stream::forecast`] returns.
    ///
    /// # Errors
    /// As [`Forecaster::predict`] (Toto 1.0 refuses known covariates); [`Error::Input`]
    /// (`OutOfRange`) for covariates that run more than the window past the series.
    fn stream(&self, request: &ForecastRequest) -> Result<Stream<'_, Self>> {
        Stream::open(self, request, StreamOptions::default())
    }

    /// [`Forecaster::stream`] with `options` (the window).
    ///
    /// # Errors
    /// As [`Forecaster::stream`].
    fn stream_with(
        &self,
        request: &ForecastRequest,
        options: StreamOptions,
    ) -> Result<Stream<'_, Self>> {
        Stream::open(self, request, options)
    }

    /// A streaming session's state on the model's device (KV cache, scaler statistics).
    #[doc(hidden)]
    type StreamState: Clone + Send;

    /// The state after a prefill of `context`.
    #[doc(hidden)]
    fn stream_open(
        &self,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<Self::StreamState>;

    /// `state` continued over the last `new_patches` patches of `context` (or told of them, for
    /// the next forecast's pass to run); `true` when that took a full prefill. In place: on an
    /// error `state` must be as it was.
    #[doc(hidden)]
    fn stream_extend(
        &self,
        state: &mut Self::StreamState,
        context: &StreamContext,
        new_patches: usize,
        options: &ForecastOptions,
    ) -> Result<bool>;

    /// The forecast after `context` from `state` (which runs the patches `stream_extend` left
    /// to it); `true` when that took a full prefill. `state` is continued in place: on an
    /// error it must still describe `context`'s committed patches (as it was, or continued
    /// over them), as the session keeps it.
    #[doc(hidden)]
    fn stream_forecast(
        &self,
        state: &mut Self::StreamState,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<(Forecast<Self::Backend>, bool)>;

    /// Makes two forecasts of a synthetic `[batch, variates, context]` series with `options`
    /// and waits for their values, so that the kernels of that shape are compiled and tuned: on
    /// a GPU the first forecast of each shape in a process takes seconds to tens of seconds
    /// (autotuning and shader compilation), and the second is still slower than the steady
    /// state (on an H100, W-small: 0.45–0.91 s after a tuning first forecast, 68–98 ms in a
    /// later process, for a 45–64 ms forecast; burn's fusion learns where each operation
    /// sequence ends on its first repetition; docs/PERFORMANCE.md, "Cold start"); from the
    /// third on, milliseconds. A service calls it at start-up with the shapes it serves.
    /// Returns the time both took.
    ///
    /// Sampling draws advance the backend's random stream: seed it after warming up when
    /// forecasts must be reproducible.
    ///
    /// ```
    /// use toto_fallback::forecast::{ForecastOptions, Forecaster};
    /// use toto_fallback::{AutoToto, NdArray};
    ///
    /// let model = AutoToto::from_dir(&NdArray::new(), "tests/fixtures/toto2-tiny")?;
    /// let took = model.warm_up([1, 2, 64], &ForecastOptions::new(32))?;
    /// println!("warm in {took:?}");
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Forecaster::predict`] for that shape and those options; [`Error::ReadBack`] if the
    /// device failed.
    fn warm_up(&self, [b, v, t]: [usize; 3], options: &ForecastOptions) -> Result<Duration> {
        let start = Instant::now();
        // The forecast's own checks first: the synthetic series is not built for a request
        // the forecast would refuse.
        self.check_request([b, v, t], options)?;
        let n = crate::shape::element_count(&[b, v, t]).map_err(|elements| Error::TooLarge {
            what: "Forecaster::warm_up: the series [B, V, T]",
            shape: vec![b, v, t],
            elements,
            limit: crate::shape::MAX_ELEMENTS,
            fix: "warm up with the shape of the series you will forecast",
        })?;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i % t.max(1)) as f32 * 0.1).sin())
            .collect();
        let device = self.backend().device();
        let rows: Vec<&[f32]> = values.chunks(t.max(1)).collect();
        let series = Series::build("Forecaster::warm_up", [b, v], &rows)?;
        let request = ForecastRequest {
            series,
            covariates: None,
            options: options.clone(),
        };
        for _ in 0..2 {
            let forecast = self.predict(&request)?;
            // The median sorts the paths (kernels to warm as well); mean mode has the mean.
            let point: Tensor<3> = forecast
                .median()
                .unwrap_or_else(|_| forecast.mean().clone());
            point
                .try_into_data()
                .map_err(|e| Error::read_back("Forecaster::warm_up", device, e.into()))?
                .iter::<f32>()
                .for_each(drop);
        }
        Ok(start.elapsed())
    }
}

pub(crate) mod sealed {
    /// Seals [`Forecaster`](super::Forecaster): only the crate's models implement it.
    pub trait Sealed {}
}
