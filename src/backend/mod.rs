//! The distribution-level backend layer: the [`Backend`] trait, the [`NdArray`] and [`Wgpu`]
//! backends, the [`FallbackBackend`] combinator and its [`Report`].
//!
//! This layer knows which ops a device runs and how to move tensors between devices; it knows
//! nothing of distributions beyond the ops it runs.

mod fallback;
mod host;
#[cfg(feature = "wgpu")]
mod kernels;
mod ndarray;
mod op;
mod report;
mod scaler;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use self::fallback::{FallbackBackend, FallbackPolicy};
pub use self::ndarray::NdArray;
pub(crate) use self::ndarray::is_ndarray;
pub use self::op::{Op, OpSet};
pub use self::report::{OpReport, Placement, Report, Usage};
pub use self::scaler::ScalerState;

#[cfg(feature = "wgpu")]
pub use self::wgpu::{AdapterKind, GraphicsApi, Wgpu};

use crate::dist::shape::{BroadcastTo, ReshapeExact};
use std::fmt;

use burn::tensor::{Device, Int, Tensor};

use crate::error::{Error, Result};

/// The largest element count one op accepts: `2^32` (16 GiB of `f32`), far above what a GPU
/// buffer holds, low enough to refuse a mistyped shape before anything is allocated.
pub const MAX_ELEMENTS: u64 = 1 << 32;

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
    /// [`Error::Unsupported`] if the op is not supported, [`Error::ShapeTooLarge`] if the shape
    /// holds more than [`MAX_ELEMENTS`] elements.
    fn uniform<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>>;

    /// `N(0, 1)` draws of the given shape (`torch.randn`).
    ///
    /// # Errors
    /// As [`Backend::uniform`].
    fn standard_normal<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>>;

    /// One `Gamma(alpha, 1)` draw per element of `alpha` (`torch._standard_gamma`); the result
    /// has `alpha`'s shape.
    ///
    /// Values: `alpha <= 0` or NaN gives NaN for that element (checking would read the tensor
    /// back, which a GPU pipeline must not do); `alpha = +inf` gives `+inf`. Draws are clamped
    /// below at `f32::MIN_POSITIVE` (as torch clamps to `finfo.tiny`), so `ln` of a draw is
    /// finite even for tiny `alpha`.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`] if `alpha` is on another device.
    fn standard_gamma<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>>;

    /// One standard Student-T draw per element of `df` (degrees of freedom, `> 0`).
    ///
    /// The provided body is Bailey's polar method written without rejection, two uniforms per
    /// draw and no gamma: `T = cos(2π U₂) · sqrt(ν · expm1(−(2/ν) ln U₁))` with `U₁ ∈ (0, 1]`,
    /// a handful of elementwise ops that burn's fusion compiles into one kernel on wgpu, so
    /// Student-T (and Toto's mixture) sampling runs natively on a GPU that has no gamma sampler.
    /// [`special::expm1`](crate::special::expm1) keeps it accurate for large `ν`, where it tends
    /// to the normal. `U₁` has the uniform's 2⁻²⁴ resolution, which truncates the tails beyond
    /// `sqrt(ν (2^(48/ν) − 1))` (62 at `ν = 5`; a probability below 1e-8).
    /// `NdArray` draws `Z · sqrt(ν / 2G)` from its own normal and gamma samplers instead.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`].
    fn standard_t<const D: usize>(&self, df: Tensor<D>) -> Result<Tensor<D>> {
        self.ensure_supported(Op::StandardT)?;
        self.ensure_on_device(Op::StandardT, "df", &df)?;
        let shape = df.dims();
        let u1 = self.uniform(shape)?;
        let u2 = self.uniform(shape)?;
        // 1 − U ∈ (0, 1]: ln is finite and ≤ 0, so the expm1 argument is ≥ 0.
        let ln_u = u1.neg().add_scalar(1.0).log();
        let w = crate::special::expm1(ln_u.mul(df.clone().recip().mul_scalar(-2.0)));
        let radius = df.mul(w).sqrt();
        Ok(radius.mul(u2.mul_scalar(std::f64::consts::TAU).cos()))
    }

    /// Elementwise `ln |Γ(x)|` (`torch.lgamma`); `+inf` at the poles `x = 0, -1, -2, ...`.
    ///
    /// The provided body is [`special::lgamma`](crate::special::lgamma), a composition of burn
    /// tensor ops that runs on any device.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`].
    fn lgamma<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.ensure_supported(Op::Lgamma)?;
        self.ensure_on_device(Op::Lgamma, "x", &x)?;
        Ok(crate::special::lgamma(x))
    }

    /// Elementwise digamma `ψ(x) = Γ'(x)/Γ(x)` (`torch.digamma`); `-inf` at 0, NaN at the
    /// negative integers.
    ///
    /// The provided body is [`special::digamma`](crate::special::digamma).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`].
    fn digamma<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.ensure_supported(Op::Digamma)?;
        self.ensure_on_device(Op::Digamma, "x", &x)?;
        Ok(crate::special::digamma(x))
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
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`], [`Error::ShapeTooLarge`];
    /// [`Error::ParamShape`] if `K = 0`.
    fn categorical(&self, logits: Tensor<2>, samples: usize) -> Result<Tensor<2, Int>> {
        self.ensure_supported(Op::Categorical)?;
        let [rows, _] = categorical_check(self, &logits, samples)?;
        let u = self.uniform([samples, rows, 1])?;
        Ok(categorical_composed(logits, u))
    }

    /// `samples` draws from each row of a Student-T mixture: row `r` (of `rows`) has mixing
    /// `logits[r]` (`K` unnormalised log-weights) and components `df[r]`, `loc[r]`, `scale[r]`
    /// (all `[rows, K]`). Returns `[samples, rows]`: each draw picks component `k` with
    /// probability `softmax(logits[r])[k]`, then draws `loc[r, k] + scale[r, k] · T(df[r, k])`.
    /// This is `MixtureSameFamily(Categorical, StudentT)`'s sample, Toto's output head.
    ///
    /// The provided body composes [`Backend::categorical`], a per-row gather of the chosen
    /// components and [`Backend::standard_t`]; [`Wgpu`] runs it as one kernel (one Philox block
    /// per draw: a uniform against the row's cumulative weights, two for Bailey's polar method).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`], [`Error::ShapeTooLarge`];
    /// [`Error::ParamShape`] if a parameter's shape differs from `logits`' or `K = 0`.
    fn student_t_mixture(
        &self,
        logits: Tensor<2>,
        df: Tensor<2>,
        loc: Tensor<2>,
        scale: Tensor<2>,
        samples: usize,
    ) -> Result<Tensor<2>> {
        self.ensure_supported(Op::StudentTMixture)?;
        mixture_check(self, &logits, [&df, &loc, &scale], samples)?;
        mixture_composed(self, logits, df, loc, scale, samples)
    }

    /// Toto's causal patch scaler (toto-ts's `CausalPatchStdMeanScaler`) over `series` and
    /// `weights` (`[B, V, T]`; weight 1 for a real value, 0 for padding): per series, a running
    /// weighted mean and Bessel-corrected variance along time, `σ = sqrt(var + 0.1)` clamped to
    /// `[max(0.1, σ_g·10^−e), σ_g·10^e]` of the global (context) statistics, each taken at the
    /// last step of its patch and broadcast over the patch. Returns `(loc, scale)`, `[B, V, T]`.
    ///
    /// toto-ts computes it in f64; so does `NdArray` (on the host). The provided body is an f32
    /// composition of cumulative sums, which loses digits on long or offset series (measured on
    /// 4096 steps around 1e4: relative error 1.2e-3 in the scale against 3.7e-8 for the f64
    /// host path); backends without f64 therefore leave [`Op::PatchScaler`] unsupported and a
    /// [`FallbackBackend`] runs it on the CPU in f64.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if the shapes
    /// differ or the patch size is 0.
    fn patch_scaler(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        self.ensure_supported(Op::PatchScaler)?;
        spec.check(self, &series, &weights)?;
        Ok(scaler_composed(series, weights, spec))
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
        host::scaler(series, weights, self.device(), |shape, x, w| {
            state.extend(shape, x, w, spec)
        })
    }

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
        let found = tensor.device();
        if &found == self.device() {
            Ok(())
        } else {
            Err(Error::DeviceMismatch {
                op,
                param,
                expected: format!("{:?}", self.device()),
                found: format!("{found:?}"),
            })
        }
    }
}

