//! [`LayerOps`]: the neural-network layer ops both Toto generations are written with — linear
//! layers, RMSNorm, SiLU and gated units, unit-scaled residual sums, attention, and the sort of
//! the quantile levels — each with a composition of burn tensor ops that runs on any device, and
//! native implementations where a backend has a faster way.
//!
//! | op | provided (any device) | native |
//! |---|---|---|
//! | [`linear`](LayerOps::linear) | burn `matmul` | [`NdArray`](super::NdArray): weights packed once ([`Prepared`]), x86 or portable GEMM; [`Wgpu`](crate::Wgpu): a half-precision product of few rows in f32 against the weight widened once |
//! | [`rms_norm`](LayerOps::rms_norm), [`silu`](LayerOps::silu), [`silu_gate`](LayerOps::silu_gate), [`residual_add`](LayerOps::residual_add) | burn elementwise ops | `NdArray`: one vectorised pass |
//! | [`attention`](LayerOps::attention) | projections split, norms, rotary, [`attention_core`](LayerOps::attention_core) | `NdArray`: one pass per sequence |
//! | [`attention_core`](LayerOps::attention_core) | burn `matmul`, `softmax` | [`Wgpu`](crate::Wgpu): a kernel for up to 16 queries over a KV cache |
//! | [`sort_first`](LayerOps::sort_first) | the crate's one sort: a bitonic network of burn ops (no host round trip on GPUs) | `NdArray`: a host sort; `Wgpu`: a kernel for up to 32 values per column |
//!
//! Model code calls these and never asks which device it runs on; a backend decides how each op
//! runs, and a [`FallbackBackend`](super::FallbackBackend) routes and reports them like the
//! distribution ops.
//!
//! Each op is a provided method that checks its arguments once, for every backend, and calls
//! the op's `_unchecked` method: backends override those (the provided ones are the
//! compositions), so that every backend refuses the same inputs in the same way.

mod args;
pub(crate) mod composed;
mod cpu;
mod rotary;

pub use self::args::{Affine, AttentionSpec, Heads, Mask, Prepared, QkNorm, SiluHalf};
pub use self::rotary::Rotary;

use burn::tensor::Tensor;

use super::Backend;
use crate::error::{Error, InputKind, Result};
use crate::op::Op;

/// The layer ops of a [`Backend`]: see the [module docs](self) for what each runs on.
///
/// All tensors are f32 and live on [`Backend::device`]; shapes follow each method. Every method
/// has a body: a backend implements this trait with `impl LayerOps for MyBackend {}` and
/// overrides the `_unchecked` methods it has a faster way for.
pub trait LayerOps: Backend {
    /// `(x·W + b)·s` over every row of `x: [.., K]` as one product ([`Affine`]: `W: [K, N]`);
    /// returns `[.., N]`.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if `x`'s last
    /// dimension is not `K` or the bias is not `[N]`.
    fn linear<const D: usize>(&self, x: Tensor<D>, affine: Affine<'_>) -> Result<Tensor<D>> {
        let op = Op::Linear;
        self.ensure_supported(op)?;
        let [k, n] = affine.dims();
        self.ensure_on_device(op, "x", &x)?;
        self.ensure_on_device(op, "weight", affine.weight)?;
        ensure(op, D >= 1 && x.dims()[D - 1] == k, || {
            format!(
                "x has shape {:?}; its last dimension must be the weight's {k} inputs",
                x.dims()
            )
        })?;
        if let Some(b) = affine.bias {
            self.ensure_on_device(op, "bias", b)?;
            ensure(op, b.dims() == [n], || {
                format!("the bias has shape {:?}; it must be [{n}]", b.dims())
            })?;
        }
        self.linear_unchecked(x, affine)
    }

