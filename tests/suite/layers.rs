//! The layer ops ([`LayerOps`]) on every backend and kernel choice against f64 references
//! computed here from the definitions; bad arguments refused alike everywhere; forwarded layer
//! ops reported.

use burn::tensor::{Bool, Int, Tensor, TensorData};
use toto_fallback::backend::{
    Affine, AttentionSpec, Heads, Mask, Prepared, QkNorm, Rotary, SiluHalf,
};
use toto_fallback::{Backend, Error, LayerOps, Op};

use crate::common::{self, values};

/// f32 rounding over the sums of these sizes (at most a few hundred terms of magnitude ≤ 4),
/// relative to `max(1, |want|)`.
const TOL: f64 = 2e-5;

/// Deterministic values in (−1, 1) (a multiplicative hash).
fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i + 7 * salt).wrapping_mul(2_654_435_761) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn tensor<B: Backend, const D: usize>(b: &B, shape: [usize; D], salt: usize) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(data(n, salt), shape), b.device())
}

fn assert_close<const D: usize>(what: &str, got: Tensor<D>, want: &[f64]) {
    let got = values(got);
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= TOL * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}[{i}]: {g} vs {w}");
    }
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// RMSNorm of a row in f64.
fn rms(row: &[f64], w: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let ms = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
    let r = (ms + eps).sqrt();
    row.iter()
        .enumerate()
        .map(|(i, v)| v / r * w.map_or(1.0, |w| w[i]))
        .collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| f64::from(*x)).collect()
}

