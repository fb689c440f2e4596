//! The smallest complete program: load Toto (1.0 or 2.0), forecast, read the median. Copy it
//! and go.
//!
//! ```text
//! cargo run --release --example template -- MODEL_DIR
//! ```

use toto_fallback::forecast::read_series;
use toto_fallback::{AutoOptions, AutoToto, Backend, Chosen, Prefer, Series, choose_backend};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Headless Linux prints "XDG_RUNTIME_DIR is invalid" per Vulkan instance (Mesa's
    // device_select layer): harmless; `NODEVICE_SELECT=1` silences it (docs/troubleshooting.md).
    // A model directory with config.json + the weights, either generation (default: the tiny
    // Toto 1.0 test model).
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny").into());
    // A hardware GPU with the CPU as fallback for any op it lacks; the CPU alone without one.
    match choose_backend(Prefer::from_env()) {
        Chosen::Gpu(backend) => run(&backend, &dir),
        Chosen::Cpu { backend, .. } => run(&backend, &dir),
    }
}

fn run<B: Backend>(backend: &B, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = AutoToto::from_dir(backend, dir)?;
    // One series of 512 steps (NaN for a missing value). Series::from_variates takes the
    // variates of one item, Series::from_batch several items; shorter series are left-padded.
    let history: Vec<f32> = (0..512).map(|t| (t as f32 / 10.0).sin()).collect();
    let series = Series::from_values(&history)?;
    let forecast = model.forecast_series(&series, &AutoOptions::new(96))?;
    let median = forecast.median()?; // [1, 1, 96]; also .mean, .quantile(q), .quantiles_at(&[..]), .std()?, .draw(n)
    let median = &read_series(median)?[0][0]; // read_series gives median[item][variate][step]
    println!("median forecast, first 8 of 96 steps: {:?}", &median[..8]);
    Ok(())
}
