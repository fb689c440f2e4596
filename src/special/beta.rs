//! The regularised incomplete beta function in f32 from tensor ops.

use burn::tensor::Tensor;

use super::gamma::{lgamma, ln_gamma1p};
use super::log1p;
use super::solve::{Lentz, bisect, quantile_ends};
use crate::error::Result;

/// Continued-fraction terms evaluated by [`betainc`]: enough for f32 when `max(a, b) <= 3`
/// (tested against statrs), and for the Student-T lower tail up to `a = ν/2 = 5` (the quantile
/// tests); larger parameters need more and are handled elsewhere (the Student-T CDF switches to
/// Hill's normalising expansion for `ν >= 5`, the quantile for `ν >= 10`).
const CF_TERMS: usize = 40;

/// `ln B(a, b) = lnΓ(a) + lnΓ(b) − lnΓ(a + b)`, elementwise, for `a, b > 0`.
///
/// Three [`lgamma`]s: the absolute error is a few ulps of the largest of them, about
/// `4e-6·max(1, lnΓ(a + b))` (tested against statrs). Where one argument is large and the other
/// ½ (the Student-T normaliser) the crate uses the cancellation-free series of
/// `lnΓ(x + ½) − lnΓ(x)` instead.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // B(2, 3) = 1!·2!/4! = 1/12.
/// let a = Tensor::<1>::from_floats([2.0], &dev);
/// let b = Tensor::<1>::from_floats([3.0], &dev);
/// let got: f32 = toto_fallback::special::lbeta(a, b).into_scalar();
/// assert!((got - (1.0f32 / 12.0).ln()).abs() < 1e-6);
/// ```
pub fn lbeta<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    lgamma(a.clone())
        .add(lgamma(b.clone()))
        .sub(lgamma(a.add(b)))
}

/// The regularised incomplete beta function `I_x(a, b)` for `x` in `[0, 1]`, given `x` and
/// `y = 1 − x` separately so that callers who know `1 − x` more accurately than by subtraction
/// keep that accuracy.
///
/// Lentz's continued fraction (Numerical Recipes §6.4) with a fixed budget of 40 terms, on the
/// side of the symmetry `I_x(a, b) = 1 − I_{1−x}(b, a)` where it converges fastest. Intended for
/// small parameters (`a, b <= 3`); it is exact at `x = 0` and `x = 1`.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
///
/// let dev = NdArray::seeded(0).device().clone();
/// // I_x(1, b) = 1 − (1 − x)^b: at x = 0.5, b = 3 that is 7/8.
/// let a = Tensor::<1>::from_floats([1.0], &dev);
/// let b = Tensor::<1>::from_floats([3.0], &dev);
/// let x = Tensor::<1>::from_floats([0.5], &dev);
/// let y = Tensor::<1>::from_floats([0.5], &dev); // 1 − x
/// let got: f32 = toto_fallback::special::betainc(a, b, x, y).into_scalar();
/// assert!((got - 0.875).abs() < 2e-6);
/// ```
pub fn betainc<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    x: Tensor<D>,
    y: Tensor<D>,
) -> Tensor<D> {
    // Swap where x is above the mean-ish point (a + 1) / (a + b + 2).
    let swap = x.clone().greater(
        a.clone()
            .add_scalar(1.0)
            .div(a.clone().add(b.clone()).add_scalar(2.0)),
    );
    let (a, b, x, y) = (
        a.clone().mask_where(swap.clone(), b.clone()),
        b.mask_where(swap.clone(), a),
        x.clone().mask_where(swap.clone(), y.clone()),
        y.mask_where(swap.clone(), x),
    );
    let ln_front = a
        .clone()
        .mul(x.clone().log())
        .add(b.clone().mul(y.log()))
        .sub(lbeta(a.clone(), b.clone()))
        .sub(a.clone().log());
    let i = ln_front.exp().mul(continued_fraction(a, b, x.clone()));
    // The fraction is 0/0 at x = 0; I_0 = 0 there.
    let i = i.mask_fill(x.equal_elem(0.0), 0.0);
    i.clone().mask_where(swap, i.neg().add_scalar(1.0))
}

