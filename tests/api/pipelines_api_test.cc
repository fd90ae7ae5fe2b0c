// Pipelines through real HTTP against the real `kervan` binary: the example
// training pipeline (examples/pipelines/breast-cancer: scikit-learn's data,
// XGBoost, Debian's python3 packages) runs end to end and registers a model
// version whose metrics are the ones its evaluate step logged; a rerun is
// served from the cache; bad specs get the field and location and start
// nothing; the public webhook receiver checks signatures; RBAC applies.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "api_util.h"
#include "core/crypto.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

using namespace std::chrono_literals;

const std::string kExampleDir =
    std::string(KERVAN_SOURCE_DIR) + "/examples/pipelines/breast-cancer";

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ServerProcessOptions PipelineServer() {
  return {.extra_args = {"--set", "jobs.cycle_ms=50", "--set", "pipelines.cycle_ms=50"}};
}

class PipelinesApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    admin_.emplace(server_.client());
  }

  Reply PostYaml(const http::Client& c, const std::string& target, const std::string& yaml) {
    return Call(c, "POST", target, yaml, {{"Content-Type", "application/yaml"}});
  }

  Json WaitForRun(const std::string& id, std::chrono::milliseconds timeout = 180s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    Json last;
    while (std::chrono::steady_clock::now() < end) {
      Reply r = Get(*admin_, "/api/v1/pipeline-runs/" + id);
      EXPECT_EQ(r.status, 200) << r.Describe();
      last = r.body;
      std::string state = last.value("state", "");
      if (state == "Succeeded" || state == "Failed" || state == "Cancelled")
        return last;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "run " << id << " did not finish: " << last.dump(2);
    return last;
  }

  static Json Step(const Json& run, const std::string& name) {
    for (const auto& s : run["steps"]) {
      if (s["step"] == name)
        return s;
    }
    ADD_FAILURE() << "no step " << name;
    return Json::object();
  }

  ServerProcess server_{PipelineServer()};
  std::optional<http::Client> admin_;
};

