//! What the Toto generations share below the model: rotary position embedding with xPos (each
//! generation's variant), attention masks and attention over a shared key/value prefix, the
//! fixed-capacity KV cache buffers both generations decode with, linear
//! layers from burn's modules, reading safetensors checkpoints by name, and phase timing. The
//! layers themselves run as the backend's [`LayerOps`](crate::backend::LayerOps). Each model generation (`toto`,
//! `toto2`) builds its layers from these; the f64 causal scaler both use is a backend op
//! ([`Backend::patch_scaler`]), and the forecast they return is [`forecast`](crate::forecast).
//!
//! [`Backend::patch_scaler`]: crate::Backend::patch_scaler

pub(crate) mod attention;
pub(crate) mod checkpoint;
pub(crate) mod kv;
pub(crate) mod linear;
pub(crate) mod phases;
pub(crate) mod rope;
pub(crate) mod watch;
