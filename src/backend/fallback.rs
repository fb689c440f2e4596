//! [`FallbackBackend`]: run each op on the GPU when it can, on the CPU when it must, and say so.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor};

use super::host::{read_f32, upload};
use super::report::{Placement, Recorder, Report, Usage};
use super::{
    Backend, Op, ScalerSpec, ScalerState, categorical_check, checked_elements, mixture_check,
    mixture_composed,
};
use crate::error::{Error, Result};

/// What a [`FallbackBackend`] does with an op its GPU backend does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FallbackPolicy {
    /// Forward it to the CPU backend without a word (the report still counts it).
    Silent,
    /// Forward it, and log one warning per op and backend through the `log` crate (default).
    #[default]
    Warn,
    /// Refuse: return [`Error::FallbackDenied`]. For CI runs that must prove nothing falls back.
    Deny,
}

impl FallbackPolicy {
    /// The policy's lower-case name, as the report prints it.
    pub const fn name(self) -> &'static str {
        match self {
            FallbackPolicy::Silent => "silent",
            FallbackPolicy::Warn => "warn",
            FallbackPolicy::Deny => "deny",
        }
    }
}

/// A [`Backend`] that runs every op its `Gpu` backend supports there, and forwards the rest to its
/// `Cpu` backend: inputs are read back from the GPU, the op runs on the CPU, and the result is
/// uploaded back, so callers only ever see tensors on the GPU device.
///
/// This is the typed answer to `PYTORCH_ENABLE_MPS_FALLBACK=1`: the fallback is chosen where the
/// backend is built (it cannot be set too late), its [`FallbackPolicy`] says whether forwarding is
/// silent, warned once per op (default) or an error, and [`FallbackBackend::report`] says exactly
/// what ran where, with calls, elements, bytes moved each way and time.
///
/// Clones share the report and the warned-once state. The backend is `Send + Sync` when its
/// parts are; concurrent calls are counted exactly (the report is updated under a lock).
///
/// ```
/// use toto_fallback::{Backend, FallbackBackend, FallbackPolicy, NdArray, Op};
///
/// // A "GPU" that lacks gamma sampling (here the CPU backend told so, to keep the example
/// // runnable everywhere; in practice `Wgpu::new()?`).
/// let gpu = NdArray::seeded(1).with_unsupported([Op::StandardGamma]);
/// let backend = FallbackBackend::new(gpu, NdArray::seeded(2)).with_policy(FallbackPolicy::Silent);
///
/// let alpha = burn::tensor::Tensor::<1>::full([1000], 2.5, backend.device());
/// let draws = backend.standard_gamma(alpha)?;
/// assert_eq!(draws.dims(), [1000]);
///
/// let report = backend.report();
/// assert_eq!(report.op(Op::StandardGamma).forwarded.calls, 1);
/// assert_eq!(report.op(Op::StandardGamma).forwarded.bytes_to_cpu, 4 * 1000);
/// println!("{report}");
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Clone)]
pub struct FallbackBackend<Gpu, Cpu> {
    gpu: Gpu,
    cpu: Cpu,
    policy: FallbackPolicy,
    name: Arc<str>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    recorder: Recorder,
    warned: [AtomicBool; Op::ALL.len()],
}

