//! Rolling-origin backtests: windows at the end of each series, forecast in batches by any
//! [`Forecaster`], scored with gluonts' metrics beside the seasonal-naive baseline.

use std::fmt;

use super::{Entry, Evaluator, Frequency, Metrics, Term, seasonal_naive};
use crate::error::{Error, InputKind, Result};
use crate::forecast::{Forecast, ForecastOptions, ForecastRequest, Forecaster, Progress, Series};

/// One series to backtest, on the host: its values on a regular grid (NaN where missing) and
/// known covariates on the same grid (Toto 2.0).
#[derive(Debug, Clone, Copy)]
pub struct BacktestItem<'a> {
    /// The series' name, carried into [`ItemScores`].
    pub id: &'a str,
    /// The values, oldest first; NaN marks a missing value.
    pub target: &'a [f32],
    /// Known covariates, each as long as `target`: a window's forecast sees them over its
    /// context and its horizon. Empty for none; Toto 1.0 refuses a request with covariates.
    pub covariates: &'a [Vec<f32>],
}

impl<'a> BacktestItem<'a> {
    /// An item without covariates.
    pub fn new(id: &'a str, target: &'a [f32]) -> Self {
        BacktestItem {
            id,
            target,
            covariates: &[],
        }
    }
}

/// A rolling-origin backtest, as gluonts' `split` + `generate_instances` and GIFT-Eval set it
/// up: `windows` forecasts per series of `horizon` steps each, the last one ending at the
/// series' end and each earlier one `step` steps before the next. A window's forecast sees every
/// value before its origin (or the last [`Backtest::with_context_length`] of them); its truth
/// is the next `horizon` values. Every window of every item is forecast by the model in batches
/// of [`Backtest::with_batch_size`] requests' worth, and by the seasonal-naive baseline
/// ([`seasonal_naive`]) on the same history, both scored by one configuration of
/// [`Evaluator`] (the seasonal error of each window's whole history, as gluonts does).
///
/// ```
/// use toto_fallback::eval::{Backtest, BacktestItem, Frequency, Term};
/// use toto_fallback::{AutoToto, NdArray};
///
/// let model = AutoToto::from_dir(&NdArray::seeded(0), "tests/fixtures/toto2-tiny")?;
/// let values: Vec<f32> = (0..120).map(|t| 10.0 + (t as f32 * 0.52).sin()).collect();
/// let monthly = Frequency::parse("M")?;
/// // GIFT-Eval's short term for monthly data: 12 steps, ceil(0.1 · 120 / 12) = 1 window.
/// let backtest = Backtest::gift_eval(monthly, Term::Short, values.len())?;
/// assert_eq!((backtest.horizon(), backtest.windows(), backtest.seasonality()), (12, 1, 12));
/// let report = backtest.run(&model, &[BacktestItem::new("a", &values)])?;
/// println!("{report}"); // model, seasonal naive, model / naive
/// assert!(report.model.mase.is_finite() && report.baseline.mase.is_finite());
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Backtest {
    horizon: usize,
    windows: usize,
    step: usize,
    context_length: Option<usize>,
    batch_size: usize,
    evaluator: Evaluator,
    options: ForecastOptions,
    progress: Option<Progress>,
}

/// GIFT-Eval's share of the shortest series its test windows cover.
const GIFT_EVAL_TEST_SPLIT: f64 = 0.1;
/// GIFT-Eval's most windows per data set.
const GIFT_EVAL_MAX_WINDOWS: usize = 20;

impl Backtest {
    /// `windows` windows of `horizon` steps, `horizon` apart (no overlap), scored with
    /// seasonality 1 and [`Evaluator::new`]'s levels; forecasts with
    /// [`ForecastOptions::gluonts`], 32 windows per model call, the whole history as context.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) when `horizon` or `windows` is 0.
    pub fn new(horizon: usize, windows: usize) -> Result<Self> {
        const WHAT: &str = "Backtest::new";
        if horizon == 0 || windows == 0 {
            return Err(Error::input(
                WHAT,
                InputKind::OutOfRange,
                format!("horizon ({horizon}) and windows ({windows}) must both be at least 1"),
            ));
        }
        Ok(Backtest {
            horizon,
            windows,
            step: horizon,
            context_length: None,
            batch_size: 32,
            evaluator: Evaluator::new(1)?,
            options: ForecastOptions::gluonts(horizon),
            progress: None,
        })
    }

