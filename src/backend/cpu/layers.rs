//! The layer ops' host implementations for [`NdArray`](crate::backend::NdArray): RMSNorm,
//! unit-scaled residual sums, gated SiLU units, and grouped-query attention with RMSNorm'd and
//! rotated queries and keys, masks and softmax, each one pass over the data.
//!
//! On burn-ndarray every tensor op allocates its output and dispatches on its own, and some
//! compose several ops (burn's `sigmoid` is `exp(−log1p(exp(−x)))`: two exponentials, a
//! logarithm and four passes). A Toto 2.0 forecast of a few hundred patches is a few hundred such
//! ops on a few thousand values each, where the dispatch costs more than the arithmetic. These
//! functions do the same arithmetic (f32, the references' order where it matters) in one pass per
//! step; rows are spread over rayon's threads when there are enough of them.
//!
//! Safe code on slices; the exponentials and attention's per-sequence work are compiled for the
//! instruction set the caller passes ([`dispatch`](super::dispatch)).

use std::marker::PhantomData;

use rayon::prelude::*;

use super::dispatch::{Target, Vectorise, vectorised};
use super::vector::{exp_in_place, silu_in_place, times_silu};

/// Values per rayon task: below this a step runs on the calling thread.
const PAR_VALUES: usize = 1 << 15;

/// `f` on each row of `width` values of `data`, on rayon's threads when `data` is large.
fn rows_mut(data: &mut [f32], width: usize, f: impl Fn(&mut [f32]) + Sync) {
    if width == 0 {
        return;
    }
    if data.len() < 2 * PAR_VALUES {
        data.chunks_exact_mut(width).for_each(f);
    } else {
        let rows = (PAR_VALUES / width).max(1);
        data.par_chunks_mut(rows * width)
            .for_each(|block| block.chunks_exact_mut(width).for_each(&f));
    }
}

/// RMSNorm of one row in place: `x / sqrt(mean(x²) + ε)`, times `weight` when given (burn's
/// `square → mean → add → sqrt → div → mul`, in that order).
#[inline(always)]
pub(crate) fn rms_norm_row(row: &mut [f32], weight: Option<&[f32]>, eps: f32) {
    let mean = dot(row, row) / row.len().max(1) as f32;
    let rms = (mean + eps).sqrt();
    row.iter_mut().for_each(|v| *v /= rms);
    if let Some(w) = weight {
        row.iter_mut().zip(w).for_each(|(v, w)| *v *= w);
    }
}

/// [`rms_norm_row`] over every row of `width` values: a new buffer.
pub(crate) fn rms_norm(x: &[f32], width: usize, weight: Option<&[f32]>, eps: f32) -> Vec<f32> {
    let mut y = x.to_vec();
    rows_mut(&mut y, width, |row| rms_norm_row(row, weight, eps));
    y
}

/// unit-scaling's residual sum in place: `skip ← τ/√(1+τ²) · f + 1/√(1+τ²) · skip`, the
/// coefficients in f32 as the reference computes them from its f32 `tau` buffer.
pub(crate) fn residual_add(f: &[f32], skip: &mut [f32], tau: f32) {
    let denom = (1.0f32 + tau * tau).sqrt();
    let (a, b) = (tau / denom, 1.0f32 / denom);
    let step = |(s, f): (&mut f32, &f32)| *s = f * a + *s * b;
    if skip.len() < 2 * PAR_VALUES {
        skip.iter_mut().zip(f).for_each(step);
    } else {
        skip.par_chunks_mut(PAR_VALUES)
            .zip(f.par_chunks(PAR_VALUES))
            .for_each(|(s, f)| s.iter_mut().zip(f).for_each(step));
    }
}

/// `x ↦ x·σ(x)·scale` in place (SiLU; `scale` is unit-scaling's output scale in Toto 2.0's
/// residual MLPs).
pub(crate) fn scaled_silu(target: Target, values: &mut [f32], scale: f32) {
    if values.len() < 2 * PAR_VALUES {
        silu_in_place(target, values, scale);
    } else {
        values
            .par_chunks_mut(PAR_VALUES)
            .for_each(|chunk| silu_in_place(target, chunk, scale));
    }
}

