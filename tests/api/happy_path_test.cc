// The happy path through real HTTP against a real server process: probes,
// request ids and actors in the event log, long-poll, the SSE stream (order
// and resume), and a restart. Appends are registered models (one event
// each); the registry's own lifecycle is in registry_api_test.cc.
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

constexpr char kModels[] = "/api/v1/models";

class HappyPath : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    client_.emplace(server_.client());
    base_ = HeadSeq(*client_);  // the first start's bootstrap events
    ASSERT_GT(base_, 0);
  }

  // Registers model `name` (one event); false on failure.
  bool Create(const std::string& name, http::HeaderList headers = {}) {
    Reply r = Post(*client_, kModels, {{"name", name}}, std::move(headers));
    EXPECT_EQ(r.status, 201) << r.Describe();
    return r.status == 201;
  }

  ServerProcess server_;
  std::optional<http::Client> client_;
  int64_t base_ = 0;
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

TEST_F(HappyPath, RequestIdIsEchoedAndRecordedAsCorrelationId) {
  Reply r = Post(*client_, kModels, {{"name", "rid-1"}}, {{"X-Request-Id", "api-test.req-42"}});
  ASSERT_EQ(r.status, 201) << r.Describe();
  EXPECT_EQ(r.headers["x-request-id"], "api-test.req-42");

  // Without one (or with an unusable one) the server makes one up, echoes
  // it and records the same id.
  Reply gen = Post(*client_, kModels, {{"name", "rid-2"}});
  ASSERT_EQ(gen.status, 201) << gen.Describe();
  std::string generated = gen.headers["x-request-id"];
  EXPECT_FALSE(generated.empty());
  Reply bad = Post(*client_, kModels, {{"name", "rid-3"}}, {{"X-Request-Id", "has space/slash"}});
  ASSERT_EQ(bad.status, 201) << bad.Describe();
  std::string replaced = bad.headers["x-request-id"];
  EXPECT_NE(replaced, "has space/slash");
  EXPECT_FALSE(replaced.empty());

  // Errors carry it as well.
  Reply err = Post(*client_, kModels, {{"name", "rid-1"}}, {{"X-Request-Id", "api-test.dup"}});
  EXPECT_EQ(err.status, 409);
  EXPECT_EQ(err.headers["x-request-id"], "api-test.dup");
  EXPECT_EQ(err.body.value("request_id", ""), "api-test.dup") << err.raw;

  std::vector<Json> events = AllEvents(*client_);
  ASSERT_EQ(events.size(), static_cast<size_t>(base_ + 3));
  EXPECT_EQ(events[base_].value("correlation_id", ""), "api-test.req-42");
  EXPECT_EQ(events[base_ + 1].value("correlation_id", ""), generated);
  EXPECT_EQ(events[base_ + 2].value("correlation_id", ""), replaced);
  // The actor is the token's principal; a client cannot choose it.
  EXPECT_EQ(events[base_].value("actor", ""), "user:admin");
  EXPECT_EQ(events[base_].value("project", ""), "default");
  Reply spoof =
      Post(*client_, kModels, {{"name", "rid-4"}}, {{"X-Kervan-Actor", "system:registry"}});
  ASSERT_EQ(spoof.status, 201) << spoof.Describe();
  EXPECT_EQ(AllEvents(*client_).back().value("actor", ""), "user:admin");
}

