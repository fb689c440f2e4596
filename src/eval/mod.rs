//! Forecast evaluation with gluonts' definitions: the point and quantile metrics that BOOM and
//! GIFT-Eval report, computed on the host in f64.
//!
//! An [`Evaluator`] takes forecasts one [`Entry`] at a time (one series: its context, the
//! horizon's truth, a mean and quantiles at given levels) and aggregates over every entry and
//! step as `gluonts.model.evaluation.evaluate_forecasts(..., axis=None)` does (gluonts 0.16,
//! `gluonts.ev`): a missing value (NaN or ±inf in a truth or a context) is masked, not dropped
//! or zero-filled; a ratio whose divisor is zero (a zero truth in MAPE, a context whose seasonal
//! error is zero in MASE and MSIS) leaves that step out of the mean, as numpy's masked division
//! does; a ratio of sums divides as floats (`ND` of an all-zero truth is `inf` or NaN).
//!
//! | metric ([`Metrics`] field) | gluonts name | per step | aggregation |
//! |---|---|---|---|
//! | `mse`, `rmse`, `nrmse` | `MSE[mean]`, `RMSE[mean]`, `NRMSE[mean]` | `(y − mean)²` | mean; `√mse`; `rmse / mean |y|` |
//! | `mae`, `nd` | `MAE[0.5]`, `ND[0.5]` | `|y − median|` | mean; `Σ |y − median| / Σ |y|` |
//! | `mape`, `smape` | `MAPE[0.5]`, `sMAPE[0.5]` | `|y − m| / |y|`, `2|y − m| / (|y| + |m|)` | mean |
//! | `mase` | `MASE[0.5]` | `|y − median| / seasonal error` | mean |
//! | `msis` | `MSIS` | interval score of the central `1 − α` interval / seasonal error | mean |
//! | `weighted_quantile_loss[q]`, `mean_weighted_quantile_loss` | `weighted_sum_quantile_loss[q]`, `mean_weighted_sum_quantile_loss` | `2 |(y − ŷ_q)(1{ŷ_q ≥ y} − q)|` | `Σ / Σ |y|`; mean over the levels |
//! | `coverage[q]` | `coverage[q]` | `1{y ≤ ŷ_q}` | mean |
//!
//! The seasonal error of an entry is [`seasonal_error`] of its context. Tested against values
//! that gluonts 0.16.2 computed (`tests/fixtures/metrics/make_gluonts_reference.py`): monthly,
//! hourly, quarterly and daily seasonalities, masked truths and contexts, zero-scale series, a
//! context shorter than its season.
//!
//! ```
//! use toto_fallback::eval::{Entry, Evaluator};
//!
//! let mut evaluator = Evaluator::new(1)?.with_levels(&[0.1, 0.5, 0.9])?.with_msis_alpha(0.2)?;
//! let (lo, mid, hi) = ([0.5, 1.5], [1.0, 2.0], [1.5, 2.5]);
//! evaluator.add(&Entry {
//!     past: &[1.0, 2.0, 1.0, 2.0],
//!     truth: &[1.0, 3.0],
//!     mean: &[1.0, 2.0],
//!     quantiles: &[(0.1, &lo[..]), (0.5, &mid[..]), (0.9, &hi[..])],
//! })?;
//! let m = evaluator.finish();
//! assert_eq!(m.mae, 0.5); // |1 − 1| and |3 − 2|
//! assert_eq!(m.mase, 0.5); // the naive one-step error of the context is 1
//! # Ok::<(), toto_fallback::Error>(())
//! ```

mod backtest;
mod frequency;

pub use self::backtest::{Backtest, BacktestItem, BacktestReport, ItemScores, WindowForecast};
pub use self::frequency::{Frequency, Term};
use crate::error::{Error, InputKind, Result};

/// One forecast of one series, on the host: what the metrics read. Every slice of the horizon
/// (`truth`, `mean`, each quantile) has the same length.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The context the forecast saw (for the seasonal error); NaN marks a missing value.
    pub past: &'a [f64],
    /// The horizon's true values; NaN marks a missing value (left out of every metric).
    pub truth: &'a [f64],
    /// The mean forecast (`MSE`, `RMSE`, `NRMSE`).
    pub mean: &'a [f64],
    /// Quantile forecasts by level: the median (0.5), each of the evaluator's levels, and the
    /// MSIS interval's ends (`α/2`, `1 − α/2`).
    pub quantiles: &'a [(f64, &'a [f64])],
}

