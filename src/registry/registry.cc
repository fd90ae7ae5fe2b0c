#include "registry/registry.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <fmt/format.h>

namespace kervan::registry {
namespace {

using store::CommandTx;
using store::Connection;
using store::Rows;

bool Alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

Json TagsJson(const std::map<std::string, std::string>& tags) {
  Json out = Json::object();
  for (const auto& [k, v] : tags)
    out[k] = v;
  return out;
}

Json MetricsJson(const std::map<std::string, double>& metrics) {
  Json out = Json::object();
  for (const auto& [k, v] : metrics)
    out[k] = v;
  return out;
}

Json ChecksJson(const std::vector<GateCheck>& checks) {
  Json out = Json::array();
  for (const auto& c : checks)
    out.push_back(c.ToJson());
  return out;
}

Json ParseStored(const std::string& text) {
  auto j = core::ParseJson(text);
  return j ? *j : Json(nullptr);
}

std::map<std::string, std::string> TagsFrom(const Json& j) {
  std::map<std::string, std::string> out;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_string())
        out[k] = v.get<std::string>();
    }
  }
  return out;
}

std::map<std::string, double> MetricsFrom(const Json& j) {
  std::map<std::string, double> out;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_number())
        out[k] = v.get<double>();
    }
  }
  return out;
}

std::string EntityId(const std::string& model, int64_t version) {
  return fmt::format("{}:{}", model, version);
}

std::string StateNameFor(ManualTransition t) {
  switch (t) {
    case ManualTransition::kApprove:
      return "approve";
    case ManualTransition::kReject:
      return "reject";
    case ManualTransition::kArchive:
      return "archive";
  }
  return "";
}

// The model_version lifecycle. pass/fail/validate are automation's
// (permission model_version.validate, granted to no role); approve, reject
// and archive are people's and need a reason.
Result<core::StateMachine> VersionLifecycle() {
  using core::TransitionSpec;
  auto evidence_all_passed = [](const core::GuardInput& in) -> Status {
    const Json& checks = in.request_data.value("checks", Json());
    if (!checks.is_array()) {
      return core::FailedPrecondition(
          "guard: transition \"pass\" needs evidence: data.checks must be the array of check "
          "outcomes");
    }
    for (const auto& c : checks) {
      if (!c.is_object() || c.value("passed", false) != true) {
        return core::FailedPrecondition(fmt::format("guard: check \"{}\" did not pass",
                                                    c.is_object() ? c.value("name", "?") : "?"));
      }
    }
    return core::Ok();
  };
  return core::StateMachine::Build(
      std::string(kVersionKind),
      {"Registered", "Validating", "DeploymentReady", "Rejected", "Archived", "Deleted"},
      "Registered",
      {
          {.name = "validate",
           .from = {"Registered"},
           .to = "Validating",
           .event = "validation_started",
           .permission = "model_version.validate"},
          {.name = "pass",
           .from = {"Validating"},
           .to = "DeploymentReady",
           .event = "validated",
           .permission = "model_version.validate",
           .guard = evidence_all_passed,
           .guard_description = "every check in data.checks passed"},
          {.name = "fail",
           .from = {"Validating"},
           .to = "Rejected",
           .event = "validation_failed",
           .permission = "model_version.validate"},
          {.name = "approve",
           .from = {"Validating", "Rejected"},
           .to = "DeploymentReady",
           .event = "approved",
           .permission = "model_version.approve",
           .reason_required = true},
          {.name = "reject",
           .from = {"Validating", "DeploymentReady"},
           .to = "Rejected",
           .event = "rejected",
           .permission = "model_version.approve",
           .reason_required = true},
          {.name = "archive",
           .from = {"DeploymentReady", "Rejected"},
           .to = "Archived",
           .event = "archived",
           .permission = "model_version.archive",
           .reason_required = true},
          // Applied by Registry::DeleteVersion / DeleteModel, which also
          // remove the version's registry rows; the entity stays, Deleted.
          {.name = "delete",
           .from = {"Registered", "Validating", "DeploymentReady", "Rejected", "Archived"},
           .to = "Deleted",
           .event = "deleted",
           .permission = "registry.configure"},
      });
}

constexpr std::string_view kModelColumns =
    "name, project, description, tags, gate, latest_version, created_us, created_by, updated_us";

Result<std::optional<RegisteredModel>> LoadModel(Connection& conn, const std::string& name) {
  ASSIGN_OR_RETURN(
      Rows rows,
      conn.Query(fmt::format("SELECT {} FROM registered_models WHERE name = ?", kModelColumns),
                 {name}));
  if (rows.empty())
    return std::optional<RegisteredModel>();
  const auto& r = rows[0];
  RegisteredModel m;
  m.name = r.Text(0);
  m.project = r.Text(1);
  m.description = r.Text(2);
  m.tags = TagsFrom(ParseStored(r.Text(3)));
  Json gate = ParseStored(r.Text(4));
  if (gate.is_array()) {
    for (size_t i = 0; i < gate.size(); ++i) {
      auto c = GateCheck::FromJson(gate[i], fmt::format("gate[{}].", i));
      if (c)
        m.checks.push_back(std::move(c).value());
    }
  }
  // Column 5 is the numbering counter (VersionCounter); latest_version is
  // the newest version that exists, which differs after deletions.
  m.created_us = r.Int(6);
  m.created_by = r.Text(7);
  m.updated_us = r.Int(8);
  ASSIGN_OR_RETURN(Rows aliases, conn.Query("SELECT alias, version FROM model_aliases WHERE "
                                            "model = ? ORDER BY alias",
                                            {name}));
  for (const auto& a : aliases)
    m.aliases[a.Text(0)] = a.Int(1);
  ASSIGN_OR_RETURN(Rows newest,
                   conn.Query("SELECT MAX(version) FROM model_versions WHERE model = ?", {name}));
  m.latest_version = newest.empty() || newest[0].IsNull(0) ? 0 : newest[0].Int(0);
  return std::optional<RegisteredModel>(std::move(m));
}

// The highest version number the model has given out (deleted versions
// included): the next version is this + 1.
Result<int64_t> VersionCounter(Connection& conn, const std::string& name) {
  ASSIGN_OR_RETURN(
      Rows rows, conn.Query("SELECT latest_version FROM registered_models WHERE name = ?", {name}));
  return rows.empty() ? int64_t{0} : rows[0].Int(0);
}

Result<RegisteredModel> RequireModel(Connection& conn, const std::string& name) {
  ASSIGN_OR_RETURN(auto m, LoadModel(conn, name));
  if (!m)
    return core::NotFound(fmt::format("registered model \"{}\" not found", name));
  return std::move(*m);
}

constexpr std::string_view kVersionColumns =
    "model, version, project, state, source_run_id, artifact_uri, metrics, signature, tags, "
    "description, validation, created_us, created_by, updated_us, stage, source, run_link";

ModelVersion VersionFromRow(const store::Row& r) {
  ModelVersion v;
  v.model = r.Text(0);
  v.version = r.Int(1);
  v.project = r.Text(2);
  v.state = r.Text(3);
  v.source_run_id = r.Text(4);
  v.artifact_uri = r.Text(5);
  v.metrics = MetricsFrom(ParseStored(r.Text(6)));
  v.signature = ParseStored(r.Text(7));
  v.tags = TagsFrom(ParseStored(r.Text(8)));
  v.description = r.Text(9);
  v.validation = ParseStored(r.Text(10));
  v.created_us = r.Int(11);
  v.created_by = r.Text(12);
  v.updated_us = r.Int(13);
  v.stage = r.Text(14);
  v.source = r.Text(15);
  v.run_link = r.Text(16);
  return v;
}

