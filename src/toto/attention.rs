//! Toto's attention (toto-ts's `TimeWiseMultiheadAttention` and `SpaceWiseMultiheadAttention`):
//! one fused `wQKV` projection, then attention along time (causal, rotary + xPos, with the KV
//! cache) or across the variates of a group, then `wO`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use super::cache::LayerCache;
use super::config::LayerKind;
use crate::backend::{LayerOps, Mask, Prepared, Rotary};
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

impl Attention {
    /// `wQKV` of width `d` to `3d`, `wO` back, randomly initialised.
    pub(crate) fn new(d: usize, device: &Device) -> Self {
        Attention {
            wqkv: linear(d, 3 * d, device),
            wo: linear(d, d, device),
            prepared: Default::default(),
        }
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
        let (q, k, val) = self.qkv(pass.ops, z, pass.heads)?;
        let o = match kind {
            LayerKind::Time => time_wise(q, k, val, pass, cache)?,
            LayerKind::Space => space_wise(q, k, val, pass)?,
        };
        dense(
            pass.ops,
            &self.wo,
            &self.prepared[1],
            o.reshape([b, v, s, d]),
        )
    }

    /// Queries, keys and values, `[B, V, S, H, Dh]` each. `wQKV`'s outputs are laid out
    /// (qkv, head_dim, heads), head index fastest.
    #[allow(clippy::type_complexity)]
    fn qkv<B: LayerOps>(
        &self,
        ops: &B,
        z: Tensor<4>,
        heads: usize,
    ) -> Result<(Tensor<5>, Tensor<5>, Tensor<5>)> {
        let [b, v, s, d] = z.dims();
        let dh = d / heads;
        let qkv = dense(ops, &self.wqkv, &self.prepared[0], z)?
            .reshape([b, v, s, 3, dh, heads])
            .swap_dims(4, 5); // [B, V, S, 3, H, Dh]
        let part = |j: usize| {
            qkv.clone()
                .slice([0..b, 0..v, 0..s, j..j + 1, 0..heads, 0..dh])
                .reshape([b, v, s, heads, dh])
        };
        Ok((part(0), part(1), part(2)))
    }
}

/// Causal attention along time per variate, with rotary + xPos positions; with a cache, the
/// pass's keys and values are appended to it and a decode step's one patch sees all of them
/// (over a prefix shared by the sample paths, when there is one). Returns `[B, V, S, D]`.
fn time_wise<B: LayerOps>(
    q: Tensor<5>,
    k: Tensor<5>,
    v: Tensor<5>,
    pass: &Pass<'_, B>,
    cache: CacheEntry<'_>,
) -> Result<Tensor<4>> {
    let [b, nv, s, heads, dh] = q.dims();
    let to_seq = |x: Tensor<5>| x.reshape([b * nv, s, heads, dh]).swap_dims(1, 2); // [B·V, H, S, Dh]
    let q = pass.rope.apply(to_seq(q), true);
    let mut k = pass.rope.apply(to_seq(k), false);
    let mut v = to_seq(v);
    let mut shared = None;
    // Without a cache, causal over the pass's own patches; with one (fixed capacity), causal
    // over its written entries: a decode step's one patch sees them all.
    let mut mask = if s > 1 { Mask::Causal } else { Mask::None };
    if let Some((entry, share)) = cache {
        let (all_k, all_v, len, prefix) = entry.append(k, v);
        (k, v, mask) = (all_k, all_v, Mask::Cache { len });
        shared = prefix.map(|p| (p, share, len));
    }
    let o = match shared {
        // Decode steps of sample paths over a shared prefill.
        Some(((kp, vp), share, len)) => attend_shared(q, (&kp, &vp), (k, v, len), share),
        None => {
            let divisor = (dh as f64).sqrt();
            pass.ops.attention_core(q, k, v, divisor, &mask)?
        }
    }; // [B·V, H, S, Dh]
    Ok(o.swap_dims(1, 2).reshape([b, nv, s, heads * dh]))
}

/// Bidirectional attention across the variates with equal ids, per patch. Returns
/// `[B, V, S, D]`.
fn space_wise<B: LayerOps>(
    q: Tensor<5>,
    k: Tensor<5>,
    v: Tensor<5>,
    pass: &Pass<'_, B>,
) -> Result<Tensor<4>> {
    let [b, nv, s, heads, dh] = q.dims();
    let to_var = |x: Tensor<5>| x.permute([0, 2, 3, 1, 4]).reshape([b * s, heads, nv, dh]);
    let ids = pass.ids.clone().permute([0, 2, 1]).reshape([b * s, nv]); // [B·S, V]
    let mask = Mask::Blocked(group_blocked(ids));
    let divisor = (dh as f64).sqrt();
    let o = pass
        .ops
        .attention_core(to_var(q), to_var(k), to_var(v), divisor, &mask)?; // [B·S, H, V, Dh]
    Ok(o.reshape([b, s, heads, nv, dh])
        .permute([0, 3, 1, 2, 4])
        .reshape([b, nv, s, heads * dh]))
}
