//! `forecast::Series`, the host-data input of a forecast: its shapes, left-padding, non-finite
//! values, every refused input, and forecasts from it against the same inputs built as tensors
//! by hand.
//!
//! Expected layouts are written out by hand from the documented rule (each series aligned to
//! the last step, left-padded with unobserved zeros; non-finite values unobserved zeros).

use crate::common;

use burn::tensor::{Bool, Int, Tensor, TensorData};
#[allow(unused_imports)]
use toto_fallback::Forecaster;
use toto_fallback::auto::AutoToto;
use toto_fallback::forecast::Series;
use toto_fallback::toto::{ForecastOptions, Toto};
use toto_fallback::toto2::Toto2;
use toto_fallback::{Backend, Error, MAX_ELEMENTS, NdArray};

const TOTO1: &str = "tests/fixtures/tiny";
const TOTO2: &str = "tests/fixtures/toto2-tiny";

/// `what` and `reason` of an `Error::Input`, or a panic naming what came instead.
fn input_error(result: Result<Series, Error>) -> (&'static str, String) {
    match result {
        Err(Error::Input { what, reason, .. }) => (what, reason),
        other => panic!("expected Error::Input, got {other:?}"),
    }
}

fn bools(t: Tensor<3, Bool>) -> Vec<bool> {
    common::values(t.float()).iter().map(|&x| x > 0.5).collect()
}

#[test]
fn series_from_1d_2d_and_3d_input_have_the_shapes_and_values_given() {
    let one = Series::from_values([1.0, 2.0, 3.0]).unwrap();
    assert_eq!(one.shape(), [1, 1, 3]);
    assert_eq!(one.values(), [1.0, 2.0, 3.0]);
    assert_eq!(one.mask(), [true; 3]);
    assert_eq!(Series::try_from(vec![1.0, 2.0, 3.0]).unwrap(), one);
    assert_eq!(Series::try_from(&[1.0f32, 2.0, 3.0][..]).unwrap(), one);

    let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
    let two = Series::from_variates(&rows).unwrap();
    assert_eq!(two.shape(), [1, 2, 2]);
    assert_eq!(two.values(), [1.0, 2.0, 3.0, 4.0]);
    let slices: [&[f32]; 2] = [&[1.0, 2.0], &[3.0, 4.0]];
    assert_eq!(Series::from_variates(&slices).unwrap(), two);
    assert_eq!(Series::try_from(rows).unwrap(), two);

    let batch = vec![vec![vec![1.0, 2.0], vec![3.0]], vec![vec![4.0], vec![]]];
    let three = Series::from_batch(&batch).unwrap();
    assert_eq!(three.shape(), [2, 2, 2]);
    assert_eq!(three.values(), [1.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0, 0.0]);
    let mask = [true, true, false, true, false, true, false, false];
    assert_eq!(three.mask(), mask);
    assert_eq!(three.lengths(), [2, 1, 1, 0]);
    let nested: [&[&[f32]]; 2] = [&[&[1.0, 2.0], &[3.0]], &[&[4.0], &[]]];
    assert_eq!(Series::from_batch(&nested).unwrap(), three);
    assert_eq!(Series::try_from(batch).unwrap(), three);

    // Defaults, and what the builders store.
    assert_eq!(three.series_ids(), [0; 4]);
    assert_eq!((three.timestamps(), three.interval()), (None, None));
    let dated = three
        .clone()
        .with_series_ids([0, 1, 0, 1])
        .unwrap()
        .with_timestamps([0, 60, 120, 180])
        .unwrap()
        .with_interval(60)
        .unwrap();
    assert_eq!(dated.series_ids(), [0, 1, 0, 1]);
    assert_eq!(dated.timestamps(), Some(&[0i64, 60, 120, 180][..]));
    assert_eq!(dated.interval(), Some(60));

    // The tensors hold the same layout.
    let cpu = NdArray::new();
    let (values, observed, ids) = dated.to_tensors(cpu.device());
    assert_eq!(values.dims(), [2, 2, 2]);
    assert_eq!(
        common::values(values),
        [1.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0, 0.0]
    );
    assert_eq!(bools(observed), mask);
    assert_eq!(ids.dims(), [2, 2]);
    let ids: Vec<i64> = ids
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap();
    assert_eq!(ids, [0, 1, 0, 1]);
}

