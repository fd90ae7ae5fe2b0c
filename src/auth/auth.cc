#include "auth/auth.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace kervan::auth {
namespace {

using store::CommandTx;
using store::Rows;

constexpr std::string_view kTokenPrefix = "kvn_";
constexpr size_t kTokenIdLength = 12;
constexpr size_t kTokenSecretLength = 40;

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool Alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Json BindingsJson(const std::vector<RoleBinding>& bindings) {
  Json out = Json::array();
  for (const auto& b : bindings)
    out.push_back(b.ToJson());
  return out;
}

std::string TimeOrNull(int64_t us) {
  return us == 0 ? std::string() : core::FormatRfc3339(us);
}

}  // namespace

// ---- validation and JSON -------------------------------------------------------

std::string_view PrincipalKindName(PrincipalKind kind) {
  return kind == PrincipalKind::kUser ? "user" : "service";
}

Status ValidatePrincipalName(std::string_view name, std::string_view field) {
  auto bad = [&](std::string_view why) {
    return core::InvalidArgument(
        fmt::format("field \"{}\": \"{}\" {}; expected user:<name> or service:<name> with "
                    "<name> of 1-64 characters [a-z0-9._-]",
                    field, name, why),
        std::string(field));
  };
  size_t colon = name.find(':');
  if (colon == std::string_view::npos)
    return bad("has no kind prefix");
  std::string_view kind = name.substr(0, colon), rest = name.substr(colon + 1);
  if (kind != "user" && kind != "service")
    return bad(kind == "system" ? "is reserved for automation" : "has an unknown kind");
  if (rest.empty() || rest.size() > 64 || !Alnum(rest[0]))
    return bad("has a bad name part");
  if (!std::all_of(rest.begin(), rest.end(), NameChar))
    return bad("has a character outside [a-z0-9._-]");
  return core::Ok();
}

Status ValidateProjectName(std::string_view name, std::string_view field) {
  bool ok = !name.empty() && name.size() <= 63 && Alnum(name[0]) &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
            });
  if (!ok) {
    return core::InvalidArgument(
        fmt::format("field \"{}\": \"{}\" is not a project name (1-63 characters [a-z0-9-], "
                    "starting with a letter or digit)",
                    field, name),
        std::string(field));
  }
  return core::Ok();
}

Json RoleBinding::ToJson() const {
  return {{"role", role}, {"project", project.empty() ? Json(nullptr) : Json(project)}};
}

Json Principal::ToJson() const {
  return {{"name", name},
          {"kind", PrincipalKindName(kind)},
          {"display_name", display_name},
          {"created", core::FormatRfc3339(created_us)},
          {"created_by", created_by},
          {"disabled", disabled_us != 0},
          {"disabled_at", disabled_us ? Json(core::FormatRfc3339(disabled_us)) : Json(nullptr)},
          {"roles", BindingsJson(bindings)}};
}

Json Project::ToJson() const {
  return {{"name", name},
          {"description", description},
          {"created", core::FormatRfc3339(created_us)},
          {"created_by", created_by}};
}

Json TokenInfo::ToJson() const {
  int64_t now = core::NowMicros();
  std::string state = revoked_us                        ? "revoked"
                      : expires_us && expires_us <= now ? "expired"
                                                        : "active";
  return {{"id", id},
          {"principal", principal},
          {"name", name},
          {"created", core::FormatRfc3339(created_us)},
          {"created_by", created_by},
          {"expires", expires_us ? Json(TimeOrNull(expires_us)) : Json(nullptr)},
          {"revoked", revoked_us ? Json(TimeOrNull(revoked_us)) : Json(nullptr)},
          {"state", state}};
}

// ---- snapshot ------------------------------------------------------------------

struct Auth::Snapshot {
  struct TokenRecord {
    TokenInfo info;
    std::string secret_hash;
  };
  std::map<std::string, TokenRecord> tokens;  // by id
  std::map<std::string, Principal> principals;
  std::map<std::string, Project> projects;

