//! `toto_fallback::eval` against gluonts 0.16.2's own evaluation
//! (`tests/fixtures/metrics/make_gluonts_reference.py`, which wrote `gluonts.json`).

use serde_json::Value;
use toto_fallback::eval::{
    Entry, Evaluator, Metrics, geometric_mean, seasonal_error, seasonal_naive,
};
use toto_fallback::{Error, InputKind};

const REFERENCE: &str = "tests/fixtures/metrics/gluonts.json";

/// Relative agreement with gluonts (both in f64; the bound).
const RTOL: f64 = 1e-6;

pub(crate) fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(number).collect()
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(REFERENCE).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

/// Our metrics for a case's forecasts, by gluonts' names.
fn ours(case: &Value) -> Vec<(String, f64)> {
    let levels = numbers(&case["levels"]);
    let wql_levels = numbers(&case["wql_levels"]);
    let seasonality = case["seasonality"].as_u64().unwrap() as usize;
    let mut evaluator = Evaluator::new(seasonality)
        .unwrap()
        .with_levels(&wql_levels)
        .unwrap();
    for e in case["entries"].as_array().unwrap() {
        let past = numbers(&e["past"]);
        let truth = numbers(&e["truth"]);
        let mean = numbers(&e["mean"]);
        let rows: Vec<Vec<f64>> = e["quantiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(numbers)
            .collect();
        let quantiles: Vec<(f64, &[f64])> = levels
            .iter()
            .zip(&rows)
            .map(|(&q, row)| (q, row.as_slice()))
            .collect();
        evaluator
            .add(&Entry {
                past: &past,
                truth: &truth,
                mean: &mean,
                quantiles: &quantiles,
            })
            .unwrap();
    }
    named(&evaluator.finish())
}

pub(crate) fn named(m: &Metrics) -> Vec<(String, f64)> {
    let mut out = vec![
        ("MSE[mean]".to_owned(), m.mse),
        ("RMSE[mean]".to_owned(), m.rmse),
        ("NRMSE[mean]".to_owned(), m.nrmse),
        ("MAE[0.5]".to_owned(), m.mae),
        ("ND[0.5]".to_owned(), m.nd),
        ("MAPE[0.5]".to_owned(), m.mape),
        ("sMAPE[0.5]".to_owned(), m.smape),
        ("MASE[0.5]".to_owned(), m.mase),
        ("MSIS".to_owned(), m.msis),
        (
            "mean_weighted_sum_quantile_loss".to_owned(),
            m.mean_weighted_quantile_loss,
        ),
        ("sum_absolute_label".to_owned(), m.sum_absolute_truth),
        ("mean_absolute_label".to_owned(), m.mean_absolute_truth),
    ];
    for &(q, l) in &m.weighted_quantile_loss {
        out.push((format!("weighted_sum_quantile_loss[{q}]"), l));
    }
    for &(q, c) in &m.coverage {
        out.push((format!("coverage[{q}]"), c));
    }
    out
}

fn same(got: f64, want: f64) -> bool {
    if want.is_finite() {
        (got - want).abs() <= RTOL * want.abs().max(f64::MIN_POSITIVE)
    } else {
        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
    }
}

/// Checks our named metrics against a case's reference object.
pub(crate) fn check(name: &str, ours: Vec<(String, f64)>, reference: &Value) -> usize {
    let reference = reference.as_object().unwrap();
    let mut checked = 0;
    for (metric, got) in ours {
        let want = number(
            reference
                .get(&metric)
                .unwrap_or_else(|| panic!("{name}: gluonts has no {metric}")),
        );
        assert!(
            same(got, want),
            "{name}: {metric} = {got:e}, gluonts {want:e}"
        );
        checked += 1;
    }
    checked
}

/// Every metric of every case within `RTOL` of gluonts (NaN and infinities equal as such):
/// monthly, hourly, quarterly and daily seasonalities, masked truths and contexts, a constant
/// context (seasonal error 0: its scaled errors left out) and an all-zero truth (MAPE's 0/0
/// left out), a context shorter than its season.
#[test]
fn metrics_match_gluonts() {
    let cases = cases();
    assert!(cases.len() >= 7, "{} cases", cases.len());
    let mut checked = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        checked += check(name, ours(case), &case["gluonts"]);
    }
    assert!(checked >= 7 * 30, "{checked} values checked");
}

/// The seasonal-naive baseline: our forecasts equal gluonts' `SeasonalNaivePredictor`'s on every
/// entry of every case (the last season repeated; the context's mean when it is shorter than a
/// season; missing context values imputed by the last observed one), and their metrics equal
/// gluonts' metrics of its forecasts. Then the relative score GIFT-Eval aggregates: the model's
/// MASE over the baseline's, geometric mean over the cases.
#[test]
fn seasonal_naive_matches_gluonts() {
    let mut relative = Vec::new();
    for case in &cases() {
        let name = case["name"].as_str().unwrap();
        let seasonality = case["seasonality"].as_u64().unwrap() as usize;
        let levels = numbers(&case["levels"]);
        let wql_levels = numbers(&case["wql_levels"]);
        let mut evaluator = Evaluator::new(seasonality)
            .unwrap()
            .with_levels(&wql_levels)
            .unwrap();
        let entries = case["entries"].as_array().unwrap();
        let paths = case["naive"].as_array().unwrap();
        for (i, (e, want)) in entries.iter().zip(paths).enumerate() {
            let past = numbers(&e["past"]);
            let truth = numbers(&e["truth"]);
            let want = numbers(want);
            let got = seasonal_naive(&past, seasonality, truth.len()).unwrap();
            for (t, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(same(g, w), "{name}: entry {i} step {t}: {g} vs gluonts {w}");
            }
            let quantiles: Vec<(f64, &[f64])> = levels.iter().map(|&q| (q, &got[..])).collect();
            evaluator
                .add(&Entry {
                    past: &past,
                    truth: &truth,
                    mean: &got,
                    quantiles: &quantiles,
                })
                .unwrap();
        }
        let baseline = evaluator.finish();
        check(name, named(&baseline), &case["naive_gluonts"]);
        let model = number(&case["gluonts"]["MASE[0.5]"]);
        relative.push(model / baseline.mase);
    }
    // The cases' forecasts are the truth plus noise of 0.7: better than the baseline.
    let score = geometric_mean(&relative);
    assert!(
        score > 0.0 && score < 1.0,
        "relative MASE {score} ({relative:?})"
    );
    assert_eq!(geometric_mean(&[2.0, 8.0]), 4.0);
    assert!(geometric_mean(&[]).is_nan());
}