Status AttachAliases(Connection& conn, ModelVersion& v) {
  ASSIGN_OR_RETURN(Rows rows,
                   conn.Query("SELECT alias FROM model_aliases WHERE model = ? AND version = ? "
                              "ORDER BY alias",
                              {v.model, v.version}));
  for (const auto& r : rows)
    v.aliases.push_back(r.Text(0));
  return core::Ok();
}

Result<ModelVersion> RequireVersion(Connection& conn, const std::string& model, int64_t version) {
  ASSIGN_OR_RETURN(Rows rows, conn.Query(fmt::format("SELECT {} FROM model_versions WHERE "
                                                     "model = ? AND version = ?",
                                                     kVersionColumns),
                                         {model, version}));
  if (rows.empty()) {
    // Say which half is wrong.
    ASSIGN_OR_RETURN(auto m, LoadModel(conn, model));
    if (!m)
      return core::NotFound(fmt::format("registered model \"{}\" not found", model));
    return core::NotFound(fmt::format("model \"{}\" has no version {}", model, version));
  }
  ModelVersion v = VersionFromRow(rows[0]);
  RETURN_IF_ERROR(AttachAliases(conn, v));
  return v;
}

// The highest version a deleted or renamed model of this name had (0: none).
Result<int64_t> TombstoneVersion(Connection& conn, const std::string& name) {
  ASSIGN_OR_RETURN(
      Rows rows,
      conn.Query("SELECT last_version FROM registered_model_tombstones WHERE name = ?", {name}));
  return rows.empty() ? int64_t{0} : rows[0].Int(0);
}

// Remembers that `name` has used versions up to `last_version`.
Status WriteTombstone(Connection& conn, const std::string& name, int64_t last_version,
                      int64_t time_us, const std::string& actor) {
  ASSIGN_OR_RETURN(int64_t known, TombstoneVersion(conn, name));
  if (last_version <= known)
    return core::Ok();
  RETURN_IF_ERROR(conn.Exec(
      "INSERT INTO registered_model_tombstones (name, last_version, deleted_us, deleted_by) "
      "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET last_version = "
      "excluded.last_version, deleted_us = excluded.deleted_us, deleted_by = excluded.deleted_by",
      {name, last_version, time_us, actor}));
  return core::Ok();
}

// Applies a lifecycle transition and mirrors the new state into
// model_versions, in the caller's transaction.
Status ApplyTransition(CommandTx& tx, const store::Lifecycles& lifecycles, ModelVersion& v,
                       const std::string& transition, const std::string& reason, const Json& data,
                       const store::CommandContext& ctx) {
  core::TransitionRequest t{.transition = transition, .reason = reason, .request_data = &data};
  ASSIGN_OR_RETURN(store::Entity e,
                   lifecycles.TransitionIn(tx, std::string(kVersionKind), v.entity_id(), t, ctx));
  v.state = e.state;
  v.updated_us = e.updated_us;
  RETURN_IF_ERROR(tx.conn().Exec(
      "UPDATE model_versions SET state = ?, updated_us = ? WHERE model = ? AND version = ?",
      {v.state, v.updated_us, v.model, v.version}));
  return core::Ok();
}

bool Compare(double value, const std::string& op, double threshold) {
  if (op == ">=")
    return value >= threshold;
  if (op == ">")
    return value > threshold;
  if (op == "<=")
    return value <= threshold;
  if (op == "<")
    return value < threshold;
  if (op == "==")
    return value == threshold;
  return value != threshold;  // "!="
}

}  // namespace

// ---- names, checks, JSON ----------------------------------------------------------

Status ValidateModelName(std::string_view name, std::string_view field) {
  bool ok = !name.empty() && name.size() <= 128 && Alnum(name[0]) &&
            std::all_of(name.begin(), name.end(),
                        [](char c) { return Alnum(c) || c == '.' || c == '_' || c == '-'; });
  if (!ok) {
    return core::InvalidArgument(
        fmt::format("field \"{}\": \"{}\" is not a model name (1-128 characters [A-Za-z0-9._-], "
                    "starting with a letter or digit)",
                    field, name),
        std::string(field));
  }
  return core::Ok();
}

Status ValidateAliasName(std::string_view alias, std::string_view field) {
  bool ok = !alias.empty() && alias.size() <= 64 && alias[0] >= 'a' && alias[0] <= 'z' &&
            std::all_of(alias.begin(), alias.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
            });
  if (!ok || alias == "latest") {
    return core::InvalidArgument(
        fmt::format("field \"{}\": \"{}\" is not an alias name (1-64 characters [a-z0-9_-] "
                    "starting with a letter; \"latest\" is reserved)",
                    field, alias),
        std::string(field));
  }
  return core::Ok();
}

Json GateCheck::ToJson() const {
  if (kind == Kind::kChampion) {
    return {{"name", name},
            {"type", "champion"},
            {"metric", metric},
            {"max_regression", max_regression},
            {"higher_is_better", higher_is_better}};
  }
  return {{"name", name},
          {"type", "threshold"},
          {"metric", metric},
          {"op", op},
          {"threshold", threshold}};
}

Result<GateCheck> GateCheck::FromJson(const Json& json, const std::string& prefix) {
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(json, prefix));
  GateCheck c;
  ASSIGN_OR_RETURN(auto type, r.OptionalString("type"));
  ASSIGN_OR_RETURN(c.metric, r.RequiredString("metric"));
  if (c.metric.empty() || c.metric.size() > 250)
    return core::InvalidArgument(
        fmt::format("field \"{}metric\": must be 1-250 characters", prefix), prefix + "metric");
  ASSIGN_OR_RETURN(auto name, r.OptionalString("name"));
  std::string t = type.value_or("threshold");
  if (t == "threshold") {
    ASSIGN_OR_RETURN(auto op, r.OptionalString("op"));
    c.op = op.value_or(">=");
    static const std::vector<std::string> kOps = {">=", ">", "<=", "<", "==", "!="};
    if (std::find(kOps.begin(), kOps.end(), c.op) == kOps.end()) {
      return core::InvalidArgument(
          fmt::format("field \"{}op\": \"{}\" is not one of >=, >, <=, <, ==, !=", prefix, c.op),
          prefix + "op");
    }
    ASSIGN_OR_RETURN(auto threshold, r.OptionalNumber("threshold"));
    if (!threshold)
      return core::InvalidArgument(fmt::format("field \"{}threshold\": required", prefix),
                                   prefix + "threshold");
    c.threshold = *threshold;
    c.name = name.value_or(fmt::format("metrics.{} {} {}", c.metric, c.op, c.threshold));
  } else if (t == "champion") {
    c.kind = Kind::kChampion;
    ASSIGN_OR_RETURN(auto max_regression, r.OptionalNumber("max_regression"));
    c.max_regression = max_regression.value_or(0);
    if (c.max_regression < 0) {
      return core::InvalidArgument(
          fmt::format("field \"{}max_regression\": must not be negative", prefix),
          prefix + "max_regression");
    }
    ASSIGN_OR_RETURN(auto higher, r.OptionalBool("higher_is_better"));
    c.higher_is_better = higher.value_or(true);
    c.name = name.value_or(
        fmt::format("metrics.{} vs champion (max regression {})", c.metric, c.max_regression));
  } else {
    return core::InvalidArgument(
        fmt::format("field \"{}type\": \"{}\" is not threshold or champion", prefix, t),
        prefix + "type");
  }
  RETURN_IF_ERROR(r.Finish());
  return c;
}

