//! The native wgpu samplers: CubeCL kernels launched through burn's backend-extension API.
//!
//! Every GPU thread computes one Philox4x32-10 block and the output elements it serves (four
//! uniforms or normals, two Student-T draws, one gamma or mixture draw), addressed by the
//! elements' indices ([`crate::rng`]), so a draw does not depend on the launch layout, and the
//! uniforms are the ones [`crate::rng`] computes on the host. Only 32-bit integers are used:
//! CubeCL lowers `mul_hi` to a native instruction on SPIR-V and emulates it from 16-bit halves on
//! WGSL. The kernels take `f32` tensors and write `f32` tensors; nothing is read back to the host.
//!
//! With burn's `fusion` feature the ops are registered lazily in the fusion stream (opaque custom
//! operations between fused blocks); without it they launch at once.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, backend_extension};
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use crate::rng::DrawKey;

/// A [`DrawKey`] as the kernels' 32-bit scalars.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    k0: u32,
    k1: u32,
    offset: u64,
    call: u32,
}

impl From<DrawKey> for Key {
    fn from(key: DrawKey) -> Self {
        let [k0, k1] = key.key();
        Key {
            k0,
            k1,
            offset: key.offset,
            call: key.call,
        }
    }
}

/// A launch's Philox key and first block, as one kernel argument: block `first + t` is thread
/// `t`'s.
#[derive(CubeLaunch, CubeType)]
struct Stream {
    k0: u32,
    k1: u32,
    first_lo: u32,
    first_hi: u32,
    call: u32,
}

impl Key {
    /// The kernel argument for a launch serving `lanes` elements per block, and how many lanes
    /// of its first block lie before element 0.
    fn stream(&self, lanes: u64) -> (StreamLaunch, u32) {
        let block = self.offset / lanes;
        let first = StreamLaunch::new(
            self.k0,
            self.k1,
            block as u32,
            (block >> 32) as u32,
            self.call,
        );
        (first, (self.offset % lanes) as u32)
    }
}

/// Threads for `n` elements served `lanes` per block, starting `shift` lanes into a block.
fn blocks_for(n: usize, lanes: usize, shift: u32) -> usize {
    (n + shift as usize).div_ceil(lanes)
}

/// The four words of one Philox block.
#[derive(CubeType, Clone, Copy)]
struct Block {
    w0: u32,
    w1: u32,
    w2: u32,
    w3: u32,
}

/// Philox4x32-10 (the same rounds as [`crate::rng::philox4x32_10`]).
#[cube]
fn philox(c0: u32, c1: u32, c2: u32, c3: u32, k0: u32, k1: u32) -> Block {
    let m0 = 0xD251_1F53u32;
    let m1 = 0xCD9E_8D57u32;
    let mut x0 = c0;
    let mut x1 = c1;
    let mut x2 = c2;
    let mut x3 = c3;
    let mut key0 = k0;
    let mut key1 = k1;
    #[unroll]
    for _ in 0..10u32 {
        let hi0 = x0.mul_hi(m0);
        let lo0 = x0 * m0;
        let hi1 = x2.mul_hi(m1);
        let lo1 = x2 * m1;
        let n0 = hi1 ^ x1 ^ key0;
        let n2 = hi0 ^ x3 ^ key1;
        x0 = n0;
        x1 = lo1;
        x2 = n2;
        x3 = lo0;
        key0 += 0x9E37_79B9u32;
        key1 += 0xBB67_AE85u32;
    }
    Block {
        w0: x0,
        w1: x1,
        w2: x2,
        w3: x3,
    }
}

/// Block `first + t` (a 64-bit index as two words) in slot `slot`.
#[cube]
fn block_at(t: u32, slot: u32, s: &Stream) -> Block {
    let lo = s.first_lo + t;
    let mut hi = s.first_hi;
    if lo < s.first_lo {
        hi += 1u32;
    }
    philox(lo, hi, s.call, slot, s.k0, s.k1)
}

