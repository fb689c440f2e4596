//! What a forecast is asked for, one type for both generations: [`ForecastOptions`] (the
//! horizon, the sample count, progress, and each generation's own settings) and
//! [`ForecastRequest`] (a [`Series`], known covariates, and the options).

use super::{Progress, Series};
use crate::error::{Error, InputKind, Result};

/// Toto 1.0's own settings of a forecast ([`ForecastOptions::v1`]); Toto 2.0 ignores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotoSettings {
    /// Sample paths decoded together (bounds memory); must divide
    /// [`ForecastOptions::num_samples`]. Default 256.
    pub samples_per_batch: usize,
    /// Decode with the KV cache (toto-ts's default) or recompute the whole sequence per step.
    /// Default `true`.
    pub use_kv_cache: bool,
}

impl Default for TotoSettings {
    fn default() -> Self {
        TotoSettings {
            samples_per_batch: 256,
            use_kv_cache: true,
        }
    }
}

/// Toto 2.0's own settings of a forecast ([`ForecastOptions::v2`]); Toto 1.0 ignores them.
#[derive(Debug, Clone, PartialEq)]
pub struct Toto2Settings {
    /// Decode in blocks of this many steps (a multiple of the patch size) with a KV cache,
    /// feeding each block's median back; `None` (the default, what the leaderboards use): one
    /// pass over the context and every prediction patch.
    pub decode_block_size: Option<usize>,
    /// Mask time attention by observation (patches without observations form their own causal
    /// stream); `false` is toto-2's fast path for inputs without gaps (the same numbers when no
    /// context patch is empty). Default `true`.
    pub has_missing_values: bool,
    /// Replace the scaler's statistics of patches that have seen fewer observations than this
    /// by those of the first observations (0, the default: off; the GluonTS wrapper uses 8).
    pub scaler_fallback_min_obs: usize,
    /// Clamp the forecast to the context's observed range widened by `k` scales (0, the
    /// default: off; the GluonTS wrapper uses 10⁴).
    pub quantile_real_cap_k: f64,
}

impl Default for Toto2Settings {
    fn default() -> Self {
        Toto2Settings {
            decode_block_size: None,
            has_missing_values: true,
            scaler_fallback_min_obs: 0,
            quantile_real_cap_k: 0.0,
        }
    }
}

impl Toto2Settings {
    /// The settings of toto-2's GluonTS wrapper (the evaluation setting of GIFT-Eval and BOOM):
    /// one pass, backfill below 8 observations, cap at 10⁴ scales.
    pub fn gluonts() -> Self {
        Toto2Settings {
            scaler_fallback_min_obs: 8,
            quantile_real_cap_k: 1e4,
            ..Toto2Settings::default()
        }
    }
}

/// How to forecast, for either generation: the horizon, the sample count, a progress callback,
/// and each generation's own settings ([`TotoSettings`], [`Toto2Settings`]), which the other
/// generation ignores. The tensor-level `forecast` methods of [`Toto`](crate::Toto) and
/// [`Toto2`](crate::Toto2) take it, and a [`ForecastRequest`] carries it.
///
/// ```
/// use toto_fallback::forecast::{ForecastOptions, Toto2Settings};
///
/// let mut options = ForecastOptions::new(48).with_samples(Some(64));
/// options.v1.samples_per_batch = 32; // Toto 1.0: two batches of 32 paths
/// options.v2 = Toto2Settings::gluonts(); // Toto 2.0: the leaderboards' setting
/// assert_eq!(options.prediction_length, 48);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastOptions {
    /// Steps to predict (rounded up to whole patches internally, trimmed on output). At least 1.
    pub prediction_length: usize,
    /// Toto 1.0's sample paths (default 256); `None` feeds back the analytic mean (toto-ts's
    /// mean mode: a [`Forecast::Mean`](super::Forecast::Mean) without a distribution). Toto 2.0
    /// predicts quantile knots and ignores it.
    pub num_samples: Option<usize>,
    /// Told after each model pass ([`Progress`]); `None` (the default): nobody.
    pub progress: Option<Progress>,
    /// Toto 1.0's own settings.
    pub v1: TotoSettings,
    /// Toto 2.0's own settings.
    pub v2: Toto2Settings,
}

impl Default for ForecastOptions {
    /// 64 steps, 256 sample paths, each generation's default settings.
    fn default() -> Self {
        ForecastOptions {
            prediction_length: 64,
            num_samples: Some(256),
            progress: None,
            v1: TotoSettings::default(),
            v2: Toto2Settings::default(),
        }
    }
}

impl ForecastOptions {
    /// The defaults with the horizon `prediction_length`.
    pub fn new(prediction_length: usize) -> Self {
        ForecastOptions {
            prediction_length,
            ..ForecastOptions::default()
        }
    }

    /// The setting of the GluonTS evaluations (GIFT-Eval, BOOM): Toto 2.0 as its GluonTS
    /// wrapper ([`Toto2Settings::gluonts`]), Toto 1.0 with its defaults.
    pub fn gluonts(prediction_length: usize) -> Self {
        ForecastOptions {
            v2: Toto2Settings::gluonts(),
            ..ForecastOptions::new(prediction_length)
        }
    }

