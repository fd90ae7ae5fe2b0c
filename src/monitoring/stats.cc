// Statistical tests and performance metrics (stats.h).
#include "monitoring/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <numeric>

#include <fmt/format.h>

namespace kervan::monitoring::stats {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// floor(num / den) for den > 0 and any sign of num.
int64_t FloorDiv(int64_t num, int64_t den) {
  int64_t q = num / den;
  if ((num % den != 0) && (num < 0))
    --q;
  return q;
}

// ln Gamma(a) for a > 0 without std::lgamma's write to the global signgam.
double LogGamma(double a) {
  int sign = 0;
  return ::lgamma_r(a, &sign);
}

// exp(-x + a ln x - ln Gamma(a)): the common prefactor of P(a,x) and Q(a,x).
double GammaPrefactor(double a, double x) {
  return std::exp(-x + a * std::log(x) - LogGamma(a));
}

// P(a, x) by its power series; converges quickly for x < a + 1.
double GammaPSeries(double a, double x) {
  double term = 1.0 / a;
  double sum = term;
  for (int n = 1; n < 100000; ++n) {
    term *= x / (a + n);
    sum += term;
    if (std::abs(term) < std::abs(sum) * 1e-17)
      break;
  }
  return sum * GammaPrefactor(a, x);
}

// Q(a, x) by Legendre's continued fraction, evaluated with the modified
// Lentz method; converges quickly for x >= a + 1.
double GammaQContinuedFraction(double a, double x) {
  constexpr double kTiny = 1e-300;
  double b = x + 1.0 - a;
  double c = 1.0 / kTiny;
  double d = 1.0 / b;
  double h = d;
  for (int i = 1; i < 100000; ++i) {
    double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::abs(d) < kTiny)
      d = kTiny;
    c = b + an / c;
    if (std::abs(c) < kTiny)
      c = kTiny;
    d = 1.0 / d;
    double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < 1e-16)
      break;
  }
  return GammaPrefactor(a, x) * h;
}

}  // namespace

std::string_view KsMethodName(KsMethod m) {
  return m == KsMethod::kExact ? "exact" : "asymptotic";
}

// ---------------------------------------------------------------------------
// Kolmogorov-Smirnov

int64_t KsStatisticNumerator(std::span<const double> a, std::span<const double> b) {
  const int64_t n1 = static_cast<int64_t>(a.size());
  const int64_t n2 = static_cast<int64_t>(b.size());
  const int64_t g = std::gcd(n1, n2);
  const int64_t wa = n2 / g;  // weight of one step of F1, in units of 1/lcm
  const int64_t wb = n1 / g;
  size_t i = 0, j = 0;
  int64_t best = 0;
  while (i < a.size() && j < b.size()) {
    const double x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] == x)
      ++i;
    while (j < b.size() && b[j] == x)
      ++j;
    best = std::max(best, std::abs(static_cast<int64_t>(i) * wa - static_cast<int64_t>(j) * wb));
  }
  // Past this point one ECDF is 1 and the other only rises towards it.
  return best;
}

double KsExactPValue(int64_t n1, int64_t n2, int64_t h) {
  if (h <= 0)
    return 1.0;
  // Rows walk the longer side, the kept row is the shorter one.
  if (n2 > n1)
    std::swap(n1, n2);
  const int64_t g = std::gcd(n1, n2);
  const int64_t a = n1 / g;
  const int64_t b = n2 / g;
  // u[j] after row i: the share of monotone paths from (0,0) to (i,j) that
  // stay inside |i*b - j*a| < h (paths counted over C(i+j, i), so every
  // value stays in [0, 1]). Both band ends move right as i grows, so cells
  // right of the last band are still zero and cells left of it are never
  // read again.
  std::vector<double> u(static_cast<size_t>(n2) + 1, 0.0);
  for (int64_t i = 0; i <= n1; ++i) {
    const int64_t lo = std::max<int64_t>(0, FloorDiv(i * b - h, a) + 1);
    const int64_t hi = std::min<int64_t>(n2, FloorDiv(i * b + h - 1, a));
    double left = 0.0;
    const double di = static_cast<double>(i);
    for (int64_t j = lo; j <= hi; ++j) {
      double v;
      if (i == 0 && j == 0) {
        v = 1.0;
      } else {
        const double dj = static_cast<double>(j);
        v = (u[j] * di + left * dj) / (di + dj);
      }
      u[j] = v;
      left = v;
    }
  }
  return std::clamp(1.0 - u[n2], 0.0, 1.0);
}

