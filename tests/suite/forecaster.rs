//! The one forecasting interface: the same generic code over `Toto`, `Toto2` and `AutoToto`,
//! and the refusals every generation gives alike.

use crate::common;
use toto_fallback::forecast::read_series;
use toto_fallback::{
    AutoToto, Error, Forecast, ForecastOptions, ForecastRequest, Forecaster, Generation, InputKind,
    NdArray, Series, Toto, Toto2,
};

const TOTO1: &str = "tests/fixtures/tiny";
const TOTO2: &str = "tests/fixtures/toto2-tiny";

/// Two items of two variates, of different lengths, one value missing.
fn batch() -> Series {
    let wave = |n: usize, phase: f32| -> Vec<f32> {
        (0..n)
            .map(|t| 5.0 + (t as f32 / 4.0 + phase).sin())
            .collect()
    };
    let mut gap = wave(40, 0.3);
    gap[7] = f32::NAN;
    Series::from_batch(&[vec![wave(40, 0.0), gap], vec![wave(33, 1.0), wave(40, 2.0)]]).unwrap()
}

/// What every model must do alike, written once over the trait: shapes, the ordering of the
/// quantiles, and the refusals.
fn behaves<M: Forecaster>(model: &M, generation: Generation) {
    assert_eq!(model.generation(), generation);
    assert!(model.parameter_count() > 0);
    let horizon = 2 * model.patch_size() + 3; // not a whole number of patches
    let request = ForecastRequest::new(batch(), horizon).with_samples(Some(32));
    let forecast = model.predict(&request).unwrap();
    assert_eq!(forecast.mean().dims(), [2, 2, horizon]);
    match (&forecast, generation) {
        (Forecast::Samples { paths, .. }, Generation::V1) => {
            assert_eq!(paths.dims(), [2, 2, horizon, 32]);
        }
        (Forecast::Quantiles { knots, .. }, Generation::V2) => {
            assert_eq!(knots.values().dims(), [2, 2, horizon, 9]);
        }
        (other, g) => panic!("{g} gave {other:?}"),
    }
    // Quantiles ordered at every step of every series, the median between them.
    let at = forecast.quantiles_at(&[0.1, 0.5, 0.9]).unwrap();
    assert_eq!(at.dims(), [2, 2, horizon, 3]);
    let values = common::values(at);
    for step in values.chunks(3) {
        assert!(
            step[0] <= step[1] && step[1] <= step[2],
            "{generation}: quantiles out of order: {step:?}"
        );
        assert!(step.iter().all(|x| x.is_finite()), "{generation}: {step:?}");
    }
    let median = read_series(forecast.median().unwrap()).unwrap();
    assert_eq!(
        (median.len(), median[1].len(), median[1][0].len()),
        (2, 2, horizon)
    );
    assert_eq!(forecast.draw(5).unwrap().dims(), [2, 2, horizon, 5]);

    // Refusals, alike whatever the generation.
    let input = |result: toto_fallback::Result<Forecast<M::Backend>>, needle: &str| match result {
        Err(Error::Input { reason, .. }) => {
            assert!(
                reason.contains(needle),
                "{generation}: {reason:?} lacks {needle:?}"
            );
        }
        other => panic!("{generation}: expected Error::Input about {needle}, got {other:?}"),
    };
    input(
        model.predict(&ForecastRequest::new(batch(), 0)),
        "prediction_length must be at least 1",
    );
    let mut huge = request.clone();
    huge.options.prediction_length = usize::MAX / 2;
    assert!(
        matches!(model.predict(&huge), Err(Error::TooLarge { .. })),
        "{generation}: a horizon of usize::MAX / 2 must be TooLarge"
    );
    // The warm-up checks as the forecast does.
    assert!(model.warm_up([1, 1, 8], &ForecastOptions::new(0)).is_err());
    assert!(
        model
            .warm_up([1, 2, 16], &ForecastOptions::new(4).with_samples(Some(4)))
            .is_ok()
    );
}

#[test]
fn one_generic_function_serves_every_model() {
    let cpu = NdArray::seeded(11);
    behaves(&Toto::from_dir(&cpu, TOTO1).unwrap(), Generation::V1);
    behaves(&Toto2::from_dir(&cpu, TOTO2).unwrap(), Generation::V2);
    behaves(&AutoToto::from_dir(&cpu, TOTO1).unwrap(), Generation::V1);
    behaves(&AutoToto::from_dir(&cpu, TOTO2).unwrap(), Generation::V2);
}