    /// [`LayerOps::linear`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn linear_unchecked<const D: usize>(
        &self,
        x: Tensor<D>,
        affine: Affine<'_>,
    ) -> Result<Tensor<D>> {
        Ok(composed::linear(x, affine))
    }

    /// RMSNorm over the last dimension: `x / sqrt(mean(x²) + ε)`, times `weight` (`[last]`)
    /// when given. The shape is kept.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if the weight's
    /// length is not the last dimension.
    fn rms_norm<const D: usize>(
        &self,
        x: Tensor<D>,
        weight: Option<&Tensor<1>>,
        eps: f64,
    ) -> Result<Tensor<D>> {
        let op = Op::RmsNorm;
        self.ensure_supported(op)?;
        self.ensure_on_device(op, "x", &x)?;
        if let Some(w) = weight {
            self.ensure_on_device(op, "weight", w)?;
            let last = x.dims()[D - 1];
            ensure(op, w.dims() == [last], || {
                format!(
                    "the weight has shape {:?}; it must be [{last}] (x's last dimension)",
                    w.dims()
                )
            })?;
        }
        self.rms_norm_unchecked(x, weight, eps)
    }

    /// [`LayerOps::rms_norm`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn rms_norm_unchecked<const D: usize>(
        &self,
        x: Tensor<D>,
        weight: Option<&Tensor<1>>,
        eps: f64,
    ) -> Result<Tensor<D>> {
        Ok(composed::rms_norm(x, weight, eps))
    }

    /// `x ↦ x·σ(x)·scale` elementwise (SiLU, scaled).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`].
    fn silu<const D: usize>(&self, x: Tensor<D>, scale: f64) -> Result<Tensor<D>> {
        self.ensure_supported(Op::Silu)?;
        self.ensure_on_device(Op::Silu, "x", &x)?;
        self.silu_unchecked(x, scale)
    }

    /// [`LayerOps::silu`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn silu_unchecked<const D: usize>(&self, x: Tensor<D>, scale: f64) -> Result<Tensor<D>> {
        Ok(composed::silu(x, scale))
    }

    /// The gated unit over `y: [.., 2F]` read as `[first | second]` halves: `silu(first) ·
    /// second` or `first · silu(second)` ([`SiluHalf`]); returns `[.., F]`.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if the last
    /// dimension is odd.
    fn silu_gate<const D: usize>(&self, y: Tensor<D>, half: SiluHalf) -> Result<Tensor<D>> {
        let op = Op::SiluGate;
        self.ensure_supported(op)?;
        self.ensure_on_device(op, "y", &y)?;
        ensure(op, y.dims()[D - 1].is_multiple_of(2), || {
            format!(
                "y has shape {:?}; its last dimension must be even ([gate | x])",
                y.dims()
            )
        })?;
        self.silu_gate_unchecked(y, half)
    }

    /// [`LayerOps::silu_gate`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn silu_gate_unchecked<const D: usize>(
        &self,
        y: Tensor<D>,
        half: SiluHalf,
    ) -> Result<Tensor<D>> {
        Ok(composed::silu_gate(y, half))
    }

    /// unit-scaling's residual sum `τ/√(1+τ²) · f + 1/√(1+τ²) · skip`, the coefficients in f32
    /// (as Toto 2.0 computes them from its f32 `tau` buffers).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if the shapes differ.
    fn residual_add<const D: usize>(
        &self,
        f: Tensor<D>,
        skip: Tensor<D>,
        tau: f32,
    ) -> Result<Tensor<D>> {
        let op = Op::ResidualAdd;
        self.ensure_supported(op)?;
        self.ensure_on_device(op, "f", &f)?;
        self.ensure_on_device(op, "skip", &skip)?;
        ensure(op, f.dims() == skip.dims(), || {
            format!(
                "f has shape {:?} and skip {:?}; they must be equal",
                f.dims(),
                skip.dims()
            )
        })?;
        self.residual_add_unchecked(f, skip, tau)
    }

    /// [`LayerOps::residual_add`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn residual_add_unchecked<const D: usize>(
        &self,
        f: Tensor<D>,
        skip: Tensor<D>,
        tau: f32,
    ) -> Result<Tensor<D>> {
        Ok(composed::residual_add(f, skip, tau))
    }

    /// Self-attention of `N` sequences of `S` elements from fused projections
    /// `qkv: [N, S, H·qk + G·qk + G·v]` (queries, keys, values, head index slowest in each):
    /// [`AttentionSpec`] says how queries and keys are treated and what is masked. Returns
    /// `[N, S, H·v]`, head-major in the last dimension.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if the width is not
    /// the heads' fused width, `G` does not divide `H`, a weight is not `[qk]`, the rotary
    /// factors are not for `S` positions of at most `qk` dimensions, or the mask's shape does
    /// not fit.
    fn attention(&self, qkv: Tensor<3>, spec: &AttentionSpec<'_>) -> Result<Tensor<3>> {
        let op = Op::Attention;
        self.ensure_supported(op)?;
        self.ensure_on_device(op, "qkv", &qkv)?;
        let [n, s, width] = qkv.dims();
        let h = spec.heads;
        ensure(op, h.groups > 0 && h.heads.is_multiple_of(h.groups), || {
            format!(
                "{} query heads over {} groups; the groups must divide the heads",
                h.heads, h.groups
            )
        })?;
        ensure(op, width == h.fused_width(), || {
            format!("qkv is {width} wide; {h:?} fuse to {}", h.fused_width())
        })?;
        let vectors = spec.qk_norm.iter().flat_map(|q| [q.query, q.key]).flatten();
        for w in vectors.chain(spec.query_scale.map(|(m, _)| m)) {
            self.ensure_on_device(op, "qk weight", w)?;
            ensure(op, w.dims() == [h.qk], || {
                format!(
                    "a query/key weight has shape {:?}; it must be [{}]",
                    w.dims(),
                    h.qk
                )
            })?;
        }
        if let Some(r) = spec.rotary {
            ensure(op, r.positions() == s && r.rotated() <= h.qk, || {
                format!(
                    "the rotary factors are for {} positions of {} dimensions; the call has {s} \
                     of at most {}",
                    r.positions(),
                    r.rotated(),
                    h.qk
                )
            })?;
        }
        check_mask(self, op, &spec.mask, [n, 1, s, s])?;
        self.attention_unchecked(qkv, spec)
    }

    /// [`LayerOps::attention`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn attention_unchecked(&self, qkv: Tensor<3>, spec: &AttentionSpec<'_>) -> Result<Tensor<3>> {
        composed::attention(self, qkv, spec)
    }

    /// The queries, keys and values of fused projections `qkv` (`[N, S, H·qk + G·qk + G·v]`)
    /// as [`LayerOps::attention`] prepares them (`spec`'s norms, query scale and rotation; its
    /// mask and divisor unused): `[N, H, S, qk]`, `[N, G, S, qk]`, `[N, G, S, v]`, for attention
    /// over a KV cache ([`LayerOps::attention_core`]). The provided body is
    /// [`AttentionSpec::queries_keys_values`]; `NdArray` prepares them on its host kernels,
    /// `Wgpu` in one CubeCL kernel, and `FallbackBackend` routes the call as
    /// [`Op::Attention`].
    ///
    /// # Errors
    /// The backend's.
    fn attention_heads(
        &self,
        qkv: Tensor<3>,
        spec: &AttentionSpec<'_>,
    ) -> Result<(Tensor<4>, Tensor<4>, Tensor<4>)> {
        Ok(spec.queries_keys_values(qkv))
    }

    /// `softmax(q·kᵀ / divisor, masked) · v` per head for `q: [N, H, S, d]` over grouped
    /// keys and values `k: [N, G, S_kv, d]`, `v: [N, G, S_kv, d_v]` (query head `h` reads group
    /// `h / (H/G)`). Returns `[N, H, S, d_v]`. [`Mask::Causal`] needs `S = S_kv`.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`]; [`Error::Input`] if the shapes do not
    /// fit together or `G` does not divide `H`.
    fn attention_core(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        divisor: f64,
        mask: &Mask,
    ) -> Result<Tensor<4>> {
        let op = Op::AttentionCore;
        self.ensure_supported(op)?;
        for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
            self.ensure_on_device(op, name, t)?;
        }
        let ([n, h, s, d], [kn, g, skv, kd], [vn, vg, vs, _]) = (q.dims(), k.dims(), v.dims());
        let fits = kn == n && vn == n && kd == d && vg == g && vs == skv;
        ensure(op, fits && g > 0 && h % g == 0, || {
            format!(
                "q {:?}, k {:?}, v {:?} do not fit: [N, H, S, d], [N, G, S_kv, d], \
                 [N, G, S_kv, d_v] with G dividing H",
                q.dims(),
                k.dims(),
                v.dims()
            )
        })?;
        check_mask(self, op, mask, [n, h, s, skv])?;
        self.attention_core_unchecked(q, k, v, divisor, mask)
    }

    /// [`LayerOps::attention_core`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn attention_core_unchecked(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        divisor: f64,
        mask: &Mask,
    ) -> Result<Tensor<4>> {
        Ok(composed::attention_core(q, k, v, divisor, mask))
    }

    /// `x` sorted ascending along dimension 0, each column on its own, every value kept and NaN
    /// last (as `torch.sort`'s values). Toto 2.0 sorts its quantile levels with it.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::DeviceMismatch`].
    fn sort_first<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.ensure_supported(Op::SortFirst)?;
        self.ensure_on_device(Op::SortFirst, "x", &x)?;
        self.sort_first_unchecked(x)
    }

    /// [`LayerOps::sort_first`] after its checks.
    ///
    /// # Errors
    /// The backend's.
    fn sort_first_unchecked<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        Ok(composed::sort_first(x))
    }

    /// Runs one forward pass of a model, `pass`, where this backend's ops run best: a backend
    /// whose ops run on a thread pool runs it on one of the pool's threads (`NdArray`). The
    /// provided body calls `pass` on the calling thread.
    fn forward_pass<R: Send>(&self, pass: impl FnOnce() -> R + Send) -> R {
        pass()
    }
}

