//! The scaler kernels' launches, as a burn backend extension (CubeCL runtimes, with or without
//! fusion).

use burn::backend::backend_extension;
#[cfg(feature = "fusion")]
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::STATE_WORDS;
use super::kernel::{scaler_extend_kernel, scaler_start_kernel};
use crate::backend::ops::launch::per_row;

/// The shape and dtype of [`ScalerOps::scaler_start`]'s output, for the fusion stream.
#[cfg(feature = "fusion")]
fn start_meta(
    x: &TensorSpec,
    _w: &TensorSpec,
    _end: &usize,
    _stabilize: &bool,
    _factor: &f64,
    _variance_floor: &f64,
) -> TensorSpec {
    TensorSpec::new(Shape::new([x.shape[0], STATE_WORDS]), DType::F64)
}

/// Toto's scaler on CubeCL runtimes with f64 shaders: one thread per series.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait ScalerOps: burn::backend::Backend {
    /// The `[rows, STATE_WORDS]` f64 state of the series `x`/`w` (`[rows, T]`), bounds from their
    /// first `end` steps when `stabilize`.
    #[fusion(meta = start_meta)]
    fn scaler_start(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        end: usize,
        stabilize: bool,
        factor: f64,
        variance_floor: f64,
    ) -> FloatTensor<Self>;

    /// `(loc, scale, state')` of `x`/`w` (`[rows, T]`) continuing `state`.
    #[fusion(meta = |x, _w, state, _patch, _vf, _sf| (x.clone(), x.clone(), state.clone()))]
    fn scaler_extend(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        state: FloatTensor<Self>,
        patch: usize,
        variance_floor: f64,
        scale_floor: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl ScalerOps for CubeBackend {
    fn scaler_start(
        x: CubeTensor,
        w: CubeTensor,
        end: usize,
        stabilize: bool,
        factor: f64,
        variance_floor: f64,
    ) -> CubeTensor {
        let [x, w] = [x, w].map(into_contiguous);
        let (rows, t) = (x.meta.shape()[0], x.meta.shape()[1]);
        let state = empty_device_dtype(
            x.client.clone(),
            x.device.clone(),
            Shape::new([rows, STATE_WORDS]),
            DType::F64,
        );
        if rows > 0 {
            let (count, dim) = per_row(&x, rows);
            scaler_start_kernel::launch(
                &x.client,
                count,
                dim,
                x.clone().into_buffer_arg(),
                w.clone().into_buffer_arg(),
                state.clone().into_buffer_arg(),
                rows as u32,
                t as u32,
                end.min(t) as u32,
                u32::from(stabilize),
                factor,
                variance_floor,
            );
        }
        state
    }

    fn scaler_extend(
        x: CubeTensor,
        w: CubeTensor,
        state: CubeTensor,
        patch: usize,
        variance_floor: f64,
        scale_floor: f64,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, w, state] = [x, w, state].map(into_contiguous);
        let (rows, t) = (x.meta.shape()[0], x.meta.shape()[1]);
        let new = |shape: Shape, dtype| {
            empty_device_dtype(x.client.clone(), x.device.clone(), shape, dtype)
        };
        let loc = new(Shape::new([rows, t]), DType::F32);
        let scale = new(Shape::new([rows, t]), DType::F32);
        let out = new(Shape::new([rows, STATE_WORDS]), DType::F64);
        if rows > 0 {
            let (count, dim) = per_row(&x, rows);
            scaler_extend_kernel::launch(
                &x.client,
                count,
                dim,
                x.clone().into_buffer_arg(),
                w.clone().into_buffer_arg(),
                state.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                loc.clone().into_buffer_arg(),
                scale.clone().into_buffer_arg(),
                rows as u32,
                t as u32,
                patch.max(1) as u32,
                variance_floor,
                scale_floor,
            );
        }
        (loc, scale, out)
    }
}
