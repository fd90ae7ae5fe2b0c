// Drift and data-quality reports: false-alarm rates on undrifted data,
// detection of a shifted feature, quality rates, errors.
#include "monitoring/drift.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "monitoring/stats.h"

namespace kervan::monitoring {
namespace {

constexpr int kNumeric = 5;
constexpr int kFeatures = kNumeric + 2;

// Rows of 5 numeric features of different shapes (normal, log-normal,
// uniform, exponential, and a discrete one with many ties) and 2
// categorical ones (5 and 20 categories, unequal shares). `shift` moves
// feature `shifted` by that many standard deviations.
std::vector<Column> Draw(std::mt19937_64& rng, size_t rows, double shift = 0, int shifted = -1) {
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  std::exponential_distribution<double> expo(1.0);
  std::poisson_distribution<int> poisson(3.0);
  std::discrete_distribution<int> few({40, 25, 15, 12, 8});
  std::discrete_distribution<int> many(
      {9, 8, 8, 7, 7, 6, 6, 6, 5, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 1});
  std::vector<Column> cols;
  for (int f = 0; f < kNumeric; ++f)
    cols.push_back({"n" + std::to_string(f), Column::Numeric(rows)});
  cols.push_back({"c0", Column::Categorical(rows)});
  cols.push_back({"c1", Column::Categorical(rows)});
  // Standard deviations of the numeric shapes, to express shifts in them.
  const double sd[kNumeric] = {1.0, std::sqrt((std::exp(0.25) - 1) * std::exp(0.25)),
                               std::sqrt(1.0 / 12), 1.0, std::sqrt(3.0)};
  for (size_t i = 0; i < rows; ++i) {
    const double v[kNumeric] = {normal(rng), std::exp(0.5 * normal(rng)), uniform(rng), expo(rng),
                                static_cast<double>(poisson(rng))};
    for (int f = 0; f < kNumeric; ++f) {
      std::get<Column::Numeric>(cols[f].values)[i] = v[f] + (f == shifted ? shift * sd[f] : 0);
    }
    std::get<Column::Categorical>(cols[kNumeric].values)[i] = "a" + std::to_string(few(rng));
    std::get<Column::Categorical>(cols[kNumeric + 1].values)[i] = "b" + std::to_string(many(rng));
  }
  return cols;
}

struct AlarmRates {
  std::vector<double> per_feature;
  double dataset = 0;
};

AlarmRates RunNullTrials(size_t reference_rows, size_t current_rows, int trials,
                         const char* label) {
  std::vector<int> drifted(kFeatures, 0);
  int dataset_alarms = 0;
  int goodness_of_fit[2] = {0, 0};
  std::vector<std::string> methods(kFeatures);
  for (int seed = 0; seed < trials; ++seed) {
    std::mt19937_64 rng(1000 + seed);
    auto ref_cols = Draw(rng, reference_rows);
    auto cur_cols = Draw(rng, current_rows);
    auto profile = BuildProfile(ref_cols);
    EXPECT_TRUE(profile);
    auto report = EvaluateDrift(*profile, cur_cols);
    EXPECT_TRUE(report) << report.error().message;
    // Evidently's chi-square (goodness of fit against the reference shares)
    // on the same data, for comparison with the homogeneity test we use.
    for (int f = kNumeric; f < kFeatures; ++f) {
      const FeatureProfile& ref = profile->features[f];
      std::map<std::string, double> cur_counts;
      for (const auto& v : cur_cols[f].categorical())
        cur_counts[*v] += 1;
      std::vector<double> observed, expected;
      for (const auto& [k, n] : ref.frequencies) {
        observed.push_back(cur_counts[k]);
        expected.push_back(static_cast<double>(n) / ref.count * current_rows);
      }
      if (stats::ChiSquare(observed, expected).p_value < 0.05)
        ++goodness_of_fit[f - kNumeric];
    }
    for (int f = 0; f < kFeatures; ++f) {
      drifted[f] += report->features[f].drifted ? 1 : 0;
      methods[f] = DriftMethodName(report->features[f].method);
      EXPECT_EQ(report->features[f].status, "ok");
    }
    dataset_alarms += report->dataset_drift ? 1 : 0;
  }
  AlarmRates rates;
  std::printf("[%s] reference %zu rows, current %zu rows, %d seeds, same distributions\n", label,
              reference_rows, current_rows, trials);
  for (int f = 0; f < kFeatures; ++f) {
    rates.per_feature.push_back(static_cast<double>(drifted[f]) / trials);
    std::printf("  feature %d (%s): drifted in %.1f%% of seeds\n", f, methods[f].c_str(),
                100.0 * rates.per_feature.back());
  }
  for (int f = 0; f < 2; ++f) {
    std::printf("  feature %d with Evidently's goodness-of-fit chi-square: p < 0.05 in %.1f%%\n",
                kNumeric + f, 100.0 * goodness_of_fit[f] / trials);
  }
  rates.dataset = static_cast<double>(dataset_alarms) / trials;
  std::printf("  dataset drift alarms: %d of %d (%.1f%%)\n", dataset_alarms, trials,
              100.0 * rates.dataset);
  return rates;
}

TEST(DriftFalseAlarms, LargeReferenceDefaultsNeverRaiseDatasetDrift) {
  // 2000 reference rows: Wasserstein (normed) and Jensen-Shannon.
  // Per-feature rates are printed, not bounded: a distance threshold has no
  // nominal level (the normed Wasserstein of two N(0,1) samples of 2000 and
  // 500 rows exceeds 0.1 about one time in ten).
  AlarmRates r = RunNullTrials(2000, 500, 200, "wasserstein/jensenshannon");
  EXPECT_EQ(r.dataset, 0.0);
}

TEST(DriftFalseAlarms, SmallReferenceTestsHoldTheirLevel) {
  // 800 reference rows: KS and chi-square at p < 0.05, so about 5% of
  // features drift by construction (a little less for discrete data, where
  // both tests are conservative).
  AlarmRates r = RunNullTrials(800, 500, 200, "ks/chisquare");
  EXPECT_EQ(r.dataset, 0.0);
  for (double rate : r.per_feature)
    EXPECT_LE(rate, 0.10);
}

TEST(Drift, DetectsAHalfStdMeanShiftOnOneFeature) {
  for (size_t ref_rows : {800u, 2000u}) {
    std::mt19937_64 rng(42);
    auto profile = BuildProfile(Draw(rng, ref_rows));
    ASSERT_TRUE(profile);
    auto cur = Draw(rng, 500, 0.5, 0);
    auto report = EvaluateDrift(*profile, cur);
    ASSERT_TRUE(report) << report.error().message;
    for (const auto& f : report->features)
      EXPECT_EQ(f.drifted, f.name == "n0") << f.name << " with " << ref_rows << " rows";
    EXPECT_EQ(report->drifted_count, 1);
    EXPECT_FALSE(report->dataset_drift);
    EXPECT_NEAR(report->drifted_share, 1.0 / 7, 1e-12);
    EXPECT_EQ(report->features[0].method,
              ref_rows <= 1000 ? DriftMethod::kKs : DriftMethod::kWasserstein);
  }
}

TEST(Drift, ManyShiftedFeaturesRaiseDatasetDrift) {
  std::mt19937_64 rng(5);
  auto profile = BuildProfile(Draw(rng, 2000));
  ASSERT_TRUE(profile);
  auto cur = Draw(rng, 500);
  for (int f = 0; f < 4; ++f) {
    for (double& v : std::get<Column::Numeric>(cur[f].values))
      v += 2.0;
  }
  auto report = EvaluateDrift(*profile, cur);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->drifted_count, 4);
  EXPECT_TRUE(report->dataset_drift);  // 4/7 >= 0.5
  DriftOptions strict;
  strict.drift_share = 0.6;
  EXPECT_FALSE(EvaluateDrift(*profile, cur, strict)->dataset_drift);
}

TEST(Drift, QualityRates) {
  std::vector<Column> ref{{"x", Column::Numeric{0, 1, 2, 3, 4, 5, 6, 7, 8, NAN}},
                          {"c", Column::Categorical{"a", "b", "a", std::nullopt, "b", "a", "a", "b",
                                                    std::nullopt, "a"}}};
  auto profile = BuildProfile(ref);
  ASSERT_TRUE(profile);
  std::vector<Column> cur{
      {"x", Column::Numeric{-1, 0, 4, 8, 8.5, NAN, NAN, INFINITY}},
      {"c", Column::Categorical{"a", "z", "y", std::nullopt, "b", "a", "a", "b"}},
      {"extra", Column::Numeric{1, 2, 3, 4, 5, 6, 7, 8}}};
  auto report = EvaluateDrift(*profile, cur);
  ASSERT_TRUE(report) << report.error().message;
  ASSERT_EQ(report->features.size(), 2u);  // "extra" ignored
  const FeatureDrift& x = report->features[0];
  EXPECT_EQ(x.current_count, 5);
  EXPECT_EQ(x.current_missing, 3);  // NaN, NaN, inf
  EXPECT_DOUBLE_EQ(x.missing_rate, 3.0 / 8);
  EXPECT_DOUBLE_EQ(x.reference_missing_rate, 0.1);
  EXPECT_DOUBLE_EQ(*x.out_of_range_rate, 2.0 / 5);  // -1 and 8.5
  EXPECT_FALSE(x.unseen_rate);
  EXPECT_TRUE(x.ks_statistic && x.ks_p_value && x.wasserstein_normed && x.psi);
  const FeatureDrift& c = report->features[1];
  EXPECT_DOUBLE_EQ(c.missing_rate, 1.0 / 8);
  EXPECT_DOUBLE_EQ(c.reference_missing_rate, 0.2);
  EXPECT_DOUBLE_EQ(*c.unseen_rate, 2.0 / 7);  // z, y
  EXPECT_FALSE(c.out_of_range_rate);
  EXPECT_EQ(c.method, DriftMethod::kChiSquare);
  ASSERT_TRUE(c.score);
  EXPECT_TRUE(std::isfinite(*c.score));  // unseen categories: a finite statistic
  EXPECT_LT(*c.p_value, 0.5);
}

TEST(Drift, NoCurrentValuesIsInsufficientDataNotAPass) {
  std::mt19937_64 rng(9);
  auto profile = BuildProfile(Draw(rng, 300));
  ASSERT_TRUE(profile);
  auto cur = Draw(rng, 100);
  std::get<Column::Numeric>(cur[2].values).assign(100, NAN);
  std::get<Column::Categorical>(cur[5].values).assign(100, std::nullopt);
  auto report = EvaluateDrift(*profile, cur);
  ASSERT_TRUE(report);
  for (int f : {2, 5}) {
    const FeatureDrift& d = report->features[f];
    EXPECT_EQ(d.status, "insufficient_data") << d.name;
    EXPECT_FALSE(d.drifted);
    EXPECT_FALSE(d.score);
    EXPECT_DOUBLE_EQ(d.missing_rate, 1.0);
  }
  EXPECT_EQ(report->insufficient_count, 2);
  EXPECT_EQ(report->evaluated_count, 5);
  Json j = report->ToJson();
  EXPECT_EQ(j["features"][2]["status"], "insufficient_data");
  EXPECT_TRUE(j["features"][2]["score"].is_null());
  // Empty current data altogether: every feature insufficient, no drift.
  auto none = Draw(rng, 0);
  auto empty = EvaluateDrift(*profile, none);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->insufficient_count, 7);
  EXPECT_FALSE(empty->dataset_drift);
}

