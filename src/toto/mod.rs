//! Datadog's Toto (Toto-Open-Base-1.0) over any [`Backend`]: the checkpoint loader, the
//! backbone and its Student-T mixture head.
//!
//! The model is written once: its matrix products, attention and head run as burn tensor ops on
//! the backend's device, the f64 causal scaler and every random draw go through the
//! [`Backend`]'s ops, so on a [`FallbackBackend`](crate::FallbackBackend) whatever the GPU lacks
//! runs on the CPU and shows up in the report.

mod config;
mod forecast;
mod load;
mod model;
#[cfg(feature = "plot")]
mod plot;

use std::path::Path;

use burn::tensor::{Bool, Device, Int, Tensor};

pub use self::config::{
    LayerKind, MAX_PARAMETERS, MAX_SCALE_EXPONENT, OUTPUT_CLS, OutputKwargs, SCALER_CLS, TotoConfig,
};
pub use self::forecast::{Forecast, ForecastOptions};
pub use self::model::{KvCache, TotoWeights};
#[cfg(feature = "plot")]
pub use self::plot::FanChart;

use self::load::{Source, load_into, save_bytes};
use self::model::HeadOutput;
use crate::backend::{Backend, ScalerState};
use crate::dist::{Affine, Categorical, MixtureSameFamily, StudentT};
use crate::error::{Error, Result};

/// Toto's output distribution in normalised units: a mixture over `K` Student-T components per
/// series and time step, batch shape `[B, V, T]`.
pub type TotoMixture<B> = MixtureSameFamily<B, StudentT<B, 4>, 3, 4>;

/// The output distribution in data units: `loc + scale · mixture`.
pub type TotoDistribution<B> = Affine<TotoMixture<B>, 3>;

/// What one forward pass returns.
#[derive(Debug, Clone)]
pub struct TotoOutput<B: Backend> {
    backend: B,
    /// The scaler's location per time step, `[B, V, T'']`: over the whole input, or only over
    /// the steps processed when a cached pass continues the scaler's running statistics (see
    /// [`Toto::forward`]). [`TotoOutput::distribution`] uses its last `T'` steps.
    pub loc: Tensor<3>,
    /// The scaler's scale per time step, shaped as [`TotoOutput::loc`].
    pub scale: Tensor<3>,
    /// Degrees of freedom `2 + max(softplus, eps)`, `[B, V, T', K]` (`T'`: the steps processed,
    /// all of `T` without a cache, the new patch with one).
    pub df: Tensor<4>,
    /// Component locations (normalised units), `[B, V, T', K]`.
    pub component_loc: Tensor<4>,
    /// Component scales `max(softplus, eps)` (normalised units), `[B, V, T', K]`.
    pub component_scale: Tensor<4>,
    /// Mixture logits, `[B, V, T', K]`.
    pub logits: Tensor<4>,
}

impl<B: Backend> TotoOutput<B> {
    /// The mixture in normalised units, batch shape `[B, V, T']`.
    ///
    /// # Errors
    /// Only if the head's tensors were replaced by ones of another shape or device.
    pub fn mixture(&self) -> Result<TotoMixture<B>> {
        let component = StudentT::new(
            &self.backend,
            self.df.clone(),
            self.component_loc.clone(),
            self.component_scale.clone(),
        )?;
        let mixing = Categorical::from_logits(&self.backend, self.logits.clone())?;
        MixtureSameFamily::new(mixing, component)
    }

    /// The output over only its last `n` steps (all of them if there are fewer): what a decode
    /// step needs, so that means and draws are not computed for the whole context.
    pub fn last_steps(&self, n: usize) -> Self {
        let [b, v, t, k] = self.df.dims();
        let cut = |x: &Tensor<4>| x.clone().slice([0..b, 0..v, t.saturating_sub(n)..t, 0..k]);
        TotoOutput {
            backend: self.backend.clone(),
            loc: self.loc.clone(),
            scale: self.scale.clone(),
            df: cut(&self.df),
            component_loc: cut(&self.component_loc),
            component_scale: cut(&self.component_scale),
            logits: cut(&self.logits),
        }
    }

    /// The distribution in data units: the mixture under the scaler's affine map, with `loc`
    /// and `scale` cut to the last `T'` steps (the prediction from patch `s` is de-normalised
    /// with patch `s`'s statistics, as toto-ts does).
    ///
    /// # Errors
    /// As [`TotoOutput::mixture`].
    pub fn distribution(&self) -> Result<TotoDistribution<B>> {
        let [b, v, t] = self.loc.dims();
        let t_out = self.df.dims()[2];
        let cut = |x: &Tensor<3>| x.clone().slice([0..b, 0..v, t - t_out..t]);
        Affine::new(self.mixture()?, cut(&self.loc), cut(&self.scale))
    }
}

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
pub struct Toto<B: Backend> {
    backend: B,
    config: TotoConfig,
    kinds: Vec<LayerKind>,
    weights: TotoWeights,
}

