//! Device check: which adapter wgpu picks, which distribution ops run natively on it and which
//! the fallback sends to the CPU, and a test draw (a Student-T sample built from normal and
//! gamma draws) twice: natively, and with gamma forced onto the CPU, each with its report. The
//! Rust counterpart of checking that `PYTORCH_ENABLE_MPS_FALLBACK=1` took effect.
//!
//! ```text
//! cargo run --release --example device_check
//! ```
//!
//! On a machine without a GPU, wgpu needs a software Vulkan driver
//! (`apt-get install mesa-vulkan-drivers`); without one the example says so and runs on the CPU.

#[path = "support/mod.rs"]
mod support;

use burn::tensor::Tensor;
use statrs::distribution::{ContinuousCDF, StudentsT};
use toto_fallback::{Backend, FallbackBackend, NdArray, Op, Wgpu};

const DF: f32 = 5.0;
const N: usize = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::quiet_headless_vulkan();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off"),
    )
    .init();

    match Wgpu::new() {
        Ok(gpu) => {
            println!("Using device: {}", gpu.name());
            if gpu.is_software() {
                println!(
                    "  (a software rasterizer: the CPU emulating a GPU; `choose_backend` would \
                     pick NdArray here)"
                );
            }
            let backend = FallbackBackend::new(gpu.clone(), NdArray::new());
            println!("\nOp support (policy: {}):", backend.policy().name());
            for op in Op::ALL {
                let place = match backend.placement(op) {
                    Some(toto_fallback::Placement::Native) => "native on the GPU",
                    Some(toto_fallback::Placement::Forwarded) => "forwarded to the CPU",
                    None => "unavailable",
                };
                println!("  {:<17} {place}", op.name());
            }
            // Gamma sampling is native on wgpu (a Philox kernel): nothing is forwarded.
            student_t_summary(&backend)?;
            println!("\n{}", backend.report());
            // The same draw with gamma forced onto the CPU: the fallback path at work.
            let forced =
                FallbackBackend::new(gpu.with_unsupported([Op::StandardGamma]), NdArray::new());
            student_t_summary(&forced)?;
            println!("\n{}", forced.report());
        }
        Err(e) => {
            println!("No wgpu adapter ({e})");
            let cpu = NdArray::new();
            println!(
                "Using device: {} (CPU; every op native, nothing falls back)",
                cpu.name()
            );
            student_t_summary(&cpu)?;
        }
    }
    Ok(())
}

/// Draws `N` Student-T(DF) variates as `Z * sqrt(DF / (2 G))`, `Z ~ N(0, 1)`,
/// `G ~ Gamma(DF / 2, 1)` (so `2G ~ Chi2(DF)`), and prints their summary next to the exact values.
fn student_t_summary<B: Backend>(backend: &B) -> Result<(), Box<dyn std::error::Error>> {
    backend.seed(2024);
    let z = backend.standard_normal([N])?;
    let alpha = Tensor::<1>::full([N], DF / 2.0, backend.device());
    let g = backend.standard_gamma(alpha)?;
    let t = z.mul(g.mul_scalar(2.0 / DF).sqrt().recip());

    let mut v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data");
    v.sort_by(f32::total_cmp);
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    let quantile = |p: f64| v[((n - 1.0) * p).round() as usize];

    let exact = StudentsT::new(0.0, 1.0, f64::from(DF)).expect("valid Student-T");
    let df = f64::from(DF);
    println!(
        "\nStudent-T(df = {DF}) sample of {N} draws, through {}:",
        backend.name()
    );
    println!("  {:<10} {:>10} {:>10}", "", "sample", "exact");
    println!("  {:<10} {:>10.4} {:>10.4}", "mean", mean, 0.0);
    println!(
        "  {:<10} {:>10.4} {:>10.4}",
        "variance",
        var,
        df / (df - 2.0)
    );
    for p in [0.05, 0.5, 0.95, 0.99] {
        let label = format!("q{}", p * 100.0);
        println!(
            "  {:<10} {:>10.4} {:>10.4}",
            label,
            quantile(p),
            exact.inverse_cdf(p)
        );
    }
    Ok(())
}
