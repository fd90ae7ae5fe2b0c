// Statistical tests and metrics behind drift detection and model-performance
// monitoring: pure functions over numbers (no I/O, no clock, no global
// state), safe to call from any number of threads at once. Nothing here
// knows about profiles, columns or HTTP; it depends only on core/result.h.
//
// Every function states the SciPy call it equals; tests/monitoring/
// scipy_compare.py checks the agreement (to 1e-9) against SciPy 1.10.
// Inputs never contain NaN unless a comment says otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace kervan::monitoring::stats {

// ---------------------------------------------------------------------------
// Two-sample Kolmogorov-Smirnov test (two-sided)

enum class KsMethod { kExact, kAsymptotic };
std::string_view KsMethodName(KsMethod m);  // "exact" | "asymptotic"

struct KsResult {
  double statistic = 0;  // sup |F1 - F2| of the right-continuous ECDFs, in [0, 1]
  double p_value = 1;    // P(D >= statistic) under the null hypothesis
  KsMethod method = KsMethod::kExact;
};

// Sample sizes up to which KsTest computes the exact p-value: the same
// switch as scipy.stats.ks_2samp(method='auto') (MAX_AUTO_N).
inline constexpr int64_t kKsExactLimit = 10000;

// The KS statistic of two sorted samples, as the integer numerator over
// lcm(n1, n2): D = max |c1 * (n2/g) - c2 * (n1/g)| / lcm, g = gcd(n1, n2),
// where c1, c2 count the values <= x; ties advance both sides together.
// REQUIRES: a and b sorted ascending, non-empty, n1 * n2 < 2^62.
int64_t KsStatisticNumerator(std::span<const double> a, std::span<const double> b);

// Two-sided KS test of two samples.
//   statistic == scipy.stats.ks_2samp(a, b).statistic
//   max(n1, n2) <= kKsExactLimit: method kExact,
//     p_value == scipy.stats.ks_2samp(a, b, method='exact').pvalue
//   otherwise: method kAsymptotic,
//     p_value == scipy.stats.kstwobign.sf(sqrt(en) * D), en = n1*n2/(n1+n2).
//     SciPy's own method='asymp' uses kstwo.sf(D, round(en)) (a finite-n
//     distribution at a rounded en); we deliberately do NOT match that: the
//     limiting distribution is what Evidently and the literature use, and the
//     two differ by O(1/sqrt(en)) only.
// REQUIRES: a and b sorted ascending, non-empty.
KsResult KsTestSorted(std::span<const double> a, std::span<const double> b);

// KsTestSorted with `n1` standing for the size of the sample that `a`
// approximates (a profile keeps evenly spaced order statistics of a larger
// reference): the statistic is computed from `a`, the p-value uses n1.
// REQUIRES: as KsTestSorted; n1 >= a.size().
KsResult KsTestSortedWithSize(std::span<const double> a, int64_t n1, std::span<const double> b);

// Copies, sorts, then KsTestSorted. REQUIRES: both non-empty.
KsResult KsTest(std::span<const double> a, std::span<const double> b);

// Exact two-sided p-value P(D >= h / lcm(n1, n2)) for samples of sizes n1,
// n2: the fraction of monotone lattice paths from (0,0) to (n1,n2) that
// leave the band |i*(n2/g) - j*(n1/g)| < h. O(n1 * band) time, O(min(n1,n2))
// memory; the band is narrow for the small D of undrifted data (10000 x
// 10000 at p ~ 2e-4: ~40 ms) and widest for large D (~0.5 s at 10000 x
// 10000, D = 0.5, -O2). == the p-value of scipy.stats.ks_2samp(method=
// 'exact') whose statistic rounds to h (h = round(D * lcm)).
// REQUIRES: n1, n2 >= 1, h >= 0.
double KsExactPValue(int64_t n1, int64_t n2, int64_t h);

// Kolmogorov's limiting survival function
//   Q(x) = 2 * sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)
// == scipy.special.kolmogorov(x) == scipy.stats.kstwobign.sf(x).
// Absolute error < 1e-15 over the whole range; Q(x) = 1 for x <= 0.
double KolmogorovSf(double x);

// ---------------------------------------------------------------------------
// Distances between samples or distributions

// Wasserstein-1 distance (the integral of |F_u - F_v|) of two samples with
// equal weights == scipy.stats.wasserstein_distance(u, v).
// REQUIRES: u and v sorted ascending, non-empty.
double WassersteinSorted(std::span<const double> u, std::span<const double> v);

// Population stability index of two binned distributions:
//   sum_i (c_i - r_i) * ln(c_i / r_i), r_i, c_i = bin share,
// where a share of 0 is replaced by `epsilon` (default kPsiEpsilon, as
// Evidently does) before the sum; shares are counts / total. 0 when either
// side has no counts. REQUIRES: equal sizes, counts >= 0.
inline constexpr double kPsiEpsilon = 1e-4;
double Psi(std::span<const double> reference_counts, std::span<const double> current_counts,
           double epsilon = kPsiEpsilon);