/// Writes lane `lane` of thread `t`'s block (`lanes` per block, output starting `shift` lanes
/// into the first block) if it falls inside the output.
#[cube]
fn write_lane(out: &mut [f32], t: u32, lane: u32, lanes: u32, shift: u32, value: f32) {
    let g = t * lanes + lane;
    if g >= shift {
        let i = (g - shift) as usize;
        if i < out.len() {
            out[i] = value;
        }
    }
}

/// `[0, 1)`: the top 24 bits times 2^-24 ([`crate::rng::unit_f32`]).
#[cube]
fn unit(word: u32) -> f32 {
    f32::cast_from(word >> 8u32) * 5.960_464_5e-8f32
}

/// `(0, 1]` ([`crate::rng::unit_open_f32`]).
#[cube]
fn unit_open(word: u32) -> f32 {
    f32::cast_from((word >> 8u32) + 1u32) * 5.960_464_5e-8f32
}

/// `cos(2π u)` for a uniform `u`, as `cos` of an angle in `[-π, π)` (where WGSL bounds the
/// error of `cos`); the sign flip leaves the distribution unchanged.
#[cube]
fn cos_turn(u: f32) -> f32 {
    f32::cos((u - 0.5f32) * 6.283_185_5f32)
}

/// NaN, computed at run time as `0/0` from `x − x` (or `inf − inf`): WGSL rejects a NaN literal
/// or constant expression.
#[allow(clippy::eq_op)] // x − x and 0 / 0 are the point: a NaN made at run time.
#[cube]
fn runtime_nan(x: f32) -> f32 {
    let z = x - x;
    let mut zero = z;
    if !(z == 0.0f32) {
        zero = 0.0f32;
    }
    zero / zero
}

/// `e^x − 1`, with the Taylor series below `|x| = 1/2` ([`crate::special::expm1`]).
#[cube]
fn expm1(x: f32) -> f32 {
    let mut out = f32::exp(x) - 1.0f32;
    if f32::abs(x) < 0.5f32 {
        let mut p = 2.755_732e-7f32; // 1/10!
        p = p * x + 2.755_731_9e-6f32; // 1/9!
        p = p * x + 2.480_158_7e-5f32;
        p = p * x + 1.984_127e-4f32;
        p = p * x + 1.388_888_9e-3f32;
        p = p * x + 8.333_333e-3f32;
        p = p * x + 4.166_666_8e-2f32;
        p = p * x + 0.166_666_67f32;
        p = p * x + 0.5f32;
        p = p * x + 1.0f32;
        out = x * p;
    }
    out
}

/// Bailey's polar Student-T without rejection: `cos(2π u₂) · sqrt(ν · expm1(−(2/ν) ln u₁))`,
/// `u₁ ∈ (0, 1]`; the normal limit `sqrt(−2 ln u₁)` for `ν = +∞`; NaN unless `ν > 0`.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(ν > 0)` is true for NaN too, on purpose.
#[cube]
fn polar_t(nu: f32, w1: u32, w2: u32) -> f32 {
    let ln_u = f32::ln(unit_open(w1));
    let mut r2 = nu * expm1(ln_u * (-2.0f32 / nu));
    if nu > 3.0e38f32 {
        r2 = -2.0f32 * ln_u;
    }
    let mut t = f32::sqrt(r2) * cos_turn(unit(w2));
    if !(nu > 0.0f32) {
        t = runtime_nan(nu);
    }
    t
}

#[cube(launch)]
fn uniform_kernel(out: &mut [f32], threads: u32, stream: Stream, shift: u32) {
    let t = u32::cast_from(ABSOLUTE_POS);
    if t >= threads {
        terminate!();
    }
    let b = block_at(t, 0u32, &stream);
    write_lane(out, t, 0u32, 4u32, shift, unit(b.w0));
    write_lane(out, t, 1u32, 4u32, shift, unit(b.w1));
    write_lane(out, t, 2u32, 4u32, shift, unit(b.w2));
    write_lane(out, t, 3u32, 4u32, shift, unit(b.w3));
}

