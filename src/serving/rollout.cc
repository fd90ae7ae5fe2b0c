// Rollout specs, routing, window statistics, analysis and the controller's
// decision: pure functions (rollout.h).
#include "serving/rollout.h"

#include <algorithm>
#include <array>
#include <cmath>

#include <fmt/format.h>

#include "monitoring/stats.h"

namespace kervan::serving {
namespace {

constexpr int64_t kMaxDurationS = 7 * 24 * 3600;
constexpr int64_t kMaxRequests = 1'000'000'000;

Json OptionalToJson(const std::optional<double>& v) {
  return v ? Json(*v) : Json(nullptr);
}

// A threshold: absent keeps `def`, JSON null disables the check, a number in
// [min, max] sets it.
Result<std::optional<double>> ReadThreshold(const Json& obj, core::ObjectReader& r,
                                            const std::string& key, const std::string& prefix,
                                            std::optional<double> def, double min, double max) {
  auto it = obj.find(key);
  if (it != obj.end() && it->is_null()) {
    (void)r.OptionalNumber(key);  // marks it read
    return std::optional<double>();
  }
  ASSIGN_OR_RETURN(std::optional<double> v, r.OptionalNumber(key));
  if (!v)
    return def;
  if (!std::isfinite(*v) || *v < min || *v > max) {
    return core::InvalidArgument(
        fmt::format("field \"{}{}\": must be between {} and {}, got {}", prefix, key, min, max, *v),
        prefix + key);
  }
  return v;
}

Result<double> ReadPercent(core::ObjectReader& r, const std::string& key, const std::string& prefix,
                           double def, bool allow_zero) {
  ASSIGN_OR_RETURN(std::optional<double> v, r.OptionalNumber(key));
  if (!v)
    return def;
  if (!std::isfinite(*v) || *v > 100 || *v < 0 || (!allow_zero && *v == 0)) {
    return core::InvalidArgument(
        fmt::format("field \"{}{}\": must be a percentage in {}0, 100], got {}", prefix, key,
                    allow_zero ? "[" : "(", *v),
        prefix + key);
  }
  return *v;
}

// FNV-1a, 64 bit: stable across processes and releases (sticky assignment
// must not move when the gateway restarts).
uint64_t Fnv1a(std::string_view text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

double BucketLower(int i) {
  return std::pow(10.0, i / 10.0);
}

}  // namespace

// ---------------------------------------------------------------------------
// Specs

Json CanaryStep::ToJson() const {
  return {{"weight", weight}, {"min_duration_s", min_duration_s}, {"min_requests", min_requests}};
}
Json PreviewSpec::ToJson() const {
  return {{"min_duration_s", min_duration_s}, {"min_requests", min_requests}};
}
Json ShadowSpec::ToJson() const {
  return {{"percent", percent}, {"min_duration_s", min_duration_s}, {"min_requests", min_requests}};
}
Json AnalysisSpec::ToJson() const {
  return {{"interval_s", interval_s},
          {"window_s", window_s},
          {"failure_limit", failure_limit},
          {"min_samples", min_samples},
          {"max_error_rate", OptionalToJson(max_error_rate)},
          {"max_latency_p99_ms", OptionalToJson(max_latency_p99_ms)},
          {"max_latency_p99_ratio", OptionalToJson(max_latency_p99_ratio)},
          {"max_prediction_shift", OptionalToJson(max_prediction_shift)},
          {"min_agreement", OptionalToJson(min_agreement)}};
}
Json HeaderRoute::ToJson() const {
  return {{"header", header}, {"value", value}, {"target", target}};
}

Json RolloutSpec::ToJson() const {
  Json out{{"strategy", strategy}, {"analysis", analysis.ToJson()}};
  out["shadow"] = shadow ? shadow->ToJson() : Json(nullptr);
  Json s = Json::array();
  for (const auto& step : steps)
    s.push_back(step.ToJson());
  out["steps"] = s;
  if (strategy == "bluegreen")
    out["preview"] = preview.ToJson();
  Json h = Json::array();
  for (const auto& route : header_routes)
    h.push_back(route.ToJson());
  out["header_routes"] = h;
  return out;
}

Result<RolloutSpec> RolloutSpec::FromJson(const Json& json, const std::string& prefix) {
  RolloutSpec spec;
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(json, prefix));
  ASSIGN_OR_RETURN(std::optional<std::string> strategy, r.OptionalString("strategy"));
  spec.strategy = strategy.value_or("canary");
  if (spec.strategy != "canary" && spec.strategy != "bluegreen" && spec.strategy != "direct") {
    return core::InvalidArgument(
        fmt::format("field \"{}strategy\": must be canary, bluegreen or direct, got \"{}\"", prefix,
                    spec.strategy),
        prefix + "strategy");
  }

