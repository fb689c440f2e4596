//! The categorical and mixture draws composed from burn tensor ops and the backend's own ops:
//! the provided bodies of the [`Backend`] trait, and what a
//! [`FallbackBackend`](crate::FallbackBackend) runs when its GPU lacks the fused mixture op.

use burn::tensor::{Int, Tensor};

use super::MixtureParams;
use crate::backend::Backend;
use crate::backend::ndarray::is_ndarray;
use crate::error::Result;
use crate::shape::{BroadcastTo, ReshapeExact};

/// [`Backend::categorical`] from one of `backend`'s uniforms per draw. Arguments are checked by
/// the caller.
pub(crate) fn categorical<B: Backend>(
    backend: &B,
    logits: Tensor<2>,
    samples: usize,
) -> Result<Tensor<2, Int>> {
    let rows = logits.dims()[0];
    let u = backend.uniform([samples, rows, 1])?;
    Ok(categorical_with(logits, u))
}

/// [`Backend::categorical`]'s composition given its uniforms `u` (`[samples, rows, 1]`): the
/// row maximum is subtracted and exponentiated, and each uniform, scaled by its row's total, is
/// located in the row's cumulative sums by counting (`[samples, rows, K]` passes).
pub(crate) fn categorical_with(logits: Tensor<2>, u: Tensor<3>) -> Tensor<2, Int> {
    let [rows, k] = logits.dims();
    let [samples, _, _] = u.dims();
    let weights = logits.clone().sub(logits.max_dim(1)).exp();
    let cdf = weights.cumsum(1).reshape_exact([1, rows, k]); // [1, rows, K]
    let total = cdf.clone().slice([0..1, 0..rows, k - 1..k]); // [1, rows, 1]
    let u = u.mul(total); // [samples, rows, 1]
    // The index is the number of cumulative sums at or below u; rounding can leave the last
    // one a hair under the total, so clamp to K - 1.
    let below = cdf
        .broadcast_to([samples, rows, k])
        .lower_equal(u.broadcast_to([samples, rows, k]));
    // Counted in f32 (exact up to 2^24 categories): burn-wgpu's integer sum is slower
    // (docs/PERFORMANCE.md, "Native Student-T sampling on wgpu").
    below
        .float()
        .sum_dim(2)
        .int()
        .clamp(0, k as i64 - 1)
        .reshape_exact([samples, rows])
}

/// [`Backend::student_t_mixture`] composed from the backend's own ops (each routed and
/// reported on a [`FallbackBackend`](crate::FallbackBackend)): [`Backend::categorical`], a
/// per-row gather of the chosen components and [`Backend::standard_t`]. Arguments are checked
/// by the caller.
pub(crate) fn student_t_mixture<B: Backend>(
    backend: &B,
    params: MixtureParams,
    samples: usize,
) -> Result<Tensor<2>> {
    let MixtureParams {
        logits,
        df,
        loc,
        scale,
    } = params;
    let index = backend.categorical(logits, samples)?; // [samples, rows]
    let pick = |p: Tensor<2>| gather_rows(p, index.clone());
    let t = backend.standard_t(pick(df))?;
    Ok(t.mul(pick(scale)).add(pick(loc)))
}

/// Row `r` of `params` (`[rows, K]`) at the components `index[s, r]` picks (`[samples, rows]`):
/// a `[samples, rows]` tensor. burn-ndarray is fastest with one `select` on the flattened grid;
/// burn-wgpu's `select` is pathological for long index lists and its `gather` along `K` takes
/// milliseconds (docs/PERFORMANCE.md, "Sampling a mixture").
pub(crate) fn gather_rows(params: Tensor<2>, index: Tensor<2, Int>) -> Tensor<2> {
    let [rows, k] = params.dims();
    let [samples, _] = index.dims();
    if is_ndarray(&params.device()) {
        let offsets = Tensor::<1, Int>::arange(0..rows as i64, &params.device())
            .mul_scalar(k as i64)
            .reshape_exact([1, rows]);
        let flat = index.add(offsets).reshape_exact([samples * rows]);
        params
            .reshape_exact([rows * k])
            .select(0, flat)
            .reshape_exact([samples, rows])
    } else {
        params.gather(1, index.swap_dims(0, 1)).swap_dims(0, 1)
    }
}
