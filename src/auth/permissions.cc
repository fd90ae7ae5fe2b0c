// The permission catalog and the built-in roles: data, in one place, so the
// docs table (docs/security.md) and the RBAC matrix test read the same truth.
#include <algorithm>

#include "auth/auth.h"

namespace kervan::auth {
namespace {

std::set<std::string> Union(std::set<std::string> a, const std::set<std::string>& b) {
  a.insert(b.begin(), b.end());
  return a;
}

}  // namespace

const std::vector<PermissionInfo>& Permissions() {
  static const std::vector<PermissionInfo> kPermissions = {
      {"system.read", "server version and build"},
      {"metrics.read", "GET /metrics when auth.protect_metrics is on"},
      {"self.read", "who am I, my roles and permissions; the role and permission tables"},
      {"token.self", "create, list and revoke one's own API tokens"},
      {"project.read", "list and read projects"},
      {"project.write", "create projects"},
      {"auth.admin", "manage users, service accounts, role bindings and anyone's tokens"},
      {"lifecycle.read", "read lifecycle declarations"},
      {"entity.read", "read entities (state projection) and their history"},
      {"event.read", "read the event log (list, long-poll, stream)"},
      {"audit.read", "query and export the audit log"},
      {"audit.verify", "recompute the audit log's hash chain"},
      {"registry.read", "read registered models, versions, aliases and lineage"},
      {"registry.write", "create models, register versions, edit descriptions and tags"},
      {"registry.configure", "set a model's validation gates"},
      {"registry.alias", "move and delete model aliases (champion, challenger, ...)"},
      {"model_version.approve", "manually approve or reject a model version (with a reason)"},
      {"model_version.archive", "archive a model version (with a reason)"},
      {"model_version.validate",
       "record automated validation results (granted to no role: system:registry only)"},
      {"tracking.read", "read experiments, runs, params, metrics and tags (MLflow API included)"},
      {"tracking.write",
       "create, update, delete and restore experiments and runs; log params, metrics, tags"},
      {"artifact.read", "list and download run artifacts"},
      {"artifact.write", "upload and delete run artifacts"},
      {"job.read", "read training jobs, their logs and explanations, nodes and the scheduler"},
      {"job.submit", "submit training jobs"},
      {"job.cancel", "cancel training jobs (with a reason)"},
      {"job.schedule",
       "carry out scheduling decisions (granted to no role: system:scheduler only)"},
      {"pipeline.read", "read pipelines, their versions, runs, step results and step logs"},
      {"pipeline.submit", "submit pipeline specs (new versions) and create webhook secrets"},
      {"pipeline.run", "start pipeline runs"},
      {"pipeline.cancel", "cancel pipeline runs (with a reason)"},
      {"pipeline.orchestrate",
       "carry out pipeline runs' steps (granted to no role: system:pipelines only)"},
      {"dataset.read", "read datasets and their versions"},
      {"dataset.write", "register dataset versions"},
      {"deployment.read",
       "read endpoints, rollouts, their analysis, traffic samples and the routing table"},
      {"deployment.create", "deploy DeploymentReady model versions to endpoints"},
      {"deployment.manage", "promote, pause, resume, abort and roll back rollouts (with a reason)"},
      {"deployment.orchestrate",
       "carry out rollouts' analysis and decisions (granted to no role: system:serving only)"},
      {"serving.predict", "send inference requests to endpoints"},
      {"serving.report",
       "report a standalone gateway's traffic statistics and samples to the server"},
      {"monitor.read", "read monitors, their evaluations (drift, quality, performance) and alerts"},
      {"monitor.manage", "configure, stop, resume and resolve monitors (with a reason)"},
      {"monitor.orchestrate",
       "evaluate monitors' windows (granted to no role: system:monitoring only)"},
      {"feedback.write", "send ground-truth labels for earlier predictions"},
      {"rule.read", "read rules, their versions, decided actions and approvals; replay rules"},
      {"rule.write", "submit rules (new versions), enable and disable them (with a reason)"},
      {"rule.orchestrate", "carry out rules' actions (granted to no role: system:rules only)"},
      {"approval.decide", "approve or reject actions a rule asks a person for (with a reason)"},
      {"webhook.read", "list webhook subscriptions and their deliveries"},
      {"webhook.write", "create and delete webhook subscriptions"},
  };
  return kPermissions;
}

bool IsKnownPermission(std::string_view permission) {
  const auto& all = Permissions();
  return std::any_of(all.begin(), all.end(),
                     [&](const PermissionInfo& p) { return p.name == permission; });
}

const std::vector<RoleInfo>& Roles() {
  static const std::vector<RoleInfo> kRoles = [] {
    std::set<std::string> viewer = {
        "system.read",     "metrics.read",    "self.read",    "token.self",    "project.read",
        "lifecycle.read",  "entity.read",     "event.read",   "audit.read",    "registry.read",
        "tracking.read",   "artifact.read",   "job.read",     "pipeline.read", "dataset.read",
        "deployment.read", "serving.predict", "monitor.read", "rule.read"};
    std::set<std::string> scientist =
        Union(viewer, {"registry.write", "tracking.write", "artifact.write", "job.submit",
                       "job.cancel", "pipeline.submit", "pipeline.run", "pipeline.cancel",
                       "dataset.write", "feedback.write"});
    std::set<std::string> engineer =
        Union(scientist, {"registry.configure", "registry.alias", "model_version.approve",
                          "model_version.archive", "audit.verify", "webhook.read", "webhook.write",
                          "deployment.create", "deployment.manage", "serving.report",
                          "monitor.manage", "rule.write", "approval.decide"});
    std::set<std::string> admin;
    for (const auto& p : Permissions()) {
      if (p.name != "model_version.validate" && p.name != "job.schedule" &&
          !p.name.ends_with(".orchestrate"))
        admin.insert(p.name);
    }
    return std::vector<RoleInfo>{
        {"viewer", "reads everything in its scope: experiments, runs, models, events, audit",
         viewer},
        {"scientist",
         "viewer + tracks experiments and runs, uploads artifacts, registers models and versions",
         scientist},
        {"engineer",
         "scientist + configures gates, approves/rejects/archives versions, moves aliases, "
         "manages webhooks, deploys models and manages rollouts",
         engineer},
        {"admin", "everything, including identities, projects and tokens", admin},
    };
  }();
  return kRoles;
}

const RoleInfo* FindRole(std::string_view name) {
  for (const auto& r : Roles()) {
    if (r.name == name)
      return &r;
  }
  return nullptr;
}

}  // namespace kervan::auth