/// `AutoToto` forecasts what the model it holds forecasts, bit for bit, from the same seed.
#[test]
fn auto_toto_predicts_as_the_model_it_holds() {
    let request = ForecastRequest::new(batch(), 10).with_samples(Some(8));
    let v1 = Toto::from_dir(&NdArray::seeded(5), TOTO1)
        .unwrap()
        .predict(&request);
    let auto1 = AutoToto::from_dir(&NdArray::seeded(5), TOTO1)
        .unwrap()
        .predict(&request);
    assert_eq!(
        common::values(v1.unwrap().samples().unwrap().clone()),
        common::values(auto1.unwrap().samples().unwrap().clone())
    );
    let v2 = Toto2::from_dir(&NdArray::seeded(5), TOTO2)
        .unwrap()
        .predict(&request);
    let auto2 = AutoToto::from_dir(&NdArray::seeded(5), TOTO2)
        .unwrap()
        .predict(&request);
    assert_eq!(
        common::values(v2.unwrap().median().unwrap()),
        common::values(auto2.unwrap().median().unwrap())
    );
}

/// A mean-mode forecast is `Forecast::Mean`: its type says it has no distribution, and the
/// questions only a distribution answers are errors that say what to do.
#[test]
fn a_mean_forecast_has_only_its_mean() {
    let model = Toto::from_dir(&NdArray::seeded(1), TOTO1).unwrap();
    let forecast = model
        .predict(&ForecastRequest::new(batch(), 8).with_samples(None))
        .unwrap();
    assert!(matches!(forecast, Forecast::Mean(_)), "{forecast:?}");
    assert!(forecast.samples().is_none() && forecast.quantiles().is_none());
    for err in [
        forecast.median().unwrap_err(),
        forecast.std().unwrap_err(),
        forecast.draw(1).unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(text.contains("num_samples"), "{text}");
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
    assert_eq!(forecast.into_mean().dims(), [2, 2, 8]);
}

/// Known covariates: Toto 2.0 uses them (they change the forecast), Toto 1.0 refuses them by
/// name, and covariates of unequal lengths (which `Series` would left-pad out of alignment)
/// are refused.
#[test]
fn covariates_inform_toto2_and_are_refused_where_unusable() {
    let cpu = NdArray::seeded(2);
    let horizon = 8;
    let known: Vec<f32> = (0..48).map(|t| (t % 7) as f32).collect();
    let covariates = Series::from_batch(&[vec![known.clone()], vec![known.clone()]]).unwrap();
    let plain = ForecastRequest::new(batch(), horizon);
    let with = plain.clone().with_covariates(covariates.clone());
    let v2 = Toto2::from_dir(&cpu, TOTO2).unwrap();
    let a = common::values(v2.predict(&plain).unwrap().median().unwrap());
    let b = common::values(v2.predict(&with).unwrap().median().unwrap());
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b, "the covariates changed nothing");

    let v1 = Toto::from_dir(&cpu, TOTO1).unwrap();
    let err = v1.predict(&with).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Input {
                kind: InputKind::Unusable,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("Toto 1.0 takes no known covariates"),
        "{err}"
    );

    let ragged = Series::from_batch(&[vec![known.clone()], vec![known[..40].to_vec()]]).unwrap();
    let err = v2
        .predict(&plain.clone().with_covariates(ragged))
        .unwrap_err()
        .to_string();
    assert!(err.contains("covariate 0 of item 1 has 40 steps"), "{err}");
    let one_item = Series::from_values(&known).unwrap();
    let err = v2
        .predict(&plain.with_covariates(one_item))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the covariates have 1 items and the series 2"),
        "{err}"
    );
}

/// A directory of one generation given to the other's loader names the generation and the
/// loader to use, instead of a missing key.
#[test]
fn the_wrong_generations_loader_says_which_to_use() {
    let cpu = NdArray::seeded(0);
    let err = Toto2::from_dir(&cpu, TOTO1).unwrap_err();
    assert!(matches!(err, Error::WrongGeneration { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "Toto 1.0",
        "embed_dim",
        "Toto::from_dir",
        "AutoToto::from_dir",
    ] {
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
    let text = Toto::from_dir(&cpu, TOTO2).unwrap_err().to_string();
    for needle in [
        "Toto 2.0",
        "d_model",
        "Toto2::from_dir",
        "AutoToto::from_dir",
    ] {
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
}

/// `ForecastOptions::with_samples` keeps the sample batch a divisor of the count.
#[test]
fn with_samples_picks_a_dividing_batch() {
    for (n, want) in [
        (1, 1),
        (100, 100),
        (256, 256),
        (300, 150),
        (1000, 250),
        (257, 1),
    ] {
        let options = ForecastOptions::new(4).with_samples(Some(n));
        assert_eq!(options.v1.samples_per_batch, want, "num_samples {n}");
        assert_eq!(n % options.v1.samples_per_batch, 0);
    }
}
