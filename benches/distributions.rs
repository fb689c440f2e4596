//! Distribution throughput: Student-T and a Toto-shaped mixture (K = 24 Student-T components,
//! 10^5 positions), sampling and `log_prob`, on `NdArray` (all cores and one core) and on
//! `FallbackBackend<Wgpu, NdArray>`, next to `rand_distr` loops on one core.
//!
//! `cargo bench --bench distributions`; results go into docs/PERFORMANCE.md with the machine.

use std::hint::black_box;

use burn::tensor::{Distribution as Init, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution as _, StudentT as RdStudentT};
use toto_fallback::distr::{Categorical, Distribution, MixtureSameFamily, StudentT};
use toto_fallback::{Backend, FallbackBackend, FallbackPolicy, NdArray, Wgpu};

const N: usize = 100_000;
const K: usize = 24;

fn student_t<B: Backend>(b: &B, n: usize) -> StudentT<B, 1> {
    let dev = b.device();
    StudentT::new(
        b,
        Tensor::<1>::full([n], 5.0, dev),
        Tensor::<1>::zeros([n], dev),
        Tensor::<1>::ones([n], dev),
    )
    .unwrap()
}

/// Toto's head: N positions, K components with df in (2, 12), random locs, scales and weights.
fn mixture<B: Backend>(b: &B) -> MixtureSameFamily<B, StudentT<B, 2>, 1, 2> {
    let dev = b.device();
    let u = |lo, hi| Tensor::<2>::random([N, K], Init::Uniform(lo, hi), dev);
    let comp = StudentT::new(b, u(2.0, 12.0), u(-1.0, 1.0), u(0.1, 1.1)).unwrap();
    let mixing = Categorical::from_logits(b, u(-2.0, 2.0)).unwrap();
    MixtureSameFamily::new(mixing, comp).unwrap()
}

fn sync<B: Backend>(b: &B, t: Tensor<1>) -> Tensor<1> {
    b.device().sync().unwrap();
    t
}

fn bench_backend<B: Backend>(
    c: &mut Criterion,
    name: &str,
    b: &B,
    one_core: Option<&rayon::ThreadPool>,
) {
    let mut group = c.benchmark_group("distributions");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    let run = |f: &mut (dyn FnMut() + Send)| match one_core {
        Some(pool) => pool.install(f),
        None => f(),
    };
    let t = student_t(b, N);
    group.bench_function(BenchmarkId::new("student_t sample", name), |bench| {
        bench.iter(|| {
            run(&mut || {
                black_box(sync(b, t.sample::<1>(&[]).unwrap()));
            })
        });
    });
    let x = Tensor::<1>::random([N], Init::Normal(0.0, 2.0), b.device());
    group.bench_function(BenchmarkId::new("student_t log_prob", name), |bench| {
        bench.iter(|| {
            run(&mut || {
                black_box(sync(b, t.log_prob(x.clone()).unwrap()));
            })
        });
    });
    let mix = mixture(b);
    group.bench_function(BenchmarkId::new("mixture24 sample", name), |bench| {
        bench.iter(|| {
            run(&mut || {
                black_box(sync(b, mix.sample::<1>(&[]).unwrap()));
            })
        });
    });
    // Toto's per-step cost: the head's outputs become a new mixture (one softmax over [N, K])
    // and are sampled once.
    let (df, loc, scale, logits) = (
        mix.component().df().clone(),
        mix.component().loc().clone(),
        mix.component().scale().clone(),
        mix.mixing().logits(),
    );
    group.bench_function(BenchmarkId::new("mixture24 build+sample", name), |bench| {
        bench.iter(|| {
            run(&mut || {
                let comp = StudentT::new(b, df.clone(), loc.clone(), scale.clone()).unwrap();
                let mixing = Categorical::from_logits(b, logits.clone()).unwrap();
                let m: MixtureSameFamily<B, StudentT<B, 2>, 1, 2> =
                    MixtureSameFamily::new(mixing, comp).unwrap();
                black_box(sync(b, m.sample::<1>(&[]).unwrap()));
            })
        });
    });
    group.bench_function(BenchmarkId::new("mixture24 log_prob", name), |bench| {
        bench.iter(|| {
            run(&mut || {
                black_box(sync(b, mix.log_prob(x.clone()).unwrap()));
            })
        });
    });
    group.finish();
}

fn anchors(c: &mut Criterion) {
    let mut group = c.benchmark_group("distributions");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let t = RdStudentT::<f32>::new(5.0).unwrap();
    let mut out = vec![0f32; N];
    group.bench_function(
        BenchmarkId::new("student_t sample", "rand_distr loop, 1 core"),
        |bench| {
            bench.iter(|| {
                out.iter_mut().for_each(|o| *o = t.sample(&mut rng));
                black_box(&out);
            });
        },
    );
    // Mixture the scalar way: a WeightedIndex per position, then one StudentT of that component.
    let weights: Vec<[f32; K]> = (0..N)
        .map(|i| std::array::from_fn(|k| 1.0 + ((i * 7 + k * 13) % 11) as f32))
        .collect();
    let dfs: Vec<[f32; K]> = (0..N)
        .map(|i| std::array::from_fn(|k| 2.0 + ((i + k) % 10) as f32))
        .collect();
    group.bench_function(
        BenchmarkId::new("mixture24 sample", "rand_distr loop, 1 core"),
        |bench| {
            bench.iter(|| {
                for i in 0..N {
                    let k = WeightedIndex::new(weights[i]).unwrap().sample(&mut rng);
                    out[i] = RdStudentT::new(dfs[i][k]).unwrap().sample(&mut rng);
                }
                black_box(&out);
            });
        },
    );
    group.finish();
}

fn distributions(c: &mut Criterion) {
    anchors(c);
    let cpu = NdArray::seeded(1);
    let one_core = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    bench_backend(c, "NdArray, 1 core", &cpu, Some(&one_core));
    bench_backend(c, "NdArray, all cores", &cpu, None);
    match Wgpu::new() {
        Ok(gpu) => {
            let fallback =
                FallbackBackend::new(gpu, NdArray::seeded(1)).with_policy(FallbackPolicy::Silent);
            bench_backend(c, "FallbackBackend<Wgpu, NdArray>", &fallback, None);
        }
        Err(e) => eprintln!("wgpu rows skipped: {e}"),
    }
}

criterion_group!(benches, distributions);
criterion_main!(benches);
