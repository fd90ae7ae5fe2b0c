// The rule engine's service: storage and versions, evaluation on events and
// on a period, firings, actions with retries, approvals, replay.
#include "rules/rules.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "core/sha256.h"
#include "monitoring/monitoring.h"
#include "pipelines/pipelines.h"
#include "registry/registry.h"
#include "serving/serving.h"

namespace kervan::rules {
namespace {

using store::CommandContext;
using store::Row;

Json ParseOr(const std::string& text, Json fallback) {
  if (text.empty())
    return fallback;
  auto parsed = core::ParseJson(text);
  return parsed ? std::move(*parsed) : fallback;
}

struct RuleMetrics {
  core::Family<core::Counter>& evaluations = core::GlobalMetrics().AddCounter(
      "kervan_rule_evaluations_total", "Times a rule's condition was evaluated", {"rule"});
  core::Family<core::Counter>& firings = core::GlobalMetrics().AddCounter(
      "kervan_rule_firings_total", "Times a rule fired (dry runs included)", {"rule"});
  core::Family<core::Counter>& action_failures = core::GlobalMetrics().AddCounter(
      "kervan_rule_action_failures_total", "Failed attempts of rules' actions", {"rule", "action"});
};

RuleMetrics& Metrics() {
  static RuleMetrics m;
  return m;
}

Result<core::StateMachine> ApprovalMachine() {
  return core::StateMachine::Build(std::string(kApprovalKind), {"Pending", "Approved", "Rejected"},
                                   "Pending",
                                   {
                                       {.name = "approve",
                                        .from = {"Pending"},
                                        .to = "Approved",
                                        .event = "approved",
                                        .permission = "approval.decide",
                                        .reason_required = true},
                                       {.name = "reject",
                                        .from = {"Pending"},
                                        .to = "Rejected",
                                        .event = "rejected",
                                        .permission = "approval.decide",
                                        .reason_required = true},
                                   });
}

constexpr std::string_view kRuleColumns =
    "r.name, r.project, r.version, r.enabled, r.created_by, r.created_us, r.updated_us, v.yaml";

Result<Rule> RuleFromRow(const Row& row) {
  Rule r;
  r.name = row.Text(0);
  r.project = row.Text(1);
  r.version = row.Int(2);
  r.enabled = row.Int(3) != 0;
  r.created_by = row.Text(4);
  r.created_us = row.Int(5);
  r.updated_us = row.Int(6);
  r.yaml = row.Text(7);
  ASSIGN_OR_RETURN(r.spec, ParseRule(r.yaml));
  return r;
}

// The flat numbers an event carries for rules: data.data.metrics (lifecycle
// transitions) or data.metrics.
std::map<std::string, double> EventMetrics(const Json& data) {
  std::map<std::string, double> out;
  const Json* m = nullptr;
  if (data.contains("data") && data["data"].is_object() && data["data"].contains("metrics"))
    m = &data["data"]["metrics"];
  else if (data.contains("metrics"))
    m = &data["metrics"];
  if (m && m->is_object()) {
    for (const auto& [k, v] : m->items()) {
      if (v.is_number())
        out[k] = v.get<double>();
    }
  }
  return out;
}

Observation FromEvent(const store::Event& e) {
  Observation obs;
  obs.time_us = e.time_us;
  obs.event_seq = e.seq;
  obs.subject = e.subject_id;
  obs.attributes = {
      {"type", e.type},   {"subject_kind", e.subject_kind}, {"subject_id", e.subject_id},
      {"actor", e.actor}, {"project", e.project},           {"reason", e.reason}};
  obs.data = ParseOr(e.data, Json::object());
  if (obs.data.contains("to") && obs.data["to"].is_string())
    obs.attributes["state"] = obs.data["to"].get<std::string>();
  // Model versions ("<model>:<version>") name their model and version, so
  // a rule can say `model = 'bc'` and an action `version: "{{version}}"`.
  if (e.subject_kind == "model_version") {
    size_t colon = e.subject_id.rfind(':');
    if (colon != std::string::npos) {
      obs.attributes["model"] = e.subject_id.substr(0, colon);
      obs.attributes["version"] = e.subject_id.substr(colon + 1);
    }
  }
  obs.metrics = EventMetrics(obs.data);
  return obs;
}

Observation FromMonitor(const std::string& id, const std::string& model, int64_t version,
                        const std::string& state, const std::string& project, const Json& last,
                        int64_t now_us) {
  Observation obs;
  obs.time_us = now_us;
  obs.subject = id;
  obs.attributes = {{"subject_kind", "monitor"},
                    {"subject_id", id},
                    {"endpoint", id},
                    {"model", model},
                    {"version", std::to_string(version)},
                    {"state", state},
                    {"project", project}};
  if (last.is_object()) {
    obs.data = last;
    obs.metrics = EventMetrics(last);
  }
  return obs;
}

// Upserts one (rule, subject) condition state.
Status SaveState(store::Connection& conn, const std::string& rule, const std::string& subject,
                 const ConditionState& state, int64_t evaluated_us) {
  return core::StatusOf(conn.Exec(
      "INSERT INTO rule_state (rule, subject, consecutive, since_us, last_fired_us, "
      "alert_active, last_eval_us) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule, subject) DO "
      "UPDATE SET consecutive = excluded.consecutive, since_us = excluded.since_us, "
      "last_fired_us = excluded.last_fired_us, alert_active = excluded.alert_active, "
      "last_eval_us = excluded.last_eval_us",
      {rule, subject, state.consecutive, state.since_us, state.last_fired_us,
       int64_t{state.alert_active ? 1 : 0}, evaluated_us}));
}

std::string RuleText(const Rule& rule) {
  return fmt::format("rule {} v{}: {}", rule.name, rule.version, rule.spec.when_text);
}

}  // namespace

Json Rule::ToJson() const {
  return {{"name", name},
          {"project", project},
          {"version", version},
          {"enabled", enabled},
          {"spec", spec.ToJson()},
          {"yaml", yaml},
          {"created_by", created_by},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

Json RuleVersion::ToJson() const {
  return {{"name", name},
          {"version", version},
          {"yaml", yaml},
          {"digest", digest},
          {"created_by", created_by},
          {"created_at", core::FormatRfc3339(created_us)}};
}

struct Rules::State {
  std::mutex eval_mu;  // one evaluation at a time (events and periodic)
  std::mutex thread_mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
  std::unique_ptr<store::EventLog::Subscription> subscription;
  std::map<std::string, int64_t> last_periodic_us;  // by rule
  std::mutex cache_mu;
  std::shared_ptr<const std::vector<Rule>> enabled;  // null: reload
};

Rules::Rules(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
             Services services, RulesOptions options)
    : db_(db),
      log_(log),
      lifecycles_(lifecycles),
      services_(services),
      options_(options),
      state_(std::make_unique<State>()) {}

Rules::~Rules() {
  Stop();
}

Result<std::unique_ptr<Rules>> Rules::Open(store::Database& db, store::EventLog& log,
                                           store::Lifecycles& lifecycles, Services services,
                                           RulesOptions options) {
  ASSIGN_OR_RETURN(auto machine, ApprovalMachine());
  RETURN_IF_ERROR(lifecycles.Register(std::move(machine)));
  Metrics();
  return std::unique_ptr<Rules>(new Rules(db, log, lifecycles, services, options));
}

// ---------------------------------------------------------------- storage

Result<SubmitResult> Rules::Submit(std::string_view yaml, const CommandContext& ctx) {
  ASSIGN_OR_RETURN(RuleSpec spec, ParseRule(yaml));
  std::string canonical = spec.ToJson().dump();
  std::string digest = core::Sha256Hex(canonical);
  int64_t now = core::NowMicros();
  bool created = false;
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    created = false;
    ASSIGN_OR_RETURN(auto rows, tx.conn().Query("SELECT r.version, v.digest, r.project FROM rules "
                                                "r JOIN rule_versions v ON v.name = r.name AND "
                                                "v.version = r.version WHERE r.name = ?",
                                                {spec.name}));
    int64_t version = 1;
    if (!rows.empty()) {
      if (rows[0].Text(2) != spec.project) {
        return core::FailedPrecondition(
            fmt::format("rule \"{}\" belongs to project \"{}\"; its project cannot change",
                        spec.name, rows[0].Text(2)),
            nullptr);
      }
      if (rows[0].Text(1) == digest)
        return core::Ok();
      version = rows[0].Int(0) + 1;
      RETURN_IF_ERROR(tx.conn().Exec("UPDATE rules SET version = ?, updated_us = ? WHERE name = ?",
                                     {version, now, spec.name}));
    } else {
      RETURN_IF_ERROR(
          tx.conn().Exec("INSERT INTO rules (name, project, version, enabled, created_by, "
                         "created_us, updated_us) VALUES (?, ?, 1, 1, ?, ?, ?)",
                         {spec.name, spec.project, ctx.actor, now, now}));
    }
    RETURN_IF_ERROR(
        tx.conn().Exec("INSERT INTO rule_versions (name, version, yaml, spec, digest, "
                       "created_by, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       {spec.name, version, std::string(yaml), canonical, digest, ctx.actor, now}));
    created = true;
    return core::StatusOf(
        tx.Append({.type = "rule.version_created",
                   .subject_kind = "rule",
                   .subject_id = spec.name,
                   .actor = ctx.actor,
                   .correlation_id = ctx.correlation_id,
                   .project = spec.project,
                   .data = {{"version", version}, {"digest", digest}, {"spec", spec.ToJson()}}}));
  }));
  (void)events;
  Invalidate();
  ASSIGN_OR_RETURN(Rule rule, Get(spec.name));
  return SubmitResult{.rule = std::move(rule), .created_version = created};
}

Result<Rule> Rules::Get(const std::string& name) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM rules r JOIN rule_versions "
                                                      "v ON v.name = r.name AND v.version = "
                                                      "r.version WHERE r.name = ?",
                                                      kRuleColumns),
                                          {name}));
  if (rows.empty())
    return core::NotFound(fmt::format("rule \"{}\" not found", name));
  return RuleFromRow(rows[0]);
}