  ASSIGN_OR_RETURN(Json shadow, r.OptionalObject("shadow"));
  if (json.contains("shadow") && !json["shadow"].is_null()) {
    std::string p = prefix + "shadow.";
    ASSIGN_OR_RETURN(auto sr, core::ObjectReader::Of(shadow, p));
    ShadowSpec s;
    ASSIGN_OR_RETURN(s.percent, ReadPercent(sr, "percent", p, 100, false));
    ASSIGN_OR_RETURN(auto d, sr.OptionalInt("min_duration_s", 0, kMaxDurationS));
    ASSIGN_OR_RETURN(auto n, sr.OptionalInt("min_requests", 0, kMaxRequests));
    s.min_duration_s = d.value_or(30);
    s.min_requests = n.value_or(50);
    RETURN_IF_ERROR(sr.Finish());
    spec.shadow = s;
  }

  ASSIGN_OR_RETURN(Json steps, r.OptionalArray("steps"));
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string p = fmt::format("{}steps[{}].", prefix, i);
    ASSIGN_OR_RETURN(auto sr, core::ObjectReader::Of(steps[i], p));
    CanaryStep step;
    ASSIGN_OR_RETURN(std::optional<double> w, sr.OptionalNumber("weight"));
    if (!w) {
      return core::InvalidArgument(fmt::format("field \"{}weight\": is required", p), p + "weight");
    }
    if (!std::isfinite(*w) || *w <= 0 || *w > 100) {
      return core::InvalidArgument(
          fmt::format("field \"{}weight\": must be a percentage in (0, 100], got {}", p, *w),
          p + "weight");
    }
    if (!spec.steps.empty() && *w <= spec.steps.back().weight) {
      return core::InvalidArgument(
          fmt::format("field \"{}weight\": steps must increase the weight ({} after {})", p, *w,
                      spec.steps.back().weight),
          p + "weight");
    }
    step.weight = *w;
    ASSIGN_OR_RETURN(auto d, sr.OptionalInt("min_duration_s", 0, kMaxDurationS));
    ASSIGN_OR_RETURN(auto n, sr.OptionalInt("min_requests", 0, kMaxRequests));
    step.min_duration_s = d.value_or(30);
    step.min_requests = n.value_or(50);
    RETURN_IF_ERROR(sr.Finish());
    spec.steps.push_back(step);
  }
  if (spec.strategy == "canary" && spec.steps.empty()) {
    for (double w : {10.0, 50.0, 100.0})
      spec.steps.push_back({.weight = w, .min_duration_s = 30, .min_requests = 50});
  }
  if (spec.strategy != "canary" && !spec.steps.empty()) {
    return core::InvalidArgument(
        fmt::format("field \"{}steps\": only the canary strategy has steps ({} has none)", prefix,
                    spec.strategy),
        prefix + "steps");
  }

