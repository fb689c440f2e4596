//! Shape bookkeeping shared by the distributions: broadcasting, devices, ranks.

use burn::tensor::kind::Basic;
use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};

/// `expand` that leaves a tensor of the target shape alone: burn-ndarray's `expand` copies
/// every element even when nothing changes.
pub(crate) trait BroadcastTo<const D: usize> {
    /// The tensor broadcast to `shape` (a no-op when it already has that shape).
    fn broadcast_to(self, shape: [usize; D]) -> Self;
}

impl<const D: usize, K: Basic> BroadcastTo<D> for Tensor<D, K> {
    fn broadcast_to(self, shape: [usize; D]) -> Self {
        if self.dims() == shape {
            self
        } else {
            self.expand(shape)
        }
    }
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

/// Checks every parameter is on `device` and their shapes broadcast; returns the batch shape.
pub(crate) fn batch_shape<const D: usize>(
    dist: &'static str,
    device: &Device,
    params: &[(&'static str, &Tensor<D>)],
) -> Result<[usize; D]> {
    let mut batch = vec![1; D];
    for (name, p) in params {
        let found = p.device();
        if &found != device {
            return Err(Error::ParamDevice {
                dist,
                param: name,
                expected: format!("{device:?}"),
                found: format!("{found:?}"),
            });
        }
        let shape = p.dims();
        batch = broadcast(&batch, &shape).ok_or_else(|| Error::ParamShape {
            dist,
            param: name,
            shape: shape.to_vec(),
            batch: batch.clone(),
        })?;
    }
    Ok(to_array(&batch))
}

/// `t` (shape `[b..]`) viewed with rank `S >= D` as `[1, .., 1, b..]`.
pub(crate) fn lift<const D: usize, const S: usize>(t: Tensor<D>) -> Tensor<S> {
    debug_assert!(S >= D, "lift to a lower rank");
    let mut shape = [1; S];
    shape[S - D..].copy_from_slice(&t.dims());
    t.reshape(shape)
}

/// `[sample.., batch..]` as a rank-`S` shape, or [`Error::Rank`].
pub(crate) fn full_shape<const S: usize>(
    dist: &'static str,
    sample: &[usize],
    batch: &[usize],
) -> Result<[usize; S]> {
    let needed = sample.len() + batch.len();
    if needed != S {
        return Err(Error::Rank {
            dist,
            what: "the sample",
            needed,
            asked: S,
        });
    }
    let full: Vec<usize> = sample.iter().chain(batch).copied().collect();
    Ok(to_array(&full))
}

/// The broadcast of a rank-`S` value shape with the batch shape, or an error.
pub(crate) fn value_shape<const S: usize>(
    dist: &'static str,
    value: [usize; S],
    batch: &[usize],
) -> Result<[usize; S]> {
    if S < batch.len() {
        return Err(Error::Rank {
            dist,
            what: "the value",
            needed: batch.len(),
            asked: S,
        });
    }
    let full = broadcast(&value, batch).ok_or_else(|| Error::ValueShape {
        dist,
        shape: value.to_vec(),
        batch: batch.to_vec(),
    })?;
    Ok(to_array(&full))
}

fn to_array<const N: usize>(v: &[usize]) -> [usize; N] {
    let mut out = [0; N];
    out.copy_from_slice(v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[3, 1], &[1, 4]), Some(vec![3, 4]));
        assert_eq!(broadcast(&[5, 3, 4], &[4]), Some(vec![5, 3, 4]));
        assert_eq!(broadcast(&[3], &[4]), None);
        assert_eq!(broadcast(&[], &[2, 2]), Some(vec![2, 2]));
    }

    #[test]
    fn ranks_are_checked() {
        assert_eq!(full_shape::<3>("t", &[10], &[2, 3]).unwrap(), [10, 2, 3]);
        let err = full_shape::<2>("t", &[10], &[2, 3]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Rank {
                    needed: 3,
                    asked: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            value_shape::<3>("t", [7, 1, 3], &[2, 3]).unwrap(),
            [7, 2, 3]
        );
        assert!(matches!(
            value_shape::<1>("t", [3], &[2, 3]),
            Err(Error::Rank { .. })
        ));
        assert!(matches!(
            value_shape::<2>("t", [2, 4], &[2, 3]),
            Err(Error::ValueShape { .. })
        ));
    }
}