/// Box–Muller on words 0-1 (lanes 0, 1: cosine, sine) and 2-3 (lanes 2, 3).
#[cube(launch)]
fn normal_kernel(out: &mut [f32], threads: u32, stream: Stream, shift: u32) {
    let t = u32::cast_from(ABSOLUTE_POS);
    if t >= threads {
        terminate!();
    }
    let b = block_at(t, 0u32, &stream);
    let r0 = f32::sqrt(-2.0f32 * f32::ln(unit_open(b.w0)));
    let a0 = (unit(b.w1) - 0.5f32) * 6.283_185_5f32;
    let r1 = f32::sqrt(-2.0f32 * f32::ln(unit_open(b.w2)));
    let a1 = (unit(b.w3) - 0.5f32) * 6.283_185_5f32;
    write_lane(out, t, 0u32, 4u32, shift, r0 * f32::cos(a0));
    write_lane(out, t, 1u32, 4u32, shift, r0 * f32::sin(a0));
    write_lane(out, t, 2u32, 4u32, shift, r1 * f32::cos(a1));
    write_lane(out, t, 3u32, 4u32, shift, r1 * f32::sin(a1));
}

/// Two Student-T draws per block: lane 0 from words 0-1, lane 1 from words 2-3.
#[cube(launch)]
fn student_t_kernel(df: &[f32], out: &mut [f32], threads: u32, stream: Stream, shift: u32) {
    let t = u32::cast_from(ABSOLUTE_POS);
    if t >= threads {
        terminate!();
    }
    let b = block_at(t, 0u32, &stream);
    let g = t * 2u32;
    if g >= shift {
        let i = (g - shift) as usize;
        if i < out.len() {
            out[i] = polar_t(df[i], b.w0, b.w1);
        }
    }
    let i = (g + 1u32 - shift) as usize;
    if i < out.len() {
        out[i] = polar_t(df[i], b.w2, b.w3);
    }
}

/// Marsaglia & Tsang (2000) with the `α < 1` boost `Gamma(α + 1) · U^(1/α)`.
///
/// Attempt `a` of element `i` reads block `(i, call, a)`: words 0-1 make the normal (Box–Muller),
/// word 2 the acceptance uniform, word 3 of the accepted attempt the boost uniform (independent
/// of the acceptance, which reads words 0-2 only). Each attempt is accepted with probability
/// above 0.95, so a warp of 32 finishes in about three; the loop has no bound because a bound
/// would leave some element unfinished, but the chance of 20 rejections in a row is below 1e-26.
/// A two-kernel split (one attempt each, then the rejected elements from an atomic list) keeps
/// warps converged but measured slower on an H100 (docs/PERFORMANCE.md).
#[allow(unused_assignments)] // `accepted` and `w3` are written before the loop breaks.
#[cube(launch)]
fn gamma_kernel(alpha: &[f32], out: &mut [f32], stream: Stream) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let a = alpha[i];
    let mut result = runtime_nan(a);
    if a > 0.0f32 {
        let boost = a < 1.0f32;
        let mut shape = a;
        if boost {
            shape = a + 1.0f32;
        }
        let d = shape - 0.333_333_34f32;
        let c = 1.0f32 / f32::sqrt(9.0f32 * d);
        let index = u32::cast_from(i);
        let mut attempt = 0u32;
        let mut accepted = 0.0f32;
        let mut w3 = 0u32;
        loop {
            let b = block_at(index, attempt, &stream);
            let x = f32::sqrt(-2.0f32 * f32::ln(unit_open(b.w0))) * cos_turn(unit(b.w1));
            let v = 1.0f32 + c * x;
            if v > 0.0f32 {
                let v3 = v * v * v;
                let u = unit_open(b.w2);
                let x2 = x * x;
                if u < 1.0f32 - 0.0331f32 * x2 * x2
                    || f32::ln(u) < 0.5f32 * x2 + d * (1.0f32 - v3 + f32::ln(v3))
                {
                    accepted = d * v3;
                    w3 = b.w3;
                    break;
                }
            }
            attempt += 1u32;
        }
        result = accepted;
        if boost {
            result = accepted * f32::exp(f32::ln(unit_open(w3)) / a);
        }
        if a > 3.0e38f32 {
            result = a;
        }
        result = f32::max(result, 1.175_494_4e-38f32);
    }
    out[i] = result;
}

