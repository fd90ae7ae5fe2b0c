// The pipelines API: /api/v1/pipelines, /api/v1/pipeline-runs,
// /api/v1/datasets and the public webhook receiver.
#include <fmt/format.h>

#include "pipelines/pipelines.h"

namespace kervan::pipelines {
namespace {

using http::JsonRoute;
using http::Request;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

// {"k": "v", "n": 1} -> {k: "v", n: "1"}: run parameters arrive as JSON
// scalars and are checked against the declared types by ResolveParams.
Result<std::map<std::string, std::string>> ParamsFrom(const Json& j) {
  std::map<std::string, std::string> out;
  if (j.is_null())
    return out;
  if (!j.is_object())
    return core::InvalidArgument("field \"params\": must be an object", "params");
  for (const auto& [k, v] : j.items()) {
    if (v.is_string())
      out[k] = v.get<std::string>();
    else if (v.is_number() || v.is_boolean())
      out[k] = v.dump();
    else
      return core::InvalidArgument(
          fmt::format("field \"params.{}\": must be a string, number or boolean", k),
          "params." + k);
  }
  return out;
}

class Api {
 public:
  Api(Pipelines& pipelines, const auth::Auth& auth) : p_(pipelines), auth_(auth) {}

  // The spec as YAML (any Content-Type but JSON), or JSON {"yaml": "..."}.
  Result<Json> Submit(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"run"}));
    std::string yaml = req.body;
    bool run = req.QueryOr("run", "false") == "true";
    if (req.Header("Content-Type").find("json") != std::string::npos) {
      ASSIGN_OR_RETURN(Json body, req.JsonBody());
      ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
      ASSIGN_OR_RETURN(yaml, r.RequiredString("yaml"));
      RETURN_IF_ERROR(r.Finish());
    }
    ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(yaml));
    RETURN_IF_ERROR(ProjectExists(spec.project));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "pipeline.submit", spec.project));
    ASSIGN_OR_RETURN(SubmitResult submitted, p_.Submit(yaml, Context(req)));
    Json out = submitted.version.ToJson();
    out["created"] = submitted.created;
    if (run) {
      RETURN_IF_ERROR(auth_.Authorize(req.actor, "pipeline.run", spec.project));
      ASSIGN_OR_RETURN(
          PipelineRun r,
          p_.StartRun({.pipeline = spec.name, .version = submitted.version.version}, Context(req)));
      out["run"] = r.ToJson();
    }
    return out;
  }

  Result<Json> List(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(auto list, p_.ListPipelines(auth_.ProjectsWith(req.actor, "pipeline.read")));
    Json items = Json::array();
    for (const auto& p : list)
      items.push_back(p.ToJson());
    return Json{{"pipelines", items}};
  }

  Result<Pipeline> Readable(const Request& req, std::string_view permission) {
    ASSIGN_OR_RETURN(Pipeline p, p_.GetPipeline(req.Param("name")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, p.project));
    return p;
  }

  Result<Json> Get(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"version"}));
    ASSIGN_OR_RETURN(int64_t version, req.QueryInt("version", 0, 0, INT64_MAX / 2));
    ASSIGN_OR_RETURN(Pipeline p, Readable(req, "pipeline.read"));
    ASSIGN_OR_RETURN(PipelineVersion v, p_.GetVersion(p.name, version));
    Json out = v.ToJson();
    out["latest_version"] = p.latest_version;
    return out;
  }

  Result<Json> StartRun(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    Json body = Json::object();
    if (!req.body.empty()) {
      ASSIGN_OR_RETURN(body, req.JsonBody());
    }
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto version, r.OptionalInt("version", 0, INT64_MAX / 2));
    ASSIGN_OR_RETURN(Json params, r.OptionalObject("params"));
    ASSIGN_OR_RETURN(auto no_cache, r.OptionalBool("no_cache"));
    ASSIGN_OR_RETURN(Json no_cache_steps, r.OptionalArray("no_cache_steps"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(Pipeline p, Readable(req, "pipeline.run"));
    StartRunRequest s{
        .pipeline = p.name, .version = version.value_or(0), .no_cache = no_cache.value_or(false)};
    ASSIGN_OR_RETURN(s.params, ParamsFrom(params));
    if (no_cache_steps.is_array()) {
      for (const auto& step : no_cache_steps) {
        if (!step.is_string())
          return core::InvalidArgument("field \"no_cache_steps\": must be step names",
                                       "no_cache_steps");
        s.no_cache_steps.insert(step.get<std::string>());
      }
    }
    s.trigger = {{"kind", "manual"}, {"actor", req.actor}};
    ASSIGN_OR_RETURN(PipelineRun run, p_.StartRun(s, Context(req)));
    return run.ToJson();
  }

  Result<Json> WebhookSecret(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Pipeline p, Readable(req, "pipeline.submit"));
    ASSIGN_OR_RETURN(std::string secret, p_.CreateWebhookSecret(p.name, Context(req)));
    return Json{{"pipeline", p.name},
                {"secret", secret},
                {"url", fmt::format("/api/v1/hooks/pipelines/{}", p.name)},
                {"note",
                 "shown once; configure it as the webhook secret (GitHub) or secret "
                 "token (GitLab)"}};
  }

  // Public: authenticated by the webhook signature, not by a bearer token.
  Result<Json> Hook(const Request& req) {
    std::map<std::string, std::string> headers;
    for (const char* h : {"x-hub-signature-256", "x-github-event", "x-github-delivery",
                          "x-gitlab-token", "x-gitlab-event"}) {
      if (std::string v = req.Header(h); !v.empty())
        headers[h] = v;
    }
    ASSIGN_OR_RETURN(auto outcome,
                     p_.HandleWebhook(req.Param("name"), headers, req.body, req.request_id));
    Json out = {{"pipeline", req.Param("name")}, {"detail", outcome.detail}};
    if (outcome.run)
      out["run_id"] = outcome.run->id;
    return out;
  }

  Result<Json> ListRuns(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"pipeline", "state", "limit"}));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
    ListRunsRequest l{.pipeline = req.QueryOr("pipeline", ""),
                      .state = req.QueryOr("state", ""),
                      .projects = auth_.ProjectsWith(req.actor, "pipeline.read"),
                      .limit = static_cast<int>(limit)};
    static const std::set<std::string> kStates = {std::string(kPending), std::string(kRunning),
                                                  std::string(kSucceeded), std::string(kFailed),
                                                  std::string(kCancelled)};
    if (!l.state.empty() && !kStates.contains(l.state)) {
      return core::InvalidArgument(
          fmt::format("query parameter \"state\": unknown state \"{}\" (Pending, Running, "
                      "Succeeded, Failed, Cancelled)",
                      l.state),
          "state");
    }
    ASSIGN_OR_RETURN(auto runs, p_.ListRuns(l));
    Json items = Json::array();
    for (const auto& r : runs)
      items.push_back(r.ToJson());
    return Json{{"runs", items}};
  }

  Result<PipelineRun> ReadableRun(const Request& req, std::string_view permission) {
    ASSIGN_OR_RETURN(PipelineRun run, p_.GetRun(req.Param("id")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, run.project));
    return run;
  }

  Result<Json> GetRun(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(PipelineRun run, ReadableRun(req, "pipeline.read"));
    return run.ToJson();
  }

  Result<Json> CancelRun(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(PipelineRun run, ReadableRun(req, "pipeline.cancel"));
    ASSIGN_OR_RETURN(PipelineRun cancelled,
                     p_.CancelRun(run.id, reason.value_or(""), Context(req)));
    return cancelled.ToJson();
  }

  Result<Json> StepLogs(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"offset", "max_bytes"}));
    ASSIGN_OR_RETURN(int64_t offset, req.QueryInt("offset", 0, 0, INT64_MAX / 2));
    ASSIGN_OR_RETURN(int64_t max_bytes, req.QueryInt("max_bytes", 1 << 20, 1, 8 << 20));
    ASSIGN_OR_RETURN(PipelineRun run, ReadableRun(req, "pipeline.read"));
    const std::string& step = req.Param("step");
    ASSIGN_OR_RETURN(auto chunk, p_.ReadStepLog(run.id, step, offset, max_bytes));
    std::string state;
    for (const auto& s : run.steps) {
      if (s.step == step)
        state = s.state;
    }
    bool done = state == kSucceeded || state == kFailed || state == kCancelled;
    return Json{{"run_id", run.id},    {"step", step},           {"state", state},
                {"data", chunk.first}, {"offset", chunk.second}, {"done", done}};
  }

  Result<Json> RegisterDataset(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(std::string name, r.RequiredString("name"));
    ASSIGN_OR_RETURN(std::string uri, r.RequiredString("uri"));
    ASSIGN_OR_RETURN(auto project, r.OptionalString("project"));
    RETURN_IF_ERROR(r.Finish());
    std::string proj = project.value_or("default");
    if (auto existing = p_.GetDataset(name); existing && !project)
      proj = existing->project;
    RETURN_IF_ERROR(ProjectExists(proj));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "dataset.write", proj));
    ASSIGN_OR_RETURN(DatasetVersion v,
                     p_.RegisterDataset(name, proj, uri, Json{{"kind", "user"}}, Context(req)));
    return v.ToJson();
  }

  Result<Json> ListDatasets(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(auto list, p_.ListDatasets(auth_.ProjectsWith(req.actor, "dataset.read")));
    Json items = Json::array();
    for (const auto& d : list)
      items.push_back(d.ToJson());
    return Json{{"datasets", items}};
  }

  Result<Json> GetDataset(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Dataset d, p_.GetDataset(req.Param("name")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "dataset.read", d.project));
    ASSIGN_OR_RETURN(auto versions, p_.ListDatasetVersions(d.name));
    Json out = d.ToJson();
    Json items = Json::array();
    for (const auto& v : versions)
      items.push_back(v.ToJson());
    out["versions"] = items;
    return out;
  }

 private:
  Status ProjectExists(const std::string& project) {
    RETURN_IF_ERROR(auth::ValidateProjectName(project));
    if (auto p = auth_.GetProject(project); !p) {
      return core::InvalidArgument(
          fmt::format("field \"project\": project \"{}\" does not exist", project), "project");
    }
    return core::Ok();
  }

  Pipelines& p_;
  const auth::Auth& auth_;
};

}  // namespace

