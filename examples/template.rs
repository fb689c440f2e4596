//! The smallest complete program: load Toto (1.0 or 2.0), forecast, read the median. Copy it
//! into a crate of your own as `src/main.rs` (with `toto-fallback` as its one dependency:
//! README, "Use it from crates.io") and go; it reads nothing from this repository.
//!
//! ```text
//! cargo run --release --example template -- MODEL_DIR
//! ```
//!
//! `MODEL_DIR` holds `config.json` and the weights (`model.safetensors`, or its shards), e.g.
//! `Datadog/Toto-Open-Base-1.0` or `Datadog/Toto-2.0-22m` downloaded from the Hugging Face Hub
//! (README, "Weights"); in this repository, `tests/fixtures/tiny` is a tiny untrained model.

use toto_fallback::forecast::read_series;
use toto_fallback::{
    AutoToto, Chosen, ForecastRequest, Forecaster, LayerOps, Prefer, Series, choose_backend,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Headless Linux prints "XDG_RUNTIME_DIR is invalid" per Vulkan instance (Mesa's
    // device_select layer): harmless; `NODEVICE_SELECT=1` silences it (docs/troubleshooting.md).
    // A model directory with config.json + the weights, either generation.
    let dir = std::env::args().nth(1).ok_or(
        "usage: template MODEL_DIR (config.json + model.safetensors of a Toto checkpoint)",
    )?;
    // A hardware GPU with the CPU as fallback for any op it lacks; the CPU alone without one.
    match choose_backend(Prefer::from_env()) {
        Chosen::Gpu(backend) => run(&backend, &dir),
        Chosen::Cpu { backend, .. } => run(&backend, &dir),
    }
}

fn run<B: LayerOps>(backend: &B, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = AutoToto::from_dir(backend, dir)?;
    // One series of 512 steps (NaN for a missing value). Series::from_variates takes the
    // variates of one item, Series::from_batch several items; shorter series are left-padded.
    let history: Vec<f32> = (0..512).map(|t| (t as f32 / 10.0).sin()).collect();
    let series = Series::from_values(&history)?;
    let forecast = model.predict(&ForecastRequest::new(series, 96))?;
    let median = forecast.median()?; // [1, 1, 96]; also .mean(), .quantile(q), .quantiles_at(&[..]), .std()?, .draw(n)
    let median = &read_series(median)?[0][0]; // read_series gives median[item][variate][step]
    println!("median forecast, first 8 of 96 steps: {:?}", &median[..8]);
    Ok(())
}
