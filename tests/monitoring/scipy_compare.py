#!/usr/bin/python3
"""Compares Kervan's statistics (through stats_tool) with SciPy.

Usage: /usr/bin/python3 scipy_compare.py PATH/TO/stats_tool

Generates data with numpy over several seeds, computes the SciPy results,
runs stats_tool on the same data and asserts agreement to 1e-9 (absolute, or
relative for values above 1 such as chi-square statistics). Prints the
largest difference per statistic. Exit status 0 when everything agrees.

SciPy calls matched (see src/monitoring/stats.h):
  KS, max(n1, n2) <= 10000: scipy.stats.ks_2samp(a, b, method='exact')
  KS, larger:               ks_2samp(a, b).statistic and
                            scipy.stats.kstwobign.sf(sqrt(en) * D)
  Kolmogorov Q(x):          scipy.special.kolmogorov(x)
  incomplete gamma:         scipy.special.gammaincc(a, x)
  Wasserstein:              scipy.stats.wasserstein_distance(u, v)
  chi-square:               scipy.stats.chisquare(f_obs, f_exp)
  chi-square homogeneity:   scipy.stats.chi2_contingency([a, b], correction=False)
  Jensen-Shannon:           scipy.spatial.distance.jensenshannon(p, q)
  ROC AUC:                  scipy.stats.mannwhitneyu(pos, neg).statistic / (n1 n0)
  PSI:                      the formula in numpy (SciPy has none)
"""
import json
import math
import subprocess
import sys
from collections import defaultdict

import numpy as np
from scipy import special, stats
from scipy.spatial import distance

TOL = 1e-9


