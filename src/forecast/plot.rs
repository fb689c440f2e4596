//! Fan charts of forecasts as PNG files (feature `plot`, with `plotters`).

use std::path::Path;
use std::sync::OnceLock;

use burn::tensor::Tensor;
use plotters::prelude::*;

use super::Forecast;
use crate::backend::Backend;
use crate::error::{Error, InputKind, Result};

/// What [`Forecast::fan_chart`] draws: which series and variate, the image size, a title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanChart {
    /// The batch entry to draw.
    pub series: usize,
    /// The variate to draw.
    pub variate: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// A caption above the chart.
    pub title: String,
}

impl Default for FanChart {
    fn default() -> Self {
        FanChart {
            series: 0,
            variate: 0,
            width: 960,
            height: 480,
            title: "Toto forecast".to_owned(),
        }
    }
}

/// Fonts tried for labels, in order; without any, the chart is drawn without text.
const FONTS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers the first readable font of [`FONTS`] (or of `TOTO_FALLBACK_FONT`) as plotters'
/// `sans-serif`, once per process; `true` if one was.
fn font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let custom = std::env::var("TOTO_FALLBACK_FONT").ok();
        custom
            .iter()
            .map(String::as_str)
            .chain(FONTS)
            .filter_map(|path| std::fs::read(path).ok())
            .any(|bytes| {
                // plotters keeps the font for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
    })
}

impl<B: Backend> Forecast<B> {
    /// Writes a PNG fan chart of one series and variate to `path`: the `history` (the context,
    /// `[B, V, T]`, as passed to [`Toto::forecast`](crate::toto::Toto::forecast)), the median, and the
    /// 50% and 90% central bands of the sample paths (the mean alone in mean mode).
    ///
    /// Labels use the first TrueType font found (`TOTO_FALLBACK_FONT`, else DejaVu Sans or
    /// Arial at their usual places); without one the chart has no text.
    ///
    /// # Errors
    /// [`Error::Input`] if `series` or `variate` is out of range or `history` does not match
    /// the forecast's batch; [`Error::ReadBack`] if the device read fails; [`Error::Io`] if the
    /// file cannot be written.
    pub fn fan_chart(
        &self,
        history: &Tensor<3>,
        path: impl AsRef<Path>,
        chart: &FanChart,
    ) -> Result<()> {
        let path = path.as_ref();
        let [b, v, horizon] = self.mean().dims();
        let [hb, hv, t] = history.dims();
        if chart.series >= b || chart.variate >= v || [hb, hv] != [b, v] {
            return Err(Error::input(
                "Forecast::fan_chart",
                InputKind::OutOfRange,
                format!(
                    "series {} and variate {} must index the forecast's [{b}, {v}] series, and \
                     the history ([{hb}, {hv}, {t}]) must have that batch shape",
                    chart.series, chart.variate
                ),
            ));
        }
        let row = |x: Tensor<3>, len: usize| -> Result<Vec<f32>> {
            let x = x
                .slice([
                    chart.series..chart.series + 1,
                    chart.variate..chart.variate + 1,
                    0..len,
                ])
                .reshape([len]);
            crate::backend::read_back("fan chart", x)
        };
        let past = row(history.clone(), t)?;
        let bands = if !matches!(self, Forecast::Mean(_)) {
            // One sort of the paths for the five levels.
            let levels = self.quantiles_at(&[0.05, 0.25, 0.5, 0.75, 0.95])?;
            let [b, v, t, _] = levels.dims();
            let q = |i: usize| row(levels.clone().narrow(3, i, 1).reshape([b, v, t]), horizon);
            Some([q(0)?, q(1)?, q(2)?, q(3)?, q(4)?])
        } else {
            None
        };
        let centre = match &bands {
            Some(b) => b[2].clone(),
            None => row(self.mean().clone(), horizon)?,
        };
        // plotters' errors are not `Send`: kept as their message.
        draw(path, chart, &past, &centre, bands.as_ref())
            .map_err(|e| Error::io(path.display(), format!("cannot draw the fan chart: {e}")))
    }
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(
    path: &Path,
    chart: &FanChart,
    past: &[f32],
    centre: &[f32],
    bands: Option<&[Vec<f32>; 5]>,
) -> DrawResult {
    let t = past.len() as f64;
    let x_max = t + centre.len() as f64;
    let values = past
        .iter()
        .chain(centre)
        .chain(bands.into_iter().flatten().flatten())
        .copied()
        .filter(|x| x.is_finite());
    let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (lo, hi) = if lo <= hi {
        let pad = ((hi - lo) * 0.05).max(1e-3);
        (f64::from(lo - pad), f64::from(hi + pad))
    } else {
        (-1.0, 1.0)
    };
    let text = font();
    let root = BitMapBackend::new(path, (chart.width, chart.height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        builder
            .caption(&chart.title, ("sans-serif", 22))
            .x_label_area_size(32)
            .y_label_area_size(56);
    }
    let mut plot = builder.build_cartesian_2d(0.0..x_max, lo..hi)?;
    let mut mesh = plot.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if text {
        mesh.x_desc("time step")
            .y_desc("value")
            .x_label_formatter(&|x| format!("{x:.0}"));
    } else {
        mesh.disable_axes().x_labels(0).y_labels(0);
    }
    mesh.draw()?;

    let blue = RGBColor(31, 119, 180);
    let at = |i: usize| t + i as f64;
    if let Some(q) = bands {
        for (lower, upper, alpha) in [(&q[0], &q[4], 0.18), (&q[1], &q[3], 0.35)] {
            let mut outline: Vec<(f64, f64)> = upper
                .iter()
                .enumerate()
                .map(|(i, &y)| (at(i), f64::from(y)))
                .collect();
            outline.extend(
                lower
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, &y)| (at(i), f64::from(y))),
            );
            plot.draw_series(std::iter::once(Polygon::new(
                outline,
                blue.mix(alpha).filled(),
            )))?;
        }
    }
    plot.draw_series(LineSeries::new(
        past.iter()
            .enumerate()
            .map(|(i, &y)| (i as f64, f64::from(y))),
        BLACK.stroke_width(2),
    ))?;
    plot.draw_series(LineSeries::new(
        centre
            .iter()
            .enumerate()
            .map(|(i, &y)| (at(i), f64::from(y))),
        blue.stroke_width(2),
    ))?;
    // The forecast origin.
    plot.draw_series(std::iter::once(PathElement::new(
        vec![(t, lo), (t, hi)],
        RGBColor(150, 150, 150),
    )))?;
    root.present()?;
    Ok(())
}