/// The continued fraction of `I_x(a, b)` (without its prefactor), by the modified Lentz method.
fn continued_fraction<const D: usize>(a: Tensor<D>, b: Tensor<D>, x: Tensor<D>) -> Tensor<D> {
    let qab = a.clone().add(b.clone());
    let qap = a.clone().add_scalar(1.0);
    let qam = a.clone().sub_scalar(1.0);
    let one = x.ones_like();
    let first = qab
        .clone()
        .mul(x.clone())
        .div(qap.clone())
        .neg()
        .add_scalar(1.0);
    let mut cf = Lentz::new(one.clone(), first);
    for m in 1..=CF_TERMS {
        let m = m as f32;
        // Even step: m (b − m) x / ((a + 2m − 1)(a + 2m)).
        let even = b.clone().sub_scalar(m).mul(x.clone()).mul_scalar(m).div(
            qam.clone()
                .add_scalar(2.0 * m)
                .mul(a.clone().add_scalar(2.0 * m)),
        );
        cf.step(even, one.clone());
        // Odd step: −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        let odd = a
            .clone()
            .add_scalar(m)
            .mul(qab.clone().add_scalar(m))
            .mul(x.clone())
            .neg()
            .div(
                a.clone()
                    .add_scalar(2.0 * m)
                    .mul(qap.clone().add_scalar(2.0 * m)),
            );
        cf.step(odd, one.clone());
    }
    cf.value()
}

/// The Student-T CDF of the standardised value `t` with `ν` degrees of freedom.
///
/// For `ν >= 5`, Hill's normalising expansion (G. W. Hill, *Algorithm 395: Student's
/// t-distribution*, CACM 13:617, 1970): with `a = ν − ½`, `y = a·ln(1 + t²/ν)`,
/// `z = √y·(1 + (y + 3 + (−0.4y³ − 3.3y² − 24y − 85.5)/(0.8y² + 100 + 48a²))/(48a²))`, and
/// `F(t) = Φ(sign(t)·z)`; its error against statrs is below 2e-7 at `ν = 5` and 1e-9 from
/// `ν = 10` (checked in f64). For `ν < 5`, `F(t) = 1 − ½ I_{ν/(ν+t²)}(ν/2, ½)` for `t >= 0`
/// (mirrored below) by [`betainc`], with `1 − x = t²/(ν + t²)` computed without cancellation.
pub(crate) fn student_t_cdf<const D: usize>(t: Tensor<D>, df: Tensor<D>) -> Tensor<D> {
    let t2 = t.clone().square();
    let negative = t.clone().lower_elem(0.0);

    // Hill, on ν clamped to >= 5 so the unused branch stays finite.
    let n = df.clone().clamp_min(5.0);
    let a = n.clone().sub_scalar(0.5);
    let b = a.clone().square().mul_scalar(48.0);
    let yv = a.mul(log1p(t2.clone().div(n)));
    let num = super::normal::poly(yv.clone(), &[-85.5, -24.0, -3.3, -0.4]);
    let den = yv
        .clone()
        .square()
        .mul_scalar(0.8)
        .add_scalar(100.0)
        .add(b.clone());
    let z = num
        .div(den)
        .add(yv.clone())
        .add_scalar(3.0)
        .div(b)
        .add_scalar(1.0)
        .mul(yv.sqrt());
    let z = z.clone().mask_where(negative.clone(), z.neg());
    let hill = super::ndtr(z);

    // Incomplete beta, on ν clamped to <= 5 (its fixed budget is sized for small ν).
    let v = df.clone().clamp_max(5.0);
    let total = v.clone().add(t2.clone());
    let x = v.clone().div(total.clone());
    let y = t2.div(total);
    let tail = betainc(v.mul_scalar(0.5), x.ones_like().mul_scalar(0.5), x, y).mul_scalar(0.5);
    let beta = tail
        .clone()
        .neg()
        .add_scalar(1.0)
        .mask_where(negative, tail);

    // |t| > 1.8e19 overflows t² in f32 (both branches give NaN there): the CDF is 0 or 1 to f32
    // precision.
    let huge = t.clone().square().is_inf();
    beta.mask_where(df.greater_equal_elem(5.0), hill)
        .mask_where(huge, t.greater_elem(0.0).float())
}

