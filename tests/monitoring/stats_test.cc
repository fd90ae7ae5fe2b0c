// Statistical tests and metrics against hand-checked values (SciPy
// agreement over random data is scipy_compare.py's job).
#include "monitoring/stats.h"

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace kervan::monitoring::stats {
namespace {

// Binomial coefficient as a double, for counting lattice paths by brute force.
double Choose(int n, int k) {
  double r = 1;
  for (int i = 1; i <= k; ++i)
    r = r * (n - k + i) / i;
  return r;
}

// The fraction of all C(n1+n2, n1) orderings of two samples (no ties) whose
// KS statistic is >= D, by enumerating bit patterns: the p-value by definition.
double BruteForceKsP(int n1, int n2, double d) {
  const int n = n1 + n2;
  int64_t hits = 0;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    if (__builtin_popcount(mask) != n1)
      continue;
    int i = 0, j = 0;
    double best = 0;
    for (int k = 0; k < n; ++k) {
      if (mask & (1u << k))
        ++i;
      else
        ++j;
      best = std::max(best, std::abs(double(i) / n1 - double(j) / n2));
    }
    if (best >= d - 1e-12)
      ++hits;
  }
  return hits / Choose(n, n1);
}

TEST(Ks, StatisticOfTinyArrays) {
  // F1 jumps at 1,2,3; F2 at 4,5: the largest gap is 1 (all of a before b).
  KsResult r = KsTest(std::vector<double>{1, 2, 3}, std::vector<double>{4, 5});
  EXPECT_DOUBLE_EQ(r.statistic, 1.0);
  EXPECT_EQ(r.method, KsMethod::kExact);
  // All 10 orderings: only aaabb and bbaaa reach D = 1.
  EXPECT_NEAR(r.p_value, 2.0 / 10.0, 1e-15);

  // Interleaved: a = {1,3}, b = {2,4}: D = 1/2 at x = 1 and x = 3.
  r = KsTest(std::vector<double>{1, 3}, std::vector<double>{2, 4});
  EXPECT_DOUBLE_EQ(r.statistic, 0.5);
  EXPECT_NEAR(r.p_value, 1.0, 1e-15);  // every ordering of 2+2 has D >= 1/2
}

TEST(Ks, TiesAdvanceBothSides) {
  // At x = 1 both ECDFs jump together: F1 = 2/3, F2 = 1/2 -> 1/6, not 2/3.
  KsResult r = KsTest(std::vector<double>{1, 1, 2}, std::vector<double>{1, 3});
  EXPECT_NEAR(r.statistic, 0.5, 1e-15);  // at x = 2: 1 - 1/2
  r = KsTest(std::vector<double>{5, 5, 5}, std::vector<double>{5, 5});
  EXPECT_EQ(r.statistic, 0.0);
  EXPECT_EQ(r.p_value, 1.0);
}

TEST(Ks, ExactPValueMatchesEnumeration) {
  for (int n1 = 1; n1 <= 7; ++n1) {
    for (int n2 = 1; n2 <= 7; ++n2) {
      const int64_t g = std::gcd(n1, n2);
      const int64_t lcm = n1 / g * n2;
      for (int64_t h = 1; h <= lcm; ++h) {
        const double d = double(h) / double(lcm);
        EXPECT_NEAR(KsExactPValue(n1, n2, h), BruteForceKsP(n1, n2, d), 1e-12)
            << n1 << "x" << n2 << " h=" << h;
      }
    }
  }
  EXPECT_EQ(KsExactPValue(10, 20, 0), 1.0);
}

TEST(Ks, AsymptoticAboveTheExactLimit) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::vector<double> a(12000), b(300);
  for (double& x : a)
    x = normal(rng);
  for (double& x : b)
    x = normal(rng);
  KsResult r = KsTest(a, b);
  EXPECT_EQ(r.method, KsMethod::kAsymptotic);
  const double en = 12000.0 * 300.0 / 12300.0;
  EXPECT_DOUBLE_EQ(r.p_value, KolmogorovSf(std::sqrt(en) * r.statistic));
  // A sample size argument above the limit switches too, whatever a's size.
  KsResult approx =
      KsTestSortedWithSize(std::vector<double>{0, 1, 2}, 20000, std::vector<double>{0.5, 1.5});
  EXPECT_EQ(approx.method, KsMethod::kAsymptotic);
}

