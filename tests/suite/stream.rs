//! Streaming sessions (`Forecaster::stream`): after pushes of one step, partial patches, whole
//! patches, gaps and across the window's slide, the session's forecast equals a fresh forecast
//! of its context (Toto 1.0 mean mode and seeded samples, Toto 2.0 quantiles with and without
//! xPos and toto-2's GluonTS options, with known covariates pushed ahead of or behind the
//! series), on the CPU and the fallback; the passes stay incremental
//! (no recompute but the slides) where nothing forces one, and recompute where Toto 1.0's clamp
//! or Toto 2.0's backfill moves; scores are the forecast's own; bad input leaves the session as
//! it was.

use toto_fallback::forecast::{
    Forecast, ForecastOptions, ForecastRequest, Forecaster, Series, Stream, StreamOptions,
};
use toto_fallback::{Backend, Error, InputKind, Toto, Toto2};

use crate::common;

const TOTO1: &str = "tests/fixtures/tiny";
const TOTO2: &str = "tests/fixtures/toto2-tiny";
const TOTO2_XPOS: &str = "tests/fixtures/toto2-other";

/// Step `t` of series `r` of a `[B, V]` batch: periodic, of its own level and scale.
fn value(r: usize, t: usize) -> f32 {
    let (r, t) = (r as f32, t as f32);
    (1.0 + r) * ((t + 3.0 * r) / 5.0).sin() + 0.3 * (t / 2.7).cos() + 10.0 * r + 0.01 * t
}

/// `[B, V, T]` histories of `value`, from step 0.
fn history(b: usize, v: usize, t: usize) -> Series {
    let rows: Vec<Vec<Vec<f32>>> = (0..b)
        .map(|i| {
            (0..v)
                .map(|j| (0..t).map(|s| value(i * v + j, s)).collect())
                .collect()
        })
        .collect();
    Series::from_batch(&rows).unwrap()
}

/// Steps `from..from + n` of every series, series-major; NaN at the steps `gaps` picks.
fn steps(rows: usize, from: usize, n: usize, gaps: impl Fn(usize, usize) -> bool) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| (from..from + n).map(move |t| (r, t)))
        .map(|(r, t)| if gaps(r, t) { f32::NAN } else { value(r, t) })
        .collect()
}

/// The forecast's values to compare, without the first `skip` steps: the mean and the samples
/// or the knots.
fn parts<B: Backend>(f: &Forecast<B>, skip: usize) -> Vec<f64> {
    let h = f.mean().dims()[2];
    let mut out = common::values(f.mean().clone().narrow(2, skip, h - skip));
    if let Some(s) = f.samples() {
        out.extend(common::values(s.clone().narrow(2, skip, h - skip)));
    }
    if let Some(k) = f.quantiles() {
        out.extend(common::values(k.values().clone().narrow(2, skip, h - skip)));
    }
    out
}

