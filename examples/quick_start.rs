//! Quick start: load Toto (1.0 or 2.0), forecast a series, print a summary of the forecast and
//! what ran where.
//!
//! ```text
//! cargo run --release --example quick_start                 # the bundled tiny test model
//! cargo run --release --example quick_start -- MODEL_DIR    # Toto-Open-Base-1.0, Toto-2.0-22m, ...
//! ```
//!
//! `MODEL_DIR` holds `config.json` and the weights (`model.safetensors`, or shards with
//! `model.safetensors.index.json`): the layout of `Datadog/Toto-Open-Base-1.0` and
//! `Datadog/Toto-2.0-*` on the Hugging Face Hub; the generation is read from `config.json`.
//! Without it, the example uses the tiny randomly initialised Toto 1.0 model the conformance
//! tests use (`tests/fixtures/toto2-tiny` is Toto 2.0's): it runs everything, but it is
//! untrained and its forecasts mean nothing.
//!
//! Runs on the GPU through wgpu with the CPU as fallback; without a GPU, or with only a software
//! one (lavapipe, WARP), it says so and runs on the CPU. `TOTO_BACKEND=gpu` uses a software
//! adapter anyway, `TOTO_BACKEND=cpu` the CPU.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Instant;

use toto_fallback::forecast::read_series;
use toto_fallback::{
    AutoToto, Chosen, ForecastRequest, Forecaster, LayerOps, Prefer, Series, choose_backend,
};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::quiet_headless_vulkan();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off"),
    )
    .init();
    let dir = std::env::args().nth(1).map(PathBuf::from);
    // A hardware GPU with the CPU as fallback; the CPU when there is no GPU or only a software
    // one. TOTO_BACKEND=cpu|gpu overrides.
    let chosen = choose_backend(Prefer::from_env());
    println!("Using device: {chosen}");
    match &chosen {
        Chosen::Gpu(backend) => {
            forecast(backend, dir)?;
            println!("\n{}", backend.report());
        }
        Chosen::Cpu { backend, .. } => forecast(backend, dir)?,
    }
    Ok(())
}

fn forecast<B: LayerOps>(
    backend: &B,
    dir: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let bundled = dir.is_none();
    let dir = dir.unwrap_or_else(|| PathBuf::from(BUNDLED));
    let model = AutoToto::from_dir(backend, &dir)?;
    println!(
        "Model loaded: {}, {} parameters, patch size {}, from {}",
        model.generation(),
        model.parameter_count(),
        model.patch_size(),
        dir.display()
    );
    if bundled {
        println!(
            "  (the bundled tiny test model: random weights, untrained; its forecasts are \
             meaningless. Pass the directory of Toto-Open-Base-1.0 or Toto-2.0-* for real ones.)"
        );
    }

    // Two variates of a periodic signal with a trend, of one item ([batch = 1, variates = 2,
    // time]): 8 patches of context (512 steps for Toto-Open-Base-1.0), 2 patches ahead.
    let p = model.patch_size();
    let (variates, context, horizon) = (2, 8 * p, 2 * p);
    let rows: Vec<Vec<f32>> = (0..variates)
        .map(|v| {
            (0..context)
                .map(|t| {
                    let (v, t) = (v as f32, t as f32);
                    10.0 + v * 5.0
                        + 0.01 * t
                        + (1.0 + v) * (t * std::f32::consts::TAU / (2 * p) as f32).sin()
                })
                .collect()
        })
        .collect();
    let series = Series::from_variates(&rows)?;
    // Toto 1.0 draws 64 sample paths; Toto 2.0 gives nine quantiles per step.
    let request = ForecastRequest::new(series, horizon).with_samples(Some(64));
    let start = Instant::now();
    let forecast = model.predict(&request)?;
    // median[item][variate][step]
    let (median, low, high) = (
        read_series(forecast.median()?)?,
        read_series(forecast.quantile(0.1)?)?,
        read_series(forecast.quantile(0.9)?)?,
    );
    let kind = match (forecast.quantiles(), forecast.samples()) {
        (Some(q), _) => format!("{} quantiles", q.levels().len()),
        (None, Some(paths)) => format!("{} sample paths", paths.dims()[3]),
        (None, None) => "the mean path".to_owned(),
    };
    println!(
        "Forecast generated: {variates} variates x {horizon} steps from {kind} in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    for v in 0..variates {
        println!("  variate {v}: step   median   [10%, 90%]");
        for step in [0, 1, 2, horizon / 2, horizon - 1] {
            println!(
                "             {:>4} {:>8.3}   [{:.3}, {:.3}]",
                step + 1,
                median[0][v][step],
                low[0][v][step],
                high[0][v][step]
            );
        }
    }
    Ok(())
}
