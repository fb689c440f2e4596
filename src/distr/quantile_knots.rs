//! `QuantileKnots(levels, values)`: a distribution given by its quantiles at fixed levels, Toto
//! 2.0's output.

use burn::tensor::{Device, Tensor};

use super::shape::{BroadcastTo, ReshapeExact, batch_shape, full_shape, lift, value_shape};
use super::{Cdf, Distribution};
use crate::backend::Backend;
use crate::error::{Error, InputKind, Result};

const NAME: &str = "QuantileKnots";

/// A distribution known by its quantiles at `Q` fixed levels: Toto 2.0's forecast (the nine
/// deciles 0.1, …, 0.9 per series and step).
///
/// - Parameters: `levels` `0 < τ₁ < … < τ_Q < 1` (on the host, shared by the batch) and
///   `values` (`[batch.., Q]`, the knots in the last dimension, non-decreasing along it:
///   `q₁ ≤ … ≤ q_Q`).
/// - Quantile function: piecewise linear through the knots `(τᵢ, qᵢ)`, continued linearly to
///   `τ = 0` and `τ = 1` with the slopes of the first and last segments ("linear tails"). The
///   support is therefore `[q₁ − τ₁·s₁, q_Q + (1 − τ_Q)·s_Q]` with `s₁`, `s_Q` the outer slopes;
///   the density is piecewise constant, `Δτ / Δq` on each segment, continuous at the outer knots.
///   A segment of zero width (equal knots) is a point mass of its `Δτ`; its density is not
///   defined (`log_prob` ignores it).
/// - Sampling: by inverse transform, `quantile(U)` with the backend's uniforms.
/// - Moments: mean `Σ Δτ (qⱼ + qⱼ₊₁)/2`, variance `Σ Δτ (qⱼ² + qⱼqⱼ₊₁ + qⱼ₊₁²)/3 − mean²`, over
///   the segments including the tails.
/// - [`QuantileKnots::weighted_quantile_loss`]: gluonts' `MeanWeightedSumQuantileLoss` over the
///   levels, the "CRPS" that GIFT-Eval and BOOM report.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::distr::{Cdf, Distribution, QuantileKnots};
/// use toto_fallback::{Backend, NdArray};
///
/// let cpu = NdArray::seeded(0);
/// let dev = cpu.device();
/// // One distribution with knots at the quartiles: 10, 20, 40.
/// let levels = [0.25, 0.5, 0.75];
/// let d: QuantileKnots<_, 1, 2> =
///     QuantileKnots::new(&cpu, &levels, Tensor::<2>::from_floats([[10.0, 20.0, 40.0]], dev))?;
/// let q: Vec<f32> = d.quantile(Tensor::<1>::from_floats([0.5], dev))?.into_data().try_to_vec().unwrap();
/// assert_eq!(q, [20.0]);
/// // Between knots the quantile function is linear: halfway between 0.5 and 0.75.
/// let q: f32 = d.quantile(Tensor::<1>::from_floats([0.625], dev))?.into_scalar();
/// assert!((q - 30.0).abs() < 1e-5);
/// // The lower tail continues the first segment (slope 40 per unit level) down to τ = 0.
/// let q: f32 = d.quantile(Tensor::<1>::from_floats([0.0], dev))?.into_scalar();
/// assert!((q - 0.0).abs() < 1e-5);
/// let p: f32 = d.cdf(Tensor::<1>::from_floats([30.0], dev))?.into_scalar();
/// assert!((p - 0.625).abs() < 1e-6);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuantileKnots<B: Backend, const D: usize, const DQ: usize> {
    backend: B,
    /// The given levels.
    levels: Vec<f64>,
    /// The given knots, `[batch.., Q]`.
    values: Tensor<DQ>,
    /// The levels with `0` and `1` added at the ends: `Q + 2`.
    ends: Vec<f64>,
    /// The knots at [`Self::ends`], each of the batch shape: the given ones and the two tail
    /// ends.
    knots: Vec<Tensor<D>>,
    batch: [usize; D],
}

