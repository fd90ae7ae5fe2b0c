// Bad input through real HTTP: every rejected request answers with the right
// status, code and field in the error envelope, and leaves stored state
// exactly as it was (same log head, same entity, same entity list).
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

constexpr char kEntities[] = "/api/v1/entities/model_version";
constexpr char kMv1[] = "/api/v1/entities/model_version/mv-1";
constexpr char kMv1Transitions[] = "/api/v1/entities/model_version/mv-1/transitions";

// What must not change when a request is rejected.
struct StoredState {
  int64_t head_seq = -1;
  std::string entity;    // GET of mv-1
  std::string entities;  // the model_version list
  bool operator==(const StoredState&) const = default;
};

std::ostream& operator<<(std::ostream& os, const StoredState& s) {
  return os << "{head_seq=" << s.head_seq << ", entity=" << s.entity
            << ", entities=" << s.entities.substr(0, 300) << "}";
}

class BadInput : public ::testing::Test {
 protected:
  BadInput() : server_({.extra_args = {"--set", "server.max_body_bytes=2048"}}) {}

  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    client_.emplace(server_.client());
    // mv-1 sits in Validating, where pass/fail/approve/reject are allowed.
    Reply created = Post(*client_, kEntities, {{"id", "mv-1"}, {"data", {{"auc", 0.91}}}});
    ASSERT_EQ(created.status, 201) << created.Describe();
    Reply validated = Post(*client_, kMv1Transitions, {{"transition", "validate"}});
    ASSERT_EQ(validated.status, 200) << validated.Describe();
    before_ = Snapshot();
    ASSERT_EQ(before_.head_seq, 2);
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
    Reply e = Get(*client_, kMv1);
    EXPECT_EQ(e.status, 200) << e.Describe();
    s.entity = e.raw;
    Reply list = Get(*client_, std::string(kEntities) + "?limit=1000");
    EXPECT_EQ(list.status, 200) << list.Describe();
    s.entities = list.raw;
    return s;
  }

  ServerProcess server_;
  std::optional<http::Client> client_;
  StoredState before_;
};

TEST_F(BadInput, MalformedJsonIsInvalidArgumentOnBody) {
  for (const std::string body : {"{\"id\": \"mv-2\",", "not json", "{\"id\": 'mv-2'}", "[1,2"}) {
    SCOPED_TRACE(body);
    EXPECT_TRUE(IsError(Call(*client_, "POST", kEntities, body), 400, "invalid_argument", "body"));
    EXPECT_TRUE(
        IsError(Call(*client_, "POST", kMv1Transitions, body), 400, "invalid_argument", "body"));
  }
  // An empty body is malformed too (the Content-Type says JSON).
  EXPECT_TRUE(
      IsError(Call(*client_, "POST", kMv1Transitions, "", {{"Content-Type", "application/json"}}),
              400, "invalid_argument", "body"));
  // Valid JSON that is not an object.
  EXPECT_EQ(Call(*client_, "POST", kEntities, "[\"mv-2\"]").status, 400);
}

TEST_F(BadInput, WrongTypeNamesTheField) {
  EXPECT_TRUE(IsError(Post(*client_, kMv1Transitions, {{"transition", 5}}), 400, "invalid_argument",
                      "transition"));
  EXPECT_TRUE(IsError(Post(*client_, kMv1Transitions, {{"transition", "pass"}, {"reason", true}}),
                      400, "invalid_argument", "reason"));
  EXPECT_TRUE(
      IsError(Post(*client_, kMv1Transitions, {{"transition", "pass"}, {"data", Json::array({1})}}),
              400, "invalid_argument", "data"));
  EXPECT_TRUE(IsError(Post(*client_, kEntities, {{"id", 7}}), 400, "invalid_argument", "id"));
  EXPECT_TRUE(IsError(Post(*client_, kEntities, {{"id", "mv-2"}, {"data", "auc=0.9"}}), 400,
                      "invalid_argument", "data"));
  // A required field that is missing is named too.
  EXPECT_TRUE(IsError(Post(*client_, kMv1Transitions, {{"reason", "x"}}), 400, "invalid_argument",
                      "transition"));
}

TEST_F(BadInput, UnknownBodyFieldIsNamed) {
  EXPECT_TRUE(IsError(Post(*client_, kEntities, {{"id", "mv-2"}, {"colour", "red"}}), 400,
                      "invalid_argument", "colour"));
  EXPECT_TRUE(IsError(Post(*client_, kMv1Transitions, {{"transition", "fail"}, {"reson", "typo"}}),
                      400, "invalid_argument", "reson"));
}

TEST_F(BadInput, UnknownQueryParameterIsRejected) {
  EXPECT_TRUE(
      IsError(Get(*client_, std::string(kEntities) + "?limt=5"), 400, "invalid_argument", "limt"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/events?aftr=1"), 400, "invalid_argument", "aftr"));
  EXPECT_TRUE(
      IsError(Get(*client_, std::string(kMv1) + "?verbose=1"), 400, "invalid_argument", "verbose"));
  EXPECT_TRUE(IsError(Get(*client_, std::string(kMv1) + "/events?kind=x"), 400, "invalid_argument",
                      "kind"));
  // A known parameter with a bad value names it as well.
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/events?limit=abc"), 400, "invalid_argument", "limit"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/events?wait=61"), 400, "invalid_argument", "wait"));
  // Commands too: a typo'd "?dry_run=1" must not be silently ignored while
  // the command goes ahead for real.
  EXPECT_TRUE(IsError(Post(*client_, std::string(kEntities) + "?dry_run=1", {{"id", "mv-2"}}), 400,
                      "invalid_argument", "dry_run"));
  EXPECT_TRUE(
      IsError(Post(*client_, std::string(kMv1Transitions) + "?dry_run=1", {{"transition", "fail"}}),
              400, "invalid_argument", "dry_run"));
}

