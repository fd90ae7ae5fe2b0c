#!/usr/bin/python3
"""SciPy side of the drift benchmark (bench/monitoring/drift_bench.cc).

Writes the 20 numeric features the C++ benchmark reads (1,000,000 reference
rows and 100,000 current rows, float64 little-endian, feature-major:
reference.f64 holds feature 0's 1M values, then feature 1's, ...), then times
what Python does for the same comparison:

  scipy.stats.ks_2samp(ref[f], cur[f])              for the 20 features
  scipy.stats.wasserstein_distance(ref[f], cur[f])  for the 20 features
                                                    (Evidently's default
                                                    above 1000 reference rows)

Usage: /usr/bin/python3 bench/monitoring/scipy_drift.py [DIR]
  DIR defaults to /tmp/kervan_drift_bench; then run
  KERVAN_DRIFT_BENCH_DATA=DIR build-bench/bench/drift_bench
"""
import os
import sys
import time

import numpy as np
from scipy import stats

REF_ROWS = 1_000_000
CUR_ROWS = 100_000
FEATURES = 20


def feature(rng, f, n, current):
    """Feature f: five shapes, four variants each; the current data shifts
    every fifth feature a little so that the tests have something to find."""
    shift = 0.1 if current and f % 5 == 0 else 0.0
    kind = f % 5
    if kind == 0:
        x = rng.normal(0, 1, n)
    elif kind == 1:
        x = rng.lognormal(0, 0.5, n)
    elif kind == 2:
        x = rng.uniform(0, 1, n)
    elif kind == 3:
        x = rng.exponential(1, n)
    else:
        x = rng.poisson(3, n).astype(np.float64)  # ties
    return x + shift


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/kervan_drift_bench"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(2024)
    ref = np.stack([feature(rng, f, REF_ROWS, False) for f in range(FEATURES)])
    cur = np.stack([feature(rng, f, CUR_ROWS, True) for f in range(FEATURES)])
    ref.astype("<f8").tofile(os.path.join(out, "reference.f64"))
    cur.astype("<f8").tofile(os.path.join(out, "current.f64"))
    print(f"wrote {FEATURES} features: {REF_ROWS} reference rows, {CUR_ROWS} current rows "
          f"to {out}")

    def timed(name, fn, repeats=3):
        best = float("inf")
        result = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = [fn(ref[f], cur[f]) for f in range(FEATURES)]
            best = min(best, time.perf_counter() - t0)
        print(f"{name:52s} {best * 1000:9.1f} ms (best of {repeats})")
        return result

    ks = timed("scipy.stats.ks_2samp x20 (1M vs 100k)", stats.ks_2samp)
    timed("scipy.stats.wasserstein_distance x20 (1M vs 100k)", stats.wasserstein_distance)
    print("KS statistics (first 5):", " ".join(f"{r.statistic:.6f}" for r in ks[:5]))
    print("KS p-values   (first 5):", " ".join(f"{r.pvalue:.3g}" for r in ks[:5]))


if __name__ == "__main__":
    main()
