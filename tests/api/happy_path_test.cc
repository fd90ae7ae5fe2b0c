// The happy path through real HTTP against a real server process: probes,
// an entity's whole lifecycle and its history, request ids and actors in the
// event log, long-poll, the SSE stream (order and resume), and a restart.
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr char kEntities[] = "/api/v1/entities/model_version";

std::string Transitions(const std::string& id) {
  return std::string(kEntities) + "/" + id + "/transitions";
}

class HappyPath : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    client_.emplace(server_.client());
  }

  // Creates model_version `id`; returns the created event's seq (0 on failure).
  int64_t Create(const std::string& id) {
    Reply r = Post(*client_, kEntities, {{"id", id}});
    EXPECT_EQ(r.status, 201) << r.Describe();
    return r.body.is_object() ? r.body.value("created_seq", int64_t{0}) : 0;
  }

  ServerProcess server_;
  std::optional<http::Client> client_;
};

TEST_F(HappyPath, ProbesAndVersionAnswer) {
  Reply health = Get(*client_, "/healthz");
  EXPECT_EQ(health.status, 200) << health.Describe();
  Reply ready = Get(*client_, "/readyz");
  ASSERT_EQ(ready.status, 200) << ready.Describe();
  EXPECT_EQ(ready.body.value("status", ""), "ready") << ready.raw;
  EXPECT_EQ(ready.body.value("store", ""), "sqlite") << ready.raw;
  Reply version = Get(*client_, "/api/v1/version");
  ASSERT_EQ(version.status, 200) << version.Describe();
  EXPECT_EQ(version.body.value("name", ""), "kervan");
  EXPECT_EQ(version.body.value("api", ""), "v1");

  Reply lifecycles = Get(*client_, "/api/v1/lifecycles");
  ASSERT_EQ(lifecycles.status, 200) << lifecycles.Describe();
  ASSERT_TRUE(lifecycles.body["items"].is_array()) << lifecycles.raw;
  EXPECT_NE(lifecycles.raw.find("model_version"), std::string::npos) << lifecycles.raw;
  Reply mv = Get(*client_, "/api/v1/lifecycles/model_version");
  ASSERT_EQ(mv.status, 200) << mv.Describe();
  EXPECT_NE(mv.raw.find("DeploymentReady"), std::string::npos) << mv.raw;
}

TEST_F(HappyPath, ModelVersionLifecycleIsRecordedAsHistory) {
  const http::HeaderList alice = {{"X-Kervan-Actor", "alice"}};
  Reply created = Post(*client_, kEntities, {{"id", "credit-7"}, {"data", {{"auc", 0.93}}}}, alice);
  ASSERT_EQ(created.status, 201) << created.Describe();
  EXPECT_EQ(created.body.value("state", ""), "Registered") << created.raw;
  EXPECT_EQ(created.body["data"].value("auc", 0.0), 0.93) << created.raw;

  ASSERT_EQ(Post(*client_, Transitions("credit-7"), {{"transition", "validate"}}, alice).status,
            200);
  Reply passed = Post(
      *client_, Transitions("credit-7"),
      {{"transition", "pass"}, {"data", {{"checks", {{"schema", true}, {"auc_above_0_9", true}}}}}},
      {{"X-Kervan-Actor", "system:validator"}});
  ASSERT_EQ(passed.status, 200) << passed.Describe();
  EXPECT_EQ(passed.body.value("state", ""), "DeploymentReady") << passed.raw;
  Reply archived = Post(*client_, Transitions("credit-7"),
                        {{"transition", "archive"}, {"reason", "superseded by credit-8"}},
                        {{"X-Kervan-Actor", "bob"}});
  ASSERT_EQ(archived.status, 200) << archived.Describe();

  Reply got = Get(*client_, std::string(kEntities) + "/credit-7");
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.body.value("state", ""), "Archived");

  Reply history = Get(*client_, std::string(kEntities) + "/credit-7/events");
  ASSERT_EQ(history.status, 200) << history.Describe();
  EXPECT_EQ(history.body["entity"].value("state", ""), "Archived");
  const Json& events = history.body["events"];
  ASSERT_EQ(events.size(), 4u) << history.raw;
  const std::vector<std::string> want_types = {"model_version.created",
                                               "model_version.validation_started",
                                               "model_version.validated", "model_version.archived"};
  const std::vector<std::string> want_actors = {"alice", "alice", "system:validator", "bob"};
  for (size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(events[i].value("type", ""), want_types[i]);
    EXPECT_EQ(events[i].value("actor", ""), want_actors[i]);
    EXPECT_EQ(events[i]["subject"].value("id", ""), "credit-7");
    EXPECT_EQ(events[i].value("seq", int64_t{0}), static_cast<int64_t>(i + 1));
    if (i > 0) {
      EXPECT_EQ(events[i].value("prev_hash", ""), events[i - 1].value("hash", "x"));
    }
  }
  EXPECT_EQ(events[3].value("reason", ""), "superseded by credit-8");
  EXPECT_EQ(events[2]["data"].value("from", ""), "Validating") << events[2].dump();
  EXPECT_EQ(events[2]["data"].value("to", ""), "DeploymentReady") << events[2].dump();
  EXPECT_EQ(events[2]["data"]["data"]["checks"].value("schema", false), true) << events[2].dump();

  // The global log filters by subject, type and actor.
  Reply by_type = Get(*client_, "/api/v1/events?type=model_version.archived");
  ASSERT_EQ(by_type.status, 200) << by_type.Describe();
  ASSERT_EQ(by_type.body["events"].size(), 1u) << by_type.raw;
  Reply by_actor = Get(*client_, "/api/v1/events?actor=alice");
  ASSERT_EQ(by_actor.status, 200) << by_actor.Describe();
  EXPECT_EQ(by_actor.body["events"].size(), 2u) << by_actor.raw;
  Reply by_subject = Get(*client_, "/api/v1/events?kind=model_version&id=credit-7&after=2");
  ASSERT_EQ(by_subject.status, 200) << by_subject.Describe();
  EXPECT_EQ(by_subject.body["events"].size(), 2u) << by_subject.raw;

  Reply listed = Get(*client_, std::string(kEntities) + "?state=Archived");
  ASSERT_EQ(listed.status, 200) << listed.Describe();
  ASSERT_EQ(listed.body["items"].size(), 1u) << listed.raw;

  Reply verify = Post(*client_, "/api/v1/audit/verify", Json::object());
  ASSERT_EQ(verify.status, 200) << verify.Describe();
  EXPECT_EQ(verify.body.value("ok", false), true) << verify.raw;
  EXPECT_EQ(verify.body.value("checked", int64_t{0}), 4) << verify.raw;
}

