//! Toto 2.0's decoder (`VariateTimeTransformerDecoder`): groups of pre-norm layers with
//! unit-scaled residuals, each attending along time (causal, rotary) or across the variates of a
//! time step (within series ids), then the output norm.

use burn::tensor::{Bool, Device, Int, Tensor};

use super::attention::Attention;
use super::config::Toto2Config;
use super::layers::{Ffn, Norm, Precision, residual_taus};
use super::model::EMPTY_PATCH;
use crate::backend::{LayerOps, Mask, Rotary};
use crate::error::Result;
use crate::nn::attention::group_blocked;
use crate::nn::checkpoint::Checkpoint;
use crate::nn::kv::KvBuffer;
use crate::nn::rope::{RopeSpec, rotary_centred};
pub(crate) use crate::nn::watch::Watch;

/// One transformer layer (`SelfAttentionTransformerLayer`).
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    variate: bool,
    attn_tau: f32,
    mlp_tau: f32,
    norm1: Norm,
    norm2: Norm,
    attn: Attention,
    ffn: Ffn,
}

/// The decoder's weights.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    layers: Vec<Layer>,
    out_norm: Norm,
    rope: RopeSpec,
}

/// The positions and groups of one decoder call.
pub(crate) struct Pass<'a> {
    /// The patch index of each of the `S` patches (rotary positions).
    pub(crate) time_ids: &'a [usize],
    /// Group ids per patch, `[B, V, S]`: the series id, or `EMPTY_PATCH` for a patch without
    /// observations.
    pub(crate) gids: Tensor<3, Int>,
    /// Mask time attention by group (toto-2's `has_missing_values`): patches without
    /// observations then form their own causal stream.
    pub(crate) has_missing_values: bool,
    /// The time layers' mask when the caller builds it (a streaming session's passes, which
    /// continue a cache as a prefill would); `None`: [`Decoder::time_mask`]'s.
    pub(crate) time_mask: Option<Mask>,
    /// The xPos centre of the pass when not its own (a streaming session writes every key at
    /// centre 0, so that keys of different passes agree).
    pub(crate) xpos_centre: Option<usize>,
}

/// The KV cache of block decoding and streaming sessions: one fixed-capacity buffer per time
/// layer ([`KvBuffer`]), the validity of the cached context patches, and how many entries of
/// each call are dropped after it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    layers: Vec<KvBuffer>,
    /// `[B·V, prefill]`: false for the context patches without observations (never attended by
    /// later queries).
    valid: Option<Tensor<2, Bool>>,
    /// Entries of each call dropped after it (the zero-filled prediction patches).
    pub(crate) ephemeral: usize,
    /// The entries each layer's buffers are allocated for (see [`KvBuffer::with_capacity`]).
    reserve: usize,
}

impl Cache {
    /// An empty cache whose layers hold `patches` entries without reallocating: the patches
    /// of every call it will see, so that they all attend over one shape.
    pub(crate) fn with_capacity(patches: usize) -> Self {
        Cache {
            reserve: patches,
            ..Cache::default()
        }
    }

    /// Entries held (after the last call's rewind).
    pub(crate) fn len(&self) -> usize {
        self.layers.first().map_or(0, KvBuffer::len)
    }

    /// The keys a time layer reads in a call of `s` patches (its buffers' capacity then):
    /// the width of that call's time mask.
    pub(crate) fn width(&self, s: usize) -> usize {
        match self.layers.first() {
            Some(layer) => layer.capacity_after(s),
            None => KvBuffer::with_capacity(self.reserve).capacity_after(s),
        }
    }

    /// Time layer `i`'s buffers.
    fn layer(&mut self, i: usize) -> &mut KvBuffer {
        if self.layers.len() <= i {
            let empty = KvBuffer::with_capacity(self.reserve);
            self.layers.resize(i + 1, empty);
        }
        &mut self.layers[i]
    }

    /// Drops every time layer's last `n` entries.
    pub(crate) fn rewind(&mut self, n: usize) {
        for layer in &mut self.layers {
            layer.rewind(n);
        }
    }

    /// Every time layer holding `len` entries again (see [`KvBuffer::set_len`]).
    pub(crate) fn set_len(&mut self, len: usize) {
        for layer in &mut self.layers {
            layer.set_len(len);
        }
    }
}

