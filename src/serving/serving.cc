// The serving control plane: endpoints, rollouts, the rollout controller,
// samples and the routing table (serving.h).
#include "serving/serving.h"

#include <condition_variable>
#include <deque>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "registry/registry.h"

namespace kervan::serving {
namespace {

using store::CommandContext;
using store::CommandTx;

// Moves the model's champion alias to `version` in the rollout's own
// command, so it commits with the state that implies it. A version that
// cannot take the alias (missing, Archived) or has it already is logged
// and skipped, before anything is written: the rollout's change stands.
Status MoveChampionIn(registry::Registry& registry, CommandTx& tx, const std::string& model,
                      int64_t version, const std::string& reason, const CommandContext& ctx) {
  auto moved = registry.SetAliasIn(tx, model, std::string(kChampionAlias), version, reason, ctx);
  if (moved)
    return core::Ok();
  if (moved.error().code != core::ErrorCode::kNotFound &&
      moved.error().code != core::ErrorCode::kFailedPrecondition)
    return moved.error();
  core::LogWarn("serving: cannot move the champion alias: " + moved.error().message,
                {{"event.action", "serving.champion_not_moved"}, {"kervan.model", model}});
  return core::Ok();
}

constexpr const char* kRolloutColumns =
    "id, endpoint, model, project, candidate_version, stable_version, spec, state, phase, step, "
    "step_started_us, step_requests, failures, last_evaluation, reason, outcome, created_by, "
    "created_us, updated_us, finished_us";
constexpr const char* kEndpointColumns =
    "name, project, model, stable_version, previous_version, rollout_id, sample_percent, "
    "created_by, created_us, updated_us";

Phase PhaseFromName(std::string_view name) {
  if (name == "shadow")
    return Phase::kShadow;
  if (name == "canary")
    return Phase::kCanary;
  if (name == "preview")
    return Phase::kPreview;
  return Phase::kStable;
}

Endpoint EndpointFromRow(const store::Row& r) {
  Endpoint e;
  e.name = r.Text(0);
  e.project = r.Text(1);
  e.model = r.Text(2);
  e.stable_version = r.Int(3);
  e.previous_version = r.Int(4);
  e.rollout_id = r.Text(5);
  e.sample_percent = r.Real(6);
  e.created_by = r.Text(7);
  e.created_us = r.Int(8);
  e.updated_us = r.Int(9);
  return e;
}

Result<Rollout> RolloutFromRow(const store::Row& r) {
  Rollout o;
  o.id = r.Text(0);
  o.endpoint = r.Text(1);
  o.model = r.Text(2);
  o.project = r.Text(3);
  o.candidate_version = r.Int(4);
  o.stable_version = r.Int(5);
  Json spec = Json::parse(r.Text(6), nullptr, false);
  auto parsed = RolloutSpec::FromJson(spec);
  if (!parsed)
    return core::Internal(fmt::format("rollout {}: stored spec: {}", o.id, parsed.error().message));
  o.spec = std::move(parsed).value();
  o.state = r.Text(7);
  o.progress.phase = PhaseFromName(r.Text(8));
  o.progress.step = static_cast<int>(r.Int(9));
  o.progress.step_started_us = r.Int(10);
  o.progress.step_requests = r.Int(11);
  o.progress.failures = static_cast<int>(r.Int(12));
  o.last_evaluation = Json::parse(r.Text(13), nullptr, false);
  if (o.last_evaluation.is_discarded())
    o.last_evaluation = nullptr;
  o.reason = r.Text(14);
  o.outcome = r.Text(15);
  o.created_by = r.Text(16);
  o.created_us = r.Int(17);
  o.updated_us = r.Int(18);
  o.finished_us = r.Int(19);
  return o;
}

std::string Rfc3339OrNull(int64_t us) {
  return us > 0 ? core::FormatRfc3339(us) : "";
}

Result<core::StateMachine> RolloutMachine() {
  const std::string o = "deployment.orchestrate";
  const std::string m = "deployment.manage";
  return core::StateMachine::Build(
      std::string(kRolloutKind),
      {std::string(kPreparation), std::string(kShadow), std::string(kGradualRollout),
       std::string(kPaused), std::string(kFullProduction), std::string(kRolledBack),
       std::string(kAborted)},
      std::string(kPreparation),
      {
          {.name = "start_shadow",
           .from = {"Preparation"},
           .to = "Shadow",
           .event = "shadow_started",
           .permission = o},
          {.name = "start_rollout",
           .from = {"Preparation", "Shadow"},
           .to = "GradualRollout",
           .event = "rollout_started",
           .permission = o},
          {.name = "advance",
           .from = {"GradualRollout"},
           .to = "GradualRollout",
           .event = "step_advanced",
           .permission = o},
          {.name = "promote",
           .from = {"Preparation", "Shadow", "GradualRollout", "Paused"},
           .to = "FullProduction",
           .event = "promoted",
           .permission = m,
           .reason_required = true},
          {.name = "pause",
           .from = {"Shadow", "GradualRollout"},
           .to = "Paused",
           .event = "paused",
           .permission = m,
           .reason_required = true},
          {.name = "resume_shadow",
           .from = {"Paused"},
           .to = "Shadow",
           .event = "resumed",
           .permission = m,
           .reason_required = true},
          {.name = "resume_rollout",
           .from = {"Paused"},
           .to = "GradualRollout",
           .event = "resumed",
           .permission = m,
           .reason_required = true},
          {.name = "rollback",
           .from = {"Shadow", "GradualRollout", "Paused", "FullProduction"},
           .to = "RolledBack",
           .event = "rolled_back",
           .permission = m,
           .reason_required = true},
          {.name = "abort",
           .from = {"Preparation", "Shadow", "GradualRollout", "Paused"},
           .to = "Aborted",
           .event = "aborted",
           .permission = m,
           .reason_required = true},
      });
}

// The lifecycle state a phase runs in.
std::string StateFor(Phase phase) {
  switch (phase) {
    case Phase::kShadow:
      return std::string(kShadow);
    case Phase::kCanary:
    case Phase::kPreview:
      return std::string(kGradualRollout);
    case Phase::kStable:
      break;
  }
  return std::string(kFullProduction);
}

// Writes the rollout's progress. `expected_updated_us` > 0 makes it a
// compare-and-set: when another controller (a second server on the same
// database) changed the row since it was read, nothing is written and the
// command aborts, so a step is never advanced twice.
Status UpdateProgress(store::Connection& conn, const Rollout& r, const std::string& state,
                      int64_t now, int64_t expected_updated_us = 0) {
  std::string sql =
      "UPDATE serving_rollouts SET state = ?, phase = ?, step = ?, step_started_us = ?, "
      "step_requests = ?, failures = ?, last_evaluation = ?, outcome = ?, updated_us = ?, "
      "finished_us = ? WHERE id = ?";
  std::vector<store::Value> params = {state,
                                      std::string(PhaseName(r.progress.phase)),
                                      int64_t{r.progress.step},
                                      r.progress.step_started_us,
                                      r.progress.step_requests,
                                      int64_t{r.progress.failures},
                                      r.last_evaluation.dump(),
                                      r.outcome,
                                      now,
                                      r.finished_us,
                                      r.id};
  if (expected_updated_us > 0) {
    sql += " AND updated_us = ?";
    params.push_back(expected_updated_us);
  }
  ASSIGN_OR_RETURN(int64_t changed, conn.Exec(sql, params));
  if (changed != 1) {
    return core::Error{
        .code = core::ErrorCode::kAborted,
        .message = fmt::format("rollout {} changed while it was being evaluated", r.id)};
  }
  return core::Ok();
}

// Per-second buckets of gateway statistics for one rollout.
struct Window {
  struct Bucket {
    int64_t second = 0;
    SideStats stable, candidate;
  };
  std::deque<Bucket> buckets;
  int64_t pending_candidate = 0;  // candidate requests since the last evaluation
  int64_t last_evaluated_us = 0;  // in memory: a restart evaluates one interval later

