//! Toto 2.0 against two toto-2 2.0.0 fixtures made by toto2_fixture.py (torch 2.11, CPU, f32):
//! every intermediate of `forward`, its quantiles, loc and scale, and the five forecasts.
//!
//! - tests/fixtures/toto2-tiny (`toto2_fixture.py OUT tiny`): patch 16, D 64, 4 heads over 2
//!   key/value groups, 4 layers in groups of 2 (variate layers first), norm and q/k-norm
//!   weights, no biases, no xPos. B 2, V 3, 96 steps with gaps, an unobserved leading patch, a
//!   partly observed one and two series groups.
//! - tests/fixtures/toto2-other (`toto2_fixture.py OUT other`): patch 8, D 48, 6 heads over 3
//!   groups, 6 layers in groups of 3 (variate layers last), xPos, per-dimension query scale,
//!   every bias, q/k-norm weights without block-norm weights, residual multiplier 1.5.
//!
//! Forecast cases (fixture_meta.json): `single` (one pass), `observed_fast` (the gap-free series,
//! `has_missing_values = false`), `block` (block decoding with median feedback), `capped` (the
//! real-space cap and the scaler backfill) and `exogenous` (two known covariates).
//!
//! Tolerance: `|got − want| <= 1e-5 · max(1, |want|)` (the scaled error).

use burn::tensor::{Bool, Int, Tensor};
use toto_fallback::toto2::{Covariates, LEVELS, Precision, Toto2};
use toto_fallback::{Backend, Error, LayerOps, Op};
#[allow(unused_imports)]
use toto_fallback::{ForecastOptions, Forecaster};

use crate::common;
use crate::toto::{Reference, assert_close, scaled_error};

const TINY: &str = "tests/fixtures/toto2-tiny";
const OTHER: &str = "tests/fixtures/toto2-other";
const FIXTURES: [&str; 2] = [TINY, OTHER];

/// Half precision's bound on the forecasts' scaled error against the f32 fixtures. f16 keeps 11
/// significant bits (a rounding is at most 2^-11 ≈ 4.9e-4); measured on lavapipe (2026-11-26)
/// with every product but the head's readout in f16: 3.6e-4 to 1.1e-3 over the `single` and
/// `block` cases. bf16 keeps 8 bits, so 8× that; untested: no adapter measured so far (lavapipe,
/// an H100 under Vulkan) has bf16 arithmetic, so the test checks that it is refused there.
const HALF_TOL: f64 = 3e-3;
const BF16_TOL: f64 = 2.4e-2;

fn load<B: LayerOps>(b: &B, dir: &str) -> Toto2<B> {
    Toto2::from_dir(b, dir).unwrap_or_else(|e| panic!("{dir} loads: {e}"))
}

/// The fixture's inputs: target, mask, series ids.
fn inputs(
    reference: &Reference,
    device: &burn::tensor::Device,
) -> (Tensor<3>, Tensor<3, Bool>, Tensor<2, Int>) {
    let target = reference.f32::<3>("input.target", device);
    let mask = reference
        .f32::<3>("input.target_mask", device)
        .greater_elem(0.5);
    let ids = reference.f32::<2>("input.series_ids", device).int();
    (target, mask, ids)
}

/// The scaled error of `model`'s forecast of the fixture's `case` against toto-2's quantiles:
/// `(error, index, got, want)` of the worst element ([`scaled_error`]).
fn forecast_error<B: LayerOps>(
    model: &Toto2<B>,
    reference: &Reference,
    (target, mask, ids): &(Tensor<3>, Tensor<3, Bool>, Tensor<2, Int>),
    case: &str,
) -> (f64, usize, f64, f64) {
    let dir = reference.dir;
    let forecast = model
        .forecast(
            target.clone(),
            Some(mask.clone()),
            Some(ids.clone()),
            None,
            &case_options(dir, case),
        )
        .unwrap_or_else(|e| panic!("{dir}: {}: {case}: {e}", model.precision()));
    let got = forecast
        .quantiles()
        .unwrap()
        .values()
        .clone()
        .permute([3, 0, 1, 2]);
    scaled_error(reference, &format!("forecast.{case}"), got)
}

