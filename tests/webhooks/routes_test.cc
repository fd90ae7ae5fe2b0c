// The /api/v1/webhooks routes through a real in-process HTTP server and
// http::Client, over SQLite and PostgreSQL.
#include "webhook_fixture.h"

namespace kervan::webhooks::testing {
namespace {

class WebhooksRoutesTest : public WebhooksTest {
 protected:
  void SetUp() override {
    WebhooksTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    // Real identities: alice is a global engineer, bob an engineer in "risk"
    // only (project scoping of subscriptions).
    auto a = auth::Auth::Open(*db_, *log_);
    ASSERT_TRUE(a) << a.error().ToString();
    auth_ = std::move(a).value();
    store::CommandContext admin{.actor = "user:admin"};
    ASSERT_TRUE(auth_->CreateProject("risk", "", admin));
    for (const char* who : {"user:alice", "user:bob"})
      ASSERT_TRUE(auth_->CreatePrincipal({who, ""}, admin));
    ASSERT_TRUE(auth_->BindRole("user:alice", {"engineer", ""}, "", admin));
    ASSERT_TRUE(auth_->BindRole("user:bob", {"engineer", "risk"}, "", admin));
    base_seq_ = log_->head_seq();  // the identity set-up's events
    http::Router router;
    auto st = RegisterRoutes(router, *webhooks_, *auth_);
    ASSERT_TRUE(st) << st.error().ToString();
    for (const auto& r : router.Routes()) {
      EXPECT_TRUE(r.permission == "webhook.read" || r.permission == "webhook.write")
          << r.method << " " << r.pattern << ": " << r.permission;
    }
    http::ServerOptions options;
    options.port = 0;
    options.io_threads = 1;
    options.worker_threads = 2;
    options.access_log = false;
    // Stands in for token authentication: the caller is user:<X-Test-User>
    // (alice by default); every webhook route must ask for a webhook
    // permission, checked like the real guard does.
    options.access_guard = [this](http::Request& req, const std::string& permission,
                                  bool public_route) -> Status {
      if (public_route || (permission != "webhook.read" && permission != "webhook.write"))
        return core::PermissionDenied("unexpected permission \"" + permission + "\"");
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
    auth_.reset();
    WebhooksTest::TearDown();
  }

  struct Reply {
    int status = 0;
    core::Json json;
    std::string body;
  };
  Reply Call(const std::string& method, const std::string& target, const std::string& body = {},
             const std::string& user = "alice") {
    auto r =
        client_->Send(method, target, body, {{"X-Test-User", user}, {"X-Request-Id", "req-42"}});
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r)
      return {};
    return {r->status, core::Json::parse(r->body, nullptr, false), r->body};
  }

  size_t SubscriptionCount() {
    auto list = webhooks_->List({.limit = 1000});
    EXPECT_TRUE(list);
    return list ? list->size() : 0;
  }