  void Add(int64_t second, Side side, const SideStats& s) {
    if (buckets.empty() || buckets.back().second != second)
      buckets.push_back({.second = second});
    (side == Side::kStable ? buckets.back().stable : buckets.back().candidate).Merge(s);
    if (side == Side::kCandidate)
      pending_candidate += s.requests;
  }
  void Prune(int64_t oldest_second) {
    while (!buckets.empty() && buckets.front().second < oldest_second)
      buckets.pop_front();
  }
  std::pair<SideStats, SideStats> Sum(int64_t from_second) const {
    SideStats stable, candidate;
    for (const auto& b : buckets) {
      if (b.second >= from_second) {
        stable.Merge(b.stable);
        candidate.Merge(b.candidate);
      }
    }
    return {stable, candidate};
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// Value types

Status ValidateEndpointName(std::string_view name, std::string_view field) {
  auto s = registry::ValidateModelName(name, field);
  if (!s) {
    std::string msg = s.error().message;
    // "model name" reads oddly for an endpoint.
    if (auto pos = msg.find("model name"); pos != std::string::npos)
      msg.replace(pos, 10, "endpoint name");
    return core::InvalidArgument(msg, std::string(field));
  }
  return core::Ok();
}

Json Endpoint::ToJson() const {
  return {{"name", name},
          {"project", project},
          {"model", model},
          {"stable_version", stable_version},
          {"previous_version", previous_version},
          {"rollout_id", rollout_id},
          {"sample_percent", sample_percent},
          {"created_by", created_by},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

bool Rollout::active() const {
  return state == kPreparation || state == kShadow || state == kGradualRollout || state == kPaused;
}

Json Rollout::ToJson() const {
  Json progress_json{{"phase", PhaseName(progress.phase)},
                     {"step", progress.step},
                     {"step_started_at", Rfc3339OrNull(progress.step_started_us)},
                     {"step_requests", progress.step_requests},
                     {"failures", progress.failures}};
  if (progress.phase == Phase::kCanary && progress.step >= 0 &&
      progress.step < static_cast<int>(spec.steps.size())) {
    progress_json["weight"] = spec.steps[static_cast<size_t>(progress.step)].weight;
    progress_json["steps"] = spec.steps.size();
  } else if (progress.phase == Phase::kShadow && spec.shadow) {
    progress_json["shadow_percent"] = spec.shadow->percent;
  }
  return {
      {"id", id},
      {"endpoint", endpoint},
      {"model", model},
      {"project", project},
      {"candidate_version", candidate_version},
      {"stable_version", stable_version},
      {"strategy", spec.ToJson()},
      {"state", state},
      {"progress", progress_json},
      {"last_evaluation", last_evaluation},
      {"reason", reason},
      {"outcome", outcome},
      {"created_by", created_by},
      {"created_at", core::FormatRfc3339(created_us)},
      {"updated_at", core::FormatRfc3339(updated_us)},
      {"finished_at", finished_us > 0 ? Json(core::FormatRfc3339(finished_us)) : Json(nullptr)}};
}

std::optional<ManualAction> ParseManualAction(std::string_view name) {
  if (name == "promote")
    return ManualAction::kPromote;
  if (name == "pause")
    return ManualAction::kPause;
  if (name == "resume")
    return ManualAction::kResume;
  if (name == "abort")
    return ManualAction::kAbort;
  if (name == "rollback")
    return ManualAction::kRollback;
  return std::nullopt;
}

Json RouteEntry::ToJson() const {
  Json routes = Json::array();
  for (const auto& h : rule.header_routes)
    routes.push_back(h.ToJson());
  return {{"endpoint", endpoint},
          {"model", model},
          {"project", project},
          {"stable", stable},
          {"candidate", candidate},
          {"previous", previous},
          {"rollout_id", rollout_id},
          {"sample_percent", sample_percent},
          {"rule",
           {{"phase", PhaseName(rule.phase)},
            {"weight", rule.weight},
            {"shadow_percent", rule.shadow_percent},
            {"header_routes", routes}}}};
}

Result<RouteEntry> RouteEntry::FromJson(const Json& j) {
  try {
    RouteEntry e;
    e.endpoint = j.at("endpoint").get<std::string>();
    e.model = j.at("model").get<std::string>();
    e.project = j.value("project", "");
    e.stable = j.value("stable", int64_t{0});
    e.candidate = j.value("candidate", int64_t{0});
    e.previous = j.value("previous", int64_t{0});
    e.rollout_id = j.value("rollout_id", "");
    e.sample_percent = j.value("sample_percent", 10.0);
    const Json& rule = j.at("rule");
    e.rule.phase = PhaseFromName(rule.value("phase", "stable"));
    e.rule.weight = rule.value("weight", 0.0);
    e.rule.shadow_percent = rule.value("shadow_percent", 0.0);
    for (const Json& h : rule.value("header_routes", Json::array())) {
      e.rule.header_routes.push_back({.header = h.at("header").get<std::string>(),
                                      .value = h.at("value").get<std::string>(),
                                      .target = h.value("target", "candidate")});
    }
    return e;
  } catch (const std::exception& ex) {
    return core::InvalidArgument(fmt::format("routing table entry: {}", ex.what()), "endpoints");
  }
}

Json RoutingTable::ToJson() const {
  Json eps = Json::array();
  for (const auto& [name, e] : endpoints)
    eps.push_back(e.ToJson());
  return {{"revision", revision}, {"endpoints", eps}};
}

Result<RoutingTable> RoutingTable::FromJson(const Json& j) {
  if (!j.is_object() || !j.contains("endpoints") || !j["endpoints"].is_array())
    return core::InvalidArgument("routing table: \"endpoints\" must be an array", "endpoints");
  RoutingTable t;
  t.revision = j.value("revision", int64_t{0});
  for (const Json& e : j["endpoints"]) {
    ASSIGN_OR_RETURN(RouteEntry entry, RouteEntry::FromJson(e));
    t.endpoints[entry.endpoint] = std::move(entry);
  }
  return t;
}

Json StatsReport::ToJson() const {
  return {{"rollout_id", rollout_id},
          {"side", side == Side::kStable ? "stable" : "candidate"},
          {"stats", stats.ToJson()}};
}

Result<StatsReport> StatsReport::FromJson(const Json& j) {
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(j));
  StatsReport out;
  ASSIGN_OR_RETURN(out.rollout_id, r.RequiredString("rollout_id"));
  ASSIGN_OR_RETURN(std::string side, r.RequiredString("side"));
  if (side != "stable" && side != "candidate")
    return core::InvalidArgument("field \"side\": must be stable or candidate", "side");
  out.side = side == "stable" ? Side::kStable : Side::kCandidate;
  ASSIGN_OR_RETURN(Json stats, r.OptionalObject("stats"));
  out.stats = SideStats::FromJson(stats);
  RETURN_IF_ERROR(r.Finish());
  return out;
}

Json Sample::ToJson() const {
  Json out{{"endpoint", endpoint},
           {"model", model},
           {"version", version},
           {"rollout_id", rollout_id},
           {"side", side},
           {"request_id", request_id},
           {"time", core::FormatRfc3339(time_us)},
           {"input", input},
           {"output", output},
           {"latency_us", latency_us},
           {"error", error}};
  if (id > 0)
    out["id"] = id;
  return out;
}

Result<Sample> Sample::FromJson(const Json& j) {
  try {
    Sample s;
    s.endpoint = j.at("endpoint").get<std::string>();
    s.model = j.at("model").get<std::string>();
    s.version = j.at("version").get<int64_t>();
    s.rollout_id = j.value("rollout_id", "");
    s.side = j.value("side", "stable");
    s.request_id = j.value("request_id", "");
    s.time_us = j.value("time_us", core::NowMicros());
    s.input = j.value("input", Json(nullptr));
    s.output = j.value("output", Json(nullptr));
    s.latency_us = j.value("latency_us", int64_t{0});
    s.error = j.value("error", "");
    return s;
  } catch (const std::exception& ex) {
    return core::InvalidArgument(fmt::format("sample: {}", ex.what()), "samples");
  }
}

// ---------------------------------------------------------------------------
// Serving

struct Serving::State {
  std::mutex cycle_mu;  // one controller pass or manual action at a time
  mutable std::mutex table_mu;
  RoutingTable table;
  std::mutex windows_mu;
  std::map<std::string, Window> windows;

  std::mutex thread_mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread thread;
};

Serving::Serving(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
                 registry::Registry& registry, ModelLoader loader, Gateway* gateway,
                 ServingOptions options)
    : db_(db),
      log_(log),
      lifecycles_(lifecycles),
      registry_(registry),
      loader_(std::move(loader)),
      gateway_(gateway),
      options_(options),
      state_(std::make_unique<State>()) {}

Serving::~Serving() {
  Stop();
}

Result<std::unique_ptr<Serving>> Serving::Open(store::Database& db, store::EventLog& log,
                                               store::Lifecycles& lifecycles,
                                               registry::Registry& registry, ModelLoader loader,
                                               Gateway* gateway, ServingOptions options) {
  ASSIGN_OR_RETURN(core::StateMachine machine, RolloutMachine());
  RETURN_IF_ERROR(lifecycles.Register(std::move(machine)));
  std::unique_ptr<Serving> s(
      new Serving(db, log, lifecycles, registry, std::move(loader), gateway, options));
  RETURN_IF_ERROR(s->Publish());
  return s;
}

Result<std::string> Serving::ModelProject(const std::string& model) {
  ASSIGN_OR_RETURN(registry::RegisteredModel m, registry_.GetModel(model));
  return m.project;
}

Result<Endpoint> Serving::GetEndpoint(const std::string& name) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(
      auto rows,
      conn->Query(fmt::format("SELECT {} FROM serving_endpoints WHERE name = ?", kEndpointColumns),
                  {name}));
  if (rows.empty())
    return Missing(fmt::format("endpoint \"{}\" not found", name), "endpoint");
  return EndpointFromRow(rows[0]);
}

Result<std::vector<Endpoint>> Serving::ListEndpoints(
    const std::optional<std::set<std::string>>& projects) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(
      auto rows,
      conn->Query(fmt::format("SELECT {} FROM serving_endpoints ORDER BY name", kEndpointColumns)));
  std::vector<Endpoint> out;
  for (const auto& r : rows) {
    Endpoint e = EndpointFromRow(r);
    if (!projects || projects->count(e.project))
      out.push_back(std::move(e));
  }
  return out;
}

Result<Rollout> Serving::GetRollout(const std::string& id) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(
      auto rows,
      conn->Query(fmt::format("SELECT {} FROM serving_rollouts WHERE id = ?", kRolloutColumns),
                  {id}));
  if (rows.empty())
    return Missing(fmt::format("rollout \"{}\" not found", id), "id");
  return RolloutFromRow(rows[0]);
}

Result<std::vector<Rollout>> Serving::ListRollouts(const std::string& endpoint, int limit) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query(fmt::format("SELECT {} FROM serving_rollouts WHERE endpoint = ? "
                                           "ORDER BY created_us DESC, id DESC LIMIT ?",
                                           kRolloutColumns),
                               {endpoint, int64_t{limit}}));
  std::vector<Rollout> out;
  for (const auto& r : rows) {
    ASSIGN_OR_RETURN(Rollout o, RolloutFromRow(r));
    out.push_back(std::move(o));
  }
  return out;
}

