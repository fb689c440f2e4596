//! The forecaster: pad the context, prefill once, decode patch by patch (mean or samples).

use burn::tensor::{Bool, Int, Tensor};

use super::cache::KvCache;
use super::model::Toto;
use super::output::TotoDistribution;
use super::stream::TotoStream;
use crate::backend::LayerOps;
use crate::distr::Distribution;
use crate::error::{Error, InputKind, Result};
use crate::forecast::{
    Forecast, ForecastOptions, ForecastRequest, Forecaster, Generation, Passes, Sealed,
    StreamContext, settle,
};
use crate::nn::phases::Phases;
use crate::shape::{MAX_ELEMENTS, saturating_product};

/// The entry point's name, for errors.
const WHAT: &str = "Toto::forecast";

/// What [`Toto::forecast`]'s read-back reports when the device fails.
const SETTLE: &str = "Toto::forecast (if an allocation failed, the device ran out of memory or \
                      past its largest buffer: lower samples_per_batch, which bounds the paths \
                      decoded at once)";

/// `Ok` unless an option Toto 1.0 reads is out of range: a horizon of 0, no samples, or a sample
/// count that `samples_per_batch` does not divide.
fn check(options: &ForecastOptions) -> Result<()> {
    options.check_common(WHAT)?;
    let spb = options.v1.samples_per_batch;
    match options.num_samples {
        Some(n) if n == 0 || spb == 0 || n % spb != 0 => Err(Error::input(
            WHAT,
            InputKind::OutOfRange,
            format!(
                "num_samples ({n}) must be a positive multiple of v1.samples_per_batch ({spb})"
            ),
        )),
        _ => Ok(()),
    }
}

impl<B: LayerOps> Toto<B> {
    /// Refuses a forecast whose largest tensors could not be allocated, before allocating
    /// anything: the output, the decoded paths, the activations of one step and the KV cache.
    /// The checks `forecast` makes of the options and the request's size, without inputs.
    pub(crate) fn check_request(&self, dims: [usize; 3], options: &ForecastOptions) -> Result<()> {
        check(options)?;
        self.check_forecast_size(dims, options)
    }

