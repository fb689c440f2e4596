//! Shared helpers for the integration tests: backends to run on, and statistical checks.
#![allow(dead_code)] // each test file uses a subset

pub mod fuzz_input;
pub mod watchdog;

use std::sync::{Mutex, MutexGuard, OnceLock};

use burn::tensor::Tensor;
use toto_fallback::{
    AdapterKind, Backend, CpuKernels, FallbackBackend, FallbackPolicy, GraphicsApi, NdArray, Wgpu,
};

/// burn seeds its GPU generator process-wide, so tests that draw on wgpu take turns: otherwise a
/// concurrent draw in another test would shift this test's stream.
static WGPU_TURN: Mutex<()> = Mutex::new(());

/// The wgpu turn of one test: the suite's lock, watched so that a stuck device operation fails
/// the run within [`watchdog::bound`] instead of hanging it.
pub struct Turn {
    _watched: watchdog::Watched,
    _lock: MutexGuard<'static, ()>,
}

/// Takes the wgpu turn (waiting for the test that holds it).
pub fn wgpu_turn() -> Turn {
    let lock = WGPU_TURN.lock().unwrap_or_else(|e| e.into_inner());
    Turn {
        _watched: watchdog::Watched::start(),
        _lock: lock,
    }
}

/// A backend for one test, holding the wgpu turn when it touches wgpu.
pub struct On<B> {
    pub backend: B,
    _turn: Option<Turn>,
}

impl<B> std::ops::Deref for On<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.backend
    }
}

pub fn ndarray(seed: u64) -> Option<On<NdArray>> {
    Some(On {
        backend: NdArray::seeded(seed),
        _turn: None,
    })
}

/// [`ndarray`] with its layer ops on the portable CPU kernels (the `gemm` crate, baseline
/// vector math): what aarch64 runs, forced on x86.
pub fn ndarray_portable(seed: u64) -> Option<On<NdArray>> {
    Some(On {
        backend: NdArray::seeded(seed).with_kernels(CpuKernels::Portable),
        _turn: None,
    })
}

/// [`ndarray`] with its linear layers' weights kept in f16 (`NdArray::with_weights`): the same
/// arithmetic on rounded weights, so a session must still forecast as a fresh forecast does.
pub fn ndarray_f16(seed: u64) -> Option<On<NdArray>> {
    Some(On {
        backend: NdArray::seeded(seed).with_weights(toto_fallback::Precision::F16),
        _turn: None,
    })
}

/// [`ndarray`] with its layer ops as compositions of burn ops (no kernels of the crate's own):
/// what a backend without native layer ops runs.
pub fn ndarray_burn(seed: u64) -> Option<On<NdArray>> {
    Some(On {
        backend: NdArray::seeded(seed).with_kernels(CpuKernels::Burn),
        _turn: None,
    })
}

/// The CPU backend's code on burn-flex's device (`NdArray::on_flex`). Built without the `flex`
/// feature, the test is skipped with a printed reason (CI builds the feature and counts the flex
/// tests that ran).
pub fn flex(seed: u64) -> Option<On<NdArray>> {
    #[cfg(feature = "flex")]
    return Some(On {
        backend: NdArray::seeded(seed).on_flex(),
        _turn: None,
    });
    #[cfg(not(feature = "flex"))]
    {
        let _ = seed;
        eprintln!("SKIPPED (built without the `flex` feature)");
        None
    }
}

/// The layer ops, for [`layers_forced`].
pub const LAYER_OPS: [toto_fallback::Op; 8] = [
    toto_fallback::Op::Linear,
    toto_fallback::Op::RmsNorm,
    toto_fallback::Op::Silu,
    toto_fallback::Op::SiluGate,
    toto_fallback::Op::ResidualAdd,
    toto_fallback::Op::Attention,
    toto_fallback::Op::AttentionCore,
    toto_fallback::Op::SortFirst,
];

/// `FallbackBackend<Wgpu, NdArray>` with every layer op forced onto the CPU.
pub fn layers_forced(seed: u64) -> Option<On<FallbackBackend<Wgpu, NdArray>>> {
    forced_only(seed, LAYER_OPS)
}