/// `Ok` if `holds`, else [`Error::Input`] for `op` with `reason`.
fn ensure(op: Op, holds: bool, reason: impl FnOnce() -> String) -> Result<()> {
    match holds {
        true => Ok(()),
        false => Err(Error::input(op.name(), InputKind::Shape, reason())),
    }
}

/// A [`Mask::Blocked`] must be on the device and broadcast to `[n, h, s, s_kv]` (size 1 or
/// equal in the first two dimensions, equal in the last two); [`Mask::Causal`] needs square
/// scores, [`Mask::Cache`] `S ≤ len ≤ S_kv`.
fn check_mask<B: Backend>(
    backend: &B,
    op: Op,
    mask: &Mask,
    [n, h, s, skv]: [usize; 4],
) -> Result<()> {
    match mask {
        Mask::None => Ok(()),
        Mask::Causal => ensure(op, s == skv, || {
            format!("a causal mask needs as many keys as queries; there are {skv} keys for {s}")
        }),
        Mask::Cache { len } => ensure(op, s <= *len && *len <= skv, || {
            format!(
                "a cache mask needs queries ≤ written entries ≤ keys; there are {s} queries, \
                 {len} written entries and {skv} keys"
            )
        }),
        Mask::Blocked(m) => {
            Error::ensure_devices(op.name(), backend.device(), [("mask", m.device())])?;
            let [mn, mh, ms, mk] = m.dims();
            let fits = (mn == 1 || mn == n) && (mh == 1 || mh == h) && ms == s && mk == skv;
            ensure(op, fits, || {
                format!(
                    "the mask has shape {:?}; it must broadcast to [{n}, {h}, {s}, {skv}]",
                    m.dims()
                )
            })
        }
    }
}