// Bin edges at the quantiles k/bins (k = 1 .. bins-1) of a sorted sample
// (linear interpolation, numpy.quantile's default). Bin i holds the values
// x with edges[i-1] <= x < edges[i] (the first and last bins are open).
// REQUIRES: sorted non-empty, bins >= 1. Returns bins-1 inner edges.
std::vector<double> QuantileEdges(std::span<const double> sorted, int bins);
// numpy.quantile(sorted, q) (linear). REQUIRES: sorted non-empty, q in [0,1].
double Quantile(std::span<const double> sorted, double q);
// Counts per bin for inner `edges` (as QuantileEdges): edges.size()+1 counts.
// `values` need not be sorted; NaN values are skipped.
std::vector<double> BinCounts(std::span<const double> values, std::span<const double> edges);

struct ChiSquareResult {
  double statistic = 0;
  double p_value = 1;
  int64_t dof = 0;
};

// Pearson's chi-square goodness of fit:
//   statistic = sum (o - e)^2 / e, p = chi2.sf(statistic, k - 1)
// == scipy.stats.chisquare(f_obs=observed, f_exp=expected) when
// sum(expected) == sum(observed) (scale the expected proportions to the
// observed total; SciPy rejects sums that differ). A bin with e == 0 and
// o > 0 gives an infinite statistic and p = 0 (SciPy: inf, 0).
// REQUIRES: equal sizes >= 1, values >= 0.
ChiSquareResult ChiSquare(std::span<const double> observed, std::span<const double> expected);

// Pearson's chi-square test of homogeneity: do two count vectors come from
// one distribution? The 2 x k contingency table [a; b] with expected counts
// row_total * column_total / total:
//   == scipy.stats.chi2_contingency([a, b], correction=False)
//      (statistic, p-value, dof = k' - 1)
// where k' counts the columns with a + b > 0 (columns with both zero are
// dropped first; SciPy rejects them). Unlike ChiSquare it accounts for the
// sampling noise of both sides, so a p < 0.05 rule fires for ~5% of
// same-distribution pairs whatever the reference size. p = 1 when k' <= 1
// or either side is empty. REQUIRES: equal sizes, values >= 0.
ChiSquareResult ChiSquareHomogeneity(std::span<const double> a, std::span<const double> b);

// Regularized upper incomplete gamma Q(a, x) == scipy.special.gammaincc(a, x)
// (series below x < a + 1, continued fraction above; ~1e-14 relative).
// REQUIRES: a > 0, x >= 0.
double GammaQ(double a, double x);
// chi2.sf(x, dof) == scipy.stats.chi2.sf(x, dof) == GammaQ(dof / 2, x / 2).
double ChiSquareSf(double x, double dof);

// Jensen-Shannon distance with natural logarithms:
//   sqrt((KL(p || m) + KL(q || m)) / 2), m = (p + q) / 2,
// after normalising p and q to sum 1
// == scipy.spatial.distance.jensenshannon(p, q). In [0, sqrt(ln 2)].
// REQUIRES: equal sizes, values >= 0, each sums to > 0.
double JensenShannon(std::span<const double> p, std::span<const double> q);

// ---------------------------------------------------------------------------
// Model performance

// Binary classification from labels (0/1) and scores (the probability of
// class 1); a score >= threshold predicts 1. A metric that is undefined
// for the data (precision without positive predictions, recall without
// positive labels, ROC AUC with one class only, anything on no rows) is
// nullopt, never NaN. F1 = 2TP / (2TP + FP + FN) (the harmonic mean of
// precision and recall where both exist, 0 when one of them is 0 or
// undefined while the other side has errors); nullopt only when every row is
// a true negative.
struct ClassificationMetrics {
  int64_t count = 0;
  int64_t positives = 0;  // labels == 1
  int64_t true_positives = 0, false_positives = 0, true_negatives = 0, false_negatives = 0;
  std::optional<double> accuracy, precision, recall, f1;
  // Rank-based, average ranks for tied scores:
  //   U / (n1 * n0) == scipy.stats.mannwhitneyu(s[y==1], s[y==0]).statistic / (n1 * n0)
  // == sklearn.metrics.roc_auc_score(y, s).
  std::optional<double> roc_auc;
};

// kInvalidArgument when sizes differ, a label is not 0/1 or a score is NaN.
core::Result<ClassificationMetrics> Classification(std::span<const int> labels,
                                                   std::span<const double> scores,
                                                   double threshold = 0.5);

// Regression errors; nullopt on no rows.
struct RegressionMetrics {
  int64_t count = 0;
  std::optional<double> mae, rmse;
};
// kInvalidArgument when sizes differ or a value is NaN.
core::Result<RegressionMetrics> Regression(std::span<const double> targets,
                                           std::span<const double> predictions);

}  // namespace kervan::monitoring::stats