/// The gated unit over rows of `2f` values: the half at `activated` (0: the first, 1: the
/// second) through SiLU, times the other half; rows of `f` values.
pub(crate) fn glu(target: Target, y: &[f32], f: usize, activated: usize) -> Vec<f32> {
    if f == 0 {
        return Vec::new();
    }
    let rows = y.len() / (2 * f);
    let mut out = vec![0.0f32; rows * f];
    let gate_rows = |(out, y): (&mut [f32], &[f32])| {
        for (o, row) in out.chunks_exact_mut(f).zip(y.chunks_exact(2 * f)) {
            let (first, second) = row.split_at(f);
            let (a, other) = match activated {
                0 => (first, second),
                _ => (second, first),
            };
            o.copy_from_slice(other);
            times_silu(target, o, a);
        }
    };
    if rows * f < 2 * PAR_VALUES {
        gate_rows((&mut out, y));
    } else {
        let per_task = (PAR_VALUES / f).max(1);
        out.par_chunks_mut(per_task * f)
            .zip(y.par_chunks(per_task * 2 * f))
            .for_each(gate_rows);
    }
    out
}

/// Rotary (+ xPos) factors per position, `[S, rotated]` each: `cos`, `sin` with rotate-half's
/// sign folded in (negative on the first member of each pair), and the xPos scale (empty
/// without xPos).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rotation<'a> {
    pub(crate) rotated: usize,
    pub(crate) cos: &'a [f32],
    pub(crate) sin: &'a [f32],
    pub(crate) scale: &'a [f32],
}

impl Rotation<'_> {
    /// Rotates the first `rotated` values of `row` (a head at position `pos`): interleaved
    /// pairs `(x₀, x₁) ↦ (x₀ cos − x₁ sin, x₁ cos + x₀ sin)`, then times the xPos scale for a
    /// query, divided by it for a key.
    #[inline(always)]
    fn apply(&self, row: &mut [f32], pos: usize, query: bool) {
        let w = self.rotated;
        let at = pos * w;
        let (cos, sin) = (&self.cos[at..at + w], &self.sin[at..at + w]);
        for j in (0..w).step_by(2) {
            let (x0, x1) = (row[j], row[j + 1]);
            row[j] = x0 * cos[j] + x1 * sin[j];
            row[j + 1] = x1 * cos[j + 1] + x0 * sin[j + 1];
        }
        if !self.scale.is_empty() {
            let scale = &self.scale[at..at + w];
            if query {
                row[..w].iter_mut().zip(scale).for_each(|(v, s)| *v *= s);
            } else {
                row[..w].iter_mut().zip(scale).for_each(|(v, s)| *v /= s);
            }
        }
    }
}

/// Which query/key pairs may not attend: `blocked[(n·S + i)·S + j]` for sequence `n`, query `i`,
/// key `j`; one `[S, S]` block shared by every sequence when `shared`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocked<'a> {
    pub(crate) blocked: &'a [bool],
    pub(crate) shared: bool,
}

/// What happens to queries and keys between the projection and the scores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QkPrep<'a> {
    /// RMSNorm on each query and key head.
    pub(crate) norm: Option<QkNorm<'a>>,
    /// Per-dimension query multipliers, then a constant factor.
    pub(crate) query_scale: Option<(&'a [f32], f32)>,
    /// Rotary factors of the `S` elements, row `i` for element `i` (time layers).
    pub(crate) rope: Option<Rotation<'a>>,
}

/// The RMSNorm of query and key heads: their weights (when the norms have one) and `ε`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QkNorm<'a> {
    pub(crate) query: Option<&'a [f32]>,
    pub(crate) key: Option<&'a [f32]>,
    pub(crate) eps: f32,
}

/// Head counts and widths: `heads` query heads over `groups` key/value heads (head `h` reads
/// group `h / (heads/groups)`), `qk` and `v` values per head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub(crate) heads: usize,
    pub(crate) groups: usize,
    pub(crate) qk: usize,
    pub(crate) v: usize,
}

impl Heads {
    /// The width of a fused projection row: queries, keys, values.
    fn width(self) -> usize {
        (self.heads + self.groups) * self.qk + self.groups * self.v
    }
}

