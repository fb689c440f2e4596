//! Sorting along the last dimension on the tensor's own device: a bitonic network of burn ops.
//!
//! burn 0.22 sorts on the host on GPUs (a read-back and an upload per call); a forecast's sample
//! paths are sorted for every quantile asked of them, so this keeps them on the device. The
//! network has `log₂ n (log₂ n + 1) / 2` stages for `n` rounded up to a power of two (36 for 256
//! paths), each a handful of elementwise ops that fusion merges.

use burn::tensor::{Bool, Tensor, TensorData};

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
    let mut flat: Tensor<2> = x.reshape([rows, n]);
    if width > n {
        // NaN padding sorts last, with the data's own NaN, so the first `n` are the data's.
        let pad = Tensor::<2>::full([rows, width - n], f32::NAN, &device);
        flat = Tensor::cat(vec![flat, pad], 1);
    }
    let mut k = 2;
    while k <= width {
        let mut j = k / 2;
        while j >= 1 {
            flat = stage(flat, rows, width, k, j);
            j /= 2;
        }
        k *= 2;
    }
    flat.narrow(1, 0, n).reshape(dims)
}

/// One compare-exchange stage: elements `i` and `i + j` (bit `j` of `i` clear) are ordered
/// ascending where bit `k` of `i` is clear, descending where it is set.
fn stage(x: Tensor<2>, rows: usize, width: usize, k: usize, j: usize) -> Tensor<2> {
    let blocks = width / (2 * j);
    let device = x.device();
    let pairs: Tensor<4> = x.reshape([rows, blocks, 2, j]);
    let a = pairs.clone().narrow(2, 0, 1);
    let b = pairs.narrow(2, 1, 1);
    // Bit `k` of the pair's index is the same for both (k > j), so it is the block's.
    let ascending: Vec<bool> = (0..blocks).map(|m| (m * 2 * j) & k == 0).collect();
    let ascending =
        Tensor::<4, Bool>::from_data(TensorData::new(ascending, [1, blocks, 1, 1]), &device)
            .expand([rows, blocks, 1, j]);
    let (a_after_b, b_after_a) = (after(&a, &b), after(&b, &a));
    let swap = ascending
        .clone()
        .bool_and(a_after_b)
        .bool_or(ascending.bool_not().bool_and(b_after_a));
    let low = a.clone().mask_where(swap.clone(), b.clone());
    let high = b.mask_where(swap, a);
    Tensor::cat(vec![low, high], 2).reshape([rows, width])
}

/// Where `a` sorts after `b`: greater, or NaN against a number.
fn after(a: &Tensor<4>, b: &Tensor<4>) -> Tensor<4, Bool> {
    let nan_first = a.clone().is_nan().bool_and(b.clone().is_nan().bool_not());
    a.clone().greater(b.clone()).bool_or(nan_first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, NdArray};

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
        for n in [1, 2, 3, 5, 8, 17, 31, 64, 100] {
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