  ASSIGN_OR_RETURN(Json preview, r.OptionalObject("preview"));
  if (json.contains("preview") && !json["preview"].is_null()) {
    std::string p = prefix + "preview.";
    if (spec.strategy != "bluegreen") {
      return core::InvalidArgument(
          fmt::format("field \"{}preview\": only the bluegreen strategy has a preview", prefix),
          prefix + "preview");
    }
    ASSIGN_OR_RETURN(auto pr, core::ObjectReader::Of(preview, p));
    ASSIGN_OR_RETURN(auto d, pr.OptionalInt("min_duration_s", 0, kMaxDurationS));
    ASSIGN_OR_RETURN(auto n, pr.OptionalInt("min_requests", 0, kMaxRequests));
    spec.preview.min_duration_s = d.value_or(spec.preview.min_duration_s);
    spec.preview.min_requests = n.value_or(spec.preview.min_requests);
    RETURN_IF_ERROR(pr.Finish());
  }

  ASSIGN_OR_RETURN(Json analysis, r.OptionalObject("analysis"));
  {
    std::string p = prefix + "analysis.";
    ASSIGN_OR_RETURN(auto ar, core::ObjectReader::Of(analysis, p));
    AnalysisSpec& a = spec.analysis;
    ASSIGN_OR_RETURN(auto interval, ar.OptionalInt("interval_s", 1, 3600));
    ASSIGN_OR_RETURN(auto window, ar.OptionalInt("window_s", 1, 86400));
    ASSIGN_OR_RETURN(auto limit, ar.OptionalInt("failure_limit", 1, 100));
    ASSIGN_OR_RETURN(auto samples, ar.OptionalInt("min_samples", 1, 1'000'000));
    a.interval_s = interval.value_or(a.interval_s);
    a.window_s = window.value_or(std::max<int64_t>(a.window_s, a.interval_s));
    a.failure_limit = static_cast<int>(limit.value_or(a.failure_limit));
    a.min_samples = samples.value_or(a.min_samples);
    if (a.window_s < a.interval_s) {
      return core::InvalidArgument(
          fmt::format("field \"{}window_s\": must be at least interval_s ({}), got {}", p,
                      a.interval_s, a.window_s),
          p + "window_s");
    }
    ASSIGN_OR_RETURN(a.max_error_rate,
                     ReadThreshold(analysis, ar, "max_error_rate", p, a.max_error_rate, 0, 1));
    ASSIGN_OR_RETURN(a.max_latency_p99_ms, ReadThreshold(analysis, ar, "max_latency_p99_ms", p,
                                                         a.max_latency_p99_ms, 1e-3, 3.6e6));
    ASSIGN_OR_RETURN(a.max_latency_p99_ratio, ReadThreshold(analysis, ar, "max_latency_p99_ratio",
                                                            p, a.max_latency_p99_ratio, 1e-3, 1e6));
    ASSIGN_OR_RETURN(a.max_prediction_shift, ReadThreshold(analysis, ar, "max_prediction_shift", p,
                                                           a.max_prediction_shift, 0, 1));
    ASSIGN_OR_RETURN(a.min_agreement,
                     ReadThreshold(analysis, ar, "min_agreement", p, a.min_agreement, 0, 1));
    RETURN_IF_ERROR(ar.Finish());
  }

  ASSIGN_OR_RETURN(Json routes, r.OptionalArray("header_routes"));
  for (size_t i = 0; i < routes.size(); ++i) {
    std::string p = fmt::format("{}header_routes[{}].", prefix, i);
    ASSIGN_OR_RETURN(auto hr, core::ObjectReader::Of(routes[i], p));
    HeaderRoute route;
    ASSIGN_OR_RETURN(route.header, hr.RequiredString("header"));
    ASSIGN_OR_RETURN(route.value, hr.RequiredString("value"));
    ASSIGN_OR_RETURN(auto target, hr.OptionalString("target"));
    route.target = target.value_or("candidate");
    if (route.target != "candidate" && route.target != "stable") {
      return core::InvalidArgument(
          fmt::format("field \"{}target\": must be candidate or stable, got \"{}\"", p,
                      route.target),
          p + "target");
    }
    for (char& c : route.header)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    RETURN_IF_ERROR(hr.Finish());
    spec.header_routes.push_back(route);
  }
  RETURN_IF_ERROR(r.Finish());
  return spec;
}