impl Decoder {
    /// Every layer's attention projections and feed-forward layers in `precision`.
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        for layer in &mut self.layers {
            layer.attn.set_precision(precision);
            layer.ffn.set_precision(precision);
        }
    }

    /// Loads `transformer.*` for `config`; the tau buffers are read from the checkpoint.
    pub(crate) fn load(ckpt: &mut Checkpoint, c: &Toto2Config, device: &Device) -> Option<Self> {
        let mut layers = Vec::with_capacity(c.num_layers);
        let mut complete = true;
        for i in 0..c.num_layers {
            let name = format!("transformer.layers.{i}");
            let taus = (
                ckpt.scalar(&format!("{name}.attn_tau")),
                ckpt.scalar(&format!("{name}.mlp_tau")),
            );
            let d = c.d_model;
            let w = c.norm_include_weight;
            let norm1 = Norm::load(ckpt, &format!("{name}.norm1"), d, w, c.norm_eps, device);
            let norm2 = Norm::load(ckpt, &format!("{name}.norm2"), d, w, c.norm_eps, device);
            let attn = Attention::load(ckpt, &format!("{name}.attn"), c, device);
            let ffn = Ffn::load(
                ckpt,
                &format!("{name}.ffn"),
                [d, c.d_ff],
                c.mlp_bias,
                device,
            );
            // Keep reading after a problem, so that every bad key is reported at once.
            match (taus, norm1, norm2, attn, ffn) {
                (
                    (Some(attn_tau), Some(mlp_tau)),
                    Some(norm1),
                    Some(norm2),
                    Some(attn),
                    Some(ffn),
                ) => layers.push(Layer {
                    variate: c.is_variate(i),
                    attn_tau,
                    mlp_tau,
                    norm1,
                    norm2,
                    attn,
                    ffn,
                }),
                _ => complete = false,
            }
        }
        let out_norm = Norm::load(
            ckpt,
            "transformer.out_norm",
            c.d_model,
            c.norm_include_weight,
            c.norm_eps,
            device,
        );
        Some(Decoder {
            layers: complete.then_some(layers)?,
            out_norm: out_norm?,
            rope: RopeSpec::toto2(c.qk_dim, c.use_xpos),
        })
    }

    /// Random weights of `config`'s shapes, the taus by the residual scaling rule.
    pub(crate) fn random(c: &Toto2Config, device: &Device) -> Self {
        let taus = residual_taus(c.num_layers, c.residual_mult, c.residual_attn_ratio);
        let w = c.norm_include_weight;
        let layers = taus
            .into_iter()
            .enumerate()
            .map(|(i, (attn_tau, mlp_tau))| Layer {
                variate: c.is_variate(i),
                attn_tau,
                mlp_tau,
                norm1: Norm::ones(c.d_model, w, c.norm_eps, device),
                norm2: Norm::ones(c.d_model, w, c.norm_eps, device),
                attn: Attention::random(c, device),
                ffn: Ffn::random([c.d_model, c.d_ff], c.mlp_bias, device),
            })
            .collect();
        Decoder {
            layers,
            out_norm: Norm::ones(c.d_model, w, c.norm_eps, device),
            rope: RopeSpec::toto2(c.qk_dim, c.use_xpos),
        }
    }

    /// The decoder over `state` (`[B, V, S, D]`). With `cache`, the call's keys and values are
    /// appended to each time layer's entries (the first call fills it: the prefill); a later
    /// call's queries see every entry. `watch` sees each layer's intermediates.
    pub(crate) fn forward<B: LayerOps>(
        &self,
        ops: &B,
        state: Tensor<4>,
        pass: &Pass<'_>,
        cache: Option<&mut Cache>,
        watch: &mut Watch<'_>,
    ) -> Result<Tensor<4>> {
        ops.forward_pass(|| self.layers(ops, state, pass, cache, watch))
    }

    /// [`Decoder::forward`]'s layers and output norm.
    fn layers<B: LayerOps>(
        &self,
        ops: &B,
        state: Tensor<4>,
        pass: &Pass<'_>,
        mut cache: Option<&mut Cache>,
        watch: &mut Watch<'_>,
    ) -> Result<Tensor<4>> {
        let [b, v, s, d] = state.dims();
        let device = state.device();
        let rope = rotary_centred(self.rope, pass.time_ids, pass.xpos_centre, &device)?;
        let time_mask = match &pass.time_mask {
            Some(mask) => mask.clone(),
            None => self.time_mask(pass, cache.as_deref_mut(), [b, v, s], &device),
        };
        let variate_mask = variate_blocked(&pass.gids);
        let mut x = state.reshape([b * v, s, d]); // [B·V, S, D]
        let mut time_layer = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layer{i}");
            if layer.variate {
                let y = x
                    .reshape([b, v, s, d])
                    .swap_dims(1, 2)
                    .reshape([b * s, v, d]); // [B·S, V, D]
                let view = |t: Tensor<3>| t.reshape([b, s, v, d]).swap_dims(1, 2);
                let at = Site {
                    ops,
                    rope: None,
                    mask: variate_mask.clone(),
                    cache: None,
                };
                let y = layer.forward(at, y, &name, watch, view)?;
                x = y
                    .reshape([b, s, v, d])
                    .swap_dims(1, 2)
                    .reshape([b * v, s, d]); // [B·V, S, D]
            } else {
                let ephemeral = cache.as_ref().map_or(0, |c| c.ephemeral);
                let entry = cache.as_deref_mut().map(|c| c.layer(time_layer));
                let view = |t: Tensor<3>| t.reshape([b, v, s, d]);
                let at = Site {
                    ops,
                    rope: Some(&rope),
                    mask: time_mask.clone(),
                    cache: entry,
                };
                x = layer.forward(at, x, &name, watch, view)?;
                if let Some(c) = cache.as_deref_mut() {
                    c.layers[time_layer].rewind(ephemeral);
                }
                time_layer += 1;
            }
        }
        let out = self.out_norm.forward(ops, x.reshape([b, v, s, d]))?;
        watch.show("out_norm", || out.clone());
        Ok(out)
    }

    /// The time layers' mask, `[B·V, 1, S, S_kv]` true where blocked: causal (and within the
    /// group id when `has_missing_values`) for a call without cached entries; for a call that
    /// continues a cache, causal with the offset of the cached entries and never the cached
    /// context patches without observations. With a cache, `S_kv` is its buffers' capacity
    /// and the unwritten entries are blocked. `None` when nothing is blocked.
    fn time_mask(
        &self,
        pass: &Pass<'_>,
        cache: Option<&mut Cache>,
        [b, v, s]: [usize; 3],
        device: &Device,
    ) -> Mask {
        let rows = b * v;
        let gids = pass.gids.clone().reshape([rows, s]);
        let cached = cache.as_ref().map_or(0, |c| c.len());
        let width = cache.as_ref().map_or(s, |c| c.width(s));
        // Query i (at cache position cached + i) sees entries 0..=cached + i: never the
        // unwritten ones after the call's own.
        let later = || {
            Tensor::<2, Bool>::tril_mask([s, width], cached as i64, device)
                .reshape([1, 1, s, width])
                .expand([rows, 1, s, width])
        };
        if cached == 0 {
            if let Some(c) = cache {
                c.valid = Some(gids.clone().not_equal_elem(EMPTY_PATCH));
            }
            if !pass.has_missing_values || s == 1 {
                return match (s > 1, width > s) {
                    (_, true) => Mask::Cache { len: s },
                    (true, false) => Mask::Causal,
                    (false, false) => Mask::None,
                };
            }
            let other = gids
                .clone()
                .reshape([rows, 1, s, 1])
                .not_equal(gids.reshape([rows, 1, 1, s]));
            return Mask::Blocked(later().bool_or(widen(other, width)));
        }
        let Some(valid) = cache.and_then(|c| c.valid.clone()) else {
            return Mask::Cache { len: cached + s };
        };
        let known = valid.dims()[1].min(width);
        let valid = Tensor::cat(
            vec![
                valid.narrow(1, 0, known),
                Tensor::<2, Int>::ones([rows, width - known], device).bool(),
            ],
            1,
        );
        let invalid = valid.bool_not().reshape([rows, 1, 1, width]);
        Mask::Blocked(later().bool_or(invalid.expand([rows, 1, s, width])))
    }
}