TEST(Drift, OverridesChooseMethodAndThreshold) {
  std::mt19937_64 rng(21);
  auto profile = BuildProfile(Draw(rng, 2000));
  ASSERT_TRUE(profile);
  auto cur = Draw(rng, 500, 0.3, 1);
  DriftOptions options;
  options.features["n1"] = {.method = DriftMethod::kPsi};
  options.features["n0"] = {.method = DriftMethod::kKs, .threshold = 1.0};  // p < 1: always
  options.features["c0"] = {.method = DriftMethod::kPsi, .threshold = 0.0};
  options.features["c1"] = {.method = DriftMethod::kChiSquare};
  auto report = EvaluateDrift(*profile, cur, options);
  ASSERT_TRUE(report) << report.error().message;
  const auto& n1 = report->features[1];
  EXPECT_EQ(n1.method, DriftMethod::kPsi);
  EXPECT_EQ(n1.threshold, 0.2);
  EXPECT_EQ(n1.score, n1.psi);
  EXPECT_FALSE(n1.p_value);
  EXPECT_EQ(report->features[0].method, DriftMethod::kKs);
  EXPECT_TRUE(report->features[0].drifted);
  EXPECT_TRUE(report->features[0].p_value);
  EXPECT_TRUE(report->features[5].drifted);  // psi >= 0
  EXPECT_EQ(report->features[6].method, DriftMethod::kChiSquare);
  EXPECT_TRUE(report->features[6].p_value);
}

