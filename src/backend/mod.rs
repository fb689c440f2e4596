//! The distribution-level backend layer: the [`Backend`] trait, the [`NdArray`] and [`Wgpu`]
//! backends, the [`FallbackBackend`] combinator and its [`Report`].
//!
//! This layer knows which ops a device runs and how to move tensors between devices; it knows
//! nothing of distributions beyond the ops it runs. Each op family lives in one folder under
//! `ops/` (checks, host version, composition, kernel); the backends pick among them.

#[cfg(feature = "wgpu")]
mod choose;
#[cfg(feature = "internals")]
pub mod cpu;
#[cfg(not(feature = "internals"))]
pub(crate) mod cpu;
mod fallback;
#[cfg(feature = "wgpu")]
pub mod kernel_cache;
pub mod layers;
mod ndarray;
pub(crate) mod ops;
mod precision;
mod stream;
pub(crate) mod transfer;
#[cfg(feature = "wgpu")]
mod wgpu;

#[cfg(feature = "wgpu")]
pub use self::choose::{Chosen, Prefer, choose_backend};
pub use self::cpu::CpuKernels;
pub use self::fallback::{FallbackBackend, FallbackPolicy, OpReport, Placement, Report, Usage};
pub use self::layers::{
    Affine, AttentionSpec, Heads, LayerOps, Mask, Prepared, QkNorm, Rotary, SiluHalf,
};
pub use self::ndarray::NdArray;
pub use self::ops::mixture::MixtureParams;
pub(crate) use self::ops::scaler::host::RowState;
pub use self::ops::scaler::{ScalerSpec, ScalerState};
pub use self::precision::Precision;
#[cfg(feature = "wgpu")]
pub use self::wgpu::Wgpu;
#[cfg(feature = "wgpu")]
pub use crate::adapter::{AdapterKind, GraphicsApi};
pub use crate::op::{Op, OpSet};
pub use crate::shape::MAX_ELEMENTS;

use std::fmt;

use burn::tensor::{Device, Int, Tensor};

use self::ops::{mixture, sampling, scaler};
use crate::error::{Error, Result};
use crate::shape::element_count;

