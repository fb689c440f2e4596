//! The distribution API on every backend. One property checker per distribution and parameter
//! grid: KS of samples against statrs' f64 CDF at n = 1e5, sample moments against `mean()` and
//! `variance()`, `log_prob` against statrs' `ln_pdf`, and the `cdf`/`quantile` identities.

use crate::common;

use burn::tensor::{Int, Tensor, TensorData};
use statrs::distribution::{
    Continuous, ContinuousCDF, Gamma as SGamma, Normal as SNormal, StudentsT,
};
use toto_fallback::distr::{
    Affine, Categorical, Cdf, Chi2, Distribution, Entropy, Gamma, MixtureSameFamily, Normal,
    QuantileKnots, StudentT,
};
use toto_fallback::{Backend, Error, Op, Placement};

use common::{assert_ks, assert_ks_with_atoms, moments, values};

const N: usize = 100_000;

fn full<B: Backend>(b: &B, v: f32) -> Tensor<1> {
    Tensor::<1>::full([1], v, b.device())
}

/// Samples one rank-1 (batch [1]) distribution `n` times as f64s.
fn draw<X: Distribution<1>>(x: &X, n: usize) -> Vec<f64> {
    let t: Tensor<2> = x.sample(&[n]).unwrap();
    assert_eq!(t.dims(), [n, 1]);
    values(t)
}

/// Sample moments against the distribution's own, where the sample moments converge: the mean
/// within 5 standard errors (needs a finite variance), the variance within 5 standard errors of
/// its estimator (needs a finite fourth moment, given as `kurtosis` = E[(X-μ)^4]/σ^4).
fn check_moments<X: Distribution<1>>(what: &str, x: &X, s: &[f64], kurtosis: Option<f64>) {
    let mean = values(x.mean())[0];
    let var = values(x.variance())[0];
    let (m, v) = moments(s);
    let n = s.len() as f64;
    if var.is_finite() {
        assert!(
            (m - mean).abs() < 5.0 * (var / n).sqrt(),
            "{what}: mean {m} vs {mean}"
        );
    }
    if let Some(k) = kurtosis {
        let se = var * ((k - 1.0) / n).sqrt();
        assert!(
            (v - var).abs() < 5.0 * se,
            "{what}: variance {v} vs {var} (se {se})"
        );
    }
}

// --- Student-T -------------------------------------------------------------------------------

const STUDENT_DFS: [f64; 7] = [0.5, 1.0, 2.1, 5.0, 30.0, 1e3, 1e6];

on_backends!(
    student_t_samples_pass_ks,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        for df in STUDENT_DFS {
            let (loc, scale) = (1.5, 2.0);
            let t =
                StudentT::new(&*b, full(&*b, df as f32), full(&*b, loc), full(&*b, scale)).unwrap();
            let s = draw(&t, N);
            let oracle = StudentsT::new(f64::from(loc), f64::from(scale), df).unwrap();
            let what = format!("StudentT(df = {df})");
            assert_ks(&what, &s, |x| oracle.cdf(x));
            // Kurtosis of t_ν is 3 + 6/(ν − 4) for ν > 4.
            let kurtosis = (df > 8.0).then(|| 3.0 + 6.0 / (df - 4.0));
            check_moments(&what, &t, &s, kurtosis);
        }
    }
);

// log_prob against statrs' ln_pdf for df in [0.1, 1e6] and |x| <= 1e3. The tolerance is 1e-5
// absolute, relative once |log p| > 1: f32 cannot hold -3.5e5 (df = 1e6, x = 1e3) to 1e-5.
on_backends!(
    student_t_log_prob_matches_statrs,
    [ndarray, wgpu, fallback],
    |b| {
        let xs = [-1e3, -37.5, -3.0, -0.5, 0.0, 0.25, 1.0, 4.0, 100.0, 1e3];
        for df in [0.1, 0.5, 1.0, 2.5, 7.0, 16.0, 30.0, 300.0, 3e3, 3e4, 1e6] {
            let t =
                StudentT::new(&*b, full(&*b, df as f32), full(&*b, 0.0), full(&*b, 1.0)).unwrap();
            let x = Tensor::<1>::from_floats(xs.map(|x| x as f32), b.device());
            let lp = values(t.log_prob(x).unwrap());
            let oracle = StudentsT::new(0.0, 1.0, df).unwrap();
            for (&x, &got) in xs.iter().zip(&lp) {
                let want = oracle.ln_pdf(x);
                let tol = 1e-5 * want.abs().max(1.0);
                assert!(
                    (got - want).abs() <= tol,
                    "df {df}, x {x}: log_prob {got}, statrs {want}"
                );
            }
        }
    }
);

// cdf against statrs: absolute error <= 2e-6 for df in [0.5, 1e6].
on_backends!(
    student_t_cdf_matches_statrs,
    [ndarray, wgpu, fallback],
    |b| {
        let xs: Vec<f32> = (-80..=80)
            .map(|i| i as f32 * 0.25)
            .chain([
                -1e4,
                -300.0,
                55.0,
                1e3,
                1e6,
                1e20,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ])
            .collect();
        for df in [0.5, 1.0, 1.7, 2.1, 3.0, 4.9, 5.0, 7.5, 30.0, 1e3, 1e6] {
            let (loc, scale) = (0.5f32, 1.5f32);
            let t =
                StudentT::new(&*b, full(&*b, df as f32), full(&*b, loc), full(&*b, scale)).unwrap();
            let cdf = values(
                t.cdf(Tensor::<1>::from_floats(xs.as_slice(), b.device()))
                    .unwrap(),
            );
            let oracle = StudentsT::new(f64::from(loc), f64::from(scale), df).unwrap();
            for (&x, &got) in xs.iter().zip(&cdf) {
                let want = oracle.cdf(f64::from(x));
                assert!(
                    (got - want).abs() <= 2e-6,
                    "df {df}: cdf({x}) = {got}, statrs {want}"
                );
            }
        }
    }
);

