// The access guard and the identity API (/api/v1/whoami, roles,
// permissions, projects, principals, role bindings, tokens).
#include <fmt/format.h>

#include "auth/auth.h"

namespace kervan::auth {
namespace {

using http::JsonRoute;
using http::Request;

struct GuardMetrics {
  core::Family<core::Counter>& failures;
  core::Family<core::Counter>& denied;

  static GuardMetrics& Get() {
    auto& r = core::GlobalMetrics();
    static GuardMetrics m{
        r.AddCounter("kervan_auth_failures_total",
                     "Requests refused with 401, by reason (missing, malformed, invalid, "
                     "expired, revoked, disabled).",
                     {"reason"}),
        r.AddCounter("kervan_auth_denied_total",
                     "Authenticated requests refused with 403, by the permission they lacked.",
                     {"permission"})};
    return m;
  }
};

// A short, bounded label for a 401 (the message has the details).
std::string FailureReason(const std::string& message) {
  for (std::string_view r : {"missing", "malformed", "expired", "revoked", "disabled"}) {
    if (message.find(r) != std::string::npos)
      return std::string(r);
  }
  if (message.starts_with("unsupported"))
    return "malformed";
  return "invalid";
}

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

Json ListJson(const auto& items) {
  Json out = Json::array();
  for (const auto& i : items)
    out.push_back(i.ToJson());
  return out;
}

// A token's lifetime from "expires_in_days" (0 = never) or "expires_at"
// (RFC 3339, in the future); neither: the server default.
Result<std::optional<std::chrono::microseconds>> TtlFrom(core::ObjectReader& r) {
  ASSIGN_OR_RETURN(auto days, r.OptionalInt("expires_in_days", 0, 3650));
  ASSIGN_OR_RETURN(auto at, r.OptionalString("expires_at"));
  if (days && at) {
    return core::InvalidArgument(
        "field \"expires_at\": give expires_in_days or expires_at, not both", "expires_at");
  }
  if (days)
    return std::optional<std::chrono::microseconds>(std::chrono::hours(24 * *days));
  if (!at)
    return std::optional<std::chrono::microseconds>();
  auto us = core::ParseRfc3339(*at);
  int64_t now = core::NowMicros();
  if (!us || *us <= now || *us - now > int64_t{3650} * 86400 * 1000000) {
    return core::InvalidArgument(
        fmt::format("field \"expires_at\": \"{}\" must be an RFC 3339 time in the next 10 years",
                    *at),
        "expires_at");
  }
  // Measured from now; CreateToken stamps its own "now" a little later, so
  // the token may outlive the asked time by those microseconds, never more.
  return std::optional<std::chrono::microseconds>(std::chrono::microseconds(*us - now));
}

// Who a token call is about: the caller, or (with auth.admin) anyone.
Result<std::string> TokenOwner(const Auth& auth, const Request& req, std::string requested) {
  if (requested.empty() || requested == req.actor)
    return req.actor;
  RETURN_IF_ERROR(auth.Authorize(req.actor, "auth.admin"));
  return requested;
}

}  // namespace

std::function<Status(http::Request&, const std::string&, bool)> MakeAccessGuard(
    const Auth& auth, HttpOptions options) {
  return [&auth, options](http::Request& req, const std::string& permission,
                          bool public_route) -> Status {
    std::string needed = permission;
    if (public_route) {
      if (!(options.protect_metrics && req.route == "/metrics"))
        return core::Ok();
      needed = "metrics.read";
    }
    auto caller = auth.Authenticate(req.Header("Authorization"));
    if (!caller) {
      GuardMetrics::Get().failures.With({FailureReason(caller.error().message)}).Inc();
      return caller.error();
    }
    req.actor = caller->principal;
    if (auto allowed = auth.Authorize(req.actor, needed); !allowed) {
      GuardMetrics::Get().denied.With({needed}).Inc();
      return allowed;
    }
    return core::Ok();
  };
}

Status RegisterRoutes(http::Router& router, Auth& auth) {
  Auth* a = &auth;
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/whoami", "self.read", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({"project"}));
        ASSIGN_OR_RETURN(Principal p, a->GetPrincipal(req.actor));
        std::string project = req.QueryOr("project", "");
        Json out = p.ToJson();
        // Global permissions (plus `project`'s when asked), and what each
        // project binding adds, so a project-only member sees what it can do.
        out["permissions"] = a->EffectivePermissions(req.actor, project);
        Json by_project = Json::object();
        for (const auto& b : p.bindings) {
          if (!b.project.empty())
            by_project[b.project] = a->EffectivePermissions(req.actor, b.project);
        }
        out["project_permissions"] = by_project;
        if (!project.empty())
          out["project"] = project;
        return Result<Json>(std::move(out));
      })));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/roles", "self.read", [](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        Json items = Json::array();
        for (const auto& r : Roles()) {
          items.push_back(
              {{"name", r.name}, {"description", r.description}, {"permissions", r.permissions}});
        }
        return Result<Json>(Json{{"items", items}});
      })));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/permissions", "self.read", [](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        Json items = Json::array();
        for (const auto& p : Permissions()) {
          Json roles = Json::array();
          for (const auto& r : Roles()) {
            if (r.permissions.contains(p.name))
              roles.push_back(r.name);
          }
          items.push_back({{"name", p.name}, {"description", p.description}, {"roles", roles}});
        }
        return Result<Json>(Json{{"items", items}});
      })));

  // ---- projects ----
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/projects", "project.read", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        return Result<Json>(Json{{"items", ListJson(a->ListProjects())}});
      })));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "POST", "/api/v1/projects", "project.write",
      [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Json body, req.JsonBody());
        ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
        ASSIGN_OR_RETURN(std::string name, r.RequiredString("name"));
        ASSIGN_OR_RETURN(auto description, r.OptionalString("description"));
        RETURN_IF_ERROR(r.Finish());
        ASSIGN_OR_RETURN(Project p, a->CreateProject(name, description.value_or(""), Context(req)));
        return p.ToJson();
      },
      201)));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "GET", "/api/v1/projects/{name}", "project.read", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Project p, a->GetProject(req.Param("name")));
        return p.ToJson();
      })));

  // ---- principals and role bindings ----
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/principals", "auth.admin", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        return Result<Json>(Json{{"items", ListJson(a->ListPrincipals())}});
      })));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "POST", "/api/v1/principals", "auth.admin",
      [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Json body, req.JsonBody());
        ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
        ASSIGN_OR_RETURN(std::string name, r.RequiredString("name"));
        ASSIGN_OR_RETURN(auto display, r.OptionalString("display_name"));
        RETURN_IF_ERROR(r.Finish());
        ASSIGN_OR_RETURN(Principal p,
                         a->CreatePrincipal({name, display.value_or("")}, Context(req)));
        return p.ToJson();
      },
      201)));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "GET", "/api/v1/principals/{name}", "auth.admin", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Principal p, a->GetPrincipal(req.Param("name")));
        return p.ToJson();
      })));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "POST", "/api/v1/principals/{name}/disable", "auth.admin",
      [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Json body, req.JsonBody());
        ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
        ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
        RETURN_IF_ERROR(r.Finish());
        ASSIGN_OR_RETURN(Principal p,
                         a->DisablePrincipal(req.Param("name"), reason.value_or(""), Context(req)));
        return p.ToJson();
      })));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "POST", "/api/v1/principals/{name}/roles", "auth.admin",
      [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Json body, req.JsonBody());
        ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
        ASSIGN_OR_RETURN(std::string role, r.RequiredString("role"));
        ASSIGN_OR_RETURN(auto project, r.OptionalString("project"));
        ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
        RETURN_IF_ERROR(r.Finish());
        ASSIGN_OR_RETURN(Principal p, a->BindRole(req.Param("name"), {role, project.value_or("")},
                                                  reason.value_or(""), Context(req)));
        return p.ToJson();
      },
      201)));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "DELETE", "/api/v1/principals/{name}/roles/{role}", "auth.admin",
      [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({"project", "reason"}));
        ASSIGN_OR_RETURN(Principal p, a->UnbindRole(req.Param("name"),
                                                    {req.Param("role"), req.QueryOr("project", "")},
                                                    req.QueryOr("reason", ""), Context(req)));
        return p.ToJson();
      })));

  // ---- tokens ----
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/tokens", "token.self", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({"principal", "all"}));
        if (req.QueryOr("all", "") == "true") {
          RETURN_IF_ERROR(a->Authorize(req.actor, "auth.admin"));
          return Json{{"items", ListJson(a->ListTokens(""))}};
        }
        ASSIGN_OR_RETURN(std::string owner, TokenOwner(*a, req, req.QueryOr("principal", "")));
        return Json{{"items", ListJson(a->ListTokens(owner))}};
      })));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "POST", "/api/v1/tokens", "token.self",
      [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Json body, req.JsonBody());
        ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
        ASSIGN_OR_RETURN(auto name, r.OptionalString("name"));
        ASSIGN_OR_RETURN(auto principal, r.OptionalString("principal"));
        ASSIGN_OR_RETURN(auto ttl, TtlFrom(r));
        RETURN_IF_ERROR(r.Finish());
        ASSIGN_OR_RETURN(std::string owner, TokenOwner(*a, req, principal.value_or("")));
        ASSIGN_OR_RETURN(NewToken t, a->CreateToken({owner, name.value_or(""), ttl}, Context(req)));
        Json out = t.info.ToJson();
        out["token"] = t.token;
        out["note"] = "store this token now: it is shown only once";
        return out;
      },
      201)));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "GET", "/api/v1/tokens/{id}", "token.self", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(TokenInfo t, a->GetToken(req.Param("id")));
        // Someone else's token is "not found" unless the caller administers
        // tokens: ids are not secrets, but there is no need to confirm them.
        if (t.principal != req.actor && !a->Authorize(req.actor, "auth.admin"))
          return core::NotFound(fmt::format("token {} not found", req.Param("id")));
        return t.ToJson();
      })));
  RETURN_IF_ERROR(router.Add(JsonRoute(
      "POST", "/api/v1/tokens/{id}/revoke", "token.self", [a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Json body, req.JsonBody());
        ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
        ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
        RETURN_IF_ERROR(r.Finish());
        ASSIGN_OR_RETURN(TokenInfo t, a->GetToken(req.Param("id")));
        if (t.principal != req.actor && !a->Authorize(req.actor, "auth.admin"))
          return core::NotFound(fmt::format("token {} not found", req.Param("id")));
        ASSIGN_OR_RETURN(TokenInfo revoked,
                         a->RevokeToken(req.Param("id"), reason.value_or(""), Context(req)));
        return revoked.ToJson();
      })));
  return core::Ok();
}

}  // namespace kervan::auth