/// The aggregated metrics (gluonts' names in [`eval`](self)'s table).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// `MSE[mean]`.
    pub mse: f64,
    /// `RMSE[mean]`.
    pub rmse: f64,
    /// `NRMSE[mean]`: RMSE over the mean absolute truth.
    pub nrmse: f64,
    /// `MAE[0.5]`.
    pub mae: f64,
    /// `ND[0.5]`: the summed absolute error over the summed absolute truth.
    pub nd: f64,
    /// `MAPE[0.5]`.
    pub mape: f64,
    /// `sMAPE[0.5]`.
    pub smape: f64,
    /// `MASE[0.5]`.
    pub mase: f64,
    /// `MSIS` at the evaluator's α.
    pub msis: f64,
    /// `mean_weighted_sum_quantile_loss` over the evaluator's levels: the "CRPS" of BOOM and
    /// GIFT-Eval.
    pub mean_weighted_quantile_loss: f64,
    /// `weighted_sum_quantile_loss[q]` for each level `q`.
    pub weighted_quantile_loss: Vec<(f64, f64)>,
    /// `coverage[q]` for each level `q`.
    pub coverage: Vec<(f64, f64)>,
    /// `sum_absolute_label`.
    pub sum_absolute_truth: f64,
    /// `mean_absolute_label`.
    pub mean_absolute_truth: f64,
    /// The observed (unmasked) truth values the metrics saw.
    pub observed: usize,
    /// The masked truth values (`sum_num_masked_target_values`).
    pub masked: usize,
}

/// A mean over the steps that are not masked.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    fn push(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }

    /// `numerator / divisor` unless numpy's masked division would mask it (`|b| ≤ |a|·tiny`,
    /// which is `b = 0` for every finite `a`).
    fn push_ratio(&mut self, numerator: f64, divisor: f64) {
        if divisor.abs() > numerator.abs() * f64::MIN_POSITIVE {
            self.push(numerator / divisor);
        }
    }

    fn get(self) -> f64 {
        self.sum / self.n as f64
    }
}

/// Streams [`Entry`]s into gluonts' metrics ([`eval`](self)).
#[derive(Debug, Clone)]
pub struct Evaluator {
    seasonality: usize,
    levels: Vec<f64>,
    alpha: f64,
    squared: Mean,
    absolute: Mean,
    absolute_sum: f64,
    ape: Mean,
    sape: Mean,
    ase: Mean,
    sis: Mean,
    truth_abs: Mean,
    quantile_loss: Vec<f64>,
    covered: Vec<Mean>,
    masked: usize,
}

/// The levels of [`Evaluator::new`]: GIFT-Eval's and BOOM's nine deciles.
pub const DECILES: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