/// Toto's mixture draw, fused: element `(s, r)` of the `[samples, rows]` output reads row `r`'s
/// `K` logits (max, then the sum of `exp(l − max)`), picks the first component whose cumulative
/// weight exceeds `u · total` (word 0), then draws `loc[r, j] + scale[r, j] · T(df[r, j])` with
/// words 1-2 of the same block. No `[rows, K]` intermediate is written.
#[cube(launch)]
fn mixture_t_kernel(
    logits: &[f32],
    df: &[f32],
    loc: &[f32],
    scale: &[f32],
    out: &mut [f32],
    rows: u32,
    k: u32,
    stream: Stream,
) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let index = u32::cast_from(i);
    let base = (index % rows) * k;
    let b = block_at(index, 0u32, &stream);
    let mut max = logits[base as usize];
    for m in 1..k {
        max = f32::max(max, logits[(base + m) as usize]);
    }
    let mut total = 0.0f32;
    for m in 0..k {
        total += f32::exp(logits[(base + m) as usize] - max);
    }
    let target = unit(b.w0) * total;
    // The last component unless a cumulative weight passes the target first (rounding can
    // leave the running sum a hair under the total; a row without finite logits ends here).
    let mut j = k - 1u32;
    let mut found = false;
    let mut acc = 0.0f32;
    for m in 0..k {
        acc += f32::exp(logits[(base + m) as usize] - max);
        if !found && acc > target {
            j = m;
            found = true;
        }
    }
    let at = (base + j) as usize;
    out[i] = loc[at] + scale[at] * polar_t(df[at], b.w1, b.w2);
}

/// [`mixture_t_kernel`] with the logits staged in shared memory: the cube's 256 threads first
/// load the `256 × K` logits of their rows with coalesced reads (consecutive threads,
/// consecutive addresses), then each thread scans its own row from shared memory. Rows are
/// `(first row of the cube + t) mod rows`, so any `rows` and `samples` work. `K` is a
/// compile-time constant (one kernel per `K`), at most [`TILED_MAX_K`].
#[allow(clippy::erasing_op)] // `u * 0` makes a run-time variable of a compile-time constant.
#[cube(launch)]
fn mixture_t_tiled_kernel(
    logits: &[f32],
    df: &[f32],
    loc: &[f32],
    scale: &[f32],
    out: &mut [f32],
    rows: u32,
    stream: Stream,
    #[comptime] k: u32,
) {
    let u = UNIT_POS;
    let i0 = u32::cast_from(ABSOLUTE_POS) - u;
    let r0 = i0 % rows;
    let mut tile = Shared::<[f32]>::new_slice(comptime!((CUBE_DIM * k) as usize));
    for j in 0..k {
        let idx = j * CUBE_DIM + u;
        let row = (r0 + idx / k) % rows;
        tile[idx as usize] = logits[(row * k + idx % k) as usize];
    }
    sync_cube();
    let i = i0 + u;
    if (i as usize) < out.len() {
        let base = u * k;
        let b = block_at(i, 0u32, &stream);
        let mut max = tile[base as usize];
        for m in 1..k {
            max = f32::max(max, tile[(base + m) as usize]);
        }
        let mut total = 0.0f32;
        for m in 0..k {
            total += f32::exp(tile[(base + m) as usize] - max);
        }
        let target = unit(b.w0) * total;
        // A run-time variable (k is a compile-time constant here).
        let mut j = u * 0u32 + (k - 1u32);
        let mut found = false;
        let mut acc = 0.0f32;
        for m in 0..k {
            acc += f32::exp(tile[(base + m) as usize] - max);
            if !found && acc > target {
                j = m;
                found = true;
            }
        }
        let at = (((r0 + u) % rows) * k + j) as usize;
        out[i as usize] = loc[at] + scale[at] * polar_t(df[at], b.w1, b.w2);
    }
}

