// The MLflow tracking REST API through real HTTP against a real server, on
// SQLite and PostgreSQL: every implemented endpoint under /api/2.0/mlflow/
// (and its /ajax-api/ alias), with the request and response shapes MLflow's
// own server uses (mlflow/protos/service.proto, mlflow/server/handlers.py,
// shared notes/mlflow-wire.md): field names and types, omission of empty
// fields, defaults, pagination, every runs-search filter operator and
// order_by, view types, error codes and statuses, all-or-nothing batches,
// and the audit trail every state change leaves (metrics and params leave
// none).
//
// Where Kervan deliberately differs from MLflow (docs): start_time defaults
// to now instead of 0; metric history is ordered by step, then timestamp;
// a missing artifact is 404, not 500; invalid JSON is refused instead of
// read as {}.
#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "api_util.h"
#include "core/crypto.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

constexpr char kApi[] = "/api/2.0/mlflow/";
constexpr char kAjax[] = "/ajax-api/2.0/mlflow/";

Json KV(const std::string& key, const std::string& value) {
  return Json{{"key", key}, {"value", value}};
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// {"error_code": code, "message": "..."} with `status`, as MLflow's server
// answers (and nothing of Kervan's own envelope).
::testing::AssertionResult IsMlflowError(const Reply& r, int status, const std::string& code) {
  if (r.status != status)
    return ::testing::AssertionFailure() << "want HTTP " << status << ", got " << r.Describe();
  if (!r.body.is_object())
    return ::testing::AssertionFailure() << "not a JSON object: " << r.raw;
  if (r.body.value("error_code", "") != code)
    return ::testing::AssertionFailure() << "want error_code " << code << ": " << r.raw;
  if (!r.body.contains("message") || !r.body["message"].is_string() ||
      r.body["message"].get<std::string>().empty()) {
    return ::testing::AssertionFailure() << "error without a message: " << r.raw;
  }
  return ::testing::AssertionSuccess();
}

// key -> value of a [{"key","value"}] list (absent list: empty map).
std::map<std::string, Json> ByKey(const Json& list) {
  std::map<std::string, Json> out;
  if (list.is_array()) {
    for (const auto& item : list)
      out[item.value("key", "")] = item.contains("value") ? item["value"] : Json();
  }
  return out;
}

std::map<std::string, std::string> StringsByKey(const Json& list) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : ByKey(list))
    out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

// A POST written on a bare socket, without Content-Type (http::Client adds
// one to every non-empty body).
Reply RawPost(int port, const std::string& target, const std::string& body,
              const std::string& token) {
  Reply out;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    out.transport_error = "connect failed";
    if (fd >= 0)
      ::close(fd);
    return out;
  }
  std::string request = "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                        "Authorization: Bearer " + token + "\r\nConnection: close\r\n" +
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;)
    response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  // "HTTP/1.1 400 Bad Request\r\n...\r\n\r\n<body>" (Content-Length framed).
  size_t space = response.find(' ');
  size_t head_end = response.find("\r\n\r\n");
  if (space == std::string::npos || head_end == std::string::npos) {
    out.transport_error = "malformed response: " + response.substr(0, 200);
    return out;
  }
  out.status = std::atoi(response.c_str() + space + 1);
  out.raw = response.substr(head_end + 4);
  out.body = Json::parse(out.raw, nullptr, false);
  return out;
}

class MlflowTrackingApi : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    ServerProcessOptions options;
    if (GetParam() == Backend::kPostgres) {
      KERVAN_PG_DSN_OR_SKIP(dsn);
      options.backend = Backend::kPostgres;
      options.pg_admin_dsn = dsn;
    }
    server_.emplace(std::move(options));
    ASSERT_TRUE(server_->Start());
    client_.emplace(server_->client());
    Reply ready = Get(*client_, "/readyz");
    ASSERT_EQ(ready.status, 200) << ready.Describe();
    ASSERT_EQ(ready.body.value("store", ""),
              GetParam() == Backend::kPostgres ? "postgres" : "sqlite");
  }

  const http::Client& client() const { return *client_; }

  // POST /api/2.0/mlflow/<path> with a JSON body.
  Reply MPost(const std::string& path, const Json& body, http::HeaderList headers = {}) {
    return Post(*client_, kApi + path, body, std::move(headers));
  }
  // GET /api/2.0/mlflow/<path_and_query>.
  Reply MGet(const std::string& path_and_query, http::HeaderList headers = {}) {
    return Get(*client_, kApi + path_and_query, std::move(headers));
  }

  // experiments/create; returns the id ("" on failure, with a test failure).
  std::string CreateExperiment(const std::string& name, const Json& tags = Json::array()) {
    Json body = {{"name", name}};
    if (!tags.empty())
      body["tags"] = tags;
    Reply r = MPost("experiments/create", body);
    EXPECT_EQ(r.status, 200) << r.Describe();
    if (r.status != 200 || !r.body.contains("experiment_id"))
      return "";
    EXPECT_TRUE(r.body["experiment_id"].is_string()) << r.raw;
    return r.body["experiment_id"].is_string() ? r.body["experiment_id"].get<std::string>() : "";
  }

  Json GetExperiment(const std::string& id) {
    Reply r = MGet("experiments/get?experiment_id=" + id);
    EXPECT_EQ(r.status, 200) << r.Describe();
    return r.body.is_object() && r.body.contains("experiment") ? r.body["experiment"] : Json();
  }

  // runs/create with `extra` fields; returns the "run" object.
  Json CreateRun(const std::string& experiment_id, Json extra = Json::object()) {
    extra["experiment_id"] = experiment_id;
    Reply r = MPost("runs/create", extra);
    EXPECT_EQ(r.status, 200) << r.Describe();
    return r.body.is_object() && r.body.contains("run") ? r.body["run"] : Json();
  }

  Json GetRun(const std::string& run_id) {
    Reply r = MGet("runs/get?run_id=" + run_id);
    EXPECT_EQ(r.status, 200) << r.Describe();
    return r.body.is_object() && r.body.contains("run") ? r.body["run"] : Json();
  }

  // Every point of a metric through get-history (no paging).
  Json History(const std::string& run_id, const std::string& key) {
    Reply r =
        MGet("metrics/get-history?run_id=" + run_id + "&metric_key=" + http::PercentEncode(key));
    EXPECT_EQ(r.status, 200) << r.Describe();
    return r.body.is_object() && r.body.contains("metrics") ? r.body["metrics"] : Json::array();
  }

  void Ok(const Reply& r, const std::string& what) {
    EXPECT_EQ(r.status, 200) << what << ": " << r.Describe();
    EXPECT_EQ(r.body, Json::object()) << what << ": " << r.raw;
  }

  // Audit events about one subject, oldest first.
  std::vector<Json> Audit(const std::string& kind, const std::string& id) {
    Reply r = Get(*client_, "/api/v1/audit?limit=1000&kind=" + kind + "&id=" + id);
    EXPECT_EQ(r.status, 200) << r.Describe();
    std::vector<Json> out;
    if (r.body.is_object() && r.body["events"].is_array()) {
      for (const auto& e : r.body["events"])
        out.push_back(e);
    }
    return out;
  }

  std::optional<ServerProcess> server_;
  std::optional<http::Client> client_;
};

// ---------------------------------------------------------------------------
// Experiments

TEST_P(MlflowTrackingApi, DefaultExperimentExistsWithMlflowShape) {
  Reply r = MGet("experiments/get?experiment_id=0");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.headers["content-type"].rfind("application/json", 0), 0u)
      << r.headers["content-type"];
  ASSERT_TRUE(r.body.contains("experiment")) << r.raw;
  const Json& e = r.body["experiment"];
  EXPECT_EQ(e["experiment_id"], "0");
  EXPECT_EQ(e["name"], "Default");
  EXPECT_EQ(e["lifecycle_stage"], "active");
  EXPECT_EQ(e["artifact_location"], "mlflow-artifacts:/0");
  EXPECT_TRUE(e["creation_time"].is_number_integer()) << e.dump();
  EXPECT_TRUE(e["last_update_time"].is_number_integer()) << e.dump();
  EXPECT_FALSE(e.contains("tags")) << "no tags: the field is omitted, " << e.dump();
  // The same through the /ajax-api alias the MLflow UI uses.
  Reply ajax = Get(client(), std::string(kAjax) + "experiments/get?experiment_id=0");
  ASSERT_EQ(ajax.status, 200) << ajax.Describe();
  EXPECT_EQ(ajax.body, r.body);
  Reply by_name = MGet("experiments/get-by-name?experiment_name=Default");
  ASSERT_EQ(by_name.status, 200) << by_name.Describe();
  EXPECT_EQ(by_name.body, r.body);
}