#[test]
fn variable_length_series_are_left_padded_with_unobserved_zeros() {
    let series = Series::from_variates(&[vec![1.0, 2.0, 3.0, 4.0], vec![5.0], vec![]]).unwrap();
    assert_eq!(series.shape(), [1, 3, 4]);
    #[rustfmt::skip]
    let (values, mask) = (
        [1.0, 2.0, 3.0, 4.0,  0.0, 0.0, 0.0, 5.0,  0.0, 0.0, 0.0, 0.0],
        [true, true, true, true,  false, false, false, true,  false, false, false, false],
    );
    assert_eq!(series.values(), values);
    assert_eq!(series.mask(), mask);
    assert_eq!(series.lengths(), [4, 1, 0]);
    let (x, m, _) = series.to_tensors(NdArray::new().device());
    assert_eq!(common::values(x), values.map(f64::from));
    assert_eq!(bools(m), mask);
}

#[test]
fn non_finite_values_become_unobserved_zeros_and_a_mask_cannot_observe_them() {
    let nan = f32::NAN;
    let series =
        Series::from_variates(&[vec![1.0, nan, f32::INFINITY], vec![f32::NEG_INFINITY]]).unwrap();
    assert_eq!(series.values(), [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(series.mask(), [true, false, false, false, false, false]);
    // A mask ANDs with what the values imply; masked-out finite values are kept.
    let masked = Series::from_values([1.0, nan, 3.0, 4.0])
        .unwrap()
        .with_mask(&[[true, true, false, true]])
        .unwrap();
    assert_eq!(masked.values(), [1.0, 0.0, 3.0, 4.0]);
    assert_eq!(masked.mask(), [true, false, false, true]);
    // A mask row of a shorter series covers its given steps, not the padding.
    let padded = Series::from_variates(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0]])
        .unwrap()
        .with_mask(&[vec![true, false, true], vec![false, true]])
        .unwrap();
    assert_eq!(padded.mask(), [true, false, true, false, false, true]);
}

#[test]
fn bad_series_input_is_an_input_error_naming_the_argument() {
    let two = || Series::from_variates(&[vec![1.0, 2.0], vec![3.0]]).unwrap();
    let empty: Vec<f32> = Vec::new();
    let cases: Vec<(Result<Series, Error>, &str, &str)> = vec![
        (
            Series::from_values(&empty),
            "Series::from_values",
            "every one of the 1 series is empty",
        ),
        (
            Series::from_values([f32::NAN, f32::INFINITY]),
            "Series::from_values",
            "no observed value",
        ),
        (
            Series::from_variates::<Vec<f32>>(&[]),
            "Series::from_variates",
            "no series",
        ),
        (
            Series::from_variates(std::slice::from_ref(&empty)),
            "Series::from_variates",
            "is empty",
        ),
        (
            Series::from_variates(&[empty.clone(), empty.clone()]),
            "Series::from_variates",
            "every one of the 2 series is empty",
        ),
        (
            Series::from_batch::<Vec<Vec<f32>>, Vec<f32>>(&[]),
            "Series::from_batch",
            "no series",
        ),
        (
            Series::from_batch(&[Vec::<Vec<f32>>::new()]),
            "Series::from_batch",
            "no series",
        ),
        (
            Series::from_batch(&[vec![empty.clone()]]),
            "Series::from_batch",
            "is empty",
        ),
        (
            Series::from_batch(&[vec![vec![1.0], vec![2.0]], vec![vec![3.0]]]),
            "Series::from_batch",
            "`batch` is ragged: item 1 has 1 variates, item 0 has 2",
        ),
        (
            Series::try_from(Vec::<Vec<Vec<f32>>>::new()),
            "Series::from_batch",
            "no series",
        ),
        (
            two().with_mask(&[vec![true, true]]),
            "Series::with_mask",
            "`mask` has 1 entries; expected one per series, B·V = 2",
        ),
        (
            two().with_mask(&[vec![true], vec![true]]),
            "Series::with_mask",
            "`mask` row 0 (item 0, variate 0) has 1 values; its series has 2",
        ),
        (
            two().with_mask(&[vec![false, false], vec![false]]),
            "Series::with_mask",
            "`mask` leaves no observed value",
        ),
        (
            two().with_series_ids([0, 1, 2]),
            "Series::with_series_ids",
            "`series_ids` has 3 entries",
        ),
        (
            two().with_series_ids([0, i32::MIN]),
            "Series::with_series_ids",
            "`series_ids[1]` is i32::MIN",
        ),
        (
            two().with_timestamps([0]),
            "Series::with_timestamps",
            "`timestamps` has 1 entries",
        ),
        (
            two().with_interval(0),
            "Series::with_interval",
            "`interval_seconds` must be positive; got 0",
        ),
        (
            two().with_interval(-60),
            "Series::with_interval",
            "`interval_seconds` must be positive; got -60",
        ),
    ];
    for (result, want_what, want_reason) in cases {
        let (what, reason) = input_error(result);
        assert_eq!(what, want_what, "{reason}");
        assert!(
            reason.contains(want_reason),
            "{what}: {reason:?} lacks {want_reason:?}"
        );
    }
}