TEST_F(HappyPath, RequestIdIsEchoedAndRecordedAsCorrelationId) {
  Reply r = Post(*client_, kEntities, {{"id", "rid-1"}}, {{"X-Request-Id", "api-test.req-42"}});
  ASSERT_EQ(r.status, 201) << r.Describe();
  EXPECT_EQ(r.headers["x-request-id"], "api-test.req-42");

  // Without one (or with an unusable one) the server makes one up, echoes
  // it and records the same id.
  Reply gen = Post(*client_, kEntities, {{"id", "rid-2"}});
  ASSERT_EQ(gen.status, 201) << gen.Describe();
  std::string generated = gen.headers["x-request-id"];
  EXPECT_FALSE(generated.empty());
  Reply bad = Post(*client_, kEntities, {{"id", "rid-3"}}, {{"X-Request-Id", "has space/slash"}});
  ASSERT_EQ(bad.status, 201) << bad.Describe();
  std::string replaced = bad.headers["x-request-id"];
  EXPECT_NE(replaced, "has space/slash");
  EXPECT_FALSE(replaced.empty());

  // Errors carry it as well.
  Reply err = Post(*client_, kEntities, {{"id", "rid-1"}}, {{"X-Request-Id", "api-test.dup"}});
  EXPECT_EQ(err.status, 409);
  EXPECT_EQ(err.headers["x-request-id"], "api-test.dup");
  EXPECT_EQ(err.body.value("request_id", ""), "api-test.dup") << err.raw;

  std::vector<Json> events = AllEvents(*client_);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].value("correlation_id", ""), "api-test.req-42");
  EXPECT_EQ(events[1].value("correlation_id", ""), generated);
  EXPECT_EQ(events[2].value("correlation_id", ""), replaced);
  // No X-Kervan-Actor: the placeholder actor is recorded.
  EXPECT_EQ(events[0].value("actor", ""), "anonymous");
}

TEST_F(HappyPath, LongPollReturnsPromptlyWhenAnotherClientAppends) {
  Create("lp-0");
  int64_t head = HeadSeq(*client_);
  ASSERT_EQ(head, 1);

  auto start = steady_clock::now();
  auto poll = std::async(std::launch::async, [&] {
    return Get(*client_, "/api/v1/events?wait=5&after=" + std::to_string(head));
  });
  std::this_thread::sleep_for(milliseconds(300));
  http::Client other(server_.url());
  ASSERT_EQ(Post(other, kEntities, {{"id", "lp-1"}}).status, 201);
  Reply r = poll.get();
  auto took = steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_EQ(r.body["events"].size(), 1u) << r.raw;
  EXPECT_EQ(r.body["events"][0]["subject"].value("id", ""), "lp-1");
  EXPECT_EQ(r.body.value("next_after", int64_t{0}), 2);
  EXPECT_LT(took, milliseconds(2500)) << "long-poll did not wake up on the append";

  // A filtered long-poll ignores other subjects and times out empty.
  start = steady_clock::now();
  auto filtered = std::async(std::launch::async, [&] {
    return Get(*client_, "/api/v1/events?wait=1&id=nobody&after=" + std::to_string(head));
  });
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_EQ(Post(other, kEntities, {{"id", "lp-2"}}).status, 201);
  Reply empty = filtered.get();
  took = steady_clock::now() - start;
  ASSERT_EQ(empty.status, 200) << empty.Describe();
  EXPECT_TRUE(empty.body["events"].empty()) << empty.raw;
  EXPECT_GE(took, milliseconds(900));
  EXPECT_LT(took, milliseconds(4000));
}

