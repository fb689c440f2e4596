//! Toto's output head (toto-ts's `MixtureOfStudentTsOutput`): four projections of every
//! unembedded step to the Student-T mixture's degrees of freedom, locations, scales and logits.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use crate::nn::linear::linear;

/// `torch.finfo(float32).eps`, the head's floor for softplus outputs.
const F32_EPS: f32 = f32::EPSILON;

/// `output_distribution.*`: the mixture head's four projections.
#[derive(Module, Debug)]
pub(crate) struct Head {
    pub(crate) df: Linear,
    pub(crate) loc_proj: Linear,
    pub(crate) scale_proj: Linear,
    pub(crate) mixture_weights: Linear,
}

/// The head's raw outputs over `[B, V, S·P, K]`.
#[derive(Debug, Clone)]
pub(crate) struct HeadOutput {
    pub(crate) df: Tensor<4>,
    pub(crate) loc: Tensor<4>,
    pub(crate) scale: Tensor<4>,
    pub(crate) logits: Tensor<4>,
}

impl Head {
    /// The head of width `d` over `k` components, randomly initialised.
    pub(crate) fn new(d: usize, k: usize, device: &Device) -> Self {
        Head {
            df: linear(d, k, device),
            loc_proj: linear(d, k, device),
            scale_proj: linear(d, k, device),
            mixture_weights: linear(d, k, device),
        }
    }

    /// The mixture's parameters at every step of `u` (`[B, V, T, D]`): degrees of freedom
    /// `2 + max(softplus, eps)`, locations, scales `max(softplus, eps)` and logits, each
    /// `[B, V, T, K]`.
    ///
    /// The four projections run as one product: `u` is the largest tensor of a decode step
    /// (rows × P × D) and is read once instead of four times.
    pub(crate) fn forward(&self, u: Tensor<4>) -> HeadOutput {
        let [b, v, t, d] = u.dims();
        let projections = [
            &self.df,
            &self.loc_proj,
            &self.scale_proj,
            &self.mixture_weights,
        ];
        let k = self.df.weight.dims()[1];
        let weight = Tensor::cat(projections.iter().map(|l| l.weight.val()).collect(), 1);
        let bias = Tensor::cat(
            projections
                .iter()
                .map(|l| match &l.bias {
                    Some(b) => b.val(),
                    None => Tensor::zeros([k], &weight.device()),
                })
                .collect(),
            0,
        );
        let rows = b * v * t;
        let y = u
            .reshape([rows, d])
            .matmul(weight)
            .add(bias.reshape([1, 4 * k])); // [rows, 4K]
        let part = |j: usize| {
            y.clone()
                .slice([0..rows, j * k..(j + 1) * k])
                .reshape([b, v, t, k])
        };
        HeadOutput {
            df: softplus(part(0)).clamp_min(F32_EPS).add_scalar(2.0),
            loc: part(1),
            scale: softplus(part(2)).clamp_min(F32_EPS),
            logits: part(3),
        }
    }
}

/// torch's softplus with threshold 20: `x` above 20, `ln(1 + eˣ)` below (accurate for very
/// negative `x` through [`special::log1p`](crate::special::log1p)).
fn softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let big = x.clone().greater_elem(20.0);
    let small = crate::special::log1p(x.clone().clamp_max(20.0).exp());
    small.mask_where(big, x)
}