// ---------------------------------------------------------------------------
// Routing

double StickyPosition(std::string_view key) {
  return static_cast<double>(Fnv1a(key) % 1'000'000) / 10'000.0;
}

RouteDecision DecideRoute(const RoutingRule& rule, std::string_view sticky_key,
                          const std::function<std::string(std::string_view)>& header,
                          double uniform) {
  if (rule.phase != Phase::kStable) {
    for (const auto& route : rule.header_routes) {
      if (header(route.header) == route.value) {
        return {.target = route.target == "candidate" ? Target::kCandidate : Target::kStable,
                .mirror = false,
                .reason = "header"};
      }
    }
  }
  switch (rule.phase) {
    case Phase::kShadow:
      return {.target = Target::kStable,
              .mirror = uniform * 100.0 < rule.shadow_percent,
              .reason = "shadow"};
    case Phase::kCanary: {
      double position = sticky_key.empty() ? uniform * 100.0 : StickyPosition(sticky_key);
      bool candidate = position < rule.weight;
      return {.target = candidate ? Target::kCandidate : Target::kStable,
              .mirror = false,
              .reason = sticky_key.empty() ? "weight" : "sticky"};
    }
    case Phase::kStable:
    case Phase::kPreview:
      break;
  }
  return {.target = Target::kStable, .mirror = false, .reason = "stable"};
}

// ---------------------------------------------------------------------------
// Histograms

void LatencyHistogram::Observe(double micros) {
  int i = micros < 1 ? 0 : static_cast<int>(std::floor(10.0 * std::log10(micros)));
  i = std::clamp(i, 0, kBuckets - 1);
  ++counts_[i];
  ++count_;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (int i = 0; i < kBuckets; ++i)
    counts_[i] += other.counts_[i];
  count_ += other.count_;
}

double LatencyHistogram::Quantile(double q) const {
  if (count_ == 0)
    return 0;
  double rank = q * static_cast<double>(count_);
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    if (counts_[i] == 0)
      continue;
    if (static_cast<double>(seen + counts_[i]) >= rank) {
      double frac = (rank - static_cast<double>(seen)) / static_cast<double>(counts_[i]);
      frac = std::clamp(frac, 0.0, 1.0);
      double lower = BucketLower(i), upper = BucketLower(i + 1);
      return lower * std::pow(upper / lower, frac);
    }
    seen += counts_[i];
  }
  return BucketLower(kBuckets);
}

Json LatencyHistogram::ToJson() const {
  Json sparse = Json::array();
  for (int i = 0; i < kBuckets; ++i) {
    if (counts_[i] != 0)
      sparse.push_back(Json::array({i, counts_[i]}));
  }
  return sparse;
}

LatencyHistogram LatencyHistogram::FromJson(const Json& j) {
  LatencyHistogram h;
  if (!j.is_array())
    return h;
  for (const auto& pair : j) {
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_integer() ||
        !pair[1].is_number_integer())
      continue;
    int i = pair[0].get<int>();
    int64_t n = pair[1].get<int64_t>();
    if (i < 0 || i >= kBuckets || n < 0)
      continue;
    h.counts_[i] += n;
    h.count_ += n;
  }
  return h;
}

void OutputHistogram::Observe(double value) {
  if (std::isnan(value))
    return;
  int bin;
  if (value < 0)
    bin = 0;
  else if (value > 1)
    bin = kBins - 1;
  else
    bin = 1 + std::min(19, static_cast<int>(value * 20.0));
  ++bins_[bin];
  ++count_;
}

void OutputHistogram::Merge(const OutputHistogram& other) {
  for (int i = 0; i < kBins; ++i)
    bins_[i] += other.bins_[i];
  count_ += other.count_;
}

Json OutputHistogram::ToJson() const {
  Json out = Json::array();
  for (int64_t n : bins_)
    out.push_back(n);
  return out;
}

