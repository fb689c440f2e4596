//! [`NdArray`]'s layer ops: the CPU kernels of [`cpu`](super::super::cpu) on host values, for
//! f32 tensors; every other case (another format, [`CpuKernels::Burn`]) runs the compositions.

use burn::tensor::{Bool, DType, Tensor};

use super::super::cpu::CpuKernels;
use super::super::cpu::gemm::{PackedMatrix, WeightFormat};
use super::super::cpu::layers::{self as host, Blocked, CoreMask, QkNorm as HostQkNorm, QkPrep};
use super::super::transfer::upload;
use super::super::{Backend, NdArray, Precision};
use super::{Affine, AttentionSpec, LayerOps, Mask, SiluHalf, composed};
use crate::error::Result;

impl NdArray {
    /// Whether the layer ops of f32 `x` run on the crate's CPU kernels.
    fn native<const D: usize>(&self, x: &Tensor<D>) -> bool {
        self.kernels() != CpuKernels::Burn && x.dtype() == DType::F32
    }

    /// The format the product kernels keep weights in ([`NdArray::with_weights`]).
    fn weight_format(&self) -> WeightFormat {
        match self.weights() {
            Precision::F16 => WeightFormat::F16,
            Precision::Bf16 => WeightFormat::Bf16,
            Precision::F32 => WeightFormat::F32,
        }
    }
}

/// The values of an f32 tensor on the CPU, row-major. burn-ndarray hands a tensor's buffer over
/// without a copy only when the tensor owns it alone and is contiguous; otherwise (a tensor the
/// model keeps for a residual sum, a parameter, a transposed view) its `into_data` copies value
/// by value through a dynamic-rank iterator (~30M values a second). Multiplying by one first
/// gives an owned, contiguous buffer at memory speed (in place when the tensor is unique), which
/// is then handed over. Exact for every value, NaN included. Reading the CPU's own memory cannot
/// fail; were it to, the values come back empty and the kernels' length checks refuse them.
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.mul_scalar(1.0)
        .try_into_vec_as::<f32>()
        .unwrap_or_default()
}

/// `f` of an f32 tensor's values on the CPU, row-major, borrowed: burn-ndarray's own buffer
/// when it is contiguous (a KV cache's buffers, which a session keeps: [`values`] would copy
/// them whole for every read), [`values`]' copy otherwise (a view, a burn-flex tensor).
#[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; the CPU backend is ndarray's.
fn with_values<const D: usize, R>(t: Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    use burn::backend::{NdArray as BurnNdArray, ndarray::NdArrayTensor};
    if let Ok(NdArrayTensor::F32(storage)) = t.clone().try_into_primitive::<BurnNdArray>()
        && let Some(buffer) = storage.view().to_slice()
    {
        return f(buffer);
    }
    f(&values(t))
}

/// A blocked mask's flags on the CPU, row-major. Read as [`values`] reads floats: a mask is
/// shared by every layer of a pass, so its own `into_data` copies flag by flag (~1 ms for a
/// Toto 2.0 session's 42k flags at B 16, per layer); its negation is a fresh buffer handed over
/// whole, negated back here. Empty if the read fails (the kernels' length checks refuse it).
fn blocked_flags(m: &Tensor<4, Bool>) -> Vec<bool> {
    let mut open = m
        .clone()
        .bool_not()
        .into_data()
        .try_to_vec::<bool>()
        .unwrap_or_default();
    open.iter_mut().for_each(|f| *f = !*f);
    open
}

/// [`values`] of a tensor borrowed from a layer (its weights).
fn shared_values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    values(t.clone())
}

/// The host copies of an attention's query/key norm weights and query scale.
struct HostWeights {
    /// The query norm's weight and the key norm's (each when the norm has one).
    norm: Option<[Option<Vec<f32>>; 2]>,
    per_dim: Option<(Vec<f32>, f32)>,
}

impl HostWeights {
    fn of(spec: &AttentionSpec<'_>) -> Self {
        HostWeights {
            norm: spec
                .qk_norm
                .map(|q| [q.query.map(shared_values), q.key.map(shared_values)]),
            per_dim: spec.query_scale.map(|(m, c)| (shared_values(m), c as f32)),
        }
    }

    /// What the host kernels do to queries and keys before the scores.
    fn prep<'a>(&'a self, spec: &'a AttentionSpec<'_>) -> QkPrep<'a> {
        QkPrep {
            norm: spec
                .qk_norm
                .zip(self.norm.as_ref())
                .map(|(q, [wq, wk])| HostQkNorm {
                    query: wq.as_deref(),
                    key: wk.as_deref(),
                    eps: q.eps as f32,
                }),
            query_scale: self.per_dim.as_ref().map(|(m, c)| (m.as_slice(), *c)),
            rope: spec.rotary.map(|r| r.host()),
        }
    }
}

