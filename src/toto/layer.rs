//! One of Toto's transformer layers (toto-ts's `TransformerLayer`): pre-norm attention and a
//! SwiGLU MLP, each added to the residual stream.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::attention::{Attention, CacheEntry, Pass};
use super::config::LayerKind;
use crate::backend::{LayerOps, Prepared, SiluHalf};
use crate::error::Result;
use crate::nn::linear::{dense, linear};
use crate::nn::watch::Watch;

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
    pub(crate) fn forward<B: LayerOps, const D: usize>(
        &self,
        ops: &B,
        x: Tensor<D>,
    ) -> Result<Tensor<D>> {
        ops.rms_norm(x, Some(&self.scale.val()), RMS_EPS)
    }
}

/// SwiGLU: `w12` projects to `[gate | up]`, `w3` back.
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    pub(crate) w12: Linear,
    pub(crate) w3: Linear,
    /// What the backend derives from `w12` and `w3` (not in the checkpoint).
    #[module(skip)]
    pub(crate) prepared: [Prepared; 2],
}

impl Mlp {
    fn new(d: usize, hidden: usize, device: &Device) -> Self {
        Mlp {
            w12: linear(d, 2 * hidden, device),
            w3: linear(hidden, d, device),
            prepared: Default::default(),
        }
    }

    /// `w3(silu(gate) · up)` with `[gate | up] = w12(x)`.
    pub(crate) fn forward<B: LayerOps, const D: usize>(
        &self,
        ops: &B,
        x: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let y = dense(ops, &self.w12, &self.prepared[0], x)?;
        let gated = ops.silu_gate(y, SiluHalf::First)?;
        dense(ops, &self.w3, &self.prepared[1], gated)
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

    /// `h + attention(norm1(h))`, then `+ mlp(norm2(·))`, on `h: [B, V, S, D]`. `watch` sees
    /// `{name}.norm1`, `.attention`, `.norm2`, `.mlp` and `.out`.
    pub(crate) fn forward<B: LayerOps>(
        &self,
        h: Tensor<4>,
        kind: LayerKind,
        pass: &Pass<'_, B>,
        cache: CacheEntry<'_>,
        name: &str,
        watch: &mut Watch<'_>,
    ) -> Result<Tensor<4>> {
        let ops = pass.ops;
        let z = self.norm1.forward(ops, h.clone())?;
        watch.show(&format!("{name}.norm1"), || z.clone());
        let a = self.attention.forward(z, kind, pass, cache)?;
        watch.show(&format!("{name}.attention"), || a.clone());
        let h = h.add(a);
        let z = self.norm2.forward(ops, h.clone())?;
        watch.show(&format!("{name}.norm2"), || z.clone());
        let m = self.mlp.forward(ops, z)?;
        watch.show(&format!("{name}.mlp"), || m.clone());
        let h = h.add(m);
        watch.show(&format!("{name}.out"), || h.clone());
        Ok(h)
    }
}