OutputHistogram OutputHistogram::FromJson(const Json& j) {
  OutputHistogram h;
  if (!j.is_array() || j.size() != kBins)
    return h;
  for (int i = 0; i < kBins; ++i) {
    if (j[i].is_number_integer() && j[i].get<int64_t>() >= 0) {
      h.bins_[i] = j[i].get<int64_t>();
      h.count_ += h.bins_[i];
    }
  }
  return h;
}

double JensenShannonDistance(const OutputHistogram& a, const OutputHistogram& b) {
  if (a.count() == 0 || b.count() == 0)
    return 0;
  double na = static_cast<double>(a.count()), nb = static_cast<double>(b.count());
  double js = 0;
  for (int i = 0; i < OutputHistogram::kBins; ++i) {
    double p = static_cast<double>(a.bins()[i]) / na;
    double q = static_cast<double>(b.bins()[i]) / nb;
    double m = (p + q) / 2;
    if (p > 0)
      js += 0.5 * p * std::log2(p / m);
    if (q > 0)
      js += 0.5 * q * std::log2(q / m);
  }
  return std::sqrt(std::clamp(js, 0.0, 1.0));
}

double PredictionShiftPValue(const OutputHistogram& a, const OutputHistogram& b) {
  std::array<double, OutputHistogram::kBins> ca{}, cb{};
  for (int i = 0; i < OutputHistogram::kBins; ++i) {
    ca[i] = static_cast<double>(a.bins()[i]);
    cb[i] = static_cast<double>(b.bins()[i]);
  }
  return monitoring::stats::ChiSquareHomogeneity(ca, cb).p_value;
}

void SideStats::Merge(const SideStats& other) {
  requests += other.requests;
  errors += other.errors;
  latency.Merge(other.latency);
  outputs.Merge(other.outputs);
  compared += other.compared;
  agreed += other.agreed;
}

Json SideStats::ToJson() const {
  return {{"requests", requests},        {"errors", errors},     {"latency", latency.ToJson()},
          {"outputs", outputs.ToJson()}, {"compared", compared}, {"agreed", agreed}};
}

SideStats SideStats::FromJson(const Json& j) {
  SideStats s;
  if (!j.is_object())
    return s;
  auto count = [&](const char* key) -> int64_t {
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? std::max<int64_t>(0, it->get<int64_t>()) : 0;
  };
  s.requests = count("requests");
  s.errors = count("errors");
  s.compared = count("compared");
  s.agreed = count("agreed");
  if (auto it = j.find("latency"); it != j.end())
    s.latency = LatencyHistogram::FromJson(*it);
  if (auto it = j.find("outputs"); it != j.end())
    s.outputs = OutputHistogram::FromJson(*it);
  return s;
}

Json SideStats::Summary() const {
  Json out{{"requests", requests}, {"errors", errors}};
  out["error_rate"] =
      requests > 0 ? static_cast<double>(errors) / static_cast<double>(requests) : 0.0;
  out["latency_p50_ms"] = latency.Quantile(0.5) / 1000.0;
  out["latency_p99_ms"] = latency.Quantile(0.99) / 1000.0;
  if (compared > 0) {
    out["compared"] = compared;
    out["agreement"] = static_cast<double>(agreed) / static_cast<double>(compared);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Analysis

Json CheckResult::ToJson() const {
  return {{"name", name},
          {"passed", passed},
          {"value", value},
          {"threshold", threshold},
          {"detail", detail}};
}

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFail:
      return "fail";
    case Verdict::kInconclusive:
      return "inconclusive";
  }
  return "inconclusive";
}

Json Evaluation::ToJson() const {
  Json c = Json::array();
  for (const auto& check : checks)
    c.push_back(check.ToJson());
  return {{"verdict", VerdictName(verdict)},
          {"checks", c},
          {"stable", stable},
          {"candidate", candidate}};
}

