//! The forecaster: pad the context, prefill once, decode patch by patch (mean or samples).

use burn::tensor::{Bool, Int, Tensor};

use super::model::KvCache;
use super::{Phases, Toto, TotoDistribution};
use crate::backend::{Backend, MAX_ELEMENTS, saturating_product};
use crate::dist::Distribution;
use crate::error::{Error, Result};

/// How to forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastOptions {
    /// Steps to predict (rounded up to whole patches internally, trimmed on output).
    pub prediction_length: usize,
    /// Sample paths; `None` feeds back the analytic mean (toto-ts's mean mode).
    pub num_samples: Option<usize>,
    /// Sample paths decoded together (bounds memory); must divide `num_samples`.
    pub samples_per_batch: usize,
    /// Decode with the KV cache (toto-ts's default) or recompute the whole sequence per step.
    pub use_kv_cache: bool,
}

impl Default for ForecastOptions {
    fn default() -> Self {
        ForecastOptions {
            prediction_length: 64,
            num_samples: Some(256),
            samples_per_batch: 256,
            use_kv_cache: true,
        }
    }
}

/// A forecast: the mean path and, in sample mode, every sample path.
#[derive(Debug, Clone)]
pub struct Forecast {
    /// `[B, V, prediction_length]`: the sample mean, or the fed-back analytic mean.
    pub mean: Tensor<3>,
    /// `[B, V, prediction_length, num_samples]` in sample mode.
    pub samples: Option<Tensor<4>>,
}

impl Forecast {
    /// The `q`-quantile of the samples per step (torch's linear interpolation between order
    /// statistics at `q·(n − 1)`); the mean path in mean mode.
    ///
    /// # Errors
    /// [`Error::Input`] unless `q` is in `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Result<Tensor<3>> {
        if !(0.0..=1.0).contains(&q) {
            return Err(Error::Input {
                what: "Forecast::quantile",
                reason: format!("the level must be in [0, 1]; got {q}"),
            });
        }
        let Some(samples) = &self.samples else {
            return Ok(self.mean.clone());
        };
        let [b, v, t, n] = samples.dims();
        let sorted = samples.clone().sort(3);
        let pos = q * (n - 1) as f64;
        let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
        let hi = (lo + 1).min(n - 1);
        let at = |i: usize| {
            sorted
                .clone()
                .slice([0..b, 0..v, 0..t, i..i + 1])
                .reshape([b, v, t])
        };
        Ok(at(lo).mul_scalar(1.0 - frac).add(at(hi).mul_scalar(frac)))
    }

    /// The median (the 0.5-quantile): the point forecast of the GIFT-Eval and BOOM evaluations.
    ///
    /// # Errors
    /// Never in practice; as [`Forecast::quantile`].
    pub fn median(&self) -> Result<Tensor<3>> {
        self.quantile(0.5)
    }

    /// The sample standard deviation per step (Bessel-corrected); zeros in mean mode.
    pub fn std(&self) -> Tensor<3> {
        match &self.samples {
            None => self.mean.zeros_like(),
            Some(s) => {
                let n = s.dims()[3];
                let [b, v, t, _] = s.dims();
                s.clone()
                    .var(3)
                    .mul_scalar(if n > 1 { 1.0 } else { f64::NAN })
                    .sqrt()
                    .reshape([b, v, t])
            }
        }
    }
}

impl<B: Backend> Toto<B> {
    /// Refuses a forecast whose largest tensors could not be allocated, before allocating
    /// anything: the output, the decoded paths, the activations of one step and the KV cache.
    fn check_forecast_size(&self, [b, v, t]: [usize; 3], options: &ForecastOptions) -> Result<()> {
        let c = &self.config;
        let p = c.patch_size as u128;
        let (b, v, t, d) = (b as u128, v as u128, t as u128, c.embed_dim as u128);
        let pred = options.prediction_length as u128;
        let context = t.div_ceil(p) * p;
        let total = context + pred.div_ceil(p) * p;
        let samples = options.num_samples.unwrap_or(1) as u128;
        let spb = options.num_samples.map_or(1, |_| options.samples_per_batch) as u128;
        let heads = c.num_heads as u128;
        let per_step = if options.use_kv_cache { p } else { total };
        // Products of up to five sizes of up to 2^64 each: saturate rather than overflow.
        let needs = [
            (
                "the forecast's samples [B, V, prediction_length, num_samples]",
                saturating_product([b, v, pred, samples]),
            ),
            (
                "the decoded paths [samples_per_batch·B, V, T]",
                saturating_product([spb, b, v, total]),
            ),
            (
                "the prefill's activations [B·V, T, embed_dim]",
                saturating_product([b, v, context, d]),
            ),
            (
                "one decode step's activations",
                saturating_product([spb, b, v, per_step, d]),
            ),
            (
                "one layer's KV cache",
                saturating_product([spb, b, v, total / p, d]),
            ),
            (
                "one layer's attention scores",
                saturating_product([spb, b, v, heads, total / p, per_step / p]),
            ),
        ];
        match needs.iter().find(|(_, n)| *n > u128::from(MAX_ELEMENTS)) {
            None => Ok(()),
            Some((what, n)) => Err(Error::Input {
                what: "Toto::forecast",
                reason: format!(
                    "{what} would hold {n} elements, more than the {MAX_ELEMENTS} one tensor may \
                     hold; lower samples_per_batch (paths decoded at once), num_samples, \
                     prediction_length or the context length"
                ),
            }),
        }
    }
}

