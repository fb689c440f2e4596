//! The causal patch scaler of both Toto generations: [`Op::PatchScaler`] (toto-ts's
//! `CausalPatchStdMeanScaler`, toto-2's `PatchedCausalStdScaler`), over a whole series or
//! continued from a [`ScalerState`].
//!
//! | piece | file |
//! |---|---|
//! | the settings ([`ScalerSpec`]), argument checks and the running state ([`ScalerState`]) | `mod.rs` |
//! | the f64 recurrence on the host (`NdArray`, the reference) | `host.rs` |
//! | an f32 composition of cumulative sums (the trait's provided body) | `composed.rs` |
//! | the f64 kernels (`Wgpu` with f64 shaders), one thread per series | `kernel.rs` |
//! | their launch, a burn backend extension | `launch.rs` |
//! | the tensor-level entry point, which keeps the state on the GPU | `tensor.rs` |
//!
//! [`Op::PatchScaler`]: crate::Op::PatchScaler

pub(crate) mod composed;
pub(crate) mod host;
#[cfg(feature = "wgpu")]
mod kernel;
#[cfg(feature = "wgpu")]
mod launch;
#[cfg(feature = "wgpu")]
pub(crate) mod tensor;

use burn::tensor::{Device, Tensor};

use self::host::RowState;
use crate::backend::Backend;
use crate::backend::transfer::Transfer;
use crate::error::{Error, InputKind, Result};
use crate::op::Op;

/// toto-ts's `minimum_scale`, which Toto 1.0's scaler *adds* to the variance.
pub(crate) const MINIMUM_SCALE: f64 = 0.1;

/// toto-2's `minimum_scale`, the smallest scale of Toto 2.0's scaler.
pub(crate) const TOTO2_MINIMUM_SCALE: f64 = 1e-6;

/// Doubles per series in a [`ScalerState`] kept on a device: `lo, hi, wsum, xsum, m2, mu_prev`
/// (the fields of the host state; `hi = 0` means no clamp: a real bound is at least
/// `sqrt(0.1) · 10^-e > 0`).
pub(crate) const STATE_WORDS: usize = 6;

/// The settings of [`Backend::patch_scaler`]: the causal statistics of both Toto generations.
///
/// Per series, a running weighted mean and Bessel-corrected variance (correction 1, the
/// denominator clamped to at least 1), and the scale
/// `σ = max(sqrt(var + variance_floor), scale_floor)`, clamped to
/// `[max(variance_floor', σ_g·10^−e), σ_g·10^e]` of the global statistics when `stabilize`;
/// each taken at the last step of its patch and repeated over the patch.
/// [`ScalerSpec::toto`] is Toto 1.0's `CausalPatchStdMeanScaler`, [`ScalerSpec::toto2`] Toto
/// 2.0's `PatchedCausalStdScaler`.
///
/// ```
/// use toto_fallback::ScalerSpec;
///
/// let v1 = ScalerSpec::toto(64, None, true, 10.0);
/// assert_eq!((v1.variance_floor, v1.scale_floor), (0.1, 0.0));
/// let v2 = ScalerSpec::toto2(32);
/// assert_eq!((v2.variance_floor, v2.scale_floor, v2.stabilize), (0.0, 1e-6, false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalerSpec {
    /// Steps per patch; the statistics are taken at each patch's last step.
    pub patch: usize,
    /// Global statistics from the first `prefix` steps only (toto-ts's `scaling_prefix_length`).
    pub prefix: Option<usize>,
    /// Clamp the scale relative to the global statistics (toto-ts's `stabilize_with_global`).
    pub stabilize: bool,
    /// The clamp's decades (toto-ts's `scale_factor_exponent`).
    pub exponent: f64,
    /// Added to the variance before the square root, and the lower bound of the clamp (toto-ts's
    /// `minimum_scale`, 0.1).
    pub variance_floor: f64,
    /// The smallest scale (toto-2's `minimum_scale`, 1e-6).
    pub scale_floor: f64,
}

impl ScalerSpec {
    /// Toto 1.0's scaler (toto-ts's `CausalPatchStdMeanScaler`): `σ = sqrt(var + 0.1)`,
    /// clamped relative to the global statistics of the first `prefix` steps when `stabilize`.
    pub fn toto(patch: usize, prefix: Option<usize>, stabilize: bool, exponent: f64) -> Self {
        ScalerSpec {
            patch,
            prefix,
            stabilize,
            exponent,
            variance_floor: MINIMUM_SCALE,
            scale_floor: 0.0,
        }
    }

    /// Toto 2.0's scaler (toto-2's `PatchedCausalStdScaler`): `σ = max(sqrt(var), 1e-6)`, no
    /// global clamp.
    pub fn toto2(patch: usize) -> Self {
        ScalerSpec {
            patch,
            prefix: None,
            stabilize: false,
            exponent: 0.0,
            variance_floor: 0.0,
            scale_floor: TOTO2_MINIMUM_SCALE,
        }
    }

