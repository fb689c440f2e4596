//! Toto 2.0's forecaster (toto-2's `Toto2Model.forecast`): one pass over the context and
//! zero-filled prediction patches, or block decoding with a KV cache and median feedback; known
//! covariates as extra variates; the real-space cap and the short-patch scaler backfill.

use burn::tensor::{Bool, Int, Tensor};

use super::decoder::{Cache, Pass};
use super::model::{LEVELS, MEDIAN, Toto2, group_ids, observed, scaled};
use super::stream::Toto2Stream;
use crate::backend::LayerOps;
use crate::distr::QuantileKnots;
use crate::error::{Error, InputKind, Result};
use crate::forecast::{
    Forecast, ForecastOptions, ForecastRequest, Forecaster, Generation, Passes, Sealed, Series,
    StreamContext,
};
use crate::nn::phases::Phases;
use crate::shape::{MAX_ELEMENTS, saturating_product};

/// The entry point's name, for errors.
const WHAT: &str = "Toto2::forecast";
/// Known covariates (toto-2's `known_dynamic`): series known over the context and the horizon,
/// appended to the target as extra variates with their own masks and series ids. They inform
/// the forecast and are not forecast themselves.
#[derive(Debug, Clone)]
pub struct Covariates {
    /// `[B, K, T_c]`, aligned with the target's first step: any length up to the context and
    /// horizon (`T_c ≤ T + horizon` rounded up to patches); steps past `T_c` are unobserved.
    pub values: Tensor<3>,
    /// `[B, K, T_c]`, true where a value is known.
    pub mask: Tensor<3, Bool>,
    /// `[B, K]`: the series ids; a covariate informs the targets of the same id.
    pub series_ids: Tensor<2, Int>,
}

/// The inputs of one forecast, prepared: targets and covariates over context + horizon.
struct Prepared {
    /// `[B, V + K, T + pred]`.
    target: Tensor<3>,
    mask: Tensor<3, Bool>,
    /// `[B, V + K, max(ip + np, 2·bsp)]`.
    gids: Tensor<3, Int>,
    /// Target variates `V`.
    variates: usize,
    /// Context steps `T` (whole patches).
    context: usize,
}

impl<B: LayerOps> Toto2<B> {
    /// Forecasts `target` (`[B, V, T]`, any `T >= 1`): the 9 quantiles of every step, as a
    /// [`Forecast`] whose [`Forecast::quantile`] interpolates between them.
    ///
    /// - `target_mask`: true for observed values (`None`: all observed); non-finite values are
    ///   treated as unobserved.
    /// - `series_ids`: `[B, V]`, variates with equal ids inform each other (`None`: all 0; any
    ///   id but `i32::MIN`).
    /// - `covariates`: known covariates, appended as extra variates.
    ///
    /// A context that is not a whole number of patches is left-padded with unobserved steps,
    /// as toto-2's GluonTS wrapper pads it. As toto-2 does, the last context patch is treated as
    /// observed (its unobserved values, zeros after masking, enter the scaler).
    ///
    /// Nothing is read back from the device on a backend that runs the scaler natively: the
    /// quantiles are computed and sorted there, and a device failure (out of memory) surfaces
    /// when the result is read (`try_into_data` returns it; `into_data` panics). Where the
    /// scaler is forwarded (Metal, without f64), each block reads the series back for it.
    ///
    /// # Errors
    /// [`Error::Input`] for bad shapes or options; [`Error::DeviceMismatch`] for an input on
    /// another device; the backend's errors.
    pub fn forecast(
        &self,
        target: Tensor<3>,
        target_mask: Option<Tensor<3, Bool>>,
        series_ids: Option<Tensor<2, Int>>,
        covariates: Option<&Covariates>,
        options: &ForecastOptions,
    ) -> Result<Forecast<B>> {
        let [b, v, t] = target.dims();
        let device = target.device();
        let mask = target_mask.unwrap_or_else(|| Tensor::<3, Int>::ones([b, v, t], &device).bool());
        let ids = series_ids.unwrap_or_else(|| Tensor::zeros([b, v], &device));
        self.check_inputs(WHAT, &target, &mask, &ids)?;
        if b == 0 || v == 0 || t == 0 {
            return Err(Error::input(
                WHAT,
                InputKind::Empty,
                format!("the target {:?} has an empty dimension", [b, v, t]),
            ));
        }
        let (patches, block) = self.blocks(options)?;
        let extra = covariates.map_or(0, |c| c.values.dims()[1]);
        self.check_size([b, v, t], extra, patches, block)?;
        let prepared = self.prepare(target, mask, ids, covariates, patches, block)?;
        crate::forecast::note_first_run("Toto 2.0", &device, || {
            format!(
                "a [{b}, {v}, {t}] series with {extra} covariates, {} steps ahead in blocks \
                     of {block} patches",
                options.prediction_length
            )
        });
        let quantiles = self.decode_blocks(prepared, patches, block, options)?; // [9, B, V, H]
        self.knots_forecast(quantiles)
    }