// Rebuilds the routing table from the store and hands it to the in-process
// gateway.
Status Serving::Publish() {
  RoutingTable table;
  table.revision = log_.head_seq();
  ASSIGN_OR_RETURN(auto endpoints, ListEndpoints(std::nullopt));
  for (const Endpoint& e : endpoints) {
    RouteEntry entry{.endpoint = e.name,
                     .model = e.model,
                     .project = e.project,
                     .stable = e.stable_version,
                     .previous = e.previous_version,
                     .sample_percent = e.sample_percent};
    if (!e.rollout_id.empty()) {
      ASSIGN_OR_RETURN(Rollout r, GetRollout(e.rollout_id));
      entry.rollout_id = r.id;
      entry.candidate = r.candidate_version;
      // Paused keeps the candidate loaded but sends it nothing.
      entry.rule = r.state == kPaused ? RoutingRule{} : RuleFor(r.spec, r.progress);
    }
    table.endpoints[e.name] = std::move(entry);
  }
  {
    std::lock_guard lock(state_->table_mu);
    state_->table = table;
  }
  if (gateway_ != nullptr)
    gateway_->Apply(table);
  return core::Ok();
}

RoutingTable Serving::Table() const {
  std::lock_guard lock(state_->table_mu);
  return state_->table;
}