TEST(Drift, ErrorsNameTheFeature) {
  std::mt19937_64 rng(2);
  auto profile = BuildProfile(Draw(rng, 100));
  ASSERT_TRUE(profile);
  auto cur = Draw(rng, 50);
  auto missing = cur;
  missing.erase(missing.begin() + 3);
  auto r = EvaluateDrift(*profile, missing);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "n3");
  EXPECT_NE(r.error().message.find("\"n3\""), std::string::npos);

  DriftOptions unknown;
  unknown.features["nope"] = {.method = DriftMethod::kPsi};
  EXPECT_EQ(EvaluateDrift(*profile, cur, unknown).error().field, "features.nope");
  DriftOptions wrong;
  wrong.features["c0"] = {.method = DriftMethod::kKs};
  EXPECT_EQ(EvaluateDrift(*profile, cur, wrong).error().field, "c0");
  wrong.features.clear();
  wrong.features["n0"] = {.method = DriftMethod::kChiSquare};
  EXPECT_EQ(EvaluateDrift(*profile, cur, wrong).error().field, "n0");
  DriftOptions share;
  share.drift_share = 1.5;
  EXPECT_EQ(EvaluateDrift(*profile, cur, share).error().field, "drift_share");

  auto typed = cur;
  typed[0] = {"n0", Column::Categorical(50, std::string("x"))};
  EXPECT_EQ(EvaluateDrift(*profile, typed).error().field, "n0");
}