/// Self-attention over `n` sequences of `s` elements from fused projections `qkv`
/// (`[n, s, H·qk + G·qk + G·v]`: queries, keys, values): `softmax(q·kᵀ / divisor, masked) · v`
/// per head, `[n, s, H·v]`. Burn's softmax: a row whose keys are all blocked is NaN.
pub(crate) fn attention(
    target: Target,
    qkv: &[f32],
    [n, s]: [usize; 2],
    heads: Heads,
    prep: QkPrep<'_>,
    divisor: f32,
    blocked: Option<Blocked<'_>>,
) -> Vec<f32> {
    let Heads {
        heads: h,
        groups: g,
        qk,
        v: dv,
    } = heads;
    let width = heads.width();
    let per_group = (h / g.max(1)).max(1);
    let mut out = vec![0.0f32; n * s * h * dv];
    if n == 0 || s == 0 || h == 0 || g == 0 {
        return out;
    }
    let job = Job {
        target,
        qkv,
        s,
        width,
        heads,
        per_group,
        prep,
        divisor,
        blocked,
    };
    // Compiled for the CPU's vector instructions: the dot products, softmax and sums over heads
    // of 64 values are this function's work.
    let sequence = |(index, out): (usize, &mut [f32])| {
        vectorised::<AttendSequence<'_>>(target, (&job, index, out))
    };
    let per_sequence = s * h * dv;
    if n * s * s * h * qk < 4 * PAR_VALUES {
        out.chunks_exact_mut(per_sequence)
            .enumerate()
            .for_each(sequence);
    } else {
        out.par_chunks_exact_mut(per_sequence)
            .enumerate()
            .for_each(sequence);
    }
    out
}

/// One [`attention`] call's inputs, shared by its sequences.
struct Job<'a> {
    target: Target,
    qkv: &'a [f32],
    s: usize,
    width: usize,
    heads: Heads,
    per_group: usize,
    prep: QkPrep<'a>,
    divisor: f32,
    blocked: Option<Blocked<'a>>,
}

/// One sequence of an [`attention`] call, compiled for the CPU's vector instructions.
struct AttendSequence<'a>(PhantomData<&'a ()>);

impl<'a> Vectorise for AttendSequence<'a> {
    type Args = (&'a Job<'a>, usize, &'a mut [f32]);
    type Out = ();

    #[inline(always)]
    fn run(args: Self::Args) {
        attend_sequence(args);
    }
}

/// Sequence `index` of `job` into `out` (`[s, H·v]`).
#[inline(always)]
fn attend_sequence((job, index, out): (&Job<'_>, usize, &mut [f32])) {
    let (s, width, prep) = (job.s, job.width, job.prep);
    let Heads {
        heads: h,
        groups: g,
        qk,
        v: dv,
    } = job.heads;
    let x = &job.qkv[index * s * width..(index + 1) * s * width];
    let (q, k, v) = sequence_heads(x, s, job.heads, prep);
    let mask = job.blocked.map(|b| {
        let at = if b.shared { 0 } else { index * s * s };
        &b.blocked[at..at + s * s]
    });
    let mut weights = vec![0.0f32; s];
    for head in 0..h {
        let group = (head / job.per_group).min(g - 1); // g ≥ 1 here
        attend_head(
            job.target,
            (
                &q[head * s * qk..][..s * qk],
                &k[group * s * qk..][..s * qk],
                &v[group * s * dv..][..s * dv],
            ),
            [qk, dv],
            job.divisor,
            |i, j| mask.is_some_and(|m| m[i * s + j]),
            &mut weights,
            (&mut out[head * dv..], h * dv),
        );
    }
}

/// One head's attention: `queries` (`[S, qk]`) over `keys` (`[K, qk]`) and `values`
/// (`[K, v]`), `softmax(q·kᵀ / divisor, blocked) · v`, query `i`'s row written to
/// `out[i·stride..][..v]`. `weights` holds `K` scores. Inlined into its callers' vectorised
/// bodies (the dot products and sums compile to the CPU's vector width there).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend_head(
    target: Target,
    (queries, keys, values): (&[f32], &[f32], &[f32]),
    [qk, dv]: [usize; 2],
    divisor: f32,
    blocked: impl Fn(usize, usize) -> bool,
    weights: &mut [f32],
    (out, stride): (&mut [f32], usize),
) {
    for (i, query) in queries.chunks_exact(qk).enumerate() {
        for (j, (w, key)) in weights.iter_mut().zip(keys.chunks_exact(qk)).enumerate() {
            *w = if blocked(i, j) {
                f32::NEG_INFINITY
            } else {
                dot(query, key) / divisor
            };
        }
        let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        weights.iter_mut().for_each(|w| *w -= max);
        exp_in_place(target, weights);
        let total: f32 = weights.iter().sum();
        let o = &mut out[i * stride..][..dv];
        o.fill(0.0);
        for (w, value) in weights.iter().zip(values.chunks_exact(dv)) {
            let w = w / total;
            o.iter_mut().zip(value).for_each(|(o, v)| *o += w * v);
        }
    }
}

/// Which query/key pairs of an [`attention_core`] call may not attend: `[mn, mh, S, S_kv]`
/// row-major, broadcast over sequences when `mn = 1` and over heads when `mh = 1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreMask<'a> {
    pub(crate) blocked: &'a [bool],
    pub(crate) dims: [usize; 2],
    /// The mask's row length (its `S_kv`): at least the keys passed, which may stop before
    /// the mask's last columns when no query sees those.
    pub(crate) width: usize,
    /// Instead of a buffer, causal over the keys [`attention_core`] reads (its `seen`: a
    /// fixed-capacity cache's first `len` entries, the queries the last of them): query `i`
    /// sees keys `0..=len − S + i`.
    pub(crate) causal: bool,
}

