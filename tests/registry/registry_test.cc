// The model registry on both store backends: gates (pure evaluation and the
// automatic decision at registration), manual transitions with reasons,
// aliases and their history, lineage, and the events behind all of it.
#include "registry/registry.h"

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"

namespace kervan::registry {
namespace {

using store::testing::BackendTest;

store::CommandContext Ctx(std::string actor) {
  return {.actor = std::move(actor), .correlation_id = "req-42"};
}

GateCheck Threshold(std::string metric, std::string op, double threshold) {
  return {.kind = GateCheck::Kind::kThreshold,
          .name = metric + op,
          .metric = std::move(metric),
          .op = std::move(op),
          .threshold = threshold};
}

GateCheck Champion(std::string metric, double max_regression, bool higher_is_better = true) {
  return {.kind = GateCheck::Kind::kChampion,
          .name = "vs-champion",
          .metric = std::move(metric),
          .max_regression = max_regression,
          .higher_is_better = higher_is_better};
}

TEST(Gate, ThresholdChecksCompareWithEveryOperator) {
  std::map<std::string, double> m = {{"auc", 0.85}};
  auto passed = [&](const std::string& op, double t) {
    return EvaluateGate({Threshold("auc", op, t)}, m, std::nullopt, 0)[0].passed;
  };
  EXPECT_TRUE(passed(">=", 0.85));
  EXPECT_FALSE(passed(">", 0.85));
  EXPECT_TRUE(passed("<=", 0.85));
  EXPECT_FALSE(passed("<", 0.85));
  EXPECT_TRUE(passed("==", 0.85));
  EXPECT_TRUE(passed("!=", 0.9));
  auto missing = EvaluateGate({Threshold("f1", ">=", 0.5)}, m, std::nullopt, 0);
  EXPECT_FALSE(missing[0].passed);
  EXPECT_TRUE(missing[0].evidence["value"].is_null());
  EXPECT_NE(missing[0].evidence["detail"].get<std::string>().find("no metric \"f1\""),
            std::string::npos);
}

TEST(Gate, ChampionComparisonHonoursDirectionAndAllowance) {
  std::map<std::string, double> champ = {{"auc", 0.90}, {"rmse", 10.0}};
  auto check = [&](GateCheck c, double value) {
    return EvaluateGate({c}, {{c.metric, value}}, champ, 3)[0];
  };
  EXPECT_TRUE(check(Champion("auc", 0.02), 0.885).passed);  // 0.015 worse, allowed 0.02
  CheckOutcome worse = check(Champion("auc", 0.02), 0.87);  // 0.03 worse
  EXPECT_FALSE(worse.passed);
  EXPECT_EQ(worse.evidence["champion_version"], 3);
  EXPECT_DOUBLE_EQ(worse.evidence["champion_value"].get<double>(), 0.90);
  EXPECT_NEAR(worse.evidence["regression"].get<double>(), 0.03, 1e-12);
  EXPECT_TRUE(check(Champion("rmse", 0.0, false), 9.5).passed);  // lower is better
  EXPECT_FALSE(check(Champion("rmse", 0.0, false), 10.5).passed);
  // No champion: nothing to compare with, passes (first model).
  EXPECT_TRUE(EvaluateGate({Champion("auc", 0)}, {{"auc", 0.1}}, std::nullopt, 0)[0].passed);
  // Champion without the metric: cannot verify, fails.
  EXPECT_FALSE(EvaluateGate({Champion("f1", 0)}, {{"f1", 0.9}}, champ, 3)[0].passed);
}

TEST(Gate, CheckJsonIsStrictAndNamesTheField) {
  auto ok = GateCheck::FromJson({{"metric", "auc"}, {"op", ">="}, {"threshold", 0.8}}, "c.");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->name, "metrics.auc >= 0.8");
  auto bad_op = GateCheck::FromJson({{"metric", "auc"}, {"op", "=>"}, {"threshold", 1}}, "c.");
  ASSERT_FALSE(bad_op);
  EXPECT_EQ(bad_op.error().field, "c.op");
  auto no_threshold = GateCheck::FromJson({{"metric", "auc"}}, "c.");
  ASSERT_FALSE(no_threshold);
  EXPECT_EQ(no_threshold.error().field, "c.threshold");
  auto unknown = GateCheck::FromJson({{"metric", "auc"}, {"threshold", 1}, {"thresold", 2}}, "c.");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().field, "c.thresold");
  auto type = GateCheck::FromJson({{"metric", "auc"}, {"type", "magic"}}, "c.");
  ASSERT_FALSE(type);
  EXPECT_EQ(type.error().field, "c.type");
  auto negative =
      GateCheck::FromJson({{"metric", "auc"}, {"type", "champion"}, {"max_regression", -1}}, "c.");
  ASSERT_FALSE(negative);
  EXPECT_EQ(negative.error().field, "c.max_regression");
}