// Reads the SSE stream from `headers`/`query` until `count` events arrived.
std::vector<SseEvent> ReadEvents(const http::Client& client, const std::string& target,
                                 const http::HeaderList& headers, size_t count,
                                 const std::function<void(size_t)>& on_event = {}) {
  SseParser parser;
  std::vector<SseEvent> got;
  auto status = client.ReadStream(
      target, headers,
      [&](std::string_view chunk) {
        for (auto& e : parser.Feed(chunk)) {
          got.push_back(std::move(e));
          if (on_event)
            on_event(got.size());
        }
        return got.size() < count;
      },
      std::chrono::seconds(10));
  EXPECT_TRUE(status) << status.error().ToString();
  return got;
}

TEST_F(HappyPath, SseStreamDeliversInOrderAndResumesFromLastEventId) {
  for (int i = 1; i <= 5; ++i)
    Create("sse-" + std::to_string(i));

  // Catch up on 5 stored events, then receive 3 more appended live.
  std::thread writer;
  std::vector<SseEvent> got =
      ReadEvents(*client_, "/api/v1/events/stream?after=0", {}, 8, [&](size_t n) {
        if (n == 5) {
          writer = std::thread([url = server_.url()] {
            http::Client c(url);
            for (int i = 6; i <= 8; ++i) {
              Reply r = Post(c, kEntities, {{"id", "sse-" + std::to_string(i)}});
              EXPECT_EQ(r.status, 201) << r.Describe();
            }
          });
        }
      });
  if (writer.joinable())
    writer.join();
  ASSERT_EQ(got.size(), 8u);
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].id, std::to_string(i + 1));
    EXPECT_EQ(got[i].event, "model_version.created");
    Json data = Json::parse(got[i].data, nullptr, false);
    ASSERT_TRUE(data.is_object()) << got[i].data;
    EXPECT_EQ(data.value("seq", int64_t{0}), static_cast<int64_t>(i + 1));
    EXPECT_EQ(data["subject"].value("id", ""), "sse-" + std::to_string(i + 1));
  }

  // A reconnecting client resumes after the last id it saw; the header wins
  // over ?after.
  std::vector<SseEvent> resumed =
      ReadEvents(*client_, "/api/v1/events/stream?after=1", {{"Last-Event-ID", "5"}}, 3);
  ASSERT_EQ(resumed.size(), 3u);
  EXPECT_EQ(resumed[0].id, "6");
  EXPECT_EQ(resumed[1].id, "7");
  EXPECT_EQ(resumed[2].id, "8");

  // Filters apply to the stream too.
  std::vector<SseEvent> one = ReadEvents(*client_, "/api/v1/events/stream?id=sse-7", {}, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].id, "7");

  // A bad Last-Event-ID is an error, not a stream from 0.
  auto bad = client_->ReadStream(
      "/api/v1/events/stream", {{"Last-Event-ID", "abc"}}, [](std::string_view) { return true; },
      std::chrono::seconds(5));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, core::ErrorCode::kInvalidArgument) << bad.error().ToString();
}

TEST_F(HappyPath, GracefulRestartKeepsState) {
  Create("keep-1");
  ASSERT_EQ(Post(*client_, Transitions("keep-1"), {{"transition", "validate"}}).status, 200);
  int status = -1;
  ASSERT_TRUE(server_.Stop(/*kill=*/false, std::chrono::seconds(15), &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << ServerProcess::DescribeStatus(status) << "\n"
      << server_.StderrTail();

  ASSERT_TRUE(server_.Start());
  http::Client c = server_.client();
  Reply got = Get(c, std::string(kEntities) + "/keep-1");
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.body.value("state", ""), "Validating");
  EXPECT_EQ(HeadSeq(c), 2);
  // The chain continues across the restart.
  ASSERT_EQ(Post(c, Transitions("keep-1"), {{"transition", "fail"}}).status, 200);
  Reply verify = Post(c, "/api/v1/audit/verify", Json::object());
  EXPECT_EQ(verify.body.value("ok", false), true) << verify.raw;
  EXPECT_EQ(verify.body.value("checked", int64_t{0}), 3) << verify.raw;
}

}  // namespace
}  // namespace kervan::apitest
