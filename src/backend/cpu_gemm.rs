//! Matrix products against weights packed once, on the CPU: `y = (x·W + b)·s` for the models'
//! linear layers when they run on [`NdArray`](super::NdArray).
//!
//! burn-ndarray multiplies through `matrixmultiply`, which packs both operands into its
//! blocked layout on every call. A model's decode step multiplies a few dozen to a few hundred
//! rows by weights of millions of entries, so repacking the weight each time costs as much
//! memory traffic as the product reads, and burn-ndarray reaches ~45–95 GFLOPS on 2 cores of an
//! AVX-512 Xeon where the cores can do ~350. Here the weight is packed once into column panels
//! (`NR` columns, `K` rows each, contiguous) and a register-blocked micro-kernel computes `MR × NR`
//! outputs at a time straight from the unpacked rows of `x`, the panels spread over rayon's
//! threads: ~190–220 GFLOPS at the models' shapes on the same 2 cores (docs/PERFORMANCE.md).
//!
//! Kernels: AVX-512F (`MR × NR` = 12 × 32, 24 accumulator registers) and AVX2 + FMA (6 × 16, 12
//! registers), chosen at run time. Elsewhere (other x86 CPUs, aarch64, wasm) [`PackedMatrix::new`]
//! returns `None` and the layer multiplies through burn as before. `TOTO_FALLBACK_CPU_GEMM=burn`
//! turns the packed path off (to compare, or to rule it out).
//!
//! Public only for the crate's benchmarks (`cargo bench --bench toto -- --cpu-matmul M,K,N`),
//! hidden from the docs: not part of the stable API.
//!
//! The sums run in f32 over `K` in order, starting from the bias; the result differs from
//! burn's product by rounding only (the tests compare both with an f64 reference).
//!
//! The same instruction sets run the layers' exponentials on the CPU (`exp_in_place`,
//! `silu_in_place`, `silu_gate`, crate-internal): one branch-free polynomial `exp`, compiled for
//! 16 or 8 lanes where the baseline x86-64 target has 4.

// The crate's third unsafe region: SIMD loads and stores through raw pointers into buffers
// whose lengths are checked before the kernels run (each `unsafe` block says which).
#![allow(unsafe_code)]

use std::fmt;
use std::sync::OnceLock;

use rayon::prelude::*;

/// The instruction set a kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 12 rows × 32 columns per tile.
    Avx512,
    /// AVX2 with FMA: 6 rows × 16 columns per tile.
    Avx2,
}

impl Isa {
    /// The best kernel this CPU runs, or `None` (also when `TOTO_FALLBACK_CPU_GEMM=burn`).
    pub fn detect() -> Option<Isa> {
        static ISA: OnceLock<Option<Isa>> = OnceLock::new();
        *ISA.get_or_init(|| {
            let off = std::env::var("TOTO_FALLBACK_CPU_GEMM").is_ok_and(|v| v == "burn");
            let isa = if off { None } else { Self::supported() };
            match (isa, off) {
                (Some(isa), _) => log::debug!("CPU linear layers: packed weights, {isa:?} kernel"),
                (None, true) => {
                    log::debug!("CPU linear layers: burn's matmul (TOTO_FALLBACK_CPU_GEMM=burn)")
                }
                (None, false) => {
                    log::debug!("CPU linear layers: burn's matmul (no AVX-512F or AVX2 + FMA)")
                }
            }
            isa
        })
    }

    /// The fastest kernel this CPU runs, whatever the environment says.
    fn supported() -> Option<Isa> {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.runs_here())
    }

    /// Whether this CPU has the kernel's instructions (an AVX-512 CPU runs both).
    #[cfg(target_arch = "x86_64")]
    pub fn runs_here(self) -> bool {
        match self {
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        }
    }

    /// Whether this CPU has the kernel's instructions: never off x86-64.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn runs_here(self) -> bool {
        false
    }

    /// Rows per tile.
    fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2 => 6,
        }
    }

    /// Columns per panel (two vector registers).
    fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 => 16,
        }
    }
}