TEST_F(PipelinesApi, ExampleTrainingPipelineRunsEndToEndAndRegistersItsModel) {
  std::string yaml =
      "workdir: \"" + kExampleDir + "\"\n" + ReadText(kExampleDir + "/pipeline.yaml");
  Reply submitted = PostYaml(*admin_, "/api/v1/pipelines?run=true", yaml);
  ASSERT_EQ(submitted.status, 201) << submitted.Describe();
  EXPECT_EQ(submitted.body["version"], 1);
  EXPECT_EQ(submitted.body["created"], true);
  std::string run_id = submitted.body["run"]["id"];
  Json run = WaitForRun(run_id);
  ASSERT_EQ(run["state"], "Succeeded") << run.dump(2);
  for (const char* s : {"ingest", "validate", "split", "train", "evaluate", "register"})
    EXPECT_EQ(Step(run, s)["state"], "Succeeded") << s;

  // Lineage: the train step's inputs come from split, its code version is
  // the digest of train.py.
  Json train = Step(run, "train");
  EXPECT_EQ(train["inputs"][0]["source"], "steps.split.outputs.train");
  EXPECT_EQ(train["code"]["train.py"].get<std::string>().rfind("sha256:", 0), 0u) << train.dump(2);

  // Validation: every error-level expectation held.
  Json validation = Step(run, "validate")["result"];
  EXPECT_EQ(validation["passed"], true) << validation.dump(2);
  EXPECT_EQ(validation["rows"], 569);

  // The evaluate step's metrics went to its tracking run (MLflow API)...
  Json evaluate = Step(run, "evaluate");
  Reply tr = Get(
      *admin_, "/api/2.0/mlflow/runs/get?run_id=" + evaluate["tracking_run_id"].get<std::string>());
  ASSERT_EQ(tr.status, 200) << tr.Describe();
  std::map<std::string, double> logged;
  for (const auto& m : tr.body["run"]["data"]["metrics"])
    logged[m["key"]] = m["value"].get<double>();
  ASSERT_TRUE(logged.count("auc")) << tr.body.dump(2);
  EXPECT_GT(logged["auc"], 0.95);
  EXPECT_TRUE(logged.count("accuracy"));
  EXPECT_TRUE(logged.count("f1"));

  // ... and the registered version carries exactly those numbers.
  Json reg = Step(run, "register")["result"];
  EXPECT_EQ(reg["model"], "breast-cancer");
  Reply version = Get(*admin_, "/api/v1/models/breast-cancer/versions/" + reg["version"].dump());
  ASSERT_EQ(version.status, 200) << version.Describe();
  for (const char* k : {"auc", "accuracy", "f1"})
    EXPECT_DOUBLE_EQ(version.body["metrics"][k].get<double>(), logged[k]) << k;
  EXPECT_EQ(version.body["state"], "DeploymentReady");
  EXPECT_EQ(version.body["source_run_id"], Step(run, "train")["tracking_run_id"]);

  // The model file is XGBoost's JSON format, downloadable as an artifact.
  std::string artifact;
  for (const auto& o : train["outputs"]) {
    if (o["name"] == "model")
      artifact = o.value("artifact", "");
  }
  ASSERT_FALSE(artifact.empty());
  Reply model = Get(*admin_, "/api/2.0/mlflow-artifacts/artifacts/" + artifact);
  ASSERT_EQ(model.status, 200) << model.Describe();
  EXPECT_TRUE(model.body.contains("learner")) << model.raw.substr(0, 200);

  // A rerun is served from the cache: no step runs, no new version.
  Reply again = Post(*admin_, "/api/v1/pipelines/breast-cancer/runs", Json::object());
  ASSERT_EQ(again.status, 201) << again.Describe();
  Json cached = WaitForRun(again.body["id"], 60s);
  ASSERT_EQ(cached["state"], "Succeeded") << cached.dump(2);
  for (const auto& s : cached["steps"]) {
    EXPECT_EQ(s["cached"], true) << s.dump();
    EXPECT_FALSE(s.contains("job_id")) << s.dump();
  }
  Reply versions = Get(*admin_, "/api/v1/models/breast-cancer/versions");
  ASSERT_EQ(versions.status, 200);
  EXPECT_EQ(versions.body["items"].size(), 1u) << versions.body.dump(2);
}

TEST_F(PipelinesApi, BadSpecsGetTheFieldAndLocationAndStartNothing) {
  struct Case {
    std::string yaml, field_prefix, fragment;
  };
  std::vector<Case> cases = {
      {"name: x\nsteps: [\n", "spec", "line"},
      {"name: x\nsteps:\n  a:\n    command: echo\n    after: [b]\n  b:\n    command: echo\n    "
       "after: [a]\n",
       "steps", "->"},
      {"name: x\nsteps:\n  a:\n    command: cat {{inputs.i}}\n    inputs: {i: "
       "steps.nope.outputs.o}\n",
       "steps.a.inputs.i", "nope"},
      {"name: x\nsteps:\n  a:\n    command: echo\n    outputs: {o: /etc/passwd}\n",
       "steps.a.outputs.o", ""},
      {"name: x\nsteps:\n  a:\n    command: echo\n    outputs: {o: ../../x}\n", "steps.a.outputs.o",
       ""},
  };
  for (const auto& c : cases) {
    Reply r = PostYaml(*admin_, "/api/v1/pipelines?run=true", c.yaml);
    EXPECT_EQ(r.status, 400) << c.yaml << r.Describe();
    std::string field = r.body["error"].value("field", "");
    EXPECT_EQ(field.rfind(c.field_prefix, 0), 0u) << field << " for " << c.yaml;
    EXPECT_NE(r.body["error"].value("message", "").find(c.fragment), std::string::npos)
        << r.Describe();
  }
  Reply list = Get(*admin_, "/api/v1/pipelines");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(list.body["pipelines"].empty());
  Reply runs = Get(*admin_, "/api/v1/pipeline-runs");
  ASSERT_EQ(runs.status, 200);
  EXPECT_TRUE(runs.body["runs"].empty());
  // A bad run parameter names it.
  ASSERT_EQ(PostYaml(*admin_, "/api/v1/pipelines",
                     "name: p\nparams: {n: 1}\nsteps:\n  a:\n    command: echo {{params.n}}\n")
                .status,
            201);
  Reply bad = Post(*admin_, "/api/v1/pipelines/p/runs", {{"params", {{"n", "many"}}}});
  EXPECT_EQ(bad.status, 400) << bad.Describe();
  EXPECT_EQ(bad.body["error"]["field"], "params.n");
}

