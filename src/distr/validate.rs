//! Value checks behind the distributions' `validate()`: they read tensors back to the host.

use burn::tensor::Tensor;

use crate::error::{Error, Result};

fn first_bad<const D: usize>(
    dist: &'static str,
    param: &'static str,
    t: &Tensor<D>,
    requirement: &'static str,
    ok: impl Fn(f32) -> bool,
) -> Result<()> {
    let values = crate::backend::read_back(&format!("{dist}::validate"), t.clone())?;
    match values.iter().position(|&v| !ok(v)) {
        None => Ok(()),
        Some(index) => Err(Error::ParamValue {
            dist,
            param,
            requirement,
            index,
            value: values[index],
        }),
    }
}

/// Every element finite.
pub(crate) fn finite<const D: usize>(
    dist: &'static str,
    param: &'static str,
    t: &Tensor<D>,
) -> Result<()> {
    first_bad(dist, param, t, "must be finite", f32::is_finite)
}

/// Every element `> 0` and finite.
pub(crate) fn positive<const D: usize>(
    dist: &'static str,
    param: &'static str,
    t: &Tensor<D>,
) -> Result<()> {
    first_bad(dist, param, t, "must be > 0 and finite", |v| {
        v > 0.0 && v.is_finite()
    })
}

/// Every element `> 0` (`+inf` allowed, as for Student-T degrees of freedom).
pub(crate) fn positive_or_inf<const D: usize>(
    dist: &'static str,
    param: &'static str,
    t: &Tensor<D>,
) -> Result<()> {
    first_bad(dist, param, t, "must be > 0", |v| v > 0.0)
}