/// Reads an `f32` tensor back to the host (a device sync on a GPU), for `validate()`s.
pub(crate) fn read_back<const D: usize>(what: &str, t: Tensor<D>) -> Result<Vec<f32>> {
    host::read_f32(what, t)
}

/// The checks of [`Backend::categorical`]'s arguments: `logits` on `backend`'s device, then
/// [`categorical_shape`].
pub(crate) fn categorical_check<B: Backend>(
    backend: &B,
    logits: &Tensor<2>,
    samples: usize,
) -> Result<[usize; 2]> {
    backend.ensure_on_device(Op::Categorical, "logits", logits)?;
    categorical_shape(logits, samples)
}

/// `[rows, K]` of a categorical op's weights, checked: `K >= 1` and the `[samples, rows, K]`
/// work fits [`MAX_ELEMENTS`].
pub(crate) fn categorical_shape(logits: &Tensor<2>, samples: usize) -> Result<[usize; 2]> {
    let [rows, k] = logits.dims();
    if k == 0 {
        return Err(Error::ParamShape {
            dist: "categorical",
            param: "logits",
            shape: vec![rows, k],
            batch: vec![rows, 1],
        });
    }
    checked_elements(Op::Categorical, &[samples, rows, k])?;
    Ok([rows, k])
}