    /// These options with `num_samples` sample paths (Toto 1.0; `None`: the mean path), decoded
    /// in batches of at most 256 (the largest divisor of `n` not above 256).
    #[must_use]
    pub fn with_samples(mut self, num_samples: Option<usize>) -> Self {
        self.num_samples = num_samples;
        if let Some(n) = num_samples.filter(|&n| n > 0) {
            let cap = self.v1.samples_per_batch.clamp(1, 256).min(n);
            self.v1.samples_per_batch = (1..=cap).rev().find(|d| n % d == 0).unwrap_or(1);
        }
        self
    }

    /// These options with `progress` told after each model pass.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The options both generations check: a horizon of at least one step.
    pub(crate) fn check_common(&self, what: &'static str) -> Result<()> {
        if self.prediction_length == 0 {
            return Err(Error::input(
                what,
                InputKind::OutOfRange,
                "prediction_length must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// One forecast asked of a [`Forecaster`](super::Forecaster), whichever the generation: the
/// series (host data: variable lengths left-padded, NaN unobserved, series ids), known
/// covariates where the model uses them, and the [`ForecastOptions`].
///
/// ```
/// use toto_fallback::forecast::{ForecastRequest, Series};
///
/// let history: Vec<f32> = (0..96).map(|t| (t as f32 / 8.0).sin()).collect();
/// let request = ForecastRequest::new(Series::from_values(&history)?, 24).with_samples(Some(100));
/// assert_eq!(request.options.prediction_length, 24);
/// assert_eq!(request.options.v1.samples_per_batch, 100);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRequest {
    /// What to forecast, `[B, V, T]`.
    pub series: Series,
    /// Known covariates (toto-2's `known_dynamic`), `[B, K, T_c]`: series known over the context
    /// and the horizon, which inform the forecast and are not forecast. Their first step is the
    /// target's first step (`T_c ≤ T + horizon` rounded up to patches); give every covariate the
    /// same length (NaN where unknown), since [`Series`] left-pads shorter ones. Toto 2.0 only:
    /// Toto 1.0 refuses a request with covariates.
    pub covariates: Option<Series>,
    /// How to forecast.
    pub options: ForecastOptions,
}

impl ForecastRequest {
    /// A forecast of `series`, `prediction_length` steps ahead, with the default options.
    pub fn new(series: Series, prediction_length: usize) -> Self {
        ForecastRequest {
            series,
            covariates: None,
            options: ForecastOptions::new(prediction_length),
        }
    }

    /// This request with `options` (their horizon included).
    #[must_use]
    pub fn with_options(mut self, options: ForecastOptions) -> Self {
        self.options = options;
        self
    }

    /// This request with `num_samples` sample paths ([`ForecastOptions::with_samples`]).
    #[must_use]
    pub fn with_samples(mut self, num_samples: Option<usize>) -> Self {
        self.options = self.options.with_samples(num_samples);
        self
    }

    /// This request with known covariates ([`ForecastRequest::covariates`]).
    #[must_use]
    pub fn with_covariates(mut self, covariates: Series) -> Self {
        self.covariates = Some(covariates);
        self
    }

    /// This request with `progress` told after each model pass.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.options.progress = Some(progress);
        self
    }

    /// The request for items `range` of the batch (its covariates' too): what one device of a
    /// [`MultiDevice`](crate::multi::MultiDevice) forecasts.
    pub(crate) fn items(&self, range: std::ops::Range<usize>) -> Result<ForecastRequest> {
        Ok(ForecastRequest {
            series: self.series.items(range.clone())?,
            covariates: match &self.covariates {
                Some(c) => Some(c.items(range)?),
                None => None,
            },
            options: self.options.clone(),
        })
    }
}

/// `Ok` when known covariates fit a batch of `items`: one set per item, every covariate of the
/// same length (they start at the target's first step; [`Series`] would left-pad a shorter one
/// and misalign it).
///
/// # Errors
/// [`Error::Input`] (`Shape`) naming the covariate that does not fit.
pub(crate) fn check_covariates(c: &Series, items: usize) -> Result<()> {
    let [b, k, t] = c.shape();
    if b != items {
        return Err(Error::input(
            "ForecastRequest::covariates",
            InputKind::Shape,
            format!(
                "the covariates have {b} items and the series {items}: give each item its \
                 covariates"
            ),
        ));
    }
    if let Some(r) = c.lengths().iter().position(|&len| len != t) {
        return Err(Error::input(
            "ForecastRequest::covariates",
            InputKind::Shape,
            format!(
                "covariate {} of item {} has {} steps and the longest {t}: covariates start at \
                 the target's first step, so give every one {t} steps (NaN where unknown)",
                r % k,
                r / k,
                c.lengths()[r]
            ),
        ));
    }
    Ok(())
}

/// The refusal of `k` known covariates by Toto 1.0, which has no input for them (`what`: the
/// entry point).
pub(crate) fn toto1_refuses_covariates(what: &'static str, k: usize) -> Error {
    Error::input(
        what,
        InputKind::Unusable,
        format!(
            "Toto 1.0 takes no known covariates (the request has {k} of them): forecast with \
             Toto 2.0, or leave ForecastRequest::covariates empty"
        ),
    )
}
