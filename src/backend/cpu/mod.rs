//! The CPU kernels behind [`NdArray`](super::NdArray)'s layer ops ([`LayerOps`](super::LayerOps)):
//!
//! - [`gemm`]: products against weights packed once (`y = (x·W + b)·s`): the crate's x86
//!   micro-kernels (AVX-512F, AVX2 + FMA), and the `gemm` crate's for the portable build (NEON on
//!   aarch64).
//! - [`vector`]: a vectorisable `exp` and the SiLU forms built on it.
//! - [`layers`]: RMSNorm, residual sums, gated units and grouped-query attention, one pass over
//!   host slices each.
//! - [`dispatch`]: the instruction set, detected once, and the target-feature wrappers (the
//!   crate's own for x86, `pulp`'s for the portable build).
//!
//! [`CpuKernels`] picks among them per backend: the x86 kernels where the CPU has them, the
//! portable ones everywhere (and on x86 when asked, so that CI runs the fixtures through them),
//! or none (burn's own ops, to compare).
//!
//! Unsafe code: `dispatch` (1 site) and `gemm` (14), each with its SAFETY note; the crate's
//! count is in docs/architecture.md ("Unsafe code"), checked by a test.
//!
//! Public only with the `internals` feature, for the crate's benchmarks: not a stable API.

pub mod dispatch;
pub mod gemm;
pub(crate) mod layers;
pub(crate) mod vector;

/// Which CPU kernels an [`NdArray`](super::NdArray) backend runs its layer ops
/// ([`LayerOps`](super::LayerOps)) with.
///
/// All of them compute the same arithmetic in f32 and match the reference models to the same
/// tolerance; they differ in speed (docs/PERFORMANCE.md). The default, [`CpuKernels::Auto`], can
/// be changed for a process with `TOTO_FALLBACK_CPU_KERNELS=auto|portable|burn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CpuKernels {
    /// The crate's x86 kernels (AVX-512F, else AVX2 + FMA) where the CPU has them, the portable
    /// ones elsewhere (aarch64, older x86).
    #[default]
    Auto,
    /// The portable kernels on every CPU: products through the `gemm` crate (its own NEON, AVX2
    /// and AVX-512 kernels), vector math and attention compiled through `pulp`'s run-time
    /// dispatch for what the CPU has (AVX-512 or AVX2 + FMA on x86-64, NEON on aarch64, scalar
    /// elsewhere).
    Portable,
    /// No kernels of the crate's own: every layer op as a composition of burn's tensor ops (what
    /// any backend without native layer ops runs), for comparisons.
    Burn,
}

impl CpuKernels {
    /// The process default: [`CpuKernels::Auto`], or what `TOTO_FALLBACK_CPU_KERNELS` says
    /// (`auto`, `portable`, `burn`; anything else is ignored with a warning).
    pub fn from_env() -> Self {
        match std::env::var("TOTO_FALLBACK_CPU_KERNELS").as_deref() {
            Err(_) | Ok("" | "auto") => CpuKernels::Auto,
            Ok("portable") => CpuKernels::Portable,
            Ok("burn") => CpuKernels::Burn,
            Ok(other) => {
                log::warn!(
                    "TOTO_FALLBACK_CPU_KERNELS={other:?} is not one of auto, portable, burn; \
                     using auto"
                );
                CpuKernels::Auto
            }
        }
    }

    /// The product kernel these kernels use on this CPU (`None` for [`CpuKernels::Burn`]).
    pub(crate) fn gemm(self) -> Option<gemm::GemmKernel> {
        match (self, dispatch::Isa::detect()) {
            (CpuKernels::Burn, _) => None,
            (CpuKernels::Auto, Some(isa)) => Some(gemm::GemmKernel::X86(isa)),
            (CpuKernels::Auto | CpuKernels::Portable, _) => Some(gemm::GemmKernel::Portable),
        }
    }

    /// How the vector math and attention are compiled.
    pub(crate) fn target(self) -> dispatch::Target {
        dispatch::target_for(self)
    }
}

impl std::fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuKernels::Auto => "auto",
            CpuKernels::Portable => "portable",
            CpuKernels::Burn => "burn",
        })
    }
}