TEST_F(PipelinesApi, WebhookReceiverIsPublicButChecksTheSignature) {
  ASSERT_EQ(PostYaml(*admin_, "/api/v1/pipelines",
                     "name: ci\nsteps:\n  a:\n    command: echo built\ntriggers:\n  - webhook: "
                     "{events: [push], branches: [main]}\n")
                .status,
            201);
  Reply secret = Post(*admin_, "/api/v1/pipelines/ci/webhook-secret", Json::object());
  ASSERT_EQ(secret.status, 201) << secret.Describe();
  std::string key = secret.body["secret"];
  http::Client anonymous = server_.anonymous_client();
  std::string body = R"({"ref": "refs/heads/main", "after": "0123abc"})";
  Reply unsigned_call = Call(anonymous, "POST", "/api/v1/hooks/pipelines/ci", body,
                             {{"X-GitHub-Event", "push"}, {"Content-Type", "application/json"}});
  EXPECT_EQ(unsigned_call.status, 401) << unsigned_call.Describe();
  Reply forged = Call(anonymous, "POST", "/api/v1/hooks/pipelines/ci", body,
                      {{"X-GitHub-Event", "push"},
                       {"X-Hub-Signature-256", "sha256=" + core::HmacSha256Hex("guess", body)},
                       {"Content-Type", "application/json"}});
  EXPECT_EQ(forged.status, 401) << forged.Describe();
  Reply signed_call = Call(anonymous, "POST", "/api/v1/hooks/pipelines/ci", body,
                           {{"X-GitHub-Event", "push"},
                            {"X-Hub-Signature-256", "sha256=" + core::HmacSha256Hex(key, body)},
                            {"Content-Type", "application/json"}});
  ASSERT_EQ(signed_call.status, 202) << signed_call.Describe();
  std::string run_id = signed_call.body["run_id"];
  Json run = WaitForRun(run_id, 30s);
  EXPECT_EQ(run["state"], "Succeeded");
  EXPECT_EQ(run["trigger"]["kind"], "webhook");
  EXPECT_EQ(run["trigger"]["commit"], "0123abc");
  // The secret is never in the event log.
  Reply events = Get(*admin_, "/api/v1/events?limit=1000");
  ASSERT_EQ(events.status, 200);
  EXPECT_EQ(events.raw.find(key), std::string::npos);
}

TEST_F(PipelinesApi, AViewerMayReadButNotRun) {
  ASSERT_EQ(PostYaml(*admin_, "/api/v1/pipelines", "name: p\nsteps:\n  a:\n    command: echo hi\n")
                .status,
            201);
  ASSERT_EQ(Post(*admin_, "/api/v1/principals", {{"name", "user:vic"}}).status, 201);
  ASSERT_EQ(Post(*admin_, "/api/v1/principals/user:vic/roles",
                 {{"role", "viewer"}, {"project", "default"}})
                .status,
            201);
  Reply t = Post(*admin_, "/api/v1/tokens", {{"principal", "user:vic"}, {"name", "t"}});
  ASSERT_EQ(t.status, 201) << t.Describe();
  http::Client vic = server_.client_with_token(t.body["token"].get<std::string>());
  EXPECT_EQ(Get(vic, "/api/v1/pipelines/p").status, 200);
  Reply run = Post(vic, "/api/v1/pipelines/p/runs", Json::object());
  EXPECT_EQ(run.status, 403) << run.Describe();
  EXPECT_NE(run.raw.find("pipeline.run"), std::string::npos);
}

}  // namespace
}  // namespace kervan::apitest
