// The pure rollout logic: specs, routing, histograms, analysis, decisions.
#include "serving/rollout.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace kervan::serving {
namespace {

Json J(const char* text) {
  return Json::parse(text);
}

std::string FieldOf(const Json& spec) {
  auto r = RolloutSpec::FromJson(spec, "strategy.");
  return r ? "<ok>" : r.error().field;
}

TEST(RolloutSpec, DefaultsForCanary) {
  auto spec = RolloutSpec::FromJson(Json::object());
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->strategy, "canary");
  ASSERT_EQ(spec->steps.size(), 3u);
  EXPECT_EQ(spec->steps[0].weight, 10);
  EXPECT_EQ(spec->steps[2].weight, 100);
  EXPECT_FALSE(spec->shadow);
  EXPECT_EQ(spec->analysis.failure_limit, 2);
  ASSERT_TRUE(spec->analysis.max_error_rate);
  EXPECT_DOUBLE_EQ(*spec->analysis.max_error_rate, 0.01);
}

TEST(RolloutSpec, RoundTripsThroughJson) {
  auto spec = RolloutSpec::FromJson(J(R"({
      "strategy": "canary",
      "shadow": {"percent": 50, "min_duration_s": 5, "min_requests": 10},
      "steps": [{"weight": 20, "min_duration_s": 1, "min_requests": 5}, {"weight": 60}],
      "analysis": {"interval_s": 2, "window_s": 20, "failure_limit": 3, "min_samples": 7,
                   "max_error_rate": 0.05, "max_latency_p99_ms": 25, "max_latency_p99_ratio": null,
                   "max_prediction_shift": 0.3, "min_agreement": 0.9},
      "header_routes": [{"header": "X-Group", "value": "beta"}]})"));
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->shadow->percent, 50);
  EXPECT_EQ(spec->steps[1].min_requests, 50);           // default
  EXPECT_FALSE(spec->analysis.max_latency_p99_ratio);   // null disables
  EXPECT_EQ(spec->header_routes[0].header, "x-group");  // lowercased
  auto again = RolloutSpec::FromJson(spec->ToJson());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->ToJson(), spec->ToJson());
}

TEST(RolloutSpec, BadSpecsNameTheField) {
  EXPECT_EQ(FieldOf(J(R"({"strategy": "linear"})")), "strategy.strategy");
  EXPECT_EQ(FieldOf(J(R"({"steps": [{"weight": 0}]})")), "strategy.steps[0].weight");
  EXPECT_EQ(FieldOf(J(R"({"steps": [{"weight": 101}]})")), "strategy.steps[0].weight");
  EXPECT_EQ(FieldOf(J(R"({"steps": [{"weight": 50}, {"weight": 20}]})")),
            "strategy.steps[1].weight");
  EXPECT_EQ(FieldOf(J(R"({"steps": [{}]})")), "strategy.steps[0].weight");
  EXPECT_EQ(FieldOf(J(R"({"steps": [{"weight": 5, "weigth": 1}]})")), "strategy.steps[0].weigth");
  EXPECT_EQ(FieldOf(J(R"({"strategy": "bluegreen", "steps": [{"weight": 5}]})")), "strategy.steps");
  EXPECT_EQ(FieldOf(J(R"({"strategy": "canary", "preview": {}})")), "strategy.preview");
  EXPECT_EQ(FieldOf(J(R"({"shadow": {"percent": 0}})")), "strategy.shadow.percent");
  EXPECT_EQ(FieldOf(J(R"({"analysis": {"interval_s": 0}})")), "strategy.analysis.interval_s");
  EXPECT_EQ(FieldOf(J(R"({"analysis": {"interval_s": 30, "window_s": 10}})")),
            "strategy.analysis.window_s");
  EXPECT_EQ(FieldOf(J(R"({"analysis": {"max_error_rate": 2}})")),
            "strategy.analysis.max_error_rate");
  EXPECT_EQ(FieldOf(J(R"({"analysis": {"max_error_rate": "low"}})")),
            "strategy.analysis.max_error_rate");
  EXPECT_EQ(FieldOf(J(R"({"header_routes": [{"header": "x", "value": "y", "target": "both"}]})")),
            "strategy.header_routes[0].target");
  EXPECT_EQ(FieldOf(J(R"({"extra": 1})")), "strategy.extra");
}

// ---------------------------------------------------------------- routing

std::string NoHeader(std::string_view) {
  return "";
}