TEST_P(MlflowTrackingApi, ExperimentCreateGetRenameTagDeleteRestore) {
  Reply created = MPost(
      "experiments/create",
      {{"name", "wire exp"}, {"tags", Json::array({KV("team", "risk"), KV("stage", "dev")})}});
  ASSERT_EQ(created.status, 200) << created.Describe();
  ASSERT_EQ(created.body.size(), 1u) << "only experiment_id: " << created.raw;
  ASSERT_TRUE(created.body["experiment_id"].is_string()) << created.raw;
  const std::string id = created.body["experiment_id"].get<std::string>();
  EXPECT_NE(id, "0");
  EXPECT_TRUE(!id.empty() && std::all_of(id.begin(), id.end(), ::isdigit)) << id;

  Json e = GetExperiment(id);
  EXPECT_EQ(e["experiment_id"], id);
  EXPECT_EQ(e["name"], "wire exp");
  EXPECT_EQ(e["lifecycle_stage"], "active");
  EXPECT_EQ(e["artifact_location"], "mlflow-artifacts:/" + id);
  EXPECT_TRUE(e["creation_time"].is_number_integer());
  EXPECT_EQ(StringsByKey(e["tags"]),
            (std::map<std::string, std::string>{{"team", "risk"}, {"stage", "dev"}}));
  // get-by-name with a %-encoded space.
  Reply by_name = MGet("experiments/get-by-name?experiment_name=wire%20exp");
  ASSERT_EQ(by_name.status, 200) << by_name.Describe();
  EXPECT_EQ(by_name.body["experiment"]["experiment_id"], id);

  // An explicit artifact location is kept as given.
  std::string located;
  {
    Reply r = MPost("experiments/create",
                    {{"name", "located"}, {"artifact_location", "s3://bucket/some/prefix"}});
    ASSERT_EQ(r.status, 200) << r.Describe();
    located = r.body["experiment_id"].get<std::string>();
    EXPECT_EQ(GetExperiment(located)["artifact_location"], "s3://bucket/some/prefix");
  }

  // Errors.
  EXPECT_TRUE(IsMlflowError(MPost("experiments/create", {{"name", "wire exp"}}), 400,
                            "RESOURCE_ALREADY_EXISTS"));
  EXPECT_TRUE(
      IsMlflowError(MPost("experiments/create", Json::object()), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("experiments/create", {{"name", ""}}), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MGet("experiments/get?experiment_id=987654"), 404, "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MGet("experiments/get"), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MGet("experiments/get-by-name?experiment_name=nope"), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MGet("experiments/get-by-name"), 400, "INVALID_PARAMETER_VALUE"));

  // Rename.
  Ok(MPost("experiments/update", {{"experiment_id", id}, {"new_name", "wire renamed"}}),
     "experiments/update");
  EXPECT_EQ(GetExperiment(id)["name"], "wire renamed");
  EXPECT_TRUE(IsMlflowError(MGet("experiments/get-by-name?experiment_name=wire%20exp"), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(
      IsMlflowError(MPost("experiments/update", {{"experiment_id", id}, {"new_name", "located"}}),
                    400, "RESOURCE_ALREADY_EXISTS"));
  // new_name is required (handlers.py: [_assert_string, _assert_required]).
  EXPECT_TRUE(IsMlflowError(MPost("experiments/update", {{"experiment_id", id}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("experiments/update", {{"experiment_id", "987654"}, {"new_name", "x"}}),
                    404, "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/update", {{"new_name", "x"}}), 400,
                            "INVALID_PARAMETER_VALUE"));

  // Experiment tags: set, overwrite, delete.
  Ok(MPost("experiments/set-experiment-tag",
           {{"experiment_id", id}, {"key", "note"}, {"value", "first"}}),
     "set-experiment-tag");
  Ok(MPost("experiments/set-experiment-tag",
           {{"experiment_id", id}, {"key", "note"}, {"value", "second"}}),
     "set-experiment-tag again");
  EXPECT_EQ(
      StringsByKey(GetExperiment(id)["tags"]),
      (std::map<std::string, std::string>{{"team", "risk"}, {"stage", "dev"}, {"note", "second"}}));
  Ok(MPost("experiments/delete-experiment-tag", {{"experiment_id", id}, {"key", "note"}}),
     "delete-experiment-tag");
  EXPECT_EQ(StringsByKey(GetExperiment(id)["tags"]),
            (std::map<std::string, std::string>{{"team", "risk"}, {"stage", "dev"}}));
  EXPECT_TRUE(IsMlflowError(
      MPost("experiments/delete-experiment-tag", {{"experiment_id", id}, {"key", "note"}}), 404,
      "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/set-experiment-tag",
                                  {{"experiment_id", "987654"}, {"key", "k"}, {"value", "v"}}),
                            404, "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(
      MPost("experiments/set-experiment-tag", {{"experiment_id", id}, {"value", "v"}}), 400,
      "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/set-experiment-tag",
                                  {{"experiment_id", id}, {"key", "bad key!"}, {"value", "v"}}),
                            400, "INVALID_PARAMETER_VALUE"));

  // Delete: still readable by id and name, marked deleted; the name stays taken.
  Ok(MPost("experiments/delete", {{"experiment_id", id}}), "experiments/delete");
  EXPECT_EQ(GetExperiment(id)["lifecycle_stage"], "deleted");
  Reply deleted_by_name = MGet("experiments/get-by-name?experiment_name=wire%20renamed");
  ASSERT_EQ(deleted_by_name.status, 200) << deleted_by_name.Describe();
  EXPECT_EQ(deleted_by_name.body["experiment"]["lifecycle_stage"], "deleted");
  EXPECT_TRUE(IsMlflowError(MPost("experiments/create", {{"name", "wire renamed"}}), 400,
                            "RESOURCE_ALREADY_EXISTS"));
  // Writes to a deleted experiment are refused (SqlAlchemyStore: "must be in the 'active'
  // state", INVALID_PARAMETER_VALUE).
  EXPECT_TRUE(IsMlflowError(MPost("experiments/set-experiment-tag",
                                  {{"experiment_id", id}, {"key", "k"}, {"value", "v"}}),
                            400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/create", {{"experiment_id", id}}), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_EQ(MPost("experiments/update", {{"experiment_id", id}, {"new_name", "zombie"}}).status,
            400);
  EXPECT_TRUE(IsMlflowError(MPost("experiments/delete", {{"experiment_id", "987654"}}), 404,
                            "RESOURCE_DOES_NOT_EXIST"));

  Ok(MPost("experiments/restore", {{"experiment_id", id}}), "experiments/restore");
  EXPECT_EQ(GetExperiment(id)["lifecycle_stage"], "active");
  EXPECT_TRUE(IsMlflowError(MPost("experiments/restore", {{"experiment_id", "987654"}}), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
}

// SqlAlchemyStore.delete_experiment reads the experiment with ACTIVE_ONLY and
// restore_experiment with DELETED_ONLY: deleting a deleted (or restoring an
// active) experiment is RESOURCE_DOES_NOT_EXIST, 404.
TEST_P(MlflowTrackingApi, DeletingADeletedExperimentIsNotFoundAsInMlflow) {
  std::string id = CreateExperiment("twice");
  Ok(MPost("experiments/delete", {{"experiment_id", id}}), "delete");
  EXPECT_TRUE(IsMlflowError(MPost("experiments/delete", {{"experiment_id", id}}), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
  Ok(MPost("experiments/restore", {{"experiment_id", id}}), "restore");
  EXPECT_TRUE(IsMlflowError(MPost("experiments/restore", {{"experiment_id", id}}), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
}

TEST_P(MlflowTrackingApi, ExperimentDeleteAndRestoreCarryTheirRuns) {
  std::string id = CreateExperiment("cascade");
  std::string run_id = CreateRun(id)["info"]["run_id"].get<std::string>();
  Ok(MPost("experiments/delete", {{"experiment_id", id}}), "delete");
  EXPECT_EQ(GetRun(run_id)["info"]["lifecycle_stage"], "deleted");
  Ok(MPost("experiments/restore", {{"experiment_id", id}}), "restore");
  EXPECT_EQ(GetRun(run_id)["info"]["lifecycle_stage"], "active");
}

TEST_P(MlflowTrackingApi, ExperimentSearchFiltersOrdersPagesAndViews) {
  std::string a = CreateExperiment("exp-a", Json::array({KV("team", "risk")}));
  std::string b = CreateExperiment("exp-b", Json::array({KV("team", "growth")}));
  std::string c = CreateExperiment("Exp-C", Json::array({KV("team", "risk")}));
  auto names = [](const Reply& r) {
    std::vector<std::string> out;
    for (const auto& e : r.body.value("experiments", Json::array()))
      out.push_back(e.value("name", ""));
    return out;
  };
  using V = std::vector<std::string>;

  // POST and GET; the default page holds everything.
  Reply all = MPost("experiments/search", Json::object());
  ASSERT_EQ(all.status, 200) << all.Describe();
  EXPECT_FALSE(all.body.contains("next_page_token")) << all.raw;
  V got = names(all);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (V{"Default", "Exp-C", "exp-a", "exp-b"}));
  for (const auto& e : all.body["experiments"]) {
    EXPECT_TRUE(e["experiment_id"].is_string()) << e.dump();
    EXPECT_TRUE(e["creation_time"].is_number_integer()) << e.dump();
  }
  Reply get_all = MGet("experiments/search");
  ASSERT_EQ(get_all.status, 200) << get_all.Describe();
  EXPECT_EQ(get_all.body, all.body);
  Reply ajax = Get(client(), std::string(kAjax) + "experiments/search?order_by=name%20ASC");
  ASSERT_EQ(ajax.status, 200) << ajax.Describe();
  EXPECT_EQ(names(ajax), (V{"Default", "Exp-C", "exp-a", "exp-b"}));

  // Filters (POST and GET) and order_by.
  EXPECT_EQ(names(MPost("experiments/search",
                        {{"filter", "name LIKE 'exp-%'"}, {"order_by", {"name DESC"}}})),
            (V{"exp-b", "exp-a"}));
  EXPECT_EQ(names(MPost("experiments/search",
                        {{"filter", "name ILIKE 'exp-%'"}, {"order_by", {"name ASC"}}})),
            (V{"Exp-C", "exp-a", "exp-b"}));
  EXPECT_EQ(names(MPost("experiments/search", {{"filter", "name = 'exp-b'"}})), (V{"exp-b"}));
  EXPECT_EQ(names(MPost("experiments/search",
                        {{"filter", "name != 'exp-b'"}, {"order_by", {"name ASC"}}})),
            (V{"Default", "Exp-C", "exp-a"}));
  EXPECT_EQ(names(MGet("experiments/search?filter=" + http::PercentEncode("tags.team = 'risk'") +
                       "&order_by=" + http::PercentEncode("name ASC"))),
            (V{"Exp-C", "exp-a"}));
  EXPECT_EQ(names(MPost("experiments/search", {{"filter", "tags.team LIKE 'gro%'"}})),
            (V{"exp-b"}));
  // An experiment with nothing to show: {} (no "experiments", no token).
  Reply none = MPost("experiments/search", {{"filter", "name = 'no-such'"}});
  ASSERT_EQ(none.status, 200) << none.Describe();
  EXPECT_EQ(none.body, Json::object()) << none.raw;

  // Pagination: a full page carries a token, even when nothing follows.
  Reply p1 = MPost("experiments/search", {{"max_results", 2}, {"order_by", {"name ASC"}}});
  ASSERT_EQ(p1.status, 200) << p1.Describe();
  EXPECT_EQ(names(p1), (V{"Default", "Exp-C"}));
  ASSERT_TRUE(p1.body.contains("next_page_token") && p1.body["next_page_token"].is_string())
      << p1.raw;
  // GET with max_results and page_token as query parameters.
  Reply p2 =
      MGet("experiments/search?max_results=2&order_by=" + http::PercentEncode("name ASC") +
           "&page_token=" + http::PercentEncode(p1.body["next_page_token"].get<std::string>()));
  ASSERT_EQ(p2.status, 200) << p2.Describe();
  EXPECT_EQ(names(p2), (V{"exp-a", "exp-b"}));
  ASSERT_TRUE(p2.body.contains("next_page_token")) << p2.raw;
  Reply p3 = MPost(
      "experiments/search",
      {{"max_results", 2}, {"order_by", {"name ASC"}}, {"page_token", p2.body["next_page_token"]}});
  ASSERT_EQ(p3.status, 200) << p3.Describe();
  EXPECT_EQ(p3.body, Json::object()) << p3.raw;
  Reply p_odd = MPost("experiments/search", {{"max_results", 3}, {"order_by", {"name ASC"}}});
  ASSERT_TRUE(p_odd.body.contains("next_page_token")) << p_odd.raw;
  Reply p_rest = MPost("experiments/search", {{"max_results", 3},
                                              {"order_by", {"name ASC"}},
                                              {"page_token", p_odd.body["next_page_token"]}});
  EXPECT_EQ(names(p_rest), (V{"exp-b"}));
  EXPECT_FALSE(p_rest.body.contains("next_page_token")) << p_rest.raw;

  // View types.
  Ok(MPost("experiments/delete", {{"experiment_id", c}}), "delete Exp-C");
  EXPECT_EQ(names(MPost("experiments/search", {{"order_by", {"name ASC"}}})),
            (V{"Default", "exp-a", "exp-b"}));
  EXPECT_EQ(names(MPost("experiments/search",
                        {{"view_type", "ACTIVE_ONLY"}, {"order_by", {"name ASC"}}})),
            (V{"Default", "exp-a", "exp-b"}));
  EXPECT_EQ(names(MPost("experiments/search", {{"view_type", "DELETED_ONLY"}})), (V{"Exp-C"}));
  EXPECT_EQ(
      names(MGet("experiments/search?view_type=ALL&order_by=" + http::PercentEncode("name ASC"))),
      (V{"Default", "Exp-C", "exp-a", "exp-b"}));

  // Bad input.
  EXPECT_TRUE(IsMlflowError(MPost("experiments/search", {{"page_token", "not a token"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("experiments/search", {{"page_token", core::Base64Encode("{\"nope\": 1}")}}), 400,
      "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/search", {{"view_type", "SOMETIMES"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/search", {{"filter", "name = "}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/search", {{"filter", "bogus.x = 'y'"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/search", {{"max_results", 50001}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("experiments/search", {{"max_results", "ten"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  (void)a;
  (void)b;
}

// ---------------------------------------------------------------------------
// Runs

TEST_P(MlflowTrackingApi, RunCreateDefaultsAndShape) {
  std::string exp = CreateExperiment("runs");
  int64_t before = NowMs();
  Reply r = MPost("runs/create", {{"experiment_id", exp},
                                  {"run_name", "alpha"},
                                  {"user_id", "alice"},
                                  {"start_time", 1700000000123},
                                  {"tags", Json::array({KV("team", "risk")})}});
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_EQ(r.body.size(), 1u) << r.raw;
  const Json& run = r.body["run"];
  const Json& info = run["info"];
  ASSERT_TRUE(info["run_id"].is_string()) << r.raw;
  const std::string id = info["run_id"].get<std::string>();
  EXPECT_EQ(id.size(), 32u) << id;
  EXPECT_TRUE(std::all_of(id.begin(), id.end(), [](char ch) {
    return std::isdigit(ch) || (ch >= 'a' && ch <= 'f');
  })) << id;
  EXPECT_EQ(info["run_uuid"], id);
  EXPECT_EQ(info["experiment_id"], exp);
  EXPECT_EQ(info["run_name"], "alpha");
  EXPECT_EQ(info["user_id"], "alice");
  EXPECT_EQ(info["status"], "RUNNING");
  EXPECT_EQ(info["lifecycle_stage"], "active");
  EXPECT_EQ(info["start_time"], 1700000000123);
  EXPECT_TRUE(info["start_time"].is_number_integer());
  EXPECT_FALSE(info.contains("end_time")) << "a running run has no end_time: " << info.dump();
  EXPECT_EQ(info["artifact_uri"], "mlflow-artifacts:/" + exp + "/" + id + "/artifacts");
  EXPECT_EQ(StringsByKey(run["data"]["tags"]),
            (std::map<std::string, std::string>{{"team", "risk"}, {"mlflow.runName", "alpha"}}));
  EXPECT_FALSE(run["data"].contains("metrics")) << run.dump();
  EXPECT_FALSE(run["data"].contains("params")) << run.dump();
  // runs/get answers the same run (through run_id, run_uuid and the ajax alias).
  Reply got = MGet("runs/get?run_id=" + id);
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.body["run"]["info"], info);
  EXPECT_EQ(StringsByKey(got.body["run"]["data"]["tags"]), StringsByKey(run["data"]["tags"]));
  Reply by_uuid = MGet("runs/get?run_uuid=" + id);
  ASSERT_EQ(by_uuid.status, 200) << by_uuid.Describe();
  EXPECT_EQ(by_uuid.body, got.body);
  Reply ajax = Get(client(), std::string(kAjax) + "runs/get?run_id=" + id);
  ASSERT_EQ(ajax.status, 200) << ajax.Describe();
  EXPECT_EQ(ajax.body, got.body);

  // The name from the mlflow.runName tag alone; start_time as a string.
  Json beta = CreateRun(exp, {{"tags", Json::array({KV("mlflow.runName", "beta")})},
                              {"start_time", "1700000000456"}});
  EXPECT_EQ(beta["info"]["run_name"], "beta");
  EXPECT_EQ(beta["info"]["start_time"], 1700000000456);
  // Neither: a generated name, also in the tag. No start_time: now (documented: MLflow
  // stores 0). No user_id: the caller.
  Json gamma = CreateRun(exp);
  ASSERT_TRUE(gamma["info"]["run_name"].is_string());
  std::string generated = gamma["info"]["run_name"].get<std::string>();
  EXPECT_FALSE(generated.empty());
  EXPECT_EQ(StringsByKey(gamma["data"]["tags"])["mlflow.runName"], generated);
  EXPECT_GE(gamma["info"]["start_time"].get<int64_t>(), before);
  EXPECT_LE(gamma["info"]["start_time"].get<int64_t>(), NowMs());
  EXPECT_EQ(gamma["info"]["user_id"], "user:admin");
  // No experiment_id: the Default experiment "0".
  Reply in_default = MPost("runs/create", {{"run_name", "in-default"}});
  ASSERT_EQ(in_default.status, 200) << in_default.Describe();
  EXPECT_EQ(in_default.body["run"]["info"]["experiment_id"], "0");
  // An id sent as a number is read as its decimal string.
  Reply numeric = MPost("runs/create", {{"experiment_id", std::stoll(exp)}});
  ASSERT_EQ(numeric.status, 200) << numeric.Describe();
  EXPECT_EQ(numeric.body["run"]["info"]["experiment_id"], exp);
  // Through the ajax alias.
  Reply ajax_create = Post(client(), std::string(kAjax) + "runs/create", {{"experiment_id", exp}});
  ASSERT_EQ(ajax_create.status, 200) << ajax_create.Describe();

  // Errors.
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/create", {{"experiment_id", exp},
                                          {"run_name", "one"},
                                          {"tags", Json::array({KV("mlflow.runName", "two")})}}),
                    400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/create", {{"experiment_id", "987654"}}), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/create", {{"experiment_id", exp}, {"start_time", "soon"}}),
                            400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/create", {{"experiment_id", exp}, {"tags", Json::array({KV("bad key!", "v")})}}),
      400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MGet("runs/get?run_id=0123456789abcdef0123456789abcdef"), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MGet("runs/get"), 400, "INVALID_PARAMETER_VALUE"));
}

TEST_P(MlflowTrackingApi, RunUpdateTagsDeleteRestore) {
  std::string exp = CreateExperiment("lifecycle");
  std::string id = CreateRun(exp, {{"run_name", "first"}})["info"]["run_id"].get<std::string>();

  // update: status and end_time; the answer is {"run_info": ...}.
  Reply u =
      MPost("runs/update", {{"run_id", id}, {"status", "FINISHED"}, {"end_time", 1700000009999}});
  ASSERT_EQ(u.status, 200) << u.Describe();
  ASSERT_EQ(u.body.size(), 1u) << u.raw;
  const Json& info = u.body["run_info"];
  EXPECT_EQ(info["run_id"], id);
  EXPECT_EQ(info["status"], "FINISHED");
  EXPECT_EQ(info["end_time"], 1700000009999);
  EXPECT_TRUE(info["end_time"].is_number_integer());
  EXPECT_EQ(info["run_name"], "first");
  EXPECT_EQ(GetRun(id)["info"], info);
  // run_uuid (older clients) and run_name: renames, tag included.
  Reply renamed = MPost("runs/update", {{"run_uuid", id}, {"run_name", "second"}});
  ASSERT_EQ(renamed.status, 200) << renamed.Describe();
  EXPECT_EQ(renamed.body["run_info"]["run_name"], "second");
  EXPECT_EQ(renamed.body["run_info"]["status"], "FINISHED") << "unchanged when not given";
  Json run = GetRun(id);
  EXPECT_EQ(run["info"]["run_name"], "second");
  EXPECT_EQ(StringsByKey(run["data"]["tags"])["mlflow.runName"], "second");
  for (const char* status : {"SCHEDULED", "FAILED", "KILLED", "RUNNING"}) {
    Reply s = MPost("runs/update", {{"run_id", id}, {"status", status}});
    ASSERT_EQ(s.status, 200) << status << ": " << s.Describe();
    EXPECT_EQ(s.body["run_info"]["status"], status);
  }
  EXPECT_TRUE(IsMlflowError(MPost("runs/update", {{"run_id", id}, {"status", "DONE"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/update", {{"run_id", id}, {"end_time", "later"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/update", {{"run_id", "0123456789abcdef0123456789abcdef"}, {"status", "FAILED"}}),
      404, "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/update", {{"status", "FAILED"}}), 400, "INVALID_PARAMETER_VALUE"));

  // Tags: set, overwrite, delete; the mlflow.runName tag renames the run.
  Ok(MPost("runs/set-tag", {{"run_id", id}, {"key", "owner"}, {"value", "alice"}}), "set-tag");
  Ok(MPost("runs/set-tag", {{"run_uuid", id}, {"key", "owner"}, {"value", "bob"}}),
     "set-tag (run_uuid)");
  EXPECT_EQ(StringsByKey(GetRun(id)["data"]["tags"])["owner"], "bob");
  Ok(MPost("runs/set-tag", {{"run_id", id}, {"key", "mlflow.runName"}, {"value", "third"}}),
     "set-tag mlflow.runName");
  EXPECT_EQ(GetRun(id)["info"]["run_name"], "third");
  Ok(MPost("runs/delete-tag", {{"run_id", id}, {"key", "owner"}}), "delete-tag");
  EXPECT_EQ(StringsByKey(GetRun(id)["data"]["tags"]).count("owner"), 0u);
  EXPECT_TRUE(IsMlflowError(MPost("runs/delete-tag", {{"run_id", id}, {"key", "owner"}}), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/set-tag", {{"run_id", id}, {"value", "v"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/set-tag", {{"run_id", id}, {"key", "k"}, {"value", std::string(5001, 'v')}}), 400,
      "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/set-tag",
            {{"run_id", "0123456789abcdef0123456789abcdef"}, {"key", "k"}, {"value", "v"}}),
      404, "RESOURCE_DOES_NOT_EXIST"));

  // Delete: readable, marked deleted, and every write refused with
  // INVALID_PARAMETER_VALUE ("must be in the 'active' state").
  Ok(MPost("runs/delete", {{"run_id", id}}), "runs/delete");
  EXPECT_EQ(GetRun(id)["info"]["lifecycle_stage"], "deleted");
  EXPECT_TRUE(IsMlflowError(MPost("runs/set-tag", {{"run_id", id}, {"key", "k"}, {"value", "v"}}),
                            400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-metric", {{"run_id", id}, {"key", "m"}, {"value", 1}, {"timestamp", 1}}), 400,
      "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-parameter", {{"run_id", id}, {"key", "p"}, {"value", "1"}}),
                    400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/update", {{"run_id", id}, {"status", "FAILED"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/delete", {{"run_id", "0123456789abcdef0123456789abcdef"}}),
                            404, "RESOURCE_DOES_NOT_EXIST"));
  Ok(MPost("runs/restore", {{"run_id", id}}), "runs/restore");
  EXPECT_EQ(GetRun(id)["info"]["lifecycle_stage"], "active");
  // Restoring an active run: INVALID_PARAMETER_VALUE (_check_run_is_deleted).
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/restore", {{"run_id", id}}), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/restore", {{"run_id", "0123456789abcdef0123456789abcdef"}}),
                            404, "RESOURCE_DOES_NOT_EXIST"));
}

// ---------------------------------------------------------------------------
// Metrics and params

TEST_P(MlflowTrackingApi, LogMetricTypesNonFiniteValuesAndHistory) {
  std::string exp = CreateExperiment("metrics");
  std::string id = CreateRun(exp)["info"]["run_id"].get<std::string>();
  auto log = [&](const Json& value, const Json& timestamp, const Json& step,
                 const std::string& key = "loss") {
    Json body = {{"run_id", id}, {"key", key}, {"value", value}, {"timestamp", timestamp}};
    if (!step.is_null())
      body["step"] = step;
    return MPost("runs/log-metric", body);
  };
  // Logged out of step order on purpose; history comes back by step, then timestamp.
  Ok(log(0.5, 1000, 2), "number");
  Ok(log("0.25", "900", "1"), "numeric strings");
  Ok(log(0.75, 800, Json()), "no step: 0");
  Ok(log("NaN", 1100, 3), "NaN");
  Ok(log("Infinity", 1200, 4), "Infinity");
  Ok(log("-Infinity", 1300, 5), "-Infinity");
  // int64 beyond 2^53 round-trips exactly, as a number or a string.
  Ok(log(1, 1400, 9007199254740993LL), "step 2^53+1");
  Ok(log(2, "9007199254740995", "9007199254740995"), "2^53+3 as strings");

  Json history = History(id, "loss");
  ASSERT_EQ(history.size(), 8u) << history.dump();
  std::vector<int64_t> steps;
  for (const auto& p : history) {
    EXPECT_EQ(p["key"], "loss");
    EXPECT_TRUE(p["timestamp"].is_number_integer()) << p.dump();
    EXPECT_TRUE(p["step"].is_number_integer()) << p.dump();
    steps.push_back(p["step"].get<int64_t>());
  }
  EXPECT_EQ(steps,
            (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 9007199254740993LL, 9007199254740995LL}));
  EXPECT_EQ(history[0]["value"], 0.75);
  EXPECT_EQ(history[0]["timestamp"], 800);
  EXPECT_EQ(history[1]["value"], 0.25);
  EXPECT_EQ(history[2]["value"], 0.5);
  EXPECT_EQ(history[3]["value"], "NaN");
  EXPECT_EQ(history[4]["value"], "Infinity");
  EXPECT_EQ(history[5]["value"], "-Infinity");
  EXPECT_EQ(history[7]["timestamp"], 9007199254740995LL);
  // The raw text holds the exact digits (no float rounding on the way out).
  Reply raw = MGet("metrics/get-history?run_id=" + id + "&metric_key=loss");
  EXPECT_NE(raw.raw.find("9007199254740993"), std::string::npos) << raw.raw;

  // runs/get shows the latest point (greatest step) of each key.
  Ok(log("NaN", 5, 7, "nan_last"), "a NaN latest");
  Json metrics = GetRun(id)["data"]["metrics"];
  auto latest = ByKey(metrics);
  EXPECT_EQ(latest["loss"], 2);
  EXPECT_EQ(latest["nan_last"], "NaN");
  for (const auto& m : metrics) {
    if (m["key"] == "loss") {
      EXPECT_EQ(m["step"], 9007199254740995LL);
      EXPECT_EQ(m["timestamp"], 9007199254740995LL);
    }
  }

  // Refused: non-numeric values, missing value or timestamp, bad keys, unknown runs.
  EXPECT_TRUE(IsMlflowError(log("abc", 1, 0), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(log(Json::object(), 1, 0), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(log(true, 1, 0), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(log(1, "yesterday", 0), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(log(1, 1, 1.5), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-metric", {{"run_id", id}, {"key", "loss"}, {"timestamp", 1}}),
                    400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-metric", {{"run_id", id}, {"key", "loss"}, {"value", 1}}), 400,
                    "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(log(1, 1, 0, "bad key!"), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(log(1, 1, 0, "../escape"), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-metric", {{"run_id", "0123456789abcdef0123456789abcdef"},
                                              {"key", "m"},
                                              {"value", 1},
                                              {"timestamp", 1}}),
                    404, "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-metric", {{"key", "m"}, {"value", 1}, {"timestamp", 1}}), 400,
                    "INVALID_PARAMETER_VALUE"));
  EXPECT_EQ(History(id, "loss").size(), 8u) << "refused points were not stored";
  EXPECT_EQ(ByKey(GetRun(id)["data"]["metrics"])["loss"], 2);
}

// Once a run is cached, log-metric and metric-only log-batch are answered
// on the I/O thread (http::Route::start) instead of the worker pool: the
// answers must not change, for a deleted run, a bad value, or success.
TEST_P(MlflowTrackingApi, MetricLoggingAnswersAlikeBeforeAndAfterTheRunIsCached) {
  std::string exp = CreateExperiment("cached");
  // One request to `run`, answered as "<status> <body>" with the run's id
  // and the request id taken out.
  auto answer = [&](const std::string& path, const std::string& run, const Json& value) {
    Json metric = {{"run_id", run}, {"key", "m"}, {"value", value}, {"timestamp", 1}};
    Reply r = path == "runs/log-metric"
                  ? MPost(path, metric)
                  : MPost(path, {{"run_id", run}, {"metrics", Json::array({metric})}});
    Json shown = r.body;
    shown.erase("request_id");
    std::string text = std::to_string(r.status) + " " + shown.dump();
    for (size_t at; (at = text.find(run)) != std::string::npos;)
      text.replace(at, run.size(), "<run>");
    return text;
  };
  auto new_run = [&] { return CreateRun(exp)["info"]["run_id"].get<std::string>(); };
  const std::pair<std::string, Json> cases[] = {
      {"runs/log-metric", 1}, {"runs/log-metric", "abc"}, {"runs/log-batch", 1}};
  // Deleted runs that nothing has cached yet: the worker pool answers.
  std::vector<std::string> uncached;
  for (const auto& [path, value] : cases) {
    std::string run = new_run();
    Ok(MPost("runs/delete", {{"run_id", run}}), "delete before any metric");
    uncached.push_back(answer(path, run, value));
  }
  EXPECT_EQ(uncached[0].substr(0, 4), "400 ") << uncached[0];
  EXPECT_NE(uncached[0].find("INVALID_PARAMETER_VALUE"), std::string::npos) << uncached[0];
  EXPECT_EQ(uncached[2], uncached[0]);
  // A deleted run that is cached: answered on the I/O thread, alike.
  std::string id = new_run();
  Ok(MPost("runs/log-metric", {{"run_id", id}, {"key", "m"}, {"value", 0}, {"timestamp", 1}}),
     "caches the run");
  Ok(MPost("runs/delete", {{"run_id", id}}), "delete");
  for (size_t i = 0; i < std::size(cases); ++i)
    EXPECT_EQ(answer(cases[i].first, id, cases[i].second), uncached[i]) << i;
  Ok(MPost("runs/restore", {{"run_id", id}}), "restore");
  EXPECT_EQ(answer("runs/log-metric", id, 1), "200 {}");
  EXPECT_EQ(answer("runs/log-metric", id, "abc"), uncached[1]);
  EXPECT_EQ(answer("runs/log-batch", id, 2), "200 {}");
  EXPECT_EQ(History(id, "m").size(), 3u);
}

TEST_P(MlflowTrackingApi, MetricHistoryPaging) {
  std::string exp = CreateExperiment("history");
  std::string id = CreateRun(exp)["info"]["run_id"].get<std::string>();
  for (int step = 0; step < 4; ++step) {
    Ok(MPost("runs/log-metric", {{"run_id", id},
                                 {"key", "acc"},
                                 {"value", step / 10.0},
                                 {"timestamp", 100 + step},
                                 {"step", step}}),
       "log-metric");
  }
  auto steps = [](const Reply& r) {
    std::vector<int64_t> out;
    for (const auto& p : r.body.value("metrics", Json::array()))
      out.push_back(p.value("step", int64_t{-1}));
    return out;
  };
  using V = std::vector<int64_t>;
  std::string base = "metrics/get-history?run_id=" + id + "&metric_key=acc";
  // Without max_results: everything, no token (MLflow's SQL store does not page).
  Reply all = MGet(base);
  ASSERT_EQ(all.status, 200) << all.Describe();
  EXPECT_EQ(steps(all), (V{0, 1, 2, 3}));
  EXPECT_FALSE(all.body.contains("next_page_token")) << all.raw;
  // Pages of 2: a token on each full page, then {}.
  Reply p1 = MGet(base + "&max_results=2");
  ASSERT_EQ(p1.status, 200) << p1.Describe();
  EXPECT_EQ(steps(p1), (V{0, 1}));
  ASSERT_TRUE(p1.body.contains("next_page_token") && p1.body["next_page_token"].is_string())
      << p1.raw;
  Reply p2 = MGet(base + "&max_results=2&page_token=" +
                  http::PercentEncode(p1.body["next_page_token"].get<std::string>()));
  ASSERT_EQ(p2.status, 200) << p2.Describe();
  EXPECT_EQ(steps(p2), (V{2, 3}));
  ASSERT_TRUE(p2.body.contains("next_page_token")) << p2.raw;
  Reply p3 = MGet(base + "&max_results=2&page_token=" +
                  http::PercentEncode(p2.body["next_page_token"].get<std::string>()));
  ASSERT_EQ(p3.status, 200) << p3.Describe();
  EXPECT_EQ(p3.body, Json::object()) << p3.raw;
  // Pages of 3: 3 with a token, then the last one without.
  Reply q1 = MGet(base + "&max_results=3");
  EXPECT_EQ(steps(q1), (V{0, 1, 2}));
  ASSERT_TRUE(q1.body.contains("next_page_token")) << q1.raw;
  Reply q2 = MGet(base + "&max_results=3&page_token=" +
                  http::PercentEncode(q1.body["next_page_token"].get<std::string>()));
  EXPECT_EQ(steps(q2), (V{3}));
  EXPECT_FALSE(q2.body.contains("next_page_token")) << q2.raw;
  // run_uuid instead of run_id; the ajax alias.
  Reply by_uuid = MGet("metrics/get-history?run_uuid=" + id + "&metric_key=acc");
  EXPECT_EQ(by_uuid.body, all.body);
  Reply ajax = Get(client(), std::string(kAjax) + base);
  EXPECT_EQ(ajax.body, all.body);
  // A key never logged: {}.
  Reply none = MGet("metrics/get-history?run_id=" + id + "&metric_key=never");
  ASSERT_EQ(none.status, 200) << none.Describe();
  EXPECT_EQ(none.body, Json::object()) << none.raw;
  // Errors.
  EXPECT_TRUE(IsMlflowError(MGet(base + "&max_results=2&page_token=garbage!"), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MGet(base + "&max_results=0"), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MGet("metrics/get-history?run_id=" + id), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MGet("metrics/get-history?run_id=0123456789abcdef0123456789abcdef&metric_key=acc"), 404,
      "RESOURCE_DOES_NOT_EXIST"));
}

TEST_P(MlflowTrackingApi, LogParameterIsImmutable) {
  std::string exp = CreateExperiment("params");
  std::string id = CreateRun(exp)["info"]["run_id"].get<std::string>();
  Ok(MPost("runs/log-parameter", {{"run_id", id}, {"key", "lr"}, {"value", "0.1"}}),
     "log-parameter");
  // The same value again is fine; another value is refused.
  Ok(MPost("runs/log-parameter", {{"run_uuid", id}, {"key", "lr"}, {"value", "0.1"}}),
     "same value again");
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-parameter", {{"run_id", id}, {"key", "lr"}, {"value", "0.2"}}),
                    400, "INVALID_PARAMETER_VALUE"));
  Ok(MPost("runs/log-parameter", {{"run_id", id}, {"key", "model type"}, {"value", "LogReg"}}),
     "key with a space");
  Ok(MPost("runs/log-parameter",
           {{"run_id", id}, {"key", "long"}, {"value", std::string(6000, 'x')}}),
     "6000 characters");
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-parameter",
                          {{"run_id", id}, {"key", "too_long"}, {"value", std::string(6001, 'x')}}),
                    400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-parameter", {{"run_id", id}, {"key", "bad key!"}, {"value", "1"}}), 400,
      "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-parameter", {{"run_id", id}, {"value", "1"}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-parameter",
            {{"run_id", "0123456789abcdef0123456789abcdef"}, {"key", "lr"}, {"value", "1"}}),
      404, "RESOURCE_DOES_NOT_EXIST"));
  auto params = StringsByKey(GetRun(id)["data"]["params"]);
  EXPECT_EQ(params,
            (std::map<std::string, std::string>{
                {"lr", "0.1"}, {"model type", "LogReg"}, {"long", std::string(6000, 'x')}}));
  // (A named copy: a range-for over a member of a temporary would read freed
  // memory, as AddressSanitizer pointed out.)
  const Json run = GetRun(id);
  for (const auto& p : run["data"]["params"])
    EXPECT_TRUE(p["value"].is_string()) << p.dump();
}

// ---------------------------------------------------------------------------
// log-batch: all or nothing

TEST_P(MlflowTrackingApi, LogBatchWritesEverythingOrNothing) {
  std::string exp = CreateExperiment("batch");
  std::string id = CreateRun(exp, {{"run_name", "b"}})["info"]["run_id"].get<std::string>();
  Ok(MPost("runs/log-batch",
           {{"run_id", id},
            {"metrics",
             Json::array({Json{{"key", "m1"}, {"value", 1.5}, {"timestamp", 10}, {"step", 0}},
                          Json{{"key", "m1"}, {"value", "NaN"}, {"timestamp", 11}, {"step", 1}},
                          Json{{"key", "m2"}, {"value", -2}, {"timestamp", "12"}}})},
            {"params", Json::array({KV("p1", "a"), KV("p2", "b"), KV("p1", "a")})},
            {"tags", Json::array({KV("t1", "x"), KV("t2", "y")})}}),
     "log-batch");
  Json run = GetRun(id);
  EXPECT_EQ(StringsByKey(run["data"]["params"]),
            (std::map<std::string, std::string>{{"p1", "a"}, {"p2", "b"}}));
  auto tags = StringsByKey(run["data"]["tags"]);
  EXPECT_EQ(tags["t1"], "x");
  EXPECT_EQ(tags["t2"], "y");
  EXPECT_EQ(ByKey(run["data"]["metrics"])["m1"], "NaN");
  EXPECT_EQ(ByKey(run["data"]["metrics"])["m2"], -2);
  EXPECT_EQ(History(id, "m1").size(), 2u);
  // An empty batch is fine.
  Ok(MPost("runs/log-batch", {{"run_id", id}}), "empty batch");

  // The state every refused batch below must leave untouched.
  const Json before = GetRun(id);
  auto unchanged = [&](const std::string& what) {
    Json now = GetRun(id);
    EXPECT_EQ(now["data"], before["data"]) << what << ": partially written";
    EXPECT_EQ(History(id, "new_metric"), Json::array()) << what;
    EXPECT_EQ(History(id, "m1").size(), 2u) << what;
  };
  auto metrics = [](size_t n, const std::string& key = "new_metric") {
    Json list = Json::array();
    for (size_t i = 0; i < n; ++i)
      list.push_back(
          {{"key", key}, {"value", static_cast<double>(i)}, {"timestamp", 1}, {"step", i}});
    return list;
  };
  auto kvs = [](size_t n, const std::string& prefix) {
    Json list = Json::array();
    for (size_t i = 0; i < n; ++i)
      list.push_back(KV(prefix + std::to_string(i), "v"));
    return list;
  };
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-batch", {{"run_id", id}, {"metrics", metrics(1001)}}),
                            400, "INVALID_PARAMETER_VALUE"));
  unchanged("1001 metrics");
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-batch",
                          {{"run_id", id}, {"metrics", metrics(3)}, {"params", kvs(101, "np")}}),
                    400, "INVALID_PARAMETER_VALUE"));
  unchanged("101 params");
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-batch", {{"run_id", id}, {"metrics", metrics(3)}, {"tags", kvs(101, "nt")}}),
      400, "INVALID_PARAMETER_VALUE"));
  unchanged("101 tags");
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-batch", {{"run_id", id},
                                                     {"metrics", metrics(900)},
                                                     {"params", kvs(100, "np")},
                                                     {"tags", kvs(1, "nt")}}),
                            400, "INVALID_PARAMETER_VALUE"));
  unchanged("1001 entities in all");
  // One bad item spoils the batch.
  Json bad_value = metrics(5);
  bad_value[4]["value"] = "abc";
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-batch", {{"run_id", id}, {"metrics", bad_value}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  unchanged("a non-numeric metric value");
  Json no_timestamp = metrics(2);
  no_timestamp[1].erase("timestamp");
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-batch", {{"run_id", id}, {"metrics", no_timestamp}}),
                            400, "INVALID_PARAMETER_VALUE"));
  unchanged("a metric without timestamp");
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-batch", {{"run_id", id},
                               {"metrics", metrics(2)},
                               {"params", Json::array({KV("ok", "1"), KV("bad key!", "2")})}}),
      400, "INVALID_PARAMETER_VALUE"));
  unchanged("an invalid param key");
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-batch", {{"run_id", id},
                               {"metrics", metrics(2)},
                               {"tags", Json::array({KV("t3", std::string(5001, 'x'))})}}),
      400, "INVALID_PARAMETER_VALUE"));
  unchanged("a tag value over 5000 characters");
  // A param that changes a stored one: refused with the metrics and tags beside it.
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-batch", {{"run_id", id},
                               {"metrics", metrics(2)},
                               {"params", Json::array({KV("p3", "new"), KV("p1", "changed")})},
                               {"tags", Json::array({KV("t1", "overwritten")})}}),
      400, "INVALID_PARAMETER_VALUE"));
  unchanged("a param conflicting with a stored one");
  // The same key twice with different values in one batch.
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-batch", {{"run_id", id},
                               {"metrics", metrics(2)},
                               {"params", Json::array({KV("p9", "x"), KV("p9", "y")})}}),
      400, "INVALID_PARAMETER_VALUE"));
  unchanged("conflicting params within the batch");
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-batch", {{"run_id", id}, {"metrics", "not a list"}}),
                            400, "INVALID_PARAMETER_VALUE"));
  unchanged("metrics not a list");
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-batch", {{"metrics", metrics(1)}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-batch", {{"run_id", "0123456789abcdef0123456789abcdef"},
                                                     {"metrics", metrics(1)}}),
                            404, "RESOURCE_DOES_NOT_EXIST"));

  // At the limits exactly: 1000 metrics; 100 params with 100 tags.
  Ok(MPost("runs/log-batch", {{"run_id", id}, {"metrics", metrics(1000, "bulk")}}), "1000 metrics");
  EXPECT_EQ(History(id, "bulk").size(), 1000u);
  Ok(MPost("runs/log-batch",
           {{"run_id", id}, {"params", kvs(100, "lp")}, {"tags", kvs(100, "lt")}}),
     "100 params and 100 tags");
  Json after = GetRun(id);
  EXPECT_EQ(after["data"]["params"].size(), 102u);
  EXPECT_EQ(ByKey(after["data"]["metrics"])["bulk"], 999.0);
}

