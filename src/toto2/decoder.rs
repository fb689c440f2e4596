//! Toto 2.0's decoder (`VariateTimeTransformerDecoder`): groups of pre-norm layers with
//! unit-scaled residuals, each attending along time (causal, rotary) or across the variates of a
//! time step (within series ids), then the output norm.

use burn::tensor::{Bool, DType, Device, Int, Tensor};

use super::attention::{Attention, HostAttention, KvLayer};
use super::config::Toto2Config;
use super::layers::{Ffn, Norm, Precision, residual_add, residual_taus};
use super::model::EMPTY_PATCH;
use crate::backend::cpu_gemm::PackedMatrix;
use crate::backend::transfer::upload;
use crate::nn::attention::group_blocked;
use crate::nn::checkpoint::Checkpoint;
use crate::nn::host::{self, Blocked, HostRope};
use crate::nn::linear::{host_values, is_cpu};
use crate::nn::rope::{Rope, RopeSpec, rope_tables};

/// What a decoder call shows of its intermediates `layer{i}.norm1`, `.attention`, `.out` and
/// `out_norm` (each `[B, V, S, D]`).
pub(crate) enum Watch<'a> {
    /// Each intermediate as a tensor (the fixture tests).
    Tensors(&'a mut (dyn FnMut(&str, Tensor<4>) + Send)),
    /// Each intermediate's name once it is computed (phase timing): no tensor is made for it.
    Names(&'a mut (dyn FnMut(&str) + Send)),
}

impl Watch<'_> {
    /// Shows the intermediate `name`; `tensor` makes it, only when the watcher wants tensors.
    pub(crate) fn show(&mut self, name: &str, tensor: impl FnOnce() -> Tensor<4>) {
        match self {
            Watch::Tensors(f) => f(name, tensor()),
            Watch::Names(f) => f(name),
        }
    }

    /// A point between two steps that have no intermediate of their own, for phase timing
    /// only (the CPU path's products and attention core).
    fn mark(&mut self, name: impl FnOnce() -> String) {
        if let Watch::Names(f) = self {
            f(&name());
        }
    }
}

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
}

/// The KV cache of block decoding: one entry per time layer, the validity of the cached
/// context patches, and how many entries of each call are dropped after it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    layers: Vec<KvLayer>,
    /// `[B·V, prefill]`: false for the context patches without observations (never attended by
    /// later queries).
    valid: Option<Tensor<2, Bool>>,
    /// Entries of each call dropped after it (the zero-filled prediction patches).
    pub(crate) ephemeral: usize,
}

impl Cache {
    /// Entries held (after the last call's rewind).
    pub(crate) fn len(&self) -> usize {
        self.layers.first().map_or(0, KvLayer::len)
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
    ///
    /// On the CPU (f32 layers with the packed kernel, no cache) the whole decoder runs on host
    /// values ([`Decoder::forward_host`]); everywhere else as burn tensor ops.
    pub(crate) fn forward(
        &self,
        state: Tensor<4>,
        pass: &Pass<'_>,
        mut cache: Option<&mut Cache>,
        watch: &mut Watch<'_>,
    ) -> Tensor<4> {
        if cache.is_none() && state.dtype() == DType::F32 && is_cpu(&state.device()) {
            let layers: Option<Vec<HostLayer<'_>>> = self.layers.iter().map(Layer::host).collect();
            if let Some(layers) = layers {
                // On one of rayon's threads: the products and attention inside then start their
                // parallel parts on the calling thread while the other threads join, instead of
                // handing each one to the pool and sleeping until it is done (a wake-up per
                // product, costly on virtual machines).
                return rayon::scope(|_| self.forward_host(&layers, state, pass, watch));
            }
        }
        let [b, v, s, d] = state.dims();
        let device = state.device();
        let rope = Rope::new(self.rope, pass.time_ids, &device);
        let time_mask = self.time_mask(pass, cache.as_deref_mut(), [b, v, s], &device);
        let variate_mask = variate_blocked(&pass.gids);
        let mut x = state.reshape([b * v, s, d]); // [B·V, S, D]
        let mut time_layer = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("layer{i}");
            if layer.variate {
                let y = x
                    .reshape([b, v, s, d])
                    .swap_dims(1, 2)
                    .reshape([b * s, v, d]);
                let y = layer.forward(y, None, variate_mask.clone(), None, &name, watch, |t| {
                    t.reshape([b, s, v, d]).swap_dims(1, 2)
                });
                x = y
                    .reshape([b, s, v, d])
                    .swap_dims(1, 2)
                    .reshape([b * v, s, d]);
            } else {
                let ephemeral = cache.as_ref().map_or(0, |c| c.ephemeral);
                let entry = cache.as_deref_mut().map(|c| {
                    if c.layers.len() <= time_layer {
                        c.layers.resize(time_layer + 1, KvLayer::default());
                    }
                    &mut c.layers[time_layer]
                });
                let reshape = |t: Tensor<3>| t.reshape([b, v, s, d]);
                x = layer.forward(
                    x,
                    Some(&rope),
                    time_mask.clone(),
                    entry,
                    &name,
                    watch,
                    reshape,
                );
                if let Some(c) = cache.as_deref_mut() {
                    c.layers[time_layer].rewind(ephemeral);
                }
                time_layer += 1;
            }
        }
        let out = self.out_norm.forward(x.reshape([b, v, s, d]));
        watch.show("out_norm", || out.clone());
        out
    }

