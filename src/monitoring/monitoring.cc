// Monitoring: profiles, monitors, windows over stored samples, feedback,
// exported metrics. See monitoring.h for the lifecycle and contracts.
#include "monitoring/monitoring.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "monitoring/stats.h"
#include "registry/registry.h"

namespace kervan::monitoring {
namespace {

using store::CommandContext;
using store::Row;
using store::Value;

Json ParseOr(const std::string& text, Json fallback) {
  if (text.empty())
    return fallback;
  auto parsed = core::ParseJson(text);
  return parsed ? std::move(*parsed) : fallback;
}

CommandContext System(const std::string& causation = {}) {
  return {.actor = std::string(kMonitoringActor), .causation_id = causation};
}

Result<core::StateMachine> MonitorMachine() {
  const std::string o = "monitor.orchestrate";
  const std::string m = "monitor.manage";
  const std::string mon(kMonitoringState), ev(kEvaluating), rd(kRetrainDecision), st(kStopped);
  return core::StateMachine::Build(
      std::string(kMonitorKind), {mon, ev, rd, st}, mon,
      {
          {.name = "evaluate",
           .from = {mon, rd},
           .to = ev,
           .event = "evaluation_started",
           .permission = o},
          {.name = "evaluated", .from = {ev}, .to = mon, .event = "evaluated", .permission = o},
          {.name = "retrain_needed",
           .from = {ev},
           .to = rd,
           .event = "retrain_needed",
           .permission = o},
          {.name = "retarget",
           .from = {mon, ev, rd},
           .to = mon,
           .event = "retargeted",
           .permission = o},
          {.name = "resolve",
           .from = {rd},
           .to = mon,
           .event = "resolved",
           .permission = m,
           .reason_required = true},
          {.name = "stop",
           .from = {mon, rd},
           .to = st,
           .event = "stopped",
           .permission = m,
           .reason_required = true},
          {.name = "resume",
           .from = {st},
           .to = mon,
           .event = "resumed",
           .permission = m,
           .reason_required = true},
      });
}

// Prometheus families, declared once.
struct MonitorMetrics {
  core::Family<core::Gauge>& state = core::GlobalMetrics().AddGauge(
      "kervan_monitor_state", "1 for the monitor's current state, by endpoint and state",
      {"endpoint", "state"});
  core::Family<core::Counter>& evaluations = core::GlobalMetrics().AddCounter(
      "kervan_monitor_evaluations_total", "Windows evaluated, by endpoint", {"endpoint"});
  core::Family<core::Gauge>& window_rows = core::GlobalMetrics().AddGauge(
      "kervan_monitor_window_rows", "Rows in the last evaluated window", {"endpoint"});
  core::Family<core::Gauge>& drift_score = core::GlobalMetrics().AddGauge(
      "kervan_monitor_feature_drift_score",
      "The drift test's score per feature (statistic or distance), last window",
      {"endpoint", "feature", "method"});
  core::Family<core::Gauge>& drift_p = core::GlobalMetrics().AddGauge(
      "kervan_monitor_feature_drift_p_value", "The drift test's p-value per feature, last window",
      {"endpoint", "feature"});
  core::Family<core::Gauge>& drifted = core::GlobalMetrics().AddGauge(
      "kervan_monitor_feature_drifted", "1 when the feature drifted in the last window",
      {"endpoint", "feature"});
  core::Family<core::Gauge>& drift_share = core::GlobalMetrics().AddGauge(
      "kervan_monitor_drift_share", "Share of features that drifted, last window", {"endpoint"});
  core::Family<core::Gauge>& dataset_drift = core::GlobalMetrics().AddGauge(
      "kervan_monitor_dataset_drift", "1 when the last window drifted as a whole", {"endpoint"});
  core::Family<core::Gauge>& prediction_drift = core::GlobalMetrics().AddGauge(
      "kervan_monitor_prediction_drift_score",
      "Drift of the model's outputs against its first window in production", {"endpoint"});
  core::Family<core::Gauge>& missing = core::GlobalMetrics().AddGauge(
      "kervan_monitor_missing_rate", "Share of missing values per feature, last window",
      {"endpoint", "feature"});
  core::Family<core::Gauge>& out_of_range = core::GlobalMetrics().AddGauge(
      "kervan_monitor_out_of_range_rate",
      "Share of values outside the reference's [min, max] per feature, last window",
      {"endpoint", "feature"});
  core::Family<core::Gauge>& unseen = core::GlobalMetrics().AddGauge(
      "kervan_monitor_unseen_category_rate",
      "Share of categories the reference never saw per feature, last window",
      {"endpoint", "feature"});
  core::Family<core::Gauge>& performance = core::GlobalMetrics().AddGauge(
      "kervan_monitor_performance",
      "Performance from ground-truth feedback, last window with labels", {"endpoint", "metric"});
  core::Family<core::Gauge>& labeled = core::GlobalMetrics().AddGauge(
      "kervan_monitor_labeled_rows", "Labeled rows in the last window", {"endpoint"});
};

MonitorMetrics& Metrics() {
  static MonitorMetrics metrics;
  return metrics;
}

double Finite(double v) {
  return std::isfinite(v) ? v : 0.0;
}

}  // namespace

// ---------------------------------------------------------------- config

Json MonitorConfig::ToJson() const {
  return {{"window_rows", window_rows},
          {"window_seconds", window_seconds},
          {"min_rows", min_rows},
          {"task", task},
          {"decision_threshold", decision_threshold},
          {"min_performance", min_performance},
          {"max_performance", max_performance},
          {"min_labeled", min_labeled},
          {"drift_share", drift_share},
          {"features", features}};
}

Result<MonitorConfig> MonitorConfig::FromJson(const Json& j, const std::string& prefix) {
  return FromJson(j, prefix, MonitorConfig{});
}

Result<MonitorConfig> MonitorConfig::FromJson(const Json& j, const std::string& prefix,
                                              const MonitorConfig& base) {
  MonitorConfig c = base;
  if (j.is_null())
    return c;
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(j, prefix));
  ASSIGN_OR_RETURN(auto rows, r.OptionalInt("window_rows", 1, 1'000'000));
  c.window_rows = rows.value_or(c.window_rows);
  ASSIGN_OR_RETURN(auto secs, r.OptionalInt("window_seconds", 0, 86400 * 365));
  c.window_seconds = secs.value_or(c.window_seconds);
  ASSIGN_OR_RETURN(auto min_rows, r.OptionalInt("min_rows", 1, 1'000'000));
  c.min_rows = min_rows.value_or(c.min_rows);
  ASSIGN_OR_RETURN(auto task, r.OptionalString("task"));
  c.task = task.value_or(c.task);
  if (c.task != "classification" && c.task != "regression") {
    return core::InvalidArgument(
        fmt::format("field \"{}task\": must be classification or regression", prefix),
        prefix + "task");
  }
  ASSIGN_OR_RETURN(auto thr, r.OptionalNumber("decision_threshold"));
  c.decision_threshold = thr.value_or(c.decision_threshold);
  ASSIGN_OR_RETURN(auto labeled, r.OptionalInt("min_labeled", 1, 1'000'000));
  c.min_labeled = labeled.value_or(c.min_labeled);
  ASSIGN_OR_RETURN(auto share, r.OptionalNumber("drift_share"));
  c.drift_share = share.value_or(c.drift_share);
  if (!(c.drift_share > 0 && c.drift_share <= 1)) {
    return core::InvalidArgument(fmt::format("field \"{}drift_share\": must be in (0, 1]", prefix),
                                 prefix + "drift_share");
  }
  static const std::set<std::string> kPerformance = {"accuracy", "precision", "recall", "f1",
                                                     "auc",      "mae",       "rmse"};
  for (const char* key : {"min_performance", "max_performance"}) {
    bool given = r.Has(key);
    ASSIGN_OR_RETURN(Json limits, r.OptionalObject(key));
    auto& into = std::string_view(key) == "min_performance" ? c.min_performance : c.max_performance;
    if (given)
      into.clear();  // given: replaces the base's limits
    for (const auto& [name, v] : limits.items()) {
      std::string field = fmt::format("{}{}.{}", prefix, key, name);
      if (!kPerformance.count(name)) {
        return core::InvalidArgument(
            fmt::format("field \"{}\": unknown metric; expected accuracy, precision, recall, f1, "
                        "auc, mae or rmse",
                        field),
            field);
      }
      if (!v.is_number())
        return core::InvalidArgument(fmt::format("field \"{}\": must be a number", field), field);
      into[name] = v.get<double>();
    }
  }
  if (r.Has("features")) {
    ASSIGN_OR_RETURN(c.features, r.OptionalObject("features"));
  }
  for (const auto& [name, v] : c.features.items()) {
    std::string field = fmt::format("{}features.{}", prefix, name);
    ASSIGN_OR_RETURN(auto f, core::ObjectReader::Of(v, field + "."));
    ASSIGN_OR_RETURN(auto method, f.OptionalString("method"));
    ASSIGN_OR_RETURN(auto threshold, f.OptionalNumber("threshold"));
    RETURN_IF_ERROR(f.Finish());
    if (method && !ParseDriftMethod(*method)) {
      return core::InvalidArgument(
          fmt::format("field \"{}.method\": must be ks, wasserstein, psi, chisquare or "
                      "jensenshannon",
                      field),
          field + ".method");
    }
    (void)threshold;
  }
  RETURN_IF_ERROR(r.Finish());
  return c;
}