/// The baseline's edges: a one-value context with NaN is imputed as 0 (gluonts'
/// `DummyValueImputation`), leading NaN take the first observed value, and bad arguments are
/// typed errors.
#[test]
fn seasonal_naive_edges() {
    assert_eq!(seasonal_naive(&[f64::NAN], 1, 2).unwrap(), vec![0.0, 0.0]);
    assert_eq!(
        seasonal_naive(&[f64::NAN, 2.0, f64::NAN, 4.0], 2, 3).unwrap(),
        vec![2.0, 4.0, 2.0]
    );
    assert_eq!(seasonal_naive(&[1.0, 2.0], 3, 1).unwrap(), vec![1.5]);
    for (r, kind) in [
        (seasonal_naive(&[], 1, 1), InputKind::Empty),
        (seasonal_naive(&[1.0], 0, 1), InputKind::OutOfRange),
    ] {
        assert!(
            matches!(r, Err(Error::Input { kind: k, .. }) if k == kind),
            "{r:?}"
        );
    }
}

/// The seasonal error by hand: a season of 2 on `[1, 2, 4, 3, NaN, 5]` pairs (1,4), (2,3),
/// (4,NaN) masked, (3,5): `(3 + 1 + 2) / 3`; a season longer than the context falls back to 1;
/// no observed pair gives 0.
#[test]
fn seasonal_error_masks_and_falls_back() {
    let past = [1.0, 2.0, 4.0, 3.0, f64::NAN, 5.0];
    assert_eq!(seasonal_error(&past, 2), 2.0);
    assert_eq!(seasonal_error(&[1.0, 3.0, 2.0], 12), 1.5);
    assert_eq!(seasonal_error(&[f64::NAN, 1.0, f64::NAN], 1), 0.0);
    assert_eq!(seasonal_error(&[], 1), 0.0);
}

/// Bad evaluator input is a typed error naming what is wrong, and a refused entry leaves the
/// evaluator as it was.
#[test]
fn evaluator_refuses_bad_input() {
    let kind = |r: Result<Evaluator, Error>| match r {
        Err(Error::Input { kind, .. }) => kind,
        other => panic!("{other:?}"),
    };
    assert_eq!(kind(Evaluator::new(0)), InputKind::OutOfRange);
    assert_eq!(
        kind(Evaluator::new(1).unwrap().with_levels(&[])),
        InputKind::Empty
    );
    assert_eq!(
        kind(Evaluator::new(1).unwrap().with_levels(&[0.5, 1.0])),
        InputKind::OutOfRange
    );
    assert_eq!(
        kind(Evaluator::new(1).unwrap().with_msis_alpha(f64::NAN)),
        InputKind::OutOfRange
    );

    let mut e = Evaluator::new(1)
        .unwrap()
        .with_levels(&[0.5])
        .unwrap()
        .with_msis_alpha(0.2)
        .unwrap();
    let (lo, mid, hi) = ([0.0, 1.0], [1.0, 2.0], [2.0, 3.0]);
    let good = [(0.1, &lo[..]), (0.5, &mid[..]), (0.9, &hi[..])];
    let entry = Entry {
        past: &[1.0, 2.0],
        truth: &[1.0, 2.0],
        mean: &[1.0, 2.0],
        quantiles: &good,
    };
    let refused =
        |e: &mut Evaluator, entry: Entry<'_>, kind: InputKind, needle: &str| match e.add(&entry) {
            Err(err @ Error::Input { kind: k, .. }) => {
                assert_eq!(k, kind, "{err}");
                assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
            }
            other => panic!("accepted: {other:?}"),
        };
    // MSIS at α = 0.2 needs 0.9, which this entry lacks.
    refused(
        &mut e,
        Entry {
            quantiles: &good[..2],
            ..entry
        },
        InputKind::Unusable,
        "level 0.9",
    );
    refused(
        &mut e,
        Entry {
            mean: &[1.0],
            ..entry
        },
        InputKind::Shape,
        "mean has 1 steps",
    );
    let nan = [1.0, f64::NAN];
    refused(
        &mut e,
        Entry {
            mean: &nan,
            ..entry
        },
        InputKind::Unusable,
        "at step 1",
    );
    refused(
        &mut e,
        Entry {
            truth: &[],
            ..entry
        },
        InputKind::Empty,
        "no step",
    );
    assert_eq!(e.finish().observed, 0, "a refused entry was counted");
    e.add(&entry).unwrap();
    assert_eq!(e.finish().observed, 2);
    assert_eq!(e.finish().mae, 0.0);
    assert_eq!(
        kind(e.clone().with_levels(&[0.5])),
        InputKind::Unusable,
        "levels changed after an add"
    );
}
