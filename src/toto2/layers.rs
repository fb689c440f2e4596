//! Toto 2.0's unit-scaled layers (dd-unit-scaling, forward scales only): linear layers whose
//! output (bias included) is scaled by `fan_in^−½` (hidden) or `fan_in^−1` (readout), RMSNorm
//! with an optional weight, the residual MLPs of the patch embedding and the output head, and
//! the gated feed-forward network.

use std::sync::OnceLock;

use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Distribution as Init, FloatDType, Tensor};

use crate::backend::cpu_gemm::PackedMatrix;
use crate::backend::transfer::upload;
use crate::nn::checkpoint::Checkpoint;
use crate::nn::host;
use crate::nn::linear::{CpuPacked, affine, host_values, is_cpu, over_rows};

/// unit-scaling's SiLU output scale at `mult = 1`:
/// `exp(0.8 ln sqrt(2 / (1 − 1/π)) + 0.2 ln 2)`, used in the residual MLPs only.
pub(crate) const SILU_SCALE: f64 = 1.766_782_948_312_328;

/// The residual MLPs' `1/sqrt(1 + τ²)` and `τ/sqrt(1 + τ²)` at `τ = 1`.
const HALF_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// The number format of Toto 2.0's matrix products: the patch embedding's, the decoder's
/// attention projections and feed-forward layers, and the output head's hidden layer — over 99%
/// of a forecast's arithmetic. Everything else stays in f32 (the scaler in f64) whatever this
/// says: norms, softmax, the residual stream, and the head's two readout layers, whose outputs
/// are the quantiles in asinh space (rounding them to 11 bits would cost up to `|y|·2⁻¹¹`
/// relative error in real space, in the tails). Set it with
/// [`Toto2::with_precision`](super::Toto2::with_precision).
///
/// Half precision rounds the weights once and each product's inputs and output to 11 (`F16`) or
/// 8 (`Bf16`) significant bits, accumulating in f32. Toto 2.0's layers are unit-scaled (activations
/// and weights near unit variance), which is what makes 16-bit formats safe for it. On GPUs with
/// 16-bit tensor cores it is several times faster for the large sizes; docs/PERFORMANCE.md has
/// the measurements and the accuracy against the f32 reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// f32 throughout: matches toto-2 to 1e-5 (the default).
    #[default]
    F32,
    /// IEEE half precision (10-bit mantissa, range ±65504) weights and products.
    F16,
    /// bfloat16 (7-bit mantissa, f32's range) weights and products.
    Bf16,
}

impl Precision {
    /// burn's format for the products; `None` for f32.
    pub(crate) fn dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::F16 => Some(FloatDType::F16),
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

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
    /// The f32 weight packed for the CPU kernel, the first time the layer runs there.
    cpu: CpuPacked,
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
            cpu: CpuPacked::default(),
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
            cpu: CpuPacked::default(),
        }
    }

    /// Stores the weight in `precision`'s format (rounded once) and computes the product in it.
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        let dtype = precision.dtype();
        self.weight = self.weight.clone().cast(dtype.unwrap_or(FloatDType::F32));
        self.compute = dtype;
        self.cpu = CpuPacked::default();
    }

    /// `(x W + b) · s` over every row of `x: [.., in]`, as one product (in f32 on the CPU
    /// through the packed kernel).
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let Some(dtype) = self.compute else {
            return affine(x, &self.weight, self.bias.as_ref(), self.scale, &self.cpu);
        };
        // The product in the weight's format (f32 accumulation on tensor cores), the rest of
        // the layer in f32.
        over_rows(x, |x| {
            let mut y = x
                .cast(dtype)
                .matmul(self.weight.clone())
                .cast(FloatDType::F32);
            if let Some(b) = &self.bias {
                y = y.add(b.clone().unsqueeze());
            }
            y.mul_scalar(self.scale)
        })
    }
}

