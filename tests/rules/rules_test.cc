// The rule engine on both store backends, fed by real events in the log:
// versions; a rule with `for: 3` fires only on the third consecutive breach
// and not again during its cooldown, with the values it saw in the decision
// event; a replay over the stored history reproduces that firing; a failing
// action is retried and every failure is visible; dry runs act on nothing;
// an approval runs its actions once a person approves.
#include "rules/rules.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "monitoring/monitoring.h"
#include "registry/registry.h"

namespace kervan::rules {
namespace {

using store::testing::BackendTest;
using namespace std::chrono_literals;

store::CommandContext Ctx() {
  return {.actor = "user:alice", .correlation_id = "req-1"};
}

constexpr const char* kDriftRule = R"(name: drift-alert
on:
  events: ["monitor.*"]
when: "metrics.drift_share >= 0.5"
for: 3
cooldown: 1h
actions:
  - alert: {severity: warning, summary: "drift on {{subject_id}}"}
)";

class RulesTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto reg = registry::Registry::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(reg) << reg.error().ToString();
    registry_ = std::move(reg).value();
    // Alerts go to an address nothing listens on: every send fails.
    alerts_ = std::make_unique<monitoring::Alerts>(
        *db_, *log_,
        monitoring::AlertsOptions{.alertmanager_url = "http://127.0.0.1:1", .timeout = 500ms});
    auto m = monitoring::Monitoring::Open(*db_, *log_, *lifecycles_, *registry_, nullptr,
                                          {.auto_monitor = false});
    ASSERT_TRUE(m) << m.error().ToString();
    monitoring_ = std::move(m).value();
    auto r = Rules::Open(
        *db_, *log_, *lifecycles_,
        {.registry = registry_.get(), .monitoring = monitoring_.get(), .alerts = alerts_.get()},
        {.max_attempts = 3, .retry_base = 1ms});
    ASSERT_TRUE(r) << r.error().ToString();
    rules_ = std::move(r).value();
    ASSERT_TRUE(registry_->CreateModel({.name = "bc", .project = "default"}, Ctx()));
    ASSERT_TRUE(registry_->RegisterVersion("bc", {.artifact_uri = "file:///m.json"}, Ctx()));
  }
  void TearDown() override {
    rules_.reset();
    monitoring_.reset();
    alerts_.reset();
    registry_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    BackendTest::TearDown();
  }

  // A monitor evaluation event as the monitoring module writes it.
  store::Event Evaluated(const std::string& monitor, double share) {
    Json data = {{"transition", "evaluated"},
                 {"from", "Evaluating"},
                 {"to", "Monitoring"},
                 {"data", {{"metrics", {{"drift_share", share}, {"rows", 200}}}}}};
    auto e = log_->Append({.type = "monitor.evaluated",
                           .subject_kind = "monitor",
                           .subject_id = monitor,
                           .actor = "system:monitoring",
                           .data = data});
    EXPECT_TRUE(e) << e.error().ToString();
    return *e;
  }
  // Delivers the event to the engine as the subscription does.
  void Deliver(const store::Event& e) {
    auto s = rules_->OnEvent(e);
    ASSERT_TRUE(s) << s.error().ToString();
  }
  std::vector<store::Event> Events(const std::string& type) {
    auto r = log_->Read({.limit = 1000, .type = type});
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : std::vector<store::Event>{};
  }

  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<monitoring::Alerts> alerts_;
  std::unique_ptr<monitoring::Monitoring> monitoring_;
  std::unique_ptr<Rules> rules_;
};

TEST_P(RulesTest, VersionsOnlyWhenTheSpecChanges) {
  auto v1 = rules_->Submit(kDriftRule, Ctx());
  ASSERT_TRUE(v1) << v1.error().ToString();
  EXPECT_TRUE(v1->created_version);
  EXPECT_EQ(v1->rule.version, 1);
  // The same rule with other formatting: no new version.
  std::string same = std::string(kDriftRule) + "\n# a comment\n";
  auto again = rules_->Submit(same, Ctx());
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->created_version);
  EXPECT_EQ(again->rule.version, 1);
  std::string changed = kDriftRule;
  changed.replace(changed.find("for: 3"), 6, "for: 4");
  auto v2 = rules_->Submit(changed, Ctx());
  ASSERT_TRUE(v2);
  EXPECT_TRUE(v2->created_version);
  EXPECT_EQ(v2->rule.version, 2);
  EXPECT_EQ(v2->rule.spec.for_count, 4);
  auto versions = rules_->Versions("drift-alert");
  ASSERT_TRUE(versions);
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ(Events("rule.version_created").size(), 2u);
  auto disabled = rules_->SetEnabled("drift-alert", false, "", Ctx());
  ASSERT_FALSE(disabled);
  EXPECT_EQ(disabled.error().field, "reason");
  EXPECT_EQ(rules_->Get("nope").error().code, core::ErrorCode::kNotFound);
}