    /// The forecast of `[9, B, V, H]` sorted real-space quantiles.
    pub(crate) fn knots_forecast(&self, quantiles: Tensor<4>) -> Result<Forecast<B>> {
        let knots = quantiles.permute([1, 2, 3, 0]); // [B, V, H, 9]
        let knots = QuantileKnots::new(&self.backend, &LEVELS, knots)?;
        Ok(Forecast::from_quantiles(knots))
    }

    /// The sorted real-space quantiles of head outputs `q` (`[9, B, Vt, S, P]`, asinh space)
    /// at steps whose scaler statistics are `loc`/`scale` (broadcastable to `q`), capped to
    /// `cap` when given.
    pub(crate) fn real_space(
        &self,
        q: Tensor<5>,
        loc: Tensor<5>,
        scale: Tensor<5>,
        cap: Option<&(Tensor<5>, Tensor<5>)>,
    ) -> Result<Tensor<5>> {
        let dims = q.dims();
        let mut real = clamp_nonfinite(q.sinh().mul(scale.expand(dims)).add(loc.expand(dims)));
        if let Some((lo, hi)) = cap {
            real = real
                .max_pair(lo.clone().expand(dims))
                .min_pair(hi.clone().expand(dims));
        }
        // The 9 levels ascending, NaN last (the backend's sort; on GPUs without a host round
        // trip).
        self.backend.sort_first(real)
    }

    /// The horizon in patches and the block length in patches, from checked options.
    /// The checks `forecast` makes of the options and the request's size, without inputs.
    pub(crate) fn check_request(&self, dims: [usize; 3], options: &ForecastOptions) -> Result<()> {
        let (patches, block) = self.blocks(options)?;
        self.check_size(dims, 0, patches, block)
    }

    /// The size checks of `check_request` for a session's context, its covariates counted.
    fn check_stream_size(&self, context: &StreamContext, options: &ForecastOptions) -> Result<()> {
        let (patches, block) = self.blocks(options)?;
        let dims = [context.shape[0], context.shape[1], context.len()];
        self.check_size(dims, context.covariate_count(), patches, block)
    }

    pub(crate) fn blocks(&self, options: &ForecastOptions) -> Result<(usize, usize)> {
        let input = |reason: String| Err(Error::input(WHAT, InputKind::OutOfRange, reason));
        let p = self.config.patch_size;
        options.check_common(WHAT)?;
        let k = options.v2.quantile_real_cap_k;
        if !(k.is_finite() && k >= 0.0) {
            return input(format!(
                "v2.quantile_real_cap_k ({k}) must be finite and >= 0"
            ));
        }
        let patches = options.prediction_length.div_ceil(p);
        match options.v2.decode_block_size {
            None | Some(0) => Ok((patches, patches)),
            Some(n) if n.is_multiple_of(p) => Ok((patches, (n / p).min(patches))),
            Some(n) => input(format!(
                "v2.decode_block_size ({n}) must be a multiple of the patch size ({p})"
            )),
        }
    }