impl UnitLinear {
    /// The layer as the CPU kernel's packed matrix (packed the first time): f32 weights on the
    /// CPU, where the CPU has a kernel; `None` otherwise.
    pub(crate) fn host(&self) -> Option<&PackedMatrix> {
        let f32_on_cpu = self.compute.is_none()
            && self.weight.dtype() == DType::F32
            && is_cpu(&self.weight.device());
        f32_on_cpu
            .then(|| self.cpu.get(&self.weight, self.bias.as_ref(), self.scale))
            .flatten()
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
    /// The weight's values, read the first time the CPU path needs them.
    host: OnceLock<Vec<f32>>,
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
        Some(Norm {
            weight,
            eps,
            host: OnceLock::new(),
        })
    }

    /// A norm of width `d`, its weight (if any) at 1.
    pub(crate) fn ones(d: usize, weighted: bool, eps: f64, device: &Device) -> Self {
        Norm {
            weight: weighted.then(|| Tensor::ones([d], device)),
            eps,
            host: OnceLock::new(),
        }
    }

    /// The weight's values (for the CPU path), `None` for a norm without weight.
    pub(crate) fn host_weight(&self) -> Option<&[f32]> {
        let w = self.weight.as_ref()?;
        Some(
            self.host
                .get_or_init(|| host_values(w.clone().mul_scalar(1.0))),
        )
    }

    /// `ε` in f32, as burn adds it to an f32 tensor.
    pub(crate) fn eps(&self) -> f32 {
        self.eps as f32
    }

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = x
            .clone()
            .square()
            .mean_dim(D - 1)
            .add_scalar(self.eps)
            .sqrt();
        let y = x.div(rms);
        match &self.weight {
            None => y,
            Some(w) => {
                let mut shape = [1; D];
                shape[D - 1] = w.dims()[0];
                y.mul(w.clone().reshape(shape))
            }
        }
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

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let (Some(l1), Some(l2), Some(skip)) = (
            self.linear1.host(),
            self.linear2.host(),
            self.skip_proj.host(),
        ) {
            // The CPU: one pass per step on host values, the products on the packed kernel.
            let (mut dims, device) = (x.dims(), x.device());
            let x = host_values(x);
            let rows = x.len() / l1.dims()[0].max(1);
            let mut h = l1.apply(&x, rows);
            host::silu_in_place(&mut h, SILU_SCALE as f32);
            let h = l2.apply(&h, rows);
            let mut y = skip.apply(&x, rows);
            let c = HALF_SQRT2 as f32;
            y.iter_mut().zip(&h).for_each(|(y, h)| *y = h * c + *y * c);
            dims[D - 1] = l2.dims()[1];
            return upload(y, dims, &device);
        }
        let h = silu(self.linear1.forward(x.clone())).mul_scalar(SILU_SCALE);
        let h = self.linear2.forward(h);
        let skip = self.skip_proj.forward(x);
        h.mul_scalar(HALF_SQRT2).add(skip.mul_scalar(HALF_SQRT2))
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

    /// `fc1` and `fc2` as packed matrices for the CPU ([`UnitLinear::host`]).
    pub(crate) fn host(&self) -> Option<[&PackedMatrix; 2]> {
        Some([self.fc1.host()?, self.fc2.host()?])
    }

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = self.fc1.forward(x);
        let f = y.dims()[D - 1] / 2;
        let gate = y.clone().narrow(D - 1, 0, f);
        let x = y.narrow(D - 1, f, f);
        self.fc2.forward(gate.mul(silu(x)))
    }
}

/// `τ/sqrt(1 + τ²) · f + 1/sqrt(1 + τ²) · skip`, in f32 as the reference computes it from its
/// f32 `tau` buffer.
pub(crate) fn residual_add<const D: usize>(f: Tensor<D>, skip: Tensor<D>, tau: f32) -> Tensor<D> {
    let denom = (1.0f32 + tau * tau).sqrt();
    f.mul_scalar(tau / denom)
        .add(skip.mul_scalar(1.0f32 / denom))
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