  static Result<std::shared_ptr<const Snapshot>> Load(store::Connection& conn) {
    auto s = std::make_shared<Snapshot>();
    ASSIGN_OR_RETURN(Rows principals,
                     conn.Query("SELECT name, kind, display_name, created_us, created_by, "
                                "disabled_us FROM principals"));
    for (const auto& r : principals) {
      Principal p;
      p.name = r.Text(0);
      p.kind = r.Text(1) == "service" ? PrincipalKind::kService : PrincipalKind::kUser;
      p.display_name = r.Text(2);
      p.created_us = r.Int(3);
      p.created_by = r.Text(4);
      p.disabled_us = r.Int(5);
      s->principals[p.name] = std::move(p);
    }
    ASSIGN_OR_RETURN(Rows bindings, conn.Query("SELECT principal, role, project FROM "
                                               "role_bindings ORDER BY principal, project, role"));
    for (const auto& r : bindings) {
      auto it = s->principals.find(r.Text(0));
      if (it != s->principals.end())
        it->second.bindings.push_back({r.Text(1), r.Text(2)});
    }
    ASSIGN_OR_RETURN(Rows projects,
                     conn.Query("SELECT name, description, created_us, created_by FROM projects"));
    for (const auto& r : projects)
      s->projects[r.Text(0)] = {r.Text(0), r.Text(1), r.Int(2), r.Text(3)};
    ASSIGN_OR_RETURN(Rows tokens,
                     conn.Query("SELECT id, principal, name, secret_hash, created_us, created_by, "
                                "expires_us, revoked_us FROM api_tokens"));
    for (const auto& r : tokens) {
      TokenRecord t{{r.Text(0), r.Text(1), r.Text(2), r.Int(4), r.Text(5), r.Int(6), r.Int(7)},
                    r.Text(3)};
      s->tokens[t.info.id] = std::move(t);
    }
    return std::shared_ptr<const Snapshot>(std::move(s));
  }

  const Principal* FindPrincipal(const std::string& name) const {
    auto it = principals.find(name);
    return it == principals.end() ? nullptr : &it->second;
  }
};

Auth::Auth(store::Database& db, store::EventLog& log, AuthOptions options)
    : db_(db), log_(log), options_(options) {}

Result<std::unique_ptr<Auth>> Auth::Open(store::Database& db, store::EventLog& log,
                                         AuthOptions options) {
  std::unique_ptr<Auth> auth(new Auth(db, log, options));
  RETURN_IF_ERROR(auth->Refresh());
  auth->refresher_ = std::thread([a = auth.get()] { a->RefreshLoop(); });
  return auth;
}

Auth::~Auth() {
  {
    std::lock_guard lock(refresh_mu_);
    stopping_ = true;
  }
  refresh_cv_.notify_all();
  if (refresher_.joinable())
    refresher_.join();
}

void Auth::RefreshLoop() {
  std::unique_lock lock(refresh_mu_);
  while (!stopping_) {
    if (refresh_cv_.wait_for(lock, options_.refresh, [this] { return stopping_; }))
      return;
    lock.unlock();
    if (auto s = Refresh(); !s) {
      core::LogWarn("auth snapshot refresh failed: " + s.error().message,
                    {{"event.action", "auth.refresh_failed"}});
    }
    lock.lock();
  }
}

Status Auth::Apply(store::Command command) {
  RETURN_IF_ERROR(log_.Execute(std::move(command)));
  return Refresh();
}

Status Auth::Refresh() {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto snap, Snapshot::Load(*conn));
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snap);
  return core::Ok();
}

std::shared_ptr<const Auth::Snapshot> Auth::snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

// ---- request path ----------------------------------------------------------------