/// The first `n` steps of `series` (all of them if it has fewer), NaN where unobserved.
fn first_steps(series: &Series, n: usize) -> Series {
    let [b, k, t] = series.shape();
    let n = n.min(t);
    let rows: Vec<Vec<Vec<f32>>> = (0..b)
        .map(|i| {
            (0..k)
                .map(|j| {
                    let r = (i * k + j) * t;
                    (r..r + n)
                        .map(|at| match series.mask()[at] {
                            true => series.values()[at],
                            false => f32::NAN,
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    Series::from_batch(&rows)
        .unwrap()
        .with_series_ids(series.series_ids())
        .unwrap()
}

/// `Ok` when the session's forecast equals a fresh forecast of its committed context (the
/// pending steps cut from a longer one, its covariates cut to the context and the horizon)
/// within 1e-5 of the context's scale (its largest
/// absolute value, at least 1), the backend reseeded before each.
fn matches_fresh<M: Forecaster>(model: &M, stream: &mut Stream<'_, M>, what: &str) {
    let backend = model.backend();
    backend.seed(7);
    let got = parts(&stream.forecast().unwrap(), 0);
    let context = stream.context().unwrap();
    let skip = stream.pending();
    let mut options = stream.options().clone();
    options.prediction_length += skip;
    let h = options.prediction_length;
    let mut request = ForecastRequest::new(context.clone(), h).with_options(options);
    if let Some(c) = stream.covariates().unwrap() {
        // The covariates over the context and the horizon, in whole patches.
        let p = model.patch_size();
        request = request.with_covariates(first_steps(&c, context.shape()[2] + h.div_ceil(p) * p));
    }
    backend.seed(7);
    let fresh = model.predict(&request).unwrap();
    let want = parts(&fresh, skip);
    let scale = context.values().iter().fold(1.0f32, |m, &x| m.max(x.abs())) as f64;
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / scale)
        .fold(0.0, f64::max);
    assert!(worst <= 1e-5, "{what}: scaled error {worst:e}");
}

/// Opens a session on `5·P + 3` steps of a `[2, 2]` batch (the grid left-padded) with a window
/// of 10 patches that slides by 3, and pushes, comparing with a fresh forecast after every
/// push: single steps through a patch, a partial patch and its rest, two patches at once, a
/// patch with gaps (one series' patch all missing) that slides the window, steps across a
/// boundary, and three pushes between two forecasts that slide it again. Returns the session's
/// stats.
fn replay<M: Forecaster>(
    model: &M,
    options: ForecastOptions,
    what: &str,
) -> toto_fallback::forecast::StreamStats {
    let (b, v, p) = (2, 2, model.patch_size());
    let t0 = 5 * p + 3;
    let request =
        ForecastRequest::new(history(b, v, t0), options.prediction_length).with_options(options);
    let window = StreamOptions::default().with_window(10 * p, 3 * p).unwrap();
    let mut stream = model.stream_with(&request, window).unwrap();
    matches_fresh(model, &mut stream, &format!("{what}: open"));
    let mut t = t0;
    let none = |_: usize, _: usize| false;
    let push = |stream: &mut Stream<'_, M>,
                t: &mut usize,
                n: usize,
                gaps: &dyn Fn(usize, usize) -> bool| {
        stream.push(&steps(b * v, *t, n, gaps), n).unwrap();
        *t += n;
        let label = format!("{what}: after step {t} (pending {})", stream.pending());
        matches_fresh(model, stream, &label);
    };
    for _ in 0..p {
        push(&mut stream, &mut t, 1, &none);
    }
    push(&mut stream, &mut t, 3, &none);
    push(&mut stream, &mut t, p - 3, &none);
    push(&mut stream, &mut t, 2 * p, &none);
    assert_eq!(stream.stats().slides, 0, "{what}");
    let patch = t;
    push(&mut stream, &mut t, p, &|r, s| {
        r == 1 || (r == 2 && s < patch + 2)
    });
    assert_eq!(
        stream.stats().slides,
        1,
        "{what}: 11 patches in a window of 10"
    );
    push(&mut stream, &mut t, p + 5, &none);
    push(&mut stream, &mut t, p - 5, &none);
    // Three pushes before the next forecast (Toto 2.0 runs them in that forecast's pass).
    for n in [p - 1, 2, p - 1] {
        stream.push(&steps(b * v, t, n, none), n).unwrap();
        t += n;
    }
    matches_fresh(
        model,
        &mut stream,
        &format!("{what}: three pushes, then the forecast"),
    );
    let stats = stream.stats();
    assert_eq!(stats.slides, 2, "{what}");
    assert_eq!(stats.pushes, p as u64 + 9, "{what}");
    stats
}

// Toto 1.0: the mean path, and seeded sample paths; no recompute but the slides (the clamp
// never binds on these series).
on_backends!(
    toto_sessions_forecast_as_fresh_forecasts,
    [ndarray, ndarray_f16, fallback],
    |b| {
        let model = Toto::from_dir(&*b, TOTO1).unwrap();
        for options in [
            ForecastOptions::new(21).with_samples(None),
            ForecastOptions::new(16).with_samples(Some(8)),
        ] {
            let what = format!("Toto 1.0, {:?} samples", options.num_samples);
            let stats = replay(&model, options, &what);
            assert_eq!(stats.recomputes, stats.slides, "{what}: {stats:?}");
        }
    }
);

/// Toto 2.0's fixtures and settings the sessions are replayed with: the default settings and
/// toto-2's GluonTS ones (backfill, cap, groups of missing patches), without and with xPos.
fn toto2_settings() -> [(&'static str, ForecastOptions); 3] {
    [
        (TOTO2, ForecastOptions::new(40)),
        (TOTO2, ForecastOptions::gluonts(40)),
        (TOTO2_XPOS, ForecastOptions::new(20)),
    ]
}

// Toto 2.0: the default settings and toto-2's GluonTS ones (backfill, cap), without and with
// xPos; no recompute but the slides.
on_backends!(
    toto2_sessions_forecast_as_fresh_forecasts,
    [ndarray, ndarray_f16, fallback],
    |b| {
        for (dir, options) in toto2_settings() {
            let model = Toto2::from_dir(&*b, dir).unwrap();
            let what = format!("Toto 2.0 {dir}, {:?}", options.v2);
            let stats = replay(&model, options, &what);
            assert_eq!(stats.recomputes, stats.slides, "{what}: {stats:?}");
        }
    }
);

/// Covariate `r` (item-major over `[B, K]`) at step `t`: its own curve; item 1's is unknown
/// before step `late` (too few observations for toto-2's backfill at first).
fn covariate(r: usize, t: usize, late: usize) -> f32 {
    if r == 1 && t < late {
        return f32::NAN;
    }
    let (r, t) = (r as f32, t as f32);
    2.0 * ((t + r) / 3.0).cos() + 0.05 * t - 3.0 * r
}

// Toto 2.0 with a known covariate per item, the default settings and toto-2's GluonTS ones
// (backfill of 8 observations, cap, groups of missing patches), without and with xPos: the
// covariates pushed ahead of the series one step or several at a time, then falling behind the
// series and filled in (a recompute), across the window's slide; each forecast as a fresh
// forecast with the covariates cut to its horizon. Item 1's covariate starts unknown: with
// toto-2's settings the session forecasts afresh until it has 8 observations.
on_backends!(
    toto2_sessions_with_covariates_forecast_as_fresh_forecasts,
    [ndarray, fallback],
    |b| {
        for (dir, options) in toto2_settings() {
            let model = Toto2::from_dir(&*b, dir).unwrap();
            let what = format!("Toto 2.0 {dir} with covariates, {:?}", options.v2);
            let (items, v, p) = (2, 2, model.patch_size());
            let t0 = 5 * p + 3;
            let late = t0 + 4;
            let known = |from: usize, n: usize| -> Vec<f32> {
                (0..items)
                    .flat_map(|r| (from..from + n).map(move |t| covariate(r, t, late)))
                    .collect()
            };
            let history_c: Vec<Vec<Vec<f32>>> = (0..items)
                .map(|r| vec![(0..t0 + p + 7).map(|t| covariate(r, t, late)).collect()])
                .collect();
            let covariates = Series::from_batch(&history_c).unwrap();
            let min_obs = options.v2.scaler_fallback_min_obs;
            let request = ForecastRequest::new(history(items, v, t0), options.prediction_length)
                .with_options(options)
                .with_covariates(covariates);
            let window = StreamOptions::default().with_window(10 * p, 3 * p).unwrap();
            let mut stream = model.stream_with(&request, window).unwrap();
            matches_fresh(&model, &mut stream, &format!("{what}: open"));
            // The series' next step and the covariates'.
            let mut at = (t0, t0 + p + 7);
            let none = |_: usize, _: usize| false;
            let push = |stream: &mut Stream<'_, Toto2<_>>,
                        (t, tc): &mut (usize, usize),
                        n: usize,
                        ahead: usize| {
                if ahead > 0 {
                    stream.push_covariates(&known(*tc, ahead), ahead).unwrap();
                    *tc += ahead;
                }
                stream.push(&steps(items * v, *t, n, none), n).unwrap();
                *t += n;
                let label = format!("{what}: after step {t}, covariates to {tc}");
                matches_fresh(&model, stream, &label);
            };
            for step in 0..p {
                push(&mut stream, &mut at, 1, usize::from(step % 4 == 0) * 4);
            }
            push(&mut stream, &mut at, 3, p);
            push(&mut stream, &mut at, p - 3, 0);
            push(&mut stream, &mut at, 2 * p, 0);
            // Item 1's covariate short of toto-2's 8 observations: forecasts afresh, then a
            // prefill once it has them; nothing else recomputes.
            let early = stream.stats().recomputes;
            match min_obs {
                0 => assert_eq!(early, 0, "{what}: {:?}", stream.stats()),
                _ => assert!(early >= 1, "{what}: {:?}", stream.stats()),
            }
            // The series run past the covariates; filling them in recomputes.
            let (t, tc) = at;
            assert!(tc < t, "{what}: covariates to {tc}, series to {t}");
            stream
                .push_covariates(&known(tc, t - tc + p), t - tc + p)
                .unwrap();
            at.1 = t + p;
            assert_eq!(stream.stats().recomputes, early + 1, "{what}");
            matches_fresh(
                &model,
                &mut stream,
                &format!("{what}: covariates filled in"),
            );
            push(&mut stream, &mut at, p, p);
            assert_eq!(stream.stats().slides, 1, "{what}: {:?}", stream.stats());
            push(&mut stream, &mut at, p + 5, 0);
            let stats = stream.stats();
            assert_eq!(
                stats.recomputes,
                early + 1 + stats.slides,
                "{what}: {stats:?}"
            );
        }
    }
);

// Covariates that lag the series past a slide: the steps dropped before they arrived are
// skipped when they do, so that the rest stay aligned with the series (the first held is the
// context's first step's), and the forecast is still a fresh forecast's.
#[test]
fn toto2_session_covariates_stay_aligned_when_they_lag_past_a_slide() {
    let cpu = common::ndarray(1).unwrap();
    let model = Toto2::from_dir(&*cpu, TOTO2).unwrap();
    let p = model.patch_size();
    let known =
        |from: usize, to: usize| -> Vec<f32> { (from..to).map(|t| covariate(0, t, 0)).collect() };
    let request = ForecastRequest::new(history(1, 1, 3 * p), 8)
        .with_covariates(Series::from_values(known(0, p)).unwrap());
    let window = StreamOptions::default().with_window(4 * p, 2 * p).unwrap();
    let mut stream = model.stream_with(&request, window).unwrap();
    // Five patches in a window of four: the oldest three (steps 0..3P) go, the covariates
    // held only 0..P.
    let none = |_: usize, _: usize| false;
    stream.push(&steps(1, 3 * p, 2 * p, none), 2 * p).unwrap();
    assert_eq!(stream.stats().slides, 1);
    stream.push_covariates(&known(p, 6 * p), 5 * p).unwrap();
    let held = stream.covariates().unwrap().unwrap();
    assert_eq!(stream.context().unwrap().shape(), [1, 1, 2 * p]);
    assert_eq!(held.shape(), [1, 1, 3 * p]);
    assert_eq!(
        held.values()[0],
        covariate(0, 3 * p, 0),
        "aligned with step 3P"
    );
    matches_fresh(&model, &mut stream, "covariates after lagging past a slide");
}

// Toto 1.0's clamp binds: three patches of zeros (scale sqrt(0.1)) before values of ±1e11,
// whose context scale puts the lower bound above sqrt(0.1) and moves it with every patch; the
// session recomputes and stays exact.
#[test]
fn toto_sessions_recompute_where_the_clamp_moves() {
    let cpu = common::ndarray(1).unwrap();
    let model = Toto::from_dir(&*cpu, TOTO1).unwrap();
    let p = model.patch_size();
    let x = |t: usize| {
        if t < 3 * p {
            0.0
        } else {
            1e11 * ((t % 3) as f32 - 1.0) * (1.0 + t as f32 / 50.0)
        }
    };
    let series = Series::from_values((0..5 * p).map(x).collect::<Vec<_>>()).unwrap();
    let request = ForecastRequest::new(series, 8).with_samples(None);
    let mut stream = model.stream(&request).unwrap();
    for k in 0..3 {
        let t = (5 + k) * p;
        let new: Vec<f32> = (t..t + p).map(x).collect();
        stream.push(&new, p).unwrap();
        matches_fresh(&model, &mut stream, &format!("clamp, push {k}"));
    }
    assert_eq!(stream.stats().recomputes, 3, "{:?}", stream.stats());
}

// Toto 2.0 with toto-2's backfill (8 observations): a series with 3 observations in its
// context is recomputed at each push until 8 precede its last patch, then continued.
#[test]
fn toto2_sessions_recompute_while_the_backfill_moves() {
    let cpu = common::ndarray(1).unwrap();
    let model = Toto2::from_dir(&*cpu, TOTO2).unwrap();
    let p = model.patch_size();
    let sparse = |t: usize| t.is_multiple_of(7);
    let series = Series::from_values(
        (0..3 * p)
            .map(|t| {
                if sparse(t) && t > 2 * p - 8 {
                    value(0, t)
                } else {
                    f32::NAN
                }
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let options = ForecastOptions::gluonts(24);
    let request = ForecastRequest::new(series, 24).with_options(options);
    let mut stream = model.stream(&request).unwrap();
    matches_fresh(&model, &mut stream, "backfill: open");
    let mut recomputes = Vec::new();
    for k in 0..5 {
        let t = (3 + k) * p;
        let new: Vec<f32> = (t..t + p)
            .map(|t| if sparse(t) { value(0, t) } else { f32::NAN })
            .collect();
        stream.push(&new, p).unwrap();
        matches_fresh(&model, &mut stream, &format!("backfill, push {k}"));
        recomputes.push(stream.stats().recomputes);
    }
    // 3 observations, then 2 or 3 more a patch: 8 precede the last patch after the third push.
    assert!(recomputes[0] >= 1, "{recomputes:?}");
    assert_eq!(
        recomputes[4], recomputes[3],
        "{recomputes:?}: continued once 8 are seen"
    );
}

fn check_scores<M: Forecaster>(stream: &mut Stream<'_, M>, backend: &M::Backend, from: usize) {
    let p = 5;
    let y = steps(4, from, p, |r, t| r == 3 && t == from + 1);
    backend.seed(11);
    let forecast = stream.forecast().unwrap();
    let observed = burn::tensor::Tensor::<3>::from_data(
        burn::tensor::TensorData::new(y.clone(), [2, 2, p]),
        &forecast.mean().device(),
    );
    let padded = burn::tensor::Tensor::cat(
        vec![
            observed,
            burn::tensor::Tensor::<3>::full(
                [2, 2, forecast.mean().dims()[2] - p],
                f32::NAN,
                &forecast.mean().device(),
            ),
        ],
        2,
    );
    let want = forecast.anomaly_scores(padded).unwrap();
    let len = stream.len();
    backend.seed(11);
    let got = stream.score(&y, p).unwrap();
    assert_eq!(stream.len(), len + p, "scored steps are pushed");
    let narrow = |x: burn::tensor::Tensor<3>| common::values(x.narrow(2, 0, p));
    for (g, w) in [(got.pit, want.pit), (got.tail, want.tail)] {
        let (g, w) = (common::values(g), narrow(w));
        for (a, b) in g.iter().zip(&w) {
            assert!(a == b || (a.is_nan() && b.is_nan()), "{g:?} vs {w:?}");
        }
    }
    assert_eq!(got.log_density.is_some(), want.log_density.is_some());
}

// Scores are the forecast's own (Forecast::anomaly_scores of the forecast made before the
// observations, its pending steps cut), then the observations are pushed.
#[test]
fn stream_scores_are_those_of_the_forecast_before_the_points() {
    let cpu = common::ndarray(1).unwrap();
    let v2 = Toto2::from_dir(&*cpu, TOTO2).unwrap();
    let v1 = Toto::from_dir(&*cpu, TOTO1).unwrap();
    let request = ForecastRequest::new(history(2, 2, 40), 12);
    let mut s2 = v2.stream(&request).unwrap();
    check_scores(&mut s2, v2.backend(), 40);
    check_scores(&mut s2, v2.backend(), 45); // pending steps: scored from the last boundary
    let request = request.with_samples(Some(32));
    let mut s1 = v1.stream(&request).unwrap();
    check_scores(&mut s1, v1.backend(), 40);
    check_scores(&mut s1, v1.backend(), 45);
}

// Bad input: typed errors naming what is wrong, and the session as it was (its length, its
// forecast, its stats).
#[test]
fn stream_refuses_bad_input_and_keeps_its_state() {
    let cpu = common::ndarray(1).unwrap();
    let model = Toto2::from_dir(&*cpu, TOTO2).unwrap();
    let series = history(1, 2, 40)
        .with_timestamps([1000, 1000])
        .unwrap()
        .with_interval(60)
        .unwrap();
    let request = ForecastRequest::new(series, 8);
    let mut stream = model.stream(&request).unwrap();
    stream
        .push(&[1.0, f32::NAN, 2.0, f32::INFINITY], 2)
        .unwrap(); // non-finite: gaps
    let before = (
        stream.len(),
        parts(&stream.forecast().unwrap(), 0),
        stream.stats(),
    );
    let kind = |e: Error| match e {
        Error::Input { kind, .. } => kind,
        other => panic!("not an input error: {other}"),
    };
    let same = |stream: &mut Stream<'_, Toto2<_>>| {
        assert_eq!(stream.len(), before.0);
        assert_eq!(parts(&stream.forecast().unwrap(), 0), before.1);
        assert_eq!(stream.stats(), before.2);
    };
    assert_eq!(
        kind(stream.push(&[1.0; 3], 2).unwrap_err()),
        InputKind::Shape
    );
    assert_eq!(kind(stream.push(&[], 0).unwrap_err()), InputKind::Empty);
    let next = stream.next_time().unwrap();
    assert_eq!(next, 1000 + 42 * 60);
    assert_eq!(
        kind(stream.push_at(next - 60, &[1.0; 2], 1).unwrap_err()),
        InputKind::OutOfOrder
    );
    assert_eq!(
        kind(stream.push_at(next + 30, &[1.0; 2], 1).unwrap_err()),
        InputKind::OutOfRange
    );
    assert_eq!(
        kind(stream.push_at(i64::MAX, &[1.0; 2], 1).unwrap_err()),
        InputKind::OutOfRange
    );
    assert_eq!(
        kind(stream.push_at(i64::MIN, &[1.0; 2], 1).unwrap_err()),
        InputKind::OutOfOrder
    );
    same(&mut stream);
    // A gap of two steps before the pushed one: three steps held more.
    stream.push_at(next + 120, &[1.0, 2.0], 1).unwrap();
    assert_eq!(stream.len(), before.0 + 3);
    assert_eq!(stream.next_time(), Some(next + 180));
    stream.close();
    assert!(stream.is_closed());
    assert_eq!(
        kind(stream.push(&[1.0; 2], 1).unwrap_err()),
        InputKind::Closed
    );
    assert_eq!(kind(stream.forecast().unwrap_err()), InputKind::Closed);
    // Without timestamps the session has no clock.
    let mut plain = model
        .stream(&ForecastRequest::new(history(1, 2, 40), 8))
        .unwrap();
    assert_eq!(
        kind(plain.push_at(0, &[1.0; 2], 1).unwrap_err()),
        InputKind::Unusable
    );
    // Covariates: pushed to a session without, of the wrong shape, too far ahead, to a closed
    // session; Toto 1.0 has none.
    assert_eq!(
        kind(plain.push_covariates(&[1.0], 1).unwrap_err()),
        InputKind::Unusable
    );
    let with = ForecastRequest::new(history(1, 2, 40), 8).with_covariates(history(1, 1, 48));
    let mut covariates = model.stream(&with).unwrap();
    let held = (
        covariates.covariates().unwrap(),
        parts(&covariates.forecast().unwrap(), 0),
    );
    assert_eq!(
        kind(covariates.push_covariates(&[1.0; 3], 2).unwrap_err()),
        InputKind::Shape
    );
    assert_eq!(
        kind(covariates.push_covariates(&[], 0).unwrap_err()),
        InputKind::Empty
    );
    let far = vec![1.0; 4096];
    assert_eq!(
        kind(covariates.push_covariates(&far, far.len()).unwrap_err()),
        InputKind::OutOfRange
    );
    assert_eq!(covariates.covariates().unwrap(), held.0);
    assert_eq!(parts(&covariates.forecast().unwrap(), 0), held.1);
    assert_eq!(covariates.stats().recomputes, 0);
    covariates.close();
    assert_eq!(
        kind(covariates.push_covariates(&[1.0], 1).unwrap_err()),
        InputKind::Closed
    );
    let two = ForecastRequest::new(history(2, 2, 40), 8).with_covariates(history(1, 1, 48));
    assert_eq!(kind(model.stream(&two).unwrap_err()), InputKind::Shape);
    let v1 = Toto::from_dir(&*cpu, TOTO1).unwrap();
    assert_eq!(kind(v1.stream(&with).unwrap_err()), InputKind::Unusable);
    assert_eq!(kind(v1.stream(&two).unwrap_err()), InputKind::Unusable);
    // A bad window, Toto 1.0's mean mode asked for scores.
    assert!(StreamOptions::default().with_window(64, 64).is_err());
    let request = ForecastRequest::new(history(1, 2, 40), 8).with_samples(None);
    let mut mean = v1.stream(&request).unwrap();
    let len = mean.len();
    assert_eq!(
        kind(mean.score(&[1.0; 2], 1).unwrap_err()),
        InputKind::NoDistribution
    );
    assert_eq!(mean.len(), len, "nothing pushed");
}
