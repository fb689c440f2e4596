//! Host-side sampling for CPU backends: seeded, chunked, parallel over every core.
//!
//! A call's output is cut into fixed chunks of [`CHUNK`] elements; chunk `c` of the `k`-th call
//! after `seed(s)` draws from its own `Xoshiro256PlusPlus` keyed by `(s, k, c)`. The samples
//! therefore depend on the seed and on the call sequence, never on the number of threads or on
//! how rayon schedules the chunks.

use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Gamma, StandardNormal};
use rayon::prelude::*;

use super::Op;
use crate::error::{Error, Result};
use crate::rng::{DrawKey, unit_f32};

/// Elements per independently seeded chunk: large enough that seeding (a few ns) is noise next to
/// sampling (~10-50 ns per element), small enough that one Toto decode step (~86k draws) spreads
/// over 10+ cores.
pub(crate) const CHUNK: usize = 4096;

/// A seed and a per-call stream counter, shared by every clone of a backend.
#[derive(Debug)]
pub(crate) struct HostRng {
    state: Mutex<(u64, u64)>,
}

/// The key of one call's stream: `(seed, call index)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamKey(u64, u64);

impl StreamKey {
    /// The Philox key of this call ([`crate::rng`]): the seed, and the call number's low word.
    pub(crate) fn draw_key(self) -> DrawKey {
        DrawKey::new(self.0, self.1 as u32)
    }
}

impl HostRng {
    pub(crate) fn new(seed: u64) -> Self {
        HostRng {
            state: Mutex::new((seed, 0)),
        }
    }

    /// Restarts the call sequence from `seed`.
    pub(crate) fn reseed(&self, seed: u64) {
        *self.lock() = (seed, 0);
    }

    /// The key for the next call; each call gets a distinct one.
    pub(crate) fn next_stream(&self) -> StreamKey {
        let mut state = self.lock();
        let key = StreamKey(state.0, state.1);
        state.1 = state.1.wrapping_add(1);
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        // The state is two integers written whole: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// SplitMix64's finaliser: a bijective 64-bit mixer (Steele, Lea & Flood 2014).
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn chunk_rng(key: StreamKey, chunk: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(mix(mix(mix(key.0) ^ key.1) ^ chunk as u64))
}

/// Fills `out` chunk by chunk, in parallel once there is more than one chunk.
/// `f(rng, offset, chunk)` fills `chunk`, which starts at element `offset` of `out`.
pub(crate) fn fill<T: Send, F>(key: StreamKey, out: &mut [T], f: F)
where
    F: Fn(&mut Xoshiro256PlusPlus, usize, &mut [T]) + Sync,
{
    if out.len() <= CHUNK {
        f(&mut chunk_rng(key, 0), 0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| f(&mut chunk_rng(key, c), c * CHUNK, chunk));
    }
}

/// `U[0, 1)` draws from Philox blocks ([`crate::rng`]): element `i` is word `i mod 4` of block
/// `i / 4`, bit for bit what the wgpu kernel computes for the same seed and call.
pub(crate) fn uniform(key: StreamKey, n: usize) -> Vec<f32> {
    let key = key.draw_key();
    let mut out = vec![0.0; n];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            // CHUNK is a multiple of 4: each chunk starts at a block boundary.
            for (b, four) in chunk.chunks_mut(4).enumerate() {
                let words = key.block((c * CHUNK / 4 + b) as u64, 0);
                for (o, &w) in four.iter_mut().zip(&words) {
                    *o = unit_f32(w);
                }
            }
        });
    out
}

/// `N(0, 1)` draws (rand_distr's ziggurat).
pub(crate) fn standard_normal(key: StreamKey, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    fill(key, &mut out, |rng, _, chunk| {
        chunk
            .iter_mut()
            .for_each(|o| *o = StandardNormal.sample(rng));
    });
    out
}

/// One `Gamma(alpha[i], 1)` draw per element, with the value rules of
/// [`Backend::standard_gamma`](crate::Backend::standard_gamma).
pub(crate) fn standard_gamma(key: StreamKey, alpha: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; alpha.len()];
    fill(key, &mut out, |rng, offset, chunk| {
        gamma_chunk(rng, &alpha[offset..offset + chunk.len()], chunk);
    });
    out
}

fn gamma_chunk(rng: &mut Xoshiro256PlusPlus, alpha: &[f32], out: &mut [f32]) {
    // Runs of equal alpha are the common case (a broadcast concentration, Chi2's df/2): the
    // sampler is built once per run and the inner loop is rand_distr's own.
    let mut start = 0;
    while start < alpha.len() {
        let a = alpha[start];
        // NaN equals nothing, so a NaN is a run of one.
        let len = alpha[start..]
            .iter()
            .take_while(|&&x| x == a)
            .count()
            .max(1);
        let run = &mut out[start..start + len];
        match Gamma::new(a, 1.0) {
            _ if a == f32::INFINITY => run.fill(f32::INFINITY),
            Ok(g) => run
                .iter_mut()
                .for_each(|o| *o = g.sample(rng).max(f32::MIN_POSITIVE)),
            // alpha <= 0 or NaN: no such distribution.
            Err(_) => run.fill(f32::NAN),
        }
        start += len;
    }
}

