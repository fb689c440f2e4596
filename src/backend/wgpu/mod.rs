//! [`Wgpu`]: burn's wgpu device (Vulkan, Metal, DX12), with native Philox samplers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use burn::tensor::wgpu::WgpuInitError;
use burn::tensor::{DType, Device, Int, Tensor};

use super::ops::mixture::{self, MixtureParams};
use super::ops::sampling::tensor as sampling;
use super::ops::scaler::{self, ScalerSpec, ScalerState};
use super::stream::Streams;
use super::{Backend, Precision, Support, UNWINDOWED};
use crate::adapter::{AdapterKind, GraphicsApi};
use crate::error::{Error, Result};
use crate::op::{Op, OpSet};
use crate::rng::{DrawKey, DrawWindow};
use crate::shape::ReshapeExact;

/// The GPU backend: burn's wgpu device (Vulkan, Metal, DX12).
///
/// Native: every sampler, as CubeCL kernels over a counter-based generator (Philox4x32-10,
/// [`crate::rng`]) — [`Op::Uniform`], [`Op::StandardNormal`] (Box–Muller),
/// [`Op::StandardGamma`] (Marsaglia–Tsang with the `alpha < 1` boost), [`Op::StandardT`]
/// (Bailey's polar method without rejection) and [`Op::StudentTMixture`] (component pick and
/// Student-T draw fused, Toto's head) — plus [`Op::Categorical`] composed from tensor ops.
/// burn 0.22 itself has no gamma sampling on any GPU; these kernels are this crate's. [`Op::PatchScaler`] (Toto's
/// scaler, in f64 as toto-ts computes it) is a kernel too, native where the adapter has f64
/// shaders (Vulkan on desktop GPUs, lavapipe) and unsupported elsewhere (Metal), where a
/// [`FallbackBackend`](crate::FallbackBackend) runs it on the CPU. [`Wgpu::with_unsupported`]
/// forces any op onto the fallback.
///
/// Seeding and reproducibility: [`Backend::seed`] restarts this backend's call sequence (clones
/// share it); element `i` of the `k`-th sampling call after `seed(s)` is computed from Philox
/// blocks keyed by `s` and addressed by `(i, k)`, so draws depend on neither the adapter, the
/// launch layout nor the batch size, and the uniforms equal [`NdArray`](crate::NdArray)'s bit
/// for bit. [`Wgpu::with_offset`] draws a slice of a larger call. Transforms use the adapter's
/// `ln`/`cos`/`exp`, so Student-T or gamma values may differ across adapters in the last bits.
/// Each call costs one kernel launch and no host read-back.
///
/// Opening an adapter is expensive: constructors cache the device per `(api, adapter)`, so
/// building another `Wgpu` for the same adapter is cheap and shares it.
///
/// ```no_run
/// use toto_fallback::{AdapterKind, Backend, GraphicsApi, Op, Wgpu};
///
/// let gpu = Wgpu::with_adapter(GraphicsApi::Auto, AdapterKind::Default)?;
/// assert!(gpu.supports(Op::StandardGamma));
/// // Toto's f64 scaler: native with f64 shaders (Vulkan), forwarded on Metal.
/// println!("f64 scaler native: {}", gpu.supports(Op::PatchScaler));
/// println!("running on {}", gpu.name());
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Clone)]
pub struct Wgpu {
    device: Device,
    name: Arc<str>,
    software: bool,
    support: Support,
    precision: Precision,
    rng: Arc<Streams>,
    offset: u64,
    /// `(chunk, stride)` of a [`DrawWindow`] handle's mixture draws; `(u32::MAX, 0)` otherwise.
    window: (u32, u32),
}

impl fmt::Debug for Wgpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wgpu")
            .field("name", &self.name)
            .field("software", &self.software)
            .field("device", &self.device)
            .field("support", &self.support)
            .field("precision", &self.precision)
            .field("rng", &self.rng)
            .field("offset", &self.offset)
            .field("window", &self.window)
            .finish()
    }
}

/// What opening a request gave: the device, or the name of the OpenGL adapter it was refused
/// for (kept, so that a later call does not take burn's lazily registered GL runtime).
type Opened = std::result::Result<Device, String>;

/// Devices opened so far, by request: `init` may succeed only once per selector.
fn opened() -> &'static Mutex<HashMap<(GraphicsApi, AdapterKind), Opened>> {
    static OPENED: OnceLock<Mutex<HashMap<(GraphicsApi, AdapterKind), Opened>>> = OnceLock::new();
    OPENED.get_or_init(Default::default)
}

