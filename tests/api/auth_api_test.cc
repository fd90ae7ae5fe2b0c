// Identity and access through real HTTP: the RBAC matrix (every route x every
// role, generated from the server's own route table), token failures (401),
// insufficient roles (403 naming the permission), the bootstrap token file,
// and that no denied request changes state.
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "api_util.h"
#include "auth/auth.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

class AuthApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    admin_.emplace(server_.client());
  }

  // Creates `name`, binds `role` globally, returns a fresh token.
  std::string TokenFor(const std::string& name, const std::string& role,
                       std::optional<int> expires_in_days = std::nullopt) {
    Reply p = Post(*admin_, "/api/v1/principals", {{"name", name}});
    EXPECT_TRUE(p.status == 201 || p.status == 409) << p.Describe();
    if (!role.empty() && p.status == 201) {
      Reply b = Post(*admin_, "/api/v1/principals/" + name + "/roles", {{"role", role}});
      EXPECT_EQ(b.status, 201) << b.Describe();
    }
    Json body = {{"principal", name}, {"name", "test"}};
    if (expires_in_days)
      body["expires_in_days"] = *expires_in_days;
    Reply t = Post(*admin_, "/api/v1/tokens", body);
    EXPECT_EQ(t.status, 201) << t.Describe();
    return t.body.value("token", "");
  }

  ServerProcess server_;
  std::optional<http::Client> admin_;
};

