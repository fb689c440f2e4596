//! Sorting along the last dimension on the tensor's own device: a bitonic network of burn ops.
//!
//! burn 0.22 sorts on the host on GPUs (a read-back and an upload per call); a forecast's sample
//! paths are sorted for every quantile asked of them, so this keeps them on the device. The
//! network has `log₂ n (log₂ n + 1) / 2` stages for `n` rounded up to a power of two (36 for 256
//! paths). Each stage is an elementwise `min`/`max` of the two halves of its blocks, all in one
//! direction: the first stage of each merge compares an element with its mirror image in the
//! block (the halves' order reversed), which sorts what the textbook network's alternating
//! directions sort. On a GPU the cost is the number of ops (each one a launch), so a stage is
//! five or seven of them; NaN is handled once, before and after.

use burn::tensor::{Int, Tensor};

/// `x` sorted ascending along its last dimension, NaN last (as torch and `f32::total_cmp` for
/// positive NaN), every value kept.
pub(crate) fn sort_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let n = dims[D - 1];
    let rows: usize = dims[..D - 1].iter().product();
    if n <= 1 || rows == 0 {
        return x;
    }
    let width = n.next_power_of_two();
    let device = x.device();
    let flat: Tensor<2> = x.reshape([rows, n]);
    // NaN sorts as +inf, and the last `nans` places of each row become NaN again at the end:
    // every +inf of a row (its own, its NaN and the padding) sorts after its other values.
    let is_nan = flat.clone().is_nan();
    let nans: Tensor<2, Int> = is_nan.clone().int().sum_dim(1); // [rows, 1]
    let mut flat = flat.mask_fill(is_nan, f32::INFINITY);
    if width > n {
        let pad = Tensor::<2>::full([rows, width - n], f32::INFINITY, &device);
        flat = Tensor::cat(vec![flat, pad], 1);
    }
    let mut k = 2;
    while k <= width {
        flat = stage(flat, rows, width, k / 2, true);
        let mut j = k / 4;
        while j >= 1 {
            flat = stage(flat, rows, width, j, false);
            j /= 2;
        }
        k *= 2;
    }
    let sorted = flat.narrow(1, 0, n);
    // Places `n - nans ..` of each row hold NaN.
    let place = Tensor::<1, Int>::arange(0..n as i64, &device)
        .reshape([1, n])
        .expand([rows, n]);
    let from = nans.neg().add_scalar(n as i64).expand([rows, n]);
    let nan_place = place.greater_equal(from);
    sorted.mask_fill(nan_place, f32::NAN).reshape(dims)
}

/// One stage over blocks of `2 · half`: element `i` of each block's first half against
/// element `i` of its second half, or, with `mirror` (the first stage of a merge), against its
/// mirror image in the block (`2 · half − 1 − i`); the smaller goes first.
fn stage(x: Tensor<2>, rows: usize, width: usize, half: usize, mirror: bool) -> Tensor<2> {
    let flip = |t: Tensor<4>| if mirror { t.flip([3]) } else { t };
    let halves: Tensor<4> = x.reshape([rows, width / (2 * half), 2, half]);
    let a = halves.clone().narrow(2, 0, 1);
    let b = flip(halves.narrow(2, 1, 1));
    let low = a.clone().min_pair(b.clone());
    let high = flip(a.max_pair(b));
    Tensor::cat(vec![low, high], 2).reshape([rows, width])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, NdArray};
    use burn::tensor::TensorData;

    #[test]
    fn the_network_sorts_like_total_cmp_keeps_every_value_and_puts_nan_last() {
        let cpu = NdArray::seeded(0);
        // A fixed pseudo-random sequence with ties, infinities and NaN.
        let mut state = 0x2545_f491_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            match state % 23 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => 1.5,
                r => (r as f32 - 11.0) * 0.37,
            }
        };
        for n in [1, 2, 3, 5, 8, 17, 31, 64, 100, 256, 300] {
            let rows = 3;
            let data: Vec<f32> = (0..rows * n).map(|_| next()).collect();
            let x =
                Tensor::<3>::from_data(TensorData::new(data.clone(), [1, rows, n]), cpu.device());
            let got: Vec<f32> = sort_last(x).into_data().try_to_vec().unwrap();
            for r in 0..rows {
                let mut want = data[r * n..(r + 1) * n].to_vec();
                want.sort_by(f32::total_cmp);
                assert_eq!(
                    format!("{:?}", &got[r * n..(r + 1) * n]),
                    format!("{want:?}"),
                    "n = {n}, row {r}"
                );
            }
        }
    }
}