    /// GIFT-Eval's setup for a data set of `frequency` whose shortest series has
    /// `min_series_length` values (`gift_eval/data.py`): the horizon of
    /// [`Frequency::gift_eval_horizon`], `ceil(0.1 · min_series_length / horizon)` windows
    /// (at least 1, at most 20) `horizon` apart, and the frequency's seasonality
    /// ([`Frequency::seasonality`]) for MASE, MSIS and the baseline.
    ///
    /// # Errors
    /// As [`Backtest::new`] (never, for a valid frequency).
    pub fn gift_eval(frequency: Frequency, term: Term, min_series_length: usize) -> Result<Self> {
        let horizon = frequency.gift_eval_horizon(term);
        let windows = (GIFT_EVAL_TEST_SPLIT * min_series_length as f64 / horizon as f64).ceil();
        let windows = (windows as usize).clamp(1, GIFT_EVAL_MAX_WINDOWS);
        Backtest::new(horizon, windows)?.with_seasonality(frequency.seasonality())
    }

    /// Windows `step` steps apart (default: the horizon; less overlaps them).
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) for 0.
    pub fn with_step(mut self, step: usize) -> Result<Self> {
        if step == 0 {
            return Err(Error::input(
                "Backtest::with_step",
                InputKind::OutOfRange,
                "the step between windows must be at least 1",
            ));
        }
        self.step = step;
        Ok(self)
    }

    /// The season length of MASE, MSIS and the seasonal-naive baseline.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) for 0.
    pub fn with_seasonality(mut self, seasonality: usize) -> Result<Self> {
        self.evaluator = Evaluator::new(seasonality)?
            .with_levels(self.evaluator.levels())?
            .with_msis_alpha(self.evaluator.msis_alpha())?;
        Ok(self)
    }

    /// Scores with `evaluator`'s seasonality, levels and MSIS `α` (not its entries).
    ///
    /// # Errors
    /// Never for an evaluator that was built; kept fallible for its checks.
    pub fn with_evaluator(mut self, evaluator: &Evaluator) -> Result<Self> {
        self.evaluator = Evaluator::new(evaluator.seasonality())?
            .with_levels(evaluator.levels())?
            .with_msis_alpha(evaluator.msis_alpha())?;
        Ok(self)
    }

    /// At most the last `n` values before each origin as the model's context (`None`: all of
    /// them). The baseline and the seasonal error still see the whole history.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) for `Some(0)`.
    pub fn with_context_length(mut self, n: Option<usize>) -> Result<Self> {
        if n == Some(0) {
            return Err(Error::input(
                "Backtest::with_context_length",
                InputKind::OutOfRange,
                "a context needs at least one value (None: the whole history)",
            ));
        }
        self.context_length = n;
        Ok(self)
    }

    /// Forecast at most `n` windows per model call (default 32): memory against speed.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) for 0.
    pub fn with_batch_size(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::input(
                "Backtest::with_batch_size",
                InputKind::OutOfRange,
                "a batch holds at least one window",
            ));
        }
        self.batch_size = n;
        Ok(self)
    }

    /// Forecast with `options` (sample count, each generation's settings); their horizon is
    /// replaced by the backtest's, their progress callback by none (see
    /// [`Backtest::with_progress`]).
    #[must_use]
    pub fn with_options(mut self, options: ForecastOptions) -> Self {
        self.options = ForecastOptions {
            prediction_length: self.horizon,
            progress: None,
            ..options
        };
        self
    }

    /// Told after each model call: `done` of `total` batches ([`Progress::bar`] draws a bar).
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Steps per window.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Windows per series.
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// Steps between window origins.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The season length of the scores.
    pub fn seasonality(&self) -> usize {
        self.evaluator.seasonality()
    }

    /// The quantile levels each window's forecast is read at: [`Evaluator::needed_levels`].
    pub fn levels(&self) -> Vec<f64> {
        self.evaluator.needed_levels()
    }

    /// The values each series needs: the windows, and one value of context before the first.
    pub fn min_length(&self) -> usize {
        self.horizon
            .saturating_add(self.step.saturating_mul(self.windows - 1))
            .saturating_add(1)
    }

    /// The origins (the index of each window's first forecast step) in a series of `len`
    /// values, oldest first.
    ///
    /// # Errors
    /// [`Error::Input`] (`Shape`) when `len` is below [`Backtest::min_length`].
    pub fn origins(&self, len: usize) -> Result<Vec<usize>> {
        if len < self.min_length() {
            return Err(Error::input(
                "Backtest::origins",
                InputKind::Shape,
                format!(
                    "a series of {len} values is too short for {} windows of {} steps, {} apart: \
                     it needs at least {} (one value of context before the first window); use \
                     fewer windows or a shorter horizon",
                    self.windows,
                    self.horizon,
                    self.step,
                    self.min_length()
                ),
            ));
        }
        let last = len - self.horizon;
        Ok((0..self.windows)
            .map(|w| last - (self.windows - 1 - w) * self.step)
            .collect())
    }

    /// Backtests `model` on `items`.
    ///
    /// # Errors
    /// [`Error::Input`] naming the item: (`Empty`) for no item, (`Shape`) for a series shorter
    /// than [`Backtest::min_length`] or covariates of another length or count than the first
    /// item's, (`Unusable`) for a window whose context has no observed value; the forecast's
    /// own errors ([`Forecaster::predict`], [`Forecast::quantiles_at`]: a Toto 1.0 forecast in
    /// mean mode has no quantiles).
    pub fn run<M: Forecaster>(
        &self,
        model: &M,
        items: &[BacktestItem<'_>],
    ) -> Result<BacktestReport> {
        const WHAT: &str = "Backtest::run";
        if items.is_empty() {
            return Err(Error::input(WHAT, InputKind::Empty, "no item to backtest"));
        }
        let covariate_count = items[0].covariates.len();
        let mut tasks = Vec::new(); // (item, window, origin)
        for (i, item) in items.iter().enumerate() {
            let origins = self.origins(item.target.len()).map_err(|e| match e {
                Error::Input { reason, .. } => Error::input(
                    WHAT,
                    InputKind::Shape,
                    format!("item `{}`: {reason}", item.id),
                ),
                other => other,
            })?;
            if item.covariates.len() != covariate_count
                || item.covariates.iter().any(|c| c.len() != item.target.len())
            {
                return Err(Error::input(
                    WHAT,
                    InputKind::Shape,
                    format!(
                        "item `{}` has {} covariates of lengths {:?} for {} values; every item \
                         needs {covariate_count} (the first item's count), each as long as its \
                         values",
                        item.id,
                        item.covariates.len(),
                        item.covariates.iter().map(Vec::len).collect::<Vec<_>>(),
                        item.target.len()
                    ),
                ));
            }
            for (w, origin) in origins.into_iter().enumerate() {
                if !self
                    .context(item.target, origin)
                    .iter()
                    .any(|x| x.is_finite())
                {
                    return Err(Error::input(
                        WHAT,
                        InputKind::Unusable,
                        format!(
                            "item `{}`, window {w}: the context before step {origin} has no \
                             observed value",
                            item.id
                        ),
                    ));
                }
                tasks.push((i, w, origin));
            }
        }

        let levels = self.levels();
        let seasonality = self.seasonality();
        let h = self.horizon;
        let mut model_scores = self.evaluator.clone();
        let mut baseline_scores = self.evaluator.clone();
        let mut per_item: Vec<(Evaluator, Evaluator)> =
            vec![(self.evaluator.clone(), self.evaluator.clone()); items.len()];
        let mut forecasts = Vec::with_capacity(tasks.len());
        let batches = tasks.len().div_ceil(self.batch_size);
        for (done, batch) in tasks.chunks(self.batch_size).enumerate() {
            let request = self.request(items, batch, covariate_count)?;
            let forecast: Forecast<M::Backend> = model.predict(&request)?;
            let mean =
                crate::backend::read_back("Backtest::run (the mean)", forecast.mean().clone())?;
            let quantiles = crate::backend::read_back(
                "Backtest::run (the quantiles)",
                forecast.quantiles_at(&levels)?,
            )?;
            drop(forecast);
            for (b, &(i, w, origin)) in batch.iter().enumerate() {
                let target = items[i].target;
                let past: Vec<f64> = target[..origin].iter().map(|&x| f64::from(x)).collect();
                let truth: Vec<f64> = target[origin..origin + h]
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect();
                let window = WindowForecast {
                    item: i,
                    window: w,
                    origin,
                    mean: mean[b * h..(b + 1) * h].to_vec(),
                    quantiles: (0..levels.len())
                        .map(|l| {
                            (0..h)
                                .map(|t| quantiles[(b * h + t) * levels.len() + l])
                                .collect()
                        })
                        .collect(),
                };
                let as_f64 = |x: &[f32]| x.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
                let model_mean = as_f64(&window.mean);
                let model_quantiles: Vec<Vec<f64>> =
                    window.quantiles.iter().map(|q| as_f64(q)).collect();
                let by_level: Vec<(f64, &[f64])> = levels
                    .iter()
                    .zip(&model_quantiles)
                    .map(|(&q, v)| (q, v.as_slice()))
                    .collect();
                let entry = Entry {
                    past: &past,
                    truth: &truth,
                    mean: &model_mean,
                    quantiles: &by_level,
                };
                model_scores.add(&entry)?;
                per_item[i].0.add(&entry)?;
                let naive = seasonal_naive(&past, seasonality, h)?;
                let naive_levels: Vec<(f64, &[f64])> =
                    levels.iter().map(|&q| (q, naive.as_slice())).collect();
                let entry = Entry {
                    past: &past,
                    truth: &truth,
                    mean: &naive,
                    quantiles: &naive_levels,
                };
                baseline_scores.add(&entry)?;
                per_item[i].1.add(&entry)?;
                forecasts.push(window);
            }
            if let Some(progress) = &self.progress {
                progress.report(done + 1, batches);
            }
        }
        Ok(BacktestReport {
            model: model_scores.finish(),
            baseline: baseline_scores.finish(),
            items: items
                .iter()
                .zip(per_item)
                .map(|(item, (model, baseline))| ItemScores {
                    id: item.id.to_owned(),
                    model: model.finish(),
                    baseline: baseline.finish(),
                })
                .collect(),
            levels,
            forecasts,
        })
    }

    /// The model's context of a window at `origin`.
    fn context<'t>(&self, target: &'t [f32], origin: usize) -> &'t [f32] {
        let from = self.context_length.map_or(0, |n| origin.saturating_sub(n));
        &target[from..origin]
    }

    /// The forecast request of a batch of windows: contexts left-padded to the longest, the
    /// covariates over each context and its horizon.
    fn request(
        &self,
        items: &[BacktestItem<'_>],
        batch: &[(usize, usize, usize)],
        covariate_count: usize,
    ) -> Result<ForecastRequest> {
        let contexts: Vec<[&[f32]; 1]> = batch
            .iter()
            .map(|&(i, _, origin)| [self.context(items[i].target, origin)])
            .collect();
        let mut request = ForecastRequest::new(Series::from_batch(&contexts)?, self.horizon)
            .with_options(self.options.clone());
        if covariate_count > 0 {
            // Each window's covariates over its context and horizon, left-padded with NaN to
            // the batch's longest context as the targets are (a request's covariates all have
            // one length).
            let longest = contexts.iter().map(|[c]| c.len()).max().unwrap_or(0);
            let covariates: Vec<Vec<Vec<f32>>> = batch
                .iter()
                .zip(&contexts)
                .map(|(&(i, _, origin), [context])| {
                    let from = origin - context.len();
                    items[i]
                        .covariates
                        .iter()
                        .map(|c| {
                            let mut padded = vec![f32::NAN; longest - context.len()];
                            padded.extend_from_slice(&c[from..origin + self.horizon]);
                            padded
                        })
                        .collect()
                })
                .collect();
            request = request.with_covariates(Series::from_batch(&covariates)?);
        }
        Ok(request)
    }
}