impl<Gpu: Backend, Cpu: Backend> fmt::Debug for FallbackBackend<Gpu, Cpu> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBackend")
            .field("gpu", &self.gpu)
            .field("cpu", &self.cpu)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<Gpu: Backend, Cpu: Backend> FallbackBackend<Gpu, Cpu> {
    /// Runs what `gpu` supports on `gpu` and forwards the rest to `cpu`, with
    /// [`FallbackPolicy::Warn`].
    pub fn new(gpu: Gpu, cpu: Cpu) -> Self {
        let name = format!("fallback({} -> {})", gpu.name(), cpu.name());
        FallbackBackend {
            gpu,
            cpu,
            policy: FallbackPolicy::default(),
            name: name.into(),
            shared: Arc::new(Shared {
                recorder: Recorder::new(),
                warned: Default::default(),
            }),
        }
    }

    /// The same backend with another policy (the report and warned-once state are kept).
    #[must_use]
    pub fn with_policy(mut self, policy: FallbackPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The policy for unsupported ops.
    pub fn policy(&self) -> FallbackPolicy {
        self.policy
    }

    /// The primary (GPU) backend.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The fallback (CPU) backend.
    pub fn cpu(&self) -> &Cpu {
        &self.cpu
    }

    /// Where `op` runs: natively on the GPU, forwarded to the CPU, or `None` when it cannot run
    /// (supported by neither, or the policy is [`FallbackPolicy::Deny`]).
    pub fn placement(&self, op: Op) -> Option<Placement> {
        if self.gpu.supports(op) {
            Some(Placement::Native)
        } else if self.cpu.supports(op) && self.policy != FallbackPolicy::Deny {
            Some(Placement::Forwarded)
        } else {
            None
        }
    }

    /// A snapshot of what ran where since construction or the last [`reset_report`]
    /// (shared by all clones).
    ///
    /// [`reset_report`]: FallbackBackend::reset_report
    pub fn report(&self) -> Report {
        self.shared
            .recorder
            .snapshot(self.gpu.name(), self.cpu.name(), self.policy.name())
    }

    /// Zeroes the report's counters (the warned-once state is kept).
    pub fn reset_report(&self) {
        self.shared.recorder.reset();
    }

    /// Decides where `op` runs, applying the policy (and warning once under `Warn`).
    fn route(&self, op: Op) -> Result<Placement> {
        if self.gpu.supports(op) {
            return Ok(Placement::Native);
        }
        if !self.cpu.supports(op) {
            return Err(Error::UnsupportedEverywhere {
                op,
                gpu: self.gpu.name().to_owned(),
                cpu: self.cpu.name().to_owned(),
            });
        }
        match self.policy {
            FallbackPolicy::Deny => Err(Error::FallbackDenied {
                op,
                gpu: self.gpu.name().to_owned(),
                cpu: self.cpu.name().to_owned(),
            }),
            FallbackPolicy::Warn => {
                if !self.shared.warned[op.index()].swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "`{op}` is not supported by {}; running it on {} with a device round \
                         trip per call. `FallbackBackend::report()` counts every forwarded call; \
                         `FallbackPolicy::Silent` hides this warning, `FallbackPolicy::Deny` \
                         makes it an error.",
                        self.gpu.name(),
                        self.cpu.name()
                    );
                }
                Ok(Placement::Forwarded)
            }
            FallbackPolicy::Silent => Ok(Placement::Forwarded),
        }
    }

    fn record(
        &self,
        op: Op,
        placement: Placement,
        elements: usize,
        moved: (usize, usize),
        start: Instant,
    ) {
        let usage = Usage {
            calls: 1,
            elements: elements as u64,
            bytes_to_cpu: moved.0 as u64,
            bytes_to_gpu: moved.1 as u64,
            time: start.elapsed(),
        };
        self.shared.recorder.record(op, placement, usage);
    }

    /// An op that makes a tensor of `shape` from nothing (random draws).
    fn generate<const D: usize>(
        &self,
        op: Op,
        shape: [usize; D],
        on_gpu: impl FnOnce(&Gpu) -> Result<Tensor<D>>,
        on_cpu: impl FnOnce(&Cpu) -> Result<Tensor<D>>,
    ) -> Result<Tensor<D>> {
        let n = checked_elements(op, &shape)?;
        let start = Instant::now();
        match self.route(op)? {
            Placement::Native => {
                let out = on_gpu(&self.gpu)?;
                self.record(op, Placement::Native, n, (0, 0), start);
                Ok(out)
            }
            Placement::Forwarded => {
                let out = self.to_gpu(op, on_cpu(&self.cpu)?)?;
                self.record(op, Placement::Forwarded, n, (0, 4 * n), start);
                Ok(out)
            }
        }
    }

    /// An op from one tensor to a tensor of the same shape.
    /// Routes a scaler op (`series`, `weights` in; `(loc, scale)` out): 4 bytes per value to
    /// the CPU and 8 back when forwarded. `state` goes to whichever side runs.
    fn scaler<S>(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        state: S,
        on_gpu: impl FnOnce(&Gpu, S, Tensor<3>, Tensor<3>) -> Result<(Tensor<3>, Tensor<3>)>,
        on_cpu: impl FnOnce(&Cpu, S, Tensor<3>, Tensor<3>) -> Result<(Tensor<3>, Tensor<3>)>,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let op = Op::PatchScaler;
        let n = series.shape().num_elements();
        let start = Instant::now();
        match self.route(op)? {
            Placement::Native => {
                let out = on_gpu(&self.gpu, state, series, weights)?;
                self.record(op, Placement::Native, n, (0, 0), start);
                Ok(out)
            }
            Placement::Forwarded => {
                let series = move_to(op, series, self.cpu.device())?;
                let weights = move_to(op, weights, self.cpu.device())?;
                let (loc, scale) = on_cpu(&self.cpu, state, series, weights)?;
                let out = (self.to_gpu(op, loc)?, self.to_gpu(op, scale)?);
                self.record(op, Placement::Forwarded, n, (8 * n, 8 * n), start);
                Ok(out)
            }
        }
    }

    fn unary<const D: usize>(
        &self,
        op: Op,
        param: &'static str,
        x: Tensor<D>,
        on_gpu: impl FnOnce(&Gpu, Tensor<D>) -> Result<Tensor<D>>,
        on_cpu: impl FnOnce(&Cpu, Tensor<D>) -> Result<Tensor<D>>,
    ) -> Result<Tensor<D>> {
        self.ensure_on_device(op, param, &x)?;
        let n = x.shape().num_elements();
        let start = Instant::now();
        match self.route(op)? {
            Placement::Native => {
                let out = on_gpu(&self.gpu, x)?;
                self.record(op, Placement::Native, n, (0, 0), start);
                Ok(out)
            }
            Placement::Forwarded => {
                let x = move_to(op, x, self.cpu.device())?;
                let out = self.to_gpu(op, on_cpu(&self.cpu, x)?)?;
                self.record(op, Placement::Forwarded, n, (4 * n, 4 * n), start);
                Ok(out)
            }
        }
    }

    fn to_gpu<const D: usize>(&self, op: Op, t: Tensor<D>) -> Result<Tensor<D>> {
        move_to(op, t, self.gpu.device())
    }
}

