// Bad input through real HTTP: every rejected request answers with the right
// status, code and field in the error envelope, and leaves stored state
// exactly as it was (same log head, same model, same version, same list).
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

constexpr char kModels[] = "/api/v1/models";
constexpr char kM1[] = "/api/v1/models/m1";
constexpr char kVersions[] = "/api/v1/models/m1/versions";
constexpr char kV1[] = "/api/v1/models/m1/versions/1";

// What must not change when a request is rejected.
struct StoredState {
  int64_t head_seq = -1;
  std::string model;    // GET of m1
  std::string version;  // GET of m1 version 1
  std::string models;   // the model list
  bool operator==(const StoredState&) const = default;
};

std::ostream& operator<<(std::ostream& os, const StoredState& s) {
  return os << "{head_seq=" << s.head_seq << ", model=" << s.model.substr(0, 200)
            << ", version=" << s.version.substr(0, 200) << "}";
}

class BadInput : public ::testing::Test {
 protected:
  BadInput() : server_({.extra_args = {"--set", "server.max_body_bytes=2048"}}) {}

  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    client_.emplace(server_.client());
    // m1 has a gate; its version 1 failed it and sits in Rejected, from
    // where approve and archive are allowed.
    Reply created = Post(
        *client_, kModels,
        {{"name", "m1"},
         {"validation", {{"checks", {{{"metric", "auc"}, {"op", ">="}, {"threshold", 0.85}}}}}}});
    ASSERT_EQ(created.status, 201) << created.Describe();
    Reply v1 = Post(*client_, kVersions, {{"metrics", {{"auc", 0.8}}}});
    ASSERT_EQ(v1.status, 201) << v1.Describe();
    ASSERT_EQ(v1.body.value("state", ""), "Rejected") << v1.raw;
    before_ = Snapshot();
  }

  // Every test ends by proving the rejected requests changed nothing.
  void TearDown() override {
    if (!client_ || HasFatalFailure())
      return;
    EXPECT_EQ(Snapshot(), before_) << "a rejected request changed stored state";
  }

  StoredState Snapshot() {
    StoredState s;
    s.head_seq = HeadSeq(*client_);
    Reply m = Get(*client_, kM1);
    EXPECT_EQ(m.status, 200) << m.Describe();
    s.model = m.raw;
    Reply v = Get(*client_, kV1);
    EXPECT_EQ(v.status, 200) << v.Describe();
    s.version = v.raw;
    Reply list = Get(*client_, std::string(kModels) + "?limit=1000");
    EXPECT_EQ(list.status, 200) << list.Describe();
    s.models = list.raw;
    return s;
  }

  ServerProcess server_;
  std::optional<http::Client> client_;
  StoredState before_;
};

TEST_F(BadInput, MalformedJsonIsInvalidArgumentOnBody) {
  for (const std::string body : {"{\"name\": \"m2\",", "not json", "{\"name\": 'm2'}", "[1,2"}) {
    SCOPED_TRACE(body);
    EXPECT_TRUE(IsError(Call(*client_, "POST", kModels, body), 400, "invalid_argument", "body"));
    EXPECT_TRUE(IsError(Call(*client_, "POST", std::string(kV1) + "/approve", body), 400,
                        "invalid_argument", "body"));
  }
  // An empty body is malformed too (the Content-Type says JSON).
  EXPECT_TRUE(IsError(Call(*client_, "POST", std::string(kV1) + "/approve", "",
                           {{"Content-Type", "application/json"}}),
                      400, "invalid_argument", "body"));
  // Valid JSON that is not an object.
  EXPECT_EQ(Call(*client_, "POST", kModels, "[\"m2\"]").status, 400);
}

TEST_F(BadInput, WrongTypeNamesTheField) {
  EXPECT_TRUE(IsError(Post(*client_, kModels, {{"name", 7}}), 400, "invalid_argument", "name"));
  EXPECT_TRUE(IsError(Post(*client_, kModels, {{"name", "m2"}, {"tags", "a=b"}}), 400,
                      "invalid_argument", "tags"));
  EXPECT_TRUE(IsError(Post(*client_, kModels, {{"name", "m2"}, {"tags", {{"team", 5}}}}), 400,
                      "invalid_argument", "tags.team"));
  EXPECT_TRUE(IsError(Post(*client_, kVersions, {{"metrics", {{"auc", "high"}}}}), 400,
                      "invalid_argument", "metrics.auc"));
  EXPECT_TRUE(IsError(Post(*client_, kVersions, {{"metrics", Json::array({1})}}), 400,
                      "invalid_argument", "metrics"));
  EXPECT_TRUE(IsError(Post(*client_, std::string(kV1) + "/approve", {{"reason", true}}), 400,
                      "invalid_argument", "reason"));
  EXPECT_TRUE(IsError(Call(*client_, "PUT", std::string(kM1) + "/aliases/champion",
                           R"({"version":"1","reason":"x"})"),
                      400, "invalid_argument", "version"));
  // A gate check names its position.
  Reply gate = Call(*client_, "PUT", std::string(kM1) + "/validation",
                    R"({"reason":"x","checks":[{"metric":"auc","op":">=","threshold":0.9},)"
                    R"({"metric":"auc","op":"=>","threshold":1}]})");
  EXPECT_TRUE(IsError(gate, 400, "invalid_argument", "checks[1].op"));
  // A required field that is missing is named too.
  EXPECT_TRUE(
      IsError(Post(*client_, kModels, {{"description", "x"}}), 400, "invalid_argument", "name"));
}