// quantile: relative error <= 1e-5 in t (absolute near 0) for p in [1e-6, 1 - 1e-6], checked
// through statrs' f64 cdf and pdf: |F(q) - p| <= 1e-5 · f(q) · max(|q|, 1), the first-order image
// of that tolerance. (statrs' own inverse_cdf is off by orders of magnitude in the far tail at
// df = 0.5, where F(t) ≈ 0.32/√|t| puts the 1e-6 quantile at -1.03e11, and ~1e-3 at df = 1e6.)
on_backends!(
    student_t_quantile_matches_statrs,
    [ndarray, wgpu, fallback],
    |b| {
        let ps: Vec<f32> = [
            1e-6,
            1e-5,
            1e-3,
            0.05,
            0.3,
            0.5,
            0.62,
            0.9,
            0.999,
            1.0 - 1e-5,
            1.0 - 1e-6,
        ]
        .into_iter()
        .map(|p: f64| p as f32)
        .collect();
        for df in [0.5, 1.0, 2.1, 5.0, 9.9, 10.0, 30.0, 1e3, 1e6] {
            let t =
                StudentT::new(&*b, full(&*b, df as f32), full(&*b, 0.0), full(&*b, 1.0)).unwrap();
            let q = values(
                t.quantile(Tensor::<1>::from_floats(ps.as_slice(), b.device()))
                    .unwrap(),
            );
            let oracle = StudentsT::new(0.0, 1.0, df).unwrap();
            for (&p, &q) in ps.iter().zip(&q) {
                let p = f64::from(p);
                let miss = (oracle.cdf(q) - p).abs();
                let tol = 1e-5 * oracle.pdf(q) * q.abs().max(1.0) + 1e-13;
                assert!(
                    miss <= tol,
                    "df {df}: quantile({p}) = {q}, F(q) - p = {miss:e} > {tol:e}"
                );
            }
            let edge = values(
                t.quantile(Tensor::<1>::from_floats([0.0, 1.0, -0.5], b.device()))
                    .unwrap(),
            );
            assert!(edge[0] == f64::NEG_INFINITY && edge[1] == f64::INFINITY && edge[2].is_nan());
        }
    }
);

// cdf is the integral of exp(log_prob): Simpson's rule on [-3, 4] for three df.
on_backends!(
    student_t_cdf_is_the_integral_of_the_density,
    [ndarray, wgpu],
    |b| {
        let (lo, hi, steps) = (-3.0f32, 4.0f32, 400);
        let h = (hi - lo) / steps as f32;
        let grid: Vec<f32> = (0..=steps).map(|i| lo + h * i as f32).collect();
        for df in [1.5f32, 3.0, 8.0] {
            let t = StudentT::new(&*b, full(&*b, df), full(&*b, 0.5), full(&*b, 0.8)).unwrap();
            let pdf: Vec<f64> = values(
                t.log_prob(Tensor::<1>::from_floats(grid.as_slice(), b.device()))
                    .unwrap(),
            )
            .into_iter()
            .map(f64::exp)
            .collect();
            let weight = |i: usize| {
                if i == 0 || i == steps {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                }
            };
            let integral =
                (0..=steps).map(|i| pdf[i] * weight(i)).sum::<f64>() * f64::from(h) / 3.0;
            let cdf = values(
                t.cdf(Tensor::<1>::from_floats([lo, hi], b.device()))
                    .unwrap(),
            );
            let diff = cdf[1] - cdf[0];
            assert!(
                (integral - diff).abs() < 1e-5,
                "df {df}: integral {integral} vs cdf difference {diff}"
            );
        }
    }
);

on_backends!(student_t_moments_follow_torch_rules, [ndarray, wgpu], |b| {
    let dev = b.device();
    let df = Tensor::<1>::from_floats([0.5, 1.0, 1.5, 2.0, 3.0], dev);
    let t = StudentT::new(
        &*b,
        df,
        Tensor::<1>::full([5], 2.0, dev),
        Tensor::<1>::full([5], 3.0, dev),
    )
    .unwrap();
    let mean = values(t.mean());
    assert!(
        mean[0].is_nan() && mean[1].is_nan() && mean[2] == 2.0 && mean[4] == 2.0,
        "{mean:?}"
    );
    let var = values(t.variance());
    assert!(var[0].is_nan() && var[1].is_nan(), "{var:?}");
    assert!(
        var[2] == f64::INFINITY && var[3] == f64::INFINITY,
        "{var:?}"
    );
    assert!(
        (var[4] - 27.0).abs() < 1e-4,
        "9 · 3 / (3 − 2) = 27: {var:?}"
    );
});

// Entropy against statrs (its StudentsT entropy is exact in f64), including large df where
// torch's digamma difference cancels.
on_backends!(entropies_match_statrs, [ndarray, wgpu], |b| {
    use statrs::statistics::Distribution as _;
    for df in [0.5, 1.0, 3.0, 16.0, 100.0, 1e4, 1e6] {
        let t = StudentT::new(&*b, full(&*b, df as f32), full(&*b, 0.0), full(&*b, 2.0)).unwrap();
        let got = values(t.entropy())[0];
        let want = StudentsT::new(0.0, 2.0, df).unwrap().entropy().unwrap();
        assert!(
            (got - want).abs() < 2e-5,
            "StudentT(df {df}) entropy {got}, statrs {want}"
        );
    }
    for alpha in [0.1, 1.0, 2.5, 100.0] {
        let g = Gamma::new(&*b, full(&*b, alpha as f32), full(&*b, 2.0)).unwrap();
        let got = values(g.entropy())[0];
        let want = SGamma::new(alpha, 2.0).unwrap().entropy().unwrap();
        // The formula (torch's) adds `α + lnΓ(α) + (1 - α)ψ(α)`, terms far larger than their
        // sum for large α (at α = 100: 100 + 359.1 - 455.4 = 3.7): two f32 roundings of each
        // term on top of the relative 1e-5.
        let terms = alpha
            + statrs::function::gamma::ln_gamma(alpha).abs()
            + ((1.0 - alpha) * statrs::function::gamma::digamma(alpha)).abs();
        let tol = 1e-5 * want.abs().max(1.0) + 2.0 * f64::from(f32::EPSILON) * terms;
        assert!(
            (got - want).abs() < tol,
            "Gamma({alpha}) entropy {got} vs {want} (tolerance {tol:.1e})"
        );
    }
    let n = Normal::new(&*b, full(&*b, 1.0), full(&*b, 0.5)).unwrap();
    let want = SNormal::new(1.0, 0.5).unwrap().entropy().unwrap();
    assert!((values(n.entropy())[0] - want).abs() < 1e-6);
});

// --- Gamma and Chi2 --------------------------------------------------------------------------

// Draws below the smallest normal f32 are clamped there (as torch does); for alpha = 0.01 that
// is ~42% of the mass, so the oracle is the clamped distribution: an atom at the clamp point.
on_backends!(
    gamma_samples_pass_ks,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        let rate = 2.0f64;
        for alpha in [0.01, 0.1, 0.5, 1.0, 2.5, 10.0, 100.0] {
            let g = Gamma::new(&*b, full(&*b, alpha as f32), full(&*b, rate as f32)).unwrap();
            let s = draw(&g, N);
            let oracle = SGamma::new(alpha, rate).unwrap();
            // The sampler's floor: `f32::MIN_POSITIVE` after the scaling (torch's `finfo.tiny`).
            let clamp = f64::from((f32::MIN_POSITIVE / rate as f32).max(f32::MIN_POSITIVE));
            // Every draw below the floor is the floor itself (an exact f32 on every device), so
            // the atom is matched exactly: a window around it would take a draw just above it
            // for the atom.
            let cdf = |x: f64| if x < clamp { 0.0 } else { oracle.cdf(x) };
            let left = |x: f64| if x <= clamp { 0.0 } else { oracle.cdf(x) };
            let what = format!("Gamma({alpha}, rate {rate})");
            assert_ks_with_atoms(&what, &s, &cdf, &left);
            // Kurtosis of Gamma(α) is 3 + 6/α.
            check_moments(&what, &g, &s, Some(3.0 + 6.0 / alpha));
        }
    }
);

