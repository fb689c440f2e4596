//! The backend layer on every backend: `NdArray`, `Wgpu` (lavapipe in CI) and
//! `FallbackBackend<Wgpu, NdArray>`. Expected distributions come from statrs (f64).

use crate::common;

use std::f64::consts::PI;

use burn::tensor::{Tensor, TensorData};
use statrs::distribution::{ContinuousCDF, Gamma, Normal, Uniform};
use toto_fallback::rng::DrawKey;
use toto_fallback::special;
use toto_fallback::{
    AdapterKind, Backend, Error, FallbackBackend, FallbackPolicy, GraphicsApi, LayerOps,
    MixtureParams, NdArray, Op, Placement, Wgpu,
};

use common::{assert_ks, assert_mean, values};

const N: usize = 100_000;

// Uniforms and normals at n = 1e6, as every sampler.
on_backends!(uniform_passes_ks, [ndarray, wgpu, fallback, forced], |b| {
    let u = values(b.uniform([10, N]).unwrap());
    assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)), "outside [0, 1)");
    let dist = Uniform::new(0.0, 1.0).unwrap();
    assert_ks("uniform", &u, |x| dist.cdf(x));
});

on_backends!(
    standard_normal_passes_ks,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        let z = values(b.standard_normal([100, N / 10]).unwrap());
        let dist = Normal::new(0.0, 1.0).unwrap();
        assert_ks("standard_normal", &z, |x| dist.cdf(x));
        assert_mean("standard_normal", &z, 0.0, 1.0);
    }
);

// Gamma(alpha, 1) for the grid, each at n = 1e6 (statrs' Gamma takes shape and rate):
// Marsaglia–Tsang in a Philox kernel on wgpu (and so on the fallback), rand_distr on NdArray
// (and on the forced fallback).
on_backends!(
    standard_gamma_passes_ks,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        for alpha in [0.1, 0.5, 1.0, 2.5, 10.0, 100.0] {
            let a = Tensor::<2>::full([10, N], alpha, b.device());
            let g = values(b.standard_gamma(a).unwrap());
            let dist = Gamma::new(alpha, 1.0).unwrap();
            let what = format!("standard_gamma(alpha = {alpha})");
            assert_ks(&what, &g, |x| dist.cdf(x));
            assert_mean(&what, &g, alpha, alpha);
        }
    }
);

// Student-T(df) at n = 1e6 per df (the KS size): Bailey's polar method on wgpu (and so
// natively on the fallback), normal + gamma on NdArray. Oracle: statrs' StudentsT cdf.
on_backends!(
    standard_t_passes_ks,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        for df in [0.5, 1.0, 2.1, 5.0, 30.0, 1e3, 1e6] {
            let d = Tensor::<2>::full([10, 100_000], df as f32, b.device());
            let t = values(b.standard_t(d).unwrap());
            let dist = statrs::distribution::StudentsT::new(0.0, 1.0, df).unwrap();
            assert_ks(&format!("standard_t(df = {df})"), &t, |x| dist.cdf(x));
        }
    }
);

on_backends!(standard_t_uses_each_elements_df, [ndarray, wgpu], |b| {
    // Interleaved df 1 (Cauchy) and 1e6 (normal): each half follows its own law.
    let df: Vec<f32> = (0..200_000)
        .map(|i| if i % 2 == 0 { 1.0 } else { 1e6 })
        .collect();
    let t = values(
        b.standard_t(Tensor::<1>::from_floats(df.as_slice(), b.device()))
            .unwrap(),
    );
    let (cauchy, normal): (Vec<f64>, Vec<f64>) = (
        t.iter().step_by(2).copied().collect(),
        t.iter().skip(1).step_by(2).copied().collect(),
    );
    let c = statrs::distribution::StudentsT::new(0.0, 1.0, 1.0).unwrap();
    assert_ks("df = 1 elements", &cauchy, |x| c.cdf(x));
    let n = Normal::new(0.0, 1.0).unwrap();
    assert_ks("df = 1e6 elements", &normal, |x| n.cdf(x));
});

#[test]
fn student_t_sampling_forwards_nothing_on_the_fallback() {
    // Bailey's method needs no gamma: a Toto-sized mixture draw stays on the GPU.
    let Some(b) = common::fallback(8) else { return };
    assert_eq!(b.placement(Op::StandardT), Some(Placement::Native));
    let df = Tensor::<2>::full([64, 24], 5.0, b.device());
    let t = toto_fallback::distr::StudentT::new(&*b, df.clone(), df.zeros_like(), df.ones_like())
        .unwrap();
    use toto_fallback::distr::Distribution as _;
    let _: Tensor<3> = t.sample(&[4]).unwrap();
    let report = b.report();
    assert!(
        Op::ALL.iter().all(|&op| report.op(op).forwarded.calls == 0),
        "{report}"
    );
    assert_eq!(report.op(Op::StandardT).native.calls, 1);
    // Forced onto the CPU, the same op is forwarded and still correct in law.
    let forced = FallbackBackend::new(
        b.gpu().clone().with_unsupported([Op::StandardT]),
        NdArray::seeded(9),
    )
    .with_policy(FallbackPolicy::Silent);
    let d = Tensor::<1>::full([200_000], 5.0, forced.device());
    let t = values(forced.standard_t(d).unwrap());
    let dist = statrs::distribution::StudentsT::new(0.0, 1.0, 5.0).unwrap();
    assert_ks("standard_t forced onto the CPU", &t, |x| dist.cdf(x));
    assert_eq!(forced.report().op(Op::StandardT).forwarded.calls, 1);
}