// A metrics-only batch is decoded without a DOM (the ingestion hot path);
// an unknown field sends the same batch through the DOM route. Both must
// store and answer the same.
TEST_P(MlflowTrackingApi, LogBatchDecodesAlikeOnTheFastAndTheDomRoute) {
  std::string exp = CreateExperiment("decoders");
  std::string fast = CreateRun(exp, {{"run_name", "fast"}})["info"]["run_id"].get<std::string>();
  std::string dom = CreateRun(exp, {{"run_name", "dom"}})["info"]["run_id"].get<std::string>();
  Json metrics = Json::array();
  const double values[] = {0.1, -0.0, 1e-300, 42, 1.7976931348623157e308, -7.25};
  for (int step = 0; step < 6; ++step) {
    for (const char* key : {"loss", "acc"}) {
      Json m = {{"key", key}, {"value", values[step]}, {"timestamp", 1700000000000 + step}};
      if (step > 0)
        m["step"] = step;  // absent at step 0: MLflow's default
      metrics.push_back(m);
    }
  }
  Ok(MPost("runs/log-batch", {{"run_id", fast}, {"metrics", metrics}, {"params", Json::array()}}),
     "common shape");
  Ok(MPost("runs/log-batch", {{"run_id", dom}, {"metrics", metrics}, {"unknown_field", 1}}),
     "with an unknown field");
  for (const char* key : {"loss", "acc"}) {
    Json a = History(fast, key), b = History(dom, key);
    ASSERT_EQ(a.size(), 6u) << key;
    EXPECT_EQ(a.dump(), b.dump()) << key;
  }
  EXPECT_EQ(GetRun(fast)["data"]["metrics"].dump(), GetRun(dom)["data"]["metrics"].dump());

  // Refusals answer the same on both routes: a deleted run, a missing one.
  Ok(MPost("runs/delete", {{"run_id", dom}}), "delete");
  Reply on_fast = MPost("runs/log-batch", {{"run_id", dom}, {"metrics", metrics}});
  Reply on_dom = MPost("runs/log-batch", {{"run_id", dom}, {"metrics", metrics}, {"x", 0}});
  EXPECT_TRUE(IsMlflowError(on_fast, 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_EQ(on_fast.body, on_dom.body);
  const std::string missing = "0123456789abcdef0123456789abcdef";
  on_fast = MPost("runs/log-batch", {{"run_id", missing}, {"metrics", metrics}});
  on_dom = MPost("runs/log-batch", {{"run_id", missing}, {"metrics", metrics}, {"x", 0}});
  EXPECT_TRUE(IsMlflowError(on_fast, 404, "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_EQ(on_fast.body, on_dom.body);
}

// ---------------------------------------------------------------------------
// log-inputs and log-model

TEST_P(MlflowTrackingApi, LogInputsAndLogModel) {
  std::string exp = CreateExperiment("inputs");
  std::string id = CreateRun(exp)["info"]["run_id"].get<std::string>();
  Json dataset = {{"name", "credit-train"},
                  {"digest", "abc123"},
                  {"source_type", "local"},
                  {"source", "{\"uri\": \"/data/train.csv\"}"},
                  {"schema", "{\"mlflow_colspec\": []}"},
                  {"profile", "{\"num_rows\": 10}"}};
  Json input = {{"tags", Json::array({KV("mlflow.data.context", "training")})},
                {"dataset", dataset}};
  Ok(MPost("runs/log-inputs", {{"run_id", id}, {"datasets", Json::array({input})}}), "log-inputs");
  // The same dataset again is not a second input.
  Ok(MPost("runs/log-inputs", {{"run_id", id}, {"datasets", Json::array({input})}}),
     "log-inputs again");
  Json run = GetRun(id);
  ASSERT_TRUE(run["inputs"].contains("dataset_inputs")) << run.dump();
  const Json& inputs = run["inputs"]["dataset_inputs"];
  ASSERT_EQ(inputs.size(), 1u) << inputs.dump();
  EXPECT_EQ(inputs[0]["dataset"], dataset);
  EXPECT_EQ(StringsByKey(inputs[0]["tags"]),
            (std::map<std::string, std::string>{{"mlflow.data.context", "training"}}));
  // A run without inputs has an empty inputs message.
  Json plain = CreateRun(exp);
  EXPECT_EQ(plain["inputs"], Json::object()) << plain.dump();

  // datasets is required (handlers.py: [_assert_required, _assert_array]).
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-inputs", {{"run_id", id}}), 400, "INVALID_PARAMETER_VALUE"));
  Json no_digest = dataset;
  no_digest.erase("digest");
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-inputs",
            {{"run_id", id}, {"datasets", Json::array({Json{{"dataset", no_digest}}})}}),
      400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/log-inputs",
            {{"run_id", "0123456789abcdef0123456789abcdef"}, {"datasets", Json::array({input})}}),
      404, "RESOURCE_DOES_NOT_EXIST"));

  // log-model appends to the mlflow.log-model.history tag.
  Json model = {{"artifact_path", "model"},
                {"flavors", {{"python_function", {{"loader_module", "mlflow.sklearn"}}}}},
                {"utc_time_created", "2026-11-27 10:00:00.000000"},
                {"run_id", id}};
  Ok(MPost("runs/log-model", {{"run_id", id}, {"model_json", model.dump()}}), "log-model");
  Json model2 = model;
  model2["artifact_path"] = "model2";
  Ok(MPost("runs/log-model", {{"run_id", id}, {"model_json", model2.dump()}}), "log-model again");
  std::string history = StringsByKey(GetRun(id)["data"]["tags"])["mlflow.log-model.history"];
  Json parsed = Json::parse(history, nullptr, false);
  ASSERT_TRUE(parsed.is_array()) << history;
  ASSERT_EQ(parsed.size(), 2u) << history;
  EXPECT_EQ(parsed[0]["artifact_path"], "model");
  EXPECT_EQ(parsed[1]["artifact_path"], "model2");
  EXPECT_EQ(parsed[0]["flavors"], model["flavors"]);
  // model_json: required, valid JSON, with MLflow's mandatory fields.
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-model", {{"run_id", id}}), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-model", {{"run_id", id}, {"model_json", "{not json"}}),
                            400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(MPost("runs/log-model",
                          {{"run_id", id}, {"model_json", Json{{"artifact_path", "m"}}.dump()}}),
                    400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MPost("runs/log-model", {{"run_id", "0123456789abcdef0123456789abcdef"},
                                                     {"model_json", model.dump()}}),
                            404, "RESOURCE_DOES_NOT_EXIST"));
}

