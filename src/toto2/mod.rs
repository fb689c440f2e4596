//! Datadog's Toto 2.0 (the `Toto-2.0-{4m, 22m, 313m, 1B, 2.5B}` checkpoints, toto-2 2.0.0) over
//! any [`Backend`](crate::Backend): a quantile forecaster of nine deciles per step.
//!
//! Written once over the crate's backend: its matrix products and attention run as burn tensor
//! ops on the backend's device (on the CPU, the decoder's steps run on host buffers between the
//! packed products instead, the same arithmetic without an op per step; docs/architecture.md,
//! "Matrix products on the CPU"); its patched causal scaler is the backend's f64 scaler op
//! ([`ScalerSpec::toto2`](crate::ScalerSpec::toto2)), so on a
//! [`FallbackBackend`](crate::FallbackBackend) nothing is forwarded on adapters with f64
//! shaders.
//!
//! | part | file | toto-2 |
//! |---|---|---|
//! | [`Toto2Config`] | `config.rs` | `Toto2ModelConfig` |
//! | [`Toto2`]: loading, input checks, scaling, embedding, head, `forward` | `model.rs` | `Toto2Model` |
//! | the decoder: layers, masks, KV cache, the CPU's host path | `decoder.rs` | `VariateTimeTransformerDecoder` |
//! | self-attention | `attention.rs` | `SelfAttention` |
//! | unit-scaled linear, RMSNorm, residual MLPs, feed-forward | `layers.rs` | dd-unit-scaling |
//! | [`Toto2::forecast`], [`Covariates`] | `forecast.rs` | `Toto2Model.forecast` |
//! | streaming sessions' passes ([`Forecaster::stream`](crate::Forecaster::stream)) | `stream.rs` | (none) |
//!
//! Rotary/xPos and the checkpoint reader are shared with Toto 1.0 (the crate's `nn` module); the
//! [`Forecast`](crate::forecast::Forecast) is the one both generations return.

mod attention;
mod config;
mod decoder;
mod forecast;
mod layers;
mod model;
mod stream;

pub use self::config::Toto2Config;
pub use self::forecast::Covariates;
pub use self::layers::Precision;
pub use self::model::{LEVELS, Toto2, Toto2Output};
#[doc(hidden)]
pub use self::stream::Toto2Stream;
