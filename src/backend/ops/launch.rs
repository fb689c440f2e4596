//! What every kernel launch shares: the output buffer and grid, and the `f32` view of an input.

use burn::backend::DispatchTensor;
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

/// Threads per cube of the element-wise sampler launches.
pub(crate) const CUBE_DIM: u32 = 256;

/// An `f32` output of `shape` on `like`'s device, and the launch grid for `threads` threads.
pub(crate) fn output(
    like: &CubeTensor,
    shape: Shape,
    threads: usize,
) -> (CubeTensor, CubeCount, CubeDim) {
    let out = empty_device_dtype(like.client.clone(), like.device.clone(), shape, DType::F32);
    let dim = CubeDim::new_1d(CUBE_DIM);
    let count = calculate_cube_count_elemwise(&like.client, threads.max(1), dim);
    (out, count, dim)
}

/// The launch grid for one thread per row, `rows` rows, 64 threads a cube.
pub(crate) fn per_row(like: &CubeTensor, rows: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(64);
    (
        calculate_cube_count_elemwise(&like.client, rows.max(1), dim),
        dim,
    )
}

/// `t` as an `f32` dispatch tensor (cast if it is not): the kernels read and write `f32`.
pub(crate) fn f32_dispatch<const D: usize>(t: Tensor<D>) -> DispatchTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(burn::tensor::FloatDType::F32)
    };
    t.into_dispatch()
}
