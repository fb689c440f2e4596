//! The scaler as f32 tensor ops (cumulative sums along time): the provided body of
//! [`Backend::patch_scaler`](crate::Backend::patch_scaler), for backends without f64. It loses
//! digits on long or offset series (docs/numerics.md), which is why the backends run the f64
//! versions.

use burn::tensor::{Int, Tensor};

use super::ScalerSpec;
use crate::shape::{BroadcastTo, ReshapeExact};

/// [`Backend::patch_scaler`] as f32 tensor ops (cumulative sums along time).
pub(crate) fn patch_scaler(
    series: Tensor<3>,
    weights: Tensor<3>,
    spec: ScalerSpec,
) -> (Tensor<3>, Tensor<3>) {
    let [b, v, t] = series.dims();
    let x = series;
    let w = weights;
    let wsum = w.clone().cumsum(2);
    let denom = wsum.clone().clamp_min(1.0);
    let mu = x.clone().mul(w.clone()).cumsum(2).div(denom.clone());
    let mu_prev = Tensor::cat(
        vec![
            Tensor::zeros([b, v, 1], &x.device()),
            mu.clone().slice([0..b, 0..v, 0..t.saturating_sub(1)]),
        ],
        2,
    )
    .slice([0..b, 0..v, 0..t]);
    let m2 = x
        .clone()
        .sub(mu_prev)
        .mul(x.clone().sub(mu.clone()))
        .mul(w.clone())
        .cumsum(2);
    let var = m2.div(denom.sub_scalar(1.0).clamp_min(1.0));
    let mut sigma = var.add_scalar(spec.variance_floor).sqrt();
    let floor = sigma.clone().lower_elem(spec.scale_floor);
    sigma = sigma.mask_fill(floor, spec.scale_floor);
    if spec.stabilize {
        let end = spec.prefix.unwrap_or(t).min(t);
        let keep = Tensor::<1, Int>::arange(0..t as i64, &x.device())
            .lower_elem(end as i64)
            .float()
            .reshape_exact([1, 1, t]);
        let wg = w.mul(keep);
        let wt = wg.clone().sum_dim(2).clamp_min(1.0);
        let mug = x.clone().mul(wg.clone()).sum_dim(2).div(wt.clone());
        let varg = x.sub(mug).mul(wg).square().sum_dim(2).div(wt);
        let sg = varg.add_scalar(spec.variance_floor).sqrt();
        let factor = 10f64.powf(spec.exponent);
        let lo = sg.clone().div_scalar(factor).clamp_min(spec.variance_floor);
        let hi = sg.mul_scalar(factor);
        sigma = sigma
            .max_pair(lo.broadcast_to([b, v, t]))
            .min_pair(hi.broadcast_to([b, v, t]));
    }
    let at_patch_end = |s: Tensor<3>| {
        // Patch ends: steps p-1, 2p-1, ...; a short last patch ends at t-1.
        let p = spec.patch;
        let n = t.div_ceil(p);
        let ends: Vec<i64> = (0..n).map(|i| ((i + 1) * p).min(t) as i64 - 1).collect();
        let idx: Vec<i64> = (0..t).map(|j| ends[j / p]).collect();
        let idx = Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(idx, [t]), &s.device());
        s.select(2, idx)
    };
    (at_patch_end(mu), at_patch_end(sigma))
}
