// The serving control-plane API: /api/v1/deployments, /api/v1/endpoints,
// /api/v1/rollouts and the feeds of standalone gateways.
#include <fmt/format.h>

#include "serving/serving.h"

namespace kervan::serving {
namespace {

using http::JsonRoute;
using http::Request;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

class Api {
 public:
  Api(Serving& serving, const auth::Auth& auth) : s_(serving), auth_(auth) {}

  Result<Json> Deploy(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    DeployRequest d;
    ASSIGN_OR_RETURN(d.model, r.RequiredString("model"));
    ASSIGN_OR_RETURN(auto endpoint, r.OptionalString("endpoint"));
    d.endpoint = endpoint.value_or(d.model);
    ASSIGN_OR_RETURN(auto version, r.OptionalInt("version", 1, INT64_MAX));
    if (!version)
      return core::InvalidArgument("field \"version\": is required", "version");
    d.version = *version;
    ASSIGN_OR_RETURN(Json strategy, r.OptionalObject("strategy"));
    ASSIGN_OR_RETURN(d.spec, RolloutSpec::FromJson(strategy, "strategy."));
    ASSIGN_OR_RETURN(d.sample_percent, r.OptionalNumber("sample_percent"));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    d.reason = reason.value_or("");
    RETURN_IF_ERROR(r.Finish());
    RETURN_IF_ERROR(ValidateEndpointName(d.endpoint));
    // The model's project decides who may deploy it.
    ASSIGN_OR_RETURN(std::string project, s_.ModelProject(d.model));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "deployment.create", project));
    ASSIGN_OR_RETURN(Rollout rollout, s_.Deploy(d, Context(req)));
    return rollout.ToJson();
  }

  Result<Json> ListEndpoints(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(auto list, s_.ListEndpoints(auth_.ProjectsWith(req.actor, "deployment.read")));
    Json items = Json::array();
    for (const auto& e : list)
      items.push_back(e.ToJson());
    return Json{{"endpoints", items}};
  }

  Result<Endpoint> Readable(const Request& req, std::string_view permission) {
    ASSIGN_OR_RETURN(Endpoint e, s_.GetEndpoint(req.Param("name")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, e.project));
    return e;
  }