impl CoreMask<'_> {
    /// The causal mask over a cache's first `len` keys.
    pub(crate) fn written(len: usize) -> Self {
        CoreMask {
            blocked: &[],
            dims: [1, 1],
            width: len,
            causal: true,
        }
    }
}

/// Attention over prepared heads (a decode step's or a streaming pass's queries over cached
/// keys): `q` `[n, H, S, qk]`, `k` `[n, G, S_kv, qk]`, `v` `[n, G, S_kv, v]`, head `h` reading
/// group `h / (H/G)`; `softmax(q·kᵀ / divisor, masked) · v`, `[n, H, S, v]`. Only the first
/// `seen` keys of each group are read (at most `S_kv`: the mask blocks the others for every
/// query). Burn's softmax: a row whose keys are all blocked is NaN.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_core(
    target: Target,
    (q, k, v): (&[f32], &[f32], &[f32]),
    [n, h, s, skv]: [usize; 4],
    seen: usize,
    groups: usize,
    [qk, dv]: [usize; 2],
    divisor: f32,
    mask: Option<CoreMask<'_>>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; n * h * s * dv];
    if n * h * s * dv == 0 || groups == 0 {
        return out;
    }
    let job = CoreJob {
        target,
        qkv: (q, k, v),
        dims: [h, s, skv],
        seen: seen.min(skv),
        groups,
        per_group: (h / groups).max(1),
        widths: [qk, dv],
        divisor,
        mask,
    };
    // Compiled for the CPU's vector instructions, as [`attention`]'s sequences.
    let head = |(index, out): (usize, &mut [f32])| {
        vectorised::<AttendHead<'_>>(target, (&job, index, out))
    };
    let per_head = s * dv;
    if n * h * s * skv * qk < 4 * PAR_VALUES {
        out.chunks_exact_mut(per_head).enumerate().for_each(head);
    } else {
        out.par_chunks_exact_mut(per_head)
            .enumerate()
            .for_each(head);
    }
    out
}

/// One [`attention_core`] call's inputs, shared by its heads.
struct CoreJob<'a> {
    target: Target,
    qkv: (&'a [f32], &'a [f32], &'a [f32]),
    /// Heads, queries and keys per sequence (`H`, `S`, `S_kv`).
    dims: [usize; 3],
    seen: usize,
    groups: usize,
    per_group: usize,
    widths: [usize; 2],
    divisor: f32,
    mask: Option<CoreMask<'a>>,
}

/// One head of an [`attention_core`] call, compiled for the CPU's vector instructions.
struct AttendHead<'a>(PhantomData<&'a ()>);

