//! Rotary position embedding with optional xPos scaling, in f32 as both Toto generations
//! compute it: interleaved pairs `(x₂ⱼ, x₂ⱼ₊₁)`, frequencies `θⱼ = 10000^(−2j/w)` over the `w`
//! rotated dimensions, angles `m·θⱼ` at patch position `m`.
//!
//! | | Toto 1.0 (toto-ts, `rotary-embedding-torch`) | Toto 2.0 (toto-2) |
//! |---|---|---|
//! | rotated dimensions | all of each head | the first half of each head |
//! | xPos | always | with `use_xpos` |
//! | xPos power | `(m − ⌊max/2⌋) / 512` | `(m − ⌊(max + 1)/2⌋) / 256` |
//! | xPos scales | repeated per half | repeated per pair |
//!
//! `max` is the largest position of the call: with a KV cache, cached keys keep the scale of the
//! call that wrote them (toto-2's behaviour, which its block decoding depends on). A streaming
//! session writes every key at centre 0 instead ([`rotary_centred`]), so that keys written by
//! different calls agree; [`key_recentring`] moves them to the centre a fresh prefill uses.

use burn::tensor::Device;

use crate::backend::Rotary;
use crate::error::Result;

/// Which dimensions rotate, and the xPos variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RopeSpec {
    /// Dimensions per head.
    pub(crate) head_dim: usize,
    /// The leading dimensions of each head that rotate (even).
    pub(crate) rotated: usize,
    /// xPos scaling, when the model uses it.
    pub(crate) xpos: Option<Xpos>,
}

/// The xPos variant: `ζⱼ^(±(m − c)/base)` with `ζⱼ = (2j + 0.4w)/(1.4w)`, queries times the
/// scale, keys divided by it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Xpos {
    /// The power's divisor (`xpos_scale_base`).
    pub(crate) scale_base: f32,
    /// The centre `c` is `⌊(max + 1)/2⌋` (toto-2) rather than `⌊max/2⌋` (toto-ts).
    pub(crate) centre_rounds_up: bool,
    /// The scales repeat per pair (toto-2's `(d 2)`) rather than per half (toto-ts).
    pub(crate) interleaved: bool,
}

impl RopeSpec {
    /// Toto 1.0's: every dimension rotates; xPos with base 512, scales per half.
    pub(crate) fn toto(head_dim: usize) -> Self {
        RopeSpec {
            head_dim,
            rotated: head_dim,
            xpos: Some(Xpos {
                scale_base: 512.0,
                centre_rounds_up: false,
                interleaved: false,
            }),
        }
    }

    /// Toto 2.0's: the first half of each head rotates; xPos (base 256, scales per pair) when
    /// `xpos`.
    pub(crate) fn toto2(head_dim: usize, xpos: bool) -> Self {
        RopeSpec {
            head_dim,
            rotated: head_dim / 2,
            xpos: xpos.then_some(Xpos {
                scale_base: 256.0,
                centre_rounds_up: true,
                interleaved: true,
            }),
        }
    }
}

/// Rotary angles (interleaved) and xPos scales at `positions`, computed in f32 as the references
/// do: `[S, rotated]` each (the scales empty without xPos).
#[cfg(test)]
pub(crate) fn rope_tables(spec: RopeSpec, positions: &[usize]) -> (Vec<f32>, Vec<f32>) {
    rope_tables_centred(spec, positions, None)
}

/// [`rope_tables`] with the xPos centre `centre` instead of the call's own.
pub(crate) fn rope_tables_centred(
    spec: RopeSpec,
    positions: &[usize],
    centre: Option<usize>,
) -> (Vec<f32>, Vec<f32>) {
    let w = spec.rotated;
    let half = w / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / w as f32))
        .collect();
    let mut angles = Vec::with_capacity(positions.len() * w);
    for &m in positions {
        for f in &inv_freq {
            let a = m as f32 * f;
            angles.extend([a, a]);
        }
    }
    let Some(xpos) = spec.xpos else {
        return (angles, Vec::new());
    };
    let base: Vec<f32> = (0..half)
        .map(|i| (2.0 * i as f32 + 0.4 * w as f32) / (1.4 * w as f32))
        .collect();
    let max = positions.iter().copied().max().unwrap_or(0);
    let centre = centre.unwrap_or_else(|| xpos.centre_of(max)) as f32;
    let mut scales = Vec::with_capacity(positions.len() * w);
    for &m in positions {
        let power = (m as f32 - centre) / xpos.scale_base;
        let row = base.iter().map(|b| b.powf(power));
        if xpos.interleaved {
            row.for_each(|s| scales.extend([s, s]));
        } else {
            let row: Vec<f32> = row.collect();
            scales.extend_from_slice(&row);
            scales.extend_from_slice(&row);
        }
    }
    (angles, scales)
}