/// The largest `K` the tiled mixture kernel stages (48 KiB of shared memory per cube).
const TILED_MAX_K: usize = 48;

/// The native samplers as a burn backend extension (CubeCL runtimes, with or without fusion).
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait SamplerOps: burn::backend::Backend {
    /// `n` uniforms in `[0, 1)`; `anchor` names the device.
    #[fusion(dtype = anchor, shape = Shape::new([*n]))]
    fn philox_uniform(anchor: FloatTensor<Self>, n: usize, key: Key) -> FloatTensor<Self>;

    /// `n` standard normals.
    #[fusion(dtype = anchor, shape = Shape::new([*n]))]
    fn philox_normal(anchor: FloatTensor<Self>, n: usize, key: Key) -> FloatTensor<Self>;

    /// One standard Student-T per element of `df`.
    #[fusion(dtype = df, shape = df)]
    fn philox_student_t(df: FloatTensor<Self>, key: Key) -> FloatTensor<Self>;

    /// One `Gamma(alpha, 1)` per element of `alpha`.
    #[fusion(dtype = alpha, shape = alpha)]
    fn philox_gamma(alpha: FloatTensor<Self>, key: Key) -> FloatTensor<Self>;

    /// `[samples, rows]` draws of the Student-T mixture with mixing `logits` and components
    /// `df`, `loc`, `scale` (all `[rows, K]`).
    #[fusion(dtype = logits, shape = Shape::new([*samples, logits[0]]))]
    fn philox_mixture_t(
        logits: FloatTensor<Self>,
        df: FloatTensor<Self>,
        loc: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        samples: usize,
        key: Key,
    ) -> FloatTensor<Self>;
}

const CUBE_DIM: u32 = 256;

/// An output of `shape` on `like`'s device, and the launch grid for `threads` threads.
fn output(like: &CubeTensor, shape: Shape, threads: usize) -> (CubeTensor, CubeCount, CubeDim) {
    let out = empty_device_dtype(like.client.clone(), like.device.clone(), shape, DType::F32);
    let dim = CubeDim::new_1d(CUBE_DIM);
    let count = calculate_cube_count_elemwise(&like.client, threads.max(1), dim);
    (out, count, dim)
}

impl SamplerOps for CubeBackend {
    fn philox_uniform(anchor: CubeTensor, n: usize, key: Key) -> CubeTensor {
        let (stream, shift) = key.stream(4);
        let threads = blocks_for(n, 4, shift);
        let (out, count, dim) = output(&anchor, Shape::new([n]), threads);
        if n > 0 {
            uniform_kernel::launch(
                &anchor.client,
                count,
                dim,
                out.clone().into_buffer_arg(),
                threads as u32,
                stream,
                shift,
            );
        }
        out
    }

    fn philox_normal(anchor: CubeTensor, n: usize, key: Key) -> CubeTensor {
        let (stream, shift) = key.stream(4);
        let threads = blocks_for(n, 4, shift);
        let (out, count, dim) = output(&anchor, Shape::new([n]), threads);
        if n > 0 {
            normal_kernel::launch(
                &anchor.client,
                count,
                dim,
                out.clone().into_buffer_arg(),
                threads as u32,
                stream,
                shift,
            );
        }
        out
    }

    fn philox_student_t(df: CubeTensor, key: Key) -> CubeTensor {
        let df = into_contiguous(df);
        let n = df.meta.num_elements();
        let (stream, shift) = key.stream(2);
        let threads = blocks_for(n, 2, shift);
        let (out, count, dim) = output(&df, df.meta.shape().clone(), threads);
        if n > 0 {
            student_t_kernel::launch(
                &df.client,
                count,
                dim,
                df.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                threads as u32,
                stream,
                shift,
            );
        }
        out
    }

