//! Scaled dot-product attention, plain or over a key/value prefix shared by groups of rows.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor};

/// `softmax(q kᵀ / √Dh + mask) v` with `mask` true where attention is *not* allowed.
pub(crate) fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    let dh = q.dims()[3];
    let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f64).sqrt());
    if let Some(blocked) = blocked {
        scores = scores.mask_fill(blocked, f32::NEG_INFINITY);
    }
    softmax(scores, 3).matmul(v)
}

/// [`attend`] for queries `q: [share·N, H, S, Dh]` over a prefix `(kp, vp): [N, H, S₀, Dh]`
/// shared by the `share` blocks of `N` rows, followed by each row's own keys and values
/// `(ko, vo): [share·N, H, S₁, Dh]` (no mask: every query sees the whole cache). The prefix is never
/// repeated: the `share` queries of a row become extra query rows against its one prefix.
pub(crate) fn attend_shared(
    q: Tensor<4>,
    (kp, vp): (&Tensor<4>, &Tensor<4>),
    (ko, vo): (Tensor<4>, Tensor<4>),
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
    let own_scores = q.matmul(ko.swap_dims(2, 3)).div_scalar(scale);
    let weights = softmax(Tensor::cat(vec![prefix_scores, own_scores], 3), 3);
    let wp = weights.clone().slice([0..rows, 0..h, 0..s, 0..s0]);
    let wo = weights.slice([0..rows, 0..h, 0..s, s0..s0 + s1]);
    scatter(gather(wp).matmul(vp.clone())).add(wo.matmul(vo))
}

/// The causal mask of `s` positions for `rows` rows of `heads` heads: true above the diagonal
/// (a query may not see later keys), `[rows, heads, s, s]`.
pub(crate) fn causal_blocked(
    s: usize,
    rows: usize,
    heads: usize,
    device: &Device,
) -> Tensor<4, Bool> {
    Tensor::<2, Bool>::tril_mask([s, s], 0, device)
        .reshape([1, 1, s, s])
        .expand([rows, heads, s, s])
}

/// The mask of attention between members of groups: `ids` (`[N, V]`, one id per member) blocks
/// every pair with different ids, `[N, heads, V, V]`.
pub(crate) fn group_blocked(ids: Tensor<2, Int>, heads: usize) -> Tensor<4, Bool> {
    let [n, v] = ids.dims();
    ids.clone()
        .reshape([n, 1, v, 1])
        .not_equal(ids.reshape([n, 1, 1, v]))
        .expand([n, heads, v, v])
}
