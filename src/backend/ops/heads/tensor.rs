//! The heads kernel's tensor-level entry point, which [`Wgpu`](crate::Wgpu) calls for
//! `LayerOps::attention_heads` and `LayerOps::attention` of `f32` projections.

use burn::backend::Dispatch;
use burn::tensor::Tensor;

use super::launch::{AttentionHeadsOps, HeadsArgs};
use crate::backend::AttentionSpec;
use crate::backend::ops::launch::f32_dispatch;

/// The query heads `[N, H, S, qk]` and key heads `[N, G, S, qk]` of `qkv` (`[N, S, width]`) as
/// [`AttentionSpec::queries_keys_values`] prepares them (`spec`'s norms, query scale and
/// rotation), in one launch; `f32`.
pub(crate) fn queries_keys(qkv: Tensor<3>, spec: &AttentionSpec<'_>) -> (Tensor<4>, Tensor<4>) {
    let device = qkv.device();
    let h = spec.heads;
    // Arrays the kernel does not read: one placeholder (no fill).
    let none = || Tensor::<1>::empty([1], &device);
    let vector = |t: Option<&Tensor<1>>| t.cloned().unwrap_or_else(none);
    let norm = spec.qk_norm;
    let (q_weight, k_weight) = (norm.and_then(|n| n.query), norm.and_then(|n| n.key));
    // A rotation of no dimensions is none (and binds no empty tables).
    let (cos, sin, scale, rotated) = match spec.rotary.filter(|r| r.rotated() > 0) {
        Some(r) => {
            let (cos, sin, scale) = r.tables();
            (
                cos.clone().flatten::<1>(0, 4),
                sin.clone().flatten::<1>(0, 4),
                scale.map(|s| s.clone().flatten::<1>(0, 3)),
                r.rotated(),
            )
        }
        None => (none(), none(), None, 0),
    };
    let args = HeadsArgs {
        heads: h.heads,
        groups: h.groups,
        d: h.qk,
        rotated,
        eps: norm.map_or(0.0, |n| n.eps as f32),
        factor: spec.query_scale.map_or(1.0, |(_, c)| c as f32),
        norm: norm.is_some(),
        q_weighted: q_weight.is_some(),
        k_weighted: k_weight.is_some(),
        scaled: spec.query_scale.is_some(),
        rotate: rotated > 0,
        xpos: scale.is_some(),
    };
    let (q, k) = Dispatch::attention_heads(
        f32_dispatch(qkv),
        f32_dispatch(vector(q_weight)),
        f32_dispatch(vector(k_weight)),
        f32_dispatch(vector(spec.query_scale.map(|(m, _)| m))),
        f32_dispatch(cos),
        f32_dispatch(sin),
        f32_dispatch(scale.unwrap_or_else(none)),
        args,
    );
    (Tensor::from_dispatch(q), Tensor::from_dispatch(k))
}
