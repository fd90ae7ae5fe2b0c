// Drift and data-quality evaluation of current data against a profile
// (drift.h).
#include "monitoring/drift.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "monitoring/stats.h"

namespace kervan::monitoring {
namespace {

using core::InvalidArgument;

constexpr double kMinNormStd = 0.001;  // Evidently's floor for the normed Wasserstein

Json Opt(const std::optional<double>& v) {
  return v ? Json(*v) : Json(nullptr);
}

double Rate(int64_t part, int64_t whole) {
  return whole > 0 ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

bool Drifted(DriftMethod m, double score, std::optional<double> p, double threshold) {
  return UsesPValue(m) ? (p && *p < threshold) : score >= threshold;
}

DriftMethod DefaultMethod(const FeatureProfile& ref, const DriftOptions& options) {
  const bool small = ref.count <= options.small_sample_limit;
  if (ref.type == FeatureType::kNumeric)
    return small ? DriftMethod::kKs : DriftMethod::kWasserstein;
  return small ? DriftMethod::kChiSquare : DriftMethod::kJensenShannon;
}

void EvaluateNumeric(const FeatureProfile& ref, const Column::Numeric& values,
                     const DriftOptions& options, FeatureDrift& out) {
  std::vector<double> cur;
  cur.reserve(values.size());
  int64_t out_of_range = 0;
  for (double v : values) {
    if (!std::isfinite(v))
      continue;
    cur.push_back(v);
    out_of_range += (v < ref.min || v > ref.max) ? 1 : 0;
  }
  out.current_count = static_cast<int64_t>(cur.size());
  out.current_missing = static_cast<int64_t>(values.size()) - out.current_count;
  if (cur.empty() || ref.count == 0 || ref.sample.empty())
    return;
  out.out_of_range_rate = Rate(out_of_range, out.current_count);
  std::sort(cur.begin(), cur.end());

  const stats::KsResult ks = stats::KsTestSortedWithSize(ref.sample, ref.count, cur);
  out.ks_statistic = ks.statistic;
  out.ks_p_value = ks.p_value;
  out.wasserstein_normed =
      stats::WassersteinSorted(ref.sample, cur) / std::max(ref.std, kMinNormStd);

  std::vector<double> ref_counts;
  std::vector<double> edges;
  if (static_cast<int>(ref.histogram_counts.size()) == options.psi_bins) {
    edges = ref.histogram_edges;
    ref_counts.assign(ref.histogram_counts.begin(), ref.histogram_counts.end());
  } else {
    edges = stats::QuantileEdges(ref.sample, options.psi_bins);
    ref_counts = stats::BinCounts(ref.sample, edges);
  }
  std::vector<double> cur_counts(edges.size() + 1, 0.0);
  {
    size_t bin = 0;
    for (double v : cur) {  // sorted: the bin only moves right
      while (bin < edges.size() && v >= edges[bin])
        ++bin;
      cur_counts[bin] += 1.0;
    }
  }
  out.psi = stats::Psi(ref_counts, cur_counts);

  switch (out.method) {
    case DriftMethod::kKs:
      out.score = ks.statistic;
      out.p_value = ks.p_value;
      break;
    case DriftMethod::kWasserstein:
      out.score = out.wasserstein_normed;
      break;
    default:
      out.score = out.psi;
      break;
  }
}

void EvaluateCategorical(const FeatureProfile& ref, const Column& column, FeatureDrift& out) {
  // Buckets: the reference's kept categories (in map order), then one "rest"
  // bucket holding the reference's other_count and every current value
  // outside the kept categories.
  std::vector<double> ref_counts, cur_counts;
  ref_counts.reserve(ref.frequencies.size() + 1);
  for (const auto& [_, n] : ref.frequencies)
    ref_counts.push_back(static_cast<double>(n));
  ref_counts.push_back(static_cast<double>(ref.other_count));
  cur_counts.assign(ref_counts.size(), 0.0);
  const size_t rest = ref_counts.size() - 1;

  // Lookup by index into the map order.
  std::vector<std::string_view> keys;
  keys.reserve(ref.frequencies.size());
  for (const auto& [k, _] : ref.frequencies)
    keys.push_back(k);
  auto bucket = [&](std::string_view v) {
    auto it = std::lower_bound(keys.begin(), keys.end(), v);
    return (it != keys.end() && *it == v) ? static_cast<size_t>(it - keys.begin()) : rest;
  };

  int64_t unseen = 0;
  auto add = [&](std::string_view v) {
    const size_t b = bucket(v);
    cur_counts[b] += 1.0;
    unseen += b == rest ? 1 : 0;
    ++out.current_count;
  };
  if (column.is_numeric()) {
    for (double v : column.numeric()) {
      if (std::isfinite(v))
        add(fmt::format("{}", v));
      else
        ++out.current_missing;
    }
  } else {
    for (const auto& v : column.categorical()) {
      if (v)
        add(*v);
      else
        ++out.current_missing;
    }
  }
  if (out.current_count == 0 || ref.count == 0)
    return;
  out.unseen_rate = Rate(unseen, out.current_count);

  // Drop the rest bucket when both sides leave it empty (it would only add a
  // degree of freedom to chi-square).
  if (ref_counts[rest] == 0 && cur_counts[rest] == 0) {
    ref_counts.pop_back();
    cur_counts.pop_back();
  }
  out.psi = stats::Psi(ref_counts, cur_counts);

  switch (out.method) {
    case DriftMethod::kChiSquare: {
      const stats::ChiSquareResult chi = stats::ChiSquareHomogeneity(ref_counts, cur_counts);
      out.score = chi.statistic;
      out.p_value = chi.p_value;
      break;
    }
    case DriftMethod::kJensenShannon:
      out.score = stats::JensenShannon(ref_counts, cur_counts);
      break;
    default:
      out.score = out.psi;
      break;
  }
}

Result<FeatureDrift> EvaluateFeature(const FeatureProfile& ref, const Column& column,
                                     int64_t reference_rows, const DriftOptions& options) {
  FeatureDrift out;
  out.name = ref.name;
  out.type = ref.type;
  out.method = DefaultMethod(ref, options);
  out.threshold = DefaultThreshold(out.method);
  if (auto it = options.features.find(ref.name); it != options.features.end()) {
    if (it->second.method) {
      out.method = *it->second.method;
      out.threshold = DefaultThreshold(out.method);
    }
    if (it->second.threshold)
      out.threshold = *it->second.threshold;
  }
  const bool numeric_only =
      out.method == DriftMethod::kKs || out.method == DriftMethod::kWasserstein;
  const bool categorical_only =
      out.method == DriftMethod::kChiSquare || out.method == DriftMethod::kJensenShannon;
  if ((ref.type == FeatureType::kCategorical && numeric_only) ||
      (ref.type == FeatureType::kNumeric && categorical_only)) {
    return InvalidArgument(
        fmt::format("feature \"{}\": method {} does not apply to a {} feature", ref.name,
                    DriftMethodName(out.method), FeatureTypeName(ref.type)),
        ref.name);
  }

  if (ref.type == FeatureType::kNumeric) {
    if (!column.is_numeric()) {
      return InvalidArgument(
          fmt::format("column \"{}\": the reference is numeric, the current data is categorical",
                      ref.name),
          ref.name);
    }
    EvaluateNumeric(ref, column.numeric(), options, out);
  } else {
    EvaluateCategorical(ref, column, out);
  }
  out.missing_rate = Rate(out.current_missing, out.current_count + out.current_missing);
  out.reference_missing_rate = Rate(ref.missing, reference_rows);
  if (!out.score) {
    out.status = "insufficient_data";
    out.drifted = false;
  } else {
    out.drifted = Drifted(out.method, *out.score, out.p_value, out.threshold);
  }
  return out;
}

}  // namespace

std::string_view DriftMethodName(DriftMethod m) {
  switch (m) {
    case DriftMethod::kKs:
      return "ks";
    case DriftMethod::kWasserstein:
      return "wasserstein";
    case DriftMethod::kPsi:
      return "psi";
    case DriftMethod::kChiSquare:
      return "chisquare";
    case DriftMethod::kJensenShannon:
      return "jensenshannon";
  }
  return "ks";
}

std::optional<DriftMethod> ParseDriftMethod(std::string_view name) {
  for (DriftMethod m : {DriftMethod::kKs, DriftMethod::kWasserstein, DriftMethod::kPsi,
                        DriftMethod::kChiSquare, DriftMethod::kJensenShannon}) {
    if (DriftMethodName(m) == name)
      return m;
  }
  return std::nullopt;
}

bool UsesPValue(DriftMethod m) {
  return m == DriftMethod::kKs || m == DriftMethod::kChiSquare;
}

double DefaultThreshold(DriftMethod m) {
  switch (m) {
    case DriftMethod::kKs:
    case DriftMethod::kChiSquare:
      return 0.05;
    case DriftMethod::kWasserstein:
    case DriftMethod::kJensenShannon:
      return 0.1;
    case DriftMethod::kPsi:
      return 0.2;
  }
  return 0.05;
}

Json FeatureDrift::ToJson() const {
  return {{"name", name},
          {"type", FeatureTypeName(type)},
          {"status", status},
          {"method", DriftMethodName(method)},
          {"rule", UsesPValue(method) ? "p_value < threshold" : "score >= threshold"},
          {"score", Opt(score)},
          {"p_value", Opt(p_value)},
          {"threshold", threshold},
          {"drifted", drifted},
          {"psi", Opt(psi)},
          {"ks_statistic", Opt(ks_statistic)},
          {"ks_p_value", Opt(ks_p_value)},
          {"wasserstein_normed", Opt(wasserstein_normed)},
          {"current_count", current_count},
          {"current_missing", current_missing},
          {"missing_rate", missing_rate},
          {"reference_missing_rate", reference_missing_rate},
          {"out_of_range_rate", Opt(out_of_range_rate)},
          {"unseen_rate", Opt(unseen_rate)}};
}

Json DriftReport::ToJson() const {
  Json list = Json::array();
  for (const auto& f : features)
    list.push_back(f.ToJson());
  return {{"reference_rows", reference_rows},
          {"current_rows", current_rows},
          {"dataset_drift", dataset_drift},
          {"drifted_count", drifted_count},
          {"evaluated_count", evaluated_count},
          {"insufficient_count", insufficient_count},
          {"drifted_share", drifted_share},
          {"drift_share_threshold", drift_share_threshold},
          {"features", list}};
}

Result<DriftReport> EvaluateDrift(const Profile& reference, std::span<const Column> current,
                                  const DriftOptions& options) {
  if (!(options.drift_share >= 0 && options.drift_share <= 1)) {
    return InvalidArgument(
        fmt::format("field \"drift_share\": must be between 0 and 1, got {}", options.drift_share),
        "drift_share");
  }
  if (options.small_sample_limit < 0) {
    return InvalidArgument("field \"small_sample_limit\": must be >= 0", "small_sample_limit");
  }
  if (options.psi_bins < 1 || options.psi_bins > 1000) {
    return InvalidArgument(
        fmt::format("field \"psi_bins\": must be between 1 and 1000, got {}", options.psi_bins),
        "psi_bins");
  }
  for (const auto& [name, o] : options.features) {
    if (reference.Find(name) == nullptr) {
      return InvalidArgument(
          fmt::format("field \"features.{}\": the reference profile has no such feature", name),
          "features." + name);
    }
    if (o.threshold && !(std::isfinite(*o.threshold) && *o.threshold >= 0)) {
      return InvalidArgument(
          fmt::format("field \"features.{}.threshold\": must be a finite number >= 0", name),
          "features." + name + ".threshold");
    }
  }

  DriftReport report;
  report.reference_rows = reference.rows;
  report.drift_share_threshold = options.drift_share;
  bool rows_known = false;
  for (const FeatureProfile& ref : reference.features) {
    const Column* column = nullptr;
    for (const Column& c : current) {
      if (c.name == ref.name) {
        column = &c;
        break;
      }
    }
    if (column == nullptr) {
      return InvalidArgument(
          fmt::format("column \"{}\": in the reference profile but not in the current data",
                      ref.name),
          ref.name);
    }
    if (!rows_known) {
      report.current_rows = static_cast<int64_t>(column->size());
      rows_known = true;
    }
    ASSIGN_OR_RETURN(FeatureDrift f, EvaluateFeature(ref, *column, reference.rows, options));
    if (f.status == "ok") {
      ++report.evaluated_count;
      report.drifted_count += f.drifted ? 1 : 0;
    } else {
      ++report.insufficient_count;
    }
    report.features.push_back(std::move(f));
  }
  report.drifted_share = Rate(report.drifted_count, report.evaluated_count);
  report.dataset_drift = report.evaluated_count > 0 && report.drifted_share >= options.drift_share;
  return report;
}

}  // namespace kervan::monitoring
