//! Toto 2.0's streaming passes: a prefill of the session's context, then one pass per forecast
//! over the patches completed since the last one and the horizon's patches, continuing the
//! cached context (a fresh forecast is one pass over the context and the horizon; the session's
//! pass is that pass's last rows).
//!
//! What a fresh forecast does that the passes reproduce:
//! - the last context patch counts as observed (its unobserved steps, zeros, enter the scaler):
//!   the session's last patch is tentative, its keys dropped and recomputed with the next push
//!   when it had unobserved steps (a fully observed one ran as its real mask reads, and stays);
//! - the scaler's backfill gives the patches before `v2.scaler_fallback_min_obs` observations
//!   the statistics of the first observations: while a series has fewer, the session recomputes;
//! - the cap reads the context's observed range: the host keeps it;
//! - with `has_missing_values`, patches attend only to patches of their group (empty patches to
//!   empty ones): the session builds that mask over the cached patches;
//! - with xPos, one pass's keys and queries share a centre: the session writes every key at
//!   centre 0, which leaves each score as a fresh pass computes it;
//! - known covariates are extra variates after each item's series, with their real masks (the
//!   last context patch included) and their known horizon: a pass scales and embeds the
//!   horizon's steps with the context's, and a forecast while a covariate has fewer than
//!   `v2.scaler_fallback_min_obs` observations in the context is a fresh one (the backfill
//!   would read the covariate's horizon).

use burn::tensor::{Tensor, TensorData};

use super::decoder::{Cache, Pass};
use super::forecast::{Covariates, backfill};
use super::model::{EMPTY_PATCH, LEVELS, Toto2, group_ids, scaled};
use crate::backend::{LayerOps, Mask, RowState, ScalerSpec, ScalerState};
use crate::error::Result;
use crate::forecast::{Forecast, ForecastOptions, StreamContext, StreamCovariates};
use crate::nn::phases::Phases;

/// A Toto 2.0 session's state.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Toto2Stream {
    /// The keys and values of the first `run` context patches, the last (tentative) included.
    cache: Cache,
    /// Context patches the cache covers; the patches after them run with the next forecast.
    run: usize,
    /// The decoder's output at patch `run − 1`, `[B, V + K, 1, D]` (the series, then the
    /// known covariates): what predicts the patch after.
    anchor: Tensor<4>,
    /// The scaler's `(loc, scale)` at the end of patch `run − 1`, `[B, V + K, 1]`.
    last: (Tensor<3>, Tensor<3>),
    /// Per input row (series and covariates, item-major), the scaler's statistics before
    /// patch `run − 1` (its real mask).
    rows: Vec<RowState>,
    /// Per input row and patch up to `run`, its group id (a series' patch `run − 1` as if
    /// observed).
    gids: Vec<Vec<i64>>,
    /// Per input row, the observed range and count before patch `run − 1`.
    seen: Vec<(f32, f32, usize)>,
}

impl<B: LayerOps> Toto2<B> {
    /// The group id of a patch with mask `m` of series id `id`.
    fn gid(id: i32, m: &[bool]) -> i64 {
        if m.iter().any(|&m| m) {
            i64::from(id)
        } else {
            EMPTY_PATCH
        }
    }

    /// The scaler's statistics, observed range and count of `context`'s steps `range`,
    /// continuing `rows`/`seen` (every input row, the real masks).
    fn stream_host(
        &self,
        context: &StreamContext,
        rows: &mut [RowState],
        seen: &mut [(f32, f32, usize)],
        range: std::ops::Range<usize>,
    ) {
        let spec = ScalerSpec::toto2(context.patch);
        for (r, (state, seen)) in rows.iter_mut().zip(seen).enumerate() {
            let row = context.input_row(r, range.clone());
            let w: Vec<f32> = row.mask.iter().map(|&m| f32::from(u8::from(m))).collect();
            let (mut loc, mut scale) = (vec![0.0; w.len()], vec![0.0; w.len()]);
            state.extend(&row.values, &w, &mut loc, &mut scale, spec);
            for (&x, _) in row.values.iter().zip(&row.mask).filter(|(_, m)| **m) {
                *seen = (seen.0.min(x), seen.1.max(x), seen.2 + 1);
            }
        }
    }

    /// Whether every target series observed every step of context patch `i` (its pass then
    /// reads the same mask whether or not the patch is the context's last).
    fn fully_observed(context: &StreamContext, i: usize) -> bool {
        let p = context.patch;
        (0..context.shape[0] * context.input_variates()).all(|r| {
            let row = context.input_row(r, i * p..(i + 1) * p);
            !row.target || row.mask.iter().all(|&m| m)
        })
    }

