//! `Normal(loc, scale)`.

use std::f32::consts::PI;

use burn::tensor::{Device, Tensor};

use super::mixture::MixtureComponent;
use super::shape::{BroadcastTo, batch_shape, full_shape, lift, value_shape};
use super::{Cdf, Distribution, Entropy};
use crate::backend::Backend;
use crate::error::Result;
use crate::special::{ndtr, ndtri};

const NAME: &str = "Normal";

/// The normal distribution `Normal(loc, scale)`.
///
/// - Parameters: `loc` (any real), `scale` (standard deviation, `> 0`), broadcast to the batch
///   shape.
/// - Density: `p(x) = exp(-(x - loc)² / (2 scale²)) / (scale √(2π))`.
/// - Sampling: `loc + scale · z` with `z` from the backend's `standard_normal`.
/// - `cdf` through `erf`, absolute error below 1e-6; `quantile` by AS 241 (`PPND7`), relative
///   error near 1e-7 (tested against statrs).
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
/// use toto_fallback::distr::{Cdf, Distribution, Normal};
///
/// let cpu = NdArray::seeded(0);
/// let loc = Tensor::<1>::from_floats([0.0, 10.0], cpu.device());
/// let scale = Tensor::<1>::from_floats([1.0, 2.0], cpu.device());
/// let normal = Normal::new(&cpu, loc, scale)?;
/// let x: Tensor<2> = normal.sample(&[1000])?; // [1000, 2]
/// assert_eq!(x.dims(), [1000, 2]);
/// let median = normal.quantile(Tensor::<1>::full([2], 0.5, cpu.device()))?;
/// let m = median.into_data().try_to_vec::<f32>().unwrap();
/// assert!((m[1] - 10.0).abs() < 1e-5);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Normal<B: Backend, const D: usize> {
    backend: B,
    loc: Tensor<D>,
    scale: Tensor<D>,
    batch: [usize; D],
}

impl<B: Backend, const D: usize> Normal<B, D> {
    /// `Normal(loc, scale)` on `backend`.
    ///
    /// # Errors
    /// [`Error::ParamShape`](crate::Error::ParamShape) if the shapes do not broadcast,
    /// [`Error::DeviceMismatch`](crate::Error::DeviceMismatch) if a parameter is on another device.
    /// Values are not read (see [`Normal::validate`]).
    pub fn new(backend: &B, loc: Tensor<D>, scale: Tensor<D>) -> Result<Self> {
        let batch = batch_shape(NAME, backend.device(), &[("loc", &loc), ("scale", &scale)])?;
        Ok(Normal {
            backend: backend.clone(),
            loc: loc.broadcast_to(batch),
            scale: scale.broadcast_to(batch),
            batch,
        })
    }

    /// The mean parameter.
    pub fn loc(&self) -> &Tensor<D> {
        &self.loc
    }

    /// The standard-deviation parameter.
    pub fn scale(&self) -> &Tensor<D> {
        &self.scale
    }

    /// Checks `loc` is finite and `scale` positive and finite. Reads the parameters back to the
    /// host (a device sync on a GPU): call it where you can afford one, not per step.
    ///
    /// # Errors
    /// [`Error::ParamValue`](crate::Error::ParamValue) naming the first bad element.
    pub fn validate(&self) -> Result<()> {
        super::validate::finite(NAME, "loc", &self.loc)?;
        super::validate::positive(NAME, "scale", &self.scale)
    }

    fn standardize<const S: usize>(&self, value: Tensor<S>) -> Result<(Tensor<S>, Tensor<S>)> {
        let shape = value_shape(NAME, value.dims(), &self.batch)?;
        let scale = lift::<D, S>(self.scale.clone()).broadcast_to(shape);
        let z = value.sub(lift::<D, S>(self.loc.clone())).div(scale.clone());
        Ok((z, scale))
    }
}

impl<B: Backend, const D: usize> Distribution<D> for Normal<B, D> {
    fn batch_shape(&self) -> [usize; D] {
        self.batch
    }

    fn device(&self) -> &Device {
        self.backend.device()
    }

    fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S>> {
        let shape = full_shape::<S>(NAME, sample_shape, &self.batch)?;
        let z = self.backend.standard_normal(shape)?;
        Ok(z.mul(lift::<D, S>(self.scale.clone()))
            .add(lift::<D, S>(self.loc.clone())))
    }

    /// `-z²/2 - ln scale - ½ ln 2π` with `z = (x - loc) / scale`.
    fn log_prob<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let (z, scale) = self.standardize(value)?;
        Ok(z.square()
            .mul_scalar(-0.5)
            .sub(scale.log())
            .sub_scalar(0.5 * (2.0 * PI).ln()))
    }

    fn mean(&self) -> Tensor<D> {
        self.loc.clone()
    }

    fn variance(&self) -> Tensor<D> {
        self.scale.clone().square()
    }

    fn stddev(&self) -> Tensor<D> {
        self.scale.clone()
    }
}

impl<B: Backend, const D: usize> Cdf<D> for Normal<B, D> {
    fn cdf<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        Ok(ndtr(self.standardize(value)?.0))
    }

    fn quantile<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, p.dims(), &self.batch)?;
        let z = ndtri(p.broadcast_to(shape));
        Ok(z.mul(lift::<D, S>(self.scale.clone()))
            .add(lift::<D, S>(self.loc.clone())))
    }
}

impl<B: Backend, const D: usize> Entropy<D> for Normal<B, D> {
    /// `½ + ½ ln 2π + ln scale`.
    fn entropy(&self) -> Tensor<D> {
        self.scale
            .clone()
            .log()
            .add_scalar(0.5 + 0.5 * (2.0 * PI).ln())
    }
}

impl<B: Backend, const D: usize> MixtureComponent<D> for Normal<B, D> {
    type Mapped<const E: usize> = Normal<B, E>;

    fn map_params<const E: usize>(&self, f: impl Fn(Tensor<D>) -> Tensor<E>) -> Normal<B, E> {
        let loc = f(self.loc.clone());
        let batch = loc.dims();
        Normal {
            backend: self.backend.clone(),
            loc,
            scale: f(self.scale.clone()),
            batch,
        }
    }

    fn family(&self) -> &'static str {
        NAME
    }
}
