//! Toto 2.0's streaming passes: a prefill of the session's context, then one pass per forecast
//! over the patches completed since the last one and the horizon's patches, continuing the
//! cached context (a fresh forecast is one pass over the context and the horizon; the session's
//! pass is that pass's last rows).
//!
//! What a fresh forecast does that the passes reproduce:
//! - the last context patch counts as observed (its unobserved steps, zeros, enter the scaler):
//!   the session's last patch is tentative, its keys dropped and recomputed with the next push;
//! - the scaler's backfill gives the patches before `v2.scaler_fallback_min_obs` observations
//!   the statistics of the first observations: while a series has fewer, the session recomputes;
//! - the cap reads the context's observed range: the host keeps it;
//! - with `has_missing_values`, patches attend only to patches of their group (empty patches to
//!   empty ones): the session builds that mask over the cached patches;
//! - with xPos, one pass's keys and queries share a centre: the session writes every key at
//!   centre 0, which leaves each score as a fresh pass computes it.

use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::decoder::{Cache, Pass};
use super::forecast::backfill;
use super::model::{EMPTY_PATCH, LEVELS, Toto2, group_ids, scaled};
use crate::backend::{LayerOps, Mask, RowState, ScalerSpec, ScalerState};
use crate::error::Result;
use crate::forecast::{Forecast, ForecastOptions, StreamContext};
use crate::nn::phases::Phases;