    /// [`Decoder::forward`] on the CPU without a cache: the residual stream stays in one host
    /// buffer from the first layer to the output norm; each layer is a few passes over it
    /// ([`crate::nn::host`]) around the packed products. The same arithmetic as the tensor path,
    /// in f32; the fixture tests compare both with toto-2.
    fn forward_host(
        &self,
        layers: &[HostLayer<'_>],
        state: Tensor<4>,
        pass: &Pass<'_>,
        watch: &mut Watch<'_>,
    ) -> Tensor<4> {
        let [b, v, s, d] = state.dims();
        let device = state.device();
        let mut x = host_values(state); // [B, V, S, D]
        let gids: Vec<i64> = pass.gids.clone().into_data().iter::<i64>().collect(); // [B, V, S]
        let (angles, scales) = rope_tables(self.rope, pass.time_ids);
        let rope = HostRope::new(self.rope.rotated, &angles, scales);
        let time_blocked = time_blocked_host(&gids, [b * v, s], pass.has_missing_values);
        let variate_blocked = (v > 1).then(|| variate_blocked_host(&gids, [b, v, s]));
        for (i, layer) in layers.iter().enumerate() {
            let variate = layer.layer.variate;
            let (blocked, layout, n, len) = match variate {
                true => {
                    x = host::swap_middle(&x, [b, v, s, d]); // [B, S, V, D]
                    let blocked = variate_blocked.as_deref().map(|m| Blocked {
                        blocked: m,
                        shared: false,
                    });
                    (blocked, None, b * s, v)
                }
                false => {
                    let blocked = time_blocked.as_ref().map(|(m, shared)| Blocked {
                        blocked: m,
                        shared: *shared,
                    });
                    (blocked, Some(&rope), b * v, s)
                }
            };
            // Each intermediate as `[B, V, S, D]`, made only when the watcher wants tensors.
            let mut show = |part: &str, values: Option<&[f32]>| {
                let Some(values) = values else {
                    return watch.mark(|| format!("layer{i}.{part}"));
                };
                watch.show(&format!("layer{i}.{part}"), || {
                    let values = match variate {
                        true => host::swap_middle(values, [b, s, v, d]),
                        false => values.to_vec(),
                    };
                    upload(values, [b, v, s, d], &device)
                })
            };
            layer.forward(&mut x, [n, len, d], layout, blocked, &mut show);
            if variate {
                x = host::swap_middle(&x, [b, s, v, d]);
            }
        }
        let eps = self.out_norm.eps();
        let out = host::rms_norm(&x, d, self.out_norm.host_weight(), eps);
        let out = upload(out, [b, v, s, d], &device);
        watch.show("out_norm", || out.clone());
        out
    }

    /// The time layers' mask, `[B·V, 1, S, S_kv]` true where blocked: causal (and within the
    /// group id when `has_missing_values`) for a call without cached entries; for a call that
    /// continues a cache, causal with the offset of the cached entries and never the cached
    /// context patches without observations. `None` when nothing is blocked.
    fn time_mask(
        &self,
        pass: &Pass<'_>,
        cache: Option<&mut Cache>,
        [b, v, s]: [usize; 3],
        device: &Device,
    ) -> Option<Tensor<4, Bool>> {
        let rows = b * v;
        let gids = pass.gids.clone().reshape([rows, s]);
        let cached = cache.as_ref().map_or(0, |c| c.len());
        if cached == 0 {
            if let Some(c) = cache {
                c.valid = Some(gids.clone().not_equal_elem(EMPTY_PATCH));
            }
            let later = Tensor::<2, Bool>::tril_mask([s, s], 0, device).reshape([1, 1, s, s]);
            if !pass.has_missing_values || s == 1 {
                return (s > 1).then_some(later);
            }
            let other = gids
                .clone()
                .reshape([rows, 1, s, 1])
                .not_equal(gids.reshape([rows, 1, 1, s]));
            return Some(later.expand([rows, 1, s, s]).bool_or(other));
        }
        let kv = cached + s;
        // Query i (at cache position cached + i) sees entries 0..=cached + i.
        let later =
            Tensor::<2, Bool>::tril_mask([s, kv], cached as i64, device).reshape([1, 1, s, kv]);
        let valid = cache.and_then(|c| c.valid.clone())?;
        let known = valid.dims()[1].min(kv);
        let valid = Tensor::cat(
            vec![
                valid.narrow(1, 0, known),
                Tensor::<2, Int>::ones([rows, kv - known], device).bool(),
            ],
            1,
        );
        let invalid = valid.bool_not().reshape([rows, 1, 1, kv]);
        Some(
            later
                .expand([rows, 1, s, kv])
                .bool_or(invalid.expand([rows, 1, s, kv])),
        )
    }
}

/// The time layers' mask on the host for a call without cache, `[rows or 1, S, S]` true where
/// blocked (and whether one `[S, S]` block serves every row): causal, and within the group id
/// when `has_missing_values`, as [`Decoder::time_mask`]. `None` when nothing is blocked.
fn time_blocked_host(
    gids: &[i64],
    [rows, s]: [usize; 2],
    has_missing_values: bool,
) -> Option<(Vec<bool>, bool)> {
    if !has_missing_values || s == 1 {
        let causal = (0..s * s).map(|at| at % s > at / s).collect();
        return (s > 1).then_some((causal, true));
    }
    let mut blocked = vec![false; rows * s * s];
    for (r, block) in blocked.chunks_exact_mut(s * s).enumerate() {
        let ids = &gids[r * s..(r + 1) * s];
        for (at, b) in block.iter_mut().enumerate() {
            let (i, j) = (at / s, at % s);
            *b = j > i || ids[i] != ids[j];
        }
    }
    Some((blocked, false))
}

/// The variate layers' mask on the host, `[B·S, V, V]` true where blocked: as
/// [`variate_blocked`], from the group ids `[B, V, S]`.
fn variate_blocked_host(gids: &[i64], [b, v, s]: [usize; 3]) -> Vec<bool> {
    let mut blocked = vec![false; b * s * v * v];
    for (r, block) in blocked.chunks_exact_mut(v * v).enumerate() {
        let (batch, pos) = (r / s, r % s);
        let id = |variate: usize| gids[(batch * v + variate) * s + pos];
        for (at, x) in block.iter_mut().enumerate() {
            *x = id(at / v) != id(at % v);
        }
    }
    blocked
}

/// The variate layers' mask, `[B·S, 1, V, V]` true where blocked: variates attend to the
/// variates with the same group id at the same patch. `None` for one variate.
fn variate_blocked(gids: &Tensor<3, Int>) -> Option<Tensor<4, Bool>> {
    let [b, v, s] = gids.dims();
    let ids = gids.clone().swap_dims(1, 2).reshape([b * s, v]); // [B·S, V]
    (v > 1).then(|| group_blocked(ids, 1))
}

impl Layer {
    /// `x1 = residual(attn(norm1(x)), x, τa)`, `out = residual(ffn(norm2(x1)), x1, τm)` on
    /// `x: [N, S, D]`; `view` turns a `[N, S, D]` tensor into `[B, V, S, D]` for the hook.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&Rope>,
        blocked: Option<Tensor<4, Bool>>,
        cache: Option<&mut KvLayer>,
        name: &str,
        watch: &mut Watch<'_>,
        view: impl Fn(Tensor<3>) -> Tensor<4>,
    ) -> Tensor<3> {
        let z = self.norm1.forward(x.clone());
        watch.show(&format!("{name}.norm1"), || view(z.clone()));
        let a = self.attn.forward(z, rope, blocked, cache);
        watch.show(&format!("{name}.attention"), || view(a.clone()));
        let x1 = residual_add(a, x, self.attn_tau);
        let f = self.ffn.forward(self.norm2.forward(x1.clone()));
        let out = residual_add(f, x1, self.mlp_tau);
        watch.show(&format!("{name}.out"), || view(out.clone()));
        out
    }

