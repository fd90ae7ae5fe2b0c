// Rollout strategies, traffic routing and analysis: the pure part of serving
// (core only, no I/O, no clock of its own), so the decisions that move real
// traffic are unit-tested exhaustively. Part of serving's public header.
//
// A rollout moves a candidate version onto an endpoint that a stable version
// serves:
//
//   shadow (optional)  a share of live requests is mirrored to the candidate;
//                      the caller only ever sees the stable answer.
//   canary steps       each step sends `weight` percent of traffic to the
//                      candidate for at least min_duration_s and
//                      min_requests candidate requests, and must pass
//                      analysis before the next step.
//   blue/green         the candidate serves only the preview route until its
//                      analysis passes, then takes all traffic at once; the
//                      previous version stays loaded for an instant rollback.
//   direct             the candidate takes all traffic at once (the first
//                      deployment of an endpoint has nothing to compare with).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/core.h"

namespace kervan::serving {

using core::Json;
using core::Result;
using core::Status;

struct CanaryStep {
  double weight = 0;           // percent of requests to the candidate, (0, 100]
  int64_t min_duration_s = 0;  // the step lasts at least this long
  int64_t min_requests = 0;    // and sees at least this many candidate requests
  Json ToJson() const;
};

// Blue/green: how long the candidate serves the preview route, and how many
// preview requests it answers, before the switch.
struct PreviewSpec {
  int64_t min_duration_s = 30;
  int64_t min_requests = 20;
  Json ToJson() const;
};

struct ShadowSpec {
  double percent = 100;  // share of requests mirrored, (0, 100]
  int64_t min_duration_s = 0;
  int64_t min_requests = 0;
  Json ToJson() const;
};

// Checks of one analysis. Each threshold is optional; a check with no
// threshold is not evaluated. Defaults are in docs/rollouts.md.
struct AnalysisSpec {
  int64_t interval_s = 10;   // evaluate every interval
  int64_t window_s = 60;     // over the requests of the last window
  int failure_limit = 2;     // failed evaluations (in a row or not) before rollback
  int64_t min_samples = 20;  // candidate requests a verdict needs
  std::optional<double> max_error_rate = 0.01;      // candidate errors / requests
  std::optional<double> max_latency_p99_ms;         // candidate p99, milliseconds
  std::optional<double> max_latency_p99_ratio = 2;  // candidate p99 / stable p99
  // Jensen-Shannon distance (base 2, in [0, 1]) between the candidate's and
  // the stable version's prediction histograms.
  std::optional<double> max_prediction_shift = 0.2;
  std::optional<double> min_agreement;  // shadow: share of mirrored requests that agree
  Json ToJson() const;
};

// Requests whose header `header` equals `value` (case-sensitive value,
// case-insensitive name) go to `target` ("candidate" or "stable"): A/B tests
// and internal testers.
struct HeaderRoute {
  std::string header, value, target = "candidate";
  Json ToJson() const;
};

struct RolloutSpec {
  std::string strategy = "canary";  // "canary" | "bluegreen" | "direct"
  std::optional<ShadowSpec> shadow;
  std::vector<CanaryStep> steps;  // canary: at least one; others: none
  PreviewSpec preview;            // bluegreen
  AnalysisSpec analysis;
  std::vector<HeaderRoute> header_routes;

  Json ToJson() const;
  // Strict: unknown keys, out-of-range values and inconsistent strategies
  // are kInvalidArgument naming the field ("strategy.steps[1].weight").
  // Missing parts get defaults: canary without steps gets 10/50/100 % steps
  // of 30 s and 50 requests each.
  static Result<RolloutSpec> FromJson(const Json& json, const std::string& prefix = "");
};

// ---------------------------------------------------------------------------
// Routing

enum class Phase {
  kStable,   // only the stable version serves
  kShadow,   // stable serves, a share is mirrored to the candidate
  kCanary,   // `weight` percent to the candidate
  kPreview,  // blue/green before the switch: candidate only on the preview route
};

// What the gateway needs to route one endpoint's requests.
struct RoutingRule {
  Phase phase = Phase::kStable;
  double weight = 0;                       // kCanary
  double shadow_percent = 0;               // kShadow
  std::vector<HeaderRoute> header_routes;  // any phase with a candidate
};

enum class Target { kStable, kCandidate };

struct RouteDecision {
  Target target = Target::kStable;
  bool mirror = false;  // also send to the candidate, answer from stable
  std::string reason;   // "weight", "sticky", "header", "shadow", "stable"
};

// Decides where one request goes. `header` looks a request header up by
// lowercase name ("" when absent). `sticky_key` (may be empty) pins a caller
// to one side for a given weight: the same key always lands on the same side
// as long as the weight does not change, and raising the weight only moves
// keys from stable to candidate. `uniform` is a random number in [0, 1) used
// when there is no key.
RouteDecision DecideRoute(const RoutingRule& rule, std::string_view sticky_key,
                          const std::function<std::string(std::string_view)>& header,
                          double uniform);

// The sticky key's position in [0, 100): a stable hash (FNV-1a 64) of the key.
double StickyPosition(std::string_view key);

// ---------------------------------------------------------------------------
// Window statistics

// Latency in microseconds, log-spaced buckets (10 per decade, 1 µs .. 100 s);
// quantiles interpolate inside a bucket, so they are within ~12 % of exact.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 81;
  void Observe(double micros);
  void Merge(const LatencyHistogram& other);
  double Quantile(double q) const;  // 0 when empty
  int64_t count() const { return count_; }
  Json ToJson() const;  // {"counts": [...]} sparse as [[bucket, n], ...]
  static LatencyHistogram FromJson(const Json& j);