/// The host kernels' head counts of `spec`.
fn host_heads(spec: &AttentionSpec<'_>) -> host::Heads {
    let h = spec.heads;
    host::Heads {
        heads: h.heads,
        groups: h.groups,
        qk: h.qk,
        v: h.v,
    }
}

impl LayerOps for NdArray {
    /// On the packed kernel ([`CpuKernels`]): the weight is packed the first time the layer
    /// runs, in the backend's weight format ([`NdArray::with_weights`]), and kept in its
    /// [`Prepared`](super::Prepared) slot.
    fn linear_unchecked<const D: usize>(&self, x: Tensor<D>, a: Affine<'_>) -> Result<Tensor<D>> {
        let (kernel, format) = (self.kernels().gemm(), self.weight_format());
        let f32_weights = a.compute.is_none() && a.weight.dtype() == DType::F32;
        let Some(kernel) = kernel.filter(|_| self.native(&x) && f32_weights) else {
            return Ok(composed::linear(x, a));
        };
        let pack = || {
            let bias = a.bias.map(shared_values);
            let w = shared_values(a.weight);
            PackedMatrix::new(
                kernel,
                format,
                &w,
                a.dims(),
                bias.as_deref(),
                a.scale as f32,
            )
        };
        let cached = a.prepared.0.packed.get_or_init(&pack);
        let fresh;
        let packed = match cached {
            Some(p) if p.kernel() == kernel && p.asked() == format => p,
            // Packed for another backend's kernels or weight format: pack for this call only.
            _ => match pack() {
                Some(p) => {
                    fresh = p;
                    &fresh
                }
                None => return Ok(composed::linear(x, a)),
            },
        };
        let device = x.device();
        Ok(composed::over_rows(x, |x| {
            let [rows, _] = x.dims();
            let y = packed.apply(&values(x), rows);
            upload(y, [rows, packed.dims()[1]], &device)
        }))
    }

    fn rms_norm_unchecked<const D: usize>(
        &self,
        x: Tensor<D>,
        weight: Option<&Tensor<1>>,
        eps: f64,
    ) -> Result<Tensor<D>> {
        if !self.native(&x) {
            return Ok(composed::rms_norm(x, weight, eps));
        }
        let (dims, w) = (x.dims(), weight.map(shared_values));
        let y = host::rms_norm(&values(x), dims[D - 1], w.as_deref(), eps as f32);
        Ok(upload(y, dims, self.device()))
    }

    fn silu_unchecked<const D: usize>(&self, x: Tensor<D>, scale: f64) -> Result<Tensor<D>> {
        if !self.native(&x) {
            return Ok(composed::silu(x, scale));
        }
        let dims = x.dims();
        let mut y = values(x);
        host::scaled_silu(self.kernels().target(), &mut y, scale as f32);
        Ok(upload(y, dims, self.device()))
    }

    fn silu_gate_unchecked<const D: usize>(
        &self,
        y: Tensor<D>,
        half: SiluHalf,
    ) -> Result<Tensor<D>> {
        if !self.native(&y) {
            return Ok(composed::silu_gate(y, half));
        }
        let mut dims = y.dims();
        dims[D - 1] /= 2;
        let activated = match half {
            SiluHalf::First => 0,
            SiluHalf::Second => 1,
        };
        let out = host::glu(self.kernels().target(), &values(y), dims[D - 1], activated);
        Ok(upload(out, dims, self.device()))
    }

    fn residual_add_unchecked<const D: usize>(
        &self,
        f: Tensor<D>,
        skip: Tensor<D>,
        tau: f32,
    ) -> Result<Tensor<D>> {
        if !self.native(&f) || !self.native(&skip) {
            return Ok(composed::residual_add(f, skip, tau));
        }
        let dims = skip.dims();
        let mut out = values(skip);
        host::residual_add(&values(f), &mut out, tau);
        Ok(upload(out, dims, self.device()))
    }

    /// One pass per sequence on the host: heads gathered, normed, scaled and rotated, scores,
    /// softmax and the weighted sum of values, compiled for the CPU's vector instructions.
    fn attention_unchecked(&self, qkv: Tensor<3>, spec: &AttentionSpec<'_>) -> Result<Tensor<3>> {
        if !self.native(&qkv) {
            return composed::attention(self, qkv, spec);
        }
        let [n, s, _] = qkv.dims();
        let heads = spec.heads;
        let weights = HostWeights::of(spec);
        let (blocked, shared) = match &spec.mask {
            Mask::None => (None, false),
            // Keys are the queries here (`S_kv = S`): a cache mask is the causal one.
            Mask::Causal | Mask::Cache { .. } => {
                (Some((0..s * s).map(|at| at % s > at / s).collect()), true)
            }
            Mask::Blocked(m) => {
                let shared = m.dims()[0] == 1;
                (Some(blocked_flags(m)), shared)
            }
        };
        let prep = weights.prep(spec);
        let host_heads = host_heads(spec);
        let mask = blocked
            .as_deref()
            .map(|blocked| Blocked { blocked, shared });
        let isa = self.kernels().target();
        let out = host::attention(
            isa,
            &values(qkv),
            [n, s],
            host_heads,
            prep,
            spec.divisor as f32,
            mask,
        );
        Ok(upload(out, [n, s, heads.heads * heads.v], self.device()))
    }

