// The native registry API: /api/v1/models/...
#include <charconv>

#include <fmt/format.h>

#include "registry/registry.h"

namespace kervan::registry {
namespace {

using http::JsonRoute;
using http::Request;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

Result<std::map<std::string, std::string>> TagsField(const Json& tags) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : tags.items()) {
    if (k.empty() || k.size() > 250)
      return core::InvalidArgument("field \"tags\": keys must be 1-250 characters", "tags");
    if (!v.is_string()) {
      return core::InvalidArgument(
          fmt::format("field \"tags.{}\": must be a string, got {}", k, core::JsonTypeName(v)),
          "tags." + k);
    }
    out[k] = v.get<std::string>();
  }
  return out;
}

Result<std::vector<GateCheck>> ChecksField(core::ObjectReader& r, const std::string& key) {
  ASSIGN_OR_RETURN(Json validation, r.OptionalObject(key));
  ASSIGN_OR_RETURN(auto v, core::ObjectReader::Of(validation, key + "."));
  ASSIGN_OR_RETURN(Json checks, v.OptionalArray("checks"));
  RETURN_IF_ERROR(v.Finish());
  std::vector<GateCheck> out;
  for (size_t i = 0; i < checks.size(); ++i) {
    ASSIGN_OR_RETURN(GateCheck c,
                     GateCheck::FromJson(checks[i], fmt::format("{}.checks[{}].", key, i)));
    out.push_back(std::move(c));
  }
  return out;
}

Result<int64_t> VersionParam(const Request& req) {
  const std::string& text = req.Param("version");
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1) {
    return core::InvalidArgument(
        fmt::format("path parameter \"version\": must be a positive integer, got \"{}\"", text),
        "version");
  }
  return v;
}

Result<std::string> ReasonFromBody(const Request& req) {
  ASSIGN_OR_RETURN(Json body, req.JsonBody());
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
  ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
  RETURN_IF_ERROR(r.Finish());
  return reason.value_or("");
}

class Api {
 public:
  Api(Registry& registry, const auth::Auth& auth) : registry_(registry), auth_(auth) {}

  // The model, once the caller holds `permission` in its project.
  Result<RegisteredModel> Model(const Request& req, std::string_view permission) {
    ASSIGN_OR_RETURN(RegisteredModel m, registry_.GetModel(req.Param("name")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, m.project));
    return m;
  }

