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
//!
//! A weight may also be kept in 16 bits ([`WeightFormat`]: IEEE half or bfloat16, rounded once
//! when packed) and widened to f32 as the kernel loads it: the products of few rows (a decode
//! step, a streaming session's update) stream their weights from memory, and half the bytes
//! make them 1.15–1.8× as fast, while the arithmetic stays f32. The x86 kernels widen in
//! registers (`vcvtph2ps` for f16, a 16-bit shift for bf16). The portable kernel (the `gemm`
//! crate, f32 only) multiplies the same rounded values kept in f32: the same results, without
//! the speed (a NEON kernel that widens in registers would bring it to aarch64).

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

/// How a [`PackedMatrix`] stores its weight; the products compute in f32 from it either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WeightFormat {
    /// f32: the weight as given.
    #[default]
    F32,
    /// IEEE half precision (11 significant bits, finite up to 65504), rounded to nearest.
    F16,
    /// bfloat16 (8 significant bits, f32's range), rounded to nearest.
    Bf16,
}

impl WeightFormat {
    /// `values` rounded to this format, as the bits the kernels read (`F32`: unused), through
    /// the `half` crate's slice conversion (F16C where the CPU has it).
    fn round(self, values: &[f32], bits: &mut [u16]) {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        match self {
            WeightFormat::Bf16 => bits
                .reinterpret_cast_mut::<half::bf16>()
                .convert_from_f32_slice(values),
            WeightFormat::F16 | WeightFormat::F32 => {
                bits.reinterpret_cast_mut::<half::f16>()
                    .convert_from_f32_slice(values);
            }
        }
    }

    /// `value` rounded to this format, back in f32.
    fn widened(self, value: f32) -> f32 {
        match self {
            WeightFormat::F32 => value,
            WeightFormat::F16 => half::f16::from_f32(value).to_f32(),
            WeightFormat::Bf16 => half::bf16::from_f32(value).to_f32(),
        }
    }

    /// Whether every value of `weight` has a finite value in this format (f16 ends at 65504).
    fn holds(self, weight: &[f32]) -> bool {
        match self {
            WeightFormat::F16 => weight
                .iter()
                .all(|w| !w.is_finite() || w.abs() <= f32::from(half::f16::MAX)),
            WeightFormat::F32 | WeightFormat::Bf16 => true,
        }
    }
}

/// A packed weight's values in its format.
enum Values {
    F32(Vec<f32>),
    /// F16 or Bf16 bits.
    Half(Vec<u16>),
}

/// A `[K, N]` weight, its bias and an output scale, prepared for [`PackedMatrix::apply`].
pub struct PackedMatrix {
    kernel: GemmKernel,
    /// The format asked for; `format` is F32 instead where the weight does not fit it.
    asked: WeightFormat,
    format: WeightFormat,
    k: usize,
    n: usize,
    /// x86: panel `p` holds columns `p·NR .. p·NR + NR` (zero past `N`), `K` rows of `NR`
    /// values. Portable: the weight row-major.
    values: Values,
    /// x86: the bias per panel, zero past `N`. Portable: the bias, `N` values. Zeros without a
    /// bias.
    bias: Vec<f32>,
    scale: f32,
}

