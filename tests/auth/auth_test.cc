// Identity and access on both store backends: bootstrap, tokens (format,
// hashing, expiry, revocation), role bindings and scoped authorization, and
// that every change is an audited event.
#include "auth/auth.h"

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"

namespace kervan::auth {
namespace {

using store::Dialect;
using store::testing::BackendTest;

store::CommandContext Ctx(std::string actor) {
  return {.actor = std::move(actor), .correlation_id = "req-1"};
}

std::string Bearer(const std::string& token) {
  return "Bearer " + token;
}

class AuthTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    auto auth = Auth::Open(*db_, *log_, {.refresh = std::chrono::milliseconds(100)});
    ASSERT_TRUE(auth) << auth.error().ToString();
    auth_ = std::move(auth).value();
  }
  void TearDown() override {
    auth_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    BackendTest::TearDown();
  }

  // A user bound to `role` (globally or in `project`) and a token for them.
  std::string UserWithToken(const std::string& name, const std::string& role,
                            const std::string& project = "") {
    auto p = auth_->CreatePrincipal({name, ""}, Ctx("user:admin"));
    EXPECT_TRUE(p) << p.error().ToString();
    if (!project.empty() && !auth_->GetProject(project)) {
      EXPECT_TRUE(auth_->CreateProject(project, "", Ctx("user:admin")));
    }
    EXPECT_TRUE(auth_->BindRole(name, {role, project}, "test", Ctx("user:admin")));
    auto t = auth_->CreateToken({name, "t", std::nullopt}, Ctx("user:admin"));
    EXPECT_TRUE(t) << t.error().ToString();
    return t ? t->token : "";
  }

  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<Auth> auth_;
};

TEST_P(AuthTest, BootstrapCreatesOneAdminOnceAndItsTokenWorks) {
  auto first = auth_->BootstrapIfEmpty(Ctx("system:auth"));
  ASSERT_TRUE(first) << first.error().ToString();
  ASSERT_TRUE(first->has_value());
  const std::string token = (*first)->token;
  EXPECT_TRUE(token.starts_with("kvn_"));
  EXPECT_EQ(token.size(), 4u + 12 + 1 + 40);
  EXPECT_EQ((*first)->info.expires_us, 0);

  auto again = auth_->BootstrapIfEmpty(Ctx("system:auth"));
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->has_value());

  auto caller = auth_->Authenticate(Bearer(token));
  ASSERT_TRUE(caller) << caller.error().ToString();
  EXPECT_EQ(caller->principal, "user:admin");
  EXPECT_TRUE(auth_->Authorize("user:admin", "auth.admin"));
  EXPECT_TRUE(auth_->Authorize("user:admin", "registry.write", "any-project"));
  // Automation-only permission: not even admin holds it.
  EXPECT_FALSE(auth_->Authorize("user:admin", "model_version.validate"));
}

TEST_P(AuthTest, TokensAreStoredOnlyAsHashesAndNeverInEvents) {
  std::string token = UserWithToken("user:alice", "viewer");
  std::string secret = token.substr(token.rfind('_') + 1);
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  auto rows = (*conn)->Query("SELECT secret_hash FROM api_tokens");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Text(0), core::Sha256Hex(secret));
  auto events = (*conn)->Query("SELECT data FROM events");
  ASSERT_TRUE(events);
  for (const auto& e : *events) {
    EXPECT_EQ(e.Text(0).find(secret), std::string::npos) << e.Text(0);
    EXPECT_EQ(e.Text(0).find(core::Sha256Hex(secret)), std::string::npos) << e.Text(0);
  }
}