impl<B: Backend, const D: usize, const DQ: usize> QuantileKnots<B, D, DQ> {
    /// The distribution with the quantiles `values` (`[batch.., Q]`, rank `DQ = D + 1`) at
    /// `levels` (`Q >= 2` of them).
    ///
    /// # Errors
    /// [`Error::Input`] unless the levels are at least two, strictly increasing and inside
    /// `(0, 1)`; [`Error::Rank`] unless `DQ = D + 1`; [`Error::ParamShape`] if the last dimension
    /// of `values` is not `Q`; [`Error::DeviceMismatch`] if `values` is on another device. The
    /// values are not read (see [`QuantileKnots::validate`]).
    pub fn new(backend: &B, levels: &[f64], values: Tensor<DQ>) -> Result<Self> {
        check_levels(levels)?;
        if DQ != D + 1 {
            return Err(Error::Rank {
                dist: NAME,
                what: "the knots",
                needed: D + 1,
                asked: DQ,
            });
        }
        let dims = batch_shape(NAME, backend.device(), &[("values", &values)])?;
        let q = levels.len();
        let mut batch = [0; D];
        batch.copy_from_slice(&dims[..D]);
        if dims[D] != q {
            return Err(Error::ParamShape {
                dist: NAME,
                param: "values",
                shape: dims.to_vec(),
                batch: batch.iter().copied().chain([q]).collect(),
            });
        }
        let at = |j: usize| -> Tensor<D> {
            let mut range = dims.map(|d| 0..d);
            range[D] = j..j + 1;
            values.clone().slice(range).reshape_exact(batch)
        };
        let knots = with_tails(levels, (0..q).map(at).collect());
        let ends = std::iter::once(0.0)
            .chain(levels.iter().copied())
            .chain(std::iter::once(1.0))
            .collect();
        Ok(QuantileKnots {
            backend: backend.clone(),
            levels: levels.to_vec(),
            values,
            ends,
            knots,
            batch,
        })
    }

    /// The backend it computes on.
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// The levels `τ`.
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// The knots, `[batch.., Q]`.
    pub fn values(&self) -> &Tensor<DQ> {
        &self.values
    }

    /// The median (the quantile at 0.5), of the batch shape.
    ///
    /// # Errors
    /// Never in practice; as [`Cdf::quantile`].
    pub fn median(&self) -> Result<Tensor<D>> {
        let p = Tensor::<D>::full(self.batch, 0.5, self.backend.device());
        self.quantile(p)
    }

    /// Checks that the knots are finite and non-decreasing along the last dimension. Reads the
    /// knots back (a device sync).
    ///
    /// # Errors
    /// [`Error::ParamValue`] naming the first offending element (its flat index).
    pub fn validate(&self) -> Result<()> {
        super::validate::finite(NAME, "values", &self.values)?;
        let q = self.levels.len();
        let values = crate::backend::read_back("QuantileKnots::validate", self.values.clone())?;
        match values.chunks(q).enumerate().find_map(|(r, row)| {
            row.windows(2)
                .position(|w| w[0] > w[1])
                .map(|i| r * q + i + 1)
        }) {
            None => Ok(()),
            Some(index) => Err(Error::ParamValue {
                dist: NAME,
                param: "values",
                requirement: "must be non-decreasing along the levels",
                index,
                value: values[index],
            }),
        }
    }