impl Wgpu {
    /// The default adapter on the platform's best graphics API.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when wgpu finds no usable adapter; [`Error::OpenGlOnly`] when the
    /// only one runs on OpenGL, which this crate does not use ([`GraphicsApi::Auto`]).
    pub fn new() -> Result<Self> {
        Self::with_adapter(GraphicsApi::Auto, AdapterKind::Default)
    }

    /// A chosen adapter on a chosen graphics API.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter of that kind exists for that API (or it refuses to
    /// create a device), or the API is not compiled into this build; [`Error::OpenGlOnly`]
    /// when `GraphicsApi::Auto` finds only an OpenGL adapter.
    pub fn with_adapter(api: GraphicsApi, adapter: AdapterKind) -> Result<Self> {
        let device = open(api, adapter)?;
        let shader = shader_of(&device);
        let name = match device.identity() {
            Some(id) => format!("wgpu ({}; {shader})", id.name),
            None => format!("wgpu ({api:?}; {shader})"),
        };
        // cubecl describes no card for an adapter of wgpu's `DeviceType::Cpu`.
        let software = device.identity().is_some_and(|id| id.physical.is_none());
        if software && shader == "spirv" && !allowed("TOTO_WGPU_SOFTWARE_SPIRV") {
            return Err(Error::SoftwareSpirv { adapter, name });
        }
        // Toto's scaler runs in f64 as toto-ts does: native where the adapter has f64 shaders
        // (Vulkan on most desktop GPUs, lavapipe), forwarded elsewhere (Metal has no f64).
        let lacking = if device.supports_dtype(burn::tensor::DType::F64) {
            OpSet::empty()
        } else {
            OpSet::empty().with(Op::PatchScaler)
        };
        let precision = if has_f16_tensor_cores(&device) {
            Precision::F16
        } else {
            Precision::F32
        };
        Ok(Wgpu {
            device,
            name: name.into(),
            software,
            support: Support::lacking(lacking),
            precision,
            rng: Arc::new(Streams::new(rand::random())),
            offset: 0,
            window: WHOLE,
        })
    }

    /// This backend with `precision` for the matrix products of the models loaded on it
    /// afterwards ([`Backend::precision`]; Toto 2.0's). `Precision::F32` is the way back to
    /// toto-2's f32 numbers on a GPU whose default is `F16`:
    ///
    /// ```no_run
    /// use toto_fallback::{Backend, Forecaster, Precision, Wgpu};
    /// use toto_fallback::toto2::Toto2;
    ///
    /// let gpu = Wgpu::new()?.with_precision(Precision::F32)?;
    /// let model = Toto2::from_pretrained(&gpu, "Datadog/Toto-2.0-22m")?;
    /// assert_eq!(model.precision(), Precision::F32);
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PrecisionUnsupported`] when the adapter has no arithmetic in that format (no
    /// adapter measured so far has bf16).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        if !precision.supported_on(&self.device) {
            return Err(Error::PrecisionUnsupported {
                model: "Wgpu::with_precision",
                precision: precision.to_string(),
                device: self.name.to_string(),
            });
        }
        self.precision = precision;
        Ok(self)
    }

    /// Every discrete GPU that `api` reaches, in the driver's order (`DiscreteGpu(0)`,
    /// `DiscreteGpu(1)`, ...), each opened once: the devices of a
    /// [`MultiDevice`](crate::multi::MultiDevice) that uses a whole host.
    ///
    /// ```no_run
    /// use toto_fallback::{FallbackBackend, Forecaster, GraphicsApi, MultiDevice, NdArray, Wgpu};
    /// use toto_fallback::toto2::Toto2;
    ///
    /// let devices = Wgpu::discrete_gpus(GraphicsApi::Auto)?
    ///     .into_iter()
    ///     .map(|gpu| FallbackBackend::new(gpu, NdArray::new()));
    /// let model = MultiDevice::load(devices, |b| Toto2::from_pretrained(b, "Datadog/Toto-2.0-22m"))?;
    /// println!("{} GPUs", model.devices());
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoAdapter`] (for `DiscreteGpu(0)`) when there is none.
    pub fn discrete_gpus(api: GraphicsApi) -> Result<Vec<Self>> {
        let mut gpus = Vec::new();
        loop {
            match Self::with_adapter(api, AdapterKind::DiscreteGpu(gpus.len())) {
                Ok(gpu) => gpus.push(gpu),
                Err(e) if gpus.is_empty() => return Err(e),
                Err(_) => return Ok(gpus),
            }
        }
    }

    /// A handle whose draws start at element `offset` of each call's stream ([`crate::rng`]):
    /// a call drawing `n` elements through it returns elements `offset..offset + n` of what
    /// the same call would draw for a larger output. This is how a slice of a batch reproduces
    /// the batch's draws: row 3 of an `[8, n]` draw equals a `[1, n]` draw at offset `3n`, made
    /// by the same call after the same seed. The handle shares the seed and call sequence with
    /// `self`.
    ///
    /// ```no_run
    /// use burn::tensor::Tensor;
    /// use toto_fallback::{Backend, Wgpu};
    ///
    /// let gpu = Wgpu::new()?;
    /// gpu.seed(7);
    /// let batch = gpu.standard_gamma(Tensor::<2>::full([8, 100], 2.5, gpu.device()))?;
    /// gpu.seed(7);
    /// let third = gpu.with_offset(300).standard_gamma(Tensor::<2>::full([1, 100], 2.5, gpu.device()))?;
    /// assert_eq!(batch.slice([3..4, 0..100]).into_data(), third.into_data());
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    #[must_use]
    pub fn with_offset(&self, offset: u64) -> Self {
        Wgpu {
            offset,
            ..self.clone()
        }
    }

