//! Stream: replay a real series point by point through a streaming session (either
//! generation), scoring each new point against the forecast made before it and flagging the
//! unlikely ones, as a service watching live metrics would.
//!
//! ```text
//! cargo run --release --example stream --features csv -- [MODEL_DIR] [TABLE.csv] [options]
//! cargo run --release --example stream --features csv      # bundled Toto 2.0 tiny on co2
//!
//!   --context N    the values the session opens on (default 512)
//!   --horizon H    the forecast's horizon (default 52)
//!   --alpha A      flag points whose two-sided tail probability is below A (default 0.01)
//!   --every K      print the forecast every K points (default 104)
//!   --samples N    Toto 1.0's sample paths (default 64)
//! ```
//!
//! The table has `item_id, timestamp, target` columns (or Nixtla's `unique_id, ds, y`); the
//! first item is replayed. Without arguments it replays statsmodels' weekly co2 series
//! (Mauna Loa, 1958–2001) through the bundled tiny Toto 2.0 test model (random weights: what it
//! flags means nothing; give a real model directory, e.g. from `Forecaster::from_pretrained`).

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use toto_fallback::forecast::{ForecastRequest, Series};
use toto_fallback::table::{LongTable, TableOptions};
use toto_fallback::{AutoToto, Chosen, Forecaster, LayerOps, Prefer, choose_backend};

const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/toto2-tiny");
const BUNDLED_TABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/datasets/co2_weekly.csv"
);

/// Flagged points printed (the rest are counted).
const MAX_SHOWN: usize = 20;

struct Args {
    model: PathBuf,
    table: PathBuf,
    context: usize,
    horizon: usize,
    alpha: f64,
    every: usize,
    samples: usize,
}

fn args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut positional = Vec::new();
    let mut args = Args {
        model: PathBuf::from(BUNDLED_MODEL),
        table: PathBuf::from(BUNDLED_TABLE),
        context: 512,
        horizon: 52,
        alpha: 0.01,
        every: 104,
        samples: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--context" => args.context = value()?.parse()?,
            "--horizon" => args.horizon = value()?.parse()?,
            "--alpha" => args.alpha = value()?.parse()?,
            "--every" => args.every = value()?.parse()?,
            "--samples" => args.samples = value()?.parse()?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}").into()),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let mut positional = positional.into_iter();
    if let Some(model) = positional.next() {
        args.model = model;
    }
    if let Some(table) = positional.next() {
        args.table = table;
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::quiet_headless_vulkan();
    let args = args()?;
    match choose_backend(Prefer::from_env()) {
        Chosen::Gpu(backend) => replay(backend, &args),
        Chosen::Cpu { backend, .. } => replay(backend, &args),
    }
}

fn replay<B: LayerOps>(backend: B, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let table = LongTable::read_csv(&args.table, &TableOptions::default())?;
    let item = table.items().first().ok_or("the table has no item")?;
    let values = &item.target;
    if values.len() <= args.context {
        return Err(format!(
            "{} has {} values: fewer than --context {} and one to replay",
            item.id,
            values.len(),
            args.context
        )
        .into());
    }
    let model = AutoToto::from_dir(&backend, &args.model)?;
    println!(
        "{} on {} ({}): {} values of {}, the session opens on {} and replays {}",
        model.generation(),
        backend.name(),
        args.model.display(),
        values.len(),
        item.id,
        args.context,
        values.len() - args.context
    );
    let history = Series::from_values(&values[..args.context])?;
    let request = ForecastRequest::new(history, args.horizon).with_samples(Some(args.samples));
    let opened = Instant::now();
    let mut stream = model.stream(&request)?;
    println!(
        "opened (one prefill) in {:.3} s",
        opened.elapsed().as_secs_f64()
    );
    let (mut flagged, mut took) = (0, Duration::ZERO);
    for (k, &y) in values.iter().enumerate().skip(args.context) {
        let start = Instant::now();
        // The PIT and tail probability of y under the forecast made before it, then y pushed.
        let scores = stream.score(&[y], 1)?;
        let tail: Vec<f32> = scores.tail.into_data().try_to_vec::<f32>()?;
        let pit: Vec<f32> = scores.pit.into_data().try_to_vec::<f32>()?;
        took += start.elapsed();
        let date = item.timestamp(table.frequency(), k).map(|t| t.date());
        if f64::from(tail[0]) < args.alpha {
            flagged += 1;
        }
        if f64::from(tail[0]) < args.alpha && flagged <= MAX_SHOWN {
            let side = if pit[0] > 0.5 { "high" } else { "low" };
            println!(
                "  {} {y:>8.2}  flagged {side}: tail probability {:.2e}",
                date.map_or_else(|| format!("step {k}"), |d| d.to_string()),
                tail[0]
            );
        }
        if (k + 1 - args.context).is_multiple_of(args.every) {
            let forecast = stream.forecast()?;
            let median: Vec<f32> = forecast.median()?.into_data().try_to_vec::<f32>()?;
            let low: Vec<f32> = forecast.quantile(0.1)?.into_data().try_to_vec::<f32>()?;
            let high: Vec<f32> = forecast.quantile(0.9)?.into_data().try_to_vec::<f32>()?;
            let last = median.len() - 1;
            println!(
                "  {} next {} steps: median {:.2} → {:.2}, 80% interval at the end [{:.2}, {:.2}]",
                date.map_or_else(|| format!("step {k}"), |d| d.to_string()),
                median.len(),
                median[0],
                median[last],
                low[last],
                high[last]
            );
        }
    }
    let n = values.len() - args.context;
    let stats = stream.stats();
    if flagged > MAX_SHOWN {
        println!("  ({} more flagged points not shown)", flagged - MAX_SHOWN);
    }
    println!(
        "replayed {n} points: {flagged} flagged at alpha {}; {:.2} ms a point (score, push \
         and the model's pass); {} patches run, {} recomputes, {} slides",
        args.alpha,
        took.as_secs_f64() * 1e3 / n as f64,
        stats.patches,
        stats.recomputes,
        stats.slides
    );
    Ok(())
}