impl<B: Backend> Toto<B> {
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
    /// published `Datadog/Toto-Open-Base-1.0`).
    ///
    /// # Errors
    /// As [`TotoConfig::from_file`] and [`Toto::from_safetensors`].
    pub fn from_dir(backend: &B, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = TotoConfig::from_file(dir.join("config.json"))?;
        Self::from_safetensors(backend, config, dir.join("model.safetensors"))
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
        let mut weights = TotoWeights::init(&config, backend.device());
        load_into(&mut weights, Source::File(path.as_ref()))?;
        Ok(Self::assemble(backend, config, weights))
    }

    /// As [`Toto::from_safetensors`], from the bytes of a safetensors file.
    ///
    /// # Errors
    /// As [`Toto::from_safetensors`].
    pub fn from_safetensors_bytes(backend: &B, config: TotoConfig, bytes: Vec<u8>) -> Result<Self> {
        config.validate()?;
        let mut weights = TotoWeights::init(&config, backend.device());
        load_into(&mut weights, Source::Bytes(bytes))?;
        Ok(Self::assemble(backend, config, weights))
    }

    /// The weights as the bytes of a `model.safetensors` in the published naming (`model.`
    /// prefix, `wQKV`/`wO`, `mlp.0.w12`/`mlp.0.w3`, PyTorch's `[out, in]` layout, f32), which
    /// toto-ts's `Toto.load_from_checkpoint` and [`Toto::from_safetensors_bytes`] read.
    ///
    /// # Errors
    /// [`Error::Io`] if burn-store cannot serialise a tensor.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        save_bytes(&self.weights)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed): the layout
    /// [`Toto::from_dir`] and toto-ts's `Toto.load_from_checkpoint` read.
    ///
    /// # Errors
    /// [`Error::Io`] naming the path that could not be written.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let io = |path: &Path, e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let config = dir.join("config.json");
        let text = serde_json::to_string_pretty(&self.config).map_err(|e| Error::Io {
            path: config.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(&config, text).map_err(|e| io(&config, e))?;
        let model = dir.join("model.safetensors");
        std::fs::write(&model, self.to_safetensors_bytes()?).map_err(|e| io(&model, e))
    }

    /// `Ok` if an input named `param` lives on the model's device.
    fn check_device(&self, what: &'static str, param: &str, found: &Device) -> Result<()> {
        let expected = self.backend.device();
        if found == expected {
            return Ok(());
        }
        Err(Error::Input {
            what,
            reason: format!(
                "`{param}` is on device {found:?} but the model runs on {expected:?}; move it \
                 with `tensor.to_device(toto.backend().device())`"
            ),
        })
    }

    fn assemble(backend: &B, config: TotoConfig, weights: TotoWeights) -> Self {
        Toto {
            backend: backend.clone(),
            kinds: config.layer_kinds(),
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
    ///   also keeps the scaler's running statistics ([`Backend::patch_scaler_extend`]) and later
    ///   passes compute them for the new patch alone; otherwise every pass runs
    ///   [`Backend::patch_scaler`] over the whole series, as toto-ts does.
    ///
    /// With `RUST_LOG=toto_fallback::toto=trace`, logs the time up to each intermediate
    /// (synchronising the device for every reading, so only for profiling).
    ///
    /// # Errors
    /// [`Error::Input`] for shapes that do not fit; the backend's errors (the scaler is a
    /// backend op).
    pub fn forward(
        &self,
        series: Tensor<3>,
        padding_mask: Tensor<3, Bool>,
        id_mask: Tensor<3, Int>,
        cache: Option<&mut KvCache>,
        scaling_prefix: Option<usize>,
    ) -> Result<TotoOutput<B>> {
        let mut phases = Phases::new("toto_fallback::toto", self.backend.device());
        let mut hook = |name: &str, _: Tensor<4>| phases.mark(|| name.to_owned());
        self.forward_hooked(
            series,
            padding_mask,
            id_mask,
            cache,
            scaling_prefix,
            &mut hook,
        )
    }

    /// [`Toto::forward`] that shows every named intermediate to `hook`: `patch_embed`,
    /// `layer{i}.{norm1, attention, norm2, mlp, out}`, `flattened`.
    #[doc(hidden)]
    pub fn forward_hooked(
        &self,
        series: Tensor<3>,
        padding_mask: Tensor<3, Bool>,
        id_mask: Tensor<3, Int>,
        mut cache: Option<&mut KvCache>,
        scaling_prefix: Option<usize>,
        hook: &mut dyn FnMut(&str, Tensor<4>),
    ) -> Result<TotoOutput<B>> {
        let [b, v, t] = series.dims();
        let p = self.config.patch_size;
        self.check_device("Toto::forward", "series", &series.device())?;
        self.check_device("Toto::forward", "padding_mask", &padding_mask.device())?;
        self.check_device("Toto::forward", "id_mask", &id_mask.device())?;
        if padding_mask.dims() != [b, v, t] || id_mask.dims() != [b, v, t] {
            return Err(Error::Input {
                what: "Toto::forward",
                reason: format!(
                    "padding_mask {:?} and id_mask {:?} must have the series' shape {:?}",
                    padding_mask.dims(),
                    id_mask.dims(),
                    [b, v, t]
                ),
            });
        }
        if t == 0 || t % p != 0 {
            return Err(Error::Input {
                what: "Toto::forward",
                reason: format!(
                    "the series length {t} must be a positive multiple of the patch size {p}; \
                     left-pad it (the forecaster does)"
                ),
            });
        }
        let cached = cache.as_ref().map_or(0, |c| c.patches) * p;
        if cached >= t || (cached > 0 && t - cached != p) {
            return Err(Error::Input {
                what: "Toto::forward",
                reason: format!(
                    "with {cached} steps cached, the series must be exactly one patch ({p}) \
                     longer; it has {t}"
                ),
            });
        }
        let spec = crate::backend::ScalerSpec {
            patch: p,
            prefix: scaling_prefix,
            stabilize: self.config.stabilize_with_global,
            exponent: self.config.scale_factor_exponent,
        };
        let new = [0..b, 0..v, cached..t];
        // With a cache, the scaler's running statistics continue from the previous pass when
        // that is exact: the clamp's global statistics must come from a prefix the first pass
        // saw whole (the forecaster's case). Then a decode step reads only its new patch.
        if let Some(cache) = cache.as_deref_mut()
            && cached == 0
        {
            let exact = !spec.stabilize || scaling_prefix.is_some_and(|n| n <= t);
            cache.scaler = exact.then(ScalerState::default);
        }
        let (loc, scale, scaled) = match cache.as_deref_mut().and_then(|c| c.scaler.as_mut()) {
            Some(state) => {
                let x = series.slice(new.clone());
                let (loc, scale) = self.backend.patch_scaler_extend(
                    state,
                    x.clone(),
                    padding_mask.slice(new.clone()).float(),
                    spec,
                )?;
                let scaled = x.sub(loc.clone()).div(scale.clone());
                (loc, scale, scaled)
            }
            None => {
                let (loc, scale) =
                    self.backend
                        .patch_scaler(series.clone(), padding_mask.float(), spec)?;
                let scaled = series
                    .sub(loc.clone())
                    .div(scale.clone())
                    .slice(new.clone());
                (loc, scale, scaled)
            }
        };
        let ids = id_mask
            .slice(new.clone())
            .reshape([b, v, (t - cached) / p, p])
            .min_dim(3)
            .reshape([b, v, (t - cached) / p]);
        let HeadOutput {
            df,
            loc: component_loc,
            scale: component_scale,
            logits,
        } = self
            .weights
            .forward(&self.config, &self.kinds, scaled, ids, cache, hook);
        Ok(TotoOutput {
            backend: self.backend.clone(),
            loc,
            scale,
            df,
            component_loc,
            component_scale,
            logits,
        })
    }
}

/// Wall time per phase, logged at `trace` level under `target`. The device is synchronised
/// before each reading (so the time belongs to the phase), which stalls the queue: only when
/// trace logging is on for `target`.
pub(crate) struct Phases {
    target: &'static str,
    device: Option<burn::tensor::Device>,
    last: std::time::Instant,
}

impl Phases {
    pub(crate) fn new(target: &'static str, device: &burn::tensor::Device) -> Self {
        let on = log::log_enabled!(target: target, log::Level::Trace);
        Phases {
            target,
            device: on.then(|| device.clone()),
            last: std::time::Instant::now(),
        }
    }

    pub(crate) fn mark(&mut self, phase: impl FnOnce() -> String) {
        if let Some(device) = &self.device {
            let _ = device.sync();
            let now = std::time::Instant::now();
            log::trace!(
                target: self.target,
                "{}: {:.2} ms",
                phase(),
                (now - self.last).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}
