// The monitoring service on both store backends: a reference profile from
// CSV; a monitor over an endpoint's stored samples closes windows by rows,
// finds no drift in reference-like traffic and detects a shifted one
// (Monitoring -> Evaluating -> RetrainDecision, each an event with the
// numbers); late labels update an evaluated window's performance; a new
// production version retargets the monitor; manual actions need a reason.
// Samples are written to serving_samples directly: that table is the
// contract between the gateway and monitoring.
#include "monitoring/monitoring.h"

#include <random>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "registry/registry.h"

namespace kervan::monitoring {
namespace {

using store::testing::BackendTest;

store::CommandContext Ctx() {
  return {.actor = "user:alice", .correlation_id = "req-1"};
}

// Features a, b (normal) and c (uniform); label column y is not an input.
std::string TrainingCsv(int rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0, 1);
  std::uniform_real_distribution<double> u(0, 10);
  std::string csv = "a,b,c,y\n";
  for (int i = 0; i < rows; ++i)
    csv += fmt::format("{},{},{},{}\n", n(rng), 5 + 2 * n(rng), u(rng), i % 2);
  return csv;
}

class MonitoringTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto r = registry::Registry::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(r) << r.error().ToString();
    registry_ = std::move(r).value();
    auto m =
        Monitoring::Open(*db_, *log_, *lifecycles_, *registry_, nullptr, {.auto_monitor = false});
    ASSERT_TRUE(m) << m.error().ToString();
    monitoring_ = std::move(m).value();
    ASSERT_TRUE(registry_->CreateModel({.name = "bc", .project = "default"}, Ctx()));
    Json signature = {{"inputs", {{{"name", "a"}}, {{"name", "b"}}, {{"name", "c"}}}}};
    for (int v = 0; v < 2; ++v) {
      auto version = registry_->RegisterVersion(
          "bc", {.artifact_uri = "file:///models/bc.json", .signature = signature}, Ctx());
      ASSERT_TRUE(version) << version.error().ToString();
    }
    Exec(
        "INSERT INTO serving_endpoints (name, project, model, stable_version, previous_version, "
        "rollout_id, sample_percent, created_by, created_us, updated_us) VALUES ('bc', "
        "'default', 'bc', 1, 0, '', 100, 'alice', 1, 1)");
  }
  void TearDown() override {
    monitoring_.reset();
    registry_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    BackendTest::TearDown();
  }

  void Exec(const std::string& sql, const std::vector<store::Value>& params = {}) {
    auto c = db_->Acquire();
    ASSERT_TRUE(c);
    auto r = (*c)->Exec(sql, params);
    ASSERT_TRUE(r) << r.error().ToString() << "\n" << sql;
  }

  // `requests` samples of 10 rows each; `shift` moves every feature by that
  // many of its standard deviations. Outputs are the score `score`.
  std::vector<std::string> Traffic(int requests, double shift, uint64_t seed, int64_t version = 1,
                                   double score = 0.9) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n(0, 1);
    std::uniform_real_distribution<double> u(0, 10);
    std::vector<std::string> ids;
    for (int r = 0; r < requests; ++r) {
      Json rows = Json::array(), out = Json::array();
      for (int i = 0; i < 10; ++i) {
        rows.push_back({n(rng) + shift, 5 + 2 * (n(rng) + shift), u(rng) + 3 * shift});
        out.push_back(score);
      }
      std::string id = fmt::format("req-{}-{}", seed, r);
      ids.push_back(id);
      Exec(
          "INSERT INTO serving_samples (endpoint, model, version, rollout_id, side, request_id, "
          "time_us, input, output, latency_us, error) VALUES ('bc', 'bc', ?, 'r1', 'stable', ?, "
          "?, ?, ?, 100, '')",
          {version, id, core::NowMicros(), rows.dump(), out.dump()});
    }
    return ids;
  }

  std::vector<store::Event> Events(const std::string& type) {
    auto r = log_->Read({.limit = 1000, .subject_kind = "monitor", .type = type});
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : std::vector<store::Event>{};
  }

  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<Monitoring> monitoring_;
};

