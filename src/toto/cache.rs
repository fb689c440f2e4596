//! The KV cache of Toto's time-wise layers, with a prefix shared by every sample path.

use burn::tensor::Tensor;

use crate::backend::ScalerState;
use crate::nn::kv::KvBuffer;

/// The cached keys and values of one time-wise layer, post-rotary.
///
/// `shared` holds the keys and values of a prefix common to every group of `share` consecutive
/// blocks of rows (the prefill of one context, shared by `share` sample paths: `[B·V, H, S₀, Dh]`
/// for rows `[share·B·V, …]`, sample index outer); `own` holds each row's later patches
/// (`[share·B·V, H, S₁, Dh]` written, in buffers of fixed capacity).
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerCache {
    pub(crate) shared: Option<Prefix>,
    pub(crate) own: KvBuffer,
}

/// A prefix shared by sample paths: the buffers of the cache it was written to, whole
/// (`[B·V, H, capacity, Dh]`), of which the first `len` entries are written; readers mask the
/// rest ([`KvBuffer::whole`]).
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    pub(crate) k: Tensor<4>,
    pub(crate) v: Tensor<4>,
    pub(crate) len: usize,
}

/// [`KvCache::checkpoint`]: the state a failed pass restores.
#[derive(Debug)]
pub(crate) struct CacheCheckpoint {
    patches: usize,
    lens: Vec<usize>,
    scaler: Option<ScalerState>,
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
    /// The patches each layer's `own` buffers are allocated for.
    pub(crate) reserve: usize,
}

impl Default for KvCache {
    fn default() -> Self {
        KvCache {
            layers: Vec::new(),
            patches: 0,
            share: 1,
            scaler: None,
            xpos_centre: None,
            reserve: 0,
        }
    }
}

impl KvCache {
    /// An empty cache whose layers hold `patches` patches without reallocating: every pass
    /// up to then attends over one shape, each writing its keys and values in place. A cache
    /// that outgrows its capacity reallocates to twice as much (a copy, and a new shape for
    /// the passes after it); [`KvCache::default`] starts with none.
    pub fn with_capacity(patches: usize) -> Self {
        KvCache {
            reserve: patches,
            ..KvCache::default()
        }
    }

    /// Layer `i`'s entry of a model with `layers` layers (space-wise layers keep theirs empty),
    /// and how many rows share its prefix.
    pub(crate) fn layer(&mut self, i: usize, layers: usize) -> (&mut LayerCache, usize) {
        if self.layers.len() < layers {
            let empty = LayerCache {
                shared: None,
                own: KvBuffer::with_capacity(self.reserve),
            };
            self.layers.resize(layers, empty);
        }
        (&mut self.layers[i], self.share)
    }

    /// What a pass changes: the patches held, each layer's written length, the scaler's
    /// statistics ([`KvCache::restore`] puts them back; entries written since are then
    /// overwritten by the next pass before any reads them).
    pub(crate) fn checkpoint(&self) -> CacheCheckpoint {
        CacheCheckpoint {
            patches: self.patches,
            lens: self.layers.iter().map(|l| l.own.len()).collect(),
            scaler: self.scaler.clone(),
        }
    }

