//! [`NdArray`]: burn's ndarray CPU device, every op native.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::cpu::CpuKernels;
use super::ops::mixture::composed::select_rows;
use super::ops::mixture::{self, MixtureParams};
use super::ops::sampling::host;
use super::ops::scaler::{self, ScalerSpec};
use super::stream::Streams;
use super::transfer::{read_f32, upload};
use super::{Backend, Precision, Support, UNWINDOWED};
use crate::error::Result;
use crate::op::{Op, OpSet};
use crate::rng::DrawWindow;

/// burn-ndarray's device.
fn ndarray_device() -> Device {
    #[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; we target ndarray.
    Device::ndarray()
}

/// The CPU backend: burn's ndarray device, with every [`Op`] native.
///
/// Random draws are made on the host with `rand_distr` (ziggurat normals, Marsaglia–Tsang gamma
/// with the `alpha < 1` boost) and spread over every core with rayon, in fixed chunks of 4096
/// elements that each get their own `Xoshiro256PlusPlus` stream keyed by `(seed, call, chunk)`.
/// Samples therefore depend only on the seed and the sequence of calls, not on the thread count.
///
/// Seeding is per backend (clones share the stream): `seed(s)` restarts the sequence of calls.
/// A backend made by [`NdArray::new`] starts from an OS-random seed; [`NdArray::seeded`] from a
/// given one. Calls from several threads at once are safe; their samples are then exact draws,
/// but which thread gets which stream depends on timing.
///
/// ```
/// use toto_fallback::{Backend, NdArray};
///
/// let cpu = NdArray::seeded(7);
/// let alpha = burn::tensor::Tensor::<1>::full([4], 2.5, cpu.device());
/// let draws = cpu.standard_gamma(alpha)?;
/// assert_eq!(draws.dims(), [4]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct NdArray {
    device: Device,
    rng: Arc<Streams>,
    support: Support,
    /// The slice of each call a [`Backend::with_draw_window`] handle draws.
    window: Option<DrawWindow>,
    /// The kernels of the layer ops.
    kernels: CpuKernels,
    /// The format the packed kernels keep linear layers' weights in.
    weights: Precision,
}

impl NdArray {
    /// The CPU backend, seeded from the OS.
    pub fn new() -> Self {
        Self::seeded(rand::random())
    }

    /// The CPU backend with the given seed.
    pub fn seeded(seed: u64) -> Self {
        NdArray {
            device: ndarray_device(),
            rng: Arc::new(Streams::new(seed)),
            support: Support::lacking(OpSet::empty()),
            window: None,
            kernels: CpuKernels::from_env(),
            weights: Precision::F32,
        }
    }

