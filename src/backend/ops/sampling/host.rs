//! The samplers on the host, for CPU backends: seeded, chunked, parallel over every core.
//!
//! A call's output is cut into fixed chunks of [`CHUNK`] elements; chunk `c` of the `k`-th call
//! after `seed(s)` draws from its own `Xoshiro256PlusPlus` keyed by `(s, k, c)`. The samples
//! therefore depend on the seed and on the call sequence, never on the number of threads or on
//! how rayon schedules the chunks.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, Gamma, StandardNormal};
use rayon::prelude::*;

use crate::backend::stream::StreamKey;
use crate::rng::unit_f32;

/// Elements per independently seeded chunk: large enough that seeding (a few ns) is noise next to
/// sampling (~10-50 ns per element), small enough that one Toto decode step (~86k draws) spreads
/// over 10+ cores.
pub(crate) const CHUNK: usize = 4096;

/// SplitMix64's finaliser: a bijective 64-bit mixer (Steele, Lea & Flood 2014).
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn chunk_rng(key: StreamKey, chunk: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(mix(mix(mix(key.seed) ^ key.call) ^ chunk as u64))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::stream::Streams;

    #[test]
    fn draws_do_not_depend_on_thread_count() {
        let alpha: Vec<f32> = (0..5 * CHUNK + 17).map(|i| 0.3 + (i % 7) as f32).collect();
        let parallel = standard_gamma(StreamKey { seed: 7, call: 3 }, &alpha);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let serial = pool.install(|| standard_gamma(StreamKey { seed: 7, call: 3 }, &alpha));
        assert_eq!(parallel, serial);
    }

    #[test]
    fn streams_differ_by_seed_and_by_call() {
        let rng = Streams::new(1);
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
    fn gamma_value_rules() {
        let out = standard_gamma(
            StreamKey { seed: 0, call: 0 },
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