TEST(Routing, WeightsHoldWithinStatisticalTolerance) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (double weight : {1.0, 10.0, 50.0, 90.0}) {
    RoutingRule rule{.phase = Phase::kCanary, .weight = weight};
    const int n = 200000;
    int candidate = 0;
    for (int i = 0; i < n; ++i)
      candidate += DecideRoute(rule, "", NoHeader, u(rng)).target == Target::kCandidate;
    double p = weight / 100.0;
    double sigma = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(candidate, n * p, 4 * sigma) << "weight " << weight;
  }
}

TEST(Routing, StickyKeysSplitByWeightAndOnlyMoveTowardTheCandidate) {
  RoutingRule low{.phase = Phase::kCanary, .weight = 20};
  RoutingRule high{.phase = Phase::kCanary, .weight = 60};
  int at_low = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::string key = "user-" + std::to_string(i);
    Target a = DecideRoute(low, key, NoHeader, 0.99).target;
    // The same key lands on the same side whatever the random draw.
    EXPECT_EQ(DecideRoute(low, key, NoHeader, 0.01).target, a);
    if (a == Target::kCandidate) {
      ++at_low;
      EXPECT_EQ(DecideRoute(high, key, NoHeader, 0.5).target, Target::kCandidate) << key;
    }
  }
  double sigma = std::sqrt(n * 0.2 * 0.8);
  EXPECT_NEAR(at_low, n * 0.2, 4 * sigma);
}

TEST(Routing, HeaderRoutesWinAndShadowMirrorsAShare) {
  RoutingRule rule{
      .phase = Phase::kCanary,
      .weight = 0.0001,
      .header_routes = {{.header = "x-group", .value = "beta", .target = "candidate"}}};
  auto beta = [](std::string_view name) { return name == "x-group" ? std::string("beta") : ""; };
  RouteDecision d = DecideRoute(rule, "", beta, 0.99);
  EXPECT_EQ(d.target, Target::kCandidate);
  EXPECT_EQ(d.reason, "header");
  EXPECT_EQ(DecideRoute(rule, "", NoHeader, 0.99).target, Target::kStable);

  RoutingRule shadow{.phase = Phase::kShadow, .shadow_percent = 30};
  EXPECT_TRUE(DecideRoute(shadow, "", NoHeader, 0.29).mirror);
  EXPECT_FALSE(DecideRoute(shadow, "", NoHeader, 0.31).mirror);
  EXPECT_EQ(DecideRoute(shadow, "", NoHeader, 0.1).target, Target::kStable);
  // Preview (blue/green before the switch): the main route stays stable.
  RoutingRule preview{.phase = Phase::kPreview};
  EXPECT_EQ(DecideRoute(preview, "", NoHeader, 0.0).target, Target::kStable);
}

// ---------------------------------------------------------------- histograms

TEST(Histograms, LatencyQuantilesAreWithinABucket) {
  LatencyHistogram h;
  for (int i = 1; i <= 1000; ++i)
    h.Observe(i * 10.0);  // 10 us .. 10 ms, uniform
  EXPECT_NEAR(h.Quantile(0.5), 5000, 5000 * 0.13);
  EXPECT_NEAR(h.Quantile(0.99), 9900, 9900 * 0.13);
  LatencyHistogram copy = LatencyHistogram::FromJson(h.ToJson());
  EXPECT_EQ(copy.count(), 1000);
  EXPECT_DOUBLE_EQ(copy.Quantile(0.99), h.Quantile(0.99));
  EXPECT_EQ(LatencyHistogram().Quantile(0.99), 0);
}

TEST(Histograms, JensenShannonDistanceOfKnownDistributions) {
  OutputHistogram a, b, c;
  for (int i = 0; i < 100; ++i) {
    a.Observe(0.02);  // bin of [0, 0.05)
    b.Observe(0.02);
    c.Observe(0.97);  // bin of [0.95, 1]
  }
  EXPECT_NEAR(JensenShannonDistance(a, b), 0, 1e-12);
  EXPECT_NEAR(JensenShannonDistance(a, c), 1, 1e-12);  // disjoint: the maximum
  // Half the mass moved: JS = 1 - 0.5*log2(...)... computed by hand:
  // p = (1, 0), q = (0.5, 0.5), m = (0.75, 0.25):
  // JS = 0.5*log2(1/0.75) + 0.5*(0.5*log2(0.5/0.75) + 0.5*log2(0.5/0.25)).
  OutputHistogram d;
  for (int i = 0; i < 50; ++i) {
    d.Observe(0.02);
    d.Observe(0.97);
  }
  double js = 0.5 * std::log2(1 / 0.75) + 0.5 * (0.5 * std::log2(0.5 / 0.75) + 0.5 * 1.0);
  EXPECT_NEAR(JensenShannonDistance(a, d), std::sqrt(js), 1e-12);
}