namespace {

DriftOptions ToDriftOptions(const MonitorConfig& c) {
  DriftOptions o;
  o.drift_share = c.drift_share;
  for (const auto& [name, v] : c.features.items()) {
    FeatureDriftOverride f;
    if (v.contains("method"))
      f.method = ParseDriftMethod(v["method"].get<std::string>());
    if (v.contains("threshold"))
      f.threshold = v["threshold"].get<double>();
    o.features[name] = f;
  }
  return o;
}

}  // namespace

Json Monitor::ToJson() const {
  return {{"id", id},
          {"endpoint", endpoint},
          {"model", model},
          {"version", version},
          {"project", project},
          {"state", state},
          {"config", config.ToJson()},
          {"cursor", cursor},
          {"windows", windows},
          {"last", last},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

Json Evaluation::ToJson() const {
  Json m = Json::object();
  for (const auto& [k, v] : metrics)
    m[k] = std::isfinite(v) ? Json(v) : Json(nullptr);
  return {{"id", id},
          {"monitor", monitor},
          {"model", model},
          {"version", version},
          {"window", window},
          {"from_sample", from_sample},
          {"to_sample", to_sample},
          {"started_at", core::FormatRfc3339(started_us)},
          {"ended_at", core::FormatRfc3339(ended_us)},
          {"rows", rows},
          {"labeled", labeled},
          {"decision", decision},
          {"reasons", reasons},
          {"metrics", m},
          {"drift", drift},
          {"prediction_drift", prediction_drift},
          {"performance", performance},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

// ---------------------------------------------------------------- service

struct Monitoring::State {
  std::mutex mu;  // one cycle at a time
  std::mutex thread_mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
  std::unique_ptr<store::EventLog::Subscription> subscription;
  std::mutex cache_mu;
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<const Profile>> profiles;
};

Monitoring::Monitoring(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
                       registry::Registry& registry, artifacts::ArtifactStore* artifacts,
                       MonitoringOptions options)
    : db_(db),
      log_(log),
      lifecycles_(lifecycles),
      registry_(registry),
      artifacts_(artifacts),
      options_(std::move(options)),
      state_(std::make_unique<State>()) {}

Monitoring::~Monitoring() {
  Stop();
}

Result<std::unique_ptr<Monitoring>> Monitoring::Open(store::Database& db, store::EventLog& log,
                                                     store::Lifecycles& lifecycles,
                                                     registry::Registry& registry,
                                                     artifacts::ArtifactStore* artifacts,
                                                     MonitoringOptions options) {
  ASSIGN_OR_RETURN(auto machine, MonitorMachine());
  RETURN_IF_ERROR(lifecycles.Register(std::move(machine)));
  Metrics();
  return std::unique_ptr<Monitoring>(
      new Monitoring(db, log, lifecycles, registry, artifacts, std::move(options)));
}

// ---------------------------------------------------------------- profiles

namespace {

// The model's input names in order, from its signature; empty when unknown.
std::vector<std::string> InputNames(const Json& signature) {
  std::vector<std::string> names;
  if (!signature.is_object() || !signature.contains("inputs") || !signature["inputs"].is_array())
    return names;
  for (const auto& in : signature["inputs"]) {
    if (!in.is_object() || !in.contains("name") || !in["name"].is_string())
      return {};
    names.push_back(in["name"].get<std::string>());
  }
  return names;
}

}  // namespace

Result<Profile> Monitoring::SetProfile(const std::string& model, int64_t version,
                                       std::string_view csv, const std::string& source,
                                       const CommandContext& ctx) {
  ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_.GetVersion(model, version));
  ASSIGN_OR_RETURN(auto columns, ColumnsFromCsv(csv));
  // Only the model's inputs are profiled (a label column is not an input).
  std::vector<std::string> inputs = InputNames(mv.signature);
  if (!inputs.empty()) {
    std::vector<Column> kept;
    for (const auto& name : inputs) {
      auto it = std::find_if(columns.begin(), columns.end(),
                             [&](const Column& c) { return c.name == name; });
      if (it == columns.end()) {
        return core::InvalidArgument(
            fmt::format("reference data: column \"{}\" (an input of {} v{}) is missing", name,
                        model, version),
            "csv");
      }
      kept.push_back(std::move(*it));
    }
    columns = std::move(kept);
  }
  ASSIGN_OR_RETURN(Profile profile, BuildProfile(columns, options_.profile));
  Json profile_json = profile.ToJson();
  std::string text = profile_json.dump();
  int64_t now = core::NowMicros();
  Json summary = {{"model", model},
                  {"version", version},
                  {"source", source},
                  {"rows", profile.rows},
                  {"features", profile.features.size()}};
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    RETURN_IF_ERROR(
        tx.conn().Exec("INSERT INTO reference_profiles (model, version, source, profile, "
                       "created_us) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, version) DO "
                       "UPDATE SET source = excluded.source, profile = excluded.profile, "
                       "created_us = excluded.created_us",
                       {model, version, source, text, now}));
    return core::StatusOf(tx.Append({.type = "model_version.profile_recorded",
                                     .subject_kind = "model_version",
                                     .subject_id = mv.entity_id(),
                                     .actor = ctx.actor,
                                     .correlation_id = ctx.correlation_id,
                                     .causation_id = ctx.causation_id,
                                     .project = mv.project,
                                     .data = summary}));
  }));
  (void)events;
  std::lock_guard lock(state_->cache_mu);
  state_->profiles[{model, version}] = std::make_shared<const Profile>(profile);
  return profile;
}