    fn philox_gamma(alpha: CubeTensor, key: Key) -> CubeTensor {
        let alpha = into_contiguous(alpha);
        let n = alpha.meta.num_elements();
        let (stream, _) = key.stream(1);
        let (out, count, dim) = output(&alpha, alpha.meta.shape().clone(), n);
        if n > 0 {
            gamma_kernel::launch(
                &alpha.client,
                count,
                dim,
                alpha.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                stream,
            );
        }
        out
    }

    fn philox_mixture_t(
        logits: CubeTensor,
        df: CubeTensor,
        loc: CubeTensor,
        scale: CubeTensor,
        samples: usize,
        key: Key,
    ) -> CubeTensor {
        let [logits, df, loc, scale] = [logits, df, loc, scale].map(into_contiguous);
        let (rows, k) = (logits.meta.shape()[0], logits.meta.shape()[1]);
        let (stream, _) = key.stream(1);
        let n = samples * rows;
        let (out, count, dim) = output(&logits, Shape::new([samples, rows]), n);
        if n > 0 && (1..=TILED_MAX_K).contains(&k) {
            mixture_t_tiled_kernel::launch(
                &logits.client,
                count,
                dim,
                logits.clone().into_buffer_arg(),
                df.clone().into_buffer_arg(),
                loc.clone().into_buffer_arg(),
                scale.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                rows as u32,
                stream,
                k as u32,
            );
        } else if n > 0 && k > 0 {
            mixture_t_kernel::launch(
                &logits.client,
                count,
                dim,
                logits.clone().into_buffer_arg(),
                df.clone().into_buffer_arg(),
                loc.clone().into_buffer_arg(),
                scale.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                rows as u32,
                k as u32,
                stream,
            );
        }
        out
    }
}

/// The tensor-level entry points used by [`Wgpu`](super::Wgpu). Callers check devices, shapes
/// and element counts (below 2^32) first; inputs are converted to `f32` if they are not.
pub(crate) fn uniform(anchor: Tensor<1>, n: usize, key: DrawKey) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::philox_uniform(f32_anchor(anchor), n, key.into()))
}

pub(crate) fn normal(anchor: Tensor<1>, n: usize, key: DrawKey) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::philox_normal(f32_anchor(anchor), n, key.into()))
}

pub(crate) fn student_t<const D: usize>(df: Tensor<D>, key: DrawKey) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::philox_student_t(f32_anchor(df), key.into()))
}

pub(crate) fn gamma<const D: usize>(alpha: Tensor<D>, key: DrawKey) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::philox_gamma(f32_anchor(alpha), key.into()))
}

pub(crate) fn mixture_t(
    logits: Tensor<2>,
    df: Tensor<2>,
    loc: Tensor<2>,
    scale: Tensor<2>,
    samples: usize,
    key: DrawKey,
) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::philox_mixture_t(
        f32_anchor(logits),
        f32_anchor(df),
        f32_anchor(loc),
        f32_anchor(scale),
        samples,
        key.into(),
    ))
}

fn f32_anchor<const D: usize>(t: Tensor<D>) -> burn::backend::DispatchTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(burn::tensor::FloatDType::F32)
    };
    t.into_dispatch()
}

// --- Toto's causal scaler in f64 ----------------------------------------------------------------

/// Doubles per series in the device state: `lo, hi, wsum, xsum, m2, mu_prev` (the fields of the
/// host `RowState`; `hi = 0` means no clamp: a real bound is at least `sqrt(0.1) · 10^-e > 0`).
pub(crate) const STATE: usize = 6;

