//! [`Stream`]: a streaming session over a batch of live series, for either generation. New
//! observations are pushed as they arrive; each completed patch runs through the model once,
//! continuing the session's KV cache and scaler statistics, so that the next forecast costs the
//! horizon's patches instead of a whole context.

use std::ops::Range;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::{
    AnomalyScores, Forecast, ForecastOptions, ForecastRequest, Forecaster, Generation, Series,
};
use crate::error::{Error, InputKind, Result};

/// How a [`Stream`] bounds its context: once it holds more than `window` steps it drops its
/// oldest patches down to `window − slide` steps and recomputes its state from them (one full
/// prefill every `slide` steps pushed), so that its forecasts are those of a fresh forecast
/// over [`Stream::context`], at any time.
///
/// ```
/// use toto_fallback::forecast::StreamOptions;
///
/// let options = StreamOptions::default().with_window(2048, 256)?;
/// assert_eq!((options.window(), options.slide()), (2048, 256));
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    window: usize,
    slide: usize,
}

impl Default for StreamOptions {
    /// A window of 4096 steps (toto-ts's and toto-2's longest evaluated context) that slides by
    /// 512.
    fn default() -> Self {
        StreamOptions {
            window: 4096,
            slide: 512,
        }
    }
}

impl StreamOptions {
    /// Holds at most `window` steps, dropping `slide` of them (and any more needed to keep
    /// whole patches) when the window is full.
    ///
    /// # Errors
    /// [`Error::Input`] (`OutOfRange`) unless `1 ≤ slide < window`.
    pub fn with_window(mut self, window: usize, slide: usize) -> Result<Self> {
        if slide == 0 || slide >= window {
            return Err(Error::input(
                "StreamOptions::with_window",
                InputKind::OutOfRange,
                format!(
                    "slide ({slide}) must be at least 1 and below window ({window}): the session \
                     drops `slide` steps when it holds `window`"
                ),
            ));
        }
        (self.window, self.slide) = (window, slide);
        Ok(self)
    }

    /// The most steps a session holds.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The steps dropped when the window is full.
    pub fn slide(&self) -> usize {
        self.slide
    }

    /// The window and the length after a slide in whole patches of `p` (at least one patch
    /// each).
    fn patches(&self, p: usize) -> (usize, usize) {
        let window = (self.window / p).max(2);
        let after = ((self.window - self.slide) / p).clamp(1, window - 1);
        (window, after)
    }
}

/// What a [`Stream`] has done so far: for measuring what it saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Successful calls of [`Stream::push`] (and of [`Stream::push_at`] and [`Stream::score`]).
    pub pushes: u64,
    /// Patches completed (each runs through the model once: Toto 1.0 when pushed, Toto 2.0 in
    /// the pass of the next forecast, with the horizon's patches).
    pub patches: u64,
    /// Full prefills after the open: where a pushed patch changed what the cached patches had
    /// been computed with (Toto 1.0's clamp, Toto 2.0's short-context backfill, covariate steps
    /// pushed into patches already run), and at slides.
    pub recomputes: u64,
    /// Times the window slid.
    pub slides: u64,
}

/// The committed context of a session on the host: whole patches of every series, 0 where
/// unobserved, on the patch grid fixed when the session opened, and its known covariates. What
/// the models' streaming passes read.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct StreamContext {
    /// `[B, V]`.
    pub(crate) shape: [usize; 2],
    /// The patch size.
    pub(crate) patch: usize,
    /// Per series (item-major), the committed steps: 0 where unobserved.
    pub(crate) values: Vec<Vec<f32>>,
    /// Per series, true where observed (finite and not masked).
    pub(crate) mask: Vec<Vec<bool>>,
    /// Per series, its id.
    pub(crate) series_ids: Vec<i32>,
    /// The most patches the session holds (its window): a model's KV cache is allocated for
    /// these, so that every update attends over one shape.
    pub(crate) window: usize,
    /// The known covariates, from the context's first step.
    pub(crate) covariates: Option<StreamCovariates>,
}

/// A session's known covariates on the host: `K` per item, from the context's first step on,
/// as far as they have been pushed (ahead of the targets, or behind them).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct StreamCovariates {
    /// `K`.
    pub(crate) count: usize,
    /// Per covariate (item-major, `B·K`), its steps: 0 where unobserved.
    pub(crate) values: Vec<Vec<f32>>,
    /// Per covariate, true where observed.
    pub(crate) mask: Vec<Vec<bool>>,
    /// Per covariate, its series id.
    pub(crate) series_ids: Vec<i32>,
    /// Steps dropped from the context's start (a slide, or the open's window) that the
    /// covariates had not reached: the first this many steps pushed next belong before the
    /// context and are discarded, so that later steps stay aligned with the series.
    pub(crate) owed: usize,
}