/// [`Backend::student_t_mixture`] composed from the backend's own ops (each routed and
/// reported on a [`FallbackBackend`]): [`Backend::categorical`], a per-row gather of the chosen
/// components and [`Backend::standard_t`]. Arguments are checked by the caller.
pub(crate) fn mixture_composed<B: Backend>(
    backend: &B,
    logits: Tensor<2>,
    df: Tensor<2>,
    loc: Tensor<2>,
    scale: Tensor<2>,
    samples: usize,
) -> Result<Tensor<2>> {
    let index = backend.categorical(logits, samples)?; // [samples, rows]
    let pick = |p: Tensor<2>| gather_rows(p, index.clone());
    let t = backend.standard_t(pick(df))?;
    Ok(t.mul(pick(scale)).add(pick(loc)))
}

/// [`Backend::categorical`]'s composition given its uniforms `u` (`[samples, rows, 1]`): the
/// row maximum is subtracted and exponentiated, and each uniform, scaled by its row's total, is
/// located in the row's cumulative sums by counting (`[samples, rows, K]` passes).
pub(crate) fn categorical_composed(logits: Tensor<2>, u: Tensor<3>) -> Tensor<2, Int> {
    let [rows, k] = logits.dims();
    let [samples, _, _] = u.dims();
    let weights = logits.clone().sub(logits.max_dim(1)).exp();
    let cdf = weights.cumsum(1).reshape_exact([1, rows, k]); // [1, rows, K]
    let total = cdf.clone().slice([0..1, 0..rows, k - 1..k]); // [1, rows, 1]
    let u = u.mul(total); // [samples, rows, 1]
    // The index is the number of cumulative sums at or below u; rounding can leave the last
    // one a hair under the total, so clamp to K - 1.
    let below = cdf
        .broadcast_to([samples, rows, k])
        .lower_equal(u.broadcast_to([samples, rows, k]));
    // Counted in f32 (exact up to 2^24 categories): burn-wgpu's integer sum was 3x slower.
    below
        .float()
        .sum_dim(2)
        .int()
        .clamp(0, k as i64 - 1)
        .reshape_exact([samples, rows])
}