/// The rotary (+ xPos) factors of one forward pass at `positions` (one per sequence element),
/// built once and shared by every layer that rotates, with the xPos centre `centre` (`None`:
/// the call's own, as the references).
pub(crate) fn rotary_centred(
    spec: RopeSpec,
    positions: &[usize],
    centre: Option<usize>,
    device: &Device,
) -> Result<Rotary> {
    let (angles, scales) = rope_tables_centred(spec, positions, centre);
    let scales = spec.xpos.map(|_| scales.as_slice());
    Rotary::new(&angles, scales, [positions.len(), spec.rotated], device)
}

/// What moves keys written at xPos centre 0 to the centre a call whose largest position is
/// `max` uses (`[head_dim]`, 1 for dimensions that do not rotate): keys are divided by
/// `ζ^((m − c)/base)`, so a key of centre 0 times `ζ^(c/base)` is the key of centre `c`.
/// `None` without xPos (nothing to move).
pub(crate) fn key_recentring(spec: RopeSpec, max: usize) -> Option<Vec<f32>> {
    let xpos = spec.xpos?;
    let centre = xpos.centre_of(max);
    // The scales at position 0 and centre c are ζ^(−c/base): the factor is their inverse.
    let (_, scales) = rope_tables_centred(spec, &[0], Some(centre));
    let mut factor = vec![1.0f32; spec.head_dim];
    for (f, s) in factor.iter_mut().zip(&scales) {
        *f = 1.0 / s;
    }
    Some(factor)
}

impl Xpos {
    /// The centre of a call whose largest position is `max`.
    fn centre_of(self, max: usize) -> usize {
        if self.centre_rounds_up {
            max.div_ceil(2)
        } else {
            max / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_tables_follow_toto_layout() {
        // Dh = 4: two frequencies 1 and 1/100; positions 0..3, centre floor(2/2) = 1.
        let (angles, scales) = rope_tables(RopeSpec::toto(4), &[0, 1, 2]);
        assert_eq!(&angles[8..12], &[2.0, 2.0, 0.02, 0.02]);
        let s0 = (0.0 + 1.6) / 5.6f32;
        let s1 = (2.0 + 1.6) / 5.6f32;
        // Position 0: power (0 - 1)/512; half-split: [s0, s1, s0, s1].
        let want = [s0, s1, s0, s1].map(|s| s.powf(-1.0 / 512.0));
        for (g, w) in scales[..4].iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{g} vs {w}");
        }
    }

    #[test]
    fn rope_tables_follow_toto2_layout() {
        // Dh = 8: the first 4 dimensions rotate, frequencies 1 and 1/100 (w = 4); positions
        // 6..9, centre floor((9 + 1)/2) = 5 (toto-2's xPos centre of its third block).
        let spec = RopeSpec::toto2(8, true);
        assert_eq!(spec.rotated, 4);
        let (angles, scales) = rope_tables(spec, &[6, 7, 8, 9]);
        assert_eq!(&angles[..4], &[6.0, 6.0, 0.06, 0.06]);
        let z0 = (0.0 + 1.6) / 5.6f32;
        let z1 = (2.0 + 1.6) / 5.6f32;
        // Position 6: power (6 - 5)/256; per pair: [z0, z0, z1, z1].
        let want = [z0, z0, z1, z1].map(|z| z.powf(1.0 / 256.0));
        for (g, w) in scales[..4].iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{g} vs {w}");
        }
        assert!(rope_tables(RopeSpec::toto2(8, false), &[0]).1.is_empty());
    }
}