    /// gluonts' `MeanWeightedSumQuantileLoss` of `target` (the batch shape): for each level τ,
    /// `2 Σ |(y − q_τ)(1{y ≤ q_τ} − τ)| / Σ |y|` summed over every element, then the mean over
    /// the levels. This is the weighted quantile loss (a CRPS approximation) that GIFT-Eval and
    /// BOOM report. A one-element tensor on the device; nothing is read back. A NaN target
    /// makes it NaN (gluonts masks missing targets: drop them first), and so does an all-zero
    /// target (`Σ |y| = 0`).
    ///
    /// # Errors
    /// [`Error::ValueShape`] unless `target` has the batch shape; [`Error::DeviceMismatch`].
    pub fn weighted_quantile_loss(&self, target: Tensor<D>) -> Result<Tensor<1>> {
        if target.dims() != self.batch {
            return Err(Error::ValueShape {
                dist: NAME,
                shape: target.dims().to_vec(),
                batch: self.batch.to_vec(),
            });
        }
        self.check_device("target", &target)?;
        let denominator = target.clone().abs().sum();
        let mut total: Option<Tensor<1>> = None;
        for (i, &tau) in self.levels.iter().enumerate() {
            let q = self.knots[i + 1].clone();
            let below = target.clone().lower_equal(q.clone()).float();
            let loss = target
                .clone()
                .sub(q)
                .mul(below.sub_scalar(tau))
                .abs()
                .sum()
                .mul_scalar(2.0);
            total = Some(match total {
                None => loss,
                Some(t) => t.add(loss),
            });
        }
        let total = total.unwrap_or_else(|| Tensor::zeros([1], self.device()));
        Ok(total.div(denominator).div_scalar(self.levels.len() as f64))
    }

    fn check_device<const E: usize>(&self, param: &'static str, t: &Tensor<E>) -> Result<()> {
        Error::ensure_devices(NAME, self.backend.device(), [(param, t.device())])
    }

    /// The segments `(τⱼ, τⱼ₊₁, qⱼ, qⱼ₊₁)`, tails included, with the knots lifted to rank `S`.
    fn segments<const S: usize>(&self) -> Vec<(f64, f64, Tensor<S>, Tensor<S>)> {
        let lifted: Vec<Tensor<S>> = self.knots.iter().map(|k| lift::<D, S>(k.clone())).collect();
        (0..self.ends.len() - 1)
            .map(|j| {
                (
                    self.ends[j],
                    self.ends[j + 1],
                    lifted[j].clone(),
                    lifted[j + 1].clone(),
                )
            })
            .collect()
    }
}

impl<B: Backend, const D: usize, const DQ: usize> Distribution<D> for QuantileKnots<B, D, DQ> {
    fn batch_shape(&self) -> [usize; D] {
        self.batch
    }

    fn device(&self) -> &Device {
        self.backend.device()
    }

    /// Inverse transform: `quantile(U)`, one backend uniform per draw.
    fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S>> {
        let shape = full_shape::<S>(NAME, sample_shape, &self.batch)?;
        let u = self.backend.uniform(shape)?;
        self.quantile(u)
    }

    /// `ln(Δτ / Δq)` inside a segment of positive width, `-inf` outside the support.
    fn log_prob<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, value.dims(), &self.batch)?;
        let x = value.broadcast_to(shape);
        let mut density = Tensor::<S>::zeros(shape, &x.device());
        for (t0, t1, k0, k1) in self.segments::<S>() {
            let (k0, k1) = (k0.broadcast_to(shape), k1.broadcast_to(shape));
            let width = k1.clone().sub(k0.clone());
            let inside = x
                .clone()
                .greater_equal(k0)
                .bool_and(x.clone().lower_equal(k1))
                .bool_and(width.clone().greater_elem(0.0));
            let d = width.recip().mul_scalar(t1 - t0);
            density = density.mask_where(inside, d);
        }
        // A NaN value stays NaN (as in `cdf`), not a density of 0.
        Ok(density.log().mask_where(x.clone().is_nan(), x))
    }

    fn mean(&self) -> Tensor<D> {
        let mut mean = Tensor::<D>::zeros(self.batch, self.device());
        for (t0, t1, k0, k1) in self.segments::<D>() {
            mean = mean.add(k0.add(k1).mul_scalar((t1 - t0) / 2.0));
        }
        mean
    }

    /// Centred on the middle knot `c`: `Σ Δτ ((a−c)² + (a−c)(b−c) + (b−c)²)/3 − (mean − c)²`, so
    /// that a forecast far from 0 (10⁴ ± 1) keeps its digits in f32.
    fn variance(&self) -> Tensor<D> {
        let c = lift::<D, D>(self.knots[self.knots.len() / 2].clone());
        let mut second = Tensor::<D>::zeros(self.batch, self.device());
        for (t0, t1, k0, k1) in self.segments::<D>() {
            let (a, b) = (k0.sub(c.clone()), k1.sub(c.clone()));
            let m = a.clone().square().add(a.mul(b.clone())).add(b.square());
            second = second.add(m.mul_scalar((t1 - t0) / 3.0));
        }
        let shift = self.mean().sub(c);
        second.sub(shift.square()).clamp_min(0.0)
    }
}