TEST(Names, ModelAndAliasNamesAreValidated) {
  EXPECT_TRUE(ValidateModelName("credit-risk.v2_x"));
  EXPECT_FALSE(ValidateModelName(""));
  EXPECT_FALSE(ValidateModelName("../etc"));
  EXPECT_FALSE(ValidateModelName("a/b"));
  EXPECT_FALSE(ValidateModelName(std::string(129, 'a')));
  EXPECT_TRUE(ValidateAliasName("champion"));
  EXPECT_FALSE(ValidateAliasName("latest"));
  EXPECT_FALSE(ValidateAliasName("Champion"));
  EXPECT_FALSE(ValidateAliasName("1st"));
}

class RegistryTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto r = Registry::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(r) << r.error().ToString();
    registry_ = std::move(r).value();
    auto m =
        registry_->CreateModel({.name = "credit",
                                .project = "risk",
                                .checks = {Threshold("auc", ">=", 0.85), Champion("auc", 0.02)}},
                               Ctx("user:erin"));
    ASSERT_TRUE(m) << m.error().ToString();
  }
  void TearDown() override {
    registry_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    BackendTest::TearDown();
  }

  ModelVersion Register(double auc) {
    auto v = registry_->RegisterVersion(
        "credit", {.source_run_id = "run-" + std::to_string(auc), .metrics = {{"auc", auc}}},
        Ctx("user:alice"));
    EXPECT_TRUE(v) << v.error().ToString();
    return v ? *v : ModelVersion{};
  }

  std::vector<store::Event> EventsOf(const std::string& kind, const std::string& id) {
    auto events =
        log_->Read({.after_seq = 0, .limit = 1000, .subject_kind = kind, .subject_id = id});
    EXPECT_TRUE(events);
    return events ? *events : std::vector<store::Event>{};
  }

  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<Registry> registry_;
};

TEST_P(RegistryTest, PassingCandidateBecomesDeploymentReadyWithEvidenceBySystem) {
  ModelVersion v = Register(0.91);
  EXPECT_EQ(v.version, 1);
  EXPECT_EQ(v.state, "DeploymentReady");
  EXPECT_EQ(v.validation["decision"], "passed");
  ASSERT_EQ(v.validation["checks"].size(), 2u);
  EXPECT_DOUBLE_EQ(v.validation["checks"][0]["value"].get<double>(), 0.91);

  auto events = EventsOf("model_version", "credit:1");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, "model_version.created");
  EXPECT_EQ(events[0].actor, "user:alice");
  EXPECT_EQ(events[1].type, "model_version.validation_started");
  EXPECT_EQ(events[2].type, "model_version.validated");
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(events[i].actor, "system:registry");
    EXPECT_EQ(events[i].causation_id, events[0].id);
    EXPECT_EQ(events[i].correlation_id, "req-42");
  }
  for (const auto& e : events)
    EXPECT_EQ(e.project, "risk");
  auto data = core::ParseJson(events[2].data);
  ASSERT_TRUE(data);
  EXPECT_EQ((*data)["data"]["decision"], "passed");
  // The projection agrees.
  auto entity = lifecycles_->Get("model_version", "credit:1");
  ASSERT_TRUE(entity);
  EXPECT_EQ(entity->state, "DeploymentReady");
}