// ---------------------------------------------------------------------------
// runs/search

class MlflowRunSearch : public MlflowTrackingApi {
 protected:
  void SetUp() override {
    MlflowTrackingApi::SetUp();
    if (HasFatalFailure() || IsSkipped())
      return;
    exp_ = CreateExperiment("search");
    // r1..r4, started at 1000..4000 (search's default order is start_time DESC).
    r1_ = Make("r1", 1000, {{"acc", 0.9}, {"loss", 0.3}}, {{"model", "LogReg"}, {"lr", "0.1"}},
               {{"team", "Risk"}}, "FINISHED", 1500, "u1");
    r2_ = Make("r2", 2000, {{"acc", 0.7}, {"loss", 0.5}}, {{"model", "logistic"}, {"lr", "0.01"}},
               {{"team", "risk-eu"}}, "FAILED", 2500, "u2");
    r3_ = Make("r3", 3000, {{"acc", 0.8}}, {{"model", "Tree"}}, {}, "", 0, "u1");
    r4_ = Make("r4", 4000, {}, {}, {{"team", "ops"}}, "", 0, "u3");
    Dataset(r1_, "train-a", "d1", "training");
    Dataset(r2_, "eval-b", "d2", "eval");
  }

  std::string Make(const std::string& name, int64_t start,
                   const std::map<std::string, double>& metrics,
                   const std::map<std::string, std::string>& params,
                   const std::map<std::string, std::string>& tags, const std::string& status,
                   int64_t end, const std::string& user) {
    Json run = CreateRun(exp_, {{"run_name", name}, {"start_time", start}, {"user_id", user}});
    std::string id = run["info"]["run_id"].get<std::string>();
    Json batch = {{"run_id", id},
                  {"metrics", Json::array()},
                  {"params", Json::array()},
                  {"tags", Json::array()}};
    for (const auto& [k, v] : metrics)
      batch["metrics"].push_back({{"key", k}, {"value", v}, {"timestamp", start}, {"step", 0}});
    for (const auto& [k, v] : params)
      batch["params"].push_back(KV(k, v));
    for (const auto& [k, v] : tags)
      batch["tags"].push_back(KV(k, v));
    Ok(MPost("runs/log-batch", batch), "log-batch for " + name);
    if (!status.empty()) {
      Reply u = MPost("runs/update", {{"run_id", id}, {"status", status}, {"end_time", end}});
      EXPECT_EQ(u.status, 200) << name << ": " << u.Describe();
    }
    names_[id] = name;
    return id;
  }

