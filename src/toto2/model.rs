//! [`Toto2`]: Toto 2.0 on a backend's device — loading, the forward pass and its pieces (scaling,
//! patch embedding, group ids, quantile head).

use std::path::Path;

use burn::tensor::{Bool, Device, Int, Tensor};

use super::config::Toto2Config;
use super::decoder::{Cache, Decoder, Pass, Watch};
use super::layers::{Precision, ResidualMlp};
use crate::backend::{LayerOps, ScalerSpec};
use crate::error::{Error, InputKind, Result};
use crate::nn::checkpoint::Checkpoint;
use crate::nn::phases::Phases;

/// The quantile levels of Toto 2.0's head: the nine deciles.
pub const LEVELS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// The index of the median among [`LEVELS`].
pub(crate) const MEDIAN: usize = 4;

/// The group id of a patch without observations (toto-2's −1). `i32::MIN` rather than −1, so
/// that no series id a user picks (−1 included) is taken for it; `Int` tensors are 32-bit on
/// some backends, so nothing below `i32::MIN`.
pub(crate) const EMPTY_PATCH: i64 = i32::MIN as i64;

/// What one forward pass returns.
#[derive(Debug, Clone)]
pub struct Toto2Output {
    /// The head's quantiles in the model's asinh-scaled space (unsorted, as the head gives
    /// them), `[9, B, V, S, P]`: position `s` predicts patch `s + 1`.
    pub quantiles: Tensor<5>,
    /// The scaler's location per step, `[B, V, T]`.
    pub loc: Tensor<3>,
    /// The scaler's scale per step, `[B, V, T]`.
    pub scale: Tensor<3>,
}

/// The weights of Toto 2.0, named as in the checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    /// `patch_proj.*`: `[values, 1 − mask]` of a patch (`2P`) to `D`.
    patch_proj: ResidualMlp,
    /// `transformer.*`.
    decoder: Decoder,
    /// `output_head.param_projection.proj.*`: `D` to `9 · P` quantiles.
    head: ResidualMlp,
}

/// Toto 2.0 (Datadog's `Toto-2.0-*` checkpoints, toto-2's `Toto2Model`) on a backend's device.
///
/// ```
/// use burn::tensor::{Bool, Int, Tensor};
/// use toto_fallback::toto2::{Toto2, Toto2Config};
/// use toto_fallback::{Backend, NdArray};
///
/// let cpu = NdArray::seeded(0);
/// let config = Toto2Config::from_json(r#"{"patch_size": 4, "d_model": 16, "num_heads": 2,
///     "num_layers": 2, "layer_group_size": 2, "num_variate_layers_per_group": 1,
///     "variate_layer_first": false, "residual_attn_ratio": 1.5}"#)?;
/// let model = Toto2::random(&cpu, config)?; // random weights of that shape
/// let dev = cpu.device();
/// let out = model.forward(
///     Tensor::<3>::ones([1, 2, 8], dev),
///     Tensor::<3, Bool>::from_data([[[true; 8]; 2]], dev),
///     Tensor::<2, Int>::zeros([1, 2], dev),
/// )?;
/// assert_eq!(out.quantiles.dims(), [9, 1, 2, 2, 4]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Toto2<B: LayerOps> {
    pub(crate) backend: B,
    pub(crate) config: Toto2Config,
    pub(crate) weights: Weights,
    pub(crate) precision: Precision,
}

impl<B: LayerOps> Toto2<B> {
    /// Loads `config.json` and the weights (`model.safetensors`, or the shards of
    /// `model.safetensors.index.json`) from a directory: the layout of the published
    /// `Datadog/Toto-2.0-*` checkpoints.
    ///
    /// # Errors
    /// As [`Toto2Config::from_file`]; [`Error::Io`] if a file cannot be opened;
    /// [`Error::Checkpoint`] naming every missing, unexpected, mis-shaped or unreadable tensor.
    pub fn from_dir(backend: &B, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = Toto2Config::from_file(dir.join("config.json"))?;
        let ckpt = Checkpoint::open_dir(dir)?;
        Self::load(backend, config, ckpt)
    }

    /// As [`Toto2::from_dir`], from a config and the bytes of a safetensors file.
    ///
    /// # Errors
    /// As [`Toto2::from_dir`].
    pub fn from_safetensors_bytes(
        backend: &B,
        config: Toto2Config,
        bytes: Vec<u8>,
    ) -> Result<Self> {
        Self::load(backend, config, Checkpoint::from_bytes(bytes)?)
    }