    /// The group ids of input row `r`'s context patches `patches`: a target's last context
    /// patch as observed.
    fn context_gids(
        context: &StreamContext,
        r: usize,
        patches: std::ops::Range<usize>,
    ) -> Vec<i64> {
        let (p, last) = (context.patch, context.patches() - 1);
        let row = context.input_row(r, patches.start * p..patches.end * p);
        row.mask
            .chunks(p)
            .zip(patches)
            .map(|(m, i)| match row.target && i == last {
                true => i64::from(row.id),
                false => Self::gid(row.id, m),
            })
            .collect()
    }

    /// The time layers' mask of queries at patches `queries` over a cache of `width` entries
    /// whose first `queries.end` are written by then: causal (never the unwritten entries),
    /// and within the group when `has_missing_values` (as a fresh prefill's).
    fn stream_mask(
        &self,
        gids: &[Vec<i64>],
        queries: std::ops::Range<usize>,
        width: usize,
        has_missing_values: bool,
    ) -> Mask {
        let device = self.device();
        let (s, kv) = (queries.len(), queries.end);
        if !has_missing_values {
            return Mask::Cache { len: kv };
        }
        // Query `i` sees keys `0..=i` of its group: later keys (the unwritten ones among them)
        // and other groups' are blocked. Built on the host and uploaded once per pass.
        let rows = gids.len();
        let blocked: Vec<bool> = gids
            .iter()
            .flat_map(|g| {
                queries
                    .clone()
                    .flat_map(move |i| (0..width).map(move |j| j > i || g[j] != g[i]))
            })
            .collect();
        Mask::Blocked(Tensor::from_data(
            TensorData::new(blocked, [rows, 1, s, width]),
            device,
        ))
    }