  void Dataset(const std::string& run_id, const std::string& name, const std::string& digest,
               const std::string& context) {
    Ok(MPost("runs/log-inputs",
             {{"run_id", run_id},
              {"datasets",
               Json::array({Json{{"tags", Json::array({KV("mlflow.data.context", context)})},
                                 {"dataset",
                                  {{"name", name},
                                   {"digest", digest},
                                   {"source_type", "local"},
                                   {"source", "{}"}}}}})}}),
       "log-inputs");
  }

  // runs/search over the experiment: the run names in answer order.
  std::vector<std::string> Names(const Reply& r) {
    std::vector<std::string> out;
    for (const auto& run : r.body.value("runs", Json::array()))
      out.push_back(run["info"].value("run_name", ""));
    return out;
  }
  Reply Search(const std::string& filter, const std::vector<std::string>& order_by = {},
               Json extra = Json::object()) {
    extra["experiment_ids"] = Json::array({exp_});
    if (!filter.empty())
      extra["filter"] = filter;
    if (!order_by.empty())
      extra["order_by"] = order_by;
    return MPost("runs/search", extra);
  }
  std::vector<std::string> Find(const std::string& filter,
                                const std::vector<std::string>& order_by = {}) {
    Reply r = Search(filter, order_by);
    EXPECT_EQ(r.status, 200) << filter << ": " << r.Describe();
    return Names(r);
  }