impl StreamCovariates {
    /// Steps held (every covariate has as many).
    pub(crate) fn len(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    /// Observed steps of each covariate within its first `steps`.
    pub(crate) fn observed(&self, steps: usize) -> impl Iterator<Item = usize> + '_ {
        self.mask
            .iter()
            .map(move |m| m[..steps.min(m.len())].iter().filter(|&&m| m).count())
    }
}

/// One row of the model's input (a target series or a covariate) over some steps.
pub(crate) struct InputRow {
    /// 0 where unobserved.
    pub(crate) values: Vec<f32>,
    pub(crate) mask: Vec<bool>,
    pub(crate) id: i32,
    /// A target series (forecast), not a covariate (read).
    pub(crate) target: bool,
}

impl StreamContext {
    /// Steps held (whole patches).
    pub(crate) fn len(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    /// Patches held.
    pub(crate) fn patches(&self) -> usize {
        self.len() / self.patch
    }

    /// Known covariates per item (0 without).
    pub(crate) fn covariate_count(&self) -> usize {
        self.covariates.as_ref().map_or(0, |c| c.count)
    }

    /// The model's input rows per item: the variates, then the covariates.
    pub(crate) fn input_variates(&self) -> usize {
        self.shape[1] + self.covariate_count()
    }

    /// Steps `range` of every series: values `[B, V, n]` and mask on `device`.
    pub(crate) fn tensors(
        &self,
        range: Range<usize>,
        device: &Device,
    ) -> (Tensor<3>, Tensor<3, Bool>) {
        let [b, v] = self.shape;
        let n = range.len();
        let values: Vec<f32> = self
            .values
            .iter()
            .flat_map(|row| row[range.clone()].iter().copied())
            .collect();
        let mask: Vec<bool> = self
            .mask
            .iter()
            .flat_map(|row| row[range.clone()].iter().copied())
            .collect();
        (
            Tensor::from_data(TensorData::new(values, [b, v, n]), device),
            Tensor::from_data(TensorData::new(mask, [b, v, n]), device),
        )
    }

    /// The series ids, `[B, V]`.
    pub(crate) fn ids(&self, device: &Device) -> Tensor<2, Int> {
        let [b, v] = self.shape;
        Tensor::from_data(TensorData::new(self.series_ids.clone(), [b, v]), device)
    }

    /// Input row `r` (item-major over [`StreamContext::input_variates`] rows per item: the
    /// item's series, then its covariates) over steps `range`: steps past what is held are
    /// unobserved (a target's horizon; a covariate not pushed that far).
    pub(crate) fn input_row(&self, r: usize, range: Range<usize>) -> InputRow {
        let (v, vk) = (self.shape[1], self.input_variates());
        let (item, j) = (r / vk, r % vk);
        let (values, mask, id, target) = match (&self.covariates, j < v) {
            (Some(c), false) => {
                let at = item * c.count + j - v;
                (&c.values[at], &c.mask[at], c.series_ids[at], false)
            }
            _ => {
                let at = item * v + j;
                (&self.values[at], &self.mask[at], self.series_ids[at], true)
            }
        };
        let held = range.start.min(values.len())..range.end.min(values.len());
        let missing = range.len() - held.len();
        let mut x = values[held.clone()].to_vec();
        let mut m = mask[held].to_vec();
        x.extend(std::iter::repeat_n(0.0, missing));
        m.extend(std::iter::repeat_n(false, missing));
        InputRow {
            values: x,
            mask: m,
            id,
            target,
        }
    }

    /// Every input row over steps `range` ([`StreamContext::input_row`]), the targets' steps
    /// `observed` counted as observed (a context's last patch, as toto-2 treats it): values
    /// `[B, V + K, n]`, mask and series ids `[B, V + K]` on `device`.
    pub(crate) fn inputs(
        &self,
        range: Range<usize>,
        observed: Range<usize>,
        device: &Device,
    ) -> (Tensor<3>, Tensor<3, Bool>, Tensor<2, Int>) {
        let (b, vk, n) = (self.shape[0], self.input_variates(), range.len());
        let mut values = Vec::with_capacity(b * vk * n);
        let mut mask = Vec::with_capacity(b * vk * n);
        let mut ids = Vec::with_capacity(b * vk);
        for r in 0..b * vk {
            let row = self.input_row(r, range.clone());
            values.extend(row.values);
            mask.extend(
                row.mask
                    .iter()
                    .enumerate()
                    .map(|(i, &m)| m || (row.target && observed.contains(&(range.start + i)))),
            );
            ids.push(row.id);
        }
        (
            Tensor::from_data(TensorData::new(values, [b, vk, n]), device),
            Tensor::from_data(TensorData::new(mask, [b, vk, n]), device),
            Tensor::from_data(TensorData::new(ids, [b, vk]), device),
        )
    }
}

/// Host rows (`per_item` per item, 0 where unobserved) as a [`Series`]: NaN where unobserved,
/// with `ids`.
fn rows_series(
    values: &[Vec<f32>],
    mask: &[Vec<bool>],
    per_item: usize,
    ids: &[i32],
) -> Result<Series> {
    let batch: Vec<Vec<Vec<f32>>> = values
        .chunks(per_item.max(1))
        .zip(mask.chunks(per_item.max(1)))
        .map(|(x, m)| {
            x.iter()
                .zip(m)
                .map(|(x, m)| {
                    x.iter()
                        .zip(m)
                        .map(|(&x, &m)| if m { x } else { f32::NAN })
                        .collect()
                })
                .collect()
        })
        .collect();
    Series::from_batch(&batch)?.with_series_ids(ids)
}

/// Appends pushed steps to a host row: non-finite values unobserved (0, false).
fn append(x: &mut Vec<f32>, m: &mut Vec<bool>, steps: &[f32]) {
    for &y in steps {
        let seen = y.is_finite();
        x.push(if seen { y } else { 0.0 });
        m.push(seen);
    }
}

/// A streaming session over a batch of live series, for either generation ([`Forecaster::stream`]).
///
/// Opened on a [`ForecastRequest`] (its series are the context, its options say what
/// [`Stream::forecast`] returns), it takes new observations of any length with
/// [`Stream::push`]: steps are kept until they complete a patch of the model's patch grid (fixed
/// at the open, as a fresh forecast over [`Stream::context`] left-pads it), then every
/// completed patch runs through the model once, continuing the session's KV cache and scaler
/// statistics. NaN or infinite values are gaps (unobserved steps), as in a [`Series`].
///
/// A forecast asked between patch boundaries is the one made at the last boundary, its first
/// steps (those already pushed) cut: steps are scored and forecast from what the model saw
/// at the boundary. [`Stream::score`] scores new observations against it, then pushes them.
///
/// Exactness: at every moment the forecast equals a fresh [`Forecaster::predict`] of the
/// committed context (within f32 rounding; tested within 1e-5 of the scale), where
/// - Toto 1.0 clamps each patch's scale to `10^±10` of the whole context's: when a new patch
///   moves those bounds past a cached patch's scale, the session recomputes its prefill;
/// - Toto 2.0 treats the last context patch as observed: the session re-runs that patch with
///   the next one, and recomputes while any series has fewer observations than
///   `v2.scaler_fallback_min_obs` (the backfilled scales change with each one); its cap uses
///   the running observed range;
/// - xPos: keys are kept at one centre and moved to the centre a fresh prefill would use.
///
/// Known covariates (Toto 2.0): the request's covariates open the session with the context,
/// [`Stream::push_covariates`] adds their later steps (a known future ahead of the series), and
/// each forecast reads them over the context and the horizon.
///
/// Not streamed (each forecast recomputes, exactly): Toto 2.0's block decoding
/// (`v2.decode_block_size` shorter than the horizon), and a forecast while a covariate has
/// fewer than `v2.scaler_fallback_min_obs` observations in the context (toto-2's backfill would
/// read its horizon).
/// [`MultiDevice`](crate::multi::MultiDevice) does not stream; open one session per device.
///
/// ```
/// use toto_fallback::forecast::{ForecastRequest, Forecaster, Series};
/// use toto_fallback::{NdArray, Toto2};
///
/// let model = Toto2::from_dir(&NdArray::new(), "tests/fixtures/toto2-tiny")?;
/// let history: Vec<f32> = (0..64).map(|t| (t as f32 / 5.0).sin()).collect();
/// let mut stream = model.stream(&ForecastRequest::new(Series::from_values(&history)?, 16))?;
/// for t in 64..80 {
///     let y = (t as f32 / 5.0).sin();
///     let scores = stream.score(&[y], 1)?; // against the forecast made before y, then pushed
///     let pit: Vec<f32> = scores.pit.into_data().to_vec()?;
///     assert!((0.0..=1.0).contains(&pit[0]));
/// }
/// let forecast = stream.forecast()?; // the next 16 steps
/// assert_eq!(forecast.mean().dims(), [1, 1, 16]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Stream<'m, M: Forecaster> {
    model: &'m M,
    options: ForecastOptions,
    settings: StreamOptions,
    context: StreamContext,
    /// Per series, the steps pushed since the last whole patch (NaN where unobserved).
    pending: Vec<Vec<f32>>,
    /// The time of the next step and the interval, when the request's series had both.
    clock: Option<(i64, i64)>,
    /// The model's state; `None` once closed.
    state: Option<M::StreamState>,
    stats: StreamStats,
}

