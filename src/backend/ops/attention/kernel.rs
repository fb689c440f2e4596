//! The few-query attention kernels: one cube of [`LANES`] threads per query row (its keys scored
//! a tile of [`LANES`] at a time, its output columns split over the threads), and one thread per
//! query row, which serves many rows over many keys better (see [`ROWS_PER_THREAD_FROM`]).

use cubecl::prelude::*;

/// Threads per query row, and keys per tile, of [`few_query_attention_kernel`].
pub(crate) const LANES: u32 = 32;

/// From this many query rows, over caches of more than [`LANES`] keys, a thread per row
/// ([`few_query_rows_kernel`]) is the faster launch. On an H100 (Toto 2.0 22m-like sessions,
/// ~70 keys, heads 64 wide, per layer): 1,920 rows took 0.10 ms with a cube per row and
/// 0.64–0.97 ms with a thread per row, 30,720 rows 0.72 ms and 0.33 ms; with 4 keys (one tile)
/// the cube per row was the faster at both sizes.
pub(crate) const ROWS_PER_THREAD_FROM: usize = 16_384;

/// Where query row `r`'s keys are: the first entry of its group's cache, how many entries it
/// may read, and the start of its row of the blocked mask (with `masked`).
#[derive(CubeType)]
struct RowKeys {
    first: u32,
    end: u32,
    mask: u32,
}

/// [`RowKeys`] of row `r` (`[n, H, s]` order); the kernels' arguments of the same names.
#[cube]
#[allow(clippy::too_many_arguments)]
fn row_keys(
    r: u32,
    heads: u32,
    per_group: u32,
    groups: u32,
    s: u32,
    capacity: u32,
    len: u32,
    mask_n: u32,
    mask_h: u32,
    #[comptime] masked: bool,
) -> RowKeys {
    let i = r % s;
    let pair = r / s;
    let head = pair % heads;
    let seq = pair / heads;
    let mut end = capacity;
    let mut mask = 0u32;
    if masked {
        mask = (((seq % mask_n) * mask_h + head % mask_h) * s + i) * capacity;
    } else {
        end = len + i + 1 - s;
    }
    RowKeys {
        first: (seq * groups + head / per_group) * capacity,
        end,
        mask,
    }
}

/// `softmax(q·kᵀ / divisor) · v` of query `i` of each `(sequence, head)` over its group's keys
/// and values: `q` `[n, H, s, dk]`, `k` `[n, G, capacity, dk]`, `v` `[n, G, capacity, dv]`,
/// `out` `[n, H, s, dv]`, all contiguous; head `h` reads group `h / per_group`.
///
/// Which keys a query sees: with `masked`, those where `blocked` (`[mn, mh, s, capacity]`,
/// broadcast over sequences when `mn = 1` and over heads when `mh = 1`) is 0; otherwise the
/// first `len − s + i + 1` (the causal mask of [`Mask::Cache`](crate::backend::Mask::Cache);
/// the unwritten entries are never read).
///
/// Cube `c` serves row `c` (cubes past the last row recompute it and write nothing, so every
/// thread reaches the barriers). The row's query is staged in shared memory; its keys are taken
/// [`LANES`] at a time: thread `t` scores key `t` of the tile, then every thread folds the tile's
/// scores into the running maximum and sum (an online softmax, rescaled as a larger score
/// arrives) and adds the tile's weighted values into its own output columns `t, t + LANES, …`
/// (consecutive threads, consecutive values). Running maxima start at the lowest finite `f32`,
/// so no infinity enters; a query that sees no key gets `0/0 = NaN`, as the composition's
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
    let lane = UNIT_POS as usize;
    let cube = u32::cast_from(CUBE_POS);
    let r = u32::min(cube, rows - 1);
    let keys = row_keys(
        r, heads, per_group, groups, s, capacity, len, mask_n, mask_h, masked,
    );
    let (first, end, mb) = (keys.first, keys.end, keys.mask);

    let mut query = Shared::<[f32]>::new_slice(dk);
    let qb = r as usize * dk;
    let mut d = lane;
    while d < dk {
        query[d] = q[qb + d];
        d += LANES as usize;
    }
    // This thread's output columns: `lane + LANES · c`.
    let columns = comptime!(dv.div_ceil(LANES as usize));
    let mut acc = Array::<f32>::new(columns);
    #[unroll]
    for c in 0..columns {
        acc[c] = 0.0f32;
    }
    let mut max = f32::new(-3.402_823e38);
    let mut total = 0.0f32;

    // A tile's scores (the running maximum for keys the row may not see, which leaves the
    // maximum as it is), then their weights (0 for those keys).
    let mut scores = Shared::<[f32]>::new_slice(comptime!(LANES as usize));
    let tiles = end.div_ceil(LANES);
    sync_cube();
    for tile in 0..tiles {
        let base = tile * LANES;
        // Thread `lane` scores key `base + lane`.
        let j = base + lane as u32;
        let mut seen = j < end;
        if masked && seen {
            seen = blocked[(mb + j) as usize] == 0.0f32;
        }
        let mut score = max;
        if seen {
            let kb = (first + j) as usize * dk;
            let mut dot = 0.0f32;
            for d in 0..dk {
                dot += query[d] * k[kb + d];
            }
            score = dot / divisor;
        }
        scores[lane] = score;
        sync_cube();
        // Every thread folds the tile into the same running maximum; thread `lane` weighs its
        // own key, and every thread then adds the tile's weights and weighted values.
        let mut top = max;
        for t in 0..LANES as usize {
            top = f32::max(top, scores[t]);
        }
        let rescale = f32::exp(max - top);
        sync_cube();
        let mut weight = 0.0f32;
        if seen {
            weight = f32::exp(score - top);
        }
        scores[lane] = weight;
        sync_cube();
        total *= rescale;
        #[unroll]
        for c in 0..columns {
            acc[c] *= rescale;
        }
        let count = u32::min(LANES, end - base) as usize;
        for t in 0..count {
            let weight = scores[t];
            // Blocked keys (weight 0) are not read: their entries may be unwritten.
            if weight > 0.0f32 {
                total += weight;
                let vb = (first + base + t as u32) as usize * dv;
                #[unroll]
                for c in 0..columns {
                    let column = lane + c * LANES as usize;
                    if column < dv {
                        acc[c] += weight * v[vb + column];
                    }
                }
            }
        }
        max = top;
        sync_cube();
    }

    if cube < rows {
        let ob = r as usize * dv;
        #[unroll]
        for c in 0..columns {
            let column = lane + c * LANES as usize;
            if column < dv {
                out[ob + column] = acc[c] / total;
            }
        }
    }
}

/// [`few_query_attention_kernel`]'s result with one thread per query row (same arguments, a
/// launch of one thread per row): the thread scores its keys one after the other with the
/// online softmax and keeps the whole row's weighted sum. Rows that read the same keys run
/// side by side, which serves many rows better than a cube each.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn few_query_rows_kernel(
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
    let keys = row_keys(
        r, heads, per_group, groups, s, capacity, len, mask_n, mask_h, masked,
    );
    let (first, end, mb) = (keys.first, keys.end, keys.mask);

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
