//! The few-query attention's tensor-level entry point, which [`Wgpu`](crate::Wgpu) calls.
//! Callers check the shapes and the mask (`LayerOps::attention_core`) first.

use burn::backend::Dispatch;
use burn::tensor::{Bool, Tensor};

use super::launch::FewQueryAttentionOps;
use crate::backend::ops::launch::f32_dispatch;

/// What the kernel masks with: the causal mask over a cache's first `len` entries, or a
/// blocked mask (`[1 | n, 1 | H, S, S_kv]`, true where blocked).
pub(crate) enum Keys<'a> {
    Written(usize),
    Blocked(&'a Tensor<4, Bool>),
}

/// `softmax(q·kᵀ / divisor, masked) · v` of `q` (`[n, H, S, dk]`) over `k` and `v`
/// (`[n, G, S_kv, d]`); `[n, H, S, dv]` in `f32`.
pub(crate) fn few_query_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    keys: Keys<'_>,
    divisor: f64,
) -> Tensor<4> {
    let (blocked, len, masked) = match keys {
        // Not read: a placeholder for the mask argument (no fill).
        Keys::Written(len) => (Tensor::<4>::empty([1, 1, 1, 1], &q.device()), len, false),
        Keys::Blocked(m) => (m.clone().float(), 0, true),
    };
    Tensor::from_dispatch(Dispatch::few_query_attention(
        f32_dispatch(q),
        f32_dispatch(k),
        f32_dispatch(v),
        f32_dispatch(blocked),
        len,
        masked,
        divisor as f32,
    ))
}