impl<M: Forecaster> std::fmt::Debug for Stream<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("generation", &self.model.generation())
            .field("shape", &self.context.shape)
            .field("steps", &self.len())
            .field("pending", &self.pending())
            .field("closed", &self.state.is_none())
            .field("stats", &self.stats)
            .finish()
    }
}

/// [`Error::Input`] (`Closed`) of `what` on a closed session.
fn closed(what: &'static str) -> Error {
    Error::input(
        what,
        InputKind::Closed,
        "the session was closed: open another with Forecaster::stream",
    )
}

/// The entry points' names, for errors.
const OPEN: &str = "Forecaster::stream";
const PUSH: &str = "Stream::push";

impl<'m, M: Forecaster> Stream<'m, M> {
    /// Opens a session on `request` ([`Forecaster::stream_with`]).
    pub(crate) fn open(
        model: &'m M,
        request: &ForecastRequest,
        settings: StreamOptions,
    ) -> Result<Self> {
        let series = &request.series;
        model.check_request(series.shape(), &request.options)?;
        let [b, v, t] = series.shape();
        let p = model.patch_size();
        let (window, _) = settings.patches(p);
        // Left-pad to whole patches (as a fresh forecast does), then keep at most the window.
        let padded = t.div_ceil(p) * p;
        let keep = padded.min(window * p);
        let pad = padded - t;
        let mut values = Vec::with_capacity(b * v);
        let mut mask = Vec::with_capacity(b * v);
        for r in 0..b * v {
            let row = &series.values()[r * t..(r + 1) * t];
            let seen = &series.mask()[r * t..(r + 1) * t];
            let mut x = vec![0.0; pad];
            let mut m = vec![false; pad];
            x.extend_from_slice(row);
            m.extend_from_slice(seen);
            values.push(x[padded - keep..].to_vec());
            mask.push(m[padded - keep..].to_vec());
        }
        // Covariates start at the target's first step: the same padding and the same steps
        // dropped; they may run past the context (into the horizon and beyond).
        let covariates = match &request.covariates {
            None => None,
            // Toto 1.0 has no input for them: its refusal before any check of theirs.
            Some(c) if model.generation() == Generation::V1 => {
                return Err(super::toto1_refuses_covariates(OPEN, c.shape()[1]));
            }
            Some(c) => {
                super::check_covariates(c, b)?;
                let [_, k, tc] = c.shape();
                if tc > t + window * p {
                    return Err(Error::input(
                        OPEN,
                        InputKind::OutOfRange,
                        format!(
                            "the covariates have {tc} steps, more than the series' {t} and the \
                             window's {} ahead: give at most {} (push the rest later)",
                            window * p,
                            t + window * p
                        ),
                    ));
                }
                let drop = padded - keep;
                let owed = drop.saturating_sub(pad + tc);
                let (mut values, mut mask) = (Vec::new(), Vec::new());
                for r in 0..b * k {
                    let (row, seen) = (&c.values()[r * tc..][..tc], &c.mask()[r * tc..][..tc]);
                    let x = std::iter::repeat_n(0.0, pad).chain(row.iter().copied());
                    let m = std::iter::repeat_n(false, pad).chain(seen.iter().copied());
                    values.push(x.skip(drop).collect());
                    mask.push(m.skip(drop).collect());
                }
                Some(StreamCovariates {
                    count: k,
                    values,
                    mask,
                    series_ids: c.series_ids().to_vec(),
                    owed,
                })
            }
        };
        let context = StreamContext {
            shape: [b, v],
            patch: p,
            values,
            mask,
            series_ids: series.series_ids().to_vec(),
            window,
            covariates,
        };
        let clock = match (series.timestamps(), series.interval()) {
            (Some(ts), Some(dt)) => {
                let next: Vec<i64> = ts
                    .iter()
                    .zip(series.lengths())
                    .map(|(&t0, &len)| t0.saturating_add((len as i64).saturating_mul(dt)))
                    .collect();
                next.windows(2).all(|w| w[0] == w[1]).then(|| (next[0], dt))
            }
            _ => None,
        };
        let state = model.stream_open(&context, &request.options)?;
        Ok(Stream {
            model,
            options: request.options.clone(),
            settings,
            context,
            pending: vec![Vec::new(); b * v],
            clock,
            state: Some(state),
            stats: StreamStats::default(),
        })
    }

