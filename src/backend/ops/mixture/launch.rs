//! The mixture kernels' launch, as a burn backend extension (CubeCL runtimes, with or without
//! fusion).

use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use super::MixtureParams;
use super::kernel::{TILED_MAX_K, mixture_t_kernel, mixture_t_tiled_kernel};
use crate::backend::ops::cube::Key;
use crate::backend::ops::launch::output;

/// Toto's mixture draw as a burn backend extension.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait MixtureOps: burn::backend::Backend {
    /// `[samples, rows]` draws of the Student-T mixture with mixing `logits` and components
    /// `df`, `loc`, `scale` (all `[rows, K]`).
    #[fusion(dtype = logits, shape = Shape::new([*samples, logits[0]]))]
    fn philox_mixture_t(
        logits: FloatTensor<Self>,
        df: FloatTensor<Self>,
        loc: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        samples: usize,
        key: Key,
        window: (u32, u32),
    ) -> FloatTensor<Self>;
}

impl MixtureOps for CubeBackend {
    fn philox_mixture_t(
        logits: CubeTensor,
        df: CubeTensor,
        loc: CubeTensor,
        scale: CubeTensor,
        samples: usize,
        key: Key,
        (chunk, stride): (u32, u32),
    ) -> CubeTensor {
        let p = MixtureParams::new(logits, df, loc, scale).map(into_contiguous);
        let (rows, k) = (p.logits.meta.shape()[0], p.logits.meta.shape()[1]);
        // One block per draw.
        let (stream, _) = key.stream(1);
        let n = samples * rows;
        let (out, count, dim) = output(&p.logits, Shape::new([samples, rows]), n);
        let client = p.logits.client.clone();
        let [logits, df, loc, scale] = p.map(CubeTensor::into_buffer_arg).into_array();
        if n > 0 && (1..=TILED_MAX_K).contains(&k) {
            mixture_t_tiled_kernel::launch(
                &client,
                count,
                dim,
                logits,
                df,
                loc,
                scale,
                out.clone().into_buffer_arg(),
                rows as u32,
                stream,
                chunk,
                stride,
                k as u32,
            );
        } else if n > 0 && k > 0 {
            mixture_t_kernel::launch(
                &client,
                count,
                dim,
                logits,
                df,
                loc,
                scale,
                out.clone().into_buffer_arg(),
                rows as u32,
                stream,
                chunk,
                stride,
                k as u32,
            );
        }
        out
    }
}
