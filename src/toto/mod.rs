//! Datadog's Toto (Toto-Open-Base-1.0) over any [`Backend`](crate::Backend): the checkpoint
//! loader, the backbone and its Student-T mixture head, and the forecaster.
//!
//! The model is written once: its matrix products, attention and head run as burn tensor ops on
//! the backend's device; the f64 causal scaler and every random draw go through the
//! [`Backend`](crate::Backend)'s ops, so on a [`FallbackBackend`](crate::FallbackBackend)
//! whatever the GPU lacks runs on the CPU and shows up in the report.
//!
//! One model part per file, each with its own `forward`, named as toto-ts names it:
//!
//! | part | file | toto-ts |
//! |---|---|---|
//! | [`TotoConfig`] | `config.rs` | `Toto(**config)` |
//! | [`Toto`]: constructors, input checks, scaling, `forward` | `model.rs` | `Toto`, `TotoBackbone.forward` |
//! | [`TotoWeights`]: patch embedding, layer stack, unembedding | `backbone.rs` | `TotoBackbone` |
//! | one transformer layer, RMSNorm, SwiGLU | `layer.rs` | `TransformerLayer` |
//! | time-wise and space-wise attention | `attention.rs` | `TimeWiseMultiheadAttention`, `SpaceWiseMultiheadAttention` |
//! | the Student-T mixture head | `head.rs` | `MixtureOfStudentTsOutput` |
//! | [`KvCache`] | `cache.rs` | `KVCache` |
//! | [`TotoOutput`], [`TotoDistribution`] | `output.rs` | `TotoOutput` |
//! | [`Toto::forecast`], [`ForecastOptions`] | `forecast.rs` | `TotoForecaster` |
//! | checkpoint load and save | `checkpoint.rs` | `Toto.load_from_checkpoint` |
//! | streaming sessions' passes ([`Forecaster::stream`](crate::Forecaster::stream)) | `stream.rs` | (none) |
//!
//! What both Toto generations share (rotary + xPos, attention helpers) is in the crate's `nn`
//! module, the [`Forecast`] they return in [`forecast`](crate::forecast).

mod attention;
mod backbone;
mod cache;
mod checkpoint;
mod config;
mod forecast;
mod head;
mod layer;
mod model;
mod output;
mod stream;

pub use self::backbone::TotoWeights;
pub use self::cache::KvCache;
pub use self::config::{
    LayerKind, MAX_SCALE_EXPONENT, OUTPUT_CLS, OutputKwargs, SCALER_CLS, TotoConfig,
};
pub use self::model::Toto;
pub use self::output::{TotoDistribution, TotoMixture, TotoOutput};
#[doc(hidden)]
pub use self::stream::TotoStream;
#[cfg(feature = "plot")]
pub use crate::forecast::FanChart;
pub use crate::forecast::Forecast;
pub use crate::forecast::ForecastOptions;
