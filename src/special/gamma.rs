//! `lgamma` and `digamma` in f32 from elementwise tensor ops.
//!
//! Both shift small arguments up with the recurrence `Γ(x+1) = xΓ(x)` until the asymptotic
//! (Stirling / de Moivre) series is accurate to f32 resolution, and reflect non-positive arguments
//! with Euler's reflection formula. Every branch is computed for every element and selected with
//! masks: GPUs have no per-element control flow in a composed op, and the shift is only a few
//! multiplies.

use std::f32::consts::PI;

use burn::tensor::{Bool, Tensor};

use super::normal::poly;

/// `0.5 * ln(2π)`.
const HALF_LN_2PI: f32 = 0.918_938_5;

/// Natural log of π.
const LN_PI: f32 = 1.144_729_9;

/// `ln |Γ(x)|`, elementwise; `+inf` at `x = 0, -1, -2, ...` and at `±inf`, NaN for NaN.
///
/// For `x >= 4`: Stirling's series
/// `(x - ½) ln x - x + ½ ln 2π + 1/(12x) - 1/(360x³) + 1/(1260x⁵) - 1/(1680x⁷) + 1/(1188x⁹)`,
/// whose truncation error is below 5e-10 there. For `0 < x < 4`:
/// `lnΓ(x) = lnΓ(x + 4) - ln(x(x+1)(x+2)(x+3))`. For `x <= 0`: `lnΓ(x) = ln π - ln|sin πx| -
/// lnΓ(1 - x)`, with `sin πx` evaluated on `x - round(x)` so large arguments keep their accuracy.
///
/// Accuracy in f32 (against statrs' f64 `ln_gamma`, tested): absolute error below `4e-6` on
/// `(0, 10]`, relative error below `1e-6` above.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // lnΓ(1/2) = ln √π (Abramowitz & Stegun 6.1.8); lnΓ(10) = ln 9! = ln 362880.
/// let x = Tensor::<1>::from_floats([0.5, 10.0], &dev);
/// let got = toto_fallback::special::lgamma(x).into_data().try_to_vec::<f32>().unwrap();
/// assert!((got[0] - std::f32::consts::PI.sqrt().ln()).abs() < 1e-6);
/// assert!((got[1] - 362_880f32.ln()).abs() < 1e-5);
/// ```
pub fn lgamma<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let reflect = x.clone().greater_elem(0.0).bool_not();
    // For x <= 0 evaluate at 1 - x >= 1, then reflect.
    let y = x
        .clone()
        .mask_where(reflect.clone(), x.clone().neg().add_scalar(1.0));
    let lg = lgamma_positive(y);
    let frac = x.clone().sub(x.clone().round()); // in [-0.5, 0.5], so sin(π frac) is exact-ish
    let reflected = frac
        .mul_scalar(PI)
        .sin()
        .abs()
        .log()
        .neg()
        .add_scalar(LN_PI)
        .sub(lg.clone());
    lg.mask_where(reflect, reflected)
        .mask_fill(x.is_inf(), f32::INFINITY)
}

/// Euler's constant γ.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `lnΓ(1 + a)` for `a > −½`, with an absolute error of a few f32 ulps of the result itself
/// where it is small: `lgamma(1 + a)` would round `1 + a` and subtract near-equal logarithms,
/// an absolute error near 4e-7 that the incomplete gamma function and the Student-T tail divide
/// by `a`.
///
/// Taylor series about 1 for `a < ½`: `−γa + Σ_{k≥2} (−1)^k ζ(k)/k · aᵏ`, 28 terms (truncation
/// below 3e-10 at `|a| = ½`); about 2 for `½ <= a < 3/2`, in `ε = a − 1` (exact in f32):
/// `(1 − γ)ε + Σ_{k≥2} (−1)^k (ζ(k) − 1)/k · εᵏ`, 16 terms (below 1e-10); [`lgamma`] above
/// (Abramowitz & Stegun 6.1.33).
pub(crate) fn ln_gamma1p<const D: usize>(a: Tensor<D>) -> Tensor<D> {
    let zeta = |k: i32, minus_one: bool| {
        let z = zeta_minus_one(k) + if minus_one { 0.0 } else { 1.0 };
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        (sign * z / f64::from(k)) as f32
    };
    let about_one: Vec<f32> = [0.0, -EULER_GAMMA as f32]
        .into_iter()
        .chain((2..=28).map(|k| zeta(k, false)))
        .collect();
    let about_two: Vec<f32> = [0.0, (1.0 - EULER_GAMMA) as f32]
        .into_iter()
        .chain((2..=17).map(|k| zeta(k, true)))
        .collect();
    let near_one = poly(a.clone().clamp(-0.5, 0.5), &about_one);
    let near_two = poly(a.clone().sub_scalar(1.0).clamp(-0.5, 0.5), &about_two);
    let large = lgamma(a.clone().add_scalar(1.0));
    near_one
        .mask_where(a.clone().greater_equal_elem(0.5), near_two)
        .mask_where(a.greater_equal_elem(1.5), large)
}

