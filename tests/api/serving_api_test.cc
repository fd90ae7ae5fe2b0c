// Serving and rollouts through real HTTP against the real `kervan` binary:
// predictions over /v1 and the Open Inference Protocol equal Python
// XGBoost's; a good candidate goes shadow -> canary steps -> full production
// and becomes champion; a candidate whose upstream is down is rolled back
// automatically with evidence while the stable version keeps answering; a
// version that is not DeploymentReady is refused; traffic weights hold
// within statistical tolerance; a server restart mid-rollout resumes it; a
// standalone `kervan gateway` follows the rollout and feeds its analysis;
// bad input gets clear errors.
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The breast cancer model (bench/serving/make_model.py) with Python's own
// predictions for 20 rows, made once per test binary.
struct ModelFiles {
  fs::path dir;
  Json check;  // {"feature_names", "rows", "predictions"}
  std::string model_uri() const { return "file://" + (dir / "model.json").string(); }
};
const ModelFiles& Model() {
  static const ModelFiles m = [] {
    ModelFiles out;
    out.dir = fs::temp_directory_path() / ("kervan-serving-api-" + std::to_string(getpid()));
    fs::create_directories(out.dir);
    std::string cmd = std::string("/usr/bin/python3 ") + KERVAN_SOURCE_DIR +
                      "/bench/serving/make_model.py --out " + (out.dir / "model.json").string() +
                      " --row-out " + (out.dir / "row.json").string() + " --check-out " +
                      (out.dir / "check.json").string() + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    out.check = Json::parse(ReadText(out.dir / "check.json"));
    return out;
  }();
  return m;
}

Json Row(int i) {
  return Model().check["rows"][i];
}
Json Instances(int i) {
  return {{"instances", Json::array({Row(i)})}};
}

ServerProcessOptions ServingServer() {
  return {.extra_args = {"--set", "serving.cycle_ms=100", "--set", "serving.sample_percent=20"}};
}

// Tests that expect a promotion turn the latency-ratio check off: with 10
// samples one request delayed by a loaded CI machine is the p99.
constexpr const char* kFast = R"({
  "shadow": {"percent": 100, "min_duration_s": 0, "min_requests": 20},
  "steps": [{"weight": 30, "min_duration_s": 0, "min_requests": 10},
            {"weight": 70, "min_duration_s": 0, "min_requests": 10}],
  "analysis": {"max_latency_p99_ratio": null, "interval_s": 1, "window_s": 10, "min_samples": 10, "failure_limit": 2}})";

class ServingApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    admin_.emplace(server_.client());
    Reply m = Post(*admin_, "/api/v1/models", {{"name", "bc"}, {"project", "default"}});
    ASSERT_EQ(m.status, 201) << m.Describe();
  }
  void TearDown() override { StopTraffic(); }

  int64_t Register(const std::string& uri, Json signature = nullptr) {
    Json body{{"artifact_uri", uri}, {"metrics", {{"auc", 0.97}}}};
    if (!signature.is_null())
      body["signature"] = signature;
    Reply r = Post(*admin_, "/api/v1/models/bc/versions", body);
    EXPECT_EQ(r.status, 201) << r.Describe();
    EXPECT_EQ(r.body.value("state", ""), "DeploymentReady") << r.Describe();
    return r.body.value("version", int64_t{0});
  }
  Json Signature() {
    Json inputs = Json::array();
    for (const auto& n : Model().check["feature_names"])
      inputs.push_back({{"name", n}, {"type", "double"}});
    return {{"inputs", inputs}};
  }

  Reply Deploy(int64_t version, const std::string& strategy) {
    return Post(*admin_, "/api/v1/deployments",
                {{"model", "bc"},
                 {"version", version},
                 {"strategy", Json::parse(strategy)},
                 {"reason", "test"}});
  }

  // Background traffic at the main predict route until StopTraffic().
  void StartTraffic(const std::string& base = "") {
    stop_ = false;
    traffic_ = std::thread([this, base] {
      http::Client c =
          base.empty() ? server_.client()
                       : http::Client(base, {{"Authorization", "Bearer " + server_.admin_token()}});
      int i = 0;
      while (!stop_) {
        Reply r = Post(c, "/v1/endpoints/bc/predict", Instances(i++ % 20));
        if (r.status == 200)
          ++ok_;
        else
          ++failed_;
        std::this_thread::sleep_for(5ms);
      }
    });
  }
  void StopTraffic() {
    stop_ = true;
    if (traffic_.joinable())
      traffic_.join();
  }

  Json WaitForRollout(const std::string& id, std::chrono::seconds limit = 60s) {
    auto end = std::chrono::steady_clock::now() + limit;
    Json last;
    while (std::chrono::steady_clock::now() < end) {
      Reply r = Get(*admin_, "/api/v1/rollouts/" + id);
      EXPECT_EQ(r.status, 200) << r.Describe();
      last = r.body;
      std::string s = last.value("state", "");
      if (s == "FullProduction" || s == "RolledBack" || s == "Aborted")
        return last;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "rollout " << id << " did not end: " << last.dump(2);
    return last;
  }

  ServerProcess server_{ServingServer()};
  std::optional<http::Client> admin_;
  std::thread traffic_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
};