TEST_F(BadInput, UnknownBodyFieldIsNamed) {
  EXPECT_TRUE(IsError(Post(*client_, kModels, {{"name", "m2"}, {"colour", "red"}}), 400,
                      "invalid_argument", "colour"));
  EXPECT_TRUE(IsError(Post(*client_, std::string(kV1) + "/approve", {{"reson", "typo"}}), 400,
                      "invalid_argument", "reson"));
  EXPECT_TRUE(IsError(Post(*client_, kVersions, {{"metric", {{"auc", 0.9}}}}), 400,
                      "invalid_argument", "metric"));
}

TEST_F(BadInput, UnknownQueryParameterIsRejected) {
  EXPECT_TRUE(
      IsError(Get(*client_, std::string(kModels) + "?limt=5"), 400, "invalid_argument", "limt"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/events?aftr=1"), 400, "invalid_argument", "aftr"));
  EXPECT_TRUE(
      IsError(Get(*client_, std::string(kV1) + "?verbose=1"), 400, "invalid_argument", "verbose"));
  EXPECT_TRUE(
      IsError(Get(*client_, "/api/v1/audit?subject=x"), 400, "invalid_argument", "subject"));
  // A known parameter with a bad value names it as well.
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/events?limit=abc"), 400, "invalid_argument", "limit"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/events?wait=61"), 400, "invalid_argument", "wait"));
  EXPECT_TRUE(
      IsError(Get(*client_, "/api/v1/audit?since=yesterday"), 400, "invalid_argument", "since"));
  EXPECT_TRUE(IsError(Get(*client_, std::string(kVersions) + "?state=Shadow"), 400,
                      "invalid_argument", "state"));
  // Commands too: a typo'd "?dry_run=1" must not be silently ignored while
  // the command goes ahead for real.
  EXPECT_TRUE(IsError(Post(*client_, std::string(kModels) + "?dry_run=1", {{"name", "m2"}}), 400,
                      "invalid_argument", "dry_run"));
  EXPECT_TRUE(IsError(Post(*client_, std::string(kV1) + "/approve?dry_run=1", {{"reason", "ok"}}),
                      400, "invalid_argument", "dry_run"));
}

TEST_F(BadInput, OversizedBodyIsPayloadTooLarge) {
  Json body = {{"name", "m2"}, {"description", std::string(4096, 'x')}};
  Reply r = Post(*client_, kModels, body);
  EXPECT_EQ(r.status, 413) << r.Describe();
  if (r.body.is_object() && r.body.contains("error")) {
    EXPECT_EQ(r.body["error"].value("code", ""), "payload_too_large") << r.raw;
  } else {
    ADD_FAILURE() << "413 without an error envelope: " << r.raw;
  }
  // The server is still healthy afterwards.
  EXPECT_EQ(Get(*client_, "/healthz").status, 200);
}

TEST_F(BadInput, UnknownRouteIsNotFound) {
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/nope"), 404, "not_found"));
  EXPECT_TRUE(IsError(Post(*client_, "/api/v1/model", {{"name", "m2"}}), 404, "not_found"));
  EXPECT_TRUE(IsError(Post(*client_, std::string(kV1) + "/approve/extra", {{"reason", "x"}}), 404,
                      "not_found"));
  // The generic entity write routes are gone: model versions change only
  // through the registry.
  EXPECT_EQ(Post(*client_, "/api/v1/entities/model_version", {{"id", "x"}}).status, 405);
}

TEST_F(BadInput, WrongMethodIsMethodNotAllowed) {
  Reply del = Call(*client_, "DELETE", kV1);
  EXPECT_TRUE(IsError(del, 405, "method_not_allowed"));
  EXPECT_NE(del.headers["allow"].find("GET"), std::string::npos) << del.headers["allow"];
  Reply put = Call(*client_, "PUT", std::string(kV1) + "/approve", R"({"reason":"x"})");
  EXPECT_TRUE(IsError(put, 405, "method_not_allowed"));
  EXPECT_NE(put.headers["allow"].find("POST"), std::string::npos) << put.headers["allow"];
  EXPECT_TRUE(IsError(Call(*client_, "POST", "/api/v1/events", "{}"), 405, "method_not_allowed"));
}