TEST_P(AuthTest, AuthenticateRefusesMissingMalformedWrongExpiredRevokedAndDisabled) {
  std::string token = UserWithToken("user:bob", "viewer");
  ASSERT_TRUE(auth_->Authenticate(Bearer(token)));
  // The MLflow client's Basic form: password = token.
  ASSERT_TRUE(auth_->Authenticate("Basic " + core::Base64Encode("bob:" + token)));

  auto code = [&](const std::string& header) {
    auto r = auth_->Authenticate(header);
    return r ? std::string("ok") : std::string(core::ErrorCodeName(r.error().code));
  };
  EXPECT_EQ(code(""), "unauthenticated");
  EXPECT_EQ(code("Bearer"), "unauthenticated");
  EXPECT_EQ(code("Token " + token), "unauthenticated");
  EXPECT_EQ(code("Bearer kvn_short"), "unauthenticated");
  std::string wrong = token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  EXPECT_EQ(code(Bearer(wrong)), "unauthenticated");
  EXPECT_EQ(auth_->Authenticate(Bearer(wrong)).error().message, "invalid token");

  // Expired: a token with a one-second lifetime, checked after it passed.
  auto short_lived =
      auth_->CreateToken({"user:bob", "short", std::chrono::seconds(1)}, Ctx("user:admin"));
  ASSERT_TRUE(short_lived);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto expired = auth_->Authenticate(Bearer(short_lived->token));
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().message.find("expired"), std::string::npos);

  auto revoked = auth_->RevokeToken(short_lived->info.id, "rotate", Ctx("user:admin"));
  ASSERT_TRUE(revoked) << revoked.error().ToString();
  auto again = auth_->RevokeToken(short_lived->info.id, "", Ctx("user:admin"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, core::ErrorCode::kFailedPrecondition);
  auto r = auth_->Authenticate(Bearer(short_lived->token));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("revoked"), std::string::npos);

  ASSERT_FALSE(auth_->DisablePrincipal("user:bob", "", Ctx("user:admin")));  // reason required
  ASSERT_TRUE(auth_->DisablePrincipal("user:bob", "left the team", Ctx("user:admin")));
  auto disabled = auth_->Authenticate(Bearer(token));
  ASSERT_FALSE(disabled);
  EXPECT_NE(disabled.error().message.find("disabled"), std::string::npos);
}

TEST_P(AuthTest, ProjectScopedBindingsGrantOnlyInTheirProject) {
  UserWithToken("user:carol", "engineer", "risk");
  EXPECT_TRUE(auth_->Authorize("user:carol", "model_version.approve", "risk"));
  auto other = auth_->Authorize("user:carol", "model_version.approve", "fraud");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, core::ErrorCode::kPermissionDenied);
  EXPECT_NE(other.error().message.find("model_version.approve"), std::string::npos);
  EXPECT_NE(other.error().message.find("fraud"), std::string::npos);
  // Route-level check (no project): some binding grants it.
  EXPECT_TRUE(auth_->Authorize("user:carol", "model_version.approve"));
  EXPECT_FALSE(auth_->Authorize("user:carol", "auth.admin"));
  auto projects = auth_->ProjectsWith("user:carol", "registry.read");
  ASSERT_TRUE(projects.has_value());
  EXPECT_EQ(*projects, std::set<std::string>{"risk"});
  EXPECT_TRUE(auth_->ProjectsWith("user:nobody", "registry.read").value().empty());

  ASSERT_TRUE(auth_->UnbindRole("user:carol", {"engineer", "risk"}, "moved", Ctx("user:admin")));
  EXPECT_FALSE(auth_->Authorize("user:carol", "registry.read", "risk"));
  auto missing = auth_->UnbindRole("user:carol", {"engineer", "risk"}, "", Ctx("user:admin"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, core::ErrorCode::kNotFound);
}

