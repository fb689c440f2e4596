//! The few-query attention kernel's launch, as a burn backend extension (CubeCL runtimes, with
//! or without fusion).

use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use cubecl::{CubeDim, calculate_cube_count_elemwise};

use super::kernel::{
    LANES, ROWS_PER_THREAD_FROM, few_query_attention_kernel, few_query_rows_kernel,
};
use crate::backend::ops::launch::output;

/// The few-query attention kernel's launch.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait FewQueryAttentionOps: burn::backend::Backend {
    /// Attention of `q` (`[n, H, S, dk]`) over `k`/`v` (`[n, G, capacity, d]`): with `masked`,
    /// the keys where `blocked` (`[1 | n, 1 | H, S, capacity]`, 1 where blocked) is 0;
    /// otherwise query `i` sees entries `0..=len − S + i` (`blocked` is not read).
    /// `[n, H, S, dv]`.
    #[fusion(dtype = q, shape = Shape::new([q[0], q[1], q[2], v[3]]))]
    fn few_query_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: FloatTensor<Self>,
        len: usize,
        masked: bool,
        divisor: f32,
    ) -> FloatTensor<Self>;
}

impl FewQueryAttentionOps for CubeBackend {
    fn few_query_attention(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        blocked: CubeTensor,
        len: usize,
        masked: bool,
        divisor: f32,
    ) -> CubeTensor {
        let [q, k, v] = [q, k, v].map(into_contiguous);
        let blocked = if masked {
            into_contiguous(blocked)
        } else {
            blocked
        };
        let (qs, ks, vs) = (q.meta.shape(), k.meta.shape(), v.meta.shape());
        let [n, h, s, dk] = [qs[0], qs[1], qs[2], qs[3]];
        let [g, capacity, dv] = [ks[1], ks[2], vs[3]];
        let (mn, mh) = match masked {
            true => (blocked.meta.shape()[0], blocked.meta.shape()[1]),
            false => (1, 1),
        };
        let rows = n * h * s;
        let (out, count, dim) = output(&q, Shape::new([n, h, s, dv]), rows);
        if rows > 0 {
            let client = q.client.clone();
            let keys = if masked { capacity } else { len };
            // The kernels take the same arguments; they differ in their grid.
            macro_rules! launch {
                ($kernel:ident, $count:expr, $dim:expr) => {
                    $kernel::launch(
                        &client,
                        $count,
                        $dim,
                        q.into_buffer_arg(),
                        k.into_buffer_arg(),
                        v.into_buffer_arg(),
                        blocked.into_buffer_arg(),
                        out.clone().into_buffer_arg(),
                        rows as u32,
                        h as u32,
                        (h / g) as u32,
                        g as u32,
                        s as u32,
                        capacity as u32,
                        len as u32,
                        mn as u32,
                        mh as u32,
                        divisor,
                        dk,
                        dv,
                        masked,
                    )
                };
            }
            if rows >= ROWS_PER_THREAD_FROM && keys > LANES as usize {
                launch!(few_query_rows_kernel, count, dim);
            } else {
                // One cube of `LANES` threads per row.
                let dim = CubeDim::new_1d(LANES);
                let count = calculate_cube_count_elemwise(&client, rows * LANES as usize, dim);
                launch!(few_query_attention_kernel, count, dim);
            }
        }
        out
    }
}
