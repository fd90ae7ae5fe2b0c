// Drift benchmarks: profiling a large reference and evaluating current data
// against it (docs/performance.md, "Monitoring").
//
//   build_profile/1M          BuildProfile of 1,000,000 rows x 25 columns (20
//                             numeric, 5 categorical) with sample_limit
//                             1,000,000, so every reference value is kept.
//   evaluate/full_sample      EvaluateDrift of 100,000 current rows against
//                             that profile: every numeric test runs on all
//                             1M sorted reference values (exact statistics);
//                             per feature the default method (normed
//                             Wasserstein / Jensen-Shannon at this size) plus
//                             the KS test, PSI and quality rates it always
//                             reports.
//   evaluate/default_sample   the same against a profile with the default
//                             sample_limit (5,000 order statistics).
//   ks20/sort_both            KS test of the 20 numeric features, sorting
//                             both samples every time: the work
//                             scipy.stats.ks_2samp does (compare with
//                             bench/monitoring/scipy_drift.py).
//
// Data: with KERVAN_DRIFT_BENCH_DATA=DIR the 20 numeric features come from
// DIR/reference.f64 and DIR/current.f64, written by scipy_drift.py (float64,
// feature-major), so both sides compare the same numbers; otherwise the same
// shapes are drawn here. The 5 categorical features (10 to 200 categories)
// are always drawn here.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>

#include <benchmark/benchmark.h>

#include "monitoring/drift.h"
#include "monitoring/stats.h"

namespace kervan::monitoring {
namespace {

constexpr size_t kRefRows = 1'000'000;
constexpr size_t kCurRows = 100'000;
constexpr int kNumeric = 20;
constexpr int kCategorical = 5;

bool ReadFeatures(const std::string& path, size_t rows, std::vector<Column>& cols) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  for (int f = 0; f < kNumeric; ++f) {
    Column::Numeric v(rows);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(rows * sizeof(double)));
    if (!in)
      return false;
    cols.push_back({"n" + std::to_string(f), std::move(v)});
  }
  return true;
}

void DrawNumeric(std::mt19937_64& rng, size_t rows, bool current, std::vector<Column>& cols) {
  std::normal_distribution<double> normal;
  std::lognormal_distribution<double> lognormal(0, 0.5);
  std::uniform_real_distribution<double> uniform;
  std::exponential_distribution<double> expo(1.0);
  std::poisson_distribution<int> poisson(3.0);
  for (int f = 0; f < kNumeric; ++f) {
    const double shift = current && f % 5 == 0 ? 0.1 : 0.0;
    Column::Numeric v(rows);
    for (double& x : v) {
      switch (f % 5) {
        case 0:
          x = normal(rng);
          break;
        case 1:
          x = lognormal(rng);
          break;
        case 2:
          x = uniform(rng);
          break;
        case 3:
          x = expo(rng);
          break;
        default:
          x = poisson(rng);
          break;
      }
      x += shift;
    }
    cols.push_back({"n" + std::to_string(f), std::move(v)});
  }
}

void DrawCategorical(std::mt19937_64& rng, size_t rows, std::vector<Column>& cols) {
  const int sizes[kCategorical] = {10, 25, 50, 100, 200};
  for (int f = 0; f < kCategorical; ++f) {
    std::vector<double> weights(sizes[f]);
    for (int k = 0; k < sizes[f]; ++k)
      weights[k] = 1.0 / (k + 1);  // Zipf-like
    std::discrete_distribution<int> pick(weights.begin(), weights.end());
    std::vector<std::string> names;
    for (int k = 0; k < sizes[f]; ++k)
      names.push_back("cat_" + std::to_string(f) + "_" + std::to_string(k));
    Column::Categorical v(rows);
    for (auto& x : v)
      x = names[pick(rng)];
    cols.push_back({"c" + std::to_string(f), std::move(v)});
  }
}

struct Data {
  std::vector<Column> reference, current;
  Profile full, sampled;
};

const Data& GetData() {
  static const Data data = [] {
    Data d;
    std::mt19937_64 rng(2024);
    const char* dir = std::getenv("KERVAN_DRIFT_BENCH_DATA");
    if (dir != nullptr &&
        ReadFeatures(std::string(dir) + "/reference.f64", kRefRows, d.reference) &&
        ReadFeatures(std::string(dir) + "/current.f64", kCurRows, d.current)) {
      std::fprintf(stderr, "drift_bench: numeric features from %s\n", dir);
    } else {
      d.reference.clear();
      d.current.clear();
      DrawNumeric(rng, kRefRows, false, d.reference);
      DrawNumeric(rng, kCurRows, true, d.current);
      std::fprintf(stderr, "drift_bench: numeric features drawn in C++\n");
    }
    DrawCategorical(rng, kRefRows, d.reference);
    DrawCategorical(rng, kCurRows, d.current);
    d.full = *BuildProfile(d.reference, {.sample_limit = static_cast<int64_t>(kRefRows)});
    d.sampled = *BuildProfile(d.reference);
    auto report = EvaluateDrift(d.full, d.current);
    std::fprintf(stderr, "drift_bench: KS statistics (first 5):");
    for (int f = 0; f < 5; ++f)
      std::fprintf(stderr, " %.6f", *report->features[f].ks_statistic);
    std::fprintf(stderr, "\ndrift_bench: %lld of %d features drifted\n",
                 static_cast<long long>(report->drifted_count), kNumeric + kCategorical);
    return d;
  }();
  return data;
}

void BM_BuildProfile(benchmark::State& state) {
  const Data& d = GetData();
  for (auto _ : state) {
    auto p = BuildProfile(d.reference, {.sample_limit = static_cast<int64_t>(kRefRows)});
    benchmark::DoNotOptimize(p);
  }
  state.counters["rows"] = static_cast<double>(kRefRows);
  state.counters["columns"] = kNumeric + kCategorical;
}
BENCHMARK(BM_BuildProfile)->Name("build_profile/1M")->Unit(benchmark::kMillisecond);

void BM_Evaluate(benchmark::State& state, bool full) {
  const Data& d = GetData();
  const Profile& profile = full ? d.full : d.sampled;
  int64_t drifted = 0;
  for (auto _ : state) {
    auto report = EvaluateDrift(profile, d.current);
    drifted = report->drifted_count;
    benchmark::DoNotOptimize(report);
  }
  state.counters["current_rows"] = static_cast<double>(kCurRows);
  state.counters["drifted"] = static_cast<double>(drifted);
}
BENCHMARK_CAPTURE(BM_Evaluate, full_sample, true)
    ->Name("evaluate/full_sample")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Evaluate, default_sample, false)
    ->Name("evaluate/default_sample")
    ->Unit(benchmark::kMillisecond);

void BM_Ks20SortBoth(benchmark::State& state) {
  const Data& d = GetData();
  for (auto _ : state) {
    for (int f = 0; f < kNumeric; ++f) {
      auto r = stats::KsTest(d.reference[f].numeric(), d.current[f].numeric());
      benchmark::DoNotOptimize(r);
    }
  }
}
BENCHMARK(BM_Ks20SortBoth)->Name("ks20/sort_both")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kervan::monitoring

BENCHMARK_MAIN();
