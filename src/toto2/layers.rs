//! Toto 2.0's unit-scaled layers (dd-unit-scaling, forward scales only): linear layers whose
//! output (bias included) is scaled by `fan_in^−½` (hidden) or `fan_in^−1` (readout), RMSNorm
//! with an optional weight, the residual MLPs of the patch embedding and the output head, and
//! the gated feed-forward network.

use burn::tensor::{Device, Distribution as Init, FloatDType, Tensor};

pub use crate::backend::Precision;
use crate::backend::{Affine, LayerOps, Prepared, SiluHalf};
use crate::error::Result;
use crate::nn::checkpoint::Checkpoint;

/// unit-scaling's SiLU output scale at `mult = 1`:
/// `exp(0.8 ln sqrt(2 / (1 − 1/π)) + 0.2 ln 2)`, used in the residual MLPs only.
pub(crate) const SILU_SCALE: f64 = 1.766_782_948_312_328;

/// Whether a linear layer feeds the residual stream (`x Wᵀ` scaled by `fan_in^−½`) or reads
/// out (scaled by `fan_in^−1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Hidden,
    Readout,
}

/// A unit-scaled linear layer: `y = (x W + b) · s` with `W` as `[in, out]`.
#[derive(Debug, Clone)]
pub(crate) struct UnitLinear {
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    scale: f64,
    /// The format of the weight and the product when it is not f32 ([`Precision`]).
    compute: Option<FloatDType>,
    /// What the backend derives from the weights, the first time the layer runs.
    prepared: Prepared,
}

impl UnitLinear {
    /// Loads `{name}.weight` (and `{name}.bias` when `bias`) of `inputs → outputs`.
    pub(crate) fn load(
        ckpt: &mut Checkpoint,
        name: &str,
        [inputs, outputs]: [usize; 2],
        bias: bool,
        scale: Scale,
        device: &Device,
    ) -> Option<Self> {
        let weight = ckpt.linear_weight(&format!("{name}.weight"), [inputs, outputs], device);
        let bias = bias.then(|| ckpt.tensor(&format!("{name}.bias"), [outputs], device));
        Some(UnitLinear {
            weight: weight?,
            bias: bias.map_or(Some(None), |b| b.map(Some))?,
            scale: unit_scale(inputs, scale),
            compute: None,
            prepared: Prepared::default(),
        })
    }

    /// A layer with weights drawn from `N(0, 1)` (unit scaling's initialisation) and zero
    /// biases.
    pub(crate) fn random(
        [inputs, outputs]: [usize; 2],
        bias: bool,
        scale: Scale,
        device: &Device,
    ) -> Self {
        UnitLinear {
            weight: Tensor::random([inputs, outputs], Init::Normal(0.0, 1.0), device),
            bias: bias.then(|| Tensor::zeros([outputs], device)),
            scale: unit_scale(inputs, scale),
            compute: None,
            prepared: Prepared::default(),
        }
    }

    /// Stores the weight in `precision`'s format (rounded once) and computes the product in it.
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        let dtype = precision.dtype();
        self.weight = self.weight.clone().cast(dtype.unwrap_or(FloatDType::F32));
        self.compute = dtype;
        self.prepared = Prepared::default();
    }

    /// `(x W + b) · s` over every row of `x: [.., in]`, as one product (the backend's
    /// [`LayerOps::linear`]; in [`Precision`]'s format when it is not f32, the rest in f32).
    pub(crate) fn forward<B: LayerOps, const D: usize>(
        &self,
        ops: &B,
        x: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let affine = Affine::new(&self.weight, self.bias.as_ref(), self.scale, &self.prepared);
        let affine = match self.compute {
            Some(dtype) => affine.computed_in(dtype),
            None => affine,
        };
        ops.linear(x, affine)
    }
}