  std::unique_ptr<auth::Auth> auth_;
  int64_t base_seq_ = 0;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Client> client_;
};

TEST_P(WebhooksRoutesTest, ProjectScopedEngineersManageOnlyTheirProjectsSubscriptions) {
  // bob (engineer in risk) may subscribe to risk's events only.
  Reply risk =
      Call("POST", "/api/v1/webhooks",
           R"({"url":"http://127.0.0.1:9/x","event_types":["*"],"project":"risk"})", "bob");
  ASSERT_EQ(risk.status, 201) << risk.body;
  Reply all = Call("POST", "/api/v1/webhooks",
                   R"({"url":"http://127.0.0.1:9/x","event_types":["*"]})", "bob");
  EXPECT_EQ(all.status, 403) << all.body;
  Reply fraud =
      Call("POST", "/api/v1/webhooks",
           R"({"url":"http://127.0.0.1:9/x","event_types":["*"],"project":"fraud"})", "bob");
  EXPECT_EQ(fraud.status, 403) << fraud.body;
  EXPECT_EQ(SubscriptionCount(), 1u);
  // alice's global subscription is invisible and untouchable for bob.
  Reply global =
      Call("POST", "/api/v1/webhooks", R"({"url":"http://127.0.0.1:9/y","event_types":["*"]})");
  ASSERT_EQ(global.status, 201) << global.body;
  std::string global_id = global.json.value("id", "");
  Reply bobs_list = Call("GET", "/api/v1/webhooks", "", "bob");
  ASSERT_EQ(bobs_list.status, 200);
  ASSERT_EQ(bobs_list.json["items"].size(), 1u) << bobs_list.body;
  EXPECT_EQ(bobs_list.json["items"][0]["project"], "risk");
  EXPECT_EQ(Call("GET", "/api/v1/webhooks/" + global_id, "", "bob").status, 403);
  EXPECT_EQ(Call("DELETE", "/api/v1/webhooks/" + global_id, "", "bob").status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/webhooks/" + global_id + "/deliveries", "", "bob").status, 403);
  EXPECT_EQ(SubscriptionCount(), 2u);
  Reply alices_list = Call("GET", "/api/v1/webhooks");
  EXPECT_EQ(alices_list.json["items"].size(), 2u) << alices_list.body;
}

TEST_P(WebhooksRoutesTest, CreateShowsTheSecretOnceAndNeverAgain) {
  Reply created = Call("POST", "/api/v1/webhooks",
                       R"({"url":"http://127.0.0.1:9/x","event_types":["job.*"],)"
                       R"("project":"risk","description":"pager"})");
  ASSERT_EQ(created.status, 201) << created.body;
  std::string secret = created.json.value("secret", "");
  ASSERT_GE(secret.size(), 32u);
  std::string id = created.json.value("id", "");
  EXPECT_EQ(created.json["url"], "http://127.0.0.1:9/x");
  EXPECT_EQ(created.json["event_types"], core::Json::array({"job.*"}));
  EXPECT_EQ(created.json["project"], "risk");
  EXPECT_EQ(created.json["created_by"], "user:alice");
  EXPECT_EQ(created.json["active"], true);

  Reply got = Call("GET", "/api/v1/webhooks/" + id);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_FALSE(got.json.contains("secret"));
  EXPECT_EQ(got.body.find(secret), std::string::npos);
  EXPECT_EQ(got.json["description"], "pager");

  Reply list = Call("GET", "/api/v1/webhooks");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.json["items"].size(), 1u);
  EXPECT_EQ(list.body.find(secret), std::string::npos);

  // Nor is it in the event log.
  auto events = log_->Read({.after_seq = base_seq_});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].correlation_id, "req-42");
  EXPECT_EQ((*events)[0].ToJson().dump().find(secret), std::string::npos);
}

TEST_P(WebhooksRoutesTest, BadInputIs400NamingTheFieldAndChangesNothing) {
  struct Case {
    std::string method, target, body, field;
  };
  const std::vector<Case> cases = {
      {"POST", "/api/v1/webhooks", R"({"url":"ftp://x/","event_types":["*"]})", "url"},
      {"POST", "/api/v1/webhooks", R"({"url":"https://x/","event_types":["*"]})", "url"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x:99999/","event_types":["*"]})", "url"},
      {"POST", "/api/v1/webhooks", R"({"event_types":["*"]})", "url"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/","event_types":[]})", "event_types"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/"})", "event_types"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/","event_types":"*"})", "event_types"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/","event_types":[7]})", "event_types[0]"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/","event_types":["*","a..b"]})",
       "event_types[1]"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/","event_types":["*"],"colour":"red"})",
       "colour"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/","event_types":["*"],"secret":""})",
       "secret"},
      {"POST", "/api/v1/webhooks", R"({"url":"http://x/","event_types":["*"],"active":"yes"})",
       "active"},
      {"POST", "/api/v1/webhooks", R"([1,2])", "body"},
      {"POST", "/api/v1/webhooks", R"({"url":)", "body"},
      {"POST", "/api/v1/webhooks?dry_run=1", R"({"url":"http://x/","event_types":["*"]})",
       "dry_run"},
      {"GET", "/api/v1/webhooks?limt=5", "", "limt"},
      {"GET", "/api/v1/webhooks?limit=0", "", "limit"},
  };
  for (const Case& c : cases) {
    Reply r = Call(c.method, c.target, c.body);
    EXPECT_EQ(r.status, 400) << c.target << " " << c.body << " -> " << r.body;
    EXPECT_EQ(r.json["error"].value("field", ""), c.field) << c.body << " -> " << r.body;
    EXPECT_EQ(r.json["error"].value("code", ""), "invalid_argument");
  }
  EXPECT_EQ(SubscriptionCount(), 0u);
  EXPECT_EQ(log_->head_seq(), base_seq_);
}

TEST_P(WebhooksRoutesTest, UnknownIdsAre404) {
  Reply created =
      Call("POST", "/api/v1/webhooks", R"({"url":"http://127.0.0.1:9/","event_types":["*"]})");
  ASSERT_EQ(created.status, 201);
  std::string id = created.json["id"];
  for (const auto& [method, target] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/api/v1/webhooks/nope"},
           {"DELETE", "/api/v1/webhooks/nope"},
           {"POST", "/api/v1/webhooks/nope/pause"},
           {"POST", "/api/v1/webhooks/nope/ping"},
           {"GET", "/api/v1/webhooks/nope/deliveries"},
           {"GET", "/api/v1/webhooks/nope/deliveries/d1"},
           {"GET", "/api/v1/webhooks/" + id + "/deliveries/d1"},
       }) {
    Reply r = Call(method, target);
    EXPECT_EQ(r.status, 404) << method << " " << target << " -> " << r.body;
    EXPECT_EQ(r.json["error"].value("code", ""), "not_found");
  }
  EXPECT_EQ(SubscriptionCount(), 1u);
}

TEST_P(WebhooksRoutesTest, DeliveriesAndAttemptsAreVisible) {
  Receiver rx;
  rx.Script("api", {500, 200});
  Reply created = Call("POST", "/api/v1/webhooks",
                       R"({"url":")" + rx.Url("api") + R"(","event_types":["job.*"]})");
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = created.json["id"];

  Reply ping = Call("POST", "/api/v1/webhooks/" + id + "/ping");
  ASSERT_EQ(ping.status, 202) << ping.body;
  EXPECT_EQ(ping.json["event"]["type"], "webhook.pinged");
  EXPECT_EQ(ping.json["event"]["actor"], "user:alice");

  Reply delivered;
  ASSERT_TRUE(WaitFor([&] {
    delivered = Call("GET", "/api/v1/webhooks/" + id + "/deliveries?status=delivered");
    return delivered.status == 200 && delivered.json["items"].size() == 1;
  })) << delivered.body;
  const core::Json& item = delivered.json["items"][0];
  EXPECT_EQ(item["status"], "delivered");
  EXPECT_EQ(item["attempts"], 2);
  EXPECT_EQ(item["event_type"], "webhook.pinged");
  EXPECT_FALSE(item.contains("attempt_log"));
  EXPECT_EQ(
      Call("GET", "/api/v1/webhooks/" + id + "/deliveries?status=failed").json["items"].size(), 0u);

  Reply one =
      Call("GET", "/api/v1/webhooks/" + id + "/deliveries/" + item["id"].get<std::string>());
  ASSERT_EQ(one.status, 200) << one.body;
  ASSERT_EQ(one.json["attempt_log"].size(), 2u);
  EXPECT_EQ(one.json["attempt_log"][0]["http_status"], 500);
  EXPECT_EQ(one.json["attempt_log"][0]["attempt"], 1);
  EXPECT_TRUE(one.json["attempt_log"][0]["latency_ms"].is_number());
  EXPECT_NE(one.json["attempt_log"][0]["error"].get<std::string>().find("500"), std::string::npos);
  EXPECT_EQ(one.json["attempt_log"][1]["http_status"], 200);

  Reply bad = Call("GET", "/api/v1/webhooks/" + id + "/deliveries?status=dead");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json["error"]["field"], "status");
  EXPECT_EQ(Call("GET", "/api/v1/webhooks/" + id + "/deliveries?colour=1").status, 400);
}

TEST_P(WebhooksRoutesTest, PauseResumeDeleteAndPagination) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Reply r = Call("POST", "/api/v1/webhooks",
                   R"({"url":"http://127.0.0.1:9/","event_types":["*"],"active":false})");
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json["active"], false);
    ids.push_back(r.json["id"]);
  }
  Reply page1 = Call("GET", "/api/v1/webhooks?limit=2");
  ASSERT_EQ(page1.status, 200);
  ASSERT_EQ(page1.json["items"].size(), 2u);
  EXPECT_EQ(page1.json["items"][0]["id"], ids[0]);
  std::string next = page1.json["next_after"];
  Reply page2 = Call("GET", "/api/v1/webhooks?limit=2&after=" + next);
  ASSERT_EQ(page2.json["items"].size(), 1u);
  EXPECT_EQ(page2.json["items"][0]["id"], ids[2]);
  EXPECT_FALSE(page2.json.contains("next_after"));

  Reply resumed = Call("POST", "/api/v1/webhooks/" + ids[1] + "/resume");
  ASSERT_EQ(resumed.status, 200) << resumed.body;
  EXPECT_EQ(resumed.json["active"], true);
  EXPECT_EQ(Call("POST", "/api/v1/webhooks/" + ids[0] + "/ping").status, 409);

  Reply deleted = Call("DELETE", "/api/v1/webhooks/" + ids[1]);
  ASSERT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(deleted.json["deleted"], true);
  EXPECT_EQ(Call("GET", "/api/v1/webhooks/" + ids[1]).status, 404);
  EXPECT_EQ(SubscriptionCount(), 2u);
}

KERVAN_INSTANTIATE_BACKENDS(WebhooksRoutesTest);

}  // namespace
}  // namespace kervan::webhooks::testing