std::vector<CheckOutcome> EvaluateGate(const std::vector<GateCheck>& checks,
                                       const std::map<std::string, double>& candidate,
                                       const std::optional<std::map<std::string, double>>& champion,
                                       int64_t champion_version) {
  std::vector<CheckOutcome> out;
  for (const auto& c : checks) {
    CheckOutcome o{.name = c.name};
    o.evidence = c.ToJson();
    auto value = candidate.find(c.metric);
    if (value == candidate.end()) {
      o.evidence["value"] = nullptr;
      o.evidence["detail"] = fmt::format("the version has no metric \"{}\"", c.metric);
      out.push_back(std::move(o));
      continue;
    }
    o.evidence["value"] = value->second;
    if (c.kind == GateCheck::Kind::kThreshold) {
      o.passed = std::isfinite(value->second) && Compare(value->second, c.op, c.threshold);
      o.evidence["detail"] = fmt::format("{} {} {}: {}", value->second, c.op, c.threshold,
                                         o.passed ? "true" : "false");
    } else if (!champion) {
      o.passed = true;
      o.evidence["champion_version"] = nullptr;
      o.evidence["detail"] = "no version holds the champion alias: nothing to compare with";
    } else {
      o.evidence["champion_version"] = champion_version;
      auto theirs = champion->find(c.metric);
      if (theirs == champion->end()) {
        o.evidence["champion_value"] = nullptr;
        o.evidence["detail"] = fmt::format("the champion (version {}) has no metric \"{}\"",
                                           champion_version, c.metric);
      } else {
        o.evidence["champion_value"] = theirs->second;
        double regression =
            c.higher_is_better ? theirs->second - value->second : value->second - theirs->second;
        o.evidence["regression"] = regression;
        o.passed = std::isfinite(regression) && regression <= c.max_regression;
        o.evidence["detail"] =
            fmt::format("{} vs champion {} ({}): regression {} {} allowed {}", value->second,
                        theirs->second, c.higher_is_better ? "higher is better" : "lower is better",
                        regression, o.passed ? "<=" : ">", c.max_regression);
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

Json RegisteredModel::ToJson() const {
  Json aliases_json = Json::object();
  for (const auto& [a, v] : aliases)
    aliases_json[a] = v;
  return {{"name", name},
          {"project", project},
          {"description", description},
          {"tags", TagsJson(tags)},
          {"validation", {{"checks", ChecksJson(checks)}}},
          {"aliases", aliases_json},
          {"latest_version", latest_version},
          {"created", core::FormatRfc3339(created_us)},
          {"created_by", created_by},
          {"updated", core::FormatRfc3339(updated_us)}};
}

std::string ModelVersion::entity_id() const {
  return EntityId(model, version);
}

Json ModelVersion::ToJson() const {
  return {{"model", model},
          {"version", version},
          {"project", project},
          {"state", state},
          {"source_run_id", source_run_id},
          {"artifact_uri", artifact_uri},
          {"metrics", MetricsJson(metrics)},
          {"signature", signature},
          {"tags", TagsJson(tags)},
          {"description", description},
          {"validation", validation},
          {"aliases", aliases},
          {"stage", stage},
          {"created", core::FormatRfc3339(created_us)},
          {"created_by", created_by},
          {"updated", core::FormatRfc3339(updated_us)}};
}

Json AliasChange::ToJson() const {
  return {{"alias", alias},
          {"version", version ? Json(version) : Json(nullptr)},
          {"previous_version", previous_version ? Json(previous_version) : Json(nullptr)},
          {"seq", seq},
          {"time", core::FormatRfc3339(time_us)},
          {"actor", actor},
          {"reason", reason}};
}

// ---- the registry ------------------------------------------------------------------

Result<std::unique_ptr<Registry>> Registry::Open(store::Database& db, store::EventLog& log,
                                                 store::Lifecycles& lifecycles) {
  ASSIGN_OR_RETURN(core::StateMachine machine, VersionLifecycle());
  RETURN_IF_ERROR(lifecycles.Register(std::move(machine)));
  return std::unique_ptr<Registry>(new Registry(db, log, lifecycles));
}

Result<RegisteredModel> Registry::CreateModel(const CreateModelRequest& request,
                                              const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateModelName(request.name));
  RETURN_IF_ERROR(auth::ValidateProjectName(request.project));
  store::CommandContext scoped = ctx;
  scoped.project = request.project;
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(auto existing, LoadModel(tx.conn(), request.name));
    if (existing) {
      return core::AlreadyExists(fmt::format("registered model \"{}\" already exists (project {})",
                                             request.name, existing->project));
    }
    ASSIGN_OR_RETURN(int64_t first_version, TombstoneVersion(tx.conn(), request.name));
    ASSIGN_OR_RETURN(
        store::Event ev,
        tx.Append({.type = "registered_model.created",
                   .subject_kind = "registered_model",
                   .subject_id = request.name,
                   .actor = scoped.actor,
                   .correlation_id = scoped.correlation_id,
                   .causation_id = scoped.causation_id,
                   .project = scoped.project,
                   .data = {{"description", request.description},
                            {"tags", TagsJson(request.tags)},
                            {"validation", {{"checks", ChecksJson(request.checks)}}}}}));
    RETURN_IF_ERROR(tx.conn().Exec(
        fmt::format("INSERT INTO registered_models ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    kModelColumns),
        {request.name, request.project, request.description,
         core::CanonicalJson(TagsJson(request.tags)),
         core::CanonicalJson(ChecksJson(request.checks)), first_version, ev.time_us, scoped.actor,
         ev.time_us}));
    return core::Ok();
  }));
  return GetModel(request.name);
}

Result<RegisteredModel> Registry::GetModel(const std::string& name) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  return RequireModel(*conn, name);
}

Result<std::vector<RegisteredModel>> Registry::ListModels(const ListModelsRequest& request) {
  std::vector<RegisteredModel> out;
  if (request.projects && request.projects->empty())
    return out;
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  std::string sql = "SELECT name FROM registered_models WHERE name > ?";
  std::vector<store::Value> params{request.after};
  if (request.projects) {
    sql += " AND project IN (";
    for (const auto& p : *request.projects) {
      sql += params.size() > 1 ? ", ?" : "?";
      params.emplace_back(p);
    }
    sql += ")";
  }
  sql += " ORDER BY name LIMIT ?";
  params.emplace_back(int64_t{std::clamp(request.limit, 1, 1000)});
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  for (const auto& r : rows) {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(*conn, r.Text(0)));
    out.push_back(std::move(m));
  }
  return out;
}

Result<RegisteredModel> Registry::UpdateModel(
    const std::string& name, std::optional<std::string> description,
    std::optional<std::map<std::string, std::string>> tags, const store::CommandContext& ctx) {
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), name));
    Json changes = Json::object();
    if (description && *description != m.description) {
      changes["description"] = {{"from", m.description}, {"to", *description}};
      m.description = *description;
    }
    if (tags && *tags != m.tags) {
      changes["tags"] = {{"from", TagsJson(m.tags)}, {"to", TagsJson(*tags)}};
      m.tags = *tags;
    }
    if (changes.empty())
      return core::Ok();  // nothing to record
    ASSIGN_OR_RETURN(store::Event ev, tx.Append({.type = "registered_model.updated",
                                                 .subject_kind = "registered_model",
                                                 .subject_id = name,
                                                 .actor = ctx.actor,
                                                 .correlation_id = ctx.correlation_id,
                                                 .project = m.project,
                                                 .data = changes}));
    RETURN_IF_ERROR(tx.conn().Exec(
        "UPDATE registered_models SET description = ?, tags = ?, updated_us = ? WHERE name = ?",
        {m.description, core::CanonicalJson(TagsJson(m.tags)), ev.time_us, name}));
    return core::Ok();
  }));
  return GetModel(name);
}