// Per-element concentrations: interleaved alphas must each get their own distribution.
on_backends!(
    standard_gamma_uses_each_elements_alpha,
    [ndarray, wgpu, forced],
    |b| {
        let alphas = [0.3f32, 7.0];
        let a: Vec<f32> = (0..N).map(|i| alphas[i % 2]).collect();
        let a = Tensor::<2>::from_data(burn::tensor::TensorData::new(a, [N / 2, 2]), b.device());
        let g = values(b.standard_gamma(a).unwrap());
        for (k, &alpha) in alphas.iter().enumerate() {
            let column: Vec<f64> = g.iter().skip(k).step_by(2).copied().collect();
            let dist = Gamma::new(f64::from(alpha), 1.0).unwrap();
            assert_ks(&format!("column alpha = {alpha}"), &column, |x| dist.cdf(x));
        }
    }
);

on_backends!(standard_gamma_value_rules, [ndarray, wgpu, forced], |b| {
    let a = Tensor::<1>::from_floats([-1.0, 0.0, f32::NAN, f32::INFINITY, 1e-4, 3.0], b.device());
    let g = values(b.standard_gamma(a).unwrap());
    assert!(g[0].is_nan() && g[1].is_nan() && g[2].is_nan(), "{g:?}");
    assert_eq!(g[3], f64::INFINITY);
    assert!(
        g[4] >= f64::from(f32::MIN_POSITIVE),
        "clamped at the smallest normal f32: {g:?}"
    );
    assert!(g[5] > 0.0 && g[5].is_finite());
});

on_backends!(
    same_seed_same_samples,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        let draw = || {
            let mut v = values(b.uniform([1000]).unwrap());
            v.extend(values(b.standard_normal([10, 100]).unwrap()));
            if b.supports(Op::StandardGamma) {
                let a = Tensor::<1>::full([1000], 0.7, b.device());
                v.extend(values(b.standard_gamma(a).unwrap()));
            }
            v
        };
        b.seed(42);
        let first = draw();
        b.seed(42);
        assert_eq!(first, draw(), "same seed, same samples");
        b.seed(43);
        assert_ne!(first, draw(), "another seed, other samples");
    }
);

on_backends!(
    empty_shapes_give_empty_tensors,
    [ndarray, wgpu, fallback],
    |b| {
        assert_eq!(b.uniform([0, 3]).unwrap().dims(), [0, 3]);
        assert_eq!(b.standard_normal([4, 0]).unwrap().dims(), [4, 0]);
        let x = Tensor::<1>::from_floats([0.5f32; 0], b.device());
        assert_eq!(special::lgamma(x).dims(), [0]);
        if b.supports(Op::StandardGamma) {
            let a = Tensor::<2>::ones([0, 5], b.device());
            assert_eq!(b.standard_gamma(a).unwrap().dims(), [0, 5]);
        }
    }
);

on_backends!(
    huge_shapes_are_refused_before_allocating,
    [ndarray, wgpu, fallback],
    |b| {
        let err = b.uniform([1 << 20, 1 << 20, 1 << 20]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    what: "uniform",
                    ..
                }
            ),
            "{err}"
        );
        let err = b.standard_normal([usize::MAX, 2]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }
);

// lgamma/digamma against statrs (f64). Tolerances: absolute where the value is O(1) and passes
// through zero, relative where it is large (f32 keeps ~7 digits).
on_backends!(
    lgamma_and_digamma_match_statrs,
    [ndarray, wgpu, fallback],
    |b| {
        let xs: Vec<f32> = (1..400)
            .map(|i| 0.025 * i as f32) // (0, 10)
            .chain([1e-6, 1e-3, 0.5, 1.0, 2.0, 15.5, 100.0, 1e3, 3e4, 1e6, 1e20])
            .chain([-0.5, -1.5, -2.25, -7.9, -100.5])
            .collect();
        let x = Tensor::<1>::from_floats(xs.as_slice(), b.device());
        let lg = values(special::lgamma(x.clone()));
        let dg = values(special::digamma(x));
        for ((&x, &lg), &dg) in xs.iter().zip(&lg).zip(&dg) {
            let x = f64::from(x);
            let want = if x > 0.0 {
                statrs::function::gamma::ln_gamma(x)
            } else {
                // Reflection in f64: ln|Γ(x)| = ln π - ln|sin πx| - ln Γ(1 - x).
                PI.ln() - (PI * x).sin().abs().ln() - statrs::function::gamma::ln_gamma(1.0 - x)
            };
            let tol = 4e-6 * want.abs().max(1.0);
            assert!(
                (lg - want).abs() <= tol,
                "lgamma({x}) = {lg}, statrs {want}"
            );
            let want = statrs::function::gamma::digamma(x);
            let tol = 2e-6 * want.abs().max(1.0);
            assert!(
                (dg - want).abs() <= tol,
                "digamma({x}) = {dg}, statrs {want}"
            );
        }
    }
);

on_backends!(
    special_functions_at_poles_and_infinities,
    [ndarray, wgpu, fallback],
    |b| {
        let x = Tensor::<1>::from_floats(
            [0.0, -1.0, -3.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN],
            b.device(),
        );
        let lg = values(special::lgamma(x.clone()));
        assert!(lg[..5].iter().all(|&v| v == f64::INFINITY), "lgamma {lg:?}");
        assert!(lg[5].is_nan());
        let dg = values(special::digamma(x));
        assert_eq!(dg[0], f64::NEG_INFINITY, "digamma(0) is -inf as in torch");
        assert!(
            dg[1].is_nan() && dg[2].is_nan(),
            "digamma at negative integers: {dg:?}"
        );
        assert_eq!(dg[3], f64::INFINITY);
        assert!(dg[5].is_nan());
    }
);