Result<std::vector<Rule>> Rules::List(const std::optional<std::set<std::string>>& projects) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM rules r JOIN rule_versions "
                                                      "v ON v.name = r.name AND v.version = "
                                                      "r.version ORDER BY r.name",
                                                      kRuleColumns)));
  std::vector<Rule> out;
  for (const auto& row : rows) {
    if (projects && !projects->count(row.Text(1)))
      continue;
    ASSIGN_OR_RETURN(Rule r, RuleFromRow(row));
    out.push_back(std::move(r));
  }
  return out;
}

// Parsed once, kept until a rule changes: rule.* events (from any server
// sharing the log) and this server's own commands clear the cache.
Result<std::shared_ptr<const std::vector<Rule>>> Rules::Enabled() {
  {
    std::lock_guard lock(state_->cache_mu);
    if (state_->enabled)
      return state_->enabled;
  }
  ASSIGN_OR_RETURN(auto all, List(std::nullopt));
  auto out = std::make_shared<std::vector<Rule>>();
  for (auto& r : all) {
    if (r.enabled)
      out->push_back(std::move(r));
  }
  std::lock_guard lock(state_->cache_mu);
  state_->enabled = out;
  return std::shared_ptr<const std::vector<Rule>>(out);
}

void Rules::Invalidate() {
  std::lock_guard lock(state_->cache_mu);
  state_->enabled.reset();
}

