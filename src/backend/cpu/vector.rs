//! Vector math on host slices: one branch-free polynomial `exp` and the SiLU forms built on it,
//! compiled for the instruction set [`dispatch`](super::dispatch) picks.

use super::dispatch::{Target, map1, map2};

/// `x ↦ eˣ` over a slice.
pub(crate) fn exp_in_place(target: Target, values: &mut [f32]) {
    map1(target, values, exp_lane);
}

/// SiLU in place, times `scale`: `x ↦ x·σ(x)·scale`.
pub(crate) fn silu_in_place(target: Target, values: &mut [f32], scale: f32) {
    map1(target, values, |x| x / (1.0 + exp_lane(-x)) * scale);
}

/// The gated unit `out ← out · a·σ(a)` (`out` starts as the half that is not activated);
/// `out` and `a` have one length.
pub(crate) fn times_silu(target: Target, out: &mut [f32], a: &[f32]) {
    map2(target, out, a, |o, a| o * (a / (1.0 + exp_lane(-a))));
}

/// `eˣ` without branches, for loops the compiler vectorises: Cody–Waite reduction
/// `x = n ln 2 + r` (`|r| ≤ ln 2 / 2`), `eʳ` by its Taylor polynomial to `r⁷` (relative error
/// below 10⁻⁸), and `2ⁿ` as two exponent-field products so that results down to the subnormals
/// come out right. `x > 88.72` is `+∞`, `x < −104` is 0, NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_lane(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer (ties to even) held in the low mantissa bits,
    // read back by a bit cast (a float-to-int conversion would not vectorise: Rust's `as`
    // saturates lane by lane).
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(-104.0, 88.72);
    let t = c * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (c - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 / 2.0
        + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))));
    let er = 1.0 + (r + r * r * p);
    // n within [−150, 128] (NaN: garbage here, and `er` carries the NaN).
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let (n1, n2) = (n >> 1, n - (n >> 1));
    let two = |e: i32| f32::from_bits((e.wrapping_add(127) as u32) << 23);
    let y = er * two(n1) * two(n2);
    if x > 88.72 { f32::INFINITY } else { y }
}

#[cfg(test)]
mod tests {
    use super::super::dispatch::targets_here;
    use super::*;

    #[test]
    fn every_exp_this_cpu_runs_matches_libm() {
        // f64's exp is the oracle; 2001 points over the range a shifted logit or a SiLU input
        // takes, the edges of f32's range, and the special values.
        let mut xs: Vec<f32> = (0..2001).map(|i| -100.0 + 0.1 * i as f32).collect();
        xs.extend([
            -103.9,
            -87.5,
            -1e-30,
            0.0,
            1e-30,
            88.7,
            88.73,
            1e4,
            f32::NEG_INFINITY,
        ]);
        for isa in targets_here() {
            let mut got = xs.clone();
            exp_in_place(isa, &mut got);
            for (&x, &g) in xs.iter().zip(&got) {
                let want = f64::from(x).exp();
                let ulp = f64::from(f32::EPSILON) * want.max(f64::from(f32::MIN_POSITIVE));
                // Subnormal results: within one subnormal step (2^-149) instead.
                let tol = (4.0 * ulp).max(1.5e-45);
                let ok = match want > f64::from(f32::MAX) {
                    true => g == f32::INFINITY,
                    false => (f64::from(g) - want).abs() <= tol,
                };
                assert!(ok, "{isa:?}: exp({x}) = {g}, want {want}");
            }
            let mut nan = [f32::NAN; 9];
            exp_in_place(isa, &mut nan);
            assert!(
                nan.iter().all(|v| v.is_nan()),
                "{isa:?}: exp(NaN) = {nan:?}"
            );
        }
    }

    #[test]
    fn silu_forms_match_f64() {
        let xs: Vec<f32> = (0..801).map(|i| -40.0 + 0.1 * i as f32).collect();
        let silu = |x: f64| x / (1.0 + (-x).exp());
        for isa in targets_here() {
            let mut scaled = xs.clone();
            silu_in_place(isa, &mut scaled, 1.5);
            let mut gated: Vec<f32> = xs.iter().map(|x| 0.5 - x / 80.0).collect();
            times_silu(isa, &mut gated, &xs);
            for (i, &x) in xs.iter().enumerate() {
                let want = 1.5 * silu(f64::from(x));
                let got = f64::from(scaled[i]);
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{isa:?} {x}"
                );
                let want = (0.5 - f64::from(x) / 80.0) * silu(f64::from(x));
                let got = f64::from(gated[i]);
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{isa:?} {x}"
                );
            }
        }
    }
}