#[test]
fn wgpu_without_gamma_returns_unsupported() {
    let Some(gpu) = common::wgpu(1) else { return };
    assert!(
        gpu.supports(Op::StandardGamma),
        "native since the Philox kernels"
    );
    let gpu = gpu.backend.clone().with_unsupported([Op::StandardGamma]);
    assert!(!gpu.supports(Op::StandardGamma));
    let alpha = Tensor::<1>::full([10], 2.0, gpu.device());
    let err = gpu.standard_gamma(alpha).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { op: Op::StandardGamma, backend } if backend == gpu.name()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("FallbackBackend"),
        "the message names the fix: {err}"
    );
}

#[test]
fn fallback_runs_gamma_on_the_cpu_and_returns_gpu_tensors() {
    let Some(b) = common::forced_only(3, [Op::StandardGamma]) else {
        return;
    };
    assert_eq!(b.placement(Op::StandardGamma), Some(Placement::Forwarded));
    assert_eq!(b.placement(Op::StandardNormal), Some(Placement::Native));
    let alpha = Tensor::<1>::full([1000], 2.0, b.device());
    let g = b.standard_gamma(alpha).unwrap();
    assert_eq!(
        &g.device(),
        b.gpu().device(),
        "results come back to the GPU device"
    );
}

#[test]
fn deny_policy_returns_fallback_denied() {
    let Some(b) = common::forced_only(4, [Op::StandardGamma]) else {
        return;
    };
    let b = b.backend.clone().with_policy(FallbackPolicy::Deny);
    assert!(!b.supports(Op::StandardGamma));
    let alpha = Tensor::<1>::full([10], 2.0, b.device());
    let err = b.standard_gamma(alpha).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FallbackDenied {
                op: Op::StandardGamma,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("FallbackPolicy::Warn"), "{err}");
    // Native ops still run under Deny.
    b.uniform([10]).unwrap();
    let report = b.report();
    assert_eq!(
        report.op(Op::StandardGamma).forwarded.calls,
        0,
        "a denied call is not counted"
    );
    assert_eq!(report.op(Op::Uniform).native.calls, 1);
}

#[test]
fn report_counts_calls_elements_and_bytes() {
    let Some(b) = common::forced_only(5, [Op::StandardGamma]) else {
        return;
    };
    let n = 12_345;
    let alpha = Tensor::<1>::full([n], 2.0, b.device());
    b.standard_gamma(alpha).unwrap();
    b.standard_normal([n]).unwrap();
    let report = b.report();
    let gamma = report.op(Op::StandardGamma);
    assert_eq!(gamma.forwarded.calls, 1);
    assert_eq!(gamma.forwarded.elements, n as u64);
    assert_eq!(gamma.forwarded.bytes_to_cpu, 4 * n as u64);
    assert_eq!(gamma.forwarded.bytes_to_gpu, 4 * n as u64);
    assert_eq!(gamma.native.calls, 0);
    let normal = report.op(Op::StandardNormal);
    assert_eq!((normal.native.calls, normal.native.elements), (1, n as u64));
    assert_eq!(normal.native.bytes_to_cpu + normal.native.bytes_to_gpu, 0);
    assert_eq!(normal.forwarded.calls, 0);
    let table = report.to_string();
    assert!(table.contains("standard_gamma    cpu"), "{table}");
    assert!(table.contains("standard_normal   gpu"), "{table}");
    b.reset_report();
    assert_eq!(b.report().total(Placement::Forwarded).calls, 0);
}

#[test]
fn any_op_can_be_forced_onto_the_fallback() {
    let Some(b) = common::wgpu(6) else { return };
    let gpu = b
        .backend
        .clone()
        .with_unsupported([Op::Uniform, Op::StandardT, Op::RmsNorm]);
    let b = FallbackBackend::new(gpu, NdArray::seeded(6)).with_policy(FallbackPolicy::Silent);
    assert_eq!(b.placement(Op::Uniform), Some(Placement::Forwarded));
    assert_eq!(b.placement(Op::StandardNormal), Some(Placement::Native));
    assert_eq!(b.placement(Op::Linear), Some(Placement::Native));
    let u = b.uniform([1000]).unwrap();
    assert_eq!(&u.device(), b.gpu().device());
    let df = Tensor::<1>::from_floats([0.5, 3.0, 10.0], b.device());
    let t = values(b.standard_t(df).unwrap());
    assert!(t.iter().all(|v| v.is_finite()), "{t:?}");
    let x = Tensor::<2>::from_floats([[3.0, 4.0]], b.device());
    let y = values(b.rms_norm(x, None, 0.0).unwrap());
    // x / sqrt(mean(x²)) = (3, 4) / sqrt(12.5).
    assert!((y[0] - 3.0 / 12.5f64.sqrt()).abs() < 1e-6, "{y:?}");
    let report = b.report();
    let uniform = report.op(Op::Uniform).forwarded;
    assert_eq!(
        (uniform.calls, uniform.bytes_to_cpu, uniform.bytes_to_gpu),
        (1, 0, 4000)
    );
    let t = report.op(Op::StandardT).forwarded;
    assert_eq!((t.calls, t.bytes_to_cpu, t.bytes_to_gpu), (1, 12, 12));
    let norm = report.op(Op::RmsNorm).forwarded;
    assert_eq!(
        (norm.calls, norm.bytes_to_cpu, norm.bytes_to_gpu),
        (1, 8, 8)
    );
}

