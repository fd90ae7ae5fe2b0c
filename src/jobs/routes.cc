// The jobs API: /api/v1/jobs, /api/v1/nodes, /api/v1/scheduler.
#include <fmt/format.h>

#include "jobs/internal.h"

namespace kervan::jobs {
namespace {

using http::JsonRoute;
using http::Request;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

Json PriorityClassJson(const PriorityClass& c) {
  return {
      {"name", c.name},
      {"value", c.value},
      {"preemption", c.preemption == PreemptionPolicy::kNever ? "Never" : "PreemptLowerPriority"},
      {"preemptible_default", c.preemptible_default}};
}

class Api {
 public:
  Api(Jobs& jobs, const auth::Auth& auth) : jobs_(jobs), auth_(auth) {}

  Result<Job> Readable(const Request& req, std::string_view permission) {
    ASSIGN_OR_RETURN(Job job, jobs_.GetJob(req.Param("id")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, job.spec.project));
    return job;
  }

  // The spec as JSON, or as YAML with Content-Type application/yaml
  // (also text/yaml, application/x-yaml).
  Result<Json> Submit(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    std::string type = req.Header("Content-Type");
    bool yaml = type.find("yaml") != std::string::npos;
    ASSIGN_OR_RETURN(Json body, yaml ? ParseSpecDocument(req.body) : req.JsonBody());
    ASSIGN_OR_RETURN(JobSpec spec, JobSpec::FromJson(body));
    RETURN_IF_ERROR(auth::ValidateProjectName(spec.project));
    if (auto p = auth_.GetProject(spec.project); !p) {
      return core::InvalidArgument(
          fmt::format("field \"project\": project \"{}\" does not exist", spec.project), "project");
    }
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "job.submit", spec.project));
    if (!spec.tracking_run_id.empty() || !spec.tracking_experiment_id.empty())
      RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.write", spec.project));
    ASSIGN_OR_RETURN(Job job, jobs_.Submit(spec, Context(req)));
    return job.ToJson();
  }

