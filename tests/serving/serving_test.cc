// The serving control plane and the in-process gateway on both store
// backends, with the real XGBoost runtime and real HTTP upstreams: a good
// candidate goes shadow -> canary -> full production and becomes champion; a
// candidate whose upstream is down, or slow, is rolled back with evidence; a
// version that is not DeploymentReady is refused; blue/green previews then
// switches and rolls back instantly; manual actions need a reason; a restart
// mid-rollout resumes from the store; samples are stored.
#include "serving/serving.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "artifacts/artifacts.h"
#include "registry/registry.h"

namespace kervan::serving {
namespace {

namespace fs = std::filesystem;
using store::testing::BackendTest;
using namespace std::chrono_literals;

store::CommandContext Ctx() {
  return {.actor = "user:alice", .correlation_id = "req-1"};
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The breast cancer model and one of its rows, made once per binary.
struct Fixture {
  std::string model;
  Json row;
  std::vector<std::string> names;
};
const Fixture& Model() {
  static const Fixture f = [] {
    fs::path dir = fs::temp_directory_path() / ("kervan-serving-model-" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::string cmd = std::string("/usr/bin/python3 ") + KERVAN_SOURCE_DIR +
                      "/bench/serving/make_model.py --out " + (dir / "model.json").string() +
                      " --row-out " + (dir / "row.json").string() + " --check-out " +
                      (dir / "check.json").string() + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    Fixture out;
    out.model = ReadFile(dir / "model.json");
    out.row = Json::parse(ReadFile(dir / "row.json"))["instances"][0];
    out.names =
        Json::parse(ReadFile(dir / "check.json"))["feature_names"].get<std::vector<std::string>>();
    fs::remove_all(dir);
    return out;
  }();
  return f;
}

// An OIP upstream that answers 0.3 for every row after `delay`.
class SlowUpstream {
 public:
  explicit SlowUpstream(std::chrono::milliseconds delay) {
    auto router = std::make_shared<http::Router>();
    EXPECT_TRUE(router->Add(
        {.method = "POST",
         .pattern = "/v2/models/slow/infer",
         .handler =
             [delay](const http::Request& req) {
               std::this_thread::sleep_for(delay);
               int64_t rows = Json::parse(req.body)["inputs"][0]["shape"][0];
               return http::Response::Json(
                   200, {{"outputs", Json::array({{{"name", "p"},
                                                   {"shape", {rows}},
                                                   {"datatype", "FP32"},
                                                   {"data", std::vector<double>(rows, 0.3)}}})}});
             },
         .public_route = true}));
    server_ =
        std::make_unique<http::Server>(http::ServerOptions{.port = 0, .access_log = false}, router);
    EXPECT_TRUE(server_->Start());
  }
  ~SlowUpstream() { server_->Shutdown(100ms); }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + "/v2/models/slow";
  }

 private:
  std::unique_ptr<http::Server> server_;
};

class ServingTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    char tmpl[] = "/tmp/kervan-serving-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    auto a = artifacts::OpenLocal(dir_ + "/artifacts");
    ASSERT_TRUE(a) << a.error().ToString();
    artifacts_ = std::move(a).value();
    ASSERT_TRUE(artifacts_->Put("models/bc/model.json", Model().model));
    Open();
    ASSERT_TRUE(registry_->CreateModel({.name = "bc", .project = "default"}, Ctx()));
    // A model whose gate rejects everything.
    registry::GateCheck strict{.metric = "auc", .op = ">=", .threshold = 0.99};
    ASSERT_TRUE(registry_->CreateModel({.name = "strict", .project = "default", .checks = {strict}},
                                       Ctx()));
  }

  void TearDown() override {
    Close();
    if (log_)
      log_->Stop();
    log_.reset();
    if (!dir_.empty())
      fs::remove_all(dir_);
    BackendTest::TearDown();
  }

