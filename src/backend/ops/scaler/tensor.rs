//! The scaler's tensor-level entry point, which [`Wgpu`](crate::Wgpu) calls: the two f64 kernels,
//! with the state kept in a GPU buffer between calls.

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::launch::ScalerOps;
use super::{STATE_WORDS, ScalerSpec, ScalerState};
use crate::backend::ops::launch::f32_dispatch;
use crate::shape::ReshapeExact;

/// `(loc, scale)` of `series`/`weights` (`[B, V, T]`) continuing `state` (started here, with
/// the clamp bounds of these steps, if it is empty), on the kernels; the state stays on
/// `device`. Callers check the arguments first.
pub(crate) fn run(
    device: &Device,
    state: &mut ScalerState,
    series: Tensor<3>,
    weights: Tensor<3>,
    spec: ScalerSpec,
) -> (Tensor<3>, Tensor<3>) {
    let [b, v, t] = series.dims();
    if b * v * t == 0 {
        // burn's reshape reads a 0 as "keep this dimension": nothing to compute anyway.
        state.shape.get_or_insert([b, v]);
        let empty = || Tensor::empty([b, v, t], device);
        return (empty(), empty());
    }
    let x = series.reshape_exact([b * v, t]);
    let w = weights.reshape_exact([b * v, t]);
    let start = match state.on_device(device) {
        Some(s) => s,
        None => {
            let end = spec.prefix.unwrap_or(t).min(t);
            let factor = 10f64.powf(spec.exponent);
            state.shape = Some([b, v]);
            start_state(x.clone(), w.clone(), end, spec, factor)
        }
    };
    let (loc, scale, next) = extend(x, w, start, spec);
    state.device = Some(next);
    state.rows.clear();
    (loc.reshape_exact([b, v, t]), scale.reshape_exact([b, v, t]))
}

impl ScalerState {
    /// The statistics as a `[B·V, STATE_WORDS]` f64 tensor on `device` (uploading host
    /// statistics once); `None` before the first step.
    fn on_device(&mut self, device: &Device) -> Option<Tensor<2>> {
        self.shape?;
        if self.device.is_none() {
            let words: Vec<f64> = self.rows.iter().flat_map(|r| r.to_words()).collect();
            let rows = self.rows.len();
            self.device = Some(Tensor::from_data(
                TensorData::new(words, [rows, STATE_WORDS]),
                (device, DType::F64),
            ));
        }
        self.device.clone()
    }
}

/// The scaler state of `x`/`w` (`[rows, T]`, f32): `[rows, STATE_WORDS]` in f64.
fn start_state(x: Tensor<2>, w: Tensor<2>, end: usize, spec: ScalerSpec, factor: f64) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::scaler_start(
        f32_dispatch(x),
        f32_dispatch(w),
        end,
        spec.stabilize,
        factor,
        spec.variance_floor,
    ))
}

/// `(loc, scale, state')` continuing `state` over `x`/`w` (`[rows, T]`).
fn extend(
    x: Tensor<2>,
    w: Tensor<2>,
    state: Tensor<2>,
    spec: ScalerSpec,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let (loc, scale, state) = Dispatch::scaler_extend(
        f32_dispatch(x),
        f32_dispatch(w),
        state.into_dispatch(),
        spec.patch,
        spec.variance_floor,
        spec.scale_floor,
    );
    (
        Tensor::from_dispatch(loc),
        Tensor::from_dispatch(scale),
        Tensor::from_dispatch(state),
    )
}
