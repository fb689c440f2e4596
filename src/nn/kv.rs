//! One attention layer's cached keys and values in buffers of fixed capacity, written in place
//! and read whole with a mask by length: both generations' decode paths and streaming sessions
//! keep their KV caches in these.
//!
//! A cache that grows by concatenation has a new length, so new shapes, at every step: a copy of
//! everything cached per layer per step, and on a GPU kernels to compile and tune for each new
//! attention shape (on a machine that never ran the crate, most of the first forecast). A buffer
//! of fixed capacity keeps one attention shape for every step of a forecast: each step writes its
//! entries in place (`slice_assign` writes into the buffer when this cache holds it alone, on
//! burn-ndarray and on CubeCL alike) and attention reads the whole buffer with
//! [`Mask::Cache`](crate::backend::Mask::Cache), which hides the unwritten entries (a CPU
//! backend does not read them at all).

use burn::tensor::Tensor;

/// Keys and values (`[N, G, capacity, d]` each) of which the first `len` entries along
/// dimension 2 are written.
#[derive(Debug, Clone, Default)]
pub(crate) struct KvBuffer {
    buffers: Option<(Tensor<4>, Tensor<4>)>,
    len: usize,
    /// The capacity the buffers get at the first write (at least what it writes).
    reserve: usize,
}