Result<Profile> Monitoring::GetProfile(const std::string& model, int64_t version) {
  {
    std::lock_guard lock(state_->cache_mu);
    auto it = state_->profiles.find({model, version});
    if (it != state_->profiles.end())
      return *it->second;
  }
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query("SELECT profile FROM reference_profiles WHERE model = ? AND "
                               "version = ?",
                               {model, version}));
  if (rows.empty()) {
    return core::NotFound(
        fmt::format("model {} version {} has no reference profile", model, version));
  }
  ASSIGN_OR_RETURN(Json j, core::ParseJson(rows[0].Text(0)));
  ASSIGN_OR_RETURN(Profile p, Profile::FromJson(j));
  std::lock_guard lock(state_->cache_mu);
  state_->profiles[{model, version}] = std::make_shared<const Profile>(p);
  return p;
}

Result<std::string> Monitoring::EndpointProject(const std::string& endpoint) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query("SELECT project FROM serving_endpoints WHERE name = ?", {endpoint}));
  if (rows.empty())
    return core::NotFound(fmt::format("endpoint \"{}\" not found", endpoint));
  return rows[0].Text(0);
}

Result<std::string> Monitoring::VersionProject(const std::string& model, int64_t version) {
  ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_.GetVersion(model, version));
  return mv.project;
}

Result<bool> Monitoring::EnsureProfile(const std::string& model, int64_t version) {
  auto existing = GetProfile(model, version);
  if (existing)
    return true;
  if (existing.error().code != core::ErrorCode::kNotFound)
    return existing.error();
  ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_.GetVersion(model, version));
  auto tag = mv.tags.find(std::string(kReferenceTag));
  if (tag == mv.tags.end())
    return false;
  const std::string& uri = tag->second;
  std::string csv;
  if (uri.rfind("mlflow-artifacts:/", 0) == 0) {
    if (!artifacts_)
      return core::FailedPrecondition("no artifact store to read " + uri);
    ASSIGN_OR_RETURN(csv,
                     artifacts_->Get(uri.substr(std::string_view("mlflow-artifacts:/").size())));
  } else if (uri.rfind("file://", 0) == 0) {
    std::ifstream in(uri.substr(7), std::ios::binary);
    if (!in)
      return core::NotFound(fmt::format("reference data {} cannot be read", uri));
    csv.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    return core::InvalidArgument(fmt::format("tag {}: unsupported URI \"{}\"", kReferenceTag, uri),
                                 std::string(kReferenceTag));
  }
  RETURN_IF_ERROR(SetProfile(model, version, csv, uri, System()));
  return true;
}

// ---------------------------------------------------------------- monitors

namespace {

constexpr std::string_view kMonitorColumns =
    "id, model, version, project, config, cursor, window_opened_us, windows, last, created_us, "
    "updated_us, baseline";

Result<Monitor> MonitorFromRow(const Row& r) {
  Monitor m;
  m.id = m.endpoint = r.Text(0);
  m.model = r.Text(1);
  m.version = r.Int(2);
  m.project = r.Text(3);
  ASSIGN_OR_RETURN(m.config, MonitorConfig::FromJson(ParseOr(r.Text(4), Json::object())));
  m.cursor = r.Int(5);
  m.window_opened_us = r.Int(6);
  m.windows = r.Int(7);
  m.last = ParseOr(r.Text(8), Json(nullptr));
  m.created_us = r.Int(9);
  m.updated_us = r.Int(10);
  m.prediction_baseline = r.Text(11);
  return m;
}

}  // namespace

