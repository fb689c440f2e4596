//! Rotary position embedding with xPos scaling, as toto-ts computes it (`RotaryEmbedding` of
//! `rotary-embedding-torch` with `use_xpos=True`, interleaved pairs), in f32.

use burn::tensor::{Device, Tensor, TensorData};

/// Rotary angles (interleaved) and xPos scales (half-split) for positions
/// `offset..offset + s`, computed in f32 as toto-ts does: `[s, Dh]` each.
pub(crate) fn rope_tables(s: usize, offset: usize, dh: usize) -> (Vec<f32>, Vec<f32>) {
    let half = dh / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / dh as f32))
        .collect();
    let base: Vec<f32> = (0..half)
        .map(|i| (2.0 * i as f32 + 0.4 * dh as f32) / (1.4 * dh as f32))
        .collect();
    let max_pos = (offset + s).saturating_sub(1) as f32;
    let center = (max_pos / 2.0).floor();
    let mut angles = Vec::with_capacity(s * dh);
    let mut scales = Vec::with_capacity(s * dh);
    for j in 0..s {
        let pos = (offset + j) as f32;
        for f in &inv_freq {
            let a = pos * f;
            angles.extend([a, a]);
        }
        let power = (pos - center) / 512.0;
        let sc: Vec<f32> = base.iter().map(|b| b.powf(power)).collect();
        scales.extend_from_slice(&sc);
        scales.extend_from_slice(&sc);
    }
    (angles, scales)
}

/// The rotary + xPos factors of one forward pass, `[1, 1, S, Dh]` each, built once and shared
/// by every time-wise layer.
pub(crate) struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
    scale: Tensor<4>,
}

impl Rope {
    pub(crate) fn new(s: usize, offset: usize, dh: usize, device: &Device) -> Self {
        let (angles, scales) = rope_tables(s, offset, dh);
        let angles = Tensor::<2>::from_data(TensorData::new(angles, [s, dh]), device);
        let scale = Tensor::<2>::from_data(TensorData::new(scales, [s, dh]), device);
        Rope {
            cos: angles.clone().cos().reshape([1, 1, s, dh]),
            sin: angles.sin().reshape([1, 1, s, dh]),
            scale: scale.reshape([1, 1, s, dh]),
        }
    }

    /// Rotary position embedding with xPos on `x: [N, H, S, Dh]`: times the scale for queries,
    /// divided by it for keys.
    pub(crate) fn apply(&self, x: Tensor<4>, query: bool) -> Tensor<4> {
        let [n, h, s, dh] = x.dims();
        // Interleaved rotate_half: (x0, x1) -> (-x1, x0) for each pair.
        let pairs = x.clone().reshape([n, h, s, dh / 2, 2]);
        let x0 = pairs.clone().slice([0..n, 0..h, 0..s, 0..dh / 2, 0..1]);
        let x1 = pairs.slice([0..n, 0..h, 0..s, 0..dh / 2, 1..2]);
        let rotated = Tensor::cat(vec![x1.neg(), x0], 4).reshape([n, h, s, dh]);
        let y = x.mul(self.cos.clone()).add(rotated.mul(self.sin.clone()));
        if query {
            y.mul(self.scale.clone())
        } else {
            y.div(self.scale.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_tables_follow_toto_layout() {
        // Dh = 4: two frequencies 1 and 1/100; positions 0..3, centre floor(2/2) = 1.
        let (angles, scales) = rope_tables(3, 0, 4);
        assert_eq!(&angles[8..12], &[2.0, 2.0, 0.02, 0.02]);
        let s0 = (0.0 + 1.6) / 5.6f32;
        let s1 = (2.0 + 1.6) / 5.6f32;
        // Position 0: power (0 - 1)/512; half-split: [s0, s1, s0, s1].
        let want = [s0, s1, s0, s1].map(|s| s.powf(-1.0 / 512.0));
        for (g, w) in scales[..4].iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{g} vs {w}");
        }
    }
}