Status RegisterRoutes(http::Router& router, Pipelines& pipelines, const auth::Auth& auth) {
  auto api = std::make_shared<Api>(pipelines, auth);
  auto route = [&](std::string method, std::string pattern, std::string permission,
                   Result<Json> (Api::*fn)(const Request&), int ok = 200) {
    return router.Add(JsonRoute(
        std::move(method), std::move(pattern), std::move(permission),
        [api, fn](const Request& req) { return ((*api).*fn)(req); }, ok));
  };
  RETURN_IF_ERROR(route("POST", "/api/v1/pipelines", "pipeline.submit", &Api::Submit, 201));
  RETURN_IF_ERROR(route("GET", "/api/v1/pipelines", "pipeline.read", &Api::List));
  RETURN_IF_ERROR(route("GET", "/api/v1/pipelines/{name}", "pipeline.read", &Api::Get));
  RETURN_IF_ERROR(
      route("POST", "/api/v1/pipelines/{name}/runs", "pipeline.run", &Api::StartRun, 201));
  RETURN_IF_ERROR(route("POST", "/api/v1/pipelines/{name}/webhook-secret", "pipeline.submit",
                        &Api::WebhookSecret, 201));
  RETURN_IF_ERROR(route("GET", "/api/v1/pipeline-runs", "pipeline.read", &Api::ListRuns));
  RETURN_IF_ERROR(route("GET", "/api/v1/pipeline-runs/{id}", "pipeline.read", &Api::GetRun));
  RETURN_IF_ERROR(
      route("POST", "/api/v1/pipeline-runs/{id}/cancel", "pipeline.cancel", &Api::CancelRun));
  RETURN_IF_ERROR(route("GET", "/api/v1/pipeline-runs/{id}/steps/{step}/logs", "pipeline.read",
                        &Api::StepLogs));
  RETURN_IF_ERROR(route("POST", "/api/v1/datasets", "dataset.write", &Api::RegisterDataset, 201));
  RETURN_IF_ERROR(route("GET", "/api/v1/datasets", "dataset.read", &Api::ListDatasets));
  RETURN_IF_ERROR(route("GET", "/api/v1/datasets/{name}", "dataset.read", &Api::GetDataset));
  http::Route hook = JsonRoute(
      "POST", "/api/v1/hooks/pipelines/{name}", "",
      [api](const Request& req) { return api->Hook(req); }, 202);
  hook.public_route = true;
  hook.max_body_bytes = 1 << 20;
  RETURN_IF_ERROR(router.Add(std::move(hook)));
  return core::Ok();
}

}  // namespace kervan::pipelines