fn unit_scale(fan_in: usize, scale: Scale) -> f64 {
    let fan_in = fan_in.max(1) as f64;
    match scale {
        Scale::Hidden => 1.0 / fan_in.sqrt(),
        Scale::Readout => 1.0 / fan_in,
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + ε)`, times the weight when there is
/// one.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    weight: Option<Tensor<1>>,
    eps: f64,
}

impl Norm {
    /// Loads `{name}.weight` of width `d` when `weighted`.
    pub(crate) fn load(
        ckpt: &mut Checkpoint,
        name: &str,
        d: usize,
        weighted: bool,
        eps: f64,
        device: &Device,
    ) -> Option<Self> {
        let weight = match weighted {
            true => Some(ckpt.tensor(&format!("{name}.weight"), [d], device)?),
            false => None,
        };
        Some(Norm { weight, eps })
    }

    /// A norm of width `d`, its weight (if any) at 1.
    pub(crate) fn ones(d: usize, weighted: bool, eps: f64, device: &Device) -> Self {
        Norm {
            weight: weighted.then(|| Tensor::ones([d], device)),
            eps,
        }
    }

    /// The weight, `None` for a norm without weight.
    pub(crate) fn weight(&self) -> Option<&Tensor<1>> {
        self.weight.as_ref()
    }

    /// `ε`.
    pub(crate) fn eps(&self) -> f64 {
        self.eps
    }

    /// The backend's [`LayerOps::rms_norm`] over the last dimension.
    pub(crate) fn forward<B: LayerOps, const D: usize>(
        &self,
        ops: &B,
        x: Tensor<D>,
    ) -> Result<Tensor<D>> {
        ops.rms_norm(x, self.weight.as_ref(), self.eps)
    }
}

/// The residual MLP of the patch embedding (`InputResidualMLP`) and of the output head
/// (`OutputResidualMLP`): `(h + skip)/√2` with `h = linear2(SILU_SCALE · silu(linear1(x)))`
/// and `skip = skip_proj(x)`.
#[derive(Debug, Clone)]
pub(crate) struct ResidualMlp {
    linear1: UnitLinear,
    linear2: UnitLinear,
    skip_proj: UnitLinear,
}

impl ResidualMlp {
    /// `[inputs → hidden → outputs]`; the head's `linear2` and `skip_proj` read out.
    pub(crate) fn load(
        ckpt: &mut Checkpoint,
        name: &str,
        [inputs, hidden, outputs]: [usize; 3],
        readout: bool,
        device: &Device,
    ) -> Option<Self> {
        let out = if readout {
            Scale::Readout
        } else {
            Scale::Hidden
        };
        let linear1 = UnitLinear::load(
            ckpt,
            &format!("{name}.linear1"),
            [inputs, hidden],
            true,
            Scale::Hidden,
            device,
        );
        let linear2 = UnitLinear::load(
            ckpt,
            &format!("{name}.linear2"),
            [hidden, outputs],
            true,
            out,
            device,
        );
        let skip_proj = UnitLinear::load(
            ckpt,
            &format!("{name}.skip_proj"),
            [inputs, outputs],
            true,
            out,
            device,
        );
        Some(ResidualMlp {
            linear1: linear1?,
            linear2: linear2?,
            skip_proj: skip_proj?,
        })
    }

    /// Random weights of the shapes `load` reads.
    pub(crate) fn random(widths: [usize; 3], readout: bool, device: &Device) -> Self {
        let [i, h, o] = widths;
        let out = if readout {
            Scale::Readout
        } else {
            Scale::Hidden
        };
        ResidualMlp {
            linear1: UnitLinear::random([i, h], true, Scale::Hidden, device),
            linear2: UnitLinear::random([h, o], true, out, device),
            skip_proj: UnitLinear::random([i, o], true, out, device),
        }
    }

    /// Every layer in `precision`.
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        self.linear1.set_precision(precision);
        self.linear2.set_precision(precision);
        self.skip_proj.set_precision(precision);
    }

    /// The hidden layer in `precision`; the two layers that produce the output stay f32.
    pub(crate) fn set_hidden_precision(&mut self, precision: Precision) {
        self.linear1.set_precision(precision);
    }

    /// `(h + skip)/√2` (a unit-scaled residual sum at `τ = 1`).
    pub(crate) fn forward<B: LayerOps, const D: usize>(
        &self,
        ops: &B,
        x: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let h = ops.silu(self.linear1.forward(ops, x.clone())?, SILU_SCALE)?;
        let h = self.linear2.forward(ops, h)?;
        let skip = self.skip_proj.forward(ops, x)?;
        ops.residual_add(h, skip, 1.0)
    }
}

/// The gated feed-forward network (`GatedLinearUnitFeedForwardNetwork`):
/// `fc2(gate · silu(x))` with `[gate | x] = fc1(input)`, plain SiLU.
#[derive(Debug, Clone)]
pub(crate) struct Ffn {
    fc1: UnitLinear,
    fc2: UnitLinear,
}

impl Ffn {
    pub(crate) fn load(
        ckpt: &mut Checkpoint,
        name: &str,
        [d, f]: [usize; 2],
        bias: bool,
        device: &Device,
    ) -> Option<Self> {
        let fc1 = UnitLinear::load(
            ckpt,
            &format!("{name}.fc1"),
            [d, 2 * f],
            bias,
            Scale::Hidden,
            device,
        );
        let fc2 = UnitLinear::load(
            ckpt,
            &format!("{name}.fc2"),
            [f, d],
            bias,
            Scale::Hidden,
            device,
        );
        Some(Ffn {
            fc1: fc1?,
            fc2: fc2?,
        })
    }

    pub(crate) fn random([d, f]: [usize; 2], bias: bool, device: &Device) -> Self {
        Ffn {
            fc1: UnitLinear::random([d, 2 * f], bias, Scale::Hidden, device),
            fc2: UnitLinear::random([f, d], bias, Scale::Hidden, device),
        }
    }

    pub(crate) fn set_precision(&mut self, precision: Precision) {
        self.fc1.set_precision(precision);
        self.fc2.set_precision(precision);
    }

    /// `fc2(gate · silu(x))` with `[gate | x] = fc1(input)`.
    pub(crate) fn forward<B: LayerOps, const D: usize>(
        &self,
        ops: &B,
        x: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let y = self.fc1.forward(ops, x)?;
        let gated = ops.silu_gate(y, SiluHalf::Second)?;
        self.fc2.forward(ops, gated)
    }
}

/// unit-scaling's `transformer_residual_scaling_rule`: the `(attn_tau, mlp_tau)` of each of
/// `layers` layers, which the checkpoints store as buffers.
pub(crate) fn residual_taus(layers: usize, mult: f64, attn_ratio: f64) -> Vec<(f32, f32)> {
    let alpha_mlp = mult * (2.0 / (1.0 + attn_ratio * attn_ratio)).sqrt();
    let alpha_attn = attn_ratio * alpha_mlp;
    let total = 2 * layers;
    let tau = |index: usize| {
        let (n_attn, n_mlp) = (index.div_ceil(2), index / 2);
        let alpha = if index.is_multiple_of(2) {
            alpha_attn
        } else {
            alpha_mlp
        };
        let denom = total as f64 / 2.0
            + n_attn as f64 * alpha_attn * alpha_attn
            + n_mlp as f64 * alpha_mlp * alpha_mlp;
        (alpha / denom.sqrt()) as f32
    };
    (0..layers).map(|i| (tau(2 * i), tau(2 * i + 1))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_taus_follow_unit_scaling() {
        // The tiny fixture's config (mult 1, ratio sqrt(32 / ln 32), 4 layers); its
        // model.safetensors stores attn_tau 0.67167, 0.54842, 0.47494, 0.42480 and mlp_tau
        // 0.18349, 0.15825, 0.14119, 0.12867 (toto-2 2.0.0, PORTING notes §6.3).
        let taus = residual_taus(4, 1.0, 3.038_626_048_346_417_4);
        let attn = [0.67167, 0.54842, 0.47494, 0.42480];
        let mlp = [0.18349, 0.15825, 0.14119, 0.12867];
        for (i, (a, m)) in taus.iter().enumerate() {
            assert!((a - attn[i]).abs() < 1e-5, "attn {i}: {a}");
            assert!((m - mlp[i]).abs() < 1e-5, "mlp {i}: {m}");
        }
    }

    #[test]
    fn silu_scale_is_unit_scalings() {
        // exp(alpha ln(upper) + (1 - alpha) ln(lower)), alpha = 1/(1 + 0.25) at mult 1.
        let upper = (2.0 / (1.0 - 1.0 / std::f64::consts::PI)).sqrt();
        let want = (0.8 * upper.ln() + 0.2 * 2f64.ln()).exp();
        assert!((SILU_SCALE - want).abs() < 1e-15);
    }
}