#[test]
fn unsupported_everywhere_is_an_error() {
    let gpu = NdArray::seeded(1).with_unsupported([Op::StandardT]);
    let cpu = NdArray::seeded(2).with_unsupported([Op::StandardT]);
    let b = FallbackBackend::new(gpu, cpu);
    assert!(!b.supports(Op::StandardT));
    let x = Tensor::<1>::ones([3], b.device());
    let err = b.standard_t(x).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedEverywhere {
                op: Op::StandardT,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn tensors_on_another_device_are_refused() {
    let Some(gpu) = common::wgpu(7) else { return };
    let cpu = NdArray::seeded(7);
    let on_cpu = Tensor::<1>::ones([3], cpu.device());
    let err = gpu.standard_t(on_cpu).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeviceMismatch {
                what: "standard_t",
                param: "df",
                ..
            }
        ),
        "{err:?}"
    );
    let on_gpu = Tensor::<1>::ones([3], gpu.device());
    let err = cpu.standard_gamma(on_gpu.clone()).unwrap_err();
    assert!(
        matches!(err, Error::DeviceMismatch { param: "alpha", .. }),
        "{err:?}"
    );
    let fallback = FallbackBackend::new(gpu.backend.clone(), cpu.clone());
    let on_cpu = Tensor::<1>::ones([3], cpu.device());
    let err = fallback.standard_gamma(on_cpu.clone()).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { .. }), "{err:?}");
    let err = gpu.standard_gamma(on_cpu).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { .. }), "{err:?}");
}

#[test]
fn shared_across_threads_no_count_is_lost() {
    let Some(b) = common::forced_only(8, [Op::StandardGamma]) else {
        return;
    };
    let threads = 4;
    let calls = 10;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..calls {
                    let alpha = Tensor::<1>::full([1000], 1.5, b.device());
                    let g = values(b.standard_gamma(alpha).unwrap());
                    assert!(g.iter().all(|&x| x > 0.0 && x.is_finite()));
                }
            });
        }
    });
    let gamma = b.report().op(Op::StandardGamma).forwarded;
    assert_eq!(gamma.calls, (threads * calls) as u64);
    assert_eq!(gamma.elements, (threads * calls * 1000) as u64);
}

#[test]
fn warn_policy_is_the_default() {
    let b = FallbackBackend::new(NdArray::seeded(1), NdArray::seeded(2));
    assert_eq!(b.policy(), FallbackPolicy::Warn);
}

on_backends!(
    log1p_is_accurate_near_zero,
    [ndarray, wgpu, fallback],
    |b| {
        let xs: Vec<f32> = [
            -0.9, -0.3, -1e-3, -1e-7, 0.0, 1e-9, 2e-5, 0.01, 0.4, 0.42, 3.0, 1e6,
        ]
        .into_iter()
        .collect();
        let x = Tensor::<1>::from_floats(xs.as_slice(), b.device());
        let got = values(toto_fallback::special::log1p(x));
        for (&x, &got) in xs.iter().zip(&got) {
            let want = f64::from(x).ln_1p(); // f64 reference
            assert!(
                (got - want).abs() <= 1e-6 * want.abs() + 1e-30,
                "log1p({x}) = {got}, f64 {want}"
            );
        }
    }
);

on_backends!(expm1_is_accurate_near_zero, [ndarray, wgpu], |b| {
    let xs: Vec<f32> = vec![
        -20.0, -1.0, -0.5, -0.49, -1e-3, -1e-8, 0.0, 1e-10, 3e-5, 0.01, 0.3, 0.499, 0.5, 2.0, 40.0,
    ];
    let x = Tensor::<1>::from_floats(xs.as_slice(), b.device());
    let got = values(toto_fallback::special::expm1(x));
    for (&x, &got) in xs.iter().zip(&got) {
        let want = f64::from(x).exp_m1(); // f64 reference
        assert!(
            (got - want).abs() <= 1e-6 * want.abs() + 1e-30,
            "expm1({x}) = {got}, f64 {want}"
        );
    }
});

// The incomplete beta against statrs' beta_reg for the small parameters it is sized for.
on_backends!(betainc_matches_statrs, [ndarray, wgpu], |b| {
    let grid: Vec<(f32, f32, f32)> = [0.25f32, 0.5, 1.0, 2.5, 3.0]
        .iter()
        .flat_map(|&a| [0.5f32, 1.0, 3.0].map(move |bb| (a, bb)))
        .flat_map(|(a, bb)| {
            [0.0f32, 1e-4, 0.1, 0.35, 0.5, 0.8, 0.999, 1.0].map(move |x| (a, bb, x))
        })
        .collect();
    let t = |f: fn(&(f32, f32, f32)) -> f32| {
        let v: Vec<f32> = grid.iter().map(f).collect();
        Tensor::<1>::from_floats(v.as_slice(), b.device())
    };
    let got = values(toto_fallback::special::betainc(
        t(|g| g.0),
        t(|g| g.1),
        t(|g| g.2),
        t(|g| 1.0 - g.2),
    ));
    for (&(a, bb, x), &got) in grid.iter().zip(&got) {
        let want = statrs::function::beta::beta_reg(f64::from(a), f64::from(bb), f64::from(x));
        assert!(
            (got - want).abs() <= 2e-6,
            "I_{x}({a}, {bb}) = {got}, statrs {want}"
        );
    }
});

// The incomplete gamma against statrs' gamma_lr (the Gamma(a, 1) CDF).
on_backends!(gammainc_matches_statrs, [ndarray, wgpu], |b| {
    let grid: Vec<(f32, f32)> = [0.01f32, 0.1, 0.5, 1.0, 2.5, 10.0, 30.0, 100.0]
        .iter()
        .flat_map(|&a| {
            [
                0.0f32,
                1e-6,
                0.01,
                0.3,
                1.0,
                2.0,
                0.5 * a,
                a,
                a + 1.0,
                1.3 * a + 2.0,
                3.0 * a + 10.0,
                f32::INFINITY,
            ]
            .map(move |x| (a, x))
        })
        .collect();
    let a: Vec<f32> = grid.iter().map(|g| g.0).collect();
    let x: Vec<f32> = grid.iter().map(|g| g.1).collect();
    let got = values(toto_fallback::special::gammainc(
        Tensor::<1>::from_floats(a.as_slice(), b.device()),
        Tensor::<1>::from_floats(x.as_slice(), b.device()),
    ));
    for (&(a, x), &got) in grid.iter().zip(&got) {
        let want = if x.is_infinite() {
            1.0
        } else if x == 0.0 {
            0.0 // statrs' gamma_lr refuses x = 0
        } else {
            statrs::function::gamma::gamma_lr(f64::from(a), f64::from(x))
        };
        assert!(
            (got - want).abs() <= 2e-6,
            "P({a}, {x}) = {got}, statrs {want}"
        );
    }
});