Result<Monitor> Monitoring::Configure(const std::string& endpoint, const MonitorConfig& config,
                                      const CommandContext& ctx) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto eps, conn->Query("SELECT model, project, stable_version FROM "
                                         "serving_endpoints WHERE name = ?",
                                         {endpoint}));
  if (eps.empty())
    return core::NotFound(fmt::format("endpoint \"{}\" not found", endpoint));
  std::string model = eps[0].Text(0), project = eps[0].Text(1);
  int64_t version = eps[0].Int(2);
  if (version == 0) {
    return core::FailedPrecondition(
        fmt::format("endpoint \"{}\" has no production version to monitor yet", endpoint), "");
  }
  // Overrides must name the model's inputs (a typo would silently not apply).
  if (auto mv = registry_.GetVersion(model, version); mv) {
    std::vector<std::string> inputs = InputNames(mv->signature);
    for (const auto& [name, v] : config.features.items()) {
      if (!inputs.empty() && std::find(inputs.begin(), inputs.end(), name) == inputs.end()) {
        return core::InvalidArgument(
            fmt::format("field \"config.features.{}\": not an input of {} v{}", name, model,
                        version),
            "config.features." + name);
      }
    }
  }
  int64_t now = core::NowMicros();
  std::string cfg = config.ToJson().dump();
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(auto existing,
                     tx.conn().Query("SELECT id FROM monitors WHERE id = ?", {endpoint}));
    if (!existing.empty()) {
      RETURN_IF_ERROR(tx.conn().Exec("UPDATE monitors SET config = ?, updated_us = ? WHERE id = ?",
                                     {cfg, now, endpoint}));
      return core::StatusOf(tx.Append({.type = "monitor.configured",
                                       .subject_kind = std::string(kMonitorKind),
                                       .subject_id = endpoint,
                                       .actor = ctx.actor,
                                       .correlation_id = ctx.correlation_id,
                                       .causation_id = ctx.causation_id,
                                       .project = project,
                                       .data = Json{{"config", config.ToJson()}}}));
    }
    RETURN_IF_ERROR(
        tx.conn().Exec("INSERT INTO monitors (id, model, version, project, config, cursor, "
                       "window_opened_us, windows, baseline, last, created_us, updated_us) "
                       "VALUES (?, ?, ?, ?, ?, 0, 0, 0, '', 'null', ?, ?)",
                       {endpoint, model, version, project, cfg, now, now}));
    CommandContext c = ctx;
    c.project = project;
    return core::StatusOf(lifecycles_.CreateIn(tx, std::string(kMonitorKind), endpoint,
                                               Json{{"endpoint", endpoint},
                                                    {"model", model},
                                                    {"version", version},
                                                    {"config", config.ToJson()}},
                                               c));
  }));
  (void)events;
  return Get(endpoint);
}

Result<Monitor> Monitoring::Get(const std::string& id) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(
      auto rows,
      conn->Query(fmt::format("SELECT {} FROM monitors WHERE id = ?", kMonitorColumns), {id}));
  if (rows.empty())
    return core::NotFound(fmt::format("monitor \"{}\" not found", id));
  ASSIGN_OR_RETURN(Monitor m, MonitorFromRow(rows[0]));
  ASSIGN_OR_RETURN(store::Entity e, lifecycles_.Get(std::string(kMonitorKind), id));
  m.state = e.state;
  return m;
}

Result<std::vector<Monitor>> Monitoring::List(
    const std::optional<std::set<std::string>>& projects) {
  std::vector<std::string> ids;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT id, project FROM monitors ORDER BY id"));
    for (const auto& r : rows) {
      if (!projects || projects->count(r.Text(1)))
        ids.push_back(r.Text(0));
    }
  }
  std::vector<Monitor> out;
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(Monitor m, Get(id));
    out.push_back(std::move(m));
  }
  return out;
}

Result<Monitor> Monitoring::Act(const std::string& id, const std::string& action,
                                const std::string& reason, const CommandContext& ctx) {
  if (action != "stop" && action != "resume" && action != "resolve") {
    return core::InvalidArgument(
        fmt::format("path parameter \"action\": must be stop, resume or resolve, got \"{}\"",
                    action),
        "action");
  }
  ASSIGN_OR_RETURN(Monitor m, Get(id));
  CommandContext c = ctx;
  c.project = m.project;
  int64_t now = core::NowMicros();
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    RETURN_IF_ERROR(lifecycles_.TransitionIn(tx, std::string(kMonitorKind), id,
                                             {.transition = action, .reason = reason}, c));
    if (action == "resume") {
      // Resume from now on: what arrived while stopped is not a window.
      RETURN_IF_ERROR(
          tx.conn().Exec("UPDATE monitors SET cursor = (SELECT COALESCE(MAX(id), 0) FROM "
                         "serving_samples WHERE endpoint = ?), window_opened_us = 0, "
                         "updated_us = ? WHERE id = ?",
                         {id, now, id}));
    }
    return core::Ok();
  }));
  (void)events;
  return Get(id);
}

namespace {

constexpr std::string_view kEvaluationColumns =
    "id, monitor, model, version, window_no, from_sample, to_sample, started_us, ended_us, "
    "rows_seen, labeled, drift, prediction_drift, performance, metrics, decision, reasons, "
    "created_us, updated_us";

Evaluation EvaluationFromRow(const Row& r) {
  Evaluation e;
  e.id = r.Int(0);
  e.monitor = r.Text(1);
  e.model = r.Text(2);
  e.version = r.Int(3);
  e.window = r.Int(4);
  e.from_sample = r.Int(5);
  e.to_sample = r.Int(6);
  e.started_us = r.Int(7);
  e.ended_us = r.Int(8);
  e.rows = r.Int(9);
  e.labeled = r.Int(10);
  e.drift = ParseOr(r.Text(11), Json(nullptr));
  e.prediction_drift = ParseOr(r.Text(12), Json(nullptr));
  e.performance = ParseOr(r.Text(13), Json(nullptr));
  Json m = ParseOr(r.Text(14), Json::object());
  for (const auto& [k, v] : m.items()) {
    if (v.is_number())
      e.metrics[k] = v.get<double>();
  }
  e.decision = r.Text(15);
  for (const auto& s : ParseOr(r.Text(16), Json::array())) {
    if (s.is_string())
      e.reasons.push_back(s.get<std::string>());
  }
  e.created_us = r.Int(17);
  e.updated_us = r.Int(18);
  return e;
}

Json MetricsJson(const std::map<std::string, double>& metrics) {
  Json m = Json::object();
  for (const auto& [k, v] : metrics)
    m[k] = std::isfinite(v) ? Json(v) : Json(nullptr);
  return m;
}

}  // namespace

Result<std::vector<Evaluation>> Monitoring::Evaluations(const std::string& id, int64_t after_id,
                                                        int limit) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query(fmt::format("SELECT {} FROM monitor_evaluations WHERE monitor = ? "
                                           "AND id > ? ORDER BY id LIMIT ?",
                                           kEvaluationColumns),
                               {id, after_id, static_cast<int64_t>(limit)}));
  std::vector<Evaluation> out;
  for (const auto& r : rows)
    out.push_back(EvaluationFromRow(r));
  return out;
}

Result<std::vector<Evaluation>> Monitoring::EvaluationsBetween(int64_t from_us, int64_t to_us) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query(fmt::format("SELECT {} FROM monitor_evaluations WHERE ended_us >= "
                                           "? AND ended_us < ? ORDER BY ended_us, id",
                                           kEvaluationColumns),
                               {from_us, to_us}));
  std::vector<Evaluation> out;
  for (const auto& r : rows)
    out.push_back(EvaluationFromRow(r));
  return out;
}

// ---------------------------------------------------------------- feedback

