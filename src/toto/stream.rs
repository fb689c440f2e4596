//! Toto 1.0's streaming passes: a prefill of the session's context, one pass per completed
//! patch continuing the KV cache and the scaler's statistics, and forecasts that decode from
//! them.
//!
//! The scaler clamps each patch's scale to `10^±e` of the whole context's statistics, which move
//! with every new patch. A patch's cached keys are exact while its clamp gives the same scale
//! under the bounds it was computed with and the current ones; the host keeps each patch's
//! unclamped scale and recomputes the prefill when one would change.

use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::cache::KvCache;
use super::model::Toto;
use super::output::TotoOutput;
use crate::backend::{LayerOps, RowState, ScalerSpec, ScalerState};
use crate::error::Result;
use crate::forecast::{Forecast, ForecastOptions, StreamContext};
use crate::nn::phases::Phases;
use crate::nn::rope::{RopeSpec, key_recentring};

/// A Toto 1.0 session's state.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct TotoStream<B: LayerOps> {
    /// The context's keys and values (written at xPos centre 0) and, as its scaler state, the
    /// statistics after the context with the current clamp bounds.
    cache: KvCache,
    /// The last context patch's output: the distribution of the patch after it.
    last: TotoOutput<B>,
    /// Per series, the scaler's running statistics after the context, without a clamp.
    rows: Vec<RowState>,
    /// Per series and patch, the unclamped scale and the scale the cached pass used.
    scales: Vec<Vec<(f32, f32)>>,
}

/// `sigma` clamped as the scaler clamps it (a bound that does not compare leaves it alone).
fn clamp(sigma: f32, (lo, hi): (f64, f64)) -> f32 {
    let mut s = f64::from(sigma);
    let lo = lo.min(hi);
    if s < lo {
        s = lo;
    }
    if s > hi {
        s = hi;
    }
    s as f32
}

impl<B: LayerOps> Toto<B> {
    /// The scaler without its clamp: the statistics the host keeps.
    fn unclamped_spec(&self) -> ScalerSpec {
        let c = self.config();
        ScalerSpec::toto(c.patch_size, None, false, c.scale_factor_exponent)
    }

    /// Each series' unclamped statistics continued over `range` of the context from `rows`,
    /// and the unclamped scale of each patch there.
    fn host_scales(
        &self,
        context: &StreamContext,
        rows: &mut [RowState],
        range: std::ops::Range<usize>,
    ) -> Vec<Vec<f32>> {
        let spec = self.unclamped_spec();
        let p = context.patch;
        rows.iter_mut()
            .zip(context.values.iter().zip(&context.mask))
            .map(|(state, (x, m))| {
                let x = &x[range.clone()];
                let w: Vec<f32> = m[range.clone()]
                    .iter()
                    .map(|&m| f32::from(u8::from(m)))
                    .collect();
                let (mut loc, mut scale) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                state.extend(x, &w, &mut loc, &mut scale, spec);
                scale.chunks(p).map(|s| s[p - 1]).collect()
            })
            .collect()
    }

    /// Each series' clamp bounds from its whole context.
    fn bounds(&self, context: &StreamContext) -> Vec<(f64, f64)> {
        let spec = self.scaler_spec(None);
        context
            .values
            .iter()
            .zip(&context.mask)
            .map(|(x, m)| {
                let w: Vec<f32> = m.iter().map(|&m| f32::from(u8::from(m))).collect();
                RowState::bounds(x, &w, spec)
            })
            .collect()
    }

    /// The ids of steps `range`, `[B, V, n]`.
    fn stream_ids(&self, context: &StreamContext, n: usize) -> Tensor<3, Int> {
        let [b, v] = context.shape;
        context
            .ids(self.backend().device())
            .reshape([b, v, 1])
            .expand([b, v, n])
    }