Result<RegisteredModel> Registry::SetGate(const std::string& name, std::vector<GateCheck> checks,
                                          const std::string& reason,
                                          const store::CommandContext& ctx) {
  if (core::IsBlankReason(reason)) {
    return core::InvalidArgument("field \"reason\": changing a validation gate needs a reason",
                                 "reason");
  }
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), name));
    ASSIGN_OR_RETURN(
        store::Event ev,
        tx.Append({.type = "registered_model.gate_set",
                   .subject_kind = "registered_model",
                   .subject_id = name,
                   .actor = ctx.actor,
                   .reason = reason,
                   .correlation_id = ctx.correlation_id,
                   .project = m.project,
                   .data = {{"from", ChecksJson(m.checks)}, {"to", ChecksJson(checks)}}}));
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE registered_models SET gate = ?, updated_us = ? WHERE name = ?",
                       {core::CanonicalJson(ChecksJson(checks)), ev.time_us, name}));
    return core::Ok();
  }));
  return GetModel(name);
}

Result<ModelVersion> Registry::RegisterVersion(const std::string& model,
                                               const RegisterVersionRequest& request,
                                               const store::CommandContext& ctx) {
  for (const auto& [k, v] : request.metrics) {
    if (!std::isfinite(v)) {
      return core::InvalidArgument(fmt::format("field \"metrics.{}\": must be finite", k),
                                   "metrics." + k);
    }
  }
  int64_t version = 0;
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), model));
    ASSIGN_OR_RETURN(int64_t counter, VersionCounter(tx.conn(), model));
    version = counter + 1;
    int64_t now = core::NowMicros();
    RETURN_IF_ERROR(tx.conn().Exec(
        "UPDATE registered_models SET latest_version = ?, updated_us = ? WHERE name = ?",
        {version, now, model}));
    RETURN_IF_ERROR(tx.conn().Exec(
        fmt::format("INSERT INTO model_versions ({}) VALUES (?, ?, ?, 'Registered', ?, ?, ?, ?, ?, "
                    "?, 'null', ?, ?, ?, ?, ?, ?)",
                    kVersionColumns),
        {model, version, m.project, request.source_run_id, request.artifact_uri,
         core::CanonicalJson(MetricsJson(request.metrics)), core::CanonicalJson(request.signature),
         core::CanonicalJson(TagsJson(request.tags)), request.description, now, ctx.actor, now,
         std::string(kStageNone), request.source, request.run_link}));

    // Registered, by the person (or service) who registered it.
    store::CommandContext user = ctx;
    user.project = m.project;
    Json data = {{"model", model},
                 {"version", version},
                 {"source_run_id", request.source_run_id},
                 {"artifact_uri", request.artifact_uri},
                 {"metrics", MetricsJson(request.metrics)}};
    store::Event created;
    RETURN_IF_ERROR(lifecycles_.CreateIn(tx, std::string(kVersionKind), EntityId(model, version),
                                         data, user, &created));

    // The gate, as automation, caused by the registration.
    store::CommandContext system{.actor = std::string(kSystemActor),
                                 .correlation_id = ctx.correlation_id,
                                 .causation_id = created.id,
                                 .project = m.project};
    ModelVersion v{.model = model, .version = version, .project = m.project, .state = "Registered"};
    RETURN_IF_ERROR(ApplyTransition(tx, lifecycles_, v, "validate", "",
                                    {{"checks", ChecksJson(m.checks)}}, system));

    std::optional<std::map<std::string, double>> champion;
    int64_t champion_version = 0;
    if (auto it = m.aliases.find("champion"); it != m.aliases.end()) {
      ASSIGN_OR_RETURN(ModelVersion c, RequireVersion(tx.conn(), model, it->second));
      champion = c.metrics;
      champion_version = c.version;
    }
    auto outcomes = EvaluateGate(m.checks, request.metrics, champion, champion_version);
    bool passed = std::all_of(outcomes.begin(), outcomes.end(),
                              [](const CheckOutcome& o) { return o.passed; });
    Json checks = Json::array();
    for (const auto& o : outcomes) {
      Json e = o.evidence;
      e["name"] = o.name;
      e["passed"] = o.passed;
      checks.push_back(std::move(e));
    }
    Json evidence = {{"decision", passed ? "passed" : "failed"}, {"checks", checks}};
    if (outcomes.empty())
      evidence["detail"] = "no validation gate configured for this model: passes by default";
    RETURN_IF_ERROR(
        ApplyTransition(tx, lifecycles_, v, passed ? "pass" : "fail", "", evidence, system));
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE model_versions SET validation = ? WHERE model = ? AND version = ?",
                       {core::CanonicalJson(evidence), model, version}));
    return core::Ok();
  }));
  return GetVersion(model, version);
}

Result<ModelVersion> Registry::GetVersion(const std::string& model, int64_t version) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  return RequireVersion(*conn, model, version);
}

Result<std::vector<ModelVersion>> Registry::ListVersions(const std::string& model,
                                                         const std::string& state, int64_t after,
                                                         int limit) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(*conn, model));
  std::string sql =
      fmt::format("SELECT {} FROM model_versions WHERE model = ? AND version > ?", kVersionColumns);
  std::vector<store::Value> params{model, after};
  if (!state.empty()) {
    const core::StateMachine* machine = lifecycles_.Find(std::string(kVersionKind));
    if (machine != nullptr && !machine->HasState(state)) {
      return core::InvalidArgument(
          fmt::format("query parameter \"state\": \"{}\" is not a model version state", state),
          "state");
    }
    sql += " AND state = ?";
    params.emplace_back(state);
  }
  sql += " ORDER BY version LIMIT ?";
  params.emplace_back(int64_t{std::clamp(limit, 1, 1000)});
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  std::vector<ModelVersion> out;
  for (const auto& r : rows) {
    ModelVersion v = VersionFromRow(r);
    for (const auto& [alias, target] : m.aliases) {
      if (target == v.version)
        v.aliases.push_back(alias);
    }
    out.push_back(std::move(v));
  }
  return out;
}

Result<ModelVersion> Registry::Transition(const std::string& model, int64_t version,
                                          ManualTransition transition, const std::string& reason,
                                          const store::CommandContext& ctx) {
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(tx.conn(), model, version));
    if (transition == ManualTransition::kArchive && !v.aliases.empty()) {
      // An alias on an archived version would keep serving (and be compared
      // against) a model nobody stands behind: move or delete it first.
      return core::FailedPrecondition(
          fmt::format("version {} of \"{}\" holds alias(es) {}: move or delete them before "
                      "archiving",
                      version, model, Json(v.aliases).dump()),
          {{"current_state", v.state}, {"aliases", v.aliases}});
    }
    store::CommandContext scoped = ctx;
    scoped.project = v.project;
    RETURN_IF_ERROR(ApplyTransition(tx, lifecycles_, v, StateNameFor(transition), reason,
                                    Json::object(), scoped));
    if (transition == ManualTransition::kArchive) {
      // The MLflow view follows: an archived version is in stage Archived.
      RETURN_IF_ERROR(
          tx.conn().Exec("UPDATE model_versions SET stage = ? WHERE model = ? AND version = ?",
                         {std::string(kStageArchived), model, version}));
    }
    return core::Ok();
  }));
  return GetVersion(model, version);
}

Result<AliasChange> Registry::SetAlias(const std::string& model, const std::string& alias,
                                       int64_t version, const std::string& reason,
                                       const store::CommandContext& ctx) {
  AliasChange change;  // SetAliasIn validates the alias and the reason
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(change, SetAliasIn(tx, model, alias, version, reason, ctx));
    return core::Ok();
  }));
  return change;
}