    /// On the host, as [`LayerOps::attention`] prepares its heads: one pass over the
    /// projections instead of the composition's ops on strided views.
    fn attention_heads(
        &self,
        qkv: Tensor<3>,
        spec: &AttentionSpec<'_>,
    ) -> Result<(Tensor<4>, Tensor<4>, Tensor<4>)> {
        if !self.native(&qkv) || qkv.dims()[2] != spec.heads.fused_width() {
            return Ok(spec.queries_keys_values(qkv));
        }
        let [n, s, _] = qkv.dims();
        let h = spec.heads;
        let weights = HostWeights::of(spec);
        let (q, k, v) = host::heads(&values(qkv), [n, s], host_heads(spec), weights.prep(spec));
        let device = self.device();
        Ok((
            upload(q, [n, h.heads, s, h.qk], device),
            upload(k, [n, h.groups, s, h.qk], device),
            upload(v, [n, h.groups, s, h.v], device),
        ))
    }

    /// On the host: scores, softmax and the weighted sum per sequence and head, without the
    /// composition's copies of the key/value groups expanded to every head.
    fn attention_core_unchecked(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        divisor: f64,
        mask: &Mask,
    ) -> Result<Tensor<4>> {
        if !(self.native(&q) && self.native(&k) && self.native(&v)) {
            return Ok(composed::attention_core(q, k, v, divisor, mask));
        }
        let [n, h, s, qk] = q.dims();
        let [_, g, width, dv] = v.dims();
        let bools;
        // Keys no query sees (a cache's unwritten entries) are not read. The buffers are read
        // where they are (`with_values`): a view of their seen entries (`narrow`) would be
        // copied value by value on the way out (~0.45 ms a time layer of a one-series Toto 2.0
        // session), and even a copy of a whole buffer costs ~0.05 ms.
        let (seen, host_mask) = match mask {
            Mask::None => (width, None),
            Mask::Causal => (width, Some(CoreMask::written(width))),
            Mask::Cache { len } => (*len, Some(CoreMask::written(*len))),
            Mask::Blocked(m) => {
                // Checked by `attention_core`: `[1 | N, 1 | H, S, S_kv]`.
                let [mn, mh, _, _] = m.dims();
                bools = blocked_flags(m);
                if bools.len() != mn * mh * s * width {
                    return Ok(composed::attention_core(q, k, v, divisor, mask));
                }
                // At least one key: a row that sees none is NaN, as burn's softmax makes it.
                let last_open = bools
                    .chunks(width.max(1))
                    .filter_map(|row| row.iter().rposition(|&blocked| !blocked))
                    .max();
                let seen = last_open.map_or(1, |j| j + 1).min(width);
                let mask = CoreMask {
                    blocked: &bools,
                    dims: [mn, mh],
                    width,
                    causal: false,
                };
                (seen, Some(mask))
            }
        };
        let out = with_values(q, |q| {
            with_values(k, |k| {
                with_values(v, |v| {
                    host::attention_core(
                        self.kernels().target(),
                        (q, k, v),
                        [n, h, s, width],
                        seen,
                        g,
                        [qk, dv],
                        divisor as f32,
                        host_mask,
                    )
                })
            })
        });
        Ok(upload(out, [n, h, s, dv], self.device()))
    }

    /// A stable sort of each column on the host, NaN last (the network's order).
    fn sort_first_unchecked<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        if !self.native(&x) {
            return Ok(composed::sort_first(x));
        }
        let dims = x.dims();
        let n = dims[0];
        let mut v = values(x);
        let columns = v.len() / n.max(1);
        let mut column = Vec::with_capacity(n);
        for c in 0..columns {
            column.clear();
            column.extend((0..n).map(|l| v[l * columns + c]));
            column.sort_by(composed::nan_last);
            for (l, x) in column.iter().enumerate() {
                v[l * columns + c] = *x;
            }
        }
        Ok(upload(v, dims, self.device()))
    }

    /// On one of rayon's threads: the ops' parallel parts then start on the calling thread
    /// while the other threads join, instead of handing each op to the pool and sleeping until
    /// it is done (a wake-up per op, costly on virtual machines).
    fn forward_pass<R: Send>(&self, pass: impl FnOnce() -> R + Send) -> R {
        rayon::scope(|_| pass())
    }
}