/// Bisection steps of [`student_t_quantile`] for `ν < 10`, in `u = asinh(t)` on `[−44, 0]`
/// (`|t| < 1.8·10¹⁹` keeps `t²` finite in f32): the bracket shrinks to f32 resolution of `u`,
/// i.e. a relative error near 2e-6 in `t`.
const T_QUANTILE_STEPS: usize = 48;

/// The standard Student-T quantile: the `t` with `F_ν(t) = p`.
///
/// For `ν >= 10`, Hill's expansion inverted: `z = Φ⁻¹(min(p, 1 − p))`, the `y` with
/// `z(y) = z` by three Newton steps (in `s = √y`, from `s = |z|`), and `t² = ν·expm1(y/(ν − ½))`;
/// relative error below 1e-6 (6.7e-7 at `ν = 10`, checked in f64). For `ν < 10`, bisection of the
/// lower-tail CDF `½·I_{ν/(ν+t²)}(ν/2, ½)`, which keeps its relative accuracy in the tail, in
/// `asinh(t)` with a fixed budget; where that gives `x = ν/(ν+t²) < 1e-2`, the far tail's
/// series solved in log space instead ([`far_lower_quantile`]), which reaches past the
/// bisection's `|t| < 1.8·10¹⁹` and gives `−inf` beyond `f32::MAX`. The upper half follows by
/// symmetry, computed on `1 − p`, which is exact in f32 for `p >= ½`.
pub(crate) fn student_t_quantile<const D: usize>(p: Tensor<D>, df: Tensor<D>) -> Result<Tensor<D>> {
    let upper = p.clone().greater_elem(0.5);
    let q = p
        .clone()
        .mask_where(upper.clone(), p.clone().neg().add_scalar(1.0)); // <= ½
    let hill = hill_lower_quantile(q.clone(), df.clone().clamp_min(10.0));
    let small_df = df.clone().clamp_max(10.0);
    let bisected = bisect_lower_quantile(q.clone(), small_df.clone())?;
    let (far, x) = far_lower_quantile(q, small_df);
    let bisected = bisected.mask_where(x.lower_elem(FAR_TAIL_X), far);
    let lower = bisected.mask_where(df.greater_equal_elem(10.0), hill); // <= 0
    let t = lower.clone().mask_where(upper, lower.neg());
    let t = t.mask_fill(p.clone().equal_elem(0.5), 0.0);
    Ok(quantile_ends(t, p, f32::NEG_INFINITY))
}

/// Hill's expansion inverted, for `q <= ½` and `ν >= 10`; returns `t <= 0`.
fn hill_lower_quantile<const D: usize>(q: Tensor<D>, df: Tensor<D>) -> Tensor<D> {
    let z = super::ndtri(q).neg(); // >= 0
    let a = df.clone().sub_scalar(0.5);
    let b = a.clone().square().mul_scalar(48.0);
    // z(s) = s·g(s²), g(y) = 1 + (y + 3 + P(y)/Q(y))/b; Newton on s.
    let mut s = z.clone();
    for _ in 0..3 {
        let y = s.clone().square();
        let p = super::normal::poly(y.clone(), &[-85.5, -24.0, -3.3, -0.4]);
        let dp = super::normal::poly(y.clone(), &[-24.0, -6.6, -1.2]);
        let q = y
            .clone()
            .square()
            .mul_scalar(0.8)
            .add_scalar(100.0)
            .add(b.clone());
        let dq = y.clone().mul_scalar(1.6);
        let g = p
            .clone()
            .div(q.clone())
            .add(y.clone())
            .add_scalar(3.0)
            .div(b.clone())
            .add_scalar(1.0);
        let dg = dp
            .mul(q.clone())
            .sub(p.mul(dq))
            .div(q.square())
            .add_scalar(1.0)
            .div(b.clone());
        let f = s.clone().mul(g.clone()).sub(z.clone());
        let df_ds = g.add(y.mul(dg).mul_scalar(2.0));
        s = s.sub(f.div(df_ds));
    }
    let y = s.square();
    super::expm1(y.div(a)).mul(df).sqrt().neg()
}

