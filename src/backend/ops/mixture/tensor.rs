//! The mixture draw's tensor-level entry point, which [`Wgpu`](crate::Wgpu) calls. Callers
//! check the parameters ([`MixtureParams::check`]) first.

use burn::backend::Dispatch;
use burn::tensor::Tensor;

use super::MixtureParams;
use super::launch::MixtureOps;
use crate::backend::ops::launch::f32_dispatch;
use crate::rng::DrawKey;

/// `[samples, rows]` draws of the mixture `params` in one kernel; `window` is `(chunk, stride)`
/// of a [`DrawWindow`](crate::rng::DrawWindow) (the key's offset is its first element), or
/// `(u32::MAX, 0)` for a whole call.
pub(crate) fn student_t_mixture(
    params: MixtureParams,
    samples: usize,
    key: DrawKey,
    window: (u32, u32),
) -> Tensor<2> {
    let [logits, df, loc, scale] = params.map(f32_dispatch).into_array();
    Tensor::from_dispatch(Dispatch::philox_mixture_t(
        logits,
        df,
        loc,
        scale,
        samples,
        key.into(),
        window,
    ))
}
