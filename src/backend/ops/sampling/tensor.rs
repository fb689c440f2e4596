//! The samplers' tensor-level entry points, which [`Wgpu`](crate::Wgpu) calls. Callers check
//! devices, shapes and element counts (below 2^32) first; inputs are converted to `f32` if they
//! are not.

use burn::backend::Dispatch;
use burn::tensor::Tensor;

use super::launch::SamplerOps;
use crate::backend::ops::launch::f32_dispatch;
use crate::rng::DrawKey;

/// `n` uniforms in `[0, 1)` on `anchor`'s device.
pub(crate) fn uniform(anchor: Tensor<1>, n: usize, key: DrawKey) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::philox_uniform(
        f32_dispatch(anchor),
        n,
        key.into(),
    ))
}

/// `n` standard normals on `anchor`'s device.
pub(crate) fn normal(anchor: Tensor<1>, n: usize, key: DrawKey) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::philox_normal(f32_dispatch(anchor), n, key.into()))
}

/// One standard Student-T draw per element of `df`.
pub(crate) fn student_t<const D: usize>(df: Tensor<D>, key: DrawKey) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::philox_student_t(f32_dispatch(df), key.into()))
}

/// One `Gamma(alpha, 1)` draw per element of `alpha`.
pub(crate) fn gamma<const D: usize>(alpha: Tensor<D>, key: DrawKey) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::philox_gamma(f32_dispatch(alpha), key.into()))
}
