//! Toto forecast time on the dashboard's workloads, with random weights of the
//! Toto-Open-Base-1.0 configuration (151M parameters), on the same inputs as
//! `bench/toto_ts_bench.py` (the toto-ts anchor): `sin(t / 10) + 0.01 t` for every variate.
//!
//! - criterion: `cargo bench --bench toto` times W-small on `NdArray` (all cores).
//! - bench binary: `cargo bench --bench toto -- --workload w-eval --backend fallback` runs one
//!   workload a few times and prints one JSON line (first run and median of the rest) like the
//!   anchor script, with the fallback's report. Workloads: `w-small` (B=1, V=4, context 512,
//!   horizon 128, 32 samples), `w-eval` (B=1, V=8, context 2048, horizon 336, 256 samples),
//!   `w-eval-b4` (as w-eval with B=4). Backends: `ndarray`, `fallback`
//!   (`FallbackBackend<Wgpu, NdArray>`), `fallback-forced` (the same with every native sampler
//!   forced onto the CPU). `--runs N` (default 4). With
//!   `RUST_LOG=toto_fallback=trace` the forecaster logs each phase's time (synchronising the
//!   device for each reading).
//!
//! - `cargo bench --bench toto -- --sampling [--forced]`: sampling throughput (JSON lines) on
//!   the fallback's native kernels, and with `--forced` on the CPU through the fallback.
//!
//! - Toto 2.0: `cargo bench --bench toto -- --toto2 22m --workload t2-small --backend fallback`
//!   times a forecast of random weights of the size-like configuration (`4m`, `22m`, `313m`, as
//!   `bench/toto2_bench.py`: patch 32, xPos, q/k-norm, groups of 4 layers with one variate layer
//!   last) on `t2-small` (B 1, V 4, context 512, horizon 128) or `t2-boom` (B 64, V 4, context
//!   2048, horizon 256), one pass without missing values, the median read back, like the anchor.
//!   Toto 2.0's matrix products run in the backend's precision (`Backend::precision`: f16 on a
//!   GPU with f16 tensor cores, f32 elsewhere); `--precision f32|f16|bf16` names one
//!   (`Wgpu::with_precision`; Toto 2.0 only: the Toto 1.0 workloads ignore it).
//! - `--devices N|all --workload NAME [--model toto1|22m|313m] [--precision f16]`: series per
//!   second on one GPU and on the first `N` discrete GPUs of the host (`MultiDevice`), in one
//!   process, one JSON line each. `TOTO_BENCH_FIRST_GPU=k` starts at the k-th GPU, and
//!   `TOTO_BENCH_BARRIER=DIR:N` holds each process after its first forecast until `N` processes
//!   have reached that point: with `--devices 1`, one process per GPU started together time their
//!   steady runs side by side (the one-process-per-GPU comparison of docs/PERFORMANCE.md).
//! - `--matmul M,K,N`: the wgpu adapter's matmul throughput in f32, flex32, f16 and bf16.
//! - `--cold-start N ARGS…`: the other arguments run in `N` fresh processes one after the other
//!   (cold start: device opening, kernel compilation and autotuning, and with the `cache`
//!   feature what the earlier processes left on disk).
//! - `--export-cache FILE` writes this machine's kernel cache to a bundle and exits;
//!   `--import-cache FILE` fills the cache from one before the rest of the arguments run;
//!   `--prewarm` then has the driver compile the stored kernels on all cores (`vulkan`)
//!   (`kernel_cache`, the `cache` feature).
//!
//! - `--stream NAMES [--backend ndarray|fallback] [--runs N] [--precision P]`: a streaming
//!   session's cost (`Forecaster::stream`: one pushed patch and the next forecast, read back)
//!   against a full forecast of the same request, one JSON line per workload: `w-eval` (Toto 1.0
//!   as W-eval), `w-eval-mean` (its mean path), `w-eval-next` (256 paths of the next patch, what
//!   scoring new points reads), `t2-2048` (Toto 2.0 22m-like, B 1, V 4, context 2048, horizon
//!   128), `t2-2048-b16` and `t2-2048-b256` (the same with B 16 and 256), `t2-2048-b16-cov` (B
//!   16 with two known covariates a horizon ahead, a patch of them pushed with each patch of the
//!   series), `w-eval-next-b16` (`w-eval-next` with B 16). `--precision` sets the GPU's (Toto
//!   2.0's products) on the fallback. `TOTO_BENCH_SPLIT=1` prints each full forecast's time and
//!   the push's and the forecast's times of each run (lines between which a kernel profile's
//!   launches fall).
//!
//! - `--graph-probe ROWS[,ROWS…]`: what a pass bound by launches costs eagerly and replayed
//!   from a graph burn captured (`burn::tensor::capture`): 12 layers shaped like Toto 2.0
//!   22m-like's (RMSNorms, products in the adapter's precision, a small attention) over `ROWS`
//!   rows, one JSON line per size (medians of 30 after 3 warm-ups, the device synchronised).
//!
//! Under `cargo test` (no `--bench` argument) it runs the tiny configurations once, as a smoke test.

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use criterion::Criterion;
use toto_fallback::forecast::Series;
use toto_fallback::forecast::{ForecastOptions, ForecastRequest};
use toto_fallback::toto::{Toto, TotoConfig};
use toto_fallback::toto2::{Precision, Toto2, Toto2Config};
use toto_fallback::{
    Backend, FallbackBackend, GraphicsApi, LayerOps, MixtureParams, MultiDevice, NdArray, Op, Wgpu,
};

/// (batch, variates, context, horizon, samples): as in bench/README.md.
fn workload(name: &str) -> Option<(usize, usize, usize, usize, usize)> {
    match name {
        "w-small" => Some((1, 4, 512, 128, 32)),
        "w-eval" => Some((1, 8, 2048, 336, 256)),
        "w-eval-b4" => Some((4, 8, 2048, 336, 256)),
        _ => None,
    }
}

/// Toto 2.0 workloads: (batch, variates, context, horizon).
fn workload2(name: &str) -> Option<(usize, usize, usize, usize)> {
    match name {
        "t2-small" => Some((1, 4, 512, 128)),
        "t2-boom" => Some((64, 4, 2048, 256)),
        _ => None,
    }
}

