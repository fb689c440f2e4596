//! The distribution-level operations a [`Backend`](crate::Backend) may or may not run natively.
//!
//! A leaf module (it imports nothing from the crate): the backends route by [`Op`] and the
//! errors name one.

use std::fmt;

/// One operation of the [`Backend`](crate::Backend) trait (distribution ops) or the
/// [`LayerOps`](crate::LayerOps) trait (layer ops).
///
/// Backends answer [`Backend::supports`](crate::Backend::supports) per `Op`; the
/// [`FallbackBackend`](crate::FallbackBackend) routes and reports per `Op`. Names follow torch
/// (`torch.rand`, `torch.randn`, `torch._standard_gamma`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// `U[0, 1)` draws for a shape (`torch.rand`).
    Uniform,
    /// `N(0, 1)` draws for a shape (`torch.randn`).
    StandardNormal,
    /// One `Gamma(alpha, 1)` draw per element of a tensor of concentrations
    /// (`torch._standard_gamma`).
    StandardGamma,
    /// One standard Student-T draw per element of a tensor of degrees of freedom
    /// (`torch.distributions.StudentT(df).sample()`, numpy's `standard_t`).
    StandardT,
    /// One category index per row of logits, repeated for a sample count
    /// (`torch.multinomial(softmax(logits), 1)` per row): the mixture's component draw.
    Categorical,
    /// Draws from a mixture of Student-T components (Toto's output head): one component per
    /// draw from the mixing weights, then that component's Student-T, shifted and scaled
    /// ([`Backend::student_t_mixture`](crate::Backend::student_t_mixture)).
    StudentTMixture,
    /// Toto's causal patch mean/std scaler ([`Backend::patch_scaler`](crate::Backend::patch_scaler)),
    /// computed in f64 where the backend can.
    PatchScaler,
    /// A linear layer `(x·W + b)·s` ([`LayerOps::linear`](crate::LayerOps::linear)).
    Linear,
    /// RMSNorm over the last dimension ([`LayerOps::rms_norm`](crate::LayerOps::rms_norm)).
    RmsNorm,
    /// Scaled SiLU ([`LayerOps::silu`](crate::LayerOps::silu)).
    Silu,
    /// A SiLU-gated unit ([`LayerOps::silu_gate`](crate::LayerOps::silu_gate)).
    SiluGate,
    /// unit-scaling's residual sum ([`LayerOps::residual_add`](crate::LayerOps::residual_add)).
    ResidualAdd,
    /// Self-attention over fused projections
    /// ([`LayerOps::attention`](crate::LayerOps::attention)).
    Attention,
    /// `softmax(q·kᵀ / d, masked) · v` over grouped heads
    /// ([`LayerOps::attention_core`](crate::LayerOps::attention_core)).
    AttentionCore,
    /// A sort along dimension 0 (`torch.sort(dim=0)`;
    /// [`LayerOps::sort_first`](crate::LayerOps::sort_first)).
    SortFirst,
}

impl Op {
    /// Every operation, in a fixed order (the order of the report's rows).
    pub const ALL: [Op; 15] = [
        Op::Uniform,
        Op::StandardNormal,
        Op::StandardGamma,
        Op::StandardT,
        Op::Categorical,
        Op::StudentTMixture,
        Op::PatchScaler,
        Op::Linear,
        Op::RmsNorm,
        Op::Silu,
        Op::SiluGate,
        Op::ResidualAdd,
        Op::Attention,
        Op::AttentionCore,
        Op::SortFirst,
    ];

    /// The operation's name, as torch spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Op::Uniform => "uniform",
            Op::StandardNormal => "standard_normal",
            Op::StandardGamma => "standard_gamma",
            Op::StandardT => "standard_t",
            Op::Categorical => "categorical",
            Op::StudentTMixture => "student_t_mixture",
            Op::PatchScaler => "patch_scaler",
            Op::Linear => "linear",
            Op::RmsNorm => "rms_norm",
            Op::Silu => "silu",
            Op::SiluGate => "silu_gate",
            Op::ResidualAdd => "residual_add",
            Op::Attention => "attention",
            Op::AttentionCore => "attention_core",
            Op::SortFirst => "sort_first",
        }
    }

    /// Position in [`Op::ALL`]; used to index fixed-size tables. The declaration order is
    /// [`Op::ALL`]'s (a test checks it), so this is the discriminant.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Op`]s, as a bit mask: what a backend has been told not to run natively.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OpSet(u32);

impl OpSet {
    /// The empty set.
    pub const fn empty() -> Self {
        OpSet(0)
    }

    /// Whether `op` is in the set.
    pub const fn contains(self, op: Op) -> bool {
        self.0 & (1 << op.index()) != 0
    }

    /// The set with `op` added.
    #[must_use]
    pub const fn with(self, op: Op) -> Self {
        OpSet(self.0 | (1 << op.index()))
    }

    /// The operations in the set, in [`Op::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Op> {
        Op::ALL.into_iter().filter(move |op| self.contains(*op))
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Op> for OpSet {
    fn from_iter<I: IntoIterator<Item = Op>>(iter: I) -> Self {
        iter.into_iter().fold(OpSet::empty(), OpSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_order_is_the_order_of_all() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op}");
        }
        // `Ord` follows the declaration: sorting must not reorder `ALL`.
        assert!(Op::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn op_set_holds_exactly_what_was_added() {
        let set: OpSet = [Op::StandardGamma, Op::Linear].into_iter().collect();
        assert!(set.contains(Op::StandardGamma) && set.contains(Op::Linear));
        assert!(!set.contains(Op::Uniform) && !set.contains(Op::Attention));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Op::StandardGamma, Op::Linear]
        );
        assert!(OpSet::empty().is_empty() && !set.is_empty());
    }
}
