//! [`FallbackBackend`]: run each op on the GPU when it can, on the CPU when it must, and say so.

mod layers;
mod policy;
mod report;

pub use self::policy::FallbackPolicy;
pub use self::report::{OpReport, Placement, Report, Usage};

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor};

use self::report::Recorder;
use super::ops::mixture::{self, MixtureParams};
use super::ops::scaler::{ScalerSpec, ScalerState};
use super::transfer::Transfer;
use super::{Backend, Precision};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::rng::DrawWindow;

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
        self.decide(op).ok()
    }

    /// A snapshot of what ran where since construction or the last [`reset_report`]
    /// (shared by all clones).
    ///
    /// [`reset_report`]: FallbackBackend::reset_report
    pub fn report(&self) -> Report {
        self.shared
            .recorder
            .snapshot(self.gpu.name(), self.cpu.name(), self.policy)
    }

    /// Zeroes the report's counters (the warned-once state is kept).
    pub fn reset_report(&self) {
        self.shared.recorder.reset();
    }

    /// Where `op` runs under the policy, or why it cannot run.
    fn decide(&self, op: Op) -> Result<Placement> {
        if self.gpu.supports(op) {
            return Ok(Placement::Native);
        }
        let (gpu, cpu) = (self.gpu.name().to_owned(), self.cpu.name().to_owned());
        if !self.cpu.supports(op) {
            return Err(Error::UnsupportedEverywhere { op, gpu, cpu });
        }
        match self.policy {
            FallbackPolicy::Deny => Err(Error::FallbackDenied { op, gpu, cpu }),
            FallbackPolicy::Warn | FallbackPolicy::Silent => Ok(Placement::Forwarded),
        }
    }

    /// Logs the once-per-op warning of [`FallbackPolicy::Warn`].
    fn warn_once(&self, op: Op) {
        if self.policy == FallbackPolicy::Warn
            && !self.shared.warned[op.index()].swap(true, Ordering::Relaxed)
        {
            log::warn!(
                "`{op}` is not supported by {}; running it on {} with a device round trip per \
                 call. `FallbackBackend::report()` counts every forwarded call; \
                 `FallbackPolicy::Silent` hides this warning, `FallbackPolicy::Deny` makes it an \
                 error.",
                self.gpu.name(),
                self.cpu.name()
            );
        }
    }

    /// The one routing function: runs `op` natively on the GPU, or forwards it — `input`
    /// moved to the CPU, `on_cpu` run there, the output moved back — and records the call with
    /// its `elements`, the bytes that crossed each way and its time.
    fn run<I: Transfer, O: Transfer>(
        &self,
        op: Op,
        elements: usize,
        input: I,
        on_gpu: impl FnOnce(&Gpu, I) -> Result<O>,
        on_cpu: impl FnOnce(&Cpu, I) -> Result<O>,
    ) -> Result<O> {
        let start = Instant::now();
        let placement = self.decide(op)?;
        let (out, to_cpu, to_gpu) = match placement {
            Placement::Native => (on_gpu(&self.gpu, input)?, 0, 0),
            Placement::Forwarded => {
                self.warn_once(op);
                let (input, to_cpu) = input.transfer(op, self.cpu.device())?;
                let (out, to_gpu) = on_cpu(&self.cpu, input)?.transfer(op, self.gpu.device())?;
                (out, to_cpu, to_gpu)
            }
        };
        let usage = Usage {
            calls: 1,
            elements: elements as u64,
            bytes_to_cpu: to_cpu,
            bytes_to_gpu: to_gpu,
            time: start.elapsed(),
        };
        self.shared.recorder.record(op, placement, usage);
        Ok(out)
    }
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

    /// Both backends' windowed handles, recording into this backend's report.
    fn with_draw_window(&self, window: DrawWindow) -> Option<Self> {
        Some(FallbackBackend {
            gpu: self.gpu.with_draw_window(window)?,
            cpu: self.cpu.with_draw_window(window)?,
            ..self.clone()
        })
    }

    /// The GPU backend's: the products run there.
    fn precision(&self) -> Precision {
        self.gpu.precision()
    }

    fn fallback_report(&self) -> Option<Report> {
        Some(self.report())
    }

    /// `Ok(())` where the op runs somewhere; else why not: [`Error::FallbackDenied`] under
    /// [`FallbackPolicy::Deny`], [`Error::UnsupportedEverywhere`] when neither backend has it.
    fn ensure_supported(&self, op: Op) -> Result<()> {
        self.decide(op).map(drop)
    }

    fn reset_fallback_report(&self) {
        self.reset_report();
    }

    fn uniform_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        let n = shape.iter().product();
        self.run(
            Op::Uniform,
            n,
            (),
            |g, ()| g.uniform_unchecked(shape),
            |c, ()| c.uniform_unchecked(shape),
        )
    }

    fn standard_normal_unchecked<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        let n = shape.iter().product();
        self.run(
            Op::StandardNormal,
            n,
            (),
            |g, ()| g.standard_normal_unchecked(shape),
            |c, ()| c.standard_normal_unchecked(shape),
        )
    }

    fn standard_gamma_unchecked<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>> {
        let n = alpha.shape().num_elements();
        self.run(
            Op::StandardGamma,
            n,
            alpha,
            |g, a| g.standard_gamma_unchecked(a),
            |c, a| c.standard_gamma_unchecked(a),
        )
    }

    fn standard_t_unchecked<const D: usize>(&self, df: Tensor<D>) -> Result<Tensor<D>> {
        let n = df.shape().num_elements();
        self.run(
            Op::StandardT,
            n,
            df,
            |g, d| g.standard_t_unchecked(d),
            |c, d| c.standard_t_unchecked(d),
        )
    }

    fn categorical_unchecked(&self, logits: Tensor<2>, samples: usize) -> Result<Tensor<2, Int>> {
        let [rows, _] = logits.dims();
        self.run(
            Op::Categorical,
            samples * rows,
            logits,
            |g, l| g.categorical_unchecked(l, samples),
            |c, l| c.categorical_unchecked(l, samples),
        )
    }

    /// Native when the GPU has the fused op. Otherwise, when the GPU runs the categorical
    /// draw, the fused op is composed here from [`Backend::categorical`], a gather on the GPU
    /// and [`Backend::standard_t`], each routed on its own: only the chosen components' degrees
    /// of freedom then cross to the CPU (4 bytes a draw, not the `[rows, K]` parameters). Only a
    /// GPU without categorical draws forwards the whole op.
    fn student_t_mixture_unchecked(
        &self,
        params: MixtureParams,
        samples: usize,
    ) -> Result<Tensor<2>> {
        let op = Op::StudentTMixture;
        let [rows, _] = params.dims();
        if !self.gpu.supports(op) && self.gpu.supports(Op::Categorical) {
            return mixture::composed::student_t_mixture(self, params, samples);
        }
        self.run(
            op,
            samples * rows,
            params,
            |g, p| g.student_t_mixture_unchecked(p, samples),
            |c, p| c.student_t_mixture_unchecked(p, samples),
        )
    }

    fn patch_scaler_unchecked(
        &self,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let n = series.shape().num_elements();
        self.run(
            Op::PatchScaler,
            n,
            (series, weights),
            |g, (x, w)| g.patch_scaler_unchecked(x, w, spec),
            |c, (x, w)| c.patch_scaler_unchecked(x, w, spec),
        )
    }

    /// The state follows the op: it stays on the GPU while the scaler runs there, and comes to
    /// the host (one small read) when it is forwarded.
    fn patch_scaler_extend_unchecked(
        &self,
        state: &mut ScalerState,
        series: Tensor<3>,
        weights: Tensor<3>,
        spec: ScalerSpec,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let n = series.shape().num_elements();
        self.run(
            Op::PatchScaler,
            n,
            (state, series, weights),
            |g, (s, x, w)| g.patch_scaler_extend_unchecked(s, x, w, spec),
            |c, (s, x, w)| c.patch_scaler_extend_unchecked(s, x, w, spec),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::backend::NdArray;

    /// Collects warnings that mention `standard_t` (only this test forwards it).
    struct Capture(Mutex<Vec<String>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            let msg = record.args().to_string();
            if record.level() == log::Level::Warn && msg.contains("`standard_t`") {
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
        let gpu = NdArray::seeded(1).with_unsupported([Op::StandardT]);
        let warned = FallbackBackend::new(gpu.clone(), NdArray::seeded(2));
        for _ in 0..3 {
            let x = Tensor::<1>::ones([4], warned.device());
            warned.standard_t(x).unwrap();
        }
        let silent =
            FallbackBackend::new(gpu, NdArray::seeded(2)).with_policy(FallbackPolicy::Silent);
        silent
            .standard_t(Tensor::<1>::ones([4], silent.device()))
            .unwrap();
        let messages = CAPTURE.0.lock().unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].contains("FallbackPolicy::Deny"),
            "the warning names the options"
        );
        assert_eq!(warned.report().op(Op::StandardT).forwarded.calls, 3);
        assert_eq!(silent.report().op(Op::StandardT).forwarded.calls, 1);
    }
}