TEST_P(MonitoringTest, ProfilesOnlyTheModelsInputs) {
  auto p = monitoring_->SetProfile("bc", 1, TrainingCsv(800, 1), "train.csv", Ctx());
  ASSERT_TRUE(p) << p.error().ToString();
  ASSERT_EQ(p->features.size(), 3u);  // y is not an input
  EXPECT_EQ(p->rows, 800);
  auto stored = monitoring_->GetProfile("bc", 1);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->ToJson(), p->ToJson());
  auto events = log_->Read({.type = "model_version.profile_recorded"});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].subject_id, "bc:1");
  // A CSV without one of the inputs is refused, naming it.
  auto bad = monitoring_->SetProfile("bc", 2, "a,b\n1,2\n", "x.csv", Ctx());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("\"c\""), std::string::npos) << bad.error().message;
  EXPECT_FALSE(monitoring_->GetProfile("bc", 2));
}

TEST_P(MonitoringTest, WindowsDetectAShiftAndLateLabelsUpdatePerformance) {
  ASSERT_TRUE(monitoring_->SetProfile("bc", 1, TrainingCsv(800, 1), "train.csv", Ctx()));
  MonitorConfig config;
  config.window_rows = 200;
  config.min_performance = {{"accuracy", 0.9}};
  config.min_labeled = 20;
  auto m = monitoring_->Configure("bc", config, Ctx());
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(m->state, kMonitoringState);

  // 190 rows: the window is not full yet.
  std::vector<std::string> first = Traffic(19, 0, 11);
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  auto evals = monitoring_->Evaluations("bc", 0, 10);
  ASSERT_TRUE(evals);
  EXPECT_TRUE(evals->empty());
  // 10 more: one window of reference-like traffic, healthy.
  auto more = Traffic(1, 0, 12);
  first.insert(first.end(), more.begin(), more.end());
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  evals = monitoring_->Evaluations("bc", 0, 10);
  ASSERT_TRUE(evals);
  ASSERT_EQ(evals->size(), 1u);
  const Evaluation& healthy = (*evals)[0];
  EXPECT_EQ(healthy.rows, 200);
  EXPECT_EQ(healthy.decision, "healthy") << Json(healthy.reasons).dump();
  EXPECT_EQ(healthy.metrics.at("dataset_drift"), 0);
  EXPECT_TRUE(healthy.performance.is_null());
  ASSERT_EQ(Events("monitor.evaluation_started").size(), 1u);
  auto evaluated = Events("monitor.evaluated");
  ASSERT_EQ(evaluated.size(), 1u);
  Json data = Json::parse(evaluated[0].data);
  EXPECT_EQ(data["from"], "Evaluating");
  EXPECT_EQ(data["to"], "Monitoring");
  EXPECT_EQ(data["data"]["metrics"]["rows"], 200);

  // A shifted window: every feature moved by one standard deviation.
  Traffic(20, 1.0, 13);
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  auto now = monitoring_->Get("bc");
  ASSERT_TRUE(now);
  EXPECT_EQ(now->state, kRetrainDecision);
  auto needed = Events("monitor.retrain_needed");
  ASSERT_EQ(needed.size(), 1u);
  Json nd = Json::parse(needed[0].data);
  EXPECT_EQ(nd["data"]["metrics"]["dataset_drift"], 1);
  EXPECT_EQ(nd["data"]["metrics"]["drifted_features"], 3);
  EXPECT_NE(needed[0].reason.find("dataset drift: 3 of 3 features drifted"), std::string::npos)
      << needed[0].reason;
  EXPECT_EQ(needed[0].actor, kMonitoringActor);

  // Labels for the first window arrive after it was evaluated: 3 of the 20
  // requests were class 0 (the model said 0.9 for all): accuracy 0.85.
  std::vector<FeedbackItem> labels;
  for (size_t i = 0; i < first.size(); ++i) {
    double y = i < 3 ? 0 : 1;
    labels.push_back({.request_id = first[i], .label = Json(std::vector<double>(10, y))});
  }
  auto fb = monitoring_->RecordFeedback("bc", labels, Ctx());
  ASSERT_TRUE(fb) << fb.error().ToString();
  EXPECT_EQ(fb->accepted, 20);
  EXPECT_EQ(fb->matched, 20);
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  evals = monitoring_->Evaluations("bc", 0, 10);
  ASSERT_TRUE(evals);
  ASSERT_EQ(evals->size(), 2u);
  EXPECT_EQ((*evals)[0].labeled, 200);
  EXPECT_DOUBLE_EQ((*evals)[0].metrics.at("accuracy"), 0.85);
  EXPECT_DOUBLE_EQ((*evals)[0].performance["recall"].get<double>(), 1.0);
  auto updated = Events("monitor.performance_updated");
  ASSERT_EQ(updated.size(), 1u);
  Json ud = Json::parse(updated[0].data);
  EXPECT_EQ(ud["window"], 1);
  ASSERT_EQ(ud["breaches"].size(), 1u);
  EXPECT_NE(ud["breaches"][0].get<std::string>().find("accuracy 0.8500 < 0.9000"),
            std::string::npos);
  // Nothing new: no second update.
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  EXPECT_EQ(Events("monitor.performance_updated").size(), 1u);

  // The endpoint's production version changes: the monitor follows it.
  Exec("UPDATE serving_endpoints SET stable_version = 2 WHERE name = 'bc'");
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  now = monitoring_->Get("bc");
  ASSERT_TRUE(now);
  EXPECT_EQ(now->version, 2);
  EXPECT_EQ(now->state, kMonitoringState);
  ASSERT_EQ(Events("monitor.retargeted").size(), 1u);
  // v2 has no profile: its windows say so instead of passing silently.
  Traffic(20, 0, 14, 2);
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  evals = monitoring_->Evaluations("bc", 0, 10);
  ASSERT_TRUE(evals);
  ASSERT_EQ(evals->size(), 3u);
  EXPECT_EQ((*evals)[2].decision, "insufficient_data");
  EXPECT_EQ((*evals)[2].version, 2);
}

