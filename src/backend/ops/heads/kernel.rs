//! The heads kernel: a cube per (sequence, position, head) of the queries and keys, a thread per
//! value of the head.

use cubecl::prelude::*;

/// The threads of a head's cube: the head width rounded up to a power of two, at least 32.
pub(crate) fn lanes(d: usize) -> usize {
    d.next_power_of_two().max(32)
}

/// The query heads `q` (`[n, heads, s, d]`) and key heads `k` (`[n, groups, s, d]`) of fused
/// projections `qkv` (`[n, s, width]`, queries then keys then values, head index slowest in
/// each), all contiguous.
///
/// Cube `c` serves head `c mod (heads + groups)` (a query head below `heads`, then the key
/// heads) of position `(c / (heads + groups)) mod s` of sequence `c / ((heads + groups)·s)`;
/// thread `j` of its `lanes` (see [`lanes`]) value `j` of the head (threads past `d` hold 0), so
/// that a cube reads and writes consecutive values. Each head is
/// - with `norm`, divided by its root mean square (`√(mean(x²) + eps)`, the squares summed in
///   shared memory as a tree), then times the query or key weight (`q_weight`, `k_weight`,
///   `[d]`) where `q_weighted`/`k_weighted`;
/// - a query, with `scaled`, times `multiplier` (`[d]`) and `factor`;
/// - with `rotate`, rotated over its first `rotated` values in interleaved pairs:
///   `y[j]·cos[t] + y[j ± 1]·sin[t]` (the pair's other value) at `t = i·rotated + j` (`cos`, `sin`: `[s, rotated]`, `sin`
///   with rotate-half's sign; the partner's value read from shared memory), then with `xpos`
///   times `scale[t]` (a query) or divided by it (a key); the values past `rotated` pass
///   through.
///
/// Arrays a flag leaves unread may be placeholders. Cubes past the last head recompute it and
/// write nothing, so that every thread reaches the barriers.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn heads_kernel(
    qkv: &[f32],
    q_weight: &[f32],
    k_weight: &[f32],
    multiplier: &[f32],
    cos: &[f32],
    sin: &[f32],
    scale: &[f32],
    q: &mut [f32],
    k: &mut [f32],
    rows: u32,
    heads: u32,
    groups: u32,
    s: u32,
    width: u32,
    rotated: u32,
    eps: f32,
    factor: f32,
    #[comptime] d: usize,
    #[comptime] lanes: usize,
    #[comptime] norm: bool,
    #[comptime] q_weighted: bool,
    #[comptime] k_weighted: bool,
    #[comptime] scaled: bool,
    #[comptime] rotate: bool,
    #[comptime] xpos: bool,
) {
    let j = UNIT_POS as usize;
    let cube = u32::cast_from(CUBE_POS);
    let r = u32::min(cube, rows - 1);
    let all = heads + groups;
    let head = r % all;
    let at = r / all; // sequence · s + position
    let i = at % s;
    let seq = at / s;
    let query = head < heads;
    let inside = j < d;
    let base = (at * width + head * d as u32) as usize;
    let mut x = 0.0f32;
    if inside {
        x = qkv[base + j];
    }
    let mut shared = Shared::<[f32]>::new_slice(lanes);
    if norm {
        shared[j] = x * x;
        sync_cube();
        // From the cube's size (`lanes`) read at run time: a variable that starts at a
        // compile-time constant cannot be assigned in CubeCL.
        let mut stride = u32::cast_from(CUBE_DIM) / 2u32;
        while stride > 0u32 {
            if (j as u32) < stride {
                let sum = shared[j] + shared[j + stride as usize];
                shared[j] = sum;
            }
            sync_cube();
            stride /= 2u32;
        }
        let rms = f32::sqrt(shared[0] / d as f32 + eps);
        sync_cube();
        x /= rms;
        if inside {
            if query && q_weighted {
                x *= q_weight[j];
            }
            if !query && k_weighted {
                x *= k_weight[j];
            }
        }
    }
    if scaled && query && inside {
        x *= multiplier[j];
        x *= factor;
    }
    if rotate {
        shared[j] = x;
        sync_cube();
        if (j as u32) < rotated {
            let t = (i * rotated) as usize + j;
            // The pair's other value: `j + 1` for even `j`, `j − 1` for odd.
            let partner = shared[j + 1 - 2 * (j % 2)];
            x = x * cos[t] + partner * sin[t];
            if xpos {
                if query {
                    x *= scale[t];
                } else {
                    x /= scale[t];
                }
            }
        }
    }
    if cube < rows && inside {
        if query {
            q[(((seq * heads + head) * s + i) * d as u32) as usize + j] = x;
        } else {
            k[(((seq * groups + head - heads) * s + i) * d as u32) as usize + j] = x;
        }
    }
}
