//! The layer ops as compositions of burn tensor ops: what every backend runs unless it has a
//! native way ([`LayerOps`](super::LayerOps)'s provided `_unchecked` bodies).

use burn::tensor::activation::{silu as burn_silu, softmax};
use burn::tensor::module::linear as burn_linear;
use burn::tensor::{Bool, FloatDType, Int, Tensor};

use super::super::transfer::{in_host_memory, read_f32, upload};
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

/// [`LayerOps::attention`]: [`LayerOps::attention_heads`], then [`LayerOps::attention_core`]
/// (both routed through `ops`, so that a backend's native kernels serve them).
pub(crate) fn attention<B: LayerOps>(
    ops: &B,
    qkv: Tensor<3>,
    spec: &AttentionSpec<'_>,
) -> Result<Tensor<3>> {
    let [n, s, _] = qkv.dims();
    let (q, k, v) = ops.attention_heads(qkv, spec)?;
    let o = ops.attention_core_unchecked(q, k, v, spec.divisor, &spec.mask)?; // [N, H, S, v]
    Ok(o.swap_dims(1, 2)
        .reshape([n, s, spec.heads.heads * spec.heads.v]))
}

impl AttentionSpec<'_> {
    /// The values `[N, G, S, v]` of fused projections `qkv: [N, S, width]`: a view.
    pub(crate) fn values(&self, qkv: Tensor<3>) -> Tensor<4> {
        let [n, s, _] = qkv.dims();
        let h = self.heads;
        qkv.narrow(2, (h.heads + h.groups) * h.qk, h.groups * h.v)
            .reshape([n, s, h.groups, h.v])
            .swap_dims(1, 2) // [N, G, S, v]
    }

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
        let v = self.values(qkv.clone());
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
        Mask::Cache { len } => Some(
            Tensor::<2, Bool>::tril_mask([s, skv], (len - s) as i64, &device)
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

/// [`LayerOps::sort_first`]: [`sort_last`]'s network over dimension 0 (moved last and back),
/// on the device without a host round trip (burn 0.22 sorts on the host on GPUs). Every value
/// is kept, and NaN sorts last as in torch.
pub(crate) fn sort_first<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match D {
        1 => sort_last(x),
        _ => sort_last(x.swap_dims(0, D - 1)).swap_dims(0, D - 1),
    }
}

// The crate's one sort: along the last dimension, on the tensor's own device, a bitonic network
// of burn ops (`sort_first` above, and the sample paths' quantiles in `forecast`).
//
// burn 0.22 sorts on the host on GPUs (a read-back and an upload per call); a forecast's sample
// paths are sorted for every quantile asked of them, so this keeps them on the device. The
// network has `log₂ n (log₂ n + 1) / 2` stages for `n` rounded up to a power of two (36 for 256
// paths). Each stage is an elementwise `min`/`max` of the two halves of its blocks, all in one
// direction: the first stage of each merge compares an element with its mirror image in the
// block (the halves' order reversed), which sorts what the textbook network's alternating
// directions sort. On a GPU the cost is the number of ops (each one a launch), so a stage is
// five or seven of them; NaN is handled once, before and after.

/// `x` sorted ascending along its last dimension, NaN last (as torch and `f32::total_cmp` for
/// positive NaN), every value kept: f32 values in host memory (a CPU device's) by a sort of each
/// row in place (for 256 paths, ~35× faster than the network's 36 stages of whole-tensor ops
/// there); otherwise by the network, on the device.
pub(crate) fn sort_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if in_host_memory(&x.device()) && x.dtype() == burn::tensor::DType::F32 {
        let (dims, device) = (x.dims(), x.device());
        if let Ok(mut values) = read_f32("sort_last", x.clone()) {
            let n = dims[D - 1].max(1);
            values.chunks_mut(n).for_each(|row| row.sort_by(nan_last));
            return upload(values, dims, &device);
        }
    }
    network_sort_last(x)
}

/// Ascending, NaN after every number (the network's order), `-0.0` and `0.0` equal.
pub(crate) fn nan_last(a: &f32, b: &f32) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    }
}

