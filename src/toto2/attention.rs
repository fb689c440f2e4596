//! Toto 2.0's self-attention (`SelfAttention`): one fused projection to queries (`H` heads),
//! keys and values (`G` groups), RMSNorm on queries and keys, an optional learned per-dimension
//! query scale, rotary (+ xPos) on the first half of each head in time layers, scores scaled by
//! `1/d_k` (not `1/√d_k`), grouped-query heads (head `h` reads group `h / (H/G)`).

use std::sync::OnceLock;

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

use super::config::Toto2Config;
use super::layers::{Norm, Precision, Scale, UnitLinear};
use crate::backend::cpu_gemm::PackedMatrix;
use crate::nn::checkpoint::Checkpoint;
use crate::nn::host::{self, Blocked, Heads, HostRope, QkNorm, QkPrep};
use crate::nn::linear::host_values;
use crate::nn::rope::Rope;

/// dd-unit-scaling's per-dimension scale constant.
const PDS_SCALE: f64 = 0.52103;

/// The keys and values a time layer has cached (`[N, G, len, d]`), for block decoding.
#[derive(Debug, Clone, Default)]
pub(crate) struct KvLayer {
    entries: Option<(Tensor<4>, Tensor<4>)>,
}

impl KvLayer {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }
}

/// One attention layer's weights.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    in_proj: UnitLinear,
    out_proj: UnitLinear,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    /// The per-dimension query multiplier `softplus(p)/(0.52103 ln 2)`, `[d_k]`.
    per_dim_scale: Option<Tensor<1>>,
    /// The per-dimension multiplier's values, read the first time the CPU path needs them.
    per_dim_host: OnceLock<Vec<f32>>,
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
            per_dim_host: OnceLock::new(),
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
            per_dim_host: OnceLock::new(),
            heads: c.num_heads,
            groups: c.num_groups,
            qk: c.qk_dim,
            v: c.v_dim,
        }
    }

    /// Attention over `x: [N, S, D]` (`N` sequences of `S` elements): `blocked` (broadcast to
    /// `[N, H, S, S_kv]`) is true where a query may not see a key; `rope` rotates queries and
    /// keys (time layers); with `cache`, this call's keys and values are appended to it and
    /// attention reads all of them. Returns `[N, S, D]`.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&Rope>,
        blocked: Option<Tensor<4, Bool>>,
        cache: Option<&mut KvLayer>,
    ) -> Tensor<3> {
        let [n, s, _] = x.dims();
        let (h, g, dk, dv) = (self.heads, self.groups, self.qk, self.v);
        let qkv = self.in_proj.forward(x); // [N, S, H·dk + G·dk + G·dv]
        let split = |start: usize, heads: usize, d: usize| {
            qkv.clone()
                .narrow(2, start, heads * d)
                .reshape([n, s, heads, d])
                .swap_dims(1, 2) // [N, heads, S, d]
        };
        let mut q = split(0, h, dk);
        let mut k = split(h * dk, g, dk);
        let mut v = split(h * dk + g * dk, g, dv);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        if let Some(r) = &self.per_dim_scale {
            q = q
                .mul(r.clone().reshape([1, 1, 1, dk]))
                .mul_scalar(PDS_SCALE);
        }
        if let Some(rope) = rope {
            q = rope.apply(q, true);
            k = rope.apply(k, false);
        }
        if let Some(cache) = cache {
            if let Some((pk, pv)) = cache.entries.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            cache.entries = Some((k.clone(), v.clone()));
        }
        let s_kv = k.dims()[2];
        let per_group = h / g;
        let heads = |t: Tensor<4>, d: usize| {
            t.reshape([n, g, 1, s_kv, d])
                .expand([n, g, per_group, s_kv, d])
                .reshape([n, h, s_kv, d])
        };
        let (k, v) = (heads(k, dk), heads(v, dv));
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar(dk as f64); // [N, H, S, S_kv]
        if let Some(blocked) = blocked {
            scores = scores.mask_fill(blocked.expand([n, h, s, s_kv]), f32::NEG_INFINITY);
        }
        let o = softmax(scores, 3).matmul(v); // [N, H, S, dv]
        self.out_proj
            .forward(o.swap_dims(1, 2).reshape([n, s, h * dv]))
    }
}

/// An attention layer's weights as the CPU path reads them ([`Attention::host`]).
pub(crate) struct HostAttention<'a> {
    attn: &'a Attention,
    in_proj: &'a PackedMatrix,
    out_proj: &'a PackedMatrix,
}

impl Attention {
    /// The layer for the CPU path: both projections packed for the CPU kernel; `None` where
    /// they have none (f16 weights, another device, a CPU without a kernel).
    pub(crate) fn host(&self) -> Option<HostAttention<'_>> {
        Some(HostAttention {
            attn: self,
            in_proj: self.in_proj.host()?,
            out_proj: self.out_proj.host()?,
        })
    }
}

impl HostAttention<'_> {
    /// [`Attention::forward`] on host values without a cache: `z` is `[n, s, D]` (`n` sequences
    /// of `s` elements), `blocked` `[n or 1, s, s]`; returns `[n, s, D]`. `mark` is called
    /// after the projection (`qkv`) and after attention (`core`), for phase timing.
    pub(crate) fn forward(
        &self,
        z: &[f32],
        [n, s]: [usize; 2],
        rope: Option<&HostRope>,
        blocked: Option<Blocked<'_>>,
        mark: &mut dyn FnMut(&str, Option<&[f32]>),
    ) -> Vec<f32> {
        let a = self.attn;
        let qkv = self.in_proj.apply(z, n * s);
        mark("qkv", None);
        let norm = match (&a.q_norm, &a.k_norm) {
            (Some(q), Some(k)) => Some(QkNorm {
                query: q.host_weight(),
                key: k.host_weight(),
                eps: q.eps(),
            }),
            _ => None,
        };
        let per_dim = a.per_dim_scale.as_ref().map(|r| {
            let r = a
                .per_dim_host
                .get_or_init(|| host_values(r.clone().mul_scalar(1.0)));
            (r.as_slice(), PDS_SCALE as f32)
        });
        let prep = QkPrep {
            norm,
            query_scale: per_dim,
            rope,
        };
        let heads = Heads {
            heads: a.heads,
            groups: a.groups,
            qk: a.qk,
            v: a.v,
        };
        let o = host::attention(&qkv, [n, s], heads, prep, a.qk as f32, blocked);
        mark("core", None);
        self.out_proj.apply(&o, n * s)
    }
}

impl KvLayer {
    /// Drops the last `n` entries (the zero-filled prediction patches of a block, which the
    /// next block overwrites with its medians).
    pub(crate) fn rewind(&mut self, n: usize) {
        if let Some((k, v)) = self.entries.take() {
            let keep = k.dims()[2].saturating_sub(n);
            self.entries = (keep > 0).then(|| (k.narrow(2, 0, keep), v.narrow(2, 0, keep)));
        }
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
