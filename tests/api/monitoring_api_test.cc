// Monitoring, rules and alerts through real HTTP against the real `kervan`
// binary, with a real Alertmanager started by scripts/alertmanager.sh:
// the production endpoint's monitor finds no drift in reference-like traffic
// and detects shifted inputs; a rule with `for: 3` fires on the third
// drifted window only and not again in its cooldown; its alert reaches
// Alertmanager and is resolved there when the drift ends; another rule
// starts a retraining pipeline run; late labels update a window's
// performance; a replay reproduces the past firing; bad input gets clear
// errors; the numbers are exported as Prometheus metrics.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

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

std::string Run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr)
    return out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr)
    out += buf;
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
    out.pop_back();
  return out;
}

// The model (bench/serving/make_model.py) and its training data.
struct Data {
  fs::path dir;
  std::string reference_csv;
  Json rows;  // {"features", "rows", "targets"}
};
const Data& TheData() {
  static const Data d = [] {
    Data out;
    out.dir = fs::temp_directory_path() / ("kervan-monitoring-api-" + std::to_string(getpid()));
    fs::create_directories(out.dir);
    std::string src = KERVAN_SOURCE_DIR;
    std::string cmd = "/usr/bin/python3 " + src + "/bench/serving/make_model.py --out " +
                      (out.dir / "model.json").string() + " --row-out " +
                      (out.dir / "row.json").string() + " >/dev/null && /usr/bin/python3 " + src +
                      "/tests/api/breast_cancer_data.py --out " + out.dir.string() + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    out.reference_csv = ReadText(out.dir / "reference.csv");
    out.rows = Json::parse(ReadText(out.dir / "rows.json"));
    return out;
  }();
  return d;
}

class Alertmanager {
 public:
  Alertmanager() {
    char tmpl[] = "/tmp/kervan-am.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    url_ = Run(std::string(KERVAN_SOURCE_DIR) + "/scripts/alertmanager.sh start " + dir_ +
               " 2>&1 | tail -n 1");
  }
  ~Alertmanager() {
    (void)std::system((std::string(KERVAN_SOURCE_DIR) + "/scripts/alertmanager.sh stop " + dir_ +
                       " >/dev/null 2>&1")
                          .c_str());
    fs::remove_all(dir_);
  }
  const std::string& url() const { return url_; }
  // Active alerts named `alertname`.
  Json Active(const std::string& alertname) const {
    http::Client c(url_);
    Reply r = Get(c, "/api/v2/alerts?active=true&silenced=false&inhibited=false");
    Json out = Json::array();
    if (r.status != 200 || !r.body.is_array())
      return out;
    for (const auto& a : r.body) {
      if (a["labels"].value("alertname", "") == alertname &&
          a["status"].value("state", "") == "active")
        out.push_back(a);
    }
    return out;
  }

 private:
  std::string dir_, url_;
};

class MonitoringApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { am_ = new Alertmanager(); }
  static void TearDownTestSuite() {
    delete am_;
    am_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(am_->url().rfind("http://127.0.0.1:", 0), 0u)
        << "alertmanager.sh start failed: " << am_->url();
    server_.emplace(ServerProcessOptions{
        .extra_args = {"--set", "serving.cycle_ms=100", "--set", "serving.sample_percent=100",
                       "--set", "monitoring.cycle_ms=100", "--set", "monitoring.window_rows=50",
                       "--set", "rules.cycle_ms=100", "--set", "rules.retry_base_ms=100", "--set",
                       "pipelines.cycle_ms=100", "--set",
                       "alerts.alertmanager_url=" + am_->url()}});
    ASSERT_TRUE(server_->Start());
    admin_.emplace(server_->client());
    ASSERT_EQ(Post(*admin_, "/api/v1/models", {{"name", "bc"}, {"project", "default"}}).status,
              201);
    Json inputs = Json::array();
    for (const auto& n : TheData().rows["features"])
      inputs.push_back({{"name", n}, {"type", "double"}});
    Reply v = Post(*admin_, "/api/v1/models/bc/versions",
                   {{"artifact_uri", "file://" + (TheData().dir / "model.json").string()},
                    {"metrics", {{"auc", 0.97}}},
                    {"signature", {{"inputs", inputs}}}});
    ASSERT_EQ(v.status, 201) << v.Describe();
    Reply p = Call(*admin_, "PUT", "/api/v1/models/bc/versions/1/profile", TheData().reference_csv,
                   {{"Content-Type", "text/csv"}});
    ASSERT_EQ(p.status, 200) << p.Describe();
    ASSERT_EQ(p.body["features"].size(), 30u);  // not the target
    Reply d = Post(*admin_, "/api/v1/deployments",
                   {{"model", "bc"}, {"version", 1}, {"reason", "first release"}});
    ASSERT_EQ(d.status, 201) << d.Describe();
    // The endpoint got a production version: its monitor appears by itself.
    ASSERT_TRUE(WaitFor([&] { return Get(*admin_, "/api/v1/monitors/bc").status == 200; }));
  }

  template <typename F>
  bool WaitFor(F&& done, std::chrono::milliseconds limit = 20s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done())
        return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  // One window: 5 requests of 10 rows. `scale` multiplies every feature
  // (1: rows from the training data; 1.5: shifted). Returns request ids.
  std::vector<std::string> Window(int first_row, double scale) {
    std::vector<std::string> ids;
    const Json& rows = TheData().rows["rows"];
    for (int r = 0; r < 5; ++r) {
      Json instances = Json::array();
      for (int i = 0; i < 10; ++i) {
        // A fixed stride walks the data set in a mixed order.
        int idx = (first_row + (r * 10 + i) * 37) % static_cast<int>(rows.size());
        Json row = Json::array();
        for (const auto& v : rows[idx])
          row.push_back(v.get<double>() * scale);
        instances.push_back(row);
      }
      Reply p = Post(*admin_, "/v1/endpoints/bc/predict", {{"instances", instances}});
      EXPECT_EQ(p.status, 200) << p.Describe();
      ids.push_back(p.headers["x-request-id"]);
    }
    return ids;
  }
  int64_t Evaluations() {
    Reply r = Get(*admin_, "/api/v1/monitors/bc/evaluations");
    return r.status == 200 ? static_cast<int64_t>(r.body["evaluations"].size()) : -1;
  }
  bool WaitEvaluations(int64_t n) {
    return WaitFor([&] { return Evaluations() >= n; });
  }
  Json EventsOf(const std::string& type) {
    Reply r = Get(*admin_, "/api/v1/events?type=" + type + "&limit=1000");
    EXPECT_EQ(r.status, 200) << r.Describe();
    return r.body.value("events", Json::array());
  }

  static Alertmanager* am_;
  std::optional<ServerProcess> server_;
  std::optional<http::Client> admin_;
};
Alertmanager* MonitoringApi::am_ = nullptr;

constexpr const char* kDriftAlert = R"(name: drift-alert
description: warn when most of the production inputs drift
on:
  events: ["monitor.*"]
when: "metrics.drift_share >= 0.5"
for: 3
cooldown: 1h
actions:
  - alert: {severity: warning, summary: "input drift on {{subject_id}}"}
)";

constexpr const char* kRetrain = R"(name: retrain
on: {events: [monitor.retrain_needed]}
when: "metrics.dataset_drift = 1"
cooldown: 1h
actions:
  - start_pipeline: {pipeline: bc-retrain, params: {endpoint: "{{subject_id}}"}}
)";

constexpr const char* kPipeline = R"(name: bc-retrain
params:
  endpoint: none
steps:
  train:
    command: "echo retraining for {{params.endpoint}}"
)";