impl<'a> Vectorise for AttendHead<'a> {
    type Args = (&'a CoreJob<'a>, usize, &'a mut [f32]);
    type Out = ();

    #[inline(always)]
    fn run((job, index, out): Self::Args) {
        let ([h, s, skv], [qk, dv], seen) = (job.dims, job.widths, job.seen);
        let (q, k, v) = job.qkv;
        let (seq, head) = (index / h, index % h);
        let group = (head / job.per_group).min(job.groups - 1);
        let keys = (seq * job.groups + group) * skv;
        let blocked = |i: usize, j: usize| match job.mask {
            Some(m) if m.causal => j + s > i + seen,
            Some(m) => {
                let [mn, mh] = m.dims;
                m.blocked[(((seq % mn) * mh + head % mh) * s + i) * m.width + j]
            }
            None => false,
        };
        let mut weights = vec![0.0f32; seen];
        attend_head(
            job.target,
            (
                &q[index * s * qk..][..s * qk],
                &k[keys * qk..][..seen * qk],
                &v[keys * dv..][..seen * dv],
            ),
            [qk, dv],
            job.divisor,
            blocked,
            &mut weights,
            (out, dv),
        );
    }
}

/// One sequence's queries, keys and values from its fused projections `x` (`[s, width]`),
/// head-major (`q` `[H][s][qk]`, `k` `[G][s][qk]`, `v` `[G][s][v]`), the queries and keys
/// normed, scaled and rotated.
#[inline(always)]
fn sequence_heads(
    x: &[f32],
    s: usize,
    heads: Heads,
    prep: QkPrep<'_>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Heads {
        heads: h,
        groups: g,
        qk,
        v: dv,
    } = heads;
    let width = heads.width();
    let mut q = gather(x, s, width, 0, h, qk);
    let mut k = gather(x, s, width, h * qk, g, qk);
    let v = gather(x, s, width, (h + g) * qk, g, dv);
    for (query, t) in [(true, &mut q), (false, &mut k)] {
        for (r, row) in t.chunks_exact_mut(qk).enumerate() {
            if let Some(norm) = prep.norm {
                let weight = if query { norm.query } else { norm.key };
                rms_norm_row(row, weight, norm.eps);
            }
            if let (true, Some((per_dim, c))) = (query, prep.query_scale) {
                row.iter_mut()
                    .zip(per_dim)
                    .for_each(|(x, m)| *x = *x * m * c);
            }
            if let Some(rope) = prep.rope {
                rope.apply(row, r % s, query);
            }
        }
    }
    (q, k, v)
}

/// One sequence's slots of [`heads`]' queries, keys and values.
type Outputs<'a> = ((&'a mut [f32], &'a mut [f32]), &'a mut [f32]);

/// The queries, keys and values of `n` sequences of `s` elements from fused projections
/// `qkv` (`[n, s, H·qk + G·qk + G·v]`), prepared as [`attention`] prepares them:
/// `[n, H, s, qk]`, `[n, G, s, qk]`, `[n, G, s, v]` (what attention over a KV cache reads).
pub(crate) fn heads(
    qkv: &[f32],
    [n, s]: [usize; 2],
    heads: Heads,
    prep: QkPrep<'_>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Heads {
        heads: h,
        groups: g,
        qk,
        v: dv,
    } = heads;
    let width = heads.width();
    let (mut q, mut k, mut v) = (
        vec![0.0f32; n * h * s * qk],
        vec![0.0f32; n * g * s * qk],
        vec![0.0f32; n * g * s * dv],
    );
    if n * s * width == 0 {
        return (q, k, v);
    }
    let one = |(i, ((q, k), v)): (usize, Outputs<'_>)| {
        let (hq, hk, hv) = sequence_heads(&qkv[i * s * width..][..s * width], s, heads, prep);
        q.copy_from_slice(&hq);
        k.copy_from_slice(&hk);
        v.copy_from_slice(&hv);
    };
    let chunks = (h * s * qk, g * s * qk, g * s * dv);
    if n * s * width < 2 * PAR_VALUES {
        q.chunks_exact_mut(chunks.0)
            .zip(k.chunks_exact_mut(chunks.1))
            .zip(v.chunks_exact_mut(chunks.2))
            .enumerate()
            .for_each(one);
    } else {
        q.par_chunks_exact_mut(chunks.0)
            .zip(k.par_chunks_exact_mut(chunks.1))
            .zip(v.par_chunks_exact_mut(chunks.2))
            .enumerate()
            .for_each(one);
    }
    (q, k, v)
}

