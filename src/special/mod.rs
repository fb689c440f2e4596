//! Special functions as compositions of burn tensor ops, so they run natively on every device
//! (WGSL, MSL and SPIR-V have no `lgamma`, `digamma` or `erfinv`) and stay differentiable.

mod beta;
mod gamma;
mod igamma;
mod normal;
mod solve;

pub use self::beta::{betainc, lbeta};
pub(crate) use self::beta::{student_t_cdf, student_t_quantile};
pub use self::gamma::{digamma, lgamma};
pub(crate) use self::gamma::{digamma_half_diff, lgamma_half_ratio};
pub(crate) use self::igamma::gamma_quantile;
pub use self::igamma::{gammainc, gammaincc};
pub use self::normal::{ndtr, ndtri};
pub(crate) use self::solve::{bisect, quantile_ends};

use crate::shape::BroadcastTo;
use burn::tensor::Tensor;

/// `ln(1 + x)`, accurate near 0 on every device.
///
/// burn's `log1p` on wgpu computes `ln(1 + x)` directly, which loses every digit of a tiny `x` to
/// the rounding of `1 + x` (a Student-T `log_prob` at `df = 3000` was off by 4e-5). Here, with
/// `s = x / (2 + x)`, `ln(1 + x) = 2 atanh(s)`, summed as `2s(1 + s²/3 + ... + s¹²/13)` while
/// `1 + x` is within `[1/√2, √2]` (|s| < 0.172, truncation below 1e-13 relative), and `ln(1 + x)`
/// outside, where the rounding of `1 + x` no longer matters. Relative error near 3e-7.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // ln(1 + 1e-6) = 1e-6 − 5e-13 + …: ln(1 + x) computed directly would give 9.537e-7.
/// let x = Tensor::<1>::from_floats([1e-6], &dev);
/// let got: f32 = toto_fallback::special::log1p(x).into_scalar();
/// assert!((got - 1e-6).abs() < 1e-12);
/// ```
pub fn log1p<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let s = x.clone().div(x.clone().add_scalar(2.0));
    let s2 = s.clone().square();
    let series = s.clone().mul(normal::poly(
        s2,
        &[
            2.0,
            2.0 / 3.0,
            2.0 / 5.0,
            2.0 / 7.0,
            2.0 / 9.0,
            2.0 / 11.0,
            2.0 / 13.0,
        ],
    ));
    let far = s.abs().greater_elem(0.172);
    series.mask_where(far, x.add_scalar(1.0).log())
}

/// `eˣ − 1`, accurate near 0 on every device.
///
/// `exp(x) − 1` loses the digits of a small `x` to the rounding of `eˣ` near 1. Here, for
/// `|x| < 1/2`, the Taylor series `x(1 + x/2! + … + x⁹/10!)` (truncation below 3e-10
/// relative), and `exp(x) − 1` outside, where `|eˣ − 1| > 0.39` keeps the rounding of `eˣ` to a
/// few ulps. Relative error near 3e-7. Used by the Student-T sampler, where
/// `expm1(−(2/ν) ln U)` is tiny for large `ν`.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // e^(1e-6) − 1 = 1e-6 + 5e-13 + …: exp(x) − 1 in f32 would give 9.537e-7.
/// let x = Tensor::<1>::from_floats([1e-6, 2.0], &dev);
/// let got: Vec<f32> = toto_fallback::special::expm1(x).into_data().iter().collect();
/// assert!((got[0] - 1e-6).abs() < 1e-12);
/// assert!((got[1] - 6.389_056).abs() < 1e-5); // e² − 1 (libm)
/// ```
pub fn expm1<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let series = x.clone().mul(normal::poly(
        x.clone(),
        &[
            1.0,
            1.0 / 2.0,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5040.0,
            1.0 / 40320.0,
            1.0 / 362_880.0,
            1.0 / 3_628_800.0,
        ],
    ));
    let far = x.clone().abs().greater_equal_elem(0.5);
    series.mask_where(far, x.exp().sub_scalar(1.0))
}

/// `x · ln y` with `0 · ln 0 = 0` (torch's `xlogy`), for densities at the support's edge.
pub(crate) fn xlogy<const D: usize>(x: Tensor<D>, y: Tensor<D>) -> Tensor<D> {
    let out = x.clone().mul(y.log());
    let zero = x.equal_elem(0.0).broadcast_to(out.dims());
    out.mask_fill(zero, 0.0)
}