TEST_F(HappyPath, LongPollReturnsPromptlyWhenAnotherClientAppends) {
  Create("lp-0");
  int64_t head = HeadSeq(*client_);
  ASSERT_EQ(head, base_ + 1);

  auto start = steady_clock::now();
  auto poll = std::async(std::launch::async, [&] {
    return Get(*client_, "/api/v1/events?wait=5&after=" + std::to_string(head));
  });
  std::this_thread::sleep_for(milliseconds(300));
  http::Client other = server_.client();
  ASSERT_EQ(Post(other, kModels, {{"name", "lp-1"}}).status, 201);
  Reply r = poll.get();
  auto took = steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_EQ(r.body["events"].size(), 1u) << r.raw;
  EXPECT_EQ(r.body["events"][0]["subject"].value("id", ""), "lp-1");
  EXPECT_EQ(r.body.value("next_after", int64_t{0}), base_ + 2);
  EXPECT_LT(took, milliseconds(2500)) << "long-poll did not wake up on the append";

  // A filtered long-poll ignores other subjects and times out empty.
  start = steady_clock::now();
  auto filtered = std::async(std::launch::async, [&] {
    return Get(*client_, "/api/v1/events?wait=1&id=nobody&after=" + std::to_string(head));
  });
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_EQ(Post(other, kModels, {{"name", "lp-2"}}).status, 201);
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
  std::vector<SseEvent> got = ReadEvents(
      *client_, "/api/v1/events/stream?after=" + std::to_string(base_), {}, 8, [&](size_t n) {
        if (n == 5) {
          writer = std::thread([c = server_.client()] {
            for (int i = 6; i <= 8; ++i) {
              Reply r = Post(c, kModels, {{"name", "sse-" + std::to_string(i)}});
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
    EXPECT_EQ(got[i].id, std::to_string(base_ + i + 1));
    EXPECT_EQ(got[i].event, "registered_model.created");
    Json data = Json::parse(got[i].data, nullptr, false);
    ASSERT_TRUE(data.is_object()) << got[i].data;
    EXPECT_EQ(data.value("seq", int64_t{0}), static_cast<int64_t>(base_ + i + 1));
    EXPECT_EQ(data["subject"].value("id", ""), "sse-" + std::to_string(i + 1));
  }

  // A reconnecting client resumes after the last id it saw; the header wins
  // over ?after.
  std::vector<SseEvent> resumed = ReadEvents(*client_, "/api/v1/events/stream?after=1",
                                             {{"Last-Event-ID", std::to_string(base_ + 5)}}, 3);
  ASSERT_EQ(resumed.size(), 3u);
  EXPECT_EQ(resumed[0].id, std::to_string(base_ + 6));
  EXPECT_EQ(resumed[1].id, std::to_string(base_ + 7));
  EXPECT_EQ(resumed[2].id, std::to_string(base_ + 8));

  // Filters apply to the stream too.
  std::vector<SseEvent> one = ReadEvents(*client_, "/api/v1/events/stream?id=sse-7", {}, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].id, std::to_string(base_ + 7));

  // The stream needs a token like every other route.
  auto anonymous = server_.anonymous_client().ReadStream(
      "/api/v1/events/stream", {}, [](std::string_view) { return true; }, std::chrono::seconds(5));
  ASSERT_FALSE(anonymous);
  EXPECT_EQ(anonymous.error().code, core::ErrorCode::kUnauthenticated);

  // A bad Last-Event-ID is an error, not a stream from 0.
  auto bad = client_->ReadStream(
      "/api/v1/events/stream", {{"Last-Event-ID", "abc"}}, [](std::string_view) { return true; },
      std::chrono::seconds(5));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, core::ErrorCode::kInvalidArgument) << bad.error().ToString();
}

TEST_F(HappyPath, GracefulRestartKeepsStateAndTokens) {
  Create("keep-1");
  Reply v1 = Post(*client_, std::string(kModels) + "/keep-1/versions", {{"metrics", {{"auc", 1}}}});
  ASSERT_EQ(v1.status, 201) << v1.Describe();
  int64_t head = HeadSeq(*client_);
  int status = -1;
  ASSERT_TRUE(server_.Stop(/*kill=*/false, std::chrono::seconds(15), &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << ServerProcess::DescribeStatus(status) << "\n"
      << server_.StderrTail();

  ASSERT_TRUE(server_.Start());
  // Same token (no second bootstrap), same state.
  http::Client c = server_.client();
  Reply got = Get(c, std::string(kModels) + "/keep-1/versions/1");
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.body.value("state", ""), "DeploymentReady");
  EXPECT_EQ(HeadSeq(c), head);
  // The chain continues across the restart.
  Reply v2 = Post(c, std::string(kModels) + "/keep-1/versions", {{"metrics", {{"auc", 1}}}});
  ASSERT_EQ(v2.status, 201) << v2.Describe();
  EXPECT_EQ(v2.body.value("version", 0), 2);
  Reply verify = Post(c, "/api/v1/audit/verify", Json::object());
  EXPECT_EQ(verify.body.value("ok", false), true) << verify.raw;
  EXPECT_EQ(verify.body.value("checked", int64_t{0}), head + 3) << verify.raw;
}

}  // namespace
}  // namespace kervan::apitest