/// The size-like configurations of `bench/toto2_bench.py`.
fn toto2_config(size: &str) -> Toto2Config {
    let (d, heads, layers) = match size {
        "4m" => (192, 6, 8),
        "22m" => (384, 6, 12),
        "313m" => (1024, 16, 24),
        "tiny" => (32, 2, 4),
        other => panic!("unknown size {other} (4m, 22m, 313m)"),
    };
    let ratio = Toto2Config::residual_attn_ratio_for(2048, 32);
    let json = format!(
        r#"{{"patch_size": 32, "d_model": {d}, "num_heads": {heads}, "num_layers": {layers},
            "layer_group_size": 4, "num_variate_layers_per_group": 1,
            "variate_layer_first": false, "use_xpos": true, "qk_norm": true,
            "residual_attn_ratio": {ratio}}}"#
    );
    Toto2Config::from_json(&json).expect("a valid configuration")
}

/// The anchors' inputs: `sin(t / 10) + 0.01 t` for each of `rows` series of `c` steps.
fn inputs(rows: usize, c: usize) -> Vec<f32> {
    (0..rows * c)
        .map(|i| {
            let t = (i % c) as f32;
            (t / 10.0).sin() + 0.01 * t
        })
        .collect()
}

/// One Toto 2.0 forecast with the median read back to the host (as the anchor reads `q[4]`).
fn forecast2<B: LayerOps>(model: &Toto2<B>, (b, v, c, h): (usize, usize, usize, usize)) -> f64 {
    let series = inputs(b * v, c);
    let start = Instant::now();
    let device = model.backend().device();
    let series = Tensor::<3>::from_data(TensorData::new(series, [b, v, c]), device);
    let mut options = ForecastOptions::new(h);
    options.v2.has_missing_values = false;
    let f = model
        .forecast(series, None, None, None, &options)
        .expect("forecast");
    let knots = f.quantiles().expect("quantiles").values().clone();
    let median = knots.narrow(3, 4, 1).into_data();
    read(&median, b * v * h);
    start.elapsed().as_secs_f64()
}

/// Each of the comma-separated `workloads` with random weights of `size`, one JSON line each.
fn run_toto2<B: LayerOps>(
    backend: &B,
    size: &str,
    workloads: &str,
    runs: usize,
    precision: Option<Precision>,
    report: impl Fn() -> String,
) {
    let config = toto2_config(size);
    let params = config.parameter_count();
    // The backend's precision unless `--precision` names one (already the backend's on wgpu).
    let model = Toto2::random(backend, config).expect("model");
    let model = match precision {
        Some(p) => model
            .with_precision(p)
            .unwrap_or_else(|e| panic!("--precision {p}: {e}")),
        None => model,
    };
    let precision = model.precision();
    for name in workloads.split(',') {
        let w = workload2(name).unwrap_or_else(|| panic!("unknown workload {name}"));
        let (times, first_done, median) = timed(runs, || forecast2(&model, w));
        println!(
            "{{\"impl\": \"toto-fallback\", \"model\": \"toto2\", \"size\": \"{size}\", \
             \"params\": {params}, \"precision\": \"{precision}\", \"backend\": \"{}\", \
             \"threads\": {}, \"workload\": \"{name}\", \
             \"B\": {}, \"V\": {}, \"context\": {}, \"horizon\": {}, \
             \"first_done_s\": {first_done:.3}, \"first_s\": {:.4}, \"median_s\": {:.4}, \
             \"runs_s\": {:?}, \"forwarded\": \"{}\"}}",
            backend.name(),
            rayon::current_num_threads(),
            w.0,
            w.1,
            w.2,
            w.3,
            times[0],
            median,
            times
                .iter()
                .map(|t| (t * 1e4).round() / 1e4)
                .collect::<Vec<_>>(),
            report()
        );
    }
}

fn tiny() -> TotoConfig {
    let mut c = TotoConfig::open_base_1_0();
    (c.patch_size, c.stride, c.embed_dim, c.num_layers) = (8, 8, 32, 3);
    (c.num_heads, c.mlp_hidden_dim, c.spacewise_every_n_layers) = (2, 48, 3);
    c.output_distribution_kwargs.k_components = 4;
    c
}

/// Reads every value of a read-back: on wgpu `into_data` may return bytes that resolve only
/// when read, so a timing that stops before this would not include the forecast's GPU work.
fn read(data: &TensorData, expected: usize) {
    let values = data.as_slice::<f32>().expect("f32 read-back");
    assert_eq!(values.len(), expected);
    assert!(values.iter().all(|x| x.is_finite()), "non-finite forecast");
}

/// One forecast with the median read back to the host (as the anchor reads `out.median`).
fn forecast<B: LayerOps>(
    model: &Toto<B>,
    (b, v, c, h, n): (usize, usize, usize, usize, usize),
) -> f64 {
    let series = inputs(b * v, c);
    let start = Instant::now();
    let series =
        Tensor::<3>::from_data(TensorData::new(series, [b, v, c]), model.backend().device());
    let mut options = ForecastOptions::new(h);
    options.num_samples = Some(n);
    options.v1.samples_per_batch = n;
    let f = model
        .forecast(series, None, None, &options)
        .expect("forecast");
    let median = f.median().expect("median").into_data();
    read(&median, b * v * h);
    start.elapsed().as_secs_f64()
}