  Result<Json> CreateModel(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    CreateModelRequest c;
    ASSIGN_OR_RETURN(c.name, r.RequiredString("name"));
    ASSIGN_OR_RETURN(auto project, r.OptionalString("project"));
    c.project = project.value_or("default");
    ASSIGN_OR_RETURN(auto description, r.OptionalString("description"));
    c.description = description.value_or("");
    ASSIGN_OR_RETURN(Json tags, r.OptionalObject("tags"));
    ASSIGN_OR_RETURN(c.tags, TagsField(tags));
    bool has_gate = r.Has("validation");
    ASSIGN_OR_RETURN(c.checks, ChecksField(r, "validation"));
    RETURN_IF_ERROR(r.Finish());
    RETURN_IF_ERROR(ValidateModelName(c.name));
    RETURN_IF_ERROR(auth::ValidateProjectName(c.project));
    if (auto p = auth_.GetProject(c.project); !p) {
      return core::InvalidArgument(
          fmt::format("field \"project\": project \"{}\" does not exist", c.project), "project");
    }
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "registry.write", c.project));
    if (has_gate)
      RETURN_IF_ERROR(auth_.Authorize(req.actor, "registry.configure", c.project));
    ASSIGN_OR_RETURN(RegisteredModel m, registry_.CreateModel(c, Context(req)));
    return m.ToJson();
  }

  Result<Json> ListModels(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"project", "after", "limit"}));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
    ListModelsRequest l{.after = req.QueryOr("after", ""), .limit = static_cast<int>(limit)};
    l.projects = auth_.ProjectsWith(req.actor, "registry.read");
    if (std::string project = req.QueryOr("project", ""); !project.empty()) {
      if (l.projects && !l.projects->contains(project))
        l.projects = std::set<std::string>();
      else
        l.projects = std::set<std::string>{project};
    }
    ASSIGN_OR_RETURN(auto models, registry_.ListModels(l));
    Json items = Json::array();
    for (const auto& m : models)
      items.push_back(m.ToJson());
    Json out = {{"items", items}};
    if (static_cast<int64_t>(models.size()) == limit)
      out["next_after"] = models.back().name;
    return out;
  }

  Result<Json> GetModel(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.read"));
    return m.ToJson();
  }

  Result<Json> UpdateModel(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto description, r.OptionalString("description"));
    std::optional<std::map<std::string, std::string>> tags;
    if (r.Has("tags")) {
      ASSIGN_OR_RETURN(Json t, r.OptionalObject("tags"));
      ASSIGN_OR_RETURN(tags, TagsField(t));
    }
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.write"));
    ASSIGN_OR_RETURN(m, registry_.UpdateModel(m.name, description, tags, Context(req)));
    return m.ToJson();
  }

  Result<Json> SetGate(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    // {"checks": [...], "reason": "..."}: the same shape as "validation" on create.
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    ASSIGN_OR_RETURN(Json checks_json, r.OptionalArray("checks"));
    RETURN_IF_ERROR(r.Finish());
    std::vector<GateCheck> checks;
    for (size_t i = 0; i < checks_json.size(); ++i) {
      ASSIGN_OR_RETURN(GateCheck c,
                       GateCheck::FromJson(checks_json[i], fmt::format("checks[{}].", i)));
      checks.push_back(std::move(c));
    }
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.configure"));
    ASSIGN_OR_RETURN(
        m, registry_.SetGate(m.name, std::move(checks), reason.value_or(""), Context(req)));
    return m.ToJson();
  }

  Result<Json> RegisterVersion(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    RegisterVersionRequest v;
    ASSIGN_OR_RETURN(auto run, r.OptionalString("source_run_id"));
    v.source_run_id = run.value_or("");
    ASSIGN_OR_RETURN(auto uri, r.OptionalString("artifact_uri"));
    v.artifact_uri = uri.value_or("");
    ASSIGN_OR_RETURN(Json metrics, r.OptionalObject("metrics"));
    for (const auto& [k, val] : metrics.items()) {
      if (!val.is_number()) {
        return core::InvalidArgument(fmt::format("field \"metrics.{}\": must be a number, got {}",
                                                 k, core::JsonTypeName(val)),
                                     "metrics." + k);
      }
      v.metrics[k] = val.get<double>();
    }
    if (r.Has("signature")) {
      ASSIGN_OR_RETURN(v.signature, r.OptionalObject("signature"));
    }
    ASSIGN_OR_RETURN(Json tags, r.OptionalObject("tags"));
    ASSIGN_OR_RETURN(v.tags, TagsField(tags));
    ASSIGN_OR_RETURN(auto description, r.OptionalString("description"));
    v.description = description.value_or("");
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.write"));
    ASSIGN_OR_RETURN(ModelVersion mv, registry_.RegisterVersion(m.name, v, Context(req)));
    return mv.ToJson();
  }

  Result<Json> ListVersions(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"state", "after", "limit"}));
    ASSIGN_OR_RETURN(int64_t after, req.QueryInt("after", 0, 0, INT64_MAX));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.read"));
    ASSIGN_OR_RETURN(auto versions, registry_.ListVersions(m.name, req.QueryOr("state", ""), after,
                                                           static_cast<int>(limit)));
    Json items = Json::array();
    for (const auto& v : versions)
      items.push_back(v.ToJson());
    Json out = {{"items", items}};
    if (static_cast<int64_t>(versions.size()) == limit)
      out["next_after"] = versions.back().version;
    return out;
  }

  Result<Json> GetVersion(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(int64_t version, VersionParam(req));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.read"));
    ASSIGN_OR_RETURN(ModelVersion v, registry_.GetVersion(m.name, version));
    return v.ToJson();
  }

  Result<Json> Transition(const Request& req, ManualTransition t, std::string_view permission) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(int64_t version, VersionParam(req));
    ASSIGN_OR_RETURN(std::string reason, ReasonFromBody(req));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, permission));
    ASSIGN_OR_RETURN(ModelVersion v,
                     registry_.Transition(m.name, version, t, reason, Context(req)));
    return v.ToJson();
  }

  Result<Json> Lineage(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(int64_t version, VersionParam(req));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.read"));
    return registry_.Lineage(m.name, version);
  }

  Result<Json> SetAlias(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto version, r.OptionalInt("version", 1, INT64_MAX));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    RETURN_IF_ERROR(r.Finish());
    if (!version)
      return core::InvalidArgument("field \"version\": required", "version");
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.alias"));
    ASSIGN_OR_RETURN(AliasChange c, registry_.SetAlias(m.name, req.Param("alias"), *version,
                                                       reason.value_or(""), Context(req)));
    return c.ToJson();
  }

  Result<Json> DeleteAlias(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"reason"}));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.alias"));
    ASSIGN_OR_RETURN(AliasChange c, registry_.DeleteAlias(m.name, req.Param("alias"),
                                                          req.QueryOr("reason", ""), Context(req)));
    return c.ToJson();
  }

  Result<Json> GetAlias(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, "registry.read"));
    const std::string& alias = req.Param("alias");
    if (alias == "latest") {
      // Not stored: always the newest version (reserved so nobody can pin it).
      return Json{{"model", m.name},
                  {"alias", alias},
                  {"version", m.latest_version ? Json(m.latest_version) : Json(nullptr)},
                  {"computed", true},
                  {"history", Json::array()}};
    }
    RETURN_IF_ERROR(ValidateAliasName(alias));
    ASSIGN_OR_RETURN(auto history, registry_.AliasHistory(m.name, alias));
    auto current = m.aliases.find(alias);
    if (current == m.aliases.end() && history.empty())
      return core::NotFound(fmt::format("model \"{}\" has no alias \"{}\"", m.name, alias));
    Json h = Json::array();
    for (const auto& c : history)
      h.push_back(c.ToJson());
    return Json{{"model", m.name},
                {"alias", alias},
                {"version", current == m.aliases.end() ? Json(nullptr) : Json(current->second)},
                {"history", h}};
  }

 private:
  Registry& registry_;
  const auth::Auth& auth_;
};

}  // namespace