double KolmogorovSf(double x) {
  if (!(x > 0))
    return 1.0;
  if (x < 1.0) {
    // Jacobi's theta form of the CDF: sqrt(2 pi)/x sum exp(-(2k-1)^2 pi^2 / (8x^2)).
    const double w = std::numbers::pi * std::numbers::pi / (8.0 * x * x);
    double sum = 0.0;
    for (int k = 1; k < 100; ++k) {
      const double odd = 2.0 * k - 1.0;
      const double term = std::exp(-odd * odd * w);
      sum += term;
      if (term < 1e-18 * sum || term == 0.0)
        break;
    }
    return 1.0 - std::sqrt(2.0 * std::numbers::pi) / x * sum;
  }
  double sum = 0.0;
  double sign = 1.0;
  for (int k = 1; k < 100; ++k) {
    const double term = std::exp(-2.0 * k * k * x * x);
    sum += sign * term;
    if (term < 1e-18 * std::abs(sum) || term == 0.0)
      break;
    sign = -sign;
  }
  return std::clamp(2.0 * sum, 0.0, 1.0);
}

KsResult KsTestSortedWithSize(std::span<const double> a, int64_t n1, std::span<const double> b) {
  const int64_t na = static_cast<int64_t>(a.size());
  const int64_t n2 = static_cast<int64_t>(b.size());
  const int64_t numerator = KsStatisticNumerator(a, b);
  const int64_t lcm = na / std::gcd(na, n2) * n2;
  KsResult r;
  r.statistic = static_cast<double>(numerator) / static_cast<double>(lcm);
  if (std::max(n1, n2) <= kKsExactLimit) {
    r.method = KsMethod::kExact;
    if (n1 == na) {
      r.p_value = KsExactPValue(n1, n2, numerator);
    } else {
      const int64_t full_lcm = n1 / std::gcd(n1, n2) * n2;
      const auto h =
          static_cast<int64_t>(std::nearbyint(r.statistic * static_cast<double>(full_lcm)));
      r.p_value = KsExactPValue(n1, n2, h);
    }
  } else {
    r.method = KsMethod::kAsymptotic;
    const double en = static_cast<double>(n1) * static_cast<double>(n2) /
                      (static_cast<double>(n1) + static_cast<double>(n2));
    r.p_value = KolmogorovSf(std::sqrt(en) * r.statistic);
  }
  return r;
}

KsResult KsTestSorted(std::span<const double> a, std::span<const double> b) {
  return KsTestSortedWithSize(a, static_cast<int64_t>(a.size()), b);
}

KsResult KsTest(std::span<const double> a, std::span<const double> b) {
  std::vector<double> sa(a.begin(), a.end()), sb(b.begin(), b.end());
  std::sort(sa.begin(), sa.end());
  std::sort(sb.begin(), sb.end());
  return KsTestSorted(sa, sb);
}

// ---------------------------------------------------------------------------
// Distances

double WassersteinSorted(std::span<const double> u, std::span<const double> v) {
  const double inv_u = 1.0 / static_cast<double>(u.size());
  const double inv_v = 1.0 / static_cast<double>(v.size());
  size_t i = 0, j = 0;
  double total = 0.0;
  double prev = std::min(u[0], v[0]);
  // Between consecutive distinct values the two ECDFs are constant.
  while (i < u.size() || j < v.size()) {
    const double x = std::min(i < u.size() ? u[i] : kInf, j < v.size() ? v[j] : kInf);
    total += std::abs(static_cast<double>(i) * inv_u - static_cast<double>(j) * inv_v) * (x - prev);
    while (i < u.size() && u[i] == x)
      ++i;
    while (j < v.size() && v[j] == x)
      ++j;
    prev = x;
  }
  return total;
}