impl Evaluator {
    /// An evaluator with the season length `seasonality` (12 for monthly data, 24 hourly, 1
    /// where there is none), the quantile levels [`DECILES`] and MSIS at `α = 0.05` (the
    /// central 95% interval, which needs the 0.025 and 0.975 quantiles).
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) when `seasonality` is 0.
    pub fn new(seasonality: usize) -> Result<Self> {
        if seasonality == 0 {
            return Err(Error::input(
                "Evaluator::new",
                InputKind::OutOfRange,
                "seasonality must be at least 1 (1 for data without a season)",
            ));
        }
        Ok(Evaluator {
            seasonality,
            levels: DECILES.to_vec(),
            alpha: 0.05,
            squared: Mean::default(),
            absolute: Mean::default(),
            absolute_sum: 0.0,
            ape: Mean::default(),
            sape: Mean::default(),
            ase: Mean::default(),
            sis: Mean::default(),
            truth_abs: Mean::default(),
            quantile_loss: vec![0.0; DECILES.len()],
            covered: vec![Mean::default(); DECILES.len()],
            masked: 0,
        })
    }

    /// The quantile levels of the weighted quantile loss and the coverage.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) for a level outside `(0, 1)`, (`Empty`) for no level,
    /// (`Unusable`) after the first [`Evaluator::add`].
    pub fn with_levels(mut self, levels: &[f64]) -> Result<Self> {
        const WHAT: &str = "Evaluator::with_levels";
        self.unstarted(WHAT)?;
        if levels.is_empty() {
            return Err(Error::input(
                WHAT,
                InputKind::Empty,
                "give at least one level",
            ));
        }
        if let Some(bad) = levels.iter().find(|&&q| !(q > 0.0 && q < 1.0)) {
            return Err(Error::input(
                WHAT,
                InputKind::OutOfRange,
                format!("level {bad} is not in (0, 1)"),
            ));
        }
        self.levels = levels.to_vec();
        self.quantile_loss = vec![0.0; levels.len()];
        self.covered = vec![Mean::default(); levels.len()];
        Ok(self)
    }

    /// MSIS's `α`: the interval is the `α/2` and `1 − α/2` quantiles.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) for `α` outside `(0, 1)`, (`Unusable`) after the first
    /// [`Evaluator::add`].
    pub fn with_msis_alpha(mut self, alpha: f64) -> Result<Self> {
        const WHAT: &str = "Evaluator::with_msis_alpha";
        self.unstarted(WHAT)?;
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::input(
                WHAT,
                InputKind::OutOfRange,
                format!("alpha {alpha} is not in (0, 1)"),
            ));
        }
        self.alpha = alpha;
        Ok(self)
    }

    /// The season length.
    pub fn seasonality(&self) -> usize {
        self.seasonality
    }

    /// The quantile levels of the weighted quantile loss and the coverage.
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// MSIS's `α`.
    pub fn msis_alpha(&self) -> f64 {
        self.alpha
    }

    /// Every quantile level an [`Entry`] must hold: the levels, the median and MSIS's interval
    /// ends, sorted, without repeats.
    pub fn needed_levels(&self) -> Vec<f64> {
        let mut levels = self.levels.clone();
        levels.extend([0.5, self.alpha / 2.0, 1.0 - self.alpha / 2.0]);
        levels.sort_by(f64::total_cmp);
        levels.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        levels
    }

    fn unstarted(&self, what: &'static str) -> Result<()> {
        if self.truth_abs.n + self.masked > 0 {
            return Err(Error::input(
                what,
                InputKind::Unusable,
                "the evaluator has entries already; set it up before the first `add`",
            ));
        }
        Ok(())
    }

    /// Adds one forecast.
    ///
    /// # Errors
    /// [`Error::Input`]: (`Shape`) when a forecast's length differs from the truth's, (`Empty`)
    /// for an empty truth, (`Unusable`) when a level the metrics need is missing from
    /// `quantiles` or a forecast value is not finite (gluonts refuses NaN forecasts too). The
    /// evaluator is unchanged by a refused entry.
    pub fn add(&mut self, entry: &Entry<'_>) -> Result<()> {
        const WHAT: &str = "Evaluator::add";
        let h = entry.truth.len();
        if h == 0 {
            return Err(Error::input(
                WHAT,
                InputKind::Empty,
                "the truth has no step",
            ));
        }
        let find = |level: f64| -> Result<&[f64]> {
            let (_, values) = entry
                .quantiles
                .iter()
                .find(|(q, _)| (q - level).abs() < 1e-9)
                .ok_or_else(|| {
                    Error::input(
                        WHAT,
                        InputKind::Unusable,
                        format!(
                            "no quantile forecast at level {level} (the metrics need the median, \
                             the levels {:?} and MSIS's {} and {}); the entry has {:?}",
                            self.levels,
                            self.alpha / 2.0,
                            1.0 - self.alpha / 2.0,
                            entry.quantiles.iter().map(|(q, _)| *q).collect::<Vec<_>>()
                        ),
                    )
                })?;
            Ok(values)
        };
        let median = find(0.5)?;
        let lower = find(self.alpha / 2.0)?;
        let upper = find(1.0 - self.alpha / 2.0)?;
        let levels: Vec<&[f64]> = self
            .levels
            .iter()
            .map(|&q| find(q))
            .collect::<Result<_>>()?;
        let forecasts = [
            ("mean", entry.mean),
            ("the median", median),
            ("the interval", lower),
            ("the interval", upper),
        ]
        .into_iter()
        .chain(levels.iter().map(|v| ("a quantile", *v)));
        for (name, values) in forecasts {
            if values.len() != h {
                return Err(Error::input(
                    WHAT,
                    InputKind::Shape,
                    format!("{name} has {} steps, the truth {h}", values.len()),
                ));
            }
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                return Err(Error::input(
                    WHAT,
                    InputKind::Unusable,
                    format!(
                        "{name} is {} at step {i}; forecasts must be finite",
                        values[i]
                    ),
                ));
            }
        }

        let scale = seasonal_error(entry.past, self.seasonality);
        for t in 0..h {
            let y = entry.truth[t];
            if !y.is_finite() {
                self.masked += 1;
                continue;
            }
            let m = median[t];
            let abs_err = (y - m).abs();
            self.squared.push((y - entry.mean[t]).powi(2));
            self.absolute.push(abs_err);
            self.absolute_sum += abs_err;
            self.ape.push_ratio(abs_err, y.abs());
            self.sape.push_ratio(2.0 * abs_err, y.abs() + m.abs());
            self.ase.push_ratio(abs_err, scale);
            let (lo, hi) = (lower[t], upper[t]);
            let below = if y < lo {
                2.0 / self.alpha * (lo - y)
            } else {
                0.0
            };
            let above = if y > hi {
                2.0 / self.alpha * (y - hi)
            } else {
                0.0
            };
            self.sis.push_ratio(hi - lo + below + above, scale);
            self.truth_abs.push(y.abs());
            for (k, (&q, values)) in self.levels.iter().zip(&levels).enumerate() {
                let pred = values[t];
                let indicator = if pred >= y { 1.0 } else { 0.0 };
                self.quantile_loss[k] += 2.0 * ((y - pred) * (indicator - q)).abs();
                self.covered[k].push(if y <= pred { 1.0 } else { 0.0 });
            }
        }
        Ok(())
    }

    /// The metrics of every entry added so far (NaN where no step was observed).
    pub fn finish(&self) -> Metrics {
        let mse = self.squared.get();
        let rmse = mse.sqrt();
        let sum_absolute_truth = self.truth_abs.sum;
        let mean_absolute_truth = self.truth_abs.get();
        let weighted_quantile_loss: Vec<(f64, f64)> = self
            .levels
            .iter()
            .zip(&self.quantile_loss)
            .map(|(&q, &loss)| (q, loss / sum_absolute_truth))
            .collect();
        let mean_weighted_quantile_loss =
            weighted_quantile_loss.iter().map(|(_, l)| l).sum::<f64>()
                / weighted_quantile_loss.len() as f64;
        Metrics {
            mse,
            rmse,
            nrmse: rmse / mean_absolute_truth,
            mae: self.absolute.get(),
            nd: self.absolute_sum / sum_absolute_truth,
            mape: self.ape.get(),
            smape: self.sape.get(),
            mase: self.ase.get(),
            msis: self.sis.get(),
            mean_weighted_quantile_loss,
            weighted_quantile_loss,
            coverage: self
                .levels
                .iter()
                .zip(&self.covered)
                .map(|(&q, c)| (q, c.get()))
                .collect(),
            sum_absolute_truth,
            mean_absolute_truth,
            observed: self.truth_abs.n,
            masked: self.masked,
        }
    }
}