TEST_P(RegistryTest, FailingCandidateIsRejectedWithTheFailedCheckInTheEvidence) {
  ModelVersion v = Register(0.80);
  EXPECT_EQ(v.state, "Rejected");
  EXPECT_EQ(v.validation["decision"], "failed");
  EXPECT_EQ(v.validation["checks"][0]["passed"], false);
  EXPECT_DOUBLE_EQ(v.validation["checks"][0]["threshold"].get<double>(), 0.85);
  auto events = EventsOf("model_version", "credit:1");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].type, "model_version.validation_failed");
}

TEST_P(RegistryTest, ChampionComparisonUsesTheVersionHoldingTheAlias) {
  Register(0.95);
  ASSERT_TRUE(registry_->SetAlias("credit", "champion", 1, "first good model", Ctx("user:erin")));
  ModelVersion worse = Register(0.90);  // passes 0.85 but is 0.05 below the champion
  EXPECT_EQ(worse.state, "Rejected");
  EXPECT_EQ(worse.validation["checks"][1]["champion_version"], 1);
  EXPECT_EQ(worse.validation["checks"][1]["passed"], false);
  ModelVersion close = Register(0.94);
  EXPECT_EQ(close.state, "DeploymentReady");
}

TEST_P(RegistryTest, ManualTransitionsNeedAReasonAndFollowTheLifecycle) {
  Register(0.80);  // Rejected
  int64_t head = log_->head_seq();
  auto no_reason =
      registry_->Transition("credit", 1, ManualTransition::kApprove, "", Ctx("user:erin"));
  ASSERT_FALSE(no_reason);
  EXPECT_EQ(no_reason.error().field, "reason");
  EXPECT_EQ(log_->head_seq(), head);
  auto approved =
      registry_->Transition("credit", 1, ManualTransition::kApprove,
                            "business sign-off: recall matters more here", Ctx("user:erin"));
  ASSERT_TRUE(approved) << approved.error().ToString();
  EXPECT_EQ(approved->state, "DeploymentReady");
  auto events = EventsOf("model_version", "credit:1");
  EXPECT_EQ(events.back().type, "model_version.approved");
  EXPECT_EQ(events.back().actor, "user:erin");
  EXPECT_EQ(events.back().reason, "business sign-off: recall matters more here");

  ASSERT_TRUE(registry_->Transition("credit", 1, ManualTransition::kArchive, "superseded",
                                    Ctx("user:erin")));
  auto illegal =
      registry_->Transition("credit", 1, ManualTransition::kApprove, "again", Ctx("user:erin"));
  ASSERT_FALSE(illegal);
  EXPECT_EQ(illegal.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_EQ(illegal.error().details["current_state"], "Archived");
  auto alias = registry_->SetAlias("credit", "champion", 1, "x", Ctx("user:erin"));
  ASSERT_FALSE(alias);
  EXPECT_EQ(alias.error().code, core::ErrorCode::kFailedPrecondition);
}

TEST_P(RegistryTest, AliasesMoveAtomicallyWithHistoryAndLineage) {
  Register(0.90);
  Register(0.91);
  ASSERT_TRUE(registry_->SetAlias("credit", "champion", 1, "initial", Ctx("user:erin")));
  auto moved = registry_->SetAlias("credit", "champion", 2, "better auc", Ctx("user:erin"));
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->previous_version, 1);
  auto same = registry_->SetAlias("credit", "champion", 2, "noop", Ctx("user:erin"));
  ASSERT_FALSE(same);
  auto no_reason = registry_->SetAlias("credit", "champion", 1, "", Ctx("user:erin"));
  ASSERT_FALSE(no_reason);
  EXPECT_EQ(no_reason.error().field, "reason");
  auto no_version = registry_->SetAlias("credit", "champion", 9, "x", Ctx("user:erin"));
  ASSERT_FALSE(no_version);
  EXPECT_EQ(no_version.error().code, core::ErrorCode::kNotFound);

  auto model = registry_->GetModel("credit");
  ASSERT_TRUE(model);
  EXPECT_EQ(model->aliases.at("champion"), 2);
  auto history = registry_->AliasHistory("credit", "champion");
  ASSERT_TRUE(history);
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].version, 1);
  EXPECT_EQ((*history)[1].version, 2);
  EXPECT_EQ((*history)[1].reason, "better auc");
  EXPECT_EQ((*history)[1].actor, "user:erin");

  auto lineage = registry_->Lineage("credit", 1);
  ASSERT_TRUE(lineage);
  EXPECT_EQ((*lineage)["source_run_id"], "run-0.900000");
  ASSERT_EQ((*lineage)["alias_history"].size(), 2u);
  EXPECT_EQ((*lineage)["alias_history"][0]["change"], "pointed here");
  EXPECT_EQ((*lineage)["alias_history"][1]["change"], "moved away");

  ASSERT_TRUE(registry_->DeleteAlias("credit", "champion", "retire", Ctx("user:erin")));
  auto v2 = registry_->GetVersion("credit", 2);
  ASSERT_TRUE(v2);
  EXPECT_TRUE(v2->aliases.empty());
  auto events = EventsOf("registered_model", "credit");
  std::vector<std::string> types;
  for (const auto& e : events)
    types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{
                       "registered_model.created", "registered_model.alias_set",
                       "registered_model.alias_set", "registered_model.alias_deleted"}));
}

