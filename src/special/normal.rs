//! The standard normal CDF and its inverse in f32 from tensor ops.

use std::f32::consts::FRAC_1_SQRT_2;

use burn::tensor::Tensor;

/// The standard normal CDF `Φ(x) = ½(1 + erf(x/√2))`, elementwise.
///
/// Absolute error below `1e-6` (burn's `erf`; tested against statrs).
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // Φ(1.959964) = 0.975 (the two-sided 95% normal quantile).
/// let x = Tensor::<1>::from_floats([0.0, 1.959_964], &dev);
/// let got = toto_fallback::special::ndtr(x).into_data().try_to_vec::<f32>().unwrap();
/// assert!((got[0] - 0.5).abs() < 1e-7 && (got[1] - 0.975).abs() < 1e-6);
/// ```
pub fn ndtr<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.mul_scalar(FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5)
}

/// The inverse standard normal CDF `Φ⁻¹(p)`, elementwise: `-inf` at 0, `+inf` at 1, NaN outside
/// `[0, 1]`.
///
/// Algorithm AS 241 `PPND7` (Wichura 1988, *Applied Statistics* 37:477–484), the single-precision
/// variant, accurate to about 1 part in 10⁷. Tails use `min(p, 1 - p)`, which is exact in f32 for
/// `p >= 0.5` (Sterbenz), so quantiles near 1 keep their accuracy.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // Φ⁻¹(0.975) = 1.959964 and Φ⁻¹(1e-6) = −4.753424 (scipy.special.ndtri).
/// let p = Tensor::<1>::from_floats([0.975, 1e-6], &dev);
/// let got = toto_fallback::special::ndtri(p).into_data().try_to_vec::<f32>().unwrap();
/// assert!((got[0] - 1.959_964).abs() < 1e-5 && (got[1] + 4.753_424).abs() < 5e-5);
/// ```
pub fn ndtri<const D: usize>(p: Tensor<D>) -> Tensor<D> {
    let q = p.clone().sub_scalar(0.5);
    let central = {
        let r = q.clone().square().neg().add_scalar(0.180_625);
        q.clone()
            .mul(poly(
                r.clone(),
                &[3.387_132_7, 50.434_273, 159.291_13, 59.109_375],
            ))
            .div(poly(r, &[1.0, 17.895_17, 78.757_76, 67.187_56]))
    };
    // Tails: r = sqrt(-ln(min(p, 1 - p))).
    let tail_p = p.clone().neg().add_scalar(1.0).min_pair(p.clone());
    let r = tail_p.log().neg().sqrt();
    let near = {
        let r = r.clone().sub_scalar(1.6);
        poly(
            r.clone(),
            &[1.423_437_2, 2.756_815_4, 1.306_728_5, 0.170_238_21],
        )
        .div(poly(r, &[1.0, 0.737_001_6, 0.120_211_33]))
    };
    let far = {
        let r = r.clone().sub_scalar(5.0);
        poly(
            r.clone(),
            &[6.657_905, 3.081_226_4, 0.428_682_94, 0.017_337_204],
        )
        .div(poly(r.clone(), &[1.0, 0.241_978_94, 0.012_258_203]))
    };
    let tail = near.mask_where(r.greater_elem(5.0), far);
    let tail = tail
        .clone()
        .mask_where(q.clone().lower_elem(0.0), tail.neg());
    let out = central.mask_where(q.clone().abs().greater_elem(0.425), tail);
    // The rational functions give inf/inf = NaN at p = 0 and 1: set the infinities there.
    super::solve::quantile_ends(out, p, f32::NEG_INFINITY)
}

/// `c[0] + c[1] x + c[2] x² + ...` by Horner's rule.
pub(crate) fn poly<const D: usize>(x: Tensor<D>, c: &[f32]) -> Tensor<D> {
    match c {
        [] => x.zeros_like(),
        [c0] => x.zeros_like().add_scalar(*c0),
        [rest @ .., second, last] => {
            let acc = x.clone().mul_scalar(*last).add_scalar(*second);
            rest.iter()
                .rev()
                .fold(acc, |acc, &ci| acc.mul(x.clone()).add_scalar(ci))
        }
    }
}
