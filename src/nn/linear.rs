//! Linear layers over tensors of any rank through the backend's
//! [`LayerOps::linear`](crate::backend::LayerOps::linear), from burn's `Linear` modules (Toto
//! 1.0's checkpoint layout).

use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::backend::{Affine, LayerOps, Prepared};
use crate::error::Result;

/// `linear` over every row of `x: [.., K]` as one product, `prepared` the layer's slot for what
/// the backend derives from its weights.
pub(crate) fn dense<B: LayerOps, const D: usize>(
    ops: &B,
    linear: &Linear,
    prepared: &Prepared,
    x: Tensor<D>,
) -> Result<Tensor<D>> {
    let weight = linear.weight.val();
    let bias = linear.bias.as_ref().map(|b| b.val());
    ops.linear(x, Affine::new(&weight, bias.as_ref(), 1.0, prepared))
}

/// A `Linear` of `i` inputs and `o` outputs with burn's default initialisation (a bias
/// included), for models made from a config before their weights are loaded.
pub(crate) fn linear(i: usize, o: usize, device: &Device) -> Linear {
    LinearConfig::new(i, o).init(device)
}
