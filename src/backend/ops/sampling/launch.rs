//! The sampler kernels' launches, as a burn backend extension (CubeCL runtimes, with or
//! without fusion): with fusion the ops are registered lazily in the fusion stream (opaque custom
//! operations between fused blocks); without it they launch at once.

use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::kernel::{
    FOUR_LANES, TWO_LANES, gamma_kernel, normal_kernel, student_t_kernel, uniform_kernel,
};
use crate::backend::ops::cube::{Key, StreamLaunch, blocks_for};
use crate::backend::ops::launch::output;

/// The native samplers as a burn backend extension (CubeCL runtimes, with or without fusion).
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait SamplerOps: burn::backend::Backend {
    /// `n` uniforms in `[0, 1)`; `anchor` names the device.
    #[fusion(dtype = anchor, shape = Shape::new([*n]))]
    fn philox_uniform(anchor: FloatTensor<Self>, n: usize, key: Key) -> FloatTensor<Self>;

    /// `n` standard normals.
    #[fusion(dtype = anchor, shape = Shape::new([*n]))]
    fn philox_normal(anchor: FloatTensor<Self>, n: usize, key: Key) -> FloatTensor<Self>;

    /// One standard Student-T per element of `df`.
    #[fusion(dtype = df, shape = df)]
    fn philox_student_t(df: FloatTensor<Self>, key: Key) -> FloatTensor<Self>;

    /// One `Gamma(alpha, 1)` per element of `alpha`.
    #[fusion(dtype = alpha, shape = alpha)]
    fn philox_gamma(alpha: FloatTensor<Self>, key: Key) -> FloatTensor<Self>;
}

/// One sampler launch: the grid for `n` elements served `lanes` per Philox block, the output of
/// `shape` on `like`'s device, and `kernel` run over it (with the grid, the output, the thread
/// count, the stream and the lanes before element 0) unless `n` is 0.
fn launch_lanes(
    like: &CubeTensor,
    shape: Shape,
    key: Key,
    lanes: u32,
    kernel: impl FnOnce(CubeCount, CubeDim, &CubeTensor, u32, StreamLaunch, u32),
) -> CubeTensor {
    let n = shape.num_elements();
    let (stream, shift) = key.stream(lanes);
    let threads = blocks_for(n, lanes, shift);
    let (out, count, dim) = output(like, shape, threads);
    if n > 0 {
        kernel(count, dim, &out, threads as u32, stream, shift);
    }
    out
}

impl SamplerOps for CubeBackend {
    fn philox_uniform(anchor: CubeTensor, n: usize, key: Key) -> CubeTensor {
        let client = anchor.client.clone();
        launch_lanes(
            &anchor,
            Shape::new([n]),
            key,
            FOUR_LANES,
            |count, dim, out, threads, stream, shift| {
                let out = out.clone().into_buffer_arg();
                uniform_kernel::launch(&client, count, dim, out, threads, stream, shift);
            },
        )
    }

    fn philox_normal(anchor: CubeTensor, n: usize, key: Key) -> CubeTensor {
        let client = anchor.client.clone();
        launch_lanes(
            &anchor,
            Shape::new([n]),
            key,
            FOUR_LANES,
            |count, dim, out, threads, stream, shift| {
                let out = out.clone().into_buffer_arg();
                normal_kernel::launch(&client, count, dim, out, threads, stream, shift);
            },
        )
    }

    fn philox_student_t(df: CubeTensor, key: Key) -> CubeTensor {
        let df = into_contiguous(df);
        let shape = df.meta.shape().clone();
        launch_lanes(
            &df,
            shape,
            key,
            TWO_LANES,
            |count, dim, out, threads, stream, shift| {
                let (input, out) = (df.clone().into_buffer_arg(), out.clone().into_buffer_arg());
                student_t_kernel::launch(
                    &df.client, count, dim, input, out, threads, stream, shift,
                );
            },
        )
    }

    /// One block per attempt: the kernel addresses blocks by element and attempt itself.
    fn philox_gamma(alpha: CubeTensor, key: Key) -> CubeTensor {
        let alpha = into_contiguous(alpha);
        let shape = alpha.meta.shape().clone();
        launch_lanes(&alpha, shape, key, 1, |count, dim, out, _, stream, _| {
            let (input, out) = (
                alpha.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
            );
            gamma_kernel::launch(&alpha.client, count, dim, input, out, stream);
        })
    }
}
