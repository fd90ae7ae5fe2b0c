// The MLflow Model Registry REST API (registry/mlflow_routes.cc) through a
// real in-process HTTP server and http::Client, over SQLite and PostgreSQL,
// with a real tracking module for runs:/ sources: response shapes and field
// omission, defaults, filters, pagination, stages, aliases, deletes, errors
// with MLflow's codes and statuses, and the events behind each change.
#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "registry/registry.h"
#include "tracking/tracking.h"

namespace kervan::registry {
namespace {

using store::testing::BackendTest;

// Migration and server start/stop lines are not what these tests look at.
const bool kQuietLogs = (core::SetLogLevel(core::LogLevel::kError), true);

struct Reply {
  int status = 0;
  Json body;
  std::string raw;
  std::string Describe() const { return std::to_string(status) + " " + raw; }
};

std::string Query(const Json& args) {
  std::string q;
  auto add = [&](const std::string& k, const std::string& v) {
    q += q.empty() ? "?" : "&";
    q += http::PercentEncode(k) + "=" + http::PercentEncode(v);
  };
  for (const auto& [k, v] : args.items()) {
    if (v.is_array()) {
      for (const auto& item : v)
        add(k, item.is_string() ? item.get<std::string>() : item.dump());
    } else {
      add(k, v.is_string() ? v.get<std::string>() : v.dump());
    }
  }
  return q;
}

class MlflowRegistryTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto a = auth::Auth::Open(*db_, *log_);
    ASSERT_TRUE(a) << a.error().ToString();
    auth_ = std::move(a).value();
    store::CommandContext admin{.actor = "user:admin"};
    ASSERT_TRUE(auth_->CreateProject("default", "", admin));
    ASSERT_TRUE(auth_->CreateProject("risk", "", admin));
    // alice: engineer everywhere; sam: scientist in default; rita: engineer in risk only.
    for (const char* who : {"user:alice", "user:sam", "user:rita"})
      ASSERT_TRUE(auth_->CreatePrincipal({who, ""}, admin));
    ASSERT_TRUE(auth_->BindRole("user:alice", {"engineer", ""}, "", admin));
    ASSERT_TRUE(auth_->BindRole("user:sam", {"scientist", "default"}, "", admin));
    ASSERT_TRUE(auth_->BindRole("user:rita", {"engineer", "risk"}, "", admin));

    auto r = Registry::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(r) << r.error().ToString();
    registry_ = std::move(r).value();
    auto t = tracking::Tracking::Open(*db_, *log_, *lifecycles_,
                                      {.artifact_root = "s3://bucket/mlruns"});
    ASSERT_TRUE(t) << t.error().ToString();
    tracking_ = std::move(t).value();

    http::Router router;
    auto st = RegisterMlflowRoutes(router, *registry_, tracking_.get(), *auth_);
    ASSERT_TRUE(st) << st.error().ToString();
    http::ServerOptions options;
    options.port = 0;
    options.io_threads = 1;
    options.worker_threads = 2;
    options.access_log = false;
    // Stands in for token authentication: the caller is user:<X-Test-User>,
    // and the route's permission is checked in any project, as the real
    // guard does.
    options.access_guard = [this](http::Request& req, const std::string& permission,
                                  bool public_route) -> Status {
      if (public_route)
        return core::PermissionDenied("no public route expected");
      std::string user = req.Header("X-Test-User");
      req.actor = "user:" + (user.empty() ? std::string("alice") : user);
      return auth_->Authorize(req.actor, permission);
    };
    server_ = std::make_unique<http::Server>(
        options, std::make_shared<const http::Router>(std::move(router)));
    auto started = server_->Start();
    ASSERT_TRUE(started) << started.error().ToString();
    client_ = std::make_unique<http::Client>("http://127.0.0.1:" + std::to_string(server_->port()));
  }

  void TearDown() override {
    if (server_)
      server_->Shutdown(std::chrono::milliseconds(500));
    server_.reset();
    tracking_.reset();
    registry_.reset();
    auth_.reset();
    lifecycles_.reset();
    log_.reset();
    BackendTest::TearDown();
  }

  Reply Call(const std::string& method, const std::string& path, const Json& args = Json::object(),
             const std::string& user = "alice", http::HeaderList headers = {},
             const std::string& prefix = "/api/2.0/mlflow/") {
    std::string target = prefix + path;
    std::string body;
    headers.emplace_back("X-Test-User", user);
    if (method == "GET") {
      target += Query(args);
    } else {
      body = args.dump();
      headers.emplace_back("Content-Type", "application/json");
    }
    auto r = client_->Send(method, target, body, headers);
    EXPECT_TRUE(r) << r.error().ToString();
    Reply out;
    if (!r)
      return out;
    out.status = r->status;
    out.raw = r->body;
    out.body = Json::parse(r->body, nullptr, false);
    return out;
  }

  // Expects an MLflow error body with `code` and `status`.
  static void ExpectError(const Reply& r, int status, const std::string& code,
                          const std::string& message_part = "") {
    EXPECT_EQ(r.status, status) << r.Describe();
    ASSERT_TRUE(r.body.is_object()) << r.raw;
    EXPECT_EQ(r.body.value("error_code", ""), code) << r.raw;
    if (!message_part.empty()) {
      EXPECT_NE(r.body.value("message", "").find(message_part), std::string::npos)
          << "expected \"" << message_part << "\" in " << r.raw;
    }
  }

  Json MustOk(const Reply& r) {
    EXPECT_EQ(r.status, 200) << r.Describe();
    return r.body;
  }

  Json CreateModel(const std::string& name, const Json& extra = Json::object(),
                   const std::string& user = "alice") {
    Json args = extra;
    args["name"] = name;
    return MustOk(Call("POST", "registered-models/create", args, user))["registered_model"];
  }

