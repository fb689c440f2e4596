//! [`AutoToto`]: Toto 1.0 or Toto 2.0, whichever a directory holds, behind the one
//! [`Forecaster`] interface.

use std::path::Path;

use crate::backend::LayerOps;
use burn::tensor::{Bool, Int, Tensor};

use crate::error::{Error, InputKind, Result};
pub use crate::forecast::Generation;
use crate::forecast::{
    Forecast, ForecastOptions, ForecastRequest, Forecaster, Sealed, StreamContext,
};
use crate::toto::{Toto, TotoStream};
use crate::toto2::{Toto2, Toto2Stream};

/// Toto 1.0 or Toto 2.0, whichever a directory holds, behind one forecasting interface
/// ([`Forecaster`]).
///
/// ```
/// use toto_fallback::forecast::{ForecastRequest, Forecaster, Series};
/// use toto_fallback::{AutoToto, Generation, NdArray};
///
/// let cpu = NdArray::seeded(0);
/// let history = Series::from_variates(&[vec![1.0f32; 40], vec![2.0; 40]])?;
/// for (dir, generation) in [("tests/fixtures/tiny", Generation::V1), ("tests/fixtures/toto2-tiny", Generation::V2)] {
///     let model = AutoToto::from_dir(&cpu, dir)?;
///     assert_eq!(model.generation(), generation);
///     let request = ForecastRequest::new(history.clone(), 12).with_samples(Some(8));
///     let forecast = model.predict(&request)?;
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

    /// Forecasts `series` (`[B, V, T]` tensors): [`Toto::forecast`] (sample paths, or the mean
    /// path) or [`Toto2::forecast`] (quantile knots), for callers who hold tensors; host data
    /// goes through [`Forecaster::predict`].
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
        options: &ForecastOptions,
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
                        return Err(Error::input(
                            "AutoToto::forecast",
                            InputKind::Shape,
                            format!("series_ids {:?} must be [B, V] = {:?}", ids.dims(), [b, v]),
                        ));
                    }
                };
                m.forecast(series, mask, ids, options)
            }
            AutoToto::V2(m) => m.forecast(series, mask, series_ids, None, options),
        }
    }
}

/// `$body` with `$m` bound to the model an [`AutoToto`] holds, whichever the generation.
macro_rules! on_model {
    ($auto:expr, $m:ident => $body:expr) => {
        match $auto {
            AutoToto::V1($m) => $body,
            AutoToto::V2($m) => $body,
        }
    };
}

impl<B: LayerOps> Sealed for AutoToto<B> {}

impl<B: LayerOps> Forecaster for AutoToto<B> {
    type Backend = B;

    fn from_dir(backend: &B, dir: impl AsRef<Path>) -> Result<Self> {
        AutoToto::from_dir(backend, dir)
    }

    fn backend(&self) -> &B {
        on_model!(self, m => Forecaster::backend(&**m))
    }

    fn generation(&self) -> Generation {
        on_model!(self, m => Forecaster::generation(&**m))
    }

    fn patch_size(&self) -> usize {
        on_model!(self, m => Forecaster::patch_size(&**m))
    }

    fn parameter_count(&self) -> u64 {
        on_model!(self, m => Forecaster::parameter_count(&**m))
    }

    fn check_request(&self, shape: [usize; 3], options: &ForecastOptions) -> Result<()> {
        on_model!(self, m => Forecaster::check_request(&**m, shape, options))
    }

    fn draws_per_item(&self, shape: [usize; 3], options: &ForecastOptions) -> Option<usize> {
        on_model!(self, m => Forecaster::draws_per_item(&**m, shape, options))
    }

    fn predict_drawing(&self, request: &ForecastRequest, draws: Option<&B>) -> Result<Forecast<B>> {
        on_model!(self, m => Forecaster::predict_drawing(&**m, request, draws))
    }

    type StreamState = AutoStream<B>;

    fn stream_open(
        &self,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<AutoStream<B>> {
        Ok(match self {
            AutoToto::V1(m) => AutoStream::V1(Box::new(m.stream_open(context, options)?)),
            AutoToto::V2(m) => AutoStream::V2(Box::new(m.stream_open(context, options)?)),
        })
    }

    fn stream_extend(
        &self,
        state: &mut AutoStream<B>,
        context: &StreamContext,
        new_patches: usize,
        options: &ForecastOptions,
    ) -> Result<bool> {
        match (self, state) {
            (AutoToto::V1(m), AutoStream::V1(s)) => {
                m.stream_extend(s, context, new_patches, options)
            }
            (AutoToto::V2(m), AutoStream::V2(s)) => {
                m.stream_extend(s, context, new_patches, options)
            }
            _ => Err(mismatched_stream()),
        }
    }

    fn stream_forecast(
        &self,
        state: &mut AutoStream<B>,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<(Forecast<B>, bool)> {
        match (self, state) {
            (AutoToto::V1(m), AutoStream::V1(s)) => m.stream_forecast(s, context, options),
            (AutoToto::V2(m), AutoStream::V2(s)) => m.stream_forecast(s, context, options),
            _ => Err(mismatched_stream()),
        }
    }
}

/// An [`AutoToto`] session's state: its generation's.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum AutoStream<B: LayerOps> {
    /// Toto 1.0's.
    V1(Box<TotoStream<B>>),
    /// Toto 2.0's.
    V2(Box<Toto2Stream>),
}

/// A session's state of the other generation (a session keeps its model: not reachable).
fn mismatched_stream() -> Error {
    Error::input(
        "AutoToto::stream",
        InputKind::Failed,
        "the session's state is of the other generation than its model",
    )
}