impl KvBuffer {
    /// An empty cache whose buffers will hold `capacity` entries: every write up to that many
    /// entries in all keeps one shape.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        KvBuffer {
            buffers: None,
            len: 0,
            reserve: capacity,
        }
    }

    /// Entries written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The buffers' length along the sequence (the reserve before the first write).
    pub(crate) fn capacity(&self) -> usize {
        self.buffers
            .as_ref()
            .map_or(self.reserve, |(k, _)| k.dims()[2])
    }

    /// The capacity the buffers have after `s` more entries are written: the same unless they
    /// do not fit, then twice as many (amortised growth) or what they need.
    pub(crate) fn capacity_after(&self, s: usize) -> usize {
        let (capacity, needed) = (self.capacity(), self.len + s);
        match (needed <= capacity, self.buffers.is_some()) {
            (true, _) => capacity,
            (false, false) => needed,
            (false, true) => needed.max(2 * capacity),
        }
    }

    /// Writes `k` and `v` (`[N, G, S, d]`) as entries `len..len + S` and returns the whole
    /// buffers (`[N, G, capacity_after(S), d]`), to read with
    /// [`Mask::Cache`](crate::backend::Mask::Cache) `{ len }` (the new length). In place when
    /// this cache holds its buffers alone (the returned handles are dropped before the next
    /// write); a copy otherwise (a cache cloned for another forecast writes its own).
    pub(crate) fn write(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [n, g, s, dk] = k.dims();
        let dv = v.dims()[3];
        let capacity = self.capacity_after(s);
        if self.len == 0 && s == capacity {
            // The write fills the buffers: they are its own tensors (no allocation, no copy).
            self.len = s;
            self.buffers = Some((k.clone(), v.clone()));
            return (k, v);
        }
        let device = k.device();
        let (bk, bv) = match self.buffers.take() {
            Some((bk, bv)) if bk.dims()[2] == capacity => (bk, bv),
            old => {
                let (mut bk, mut bv) = (
                    Tensor::zeros([n, g, capacity, dk], &device),
                    Tensor::zeros([n, g, capacity, dv], &device),
                );
                if let Some((ok, ov)) = old.filter(|_| self.len > 0) {
                    let kept = [0..n, 0..g, 0..self.len];
                    bk = bk.slice_assign(kept.clone(), ok.narrow(2, 0, self.len));
                    bv = bv.slice_assign(kept, ov.narrow(2, 0, self.len));
                }
                (bk, bv)
            }
        };
        let at = [0..n, 0..g, self.len..self.len + s];
        let (bk, bv) = (bk.slice_assign(at.clone(), k), bv.slice_assign(at, v));
        self.len += s;
        self.buffers = Some((bk.clone(), bv.clone()));
        (bk, bv)
    }

    /// Forgets the last `n` entries (they are overwritten by the next write).
    pub(crate) fn rewind(&mut self, n: usize) {
        self.len = self.len.saturating_sub(n);
    }

    /// Counts the first `len` entries (at most the capacity) as written again: undoes rewinds
    /// and writes whose entries past `len` nobody reads before they are written again (a
    /// session's pass that failed).
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity());
    }

    /// The written entries, `[N, G, len, d]` each (views of the buffers); `None` when empty.
    #[cfg(test)]
    pub(crate) fn written(&self) -> Option<(Tensor<4>, Tensor<4>)> {
        let (k, v) = self.buffers.as_ref().filter(|_| self.len > 0)?;
        Some((
            k.clone().narrow(2, 0, self.len),
            v.clone().narrow(2, 0, self.len),
        ))
    }

    /// The whole buffers (`[N, G, capacity, d]` each, no copy) and how many entries of them
    /// are written; `None` when empty. A reader masks the entries past the length (as
    /// [`Mask::Cache`](crate::backend::Mask::Cache) does) instead of narrowing the buffers,
    /// which some backends copy (burn-ndarray copies every slice, value by value when it is
    /// not contiguous).
    pub(crate) fn whole(&self) -> Option<(Tensor<4>, Tensor<4>, usize)> {
        let (k, v) = self.buffers.as_ref().filter(|_| self.len > 0)?;
        Some((k.clone(), v.clone(), self.len))
    }

    /// This cache with `f` applied to the keys' buffer and `g` to the values' (functions that
    /// keep the shape along dimension 2: a new buffer, same length and capacity).
    pub(crate) fn map(
        &self,
        f: impl Fn(Tensor<4>) -> Tensor<4>,
        g: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> Self {
        KvBuffer {
            buffers: self
                .buffers
                .as_ref()
                .map(|(k, v)| (f(k.clone()), g(v.clone()))),
            len: self.len,
            reserve: self.reserve,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn entries(n: usize, s: usize, from: f32, device: &burn::tensor::Device) -> Tensor<4> {
        let x: Vec<f32> = (0..n * 2 * s * 3).map(|i| from + i as f32).collect();
        Tensor::from_data(TensorData::new(x, [n, 2, s, 3]), device)
    }

    fn read(t: Tensor<4>) -> (Vec<usize>, Vec<f32>) {
        (
            t.dims().to_vec(),
            t.into_data().try_to_vec::<f32>().unwrap(),
        )
    }

    /// Writes, a rewind that the next write overwrites, growth past the capacity, and a clone
    /// that writes without touching the original: the written entries always equal the
    /// concatenation of what was written (the cache this buffer replaces).
    #[test]
    fn written_entries_are_the_concatenation() {
        let device = burn::tensor::Device::default();
        let mut cache = KvBuffer::with_capacity(5);
        assert_eq!((cache.len(), cache.capacity()), (0, 5));
        let (a, b, c) = (
            entries(2, 3, 0.0, &device),
            entries(2, 1, 100.0, &device),
            entries(2, 2, 200.0, &device),
        );
        let (k, _) = cache.write(a.clone(), a.clone().neg());
        assert_eq!(k.dims(), [2, 2, 5, 3]);
        cache.write(b.clone(), b.clone().neg());
        cache.rewind(1);
        assert_eq!(cache.len(), 3);
        let mut copy = cache.clone();
        cache.write(c.clone(), c.clone().neg());
        assert_eq!((cache.len(), cache.capacity()), (5, 5));
        let want = Tensor::cat(vec![a.clone(), c.clone()], 2);
        let (k, v) = cache.written().unwrap();
        assert_eq!(read(k), read(want.clone()));
        assert_eq!(read(v), read(want.neg()));
        // The clone still holds a's entries and b's (rewound) slot, and grows on its own.
        copy.write(b.clone(), b.clone().neg());
        assert_eq!(copy.capacity_after(2), 10);
        let (k, _) = copy.write(c.clone(), c.clone().neg());
        assert_eq!(k.dims(), [2, 2, 10, 3]);
        let want = Tensor::cat(vec![a, b, c], 2);
        assert_eq!(read(copy.written().unwrap().0), read(want));
        assert_eq!(cache.len(), 5);
    }
}
