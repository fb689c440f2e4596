//! Which CPU kernels run: the instruction set detected once per process, and the target-feature
//! wrappers that compile a computation for it.
//!
//! Everything architecture-specific is behind the functions of this file: [`vectorised`],
//! [`map1`] and [`map2`] compile their argument for AVX-512F or AVX2 + FMA with the crate's x86
//! target ([`Target::X86`]), or through `pulp`'s run-time dispatch ([`Target::Portable`]: AVX2
//! + FMA, NEON, SIMD128 or scalar, whatever the CPU has), so every CPU runs the same Rust.

// Unsafe code: calls of `#[target_feature]` functions, after checking the CPU has the features.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::sync::OnceLock;

use super::CpuKernels;

/// An x86-64 instruction set the crate's own kernels are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 12 rows × 32 columns per GEMM tile, 16-lane vector math.
    Avx512,
    /// AVX2 with FMA (and F16C, which every AVX2 CPU has: the kernel widens f16 weights with
    /// it): 6 rows × 16 columns per GEMM tile, 8-lane vector math.
    Avx2,
}

impl Isa {
    /// The fastest of the crate's x86 kernels this CPU runs (`None` off x86-64, or on an x86
    /// CPU without AVX2 + FMA).
    pub fn detect() -> Option<Isa> {
        static ISA: OnceLock<Option<Isa>> = OnceLock::new();
        *ISA.get_or_init(|| {
            let isa = [Isa::Avx512, Isa::Avx2]
                .into_iter()
                .find(|isa| isa.runs_here());
            log::debug!("CPU kernels: x86 instruction set {isa:?}");
            isa
        })
    }

    /// Whether this CPU has the kernel's instructions (an AVX-512 CPU runs both).
    #[cfg(target_arch = "x86_64")]
    pub fn runs_here(self) -> bool {
        match self {
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
        }
    }

    /// Whether this CPU has the kernel's instructions: never off x86-64.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn runs_here(self) -> bool {
        false
    }
}

/// How the CPU kernels are compiled: for one of the crate's x86 instruction sets, or portably
/// (through `pulp`'s run-time dispatch: AVX2 + FMA on x86-64 CPUs that have it, NEON on aarch64,
/// SIMD128 on wasm, scalar elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The crate's own x86 kernels for this instruction set.
    X86(Isa),
    /// The portable kernels.
    Portable,
}

/// The target of `kernels`: the detected x86 instruction set for [`CpuKernels::Auto`] where
/// there is one, the portable build otherwise.
pub(crate) fn target_for(kernels: CpuKernels) -> Target {
    match (kernels, Isa::detect()) {
        (CpuKernels::Auto, Some(isa)) => Target::X86(isa),
        _ => Target::Portable,
    }
}

/// A computation to compile for a [`Target`] ([`vectorised`]). Implementations mark `run`
/// `#[inline(always)]`: it is then compiled inside the target-feature function, and its loops
/// vectorise to that width (a closure would stay a function of its own, compiled for the
/// baseline target).
pub(crate) trait Vectorise {
    type Args;
    type Out;
    fn run(args: Self::Args) -> Self::Out;
}

/// `K::run(args)` compiled for `target`: the crate's x86 instruction set (16 or 8 lanes
/// instead of the baseline's 4), or `pulp`'s best for this CPU.
#[inline(always)]
pub(crate) fn vectorised<K: Vectorise>(target: Target, args: K::Args) -> K::Out {
    match target {
        #[cfg(target_arch = "x86_64")]
        Target::X86(isa) if isa.runs_here() => x86::run::<K>(isa, args),
        _ => pulp::Arch::new().dispatch(Pulp::<K>(args)),
    }
}

/// [`Vectorise`] through `pulp`: `with_simd` is compiled for the instruction set `pulp` picks,
/// and `K::run` inlined into it.
struct Pulp<K: Vectorise>(K::Args);

impl<K: Vectorise> pulp::WithSimd for Pulp<K> {
    type Output = K::Out;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> K::Out {
        K::run(self.0)
    }
}

/// `v ↦ f(v)` over `values` compiled for `target`, as [`vectorised`].
#[inline(always)]
pub(crate) fn map1<F: Fn(f32) -> f32 + Copy>(target: Target, values: &mut [f32], f: F) {
    vectorised::<Map1<'_, F>>(target, (values, f));
}

/// `o ↦ f(o, a)` over `out` and `a` together, as [`map1`].
#[inline(always)]
pub(crate) fn map2<F: Fn(f32, f32) -> f32 + Copy>(
    target: Target,
    out: &mut [f32],
    a: &[f32],
    f: F,
) {
    vectorised::<Map2<'_, F>>(target, (out, a, f));
}

struct Map1<'a, F>(PhantomData<&'a F>);

impl<'a, F: Fn(f32) -> f32 + Copy> Vectorise for Map1<'a, F> {
    type Args = (&'a mut [f32], F);
    type Out = ();

    #[inline(always)]
    fn run((values, f): Self::Args) {
        values.iter_mut().for_each(|v| *v = f(*v));
    }
}

struct Map2<'a, F>(PhantomData<&'a F>);

impl<'a, F: Fn(f32, f32) -> f32 + Copy> Vectorise for Map2<'a, F> {
    type Args = (&'a mut [f32], &'a [f32], F);
    type Out = ();

    #[inline(always)]
    fn run((out, a, f): Self::Args) {
        out.iter_mut().zip(a).for_each(|(o, a)| *o = f(*o, *a));
    }
}

/// The portable target and every x86 instruction set this CPU runs (the kernels' tests).
#[cfg(test)]
pub(crate) fn targets_here() -> Vec<Target> {
    [
        Target::Portable,
        Target::X86(Isa::Avx512),
        Target::X86(Isa::Avx2),
    ]
    .into_iter()
    .filter(|t| match t {
        Target::X86(isa) => isa.runs_here(),
        Target::Portable => true,
    })
    .collect()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Isa, Vectorise};

    /// [`super::vectorised`]: `K::run` compiled for `isa`. The caller checked
    /// `isa.runs_here()`.
    pub(super) fn run<K: Vectorise>(isa: Isa, args: K::Args) -> K::Out {
        // SAFETY: the CPU has the instructions (checked by the caller, `Isa::runs_here`).
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
}