    /// Whether the adapter is a software rasterizer (Mesa's lavapipe/llvmpipe, Microsoft's WARP):
    /// the CPU emulating a GPU, correct but slower than [`NdArray`](crate::NdArray) on the same
    /// cores. [`choose_backend`](crate::choose_backend) passes over such an adapter.
    pub fn is_software(&self) -> bool {
        self.software
    }

    /// This backend with `ops` marked unsupported as well, so a
    /// [`FallbackBackend`](crate::FallbackBackend) around it forwards them (for tests and
    /// benchmarks of the fallback path).
    #[must_use]
    pub fn with_unsupported(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.support = self.support.disable(ops);
        self
    }
}

impl Wgpu {
    /// The Philox key of the next call, at this handle's offset.
    fn key(&self) -> DrawKey {
        self.rng.next_stream().draw_key().with_offset(self.offset)
    }

    /// A one-element tensor that names this device to the kernels (an extension op routes on
    /// an input tensor).
    fn anchor(&self) -> Tensor<1> {
        Tensor::empty([1], &self.device)
    }
}

/// The window of a handle that draws whole calls.
const WHOLE: (u32, u32) = (u32::MAX, 0);

/// The graphics APIs tried, in order, when `GraphicsApi::Auto` resolves to OpenGL: the
/// platform's native compute APIs.
const NATIVE_APIS: &[GraphicsApi] = if cfg!(target_os = "macos") {
    &[GraphicsApi::Metal]
} else if cfg!(target_os = "windows") {
    &[GraphicsApi::Vulkan, GraphicsApi::Dx12]
} else {
    &[GraphicsApi::Vulkan]
};

/// Opens (or finds already opened) the device for a request. `GraphicsApi::Auto` is CubeCL's
/// choice (a hardware adapter first, Vulkan before DX12 before OpenGL), except that an OpenGL
/// device is not used: wgpu's GL backend can deadlock under CubeCL's autotuning
/// (docs/troubleshooting.md, "OpenGL"). Where Auto lands on GL, the native APIs are tried
/// instead, and [`Error::OpenGlOnly`] names the GL adapter when none of them has one. The
/// environment variable `TOTO_WGPU_OPENGL=allow` keeps the GL device (to reproduce the
/// deadlock, or to check whether a newer burn has fixed it).
fn open(api: GraphicsApi, adapter: AdapterKind) -> Result<Device> {
    super::kernel_cache::apply_defaults();
    let mut opened = opened().lock().unwrap_or_else(|e| e.into_inner());
    open_in(&mut opened, api, adapter)
}