on_backends!(
    gamma_and_chi2_log_prob_match_statrs,
    [ndarray, wgpu, fallback],
    |b| {
        let xs = [1e-6, 0.01, 0.5, 1.0, 3.0, 10.0, 80.0];
        for alpha in [0.1, 1.0, 2.5, 100.0] {
            let g = Gamma::new(&*b, full(&*b, alpha as f32), full(&*b, 0.5)).unwrap();
            let lp = values(
                g.log_prob(Tensor::<1>::from_floats(xs.map(|x| x as f32), b.device()))
                    .unwrap(),
            );
            let oracle = SGamma::new(alpha, 0.5).unwrap();
            for (&x, &got) in xs.iter().zip(&lp) {
                let want = oracle.ln_pdf(x);
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "Gamma({alpha}) at {x}: {got} vs {want}"
                );
            }
            // Chi2(2α) is Gamma(α, rate ½).
            let chi2 = Chi2::new(&*b, full(&*b, 2.0 * alpha as f32)).unwrap();
            let lp2 = values(
                chi2.log_prob(Tensor::<1>::from_floats(xs.map(|x| x as f32), b.device()))
                    .unwrap(),
            );
            for (a, c) in lp.iter().zip(&lp2) {
                assert!((a - c).abs() <= 1e-6 * a.abs().max(1.0));
            }
        }
        let g = Gamma::new(&*b, full(&*b, 2.0), full(&*b, 1.0)).unwrap();
        let lp = values(
            g.log_prob(Tensor::<1>::from_floats([-1.0], b.device()))
                .unwrap(),
        );
        assert_eq!(lp[0], f64::NEG_INFINITY, "outside the support");
    }
);

// Gamma cdf against statrs (abs 2e-6) and quantile: relative 1e-5 in x through statrs' cdf and
// pdf, |F(q) − p| <= 1e-5 · f(q) · q, or |F(q) − p| <= 1e-6 where that is tighter than the f32
// CDF itself can resolve (small α: F ~ x^α, so x's relative error is F's divided by α). Small p
// is skipped where the quantile is below f32's range.
on_backends!(gamma_cdf_and_quantile_match_statrs, [ndarray, wgpu], |b| {
    let rate = 2.0f64;
    for (alpha, p_min) in [
        (0.01, 0.5),
        (0.1, 1e-3),
        (0.5, 1e-6),
        (1.0, 1e-6),
        (2.5, 1e-6),
        (10.0, 1e-6),
        (100.0, 1e-6),
    ] {
        let g = Gamma::new(&*b, full(&*b, alpha as f32), full(&*b, rate as f32)).unwrap();
        let oracle = SGamma::new(alpha, rate).unwrap();
        let xs = [1e-3f32, 0.1, 0.5, 1.0, 3.0, 10.0, 60.0];
        let cdf = values(g.cdf(Tensor::<1>::from_floats(xs, b.device())).unwrap());
        for (&x, &got) in xs.iter().zip(&cdf) {
            let want = oracle.cdf(f64::from(x));
            assert!(
                (got - want).abs() <= 2e-6,
                "Gamma({alpha}) cdf({x}) = {got}, statrs {want}"
            );
        }
        let ps: Vec<f32> = [1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1.0 - 1e-6]
            .into_iter()
            .filter(|&p: &f64| p >= p_min)
            .map(|p| p as f32)
            .collect();
        let q = values(
            g.quantile(Tensor::<1>::from_floats(ps.as_slice(), b.device()))
                .unwrap(),
        );
        for (&p, &q) in ps.iter().zip(&q) {
            let miss = (oracle.cdf(q) - f64::from(p)).abs();
            let tol = (1e-5 * oracle.pdf(q) * q).max(1e-6);
            assert!(
                miss <= tol,
                "Gamma({alpha}) quantile({p}) = {q}: |F(q) - p| = {miss:e} > {tol:e}"
            );
        }
    }
});

on_backends!(
    chi2_samples_pass_ks,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        let chi2 = Chi2::new(&*b, full(&*b, 3.0)).unwrap();
        let s = draw(&chi2, N);
        let oracle = statrs::distribution::ChiSquared::new(3.0).unwrap();
        assert_ks("Chi2(3)", &s, |x| oracle.cdf(x));
        check_moments("Chi2(3)", &chi2, &s, Some(3.0 + 12.0 / 3.0));
    }
);

// --- Quantile tails against mpmath ------------------------------------------------------------

/// One row of `tests/fixtures/quantiles/reference.csv`, written by
/// `scripts/quantile_reference.py` (mpmath at 50 digits, at the f32 values of the parameter and
/// of p): the quantile of `distribution(parameter)` at `p`.
struct QuantileRow {
    parameter: f32,
    p: f32,
    quantile: f64,
}

/// The reference rows of one distribution ("Gamma", "Chi2" or "StudentT"). Quantiles below
/// f64's range (Gamma at small concentration and p, e.g. 5.7e-601) parse as 0; "inf" as ±inf.
fn quantile_reference(distribution: &str) -> Vec<QuantileRow> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/quantiles/reference.csv"
    );
    let text = std::fs::read_to_string(path).expect("the committed reference quantiles");
    let rows: Vec<QuantileRow> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("distribution,"))
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[0] == distribution)
        .map(|f| QuantileRow {
            parameter: f[1].parse().unwrap(),
            p: f[2].parse().unwrap(),
            quantile: f[3].parse().unwrap(),
        })
        .collect();
    assert!(rows.len() >= 45, "{distribution}: {} rows", rows.len());
    rows
}

/// Relative error of Gamma and Chi2 quantiles where the truth is a normal f32.
const GAMMA_QUANTILE_RTOL: f64 = 1e-5;

