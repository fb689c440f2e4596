//! The layer ops as compositions of burn tensor ops: what every backend runs unless it has a
//! native way ([`LayerOps`](super::LayerOps)'s provided `_unchecked` bodies).

use burn::tensor::activation::{silu as burn_silu, softmax};
use burn::tensor::module::linear as burn_linear;
use burn::tensor::{Bool, FloatDType, Tensor};

use super::{Affine, AttentionSpec, LayerOps, Mask, SiluHalf};
use crate::error::Result;

/// `product` of every row of `x: [.., K]` at once, as a `[rows, K]` matrix; the result's rows
/// get `x`'s leading dimensions back. burn's `matmul` on a rank-4 input multiplies each leading
/// index separately: at a decode step that is one matrix-vector product per (path, variate).
pub(crate) fn over_rows<const D: usize>(
    x: Tensor<D>,
    product: impl FnOnce(Tensor<2>) -> Tensor<2>,
) -> Tensor<D> {
    let mut dims = x.dims();
    let k = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = product(x.reshape([rows, k]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// [`LayerOps::linear`]: burn's `linear` (one backend op: product and bias together, which on
/// wgpu rounds the same whichever thread's fusion stream it joins, where a `matmul` followed by
/// an `add` may fuse differently), then the scale. In the weight's format when it is not f32:
/// the product there, bias and scale in f32.
pub(crate) fn linear<const D: usize>(x: Tensor<D>, a: Affine<'_>) -> Tensor<D> {
    over_rows(x, |x| {
        let y = match a.compute {
            None => burn_linear(x, a.weight.clone(), a.bias.cloned()),
            Some(dtype) => {
                let y = x.cast(dtype).matmul(a.weight.clone()).cast(FloatDType::F32);
                match a.bias {
                    Some(b) => y.add(b.clone().unsqueeze()),
                    None => y,
                }
            }
        };
        match a.scale == 1.0 {
            true => y,
            false => y.mul_scalar(a.scale),
        }
    })
}

/// [`LayerOps::rms_norm`]: `square → mean → add → sqrt → div → mul`.
pub(crate) fn rms_norm<const D: usize>(
    x: Tensor<D>,
    weight: Option<&Tensor<1>>,
    eps: f64,
) -> Tensor<D> {
    let rms = x.clone().square().mean_dim(D - 1).add_scalar(eps).sqrt();
    let y = x.div(rms);
    match weight {
        None => y,
        Some(w) => {
            let mut shape = [1; D];
            shape[D - 1] = w.dims()[0];
            y.mul(w.clone().reshape(shape))
        }
    }
}

/// [`LayerOps::silu`].
pub(crate) fn silu<const D: usize>(x: Tensor<D>, scale: f64) -> Tensor<D> {
    let y = burn_silu(x);
    if scale == 1.0 { y } else { y.mul_scalar(scale) }
}

/// [`LayerOps::silu_gate`].
pub(crate) fn silu_gate<const D: usize>(y: Tensor<D>, half: SiluHalf) -> Tensor<D> {
    let f = y.dims()[D - 1] / 2;
    let first = y.clone().narrow(D - 1, 0, f);
    let second = y.narrow(D - 1, f, f);
    match half {
        SiluHalf::First => burn_silu(first).mul(second),
        SiluHalf::Second => first.mul(burn_silu(second)),
    }
}

/// [`LayerOps::residual_add`].
pub(crate) fn residual_add<const D: usize>(f: Tensor<D>, skip: Tensor<D>, tau: f32) -> Tensor<D> {
    let denom = (1.0f32 + tau * tau).sqrt();
    f.mul_scalar(tau / denom)
        .add(skip.mul_scalar(1.0f32 / denom))
}

/// [`LayerOps::attention`]: [`AttentionSpec::queries_keys_values`], then
/// [`LayerOps::attention_core`] (routed through `ops`, so that a backend's native core serves
/// it).
pub(crate) fn attention<B: LayerOps>(
    ops: &B,
    qkv: Tensor<3>,
    spec: &AttentionSpec<'_>,
) -> Result<Tensor<3>> {
    let [n, s, _] = qkv.dims();
    let (q, k, v) = spec.queries_keys_values(qkv);
    let o = ops.attention_core_unchecked(q, k, v, spec.divisor, &spec.mask)?; // [N, H, S, v]
    Ok(o.swap_dims(1, 2)
        .reshape([n, s, spec.heads.heads * spec.heads.v]))
}

impl AttentionSpec<'_> {
    /// The queries `[N, H, S, qk]` (normed, scaled, rotated), keys `[N, G, S, qk]` (normed,
    /// rotated) and values `[N, G, S, v]` of fused projections `qkv: [N, S, width]`, as burn
    /// tensor ops: what [`LayerOps::attention`] computes before its core, for callers that
    /// attend over more keys than the call's own (a KV cache).
    pub fn queries_keys_values(&self, qkv: Tensor<3>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [n, s, _] = qkv.dims();
        let h = self.heads;
        let split = |start: usize, heads: usize, d: usize| {
            qkv.clone()
                .narrow(2, start, heads * d)
                .reshape([n, s, heads, d])
                .swap_dims(1, 2) // [N, heads, S, d]
        };
        let mut q = split(0, h.heads, h.qk);
        let mut k = split(h.heads * h.qk, h.groups, h.qk);
        let v = split((h.heads + h.groups) * h.qk, h.groups, h.v);
        if let Some(norm) = self.qk_norm {
            q = rms_norm(q, norm.query, norm.eps);
            k = rms_norm(k, norm.key, norm.eps);
        }
        if let Some((per_dim, c)) = self.query_scale {
            q = q
                .mul(per_dim.clone().reshape([1, 1, 1, h.qk]))
                .mul_scalar(c);
        }
        if let Some(rotary) = self.rotary {
            q = rotary.apply(q, true);
            k = rotary.apply(k, false);
        }
        (q, k, v)
    }
}

/// [`LayerOps::attention_core`]: the key/value groups expanded to the query heads (a view),
/// two products and burn's softmax.
pub(crate) fn attention_core(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    divisor: f64,
    mask: &Mask,
) -> Tensor<4> {
    let [n, h, s, _] = q.dims();
    let [_, g, skv, _] = k.dims();
    let heads = |t: Tensor<4>| {
        if g == h {
            return t;
        }
        let d = t.dims()[3];
        t.reshape([n, g, 1, skv, d])
            .expand([n, g, h / g, skv, d])
            .reshape([n, h, skv, d])
    };
    let (k, v) = (heads(k), heads(v));
    let device = q.device();
    let blocked = match mask {
        Mask::None => None,
        Mask::Causal => Some(
            Tensor::<2, Bool>::tril_mask([s, skv], 0, &device)
                .reshape([1, 1, s, skv])
                .expand([n, h, s, skv]),
        ),
        Mask::Blocked(m) => Some(m.clone().expand([n, h, s, skv])),
    };
    let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar(divisor); // [N, H, S, S_kv]
    if let Some(blocked) = blocked {
        scores = scores.mask_fill(blocked, f32::NEG_INFINITY);
    }
    softmax(scores, 3).matmul(v)
}

/// [`LayerOps::sort_first`]: an odd–even transposition network over dimension 0, on the
/// device without a host round trip (burn 0.22 sorts on the host on GPUs). Each comparator
/// swaps on one mask, so every value is kept, and NaN sorts last as in torch.
pub(crate) fn sort_first<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let n = x.dims()[0];
    let mut rows: Vec<Tensor<D>> = (0..n).map(|i| x.clone().narrow(0, i, 1)).collect();
    for round in 0..n {
        let mut i = round % 2;
        while i + 1 < n {
            let (a, b) = (rows[i].clone(), rows[i + 1].clone());
            let nan_first = a.clone().is_nan().bool_and(b.clone().is_nan().bool_not());
            let swap = b.clone().lower(a.clone()).bool_or(nan_first);
            rows[i] = a.clone().mask_where(swap.clone(), b.clone());
            rows[i + 1] = b.mask_where(swap, a);
            i += 2;
        }
    }
    match n {
        0 => x,
        _ => Tensor::cat(rows, 0),
    }
}