TEST(Kolmogorov, KnownValues) {
  EXPECT_NEAR(KolmogorovSf(1.0), 0.26999967167735456, 1e-15);
  EXPECT_NEAR(KolmogorovSf(0.5), 0.9639452436648751, 1e-15);
  EXPECT_NEAR(KolmogorovSf(1.36), 0.049485876755377876, 1e-15);  // near the 5% point
  EXPECT_EQ(KolmogorovSf(0.0), 1.0);
  EXPECT_EQ(KolmogorovSf(-1.0), 1.0);
  EXPECT_NEAR(KolmogorovSf(0.1), 1.0, 1e-15);
  EXPECT_NEAR(KolmogorovSf(3.0), 2 * std::exp(-18.0), 1e-20);
  // Both series agree where they meet.
  EXPECT_NEAR(KolmogorovSf(std::nextafter(1.0, 0.0)), KolmogorovSf(1.0), 1e-15);
}

TEST(Wasserstein, HandValues) {
  EXPECT_DOUBLE_EQ(WassersteinSorted(std::vector<double>{0}, std::vector<double>{3}), 3.0);
  // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.
  EXPECT_DOUBLE_EQ(WassersteinSorted(std::vector<double>{0, 1, 3}, std::vector<double>{5, 6, 8}),
                   5.0);
  // [0, 1] vs [0, 0, 1, 1] has the same ECDF: 0.
  EXPECT_DOUBLE_EQ(WassersteinSorted(std::vector<double>{0, 1}, std::vector<double>{0, 0, 1, 1}),
                   0.0);
  // [0, 2] vs [1]: |F| = 1/2 on [0,1), 1/2 on [1,2) -> 1.
  EXPECT_DOUBLE_EQ(WassersteinSorted(std::vector<double>{0, 2}, std::vector<double>{1}), 1.0);
}

TEST(Psi, HandValues) {
  std::vector<double> ref{50, 50}, cur{25, 75};
  const double expected = (0.25 - 0.5) * std::log(0.25 / 0.5) + (0.75 - 0.5) * std::log(0.75 / 0.5);
  EXPECT_NEAR(Psi(ref, cur), expected, 1e-15);
  EXPECT_EQ(Psi(ref, ref), 0.0);
  // An empty current bin counts as share 1e-4.
  std::vector<double> empty_bin{100, 0};
  EXPECT_NEAR(Psi(ref, empty_bin),
              (1 - 0.5) * std::log(1 / 0.5) + (1e-4 - 0.5) * std::log(1e-4 / 0.5), 1e-12);
  EXPECT_EQ(Psi(ref, std::vector<double>{0, 0}), 0.0);
}

