//! The few-query attention kernel: one thread per query row.

use cubecl::prelude::*;

/// `softmax(q·kᵀ / divisor) · v` of query `i` of each `(sequence, head)` over its group's keys
/// and values: `q` `[n, H, s, dk]`, `k` `[n, G, capacity, dk]`, `v` `[n, G, capacity, dv]`,
/// `out` `[n, H, s, dv]`, all contiguous; head `h` reads group `h / per_group`.
///
/// Which keys a query sees: with `masked`, those where `blocked` (`[mn, mh, s, capacity]`,
/// broadcast over sequences when `mn = 1` and over heads when `mh = 1`) is 0; otherwise the
/// first `len − s + i + 1` (the causal mask of [`Mask::Cache`](crate::backend::Mask::Cache);
/// the unwritten entries are never read). The running maximum starts at the lowest finite
/// `f32`, so no infinity enters; a query that sees no key gets `0/0 = NaN`, as the composition's
/// softmax of an all-blocked row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn few_query_attention_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    blocked: &[f32],
    out: &mut [f32],
    rows: u32,
    heads: u32,
    per_group: u32,
    groups: u32,
    s: u32,
    capacity: u32,
    len: u32,
    mask_n: u32,
    mask_h: u32,
    divisor: f32,
    #[comptime] dk: usize,
    #[comptime] dv: usize,
    #[comptime] masked: bool,
) {
    let r = u32::cast_from(ABSOLUTE_POS);
    if r >= rows {
        terminate!();
    }
    let i = r % s;
    let pair = r / s;
    let head = pair % heads;
    let seq = pair / heads;
    let first = (seq * groups + head / per_group) * capacity;

    let mut query = Array::<f32>::new(dk);
    let qb = r as usize * dk;
    for d in 0..dk {
        query[d] = q[qb + d];
    }
    let mut acc = Array::<f32>::new(dv);
    for d in 0..dv {
        acc[d] = 0.0f32;
    }
    let mut max = f32::new(-3.402_823e38);
    let mut total = 0.0f32;

    let mut end = capacity;
    let mut mb = 0u32;
    if masked {
        mb = (((seq % mask_n) * mask_h + head % mask_h) * s + i) * capacity;
    } else {
        end = len + i + 1 - s;
    }
    for j in 0..end {
        let mut flag = 0.0f32;
        if masked {
            flag = blocked[(mb + j) as usize];
        }
        if flag == 0.0f32 {
            let kb = (first + j) as usize * dk;
            let mut dot = 0.0f32;
            for d in 0..dk {
                dot += query[d] * k[kb + d];
            }
            let score = dot / divisor;
            let top = f32::max(max, score);
            let rescale = f32::exp(max - top);
            let weight = f32::exp(score - top);
            total = total * rescale + weight;
            let vb = (first + j) as usize * dv;
            for d in 0..dv {
                acc[d] = acc[d] * rescale + weight * v[vb + d];
            }
            max = top;
        }
    }

    let ob = r as usize * dv;
    for d in 0..dv {
        out[ob + d] = acc[d] / total;
    }
}
