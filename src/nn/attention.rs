//! Attention masks between members of groups, and attention over a key/value prefix shared by
//! groups of rows (Toto 1.0's sample paths); plain attention is the backend's
//! [`LayerOps::attention_core`](crate::backend::LayerOps::attention_core).

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Int, Tensor};

/// Attention (`softmax(q kᵀ / √Dh) v`) for queries `q: [share·N, H, S, Dh]` over a prefix
/// `(kp, vp): [N, H, S₀, Dh]` shared by the `share` blocks of `N` rows, of which the first
/// `len₀` are written, followed by each row's own keys and values `(ko, vo): [share·N, H, S₁,
/// Dh]` of which the first `len` are written (fixed-capacity buffers read whole: every query
/// sees the written entries of both). The prefix is never repeated: the `share` queries of a
/// row become extra query rows against its one prefix.
pub(crate) fn attend_shared(
    q: Tensor<4>,
    (kp, vp, len0): (&Tensor<4>, &Tensor<4>, usize),
    (ko, vo, len): (Tensor<4>, Tensor<4>, usize),
    share: usize,
) -> Tensor<4> {
    let [rows, h, s, dh] = q.dims();
    let n = rows / share;
    let s0 = kp.dims()[2];
    let scale = (dh as f64).sqrt();
    // [share·N, H, S, ·] <-> [N, H, share·S, ·]
    let gather = |x: Tensor<4>| {
        let w = x.dims()[3];
        x.reshape([share, n, h, s, w])
            .permute([1, 2, 0, 3, 4])
            .reshape([n, h, share * s, w])
    };
    let scatter = |x: Tensor<4>| {
        let w = x.dims()[3];
        x.reshape([n, h, share, s, w])
            .permute([2, 0, 1, 3, 4])
            .reshape([rows, h, s, w])
    };
    let prefix_scores =
        scatter(gather(q.clone()).matmul(kp.clone().swap_dims(2, 3))).div_scalar(scale);
    let s1 = ko.dims()[2];
    let own_scores = q.matmul(ko.swap_dims(2, 3)).div_scalar(scale); // [share·N, H, S, S₁]
    let mut scores = Tensor::cat(vec![prefix_scores, own_scores], 3);
    if len0 < s0 || len < s1 {
        // One mask over both parts: the unwritten entries of the prefix and of the own part.
        let device = scores.device();
        let at = Tensor::<1, Int>::arange(0..(s0 + s1) as i64, &device);
        let unwritten = at
            .clone()
            .greater_equal_elem(len0 as i64)
            .bool_and(at.clone().lower_elem(s0 as i64))
            .bool_or(at.greater_equal_elem((s0 + len) as i64))
            .reshape([1, 1, 1, s0 + s1])
            .expand([rows, h, s, s0 + s1]);
        scores = scores.mask_fill(unwritten, f32::NEG_INFINITY);
    }
    let weights = softmax(scores, 3);
    let wp = weights.clone().slice([0..rows, 0..h, 0..s, 0..s0]);
    let wo = weights.slice([0..rows, 0..h, 0..s, s0..s0 + s1]);
    scatter(gather(wp).matmul(vp.clone())).add(wo.matmul(vo))
}

/// The mask of attention between members of groups: `ids` (`[N, V]`, one id per member) blocks
/// every pair with different ids, `[N, 1, V, V]`.
pub(crate) fn group_blocked(ids: Tensor<2, Int>) -> Tensor<4, Bool> {
    let [n, v] = ids.dims();
    ids.clone()
        .reshape([n, 1, v, 1])
        .not_equal(ids.reshape([n, 1, 1, v]))
}
