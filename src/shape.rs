//! Shape and size helpers every layer uses: element counts with their limit, broadcasting, and
//! the `expand`/`reshape` variants that handle zero-sized dimensions.
//!
//! A leaf module: it imports nothing from the crate, so any layer may use it.

use burn::tensor::Tensor;
use burn::tensor::kind::Basic;

/// The largest element count one op accepts: `2^32` (16 GiB of `f32`), far above what a GPU
/// buffer holds, low enough to refuse a mistyped shape before anything is allocated.
pub const MAX_ELEMENTS: u64 = 1 << 32;

/// The largest model a config may describe, of either generation: 2^34 parameters (64 GiB of
/// f32 weights, a hundred times Toto-Open-Base-1.0 and several times Toto-2.0-2.5B), so that an
/// absurd `config.json` is an error instead of an allocation the machine cannot make.
pub const MAX_PARAMETERS: u64 = 1 << 34;

/// The product of `factors`, saturated at `u128::MAX`.
pub(crate) fn saturating_product(factors: impl IntoIterator<Item = u128>) -> u128 {
    factors
        .into_iter()
        .try_fold(1u128, u128::checked_mul)
        .unwrap_or(u128::MAX)
}

/// The element count of `shape` if one tensor may hold it (at most [`MAX_ELEMENTS`]), else
/// `Err` with the count (saturated at `u128::MAX`).
pub(crate) fn element_count(shape: &[usize]) -> Result<usize, u128> {
    let elements = saturating_product(shape.iter().map(|&d| d as u128));
    if elements > u128::from(MAX_ELEMENTS) {
        return Err(elements);
    }
    // Bounded by MAX_ELEMENTS = 2^32 above; on 32-bit targets the allocation fails later anyway.
    Ok(usize::try_from(elements).unwrap_or(usize::MAX))
}

/// numpy/torch broadcasting of two shapes (right-aligned); `None` if they clash.
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        let offset = rank - s.len();
        if i < offset { 1 } else { s[i - offset] }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// `expand` that leaves a tensor of the target shape alone (burn-ndarray's `expand` copies every
/// element even when nothing changes) and builds empty results directly.
pub(crate) trait BroadcastTo<const D: usize> {
    /// The tensor broadcast to `shape` (a no-op when it already has that shape).
    fn broadcast_to(self, shape: [usize; D]) -> Self;
}

impl<const D: usize, K: Basic> BroadcastTo<D> for Tensor<D, K> {
    fn broadcast_to(self, shape: [usize; D]) -> Self {
        if self.dims() == shape {
            self
        } else if shape.contains(&0) {
            // burn's `expand` refuses zero-sized dimensions.
            Tensor::empty(shape, &self.device())
        } else {
            self.expand(shape)
        }
    }
}

/// `reshape` that takes the shape literally: burn's `reshape` reads a 0 as "keep this
/// dimension" (ONNX semantics), so reshaping to a shape with a zero-sized dimension panics or
/// keeps the wrong size. An empty result is built directly instead.
pub(crate) trait ReshapeExact {
    /// The kind of the tensor (float, int or bool).
    type Kind: Basic;
    /// The tensor with `shape`, which must hold as many elements.
    fn reshape_exact<const D2: usize>(self, shape: [usize; D2]) -> Tensor<D2, Self::Kind>;
}

impl<const D: usize, K: Basic> ReshapeExact for Tensor<D, K> {
    type Kind = K;
    fn reshape_exact<const D2: usize>(self, shape: [usize; D2]) -> Tensor<D2, K> {
        if shape.contains(&0) {
            Tensor::empty(shape, &self.device())
        } else {
            self.reshape(shape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_counts_saturate_and_respect_the_limit() {
        assert_eq!(element_count(&[3, 4, 5]), Ok(60));
        assert_eq!(element_count(&[]), Ok(1));
        assert_eq!(element_count(&[7, 0]), Ok(0));
        assert_eq!(element_count(&[1 << 16, 1 << 16]), Ok(1 << 32));
        assert_eq!(element_count(&[1 << 20, 1 << 20]), Err(1 << 40));
        assert_eq!(element_count(&[usize::MAX, usize::MAX, 2]), Err(u128::MAX));
        assert_eq!(saturating_product([u128::MAX, 2]), u128::MAX);
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[3, 1], &[1, 4]), Some(vec![3, 4]));
        assert_eq!(broadcast(&[5, 3, 4], &[4]), Some(vec![5, 3, 4]));
        assert_eq!(broadcast(&[3], &[4]), None);
        assert_eq!(broadcast(&[], &[2, 2]), Some(vec![2, 2]));
    }
}