impl fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("kernel", &self.kernel)
            .field("format", &self.format)
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
    /// `kernel`, the weight kept in `format` (rounded to nearest once; the bias stays f32);
    /// `None` if the lengths do not match or the CPU does not run the kernel. A weight with a
    /// value beyond the format's finite range (f16: 65504), which would become an infinity, is
    /// kept in f32 instead: [`PackedMatrix::format`] says which, [`PackedMatrix::asked`] what
    /// was asked.
    pub fn new(
        kernel: GemmKernel,
        format: WeightFormat,
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
        let asked = format;
        let format = match format.holds(weight) {
            true => format,
            false => {
                log::debug!("a weight beyond {format:?}'s range ({k} × {n}) is kept in f32");
                WeightFormat::F32
            }
        };
        let bias = match kernel {
            GemmKernel::X86(isa) => padded_bias(tile(isa).1, bias, n),
            GemmKernel::Portable => bias.map_or_else(|| vec![0.0; n], <[f32]>::to_vec),
        };
        // The `gemm` crate packs per call: the portable weight stays row-major (one panel of
        // width `n`).
        let nr = match kernel {
            GemmKernel::X86(isa) => tile(isa).1,
            GemmKernel::Portable => n,
        };
        let values = match (format, kernel) {
            (WeightFormat::F32, _) => {
                Values::F32(panels(nr, weight, [k, n], |w, o| o.copy_from_slice(w), 0.0))
            }
            // The `gemm` crate multiplies f32 only: the weight is rounded to the format (the
            // same values as on x86) and kept widened.
            (half, GemmKernel::Portable) => {
                let round = |w: &[f32], o: &mut [f32]| {
                    o.iter_mut().zip(w).for_each(|(o, &w)| *o = half.widened(w));
                };
                Values::F32(panels(nr, weight, [k, n], round, 0.0))
            }
            (half, GemmKernel::X86(_)) => {
                Values::Half(panels(nr, weight, [k, n], |w, o| half.round(w, o), 0))
            }
        };
        Some(PackedMatrix {
            kernel,
            asked,
            format,
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

    /// The format the weight is kept in.
    #[cfg(any(test, feature = "internals"))]
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// The format [`PackedMatrix::new`] was asked for ([`PackedMatrix::format`] is f32 instead
    /// where the weight did not fit it).
    pub fn asked(&self) -> WeightFormat {
        self.asked
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
        let n = self.n;
        let mut out: Vec<f32> = Vec::with_capacity(rows * n);
        for _ in 0..rows {
            out.extend(self.bias[..n].iter().map(|b| b * self.scale));
        }
        match &self.values {
            // SAFETY: `out` is `rows × n`, `x` `rows × k` (asserted by `apply`), the weight
            // `k × n` (checked by `new`), all row-major and live for the call: the strides below
            // stay in bounds. `gemm` writes `out` only.
            Values::F32(w) => unsafe {
                gemm::gemm(
                    rows,
                    n,
                    self.k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    true,
                    x.as_ptr(),
                    1,
                    self.k as isize,
                    w.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    self.scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                );
            },
            // The portable kernel keeps 16-bit weights' values in f32 (`new`).
            Values::Half(_) => unreachable!("portable weights are f32"),
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
            let span = p * k * nr..(p + 1) * k * nr;
            let panel = match (&self.values, self.format) {
                (Values::F32(v), _) => Panel::F32(&v[span]),
                (Values::Half(v), WeightFormat::Bf16) => Panel::Bf16(&v[span]),
                (Values::Half(v), _) => Panel::F16(&v[span]),
            };
            let tile = Tile {
                x: &x[first * k..(first + count) * k],
                panel,
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

/// `weight` in column panels of `nr` (zero past `n`), each row's part converted by `convert`
/// (source, destination of the same length).
fn panels<T: Copy + Send + Sync>(
    nr: usize,
    weight: &[f32],
    [k, n]: [usize; 2],
    convert: impl Fn(&[f32], &mut [T]) + Sync,
    zero: T,
) -> Vec<T> {
    let count = n.div_ceil(nr);
    let mut panels = vec![zero; count * k * nr];
    panels
        .par_chunks_mut(k * nr)
        .enumerate()
        .for_each(|(p, panel)| {
            let (start, width) = (p * nr, nr.min(n - p * nr));
            for (row, out) in weight.chunks_exact(n).zip(panel.chunks_exact_mut(nr)) {
                convert(&row[start..start + width], &mut out[..width]);
            }
        });
    panels
}

/// The bias padded with zeros to whole panels of `nr` (zeros without a bias).
fn padded_bias(nr: usize, bias: Option<&[f32]>, n: usize) -> Vec<f32> {
    let mut padded = vec![0.0; n.div_ceil(nr) * nr];
    if let Some(b) = bias {
        padded[..n].copy_from_slice(b);
    }
    padded
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

/// One x86 panel of `K × NR` weights, in its format.
#[derive(Clone, Copy)]
enum Panel<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    Bf16(&'a [u16]),
}

impl Panel<'_> {
    /// The panel's values.
    #[cfg(target_arch = "x86_64")]
    fn len(self) -> usize {
        match self {
            Panel::F32(v) => v.len(),
            Panel::F16(v) | Panel::Bf16(v) => v.len(),
        }
    }

    /// Its first value's address.
    #[cfg(target_arch = "x86_64")]
    fn start(self) -> *const u8 {
        match self {
            Panel::F32(v) => v.as_ptr().cast(),
            Panel::F16(v) | Panel::Bf16(v) => v.as_ptr().cast(),
        }
    }
}

/// The x86 kernels' `FMT` parameter: how a panel's values are stored.
#[cfg(target_arch = "x86_64")]
const FMT_F32: u8 = 0;
#[cfg(target_arch = "x86_64")]
const FMT_F16: u8 = 1;
#[cfg(target_arch = "x86_64")]
const FMT_BF16: u8 = 2;

/// One task: `rows` rows of `x` against one panel.
struct Tile<'a> {
    x: &'a [f32],
    panel: Panel<'a>,
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
                match (isa, self.panel) {
                    (Isa::Avx512, Panel::F32(_)) => {
                        x86::avx512::<FMT_F32>(r, first, a, self, c, ldc)
                    }
                    (Isa::Avx512, Panel::F16(_)) => {
                        x86::avx512::<FMT_F16>(r, first, a, self, c, ldc)
                    }
                    (Isa::Avx512, Panel::Bf16(_)) => {
                        x86::avx512::<FMT_BF16>(r, first, a, self, c, ldc)
                    }
                    (Isa::Avx2, Panel::F32(_)) => x86::avx2::<FMT_F32>(r, first, a, self, c, ldc),
                    (Isa::Avx2, Panel::F16(_)) => x86::avx2::<FMT_F16>(r, first, a, self, c, ldc),
                    (Isa::Avx2, Panel::Bf16(_)) => x86::avx2::<FMT_BF16>(r, first, a, self, c, ldc),
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

    use super::{FMT_F16, FMT_F32, Tile};

    /// Steps of `k` the first tile of a panel prefetches ahead of its reads.
    const AHEAD: usize = 16;

    /// One kernel per instruction set, from one body: `$dispatch(r, …)` runs the `$tile::<r>`
    /// kernel, `r ≤ $mr` rows × two `$lanes`-lane registers of columns. Each step of `k`
    /// broadcasts `a[r, k]` for every row against the panel's two vectors (widened to f32 as
    /// they are loaded when the panel is 16-bit: `$cvtph` for f16; bf16 is the top half of an
    /// f32, so zero-extended and shifted); the accumulators start from the bias and are scaled
    /// at the store.
    macro_rules! kernel {
        ($dispatch:ident, $tile:ident, $feature:literal, $lanes:literal, $mr:literal, [$($r:literal)*],
         $load:ident, $store:ident, $set1:ident, $fmadd:ident, $mul:ident,
         $half:ty, $loadh:ident, $cvtph:ident, $cvtu16:ident, $slli:ident, $cast:ident) => {
            /// Runs the kernel of height `r` for panels in format `FMT`.
            ///
            /// # Safety
            #[doc = concat!("As [`", stringify!($tile), "`].")]
            pub(super) unsafe fn $dispatch<const FMT: u8>(
                r: usize,
                prefetch: bool,
                a: &[f32],
                t: &Tile<'_>,
                c: *mut f32,
                ldc: usize,
            ) {
                match (r, prefetch) {
                    // SAFETY (each arm): the caller's contract is the tile's.
                    $(($r, false) => unsafe { $tile::<$r, false, FMT>(a, t, c, ldc) },)*
                    $(($r, true) => unsafe { $tile::<$r, true, FMT>(a, t, c, ldc) },)*
                    _ => unreachable!(concat!("at most ", $mr, " rows per tile")),
                }
            }

            /// `R` rows of the tile, its panel in format `FMT`.
            ///
            /// # Safety
            #[doc = concat!("The CPU has ", $feature, "; `a` holds `R` rows of `t.k`; `t.panel` `t.k × ",
                stringify!($lanes), "·2` values in format `FMT` and `t.bias` ", stringify!($lanes),
                "·2; `c` points at `R` rows of stride `ldc` with `t.width` writable values.")]
            #[target_feature(enable = $feature)]
            unsafe fn $tile<const R: usize, const PREFETCH: bool, const FMT: u8>(
                a: &[f32],
                t: &Tile<'_>,
                c: *mut f32,
                ldc: usize,
            ) {
                const NR: usize = 2 * $lanes;
                let size = if FMT == FMT_F32 { 4 } else { 2 };
                let k = t.k;
                debug_assert!(a.len() == R * k && t.panel.len() == k * NR && t.bias.len() == NR);
                let (ap, biasp) = (a.as_ptr(), t.bias.as_ptr());
                let bp = t.panel.start();
                // SAFETY: the bias holds 2·lanes values (asserted above).
                let (bias0, bias1) = unsafe { ($load(biasp), $load(biasp.add($lanes))) };
                let mut lo = [bias0; R];
                let mut hi = [bias1; R];
                for step in 0..k {
                    let at = step * NR;
                    if PREFETCH {
                        // The panel `AHEAD` steps on: a hint, never a read (past the panel's
                        // end included).
                        let ahead = bp.wrapping_add((at + AHEAD * NR) * size) as *const i8;
                        _mm_prefetch::<_MM_HINT_T0>(ahead);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                    }
                    // SAFETY: `at + 2·lanes ≤ k·NR`, the panel's length in values of `size`
                    // bytes.
                    let (b0, b1) = unsafe {
                        if FMT == FMT_F32 {
                            let p = bp.cast::<f32>().add(at);
                            ($load(p), $load(p.add($lanes)))
                        } else {
                            let p = bp.cast::<u16>().add(at);
                            let (h0, h1) = (
                                $loadh(p.cast::<$half>()),
                                $loadh(p.add($lanes).cast::<$half>()),
                            );
                            if FMT == FMT_F16 {
                                ($cvtph(h0), $cvtph(h1))
                            } else {
                                (
                                    $cast($slli::<16>($cvtu16(h0))),
                                    $cast($slli::<16>($cvtu16(h1))),
                                )
                            }
                        }
                    };
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
        _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_mul_ps,
        __m256i, _mm256_loadu_si256, _mm512_cvtph_ps, _mm512_cvtepu16_epi32, _mm512_slli_epi32,
        _mm512_castsi512_ps);
    kernel!(avx2, tile256, "avx2,fma,f16c", 8, 6, [1 2 3 4 5 6],
        _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_mul_ps,
        __m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_cvtepu16_epi32, _mm256_slli_epi32,
        _mm256_castsi256_ps);
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

    /// `w` as a kernel packed in `format` multiplies it: rounded to nearest by the `half`
    /// crate (the oracle), widened back exactly.
    fn rounded(format: WeightFormat, w: &[f32]) -> Vec<f32> {
        w.iter()
            .map(|&v| match format {
                WeightFormat::F32 => v,
                WeightFormat::F16 => half::f16::from_f32(v).to_f32(),
                WeightFormat::Bf16 => half::bf16::from_f32(v).to_f32(),
            })
            .collect()
    }

    /// Every kernel this CPU runs, in every weight format, on random shapes against the f64
    /// product with the weight the format holds: 1-row inputs, widths that leave a partial
    /// panel, `K` off every tile size and one of 600 (a panel longer than the prefetch
    /// distance many times over), several row blocks (past `16·MR` rows), with and without a
    /// bias, scaled or not. The bound
    /// is f32 rounding of a `K`-term sum: each product and addition rounds once, `|error| ≤
    /// (K + 2)·ε·Σ|terms|` — so a 16-bit weight widened wrongly (a lost bit, a wrong rounding
    /// at packing) fails it.
    #[test]
    fn every_kernel_matches_an_f64_product_over_random_shapes() {
        let mut rng = StdRng::seed_from_u64(31);
        let mut shapes = vec![
            [1, 1, 1],
            [1, 7, 33],
            [5, 7, 33],
            [13, 64, 31],
            [12, 3, 32],
            [3, 600, 130],
        ];
        for _ in 0..40 {
            let m = match rng.random_range(0..4) {
                0 => 1,
                1 => rng.random_range(2..13),
                2 => rng.random_range(13..200),
                _ => rng.random_range(190..260),
            };
            shapes.push([m, rng.random_range(1..300), rng.random_range(1..100)]);
        }
        let formats = [WeightFormat::F32, WeightFormat::F16, WeightFormat::Bf16];
        for (kernel, format) in kernels().into_iter().flat_map(|k| formats.map(|f| (k, f))) {
            for &[m, k, n] in &shapes {
                let mut uniform = |len: usize| -> Vec<f32> {
                    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
                };
                let (x, w, b) = (uniform(m * k), uniform(k * n), uniform(n));
                let biased = rng.random_range(0..2) == 0;
                let s = [1.0, 0.125, 0.3][rng.random_range(0..3)];
                let bias = biased.then_some(b.as_slice());
                let packed = PackedMatrix::new(kernel, format, &w, [k, n], bias, s).unwrap();
                assert_eq!(packed.format(), format);
                let got = packed.apply(&x, m);
                let zeros = vec![0.0; n];
                let held = rounded(format, &w);
                let want = reference(&x, &held, bias.unwrap_or(&zeros), [m, k, n], s);
                assert_eq!(got.len(), want.len());
                for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
                    let row = i / n;
                    let col = i % n;
                    let terms: f64 = (0..k)
                        .map(|l| f64::from((x[row * k + l] * held[l * n + col]).abs()))
                        .sum::<f64>()
                        + f64::from(bias.map_or(0.0, |b| b[col].abs()));
                    let bound =
                        (k as f64 + 2.0) * f64::from(f32::EPSILON) * terms * f64::from(s) + 1e-30;
                    assert!(
                        (f64::from(g) - r).abs() <= bound,
                        "{kernel:?} {format:?} {m}×{k}×{n} scale {s} bias {biased}: [{i}] {g} vs {r}"
                    );
                }
            }
        }
    }

    /// A weight beyond f16's range (65504) would become an infinity: f16 packing keeps it in
    /// f32 and says so; bf16 (f32's range) holds it.
    #[test]
    fn a_weight_beyond_f16s_range_stays_f32() {
        let w = [1.0, -65536.0, 0.5, 2.0];
        let within = [1.0, -65000.0, 0.5, 2.0];
        for kernel in kernels() {
            let packed = PackedMatrix::new(kernel, WeightFormat::F16, &within, [2, 2], None, 1.0);
            assert_eq!(packed.unwrap().format(), WeightFormat::F16, "{kernel:?}");
            for (asked, held) in [
                (WeightFormat::F16, WeightFormat::F32),
                (WeightFormat::Bf16, WeightFormat::Bf16),
                (WeightFormat::F32, WeightFormat::F32),
            ] {
                let packed = PackedMatrix::new(kernel, asked, &w, [2, 2], None, 1.0).unwrap();
                assert_eq!(
                    (packed.asked(), packed.format()),
                    (asked, held),
                    "{kernel:?}"
                );
                // [1, 1]·W = [1 + 0.5, −2¹⁶ + 2] (every value exact in bf16).
                let y = packed.apply(&[1.0, 1.0], 1);
                assert_eq!(y, vec![1.5, -65534.0], "{kernel:?} {asked:?}");
            }
        }
    }

    #[test]
    fn packing_refuses_lengths_that_do_not_match() {
        for kernel in kernels() {
            let w: Vec<f32> = (0..12).map(|i| i as f32).collect();
            assert!(PackedMatrix::new(kernel, WeightFormat::F32, &w, [3, 5], None, 1.0).is_none());
            assert!(
                PackedMatrix::new(kernel, WeightFormat::F32, &w, [3, 4], Some(&w[..3]), 1.0)
                    .is_none()
            );
            assert!(PackedMatrix::new(kernel, WeightFormat::F32, &w, [0, 4], None, 1.0).is_none());
            let packed =
                PackedMatrix::new(kernel, WeightFormat::F32, &w, [3, 4], None, 1.0).unwrap();
            assert_eq!(packed.dims(), [3, 4]);
            assert_eq!(packed.apply(&[], 0), Vec::<f32>::new());
        }
    }
}
