//! Distributions over burn tensors, on any [`Backend`](crate::Backend).
//!
//! Parameters broadcast like torch's: the *batch shape* is the broadcast of the parameters'
//! shapes; `sample(sample_shape)` returns `[sample.., batch..]`; `log_prob(value)` and `cdf(value)`
//! accept any value whose trailing dimensions broadcast with the batch shape. burn tensors carry
//! their rank in the type, so methods whose result rank depends on a shape take it as a const
//! parameter and check it: `let x: Tensor<3> = dist.sample(&[100])?` for a rank-2 batch.
//!
//! Random draws go through the backend's ops, so on a
//! [`FallbackBackend`](crate::FallbackBackend) the gamma draws behind [`StudentT`], [`Gamma`] and
//! [`Chi2`] run wherever the backend routes them, and show up in its report.

mod affine;
mod categorical;
mod gamma;
mod mixture;
mod normal;
mod shape;
mod student_t;
mod validate;

pub use self::affine::Affine;
pub use self::categorical::Categorical;
pub use self::gamma::{Chi2, Gamma};
pub use self::mixture::{MixtureComponent, MixtureSameFamily};
pub use self::normal::Normal;
pub use self::student_t::StudentT;

use burn::tensor::{Device, Tensor};

use crate::error::Result;

/// What every distribution here offers: shapes, sampling, log-density and moments.
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
pub trait Entropy<const D: usize>: Distribution<D> {
    /// The differential entropy in nats, element-wise over the batch.
    fn entropy(&self) -> Tensor<D>;
}
