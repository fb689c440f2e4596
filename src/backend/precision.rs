//! The number format of a model's matrix products, and which one a device gets by default.

use burn::tensor::{Device, FloatDType};

/// The number format of a model's matrix products. For Toto 2.0: the patch embedding's, the
/// decoder's attention projections and feed-forward layers, and the output head's hidden layer
/// — over 99% of a forecast's arithmetic. Everything else stays in f32 (the scaler in f64)
/// whatever this says: norms, softmax, the residual stream, and the head's two readout layers,
/// whose outputs are the quantiles in asinh space (rounding them to 11 bits would cost up to
/// `|y|·2⁻¹¹` relative error in real space, in the tails). Toto 1.0 computes in f32 on every
/// device.
///
/// Half precision rounds the weights once and each product's inputs and output to 11 (`F16`) or
/// 8 (`Bf16`) significant bits, accumulating in f32. Toto 2.0's layers are unit-scaled
/// (activations and weights near unit variance), which is what makes 16-bit formats safe for
/// it: on both toto-2 fixtures its f16 forecasts stay within a scaled error of 1.1e-3 of the
/// f32 reference. On GPUs with 16-bit tensor cores it is several times faster for the large
/// sizes; docs/PERFORMANCE.md has the measurements. A product too small for that to pay (on
/// `Wgpu`, at most 2²⁹ multiply-adds: a forecast of a few series, a streaming session's pass)
/// multiplies its f32 input by the rounded weight widened to f32, kept with the layer after its
/// first such product: the casts around a 16-bit product cost more launches than its arithmetic
/// saves there.
///
/// Which one a model gets: the backend's [`Backend::precision`](crate::Backend::precision) when
/// it is loaded — `F16` on a GPU whose kernels reach f16 tensor cores (cooperative matrices),
/// `F32` everywhere else — changed on the backend before loading
/// ([`Wgpu::with_precision`](crate::Wgpu::with_precision)) or on the model after an f32 load
/// ([`Toto2::with_precision`](crate::toto2::Toto2::with_precision)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// f32 throughout: matches toto-2 to 1e-5 (CPUs and GPUs without f16 tensor cores).
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

    /// Whether `device` has arithmetic in this format (f32 everywhere).
    pub(crate) fn supported_on(self, device: &Device) -> bool {
        self.dtype()
            .is_none_or(|dtype| device.supports_dtype(dtype))
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