Result<AliasChange> Registry::SetAliasIn(CommandTx& tx, const std::string& model,
                                         const std::string& alias, int64_t version,
                                         const std::string& reason,
                                         const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateAliasName(alias));
  if (core::IsBlankReason(reason))
    return core::InvalidArgument("field \"reason\": moving an alias needs a reason", "reason");
  ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(tx.conn(), model, version));
  if (v.state == "Archived") {
    return core::FailedPrecondition(
        fmt::format("version {} of \"{}\" is Archived: an alias cannot point at it", version,
                    model),
        {{"current_state", v.state}});
  }
  ASSIGN_OR_RETURN(Rows rows, tx.conn().Query("SELECT version FROM model_aliases WHERE model = "
                                              "? AND alias = ?",
                                              {model, alias}));
  int64_t previous = rows.empty() ? 0 : rows[0].Int(0);
  if (previous == version) {
    return core::FailedPrecondition(
        fmt::format("alias \"{}\" already points at version {}", alias, version));
  }
  // Nothing is written above this line (see SetAliasIn's contract).
  ASSIGN_OR_RETURN(
      store::Event ev,
      tx.Append({.type = "registered_model.alias_set",
                 .subject_kind = "registered_model",
                 .subject_id = model,
                 .actor = ctx.actor,
                 .reason = reason,
                 .correlation_id = ctx.correlation_id,
                 .causation_id = ctx.causation_id,
                 .project = v.project,
                 .data = {{"alias", alias},
                          {"version", version},
                          {"previous_version", previous ? Json(previous) : Json(nullptr)}}}));
  if (previous == 0) {
    RETURN_IF_ERROR(
        tx.conn().Exec("INSERT INTO model_aliases (model, alias, version, updated_us, updated_by) "
                       "VALUES (?, ?, ?, ?, ?)",
                       {model, alias, version, ev.time_us, ctx.actor}));
  } else {
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE model_aliases SET version = ?, updated_us = ?, updated_by = ? "
                       "WHERE model = ? AND alias = ?",
                       {version, ev.time_us, ctx.actor, model, alias}));
  }
  RETURN_IF_ERROR(tx.conn().Exec(
      "INSERT INTO model_alias_history (model, alias, seq, version, previous_version, time_us, "
      "actor, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      {model, alias, ev.seq, version, previous, ev.time_us, ctx.actor, reason}));
  return AliasChange{alias, version, previous, ev.seq, ev.time_us, ctx.actor, reason};
}

Result<AliasChange> Registry::DeleteAlias(const std::string& model, const std::string& alias,
                                          const std::string& reason,
                                          const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateAliasName(alias));
  if (core::IsBlankReason(reason))
    return core::InvalidArgument("field \"reason\": deleting an alias needs a reason", "reason");
  AliasChange change;
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), model));
    auto it = m.aliases.find(alias);
    if (it == m.aliases.end())
      return core::NotFound(fmt::format("model \"{}\" has no alias \"{}\"", model, alias));
    ASSIGN_OR_RETURN(store::Event ev,
                     tx.Append({.type = "registered_model.alias_deleted",
                                .subject_kind = "registered_model",
                                .subject_id = model,
                                .actor = ctx.actor,
                                .reason = reason,
                                .correlation_id = ctx.correlation_id,
                                .project = m.project,
                                .data = {{"alias", alias}, {"previous_version", it->second}}}));
    RETURN_IF_ERROR(
        tx.conn().Exec("DELETE FROM model_aliases WHERE model = ? AND alias = ?", {model, alias}));
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO model_alias_history (model, alias, seq, version, previous_version, time_us, "
        "actor, reason) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
        {model, alias, ev.seq, it->second, ev.time_us, ctx.actor, reason}));
    change = {alias, 0, it->second, ev.seq, ev.time_us, ctx.actor, reason};
    return core::Ok();
  }));
  return change;
}

Result<std::vector<AliasChange>> Registry::AliasHistory(const std::string& model,
                                                        const std::string& alias) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(*conn, model));
  std::string sql =
      "SELECT alias, version, previous_version, seq, time_us, actor, reason FROM "
      "model_alias_history WHERE model = ?";
  std::vector<store::Value> params{model};
  if (!alias.empty()) {
    sql += " AND alias = ?";
    params.emplace_back(alias);
  }
  sql += " ORDER BY seq";
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  std::vector<AliasChange> out;
  for (const auto& r : rows) {
    out.push_back({r.Text(0), r.Int(1), r.Int(2), r.Int(3), r.Int(4), r.Text(5), r.Text(6)});
  }
  return out;
}

Result<Json> Registry::Lineage(const std::string& model, int64_t version) {
  ASSIGN_OR_RETURN(ModelVersion v, GetVersion(model, version));
  ASSIGN_OR_RETURN(auto history, AliasHistory(model, ""));
  Json aliases = Json::array();
  for (const auto& h : history) {
    if (h.version == version || h.previous_version == version) {
      Json j = h.ToJson();
      j["change"] = h.version == version ? "pointed here" : "moved away";
      aliases.push_back(std::move(j));
    }
  }
  return Json{{"model", model},
              {"version", version},
              {"project", v.project},
              {"source_run_id", v.source_run_id},
              {"artifact_uri", v.artifact_uri},
              {"created_by", v.created_by},
              {"created", core::FormatRfc3339(v.created_us)},
              {"state", v.state},
              {"current_aliases", v.aliases},
              {"alias_history", aliases}};
}

// ---- MLflow-facing operations: stages, tags, deletion, rename, search ---------------

