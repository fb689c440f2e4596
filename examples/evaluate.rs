//! Evaluate: backtest a Toto model (either generation) on long-format tables, beside the
//! seasonal-naive baseline, as GIFT-Eval and BOOM score models.
//!
//! ```text
//! cargo run --release --example evaluate --features csv -- MODEL_DIR TABLE.csv... [options]
//! cargo run --release --example evaluate --features csv      # bundled Toto 2.0 tiny, 2 tables
//!
//!   --term short|medium|long   GIFT-Eval's horizon term (default short)
//!   --freq F                   the grid's step (15min, h, D, W, M, Q, Y); inferred by default
//!   --context N                at most N values of history per window (default: all)
//!   --samples N                Toto 1.0's sample paths (default 256)
//!   --out FILE                 every window's forecast as rows (.csv; .parquet with the
//!                              `parquet` feature); one table only
//! ```
//!
//! The table has `item_id, timestamp, target` columns (or Nixtla's `unique_id, ds, y`); a
//! `.parquet` table needs the `parquet` feature. The windows are GIFT-Eval's for the table's
//! frequency and shortest series; the metrics gluonts' (MASE with the frequency's season, CRPS
//! as the mean weighted quantile loss over the deciles). Each table is one data set: with several,
//! the example ends with each one's scores relative to seasonal naive and their geometric means,
//! GIFT-Eval's aggregate. Without arguments it backtests the bundled tiny Toto 2.0 test model
//! (random weights: its scores mean nothing) on statsmodels' weekly co2 series and quarterly
//! macroeconomic series.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use toto_fallback::eval::{Backtest, BacktestReport, Term, geometric_mean};
use toto_fallback::forecast::{ForecastOptions, Progress};
use toto_fallback::table::{ForecastTable, Frequency, LongTable, TableOptions};
use toto_fallback::{AutoToto, Chosen, Forecaster, LayerOps, Prefer, choose_backend};

const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/toto2-tiny");
const BUNDLED_TABLES: [&str; 2] = [
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/datasets/co2_weekly.csv"
    ),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/datasets/macro_quarterly.csv"
    ),
];

struct Args {
    model: PathBuf,
    tables: Vec<PathBuf>,
    term: Term,
    frequency: Option<Frequency>,
    context: Option<usize>,
    samples: usize,
    out: Option<PathBuf>,
}

fn args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut positional = Vec::new();
    let mut args = Args {
        model: PathBuf::from(BUNDLED_MODEL),
        tables: BUNDLED_TABLES.iter().map(PathBuf::from).collect(),
        term: Term::Short,
        frequency: None,
        context: None,
        samples: 256,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--term" => {
                args.term = match value()?.as_str() {
                    "short" => Term::Short,
                    "medium" => Term::Medium,
                    "long" => Term::Long,
                    other => return Err(format!("--term {other}: short, medium or long").into()),
                }
            }
            "--freq" => args.frequency = Some(Frequency::parse(&value()?)?),
            "--context" => args.context = Some(value()?.parse()?),
            "--samples" => args.samples = value()?.parse()?,
            "--out" => args.out = Some(PathBuf::from(value()?)),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}").into()),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    match positional.len() {
        0 => {}
        1 => {
            return Err(
                "give MODEL_DIR and at least one TABLE, or neither (the bundled example)".into(),
            );
        }
        _ => {
            args.model = positional.remove(0);
            args.tables = positional;
        }
    }
    if args.out.is_some() && args.tables.len() > 1 {
        return Err("--out writes one table's windows: give one TABLE with it".into());
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::quiet_headless_vulkan();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off"),
    )
    .init();
    let args = args()?;
    let chosen = choose_backend(Prefer::from_env());
    println!("Using device: {chosen}");
    match &chosen {
        Chosen::Gpu(backend) => evaluate(backend, &args),
        Chosen::Cpu { backend, .. } => evaluate(backend, &args),
    }
}

fn read_table(path: &Path, options: &TableOptions) -> toto_fallback::Result<LongTable> {
    #[cfg(feature = "parquet")]
    if path.extension().is_some_and(|e| e == "parquet") {
        return LongTable::read_parquet(path, options);
    }
    LongTable::read_csv(path, options)
}

fn evaluate<B: LayerOps>(backend: &B, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let model = AutoToto::from_dir(backend, &args.model)?;
    println!(
        "model {} ({} parameters) from {}",
        model.generation(),
        model.parameter_count(),
        args.model.display()
    );
    // Each table is a data set: (name, MASE and CRPS relative to seasonal naive).
    let mut relative = Vec::new();
    for path in &args.tables {
        let report = evaluate_table(&model, path, args)?;
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        relative.push((
            name.into_owned(),
            report.relative_mase(),
            report.relative_crps(),
        ));
    }
    if relative.len() > 1 {
        println!(
            "\n{:<24} {:>10} {:>10}",
            "data set / seasonal naive", "MASE", "CRPS"
        );
        for (name, mase, crps) in &relative {
            println!("{name:<24} {mase:>10.4} {crps:>10.4}");
        }
        let mase: Vec<f64> = relative.iter().map(|r| r.1).collect();
        let crps: Vec<f64> = relative.iter().map(|r| r.2).collect();
        println!(
            "{:<24} {:>10.4} {:>10.4}",
            "geometric mean",
            geometric_mean(&mase),
            geometric_mean(&crps)
        );
    }
    Ok(())
}

fn evaluate_table<B: LayerOps>(
    model: &AutoToto<B>,
    path: &Path,
    args: &Args,
) -> Result<BacktestReport, Box<dyn std::error::Error>> {
    let options = TableOptions {
        frequency: args.frequency,
        ..TableOptions::default()
    };
    let table = read_table(path, &options)?;
    println!(
        "\n{}: {} items, frequency {} (season {}), shortest {} steps",
        path.display(),
        table.items().len(),
        table.frequency(),
        table.frequency().seasonality(),
        table.min_length(),
    );
    let backtest = Backtest::gift_eval(table.frequency(), args.term, table.min_length())?
        .with_context_length(args.context)?
        .with_options(ForecastOptions::gluonts(1).with_samples(Some(args.samples)))
        .with_progress(Progress::bar("backtest"));
    println!(
        "GIFT-Eval {:?} term: {} windows of {} steps per item",
        args.term,
        backtest.windows(),
        backtest.horizon()
    );
    let start = Instant::now();
    let report = backtest.run(model, &table.backtest_items())?;
    println!("backtested in {:.2?}\n\n{report}", start.elapsed());
    println!(
        "\nrelative to seasonal naive: MASE {:.4}, CRPS {:.4}",
        report.relative_mase(),
        report.relative_crps()
    );

    if let Some(out) = &args.out {
        let rows = ForecastTable::from_backtest(&table, &report)?;
        let file = std::io::BufWriter::new(std::fs::File::create(out)?);
        #[cfg(feature = "parquet")]
        if out.extension().is_some_and(|e| e == "parquet") {
            rows.write_parquet(file)?;
            println!("forecasts written to {}", out.display());
            return Ok(report);
        }
        rows.write_csv(file)?;
        println!("forecasts written to {}", out.display());
    }
    Ok(report)
}