// Gamma (rate 1) and Chi2 quantiles against mpmath over p in [1e-6, 1 − 1e-6] and
// concentration in [0.01, 100] (Chi2 df in [0.2, 200]), every grid point in one tensor:
// relative error <= 1e-5 where the truth is a normal f32, and exactly the smallest normal f32
// divided by the rate where the truth is below it. Then p = 0, 1 and outside [0, 1].
on_backends!(
    gamma_and_chi2_quantiles_match_mpmath,
    [ndarray, wgpu, fallback],
    |b| {
        for (name, rate) in [("Gamma", 1.0f32), ("Chi2", 0.5)] {
            let rows = quantile_reference(name);
            let n = rows.len();
            let params: Vec<f32> = rows.iter().map(|r| r.parameter).collect();
            let ps: Vec<f32> = rows.iter().map(|r| r.p).collect();
            let param = Tensor::<1>::from_floats(params.as_slice(), b.device());
            let p = Tensor::<1>::from_floats(ps.as_slice(), b.device());
            let got = if name == "Gamma" {
                let g = Gamma::new(&*b, param, Tensor::<1>::ones([n], b.device())).unwrap();
                values(g.quantile(p).unwrap())
            } else {
                values(Chi2::new(&*b, param).unwrap().quantile(p).unwrap())
            };
            let floor = f64::from((f32::MIN_POSITIVE / rate).max(f32::MIN_POSITIVE));
            let mut worst = (0.0f64, String::new());
            let mut bad = Vec::new();
            for (r, &q) in rows.iter().zip(&got) {
                let what = format!(
                    "{name}({}) at p = {}: {q:e}, mpmath {:e}",
                    r.parameter, r.p, r.quantile
                );
                if r.quantile < floor {
                    if q != floor {
                        bad.push(what);
                    }
                    continue;
                }
                let err = (q - r.quantile).abs() / r.quantile;
                if err > worst.0 {
                    worst = (err, what.clone());
                }
                if err.is_nan() || err > GAMMA_QUANTILE_RTOL {
                    bad.push(format!("{what} (relative {err:.1e})"));
                }
            }
            assert!(
                bad.is_empty(),
                "{} misses, worst {worst:?}:\n{}",
                bad.len(),
                bad.join("\n")
            );
        }
        let g = Gamma::new(&*b, full(&*b, 2.5), full(&*b, 2.0)).unwrap();
        let edge = values(
            g.quantile(Tensor::<1>::from_floats([0.0, 1.0, -0.5, 1.5], b.device()))
                .unwrap(),
        );
        assert!(
            edge[0] == 0.0 && edge[1] == f64::INFINITY && edge[2].is_nan() && edge[3].is_nan(),
            "{edge:?}"
        );
    }
);

/// Relative error of the Student-T quantile against mpmath for p in [1e-6, 1 − 1e-6]:
/// `STUDENT_QUANTILE_RTOL · max(1, 1/ν)`.
const STUDENT_QUANTILE_RTOL: f64 = 1e-5;

// Student-T quantiles against mpmath for df in [0.1, 1e6] and p in [1e-6, 1 − 1e-6], every
// grid point in one tensor: within [`STUDENT_QUANTILE_RTOL`], exactly ±inf where the truth
// exceeds f32::MAX, exactly 0 at p = ½.
on_backends!(
    student_t_quantiles_match_mpmath,
    [ndarray, wgpu, fallback],
    |b| {
        let rows = quantile_reference("StudentT");
        let n = rows.len();
        let dfs: Vec<f32> = rows.iter().map(|r| r.parameter).collect();
        let ps: Vec<f32> = rows.iter().map(|r| r.p).collect();
        let t = StudentT::new(
            &*b,
            Tensor::<1>::from_floats(dfs.as_slice(), b.device()),
            Tensor::<1>::zeros([n], b.device()),
            Tensor::<1>::ones([n], b.device()),
        )
        .unwrap();
        let got = values(
            t.quantile(Tensor::<1>::from_floats(ps.as_slice(), b.device()))
                .unwrap(),
        );
        let mut worst = (0.0f64, String::new());
        let mut bad = Vec::new();
        for (r, &q) in rows.iter().zip(&got) {
            let what = format!(
                "StudentT({}) at p = {}: {q:e}, mpmath {:e}",
                r.parameter, r.p, r.quantile
            );
            if r.quantile.is_infinite() || r.quantile == 0.0 {
                if q != r.quantile {
                    bad.push(what);
                }
                continue;
            }
            let err = (q - r.quantile).abs() / r.quantile.abs();
            let tol = STUDENT_QUANTILE_RTOL * (1.0 / f64::from(r.parameter)).max(1.0);
            if err / tol > worst.0 {
                worst = (err / tol, what.clone());
            }
            if err.is_nan() || err > tol {
                bad.push(format!("{what} (relative {err:.1e} > {tol:.0e})"));
            }
        }
        assert!(
            bad.is_empty(),
            "{} misses, worst/tol {worst:?}:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
);

// --- Normal ----------------------------------------------------------------------------------

on_backends!(normal_samples_pass_ks, [ndarray, wgpu, fallback], |b| {
    let n = Normal::new(&*b, full(&*b, -3.0), full(&*b, 0.25)).unwrap();
    let s = draw(&n, N);
    let oracle = SNormal::new(-3.0, 0.25).unwrap();
    assert_ks("Normal(-3, 0.25)", &s, |x| oracle.cdf(x));
    check_moments("Normal(-3, 0.25)", &n, &s, Some(3.0));
});

// cdf against statrs (abs 2e-6), quantile against statrs (relative 1e-5 for p in
// [1e-6, 1 - 1e-6]), and quantile(cdf(x)) = x.
on_backends!(
    normal_cdf_and_quantile_match_statrs,
    [ndarray, wgpu, fallback],
    |b| {
        let n = Normal::new(&*b, full(&*b, 0.0), full(&*b, 1.0)).unwrap();
        let oracle = SNormal::new(0.0, 1.0).unwrap();
        let xs: Vec<f32> = (-60..=60).map(|i| i as f32 * 0.1).collect();
        let cdf = values(
            n.cdf(Tensor::<1>::from_floats(xs.as_slice(), b.device()))
                .unwrap(),
        );
        for (&x, &got) in xs.iter().zip(&cdf) {
            let want = oracle.cdf(f64::from(x));
            assert!(
                (got - want).abs() <= 2e-6,
                "cdf({x}) = {got}, statrs {want}"
            );
        }
        let ps: Vec<f32> = [
            1e-6,
            1e-5,
            1e-3,
            0.02,
            0.3,
            0.5,
            0.7,
            0.98,
            0.999,
            1.0 - 1e-5,
            1.0 - 1e-6,
        ]
        .into_iter()
        .map(|p: f64| p as f32)
        .collect();
        let q = values(
            n.quantile(Tensor::<1>::from_floats(ps.as_slice(), b.device()))
                .unwrap(),
        );
        for (&p, &got) in ps.iter().zip(&q) {
            let want = oracle.inverse_cdf(f64::from(p)); // the quantile of the f32 value of p
            let tol = 1e-5 * want.abs().max(1e-3);
            assert!(
                (got - want).abs() <= tol,
                "quantile({p}) = {got}, statrs {want}"
            );
        }
        let x = Tensor::<1>::from_floats([-4.0, -1.0, 0.3, 2.0, 3.5], b.device());
        let back = values(n.quantile(n.cdf(x.clone()).unwrap()).unwrap());
        for (got, want) in back.iter().zip(values(x)) {
            assert!(
                (got - want).abs() < 2e-3 * want.abs().max(1.0),
                "quantile(cdf({want})) = {got}"
            );
        }
        let edge = values(
            n.quantile(Tensor::<1>::from_floats([0.0, 1.0, -0.1, 1.1], b.device()))
                .unwrap(),
        );
        assert!(
            edge[0] == f64::NEG_INFINITY && edge[1] == f64::INFINITY,
            "{edge:?}"
        );
        assert!(edge[2].is_nan() && edge[3].is_nan(), "{edge:?}");
    }
);

// cdf is the integral of exp(log_prob): Simpson's rule between two points.
on_backends!(
    normal_cdf_is_the_integral_of_the_density,
    [ndarray, wgpu],
    |b| {
        let n = Normal::new(&*b, full(&*b, 0.5), full(&*b, 1.5)).unwrap();
        let (lo, hi, steps) = (-2.0f32, 3.0f32, 200);
        let h = (hi - lo) / steps as f32;
        let grid: Vec<f32> = (0..=steps).map(|i| lo + h * i as f32).collect();
        let pdf: Vec<f64> = values(
            n.log_prob(Tensor::<1>::from_floats(grid.as_slice(), b.device()))
                .unwrap(),
        )
        .into_iter()
        .map(f64::exp)
        .collect();
        let simpson: f64 = (0..=steps)
            .map(|i| {
                pdf[i]
                    * if i == 0 || i == steps {
                        1.0
                    } else if i % 2 == 1 {
                        4.0
                    } else {
                        2.0
                    }
            })
            .sum::<f64>()
            * f64::from(h)
            / 3.0;
        let cdf = values(
            n.cdf(Tensor::<1>::from_floats([lo, hi], b.device()))
                .unwrap(),
        );
        assert!(
            (simpson - (cdf[1] - cdf[0])).abs() < 1e-5,
            "{simpson} vs {}",
            cdf[1] - cdf[0]
        );
    }
);

// --- Affine ----------------------------------------------------------------------------------

on_backends!(
    affine_transforms_every_method,
    [ndarray, wgpu, fallback],
    |b| {
        let dev = b.device();
        let base = StudentT::new(&*b, full(&*b, 4.0), full(&*b, 0.0), full(&*b, 1.0)).unwrap();
        let y = Affine::new(base, full(&*b, 10.0), full(&*b, 3.0)).unwrap();
        let oracle = StudentsT::new(10.0, 3.0, 4.0).unwrap();
        let xs = [-5.0f32, 7.0, 10.0, 12.5, 40.0];
        let lp = values(y.log_prob(Tensor::<1>::from_floats(xs, dev)).unwrap());
        for (&x, &got) in xs.iter().zip(&lp) {
            let want = oracle.ln_pdf(f64::from(x));
            assert!(
                (got - want).abs() < 1e-5,
                "log_prob({x}) = {got}, statrs {want}"
            );
        }
        assert_eq!(values(y.mean()), [10.0]);
        assert!((values(y.variance())[0] - 9.0 * 2.0).abs() < 1e-5);
        if b.supports(Op::StandardGamma) {
            let s = draw(&y, N);
            assert_ks("10 + 3 t_4", &s, |x| oracle.cdf(x));
        }

        let z = Affine::new(
            Normal::new(&*b, full(&*b, 0.0), full(&*b, 1.0)).unwrap(),
            full(&*b, 1.0),
            full(&*b, -2.0),
        )
        .unwrap();
        let q = values(z.quantile(Tensor::<1>::from_floats([0.9], dev)).unwrap())[0];
        let want = 1.0 - 2.0 * SNormal::new(0.0, 1.0).unwrap().inverse_cdf(0.1); // mirrored
        assert!(
            (q - want).abs() < 1e-5,
            "negative scale quantile {q} vs {want}"
        );
        let c = values(z.cdf(Tensor::<1>::from_floats([q as f32], dev)).unwrap())[0];
        assert!((c - 0.9).abs() < 1e-5, "cdf(quantile(0.9)) = {c}");
    }
);

// --- Categorical and mixtures ----------------------------------------------------------------

on_backends!(
    categorical_frequencies_match_probs,
    [ndarray, wgpu, fallback],
    |b| {
        let probs = [0.1f32, 0.2, 0.3, 0.4];
        let cat =
            Categorical::from_probs(&*b, Tensor::<2>::from_floats([probs], b.device())).unwrap();
        let k: Tensor<2, Int> = cat.sample(&[N]).unwrap();
        let k: Vec<i64> = k.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        // Pearson's chi-squared with 3 degrees of freedom: the 0.999 quantile is 16.27.
        let chi2: f64 = probs
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let observed = k.iter().filter(|&&x| x == i as i64).count() as f64;
                let expected = f64::from(p) * N as f64;
                (observed - expected).powi(2) / expected
            })
            .sum();
        assert!(chi2 < 16.27, "chi-squared {chi2}");
        let h: Tensor<1> = cat.entropy().unwrap();
        let want: f64 = probs
            .iter()
            .map(|&p| -f64::from(p) * f64::from(p).ln())
            .sum();
        assert!((values(h)[0] - want).abs() < 1e-6, "entropy");
        let index = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64], [1]), b.device());
        let lp = values(cat.log_prob(index).unwrap());
        assert!((lp[0] - 0.4f64.ln()).abs() < 1e-6);
    }
);