/// Waits for the work behind `t` and reports its failure. burn's tensor ops are lazy and
/// infallible: an allocation the device refuses (out of memory, or past the adapter's largest
/// buffer) marks the tensors that depend on it as failed, and the failure surfaces when they
/// are read. Reading one sum of the result here turns it into an error of the call that queued
/// the work, instead of a panic in the caller's `into_data`.
fn settle(what: &str, t: &Tensor<3>) -> Result<()> {
    t.clone()
        .sum()
        .try_into_data()
        .map(drop)
        .map_err(|e| Error::ReadBack {
            what: what.to_owned(),
            device: format!("{:?}", t.device()),
            reason: format!(
                "{e}\n(if an allocation failed, the device ran out of memory or past its largest \
                 buffer: lower samples_per_batch, which bounds the paths decoded at once)"
            ),
        })
}

/// Values that must not be fed back: NaN, ±inf, `|y| >= f32::MAX / 2` become 0 (toto-ts's
/// `replace_extreme_values`).
fn replace_extreme(y: Tensor<3>) -> Tensor<3> {
    let bad = y
        .clone()
        .is_nan()
        .bool_or(y.clone().abs().greater_equal_elem(f32::MAX / 2.0));
    y.mask_fill(bad, 0.0)
}

/// The decode state of a batch of paths.
struct Paths {
    series: Tensor<3>,
    mask: Tensor<3, Bool>,
    ids: Tensor<3, Int>,
}

impl Paths {
    fn push(&mut self, y: Tensor<3>) {
        let [b, v, p] = y.dims();
        let t = self.series.dims()[2];
        let device = y.device();
        self.series = Tensor::cat(vec![self.series.clone(), y], 2);
        self.mask = Tensor::cat(
            vec![
                self.mask.clone(),
                Tensor::<3, Int>::ones([b, v, p], &device).bool(),
            ],
            2,
        );
        let last = self.ids.clone().slice([0..b, 0..v, t - 1..t]);
        self.ids = Tensor::cat(vec![self.ids.clone(), last.repeat_dim(2, p)], 2);
    }

    fn repeat(&self, times: usize) -> Paths {
        Paths {
            series: self.series.clone().repeat_dim(0, times),
            mask: self.mask.clone().repeat_dim(0, times),
            ids: self.ids.clone().repeat_dim(0, times),
        }
    }
}