TEST_P(MonitoringTest, ManualActionsNeedAReason) {
  ASSERT_TRUE(monitoring_->Configure("bc", MonitorConfig{}, Ctx()));
  auto no_reason = monitoring_->Act("bc", "stop", "", Ctx());
  ASSERT_FALSE(no_reason);
  auto stopped = monitoring_->Act("bc", "stop", "maintenance", Ctx());
  ASSERT_TRUE(stopped) << stopped.error().ToString();
  EXPECT_EQ(stopped->state, kStopped);
  // A stopped monitor evaluates nothing.
  Traffic(50, 0, 21);
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  auto evals = monitoring_->Evaluations("bc", 0, 10);
  ASSERT_TRUE(evals);
  EXPECT_TRUE(evals->empty());
  auto resumed = monitoring_->Act("bc", "resume", "done", Ctx());
  ASSERT_TRUE(resumed) << resumed.error().ToString();
  EXPECT_EQ(resumed->state, kMonitoringState);
  // What arrived while stopped is skipped.
  ASSERT_TRUE(monitoring_->RunCycle(core::NowMicros()));
  evals = monitoring_->Evaluations("bc", 0, 10);
  ASSERT_TRUE(evals);
  EXPECT_TRUE(evals->empty());
  auto bad = monitoring_->Act("bc", "explode", "x", Ctx());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "action");
  // Unknown endpoint.
  EXPECT_EQ(monitoring_->Configure("nope", MonitorConfig{}, Ctx()).error().code,
            core::ErrorCode::kNotFound);
}

TEST(MonitorConfig, RefusesBadValuesNamingTheField) {
  auto bad = MonitorConfig::FromJson(Json{{"task", "ranking"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "config.task");
  bad = MonitorConfig::FromJson(Json{{"min_performance", {{"accurcy", 0.9}}}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "config.min_performance.accurcy");
  bad = MonitorConfig::FromJson(Json{{"features", {{"a", {{"method", "magic"}}}}}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "config.features.a.method");
  bad = MonitorConfig::FromJson(Json{{"window_rows", 0}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "config.window_rows");
  auto ok = MonitorConfig::FromJson(Json{{"window_rows", 300}, {"task", "regression"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->window_rows, 300);
  auto back = MonitorConfig::FromJson(ok->ToJson());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->ToJson(), ok->ToJson());
}

KERVAN_INSTANTIATE_BACKENDS(MonitoringTest);

}  // namespace
}  // namespace kervan::monitoring