Result<Caller> Auth::Authenticate(std::string_view authorization) const {
  if (authorization.empty()) {
    return core::Unauthenticated(
        "missing credentials: send \"Authorization: Bearer <token>\" (create a token with "
        "`kervan token create`)");
  }
  std::string token;
  size_t space = authorization.find(' ');
  std::string scheme = Lower(authorization.substr(0, space));
  std::string_view credentials =
      space == std::string_view::npos ? std::string_view() : authorization.substr(space + 1);
  while (!credentials.empty() && credentials.front() == ' ')
    credentials.remove_prefix(1);
  if (scheme == "bearer") {
    token = std::string(credentials);
  } else if (scheme == "basic") {
    // The MLflow client's username/password mode: the password is the token.
    auto decoded = core::Base64Decode(credentials);
    if (!decoded || decoded->find(':') == std::string::npos)
      return core::Unauthenticated("malformed Basic credentials: expected base64(user:token)");
    token = decoded->substr(decoded->find(':') + 1);
  } else {
    return core::Unauthenticated(
        "unsupported Authorization scheme: use \"Bearer <token>\" (or Basic with the token as "
        "password)");
  }
  // kvn_<12 id>_<40 secret>
  const size_t expected = kTokenPrefix.size() + kTokenIdLength + 1 + kTokenSecretLength;
  if (token.size() != expected || !token.starts_with(kTokenPrefix) ||
      token[kTokenPrefix.size() + kTokenIdLength] != '_') {
    return core::Unauthenticated("malformed token: expected kvn_<id>_<secret>");
  }
  std::string id = token.substr(kTokenPrefix.size(), kTokenIdLength);
  std::string secret = token.substr(kTokenPrefix.size() + kTokenIdLength + 1);
  auto snap = snapshot();
  auto it = snap->tokens.find(id);
  // Hash either way, so an unknown id and a wrong secret cost the same.
  std::string presented = core::Sha256Hex(secret);
  if (it == snap->tokens.end() || !core::ConstantTimeEquals(presented, it->second.secret_hash))
    return core::Unauthenticated("invalid token");
  const TokenInfo& t = it->second.info;
  if (t.revoked_us != 0) {
    return core::Unauthenticated(
        fmt::format("token {} was revoked at {}", t.id, core::FormatRfc3339(t.revoked_us)));
  }
  if (t.expires_us != 0 && t.expires_us <= core::NowMicros()) {
    return core::Unauthenticated(
        fmt::format("token {} expired at {}", t.id, core::FormatRfc3339(t.expires_us)));
  }
  const Principal* p = snap->FindPrincipal(t.principal);
  if (p == nullptr || p->disabled_us != 0)
    return core::Unauthenticated(fmt::format("principal {} is disabled", t.principal));
  return Caller{t.principal, t.id};
}

Status Auth::Authorize(const std::string& principal, std::string_view permission,
                       std::string_view project) const {
  auto snap = snapshot();
  if (const Principal* p = snap->FindPrincipal(principal)) {
    for (const auto& b : p->bindings) {
      const RoleInfo* role = FindRole(b.role);
      if (role == nullptr || !role->permissions.contains(std::string(permission)))
        continue;
      if (b.project.empty() || project.empty() || b.project == project)
        return core::Ok();
    }
  }
  Json details = {{"permission", permission}, {"principal", principal}};
  if (!project.empty())
    details["project"] = project;
  return core::PermissionDenied(
      project.empty() ? fmt::format("{} lacks permission \"{}\"", principal, permission)
                      : fmt::format("{} lacks permission \"{}\" in project \"{}\"", principal,
                                    permission, project),
      std::move(details));
}

Status Auth::AuthorizeIn(const std::string& principal, std::string_view permission,
                         const std::string& project) const {
  if (!project.empty())
    return Authorize(principal, permission, project);
  if (!ProjectsWith(principal, permission))
    return core::Ok();
  return core::PermissionDenied(
      fmt::format("{} holds \"{}\" only in some projects; this request spans projects and "
                  "needs it globally (a role binding without a project)",
                  principal, permission),
      {{"permission", permission}, {"principal", principal}, {"scope", "global"}});
}