  Result<Json> GetEndpoint(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Endpoint e, Readable(req, "deployment.read"));
    Json out = e.ToJson();
    out["rollout"] = nullptr;
    if (!e.rollout_id.empty()) {
      ASSIGN_OR_RETURN(Rollout r, s_.GetRollout(e.rollout_id));
      out["rollout"] = r.ToJson();
    }
    ASSIGN_OR_RETURN(auto recent, s_.ListRollouts(e.name, 1));
    out["last_rollout"] = recent.empty() ? Json(nullptr) : recent[0].ToJson();
    RoutingTable table = s_.Table();
    auto it = table.endpoints.find(e.name);
    out["routing"] = it == table.endpoints.end() ? Json(nullptr) : it->second.ToJson()["rule"];
    return out;
  }

  Result<Json> ListRollouts(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"limit"}));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 20, 1, 1000));
    ASSIGN_OR_RETURN(Endpoint e, Readable(req, "deployment.read"));
    ASSIGN_OR_RETURN(auto list, s_.ListRollouts(e.name, static_cast<int>(limit)));
    Json items = Json::array();
    for (const auto& r : list)
      items.push_back(r.ToJson());
    return Json{{"rollouts", items}};
  }

  Result<Json> GetRollout(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Rollout r, s_.GetRollout(req.Param("id")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "deployment.read", r.project));
    return r.ToJson();
  }

  Result<Json> Act(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    auto action = ParseManualAction(req.Param("action"));
    if (!action) {
      return core::InvalidArgument(
          fmt::format("path parameter \"action\": must be promote, pause, resume, abort or "
                      "rollback, got \"{}\"",
                      req.Param("action")),
          "action");
    }
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(Endpoint e, Readable(req, "deployment.manage"));
    ASSIGN_OR_RETURN(Rollout rollout, s_.Act(e.name, *action, reason.value_or(""), Context(req)));
    return rollout.ToJson();
  }

  Result<Json> Samples(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"after", "limit"}));
    ASSIGN_OR_RETURN(int64_t after, req.QueryInt("after", 0, 0, INT64_MAX));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
    ASSIGN_OR_RETURN(Endpoint e, Readable(req, "deployment.read"));
    ASSIGN_OR_RETURN(auto list, s_.ListSamples(e.name, after, static_cast<int>(limit)));
    Json items = Json::array();
    int64_t last = after;
    for (const auto& s : list) {
      items.push_back(s.ToJson());
      last = s.id;
    }
    return Json{{"samples", items}, {"next_after", last}};
  }

  Result<Json> Routing(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    RoutingTable table = s_.Table();
    auto projects = auth_.ProjectsWith(req.actor, "deployment.read");
    if (projects) {
      for (auto it = table.endpoints.begin(); it != table.endpoints.end();) {
        if (!projects->count(it->second.project))
          it = table.endpoints.erase(it);
        else
          ++it;
      }
    }
    return table.ToJson();
  }

  // A standalone gateway's report: {"stats": [StatsReport...], "samples": [Sample...]}.
  Result<Json> Report(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(Json stats, r.OptionalArray("stats"));
    ASSIGN_OR_RETURN(Json samples, r.OptionalArray("samples"));
    RETURN_IF_ERROR(r.Finish());
    std::vector<StatsReport> reports;
    for (size_t i = 0; i < stats.size(); ++i) {
      auto report = StatsReport::FromJson(stats[i]);
      if (!report) {
        return core::InvalidArgument(fmt::format("stats[{}]: {}", i, report.error().message),
                                     fmt::format("stats[{}]", i));
      }
      reports.push_back(std::move(report).value());
    }
    std::vector<Sample> kept;
    for (size_t i = 0; i < samples.size(); ++i) {
      auto sample = Sample::FromJson(samples[i]);
      if (!sample) {
        return core::InvalidArgument(fmt::format("samples[{}]: {}", i, sample.error().message),
                                     fmt::format("samples[{}]", i));
      }
      kept.push_back(std::move(sample).value());
    }
    s_.Ingest(reports);
    RETURN_IF_ERROR(s_.StoreSamples(kept));
    return Json{{"stats", reports.size()}, {"samples", kept.size()}};
  }

 private:
  Serving& s_;
  const auth::Auth& auth_;
};

}  // namespace

Status RegisterRoutes(http::Router& router, Serving& serving, const auth::Auth& auth) {
  auto api = std::make_shared<Api>(serving, auth);
  auto bind = [api](Result<Json> (Api::*fn)(const Request&)) {
    return [api, fn](const Request& req) { return ((*api).*fn)(req); };
  };
  RETURN_IF_ERROR(router.Add(
      JsonRoute("POST", "/api/v1/deployments", "deployment.create", bind(&Api::Deploy), 201)));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/endpoints", "deployment.read", bind(&Api::ListEndpoints))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/endpoints/{name}", "deployment.read", bind(&Api::GetEndpoint))));
  RETURN_IF_ERROR(router.Add(JsonRoute("GET", "/api/v1/endpoints/{name}/rollouts",
                                       "deployment.read", bind(&Api::ListRollouts))));
  RETURN_IF_ERROR(router.Add(JsonRoute("POST", "/api/v1/endpoints/{name}/rollout/{action}",
                                       "deployment.manage", bind(&Api::Act))));
  RETURN_IF_ERROR(router.Add(JsonRoute("GET", "/api/v1/endpoints/{name}/samples", "deployment.read",
                                       bind(&Api::Samples))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/rollouts/{id}", "deployment.read", bind(&Api::GetRollout))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("GET", "/api/v1/serving/routing", "deployment.read", bind(&Api::Routing))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("POST", "/api/v1/serving/reports", "serving.report", bind(&Api::Report))));
  return core::Ok();
}

}  // namespace kervan::serving