TEST_P(AuthTest, BadInputIsRefusedWithTheFieldNamedAndNothingWritten) {
  int64_t head = log_->head_seq();
  auto bad_name = auth_->CreatePrincipal({"alice", ""}, Ctx("user:admin"));
  ASSERT_FALSE(bad_name);
  EXPECT_EQ(bad_name.error().field, "name");
  auto system = auth_->CreatePrincipal({"system:registry", ""}, Ctx("user:admin"));
  ASSERT_FALSE(system);
  EXPECT_NE(system.error().message.find("reserved"), std::string::npos);
  auto upper = auth_->CreatePrincipal({"user:Alice", ""}, Ctx("user:admin"));
  ASSERT_FALSE(upper);
  auto bad_project = auth_->CreateProject("Risk Team", "", Ctx("user:admin"));
  ASSERT_FALSE(bad_project);
  EXPECT_EQ(bad_project.error().field, "name");
  ASSERT_TRUE(auth_->CreatePrincipal({"user:dan", ""}, Ctx("user:admin")));
  head = log_->head_seq();
  auto bad_role = auth_->BindRole("user:dan", {"superuser", ""}, "", Ctx("user:admin"));
  ASSERT_FALSE(bad_role);
  EXPECT_EQ(bad_role.error().field, "role");
  auto no_project = auth_->BindRole("user:dan", {"viewer", "nope"}, "", Ctx("user:admin"));
  ASSERT_FALSE(no_project);
  EXPECT_EQ(no_project.error().code, core::ErrorCode::kNotFound);
  auto dup = auth_->CreatePrincipal({"user:dan", ""}, Ctx("user:admin"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, core::ErrorCode::kAlreadyExists);
  auto no_one = auth_->CreateToken({"user:nobody", "", std::nullopt}, Ctx("user:admin"));
  ASSERT_FALSE(no_one);
  EXPECT_EQ(no_one.error().code, core::ErrorCode::kNotFound);
  EXPECT_EQ(log_->head_seq(), head);
}

TEST_P(AuthTest, EveryChangeIsAnEventWithActorAndProject) {
  UserWithToken("user:erin", "scientist", "fraud");
  auto events = log_->Read({.after_seq = 0, .limit = 100});
  ASSERT_TRUE(events);
  std::vector<std::string> types;
  for (const auto& e : *events) {
    types.push_back(e.type);
    EXPECT_EQ(e.actor, "user:admin");
    EXPECT_EQ(e.correlation_id, "req-1");
  }
  EXPECT_EQ(types, (std::vector<std::string>{"principal.created", "project.created",
                                             "principal.role_bound", "token.created"}));
  EXPECT_EQ((*events)[1].project, "fraud");
  EXPECT_EQ((*events)[2].project, "fraud");
  auto verify = log_->Verify();
  ASSERT_TRUE(verify);
  EXPECT_TRUE(verify->ok) << verify->problem;
}

TEST_P(AuthTest, AnotherInstanceSeesChangesAfterItsRefreshInterval) {
  // A second Auth on the same database stands in for a second server.
  auto other = Auth::Open(*db_, *log_, {.refresh = std::chrono::milliseconds(100)});
  ASSERT_TRUE(other);
  std::string token = UserWithToken("user:fay", "viewer");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!(*other)->Authenticate(Bearer(token)) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE((*other)->Authenticate(Bearer(token)));
}

KERVAN_INSTANTIATE_BACKENDS(AuthTest);

TEST(Roles, AreNestedAndUseOnlyKnownPermissions) {
  const auto& roles = Roles();
  ASSERT_EQ(roles.size(), 4u);
  for (size_t i = 0; i < roles.size(); ++i) {
    for (const auto& p : roles[i].permissions)
      EXPECT_TRUE(IsKnownPermission(p)) << roles[i].name << ": " << p;
    if (i > 0) {
      for (const auto& p : roles[i - 1].permissions)
        EXPECT_TRUE(roles[i].permissions.contains(p)) << roles[i].name << " lacks " << p;
    }
  }
  EXPECT_FALSE(FindRole("viewer")->permissions.contains("registry.write"));
  EXPECT_TRUE(FindRole("scientist")->permissions.contains("registry.write"));
  EXPECT_FALSE(FindRole("scientist")->permissions.contains("model_version.approve"));
  EXPECT_TRUE(FindRole("engineer")->permissions.contains("model_version.approve"));
  EXPECT_FALSE(FindRole("engineer")->permissions.contains("auth.admin"));
}

}  // namespace
}  // namespace kervan::auth
