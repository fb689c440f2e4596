//! Matrix products against weights packed once: `y = (x·W + b)·s` for the models' linear layers
//! on the CPU.
//!
//! burn-ndarray multiplies through `matrixmultiply`, which packs both operands into its blocked
//! layout on every call. A model's decode step multiplies a few dozen to a few hundred rows by
//! weights of millions of entries, so repacking the weight each time costs as much memory traffic
//! as the product reads. Two kernels avoid it:
//!
//! - **x86** (AVX-512F: `MR × NR` = 12 × 32, 24 accumulator registers; AVX2 + FMA: 6 × 16): the
//!   weight is packed once into column panels (`NR` columns, `K` rows each, contiguous) and a
//!   register-blocked micro-kernel computes `MR × NR` outputs at a time straight from the
//!   unpacked rows of `x`, the panels spread over rayon's threads.
//! - **portable** (every CPU): the `gemm` crate (burn-flex's GEMM), which has its own kernels
//!   for NEON, AVX2 and AVX-512 and packs what it needs per call.
//!
//! The sums run in f32; the result differs from an exact product by rounding only (the property
//! test compares every kernel with an f64 product over random shapes).

// Unsafe code: the x86 kernels' SIMD loads and stores through raw pointers into buffers whose
// lengths are checked before they run, and the `gemm` crate's pointer-based call.
#![allow(unsafe_code)]

use std::fmt;

use rayon::prelude::*;

use super::dispatch::Isa;

/// Which kernel a [`PackedMatrix`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmKernel {
    /// The crate's x86 micro-kernel for this instruction set.
    X86(Isa),
    /// The `gemm` crate's kernels (any CPU).
    Portable,
}

impl GemmKernel {
    /// Whether this CPU runs the kernel.
    pub fn runs_here(self) -> bool {
        match self {
            GemmKernel::X86(isa) => isa.runs_here(),
            GemmKernel::Portable => true,
        }
    }
}

/// A `[K, N]` weight, its bias and an output scale, prepared for [`PackedMatrix::apply`].
pub struct PackedMatrix {
    kernel: GemmKernel,
    k: usize,
    n: usize,
    /// x86: panel `p` holds columns `p·NR .. p·NR + NR` (zero past `N`), `K` rows of `NR`
    /// values. Portable: the weight row-major.
    values: Vec<f32>,
    /// x86: the bias per panel, zero past `N`. Portable: the bias, `N` values. Zeros without a
    /// bias.
    bias: Vec<f32>,
    scale: f32,
}

impl fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("kernel", &self.kernel)
            .field("k", &self.k)
            .field("n", &self.n)
            .field("scale", &self.scale)
            .finish_non_exhaustive()
    }
}

/// Rows and columns per x86 tile.
fn tile(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (12, 32),
        Isa::Avx2 => (6, 16),
    }
}

impl PackedMatrix {
    /// Packs `weight` (`[k, n]`, row-major) with `bias` (`[n]`) and the output scale for
    /// `kernel`; `None` if the lengths do not match or the CPU does not run the kernel.
    pub fn new(
        kernel: GemmKernel,
        weight: &[f32],
        [k, n]: [usize; 2],
        bias: Option<&[f32]>,
        scale: f32,
    ) -> Option<Self> {
        let lengths_fit =
            k > 0 && n > 0 && weight.len() == k * n && bias.is_none_or(|b| b.len() == n);
        if !lengths_fit || !kernel.runs_here() {
            return None;
        }
        let (values, bias) = match kernel {
            GemmKernel::X86(isa) => panels(tile(isa).1, weight, [k, n], bias),
            // The `gemm` crate packs per call; the weight stays row-major.
            GemmKernel::Portable => {
                let bias = bias.map_or_else(|| vec![0.0; n], <[f32]>::to_vec);
                (weight.to_vec(), bias)
            }
        };
        Some(PackedMatrix {
            kernel,
            k,
            n,
            values,
            bias,
            scale,
        })
    }

    /// `[K, N]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// The kernel the matrix was packed for.
    pub fn kernel(&self) -> GemmKernel {
        self.kernel
    }

