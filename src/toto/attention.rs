//! Toto's attention (toto-ts's `TimeWiseMultiheadAttention` and `SpaceWiseMultiheadAttention`):
//! one fused `wQKV` projection, then attention along time (causal, rotary + xPos, with the KV
//! cache) or across the variates of a group, then `wO`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use super::cache::LayerCache;
use super::config::LayerKind;
use crate::backend::{AttentionSpec, Heads, LayerOps, Mask, Prepared, Rotary};
use crate::error::Result;
use crate::nn::attention::{attend_shared, group_blocked};
use crate::nn::linear::{dense, linear};

/// `wQKV` and `wO` (renamed on load: Rust fields are snake case).
#[derive(Module, Debug)]
pub(crate) struct Attention {
    pub(crate) wqkv: Linear,
    pub(crate) wo: Linear,
    /// What the backend derives from `wqkv` and `wo` (not in the checkpoint).
    #[module(skip)]
    pub(crate) prepared: [Prepared; 2],
}

/// What the attention of one pass needs besides its input: positions, groups, heads.
pub(crate) struct Pass<'a, B> {
    /// The backend's layer ops.
    pub(crate) ops: &'a B,
    /// The rotary + xPos factors of the pass's patches.
    pub(crate) rope: &'a Rotary,
    /// Group ids per patch, `[B, V, S]`: variates attend to the variates of their group.
    pub(crate) ids: &'a Tensor<3, Int>,
    /// Attention heads.
    pub(crate) heads: usize,
}

/// A time-wise layer's cache entry, and how many rows share its prefix.
pub(crate) type CacheEntry<'a> = Option<(&'a mut LayerCache, usize)>;

/// The order of `wQKV`'s outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QkvLayout {
    /// toto-ts's (and the checkpoint's): `(qkv, head_dim, heads)`, the head index fastest.
    Checkpoint,
    /// The layer ops' fused projection ([`Heads`]): `(qkv, heads, head_dim)`, each head's
    /// values together, as the attention ops read them. The loader reorders to it (and the
    /// writer back), so the model runs the same ops as Toto 2.0.
    Fused,
}

impl Attention {
    /// `wQKV` of width `d` to `3d`, `wO` back, randomly initialised.
    pub(crate) fn new(d: usize, device: &Device) -> Self {
        Attention {
            wqkv: linear(d, 3 * d, device),
            wo: linear(d, d, device),
            prepared: Default::default(),
        }
    }

    /// `wQKV`'s output columns (weight and bias) reordered from the other layout to `to`.
    pub(crate) fn qkv_layout(mut self, heads: usize, to: QkvLayout) -> Self {
        fn reorder<const D: usize>(x: Tensor<D>, heads: usize, to: QkvLayout) -> Tensor<D> {
            let dims = x.dims();
            let w = dims[D - 1];
            let rows = x.shape().num_elements() / w;
            let (a, b) = match to {
                QkvLayout::Fused => (w / 3 / heads, heads),
                QkvLayout::Checkpoint => (heads, w / 3 / heads),
            };
            x.reshape([rows, 3, a, b]).swap_dims(2, 3).reshape(dims)
        }
        self.wqkv.weight = self.wqkv.weight.map(|w| reorder(w, heads, to));
        self.wqkv.bias = self.wqkv.bias.map(|b| b.map(|b| reorder(b, heads, to)));
        self
    }

    /// The attention output of `z` (`[B, V, S, D]`), time-wise or space-wise.
    pub(crate) fn forward<B: LayerOps>(
        &self,
        z: Tensor<4>,
        kind: LayerKind,
        pass: &Pass<'_, B>,
        cache: CacheEntry<'_>,
    ) -> Result<Tensor<4>> {
        let [b, v, s, d] = z.dims();
        // [B, V, S, 3D], the fused layout (queries, keys, values; each head-major)
        let qkv = dense(pass.ops, &self.wqkv, &self.prepared[0], z)?;
        let o = match kind {
            LayerKind::Time => time_wise(qkv, pass, cache)?,
            LayerKind::Space => space_wise(qkv, pass)?,
        };
        dense(
            pass.ops,
            &self.wo,
            &self.prepared[1],
            o.reshape([b, v, s, d]),
        )
    }
}

/// Toto's attention as the layer ops take it: `H` heads of `D/H` values (no groups, no norms),
/// scores over `√(D/H)`.
fn spec<'a, B>(
    pass: &Pass<'a, B>,
    d: usize,
    rotary: Option<&'a Rotary>,
    mask: Mask,
) -> AttentionSpec<'a> {
    let dh = d / pass.heads;
    AttentionSpec {
        heads: Heads {
            heads: pass.heads,
            groups: pass.heads,
            qk: dh,
            v: dh,
        },
        divisor: (dh as f64).sqrt(),
        qk_norm: None,
        query_scale: None,
        rotary,
        mask,
    }
}

/// Causal attention along time per variate of `qkv` (`[B, V, S, 3D]`), with rotary + xPos
/// positions; with a cache, the pass's keys and values are written to it and the queries see
/// every written entry (over a prefix shared by the sample paths, when there is one). Returns
/// `[B, V, S, D]`.
fn time_wise<B: LayerOps>(
    qkv: Tensor<4>,
    pass: &Pass<'_, B>,
    cache: CacheEntry<'_>,
) -> Result<Tensor<4>> {
    let [b, nv, s, w] = qkv.dims();
    let d = w / 3;
    let qkv = qkv.reshape([b * nv, s, w]); // [B·V, S, 3D]
    let causal = if s > 1 { Mask::Causal } else { Mask::None };
    let spec = spec(pass, d, Some(pass.rope), causal);
    let Some((entry, share)) = cache else {
        let o = pass.ops.attention(qkv, &spec)?; // [B·V, S, D]
        return Ok(o.reshape([b, nv, s, d]));
    };
    let (q, k, v) = pass.ops.attention_heads(qkv, &spec)?; // [B·V, H, S, Dh]
    let (k, v, len, prefix) = entry.append(k, v);
    let o = match prefix {
        // Decode steps of sample paths over a shared prefill.
        Some(prefix) => attend_shared(q, (&prefix.k, &prefix.v, prefix.len), (k, v, len), share),
        None => {
            let mask = Mask::Cache { len };
            pass.ops.attention_core(q, k, v, spec.divisor, &mask)?
        }
    }; // [B·V, H, S, Dh]
    Ok(o.swap_dims(1, 2).reshape([b, nv, s, d]))
}

/// Bidirectional attention across the variates with equal ids of `qkv` (`[B, V, S, 3D]`), per
/// patch. Returns `[B, V, S, D]`.
fn space_wise<B: LayerOps>(qkv: Tensor<4>, pass: &Pass<'_, B>) -> Result<Tensor<4>> {
    let [b, nv, s, w] = qkv.dims();
    let d = w / 3;
    let qkv = qkv.swap_dims(1, 2).reshape([b * s, nv, w]); // [B·S, V, 3D]
    let ids = pass.ids.clone().permute([0, 2, 1]).reshape([b * s, nv]); // [B·S, V]
    let spec = spec(pass, d, None, Mask::Blocked(group_blocked(ids)));
    let o = pass.ops.attention(qkv, &spec)?; // [B·S, V, D]
    Ok(o.reshape([b, s, nv, d]).swap_dims(1, 2))
}
