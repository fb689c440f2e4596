//! [`Toto`]: the model on a backend's device — constructors, checkpoint I/O, the forward pass
//! with its input checks and scaling step.

use std::path::Path;

use burn::tensor::{Bool, Int, Tensor};

use super::backbone::TotoWeights;
use super::cache::KvCache;
use super::checkpoint::{Source, load_into, save_bytes};
use super::config::{LayerKind, TotoConfig};
use super::head::FusedHead;
use super::output::TotoOutput;
use crate::backend::{LayerOps, ScalerSpec, ScalerState};
use crate::error::{Error, InputKind, Result};
use crate::nn::phases::Phases;
use crate::nn::watch::Watch;

/// Toto with its weights on a backend's device.
///
/// ```
/// use burn::tensor::{Bool, Int, Tensor};
/// use toto_fallback::toto::{Toto, TotoConfig};
/// use toto_fallback::{Backend, NdArray};
///
/// let cpu = NdArray::seeded(0);
/// let mut config = TotoConfig::open_base_1_0();
/// (config.patch_size, config.stride, config.embed_dim) = (4, 4, 8);
/// (config.num_layers, config.num_heads, config.mlp_hidden_dim) = (2, 2, 16);
/// config.spacewise_every_n_layers = 2;
/// let toto = Toto::random(&cpu, config)?; // random weights of that shape
/// let dev = cpu.device();
/// let series = Tensor::<3>::ones([1, 2, 8], dev);
/// let out = toto.forward(
///     series,
///     Tensor::<3, Bool>::from_data([[[true; 8]; 2]], dev),
///     Tensor::<3, Int>::zeros([1, 2, 8], dev),
///     None,
///     None,
/// )?;
/// assert_eq!(out.df.dims(), [1, 2, 8, 24]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug)]
pub struct Toto<B: LayerOps> {
    backend: B,
    config: TotoConfig,
    kinds: Vec<LayerKind>,
    weights: TotoWeights,
    /// `weights`' unembedding and head as one product, composed when the model is assembled.
    head: FusedHead,
}

impl<B: LayerOps> Toto<B> {
    /// A model with random weights of the shapes `config` describes (for tests and benchmarks).
    ///
    /// # Errors
    /// [`Error::Config`] if `config` is invalid.
    pub fn random(backend: &B, config: TotoConfig) -> Result<Self> {
        config.validate()?;
        let weights = TotoWeights::init(&config, backend.device());
        Ok(Self::assemble(backend, config, weights))
    }

    /// Loads `config.json` and `model.safetensors` from a directory (the layout of the
    /// published `Datadog/Toto-Open-Base-1.0`), or the shards `model.safetensors.index.json`
    /// names, as Toto 2.0's loader reads them.
    ///
    /// # Errors
    /// As [`TotoConfig::from_file`] and [`Toto::from_safetensors`].
    pub fn from_dir(backend: &B, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = TotoConfig::from_file(dir.join("config.json"))?;
        config.validate()?;
        let weights = TotoWeights::init(&config, backend.device());
        let weights = load_into(weights, Source::Dir(dir), config.num_heads)?;
        Ok(Self::assemble(backend, config, weights))
    }

    /// Loads weights from a safetensors file for `config`. Keys may carry the `model.` prefix
    /// or not, use either MLP naming (`mlp.0.w12`/`mlp.0.w3` or `mlp.0`/`mlp.2`); `rotary_emb.*`
    /// buffers are ignored.
    ///
    /// # Errors
    /// [`Error::Config`]; [`Error::Io`] if the file cannot be opened; [`Error::Checkpoint`]
    /// listing every missing, unexpected, mis-shaped or unreadable tensor by name.
    pub fn from_safetensors(
        backend: &B,
        config: TotoConfig,
        path: impl AsRef<Path>,
    ) -> Result<Self> {
        config.validate()?;
        let weights = TotoWeights::init(&config, backend.device());
        let weights = load_into(weights, Source::File(path.as_ref()), config.num_heads)?;
        Ok(Self::assemble(backend, config, weights))
    }