    /// `(x·W + b)·s` for `x` of `rows × K` (row-major): `rows × N`, row-major.
    ///
    /// # Panics
    /// If `x` does not hold `rows × K` values (an internal invariant: callers pass the tensor
    /// they reshaped to `[rows, K]`).
    pub fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.k, "the input must be rows × K");
        if rows == 0 {
            return Vec::new();
        }
        match self.kernel {
            GemmKernel::X86(isa) => self.apply_x86(isa, x, rows),
            GemmKernel::Portable => self.apply_portable(x, rows),
        }
    }

    /// [`PackedMatrix::apply`] through the `gemm` crate: the output starts as the scaled bias,
    /// then `out ← out + s·(x·W)`.
    fn apply_portable(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let mut out: Vec<f32> = Vec::with_capacity(rows * n);
        for _ in 0..rows {
            out.extend(self.bias[..n].iter().map(|b| b * self.scale));
        }
        // SAFETY: `out` is `rows × n`, `x` `rows × k` (asserted by `apply`), the weight `k × n`
        // (checked by `new`), all row-major and live for the call: the strides below stay in
        // bounds. `gemm` writes `out` only.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                self.values.as_ptr(),
                1,
                n as isize,
                1.0,
                self.scale,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        out
    }

    /// [`PackedMatrix::apply`] on the x86 micro-kernel.
    fn apply_x86(&self, isa: Isa, x: &[f32], rows: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let (mr, nr) = tile(isa);
        let mut out = vec![0.0f32; rows * n];
        // Blocks of rows small enough that a panel (K·NR values, ≤ 400 KB at K = 3072) and the
        // block's rows stay in the core's L2 cache while the block is computed.
        let block = 16 * mr;
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
                panel: &self.values[p * k * nr..(p + 1) * k * nr],
                bias: &self.bias[p * nr..(p + 1) * nr],
                k,
                scale: self.scale,
                rows: count,
                width,
            };
            // SAFETY: each task writes rows `first..first + count`, columns
            // `p·NR..p·NR + width` of `out` (`rows × n`): disjoint between tasks, in bounds.
            let dest = unsafe { target.at(first * n + p * nr) };
            tile.run(isa, dest, n);
        });
        out
    }
}

/// `weight` in column panels of `nr`, and the bias padded to whole panels.
fn panels(
    nr: usize,
    weight: &[f32],
    [k, n]: [usize; 2],
    bias: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
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
    (panels, padded)
}