Result<std::vector<RuleVersion>> Rules::Versions(const std::string& name) {
  ASSIGN_OR_RETURN(Rule rule, Get(name));
  (void)rule;
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT name, version, yaml, digest, created_by, "
                                          "created_us FROM rule_versions WHERE name = ? ORDER BY "
                                          "version",
                                          {name}));
  std::vector<RuleVersion> out;
  for (const auto& r : rows) {
    out.push_back({.name = r.Text(0),
                   .version = r.Int(1),
                   .yaml = r.Text(2),
                   .digest = r.Text(3),
                   .created_by = r.Text(4),
                   .created_us = r.Int(5)});
  }
  return out;
}

Result<Rule> Rules::SetEnabled(const std::string& name, bool enabled, const std::string& reason,
                               const CommandContext& ctx) {
  if (reason.empty()) {
    return core::InvalidArgument(fmt::format("field \"reason\": {} a rule needs a reason",
                                             enabled ? "enabling" : "disabling"),
                                 "reason");
  }
  ASSIGN_OR_RETURN(Rule rule, Get(name));
  int64_t now = core::NowMicros();
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    RETURN_IF_ERROR(tx.conn().Exec("UPDATE rules SET enabled = ?, updated_us = ? WHERE name = ?",
                                   {int64_t{enabled ? 1 : 0}, now, name}));
    return core::StatusOf(tx.Append({.type = enabled ? "rule.enabled" : "rule.disabled",
                                     .subject_kind = "rule",
                                     .subject_id = name,
                                     .actor = ctx.actor,
                                     .reason = reason,
                                     .correlation_id = ctx.correlation_id,
                                     .project = rule.project,
                                     .data = {{"version", rule.version}}}));
  }));
  (void)events;
  Invalidate();
  return Get(name);
}

Result<std::vector<Json>> Rules::Actions(const std::string& rule, int limit) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  std::string where = rule.empty() ? "" : "WHERE rule = ?";
  std::vector<store::Value> params;
  if (!rule.empty())
    params.push_back(rule);
  params.push_back(static_cast<int64_t>(limit));
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query(fmt::format("SELECT id, rule, rule_version, decision_id, position, "
                                           "type, params, state, attempts, next_us, result, "
                                           "error, created_us, updated_us FROM rule_actions {} "
                                           "ORDER BY id DESC LIMIT ?",
                                           where),
                               params));
  std::vector<Json> out;
  for (const auto& r : rows) {
    out.push_back({{"id", r.Int(0)},
                   {"rule", r.Text(1)},
                   {"rule_version", r.Int(2)},
                   {"decision_id", r.Text(3)},
                   {"position", r.Int(4)},
                   {"type", r.Text(5)},
                   {"params", ParseOr(r.Text(6), Json::object())},
                   {"state", r.Text(7)},
                   {"attempts", r.Int(8)},
                   {"result", ParseOr(r.Text(10), Json(nullptr))},
                   {"error", r.Text(11)},
                   {"created_at", core::FormatRfc3339(r.Int(12))},
                   {"updated_at", core::FormatRfc3339(r.Int(13))}});
  }
  return out;
}

// ---------------------------------------------------------------- evaluation

Result<std::map<std::string, ConditionState>> Rules::StatesOf(const std::string& subject) {
  std::map<std::string, ConditionState> out;
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT rule, consecutive, since_us, last_fired_us, "
                                          "alert_active FROM rule_state WHERE subject = ?",
                                          {subject}));
  for (const auto& r : rows) {
    out[r.Text(0)] = {.consecutive = r.Int(1),
                      .since_us = r.Int(2),
                      .last_fired_us = r.Int(3),
                      .alert_active = r.Int(4) != 0};
  }
  return out;
}