    /// Refuses a forecast whose largest tensors could not be allocated, before allocating
    /// anything: the series over context and horizon, the quantiles, one layer's feed-forward
    /// activations and attention scores, and a time layer's KV cache. The factors are sizes
    /// below 2^64 (sums of two at most), so their products saturate instead of overflowing.
    fn check_size(
        &self,
        [b, v, t]: [usize; 3],
        extra: usize,
        patches: usize,
        block: usize,
    ) -> Result<()> {
        let c = &self.config;
        let n = |x: usize| x as u128;
        let p = n(c.patch_size);
        let (b, v, vt) = (n(b), n(v), n(v) + n(extra));
        let ip = n(t).div_ceil(p);
        let (patches, block) = (n(patches), n(block));
        let s = ip + block;
        let needs: [(&'static str, Vec<u128>); 5] = [
            (
                "Toto2::forecast: the series over context and horizon [B, V + K, T + horizon]",
                vec![b, vt, ip + patches, p],
            ),
            (
                "Toto2::forecast: the quantiles [9, B, V, horizon]",
                vec![9, b, v, patches, p],
            ),
            (
                "Toto2::forecast: one layer's feed-forward activations [B·(V + K), S, 2·d_ff]",
                vec![b, vt, s, 2 * n(c.d_ff)],
            ),
            (
                "Toto2::forecast: one layer's attention scores [B·(V + K), H, S, S]",
                vec![b, vt, n(c.num_heads), s, s],
            ),
            (
                "Toto2::forecast: a time layer's KV cache [B·(V + K), G, S, d_k]",
                vec![b, vt, n(c.num_groups), ip + 2 * patches, n(c.qk_dim)],
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
                    fix: "forecast fewer series or a shorter horizon at once, or decode in blocks",
                });
            }
        }
        Ok(())
    }

    /// Left-pads the context to whole patches, forces its last patch observed, appends the
    /// zero-filled horizon and the covariates, and computes the group ids.
    fn prepare(
        &self,
        target: Tensor<3>,
        mask: Tensor<3, Bool>,
        ids: Tensor<2, Int>,
        covariates: Option<&Covariates>,
        patches: usize,
        block: usize,
    ) -> Result<Prepared> {
        let p = self.config.patch_size;
        let [b, v, t] = target.dims();
        let device = target.device();
        let (target, mask) = observed(target, mask);
        let pad = t.div_ceil(p) * p - t;
        let context = t + pad;
        let pred = patches * p;
        let zeros = |n: usize| Tensor::<3>::zeros([b, v, n], &device);
        let falses = |n: usize| Tensor::<3, Int>::zeros([b, v, n], &device).bool();
        let trues = |n: usize| Tensor::<3, Int>::ones([b, v, n], &device).bool();
        let full_target = Tensor::cat(vec![zeros(pad), target, zeros(pred)], 2);
        let context_mask = Tensor::cat(vec![falses(pad), mask], 2);
        // As toto-2: the last context patch counts as observed.
        // (A context of one patch has nothing before it: burn refuses a narrow of length 0.)
        let mut parts = Vec::with_capacity(3);
        if context > p {
            parts.push(context_mask.narrow(2, 0, context - p));
        }
        parts.extend([trues(p), falses(pred)]);
        let full_mask = Tensor::cat(parts, 2);
        let (full_target, full_mask, ids) = match covariates {
            None => (full_target, full_mask, ids),
            Some(c) => {
                let (x, m, i) = self.covariates(c, b, pad, context + pred)?;
                (
                    Tensor::cat(vec![full_target, x], 1),
                    Tensor::cat(vec![full_mask, m], 1),
                    Tensor::cat(vec![ids, i], 1),
                )
            }
        };
        let ip = context / p;
        let width = (ip + patches).max(2 * block);
        let gids = group_ids(ids, full_mask.clone(), p, Some(ip));
        let have = gids.dims()[2];
        let gids = if width > have {
            let last = gids.clone().narrow(2, have - 1, 1);
            Tensor::cat(vec![gids, last.repeat_dim(2, width - have)], 2)
        } else {
            gids.narrow(2, 0, width)
        };
        Ok(Prepared {
            target: full_target,
            mask: full_mask,
            gids,
            variates: v,
            context,
        })
    }

    /// The covariates checked and laid out over `len` steps (left-padded by `pad` like the
    /// target, right-padded with unobserved steps).
    fn covariates(
        &self,
        c: &Covariates,
        b: usize,
        pad: usize,
        len: usize,
    ) -> Result<(Tensor<3>, Tensor<3, Bool>, Tensor<2, Int>)> {
        let [cb, k, tc] = c.values.dims();
        let dev = self.device();
        Error::ensure_devices(
            WHAT,
            dev,
            [
                ("covariates.values", c.values.device()),
                ("covariates.mask", c.mask.device()),
                ("covariates.series_ids", c.series_ids.device()),
            ],
        )?;
        let fits = tc + pad <= len;
        if cb != b || c.mask.dims() != [cb, k, tc] || c.series_ids.dims() != [cb, k] || !fits {
            return Err(Error::input(
                WHAT,
                InputKind::Shape,
                format!(
                    "covariates {:?} (mask {:?}, series_ids {:?}) must have the target's batch \
                     ({b}) and at most the context and horizon's {} steps",
                    [cb, k, tc],
                    c.mask.dims(),
                    c.series_ids.dims(),
                    len - pad
                ),
            ));
        }
        let (x, m) = observed(c.values.clone(), c.mask.clone());
        let right = len - pad - tc;
        let zeros = |n: usize| Tensor::<3>::zeros([b, k, n], dev);
        let falses = |n: usize| Tensor::<3, Int>::zeros([b, k, n], dev).bool();
        Ok((
            Tensor::cat(vec![zeros(pad), x, zeros(right)], 2),
            Tensor::cat(vec![falses(pad), m, falses(right)], 2),
            c.series_ids.clone(),
        ))
    }

    /// The decoding loop (`[9, B, V, horizon]` real-space quantiles, sorted).
    fn decode_blocks(
        &self,
        input: Prepared,
        patches: usize,
        block_size: usize,
        options: &ForecastOptions,
    ) -> Result<Tensor<4>> {
        let [b, vt, _] = input.target.dims();
        let variates = input.variates;
        // Room for the context, the horizon and a block: every block attends over one shape.
        let capacity = input.context.div_ceil(self.config.patch_size) + patches + block_size;
        let mut decoder = Blocks {
            model: self,
            options,
            input,
            block_size,
            cache: (block_size < patches).then(|| Cache::with_capacity(capacity)),
            cap: None,
        };
        let mut blocks = Vec::new();
        let mut passes = Passes::new(options.progress.as_ref(), patches.div_ceil(block_size));
        let mut done = 0;
        while done < patches {
            let block = block_size.min(patches - done);
            let real = decoder.block(done, block)?; // [9, B, Vt, block, P]
            passes.tick();
            done += block;
            if done < patches {
                decoder.feed_back(&real, done - block, block);
            }
            blocks.push(real);
        }
        let p = self.config.patch_size;
        let out = Tensor::cat(blocks, 3); // [9, B, Vt, patches, P]
        Ok(out
            .reshape([LEVELS.len(), b, vt, patches * p])
            .narrow(2, 0, variates)
            .narrow(3, 0, options.prediction_length))
    }
}