/// Bisection of the lower-tail CDF in `u = asinh(t)` on `[−44, 0]`, for `q <= ½`, `ν < 10`.
fn bisect_lower_quantile<const D: usize>(q: Tensor<D>, df: Tensor<D>) -> Result<Tensor<D>> {
    let lo = q.zeros_like().sub_scalar(44.0);
    let hi = q.zeros_like();
    let half = q.ones_like().mul_scalar(0.5);
    let u = bisect(lo, hi, T_QUANTILE_STEPS, |mid| {
        let t2 = mid.sinh().square();
        let total = df.clone().add(t2.clone());
        let f = betainc(
            df.clone().mul_scalar(0.5),
            half.clone(),
            df.clone().div(total.clone()),
            t2.div(total),
        )
        .mul_scalar(0.5);
        Ok(f.lower(q.clone()))
    });
    Ok(u?.sinh())
}

/// Below this `x = ν/(ν+t²)` the Student-T quantile for `ν < 10` comes from
/// [`far_lower_quantile`]: there its series' terms fall like `xⁿ` and its fixed-point iteration
/// contracts by `x/(ν + 2) < 0.005` a step.
const FAR_TAIL_X: f32 = 1e-2;

/// Fixed-point steps and series terms of [`far_lower_quantile`]: 4 steps of a contraction by
/// 0.005 from a start within `x/2` in `ln x`; 12 terms of a series falling like `xⁿ` at
/// `x < 1e-2`.
const FAR_STEPS: usize = 4;
const FAR_TERMS: usize = 12;

/// `ln √π`.
const LN_SQRT_PI: f32 = 0.572_364_9;

/// The Student-T lower tail `q = ½ I_x(a, ½)` (`a = ν/2`, `x = ν/(ν+t²)`) solved for `t <= 0`
/// in log space, for small `x`; returns `(t, x)`.
///
/// `I_x(a, b) = x^a / (a·B(a, b)) · ₂F₁(a, 1 − b; a + 1; x)` (Abramowitz & Stegun 26.5.23 with
/// 15.1.1), so with `b = ½`, `ln x = (ln 2q + ln(a·B(a, ½)) − ln H(x))/a`, where
/// `H(x) = Σ (½)ₙ/n! · a/(a+n) · xⁿ` and `ln(a·B(a, ½)) = lnΓ(1+a) + ln √π − lnΓ(½+a)`
/// (by [`ln_gamma1p`], free of the pole of `lnΓ(a)`). Iterated from `H = 1`. Then
/// `ln|t| = ½(ln ν + ln(1 − x) − ln x)`, and `|t| = +inf` where that exceeds `ln f32::MAX`:
/// nothing underflows, however far the tail. The f32 rounding of `ln 2q` and of the
/// log-gammas is divided by `a`, so the relative error in `t` grows like `1/ν` (measured:
/// below 1e-5/ν at ν = 0.1 against mpmath).
fn far_lower_quantile<const D: usize>(q: Tensor<D>, df: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let a = df.clone().mul_scalar(0.5);
    let ln_ab = ln_gamma1p(a.clone())
        .sub(ln_gamma1p(a.clone().sub_scalar(0.5)))
        .add_scalar(LN_SQRT_PI);
    let rhs = q.mul_scalar(2.0).log().add(ln_ab);
    let mut ln_x = rhs.clone().div(a.clone());
    for _ in 0..FAR_STEPS {
        let x = ln_x.clone().exp().clamp_max(0.5); // the unused branch may start anywhere
        let mut c = x.ones_like(); // (½)ₙ/n! · xⁿ
        let mut h1 = x.zeros_like(); // H − 1
        for n in 1..=FAR_TERMS {
            let n = n as f32;
            c = c.mul(x.clone()).mul_scalar((n - 0.5) / n);
            h1 = h1.add(c.clone().mul(a.clone()).div(a.clone().add_scalar(n)));
        }
        ln_x = rhs.clone().sub(log1p(h1)).div(a.clone());
    }
    let x = ln_x.clone().exp().clamp_max(0.5);
    let ln_t = df
        .log()
        .add(log1p(x.clone().neg()))
        .sub(ln_x)
        .mul_scalar(0.5);
    let t = ln_t
        .clone()
        .exp()
        .mask_fill(ln_t.greater_elem(f32::MAX.ln()), f32::INFINITY)
        .neg();
    (t, x)
}