#[test]
fn series_padded_past_max_elements_are_too_large_before_allocating() {
    // 2^17 one-step series and one of 2^16 steps: 2^17 + 2^16 values given, but padded to
    // [1, 2^17 + 1, 2^16], past MAX_ELEMENTS = 2^32.
    let mut rows = vec![vec![1.0f32]; 1 << 17];
    rows.push(vec![0.0; 1 << 16]);
    match Series::from_variates(&rows) {
        Err(Error::TooLarge {
            shape,
            elements,
            limit,
            ..
        }) => {
            assert_eq!(shape, [1, (1 << 17) + 1, 1 << 16]);
            assert_eq!(elements, ((1u128 << 17) + 1) << 16);
            assert_eq!(limit, MAX_ELEMENTS);
        }
        other => panic!("expected Error::TooLarge, got {other:?}"),
    }
}

/// Two items of two variates (of 20, 13, 17 and 0 steps; a NaN at step 5 of the third), as
/// rows for `Series` and as the `[2, 2, 20]` values and mask built by hand from a full grid.
fn ragged_batch() -> (Vec<Vec<Vec<f32>>>, Tensor<3>, Tensor<3, Bool>) {
    let t = 20;
    let value = |s: usize, k: usize| 10.0 + s as f32 + (k as f32 * 0.7 + s as f32).sin();
    let lengths = [20, 13, 17, 0];
    let nan_at = (2, 5); // series 2, step 5 of its own 17
    let mut rows: Vec<Vec<f32>> = (0..4)
        .map(|s| (t - lengths[s]..t).map(|k| value(s, k)).collect())
        .collect();
    rows[nan_at.0][nan_at.1] = f32::NAN;
    let batch = vec![rows[..2].to_vec(), rows[2..].to_vec()];
    let (mut grid, mut mask) = (Vec::new(), Vec::new());
    for (s, &len) in lengths.iter().enumerate() {
        for k in 0..t {
            let seen = k >= t - len && !(s == nan_at.0 && k == t - len + nan_at.1);
            grid.push(if seen { value(s, k) } else { 0.0 });
            mask.push(seen);
        }
    }
    let device = NdArray::new().device().clone();
    (
        batch,
        Tensor::from_data(TensorData::new(grid, [2, 2, t]), &device),
        Tensor::from_data(TensorData::new(mask, [2, 2, t]), &device),
    )
}

fn ids_tensor(ids: [i32; 4]) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [2, 2]),
        NdArray::new().device(),
    )
}