  Json CreateVersion(const std::string& name, const std::string& source,
                     const Json& extra = Json::object()) {
    Json args = extra;
    args["name"] = name;
    args["source"] = source;
    return MustOk(Call("POST", "model-versions/create", args))["model_version"];
  }

  std::string CreateRun(const std::map<std::string, double>& metrics) {
    store::CommandContext ctx{.actor = "user:alice", .correlation_id = "run-setup"};
    auto run = tracking_->CreateRun({.experiment_id = "0", .user_id = "alice"}, ctx);
    EXPECT_TRUE(run) << run.error().ToString();
    if (!run)
      return "";
    for (const auto& [k, v] : metrics) {
      auto st = tracking_->LogMetric(run->info.run_id,
                                     {.key = k, .value = v, .timestamp = 1700000000000, .step = 0});
      EXPECT_TRUE(st) << st.error().ToString();
    }
    return run->info.run_id;
  }

  std::vector<store::Event> Events(const std::string& type) {
    auto events = log_->Read({.limit = 1000, .type = type});
    EXPECT_TRUE(events) << events.error().ToString();
    return events ? std::move(events).value() : std::vector<store::Event>{};
  }

  std::vector<std::string> Names(const Json& search, const std::string& list,
                                 const std::string& field = "name") {
    std::vector<std::string> out;
    for (const auto& item : search.value(list, Json::array()))
      out.push_back(item.value(field, ""));
    return out;
  }

  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<auth::Auth> auth_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<tracking::Tracking> tracking_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Client> client_;
};

TEST_P(MlflowRegistryTest, RegisteredModelShapesOmitEmptyFields) {
  Json bare = CreateModel("bare");
  EXPECT_EQ(bare["name"], "bare");
  EXPECT_TRUE(bare["creation_timestamp"].is_number_integer()) << bare;
  EXPECT_TRUE(bare["last_updated_timestamp"].is_number_integer()) << bare;
  // Milliseconds, not microseconds.
  int64_t now_ms = core::NowMicros() / 1000;
  EXPECT_NEAR(static_cast<double>(bare["creation_timestamp"].get<int64_t>()),
              static_cast<double>(now_ms), 60000.0);
  for (const char* absent : {"description", "tags", "aliases", "latest_versions", "user_id"})
    EXPECT_FALSE(bare.contains(absent)) << absent << " in " << bare;

  Json full = CreateModel(
      "full", {{"description", "credit risk"}, {"tags", {{{"key", "team"}, {"value", "risk"}}}}});
  EXPECT_EQ(full["description"], "credit risk");
  EXPECT_EQ(full["tags"], Json::parse(R"([{"key":"team","value":"risk"}])"));

  Reply got = Call("GET", "registered-models/get", {{"name", "full"}});
  EXPECT_EQ(MustOk(got)["registered_model"], full);
  // The /ajax-api prefix serves the same.
  Reply ajax = Call("GET", "registered-models/get", {{"name", "full"}}, "alice", {},
                    "/ajax-api/2.0/mlflow/");
  EXPECT_EQ(MustOk(ajax), got.body);

  // Events: who, and the request's correlation id.
  Reply traced = Call("POST", "registered-models/create", {{"name", "traced"}}, "alice",
                      {{"X-Request-Id", "mlflow-req-1"}});
  MustOk(traced);
  auto created = Events("registered_model.created");
  ASSERT_FALSE(created.empty());
  EXPECT_EQ(created.back().subject_id, "traced");
  EXPECT_EQ(created.back().actor, "user:alice");
  EXPECT_EQ(created.back().correlation_id, "mlflow-req-1");
  EXPECT_EQ(created.back().project, "default");
}

TEST_P(MlflowRegistryTest, RegisteredModelErrorsUseMlflowCodes) {
  CreateModel("dup");
  ExpectError(Call("POST", "registered-models/create", {{"name", "dup"}}), 400,
              "RESOURCE_ALREADY_EXISTS", "Registered Model (name=dup) already exists.");
  ExpectError(Call("GET", "registered-models/get", {{"name", "nope"}}), 404,
              "RESOURCE_DOES_NOT_EXIST", "Registered Model with name=nope not found");
  ExpectError(Call("POST", "registered-models/create", Json::object()), 400,
              "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'name'");
  // MLflow allows spaces and slashes; Kervan's names are [A-Za-z0-9._-].
  ExpectError(Call("POST", "registered-models/create", {{"name", "my model"}}), 400,
              "INVALID_PARAMETER_VALUE", "field \"name\"");
  ExpectError(Call("POST", "registered-models/create",
                   {{"name", "p"}, {"tags", {{{"key", "kervan.project"}, {"value", "ghost"}}}}}),
              400, "INVALID_PARAMETER_VALUE", "project \"ghost\" does not exist");
  ExpectError(Call("POST", "registered-models/create", {{"name", "t"}, {"tags", "x"}}), 400,
              "INVALID_PARAMETER_VALUE", "tags");
  // A POST without a JSON content type, as MLflow's server refuses it.
  auto raw = client_->Send("POST", "/api/2.0/mlflow/registered-models/create", R"({"name":"ct"})",
                           {{"Content-Type", "text/plain"}});
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->status, 400);
  EXPECT_NE(raw->body.find("INVALID_PARAMETER_VALUE"), std::string::npos) << raw->body;
  // A scientist cannot delete (registry.configure): refused by the guard.
  EXPECT_EQ(Call("DELETE", "registered-models/delete", {{"name", "dup"}}, "sam").status, 403);
}

