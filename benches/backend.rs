//! Backend-layer throughput.
//!
//! - `standard_gamma(2.5)`: `NdArray` (every core, and one core), `FallbackBackend<Wgpu, NdArray>`
//!   with gamma forced onto the CPU (a forwarded op with its device round trip) and native (the
//!   Philox kernel), and the CPU anchor, a plain `rand_distr` loop on one core. 86,016 draws is
//!   one Toto decode step (336 steps x 256 samples).
//! - `special`: `lgamma` and `digamma` as tensor compositions on each device (the wgpu rows are
//!   where burn's kernel fusion matters).
//!
//! `cargo bench --bench backend`; results go into docs/PERFORMANCE.md with the machine.

use std::hint::black_box;

use burn::tensor::Tensor;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, Gamma};
use toto_fallback::{Backend, FallbackBackend, FallbackPolicy, NdArray, Op, Wgpu};

const ALPHA: f32 = 2.5;
const SIZES: [usize; 3] = [10_000, 86_016, 1_000_000];

fn gamma(c: &mut Criterion) {
    let mut group = c.benchmark_group("standard_gamma(2.5)");
    group.sample_size(20);
    let one_core = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let gpu = Wgpu::new()
        .map_err(|e| eprintln!("wgpu rows skipped: {e}"))
        .ok();

    for n in SIZES {
        group.throughput(Throughput::Elements(n as u64));

        group.bench_with_input(
            BenchmarkId::new("rand_distr loop, 1 core", n),
            &n,
            |b, &n| {
                let dist = Gamma::new(ALPHA, 1.0).unwrap();
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
                let mut out = vec![0f32; n];
                b.iter(|| {
                    out.iter_mut().for_each(|o| *o = dist.sample(&mut rng));
                    black_box(&out);
                });
            },
        );

        let cpu = NdArray::seeded(1);
        let alpha = Tensor::<1>::full([n], ALPHA, cpu.device());
        group.bench_with_input(BenchmarkId::new("NdArray, 1 core", n), &n, |b, _| {
            b.iter(|| one_core.install(|| black_box(cpu.standard_gamma(alpha.clone()).unwrap())));
        });
        group.bench_with_input(BenchmarkId::new("NdArray, all cores", n), &n, |b, _| {
            b.iter(|| black_box(cpu.standard_gamma(alpha.clone()).unwrap()));
        });

        if let Some(gpu) = &gpu {
            let cases = [
                ("FallbackBackend<Wgpu, NdArray>, forwarded", true),
                ("FallbackBackend<Wgpu, NdArray>, native", false),
            ];
            for (label, forced) in cases {
                let gpu = if forced {
                    gpu.clone().with_unsupported([Op::StandardGamma])
                } else {
                    gpu.clone()
                };
                let backend = FallbackBackend::new(gpu, NdArray::seeded(1))
                    .with_policy(FallbackPolicy::Silent);
                let alpha = Tensor::<1>::full([n], ALPHA, backend.device());
                group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                    b.iter(|| {
                        let g = backend.standard_gamma(alpha.clone()).unwrap();
                        // Wait for the device so the whole call is measured.
                        backend.device().sync().unwrap();
                        black_box(g)
                    });
                });
            }
        }
    }
    group.finish();
}

fn special(c: &mut Criterion) {
    let n = 1_000_000;
    let mut group = c.benchmark_group("special");
    group.sample_size(20);
    group.throughput(Throughput::Elements(n as u64));
    let cpu = NdArray::seeded(1);
    let gpu = Wgpu::new().ok();
    let devices = [Some(cpu.device().clone()), gpu.map(|g| g.device().clone())];
    for device in devices.into_iter().flatten() {
        let name = if &device == cpu.device() {
            "ndarray"
        } else {
            "wgpu"
        };
        let x = Tensor::<1>::random([n], burn::tensor::Distribution::Uniform(0.1, 50.0), &device);
        group.bench_function(BenchmarkId::new("lgamma", name), |b| {
            b.iter(|| {
                let y = toto_fallback::special::lgamma(x.clone());
                device.sync().unwrap();
                black_box(y)
            });
        });
        group.bench_function(BenchmarkId::new("digamma", name), |b| {
            b.iter(|| {
                let y = toto_fallback::special::digamma(x.clone());
                device.sync().unwrap();
                black_box(y)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, gamma, special);
criterion_main!(benches);