    /// Puts back what [`KvCache::checkpoint`] saw (a pass that failed).
    pub(crate) fn restore(&mut self, saved: CacheCheckpoint) {
        self.patches = saved.patches;
        self.scaler = saved.scaler;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.own.set_len(saved.lens.get(i).copied().unwrap_or(0));
        }
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
    /// only the patches decoded from here on are stored per path (in buffers of `capacity`
    /// patches). Attention over a shared prefix is the same arithmetic as over a prefix
    /// repeated `times` ([`KvCache::repeat`]), reassociated (a unit test compares them).
    pub(crate) fn share(&self, times: usize, capacity: usize) -> Self {
        let repeat = |x: Tensor<4>| x.repeat_dim(0, times);
        let layers = self
            .layers
            .iter()
            .map(|l| match &l.shared {
                None => LayerCache {
                    shared: l.own.whole().map(|(k, v, len)| Prefix { k, v, len }),
                    own: KvBuffer::with_capacity(capacity),
                },
                Some(shared) => LayerCache {
                    shared: Some(shared.clone()),
                    own: l.own.map(repeat, repeat),
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
            reserve: capacity,
        }
    }

    /// The cache with every key (written at xPos centre 0) multiplied by `factor` (`[Dh]`):
    /// the keys a prefill at another centre would have written ([`key_recentring`]); later
    /// passes use their own centre, as the references' decode steps do.
    ///
    /// [`key_recentring`]: crate::nn::rope::key_recentring
    pub(crate) fn recentred(&self, factor: &Tensor<1>) -> Self {
        let scale = |k: Tensor<4>| {
            let dh = k.dims()[3];
            k.mul(factor.clone().reshape([1, 1, 1, dh]))
        };
        let layers = self
            .layers
            .iter()
            .map(|l| LayerCache {
                shared: l.shared.as_ref().map(|p| Prefix {
                    k: scale(p.k.clone()),
                    ..p.clone()
                }),
                own: l.own.map(scale, |v| v),
            })
            .collect();
        KvCache {
            layers,
            xpos_centre: None,
            scaler: self.scaler.clone(),
            ..*self
        }
    }

    /// The cache with every entry materialised `times` over along the batch (sample index
    /// outer): the reference [`KvCache::share`] is tested against.
    #[cfg(test)]
    pub(crate) fn repeat(&self, times: usize) -> Self {
        let rows = |shared: &Tensor<4>, len: usize, own: Option<Tensor<4>>| {
            let prefix = shared
                .clone()
                .narrow(2, 0, len)
                .repeat_dim(0, self.share * times);
            match own {
                None => prefix,
                Some(own) => Tensor::cat(vec![prefix, own.repeat_dim(0, times)], 2),
            }
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let own = l.own.written();
                let (k, v) = match (&l.shared, own) {
                    (None, None) => return LayerCache::default(),
                    (None, Some((k, v))) => (k.repeat_dim(0, times), v.repeat_dim(0, times)),
                    (Some(p), own) => {
                        let (ok, ov) = own.unzip();
                        (rows(&p.k, p.len, ok), rows(&p.v, p.len, ov))
                    }
                };
                let mut own = KvBuffer::with_capacity(k.dims()[2]);
                own.write(k, v);
                LayerCache { shared: None, own }
            })
            .collect();
        KvCache {
            layers,
            share: 1,
            scaler: self.scaler.as_ref().map(|s| s.repeat(times)),
            ..*self
        }
    }
}

impl LayerCache {
    /// Writes a pass's keys and values (`[rows, H, S, Dh]`) to this layer's own buffers and
    /// returns them whole (`[rows, H, capacity, Dh]`, the first `len` written, returned too),
    /// with the shared prefix they follow (if any).
    #[allow(clippy::type_complexity)]
    pub(crate) fn append(
        &mut self,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>, usize, Option<Prefix>) {
        let (k, v) = self.own.write(k, v);
        (k, v, self.own.len(), self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Int, TensorData};

    use super::*;
    use crate::toto::backbone::TotoWeights;
    use crate::toto::config::TotoConfig;

    /// A small Toto 1.0 (3 layers, the last space-wise) and a pass of it over a cache.
    struct Tiny {
        ops: crate::backend::NdArray,
        config: TotoConfig,
        weights: TotoWeights,
        device: burn::tensor::Device,
    }

    impl Tiny {
        fn new() -> Self {
            use crate::backend::Backend as _;
            let ops = crate::backend::NdArray::seeded(3);
            let device = ops.device().clone();
            let mut config = TotoConfig::open_base_1_0();
            (config.patch_size, config.stride, config.embed_dim) = (4, 4, 16);
            (config.num_layers, config.num_heads, config.mlp_hidden_dim) = (3, 2, 24);
            config.spacewise_every_n_layers = 3;
            config.output_distribution_kwargs.k_components = 3;
            let weights = TotoWeights::init(&config, &device);
            Tiny {
                ops,
                config,
                weights,
                device,
            }
        }

        /// `rows` series of 3 variates, `patches` patches of 4 steps each.
        fn input(&self, rows: usize, patches: usize, from: usize) -> (Tensor<3>, Tensor<3, Int>) {
            let (v, p) = (3, 4);
            let n = rows * v * patches * p;
            let x: Vec<f32> = (from..from + n)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            (
                Tensor::<3>::from_data(TensorData::new(x, [rows, v, patches * p]), &self.device),
                Tensor::<3, Int>::zeros([rows, v, patches], &self.device),
            )
        }

        /// The head's locations after a pass over `x` continuing `cache`.
        fn run(&self, x: &(Tensor<3>, Tensor<3, Int>), cache: &mut KvCache) -> Vec<f32> {
            let hidden = self
                .weights
                .forward(
                    &self.ops,
                    &self.config,
                    &self.config.layer_kinds(),
                    x.0.clone(),
                    x.1.clone(),
                    Some(cache),
                    &mut crate::nn::watch::Watch::Names(&mut |_| {}),
                )
                .unwrap();
            let head = self.weights.fused_head(&self.config);
            head.forward(&self.ops, hidden)
                .unwrap()
                .loc
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        }
    }

    #[test]
    fn a_restored_checkpoint_continues_as_if_the_passes_since_never_ran() {
        // Passes write into the buffers in place; restoring the checkpoint makes the next pass
        // overwrite what they wrote, exactly as a cache that never saw them.
        let tiny = Tiny::new();
        let b = 2;
        let mut kept = KvCache::with_capacity(8);
        let mut fresh = KvCache::with_capacity(8);
        for cache in [&mut kept, &mut fresh] {
            tiny.run(&tiny.input(b, 5, 0), cache);
        }
        let saved = kept.checkpoint();
        tiny.run(&tiny.input(b, 2, 999), &mut kept);
        assert_eq!(kept.len(), 7);
        kept.restore(saved);
        assert_eq!(kept.len(), 5);
        let next = tiny.input(b, 1, 500);
        assert_eq!(tiny.run(&next, &mut kept), tiny.run(&next, &mut fresh));
    }

    #[test]
    fn a_shared_prefix_attends_like_a_repeated_one() {
        let tiny = Tiny::new();
        let (b, times) = (2, 3);
        let input = |rows: usize, patches: usize| tiny.input(rows, patches, 0);
        let run = |x: &(Tensor<3>, Tensor<3, Int>), cache: &mut KvCache| tiny.run(x, cache);
        // A prefill that fills its buffers, and one in buffers of room for 8 patches whose
        // entries past the 5 written hold the keys and values of a pass that was undone: the
        // shared prefix is read whole, and those entries must stay unseen.
        let mut exact = KvCache::default();
        run(&input(b, 5), &mut exact);
        let mut roomy = KvCache::with_capacity(8);
        run(&input(b, 5), &mut roomy);
        let saved = roomy.checkpoint();
        run(&tiny.input(b, 3, 999), &mut roomy);
        roomy.restore(saved);
        for (name, prefill) in [("exact", exact), ("roomy", roomy)] {
            shared_prefix_case(&tiny, name, &prefill, b, times);
        }
    }

    /// [`a_shared_prefix_attends_like_a_repeated_one`] from one prefill.
    fn shared_prefix_case(tiny: &Tiny, name: &str, prefill: &KvCache, b: usize, times: usize) {
        let input = |rows: usize, patches: usize| tiny.input(rows, patches, 0);
        let run = |x: &(Tensor<3>, Tensor<3, Int>), cache: &mut KvCache| tiny.run(x, cache);
        assert_eq!(prefill.len(), 5);
        let mut shared = prefill.share(times, 3);
        let mut repeated = prefill.repeat(times);
        // Two decode steps (the second attends to a shared prefix and an own part), then
        // sharing again between them.
        for step in 0..3 {
            if step == 2 {
                shared = shared.share(2, 1);
                repeated = repeated.repeat(2);
            }
            let rows = b * times * if step == 2 { 2 } else { 1 };
            let x = input(rows, 1);
            let (got, want) = (run(&x, &mut shared), run(&x, &mut repeated));
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{name} prefill, step {step}: {g} vs {w}"
                );
            }
        }
        assert_eq!(shared.share, 2 * times);
    }
}
