//! The KV cache of Toto's time-wise layers, with a prefix shared by every sample path.

use burn::tensor::Tensor;

use crate::backend::ScalerState;

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
    /// The xPos centre of the passes that write this cache, when not their own (a streaming
    /// session writes every key at centre 0; see [`KvCache::recentred`]).
    pub(crate) xpos_centre: Option<usize>,
}

impl Default for KvCache {
    fn default() -> Self {
        KvCache {
            layers: Vec::new(),
            patches: 0,
            share: 1,
            scaler: None,
            xpos_centre: None,
        }
    }
}

impl KvCache {
    /// Layer `i`'s entry of a model with `layers` layers (space-wise layers keep theirs empty),
    /// and how many rows share its prefix.
    pub(crate) fn layer(&mut self, i: usize, layers: usize) -> (&mut LayerCache, usize) {
        if self.layers.len() < layers {
            self.layers.resize(layers, LayerCache::default());
        }
        (&mut self.layers[i], self.share)
    }

    /// Records `patches` more patches cached by a pass.
    pub(crate) fn advance(&mut self, patches: usize) {
        self.patches += patches;
    }

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
            xpos_centre: self.xpos_centre,
        }
    }

    /// The cache with every key (written at xPos centre 0) multiplied by `factor` (`[Dh]`):
    /// the keys a prefill at another centre would have written ([`key_recentring`]); later
    /// passes use their own centre, as the references' decode steps do.
    ///
    /// [`key_recentring`]: crate::nn::rope::key_recentring
    pub(crate) fn recentred(&self, factor: &Tensor<1>) -> Self {
        let scale = |k: &Tensor<4>| {
            let dh = k.dims()[3];
            k.clone().mul(factor.clone().reshape([1, 1, 1, dh]))
        };
        let layers = self
            .layers
            .iter()
            .map(|l| LayerCache {
                shared: l.shared.as_ref().map(|(k, v)| (scale(k), v.clone())),
                own: l.own.as_ref().map(|(k, v)| (scale(k), v.clone())),
            })
            .collect();
        KvCache {
            layers,
            patches: self.patches,
            share: self.share,
            scaler: self.scaler.clone(),
            xpos_centre: None,
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
            xpos_centre: self.xpos_centre,
        }
    }
}

impl LayerCache {
    /// Appends a pass's keys and values (`[rows, H, S, Dh]`) to this layer's own entries and
    /// returns all of them, with the shared prefix they follow (if any).
    pub(crate) fn append(
        &mut self,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>, Option<(Tensor<4>, Tensor<4>)>) {
        let (k, v) = match self.own.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.own = Some((k.clone(), v.clone()));
        (k, v, self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Int, TensorData};

    use super::*;
    use crate::toto::backbone::TotoWeights;
    use crate::toto::config::TotoConfig;

    #[test]
    fn a_shared_prefix_attends_like_a_repeated_one() {
        use crate::backend::Backend as _;
        let ops = crate::backend::NdArray::seeded(3);
        let device = ops.device().clone();
        let mut config = TotoConfig::open_base_1_0();
        (config.patch_size, config.stride, config.embed_dim) = (4, 4, 16);
        (config.num_layers, config.num_heads, config.mlp_hidden_dim) = (3, 2, 24);
        config.spacewise_every_n_layers = 3;
        config.output_distribution_kwargs.k_components = 3;
        let kinds = config.layer_kinds();
        let weights = TotoWeights::init(&config, &device);
        let head = weights.fused_head(&config);
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
            let hidden = weights
                .forward(
                    &ops,
                    &config,
                    &kinds,
                    x.0.clone(),
                    x.1.clone(),
                    Some(cache),
                    &mut crate::nn::watch::Watch::Names(&mut |_| {}),
                )
                .unwrap();
            head.forward(&ops, hidden)
                .unwrap()
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
