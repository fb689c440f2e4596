//! The backend ops, one folder per family. Each folder holds everything about its ops side by
//! side: the argument checks, the host (CPU) version, the composition from burn tensor ops (the
//! [`Backend`](crate::Backend) trait's provided body), and on wgpu the CubeCL kernel split into
//! the `#[cube]` functions (`kernel.rs`), their launch as a burn backend extension (`launch.rs`)
//! and the tensor-level wrappers the [`Wgpu`](crate::Wgpu) backend calls (`tensor.rs`).
//!
//! | family | ops |
//! |---|---|
//! | [`sampling`] | `uniform`, `standard_normal`, `standard_gamma`, `standard_t` |
//! | [`mixture`] | `categorical`, `student_t_mixture` |
//! | [`scaler`] | `patch_scaler`, `patch_scaler_extend` |
//! | [`attention`] | `attention_core` of a few queries over a KV cache (wgpu only) |
//! | [`heads`] | `attention_heads`: queries and keys normed, scaled and rotated (wgpu only) |
//! | [`sort`] | `sort_first` of up to 32 values per column (wgpu only) |
//!
//! `lgamma` and `digamma` are compositions from [`special`](crate::special) on every backend.
//! What the kernels share — the Philox rounds, uniforms from words, the polar Student-T — is in
//! `cube.rs`; what their launches share (output buffers, grids, `f32` inputs) in `launch.rs`.

#[cfg(feature = "wgpu")]
pub(crate) mod attention;
#[cfg(feature = "wgpu")]
pub(crate) mod cube;
#[cfg(feature = "wgpu")]
pub(crate) mod heads;
#[cfg(feature = "wgpu")]
pub(crate) mod launch;
pub(crate) mod mixture;
pub(crate) mod sampling;
pub(crate) mod scaler;
#[cfg(feature = "wgpu")]
pub(crate) mod sort;