/// A Toto-shaped Student-T mixture, its weights `[batch][K]` and component parameters
/// `[K][df, loc, scale]`.
type TestMixture<B> = (
    MixtureSameFamily<B, StudentT<B, 2>, 1, 2>,
    [[f64; 3]; 2],
    [[f64; 3]; 3],
);

/// A Toto-shaped mixture over `K = 3` Student-T components with batch shape [2].
fn mixture<B: Backend>(b: &B) -> TestMixture<B> {
    let w = [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]];
    // Per component: df, loc, scale (the same for both batch entries here).
    let p = [[2.5, -4.0, 1.0], [6.0, 0.0, 0.5], [30.0, 3.0, 2.0]];
    let dev = b.device();
    let t2 = |f: fn(&[f64; 3]) -> f64| {
        let row: Vec<f32> = p.iter().map(|c| f(c) as f32).collect();
        Tensor::<2>::from_floats([[row[0], row[1], row[2]], [row[0], row[1], row[2]]], dev)
    };
    let comp = StudentT::new(b, t2(|c| c[0]), t2(|c| c[1]), t2(|c| c[2])).unwrap();
    let wf = w.map(|r| r.map(|x| x as f32));
    let mixing = Categorical::from_probs(b, Tensor::<2>::from_floats(wf, dev)).unwrap();
    (MixtureSameFamily::new(mixing, comp).unwrap(), w, p)
}

on_backends!(
    mixture_samples_pass_ks_and_draw_once_per_output,
    [ndarray, flex, wgpu, fallback, forced],
    |b| {
        let (mix, w, p) = mixture(&*b);
        let x: Tensor<2> = mix.sample(&[N]).unwrap(); // [N, 2]
        let x = values(x);
        for (batch, weights) in w.iter().enumerate() {
            let column: Vec<f64> = x.iter().skip(batch).step_by(2).copied().collect();
            let comps: Vec<StudentsT> = p
                .iter()
                .map(|c| StudentsT::new(c[1], c[2], c[0]).unwrap())
                .collect();
            let cdf = |v: f64| {
                comps
                    .iter()
                    .zip(weights)
                    .map(|(c, wk)| wk * c.cdf(v))
                    .sum::<f64>()
            };
            assert_ks(&format!("mixture, batch {batch}"), &column, cdf);
            let mean = values(mix.mean())[batch];
            let want: f64 = p.iter().zip(weights).map(|(c, wk)| wk * c[1]).sum();
            assert!((mean - want).abs() < 1e-5, "mixture mean {mean} vs {want}");
            let (m, _) = moments(&column);
            let var = values(mix.variance())[batch];
            assert!(
                (m - mean).abs() < 5.0 * (var / N as f64).sqrt(),
                "sample mean {m} vs {mean}"
            );
        }
    }
);

