//! Anomaly scores of observations under a [`Forecast`]: where each new value falls in the
//! forecast distribution of its step.

use burn::tensor::{Bool, Tensor};

use super::Forecast;
use crate::backend::Backend;
use crate::distr::{Cdf, Distribution};
use crate::error::{Error, InputKind, Result};

/// How surprising observed values are under a forecast ([`Forecast::anomaly_scores`]), each
/// `[B, V, K]` for the first `K` forecast steps, on the forecast's device. A missing observation
/// (NaN) has NaN scores and is never flagged.
#[derive(Debug, Clone)]
pub struct AnomalyScores {
    /// The probability integral transform `F(y)`: the forecast's cdf at the observation. Under
    /// a calibrated forecast it is uniform on `[0, 1]`; near 0 the value is lower than
    /// forecast, near 1 higher. From sample paths, the mid-rank `(#{x < y} + #{x = y}/2) / n`.
    pub pit: Tensor<3>,
    /// The two-sided tail probability `2·min(F(y), 1 − F(y))`: the chance, under the forecast,
    /// of a value at least as far out on either side. 1 at the median, 0 outside the forecast's
    /// support (or beyond every sample path).
    pub tail: Tensor<3>,
    /// `ln p(y)`, the forecast density at the observation where the forecast has one: Toto
    /// 2.0's quantile knots (their piecewise-constant density, linear tails included; `-inf`
    /// outside the support). `None` for sample paths, whose marginal has no density.
    pub log_density: Option<Tensor<3>>,
}

impl AnomalyScores {
    /// The observations whose two-sided tail probability is below `alpha`: under a calibrated
    /// forecast a normal value is flagged with probability `alpha` (0.01 flags one normal point
    /// in a hundred per series; divide `alpha` by the number of series and steps checked
    /// together for a family-wise rate, Bonferroni's bound). From `n` sample paths the tail
    /// probability moves in steps of `1/n`: `alpha` below `1/n` flags only values beyond every
    /// path. Read the mask on any device as 0/1 floats:
    /// [`read_series`](super::read_series)`(flags.float())`.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) unless `alpha` is in `(0, 1)`.
    pub fn flags(&self, alpha: f64) -> Result<Tensor<3, Bool>> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::input(
                "AnomalyScores::flags",
                InputKind::OutOfRange,
                format!("alpha {alpha} is not in (0, 1)"),
            ));
        }
        // NaN compares false: a missing observation is not flagged.
        Ok(self.tail.clone().lower_elem(alpha))
    }
}

impl<B: Backend> Forecast<B> {
    /// Anomaly scores of `observed` (`[B, V, K]`, `1 ≤ K ≤` the horizon: the values that
    /// arrived for the first `K` forecast steps; NaN where none did) under this forecast: the
    /// PIT, the two-sided tail probability and, for quantile knots, the log density
    /// ([`AnomalyScores`]). Computed on the forecast's device, batched over series, variates
    /// and steps.
    ///
    /// ```
    /// use burn::tensor::Tensor;
    /// use toto_fallback::forecast::{ForecastRequest, Forecaster, Series, read_series};
    /// use toto_fallback::{Backend, NdArray, Toto2};
    ///
    /// let cpu = NdArray::seeded(0);
    /// let model = Toto2::from_dir(&cpu, "tests/fixtures/toto2-tiny")?;
    /// let history: Vec<f32> = (0..64).map(|t| (t as f32 / 4.0).sin()).collect();
    /// let forecast = model.predict(&ForecastRequest::new(Series::from_values(&history)?, 16))?;
    /// // The next two values arrive: one ordinary, one far off.
    /// let median: Vec<f32> = forecast.median()?.into_data().try_to_vec().unwrap();
    /// let observed = Tensor::<3>::from_floats([[[median[0], median[1] + 1e3]]], cpu.device());
    /// let scores = forecast.anomaly_scores(observed)?;
    /// // Read as 0/1 floats, `[series][variate][step]` (a GPU keeps booleans as u32).
    /// let flags = read_series(scores.flags(0.01)?.float())?;
    /// assert_eq!(flags[0][0], [0.0, 1.0]);
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Input`]: (`Shape`) unless `observed` is `[B, V, K]` with this forecast's `B`
    /// and `V` and `1 ≤ K ≤` its horizon, (`NoDistribution`) for a mean-mode forecast;
    /// [`Error::DeviceMismatch`] if `observed` is on another device.
    pub fn anomaly_scores(&self, observed: Tensor<3>) -> Result<AnomalyScores> {
        const WHAT: &str = "Forecast::anomaly_scores";
        let [b, v, h] = self.mean().dims();
        let [ob, ov, k] = observed.dims();
        if ob != b || ov != v || k == 0 || k > h {
            return Err(Error::input(
                WHAT,
                InputKind::Shape,
                format!(
                    "observed is [{ob}, {ov}, {k}]; this forecast needs [{b}, {v}, K] with \
                     1 <= K <= {h} (its horizon)"
                ),
            ));
        }
        let device = self.mean().device();
        Error::ensure_devices(WHAT, &device, [("observed", observed.device())])?;
        let missing = observed.clone().is_nan();
        let (pit, log_density) = if let Some(knots) = self.quantiles() {
            // The knots' batch is the whole horizon: pad the observations with NaN to it.
            let full = if k < h {
                Tensor::cat(
                    vec![
                        observed.clone(),
                        Tensor::<3>::full([b, v, h - k], f32::NAN, &device),
                    ],
                    2,
                )
            } else {
                observed.clone()
            };
            let pit = knots.cdf(full.clone())?.narrow(2, 0, k);
            let log_density = knots.log_prob(full)?.narrow(2, 0, k);
            (pit, Some(log_density))
        } else if let Some(paths) = self.samples() {
            let n = paths.dims()[3];
            if n == 0 {
                return Err(Error::input(
                    WHAT,
                    InputKind::NoDistribution,
                    "the forecast holds no sample path",
                ));
            }
            let paths = paths.clone().narrow(2, 0, k);
            let y = observed.clone().reshape([b, v, k, 1]);
            let below = paths.clone().lower(y.clone()).float().sum_dim(3);
            let equal = paths.equal(y).float().sum_dim(3);
            let pit = below
                .add(equal.mul_scalar(0.5))
                .div_scalar(n as f64)
                .reshape([b, v, k]);
            (pit, None)
        } else {
            return Err(Error::input(
                WHAT,
                InputKind::NoDistribution,
                super::MEAN_MODE,
            ));
        };
        let pit = pit.mask_where(missing, observed);
        let tail = pit
            .clone()
            .min_pair(pit.clone().neg().add_scalar(1.0))
            .mul_scalar(2.0);
        Ok(AnomalyScores {
            pit,
            tail,
            log_density,
        })
    }
}
