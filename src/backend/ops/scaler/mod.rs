//! Toto's causal patch scaler: [`Op::PatchScaler`] (toto-ts's `CausalPatchStdMeanScaler`),
//! over a whole series or continued from a [`ScalerState`].
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
use crate::error::{Error, Result};
use crate::op::Op;

/// toto-ts's `minimum_scale`, which the scaler *adds* to the variance.
pub(crate) const MINIMUM_SCALE: f64 = 0.1;

/// Doubles per series in a [`ScalerState`] kept on a device: `lo, hi, wsum, xsum, m2, mu_prev`
/// (the fields of the host state; `hi = 0` means no clamp: a real bound is at least
/// `sqrt(0.1) · 10^-e > 0`).
pub(crate) const STATE_WORDS: usize = 6;

/// The settings of [`Backend::patch_scaler`].
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
}

impl ScalerSpec {
    /// The checks of [`Backend::patch_scaler`]'s arguments: both on `backend`'s device, one
    /// shape, a patch of at least one step.
    pub(crate) fn check<B: Backend>(
        &self,
        backend: &B,
        series: &Tensor<3>,
        weights: &Tensor<3>,
    ) -> Result<()> {
        backend.ensure_on_device(Op::PatchScaler, "series", series)?;
        backend.ensure_on_device(Op::PatchScaler, "weights", weights)?;
        if series.dims() != weights.dims() || self.patch == 0 {
            return Err(Error::Input {
                what: "patch_scaler",
                reason: format!(
                    "series {:?} and weights {:?} must have one shape and the patch size ({}) \
                     must be at least 1",
                    series.dims(),
                    weights.dims(),
                    self.patch
                ),
            });
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
            return Err(Error::Input {
                what: "patch_scaler_extend",
                reason: format!(
                    "the new steps ({t}) must be whole patches of {} steps",
                    self.patch
                ),
            });
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
            Some(seen) if seen != [b, v] => Err(Error::Input {
                what: "patch_scaler_extend",
                reason: format!(
                    "the state holds series of shape {seen:?} (batch, variates); the new \
                     steps have {:?}",
                    [b, v]
                ),
            }),
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
