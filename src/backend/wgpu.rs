//! [`Wgpu`]: burn's wgpu device (Vulkan, Metal, DX12), without gamma sampling.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use burn::tensor::wgpu::{WgpuBackend, WgpuInitError};
use burn::tensor::{Device, DeviceKind, Distribution, Tensor};

use super::{Backend, Op, OpSet, Support, checked_elements};
use crate::error::{Error, Result};

/// Which graphics API wgpu drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GraphicsApi {
    /// The platform's best: Metal on macOS, Vulkan (then DX12, then GL) elsewhere.
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
    fn to_burn(self) -> DeviceKind {
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
    fn to_burn(self) -> WgpuBackend {
        match self {
            GraphicsApi::Auto => WgpuBackend::Auto,
            GraphicsApi::Vulkan => WgpuBackend::Vulkan,
            GraphicsApi::Metal => WgpuBackend::Metal,
            GraphicsApi::Dx12 => WgpuBackend::Dx12,
        }
    }
}

/// The GPU backend: burn's wgpu device (Vulkan, Metal, DX12).
///
/// Native: what burn ships — [`Op::Uniform`] and [`Op::StandardNormal`] through burn's
/// `Tensor::random`, and the special functions ([`Op::Lgamma`], [`Op::Digamma`]) composed from
/// elementwise tensor ops. **Not** native: [`Op::StandardGamma`]; burn 0.22 has no gamma sampling
/// on any GPU, so calling it returns [`Error::Unsupported`], the analogue of PyTorch's
/// `NotImplementedError: aten::_standard_gamma` on Apple GPUs. Wrap the backend in
/// [`FallbackBackend`](crate::FallbackBackend) to run it on the CPU instead.
///
/// Seeding: [`Backend::seed`] seeds burn's cubecl generator, which is global to every cubecl
/// device of the process (burn's design). Draws are reproducible for a seed when one thread
/// samples; streams differ between adapters and from the CPU backend's.
///
/// Opening an adapter is expensive: constructors cache the device per `(api, adapter)`, so
/// building another `Wgpu` for the same adapter is cheap and shares it.
///
/// ```no_run
/// use toto_fallback::{AdapterKind, Backend, GraphicsApi, Op, Wgpu};
///
/// let gpu = Wgpu::with_adapter(GraphicsApi::Auto, AdapterKind::Default)?;
/// assert!(!gpu.supports(Op::StandardGamma));
/// println!("running on {}", gpu.name());
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Clone)]
pub struct Wgpu {
    device: Device,
    name: Arc<str>,
    support: Support,
}

impl fmt::Debug for Wgpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wgpu")
            .field("name", &self.name)
            .field("device", &self.device)
            .field("support", &self.support)
            .finish()
    }
}

/// Devices opened so far, by request: `init` may succeed only once per selector.
fn opened() -> &'static Mutex<HashMap<(GraphicsApi, AdapterKind), Device>> {
    static OPENED: OnceLock<Mutex<HashMap<(GraphicsApi, AdapterKind), Device>>> = OnceLock::new();
    OPENED.get_or_init(Default::default)
}

impl Wgpu {
    /// The default adapter on the platform's best graphics API.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when wgpu finds no usable adapter.
    pub fn new() -> Result<Self> {
        Self::with_adapter(GraphicsApi::Auto, AdapterKind::Default)
    }

    /// A chosen adapter on a chosen graphics API.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter of that kind exists for that API (or it refuses to
    /// create a device), or the API is not compiled into this build.
    pub fn with_adapter(api: GraphicsApi, adapter: AdapterKind) -> Result<Self> {
        let device = open(api, adapter)?;
        let name = describe(&device, api);
        Ok(Wgpu {
            device,
            name: name.into(),
            support: Support::lacking(OpSet::empty().with(Op::StandardGamma).with(Op::PatchScaler)),
        })
    }

    /// This backend with `ops` marked unsupported as well, so a
    /// [`FallbackBackend`](crate::FallbackBackend) around it forwards them (for tests and
    /// benchmarks of the fallback path).
    #[must_use]
    pub fn with_unsupported(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.support = self.support.disable(ops);
        self
    }
}

fn open(api: GraphicsApi, adapter: AdapterKind) -> Result<Device> {
    let mut opened = opened().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(device) = opened.get(&(api, adapter)) {
        return Ok(device.clone());
    }
    let result = Device::wgpu_options()
        .graphics_api(api.to_burn())
        .device_kind(adapter.to_burn())
        .init();
    let device = match result {
        Ok(device) => device,
        // Someone (the application, through burn directly) initialised this selector already;
        // burn's lazy device for it is then the same runtime.
        Err(WgpuInitError::Registration { .. }) if api == GraphicsApi::Auto => {
            Device::wgpu(adapter.to_burn())
        }
        Err(e) => {
            return Err(Error::NoAdapter {
                api,
                adapter,
                reason: e.to_string(),
            });
        }
    };
    opened.insert((api, adapter), device.clone());
    Ok(device)
}

fn describe(device: &Device, api: GraphicsApi) -> String {
    match device.identity() {
        // The fingerprint starts with the shader language burn compiles to: spirv, wgsl, msl.
        Some(id) => {
            let shader = id.fingerprint.split('_').next().unwrap_or("?");
            format!("wgpu ({}; {shader})", id.name)
        }
        None => format!("wgpu ({api:?})"),
    }
}

impl Backend for Wgpu {
    fn name(&self) -> &str {
        &self.name
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn supports(&self, op: Op) -> bool {
        self.support.supports(op)
    }

    fn seed(&self, seed: u64) {
        self.device.seed(seed);
    }

    fn uniform<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        self.ensure_supported(Op::Uniform)?;
        checked_elements(Op::Uniform, &shape)?;
        Ok(Tensor::random(shape, Distribution::Default, &self.device))
    }

    fn standard_normal<const D: usize>(&self, shape: [usize; D]) -> Result<Tensor<D>> {
        self.ensure_supported(Op::StandardNormal)?;
        checked_elements(Op::StandardNormal, &shape)?;
        Ok(Tensor::random(
            shape,
            Distribution::Normal(0.0, 1.0),
            &self.device,
        ))
    }

    fn standard_gamma<const D: usize>(&self, alpha: Tensor<D>) -> Result<Tensor<D>> {
        // Not native on any wgpu adapter (burn has no gamma kernel): this is the error that
        // FallbackBackend exists to turn into a CPU round trip.
        self.ensure_supported(Op::StandardGamma)?;
        self.ensure_on_device(Op::StandardGamma, "alpha", &alpha)?;
        Err(Error::Unsupported {
            op: Op::StandardGamma,
            backend: self.name.to_string(),
        })
    }
}