/// gluonts' seasonal error of a context: the mean of `|y_t − y_{t−m}|` over the pairs where
/// both values are observed (not NaN or infinite), with `m = 1` when the season is longer than
/// the context. A context without such a pair gives 0, as gluonts' masked mean becomes when it
/// is stored, so its entry's scaled errors (MASE, MSIS) are left out.
pub fn seasonal_error(past: &[f64], seasonality: usize) -> f64 {
    let m = if seasonality > past.len() {
        1
    } else {
        seasonality.max(1)
    };
    let mut mean = Mean::default();
    for (a, b) in past.iter().zip(past.iter().skip(m)) {
        if a.is_finite() && b.is_finite() {
            mean.push((b - a).abs());
        }
    }
    if mean.n == 0 { 0.0 } else { mean.get() }
}

/// gluonts' `SeasonalNaivePredictor`: the forecast of step `k` is the context's value one season
/// before, `y[T − m + k mod m]` (the last season repeated), or the context's mean where it is
/// shorter than a season. The baseline that GIFT-Eval's relative scores divide by; as a
/// forecast it is one path (every quantile and the mean are that path).
///
/// As gluonts does, the context is rounded to f32 first, and a missing value (NaN) is replaced
/// by the last observed one before it (a leading one by the first observed value; every value
/// by 0 when none is observed, or when the context has one value).
///
/// # Errors
/// [`Error::Input`]: (`Empty`) for an empty context, (`OutOfRange`) for `season = 0`.
pub fn seasonal_naive(past: &[f64], season: usize, horizon: usize) -> Result<Vec<f64>> {
    const WHAT: &str = "eval::seasonal_naive";
    if past.is_empty() {
        return Err(Error::input(
            WHAT,
            InputKind::Empty,
            "the context has no value",
        ));
    }
    if season == 0 {
        return Err(Error::input(
            WHAT,
            InputKind::OutOfRange,
            "season must be at least 1",
        ));
    }
    let mut target: Vec<f32> = past.iter().map(|&x| x as f32).collect();
    impute_last_value(&mut target);
    let n = target.len();
    Ok(if n >= season {
        (0..horizon)
            .map(|k| f64::from(target[n - season + k % season]))
            .collect()
    } else {
        let mean = target.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        vec![f64::from(mean as f32); horizon]
    })
}

/// gluonts' `LastValueImputation` of a context rounded to f32.
fn impute_last_value(values: &mut [f32]) {
    if !values.iter().any(|x| x.is_nan()) {
        return;
    }
    let first = values.iter().copied().find(|x| !x.is_nan());
    match first {
        Some(first) if values.len() > 1 => {
            let mut last = first;
            for x in values.iter_mut() {
                if x.is_nan() {
                    *x = last;
                } else {
                    last = *x;
                }
            }
        }
        // gluonts' `DummyValueImputation`: 0.
        _ => values.iter_mut().for_each(|x| *x = 0.0),
    }
}

/// The geometric mean of `values` (GIFT-Eval's aggregate of scores relative to the
/// seasonal-naive baseline across data sets): `exp(mean(ln x))`; NaN for no value, 0 when a
/// value is 0, NaN when one is negative.
pub fn geometric_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    (values.iter().map(|x| x.ln()).sum::<f64>() / values.len() as f64).exp()
}
