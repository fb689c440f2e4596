//! [`FallbackBackend`]'s layer ops: each routed like a distribution op — natively on the GPU
//! when it supports the op, else forwarded to the CPU with its inputs (weights included) and
//! recorded in the report.

use burn::tensor::{Bool, Device, Tensor};

use super::FallbackBackend;
use crate::backend::layers::{
    Affine, AttentionSpec, LayerOps, Mask, Prepared, QkNorm, Rotary, SiluHalf,
};
use crate::backend::transfer::Transfer;
use crate::error::Result;
use crate::op::Op;

impl Transfer for Rotary {
    /// The host tables cross (they are on the host already); the tensors are made anew there.
    fn transfer(self, _: Op, device: &Device) -> Result<(Self, u64)> {
        let bytes = 4 * 3 * (self.positions() * self.rotated()) as u64;
        Ok((self.to_device(device), bytes))
    }
}

/// The tensors an [`AttentionSpec`] borrows, owned so that they can cross devices: the query
/// and key norms' weights, the per-dimension query multiplier, the rotary factors, the mask.
type AttentionInputs = (
    (Option<Tensor<1>>, Option<Tensor<1>>),
    Option<Tensor<1>>,
    (Option<Rotary>, Option<Tensor<4, Bool>>),
);

fn attention_inputs(spec: &AttentionSpec<'_>) -> AttentionInputs {
    let norm = spec
        .qk_norm
        .map_or((None, None), |q| (q.query.cloned(), q.key.cloned()));
    (
        norm,
        spec.query_scale.map(|(m, _)| m.clone()),
        (spec.rotary.cloned(), spec.mask.blocked().cloned()),
    )
}

/// `spec` over the `inputs` that crossed to the CPU.
fn attention_spec<'a>(spec: &AttentionSpec<'_>, inputs: &'a AttentionInputs) -> AttentionSpec<'a> {
    let ((query, key), per_dim, (rotary, blocked)) = inputs;
    AttentionSpec {
        heads: spec.heads,
        divisor: spec.divisor,
        qk_norm: spec.qk_norm.map(|q| QkNorm {
            query: query.as_ref(),
            key: key.as_ref(),
            eps: q.eps,
        }),
        query_scale: spec
            .query_scale
            .and_then(|(_, c)| per_dim.as_ref().map(|m| (m, c))),
        rotary: rotary.as_ref(),
        mask: spec.mask.with_blocked(blocked.clone()),
    }
}

/// A forwarded linear layer multiplies on the CPU with its weights read back each call (and,
/// on the CPU's packed kernel, packed each call): forwarding serves a GPU that lacks the op, not
/// speed.
impl<Gpu: LayerOps, Cpu: LayerOps> LayerOps for FallbackBackend<Gpu, Cpu> {
    fn linear_unchecked<const D: usize>(&self, x: Tensor<D>, a: Affine<'_>) -> Result<Tensor<D>> {
        let n = x.shape().num_elements();
        let weights = (a.weight.clone(), a.bias.cloned());
        self.run(
            Op::Linear,
            n,
            (x, weights),
            |g, (x, _)| g.linear_unchecked(x, a),
            |c, (x, (w, b))| {
                let prepared = Prepared::default();
                let on_cpu = Affine {
                    weight: &w,
                    bias: b.as_ref(),
                    prepared: &prepared,
                    ..a
                };
                c.linear_unchecked(x, on_cpu)
            },
        )
    }

    fn rms_norm_unchecked<const D: usize>(
        &self,
        x: Tensor<D>,
        weight: Option<&Tensor<1>>,
        eps: f64,
    ) -> Result<Tensor<D>> {
        let n = x.shape().num_elements();
        self.run(
            Op::RmsNorm,
            n,
            (x, weight.cloned()),
            |g, (x, w)| g.rms_norm_unchecked(x, w.as_ref(), eps),
            |c, (x, w)| c.rms_norm_unchecked(x, w.as_ref(), eps),
        )
    }

    fn silu_unchecked<const D: usize>(&self, x: Tensor<D>, scale: f64) -> Result<Tensor<D>> {
        let n = x.shape().num_elements();
        self.run(
            Op::Silu,
            n,
            x,
            |g, x| g.silu_unchecked(x, scale),
            |c, x| c.silu_unchecked(x, scale),
        )
    }

    fn silu_gate_unchecked<const D: usize>(
        &self,
        y: Tensor<D>,
        half: SiluHalf,
    ) -> Result<Tensor<D>> {
        let n = y.shape().num_elements();
        self.run(
            Op::SiluGate,
            n,
            y,
            |g, y| g.silu_gate_unchecked(y, half),
            |c, y| c.silu_gate_unchecked(y, half),
        )
    }

    fn residual_add_unchecked<const D: usize>(
        &self,
        f: Tensor<D>,
        skip: Tensor<D>,
        tau: f32,
    ) -> Result<Tensor<D>> {
        let n = f.shape().num_elements();
        self.run(
            Op::ResidualAdd,
            n,
            (f, skip),
            |g, (f, s)| g.residual_add_unchecked(f, s, tau),
            |c, (f, s)| c.residual_add_unchecked(f, s, tau),
        )
    }

    fn attention_unchecked(&self, qkv: Tensor<3>, spec: &AttentionSpec<'_>) -> Result<Tensor<3>> {
        let n = qkv.shape().num_elements();
        self.run(
            Op::Attention,
            n,
            (qkv, attention_inputs(spec)),
            |g, (qkv, _)| g.attention_unchecked(qkv, spec),
            |c, (qkv, inputs)| c.attention_unchecked(qkv, &attention_spec(spec, &inputs)),
        )
    }

    /// Routed as [`Op::Attention`], whose first half it is (the mask, which it does not read,
    /// stays where it is).
    fn attention_heads(
        &self,
        qkv: Tensor<3>,
        spec: &AttentionSpec<'_>,
    ) -> Result<(Tensor<4>, Tensor<4>, Tensor<4>)> {
        let n = qkv.shape().num_elements();
        let (norms, per_dim, (rotary, _mask)) = attention_inputs(spec);
        self.run(
            Op::Attention,
            n,
            (qkv, (norms, per_dim, (rotary, None))),
            |g, (qkv, _)| g.attention_heads(qkv, spec),
            |c, (qkv, inputs)| c.attention_heads(qkv, &attention_spec(spec, &inputs)),
        )
    }

    fn attention_core_unchecked(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        divisor: f64,
        mask: &Mask,
    ) -> Result<Tensor<4>> {
        let n = q.shape().num_elements();
        self.run(
            Op::AttentionCore,
            n,
            ((q, k, v), mask.blocked().cloned()),
            |g, ((q, k, v), _)| g.attention_core_unchecked(q, k, v, divisor, mask),
            |c, ((q, k, v), m)| c.attention_core_unchecked(q, k, v, divisor, &mask.with_blocked(m)),
        )
    }

    fn sort_first_unchecked<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        let n = x.shape().num_elements();
        self.run(
            Op::SortFirst,
            n,
            x,
            |g, x| g.sort_first_unchecked(x),
            |c, x| c.sort_first_unchecked(x),
        )
    }

    /// The GPU backend's way.
    fn forward_pass<R: Send>(&self, pass: impl FnOnce() -> R + Send) -> R {
        self.gpu.forward_pass(pass)
    }
}