    /// A model with random weights of the shapes `config` describes (unit scaling's `N(0, 1)`
    /// weights, zero biases, unit norm weights; for tests and benchmarks).
    ///
    /// # Errors
    /// [`Error::Config`] if `config` is invalid.
    pub fn random(backend: &B, config: Toto2Config) -> Result<Self> {
        config.validate()?;
        let device = backend.device();
        let weights = Weights {
            patch_proj: ResidualMlp::random(embed_widths(&config), false, device),
            decoder: Decoder::random(&config, device),
            head: ResidualMlp::random(head_widths(&config), true, device),
        };
        Toto2 {
            backend: backend.clone(),
            config,
            weights,
            precision: Precision::F32,
        }
        .with_precision(backend.precision())
    }

    fn load(backend: &B, config: Toto2Config, mut ckpt: Checkpoint) -> Result<Self> {
        config.validate()?;
        let device = backend.device();
        let patch_proj = ResidualMlp::load(
            &mut ckpt,
            "patch_proj",
            embed_widths(&config),
            false,
            device,
        );
        let decoder = Decoder::load(&mut ckpt, &config, device);
        let head = ResidualMlp::load(
            &mut ckpt,
            "output_head.param_projection.proj",
            head_widths(&config),
            true,
            device,
        );
        let weights = match (patch_proj, decoder, head) {
            (Some(patch_proj), Some(decoder), Some(head)) => Some(Weights {
                patch_proj,
                decoder,
                head,
            }),
            _ => None,
        };
        ckpt.finish(|_| false)?;
        // Every piece is present when the checkpoint had no problem.
        let weights = weights.ok_or_else(|| {
            crate::error::CheckpointProblems::unreadable(
                "checkpoint".to_owned(),
                "incomplete".to_owned(),
            )
        })?;
        Toto2 {
            backend: backend.clone(),
            config,
            weights,
            precision: Precision::F32,
        }
        .with_precision(backend.precision())
    }