Result<FeedbackResult> Monitoring::RecordFeedback(const std::string& endpoint,
                                                  const std::vector<FeedbackItem>& items,
                                                  const CommandContext& ctx) {
  FeedbackResult result;
  int64_t now = core::NowMicros();
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  RETURN_IF_ERROR(store::InTransaction(*conn, [&](store::Connection& c) -> Status {
    for (const auto& item : items) {
      // A corrected label replaces the earlier one (and counts as new).
      RETURN_IF_ERROR(
          c.Exec("INSERT INTO feedback (request_id, endpoint, label, actor, "
                 "received_us) VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) DO "
                 "UPDATE SET label = excluded.label, actor = excluded.actor, "
                 "received_us = excluded.received_us",
                 {item.request_id, endpoint, item.label.dump(), ctx.actor, now}));
      ASSIGN_OR_RETURN(auto found,
                       c.Query("SELECT 1 FROM serving_samples WHERE request_id = ? AND endpoint = "
                               "? LIMIT 1",
                               {item.request_id, endpoint}));
      ++result.accepted;
      if (!found.empty())
        ++result.matched;
    }
    return core::Ok();
  }));
  return result;
}

// ---------------------------------------------------------------- the cycle

Status Monitoring::Follow(int64_t now_us) {
  std::vector<Row> endpoints;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(endpoints, conn->Query("SELECT e.name, e.stable_version, m.version, m.id "
                                            "FROM serving_endpoints e LEFT JOIN monitors m ON "
                                            "m.id = e.name WHERE e.stable_version > 0"));
  }
  for (const auto& r : endpoints) {
    std::string name = r.Text(0);
    int64_t stable = r.Int(1);
    if (r.IsNull(3)) {
      if (!options_.auto_monitor)
        continue;
      auto created = Configure(name, options_.defaults, System());
      if (!created && created.error().code != core::ErrorCode::kAlreadyExists)
        return created.error();
      continue;
    }
    if (r.Int(2) == stable)
      continue;
    // The production version changed: watch the new one from now on.
    ASSIGN_OR_RETURN(Monitor m, Get(name));
    if (m.state == kStopped)
      continue;
    CommandContext c = System();
    c.project = m.project;
    Json data = {{"from_version", m.version}, {"to_version", stable}};
    ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
      RETURN_IF_ERROR(
          tx.conn().Exec("UPDATE monitors SET version = ?, cursor = (SELECT "
                         "COALESCE(MAX(id), 0) FROM serving_samples WHERE endpoint = ?), "
                         "window_opened_us = 0, baseline = '', updated_us = ? WHERE id = ?",
                         {stable, name, now_us, name}));
      return core::StatusOf(lifecycles_.TransitionIn(
          tx, std::string(kMonitorKind), name,
          {.transition = "retarget",
           .reason = fmt::format("production version of {} changed from v{} to v{}", name,
                                 m.version, stable),
           .request_data = &data},
          c));
    }));
    (void)events;
  }
  return core::Ok();
}

Result<Json> Monitoring::Performance(const Monitor& m, int64_t from_sample, int64_t to_sample,
                                     int64_t* labeled) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query("SELECT s.output, f.label FROM serving_samples s JOIN feedback f "
                               "ON f.request_id = s.request_id WHERE s.endpoint = ? AND s.id > ? "
                               "AND s.id <= ? AND s.version = ? AND s.side = 'stable' ORDER BY "
                               "s.id",
                               {m.endpoint, from_sample, to_sample, m.version}));
  std::vector<double> scores, targets;
  for (const auto& r : rows) {
    Json out = ParseOr(r.Text(0), Json(nullptr));
    Json label = ParseOr(r.Text(1), Json(nullptr));
    if (!out.is_array())
      continue;
    auto value_of = [](const Json& v) -> std::optional<double> {
      if (v.is_number())
        return v.get<double>();
      if (v.is_array() && !v.empty() && v[0].is_number())
        return v[0].get<double>();
      return std::nullopt;
    };
    for (size_t i = 0; i < out.size(); ++i) {
      std::optional<double> score = value_of(out[i]);
      std::optional<double> target;
      if (label.is_array() && i < label.size())
        target = value_of(label[i]);
      else if (label.is_number() && out.size() == 1)
        target = label.get<double>();
      if (score && target && std::isfinite(*score) && std::isfinite(*target)) {
        scores.push_back(*score);
        targets.push_back(*target);
      }
    }
  }
  *labeled = static_cast<int64_t>(scores.size());
  if (scores.empty())
    return Json(nullptr);
  auto opt = [](const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); };
  if (m.config.task == "regression") {
    ASSIGN_OR_RETURN(auto reg, stats::Regression(targets, scores));
    return Json{{"rows", reg.count}, {"mae", opt(reg.mae)}, {"rmse", opt(reg.rmse)}};
  }
  std::vector<int> labels;
  labels.reserve(targets.size());
  for (double t : targets)
    labels.push_back(t >= 0.5 ? 1 : 0);
  ASSIGN_OR_RETURN(auto cls, stats::Classification(labels, scores, m.config.decision_threshold));
  return Json{{"rows", cls.count},
              {"positives", cls.positives},
              {"accuracy", opt(cls.accuracy)},
              {"precision", opt(cls.precision)},
              {"recall", opt(cls.recall)},
              {"f1", opt(cls.f1)},
              {"auc", opt(cls.roc_auc)}};
}

namespace {

void AddPerformanceMetrics(const Json& performance, std::map<std::string, double>& metrics) {
  if (!performance.is_object())
    return;
  for (const char* k : {"accuracy", "precision", "recall", "f1", "auc", "mae", "rmse"}) {
    if (performance.contains(k) && performance[k].is_number())
      metrics[k] = performance[k].get<double>();
  }
}

// Which performance floors/ceilings the numbers break (with labeled rows enough).
std::vector<std::string> PerformanceBreaches(const MonitorConfig& c,
                                             const std::map<std::string, double>& metrics,
                                             int64_t labeled) {
  std::vector<std::string> out;
  if (labeled < c.min_labeled)
    return out;
  for (const auto& [name, floor] : c.min_performance) {
    auto it = metrics.find(name);
    if (it != metrics.end() && it->second < floor)
      out.push_back(fmt::format("{} {:.4f} < {:.4f}", name, it->second, floor));
  }
  for (const auto& [name, ceiling] : c.max_performance) {
    auto it = metrics.find(name);
    if (it != metrics.end() && it->second > ceiling)
      out.push_back(fmt::format("{} {:.4f} > {:.4f}", name, it->second, ceiling));
  }
  return out;
}

}  // namespace

