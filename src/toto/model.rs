//! Toto's backbone: patch embedding, the time-/space-wise transformer stack, unembedding and
//! the Student-T mixture head, as burn modules on any device.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::config::{LayerKind, TotoConfig};
use crate::backend::ScalerState;

/// RMSNorm with toto-ts's parameter name (`scale`) and epsilon (1e-8, inside the root).
#[derive(Module, Debug)]
pub(crate) struct RmsNorm {
    pub(crate) scale: Param<Tensor<1>>,
}

const RMS_EPS: f64 = 1e-8;

impl RmsNorm {
    fn new(d: usize, device: &Device) -> Self {
        RmsNorm {
            scale: Param::from_tensor(Tensor::ones([d], device)),
        }
    }

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = x
            .clone()
            .square()
            .mean_dim(D - 1)
            .add_scalar(RMS_EPS)
            .sqrt();
        let mut shape = [1; D];
        shape[D - 1] = self.scale.dims()[0];
        x.div(rms).mul(self.scale.val().reshape(shape))
    }
}

/// `wQKV` and `wO` (renamed on load: Rust fields are snake case).
#[derive(Module, Debug)]
pub(crate) struct Attention {
    pub(crate) wqkv: Linear,
    pub(crate) wo: Linear,
}

/// SwiGLU: `w12` projects to `[gate | up]`, `w3` back.
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    pub(crate) w12: Linear,
    pub(crate) w3: Linear,
}

impl Mlp {
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = dense(&self.w12, x);
        let f = y.dims()[D - 1] / 2;
        let [gate, up] = y.split(f, D - 1).try_into().expect("split in two halves");
        dense(&self.w3, silu(gate).mul(up))
    }
}