namespace {

Status Done(Result<std::vector<store::Event>> executed) {
  if (!executed)
    return std::move(executed).error();
  return core::Ok();
}

// Deletes one alias row in the caller's transaction, as DeleteAlias does.
Status DeleteAliasIn(CommandTx& tx, const std::string& model, const std::string& alias,
                     int64_t previous, const std::string& project, const std::string& reason,
                     const store::CommandContext& ctx) {
  ASSIGN_OR_RETURN(store::Event ev,
                   tx.Append({.type = "registered_model.alias_deleted",
                              .subject_kind = "registered_model",
                              .subject_id = model,
                              .actor = ctx.actor,
                              .reason = reason,
                              .correlation_id = ctx.correlation_id,
                              .causation_id = ctx.causation_id,
                              .project = project,
                              .data = {{"alias", alias}, {"previous_version", previous}}}));
  RETURN_IF_ERROR(
      tx.conn().Exec("DELETE FROM model_aliases WHERE model = ? AND alias = ?", {model, alias}));
  RETURN_IF_ERROR(tx.conn().Exec(
      "INSERT INTO model_alias_history (model, alias, seq, version, previous_version, time_us, "
      "actor, reason) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
      {model, alias, ev.seq, previous, ev.time_us, ctx.actor, reason}));
  return core::Ok();
}

Status TouchModel(Connection& conn, const std::string& model, int64_t time_us) {
  RETURN_IF_ERROR(
      conn.Exec("UPDATE registered_models SET updated_us = ? WHERE name = ?", {time_us, model}));
  return core::Ok();
}

// Moves `v` to `stage` in the caller's transaction (see Registry::SetStage).
// `extra` joins the event's data. Returns whether anything changed.
Result<bool> MoveStage(CommandTx& tx, const store::Lifecycles& lifecycles, ModelVersion& v,
                       const std::string& stage, const std::string& reason, const Json& extra,
                       const store::CommandContext& ctx) {
  if (v.state == "Archived" && stage != kStageArchived) {
    return core::FailedPrecondition(
        fmt::format("version {} of \"{}\" is Archived in Kervan's lifecycle, which is final: it "
                    "cannot move to stage {}",
                    v.version, v.model, stage),
        {{"current_state", v.state}, {"current_stage", v.stage}});
  }
  bool archive = false;
  std::string lifecycle = "unchanged";
  if (stage == kStageArchived && v.state != "Archived") {
    const core::StateMachine* machine = lifecycles.Find(std::string(kVersionKind));
    bool allowed = false;
    if (machine != nullptr) {
      for (const auto* t : machine->AllowedFrom(v.state))
        allowed = allowed || t->name == "archive";
    }
    if (!allowed) {
      lifecycle = fmt::format("unchanged: state {} cannot be archived", v.state);
    } else if (!v.aliases.empty()) {
      lifecycle = fmt::format(
          "unchanged: the version holds alias(es) {}; move or delete them, then move it to "
          "Archived again to archive it",
          Json(v.aliases).dump());
    } else {
      archive = true;
      lifecycle = "archived";
    }
  }
  if (v.stage == stage && !archive)
    return false;
  // No top-level "to" in this data: the entities projection reads "to" of
  // model_version events as a state change.
  Json data = {{"model", v.model},
               {"version", v.version},
               {"stage", stage},
               {"previous_stage", v.stage},
               {"lifecycle", lifecycle}};
  for (const auto& [k, val] : extra.items())
    data[k] = val;
  ASSIGN_OR_RETURN(store::Event ev, tx.Append({.type = "model_version.stage_changed",
                                               .subject_kind = std::string(kVersionKind),
                                               .subject_id = v.entity_id(),
                                               .actor = ctx.actor,
                                               .reason = reason,
                                               .correlation_id = ctx.correlation_id,
                                               .causation_id = ctx.causation_id,
                                               .project = v.project,
                                               .data = data}));
  RETURN_IF_ERROR(tx.conn().Exec(
      "UPDATE model_versions SET stage = ?, updated_us = ? WHERE model = ? AND version = ?",
      {stage, ev.time_us, v.model, v.version}));
  v.stage = stage;
  v.updated_us = ev.time_us;
  if (archive) {
    store::CommandContext caused = ctx;
    caused.causation_id = ev.id;
    RETURN_IF_ERROR(ApplyTransition(tx, lifecycles, v, "archive", reason, Json::object(), caused));
  }
  return true;
}

std::string ProjectListSql(const std::set<std::string>& projects,
                           std::vector<store::Value>& params) {
  std::string sql = "project IN (";
  for (const auto& p : projects) {
    sql += sql.back() == '(' ? "?" : ", ?";
    params.emplace_back(p);
  }
  return sql + ")";
}

// The value of an equality clause on `key` (an attribute), to narrow a query.
const core::filter::Comparison* EqualityOn(const core::filter::Filter& filter,
                                           std::string_view key) {
  for (const auto& c : filter.clauses) {
    if (c.entity == core::filter::Entity::kAttribute && c.key == key &&
        c.op == core::filter::Op::kEq && !c.numeric)
      return &c;
  }
  return nullptr;
}

core::filter::FieldValue TagValue(const std::map<std::string, std::string>& tags,
                                  const std::string& key) {
  auto it = tags.find(key);
  if (it == tags.end())
    return std::monostate();
  return it->second;
}

template <typename T>
SearchPage<T> Slice(std::vector<T> all, int64_t offset, int64_t max_results) {
  SearchPage<T> page;
  int64_t n = static_cast<int64_t>(all.size());
  int64_t begin = std::min(offset, n);
  int64_t end = std::min(n, begin + max_results);
  for (int64_t i = begin; i < end; ++i)
    page.items.push_back(std::move(all[static_cast<size_t>(i)]));
  if (end < n)
    page.next_offset = end;
  return page;
}

}  // namespace

std::optional<std::string> CanonicalStage(std::string_view text) {
  for (std::string_view s : {kStageNone, kStageStaging, kStageProduction, kStageArchived}) {
    bool same =
        s.size() == text.size() && std::equal(s.begin(), s.end(), text.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        });
    if (same)
      return std::string(s);
  }
  return std::nullopt;
}

Status Registry::SetModelTag(const std::string& name, const std::string& key,
                             const std::string& value, const store::CommandContext& ctx) {
  if (key.empty() || key.size() > 250)
    return core::InvalidArgument("field \"key\": tag keys must be 1-250 characters", "key");
  return Done(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), name));
    auto it = m.tags.find(key);
    if (it != m.tags.end() && it->second == value)
      return core::Ok();
    Json previous = it == m.tags.end() ? Json(nullptr) : Json(it->second);
    m.tags[key] = value;
    ASSIGN_OR_RETURN(
        store::Event ev,
        tx.Append({.type = "registered_model.tag_set",
                   .subject_kind = "registered_model",
                   .subject_id = name,
                   .actor = ctx.actor,
                   .correlation_id = ctx.correlation_id,
                   .project = m.project,
                   .data = {{"key", key}, {"value", value}, {"previous_value", previous}}}));
    RETURN_IF_ERROR(tx.conn().Exec("UPDATE registered_models SET tags = ? WHERE name = ?",
                                   {core::CanonicalJson(TagsJson(m.tags)), name}));
    return core::Ok();
  }));
}

Status Registry::DeleteModelTag(const std::string& name, const std::string& key,
                                const store::CommandContext& ctx) {
  return Done(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), name));
    auto it = m.tags.find(key);
    if (it == m.tags.end())
      return core::Ok();
    Json previous = it->second;
    m.tags.erase(it);
    ASSIGN_OR_RETURN(store::Event ev,
                     tx.Append({.type = "registered_model.tag_deleted",
                                .subject_kind = "registered_model",
                                .subject_id = name,
                                .actor = ctx.actor,
                                .correlation_id = ctx.correlation_id,
                                .project = m.project,
                                .data = {{"key", key}, {"previous_value", previous}}}));
    RETURN_IF_ERROR(tx.conn().Exec("UPDATE registered_models SET tags = ? WHERE name = ?",
                                   {core::CanonicalJson(TagsJson(m.tags)), name}));
    return core::Ok();
  }));
}

Result<RegisteredModel> Registry::RenameModel(const std::string& name, const std::string& new_name,
                                              const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateModelName(new_name, "new_name"));
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), name));
    if (new_name == name)
      return core::Ok();
    ASSIGN_OR_RETURN(auto taken, LoadModel(tx.conn(), new_name));
    if (taken) {
      return core::AlreadyExists(fmt::format("registered model \"{}\" already exists (project {})",
                                             new_name, taken->project));
    }
    ASSIGN_OR_RETURN(
        Rows versions,
        tx.conn().Query("SELECT COUNT(*) FROM model_versions WHERE model = ?", {name}));
    int64_t count = versions.empty() ? 0 : versions[0].Int(0);
    if (count > 0) {
      return core::FailedPrecondition(fmt::format(
          "registered model \"{}\" has {} version(s) and cannot be renamed: Kervan names each "
          "version \"<model>:<version>\" in the audit log, and those names never change. Create "
          "a model named \"{}\" and register the versions there instead",
          name, count, new_name));
    }
    ASSIGN_OR_RETURN(int64_t taken_before, TombstoneVersion(tx.conn(), new_name));
    ASSIGN_OR_RETURN(int64_t counter, VersionCounter(tx.conn(), name));
    ASSIGN_OR_RETURN(store::Event ev,
                     tx.Append({.type = "registered_model.renamed",
                                .subject_kind = "registered_model",
                                .subject_id = new_name,
                                .actor = ctx.actor,
                                .correlation_id = ctx.correlation_id,
                                .project = m.project,
                                .data = {{"previous_name", name}, {"name", new_name}}}));
    RETURN_IF_ERROR(tx.conn().Exec(
        "UPDATE registered_models SET name = ?, latest_version = ?, updated_us = ? WHERE name = ?",
        {new_name, std::max(counter, taken_before), ev.time_us, name}));
    // Only deleted versions' alias moves can remain under the old name.
    RETURN_IF_ERROR(tx.conn().Exec("DELETE FROM model_alias_history WHERE model = ?", {name}));
    return WriteTombstone(tx.conn(), name, counter, ev.time_us, ctx.actor);
  }));
  return GetModel(new_name);
}