/// [`open`] with the map of opened devices locked.
fn open_in(
    opened: &mut HashMap<(GraphicsApi, AdapterKind), Opened>,
    api: GraphicsApi,
    adapter: AdapterKind,
) -> Result<Device> {
    if let Some(known) = opened.get(&(api, adapter)) {
        return known
            .clone()
            .map_err(|name| Error::OpenGlOnly { adapter, name });
    }
    let registered = Device::wgpu_options()
        .graphics_api(api.to_burn())
        .device_kind(adapter.to_burn())
        .init_with_setup();
    let result = match registered {
        Ok((device, setup)) if setup.backend != burn::tensor::wgpu::wgpu::Backend::Gl => Ok(device),
        Ok((device, setup)) => {
            let name = setup.adapter.get_info().name;
            if allowed("TOTO_WGPU_OPENGL") {
                log::warn!(
                    "using `{name}` on OpenGL (TOTO_WGPU_OPENGL=allow): wgpu's GL backend can \
                     deadlock under CubeCL's autotuning (docs/troubleshooting.md, \"OpenGL\")"
                );
                Ok(device)
            } else {
                log::info!(
                    "wgpu chose `{name}` on OpenGL for {adapter:?}, which is not used; trying \
                     {NATIVE_APIS:?}"
                );
                // A pinned native API never resolves to OpenGL, so this recursion ends.
                NATIVE_APIS
                    .iter()
                    .find_map(|&native| open_in(opened, native, adapter).ok())
                    .ok_or(name)
            }
        }
        // Someone (the application, through burn directly) initialised this selector already;
        // burn's lazy device for it is then the same runtime.
        Err(WgpuInitError::Registration { .. }) if api == GraphicsApi::Auto => {
            Ok(Device::wgpu(adapter.to_burn()))
        }
        Err(e) => {
            return Err(Error::NoAdapter {
                api,
                adapter,
                source: Box::new(e),
            });
        }
    };
    opened.insert((api, adapter), result.clone());
    result.map_err(|name| Error::OpenGlOnly { adapter, name })
}

/// The CubeCL device behind a burn device: every wgpu device is one.
fn cube_device(device: &Device) -> Option<&cubecl::Device> {
    #[allow(unreachable_patterns)]
    match device.as_dispatch() {
        burn::backend::DispatchDevice::Cube(cube) => Some(cube),
        _ => None,
    }
}

/// The compiler cubecl serves the device with: `spirv`, `msl` or `wgsl`. cubecl names the
/// runtime after it (`wgpu<spirv>`); the identity's fingerprint starts with `spirv_` whatever
/// the compiler, so it cannot tell.
fn shader_of(device: &Device) -> String {
    let Some(cube) = cube_device(device) else {
        return String::from("?");
    };
    let runtime = cube.client().name();
    runtime
        .split_once('<')
        .and_then(|(_, rest)| rest.strip_suffix('>'))
        .unwrap_or(runtime)
        .to_owned()
}

/// Whether the device's kernels reach f16 tensor cores: a cooperative-matrix configuration
/// with f16 inputs (SPIR-V's `VK_KHR_cooperative_matrix`, Metal's simdgroup matrices; WGSL has
/// none).
fn has_f16_tensor_cores(device: &Device) -> bool {
    let f16 = cubecl::ir::ElemType::Float(cubecl::ir::FloatKind::F16);
    Precision::F16.supported_on(device)
        && cube_device(device).is_some_and(|cube| {
            let client = cube.client();
            let cmma = &client.properties().features.matmul.cmma;
            cmma.iter().any(|mma| mma.a_type == f16)
        })
}

/// Whether the heads kernel prepares `qkv`'s queries and keys: `f32` projections of the
/// fused width, heads of 1 to 256 values (a cube's threads), weights of the head's width, a
/// rotation of pairs within the head for the call's positions. (`attention_heads` has no
/// checks of its own: anything else keeps the composition, which broadcasts or refuses as
/// burn does.)
fn heads_kernel_serves(qkv: &Tensor<3>, spec: &crate::backend::AttentionSpec<'_>) -> bool {
    let h = spec.heads;
    let [_, s, width] = qkv.dims();
    let norms = spec.qk_norm.iter().flat_map(|n| [n.query, n.key]).flatten();
    let mut vectors = norms.chain(spec.query_scale.map(|(m, _)| m));
    qkv.dtype() == DType::F32
        && width == h.fused_width()
        && (1..=super::ops::attention::MAX_HEAD).contains(&h.qk)
        && vectors.all(|w| w.dims() == [h.qk])
        && spec.rotary.is_none_or(|r| {
            r.positions() == s && r.rotated() <= h.qk && r.rotated().is_multiple_of(2)
        })
}

/// Whether the environment variable `var` says `allow`.
fn allowed(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "allow")
}