// ---------------------------------------------------------------- analysis

SideStats Side(int64_t requests, int64_t errors, double latency_us, double output) {
  SideStats s;
  for (int64_t i = 0; i < requests; ++i) {
    s.requests++;
    if (i < errors) {
      s.errors++;
    } else {
      s.outputs.Observe(output);
    }
    s.latency.Observe(latency_us);
  }
  return s;
}

TEST(Analysis, GoodCandidatePasses) {
  AnalysisSpec spec;
  Evaluation ev = Analyze(spec, Side(200, 0, 500, 0.3), Side(50, 0, 600, 0.31), false);
  EXPECT_EQ(ev.verdict, Verdict::kPass) << ev.ToJson().dump();
  EXPECT_EQ(ev.candidate["requests"], 50);
}

TEST(Analysis, TooFewSamplesIsInconclusive) {
  AnalysisSpec spec;  // min_samples 20
  Evaluation ev = Analyze(spec, Side(200, 0, 500, 0.3), Side(5, 0, 600, 0.3), false);
  EXPECT_EQ(ev.verdict, Verdict::kInconclusive);
}

TEST(Analysis, ErrorsFailEvenBeforeTheSampleIsComplete) {
  AnalysisSpec spec;  // max 1 % of 20 = 0.2 errors
  Evaluation ev = Analyze(spec, Side(200, 0, 500, 0.3), Side(3, 3, 600, 0.3), false);
  EXPECT_EQ(ev.verdict, Verdict::kFail) << ev.ToJson().dump();
}

TEST(Analysis, SlowCandidateFailsOnTheLatencyRatio) {
  AnalysisSpec spec;  // p99 ratio <= 2
  Evaluation ev = Analyze(spec, Side(200, 0, 500, 0.3), Side(50, 0, 50000, 0.3), false);
  EXPECT_EQ(ev.verdict, Verdict::kFail);
  bool found = false;
  for (const auto& c : ev.checks) {
    if (c.name == "latency_p99_ratio") {
      found = true;
      EXPECT_FALSE(c.passed);
      EXPECT_GT(c.value, 50);
    }
  }
  EXPECT_TRUE(found);
}

TEST(Analysis, ShiftedPredictionsFail) {
  AnalysisSpec spec;
  Evaluation ev = Analyze(spec, Side(200, 0, 500, 0.1), Side(50, 0, 500, 0.9), false);
  EXPECT_EQ(ev.verdict, Verdict::kFail);
}

// Two samples of one model's score distribution, a few dozen predictions per
// side: the distance alone exceeds the default 0.2 often (the flaky rollback
// of a CI run), the check with its significance test almost never.
TEST(Analysis, PredictionShiftOfOneDistributionOnSmallSamplesRarelyFails) {
  AnalysisSpec spec;  // max_prediction_shift 0.2, min_samples 20
  std::mt19937_64 rng(42);
  constexpr int kTrials = 1000;
  int distance_over = 0, failed = 0;
  for (int t = 0; t < kTrials; ++t) {
    // Scores of a classifier: a mixture of two normal bumps, clamped to [0, 1].
    auto draw = [&rng] {
      std::normal_distribution<double> low(0.2, 0.1), high(0.75, 0.12);
      double v = std::bernoulli_distribution(0.6)(rng) ? low(rng) : high(rng);
      return std::clamp(v, 0.0, 1.0);
    };
    SideStats stable = Side(37, 0, 500, 0), candidate = Side(37, 0, 500, 0);
    stable.outputs = OutputHistogram();
    candidate.outputs = OutputHistogram();
    for (int i = 0; i < 37; ++i) {
      stable.outputs.Observe(draw());
      candidate.outputs.Observe(draw());
    }
    distance_over += JensenShannonDistance(candidate.outputs, stable.outputs) > 0.2;
    Evaluation ev = Analyze(spec, stable, candidate, false);
    for (const auto& c : ev.checks)
      failed += c.name == "prediction_shift" && !c.passed;
  }
  // Measured with this seed: the distance exceeds 0.2 in all 1000 trials and
  // the check fails in none. (With 200 predictions per side: 354 and 10, the
  // 1 % that alpha 0.01 allows.)
  EXPECT_GT(distance_over, kTrials / 2);
  EXPECT_LE(failed, kTrials / 50);
}