TEST_F(MonitoringApi, DriftFiresARuleWhoseAlertReachesAlertmanagerAndIsResolved) {
  int64_t start_us = core::NowMicros();
  Reply rule =
      Call(*admin_, "POST", "/api/v1/rules", kDriftAlert, {{"Content-Type", "application/yaml"}});
  ASSERT_EQ(rule.status, 201) << rule.Describe();
  EXPECT_EQ(rule.body["rule"]["version"], 1);
  ASSERT_EQ(Post(*admin_, "/api/v1/pipelines", {{"yaml", kPipeline}}).status, 201);
  ASSERT_EQ(Post(*admin_, "/api/v1/rules", {{"yaml", kRetrain}}).status, 201);

  // Window 1: rows from the training data: no drift.
  std::vector<std::string> first = Window(0, 1.0);
  ASSERT_TRUE(WaitEvaluations(1));
  Reply evals = Get(*admin_, "/api/v1/monitors/bc/evaluations");
  Json w1 = evals.body["evaluations"][0];
  EXPECT_EQ(w1["decision"], "healthy") << w1.dump();
  EXPECT_EQ(w1["rows"], 50);
  EXPECT_LT(w1["metrics"]["drift_share"].get<double>(), 0.5);

  // Windows 2-4: every feature scaled by 1.5. The rule fires on the third.
  for (int w = 0; w < 3; ++w) {
    Window(100 + w, 1.5);
    ASSERT_TRUE(WaitEvaluations(2 + w));
    ASSERT_TRUE(WaitFor([&] { return !EventsOf("monitor.retrain_needed").empty(); }));
    if (w < 2) {
      std::this_thread::sleep_for(300ms);  // time for the rule engine to see it
      ASSERT_TRUE(EventsOf("rule.fired").size() <= 1u);
      size_t drift_firings = 0;
      for (const auto& e : EventsOf("rule.fired"))
        drift_firings += e["subject"]["id"] == "drift-alert";
      EXPECT_EQ(drift_firings, 0u) << "fired before the third drifted window";
    }
  }
  auto drift_firings = [&] {
    Json out = Json::array();
    for (const auto& e : EventsOf("rule.fired")) {
      if (e["subject"]["id"] == "drift-alert")
        out.push_back(e);
    }
    return out;
  };
  ASSERT_TRUE(WaitFor([&] { return drift_firings().size() == 1; }));
  Json fired = drift_firings()[0];
  EXPECT_EQ(fired["data"]["consecutive"], 3);
  EXPECT_EQ(fired["data"]["rule_version"], 1);
  EXPECT_GE(fired["data"]["observation"]["metrics"]["drift_share"].get<double>(), 0.5);
  // The alert reached the real Alertmanager, labelled with the rule.
  ASSERT_TRUE(WaitFor([&] { return am_->Active("drift-alert").size() == 1; }, 10s));
  Json alert = am_->Active("drift-alert")[0];
  EXPECT_EQ(alert["labels"]["subject"], "bc");
  EXPECT_EQ(alert["labels"]["severity"], "warning");
  EXPECT_EQ(alert["annotations"]["summary"], "input drift on bc");

  // The retrain rule started the pipeline, caused by the monitor's decision.
  Json started;
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& e : EventsOf("rule.action_succeeded")) {
      if (e["subject"]["id"] == "retrain")
        started = e;
    }
    return !started.is_null();
  }));
  std::string run_id = started["data"]["result"]["pipeline_run"];
  Reply run = Get(*admin_, "/api/v1/pipeline-runs/" + run_id);
  ASSERT_EQ(run.status, 200) << run.Describe();
  EXPECT_EQ(run.body["trigger"]["kind"], "rule");
  EXPECT_EQ(run.body["params"]["endpoint"], "bc");
  EXPECT_EQ(started["actor"], "system:rules");

  // A fifth drifted window: still breaching, but inside the cooldown.
  Window(200, 1.5);
  ASSERT_TRUE(WaitEvaluations(5));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(drift_firings().size(), 1u);

  // Reference-like traffic again: the condition stops holding, the alert is
  // resolved in Alertmanager.
  Window(7, 1.0);
  ASSERT_TRUE(WaitEvaluations(6));
  ASSERT_TRUE(WaitFor([&] { return !EventsOf("alert.resolved").empty(); }));
  EXPECT_TRUE(WaitFor([&] { return am_->Active("drift-alert").empty(); }, 10s))
      << am_->Active("drift-alert").dump();

  // A replay over the stored history reproduces the firing.
  Reply replay = Post(*admin_, "/api/v1/rules/drift-alert/test",
                      {{"from", core::FormatRfc3339(start_us)},
                       {"to", core::FormatRfc3339(core::NowMicros() + 1)}});
  ASSERT_EQ(replay.status, 200) << replay.Describe();
  ASSERT_EQ(replay.body["would_fire"].size(), 1u) << replay.body.dump(2);
  ASSERT_EQ(replay.body["fired"].size(), 1u);
  EXPECT_EQ(replay.body["would_fire"][0]["event_seq"], replay.body["fired"][0]["event_seq"]);

  // Late labels for window 1: its performance is recomputed.
  Json items = Json::array();
  const Json& rows = TheData().rows;
  for (int r = 0; r < 5; ++r) {
    Json labels = Json::array();
    for (int i = 0; i < 10; ++i) {
      int idx = ((r * 10 + i) * 37) % static_cast<int>(rows["rows"].size());
      labels.push_back(rows["targets"][idx]);
    }
    items.push_back({{"request_id", first[r]}, {"label", labels}});
  }
  Reply fb = Post(*admin_, "/api/v1/feedback", {{"endpoint", "bc"}, {"items", items}});
  ASSERT_EQ(fb.status, 200) << fb.Describe();
  EXPECT_EQ(fb.body["matched"], 5);
  ASSERT_TRUE(WaitFor([&] { return !EventsOf("monitor.performance_updated").empty(); }));
  evals = Get(*admin_, "/api/v1/monitors/bc/evaluations");
  w1 = evals.body["evaluations"][0];
  EXPECT_EQ(w1["labeled"], 50);
  // The model was trained on these rows: it is right on nearly all of them.
  EXPECT_GE(w1["performance"]["accuracy"].get<double>(), 0.9) << w1["performance"].dump();
  EXPECT_TRUE(w1["performance"]["auc"].is_number());

  // The numbers are Prometheus metrics.
  Reply metrics = Get(server_->anonymous_client(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* needle :
       {"kervan_monitor_drift_share{endpoint=\"bc\"}", "kervan_monitor_feature_drifted{",
        "kervan_monitor_performance{endpoint=\"bc\",metric=\"accuracy\"}",
        "kervan_rule_firings_total{rule=\"drift-alert\"} 1", "kervan_alerts_firing 0",
        "kervan_rollout_state{endpoint=\"bc\",state=\"FullProduction\"} 1",
        "kervan_monitor_state{endpoint=\"bc\",state=\"Monitoring\"} 1"}) {
    EXPECT_NE(metrics.raw.find(needle), std::string::npos) << needle;
  }
}