/// One window's forecast in a [`BacktestReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct WindowForecast {
    /// The item's index in the backtest's items.
    pub item: usize,
    /// The window's index, 0 the oldest.
    pub window: usize,
    /// The index of the window's first step in the item's values.
    pub origin: usize,
    /// The mean forecast, one value per step.
    pub mean: Vec<f32>,
    /// The forecast at each of [`BacktestReport::levels`], one row per level.
    pub quantiles: Vec<Vec<f32>>,
}

/// One item's scores in a [`BacktestReport`], over its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScores {
    /// The item's id.
    pub id: String,
    /// The model's metrics.
    pub model: Metrics,
    /// The seasonal-naive baseline's metrics.
    pub baseline: Metrics,
}

/// What a [`Backtest`] found: the model's and the seasonal-naive baseline's metrics over every
/// item and window (gluonts' aggregation), per item, and every window's forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestReport {
    /// The model's metrics over every window of every item.
    pub model: Metrics,
    /// The seasonal-naive baseline's, on the same windows.
    pub baseline: Metrics,
    /// Each item's, in the order given.
    pub items: Vec<ItemScores>,
    /// The quantile levels of [`WindowForecast::quantiles`].
    pub levels: Vec<f64>,
    /// Every window's forecast, item by item, oldest window first.
    pub forecasts: Vec<WindowForecast>,
}

