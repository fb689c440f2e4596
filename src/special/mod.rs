//! Special functions as compositions of burn tensor ops, so they run natively on every device
//! (WGSL, MSL and SPIR-V have no `lgamma` or `digamma`) and stay differentiable.

mod gamma;

pub use self::gamma::{digamma, lgamma};