impl<B: LayerOps> Toto2<B> {
    /// The forecast of a checked request ([`Forecaster::predict`]): its series' values, mask and
    /// series ids, and its covariates' as [`Covariates`]; timestamps are unused (Toto 2.0
    /// ignores time).
    fn predict_request(&self, request: &ForecastRequest) -> Result<Forecast<B>> {
        let device = self.backend().device();
        let (values, mask, ids) = request.series.to_tensors(device);
        let covariates = match &request.covariates {
            None => None,
            Some(c) => Some(known_covariates(c, request.series.shape()[0], device)?),
        };
        self.forecast(
            values,
            Some(mask),
            Some(ids),
            covariates.as_ref(),
            &request.options,
        )
    }
}

/// [`Covariates`] of a request's covariate [`Series`]: `[B, K, T_c]`, every covariate as long as
/// the longest (a shorter one would be left-padded, misaligning it with the target).
fn known_covariates(c: &Series, items: usize, device: &burn::tensor::Device) -> Result<Covariates> {
    crate::forecast::check_covariates(c, items)?;
    let (values, mask, series_ids) = c.to_tensors(device);
    Ok(Covariates {
        values,
        mask,
        series_ids,
    })
}

impl<B: LayerOps> Sealed for Toto2<B> {}

impl<B: LayerOps> Forecaster for Toto2<B> {
    type Backend = B;