TEST_P(MlflowRegistryTest, ModelsGoToTheProjectTagAndAreAuthorizedThere) {
  Json risk = CreateModel("pd", {{"tags", {{{"key", "kervan.project"}, {"value", "risk"}}}}});
  EXPECT_EQ(risk["tags"][0]["value"], "risk");
  auto m = registry_->GetModel("pd");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->project, "risk");
  CreateModel("scorer", {}, "sam");  // default project
  // sam reads only default; rita only risk.
  ExpectError(Call("GET", "registered-models/get", {{"name", "pd"}}, "sam"), 403,
              "PERMISSION_DENIED");
  MustOk(Call("GET", "registered-models/get", {{"name", "pd"}}, "rita"));
  ExpectError(
      Call("POST", "registered-models/create",
           {{"name", "x"}, {"tags", {{{"key", "kervan.project"}, {"value", "risk"}}}}}, "sam"),
      403, "PERMISSION_DENIED");
  // Search lists only readable projects.
  EXPECT_EQ(Names(MustOk(Call("GET", "registered-models/search", {}, "sam")), "registered_models"),
            std::vector<std::string>{"scorer"});
  EXPECT_EQ(Names(MustOk(Call("GET", "registered-models/search", {}, "rita")), "registered_models"),
            std::vector<std::string>{"pd"});
  // The project tag names the project for good.
  ExpectError(Call("POST", "registered-models/set-tag",
                   {{"name", "pd"}, {"key", "kervan.project"}, {"value", "default"}}),
              400, "INVALID_PARAMETER_VALUE", "fixed at creation");
  ExpectError(
      Call("DELETE", "registered-models/delete-tag", {{"name", "pd"}, {"key", "kervan.project"}}),
      400, "INVALID_PARAMETER_VALUE");
}

TEST_P(MlflowRegistryTest, UpdateRenameAndModelTags) {
  CreateModel("m", {{"description", "first"}});
  Json updated =
      MustOk(Call("PATCH", "registered-models/update", {{"name", "m"}, {"description", "second"}}));
  EXPECT_EQ(updated["registered_model"]["description"], "second");
  // As MLflow: an update without a description clears it.
  updated = MustOk(Call("PATCH", "registered-models/update", {{"name", "m"}}));
  EXPECT_FALSE(updated["registered_model"].contains("description")) << updated;

  EXPECT_EQ(MustOk(Call("POST", "registered-models/set-tag",
                        {{"name", "m"}, {"key", "team"}, {"value", "risk"}})),
            Json::object());
  MustOk(
      Call("POST", "registered-models/set-tag", {{"name", "m"}, {"key", "tier"}, {"value", "1"}}));
  MustOk(Call("DELETE", "registered-models/delete-tag", {{"name", "m"}, {"key", "tier"}}));
  MustOk(Call("DELETE", "registered-models/delete-tag", {{"name", "m"}, {"key", "absent"}}));
  Json got = MustOk(Call("GET", "registered-models/get", {{"name", "m"}}))["registered_model"];
  EXPECT_EQ(got["tags"], Json::parse(R"([{"key":"team","value":"risk"}])"));
  EXPECT_EQ(Events("registered_model.tag_set").size(), 2u);
  EXPECT_EQ(Events("registered_model.tag_deleted").size(), 1u);  // not for the absent key
  ExpectError(Call("POST", "registered-models/set-tag", {{"name", "m"}, {"value", "x"}}), 400,
              "INVALID_PARAMETER_VALUE", "'key'");
  ExpectError(Call("POST", "registered-models/set-tag",
                   {{"name", "m"}, {"key", std::string(251, 'k')}, {"value", "x"}}),
              400, "INVALID_PARAMETER_VALUE");

  // Rename: fine without versions...
  Json renamed =
      MustOk(Call("POST", "registered-models/rename", {{"name", "m"}, {"new_name", "m2"}}));
  EXPECT_EQ(renamed["registered_model"]["name"], "m2");
  ExpectError(Call("GET", "registered-models/get", {{"name", "m"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  EXPECT_EQ(Events("registered_model.renamed").size(), 1u);
  CreateModel("other");
  ExpectError(Call("POST", "registered-models/rename", {{"name", "m2"}, {"new_name", "other"}}),
              400, "RESOURCE_ALREADY_EXISTS");
  ExpectError(Call("POST", "registered-models/rename", {{"name", "m2"}, {"new_name", "a b"}}), 400,
              "INVALID_PARAMETER_VALUE", "new_name");
  // ...refused with versions: their entity ids carry the model's name.
  CreateVersion("m2", "s3://b/m2");
  ExpectError(Call("POST", "registered-models/rename", {{"name", "m2"}, {"new_name", "m3"}}), 400,
              "INVALID_STATE", "cannot be renamed");
}

TEST_P(MlflowRegistryTest, ModelVersionShapesDefaultsAndUpdates) {
  CreateModel("m");
  Json v1 = CreateVersion("m", "s3://bucket/models/m1",
                          {{"run_id", "0123456789abcdef0123456789abcdef"},
                           {"description", "first"},
                           {"run_link", "https://other-mlflow/#/runs/1"},
                           {"tags", {{{"key", "data"}, {"value", "2026-q1"}}}}});
  EXPECT_EQ(v1["name"], "m");
  EXPECT_EQ(v1["version"], "1");  // a string, as MLflow's proto
  EXPECT_TRUE(v1["creation_timestamp"].is_number_integer());
  EXPECT_TRUE(v1["last_updated_timestamp"].is_number_integer());
  EXPECT_EQ(v1["current_stage"], "None");
  EXPECT_EQ(v1["status"], "READY");
  EXPECT_EQ(v1["status_message"], "kervan state: DeploymentReady");
  EXPECT_EQ(v1["source"], "s3://bucket/models/m1");
  // An unknown run (e.g. on the tracking server run_link points at) is kept.
  EXPECT_EQ(v1["run_id"], "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(v1["run_link"], "https://other-mlflow/#/runs/1");
  EXPECT_EQ(v1["description"], "first");
  EXPECT_EQ(v1["tags"], Json::parse(R"([{"key":"data","value":"2026-q1"}])"));
  EXPECT_EQ(v1["user_id"], "user:alice");
  EXPECT_FALSE(v1.contains("aliases"));

  Json v2 = CreateVersion("m", "s3://bucket/models/m2");
  EXPECT_EQ(v2["version"], "2");
  for (const char* absent : {"description", "run_id", "run_link", "tags", "aliases"})
    EXPECT_FALSE(v2.contains(absent)) << absent << " in " << v2;

  Json got = MustOk(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "1"}}));
  EXPECT_EQ(got["model_version"], v1);
  Json uri =
      MustOk(Call("GET", "model-versions/get-download-uri", {{"name", "m"}, {"version", "2"}}));
  EXPECT_EQ(uri, Json({{"artifact_uri", "s3://bucket/models/m2"}}));

  Json updated = MustOk(Call("PATCH", "model-versions/update",
                             {{"name", "m"}, {"version", "2"}, {"description", "d"}}));
  EXPECT_EQ(updated["model_version"]["description"], "d");
  updated = MustOk(Call("PATCH", "model-versions/update", {{"name", "m"}, {"version", "2"}}));
  EXPECT_FALSE(updated["model_version"].contains("description"));
  EXPECT_EQ(Events("model_version.updated").size(), 2u);

  MustOk(Call("POST", "model-versions/set-tag",
              {{"name", "m"}, {"version", "2"}, {"key", "k"}, {"value", "v"}}));
  got = MustOk(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "2"}}));
  EXPECT_EQ(got["model_version"]["tags"], Json::parse(R"([{"key":"k","value":"v"}])"));
  MustOk(
      Call("DELETE", "model-versions/delete-tag", {{"name", "m"}, {"version", "2"}, {"key", "k"}}));
  got = MustOk(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "2"}}));
  EXPECT_FALSE(got["model_version"].contains("tags"));
  auto tag_events = Events("model_version.tag_set");
  ASSERT_EQ(tag_events.size(), 1u);
  EXPECT_EQ(tag_events[0].subject_id, "m:2");

  // The registered model lists its newest version per stage.
  Json model = MustOk(Call("GET", "registered-models/get", {{"name", "m"}}))["registered_model"];
  ASSERT_EQ(model["latest_versions"].size(), 1u);
  EXPECT_EQ(model["latest_versions"][0]["version"], "2");

  // Errors.
  ExpectError(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "9"}}), 404,
              "RESOURCE_DOES_NOT_EXIST", "Model Version (name=m, version=9) not found");
  ExpectError(Call("GET", "model-versions/get", {{"name", "nope"}, {"version", "1"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "abc"}}), 400,
              "INVALID_PARAMETER_VALUE", "'version'");
  ExpectError(Call("GET", "model-versions/get", {{"name", "m"}}), 400, "INVALID_PARAMETER_VALUE",
              "Missing value for required parameter 'version'");
  ExpectError(Call("POST", "model-versions/create", {{"name", "m"}}), 400,
              "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'source'");
  ExpectError(Call("POST", "model-versions/create", {{"name", "nope"}, {"source", "s3://b/x"}}),
              404, "RESOURCE_DOES_NOT_EXIST");
}