/// A `[K, N]` weight, its bias and an output scale, packed for [`PackedMatrix::apply`].
pub struct PackedMatrix {
    isa: Isa,
    k: usize,
    n: usize,
    /// Panel `p` holds columns `p·NR .. p·NR + NR` (zero past `N`): `K` rows of `NR` values.
    panels: Vec<f32>,
    /// The bias per panel, zero past `N` (and zero without a bias).
    bias: Vec<f32>,
    scale: f32,
}

impl fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("isa", &self.isa)
            .field("k", &self.k)
            .field("n", &self.n)
            .field("scale", &self.scale)
            .finish_non_exhaustive()
    }
}

impl PackedMatrix {
    /// Packs `weight` (`[k, n]`, row-major) with `bias` (`[n]`) and the output scale, for the
    /// kernel [`Isa::detect`] picks; `None` where there is none, or if the lengths do not match.
    pub fn new(
        weight: &[f32],
        [k, n]: [usize; 2],
        bias: Option<&[f32]>,
        scale: f32,
    ) -> Option<Self> {
        Self::with_isa(Isa::detect()?, weight, [k, n], bias, scale)
    }

    /// As [`PackedMatrix::new`] for a given kernel (tests and benchmarks); `None` also where the
    /// CPU does not run it ([`Isa::runs_here`]).
    pub fn with_isa(
        isa: Isa,
        weight: &[f32],
        [k, n]: [usize; 2],
        bias: Option<&[f32]>,
        scale: f32,
    ) -> Option<Self> {
        let lengths_fit =
            k > 0 && n > 0 && weight.len() == k * n && bias.is_none_or(|b| b.len() == n);
        if !lengths_fit || !isa.runs_here() {
            return None;
        }
        let nr = isa.nr();
        let count = n.div_ceil(nr);
        let mut panels = vec![0.0; count * k * nr];
        panels
            .par_chunks_mut(k * nr)
            .enumerate()
            .for_each(|(p, panel)| {
                let (start, width) = (p * nr, nr.min(n - p * nr));
                for (row, out) in weight.chunks_exact(n).zip(panel.chunks_exact_mut(nr)) {
                    out[..width].copy_from_slice(&row[start..start + width]);
                }
            });
        let mut padded = vec![0.0; count * nr];
        if let Some(b) = bias {
            padded[..n].copy_from_slice(b);
        }
        Some(PackedMatrix {
            isa,
            k,
            n,
            panels,
            bias: padded,
            scale,
        })
    }

    /// `[K, N]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// `(x·W + b)·s` for `x` of `rows × K` (row-major): `rows × N`, row-major.
    ///
    /// # Panics
    /// If `x` does not hold `rows × K` values (an internal invariant: callers pass the tensor
    /// they reshaped to `[rows, K]`).
    pub fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.k, "the input must be rows × K");
        let (k, n, nr) = (self.k, self.n, self.isa.nr());
        let mut out = vec![0.0f32; rows * n];
        if rows == 0 {
            return out;
        }
        // Blocks of rows small enough that a panel (K·NR values, ≤ 400 KB at K = 3072) and the
        // block's rows stay in the core's L2 cache while the block is computed.
        let block = 16 * self.isa.mr();
        let blocks = rows.div_ceil(block);
        let panels = n.div_ceil(nr);
        let target = SharedOut(out.as_mut_ptr());
        (0..blocks * panels).into_par_iter().for_each(|task| {
            let (b, p) = (task / panels, task % panels);
            let first = b * block;
            let count = block.min(rows - first);
            let width = nr.min(n - p * nr);
            let tile = Tile {
                x: &x[first * k..(first + count) * k],
                panel: &self.panels[p * k * nr..(p + 1) * k * nr],
                bias: &self.bias[p * nr..(p + 1) * nr],
                k,
                scale: self.scale,
                rows: count,
                width,
            };
            // SAFETY: each task writes rows `first..first + count`, columns
            // `p·NR..p·NR + width` of `out` (`rows × n`): disjoint between tasks, in bounds.
            let dest = unsafe { target.at(first * n + p * nr) };
            tile.run(self.isa, dest, n);
        });
        out
    }
}

