//! [`Rotary`]: the rotary (+ xPos) factors of one forward pass, on the device and on the host.

use burn::tensor::{Device, Tensor, TensorData};

use super::super::cpu::layers::Rotation;
use crate::error::{Error, InputKind, Result};

/// Rotary position embedding factors with optional xPos scaling for `S` positions: interleaved
/// pairs `(x₂ⱼ, x₂ⱼ₊₁) ↦ (x₂ⱼ cos − x₂ⱼ₊₁ sin, x₂ⱼ₊₁ cos + x₂ⱼ sin)` over the first `rotated`
/// dimensions of each head (the rest pass through), then times the xPos scale for a query and
/// divided by it for a key. Built once per forward pass from the model's angle and scale tables
/// and shared by every layer that rotates; [`LayerOps::attention`](super::LayerOps::attention)
/// applies it to queries and keys.
#[derive(Debug, Clone)]
pub struct Rotary {
    rotated: usize,
    /// `cos` per (position, dimension), `[S·rotated]`.
    cos: Vec<f32>,
    /// `sin` likewise, negated for the first member of each pair (rotate-half's sign).
    sin: Vec<f32>,
    /// The xPos scale per (position, dimension), empty without xPos.
    scale: Vec<f32>,
    /// `cos`, `sin` as `[1, 1, S, rotated/2, 2]`, `scale` as `[1, 1, S, rotated]`.
    tensors: (Tensor<5>, Tensor<5>, Option<Tensor<4>>),
}

impl Rotary {
    /// The factors of `angles` (`[S, rotated]`, row-major, equal within each pair) and, with
    /// xPos, `scales` (`[S, rotated]`), on `device`.
    ///
    /// # Errors
    /// [`Error::Input`] if `rotated` is odd or a table's length is not `S·rotated`.
    pub fn new(
        angles: &[f32],
        scales: Option<&[f32]>,
        [positions, rotated]: [usize; 2],
        device: &Device,
    ) -> Result<Self> {
        let len = positions * rotated;
        let wrong = |table: &str, got: usize| {
            Error::input(
                "Rotary::new",
                InputKind::Shape,
                format!(
                    "`{table}` holds {got} values, but {positions} positions of {rotated} rotated \
                 dimensions need {len}"
                ),
            )
        };
        if rotated % 2 == 1 {
            return Err(Error::input(
                "Rotary::new",
                InputKind::OutOfRange,
                format!("`rotated` is {rotated}; rotary pairs need an even count"),
            ));
        }
        if angles.len() != len {
            return Err(wrong("angles", angles.len()));
        }
        if let Some(s) = scales.filter(|s| s.len() != len) {
            return Err(wrong("scales", s.len()));
        }
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles
            .iter()
            .enumerate()
            .map(|(i, a)| if i % 2 == 0 { -a.sin() } else { a.sin() })
            .collect();
        let scale = scales.map(<[f32]>::to_vec).unwrap_or_default();
        Ok(Self::from_tables(rotated, cos, sin, scale, device))
    }

    /// The factors of host tables (`sin` with rotate-half's sign, `scale` empty without xPos),
    /// their tensors made on `device`.
    fn from_tables(
        rotated: usize,
        cos: Vec<f32>,
        sin: Vec<f32>,
        scale: Vec<f32>,
        device: &Device,
    ) -> Self {
        let positions = cos.len() / rotated.max(1);
        let pairs = |t: &[f32]| {
            Tensor::<5>::from_data(
                TensorData::new(t.to_vec(), [1, 1, positions, rotated / 2, 2]),
                device,
            )
        };
        let scaled = (!scale.is_empty()).then(|| {
            let shape = [1, 1, positions, rotated];
            Tensor::<4>::from_data(TensorData::new(scale.clone(), shape), device)
        });
        Rotary {
            tensors: (pairs(&cos), pairs(&sin), scaled),
            rotated,
            cos,
            sin,
            scale,
        }
    }

    /// Positions `S`.
    pub fn positions(&self) -> usize {
        self.cos.len() / self.rotated.max(1)
    }

    /// Rotated dimensions per head.
    pub fn rotated(&self) -> usize {
        self.rotated
    }

    /// The same factors with their tensors on `device` (made from the host tables).
    pub(crate) fn to_device(&self, device: &Device) -> Self {
        let (cos, sin, scale) = (self.cos.clone(), self.sin.clone(), self.scale.clone());
        Self::from_tables(self.rotated, cos, sin, scale, device)
    }

    /// The device tensors: `cos` and `sin` `[1, 1, S, rotated/2, 2]`, the xPos scale
    /// `[1, 1, S, rotated]` (for the GPU kernels).
    #[cfg(feature = "wgpu")]
    pub(crate) fn tables(&self) -> (&Tensor<5>, &Tensor<5>, Option<&Tensor<4>>) {
        let (cos, sin, scale) = &self.tensors;
        (cos, sin, scale.as_ref())
    }

    /// The host tables, for the CPU kernels.
    pub(crate) fn host(&self) -> Rotation<'_> {
        Rotation {
            rotated: self.rotated,
            cos: &self.cos,
            sin: &self.sin,
            scale: &self.scale,
        }
    }

    /// The rotation (and xPos scale: times it for queries, divided by it for keys) on
    /// `x: [N, H, S, Dh]` with `Dh ≥ rotated`; dimensions past the rotated ones pass through. As
    /// burn tensor ops, on any device.
    pub fn apply(&self, x: Tensor<4>, query: bool) -> Tensor<4> {
        let [n, h, s, dh] = x.dims();
        let w = self.rotated;
        let (x, rest) = if w < dh {
            (x.clone().narrow(3, 0, w), Some(x.narrow(3, w, dh - w)))
        } else {
            (x, None)
        };
        let (cos, sin, scale) = &self.tensors;
        // Interleaved rotate_half, (x0, x1) -> (-x1, x0) for each pair, is the pair reversed
        // (a view) times (-1, 1), the sign folded into `sin`: two products and a sum, with no
        // copies of one-wide slices (each a slow strided copy on the CPU).
        let pairs = x.reshape([n, h, s, w / 2, 2]);
        let turned = pairs.clone().flip([4]);
        let mut y = pairs
            .mul(cos.clone())
            .add(turned.mul(sin.clone()))
            .reshape([n, h, s, w]);
        if let Some(scale) = scale {
            y = if query {
                y.mul(scale.clone())
            } else {
                y.div(scale.clone())
            };
        }
        match rest {
            Some(rest) => Tensor::cat(vec![y, rest], 3),
            None => y,
        }
    }
}