    /// The prefill of the whole context, in a cache with room for `capacity` patches.
    pub(crate) fn stream_prefill(
        &self,
        context: &StreamContext,
        capacity: usize,
    ) -> Result<TotoStream<B>> {
        let t = context.len();
        let device = self.backend().device();
        let (series, mask) = context.tensors(0..t, device);
        let ids = self.stream_ids(context, t);
        let mut cache = KvCache {
            xpos_centre: Some(0),
            ..KvCache::with_capacity(capacity)
        };
        let out = self.forward(series, mask, ids, Some(&mut cache), Some(t))?;
        let last = out.last_steps(context.patch);
        let [b, v] = context.shape;
        let spec = self.unclamped_spec();
        let mut rows = vec![RowState::start(&[], &[], spec); b * v];
        let unclamped = self.host_scales(context, &mut rows, 0..t);
        let scales = unclamped
            .into_iter()
            .zip(self.bounds(context))
            .map(|(s, bounds)| s.into_iter().map(|s| (s, clamp(s, bounds))).collect())
            .collect();
        Ok(TotoStream {
            cache,
            last,
            rows,
            scales,
        })
    }

    /// `state` continued over the last `new` patches of `context`; `true` when the clamp
    /// bounds moved past a cached patch's scale and the prefill was recomputed.
    pub(crate) fn stream_push(
        &self,
        state: &mut TotoStream<B>,
        context: &StreamContext,
        new: usize,
    ) -> Result<bool> {
        let mut phases = Phases::new("toto_fallback::toto", self.backend().device());
        let p = context.patch;
        let t = context.len();
        let start = t - new * p;
        let bounds = self.bounds(context);
        let before = state.rows.clone();
        let mut after = before.clone();
        let unclamped = self.host_scales(context, &mut after, start..t);
        let moved = state
            .scales
            .iter()
            .zip(&bounds)
            .any(|(patches, &b)| patches.iter().any(|&(s, used)| clamp(s, b) != used));
        if moved {
            *state = self.stream_prefill(context, state.cache.reserve)?;
            return Ok(true);
        }
        let [b, v] = context.shape;
        let rows = before
            .into_iter()
            .zip(&bounds)
            .map(|(r, &b)| r.with_bounds(b))
            .collect();
        // The passes write into the session's buffers in place (a copy of the cache would copy
        // them whole at its first write); what they change is put back after an error.
        let saved = state.cache.checkpoint();
        let last = state.last.clone();
        state.cache.scaler = Some(ScalerState::from_rows([b, v], rows));
        let device = self.backend().device();
        phases.mark(|| "session push: host statistics".to_owned());
        for k in 0..new {
            let at = start + k * p;
            let (series, mask) = context.tensors(at..at + p, device);
            let ids = self.stream_ids(context, p);
            match self.extend_patch(series, mask, ids, &mut state.cache) {
                Ok(out) => state.last = out,
                Err(e) => {
                    state.cache.restore(saved);
                    state.last = last;
                    return Err(e);
                }
            }
            phases.mark(|| format!("session push: patch {k}'s pass"));
        }
        state.rows = after;
        for ((patches, new), &b) in state.scales.iter_mut().zip(unclamped).zip(&bounds) {
            patches.extend(new.into_iter().map(|s| (s, clamp(s, b))));
        }
        Ok(false)
    }

    /// The forecast after `context` from `state`: the cache's keys moved to the xPos centre of
    /// a fresh prefill, then decoded as a fresh forecast decodes.
    pub(crate) fn stream_predict(
        &self,
        state: &TotoStream<B>,
        context: &StreamContext,
        options: &ForecastOptions,
    ) -> Result<Forecast<B>> {
        let c = self.config();
        let device = self.backend().device();
        let spec = RopeSpec::toto(c.embed_dim / c.num_heads);
        // A forecast of one patch is `state.last`'s: no pass reads the cache.
        let passes = options.prediction_length > c.patch_size;
        let recentring = key_recentring(spec, context.patches() - 1).filter(|_| passes);
        let cache = match recentring {
            Some(factor) => {
                let n = factor.len();
                let factor = Tensor::<1>::from_data(TensorData::new(factor, [n]), device);
                state.cache.recentred(&factor)
            }
            None => KvCache {
                xpos_centre: None,
                ..state.cache.clone()
            },
        };
        let t = context.len();
        let p = context.patch;
        let (series, mask): (Tensor<3>, Tensor<3, Bool>) = context.tensors(t - p..t, device);
        let ids = self.stream_ids(context, p);
        let first = state.last.distribution()?;
        self.forecast_continuing((series, mask, ids), cache, first, options)
    }
}