Result<Rollout> Serving::Deploy(const DeployRequest& request, const CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateEndpointName(request.endpoint));
  RETURN_IF_ERROR(registry::ValidateModelName(request.model, "model"));
  if (request.version <= 0)
    return core::InvalidArgument("field \"version\": must be a positive integer", "version");
  if (request.sample_percent && (*request.sample_percent < 0 || *request.sample_percent > 100 ||
                                 !std::isfinite(*request.sample_percent))) {
    return core::InvalidArgument("field \"sample_percent\": must be between 0 and 100",
                                 "sample_percent");
  }
  std::lock_guard cycle(state_->cycle_mu);
  ASSIGN_OR_RETURN(registry::ModelVersion version,
                   registry_.GetVersion(request.model, request.version));
  if (version.state != "DeploymentReady") {
    return Refused(
        fmt::format("version {} of model \"{}\" is {}: only DeploymentReady versions may be "
                    "deployed",
                    request.version, request.model, version.state),
        "version");
  }
  std::optional<Endpoint> existing;
  if (auto e = GetEndpoint(request.endpoint); e) {
    existing = *e;
  } else if (e.error().code != core::ErrorCode::kNotFound) {
    return e.error();
  }
  if (existing) {
    if (existing->model != request.model) {
      return Refused(fmt::format("endpoint \"{}\" serves model \"{}\", not \"{}\"",
                                 request.endpoint, existing->model, request.model),
                     "model");
    }
    if (!existing->rollout_id.empty()) {
      return Refused(
          fmt::format("endpoint \"{}\" has an active rollout ({}): promote, abort or wait for it "
                      "first",
                      request.endpoint, existing->rollout_id),
          "endpoint");
    }
    if (existing->stable_version == request.version) {
      return Refused(fmt::format("endpoint \"{}\" already serves version {}", request.endpoint,
                                 request.version),
                     "version");
    }
  }
  // Load it once here: a model that does not load or does not match its
  // declared inputs is refused before any traffic reaches it.
  if (loader_) {
    auto loaded = loader_(request.model, request.version);
    if (!loaded) {
      return core::InvalidArgument(
          fmt::format("version {} of model \"{}\" cannot be served: {}", request.version,
                      request.model, loaded.error().message),
          loaded.error().field.empty() ? "version" : loaded.error().field);
    }
  }

  int64_t now = core::NowMicros();
  Rollout r;
  r.id = core::NewUuidV7();
  r.endpoint = request.endpoint;
  r.model = request.model;
  r.project = version.project;
  r.candidate_version = request.version;
  r.stable_version = existing ? existing->stable_version : 0;
  r.spec = request.spec;
  r.reason = request.reason;
  r.created_by = ctx.actor;
  r.created_us = r.updated_us = now;
  r.progress = FirstPhase(r.spec, now);
  bool promote_now = r.stable_version == 0 || r.progress.phase == Phase::kStable;
  double sample_percent = request.sample_percent.value_or(
      existing ? existing->sample_percent : options_.default_sample_percent);

  CommandContext c = ctx;
  c.project = r.project;
  CommandContext sys{.actor = std::string(kServingActor),
                     .correlation_id = ctx.correlation_id,
                     .project = r.project};
  store::Event promoted;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    auto& conn = tx.conn();
    if (existing) {
      RETURN_IF_ERROR(core::StatusOf(
          conn.Exec("UPDATE serving_endpoints SET rollout_id = ?, sample_percent = ?, "
                    "updated_us = ? WHERE name = ?",
                    {r.id, sample_percent, now, r.endpoint})));
    } else {
      RETURN_IF_ERROR(core::StatusOf(
          conn.Exec("INSERT INTO serving_endpoints (name, project, model, "
                    "stable_version, previous_version, rollout_id, sample_percent, "
                    "created_by, created_us, updated_us) VALUES (?, ?, ?, 0, 0, ?, ?, "
                    "?, ?, ?)",
                    {r.endpoint, r.project, r.model, r.id, sample_percent, ctx.actor, now, now})));
    }
    r.state = std::string(kPreparation);
    RETURN_IF_ERROR(core::StatusOf(
        conn.Exec(fmt::format("INSERT INTO serving_rollouts ({}) VALUES (?, ?, ?, ?, "
                              "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              kRolloutColumns),
                  {r.id,
                   r.endpoint,
                   r.model,
                   r.project,
                   r.candidate_version,
                   r.stable_version,
                   r.spec.ToJson().dump(),
                   r.state,
                   std::string(PhaseName(r.progress.phase)),
                   int64_t{r.progress.step},
                   r.progress.step_started_us,
                   int64_t{0},
                   int64_t{0},
                   std::string("null"),
                   r.reason,
                   std::string(),
                   ctx.actor,
                   now,
                   now,
                   int64_t{0}})));
    Json data{{"endpoint", r.endpoint},
              {"model", r.model},
              {"candidate_version", r.candidate_version},
              {"stable_version", r.stable_version},
              {"strategy", r.spec.ToJson()},
              {"reason", r.reason}};
    store::Event created;
    RETURN_IF_ERROR(core::StatusOf(
        lifecycles_.CreateIn(tx, std::string(kRolloutKind), r.id, data, c, &created)));
    CommandContext next = sys;
    next.causation_id = created.id;
    if (promote_now) {
      std::string why = r.stable_version == 0
                            ? "first deployment of the endpoint: nothing to compare with"
                            : "direct strategy: the candidate takes all traffic at once";
      Json pd{{"candidate_version", r.candidate_version}, {"stable_version", r.stable_version}};
      core::TransitionRequest t{.transition = "promote", .reason = why, .request_data = &pd};
      RETURN_IF_ERROR(core::StatusOf(
          lifecycles_.TransitionIn(tx, std::string(kRolloutKind), r.id, t, next, &promoted)));
      r.state = std::string(kFullProduction);
      r.outcome = "promoted: " + why;
      r.finished_us = now;
      RETURN_IF_ERROR(UpdateProgress(conn, r, r.state, now));
      RETURN_IF_ERROR(
          core::StatusOf(conn.Exec("UPDATE serving_endpoints SET stable_version = ?, "
                                   "previous_version = ?, rollout_id = '', updated_us = ? WHERE "
                                   "name = ?",
                                   {r.candidate_version, r.stable_version, now, r.endpoint})));
      CommandContext alias_ctx = sys;
      alias_ctx.causation_id = promoted.id;
      RETURN_IF_ERROR(
          MoveChampionIn(registry_, tx, r.model, r.candidate_version,
                         fmt::format("promoted to full production on endpoint \"{}\" by rollout {}",
                                     r.endpoint, r.id),
                         alias_ctx));
    } else {
      bool shadow = r.progress.phase == Phase::kShadow;
      Json pd{{"phase", PhaseName(r.progress.phase)},
              {"rule", RouteEntry{.rule = RuleFor(r.spec, r.progress)}.ToJson()["rule"]}};
      core::TransitionRequest t{.transition = shadow ? "start_shadow" : "start_rollout",
                                .reason = "",
                                .request_data = &pd};
      RETURN_IF_ERROR(
          core::StatusOf(lifecycles_.TransitionIn(tx, std::string(kRolloutKind), r.id, t, next)));
      r.state = StateFor(r.progress.phase);
      RETURN_IF_ERROR(UpdateProgress(conn, r, r.state, now));
    }
    return core::Ok();
  });
  if (!done)
    return done.error();
  {
    std::lock_guard lock(state_->windows_mu);
    state_->windows[r.id].last_evaluated_us = now;
  }
  RETURN_IF_ERROR(Publish());
  return GetRollout(r.id);
}