fn check_forward<B: LayerOps>(b: &B, dir: &'static str) {
    let reference = Reference::load_from(dir);
    let model = load(b, dir);
    let (target, mask, ids) = inputs(&reference, b.device());
    let mut acts = std::collections::HashMap::new();
    let out = model
        .forward_hooked(target, mask, ids, &mut |name, t| {
            acts.insert(name.to_owned(), t);
        })
        .unwrap();
    assert_close(&reference, "act.patch_embed", acts["patch_embed"].clone());
    for layer in 0..model.config().num_layers {
        for part in ["norm1", "attention", "out"] {
            let name = format!("layer{layer}.{part}");
            assert_close(&reference, &format!("act.{name}"), acts[&name].clone());
        }
    }
    assert_close(&reference, "act.out_norm", acts["out_norm"].clone());
    assert_close(&reference, "forward.quantiles", out.quantiles);
    assert_close(&reference, "forward.loc", out.loc);
    assert_close(&reference, "forward.scale", out.scale);
}

on_backends!(
    toto2_forward_matches_toto2,
    [ndarray, ndarray_portable, ndarray_burn, flex, fallback],
    |b| {
        for dir in FIXTURES {
            check_forward(&*b, dir);
        }
    }
);

/// One forecast case of a fixture: its options, from fixture_meta.json.
fn case_options(dir: &str, case: &str) -> ForecastOptions {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/fixture_meta.json")).unwrap())
            .unwrap();
    let case = &meta["cases"][format!("forecast.{case}")];
    let kwargs = &case["kwargs"];
    toto_fallback::ForecastOptions {
        prediction_length: case["horizon"].as_u64().unwrap() as usize,
        progress: None,
        v2: toto_fallback::Toto2Settings {
            decode_block_size: kwargs["decode_block_size"].as_u64().map(|n| n as usize),
            has_missing_values: kwargs["has_missing_values"].as_bool().unwrap_or(true),
            scaler_fallback_min_obs: kwargs["scaler_fallback_min_obs"].as_u64().unwrap_or(0)
                as usize,
            quantile_real_cap_k: kwargs["quantile_real_cap_k"].as_f64().unwrap_or(0.0),
        },
        ..toto_fallback::ForecastOptions::default()
    }
}

fn check_forecasts<B: LayerOps>(b: &B, dir: &'static str) {
    let reference = Reference::load_from(dir);
    let model = load(b, dir);
    let dev = b.device();
    let (target, mask, ids) = inputs(&reference, dev);
    for case in ["single", "observed_fast", "block", "capped", "exogenous"] {
        let options = case_options(dir, case);
        let (target, mask) = if case == "observed_fast" {
            let full = reference.f32::<3>("input.full_target", dev);
            let all = Tensor::<3, Int>::ones(full.dims(), dev).bool();
            (full, all)
        } else {
            (target.clone(), mask.clone())
        };
        let covariates = (case == "exogenous").then(|| {
            let values = reference.f32::<3>("exog.known_dynamic", dev);
            Covariates {
                mask: Tensor::<3, Int>::ones(values.dims(), dev).bool(),
                values,
                series_ids: reference
                    .f32::<2>("exog.known_dynamic_series_ids", dev)
                    .int(),
            }
        });
        let forecast = model
            .forecast(
                target,
                Some(mask),
                Some(ids.clone()),
                covariates.as_ref(),
                &options,
            )
            .unwrap_or_else(|e| panic!("{dir}: {case}: {e}"));
        let knots = forecast.quantiles().expect("a quantile forecast");
        assert_eq!(knots.levels(), LEVELS);
        let got = knots.values().clone().permute([3, 0, 1, 2]); // [9, B, V, H]
        assert_close(&reference, &format!("forecast.{case}"), got);
    }
}

