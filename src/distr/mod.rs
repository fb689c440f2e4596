//! Distributions over burn tensors, on any [`Backend`](crate::Backend).
//!
//! Parameters broadcast like torch's: the *batch shape* is the broadcast of the parameters'
//! shapes; `sample(sample_shape)` returns `[sample.., batch..]`; `log_prob(value)` and `cdf(value)`
//! accept any value whose trailing dimensions broadcast with the batch shape. burn tensors carry
//! their rank in the type, so methods whose result rank depends on a shape take it as a const
//! parameter and check it: `let x: Tensor<3> = dist.sample(&[100])?` for a rank-2 batch.
//!
//! Random draws go through the backend's ops (`standard_normal`, `standard_gamma`,
//! `standard_t`, `categorical`, `student_t_mixture`), native on every backend of this crate; on
//! a [`FallbackBackend`](crate::FallbackBackend) they run wherever it routes them, and show up in
//! its report.
//!
//! | distribution | file |
//! |---|---|
//! | [`Normal`] | `normal.rs` |
//! | [`Gamma`], [`Chi2`] | `gamma.rs` |
//! | [`StudentT`] | `student_t.rs` |
//! | [`Categorical`] | `categorical.rs` |
//! | [`MixtureSameFamily`], [`MixtureComponent`] | `mixture.rs` |
//! | [`Affine`] | `affine.rs` |
//! | [`QuantileKnots`] | `quantile_knots.rs` |
//! | batch shapes, ranks and sizes; `validate()` checks | `shape.rs`, `validate.rs` |

mod affine;
mod categorical;
mod gamma;
mod mixture;
mod normal;
mod quantile_knots;
pub(crate) mod shape;
mod student_t;
mod validate;

pub use self::affine::Affine;
pub use self::categorical::Categorical;
pub use self::gamma::{Chi2, Gamma};
pub use self::mixture::{MixtureComponent, MixtureSameFamily};
pub use self::normal::Normal;
pub use self::quantile_knots::QuantileKnots;
pub use self::student_t::StudentT;

use burn::tensor::{Device, Tensor};

use crate::error::Result;

/// What every distribution here offers: shapes, sampling, log-density and moments.
///
/// Code written against the trait works for every family and every backend:
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::distr::{Distribution, Normal, StudentT};
/// use toto_fallback::{Backend, NdArray};
///
/// /// The Monte-Carlo mean of `n` draws next to the exact one.
/// fn mc_mean<T: Distribution<1>>(d: &T, n: usize) -> (f32, f32) {
///     let x: Tensor<2> = d.sample(&[n]).unwrap();
///     (x.mean().into_scalar(), d.mean().into_scalar())
/// }
///
/// let cpu = NdArray::seeded(3);
/// let dev = cpu.device();
/// let t = StudentT::new(
///     &cpu,
///     Tensor::<1>::from_floats([6.0], dev),
///     Tensor::<1>::from_floats([2.0], dev),
///     Tensor::<1>::from_floats([1.0], dev),
/// )?;
/// let n = Normal::new(&cpu, Tensor::<1>::from_floats([-1.0], dev), Tensor::<1>::ones([1], dev))?;
/// for (mc, exact) in [mc_mean(&t, 50_000), mc_mean(&n, 50_000)] {
///     // Standard errors: sqrt(1.5 / 50000) = 0.0055 and 0.0045; 5 of them.
///     assert!((mc - exact).abs() < 0.03, "{mc} vs {exact}");
/// }
/// # Ok::<(), toto_fallback::Error>(())
/// ```
pub trait Distribution<const D: usize>: Clone + std::fmt::Debug + Send + Sync {
    /// The batch shape: the broadcast of the parameters' shapes.
    fn batch_shape(&self) -> [usize; D];

    /// The device every parameter and result lives on.
    fn device(&self) -> &Device;

    /// Draws of shape `[sample_shape.., batch_shape..]`; `S` must be
    /// `sample_shape.len() + D`.
    ///
    /// # Errors
    /// [`Error::Rank`](crate::Error::Rank) if `S` does not match; the backend's errors
    /// ([`Error::Unsupported`](crate::Error::Unsupported) for an op it lacks).
    fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S>>;

    /// The log-density at `value`, whose trailing dimensions broadcast with the batch shape;
    /// the result has the broadcast shape. `-inf` outside the support.
    ///
    /// # Errors
    /// [`Error::ValueShape`](crate::Error::ValueShape) if `value` does not broadcast,
    /// [`Error::Rank`](crate::Error::Rank) if `S < D`.
    fn log_prob<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>>;

    /// The mean, element-wise over the batch; NaN or inf where it does not exist (documented per
    /// distribution).
    fn mean(&self) -> Tensor<D>;

    /// The variance, element-wise over the batch; NaN or inf where it does not exist.
    fn variance(&self) -> Tensor<D>;

    /// The standard deviation, `sqrt(variance)`.
    fn stddev(&self) -> Tensor<D> {
        self.variance().sqrt()
    }
}

/// Distributions with a cumulative distribution function and its inverse.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::distr::{Cdf, StudentT};
/// use toto_fallback::{Backend, NdArray};
///
/// let cpu = NdArray::seeded(0);
/// let dev = cpu.device();
/// let t = StudentT::new(
///     &cpu,
///     Tensor::<1>::from_floats([3.0], dev),
///     Tensor::<1>::zeros([1], dev),
///     Tensor::<1>::ones([1], dev),
/// )?;
/// // The 97.5% point of Student's t with 3 degrees of freedom is 3.182446 (scipy.stats.t.ppf).
/// let q: f32 = t.icdf(Tensor::<1>::from_floats([0.975], dev))?.into_scalar();
/// assert!((q - 3.182_446).abs() < 3e-5);
/// let p: f32 = t.cdf(Tensor::<1>::from_floats([q], dev))?.into_scalar();
/// assert!((p - 0.975).abs() < 2e-6);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
pub trait Cdf<const D: usize>: Distribution<D> {
    /// `P(X <= value)`, with `value` broadcast as in [`Distribution::log_prob`].
    ///
    /// # Errors
    /// As [`Distribution::log_prob`].
    fn cdf<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>>;

    /// The inverse of [`Cdf::cdf`]: the `x` with `P(X <= x) = p`, for `p` in `[0, 1]`
    /// broadcast as `value` in [`Distribution::log_prob`]; NaN for `p` outside `[0, 1]`.
    ///
    /// # Errors
    /// As [`Distribution::log_prob`].
    #[doc(alias = "icdf")]
    fn quantile<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>>;

    /// torch's name for [`Cdf::quantile`].
    fn icdf<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>> {
        self.quantile(p)
    }
}

/// Distributions with a closed-form entropy.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::distr::{Entropy, Normal};
/// use toto_fallback::{Backend, NdArray};
///
/// let cpu = NdArray::seeded(0);
/// let dev = cpu.device();
/// let n = Normal::new(&cpu, Tensor::<1>::zeros([1], dev), Tensor::<1>::ones([1], dev))?;
/// // ½ ln(2πe) = 1.4189385 nats for the standard normal.
/// let h: f32 = n.entropy().into_scalar();
/// assert!((h - 1.418_938_5).abs() < 1e-6);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
pub trait Entropy<const D: usize>: Distribution<D> {
    /// The differential entropy in nats, element-wise over the batch.
    fn entropy(&self) -> Tensor<D>;
}