TEST_F(ServingApi, PredictionsOverV1AndOipEqualPythonXgboost) {
  int64_t v1 = Register(Model().model_uri(), Signature());
  Reply d = Deploy(v1, "{}");
  ASSERT_EQ(d.status, 201) << d.Describe();
  EXPECT_EQ(d.body["state"], "FullProduction");  // the first deployment goes live at once

  Json batch = Json::array();
  for (int i = 0; i < 20; ++i)
    batch.push_back(Row(i));
  Reply p = Post(*admin_, "/v1/endpoints/bc/predict", {{"instances", batch}},
                 {{"X-Request-Id", "predict-1"}});
  ASSERT_EQ(p.status, 200) << p.Describe();
  EXPECT_EQ(p.headers["x-request-id"], "predict-1");
  EXPECT_EQ(p.headers["x-kervan-model-version"], std::to_string(v1));
  EXPECT_EQ(p.body["model_version"], std::to_string(v1));
  for (int i = 0; i < 20; ++i) {
    EXPECT_NEAR(p.body["predictions"][i].get<double>(),
                Model().check["predictions"][i].get<double>(), 1e-6);
  }
  // Rows as objects keyed by feature name give the same answer.
  Json named = Json::object();
  for (size_t f = 0; f < 30; ++f)
    named[Model().check["feature_names"][f].get<std::string>()] = Row(3)[f];
  Reply n = Post(*admin_, "/v1/endpoints/bc/predict", {{"instances", Json::array({named})}});
  ASSERT_EQ(n.status, 200) << n.Describe();
  EXPECT_NEAR(n.body["predictions"][0].get<double>(), Model().check["predictions"][3].get<double>(),
              1e-6);

  // Open Inference Protocol.
  Json flat = Json::array();
  for (int i = 0; i < 2; ++i)
    for (const auto& v : Row(i))
      flat.push_back(v);
  Reply o = Post(
      *admin_, "/v2/models/bc/infer",
      {{"id", "oip-1"},
       {"inputs",
        Json::array(
            {{{"name", "input-0"}, {"shape", {2, 30}}, {"datatype", "FP64"}, {"data", flat}}})}});
  ASSERT_EQ(o.status, 200) << o.Describe();
  EXPECT_EQ(o.body["model_name"], "bc");
  EXPECT_EQ(o.body["model_version"], std::to_string(v1));
  EXPECT_EQ(o.body["id"], "oip-1");
  EXPECT_EQ(o.body["outputs"][0]["shape"], Json::array({2}));
  EXPECT_NEAR(o.body["outputs"][0]["data"][1].get<double>(),
              Model().check["predictions"][1].get<double>(), 1e-6);
  Reply ov = Post(
      *admin_, "/v2/models/bc/versions/" + std::to_string(v1) + "/infer",
      {{"inputs",
        Json::array({{{"name", "x"}, {"shape", {30}}, {"datatype", "FP32"}, {"data", Row(0)}}})}});
  EXPECT_EQ(ov.status, 200) << ov.Describe();

  Reply meta = Get(*admin_, "/v2/models/bc");
  ASSERT_EQ(meta.status, 200) << meta.Describe();
  EXPECT_EQ(meta.body["platform"], "xgboost_json");
  EXPECT_EQ(meta.body["inputs"][0]["shape"], Json::array({-1, 30}));
  EXPECT_EQ(meta.body["features"][0]["name"], "mean_radius");
  EXPECT_EQ(Get(*admin_, "/v2/models/bc/ready").status, 200);
  EXPECT_EQ(Get(*admin_, "/v2/models/nope/ready").status, 503);
  EXPECT_EQ(Get(server_.anonymous_client(), "/v2/health/live").status, 200);
  EXPECT_EQ(Get(server_.anonymous_client(), "/v2/health/ready").status, 200);
  // Inference needs a token.
  EXPECT_EQ(Post(server_.anonymous_client(), "/v1/endpoints/bc/predict", Instances(0)).status, 401);

  // Prometheus metrics per endpoint and version.
  Reply metrics = Call(*admin_, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.raw.find("kervan_inference_requests_total{endpoint=\"bc\",model=\"bc\","
                             "version=\"" +
                             std::to_string(v1) + "\",side=\"stable\",outcome=\"ok\"}"),
            std::string::npos);
  EXPECT_NE(metrics.raw.find("kervan_inference_request_duration_seconds_bucket{endpoint=\"bc\""),
            std::string::npos);
  EXPECT_NE(metrics.raw.find("kervan_inference_in_flight{endpoint=\"bc\""), std::string::npos);
}