TEST_P(MlflowRegistryTest, SourcesAreCheckedAndResolved) {
  CreateModel("m");
  ExpectError(Call("POST", "model-versions/create", {{"name", "m"}, {"source", "s3://b/a/../c"}}),
              400, "INVALID_PARAMETER_VALUE", "relative path");
  ExpectError(
      Call("POST", "model-versions/create", {{"name", "m"}, {"source", "s3://b/a/%2E%2E/c"}}), 400,
      "INVALID_PARAMETER_VALUE");
  ExpectError(Call("POST", "model-versions/create", {{"name", "m"}, {"source", "/etc/passwd"}}),
              400, "INVALID_PARAMETER_VALUE", "local path");
  ExpectError(
      Call("POST", "model-versions/create", {{"name", "m"}, {"source", "file:///tmp/model"}}), 400,
      "INVALID_PARAMETER_VALUE", "local path");

  CreateVersion("m", "s3://b/one");
  MustOk(Call("POST", "registered-models/alias",
              {{"name", "m"}, {"alias", "champion"}, {"version", "1"}}));
  CreateVersion("m", "s3://b/two");
  MustOk(Call("POST", "model-versions/transition-stage",
              {{"name", "m"}, {"version", "2"}, {"stage", "production"}}));
  // models:/ sources resolve to that version's artifacts; source keeps the URI.
  CreateModel("copy");
  Json by_version = CreateVersion("copy", "models:/m/1");
  EXPECT_EQ(by_version["source"], "models:/m/1");
  Json uri =
      MustOk(Call("GET", "model-versions/get-download-uri", {{"name", "copy"}, {"version", "1"}}));
  EXPECT_EQ(uri["artifact_uri"], "s3://b/one");
  auto resolved = [&](const std::string& source) {
    Json v = CreateVersion("copy", source);
    auto got = registry_->GetVersion("copy", std::stoll(v.value("version", "0")));
    return got ? got->artifact_uri : std::string("?");
  };
  EXPECT_EQ(resolved("models:/m@champion"), "s3://b/one");
  EXPECT_EQ(resolved("models:/m/Production"), "s3://b/two");
  EXPECT_EQ(resolved("models:/m/latest"), "s3://b/two");
  ExpectError(Call("POST", "model-versions/create", {{"name", "copy"}, {"source", "models:/m/7"}}),
              404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Call("POST", "model-versions/create", {{"name", "copy"}, {"source", "models:/m"}}),
              400, "INVALID_PARAMETER_VALUE");
}

