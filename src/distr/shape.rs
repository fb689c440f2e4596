//! Shape bookkeeping shared by the distributions: batch shapes, devices, ranks, sizes.

use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};
pub(crate) use crate::shape::{BroadcastTo, ReshapeExact, broadcast};
use crate::shape::{MAX_ELEMENTS, element_count};

/// Checks every parameter is on `device` and their shapes broadcast; returns the batch shape.
pub(crate) fn batch_shape<const D: usize>(
    dist: &'static str,
    device: &Device,
    params: &[(&'static str, &Tensor<D>)],
) -> Result<[usize; D]> {
    let mut batch = vec![1; D];
    for (name, p) in params {
        Error::ensure_devices(dist, device, [(*name, p.device())])?;
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
    t.reshape_exact(shape)
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
    // The sample count alone is checked too: with an empty batch the full count is 0.
    fits(dist, sample)?;
    fits(dist, &full)?;
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
    fits(dist, &full)?;
    Ok(to_array(&full))
}

/// `Ok` if a tensor of `shape` may be allocated, else [`Error::TooLarge`].
fn fits(dist: &'static str, shape: &[usize]) -> Result<()> {
    element_count(shape)
        .map(drop)
        .map_err(|elements| Error::TooLarge {
            what: dist,
            shape: shape.to_vec(),
            elements,
            limit: MAX_ELEMENTS,
            fix: "draw in smaller batches",
        })
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