// One categorical draw per row and sample: frequencies against the weights (Pearson's
// chi-squared, 3 degrees of freedom, 0.999 quantile 16.27), per row.
on_backends!(
    categorical_frequencies_match_weights,
    [ndarray, wgpu, fallback],
    |b| {
        let weights = [[1.0f32, 2.0, 3.0, 4.0], [0.0, 5.0, 0.0, 5.0]];
        // Logits: ln of the weights (ln 0 = -inf is a category of probability 0), shifted by
        // +100 per row so a loop without the max shift would overflow exp (e^100 > f32::MAX).
        let w = Tensor::<2>::from_floats(weights, b.device())
            .log()
            .add_scalar(100.0);
        let samples = 50_000;
        let idx = b.categorical(w, samples).unwrap();
        assert_eq!(idx.dims(), [samples, 2]);
        let idx: Vec<i64> = idx
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        for (row, w) in weights.iter().enumerate() {
            let total: f32 = w.iter().sum();
            let column: Vec<i64> = idx.iter().skip(row).step_by(2).copied().collect();
            let mut chi2 = 0.0;
            for (k, &wk) in w.iter().enumerate() {
                let observed = column.iter().filter(|&&x| x == k as i64).count() as f64;
                if wk == 0.0 {
                    assert_eq!(observed, 0.0, "row {row}: category {k} has weight 0");
                    continue;
                }
                let expected = f64::from(wk / total) * samples as f64;
                chi2 += (observed - expected).powi(2) / expected;
            }
            assert!(chi2 < 16.27, "row {row}: chi-squared {chi2}");
        }
    }
);

#[test]
fn categorical_forced_onto_the_fallback_is_counted() {
    let Some(b) = common::wgpu(12) else { return };
    let gpu = b.backend.clone().with_unsupported([Op::Categorical]);
    let b = FallbackBackend::new(gpu, NdArray::seeded(12)).with_policy(FallbackPolicy::Silent);
    let w = Tensor::<2>::zeros([7, 24], b.device());
    let idx = b.categorical(w, 10).unwrap();
    assert_eq!(&idx.device(), b.gpu().device());
    let r = b.report().op(Op::Categorical).forwarded;
    assert_eq!(
        (r.calls, r.elements, r.bytes_to_cpu, r.bytes_to_gpu),
        (1, 70, 4 * 7 * 24, 4 * 70)
    );
    let err = b
        .categorical(Tensor::<2>::ones([3, 0], b.device()), 1)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ParamShape {
                param: "logits",
                ..
            }
        ),
        "{err}"
    );
}

// ln B(a, b) against statrs' ln_beta; the tolerance follows the largest lgamma involved.
on_backends!(lbeta_matches_statrs, [ndarray, wgpu], |b| {
    let args = [0.1f32, 0.5, 1.0, 2.5, 7.0, 30.0];
    let pairs: Vec<(f32, f32)> = args
        .iter()
        .flat_map(|&a| args.map(move |c| (a, c)))
        .collect();
    let a: Vec<f32> = pairs.iter().map(|p| p.0).collect();
    let c: Vec<f32> = pairs.iter().map(|p| p.1).collect();
    let got = values(toto_fallback::special::lbeta(
        Tensor::<1>::from_floats(a.as_slice(), b.device()),
        Tensor::<1>::from_floats(c.as_slice(), b.device()),
    ));
    for (&(a, c), &got) in pairs.iter().zip(&got) {
        let (a, c) = (f64::from(a), f64::from(c));
        let want = statrs::function::beta::ln_beta(a, c);
        let scale = statrs::function::gamma::ln_gamma(a + c).abs().max(1.0);
        assert!(
            (got - want).abs() <= 4e-6 * scale,
            "lbeta({a}, {c}) = {got}, statrs {want}"
        );
    }
});

// --- The counter-based generator ---------------------------------------------------------------

fn f32s<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

// The host Philox (checked against Random123's known answers in the crate's unit tests) is the
// oracle: wgpu's kernel and NdArray compute the same uniforms, bit for bit.
#[test]
fn philox_uniforms_agree_bitwise_on_gpu_cpu_and_the_host_oracle() {
    let Some(gpu) = common::wgpu(21) else { return };
    let cpu = NdArray::seeded(21);
    // The second call after seeding on both (call number 1).
    gpu.uniform([5]).unwrap();
    cpu.uniform([5]).unwrap();
    let g = f32s(gpu.uniform([1000, 37]).unwrap());
    let c = f32s(cpu.uniform([1000, 37]).unwrap());
    assert_eq!(g.len(), 37_000);
    assert!(g == c, "wgpu and ndarray uniforms differ");
    let key = DrawKey::new(21, 1);
    for i in (0..37_000).step_by(97) {
        let want = key.uniform(i as u64).to_bits();
        assert_eq!(g[i], want, "element {i}");
    }
}