/// A Toto 2.0 session's state.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Toto2Stream {
    /// The keys and values of the first `run` context patches, the last (tentative) included.
    cache: Cache,
    /// Context patches the cache covers; the patches after them run with the next forecast.
    run: usize,
    /// The decoder's output at patch `run − 1`, `[B, V, 1, D]`: what predicts the patch after.
    anchor: Tensor<4>,
    /// The scaler's `(loc, scale)` at the end of patch `run − 1`, `[B, V, 1]`.
    last: (Tensor<3>, Tensor<3>),
    /// Per series, the scaler's statistics before patch `run − 1` (its real mask).
    rows: Vec<RowState>,
    /// Per series and patch up to `run`, its group id (patch `run − 1`'s as if observed).
    gids: Vec<Vec<i64>>,
    /// Per series, the observed range and count before patch `run − 1`.
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
    /// continuing `rows`/`seen` (the real masks).
    fn stream_host(
        &self,
        context: &StreamContext,
        rows: &mut [RowState],
        seen: &mut [(f32, f32, usize)],
        range: std::ops::Range<usize>,
    ) {
        let spec = ScalerSpec::toto2(context.patch);
        for ((state, seen), (x, m)) in rows
            .iter_mut()
            .zip(seen)
            .zip(context.values.iter().zip(&context.mask))
        {
            let (x, m) = (&x[range.clone()], &m[range.clone()]);
            let w: Vec<f32> = m.iter().map(|&m| f32::from(u8::from(m))).collect();
            let (mut loc, mut scale) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            state.extend(x, &w, &mut loc, &mut scale, spec);
            for (&x, _) in x.iter().zip(m).filter(|(_, m)| **m) {
                *seen = (seen.0.min(x), seen.1.max(x), seen.2 + 1);
            }
        }
    }

    /// The real mask of steps `range` with its last patch observed, `[B, V, n]`.
    fn forced(&self, mask: Tensor<3, Bool>, p: usize) -> Tensor<3, Bool> {
        let [b, v, n] = mask.dims();
        let trues = Tensor::<3, Int>::ones([b, v, p], &mask.device()).bool();
        if n == p {
            return trues;
        }
        Tensor::cat(vec![mask.narrow(2, 0, n - p), trues], 2)
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
        let (x, real) = context.tensors(0..t, device);
        let mask = self.forced(real, p);
        let (loc, scale) = self.scale(x.clone(), mask.clone())?;
        let min_obs = options.v2.scaler_fallback_min_obs;
        let (loc, scale) = backfill(&x, &mask, loc, scale, p, min_obs);
        let embedded = self.embed(scaled(x, &loc, &scale, mask.clone()), mask.clone().float())?;
        let ids = context.ids(device);
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
        let [b, v] = context.shape;
        let spec = ScalerSpec::toto2(p);
        let mut rows = vec![RowState::start(&[], &[], spec); b * v];
        let mut seen = vec![(f32::INFINITY, f32::NEG_INFINITY, 0); b * v];
        self.stream_host(context, &mut rows, &mut seen, 0..t - p);
        let gids = (0..b * v)
            .map(|r| {
                let id = context.series_ids[r];
                let mut g: Vec<i64> = context.mask[r][..t - p]
                    .chunks(p)
                    .map(|m| Self::gid(id, m))
                    .collect();
                g.push(i64::from(id));
                g
            })
            .collect();
        Ok(Toto2Stream {
            cache,
            run: ip,
            anchor: out.narrow(2, ip - 1, 1),
            last: (loc.narrow(2, t - 1, 1), scale.narrow(2, t - 1, 1)),
            rows,
            gids,
            seen,
        })
    }

    /// One pass continuing `state`'s cache over the context patches it lacks (from its
    /// tentative patch on) and `pred` zero-filled horizon patches, as the rows of a fresh
    /// one-pass forecast; the context patches' keys are kept, the horizon's dropped. Returns the
    /// outputs at the horizon's patches, `[B, V, pred, D]` (`None` without any).
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
        let [b, v] = context.shape;
        let has_missing = options.v2.has_missing_values;
        // The context rows: the tentative patch again (its real mask now) and the new ones.
        let mut gids = state.gids.clone();
        let mut parts = Vec::new();
        let mut context_rows = None;
        if new > 0 {
            let from = (n - 1) * p;
            let (x, real) = context.tensors(from..t, device);
            let mask = self.forced(real, p);
            let mut scaler = ScalerState::from_rows([b, v], state.rows.clone());
            let (loc, scale) = self.backend.patch_scaler_extend(
                &mut scaler,
                x.clone(),
                mask.clone().float(),
                ScalerSpec::toto2(p),
            )?;
            parts.push(self.embed(scaled(x, &loc, &scale, mask.clone()), mask.float())?);
            for (r, g) in gids.iter_mut().enumerate() {
                let id = context.series_ids[r];
                g.truncate(n - 1);
                g.extend(
                    context.mask[r][from..t - p]
                        .chunks(p)
                        .map(|m| Self::gid(id, m)),
                );
                g.push(i64::from(id));
            }
            let last = (new + 1) * p - 1;
            context_rows = Some((loc.narrow(2, last, 1), scale.narrow(2, last, 1)));
        }
        let first = if new > 0 { n - 1 } else { n };
        let queries = first..context.patches() + pred;
        if pred > 0 {
            let zeros = Tensor::<3>::zeros([b, v, pred * p], device);
            parts.push(self.embed(zeros.clone(), zeros)?);
        }
        let mut all = gids.clone();
        for (g, &id) in all.iter_mut().zip(&context.series_ids) {
            g.extend(std::iter::repeat_n(i64::from(id), pred));
        }
        let pass_gids: Vec<i64> = all.iter().flat_map(|g| g[first..].to_vec()).collect();
        let time_ids: Vec<usize> = queries.clone().collect();
        let s = queries.len();
        // The pass writes into the session's buffers in place (a copy of the cache would copy
        // them whole at its first write). From the tentative patch on, every entry it writes
        // is written again by the next pass before any reads it, so a pass that fails leaves
        // the state as it was once the length is restored.
        let cache = &mut state.cache;
        let held = cache.len();
        if new > 0 {
            cache.rewind(1);
        }
        let width = cache.width(s);
        let pass = Pass {
            time_ids: &time_ids,
            gids: Tensor::from_data(TensorData::new(pass_gids, [b, v, s]), device),
            has_missing_values: has_missing,
            time_mask: Some(self.stream_mask(&all, queries, width, has_missing)),
            xpos_centre: Some(0),
        };
        let embedded = match parts.len() {
            1 => parts.remove(0),
            _ => Tensor::cat(parts, 2),
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
            state.anchor = out.clone().narrow(2, new, 1);
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
        if block < patches {
            let (x, mask) = context.tensors(0..t, device);
            let f = self.forecast(x, Some(mask), Some(context.ids(device)), None, options)?;
            return Ok((f, false));
        }
        let min_obs = options.v2.scaler_fallback_min_obs;
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
        let mut phases = Phases::new("toto_fallback::toto2", device);
        let q = self.head(outputs)?; // [9, B, V, patches, P]
        phases.mark(|| "session forecast: head".to_owned());
        let at = |x: &Tensor<3>| x.clone().reshape([1, b, v, 1, 1]);
        let (loc, scale) = (at(&state.last.0), at(&state.last.1));
        let k = options.v2.quantile_real_cap_k;
        let cap = (k > 0.0).then(|| {
            // The observed range with the last patch as observed (its gaps are zeros).
            let (lo, hi): (Vec<f32>, Vec<f32>) = state
                .seen
                .iter()
                .zip(&context.values)
                .map(|(&(lo, hi, _), x)| {
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
}