impl BacktestReport {
    /// The model's MASE over the baseline's: GIFT-Eval's normalised MASE of one data set (below
    /// 1 beats seasonal naive). [`geometric_mean`](super::geometric_mean) of these across data
    /// sets is its aggregate.
    pub fn relative_mase(&self) -> f64 {
        self.model.mase / self.baseline.mase
    }

    /// The model's mean weighted quantile loss (GIFT-Eval's and BOOM's CRPS) over the
    /// baseline's.
    pub fn relative_crps(&self) -> f64 {
        self.model.mean_weighted_quantile_loss / self.baseline.mean_weighted_quantile_loss
    }
}

impl fmt::Display for BacktestReport {
    /// A table: each metric for the model, the seasonal-naive baseline, and their ratio.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, b) = (&self.model, &self.baseline);
        writeln!(
            f,
            "{:<10} {:>14} {:>14} {:>10}",
            "metric", "model", "seasonal naive", "ratio"
        )?;
        let rows = [
            (
                "CRPS",
                m.mean_weighted_quantile_loss,
                b.mean_weighted_quantile_loss,
            ),
            ("MASE", m.mase, b.mase),
            ("MAE", m.mae, b.mae),
            ("RMSE", m.rmse, b.rmse),
            ("sMAPE", m.smape, b.smape),
            ("MAPE", m.mape, b.mape),
            ("ND", m.nd, b.nd),
            ("NRMSE", m.nrmse, b.nrmse),
            ("MSIS", m.msis, b.msis),
        ];
        for (name, model, baseline) in rows {
            writeln!(
                f,
                "{name:<10} {model:>14.6} {baseline:>14.6} {:>10.4}",
                model / baseline
            )?;
        }
        write!(
            f,
            "{} windows of {} items; {} target values observed, {} masked",
            self.forecasts.len(),
            self.items.len(),
            m.observed,
            m.masked
        )
    }
}