#[test]
fn mixture_sampling_is_one_fused_op_and_forwards_nothing() {
    let Some(b) = common::fallback(11) else {
        return;
    };
    let (mix, _, _) = mixture(&*b);
    let _: Tensor<2> = mix.sample(&[1000]).unwrap();
    let report = b.report();
    let fused = report.op(Op::StudentTMixture).native;
    assert_eq!(
        (fused.calls, fused.elements),
        (1, 2000),
        "one fused call, one draw per output (not K per output)"
    );
    assert_eq!(report.op(Op::StandardT).native.calls, 0, "{report}");
    assert_eq!(report.op(Op::Categorical).native.calls, 0, "{report}");
    // Nothing leaves the GPU: no forwarded op, no byte read back.
    assert_eq!(report.total(Placement::Forwarded).calls, 0, "{report}");
    assert_eq!(report.total(Placement::Native).bytes_to_cpu, 0, "{report}");
}

#[test]
fn mixture_sampling_forced_onto_the_cpu_forwards_only_the_student_t_draw() {
    let Some(b) = common::forced(12) else {
        return;
    };
    let (mix, _, _) = mixture(&*b);
    let _: Tensor<2> = mix.sample(&[1000]).unwrap();
    let report = b.report();
    // The fused op is composed on the fallback: the component pick stays on the GPU and only
    // the chosen degrees of freedom cross, 4 bytes a draw each way.
    let t = report.op(Op::StandardT).forwarded;
    assert_eq!(
        (t.calls, t.elements, t.bytes_to_cpu, t.bytes_to_gpu),
        (1, 2000, 4 * 2000, 4 * 2000),
        "{report}"
    );
    assert_eq!(report.op(Op::Categorical).native.calls, 1, "{report}");
    assert_eq!(report.total(Placement::Forwarded).calls, 1, "{report}");
    assert_eq!(
        report.op(Op::StudentTMixture).forwarded.calls,
        0,
        "{report}"
    );
}

#[test]
fn a_gpu_without_categorical_forwards_the_whole_mixture_draw() {
    let Some(b) = common::forced_only(13, [Op::StudentTMixture, Op::Categorical]) else {
        return;
    };
    let (mix, _, _) = mixture(&*b);
    let _: Tensor<2> = mix.sample(&[1000]).unwrap();
    let report = b.report();
    let fused = report.op(Op::StudentTMixture).forwarded;
    // Four [2, 3] parameter tensors to the CPU, 2000 draws back.
    assert_eq!(
        (
            fused.calls,
            fused.elements,
            fused.bytes_to_cpu,
            fused.bytes_to_gpu
        ),
        (1, 2000, 4 * 4 * 6, 4 * 2000),
        "{report}"
    );
    assert_eq!(report.total(Placement::Forwarded).calls, 1, "{report}");
}

on_backends!(
    mixture_log_prob_and_cdf_match_the_weighted_sum,
    [ndarray, wgpu, fallback],
    |b| {
        let (mix, w, p) = mixture(&*b);
        let xs = [-6.0f32, -1.0, 0.2, 2.0, 9.0];
        // [5, 2]: each x against both batch entries.
        let x = Tensor::<2>::from_floats(xs.map(|v| [v, v]), b.device());
        let lp = values(mix.log_prob(x).unwrap());
        for (i, &x) in xs.iter().enumerate() {
            for batch in 0..2 {
                let want: f64 = p
                    .iter()
                    .zip(&w[batch])
                    .map(|(c, wk)| wk * StudentsT::new(c[1], c[2], c[0]).unwrap().pdf(f64::from(x)))
                    .sum::<f64>()
                    .ln();
                let got = lp[2 * i + batch];
                assert!(
                    (got - want).abs() < 1e-5 * want.abs().max(1.0),
                    "log_prob({x}) = {got} vs {want}"
                );
            }
        }
    }
);

on_backends!(normal_mixture_cdf_matches_statrs, [ndarray, wgpu], |b| {
    let dev = b.device();
    let mixing =
        Categorical::from_probs(&*b, Tensor::<2>::from_floats([[0.25, 0.75]], dev)).unwrap();
    let comp = Normal::new(
        &*b,
        Tensor::<2>::from_floats([[-2.0, 2.0]], dev),
        Tensor::<2>::from_floats([[1.0, 0.5]], dev),
    )
    .unwrap();
    let mix: MixtureSameFamily<_, _, 1, 2> = MixtureSameFamily::new(mixing, comp).unwrap();
    let xs = [-3.0f32, -2.0, 0.0, 1.5, 2.0, 4.0];
    let cdf = values(mix.cdf(Tensor::<1>::from_floats(xs, dev)).unwrap());
    for (&x, &got) in xs.iter().zip(&cdf) {
        let x = f64::from(x);
        let want = 0.25 * SNormal::new(-2.0, 1.0).unwrap().cdf(x)
            + 0.75 * SNormal::new(2.0, 0.5).unwrap().cdf(x);
        assert!(
            (got - want).abs() < 2e-6,
            "mixture cdf({x}) = {got} vs {want}"
        );
    }
    // The quantile q solves F(q) = p to |F(q) - p| <= 1e-5, F from statrs.
    let ps = [1e-5f32, 0.01, 0.2, 0.25, 0.5, 0.9, 0.999, 1.0 - 1e-5];
    let q = values(mix.quantile(Tensor::<1>::from_floats(ps, dev)).unwrap());
    for (&p, &q) in ps.iter().zip(&q) {
        let f = 0.25 * SNormal::new(-2.0, 1.0).unwrap().cdf(q)
            + 0.75 * SNormal::new(2.0, 0.5).unwrap().cdf(q);
        assert!(
            (f - f64::from(p)).abs() <= 1e-5,
            "quantile({p}) = {q}: F(q) = {f}"
        );
    }
    let edge = values(
        mix.quantile(Tensor::<1>::from_floats([0.0, 1.0, 1.5], dev))
            .unwrap(),
    );
    assert!(
        edge[0] == f64::NEG_INFINITY && edge[1] == f64::INFINITY && edge[2].is_nan(),
        "{edge:?}"
    );
});

// --- Argument checks -------------------------------------------------------------------------

