//! The column sort's launch, as a burn backend extension (CubeCL runtimes, with or without
//! fusion).

use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use super::MAX_SORT;
use super::kernel::sort_columns_kernel;
use crate::backend::ops::launch::output;

/// The column sort's launch.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait SortColumnsOps: burn::backend::Backend {
    /// `x` (`[n, columns]`, `n ≤ MAX_SORT`) with each column sorted ascending, NaN last.
    #[fusion(dtype = x, shape = Shape::new([x[0], x[1]]))]
    fn sort_columns(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SortColumnsOps for CubeBackend {
    fn sort_columns(x: CubeTensor) -> CubeTensor {
        let x = into_contiguous(x);
        let [n, columns] = [x.meta.shape()[0], x.meta.shape()[1]];
        let (out, count, dim) = output(&x, Shape::new([n, columns]), columns);
        if n > 0 && columns > 0 {
            let client = x.client.clone();
            sort_columns_kernel::launch(
                &client,
                count,
                dim,
                x.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                columns as u32,
                n as u32,
                MAX_SORT,
            );
        }
        out
    }
}