/// `linear` over every row of `x: [.., K]` as one product `[rows, K] × [K, N]`. burn's `Linear`
/// on a rank-4 input multiplies each leading index separately: at a decode step that is one
/// matrix-vector product per (path, variate), each re-packing the weight on the CPU.
fn dense<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let mut dims = x.dims();
    let k = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = linear.forward(x.reshape([rows, k]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// One pre-norm transformer layer.
#[derive(Module, Debug)]
pub(crate) struct Layer {
    pub(crate) norm1: RmsNorm,
    pub(crate) norm2: RmsNorm,
    pub(crate) attention: Attention,
    pub(crate) mlp: Mlp,
}

/// `patch_embed.projection`.
#[derive(Module, Debug)]
pub(crate) struct PatchEmbed {
    pub(crate) projection: Linear,
}

/// `transformer.layers.{i}`.
#[derive(Module, Debug)]
pub(crate) struct Transformer {
    pub(crate) layers: Vec<Layer>,
}

/// `output_distribution.*`: the mixture head's four projections.
#[derive(Module, Debug)]
pub(crate) struct Head {
    pub(crate) df: Linear,
    pub(crate) loc_proj: Linear,
    pub(crate) scale_proj: Linear,
    pub(crate) mixture_weights: Linear,
}

/// Toto's weights, named as in the checkpoint (after the loader's renaming).
#[derive(Module, Debug)]
pub struct TotoWeights {
    pub(crate) patch_embed: PatchEmbed,
    pub(crate) transformer: Transformer,
    pub(crate) unembed: Linear,
    pub(crate) output_distribution: Head,
}

fn linear(i: usize, o: usize, device: &Device) -> Linear {
    LinearConfig::new(i, o).init(device)
}

impl TotoWeights {
    /// Randomly initialised weights of the shapes `config` describes (burn's default
    /// initialisers; norms at 1).
    pub(crate) fn init(config: &TotoConfig, device: &Device) -> Self {
        let (d, p, f, k) = (
            config.embed_dim,
            config.patch_size,
            config.mlp_hidden_dim,
            config.k_components(),
        );
        let layers = (0..config.num_layers)
            .map(|_| Layer {
                norm1: RmsNorm::new(d, device),
                norm2: RmsNorm::new(d, device),
                attention: Attention {
                    wqkv: linear(d, 3 * d, device),
                    wo: linear(d, d, device),
                },
                mlp: Mlp {
                    w12: linear(d, 2 * f, device),
                    w3: linear(f, d, device),
                },
            })
            .collect();
        TotoWeights {
            patch_embed: PatchEmbed {
                projection: linear(p, d, device),
            },
            transformer: Transformer { layers },
            unembed: linear(d, d * p, device),
            output_distribution: Head {
                df: linear(d, k, device),
                loc_proj: linear(d, k, device),
                scale_proj: linear(d, k, device),
                mixture_weights: linear(d, k, device),
            },
        }
    }
}

/// The cached keys and values of one time-wise layer, post-rotary.
///
/// `shared` holds the keys and values of a prefix common to every group of `share` consecutive
/// blocks of rows (the prefill of one context, shared by `share` sample paths: `[B·V, H, S₀, Dh]`
/// for rows `[share·B·V, …]`, sample index outer); `own` holds each row's later patches
/// (`[share·B·V, H, S₁, Dh]`).
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerCache {
    pub(crate) shared: Option<(Tensor<4>, Tensor<4>)>,
    pub(crate) own: Option<(Tensor<4>, Tensor<4>)>,
}

/// The KV cache of every time-wise layer (space-wise layers need none).
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    /// Patches cached so far.
    pub(crate) patches: usize,
    /// How many sample paths share each layer's `shared` prefix.
    pub(crate) share: usize,
    /// The scaler's running statistics, when the first pass allowed continuing them (see
    /// `Toto::forward`); otherwise every pass rereads the whole series.
    pub(crate) scaler: Option<ScalerState>,
}

impl Default for KvCache {
    fn default() -> Self {
        KvCache {
            layers: Vec::new(),
            patches: 0,
            share: 1,
            scaler: None,
        }
    }
}

impl KvCache {
    /// Patches held.
    pub fn len(&self) -> usize {
        self.patches
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.patches == 0
    }

    /// The cache for `times` sample paths of every row (sample index outer), without copying
    /// the prefix: what is cached so far becomes the shared prefix every path attends to, and
    /// only the patches decoded from here on are stored per path. Attention over a shared
    /// prefix is the same arithmetic as over a prefix repeated `times` ([`KvCache::repeat`]),
    /// reassociated (a unit test compares them).
    pub(crate) fn share(&self, times: usize) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|l| match (&l.shared, &l.own) {
                (None, own) => LayerCache {
                    shared: own.clone(),
                    own: None,
                },
                (Some(shared), own) => LayerCache {
                    shared: Some(shared.clone()),
                    own: own.as_ref().map(|(k, v)| {
                        (
                            k.clone().repeat_dim(0, times),
                            v.clone().repeat_dim(0, times),
                        )
                    }),
                },
            })
            .collect();
        let share = if self.layers.iter().any(|l| l.shared.is_some()) {
            self.share * times
        } else {
            times
        };
        KvCache {
            layers,
            patches: self.patches,
            share,
            scaler: self.scaler.as_ref().map(|s| s.repeat(times)),
        }
    }

    /// The cache with every entry materialised `times` over along the batch (sample index
    /// outer): the reference [`KvCache::share`] is tested against.
    #[cfg(test)]
    pub(crate) fn repeat(&self, times: usize) -> Self {
        let rows = |shared: &Tensor<4>, own: Option<&Tensor<4>>| {
            let prefix = shared.clone().repeat_dim(0, self.share * times);
            match own {
                None => prefix,
                Some(own) => Tensor::cat(vec![prefix, own.clone().repeat_dim(0, times)], 2),
            }
        };
        let layers = self
            .layers
            .iter()
            .map(|l| match (&l.shared, &l.own) {
                (None, own) => LayerCache {
                    shared: None,
                    own: own.as_ref().map(|(k, v)| {
                        (
                            k.clone().repeat_dim(0, times),
                            v.clone().repeat_dim(0, times),
                        )
                    }),
                },
                (Some((sk, sv)), own) => LayerCache {
                    shared: None,
                    own: Some((
                        rows(sk, own.as_ref().map(|o| &o.0)),
                        rows(sv, own.as_ref().map(|o| &o.1)),
                    )),
                },
            })
            .collect();
        KvCache {
            layers,
            patches: self.patches,
            share: 1,
            scaler: self.scaler.as_ref().map(|s| s.repeat(times)),
        }
    }
}