/// Whether this run is CI's OpenGL pass (`TOTO_TEST_EXPECT_GL_ONLY=1`): the machine's only
/// wgpu adapter is OpenGL (Mesa's llvmpipe, the Vulkan drivers hidden), which `Wgpu` refuses.
/// The wgpu tests then check that refusal and skip, and a GPU that opens is a failure.
pub fn expect_gl_only() -> bool {
    std::env::var("TOTO_TEST_EXPECT_GL_ONLY").is_ok_and(|v| v == "1")
}

/// The wgpu device for this run: the default adapter, else a software one (lavapipe), at f32.
/// With `CI=true` a missing adapter fails the test; elsewhere the test is skipped with a
/// printed reason. A machine whose only adapter is OpenGL skips with the refusal's reason.
fn open_wgpu() -> Option<Wgpu> {
    static OPENED: OnceLock<Result<Wgpu, toto_fallback::Error>> = OnceLock::new();
    let opened = OPENED.get_or_init(|| {
        Wgpu::new()
            .or_else(|_| Wgpu::with_adapter(GraphicsApi::Auto, AdapterKind::Cpu))
            .inspect(|gpu| {
                eprintln!(
                    "wgpu tests run on: {} (its default precision: {}; the tests' f32)",
                    gpu.name(),
                    gpu.precision()
                )
            })
            // The conformance tests compare with toto-2's f32 numbers: f32 on every adapter,
            // whatever its default (f16 where it has tensor cores); the precision tests set it.
            .and_then(|gpu| gpu.with_precision(toto_fallback::Precision::F32))
    });
    match opened {
        Ok(gpu) if expect_gl_only() => panic!(
            "TOTO_TEST_EXPECT_GL_ONLY=1, yet wgpu opened {}: the only adapter should be OpenGL",
            gpu.name()
        ),
        Ok(gpu) => Some(gpu.clone()),
        Err(e @ toto_fallback::Error::OpenGlOnly { .. }) if expect_gl_only() => {
            eprintln!("SKIPPED (the only wgpu adapter is OpenGL, which Wgpu refuses): {e}");
            None
        }
        Err(e) if expect_gl_only() => {
            panic!("TOTO_TEST_EXPECT_GL_ONLY=1, yet opening wgpu failed otherwise: {e}")
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but no wgpu adapter is available, so the wgpu tests cannot run: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (no usable wgpu adapter): {e}");
            None
        }
    }
}

pub fn wgpu(seed: u64) -> Option<On<Wgpu>> {
    let turn = wgpu_turn();
    let gpu = open_wgpu()?;
    gpu.seed(seed);
    Some(On {
        backend: gpu,
        _turn: Some(turn),
    })
}

pub fn fallback(seed: u64) -> Option<On<FallbackBackend<Wgpu, NdArray>>> {
    let On {
        backend: gpu,
        _turn,
    } = wgpu(seed)?;
    let backend =
        FallbackBackend::new(gpu, NdArray::seeded(seed)).with_policy(FallbackPolicy::Silent);
    Some(On { backend, _turn })
}

/// The sampling ops the native wgpu kernels run, for [`forced`].
pub const SAMPLERS: [toto_fallback::Op; 5] = [
    toto_fallback::Op::Uniform,
    toto_fallback::Op::StandardNormal,
    toto_fallback::Op::StandardGamma,
    toto_fallback::Op::StandardT,
    toto_fallback::Op::StudentTMixture,
];

/// `FallbackBackend<Wgpu, NdArray>` with every native sampler forced onto the CPU: the fallback
/// path, tested next to the native one.
pub fn forced(seed: u64) -> Option<On<FallbackBackend<Wgpu, NdArray>>> {
    forced_only(seed, SAMPLERS)
}

/// `FallbackBackend<Wgpu, NdArray>` with `ops` forced onto the CPU.
pub fn forced_only(
    seed: u64,
    ops: impl IntoIterator<Item = toto_fallback::Op>,
) -> Option<On<FallbackBackend<Wgpu, NdArray>>> {
    let On {
        backend: gpu,
        _turn,
    } = wgpu(seed)?;
    let backend = FallbackBackend::new(gpu.with_unsupported(ops), NdArray::seeded(seed))
        .with_policy(FallbackPolicy::Silent);
    Some(On { backend, _turn })
}

