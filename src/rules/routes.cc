// The rules API: /api/v1/rules and /api/v1/approvals.
#include <fmt/format.h>

#include "rules/rules.h"

namespace kervan::rules {
namespace {

using http::JsonRoute;
using http::Request;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

Result<int64_t> TimeParam(const Json& body, const char* key, int64_t fallback) {
  if (!body.contains(key))
    return fallback;
  const Json& v = body[key];
  if (v.is_string()) {
    auto t = core::ParseRfc3339(v.get<std::string>());
    if (t)
      return *t;
  }
  return core::InvalidArgument(
      fmt::format("field \"{}\": must be an RFC 3339 time such as 2026-11-28T10:00:00Z", key), key);
}

// The rule as raw YAML, or {"yaml": "..."} as the pipelines API takes specs.
Result<std::string> YamlBody(const Request& req) {
  if (req.body.empty())
    return core::InvalidArgument("body: the rule's YAML is required", "body");
  if (req.body.front() == '{') {
    auto j = core::ParseJson(req.body);
    if (j && j->is_object()) {
      if (j->size() != 1 || !j->contains("yaml") || !(*j)["yaml"].is_string()) {
        return core::InvalidArgument("body: a JSON body must be {\"yaml\": \"<the rule>\"}",
                                     "yaml");
      }
      return (*j)["yaml"].get<std::string>();
    }
  }
  return req.body;
}

class Api {
 public:
  Api(Rules& rules, const auth::Auth& auth) : r_(rules), auth_(auth) {}

  // POST /api/v1/rules with the rule's YAML as the body.
  Result<Json> Submit(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(std::string yaml, YamlBody(req));
    ASSIGN_OR_RETURN(RuleSpec spec, ParseRule(yaml));
    // A global rule acts across projects: it needs a global binding.
    RETURN_IF_ERROR(auth_.AuthorizeIn(req.actor, "rule.write", spec.project));
    ASSIGN_OR_RETURN(SubmitResult result, r_.Submit(yaml, Context(req)));
    return Json{{"rule", result.rule.ToJson()}, {"created_version", result.created_version}};
  }

  Result<Json> List(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(auto list, r_.List(auth_.ProjectsWith(req.actor, "rule.read")));
    Json items = Json::array();
    for (const auto& r : list)
      items.push_back(r.ToJson());
    return Json{{"rules", items}};
  }

  Result<Rule> Readable(const Request& req, std::string_view permission) {
    ASSIGN_OR_RETURN(Rule rule, r_.Get(req.Param("name")));
    RETURN_IF_ERROR(auth_.AuthorizeIn(req.actor, permission, rule.project));
    return rule;
  }

  Result<Json> Get(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Rule rule, Readable(req, "rule.read"));
    return rule.ToJson();
  }

  Result<Json> Versions(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Rule rule, Readable(req, "rule.read"));
    ASSIGN_OR_RETURN(auto list, r_.Versions(rule.name));
    Json items = Json::array();
    for (const auto& v : list)
      items.push_back(v.ToJson());
    return Json{{"versions", items}};
  }