    /// `[B, V]`: the batch's items and variates.
    pub fn shape(&self) -> [usize; 2] {
        self.context.shape
    }

    /// Steps held: the committed patches (padding included) and the pending steps.
    pub fn len(&self) -> usize {
        self.context.len() + self.pending()
    }

    /// Whether the session holds no steps (never: it opens on a context).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Steps pushed since the last completed patch (fewer than the patch size).
    pub fn pending(&self) -> usize {
        self.pending.first().map_or(0, Vec::len)
    }

    /// What the session has done so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// The options its forecasts use.
    pub fn options(&self) -> &ForecastOptions {
        &self.options
    }

    /// The time of the next step, when the request's series had timestamps and an interval
    /// and all of them end at the same time ([`Stream::push_at`]).
    pub fn next_time(&self) -> Option<i64> {
        self.clock.map(|(next, _)| next)
    }

    /// The context its forecasts are those of: the committed steps, the grid's left padding
    /// and gaps as NaN, with the series ids (`[B, V, T]`, `T` whole patches). A fresh
    /// [`Forecaster::predict`] of it, `prediction_length + pending()` steps ahead (with
    /// [`Stream::covariates`] cut to that horizon, for a session with covariates), is what
    /// [`Stream::forecast`] returns after its first `pending()` steps.
    ///
    /// # Errors
    /// As [`Series::from_batch`].
    pub fn context(&self) -> Result<Series> {
        let c = &self.context;
        rows_series(&c.values, &c.mask, c.shape[1], &c.series_ids)
    }