/// [`sort_last`] as a bitonic network of burn ops on the tensor's device.
fn network_sort_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let n = dims[D - 1];
    let rows: usize = dims[..D - 1].iter().product();
    if n <= 1 || rows == 0 {
        return x;
    }
    let width = n.next_power_of_two();
    let device = x.device();
    let flat: Tensor<2> = x.reshape([rows, n]);
    // NaN sorts as +inf, and the last `nans` places of each row become NaN again at the end:
    // every +inf of a row (its own, its NaN and the padding) sorts after its other values.
    let is_nan = flat.clone().is_nan();
    let nans: Tensor<2, Int> = is_nan.clone().int().sum_dim(1); // [rows, 1]
    let mut flat = flat.mask_fill(is_nan, f32::INFINITY);
    if width > n {
        let pad = Tensor::<2>::full([rows, width - n], f32::INFINITY, &device);
        flat = Tensor::cat(vec![flat, pad], 1);
    }
    let mut k = 2;
    while k <= width {
        flat = stage(flat, rows, width, k / 2, true);
        let mut j = k / 4;
        while j >= 1 {
            flat = stage(flat, rows, width, j, false);
            j /= 2;
        }
        k *= 2;
    }
    let sorted = flat.narrow(1, 0, n);
    // Places `n - nans ..` of each row hold NaN.
    let place = Tensor::<1, Int>::arange(0..n as i64, &device)
        .reshape([1, n])
        .expand([rows, n]);
    let from = nans.neg().add_scalar(n as i64).expand([rows, n]);
    let nan_place = place.greater_equal(from);
    sorted.mask_fill(nan_place, f32::NAN).reshape(dims)
}

/// One stage over blocks of `2 · half`: element `i` of each block's first half against
/// element `i` of its second half, or, with `mirror` (the first stage of a merge), against its
/// mirror image in the block (`2 · half − 1 − i`); the smaller goes first.
fn stage(x: Tensor<2>, rows: usize, width: usize, half: usize, mirror: bool) -> Tensor<2> {
    let flip = |t: Tensor<4>| if mirror { t.flip([3]) } else { t };
    let halves: Tensor<4> = x.reshape([rows, width / (2 * half), 2, half]);
    let a = halves.clone().narrow(2, 0, 1);
    let b = flip(halves.narrow(2, 1, 1));
    let low = a.clone().min_pair(b.clone());
    let high = flip(a.max_pair(b));
    Tensor::cat(vec![low, high], 2).reshape([rows, width])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::backend::ndarray::NdArray;
    use burn::tensor::TensorData;

    #[test]
    fn the_network_sorts_like_total_cmp_keeps_every_value_and_puts_nan_last() {
        let cpu = NdArray::seeded(0);
        // A fixed pseudo-random sequence with ties, infinities and NaN.
        let mut state = 0x2545_f491_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            match state % 23 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => 1.5,
                r => (r as f32 - 11.0) * 0.37,
            }
        };
        for n in [1, 2, 3, 5, 8, 17, 31, 64, 100, 256, 300] {
            let rows = 3;
            let data: Vec<f32> = (0..rows * n).map(|_| next()).collect();
            let x =
                Tensor::<3>::from_data(TensorData::new(data.clone(), [1, rows, n]), cpu.device());
            // The network (what a GPU runs) and the host sort (what a CPU device runs).
            for (name, sort) in [
                (
                    "network",
                    network_sort_last::<3> as fn(Tensor<3>) -> Tensor<3>,
                ),
                ("host", sort_last::<3>),
            ] {
                let got: Vec<f32> = sort(x.clone()).into_data().try_to_vec().unwrap();
                for r in 0..rows {
                    let mut want = data[r * n..(r + 1) * n].to_vec();
                    want.sort_by(f32::total_cmp);
                    assert_eq!(
                        format!("{:?}", &got[r * n..(r + 1) * n]),
                        format!("{want:?}"),
                        "{name}: n = {n}, row {r}"
                    );
                }
            }
        }
    }
}