Status Rules::Observe(const Rule& rule, const Observation& obs, const std::string& trigger,
                      const std::string& causation_id,
                      const std::map<std::string, ConditionState>* known) {
  Applicability a = Evaluate(rule.spec, obs);
  if (a == Applicability::kNotApplicable)
    return core::Ok();
  Metrics().evaluations.With({rule.name}).Inc();
  ConditionState state;
  if (known) {
    auto it = known->find(rule.name);
    if (it != known->end())
      state = it->second;
  } else {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT consecutive, since_us, last_fired_us, "
                                            "alert_active FROM rule_state WHERE rule = ? AND "
                                            "subject = ?",
                                            {rule.name, obs.subject}));
    if (!rows.empty()) {
      state = {.consecutive = rows[0].Int(0),
               .since_us = rows[0].Int(1),
               .last_fired_us = rows[0].Int(2),
               .alert_active = rows[0].Int(3) != 0};
    }
  }
  ConditionState before = state;
  StepResult step = Step(rule.spec, state, a, obs.time_us);
  if (step.resolve_alert && services_.alerts) {
    CommandContext ctx{
        .actor = std::string(kRulesActor), .causation_id = causation_id, .project = rule.project};
    Status resolved = services_.alerts->Resolve(rule.name + ":" + obs.subject, ctx);
    if (!resolved) {
      core::LogWarn(fmt::format("rules: resolving the alert of {} for {}: {}", rule.name,
                                obs.subject, resolved.error().message));
    }
  }
  if (step.fire) {
    // An alert action makes the rule remember that its alert fires.
    for (const auto& act : rule.spec.actions) {
      if (act.type == ActionType::kAlert && !rule.spec.dry_run)
        state.alert_active = true;
    }
    return Fire(rule, obs, state, trigger, causation_id);
  }
  if (state == before)
    return core::Ok();
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  return SaveState(*conn, rule.name, obs.subject, state, obs.time_us);
}

Status Rules::Fire(const Rule& rule, const Observation& obs, const ConditionState& state,
                   const std::string& trigger, const std::string& causation_id) {
  Metrics().firings.With({rule.name}).Inc();
  int64_t now = core::NowMicros();
  struct Planned {
    std::string type;
    Json params;
    std::string error;
  };
  std::vector<Planned> planned;
  for (const auto& act : rule.spec.actions) {
    auto rendered = RenderParams(act.params, obs);
    if (act.type == ActionType::kApproval) {
      // The approval's own actions are rendered now, with what the rule saw.
      Json p = act.params;
      if (rendered)
        p = *rendered;
      p["rule_version"] = rule.version;  // the version that decided, kept with the request
      for (auto& inner : p["actions"]) {
        if (inner.is_object() && inner.contains("alert") && inner["alert"].is_object())
          inner["alert"]["subject"] = obs.subject;
      }
      planned.push_back(
          {std::string(ActionTypeName(act.type)), p, rendered ? "" : rendered.error().message});
      continue;
    }
    Json p = rendered ? *rendered : act.params;
    if (act.type == ActionType::kAlert)
      p["subject"] = obs.subject;  // the alert's identity is (rule, subject)
    planned.push_back(
        {std::string(ActionTypeName(act.type)), p, rendered ? "" : rendered.error().message});
  }
  Json actions = Json::array();
  for (size_t i = 0; i < planned.size(); ++i) {
    Json a = {{"position", i}, {"type", planned[i].type}, {"params", planned[i].params}};
    if (!planned[i].error.empty())
      a["error"] = planned[i].error;
    else if (rule.spec.dry_run)
      a["status"] = "skipped (dry run)";
    actions.push_back(a);
  }
  Json data = {{"rule", rule.name},
               {"rule_version", rule.version},
               {"dry_run", rule.spec.dry_run},
               {"trigger", trigger},
               {"condition", rule.spec.when_text},
               {"for", rule.spec.for_ms > 0 ? Json(fmt::format("{}ms", rule.spec.for_ms))
                                            : Json(rule.spec.for_count)},
               {"cooldown_ms", rule.spec.cooldown_ms},
               {"consecutive", state.consecutive},
               {"observation", obs.ToJson()},
               {"actions", actions}};
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    RETURN_IF_ERROR(SaveState(tx.conn(), rule.name, obs.subject, state, obs.time_us));
    ASSIGN_OR_RETURN(store::Event fired, tx.Append({.type = "rule.fired",
                                                    .subject_kind = "rule",
                                                    .subject_id = rule.name,
                                                    .actor = std::string(kRulesActor),
                                                    .reason = RuleText(rule),
                                                    .causation_id = causation_id,
                                                    .project = rule.project,
                                                    .data = data}));
    for (size_t i = 0; i < planned.size(); ++i) {
      std::string st = !planned[i].error.empty() ? "failed"
                       : rule.spec.dry_run       ? "skipped"
                                                 : "pending";
      RETURN_IF_ERROR(tx.conn().Exec(
          "INSERT INTO rule_actions (rule, rule_version, decision_id, "
          "position, type, params, state, attempts, next_us, result, error, "
          "created_us, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 'null', "
          "?, ?, ?)",
          {rule.name, rule.version, fired.id, static_cast<int64_t>(i), planned[i].type,
           planned[i].params.dump(), st, now, planned[i].error, now, now}));
    }
    return core::Ok();
  }));
  (void)events;
  return ExecutePending(now);
}