double Psi(std::span<const double> reference_counts, std::span<const double> current_counts,
           double epsilon) {
  const double rt = std::accumulate(reference_counts.begin(), reference_counts.end(), 0.0);
  const double ct = std::accumulate(current_counts.begin(), current_counts.end(), 0.0);
  if (!(rt > 0) || !(ct > 0))
    return 0.0;
  double psi = 0.0;
  for (size_t k = 0; k < reference_counts.size() && k < current_counts.size(); ++k) {
    double r = reference_counts[k] / rt;
    double c = current_counts[k] / ct;
    if (r == 0)
      r = epsilon;
    if (c == 0)
      c = epsilon;
    psi += (c - r) * std::log(c / r);
  }
  return psi;
}

double Quantile(std::span<const double> sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  if (lo + 1 >= sorted.size())
    return sorted.back();
  const double t = pos - static_cast<double>(lo);
  const double x0 = sorted[lo], x1 = sorted[lo + 1];
  // numpy's lerp: exact at both ends, monotone in t.
  return t < 0.5 ? x0 + (x1 - x0) * t : x1 - (x1 - x0) * (1.0 - t);
}

std::vector<double> QuantileEdges(std::span<const double> sorted, int bins) {
  std::vector<double> edges;
  edges.reserve(bins > 1 ? bins - 1 : 0);
  for (int k = 1; k < bins; ++k)
    edges.push_back(Quantile(sorted, static_cast<double>(k) / bins));
  return edges;
}

std::vector<double> BinCounts(std::span<const double> values, std::span<const double> edges) {
  std::vector<double> counts(edges.size() + 1, 0.0);
  for (double v : values) {
    if (std::isnan(v))
      continue;
    counts[std::upper_bound(edges.begin(), edges.end(), v) - edges.begin()] += 1.0;
  }
  return counts;
}

ChiSquareResult ChiSquare(std::span<const double> observed, std::span<const double> expected) {
  ChiSquareResult r;
  const size_t k = std::min(observed.size(), expected.size());
  r.dof = k > 0 ? static_cast<int64_t>(k) - 1 : 0;
  for (size_t i = 0; i < k; ++i) {
    const double diff = observed[i] - expected[i];
    if (expected[i] == 0) {
      if (observed[i] != 0)
        r.statistic = kInf;
      continue;
    }
    r.statistic += diff * diff / expected[i];
  }
  if (std::isinf(r.statistic))
    r.p_value = 0.0;
  else
    r.p_value = r.dof >= 1 ? ChiSquareSf(r.statistic, static_cast<double>(r.dof)) : 1.0;
  return r;
}

ChiSquareResult ChiSquareHomogeneity(std::span<const double> a, std::span<const double> b) {
  ChiSquareResult r;
  const size_t k = std::min(a.size(), b.size());
  const double ta = std::accumulate(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(k), 0.0);
  const double tb = std::accumulate(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(k), 0.0);
  const double total = ta + tb;
  int64_t columns = 0;
  for (size_t i = 0; i < k; ++i) {
    const double column = a[i] + b[i];
    if (column == 0)
      continue;
    ++columns;
    const double ea = ta * column / total;
    const double eb = tb * column / total;
    r.statistic += (a[i] - ea) * (a[i] - ea) / ea + (b[i] - eb) * (b[i] - eb) / eb;
  }
  if (columns <= 1 || ta == 0 || tb == 0) {
    r.statistic = 0;
    r.dof = std::max<int64_t>(columns - 1, 0);
    r.p_value = 1.0;
    return r;
  }
  r.dof = columns - 1;
  r.p_value = ChiSquareSf(r.statistic, static_cast<double>(r.dof));
  return r;
}

double GammaQ(double a, double x) {
  if (!(x > 0))
    return 1.0;
  if (std::isinf(x))
    return 0.0;
  if (x < a + 1.0)
    return 1.0 - GammaPSeries(a, x);
  return GammaQContinuedFraction(a, x);
}

double ChiSquareSf(double x, double dof) {
  return GammaQ(dof / 2.0, x / 2.0);
}