    /// The prefill of the whole context (as a fresh forecast's pass computes the context).
    pub(crate) fn stream_prefill(
        &self,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<Toto2Stream> {
        let (p, t) = (context.patch, context.len());
        let ip = t / p;
        let device = self.device();
        let (x, mask, ids) = context.inputs(0..t, t - p..t, device);
        let (loc, scale) = self.scale(x.clone(), mask.clone())?;
        let min_obs = options.v2.scaler_fallback_min_obs;
        let (loc, scale) = backfill(&x, &mask, loc, scale, p, min_obs);
        let embedded = self.embed(scaled(x, &loc, &scale, mask.clone()), mask.clone().float())?;
        let time_ids: Vec<usize> = (0..ip).collect();
        let pass = Pass {
            time_ids: &time_ids,
            gids: group_ids(ids, mask, p, None),
            has_missing_values: options.v2.has_missing_values,
            time_mask: None,
            xpos_centre: Some(0),
        };
        // Room for the window and a forecast's horizon patches: every pass of the session
        // attends over one shape.
        let (horizon, _) = self.blocks(options)?;
        let mut cache = Cache::with_capacity(context.window.max(ip) + horizon);
        let out = self.decode(embedded, &pass, Some(&mut cache))?;
        let rows = context.shape[0] * context.input_variates();
        let spec = ScalerSpec::toto2(p);
        let mut states = vec![RowState::start(&[], &[], spec); rows];
        let mut seen = vec![(f32::INFINITY, f32::NEG_INFINITY, 0); rows];
        self.stream_host(context, &mut states, &mut seen, 0..t - p);
        let gids = (0..rows)
            .map(|r| Self::context_gids(context, r, 0..ip))
            .collect();
        Ok(Toto2Stream {
            cache,
            run: ip,
            anchor: out.narrow(2, ip - 1, 1),
            last: (loc.narrow(2, t - 1, 1), scale.narrow(2, t - 1, 1)),
            rows: states,
            gids,
            seen,
        })
    }

    /// One pass continuing `state`'s cache over the context patches it lacks (from its
    /// tentative patch on when that had gaps) and `pred` zero-filled horizon patches, as the
    /// rows of a fresh one-pass forecast; the context patches' keys are kept, the horizon's
    /// dropped. Returns the outputs at the horizon's patches, `[B, V, pred, D]` (`None`
    /// without any).
    fn stream_pass(
        &self,
        state: &mut Toto2Stream,
        context: &StreamContext,
        pred: usize,
        options: &ForecastOptions,
    ) -> Result<Option<Tensor<4>>> {
        let (p, t) = (context.patch, context.len());
        let n = state.run;
        let new = context.patches() - n; // patches after the tentative one
        if new == 0 && pred == 0 {
            return Ok(None);
        }
        let device = self.device();
        let mut phases = Phases::new("toto_fallback::toto2", device);
        let [b, vk] = [context.shape[0], context.input_variates()];
        let has_missing = options.v2.has_missing_values;
        // The pass's rows: the tentative patch again when it had unobserved steps (its real
        // mask now; they entered its last pass as observed zeros) and the new patches when
        // there are new ones, then the horizon. A tentative patch every step of which was
        // observed ran as its real mask reads, and its cached keys stand.
        let redo = new > 0 && !Self::fully_observed(context, n - 1);
        let first = if redo { n - 1 } else { n };
        // The scaler continues from the tentative patch over the new patches, and with known
        // covariates over the horizon too (their steps are known there; the targets' are not,
        // and embed as zeros): statistics for this pass only, the committed ones are
        // recomputed on the host below.
        let covariates = context.covariate_count() > 0;
        let end = if covariates { t + pred * p } else { t };
        let mut parts = Vec::new();
        let mut context_rows = None;
        if new > 0 || covariates {
            let from = (n - 1) * p;
            let (x, mask, _) = context.inputs(from..end, t - p..t, device);
            let mut scaler = ScalerState::from_rows([b, vk], state.rows.clone());
            let (loc, scale) = self.backend.patch_scaler_extend(
                &mut scaler,
                x.clone(),
                mask.clone().float(),
                ScalerSpec::toto2(p),
            )?;
            if new > 0 {
                let at = |x: &Tensor<3>| x.clone().narrow(2, t - 1 - from, 1);
                context_rows = Some((at(&loc), at(&scale)));
            }
            let (skip, len) = ((first + 1 - n) * p, end - first * p);
            parts.push(self.embed(
                scaled(x, &loc, &scale, mask.clone()).narrow(2, skip, len),
                mask.float().narrow(2, skip, len),
            )?);
        }
        if !covariates && pred > 0 {
            let zeros = Tensor::<3>::zeros([b, vk, pred * p], device);
            parts.push(self.embed(zeros.clone(), zeros)?);
        }
        let embedded = match parts.len() {
            1 => parts.remove(0),
            _ => Tensor::cat(parts, 2),
        };
        let mut gids = state.gids.clone();
        if new > 0 {
            for (r, g) in gids.iter_mut().enumerate() {
                g.truncate(n - 1);
                g.extend(Self::context_gids(context, r, n - 1..context.patches()));
            }
        }
        let queries = first..context.patches() + pred;
        let mut all = gids.clone();
        for (r, g) in all.iter_mut().enumerate() {
            let id = context.input_row(r, 0..0).id;
            g.extend(std::iter::repeat_n(i64::from(id), pred));
        }
        let pass_gids: Vec<i64> = all.iter().flat_map(|g| g[first..].to_vec()).collect();
        let time_ids: Vec<usize> = queries.clone().collect();
        let s = queries.len();
        // The pass writes into the session's buffers in place (a copy of the cache would copy
        // them whole at its first write). From its first patch on, every entry it writes
        // is written again by the next pass before any reads it, so a pass that fails leaves
        // the state as it was once the length is restored.
        let cache = &mut state.cache;
        let held = cache.len();
        if redo {
            cache.rewind(1);
        }
        let width = cache.width(s);
        let pass = Pass {
            time_ids: &time_ids,
            gids: Tensor::from_data(TensorData::new(pass_gids, [b, vk, s]), device),
            has_missing_values: has_missing,
            time_mask: Some(self.stream_mask(&all, queries, width, has_missing)),
            xpos_centre: Some(0),
        };
        phases.mark(|| format!("session pass over {s} patches: inputs, scaler, mask"));
        let out = match self.decode(embedded, &pass, Some(&mut *cache)) {
            Ok(out) => out, // [B, V, s, D]
            Err(e) => {
                cache.set_len(held);
                return Err(e);
            }
        };
        phases.mark(|| format!("session pass over {s} patches: decoder"));
        cache.rewind(pred);
        if let Some(last) = context_rows {
            self.stream_host(
                context,
                &mut state.rows,
                &mut state.seen,
                (n - 1) * p..t - p,
            );
            state.run = context.patches();
            state.anchor = out.clone().narrow(2, context.patches() - 1 - first, 1);
            state.last = last;
            state.gids = gids;
        }
        Ok((pred > 0).then(|| out.narrow(2, s - pred, pred)))
    }

    /// The forecast after `context` from `state`, whose pass also runs the context patches
    /// completed since the last one (`true` when a series' backfill could change and the
    /// prefill was recomputed instead). Block decoding recomputes from the context.
    pub(crate) fn stream_predict(
        &self,
        state: &mut Toto2Stream,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<(Forecast<B>, bool)> {
        let (patches, block) = self.blocks(options)?;
        let device = self.device();
        let (p, t) = (context.patch, context.len());
        let min_obs = options.v2.scaler_fallback_min_obs;
        // A covariate short of `min_obs` observations in the context: toto-2's backfill reads
        // its first observations, in the horizon too.
        let short = |c: &StreamCovariates| c.observed(t).any(|n| n < min_obs);
        if block < patches || (min_obs > 0 && context.covariates.as_ref().is_some_and(short)) {
            return Ok((self.stream_fresh(context, patches, options)?, false));
        }
        let stale = state.run < context.patches();
        let recompute = stale && state.seen.iter().any(|&(_, _, n)| n < min_obs);
        if recompute {
            *state = self.stream_prefill(context, options)?;
        }
        let pred = self.stream_pass(state, context, patches - 1, options)?;
        let outputs = match pred {
            Some(out) => Tensor::cat(vec![state.anchor.clone(), out], 2),
            None => state.anchor.clone(),
        };
        let [b, v] = context.shape;
        // The targets' rows (the covariates are read, not forecast).
        let outputs = match context.input_variates() > v {
            true => outputs.narrow(1, 0, v),
            false => outputs,
        };
        let mut phases = Phases::new("toto_fallback::toto2", device);
        let q = self.head(outputs)?; // [9, B, V, patches, P]
        phases.mark(|| "session forecast: head".to_owned());
        let at = |x: &Tensor<3>| x.clone().narrow(1, 0, v).reshape([1, b, v, 1, 1]);
        let (loc, scale) = (at(&state.last.0), at(&state.last.1));
        let k = options.v2.quantile_real_cap_k;
        let cap = (k > 0.0).then(|| {
            // The observed range with the last patch as observed (its gaps are zeros).
            let vk = context.input_variates();
            let (lo, hi): (Vec<f32>, Vec<f32>) = context
                .values
                .iter()
                .enumerate()
                .map(|(q, x)| {
                    let (lo, hi, _) = state.seen[q / v * vk + q % v];
                    x[t - p..]
                        .iter()
                        .fold((lo, hi), |(lo, hi), &x| (lo.min(x), hi.max(x)))
                })
                .unzip();
            let host =
                |x: Vec<f32>| Tensor::<5>::from_data(TensorData::new(x, [1, b, v, 1, 1]), device);
            let s = scale.clone().mul_scalar(k);
            (host(lo).sub(s.clone()), host(hi).add(s))
        });
        let real = self.real_space(q, loc, scale, cap.as_ref())?;
        phases.mark(|| "session forecast: cap, real space and sort".to_owned());
        let quantiles =
            real.reshape([LEVELS.len(), b, v, patches * p])
                .narrow(3, 0, options.prediction_length);
        let forecast = self.knots_forecast(quantiles)?;
        phases.mark(|| "session forecast: distribution".to_owned());
        Ok((forecast, recompute))
    }

    /// A fresh forecast of `context` with its covariates over the context and the horizon's
    /// `patches` (unobserved past what was pushed).
    fn stream_fresh(
        &self,
        context: &StreamContext,
        patches: usize,
        options: &ForecastOptions,
    ) -> Result<Forecast<B>> {
        let (p, t) = (context.patch, context.len());
        let [_, v] = context.shape;
        // Every input row over the context and the horizon, the real masks: the series over
        // the context, the covariates over both.
        let (x, mask, ids) = context.inputs(0..t + patches * p, 0..0, self.device());
        let k = context.covariate_count();
        let covariates = (k > 0).then(|| Covariates {
            values: x.clone().narrow(1, v, k),
            mask: mask.clone().narrow(1, v, k),
            series_ids: ids.clone().narrow(1, v, k),
        });
        let (x, mask) = (
            x.narrow(1, 0, v).narrow(2, 0, t),
            mask.narrow(1, 0, v).narrow(2, 0, t),
        );
        let ids = Some(ids.narrow(1, 0, v));
        self.forecast(x, Some(mask), ids, covariates.as_ref(), options)
    }
}
