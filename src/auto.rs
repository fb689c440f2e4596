//! [`AutoToto`]: Toto 1.0 or Toto 2.0, whichever a directory holds, behind the one
//! [`Forecaster`] interface.

use std::path::Path;

use crate::backend::LayerOps;
use burn::tensor::{Bool, Int, Tensor};

use crate::error::{Error, InputKind, Result};
pub use crate::forecast::Generation;
use crate::forecast::{Forecast, ForecastOptions, ForecastRequest, Forecaster, Sealed};
use crate::toto::Toto;
use crate::toto2::Toto2;

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

    /// The model behind, as the one interface.
    fn inner(&self) -> &dyn Inner<B> {
        match self {
            AutoToto::V1(m) => &**m,
            AutoToto::V2(m) => &**m,
        }
    }
}

/// The object-safe part of [`Forecaster`] that [`AutoToto`] forwards to the model it holds.
trait Inner<B: LayerOps> {
    fn backend(&self) -> &B;
    fn generation(&self) -> Generation;
    fn patch_size(&self) -> usize;
    fn parameter_count(&self) -> u64;
    fn check_request(&self, shape: [usize; 3], options: &ForecastOptions) -> Result<()>;
    fn draws_per_item(&self, shape: [usize; 3], options: &ForecastOptions) -> Option<usize>;
    fn predict_drawing(&self, request: &ForecastRequest, draws: Option<&B>) -> Result<Forecast<B>>;
}

impl<B: LayerOps, M: Forecaster<Backend = B>> Inner<B> for M {
    fn backend(&self) -> &B {
        Forecaster::backend(self)
    }
    fn generation(&self) -> Generation {
        Forecaster::generation(self)
    }
    fn patch_size(&self) -> usize {
        Forecaster::patch_size(self)
    }
    fn parameter_count(&self) -> u64 {
        Forecaster::parameter_count(self)
    }
    fn check_request(&self, shape: [usize; 3], options: &ForecastOptions) -> Result<()> {
        Forecaster::check_request(self, shape, options)
    }
    fn draws_per_item(&self, shape: [usize; 3], options: &ForecastOptions) -> Option<usize> {
        Forecaster::draws_per_item(self, shape, options)
    }
    fn predict_drawing(&self, request: &ForecastRequest, draws: Option<&B>) -> Result<Forecast<B>> {
        Forecaster::predict_drawing(self, request, draws)
    }
}

impl<B: LayerOps> Sealed for AutoToto<B> {}

impl<B: LayerOps> Forecaster for AutoToto<B> {
    type Backend = B;

    fn from_dir(backend: &B, dir: impl AsRef<Path>) -> Result<Self> {
        AutoToto::from_dir(backend, dir)
    }

    fn backend(&self) -> &B {
        self.inner().backend()
    }

    fn generation(&self) -> Generation {
        self.inner().generation()
    }

    fn patch_size(&self) -> usize {
        self.inner().patch_size()
    }

    fn parameter_count(&self) -> u64 {
        self.inner().parameter_count()
    }

    fn check_request(&self, shape: [usize; 3], options: &ForecastOptions) -> Result<()> {
        self.inner().check_request(shape, options)
    }

    fn draws_per_item(&self, shape: [usize; 3], options: &ForecastOptions) -> Option<usize> {
        self.inner().draws_per_item(shape, options)
    }

    fn predict_drawing(&self, request: &ForecastRequest, draws: Option<&B>) -> Result<Forecast<B>> {
        self.inner().predict_drawing(request, draws)
    }
}