TEST_P(RulesTest, ForThreeFiresOnceThenCooldownAndReplayReproducesIt) {
  int64_t start = core::NowMicros();
  ASSERT_TRUE(rules_->Submit(kDriftRule, Ctx()));
  // healthy, breach, breach, (another monitor breaching), breach -> fires,
  // breach x2 in the cooldown.
  std::vector<store::Event> fed;
  fed.push_back(Evaluated("bc", 0.0));
  fed.push_back(Evaluated("bc", 0.6));
  fed.push_back(Evaluated("bc", 1.0));
  fed.push_back(Evaluated("other", 1.0));
  fed.push_back(Evaluated("bc", 0.7));
  fed.push_back(Evaluated("bc", 0.9));
  fed.push_back(Evaluated("bc", 0.9));
  for (size_t i = 0; i < fed.size(); ++i) {
    Deliver(fed[i]);
    size_t expected = i >= 4 ? 1 : 0;
    ASSERT_EQ(Events("rule.fired").size(), expected) << "after event " << i;
  }
  auto fired = Events("rule.fired");
  Json data = Json::parse(fired[0].data);
  EXPECT_EQ(data["rule_version"], 1);
  EXPECT_EQ(data["consecutive"], 3);
  EXPECT_EQ(data["observation"]["subject"], "bc");
  EXPECT_EQ(data["observation"]["event_seq"], fed[4].seq);
  EXPECT_EQ(data["observation"]["metrics"]["drift_share"], 0.7);
  EXPECT_EQ(data["actions"][0]["type"], "alert");
  EXPECT_EQ(data["actions"][0]["params"]["summary"], "drift on bc");
  EXPECT_EQ(fired[0].causation_id, fed[4].id);

  // The replay over the stored events finds the same firing, and only it.
  auto rule = rules_->Get("drift-alert");
  ASSERT_TRUE(rule);
  auto replay = rules_->Replay(rule->spec, start, core::NowMicros() + 1);
  ASSERT_TRUE(replay) << replay.error().ToString();
  ASSERT_EQ((*replay)["would_fire"].size(), 1u) << replay->dump(2);
  EXPECT_EQ((*replay)["would_fire"][0]["event_seq"], fed[4].seq);
  EXPECT_EQ((*replay)["would_fire"][0]["subject"], "bc");
  ASSERT_EQ((*replay)["fired"].size(), 1u);
  EXPECT_EQ((*replay)["fired"][0]["event_seq"], fed[4].seq);
  // A draft with for: 2 would have fired one breach earlier.
  std::string draft = kDriftRule;
  draft.replace(draft.find("for: 3"), 6, "for: 2");
  auto spec = ParseRule(draft);
  ASSERT_TRUE(spec);
  auto earlier = rules_->Replay(*spec, start, core::NowMicros() + 1);
  ASSERT_TRUE(earlier);
  ASSERT_EQ((*earlier)["would_fire"].size(), 1u) << earlier->dump(2);  // "other" breached once
  EXPECT_EQ((*earlier)["would_fire"][0]["event_seq"], fed[2].seq);
}