/// Runs a test body on several backends: `on_backends!(name, [ndarray, wgpu, fallback], |b| ..)`
/// makes one `#[test]` per backend in a module `name`; `b` derefs to the backend.
#[macro_export]
macro_rules! on_backends {
    ($name:ident, [$($backend:ident),+], |$b:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $backend() {
                    let Some($b) = common::$backend(0x5EED) else { return };
                    $body
                }
            )+
        }
    };
}

/// Reads a tensor back as f64s.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// The Kolmogorov-Smirnov statistic of `samples` against `cdf`.
pub fn ks_statistic(samples: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    ks_statistic_with_atoms(samples, &cdf, &cdf)
}

/// The KS statistic against a distribution that may have atoms: `cdf_left(x)` is `P(X < x)`
/// (equal to `cdf(x)` where there is no atom). Tied samples are handled as one step of the
/// empirical CDF.
pub fn ks_statistic_with_atoms(
    samples: &[f64],
    cdf: &dyn Fn(f64) -> f64,
    cdf_left: &dyn Fn(f64) -> f64,
) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        let mut j = i;
        while j < sorted.len() && sorted[j] == x {
            j += 1;
        }
        d = d
            .max((cdf(x) - j as f64 / n).abs())
            .max((cdf_left(x) - i as f64 / n).abs());
        i = j;
    }
    d
}

/// Asserts that `samples` pass a KS test against `cdf` at significance 1e-3: the critical value
/// is `sqrt(ln(2 / 1e-3) / 2) / sqrt(n) = 1.949 / sqrt(n)` (asymptotic Kolmogorov distribution).
/// Seeds are fixed, so a pass is reproducible; a correct sampler fails one case in a thousand
/// seeds.
pub fn assert_ks(what: &str, samples: &[f64], cdf: impl Fn(f64) -> f64) {
    assert_ks_with_atoms(what, samples, &cdf, &cdf);
}

/// [`assert_ks`] against a distribution with atoms (see [`ks_statistic_with_atoms`]).
pub fn assert_ks_with_atoms(
    what: &str,
    samples: &[f64],
    cdf: &dyn Fn(f64) -> f64,
    cdf_left: &dyn Fn(f64) -> f64,
) {
    assert!(
        samples.iter().all(|x| !x.is_nan()),
        "{what}: NaN in samples"
    );
    let n = samples.len() as f64;
    let d = ks_statistic_with_atoms(samples, cdf, cdf_left);
    let critical = 1.949 / n.sqrt();
    assert!(
        d < critical,
        "{what}: KS statistic {d:.5} >= critical {critical:.5} at n = {n}"
    );
}

/// Asserts the sample mean is within 5 standard errors of `mean` (variance `var`).
pub fn assert_mean(what: &str, samples: &[f64], mean: f64, var: f64) {
    let n = samples.len() as f64;
    let m = samples.iter().sum::<f64>() / n;
    let se = (var / n).sqrt();
    assert!(
        (m - mean).abs() < 5.0 * se,
        "{what}: sample mean {m} vs {mean} (5 standard errors = {})",
        5.0 * se
    );
}

/// Sample mean and (unbiased) variance.
pub fn moments(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

#[test]
fn ks_statistic_handles_atoms() {
    // Half the mass at 0 (an atom), half uniform on (0, 1).
    let samples: Vec<f64> = (0..1000)
        .map(|i| {
            if i < 500 {
                0.0
            } else {
                (i - 500) as f64 / 500.0 + 0.001
            }
        })
        .collect();
    let cdf = |x: f64| if x < 0.0 { 0.0 } else { 0.5 + 0.5 * x.min(1.0) };
    let left = |x: f64| if x <= 0.0 { 0.0 } else { cdf(x) };
    assert!(ks_statistic_with_atoms(&samples, &cdf, &left) < 0.01);
    // Ignoring the atom's left limit hides nothing: treating the atom as continuous mass fails.
    assert!(
        ks_statistic_with_atoms(&samples, &|x: f64| x.clamp(0.0, 1.0), &|x: f64| x
            .clamp(0.0, 1.0))
            > 0.4
    );
}

/// The request of `series` with `options` (what `forecast_series(series, options)` was).
pub fn request(
    series: &toto_fallback::Series,
    options: &toto_fallback::ForecastOptions,
) -> toto_fallback::ForecastRequest {
    toto_fallback::ForecastRequest::new(series.clone(), options.prediction_length)
        .with_options(options.clone())
}