// Fills {param} segments with values that exist nowhere: the guard decides
// before any handler looks at them.
std::string Concrete(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '{') {
      size_t end = pattern.find('}', i);
      std::string name = pattern.substr(i + 1, end - i - 1);
      out += name == "version" ? "1"
             : name == "name" && pattern.find("principals") != std::string::npos
                 ? "user:matrix-nobody"
                 : "matrix-" + name;
      i = end;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

TEST_F(AuthApi, RbacMatrixCoversEveryRouteAndRole) {
  Reply routes = Get(*admin_, "/api/v1/routes");
  ASSERT_EQ(routes.status, 200) << routes.Describe();
  ASSERT_GT(routes.body["items"].size(), 30u) << routes.raw;

  std::map<std::string, http::Client> clients;
  for (const auto& role : auth::Roles())
    clients.emplace(role.name,
                    server_.client_with_token(TokenFor("user:as-" + role.name, role.name)));
  // A principal without any role binding is denied everything non-public.
  clients.emplace("none", server_.client_with_token(TokenFor("user:no-role", "")));

  int64_t head = HeadSeq(*admin_);
  int checked = 0, denied = 0;
  std::set<std::string> public_routes;
  for (const auto& r : routes.body["items"]) {
    const std::string method = r.value("method", ""), pattern = r.value("pattern", "");
    const std::string permission = r.value("permission", "");
    SCOPED_TRACE(method + " " + pattern + " (" + permission + ")");
    if (r.value("public", false)) {
      public_routes.insert(pattern);
      EXPECT_TRUE(permission.empty());
      continue;
    }
    ASSERT_TRUE(auth::IsKnownPermission(permission)) << "route declares an unknown permission";
    // ?matrix=1 is an unknown query parameter: a route that lets the caller
    // through answers 400 (or 404) without acting, and streams end at once.
    std::string target = Concrete(pattern) + "?matrix=1";
    // The MLflow API answers refusals in MLflow's error form.
    const bool mlflow_route = pattern.find("/mlflow/") != std::string::npos;
    for (const auto& [role_name, client] : clients) {
      SCOPED_TRACE("role " + role_name);
      const auth::RoleInfo* role = auth::FindRole(role_name);
      const bool allowed = role != nullptr && role->permissions.contains(permission);
      // The MLflow API ignores unknown fields and query parameters, as
      // MLflow does; a body not declared as JSON is refused before it acts.
      http::HeaderList headers;
      if (mlflow_route)
        headers.emplace_back("Content-Type", "text/plain");
      Reply reply = Call(client, method, target, method == "GET" || method == "DELETE" ? "" : "{}",
                         headers, std::chrono::seconds(10));
      ASSERT_NE(reply.status, 0) << reply.Describe();
      EXPECT_NE(reply.status, 401) << reply.Describe();
      if (allowed) {
        EXPECT_NE(reply.status, 403) << reply.Describe();
      } else if (mlflow_route) {
        // MLflow's error form, the permission named in the message.
        EXPECT_EQ(reply.status, 403) << reply.Describe();
        EXPECT_EQ(reply.body.value("error_code", ""), "PERMISSION_DENIED") << reply.raw;
        EXPECT_NE(reply.body.value("message", "").find(permission), std::string::npos) << reply.raw;
        ++denied;
      } else {
        EXPECT_TRUE(IsError(reply, 403, "permission_denied"));
        EXPECT_EQ(reply.body["error"].value("permission", ""), permission) << reply.raw;
        ++denied;
      }
      ++checked;
    }
    // And nobody gets in without a token.
    Reply anonymous = Call(server_.anonymous_client(), method, target,
                           method == "GET" || method == "DELETE" ? "" : "{}");
    if (mlflow_route) {
      EXPECT_EQ(anonymous.status, 401) << anonymous.Describe();
      EXPECT_EQ(anonymous.body.value("error_code", ""), "UNAUTHENTICATED") << anonymous.raw;
    } else {
      EXPECT_TRUE(IsError(anonymous, 401, "unauthenticated"));
    }
    EXPECT_EQ(anonymous.headers["www-authenticate"], "Bearer realm=\"kervan\"");
  }
  // The probes (Kervan's and the Open Inference Protocol's), and the CI
  // webhook receiver, whose credential is the pipeline's webhook secret
  // (tests/api/pipelines_api_test.cc).
  EXPECT_EQ(public_routes,
            (std::set<std::string>{"/healthz", "/readyz", "/metrics", "/v2/health/live",
                                   "/v2/health/ready", "/api/v1/hooks/pipelines/{name}"}));
  EXPECT_GT(denied, 0);
  RecordProperty("checked", checked);
  std::cout << "[ rbac ] " << routes.body["items"].size() << " routes x " << clients.size()
            << " roles: " << checked << " checks, " << denied << " denied\n";
  // Denied and rejected requests changed nothing.
  EXPECT_EQ(HeadSeq(*admin_), head);
}

TEST_F(AuthApi, BadTokensAre401AndChangeNothing) {
  std::string token = TokenFor("user:tess", "admin");
  int64_t head = HeadSeq(*admin_);
  std::string wrong = token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  const std::vector<std::pair<std::string, http::HeaderList>> cases = {
      {"missing", {}},
      {"malformed scheme", {{"Authorization", "Token " + token}}},
      {"malformed token", {{"Authorization", "Bearer kvn_nope"}}},
      {"wrong secret", {{"Authorization", "Bearer " + wrong}}},
  };
  for (const auto& [what, headers] : cases) {
    SCOPED_TRACE(what);
    Reply r = Post(server_.anonymous_client(), "/api/v1/models", {{"name", "never"}}, headers);
    EXPECT_TRUE(IsError(r, 401, "unauthenticated"));
  }

  // Revoked (expired: ExpiredTokenIs401).
  Reply me = Get(server_.client_with_token(token), "/api/v1/whoami");
  ASSERT_EQ(me.status, 200) << me.Describe();
  EXPECT_EQ(me.body.value("name", ""), "user:tess");
  Reply list = Get(server_.client_with_token(token), "/api/v1/tokens");
  ASSERT_EQ(list.status, 200) << list.Describe();
  ASSERT_EQ(list.body["items"].size(), 1u) << list.raw;
  EXPECT_EQ(list.raw.find(token.substr(token.rfind('_') + 1)), std::string::npos)
      << "a token listing must not contain the secret";
  std::string id = list.body["items"][0].value("id", "");
  Reply revoked = Post(server_.client_with_token(token), "/api/v1/tokens/" + id + "/revoke",
                       {{"reason", "rotating"}});
  ASSERT_EQ(revoked.status, 200) << revoked.Describe();
  EXPECT_EQ(revoked.body.value("state", ""), "revoked");
  int64_t after_revoke = HeadSeq(*admin_);
  EXPECT_EQ(after_revoke, head + 1);
  Reply r = Post(server_.client_with_token(token), "/api/v1/models", {{"name", "never"}});
  EXPECT_TRUE(IsError(r, 401, "unauthenticated"));
  EXPECT_NE(r.body["error"].value("message", "").find("revoked"), std::string::npos) << r.raw;

  // Disabled principal: its other tokens stop working too.
  std::string second = TokenFor("user:tess", "");
  ASSERT_EQ(Get(server_.client_with_token(second), "/api/v1/whoami").status, 200);
  ASSERT_EQ(Post(*admin_, "/api/v1/principals/user:tess/disable", {{"reason", "left"}}).status,
            200);
  EXPECT_TRUE(
      IsError(Get(server_.client_with_token(second), "/api/v1/whoami"), 401, "unauthenticated"));
  EXPECT_EQ(Get(*admin_, "/api/v1/models/never").status, 404);

  // The failures are counted by reason in /metrics (no token needed there).
  Reply metrics = Get(server_.anonymous_client(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* reason : {"missing", "malformed", "invalid", "revoked", "disabled"}) {
    EXPECT_NE(
        metrics.raw.find(std::string("kervan_auth_failures_total{reason=\"") + reason + "\"}"),
        std::string::npos)
        << reason;
  }
}

TEST_F(AuthApi, ExpiredTokenIs401) {
  TokenFor("user:ed", "viewer");
  EXPECT_TRUE(
      IsError(Post(*admin_, "/api/v1/tokens", {{"principal", "user:ed"}, {"expires_in_days", -1}}),
              400, "invalid_argument", "expires_in_days"));
  EXPECT_TRUE(IsError(Post(*admin_, "/api/v1/tokens",
                           {{"principal", "user:ed"}, {"expires_at", "2001-01-01T00:00:00Z"}}),
                      400, "invalid_argument", "expires_at"));
  std::string soon = core::FormatRfc3339(core::NowMicros() + 1500000);
  Reply t = Post(*admin_, "/api/v1/tokens", {{"principal", "user:ed"}, {"expires_at", soon}});
  ASSERT_EQ(t.status, 201) << t.Describe();
  EXPECT_EQ(t.body.value("state", ""), "active");
  http::Client ed = server_.client_with_token(t.body.value("token", ""));
  ASSERT_EQ(Get(ed, "/api/v1/whoami").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(2600));
  Reply expired = Get(ed, "/api/v1/whoami");
  ASSERT_TRUE(IsError(expired, 401, "unauthenticated"));
  EXPECT_NE(expired.body["error"].value("message", "").find("expired"), std::string::npos)
      << expired.raw;
}

TEST_F(AuthApi, InsufficientRoleIs403NamingThePermissionAndProject) {
  std::string viewer = TokenFor("user:vic", "viewer");
  Reply r = Post(server_.client_with_token(viewer), "/api/v1/models", {{"name", "m"}});
  ASSERT_TRUE(IsError(r, 403, "permission_denied"));
  EXPECT_EQ(r.body["error"].value("permission", ""), "registry.write");
  EXPECT_NE(r.body["error"].value("message", "").find("registry.write"), std::string::npos);

  // Project scope: a scientist in "risk" may register there, not in "default".
  ASSERT_EQ(Post(*admin_, "/api/v1/projects", {{"name", "risk"}}).status, 201);
  ASSERT_EQ(Post(*admin_, "/api/v1/principals", {{"name", "user:sam"}}).status, 201);
  ASSERT_EQ(Post(*admin_, "/api/v1/principals/user:sam/roles",
                 {{"role", "scientist"}, {"project", "risk"}})
                .status,
            201);
  Reply token = Post(*admin_, "/api/v1/tokens", {{"principal", "user:sam"}});
  http::Client sam = server_.client_with_token(token.body.value("token", ""));
  EXPECT_EQ(Post(sam, "/api/v1/models", {{"name", "risk-model"}, {"project", "risk"}}).status, 201);
  Reply other = Post(sam, "/api/v1/models", {{"name", "default-model"}});
  ASSERT_TRUE(IsError(other, 403, "permission_denied"));
  EXPECT_EQ(other.body["error"].value("project", ""), "default") << other.raw;
  ASSERT_EQ(Post(*admin_, "/api/v1/models", {{"name", "admins-model"}}).status, 201);
  // Lists show only what the caller may read; another project's model is 403.
  Reply listed = Get(sam, "/api/v1/models");
  ASSERT_EQ(listed.status, 200) << listed.Describe();
  ASSERT_EQ(listed.body["items"].size(), 1u) << listed.raw;
  EXPECT_EQ(listed.body["items"][0].value("name", ""), "risk-model");
  EXPECT_EQ(Get(sam, "/api/v1/models/admins-model").status, 403);
  // A scientist cannot approve, even in its own project.
  Reply v = Post(sam, "/api/v1/models/risk-model/versions", {{"metrics", {{"auc", 0.5}}}});
  ASSERT_EQ(v.status, 201) << v.Describe();
  Reply approve = Post(sam, "/api/v1/models/risk-model/versions/1/reject", {{"reason", "x"}});
  ASSERT_TRUE(IsError(approve, 403, "permission_denied"));
  EXPECT_EQ(approve.body["error"].value("permission", ""), "model_version.approve");
  // Someone else's tokens are invisible to a non-admin.
  EXPECT_TRUE(IsError(Get(sam, "/api/v1/tokens?principal=user:vic"), 403, "permission_denied"));
  // The raw event log and the entities projection span projects: a
  // project member reads its project's events with ?project=, nothing more.
  EXPECT_TRUE(IsError(Get(sam, "/api/v1/events"), 403, "permission_denied"));
  EXPECT_TRUE(IsError(Get(sam, "/api/v1/events?project=default"), 403, "permission_denied"));
  Reply events = Get(sam, "/api/v1/events?project=risk");
  ASSERT_EQ(events.status, 200) << events.Describe();
  EXPECT_FALSE(events.body["events"].empty());
  for (const auto& e : events.body["events"])
    EXPECT_EQ(e.value("project", ""), "risk") << e.dump();
  EXPECT_TRUE(IsError(Get(sam, "/api/v1/entities/model_version"), 403, "permission_denied"));
  auto stream = sam.ReadStream(
      "/api/v1/events/stream", {}, [](std::string_view) { return true; }, std::chrono::seconds(5));
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().code, core::ErrorCode::kPermissionDenied);
  // whoami shows what the project binding grants.
  Reply me = Get(sam, "/api/v1/whoami");
  ASSERT_EQ(me.status, 200) << me.Describe();
  EXPECT_TRUE(me.body["permissions"].empty()) << me.raw;
  EXPECT_NE(me.body["project_permissions"]["risk"].dump().find("registry.write"), std::string::npos)
      << me.raw;
  // Project-scoped auditors must name their project.
  EXPECT_TRUE(IsError(Get(sam, "/api/v1/audit"), 403, "permission_denied"));
  Reply audit = Get(sam, "/api/v1/audit?project=risk");
  ASSERT_EQ(audit.status, 200) << audit.Describe();
  for (const auto& e : audit.body["events"])
    EXPECT_EQ(e.value("project", ""), "risk") << e.dump();
}

// log-metric and log-batch answer on the I/O thread once the run is
// cached (http::Route::start): the run's project is checked there too, the
// same as on the worker pool before it is cached.
TEST_F(AuthApi, TelemetryChecksTheRunsProjectBeforeAndAfterItIsCached) {
  const std::string api = "/api/2.0/mlflow/";
  Reply run = Post(*admin_, api + "runs/create", {{"experiment_id", "0"}});
  ASSERT_EQ(run.status, 200) << run.Describe();
  const std::string id = run.body["run"]["info"].value("run_id", "");
  http::Client viewer = server_.client_with_token(TokenFor("user:vera", "viewer"));
  const Json metric = {{"run_id", id}, {"key", "m"}, {"value", 1}, {"timestamp", 1}};
  const Json batch = {{"run_id", id}, {"metrics", Json::array({metric})}};
  auto refused = [&](const std::string& when) {
    for (const auto& [path, body] :
         {std::pair{"runs/log-metric", metric}, {"runs/log-batch", batch}}) {
      Reply r = Post(viewer, api + path, body);
      EXPECT_EQ(r.status, 403) << when << " " << path << ": " << r.Describe();
      EXPECT_EQ(r.body.value("error_code", ""), "PERMISSION_DENIED") << when << ": " << r.raw;
      EXPECT_NE(r.body.value("message", "").find("tracking.write"), std::string::npos) << r.raw;
    }
  };
  refused("not cached");
  for (int i = 0; i < 3; ++i) {  // the first caches the run
    EXPECT_EQ(Post(*admin_, api + "runs/log-metric", metric).status, 200);
    EXPECT_EQ(Post(*admin_, api + "runs/log-batch", batch).status, 200);
  }
  refused("cached");
  Reply history = Get(*admin_, api + "metrics/get-history?run_id=" + id + "&metric_key=m");
  ASSERT_EQ(history.status, 200) << history.Describe();
  EXPECT_EQ(history.body["metrics"].size(), 6u) << history.raw;
}

TEST_F(AuthApi, BootstrapTokenFileIsOwnerOnlyAndNeverLogged) {
  std::filesystem::path file = server_.data_dir() / "admin.token";
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string token = server_.admin_token();
  ASSERT_FALSE(token.empty());
  std::string secret = token.substr(token.rfind('_') + 1);
  // Neither the log (ECS lines, events shipped too) nor the event log holds it.
  std::ifstream log(server_.data_dir() / "server.log");
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("admin.token"), std::string::npos) << "the log should say where it is";
  EXPECT_EQ(all.find(secret), std::string::npos) << "the token leaked into the log";
  for (const auto& e : AllEvents(*admin_))
    EXPECT_EQ(e.dump().find(secret), std::string::npos) << e.dump();
  // A restart does not bootstrap again, and no half-written token is left.
  EXPECT_FALSE(std::filesystem::exists(server_.data_dir() / "admin.token.new"));
  ASSERT_TRUE(server_.Stop(false));
  ASSERT_TRUE(server_.Start());
  EXPECT_EQ(server_.admin_token(), token);
  Reply principals = Get(server_.client(), "/api/v1/principals");
  ASSERT_EQ(principals.status, 200) << principals.Describe();
  EXPECT_EQ(principals.body["items"].size(), 1u);
}