double JensenShannon(std::span<const double> p, std::span<const double> q) {
  const double ps = std::accumulate(p.begin(), p.end(), 0.0);
  const double qs = std::accumulate(q.begin(), q.end(), 0.0);
  double left = 0.0, right = 0.0;
  for (size_t i = 0; i < p.size() && i < q.size(); ++i) {
    const double pi = p[i] / ps;
    const double qi = q[i] / qs;
    const double m = (pi + qi) / 2.0;
    if (pi > 0)
      left += pi * std::log(pi / m);
    if (qi > 0)
      right += qi * std::log(qi / m);
  }
  return std::sqrt(std::max(0.0, (left + right) / 2.0));
}

// ---------------------------------------------------------------------------
// Performance

core::Result<ClassificationMetrics> Classification(std::span<const int> labels,
                                                   std::span<const double> scores,
                                                   double threshold) {
  if (labels.size() != scores.size()) {
    return core::InvalidArgument(
        fmt::format("labels and scores differ in length ({} vs {})", labels.size(), scores.size()),
        "labels");
  }
  ClassificationMetrics m;
  m.count = static_cast<int64_t>(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] != 0 && labels[i] != 1) {
      return core::InvalidArgument(
          fmt::format("field \"labels[{}]\": must be 0 or 1, got {}", i, labels[i]),
          fmt::format("labels[{}]", i));
    }
    if (std::isnan(scores[i])) {
      return core::InvalidArgument(fmt::format("field \"scores[{}]\": must be a number", i),
                                   fmt::format("scores[{}]", i));
    }
    const bool predicted = scores[i] >= threshold;
    if (labels[i] == 1)
      ++(predicted ? m.true_positives : m.false_negatives);
    else
      ++(predicted ? m.false_positives : m.true_negatives);
  }
  const auto tp = static_cast<double>(m.true_positives);
  const auto fp = static_cast<double>(m.false_positives);
  const auto fn = static_cast<double>(m.false_negatives);
  m.positives = m.true_positives + m.false_negatives;
  const int64_t negatives = m.count - m.positives;
  if (m.count > 0)
    m.accuracy =
        static_cast<double>(m.true_positives + m.true_negatives) / static_cast<double>(m.count);
  if (m.true_positives + m.false_positives > 0)
    m.precision = tp / (tp + fp);
  if (m.positives > 0)
    m.recall = tp / (tp + fn);
  if (tp + fp + fn > 0)
    m.f1 = 2 * tp / (2 * tp + fp + fn);

  if (m.positives > 0 && negatives > 0) {
    std::vector<size_t> order(scores.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(),
              [&](size_t x, size_t y) { return scores[x] < scores[y]; });
    double rank_sum = 0.0;  // ranks of the positives, ties get their average rank
    for (size_t s = 0; s < order.size();) {
      size_t e = s + 1;
      while (e < order.size() && scores[order[e]] == scores[order[s]])
        ++e;
      const double rank = (static_cast<double>(s + 1) + static_cast<double>(e)) / 2.0;
      for (size_t k = s; k < e; ++k)
        if (labels[order[k]] == 1)
          rank_sum += rank;
      s = e;
    }
    const auto n1 = static_cast<double>(m.positives);
    const auto n0 = static_cast<double>(negatives);
    m.roc_auc = (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0);
  }
  return m;
}

core::Result<RegressionMetrics> Regression(std::span<const double> targets,
                                           std::span<const double> predictions) {
  if (targets.size() != predictions.size()) {
    return core::InvalidArgument(fmt::format("targets and predictions differ in length ({} vs {})",
                                             targets.size(), predictions.size()),
                                 "predictions");
  }
  RegressionMetrics m;
  m.count = static_cast<int64_t>(targets.size());
  double abs_sum = 0.0, sq_sum = 0.0;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (std::isnan(targets[i]) || std::isnan(predictions[i])) {
      return core::InvalidArgument(fmt::format("row {}: target and prediction must be numbers", i),
                                   fmt::format("predictions[{}]", i));
    }
    const double e = predictions[i] - targets[i];
    abs_sum += std::abs(e);
    sq_sum += e * e;
  }
  if (m.count > 0) {
    const auto n = static_cast<double>(m.count);
    m.mae = abs_sum / n;
    m.rmse = std::sqrt(sq_sum / n);
  }
  return m;
}

}  // namespace kervan::monitoring::stats