/// The head's raw outputs over `[B, V, S·P, K]`.
#[derive(Debug, Clone)]
pub(crate) struct HeadOutput {
    pub(crate) df: Tensor<4>,
    pub(crate) loc: Tensor<4>,
    pub(crate) scale: Tensor<4>,
    pub(crate) logits: Tensor<4>,
}

/// `torch.finfo(float32).eps`, the head's floor for softplus outputs.
const F32_EPS: f32 = f32::EPSILON;

/// torch's softplus with threshold 20: `x` above 20, `ln(1 + eˣ)` below (accurate for very
/// negative `x` through [`special::log1p`](crate::special::log1p)).
fn softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let big = x.clone().greater_elem(20.0);
    let small = crate::special::log1p(x.clone().clamp_max(20.0).exp());
    small.mask_where(big, x)
}

/// Rotary angles (interleaved) and xPos scales (half-split) for positions
/// `offset..offset + s`, computed in f32 as toto-ts does: `[s, Dh]` each.
pub(crate) fn rope_tables(s: usize, offset: usize, dh: usize) -> (Vec<f32>, Vec<f32>) {
    let half = dh / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / dh as f32))
        .collect();
    let base: Vec<f32> = (0..half)
        .map(|i| (2.0 * i as f32 + 0.4 * dh as f32) / (1.4 * dh as f32))
        .collect();
    let max_pos = (offset + s).saturating_sub(1) as f32;
    let center = (max_pos / 2.0).floor();
    let mut angles = Vec::with_capacity(s * dh);
    let mut scales = Vec::with_capacity(s * dh);
    for j in 0..s {
        let pos = (offset + j) as f32;
        for f in &inv_freq {
            let a = pos * f;
            angles.extend([a, a]);
        }
        let power = (pos - center) / 512.0;
        let sc: Vec<f32> = base.iter().map(|b| b.powf(power)).collect();
        scales.extend_from_slice(&sc);
        scales.extend_from_slice(&sc);
    }
    (angles, scales)
}

/// The rotary + xPos factors of one forward pass, `[1, 1, S, Dh]` each, built once and shared
/// by every time-wise layer.
struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
    scale: Tensor<4>,
}

impl Rope {
    fn new(s: usize, offset: usize, dh: usize, device: &Device) -> Self {
        let (angles, scales) = rope_tables(s, offset, dh);
        let angles = Tensor::<2>::from_data(TensorData::new(angles, [s, dh]), device);
        let scale = Tensor::<2>::from_data(TensorData::new(scales, [s, dh]), device);
        Rope {
            cos: angles.clone().cos().reshape([1, 1, s, dh]),
            sin: angles.sin().reshape([1, 1, s, dh]),
            scale: scale.reshape([1, 1, s, dh]),
        }
    }

    /// Rotary position embedding with xPos on `x: [N, H, S, Dh]`: times the scale for queries,
    /// divided by it for keys.
    fn apply(&self, x: Tensor<4>, query: bool) -> Tensor<4> {
        let [n, h, s, dh] = x.dims();
        // Interleaved rotate_half: (x0, x1) -> (-x1, x0) for each pair.
        let pairs = x.clone().reshape([n, h, s, dh / 2, 2]);
        let x0 = pairs.clone().slice([0..n, 0..h, 0..s, 0..dh / 2, 0..1]);
        let x1 = pairs.slice([0..n, 0..h, 0..s, 0..dh / 2, 1..2]);
        let rotated = Tensor::cat(vec![x1.neg(), x0], 4).reshape([n, h, s, dh]);
        let y = x.mul(self.cos.clone()).add(rotated.mul(self.sin.clone()));
        if query {
            y.mul(self.scale.clone())
        } else {
            y.div(self.scale.clone())
        }
    }
}