TEST_F(AuthApi, MetricsCanBeProtected) {
  ServerProcess locked({.extra_args = {"--set", "auth.protect_metrics=true"}});
  ASSERT_TRUE(locked.Start());
  EXPECT_TRUE(IsError(Get(locked.anonymous_client(), "/metrics"), 401, "unauthenticated"));
  EXPECT_EQ(Get(locked.client(), "/metrics").status, 200);
  EXPECT_EQ(Get(locked.anonymous_client(), "/healthz").status, 200);
}

}  // namespace
}  // namespace kervan::apitest

namespace kervan::apitest {
namespace {

// A data dir whose database was wiped keeps its old admin.token: the next
// first start must replace it with the new, working token.
TEST(AuthBootstrap, StaleTokenFileFromAWipedDatabaseIsReplaced) {
  ServerProcess server;
  ASSERT_TRUE(server.Start());
  std::string old_token = server.admin_token();
  ASSERT_TRUE(server.Stop(false));
  for (const char* f : {"kervan.db", "kervan.db-wal", "kervan.db-shm"})
    std::filesystem::remove(server.data_dir() / f);
  ASSERT_TRUE(server.Start());
  std::string new_token = server.admin_token();
  EXPECT_NE(new_token, old_token);
  EXPECT_EQ(Get(server.client(), "/api/v1/whoami").status, 200);
  EXPECT_EQ(Get(server.client_with_token(old_token), "/api/v1/whoami").status, 401);
}

}  // namespace
}  // namespace kervan::apitest