  Result<Json> List(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"project", "state", "after", "limit"}));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
    ListJobsRequest l{.state = req.QueryOr("state", ""),
                      .after = req.QueryOr("after", ""),
                      .limit = static_cast<int>(limit)};
    static const std::set<std::string> kStates = {std::string(kQueued),   std::string(kAdmitted),
                                                  std::string(kRunning),  std::string(kSucceeded),
                                                  std::string(kFailed),   std::string(kPreempted),
                                                  std::string(kCancelled)};
    if (!l.state.empty() && !kStates.contains(l.state)) {
      return core::InvalidArgument(
          fmt::format("query parameter \"state\": unknown state \"{}\" (Queued, Admitted, "
                      "Running, Succeeded, Failed, Preempted, Cancelled)",
                      l.state),
          "state");
    }
    l.projects = auth_.ProjectsWith(req.actor, "job.read");
    if (std::string project = req.QueryOr("project", ""); !project.empty()) {
      if (l.projects && !l.projects->contains(project))
        l.projects = std::set<std::string>();
      else
        l.projects = std::set<std::string>{project};
    }
    ASSIGN_OR_RETURN(auto jobs, jobs_.ListJobs(l));
    Json items = Json::array();
    for (const auto& j : jobs)
      items.push_back(j.ToJson());
    Json out = {{"jobs", items}};
    if (static_cast<int64_t>(jobs.size()) == limit)
      out["next_after"] = jobs.back().id;
    return out;
  }

  Result<Json> Get(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Job job, Readable(req, "job.read"));
    return job.ToJson();
  }

  Result<Json> Cancel(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(Job job, Readable(req, "job.cancel"));
    ASSIGN_OR_RETURN(Job cancelled, jobs_.Cancel(job.id, reason.value_or(""), Context(req)));
    return cancelled.ToJson();
  }

  Result<Json> Explain(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Job job, Readable(req, "job.read"));
    ASSIGN_OR_RETURN(Explanation e, jobs_.Explain(job.id));
    Json out = e.ToJson();
    out["job"] = job.id;
    return out;
  }

  Result<Json> Logs(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"attempt", "offset", "max_bytes"}));
    ASSIGN_OR_RETURN(int64_t attempt, req.QueryInt("attempt", 0, 0, 1000));
    ASSIGN_OR_RETURN(int64_t offset, req.QueryInt("offset", 0, 0, INT64_MAX / 2));
    ASSIGN_OR_RETURN(int64_t max_bytes, req.QueryInt("max_bytes", 1 << 20, 1, 8 << 20));
    ASSIGN_OR_RETURN(Job job, Readable(req, "job.read"));
    ASSIGN_OR_RETURN(auto chunk,
                     jobs_.ReadLog(job.id, static_cast<int>(attempt), offset, max_bytes));
    bool final = job.state == kSucceeded || job.state == kCancelled ||
                 (job.state == kFailed && job.finished_us > 0);
    int shown = attempt == 0 ? job.attempts : static_cast<int>(attempt);
    // "done": nothing more will be written to this attempt's log.
    bool attempt_over = shown < job.attempts || final;
    return Json{{"job", job.id},          {"attempt", shown},    {"state", job.state},
                {"data", chunk.first},  // invalid UTF-8 is replaced when sent
                {"offset", chunk.second}, {"done", attempt_over}};
  }

  Result<Json> Nodes(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    Json items = Json::array();
    for (const auto& n : jobs_.nodes()) {
      Json node = {{"name", n.name},
                   {"gpus", n.gpus},
                   {"cpus", n.cpus},
                   {"memory_mb", n.memory_mb},
                   {"schedulable", n.schedulable}};
      if (!n.gpu_type.empty())
        node["gpu_type"] = n.gpu_type;
      items.push_back(std::move(node));
    }
    return Json{{"nodes", items}};
  }

  Result<Json> Scheduler(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    const PolicyConfig& p = jobs_.policy();
    Json classes = Json::array();
    for (const auto& c : p.priority_classes)
      classes.push_back(PriorityClassJson(c));
    Json quotas = Json::array();
    for (const auto& q : p.quotas) {
      quotas.push_back({{"project", q.project},
                        {"nominal_gpus", q.nominal_gpus},
                        {"borrowing_limit", q.borrowing_limit},
                        {"weight", q.weight}});
    }
    std::string_view mode = p.mode == PolicyMode::kFifo             ? "fifo"
                            : p.mode == PolicyMode::kStrictPriority ? "strict"
                                                                    : "kervan";
    return Json{{"policy", mode},
                {"preemption", p.preemption},
                {"backfill", p.backfill},
                {"priority_classes", classes},
                {"quotas", quotas}};
  }

 private:
  Jobs& jobs_;
  const auth::Auth& auth_;
};

}  // namespace

Status RegisterRoutes(http::Router& router, Jobs& jobs, const auth::Auth& auth) {
  auto api = std::make_shared<Api>(jobs, auth);
  auto route = [&](std::string method, std::string pattern, std::string permission,
                   Result<Json> (Api::*fn)(const Request&), int ok = 200) {
    return router.Add(JsonRoute(
        std::move(method), std::move(pattern), std::move(permission),
        [api, fn](const Request& req) { return ((*api).*fn)(req); }, ok));
  };
  RETURN_IF_ERROR(route("POST", "/api/v1/jobs", "job.submit", &Api::Submit, 201));
  RETURN_IF_ERROR(route("GET", "/api/v1/jobs", "job.read", &Api::List));
  RETURN_IF_ERROR(route("GET", "/api/v1/jobs/{id}", "job.read", &Api::Get));
  RETURN_IF_ERROR(route("POST", "/api/v1/jobs/{id}/cancel", "job.cancel", &Api::Cancel));
  RETURN_IF_ERROR(route("GET", "/api/v1/jobs/{id}/explain", "job.read", &Api::Explain));
  RETURN_IF_ERROR(route("GET", "/api/v1/jobs/{id}/logs", "job.read", &Api::Logs));
  RETURN_IF_ERROR(route("GET", "/api/v1/nodes", "job.read", &Api::Nodes));
  RETURN_IF_ERROR(route("GET", "/api/v1/scheduler", "job.read", &Api::Scheduler));
  return core::Ok();
}

}  // namespace kervan::jobs