on_backends!(
    toto2_forecasts_match_toto2,
    [ndarray, ndarray_portable, flex, fallback],
    |b| {
        for dir in FIXTURES {
            check_forecasts(&*b, dir);
        }
    }
);

/// Half precision ([`Precision`]) against the f32 fixtures: NdArray refuses it with a typed
/// error; on a wgpu adapter with 16-bit shaders every forecast case stays within
/// `HALF_TOL` of toto-2's f32 quantiles (scaled error), and differs from them (the products
/// really ran in 16 bits).
#[test]
fn toto2_half_precision_stays_near_the_f32_reference() {
    let cpu = toto_fallback::NdArray::new();
    let on_cpu = load(&cpu, TINY);
    assert!(on_cpu.supports_precision(Precision::F32));
    assert!(!on_cpu.supports_precision(Precision::F16));
    match on_cpu.with_precision(Precision::F16) {
        Err(e @ Error::PrecisionUnsupported { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("f16") && message.contains("Precision::F32"),
                "{message}"
            );
        }
        other => panic!(
            "NdArray has no f16 arithmetic, got {:?}",
            other.map(|m| m.precision())
        ),
    }
    let Some(b) = common::fallback(4) else { return };
    let mut ran = Vec::new();
    for dir in FIXTURES {
        let reference = Reference::load_from(dir);
        let fixture_inputs = inputs(&reference, b.device());
        for (precision, tol) in [(Precision::F16, HALF_TOL), (Precision::Bf16, BF16_TOL)] {
            let fresh = load(&*b, dir);
            let supported = fresh.supports_precision(precision);
            let model = match fresh.with_precision(precision) {
                Ok(model) => model,
                Err(Error::PrecisionUnsupported { .. }) if !supported => {
                    eprintln!("{}: no {precision} arithmetic, refused", b.name());
                    continue;
                }
                Err(e) => panic!("{dir}: {precision} (supported: {supported}): {e}"),
            };
            assert!(
                supported,
                "{precision} accepted where supports_precision says no"
            );
            // Rounded once: the same precision again is a no-op, another one is refused.
            let model = model.with_precision(precision).unwrap();
            let other = if precision == Precision::F16 {
                Precision::F32
            } else {
                Precision::F16
            };
            assert!(
                matches!(
                    load(&*b, dir)
                        .with_precision(precision)
                        .unwrap()
                        .with_precision(other),
                    Err(Error::Input { .. })
                ),
                "{precision} then {other}"
            );
            assert_eq!(model.precision(), precision);
            // Block decoding twice on one fixture only: each case compiles its own 16-bit
            // kernels, slow on a software adapter.
            let cases: &[&str] = if dir == TINY {
                &["single", "block"]
            } else {
                &["single"]
            };
            for &case in cases {
                let (err, at, g, w) = forecast_error(&model, &reference, &fixture_inputs, case);
                eprintln!("{dir}: {precision}: {case}: scaled error {err:.2e}");
                assert!(
                    err <= tol,
                    "{dir}: {precision}: {case}: scaled error {err:.2e} at {at} (got {g}, want {w})"
                );
                assert!(
                    err > 1e-5,
                    "{dir}: {precision}: {case}: as exact as f32 ({err:.2e})"
                );
            }
            ran.push(precision);
        }
    }
    eprintln!("half precision ran on {}: {ran:?}", b.name());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        // lavapipe has 16-bit float shaders.
        assert!(ran.contains(&Precision::F16), "{} refused f16", b.name());
    }
}