/// `ζ(k) − 1 = Σ_{n≥2} n^(−k)` in f64 for `k >= 2`: the first 99 terms and the Euler–Maclaurin
/// tail `Σ_{n≥N} n^(−k) ≈ N^(1−k)/(k−1) + N^(−k)/2 + k N^(−k−1)/12` at `N = 100` (error below
/// 1e-11).
fn zeta_minus_one(k: i32) -> f64 {
    let n = 100.0f64;
    let head: f64 = (2..100).map(|i| f64::from(i).powi(-k)).sum();
    let kf = f64::from(k);
    head + n.powf(1.0 - kf) / (kf - 1.0) + n.powf(-kf) / 2.0 + kf * n.powf(-kf - 1.0) / 12.0
}

/// `lnΓ(y)` for `y > 0`.
fn lgamma_positive<const D: usize>(y: Tensor<D>) -> Tensor<D> {
    let small = y.clone().lower_elem(4.0);
    // ln(y (y+1)(y+2)(y+3)) as ln y + ln((y+1)(y+2)(y+3)): the split keeps tiny y out of
    // the subnormal range, and the product of the last three cannot overflow below y = 4.
    let ln_shift = y.clone().log().add(
        y.clone()
            .add_scalar(1.0)
            .mul(y.clone().add_scalar(2.0))
            .mul(y.clone().add_scalar(3.0))
            .log(),
    );
    let ln_shift = ln_shift.mask_fill(small.clone().bool_not(), 0.0);
    let z = y.add(shift(&small, 4.0));
    stirling(z).sub(ln_shift)
}

/// `lnΓ(z)` for `z >= 4` by Stirling's series.
fn stirling<const D: usize>(z: Tensor<D>) -> Tensor<D> {
    let w = z.clone().recip();
    let w2 = w.clone().square();
    let series = w.mul(poly(
        w2,
        &[
            1.0 / 12.0,
            -1.0 / 360.0,
            1.0 / 1260.0,
            -1.0 / 1680.0,
            1.0 / 1188.0,
        ],
    ));
    // (z - ½) ln z - z written as (z - ½)(ln z - 1) - ½, which stays +inf at z = +inf
    // instead of inf - inf.
    z.clone()
        .sub_scalar(0.5)
        .mul(z.log().sub_scalar(1.0))
        .add_scalar(HALF_LN_2PI - 0.5)
        .add(series)
}

/// Digamma `ψ(x)`, elementwise; `-inf` at `x = 0` (as torch), NaN at negative integers and NaN,
/// `+inf` at `+inf`.
///
/// For `x >= 6`: `ψ(x) = ln x - 1/(2x) - 1/(12x²) + 1/(120x⁴) - 1/(252x⁶) + 1/(240x⁸) -
/// 1/(132x¹⁰)` (truncation error below 2e-10 there). For `0 < x < 6`:
/// `ψ(x) = ψ(x + 6) - Σ_{i<6} 1/(x + i)`. For `x <= 0`: `ψ(x) = ψ(1 - x) - π cot(πx)`.
///
/// Accuracy in f32 (against statrs' f64 `digamma`, tested): absolute error below `2e-6` on
/// `(0, 10]` away from the poles, relative error below `1e-6` above.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // ψ(1) = −γ, the Euler–Mascheroni constant (A&S 6.3.2).
/// let x = Tensor::<1>::from_floats([1.0], &dev);
/// let got: f32 = toto_fallback::special::digamma(x).into_scalar();
/// assert!((got + 0.577_215_66).abs() < 1e-6);
/// ```
pub fn digamma<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let reflect = x.clone().greater_elem(0.0).bool_not();
    let y = x
        .clone()
        .mask_where(reflect.clone(), x.clone().neg().add_scalar(1.0));
    let psi = digamma_positive(y);
    let frac = x.clone().sub(x.clone().round()); // cot(πx) has period 1
    let angle = frac.clone().mul_scalar(PI);
    let cot = angle.clone().cos().div(angle.sin());
    let reflected = psi.clone().sub(cot.mul_scalar(PI));
    let pole = frac.equal_elem(0.0).bool_and(reflect.clone());
    psi.mask_where(reflect, reflected)
        .mask_fill(pole, f32::NAN)
        .mask_fill(x.equal_elem(0.0), f32::NEG_INFINITY)
}