  std::string exp_, r1_, r2_, r3_, r4_;
  std::map<std::string, std::string> names_;
};

using V = std::vector<std::string>;

TEST_P(MlflowRunSearch, ResponseShapeDefaultOrderAndEmptyResult) {
  Reply all = Search("");
  ASSERT_EQ(all.status, 200) << all.Describe();
  EXPECT_EQ(Names(all), (V{"r4", "r3", "r2", "r1"})) << "start_time DESC by default";
  EXPECT_FALSE(all.body.contains("next_page_token")) << all.raw;
  const Json& r1 = all.body["runs"][3];
  EXPECT_EQ(r1["info"]["run_id"], r1_);
  EXPECT_EQ(r1["info"]["status"], "FINISHED");
  EXPECT_EQ(r1["info"]["end_time"], 1500);
  EXPECT_EQ(ByKey(r1["data"]["metrics"])["acc"], 0.9);
  EXPECT_EQ(StringsByKey(r1["data"]["params"])["model"], "LogReg");
  EXPECT_EQ(StringsByKey(r1["data"]["tags"])["team"], "Risk");
  EXPECT_EQ(r1["inputs"]["dataset_inputs"][0]["dataset"]["name"], "train-a");
  const Json& r4 = all.body["runs"][0];
  EXPECT_FALSE(r4["data"].contains("metrics")) << r4.dump();
  EXPECT_FALSE(r4["data"].contains("params")) << r4.dump();

  Reply none = Search("metrics.acc > 100");
  ASSERT_EQ(none.status, 200) << none.Describe();
  EXPECT_EQ(none.body, Json::object()) << none.raw;
  // Unknown experiments and no experiments: nothing, not an error (as MLflow's SQL store).
  Reply unknown = MPost("runs/search", {{"experiment_ids", Json::array({"987654"})}});
  ASSERT_EQ(unknown.status, 200) << unknown.Describe();
  EXPECT_EQ(unknown.body, Json::object());
  // Two experiments at once.
  std::string other = CreateExperiment("search-2");
  CreateRun(other, {{"run_name", "o1"}, {"start_time", 5000}});
  Reply both = MPost("runs/search", {{"experiment_ids", Json::array({exp_, other})}});
  EXPECT_EQ(Names(both), (V{"o1", "r4", "r3", "r2", "r1"}));
  // The ajax alias.
  Reply ajax =
      Post(client(), std::string(kAjax) + "runs/search", {{"experiment_ids", Json::array({exp_})}});
  ASSERT_EQ(ajax.status, 200) << ajax.Describe();
  EXPECT_EQ(ajax.body, all.body);
}

TEST_P(MlflowRunSearch, MetricOperators) {
  EXPECT_EQ(Find("metrics.acc = 0.9"), (V{"r1"}));
  EXPECT_EQ(Find("metrics.acc != 0.9"), (V{"r3", "r2"}))
      << "a run without the metric never matches";
  EXPECT_EQ(Find("metrics.acc < 0.8"), (V{"r2"}));
  EXPECT_EQ(Find("metrics.acc <= 0.8"), (V{"r3", "r2"}));
  EXPECT_EQ(Find("metrics.acc > 0.7"), (V{"r3", "r1"}));
  EXPECT_EQ(Find("metrics.acc >= 0.8"), (V{"r3", "r1"}));
  EXPECT_EQ(Find("metrics.acc > 0.75 and metrics.loss < 0.4"), (V{"r1"}));
  EXPECT_EQ(Find("metric.`acc` >= 0.9"), (V{"r1"}));
  EXPECT_EQ(Find("metrics.loss >= 0.3 AND metrics.loss <= 0.5"), (V{"r2", "r1"}));
}

TEST_P(MlflowRunSearch, ParamAndTagOperators) {
  EXPECT_EQ(Find("params.model = 'LogReg'"), (V{"r1"}));
  EXPECT_EQ(Find("params.model != 'LogReg'"), (V{"r3", "r2"}));
  EXPECT_EQ(Find("params.model LIKE 'Log%'"), (V{"r1"})) << "LIKE is case-sensitive";
  EXPECT_EQ(Find("params.model ILIKE 'log%'"), (V{"r2", "r1"}));
  EXPECT_EQ(Find("params.model LIKE '%e'"), (V{"r3"}));
  EXPECT_EQ(Find("param.lr = \"0.01\""), (V{"r2"}));
  EXPECT_EQ(Find("params.lr != '0.01'"), (V{"r1"})) << "a run without the param never matches";
  EXPECT_EQ(Find("tags.team = 'risk-eu'"), (V{"r2"}));
  EXPECT_EQ(Find("tags.team != 'ops'"), (V{"r2", "r1"}));
  EXPECT_EQ(Find("tags.team LIKE 'risk%'"), (V{"r2"}));
  EXPECT_EQ(Find("tags.team ILIKE 'risk%'"), (V{"r2", "r1"}));
  EXPECT_EQ(Find("tags.team LIKE 'R_sk'"), (V{"r1"}));
  EXPECT_EQ(Find("tags.`mlflow.runName` = 'r3'"), (V{"r3"}));
  EXPECT_EQ(Find("tags.mlflow.runName ILIKE 'R4'"), (V{"r4"}));
  EXPECT_EQ(Find("params.model ILIKE '%o%' AND tags.team = 'Risk'"), (V{"r1"}));
}

TEST_P(MlflowRunSearch, AttributeOperators) {
  EXPECT_EQ(Find("attributes.status = 'FINISHED'"), (V{"r1"}));
  EXPECT_EQ(Find("status != 'RUNNING'"), (V{"r2", "r1"}));
  EXPECT_EQ(Find("attributes.status LIKE 'FIN%'"), (V{"r1"}));
  EXPECT_EQ(Find("attributes.status ILIKE 'fail%'"), (V{"r2"}));
  EXPECT_EQ(Find("attributes.run_name = 'r3'"), (V{"r3"}));
  EXPECT_EQ(Find("attributes.run_name LIKE 'r%'"), (V{"r4", "r3", "r2", "r1"}));
  EXPECT_EQ(Find("attributes.user_id = 'u1'"), (V{"r3", "r1"}));
  EXPECT_EQ(Find("attributes.start_time >= 2000"), (V{"r4", "r3", "r2"}));
  EXPECT_EQ(Find("attributes.start_time < 2000"), (V{"r1"}));
  EXPECT_EQ(Find("attributes.start_time > 2000 AND attributes.start_time <= 3000"), (V{"r3"}));
  EXPECT_EQ(Find("attributes.start_time = 4000"), (V{"r4"}));
  EXPECT_EQ(Find("attributes.start_time != 4000"), (V{"r3", "r2", "r1"}));
  EXPECT_EQ(Find("attributes.created >= 3000"), (V{"r4", "r3"}));
  EXPECT_EQ(Find("attributes.end_time > 2000"), (V{"r2"}));
  EXPECT_EQ(Find("attributes.end_time <= 2000"), (V{"r1"}));
  EXPECT_EQ(Find("attributes.artifact_uri LIKE '%" + r1_ + "%'"), (V{"r1"}));
  EXPECT_EQ(Find("attributes.run_id = '" + r2_ + "'"), (V{"r2"}));
  EXPECT_EQ(Find("attributes.run_id IN ('" + r1_ + "', '" + r3_ + "')"), (V{"r3", "r1"}));
  EXPECT_EQ(Find("run_id NOT IN ('" + r1_ + "')"), (V{"r4", "r3", "r2"}));
  EXPECT_EQ(Find("attributes.run_id IN ('" + r4_ + "') AND metrics.acc > 0"), V{});
}

