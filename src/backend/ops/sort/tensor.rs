//! The column sort's tensor-level entry point, which [`Wgpu`](crate::Wgpu) calls for
//! `LayerOps::sort_first` of `f32` tensors of at most [`MAX_SORT`](super::MAX_SORT) rows.

use burn::backend::Dispatch;
use burn::tensor::Tensor;

use super::launch::SortColumnsOps;
use crate::backend::ops::launch::f32_dispatch;

/// `x` sorted along its first dimension, NaN last, equal values in their order.
pub(crate) fn sort_first<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let columns = dims[1..].iter().product::<usize>();
    let flat: Tensor<2> = x.reshape([dims[0], columns]);
    let sorted: Tensor<2> = Tensor::from_dispatch(Dispatch::sort_columns(f32_dispatch(flat)));
    sorted.reshape(dims)
}