/// Moves an index tensor between devices through host memory, as `i32` (4 bytes an index).
fn move_int_to<const D: usize>(
    op: Op,
    t: Tensor<D, Int>,
    device: &Device,
) -> Result<Tensor<D, Int>> {
    let from = t.device();
    let data = t.try_into_data().map_err(|e| Error::ReadBack {
        what: op.name().to_owned(),
        device: format!("{from:?}"),
        reason: e.to_string(),
    })?;
    Ok(Tensor::from_data(data.convert::<i32>(), device))
}

/// Moves a tensor between devices through host memory, with read errors as [`Error::ReadBack`]
/// (burn's `to_device` would panic on them).
fn move_to<const D: usize>(op: Op, t: Tensor<D>, device: &Device) -> Result<Tensor<D>> {
    let shape = t.dims();
    Ok(upload(read_f32(op.name(), t)?, shape, device))
}

impl<Gpu: Backend, Cpu: Backend> Backend for FallbackBackend<Gpu, Cpu> {
    fn name(&self) -> &str {
        &self.name
    }

    /// The GPU backend's device: every input and output lives there.
    fn device(&self) -> &Device {
        self.gpu.device()
    }

    /// True when the op runs somewhere: natively on the GPU, or forwarded under a policy that
    /// allows it.
    fn supports(&self, op: Op) -> bool {
        self.placement(op).is_some()
    }

    /// Seeds both backends with `seed`.
    fn seed(&self, seed: u64) {
        self.gpu.seed(seed);
        self.cpu.seed(seed);
    }