/// A distribution-level compute backend: a cheap-to-clone handle that owns a burn [`Device`] and
/// knows which distribution [`Op`]s it runs natively.
///
/// burn 0.22's `Tensor<D>` carries a runtime `Device` and no backend type parameter, so this trait
/// is not burn's `Backend`: burn's own tensor ops (`add`, `exp`, `matmul`, ...) run on whatever
/// device holds their inputs, and this trait adds the operations burn lacks or that a device may
/// lack (gamma sampling, special functions), together with the question "do you run this
/// natively?". [`FallbackBackend`] uses the answer to route each op.
///
/// Every tensor argument must live on [`Backend::device`] (else [`Error::DeviceMismatch`]) and
/// every result lives there. All tensors are `f32`.
///
/// Each op is a provided method that checks its arguments (support, devices, shapes, sizes) and
/// calls the op's `_unchecked` method: a backend implements `uniform_unchecked`,
/// `standard_normal_unchecked` and `standard_gamma_unchecked`, and overrides the other
/// `_unchecked` methods it has a faster way for (their provided bodies are compositions), so
/// every backend refuses the same inputs in the same way.
///
/// Clones share state (seed, counters, reports): a clone is another handle to the same backend.
/// Implementations are `Send + Sync` and may be used from several threads at once.
pub trait Backend: Clone + Send + Sync + fmt::Debug + 'static {
    /// A human-readable name, such as `ndarray` or `wgpu (Vulkan, NVIDIA H100)`.
    fn name(&self) -> &str;

    /// The burn device every tensor of this backend lives on.
    fn device(&self) -> &Device;

    /// Whether this backend runs `op` itself. Calling an op for which this is `false` returns
    /// [`Error::Unsupported`] (or, on a [`FallbackBackend`], forwards it).
    fn supports(&self, op: Op) -> bool;

    /// Reseeds the backend's random streams: after `seed(s)`, the same sequence of calls with the
    /// same arguments returns the same samples. Each backend documents the scope of its seed.
    fn seed(&self, seed: u64);

    /// `U[0, 1)` draws of the given shape (`torch.rand`).
    ///
    /// # Errors
    /// [`Error::Unsupported`] if the op is not supported, [`Error::TooLarge`] if the shape
    /// holds more than [`MAX_ELEMENTS`] elements.
    fn uniform<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        self.ensure_supported(Op::Uniform)?;
        checked_elements(Op::Uniform, &shape)?;
        self.uniform_unchecked(shape)
    }

    /// [`Backend::uniform`] after its checks: every backend implements it.
    ///
    /// # Errors
    /// The backend's.
    fn uniform_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>>;

    /// `N(0, 1)` draws of the given shape (`torch.randn`).
    ///
    /// # Errors
    /// As [`Backend::uniform`].
    fn standard_normal<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        self.ensure_supported(Op::StandardNormal)?;
        checked_elements(Op::StandardNormal, &shape)?;
        self.standard_normal_unchecked(shape)
    }

    /// [`Backend::standard_normal`] after its checks: every backend implements it.
    ///
    /// # Errors
    /// The backend's.
    fn standard_normal_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>>;

    /// One `Gamma(alpha, 1)` draw per element of `alpha` (`torch._standard_gamma`); the result
    /// has `alpha`'s shape.
    ///
    /// Values: `alpha <= 0` or NaN gives NaN for that element (checking would read the tensor
    /// back, which a GPU pipeline must not do); `alpha = +inf` gives `+inf`. Draws are clamped
    /// below at `f32::MIN_POSITIVE` (as torch clamps to `finfo.tiny`), so `ln` of a draw is
    /// finite even for tiny `alpha`.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`] if `alpha` is on another device,
    /// [`Error::TooLarge`].
    fn standard_gamma<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>> {
        self.ensure_supported(Op::StandardGamma)?;
        self.ensure_on_device(Op::StandardGamma, "alpha", &alpha)?;
        checked_elements(Op::StandardGamma, &alpha.dims())?;
        self.standard_gamma_unchecked(alpha)
    }

    /// [`Backend::standard_gamma`] after its checks: every backend implements it.
    ///
    /// # Errors
    /// The backend's.
    fn standard_gamma_unchecked<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>>;

    /// One standard Student-T draw per element of `df` (degrees of freedom, `> 0`).
    ///
    /// The provided body ([`Backend::standard_t_unchecked`]) is Bailey's polar method written
    /// without rejection, two uniforms per draw and no gamma:
    /// `T = cos(2π U₂) · sqrt(ν · expm1(−(2/ν) ln U₁))` with `U₁ ∈ (0, 1]`, a handful of
    /// elementwise ops that burn's fusion compiles into one kernel on wgpu, so Student-T (and
    /// Toto's mixture) sampling runs natively on a GPU that has no gamma sampler.
    /// [`special::expm1`](crate::special::expm1) keeps it accurate for large `ν`, where it tends
    /// to the normal. `U₁` has the uniform's 2⁻²⁴ resolution, which truncates the tails beyond
    /// `sqrt(ν (2^(48/ν) − 1))` (62 at `ν = 5`; a probability below 1e-8).
    /// `NdArray` draws `Z · sqrt(ν / 2G)` from its own normal and gamma samplers instead.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`], [`Error::TooLarge`].
    fn standard_t<const D: usize>(&self, df: Tensor<D>) -> Result<Tensor<D>> {
        self.ensure_supported(Op::StandardT)?;
        self.ensure_on_device(Op::StandardT, "df", &df)?;
        checked_elements(Op::StandardT, &df.dims())?;
        self.standard_t_unchecked(df)
    }

    /// [`Backend::standard_t`] after its checks; the provided body is the polar method over
    /// [`Backend::uniform`].
    ///
    /// # Errors
    /// The backend's.
    fn standard_t_unchecked<const D: usize>(&self, df: Tensor<D>) -> Result<Tensor<D>> {
        sampling::composed::standard_t(self, df)
    }

    /// One category index in `0..K` per row of `logits` (`[rows, K]`, unnormalised
    /// log-weights), drawn `samples` times: a `[samples, rows]` tensor. Row `r`'s index is `k`
    /// with probability `exp(logits[r, k]) / Σ_j exp(logits[r, j])`; a logit of `-inf` is a
    /// category of probability 0. A row without any finite logit (all `-inf`, or a NaN) has no
    /// distribution; its index is then unspecified but in `0..K`.
    ///
    /// The provided body is a composition: the row maximum is subtracted and exponentiated,
    /// one backend `uniform` per output is located in the rows' cumulative sums by counting,
    /// which makes `[samples, rows, K]` passes; CPU backends override it with one fused host
    /// loop (max, exponential, cumulative sum and search per row).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`], [`Error::TooLarge`];
    /// [`Error::ParamShape`] if `K = 0`.
    fn categorical(&self, logits: Tensor<2>, samples: usize) -> Result<Tensor<2, Int>> {
        self.ensure_supported(Op::Categorical)?;
        mixture::check_categorical(self, &logits, samples)?;
        self.categorical_unchecked(logits, samples)
    }

    /// [`Backend::categorical`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn categorical_unchecked(&self, logits: Tensor<2>, samples: usize) -> Result<Tensor<2, Int>> {
        mixture::composed::categorical(self, logits, samples)
    }

    /// `samples` draws from each row of a batch of Student-T mixtures ([`MixtureParams`], each
    /// `[rows, K]`). Returns `[samples, rows]`: each draw picks component `k` of row `r` with
    /// probability `softmax(logits[r])[k]`, then draws
    /// `loc[r, k] + scale[r, k] · T(df[r, k])`. This is
    /// `MixtureSameFamily(Categorical, StudentT)`'s sample, Toto's output head.
    ///
    /// The provided body composes [`Backend::categorical`], a per-row gather of the chosen
    /// components and [`Backend::standard_t`]; [`Wgpu`] runs it as one kernel (one Philox block
    /// per draw: a uniform against the row's cumulative weights, two for Bailey's polar method).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`], [`Error::TooLarge`];
    /// [`Error::ParamShape`] if a parameter's shape differs from the logits' or `K = 0`.
    fn student_t_mixture(&self, params: MixtureParams, samples: usize) -> Result<Tensor<2>> {
        self.ensure_supported(Op::StudentTMixture)?;
        params.check(self, samples)?;
        self.student_t_mixture_unchecked(params, samples)
    }

    /// [`Backend::student_t_mixture`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn student_t_mixture_unchecked(
        &self,
        params: MixtureParams,
        samples: usize,
    ) -> Result<Tensor<2>> {
        mixture::composed::student_t_mixture(self, params, samples)
    }

    /// The causal patch scaler of both Toto generations (toto-ts's `CausalPatchStdMeanScaler`,
    /// toto-2's `PatchedCausalStdScaler`) over `series` and `weights` (`[B, V, T]`; weight 1 for
    /// a real value, 0 for padding): per series, a running weighted mean and Bessel-corrected
    /// variance along time, `σ = max(sqrt(var + variance_floor), scale_floor)` — Toto 1.0's
    /// `sqrt(var + 0.1)` clamped to `[max(0.1, σ_g·10^−e), σ_g·10^e]` of the global (context)
    /// statistics ([`ScalerSpec::toto`]), Toto 2.0's `max(sqrt(var), 1e-6)`
    /// ([`ScalerSpec::toto2`]) — each taken at the last step of its patch and broadcast over the
    /// patch. Returns `(loc, scale)`, `[B, V, T]`.
    ///
    /// The references compute it in f64; so does `NdArray` (on the host) and `Wgpu` (a kernel,
    /// where the adapter has f64 shaders). The provided body is an f32 composition of cumulative
    /// sums, which loses digits on long or offset series (measured on 4096 steps around 1e4:
    /// relative error 1.2e-3 in the scale against 3.7e-8 for the f64 host path); backends
    /// without f64 therefore leave [`Op::PatchScaler`] unsupported and a [`FallbackBackend`]
    /// runs it on the CPU in f64.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if the shapes
    /// differ, the patch size is 0, or a floor is negative or not finite (or `variance_floor`
    /// is 0 with `stabilize`).
    fn patch_scaler(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        self.ensure_supported(Op::PatchScaler)?;
        spec.check(self, &series, &weights)?;
        self.patch_scaler_unchecked(series, weights, spec)
    }

    /// [`Backend::patch_scaler`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn patch_scaler_unchecked(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        Ok(scaler::composed::patch_scaler(series, weights, spec))
    }

    /// [`Backend::patch_scaler`] continued: the statistics of `series` and `weights`
    /// (`[B, V, T]`, `T` whole patches) as the continuation of the series `state` has seen, so
    /// that a decode step pays for its new patch only (the full op rereads the whole series).
    /// An empty `state` starts the series and takes the clamp bounds from these steps (the
    /// first `spec.prefix`). Returns the new steps' `(loc, scale)`, equal to the tail of
    /// [`Backend::patch_scaler`] over the whole series.
    ///
    /// The recurrence is sequential and in f64, so the provided body runs it on the host (a
    /// device read of the new steps and an upload of the result); backends without
    /// [`Op::PatchScaler`] leave it to a [`FallbackBackend`].
    ///
    /// # Errors
    /// As [`Backend::patch_scaler`]; [`Error::Input`] if `T` is not a multiple of the patch
    /// size or the batch shape differs from the state's.
    fn patch_scaler_extend(
        &self,
        state: &mut ScalerState,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        self.ensure_supported(Op::PatchScaler)?;
        spec.check_extend(self, &series, &weights)?;
        let [b, v, _] = series.dims();
        state.check_shape(b, v)?;
        self.patch_scaler_extend_unchecked(state, series, weights, spec)
    }

    /// [`Backend::patch_scaler_extend`] after its checks; the provided body runs on the host.
    ///
    /// # Errors
    /// The backend's.
    fn patch_scaler_extend_unchecked(
        &self,
        state: &mut ScalerState,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        scaler::host::run(series, weights, self.device(), |shape, x, w| {
            state.extend(shape, x, w, spec)
        })
    }

    /// A handle to this backend (the same device, seed and call sequence) whose
    /// [`Backend::student_t_mixture`] draws are `window`'s slice of what the same call would
    /// draw for the whole batch: a forecast of a batch cut into slices of items, each on its
    /// own device with its own backend seeded alike, then draws what one device draws for the
    /// whole batch ([`MultiDevice`](crate::multi::MultiDevice) relies on it for Toto 1.0's
    /// sample paths). The handle's other samplers are unsupported. `None` (the provided body)
    /// for a backend whose draws are not addressed by element; [`Wgpu`], [`NdArray`] and a
    /// [`FallbackBackend`] of two such backends give one.
    fn with_draw_window(&self, window: crate::rng::DrawWindow) -> Option<Self> {
        let _ = window;
        None
    }

    /// The number format this backend gives the matrix products of a model that computes in
    /// reduced precision (Toto 2.0's; Toto 1.0 is f32 everywhere): the model takes it when it is
    /// loaded. [`Precision::F32`] (the provided body) on the CPU backends; on [`Wgpu`],
    /// [`Precision::F16`] where the adapter's kernels reach f16 tensor cores (cooperative
    /// matrices: the SPIR-V compiler on Vulkan, the MSL compiler on Metal) and f32 elsewhere,
    /// changed with [`Wgpu::with_precision`]; a [`FallbackBackend`] gives its GPU's.
    fn precision(&self) -> Precision {
        Precision::F32
    }

    /// What ran where, for a backend that routes ops to others ([`FallbackBackend::report`]);
    /// `None` (the provided body) for one that runs every op itself.
    fn fallback_report(&self) -> Option<Report> {
        None
    }

    /// Zeroes [`Backend::fallback_report`]'s counters ([`FallbackBackend::reset_report`]);
    /// nothing for a backend without them.
    fn reset_fallback_report(&self) {}

    /// `Ok(())` if this backend supports `op`, else [`Error::Unsupported`] naming it.
    fn ensure_supported(&self, op: Op) -> Result<()> {
        if self.supports(op) {
            Ok(())
        } else {
            Err(Error::Unsupported {
                op,
                backend: self.name().to_owned(),
            })
        }
    }

    /// `Ok(())` if `tensor` lives on this backend's device, else [`Error::DeviceMismatch`].
    fn ensure_on_device<const D: usize>(
        &self,
        op: Op,
        param: &'static str,
        tensor: &Tensor<D>,
    ) -> Result<()> {
        Error::ensure_devices(op.name(), self.device(), [(param, tensor.device())])
    }
}