TEST(Analysis, AClearPredictionShiftFailsOnSmallSamplesToo) {
  AnalysisSpec spec;
  SideStats stable = Side(25, 0, 500, 0.2), candidate = Side(25, 0, 500, 0.2);
  candidate.outputs = OutputHistogram();
  for (int i = 0; i < 25; ++i)
    candidate.outputs.Observe(i % 2 ? 0.2 : 0.8);  // half the scores moved
  Evaluation ev = Analyze(spec, stable, candidate, false);
  EXPECT_EQ(ev.verdict, Verdict::kFail) << ev.ToJson().dump();
  EXPECT_LT(PredictionShiftPValue(candidate.outputs, stable.outputs), kPredictionShiftAlpha);
}

TEST(Analysis, ShadowAgreement) {
  AnalysisSpec spec;
  spec.min_agreement = 0.95;
  SideStats candidate = Side(50, 0, 500, 0.3);
  candidate.compared = 50;
  candidate.agreed = 40;
  EXPECT_EQ(Analyze(spec, Side(200, 0, 500, 0.3), candidate, true).verdict, Verdict::kFail);
  candidate.agreed = 50;
  EXPECT_EQ(Analyze(spec, Side(200, 0, 500, 0.3), candidate, true).verdict, Verdict::kPass);
}

// ---------------------------------------------------------------- decisions

TEST(Decide, CanaryStepsAdvanceThenPromote) {
  auto spec = RolloutSpec::FromJson(J(R"({"steps": [{"weight": 10, "min_duration_s": 5,
      "min_requests": 30}, {"weight": 50, "min_duration_s": 0, "min_requests": 0}]})"));
  ASSERT_TRUE(spec);
  Progress p = FirstPhase(*spec, 1'000'000);
  EXPECT_EQ(p.phase, Phase::kCanary);
  p.step_requests = 30;
  EXPECT_EQ(Decide(*spec, p, Verdict::kPass, 3'000'000), Action::kWait);  // 2 s < 5 s
  EXPECT_EQ(Decide(*spec, p, Verdict::kPass, 7'000'000), Action::kAdvance);
  p.step_requests = 10;
  EXPECT_EQ(Decide(*spec, p, Verdict::kPass, 7'000'000), Action::kWait);  // too few requests
  auto next = NextPhase(*spec, p, 7'000'000);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->step, 1);
  EXPECT_EQ(next->step_requests, 0);
  EXPECT_EQ(RuleFor(*spec, *next).weight, 50);
  EXPECT_EQ(Decide(*spec, *next, Verdict::kPass, 7'000'000), Action::kPromote);
  EXPECT_EQ(Decide(*spec, *next, Verdict::kInconclusive, 9'000'000), Action::kWait);
}

TEST(Decide, FailuresRollBackAtTheLimit) {
  auto spec = RolloutSpec::FromJson(J(R"({"analysis": {"failure_limit": 2}})"));
  ASSERT_TRUE(spec);
  Progress p = FirstPhase(*spec, 0);
  p.failures = 1;
  EXPECT_EQ(Decide(*spec, p, Verdict::kFail, 0), Action::kWait);
  p.failures = 2;
  EXPECT_EQ(Decide(*spec, p, Verdict::kFail, 0), Action::kRollback);
}

TEST(Decide, ShadowThenCanaryAndBlueGreenPreview) {
  auto spec = RolloutSpec::FromJson(
      J(R"({"shadow": {"percent": 100, "min_duration_s": 0, "min_requests": 0},
            "steps": [{"weight": 25, "min_duration_s": 0, "min_requests": 0}]})"));
  ASSERT_TRUE(spec);
  Progress p = FirstPhase(*spec, 0);
  EXPECT_EQ(p.phase, Phase::kShadow);
  EXPECT_EQ(RuleFor(*spec, p).shadow_percent, 100);
  EXPECT_EQ(Decide(*spec, p, Verdict::kPass, 0), Action::kAdvance);
  EXPECT_EQ(NextPhase(*spec, p, 0)->phase, Phase::kCanary);

  auto bg = RolloutSpec::FromJson(J(R"({"strategy": "bluegreen",
      "preview": {"min_duration_s": 0, "min_requests": 3}})"));
  ASSERT_TRUE(bg) << bg.error().message;
  Progress q = FirstPhase(*bg, 0);
  EXPECT_EQ(q.phase, Phase::kPreview);
  EXPECT_EQ(Decide(*bg, q, Verdict::kPass, 0), Action::kWait);
  q.step_requests = 3;
  EXPECT_EQ(Decide(*bg, q, Verdict::kPass, 0), Action::kPromote);

  auto direct = RolloutSpec::FromJson(J(R"({"strategy": "direct"})"));
  ASSERT_TRUE(direct);
  EXPECT_EQ(FirstPhase(*direct, 0).phase, Phase::kStable);
}

}  // namespace
}  // namespace kervan::serving