Status RegisterRoutes(http::Router& router, Registry& registry, const auth::Auth& auth) {
  auto api = std::make_shared<Api>(registry, auth);
  auto route = [&](std::string method, std::string pattern, std::string permission,
                   Result<Json> (Api::*fn)(const Request&), int ok = 200) {
    return router.Add(JsonRoute(
        std::move(method), std::move(pattern), std::move(permission),
        [api, fn](const Request& req) { return ((*api).*fn)(req); }, ok));
  };
  auto transition = [&](std::string verb, ManualTransition t, std::string permission) {
    return router.Add(JsonRoute(
        "POST", "/api/v1/models/{name}/versions/{version}/" + verb, permission,
        [api, t, permission](const Request& req) { return api->Transition(req, t, permission); }));
  };
  RETURN_IF_ERROR(route("POST", "/api/v1/models", "registry.write", &Api::CreateModel, 201));
  RETURN_IF_ERROR(route("GET", "/api/v1/models", "registry.read", &Api::ListModels));
  RETURN_IF_ERROR(route("GET", "/api/v1/models/{name}", "registry.read", &Api::GetModel));
  RETURN_IF_ERROR(route("PATCH", "/api/v1/models/{name}", "registry.write", &Api::UpdateModel));
  RETURN_IF_ERROR(
      route("PUT", "/api/v1/models/{name}/validation", "registry.configure", &Api::SetGate));
  RETURN_IF_ERROR(route("POST", "/api/v1/models/{name}/versions", "registry.write",
                        &Api::RegisterVersion, 201));
  RETURN_IF_ERROR(
      route("GET", "/api/v1/models/{name}/versions", "registry.read", &Api::ListVersions));
  RETURN_IF_ERROR(
      route("GET", "/api/v1/models/{name}/versions/{version}", "registry.read", &Api::GetVersion));
  RETURN_IF_ERROR(route("GET", "/api/v1/models/{name}/versions/{version}/lineage", "registry.read",
                        &Api::Lineage));
  RETURN_IF_ERROR(transition("approve", ManualTransition::kApprove, "model_version.approve"));
  RETURN_IF_ERROR(transition("reject", ManualTransition::kReject, "model_version.approve"));
  RETURN_IF_ERROR(transition("archive", ManualTransition::kArchive, "model_version.archive"));
  RETURN_IF_ERROR(
      route("GET", "/api/v1/models/{name}/aliases/{alias}", "registry.read", &Api::GetAlias));
  RETURN_IF_ERROR(
      route("PUT", "/api/v1/models/{name}/aliases/{alias}", "registry.alias", &Api::SetAlias));
  RETURN_IF_ERROR(route("DELETE", "/api/v1/models/{name}/aliases/{alias}", "registry.alias",
                        &Api::DeleteAlias));
  return core::Ok();
}

}  // namespace kervan::registry
