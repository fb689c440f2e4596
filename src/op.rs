//! The distribution-level operations a [`Backend`](crate::Backend) may or may not run natively.
//!
//! A leaf module (it imports nothing from the crate): the backends route by [`Op`] and the
//! errors name one.

use std::fmt;

/// One distribution-level operation of the [`Backend`](crate::Backend) trait.
///
/// Backends answer [`Backend::supports`](crate::Backend::supports) per `Op`; the
/// [`FallbackBackend`](crate::FallbackBackend) routes and reports per `Op`. Names follow torch
/// (`torch.rand`, `torch.randn`, `torch._standard_gamma`, `torch.lgamma`, `torch.digamma`).
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
    /// Elementwise `ln |Γ(x)|` (`torch.lgamma`).
    Lgamma,
    /// Elementwise `ψ(x) = d/dx ln Γ(x)` (`torch.digamma`).
    Digamma,
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
}

impl Op {
    /// Every operation, in a fixed order (the order of the report's rows).
    pub const ALL: [Op; 9] = [
        Op::Uniform,
        Op::StandardNormal,
        Op::StandardGamma,
        Op::StandardT,
        Op::Lgamma,
        Op::Digamma,
        Op::Categorical,
        Op::StudentTMixture,
        Op::PatchScaler,
    ];

    /// The operation's name, as torch spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Op::Uniform => "uniform",
            Op::StandardNormal => "standard_normal",
            Op::StandardGamma => "standard_gamma",
            Op::StandardT => "standard_t",
            Op::Lgamma => "lgamma",
            Op::Digamma => "digamma",
            Op::Categorical => "categorical",
            Op::StudentTMixture => "student_t_mixture",
            Op::PatchScaler => "patch_scaler",
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
        let set: OpSet = [Op::StandardGamma, Op::Lgamma].into_iter().collect();
        assert!(set.contains(Op::StandardGamma) && set.contains(Op::Lgamma));
        assert!(!set.contains(Op::Uniform) && !set.contains(Op::Digamma));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Op::StandardGamma, Op::Lgamma]
        );
        assert!(OpSet::empty().is_empty() && !set.is_empty());
    }
}