TEST(Quantiles, LinearLikeNumpy) {
  std::vector<double> s{1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Quantile(s, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(Quantile(s, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(Quantile(s, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(Quantile(s, 0.1), 1.3);  // numpy.quantile([1,2,3,4], 0.1)
  auto edges = QuantileEdges(s, 2);
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_DOUBLE_EQ(edges[0], 2.5);
  auto counts = BinCounts(std::vector<double>{0, 2.5, 3, NAN, 9}, edges);
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[0], 1);  // 0
  EXPECT_EQ(counts[1], 3);  // 2.5 (edges belong to the right bin), 3, 9
}

TEST(ChiSquare, HandValues) {
  // scipy.stats.chisquare([10, 20, 30], [20, 20, 20]): 10, p = exp(-5).
  ChiSquareResult r = ChiSquare(std::vector<double>{10, 20, 30}, std::vector<double>{20, 20, 20});
  EXPECT_DOUBLE_EQ(r.statistic, 10.0);
  EXPECT_EQ(r.dof, 2);
  EXPECT_NEAR(r.p_value, std::exp(-5.0), 1e-15);  // chi2(2).sf(x) = exp(-x/2)
  r = ChiSquare(std::vector<double>{1, 2}, std::vector<double>{0, 3});
  EXPECT_TRUE(std::isinf(r.statistic));
  EXPECT_EQ(r.p_value, 0.0);
  r = ChiSquare(std::vector<double>{4}, std::vector<double>{4});
  EXPECT_EQ(r.p_value, 1.0);
}

TEST(GammaQ, KnownValues) {
  EXPECT_NEAR(GammaQ(1.0, 2.0), std::exp(-2.0), 1e-15);
  EXPECT_NEAR(GammaQ(0.5, 2.0), std::erfc(std::sqrt(2.0)), 1e-15);
  // chi2(1).sf(3.841458820694124) == 0.05; chi2(10).sf(18.307038053275146) == 0.05.
  EXPECT_NEAR(ChiSquareSf(3.841458820694124, 1), 0.05, 1e-14);
  EXPECT_NEAR(ChiSquareSf(18.307038053275146, 10), 0.05, 1e-14);
  EXPECT_EQ(GammaQ(3.0, 0.0), 1.0);
  // Q(3, x) = exp(-x) (1 + x + x^2/2), on both sides of x = a + 1.
  for (double x : {0.5, 3.9, 4.1, 30.0}) {
    EXPECT_NEAR(GammaQ(3.0, x) / (std::exp(-x) * (1 + x + x * x / 2)), 1.0, 1e-13) << x;
  }
}

TEST(JensenShannon, HandValues) {
  EXPECT_EQ(JensenShannon(std::vector<double>{1, 2}, std::vector<double>{2, 4}), 0.0);
  // Disjoint supports: sqrt(ln 2).
  EXPECT_NEAR(JensenShannon(std::vector<double>{1, 0}, std::vector<double>{0, 1}),
              std::sqrt(std::log(2.0)), 1e-15);
  // scipy.spatial.distance.jensenshannon([1, 0], [0.5, 0.5]).
  EXPECT_NEAR(JensenShannon(std::vector<double>{1, 0}, std::vector<double>{0.5, 0.5}),
              0.46450140402245893, 1e-15);
}

TEST(Classification, CountsAndRates) {
  std::vector<int> y{1, 1, 0, 0, 1, 0};
  std::vector<double> s{0.9, 0.4, 0.6, 0.1, 0.8, 0.3};
  auto m = Classification(y, s);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->true_positives, 2);
  EXPECT_EQ(m->false_negatives, 1);
  EXPECT_EQ(m->false_positives, 1);
  EXPECT_EQ(m->true_negatives, 2);
  EXPECT_DOUBLE_EQ(*m->accuracy, 4.0 / 6);
  EXPECT_DOUBLE_EQ(*m->precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(*m->recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(*m->f1, 2.0 / 3);
  // Pairs (pos, neg) ranked correctly: 0.9 > all, 0.8 > all, 0.4 > 0.1, 0.3 -> 8/9.
  EXPECT_DOUBLE_EQ(*m->roc_auc, 8.0 / 9);
}

TEST(Classification, TiesCountHalf) {
  auto m = Classification(std::vector<int>{1, 0}, std::vector<double>{0.5, 0.5});
  ASSERT_TRUE(m);
  EXPECT_DOUBLE_EQ(*m->roc_auc, 0.5);
}

TEST(Classification, UndefinedIsNulloptNotNan) {
  // One class only, nothing predicted positive.
  auto m = Classification(std::vector<int>{0, 0}, std::vector<double>{0.1, 0.2});
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->precision);
  EXPECT_FALSE(m->recall);
  EXPECT_FALSE(m->f1);  // every row a true negative
  EXPECT_FALSE(m->roc_auc);
  EXPECT_DOUBLE_EQ(*m->accuracy, 1.0);
  auto empty = Classification({}, {});
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->accuracy);
  // Positives exist, none predicted: precision undefined, recall and F1 0.
  m = Classification(std::vector<int>{1, 0}, std::vector<double>{0.2, 0.1});
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->precision);
  EXPECT_DOUBLE_EQ(*m->recall, 0.0);
  EXPECT_DOUBLE_EQ(*m->f1, 0.0);
  EXPECT_DOUBLE_EQ(*m->roc_auc, 1.0);
}

TEST(Classification, RejectsBadInput) {
  auto m = Classification(std::vector<int>{1, 2}, std::vector<double>{0.2, 0.1});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().field, "labels[1]");
  EXPECT_FALSE(Classification(std::vector<int>{1}, std::vector<double>{0.2, 0.1}));
  EXPECT_FALSE(Classification(std::vector<int>{1}, std::vector<double>{NAN}));
}

TEST(Regression, MaeAndRmse) {
  auto m = Regression(std::vector<double>{1, 2, 3}, std::vector<double>{2, 2, 5});
  ASSERT_TRUE(m);
  EXPECT_DOUBLE_EQ(*m->mae, 1.0);
  EXPECT_DOUBLE_EQ(*m->rmse, std::sqrt(5.0 / 3));
  auto empty = Regression({}, {});
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->mae);
  EXPECT_FALSE(Regression(std::vector<double>{1}, std::vector<double>{}));
}

}  // namespace
}  // namespace kervan::monitoring::stats