Status Registry::DeleteModel(const std::string& name, const std::string& reason,
                             const store::CommandContext& ctx) {
  return Done(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(RegisteredModel m, RequireModel(tx.conn(), name));
    ASSIGN_OR_RETURN(int64_t counter, VersionCounter(tx.conn(), name));
    ASSIGN_OR_RETURN(
        Rows rows,
        tx.conn().Query("SELECT version FROM model_versions WHERE model = ? ORDER BY version",
                        {name}));
    Json versions = Json::array();
    for (const auto& r : rows)
      versions.push_back(r.Int(0));
    Json aliases = Json::object();
    for (const auto& [a, v] : m.aliases)
      aliases[a] = v;
    ASSIGN_OR_RETURN(store::Event ev,
                     tx.Append({.type = "registered_model.deleted",
                                .subject_kind = "registered_model",
                                .subject_id = name,
                                .actor = ctx.actor,
                                .reason = reason,
                                .correlation_id = ctx.correlation_id,
                                .causation_id = ctx.causation_id,
                                .project = m.project,
                                .data = {{"description", m.description},
                                         {"tags", TagsJson(m.tags)},
                                         {"validation", {{"checks", ChecksJson(m.checks)}}},
                                         {"versions", versions},
                                         {"aliases", aliases},
                                         {"last_version", counter}}}));
    store::CommandContext caused{.actor = ctx.actor,
                                 .correlation_id = ctx.correlation_id,
                                 .causation_id = ev.id,
                                 .project = m.project};
    Json data = {{"model", name}, {"with_model", true}};
    for (const auto& v : versions) {
      core::TransitionRequest t{.transition = "delete", .reason = reason, .request_data = &data};
      ASSIGN_OR_RETURN(store::Entity e,
                       lifecycles_.TransitionIn(tx, std::string(kVersionKind),
                                                EntityId(name, v.get<int64_t>()), t, caused));
      (void)e;
    }
    for (std::string_view table : {"model_aliases", "model_alias_history", "model_versions"}) {
      RETURN_IF_ERROR(tx.conn().Exec(fmt::format("DELETE FROM {} WHERE model = ?", table), {name}));
    }
    RETURN_IF_ERROR(tx.conn().Exec("DELETE FROM registered_models WHERE name = ?", {name}));
    return WriteTombstone(tx.conn(), name, counter, ev.time_us, ctx.actor);
  }));
}

Result<ModelVersion> Registry::UpdateVersion(const std::string& model, int64_t version,
                                             const std::string& description,
                                             const store::CommandContext& ctx) {
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(tx.conn(), model, version));
    if (v.description == description)
      return core::Ok();
    ASSIGN_OR_RETURN(
        store::Event ev,
        tx.Append({.type = "model_version.updated",
                   .subject_kind = std::string(kVersionKind),
                   .subject_id = v.entity_id(),
                   .actor = ctx.actor,
                   .correlation_id = ctx.correlation_id,
                   .project = v.project,
                   .data = {{"model", model},
                            {"version", version},
                            {"description", {{"from", v.description}, {"to", description}}}}}));
    RETURN_IF_ERROR(tx.conn().Exec(
        "UPDATE model_versions SET description = ?, updated_us = ? WHERE model = ? AND version = ?",
        {description, ev.time_us, model, version}));
    return core::Ok();
  }));
  return GetVersion(model, version);
}

Status Registry::SetVersionTag(const std::string& model, int64_t version, const std::string& key,
                               const std::string& value, const store::CommandContext& ctx) {
  if (key.empty() || key.size() > 250)
    return core::InvalidArgument("field \"key\": tag keys must be 1-250 characters", "key");
  return Done(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(tx.conn(), model, version));
    auto it = v.tags.find(key);
    if (it != v.tags.end() && it->second == value)
      return core::Ok();
    Json previous = it == v.tags.end() ? Json(nullptr) : Json(it->second);
    v.tags[key] = value;
    ASSIGN_OR_RETURN(store::Event ev, tx.Append({.type = "model_version.tag_set",
                                                 .subject_kind = std::string(kVersionKind),
                                                 .subject_id = v.entity_id(),
                                                 .actor = ctx.actor,
                                                 .correlation_id = ctx.correlation_id,
                                                 .project = v.project,
                                                 .data = {{"model", model},
                                                          {"version", version},
                                                          {"key", key},
                                                          {"value", value},
                                                          {"previous_value", previous}}}));
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE model_versions SET tags = ? WHERE model = ? AND version = ?",
                       {core::CanonicalJson(TagsJson(v.tags)), model, version}));
    return core::Ok();
  }));
}

Status Registry::DeleteVersionTag(const std::string& model, int64_t version, const std::string& key,
                                  const store::CommandContext& ctx) {
  return Done(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(tx.conn(), model, version));
    auto it = v.tags.find(key);
    if (it == v.tags.end())
      return core::Ok();
    Json previous = it->second;
    v.tags.erase(it);
    ASSIGN_OR_RETURN(store::Event ev, tx.Append({.type = "model_version.tag_deleted",
                                                 .subject_kind = std::string(kVersionKind),
                                                 .subject_id = v.entity_id(),
                                                 .actor = ctx.actor,
                                                 .correlation_id = ctx.correlation_id,
                                                 .project = v.project,
                                                 .data = {{"model", model},
                                                          {"version", version},
                                                          {"key", key},
                                                          {"previous_value", previous}}}));
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE model_versions SET tags = ? WHERE model = ? AND version = ?",
                       {core::CanonicalJson(TagsJson(v.tags)), model, version}));
    return core::Ok();
  }));
}

Result<ModelVersion> Registry::SetStage(const std::string& model, int64_t version,
                                        const std::string& stage, bool archive_existing,
                                        const std::string& reason,
                                        const store::CommandContext& ctx) {
  auto canonical = CanonicalStage(stage);
  if (!canonical || *canonical != stage) {
    return core::InvalidArgument(
        fmt::format("field \"stage\": \"{}\" is not one of None, Staging, Production, Archived",
                    stage),
        "stage");
  }
  if (archive_existing && stage != kStageStaging && stage != kStageProduction) {
    return core::InvalidArgument(
        fmt::format("field \"archive_existing_versions\": other versions can only be archived "
                    "when moving to Staging or Production, not {}",
                    stage),
        "archive_existing_versions");
  }
  if (core::IsBlankReason(reason))
    return core::InvalidArgument("field \"reason\": moving a stage needs a reason", "reason");
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(tx.conn(), model, version));
    store::CommandContext scoped = ctx;
    scoped.project = v.project;
    ASSIGN_OR_RETURN(bool changed,
                     MoveStage(tx, lifecycles_, v, stage, reason, Json::object(), scoped));
    if (archive_existing) {
      ASSIGN_OR_RETURN(Rows others, tx.conn().Query("SELECT version FROM model_versions WHERE "
                                                    "model = ? AND stage = ? AND version <> ? "
                                                    "ORDER BY version",
                                                    {model, stage, version}));
      for (const auto& r : others) {
        ASSIGN_OR_RETURN(ModelVersion other, RequireVersion(tx.conn(), model, r.Int(0)));
        ASSIGN_OR_RETURN(bool moved,
                         MoveStage(tx, lifecycles_, other, std::string(kStageArchived), reason,
                                   {{"archived_existing_for_version", version}}, scoped));
        changed = changed || moved;
      }
    }
    if (changed)
      RETURN_IF_ERROR(TouchModel(tx.conn(), model, core::NowMicros()));
    return core::Ok();
  }));
  return GetVersion(model, version);
}

