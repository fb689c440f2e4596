//! Toto 2.0's self-attention (`SelfAttention`): one fused projection to queries (`H` heads),
//! keys and values (`G` groups), RMSNorm on queries and keys, an optional learned per-dimension
//! query scale, rotary (+ xPos) on the first half of each head in time layers, scores scaled by
//! `1/d_k` (not `1/√d_k`), grouped-query heads (head `h` reads group `h / (H/G)`).

use burn::tensor::{Device, Tensor};

use super::config::Toto2Config;
use super::layers::{Norm, Precision, Scale, UnitLinear};
use crate::backend::{AttentionSpec, Heads, LayerOps, Mask, QkNorm, Rotary};
use crate::error::Result;
use crate::nn::checkpoint::Checkpoint;
use crate::nn::kv::KvBuffer;

/// dd-unit-scaling's per-dimension scale constant.
const PDS_SCALE: f64 = 0.52103;

/// One attention layer's weights.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    in_proj: UnitLinear,
    out_proj: UnitLinear,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    /// The per-dimension query multiplier `softplus(p)/(0.52103 ln 2)`, `[d_k]`.
    per_dim_scale: Option<Tensor<1>>,
    heads: usize,
    groups: usize,
    qk: usize,
    v: usize,
}

impl Attention {
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        self.in_proj.set_precision(precision);
        self.out_proj.set_precision(precision);
    }

    /// Loads `{name}.*` for `config`.
    pub(crate) fn load(
        ckpt: &mut Checkpoint,
        name: &str,
        c: &Toto2Config,
        device: &Device,
    ) -> Option<Self> {
        let width = c.in_proj_width();
        let in_proj = UnitLinear::load(
            ckpt,
            &format!("{name}.in_proj"),
            [c.d_model, width],
            c.attn_bias,
            Scale::Hidden,
            device,
        );
        let out_proj = UnitLinear::load(
            ckpt,
            &format!("{name}.out_proj"),
            [c.v_dim * c.num_heads, c.d_model],
            c.attn_bias,
            Scale::Hidden,
            device,
        );
        let weighted = c.qk_norm_include_weight;
        let norm = |ckpt: &mut Checkpoint, which: &str| {
            c.qk_norm.then(|| {
                let name = format!("{name}.{which}");
                Norm::load(ckpt, &name, c.qk_dim, weighted, c.norm_eps, device)
            })
        };
        let q_norm = norm(ckpt, "q_norm");
        let k_norm = norm(ckpt, "k_norm");
        let pds = c.per_dim_scale.then(|| {
            let p = ckpt.tensor(&format!("{name}._pds.per_dim_scale"), [c.qk_dim], device);
            p.map(per_dim_multiplier)
        });
        Some(Attention {
            in_proj: in_proj?,
            out_proj: out_proj?,
            q_norm: q_norm.map_or(Some(None), |n| n.map(Some))?,
            k_norm: k_norm.map_or(Some(None), |n| n.map(Some))?,
            per_dim_scale: pds.map_or(Some(None), |p| p.map(Some))?,
            heads: c.num_heads,
            groups: c.num_groups,
            qk: c.qk_dim,
            v: c.v_dim,
        })
    }

    /// Random weights of `config`'s shapes (norm weights 1, per-dimension scale 0: identity).
    pub(crate) fn random(c: &Toto2Config, device: &Device) -> Self {
        let weighted = c.qk_norm_include_weight;
        let norm = || {
            c.qk_norm
                .then(|| Norm::ones(c.qk_dim, weighted, c.norm_eps, device))
        };
        Attention {
            in_proj: UnitLinear::random(
                [c.d_model, c.in_proj_width()],
                c.attn_bias,
                Scale::Hidden,
                device,
            ),
            out_proj: UnitLinear::random(
                [c.v_dim * c.num_heads, c.d_model],
                c.attn_bias,
                Scale::Hidden,
                device,
            ),
            q_norm: norm(),
            k_norm: norm(),
            per_dim_scale: c
                .per_dim_scale
                .then(|| per_dim_multiplier(Tensor::zeros([c.qk_dim], device))),
            heads: c.num_heads,
            groups: c.num_groups,
            qk: c.qk_dim,
            v: c.v_dim,
        }
    }

    /// Attention over `x: [N, S, D]` (`N` sequences of `S` elements): `mask` says which
    /// queries may not see which keys; `rope` rotates queries and keys (time layers); with
    /// `cache`, this call's keys and values are written to it and attention reads its whole
    /// buffers (the mask then covers all of their entries, the unwritten ones blocked).
    /// Returns `[N, S, D]`.
    pub(crate) fn forward<B: LayerOps>(
        &self,
        ops: &B,
        x: Tensor<3>,
        rope: Option<&Rotary>,
        mask: Mask,
        cache: Option<&mut KvBuffer>,
    ) -> Result<Tensor<3>> {
        let [n, s, _] = x.dims();
        let qkv = self.in_proj.forward(ops, x)?; // [N, S, H·dk + G·dk + G·dv]
        let spec = AttentionSpec {
            heads: Heads {
                heads: self.heads,
                groups: self.groups,
                qk: self.qk,
                v: self.v,
            },
            divisor: self.qk as f64,
            qk_norm: self
                .q_norm
                .as_ref()
                .zip(self.k_norm.as_ref())
                .map(|(q, k)| QkNorm {
                    query: q.weight(),
                    key: k.weight(),
                    eps: q.eps(),
                }),
            query_scale: self.per_dim_scale.as_ref().map(|m| (m, PDS_SCALE)),
            rotary: rope,
            mask,
        };
        let o = match cache {
            None => ops.attention(qkv, &spec)?,
            Some(cache) => {
                let (q, k, v) = ops.attention_heads(qkv, &spec)?;
                let (k, v) = cache.write(k, v);
                let o = ops.attention_core(q, k, v, spec.divisor, &spec.mask)?; // [N, H, S, dv]
                o.swap_dims(1, 2).reshape([n, s, self.heads * self.v])
            }
        };
        self.out_proj.forward(ops, o)
    }
}

/// dd-unit-scaling's `PerDimScale` multiplier: `(softplus(p) / 0.52103) / ln 2` (softplus with
/// threshold 20); the query is then multiplied by it and by 0.52103.
fn per_dim_multiplier(p: Tensor<1>) -> Tensor<1> {
    let big = p.clone().greater_elem(20.0);
    let soft = crate::special::log1p(p.clone().clamp_max(20.0).exp()).mask_where(big, p);
    soft.mul_scalar(1.0 / PDS_SCALE)
        .div_scalar(std::f64::consts::LN_2)
}
