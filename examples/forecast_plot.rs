//! Forecast plot: forecast two series with Toto (1.0 or 2.0) and draw each as a PNG fan chart
//! (history, median, 50% and 90% bands: of 256 sample paths for Toto 1.0, of the quantile knots
//! for Toto 2.0), because a forecast is easier to look at than to read.
//!
//! ```text
//! cargo run --release --features plot --example forecast_plot                  # tiny model
//! cargo run --release --features plot --example forecast_plot -- MODEL_DIR OUT_DIR
//! ```
//!
//! `MODEL_DIR` holds `config.json` and the weights of either generation (the layout of
//! Toto-Open-Base-1.0 and Toto-2.0-* on the Hub); without it the bundled tiny test model is used, which is untrained: its fans are wide and meaningless,
//! but every step runs. The PNGs go to `OUT_DIR` (default: the system's temporary directory).

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;

use toto_fallback::forecast::FanChart;
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
    let mut args = std::env::args().skip(1);
    let model_dir = args
        .next()
        .map_or_else(|| PathBuf::from(BUNDLED), PathBuf::from);
    let out_dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let chosen = choose_backend(Prefer::from_env());
    println!("Using device: {chosen}");
    match &chosen {
        Chosen::Gpu(backend) => run(backend, &model_dir, &out_dir),
        Chosen::Cpu { backend, .. } => run(backend, &model_dir, &out_dir),
    }
}

fn run<B: LayerOps>(
    backend: &B,
    model_dir: &PathBuf,
    out_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let model = AutoToto::from_dir(backend, model_dir)?;
    let p = model.patch_size();
    // Two variates: a daily-like cycle with a trend, and a noisier, slower one.
    let (variates, context, horizon) = (2, 12 * p, 4 * p);
    let values: Vec<f32> = (0..variates * context)
        .map(|i| {
            let (v, t) = ((i / context) as f32, (i % context) as f32);
            let period = (2 * p) as f32 * (1.0 + v);
            20.0 + 0.02 * t
                + (3.0 - v) * (t * std::f32::consts::TAU / period).sin()
                + 0.3 * ((t * 12.9898).sin() * 43758.547).fract()
        })
        .collect();
    let rows: Vec<&[f32]> = values.chunks(context).collect();
    let series = Series::from_variates(&rows)?;
    // The chart draws the history from the same values the model saw.
    let (history, _, _) = series.to_tensors(backend.device());
    let forecast = model.predict(&ForecastRequest::new(series, horizon).with_samples(Some(256)))?;
    std::fs::create_dir_all(out_dir)?;
    for variate in 0..variates {
        let path = out_dir.join(format!("toto_forecast_variate{variate}.png"));
        let chart = FanChart {
            variate,
            title: format!(
                "{} forecast, variate {variate} ({horizon} steps)",
                model.generation()
            ),
            ..FanChart::default()
        };
        forecast.fan_chart(&history, &path, &chart)?;
        println!("Wrote {}", path.display());
    }
    Ok(())
}
