//! Toto's backbone (toto-ts's `TotoBackbone` after the scaler): patch embedding, the
//! time-/space-wise transformer stack, unembedding and the mixture head, as burn modules named
//! as in the checkpoint.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use super::attention::Pass;
use super::attention::QkvLayout;
use super::cache::KvCache;
use super::config::{LayerKind, TotoConfig};
use super::head::{FusedHead, Head};
use super::layer::Layer;
use crate::backend::{LayerOps, Prepared};
use crate::error::Result;
use crate::nn::linear::{dense, linear};
use crate::nn::rope::{RopeSpec, rotary_centred};
use crate::nn::watch::Watch;

/// `patch_embed.projection`: one patch of `P` steps to a `D`-vector.
#[derive(Module, Debug)]
pub(crate) struct PatchEmbed {
    pub(crate) projection: Linear,
    /// What the backend derives from `projection` (not in the checkpoint).
    #[module(skip)]
    pub(crate) prepared: Prepared,
}

/// `transformer.layers.{i}`.
#[derive(Module, Debug)]
pub(crate) struct Transformer {
    pub(crate) layers: Vec<Layer>,
}

/// Toto's weights, named as in the checkpoint (after the loader's renaming).
#[derive(Module, Debug)]
pub struct TotoWeights {
    pub(crate) patch_embed: PatchEmbed,
    pub(crate) transformer: Transformer,
    pub(crate) unembed: Linear,
    pub(crate) output_distribution: Head,
}

impl TotoWeights {
    /// Every layer's `wQKV` outputs reordered to `to` (see [`QkvLayout`]).
    pub(crate) fn qkv_layout(mut self, heads: usize, to: QkvLayout) -> Self {
        self.transformer.layers = std::mem::take(&mut self.transformer.layers)
            .into_iter()
            .map(|mut layer| {
                layer.attention = layer.attention.qkv_layout(heads, to);
                layer
            })
            .collect();
        self
    }

    /// Randomly initialised weights of the shapes `config` describes (burn's default
    /// initialisers; norms at 1).
    pub(crate) fn init(config: &TotoConfig, device: &Device) -> Self {
        let (d, p) = (config.embed_dim, config.patch_size);
        let layers = (0..config.num_layers)
            .map(|_| Layer::new(d, config.mlp_hidden_dim, device))
            .collect();
        TotoWeights {
            patch_embed: PatchEmbed {
                projection: linear(p, d, device),
                prepared: Prepared::default(),
            },
            transformer: Transformer { layers },
            unembed: linear(d, d * p, device),
            output_distribution: Head::new(d, config.k_components(), device),
        }
    }

    /// The unembedding and the mixture head composed into one product (see [`FusedHead`]).
    pub(crate) fn fused_head(&self, config: &TotoConfig) -> FusedHead {
        FusedHead::new(&self.unembed, &self.output_distribution, config.patch_size)
    }

    /// The backbone from scaled inputs `[B, V, T]` (T a multiple of P; only the patches not yet
    /// in `cache`) and patch ids `[B, V, S]` to the last layer's output `[B, V, S, D]`, which
    /// [`TotoWeights::fused_head`] turns into the mixture's parameters. `watch` sees every named
    /// intermediate (for conformance tests): `patch_embed`, `layer{i}.{norm1, attention, norm2,
    /// mlp, out}`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward<B: LayerOps>(
        &self,
        ops: &B,
        config: &TotoConfig,
        kinds: &[LayerKind],
        scaled: Tensor<3>,
        ids: Tensor<3, Int>,
        mut cache: Option<&mut KvCache>,
        watch: &mut Watch<'_>,
    ) -> Result<Tensor<4>> {
        let [b, v, t] = scaled.dims();
        let (p, d, heads) = (config.patch_size, config.embed_dim, config.num_heads);
        let s = t / p;
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let embed = &self.patch_embed;
        let mut h = dense(
            ops,
            &embed.projection,
            &embed.prepared,
            scaled.reshape([b, v, s, p]),
        )?;
        watch.show("patch_embed", || h.clone());
        let positions: Vec<usize> = (offset..offset + s).collect();
        let centre = cache.as_ref().and_then(|c| c.xpos_centre);
        let rope = rotary_centred(RopeSpec::toto(d / heads), &positions, centre, &h.device())?;
        let pass = Pass {
            ops,
            rope: &rope,
            ids: &ids,
            heads,
        };
        let layers = &self.transformer.layers;
        for (i, (layer, kind)) in layers.iter().zip(kinds).enumerate() {
            let entry = match (kind, cache.as_deref_mut()) {
                (LayerKind::Time, Some(cache)) => Some(cache.layer(i, layers.len())),
                _ => None,
            };
            h = layer.forward(h, *kind, &pass, entry, &format!("layer{i}"), watch)?;
        }
        if let Some(cache) = cache {
            cache.advance(s);
        }
        Ok(h)
    }
}
