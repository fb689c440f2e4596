//! Linear layers over tensors of any rank, as one matrix product; on the CPU against weights
//! packed once for the crate's own kernel.

use std::fmt;
use std::sync::{Arc, OnceLock};

use burn::backend::DispatchDevice;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::backend::cpu_gemm::{Isa, PackedMatrix};
use crate::backend::transfer::upload;

/// A layer's weight packed for the CPU kernel ([`PackedMatrix`]), made the first time the layer
/// runs on the CPU and shared by the layer's clones. The weights of a model never change after
/// loading, so the packing is never stale; the layers that own one are built once per model.
#[derive(Clone, Default)]
pub(crate) struct CpuPacked(Arc<OnceLock<Option<PackedMatrix>>>);

impl fmt::Debug for CpuPacked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0.get() {
            None => "not yet",
            Some(None) => "no kernel",
            Some(Some(_)) => "packed",
        };
        f.debug_tuple("CpuPacked").field(&state).finish()
    }
}

/// `linear` over every row of `x: [.., K]` as one product `[rows, K] × [K, N]`. burn's `Linear`
/// on a rank-4 input multiplies each leading index separately: at a decode step that is one
/// matrix-vector product per (path, variate), each re-packing the weight on the CPU.
pub(crate) fn dense<const D: usize>(
    linear: &Linear,
    packed: &CpuPacked,
    x: Tensor<D>,
) -> Tensor<D> {
    if !on_cpu(&x, &linear.weight.val()) {
        return over_rows(x, |x| linear.forward(x));
    }
    let bias = linear.bias.as_ref().map(|b| b.val());
    affine(x, &linear.weight.val(), bias.as_ref(), 1.0, packed)
}

/// `product` of every row of `x: [.., K]` at once, as a `[rows, K]` matrix; the result's rows
/// get `x`'s leading dimensions back.
pub(crate) fn over_rows<const D: usize>(
    x: Tensor<D>,
    product: impl FnOnce(Tensor<2>) -> Tensor<2>,
) -> Tensor<D> {
    let mut dims = x.dims();
    let k = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = product(x.reshape([rows, k]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// Whether a product of `x` and `weight` runs on the CPU kernel's device and type: burn's
/// ndarray device, f32.
fn on_cpu<const D: usize>(x: &Tensor<D>, weight: &Tensor<2>) -> bool {
    is_cpu(&x.device()) && x.dtype() == DType::F32 && weight.dtype() == DType::F32
}

/// `(x·W + b)·s` over every row of `x: [.., K]` with `W: [K, N]`, as one product. On the CPU
/// (burn's ndarray device, f32) through `packed`, filled from `weight`, `bias` and `scale` the
/// first time; elsewhere, or where the CPU has no kernel, through burn's `matmul`.
pub(crate) fn affine<const D: usize>(
    x: Tensor<D>,
    weight: &Tensor<2>,
    bias: Option<&Tensor<1>>,
    scale: f64,
    packed: &CpuPacked,
) -> Tensor<D> {
    over_rows(x, |x| {
        let [rows, k] = x.dims();
        let kernel = on_cpu(&x, weight)
            .then(|| packed.get(weight, bias, scale))
            .flatten()
            .filter(|p| p.dims()[0] == k);
        if let Some(kernel) = kernel {
            let device = x.device();
            let y = kernel.apply(&host_values(x), rows);
            return upload(y, [rows, kernel.dims()[1]], &device);
        }
        let mut y = x.matmul(weight.clone());
        if let Some(b) = bias {
            y = y.add(b.clone().unsqueeze());
        }
        if scale != 1.0 {
            y = y.mul_scalar(scale);
        }
        y
    })
}

impl CpuPacked {
    /// The packed `(weight, bias, scale)` (`weight: [K, N]`), packed the first time; `None` where
    /// the CPU has no kernel. Callers check that the weight is f32 on the CPU first.
    pub(crate) fn get(
        &self,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
        scale: f64,
    ) -> Option<&PackedMatrix> {
        self.0
            .get_or_init(|| pack(weight, bias, scale))
            .as_ref()
            .filter(|p| p.dims() == weight.dims())
    }
}

/// Whether `device` is burn's ndarray device: the host of the CPU kernels.
pub(crate) fn is_cpu(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::NdArray(_))
}

/// The values of an f32 tensor on the CPU, row-major: handed over without a copy when the
/// tensor is contiguous and owns them alone (burn-ndarray), copied otherwise. Reading the CPU's
/// own memory cannot fail; were it to, the values come back empty and the caller's length
/// check refuses them.
pub(crate) fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap_or_default()
}

/// The packed weight, or `None` where the CPU has no kernel.
fn pack(weight: &Tensor<2>, bias: Option<&Tensor<1>>, scale: f64) -> Option<PackedMatrix> {
    Isa::detect()?;
    let [k, n] = weight.dims();
    let weight = owned_data(weight.clone());
    let bias = bias.map(|b| owned_data(b.clone()));
    let bias = match &bias {
        Some(b) => Some(b.as_slice::<f32>().ok()?),
        None => None,
    };
    PackedMatrix::new(weight.as_slice::<f32>().ok()?, [k, n], bias, scale as f32)
}

/// The values of a tensor held elsewhere too (a parameter). burn-ndarray's `into_data` copies a
/// shared array value by value through a dynamic-rank iterator (~30M values a second: a quarter
/// of a second for one of Toto's MLP weights); multiplying by one first makes an owned copy at
/// memory speed, which `into_data` then hands over without copying. Exact for every value.
fn owned_data<const D: usize>(t: Tensor<D>) -> TensorData {
    t.mul_scalar(1.0).into_data()
}

/// A `Linear` of `i` inputs and `o` outputs with burn's default initialisation (a bias
/// included), for models made from a config before their weights are loaded.
pub(crate) fn linear(i: usize, o: usize, device: &Device) -> Linear {
    LinearConfig::new(i, o).init(device)
}