Status Registry::DeleteVersion(const std::string& model, int64_t version, const std::string& reason,
                               const store::CommandContext& ctx) {
  return Done(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(tx.conn(), model, version));
    store::CommandContext scoped = ctx;
    scoped.project = v.project;
    Json data = {{"model", model},
                 {"version", version},
                 {"stage", v.stage},
                 {"aliases", v.aliases},
                 {"artifact_uri", v.artifact_uri}};
    core::TransitionRequest t{.transition = "delete", .reason = reason, .request_data = &data};
    store::Event deleted;
    ASSIGN_OR_RETURN(store::Entity e, lifecycles_.TransitionIn(tx, std::string(kVersionKind),
                                                               v.entity_id(), t, scoped, &deleted));
    store::CommandContext caused = scoped;
    caused.causation_id = deleted.id;
    std::string alias_reason = fmt::format("version {} was deleted", version);
    if (!core::IsBlankReason(reason))
      alias_reason += ": " + reason;
    for (const auto& alias : v.aliases) {
      RETURN_IF_ERROR(DeleteAliasIn(tx, model, alias, version, v.project, alias_reason, caused));
    }
    RETURN_IF_ERROR(tx.conn().Exec("DELETE FROM model_versions WHERE model = ? AND version = ?",
                                   {model, version}));
    return TouchModel(tx.conn(), model, e.updated_us);
  }));
}

Result<SearchPage<RegisteredModel>> Registry::SearchModels(const ModelSearchRequest& request) {
  if (request.projects && request.projects->empty())
    return SearchPage<RegisteredModel>{};
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  std::string sql = "SELECT name, tags, created_us, updated_us FROM registered_models WHERE 1 = 1";
  std::vector<store::Value> params;
  if (request.projects)
    sql += " AND " + ProjectListSql(*request.projects, params);
  if (const auto* eq = EqualityOn(request.filter, "name")) {
    sql += " AND name = ?";
    params.emplace_back(eq->text);
  }
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  struct Candidate {
    std::string name;
    int64_t created_us = 0, updated_us = 0;
  };
  std::vector<Candidate> matched;
  for (const auto& r : rows) {
    Candidate c{r.Text(0), r.Int(2), r.Int(3)};
    auto tags = TagsFrom(ParseStored(r.Text(1)));
    bool ok = core::filter::Matches(request.filter, [&](const core::filter::Comparison& clause) {
      if (clause.entity == core::filter::Entity::kTag)
        return TagValue(tags, clause.key);
      if (clause.entity == core::filter::Entity::kAttribute && clause.key == "name")
        return core::filter::FieldValue(c.name);
      return core::filter::FieldValue();
    });
    if (ok)
      matched.push_back(std::move(c));
  }
  std::stable_sort(matched.begin(), matched.end(), [&](const Candidate& a, const Candidate& b) {
    for (const auto& o : request.order_by) {
      int cmp = 0;
      if (o.key == "name") {
        cmp = a.name.compare(b.name);
      } else if (o.key == "creation_timestamp") {
        cmp = (a.created_us > b.created_us) - (a.created_us < b.created_us);
      } else if (o.key == "last_updated_timestamp" || o.key == "timestamp") {
        cmp = (a.updated_us > b.updated_us) - (a.updated_us < b.updated_us);
      }
      if (cmp != 0)
        return o.ascending ? cmp < 0 : cmp > 0;
    }
    return a.name < b.name;
  });
  auto slice = Slice(std::move(matched), request.offset, request.max_results);
  SearchPage<RegisteredModel> page{.next_offset = slice.next_offset};
  for (const auto& c : slice.items) {
    ASSIGN_OR_RETURN(auto m, LoadModel(*conn, c.name));
    if (m)  // deleted since the query: skip
      page.items.push_back(std::move(*m));
  }
  return page;
}

Result<SearchPage<ModelVersion>> Registry::SearchVersions(const VersionSearchRequest& request) {
  if (request.projects && request.projects->empty())
    return SearchPage<ModelVersion>{};
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  std::string sql = fmt::format("SELECT {} FROM model_versions WHERE 1 = 1", kVersionColumns);
  std::vector<store::Value> params;
  if (request.projects)
    sql += " AND " + ProjectListSql(*request.projects, params);
  if (const auto* eq = EqualityOn(request.filter, "name")) {
    sql += " AND model = ?";
    params.emplace_back(eq->text);
  }
  if (const auto* eq = EqualityOn(request.filter, "run_id")) {
    sql += " AND source_run_id = ?";
    params.emplace_back(eq->text);
  }
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  std::vector<ModelVersion> matched;
  for (const auto& r : rows) {
    ModelVersion v = VersionFromRow(r);
    bool ok = core::filter::Matches(request.filter, [&](const core::filter::Comparison& clause) {
      using core::filter::FieldValue;
      if (clause.entity == core::filter::Entity::kTag)
        return TagValue(v.tags, clause.key);
      if (clause.entity != core::filter::Entity::kAttribute)
        return FieldValue();
      if (clause.key == "name")
        return FieldValue(v.model);
      if (clause.key == "version_number")
        return FieldValue(v.version);
      if (clause.key == "run_id")
        return FieldValue(v.source_run_id);
      if (clause.key == "source_path")
        return FieldValue(v.source.empty() ? v.artifact_uri : v.source);
      return FieldValue();
    });
    if (ok)
      matched.push_back(std::move(v));
  }
  std::vector<core::filter::OrderBy> order = request.order_by;
  if (order.empty()) {
    order.push_back({.key = "last_updated_timestamp", .ascending = false});
  }
  std::stable_sort(matched.begin(), matched.end(),
                   [&](const ModelVersion& a, const ModelVersion& b) {
                     auto three_way = [](auto x, auto y) { return (x > y) - (x < y); };
                     for (const auto& o : order) {
                       int cmp = 0;
                       if (o.key == "name")
                         cmp = a.model.compare(b.model);
                       else if (o.key == "version_number")
                         cmp = three_way(a.version, b.version);
                       else if (o.key == "creation_timestamp")
                         cmp = three_way(a.created_us, b.created_us);
                       else if (o.key == "last_updated_timestamp")
                         cmp = three_way(a.updated_us, b.updated_us);
                       if (cmp != 0)
                         return o.ascending ? cmp < 0 : cmp > 0;
                     }
                     if (int cmp = a.model.compare(b.model); cmp != 0)
                       return cmp < 0;
                     return a.version > b.version;
                   });
  auto page = Slice(std::move(matched), request.offset, request.max_results);
  for (auto& v : page.items)
    RETURN_IF_ERROR(AttachAliases(*conn, v));
  return page;
}

Result<std::vector<ModelVersion>> Registry::LatestVersions(const std::string& model,
                                                           const std::vector<std::string>& stages) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  RETURN_IF_ERROR(RequireModel(*conn, model));
  ASSIGN_OR_RETURN(Rows rows, conn->Query("SELECT stage, MIN(version), MAX(version) FROM "
                                          "model_versions WHERE model = ? GROUP BY stage "
                                          "ORDER BY MIN(version)",
                                          {model}));
  std::vector<ModelVersion> out;
  for (const auto& r : rows) {
    if (!stages.empty() && std::find(stages.begin(), stages.end(), r.Text(0)) == stages.end())
      continue;
    ASSIGN_OR_RETURN(ModelVersion v, RequireVersion(*conn, model, r.Int(2)));
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace kervan::registry