/// `NdArray::with_weights`: 16-bit weights on the x86 and the portable kernels keep every
/// forecast case near toto-2's f32 quantiles (within the GPU half precision's bounds: here
/// only the weights are rounded) and really round; the model still computes in f32.
/// Measured on both fixtures (2026-12-08, AVX-512): f16 2.8e-4 to 9.4e-4, bf16 1.9e-3 to 8e-3,
/// the two kernels alike.
#[test]
fn sixteen_bit_cpu_weights_stay_near_the_f32_reference() {
    use toto_fallback::{CpuKernels, NdArray};
    for kernels in [CpuKernels::Auto, CpuKernels::Portable] {
        for (weights, tol) in [(Precision::F16, HALF_TOL), (Precision::Bf16, BF16_TOL)] {
            let cpu = NdArray::seeded(0)
                .with_kernels(kernels)
                .with_weights(weights);
            for dir in FIXTURES {
                let reference = Reference::load_from(dir);
                let fixture_inputs = inputs(&reference, cpu.device());
                let model = load(&cpu, dir);
                assert_eq!(model.precision(), Precision::F32);
                for case in ["single", "block"] {
                    let (err, at, g, w) = forecast_error(&model, &reference, &fixture_inputs, case);
                    eprintln!("{dir}: {kernels} {weights}: {case}: scaled error {err:.2e}");
                    assert!(
                        err <= tol && err > 1e-6,
                        "{dir}: {kernels} {weights}: {case}: scaled error {err:.2e} at {at} \
                         (got {g}, want {w})"
                    );
                }
            }
        }
    }
}