TEST_P(MlflowRegistryTest, RunsSourcesResolveAndTheGateSeesTheRunsMetrics) {
  CreateModel("credit");
  auto gate = registry_->SetGate(
      "credit", {{.name = "auc floor", .metric = "auc", .op = ">=", .threshold = 0.85}}, "floor",
      {.actor = "user:alice"});
  ASSERT_TRUE(gate) << gate.error().ToString();
  std::string good = CreateRun({{"auc", 0.91}, {"logloss", 0.3}});
  std::string bad = CreateRun({{"auc", 0.70}});
  ASSERT_FALSE(good.empty());
  auto info = tracking_->GetRunInfo(good);
  ASSERT_TRUE(info) << info.error().ToString();

  Json v1 = CreateVersion("credit", "runs:/" + good + "/model");
  EXPECT_EQ(v1["source"], "runs:/" + good + "/model");
  EXPECT_EQ(v1["run_id"], good);
  EXPECT_EQ(v1["status_message"], "kervan state: DeploymentReady");
  Json uri = MustOk(
      Call("GET", "model-versions/get-download-uri", {{"name", "credit"}, {"version", "1"}}));
  EXPECT_EQ(uri["artifact_uri"], info->artifact_uri + "/model");
  auto native = registry_->GetVersion("credit", 1);
  ASSERT_TRUE(native);
  EXPECT_EQ(native->metrics, (std::map<std::string, double>{{"auc", 0.91}, {"logloss", 0.3}}));
  EXPECT_EQ(native->source_run_id, good);
  EXPECT_EQ(native->validation["decision"], "passed");

  // The run's metrics fail the gate: registered, READY for MLflow, Rejected for Kervan.
  Json v2 = CreateVersion("credit", "runs:/" + bad + "/model", {{"run_id", bad}});
  EXPECT_EQ(v2["status"], "READY");
  EXPECT_EQ(v2["status_message"], "kervan state: Rejected");
  // A run_id with another source passes its metrics too.
  Json v3 = CreateVersion("credit", "s3://elsewhere/model", {{"run_id", good}});
  EXPECT_EQ(v3["status_message"], "kervan state: DeploymentReady");

  ExpectError(Call("POST", "model-versions/create",
                   {{"name", "credit"}, {"source", "runs:/" + good + "/model"}, {"run_id", bad}}),
              400, "INVALID_PARAMETER_VALUE", "run_id");
  ExpectError(
      Call("POST", "model-versions/create",
           {{"name", "credit"}, {"source", "runs:/ffffffffffffffffffffffffffffffff/model"}}),
      404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Call("POST", "model-versions/create", {{"name", "credit"}, {"source", "runs:/"}}),
              400, "INVALID_PARAMETER_VALUE");
}

TEST_P(MlflowRegistryTest, StagesMoveAsLabelsAndArchivedRunsTheLifecycle) {
  CreateModel("m");
  for (int i = 0; i < 4; ++i)
    CreateVersion("m", "s3://b/v" + std::to_string(i + 1));
  auto transition = [&](const std::string& version, const std::string& stage,
                        bool archive_existing = false, const std::string& user = "alice") {
    return Call("POST", "model-versions/transition-stage",
                {{"name", "m"},
                 {"version", version},
                 {"stage", stage},
                 {"archive_existing_versions", archive_existing}},
                user, {{"X-Request-Id", "stage-" + version + "-" + stage}});
  };
  Json staged = MustOk(transition("1", "staging"));  // any case
  EXPECT_EQ(staged["model_version"]["current_stage"], "Staging");
  EXPECT_EQ(staged["model_version"]["status_message"], "kervan state: DeploymentReady");
  MustOk(transition("2", "Staging"));
  MustOk(transition("3", "Production"));

  // get-latest-versions, POST and GET, with and without stages.
  Json latest = MustOk(Call("POST", "registered-models/get-latest-versions",
                            {{"name", "m"}, {"stages", {"Staging"}}}));
  EXPECT_EQ(Names(latest, "model_versions", "version"), std::vector<std::string>{"2"});
  latest = MustOk(Call("GET", "registered-models/get-latest-versions",
                       {{"name", "m"}, {"stages", {"production", "None"}}}));
  EXPECT_EQ(Names(latest, "model_versions", "version"), (std::vector<std::string>{"3", "4"}));
  latest = MustOk(Call("GET", "registered-models/get-latest-versions", {{"name", "m"}}));
  EXPECT_EQ(Names(latest, "model_versions", "version"), (std::vector<std::string>{"2", "3", "4"}));
  EXPECT_EQ(MustOk(Call("POST", "registered-models/get-latest-versions",
                        {{"name", "m"}, {"stages", {"Archived"}}})),
            Json::object());
  ExpectError(
      Call("POST", "registered-models/get-latest-versions", {{"name", "m"}, {"stages", {"Prod"}}}),
      400, "INVALID_PARAMETER_VALUE",
      "Invalid Model Version stage: Prod. Value must be one of None, Staging, Production, "
      "Archived.");

  // archive_existing_versions: the other Staging version moves to Archived,
  // and Kervan's lifecycle archives it (no alias holds it).
  MustOk(transition("4", "Staging", true));
  Json v2 = MustOk(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "2"}}));
  EXPECT_EQ(v2["model_version"]["current_stage"], "Archived");
  EXPECT_EQ(v2["model_version"]["status_message"], "kervan state: Archived");
  Json v1 = MustOk(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "1"}}));
  EXPECT_EQ(v1["model_version"]["current_stage"], "Archived");
  auto archived = Events("model_version.archived");
  ASSERT_EQ(archived.size(), 2u);
  EXPECT_EQ(archived[0].reason, "MLflow transition-stage to Staging");
  EXPECT_EQ(archived[0].correlation_id, "stage-4-Staging");
  EXPECT_FALSE(archived[0].causation_id.empty());

  // An Archived (final) version cannot come back.
  ExpectError(transition("2", "Production"), 400, "INVALID_STATE", "final");
  ExpectError(transition("3", "None", true), 400, "INVALID_PARAMETER_VALUE",
              "archive_existing_versions");
  ExpectError(transition("3", "Gold"), 400, "INVALID_PARAMETER_VALUE",
              "Invalid Model Version stage: Gold");

  // A version holding an alias gets the Archived label, but the lifecycle
  // keeps it (an archived version cannot hold an alias); the event says why.
  MustOk(Call("POST", "registered-models/alias",
              {{"name", "m"}, {"alias", "champion"}, {"version", "3"}}));
  Json held = MustOk(Call(
      "POST", "model-versions/transition-stage",
      {{"name", "m"}, {"version", "3"}, {"stage", "Archived"}, {"comment", "replaced by v4"}}));
  EXPECT_EQ(held["model_version"]["current_stage"], "Archived");
  EXPECT_EQ(held["model_version"]["status_message"], "kervan state: DeploymentReady");
  auto stage_events = Events("model_version.stage_changed");
  ASSERT_FALSE(stage_events.empty());
  const auto& last = stage_events.back();
  EXPECT_EQ(last.subject_id, "m:3");
  EXPECT_EQ(last.reason, "replaced by v4");
  EXPECT_EQ(last.actor, "user:alice");
  Json data = Json::parse(last.data);
  EXPECT_EQ(data["stage"], "Archived");
  EXPECT_EQ(data["previous_stage"], "Production");
  EXPECT_NE(data["lifecycle"].get<std::string>().find("alias"), std::string::npos) << data;
  // The entities projection still says DeploymentReady (no "to" in the data).
  auto entity = lifecycles_->Get("model_version", "m:3");
  ASSERT_TRUE(entity);
  EXPECT_EQ(entity->state, "DeploymentReady");

  // Permissions: a scientist cannot move stages; an engineer in another
  // project passes the route's guard but not the model's project.
  EXPECT_EQ(transition("4", "Production", false, "sam").status, 403);
  ExpectError(transition("4", "Production", false, "rita"), 403, "PERMISSION_DENIED");
}