/// `x ↦ eˣ` over a slice, vectorised with the widest instructions [`Isa::detect`] allows.
pub(crate) fn exp_in_place(values: &mut [f32]) {
    map1(Isa::detect(), values, exp_lane);
}

/// SiLU in place, times `scale`: `x ↦ x·σ(x)·scale`, vectorised as [`exp_in_place`].
pub(crate) fn silu_in_place(values: &mut [f32], scale: f32) {
    map1(Isa::detect(), values, |x| x / (1.0 + exp_lane(-x)) * scale);
}

/// The gated unit `out = gate · x·σ(x)`, vectorised as [`exp_in_place`]. `out`, `gate` and
/// `x` have one length.
pub(crate) fn silu_gate(out: &mut [f32], gate: &[f32], x: &[f32]) {
    out.copy_from_slice(gate);
    map2(Isa::detect(), out, x, |g, x| g * (x / (1.0 + exp_lane(-x))));
}

/// A computation to compile for the kernels' instruction sets ([`vectorised`]). Implementations
/// mark `run` `#[inline(always)]`: it is then compiled inside the target-feature function, and
/// its loops vectorise to that width (a closure would stay a function of its own, compiled for
/// the baseline target).
pub(crate) trait Vectorise {
    type Args;
    type Out;
    fn run(args: Self::Args) -> Self::Out;
}

/// `K::run(args)` compiled for the widest instructions [`Isa::detect`] allows (16 or 8 lanes
/// instead of the baseline's 4).
#[inline(always)]
pub(crate) fn vectorised<K: Vectorise>(args: K::Args) -> K::Out {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        Some(isa) if isa.runs_here() => x86::run::<K>(isa, args),
        _ => K::run(args),
    }
}

/// `v ↦ f(v)` over `values` with `isa`'s loop (`None`, or an `isa` the CPU lacks: the
/// baseline target's, which vectorises too).
#[inline(always)]
fn map1(isa: Option<Isa>, values: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Some(isa) if isa.runs_here() => x86::map1(isa, values, f),
        _ => values.iter_mut().for_each(|v| *v = f(*v)),
    }
}

/// `o ↦ f(o, a)` over `out` and `a` together, as [`map1`].
#[inline(always)]
fn map2(isa: Option<Isa>, out: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Some(isa) if isa.runs_here() => x86::map2(isa, out, a, f),
        _ => out.iter_mut().zip(a).for_each(|(o, a)| *o = f(*o, *a)),
    }
}

/// `eˣ` without branches, for loops the compiler vectorises: Cody–Waite reduction
/// `x = n ln 2 + r` (`|r| ≤ ln 2 / 2`), `eʳ` by its Taylor polynomial to `r⁷` (relative error
/// below 10⁻⁸), and `2ⁿ` as two exponent-field products so that results down to the subnormals
/// come out right. `x > 88.72` is `+∞`, `x < −104` is 0, NaN stays NaN.
#[inline(always)]
fn exp_lane(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer (ties to even) held in the low mantissa bits,
    // read back by a bit cast (a float-to-int conversion would not vectorise: Rust's `as`
    // saturates lane by lane).
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(-104.0, 88.72);
    let t = c * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (c - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 / 2.0
        + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))));
    let er = 1.0 + (r + r * r * p);
    // n within [−150, 128] (NaN: garbage here, and `er` carries the NaN).
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let (n1, n2) = (n >> 1, n - (n >> 1));
    let two = |e: i32| f32::from_bits((e.wrapping_add(127) as u32) << 23);
    let y = er * two(n1) * two(n2);
    if x > 88.72 { f32::INFINITY } else { y }
}

/// The output buffer, written by rayon's tasks at disjoint places.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the tasks of `PackedMatrix::apply` write disjoint elements of one live buffer.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` places in (a method, so that closures capture the whole wrapper).
    ///
    /// # Safety
    /// `offset` is within the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// One task: `rows` rows of `x` against one panel.
struct Tile<'a> {
    x: &'a [f32],
    panel: &'a [f32],
    bias: &'a [f32],
    k: usize,
    scale: f32,
    rows: usize,
    width: usize,
}