TEST_P(RulesTest, FailedActionsAreRetriedAndEveryFailureIsVisible) {
  ASSERT_TRUE(rules_->Submit(R"(name: alert-now
on: {events: [monitor.evaluated]}
when: "metrics.drift_share > 0.5"
actions:
  - alert: {summary: "drift"}
  - move_alias: {model: bc, alias: champion, version: 99}
)",
                             Ctx()));
  Deliver(Evaluated("bc", 0.9));
  // Attempt 1 of each ran at once. The alert (Alertmanager unreachable:
  // may pass later) is retried up to max_attempts; the alias (version 99
  // does not exist: would fail the same way) is not.
  for (int i = 0; i < 20 && Events("rule.action_failed").size() < 4; ++i) {
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(rules_->RunCycle(core::NowMicros()));
  }
  auto failed = Events("rule.action_failed");
  ASSERT_EQ(failed.size(), 4u);
  int alias_failures = 0;
  for (const auto& e : failed) {
    Json d = Json::parse(e.data);
    EXPECT_FALSE(d["error"].get<std::string>().empty());
    if (d["type"] == "move_alias") {
      ++alias_failures;
      EXPECT_EQ(d["will_retry"], false);
    }
  }
  EXPECT_EQ(alias_failures, 1);
  Json last = Json::parse(failed.back().data);
  EXPECT_EQ(last["type"], "alert");
  EXPECT_EQ(last["attempt"], 3);
  EXPECT_EQ(last["will_retry"], false);
  auto actions = rules_->Actions("alert-now", 10);
  ASSERT_TRUE(actions);
  ASSERT_EQ(actions->size(), 2u);
  for (const auto& a : *actions) {
    EXPECT_EQ(a["state"], "failed") << a.dump();
    EXPECT_EQ(a["attempts"], a["type"] == "alert" ? 3 : 1) << a.dump();
  }
  // The alert is recorded (firing) with its delivery error.
  auto alerts = alerts_->List(true);
  ASSERT_TRUE(alerts);
  ASSERT_EQ(alerts->size(), 1u);
  EXPECT_EQ((*alerts)[0].key, "alert-now:bc");
  EXPECT_NE((*alerts)[0].send_error.find("127.0.0.1:1"), std::string::npos)
      << (*alerts)[0].send_error;
}

TEST_P(RulesTest, DryRunsDecideButDoNotAct) {
  ASSERT_TRUE(rules_->Submit(R"(name: try-it
on: {events: [monitor.evaluated]}
when: "metrics.drift_share > 0.5"
dry_run: true
actions:
  - move_alias: {model: bc, alias: champion, version: 1}
)",
                             Ctx()));
  Deliver(Evaluated("bc", 0.9));
  auto fired = Events("rule.fired");
  ASSERT_EQ(fired.size(), 1u);
  Json data = Json::parse(fired[0].data);
  EXPECT_EQ(data["dry_run"], true);
  EXPECT_EQ(data["actions"][0]["status"], "skipped (dry run)");
  auto model = registry_->GetModel("bc");
  ASSERT_TRUE(model);
  auto v = registry_->GetVersion("bc", 1);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->aliases.empty());
  auto actions = rules_->Actions("try-it", 10);
  ASSERT_TRUE(actions);
  ASSERT_EQ(actions->size(), 1u);
  EXPECT_EQ((*actions)[0]["state"], "skipped");
}

TEST_P(RulesTest, ApprovalsRunTheirActionsOnceApproved) {
  ASSERT_TRUE(rules_->Submit(R"(name: ask-first
on: {events: [monitor.evaluated]}
when: "metrics.drift_share > 0.5"
actions:
  - approval:
      summary: "point champion at v1 for {{subject_id}}?"
      actions:
        - move_alias: {model: bc, alias: champion, version: 1}
)",
                             Ctx()));
  Deliver(Evaluated("bc", 0.9));
  auto pending = rules_->ListApprovals("Pending");
  ASSERT_TRUE(pending);
  ASSERT_EQ(pending->size(), 1u);
  const store::Entity& approval = (*pending)[0];
  EXPECT_EQ(approval.data["summary"], "point champion at v1 for bc?");
  EXPECT_TRUE(registry_->GetVersion("bc", 1)->aliases.empty());
  // A decision needs a reason.
  EXPECT_FALSE(rules_->Decide(approval.id, true, "", Ctx()));
  auto approved = rules_->Decide(approval.id, true, "checked the drift report", Ctx());
  ASSERT_TRUE(approved) << approved.error().ToString();
  EXPECT_EQ(approved->state, "Approved");
  auto events = Events("approval.approved");
  ASSERT_EQ(events.size(), 1u);
  Deliver(events[0]);
  Deliver(events[0]);  // delivered twice (at-least-once): runs once
  auto v = registry_->GetVersion("bc", 1);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->aliases, std::vector<std::string>{"champion"});
  auto ok = Events("rule.action_succeeded");
  ASSERT_EQ(ok.size(), 2u);  // the approval request, then the alias move
  EXPECT_EQ(ok[1].causation_id, events[0].id);
  EXPECT_EQ(ok[1].actor, kRulesActor);
}

