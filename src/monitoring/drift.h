// Data drift and data quality: compares current data with a reference
// profile, feature by feature, and decides whether the dataset drifted.
// Pure and thread-safe (no I/O, no clock); depends on core and the rest of
// the monitoring core only.
//
// Default method per feature, by type and the reference's non-missing count
// (Evidently's defaults):
//   numeric,     count <= small_sample_limit: KS test, drift when p < 0.05
//   numeric,     larger: Wasserstein distance / reference std (population,
//                floored at 0.001), drift when >= 0.1
//   categorical, count <= small_sample_limit: chi-square test of
//                homogeneity (see EvaluateDrift), drift when p < 0.05
//   categorical, larger: Jensen-Shannon distance (natural log), drift when >= 0.1
// Selectable per feature: ks, wasserstein, psi (drift when >= 0.2),
// chisquare, jensenshannon (ks and wasserstein need a numeric feature).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/result.h"
#include "monitoring/profile.h"

namespace kervan::monitoring {

enum class DriftMethod { kKs, kWasserstein, kPsi, kChiSquare, kJensenShannon };
// "ks" | "wasserstein" | "psi" | "chisquare" | "jensenshannon"
std::string_view DriftMethodName(DriftMethod m);
std::optional<DriftMethod> ParseDriftMethod(std::string_view name);
// ks and chisquare decide on a p-value (drift when p < threshold), the
// others on a distance (drift when score >= threshold).
bool UsesPValue(DriftMethod m);
double DefaultThreshold(DriftMethod m);  // 0.05, 0.1, 0.2, 0.05, 0.1

struct FeatureDriftOverride {
  std::optional<DriftMethod> method;
  std::optional<double> threshold;
};

struct DriftOptions {
  std::map<std::string, FeatureDriftOverride> features;  // by feature name
  double drift_share = 0.5;  // dataset drift when drifted / evaluated >= this
  int64_t small_sample_limit = 1000;
  // PSI bins. The profile's own histogram (10 reference deciles) is used
  // when the counts agree; otherwise edges come from the profile's sample.
  int psi_bins = 10;
};

struct FeatureDrift {
  std::string name;
  FeatureType type = FeatureType::kNumeric;
  // "ok", or "insufficient_data" when the current data (or the reference)
  // has no non-missing value: then drifted is false and the scores are
  // absent; the report counts such features apart.
  std::string status = "ok";
  DriftMethod method = DriftMethod::kKs;
  std::optional<double> score;    // the method's statistic or distance
  std::optional<double> p_value;  // ks and chisquare
  double threshold = 0;
  bool drifted = false;

  // Shown for every evaluated feature, whatever the method.
  std::optional<double> psi;
  std::optional<double> ks_statistic, ks_p_value;  // numeric
  std::optional<double> wasserstein_normed;        // numeric

  // Data quality of the current data next to the reference.
  int64_t current_count = 0;  // non-missing values
  int64_t current_missing = 0;
  double missing_rate = 0;            // missing / current rows (0 on no rows)
  double reference_missing_rate = 0;  // the same for the reference
  // Numeric: share of non-missing values below the reference min or above
  // its max. Categorical: share of non-missing values whose category is not
  // among the reference's kept frequencies (so when the reference had more
  // than ProfileOptions::max_categories categories, values of its dropped
  // tail count as unseen too).
  std::optional<double> out_of_range_rate;
  std::optional<double> unseen_rate;

  Json ToJson() const;
};

struct DriftReport {
  int64_t reference_rows = 0;
  int64_t current_rows = 0;
  std::vector<FeatureDrift> features;  // in the profile's order
  int64_t evaluated_count = 0;         // features with status "ok"
  int64_t insufficient_count = 0;
  int64_t drifted_count = 0;
  double drifted_share = 0;  // drifted / evaluated (0 when none evaluated)
  double drift_share_threshold = 0.5;
  bool dataset_drift = false;  // evaluated > 0 and drifted_share >= threshold

  Json ToJson() const;
};

// Compares `current` with `reference`. Every reference feature must have a
// current column of the same name (extra columns are ignored); a numeric
// reference feature needs a numeric column, a categorical one takes either
// (numbers are matched as their shortest round-trip text, "3" for 3.0).
// kInvalidArgument naming the feature for a missing or mistyped column, an
// override of an unknown feature, a method that does not fit the type, or
// an out-of-range option.
//
// Numeric tests run on the profile's sorted sample (no re-sorting of the
// reference); with an incomplete sample they are approximations (see
// FeatureProfile::sample). The KS p-value always uses the reference's full
// count. Categorical tests compare counts over the reference's categories
// and one more bucket holding its "other" count and every current value
// outside the kept categories (unseen ones).
//
// chisquare is the test of homogeneity of the two count vectors
// (stats::ChiSquareHomogeneity, scipy chi2_contingency), not Evidently's
// goodness of fit against the reference shares (stats::ChiSquare,
// scipy.stats.chisquare): goodness of fit treats the reference shares as
// exact, so with a small reference its p < 0.05 rule fires far more often
// than 5% on undrifted data (measured in tests/monitoring/drift_test.cc:
// 26% and 52% for 5 and 20 categories, 800 vs 500 rows); homogeneity holds
// the level and handles unseen categories without an infinite statistic.
Result<DriftReport> EvaluateDrift(const Profile& reference, std::span<const Column> current,
                                  const DriftOptions& options = {});

}  // namespace kervan::monitoring