#[test]
fn constructors_reject_bad_shapes_devices_and_ranks() {
    let cpu = toto_fallback::NdArray::seeded(1);
    let dev = cpu.device();
    let err = StudentT::new(
        &cpu,
        Tensor::<1>::ones([3], dev),
        Tensor::<1>::ones([4], dev),
        Tensor::<1>::ones([1], dev),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ParamShape {
                dist: "StudentT",
                param: "loc",
                ..
            }
        ),
        "{err}"
    );

    let t = StudentT::new(
        &cpu,
        Tensor::<1>::ones([3], dev),
        Tensor::<1>::zeros([1], dev),
        Tensor::<1>::ones([1], dev),
    )
    .unwrap();
    assert_eq!(t.batch_shape(), [3]);
    let err = t.sample::<3>(&[10]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rank {
                needed: 2,
                asked: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = t.log_prob(Tensor::<2>::ones([5, 4], dev)).unwrap_err();
    assert!(matches!(err, Error::ValueShape { .. }), "{err}");

    let mixing = Categorical::from_probs(&cpu, Tensor::<2>::ones([2, 4], dev)).unwrap();
    let comp = Normal::new(
        &cpu,
        Tensor::<2>::zeros([2, 3], dev),
        Tensor::<2>::ones([2, 3], dev),
    )
    .unwrap();
    let err = MixtureSameFamily::<_, _, 1, 2>::new(mixing, comp).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ParamShape {
                param: "mixing",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn parameters_on_another_device_are_rejected() {
    let Some(gpu) = common::wgpu(2) else { return };
    let cpu = toto_fallback::NdArray::seeded(2);
    let err = Normal::new(
        &*gpu,
        Tensor::<1>::zeros([2], gpu.device()),
        Tensor::<1>::ones([2], cpu.device()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::DeviceMismatch { param: "scale", .. }),
        "{err}"
    );
}

#[test]
fn validate_reads_values_and_names_the_bad_one() {
    let cpu = toto_fallback::NdArray::seeded(1);
    let dev = cpu.device();
    let t = StudentT::new(
        &cpu,
        Tensor::<1>::from_floats([3.0, 4.0], dev),
        Tensor::<1>::zeros([2], dev),
        Tensor::<1>::from_floats([1.0, -2.0], dev),
    )
    .unwrap();
    let err = t.validate().unwrap_err();
    assert!(
        matches!(
            err,
            Error::ParamValue {
                param: "scale",
                index: 1,
                ..
            }
        ),
        "{err}"
    );
    let g = Gamma::new(
        &cpu,
        Tensor::<1>::from_floats([f32::NAN], dev),
        Tensor::<1>::ones([1], dev),
    )
    .unwrap();
    assert!(matches!(
        g.validate().unwrap_err(),
        Error::ParamValue {
            param: "concentration",
            ..
        }
    ));
    let n = Normal::new(
        &cpu,
        Tensor::<1>::zeros([1], dev),
        Tensor::<1>::ones([1], dev),
    )
    .unwrap();
    n.validate().unwrap();
}

// A categorical row with no finite logit is no distribution: torch refuses it at construction
// (`Categorical(logits=[-inf, -inf])` fails its Simplex check); here `validate()` refuses it on
// every backend, naming the row's first element, and the unvalidated draw is the documented
// last category, alike on every backend. Zero weights (`from_probs`) are the same row.
on_backends!(
    categorical_without_a_finite_logit_is_refused_alike,
    [ndarray, flex, wgpu, fallback],
    |b| {
        let b = &*b;
        let ninf = f32::NEG_INFINITY;
        let logits = Tensor::<2>::from_floats([[0.0, 1.0, 2.0], [ninf, ninf, ninf]], b.device());
        let cat = Categorical::from_logits(b, logits).unwrap();
        match cat.validate().unwrap_err() {
            Error::ParamValue {
                dist: "Categorical",
                param: "logits",
                index: 3,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        let draws: Tensor<2, Int> = cat.sample(&[64]).unwrap();
        let draws = draws
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert!(
            draws.iter().skip(1).step_by(2).all(|&k| k == 2),
            "{draws:?}"
        );
        let probs = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 0.0]], b.device());
        let err = Categorical::from_probs(b, probs)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(matches!(err, Error::ParamValue { index: 2, .. }), "{err}");
        let plus = Tensor::<2>::from_floats([[0.0, f32::INFINITY]], b.device());
        let err = Categorical::from_logits(b, plus)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(matches!(err, Error::ParamValue { index: 1, .. }), "{err}");
        let fine = Tensor::<2>::from_floats([[0.0, ninf], [ninf, 3.0]], b.device());
        Categorical::from_logits(b, fine)
            .unwrap()
            .validate()
            .unwrap();
    }
);

// Toto's head end to end: loc + scale · MixtureSameFamily(StudentT), its quantiles solving
// F(q) = p to 1e-5 with F from statrs.
on_backends!(affine_student_t_mixture_quantile, [ndarray, wgpu], |b| {
    let (mix, w, p) = mixture(&*b);
    let y = Affine::new(mix, full(&*b, 100.0), full(&*b, 4.0)).unwrap();
    let ps = [0.001f32, 0.1, 0.5, 0.9, 0.999];
    let x = Tensor::<2>::from_floats(ps.map(|v| [v, v]), b.device()); // [5, 2]
    let q = values(y.quantile(x).unwrap());
    for (i, &pi) in ps.iter().enumerate() {
        for batch in 0..2 {
            let qi = q[2 * i + batch];
            let f: f64 = p
                .iter()
                .zip(&w[batch])
                .map(|(c, wk)| {
                    wk * StudentsT::new(100.0 + 4.0 * c[1], 4.0 * c[2], c[0])
                        .unwrap()
                        .cdf(qi)
                })
                .sum();
            assert!(
                (f - f64::from(pi)).abs() <= 1e-5,
                "batch {batch}: quantile({pi}) = {qi}, F = {f}"
            );
        }
    }
});

// --- QuantileKnots -------------------------------------------------------------------------------

/// The quantile function of knots `(levels, q)` with linear tails, in f64: the oracle of the
/// tests below (the definition of [`QuantileKnots`], written independently).
fn knots_quantile(levels: &[f64], q: &[f64], p: f64) -> f64 {
    let n = levels.len();
    let lo = q[0] - levels[0] * (q[1] - q[0]) / (levels[1] - levels[0]);
    let hi =
        q[n - 1] + (1.0 - levels[n - 1]) * (q[n - 1] - q[n - 2]) / (levels[n - 1] - levels[n - 2]);
    let t: Vec<f64> = std::iter::once(0.0)
        .chain(levels.iter().copied())
        .chain([1.0])
        .collect();
    let k: Vec<f64> = std::iter::once(lo)
        .chain(q.iter().copied())
        .chain([hi])
        .collect();
    let j = (0..t.len() - 1).rev().find(|&j| p >= t[j]).unwrap_or(0);
    k[j] + (p - t[j]) * (k[j + 1] - k[j]) / (t[j + 1] - t[j])
}

/// Toto 2.0's nine deciles of three rows (an asymmetric one, one with a flat segment, one far
/// from 0 with a small spread).
fn deciles<B: Backend>(b: &B) -> (QuantileKnots<B, 1, 2>, [[f64; 9]; 3]) {
    let rows = [
        [-3.0, -1.5, -0.7, -0.2, 0.1, 0.5, 1.2, 2.0, 4.0],
        [10.0, 11.0, 11.0, 11.0, 12.0, 12.5, 13.0, 13.5, 15.0],
        [
            9998.0, 9998.5, 9999.0, 9999.5, 10000.0, 10000.25, 10000.5, 10001.0, 10002.0,
        ],
    ];
    let values: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    let t = Tensor::<2>::from_data(TensorData::new(values, [3, 9]), b.device());
    let levels = toto_fallback::toto2::LEVELS;
    (QuantileKnots::new(b, &levels, t).unwrap(), rows)
}

on_backends!(
    quantile_knots_interpolate_and_invert,
    [ndarray, wgpu],
    |b| {
        let (d, rows) = deciles(&*b);
        let levels = toto_fallback::toto2::LEVELS;
        let ps = [0.0, 0.03, 0.1, 0.15, 0.5, 0.77, 0.9, 0.95, 1.0];
        let p = Tensor::<2>::from_data(
            TensorData::new(
                ps.iter().flat_map(|&p| [p as f32; 3]).collect::<Vec<_>>(),
                [9, 3],
            ),
            b.device(),
        );
        let q = values(d.quantile(p).unwrap());
        for (i, &pi) in ps.iter().enumerate() {
            for (r, row) in rows.iter().enumerate() {
                let want = knots_quantile(&levels, row, f64::from(pi as f32));
                let got = q[i * 3 + r];
                assert!(
                    (got - want).abs() < 2e-5 * want.abs().max(1.0),
                    "p {pi}, row {r}: {got} vs {want}"
                );
            }
        }
        // cdf ∘ quantile = identity off the flat segment, and the cdf's limits.
        let x = Tensor::<2>::from_data(
            TensorData::new(q.iter().map(|&x| x as f32).collect::<Vec<_>>(), [9, 3]),
            b.device(),
        );
        let back = values(d.cdf(x).unwrap());
        for (i, &pi) in ps.iter().enumerate() {
            let got = back[i * 3];
            assert!(
                (got - pi).abs() < 1e-5,
                "row 0: cdf(quantile({pi})) = {got}"
            );
        }
        let far = Tensor::<1>::from_floats([-1e6, 1e6, 1e6], b.device());
        assert_eq!(values(d.cdf(far.clone()).unwrap()), [0.0, 1.0, 1.0]);
        // Outside the support the density is 0.
        assert!(
            values(d.log_prob(far).unwrap())
                .iter()
                .all(|&l| l == f64::NEG_INFINITY)
        );
        // Levels out of [0, 1] are NaN.
        let bad = Tensor::<1>::from_floats([1.5, -0.1, f32::NAN], b.device());
        assert!(values(d.quantile(bad).unwrap()).iter().all(|x| x.is_nan()));
    }
);

on_backends!(quantile_knots_moments_and_samples, [ndarray, wgpu], |b| {
    let (d, rows) = deciles(&*b);
    let levels = toto_fallback::toto2::LEVELS;
    // Mean and variance by integrating the oracle's quantile function (midpoint rule, 2e5
    // points: error far below the tolerance).
    let m = 200_000;
    let mean = values(d.mean());
    let var = values(d.variance());
    for (r, row) in rows.iter().enumerate() {
        // Centred on the median knot so that row 2 (around 10⁴) keeps its digits.
        let (mut s1, mut s2) = (0.0, 0.0);
        for i in 0..m {
            let x = knots_quantile(&levels, row, (i as f64 + 0.5) / m as f64) - row[4];
            s1 += x;
            s2 += x * x;
        }
        let (want_mean, want_var) = (
            row[4] + s1 / m as f64,
            s2 / m as f64 - (s1 / m as f64).powi(2),
        );
        assert!(
            (mean[r] - want_mean).abs() < 1e-4 * want_mean.abs().max(1.0),
            "row {r}: mean {} vs {want_mean}",
            mean[r]
        );
        assert!(
            (var[r] - want_var).abs() < 1e-3 * want_var,
            "row {r}: var {} vs {want_var}",
            var[r]
        );
    }
    // Inverse-transform draws pass KS against the knots' cdf (row 0: continuous).
    let x: Tensor<2> = d.sample(&[100_000]).unwrap();
    let x = values(x.narrow(1, 0, 1));
    let row = rows[0];
    let cdf = |v: f64| {
        // Bisection of the oracle's quantile function.
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if knots_quantile(&levels, &row, mid) <= v {
                lo = mid
            } else {
                hi = mid
            }
        }
        0.5 * (lo + hi)
    };
    assert_ks("QuantileKnots sample, row 0", &x, cdf);
});

#[test]
fn quantile_knots_weighted_loss_is_gluonts() {
    // gluonts' MeanWeightedSumQuantileLoss, by hand for two levels τ = 0.25, 0.75, knots
    // (1, 3) and (0, 2), targets 2 and -1: level 0.25: 2(|(2-1)(0-0.25)| + |(-1-0)(1-0.25)|)
    // = 2(0.25 + 0.75) = 2; level 0.75: 2(|(2-3)(1-0.75)| + |(-1-2)(1-0.75)|) = 2(0.25 + 0.75)
    // = 2; Σ|y| = 3; mean over levels of 2/3 = 2/3.
    let cpu = toto_fallback::NdArray::seeded(0);
    let dev = cpu.device();
    let knots = Tensor::<2>::from_floats([[1.0, 3.0], [0.0, 2.0]], dev);
    let d: QuantileKnots<_, 1, 2> = QuantileKnots::new(&cpu, &[0.25, 0.75], knots).unwrap();
    let y = Tensor::<1>::from_floats([2.0, -1.0], dev);
    let loss: f32 = d.weighted_quantile_loss(y).unwrap().into_scalar();
    assert!((loss - 2.0 / 3.0).abs() < 1e-6, "{loss}");
    // Bad levels and shapes are errors.
    let two = Tensor::<2>::zeros([1, 2], dev);
    for levels in [&[0.5][..], &[0.5, 0.5], &[0.0, 0.5], &[0.3, 1.2]] {
        let r = QuantileKnots::<_, 1, 2>::new(&cpu, levels, two.clone());
        assert!(matches!(r, Err(Error::Input { .. })), "{levels:?}: {r:?}");
    }
    let r = QuantileKnots::<_, 1, 2>::new(&cpu, &[0.1, 0.5, 0.9], two.clone());
    assert!(matches!(r, Err(Error::ParamShape { .. })), "{r:?}");
    let r = QuantileKnots::<_, 2, 2>::new(&cpu, &[0.1, 0.9], two);
    assert!(matches!(r, Err(Error::Rank { .. })), "{r:?}");
}