/// The state before a series' first step: the clamp bounds from its first `end` steps (the
/// weighted mean and variance without Bessel correction, as toto-ts), zero sums.
#[cube(launch)]
fn scaler_start_kernel(
    x: &[f32],
    w: &[f32],
    state: &mut [f64],
    rows: u32,
    t: u32,
    end: u32,
    stabilize: u32,
    factor: f64,
) {
    let r = u32::cast_from(ABSOLUTE_POS);
    if r >= rows {
        terminate!();
    }
    let base = r * t;
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    if stabilize != 0u32 {
        let mut wg = 0.0f64;
        let mut sg = 0.0f64;
        for i in 0..end {
            let wi = f64::cast_from(w[(base + i) as usize]);
            wg += wi;
            sg += wi * f64::cast_from(x[(base + i) as usize]);
        }
        wg = f64::max(wg, 1.0f64);
        let mu = sg / wg;
        let mut ss = 0.0f64;
        for i in 0..end {
            let d = (f64::cast_from(x[(base + i) as usize]) - mu)
                * f64::cast_from(w[(base + i) as usize]);
            ss += d * d;
        }
        let sigma = f64::sqrt(ss / wg + 0.1f64);
        lo = f64::max(0.1f64, sigma / factor);
        hi = sigma * factor;
    }
    let s = (r * 6u32) as usize;
    state[s] = lo;
    state[s + 1] = hi;
    state[s + 2] = 0.0f64;
    state[s + 3] = 0.0f64;
    state[s + 4] = 0.0f64;
    state[s + 5] = 0.0f64;
}

/// Continues each series over `t` steps (whole patches of `patch`, the last may be short): the
/// running weighted mean and Bessel-corrected variance in f64, `σ = sqrt(var + 0.1)` clamped,
/// each patch's statistics at its last step written over the patch.
// `mu` and `sigma` are written by the first step before use; CubeCL has no `is_multiple_of`.
#[allow(unused_assignments, clippy::manual_is_multiple_of)]
#[cube(launch)]
fn scaler_extend_kernel(
    x: &[f32],
    w: &[f32],
    state_in: &[f64],
    state_out: &mut [f64],
    loc: &mut [f32],
    scale: &mut [f32],
    rows: u32,
    t: u32,
    patch: u32,
) {
    let r = u32::cast_from(ABSOLUTE_POS);
    if r >= rows {
        terminate!();
    }
    let base = r * t;
    let s = (r * 6u32) as usize;
    let lo = state_in[s];
    let hi = state_in[s + 1];
    let mut wsum = state_in[s + 2];
    let mut xsum = state_in[s + 3];
    let mut m2 = state_in[s + 4];
    let mut mu_prev = state_in[s + 5];
    let mut start = 0u32;
    let mut mu = 0.0f64;
    let mut sigma = 0.0f64;
    for i in 0..t {
        let xi = f64::cast_from(x[(base + i) as usize]);
        let wi = f64::cast_from(w[(base + i) as usize]);
        wsum += wi;
        xsum += wi * xi;
        let denom = f64::max(wsum, 1.0f64);
        mu = xsum / denom;
        m2 += wi * (xi - mu_prev) * (xi - mu);
        mu_prev = mu;
        let var = m2 / f64::max(denom - 1.0f64, 1.0f64);
        sigma = f64::sqrt(var + 0.1f64);
        if hi > 0.0f64 {
            sigma = f64::min(f64::max(sigma, f64::min(lo, hi)), hi);
        }
        if (i + 1u32) % patch == 0u32 || i + 1u32 == t {
            let m = f32::cast_from(mu);
            let sd = f32::cast_from(sigma);
            for j in start..i + 1u32 {
                loc[(base + j) as usize] = m;
                scale[(base + j) as usize] = sd;
            }
            start = i + 1u32;
        }
    }
    state_out[s] = lo;
    state_out[s + 1] = hi;
    state_out[s + 2] = wsum;
    state_out[s + 3] = xsum;
    state_out[s + 4] = m2;
    state_out[s + 5] = mu_prev;
}

fn start_meta(
    x: &burn::backend::fusion::custom::TensorSpec,
    _w: &burn::backend::fusion::custom::TensorSpec,
    _end: &usize,
    _stabilize: &bool,
    _factor: &f64,
) -> burn::backend::fusion::custom::TensorSpec {
    burn::backend::fusion::custom::TensorSpec::new(Shape::new([x.shape[0], STATE]), DType::F64)
}