/// The checks of [`Backend::student_t_mixture`]'s arguments: every tensor on `backend`'s device,
/// the components shaped like the logits, `K >= 1` and a draw that fits [`MAX_ELEMENTS`].
pub(crate) fn mixture_check<B: Backend>(
    backend: &B,
    logits: &Tensor<2>,
    params: [&Tensor<2>; 3],
    samples: usize,
) -> Result<[usize; 2]> {
    let op = Op::StudentTMixture;
    backend.ensure_on_device(op, "logits", logits)?;
    let [rows, k] = categorical_shape(logits, samples)?;
    for (name, p) in ["df", "loc", "scale"].into_iter().zip(params) {
        backend.ensure_on_device(op, name, p)?;
        if p.dims() != [rows, k] {
            return Err(Error::ParamShape {
                dist: "student_t_mixture",
                param: name,
                shape: p.dims().to_vec(),
                batch: vec![rows, k],
            });
        }
    }
    Ok([rows, k])
}

/// Row `r` of `params` (`[rows, K]`) at the components `index[s, r]` picks (`[samples, rows]`):
/// a `[samples, rows]` tensor. burn-ndarray is fastest with one `select` on the flattened grid;
/// burn-wgpu's `select` is pathological for long index lists (8 s for 125k indices on lavapipe,
/// ~200 ms for 1.25M on an H200) and `gather` along `K` takes milliseconds.
pub(crate) fn gather_rows(params: Tensor<2>, index: Tensor<2, Int>) -> Tensor<2> {
    let [rows, k] = params.dims();
    let [samples, _] = index.dims();
    if is_ndarray(&params.device()) {
        let offsets = Tensor::<1, Int>::arange(0..rows as i64, &params.device())
            .mul_scalar(k as i64)
            .reshape_exact([1, rows]);
        let flat = index.add(offsets).reshape_exact([samples * rows]);
        params
            .reshape_exact([rows * k])
            .select(0, flat)
            .reshape_exact([samples, rows])
    } else {
        params.gather(1, index.swap_dims(0, 1)).swap_dims(0, 1)
    }
}

/// The product of `factors`, saturated at `u128::MAX`.
pub(crate) fn saturating_product(factors: impl IntoIterator<Item = u128>) -> u128 {
    factors
        .into_iter()
        .try_fold(1u128, u128::checked_mul)
        .unwrap_or(u128::MAX)
}

/// The element count of `shape` if one tensor may hold it (at most [`MAX_ELEMENTS`]), else
/// `Err` with the count (saturated at `u128::MAX`).
pub(crate) fn element_count(shape: &[usize]) -> std::result::Result<usize, u128> {
    let elements = saturating_product(shape.iter().map(|&d| d as u128));
    if elements > u128::from(MAX_ELEMENTS) {
        return Err(elements);
    }
    // Bounded by MAX_ELEMENTS = 2^32 above; on 32-bit targets the allocation fails later anyway.
    Ok(usize::try_from(elements).unwrap_or(usize::MAX))
}

/// The element count of `shape`, or [`Error::ShapeTooLarge`] past [`MAX_ELEMENTS`].
pub(crate) fn checked_elements(op: Op, shape: &[usize]) -> Result<usize> {
    element_count(shape).map_err(|elements| Error::ShapeTooLarge {
        op,
        shape: shape.to_vec(),
        elements,
        limit: MAX_ELEMENTS,
    })
}

/// A set of ops that default to unsupported on a backend, plus the ops the user disabled.
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