/// The output buffer, written by rayon's tasks at disjoint places.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the tasks of `PackedMatrix::apply_x86` write disjoint elements of one live buffer.
unsafe impl Send for SharedOut {}
// SAFETY: as `Send`: no two tasks touch one element.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` places in (a method, so that closures capture the whole wrapper).
    ///
    /// # Safety
    /// `offset` is within the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` within the buffer.
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
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn run(&self, isa: Isa, dest: *mut f32, ldc: usize) {
        let mr = tile(isa).0;
        let mut row = 0;
        while row < self.rows {
            let r = mr.min(self.rows - row);
            let a = &self.x[row * self.k..(row + r) * self.k];
            // The first tile meets the panel in memory (a model's weights are larger than the
            // caches) and prefetches ahead of its reads; later tiles find it in cache.
            let first = row == 0;
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `dest` points at this tile's first row of a buffer with `self.rows` rows
            // of stride `ldc ≥ width` left; `a` holds `r` rows of `k`; the panel `k × NR`; the
            // bias `NR`. Packing checked the CPU runs the kernel (`Isa::runs_here`).
            unsafe {
                let c = dest.add(row * ldc);
                match isa {
                    Isa::Avx512 => x86::avx512(r, first, a, self, c, ldc),
                    Isa::Avx2 => x86::avx2(r, first, a, self, c, ldc),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("x86 kernels are never packed off x86_64 (`Isa::runs_here`)");
            row += r;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Tile;

    /// Steps of `k` the first tile of a panel prefetches ahead of its reads.
    const AHEAD: usize = 16;

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
                    // SAFETY (each arm): the caller's contract is the tile's.
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
                // SAFETY: the bias holds 2·lanes values (asserted above).
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
                    // SAFETY: `at + 2·lanes ≤ k·NR`, the panel's length.
                    let (b0, b1) = unsafe { ($load(bp.add(at)), $load(bp.add(at + $lanes))) };
                    for r in 0..R {
                        // SAFETY: `r·k + step < R·k`, `a`'s length.
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
                    // SAFETY: row `r < R` of the `R` rows `c` points at.
                    let row = unsafe { c.add(r * ldc) };
                    if t.width == NR {
                        // SAFETY: a full panel: `NR` writable values at `row`.
                        unsafe {
                            $store(row, y0);
                            $store(row.add($lanes), y1);
                        }
                    } else {
                        // The last panel of a matrix whose width is not a multiple of NR.
                        let mut tmp = [0.0f32; NR];
                        // SAFETY: `tmp` holds `NR` values; `row` has `t.width < NR` writable.
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
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// Every kernel this CPU runs.
    fn kernels() -> Vec<GemmKernel> {
        [
            GemmKernel::X86(Isa::Avx512),
            GemmKernel::X86(Isa::Avx2),
            GemmKernel::Portable,
        ]
        .into_iter()
        .filter(|k| k.runs_here())
        .collect()
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

    /// Every kernel this CPU runs, on random shapes against the f64 product: 1-row inputs,
    /// widths that leave a partial panel, `K` off every tile size, several row blocks (past
    /// `16·MR` rows), with and without a bias, scaled or not. The bound is f32 rounding of a
    /// `K`-term sum: each product and addition rounds once, `|error| ≤ (K + 2)·ε·Σ|terms|`.
    #[test]
    fn every_kernel_matches_an_f64_product_over_random_shapes() {
        let mut rng = StdRng::seed_from_u64(31);
        let mut shapes = vec![[1, 1, 1], [1, 7, 33], [5, 7, 33], [13, 64, 31], [12, 3, 32]];
        for _ in 0..40 {
            let m = match rng.random_range(0..4) {
                0 => 1,
                1 => rng.random_range(2..13),
                2 => rng.random_range(13..200),
                _ => rng.random_range(190..260),
            };
            shapes.push([m, rng.random_range(1..300), rng.random_range(1..100)]);
        }
        for kernel in kernels() {
            for &[m, k, n] in &shapes {
                let mut uniform = |len: usize| -> Vec<f32> {
                    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
                };
                let (x, w, b) = (uniform(m * k), uniform(k * n), uniform(n));
                let biased = rng.random_range(0..2) == 0;
                let s = [1.0, 0.125, 0.3][rng.random_range(0..3)];
                let bias = biased.then_some(b.as_slice());
                let packed = PackedMatrix::new(kernel, &w, [k, n], bias, s).unwrap();
                let got = packed.apply(&x, m);
                let zeros = vec![0.0; n];
                let want = reference(&x, &w, bias.unwrap_or(&zeros), [m, k, n], s);
                assert_eq!(got.len(), want.len());
                for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
                    let row = i / n;
                    let col = i % n;
                    let terms: f64 = (0..k)
                        .map(|l| f64::from((x[row * k + l] * w[l * n + col]).abs()))
                        .sum::<f64>()
                        + f64::from(bias.map_or(0.0, |b| b[col].abs()));
                    let bound =
                        (k as f64 + 2.0) * f64::from(f32::EPSILON) * terms * f64::from(s) + 1e-30;
                    assert!(
                        (f64::from(g) - r).abs() <= bound,
                        "{kernel:?} {m}×{k}×{n} scale {s} bias {biased}: [{i}] {g} vs {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn packing_refuses_lengths_that_do_not_match() {
        for kernel in kernels() {
            let w: Vec<f32> = (0..12).map(|i| i as f32).collect();
            assert!(PackedMatrix::new(kernel, &w, [3, 5], None, 1.0).is_none());
            assert!(PackedMatrix::new(kernel, &w, [3, 4], Some(&w[..3]), 1.0).is_none());
            assert!(PackedMatrix::new(kernel, &w, [0, 4], None, 1.0).is_none());
            let packed = PackedMatrix::new(kernel, &w, [3, 4], None, 1.0).unwrap();
            assert_eq!(packed.dims(), [3, 4]);
            assert_eq!(packed.apply(&[], 0), Vec::<f32>::new());
        }
    }
}