/// `runs` timings of `f` (seconds each), the time from process start to the end of the first,
/// and the median of the runs after the first (the first alone when there is one).
fn timed(runs: usize, mut f: impl FnMut() -> f64) -> (Vec<f64>, f64, f64) {
    let mut first_done = 0.0;
    let times: Vec<f64> = (0..runs)
        .map(|i| {
            // `RUST_LOG=toto=info` marks each forecast, to place CubeCL's compilation log.
            // `TOTO_BENCH_GAP_MS`: an idle pause before each forecast (the GPU's clocks drop).
            if let Some(ms) = std::env::var("TOTO_BENCH_GAP_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            log::info!("forecast {i} starts");
            let t = f();
            log::info!("forecast {i} done in {t:.3} s");
            if i == 0 {
                first_done = since_start();
                barrier();
            }
            t
        })
        .collect();
    let mut rest = times[1..].to_vec();
    rest.sort_by(f64::total_cmp);
    let median = rest.get(rest.len() / 2).copied().unwrap_or(times[0]);
    (times, first_done, median)
}

/// `TOTO_BENCH_BARRIER=DIR:N`: after its first forecast, this process waits until `N`
/// processes have reached the same point (a file each in `DIR`), so that processes started
/// together time their steady runs side by side.
fn barrier() {
    let Ok(spec) = std::env::var("TOTO_BENCH_BARRIER") else {
        return;
    };
    let (dir, n) = spec.rsplit_once(':').expect("TOTO_BENCH_BARRIER=DIR:N");
    let n: usize = n.parse().expect("a process count");
    std::fs::create_dir_all(dir).expect("the barrier's folder");
    std::fs::write(format!("{dir}/{}", std::process::id()), b"").expect("a barrier file");
    while std::fs::read_dir(dir).map_or(0, |d| d.count()) < n {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn run_workload<B: LayerOps>(backend: &B, name: &str, runs: usize, report: impl Fn() -> String) {
    let w = workload(name).unwrap_or_else(|| panic!("unknown workload {name}"));
    let model = Toto::random(backend, TotoConfig::open_base_1_0()).expect("model");
    let (times, first_done, median) = timed(runs, || forecast(&model, w));
    println!(
        "{{\"impl\": \"toto-fallback\", \"backend\": \"{}\", \"threads\": {}, \"workload\": \"{name}\", \
         \"B\": {}, \"V\": {}, \"context\": {}, \"horizon\": {}, \"samples\": {}, \
         \"first_done_s\": {first_done:.3}, \"first_s\": {:.4}, \"median_s\": {:.4}, \
         \"runs_s\": {:?}, \"forwarded\": \"{}\"}}",
        backend.name(),
        rayon::current_num_threads(),
        w.0,
        w.1,
        w.2,
        w.3,
        w.4,
        times[0],
        median,
        times
            .iter()
            .map(|t| (t * 1e4).round() / 1e4)
            .collect::<Vec<_>>(),
        report()
    );
}

/// `--devices N` (or `all`): the host's discrete GPUs, each in a fallback with its own CPU
/// backend; the first `N` of them.
fn gpus(devices: &str, precision: Option<Precision>) -> Vec<FallbackBackend<Wgpu, NdArray>> {
    let all = Wgpu::discrete_gpus(GraphicsApi::Auto).expect("a discrete GPU");
    let n = match devices {
        "all" => all.len(),
        n => n.parse().expect("--devices N|all"),
    };
    assert!(
        n <= all.len(),
        "--devices {n}: the host has {} discrete GPUs",
        all.len()
    );
    // `TOTO_BENCH_FIRST_GPU=k`: start at the k-th GPU (one process per GPU, for comparison).
    let skip = std::env::var("TOTO_BENCH_FIRST_GPU").map_or(0, |k| k.parse().expect("an index"));
    all.into_iter()
        .skip(skip)
        .take(n)
        .map(|gpu| FallbackBackend::new(with_precision(gpu, precision), NdArray::new()))
        .collect()
}

/// `gpu` set to `precision` where one is named (`--precision`), at its default otherwise.
fn with_precision(gpu: Wgpu, precision: Option<Precision>) -> Wgpu {
    match precision {
        Some(p) => gpu
            .with_precision(p)
            .unwrap_or_else(|e| panic!("--precision {p}: {e}")),
        None => gpu,
    }
}

/// The workload's inputs as host data, `[B, V, T]`.
fn series(b: usize, v: usize, c: usize) -> Series {
    let flat = inputs(b * v, c);
    let rows: Vec<Vec<&[f32]>> = flat
        .chunks(v * c)
        .map(|item| item.chunks(c).collect())
        .collect();
    Series::from_batch(&rows).expect("a series")
}

/// Throughput on 1 GPU and on `devices` GPUs of this host, in one process: the same
/// workload through [`MultiDevice::predict`] (one replica per GPU, each with weights
/// drawn on its device: timing does not depend on their values), the median read back.
/// One JSON line per device count.
fn run_multi(
    devices: &str,
    model: &str,
    name: &str,
    runs: usize,
    precision: Option<Precision>,
    batch: Option<usize>,
) {
    let backends = gpus(devices, precision);
    let precision = backends[0].precision();
    let mut counts = vec![1];
    if backends.len() > 1 {
        counts.push(backends.len());
    }
    // `--batch B` replaces the workload's batch (the 1-GPU run of a slice's size).
    let workload = |name: &str| workload(name).map(|w| (batch.unwrap_or(w.0), w.1, w.2, w.3, w.4));
    let workload2 = |name: &str| workload2(name).map(|w| (batch.unwrap_or(w.0), w.1, w.2, w.3));
    for n in counts {
        let used: Vec<_> = backends[..n].to_vec();
        let (times, first_done, median, (b, v)) = if model == "toto1" {
            let (b, v, c, h, samples) = workload(name).expect("a Toto 1.0 workload");
            let many = MultiDevice::load(used, |d| Toto::random(d, TotoConfig::open_base_1_0()))
                .expect("models");
            let data = series(b, v, c);
            let mut request = ForecastRequest::new(data, h);
            request.options.num_samples = Some(samples);
            request.options.v1.samples_per_batch = samples;
            let (t, f, m) = timed(runs, || {
                let start = Instant::now();
                let out = many.predict(&request).expect("forecast");
                let returned = start.elapsed().as_secs_f64();
                read(&out.median().expect("median").into_data(), b * v * h);
                let total = start.elapsed().as_secs_f64();
                log::info!("forecast returned after {returned:.4} s, median read at {total:.4} s");
                total
            });
            (t, f, m, (b, v))
        } else {
            let (b, v, c, h) = workload2(name).expect("a Toto 2.0 workload");
            let many =
                MultiDevice::load(used, |d| Toto2::random(d, toto2_config(model))).expect("models");
            let data = series(b, v, c);
            let mut request = ForecastRequest::new(data, h);
            request.options.v2.has_missing_values = false;
            let (t, f, m) = timed(runs, || {
                let start = Instant::now();
                let out = many.predict(&request).expect("forecast");
                let returned = start.elapsed().as_secs_f64();
                let knots = out.quantiles().expect("quantiles").values().clone();
                read(&knots.narrow(3, 4, 1).into_data(), b * v * h);
                let total = start.elapsed().as_secs_f64();
                log::info!("forecast returned after {returned:.4} s, median read at {total:.4} s");
                total
            });
            (t, f, m, (b, v))
        };
        println!(
            "{{\"impl\": \"toto-fallback\", \"multi\": true, \"model\": \"{model}\", \
             \"precision\": \"{precision}\", \"devices\": {n}, \"gpus\": {:?}, \
             \"workload\": \"{name}\", \"B\": {b}, \"first_done_s\": {first_done:.3}, \
             \"median_s\": {median:.4}, \"series_per_s\": {:.1}, \"runs_s\": {:?}}}",
            backends[..n]
                .iter()
                .map(|g| g.gpu().name().to_owned())
                .collect::<Vec<_>>(),
            (b * v) as f64 / median,
            times
                .iter()
                .map(|t| (t * 1e4).round() / 1e4)
                .collect::<Vec<_>>(),
        );
    }
}

/// The forwarded ops of a fallback run, e.g. `standard_gamma x 12, patch_scaler x 6`.
fn forwarded(b: &FallbackBackend<Wgpu, NdArray>) -> String {
    let report = b.report();
    Op::ALL
        .into_iter()
        .filter_map(|op| {
            let calls = report.op(op).forwarded.calls;
            (calls > 0).then(|| format!("{} x {calls}", op.name()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median of 11 timed calls after one warm-up, each with its output kept alive until the device
/// has synchronised (fusion would otherwise be free to drop work whose result is unused).
fn time_it<const D: usize>(b: &impl Backend, mut f: impl FnMut() -> Tensor<D>) -> f64 {
    let warm = f();
    b.device().sync().expect("sync");
    drop(warm);
    let mut t: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            let out = f();
            b.device().sync().expect("sync");
            let secs = start.elapsed().as_secs_f64();
            drop(out);
            secs
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[5]
}

/// Prints one JSON line per sampling case: the shapes of bench/torch_sampling_bench.py (1e7
/// Student-T(5) and Gamma(2.5) draws, a K = 24 Student-T mixture over 1.25e6 positions with one
/// draw each), plus 1e8 draws to show the throughput once launch costs are amortised.
fn sampling<B: LayerOps>(b: &B, label: &str) {
    use burn::tensor::Distribution as Init;
    use toto_fallback::distr::{Categorical, Distribution, MixtureSameFamily, StudentT};
    let line = |case: &str, n: usize, s: f64| {
        println!(
            "{{\"case\": \"{case}\", \"backend\": \"{label}\", \"n\": {n}, \"median_s\": {s:.6}, \"samples_per_s\": {:.0}}}",
            n as f64 / s
        );
    };
    for n in [10_000_000, 100_000_000] {
        let df = Tensor::<1>::full([n], 5.0, b.device());
        let s = time_it(b, || b.standard_t(df.clone()).expect("standard_t"));
        line("student_t(df=5)", n, s);
        let alpha = Tensor::<1>::full([n], 2.5, b.device());
        let s = time_it(b, || {
            b.standard_gamma(alpha.clone()).expect("standard_gamma")
        });
        line("gamma(alpha=2.5)", n, s);
        let s = time_it(b, || b.uniform([n]).expect("uniform"));
        line("uniform", n, s);
    }
    for p in [1_250_000, 12_500_000] {
        let k = 24;
        let u = |lo, hi| Tensor::<2>::random([p, k], Init::Uniform(lo, hi), b.device());
        let comp = StudentT::new(b, u(2.0, 12.0), u(-1.0, 1.0), u(0.1, 1.1)).expect("components");
        let mix: MixtureSameFamily<B, StudentT<B, 2>, 1, 2> = MixtureSameFamily::new(
            Categorical::from_logits(b, u(-2.0, 2.0)).expect("logits"),
            comp,
        )
        .expect("mixture");
        let s = time_it(b, || -> Tensor<1> { mix.sample(&[]).expect("sample") });
        line("mixture24_student_t", p, s);
        // The backend op alone, without the distribution layer.
        let params = MixtureParams::new(u(-2.0, 2.0), u(2.0, 12.0), u(-1.0, 1.0), u(0.1, 1.1));
        let s = time_it(b, || {
            b.student_t_mixture(params.clone(), 1)
                .expect("student_t_mixture")
        });
        line("student_t_mixture op (K=24)", p, s);
    }
}

/// The sampling ops of the native wgpu kernels, for the forced-fallback runs.
const SAMPLERS: [Op; 5] = [
    Op::Uniform,
    Op::StandardNormal,
    Op::StandardGamma,
    Op::StandardT,
    Op::StudentTMixture,
];

/// `TOTO_WGPU_MEMORY=exclusive|adaptive` initialises burn's wgpu runtime with that memory
/// policy before the backend opens it (for measuring the policies; cubecl's default is
/// `adaptive` where buffers can be sub-sliced).
fn memory_policy() {
    use burn::tensor::wgpu::MemoryConfiguration;
    let config = match std::env::var("TOTO_WGPU_MEMORY").as_deref() {
        Ok("exclusive") => MemoryConfiguration::ExclusivePages,
        Ok("adaptive") => MemoryConfiguration::Adaptive,
        _ => return,
    };
    burn::tensor::Device::wgpu_options()
        .memory_config(config)
        .init()
        .expect("a wgpu adapter");
}

/// `--precision f32|f16|bf16`; `None` when absent (the backend's, `Backend::precision`).
fn precision(arg: Option<String>) -> Option<Precision> {
    arg.map(|arg| match arg.as_str() {
        "f32" => Precision::F32,
        "f16" => Precision::F16,
        "bf16" => Precision::Bf16,
        other => panic!("unknown precision {other} (f32, f16, bf16)"),
    })
}

/// `M,K,N` of a `flag` as three sizes.
fn matmul_shape(shape: &str, flag: &str) -> [usize; 3] {
    let dims: Vec<usize> = shape
        .split(',')
        .map(|d| d.parse().unwrap_or_else(|_| panic!("{flag} M,K,N")))
        .collect();
    dims.try_into().unwrap_or_else(|_| panic!("{flag} M,K,N"))
}

/// `--cpu-matmul M,K,N` (with the `internals` feature): the CPU's f32 matmul throughput at
/// `[M, K] × [K, N]`, through burn's `NdArray` (`matrixmultiply`, repacking the weight every
/// call) and through each of the crate's kernels this CPU runs on a weight packed once (what
/// the models' linear layers use on the CPU: the x86 kernel where there is one, the portable
/// `gemm` one), the weight kept in f32, f16 and bf16, on rayon's threads (`RAYON_NUM_THREADS`). Twenty products timed after three
/// untimed, each read back; the packed kernels also cold (`cold`: a different copy of the weight
/// each time, as a forecast meets each layer's weight).
#[cfg(feature = "internals")]
fn cpu_matmul_throughput(shape: &str) {
    use burn::tensor::Distribution as Init;
    use toto_fallback::backend::cpu::dispatch::Isa;
    use toto_fallback::backend::cpu::gemm::{GemmKernel, PackedMatrix, WeightFormat};
    let [m, k, n] = matmul_shape(shape, "--cpu-matmul");
    let cpu = NdArray::seeded(1);
    let device = cpu.device();
    let a = Tensor::<2>::random([m, k], Init::Normal(0.0, 1.0), device);
    let b = Tensor::<2>::random([k, n], Init::Normal(0.0, 1.0), device);
    let gflops = |secs: f64| 2.0 * (m * k * n) as f64 / secs / 1e9;
    let time = |f: &mut dyn FnMut() -> f32| {
        for _ in 0..3 {
            std::hint::black_box(f());
        }
        let runs = 20;
        let start = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(f());
        }
        start.elapsed().as_secs_f64() / runs as f64
    };
    let burn_secs = time(&mut || {
        let y = a.clone().matmul(b.clone()).into_data();
        y.as_slice::<f32>().expect("f32")[0]
    });
    let x = a.into_data().try_to_vec::<f32>().expect("f32");
    let w = b.into_data().try_to_vec::<f32>().expect("f32");
    let kernels = Isa::detect()
        .map(GemmKernel::X86)
        .into_iter()
        .chain([GemmKernel::Portable]);
    let mut fields = Vec::new();
    let formats = [WeightFormat::F32, WeightFormat::F16, WeightFormat::Bf16];
    for (kernel, format) in kernels.flat_map(|kernel| formats.map(|f| (kernel, f))) {
        let pack = || {
            PackedMatrix::new(kernel, format, &w, [k, n], None, 1.0)
                .expect("a kernel this CPU runs")
        };
        let packed = pack();
        let warm = gflops(time(&mut || packed.apply(&x, m)[0]));
        // Cold: a forecast reads each layer's weight once, from memory (a model is larger than
        // the caches), so the same product also runs over copies of the weight filling 256 MB,
        // in turn.
        let bytes = if format == WeightFormat::F32 { 4 } else { 2 };
        let copies = (256 << 20) / (bytes * k * n).max(1) + 2;
        let cold: Vec<PackedMatrix> = (0..copies).map(|_| pack()).collect();
        let mut next = 0;
        let cold = gflops(time(&mut || {
            next = (next + 1) % cold.len();
            cold[next].apply(&x, m)[0]
        }));
        fields.push(format!(
            "\"{kernel:?} {format:?}\": {{\"gflops\": {warm:.1}, \"cold_gflops\": {cold:.1}}}"
        ));
    }
    println!(
        "{{\"cpu_matmul\": \"{m}x{k}x{n}\", \"threads\": {}, \"ndarray_gflops\": {:.1}, {}}}",
        rayon::current_num_threads(),
        gflops(burn_secs),
        fields.join(", ")
    );
}

/// `--cpu-matmul` without the `internals` feature: says how to get it.
#[cfg(not(feature = "internals"))]
fn cpu_matmul_throughput(_: &str) {
    eprintln!("--cpu-matmul times the crate's CPU kernels: run with `--features internals`");
    std::process::exit(2);
}

/// `--matmul M,K,N`: the wgpu device's matmul throughput for each float type burn has (f32,
/// flex32, f16, bf16), `[M, K] × [K, N]`, twenty products timed after five untimed, with a device
/// sync before each clock reading. Explains the model numbers: the big Toto 2.0 workloads are
/// matmul-bound.
fn matmul_throughput(shape: &str) {
    use burn::tensor::{Distribution as Init, FloatDType};
    let [m, k, n] = matmul_shape(shape, "--matmul");
    let gpu = Wgpu::new().expect("a wgpu adapter");
    let device = gpu.device().clone();
    for (name, dtype) in [
        ("f32", FloatDType::F32),
        ("flex32", FloatDType::Flex32),
        ("f16", FloatDType::F16),
        ("bf16", FloatDType::BF16),
    ] {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let a = Tensor::<2>::random([m, k], Init::Normal(0.0, 1.0), &device).cast(dtype);
            let b = Tensor::<2>::random([k, n], Init::Normal(0.0, 1.0), &device).cast(dtype);
            for _ in 0..5 {
                let _ = a.clone().matmul(b.clone());
            }
            device.sync().expect("sync");
            let runs = 20;
            let start = Instant::now();
            for _ in 0..runs {
                let _ = a.clone().matmul(b.clone());
            }
            device.sync().expect("sync");
            let secs = start.elapsed().as_secs_f64() / runs as f64;
            (secs, 2.0 * (m * k * n) as f64 / secs / 1e12)
        }));
        match run {
            Ok((secs, tflops)) => println!(
                "{{\"matmul\": \"{m}x{k}x{n}\", \"dtype\": \"{name}\", \"ms\": {:.3}, \"tflops\": {tflops:.1}, \"backend\": \"{}\"}}",
                secs * 1e3,
                gpu.name()
            ),
            Err(_) => println!(
                "{{\"matmul\": \"{m}x{k}x{n}\", \"dtype\": \"{name}\", \"error\": \"panicked\"}}"
            ),
        }
    }
}

/// When the process started (main's first line): `first_done_s` counts from it.
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn since_start() -> f64 {
    START.get().map_or(0.0, |s| s.elapsed().as_secs_f64())
}

/// `--cold-start N ARGS…`: runs this binary with `ARGS` in `N` fresh processes, one after the
/// other, and prints each one's wall time and its own JSON line (`first_done_s`: from process
/// start to the first forecast's values read, device opening and model building included;
/// `runs_s`: each forecast). With the `cache` feature the later processes find the first one's
/// autotune results (and SPIR-V, with `vulkan`) on disk.
fn cold_start(processes: usize, args: &[String]) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    for process in 0..processes {
        let start = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(args)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("spawn the bench binary");
        let wall = start.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines().filter(|l| l.starts_with('{')) {
            println!(
                "{{\"cold_start_process\": {process}, \"wall_s\": {wall:.3}, \"run\": {line}}}"
            );
        }
        assert!(
            out.status.success(),
            "process {process} failed: {}",
            out.status
        );
    }
}

fn main() {
    START.get_or_init(Instant::now);
    memory_policy();
    // `RUST_LOG=toto_fallback=trace` prints the forecaster's per-phase times.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off"),
    )
    .init();
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    // `--import-cache FILE` fills this machine's kernel cache from a bundle before anything runs;
    // `--export-cache FILE` (alone) writes the cache to a bundle and exits.
    #[cfg(feature = "cache")]
    {
        if let Some(file) = value("--import-cache") {
            let t = Instant::now();
            let report = toto_fallback::kernel_cache::import(&file).expect("import the bundle");
            println!(
                "{{\"import_cache\": \"{file}\", \"imported\": {}, \"skipped\": {}, \"failed\": {}, \"import_s\": {:.3}}}",
                report.imported,
                report.skipped,
                report.failed,
                t.elapsed().as_secs_f64()
            );
        }
        // `--prewarm`: the driver compiles the stored kernels on all cores before the forecast.
        if args.iter().any(|a| a == "--prewarm") {
            let warmed = toto_fallback::kernel_cache::prewarm().expect("prewarm");
            println!(
                "{{\"prewarm_s\": {:.3}, \"pipelines\": {}, \"failed\": {}, \"threads\": {}, \"adapters\": {:?}}}",
                warmed.seconds, warmed.pipelines, warmed.failed, warmed.threads, warmed.adapters
            );
        }
        if let Some(file) = value("--export-cache") {
            let saved = toto_fallback::kernel_cache::export(&file).expect("export the cache");
            println!(
                "{{\"export_cache\": \"{file}\", \"entries\": {}, \"namespaces\": {:?}}}",
                saved.entries, saved.namespaces
            );
            return;
        }
    }
    if let Some(n) = value("--cold-start") {
        let processes = n.parse().expect("--cold-start N");
        let mut rest = args[1..].to_vec();
        if let Some(i) = rest.iter().position(|a| a == "--cold-start") {
            rest.drain(i..(i + 2).min(rest.len()));
        }
        cold_start(processes, &rest);
        return;
    }
    // `--devices N|all --model toto1|22m|313m --workload NAME`: 1 GPU and N GPUs, same process.
    if let (Some(devices), Some(name)) = (value("--devices"), value("--workload")) {
        let runs = value("--runs").map_or(5, |r| r.parse().expect("--runs N"));
        let precision = precision(value("--precision"));
        let model = value("--model").unwrap_or_else(|| "toto1".to_owned());
        let batch = value("--batch").map(|b| b.parse().expect("--batch B"));
        run_multi(&devices, &model, &name, runs, precision, batch);
        return;
    }
    if let (Some(sizes), Some(names)) = (value("--toto2"), value("--workload")) {
        let runs = value("--runs").map_or(5, |r| r.parse().expect("--runs N"));
        let precision = precision(value("--precision"));
        for size in sizes.split(',') {
            match value("--backend").as_deref().unwrap_or("fallback") {
                cpu @ ("ndarray" | "flex") => run_toto2(
                    &cpu_backend(cpu),
                    size,
                    &names,
                    runs,
                    precision,
                    String::new,
                ),
                "fallback" => {
                    let gpu = with_precision(Wgpu::new().expect("a wgpu adapter"), precision);
                    let b = FallbackBackend::new(gpu, NdArray::new());
                    run_toto2(&b, size, &names, runs, precision, || forwarded(&b));
                    eprintln!("{}", b.report());
                }
                other => panic!("unknown backend {other} (ndarray, flex, fallback)"),
            }
        }
        return;
    }
    if let Some(name) = value("--workload") {
        let runs = value("--runs").map_or(4, |r| r.parse().expect("--runs N"));
        match value("--backend").as_deref().unwrap_or("fallback") {
            cpu @ ("ndarray" | "flex") => run_workload(&cpu_backend(cpu), &name, runs, String::new),
            "fallback" => {
                let b = FallbackBackend::new(Wgpu::new().expect("a wgpu adapter"), NdArray::new());
                run_workload(&b, &name, runs, || forwarded(&b));
                eprintln!("{}", b.report());
            }
            "fallback-forced" => {
                // Every native sampler forced onto the CPU: the forwarded path, measured side
                // by side with the native one.
                let gpu = Wgpu::new()
                    .expect("a wgpu adapter")
                    .with_unsupported(SAMPLERS);
                let b = FallbackBackend::new(gpu, NdArray::new());
                run_workload(&b, &name, runs, || forwarded(&b));
                eprintln!("{}", b.report());
            }
            other => panic!("unknown backend {other} (ndarray, flex, fallback, fallback-forced)"),
        }
        return;
    }
    if let Some(names) = value("--stream") {
        let runs = value("--runs").map_or(5, |r| r.parse().expect("--runs N"));
        match value("--backend").as_deref().unwrap_or("ndarray") {
            cpu @ ("ndarray" | "flex") => stream(&cpu_backend(cpu), &names, runs),
            "fallback" => {
                let gpu = Wgpu::new().expect("a wgpu adapter");
                let gpu = with_precision(gpu, precision(value("--precision")));
                let b = FallbackBackend::new(gpu, NdArray::new());
                stream(&b, &names, runs);
                eprintln!("{}", b.report());
            }
            other => panic!("unknown backend {other} (ndarray, flex, fallback)"),
        }
        return;
    }
    if let Some(shape) = value("--cpu-matmul") {
        for shape in shape.split(';') {
            cpu_matmul_throughput(shape);
        }
        return;
    }
    if let Some(shape) = value("--matmul") {
        matmul_throughput(&shape);
        return;
    }
    if let Some(rows) = value("--graph-probe") {
        for rows in rows.split(',') {
            graph_probe(rows.parse().expect("--graph-probe ROWS[,ROWS…]"));
        }
        return;
    }
    if args.iter().any(|a| a == "--sampling") {
        let gpu = Wgpu::new().expect("a wgpu adapter");
        let b = FallbackBackend::new(gpu.clone(), NdArray::new());
        sampling(&b, "native");
        eprintln!("{}", b.report());
        if args.iter().any(|a| a == "--forced") {
            let b = FallbackBackend::new(gpu.with_unsupported(SAMPLERS), NdArray::new());
            sampling(&b, "forced");
            eprintln!("{}", b.report());
        }
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test`: one small forecast so the benchmark code stays exercised.
        let cpu = NdArray::seeded(0);
        let model = Toto::random(&cpu, tiny()).expect("model");
        let secs = forecast(&model, (1, 2, 64, 16, 4));
        println!("toto bench smoke test: tiny forecast in {secs:.3} s");
        let model = Toto2::random(&cpu, toto2_config("tiny")).expect("model");
        let secs = forecast2(&model, (1, 2, 64, 40));
        println!("toto bench smoke test: tiny Toto 2.0 forecast in {secs:.3} s");
        let request = ForecastRequest::new(series(1, 2, 64), 40);
        let (full, pushed) = stream_times(&model, &request, 1);
        println!("toto bench smoke test: tiny Toto 2.0 session {pushed:.3} s, full {full:.3} s");
        return;
    }
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let cpu = NdArray::new();
    let model = Toto::random(&cpu, TotoConfig::open_base_1_0()).expect("model");
    let w = workload("w-small").expect("known");
    c.bench_function("toto forecast W-small/ndarray", |bench| {
        bench.iter(|| forecast(&model, w))
    });
    c.final_summary();
}

/// The streaming workloads: (model, batch, variates, context, horizon, samples).
fn stream_workload(name: &str) -> (&'static str, usize, usize, usize, usize, Option<usize>) {
    match name {
        "w-eval" => ("toto1", 1, 8, 2048, 336, Some(256)),
        "w-eval-mean" => ("toto1", 1, 8, 2048, 336, None),
        "w-eval-next" => ("toto1", 1, 8, 2048, 64, Some(256)),
        "t2-2048" => ("22m", 1, 4, 2048, 128, None),
        "t2-2048-b16" => ("22m", 16, 4, 2048, 128, None),
        "t2-2048-b256" => ("22m", 256, 4, 2048, 128, None),
        "t2-2048-b16-cov" => ("22m", 16, 4, 2048, 128, None),
        "w-eval-next-b16" => ("toto1", 16, 8, 2048, 64, Some(256)),
        other => panic!(
            "unknown streaming workload {other} (w-eval, w-eval-mean, w-eval-next, \
             w-eval-next-b16, t2-2048, t2-2048-b16, t2-2048-b256, t2-2048-b16-cov)"
        ),
    }
}

/// The point forecast of `f`, read back: the mean path (mean mode) or the median.
fn read_point<B: Backend>(f: &toto_fallback::Forecast<B>, expected: usize) {
    let point = f.median().unwrap_or_else(|_| f.mean().clone());
    read(&point.into_data(), expected);
}

/// `--stream`: per workload, the median of `runs` full forecasts and of `runs` pushes of one
/// patch each followed by the forecast, both read back, alternating, after one untimed run of
/// each.
fn stream<B: LayerOps>(backend: &B, names: &str, runs: usize) {
    for name in names.split(',') {
        let (model, b, v, c, h, n) = stream_workload(name);
        let mut request = ForecastRequest::new(series(b, v, c), h).with_samples(n);
        if name.ends_with("-cov") {
            // Two covariates known over the context and the horizon.
            request = request.with_covariates(series(b, 2, c + h));
        }
        let run = |m: &dyn Fn(&ForecastRequest) -> (f64, f64)| m(&request);
        let (full, pushed) = match model {
            "toto1" => {
                let m = Toto::random(backend, TotoConfig::open_base_1_0()).expect("model");
                run(&|r| stream_times(&m, r, runs))
            }
            size => {
                let m = Toto2::random(backend, toto2_config(size)).expect("model");
                run(&|r| stream_times(&m, r, runs))
            }
        };
        println!(
            "{{\"impl\": \"toto-fallback\", \"bench\": \"stream\", \"workload\": \"{name}\", \
             \"backend\": \"{}\", \"threads\": {}, \"B\": {b}, \"V\": {v}, \"context\": {c}, \
             \"horizon\": {h}, \"samples\": {n:?}, \"full_s\": {full:.4}, \
             \"push_and_forecast_s\": {pushed:.4}, \"ratio\": {:.3}}}",
            backend.name(),
            rayon::current_num_threads(),
            pushed / full
        );
    }
}

/// The medians of full forecasts of `request` and of a session's push of one patch and next
/// forecast (the pushes continue `inputs`' curve), the two alternating, the first of each
/// untimed. `TOTO_BENCH_PUSHES_ONLY` skips the full forecasts after the first (a profile of
/// the updates alone); `TOTO_BENCH_SPLIT` prints each time.
fn stream_times<M: toto_fallback::forecast::Forecaster>(
    model: &M,
    request: &ForecastRequest,
    runs: usize,
) -> (f64, f64) {
    let [b, v, c] = request.series.shape();
    let h = request.options.prediction_length;
    let p = model.patch_size();
    let k = request.covariates.as_ref().map_or(0, |c| c.shape()[1]);
    let median = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    // Full forecasts and pushes alternate, so that a machine whose speed drifts during the run
    // (a shared host) slows both alike.
    let mut session = model.stream(request).expect("session");
    let split = std::env::var("TOTO_BENCH_SPLIT").is_ok();
    let pushes_only = std::env::var("TOTO_BENCH_PUSHES_ONLY").is_ok();
    let mut t = c;
    let (mut full, mut pushed) = (Vec::new(), Vec::new());
    for _ in 0..=runs {
        let start = Instant::now();
        if full.is_empty() || !pushes_only {
            read_point(&model.predict(request).expect("forecast"), b * v * h);
        }
        full.push(start.elapsed().as_secs_f64());
        if split {
            eprintln!("full {:.4} s", full[full.len() - 1]);
        }
        let next: Vec<f32> = (0..b * v)
            .flat_map(|_| (t..t + p).map(|t| (t as f32 / 10.0).sin() + 0.01 * t as f32))
            .collect();
        t += p;
        let start = Instant::now();
        if k > 0 {
            // The covariates' next patch, keeping them a horizon ahead of the series.
            let ahead: Vec<f32> = (0..b * k)
                .flat_map(|_| (t + h - p..t + h).map(|t| (t as f32 / 7.0).cos()))
                .collect();
            session.push_covariates(&ahead, p).expect("covariates");
        }
        session.push(&next, p).expect("push");
        let mid = start.elapsed().as_secs_f64();
        read_point(&session.forecast().expect("forecast"), b * v * h);
        if split {
            eprintln!(
                "push {mid:.4} s, forecast {:.4} s",
                start.elapsed().as_secs_f64() - mid
            );
        }
        pushed.push(start.elapsed().as_secs_f64());
    }
    (median(full[1..].to_vec()), median(pushed[1..].to_vec()))
}

/// `--backend ndarray` or `--backend flex` (the CPU backend on burn-flex; needs `--features flex`),
/// its weights in the format `TOTO_BENCH_CPU_WEIGHTS` names (`f32`, the default; `f16`; `bf16`:
/// `NdArray::with_weights`).
fn cpu_backend(name: &str) -> NdArray {
    let cpu = match name {
        #[cfg(feature = "flex")]
        "flex" => NdArray::new().on_flex(),
        #[cfg(not(feature = "flex"))]
        "flex" => panic!("--backend flex needs the bench built with `--features flex`"),
        _ => NdArray::new(),
    };
    let weights = match std::env::var("TOTO_BENCH_CPU_WEIGHTS").as_deref() {
        Err(_) | Ok("" | "f32") => Precision::F32,
        Ok("f16") => Precision::F16,
        Ok("bf16") => Precision::Bf16,
        Ok(other) => panic!("TOTO_BENCH_CPU_WEIGHTS={other}: f32, f16 or bf16"),
    };
    eprintln!("CPU weights: {weights}");
    cpu.with_weights(weights)
}

/// `--graph-probe`: 12 layers like Toto 2.0 22m-like's over `rows` rows, timed eagerly and
/// replayed from a captured graph (one JSON line).
fn graph_probe(rows: usize) {
    use burn::tensor::{DType, Distribution, FloatDType, activation, capture};
    let gpu = Wgpu::new().expect("a wgpu adapter");
    let device = gpu.device().clone();
    let half = gpu.precision() == toto_fallback::backend::Precision::F16;
    let (d, f, layers, s) = (384, 1536, 12, 5);
    assert!(
        rows.is_multiple_of(s),
        "--graph-probe: ROWS must be a multiple of {s}"
    );
    let weight = |shape: [usize; 2]| {
        let w = Tensor::<2>::random(shape, Distribution::Normal(0.0, 0.02), &device);
        if half { w.cast(DType::F16) } else { w }
    };
    let ws: Vec<_> = (0..layers)
        .map(|_| {
            (
                weight([d, 3 * d]),
                weight([d, d]),
                weight([d, 2 * f]),
                weight([f, d]),
            )
        })
        .collect();
    let x = Tensor::<2>::random([rows, d], Distribution::Normal(0.0, 1.0), &device);
    let linear = |x: Tensor<2>, w: &Tensor<2>| match half {
        true => x.cast(DType::F16).matmul(w.clone()).cast(FloatDType::F32),
        false => x.matmul(w.clone()),
    };
    let norm = |x: Tensor<2>| {
        let rms = x.clone().square().mean_dim(1).add_scalar(1e-6).sqrt();
        x.div(rms)
    };
    let pass = || {
        let mut h = x.clone();
        for (wqkv, wo, w1, w2) in &ws {
            let qkv = linear(norm(h.clone()), wqkv);
            let part = |i: usize| qkv.clone().narrow(1, i * d, d).reshape([rows / s, s, d]);
            let scores = part(0).matmul(part(1).swap_dims(1, 2)).div_scalar(8.0);
            let a = activation::softmax(scores, 2)
                .matmul(part(2))
                .reshape([rows, d]);
            h = h + linear(a, wo);
            let u = linear(norm(h.clone()), w1);
            let gated = activation::silu(u.clone().narrow(1, 0, f)) * u.narrow(1, f, f);
            h = h + linear(gated, w2);
        }
        h
    };
    let time = |run: &mut dyn FnMut()| {
        for _ in 0..3 {
            run();
        }
        let mut times: Vec<f64> = (0..30)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let eager = time(&mut || {
        let _y = pass();
        device.sync().expect("sync");
    });
    let mut graph = capture(&device, pass);
    let want = values_of(pass());
    // SAFETY: every tensor the captured closure reads (`x`, the weights) lives until after
    // the last replay, and the replays and reads run on this thread, the capture's stream.
    let got = values_of(unsafe { graph.replay() }.clone());
    let replay = time(&mut || {
        // SAFETY: as above.
        unsafe { graph.replay() };
        device.sync().expect("sync");
    });
    let diff = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "{{\"bench\": \"graph-probe\", \"device\": \"{}\", \"rows\": {rows}, \"layers\": {layers}, \"f16\": {half}, \"captured\": {}, \"eager_s\": {eager:.5}, \"replay_s\": {replay:.5}, \"max_abs_diff\": {diff:e}}}",
        gpu.name(),
        graph.is_hardware()
    );
}

/// A tensor's values.
fn values_of(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}
