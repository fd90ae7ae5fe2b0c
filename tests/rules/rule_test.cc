// Rules, the pure part: parsing with field + line errors, condition
// evaluation over attributes / data / metrics, `for` and cooldown, alert
// resolution, placeholders.
#include "rules/rule.h"

#include <gtest/gtest.h>

namespace kervan::rules {
namespace {

constexpr const char* kDrift = R"(name: retrain-on-drift
description: retrain when inputs drift
on:
  events: ["monitor.*"]
when: "metrics.drift_share >= 0.5 and subject_id = 'bc'"
for: 3
cooldown: 10m
actions:
  - alert: {severity: warning, summary: "drift on {{subject_id}}"}
  - start_pipeline: {pipeline: retrain, params: {endpoint: "{{subject_id}}", share: "{{metrics.drift_share}}"}}
)";

RuleSpec Parsed(const std::string& yaml) {
  auto r = ParseRule(yaml);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? *r : RuleSpec{};
}

Observation Obs(double share, int64_t t_s, std::string subject = "bc") {
  Observation o;
  o.time_us = t_s * 1'000'000;
  o.subject = subject;
  o.attributes = {{"subject_id", subject}, {"type", "monitor.evaluated"}};
  o.metrics = {{"drift_share", share}};
  return o;
}

TEST(RuleSpec, ParsesEveryField) {
  RuleSpec r = Parsed(kDrift);
  EXPECT_EQ(r.name, "retrain-on-drift");
  EXPECT_EQ(r.events, std::vector<std::string>{"monitor."});
  EXPECT_TRUE(r.MatchesEventType("monitor.evaluated"));
  EXPECT_FALSE(r.MatchesEventType("monitors.x"));
  EXPECT_EQ(r.for_count, 3);
  EXPECT_EQ(r.cooldown_ms, 600'000);
  ASSERT_EQ(r.actions.size(), 2u);
  EXPECT_EQ(r.actions[1].type, ActionType::kStartPipeline);
  EXPECT_EQ(r.when.clauses.size(), 2u);
  // The canonical form reads back to the same spec.
  EXPECT_EQ(r.ToJson()["when"], "metrics.drift_share >= 0.5 AND attributes.subject_id = 'bc'");
}

TEST(RuleSpec, ErrorsNameTheFieldAndLine) {
  struct Case {
    std::string yaml, field, needle;
  };
  std::vector<Case> cases = {
      {"name: Bad Name\non: {events: [a]}\nwhen: \"metrics.x > 1\"\nactions: [{alert: {summary: "
       "s}}]\n",
       "name", "(line 1)"},
      {"name: r\nwhen: \"metrics.x > 1\"\nactions: [{alert: {summary: s}}]\n", "on", "required"},
      {"name: r\non: {events: [a]}\nwhen: \"metrics.x >\"\nactions: [{alert: {summary: s}}]\n",
       "when", "(line 3)"},
      {"name: r\non: {events: [a]}\nwhen: \"metrics.x > 1\"\nactions:\n  - alert: {summary: s}\n  "
       "- alert: {severity: loud, summary: s}\n",
       "actions[1].alert.severity", "(line 6)"},
      {"name: r\non: {events: [a]}\nwhen: \"metrics.x > 1\"\nactions:\n  - explode: {}\n",
       "actions[0].explode", "unknown action type"},
      {"name: r\non: {events: [a]}\nwhen: \"metrics.x > 1\"\nactions:\n  - start_pipeline: "
       "{params: {}}\n",
       "actions[0].start_pipeline", "missing required parameter \"pipeline\""},
      {"name: r\non: {every: 10ms}\nwhen: \"metrics.x > 1\"\nactions: [{alert: {summary: s}}]\n",
       "on.every", "at least 1s"},
      {"name: r\non: {events: [a]}\nwhen: \"params.x = '1'\"\nactions: [{alert: {summary: s}}]\n",
       "when", "data.<path> and metrics.<name>"},
      {"name: r\non: {events: [a]}\nwhen: \"metrics.x > 1\"\nfor: 0\nactions: [{alert: {summary: "
       "s}}]\n",
       "for", "between 1"},
      {"name: r\non: {events: [a]}\nwhen: \"metrics.x > 1\"\nactions:\n  - approval: {summary: s, "
       "actions: [{approval: {summary: t, actions: [{alert: {summary: u}}]}}]}\n",
       "actions[0].approval.actions[0].approval", "cannot contain another approval"},
      {"name: r\non: {events: [a]}\nwhen: \"metrics.x > 1\"\nsurprise: 1\nactions: [{alert: "
       "{summary: s}}]\n",
       "surprise", "unknown key"},
      {"name: r\n  bad: [\n", "rule", "malformed YAML"},
  };
  for (const auto& c : cases) {
    auto r = ParseRule(c.yaml);
    ASSERT_FALSE(r) << c.yaml;
    EXPECT_EQ(r.error().field, c.field) << r.error().message;
    EXPECT_NE(r.error().message.find(c.needle), std::string::npos) << r.error().message;
  }
}

TEST(RuleCondition, ForThreeFiresOnTheThirdConsecutiveBreachAndNotDuringCooldown) {
  RuleSpec r = Parsed(kDrift);
  ConditionState st;
  std::vector<bool> fired;
  // breach, breach, ok (breaks the streak), breach x3 (fires on the third),
  // breach x2 inside the 10 min cooldown, then one after it.
  std::vector<std::pair<double, int64_t>> seq = {{0.6, 0},  {0.7, 10},  {0.1, 20},
                                                 {0.6, 30}, {0.6, 40},  {0.6, 50},
                                                 {0.9, 60}, {0.9, 300}, {0.9, 700}};
  for (auto [share, t] : seq)
    fired.push_back(Step(r, st, Evaluate(r, Obs(share, t)), t * 1'000'000).fire);
  EXPECT_EQ(fired,
            (std::vector<bool>{false, false, false, false, false, true, false, false, true}));
}

TEST(RuleCondition, ObservationsWithoutTheValuesDoNotBreakAStreak) {
  RuleSpec r = Parsed(kDrift);
  ConditionState st;
  Observation none = Obs(0, 5);
  none.metrics.clear();  // e.g. monitor.evaluation_started
  EXPECT_EQ(Evaluate(r, none), Applicability::kNotApplicable);
  EXPECT_FALSE(Step(r, st, Evaluate(r, Obs(0.6, 0)), 0).fire);
  EXPECT_FALSE(Step(r, st, Evaluate(r, none), 1).fire);
  EXPECT_FALSE(Step(r, st, Evaluate(r, Obs(0.6, 2)), 2'000'000).fire);
  EXPECT_TRUE(Step(r, st, Evaluate(r, Obs(0.6, 3)), 3'000'000).fire);
  // Another subject keeps its own streak.
  EXPECT_EQ(Evaluate(r, Obs(0.9, 4, "other")), Applicability::kNotMatched);
}

TEST(RuleCondition, ForADurationAndAlertResolution) {
  RuleSpec r = Parsed(
      "name: slow\non: {every: 30s}\nwhen: \"metrics.drift_share > 0.2\"\nfor: 5m\nactions: "
      "[{alert: {summary: s}}]\n");
  ConditionState st;
  EXPECT_FALSE(Step(r, st, Applicability::kMatched, 0).fire);
  EXPECT_FALSE(Step(r, st, Applicability::kMatched, 299'000'000).fire);
  EXPECT_TRUE(Step(r, st, Applicability::kMatched, 300'000'000).fire);
  st.alert_active = true;
  StepResult out = Step(r, st, Applicability::kNotMatched, 330'000'000);
  EXPECT_TRUE(out.resolve_alert);
  EXPECT_FALSE(st.alert_active);
  EXPECT_EQ(st.consecutive, 0);
}

TEST(RuleCondition, ReadsEventDataAndAttributes) {
  RuleSpec r = Parsed(
      "name: v\non: {events: [model_version.validated]}\nwhen: \"data.to = 'Rejected' and actor "
      "LIKE 'system:%'\"\nactions: [{alert: {summary: s}}]\n");
  Observation o;
  o.attributes = {{"actor", "system:registry"}};
  o.data = {{"to", "Rejected"}};
  EXPECT_EQ(Evaluate(r, o), Applicability::kMatched);
  o.data["to"] = "DeploymentReady";
  EXPECT_EQ(Evaluate(r, o), Applicability::kNotMatched);
}

TEST(RuleParams, PlaceholdersAreFilledOrRefused) {
  Observation o = Obs(0.75, 1);
  o.data = {{"data", {{"version", 7}}}};
  auto out = RenderParams(Json{{"endpoint", "{{subject_id}}"},
                               {"v", "{{data.data.version}}"},
                               {"s", "{{metrics.drift_share}}"}},
                          o);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ((*out)["endpoint"], "bc");
  EXPECT_EQ((*out)["v"], "7");
  EXPECT_EQ((*out)["s"], "0.75");
  auto bad = RenderParams(Json{{"x", "{{data.missing}}"}}, o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("data.missing"), std::string::npos);
}

TEST(RuleDuration, ParsesUnits) {
  EXPECT_EQ(*ParseDurationMs("250ms", "f"), 250);
  EXPECT_EQ(*ParseDurationMs("30s", "f"), 30'000);
  EXPECT_EQ(*ParseDurationMs("5m", "f"), 300'000);
  EXPECT_EQ(*ParseDurationMs("2h", "f"), 7'200'000);
  EXPECT_EQ(*ParseDurationMs("1d", "f"), 86'400'000);
  EXPECT_FALSE(ParseDurationMs("5 minutes", "f"));
  EXPECT_FALSE(ParseDurationMs("", "f"));
}

}  // namespace
}  // namespace kervan::rules