std::optional<std::set<std::string>> Auth::ProjectsWith(const std::string& principal,
                                                        std::string_view permission) const {
  std::set<std::string> out;
  auto snap = snapshot();
  if (const Principal* p = snap->FindPrincipal(principal)) {
    for (const auto& b : p->bindings) {
      const RoleInfo* role = FindRole(b.role);
      if (role == nullptr || !role->permissions.contains(std::string(permission)))
        continue;
      if (b.project.empty())
        return std::nullopt;
      out.insert(b.project);
    }
  }
  return out;
}

std::set<std::string> Auth::EffectivePermissions(const std::string& principal,
                                                 std::string_view project) const {
  std::set<std::string> out;
  auto snap = snapshot();
  if (const Principal* p = snap->FindPrincipal(principal)) {
    for (const auto& b : p->bindings) {
      const RoleInfo* role = FindRole(b.role);
      if (role != nullptr && (b.project.empty() || b.project == project))
        out.insert(role->permissions.begin(), role->permissions.end());
    }
  }
  return out;
}

// ---- administration ----------------------------------------------------------------

namespace {

Result<bool> Exists(store::Connection& conn, std::string_view sql, const std::string& key) {
  ASSIGN_OR_RETURN(Rows rows, conn.Query(sql, {key}));
  return !rows.empty();
}

store::EventDraft Draft(std::string type, std::string kind, std::string id,
                        const store::CommandContext& ctx, std::string reason, Json data) {
  return {.type = std::move(type),
          .subject_kind = std::move(kind),
          .subject_id = std::move(id),
          .actor = ctx.actor,
          .reason = std::move(reason),
          .correlation_id = ctx.correlation_id,
          .causation_id = ctx.causation_id,
          .project = ctx.project,
          .data = std::move(data)};
}

Status InsertPrincipal(CommandTx& tx, const CreatePrincipalRequest& req,
                       const store::CommandContext& ctx) {
  ASSIGN_OR_RETURN(bool exists,
                   Exists(tx.conn(), "SELECT 1 FROM principals WHERE name = ?", req.name));
  if (exists)
    return core::AlreadyExists(fmt::format("principal {} already exists", req.name));
  std::string kind = req.name.substr(0, req.name.find(':'));
  ASSIGN_OR_RETURN(store::Event ev,
                   tx.Append(Draft("principal.created", "principal", req.name, ctx, "",
                                   {{"kind", kind}, {"display_name", req.display_name}})));
  RETURN_IF_ERROR(
      tx.conn().Exec("INSERT INTO principals (name, kind, display_name, created_us, created_by) "
                     "VALUES (?, ?, ?, ?, ?)",
                     {req.name, kind, req.display_name, ev.time_us, ctx.actor}));
  return core::Ok();
}

Status InsertBinding(CommandTx& tx, const std::string& principal, const RoleBinding& b,
                     const std::string& reason, const store::CommandContext& ctx) {
  ASSIGN_OR_RETURN(store::Event ev,
                   tx.Append(Draft("principal.role_bound", "principal", principal, ctx, reason,
                                   {{"role", b.role}, {"project", b.project}})));
  auto inserted = tx.conn().Exec(
      "INSERT INTO role_bindings (principal, role, project, created_us, created_by) "
      "VALUES (?, ?, ?, ?, ?)",
      {principal, b.role, b.project, ev.time_us, ctx.actor});
  if (!inserted && inserted.error().code == core::ErrorCode::kAlreadyExists) {
    return core::AlreadyExists(
        fmt::format("{} already has role {} {}", principal, b.role,
                    b.project.empty() ? std::string("globally") : "in project " + b.project));
  }
  return inserted ? core::Ok() : Status(inserted.error());
}

struct MintedToken {
  std::string id, secret, hash;
};

MintedToken MintToken() {
  MintedToken t;
  t.id = core::RandomAlphanumeric(kTokenIdLength);
  t.secret = core::RandomAlphanumeric(kTokenSecretLength);
  t.hash = core::Sha256Hex(t.secret);
  return t;
}

Status InsertToken(CommandTx& tx, const MintedToken& minted, const TokenInfo& info,
                   const store::CommandContext& ctx) {
  // The event names the token by id only: the secret and its hash stay out
  // of the (exported, shipped) audit trail.
  ASSIGN_OR_RETURN(
      store::Event ev,
      tx.Append(Draft("token.created", "token", info.id, ctx, "",
                      {{"principal", info.principal},
                       {"name", info.name},
                       {"expires", info.expires_us ? Json(core::FormatRfc3339(info.expires_us))
                                                   : Json(nullptr)}})));
  (void)ev;
  RETURN_IF_ERROR(tx.conn().Exec(
      "INSERT INTO api_tokens (id, principal, name, secret_hash, created_us, created_by, "
      "expires_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
      {info.id, info.principal, info.name, minted.hash, info.created_us, ctx.actor,
       info.expires_us}));
  return core::Ok();
}

std::string TokenText(const MintedToken& t) {
  return std::string(kTokenPrefix) + t.id + "_" + t.secret;
}

Status ValidateBinding(const RoleBinding& b) {
  if (FindRole(b.role) == nullptr) {
    std::string names;
    for (const auto& r : Roles())
      names += (names.empty() ? "" : ", ") + r.name;
    return core::InvalidArgument(
        fmt::format("field \"role\": unknown role \"{}\" (roles: {})", b.role, names), "role");
  }
  if (!b.project.empty())
    RETURN_IF_ERROR(ValidateProjectName(b.project));
  return core::Ok();
}

}  // namespace

