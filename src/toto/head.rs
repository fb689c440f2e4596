//! Toto's output head (toto-ts's `MixtureOfStudentTsOutput`): four projections of every
//! unembedded step to the Student-T mixture's degrees of freedom, locations, scales and logits.
//!
//! The unembedding (`D → P·D`) and the head (`D → 4K` per step) are both affine with nothing in
//! between, so the model runs them as one product `D → P·4K` ([`FusedHead`]), composed once when
//! the model is assembled. For Toto-Open-Base-1.0 that is 4.7M multiply-adds per token instead
//! of 42.5M (the unembedding was a quarter of a decode step's arithmetic), and a decode step no
//! longer materialises the `rows × P × D` unembedded tensor.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use crate::backend::{Affine, LayerOps, Prepared};
use crate::error::Result;
use crate::nn::linear::linear;

/// `torch.finfo(float32).eps`, the head's floor for softplus outputs.
const F32_EPS: f32 = f32::EPSILON;

/// `output_distribution.*`: the mixture head's four projections, as the checkpoint stores them.
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

    /// The four projections side by side: weight `[D, 4K]` and bias `[4K]`, in the order
    /// degrees of freedom, locations, scales, logits.
    fn stacked(&self) -> (Tensor<2>, Tensor<1>) {
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
        (weight, bias)
    }
}

/// The unembedding and the head composed: `[D, P·4K]` and its bias, so that a token's hidden
/// state gives the mixture's parameters for the `P` steps of the next patch in one product.
///
/// With the unembedding's block for step `j` (`U_j`, `[D, D]`, its bias `c_j`) and the stacked
/// head (`H`, `[D, 4K]`, bias `e`): `(h·U_j + c_j)·H + e = h·(U_j·H) + (c_j·H + e)`. Composed
/// in f32 on the model's device; the reordered sums differ from the two products by rounding
/// only (the fixtures' tests hold it to toto-ts at 1e-5).
#[derive(Debug, Clone)]
pub(crate) struct FusedHead {
    weight: Tensor<2>,
    bias: Tensor<1>,
    prepared: Prepared,
    patch: usize,
    k: usize,
}

impl FusedHead {
    /// Composes `unembed` (`D → P·D`, the step within the patch outer) with `head`.
    pub(crate) fn new(unembed: &Linear, head: &Head, patch: usize) -> Self {
        let (h, e) = head.stacked();
        let [d, k4] = h.dims();
        let u = unembed.weight.val(); // [D, P·D]: column j·D + c is step j, feature c
        let weight = u
            .reshape([d * patch, d])
            .matmul(h.clone())
            .reshape([d, patch * k4]);
        let bias = match &unembed.bias {
            Some(c) => c
                .val()
                .reshape([patch, d])
                .matmul(h)
                .add(e.unsqueeze_dim(0)),
            None => e.unsqueeze_dim::<2>(0).repeat_dim(0, patch),
        }
        .reshape([patch * k4]);
        FusedHead {
            weight,
            bias,
            prepared: Prepared::default(),
            patch,
            k: k4 / 4,
        }
    }

    /// The mixture's parameters from the last layer's output `h` (`[B, V, S, D]`) for every step
    /// of the patches that follow: degrees of freedom `2 + max(softplus, eps)`, locations,
    /// scales `max(softplus, eps)` and logits, each `[B, V, S·P, K]`.
    pub(crate) fn forward<B: LayerOps>(&self, ops: &B, h: Tensor<4>) -> Result<HeadOutput> {
        let [b, v, s, _] = h.dims();
        let (p, k) = (self.patch, self.k);
        let rows = b * v * s * p;
        let affine = Affine::new(&self.weight, Some(&self.bias), 1.0, &self.prepared);
        let y = ops.linear(h, affine)?.reshape([rows, 4 * k]);
        let part = |j: usize| {
            y.clone()
                .slice([0..rows, j * k..(j + 1) * k])
                .reshape([b, v, s * p, k])
        };
        Ok(HeadOutput {
            df: softplus(part(0)).clamp_min(F32_EPS).add_scalar(2.0),
            loc: part(1),
            scale: softplus(part(2)).clamp_min(F32_EPS),
            logits: part(3),
        })
    }
}

/// torch's softplus with threshold 20: `x` above 20, `ln(1 + eˣ)` below (accurate for very
/// negative `x` through [`special::log1p`](crate::special::log1p)).
fn softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let big = x.clone().greater_elem(20.0);
    let small = crate::special::log1p(x.clone().clamp_max(20.0).exp());
    small.mask_where(big, x)
}