// Ends a rollout (promote, rollback, abort) in one command: the transition,
// the rollout row, the endpoint; then moves the champion alias on promotion.
Status Serving::Finish(const Rollout& rollout, const std::string& transition,
                       const std::string& reason, const Json& data, const CommandContext& ctx) {
  int64_t now = core::NowMicros();
  Rollout r = rollout;
  bool from_production = r.state == kFullProduction;
  store::Event appended;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    core::TransitionRequest t{.transition = transition, .reason = reason, .request_data = &data};
    CommandContext c = ctx;
    c.project = r.project;
    RETURN_IF_ERROR(core::StatusOf(
        lifecycles_.TransitionIn(tx, std::string(kRolloutKind), r.id, t, c, &appended)));
    auto& conn = tx.conn();
    if (transition == "promote") {
      r.state = std::string(kFullProduction);
      r.outcome = "promoted: " + reason;
      RETURN_IF_ERROR(
          core::StatusOf(conn.Exec("UPDATE serving_endpoints SET stable_version = ?, "
                                   "previous_version = ?, rollout_id = '', updated_us = ? WHERE "
                                   "name = ?",
                                   {r.candidate_version, r.stable_version, now, r.endpoint})));
    } else if (from_production) {
      // Back to the version this rollout replaced (still loaded).
      r.state = std::string(kRolledBack);
      r.outcome = "rolled back from full production: " + reason;
      RETURN_IF_ERROR(
          core::StatusOf(conn.Exec("UPDATE serving_endpoints SET stable_version = ?, "
                                   "previous_version = ?, updated_us = ? WHERE name = ?",
                                   {r.stable_version, r.candidate_version, now, r.endpoint})));
    } else {
      r.state = transition == "abort" ? std::string(kAborted) : std::string(kRolledBack);
      r.outcome = (transition == "abort" ? "aborted: " : "rolled back: ") + reason;
      RETURN_IF_ERROR(
          core::StatusOf(conn.Exec("UPDATE serving_endpoints SET rollout_id = '', updated_us = ? "
                                   "WHERE name = ?",
                                   {now, r.endpoint})));
    }
    if (!from_production)
      r.finished_us = now;
    RETURN_IF_ERROR(UpdateProgress(conn, r, r.state, now));
    std::optional<int64_t> champion;
    if (transition == "promote")
      champion = r.candidate_version;
    else if (from_production && r.stable_version > 0)
      champion = r.stable_version;
    if (!champion)
      return core::Ok();
    CommandContext alias_ctx{.actor = std::string(kServingActor),
                             .correlation_id = ctx.correlation_id,
                             .causation_id = appended.id,
                             .project = r.project};
    return MoveChampionIn(
        registry_, tx, r.model, *champion,
        fmt::format("{} on endpoint \"{}\" by rollout {}",
                    transition == "promote" ? "promoted to full production" : "rolled back",
                    r.endpoint, r.id),
        alias_ctx);
  });
  if (!done)
    return done.error();
  return Publish();
}