impl Tile<'_> {
    /// Computes the tile into `dest` (row stride `ldc`), `MR` rows at a time.
    fn run(&self, isa: Isa, dest: *mut f32, ldc: usize) {
        let mr = isa.mr();
        let mut row = 0;
        while row < self.rows {
            let r = mr.min(self.rows - row);
            let a = &self.x[row * self.k..(row + r) * self.k];
            // SAFETY: `dest` points at this tile's first row of a buffer with `self.rows` rows
            // of stride `ldc ≥ width` left; `a` holds `r` rows of `k`; the panel `k × NR`; the
            // bias `NR`. Packing checked the CPU runs the kernel (`Isa::runs_here`).
            unsafe {
                let c = dest.add(row * ldc);
                // The first tile meets the panel in memory (a model's weights are larger than
                // the caches) and prefetches ahead of its reads; later tiles find it in cache.
                let first = row == 0;
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => x86::avx512(r, first, a, self, c, ldc),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => x86::avx2(r, first, a, self, c, ldc),
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => unreachable!("no kernel is detected off x86_64"),
                }
            }
            row += r;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Isa, Tile, Vectorise};

    /// Steps of `k` the first tile of a panel prefetches ahead of its reads.
    const AHEAD: usize = 16;

    /// [`super::map1`] compiled for `isa`'s instructions (a branch-free `f` vectorises to
    /// their width). The caller checked `isa.runs_here()`.
    pub(super) fn map1(isa: Isa, values: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
        // SAFETY: the CPU has the instructions (checked by the caller, as `Isa::runs_here`).
        unsafe {
            match isa {
                Isa::Avx512 => map1_512(values, f),
                Isa::Avx2 => map1_256(values, f),
            }
        }
    }

    /// [`super::map2`] compiled for `isa`'s instructions, as [`map1`].
    pub(super) fn map2(isa: Isa, out: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
        // SAFETY: as `map1`.
        unsafe {
            match isa {
                Isa::Avx512 => map2_512(out, a, f),
                Isa::Avx2 => map2_256(out, a, f),
            }
        }
    }

    /// [`super::vectorised`]: `K::run` compiled for `isa`. The caller checked
    /// `isa.runs_here()`.
    pub(super) fn run<K: Vectorise>(isa: Isa, args: K::Args) -> K::Out {
        // SAFETY: as `map1`.
        unsafe {
            match isa {
                Isa::Avx512 => run512::<K>(args),
                Isa::Avx2 => run256::<K>(args),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    fn run512<K: Vectorise>(args: K::Args) -> K::Out {
        K::run(args)
    }

    #[target_feature(enable = "avx2,fma")]
    fn run256<K: Vectorise>(args: K::Args) -> K::Out {
        K::run(args)
    }

    #[target_feature(enable = "avx512f")]
    fn map1_512(values: &mut [f32], f: impl Fn(f32) -> f32) {
        values.iter_mut().for_each(|v| *v = f(*v));
    }

    #[target_feature(enable = "avx2,fma")]
    fn map1_256(values: &mut [f32], f: impl Fn(f32) -> f32) {
        values.iter_mut().for_each(|v| *v = f(*v));
    }

    #[target_feature(enable = "avx512f")]
    fn map2_512(out: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32) {
        out.iter_mut().zip(a).for_each(|(o, a)| *o = f(*o, *a));
    }

    #[target_feature(enable = "avx2,fma")]
    fn map2_256(out: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32) {
        out.iter_mut().zip(a).for_each(|(o, a)| *o = f(*o, *a));
    }

    /// One kernel per instruction set, from one body: `$dispatch(r, …)` runs the `$tile::<r>`
    /// kernel, `r ≤ $mr` rows × two `$lanes`-lane registers of columns. Each step of `k`
    /// broadcasts `a[r, k]` for every row against the panel's two vectors; the accumulators
    /// start from the bias and are scaled at the store.
    macro_rules! kernel {
        ($dispatch:ident, $tile:ident, $feature:literal, $lanes:literal, $mr:literal, [$($r:literal)*],
         $load:ident, $store:ident, $set1:ident, $fmadd:ident, $mul:ident) => {
            /// Runs the kernel of height `r`.
            ///
            /// # Safety
            #[doc = concat!("As [`", stringify!($tile), "`].")]
            pub(super) unsafe fn $dispatch(
                r: usize,
                prefetch: bool,
                a: &[f32],
                t: &Tile<'_>,
                c: *mut f32,
                ldc: usize,
            ) {
                match (r, prefetch) {
                    $(($r, false) => unsafe { $tile::<$r, false>(a, t, c, ldc) },)*
                    $(($r, true) => unsafe { $tile::<$r, true>(a, t, c, ldc) },)*
                    _ => unreachable!(concat!("at most ", $mr, " rows per tile")),
                }
            }

            /// `R` rows of the tile.
            ///
            /// # Safety
            #[doc = concat!("The CPU has ", $feature, "; `a` holds `R` rows of `t.k`; `t.panel` `t.k × ",
                stringify!($lanes), "·2` and `t.bias` ", stringify!($lanes), "·2 values; `c` points at `R` \
                rows of stride `ldc` with `t.width` writable values.")]
            #[target_feature(enable = $feature)]
            unsafe fn $tile<const R: usize, const PREFETCH: bool>(
                a: &[f32],
                t: &Tile<'_>,
                c: *mut f32,
                ldc: usize,
            ) {
                const NR: usize = 2 * $lanes;
                let k = t.k;
                debug_assert!(a.len() == R * k && t.panel.len() == k * NR && t.bias.len() == NR);
                let (ap, bp, biasp) = (a.as_ptr(), t.panel.as_ptr(), t.bias.as_ptr());
                // SAFETY (this block and the loops): every offset is within the lengths above.
                let (bias0, bias1) = unsafe { ($load(biasp), $load(biasp.add($lanes))) };
                let mut lo = [bias0; R];
                let mut hi = [bias1; R];
                for step in 0..k {
                    let at = step * NR;
                    if PREFETCH {
                        // The panel `AHEAD` steps on: a hint, never a read (past the panel's
                        // end included).
                        let ahead = bp.wrapping_add(at + AHEAD * NR) as *const i8;
                        _mm_prefetch::<_MM_HINT_T0>(ahead);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(2 * NR));
                    }
                    let (b0, b1) = unsafe { ($load(bp.add(at)), $load(bp.add(at + $lanes))) };
                    for r in 0..R {
                        let x = $set1(unsafe { *ap.add(r * k + step) });
                        lo[r] = $fmadd(x, b0, lo[r]);
                        hi[r] = $fmadd(x, b1, hi[r]);
                    }
                }
                let scale = $set1(t.scale);
                for r in 0..R {
                    let (y0, y1) = match t.scale == 1.0 {
                        true => (lo[r], hi[r]),
                        false => ($mul(lo[r], scale), $mul(hi[r], scale)),
                    };
                    let row = unsafe { c.add(r * ldc) };
                    if t.width == NR {
                        unsafe {
                            $store(row, y0);
                            $store(row.add($lanes), y1);
                        }
                    } else {
                        // The last panel of a matrix whose width is not a multiple of NR.
                        let mut tmp = [0.0f32; NR];
                        unsafe {
                            $store(tmp.as_mut_ptr(), y0);
                            $store(tmp.as_mut_ptr().add($lanes), y1);
                            std::ptr::copy_nonoverlapping(tmp.as_ptr(), row, t.width);
                        }
                    }
                }
            }
        };
    }

    kernel!(avx512, tile512, "avx512f", 16, 12, [1 2 3 4 5 6 7 8 9 10 11 12],
        _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_mul_ps);
    kernel!(avx2, tile256, "avx2,fma", 8, 6, [1 2 3 4 5 6],
        _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_mul_ps);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exp_this_cpu_runs_matches_libm() {
        // f64's exp is the oracle; 2001 points over the range a shifted logit or a SiLU input
        // takes, the edges of f32's range, and the special values.
        let mut xs: Vec<f32> = (0..2001).map(|i| -100.0 + 0.1 * i as f32).collect();
        xs.extend([
            -103.9,
            -87.5,
            -1e-30,
            0.0,
            1e-30,
            88.7,
            88.73,
            1e4,
            f32::NEG_INFINITY,
        ]);
        let isas = [None, Some(Isa::Avx512), Some(Isa::Avx2)];
        for isa in isas.into_iter().filter(|i| i.is_none_or(Isa::runs_here)) {
            let mut got = xs.clone();
            map1(isa, &mut got, exp_lane);
            for (&x, &g) in xs.iter().zip(&got) {
                let want = f64::from(x).exp();
                let ulp = f64::from(f32::EPSILON) * want.max(f64::from(f32::MIN_POSITIVE));
                // Subnormal results: within one subnormal step (2^-149) instead.
                let tol = (4.0 * ulp).max(1.5e-45);
                let ok = match want > f64::from(f32::MAX) {
                    true => g == f32::INFINITY,
                    false => (f64::from(g) - want).abs() <= tol,
                };
                assert!(ok, "{isa:?}: exp({x}) = {g}, want {want}");
            }
            let mut nan = [f32::NAN; 9];
            map1(isa, &mut nan, exp_lane);
            assert!(
                nan.iter().all(|v| v.is_nan()),
                "{isa:?}: exp(NaN) = {nan:?}"
            );
        }
    }

    /// `(x·W + b)·s` in f64, the reference.
    fn reference(x: &[f32], w: &[f32], b: &[f32], [m, k, n]: [usize; 3], s: f32) -> Vec<f64> {
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|l| f64::from(x[i * k + l]) * f64::from(w[l * n + j]))
                    .sum();
                y[i * n + j] = (dot + f64::from(b[j])) * f64::from(s);
            }
        }
        y
    }

    /// Deterministic values in [-1, 1) (a multiplicative hash), no RNG needed.
    fn values(len: usize, salt: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i + salt).wrapping_mul(2_654_435_761) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Every kernel this CPU runs, on shapes with partial tiles, partial panels and several row
    /// blocks, against the f64 reference: within f32 rounding of a `K`-term sum.
    #[test]
    fn packed_products_match_an_f64_reference() {
        let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|isa| isa.runs_here())
            .collect();
        if isas.is_empty() {
            eprintln!("no packed kernel on this CPU: nothing to compare");
            return;
        }
        for isa in isas {
            for &[m, k, n] in &[
                [1, 1, 1],
                [5, 7, 33],
                [13, 64, 31],
                [200, 96, 70],
                [12, 3, 32],
            ] {
                let (x, w, b) = (values(m * k, 1), values(k * n, 2), values(n, 3));
                for s in [1.0, 0.125, 0.3] {
                    let packed = PackedMatrix::with_isa(isa, &w, [k, n], Some(&b), s).unwrap();
                    let got = packed.apply(&x, m);
                    let want = reference(&x, &w, &b, [m, k, n], s);
                    for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
                        // Each product and sum rounds once: |error| ≤ K·ε·Σ|terms|, loosely.
                        let bound = 1e-6 * (k as f64 + 1.0) * (1.0 + r.abs());
                        assert!(
                            (f64::from(g) - r).abs() <= bound,
                            "{isa:?} {m}×{k}×{n} scale {s}: [{i}] {g} vs {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packing_refuses_lengths_that_do_not_match() {
        let Some(isa) = Isa::supported() else {
            eprintln!("no packed kernel on this CPU: every packing is refused");
            return;
        };
        let w = values(12, 0);
        assert!(PackedMatrix::with_isa(isa, &w, [3, 5], None, 1.0).is_none());
        assert!(PackedMatrix::with_isa(isa, &w, [3, 4], Some(&w[..3]), 1.0).is_none());
        assert!(PackedMatrix::with_isa(isa, &w, [0, 4], None, 1.0).is_none());
        let packed = PackedMatrix::with_isa(isa, &w, [3, 4], None, 1.0).unwrap();
        assert_eq!(packed.dims(), [3, 4]);
        assert_eq!(packed.apply(&[], 0), Vec::<f32>::new());
    }
}