    fn from_dir(backend: &B, dir: impl AsRef<std::path::Path>) -> Result<Self> {
        Toto2::from_dir(backend, dir)
    }

    fn backend(&self) -> &B {
        Toto2::backend(self)
    }

    fn generation(&self) -> Generation {
        Generation::V2
    }

    fn patch_size(&self) -> usize {
        self.config().patch_size
    }

    fn parameter_count(&self) -> u64 {
        self.config().parameter_count()
    }

    fn check_request(&self, dims: [usize; 3], options: &ForecastOptions) -> Result<()> {
        Toto2::check_request(self, dims, options)
    }

    fn draws_per_item(&self, _: [usize; 3], _: &ForecastOptions) -> Option<usize> {
        None
    }

    fn predict_drawing(&self, request: &ForecastRequest, _: Option<&B>) -> Result<Forecast<B>> {
        self.predict_request(request)
    }

    type StreamState = Toto2Stream;

    fn stream_open(
        &self,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<Toto2Stream> {
        self.check_stream_size(context, options)?;
        self.stream_prefill(context, options)
    }

    fn stream_extend(
        &self,
        state: &mut Toto2Stream,
        context: &StreamContext,
        new_patches: usize,
        options: &ForecastOptions,
    ) -> Result<bool> {
        // The next forecast's pass runs the new patches with the horizon's.
        let _ = (state, context, new_patches, options);
        Ok(false)
    }

    fn stream_forecast(
        &self,
        state: &mut Toto2Stream,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<(Forecast<B>, bool)> {
        self.check_stream_size(context, options)?;
        self.stream_predict(state, context, options)
    }
}

/// The state of one forecast's decoding: the series so far (median feedback included), the
/// KV cache, and the cap from the first block.
struct Blocks<'a, B: LayerOps> {
    model: &'a Toto2<B>,
    options: &'a ForecastOptions,
    input: Prepared,
    block_size: usize,
    cache: Option<Cache>,
    cap: Option<(Tensor<5>, Tensor<5>)>,
}

impl<B: LayerOps> Blocks<'_, B> {
    /// The sorted real-space quantiles of the `block` patches after the first `done` predicted
    /// ones, `[9, B, Vt, block, P]`.
    fn block(&mut self, done: usize, block: usize) -> Result<Tensor<5>> {
        let p = self.model.config.patch_size;
        let t = self.input.context;
        let (start, end) = (t + done * p, t + (done + block) * p);
        let mut phases = Phases::new("toto_fallback::toto2", self.model.device());
        // As toto-2: the scaler reruns over the whole series (the medians fed back change it).
        let (loc, scale) = self.statistics()?;
        phases.mark(|| format!("block at {done}: scaler"));
        let x = scaled(
            self.input.target.clone(),
            &loc,
            &scale,
            self.input.mask.clone(),
        );
        let (combined, gids, time_ids) = self.inputs(x, done, block)?;
        phases.mark(|| format!("block at {done}: inputs"));
        if let Some(c) = self.cache.as_mut() {
            c.ephemeral = block;
        }
        let pass = Pass {
            time_ids: &time_ids,
            gids,
            has_missing_values: self.options.v2.has_missing_values,
            time_mask: None,
            xpos_centre: None,
        };
        let s = combined.dims()[2];
        let out = self.model.decode(combined, &pass, self.cache.as_mut())?; // [B, Vt, S, D]
        phases.mark(|| format!("block at {done}: decoder"));
        // Position i predicts patch i + 1: the outputs at the anchor and all but the last
        // new patch.
        let q = self.model.head(out.narrow(2, s - block - 1, block))?; // [9, B, Vt, block, P]
        phases.mark(|| format!("block at {done}: head"));
        let [_, b, vt, _, _] = q.dims();
        let at = |x: Tensor<3>| {
            x.narrow(2, start, end - start)
                .reshape([1, b, vt, block, p])
        };
        let sorted = self
            .model
            .real_space(q, at(loc), at(scale), self.cap.as_ref())?;
        phases.mark(|| format!("block at {done}: real space and sort"));
        Ok(sorted)
    }

