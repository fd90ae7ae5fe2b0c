// Identity and access: principals (users and service accounts), projects
// (teams), roles bound globally or per project, and API tokens.
//
// Every change here is an event through the event log (principal.created,
// principal.role_bound, token.created, token.revoked, ...), appended in the
// same transaction as the table change. A token's secret is never stored,
// logged or put in an event: only SHA-256(secret) is kept and the token text
// is returned once, by CreateToken.
//
// Authentication and authorization answer from an in-memory snapshot of the
// tables (no database round trip on the request path), replaced after every
// change this process makes and re-read every `refresh` interval so that
// changes made by another server on the same PostgreSQL reach this one.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/core.h"
#include "http/http.h"
#include "store/store.h"

namespace kervan::auth {

using core::Json;
using core::Result;
using core::Status;

// ---- permissions and roles (data, see permissions.cc) ------------------------

struct PermissionInfo {
  std::string name;         // "registry.write"
  std::string description;  // what it allows
};

struct RoleInfo {
  std::string name;  // viewer | scientist | engineer | admin
  std::string description;
  std::set<std::string> permissions;
};

// Every permission a route or a transition may declare. A permission not in
// this catalog is a programming error (the route table test checks it).
const std::vector<PermissionInfo>& Permissions();
bool IsKnownPermission(std::string_view permission);
// The built-in roles, least to most privileged.
const std::vector<RoleInfo>& Roles();
const RoleInfo* FindRole(std::string_view name);

// ---- identities --------------------------------------------------------------

// A principal's name carries its kind: "user:alice", "service:ci-bot".
// "system:<module>" names automation and cannot be created or authenticated.
enum class PrincipalKind { kUser, kService };
std::string_view PrincipalKindName(PrincipalKind kind);
// kInvalidArgument (field `field`) unless `name` is "user:<n>" or
// "service:<n>" with <n> of 1-64 characters [a-z0-9._-] starting with a
// letter or digit.
Status ValidatePrincipalName(std::string_view name, std::string_view field = "name");
// Projects: 1-63 characters [a-z0-9-], starting with a letter or digit.
Status ValidateProjectName(std::string_view name, std::string_view field = "project");

struct RoleBinding {
  std::string role;
  std::string project;  // "" = global (every project)
  Json ToJson() const;
};

struct Principal {
  std::string name;  // "user:alice"
  PrincipalKind kind = PrincipalKind::kUser;
  std::string display_name;
  int64_t created_us = 0;
  std::string created_by;
  int64_t disabled_us = 0;  // 0 = active
  std::vector<RoleBinding> bindings;
  Json ToJson() const;
};

struct Project {
  std::string name;
  std::string description;
  int64_t created_us = 0;
  std::string created_by;
  Json ToJson() const;
};

struct TokenInfo {
  std::string id;  // public part of the token, "kvn_<id>_<secret>"
  std::string principal;
  std::string name;  // what the owner calls it ("laptop", "ci")
  int64_t created_us = 0;
  std::string created_by;
  int64_t expires_us = 0;  // 0 = never
  int64_t revoked_us = 0;  // 0 = not revoked
  Json ToJson() const;     // never includes the secret or its hash
};

// CreateToken's answer: the only time the token text exists outside the caller.
struct NewToken {
  TokenInfo info;
  std::string token;  // "kvn_<id>_<secret>"
};

// Who is calling, as established by Authenticate.
struct Caller {
  std::string principal;  // "user:alice"
  std::string token_id;
};

struct AuthOptions {
  // Lifetime of a token created without an explicit one.
  std::chrono::hours default_token_ttl{24 * 90};
  // How often the snapshot is re-read from the database (multi-server).
  std::chrono::milliseconds refresh{5000};
};

struct CreatePrincipalRequest {
  std::string name;  // "user:alice" | "service:ci"
  std::string display_name;
};

struct CreateTokenRequest {
  std::string principal;  // whose token
  std::string name;
  // Lifetime; nullopt = options.default_token_ttl, 0 = never expires.
  std::optional<std::chrono::microseconds> ttl;
};

class Auth {
 public:
  // Loads the snapshot and starts the refresh thread.
  static Result<std::unique_ptr<Auth>> Open(store::Database& db, store::EventLog& log,
                                            AuthOptions options = {});
  ~Auth();
  Auth(const Auth&) = delete;
  Auth& operator=(const Auth&) = delete;

  // First start: when no principal exists, creates user:admin with a global
  // admin binding and a token that never expires, and returns that token.
  // nullopt when principals exist. `persist` (optional) receives the token
  // text before anything is committed, so the token is safely stored (a
  // 0600 file) before it becomes valid; if it fails, nothing is created.
  Result<std::optional<NewToken>> BootstrapIfEmpty(
      const store::CommandContext& ctx,
      const std::function<Status(const std::string& token)>& persist = {});