/// Toto's scaler on CubeCL runtimes with f64 shaders: one thread per series.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait ScalerOps: burn::backend::Backend {
    /// The `[rows, STATE]` f64 state of the series `x`/`w` (`[rows, T]`), bounds from their
    /// first `end` steps when `stabilize`.
    #[fusion(meta = start_meta)]
    fn scaler_start(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        end: usize,
        stabilize: bool,
        factor: f64,
    ) -> FloatTensor<Self>;

    /// `(loc, scale, state')` of `x`/`w` (`[rows, T]`) continuing `state`.
    #[fusion(meta = |x, _w, state, _patch| (x.clone(), x.clone(), state.clone()))]
    fn scaler_extend(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        state: FloatTensor<Self>,
        patch: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// One thread per series.
fn per_row(like: &CubeTensor, rows: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(64);
    (
        calculate_cube_count_elemwise(&like.client, rows.max(1), dim),
        dim,
    )
}

impl ScalerOps for CubeBackend {
    fn scaler_start(
        x: CubeTensor,
        w: CubeTensor,
        end: usize,
        stabilize: bool,
        factor: f64,
    ) -> CubeTensor {
        let [x, w] = [x, w].map(into_contiguous);
        let (rows, t) = (x.meta.shape()[0], x.meta.shape()[1]);
        let state = empty_device_dtype(
            x.client.clone(),
            x.device.clone(),
            Shape::new([rows, STATE]),
            DType::F64,
        );
        if rows > 0 {
            let (count, dim) = per_row(&x, rows);
            scaler_start_kernel::launch(
                &x.client,
                count,
                dim,
                x.clone().into_buffer_arg(),
                w.clone().into_buffer_arg(),
                state.clone().into_buffer_arg(),
                rows as u32,
                t as u32,
                end.min(t) as u32,
                u32::from(stabilize),
                factor,
            );
        }
        state
    }

    fn scaler_extend(
        x: CubeTensor,
        w: CubeTensor,
        state: CubeTensor,
        patch: usize,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, w, state] = [x, w, state].map(into_contiguous);
        let (rows, t) = (x.meta.shape()[0], x.meta.shape()[1]);
        let new = |shape: Shape, dtype| {
            empty_device_dtype(x.client.clone(), x.device.clone(), shape, dtype)
        };
        let loc = new(Shape::new([rows, t]), DType::F32);
        let scale = new(Shape::new([rows, t]), DType::F32);
        let out = new(Shape::new([rows, STATE]), DType::F64);
        if rows > 0 {
            let (count, dim) = per_row(&x, rows);
            scaler_extend_kernel::launch(
                &x.client,
                count,
                dim,
                x.clone().into_buffer_arg(),
                w.clone().into_buffer_arg(),
                state.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                loc.clone().into_buffer_arg(),
                scale.clone().into_buffer_arg(),
                rows as u32,
                t as u32,
                patch.max(1) as u32,
            );
        }
        (loc, scale, out)
    }
}

/// The scaler state of `x`/`w` (`[rows, T]`, f32): `[rows, STATE]` in f64.
pub(crate) fn scaler_start(
    x: Tensor<2>,
    w: Tensor<2>,
    end: usize,
    stabilize: bool,
    factor: f64,
) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::scaler_start(
        f32_anchor(x),
        f32_anchor(w),
        end,
        stabilize,
        factor,
    ))
}

/// `(loc, scale, state')` continuing `state` over `x`/`w` (`[rows, T]`).
pub(crate) fn scaler_extend(
    x: Tensor<2>,
    w: Tensor<2>,
    state: Tensor<2>,
    patch: usize,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let (loc, scale, state) =
        Dispatch::scaler_extend(f32_anchor(x), f32_anchor(w), state.into_dispatch(), patch);
    (
        Tensor::from_dispatch(loc),
        Tensor::from_dispatch(scale),
        Tensor::from_dispatch(state),
    )
}