/// The most multiply-adds (`rows · K · N`) of a half-precision product that `Wgpu` runs in f32
/// instead. A product of few rows is bound by its launches, not its arithmetic: in f16 it
/// needs the input cast down and the result cast back, two launches that burn's fusion does
/// not fold into the product, where an f32 product takes its neighbours' elementwise work into
/// its own kernel. On an H100 a Toto 2.0 22m-like session update at B 16 (320 rows, products of
/// up to 3.8·10⁸ multiply-adds) ran 289 kernels and 9.7–10.6 ms in f32 against 385 kernels and
/// 11.6–11.9 ms in f16, and a full forecast of one series (272 rows) 10.7–11.0 ms against
/// 12.1–12.8 ms; at 4,352 rows (5.2·10⁹ multiply-adds) f16 took 13.0 ms and f32 23.5 ms.
pub(crate) const WIDENED_PRODUCT_MACS: usize = 1 << 29;

/// Every layer op as its composition of burn ops (burn's fusion compiles the elementwise ones
/// into few kernels, and its autotuned `matmul` serves the products), but attention's heads,
/// attention of a few queries over a KV cache and the sort of a few values per column, which
/// run kernels of their own (`src/backend/ops/heads`, `src/backend/ops/attention`,
/// `src/backend/ops/sort`), and half-precision products of few rows, which run in f32.
impl crate::backend::layers::LayerOps for Wgpu {
    /// A half-precision product of at most `WIDENED_PRODUCT_MACS` (2²⁹) multiply-adds runs
    /// in f32 against the weight widened once (kept in the layer's
    /// [`Prepared`](crate::backend::Prepared)); larger ones run in the layer's format.
    fn linear_unchecked<const D: usize>(
        &self,
        x: Tensor<D>,
        a: crate::backend::Affine<'_>,
    ) -> Result<Tensor<D>> {
        use crate::backend::layers::composed::linear;
        let [k, n] = a.dims();
        let rows = x.shape().num_elements() / k.max(1);
        match a.compute {
            Some(_) if rows.saturating_mul(k).saturating_mul(n) <= WIDENED_PRODUCT_MACS => {
                let widened = a
                    .prepared
                    .0
                    .widened
                    .get_or_init(|| a.weight.clone().cast(burn::tensor::FloatDType::F32));
                let wide = crate::backend::Affine {
                    weight: widened,
                    compute: None,
                    ..a
                };
                Ok(linear(x, wide))
            }
            _ => Ok(linear(x, a)),
        }
    }

    fn sort_first_unchecked<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        use super::ops::sort::{MAX_SORT, tensor::sort_first};
        match x.dtype() == DType::F32 && x.dims()[0] <= MAX_SORT {
            true => Ok(sort_first(x)),
            false => Ok(crate::backend::layers::composed::sort_first(x)),
        }
    }

    /// The queries and keys in one kernel (`src/backend/ops/heads`), the values a view.
    fn attention_heads(
        &self,
        qkv: Tensor<3>,
        spec: &crate::backend::AttentionSpec<'_>,
    ) -> Result<(Tensor<4>, Tensor<4>, Tensor<4>)> {
        match heads_kernel_serves(&qkv, spec) {
            true => {
                let v = spec.values(qkv.clone());
                let (q, k) = super::ops::heads::tensor::queries_keys(qkv, spec);
                Ok((q, k, v))
            }
            false => Ok(spec.queries_keys_values(qkv)),
        }
    }

    fn attention_core_unchecked(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        divisor: f64,
        mask: &crate::backend::Mask,
    ) -> Result<Tensor<4>> {
        use super::ops::attention::tensor::{Keys, few_query_attention};
        use super::ops::attention::{MAX_HEAD, MAX_QUERIES};
        use crate::backend::Mask;
        let [_, _, s, dk] = q.dims();
        let dv = v.dims()[3];
        // Widths of 0 (empty heads) keep the composition: the kernel's per-thread arrays need
        // at least one element.
        let few = s <= MAX_QUERIES && (1..=MAX_HEAD).contains(&dk) && (1..=MAX_HEAD).contains(&dv);
        let f32s = [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32);
        let keys = match mask {
            Mask::Cache { len } => Some(Keys::Written(*len)),
            Mask::Blocked(m) => Some(Keys::Blocked(m)),
            Mask::None | Mask::Causal => None,
        };
        match keys {
            Some(keys) if few && f32s => Ok(few_query_attention(q, k, v, keys, divisor)),
            _ => Ok(crate::backend::layers::composed::attention_core(
                q, k, v, divisor, mask,
            )),
        }
    }
}

