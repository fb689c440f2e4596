//! `Gamma(concentration, rate)` and `Chi2(df)`.

use burn::tensor::{Device, Tensor};

use super::shape::{BroadcastTo, batch_shape, full_shape, lift, value_shape};
use super::{Cdf, Distribution, Entropy};
use crate::backend::Backend;
use crate::error::Result;
use crate::special::{digamma, gamma_quantile, gammainc, lgamma, quantile_ends, xlogy};

const NAME: &str = "Gamma";

/// The gamma distribution `Gamma(concentration, rate)`.
///
/// - Parameters: `concentration` α `> 0` (shape) and `rate` β `> 0` (inverse scale: the mean is
///   α/β; rand_distr and numpy take a *scale* 1/β instead).
/// - Density: `p(x) = β^α x^(α-1) e^(-βx) / Γ(α)` for `x > 0`.
/// - Sampling: `standard_gamma(α) / β`, clamped below at `f32::MIN_POSITIVE` as torch clamps to
///   `finfo.tiny`, through the backend: Marsaglia & Tsang (2000) with the
///   `α < 1` boost `Gamma(α + 1) · U^(1/α)`, a Philox kernel on [`Wgpu`](crate::Wgpu) and
///   rand_distr's sampler on [`NdArray`](crate::NdArray); a
///   [`FallbackBackend`](crate::FallbackBackend) routes it like any op and reports where it ran.
/// - Moments: mean α/β, variance α/β²; entropy `α - ln β + lnΓ(α) + (1 - α)ψ(α)`.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
/// use toto_fallback::distr::{Distribution, Gamma};
///
/// let cpu = NdArray::seeded(0);
/// let gamma = Gamma::new(
///     &cpu,
///     Tensor::<1>::from_floats([2.5], cpu.device()),
///     Tensor::<1>::from_floats([0.5], cpu.device()),
/// )?;
/// let mean = gamma.mean().into_data().try_to_vec::<f32>().unwrap();
/// assert_eq!(mean, [5.0]);
/// let x: Tensor<2> = gamma.sample(&[10_000])?;
/// let m: f32 = x.mean().into_scalar();
/// assert!((m - 5.0).abs() < 0.15, "sample mean {m}");
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gamma<B: Backend, const D: usize> {
    backend: B,
    concentration: Tensor<D>,
    rate: Tensor<D>,
    batch: [usize; D],
}

impl<B: Backend, const D: usize> Gamma<B, D> {
    /// `Gamma(concentration, rate)` on `backend`.
    ///
    /// # Errors
    /// [`Error::ParamShape`](crate::Error::ParamShape),
    /// [`Error::DeviceMismatch`](crate::Error::DeviceMismatch). Values are not read (see
    /// [`Gamma::validate`]).
    pub fn new(backend: &B, concentration: Tensor<D>, rate: Tensor<D>) -> Result<Self> {
        let batch = batch_shape(
            NAME,
            backend.device(),
            &[("concentration", &concentration), ("rate", &rate)],
        )?;
        Ok(Gamma {
            backend: backend.clone(),
            concentration: concentration.broadcast_to(batch),
            rate: rate.broadcast_to(batch),
            batch,
        })
    }

    /// The concentration (shape) α.
    pub fn concentration(&self) -> &Tensor<D> {
        &self.concentration
    }

    /// The rate β.
    pub fn rate(&self) -> &Tensor<D> {
        &self.rate
    }

    /// Checks α and β are positive and finite. Reads the parameters back (a device sync).
    ///
    /// # Errors
    /// [`Error::ParamValue`](crate::Error::ParamValue) naming the first bad element.
    pub fn validate(&self) -> Result<()> {
        super::validate::positive(NAME, "concentration", &self.concentration)?;
        super::validate::positive(NAME, "rate", &self.rate)
    }
}

impl<B: Backend, const D: usize> Distribution<D> for Gamma<B, D> {
    fn batch_shape(&self) -> [usize; D] {
        self.batch
    }

    fn device(&self) -> &Device {
        self.backend.device()
    }

    fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S>> {
        let shape = full_shape::<S>(NAME, sample_shape, &self.batch)?;
        let alpha = lift::<D, S>(self.concentration.clone()).broadcast_to(shape);
        let g = self.backend.standard_gamma(alpha)?;
        // As torch's `Gamma.rsample` clamps to `finfo.tiny`: a draw below the smallest normal
        // f32 (α ≪ 1, or β > 1 on a draw the sampler clamped) is that number rather than a
        // subnormal, which a device that flushes subnormals (SPIR-V on NVIDIA) would make 0.
        Ok(g.div(lift::<D, S>(self.rate.clone()))
            .clamp_min(f32::MIN_POSITIVE))
    }

    /// `α ln β + (α - 1) ln x - βx - lnΓ(α)`, `-inf` for `x < 0`.
    fn log_prob<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, value.dims(), &self.batch)?;
        let x = value.broadcast_to(shape);
        let alpha = lift::<D, S>(self.concentration.clone()).broadcast_to(shape);
        let rate = lift::<D, S>(self.rate.clone()).broadcast_to(shape);
        let negative = x.clone().lower_elem(0.0);
        let lp = xlogy(alpha.clone(), rate.clone())
            .add(xlogy(alpha.clone().sub_scalar(1.0), x.clone()))
            .sub(rate.mul(x))
            .sub(lgamma(alpha));
        Ok(lp.mask_fill(negative, f32::NEG_INFINITY))
    }

    fn mean(&self) -> Tensor<D> {
        self.concentration.clone().div(self.rate.clone())
    }

    fn variance(&self) -> Tensor<D> {
        self.concentration.clone().div(self.rate.clone().square())
    }
}