// Runs one action as system:rules. Returns its result, or the error.
Result<Json> Rules::Execute(const std::string& rule_name, const std::string& project,
                            ActionType type, const Json& params, const std::string& decision_id,
                            const std::string& rule_text, const CommandContext& ctx) {
  auto unavailable = [&](std::string_view what) {
    return core::Error{.code = core::ErrorCode::kUnavailable,
                       .message = fmt::format("{} is not available on this server", what)};
  };
  auto same_project = [&](const std::string& owner, std::string_view what) -> Status {
    if (!project.empty() && owner != project) {
      return core::FailedPrecondition(
          fmt::format("{} belongs to project \"{}\"; rule {} may act only on project \"{}\"", what,
                      owner, rule_name, project),
          nullptr);
    }
    return core::Ok();
  };
  auto text = [&](const char* key) { return params.value(key, std::string()); };
  auto version_of = [&](const char* key) -> Result<int64_t> {
    const Json& v = params.contains(key) ? params[key] : Json(nullptr);
    if (v.is_number_integer())
      return v.get<int64_t>();
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      int64_t n = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec == std::errc() && p == s.data() + s.size() && n > 0)
        return n;
    }
    return core::InvalidArgument(fmt::format("{}: \"{}\" is not a version number", key, v.dump()),
                                 key);
  };
  switch (type) {
    case ActionType::kStartPipeline: {
      if (!services_.pipelines)
        return unavailable("the pipelines module");
      ASSIGN_OR_RETURN(auto pipeline, services_.pipelines->GetPipeline(text("pipeline")));
      RETURN_IF_ERROR(same_project(pipeline.project, "pipeline " + pipeline.name));
      pipelines::StartRunRequest req{.pipeline = pipeline.name};
      const Json items_of = params.value("params", Json::object());
      for (const auto& [k, v] : items_of.items())
        req.params[k] = v.is_string() ? v.get<std::string>() : v.dump();
      req.no_cache = params.value("no_cache", false);
      req.trigger = {{"kind", "rule"}, {"rule", rule_name}, {"decision", decision_id}};
      ASSIGN_OR_RETURN(auto run, services_.pipelines->StartRun(req, ctx));
      return Json{{"pipeline_run", run.id}, {"pipeline", run.pipeline}, {"version", run.version}};
    }
    case ActionType::kPauseRollout:
    case ActionType::kResumeRollout:
    case ActionType::kAbortRollout:
    case ActionType::kRollback: {
      if (!services_.serving)
        return unavailable("serving");
      ASSIGN_OR_RETURN(auto endpoint, services_.serving->GetEndpoint(text("endpoint")));
      RETURN_IF_ERROR(same_project(endpoint.project, "endpoint " + endpoint.name));
      serving::ManualAction action =
          type == ActionType::kPauseRollout    ? serving::ManualAction::kPause
          : type == ActionType::kResumeRollout ? serving::ManualAction::kResume
          : type == ActionType::kAbortRollout  ? serving::ManualAction::kAbort
                                               : serving::ManualAction::kRollback;
      ASSIGN_OR_RETURN(auto rollout, services_.serving->Act(endpoint.name, action, rule_text, ctx));
      return Json{{"rollout", rollout.id}, {"state", rollout.state}};
    }
    case ActionType::kMoveAlias: {
      if (!services_.registry)
        return unavailable("the registry");
      ASSIGN_OR_RETURN(auto model, services_.registry->GetModel(text("model")));
      RETURN_IF_ERROR(same_project(model.project, "model " + model.name));
      ASSIGN_OR_RETURN(int64_t version, version_of("version"));
      ASSIGN_OR_RETURN(auto change, services_.registry->SetAlias(model.name, text("alias"), version,
                                                                 rule_text, ctx));
      return Json{{"model", model.name},
                  {"alias", change.alias},
                  {"version", change.version},
                  {"previous_version", change.previous_version}};
    }
    case ActionType::kDeploy: {
      if (!services_.serving)
        return unavailable("serving");
      serving::DeployRequest d;
      d.model = text("model");
      d.endpoint = text("endpoint").empty() ? d.model : text("endpoint");
      ASSIGN_OR_RETURN(d.version, version_of("version"));
      ASSIGN_OR_RETURN(d.spec, serving::RolloutSpec::FromJson(
                                   params.value("strategy", Json::object()), "strategy."));
      d.reason = rule_text;
      ASSIGN_OR_RETURN(std::string owner, services_.serving->ModelProject(d.model));
      RETURN_IF_ERROR(same_project(owner, "model " + d.model));
      ASSIGN_OR_RETURN(auto rollout, services_.serving->Deploy(d, ctx));
      return Json{{"rollout", rollout.id},
                  {"endpoint", rollout.endpoint},
                  {"version", rollout.candidate_version},
                  {"state", rollout.state}};
    }
    case ActionType::kAlert: {
      if (!services_.alerts)
        return unavailable("alerting");
      monitoring::AlertRequest a;
      a.rule = rule_name;
      a.subject = params.value("subject", std::string());
      a.key = rule_name + ":" + a.subject;
      a.severity = params.value("severity", std::string("warning"));
      a.summary = text("summary");
      a.description = params.value("description", rule_text);
      const Json items_of = params.value("labels", Json::object());
      for (const auto& [k, v] : items_of.items())
        a.labels[k] = v.is_string() ? v.get<std::string>() : v.dump();
      ASSIGN_OR_RETURN(auto alert, services_.alerts->Fire(a, ctx));
      return Json{{"alert", alert.key}, {"state", alert.state}};
    }
    case ActionType::kApproval: {
      Json data = {
          {"rule", rule_name},          {"decision_id", decision_id},
          {"summary", text("summary")}, {"rule_version", params.value("rule_version", int64_t{0})},
          {"project", project},         {"actions", params.value("actions", Json::array())}};
      CommandContext c = ctx;
      c.project = project;
      ASSIGN_OR_RETURN(auto entity, lifecycles_.Create(std::string(kApprovalKind), "", data, c));
      return Json{{"approval", entity.id}, {"state", entity.state}};
    }
  }
  return core::InvalidArgument("unknown action type", "type");
}