 private:
  std::array<int64_t, kBuckets> counts_{};
  int64_t count_ = 0;
};

// Predictions (the first output value of each request) in 20 equal bins over
// [0, 1] plus one below and one above: the model's score distribution for
// classifiers (probabilities); regression outputs outside [0, 1] land in the
// two outer bins, so shift is then coarse (documented).
class OutputHistogram {
 public:
  static constexpr int kBins = 22;
  void Observe(double value);
  void Merge(const OutputHistogram& other);
  int64_t count() const { return count_; }
  const std::array<int64_t, kBins>& bins() const { return bins_; }
  Json ToJson() const;
  static OutputHistogram FromJson(const Json& j);

 private:
  std::array<int64_t, kBins> bins_{};
  int64_t count_ = 0;
};

// Jensen-Shannon distance (the square root of the divergence, log base 2),
// in [0, 1]; 0 when either side is empty.
double JensenShannonDistance(const OutputHistogram& a, const OutputHistogram& b);

// The p-value of Pearson's chi-square test of homogeneity on the two
// histograms (monitoring::stats::ChiSquareHomogeneity): how likely a
// difference this large is between two samples of one distribution. 1 when
// either side is empty.
double PredictionShiftPValue(const OutputHistogram& a, const OutputHistogram& b);

// prediction_shift fails only when the distance exceeds its threshold and the
// histograms differ at this significance level: on a few dozen predictions
// per side, two identical models' distance exceeds 0.2 by chance.
inline constexpr double kPredictionShiftAlpha = 0.01;

// What one side (stable or candidate) did over some time.
struct SideStats {
  int64_t requests = 0;
  int64_t errors = 0;
  LatencyHistogram latency;
  OutputHistogram outputs;
  int64_t compared = 0;  // shadow: mirrored requests whose outputs were compared
  int64_t agreed = 0;
  void Merge(const SideStats& other);
  Json ToJson() const;  // the full form (histograms included), for reports
  static SideStats FromJson(const Json& j);
  Json Summary() const;  // the numbers an evaluation shows
};

// ---------------------------------------------------------------------------
// Analysis

struct CheckResult {
  std::string name;  // "error_rate", "latency_p99", ...
  bool passed = true;
  double value = 0, threshold = 0;
  std::string detail;
  Json ToJson() const;
};

enum class Verdict { kPass, kFail, kInconclusive };
std::string_view VerdictName(Verdict v);

struct Evaluation {
  Verdict verdict = Verdict::kInconclusive;
  std::vector<CheckResult> checks;
  Json stable = Json::object(), candidate = Json::object();  // SideStats::Summary
  Json ToJson() const;
};

// Compares the candidate's window with the stable one's. Inconclusive while
// the candidate has fewer than min_samples requests — unless its errors
// alone already exceed what max_error_rate allows over min_samples requests
// (a broken candidate fails fast instead of waiting for a sample).
Evaluation Analyze(const AnalysisSpec& spec, const SideStats& stable, const SideStats& candidate,
                   bool shadow);

// ---------------------------------------------------------------------------
// Progress

// Where an active rollout stands, as the controller stores it.
struct Progress {
  Phase phase = Phase::kStable;  // kShadow, kCanary or kPreview while active
  int step = 0;                  // kCanary: index into steps
  int64_t step_started_us = 0;
  int64_t step_requests = 0;  // candidate requests seen in this step
  int failures = 0;
};

enum class Action { kWait, kAdvance, kPromote, kRollback };
std::string_view ActionName(Action a);

// The controller's decision after one evaluation: a failed evaluation that
// reaches failure_limit rolls back; a pass advances once the step's duration
// and request minimums are met (the last step, or blue/green's preview,
// promotes). `failures` already counts this evaluation.
Action Decide(const RolloutSpec& spec, const Progress& progress, Verdict verdict, int64_t now_us);

// The first phase of a rollout and the phase after the current one.
Progress FirstPhase(const RolloutSpec& spec, int64_t now_us);
// nullopt: the current phase was the last one (promote).
std::optional<Progress> NextPhase(const RolloutSpec& spec, const Progress& current, int64_t now_us);
std::string_view PhaseName(Phase p);
RoutingRule RuleFor(const RolloutSpec& spec, const Progress& progress);

}  // namespace kervan::serving