// Row 3 of a batch of 8 gets the same draws as row 3 drawn alone (at its offset), for every
// native sampler: draws depend on the element's index, not on the batch or the launch.
#[test]
fn wgpu_draws_do_not_depend_on_batch_size() {
    let Some(gpu) = common::wgpu(22) else { return };
    // Odd, so series 3 starts mid-block (lane 1 of 2, lane 3 of 4).
    let n = 3001;
    let k = 5;
    let draw = |g: &Wgpu, rows: usize, first: usize| -> Vec<Vec<u32>> {
        let dev = g.device();
        let per_row = |f: fn(usize, usize) -> f32, cols: usize| {
            let v: Vec<f32> = (first..first + rows)
                .flat_map(|r| (0..cols).map(move |c| f(r, c)))
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), dev)
        };
        let per_series = |f: fn(usize, usize) -> f32| {
            let v: Vec<f32> = (first..first + rows)
                .flat_map(|r| (0..n * k).map(move |i| f(r, i % k)))
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [rows * n, k]), dev)
        };
        let alpha = per_row(|r, c| 0.3 + (r * 7 + c % 11) as f32 * 0.2, n);
        let df = per_row(|r, c| 0.8 + (r + c % 5) as f32, n);
        vec![
            f32s(g.uniform([rows, n]).unwrap()),
            f32s(g.standard_normal([rows, n]).unwrap()),
            f32s(g.standard_gamma(alpha).unwrap()),
            f32s(g.standard_t(df).unwrap()),
            // One draw per row of an [rows·n, K] mixture: each series owns n consecutive rows.
            f32s(
                g.student_t_mixture(
                    MixtureParams::new(
                        per_series(|r, c| ((r + c) % 3) as f32),
                        per_series(|_, c| 2.0 + c as f32),
                        per_series(|r, c| (r * 10 + c) as f32),
                        per_series(|_, c| 1.0 + c as f32 * 0.1),
                    ),
                    1,
                )
                .unwrap(),
            ),
        ]
    };
    gpu.seed(5);
    let batch = draw(&gpu, 8, 0);
    gpu.seed(5);
    let alone = draw(&gpu.with_offset(3 * n as u64), 1, 3);
    let ops = ["uniform", "normal", "gamma", "t", "mixture"];
    for (op, (b, a)) in ops.iter().zip(batch.iter().zip(&alone)) {
        assert_eq!(a.len(), n, "{op}");
        assert!(
            b[3 * n..4 * n] == a[..],
            "{op}: series 3 differs when drawn alone"
        );
        assert!(b[2 * n..3 * n] != a[..], "{op}: series 2 must differ");
    }
}

#[test]
fn native_sampling_on_the_fallback_reads_nothing_back() {
    let Some(b) = common::fallback(23) else {
        return;
    };
    let dev = b.device();
    b.uniform([100]).unwrap();
    b.standard_normal([100]).unwrap();
    b.standard_gamma(Tensor::<1>::full([100], 0.4, dev))
        .unwrap();
    b.standard_t(Tensor::<1>::full([100], 3.0, dev)).unwrap();
    let p = || Tensor::<2>::ones([10, 24], dev);
    b.student_t_mixture(MixtureParams::new(p(), p(), p(), p()), 10)
        .unwrap();
    let report = b.report();
    for op in common::SAMPLERS {
        assert_eq!(
            report.op(op).native.calls,
            1,
            "{op} runs natively: {report}"
        );
    }
    let forwarded = report.total(Placement::Forwarded);
    assert_eq!(
        (forwarded.calls, forwarded.bytes_to_cpu),
        (0, 0),
        "{report}"
    );
}

// Mixture draws through the fused kernel against statrs' Student-T cdfs weighted by the
// softmax: K = 24 (Toto's; the tiled kernel on wgpu) at n = 1e6, and K = 60 (past the tile's
// limit: the direct kernel) at n = 2e5.
on_backends!(student_t_mixture_passes_ks, [ndarray, wgpu, forced], |b| {
    for (k, n) in [(24usize, 1_000_000usize), (60, 200_000)] {
        let logits: Vec<f32> = (0..k).map(|j| ((j * 7) % 5) as f32 * 0.6 - 1.0).collect();
        let df: Vec<f32> = (0..k).map(|j| 1.5 + (j % 30) as f32 * 0.7).collect();
        let loc: Vec<f32> = (0..k).map(|j| (j % 24) as f32 * 0.5 - 6.0).collect();
        let scale: Vec<f32> = (0..k).map(|j| 0.3 + (j % 4) as f32 * 0.4).collect();
        let row =
            |v: &Vec<f32>| Tensor::<2>::from_data(TensorData::new(v.clone(), [1, k]), b.device());
        let x = values(
            b.student_t_mixture(
                MixtureParams::new(row(&logits), row(&df), row(&loc), row(&scale)),
                n,
            )
            .unwrap(),
        );
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let w: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
        let total: f64 = w.iter().sum();
        let comps: Vec<statrs::distribution::StudentsT> = (0..k)
            .map(|j| {
                statrs::distribution::StudentsT::new(
                    f64::from(loc[j]),
                    f64::from(scale[j]),
                    f64::from(df[j]),
                )
                .unwrap()
            })
            .collect();
        assert_ks(&format!("student_t_mixture (K = {k})"), &x, |v| {
            comps
                .iter()
                .zip(&w)
                .map(|(c, wk)| wk / total * c.cdf(v))
                .sum()
        });
    }
});

/// The name says which shader language cubecl compiles to, read from the runtime rather than
/// from the adapter's cache fingerprint (which starts with `spirv_` whatever the compiler).
#[test]
fn wgpu_name_says_which_compiler_serves_it() {
    let Some(gpu) = common::wgpu(1) else { return };
    let name = gpu.name();
    let shader = name
        .rsplit_once("; ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no shader language in {name:?}"));
    if cfg!(any(feature = "vulkan", feature = "metal")) {
        assert!(["wgsl", "spirv", "msl"].contains(&shader), "{name}");
    } else {
        // Without `vulkan` or `metal`, burn compiles WGSL on every API.
        assert_eq!(shader, "wgsl", "{name}");
    }
}

