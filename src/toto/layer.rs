//! One of Toto's transformer layers (toto-ts's `TransformerLayer`): pre-norm attention and a
//! SwiGLU MLP, each added to the residual stream.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::attention::{Attention, CacheEntry, Pass};
use super::config::LayerKind;
use crate::nn::linear::{CpuPacked, dense, linear};

/// RMSNorm with toto-ts's parameter name (`scale`) and epsilon (1e-8, inside the root).
#[derive(Module, Debug)]
pub(crate) struct RmsNorm {
    pub(crate) scale: Param<Tensor<1>>,
}

const RMS_EPS: f64 = 1e-8;

impl RmsNorm {
    fn new(d: usize, device: &Device) -> Self {
        RmsNorm {
            scale: Param::from_tensor(Tensor::ones([d], device)),
        }
    }

    /// `x / sqrt(mean(x²) + ε) · scale` over the last dimension.
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = x
            .clone()
            .square()
            .mean_dim(D - 1)
            .add_scalar(RMS_EPS)
            .sqrt();
        let mut shape = [1; D];
        shape[D - 1] = self.scale.dims()[0];
        x.div(rms).mul(self.scale.val().reshape(shape))
    }
}

/// SwiGLU: `w12` projects to `[gate | up]`, `w3` back.
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    pub(crate) w12: Linear,
    pub(crate) w3: Linear,
    /// `w12` and `w3` packed for the CPU kernel (not in the checkpoint).
    #[module(skip)]
    pub(crate) cpu: [CpuPacked; 2],
}

impl Mlp {
    fn new(d: usize, hidden: usize, device: &Device) -> Self {
        Mlp {
            w12: linear(d, 2 * hidden, device),
            w3: linear(hidden, d, device),
            cpu: Default::default(),
        }
    }

    /// `w3(silu(gate) · up)` with `[gate | up] = w12(x)`.
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = dense(&self.w12, &self.cpu[0], x);
        let f = y.dims()[D - 1] / 2;
        let gate = y.clone().narrow(D - 1, 0, f);
        let up = y.narrow(D - 1, f, f);
        dense(&self.w3, &self.cpu[1], silu(gate).mul(up))
    }
}

/// One pre-norm transformer layer, `transformer.layers.{i}`.
#[derive(Module, Debug)]
pub(crate) struct Layer {
    pub(crate) norm1: RmsNorm,
    pub(crate) norm2: RmsNorm,
    pub(crate) attention: Attention,
    pub(crate) mlp: Mlp,
}

impl Layer {
    /// A layer of width `d` and MLP width `hidden`, randomly initialised (norms at 1).
    pub(crate) fn new(d: usize, hidden: usize, device: &Device) -> Self {
        Layer {
            norm1: RmsNorm::new(d, device),
            norm2: RmsNorm::new(d, device),
            attention: Attention::new(d, device),
            mlp: Mlp::new(d, hidden, device),
        }
    }

    /// `h + attention(norm1(h))`, then `+ mlp(norm2(·))`, on `h: [B, V, S, D]`. `hook` sees
    /// `{name}.norm1`, `.attention`, `.norm2`, `.mlp` and `.out`.
    pub(crate) fn forward(
        &self,
        h: Tensor<4>,
        kind: LayerKind,
        pass: &Pass<'_>,
        cache: CacheEntry<'_>,
        name: &str,
        hook: &mut dyn FnMut(&str, Tensor<4>),
    ) -> Tensor<4> {
        let z = self.norm1.forward(h.clone());
        hook(&format!("{name}.norm1"), z.clone());
        let a = self.attention.forward(z, kind, pass, cache);
        hook(&format!("{name}.attention"), a.clone());
        let h = h.add(a);
        let z = self.norm2.forward(h.clone());
        hook(&format!("{name}.norm2"), z.clone());
        let m = self.mlp.forward(z);
        hook(&format!("{name}.mlp"), m.clone());
        let h = h.add(m);
        hook(&format!("{name}.out"), h.clone());
        h
    }
}