    /// As [`Toto::from_safetensors`], from the bytes of a safetensors file.
    ///
    /// # Errors
    /// As [`Toto::from_safetensors`].
    pub fn from_safetensors_bytes(backend: &B, config: TotoConfig, bytes: Vec<u8>) -> Result<Self> {
        config.validate()?;
        let weights = TotoWeights::init(&config, backend.device());
        let weights = load_into(weights, Source::Bytes(bytes), config.num_heads)?;
        Ok(Self::assemble(backend, config, weights))
    }

    /// The weights as the bytes of a `model.safetensors` in the published naming (`model.`
    /// prefix, `wQKV`/`wO`, `mlp.0.w12`/`mlp.0.w3`, PyTorch's `[out, in]` layout, f32), which
    /// toto-ts's `Toto.load_from_checkpoint` and [`Toto::from_safetensors_bytes`] read.
    ///
    /// # Errors
    /// [`Error::Io`] if burn-store cannot serialise a tensor.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        save_bytes(&self.weights, self.config.num_heads)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed): the layout
    /// [`Toto::from_dir`] and toto-ts's `Toto.load_from_checkpoint` read.
    ///
    /// # Errors
    /// [`Error::Io`] naming the path that could not be written.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        let config = dir.join("config.json");
        let text = serde_json::to_string_pretty(&self.config)
            .map_err(|e| Error::io(config.display(), e))?;
        std::fs::write(&config, text).map_err(|e| Error::io(config.display(), e))?;
        let model = dir.join("model.safetensors");
        std::fs::write(&model, self.to_safetensors_bytes()?)
            .map_err(|e| Error::io(model.display(), e))
    }

    fn assemble(backend: &B, config: TotoConfig, weights: TotoWeights) -> Self {
        Toto {
            backend: backend.clone(),
            kinds: config.layer_kinds(),
            head: weights.fused_head(&config),
            config,
            weights,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TotoConfig {
        &self.config
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// One forward pass of the backbone (toto-ts's `TotoBackbone.forward`).
    ///
    /// - `series`: `[B, V, T]` values, `T` a multiple of the patch size (the forecaster pads).
    /// - `padding_mask`: `[B, V, T]`, true for a real value; it only affects the scaler.
    /// - `id_mask`: `[B, V, T]` group ids, constant within each patch; variates with equal ids
    ///   attend to each other in space-wise layers.
    /// - `cache`: with a [`KvCache`], only the patches not yet cached are processed (exactly
    ///   one after the first call) and the output covers those steps.
    /// - `scaling_prefix`: global scaler statistics only from the first steps. When the first
    ///   pass with a `cache` covers that prefix (or the config does not stabilise), the cache
    ///   also keeps the scaler's running statistics ([`Backend::patch_scaler_extend`](crate::backend::Backend::patch_scaler_extend)) and later
    ///   passes compute them for the new patch alone; otherwise every pass runs
    ///   [`Backend::patch_scaler`](crate::backend::Backend::patch_scaler) over the whole series, as toto-ts does.
    ///
    /// With `RUST_LOG=toto_fallback::toto=trace`, logs the time up to each intermediate
    /// (synchronising the device for every reading, so only for profiling).
    ///
    /// # Errors
    /// [`Error::Input`] for shapes that do not fit, [`Error::DeviceMismatch`] for an input on
    /// another device; the backend's errors (the scaler is a backend op).
    pub fn forward(
        &self,
        series: Tensor<3>,
        padding_mask: Tensor<3, Bool>,
        id_mask: Tensor<3, Int>,
        cache: Option<&mut KvCache>,
        scaling_prefix: Option<usize>,
    ) -> Result<TotoOutput<B>> {
        let mut phases = Phases::new("toto_fallback::toto", self.backend.device());
        let mut mark = |name: &str| phases.mark(|| name.to_owned());
        let watch = Watch::Names(&mut mark);
        self.forward_watched(series, padding_mask, id_mask, cache, scaling_prefix, watch)
    }

    /// [`Toto::forward`] that shows every named intermediate to `hook`: `patch_embed`,
    /// `layer{i}.{norm1, attention, norm2, mlp, out}`. The unembedding and the head run as one
    /// composed product, so there is no unembedded intermediate to show.
    #[doc(hidden)]
    pub fn forward_hooked(
        &self,
        series: Tensor<3>,
        padding_mask: Tensor<3, Bool>,
        id_mask: Tensor<3, Int>,
        cache: Option<&mut KvCache>,
        scaling_prefix: Option<usize>,
        hook: &mut (dyn FnMut(&str, Tensor<4>) + Send),
    ) -> Result<TotoOutput<B>> {
        let watch = Watch::Tensors(hook);
        self.forward_watched(series, padding_mask, id_mask, cache, scaling_prefix, watch)
    }

    /// [`Toto::forward`] showing its intermediates to `watch`.
    fn forward_watched(
        &self,
        series: Tensor<3>,
        padding_mask: Tensor<3, Bool>,
        id_mask: Tensor<3, Int>,
        mut cache: Option<&mut KvCache>,
        scaling_prefix: Option<usize>,
        mut watch: Watch<'_>,
    ) -> Result<TotoOutput<B>> {
        const WHAT: &str = "Toto::forward";
        let [b, v, t] = self.check_inputs(WHAT, &series, &padding_mask, &id_mask)?;
        let p = self.config.patch_size;
        if t == 0 || t % p != 0 {
            return Err(Error::input(
                WHAT,
                InputKind::Shape,
                format!(
                    "the series length {t} must be a positive multiple of the patch size {p}; \
                     left-pad it (the forecaster does)"
                ),
            ));
        }
        let cached = cache.as_ref().map_or(0, |c| c.len()) * p;
        if cached >= t || (cached > 0 && t - cached != p) {
            return Err(Error::input(
                WHAT,
                InputKind::Shape,
                format!(
                    "with {cached} steps cached, the series must be exactly one patch ({p}) \
                     longer; it has {t}"
                ),
            ));
        }
        let new = [0..b, 0..v, cached..t];
        let (loc, scale, scaled) = self.scale(
            series,
            padding_mask,
            cache.as_deref_mut(),
            cached,
            scaling_prefix,
        )?;
        self.run(id_mask.slice(new), (loc, scale, scaled), cache, &mut watch)
    }

    /// One patch (`[B, V, P]`, its non-finite values already masked out) continuing `cache`,
    /// whose scaler state holds the statistics before it: a decode step's and a streaming
    /// push's pass, without the series before the patch.
    pub(crate) fn extend_patch(
        &self,
        series: Tensor<3>,
        padding_mask: Tensor<3, Bool>,
        id_mask: Tensor<3, Int>,
        cache: &mut KvCache,
    ) -> Result<TotoOutput<B>> {
        let spec = self.scaler_spec(None);
        let Some(state) = cache.scaler.as_mut() else {
            return Err(Error::input(
                "Toto::extend_patch",
                InputKind::Unusable,
                "the cache holds no scaler statistics to continue",
            ));
        };
        let (loc, scale) =
            self.backend
                .patch_scaler_extend(state, series.clone(), padding_mask.float(), spec)?;
        let scaled = series.sub(loc.clone()).div(scale.clone());
        let mut names = |_: &str| {};
        let mut watch = Watch::Names(&mut names);
        self.run(id_mask, (loc, scale, scaled), Some(cache), &mut watch)
    }

    /// The backbone and head over scaled new steps (`[B, V, T']`, whole patches) with their
    /// group ids and the scaler's `(loc, scale)`.
    fn run(
        &self,
        id_mask: Tensor<3, Int>,
        (loc, scale, scaled): (Tensor<3>, Tensor<3>, Tensor<3>),
        cache: Option<&mut KvCache>,
        watch: &mut Watch<'_>,
    ) -> Result<TotoOutput<B>> {
        let [b, v, t] = id_mask.dims();
        let p = self.config.patch_size;
        let ids = id_mask
            .reshape([b, v, t / p, p])
            .min_dim(3)
            .reshape([b, v, t / p]);
        let ops = &self.backend;
        let hidden =
            (self.weights).forward(ops, &self.config, &self.kinds, scaled, ids, cache, watch)?;
        // Unembedding and head: token s gives the mixture of each step of patch s + 1.
        let head = self.head.forward(ops, hidden)?;
        Ok(TotoOutput {
            backend: self.backend.clone(),
            loc,
            scale,
            df: head.df,
            component_loc: head.loc,
            component_scale: head.scale,
            logits: head.logits,
        })
    }

    /// The scaler's `(loc, scale)` and the scaled input of the steps not yet cached (from step
    /// `cached` on), through the backend's f64 scaler op.
    ///
    /// With a cache, the scaler's running statistics continue from the previous pass when that
    /// is exact: the clamp's global statistics must come from a prefix the first pass saw whole
    /// (the forecaster's case). Then a decode step reads only its new patch; otherwise every
    /// pass rescales the whole series, as toto-ts does.
    fn scale(
        &self,
        series: Tensor<3>,
        padding_mask: Tensor<3, Bool>,
        cache: Option<&mut KvCache>,
        cached: usize,
        scaling_prefix: Option<usize>,
    ) -> Result<(Tensor<3>, Tensor<3>, Tensor<3>)> {
        let [b, v, t] = series.dims();
        let spec = self.scaler_spec(scaling_prefix);
        let new = [0..b, 0..v, cached..t];
        let state = cache.and_then(|cache| {
            if cached == 0 {
                let exact = !spec.stabilize || scaling_prefix.is_some_and(|n| n <= t);
                cache.scaler = exact.then(ScalerState::default);
            }
            cache.scaler.as_mut()
        });
        match state {
            Some(state) => {
                let x = series.slice(new.clone());
                let w = padding_mask.slice(new).float();
                let (loc, scale) = self
                    .backend
                    .patch_scaler_extend(state, x.clone(), w, spec)?;
                let scaled = x.sub(loc.clone()).div(scale.clone());
                Ok((loc, scale, scaled))
            }
            None => {
                let (loc, scale) =
                    self.backend
                        .patch_scaler(series.clone(), padding_mask.float(), spec)?;
                let scaled = series.sub(loc.clone()).div(scale.clone()).slice(new);
                Ok((loc, scale, scaled))
            }
        }
    }

    /// The scaler's settings, its clamp's statistics from the first `scaling_prefix` steps.
    pub(crate) fn scaler_spec(&self, scaling_prefix: Option<usize>) -> ScalerSpec {
        ScalerSpec::toto(
            self.config.patch_size,
            scaling_prefix,
            self.config.stabilize_with_global,
            self.config.scale_factor_exponent,
        )
    }

    /// The checks every entry point makes of its inputs: all on the model's device, the masks
    /// shaped like the series. Returns `[B, V, T]`.
    pub(crate) fn check_inputs(
        &self,
        what: &'static str,
        series: &Tensor<3>,
        padding_mask: &Tensor<3, Bool>,
        id_mask: &Tensor<3, Int>,
    ) -> Result<[usize; 3]> {
        let expected = self.backend.device();
        let devices = [
            ("series", series.device()),
            ("padding_mask", padding_mask.device()),
            ("id_mask", id_mask.device()),
        ];
        Error::ensure_devices(what, expected, devices)?;
        let shape = series.dims();
        if padding_mask.dims() != shape || id_mask.dims() != shape {
            return Err(Error::input(
                what,
                InputKind::Shape,
                format!(
                    "padding_mask {:?} and id_mask {:?} must have the series' shape {shape:?}",
                    padding_mask.dims(),
                    id_mask.dims(),
                ),
            ));
        }
        Ok(shape)
    }
}