TEST_F(ServingApi, AGoodCandidateGoesShadowCanaryFullProductionAndBecomesChampion) {
  int64_t v1 = Register(Model().model_uri()), v2 = Register(Model().model_uri());
  ASSERT_EQ(Deploy(v1, "{}").status, 201);
  Reply d = Deploy(v2, kFast);
  ASSERT_EQ(d.status, 201) << d.Describe();
  EXPECT_EQ(d.body["state"], "Shadow");
  StartTraffic();
  Json done = WaitForRollout(d.body["id"]);
  StopTraffic();
  EXPECT_EQ(done["state"], "FullProduction") << done.dump(2);
  EXPECT_EQ(failed_.load(), 0);
  Reply model = Get(*admin_, "/api/v1/models/bc");
  EXPECT_EQ(model.body["aliases"]["champion"], v2) << model.Describe();
  Reply ep = Get(*admin_, "/api/v1/endpoints/bc");
  EXPECT_EQ(ep.body["stable_version"], v2);
  EXPECT_EQ(ep.body["previous_version"], v1);
  // The timeline in the event log: each phase, and analyses with their numbers.
  std::vector<std::string> types;
  int analyses = 0;
  for (const Json& e : AllEvents(*admin_)) {
    if (e["subject"].value("id", "") != d.body["id"].get<std::string>())
      continue;
    if (e["type"] == "deployment.analysis_evaluated") {
      ++analyses;
      EXPECT_TRUE(e["data"]["candidate"].contains("requests"));
      EXPECT_EQ(e["actor"], "system:serving");
    } else {
      types.push_back(e["type"]);
    }
  }
  EXPECT_EQ(types, (std::vector<std::string>{"deployment.created", "deployment.shadow_started",
                                             "deployment.rollout_started",
                                             "deployment.step_advanced", "deployment.promoted"}));
  EXPECT_GE(analyses, 3);
  Reply p = Post(*admin_, "/v1/endpoints/bc/predict", Instances(0));
  EXPECT_EQ(p.headers["x-kervan-model-version"], std::to_string(v2));
  // Samples were stored with the version that answered (20 %).
  Reply samples = Get(*admin_, "/api/v1/endpoints/bc/samples?limit=1000");
  ASSERT_EQ(samples.status, 200) << samples.Describe();
  EXPECT_GT(samples.body["samples"].size(), 5u);
}