on_backends!(
    elementwise_layer_ops_match_f64,
    [
        ndarray,
        ndarray_portable,
        ndarray_burn,
        flex,
        wgpu,
        fallback,
        layers_forced
    ],
    |b| {
        let b = &*b;
        // linear: [2, 3, 37] × [37, 45] + bias, scaled; twice, the second from the prepared
        // weights.
        let (k, n) = (37, 45);
        let (w, bias) = (tensor(b, [k, n], 2), tensor(b, [n], 3));
        let x = tensor(b, [2, 3, k], 1);
        let prepared = Prepared::default();
        let (xs, ws, bs) = (
            f64s(&data(6 * k, 1)),
            f64s(&data(k * n, 2)),
            f64s(&data(n, 3)),
        );
        let want: Vec<f64> = (0..6 * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                let dot: f64 = (0..k).map(|l| xs[r * k + l] * ws[l * n + c]).sum();
                (dot + bs[c]) * 0.3
            })
            .collect();
        for round in 0..2 {
            let y = b
                .linear(x.clone(), Affine::new(&w, Some(&bias), 0.3, &prepared))
                .unwrap();
            assert_eq!(y.dims(), [2, 3, n]);
            assert_close(&format!("linear (call {round})"), y, &want);
        }

        // rms_norm over [4, 64] with a weight.
        let (x, w) = (tensor(b, [4, 64], 4), tensor(b, [64], 5));
        let (xs, ws) = (f64s(&data(256, 4)), f64s(&data(64, 5)));
        let want: Vec<f64> = xs
            .chunks(64)
            .flat_map(|r| rms(r, Some(&ws), 1e-6))
            .collect();
        assert_close(
            "rms_norm",
            b.rms_norm(x.clone(), Some(&w), 1e-6).unwrap(),
            &want,
        );

        // silu, scaled.
        let want: Vec<f64> = xs.iter().map(|v| 1.7 * silu(*v)).collect();
        assert_close("silu", b.silu(x.clone(), 1.7).unwrap(), &want);

        // silu_gate, both halves.
        for half in [SiluHalf::First, SiluHalf::Second] {
            let want: Vec<f64> = xs
                .chunks(64)
                .flat_map(|r| {
                    let (first, second) = r.split_at(32);
                    (0..32)
                        .map(|i| match half {
                            SiluHalf::First => silu(first[i]) * second[i],
                            SiluHalf::Second => first[i] * silu(second[i]),
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let got = b.silu_gate(x.clone(), half).unwrap();
            assert_eq!(got.dims(), [4, 32]);
            assert_close(&format!("silu_gate {half:?}"), got, &want);
        }

        // residual_add at tau 0.6.
        let f = tensor(b, [4, 64], 6);
        let fs = f64s(&data(256, 6));
        let d = (1.0f64 + 0.36).sqrt();
        let want: Vec<f64> = fs
            .iter()
            .zip(&xs)
            .map(|(f, s)| 0.6 / d * f + s / d)
            .collect();
        assert_close("residual_add", b.residual_add(f, x, 0.6).unwrap(), &want);

        // sort_first: columns with ties and a NaN, NaN last (torch.sort's order), each column
        // against a host sort; `flat` is `[n, columns]` row-major.
        let sorts_columns = |flat: Vec<f32>, n: usize, what: &str| {
            let columns = flat.len() / n;
            let x = Tensor::<2>::from_data(TensorData::new(flat.clone(), [n, columns]), b.device());
            let sorted = values(b.sort_first(x).unwrap());
            for c in 0..columns {
                let mut want: Vec<f32> = (0..n).map(|l| flat[l * columns + c]).collect();
                want.sort_by(f32::total_cmp);
                let got: Vec<f64> = (0..n).map(|l| sorted[l * columns + c]).collect();
                assert_eq!(
                    format!("{got:?}"),
                    format!("{:?}", f64s(&want)),
                    "{what}, column {c}"
                );
            }
        };
        let mut col: Vec<f32> = vec![3.0, -1.0, f32::NAN, 3.0, 0.5, -7.0, 10.0, 0.0, 2.0];
        let mut grid = Vec::new();
        for c in 0..4 {
            col.rotate_left(c);
            grid.push(col.clone());
        }
        let flat: Vec<f32> = (0..9)
            .flat_map(|l| grid.iter().map(move |c| c[l]))
            .collect();
        sorts_columns(flat, 9, "9 values");
        // Columns longer than a GPU kernel holds per thread (40 > 32): the network there.
        let mut long = data(120, 7);
        long[5] = f32::NAN;
        long[7] = long[10];
        sorts_columns(long, 40, "40 values");
    }
);

/// Grouped attention in f64 from the definitions, over fused projections `qkv` of `n`
/// sequences of `s` elements: RMSNorm'd heads (weights `wq`, `wk`, ε 1e-6), queries times
/// `per_dim · c`, the rotation of `rot` (cos, sin with rotate-half's sign, xPos scale) on the
/// first `rotated` dimensions, scores over `divisor`, `blocked(seq, i, j)` masked.
/// Rotated dimensions, cos, sin (rotate-half's sign folded in) and the xPos scale, `[S, w]`.
type Rotation<'a> = (usize, &'a [f64], &'a [f64], &'a [f64]);

/// A mask's name, the mask, and which pairs it blocks (sequence, query, key).
type MaskCase = (&'static str, Mask, Box<dyn Fn(usize, usize, usize) -> bool>);

struct Reference<'a> {
    qkv: &'a [f64],
    s: usize,
    heads: Heads,
    norm: Option<(&'a [f64], &'a [f64])>,
    per_dim: Option<(&'a [f64], f64)>,
    rot: Option<Rotation<'a>>,
    divisor: f64,
}

impl Reference<'_> {
    fn head(&self, seq: usize, pos: usize, offset: usize, query: bool) -> Vec<f64> {
        let h = self.heads;
        let width = h.fused_width();
        let at = (seq * self.s + pos) * width + offset;
        let mut y = self.qkv[at..at + h.qk].to_vec();
        if let Some((wq, wk)) = self.norm {
            y = rms(&y, Some(if query { wq } else { wk }), 1e-6);
        }
        if let (true, Some((m, c))) = (query, self.per_dim) {
            y.iter_mut().zip(m).for_each(|(v, m)| *v *= m * c);
        }
        if let Some((w, cos, sin, scale)) = self.rot {
            let at = pos * w;
            for j in (0..w).step_by(2) {
                let (a, b) = (y[j], y[j + 1]);
                y[j] = a * cos[at + j] - b * sin[at + j + 1];
                y[j + 1] = b * cos[at + j] + a * sin[at + j + 1];
            }
            for m in 0..w {
                y[m] = if query {
                    y[m] * scale[at + m]
                } else {
                    y[m] / scale[at + m]
                };
            }
        }
        y
    }

    fn run(&self, n: usize, blocked: impl Fn(usize, usize, usize) -> bool) -> Vec<f64> {
        let h = self.heads;
        let per = h.heads / h.groups;
        let mut out = vec![0.0; n * self.s * h.heads * h.v];
        for seq in 0..n {
            for head in 0..h.heads {
                let g = head / per;
                for i in 0..self.s {
                    let q = self.head(seq, i, head * h.qk, true);
                    let scores: Vec<f64> = (0..self.s)
                        .map(|j| match blocked(seq, i, j) {
                            true => f64::NEG_INFINITY,
                            false => {
                                let k = self.head(seq, j, (h.heads + g) * h.qk, false);
                                q.iter().zip(&k).map(|(a, b)| a * b).sum::<f64>() / self.divisor
                            }
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|v| (v - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    let width = h.fused_width();
                    for (j, e) in e.iter().enumerate() {
                        let at = (seq * self.s + j) * width + (h.heads + h.groups) * h.qk + g * h.v;
                        for c in 0..h.v {
                            out[((seq * self.s + i) * h.heads + head) * h.v + c] +=
                                e / total * self.qkv[at + c];
                        }
                    }
                }
            }
        }
        out
    }
}

on_backends!(
    attention_matches_f64,
    [
        ndarray,
        ndarray_portable,
        ndarray_burn,
        flex,
        wgpu,
        fallback,
        layers_forced
    ],
    |b| {
        let b = &*b;
        let (n, s) = (3, 5);
        let heads = Heads {
            heads: 4,
            groups: 2,
            qk: 8,
            v: 6,
        };
        let width = heads.fused_width();
        let qkv = tensor(b, [n, s, width], 11);
        let qkv64 = f64s(&data(n * s * width, 11));
        let (wq, wk, pd) = (tensor(b, [8], 12), tensor(b, [8], 13), tensor(b, [8], 14));
        let (wq64, wk64, pd64) = (f64s(&data(8, 12)), f64s(&data(8, 13)), f64s(&data(8, 14)));
        // Rotary over the first 4 dimensions at positions 3..8, with an xPos-like scale.
        let rotated = 4;
        let angles: Vec<f32> = (3..3 + s)
            .flat_map(|m| (0..rotated).map(move |j| m as f32 / 10f32.powi((j / 2) as i32)))
            .collect();
        let scales: Vec<f32> = (0..s * rotated).map(|i| 1.0 + 0.01 * i as f32).collect();
        let rotary = Rotary::new(&angles, Some(&scales), [s, rotated], b.device()).unwrap();
        let cos: Vec<f64> = angles.iter().map(|a| f64::from(a.cos())).collect();
        let sin: Vec<f64> = angles.iter().map(|a| f64::from(a.sin())).collect();
        let scale64 = f64s(&scales);
        let reference = Reference {
            qkv: &qkv64,
            s,
            heads,
            norm: Some((&wq64, &wk64)),
            per_dim: Some((&pd64, 0.52)),
            rot: Some((rotated, &cos, &sin, &scale64)),
            divisor: 8.0,
        };
        // Groups per sequence: sequence 1 blocks pairs across ids [0, 0, 1, 1, 0].
        let ids: Vec<i64> = (0..n * s)
            .map(|i| i64::from(i / s == 1 && (2..4).contains(&(i % s))))
            .collect();
        let ids_t = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [n, s]), b.device());
        let groups: Tensor<4, Bool> = ids_t
            .clone()
            .reshape([n, 1, s, 1])
            .not_equal(ids_t.reshape([n, 1, 1, s]));
        let cases: [MaskCase; 4] = [
            ("causal", Mask::Causal, Box::new(|_, i, j| j > i)),
            // Every key written, the queries all of them: the causal mask.
            ("cache", Mask::Cache { len: s }, Box::new(|_, i, j| j > i)),
            (
                "groups",
                Mask::Blocked(groups),
                Box::new(move |q, i, j| ids[q * s + i] != ids[q * s + j]),
            ),
            ("none", Mask::None, Box::new(|_, _, _| false)),
        ];
        for (name, mask, blocked) in cases {
            let spec = AttentionSpec {
                heads,
                divisor: 8.0,
                qk_norm: Some(QkNorm {
                    query: Some(&wq),
                    key: Some(&wk),
                    eps: 1e-6,
                }),
                query_scale: Some((&pd, 0.52)),
                rotary: Some(&rotary),
                mask,
            };
            let got = b.attention(qkv.clone(), &spec).unwrap();
            assert_eq!(got.dims(), [n, s, heads.heads * heads.v]);
            assert_close(
                &format!("attention ({name})"),
                got,
                &reference.run(n, blocked),
            );
        }
        // Plain: no norms, no scale, no rotation.
        let plain = Reference {
            norm: None,
            per_dim: None,
            rot: None,
            ..reference
        };
        let spec = AttentionSpec {
            heads,
            divisor: 8.0,
            qk_norm: None,
            query_scale: None,
            rotary: None,
            mask: Mask::Causal,
        };
        let got = b.attention(qkv, &spec).unwrap();
        assert_close("attention (plain)", got, &plain.run(n, |_, i, j| j > i));
    }
);

on_backends!(
    attention_heads_match_f64,
    [ndarray, ndarray_burn, wgpu, fallback, layers_forced],
    |b| {
        let b = &*b;
        let (n, s) = (2, 3);
        // (qk, rotated, xPos, norm weights, norm, query scale): whole and partial rotations,
        // weighted and unweighted norms, Toto 1.0's heads (no norm, no scale), a scale without a
        // norm, and heads wider than 32 values (48: a cube of 64 threads, 16 of them padding).
        let cases = [
            (10, 10, false, true, true, true),
            (10, 6, true, false, true, true),
            (10, 6, false, true, true, true),
            (10, 10, true, false, false, false),
            (48, 32, true, false, false, true),
            (48, 48, false, true, true, false),
        ];
        for (qk, rotated, xpos, weighted, norm, scaled) in cases {
            let heads = Heads {
                heads: 6,
                groups: 3,
                qk,
                v: 4,
            };
            let (hq, g) = (heads.heads, heads.groups);
            let width = heads.fused_width();
            let qkv = tensor(b, [n, s, width], 21);
            let qkv64 = f64s(&data(n * s * width, 21));
            let (wq, wk, pd) = (
                tensor(b, [qk], 22),
                tensor(b, [qk], 23),
                tensor(b, [qk], 24),
            );
            let (wq64, wk64, pd64) = (
                f64s(&data(qk, 22)),
                f64s(&data(qk, 23)),
                f64s(&data(qk, 24)),
            );
            let ones = vec![1.0; qk];
            let table = |salt: usize| -> Vec<f32> {
                let d = data(s * rotated, salt);
                d.iter().map(|x| 1.0 + x / 4.0).collect()
            };
            let angles: Vec<f32> = table(25).chunks(2).flat_map(|p| [p[0], p[0]]).collect();
            let scales = table(26);
            let scales = xpos.then_some(&scales[..]);
            let rotary = Rotary::new(&angles, scales, [s, rotated], b.device()).unwrap();
            let cos: Vec<f64> = angles.iter().map(|a| f64::from(a.cos())).collect();
            let sin: Vec<f64> = angles.iter().map(|a| f64::from(a.sin())).collect();
            let scale64 = scales.map_or(vec![1.0; s * rotated], f64s);
            let (rq, rk) = match weighted {
                true => (&wq64[..], &wk64[..]),
                false => (&ones[..], &ones[..]),
            };
            let reference = Reference {
                qkv: &qkv64,
                s,
                heads,
                norm: norm.then_some((rq, rk)),
                per_dim: scaled.then_some((&pd64[..], 0.75)),
                rot: Some((rotated, &cos, &sin, &scale64)),
                divisor: 1.0,
            };
            let spec = AttentionSpec {
                heads,
                divisor: 1.0,
                qk_norm: norm.then_some(QkNorm {
                    query: weighted.then_some(&wq),
                    key: weighted.then_some(&wk),
                    eps: 1e-6,
                }),
                query_scale: scaled.then_some((&pd, 0.75)),
                rotary: Some(&rotary),
                mask: Mask::None,
            };
            let (q, k, v) = b.attention_heads(qkv.clone(), &spec).unwrap();
            assert_eq!(q.dims(), [n, hq, s, qk]);
            assert_eq!(k.dims(), [n, g, s, qk]);
            assert_eq!(v.dims(), [n, g, s, 4]);
            // `[N, heads, S, d]` order.
            let heads_of = |count: usize, offset: usize, query: bool| -> Vec<f64> {
                (0..n)
                    .flat_map(|seq| (0..count).map(move |h| (seq, h)))
                    .flat_map(|(seq, h)| (0..s).map(move |i| (seq, h, i)))
                    .flat_map(|(seq, h, i)| reference.head(seq, i, offset + h * qk, query))
                    .collect()
            };
            let what = format!(
                "attention_heads (qk {qk}, rotated {rotated}, xPos {xpos}, weighted {weighted}, \
                 norm {norm}, scaled {scaled})"
            );
            assert_close(&format!("{what}: queries"), q, &heads_of(hq, 0, true));
            assert_close(&format!("{what}: keys"), k, &heads_of(g, hq * qk, false));
            let values: Vec<f64> = (0..n)
                .flat_map(|seq| (0..g).map(move |g| (seq, g)))
                .flat_map(|(seq, g)| (0..s).map(move |i| (seq, g, i)))
                .flat_map(|(seq, gi, i)| {
                    let at = (seq * s + i) * width + (hq + g) * qk + gi * 4;
                    qkv64[at..at + 4].to_vec()
                })
                .collect();
            assert_close(&format!("{what}: values"), v, &values);
        }
    }
);

/// `softmax(q·kᵀ / divisor) · v` in f64 of `q` (`[n, H, S, qk]`) over `k` and `v`
/// (`[n, G, S_kv, d]`, head `h` reading group `h / (H/G)`), query `i` of sequence `seq` seeing
/// key `j` where `open(seq, i, j)`; NaN for a query that sees no key, as burn's softmax.
fn attention_core_f64(
    (q, k, v): (&[f32], &[f32], &[f32]),
    [n, h, g, s, skv, qk, dv]: [usize; 7],
    divisor: f64,
    open: impl Fn(usize, usize, usize) -> bool,
) -> Vec<f64> {
    let (q, k, v) = (f64s(q), f64s(k), f64s(v));
    let mut want = vec![f64::NAN; n * h * s * dv];
    for seq in 0..n {
        for head in 0..h {
            let group = head / (h / g);
            for i in 0..s {
                let query = &q[((seq * h + head) * s + i) * qk..][..qk];
                let seen: Vec<usize> = (0..skv).filter(|&j| open(seq, i, j)).collect();
                if seen.is_empty() {
                    continue;
                }
                let scores: Vec<f64> = seen
                    .iter()
                    .map(|&j| {
                        let key = &k[((seq * g + group) * skv + j) * qk..][..qk];
                        query.iter().zip(key).map(|(a, b)| a * b).sum::<f64>() / divisor
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = e.iter().sum();
                let out = &mut want[((seq * h + head) * s + i) * dv..][..dv];
                out.fill(0.0);
                for (e, &j) in e.iter().zip(&seen) {
                    let value = &v[((seq * g + group) * skv + j) * dv..][..dv];
                    out.iter_mut()
                        .zip(value)
                        .for_each(|(o, x)| *o += e / total * x);
                }
            }
        }
    }
    want
}

on_backends!(
    attention_core_over_a_cache_matches_f64,
    [
        ndarray,
        ndarray_portable,
        ndarray_burn,
        flex,
        wgpu,
        fallback,
        layers_forced
    ],
    |b| {
        // A fixed-capacity cache of 7 entries, the first `len` written: queries are the last
        // `S` written (query i sees keys 0..=len − S + i); the unwritten entries hold values
        // that would dominate any score or sum they entered.
        let b = &*b;
        // Then: the most queries wgpu's cache kernel serves (16) and one more (its
        // composition), over a larger buffer; a cache of more keys than the kernel's 32
        // threads per row, with heads wider than 32 (its output columns split over threads);
        // and 16,384 query rows over 40 keys, which wgpu serves with a thread per row.
        let (h, g) = (4, 2);
        let t = |x: Vec<f32>, shape: [usize; 4]| {
            Tensor::<4>::from_data(TensorData::new(x, shape), b.device())
        };
        let core = |(q, k, v), [n, h, g, s, cap, qk, dv]: [usize; 7], mask: &Mask| {
            b.attention_core(
                t(q, [n, h, s, qk]),
                t(k, [n, g, cap, qk]),
                t(v, [n, g, cap, dv]),
                1.5,
                mask,
            )
            .unwrap()
        };
        for (n, s, len, cap, qk, dv) in [
            (2, 1, 1, 7, 3, 2),
            (2, 1, 4, 7, 3, 2),
            (2, 3, 5, 7, 3, 2),
            (2, 2, 7, 7, 3, 2),
            (2, 16, 20, 24, 3, 2),
            (2, 17, 20, 24, 3, 2),
            (2, 5, 75, 80, 40, 33),
            (256, 16, 40, 44, 3, 2),
        ] {
            let q = data(n * h * s * qk, 21);
            let mut k = data(n * g * cap * qk, 22);
            let mut v = data(n * g * cap * dv, 23);
            for (x, d) in [(&mut k, qk), (&mut v, dv)] {
                for (at, x) in x.iter_mut().enumerate() {
                    if (at / d) % cap >= len {
                        *x = 1e3;
                    }
                }
            }
            let dims = [n, h, g, s, cap, qk, dv];
            let want = attention_core_f64((&q, &k, &v), dims, 1.5, |_, i, j| j + s < len + i + 1);
            let got = core((q, k, v), dims, &Mask::Cache { len });
            assert_eq!(got.dims(), [n, h, s, dv]);
            assert_close(&format!("attention_core (S {s}, len {len})"), got, &want);
        }
        // A blocked mask (`[n, 1, S, S_kv]`, per sequence, broadcast over heads) over a cache:
        // causal over the written entries and, besides, every third key per sequence and query
        // (never key 0); and one query that sees no key, which gets NaN as burn's softmax
        // gives it. More keys than the kernel's threads per row, heads wider than 32; then
        // 24,576 query rows (a thread per row on wgpu).
        for (n, qk, dv) in [(2, 40, 33), (2048, 8, 4)] {
            let (s, len, cap) = (3, 38, 41);
            let open = |seq: usize, i: usize, j: usize| {
                let causal = j + s <= i + len;
                causal && (j == 0 || (j + i + seq) % 3 != 1) && !(seq == 1 && i == 2)
            };
            let q = data(n * h * s * qk, 31);
            let (k, v) = (data(n * g * cap * qk, 32), data(n * g * cap * dv, 33));
            let dims = [n, h, g, s, cap, qk, dv];
            let want = attention_core_f64((&q, &k, &v), dims, 1.5, open);
            let blocked: Vec<bool> = (0..n * s * cap)
                .map(|at| !open(at / (s * cap), at / cap % s, at % cap))
                .collect();
            let blocked =
                Tensor::<4, Bool>::from_data(TensorData::new(blocked, [n, 1, s, cap]), b.device());
            let got = core((q, k, v), dims, &Mask::Blocked(blocked));
            assert_close(&format!("attention_core, blocked mask (n {n})"), got, &want);
        }
        // More queries than written entries, or more written entries than keys: refused.
        let (n, cap, qk, dv) = (2, 7, 3, 2);
        for (s, len) in [(3, 2), (1, 8)] {
            let err = b
                .attention_core(
                    tensor(b, [n, h, s, qk], 1),
                    tensor(b, [n, g, cap, qk], 2),
                    tensor(b, [n, g, cap, dv], 3),
                    1.0,
                    &Mask::Cache { len },
                )
                .unwrap_err();
            assert!(err.to_string().contains("cache mask"), "{err}");
        }
    }
);

// A product in half precision (the weight stored in f16, `Affine::computed_in`): a few rows
// run in f32 against the widened weight (within f32 rounding of the exact product of the f16
// weight: ~1e-6 of the largest output over 512 terms), and more multiply-adds than the GPU
// widens for keep the f16 product (its input rounded to f16, 2^-11 relative: an error well
// above f32's, within f16's). The exact product is f64 over the f16 weight's values.
on_backends!(
    half_precision_products_widen_few_rows,
    [wgpu, fallback],
    |b| {
        use burn::tensor::{DType, FloatDType};
        let b = &*b;
        if !b.device().supports_dtype(DType::F16) {
            eprintln!("{}: no f16 arithmetic", b.name());
            return;
        }
        let (k, n) = (512, 512);
        let w = tensor(b, [k, n], 1).cast(FloatDType::F16);
        let w64 = values(w.clone());
        let prepared = Prepared::default();
        // Rows 0, 61, 122, … of `rows` against f64; the largest error relative to the largest |y|.
        let error = |rows: usize| {
            let x = tensor(b, [rows, k], 2);
            let x64 = values(x.clone());
            let affine = Affine::new(&w, None, 1.0, &prepared).computed_in(FloatDType::F16);
            let y = values(b.linear(x, affine).unwrap());
            let (mut err, mut scale) = (0.0f64, 0.0f64);
            for r in (0..rows).step_by(61) {
                for c in 0..n {
                    let want: f64 = (0..k).map(|i| x64[r * k + i] * w64[i * n + c]).sum();
                    err = err.max((y[r * n + c] - want).abs());
                    scale = scale.max(want.abs());
                }
            }
            err / scale
        };
        let few = error(8);
        assert!(few <= 1e-5, "8 rows: relative error {few:e}");
        // 2,056 · 512 · 512 multiply-adds: more than 2^29.
        let many = error(2056);
        eprintln!(
            "{}: relative error {few:.1e} (8 rows), {many:.1e} (2,056 rows)",
            b.name()
        );
        assert!(
            (1e-4..=2e-2).contains(&many),
            "2,056 rows: relative error {many:e}"
        );
    }
);

on_backends!(
    bad_layer_arguments_are_refused_alike,
    [ndarray, ndarray_burn, flex, wgpu, fallback, layers_forced],
    |b| {
        let b = &*b;
        let prepared = Prepared::default();
        let w = tensor(b, [5, 3], 1);
        let input = |e: Error, op: Op| match e {
            Error::Input { what, kind, reason } => {
                assert_eq!(what, op.name(), "{reason}");
                assert_eq!(kind, toto_fallback::InputKind::Shape, "{reason}");
                reason
            }
            other => panic!("{op}: {other}"),
        };
        let reason = input(
            b.linear(tensor(b, [2, 4], 0), Affine::new(&w, None, 1.0, &prepared))
                .unwrap_err(),
            Op::Linear,
        );
        assert!(reason.contains("5 inputs"), "{reason}");
        let bias = tensor(b, [4], 2);
        input(
            b.linear(
                tensor(b, [2, 5], 0),
                Affine::new(&w, Some(&bias), 1.0, &prepared),
            )
            .unwrap_err(),
            Op::Linear,
        );
        input(
            b.rms_norm(tensor(b, [2, 5], 0), Some(&tensor(b, [4], 3)), 1e-6)
                .unwrap_err(),
            Op::RmsNorm,
        );
        input(
            b.silu_gate(tensor(b, [2, 5], 0), SiluHalf::First)
                .unwrap_err(),
            Op::SiluGate,
        );
        input(
            b.residual_add(tensor(b, [2, 5], 0), tensor(b, [5, 2], 1), 0.5)
                .unwrap_err(),
            Op::ResidualAdd,
        );
        let heads = Heads {
            heads: 4,
            groups: 3,
            qk: 2,
            v: 2,
        };
        let spec = AttentionSpec {
            heads,
            divisor: 1.0,
            qk_norm: None,
            query_scale: None,
            rotary: None,
            mask: Mask::None,
        };
        let reason = input(
            b.attention(tensor(b, [1, 2, 20], 0), &spec).unwrap_err(),
            Op::Attention,
        );
        assert!(reason.contains("groups must divide"), "{reason}");
        let spec = AttentionSpec {
            heads: Heads {
                heads: 2,
                groups: 1,
                qk: 2,
                v: 2,
            },
            mask: Mask::Blocked(Tensor::<4, Bool>::empty([1, 1, 3, 3], b.device())),
            ..spec
        };
        let reason = input(
            b.attention(tensor(b, [1, 2, 8], 0), &spec).unwrap_err(),
            Op::Attention,
        );
        assert!(reason.contains("mask"), "{reason}");
        let q = tensor(b, [1, 2, 3, 4], 0);
        let reason = input(
            b.attention_core(
                q,
                tensor(b, [1, 1, 5, 3], 1),
                tensor(b, [1, 1, 5, 2], 2),
                1.0,
                &Mask::Causal,
            )
            .unwrap_err(),
            Op::AttentionCore,
        );
        assert!(reason.contains("do not fit"), "{reason}");
        let q = tensor(b, [1, 2, 3, 4], 0);
        let reason = input(
            b.attention_core(
                q,
                tensor(b, [1, 1, 5, 4], 1),
                tensor(b, [1, 1, 5, 2], 2),
                1.0,
                &Mask::Causal,
            )
            .unwrap_err(),
            Op::AttentionCore,
        );
        assert!(reason.contains("causal"), "{reason}");
        let err = Rotary::new(&[0.0; 6], None, [2, 3], b.device()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Input {
                    what: "Rotary::new",
                    ..
                }
            ),
            "{err}"
        );
    }
);

#[test]
fn forwarded_layer_ops_are_reported() {
    let Some(b) = crate::common::layers_forced(1) else {
        return;
    };
    let b = &*b;
    let prepared = Prepared::default();
    let w = tensor(b, [6, 4], 1);
    let y = b
        .linear(tensor(b, [3, 6], 2), Affine::new(&w, None, 1.0, &prepared))
        .unwrap();
    assert_eq!(y.device(), *b.device());
    let z = b.rms_norm(y, None, 1e-6).unwrap();
    assert_eq!(z.dims(), [3, 4]);
    let report = b.report();
    let linear = report.op(Op::Linear);
    assert_eq!((linear.native.calls, linear.forwarded.calls), (0, 1));
    // x (18 values) and the weight (24) crossed to the CPU, the product (12) back.
    assert_eq!(linear.forwarded.bytes_to_cpu, 4 * (18 + 24));
    assert_eq!(linear.forwarded.bytes_to_gpu, 4 * 12);
    assert_eq!(report.op(Op::RmsNorm).forwarded.calls, 1);
}
