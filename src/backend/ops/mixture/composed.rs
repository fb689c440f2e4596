//! The categorical and mixture draws composed from burn tensor ops and the backend's own ops:
//! the provided bodies of the [`Backend`] trait, and what a
//! [`FallbackBackend`](crate::FallbackBackend) runs when its GPU lacks the fused mixture op.

use burn::tensor::{Int, Tensor};

use super::MixtureParams;
use crate::backend::Backend;
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
/// located in the row's cumulative sums by counting (`[samples, rows, K]` passes). A row without
/// a finite logit draws its last category.
pub(crate) fn categorical_with(logits: Tensor<2>, u: Tensor<3>) -> Tensor<2, Int> {
    let [rows, k] = logits.dims();
    let [samples, _, _] = u.dims();
    let weights = logits.clone().sub(logits.max_dim(1)).exp();
    let cdf = weights.cumsum(1).reshape_exact([1, rows, k]); // [1, rows, K]
    let total = cdf.clone().slice([0..1, 0..rows, k - 1..k]); // [1, rows, 1]
    let u = u.mul(total); // [samples, rows, 1]
    // The index is the number of cumulative sums not above u; rounding can leave the last
    // one a hair under the total, so clamp to K - 1. A row without a finite logit is NaN,
    // never above u: its last category, as the host draw and the mixture kernel pick.
    let below = cdf
        .broadcast_to([samples, rows, k])
        .greater(u.broadcast_to([samples, rows, k]))
        .bool_not();
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
/// a `[samples, rows]` tensor, by one `gather` along `K`. burn-wgpu's `select` is pathological
/// for long index lists (docs/PERFORMANCE.md, "Sampling a mixture"); the CPU backend picks with
/// [`select_rows`] instead.
pub(crate) fn gather_rows(params: Tensor<2>, index: Tensor<2, Int>) -> Tensor<2> {
    params.gather(1, index.swap_dims(0, 1)).swap_dims(0, 1)
}

/// [`gather_rows`] by one `select` on the flattened grid, which burn's CPU devices run faster
/// than `gather`.
pub(crate) fn select_rows(params: Tensor<2>, index: Tensor<2, Int>) -> Tensor<2> {
    let [rows, k] = params.dims();
    let [samples, _] = index.dims();
    let offsets = Tensor::<1, Int>::arange(0..rows as i64, &params.device())
        .mul_scalar(k as i64)
        .reshape_exact([1, rows]);
    let flat = index.add(offsets).reshape_exact([samples * rows]);
    params
        .reshape_exact([rows * k])
        .select(0, flat)
        .reshape_exact([samples, rows])
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Int, Tensor, TensorData};

    use super::{gather_rows, select_rows};
    use crate::backend::Backend;
    use crate::backend::ndarray::NdArray;

    /// Both ways of picking a row's component give `params[r, index[s, r]]`, read off by hand.
    #[test]
    fn select_rows_and_gather_rows_pick_the_same_components() {
        let device = NdArray::seeded(0).device().clone();
        // params[r, k] = 10 r + k, 3 rows of 4 components.
        let params: Vec<f32> = (0..3)
            .flat_map(|r| (0..4).map(move |k| (10 * r + k) as f32))
            .collect();
        let params = Tensor::<2>::from_data(TensorData::new(params, [3, 4]), &device);
        let index = [[3i64, 0, 2], [1, 1, 0]];
        let index = Tensor::<2, Int>::from_data(TensorData::new(index.concat(), [2, 3]), &device);
        let expected = vec![3.0f32, 10.0, 22.0, 1.0, 11.0, 20.0];
        for picked in [
            gather_rows(params.clone(), index.clone()),
            select_rows(params, index),
        ] {
            assert_eq!(picked.dims(), [2, 3]);
            assert_eq!(picked.into_data().try_to_vec::<f32>().unwrap(), expected);
        }
    }
}
