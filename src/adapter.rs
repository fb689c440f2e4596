//! Which wgpu adapter to open: the graphics API and the kind of adapter.
//!
//! A leaf module (plain selectors, no crate imports), so that errors can name a request.

use burn::tensor::DeviceKind;
use burn::tensor::wgpu::WgpuBackend;

/// Which graphics API wgpu drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GraphicsApi {
    /// The platform's best: Metal on macOS, Vulkan (then DX12) elsewhere, a hardware adapter
    /// before a software one. Never wgpu's OpenGL backend, which can deadlock under CubeCL's
    /// autotuning: where it is all there is, opening fails with
    /// [`Error::OpenGlOnly`](crate::Error::OpenGlOnly) (docs/troubleshooting.md, "OpenGL").
    #[default]
    Auto,
    /// Vulkan (Linux, Windows, Android; MoltenVK on macOS).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// DirectX 12 (Windows).
    Dx12,
}

/// Which adapter wgpu opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AdapterKind {
    /// wgpu's choice, preferring a high-power GPU; the environment variable
    /// `CUBECL_WGPU_DEFAULT_DEVICE` (for example `Cpu` or `DiscreteGpu(1)`) overrides it.
    #[default]
    Default,
    /// The n-th discrete GPU.
    DiscreteGpu(usize),
    /// The n-th integrated GPU.
    IntegratedGpu(usize),
    /// The n-th virtual GPU.
    VirtualGpu(usize),
    /// A software adapter: Mesa's lavapipe (Vulkan) on Linux, WARP on Windows. Slow, but it
    /// makes the wgpu backend testable on machines without a GPU.
    Cpu,
}

impl AdapterKind {
    pub(crate) fn to_burn(self) -> DeviceKind {
        match self {
            AdapterKind::Default => DeviceKind::DefaultDevice,
            AdapterKind::DiscreteGpu(i) => DeviceKind::DiscreteGpu(i),
            AdapterKind::IntegratedGpu(i) => DeviceKind::IntegratedGpu(i),
            AdapterKind::VirtualGpu(i) => DeviceKind::VirtualGpu(i),
            AdapterKind::Cpu => DeviceKind::Cpu,
        }
    }
}

impl GraphicsApi {
    pub(crate) fn to_burn(self) -> WgpuBackend {
        match self {
            GraphicsApi::Auto => WgpuBackend::Auto,
            GraphicsApi::Vulkan => WgpuBackend::Vulkan,
            GraphicsApi::Metal => WgpuBackend::Metal,
            GraphicsApi::Dx12 => WgpuBackend::Dx12,
        }
    }
}
