//! The samplers composed from burn tensor ops: the provided bodies of the [`Backend`] trait for
//! backends without a kernel of their own.

use burn::tensor::Tensor;

use crate::backend::Backend;
use crate::error::Result;

/// Bailey's polar Student-T without rejection, from two of `backend`'s uniforms per draw:
/// `T = cos(2π U₂) · sqrt(ν · expm1(−(2/ν) ln U₁))` with `U₁ ∈ (0, 1]`, a handful of
/// element-wise ops that burn's fusion compiles into one kernel on wgpu.
/// [`special::expm1`](crate::special::expm1) keeps it accurate for large `ν`, where it tends to
/// the normal. Arguments are checked by the caller.
pub(crate) fn standard_t<B: Backend, const D: usize>(
    backend: &B,
    df: Tensor<D>,
) -> Result<Tensor<D>> {
    let shape = df.dims();
    let u1 = backend.uniform(shape)?;
    let u2 = backend.uniform(shape)?;
    // 1 − U ∈ (0, 1]: ln is finite and ≤ 0, so the expm1 argument is ≥ 0.
    let ln_u = u1.neg().add_scalar(1.0).log();
    let w = crate::special::expm1(ln_u.mul(df.clone().recip().mul_scalar(-2.0)));
    let radius = df.mul(w).sqrt();
    Ok(radius.mul(u2.mul_scalar(std::f64::consts::TAU).cos()))
}