TEST_F(ServingApi, ACandidateWithABrokenUpstreamIsRolledBackAndStableKeepsAnswering) {
  int64_t v1 = Register(Model().model_uri());
  ASSERT_EQ(Deploy(v1, "{}").status, 201);
  int64_t broken = Register("http://127.0.0.1:1/v2/models/gone", Signature());
  Reply d = Deploy(broken, R"({"steps": [{"weight": 50, "min_duration_s": 0, "min_requests": 10}],
      "analysis": {"max_latency_p99_ratio": null, "interval_s": 1, "min_samples": 10, "failure_limit": 2}})");
  ASSERT_EQ(d.status, 201) << d.Describe();
  // A request that lands on the candidate gets a clear 503, not a crash.
  bool saw_503 = false;
  for (int i = 0; i < 40 && !saw_503; ++i) {
    Reply r = Post(*admin_, "/v1/endpoints/bc/predict", Instances(0));
    if (r.status == 503) {
      saw_503 = true;
      EXPECT_TRUE(IsError(r, 503, "unavailable"));
      EXPECT_EQ(r.headers["x-kervan-route"], "candidate");
    } else {
      EXPECT_EQ(r.status, 200) << r.Describe();
    }
  }
  EXPECT_TRUE(saw_503);
  StartTraffic();
  Json done = WaitForRollout(d.body["id"]);
  StopTraffic();
  EXPECT_EQ(done["state"], "RolledBack") << done.dump(2);
  EXPECT_NE(done["outcome"].get<std::string>().find("error_rate"), std::string::npos);
  EXPECT_EQ(done["last_evaluation"]["verdict"], "fail");
  EXPECT_GT(done["last_evaluation"]["candidate"]["errors"].get<int64_t>(), 0);
  // After the rollback every request is the stable version's.
  for (int i = 0; i < 10; ++i) {
    Reply r = Post(*admin_, "/v1/endpoints/bc/predict", Instances(i));
    ASSERT_EQ(r.status, 200) << r.Describe();
    EXPECT_EQ(r.headers["x-kervan-model-version"], std::to_string(v1));
  }
  EXPECT_EQ(Get(*admin_, "/api/v1/models/bc").body["aliases"]["champion"], v1);
  // The rollback event carries the evidence.
  bool found = false;
  for (const Json& e : AllEvents(*admin_)) {
    if (e["type"] == "deployment.rolled_back") {
      found = true;
      EXPECT_EQ(e["actor"], "system:serving");
      EXPECT_FALSE(e["reason"].get<std::string>().empty());
      EXPECT_EQ(e["data"]["data"]["verdict"], "fail");
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(ServingApi, NonReadyVersionsAndBadInputAreRefusedWithClearErrors) {
  Reply strict =
      Post(*admin_, "/api/v1/models",
           {{"name", "strict"},
            {"validation",
             {{"checks", Json::array({{{"metric", "auc"}, {"op", ">="}, {"threshold", 0.99}}})}}}});
  ASSERT_EQ(strict.status, 201) << strict.Describe();
  Reply rejected = Post(*admin_, "/api/v1/models/strict/versions",
                        {{"artifact_uri", Model().model_uri()}, {"metrics", {{"auc", 0.5}}}});
  ASSERT_EQ(rejected.body["state"], "Rejected") << rejected.Describe();
  Reply refused = Post(*admin_, "/api/v1/deployments", {{"model", "strict"}, {"version", 1}});
  EXPECT_TRUE(IsError(refused, 409, "failed_precondition", "version")) << refused.raw;
  EXPECT_EQ(Get(*admin_, "/api/v1/endpoints/strict").status, 404);

  int64_t v1 = Register(Model().model_uri());
  EXPECT_TRUE(IsError(
      Post(*admin_, "/api/v1/deployments",
           {{"model", "bc"}, {"version", v1}, {"strategy", {{"steps", {{{"weight", 0}}}}}}}),
      400, "invalid_argument", "strategy.steps[0].weight"));
  EXPECT_TRUE(IsError(Post(*admin_, "/api/v1/deployments", {{"model", "bc"}}), 400,
                      "invalid_argument", "version"));
  EXPECT_TRUE(IsError(Post(*admin_, "/api/v1/deployments", {{"model", "bc"}, {"version", 99}}), 404,
                      "not_found"));
  EXPECT_TRUE(IsError(Post(*admin_, "/api/v1/deployments",
                           {{"model", "bc"}, {"version", v1}, {"endpoint", "bad name!"}}),
                      400, "invalid_argument", "endpoint"));
  ASSERT_EQ(Deploy(v1, "{}").status, 201);

  // Wrong shapes and types, unknown endpoint, malformed JSON, oversized payloads.
  EXPECT_TRUE(IsError(Post(*admin_, "/v1/endpoints/bc/predict", {{"instances", {{1, 2}}}}), 400,
                      "invalid_argument", "instances[0]"));
  Json bad = Row(0);
  bad[4] = "x";
  EXPECT_TRUE(IsError(Post(*admin_, "/v1/endpoints/bc/predict", {{"instances", {bad}}}), 400,
                      "invalid_argument", "instances[0][4]"));
  EXPECT_TRUE(IsError(Post(*admin_, "/v1/endpoints/bc/predict", {{"rows", {Row(0)}}}), 400,
                      "invalid_argument", "instances"));
  EXPECT_TRUE(IsError(Post(*admin_, "/v1/endpoints/nope/predict", Instances(0)), 404, "not_found"));
  EXPECT_TRUE(IsError(Call(*admin_, "POST", "/v1/endpoints/bc/predict", "{\"instances\": ["), 400,
                      "invalid_argument", "body"));
  std::string huge = "{\"instances\": [" + std::string(2 << 20, ' ') + "]}";
  EXPECT_EQ(Call(*admin_, "POST", "/v1/endpoints/bc/predict", huge).status, 413);
  // OIP errors are {"error": "<message>"} with Kervan's code and field beside.
  Reply oip = Post(*admin_, "/v2/models/bc/infer",
                   {{"inputs", Json::array({{{"name", "x"},
                                             {"shape", {1, 29}},
                                             {"datatype", "FP32"},
                                             {"data", std::vector<double>(29, 1.0)}}})}});
  ASSERT_EQ(oip.status, 400) << oip.Describe();
  EXPECT_TRUE(oip.body["error"].is_string());
  EXPECT_EQ(oip.body["field"], "inputs[0].shape");
  Reply unknown = Post(*admin_, "/v2/models/nope/infer", {{"inputs", Json::array()}});
  EXPECT_EQ(unknown.status, 404);
  EXPECT_TRUE(unknown.body["error"].is_string());
  EXPECT_EQ(Get(*admin_, "/v2/models/bc/versions/abc").status, 400);
  // Manual actions: a reason is required; an unknown action is named.
  EXPECT_TRUE(IsError(Post(*admin_, "/api/v1/endpoints/bc/rollout/pause", Json::object()), 400,
                      "invalid_argument", "reason"));
  EXPECT_TRUE(IsError(Post(*admin_, "/api/v1/endpoints/bc/rollout/explode", {{"reason", "x"}}), 400,
                      "invalid_argument", "action"));
  EXPECT_TRUE(IsError(Post(*admin_, "/api/v1/endpoints/bc/rollout/pause", {{"reason", "x"}}), 409,
                      "failed_precondition", "endpoint"));
}

TEST_F(ServingApi, TrafficWeightsHoldAndStickyAndHeaderRoutesAreHonoured) {
  int64_t v1 = Register(Model().model_uri()), v2 = Register(Model().model_uri());
  ASSERT_EQ(Deploy(v1, "{}").status, 201);
  Reply d = Deploy(v2, R"({"steps": [{"weight": 30, "min_duration_s": 3600}],
      "header_routes": [{"header": "X-Group", "value": "beta"}]})");
  ASSERT_EQ(d.status, 201) << d.Describe();
  const int n = 1500;
  int candidate = 0;
  for (int i = 0; i < n; ++i) {
    Reply r = Post(*admin_, "/v1/endpoints/bc/predict", Instances(i % 20));
    ASSERT_EQ(r.status, 200) << r.Describe();
    candidate += r.headers["x-kervan-route"] == "candidate";
  }
  double sigma = std::sqrt(n * 0.3 * 0.7);
  EXPECT_NEAR(candidate, n * 0.3, 4 * sigma) << candidate << " of " << n;
  for (const char* key : {"user-1", "user-2", "user-3", "user-4"}) {
    std::string first;
    for (int i = 0; i < 10; ++i) {
      Reply r =
          Post(*admin_, "/v1/endpoints/bc/predict", Instances(0), {{"X-Kervan-Route-Key", key}});
      if (i == 0)
        first = r.headers["x-kervan-model-version"];
      EXPECT_EQ(r.headers["x-kervan-model-version"], first) << key;
    }
  }
  for (int i = 0; i < 20; ++i) {
    Reply r = Post(*admin_, "/v1/endpoints/bc/predict", Instances(0), {{"X-Group", "beta"}});
    EXPECT_EQ(r.headers["x-kervan-model-version"], std::to_string(v2));
  }
}

TEST_F(ServingApi, AServerRestartMidRolloutResumesTheRollout) {
  int64_t v1 = Register(Model().model_uri()), v2 = Register(Model().model_uri());
  ASSERT_EQ(Deploy(v1, "{}").status, 201);
  // v1 and v2 are the same model, and this test is about the restart: the
  // prediction-shift check is off because with a few dozen predictions per
  // side the histograms' Jensen-Shannon distance of identical models passes
  // 0.2 by chance (a CI run rolled back on 0.2148 after 37 requests).
  Reply d = Deploy(v2, R"({"steps": [{"weight": 40, "min_duration_s": 0, "min_requests": 10},
      {"weight": 80, "min_duration_s": 3, "min_requests": 10}],
      "analysis": {"max_latency_p99_ratio": null, "max_prediction_shift": null,
                   "interval_s": 1, "min_samples": 10}})");
  ASSERT_EQ(d.status, 201) << d.Describe();
  std::string id = d.body["id"];
  StartTraffic();
  Json now;
  for (int i = 0; i < 300; ++i) {
    now = Get(*admin_, "/api/v1/rollouts/" + id).body;
    if (now["progress"]["step"] == 1)
      break;
    std::this_thread::sleep_for(100ms);
  }
  StopTraffic();
  ASSERT_EQ(now["progress"]["step"], 1) << now.dump(2);
  ASSERT_TRUE(server_.Stop());
  ASSERT_TRUE(server_.Start());
  admin_.emplace(server_.client());
  Json after = Get(*admin_, "/api/v1/rollouts/" + id).body;
  EXPECT_EQ(after["state"], "GradualRollout");
  EXPECT_EQ(after["progress"]["step"], 1);
  // The restarted gateway routes by the stored step at once.
  int candidate = 0;
  for (int i = 0; i < 100; ++i)
    candidate +=
        Post(*admin_, "/v1/endpoints/bc/predict", Instances(0)).headers["x-kervan-route"] ==
        "candidate";
  EXPECT_GT(candidate, 55);
  StartTraffic();
  Json done = WaitForRollout(id);
  StopTraffic();
  EXPECT_EQ(done["state"], "FullProduction") << done.dump(2);
  EXPECT_EQ(Get(*admin_, "/api/v1/models/bc").body["aliases"]["champion"], v2);
}