    /// The scaler's statistics of the series so far (backfilled when asked), and the cap from
    /// the first block's.
    fn statistics(&mut self) -> Result<(Tensor<3>, Tensor<3>)> {
        let input = &self.input;
        let (loc, scale) = self.model.scale(input.target.clone(), input.mask.clone())?;
        let p = self.model.config.patch_size;
        let min_obs = self.options.v2.scaler_fallback_min_obs;
        let (loc, scale) = backfill(&input.target, &input.mask, loc, scale, p, min_obs);
        let k = self.options.v2.quantile_real_cap_k;
        if k > 0.0 && self.cap.is_none() {
            self.cap = Some(real_cap(input, &scale, k));
        }
        Ok((loc, scale))
    }

    /// The embedded patches, group ids and positions of a block: the context and the first
    /// block's patches (one embedding call), or the previous block's medians and this block's.
    fn inputs(
        &self,
        x: Tensor<3>,
        done: usize,
        block: usize,
    ) -> Result<(Tensor<4>, Tensor<3, Int>, Vec<usize>)> {
        let p = self.model.config.patch_size;
        let t = self.input.context;
        let ip = t / p;
        let (start, len) = (t + done * p, block * p);
        let w = self.input.mask.clone().float();
        if done == 0 {
            let combined = self
                .model
                .embed(x.narrow(2, 0, start + len), w.narrow(2, 0, start + len))?;
            let gids = self.input.gids.clone().narrow(2, 0, ip + block);
            return Ok((combined, gids, (0..ip + block).collect()));
        }
        let pred = self
            .model
            .embed(x.clone().narrow(2, start, len), w.narrow(2, start, len))?;
        // The previous block's medians, embedded with an all-true mask as toto-2 does: fed back,
        // they count as observations.
        let bs = self.block_size;
        let [b, vt, _] = x.dims();
        let ones = Tensor::<3>::ones([b, vt, bs * p], &x.device());
        let medians = self
            .model
            .embed(x.narrow(2, t + (done - bs) * p, bs * p), ones)?;
        // As toto-2: the group ids of the leading patches, not of these ones.
        let gids = self.input.gids.clone().narrow(2, 0, bs + block);
        let first = ip + done - bs;
        let combined = Tensor::cat(vec![medians, pred], 2);
        Ok((combined, gids, (first..first + bs + block).collect()))
    }

    /// The median of the block of `block` patches after `done` predicted ones, as observed
    /// target values (not covariates) for the next blocks.
    fn feed_back(&mut self, real: &Tensor<5>, done: usize, block: usize) {
        let p = self.model.config.patch_size;
        let start = self.input.context + done * p;
        feed_back(&mut self.input, real, start, start + block * p);
    }
}

/// The median of a block as observed target values (not covariates) for the next blocks.
fn feed_back(input: &mut Prepared, real: &Tensor<5>, start: usize, end: usize) {
    let [_, b, _, block, p] = real.dims();
    let v = input.variates;
    let median = real
        .clone()
        .narrow(0, MEDIAN, 1)
        .narrow(2, 0, v)
        .reshape([b, v, block * p]);
    let ranges = [0..b, 0..v, start..end];
    input.target = input.target.clone().slice_assign(ranges.clone(), median);
    let ones = Tensor::<3, Int>::ones([b, v, end - start], &real.device()).bool();
    input.mask = input.mask.clone().slice_assign(ranges, ones);
}

