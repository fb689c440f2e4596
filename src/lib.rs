//! # toto-fallback
//!
//! Tensor-valued probability distributions on [burn](https://burn.dev) 0.22, with a per-op
//! GPU→CPU fallback that you choose as a type and that reports exactly what ran where. Built
//! for Datadog's Toto forecaster, whose Student-T mixture head needs gamma sampling that GPU
//! backends lack.
//!
//! PyTorch on Apple GPUs crashed with `NotImplementedError: aten::_standard_gamma` until users
//! set `PYTORCH_ENABLE_MPS_FALLBACK=1` *before* `import torch`, then paid a silent CPU round trip
//! per step. burn's wgpu backend has no gamma sampling at all. This crate brings its own GPU
//! samplers (gamma, Student-T, Toto's mixture draw) and keeps the fallback for any op a device
//! lacks — as a value:
//!
//! ```
//! use toto_fallback::{Backend, FallbackBackend, NdArray, Op};
//!
//! # fn gpu() -> NdArray { NdArray::seeded(0).with_unsupported([Op::StandardGamma]) }
//! // `gpu()` would be `Wgpu::new()?`; any `Backend` lacking an op behaves the same.
//! let backend = FallbackBackend::new(gpu(), NdArray::new());
//! let alpha = burn::tensor::Tensor::<2>::full([2, 3], 0.5, backend.device());
//! let gamma = backend.standard_gamma(alpha)?; // forwarded to the CPU, back on the GPU device
//! assert_eq!(gamma.dims(), [2, 3]);
//! assert_eq!(backend.report().op(Op::StandardGamma).forwarded.calls, 1);
//! # Ok::<(), toto_fallback::Error>(())
//! ```
//!
//! ## Map
//! - [`Backend`]: the distribution-level backend trait (per-op support, seeding, sampling and
//!   special functions), implemented by [`NdArray`] (CPU, every op), [`Wgpu`]
//!   (Vulkan/Metal/DX12; every sampler a native CubeCL kernel) and [`FallbackBackend`] (routes
//!   per op, under a [`FallbackPolicy`], into a [`Report`]).
//! - [`rng`]: the counter-based generator (Philox4x32-10) behind the native samplers, keyed by
//!   seed, call and element index, so draws do not depend on the launch layout or batch size.
//! - [`dist`]: distributions over burn tensors on any backend: [`dist::Normal`],
//!   [`dist::Gamma`], [`dist::Chi2`], [`dist::StudentT`], [`dist::Categorical`],
//!   [`dist::MixtureSameFamily`] and [`dist::Affine`].
//! - [`special`]: `lgamma`, `digamma`, `ndtr`, `ndtri` as burn tensor compositions that run on
//!   any device.
//! - [`toto`]: Datadog's Toto over any [`Backend`]: config, checkpoint loader, forward pass
//!   and forecaster, its scaler and sampling going through the backend's ops; with the `plot`
//!   feature, `Forecast::fan_chart` draws a forecast as a PNG fan chart.
//! - [`Error`]: every failure, each saying what to change.
//!
//! ## Threads and bad input
//! Every backend, distribution, [`toto::Toto`] and [`toto::Forecast`] is `Send + Sync`. One
//! backend (or its clones, which share the report, the seed and the call counter) may serve
//! many threads at once: each sampling call takes the next call number under a lock, so
//! concurrent calls draw distinct streams and no report count is lost. Which thread gets which
//! stream then depends on timing; for draws that are reproducible per thread, give each thread
//! its own seeded backend. Bad input (shapes, devices, sizes, configs, checkpoints) is an
//! [`Error`], never a panic; bad *values* inside tensors give NaN element-wise, as each op
//! documents. The crate's `docs/reliability.md` lists every case with its result and its test.

#![deny(missing_docs)]

pub mod backend;
pub mod dist;
mod error;
pub mod rng;
pub mod special;
pub mod toto;

#[cfg(feature = "wgpu")]
pub use backend::{AdapterKind, GraphicsApi, Wgpu};
pub use backend::{
    Backend, FallbackBackend, FallbackPolicy, MAX_ELEMENTS, NdArray, Op, OpReport, OpSet,
    Placement, Report, ScalerSpec, ScalerState, Usage,
};
pub use error::{CheckpointProblems, Error, Result};