  // (Re)opens registry, gateway and serving as a (re)started server does.
  void Open() {
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto r = registry::Registry::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(r) << r.error().ToString();
    registry_ = std::move(r).value();
    ModelLoader loader = MakeRegistryLoader(*registry_, artifacts_.get(), 500ms);
    gateway_ = std::make_unique<Gateway>(GatewayOptions{.loader = loader});
    gateway_->Start();  // the mirror pool (shadow traffic) and the flusher
    auto s = Serving::Open(*db_, *log_, *lifecycles_, *registry_, loader, gateway_.get(), {});
    ASSERT_TRUE(s) << s.error().ToString();
    serving_ = std::move(s).value();
  }
  void Close() {
    serving_.reset();
    gateway_.reset();
    registry_.reset();
    lifecycles_.reset();
  }

  int64_t RegisterXgboost() {
    auto v = registry_->RegisterVersion(
        "bc",
        {.artifact_uri = "mlflow-artifacts:/models/bc/model.json", .metrics = {{"auc", 0.97}}},
        Ctx());
    EXPECT_TRUE(v) << v.error().ToString();
    EXPECT_EQ(v->state, "DeploymentReady");
    return v->version;
  }
  int64_t RegisterUpstream(const std::string& url) {
    Json inputs = Json::array();
    for (const auto& n : Model().names)
      inputs.push_back({{"name", n}});
    auto v = registry_->RegisterVersion(
        "bc", {.artifact_uri = url, .signature = {{"inputs", inputs}}}, Ctx());
    EXPECT_TRUE(v) << v.error().ToString();
    return v->version;
  }

  Result<Rollout> Deploy(int64_t version, const char* strategy) {
    auto spec = RolloutSpec::FromJson(Json::parse(strategy));
    EXPECT_TRUE(spec) << spec.error().message;
    return serving_->Deploy({.endpoint = "bc",
                             .model = "bc",
                             .version = version,
                             .spec = *spec,
                             .sample_percent = 100,
                             .reason = "test"},
                            Ctx());
  }

  // Sends `n` single-row predictions to the endpoint; returns the versions
  // that answered.
  std::map<int64_t, int> Traffic(int n, const std::string& path_kind = "main") {
    std::map<int64_t, int> seen;
    for (int i = 0; i < n; ++i) {
      http::Request req;
      req.body = Json{{"instances", Json::array({Model().row})}}.dump();
      req.request_id = "r-" + std::to_string(i);
      InferResponse r =
          gateway_->Infer({.endpoint = "bc", .preview = path_kind == "preview", .http = &req});
      if (r.response.status == 200)
        ++seen[r.version];
      else
        ++seen[-r.version];  // failures by version, negated
    }
    return seen;
  }

  // Drives traffic and controller cycles until the rollout leaves the
  // active states or `limit` passes.
  Rollout RunUntilDone(const std::string& id, std::chrono::seconds limit = 40s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      Traffic(30);
      EXPECT_TRUE(serving_->RunCycle(core::NowMicros()));
      auto r = serving_->GetRollout(id);
      EXPECT_TRUE(r);
      if (!r->active() || std::chrono::steady_clock::now() > deadline)
        return *r;
      std::this_thread::sleep_for(150ms);
    }
  }

  std::vector<std::string> EventTypes(const std::string& rollout_id) {
    auto events = log_->Read({.after_seq = 0, .limit = 10000});
    EXPECT_TRUE(events);
    std::vector<std::string> out;
    for (const auto& e : *events) {
      if (e.subject_id == rollout_id && e.type != "deployment.analysis_evaluated")
        out.push_back(e.type);
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<artifacts::ArtifactStore> artifacts_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<Serving> serving_;
};

// Tests that expect a promotion turn the latency-ratio check off: with 10
// samples one request delayed by a loaded CI machine is the p99, so the
// check would measure the scheduler. ASlowCandidateIsRolledBackOnLatency
// covers latency.
constexpr const char* kFastCanary = R"({
  "shadow": {"percent": 100, "min_duration_s": 0, "min_requests": 20},
  "steps": [{"weight": 30, "min_duration_s": 0, "min_requests": 10},
            {"weight": 70, "min_duration_s": 0, "min_requests": 10}],
  "analysis": {"max_latency_p99_ratio": null, "interval_s": 1, "window_s": 10, "min_samples": 10, "failure_limit": 2}})";