Result<Rollout> Serving::Act(const std::string& endpoint, ManualAction action,
                             const std::string& reason, const CommandContext& ctx) {
  if (core::IsBlankReason(reason))
    return core::InvalidArgument("field \"reason\": a manual intervention needs a reason",
                                 "reason");
  std::lock_guard cycle(state_->cycle_mu);
  ASSIGN_OR_RETURN(Endpoint e, GetEndpoint(endpoint));
  std::string id = e.rollout_id;
  if (id.empty() && action == ManualAction::kRollback) {
    // The last rollout, if it reached full production and still is the stable one.
    ASSIGN_OR_RETURN(auto recent, ListRollouts(endpoint, 1));
    if (!recent.empty() && recent[0].state == kFullProduction &&
        recent[0].candidate_version == e.stable_version && recent[0].stable_version > 0)
      id = recent[0].id;
  }
  if (id.empty()) {
    return Refused(fmt::format("endpoint \"{}\" has no active rollout{}", endpoint,
                               action == ManualAction::kRollback
                                   ? " and no promoted rollout with a previous version to return to"
                                   : ""),
                   "endpoint");
  }
  ASSIGN_OR_RETURN(Rollout r, GetRollout(id));
  Json data{{"endpoint", endpoint}, {"manual", true}};
  switch (action) {
    case ManualAction::kPromote:
      RETURN_IF_ERROR(Finish(r, "promote", reason, data, ctx));
      break;
    case ManualAction::kAbort:
      RETURN_IF_ERROR(Finish(r, "abort", reason, data, ctx));
      break;
    case ManualAction::kRollback:
      RETURN_IF_ERROR(Finish(r, "rollback", reason, data, ctx));
      break;
    case ManualAction::kPause:
    case ManualAction::kResume: {
      bool pause = action == ManualAction::kPause;
      std::string transition = pause                                ? "pause"
                               : r.progress.phase == Phase::kShadow ? "resume_shadow"
                                                                    : "resume_rollout";
      int64_t now = core::NowMicros();
      auto done = log_.Execute([&](CommandTx& tx) -> Status {
        core::TransitionRequest t{
            .transition = transition, .reason = reason, .request_data = &data};
        CommandContext c = ctx;
        c.project = r.project;
        RETURN_IF_ERROR(
            core::StatusOf(lifecycles_.TransitionIn(tx, std::string(kRolloutKind), r.id, t, c)));
        // A resumed step starts its minimum duration again.
        if (!pause)
          r.progress.step_started_us = now;
        r.state = pause ? std::string(kPaused) : StateFor(r.progress.phase);
        return UpdateProgress(tx.conn(), r, r.state, now);
      });
      if (!done)
        return done.error();
      RETURN_IF_ERROR(Publish());
      break;
    }
  }
  return GetRollout(id);
}

void Serving::Ingest(const std::vector<StatsReport>& reports) {
  int64_t second = core::NowMicros() / 1'000'000;
  std::lock_guard lock(state_->windows_mu);
  for (const auto& report : reports)
    state_->windows[report.rollout_id].Add(second, report.side, report.stats);
}