TEST_F(ServingApi, AStandaloneGatewayFollowsTheRolloutAndFeedsItsAnalysis) {
  int64_t v1 = Register(Model().model_uri()), v2 = Register(Model().model_uri());
  ASSERT_EQ(Deploy(v1, "{}").status, 201);
  fs::path dir = fs::temp_directory_path() / ("kervan-gateway-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::string token_file = (dir / "token").string();
  std::ofstream(token_file) << server_.admin_token() << "\n";
  std::string ready = (dir / "ready").string();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string log = (dir / "gateway.log").string();
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    ::execl(KERVAN_BIN, KERVAN_BIN, "gateway", "--server", server_.url().c_str(), "--token-file",
            token_file.c_str(), "--port", "0", "--ready-file", ready.c_str(), "--no-access-log",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string port;
  for (int i = 0; i < 200 && port.empty(); ++i) {
    std::ifstream in(ready);
    std::getline(in, port);
    if (port.empty())
      std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(port.empty()) << ReadText(dir / "gateway.log");
  std::string base = "http://127.0.0.1:" + port;
  http::Client gw(base, {{"Authorization", "Bearer " + server_.admin_token()}});
  Reply p = Post(gw, "/v1/endpoints/bc/predict", Instances(2));
  ASSERT_EQ(p.status, 200) << p.Describe() << ReadText(dir / "gateway.log");
  EXPECT_NEAR(p.body["predictions"][0].get<double>(), Model().check["predictions"][2].get<double>(),
              1e-6);
  EXPECT_EQ(Post(http::Client(base), "/v1/endpoints/bc/predict", Instances(2)).status, 401);

  // All traffic goes through the standalone gateway; its reports drive the analysis.
  Reply d = Deploy(v2, R"({"steps": [{"weight": 50, "min_duration_s": 0, "min_requests": 10}],
      "analysis": {"max_latency_p99_ratio": null, "max_prediction_shift": null,
                   "interval_s": 1, "min_samples": 10}})");
  ASSERT_EQ(d.status, 201) << d.Describe();
  StartTraffic(base);
  Json done = WaitForRollout(d.body["id"]);
  StopTraffic();
  EXPECT_EQ(done["state"], "FullProduction") << done.dump(2) << ReadText(dir / "gateway.log");
  EXPECT_GT(ok_.load(), 10);
  // The gateway follows the promotion.
  std::string version;
  for (int i = 0; i < 100 && version != std::to_string(v2); ++i) {
    version = Post(gw, "/v1/endpoints/bc/predict", Instances(0)).headers["x-kervan-model-version"];
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(version, std::to_string(v2));
  // Its own metrics, for Prometheus (public, like the server's).
  Reply m = Get(http::Client(base), "/metrics");
  ASSERT_EQ(m.status, 200) << m.Describe();
  EXPECT_NE(m.raw.find("kervan_inference_requests_total{endpoint=\"bc\""), std::string::npos);
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadText(dir / "gateway.log");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kervan::apitest