Status Rules::ExecutePending(int64_t now_us) {
  std::vector<Row> due;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(due, conn->Query("SELECT a.id, a.rule, a.rule_version, a.decision_id, "
                                      "a.position, a.type, a.params, a.attempts, r.project FROM "
                                      "rule_actions a LEFT JOIN rules r ON r.name = a.rule WHERE "
                                      "a.state = 'pending' AND a.next_us <= ? ORDER BY a.id "
                                      "LIMIT 100",
                                      {now_us}));
  }
  for (const auto& r : due) {
    int64_t id = r.Int(0);
    {
      // Claim it: another thread (an event and the cycle) or another server
      // may have picked the same row; only the one whose update lands runs it.
      ASSIGN_OR_RETURN(auto conn, db_.Acquire());
      ASSIGN_OR_RETURN(int64_t claimed,
                       conn->Exec("UPDATE rule_actions SET state = 'running', updated_us = ? "
                                  "WHERE id = ? AND state = 'pending'",
                                  {core::NowMicros(), id}));
      if (claimed == 0)
        continue;
    }
    std::string rule = r.Text(1), decision = r.Text(3), type_name = r.Text(5);
    int64_t rule_version = r.Int(2), position = r.Int(4), attempts = r.Int(7) + 1;
    std::string project = r.Text(8);
    auto type = ParseActionType(type_name);
    Json params = ParseOr(r.Text(6), Json::object());
    std::string rule_text = fmt::format("rule {} v{} (decision {})", rule, rule_version, decision);
    CommandContext ctx{
        .actor = std::string(kRulesActor), .causation_id = decision, .project = project};
    Result<Json> result = type ? Execute(rule, project, *type, params, decision, rule_text, ctx)
                               : Result<Json>(core::InvalidArgument("unknown action type", "type"));
    int64_t now = core::NowMicros();
    bool ok = result.has_value();
    // Retried: what may pass later (a server down, a timeout, a conflict
    // with a concurrent change). A refusal (bad parameters, something that
    // does not exist, a wrong state or project) would fail the same way.
    bool transient = false;
    if (!ok) {
      auto code = result.error().code;
      transient = code == core::ErrorCode::kUnavailable ||
                  code == core::ErrorCode::kDeadlineExceeded ||
                  code == core::ErrorCode::kInternal || code == core::ErrorCode::kAborted;
    }
    bool retry = !ok && transient && attempts < options_.max_attempts;
    int64_t next = now + options_.retry_base.count() * 1000 *
                             (int64_t{1} << std::min<int64_t>(attempts - 1, 10));
    std::string state = ok ? "succeeded" : (retry ? "pending" : "failed");
    if (!ok)
      Metrics().action_failures.With({rule, type_name}).Inc();
    Json data = {{"rule", rule},
                 {"rule_version", rule_version},
                 {"decision_id", decision},
                 {"position", position},
                 {"type", type_name},
                 {"attempt", attempts}};
    if (ok)
      data["result"] = *result;
    else {
      data["error"] = result.error().message;
      data["will_retry"] = retry;
      if (retry)
        data["next_attempt_at"] = core::FormatRfc3339(next);
    }
    auto events = log_.Execute([&](store::CommandTx& tx) -> Status {
      RETURN_IF_ERROR(
          tx.conn().Exec("UPDATE rule_actions SET state = ?, attempts = ?, next_us = ?, "
                         "result = ?, error = ?, updated_us = ? WHERE id = ?",
                         {state, attempts, next, ok ? result->dump() : std::string("null"),
                          ok ? std::string() : result.error().message, now, id}));
      return core::StatusOf(tx.Append({.type = ok ? "rule.action_succeeded" : "rule.action_failed",
                                       .subject_kind = "rule",
                                       .subject_id = rule,
                                       .actor = std::string(kRulesActor),
                                       .causation_id = decision,
                                       .project = project,
                                       .data = data}));
    });
    if (!events)
      return events.error();
  }
  return core::Ok();
}