    /// The layer for the CPU path: every product packed for the CPU kernel; `None` where one
    /// has none.
    fn host(&self) -> Option<HostLayer<'_>> {
        Some(HostLayer {
            layer: self,
            attn: self.attn.host()?,
            ffn: self.ffn.host()?,
        })
    }
}

/// A layer's weights as the CPU path reads them ([`Layer::host`]).
struct HostLayer<'a> {
    layer: &'a Layer,
    attn: HostAttention<'a>,
    /// `fc1`, `fc2`.
    ffn: [&'a PackedMatrix; 2],
}

impl HostLayer<'_> {
    /// [`Layer::forward`] on host values, `x: [n, len, D]` updated in place; `show` sees the
    /// layer's `norm1`, `attention` and `out` as they are computed, and marks the steps between
    /// (`qkv`, `core`, `fc1`, `gate`) without values.
    fn forward(
        &self,
        x: &mut [f32],
        [n, len, d]: [usize; 3],
        rope: Option<&HostRope>,
        blocked: Option<Blocked<'_>>,
        show: &mut dyn FnMut(&str, Option<&[f32]>),
    ) {
        let l = self.layer;
        let z = host::rms_norm(x, d, l.norm1.host_weight(), l.norm1.eps());
        show("norm1", Some(&z));
        let a = self.attn.forward(&z, [n, len], rope, blocked, show);
        show("attention", Some(&a));
        host::residual_add(&a, x, l.attn_tau);
        let z2 = host::rms_norm(x, d, l.norm2.host_weight(), l.norm2.eps());
        let [fc1, fc2] = self.ffn;
        let y = fc1.apply(&z2, n * len);
        show("fc1", None);
        let g = host::silu_gate(&y, fc2.dims()[0]);
        show("gate", None);
        let f = fc2.apply(&g, n * len);
        host::residual_add(&f, x, l.mlp_tau);
        show("out", Some(x));
    }
}