TEST_P(RulesTest, PeriodicRulesReadEachMonitorsLastWindowAndReplayAgrees) {
  // An endpoint serving bc v1, its monitor, and one evaluated window whose
  // numbers say the inputs drifted.
  auto c = db_->Acquire();
  ASSERT_TRUE(c);
  ASSERT_TRUE(
      (*c)->Exec("INSERT INTO serving_endpoints (name, project, model, stable_version, "
                 "previous_version, rollout_id, sample_percent, created_by, created_us, "
                 "updated_us) VALUES ('bc', 'default', 'bc', 1, 0, '', 100, 'alice', 1, "
                 "1)"));
  ASSERT_TRUE(monitoring_->Configure("bc", monitoring::MonitorConfig{}, Ctx()));
  int64_t t0 = core::NowMicros();
  Json last = {{"window", 7}, {"metrics", {{"drift_share", 0.8}, {"rows", 500}}}};
  ASSERT_TRUE((*c)->Exec("UPDATE monitors SET last = ? WHERE id = 'bc'", {last.dump()}));
  ASSERT_TRUE((*c)->Exec(
      "INSERT INTO monitor_evaluations (monitor, model, version, window_no, from_sample, "
      "to_sample, started_us, ended_us, rows_seen, labeled, drift, prediction_drift, "
      "performance, metrics, decision, reasons, performance_us, created_us, updated_us) VALUES "
      "('bc', 'bc', 1, 7, 0, 10, ?, ?, 500, 0, 'null', 'null', 'null', ?, 'retrain', '[]', 0, ?, "
      "?)",
      {t0 - 10, t0 - 5, last["metrics"].dump(), t0, t0}));
  ASSERT_TRUE(rules_->Submit(R"(name: periodic
project: default
on: {every: 1s}
when: "metrics.drift_share > 0.5 and endpoint = 'bc'"
for: 2
cooldown: 1h
actions:
  - alert: {summary: "drift share {{metrics.drift_share}} on {{endpoint}}"}
)",
                             Ctx()));
  ASSERT_TRUE(rules_->RunCycle(t0));
  EXPECT_TRUE(Events("rule.fired").empty());  // one evaluation of two
  ASSERT_TRUE(rules_->RunCycle(t0 + 500'000));
  EXPECT_TRUE(Events("rule.fired").empty());  // not due yet: every 1 s
  ASSERT_TRUE(rules_->RunCycle(t0 + 1'000'000));
  auto fired = Events("rule.fired");
  ASSERT_EQ(fired.size(), 1u);
  Json data = Json::parse(fired[0].data);
  EXPECT_EQ(data["trigger"], "periodic");
  EXPECT_EQ(data["observation"]["subject"], "bc");
  EXPECT_EQ(data["actions"][0]["params"]["summary"], "drift share 0.8 on bc");
  ASSERT_TRUE(rules_->RunCycle(t0 + 2'000'000));
  EXPECT_EQ(Events("rule.fired").size(), 1u);  // cooldown
  // Replayed over the stored evaluations: the same decision at the second tick.
  auto rule = rules_->Get("periodic");
  ASSERT_TRUE(rule);
  auto replay = rules_->Replay(rule->spec, t0, t0 + 3'000'000);
  ASSERT_TRUE(replay) << replay.error().ToString();
  ASSERT_EQ((*replay)["would_fire"].size(), 1u) << replay->dump(2);
  EXPECT_EQ((*replay)["would_fire"][0]["time"], core::FormatRfc3339(t0 + 1'000'000));
  EXPECT_EQ((*replay)["would_fire"][0]["trigger"], "periodic");
}

KERVAN_INSTANTIATE_BACKENDS(RulesTest);

}  // namespace
}  // namespace kervan::rules