#[test]
fn toto_forecast_series_equals_the_forecast_of_hand_built_tensors() {
    let (batch, values, mask) = ragged_batch();
    let series = Series::from_batch(&batch)
        .unwrap()
        .with_series_ids([0, 1, 0, 0])
        .unwrap();
    let options = toto_fallback::ForecastOptions {
        prediction_length: 12,
        num_samples: Some(4),
        v1: toto_fallback::TotoSettings {
            samples_per_batch: 2,
            ..Default::default()
        },
        ..ForecastOptions::default()
    };
    // A fresh model on a backend of the same seed for each path: the same draws.
    let model = || Toto::from_dir(&NdArray::seeded(7), TOTO1).unwrap();
    let got = model()
        .predict(&common::request(&series, &options))
        .unwrap();
    let ids = ids_tensor([0, 1, 0, 0])
        .reshape([2, 2, 1])
        .expand([2, 2, 20]);
    let want = model()
        .forecast(values, Some(mask), Some(ids), &options)
        .unwrap();
    let got = common::values(got.samples().cloned().unwrap());
    assert!(got.iter().all(|x| x.is_finite()), "{got:?}");
    assert_eq!(got, common::values(want.samples().cloned().unwrap()));
}

#[test]
fn toto2_forecast_series_equals_the_forecast_of_hand_built_tensors() {
    let (batch, values, mask) = ragged_batch();
    let series = Series::from_batch(&batch)
        .unwrap()
        .with_series_ids([0, 1, 0, 0])
        .unwrap();
    let options = toto_fallback::ForecastOptions {
        prediction_length: 12,
        ..ForecastOptions::default()
    };
    let model = Toto2::from_dir(&NdArray::new(), TOTO2).unwrap();
    let got = model.predict(&common::request(&series, &options)).unwrap();
    let want = model
        .forecast(
            values,
            Some(mask),
            Some(ids_tensor([0, 1, 0, 0])),
            None,
            &options,
        )
        .unwrap();
    let got = common::values(got.median().unwrap());
    assert!(got.iter().all(|x| x.is_finite()), "{got:?}");
    assert_eq!(got, common::values(want.median().unwrap()));
}

#[test]
fn auto_forecast_series_equals_auto_forecast_for_both_generations() {
    let (batch, values, mask) = ragged_batch();
    let series = Series::from_batch(&batch)
        .unwrap()
        .with_series_ids([3, 3, 1, 2])
        .unwrap()
        .with_timestamps([0, 0, 60, 60])
        .unwrap()
        .with_interval(60)
        .unwrap();
    let mut options = toto_fallback::ForecastOptions::new(10);
    options.num_samples = Some(4);
    options.v1.samples_per_batch = 4;
    for dir in [TOTO1, TOTO2] {
        let model = || AutoToto::from_dir(&NdArray::seeded(3), dir).unwrap();
        let got = model()
            .predict(&common::request(&series, &options))
            .unwrap();
        let want = model()
            .forecast(
                values.clone(),
                Some(mask.clone()),
                Some(ids_tensor([3, 3, 1, 2])),
                &options,
            )
            .unwrap();
        assert_eq!(got.mean().dims(), [2, 2, 10]);
        assert_eq!(
            common::values(got.quantile(0.9).unwrap()),
            common::values(want.quantile(0.9).unwrap()),
            "{dir}"
        );
    }
}

#[test]
fn forecast_series_checks_the_options_before_uploading() {
    let series = Series::from_values([1.0, 2.0, 3.0]).unwrap();
    let cpu = NdArray::new();
    let toto = Toto::from_dir(&cpu, TOTO1).unwrap();
    let options = toto_fallback::ForecastOptions {
        prediction_length: 0,
        ..ForecastOptions::default()
    };
    let err = toto
        .predict(&common::request(&series, &options))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Input { what: "Toto::forecast", kind: toto_fallback::InputKind::OutOfRange, reason } if reason.contains("prediction_length")),
        "{err:?}"
    );
    let toto2 = Toto2::from_dir(&cpu, TOTO2).unwrap();
    let options = toto_fallback::ForecastOptions {
        prediction_length: usize::MAX,
        ..ForecastOptions::default()
    };
    let err = toto2
        .predict(&common::request(&series, &options))
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}