/// A model takes its backend's precision when it is loaded (`Backend::precision`): f32 on the
/// CPU backends; on wgpu what `Wgpu::with_precision` set, which a `FallbackBackend` passes on.
/// An f16 load forecasts within `HALF_TOL` of toto-2's f32 quantiles, and asking it for f32
/// afterwards is refused with the way to get it (an f32 backend). bf16 is refused on the
/// backend where the adapter has none.
#[test]
fn a_model_takes_its_backends_precision() {
    use toto_fallback::{Backend, FallbackBackend, NdArray};
    let cpu = NdArray::new();
    assert_eq!(cpu.precision(), Precision::F32);
    assert_eq!(load(&cpu, TINY).precision(), Precision::F32);
    let Some(gpu) = common::wgpu(5) else { return };
    assert_eq!(
        gpu.precision(),
        Precision::F32,
        "the suite's adapter is set to f32"
    );
    let half = match gpu.clone().with_precision(Precision::F16) {
        Ok(half) => half,
        Err(e @ Error::PrecisionUnsupported { .. }) => {
            eprintln!("{}: no f16, refused: {e}", gpu.name());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    if !gpu.device().supports_dtype(burn::tensor::DType::BF16) {
        assert!(matches!(
            gpu.clone().with_precision(Precision::Bf16),
            Err(Error::PrecisionUnsupported { .. })
        ));
    }
    let b = FallbackBackend::new(half, NdArray::seeded(5));
    assert_eq!(b.precision(), Precision::F16);
    let model = load(&b, TINY);
    assert_eq!(model.precision(), Precision::F16);
    let reference = Reference::load_from(TINY);
    let fixture_inputs = inputs(&reference, b.device());
    let (err, at, g, w) = forecast_error(&model, &reference, &fixture_inputs, "single");
    eprintln!("f16 from the backend: scaled error {err:.2e}");
    assert!(
        err <= HALF_TOL && err > 1e-5,
        "scaled error {err:.2e} at {at} (got {g}, want {w})"
    );
    match model.with_precision(Precision::F32) {
        Err(e @ Error::Input { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("with_precision(Precision::F32)") && text.contains("before loading"),
                "{text}"
            );
        }
        other => panic!(
            "f16 weights back to f32: {:?}",
            other.map(|m| m.precision())
        ),
    }
}

#[test]
fn toto2_forecast_forwards_nothing_on_the_fallback() {
    let Some(b) = common::fallback(3) else { return };
    let model = load(&*b, OTHER);
    let dev = b.device();
    let reference = Reference::load_from(OTHER);
    let (target, mask, ids) = inputs(&reference, dev);
    for block in [None, Some(16)] {
        let options = toto_fallback::ForecastOptions {
            prediction_length: 43,
            v2: toto_fallback::Toto2Settings {
                decode_block_size: block,
                ..toto_fallback::Toto2Settings::gluonts()
            },
            ..ForecastOptions::gluonts(43)
        };
        let f = model
            .forecast(
                target.clone(),
                Some(mask.clone()),
                Some(ids.clone()),
                None,
                &options,
            )
            .unwrap();
        // The result stays on the GPU device, and the median is finite.
        assert_eq!(f.median().unwrap().device(), *dev);
        assert!(
            common::values(f.median().unwrap())
                .iter()
                .all(|x| x.is_finite())
        );
    }
    let report = b.report();
    if b.gpu().supports(Op::PatchScaler) {
        let forwarded = report.total(toto_fallback::Placement::Forwarded);
        assert_eq!(forwarded.calls, 0, "{report}");
        assert_eq!(forwarded.bytes_to_cpu, 0, "{report}");
        assert!(report.op(Op::PatchScaler).native.calls >= 4, "{report}");
    }
}

#[test]
fn toto2_loader_names_every_bad_key_and_the_wrong_generation() {
    let cpu = toto_fallback::NdArray::seeded(0);
    // Toto 1.0's directory: the error names the generation and the loaders to use, not the
    // first Toto 2.0 key its config lacks.
    match Toto2::from_dir(&cpu, "tests/fixtures/tiny") {
        Err(
            e @ Error::WrongGeneration {
                found: "Toto 1.0", ..
            },
        ) => {
            let text = e.to_string();
            assert!(
                text.contains("Toto::from_dir") && text.contains("AutoToto"),
                "{text}"
            );
            assert!(!text.contains("missing field"), "{text}");
        }
        other => panic!("expected Error::WrongGeneration, got {other:?}"),
    }
    // Toto 2.0's tiny config with the other fixture's weights: every shape differs.
    let config =
        toto_fallback::toto2::Toto2Config::from_file(format!("{TINY}/config.json")).unwrap();
    let bytes = std::fs::read(format!("{OTHER}/model.safetensors")).unwrap();
    match Toto2::from_safetensors_bytes(&cpu, config, bytes) {
        Err(Error::Checkpoint(p)) => {
            assert!(
                p.mismatched
                    .iter()
                    .any(|m| m.starts_with("patch_proj.linear1.weight")),
                "{p}"
            );
            assert!(p.missing.iter().any(|m| m.ends_with("norm1.weight")), "{p}");
            assert!(
                p.unexpected.iter().any(|m| m.ends_with("in_proj.bias")),
                "{p}"
            );
        }
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

/// `f` with `target` and `mask` of the tiny fixture, on the CPU.
fn tiny_forecast(
    model: &Toto2<toto_fallback::NdArray>,
    target: Tensor<3>,
    mask: Tensor<3, Bool>,
    ids: Tensor<2, Int>,
) -> Vec<f64> {
    let f = model
        .forecast(
            target,
            Some(mask),
            Some(ids),
            None,
            &toto_fallback::ForecastOptions::gluonts(20),
        )
        .unwrap();
    common::values(f.quantiles().unwrap().values().clone())
}

#[test]
fn toto2_pads_short_contexts_and_masks_non_finite_values() {
    let cpu = toto_fallback::NdArray::seeded(0);
    let dev = cpu.device();
    let model = load(&cpu, TINY);
    let reference = Reference::load_from(TINY);
    let (target, mask, ids) = inputs(&reference, dev);
    // 90 steps (not a whole number of patches of 16) forecast as the same 90 steps left-padded
    // with 6 unobserved zeros: toto-2's GluonTS wrapper pads so.
    let short = target.clone().narrow(2, 6, 90);
    let short_mask = mask.clone().narrow(2, 6, 90);
    let padded = Tensor::cat(vec![Tensor::zeros([2, 3, 6], dev), short.clone()], 2);
    let padded_mask = Tensor::cat(
        vec![
            Tensor::<3, Int>::zeros([2, 3, 6], dev).bool(),
            short_mask.clone(),
        ],
        2,
    );
    let got = tiny_forecast(&model, short, short_mask, ids.clone());
    let want = tiny_forecast(&model, padded, padded_mask, ids.clone());
    assert_eq!(got, want, "a short context is the padded one");
    // A NaN and an infinity in the context count as unobserved.
    let poisoned = target.clone().slice_assign(
        [0..1, 0..1, 30..32],
        Tensor::from_floats([[[f32::NAN, f32::INFINITY]]], dev),
    );
    let masked = mask.clone().slice_assign(
        [0..1, 0..1, 30..32],
        Tensor::<3, Int>::zeros([1, 1, 2], dev).bool(),
    );
    let got = tiny_forecast(&model, poisoned, mask.clone(), ids.clone());
    let want = tiny_forecast(&model, target, masked, ids);
    assert_eq!(got, want, "non-finite values are masked");
    assert!(got.iter().all(|x| x.is_finite()));
}

#[test]
fn toto2_forecasts_a_context_of_one_patch_or_less() {
    // One patch of context has no steps before its last patch (that case once panicked in
    // burn's `narrow`). 4 steps forecast as the same steps left-padded to a whole patch.
    let cpu = toto_fallback::NdArray::seeded(0);
    let model = load(&cpu, TINY);
    let options = toto_fallback::ForecastOptions::gluonts(20);
    let four = [1.0f32, 3.0, 2.0, 4.0];
    let got = model
        .predict(&common::request(
            &toto_fallback::Series::from_values(four).unwrap(),
            &options,
        ))
        .unwrap();
    let padded: Vec<f32> = [f32::NAN; 12].into_iter().chain(four).collect();
    let want = model
        .predict(&common::request(
            &toto_fallback::Series::from_values(&padded).unwrap(),
            &options,
        ))
        .unwrap();
    let (got, want) = (
        common::values(got.into_mean()),
        common::values(want.into_mean()),
    );
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|x| x.is_finite()));
    assert_eq!(got, want, "4 steps are 16 with 12 unobserved");
}

#[test]
fn toto2_refuses_bad_inputs_and_options() {
    let cpu = toto_fallback::NdArray::seeded(0);
    let dev = cpu.device();
    let model = load(&cpu, TINY);
    let target = Tensor::<3>::ones([2, 3, 48], dev);
    let run = |t: Tensor<3>,
               m: Option<Tensor<3, Bool>>,
               i: Option<Tensor<2, Int>>,
               c: Option<&Covariates>,
               o: &ForecastOptions| { model.forecast(t, m, i, c, o).map(drop) };
    let input = |what: &str, r: Result<(), Error>| match r {
        Err(Error::Input { reason, .. }) => reason,
        other => panic!("{what}: expected Error::Input, got {other:?}"),
    };
    let o = toto_fallback::ForecastOptions::default();
    input(
        "horizon 0",
        run(
            target.clone(),
            None,
            None,
            None,
            &toto_fallback::ForecastOptions {
                prediction_length: 0,
                ..o.clone()
            },
        ),
    );
    input(
        "empty",
        run(Tensor::zeros([2, 0, 48], dev), None, None, None, &o),
    );
    input(
        "mask shape",
        run(
            target.clone(),
            Some(Tensor::<3, Int>::ones([2, 3, 47], dev).bool()),
            None,
            None,
            &o,
        ),
    );
    input(
        "ids shape",
        run(
            target.clone(),
            None,
            Some(Tensor::zeros([2, 2], dev)),
            None,
            &o,
        ),
    );
    let reason = input(
        "block",
        run(
            target.clone(),
            None,
            None,
            None,
            &toto_fallback::ForecastOptions {
                v2: toto_fallback::Toto2Settings {
                    decode_block_size: Some(20),
                    ..Default::default()
                },
                ..o.clone()
            },
        ),
    );
    assert!(reason.contains("multiple of the patch size"), "{reason}");
    input(
        "cap",
        run(
            target.clone(),
            None,
            None,
            None,
            &toto_fallback::ForecastOptions {
                v2: toto_fallback::Toto2Settings {
                    quantile_real_cap_k: -1.0,
                    ..Default::default()
                },
                ..o.clone()
            },
        ),
    );
    let covariates = |b: usize, t: usize| Covariates {
        values: Tensor::ones([b, 1, t], dev),
        mask: Tensor::<3, Int>::ones([b, 1, t], dev).bool(),
        series_ids: Tensor::zeros([b, 1], dev),
    };
    input(
        "covariate batch",
        run(target.clone(), None, None, Some(&covariates(1, 48)), &o),
    );
    let reason = input(
        "covariate length",
        run(
            target.clone(),
            None,
            None,
            Some(&covariates(2, 48 + 64 + 1)),
            &o,
        ),
    );
    assert!(reason.contains("at most"), "{reason}");
    // Covariates up to the horizon are accepted.
    run(
        target.clone(),
        None,
        None,
        Some(&covariates(2, 48 + 64)),
        &o,
    )
    .unwrap();
    // forward needs whole patches.
    let r = model.forward(
        Tensor::ones([1, 1, 20], dev),
        Tensor::<3, Int>::ones([1, 1, 20], dev).bool(),
        Tensor::zeros([1, 1], dev),
    );
    assert!(matches!(r, Err(Error::Input { .. })), "{r:?}");
}

#[test]
fn toto2_config_refuses_what_toto2_refuses() {
    use toto_fallback::toto2::Toto2Config;
    let base = std::fs::read_to_string(format!("{TINY}/config.json")).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut json: serde_json::Value = serde_json::from_str(&base).unwrap();
        match value {
            serde_json::Value::Null => json.as_object_mut().unwrap().remove(key),
            v => json.as_object_mut().unwrap().insert(key.to_owned(), v),
        };
        Toto2Config::from_json(&json.to_string())
    };
    let field = |r: toto_fallback::Result<Toto2Config>| match r {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected Error::Config, got {other:?}"),
    };
    // Each as toto-2's __post_init__ refuses it (configuration.py), naming the field.
    assert_eq!(field(with("dropout_p", 0.1.into())), "dropout_p");
    assert_eq!(field(with("num_groups", 3.into())), "num_groups");
    assert_eq!(field(with("num_layers", 3.into())), "num_layers");
    assert_eq!(field(with("num_heads", 3.into())), "num_heads");
    assert_eq!(
        field(with("residual_attn_ratio", serde_json::Value::Null)),
        "residual_attn_ratio"
    );
    assert_eq!(
        field(with("d_model", serde_json::Value::Null)),
        "config.json"
    );
    assert_eq!(
        field(with("num_output_patches", 2.into())),
        "num_output_patches"
    );
    // Unknown keys are dropped, as toto-2 drops them; heads_per_group is recomputed.
    let config = with("a_future_option", true.into()).unwrap();
    assert_eq!(config, with("heads_per_group", 99.into()).unwrap());
    assert_eq!(config.heads_per_group, 2);
}

#[test]
fn toto2_loads_sharded_and_half_precision_checkpoints() {
    use safetensors::{Dtype, SafeTensors};
    let cpu = toto_fallback::NdArray::seeded(0);
    let reference = Reference::load_from(TINY);
    let bytes = std::fs::read(format!("{TINY}/model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file.tensors();
    let dir = std::env::temp_dir().join(format!("toto2-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(format!("{TINY}/config.json"), dir.join("config.json")).unwrap();
    // Two shards (tensors alternately) and the index, as huggingface_hub writes them.
    let mut map = serde_json::Map::new();
    for shard in 0..2 {
        let name = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let views: Vec<_> = tensors
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == shard)
            .map(|(_, (n, v))| {
                map.insert(n.clone(), name.clone().into());
                (n.clone(), v.clone())
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(&name)).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let model = load(&cpu, dir.to_str().unwrap());
    let (target, mask, ids) = inputs(&reference, cpu.device());
    let out = model
        .forward(target.clone(), mask.clone(), ids.clone())
        .unwrap();
    assert_close(&reference, "forward.quantiles", out.quantiles.clone());
    // The same weights in bf16: loaded (converted to f32), close to the f32 model.
    let halves: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, v)| {
            let data: Vec<u8> = v
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    burn::tensor::bf16::from_f32(x).to_le_bytes()
                })
                .collect();
            (n.clone(), data, v.shape().to_vec())
        })
        .collect();
    let views: Vec<_> = halves
        .iter()
        .map(|(n, d, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::BF16, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let bf16 = safetensors::serialize(views, None).unwrap();
    let config = model.config().clone();
    let half = Toto2::from_safetensors_bytes(&cpu, config, bf16).unwrap();
    let got = common::values(half.forward(target, mask, ids).unwrap().quantiles);
    let want = common::values(out.quantiles);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max);
    assert!(worst < 0.1, "bf16 weights: scaled error {worst}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn toto2_refuses_oversized_requests_before_allocating() {
    let cpu = toto_fallback::NdArray::seeded(0);
    let model = load(&cpu, TINY);
    let target = Tensor::<3>::ones([1, 1, 32], cpu.device());
    for horizon in [1 << 40, usize::MAX] {
        let options = toto_fallback::ForecastOptions {
            prediction_length: horizon,
            ..ForecastOptions::default()
        };
        match model.forecast(target.clone(), None, None, None, &options) {
            Err(e @ Error::TooLarge { .. }) => {
                assert!(e.to_string().contains("Toto2::forecast"), "{e}")
            }
            other => panic!("horizon {horizon}: expected TooLarge, got {other:?}"),
        }
    }
}

#[test]
fn toto2_pads_covariates_with_a_short_context() {
    // A 90-step context (not whole patches of 16) with a covariate over context and horizon
    // forecasts as the explicitly left-padded context and covariate.
    let cpu = toto_fallback::NdArray::seeded(0);
    let dev = cpu.device();
    let model = load(&cpu, TINY);
    let reference = Reference::load_from(TINY);
    let (target, mask, ids) = inputs(&reference, dev);
    let (target, mask) = (target.narrow(2, 6, 90), mask.narrow(2, 6, 90));
    let covariate = |pad: usize| {
        let values: Vec<f32> = (0..2 * (pad + 110))
            .map(|i| {
                let t = i % (pad + 110);
                if t < pad {
                    0.0
                } else {
                    ((t - pad) as f32 / 7.0).sin() * 3.0
                }
            })
            .collect();
        let observed: Vec<bool> = (0..2 * (pad + 110))
            .map(|i| i % (pad + 110) >= pad)
            .collect();
        Covariates {
            values: Tensor::from_data(
                burn::tensor::TensorData::new(values, [2, 1, pad + 110]),
                dev,
            ),
            mask: Tensor::from_data(
                burn::tensor::TensorData::new(observed, [2, 1, pad + 110]),
                dev,
            ),
            series_ids: Tensor::zeros([2, 1], dev),
        }
    };
    let options = toto_fallback::ForecastOptions::gluonts(20);
    let run = |t: Tensor<3>, m: Tensor<3, Bool>, c: &Covariates| {
        let f = model
            .forecast(t, Some(m), Some(ids.clone()), Some(c), &options)
            .unwrap();
        common::values(f.quantiles().unwrap().values().clone())
    };
    let short = run(target.clone(), mask.clone(), &covariate(0));
    let padded_target = Tensor::cat(vec![Tensor::zeros([2, 3, 6], dev), target], 2);
    let padded_mask = Tensor::cat(
        vec![Tensor::<3, Int>::zeros([2, 3, 6], dev).bool(), mask],
        2,
    );
    let padded = run(padded_target, padded_mask, &covariate(6));
    assert_eq!(short, padded);
}