Status Serving::Evaluate(Rollout& r, int64_t now_us) {
  const int64_t read_updated_us = r.updated_us;
  SideStats stable, candidate;
  int64_t new_candidate = 0;
  {
    std::lock_guard lock(state_->windows_mu);
    Window& w = state_->windows[r.id];
    if (w.last_evaluated_us == 0)
      w.last_evaluated_us = std::max(r.progress.step_started_us, r.updated_us);
    if (now_us - w.last_evaluated_us < r.spec.analysis.interval_s * 1'000'000)
      return core::Ok();
    w.last_evaluated_us = now_us;
    int64_t now_s = now_us / 1'000'000;
    w.Prune(now_s - r.spec.analysis.window_s - 1);
    std::tie(stable, candidate) = w.Sum(now_s - r.spec.analysis.window_s + 1);
    new_candidate = w.pending_candidate;
    w.pending_candidate = 0;
  }
  Evaluation ev = Analyze(r.spec.analysis, stable, candidate, r.progress.phase == Phase::kShadow);
  r.progress.step_requests += new_candidate;
  if (ev.verdict == Verdict::kFail)
    ++r.progress.failures;
  Action action = Decide(r.spec, r.progress, ev.verdict, now_us);
  Json evaluation = ev.ToJson();
  evaluation["action"] = ActionName(action);
  evaluation["phase"] = PhaseName(r.progress.phase);
  evaluation["step"] = r.progress.step;
  evaluation["step_requests"] = r.progress.step_requests;
  evaluation["failures"] = r.progress.failures;
  evaluation["failure_limit"] = r.spec.analysis.failure_limit;
  evaluation["window_s"] = r.spec.analysis.window_s;
  if (r.progress.phase == Phase::kCanary)
    evaluation["weight"] = r.spec.steps[static_cast<size_t>(r.progress.step)].weight;
  evaluation["time"] = core::FormatRfc3339(now_us);
  r.last_evaluation = evaluation;

  CommandContext sys{.actor = std::string(kServingActor), .project = r.project};
  store::Event evaluated;
  std::optional<Progress> next;
  if (action == Action::kAdvance)
    next = NextPhase(r.spec, r.progress, now_us);
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(evaluated, tx.Append({.type = "deployment.analysis_evaluated",
                                           .subject_kind = std::string(kRolloutKind),
                                           .subject_id = r.id,
                                           .actor = sys.actor,
                                           .project = r.project,
                                           .data = evaluation}));
    if (next) {
      bool from_shadow = r.progress.phase == Phase::kShadow;
      r.progress = *next;
      Json pd{{"phase", PhaseName(next->phase)},
              {"step", next->step},
              {"rule", RouteEntry{.rule = RuleFor(r.spec, *next)}.ToJson()["rule"]}};
      core::TransitionRequest t{.transition = from_shadow ? "start_rollout" : "advance",
                                .reason = "analysis passed",
                                .request_data = &pd};
      CommandContext c = sys;
      c.causation_id = evaluated.id;
      RETURN_IF_ERROR(
          core::StatusOf(lifecycles_.TransitionIn(tx, std::string(kRolloutKind), r.id, t, c)));
    }
    return UpdateProgress(tx.conn(), r, r.state == kPaused ? r.state : StateFor(r.progress.phase),
                          now_us, read_updated_us);
  });
  if (!done)
    return done.error();
  CommandContext cause = sys;
  cause.causation_id = evaluated.id;
  if (action == Action::kPromote) {
    std::string reason =
        r.progress.phase == Phase::kShadow
            ? "analysis passed at the end of the shadow phase"
            : fmt::format("analysis passed at the last step ({} candidate requests in the step)",
                          r.progress.step_requests);
    return Finish(r, "promote", reason, evaluation, cause);
  }
  if (action == Action::kRollback) {
    std::vector<std::string> failed;
    for (const auto& c : ev.checks) {
      if (!c.passed && c.name != "sample_size")
        failed.push_back(fmt::format("{} {:.4g} (limit {:.4g})", c.name, c.value, c.threshold));
    }
    std::string reason = fmt::format("analysis failed {} times (limit {}): {}", r.progress.failures,
                                     r.spec.analysis.failure_limit, fmt::join(failed, ", "));
    return Finish(r, "rollback", reason, evaluation, cause);
  }
  if (next)
    return Publish();
  return core::Ok();
}

// kervan_rollout_state (1 for the state of each endpoint's latest rollout)
// and kervan_rollout_candidate_weight (percent of traffic on the candidate).
Status Serving::ExportRolloutState() {
  static core::Family<core::Gauge>& state_gauge = core::GlobalMetrics().AddGauge(
      "kervan_rollout_state", "1 for the state of the endpoint's latest rollout",
      {"endpoint", "state"});
  static core::Family<core::Gauge>& weight_gauge = core::GlobalMetrics().AddGauge(
      "kervan_rollout_candidate_weight",
      "Percent of the endpoint's requests answered by the candidate version", {"endpoint"});
  std::map<std::string, std::string> latest;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT endpoint, state FROM serving_rollouts ORDER "
                                            "BY created_us"));
    for (const auto& r : rows)
      latest[r.Text(0)] = r.Text(1);
  }
  RoutingTable table = Table();
  for (const auto& [endpoint, state] : latest) {
    for (std::string_view s :
         {kPreparation, kShadow, kGradualRollout, kPaused, kFullProduction, kRolledBack, kAborted})
      state_gauge.With({endpoint, std::string(s)}).Set(state == s ? 1 : 0);
    double weight = 0;
    auto it = table.endpoints.find(endpoint);
    if (it != table.endpoints.end() && it->second.rule.phase == Phase::kCanary)
      weight = it->second.rule.weight;
    weight_gauge.With({endpoint}).Set(weight);
  }
  return core::Ok();
}