TEST_P(MlflowRunSearch, DatasetOperators) {
  EXPECT_EQ(Find("datasets.name = 'train-a'"), (V{"r1"}));
  EXPECT_EQ(Find("datasets.name != 'train-a'"), (V{"r2"})) << "runs without inputs never match";
  EXPECT_EQ(Find("datasets.name LIKE 'eval%'"), (V{"r2"}));
  EXPECT_EQ(Find("datasets.name ILIKE 'TRAIN%'"), (V{"r1"}));
  EXPECT_EQ(Find("datasets.digest IN ('d1', 'd2')"), (V{"r2", "r1"}));
  EXPECT_EQ(Find("datasets.digest NOT IN ('d1')"), (V{"r2"}));
  EXPECT_EQ(Find("datasets.context = 'training'"), (V{"r1"}));
  EXPECT_EQ(Find("dataset.context = 'eval' AND metrics.acc < 0.8"), (V{"r2"}));
}

TEST_P(MlflowRunSearch, MalformedFiltersAreInvalidParameterValue) {
  for (const std::string& filter : {
           std::string("metrics.acc LIKE '0.9'"),  // metrics: numeric comparisons only
           std::string("metrics.acc IN ('0.9')"),
           std::string("metrics.acc = 'high'"),
           std::string("params.model > 1"),  // params: = != LIKE ILIKE, strings
           std::string("params.model IN ('LogReg')"),
           std::string("params.model = LogReg"),
           std::string("params.model = 1"),
           std::string("tags.team NOT IN ('ops')"),
           std::string("tags.team < 'x'"),
           std::string("attributes.status IN ('FINISHED')"),  // only run_id takes a list
           std::string("attributes.start_time = 'yesterday'"),
           std::string("attributes.start_time LIKE '1%'"),
           std::string("attributes.bogus = 'x'"),
           std::string("datasets.bogus = 'x'"),
           std::string("datasets.name > 'a'"),
           std::string("whatever.acc > 1"),
           std::string("metrics.acc > 1 OR metrics.acc < 0"),
           std::string("metrics.acc >"),
           std::string("params.model = 'unterminated"),
           std::string("metrics.acc > 1 AND"),
       }) {
    EXPECT_TRUE(IsMlflowError(Search(filter), 400, "INVALID_PARAMETER_VALUE")) << filter;
  }
  for (const std::string& order : {std::string("metrics.acc SIDEWAYS"), std::string("bogus.x"),
                                   std::string("attributes.bogus"), std::string("datasets.name")}) {
    EXPECT_TRUE(IsMlflowError(Search("", {order}), 400, "INVALID_PARAMETER_VALUE")) << order;
  }
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/search", {{"experiment_ids", Json::array({exp_})}, {"run_view_type", "SOME"}}),
      400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      MPost("runs/search", {{"experiment_ids", Json::array({exp_})}, {"max_results", 50001}}), 400,
      "INVALID_PARAMETER_VALUE"));
}

TEST_P(MlflowRunSearch, OrderByMetricsParamsTagsAttributesMissingLast) {
  EXPECT_EQ(Find("", {"metrics.acc DESC"}), (V{"r1", "r3", "r2", "r4"}));
  EXPECT_EQ(Find("", {"metrics.acc ASC"}), (V{"r2", "r3", "r1", "r4"}));
  EXPECT_EQ(Find("", {"metrics.acc"}), (V{"r2", "r3", "r1", "r4"})) << "ASC by default";
  EXPECT_EQ(Find("metrics.acc > 0", {"metrics.acc DESC"}), (V{"r1", "r3", "r2"}));
  // Byte order: "LogReg" < "Tree" < "logistic".
  EXPECT_EQ(Find("", {"params.model ASC"}), (V{"r1", "r3", "r2", "r4"}));
  EXPECT_EQ(Find("", {"params.model DESC"}), (V{"r2", "r3", "r1", "r4"}));
  // Ties (runs without the param) fall back to start_time DESC.
  EXPECT_EQ(Find("", {"params.lr DESC"}), (V{"r1", "r2", "r4", "r3"}));
  EXPECT_EQ(Find("", {"tags.team ASC"}), (V{"r1", "r4", "r2", "r3"}));
  EXPECT_EQ(Find("", {"attributes.start_time ASC"}), (V{"r1", "r2", "r3", "r4"}));
  EXPECT_EQ(Find("", {"start_time DESC"}), (V{"r4", "r3", "r2", "r1"}));
  EXPECT_EQ(Find("", {"attributes.run_name DESC"}), (V{"r4", "r3", "r2", "r1"}));
  EXPECT_EQ(Find("", {"attributes.status ASC", "attributes.start_time ASC"}),
            (V{"r2", "r1", "r3", "r4"}));
  EXPECT_EQ(Find("", {"metrics.loss DESC", "params.model ASC"}), (V{"r2", "r1", "r3", "r4"}));
}

// MLflow's SqlAlchemyStore sorts a metric's NaN after every number and a
// missing metric after NaN, in either direction.
TEST_P(MlflowRunSearch, OrderByMetricPutsNanAfterNumbersAndMissingLast) {
  std::string exp = CreateExperiment("nan-order");
  auto make = [&](const std::string& name, int64_t start, const Json& value) {
    std::string id = CreateRun(exp, {{"run_name", name}, {"start_time", start}})["info"]["run_id"]
                         .get<std::string>();
    if (!value.is_null()) {
      Ok(MPost("runs/log-metric",
               {{"run_id", id}, {"key", "m"}, {"value", value}, {"timestamp", 1}}),
         "log-metric");
    }
  };
  make("n1", 1, 1.0);
  make("n2", 2, "NaN");
  make("n3", 3, 3.0);
  make("n4", 4, Json());
  auto order = [&](const std::string& o) {
    Reply r = MPost("runs/search", {{"experiment_ids", Json::array({exp})}, {"order_by", {o}}});
    EXPECT_EQ(r.status, 200) << r.Describe();
    return Names(r);
  };
  EXPECT_EQ(order("metrics.m ASC"), (V{"n1", "n3", "n2", "n4"}));
  EXPECT_EQ(order("metrics.m DESC"), (V{"n3", "n1", "n2", "n4"}));
}