Status Rules::OnEvent(const store::Event& event) {
  std::lock_guard lock(state_->eval_mu);
  if (event.subject_kind == kApprovalKind && event.type == "approval.approved") {
    // The approval's actions run now, caused by the approval.
    ASSIGN_OR_RETURN(store::Entity approval,
                     lifecycles_.Get(std::string(kApprovalKind), event.subject_id));
    std::string rule = approval.data.value("rule", std::string());
    int64_t rule_version = approval.data.value("rule_version", int64_t{0});
    const Json actions = approval.data.value("actions", Json::array());
    int64_t now = core::NowMicros();
    ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
      ASSIGN_OR_RETURN(auto existing, tx.conn().Query("SELECT 1 FROM rule_actions WHERE "
                                                      "decision_id = ? LIMIT 1",
                                                      {event.id}));
      if (!existing.empty())
        return core::Ok();  // delivered twice
      for (size_t i = 0; i < actions.size(); ++i) {
        const Json& a = actions[i];
        if (!a.is_object() || a.size() != 1)
          continue;
        RETURN_IF_ERROR(
            tx.conn().Exec("INSERT INTO rule_actions (rule, rule_version, decision_id, "
                           "position, type, params, state, attempts, next_us, result, "
                           "error, created_us, updated_us) VALUES (?, ?, ?, ?, ?, ?, "
                           "'pending', 0, ?, 'null', '', ?, ?)",
                           {rule, rule_version, event.id, static_cast<int64_t>(i), a.begin().key(),
                            a.begin().value().dump(), now, now, now}));
      }
      return core::Ok();
    }));
    (void)events;
    return ExecutePending(now);
  }
  if (event.subject_kind == "rule" &&
      (event.type == "rule.version_created" || event.type == "rule.enabled" ||
       event.type == "rule.disabled"))
    Invalidate();
  ASSIGN_OR_RETURN(auto rules, Enabled());
  // The observation and the subject's condition states are read once per
  // event, not once per rule.
  std::optional<Observation> obs;
  std::map<std::string, ConditionState> states;
  for (const auto& rule : *rules) {
    if (!rule.spec.MatchesEventType(event.type))
      continue;
    // A rule never reacts to its own decisions (no feedback loops).
    if (event.subject_kind == "rule" && event.subject_id == rule.name)
      continue;
    if (!rule.project.empty() && event.project != rule.project)
      continue;
    if (!obs) {
      obs = FromEvent(event);
      ASSIGN_OR_RETURN(states, StatesOf(obs->subject));
    }
    Status s = Observe(rule, *obs, "event", event.id, &states);
    if (!s) {
      core::LogWarn(
          fmt::format("rules: rule {} on event {}: {}", rule.name, event.seq, s.error().message));
    }
  }
  return core::Ok();
}

Status Rules::RunCycle(int64_t now_us) {
  {
    std::lock_guard lock(state_->eval_mu);
    ASSIGN_OR_RETURN(auto rules, Enabled());
    for (const auto& rule : *rules) {
      if (rule.spec.every_ms == 0 || !services_.monitoring)
        continue;
      int64_t& last = state_->last_periodic_us[rule.name];
      if (last > 0 && now_us - last < rule.spec.every_ms * 1000)
        continue;
      last = now_us;
      ASSIGN_OR_RETURN(auto monitors,
                       services_.monitoring->List(rule.project.empty()
                                                      ? std::nullopt
                                                      : std::optional<std::set<std::string>>(
                                                            std::set<std::string>{rule.project})));
      for (const auto& m : monitors) {
        Observation obs = FromMonitor(m.id, m.model, m.version, m.state, m.project, m.last, now_us);
        Status s = Observe(rule, obs, "periodic", "");
        if (!s) {
          core::LogWarn(
              fmt::format("rules: rule {} on monitor {}: {}", rule.name, m.id, s.error().message));
        }
      }
    }
  }
  RETURN_IF_ERROR(ExecutePending(now_us));
  if (services_.alerts)
    RETURN_IF_ERROR(services_.alerts->Resend(now_us));
  return core::Ok();
}

// ---------------------------------------------------------------- approvals

Result<std::vector<store::Entity>> Rules::ListApprovals(const std::string& state) {
  return lifecycles_.List({.kind = std::string(kApprovalKind), .state = state, .limit = 1000});
}

Result<store::Entity> Rules::GetApproval(const std::string& id) {
  return lifecycles_.Get(std::string(kApprovalKind), id);
}

Result<store::Entity> Rules::Decide(const std::string& approval_id, bool approve,
                                    const std::string& reason, const CommandContext& ctx) {
  return lifecycles_.Transition(std::string(kApprovalKind), approval_id,
                                {.transition = approve ? "approve" : "reject", .reason = reason},
                                ctx);
}

// ---------------------------------------------------------------- replay