impl<B: Backend, const D: usize> Cdf<D> for Gamma<B, D> {
    /// `P(α, βx)`, the regularised lower incomplete gamma function
    /// ([`special::gammainc`](crate::special::gammainc)); absolute error below 2e-6 for α in
    /// [0.01, 100] (tested against statrs).
    fn cdf<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, value.dims(), &self.batch)?;
        let alpha = lift::<D, S>(self.concentration.clone()).broadcast_to(shape);
        let x = value
            .mul(lift::<D, S>(self.rate.clone()))
            .broadcast_to(shape);
        Ok(gammainc(alpha, x))
    }

    /// The `x` with `P(α, βx) = p`: bisection in `ln(βx)` with a fixed budget of 48 steps on
    /// the device, on the smaller tail (`ln P < ln p` for `p <= ½`, `Q > 1 − p` above, with
    /// [`special::gammaincc`](crate::special::gammaincc)); `0` at `p = 0`, `+inf` at `p = 1`,
    /// NaN outside `[0, 1]`. Relative error below 1e-5 for `p` in `[1e-6, 1 − 1e-6]` and α in
    /// `[0.01, 100]` wherever the quantile is a normal f32 (tested against mpmath on every
    /// backend). Below that range (small α and p: `Gamma(0.01)` at `p = 0.3` is 2.9e-53) the
    /// result is `max(f32::MIN_POSITIVE / β, f32::MIN_POSITIVE)`, where the sampler clamps such
    /// draws.
    fn quantile<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, p.dims(), &self.batch)?;
        let p = p.broadcast_to(shape);
        let alpha = lift::<D, S>(self.concentration.clone()).broadcast_to(shape);
        let x = gamma_quantile(alpha, p.clone())?
            .div(lift::<D, S>(self.rate.clone()))
            .clamp_min(f32::MIN_POSITIVE);
        Ok(quantile_ends(x, p, 0.0))
    }
}

impl<B: Backend, const D: usize> Entropy<D> for Gamma<B, D> {
    fn entropy(&self) -> Tensor<D> {
        let a = self.concentration.clone();
        a.clone()
            .sub(self.rate.clone().log())
            .add(lgamma(a.clone()))
            .add(a.clone().neg().add_scalar(1.0).mul(digamma(a)))
    }
}

/// The chi-squared distribution `Chi2(df)`: `Gamma(df / 2, rate ½)`.
///
/// - Parameter: `df` `> 0` (degrees of freedom).
/// - Density: `p(x) = x^(df/2 - 1) e^(-x/2) / (2^(df/2) Γ(df/2))` for `x > 0`.
/// - Sampling: `2 · standard_gamma(df / 2)` through the backend. Mean `df`, variance `2 df`.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
/// use toto_fallback::distr::{Chi2, Distribution};
///
/// let cpu = NdArray::seeded(0);
/// let chi2 = Chi2::new(&cpu, Tensor::<1>::from_floats([3.0], cpu.device()))?;
/// assert_eq!(chi2.variance().into_data().try_to_vec::<f32>().unwrap(), [6.0]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Chi2<B: Backend, const D: usize> {
    df: Tensor<D>,
    gamma: Gamma<B, D>,
}

impl<B: Backend, const D: usize> Chi2<B, D> {
    /// `Chi2(df)` on `backend`.
    ///
    /// # Errors
    /// [`Error::DeviceMismatch`](crate::Error::DeviceMismatch).
    pub fn new(backend: &B, df: Tensor<D>) -> Result<Self> {
        let batch = batch_shape("Chi2", backend.device(), &[("df", &df)])?;
        let rate = Tensor::<D>::full(batch, 0.5, backend.device());
        let gamma = Gamma::new(backend, df.clone().mul_scalar(0.5), rate)?;
        Ok(Chi2 { df, gamma })
    }

    /// The degrees of freedom.
    pub fn df(&self) -> &Tensor<D> {
        &self.df
    }

    /// Checks `df` is positive and finite. Reads it back (a device sync).
    ///
    /// # Errors
    /// [`Error::ParamValue`](crate::Error::ParamValue).
    pub fn validate(&self) -> Result<()> {
        super::validate::positive("Chi2", "df", &self.df)
    }
}

impl<B: Backend, const D: usize> Distribution<D> for Chi2<B, D> {
    fn batch_shape(&self) -> [usize; D] {
        self.gamma.batch_shape()
    }
    fn device(&self) -> &Device {
        self.gamma.device()
    }
    fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S>> {
        self.gamma.sample(sample_shape)
    }
    fn log_prob<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        self.gamma.log_prob(value)
    }
    fn mean(&self) -> Tensor<D> {
        self.gamma.mean()
    }
    fn variance(&self) -> Tensor<D> {
        self.gamma.variance()
    }
}

impl<B: Backend, const D: usize> Entropy<D> for Chi2<B, D> {
    fn entropy(&self) -> Tensor<D> {
        self.gamma.entropy()
    }
}

impl<B: Backend, const D: usize> Cdf<D> for Chi2<B, D> {
    fn cdf<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        self.gamma.cdf(value)
    }
    fn quantile<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>> {
        self.gamma.quantile(p)
    }
}
