#!/usr/bin/env python3
"""Reference quantiles of Gamma, Chi2 and StudentT for the crate's tests, computed with mpmath.

Writes tests/fixtures/quantiles/reference.csv. Every parameter and probability is first rounded
to the nearest f32 (the crate receives f32 values), and the truth is computed at that exact value
with 50 significant digits. Deterministic: rerunning it rewrites the same file.

    python3 scripts/quantile_reference.py

Columns: distribution, parameter (Gamma: concentration at rate 1; Chi2: df; StudentT: df at
loc 0, scale 1), p, quantile. Parameter and p are Python's repr of the f64 holding the f32.
The quantile has 17 significant digits; "inf" / "-inf" where its magnitude exceeds f32::MAX,
and "0" at StudentT's p = 1/2. Decimals below f32's normal range (Gamma at small
concentration and p) are written as they are, e.g. 1.1e-600.
"""

import os
import struct

import mpmath
from mpmath import mp, mpf

mp.dps = 50
F32_MAX = mpf(struct.unpack("f", struct.pack("I", 0x7F7FFFFF))[0])
STEPS = 200  # bisection halvings: brackets below are < 2^11 wide, so 2^-189 in the end


def f32(x):
    """The f32 nearest to x, as a Python float."""
    return struct.unpack("f", struct.pack("f", x))[0]


P_NOMINAL = [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999, 0.9999,
             1 - 1e-5, 1 - 1e-6]
GAMMA_CONCENTRATIONS = [0.01, 0.1, 0.5, 1.0, 2.5, 10.0, 100.0]
CHI2_DFS = [0.2, 1.0, 3.0, 30.0, 200.0]
STUDENT_DFS = [0.1, 0.5, 1.0, 2.5, 9.9, 10.0, 30.0, 1e3, 1e6]


def bisect(below, lo, hi):
    """The root of a monotone predicate on [lo, hi]: below(m) is true where the root is above m."""
    lo, hi = mpf(lo), mpf(hi)
    for _ in range(STEPS):
        mid = (lo + hi) / 2
        if below(mid):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def gamma_quantile(a, p):
    """x with P(a, x) = p (rate 1), by bisection in ln x; Q(a, x) = 1 - p on the upper half."""
    a, p = mpf(a), mpf(p)
    if p <= mpf(1) / 2:
        u = bisect(lambda u: mpmath.gammainc(a, 0, mpmath.exp(u), regularized=True) < p,
                   -2000 / a, 10)
    else:
        q = 1 - p
        u = bisect(lambda u: mpmath.gammainc(a, mpmath.exp(u), mpmath.inf, regularized=True) > q,
                   -2000 / a, 10)
    return mpmath.exp(u)


def student_quantile(df, p):
    """t with F(t) = p for the standard StudentT(df), by bisection in ln|t| of the tail
    1/2 I_{df/(df+t^2)}(df/2, 1/2)."""
    df, p = mpf(df), mpf(p)
    if p == mpf(1) / 2:
        return mpf(0)
    tail = min(p, 1 - p)

    def below(s):  # true where |t| > e^s, i.e. the tail at e^s is still above `tail`
        t2 = mpmath.exp(2 * s)
        x = df / (df + t2)
        return mpmath.betainc(df / 2, mpf(1) / 2, 0, x, regularized=True) / 2 > tail

    t = mpmath.exp(bisect(below, -60, 1500))
    return -t if p < mpf(1) / 2 else t


def fmt(q):
    if abs(q) > F32_MAX:
        return "inf" if q > 0 else "-inf"
    if q == 0:
        return "0"
    return mpmath.nstr(q, 17, min_fixed=-4, max_fixed=17)


def main():
    ps = [f32(p) for p in P_NOMINAL]
    rows = []
    for a in GAMMA_CONCENTRATIONS:
        a = f32(a)
        rows += [("Gamma", a, p, gamma_quantile(a, p)) for p in ps]
    for df in CHI2_DFS:
        df = f32(df)
        # Chi2(df) = Gamma(df / 2, rate 1/2) = 2 Gamma(df / 2, 1); df / 2 is exact in f32.
        rows += [("Chi2", df, p, 2 * gamma_quantile(df / 2, p)) for p in ps]
    for df in STUDENT_DFS:
        df = f32(df)
        rows += [("StudentT", df, p, student_quantile(df, p)) for p in ps]
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "tests", "fixtures", "quantiles", "reference.csv")
    with open(out, "w") as f:
        f.write("# Made by scripts/quantile_reference.py with mpmath %s at %d digits.\n"
                % (mpmath.__version__, mp.dps))
        f.write("distribution,parameter,p,quantile\n")
        for name, param, p, q in rows:
            f.write("%s,%r,%r,%s\n" % (name, param, p, fmt(q)))


if __name__ == "__main__":
    main()
