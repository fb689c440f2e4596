//! The arguments of the layer ops: a linear layer's weights and their prepared form, the
//! attention's shape and query/key treatment, masks, and which half of a gated unit is activated.

use std::fmt;
use std::sync::{Arc, OnceLock};

use burn::tensor::{Bool, FloatDType, Tensor};

use super::super::cpu::gemm::PackedMatrix;
use super::Rotary;

/// A linear layer `y = (x·W + b)·s` as [`LayerOps::linear`](super::LayerOps::linear) reads it:
/// the weight `W: [K, N]` (inputs by outputs), an optional bias `b: [N]`, an output scale `s`,
/// the number format of the product, and the layer's [`Prepared`] slot.
#[derive(Debug, Clone, Copy)]
pub struct Affine<'a> {
    pub(crate) weight: &'a Tensor<2>,
    pub(crate) bias: Option<&'a Tensor<1>>,
    pub(crate) scale: f64,
    pub(crate) compute: Option<FloatDType>,
    pub(crate) prepared: &'a Prepared,
}

impl<'a> Affine<'a> {
    /// `(x·weight + bias)·scale` in f32, `weight: [K, N]`, `bias: [N]`; `prepared` keeps what a
    /// backend derives from the weights (packed panels on the CPU) between calls: give each
    /// layer its own and keep it with the weights.
    pub fn new(
        weight: &'a Tensor<2>,
        bias: Option<&'a Tensor<1>>,
        scale: f64,
        prepared: &'a Prepared,
    ) -> Self {
        Affine {
            weight,
            bias,
            scale,
            compute: None,
            prepared,
        }
    }

    /// The product in `dtype` (the weight already stored in it; the input is cast, the sum
    /// accumulates as the device does, the result comes back as f32 before bias and scale).
    /// `F32` is the default.
    #[must_use]
    pub fn computed_in(mut self, dtype: FloatDType) -> Self {
        self.compute = (dtype != FloatDType::F32).then_some(dtype);
        self
    }

    /// `[K, N]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.dims()
    }
}

/// What a backend derives once from a layer's weights for its native product (the CPU packs
/// them into its kernel's panels; a GPU widens half-precision weights to f32 for products of few
/// rows), made the first time the layer runs and shared by the layer's clones. A model's
/// weights never change after loading, so it is never stale; a layer whose weights change gets
/// a new one.
#[derive(Clone, Default)]
pub struct Prepared(pub(crate) Arc<Slots>);

/// [`Prepared`]'s slots, each filled by the backend that uses it.
#[derive(Default)]
pub(crate) struct Slots {
    /// The CPU's packed weight (`None` where its kernels do not serve the layer).
    pub(crate) packed: OnceLock<Option<PackedMatrix>>,
    /// The weight in f32, for products that run in f32 although the layer's format is not.
    pub(crate) widened: OnceLock<Tensor<2>>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let packed = match self.0.packed.get() {
            None => "not yet".to_owned(),
            Some(None) => "no native product".to_owned(),
            Some(Some(p)) => format!("{:?}", p.kernel()),
        };
        f.debug_struct("Prepared")
            .field("packed", &packed)
            .field("widened", &self.0.widened.get().is_some())
            .finish()
    }
}

/// Which half of a gated unit's `[first | second]` rows goes through SiLU
/// ([`LayerOps::silu_gate`](super::LayerOps::silu_gate)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiluHalf {
    /// `silu(first) · second` (SwiGLU as toto-ts writes it: `[gate | up]`).
    First,
    /// `first · silu(second)` (toto-2's gated feed-forward: `[gate | x]`).
    Second,
}

/// Attention heads: `heads` query heads over `groups` key/value heads (query head `h` reads
/// group `h / (heads / groups)`; `heads = groups` is plain multi-head attention), `qk` values
/// per query and key head, `v` per value head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Heads {
    /// Query heads `H`.
    pub heads: usize,
    /// Key/value heads `G` (a divisor of `H`).
    pub groups: usize,
    /// Values per query and key head.
    pub qk: usize,
    /// Values per value head.
    pub v: usize,
}

impl Heads {
    /// The width of the fused projection `[queries | keys | values]`: `H·qk + G·qk + G·v`.
    pub fn fused_width(&self) -> usize {
        (self.heads + self.groups) * self.qk + self.groups * self.v
    }
}

/// Which query/key pairs may not attend.
// Built once per forward pass and passed by reference: the tensor's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Mask {
    /// Every query sees every key.
    None,
    /// Query `i` sees keys `0..=i` (square scores).
    Causal,
    /// Causal over a fixed-capacity cache (`S_kv` entries, of which the first `len` are
    /// written, this call's `S` queries being the last `S` of those): query `i` sees entries
    /// `0..=len − S + i`, never the unwritten ones. With `len = S` on a square call, this is
    /// [`Mask::Causal`]. Needs `S ≤ len ≤ S_kv`.
    Cache {
        /// Entries written, this call's included.
        len: usize,
    },
    /// True where blocked, `[N or 1, 1, S, S_kv]`. A query whose keys are all blocked gets NaN
    /// (burn's softmax of an all-`−∞` row).
    Blocked(Tensor<4, Bool>),
}

impl Mask {
    /// A [`Mask::Blocked`]'s tensor; `None` for the masks that carry none.
    pub(crate) fn blocked(&self) -> Option<&Tensor<4, Bool>> {
        match self {
            Mask::Blocked(m) => Some(m),
            Mask::None | Mask::Causal | Mask::Cache { .. } => None,
        }
    }

    /// This mask with its tensor replaced by `blocked` (the same tensor on another device);
    /// the masks without a tensor are kept as they are.
    pub(crate) fn with_blocked(&self, blocked: Option<Tensor<4, Bool>>) -> Mask {
        match (self, blocked) {
            (Mask::Blocked(_), Some(m)) => Mask::Blocked(m),
            (mask, _) => mask.clone(),
        }
    }
}

/// RMSNorm of every query and key head before the scores: `x / sqrt(mean(x²) + ε)`, times the
/// weights where given (`[qk]` each).
#[derive(Debug, Clone, Copy)]
pub struct QkNorm<'a> {
    /// The query heads' weight.
    pub query: Option<&'a Tensor<1>>,
    /// The key heads' weight.
    pub key: Option<&'a Tensor<1>>,
    /// `ε`.
    pub eps: f64,
}

/// Self-attention over fused projections ([`LayerOps::attention`](super::LayerOps::attention)):
/// each query and key head RMSNorm'd ([`QkNorm`]), queries times a per-dimension multiplier and
/// a constant, both rotated ([`Rotary`]), then `softmax(q·kᵀ / divisor, masked) · v` per head.
#[derive(Debug, Clone)]
pub struct AttentionSpec<'a> {
    /// Head counts and widths.
    pub heads: Heads,
    /// What the scores are divided by (`√qk` for Toto 1.0, `qk` for Toto 2.0).
    pub divisor: f64,
    /// RMSNorm on query and key heads.
    pub qk_norm: Option<QkNorm<'a>>,
    /// The per-dimension query multiplier (`[qk]`) and a constant factor.
    pub query_scale: Option<(&'a Tensor<1>, f64)>,
    /// Rotary (+ xPos) factors for the `S` elements (position `i` for element `i`).
    pub rotary: Option<&'a Rotary>,
    /// Which pairs may not attend.
    pub mask: Mask,
}