    /// This backend with its layer ops ([`LayerOps`](crate::LayerOps)) on `kernels`: the
    /// crate's x86 kernels, the portable ones, or burn's ops. The default is
    /// [`CpuKernels::Auto`] (or `TOTO_FALLBACK_CPU_KERNELS`).
    ///
    /// ```
    /// use toto_fallback::{CpuKernels, NdArray};
    ///
    /// let cpu = NdArray::seeded(0).with_kernels(CpuKernels::Portable);
    /// assert_eq!(cpu.kernels(), CpuKernels::Portable);
    /// ```
    #[must_use]
    pub fn with_kernels(mut self, kernels: CpuKernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// The kernels of this backend's layer ops.
    pub fn kernels(&self) -> CpuKernels {
        self.kernels
    }

    /// This backend with the weights of the linear layers it multiplies kept in 16 bits
    /// ([`Precision::F16`] or [`Precision::Bf16`], rounded to nearest once, when a layer first
    /// runs) and widened to f32 as the product kernel loads them; the arithmetic stays f32.
    /// [`Precision::F32`], the default, keeps them as loaded.
    ///
    /// What it buys, on x86-64 CPUs with AVX2 or AVX-512: a product of few rows (one series'
    /// forecast, a streaming session's update, a decode step) reads every weight from memory
    /// once and is bound by that stream, so half the bytes make it up to 1.5–1.8× as fast;
    /// products of many rows are bound by arithmetic and do not move (docs/PERFORMANCE.md,
    /// "16-bit weights on the CPU"). The portable kernel (aarch64, [`CpuKernels::Portable`])
    /// multiplies the same rounded weights kept in f32: the same forecasts, not faster. What
    /// it costs: each
    /// weight carries a relative rounding of up to 2⁻¹¹ (f16) or 2⁻⁸ (bf16), so forecasts
    /// no longer match the reference models to 1e-5: on their fixtures, Toto 1.0's mean
    /// forecasts stay within a scaled error of 1.9e-4 (f16) and 1.2e-3 (bf16) of toto-ts's,
    /// Toto 2.0's quantiles within 9.4e-4 and 8e-3 of toto-2's. f16 is the better choice
    /// for both models (their weights are far inside its range; a layer with a weight beyond
    /// 65504 is kept in f32). Which format models *compute* in is another setting
    /// ([`Backend::precision`], f32 on the CPU): this one changes only what the products read.
    /// It applies to the crate's kernels ([`CpuKernels::Auto`], [`CpuKernels::Portable`]),
    /// not to burn's ops ([`CpuKernels::Burn`]).
    ///
    /// ```
    /// use toto_fallback::toto2::Toto2;
    /// use toto_fallback::{NdArray, Precision};
    ///
    /// let cpu = NdArray::seeded(0).with_weights(Precision::F16);
    /// assert_eq!(cpu.weights(), Precision::F16);
    /// let model = Toto2::from_dir(&cpu, "tests/fixtures/toto2-tiny")?;
    /// // The model computes in f32: only the weights its products read are rounded.
    /// assert_eq!(model.precision(), Precision::F32);
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    #[must_use]
    pub fn with_weights(mut self, format: Precision) -> Self {
        self.weights = format;
        self
    }

    /// The format this backend's product kernels keep weights in ([`NdArray::with_weights`]).
    pub fn weights(&self) -> Precision {
        self.weights
    }

    /// This backend on burn-flex's device (`Device::flex()`) instead of burn-ndarray's: the same
    /// samplers and layer-op kernels, with burn's own ops (the scaler, the output head, what
    /// runs between layer ops) on burn-flex, which is as fast as burn-ndarray or faster
    /// (docs/architecture.md, "The way to burn 0.23"). Its [`name`](Backend::name) is `flex`.
    /// Tensors handed to it must be on `Device::flex()`.
    ///
    /// ```
    /// use toto_fallback::{Backend, NdArray};
    ///
    /// let cpu = NdArray::seeded(7).on_flex();
    /// assert_eq!(cpu.name(), "flex");
    /// assert_eq!(cpu.device(), &burn::tensor::Device::flex());
    /// ```
    #[cfg(feature = "flex")]
    #[cfg_attr(docsrs, doc(cfg(feature = "flex")))]
    #[must_use]
    pub fn on_flex(mut self) -> Self {
        self.device = Device::flex();
        self
    }

    /// This backend with `ops` marked unsupported, so a [`FallbackBackend`](crate::FallbackBackend)
    /// around it forwards them (for tests and benchmarks of the fallback path).
    #[must_use]
    pub fn with_unsupported(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.support = self.support.disable(ops);
        self
    }
}

/// Reads an ndarray tensor to the host without burn-ndarray's slow path: a tensor whose buffer
/// is shared (the caller kept a clone) is copied element by element through a dynamic-rank
/// iterator (docs/PERFORMANCE.md, "Backend layer"). `x * 1` makes a fresh, uniquely owned buffer
/// with a vectorised pass, which is then handed over without a copy; it is bit-exact for every
/// value, NaN included.
fn read_unshared<const D: usize>(op: Op, t: Tensor<D>) -> Result<Vec<f32>> {
    read_f32(op.name(), t.mul_scalar(1.0))
}

impl Default for NdArray {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for NdArray {
    fn name(&self) -> &str {
        if self.device == ndarray_device() {
            "ndarray"
        } else {
            "flex"
        }
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn supports(&self, op: Op) -> bool {
        self.support.supports(op)
    }

    /// `Z · sqrt(ν / 2G)` with `Z ~ N(0, 1)`, `G ~ Gamma(ν/2, 1)` from this backend's host
    /// samplers (faster here than the polar method's transcendental functions). `ν = +inf`
    /// gives `Z` (the limit; `ν / 2G` would be `inf / inf`).
    fn standard_t_unchecked<const D: usize>(&self, df: Tensor<D>) -> Result<Tensor<D>> {
        let z = self.standard_normal_unchecked(df.dims())?;
        let g = self.standard_gamma_unchecked(df.clone().mul_scalar(0.5))?;
        let infinite = df.clone().equal_elem(f32::INFINITY);
        let ratio = df.div(g.mul_scalar(2.0)).mask_fill(infinite, 1.0);
        Ok(z.mul(ratio.sqrt()))
    }

    fn seed(&self, seed: u64) {
        self.rng.reseed(seed);
    }

    /// A handle whose mixture draws are `window`'s slice of the whole call; its other samplers
    /// are unsupported.
    fn with_draw_window(&self, window: DrawWindow) -> Option<Self> {
        Some(NdArray {
            window: Some(window),
            support: self.support.disable(UNWINDOWED),
            ..self.clone()
        })
    }

    /// One Philox block per draw, as the wgpu kernel: the component from word 0 against the
    /// row's cumulative weights (a host loop over every core), the chosen components'
    /// parameters gathered, then Bailey's polar Student-T from words 1-2. The draws equal
    /// [`Wgpu`](crate::Wgpu)'s up to the last bits of `exp`, `ln` and `cos`, and depend on
    /// neither the thread count nor how a batch is sliced.
    fn student_t_mixture_unchecked(
        &self,
        params: MixtureParams,
        samples: usize,
    ) -> Result<Tensor<2>> {
        let op = Op::StudentTMixture;
        let [rows, k] = params.dims();
        let [logits, df, loc, scale] = params.into_array();
        let key = self.rng.next_stream().draw_key();
        let logits = read_unshared(op, logits)?;
        let (index, words) = mixture::host::pick_components(key, self.window, logits, k, samples);
        let index =
            Tensor::<2, Int>::from_data(TensorData::new(index, [samples, rows]), &self.device);
        // Only the chosen components' parameters are read back (3 values a draw, not 3·K).
        let pick = |p: Tensor<2>| read_f32(op.name(), select_rows(p, index.clone()));
        let values =
            mixture::host::student_t_from_words(&pick(df)?, &pick(loc)?, &pick(scale)?, &words);
        Ok(upload(values, [samples, rows], &self.device))
    }

    fn uniform_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        let n = shape.iter().product();
        let values = host::uniform(self.rng.next_stream(), n);
        Ok(upload(values, shape, &self.device))
    }

    fn standard_normal_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        let n = shape.iter().product();
        let values = host::standard_normal(self.rng.next_stream(), n);
        Ok(upload(values, shape, &self.device))
    }

    fn standard_gamma_unchecked<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>> {
        let shape = alpha.dims();
        let alpha = read_unshared(Op::StandardGamma, alpha)?;
        let values = host::standard_gamma(self.rng.next_stream(), &alpha);
        Ok(upload(values, shape, &self.device))
    }

    /// A host loop over every core: the rows' cumulative sums once, then one uniform and a
    /// linear scan per draw.
    fn categorical_unchecked(&self, logits: Tensor<2>, samples: usize) -> Result<Tensor<2, Int>> {
        let [rows, k] = logits.dims();
        let w = read_unshared(Op::Categorical, logits)?;
        let idx = mixture::host::categorical(self.rng.next_stream(), w, k, samples);
        Ok(Tensor::from_data(
            TensorData::new(idx, [samples, rows]),
            &self.device,
        ))
    }

    fn patch_scaler_unchecked(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        scaler::host::run(series, weights, &self.device, |shape, x, w| {
            Ok(scaler::host::patch_stats(x, w, shape[2], spec))
        })
    }
}