Status Serving::RunCycle(int64_t now_us) {
  if (gateway_ != nullptr)
    Ingest(gateway_->DrainStats());
  std::lock_guard cycle(state_->cycle_mu);
  store::Rows rows;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(rows, conn->Query(fmt::format("SELECT {} FROM serving_rollouts WHERE state IN "
                                                   "('Shadow', 'GradualRollout') ORDER BY "
                                                   "created_us",
                                                   kRolloutColumns)));
  }
  Status first = core::Ok();
  for (const auto& row : rows) {
    auto r = RolloutFromRow(row);
    if (!r) {
      core::LogError(r.error().message, {{"event.action", "serving.evaluate_failed"}});
      continue;
    }
    if (auto s = Evaluate(*r, now_us); !s) {
      core::LogError(fmt::format("serving: rollout {}: {}", r->id, s.error().message),
                     {{"event.action", "serving.evaluate_failed"}});
      if (first)
        first = s;
    }
  }
  // Forget windows of rollouts that ended.
  std::set<std::string> active;
  for (const auto& row : rows)
    active.insert(row.Text(0));
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto paused,
                     conn->Query("SELECT id FROM serving_rollouts WHERE state = 'Paused'"));
    for (const auto& row : paused)
      active.insert(row.Text(0));
  }
  RETURN_IF_ERROR(ExportRolloutState());
  std::lock_guard lock(state_->windows_mu);
  for (auto it = state_->windows.begin(); it != state_->windows.end();) {
    // Ended rollouts' windows go once no gateway has reported for them for a
    // minute (a report may still arrive from a gateway that lags).
    if (!active.count(it->first) &&
        (it->second.buckets.empty() || it->second.buckets.back().second < now_us / 1'000'000 - 60))
      it = state_->windows.erase(it);
    else
      ++it;
  }
  return first;
}

Status Serving::StoreSamples(const std::vector<Sample>& samples) {
  if (samples.empty())
    return core::Ok();
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  RETURN_IF_ERROR(conn->Begin());
  for (const Sample& s : samples) {
    auto inserted = conn->Exec(
        "INSERT INTO serving_samples (endpoint, model, version, rollout_id, side, request_id, "
        "time_us, input, output, latency_us, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {s.endpoint, s.model, s.version, s.rollout_id, s.side, s.request_id, s.time_us,
         s.input.dump(), s.output.dump(), s.latency_us, s.error});
    if (!inserted) {
      (void)conn->Rollback();
      return inserted.error();
    }
  }
  return conn->Commit();
}

Result<std::vector<Sample>> Serving::ListSamples(const std::string& endpoint, int64_t after_id,
                                                 int limit) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query("SELECT id, endpoint, model, version, rollout_id, side, request_id, "
                               "time_us, input, output, latency_us, error FROM serving_samples "
                               "WHERE endpoint = ? AND id > ? ORDER BY id LIMIT ?",
                               {endpoint, after_id, int64_t{limit}}));
  std::vector<Sample> out;
  for (const auto& r : rows) {
    Sample s;
    s.id = r.Int(0);
    s.endpoint = r.Text(1);
    s.model = r.Text(2);
    s.version = r.Int(3);
    s.rollout_id = r.Text(4);
    s.side = r.Text(5);
    s.request_id = r.Text(6);
    s.time_us = r.Int(7);
    s.input = Json::parse(r.Text(8), nullptr, false);
    s.output = Json::parse(r.Text(9), nullptr, false);
    s.latency_us = r.Int(10);
    s.error = r.Text(11);
    out.push_back(std::move(s));
  }
  return out;
}

void Serving::Start() {
  std::lock_guard lock(state_->thread_mu);
  if (state_->thread.joinable())
    return;
  state_->stopping = false;
  state_->thread = std::thread([this] {
    std::unique_lock lock(state_->thread_mu);
    while (!state_->stopping) {
      state_->cv.wait_for(lock, options_.cycle_interval);
      if (state_->stopping)
        break;
      lock.unlock();
      if (auto s = RunCycle(core::NowMicros()); !s)
        core::LogWarn("serving: controller cycle: " + s.error().message);
      lock.lock();
    }
  });
}

void Serving::Stop() {
  {
    std::lock_guard lock(state_->thread_mu);
    if (!state_->thread.joinable())
      return;
    state_->stopping = true;
  }
  state_->cv.notify_all();
  state_->thread.join();
}

// ---------------------------------------------------------------------------
// The server's model loader

ModelLoader MakeRegistryLoader(registry::Registry& registry, artifacts::ArtifactStore* store,
                               std::chrono::milliseconds upstream_timeout) {
  return [&registry, store, upstream_timeout](
             const std::string& model, int64_t version) -> Result<std::shared_ptr<ModelRuntime>> {
    ASSIGN_OR_RETURN(registry::ModelVersion v, registry.GetVersion(model, version));
    const std::string& uri = v.artifact_uri;
    if (uri.rfind("http://", 0) == 0) {
      ASSIGN_OR_RETURN(auto rt,
                       ConnectUpstream({.url = uri, .timeout = upstream_timeout}, v.signature));
      return std::shared_ptr<ModelRuntime>(std::move(rt));
    }
    std::string bytes;
    constexpr std::string_view kArtifacts = "mlflow-artifacts:";
    constexpr std::string_view kFile = "file://";
    if (uri.rfind(kArtifacts, 0) == 0) {
      if (store == nullptr)
        return Refused("no artifact store is configured", "artifact_uri");
      std::string path = uri.substr(kArtifacts.size());
      while (!path.empty() && path[0] == '/')
        path.erase(0, 1);
      ASSIGN_OR_RETURN(bytes, store->Get(path));
    } else if (uri.rfind(kFile, 0) == 0) {
      std::ifstream in(uri.substr(kFile.size()), std::ios::binary);
      if (!in)
        return Missing(fmt::format("cannot read the model file {}", uri), "artifact_uri");
      std::ostringstream ss;
      ss << in.rdbuf();
      bytes = ss.str();
    } else {
      return core::InvalidArgument(
          fmt::format("artifact URI \"{}\": Kervan serves mlflow-artifacts:/..., file://... "
                      "(an XGBoost JSON model) or http://... (an Open Inference Protocol server)",
                      uri),
          "artifact_uri");
    }
    ASSIGN_OR_RETURN(auto rt, LoadXgboostModel(bytes, v.signature));
    return std::shared_ptr<ModelRuntime>(std::move(rt));
  };
}

}  // namespace kervan::serving