TEST(Drift, CategoricalReferenceAcceptsNumbersAsText) {
  std::vector<Column> ref{{"code", Column::Categorical{"1", "2", "3", "3"}}};
  auto profile = BuildProfile(ref);
  ASSERT_TRUE(profile);
  std::vector<Column> cur{{"code", Column::Numeric{1, 2, 3, 3.5}}};
  auto report = EvaluateDrift(*profile, cur);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_DOUBLE_EQ(*report->features[0].unseen_rate, 0.25);  // only 3.5
}

TEST(Drift, PsiBinsOtherThanTheProfilesUseTheSample) {
  std::mt19937_64 rng(8);
  auto profile = BuildProfile(Draw(rng, 2000));
  ASSERT_TRUE(profile);
  auto cur = Draw(rng, 2000);
  DriftOptions twenty;
  twenty.psi_bins = 20;
  auto a = EvaluateDrift(*profile, cur);
  auto b = EvaluateDrift(*profile, cur, twenty);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a->features[0].psi, *b->features[0].psi);
  EXPECT_LT(*b->features[0].psi, 0.1);
}

TEST(Drift, ReportJsonShape) {
  std::mt19937_64 rng(4);
  auto profile = BuildProfile(Draw(rng, 200));
  auto report = EvaluateDrift(*profile, Draw(rng, 100));
  ASSERT_TRUE(report);
  Json j = report->ToJson();
  for (const char* key :
       {"reference_rows", "current_rows", "dataset_drift", "drifted_count", "evaluated_count",
        "insufficient_count", "drifted_share", "drift_share_threshold", "features"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["reference_rows"], 200);
  EXPECT_EQ(j["current_rows"], 100);
  const Json& f = j["features"][0];
  EXPECT_EQ(f["method"], "ks");
  EXPECT_EQ(f["rule"], "p_value < threshold");
  EXPECT_TRUE(f["p_value"].is_number());
  EXPECT_TRUE(f["out_of_range_rate"].is_number());
  EXPECT_TRUE(f["unseen_rate"].is_null());
  EXPECT_EQ(j["features"][5]["method"], "chisquare");
  EXPECT_TRUE(j["features"][5]["ks_statistic"].is_null());
}

}  // namespace
}  // namespace kervan::monitoring
