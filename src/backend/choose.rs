//! Choosing where to run: a hardware GPU through wgpu (with the CPU as fallback), else the CPU.

use std::fmt;

use super::{Backend, FallbackBackend, NdArray, Wgpu};

/// What [`choose_backend`] prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Prefer {
    /// A hardware GPU when there is one; the CPU when wgpu finds no adapter or only a software
    /// one (lavapipe, llvmpipe, WARP: the CPU emulating a GPU, far slower than [`NdArray`] on
    /// the same cores, and it compiles its kernels on every run).
    #[default]
    Auto,
    /// Any wgpu adapter, software ones included (for testing the GPU path without a GPU); the
    /// CPU only when there is none.
    Gpu,
    /// The CPU ([`NdArray`]), without opening a GPU.
    Cpu,
}

impl Prefer {
    /// The preference the environment variable `TOTO_BACKEND` names (`auto`, `gpu` or `cpu`,
    /// any case, surrounding spaces ignored); [`Prefer::Auto`] when it is unset, and when it
    /// says something else (with a `log` warning naming the value).
    pub fn from_env() -> Self {
        Self::parse(std::env::var("TOTO_BACKEND").ok().as_deref())
    }

    fn parse(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "auto") => Prefer::Auto,
            Some("gpu") => Prefer::Gpu,
            Some("cpu") => Prefer::Cpu,
            Some(other) => {
                log::warn!(
                    "TOTO_BACKEND={other:?} is not auto, gpu or cpu; choosing automatically"
                );
                Prefer::Auto
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Prefer;

    #[test]
    fn toto_backend_values_name_a_preference() {
        assert_eq!(Prefer::parse(Some("CPU")), Prefer::Cpu);
        assert_eq!(Prefer::parse(Some(" gpu ")), Prefer::Gpu);
        assert_eq!(Prefer::parse(Some("auto")), Prefer::Auto);
        assert_eq!(Prefer::parse(Some("tpu")), Prefer::Auto);
        assert_eq!(Prefer::parse(None), Prefer::Auto);
    }
}

/// The backend [`choose_backend`] picked. [`Backend`] is generic, so run your code for either
/// arm:
///
/// ```no_run
/// use toto_fallback::{Backend, Chosen, Prefer, choose_backend};
///
/// fn run<B: Backend>(backend: &B) { println!("running on {}", backend.name()); }
///
/// let chosen = choose_backend(Prefer::from_env());
/// println!("{chosen}"); // which device, and why
/// match &chosen {
///     Chosen::Gpu(gpu) => run(gpu),
///     Chosen::Cpu { backend, .. } => run(backend),
/// }
/// ```
#[derive(Debug, Clone)]
pub enum Chosen {
    /// A wgpu adapter, with the CPU running what it lacks.
    Gpu(FallbackBackend<Wgpu, NdArray>),
    /// The CPU, and why not a GPU.
    Cpu {
        /// The CPU backend.
        backend: NdArray,
        /// Why the CPU was chosen: asked for, no adapter (wgpu's error), only an OpenGL
        /// adapter ([`Error::OpenGlOnly`](crate::Error::OpenGlOnly)), or only a software
        /// adapter (its name).
        why: String,
    },
}

impl Chosen {
    /// The chosen backend's name.
    pub fn name(&self) -> &str {
        match self {
            Chosen::Gpu(b) => b.name(),
            Chosen::Cpu { backend, .. } => backend.name(),
        }
    }

    /// Whether a GPU (hardware or, with [`Prefer::Gpu`], software) was chosen.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Chosen::Gpu(_))
    }
}

/// The device and why: `wgpu (NVIDIA …; spirv) (CPU fallback: ndarray)`, or `ndarray (the only
/// GPU adapter is a software rasterizer, …)`.
impl fmt::Display for Chosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chosen::Gpu(b) => write!(f, "{} (CPU fallback: ndarray)", b.gpu().name()),
            Chosen::Cpu { backend, why } => write!(f, "{} ({why})", backend.name()),
        }
    }
}

/// Opens the backend to run on, as `prefer` says: a hardware GPU through wgpu when there is one
/// (with [`NdArray`] as the [`FallbackBackend`]'s CPU), else the CPU with the reason. Never
/// fails: the CPU is always there. Set `TOTO_BACKEND=cpu|gpu` and pass [`Prefer::from_env`] to
/// let users override the choice without recompiling.
pub fn choose_backend(prefer: Prefer) -> Chosen {
    let cpu = |why: String| Chosen::Cpu {
        backend: NdArray::new(),
        why,
    };
    if prefer == Prefer::Cpu {
        return cpu("asked for the CPU".to_owned());
    }
    match Wgpu::new() {
        Err(e) => cpu(format!("no GPU: {e}")),
        Ok(gpu) if gpu.is_software() && prefer == Prefer::Auto => cpu(format!(
            "the only GPU adapter is a software rasterizer, {}, slower than the CPU backend on \
             the same cores; TOTO_BACKEND=gpu (Prefer::Gpu) uses it anyway",
            gpu.name()
        )),
        Ok(gpu) => Chosen::Gpu(FallbackBackend::new(gpu, NdArray::new())),
    }
}