/// `ψ(y)` for `y > 0`.
fn digamma_positive<const D: usize>(y: Tensor<D>) -> Tensor<D> {
    let small = y.clone().lower_elem(6.0);
    let mut harmonic = y.clone().recip();
    for i in 1..6 {
        harmonic = harmonic.add(y.clone().add_scalar(i as f32).recip());
    }
    let harmonic = harmonic.mask_fill(small.clone().bool_not(), 0.0);
    let z = y.add(shift(&small, 6.0));
    let w = z.clone().recip();
    let w2 = w.clone().square();
    let series = w2.clone().mul(poly(
        w2,
        &[
            1.0 / 12.0,
            -1.0 / 120.0,
            1.0 / 252.0,
            -1.0 / 240.0,
            1.0 / 132.0,
        ],
    ));
    z.log().sub(w.mul_scalar(0.5)).sub(series).sub(harmonic)
}

/// `by` where `mask` holds, `0` elsewhere.
fn shift<const D: usize>(mask: &Tensor<D, Bool>, by: f32) -> Tensor<D> {
    mask.clone().float().mul_scalar(by)
}

/// `R(x) = lnΓ(x + ½) − lnΓ(x) − ½ ln x`, the normalising constant of the Student-T density
/// with `x = ν/2`, without the cancellation of two large `lgamma`s.
///
/// For `x >= 8` the asymptotic series `−1/(8x) + 1/(192x³) + 1/(640x⁵) − 17/(14336x⁷)`
/// (truncation error below 2e-8 there); below, the `lgamma` difference, whose terms are still
/// small enough for an absolute error near 1e-6. torch's f32 `StudentT.log_prob` subtracts two
/// `lgamma`s at every `ν` and is off by 1e-2 at `ν = 3·10⁴`.
pub(crate) fn lgamma_half_ratio<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let large = x.clone().greater_equal_elem(8.0);
    // Evaluate the direct form on min(x, 8) so large x costs no overflow or NaN.
    let xs = x.clone().clamp_max(8.0);
    let direct = lgamma(xs.clone().add_scalar(0.5))
        .sub(lgamma(xs.clone()))
        .sub(xs.log().mul_scalar(0.5));
    let w = x.clamp_min(8.0).recip();
    let w2 = w.clone().square();
    let asymptotic = w.mul(poly(
        w2,
        &[-1.0 / 8.0, 1.0 / 192.0, 1.0 / 640.0, -17.0 / 14336.0],
    ));
    direct.mask_where(large, asymptotic)
}

/// `ψ(x + ½) − ψ(x)`, the derivative of [`lgamma_half_ratio`] plus `1/(2x)`, for the Student-T
/// entropy; for `x >= 8` the series `1/(2x) + 1/(8x²) − 1/(64x⁴) − 1/(128x⁶) + 17/(2048x⁸)`.
pub(crate) fn digamma_half_diff<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let large = x.clone().greater_equal_elem(8.0);
    let xs = x.clone().clamp_max(8.0);
    let direct = digamma(xs.clone().add_scalar(0.5)).sub(digamma(xs));
    let w = x.clamp_min(8.0).recip();
    let asymptotic = w.clone().mul(poly(
        w,
        &[
            0.5,
            1.0 / 8.0,
            0.0,
            -1.0 / 64.0,
            0.0,
            -1.0 / 128.0,
            0.0,
            17.0 / 2048.0,
        ],
    ));
    direct.mask_where(large, asymptotic)
}
