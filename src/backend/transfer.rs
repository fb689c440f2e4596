//! Moving data between a device and the host, with read failures as [`Error::ReadBack`] (burn's
//! `into_data` and `to_device` would panic on them), and the [`Transfer`] of an op's inputs and
//! outputs between a [`FallbackBackend`](super::FallbackBackend)'s two devices.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::op::Op;

/// Reads an `f32` tensor back into a host vector (a device sync on a GPU).
pub(crate) fn read_f32<const D: usize>(what: &str, tensor: Tensor<D>) -> Result<Vec<f32>> {
    let device = tensor.device();
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::read_back(what, &device, e))
}

/// Whether `device`'s tensors live in host memory (a CPU backend's, not a GPU's): there a read
/// is a copy, not a device round trip, and nothing is compiled.
pub(crate) fn in_host_memory(device: &Device) -> bool {
    #[cfg(feature = "wgpu")]
    #[allow(unreachable_patterns)]
    let host = !matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_));
    #[cfg(not(feature = "wgpu"))]
    let host = {
        let _ = device;
        true
    };
    host
}

/// Uploads a host vector as a tensor of `shape` on `device`.
pub(crate) fn upload<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A value a [`FallbackBackend`](super::FallbackBackend) moves between its devices when it
/// forwards an op: an input to the CPU, an output back to the GPU. Tensors cross through host
/// memory; groups of them cross one by one; state that follows an op moves its own data.
pub(crate) trait Transfer: Sized {
    /// `self` on `device`, and the bytes that crossed.
    ///
    /// # Errors
    /// [`Error::ReadBack`] if reading from the source device fails.
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)>;
}

impl Transfer for () {
    fn transfer(self, _: Op, _: &Device) -> Result<(Self, u64)> {
        Ok(((), 0))
    }
}

impl<const D: usize> Transfer for Tensor<D> {
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)> {
        let shape = self.dims();
        let values = read_f32(op.name(), self)?;
        let bytes = 4 * values.len() as u64;
        Ok((upload(values, shape, device), bytes))
    }
}

/// Indices cross as `i32`, 4 bytes each.
impl<const D: usize> Transfer for Tensor<D, Int> {
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)> {
        let from = self.device();
        let data = self
            .try_into_data()
            .map_err(|e| Error::read_back(op.name(), &from, e.into()))?
            .convert::<i32>();
        let bytes = data.as_bytes().len() as u64;
        Ok((Tensor::from_data(data, device), bytes))
    }
}

/// Masks cross as one byte per element.
impl<const D: usize> Transfer for Tensor<D, Bool> {
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)> {
        let from = self.device();
        let data = self
            .try_into_data()
            .map_err(|e| Error::read_back(op.name(), &from, e.into()))?
            .convert::<bool>();
        let bytes = data.as_bytes().len() as u64;
        Ok((Tensor::from_data(data, device), bytes))
    }
}

impl<T: Transfer> Transfer for Option<T> {
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)> {
        match self {
            Some(t) => t.transfer(op, device).map(|(t, n)| (Some(t), n)),
            None => Ok((None, 0)),
        }
    }
}

impl<A: Transfer, B: Transfer> Transfer for (A, B) {
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)> {
        let (a, na) = self.0.transfer(op, device)?;
        let (b, nb) = self.1.transfer(op, device)?;
        Ok(((a, b), na + nb))
    }
}

impl<A: Transfer, B: Transfer, C: Transfer> Transfer for (A, B, C) {
    fn transfer(self, op: Op, device: &Device) -> Result<(Self, u64)> {
        let ((a, b), nab) = (self.0, self.1).transfer(op, device)?;
        let (c, nc) = self.2.transfer(op, device)?;
        Ok(((a, b, c), nab + nc))
    }
}