  Result<Json> Actions(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"limit"}));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
    ASSIGN_OR_RETURN(Rule rule, Readable(req, "rule.read"));
    ASSIGN_OR_RETURN(auto list, r_.Actions(rule.name, static_cast<int>(limit)));
    return Json{{"actions", list}};
  }

  Result<Json> Toggle(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    const std::string& action = req.Param("action");
    if (action != "enable" && action != "disable") {
      return core::InvalidArgument(
          fmt::format("path parameter \"action\": must be enable or disable, got \"{}\"", action),
          "action");
    }
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(Rule rule, Readable(req, "rule.write"));
    ASSIGN_OR_RETURN(
        Rule out, r_.SetEnabled(rule.name, action == "enable", reason.value_or(""), Context(req)));
    return out.ToJson();
  }

  // POST /api/v1/rules/{name}/test: {"from": t, "to": t, "yaml": "..."?}.
  // Without yaml, the stored latest version is replayed.
  Result<Json> Test(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    if (!body.is_object())
      return core::InvalidArgument("body: must be a JSON object", "body");
    for (const auto& [k, v] : body.items()) {
      if (k != "from" && k != "to" && k != "yaml") {
        return core::InvalidArgument(
            fmt::format("field \"{}\": unknown; a test takes from, to and yaml", k), k);
      }
    }
    RuleSpec spec;
    if (body.contains("yaml")) {
      if (!body["yaml"].is_string())
        return core::InvalidArgument("field \"yaml\": must be a string", "yaml");
      ASSIGN_OR_RETURN(spec, ParseRule(body["yaml"].get<std::string>()));
      if (spec.name != req.Param("name")) {
        return core::InvalidArgument(
            fmt::format("field \"yaml\": the rule is named \"{}\", not \"{}\"", spec.name,
                        req.Param("name")),
            "yaml");
      }
      RETURN_IF_ERROR(auth_.AuthorizeIn(req.actor, "rule.read", spec.project));
    } else {
      ASSIGN_OR_RETURN(Rule rule, Readable(req, "rule.read"));
      spec = rule.spec;
    }
    int64_t now = core::NowMicros();
    ASSIGN_OR_RETURN(int64_t from, TimeParam(body, "from", now - int64_t{86400} * 1'000'000));
    ASSIGN_OR_RETURN(int64_t to, TimeParam(body, "to", now + 1));
    return r_.Replay(spec, from, to);
  }

  Result<Json> Approvals(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"state"}));
    std::string state = req.QueryOr("state", "");
    if (!state.empty() && state != "Pending" && state != "Approved" && state != "Rejected") {
      return core::InvalidArgument(
          fmt::format("query parameter \"state\": must be Pending, Approved or Rejected, got "
                      "\"{}\"",
                      state),
          "state");
    }
    ASSIGN_OR_RETURN(auto list, r_.ListApprovals(state));
    auto projects = auth_.ProjectsWith(req.actor, "rule.read");
    Json items = Json::array();
    for (const auto& e : list) {
      if (projects && !projects->count(e.data.value("project", std::string())))
        continue;
      items.push_back(e.ToJson());
    }
    return Json{{"approvals", items}};
  }

  Result<Json> Decide(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    const std::string& action = req.Param("action");
    if (action != "approve" && action != "reject") {
      return core::InvalidArgument(
          fmt::format("path parameter \"action\": must be approve or reject, got \"{}\"", action),
          "action");
    }
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(store::Entity approval, r_.GetApproval(req.Param("id")));
    RETURN_IF_ERROR(auth_.AuthorizeIn(req.actor, "approval.decide",
                                      approval.data.value("project", std::string())));
    ASSIGN_OR_RETURN(store::Entity out, r_.Decide(approval.id, action == "approve",
                                                  reason.value_or(""), Context(req)));
    return out.ToJson();
  }

 private:
  Rules& r_;
  const auth::Auth& auth_;
};

}  // namespace

Status RegisterRoutes(http::Router& router, Rules& rules, const auth::Auth& auth) {
  auto api = std::make_shared<Api>(rules, auth);
  auto bind = [api](Result<Json> (Api::*fn)(const Request&)) {
    return [api, fn](const Request& req) { return ((*api).*fn)(req); };
  };
  RETURN_IF_ERROR(
      router.Add(JsonRoute("POST", "/api/v1/rules", "rule.write", bind(&Api::Submit), 201)));
  RETURN_IF_ERROR(router.Add(JsonRoute("GET", "/api/v1/rules", "rule.read", bind(&Api::List))));
  RETURN_IF_ERROR(
      router.Add(JsonRoute("GET", "/api/v1/rules/{name}", "rule.read", bind(&Api::Get))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/rules/{name}/versions", "rule.read", bind(&Api::Versions))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/rules/{name}/actions", "rule.read", bind(&Api::Actions))));
  RETURN_IF_ERROR(
      router.Add(JsonRoute("POST", "/api/v1/rules/{name}/test", "rule.read", bind(&Api::Test))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("POST", "/api/v1/rules/{name}/{action}", "rule.write", bind(&Api::Toggle))));
  RETURN_IF_ERROR(
      router.Add(JsonRoute("GET", "/api/v1/approvals", "rule.read", bind(&Api::Approvals))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("POST", "/api/v1/approvals/{id}/{action}", "approval.decide", bind(&Api::Decide))));
  return core::Ok();
}

}  // namespace kervan::rules
