//! Building blocks shared by the special functions and quantiles: the modified Lentz step for
//! continued fractions, fixed-budget bisection, and the ends of a quantile function.

use burn::tensor::{Bool, Tensor};

use crate::error::Result;

/// Below this `|d|` or `|c|` the modified Lentz algorithm restarts from it instead of dividing
/// by (nearly) zero (Numerical Recipes' `FPMIN`, scaled for f32).
pub(crate) const TINY: f32 = 1e-30;

/// `t`, with values of magnitude below [`TINY`] replaced by `TINY`.
pub(crate) fn guard<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let small = t.clone().abs().lower_elem(TINY);
    t.mask_fill(small, TINY)
}

/// The state `(c, d, h)` of the modified Lentz method (Numerical Recipes §5.2) for
/// `b₀ + a₁/(b₁ + a₂/(b₂ + …))`.
pub(crate) struct Lentz<const D: usize> {
    c: Tensor<D>,
    d: Tensor<D>,
    h: Tensor<D>,
}

impl<const D: usize> Lentz<D> {
    /// Starts from `c = c0`, `d = 1/first`, `h = d` (the forms of betainc and gammainc).
    pub(crate) fn new(c0: Tensor<D>, first: Tensor<D>) -> Self {
        let d = guard(first).recip();
        Lentz {
            c: c0,
            h: d.clone(),
            d,
        }
    }

    /// One term with partial numerator `a` and denominator `b`.
    pub(crate) fn step(&mut self, a: Tensor<D>, b: Tensor<D>) {
        self.d = guard(a.clone().mul(self.d.clone()).add(b.clone())).recip();
        self.c = guard(b.add(a.div(self.c.clone())));
        self.h = self.h.clone().mul(self.d.clone()).mul(self.c.clone());
    }

    /// The fraction's value so far.
    pub(crate) fn value(self) -> Tensor<D> {
        self.h
    }
}

/// Fixed-budget bisection on the device, with no host round trip: `lo` and `hi` bracket the
/// answer, and `below(mid)` is true where the answer lies above `mid`. Returns the midpoint of
/// the final bracket.
pub(crate) fn bisect<const D: usize>(
    mut lo: Tensor<D>,
    mut hi: Tensor<D>,
    steps: usize,
    mut below: impl FnMut(Tensor<D>) -> Result<Tensor<D, Bool>>,
) -> Result<Tensor<D>> {
    for _ in 0..steps {
        let mid = lo.clone().add(hi.clone()).mul_scalar(0.5);
        let up = below(mid.clone())?;
        lo = lo.mask_where(up.clone(), mid.clone());
        hi = mid.mask_where(up, hi);
    }
    Ok(lo.add(hi).mul_scalar(0.5))
}

/// A quantile `x` at probabilities `p` with its ends set: `at_zero` where `p = 0`, `+inf` where
/// `p = 1`, NaN outside `[0, 1]`.
pub(crate) fn quantile_ends<const D: usize>(x: Tensor<D>, p: Tensor<D>, at_zero: f32) -> Tensor<D> {
    x.mask_fill(p.clone().equal_elem(0.0), at_zero)
        .mask_fill(p.clone().equal_elem(1.0), f32::INFINITY)
        .mask_fill(
            p.clone().lower_elem(0.0).bool_or(p.greater_elem(1.0)),
            f32::NAN,
        )
}