/// The `count` heads of `d` values starting at `offset` of each of the `s` rows of `x` (row
/// width `width`), head-major: `[count][s][d]`.
#[inline(always)]
fn gather(x: &[f32], s: usize, width: usize, offset: usize, count: usize, d: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; count * s * d];
    for pos in 0..s {
        for head in 0..count {
            let from = pos * width + offset + head * d;
            t[(head * s + pos) * d..][..d].copy_from_slice(&x[from..from + d]);
        }
    }
    t
}

/// `Σ aᵢ bᵢ` in f32, eight partial sums (vectorises without reassociation flags).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::super::dispatch::targets_here;
    use super::*;

    /// A deterministic spread of values in (−2, 2).
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                x as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    fn close(got: &[f32], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= tol * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn norm_residual_and_gates_match_f64() {
        // Sizes on both sides of the parallel threshold.
        for rows in [3, 200] {
            let d = 384;
            let x = values(rows * d, 7);
            let w = values(d, 11);
            let got = rms_norm(&x, d, Some(&w), 1e-5);
            let want: Vec<f64> = x
                .chunks(d)
                .flat_map(|r| {
                    let ms = r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / d as f64;
                    let rms = (ms + 1e-5).sqrt();
                    r.iter()
                        .zip(&w)
                        .map(move |(v, w)| f64::from(*v) / rms * f64::from(*w))
                        .collect::<Vec<_>>()
                })
                .collect();
            close(&got, &want, 1e-5, "rms_norm");

            let f = values(rows * d, 13);
            let mut skip = x.clone();
            residual_add(&f, &mut skip, 0.6);
            let r = 1.0f64 / (1.0 + 0.36f64).sqrt();
            let want: Vec<f64> = f
                .iter()
                .zip(&x)
                .map(|(f, s)| 0.6 * r * f64::from(*f) + r * f64::from(*s))
                .collect();
            close(&skip, &want, 1e-6, "residual_add");

            let silu = |x: f64| x / (1.0 + (-x).exp());
            for isa in targets_here() {
                for activated in [0, 1] {
                    let gated = glu(isa, &x, d / 2, activated);
                    let want: Vec<f64> = x
                        .chunks(d)
                        .flat_map(|r| {
                            let (first, second) = r.split_at(d / 2);
                            let (a, other) = if activated == 0 {
                                (first, second)
                            } else {
                                (second, first)
                            };
                            other
                                .iter()
                                .zip(a)
                                .map(|(o, a)| f64::from(*o) * silu(f64::from(*a)))
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    close(&gated, &want, 1e-6, "glu");
                }
                let mut scaled = x.clone();
                scaled_silu(isa, &mut scaled, 1.5);
                let want: Vec<f64> = x.iter().map(|v| 1.5 * silu(f64::from(*v))).collect();
                close(&scaled, &want, 1e-6, "scaled_silu");
            }
        }
    }

    /// Rotary tables for `positions` (interleaved pairs, `rotated` of them per position, the
    /// sign of rotate-half folded into `sin`) and an xPos-like scale: any tables serve, the f64
    /// reference reads the same ones.
    fn tables(positions: &[usize], rotated: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (mut cos, mut sin, mut scale) = (Vec::new(), Vec::new(), Vec::new());
        for &m in positions {
            for j in 0..rotated {
                let angle = m as f32 / 10f32.powi((j / 2) as i32);
                cos.push(angle.cos());
                sin.push(if j % 2 == 0 {
                    -angle.sin()
                } else {
                    angle.sin()
                });
                scale.push(1.0 + 0.01 * (m as f32 - 4.0) * (j as f32 + 1.0) / rotated as f32);
            }
        }
        (cos, sin, scale)
    }

    /// The attention of one sequence in f64, straight from the definitions.
    #[allow(clippy::too_many_arguments)]
    fn attention_f64(
        x: &[f32],
        s: usize,
        hd: Heads,
        rope: &Rotation<'_>,
        weights: (&[f32], &[f32]),
        blocked: &[bool],
    ) -> Vec<f64> {
        let width = (hd.heads + hd.groups) * hd.qk + hd.groups * hd.v;
        let head = |pos: usize, offset: usize, query: bool| -> Vec<f64> {
            let r = &x[pos * width + offset..][..hd.qk];
            let ms = r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / hd.qk as f64;
            let w = if query { weights.0 } else { weights.1 };
            let mut y: Vec<f64> = r
                .iter()
                .zip(w)
                .map(|(v, w)| f64::from(*v) / (ms + 1e-6).sqrt() * f64::from(*w))
                .collect();
            let at = pos * rope.rotated;
            for j in (0..rope.rotated).step_by(2) {
                let (c, sn) = (f64::from(rope.cos[at + j]), f64::from(rope.sin[at + j + 1]));
                let (a, b) = (y[j], y[j + 1]);
                y[j] = a * c - b * sn;
                y[j + 1] = b * c + a * sn;
                for m in [j, j + 1] {
                    let sc = f64::from(rope.scale[at + m]);
                    y[m] = if query { y[m] * sc } else { y[m] / sc };
                }
            }
            y
        };
        let per_group = hd.heads / hd.groups;
        let mut out = vec![0.0; s * hd.heads * hd.v];
        for h in 0..hd.heads {
            let g = h / per_group;
            for i in 0..s {
                let q = head(i, h * hd.qk, true);
                let scores: Vec<f64> = (0..s)
                    .map(|j| {
                        let k = head(j, (hd.heads + g) * hd.qk, false);
                        match blocked[i * s + j] {
                            true => f64::NEG_INFINITY,
                            false => {
                                q.iter().zip(&k).map(|(a, b)| a * b).sum::<f64>() / hd.qk as f64
                            }
                        }
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|v| (v - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for (j, e) in e.iter().enumerate() {
                    let value = (hd.heads + hd.groups) * hd.qk + g * hd.v;
                    for c in 0..hd.v {
                        out[(i * hd.heads + h) * hd.v + c] +=
                            e / total * f64::from(x[j * width + value + c]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn grouped_attention_with_rope_norms_and_masks_matches_f64() {
        // 4 query heads over 2 groups, qk 8 (4 rotated, xPos), v 6; causal mask per sequence
        // with one extra blocked pair in the second; enough sequences to go parallel.
        let (s, hd) = (
            5,
            Heads {
                heads: 4,
                groups: 2,
                qk: 8,
                v: 6,
            },
        );
        let positions: Vec<usize> = (3..3 + s).collect();
        let (cos, sin, scale) = tables(&positions, 4);
        let rope = Rotation {
            rotated: 4,
            cos: &cos,
            sin: &sin,
            scale: &scale,
        };
        let (wq, wk) = (values(8, 3), values(8, 5));
        for n in [2, 400] {
            let width = (hd.heads + hd.groups) * hd.qk + hd.groups * hd.v;
            let qkv = values(n * s * width, 17);
            let mut blocked = vec![false; n * s * s];
            for seq in 0..n {
                for i in 0..s {
                    for j in i + 1..s {
                        blocked[(seq * s + i) * s + j] = true;
                    }
                }
            }
            blocked[(s + 3) * s + 1] = true;
            let prep = QkPrep {
                norm: Some(QkNorm {
                    query: Some(&wq),
                    key: Some(&wk),
                    eps: 1e-6,
                }),
                query_scale: None,
                rope: Some(rope),
            };
            let mask = Blocked {
                blocked: &blocked,
                shared: false,
            };
            for isa in targets_here() {
                let got = attention(isa, &qkv, [n, s], hd, prep, hd.qk as f32, Some(mask));
                for seq in [0, 1, n - 1] {
                    let x = &qkv[seq * s * width..(seq + 1) * s * width];
                    let want = attention_f64(
                        x,
                        s,
                        hd,
                        &rope,
                        (&wq, &wk),
                        &blocked[seq * s * s..(seq + 1) * s * s],
                    );
                    let per = s * hd.heads * hd.v;
                    close(&got[seq * per..(seq + 1) * per], &want, 2e-5, "attention");
                }
            }
        }
    }
}