    fn check_forecast_size(&self, [b, v, t]: [usize; 3], options: &ForecastOptions) -> Result<()> {
        let c = self.config();
        let p = c.patch_size as u128;
        let (b, v, t, d) = (b as u128, v as u128, t as u128, c.embed_dim as u128);
        let pred = options.prediction_length as u128;
        let context = t.div_ceil(p) * p;
        let total = context + pred.div_ceil(p) * p;
        let samples = options.num_samples.unwrap_or(1) as u128;
        let spb = options
            .num_samples
            .map_or(1, |_| options.v1.samples_per_batch) as u128;
        let heads = c.num_heads as u128;
        let per_step = if options.v1.use_kv_cache { p } else { total };
        // Products of up to six sizes of up to 2^64 each: saturate rather than overflow.
        let needs: [(&'static str, Vec<u128>); 6] = [
            (
                "Toto::forecast: the forecast's samples [B, V, prediction_length, num_samples]",
                vec![b, v, pred, samples],
            ),
            (
                "Toto::forecast: the decoded paths [samples_per_batch·B, V, T]",
                vec![spb, b, v, total],
            ),
            (
                "Toto::forecast: the prefill's activations [B·V, T, embed_dim]",
                vec![b, v, context, d],
            ),
            (
                "Toto::forecast: one decode step's activations",
                vec![spb, b, v, per_step, d],
            ),
            (
                "Toto::forecast: one layer's KV cache",
                vec![spb, b, v, total / p, d],
            ),
            (
                "Toto::forecast: one layer's attention scores",
                vec![spb, b, v, heads, total / p, per_step / p],
            ),
        ];
        for (what, factors) in needs {
            let elements = saturating_product(factors.iter().copied());
            if elements > u128::from(MAX_ELEMENTS) {
                return Err(Error::TooLarge {
                    what,
                    shape: factors
                        .iter()
                        .map(|&f| usize::try_from(f).unwrap_or(usize::MAX))
                        .collect(),
                    elements,
                    limit: MAX_ELEMENTS,
                    fix: "lower samples_per_batch (paths decoded at once), num_samples, \
                          prediction_length or the context length",
                });
            }
        }
        Ok(())
    }
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

/// The decode state of a batch of paths: the context, shared by every path and never repeated
/// (a forecast of many sample paths of a long context would otherwise copy it per path, and
/// again at every step), and the patches each path decoded after it.
struct Paths {
    /// The context, `[B, V, T]`.
    series: Tensor<3>,
    mask: Tensor<3, Bool>,
    ids: Tensor<3, Int>,
    /// Paths per context row: the paths are `[times·B, V, ·]`, sample index outer.
    times: usize,
    /// The decoded patches, `[times·B, V, P]` each, in order.
    decoded: Vec<Tensor<3>>,
}

impl Paths {
    /// The context as the first steps of every path: non-finite values masked out (set to 0,
    /// padding), left-padded with masked steps to whole patches of `p` (toto-ts pads so too).
    fn context(series: Tensor<3>, mask: Tensor<3, Bool>, ids: Tensor<3, Int>, p: usize) -> Self {
        let [b, v, t] = series.dims();
        let device = series.device();
        let bad = series.clone().is_nan().bool_or(series.clone().is_inf());
        let series = series.mask_fill(bad.clone(), 0.0);
        let mask = mask.bool_and(bad.bool_not());
        let pad = t.div_ceil(p) * p - t;
        if pad == 0 {
            return Paths::of(series, mask, ids);
        }
        let first = ids.clone().slice([0..b, 0..v, 0..1]).repeat_dim(2, pad);
        Paths::of(
            Tensor::cat(vec![Tensor::zeros([b, v, pad], &device), series], 2),
            Tensor::cat(
                vec![Tensor::<3, Int>::zeros([b, v, pad], &device).bool(), mask],
                2,
            ),
            Tensor::cat(vec![first, ids], 2),
        )
    }

    /// One path per row of a context given as it is.
    fn of(series: Tensor<3>, mask: Tensor<3, Bool>, ids: Tensor<3, Int>) -> Self {
        Paths {
            series,
            mask,
            ids,
            times: 1,
            decoded: Vec::new(),
        }
    }

    /// Steps held: the context's and the decoded ones.
    fn len(&self) -> usize {
        self.series.dims()[2] + self.decoded.iter().map(|y| y.dims()[2]).sum::<usize>()
    }

    /// The ids of `steps` steps after the context of every path (its last step's), with the
    /// observed mask of decoded steps.
    fn after(&self, steps: usize) -> (Tensor<3, Bool>, Tensor<3, Int>) {
        let [b, v, t] = self.series.dims();
        let rows = self.times * b;
        let device = self.series.device();
        let last = self.ids.clone().slice([0..b, 0..v, t - 1..t]);
        (
            Tensor::<3, Int>::ones([rows, v, steps], &device).bool(),
            self.per_path(last).repeat_dim(2, steps),
        )
    }

    /// Appends a decoded patch of every path (`[times·B, V, P]`).
    fn push(&mut self, y: Tensor<3>) {
        self.decoded.push(y);
    }

    /// `times` paths for each of these (sample index outer).
    fn repeat(&self, times: usize) -> Paths {
        Paths {
            series: self.series.clone(),
            mask: self.mask.clone(),
            ids: self.ids.clone(),
            times: self.times * times,
            decoded: self
                .decoded
                .iter()
                .map(|y| y.clone().repeat_dim(0, times))
                .collect(),
        }
    }

    /// `x` (`[B, …]`) for every path: repeated `times` along the batch (a copy; none for one
    /// path per row).
    fn per_path<K: burn::tensor::kind::Basic>(&self, x: Tensor<3, K>) -> Tensor<3, K> {
        match self.times {
            1 => x,
            times => x.repeat_dim(0, times),
        }
    }

    /// Every step of every path: values, mask and ids, `[times·B, V, len]`.
    fn whole(&self) -> (Tensor<3>, Tensor<3, Bool>, Tensor<3, Int>) {
        let context = (
            self.per_path(self.series.clone()),
            self.per_path(self.mask.clone()),
            self.per_path(self.ids.clone()),
        );
        if self.decoded.is_empty() {
            return context;
        }
        let steps = self.len() - self.series.dims()[2];
        let (mask, ids) = self.after(steps);
        let mut series = vec![context.0];
        series.extend(self.decoded.iter().cloned());
        (
            Tensor::cat(series, 2),
            Tensor::cat(vec![context.1, mask], 2),
            Tensor::cat(vec![context.2, ids], 2),
        )
    }

    /// The last `p` steps of every path (a decoded patch, or the context's last), as
    /// [`Paths::whole`].
    fn last(&self, p: usize) -> (Tensor<3>, Tensor<3, Bool>, Tensor<3, Int>) {
        if let Some(y) = self.decoded.last() {
            let (mask, ids) = self.after(p);
            return (y.clone(), mask, ids);
        }
        let [b, v, t] = self.series.dims();
        let last = [0..b, 0..v, t - p..t];
        (
            self.per_path(self.series.clone().slice(last.clone())),
            self.per_path(self.mask.clone().slice(last.clone())),
            self.per_path(self.ids.clone().slice(last)),
        )
    }

    /// The first `steps` decoded steps of every path, `[times·B, V, steps]`.
    fn predicted(&self, steps: usize) -> Tensor<3> {
        let y = Tensor::cat(self.decoded.clone(), 2);
        let [rows, v, _] = y.dims();
        y.slice([0..rows, 0..v, 0..steps])
    }
}

impl<B: LayerOps> Toto<B> {
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
    /// [`Error::Input`] for bad shapes or options; [`Error::DeviceMismatch`] for an input on
    /// another device; [`Error::TooLarge`] for a request whose tensors could not be allocated
    /// ([`MAX_ELEMENTS`]); [`Error::ReadBack`] if the device failed (out of memory); the
    /// backend's errors.
    pub fn forecast(
        &self,
        series: Tensor<3>,
        padding_mask: Option<Tensor<3, Bool>>,
        id_mask: Option<Tensor<3, Int>>,
        options: &ForecastOptions,
    ) -> Result<Forecast<B>> {
        self.forecast_drawing(series, padding_mask, id_mask, options, None)
    }

    /// [`Toto::forecast`] with the sample paths drawn through `draws` (a
    /// [`Backend::with_draw_window`] handle of this model's backend) instead of the model's
    /// backend: how a slice of a batch forecast on its own device draws the batch's paths.
    fn forecast_drawing(
        &self,
        series: Tensor<3>,
        padding_mask: Option<Tensor<3, Bool>>,
        id_mask: Option<Tensor<3, Int>>,
        options: &ForecastOptions,
        draws: Option<&B>,
    ) -> Result<Forecast<B>> {
        check(options)?;
        let [b, v, t] = series.dims();
        let device = series.device();
        let mask =
            padding_mask.unwrap_or_else(|| Tensor::<3, Int>::ones([b, v, t], &device).bool());
        let ids = id_mask.unwrap_or_else(|| Tensor::zeros([b, v, t], &device));
        self.check_inputs(WHAT, &series, &mask, &ids)?;
        if b == 0 || v == 0 || t == 0 {
            return Err(Error::input(
                WHAT,
                InputKind::Empty,
                format!("the series {:?} has an empty dimension", [b, v, t]),
            ));
        }
        self.check_forecast_size([b, v, t], options)?;
        crate::forecast::note_first_run("Toto 1.0", &device, || {
            format!(
                "a [{b}, {v}, {t}] series, {} steps ahead, {:?} samples in batches of {}",
                options.prediction_length, options.num_samples, options.v1.samples_per_batch
            )
        });
        let paths = Paths::context(series, mask, ids, self.config().patch_size);
        self.decode(paths, None, options, draws)
    }

    /// Decodes the forecast after `paths`: from their prefill, or from `prefilled` (the
    /// context's cache and the distribution of the patch after it).
    fn decode(
        &self,
        paths: Paths,
        prefilled: Option<(KvCache, TotoDistribution<B>)>,
        options: &ForecastOptions,
        draws: Option<&B>,
    ) -> Result<Forecast<B>> {
        let steps = options.prediction_length.div_ceil(self.config().patch_size);
        // The prefill (unless given), then every step but the first (per sample batch).
        let prefill = usize::from(prefilled.is_none());
        let passes = match options.num_samples {
            None => prefill + steps - 1,
            Some(n) => prefill + n / options.v1.samples_per_batch * (steps - 1),
        };
        let device = paths.series.device();
        let mut decoder = Decoder {
            toto: self,
            context: paths.len(),
            options,
            phases: Phases::new("toto_fallback::forecast", &device),
            passes: Passes::new(options.progress.as_ref(), passes),
            draws,
        };
        match options.num_samples {
            None => decoder.mean(paths, prefilled),
            Some(n) => decoder.samples(paths, n, prefilled),
        }
    }

    /// The forecast that continues a prefilled `cache` whose last patch, `[B, V, P]` values
    /// (non-finite ones masked), mask and ids, gave `first` (the distribution of the patch
    /// after it): a streaming session's forecast, which runs only the horizon's patches.
    pub(crate) fn forecast_continuing(
        &self,
        (series, mask, ids): (Tensor<3>, Tensor<3, Bool>, Tensor<3, Int>),
        cache: KvCache,
        first: TotoDistribution<B>,
        options: &ForecastOptions,
    ) -> Result<Forecast<B>> {
        check(options)?;
        let paths = Paths::of(series, mask, ids);
        self.decode(paths, Some((cache, first)), options, None)
    }

    /// The forecast of a checked request ([`Forecaster::predict`]): its series' values, mask
    /// and series ids (taken as the constant `id_mask`); timestamps are unused (Toto 1.0
    /// ignores time).
    fn predict_request(&self, request: &ForecastRequest, draws: Option<&B>) -> Result<Forecast<B>> {
        if let Some(c) = &request.covariates {
            return Err(no_covariates(c.shape()[1]));
        }
        let series = &request.series;
        let [b, v, t] = series.shape();
        let (values, mask, ids) = series.to_tensors(self.backend().device());
        let ids = ids.reshape([b, v, 1]).expand([b, v, t]); // [B, V, T]
        self.forecast_drawing(values, Some(mask), Some(ids), &request.options, draws)
    }
}

impl<B: LayerOps> Sealed for Toto<B> {}

impl<B: LayerOps> Forecaster for Toto<B> {
    type Backend = B;

    fn from_dir(backend: &B, dir: impl AsRef<std::path::Path>) -> Result<Self> {
        Toto::from_dir(backend, dir)
    }

    fn backend(&self) -> &B {
        Toto::backend(self)
    }

    fn generation(&self) -> Generation {
        Generation::V1
    }

    fn patch_size(&self) -> usize {
        self.config().patch_size
    }

    fn parameter_count(&self) -> u64 {
        self.config().parameter_count() as u64
    }

    fn check_request(&self, dims: [usize; 3], options: &ForecastOptions) -> Result<()> {
        Toto::check_request(self, dims, options)
    }

    fn draws_per_item(&self, [_, v, _]: [usize; 3], options: &ForecastOptions) -> Option<usize> {
        options.num_samples.map(|_| v * self.config().patch_size)
    }

    fn predict_drawing(&self, request: &ForecastRequest, draws: Option<&B>) -> Result<Forecast<B>> {
        self.predict_request(request, draws)
    }

    type StreamState = TotoStream<B>;

    fn stream_open(
        &self,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<TotoStream<B>> {
        if let Some(c) = &context.covariates {
            return Err(no_covariates(c.count));
        }
        // Room for the window and a mean forecast's decoded patches: every update and every
        // forecast step attends over one shape.
        let steps = options.prediction_length.div_ceil(self.config().patch_size);
        self.stream_prefill(context, context.window.max(context.patches()) + steps)
    }

    fn stream_extend(
        &self,
        state: &mut TotoStream<B>,
        context: &StreamContext,
        new_patches: usize,
        _: &ForecastOptions,
    ) -> Result<bool> {
        self.stream_push(state, context, new_patches)
    }

    fn stream_forecast(
        &self,
        state: &mut TotoStream<B>,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<(Forecast<B>, bool)> {
        self.check_request([context.shape[0], context.shape[1], context.len()], options)?;
        Ok((self.stream_predict(state, context, options)?, false))
    }
}

/// One forecast's decoding: the model, the padded context's length, the options.
struct Decoder<'a, B: LayerOps> {
    toto: &'a Toto<B>,
    context: usize,
    options: &'a ForecastOptions,
    phases: Phases,
    passes: Passes<'a>,
    /// The backend the paths are drawn through, when not the model's.
    draws: Option<&'a B>,
}

impl<B: LayerOps> Decoder<'_, B> {
    /// The distribution of the next patch only (the forward covers the whole context at
    /// prefill, and every step without a cache); the scaler's clamp from the context alone.
    fn next(&mut self, paths: &Paths, cache: Option<&mut KvCache>) -> Result<TotoDistribution<B>> {
        let p = self.toto.config().patch_size;
        let out = match cache {
            // A decode step continues the cache's scaler: only its new patch is read.
            Some(cache) if !cache.is_empty() && cache.scaler.is_some() => {
                let (series, mask, ids) = paths.last(p);
                self.toto.extend_patch(series, mask, ids, cache)?
            }
            cache => {
                let (series, mask, ids) = paths.whole();
                self.toto
                    .forward(series, mask, ids, cache, Some(self.context))?
            }
        };
        self.passes.tick();
        let mut last = out.last_steps(p);
        if let Some(draws) = self.draws {
            last.backend = draws.clone();
        }
        last.distribution()
    }

    /// An empty cache with room for the context and `steps` decoded patches (the prefill
    /// alone, with none, fills its buffers: no copy).
    fn cache(&self, steps: usize) -> KvCache {
        let p = self.toto.config().patch_size;
        KvCache::with_capacity(self.context.div_ceil(p) + steps)
    }

    /// Decode steps: the horizon in whole patches.
    fn steps(&self) -> usize {
        self.options
            .prediction_length
            .div_ceil(self.toto.config().patch_size)
    }

    /// The predicted steps of decoded paths, `[rows, V, prediction_length]`.
    fn trim(&self, paths: &Paths) -> Tensor<3> {
        paths.predicted(self.options.prediction_length)
    }

    /// Mean mode: the analytic mean of each patch fed back. With `prefilled`, the context's
    /// cache and the distribution of its next patch (a streaming session's).
    fn mean(
        &mut self,
        mut paths: Paths,
        prefilled: Option<(KvCache, TotoDistribution<B>)>,
    ) -> Result<Forecast<B>> {
        let (mut cache, mut first) = match prefilled {
            Some((cache, first)) => (Some(cache), Some(first)),
            None => {
                let decoded = self.steps().saturating_sub(1);
                (
                    self.options.v1.use_kv_cache.then(|| self.cache(decoded)),
                    None,
                )
            }
        };
        for step in 0..self.steps() {
            let d = match first.take() {
                Some(d) => d,
                None => self.next(&paths, cache.as_mut())?,
            };
            let y = replace_extreme(d.mean());
            paths.push(y);
            self.phases
                .mark(|| format!("step {step}: forward and mean"));
        }
        let mean = self.trim(&paths);
        settle(SETTLE, &mean)?;
        Ok(Forecast::Mean(mean))
    }

    /// Sample mode: the context prefilled once, then `n` paths decoded in chunks of
    /// `samples_per_batch` over the shared prefill.
    fn samples(
        &mut self,
        paths: Paths,
        n: usize,
        prefilled: Option<(KvCache, TotoDistribution<B>)>,
    ) -> Result<Forecast<B>> {
        let [b, v, _] = paths.series.dims();
        let spb = self.options.v1.samples_per_batch;
        // Prefill once; its last patch's distribution gives every path's first step.
        let (prefill, first) = match prefilled {
            Some((cache, first)) => (Some(cache), first),
            None => {
                let mut prefill = self.options.v1.use_kv_cache.then(|| self.cache(0));
                let first = self.next(&paths, prefill.as_mut())?;
                let context = self.context;
                self.phases.mark(|| format!("prefill of {context} steps"));
                (prefill, first)
            }
        };
        let chunks = (0..n / spb)
            .map(|c| self.chunk(c, &paths, &first, prefill.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let pred = self.options.prediction_length;
        let samples = Tensor::cat(chunks, 0) // [N·B, V, pred], sample index outer
            .reshape([n, b, v, pred])
            .permute([1, 2, 3, 0]); // [B, V, pred, N]
        let mean = samples.clone().mean_dim(3).reshape([b, v, pred]);
        settle(SETTLE, &mean)?;
        Ok(Forecast::Samples {
            mean,
            paths: samples,
        })
    }

    /// Chunk `c` of `samples_per_batch` paths: `[spb·B, V, prediction_length]`.
    fn chunk(
        &mut self,
        c: usize,
        paths: &Paths,
        first: &TotoDistribution<B>,
        prefill: Option<&KvCache>,
    ) -> Result<Tensor<3>> {
        let [b, v, _] = paths.series.dims();
        let (spb, p) = (
            self.options.v1.samples_per_batch,
            self.toto.config().patch_size,
        );
        let draws: Tensor<4> = first.sample(&[spb])?; // [spb, B, V, P]
        let mut chunk = paths.repeat(spb);
        let mut cache = prefill.map(|c| c.share(spb, self.steps().saturating_sub(1)));
        chunk.push(replace_extreme(draws.reshape([spb * b, v, p])));
        self.phases
            .mark(|| format!("chunk {c}, step 0: {spb} draws per series"));
        for step in 1..self.steps() {
            let d = self.next(&chunk, cache.as_mut())?;
            self.phases
                .mark(|| format!("chunk {c}, step {step}: forward"));
            let y: Tensor<3> = d.sample(&[])?;
            chunk.push(replace_extreme(y));
            self.phases
                .mark(|| format!("chunk {c}, step {step}: draws"));
        }
        Ok(self.trim(&chunk))
    }
}

/// The refusal of `k` known covariates: Toto 1.0 has no input for them.
fn no_covariates(k: usize) -> Error {
    crate::forecast::toto1_refuses_covariates(WHAT, k)
}