/// toto-2's `backfill_short_patches`: where fewer than `min_obs` observations have been seen by
/// a patch's end, the statistics of the first `min_obs` observations (in f32).
pub(crate) fn backfill(
    target: &Tensor<3>,
    mask: &Tensor<3, Bool>,
    loc: Tensor<3>,
    scale: Tensor<3>,
    p: usize,
    min_obs: usize,
) -> (Tensor<3>, Tensor<3>) {
    if min_obs == 0 {
        return (loc, scale);
    }
    let [b, v, t] = target.dims();
    let obs = mask.clone().float();
    let first = obs
        .clone()
        .cumsum(2)
        .lower_equal_elem(min_obs as f64)
        .float()
        .mul(obs.clone()); // the first min_obs observations
    let n = first.clone().sum_dim(2).clamp_min(1.0); // [B, V, 1]
    let donor_loc = target.clone().mul(first.clone()).sum_dim(2).div(n.clone());
    let dev = target.clone().sub(donor_loc.clone()).mul(first);
    let donor_var = dev
        .square()
        .sum_dim(2)
        .div(n.sub_scalar(1.0).clamp_min(1.0));
    let donor_scale = donor_var.sqrt().clamp_min(1e-6);
    let s = t / p;
    let below = obs
        .reshape([b, v, s, p])
        .sum_dim(3)
        .reshape([b, v, s])
        .cumsum(2)
        .lower_elem(min_obs as f64)
        .reshape([b, v, s, 1])
        .expand([b, v, s, p])
        .reshape([b, v, t]);
    (
        loc.mask_where(below.clone(), donor_loc.expand([b, v, t])),
        scale.mask_where(below, donor_scale.expand([b, v, t])),
    )
}

/// The real-space cap: the observed context range widened by `k` times the scale at the last
/// context step, `[1, B, Vt, 1, 1]` each (0 ± k·s for a variate without observations).
fn real_cap(input: &Prepared, scale: &Tensor<3>, k: f64) -> (Tensor<5>, Tensor<5>) {
    let [b, vt, _] = input.target.dims();
    let t = input.context;
    let x = input.target.clone().narrow(2, 0, t);
    let unseen = input.mask.clone().narrow(2, 0, t).bool_not();
    let hi = x
        .clone()
        .mask_fill(unseen.clone(), f32::NEG_INFINITY)
        .max_dim(2);
    let lo = x.mask_fill(unseen, f32::INFINITY).min_dim(2);
    let hi = hi.clone().mask_fill(hi.is_inf(), 0.0);
    let lo = lo.clone().mask_fill(lo.is_inf(), 0.0);
    let s = scale.clone().narrow(2, t - 1, 1).mul_scalar(k);
    let shape = [1, b, vt, 1, 1];
    (lo.sub(s.clone()).reshape(shape), hi.add(s).reshape(shape))
}

/// toto-2's `_clamp_nonfinite` over each patch row (the last dimension): `+inf` becomes the
/// row's largest finite value, `−inf` its smallest (and, as there, the opposite infinity when
/// the row has none).
fn clamp_nonfinite(x: Tensor<5>) -> Tensor<5> {
    let finite = x.clone().is_finite();
    let dims = x.dims();
    let hi = x
        .clone()
        .mask_fill(finite.clone().bool_not(), f32::NEG_INFINITY)
        .max_dim(4)
        .expand(dims);
    let lo = x
        .clone()
        .mask_fill(finite.bool_not(), f32::INFINITY)
        .min_dim(4)
        .expand(dims);
    let pos = x.clone().equal_elem(f32::INFINITY);
    let neg = x.clone().equal_elem(f32::NEG_INFINITY);
    x.mask_where(pos, hi).mask_where(neg, lo)
}