/// A software Vulkan adapter (Mesa's lavapipe) in a build that compiles kernels to SPIR-V (the
/// default, `vulkan`) is refused with `Error::SoftwareSpirv` naming it and both ways out, and
/// `choose_backend` then runs on the CPU even when asked for a GPU; in the `portable` build
/// (WGSL only) it opens and is served WGSL. CI runs this in both builds on lavapipe.
#[test]
fn a_software_vulkan_adapter_is_served_wgsl_or_refused() {
    use toto_fallback::{Chosen, Prefer, choose_backend};
    let _turn = common::wgpu_turn();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true") && !common::expect_gl_only();
    match Wgpu::with_adapter(GraphicsApi::Auto, AdapterKind::Cpu) {
        Ok(gpu) => {
            eprintln!("opened {}", gpu.name());
            assert!(gpu.is_software(), "{} is not software", gpu.name());
            assert!(
                gpu.name().ends_with("; wgsl)"),
                "a software adapter served other than WGSL: {}",
                gpu.name()
            );
            assert!(
                !cfg!(feature = "vulkan") || std::env::var("TOTO_WGPU_SOFTWARE_SPIRV").is_ok(),
                "a SPIR-V build opened {}",
                gpu.name()
            );
        }
        Err(e @ Error::SoftwareSpirv { .. }) => {
            let spirv_build = cfg!(feature = "vulkan");
            assert!(spirv_build, "refused without SPIR-V: {e}");
            let text = e.to_string();
            for needle in [
                "software Vulkan",
                "SPIR-V",
                "NdArray::new()",
                "\"portable\"",
            ] {
                assert!(text.contains(needle), "{needle:?} missing from: {text}");
            }
            eprintln!("refused in a SPIR-V build: {text}");
            if let Ok(gpu) = Wgpu::new() {
                // A machine with a GPU besides lavapipe: the default adapter is the GPU.
                assert!(!gpu.is_software(), "{} opened", gpu.name());
                return;
            }
            match choose_backend(Prefer::Gpu) {
                Chosen::Cpu { why, .. } => assert!(why.contains("SPIR-V"), "{why}"),
                Chosen::Gpu(b) => panic!("chose {} after the refusal", b.gpu().name()),
            }
        }
        Err(e) if ci => panic!("CI=true, yet lavapipe did not open: {e}"),
        Err(e) => eprintln!("SKIPPED (no software Vulkan adapter): {e}"),
    }
}