/// `samples` category indices per row of `logits` (`rows × k`, row-major, unnormalised
/// log-weights), as `[samples, rows]` row-major. Each row becomes, in place, the cumulative sums
/// of `exp(logit − row max)` (one fused pass); a uniform scaled by the row's total is then located
/// in them by a linear scan (K is small: Toto's mixtures have 24 components).
pub(crate) fn categorical(key: StreamKey, logits: Vec<f32>, k: usize, samples: usize) -> Vec<i64> {
    let rows = logits.len() / k;
    let mut cdf = logits;
    // Blocks of whole rows, about one CHUNK of values each, so rayon's splitting is amortised.
    let block = k * (CHUNK / k).max(1);
    cdf.par_chunks_mut(block).for_each(|block| {
        for row in block.chunks_exact_mut(k) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|w| *w -= max);
        }
        exp_in_place(block);
        for row in block.chunks_exact_mut(k) {
            let mut acc = 0.0;
            row.iter_mut().for_each(|w| {
                acc += *w;
                *w = acc;
            });
        }
    });
    let mut out = vec![0i64; samples * rows];
    fill(key, &mut out, |rng, offset, chunk| {
        for (j, o) in chunk.iter_mut().enumerate() {
            let row = &cdf[((offset + j) % rows) * k..][..k];
            let u = rng.random::<f32>() * row[k - 1];
            // Rounding can leave u at the total, and a row without a finite logit is NaN:
            // the last index then.
            *o = row.iter().position(|&c| u < c).unwrap_or(k - 1) as i64;
        }
    });
    out
}

/// `x ↦ eˣ` over a slice, eight lanes at a time (`wide`'s polynomial exp, within a few ulp of
/// libm's and several times faster: the softmax weights of a categorical draw are its hot loop).
fn exp_in_place(values: &mut [f32]) {
    let mut lanes = values.chunks_exact_mut(8);
    for lane in &mut lanes {
        let x = wide::f32x8::from(&*lane).exp();
        lane.copy_from_slice(&x.to_array());
    }
    lanes.into_remainder().iter_mut().for_each(|v| *v = v.exp());
}

/// Reads an `f32` tensor back into a host vector (a device sync on a GPU).
pub(crate) fn read_f32<const D: usize>(what: &str, tensor: Tensor<D>) -> Result<Vec<f32>> {
    let device = tensor.device();
    let fail = |reason: String| Error::ReadBack {
        what: what.to_owned(),
        device: format!("{device:?}"),
        reason,
    };
    let data = tensor.try_into_data().map_err(|e| fail(e.to_string()))?;
    let data = if data.dtype() == burn::tensor::DType::F32 {
        data
    } else {
        data.convert::<f32>()
    };
    data.try_into_vec::<f32>()
        .map_err(|e| fail(format!("{e:?}")))
}

/// Uploads a host vector as a tensor of `shape` on `device`.
/// A scaler computation on the host: `series` and `weights` read back, `(loc, scale)` computed by
/// `f` from their shape and values, both uploaded to `device`.
pub(crate) fn scaler(
    series: Tensor<3>,
    weights: Tensor<3>,
    device: &Device,
    f: impl FnOnce([usize; 3], &[f32], &[f32]) -> Result<(Vec<f32>, Vec<f32>)>,
) -> Result<(Tensor<3>, Tensor<3>)> {
    let shape = series.dims();
    let x = read_f32(Op::PatchScaler.name(), series)?;
    let w = read_f32(Op::PatchScaler.name(), weights)?;
    let (loc, scale) = f(shape, &x, &w)?;
    Ok((upload(loc, shape, device), upload(scale, shape, device)))
}

pub(crate) fn upload<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_do_not_depend_on_thread_count() {
        let alpha: Vec<f32> = (0..5 * CHUNK + 17).map(|i| 0.3 + (i % 7) as f32).collect();
        let parallel = standard_gamma(StreamKey(7, 3), &alpha);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let serial = pool.install(|| standard_gamma(StreamKey(7, 3), &alpha));
        assert_eq!(parallel, serial);
    }

    #[test]
    fn streams_differ_by_seed_and_by_call() {
        let rng = HostRng::new(1);
        let a = uniform(rng.next_stream(), 100);
        let b = uniform(rng.next_stream(), 100);
        assert_ne!(a, b, "consecutive calls must not repeat");
        rng.reseed(1);
        assert_eq!(
            uniform(rng.next_stream(), 100),
            a,
            "reseeding restarts the sequence"
        );
        rng.reseed(2);
        assert_ne!(
            uniform(rng.next_stream(), 100),
            a,
            "another seed, another stream"
        );
    }

    #[test]
    fn vector_exp_matches_libm() {
        // libm's expf is the oracle; the range covers what a max-shifted logit can be.
        let mut xs: Vec<f32> = (0..2001).map(|i| -100.0 + 0.05 * i as f32).collect();
        xs.extend([f32::NEG_INFINITY, -1e-30, 0.0, 1e-30]);
        let mut got = xs.clone();
        exp_in_place(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = f64::from(x).exp();
            let err = (f64::from(g) - want).abs() / want.max(f64::from(f32::MIN_POSITIVE));
            assert!(
                err <= 4.0 * f64::from(f32::EPSILON),
                "exp({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn gamma_value_rules() {
        let out = standard_gamma(
            StreamKey(0, 0),
            &[-1.0, 0.0, f32::NAN, f32::INFINITY, 1e-3, 2.5],
        );
        assert!(out[0].is_nan() && out[1].is_nan() && out[2].is_nan());
        assert_eq!(out[3], f32::INFINITY);
        assert!(
            out[4] >= f32::MIN_POSITIVE,
            "tiny alpha is clamped, got {}",
            out[4]
        );
        assert!(out[5] > 0.0 && out[5].is_finite());
    }
}