Evaluation Analyze(const AnalysisSpec& spec, const SideStats& stable, const SideStats& candidate,
                   bool shadow) {
  Evaluation ev;
  ev.stable = stable.Summary();
  ev.candidate = candidate.Summary();
  double n = static_cast<double>(candidate.requests);
  bool enough = candidate.requests >= spec.min_samples;
  ev.checks.push_back({.name = "sample_size",
                       .passed = enough,
                       .value = n,
                       .threshold = static_cast<double>(spec.min_samples),
                       .detail = fmt::format("{} candidate requests, {} needed", candidate.requests,
                                             spec.min_samples)});
  bool failed = false;
  if (spec.max_error_rate) {
    double rate = n > 0 ? static_cast<double>(candidate.errors) / n : 0;
    // Before the sample is complete, errors count against the full sample:
    // more errors than the whole sample may have is already a failure.
    double allowed = *spec.max_error_rate * static_cast<double>(spec.min_samples);
    bool ok =
        enough ? rate <= *spec.max_error_rate : static_cast<double>(candidate.errors) <= allowed;
    ev.checks.push_back(
        {.name = "error_rate",
         .passed = ok,
         .value = rate,
         .threshold = *spec.max_error_rate,
         .detail = fmt::format("{} errors in {} requests", candidate.errors, candidate.requests)});
    failed |= !ok;
  }
  if (enough) {
    double p99_ms = candidate.latency.Quantile(0.99) / 1000.0;
    if (spec.max_latency_p99_ms) {
      bool ok = p99_ms <= *spec.max_latency_p99_ms;
      ev.checks.push_back({.name = "latency_p99",
                           .passed = ok,
                           .value = p99_ms,
                           .threshold = *spec.max_latency_p99_ms,
                           .detail = fmt::format("candidate p99 {:.3f} ms", p99_ms)});
      failed |= !ok;
    }
    if (spec.max_latency_p99_ratio && stable.requests >= spec.min_samples) {
      double stable_ms = stable.latency.Quantile(0.99) / 1000.0;
      double ratio = stable_ms > 0 ? p99_ms / stable_ms : 1.0;
      bool ok = ratio <= *spec.max_latency_p99_ratio;
      ev.checks.push_back({.name = "latency_p99_ratio",
                           .passed = ok,
                           .value = ratio,
                           .threshold = *spec.max_latency_p99_ratio,
                           .detail = fmt::format("candidate p99 {:.3f} ms, stable p99 {:.3f} ms",
                                                 p99_ms, stable_ms)});
      failed |= !ok;
    }
    if (spec.max_prediction_shift && stable.outputs.count() >= spec.min_samples &&
        candidate.outputs.count() >= spec.min_samples) {
      double shift = JensenShannonDistance(candidate.outputs, stable.outputs);
      double p = PredictionShiftPValue(candidate.outputs, stable.outputs);
      // The distance of two samples of one distribution is well above zero
      // on small samples, so a large distance fails only when the histograms
      // also differ significantly (see docs/rollouts.md).
      bool ok = shift <= *spec.max_prediction_shift || p >= kPredictionShiftAlpha;
      ev.checks.push_back(
          {.name = "prediction_shift",
           .passed = ok,
           .value = shift,
           .threshold = *spec.max_prediction_shift,
           .detail = fmt::format("Jensen-Shannon distance of the prediction histograms "
                                 "({} candidate, {} stable predictions); chi-square "
                                 "homogeneity p = {:.3g}{}",
                                 candidate.outputs.count(), stable.outputs.count(), p,
                                 shift > *spec.max_prediction_shift && ok
                                     ? ", not significant: the distance can be sampling noise"
                                     : "")});
      failed |= !ok;
    }
    if (shadow && spec.min_agreement && candidate.compared > 0) {
      double agreement =
          static_cast<double>(candidate.agreed) / static_cast<double>(candidate.compared);
      bool ok = agreement >= *spec.min_agreement;
      ev.checks.push_back({.name = "agreement",
                           .passed = ok,
                           .value = agreement,
                           .threshold = *spec.min_agreement,
                           .detail = fmt::format("{} of {} mirrored requests agreed",
                                                 candidate.agreed, candidate.compared)});
      failed |= !ok;
    }
  }
  ev.verdict = failed ? Verdict::kFail : (enough ? Verdict::kPass : Verdict::kInconclusive);
  return ev;
}