impl<B: Backend> Toto<B> {
    /// Forecasts `series` (`[B, V, T]`, any `T >= 1`).
    ///
    /// - `padding_mask`: true for real values (`None`: all real); NaN or ±inf values are
    ///   masked out (set to 0 and treated as padding) instead of poisoning the scaler.
    /// - `id_mask`: group ids per variate and step (`None`: all variates one group).
    ///
    /// The context is left-padded to a multiple of the patch size as toto-ts does. In sample
    /// mode the context is prefilled **once** and its KV cache shared by every sample path
    /// (toto-ts repeats the prefill per path; the prefix is identical, so sharing is exact).
    ///
    /// The call returns once the device has finished the forecast (it reads back one sum of
    /// the mean), so that a device failure — an allocation the GPU refused — is an error here
    /// rather than a panic where the result is read.
    ///
    /// # Errors
    /// [`Error::Input`] for bad shapes or options, or a request whose tensors could not be
    /// allocated ([`MAX_ELEMENTS`]); [`Error::ReadBack`] if the device failed (out of memory);
    /// the model's and backend's errors.
    pub fn forecast(
        &self,
        series: Tensor<3>,
        padding_mask: Option<Tensor<3, Bool>>,
        id_mask: Option<Tensor<3, Int>>,
        options: &ForecastOptions,
    ) -> Result<Forecast> {
        let [b, v, t] = series.dims();
        let input = |reason: String| Error::Input {
            what: "Toto::forecast",
            reason,
        };
        if b == 0 || v == 0 || t == 0 {
            return Err(input(format!(
                "the series {:?} has an empty dimension",
                [b, v, t]
            )));
        }
        if options.prediction_length == 0 {
            return Err(input("prediction_length must be at least 1".to_owned()));
        }
        let spb = options.samples_per_batch;
        if let Some(n) = options.num_samples
            && (n == 0 || spb == 0 || n % spb != 0)
        {
            return Err(input(format!(
                "num_samples ({n}) must be a positive multiple of samples_per_batch ({spb})"
            )));
        }
        let device = series.device();
        self.check_device("Toto::forecast", "series", &device)?;
        let mask =
            padding_mask.unwrap_or_else(|| Tensor::<3, Int>::ones([b, v, t], &device).bool());
        self.check_device("Toto::forecast", "padding_mask", &mask.device())?;
        let ids = id_mask.unwrap_or_else(|| Tensor::zeros([b, v, t], &device));
        self.check_device("Toto::forecast", "id_mask", &ids.device())?;
        if mask.dims() != [b, v, t] || ids.dims() != [b, v, t] {
            return Err(input(format!(
                "padding_mask {:?} and id_mask {:?} must have the series' shape {:?}",
                mask.dims(),
                ids.dims(),
                [b, v, t]
            )));
        }
        self.check_forecast_size([b, v, t], options)?;
        // Non-finite values are masked out.
        let bad = series.clone().is_nan().bool_or(series.clone().is_inf());
        let series = series.mask_fill(bad.clone(), 0.0);
        let mask = mask.bool_and(bad.bool_not());
        // Left-pad to whole patches.
        let p = self.config.patch_size;
        let pad = t.div_ceil(p) * p - t;
        let mut paths = if pad == 0 {
            Paths { series, mask, ids }
        } else {
            let first = ids.clone().slice([0..b, 0..v, 0..1]).repeat_dim(2, pad);
            Paths {
                series: Tensor::cat(vec![Tensor::zeros([b, v, pad], &device), series], 2),
                mask: Tensor::cat(
                    vec![Tensor::<3, Int>::zeros([b, v, pad], &device).bool(), mask],
                    2,
                ),
                ids: Tensor::cat(vec![first, ids], 2),
            }
        };
        let context = t + pad;
        let steps = options.prediction_length.div_ceil(p);
        let prefix = Some(context);
        // The distribution of the next patch only (the forward covers the whole context at
        // prefill, and every step without a cache).
        let next = |paths: &Paths, cache: Option<&mut KvCache>| -> Result<TotoDistribution<B>> {
            self.forward(
                paths.series.clone(),
                paths.mask.clone(),
                paths.ids.clone(),
                cache,
                prefix,
            )?
            .last_steps(p)
            .distribution()
        };
        let trim = |s: Tensor<3>| {
            let [bb, vv, _] = s.dims();
            s.slice([0..bb, 0..vv, context..context + options.prediction_length])
        };
        let mut phases = Phases::new("toto_fallback::forecast", &device);
        match options.num_samples {
            None => {
                let mut cache = options.use_kv_cache.then(KvCache::default);
                for step in 0..steps {
                    let y = replace_extreme(next(&paths, cache.as_mut())?.mean());
                    paths.push(y);
                    phases.mark(|| format!("step {step}: forward and mean"));
                }
                let mean = trim(paths.series);
                settle("Toto::forecast", &mean)?;
                Ok(Forecast {
                    mean,
                    samples: None,
                })
            }
            Some(n) => {
                // Prefill once; its last patch's distribution gives every path's first step.
                let mut prefill_cache = options.use_kv_cache.then(KvCache::default);
                let first = next(&paths, prefill_cache.as_mut())?;
                phases.mark(|| format!("prefill of {context} steps"));
                let mut chunks = Vec::with_capacity(n / spb);
                for c in 0..n / spb {
                    let draws: Tensor<4> = first.sample(&[spb])?; // [spb, B, V, P]
                    let y = draws.reshape([spb * b, v, p]);
                    let mut chunk = paths.repeat(spb);
                    let mut cache = prefill_cache.as_ref().map(|c| c.share(spb));
                    chunk.push(replace_extreme(y));
                    phases.mark(|| format!("chunk {c}, step 0: {spb} draws per series"));
                    for step in 1..steps {
                        let d = next(&chunk, cache.as_mut())?;
                        phases.mark(|| format!("chunk {c}, step {step}: forward"));
                        let y: Tensor<3> = d.sample(&[])?;
                        chunk.push(replace_extreme(y));
                        phases.mark(|| format!("chunk {c}, step {step}: draws"));
                    }
                    chunks.push(trim(chunk.series)); // [spb·B, V, pred]
                }
                let pred = options.prediction_length;
                let samples = Tensor::cat(chunks, 0) // [N·B, V, pred], sample index outer
                    .reshape([n, b, v, pred])
                    .permute([1, 2, 3, 0]); // [B, V, pred, N]
                let mean = samples.clone().mean_dim(3).reshape([b, v, pred]);
                settle("Toto::forecast", &mean)?;
                Ok(Forecast {
                    mean,
                    samples: Some(samples),
                })
            }
        }
    }
}