TEST_P(RegistryTest, AVersionHoldingAnAliasCannotBeArchived) {
  Register(0.9);
  ASSERT_TRUE(registry_->SetAlias("credit", "champion", 1, "first", Ctx("user:erin")));
  int64_t head = log_->head_seq();
  auto archived =
      registry_->Transition("credit", 1, ManualTransition::kArchive, "old", Ctx("user:erin"));
  ASSERT_FALSE(archived);
  EXPECT_EQ(archived.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_NE(archived.error().message.find("champion"), std::string::npos);
  EXPECT_EQ(log_->head_seq(), head);
  ASSERT_TRUE(registry_->DeleteAlias("credit", "champion", "retire", Ctx("user:erin")));
  EXPECT_TRUE(
      registry_->Transition("credit", 1, ManualTransition::kArchive, "old", Ctx("user:erin")));
}

TEST_P(RegistryTest, GateChangesAreAuditedAndApplyToLaterVersions) {
  auto no_reason = registry_->SetGate("credit", {}, "", Ctx("user:erin"));
  ASSERT_FALSE(no_reason);
  ASSERT_TRUE(registry_->SetGate("credit", {Threshold("auc", ">=", 0.5)}, "relaxed for pilot",
                                 Ctx("user:erin")));
  EXPECT_EQ(Register(0.6).state, "DeploymentReady");
  ASSERT_TRUE(registry_->SetGate("credit", {}, "no gate", Ctx("user:erin")));
  ModelVersion v = Register(0.1);
  EXPECT_EQ(v.state, "DeploymentReady");
  EXPECT_NE(v.validation["detail"].get<std::string>().find("no validation gate"),
            std::string::npos);
}

TEST_P(RegistryTest, VersionsNumberWithoutGapsUnderConcurrentRegistration) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        if (registry_->RegisterVersion("credit", {.metrics = {{"auc", 0.9}}}, Ctx("user:a")))
          ++ok;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(ok.load(), 40);
  auto versions = registry_->ListVersions("credit", "", 0, 1000);
  ASSERT_TRUE(versions);
  ASSERT_EQ(versions->size(), 40u);
  for (size_t i = 0; i < versions->size(); ++i)
    EXPECT_EQ((*versions)[i].version, static_cast<int64_t>(i + 1));
  auto bad_state = registry_->ListVersions("credit", "Shadow", 0, 10);
  ASSERT_FALSE(bad_state);
  EXPECT_EQ(bad_state.error().field, "state");
}

TEST_P(RegistryTest, ProjectionRebuildKeepsVersionStates) {
  Register(0.9);
  Register(0.1);
  ASSERT_TRUE(lifecycles_->RebuildProjection());
  EXPECT_EQ(lifecycles_->Get("model_version", "credit:1")->state, "DeploymentReady");
  EXPECT_EQ(lifecycles_->Get("model_version", "credit:2")->state, "Rejected");
}

KERVAN_INSTANTIATE_BACKENDS(RegistryTest);

}  // namespace
}  // namespace kervan::registry