TEST_P(ServingTest, GoodCandidateGoesShadowCanaryFullProductionAndBecomesChampion) {
  int64_t v1 = RegisterXgboost(), v2 = RegisterXgboost();
  auto first = Deploy(v1, kFastCanary);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(first->state, kFullProduction);  // nothing to compare with
  EXPECT_EQ(Traffic(5), (std::map<int64_t, int>{{v1, 5}}));

  auto r = Deploy(v2, kFastCanary);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->state, kShadow);
  // Shadow: callers only ever see the stable version.
  EXPECT_EQ(Traffic(20), (std::map<int64_t, int>{{v1, 20}}));
  Rollout done = RunUntilDone(r->id);
  EXPECT_EQ(done.state, kFullProduction) << done.ToJson().dump(2);
  EXPECT_EQ(EventTypes(r->id),
            (std::vector<std::string>{"deployment.created", "deployment.shadow_started",
                                      "deployment.rollout_started", "deployment.step_advanced",
                                      "deployment.promoted"}));
  auto model = registry_->GetModel("bc");
  ASSERT_TRUE(model);
  EXPECT_EQ(model->aliases.at("champion"), v2);
  // The alias moved in the promotion's own command, caused by it: no
  // reader sees the rollout in full production with the old champion.
  auto events = log_->Read({.after_seq = 0, .limit = 10000});
  ASSERT_TRUE(events);
  const store::Event* promoted = nullptr;
  const store::Event* moved = nullptr;
  for (const store::Event& e : *events) {
    if (e.subject_id == r->id && e.type == "deployment.promoted")
      promoted = &e;
    if (e.type == "registered_model.alias_set" && Json::parse(e.data)["version"] == v2)
      moved = &e;
  }
  ASSERT_NE(promoted, nullptr);
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(moved->causation_id, promoted->id);
  EXPECT_EQ(moved->seq, promoted->seq + 1);
  auto ep = serving_->GetEndpoint("bc");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->stable_version, v2);
  EXPECT_EQ(ep->previous_version, v1);
  EXPECT_EQ(ep->rollout_id, "");
  EXPECT_EQ(Traffic(5), (std::map<int64_t, int>{{v2, 5}}));
  // The shadow phase compared outputs: the same model agrees with itself.
  bool saw_agreement = false;
  for (const auto& e : *events) {
    Json data = Json::parse(e.data);
    if (e.type == "deployment.analysis_evaluated" && data["phase"] == "shadow" &&
        data["candidate"].contains("agreement")) {
      saw_agreement = true;
      EXPECT_EQ(data["candidate"]["agreement"], 1.0);
    }
  }
  EXPECT_TRUE(saw_agreement);
}

TEST_P(ServingTest, ACandidateWhoseUpstreamIsDownIsRolledBackWithEvidence) {
  int64_t v1 = RegisterXgboost();
  ASSERT_TRUE(Deploy(v1, kFastCanary));
  // Nobody listens on port 1.
  int64_t broken = RegisterUpstream("http://127.0.0.1:1/v2/models/gone");
  auto r = Deploy(broken, R"({"steps": [{"weight": 50, "min_duration_s": 0, "min_requests": 10}],
      "analysis": {"max_latency_p99_ratio": null, "interval_s": 1, "min_samples": 10, "failure_limit": 2}})");
  ASSERT_TRUE(r) << r.error().ToString();
  Rollout done = RunUntilDone(r->id);
  EXPECT_EQ(done.state, kRolledBack) << done.ToJson().dump(2);
  EXPECT_NE(done.outcome.find("error_rate"), std::string::npos) << done.outcome;
  EXPECT_EQ(done.last_evaluation["verdict"], "fail");
  EXPECT_GT(done.last_evaluation["candidate"]["errors"].get<int64_t>(), 0);
  EXPECT_EQ(done.last_evaluation["stable"]["errors"], 0);
  // Traffic is back on the stable version only; the champion never moved.
  EXPECT_EQ(Traffic(10), (std::map<int64_t, int>{{v1, 10}}));
  EXPECT_EQ(registry_->GetModel("bc")->aliases.at("champion"), v1);
  auto types = EventTypes(r->id);
  EXPECT_EQ(types.back(), "deployment.rolled_back");
}