Result<std::optional<NewToken>> Auth::BootstrapIfEmpty(
    const store::CommandContext& ctx, const std::function<Status(const std::string&)>& persist) {
  MintedToken minted = MintToken();
  {
    ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
    ASSIGN_OR_RETURN(Rows rows, conn->Query("SELECT COUNT(*) FROM principals"));
    if (!rows.empty() && rows[0].Int(0) > 0)
      return std::optional<NewToken>();
  }
  if (persist)
    RETURN_IF_ERROR(persist(TokenText(minted)));
  bool created = false;
  TokenInfo info{.id = minted.id, .principal = "user:admin", .name = "bootstrap"};
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    created = false;
    ASSIGN_OR_RETURN(Rows rows, tx.conn().Query("SELECT COUNT(*) FROM principals"));
    if (!rows.empty() && rows[0].Int(0) > 0)
      return core::Ok();
    RETURN_IF_ERROR(InsertPrincipal(tx, {"user:admin", "bootstrap administrator"}, ctx));
    RETURN_IF_ERROR(InsertBinding(tx, "user:admin", {"admin", ""},
                                  "first start: bootstrap administrator", ctx));
    info.created_us = core::NowMicros();
    info.created_by = ctx.actor;
    RETURN_IF_ERROR(InsertToken(tx, minted, info, ctx));
    created = true;
    return core::Ok();
  });
  if (!done)
    return done.error();
  if (!created)
    return std::optional<NewToken>();
  RETURN_IF_ERROR(Refresh());
  return std::optional<NewToken>(NewToken{info, TokenText(minted)});
}

Result<Principal> Auth::CreatePrincipal(const CreatePrincipalRequest& request,
                                        const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidatePrincipalName(request.name));
  if (request.display_name.size() > 200)
    return core::InvalidArgument("field \"display_name\": longer than 200 characters",
                                 "display_name");
  RETURN_IF_ERROR(Apply([&](CommandTx& tx) { return InsertPrincipal(tx, request, ctx); }));
  return GetPrincipal(request.name);
}