def ks_cases(rng):
    """(a, b, tag) pairs: exact-path sizes with and without ties, then
    asymptotic-path sizes above 10000."""
    out = []
    for n1, n2, shift in [(50, 70, 0.0), (50, 70, 0.6), (300, 300, 0.0), (300, 300, 0.3),
                          (1000, 2500, 0.0), (1000, 2500, 0.1), (17, 4, 0.0), (1, 9, 0.0)]:
        a = rng.normal(0, 1, n1)
        b = rng.normal(shift, 1, n2)
        out.append((a, b, "exact"))
        # Ties: values rounded to a coarse grid.
        out.append((np.round(a * 2) / 2, np.round(b * 2) / 2, "exact"))
    for n1, n2, shift in [(12000, 11000, 0.0), (20000, 3000, 0.05), (15000, 15000, 0.02)]:
        a = rng.normal(0, 1, n1)
        b = rng.normal(shift, 1.1, n2)
        out.append((a, b, "asymp"))
        out.append((np.round(a, 1), np.round(b, 1), "asymp"))
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    cases, expected = [], []  # expected: list of (name -> (value, key in result))

    def add(case, checks):
        cases.append(case)
        expected.append(checks)

    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        for a, b, mode in ks_cases(rng):
            ref = stats.ks_2samp(a, b, method="exact" if mode == "exact" else "auto")
            if mode == "exact":
                p = ref.pvalue
            else:
                en = len(a) * len(b) / (len(a) + len(b))
                p = stats.kstwobign.sf(math.sqrt(en) * ref.statistic)
            add({"op": "ks", "a": a.tolist(), "b": b.tolist()},
                {f"ks_{mode}.statistic": (ref.statistic, "statistic"),
                 f"ks_{mode}.p_value": (p, "p_value"),
                 f"ks_{mode}.method": ("exact" if mode == "exact" else "asymptotic", "method")})

        # Exact p-values straight from (n1, n2, h) over the whole range of D,
        # down to tiny p-values.
        for n1, n2 in [(5, 7), (20, 30), (40, 40), (64, 48), (100, 37)]:
            g = math.gcd(n1, n2)
            lcm = n1 // g * n2
            for h in sorted(set(rng.integers(1, lcm + 1, 6).tolist())):
                d = h / lcm
                # A pair of samples realising D = h/lcm is not needed: SciPy's
                # exact routine only sees (n1, n2, g, d).
                ok, _, p = stats._stats_py._attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
                assert ok
                add({"op": "ks_exact", "n1": n1, "n2": n2, "h": h},
                    {"ks_exact_table.p_value": (p, "p_value")})

        # Wasserstein, PSI, chi-square, Jensen-Shannon.
        for n1, n2 in [(10, 13), (500, 800), (20000, 5000)]:
            u = rng.normal(0, 1, n1)
            v = rng.standard_t(5, n2) * 1.3 + 0.2
            add({"op": "wasserstein", "u": u.tolist(), "v": v.tolist()},
                {"wasserstein": (stats.wasserstein_distance(u, v), "value")})
            add({"op": "wasserstein", "u": np.round(u).tolist(), "v": np.round(v).tolist()},
                {"wasserstein_ties": (stats.wasserstein_distance(np.round(u), np.round(v)),
                                      "value")})
        for k in (2, 5, 20, 300):
            probs = rng.dirichlet(np.ones(k))
            ref_counts = rng.multinomial(5000, probs).astype(float) + 1
            if k >= 5:  # a category neither side has, and one only the current has
                ref_counts[0] = 0
                ref_counts[1] = 0
                probs = probs.copy()
                probs[0] = 0
                probs /= probs.sum()
            # Half the cases from the same distribution (p-values spread over
            # (0, 1)), half from a perturbed one (small p-values).
            for cur_probs in (probs, 0.7 * probs + 0.3 * rng.dirichlet(np.ones(k))):
                cur_counts = rng.multinomial(800, cur_probs).astype(float)
                # Goodness of fit needs expected counts > 0 (SciPy: inf otherwise).
                fit_ref = np.maximum(ref_counts, 1)
                expected_counts = fit_ref / fit_ref.sum() * cur_counts.sum()
                chi = stats.chisquare(cur_counts, expected_counts)
                add({"op": "chisquare", "observed": cur_counts.tolist(),
                     "expected": expected_counts.tolist()},
                    {"chisquare.statistic": (chi.statistic, "statistic"),
                     "chisquare.p_value": (chi.pvalue, "p_value")})
                # Homogeneity: zero columns dropped, as the C++ side does.
                keep = (ref_counts + cur_counts) > 0
                ct = stats.chi2_contingency([ref_counts[keep], cur_counts[keep]],
                                            correction=False)
                add({"op": "chi2_contingency", "a": ref_counts.tolist(),
                     "b": cur_counts.tolist()},
                    {"chi2_contingency.statistic": (ct[0], "statistic"),
                     "chi2_contingency.p_value": (ct[1], "p_value"),
                     "chi2_contingency.dof": (float(ct[2]), "dof")})
                add({"op": "jensenshannon", "p": ref_counts.tolist(), "q": cur_counts.tolist()},
                    {"jensenshannon": (distance.jensenshannon(ref_counts, cur_counts), "value")})
                r = ref_counts / ref_counts.sum()
                c = cur_counts / cur_counts.sum()
                r = np.where(r == 0, 1e-4, r)
                c = np.where(c == 0, 1e-4, c)
                add({"op": "psi", "reference": ref_counts.tolist(), "current": cur_counts.tolist()},
                    {"psi": (float(np.sum((c - r) * np.log(c / r))), "value")})

        # ROC AUC against Mann-Whitney U, with and without ties.
        for n in (30, 1000, 20000):
            y = rng.integers(0, 2, n)
            s = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
            for scores in (s, np.round(s, 1)):
                pos, neg = scores[y == 1], scores[y == 0]
                u = stats.mannwhitneyu(pos, neg).statistic
                pred = scores >= 0.5
                tp = int(np.sum(pred & (y == 1)))
                fp = int(np.sum(pred & (y == 0)))
                fn = int(np.sum(~pred & (y == 1)))
                add({"op": "classification", "labels": y.tolist(), "scores": scores.tolist(),
                     "threshold": 0.5},
                    {"roc_auc": (u / (len(pos) * len(neg)), "roc_auc"),
                     "accuracy": (float(np.mean(pred == (y == 1))), "accuracy"),
                     "precision": (tp / (tp + fp), "precision"),
                     "recall": (tp / (tp + fn), "recall"),
                     "f1": (2 * tp / (2 * tp + fp + fn), "f1")})
            t = rng.normal(0, 3, n)
            p = t + rng.normal(0, 1, n)
            add({"op": "regression", "targets": t.tolist(), "predictions": p.tolist()},
                {"mae": (float(np.mean(np.abs(p - t))), "mae"),
                 "rmse": (float(np.sqrt(np.mean((p - t) ** 2))), "rmse")})

    # Special functions over their whole range.
    xs = np.concatenate([np.linspace(0.0, 3.5, 351), [0.01, 0.05, 0.2, 0.82, 0.999, 1.0, 1.001,
                                                       5.0, 6.0, 8.0]])
    add({"op": "kolmogorov", "x": xs.tolist()},
        {"kolmogorov": (special.kolmogorov(xs).tolist(), "values")})
    a = np.array([0.5, 1, 1.5, 2, 4.5, 10, 49.5, 100, 150, 499.5, 0.5, 3, 10, 200, 30, 2])
    x = np.array([0.1, 2, 0.7, 30, 5, 9, 60, 100, 140, 520, 40, 0.001, 11, 190, 45, 1e-8])
    add({"op": "gammaq", "a": a.tolist(), "x": x.tolist()},
        {"gammaq": (special.gammaincc(a, x).tolist(), "values")})

    proc = subprocess.run([tool], input=json.dumps({"cases": cases}), capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        print(f"stats_tool failed ({proc.returncode}): {proc.stderr}")
        return 1
    results = json.loads(proc.stdout)["results"]
    assert len(results) == len(cases)

    worst = defaultdict(float)
    counts = defaultdict(int)
    failures = []
    for i, (checks, got) in enumerate(zip(expected, results)):
        if "error" in got:
            failures.append(f"case {i} ({cases[i]['op']}): {got['error']}")
            continue
        for name, (want, key) in checks.items():
            have = got[key]
            if isinstance(want, str):
                counts[name] += 1
                if want != have:
                    failures.append(f"case {i} {name}: want {want}, got {have}")
                continue
            wants = want if isinstance(want, list) else [want]
            haves = have if isinstance(have, list) else [have]
            for w, h in zip(wants, haves):
                counts[name] += 1
                if h is None:
                    failures.append(f"case {i} {name}: want {w}, got null")
                    continue
                diff = abs(w - h)
                err = diff / abs(w) if abs(w) > 1 else diff
                worst[name] = max(worst[name], err)
                if not err <= TOL:
                    failures.append(f"case {i} {name}: want {w!r}, got {h!r} (diff {diff:.3g})")

    print(f"{'statistic':28s} {'values':>7s} {'largest difference':>20s}")
    for name in sorted(counts):
        print(f"{name:28s} {counts[name]:7d} {worst[name]:20.3g}")
    if failures:
        print(f"\n{len(failures)} disagreements beyond {TOL}:")
        for f in failures[:30]:
            print("  " + f)
        return 1
    print(f"\nall {sum(counts.values())} values agree with SciPy within {TOL} "
          "(absolute; relative above 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