/// `softmax(q kᵀ / √Dh + mask) v` with `mask` true where attention is *not* allowed.
fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, blocked: Option<Tensor<4, Bool>>) -> Tensor<4> {
    let dh = q.dims()[3];
    let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f64).sqrt());
    if let Some(blocked) = blocked {
        scores = scores.mask_fill(blocked, f32::NEG_INFINITY);
    }
    softmax(scores, 3).matmul(v)
}

/// [`attend`] for queries `q: [share·N, H, S, Dh]` over a prefix `(kp, vp): [N, H, S₀, Dh]`
/// shared by the `share` blocks of `N` rows, followed by each row's own keys and values
/// `(ko, vo): [share·N, H, S₁, Dh]` (no mask: every query sees the whole cache). The prefix is never
/// repeated: the `share` queries of a row become extra query rows against its one prefix.
fn attend_shared(
    q: Tensor<4>,
    (kp, vp): (&Tensor<4>, &Tensor<4>),
    (ko, vo): (Tensor<4>, Tensor<4>),
    share: usize,
) -> Tensor<4> {
    let [rows, h, s, dh] = q.dims();
    let n = rows / share;
    let s0 = kp.dims()[2];
    let scale = (dh as f64).sqrt();
    // [share·N, H, S, ·] <-> [N, H, share·S, ·]
    let gather = |x: Tensor<4>| {
        let w = x.dims()[3];
        x.reshape([share, n, h, s, w])
            .permute([1, 2, 0, 3, 4])
            .reshape([n, h, share * s, w])
    };
    let scatter = |x: Tensor<4>| {
        let w = x.dims()[3];
        x.reshape([n, h, share, s, w])
            .permute([2, 0, 1, 3, 4])
            .reshape([rows, h, s, w])
    };
    let prefix_scores =
        scatter(gather(q.clone()).matmul(kp.clone().swap_dims(2, 3))).div_scalar(scale);
    let s1 = ko.dims()[2];
    let own_scores = q.matmul(ko.swap_dims(2, 3)).div_scalar(scale);
    let weights = softmax(Tensor::cat(vec![prefix_scores, own_scores], 3), 3);
    let wp = weights.clone().slice([0..rows, 0..h, 0..s, 0..s0]);
    let wo = weights.slice([0..rows, 0..h, 0..s, s0..s0 + s1]);
    scatter(gather(wp).matmul(vp.clone())).add(wo.matmul(vo))
}