impl Backend for Wgpu {
    fn name(&self) -> &str {
        &self.name
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn supports(&self, op: Op) -> bool {
        self.support.supports(op)
    }

    /// Restarts this backend's Philox call sequence from `seed` (clones share it), and seeds
    /// burn's own cubecl generator for any burn random op the caller makes.
    fn seed(&self, seed: u64) {
        self.rng.reseed(seed);
        self.device.seed(seed);
    }

    /// `F16` where the adapter's kernels reach f16 tensor cores, `F32` elsewhere, unless
    /// [`Wgpu::with_precision`] said otherwise.
    fn precision(&self) -> Precision {
        self.precision
    }

    /// A handle whose mixture draws are `window`'s slice of the whole call (its offset is the
    /// window's first element); its other samplers are unsupported. `None` if the window's
    /// repetition does not fit the kernel's 32-bit indices.
    fn with_draw_window(&self, window: DrawWindow) -> Option<Self> {
        let (offset, chunk, stride) = window.words()?;
        Some(Wgpu {
            offset,
            window: (chunk, stride),
            support: self.support.disable(UNWINDOWED),
            ..self.clone()
        })
    }

    fn uniform_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        let n = shape.iter().product();
        let key = self.key();
        if n == 0 {
            // burn's reshape reads a 0 as "keep this dimension": build empty shapes directly.
            return Ok(Tensor::empty(shape, &self.device));
        }
        Ok(sampling::uniform(self.anchor(), n, key).reshape_exact(shape))
    }

    /// Box–Muller from one Philox block per element (one of the pair).
    fn standard_normal_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        let n = shape.iter().product();
        let key = self.key();
        if n == 0 {
            // burn's reshape reads a 0 as "keep this dimension": build empty shapes directly.
            return Ok(Tensor::empty(shape, &self.device));
        }
        Ok(sampling::normal(self.anchor(), n, key).reshape_exact(shape))
    }

    /// Marsaglia–Tsang in one kernel, one Philox block per attempt (see the type's docs).
    fn standard_gamma_unchecked<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>> {
        let key = self.key();
        Ok(sampling::gamma(alpha, key))
    }

    /// Bailey's polar method in one kernel, one Philox block per draw.
    fn standard_t_unchecked<const D: usize>(&self, df: Tensor<D>) -> Result<Tensor<D>> {
        let key = self.key();
        Ok(sampling::student_t(df, key))
    }

    /// The provided composition, with its uniforms from the Philox kernel directly (so forcing
    /// [`Op::Uniform`] onto a fallback leaves categorical draws native).
    fn categorical_unchecked(&self, logits: Tensor<2>, samples: usize) -> Result<Tensor<2, Int>> {
        let [rows, _] = logits.dims();
        let n = samples * rows;
        let u = if n == 0 {
            Tensor::empty([samples, rows, 1], &self.device)
        } else {
            sampling::uniform(self.anchor(), n, self.key()).reshape_exact([samples, rows, 1])
        };
        Ok(mixture::composed::categorical_with(logits, u))
    }

    /// Two f64 kernels, one thread per series: the clamp bounds, then the recurrence.
    fn patch_scaler_unchecked(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let mut state = ScalerState::default();
        Ok(scaler::tensor::run(
            &self.device,
            &mut state,
            series,
            weights,
            spec,
        ))
    }

    /// The state stays in a GPU buffer between calls; a decode step reads only its new patch.
    fn patch_scaler_extend_unchecked(
        &self,
        state: &mut ScalerState,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        Ok(scaler::tensor::run(
            &self.device,
            state,
            series,
            weights,
            spec,
        ))
    }

    /// One kernel: each draw reads its row's logits, picks a component and draws from it.
    fn student_t_mixture_unchecked(
        &self,
        params: MixtureParams,
        samples: usize,
    ) -> Result<Tensor<2>> {
        if self.window != WHOLE {
            // The whole call's elements must fit the kernel's 32-bit block index.
            let [rows, _] = params.dims();
            let n = samples.saturating_mul(rows) as u64;
            let (chunk, stride) = (u64::from(self.window.0), u64::from(self.window.1));
            let whole = (n / chunk).saturating_mul(stride);
            if whole > u64::from(u32::MAX) {
                return Err(Error::TooLarge {
                    what: "student_t_mixture (the whole batch a DrawWindow slices)",
                    shape: vec![samples, rows],
                    elements: u128::from(whole),
                    limit: u64::from(u32::MAX),
                    fix: "forecast fewer items or fewer samples per batch at once",
                });
            }
        }
        let key = self.key();
        Ok(mixture::tensor::student_t_mixture(
            params,
            samples,
            key,
            self.window,
        ))
    }
}