Status Monitoring::EvaluateDue(Monitor& m, int64_t now_us) {
  // The window: stable-side answers of the watched version after the cursor.
  std::vector<Row> samples;
  int64_t last_seen = m.cursor;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(samples, conn->Query("SELECT id, time_us, input, output, version, side, "
                                          "error FROM serving_samples WHERE endpoint = ? AND id > "
                                          "? ORDER BY id LIMIT ?",
                                          {m.endpoint, m.cursor, m.config.window_rows + 1000}));
  }
  if (samples.empty())
    return core::Ok();
  std::vector<Json> inputs, outputs;
  int64_t rows = 0, first_us = 0, to_sample = m.cursor;
  bool full = false;
  for (const auto& r : samples) {
    last_seen = r.Int(0);
    if (r.Int(4) != m.version || r.Text(5) != "stable" || !r.Text(6).empty())
      continue;
    Json in = ParseOr(r.Text(2), Json(nullptr));
    Json out = ParseOr(r.Text(3), Json(nullptr));
    if (!in.is_array())
      continue;
    if (first_us == 0)
      first_us = r.Int(1);
    rows += static_cast<int64_t>(in.size());
    inputs.push_back(std::move(in));
    outputs.push_back(std::move(out));
    to_sample = r.Int(0);
    if (rows >= m.config.window_rows) {
      full = true;
      break;
    }
  }
  if (!full) {
    bool timed_out = m.config.window_seconds > 0 && first_us > 0 &&
                     now_us - first_us >= m.config.window_seconds * 1'000'000 &&
                     rows >= m.config.min_rows;
    // A whole batch read without filling the window (mostly other versions'
    // or sides' samples): close what it holds, or skip past it, so the
    // cursor never stays stuck on samples that cannot fill a window.
    bool batch_full = static_cast<int64_t>(samples.size()) == m.config.window_rows + 1000;
    if (batch_full && rows < m.config.min_rows) {
      ASSIGN_OR_RETURN(auto conn, db_.Acquire());
      return core::StatusOf(
          conn->Exec("UPDATE monitors SET cursor = ?, updated_us = ? WHERE id = ?",
                     {to_sample == m.cursor ? last_seen : to_sample, now_us, m.id}));
    }
    if (!timed_out && !batch_full)
      return core::Ok();
    to_sample = last_seen;
  }

  // Columns in the model's input order.
  ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_.GetVersion(m.model, m.version));
  std::vector<std::string> names = InputNames(mv.signature);
  ASSIGN_OR_RETURN(bool has_profile, EnsureProfile(m.model, m.version));
  std::optional<Profile> profile;
  if (has_profile) {
    ASSIGN_OR_RETURN(Profile p, GetProfile(m.model, m.version));
    profile = std::move(p);
    if (names.empty()) {
      for (const auto& f : profile->features)
        names.push_back(f.name);
    }
  }
  size_t width = names.size();
  std::vector<std::vector<double>> numbers(width);
  std::vector<double> predictions;
  for (size_t s = 0; s < inputs.size(); ++s) {
    for (size_t i = 0; i < inputs[s].size(); ++i) {
      const Json& row = inputs[s][i];
      for (size_t f = 0; f < width; ++f) {
        double v = std::nan("");
        if (row.is_array() && f < row.size() && row[f].is_number())
          v = row[f].get<double>();
        numbers[f].push_back(v);
      }
      const Json& out = outputs[s];
      if (out.is_array() && i < out.size()) {
        const Json& p = out[i];
        if (p.is_number())
          predictions.push_back(p.get<double>());
        else if (p.is_array() && !p.empty() && p[0].is_number())
          predictions.push_back(p[0].get<double>());
      }
    }
  }
  std::vector<Column> columns;
  for (size_t f = 0; f < width; ++f) {
    const FeatureProfile* fp = profile ? profile->Find(names[f]) : nullptr;
    if (fp && fp->type == FeatureType::kCategorical) {
      // Integer codes sent as numbers compare as their decimal text.
      Column::Categorical cats;
      for (double v : numbers[f]) {
        if (std::isnan(v))
          cats.emplace_back(std::nullopt);
        else if (v == std::floor(v) && std::fabs(v) < 1e15)
          cats.emplace_back(fmt::format("{}", static_cast<int64_t>(v)));
        else
          cats.emplace_back(fmt::format("{}", v));
      }
      columns.push_back({.name = names[f], .values = std::move(cats)});
    } else {
      columns.push_back({.name = names[f], .values = std::move(numbers[f])});
    }
  }

  Evaluation e;
  e.monitor = m.id;
  e.model = m.model;
  e.version = m.version;
  e.window = m.windows + 1;
  e.from_sample = m.cursor;
  e.to_sample = to_sample;
  e.started_us = first_us;
  e.ended_us = now_us;
  e.rows = rows;
  e.metrics["rows"] = static_cast<double>(rows);
  bool retrain = false;
  if (profile) {
    ASSIGN_OR_RETURN(DriftReport report,
                     EvaluateDrift(*profile, columns, ToDriftOptions(m.config)));
    e.drift = report.ToJson();
    e.metrics["drift_share"] = report.drifted_share;
    e.metrics["dataset_drift"] = report.dataset_drift ? 1 : 0;
    e.metrics["drifted_features"] = static_cast<double>(report.drifted_count);
    for (const auto& f : report.features) {
      e.metrics["drift." + f.name] = Finite(f.score.value_or(0));
      e.metrics["missing_rate." + f.name] = Finite(f.missing_rate);
    }
    if (report.dataset_drift) {
      retrain = true;
      std::vector<std::string> drifted;
      for (const auto& f : report.features) {
        if (f.drifted)
          drifted.push_back(f.name);
      }
      std::string list;
      for (const auto& d : drifted)
        list += (list.empty() ? "" : ", ") + d;
      e.reasons.push_back(
          fmt::format("dataset drift: {} of {} features drifted ({:.0f}% >= "
                      "{:.0f}%): {}",
                      report.drifted_count, report.features.size(), report.drifted_share * 100,
                      m.config.drift_share * 100, list));
    }
  } else {
    e.reasons.push_back(fmt::format("no reference profile for {} v{}: data drift not evaluated",
                                    m.model, m.version));
  }

  // Prediction drift against the first window this version answered.
  const std::string& baseline_text = m.prediction_baseline;
  std::string new_baseline = baseline_text;
  if (!predictions.empty()) {
    std::vector<Column> pred = {{.name = "prediction", .values = predictions}};
    if (baseline_text.empty()) {
      ASSIGN_OR_RETURN(Profile base, BuildProfile(pred, options_.profile));
      new_baseline = base.ToJson().dump();
    } else {
      ASSIGN_OR_RETURN(Json bj, core::ParseJson(baseline_text));
      ASSIGN_OR_RETURN(Profile base, Profile::FromJson(bj));
      ASSIGN_OR_RETURN(DriftReport pd, EvaluateDrift(base, pred, DriftOptions{}));
      e.prediction_drift = pd.ToJson();
      if (!pd.features.empty())
        e.metrics["prediction_drift"] = Finite(pd.features[0].score.value_or(0));
    }
  }

  int64_t performance_us = core::NowMicros();
  ASSIGN_OR_RETURN(e.performance, Performance(m, e.from_sample, e.to_sample, &e.labeled));
  e.metrics["labeled"] = static_cast<double>(e.labeled);
  AddPerformanceMetrics(e.performance, e.metrics);
  for (auto& breach : PerformanceBreaches(m.config, e.metrics, e.labeled)) {
    retrain = true;
    e.reasons.push_back("performance: " + breach);
  }
  e.decision = retrain ? "retrain" : (profile ? "healthy" : "insufficient_data");
  e.created_us = e.updated_us = now_us;

  Json summary = {{"window", e.window},
                  {"rows", e.rows},
                  {"decision", e.decision},
                  {"reasons", e.reasons},
                  {"labeled", e.labeled},
                  {"version", m.version},
                  {"metrics", MetricsJson(e.metrics)}};
  CommandContext c = System();
  c.project = m.project;
  int64_t windows = m.windows + 1;
  int64_t evaluation_id = 0;
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO monitor_evaluations (monitor, model, version, window_no, from_sample, "
        "to_sample, started_us, ended_us, rows_seen, labeled, drift, prediction_drift, "
        "performance, metrics, decision, reasons, performance_us, created_us, updated_us) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {m.id, m.model, m.version, e.window, e.from_sample, e.to_sample, e.started_us, e.ended_us,
         e.rows, e.labeled, e.drift.dump(), e.prediction_drift.dump(), e.performance.dump(),
         MetricsJson(e.metrics).dump(), e.decision, Json(e.reasons).dump(), performance_us, now_us,
         now_us}));
    ASSIGN_OR_RETURN(
        auto inserted,
        tx.conn().Query("SELECT MAX(id) FROM monitor_evaluations WHERE monitor = ?", {m.id}));
    evaluation_id = inserted.empty() ? 0 : inserted[0].Int(0);
    Json data = summary;
    data["evaluation_id"] = evaluation_id;
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE monitors SET cursor = ?, window_opened_us = 0, windows = ?, "
                       "baseline = ?, last = ?, updated_us = ? WHERE id = ?",
                       {to_sample, windows, new_baseline, data.dump(), now_us, m.id}));
    Json opened = {{"window", e.window}, {"rows", e.rows}};
    RETURN_IF_ERROR(lifecycles_.TransitionIn(tx, std::string(kMonitorKind), m.id,
                                             {.transition = "evaluate", .request_data = &opened},
                                             c));
    std::string reason;
    for (const auto& r : e.reasons)
      reason += (reason.empty() ? "" : "; ") + r;
    return core::StatusOf(
        lifecycles_.TransitionIn(tx, std::string(kMonitorKind), m.id,
                                 {.transition = retrain ? "retrain_needed" : "evaluated",
                                  .reason = reason,
                                  .request_data = &data},
                                 c));
  }));
  (void)events;
  e.id = evaluation_id;
  m.cursor = to_sample;
  m.windows = windows;
  m.prediction_baseline = new_baseline;
  m.state = std::string(retrain ? kRetrainDecision : kMonitoringState);
  Export(m, e);
  return core::Ok();
}