// ---------------------------------------------------------------------------
// Progress

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kWait:
      return "wait";
    case Action::kAdvance:
      return "advance";
    case Action::kPromote:
      return "promote";
    case Action::kRollback:
      return "rollback";
  }
  return "wait";
}

std::string_view PhaseName(Phase p) {
  switch (p) {
    case Phase::kStable:
      return "stable";
    case Phase::kShadow:
      return "shadow";
    case Phase::kCanary:
      return "canary";
    case Phase::kPreview:
      return "preview";
  }
  return "stable";
}

Progress FirstPhase(const RolloutSpec& spec, int64_t now_us) {
  Progress p;
  p.step_started_us = now_us;
  if (spec.shadow)
    p.phase = Phase::kShadow;
  else if (spec.strategy == "canary")
    p.phase = Phase::kCanary;
  else if (spec.strategy == "bluegreen")
    p.phase = Phase::kPreview;
  else
    p.phase = Phase::kStable;  // direct: nothing to analyse, promote at once
  return p;
}

std::optional<Progress> NextPhase(const RolloutSpec& spec, const Progress& current,
                                  int64_t now_us) {
  Progress next = current;
  next.step_started_us = now_us;
  next.step_requests = 0;
  switch (current.phase) {
    case Phase::kShadow:
      if (spec.strategy == "canary") {
        next.phase = Phase::kCanary;
        next.step = 0;
        return next;
      }
      if (spec.strategy == "bluegreen") {
        next.phase = Phase::kPreview;
        return next;
      }
      return std::nullopt;
    case Phase::kCanary:
      if (current.step + 1 < static_cast<int>(spec.steps.size())) {
        next.step = current.step + 1;
        return next;
      }
      return std::nullopt;
    case Phase::kPreview:
    case Phase::kStable:
      return std::nullopt;
  }
  return std::nullopt;
}

Action Decide(const RolloutSpec& spec, const Progress& progress, Verdict verdict, int64_t now_us) {
  if (verdict == Verdict::kFail)
    return progress.failures >= spec.analysis.failure_limit ? Action::kRollback : Action::kWait;
  if (verdict != Verdict::kPass)
    return Action::kWait;
  int64_t min_duration_s = 0, min_requests = 0;
  switch (progress.phase) {
    case Phase::kShadow:
      min_duration_s = spec.shadow ? spec.shadow->min_duration_s : 0;
      min_requests = spec.shadow ? spec.shadow->min_requests : 0;
      break;
    case Phase::kCanary:
      if (progress.step >= 0 && progress.step < static_cast<int>(spec.steps.size())) {
        min_duration_s = spec.steps[progress.step].min_duration_s;
        min_requests = spec.steps[progress.step].min_requests;
      }
      break;
    case Phase::kPreview:
      min_duration_s = spec.preview.min_duration_s;
      min_requests = spec.preview.min_requests;
      break;
    case Phase::kStable:
      return Action::kPromote;
  }
  if (now_us - progress.step_started_us < min_duration_s * 1'000'000 ||
      progress.step_requests < min_requests)
    return Action::kWait;
  return NextPhase(spec, progress, now_us) ? Action::kAdvance : Action::kPromote;
}

RoutingRule RuleFor(const RolloutSpec& spec, const Progress& progress) {
  RoutingRule rule;
  rule.phase = progress.phase;
  rule.header_routes = spec.header_routes;
  if (progress.phase == Phase::kShadow && spec.shadow)
    rule.shadow_percent = spec.shadow->percent;
  if (progress.phase == Phase::kCanary && progress.step >= 0 &&
      progress.step < static_cast<int>(spec.steps.size()))
    rule.weight = spec.steps[progress.step].weight;
  return rule;
}

}  // namespace kervan::serving
