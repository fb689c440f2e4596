//! Sampling: [`Op::Uniform`], [`Op::StandardNormal`], [`Op::StandardGamma`] and
//! [`Op::StandardT`].
//!
//! | piece | file |
//! |---|---|
//! | host samplers (`NdArray`): Philox uniforms, rand_distr normals and gamma, chunked over every core | `host.rs` |
//! | the polar Student-T from uniforms (the trait's provided body) | `composed.rs` |
//! | CubeCL kernels (`Wgpu`): one Philox block per thread | `kernel.rs` |
//! | their launches, a burn backend extension | `launch.rs` |
//! | tensor-level wrappers | `tensor.rs` |
//!
//! The argument checks are the element count ([`checked_elements`](crate::backend::checked_elements))
//! and the device ([`Backend::ensure_on_device`](crate::Backend::ensure_on_device)).
//!
//! [`Op::Uniform`]: crate::Op::Uniform
//! [`Op::StandardNormal`]: crate::Op::StandardNormal
//! [`Op::StandardGamma`]: crate::Op::StandardGamma
//! [`Op::StandardT`]: crate::Op::StandardT

pub(crate) mod composed;
pub(crate) mod host;
#[cfg(feature = "wgpu")]
mod kernel;
#[cfg(feature = "wgpu")]
mod launch;
#[cfg(feature = "wgpu")]
pub(crate) mod tensor;