TEST_P(MlflowRunSearch, PaginationAndViewTypes) {
  // Pages of 2 over 4 runs: token, token (the page is full), then {}.
  Reply p1 = Search("", {}, {{"max_results", 2}});
  ASSERT_EQ(p1.status, 200) << p1.Describe();
  EXPECT_EQ(Names(p1), (V{"r4", "r3"}));
  ASSERT_TRUE(p1.body.contains("next_page_token") && p1.body["next_page_token"].is_string())
      << p1.raw;
  Reply p2 = Search("", {}, {{"max_results", 2}, {"page_token", p1.body["next_page_token"]}});
  EXPECT_EQ(Names(p2), (V{"r2", "r1"}));
  ASSERT_TRUE(p2.body.contains("next_page_token")) << p2.raw;
  Reply p3 = Search("", {}, {{"max_results", 2}, {"page_token", p2.body["next_page_token"]}});
  ASSERT_EQ(p3.status, 200) << p3.Describe();
  EXPECT_EQ(p3.body, Json::object()) << p3.raw;
  // Pages of 3: the rest comes without a token.
  Reply q1 = Search("", {"metrics.acc DESC"}, {{"max_results", 3}});
  EXPECT_EQ(Names(q1), (V{"r1", "r3", "r2"}));
  ASSERT_TRUE(q1.body.contains("next_page_token")) << q1.raw;
  Reply q2 = Search("", {"metrics.acc DESC"},
                    {{"max_results", "3"}, {"page_token", q1.body["next_page_token"]}});
  EXPECT_EQ(Names(q2), (V{"r4"}));
  EXPECT_FALSE(q2.body.contains("next_page_token")) << q2.raw;
  // Bad tokens.
  EXPECT_TRUE(
      IsMlflowError(Search("", {}, {{"page_token", "%%%"}}), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(Search("", {}, {{"page_token", core::Base64Encode("[1]")}}), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(Search("", {}, {{"page_token", core::Base64Encode("{\"offset\": -1}")}}), 400,
                    "INVALID_PARAMETER_VALUE"));

  // View types.
  Ok(MPost("runs/delete", {{"run_id", r4_}}), "delete r4");
  EXPECT_EQ(Find(""), (V{"r3", "r2", "r1"}));
  EXPECT_EQ(Names(Search("", {}, {{"run_view_type", "ACTIVE_ONLY"}})), (V{"r3", "r2", "r1"}));
  EXPECT_EQ(Names(Search("", {}, {{"run_view_type", "DELETED_ONLY"}})), (V{"r4"}));
  EXPECT_EQ(Names(Search("", {}, {{"run_view_type", "ALL"}})), (V{"r4", "r3", "r2", "r1"}));
  EXPECT_EQ(Names(Search("attributes.lifecycle_stage = 'deleted'", {}, {{"run_view_type", "ALL"}})),
            (V{"r4"}));
}

// ---------------------------------------------------------------------------
// artifacts/list

TEST_P(MlflowTrackingApi, ListArtifactsThroughTheProxy) {
  std::string exp = CreateExperiment("artifacts");
  Json run = CreateRun(exp);
  std::string id = run["info"]["run_id"].get<std::string>();
  std::string root = run["info"]["artifact_uri"].get<std::string>();
  // Nothing uploaded: root_uri only, no "files".
  Reply empty = MGet("artifacts/list?run_id=" + id);
  ASSERT_EQ(empty.status, 200) << empty.Describe();
  EXPECT_EQ(empty.body, (Json{{"root_uri", root}})) << empty.raw;

  // Upload through the artifact proxy, as the MLflow client does for mlflow-artifacts: URIs.
  std::string base = "/api/2.0/mlflow-artifacts/artifacts/" + exp + "/" + id + "/artifacts/";
  for (const auto& [path, body] :
       std::vector<std::pair<std::string, std::string>>{{"metrics.txt", "abc"},
                                                        {"model/MLmodel", "flavors: {}\n"},
                                                        {"model/data/w.bin", "0123456789"}}) {
    Reply put =
        Call(client(), "PUT", base + path, body, {{"Content-Type", "application/octet-stream"}});
    ASSERT_EQ(put.status, 200) << path << ": " << put.Describe();
  }
  auto sorted = [](Json files) {
    std::sort(files.begin(), files.end(),
              [](const Json& a, const Json& b) { return a["path"] < b["path"]; });
    return files;
  };
  Reply top = MGet("artifacts/list?run_id=" + id);
  ASSERT_EQ(top.status, 200) << top.Describe();
  EXPECT_EQ(top.body["root_uri"], root);
  EXPECT_EQ(sorted(top.body["files"]),
            Json::parse(R"([{"path":"metrics.txt","is_dir":false,"file_size":3},
                            {"path":"model","is_dir":true}])"))
      << top.raw;
  // path=: paths relative to the run's root; run_uuid works too; the ajax alias.
  Reply sub = MGet("artifacts/list?run_uuid=" + id + "&path=model");
  ASSERT_EQ(sub.status, 200) << sub.Describe();
  EXPECT_EQ(sorted(sub.body["files"]),
            Json::parse(R"([{"path":"model/MLmodel","is_dir":false,"file_size":12},
                            {"path":"model/data","is_dir":true}])"))
      << sub.raw;
  Reply deeper =
      Get(client(), std::string(kAjax) + "artifacts/list?run_id=" + id + "&path=model/data");
  ASSERT_EQ(deeper.status, 200) << deeper.Describe();
  EXPECT_EQ(deeper.body["files"],
            Json::parse(R"([{"path":"model/data/w.bin","is_dir":false,"file_size":10}])"));
  // A directory that does not exist lists as empty (MLflow's repositories return []).
  Reply missing = MGet("artifacts/list?run_id=" + id + "&path=nothing/here");
  ASSERT_EQ(missing.status, 200) << missing.Describe();
  EXPECT_EQ(missing.body, (Json{{"root_uri", root}})) << missing.raw;
  // Traversal, unknown runs, no run.
  EXPECT_TRUE(IsMlflowError(MGet("artifacts/list?run_id=" + id + "&path=../../other"), 400,
                            "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MGet("artifacts/list?run_id=0123456789abcdef0123456789abcdef"), 404,
                            "RESOURCE_DOES_NOT_EXIST"));
  EXPECT_TRUE(IsMlflowError(MGet("artifacts/list"), 400, "INVALID_PARAMETER_VALUE"));
}

// ---------------------------------------------------------------------------
// Framing: content types, bodies, query strings, routes

TEST_P(MlflowTrackingApi, RequestFraming) {
  auto send = [&](const std::string& method, const std::string& path, const std::string& body,
                  http::HeaderList headers) {
    auto r = client().Send(method, kApi + path, body, std::move(headers));
    Reply out;
    if (!r) {
      out.transport_error = r.error().ToString();
      return out;
    }
    out.status = r->status;
    out.raw = r->body;
    out.body = Json::parse(r->body, nullptr, false);
    return out;
  };
  // POST needs Content-Type: application/json, even with an empty body (validation.py).
  // (http::Client adds one to a non-empty body, so this one goes out by hand.)
  Reply no_type = RawPost(server_->port(), kApi + std::string("experiments/create"),
                          R"({"name":"no-type"})", server_->admin_token());
  EXPECT_TRUE(IsMlflowError(no_type, 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_NE(no_type.raw.find("Content-Type"), std::string::npos) << no_type.raw;
  EXPECT_TRUE(IsMlflowError(
      send("POST", "experiments/create", R"({"name":"plain"})", {{"Content-Type", "text/plain"}}),
      400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(send("POST", "runs/create", "", {}), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(
      IsMlflowError(send("POST", "experiments/search", "", {}), 400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(MGet("experiments/get-by-name?experiment_name=no-type"), 404,
                            "RESOURCE_DOES_NOT_EXIST"))
      << "nothing was created by the refused requests";
  // Parameters after the media type are fine.
  Reply charset = send("POST", "experiments/create", R"({"name":"charset"})",
                       {{"Content-Type", "application/json; charset=utf-8"}});
  EXPECT_EQ(charset.status, 200) << charset.Describe();
  // A JSON string holding the JSON object (older clients double-encode).
  Reply doubled = send("POST", "experiments/create", Json(Json{{"name", "doubled"}}.dump()).dump(),
                       {{"Content-Type", "application/json"}});
  EXPECT_EQ(doubled.status, 200) << doubled.Describe();
  EXPECT_TRUE(doubled.body.contains("experiment_id")) << doubled.raw;
  // Invalid JSON is refused (documented: MLflow reads it as {}).
  EXPECT_TRUE(IsMlflowError(
      send("POST", "experiments/create", "{\"name\": ", {{"Content-Type", "application/json"}}),
      400, "INVALID_PARAMETER_VALUE"));
  EXPECT_TRUE(IsMlflowError(
      send("POST", "experiments/create", "[1, 2]", {{"Content-Type", "application/json"}}), 400,
      "INVALID_PARAMETER_VALUE"));
  // Unknown fields are ignored (protobuf's ignore_unknown_fields).
  Reply unknown = MPost("experiments/create", {{"name", "unknown-fields"}, {"colour", "blue"}});
  EXPECT_EQ(unknown.status, 200) << unknown.Describe();
  // GET: repeated keys and key[0]= forms for lists.
  Reply repeated = MGet("experiments/search?order_by=" + http::PercentEncode("name DESC") +
                        "&order_by=" + http::PercentEncode("experiment_id ASC") +
                        "&filter=" + http::PercentEncode("name LIKE '%d%'"));
  ASSERT_EQ(repeated.status, 200) << repeated.Describe();
  ASSERT_EQ(repeated.body["experiments"].size(), 2u) << repeated.raw;
  EXPECT_EQ(repeated.body["experiments"][0]["name"], "unknown-fields");
  EXPECT_EQ(repeated.body["experiments"][1]["name"], "doubled");
  Reply indexed = MGet("experiments/search?order_by%5B0%5D=" + http::PercentEncode("name DESC") +
                       "&filter=" + http::PercentEncode("name LIKE '%d%'"));
  ASSERT_EQ(indexed.status, 200) << indexed.Describe();
  EXPECT_EQ(indexed.body, repeated.body);
  // Unknown routes and wrong methods.
  EXPECT_EQ(MGet("experiments/nope").status, 404);
  EXPECT_EQ(MGet("runs/create").status, 405);
  EXPECT_EQ(MPost("runs/get", Json::object()).status, 405);
}

// ---------------------------------------------------------------------------
// The audit trail: every state change, with the caller and the request id;
// metrics and params are telemetry, not events.

TEST_P(MlflowTrackingApi, StateChangesAreAuditedTelemetryIsNot) {
  auto rid = [](const std::string& id) { return http::HeaderList{{"X-Request-Id", id}}; };
  Reply created =
      MPost("experiments/create", {{"name", "audited"}, {"tags", Json::array({KV("a", "1")})}},
            rid("mlflow-exp-create"));
  ASSERT_EQ(created.status, 200) << created.Describe();
  std::string exp = created.body["experiment_id"].get<std::string>();
  Ok(MPost("experiments/update", {{"experiment_id", exp}, {"new_name", "audited-2"}},
           rid("mlflow-exp-rename")),
     "rename");
  Ok(MPost("experiments/set-experiment-tag", {{"experiment_id", exp}, {"key", "k"}, {"value", "v"}},
           rid("mlflow-exp-tag")),
     "set-experiment-tag");
  Ok(MPost("experiments/delete-experiment-tag", {{"experiment_id", exp}, {"key", "k"}},
           rid("mlflow-exp-untag")),
     "delete-experiment-tag");

  Reply run = MPost("runs/create", {{"experiment_id", exp}, {"run_name", "audited-run"}},
                    rid("mlflow-run-create"));
  ASSERT_EQ(run.status, 200) << run.Describe();
  std::string id = run.body["run"]["info"]["run_id"].get<std::string>();

  // Telemetry first: nothing in the event log.
  int64_t head = HeadSeq(client());
  Ok(MPost("runs/log-metric", {{"run_id", id}, {"key", "m"}, {"value", 1}, {"timestamp", 1}},
           rid("mlflow-metric")),
     "log-metric");
  Ok(MPost("runs/log-parameter", {{"run_id", id}, {"key", "p"}, {"value", "1"}},
           rid("mlflow-param")),
     "log-parameter");
  Ok(MPost("runs/log-batch",
           {{"run_id", id},
            {"metrics",
             Json::array({Json{{"key", "m"}, {"value", 2}, {"timestamp", 2}, {"step", 1}}})},
            {"params", Json::array({KV("q", "2")})}},
           rid("mlflow-batch-telemetry")),
     "log-batch without tags");
  EXPECT_EQ(HeadSeq(client()), head) << "metrics and params must not append events";

  Reply updated = MPost("runs/update", {{"run_id", id}, {"status", "FINISHED"}, {"end_time", 5}},
                        rid("mlflow-run-update"));
  EXPECT_EQ(updated.status, 200) << updated.Describe();
  Ok(MPost("runs/set-tag", {{"run_id", id}, {"key", "t"}, {"value", "x"}}, rid("mlflow-run-tag")),
     "set-tag");
  Ok(MPost("runs/delete-tag", {{"run_id", id}, {"key", "t"}}, rid("mlflow-run-untag")),
     "delete-tag");
  Ok(MPost("runs/log-batch", {{"run_id", id}, {"tags", Json::array({KV("bt", "y")})}},
           rid("mlflow-batch-tags")),
     "log-batch with tags");
  Ok(MPost(
         "runs/log-inputs",
         {{"run_id", id},
          {"datasets",
           Json::array({Json{
               {"dataset",
                {{"name", "d"}, {"digest", "1"}, {"source_type", "local"}, {"source", "{}"}}}}})}},
         rid("mlflow-run-inputs")),
     "log-inputs");
  Json model = {{"artifact_path", "model"},
                {"flavors", Json::object()},
                {"utc_time_created", "2026-11-27 10:00:00.000000"},
                {"run_id", id}};
  Ok(MPost("runs/log-model", {{"run_id", id}, {"model_json", model.dump()}},
           rid("mlflow-run-model")),
     "log-model");
  Ok(MPost("runs/delete", {{"run_id", id}}, rid("mlflow-run-delete")), "runs/delete");
  Ok(MPost("runs/restore", {{"run_id", id}}, rid("mlflow-run-restore")), "runs/restore");
  Ok(MPost("experiments/delete", {{"experiment_id", exp}}, rid("mlflow-exp-delete")),
     "experiments/delete");
  Ok(MPost("experiments/restore", {{"experiment_id", exp}}, rid("mlflow-exp-restore")),
     "experiments/restore");

  auto story = [](const std::vector<Json>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) {
      out.push_back(e.value("type", "") + " by " + e.value("actor", "") + " [" +
                    e.value("correlation_id", "") + "] in " + e.value("project", ""));
    }
    return out;
  };
  EXPECT_EQ(story(Audit("experiment", exp)),
            (V{"experiment.created by user:admin [mlflow-exp-create] in default",
               "experiment.renamed by user:admin [mlflow-exp-rename] in default",
               "experiment.tag_set by user:admin [mlflow-exp-tag] in default",
               "experiment.tag_deleted by user:admin [mlflow-exp-untag] in default",
               "experiment.deleted by user:admin [mlflow-exp-delete] in default",
               "experiment.restored by user:admin [mlflow-exp-restore] in default"}));
  std::vector<Json> run_events = Audit("run", id);
  EXPECT_EQ(story(run_events), (V{"run.created by user:admin [mlflow-run-create] in default",
                                  "run.updated by user:admin [mlflow-run-update] in default",
                                  "run.tag_set by user:admin [mlflow-run-tag] in default",
                                  "run.tag_deleted by user:admin [mlflow-run-untag] in default",
                                  "run.tags_set by user:admin [mlflow-batch-tags] in default",
                                  "run.inputs_logged by user:admin [mlflow-run-inputs] in default",
                                  "run.model_logged by user:admin [mlflow-run-model] in default",
                                  "run.deleted by user:admin [mlflow-run-delete] in default",
                                  "run.restored by user:admin [mlflow-run-restore] in default",
                                  "run.deleted by user:admin [mlflow-exp-delete] in default",
                                  "run.restored by user:admin [mlflow-exp-restore] in default"}));
  // The run's transitions that the experiment's caused name it.
  std::vector<Json> exp_events = Audit("experiment", exp);
  if (exp_events.size() == 6 && run_events.size() == 11) {
    EXPECT_EQ(run_events[9].value("causation_id", ""), exp_events[4].value("id", ""));
    EXPECT_EQ(run_events[10].value("causation_id", ""), exp_events[5].value("id", ""));
  }
  // The run.updated event says what changed.
  if (run_events.size() > 1) {
    EXPECT_EQ(run_events[1]["data"]["status"], (Json{{"from", "RUNNING"}, {"to", "FINISHED"}}))
        << run_events[1].dump();
  }
  // No event carries a telemetry request id.
  Reply all = Get(client(), "/api/v1/audit?limit=1000");
  ASSERT_EQ(all.status, 200) << all.Describe();
  for (const auto& e : all.body["events"]) {
    std::string c = e.value("correlation_id", "");
    EXPECT_TRUE(c != "mlflow-metric" && c != "mlflow-param" && c != "mlflow-batch-telemetry")
        << e.dump();
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, MlflowTrackingApi,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kSqlite ? "sqlite" : "postgres";
                         });
INSTANTIATE_TEST_SUITE_P(Backends, MlflowRunSearch,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kSqlite ? "sqlite" : "postgres";
                         });

}  // namespace
}  // namespace kervan::apitest