/// `choose_backend` takes a hardware adapter, passes over a software one (lavapipe in CI) for
/// the CPU and says why, takes even a software one when asked for a GPU, and never opens one
/// when asked for the CPU.
#[test]
fn choose_backend_passes_over_software_adapters() {
    use toto_fallback::{Chosen, Prefer, choose_backend};
    let cpu = choose_backend(Prefer::Cpu);
    assert!(!cpu.is_gpu());
    assert!(cpu.to_string().contains("asked for the CPU"), "{cpu}");
    let Some(gpu) = common::wgpu(0) else { return };
    let (auto, any) = (choose_backend(Prefer::Auto), choose_backend(Prefer::Gpu));
    eprintln!(
        "{} is software: {}; auto: {auto}; gpu: {any}",
        gpu.name(),
        gpu.is_software()
    );
    assert!(any.is_gpu(), "{any}");
    match &auto {
        Chosen::Cpu { why, .. } => {
            assert!(gpu.is_software(), "a hardware adapter passed over: {why}");
            assert!(
                why.contains("software") && why.contains(gpu.name()),
                "{why}"
            );
        }
        Chosen::Gpu(b) => {
            assert!(!gpu.is_software(), "software adapter chosen: {}", b.name());
            assert_eq!(b.gpu().name(), gpu.name());
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        // CI's only adapter is Mesa's lavapipe (Vulkan, with f64 shaders; not llvmpipe on
        // OpenGL, which has none and which Wgpu refuses).
        assert!(
            gpu.is_software(),
            "{} is not reported as software",
            gpu.name()
        );
        assert!(
            gpu.supports(Op::PatchScaler),
            "{}: no f64 shaders",
            gpu.name()
        );
        assert!(!auto.is_gpu());
    }
}

/// An OpenGL-only machine (CI's GL pass, or Mesa without a Vulkan driver): `Wgpu` refuses the
/// adapter with a typed error that names it, again on the next call (not through burn's lazily
/// registered GL runtime), and `choose_backend` runs on the CPU saying why, even when asked for
/// a GPU. Elsewhere `Wgpu::new()` opens a Vulkan, Metal or DX12 adapter.
#[test]
fn an_opengl_only_adapter_is_refused_and_the_cpu_chosen() {
    use toto_fallback::{Chosen, Prefer, choose_backend};
    let _turn = common::wgpu_turn();
    let name = match Wgpu::new() {
        Err(Error::OpenGlOnly { name, .. }) => name,
        other => {
            assert!(
                !common::expect_gl_only(),
                "TOTO_TEST_EXPECT_GL_ONLY=1, yet Wgpu::new() gave {:?}",
                other.map(|gpu| gpu.name().to_owned())
            );
            eprintln!("not an OpenGL-only machine: nothing to refuse");
            return;
        }
    };
    let text = Wgpu::new().unwrap_err().to_string();
    assert!(
        text.contains("OpenGL") && text.contains(&name) && text.contains("NdArray::new()"),
        "{text}"
    );
    for prefer in [Prefer::Auto, Prefer::Gpu] {
        match choose_backend(prefer) {
            Chosen::Cpu { why, .. } => {
                assert!(why.contains("OpenGL") && why.contains(&name), "{why}")
            }
            Chosen::Gpu(b) => panic!("{prefer:?} chose {} on an OpenGL-only machine", b.name()),
        }
    }
    assert!(
        matches!(
            Wgpu::with_adapter(GraphicsApi::Auto, AdapterKind::Cpu),
            Err(Error::OpenGlOnly { .. } | Error::NoAdapter { .. })
        ),
        "the software adapter on OpenGL was opened"
    );
}

/// The kernel cache (`cache` feature): a GPU matmul leaves tuned entries on disk; `export`
/// writes them to a bundle, `import` of that bundle finds every entry already present (a local
/// entry is never overwritten), and a file that is not a bundle is a typed error naming it.
#[cfg(feature = "cache")]
#[test]
fn kernel_cache_exports_and_imports_what_the_gpu_tuned() {
    use toto_fallback::kernel_cache;
    let Some(gpu) = common::wgpu(3) else { return };
    let a = Tensor::<2>::ones([48, 40], gpu.device());
    let b = Tensor::<2>::ones([40, 24], gpu.device());
    let product = values(a.matmul(b));
    assert!(product.iter().all(|&x| x == 40.0), "{product:?}");

    let location = kernel_cache::location();
    assert!(
        location.is_file(),
        "{} after a GPU matmul",
        location.display()
    );
    let dir = std::env::temp_dir().join(format!("toto-kernel-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("bundle.db");
    let saved = kernel_cache::export(&bundle).unwrap();
    assert!(saved.entries > 0 && bundle.is_file(), "{saved:?}");
    assert!(
        saved.namespaces.iter().any(|n| n.contains("autotune")),
        "no autotune entries in {:?}",
        saved.namespaces
    );
    let report = kernel_cache::import(&bundle).unwrap();
    assert_eq!(report.imported, 0, "{report:?}");
    assert!(report.skipped > 0 && report.failed == 0, "{report:?}");

    // `prewarm` hands the stored SPIR-V (`vulkan`) to the driver of every hardware adapter;
    // a software one (CI's lavapipe) is skipped, and without `vulkan` nothing is stored.
    let warmed = kernel_cache::prewarm().unwrap();
    assert_eq!(warmed.failed, 0, "{warmed:?}");
    if cfg!(feature = "vulkan") && !gpu.is_software() {
        assert!(
            warmed.pipelines > 0 && !warmed.adapters.is_empty(),
            "{warmed:?}"
        );
    } else {
        assert_eq!(warmed.pipelines, 0, "{warmed:?}");
        assert!(warmed.adapters.is_empty(), "{warmed:?}");
    }

    let text = dir.join("not-a-bundle.db");
    std::fs::write(&text, "plain text").unwrap();
    match kernel_cache::import(&text) {
        Err(Error::Io { path, source }) => {
            assert!(path.ends_with("not-a-bundle.db"), "{path}");
            assert!(
                source.to_string().contains("kernel_cache::export"),
                "{source}"
            );
        }
        other => panic!("a text file imported: {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The refusal of each bad call, as text, with the backend's name taken out.
fn refusals<B: LayerOps>(b: &B) -> Vec<String> {
    use toto_fallback::backend::{Affine, Prepared, ScalerSpec, ScalerState};
    let dev = b.device();
    let t2 = |shape: [usize; 2]| Tensor::<2>::zeros(shape, dev);
    let t3 = |shape: [usize; 3]| Tensor::<3>::zeros(shape, dev);
    let text = |r: Result<(), Error>| match r {
        Ok(()) => "accepted".to_owned(),
        Err(e) => e.to_string().replace(b.name(), "BACKEND"),
    };
    let spec = ScalerSpec::toto2(2);
    let mut state = ScalerState::default();
    b.patch_scaler_extend(&mut state, t3([1, 1, 2]), t3([1, 1, 2]), spec)
        .expect("a first patch");
    let w = t2([3, 2]);
    let prepared = Prepared::default();
    vec![
        text(b.uniform([1 << 20, 1 << 20]).map(drop)),
        text(b.standard_normal([1 << 20, 1 << 20, 4]).map(drop)),
        text(b.categorical(t2([2, 0]), 4).map(drop)),
        text(
            b.student_t_mixture(
                MixtureParams::new(t2([2, 3]), t2([2, 3]), t2([2, 4]), t2([2, 3])),
                4,
            )
            .map(drop),
        ),
        text(b.patch_scaler(t3([1, 2, 4]), t3([1, 2, 6]), spec).map(drop)),
        text(
            b.patch_scaler_extend(&mut state, t3([2, 1, 2]), t3([2, 1, 2]), spec)
                .map(drop),
        ),
        text(
            b.linear(t2([4, 2]), Affine::new(&w, None, 1.0, &prepared))
                .map(drop),
        ),
    ]
}

/// The checks are the traits' provided methods, made once before any backend's implementation:
/// every backend refuses the same inputs with the same error.
#[test]
fn every_backend_refuses_the_same_inputs_alike() {
    let want = refusals(&NdArray::seeded(1));
    assert!(want.iter().all(|r| r != "accepted"), "{want:#?}");
    let portable = NdArray::seeded(1).with_kernels(toto_fallback::CpuKernels::Portable);
    assert_eq!(refusals(&portable), want);
    let cpu_pair = FallbackBackend::new(NdArray::seeded(1), NdArray::seeded(2));
    assert_eq!(refusals(&cpu_pair), want);
    if let Some(flex) = common::flex(1) {
        assert_eq!(refusals(&flex.backend), want);
    }
    if let Some(gpu) = common::wgpu(1) {
        assert_eq!(refusals(&gpu.backend), want);
    }
    if let Some(fallback) = common::fallback(1) {
        assert_eq!(refusals(&fallback.backend), want);
    }
}