TEST_F(BadInput, OversizedBodyIsPayloadTooLarge) {
  Json body = {{"id", "mv-2"}, {"data", {{"blob", std::string(4096, 'x')}}}};
  Reply r = Post(*client_, kEntities, body);
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
  EXPECT_TRUE(IsError(Post(*client_, "/api/v1/entities", {{"id", "mv-2"}}), 404, "not_found"));
  EXPECT_TRUE(
      IsError(Post(*client_, std::string(kMv1) + "/transitions/extra", {{"transition", "fail"}}),
              404, "not_found"));
}

TEST_F(BadInput, WrongMethodIsMethodNotAllowed) {
  Reply del = Call(*client_, "DELETE", kMv1);
  EXPECT_TRUE(IsError(del, 405, "method_not_allowed"));
  EXPECT_NE(del.headers["allow"].find("GET"), std::string::npos) << del.headers["allow"];
  Reply put = Call(*client_, "PUT", kMv1Transitions, R"({"transition":"fail"})");
  EXPECT_TRUE(IsError(put, 405, "method_not_allowed"));
  EXPECT_NE(put.headers["allow"].find("POST"), std::string::npos) << put.headers["allow"];
  EXPECT_TRUE(IsError(Call(*client_, "POST", "/api/v1/events", "{}"), 405, "method_not_allowed"));
}

TEST_F(BadInput, IllegalTransitionIsConflictListingAllowed) {
  Reply r = Post(*client_, kMv1Transitions, {{"transition", "archive"}, {"reason", "old"}});
  ASSERT_TRUE(IsError(r, 409, "failed_precondition"));
  const Json& e = r.body["error"];
  EXPECT_EQ(e.value("current_state", ""), "Validating") << r.raw;
  ASSERT_TRUE(e.contains("allowed_transitions") && e["allowed_transitions"].is_array()) << r.raw;
  std::set<std::string> allowed;
  for (const auto& t : e["allowed_transitions"])
    allowed.insert(t.value("name", ""));
  EXPECT_EQ(allowed, (std::set<std::string>{"pass", "fail", "approve", "reject"})) << r.raw;

  // Once more from the initial state's successor: validate is not allowed twice.
  EXPECT_TRUE(IsError(Post(*client_, kMv1Transitions, {{"transition", "validate"}}), 409,
                      "failed_precondition"));
  // A refused guard is a 409 too, and says what it wanted.
  Reply guard = Post(*client_, kMv1Transitions,
                     {{"transition", "pass"}, {"data", {{"checks", {{"auc", false}}}}}});
  EXPECT_TRUE(IsError(guard, 409, "failed_precondition"));
  // An unknown transition name is bad input naming the field, with the same help.
  Reply unknown = Post(*client_, kMv1Transitions, {{"transition", "explode"}});
  EXPECT_TRUE(IsError(unknown, 400, "invalid_argument", "transition"));
  EXPECT_TRUE(unknown.body["error"].contains("allowed_transitions")) << unknown.raw;
}

TEST_F(BadInput, MissingReasonOnManualTransition) {
  EXPECT_TRUE(IsError(Post(*client_, kMv1Transitions, {{"transition", "approve"}}), 400,
                      "invalid_argument", "reason"));
  EXPECT_TRUE(
      IsError(Post(*client_, kMv1Transitions, {{"transition", "reject"}, {"reason", " \t"}}), 400,
              "invalid_argument", "reason"));
}

TEST_F(BadInput, BadEntityIdIsInvalidArgument) {
  for (const std::string& id : std::vector<std::string>{"", "a b", "../etc", "a..b", "..", "a/b",
                                                        "mv\n1", "%2e%2e", std::string(201, 'a')}) {
    SCOPED_TRACE(id);
    EXPECT_TRUE(IsError(Post(*client_, kEntities, {{"id", id}}), 400, "invalid_argument", "id"));
  }
  // Through the path, a bad id is never found (and never reaches the disk).
  EXPECT_EQ(Get(*client_, std::string(kEntities) + "/a%20b").status, 404);
  Reply traversal =
      Post(*client_, std::string(kEntities) + "/..%2Fmv-1/transitions", {{"transition", "fail"}});
  EXPECT_TRUE(traversal.status == 400 || traversal.status == 404) << traversal.Describe();
}

TEST_F(BadInput, DuplicateIdIsAlreadyExists) {
  EXPECT_TRUE(IsError(Post(*client_, kEntities, {{"id", "mv-1"}}), 409, "already_exists"));
  EXPECT_TRUE(IsError(Post(*client_, kEntities, {{"id", "mv-1"}, {"data", {{"auc", 0.1}}}}), 409,
                      "already_exists"));
}

TEST_F(BadInput, UnknownKindIsNotFound) {
  EXPECT_TRUE(
      IsError(Post(*client_, "/api/v1/entities/dataset", {{"id", "d-1"}}), 404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/entities/dataset"), 404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/entities/dataset/mv-1"), 404, "not_found"));
  EXPECT_TRUE(
      IsError(Post(*client_, "/api/v1/entities/dataset/mv-1/transitions", {{"transition", "fail"}}),
              404, "not_found"));
  EXPECT_TRUE(IsError(Get(*client_, "/api/v1/lifecycles/dataset"), 404, "not_found"));
  // And an unknown entity of a known kind.
  EXPECT_TRUE(IsError(
      Post(*client_, std::string(kEntities) + "/mv-404/transitions", {{"transition", "validate"}}),
      404, "not_found"));
}

}  // namespace
}  // namespace kervan::apitest
