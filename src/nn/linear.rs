//! Linear layers over tensors of any rank, as one matrix product.

use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// `linear` over every row of `x: [.., K]` as one product `[rows, K] × [K, N]`. burn's `Linear`
/// on a rank-4 input multiplies each leading index separately: at a decode step that is one
/// matrix-vector product per (path, variate), each re-packing the weight on the CPU.
pub(crate) fn dense<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let mut dims = x.dims();
    let k = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = linear.forward(x.reshape([rows, k]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// A `Linear` of `i` inputs and `o` outputs with burn's default initialisation (a bias
/// included), for models made from a config before their weights are loaded.
pub(crate) fn linear(i: usize, o: usize, device: &Device) -> Linear {
    LinearConfig::new(i, o).init(device)
}