Result<Principal> Auth::DisablePrincipal(const std::string& name, const std::string& reason,
                                         const store::CommandContext& ctx) {
  if (core::IsBlankReason(reason))
    return core::InvalidArgument("field \"reason\": disabling a principal needs a reason",
                                 "reason");
  RETURN_IF_ERROR(Apply([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(Rows rows,
                     tx.conn().Query("SELECT disabled_us FROM principals WHERE name = ?", {name}));
    if (rows.empty())
      return core::NotFound(fmt::format("principal {} not found", name));
    if (rows[0].Int(0) != 0)
      return core::FailedPrecondition(fmt::format("principal {} is already disabled", name));
    ASSIGN_OR_RETURN(store::Event ev, tx.Append(Draft("principal.disabled", "principal", name, ctx,
                                                      reason, Json::object())));
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE principals SET disabled_us = ? WHERE name = ?", {ev.time_us, name}));
    return core::Ok();
  }));
  return GetPrincipal(name);
}

Result<Principal> Auth::GetPrincipal(const std::string& name) const {
  auto snap = snapshot();
  const Principal* p = snap->FindPrincipal(name);
  if (p == nullptr)
    return core::NotFound(fmt::format("principal {} not found", name));
  return *p;
}

std::vector<Principal> Auth::ListPrincipals() const {
  std::vector<Principal> out;
  auto snap = snapshot();
  for (const auto& [_, p] : snap->principals)
    out.push_back(p);
  return out;
}

Result<Project> Auth::CreateProject(const std::string& name, const std::string& description,
                                    const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateProjectName(name, "name"));
  if (description.size() > 2000)
    return core::InvalidArgument("field \"description\": longer than 2000 characters",
                                 "description");
  store::CommandContext in_project = ctx;
  in_project.project = name;
  RETURN_IF_ERROR(Apply([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(bool exists, Exists(tx.conn(), "SELECT 1 FROM projects WHERE name = ?", name));
    if (exists)
      return core::AlreadyExists(fmt::format("project {} already exists", name));
    ASSIGN_OR_RETURN(store::Event ev,
                     tx.Append(Draft("project.created", "project", name, in_project, "",
                                     {{"description", description}})));
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO projects (name, description, created_us, created_by) VALUES (?, ?, ?, ?)",
        {name, description, ev.time_us, ctx.actor}));
    return core::Ok();
  }));
  return GetProject(name);
}

Result<Project> Auth::GetProject(const std::string& name) const {
  auto snap = snapshot();
  auto it = snap->projects.find(name);
  if (it == snap->projects.end())
    return core::NotFound(fmt::format("project {} not found", name));
  return it->second;
}

std::vector<Project> Auth::ListProjects() const {
  std::vector<Project> out;
  auto snap = snapshot();
  for (const auto& [_, p] : snap->projects)
    out.push_back(p);
  return out;
}

Result<Principal> Auth::BindRole(const std::string& principal, const RoleBinding& binding,
                                 const std::string& reason, const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateBinding(binding));
  store::CommandContext scoped = ctx;
  scoped.project = binding.project;
  RETURN_IF_ERROR(Apply([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(bool exists,
                     Exists(tx.conn(), "SELECT 1 FROM principals WHERE name = ?", principal));
    if (!exists)
      return core::NotFound(fmt::format("principal {} not found", principal));
    if (!binding.project.empty()) {
      ASSIGN_OR_RETURN(bool project_exists,
                       Exists(tx.conn(), "SELECT 1 FROM projects WHERE name = ?", binding.project));
      if (!project_exists)
        return core::NotFound(fmt::format("project {} not found", binding.project));
    }
    return InsertBinding(tx, principal, binding, reason, scoped);
  }));
  return GetPrincipal(principal);
}