/// [`Backend::patch_scaler`] as f32 tensor ops (cumulative sums along time).
fn scaler_composed(
    series: Tensor<3>,
    weights: Tensor<3>,
    spec: ScalerSpec,
) -> (Tensor<3>, Tensor<3>) {
    const MIN: f64 = 0.1;
    let [b, v, t] = series.dims();
    let x = series;
    let w = weights;
    let wsum = w.clone().cumsum(2);
    let denom = wsum.clone().clamp_min(1.0);
    let mu = x.clone().mul(w.clone()).cumsum(2).div(denom.clone());
    let mu_prev = Tensor::cat(
        vec![
            Tensor::zeros([b, v, 1], &x.device()),
            mu.clone().slice([0..b, 0..v, 0..t.saturating_sub(1)]),
        ],
        2,
    )
    .slice([0..b, 0..v, 0..t]);
    let m2 = x
        .clone()
        .sub(mu_prev)
        .mul(x.clone().sub(mu.clone()))
        .mul(w.clone())
        .cumsum(2);
    let var = m2.div(denom.sub_scalar(1.0).clamp_min(1.0));
    let mut sigma = var.add_scalar(MIN).sqrt();
    if spec.stabilize {
        let end = spec.prefix.unwrap_or(t).min(t);
        let keep = Tensor::<1, Int>::arange(0..t as i64, &x.device())
            .lower_elem(end as i64)
            .float()
            .reshape_exact([1, 1, t]);
        let wg = w.mul(keep);
        let wt = wg.clone().sum_dim(2).clamp_min(1.0);
        let mug = x.clone().mul(wg.clone()).sum_dim(2).div(wt.clone());
        let varg = x.sub(mug).mul(wg).square().sum_dim(2).div(wt);
        let sg = varg.add_scalar(MIN).sqrt();
        let factor = 10f64.powf(spec.exponent);
        let lo = sg.clone().div_scalar(factor).clamp_min(MIN);
        let hi = sg.mul_scalar(factor);
        sigma = sigma
            .max_pair(lo.broadcast_to([b, v, t]))
            .min_pair(hi.broadcast_to([b, v, t]));
    }
    let at_patch_end = |s: Tensor<3>| {
        // Patch ends: steps p-1, 2p-1, ...; a short last patch ends at t-1.
        let p = spec.patch;
        let n = t.div_ceil(p);
        let ends: Vec<i64> = (0..n).map(|i| ((i + 1) * p).min(t) as i64 - 1).collect();
        let idx: Vec<i64> = (0..t).map(|j| ends[j / p]).collect();
        let idx = Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(idx, [t]), &s.device());
        s.select(2, idx)
    };
    (at_patch_end(mu), at_patch_end(sigma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_elements_counts_and_refuses_overflow() {
        assert_eq!(checked_elements(Op::Uniform, &[3, 4, 5]).unwrap(), 60);
        assert_eq!(checked_elements(Op::Uniform, &[]).unwrap(), 1);
        assert_eq!(checked_elements(Op::Uniform, &[7, 0]).unwrap(), 0);
        let err = checked_elements(Op::Uniform, &[1 << 20, 1 << 20]).unwrap_err();
        assert!(matches!(err, Error::ShapeTooLarge { elements, .. } if elements == 1 << 40));
        let err = checked_elements(Op::Uniform, &[usize::MAX, usize::MAX, 2]).unwrap_err();
        assert!(matches!(
            err,
            Error::ShapeTooLarge {
                elements: u128::MAX,
                ..
            }
        ));
    }

    #[test]
    fn support_combines_lacking_and_disabled() {
        let s = Support::lacking(OpSet::empty().with(Op::StandardGamma)).disable([Op::Lgamma]);
        assert!(!s.supports(Op::StandardGamma));
        assert!(!s.supports(Op::Lgamma));
        assert!(s.supports(Op::Uniform));
    }
}