impl TotoWeights {
    /// The backbone from scaled inputs `[B, V, T]` (T a multiple of P; only the patches not yet
    /// in `cache`) and patch ids `[B, V, S]` to the head's outputs over `[B, V, T, K]`.
    /// `hook` sees every named intermediate (for conformance tests).
    pub(crate) fn forward(
        &self,
        config: &TotoConfig,
        kinds: &[LayerKind],
        scaled: Tensor<3>,
        ids: Tensor<3, Int>,
        mut cache: Option<&mut KvCache>,
        hook: &mut dyn FnMut(&str, Tensor<4>),
    ) -> HeadOutput {
        let [b, v, t] = scaled.dims();
        let (p, d, heads) = (config.patch_size, config.embed_dim, config.num_heads);
        let dh = d / heads;
        let s = t / p;
        let offset = cache.as_ref().map_or(0, |c| c.patches);
        let mut h = dense(&self.patch_embed.projection, scaled.reshape([b, v, s, p]));
        hook("patch_embed", h.clone());
        let rope = Rope::new(s, offset, dh, &h.device());
        for (i, (layer, kind)) in self.transformer.layers.iter().zip(kinds).enumerate() {
            let z = layer.norm1.forward(h.clone());
            hook(&format!("layer{i}.norm1"), z.clone());
            // wQKV's outputs are laid out (qkv, head_dim, heads), head index fastest.
            let qkv = dense(&layer.attention.wqkv, z)
                .reshape([b, v, s, 3, dh, heads])
                .swap_dims(4, 5); // [B, V, S, 3, H, Dh]
            let part = |j: usize| {
                qkv.clone()
                    .slice([0..b, 0..v, 0..s, j..j + 1, 0..heads, 0..dh])
                    .reshape([b, v, s, heads, dh])
            };
            let (q, k, val) = (part(0), part(1), part(2));
            let o = match kind {
                LayerKind::Time => {
                    let to_seq = |x: Tensor<5>| x.reshape([b * v, s, heads, dh]).swap_dims(1, 2);
                    let q = rope.apply(to_seq(q), true);
                    let mut k = rope.apply(to_seq(k), false);
                    let mut val = to_seq(val);
                    let mut shared = None;
                    if let Some(cache) = cache.as_deref_mut() {
                        if cache.layers.len() < kinds.len() {
                            cache.layers.resize(kinds.len(), LayerCache::default());
                        }
                        let entry = &mut cache.layers[i];
                        if let Some((pk, pv)) = &entry.own {
                            k = Tensor::cat(vec![pk.clone(), k], 2);
                            val = Tensor::cat(vec![pv.clone(), val], 2);
                        }
                        entry.own = Some((k.clone(), val.clone()));
                        shared = entry.shared.clone().map(|p| (p, cache.share));
                    }
                    let o = match shared {
                        // Decode steps of sample paths over a shared prefill.
                        Some(((kp, vp), share)) => attend_shared(q, (&kp, &vp), (k, val), share),
                        None => {
                            // Causal at prefill; a decode step's one patch sees the whole cache.
                            let blocked = (offset == 0 && s > 1).then(|| {
                                Tensor::<2, Bool>::tril_mask([s, s], 0, &h.device())
                                    .reshape([1, 1, s, s])
                                    .expand([b * v, heads, s, s])
                            });
                            attend(q, k, val, blocked)
                        }
                    };
                    o // [B·V, H, S, Dh]
                        .swap_dims(1, 2)
                        .reshape([b, v, s, d])
                }
                LayerKind::Space => {
                    let to_var =
                        |x: Tensor<5>| x.permute([0, 2, 3, 1, 4]).reshape([b * s, heads, v, dh]);
                    let id = ids.clone().permute([0, 2, 1]).reshape([b * s, 1, v]); // [B·S, 1, V]
                    let blocked = id
                        .clone()
                        .reshape([b * s, 1, v, 1])
                        .not_equal(id.reshape([b * s, 1, 1, v]))
                        .expand([b * s, heads, v, v]);
                    attend(to_var(q), to_var(k), to_var(val), Some(blocked))
                        .reshape([b, s, heads, v, dh])
                        .permute([0, 3, 1, 2, 4])
                        .reshape([b, v, s, d])
                }
            };
            let a = dense(&layer.attention.wo, o);
            hook(&format!("layer{i}.attention"), a.clone());
            h = h.add(a);
            let z = layer.norm2.forward(h.clone());
            hook(&format!("layer{i}.norm2"), z.clone());
            let m = layer.mlp.forward(z);
            hook(&format!("layer{i}.mlp"), m.clone());
            h = h.add(m);
            hook(&format!("layer{i}.out"), h.clone());
        }
        if let Some(cache) = cache {
            cache.patches += s;
        }
        // Unembed: token s yields P feature vectors (patch-internal offset outer).
        let u = dense(&self.unembed, h).reshape([b, v, s * p, d]);
        hook("flattened", u.clone());
        // The four head projections as one product: `u` is the largest tensor of a decode step
        // (rows × P × D) and is read once instead of four times.
        let head = &self.output_distribution;
        let projections = [
            &head.df,
            &head.loc_proj,
            &head.scale_proj,
            &head.mixture_weights,
        ];
        let k = config.k_components();
        let weight = Tensor::cat(projections.iter().map(|l| l.weight.val()).collect(), 1);
        let bias = Tensor::cat(
            projections
                .iter()
                .map(|l| match &l.bias {
                    Some(b) => b.val(),
                    None => Tensor::zeros([k], &weight.device()),
                })
                .collect(),
            0,
        );
        let rows = b * v * s * p;
        let y = u
            .reshape([rows, d])
            .matmul(weight)
            .add(bias.reshape([1, 4 * k]));
        let part = |j: usize| {
            y.clone()
                .slice([0..rows, j * k..(j + 1) * k])
                .reshape([b, v, s * p, k])
        };
        HeadOutput {
            df: softplus(part(0)).clamp_min(F32_EPS).add_scalar(2.0),
            loc: part(1),
            scale: softplus(part(2)).clamp_min(F32_EPS),
            logits: part(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_tables_follow_toto_layout() {
        // Dh = 4: two frequencies 1 and 1/100; positions 0..3, centre floor(2/2) = 1.
        let (angles, scales) = rope_tables(3, 0, 4);
        assert_eq!(&angles[8..12], &[2.0, 2.0, 0.02, 0.02]);
        let s0 = (0.0 + 1.6) / 5.6f32;
        let s1 = (2.0 + 1.6) / 5.6f32;
        // Position 0: power (0 - 1)/512; half-split: [s0, s1, s0, s1].
        let want = [s0, s1, s0, s1].map(|s| s.powf(-1.0 / 512.0));
        for (g, w) in scales[..4].iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{g} vs {w}");
        }
    }

    #[test]
    fn a_shared_prefix_attends_like_a_repeated_one() {
        use crate::Backend as _;
        let cpu = crate::NdArray::seeded(3);
        let device = cpu.device().clone();
        let mut config = TotoConfig::open_base_1_0();
        (config.patch_size, config.stride, config.embed_dim) = (4, 4, 16);
        (config.num_layers, config.num_heads, config.mlp_hidden_dim) = (3, 2, 24);
        config.spacewise_every_n_layers = 3;
        config.output_distribution_kwargs.k_components = 3;
        let kinds = config.layer_kinds();
        let weights = TotoWeights::init(&config, &device);
        let (b, v, p, times) = (2, 3, 4, 3);
        let input = |rows: usize, patches: usize| {
            let n = rows * v * patches * p;
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            (
                Tensor::<3>::from_data(TensorData::new(x, [rows, v, patches * p]), &device),
                Tensor::<3, Int>::zeros([rows, v, patches], &device),
            )
        };
        let run = |x: &(Tensor<3>, Tensor<3, Int>), cache: &mut KvCache| {
            weights
                .forward(
                    &config,
                    &kinds,
                    x.0.clone(),
                    x.1.clone(),
                    Some(cache),
                    &mut |_, _| {},
                )
                .loc
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let mut prefill = KvCache::default();
        run(&input(b, 5), &mut prefill);
        let mut shared = prefill.share(times);
        let mut repeated = prefill.repeat(times);
        // Two decode steps (the second attends to a shared prefix and an own part), then
        // sharing again between them.
        for step in 0..3 {
            if step == 2 {
                shared = shared.share(2);
                repeated = repeated.repeat(2);
            }
            let rows = b * times * if step == 2 { 2 } else { 1 };
            let x = input(rows, 1);
            let (got, want) = (run(&x, &mut shared), run(&x, &mut repeated));
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "step {step}: {g} vs {w}"
                );
            }
        }
        assert_eq!(shared.share, 2 * times);
    }
}