Status Monitoring::UpdateLateLabels(const Monitor& m, int64_t now_us) {
  std::vector<Row> stale;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(
        stale,
        conn->Query("SELECT e.id, e.from_sample, e.to_sample, e.metrics, e.window_no FROM "
                    "monitor_evaluations e WHERE e.monitor = ? AND e.version = ? AND EXISTS "
                    "(SELECT 1 FROM feedback f JOIN serving_samples s ON s.request_id = "
                    "f.request_id WHERE f.endpoint = e.monitor AND f.received_us >= "
                    "e.performance_us AND s.endpoint = e.monitor AND s.id > e.from_sample AND "
                    "s.id <= e.to_sample) ORDER BY e.id DESC LIMIT 20",
                    {m.id, m.version}));
  }
  for (const auto& r : stale) {
    int64_t id = r.Int(0);
    int64_t performance_us = core::NowMicros();
    int64_t labeled = 0;
    ASSIGN_OR_RETURN(Json performance, Performance(m, r.Int(1), r.Int(2), &labeled));
    std::map<std::string, double> metrics;
    const Json items_of = ParseOr(r.Text(3), Json::object());
    for (const auto& [k, v] : items_of.items()) {
      if (v.is_number())
        metrics[k] = v.get<double>();
    }
    metrics["labeled"] = static_cast<double>(labeled);
    AddPerformanceMetrics(performance, metrics);
    // The event carries the performance numbers only: the window's drift
    // was already announced, and a rule counting drifted windows must not
    // count this one twice.
    std::map<std::string, double> performance_metrics = {{"labeled", double(labeled)}};
    AddPerformanceMetrics(performance, performance_metrics);
    Json data = {{"evaluation_id", id},
                 {"window", r.Int(4)},
                 {"labeled", labeled},
                 {"performance", performance},
                 {"metrics", MetricsJson(performance_metrics)}};
    std::vector<std::string> breaches = PerformanceBreaches(m.config, metrics, labeled);
    data["breaches"] = breaches;
    ASSIGN_OR_RETURN(auto latest, Evaluations(m.id, id, 1));
    bool is_latest = latest.empty();
    ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
      RETURN_IF_ERROR(
          tx.conn().Exec("UPDATE monitor_evaluations SET performance = ?, labeled = ?, "
                         "metrics = ?, performance_us = ?, updated_us = ? WHERE id = ?",
                         {performance.dump(), labeled, MetricsJson(metrics).dump(),
                          performance_us + 1, now_us, id}));
      ASSIGN_OR_RETURN(store::Event updated, tx.Append({.type = "monitor.performance_updated",
                                                        .subject_kind = std::string(kMonitorKind),
                                                        .subject_id = m.id,
                                                        .actor = std::string(kMonitoringActor),
                                                        .project = m.project,
                                                        .data = data}));
      if (!is_latest)
        return core::Ok();
      // The newest window's numbers are what periodic rules read.
      Json last = {{"window", r.Int(4)},
                   {"evaluation_id", id},
                   {"labeled", labeled},
                   {"version", m.version},
                   {"metrics", MetricsJson(metrics)}};
      RETURN_IF_ERROR(tx.conn().Exec("UPDATE monitors SET last = ?, updated_us = ? WHERE id = ?",
                                     {last.dump(), now_us, m.id}));
      ASSIGN_OR_RETURN(store::Entity entity, lifecycles_.Get(std::string(kMonitorKind), m.id));
      if (breaches.empty() || entity.state != kMonitoringState)
        return core::Ok();
      // Late labels show the performance below its floor: a retrain decision.
      store::CommandContext c = System(updated.id);
      c.project = m.project;
      Json opened = {{"window", r.Int(4)}, {"late_labels", true}};
      RETURN_IF_ERROR(lifecycles_.TransitionIn(tx, std::string(kMonitorKind), m.id,
                                               {.transition = "evaluate", .request_data = &opened},
                                               c));
      Json decision = last;
      decision["decision"] = "retrain";
      decision["reasons"] = breaches;
      std::string reason = "performance from late labels: ";
      for (size_t i = 0; i < breaches.size(); ++i)
        reason += (i ? "; " : "") + breaches[i];
      return core::StatusOf(lifecycles_.TransitionIn(
          tx, std::string(kMonitorKind), m.id,
          {.transition = "retrain_needed", .reason = reason, .request_data = &decision}, c));
    }));
    (void)events;
    auto& g = Metrics();
    g.labeled.With({m.id}).Set(static_cast<double>(labeled));
    for (const char* k : {"accuracy", "precision", "recall", "f1", "auc", "mae", "rmse"}) {
      auto it = metrics.find(k);
      if (it != metrics.end())
        g.performance.With({m.id, k}).Set(it->second);
    }
  }
  return core::Ok();
}