TEST_F(BadInput, IllegalTransitionIsConflictListingAllowed) {
  // From Rejected, reject is not allowed; approve, archive and delete (MLflow API) are.
  Reply r = Post(*client_, std::string(kV1) + "/reject", {{"reason", "again"}});
  ASSERT_TRUE(IsError(r, 409, "failed_precondition"));
  const Json& e = r.body["error"];
  EXPECT_EQ(e.value("current_state", ""), "Rejected") << r.raw;
  ASSERT_TRUE(e.contains("allowed_transitions") && e["allowed_transitions"].is_array()) << r.raw;
  std::set<std::string> allowed;
  for (const auto& t : e["allowed_transitions"])
    allowed.insert(t.value("name", ""));
  EXPECT_EQ(allowed, (std::set<std::string>{"approve", "archive", "delete"})) << r.raw;
  // An alias cannot be "moved" to where it already is, nor deleted when absent.
  EXPECT_TRUE(IsError(Call(*client_, "DELETE", std::string(kM1) + "/aliases/champion?reason=x"),
                      404, "not_found"));
}

TEST_F(BadInput, MissingReasonOnManualTransition) {
  EXPECT_TRUE(IsError(Post(*client_, std::string(kV1) + "/approve", Json::object()), 400,
                      "invalid_argument", "reason"));
  EXPECT_TRUE(IsError(Post(*client_, std::string(kV1) + "/archive", {{"reason", " \t"}}), 400,
                      "invalid_argument", "reason"));
  EXPECT_TRUE(
      IsError(Call(*client_, "PUT", std::string(kM1) + "/aliases/champion", R"({"version":1})"),
              400, "invalid_argument", "reason"));
  EXPECT_TRUE(IsError(Call(*client_, "PUT", std::string(kM1) + "/validation", R"({"checks":[]})"),
                      400, "invalid_argument", "reason"));
}

TEST_F(BadInput, BadNamesAreInvalidArgument) {
  for (const std::string& name : std::vector<std::string>{"", "a b", "../etc", "a/b", "-x", "m\n1",
                                                          "%2e%2e", std::string(129, 'a')}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(
        IsError(Post(*client_, kModels, {{"name", name}}), 400, "invalid_argument", "name"));
  }
  EXPECT_TRUE(IsError(Post(*client_, kModels, {{"name", "m2"}, {"project", "Risk Team"}}), 400,
                      "invalid_argument", "project"));
  EXPECT_TRUE(IsError(Post(*client_, kModels, {{"name", "m2"}, {"project", "nope"}}), 400,
                      "invalid_argument", "project"));
  for (const std::string& alias : std::vector<std::string>{"latest", "Champion", "1st"}) {
    SCOPED_TRACE(alias);
    EXPECT_TRUE(IsError(Call(*client_, "PUT", std::string(kM1) + "/aliases/" + alias,
                             R"({"version":1,"reason":"x"})"),
                        400, "invalid_argument", "alias"));
  }
  for (const std::string& v : std::vector<std::string>{"0", "-1", "one", "1.5"}) {
    SCOPED_TRACE(v);
    EXPECT_TRUE(IsError(Get(*client_, std::string(kVersions) + "/" + v), 400, "invalid_argument",
                        "version"));
  }
  // Through the path, a bad name is never found (and never reaches the disk).
  EXPECT_EQ(Get(*client_, std::string(kModels) + "/a%20b").status, 404);
  Reply traversal = Post(*client_, std::string(kModels) + "/..%2Fm1/versions", Json::object());
  EXPECT_TRUE(traversal.status == 400 || traversal.status == 404) << traversal.Describe();
}

TEST_F(BadInput, DuplicateNameIsAlreadyExists) {
  EXPECT_TRUE(IsError(Post(*client_, kModels, {{"name", "m1"}}), 409, "already_exists"));
  EXPECT_TRUE(
      IsError(Post(*client_, "/api/v1/projects", {{"name", "default"}}), 409, "already_exists"));
}

TEST_F(BadInput, UnknownThingsAreNotFound) {
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/models/nope"), 404, "not_found"));
  EXPECT_TRUE(
      IsError(Post(*client_, "/api/v1/models/nope/versions", Json::object()), 404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, std::string(kVersions) + "/9"), 404, "not_found"));
  EXPECT_TRUE(IsError(Post(*client_, std::string(kVersions) + "/9/approve", {{"reason", "x"}}), 404,
                      "not_found"));
  EXPECT_TRUE(IsError(Call(*client_, "PUT", std::string(kM1) + "/aliases/champion",
                           R"({"version":9,"reason":"x"})"),
                      404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/entities/dataset"), 404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/lifecycles/dataset"), 404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/tokens/nope"), 404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/principals/user:nobody"), 404, "not_found"));
}

}  // namespace
}  // namespace kervan::apitest