Result<Json> Rules::Replay(const RuleSpec& spec, int64_t from_us, int64_t to_us) {
  if (to_us <= from_us)
    return core::InvalidArgument("to: must be after from", "to");
  struct Item {
    Observation obs;
    std::string trigger;
  };
  std::vector<Item> items;
  if (!spec.events.empty()) {
    int64_t after = 0;
    while (true) {
      ASSIGN_OR_RETURN(
          auto page,
          log_.Read({.after_seq = after, .limit = 1000, .since_us = from_us, .until_us = to_us}));
      if (page.empty())
        break;
      for (const auto& e : page) {
        after = e.seq;
        if (!spec.MatchesEventType(e.type))
          continue;
        if (e.subject_kind == "rule" && e.subject_id == spec.name)
          continue;
        if (!spec.project.empty() && e.project != spec.project)
          continue;
        items.push_back({FromEvent(e), "event"});
      }
      if (page.size() < 1000)
        break;
    }
  }
  if (spec.every_ms > 0 && services_.monitoring) {
    ASSIGN_OR_RETURN(auto evaluations, services_.monitoring->EvaluationsBetween(0, to_us));
    // Monitors' projects as they are now (the live engine reads the same).
    std::map<std::string, std::string> project_of;
    ASSIGN_OR_RETURN(auto monitors, services_.monitoring->List(std::nullopt));
    for (const auto& m : monitors)
      project_of[m.id] = m.project;
    // At each tick, every monitor's latest evaluation so far, in the shape
    // the monitor keeps as its last window (what the live engine reads).
    std::map<std::string, const monitoring::Evaluation*> latest;
    size_t next = 0;
    for (int64_t t = from_us; t < to_us; t += spec.every_ms * 1000) {
      while (next < evaluations.size() && evaluations[next].ended_us <= t) {
        latest[evaluations[next].monitor] = &evaluations[next];
        ++next;
      }
      for (const auto& [id, e] : latest) {
        const std::string& project = project_of[id];
        if (!spec.project.empty() && project != spec.project)
          continue;
        Json metrics = Json::object();
        for (const auto& [k, v] : e->metrics)
          metrics[k] = v;
        Json last = {{"window", e->window},   {"rows", e->rows},       {"decision", e->decision},
                     {"reasons", e->reasons}, {"labeled", e->labeled}, {"version", e->version},
                     {"metrics", metrics},    {"evaluation_id", e->id}};
        // The monitor's state at t is not stored with evaluations: it is
        // what the window decided.
        std::string state = e->decision == "retrain" ? "RetrainDecision" : "Monitoring";
        items.push_back(
            {FromMonitor(id, e->model, e->version, state, project, last, t), "periodic"});
      }
    }
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.obs.time_us < b.obs.time_us; });
  std::map<std::string, ConditionState> states;
  Json would = Json::array();
  int64_t evaluated = 0, matched = 0;
  for (const auto& item : items) {
    Applicability a = Evaluate(spec, item.obs);
    if (a == Applicability::kNotApplicable)
      continue;
    ++evaluated;
    if (a == Applicability::kMatched)
      ++matched;
    ConditionState& st = states[item.obs.subject];
    StepResult step = Step(spec, st, a, item.obs.time_us);
    if (step.fire) {
      Json f = {{"time", core::FormatRfc3339(item.obs.time_us)},
                {"subject", item.obs.subject},
                {"trigger", item.trigger},
                {"consecutive", st.consecutive},
                {"metrics", item.obs.ToJson()["metrics"]}};
      if (item.obs.event_seq > 0)
        f["event_seq"] = item.obs.event_seq;
      would.push_back(f);
    }
  }
  // What the rule actually did in the range.
  Json fired = Json::array();
  int64_t after = 0;
  while (true) {
    ASSIGN_OR_RETURN(auto page, log_.Read({.after_seq = after,
                                           .limit = 1000,
                                           .subject_kind = "rule",
                                           .subject_id = spec.name,
                                           .type = "rule.fired",
                                           .since_us = from_us,
                                           .until_us = to_us}));
    if (page.empty())
      break;
    for (const auto& e : page) {
      after = e.seq;
      Json data = ParseOr(e.data, Json::object());
      Json obs = data.value("observation", Json::object());
      Json f = {{"time", core::FormatRfc3339(e.time_us)},
                {"subject", obs.value("subject", std::string())},
                {"rule_version", data.value("rule_version", int64_t{0})},
                {"event", e.id}};
      if (obs.contains("event_seq"))
        f["event_seq"] = obs["event_seq"];
      fired.push_back(f);
    }
    if (page.size() < 1000)
      break;
  }
  return Json{{"rule", spec.name},
              {"from", core::FormatRfc3339(from_us)},
              {"to", core::FormatRfc3339(to_us)},
              {"observations", items.size()},
              {"evaluated", evaluated},
              {"matched", matched},
              {"would_fire", would},
              {"fired", fired}};
}

// ---------------------------------------------------------------- thread

void Rules::Start() {
  std::lock_guard lock(state_->thread_mu);
  if (state_->thread.joinable())
    return;
  state_->stop = false;
  // Rules follow events from now on: a first start does not replay history.
  if (auto conn = db_.Acquire()) {
    // Actions a crash interrupted run again (at least once).
    (void)(*conn)->Exec("UPDATE rule_actions SET state = 'pending' WHERE state = 'running'");
    (void)(*conn)->Exec(
        "INSERT INTO event_subscriptions (name, cursor_seq, updated_us) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        {std::string("rules"), log_.head_seq(), core::NowMicros()});
  }
  auto sub = log_.SubscribeDurable("rules", [this](const store::Event& e) { return OnEvent(e); });
  if (sub)
    state_->subscription = std::move(*sub);
  else
    core::LogWarn("rules: cannot subscribe to the event log: " + sub.error().message);
  state_->thread = std::thread([this] {
    std::unique_lock lock(state_->thread_mu);
    while (!state_->stop) {
      lock.unlock();
      Status s = RunCycle(core::NowMicros());
      if (!s)
        core::LogWarn("rules: cycle: " + s.error().message);
      lock.lock();
      state_->cv.wait_for(lock, options_.cycle_interval, [this] { return state_->stop; });
    }
  });
}

void Rules::Stop() {
  {
    std::lock_guard lock(state_->thread_mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  if (state_->thread.joinable())
    state_->thread.join();
  state_->subscription.reset();
}

}  // namespace kervan::rules