TEST_F(MonitoringApi, BadInputGetsClearErrors) {
  Reply r = Call(*admin_, "POST", "/api/v1/rules",
                 "name: r\non: {events: [a]}\nwhen: \"metrics.x >\"\nactions: [{alert: {summary: "
                 "s}}]\n",
                 {{"Content-Type", "application/yaml"}});
  EXPECT_TRUE(IsError(r, 400, "invalid_argument", "when")) << r.Describe();
  EXPECT_NE(r.raw.find("line 3"), std::string::npos) << r.raw;
  r = Post(*admin_, "/api/v1/feedback", {{"endpoint", "bc"}, {"items", {{{"request_id", "x"}}}}});
  EXPECT_TRUE(IsError(r, 400, "invalid_argument", "items[0].label")) << r.Describe();
  r = Post(*admin_, "/api/v1/feedback",
           {{"endpoint", "bc"}, {"items", {{{"request_id", "x"}, {"label", "yes"}}}}});
  EXPECT_TRUE(IsError(r, 400, "invalid_argument", "items[0].label")) << r.Describe();
  r = Call(*admin_, "PUT", "/api/v1/monitors/bc", Json{{"config", {{"window_rows", -1}}}}.dump());
  EXPECT_TRUE(IsError(r, 400, "invalid_argument", "config.window_rows")) << r.Describe();
  r = Post(*admin_, "/api/v1/monitors/bc/stop", Json::object());
  EXPECT_EQ(r.status, 400) << r.Describe();  // a reason is required
  r = Call(*admin_, "PUT", "/api/v1/models/bc/versions/1/profile", "a,b\n1,2\n",
           {{"Content-Type", "text/csv"}});
  EXPECT_TRUE(IsError(r, 400, "invalid_argument", "csv")) << r.Describe();
  // The stored profile is untouched by the refused upload.
  Reply p = Get(*admin_, "/api/v1/models/bc/versions/1/profile");
  ASSERT_EQ(p.status, 200);
  EXPECT_EQ(p.body["features"].size(), 30u);
  r = Post(*admin_, "/api/v1/approvals/nope/approve", {{"reason", "x"}});
  EXPECT_EQ(r.status, 404) << r.Describe();
  r = Post(*admin_, "/api/v1/rules/none/test", Json::object());
  EXPECT_EQ(r.status, 404) << r.Describe();
}

}  // namespace
}  // namespace kervan::apitest