TEST_P(MlflowRegistryTest, AliasesSetGetAndDelete) {
  CreateModel("m");
  CreateVersion("m", "s3://b/1");
  CreateVersion("m", "s3://b/2");
  EXPECT_EQ(MustOk(Call("POST", "registered-models/alias",
                        {{"name", "m"}, {"alias", "champion"}, {"version", "1"}})),
            Json::object());
  Json got = MustOk(Call("GET", "registered-models/alias", {{"name", "m"}, {"alias", "champion"}}));
  EXPECT_EQ(got["model_version"]["version"], "1");
  EXPECT_EQ(got["model_version"]["aliases"], Json::array({"champion"}));
  Json model = MustOk(Call("GET", "registered-models/get", {{"name", "m"}}))["registered_model"];
  EXPECT_EQ(model["aliases"], Json::parse(R"([{"alias":"champion","version":"1"}])"));

  // Setting it again where it is records nothing; moving it does.
  MustOk(Call("POST", "registered-models/alias",
              {{"name", "m"}, {"alias", "champion"}, {"version", "1"}}));
  MustOk(Call("POST", "registered-models/alias",
              {{"name", "m"}, {"alias", "champion"}, {"version", 2}}));
  auto moves = Events("registered_model.alias_set");
  ASSERT_EQ(moves.size(), 2u);
  EXPECT_EQ(moves[1].reason, "set through the MLflow API");
  auto history = registry_->AliasHistory("m", "champion");
  ASSERT_TRUE(history);
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[1].previous_version, 1);

  EXPECT_EQ(
      MustOk(Call("DELETE", "registered-models/alias", {{"name", "m"}, {"alias", "champion"}})),
      Json::object());
  // Deleting an absent alias is not an error (as MLflow).
  MustOk(Call("DELETE", "registered-models/alias", {{"name", "m"}, {"alias", "champion"}}));
  EXPECT_EQ(Events("registered_model.alias_deleted").size(), 1u);
  ExpectError(Call("GET", "registered-models/alias", {{"name", "m"}, {"alias", "champion"}}), 400,
              "INVALID_PARAMETER_VALUE", "Registered model alias champion not found.");

  // Names MLflow allows but Kervan does not, and MLflow's reserved ones.
  ExpectError(Call("POST", "registered-models/alias",
                   {{"name", "m"}, {"alias", "Champion"}, {"version", "1"}}),
              400, "INVALID_PARAMETER_VALUE", "not an alias name");
  ExpectError(
      Call("POST", "registered-models/alias", {{"name", "m"}, {"alias", "v1"}, {"version", "1"}}),
      400, "INVALID_PARAMETER_VALUE", "reserved");
  ExpectError(Call("POST", "registered-models/alias",
                   {{"name", "m"}, {"alias", "latest"}, {"version", "1"}}),
              400, "INVALID_PARAMETER_VALUE", "reserved");
  ExpectError(Call("POST", "registered-models/alias",
                   {{"name", "m"}, {"alias", "champion"}, {"version", "5"}}),
              404, "RESOURCE_DOES_NOT_EXIST");
  EXPECT_EQ(Call("POST", "registered-models/alias",
                 {{"name", "m"}, {"alias", "champion"}, {"version", "1"}}, "sam")
                .status,
            403);
}

