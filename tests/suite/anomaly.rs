//! Anomaly scores (`Forecast::anomaly_scores`): checked against the forecast distribution's own
//! `cdf` and `log_prob` (Toto 2.0's quantile knots), against ranks counted on the host (Toto
//! 1.0's sample paths), and for uniformity of the PIT of draws from the forecast itself.

use burn::tensor::Tensor;
use toto_fallback::distr::{Cdf, Distribution};
use toto_fallback::forecast::{Forecast, ForecastRequest, Forecaster, Series};
use toto_fallback::{Backend, Error, InputKind, LayerOps, NdArray, Toto, Toto2};

use crate::common;

const TOTO1: &str = "tests/fixtures/tiny";
const TOTO2: &str = "tests/fixtures/toto2-tiny";

/// `[B, V, T]` periodic histories of different phases and scales.
fn histories(b: usize, v: usize, t: usize) -> Series {
    let rows: Vec<Vec<Vec<f32>>> = (0..b)
        .map(|i| {
            (0..v)
                .map(|j| {
                    (0..t)
                        .map(|s| {
                            (1.0 + i as f32) * ((s as f32 + 3.0 * j as f32) / 5.0).sin()
                                + 10.0 * j as f32
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    Series::from_batch(&rows).unwrap()
}

fn same_or_both_nan(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x == y || (x.is_nan() && y.is_nan()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

// Toto 2.0: the PIT is the knots' cdf and the log density their log_prob at the observations
// (the first K < H steps, one observation missing), the tail probability `2·min(F, 1 − F)`;
// far-off values get tail 0 and are flagged, the missing one is not. On the CPU, the GPU and
// the fallback.
on_backends!(
    knot_scores_are_the_distributions_own,
    [ndarray, wgpu, fallback],
    |b| {
        knot_scores(&*b);
    }
);

fn knot_scores<B: LayerOps>(cpu: &B) {
    let model = Toto2::from_dir(cpu, TOTO2).unwrap();
    let (b, v, h, k) = (2, 2, 16, 5);
    let forecast = model
        .predict(&ForecastRequest::new(histories(b, v, 64), h))
        .unwrap();
    let median = common::values(forecast.median().unwrap().narrow(2, 0, k));
    // Around the median, then far above and below, and one missing.
    let mut observed: Vec<f32> = median
        .iter()
        .enumerate()
        .map(|(i, &m)| m as f32 + 0.3 * ((i % 5) as f32 - 2.0))
        .collect();
    observed[3] = median[3] as f32 + 1e4;
    observed[7] = median[7] as f32 - 1e4;
    observed[11] = f32::NAN;
    let y = Tensor::<3>::from_data(
        burn::tensor::TensorData::new(observed.clone(), [b, v, k]),
        cpu.device(),
    );
    let scores = forecast.anomaly_scores(y.clone()).unwrap();

    let knots = forecast.quantiles().unwrap();
    let padded = Tensor::cat(
        vec![y, Tensor::<3>::full([b, v, h - k], f32::NAN, cpu.device())],
        2,
    );
    let cdf = common::values(knots.cdf(padded.clone()).unwrap().narrow(2, 0, k));
    let log_prob = common::values(knots.log_prob(padded).unwrap().narrow(2, 0, k));
    let pit = common::values(scores.pit.clone());
    same_or_both_nan(&pit, &cdf, "pit");
    same_or_both_nan(
        &common::values(scores.log_density.clone().unwrap()),
        &log_prob,
        "log density",
    );
    let tail = common::values(scores.tail.clone());
    for (i, (&p, &t)) in pit.iter().zip(&tail).enumerate() {
        if i == 11 {
            assert!(p.is_nan() && t.is_nan());
        } else {
            let want = 2.0 * p.min(1.0 - p);
            assert!((t - want).abs() <= 1e-6, "tail[{i}] {t} vs {want}");
        }
    }
    assert_eq!((pit[3], pit[7]), (1.0, 0.0));
    // As 0/1 floats: a GPU keeps booleans as u32, which a read as `bool` refuses.
    let flags: Vec<bool> = common::values(scores.flags(0.01).unwrap().float())
        .into_iter()
        .map(|f| f == 1.0)
        .collect();
    let flagged: Vec<usize> = (0..flags.len()).filter(|&i| flags[i]).collect();
    // The two far-off values, and nothing near the median (tails well above 0.01 there).
    assert!(flagged.contains(&3) && flagged.contains(&7), "{flagged:?}");
    assert!(!flagged.contains(&11));
    for &i in &flagged {
        assert!(tail[i] < 0.01, "flagged {i} with tail {}", tail[i]);
    }
}

/// The PIT of draws from the forecast itself is uniform: Toto 2.0's knots, 8 × 4 series × 64
/// steps of one draw each (KS at 1e-3, fixed seed).
#[test]
fn pit_of_the_forecasts_own_draws_is_uniform() {
    let cpu = NdArray::seeded(11);
    let model = Toto2::from_dir(&cpu, TOTO2).unwrap();
    let (b, v, h) = (8, 4, 64);
    let forecast = model
        .predict(&ForecastRequest::new(histories(b, v, 96), h))
        .unwrap();
    let draws = forecast.draw(1).unwrap().reshape([b, v, h]);
    let pit = common::values(forecast.anomaly_scores(draws).unwrap().pit);
    assert_eq!(pit.len(), b * v * h);
    common::assert_ks("PIT of Toto 2.0 draws", &pit, |x| x.clamp(0.0, 1.0));
}

/// Toto 1.0's sample paths: the PIT is the mid-rank of the observation among the paths,
/// counted here on the host; a path's own values rank uniformly, `(rank + 1/2) / n`; no log
/// density. A mean-mode forecast has no scores.
#[test]
fn sample_path_scores_are_mid_ranks() {
    let cpu = NdArray::seeded(5);
    let model = Toto::from_dir(&cpu, TOTO1).unwrap();
    let (b, v, h, n) = (2, 2, 8, 32);
    let request = ForecastRequest::new(histories(b, v, 48), h).with_samples(Some(n));
    let forecast = model.predict(&request).unwrap();
    let paths = common::values(forecast.samples().unwrap().clone()); // [b, v, h, n]
    let median = common::values(forecast.median().unwrap());
    // Path 7's values, with step 0 of every series moved to the median, and one tie made
    // explicit (step 1 takes path 3's value).
    let mut observed = vec![0f32; b * v * h];
    for s in 0..b * v {
        for t in 0..h {
            let at = |p: usize| paths[(s * h + t) * n + p] as f32;
            observed[s * h + t] = match t {
                0 => median[s * h] as f32,
                1 => at(3),
                _ => at(7),
            };
        }
    }
    let y = Tensor::<3>::from_data(
        burn::tensor::TensorData::new(observed.clone(), [b, v, h]),
        cpu.device(),
    );
    let scores = forecast.anomaly_scores(y).unwrap();
    assert!(scores.log_density.is_none());
    let pit = common::values(scores.pit);
    for i in 0..b * v * h {
        let y = f64::from(observed[i]);
        let row = &paths[i * n..(i + 1) * n];
        let below = row.iter().filter(|&&x| x < y).count() as f64;
        let equal = row.iter().filter(|&&x| x == y).count() as f64;
        let want = (below + 0.5 * equal) / n as f64;
        assert!(
            (pit[i] - want).abs() < 1e-6,
            "pit[{i}] = {} vs {want}",
            pit[i]
        );
    }

    let mean_mode = model.predict(&request.clone().with_samples(None)).unwrap();
    let err = mean_mode
        .anomaly_scores(Tensor::<3>::zeros([b, v, h], cpu.device()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Input {
                kind: InputKind::NoDistribution,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Observations of the wrong shape and thresholds outside (0, 1) are refused by name.
#[test]
fn anomaly_scores_refuse_bad_input() {
    let cpu = NdArray::seeded(6);
    let model = Toto2::from_dir(&cpu, TOTO2).unwrap();
    let forecast: Forecast<NdArray> = model
        .predict(&ForecastRequest::new(histories(1, 2, 32), 8))
        .unwrap();
    for dims in [[1, 2, 0], [1, 2, 9], [2, 2, 4], [1, 1, 4]] {
        let err = forecast
            .anomaly_scores(Tensor::<3>::zeros(dims, cpu.device()))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Input {
                    kind: InputKind::Shape,
                    ..
                }
            ),
            "{dims:?}: {err:?}"
        );
        assert!(
            err.to_string().contains("needs [1, 2, K] with 1 <= K <= 8"),
            "{err}"
        );
    }
    let scores = forecast
        .anomaly_scores(Tensor::<3>::zeros([1, 2, 8], cpu.device()))
        .unwrap();
    for alpha in [0.0, 1.0, f64::NAN, -0.5] {
        assert!(
            matches!(
                scores.flags(alpha),
                Err(Error::Input {
                    kind: InputKind::OutOfRange,
                    ..
                })
            ),
            "{alpha}"
        );
    }
}