Result<Principal> Auth::UnbindRole(const std::string& principal, const RoleBinding& binding,
                                   const std::string& reason, const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateBinding(binding));
  store::CommandContext scoped = ctx;
  scoped.project = binding.project;
  RETURN_IF_ERROR(Apply([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(
        int64_t removed,
        tx.conn().Exec("DELETE FROM role_bindings WHERE principal = ? AND role = ? AND project = ?",
                       {principal, binding.role, binding.project}));
    if (removed == 0) {
      return core::NotFound(fmt::format(
          "{} has no role {} {}", principal, binding.role,
          binding.project.empty() ? std::string("globally") : "in project " + binding.project));
    }
    ASSIGN_OR_RETURN(
        store::Event ev,
        tx.Append(Draft("principal.role_unbound", "principal", principal, scoped, reason,
                        {{"role", binding.role}, {"project", binding.project}})));
    (void)ev;
    return core::Ok();
  }));
  return GetPrincipal(principal);
}

Result<NewToken> Auth::CreateToken(const CreateTokenRequest& request,
                                   const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidatePrincipalName(request.principal, "principal"));
  if (request.name.size() > 100)
    return core::InvalidArgument("field \"name\": longer than 100 characters", "name");
  std::chrono::microseconds ttl = request.ttl.value_or(
      std::chrono::duration_cast<std::chrono::microseconds>(options_.default_token_ttl));
  if (ttl.count() < 0)
    return core::InvalidArgument("field \"expires_in_days\": must not be negative",
                                 "expires_in_days");
  MintedToken minted = MintToken();
  TokenInfo info{.id = minted.id, .principal = request.principal, .name = request.name};
  RETURN_IF_ERROR(Apply([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(Rows rows, tx.conn().Query("SELECT disabled_us FROM principals WHERE name = ?",
                                                {request.principal}));
    if (rows.empty())
      return core::NotFound(fmt::format("principal {} not found", request.principal));
    if (rows[0].Int(0) != 0) {
      return core::FailedPrecondition(fmt::format("principal {} is disabled", request.principal));
    }
    info.created_us = core::NowMicros();
    info.created_by = ctx.actor;
    info.expires_us = ttl.count() == 0 ? 0 : info.created_us + ttl.count();
    return InsertToken(tx, minted, info, ctx);
  }));
  return NewToken{info, TokenText(minted)};
}

Result<TokenInfo> Auth::RevokeToken(const std::string& id, const std::string& reason,
                                    const store::CommandContext& ctx) {
  RETURN_IF_ERROR(Apply([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(
        Rows rows,
        tx.conn().Query("SELECT principal, revoked_us FROM api_tokens WHERE id = ?", {id}));
    if (rows.empty())
      return core::NotFound(fmt::format("token {} not found", id));
    if (rows[0].Int(1) != 0)
      return core::FailedPrecondition(fmt::format("token {} is already revoked", id));
    ASSIGN_OR_RETURN(store::Event ev, tx.Append(Draft("token.revoked", "token", id, ctx, reason,
                                                      {{"principal", rows[0].Text(0)}})));
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE api_tokens SET revoked_us = ? WHERE id = ?", {ev.time_us, id}));
    return core::Ok();
  }));
  return GetToken(id);
}

Result<TokenInfo> Auth::GetToken(const std::string& id) const {
  auto snap = snapshot();
  auto it = snap->tokens.find(id);
  if (it == snap->tokens.end())
    return core::NotFound(fmt::format("token {} not found", id));
  return it->second.info;
}

std::vector<TokenInfo> Auth::ListTokens(const std::string& principal) const {
  std::vector<TokenInfo> out;
  auto snap = snapshot();
  for (const auto& [_, t] : snap->tokens) {
    if (principal.empty() || t.info.principal == principal)
      out.push_back(t.info);
  }
  std::sort(out.begin(), out.end(),
            [](const TokenInfo& a, const TokenInfo& b) { return a.created_us < b.created_us; });
  return out;
}

}  // namespace kervan::auth