  // ---- request path (in memory, never blocks on the database) ----
  // From an Authorization header: "Bearer <token>", or "Basic base64(user:
  // <token>)" as the MLflow client sends with a username and password. kUnauthenticated
  // with a message saying what is wrong: missing, malformed, invalid (unknown
  // id or wrong secret: not told apart), expired, revoked, principal disabled.
  Result<Caller> Authenticate(std::string_view authorization) const;
  // OK when one of the principal's bindings grants `permission` globally or
  // in `project`; with `project` empty, a binding in any project is enough
  // (the route-level check; handlers then check the resource's project).
  // kPermissionDenied naming the permission (and project) otherwise.
  Status Authorize(const std::string& principal, std::string_view permission,
                   std::string_view project = {}) const;
  // Like Authorize, but `project` "" means every project: it then needs a
  // global binding (for things that span projects, e.g. a webhook on all
  // events or the unfiltered event log).
  Status AuthorizeIn(const std::string& principal, std::string_view permission,
                     const std::string& project) const;
  // The projects in which `principal` holds `permission`; nullopt = all (a
  // global binding grants it). For filtering lists.
  std::optional<std::set<std::string>> ProjectsWith(const std::string& principal,
                                                    std::string_view permission) const;
  // Every permission the principal holds globally, or in `project`.
  std::set<std::string> EffectivePermissions(const std::string& principal,
                                             std::string_view project = {}) const;

  // ---- administration (each an event; errors are kInvalidArgument naming
  // the field, kNotFound, kAlreadyExists) ----
  Result<Principal> CreatePrincipal(const CreatePrincipalRequest& request,
                                    const store::CommandContext& ctx);
  Result<Principal> DisablePrincipal(const std::string& name, const std::string& reason,
                                     const store::CommandContext& ctx);
  Result<Principal> GetPrincipal(const std::string& name) const;
  std::vector<Principal> ListPrincipals() const;

  Result<Project> CreateProject(const std::string& name, const std::string& description,
                                const store::CommandContext& ctx);
  Result<Project> GetProject(const std::string& name) const;
  std::vector<Project> ListProjects() const;

  // Binds `role` to the principal globally (project "") or in a project that
  // must exist. Binding an existing binding is kAlreadyExists.
  Result<Principal> BindRole(const std::string& principal, const RoleBinding& binding,
                             const std::string& reason, const store::CommandContext& ctx);
  Result<Principal> UnbindRole(const std::string& principal, const RoleBinding& binding,
                               const std::string& reason, const store::CommandContext& ctx);

  Result<NewToken> CreateToken(const CreateTokenRequest& request, const store::CommandContext& ctx);
  // Revoking a revoked token is kFailedPrecondition.
  Result<TokenInfo> RevokeToken(const std::string& id, const std::string& reason,
                                const store::CommandContext& ctx);
  Result<TokenInfo> GetToken(const std::string& id) const;
  // Tokens of one principal, or of everyone when `principal` is empty.
  std::vector<TokenInfo> ListTokens(const std::string& principal) const;

  // Re-reads the snapshot now (also done after every change and periodically).
  Status Refresh();

 private:
  struct Snapshot;
  Auth(store::Database& db, store::EventLog& log, AuthOptions options);
  std::shared_ptr<const Snapshot> snapshot() const;
  // Executes a change through the event log, then re-reads the snapshot so
  // this server answers from it at once.
  Status Apply(store::Command command);
  void RefreshLoop();

  store::Database& db_;
  store::EventLog& log_;
  const AuthOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::mutex refresh_mu_;
  std::condition_variable refresh_cv_;
  bool stopping_ = false;
  std::thread refresher_;
};

// ---- HTTP ----------------------------------------------------------------------

struct HttpOptions {
  bool protect_metrics = false;  // /metrics needs "metrics.read" when true
};

// The server's access guard (http::ServerOptions::access_guard): public
// routes pass (except /metrics when protected); others need a valid token
// whose principal holds the route's permission in some scope. Counts
// failures in kervan_auth_failures_total{reason} and denials in
// kervan_auth_denied_total{permission}.
std::function<Status(http::Request&, const std::string&, bool)> MakeAccessGuard(
    const Auth& auth, HttpOptions options = {});

// /api/v1/whoami, roles, permissions, projects, principals, role bindings
// and tokens.
Status RegisterRoutes(http::Router& router, Auth& auth);

}  // namespace kervan::auth
