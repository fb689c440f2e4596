//! [`Watch`]: how both generations show a forward pass's named intermediates, to the
//! conformance tests (tensors) or to phase timing (names only).

use burn::tensor::Tensor;

/// What a forward pass shows of its named intermediates (each `[B, V, S, D]`): Toto 1.0's
/// `patch_embed`, `layer{i}.{norm1, attention, norm2, mlp, out}`; Toto 2.0's `patch_embed`,
/// `layer{i}.{norm1, attention, out}`, `out_norm`.
pub(crate) enum Watch<'a> {
    /// Each intermediate as a tensor (the fixture tests).
    Tensors(&'a mut (dyn FnMut(&str, Tensor<4>) + Send)),
    /// Each intermediate's name once it is computed (phase timing): no tensor is made or kept
    /// for it.
    Names(&'a mut (dyn FnMut(&str) + Send)),
}

impl Watch<'_> {
    /// Shows the intermediate `name`; `tensor` makes it, only when the watcher wants tensors.
    pub(crate) fn show(&mut self, name: &str, tensor: impl FnOnce() -> Tensor<4>) {
        match self {
            Watch::Tensors(f) => f(name, tensor()),
            Watch::Names(f) => f(name),
        }
    }
}
