//! `MultiDevice`: a batch forecast over several devices equals one device's forecast of the
//! whole batch, in order, for even and uneven splits, for both generations; errors name the
//! device; the report sums the devices'. The exactness tests use several CPU backends (each
//! its own `NdArray`, seeded alike), where equal arithmetic gives equal bits; the wgpu test runs
//! the same adapter twice.

use burn::tensor::Tensor;
#[allow(unused_imports)]
use toto_fallback::Forecaster;
use toto_fallback::auto::AutoToto;
use toto_fallback::forecast::{Forecast, Progress, Series};
use toto_fallback::multi::{MultiDevice, split};
use toto_fallback::rng::DrawWindow;
use toto_fallback::toto::{ForecastOptions, Toto};
use toto_fallback::toto2::Toto2;
use toto_fallback::{
    Backend, Error, FallbackBackend, FallbackPolicy, LayerOps, MixtureParams, NdArray, Op,
    Placement,
};

use crate::common::{self, values};

const V1: &str = "tests/fixtures/tiny";
const V2: &str = "tests/fixtures/toto2-tiny";

/// `items` items of `v` variates of different lengths (up to `t` steps), distinct per item, with
/// a missing value, so that every item's forecast differs and padding is exercised.
fn batch(items: usize, v: usize, t: usize) -> Series {
    let rows: Vec<Vec<Vec<f32>>> = (0..items)
        .map(|b| {
            (0..v)
                .map(|j| {
                    let len = t - (b + j) % 7;
                    (0..len)
                        .map(|s| {
                            let x = s as f32;
                            if (b, j, s) == (1, 0, 5) {
                                f32::NAN
                            } else {
                                (x / (3.0 + b as f32)).sin() * (1.0 + j as f32)
                                    + 0.05 * x
                                    + b as f32
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    Series::from_batch(&rows).unwrap()
}

/// `n` CPU "devices", each its own backend seeded alike.
fn cpus(n: usize) -> Vec<NdArray> {
    (0..n).map(|_| NdArray::seeded(0)).collect()
}

fn bits<const D: usize>(t: &Tensor<D>) -> Vec<u32> {
    t.clone()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// Every tensor of two forecasts, bit for bit.
fn assert_same<B: LayerOps>(what: &str, got: &Forecast<B>, want: &Forecast<B>) {
    assert_eq!(got.mean().dims(), want.mean().dims(), "{what}: mean shape");
    assert_eq!(bits(got.mean()), bits(want.mean()), "{what}: mean");
    match (got.samples(), want.samples()) {
        (Some(g), Some(w)) => {
            assert_eq!(g.dims(), w.dims(), "{what}: samples shape");
            assert_eq!(bits(g), bits(w), "{what}: samples");
        }
        (None, None) => {}
        _ => panic!("{what}: one forecast has samples, the other not"),
    }
    match (got.quantiles(), want.quantiles()) {
        (Some(g), Some(w)) => {
            assert_eq!(g.levels(), w.levels(), "{what}: levels");
            assert_eq!(bits(g.values()), bits(w.values()), "{what}: knots");
        }
        (None, None) => {}
        _ => panic!("{what}: one forecast has quantiles, the other not"),
    }
}

#[test]
fn split_sizes_differ_by_one_at_most_and_cover_the_batch_in_order() {
    assert_eq!(split(7, 3), [0..3, 3..5, 5..7]);
    assert_eq!(split(6, 3), [0..2, 2..4, 4..6]);
    assert_eq!(split(2, 5), [0..1, 1..2]);
    assert_eq!(split(1, 1), vec![0..1]);
    assert!(split(0, 3).is_empty() && split(3, 0).is_empty());
    for items in 1..40 {
        for devices in 1..9 {
            let s = split(items, devices);
            assert_eq!(s.len(), devices.min(items));
            assert_eq!(s[0].start, 0);
            assert_eq!(s.last().unwrap().end, items);
            assert!(s.windows(2).all(|w| w[0].end == w[1].start));
            let (lo, hi) = (s.iter().map(|r| r.len()).min().unwrap(), s[0].len());
            assert!(hi - lo <= 1, "{items} over {devices}: {s:?}");
        }
    }
}

#[test]
fn toto1_sample_paths_over_devices_equal_one_device_for_uneven_splits() {
    let series = batch(5, 2, 40);
    let options = toto_fallback::ForecastOptions {
        prediction_length: 12,
        num_samples: Some(16),
        v1: toto_fallback::TotoSettings {
            samples_per_batch: 8,
            ..Default::default()
        },
        ..ForecastOptions::default()
    };
    let one = Toto::from_dir(&NdArray::seeded(0), V1).unwrap();
    one.backend().seed(7);
    let want = one.predict(&common::request(&series, &options)).unwrap();
    assert_eq!(want.samples().unwrap().dims(), [5, 2, 12, 16]);
    // 5 items over 2 (3 + 2), 3 (2 + 2 + 1) and 4 (2 + 1 + 1 + 1) devices, and over 7 (one each).
    for devices in [2, 3, 4, 7] {
        let many = MultiDevice::load(cpus(devices), |b| Toto::from_dir(b, V1)).unwrap();
        many.seed(7);
        let got = many.predict(&common::request(&series, &options)).unwrap();
        assert_same(&format!("Toto 1.0 on {devices} devices"), &got, &want);
    }
    // Another seed gives other paths (the comparison above can fail).
    let many = MultiDevice::load(cpus(3), |b| Toto::from_dir(b, V1)).unwrap();
    many.seed(8);
    let other = many.predict(&common::request(&series, &options)).unwrap();
    assert_ne!(
        bits(other.samples().unwrap()),
        bits(want.samples().unwrap())
    );
}

#[test]
fn toto1_mean_mode_and_toto2_over_devices_equal_one_device() {
    let series = batch(5, 3, 48);
    let mean_mode = toto_fallback::ForecastOptions {
        prediction_length: 20,
        num_samples: None,
        ..ForecastOptions::default()
    };
    let one = Toto::from_dir(&NdArray::seeded(0), V1).unwrap();
    let want = one.predict(&common::request(&series, &mean_mode)).unwrap();
    let many = MultiDevice::load(cpus(3), |b| Toto::from_dir(b, V1)).unwrap();
    let got = many.predict(&common::request(&series, &mean_mode)).unwrap();
    assert_same("Toto 1.0 mean mode on 3 devices", &got, &want);

    let options = toto_fallback::ForecastOptions::gluonts(40);
    let one = Toto2::from_dir(&NdArray::seeded(0), V2).unwrap();
    let want = one.predict(&common::request(&series, &options)).unwrap();
    for devices in [2, 3, 5] {
        let many = MultiDevice::load(cpus(devices), |b| Toto2::from_dir(b, V2)).unwrap();
        let got = many.predict(&common::request(&series, &options)).unwrap();
        assert_same(&format!("Toto 2.0 on {devices} devices"), &got, &want);
    }
}

#[test]
fn auto_toto_over_devices_equals_one_device_for_both_generations() {
    let series = batch(4, 2, 33);
    let mut options = toto_fallback::ForecastOptions::new(10);
    options.num_samples = Some(8);
    options.v1.samples_per_batch = 8;
    for dir in [V1, V2] {
        let one = AutoToto::from_dir(&NdArray::seeded(0), dir).unwrap();
        one.backend().seed(3);
        let want = one.predict(&common::request(&series, &options)).unwrap();
        let many = MultiDevice::load(cpus(3), |b| AutoToto::from_dir(b, dir)).unwrap();
        many.seed(3);
        let got = many.predict(&common::request(&series, &options)).unwrap();
        assert_same(&format!("AutoToto {dir} on 3 devices"), &got, &want);
    }
}

#[test]
fn the_progress_callback_hears_every_device_pass() {
    use std::sync::{Arc, Mutex};
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&heard);
    let options = toto_fallback::ForecastOptions {
        prediction_length: 16,
        num_samples: Some(8),
        progress: Some(Progress::new(move |s| {
            log.lock().unwrap().push((s.done, s.total))
        })),
        v1: toto_fallback::TotoSettings {
            samples_per_batch: 4,
            ..Default::default()
        },
        ..ForecastOptions::default()
    };
    let many = MultiDevice::load(cpus(3), |b| Toto::from_dir(b, V1)).unwrap();
    many.predict(&common::request(&batch(3, 1, 24), &options))
        .unwrap();
    let heard = heard.lock().unwrap();
    // One device's forecast: the prefill, then every step but the first per batch of paths.
    let (steps, batches) = (16 / 8, 8 / 4);
    let per_device = 1 + batches * (steps - 1);
    assert_eq!(heard.len(), 3 * per_device);
    assert!(heard.iter().all(|&(_, total)| total == 3 * per_device));
    assert_eq!(
        heard.iter().map(|&(done, _)| done).max(),
        Some(3 * per_device)
    );
}

/// Devices after the first work on threads of their own that last from call to call (burn
/// keeps an execution stream per thread: a new thread per call would start a new one each
/// time), the first on the calling thread; calls from several threads at once share them and
/// each gets the forecast it would get alone.
#[test]
fn each_device_keeps_its_thread_across_calls_and_callers() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::thread::{self, ThreadId};
    // The threads that reported progress, by name (the first device's: the caller's, unnamed).
    let seen: Arc<Mutex<BTreeMap<String, Vec<ThreadId>>>> = Arc::default();
    let log = Arc::clone(&seen);
    let options = toto_fallback::ForecastOptions {
        progress: Some(Progress::new(move |_| {
            let me = thread::current();
            let name = me.name().unwrap_or("unnamed").to_owned();
            log.lock().unwrap().entry(name).or_default().push(me.id());
        })),
        ..ForecastOptions::gluonts(24)
    };
    let series = batch(3, 2, 40);
    let many = MultiDevice::load(cpus(3), |b| Toto2::from_dir(b, V2)).unwrap();
    let first = many.predict(&common::request(&series, &options)).unwrap();
    let second = many.predict(&common::request(&series, &options)).unwrap();
    assert_same("the same call twice", &second, &first);
    {
        let seen = seen.lock().unwrap();
        for device in [1, 2] {
            let ids = &seen[&format!("toto-device-{device}")];
            assert!(
                ids.len() >= 2,
                "device {device} reported {} times",
                ids.len()
            );
            assert!(
                ids.iter().all(|id| *id == ids[0]),
                "device {device} worked on {} threads over two calls",
                ids.iter().collect::<std::collections::HashSet<_>>().len()
            );
        }
        assert_eq!(seen.len(), 3, "threads seen: {:?}", seen.keys());
    }
    // Four callers at once, each with another batch: each gets its own batch's forecast.
    let batches: Vec<Series> = (0..4).map(|i| batch(3 + i, 2, 30 + 3 * i)).collect();
    let alone: Vec<_> = batches
        .iter()
        .map(|s| many.predict(&common::request(s, &options)).unwrap())
        .collect();
    thread::scope(|scope| {
        let handles: Vec<_> = batches
            .iter()
            .map(|s| scope.spawn(|| many.predict(&common::request(s, &options)).unwrap()))
            .collect();
        for (i, (h, want)) in handles.into_iter().zip(&alone).enumerate() {
            assert_same(&format!("caller {i}"), &h.join().unwrap(), want);
        }
    });
}

/// Sample-mode options of a short horizon and four paths.
fn short_sampled() -> ForecastOptions {
    toto_fallback::ForecastOptions {
        prediction_length: 8,
        num_samples: Some(4),
        v1: toto_fallback::TotoSettings {
            samples_per_batch: 4,
            ..Default::default()
        },
        ..ForecastOptions::default()
    }
}

/// The error inside `err`, which must be device `index`'s failure on `items`.
fn device_source(err: &Error, index: usize, items: std::ops::Range<usize>) -> &Error {
    match err {
        Error::Device {
            index: i,
            items: Some(r),
            source,
            ..
        } if *i == index && *r == items => source,
        other => panic!("expected device {index}'s error on items {items:?}, got {other:?}"),
    }
}

/// `NdArray` whose next mixture draw panics once when `bug` is set: a backend with a bug.
#[derive(Debug, Clone)]
struct Flaky {
    cpu: NdArray,
    bug: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A backend of the user's own: the layer ops' compositions serve it.
impl LayerOps for Flaky {}

impl Backend for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn device(&self) -> &burn::tensor::Device {
        self.cpu.device()
    }
    fn supports(&self, op: Op) -> bool {
        self.cpu.supports(op)
    }
    fn seed(&self, seed: u64) {
        self.cpu.seed(seed)
    }
    fn uniform_unchecked<const D: usize>(
        &self,
        shape: [usize; D],
    ) -> toto_fallback::Result<Tensor<D>> {
        self.cpu.uniform_unchecked(shape)
    }
    fn standard_normal_unchecked<const D: usize>(
        &self,
        shape: [usize; D],
    ) -> toto_fallback::Result<Tensor<D>> {
        self.cpu.standard_normal_unchecked(shape)
    }
    fn standard_gamma_unchecked<const D: usize>(
        &self,
        alpha: Tensor<D>,
    ) -> toto_fallback::Result<Tensor<D>> {
        self.cpu.standard_gamma_unchecked(alpha)
    }
    fn student_t_mixture_unchecked(
        &self,
        params: MixtureParams,
        samples: usize,
    ) -> toto_fallback::Result<Tensor<2>> {
        if self.bug.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("a bug in the backend");
        }
        self.cpu.student_t_mixture_unchecked(params, samples)
    }
    fn with_draw_window(&self, window: DrawWindow) -> Option<Self> {
        Some(Flaky {
            cpu: self.cpu.with_draw_window(window)?,
            bug: self.bug.clone(),
        })
    }
}

/// A panic on a device's thread fails that call with an error naming the device and the panic;
/// the thread lives on, and the next call forecasts as one device does.
#[test]
fn a_panic_on_a_device_fails_the_call_and_the_device_serves_the_next() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let bug = Arc::new(AtomicBool::new(true));
    let devices = vec![
        Flaky {
            cpu: NdArray::seeded(0),
            bug: Arc::default(),
        },
        Flaky {
            cpu: NdArray::seeded(0),
            bug: Arc::clone(&bug),
        },
    ];
    let many = MultiDevice::load(devices, |b| Toto::from_dir(b, V1)).unwrap();
    let series = batch(4, 2, 24);
    let options = short_sampled();
    let err = many
        .predict(&common::request(&series, &options))
        .unwrap_err();
    let source = device_source(&err, 1, 2..4);
    assert!(
        matches!(source, Error::Input { what, kind: toto_fallback::InputKind::Failed, reason }
            if what.contains("panicked") && reason == "a bug in the backend"),
        "{source:?}"
    );
    assert!(!bug.load(std::sync::atomic::Ordering::SeqCst));
    let sound = Flaky {
        cpu: NdArray::seeded(0),
        bug: Arc::default(),
    };
    let one = Toto::from_dir(&sound, V1).unwrap();
    one.backend().seed(5);
    let want = one.predict(&common::request(&series, &options)).unwrap();
    many.seed(5);
    let got = many.predict(&common::request(&series, &options)).unwrap();
    assert_same("after the panic", &got, &want);
}

/// A fallback "device" whose primary lacks `ops`, under `policy`.
fn routed(ops: &[Op], policy: FallbackPolicy) -> FallbackBackend<NdArray, NdArray> {
    FallbackBackend::new(
        NdArray::seeded(0).with_unsupported(ops.iter().copied()),
        NdArray::seeded(0),
    )
    .with_policy(policy)
}

#[test]
fn a_failing_device_fails_the_call_naming_it_and_its_items() {
    let mixture = [Op::StudentTMixture, Op::Categorical];
    let devices = vec![
        routed(&[], FallbackPolicy::Deny),
        routed(&mixture, FallbackPolicy::Deny), // cannot draw the paths
        routed(&[], FallbackPolicy::Deny),
    ];
    let many = MultiDevice::load(devices, |b| Toto::from_dir(b, V1)).unwrap();
    let series = batch(5, 2, 24);
    let options = short_sampled();
    let err = many
        .predict(&common::request(&series, &options))
        .unwrap_err();
    let source = device_source(&err, 1, 2..4);
    assert!(
        matches!(
            source,
            Error::FallbackDenied {
                op: Op::StudentTMixture,
                ..
            }
        ),
        "{source}"
    );
    let message = err.to_string();
    assert!(
        message.contains("device 1") && message.contains("items 2..4"),
        "{message}"
    );
    // The input is intact: the same call without the failing device forecasts it all.
    let mean_mode = toto_fallback::ForecastOptions {
        num_samples: None,
        ..options
    };
    assert_eq!(
        many.predict(&common::request(&series, &mean_mode))
            .unwrap()
            .into_mean()
            .dims(),
        [5, 2, 8]
    );
    // A request the model refuses is refused before any device starts, without a device.
    let err = many
        .predict(&common::request(
            &series,
            &toto_fallback::ForecastOptions {
                prediction_length: 0,
                ..mean_mode
            },
        ))
        .unwrap_err();
    assert!(matches!(err, Error::Input { .. }), "{err}");
    assert!(matches!(
        MultiDevice::<Toto<NdArray>>::new(Vec::new()),
        Err(Error::Input { .. })
    ));
}

#[test]
fn loading_names_the_device_that_failed() {
    let devices = vec![
        routed(&[], FallbackPolicy::Deny),
        routed(&[Op::PatchScaler], FallbackPolicy::Deny),
        routed(&[], FallbackPolicy::Deny),
    ];
    // Device 1 is told to load a model that is not there.
    let err = MultiDevice::load(devices, |b: &FallbackBackend<NdArray, NdArray>| {
        let dir = if b.supports(Op::PatchScaler) {
            V2
        } else {
            "tests/fixtures/no-such-model"
        };
        Toto2::from_dir(b, dir)
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Device {
                index: 1,
                items: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("device 1 ("), "{err}");
}

#[test]
fn the_report_has_each_device_and_their_sum() {
    // The scaler forwarded on every device: one call per forecast on each device used.
    let devices: Vec<_> = (0..3)
        .map(|_| routed(&[Op::PatchScaler], FallbackPolicy::Silent))
        .collect();
    let many = MultiDevice::load(devices, |b| Toto2::from_dir(b, V2)).unwrap();
    many.reset_report();
    many.predict(&common::request(
        &batch(2, 2, 40),
        &toto_fallback::ForecastOptions::gluonts(16),
    ))
    .unwrap();
    let report = many.report().expect("fallback backends report");
    let calls: Vec<u64> = report
        .devices
        .iter()
        .map(|r| r.op(Op::PatchScaler).forwarded.calls)
        .collect();
    // Two items on three devices: the third sits out.
    assert!(
        calls[0] >= 1 && calls[0] == calls[1] && calls[2] == 0,
        "{calls:?}"
    );
    let total = report.total.op(Op::PatchScaler).forwarded;
    assert_eq!(total.calls, calls.iter().sum::<u64>());
    assert_eq!(
        total.bytes_to_cpu,
        report
            .devices
            .iter()
            .map(|r| r.op(Op::PatchScaler).forwarded.bytes_to_cpu)
            .sum::<u64>()
    );
    // Besides the layer ops (the model's layers, natively on each device), nothing ran.
    let layer = |op: &Op| common::LAYER_OPS.contains(op);
    let native = |op: &Op| report.total.op(*op).native.calls;
    assert!(
        Op::ALL
            .iter()
            .filter(|op| !layer(op))
            .all(|op| native(op) == 0)
    );
    assert!(native(&Op::Linear) > 0 && native(&Op::Attention) > 0);
    let text = report.to_string();
    assert!(
        text.contains("device 2:") && text.contains("all 3 devices:"),
        "{text}"
    );
    many.reset_report();
    assert_eq!(
        many.report()
            .unwrap()
            .total
            .total(Placement::Forwarded)
            .calls,
        0
    );
    // Backends that run everything themselves have no report.
    let plain = MultiDevice::load(cpus(2), |b| Toto2::from_dir(b, V2)).unwrap();
    assert!(plain.report().is_none());
}

/// `[samples, rows]` mixture draws of a batch of `items` items of `inner` rows each, whole and
/// in windows of items: the windows' draws are the whole call's, bit for bit.
fn windows_draw_the_whole_calls_draws<B: LayerOps>(b: &B) {
    let (items, inner, k, samples) = (5, 6, 4, 3);
    let rows = items * inner;
    let ramp = |lo: f32, hi: f32, salt: usize| {
        let v: Vec<f32> = (0..rows * k)
            .map(|i| lo + (hi - lo) * (((i * 7 + salt) % 23) as f32 / 22.0))
            .collect();
        Tensor::<2>::from_data(burn::tensor::TensorData::new(v, [rows, k]), b.device())
    };
    let params = MixtureParams::new(
        ramp(-2.0, 2.0, 1),
        ramp(2.5, 9.0, 2),
        ramp(-1.0, 1.0, 3),
        ramp(0.2, 1.5, 4),
    );
    b.seed(11);
    let whole = values(b.student_t_mixture(params.clone(), samples).unwrap()); // [samples, rows]
    for (first, len) in [(0, 2), (2, 2), (4, 1), (1, 3)] {
        b.seed(11);
        let window = DrawWindow::new(items, first, len, inner).unwrap();
        let handle = b.with_draw_window(window).expect("a windowed handle");
        assert!(!handle.supports(Op::StandardNormal) && handle.supports(Op::StudentTMixture));
        let part = params
            .clone()
            .map(|t| t.slice([first * inner..(first + len) * inner, 0..k]));
        let got = values(handle.student_t_mixture(part, samples).unwrap());
        let want: Vec<f64> = (0..samples)
            .flat_map(|s| {
                whole[s * rows + first * inner..s * rows + (first + len) * inner].to_vec()
            })
            .collect();
        assert_eq!(got, want, "items {first}..{}", first + len);
    }
}

#[test]
fn ndarray_draw_windows_slice_the_whole_call() {
    windows_draw_the_whole_calls_draws(&NdArray::seeded(0));
}

#[test]
fn wgpu_draw_windows_slice_the_whole_call() {
    let Some(b) = common::wgpu(0) else { return };
    windows_draw_the_whole_calls_draws(&*b);
    // The CPU's mixture draw is the kernel's arithmetic: the same component and Student-T from
    // the same Philox block, up to the last bits of exp, ln and cos.
    let (rows, k) = (4096, 5);
    let u = |lo: f32, hi: f32| {
        Tensor::<2>::random(
            [rows, k],
            burn::tensor::Distribution::Uniform(f64::from(lo), f64::from(hi)),
            b.device(),
        )
    };
    let params = MixtureParams::new(u(-2.0, 2.0), u(2.5, 9.0), u(-1.0, 1.0), u(0.2, 1.5));
    let cpu = NdArray::seeded(5);
    b.seed(5);
    let on_gpu = values(b.student_t_mixture(params.clone(), 2).unwrap());
    let on_cpu = values(
        cpu.student_t_mixture(params.map(|t| t.to_device(cpu.device())), 2)
            .unwrap(),
    );
    let close = on_gpu
        .iter()
        .zip(&on_cpu)
        .filter(|(g, c)| (*g - *c).abs() <= 1e-4 * (1.0 + c.abs()))
        .count();
    // A component pick can flip where a uniform falls within rounding of a cumulative weight.
    assert!(
        close >= on_gpu.len() * 999 / 1000,
        "{close} of {} agree",
        on_gpu.len()
    );
}

#[test]
fn the_same_adapter_twice_forecasts_like_once() {
    let Some(gpu) = common::fallback(0) else {
        return;
    };
    let devices = vec![gpu.backend.clone(), gpu.backend.clone()];
    let series = batch(3, 2, 40);
    let options = toto_fallback::ForecastOptions::gluonts(16);
    let one = Toto2::from_dir(&*gpu, V2).unwrap();
    let want = values(
        one.predict(&common::request(&series, &options))
            .unwrap()
            .quantiles()
            .unwrap()
            .values()
            .clone(),
    );
    let many = MultiDevice::load(devices, |b| Toto2::from_dir(b, V2)).unwrap();
    let got = many.predict(&common::request(&series, &options)).unwrap();
    let got = values(got.quantiles().unwrap().values().clone());
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(0.0, f64::max);
    // Two slices are smaller batches: the GPU's products may sum in another order.
    assert!(worst < 1e-5, "largest relative difference {worst}");
}
