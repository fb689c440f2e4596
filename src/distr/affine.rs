//! `Affine(base, loc, scale)`: `loc + scale · X`.

use burn::tensor::{Device, Tensor};

use super::shape::{BroadcastTo, batch_shape, broadcast, lift, value_shape};
use super::{Cdf, Distribution, Entropy};
use crate::error::{Error, Result};

const NAME: &str = "Affine";

/// The distribution of `loc + scale · X` for `X` from a base distribution, as Toto applies its
/// causal scaler to the mixture (gluonts' `AffineTransformed`).
///
/// - Parameters: `loc`, `scale` (`> 0` for `cdf`/`quantile`; a negative scale flips them), each
///   broadcasting to the base's batch shape, which stays the batch shape.
/// - `log_prob(y) = base.log_prob((y − loc)/scale) − ln|scale|`; `cdf(y) = base.cdf((y − loc)/scale)`;
///   `quantile(p) = loc + scale · base.quantile(p)`; mean `loc + scale·μ`, variance `scale²σ²`,
///   entropy `H(base) + ln|scale|`.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
/// use toto_fallback::distr::{Affine, Distribution, Normal};
///
/// let cpu = NdArray::seeded(0);
/// let dev = cpu.device();
/// let base = Normal::new(&cpu, Tensor::<1>::zeros([2], dev), Tensor::<1>::ones([2], dev))?;
/// let y = Affine::new(base, Tensor::<1>::from_floats([100.0], dev), Tensor::<1>::from_floats([3.0], dev))?;
/// assert_eq!(y.mean().into_data().try_to_vec::<f32>().unwrap(), [100.0, 100.0]);
/// assert_eq!(y.variance().into_data().try_to_vec::<f32>().unwrap(), [9.0, 9.0]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Affine<X, const D: usize> {
    base: X,
    loc: Tensor<D>,
    scale: Tensor<D>,
}

impl<X: Distribution<D>, const D: usize> Affine<X, D> {
    /// `loc + scale · X`.
    ///
    /// # Errors
    /// [`Error::ParamShape`] if `loc` or `scale` do not broadcast to the base's batch shape,
    /// [`Error::DeviceMismatch`] if they are on another device.
    pub fn new(base: X, loc: Tensor<D>, scale: Tensor<D>) -> Result<Self> {
        let batch = base.batch_shape();
        let params = batch_shape(NAME, base.device(), &[("loc", &loc), ("scale", &scale)])?;
        if broadcast(&params, &batch).as_deref() != Some(&batch[..]) {
            return Err(Error::ParamShape {
                dist: NAME,
                param: "loc/scale",
                shape: params.to_vec(),
                batch: batch.to_vec(),
            });
        }
        Ok(Affine {
            loc: loc.broadcast_to(batch),
            scale: scale.broadcast_to(batch),
            base,
        })
    }

    /// The base distribution.
    pub fn base(&self) -> &X {
        &self.base
    }

    /// The shift.
    pub fn loc(&self) -> &Tensor<D> {
        &self.loc
    }

    /// The scale.
    pub fn scale(&self) -> &Tensor<D> {
        &self.scale
    }

    /// `(value − loc) / scale` and `scale`, both of the broadcast shape.
    fn inverse<const S: usize>(&self, value: Tensor<S>) -> Result<(Tensor<S>, Tensor<S>)> {
        let shape = value_shape(NAME, value.dims(), &self.base.batch_shape())?;
        let scale = lift::<D, S>(self.scale.clone()).broadcast_to(shape);
        let x = value.sub(lift::<D, S>(self.loc.clone())).div(scale.clone());
        Ok((x, scale))
    }

    fn forward<const S: usize>(&self, x: Tensor<S>) -> Tensor<S> {
        x.mul(lift::<D, S>(self.scale.clone()))
            .add(lift::<D, S>(self.loc.clone()))
    }
}

impl<X: Distribution<D>, const D: usize> Distribution<D> for Affine<X, D> {
    fn batch_shape(&self) -> [usize; D] {
        self.base.batch_shape()
    }

    fn device(&self) -> &Device {
        self.base.device()
    }

    fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S>> {
        Ok(self.forward(self.base.sample(sample_shape)?))
    }

    fn log_prob<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let (x, scale) = self.inverse(value)?;
        Ok(self.base.log_prob(x)?.sub(scale.abs().log()))
    }

    fn mean(&self) -> Tensor<D> {
        self.forward(self.base.mean())
    }

    fn variance(&self) -> Tensor<D> {
        self.base.variance().mul(self.scale.clone().square())
    }

    fn stddev(&self) -> Tensor<D> {
        self.base.stddev().mul(self.scale.clone().abs())
    }
}

impl<X: Cdf<D>, const D: usize> Cdf<D> for Affine<X, D> {
    fn cdf<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let (x, scale) = self.inverse(value)?;
        let f = self.base.cdf(x)?;
        // A negative scale mirrors the distribution.
        let flipped = scale.lower_elem(0.0);
        Ok(f.clone().mask_where(flipped, f.neg().add_scalar(1.0)))
    }

    fn quantile<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, p.dims(), &self.base.batch_shape())?;
        let p = p.broadcast_to(shape);
        let scale = lift::<D, S>(self.scale.clone()).broadcast_to(shape);
        let flipped = scale.lower_elem(0.0);
        let p = p.clone().mask_where(flipped, p.neg().add_scalar(1.0));
        Ok(self.forward(self.base.quantile(p)?))
    }
}

impl<X: Entropy<D>, const D: usize> Entropy<D> for Affine<X, D> {
    fn entropy(&self) -> Tensor<D> {
        self.base.entropy().add(self.scale.clone().abs().log())
    }
}