/// `mask` (`[N, 1, S, K]`) with `width − K` more keys, not blocked by it.
fn widen(mask: Tensor<4, Bool>, width: usize) -> Tensor<4, Bool> {
    let [n, one, s, k] = mask.dims();
    if width <= k {
        return mask;
    }
    let pad = Tensor::<4, Int>::zeros([n, one, s, width - k], &mask.device()).bool();
    Tensor::cat(vec![mask, pad], 3)
}

/// The variate layers' mask, `[B·S, 1, V, V]` true where blocked: variates attend to the
/// variates with the same group id at the same patch. `None` for one variate.
fn variate_blocked(gids: &Tensor<3, Int>) -> Mask {
    let [b, v, s] = gids.dims();
    let ids = gids.clone().swap_dims(1, 2).reshape([b * s, v]); // [B·S, V]
    match v > 1 {
        true => Mask::Blocked(group_blocked(ids)),
        false => Mask::None,
    }
}

/// Where a layer runs: the backend's ops, the rotary factors (time layers), the mask, and the
/// layer's KV cache entry.
struct Site<'a, B> {
    ops: &'a B,
    rope: Option<&'a Rotary>,
    mask: Mask,
    cache: Option<&'a mut KvBuffer>,
}

impl Layer {
    /// `x1 = residual(attn(norm1(x)), x, τa)`, `out = residual(ffn(norm2(x1)), x1, τm)` on
    /// `x: [N, S, D]`; `view` turns a `[N, S, D]` tensor into `[B, V, S, D]` for the hook.
    fn forward<B: LayerOps>(
        &self,
        at: Site<'_, B>,
        x: Tensor<3>,
        name: &str,
        watch: &mut Watch<'_>,
        view: impl Fn(Tensor<3>) -> Tensor<4>,
    ) -> Result<Tensor<3>> {
        let ops = at.ops;
        let z = self.norm1.forward(ops, x.clone())?;
        watch.show(&format!("{name}.norm1"), || view(z.clone()));
        let a = self.attn.forward(ops, z, at.rope, at.mask, at.cache)?;
        watch.show(&format!("{name}.attention"), || view(a.clone()));
        let x1 = ops.residual_add(a, x, self.attn_tau)?;
        let f = self
            .ffn
            .forward(ops, self.norm2.forward(ops, x1.clone())?)?;
        let out = ops.residual_add(f, x1, self.mlp_tau)?;
        watch.show(&format!("{name}.out"), || view(out.clone()));
        Ok(out)
    }
}