    /// The model with its matrix products in `precision` ([`Precision`] says which): those
    /// layers' weights are rounded to it once, and their products computed in it with f32
    /// accumulation. A model is loaded in its backend's precision
    /// ([`Backend::precision`](crate::Backend::precision): `F16` on a GPU with f16 tensor cores,
    /// `F32` elsewhere); this changes an f32 model. On an H100 (SPIR-V, 2026-12-06) `F16` takes
    /// the 313m-like model's T2-boom forecast from 662 ms to 192 ms (toto-2: 353 ms); on the
    /// conformance fixtures the quantiles stay within 1.2e-3 (scaled) of toto-2's f32 ones
    /// (docs/PERFORMANCE.md).
    ///
    /// The rounding happens once: asking again for the same precision changes nothing, and a
    /// model already in 16 bits refuses another precision (load it again on a backend set to
    /// it, [`Wgpu::with_precision`](crate::Wgpu::with_precision)), so
    /// [`Toto2::precision`] always says what the weights hold. Ask
    /// [`Toto2::supports_precision`] first to keep the model when the device lacks the format.
    ///
    /// ```
    /// use toto_fallback::toto2::{Precision, Toto2};
    /// use toto_fallback::{NdArray, Wgpu};
    ///
    /// let dir = "tests/fixtures/toto2-tiny";
    /// // NdArray computes in f32 only: asking it for f16 is an error that says so.
    /// let cpu = NdArray::new();
    /// assert!(Toto2::from_dir(&cpu, dir)?.with_precision(Precision::F16).is_err());
    /// // An f32 load on the GPU, whatever its default, then the products in f16.
    /// if let Ok(gpu) = Wgpu::new().and_then(|gpu| gpu.with_precision(Precision::F32)) {
    ///     if let Ok(model) = Toto2::from_dir(&gpu, dir)?.with_precision(Precision::F16) {
    ///         assert_eq!(model.precision(), Precision::F16);
    ///     }
    /// }
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PrecisionUnsupported`] when the backend's device has no arithmetic in that
    /// format (`NdArray`; adapters without 16-bit shaders; no adapter measured so far has
    /// bf16); [`Error::Input`] when the weights were already rounded to another format.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        if precision == self.precision {
            return Ok(self);
        }
        if self.precision != Precision::F32 {
            return Err(Error::input(
                "Toto2::with_precision",
                InputKind::Unusable,
                format!(
                    "the weights were already rounded to {} (the backend's precision when it was \
                     loaded, `Backend::precision`); load it again on a backend set to \
                     {precision}: the GPU backend's `with_precision(Precision::{precision:?})` \
                     before loading",
                    self.precision,
                ),
            ));
        }
        if !self.supports_precision(precision) {
            return Err(Error::PrecisionUnsupported {
                model: "Toto 2.0",
                precision: precision.to_string(),
                device: self.backend.name().to_owned(),
            });
        }
        self.weights.patch_proj.set_precision(precision);
        self.weights.decoder.set_precision(precision);
        self.weights.head.set_hidden_precision(precision);
        self.precision = precision;
        Ok(self)
    }

    /// Whether the model's device has arithmetic in `precision` (f32 always).
    pub fn supports_precision(&self, precision: Precision) -> bool {
        precision.supported_on(self.device())
    }

    /// The format of the matrix products ([`Toto2::with_precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The configuration.
    pub fn config(&self) -> &Toto2Config {
        &self.config
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// One forward pass (toto-2's `Toto2Model.forward` with an all-true `cpm_mask`).
    ///
    /// - `target`: `[B, V, T]`, `T` a multiple of the patch size (the forecaster pads).
    /// - `target_mask`: `[B, V, T]`, true for an observed value; unobserved and non-finite
    ///   values are treated as missing (their value does not matter).
    /// - `series_ids`: `[B, V]`; variates with equal ids attend to each other (any id but
    ///   `i32::MIN`, which marks a patch without observations).
    ///
    /// # Errors
    /// [`Error::Input`] for shapes that do not fit; [`Error::DeviceMismatch`] for an input on
    /// another device; the backend's errors (the scaler is a backend op).
    pub fn forward(
        &self,
        target: Tensor<3>,
        target_mask: Tensor<3, Bool>,
        series_ids: Tensor<2, Int>,
    ) -> Result<Toto2Output> {
        let watch = Watch::Names(&mut |_| {});
        self.forward_watched(target, target_mask, series_ids, watch)
    }

    /// [`Toto2::forward`] that shows every named intermediate to `hook`, each `[B, V, S, D]`:
    /// `patch_embed`, `layer{i}.{norm1, attention, out}`, `out_norm`.
    #[doc(hidden)]
    pub fn forward_hooked(
        &self,
        target: Tensor<3>,
        target_mask: Tensor<3, Bool>,
        series_ids: Tensor<2, Int>,
        hook: &mut (dyn FnMut(&str, Tensor<4>) + Send),
    ) -> Result<Toto2Output> {
        self.forward_watched(target, target_mask, series_ids, Watch::Tensors(hook))
    }

    fn forward_watched(
        &self,
        target: Tensor<3>,
        target_mask: Tensor<3, Bool>,
        series_ids: Tensor<2, Int>,
        mut watch: Watch<'_>,
    ) -> Result<Toto2Output> {
        const WHAT: &str = "Toto2::forward";
        let [_, _, t] = self.check_inputs(WHAT, &target, &target_mask, &series_ids)?;
        let p = self.config.patch_size;
        if t == 0 || t % p != 0 {
            return Err(Error::input(
                WHAT,
                InputKind::Shape,
                format!(
                    "the length {t} must be a positive multiple of the patch size {p}; left-pad \
                     it with unobserved steps (the forecaster does)"
                ),
            ));
        }
        let (target, mask) = observed(target, target_mask);
        let (loc, scale) = self.scale(target.clone(), mask.clone())?;
        let x = scaled(target, &loc, &scale, mask.clone());
        let embedded = self.embed(x, mask.clone().float())?;
        watch.show("patch_embed", || embedded.clone());
        let gids = group_ids(series_ids, mask.clone(), p, None);
        let time_ids: Vec<usize> = (0..t / p).collect();
        let pass = Pass {
            time_ids: &time_ids,
            gids,
            has_missing_values: true,
            time_mask: None,
            xpos_centre: None,
        };
        let decoder = &self.weights.decoder;
        let out = decoder.forward(&self.backend, embedded, &pass, None, &mut watch)?;
        Ok(Toto2Output {
            quantiles: self.head(out)?,
            loc,
            scale,
        })
    }

    /// The checks every entry point makes: inputs on the model's device, the mask shaped like
    /// the target, the ids `[B, V]`. Returns `[B, V, T]`.
    pub(crate) fn check_inputs(
        &self,
        what: &'static str,
        target: &Tensor<3>,
        mask: &Tensor<3, Bool>,
        ids: &Tensor<2, Int>,
    ) -> Result<[usize; 3]> {
        let expected = self.backend.device();
        let devices = [
            ("target", target.device()),
            ("target_mask", mask.device()),
            ("series_ids", ids.device()),
        ];
        Error::ensure_devices(what, expected, devices)?;
        let [b, v, t] = target.dims();
        if mask.dims() != [b, v, t] || ids.dims() != [b, v] {
            return Err(Error::input(
                what,
                InputKind::Shape,
                format!(
                    "target_mask {:?} must have the target's shape {:?} and series_ids {:?} its \
                     batch shape {:?}",
                    mask.dims(),
                    [b, v, t],
                    ids.dims(),
                    [b, v]
                ),
            ));
        }
        Ok([b, v, t])
    }

    /// The scaler's `(loc, scale)` over `target` with `mask` (`[B, V, T]`), in f64 through the
    /// backend's op, cast to f32.
    pub(crate) fn scale(
        &self,
        target: Tensor<3>,
        mask: Tensor<3, Bool>,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let spec = ScalerSpec::toto2(self.config.patch_size);
        self.backend.patch_scaler(target, mask.float(), spec)
    }

    /// The patch embedding of scaled values `x` and observation weights `w` (`[B, V, T]`):
    /// each patch's `[values, 1 − mask]` through `patch_proj`, `[B, V, S, D]`.
    pub(crate) fn embed(&self, x: Tensor<3>, w: Tensor<3>) -> Result<Tensor<4>> {
        let [b, v, t] = x.dims();
        let p = self.config.patch_size;
        let s = t / p;
        let missing = w.neg().add_scalar(1.0);
        let features = Tensor::cat(
            vec![x.reshape([b, v, s, p]), missing.reshape([b, v, s, p])],
            3,
        ); // [B, V, S, 2P]
        self.weights.patch_proj.forward(&self.backend, features)
    }

    /// The quantile head over decoder outputs `[B, V, S, D]`: `[9, B, V, S, P]` in the
    /// asinh-scaled space.
    pub(crate) fn head(&self, x: Tensor<4>) -> Result<Tensor<5>> {
        let [b, v, s, _] = x.dims();
        let p = self.config.patch_size;
        Ok(self
            .weights
            .head
            .forward(&self.backend, x)?
            .reshape([b, v, s, p, LEVELS.len()])
            .permute([4, 0, 1, 2, 3]))
    }

    /// The decoder over embedded patches, continuing `cache` when given.
    pub(crate) fn decode(
        &self,
        x: Tensor<4>,
        pass: &Pass<'_>,
        cache: Option<&mut Cache>,
    ) -> Result<Tensor<4>> {
        let mut phases = Phases::new("toto_fallback::toto2", self.device());
        let mut mark = |name: &str| phases.mark(|| name.to_owned());
        let mut watch = Watch::Names(&mut mark);
        let decoder = &self.weights.decoder;
        decoder.forward(&self.backend, x, pass, cache, &mut watch)
    }

    /// The device of the model.
    pub(crate) fn device(&self) -> &Device {
        self.backend.device()
    }
}

/// `[2P → 4D → D]`.
fn embed_widths(c: &Toto2Config) -> [usize; 3] {
    [2 * c.patch_size, 4 * c.d_model, c.d_model]
}

/// `[D → 4D → 9P]`.
fn head_widths(c: &Toto2Config) -> [usize; 3] {
    [
        c.d_model,
        4 * c.d_model,
        c.patch_size * c.num_output_patches * LEVELS.len(),
    ]
}

/// `target` with unobserved and non-finite values set to 0, and the mask without the
/// non-finite ones.
pub(crate) fn observed(target: Tensor<3>, mask: Tensor<3, Bool>) -> (Tensor<3>, Tensor<3, Bool>) {
    let finite = target.clone().is_finite();
    let mask = mask.bool_and(finite);
    (target.mask_fill(mask.clone().bool_not(), 0.0), mask)
}

/// The model's input: `asinh((x − loc)/scale)` where observed, 0 elsewhere.
pub(crate) fn scaled(
    x: Tensor<3>,
    loc: &Tensor<3>,
    scale: &Tensor<3>,
    mask: Tensor<3, Bool>,
) -> Tensor<3> {
    x.sub(loc.clone())
        .div(scale.clone())
        .mask_fill(mask.bool_not(), 0.0)
        .asinh()
}

/// Group ids per patch, `[B, V, S]`: the variate's series id, or [`EMPTY_PATCH`] for a patch
/// without any observation (the first `context` patches only, when given).
pub(crate) fn group_ids(
    series_ids: Tensor<2, Int>,
    mask: Tensor<3, Bool>,
    p: usize,
    context: Option<usize>,
) -> Tensor<3, Int> {
    let [b, v, t] = mask.dims();
    let s = t / p;
    let empty = mask
        .float()
        .reshape([b, v, s, p])
        .sum_dim(3)
        .reshape([b, v, s])
        .equal_elem(0.0);
    let empty = match context {
        Some(c) if c < s => {
            let keep = Tensor::<1, Int>::arange(0..s as i64, &series_ids.device())
                .lower_elem(c as i64)
                .reshape([1, 1, s])
                .expand([b, v, s]);
            empty.bool_and(keep)
        }
        _ => empty,
    };
    series_ids
        .reshape([b, v, 1])
        .expand([b, v, s])
        .mask_fill(empty, EMPTY_PATCH)
}
