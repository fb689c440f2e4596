//! # toto-fallback
//!
//! Tensor-valued probability distributions on [burn](https://burn.dev) 0.22 that run on any
//! device, with native GPU samplers and a per-op GPU→CPU fallback that you choose as a type and
//! that reports exactly what ran where. Built for Datadog's Toto forecaster, whose output head
//! is a mixture of Student-T distributions.
//!
//! PyTorch on Apple GPUs crashed with `NotImplementedError: aten::_standard_gamma` until users
//! set `PYTORCH_ENABLE_MPS_FALLBACK=1` *before* `import torch`, then paid a silent CPU round trip
//! per step; burn's own wgpu backend has no gamma sampling at all. This crate brings its own GPU
//! samplers (uniform, normal, gamma, Student-T, Toto's mixture draw, as CubeCL kernels over a
//! counter-based generator) and keeps the fallback for any op a device lacks — as a value:
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
//!
//! The crate is layered; each layer imports only from the layers below it (a test checks it):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | either generation | [`auto`] | [`AutoToto::from_dir`](auto::AutoToto::from_dir) loads Toto 1.0 or 2.0, whichever a directory holds, behind the one [`Forecaster`] interface |
//! | models | [`toto`], [`toto2`] | Datadog's Toto 1.0 and Toto 2.0 over any [`Backend`]: config, checkpoint loader, model parts, forward pass, forecaster |
//! | what the models share | [`forecast`], `nn`, `hub`, [`eval`], `table` | the [`Forecaster`] trait every model implements, the [`ForecastRequest`] it takes (a [`forecast::Series`] of host data, known covariates, [`ForecastOptions`]) and the [`forecast::Forecast`] it returns (quantiles, median, spread, fan charts); rotary/xPos and attention helpers; with the `hub` feature, checkpoints from the Hugging Face Hub (`from_pretrained`); gluonts' metrics and the seasonal-naive baseline ([`eval`]); with the `csv` feature, long-format tables in and out (`table`) |
//! | distributions | [`distr`] | [`distr::Normal`], [`distr::Gamma`], [`distr::Chi2`], [`distr::StudentT`], [`distr::Categorical`], [`distr::MixtureSameFamily`], [`distr::Affine`] over burn tensors on any backend |
//! | backends | [`backend`] | the [`Backend`] trait (per-op support, seeding, sampling, Toto's scaler; each op checked once, then the backend's `_unchecked` implementation), the [`LayerOps`] trait (linear layers, norms, gates, attention: what the models are written with), [`NdArray`] (CPU, with its own [`CpuKernels`]), [`Wgpu`] (Vulkan/Metal/DX12; CubeCL kernels) and [`FallbackBackend`] (routes per op under a [`FallbackPolicy`], into a [`Report`]) |
//! | special functions | [`special`] | `lgamma`, `digamma`, `log1p`, `expm1`, `ndtr`, `ndtri`, `lbeta`, `betainc`, `gammainc`, `gammaincc` as burn tensor compositions on any device |
//! | errors | [`Error`] | every failure, each saying what to change |
//! | leaves | [`rng`], [`Op`], [`MAX_ELEMENTS`] | the counter-based generator (Philox4x32-10), the op names, shape and size helpers |
//!
//! With the `plot` feature, [`forecast::Forecast::fan_chart`] draws a forecast as a PNG fan chart.
//! With `hub`, [`Forecaster::from_pretrained`] (`Toto::from_pretrained(&backend, "Datadog/Toto-Open-Base-1.0")`, and `Toto2`'s, `AutoToto`'s)
//! downloads a checkpoint into the Hugging Face cache shared with Python and loads it.
//! With `cache` (a default), GPU kernels tuned and compiled by one process are kept on disk for
//! the next; [`kernel_cache`] says where and ships them to other machines.
//!
//! ## Threads and bad input
//! Every backend, distribution, [`Toto`], [`Toto2`] and [`Forecast`] is `Send + Sync`. One
//! backend (or its clones, which share the report, the seed and the call counter) may serve
//! many threads at once: each sampling call takes the next call number under a lock, so
//! concurrent calls draw distinct streams and no report count is lost. Which thread gets which
//! stream then depends on timing; for draws that are reproducible per thread, give each thread
//! its own seeded backend. Bad input (shapes, devices, sizes, configs, checkpoints) is an
//! [`Error`], never a panic; bad *values* inside tensors give NaN element-wise, as each op
//! documents. The crate's `docs/reliability.md` lists every case with its result and its test.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Leaves: no imports from the crate.
#[cfg(feature = "wgpu")]
mod adapter;
mod op;
pub mod rng;
mod shape;

mod error;

pub mod special;

pub mod backend;

pub mod distr;

pub mod eval;
#[cfg(feature = "csv")]
pub mod table;

pub mod forecast;
#[cfg(feature = "hub")]
pub mod hub;
pub(crate) mod nn;

pub mod toto;
pub mod toto2;

pub mod auto;
pub mod multi;

/// The burn version this crate is built on, re-exported so that your code names the same
/// `Tensor`, `Device` and `TensorData` types without a `burn` dependency of its own (or with
/// one that must then match: 0.22).
pub use burn;

pub use auto::AutoToto;
#[cfg(feature = "wgpu")]
pub use backend::kernel_cache;
#[cfg(feature = "wgpu")]
pub use backend::{AdapterKind, GraphicsApi, Wgpu};
pub use backend::{
    Backend, CpuKernels, FallbackBackend, FallbackPolicy, LayerOps, MixtureParams, NdArray,
    OpReport, Placement, Precision, Report, ScalerSpec, ScalerState, Usage,
};
#[cfg(feature = "wgpu")]
pub use backend::{Chosen, Prefer, choose_backend};
pub use error::{BoxedSource, CheckpointProblems, Error, InputKind, Result};
#[cfg(feature = "hub")]
pub use error::{HubError, HubProblem};
pub use forecast::{
    Forecast, ForecastOptions, ForecastRequest, Forecaster, Generation, Series, Toto2Settings,
    TotoSettings,
};
#[cfg(feature = "hub")]
pub use hub::HubOptions;
pub use multi::{MultiDevice, MultiReport};
pub use op::{Op, OpSet};
pub use shape::{MAX_ELEMENTS, MAX_PARAMETERS};
pub use toto::Toto;
pub use toto2::Toto2;

/// The README's Rust snippets, compiled (and run, unless marked `no_run`) as doctests; its
/// crates.io `main.rs` calls `from_pretrained`, hence the `hub` feature (the README's test
/// command has it).
#[cfg(all(doctest, feature = "hub"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