TEST_P(ServingTest, ASlowCandidateIsRolledBackOnLatency) {
  SlowUpstream slow(30ms);
  int64_t v1 = RegisterXgboost();
  ASSERT_TRUE(Deploy(v1, kFastCanary));
  int64_t v2 = RegisterUpstream(slow.url());
  auto r = Deploy(v2, R"({"steps": [{"weight": 50, "min_duration_s": 0, "min_requests": 10}],
      "analysis": {"interval_s": 1, "min_samples": 10, "failure_limit": 1,
                   "max_prediction_shift": null}})");
  ASSERT_TRUE(r) << r.error().ToString();
  Rollout done = RunUntilDone(r->id);
  EXPECT_EQ(done.state, kRolledBack) << done.ToJson().dump(2);
  EXPECT_NE(done.outcome.find("latency_p99_ratio"), std::string::npos) << done.outcome;
  EXPECT_GT(done.last_evaluation["candidate"]["latency_p99_ms"].get<double>(), 25);
}

TEST_P(ServingTest, OnlyDeploymentReadyVersionsMayBeDeployedAndNothingIsStoredOtherwise) {
  auto rejected = registry_->RegisterVersion(
      "strict",
      {.artifact_uri = "mlflow-artifacts:/models/bc/model.json", .metrics = {{"auc", 0.5}}}, Ctx());
  ASSERT_TRUE(rejected);
  ASSERT_EQ(rejected->state, "Rejected");
  auto spec = RolloutSpec::FromJson(Json::object());
  auto r = serving_->Deploy(
      {.endpoint = "strict", .model = "strict", .version = rejected->version, .spec = *spec},
      Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("Rejected"), std::string::npos) << r.error().message;
  EXPECT_FALSE(serving_->GetEndpoint("strict"));
  // A version whose model file is not a model is refused too.
  ASSERT_TRUE(artifacts_->Put("models/junk.json", "{\"not\": 1}"));
  auto junk = registry_->RegisterVersion(
      "bc", {.artifact_uri = "mlflow-artifacts:/models/junk.json"}, Ctx());
  ASSERT_TRUE(junk);
  auto j = Deploy(junk->version, "{}");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_FALSE(serving_->GetEndpoint("bc"));
}

TEST_P(ServingTest, BlueGreenPreviewsThenSwitchesAndRollsBackInstantly) {
  int64_t v1 = RegisterXgboost(), v2 = RegisterXgboost();
  ASSERT_TRUE(Deploy(v1, "{}"));
  auto r =
      Deploy(v2, R"({"strategy": "bluegreen", "preview": {"min_duration_s": 0, "min_requests": 10},
      "analysis": {"max_latency_p99_ratio": null, "interval_s": 1, "min_samples": 10}})");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->state, kGradualRollout);
  EXPECT_EQ(Traffic(10), (std::map<int64_t, int>{{v1, 10}}));             // main route: blue
  EXPECT_EQ(Traffic(10, "preview"), (std::map<int64_t, int>{{v2, 10}}));  // preview: green
  std::this_thread::sleep_for(1100ms);
  ASSERT_TRUE(serving_->RunCycle(core::NowMicros()));
  auto done = serving_->GetRollout(r->id);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, kFullProduction) << done->ToJson().dump(2);
  EXPECT_EQ(Traffic(10), (std::map<int64_t, int>{{v2, 10}}));  // switched at once
  // The previous version stayed loaded: rollback is one command.
  auto back = serving_->Act("bc", ManualAction::kRollback, "green misbehaves in prod", Ctx());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->state, kRolledBack);
  EXPECT_EQ(Traffic(10), (std::map<int64_t, int>{{v1, 10}}));
  EXPECT_EQ(registry_->GetModel("bc")->aliases.at("champion"), v1);
}

