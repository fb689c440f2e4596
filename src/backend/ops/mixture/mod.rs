//! The component draw of a mixture: [`Op::Categorical`] and [`Op::StudentTMixture`].
//!
//! | piece | file |
//! |---|---|
//! | the parameters ([`MixtureParams`]) and argument checks | `mod.rs` |
//! | the categorical draw on the host (`NdArray`): one fused pass per row | `host.rs` |
//! | the categorical and mixture draws composed from tensor ops and other ops (the trait's provided bodies, the fallback's composition) | `composed.rs` |
//! | the fused mixture kernels (`Wgpu`), with one component pick for both | `kernel.rs` |
//! | their launch, a burn backend extension | `launch.rs` |
//! | tensor-level wrapper | `tensor.rs` |
//!
//! [`Op::Categorical`]: crate::Op::Categorical
//! [`Op::StudentTMixture`]: crate::Op::StudentTMixture

pub(crate) mod composed;
pub(crate) mod host;
#[cfg(feature = "wgpu")]
mod kernel;
#[cfg(feature = "wgpu")]
mod launch;
#[cfg(feature = "wgpu")]
pub(crate) mod tensor;

use burn::tensor::{Device, Tensor};

use crate::backend::transfer::Transfer;
use crate::backend::{Backend, checked_elements};
use crate::error::{Error, Result};
use crate::op::Op;

/// The rows of a batch of Student-T mixtures, each `[rows, K]`: row `r` mixes `K` components
/// `loc[r, k] + scale[r, k] · T(df[r, k])` with weights `softmax(logits[r])`. What
/// [`Backend::student_t_mixture`] draws from; Toto's output head, flattened.
///
/// The type parameter is the tensor type, so that the kernels' launch code holds the same four
/// parameters as device handles.
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, MixtureParams, NdArray};
///
/// let cpu = NdArray::seeded(1);
/// let dev = cpu.device();
/// // Two rows, three components each; row 1 puts all its weight on component 2.
/// let logits = Tensor::<2>::from_floats([[0.0, 0.0, 0.0], [f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0]], dev);
/// let loc = Tensor::<2>::from_floats([[0.0, 1.0, 2.0], [0.0, 0.0, 100.0]], dev);
/// let params = MixtureParams::new(logits, Tensor::ones([2, 3], dev) * 30.0, loc, Tensor::ones([2, 3], dev) * 0.01);
/// let draws = cpu.student_t_mixture(params, 1000)?; // [1000, 2]
/// let row1: f32 = draws.slice([0..1000, 1..2]).mean().into_scalar();
/// assert!((row1 - 100.0).abs() < 0.01);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixtureParams<T = Tensor<2>> {
    /// Mixing logits (unnormalised log-weights; `-inf` for a component of weight 0).
    pub logits: T,
    /// The components' degrees of freedom (`> 0`).
    pub df: T,
    /// The components' locations.
    pub loc: T,
    /// The components' scales (`> 0`).
    pub scale: T,
}

impl<T> MixtureParams<T> {
    /// The four parameters, in the order of their fields.
    pub fn new(logits: T, df: T, loc: T, scale: T) -> Self {
        MixtureParams {
            logits,
            df,
            loc,
            scale,
        }
    }

    /// Each parameter through `f`.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> MixtureParams<U> {
        MixtureParams {
            logits: f(self.logits),
            df: f(self.df),
            loc: f(self.loc),
            scale: f(self.scale),
        }
    }

    /// `[logits, df, loc, scale]`.
    pub fn into_array(self) -> [T; 4] {
        [self.logits, self.df, self.loc, self.scale]
    }

    /// `(name, parameter)` for each, in field order.
    fn named(&self) -> [(&'static str, &T); 4] {
        [
            ("logits", &self.logits),
            ("df", &self.df),
            ("loc", &self.loc),
            ("scale", &self.scale),
        ]
    }
}

impl MixtureParams {
    /// `[rows, K]`, the logits' shape.
    pub fn dims(&self) -> [usize; 2] {
        self.logits.dims()
    }

    /// The checks of [`Backend::student_t_mixture`]'s arguments: every parameter on
    /// `backend`'s device and shaped like the logits, `K >= 1`, and a `[samples, rows, K]` work
    /// that fits [`MAX_ELEMENTS`](crate::MAX_ELEMENTS). Returns `[rows, K]`.
    pub(crate) fn check<B: Backend>(&self, backend: &B, samples: usize) -> Result<[usize; 2]> {
        let op = Op::StudentTMixture;
        let [rows, k] = self.dims();
        for (name, p) in self.named() {
            backend.ensure_on_device(op, name, p)?;
            if p.dims() != [rows, k] {
                return Err(Error::ParamShape {
                    dist: op.name(),
                    param: name,
                    shape: p.dims().to_vec(),
                    batch: vec![rows, k],
                });
            }
        }
        work_shape(op, [rows, k], samples)
    }
}

impl Transfer for MixtureParams {
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)> {
        let [logits, df, loc, scale] = self.into_array();
        let ((logits, df), a) = (logits, df).transfer(op, device)?;
        let ((loc, scale), b) = (loc, scale).transfer(op, device)?;
        Ok((MixtureParams::new(logits, df, loc, scale), a + b))
    }
}

/// The checks of [`Backend::categorical`]'s arguments: `logits` on `backend`'s device, `K >= 1`
/// and a `[samples, rows, K]` work that fits. Returns `[rows, K]`.
pub(crate) fn check_categorical<B: Backend>(
    backend: &B,
    logits: &Tensor<2>,
    samples: usize,
) -> Result<[usize; 2]> {
    backend.ensure_on_device(Op::Categorical, "logits", logits)?;
    work_shape(Op::Categorical, logits.dims(), samples)
}

/// `[rows, K]` if `K >= 1` and the `[samples, rows, K]` work fits
/// [`MAX_ELEMENTS`](crate::MAX_ELEMENTS).
fn work_shape(op: Op, [rows, k]: [usize; 2], samples: usize) -> Result<[usize; 2]> {
    if k == 0 {
        return Err(Error::ParamShape {
            dist: op.name(),
            param: "logits",
            shape: vec![rows, k],
            batch: vec![rows, 1],
        });
    }
    checked_elements(op, &[samples, rows, k])?;
    Ok([rows, k])
}
