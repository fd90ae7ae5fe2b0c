// Webhooks through the real server process: a subscription made over HTTP
// delivers registry events, signed, to a real loopback receiver; a delivery
// the receiver refuses is retried, stays pending across a server restart, and
// is delivered after it; attempts are visible through the API.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../webhooks/webhook_fixture.h"
#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

using webhooks::testing::Receiver;
using webhooks::testing::WaitFor;

int64_t NowSeconds() {
  return core::NowMicros() / 1000000;
}

TEST(WebhooksApi, SignedDeliveryRetriesAndSurvivesARestart) {
  ServerProcess server(
      {.extra_args = {"--set", "webhooks.backoff_base_ms=100", "--set", "webhooks.backoff_max_s=1",
                      "--set", "webhooks.max_attempts=50"}});
  ASSERT_TRUE(server.Start());
  http::Client admin = server.client();
  Receiver receiver;

  Reply sub = Post(admin, "/api/v1/webhooks",
                   {{"url", receiver.Url("registry")},
                    {"event_types", {"registered_model.*"}},
                    {"description", "api test"}});
  ASSERT_EQ(sub.status, 201) << sub.Describe();
  const std::string id = sub.body.value("id", "");
  const std::string secret = sub.body.value("secret", "");
  ASSERT_FALSE(secret.empty()) << "the secret is shown once, at creation";
  Reply got = Get(admin, "/api/v1/webhooks/" + id);
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.raw.find(secret), std::string::npos) << "the secret must never be read back";

  // 1. Delivered once, signed with the subscription's secret.
  ASSERT_EQ(Post(admin, "/api/v1/models", {{"name", "hooked"}}).status, 201);
  ASSERT_TRUE(WaitFor([&] { return receiver.Got("registry").size() >= 1; }));
  auto first = receiver.Got("registry")[0];
  EXPECT_EQ(first.event_header, "registered_model.created");
  EXPECT_TRUE(webhooks::VerifySignature(secret, first.signature_header, first.body, NowSeconds()));
  EXPECT_FALSE(
      webhooks::VerifySignature("wrong", first.signature_header, first.body, NowSeconds()));
  Json body = Json::parse(first.body);
  EXPECT_EQ(body["subject"].value("id", ""), "hooked");
  EXPECT_EQ(body.value("actor", ""), "user:admin");

  // 2. The receiver refuses; the server retries, then restarts with the
  //    delivery still pending; after the restart it is delivered.
  receiver.Script("registry", std::vector<int>(1000, 503));
  ASSERT_EQ(Post(admin, "/api/v1/models", {{"name", "hooked-2"}}).status, 201);
  ASSERT_TRUE(WaitFor([&] { return receiver.Got("registry").size() >= 3; })) << "no retries seen";
  ASSERT_TRUE(server.Stop(/*kill=*/false));
  receiver.Script("registry", {});  // answers 200 from now on
  size_t before_restart = receiver.Got("registry").size();
  ASSERT_TRUE(server.Start());
  http::Client again = server.client();
  ASSERT_TRUE(WaitFor([&] {
    Reply d = Get(again, "/api/v1/webhooks/" + id + "/deliveries?status=delivered");
    return d.status == 200 && d.body["items"].size() == 2;
  })) << "the pending delivery was not delivered after the restart";
  EXPECT_GT(receiver.Got("registry").size(), before_restart);
  auto last = receiver.Got("registry").back();
  EXPECT_EQ(last.answered, 200);
  EXPECT_EQ(Json::parse(last.body)["subject"].value("id", ""), "hooked-2");

  // 3. Attempts are visible: statuses, latency, the final success.
  Reply deliveries = Get(again, "/api/v1/webhooks/" + id + "/deliveries");
  ASSERT_EQ(deliveries.status, 200) << deliveries.Describe();
  std::string second_id;
  for (const auto& d : deliveries.body["items"]) {
    if (d.value("event_type", "") == "registered_model.created" && d.value("attempts", 0) > 1)
      second_id = d.value("id", "");
  }
  ASSERT_FALSE(second_id.empty()) << deliveries.raw;
  Reply detail = Get(again, "/api/v1/webhooks/" + id + "/deliveries/" + second_id);
  ASSERT_EQ(detail.status, 200) << detail.Describe();
  const Json& attempts = detail.body["attempt_log"];
  ASSERT_GE(attempts.size(), 3u) << detail.raw;
  EXPECT_EQ(attempts[0].value("http_status", 0), 503) << detail.raw;
  EXPECT_EQ(attempts.back().value("http_status", 0), 200) << detail.raw;
  EXPECT_TRUE(attempts[0].contains("latency_ms")) << detail.raw;

  // 4. Only webhook.write may subscribe; a viewer gets 403.
  ASSERT_EQ(Post(again, "/api/v1/principals", {{"name", "user:v"}}).status, 201);
  ASSERT_EQ(Post(again, "/api/v1/principals/user:v/roles", {{"role", "viewer"}}).status, 201);
  Reply token = Post(again, "/api/v1/tokens", {{"principal", "user:v"}});
  Reply denied = Post(server.client_with_token(token.body.value("token", "")), "/api/v1/webhooks",
                      {{"url", receiver.Url("x")}, {"event_types", {"*"}}});
  EXPECT_TRUE(IsError(denied, 403, "permission_denied"));
}

}  // namespace
}  // namespace kervan::apitest