void Monitoring::Export(const Monitor& m, const Evaluation& e) {
  auto& g = Metrics();
  for (std::string_view s : {kMonitoringState, kEvaluating, kRetrainDecision, kStopped})
    g.state.With({m.id, std::string(s)}).Set(m.state == s ? 1 : 0);
  g.evaluations.With({m.id}).Inc();
  g.window_rows.With({m.id}).Set(static_cast<double>(e.rows));
  auto num = [](const Json& j, const char* k) {
    return j.contains(k) && j[k].is_number() ? j[k].get<double>() : 0.0;
  };
  if (e.drift.is_object()) {
    g.drift_share.With({m.id}).Set(e.metrics.count("drift_share") ? e.metrics.at("drift_share")
                                                                  : 0);
    g.dataset_drift.With({m.id}).Set(
        e.metrics.count("dataset_drift") ? e.metrics.at("dataset_drift") : 0);
    for (const auto& f : e.drift.value("features", Json::array())) {
      std::string name = f.value("name", "");
      g.drift_score.With({m.id, name, f.value("method", "")}).Set(num(f, "score"));
      if (f.contains("p_value") && f["p_value"].is_number())
        g.drift_p.With({m.id, name}).Set(f["p_value"].get<double>());
      g.drifted.With({m.id, name}).Set(f.value("drifted", false) ? 1 : 0);
      g.missing.With({m.id, name}).Set(num(f, "missing_rate"));
      if (f.value("type", "") == "categorical")
        g.unseen.With({m.id, name}).Set(num(f, "unseen_rate"));
      else
        g.out_of_range.With({m.id, name}).Set(num(f, "out_of_range_rate"));
    }
  }
  auto pd = e.metrics.find("prediction_drift");
  if (pd != e.metrics.end())
    g.prediction_drift.With({m.id}).Set(pd->second);
  g.labeled.With({m.id}).Set(static_cast<double>(e.labeled));
  for (const char* k : {"accuracy", "precision", "recall", "f1", "auc", "mae", "rmse"}) {
    auto it = e.metrics.find(k);
    if (it != e.metrics.end())
      g.performance.With({m.id, k}).Set(it->second);
  }
}

Status Monitoring::RunCycle(int64_t now_us) {
  std::lock_guard lock(state_->mu);
  RETURN_IF_ERROR(Follow(now_us));
  ASSIGN_OR_RETURN(auto monitors, List(std::nullopt));
  Status first = core::Ok();
  for (auto& m : monitors) {
    auto& g = Metrics();
    for (std::string_view s : {kMonitoringState, kEvaluating, kRetrainDecision, kStopped})
      g.state.With({m.id, std::string(s)}).Set(m.state == s ? 1 : 0);
    if (m.state == kStopped)
      continue;
    Status s = EvaluateDue(m, now_us);
    if (s)
      s = UpdateLateLabels(m, now_us);
    if (!s) {
      core::LogWarn(fmt::format("monitoring: monitor {}: {}", m.id, s.error().message));
      if (first)
        first = s;
    }
  }
  return first;
}

void Monitoring::Start() {
  std::lock_guard lock(state_->thread_mu);
  if (state_->thread.joinable())
    return;
  state_->stop = false;
  // Profiles are built as soon as a version naming its training data is registered.
  auto sub = log_.SubscribeDurable("monitoring_profiles", [this](const store::Event& e) -> Status {
    if (e.type != "model_version.created" && e.type != "model_version.registered")
      return core::Ok();
    size_t colon = e.subject_id.rfind(':');
    if (colon == std::string::npos)
      return core::Ok();
    int64_t version = std::atoll(e.subject_id.c_str() + colon + 1);
    auto ok = EnsureProfile(e.subject_id.substr(0, colon), version);
    if (!ok) {
      core::LogWarn(fmt::format("monitoring: cannot build the reference profile of {}: {}",
                                e.subject_id, ok.error().message));
    }
    return core::Ok();
  });
  if (sub)
    state_->subscription = std::move(*sub);
  else
    core::LogWarn("monitoring: cannot subscribe to registry events: " + sub.error().message);
  state_->thread = std::thread([this] {
    std::unique_lock lock(state_->thread_mu);
    while (!state_->stop) {
      lock.unlock();
      (void)RunCycle(core::NowMicros());
      lock.lock();
      state_->cv.wait_for(lock, options_.cycle_interval, [this] { return state_->stop; });
    }
  });
}

void Monitoring::Stop() {
  {
    std::lock_guard lock(state_->thread_mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  if (state_->thread.joinable())
    state_->thread.join();
  state_->subscription.reset();
}

}  // namespace kervan::monitoring