TEST_P(ServingTest, ManualActionsNeedAReasonAndPauseStopsCandidateTraffic) {
  int64_t v1 = RegisterXgboost(), v2 = RegisterXgboost();
  ASSERT_TRUE(Deploy(v1, "{}"));
  auto r = Deploy(v2, R"({"steps": [{"weight": 100, "min_duration_s": 3600}]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(Traffic(5), (std::map<int64_t, int>{{v2, 5}}));
  auto no_reason = serving_->Act("bc", ManualAction::kPause, " ", Ctx());
  ASSERT_FALSE(no_reason);
  EXPECT_EQ(no_reason.error().field, "reason");
  auto paused = serving_->Act("bc", ManualAction::kPause, "investigating a ticket", Ctx());
  ASSERT_TRUE(paused) << paused.error().ToString();
  EXPECT_EQ(paused->state, kPaused);
  EXPECT_EQ(Traffic(5), (std::map<int64_t, int>{{v1, 5}}));
  auto again = serving_->Act("bc", ManualAction::kPause, "twice", Ctx());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, core::ErrorCode::kFailedPrecondition);  // 409 with allowed ones
  auto resumed = serving_->Act("bc", ManualAction::kResume, "ticket closed", Ctx());
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->state, kGradualRollout);
  auto aborted = serving_->Act("bc", ManualAction::kAbort, "wrong model", Ctx());
  ASSERT_TRUE(aborted);
  EXPECT_EQ(aborted->state, kAborted);
  EXPECT_EQ(Traffic(5), (std::map<int64_t, int>{{v1, 5}}));
  // A second deploy while one is active is refused.
  ASSERT_TRUE(Deploy(v2, R"({"steps": [{"weight": 10, "min_duration_s": 3600}]})"));
  auto busy = Deploy(v2, "{}");
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, core::ErrorCode::kFailedPrecondition);
}

TEST_P(ServingTest, ARestartMidRolloutResumesFromTheStore) {
  int64_t v1 = RegisterXgboost(), v2 = RegisterXgboost();
  ASSERT_TRUE(Deploy(v1, "{}"));
  auto r = Deploy(v2, R"({"steps": [{"weight": 40, "min_duration_s": 0, "min_requests": 10},
      {"weight": 80, "min_duration_s": 2, "min_requests": 10}],
      "analysis": {"max_latency_p99_ratio": null, "interval_s": 1, "min_samples": 10}})");
  ASSERT_TRUE(r);
  auto deadline = std::chrono::steady_clock::now() + 30s;
  Rollout now = *r;
  while (now.progress.step == 0 && std::chrono::steady_clock::now() < deadline) {
    Traffic(30);
    ASSERT_TRUE(serving_->RunCycle(core::NowMicros()));
    now = *serving_->GetRollout(r->id);
    std::this_thread::sleep_for(150ms);
  }
  ASSERT_EQ(now.progress.step, 1) << now.ToJson().dump(2);
  ASSERT_EQ(now.state, kGradualRollout);

  Close();  // the server stops mid-rollout
  Open();
  // The new gateway routes by the stored step (80 %) without any cycle.
  auto seen = Traffic(200);
  EXPECT_GT(seen[v2], 120);
  EXPECT_GT(seen[v1], 10);
  Rollout done = RunUntilDone(r->id);
  EXPECT_EQ(done.state, kFullProduction) << done.ToJson().dump(2);
  EXPECT_EQ(registry_->GetModel("bc")->aliases.at("champion"), v2);
}

TEST_P(ServingTest, SamplesAreStoredWithTheVersionThatAnswered) {
  int64_t v1 = RegisterXgboost();
  ASSERT_TRUE(Deploy(v1, "{}"));
  gateway_ = nullptr;  // rebuilt below with a sink into the store
  ModelLoader loader = MakeRegistryLoader(*registry_, artifacts_.get(), 500ms);
  Serving* s = serving_.get();
  gateway_ = std::make_unique<Gateway>(GatewayOptions{
      .loader = loader, .flush_interval = 50ms, .sample_sink = [s](std::vector<Sample> batch) {
        EXPECT_TRUE(s->StoreSamples(batch));
      }});
  gateway_->Apply(serving_->Table());
  gateway_->Start();
  Traffic(7);
  gateway_->Stop();
  auto samples = serving_->ListSamples("bc", 0, 100);
  ASSERT_TRUE(samples);
  ASSERT_EQ(samples->size(), 7u);  // sample_percent 100
  EXPECT_EQ((*samples)[0].version, v1);
  EXPECT_EQ((*samples)[0].side, "stable");
  EXPECT_EQ((*samples)[0].input[0].size(), 30u);
  EXPECT_GT((*samples)[0].output[0].get<double>(), 0);
  EXPECT_EQ((*samples)[3].request_id, "r-3");
}

KERVAN_INSTANTIATE_BACKENDS(ServingTest);

}  // namespace
}  // namespace kervan::serving