TEST_P(MlflowRegistryTest, DeletingAVersionRemovesItsAliasesAndKeepsTheHistory) {
  CreateModel("m");
  CreateVersion("m", "s3://b/1");
  CreateVersion("m", "s3://b/2");
  MustOk(Call("POST", "registered-models/alias",
              {{"name", "m"}, {"alias", "champion"}, {"version", "2"}}));
  EXPECT_EQ(MustOk(Call("DELETE", "model-versions/delete", {{"name", "m"}, {"version", "2"}},
                        "alice", {{"X-Request-Id", "del-2"}})),
            Json::object());
  ExpectError(Call("GET", "model-versions/get", {{"name", "m"}, {"version", "2"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Call("DELETE", "model-versions/delete", {{"name", "m"}, {"version", "2"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  Json model = MustOk(Call("GET", "registered-models/get", {{"name", "m"}}))["registered_model"];
  EXPECT_FALSE(model.contains("aliases")) << model;
  ASSERT_EQ(model["latest_versions"].size(), 1u);
  EXPECT_EQ(model["latest_versions"][0]["version"], "1");

  auto deleted = Events("model_version.deleted");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_EQ(deleted[0].subject_id, "m:2");
  EXPECT_EQ(deleted[0].correlation_id, "del-2");
  EXPECT_EQ(deleted[0].reason, "deleted through the MLflow API");
  auto alias_deleted = Events("registered_model.alias_deleted");
  ASSERT_EQ(alias_deleted.size(), 1u);
  EXPECT_EQ(alias_deleted[0].causation_id, deleted[0].id);
  EXPECT_NE(alias_deleted[0].reason.find("version 2 was deleted"), std::string::npos);
  auto entity = lifecycles_->Get("model_version", "m:2");
  ASSERT_TRUE(entity);
  EXPECT_EQ(entity->state, "Deleted");

  // The native view's latest_version is the newest existing version, but
  // numbers are never reused.
  auto native = registry_->GetModel("m");
  ASSERT_TRUE(native);
  EXPECT_EQ(native->latest_version, 1);
  EXPECT_EQ(CreateVersion("m", "s3://b/3")["version"], "3");
  // A rebuilt projection agrees with the live one.
  ASSERT_TRUE(lifecycles_->RebuildProjection());
  entity = lifecycles_->Get("model_version", "m:2");
  ASSERT_TRUE(entity);
  EXPECT_EQ(entity->state, "Deleted");
}

TEST_P(MlflowRegistryTest, DeletingAModelKeepsItsVersionNumbersRetired) {
  CreateModel("m");
  CreateVersion("m", "s3://b/1");
  CreateVersion("m", "s3://b/2");
  MustOk(Call("POST", "registered-models/alias",
              {{"name", "m"}, {"alias", "champion"}, {"version", "1"}}));
  EXPECT_EQ(MustOk(Call("DELETE", "registered-models/delete", {{"name", "m"}})), Json::object());
  ExpectError(Call("GET", "registered-models/get", {{"name", "m"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Call("DELETE", "registered-models/delete", {{"name", "m"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  auto model_deleted = Events("registered_model.deleted");
  ASSERT_EQ(model_deleted.size(), 1u);
  Json data = Json::parse(model_deleted[0].data);
  EXPECT_EQ(data["versions"], Json::array({1, 2}));
  EXPECT_EQ(data["aliases"], Json({{"champion", 1}}));
  auto versions_deleted = Events("model_version.deleted");
  ASSERT_EQ(versions_deleted.size(), 2u);
  EXPECT_EQ(versions_deleted[0].causation_id, model_deleted[0].id);
  EXPECT_EQ(MustOk(Call("GET", "model-versions/search", {{"filter", "name='m'"}})), Json::object());

  // The name is free again; its versions continue after the deleted ones,
  // so "m:1" in the audit log keeps meaning the first model's version.
  CreateModel("m");
  EXPECT_EQ(CreateVersion("m", "s3://b/again")["version"], "3");
  auto history = registry_->AliasHistory("m", "");
  ASSERT_TRUE(history);
  EXPECT_TRUE(history->empty());
}

TEST_P(MlflowRegistryTest, SearchRegisteredModelsFiltersOrdersAndPages) {
  for (const char* name : {"alpha", "beta", "gamma", "alphabet", "Alpine"}) {
    Json tags = Json::array();
    if (std::string(name).rfind("alp", 0) == 0)
      tags.push_back({{"key", "team"}, {"value", "risk"}});
    CreateModel(name, {{"tags", tags}});
  }
  auto search = [&](const Json& args) {
    return MustOk(Call("GET", "registered-models/search", args));
  };
  using Strings = std::vector<std::string>;
  EXPECT_EQ(Names(search({}), "registered_models"),
            (Strings{"Alpine", "alpha", "alphabet", "beta", "gamma"}));
  EXPECT_EQ(Names(search({{"filter", "name = 'beta'"}}), "registered_models"), Strings{"beta"});
  EXPECT_EQ(Names(search({{"filter", "name='beta'"}}), "registered_models"), Strings{"beta"});
  EXPECT_EQ(Names(search({{"filter", "name != 'beta'"}}), "registered_models").size(), 4u);
  EXPECT_EQ(Names(search({{"filter", "name LIKE 'alp%'"}}), "registered_models"),
            (Strings{"alpha", "alphabet"}));
  EXPECT_EQ(Names(search({{"filter", "name ILIKE 'alp%'"}}), "registered_models"),
            (Strings{"Alpine", "alpha", "alphabet"}));
  EXPECT_EQ(Names(search({{"filter", "tags.team = 'risk'"}}), "registered_models"),
            (Strings{"alpha", "alphabet"}));
  EXPECT_EQ(
      Names(search({{"filter", "tags.team = 'risk' AND name LIKE '%bet'"}}), "registered_models"),
      Strings{"alphabet"});
  EXPECT_EQ(search({{"filter", "name = 'nothing'"}}), Json::object());
  EXPECT_EQ(Names(search({{"order_by", {"name DESC"}}}), "registered_models"),
            (Strings{"gamma", "beta", "alphabet", "alpha", "Alpine"}));
  // Touching gamma makes it the most recently updated.
  MustOk(Call("PATCH", "registered-models/update", {{"name", "gamma"}, {"description", "new"}}));
  EXPECT_EQ(Names(search({{"order_by", {"last_updated_timestamp DESC"}}, {"max_results", 1}}),
                  "registered_models"),
            Strings{"gamma"});

  // Pages: a token while more follow (MLflow's registry looks one ahead).
  Json page1 = search({{"max_results", 2}});
  EXPECT_EQ(Names(page1, "registered_models"), (Strings{"Alpine", "alpha"}));
  ASSERT_TRUE(page1.contains("next_page_token")) << page1;
  Json page2 = search({{"max_results", 2}, {"page_token", page1["next_page_token"]}});
  EXPECT_EQ(Names(page2, "registered_models"), (Strings{"alphabet", "beta"}));
  Json page3 = search({{"max_results", 2}, {"page_token", page2["next_page_token"]}});
  EXPECT_EQ(Names(page3, "registered_models"), Strings{"gamma"});
  EXPECT_FALSE(page3.contains("next_page_token")) << page3;
  EXPECT_FALSE(search({{"max_results", 5}}).contains("next_page_token"));
  // Past the end: {}.
  EXPECT_EQ(search({{"page_token", tracking::mlflow::EncodePageToken(10)}}), Json::object());

  ExpectError(Call("GET", "registered-models/search", {{"max_results", 1001}}), 400,
              "INVALID_PARAMETER_VALUE", "at most 1000");
  ExpectError(Call("GET", "registered-models/search", {{"filter", "name = "}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Call("GET", "registered-models/search", {{"filter", "run_id = 'x'"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Call("GET", "registered-models/search", {{"filter", "tags.team > 'a'"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Call("GET", "registered-models/search", {{"order_by", {"size"}}}), 400,
              "INVALID_PARAMETER_VALUE", "Invalid order by key 'size'");
  ExpectError(Call("GET", "registered-models/search",
                   {{"order_by", {"timestamp", "last_updated_timestamp DESC"}}}),
              400, "INVALID_PARAMETER_VALUE", "duplicate");
  ExpectError(Call("GET", "registered-models/search", {{"page_token", "%%%"}}), 400,
              "INVALID_PARAMETER_VALUE");
}

TEST_P(MlflowRegistryTest, SearchModelVersionsFiltersOrdersAndPages) {
  std::string run_a = CreateRun({{"auc", 0.9}});
  std::string run_b = CreateRun({{"auc", 0.8}});
  CreateModel("a");
  CreateModel("b");
  CreateVersion("a", "runs:/" + run_a + "/model");                                // a:1
  CreateVersion("a", "s3://b/a2", {{"tags", {{{"key", "k"}, {"value", "v"}}}}});  // a:2
  CreateVersion("b", "s3://b/b1", {{"run_id", run_b}});                           // b:1
  CreateVersion("b", "s3://b/b2");                                                // b:2
  auto search = [&](const Json& args) {
    return MustOk(Call("GET", "model-versions/search", args));
  };
  auto ids = [&](const Json& result) {
    std::vector<std::string> out;
    for (const auto& v : result.value("model_versions", Json::array()))
      out.push_back(v.value("name", "") + ":" + v.value("version", ""));
    return out;
  };
  using Strings = std::vector<std::string>;
  // Default order: last updated first.
  EXPECT_EQ(ids(search({})), (Strings{"b:2", "b:1", "a:2", "a:1"}));
  EXPECT_EQ(ids(search({{"filter", "name='a'"}})), (Strings{"a:2", "a:1"}));
  EXPECT_EQ(ids(search({{"filter", "run_id = '" + run_a + "'"}})), Strings{"a:1"});
  EXPECT_EQ(ids(search({{"filter", "run_id IN ('" + run_a + "', '" + run_b + "')"}})),
            (Strings{"b:1", "a:1"}));
  EXPECT_EQ(ids(search({{"filter", "source_path = 's3://b/b2'"}})), Strings{"b:2"});
  EXPECT_EQ(ids(search({{"filter", "source_path LIKE 'runs:/%'"}})), Strings{"a:1"});
  EXPECT_EQ(ids(search({{"filter", "tags.k = 'v'"}})), Strings{"a:2"});
  EXPECT_EQ(ids(search({{"filter", "name = 'b' AND version_number > 1"}})), Strings{"b:2"});
  EXPECT_EQ(ids(search({{"order_by", {"name ASC", "version_number ASC"}}})),
            (Strings{"a:1", "a:2", "b:1", "b:2"}));
  EXPECT_EQ(ids(search({{"order_by", {"version_number DESC"}}})),
            (Strings{"a:2", "b:2", "a:1", "b:1"}));

  Json page1 = search({{"max_results", 3}, {"order_by", {"name", "version_number"}}});
  EXPECT_EQ(ids(page1), (Strings{"a:1", "a:2", "b:1"}));
  ASSERT_TRUE(page1.contains("next_page_token"));
  Json page2 = search({{"max_results", 3},
                       {"order_by", {"name", "version_number"}},
                       {"page_token", page1["next_page_token"]}});
  EXPECT_EQ(ids(page2), Strings{"b:2"});
  EXPECT_FALSE(page2.contains("next_page_token"));

  // Shapes in search results are the full model versions.
  Json one = search({{"filter", "name='a' AND version_number = 1"}});
  ASSERT_EQ(one["model_versions"].size(), 1u);
  EXPECT_EQ(one["model_versions"][0]["run_id"], run_a);
  EXPECT_EQ(one["model_versions"][0]["current_stage"], "None");

  ExpectError(Call("GET", "model-versions/search", {{"max_results", 200001}}), 400,
              "INVALID_PARAMETER_VALUE", "at most 200000");
  ExpectError(Call("GET", "model-versions/search", {{"max_results", 0}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Call("GET", "model-versions/search", {{"filter", "name IN ('a')"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Call("GET", "model-versions/search", {{"filter", "stage = 'None'"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Call("GET", "model-versions/search", {{"order_by", {"stage"}}}), 400,
              "INVALID_PARAMETER_VALUE", "Invalid order by key");
  // Projects: sam (default only) sees default's versions only.
  CreateModel("riskm", {{"tags", {{{"key", "kervan.project"}, {"value", "risk"}}}}});
  CreateVersion("riskm", "s3://b/r1");
  EXPECT_EQ(ids(MustOk(Call("GET", "model-versions/search", {{"filter", "name='riskm'"}}, "sam"))),
            Strings{});
  EXPECT_EQ(ids(MustOk(Call("GET", "model-versions/search", {{"filter", "name='riskm'"}}, "rita"))),
            Strings{"riskm:1"});
}

KERVAN_INSTANTIATE_BACKENDS(MlflowRegistryTest);

}  // namespace
}  // namespace kervan::registry