    fn uniform<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        self.generate(
            Op::Uniform,
            shape,
            |g| g.uniform(shape),
            |c| c.uniform(shape),
        )
    }

    fn standard_normal<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        self.generate(
            Op::StandardNormal,
            shape,
            |g| g.standard_normal(shape),
            |c| c.standard_normal(shape),
        )
    }

    fn standard_gamma<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>> {
        self.unary(
            Op::StandardGamma,
            "alpha",
            alpha,
            |g, a| g.standard_gamma(a),
            |c, a| c.standard_gamma(a),
        )
    }

    fn standard_t<const D: usize>(&self, df: Tensor<D>) -> Result<Tensor<D>> {
        self.unary(
            Op::StandardT,
            "df",
            df,
            |g, d| g.standard_t(d),
            |c, d| c.standard_t(d),
        )
    }

    fn lgamma<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.unary(Op::Lgamma, "x", x, |g, x| g.lgamma(x), |c, x| c.lgamma(x))
    }

    fn digamma<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.unary(
            Op::Digamma,
            "x",
            x,
            |g, x| g.digamma(x),
            |c, x| c.digamma(x),
        )
    }

    fn categorical(&self, logits: Tensor<2>, samples: usize) -> Result<Tensor<2, Int>> {
        let op = Op::Categorical;
        let [rows, k] = categorical_check(self, &logits, samples)?;
        let n = samples * rows;
        let start = Instant::now();
        match self.route(op)? {
            Placement::Native => {
                let out = self.gpu.categorical(logits, samples)?;
                self.record(op, Placement::Native, n, (0, 0), start);
                Ok(out)
            }
            Placement::Forwarded => {
                let logits = move_to(op, logits, self.cpu.device())?;
                let out = self.cpu.categorical(logits, samples)?;
                let out = move_int_to(op, out, self.gpu.device())?;
                self.record(op, Placement::Forwarded, n, (4 * rows * k, 4 * n), start);
                Ok(out)
            }
        }
    }

    /// Native when the GPU has the fused op. Otherwise, when the GPU runs the categorical
    /// draw, the fused op is composed here from [`Backend::categorical`], a gather on the GPU
    /// and [`Backend::standard_t`], each routed on its own: only the chosen components' degrees
    /// of freedom then cross to the CPU (4 bytes a draw, not the `[rows, K]` parameters). Only a
    /// GPU without categorical draws forwards the whole op.
    fn student_t_mixture(
        &self,
        logits: Tensor<2>,
        df: Tensor<2>,
        loc: Tensor<2>,
        scale: Tensor<2>,
        samples: usize,
    ) -> Result<Tensor<2>> {
        let op = Op::StudentTMixture;
        let [rows, k] = mixture_check(self, &logits, [&df, &loc, &scale], samples)?;
        if !self.gpu.supports(op) && self.gpu.supports(Op::Categorical) {
            return mixture_composed(self, logits, df, loc, scale, samples);
        }
        let n = samples * rows;
        let start = Instant::now();
        match self.route(op)? {
            Placement::Native => {
                let out = self
                    .gpu
                    .student_t_mixture(logits, df, loc, scale, samples)?;
                self.record(op, Placement::Native, n, (0, 0), start);
                Ok(out)
            }
            Placement::Forwarded => {
                let cpu = self.cpu.device();
                let out = self.cpu.student_t_mixture(
                    move_to(op, logits, cpu)?,
                    move_to(op, df, cpu)?,
                    move_to(op, loc, cpu)?,
                    move_to(op, scale, cpu)?,
                    samples,
                )?;
                let out = self.to_gpu(op, out)?;
                self.record(op, Placement::Forwarded, n, (16 * rows * k, 4 * n), start);
                Ok(out)
            }
        }
    }

    fn patch_scaler(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        spec.check(self, &series, &weights)?;
        self.scaler(
            series,
            weights,
            (),
            |g, (), x, w| g.patch_scaler(x, w, spec),
            |c, (), x, w| c.patch_scaler(x, w, spec),
        )
    }

    fn patch_scaler_extend(
        &self,
        state: &mut ScalerState,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        spec.check_extend(self, &series, &weights)?;
        self.scaler(
            series,
            weights,
            state,
            |g, state, x, w| g.patch_scaler_extend(state, x, w, spec),
            |c, state, x, w| c.patch_scaler_extend(state, x, w, spec),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::NdArray;

    /// Collects warnings that mention `digamma` (only this test forwards digamma).
    struct Capture(Mutex<Vec<String>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            let msg = record.args().to_string();
            if record.level() == log::Level::Warn && msg.contains("`digamma`") {
                self.0.lock().unwrap().push(msg);
            }
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

    #[test]
    fn warn_policy_warns_once_per_op_and_silent_never() {
        log::set_logger(&CAPTURE).expect("no other logger in the unit tests");
        log::set_max_level(log::LevelFilter::Warn);
        let gpu = NdArray::seeded(1).with_unsupported([Op::Digamma]);
        let warned = FallbackBackend::new(gpu.clone(), NdArray::seeded(2));
        for _ in 0..3 {
            let x = Tensor::<1>::ones([4], warned.device());
            warned.digamma(x).unwrap();
        }
        let silent =
            FallbackBackend::new(gpu, NdArray::seeded(2)).with_policy(FallbackPolicy::Silent);
        silent
            .digamma(Tensor::<1>::ones([4], silent.device()))
            .unwrap();
        let messages = CAPTURE.0.lock().unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].contains("FallbackPolicy::Deny"),
            "the warning names the options"
        );
        assert_eq!(warned.report().op(Op::Digamma).forwarded.calls, 3);
        assert_eq!(silent.report().op(Op::Digamma).forwarded.calls, 1);
    }
}