    /// The checks of [`Backend::patch_scaler`]'s arguments: both on `backend`'s device, one
    /// shape, a patch of at least one step, finite non-negative floors.
    pub(crate) fn check<B: Backend>(
        &self,
        backend: &B,
        series: &Tensor<3>,
        weights: &Tensor<3>,
    ) -> Result<()> {
        backend.ensure_on_device(Op::PatchScaler, "series", series)?;
        backend.ensure_on_device(Op::PatchScaler, "weights", weights)?;
        if series.dims() != weights.dims() || self.patch == 0 {
            return Err(Error::input(
                "patch_scaler",
                InputKind::Shape,
                format!(
                    "series {:?} and weights {:?} must have one shape and the patch size ({}) \
                     must be at least 1",
                    series.dims(),
                    weights.dims(),
                    self.patch
                ),
            ));
        }
        let floors = [self.variance_floor, self.scale_floor, self.exponent];
        // The clamp needs a positive lower bound: its state word `hi = 0` means "no clamp".
        let clamp_floor = !self.stabilize || self.variance_floor > 0.0;
        if floors.iter().any(|f| !(f.is_finite() && *f >= 0.0)) || !clamp_floor {
            return Err(Error::input(
                "patch_scaler",
                InputKind::OutOfRange,
                format!(
                    "variance_floor ({}), scale_floor ({}) and exponent ({}) must be finite and \
                     non-negative, and variance_floor positive when stabilize is set",
                    self.variance_floor, self.scale_floor, self.exponent
                ),
            ));
        }
        Ok(())
    }

    /// [`ScalerSpec::check`], and a length of whole patches ([`Backend::patch_scaler_extend`]).
    pub(crate) fn check_extend<B: Backend>(
        &self,
        backend: &B,
        series: &Tensor<3>,
        weights: &Tensor<3>,
    ) -> Result<()> {
        self.check(backend, series, weights)?;
        let t = series.dims()[2];
        if !t.is_multiple_of(self.patch) {
            return Err(Error::input(
                "patch_scaler_extend",
                InputKind::Shape,
                format!(
                    "the new steps ({t}) must be whole patches of {} steps",
                    self.patch
                ),
            ));
        }
        Ok(())
    }
}

/// The running statistics of Toto's causal scaler for a batch of series, so that a decode step
/// computes the statistics of its new patch from its own values alone (in f64, exactly as the
/// scaler over the whole series would).
///
/// Made empty ([`ScalerState::default`]); the first
/// [`Backend::patch_scaler_extend`](crate::Backend::patch_scaler_extend) call sets the clamp
/// bounds from its steps (its `prefix` first steps) and every call continues the series.
///
/// The statistics live where the backend that runs the scaler keeps them: on the host for
/// [`NdArray`](crate::NdArray), in a GPU buffer for [`Wgpu`](crate::Wgpu) on adapters with f64
/// shaders. A state moves (one small read or upload) if the op moves between backends.
#[derive(Debug, Clone, Default)]
pub struct ScalerState {
    /// `[B, V]` of the series, once started.
    shape: Option<[usize; 2]>,
    /// Each series' statistics on the host (stale while `device` holds them).
    rows: Vec<RowState>,
    /// The same statistics as a `[B·V, STATE_WORDS]` f64 tensor on a GPU, when a device kernel
    /// keeps them.
    device: Option<Tensor<2>>,
}

impl ScalerState {
    /// Whether no step has been seen yet.
    pub fn is_empty(&self) -> bool {
        self.shape.is_none()
    }

    /// A state of `[b, v]` series continuing from host statistics (one per series, item-major):
    /// what a streaming session keeps and hands to the backend before each pass.
    pub(crate) fn from_rows([b, v]: [usize; 2], rows: Vec<RowState>) -> Self {
        ScalerState {
            shape: Some([b, v]),
            rows,
            device: None,
        }
    }

    /// The state of every series repeated `times` along the batch (sample index outer).
    pub(crate) fn repeat(&self, times: usize) -> Self {
        ScalerState {
            shape: self.shape.map(|[b, v]| [b * times, v]),
            rows: match self.device {
                Some(_) => Vec::new(),
                None => (0..times).flat_map(|_| self.rows.iter().copied()).collect(),
            },
            device: self.device.as_ref().map(|t| t.clone().repeat_dim(0, times)),
        }
    }

    /// Checks that new steps of batch shape `[b, v]` continue this state.
    pub(crate) fn check_shape(&self, b: usize, v: usize) -> Result<()> {
        match self.shape {
            Some(seen) if seen != [b, v] => Err(Error::input(
                "patch_scaler_extend",
                InputKind::Shape,
                format!(
                    "the state holds series of shape {seen:?} (batch, variates); the new \
                     steps have {:?}",
                    [b, v]
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A state follows a forwarded op to the host: device statistics are read back (48 bytes a
/// series); host statistics need no move.
impl Transfer for &mut ScalerState {
    fn transfer(self, _: Op, _: &Device) -> Result<(Self, u64)> {
        let bytes = self.bring_home()?;
        Ok((self, bytes))
    }
}
