//! The fused Student-T mixture kernels: one Philox block per draw; word 0 picks the component
//! against the row's cumulative weights, words 1-2 draw its Student-T (Bailey's polar method).
//! No `[rows, K]` intermediate is written.

use cubecl::prelude::*;

use crate::backend::ops::cube::{Stream, block_at, polar_t, unit};
use crate::backend::ops::launch::CUBE_DIM;

/// Rows a cube of the tiled kernel stages: one per thread (the launch's cube size).
const TILE_ROWS: u32 = CUBE_DIM;

/// The largest `K` the tiled kernel stages (48 KiB of shared memory per cube of 256 threads).
pub(crate) const TILED_MAX_K: usize = 48;

/// The component a uniform word picks from the `k` logits `w[base..base + k]`: the row maximum
/// is subtracted and exponentiated, and the pick is the first component whose cumulative weight
/// exceeds `u · total`; the last one unless some passes first (rounding can leave the running
/// sum a hair under the total; a row without finite logits ends there). `w` is global memory
/// or a shared-memory tile. `K` is a compile-time constant (one kernel per `K`): the loops then
/// have constant bounds, which measured 10% faster than a run-time `K` on an H100
/// (docs/PERFORMANCE.md).
#[allow(unused_assignments, clippy::erasing_op)] // `found` is read later; `base * 0`: see below.
#[cube]
fn pick_component(w: &[f32], base: u32, #[comptime] k: u32, word: u32) -> u32 {
    let mut max = w[base as usize];
    for m in 1..k {
        max = f32::max(max, w[(base + m) as usize]);
    }
    let mut total = 0.0f32;
    for m in 0..k {
        total += f32::exp(w[(base + m) as usize] - max);
    }
    let target = unit(word) * total;
    // A run-time variable starting at K − 1 (a compile-time constant cannot be reassigned).
    let mut j = base * 0u32 + (k - 1u32);
    let mut found = false;
    let mut acc = 0.0f32;
    for m in 0..k {
        acc += f32::exp(w[(base + m) as usize] - max);
        if !found && acc > target {
            j = m;
            found = true;
        }
    }
    j
}

/// The block (relative to the launch's first) of output element `index`: `index` itself, or,
/// for a handle drawing a slice of a larger call's items ([`crate::rng::DrawWindow`]), its
/// place in that call: repetition `index / chunk` at `stride`, then `index mod chunk`.
/// `chunk = u32::MAX` (and any `stride`) is the identity for every index a launch has.
#[cube]
fn windowed(index: u32, chunk: u32, stride: u32) -> u32 {
    (index / chunk) * stride + index % chunk
}

/// `loc[at] + scale[at] · T(df[at])`, the Student-T from two Philox words.
#[cube]
fn draw_component(df: &[f32], loc: &[f32], scale: &[f32], at: usize, w1: u32, w2: u32) -> f32 {
    loc[at] + scale[at] * polar_t(df[at], w1, w2)
}

/// Element `(s, r)` of the `[samples, rows]` output reads row `r`'s `K` logits from global
/// memory: any `K` (one kernel per `K`).
#[cube(launch)]
pub(crate) fn mixture_t_kernel(
    logits: &[f32],
    df: &[f32],
    loc: &[f32],
    scale: &[f32],
    out: &mut [f32],
    rows: u32,
    stream: Stream,
    chunk: u32,
    stride: u32,
    #[comptime] k: u32,
) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let index = u32::cast_from(i);
    let base = (index % rows) * k;
    let b = block_at(windowed(index, chunk, stride), 0u32, &stream);
    let j = pick_component(logits, base, k, b.w0);
    out[i] = draw_component(df, loc, scale, (base + j) as usize, b.w1, b.w2);
}

/// [`mixture_t_kernel`] with the logits staged in shared memory: the cube's 256 threads first
/// load the `256 × K` logits of their rows with coalesced reads (consecutive threads,
/// consecutive addresses), then each thread scans its own row from shared memory. Rows are
/// `(first row of the cube + t) mod rows`, so any `rows` and `samples` work. `K` sizes the tile
/// at compile time (one kernel per `K`), at most [`TILED_MAX_K`].
#[cube(launch)]
pub(crate) fn mixture_t_tiled_kernel(
    logits: &[f32],
    df: &[f32],
    loc: &[f32],
    scale: &[f32],
    out: &mut [f32],
    rows: u32,
    stream: Stream,
    chunk: u32,
    stride: u32,
    #[comptime] k: u32,
) {
    let u = UNIT_POS;
    let i0 = u32::cast_from(ABSOLUTE_POS) - u;
    let r0 = i0 % rows;
    let mut tile = Shared::<[f32]>::new_slice(comptime!((TILE_ROWS * k) as usize));
    for j in 0..k {
        let idx = j * TILE_ROWS + u;
        let row = (r0 + idx / k) % rows;
        tile[idx as usize] = logits[(row * k + idx % k) as usize];
    }
    sync_cube();
    let i = i0 + u;
    if (i as usize) < out.len() {
        let b = block_at(windowed(i, chunk, stride), 0u32, &stream);
        let j = pick_component(&tile, u * k, k, b.w0);
        let at = (((r0 + u) % rows) * k + j) as usize;
        out[i as usize] = draw_component(df, loc, scale, at, b.w1, b.w2);
    }
}