/// Reads an `f32` tensor back to the host (a device sync on a GPU), for `validate()`s.
pub(crate) fn read_back<const D: usize>(what: &str, t: Tensor<D>) -> Result<Vec<f32>> {
    transfer::read_f32(what, t)
}

/// The element count of `shape`, or [`Error::TooLarge`] past [`MAX_ELEMENTS`].
pub(crate) fn checked_elements(op: Op, shape: &[usize]) -> Result<usize> {
    element_count(shape).map_err(|elements| Error::TooLarge {
        what: op.name(),
        shape: shape.to_vec(),
        elements,
        limit: MAX_ELEMENTS,
        fix: "draw in smaller batches",
    })
}

/// The samplers a [`Backend::with_draw_window`] handle leaves unsupported: only the mixture
/// draw honours a window (`NdArray`'s normal and gamma samplers reject, so an element's draws
/// have no fixed address; the others are left out too, so that every backend's handle offers
/// the same ops).
pub(crate) const UNWINDOWED: [Op; 5] = [
    Op::Uniform,
    Op::StandardNormal,
    Op::StandardGamma,
    Op::StandardT,
    Op::Categorical,
];

/// The ops a backend lacks by nature, plus the ops the user disabled.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Support {
    lacking: OpSet,
    disabled: OpSet,
}

impl Support {
    pub(crate) const fn lacking(lacking: OpSet) -> Self {
        Support {
            lacking,
            disabled: OpSet::empty(),
        }
    }

    pub(crate) fn disable(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.disabled = ops.into_iter().fold(self.disabled, OpSet::with);
        self
    }

    pub(crate) const fn supports(self, op: Op) -> bool {
        !self.lacking.contains(op) && !self.disabled.contains(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_elements_counts_and_refuses_overflow() {
        assert_eq!(checked_elements(Op::Uniform, &[3, 4, 5]).unwrap(), 60);
        let err = checked_elements(Op::Uniform, &[1 << 20, 1 << 20]).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { what: "uniform", elements, .. } if elements == 1 << 40)
        );
    }

    #[test]
    fn support_combines_lacking_and_disabled() {
        let s = Support::lacking(OpSet::empty().with(Op::StandardGamma)).disable([Op::StandardT]);
        assert!(!s.supports(Op::StandardGamma));
        assert!(!s.supports(Op::StandardT));
        assert!(s.supports(Op::Uniform));
    }
}