impl<B: Backend, const D: usize, const DQ: usize> Cdf<D> for QuantileKnots<B, D, DQ> {
    /// `Σ Δτⱼ · clamp((x − qⱼ)/(qⱼ₊₁ − qⱼ), 0, 1)` over the segments (a step for a segment of
    /// zero width): the exact inverse of the quantile function.
    fn cdf<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, value.dims(), &self.batch)?;
        let x = value.broadcast_to(shape);
        let mut p = Tensor::<S>::zeros(shape, &x.device());
        for (t0, t1, k0, k1) in self.segments::<S>() {
            let (k0, k1) = (k0.broadcast_to(shape), k1.broadcast_to(shape));
            let width = k1.sub(k0.clone());
            let step = x.clone().greater_equal(k0.clone()).float();
            let frac = x.clone().sub(k0).div(width.clone()).clamp(0.0, 1.0);
            let frac = frac.mask_where(width.lower_equal_elem(0.0), step);
            p = p.add(frac.mul_scalar(t1 - t0));
        }
        // The Δτ sum to 1 up to rounding; a NaN value stays NaN (the clamps would not keep it).
        Ok(p.clamp(0.0, 1.0).mask_where(x.clone().is_nan(), x))
    }

    /// Linear interpolation between the knots, linear tails to `τ = 0` and `1`; NaN for `p`
    /// outside `[0, 1]`.
    fn quantile<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, p.dims(), &self.batch)?;
        let p = p.broadcast_to(shape);
        let mut q = Tensor::<S>::full(shape, f32::NAN, &p.device());
        for (t0, t1, k0, k1) in self.segments::<S>() {
            let (k0, k1) = (k0.broadcast_to(shape), k1.broadcast_to(shape));
            let slope = k1.sub(k0.clone()).div_scalar(t1 - t0);
            let line = k0.add(p.clone().sub_scalar(t0).mul(slope));
            // Segments in increasing order: a later one takes over from its start.
            q = q.mask_where(p.clone().greater_equal_elem(t0), line);
        }
        Ok(q.mask_fill(p.greater_elem(1.0), f32::NAN))
    }
}

/// `Ok` if the levels are at least two, strictly increasing and inside `(0, 1)`.
fn check_levels(levels: &[f64]) -> Result<()> {
    let increasing = levels.windows(2).all(|w| w[0] < w[1]);
    let inside = levels.iter().all(|&l| l > 0.0 && l < 1.0);
    if levels.len() >= 2 && increasing && inside {
        return Ok(());
    }
    Err(Error::input(
        "QuantileKnots::new",
        InputKind::OutOfRange,
        format!("the levels {levels:?} must be at least two, strictly increasing, in (0, 1)"),
    ))
}

/// The knots `given` at `levels` with the tails' ends added: the first and last segments
/// continued to `τ = 0` and `τ = 1`.
fn with_tails<const D: usize>(levels: &[f64], given: Vec<Tensor<D>>) -> Vec<Tensor<D>> {
    let q = levels.len();
    let (t1, t2) = (levels[0], levels[1]);
    let (tq, tp) = (levels[q - 1], levels[q - 2]);
    let low = given[0].clone().sub(
        given[1]
            .clone()
            .sub(given[0].clone())
            .mul_scalar(t1 / (t2 - t1)),
    );
    let high = given[q - 1].clone().add(
        given[q - 1]
            .clone()
            .sub(given[q - 2].clone())
            .mul_scalar((1.0 - tq) / (tq - tp)),
    );
    std::iter::once(low)
        .chain(given)
        .chain(std::iter::once(high))
        .collect()
}