    /// The known covariates, aligned with [`Stream::context`] (`[B, K, T_c]` from its first
    /// step, as far as they were pushed, NaN where unobserved, with their series ids); `None`
    /// for a session without. With them, [`Stream::forecast`] is the fresh forecast of the
    /// context with these covariates cut to the context and the horizon (whole patches).
    ///
    /// # Errors
    /// As [`Series::from_batch`]: for covariates with no step in the context yet (they lagged
    /// the series past a slide) or no observed step.
    pub fn covariates(&self) -> Result<Option<Series>> {
        let Some(c) = &self.context.covariates else {
            return Ok(None);
        };
        rows_series(&c.values, &c.mask, c.count, &c.series_ids).map(Some)
    }

    /// Pushes `steps` further steps of every known covariate: `values` is `[B, K, steps]`
    /// row-major (covariate `r`'s steps at `r·steps..`), NaN or ±inf unknown. Covariates run on
    /// their own clock from the context's first step and are read by the next forecast, over
    /// the context and the horizon: push them ahead of the series (a known future) or with
    /// them, before the series' steps. Steps of patches the session already ran (covariates
    /// pushed after the series' steps they go with) make it recompute its state, counted in
    /// [`StreamStats::recomputes`].
    ///
    /// On an error nothing of the session changes.
    ///
    /// # Errors
    /// [`Error::Input`]: (`Closed`) for a closed session, (`Unusable`) for a session opened
    /// without covariates, (`Empty`) for no steps, (`Shape`) for values that are not
    /// `B·K·steps`, (`OutOfRange`) for covariates that would run more than the window past the
    /// series' last step; the model's errors (a recompute).
    pub fn push_covariates(&mut self, values: &[f32], steps: usize) -> Result<()> {
        const WHAT: &str = "Stream::push_covariates";
        self.open_state(WHAT)?;
        // As at the open: at most the window (in whole patches) past the series' last step.
        let ahead = self.settings.patches(self.context.patch).0 * self.context.patch;
        let limit = self.len() + ahead;
        let committed = self.context.len();
        let b = self.context.shape[0];
        let Some(c) = self.context.covariates.as_mut() else {
            return Err(Error::input(
                WHAT,
                InputKind::Unusable,
                "the session has no known covariates: open it on a request with \
                 ForecastRequest::with_covariates",
            ));
        };
        if steps == 0 {
            return Err(Error::input(WHAT, InputKind::Empty, "no steps to push"));
        }
        let k = c.count;
        if Some(values.len()) != (b * k).checked_mul(steps) {
            return Err(Error::input(
                WHAT,
                InputKind::Shape,
                format!(
                    "{} values for {steps} steps of [{b}, {k}] covariates: give B·K·steps = {} \
                     values, covariate-major (covariate r's steps at r·steps..)",
                    values.len(),
                    (b * k).saturating_mul(steps)
                ),
            ));
        }
        let (held, owed) = (c.len(), c.owed);
        // Steps before the context's start (dropped while the covariates lagged) are skipped.
        let skip = owed.min(steps);
        if held.saturating_add(steps - skip) > limit {
            return Err(Error::input(
                WHAT,
                InputKind::OutOfRange,
                format!(
                    "the covariates would hold {} steps, more than the series' {} and the \
                     window's {ahead} past them",
                    held.saturating_add(steps - skip),
                    limit - ahead,
                ),
            ));
        }
        c.owed -= skip;
        for ((x, m), new) in c
            .values
            .iter_mut()
            .zip(&mut c.mask)
            .zip(values.chunks(steps))
        {
            append(x, m, &new[skip..]);
        }
        if held >= committed || skip == steps {
            return Ok(());
        }
        // Steps of patches already run: their keys were computed without these values.
        match self.reopen() {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(c) = self.context.covariates.as_mut() {
                    for (x, m) in c.values.iter_mut().zip(&mut c.mask) {
                        x.truncate(held);
                        m.truncate(held);
                    }
                    c.owed = owed;
                }
                Err(e)
            }
        }
    }

    /// Closes the session, freeing its device memory; later calls are refused.
    pub fn close(&mut self) {
        self.state = None;
    }

    /// Whether [`Stream::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.is_none()
    }

    /// `Err` for a closed session.
    fn open_state(&self, what: &'static str) -> Result<&M::StreamState> {
        self.state.as_ref().ok_or_else(|| closed(what))
    }

    /// `Ok` unless `values` is not `steps` new steps of every series.
    fn check_steps(&self, what: &'static str, values: &[f32], steps: usize) -> Result<()> {
        let [b, v] = self.context.shape;
        if steps == 0 {
            return Err(Error::input(what, InputKind::Empty, "no steps to push"));
        }
        if Some(values.len()) != (b * v).checked_mul(steps) {
            return Err(Error::input(
                what,
                InputKind::Shape,
                format!(
                    "{} values for {steps} steps of a session of [{b}, {v}] series: give \
                     B·V·steps = {} values, series-major (series r's steps at r·steps..)",
                    values.len(),
                    (b * v).saturating_mul(steps)
                ),
            ));
        }
        Ok(())
    }

    /// Pushes `steps` new steps of every series: `values` is `[B, V, steps]` row-major
    /// (series `r`'s steps at `r·steps..(r + 1)·steps`); NaN or ±inf are gaps. Every patch
    /// the steps complete runs through the model (one pass each); the rest are kept.
    ///
    /// On an error nothing of the session changes.
    ///
    /// # Errors
    /// [`Error::Input`]: (`Closed`) for a closed session, (`Empty`) for no steps, (`Shape`)
    /// for values that are not `B·V·steps`; the model's errors.
    pub fn push(&mut self, values: &[f32], steps: usize) -> Result<()> {
        self.open_state(PUSH)?;
        self.check_steps(PUSH, values, steps)?;
        self.push_checked(values, steps)
    }

    /// [`Stream::push`] of steps that start at `time` (in the units of the request's
    /// timestamps): steps skipped since the last push are gaps (unobserved), pushed with them.
    ///
    /// # Errors
    /// As [`Stream::push`]; [`Error::Input`]: (`Unusable`) when the session has no clock (its
    /// request's series had no timestamps and interval, or did not end at one time),
    /// (`OutOfOrder`) for a `time` before [`Stream::next_time`], (`OutOfRange`) for one off the
    /// interval's grid or a gap longer than the window.
    pub fn push_at(&mut self, time: i64, values: &[f32], steps: usize) -> Result<()> {
        const WHAT: &str = "Stream::push_at";
        self.open_state(WHAT)?;
        self.check_steps(WHAT, values, steps)?;
        let Some((next, dt)) = self.clock else {
            return Err(Error::input(
                WHAT,
                InputKind::Unusable,
                "the session has no clock: open it on series with timestamps and an interval \
                 that end at one time, or push without times",
            ));
        };
        if time < next {
            return Err(Error::input(
                WHAT,
                InputKind::OutOfOrder,
                format!(
                    "time goes backwards: {time} is before the next step's time {next}; push \
                     each step once, in order"
                ),
            ));
        }
        // i128: a time at either end of i64 does not overflow the difference.
        let ahead = i128::from(time) - i128::from(next);
        let gap = ahead / i128::from(dt);
        if ahead % i128::from(dt) != 0 || gap > self.settings.window as i128 {
            return Err(Error::input(
                WHAT,
                InputKind::OutOfRange,
                format!(
                    "{time} is {ahead} after the next step's time {next}: it must be a whole \
                     number of intervals ({dt}) after it, and at most the window ({} steps)",
                    self.settings.window
                ),
            ));
        }
        if gap == 0 {
            return self.push_checked(values, steps);
        }
        let gap = gap as usize;
        let rows = values
            .chunks(steps)
            .flat_map(|row| std::iter::repeat_n(f32::NAN, gap).chain(row.iter().copied()))
            .collect::<Vec<f32>>();
        self.push_checked(&rows, gap + steps)
    }

    /// [`Stream::push`] of checked values.
    fn push_checked(&mut self, values: &[f32], steps: usize) -> Result<()> {
        let p = self.context.patch;
        let held = self.pending();
        let complete = (held + steps) / p;
        if complete == 0 {
            for (row, new) in self.pending.iter_mut().zip(values.chunks(steps)) {
                row.extend_from_slice(new);
            }
            self.advance_clock(steps);
            self.stats.pushes += 1;
            return Ok(());
        }
        // Commit the completed patches; undone if the model fails.
        let take = complete * p - held;
        for (r, new) in values.chunks(steps).enumerate() {
            let (x, m) = (&mut self.context.values[r], &mut self.context.mask[r]);
            append(x, m, &self.pending[r]);
            append(x, m, &new[..take]);
        }
        let (window, after) = self.settings.patches(p);
        let result = if self.context.patches() > window {
            self.slide(window, after)
        } else {
            self.extend(complete)
        };
        if let Err(e) = result {
            let keep = self.context.len() - complete * p;
            for (x, m) in self.context.values.iter_mut().zip(&mut self.context.mask) {
                x.truncate(keep);
                m.truncate(keep);
            }
            return Err(e);
        }
        for (row, new) in self.pending.iter_mut().zip(values.chunks(steps)) {
            row.clear();
            row.extend_from_slice(&new[take..]);
        }
        self.advance_clock(steps);
        self.stats.pushes += 1;
        self.stats.patches += complete as u64;
        Ok(())
    }

    /// The model's state continued over the last `complete` committed patches, in place (the
    /// model puts it back after an error: [`Forecaster::stream_extend`]).
    fn extend(&mut self, complete: usize) -> Result<()> {
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        let recomputed = self
            .model
            .stream_extend(state, &self.context, complete, &self.options)?;
        self.stats.recomputes += u64::from(recomputed);
        Ok(())
    }

    /// Drops the oldest patches down to `after` patches and recomputes the state from the
    /// rest; on an error, the dropped steps are put back.
    fn slide(&mut self, window: usize, after: usize) -> Result<()> {
        let drop = (self.context.patches() - after.min(window)) * self.context.patch;
        let dropped: Vec<(Vec<f32>, Vec<bool>)> = self
            .context
            .values
            .iter_mut()
            .zip(&mut self.context.mask)
            .map(|(x, m)| (x.drain(..drop).collect(), m.drain(..drop).collect()))
            .collect();
        // The covariates keep starting at the context's first step.
        let owed = self.context.covariates.as_ref().map_or(0, |c| c.owed);
        let dropped_covariates: Vec<(Vec<f32>, Vec<bool>)> = match &mut self.context.covariates {
            None => Vec::new(),
            Some(c) => {
                c.owed += drop.saturating_sub(c.len());
                c.values
                    .iter_mut()
                    .zip(&mut c.mask)
                    .map(|(x, m)| {
                        let n = drop.min(x.len());
                        (x.drain(..n).collect(), m.drain(..n).collect())
                    })
                    .collect()
            }
        };
        match self.reopen() {
            Ok(()) => {
                self.stats.slides += 1;
                Ok(())
            }
            Err(e) => {
                for ((x, m), (dx, dm)) in self
                    .context
                    .values
                    .iter_mut()
                    .zip(&mut self.context.mask)
                    .zip(dropped)
                {
                    x.splice(0..0, dx);
                    m.splice(0..0, dm);
                }
                if let Some(c) = &mut self.context.covariates {
                    for ((x, m), (dx, dm)) in
                        c.values.iter_mut().zip(&mut c.mask).zip(dropped_covariates)
                    {
                        x.splice(0..0, dx);
                        m.splice(0..0, dm);
                    }
                    c.owed = owed;
                }
                Err(e)
            }
        }
    }

    /// The model's state recomputed from the context (a full prefill), counted in
    /// [`StreamStats::recomputes`]; on an error the state is as it was.
    fn reopen(&mut self) -> Result<()> {
        self.state = Some(self.model.stream_open(&self.context, &self.options)?);
        self.stats.recomputes += 1;
        Ok(())
    }

    fn advance_clock(&mut self, steps: usize) {
        if let Some((next, dt)) = &mut self.clock {
            *next = next.saturating_add((steps as i64).saturating_mul(*dt));
        }
    }

    /// The forecast of the `prediction_length` steps after the last pushed one: the forecast
    /// made at the last patch boundary, its first [`Stream::pending`] steps cut.
    ///
    /// # Errors
    /// [`Error::Input`] (`Closed`) for a closed session; the model's errors.
    pub fn forecast(&mut self) -> Result<Forecast<M::Backend>> {
        self.open_state("Stream::forecast")?;
        let skip = self.pending();
        let mut options = self.options.clone();
        options.prediction_length += skip;
        self.forecast_with(&options)?.skip_steps(skip)
    }

    /// The model's forecast with `options` from the last patch boundary. The state is
    /// continued in place (no copy of its KV buffers): on an error the model leaves it
    /// describing the committed context ([`Forecaster::stream_forecast`]).
    fn forecast_with(&mut self, options: &ForecastOptions) -> Result<Forecast<M::Backend>> {
        let Some(state) = self.state.as_mut() else {
            return Err(closed("Stream::forecast"));
        };
        let (forecast, recomputed) = self.model.stream_forecast(state, &self.context, options)?;
        self.stats.recomputes += u64::from(recomputed);
        Ok(forecast)
    }

    /// Scores `steps` new observations (`values` as in [`Stream::push`]) against the
    /// forecast made before any of them ([`Forecast::anomaly_scores`]: PIT, tail probability,
    /// log density), then pushes them. Observations in the pending patch are scored several
    /// steps ahead, from the last patch boundary. Gaps score NaN.
    ///
    /// # Errors
    /// As [`Stream::push`]; [`Error::Input`] (`NoDistribution`) for Toto 1.0's mean mode
    /// (`num_samples` unset), which has no distribution to score against. Nothing is pushed
    /// after an error.
    pub fn score(&mut self, values: &[f32], steps: usize) -> Result<AnomalyScores> {
        const WHAT: &str = "Stream::score";
        self.open_state(WHAT)?;
        self.check_steps(WHAT, values, steps)?;
        let skip = self.pending();
        let mut options = self.options.clone();
        options.prediction_length = skip + steps;
        let forecast = self.forecast_with(&options)?;
        let [b, v] = self.context.shape;
        let observed: Vec<f32> = values
            .chunks(steps)
            .flat_map(|row| std::iter::repeat_n(f32::NAN, skip).chain(row.iter().copied()))
            .collect();
        let device = forecast.mean().device();
        let observed = Tensor::from_data(TensorData::new(observed, [b, v, skip + steps]), &device);
        let scores = forecast.anomaly_scores(observed)?;
        let cut = |x: Tensor<3>| x.narrow(2, skip, steps);
        let scores = AnomalyScores {
            pit: cut(scores.pit),
            tail: cut(scores.tail),
            log_density: scores.log_density.map(cut),
        };
        self.push_checked(values, steps)?;
        Ok(scores)
    }
}
