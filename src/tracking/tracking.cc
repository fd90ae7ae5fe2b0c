// Experiment tracking: experiments, runs and their telemetry; see tracking.h.
#include "tracking/tracking.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>

#include <fmt/format.h>

#include "tracking/internal.h"
#include "tracking/metric_writer.h"

namespace kervan::tracking {
namespace {

using store::CommandTx;
using store::Connection;
using store::Rows;
using store::Value;

constexpr std::string_view kSystemActor = "system:tracking";
constexpr std::string_view kLogModelHistoryTag = "mlflow.log-model.history";
const std::vector<std::string_view> kRunStatuses = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED",
                                                    "KILLED"};

int64_t NowMs() {
  return core::NowMicros() / 1000;
}

Result<int64_t> ParseId(const std::string& text, std::string_view what) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < 0)
    return core::NotFound(fmt::format("No {} with id={} exists", what, text));
  return v;
}

// MLflow's name rule for metric, param and tag keys (validation.py):
// alphanumerics, underscores, dashes, periods, spaces, colons and slashes;
// at most 250 characters; not a path that escapes ("..", leading "/").
Status ValidateKey(std::string_view key, std::string_view what, std::string_view field) {
  if (key.empty())
    return core::InvalidArgument(fmt::format("{} name must not be empty", what),
                                 std::string(field));
  if (key.size() > kMaxKeyLength) {
    return core::InvalidArgument(
        fmt::format("{} name '{}' had length {}, which exceeded length limit of {}", what,
                    key.substr(0, 64), key.size(), kMaxKeyLength),
        std::string(field));
  }
  bool ok = std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == ' ' || c == '/' || c == ':';
  });
  bool escapes = key.front() == '/' || key == ".." || key.starts_with("../") ||
                 key.ends_with("/..") || key.find("/../") != std::string_view::npos;
  if (!ok || escapes) {
    return core::InvalidArgument(
        fmt::format("Invalid {} name: '{}'. Names may only contain alphanumerics, underscores "
                    "(_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/), and may "
                    "not start with '/' or contain '..' segments.",
                    what, key),
        std::string(field));
  }
  return core::Ok();
}

Status ValidateValueLength(std::string_view value, size_t limit, std::string_view what,
                           std::string_view key, std::string_view field) {
  if (value.size() > limit) {
    return core::InvalidArgument(
        fmt::format("{} value for key '{}' had length {}, which exceeded length limit of {}", what,
                    key, value.size(), limit),
        std::string(field));
  }
  return core::Ok();
}

Status ValidateMetric(const MetricPoint& m, std::string_view field) {
  return ValidateKey(m.key, "Metric", field);
}

Status ValidateParam(const KeyValue& p, std::string_view field) {
  RETURN_IF_ERROR(ValidateKey(p.first, "Param", field));
  return ValidateValueLength(p.second, kMaxParamValueLength, "Param", p.first, field);
}

Status ValidateTag(const KeyValue& t, std::string_view field) {
  RETURN_IF_ERROR(ValidateKey(t.first, "Tag", field));
  return ValidateValueLength(t.second, kMaxTagValueLength, "Tag", t.first, field);
}

core::Error NotActive(std::string_view what, std::string_view id, std::string_view stage) {
  return mlflow::WithCode(
      core::FailedPrecondition(fmt::format(
          "The {} {} must be in the 'active' state. Current state is {}.", what, id, stage)),
      "INVALID_PARAMETER_VALUE");
}

std::string GenerateRunName() {
  static const char* kAdjectives[] = {"amber",  "brave",  "calm",   "daring", "eager",  "fleet",
                                      "gentle", "hushed", "keen",   "lucid",  "mellow", "nimble",
                                      "placid", "quick",  "rustic", "serene", "tidy",   "vivid"};
  static const char* kNouns[] = {"ant",  "bear", "crane", "deer",  "eel",   "finch",
                                 "gull", "hare", "ibis",  "jay",   "koala", "lynx",
                                 "mole", "newt", "owl",   "panda", "quail", "robin"};
  std::string r = core::RandomBytes(3);
  auto b = [&](int i) { return static_cast<unsigned char>(r[i]); };
  return fmt::format("{}-{}-{}", kAdjectives[b(0) % std::size(kAdjectives)],
                     kNouns[b(1) % std::size(kNouns)], b(2) % 1000);
}

Json TagsJson(const std::vector<KeyValue>& tags) {
  Json out = Json::object();
  for (const auto& [k, v] : tags)
    out[k] = v;
  return out;
}

Result<std::optional<Experiment>> LoadExperiment(Connection& conn, int64_t id) {
  ASSIGN_OR_RETURN(Rows rows,
                   conn.Query(fmt::format("SELECT {} FROM experiments WHERE experiment_id = ?",
                                          internal::kExperimentColumns),
                              {id}));
  if (rows.empty())
    return std::optional<Experiment>();
  std::vector<Experiment> one{internal::ExperimentFromRow(rows[0])};
  RETURN_IF_ERROR(internal::LoadExperimentTags(conn, one));
  return std::optional<Experiment>(std::move(one[0]));
}

Result<Experiment> RequireExperiment(Connection& conn, const std::string& id) {
  ASSIGN_OR_RETURN(int64_t n, ParseId(id, "Experiment"));
  ASSIGN_OR_RETURN(auto e, LoadExperiment(conn, n));
  if (!e)
    return core::NotFound(fmt::format("No Experiment with id={} exists", id));
  return std::move(*e);
}

// `lock`: for a command that changes the run. On PostgreSQL the row then
// stays locked until the command's transaction ends, so that a command of
// another server changing the same run's params, tags or inputs waits, and
// the runs.data each rewrites from the tables sees the other's rows
// (RefreshRunData; READ COMMITTED takes a snapshot per statement). SQLite
// has one writer at a time.
Result<internal::RunRow> RequireRun(Connection& conn, const std::string& run_id,
                                    bool lock = false) {
  const bool for_update = lock && conn.dialect() == store::Dialect::kPostgres;
  ASSIGN_OR_RETURN(Rows rows,
                   conn.Query(fmt::format("SELECT {} FROM runs WHERE run_uuid = ?{}",
                                          internal::kRunColumns, for_update ? " FOR UPDATE" : ""),
                              {run_id}));
  if (rows.empty())
    return core::NotFound(fmt::format("Run with id={} not found", run_id));
  return internal::RunFromRow(rows[0]);
}

// Locked (see RequireRun): every caller changes the run.
Result<internal::RunRow> RequireActiveRun(Connection& conn, const std::string& run_id) {
  ASSIGN_OR_RETURN(internal::RunRow run, RequireRun(conn, run_id, /*lock=*/true));
  if (run.info.lifecycle_stage != "active")
    return NotActive("run", run_id, run.info.lifecycle_stage);
  return run;
}

store::CommandContext InProject(store::CommandContext ctx, const std::string& project) {
  ctx.project = project;
  return ctx;
}

// Appends one event about `kind`/`id` in `project`, with the request's
// actor, correlation and causation.
Status AppendEvent(CommandTx& tx, std::string_view kind, const std::string& id, std::string type,
                   const store::CommandContext& ctx, const std::string& project, Json data) {
  auto ev = tx.Append({.type = std::move(type),
                       .subject_kind = std::string(kind),
                       .subject_id = id,
                       .actor = ctx.actor,
                       .correlation_id = ctx.correlation_id,
                       .causation_id = ctx.causation_id,
                       .project = project,
                       .data = std::move(data)});
  if (!ev)
    return ev.error();
  return core::Ok();
}

Status TouchExperiment(Connection& conn, int64_t id) {
  RETURN_IF_ERROR(conn.Exec("UPDATE experiments SET last_update_time = ? WHERE experiment_id = ?",
                            {NowMs(), id}));
  return core::Ok();
}

// Inserts params; refuses a key already stored with another value. The
// caller refreshes runs.data (internal::RefreshRunData), as after
// UpsertTags.
Status InsertParams(Connection& conn, const internal::RunRow& run,
                    const std::vector<KeyValue>& params) {
  for (const auto& [key, value] : params) {
    ASSIGN_OR_RETURN(Rows rows, conn.Query("SELECT value FROM run_params WHERE run_pk = ? AND "
                                           "key = ?",
                                           {run.pk, key}));
    if (!rows.empty()) {
      if (rows[0].Text(0) == value)
        continue;
      return core::InvalidArgument(
          fmt::format("Changing param values is not allowed. Param with key='{}' was already "
                      "logged with value='{}' for run ID='{}'. Attempted logging new value '{}'.",
                      key, rows[0].Text(0), run.info.run_id, value),
          "params");
    }
    RETURN_IF_ERROR(conn.Exec("INSERT INTO run_params (run_pk, key, value) VALUES (?, ?, ?)",
                              {run.pk, key, value}));
  }
  return core::Ok();
}

Status UpsertTags(Connection& conn, int64_t run_pk, const std::vector<KeyValue>& tags) {
  for (const auto& [key, value] : tags) {
    RETURN_IF_ERROR(
        conn.Exec("INSERT INTO run_tags (run_pk, key, value) VALUES (?, ?, ?) "
                  "ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value",
                  {run_pk, key, value}));
    if (key == kRunNameTag) {
      RETURN_IF_ERROR(conn.Exec("UPDATE runs SET name = ? WHERE run_pk = ?", {value, run_pk}));
    }
  }
  return core::Ok();
}

Result<core::StateMachine> ActiveDeletedMachine(std::string_view kind) {
  return core::StateMachine::Build(std::string(kind), {"active", "deleted"}, "active",
                                   {{.name = "delete",
                                     .from = {"active"},
                                     .to = "deleted",
                                     .event = "deleted",
                                     .permission = "tracking.write"},
                                    {.name = "restore",
                                     .from = {"deleted"},
                                     .to = "active",
                                     .event = "restored",
                                     .permission = "tracking.write"}});
}

}  // namespace

namespace internal {

core::Error RunNotActive(std::string_view run_id, std::string_view stage) {
  return NotActive("run", run_id, stage);
}

std::string Placeholders(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i)
    out += i == 0 ? "?" : ", ?";
  return out;
}

RunRow RunFromRow(const store::Row& row, size_t f) {
  RunRow r;
  r.pk = row.Int(f + 0);
  r.info.run_id = row.Text(f + 1);
  r.info.experiment_id = std::to_string(row.Int(f + 2));
  r.info.run_name = row.Text(f + 3);
  r.info.user_id = row.Text(f + 4);
  r.info.status = row.Text(f + 5);
  r.info.start_time = row.Int(f + 6);
  if (!row.IsNull(f + 7))
    r.info.end_time = row.Int(f + 7);
  r.info.lifecycle_stage = row.Text(f + 8);
  r.info.artifact_uri = row.Text(f + 9);
  r.info.project = row.Text(f + 10);
  if (!row.IsNull(f + 11))
    r.data = row.Text(f + 11);
  return r;
}

Experiment ExperimentFromRow(const store::Row& row) {
  Experiment e;
  e.id = std::to_string(row.Int(0));
  e.name = row.Text(1);
  e.artifact_location = row.Text(2);
  e.lifecycle_stage = row.Text(3);
  e.creation_time = row.Int(4);
  e.last_update_time = row.Int(5);
  e.project = row.Text(6);
  return e;
}

Status LoadExperimentTags(Connection& conn, std::vector<Experiment>& experiments) {
  if (experiments.empty())
    return core::Ok();
  std::vector<Value> ids;
  std::map<int64_t, Experiment*> by_id;
  for (Experiment& e : experiments) {
    int64_t id = std::stoll(e.id);
    ids.emplace_back(id);
    by_id[id] = &e;
  }
  ASSIGN_OR_RETURN(Rows rows, conn.Query(fmt::format("SELECT experiment_id, key, value FROM "
                                                     "experiment_tags WHERE experiment_id IN ({}) "
                                                     "ORDER BY experiment_id, key",
                                                     Placeholders(ids.size())),
                                         ids));
  for (const auto& row : rows)
    by_id[row.Int(0)]->tags.emplace_back(row.Text(1), row.Text(2));
  return core::Ok();
}

// Reads the latest metrics of the runs `pks` into `by_pk`. `meanwhile`
// runs after the statements are sent and before their answers are read
// (which happens whatever it returns; its error comes first).
Status LoadLatestMetrics(Connection& conn, Connection& other, const std::vector<Value>& pks,
                         std::unordered_map<int64_t, Run*>& by_pk,
                         const std::function<Status()>& meanwhile);

Result<std::vector<Run>> LoadRunData(Connection& conn, std::vector<RunRow> rows,
                                     store::Database* db) {
  std::vector<Run> runs(rows.size());
  if (rows.empty())
    return runs;
  std::vector<Value> pks;
  std::unordered_map<int64_t, Run*> by_pk;
  by_pk.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    runs[i].info = std::move(rows[i].info);
    pks.emplace_back(rows[i].pk);
    by_pk[rows[i].pk] = &runs[i];
  }
  // While the database reads the metrics.
  auto parse_documents = [&]() -> Status {
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!rows[i].data)
        return core::Internal(fmt::format("run {} has no runs.data document", runs[i].info.run_id));
      RETURN_IF_ERROR(ParseRunData(*rows[i].data, runs[i]));
    }
    return core::Ok();
  };
  // A large page reads its metrics on two connections at once when the
  // pool has one to spare without waiting (waiting could deadlock a full
  // pool of requests that each hold one); otherwise on `conn` alone.
  std::optional<store::PooledConnection> second;
  if (db != nullptr && db->dialect() == store::Dialect::kPostgres &&
      rows.size() >= kParallelRunData) {
    auto spare = db->TryAcquire();  // an error (cannot open one): go on with `conn`
    if (spare && spare->has_value())
      second.emplace(std::move(**spare));
  }
  Connection& other = second ? **second : conn;
  // IN lists of at most 1000 ids: SQLite's default limit on bound
  // parameters is 32,766 and runs/search may return 50,000 runs.
  constexpr size_t kChunk = 1000;
  for (size_t start = 0; start < pks.size(); start += kChunk) {
    std::vector<Value> chunk(
        pks.begin() + static_cast<ptrdiff_t>(start),
        pks.begin() + static_cast<ptrdiff_t>(std::min(pks.size(), start + kChunk)));
    RETURN_IF_ERROR(LoadLatestMetrics(conn, other, chunk, by_pk,
                                      start == 0 ? parse_documents : std::function<Status()>()));
  }
  // The statement does not sort: each run's few metrics are sorted here,
  // by key in byte order on both backends.
  auto metric_key = [](const MetricPoint& a, const MetricPoint& b) { return a.key < b.key; };
  for (Run& run : runs) {
    if (!std::is_sorted(run.metrics.begin(), run.metrics.end(), metric_key))
      std::sort(run.metrics.begin(), run.metrics.end(), metric_key);
  }
  return runs;
}

Status LoadLatestMetrics(Connection& conn, Connection& other, const std::vector<Value>& given,
                         std::unordered_map<int64_t, Run*>& by_pk,
                         const std::function<Status()>& meanwhile) {
  // SQLite: "IN (?, ?, ...)". PostgreSQL: one array parameter, so the
  // statement is the same text (prepared once) whatever the number of
  // runs, and PostgreSQL binds one value instead of 1000. When `other` is
  // a second connection, it reads the second half of the runs meanwhile.
  const bool pg = conn.dialect() == store::Dialect::kPostgres;
  const size_t half = &other == &conn ? given.size() : given.size() / 2;
  auto statement = [&](size_t begin, size_t end) -> std::pair<std::string, std::vector<Value>> {
    std::string sql =
        "SELECT run_pk, key, value, is_nan, ts, step FROM latest_metrics WHERE run_pk ";
    if (pg) {
      sql += "= ANY(CAST(? AS BIGINT[]))";
      return {std::move(sql), {Value(PgIntArray(end - begin, [&](size_t i) {
                return std::get<int64_t>(given[begin + i]);
              }))}};
    }
    sql += fmt::format("IN ({})", Placeholders(end - begin));
    return {std::move(sql), std::vector<Value>(given.begin() + static_cast<ptrdiff_t>(begin),
                                               given.begin() + static_cast<ptrdiff_t>(end))};
  };
  auto [first_sql, first_params] = statement(0, half);
  RETURN_IF_ERROR(conn.SendQuery(first_sql, first_params));
  Status sent = core::Ok();
  if (half < given.size()) {
    auto [second_sql, second_params] = statement(half, given.size());
    sent = other.SendQuery(second_sql, second_params);
  }
  const Status done_meanwhile = sent && meanwhile ? meanwhile() : core::Ok();
  // Every statement sent is answered before returning, whatever failed.
  auto first = conn.ReceiveRows();
  std::optional<Result<Rows>> second;
  if (sent && half < given.size())
    second.emplace(other.ReceiveRows());
  RETURN_IF_ERROR(sent);
  RETURN_IF_ERROR(done_meanwhile);
  if (!first)
    return first.error();
  if (second && !*second)
    return second->error();
  for (const Rows* rows : {&*first, second ? &**second : nullptr}) {
    if (rows == nullptr)
      continue;
    for (const store::Row& r : *rows) {
      by_pk.at(r.Int(0))->metrics.push_back(
          {.key = r.Text(1),
           .value = r.Int(3) ? std::numeric_limits<double>::quiet_NaN() : r.Real(2),
           .timestamp = r.Int(4),
           .step = r.Int(5)});
    }
  }
  return core::Ok();
}

}  // namespace internal

// ---------------------------------------------------------------------------
// JSON forms

Result<ViewType> ParseViewType(std::string_view text, std::string_view field) {
  if (text.empty() || text == "ACTIVE_ONLY" || text == "1")
    return ViewType::kActiveOnly;
  if (text == "DELETED_ONLY" || text == "2")
    return ViewType::kDeletedOnly;
  if (text == "ALL" || text == "3")
    return ViewType::kAll;
  return core::InvalidArgument(
      fmt::format("Invalid value \"{}\" for parameter '{}': expected ACTIVE_ONLY, DELETED_ONLY or "
                  "ALL",
                  text, field),
      std::string(field));
}

Json Experiment::ToMlflow() const {
  Json out = {{"experiment_id", id},
              {"name", name},
              {"artifact_location", artifact_location},
              {"lifecycle_stage", lifecycle_stage},
              {"last_update_time", last_update_time},
              {"creation_time", creation_time}};
  if (!tags.empty())
    out["tags"] = mlflow::KeyValues(tags);
  return out;
}

Json MetricPoint::ToMlflow() const {
  return {{"key", key},
          {"value", mlflow::DoubleToJson(value)},
          {"timestamp", timestamp},
          {"step", step}};
}

Json DatasetInput::ToMlflow() const {
  Json out = Json::object();
  if (!tags.empty())
    out["tags"] = mlflow::KeyValues(tags);
  out["dataset"] = dataset;
  return out;
}

Json RunInfo::ToMlflow() const {
  Json out = {{"run_id", run_id},
              {"run_uuid", run_id},
              {"run_name", run_name},
              {"experiment_id", experiment_id},
              {"user_id", user_id},
              {"status", status},
              {"start_time", start_time},
              {"artifact_uri", artifact_uri},
              {"lifecycle_stage", lifecycle_stage}};
  if (end_time)
    out["end_time"] = *end_time;
  return out;
}

Json Run::ToMlflow() const {
  Json data = Json::object();
  if (!metrics.empty()) {
    Json m = Json::array();
    for (const auto& p : metrics)
      m.push_back(p.ToMlflow());
    data["metrics"] = std::move(m);
  }
  if (!params.empty())
    data["params"] = mlflow::KeyValues(params);
  if (!tags.empty())
    data["tags"] = mlflow::KeyValues(tags);
  Json in = Json::object();
  if (!inputs.empty()) {
    Json list = Json::array();
    for (const auto& d : inputs)
      list.push_back(d.ToMlflow());
    in["dataset_inputs"] = std::move(list);
  }
  return {{"info", info.ToMlflow()}, {"data", std::move(data)}, {"inputs", std::move(in)}};
}

// ---------------------------------------------------------------------------
// Experiments

Tracking::Tracking(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
                   Options options)
    : db_(db),
      log_(log),
      lifecycles_(lifecycles),
      options_(std::move(options)),
      writer_(std::make_unique<internal::MetricWriter>(db)) {}

Tracking::~Tracking() = default;

Result<std::unique_ptr<Tracking>> Tracking::Open(store::Database& db, store::EventLog& log,
                                                 store::Lifecycles& lifecycles, Options options) {
  for (std::string_view kind : {kExperimentKind, kRunKind}) {
    ASSIGN_OR_RETURN(core::StateMachine machine, ActiveDeletedMachine(kind));
    RETURN_IF_ERROR(lifecycles.Register(std::move(machine)));
  }
  while (!options.artifact_root.empty() && options.artifact_root.back() == '/')
    options.artifact_root.pop_back();
  std::unique_ptr<Tracking> t(new Tracking(db, log, lifecycles, std::move(options)));
  // Runs from before migration 0016 get their runs.data document.
  auto filled = log.Execute([](CommandTx& tx) -> Status {
    return internal::RefreshRunData(tx.conn(), "data IS NULL", {});
  });
  if (!filled)
    return filled.error();
  // Experiment "0" ("Default") exists from the start, as in MLflow.
  const std::string root = t->options_.artifact_root;
  auto created = log.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(auto existing, LoadExperiment(tx.conn(), 0));
    if (existing)
      return core::Ok();
    int64_t now = NowMs();
    std::string location = root + "/0";
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
        "project, creation_time, last_update_time) VALUES (0, 'Default', ?, 'active', "
        "'default', ?, ?)",
        {location, now, now}));
    store::CommandContext ctx{.actor = std::string(kSystemActor), .project = "default"};
    return lifecycles
                   .CreateIn(tx, std::string(kExperimentKind), "0",
                             {{"name", "Default"}, {"artifact_location", location}}, ctx)
                   .has_value()
               ? core::Ok()
               : core::Internal("cannot record the Default experiment");
  });
  if (!created)
    return created.error();
  return t;
}

Result<Experiment> Tracking::CreateExperiment(const CreateExperimentRequest& request,
                                              const store::CommandContext& ctx) {
  if (request.name.empty()) {
    return core::InvalidArgument(
        "Missing value for required parameter 'name'. See the API docs for more information "
        "about request parameters.",
        "name");
  }
  if (request.name.size() > 500)
    return core::InvalidArgument("Experiment name exceeds the 500 character limit", "name");
  for (const auto& tag : request.tags) {
    RETURN_IF_ERROR(ValidateKey(tag.first, "Tag", "tags"));
    RETURN_IF_ERROR(
        ValidateValueLength(tag.second, kMaxExperimentTagValueLength, "Tag", tag.first, "tags"));
  }
  if (!request.artifact_location.empty() &&
      (request.artifact_location.find("..") != std::string::npos)) {
    return core::InvalidArgument("artifact_location must not contain '..'", "artifact_location");
  }
  Experiment out;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Rows same, conn.Query("SELECT lifecycle_stage FROM experiments WHERE name = ?",
                                           {request.name}));
    if (!same.empty()) {
      if (same[0].Text(0) == "deleted") {
        return core::AlreadyExists(fmt::format(
            "Experiment '{}' already exists in deleted state. You can restore the experiment, or "
            "permanently delete it before creating a new one with the same name.",
            request.name));
      }
      return core::AlreadyExists(fmt::format("Experiment '{}' already exists.", request.name));
    }
    ASSIGN_OR_RETURN(Rows max,
                     conn.Query("SELECT COALESCE(MAX(experiment_id), 0) FROM experiments"));
    int64_t id = max[0].Int(0) + 1;
    int64_t now = NowMs();
    std::string location = request.artifact_location.empty()
                               ? fmt::format("{}/{}", options_.artifact_root, id)
                               : request.artifact_location;
    RETURN_IF_ERROR(conn.Exec(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
        "project, creation_time, last_update_time) VALUES (?, ?, ?, 'active', ?, ?, ?)",
        {id, request.name, location, request.project, now, now}));
    std::vector<KeyValue> tags = request.tags;
    std::sort(tags.begin(), tags.end());
    for (const auto& [k, v] : tags) {
      RETURN_IF_ERROR(
          conn.Exec("INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                    {id, k, v}));
    }
    ASSIGN_OR_RETURN(
        auto entity,
        lifecycles_.CreateIn(
            tx, std::string(kExperimentKind), std::to_string(id),
            {{"name", request.name}, {"artifact_location", location}, {"tags", TagsJson(tags)}},
            InProject(ctx, request.project)));
    (void)entity;
    out = {.id = std::to_string(id),
           .name = request.name,
           .artifact_location = location,
           .lifecycle_stage = "active",
           .creation_time = now,
           .last_update_time = now,
           .project = request.project,
           .tags = tags};
    return core::Ok();
  });
  if (!done)
    return done.error();
  return out;
}

Result<Experiment> Tracking::GetExperiment(const std::string& id) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  return RequireExperiment(*conn, id);
}

Result<Experiment> Tracking::GetExperimentByName(const std::string& name) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(Rows rows, conn->Query(fmt::format("SELECT {} FROM experiments WHERE name = ?",
                                                      internal::kExperimentColumns),
                                          {name}));
  if (rows.empty())
    return core::NotFound(fmt::format("Could not find experiment with name '{}'", name));
  std::vector<Experiment> one{internal::ExperimentFromRow(rows[0])};
  RETURN_IF_ERROR(internal::LoadExperimentTags(*conn, one));
  return std::move(one[0]);
}

namespace {

// Moves an experiment and its runs between active and deleted, as MLflow
// does; each run's transition is an event caused by the experiment's.
Result<Experiment> SetExperimentStage(store::EventLog& log, store::Lifecycles& lifecycles,
                                      const std::string& id, bool deleting,
                                      const store::CommandContext& ctx) {
  Experiment out;
  auto done = log.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Experiment e, RequireExperiment(conn, id));
    if (deleting && e.id == "0")
      return core::InvalidArgument("Cannot delete the default experiment '0'.", "experiment_id");
    const char* from = deleting ? "active" : "deleted";
    const char* to = deleting ? "deleted" : "active";
    // MLflow looks the experiment up among active ones to delete it and
    // among deleted ones to restore it: a miss is "does not exist".
    if (e.lifecycle_stage != from) {
      return core::NotFound(fmt::format("No {} experiment with id={} exists (it is {})", from, id,
                                        e.lifecycle_stage));
    }
    store::CommandContext in = InProject(ctx, e.project);
    store::Event ev;
    core::TransitionRequest req{.transition = deleting ? "delete" : "restore"};
    RETURN_IF_ERROR(lifecycles.TransitionIn(tx, std::string(kExperimentKind), e.id, req, in, &ev));
    int64_t now = NowMs();
    RETURN_IF_ERROR(conn.Exec(
        "UPDATE experiments SET lifecycle_stage = ?, last_update_time = ? WHERE experiment_id = ?",
        {std::string(to), now, std::stoll(e.id)}));
    ASSIGN_OR_RETURN(Rows runs, conn.Query("SELECT run_uuid FROM runs WHERE experiment_id = ? AND "
                                           "lifecycle_stage = ? ORDER BY run_pk",
                                           {std::stoll(e.id), std::string(from)}));
    store::CommandContext caused = in;
    caused.causation_id = ev.id;
    for (const auto& r : runs) {
      RETURN_IF_ERROR(lifecycles.TransitionIn(tx, std::string(kRunKind), r.Text(0), req, caused));
    }
    RETURN_IF_ERROR(
        conn.Exec("UPDATE runs SET lifecycle_stage = ? WHERE experiment_id = ? AND "
                  "lifecycle_stage = ?",
                  {std::string(to), std::stoll(e.id), std::string(from)}));
    e.lifecycle_stage = to;
    e.last_update_time = now;
    out = std::move(e);
    return core::Ok();
  });
  if (!done)
    return done.error();
  return out;
}

}  // namespace

Result<Experiment> Tracking::DeleteExperiment(const std::string& id,
                                              const store::CommandContext& ctx) {
  return SetExperimentStage(log_, lifecycles_, id, true, ctx);
}

Result<Experiment> Tracking::RestoreExperiment(const std::string& id,
                                               const store::CommandContext& ctx) {
  return SetExperimentStage(log_, lifecycles_, id, false, ctx);
}

Result<Experiment> Tracking::RenameExperiment(const std::string& id, const std::string& new_name,
                                              const store::CommandContext& ctx) {
  if (new_name.empty()) {
    return core::InvalidArgument(
        "Missing value for required parameter 'new_name'. See the API docs for more information "
        "about request parameters.",
        "new_name");
  }
  Experiment out;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Experiment e, RequireExperiment(conn, id));
    if (e.lifecycle_stage != "active")
      return NotActive("experiment", id, e.lifecycle_stage);
    if (e.name == new_name) {
      out = std::move(e);
      return core::Ok();
    }
    ASSIGN_OR_RETURN(
        Rows same, conn.Query("SELECT experiment_id FROM experiments WHERE name = ?", {new_name}));
    if (!same.empty())
      return core::AlreadyExists(fmt::format("Experiment '{}' already exists.", new_name));
    int64_t now = NowMs();
    RETURN_IF_ERROR(
        conn.Exec("UPDATE experiments SET name = ?, last_update_time = ? WHERE experiment_id = ?",
                  {new_name, now, std::stoll(e.id)}));
    RETURN_IF_ERROR(AppendEvent(tx, kExperimentKind, e.id, "experiment.renamed", ctx, e.project,
                                {{"from", e.name}, {"to", new_name}}));
    e.name = new_name;
    e.last_update_time = now;
    out = std::move(e);
    return core::Ok();
  });
  if (!done)
    return done.error();
  return out;
}

Status Tracking::SetExperimentTag(const std::string& id, const std::string& key,
                                  const std::string& value, const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateKey(key, "Tag", "key"));
  RETURN_IF_ERROR(ValidateValueLength(value, kMaxExperimentTagValueLength, "Tag", key, "value"));
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Experiment e, RequireExperiment(conn, id));
    if (e.lifecycle_stage != "active")
      return NotActive("experiment", id, e.lifecycle_stage);
    RETURN_IF_ERROR(
        conn.Exec("INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) "
                  "ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                  {std::stoll(e.id), key, value}));
    RETURN_IF_ERROR(TouchExperiment(conn, std::stoll(e.id)));
    return AppendEvent(tx, kExperimentKind, e.id, "experiment.tag_set", ctx, e.project,
                       {{"key", key}, {"value", value}});
  });
  if (!done)
    return done.error();
  return core::Ok();
}

Status Tracking::DeleteExperimentTag(const std::string& id, const std::string& key,
                                     const store::CommandContext& ctx) {
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Experiment e, RequireExperiment(conn, id));
    if (e.lifecycle_stage != "active")
      return NotActive("experiment", id, e.lifecycle_stage);
    ASSIGN_OR_RETURN(int64_t n,
                     conn.Exec("DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?",
                               {std::stoll(e.id), key}));
    if (n == 0) {
      return core::NotFound(fmt::format("No tag with name: {} in experiment with id {}", key, id));
    }
    RETURN_IF_ERROR(TouchExperiment(conn, std::stoll(e.id)));
    RETURN_IF_ERROR(AppendEvent(tx, kExperimentKind, e.id, "experiment.tag_deleted", ctx, e.project,
                                {{"key", key}}));
    return core::Ok();
  });
  if (!done)
    return done.error();
  return core::Ok();
}

// ---------------------------------------------------------------------------
// Runs

Result<Run> Tracking::CreateRun(const CreateRunRequest& request, const store::CommandContext& ctx) {
  for (const auto& tag : request.tags)
    RETURN_IF_ERROR(ValidateTag(tag, "tags"));
  std::string name = request.run_name;
  std::vector<KeyValue> tags = request.tags;
  std::string user_id = request.user_id;
  for (const auto& [k, v] : tags) {
    if (k == kRunNameTag) {
      if (!name.empty() && name != v) {
        return core::InvalidArgument(
            fmt::format("Both 'run_name' argument and 'mlflow.runName' tag are specified, but "
                        "with different values (run_name='{}', mlflow.runName='{}').",
                        name, v),
            "run_name");
      }
      name = v;
    }
    if (k == "mlflow.user" && user_id.empty())
      user_id = v;
  }
  if (name.empty())
    name = GenerateRunName();
  if (user_id.empty())
    user_id = ctx.actor;
  tags.erase(std::remove_if(tags.begin(), tags.end(),
                            [](const KeyValue& t) { return t.first == kRunNameTag; }),
             tags.end());
  tags.emplace_back(std::string(kRunNameTag), name);
  std::sort(tags.begin(), tags.end());
  tags.erase(std::unique(tags.begin(), tags.end(),
                         [](const KeyValue& a, const KeyValue& b) { return a.first == b.first; }),
             tags.end());
  const std::string run_id = core::HexEncode(core::RandomBytes(16));
  const int64_t start_time = request.start_time.value_or(NowMs());

  Run out;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Experiment e, RequireExperiment(conn, request.experiment_id));
    if (e.lifecycle_stage != "active")
      return NotActive("experiment", e.id, e.lifecycle_stage);
    ASSIGN_OR_RETURN(Rows max, conn.Query("SELECT COALESCE(MAX(run_pk), 0) FROM runs"));
    int64_t pk = max[0].Int(0) + 1;
    std::string artifact_uri = fmt::format("{}/{}/artifacts", e.artifact_location, run_id);
    RETURN_IF_ERROR(conn.Exec(
        "INSERT INTO runs (run_pk, run_uuid, experiment_id, name, user_id, status, start_time, "
        "end_time, lifecycle_stage, artifact_uri, project) "
        "VALUES (?, ?, ?, ?, ?, 'RUNNING', ?, NULL, 'active', ?, ?)",
        {pk, run_id, std::stoll(e.id), name, user_id, start_time, artifact_uri, e.project}));
    RETURN_IF_ERROR(UpsertTags(conn, pk, tags));
    RETURN_IF_ERROR(internal::RefreshRunData(conn, pk));
    ASSIGN_OR_RETURN(auto entity, lifecycles_.CreateIn(tx, std::string(kRunKind), run_id,
                                                       {{"experiment_id", e.id},
                                                        {"run_name", name},
                                                        {"user_id", user_id},
                                                        {"status", "RUNNING"},
                                                        {"start_time", start_time},
                                                        {"tags", TagsJson(tags)}},
                                                       InProject(ctx, e.project)));
    (void)entity;
    out = {};
    out.info = {.run_id = run_id,
                .experiment_id = e.id,
                .run_name = name,
                .user_id = user_id,
                .status = "RUNNING",
                .start_time = start_time,
                .artifact_uri = artifact_uri,
                .lifecycle_stage = "active",
                .project = e.project};
    out.tags = tags;
    return core::Ok();
  });
  if (!done)
    return done.error();
  return out;
}

Result<Run> Tracking::GetRun(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(internal::RunRow row, RequireRun(*conn, run_id));
  std::vector<internal::RunRow> rows{std::move(row)};
  ASSIGN_OR_RETURN(std::vector<Run> runs, internal::LoadRunData(*conn, std::move(rows)));
  return std::move(runs[0]);
}

Result<RunInfo> Tracking::GetRunInfo(const std::string& run_id) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(internal::RunRow row, RequireRun(*conn, run_id));
  return std::move(row.info);
}

std::optional<Tracking::RunRef> Tracking::CachedRun(const std::string& run_id) {
  std::lock_guard lk(runs_mu_);
  if (auto it = runs_.find(run_id); it != runs_.end())
    return it->second;
  return std::nullopt;
}

Result<Tracking::RunRef> Tracking::ResolveRun(const std::string& run_id) {
  if (std::optional<RunRef> cached = CachedRun(run_id))
    return *std::move(cached);
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(internal::RunRow row, RequireRun(*conn, run_id));
  RunRef ref{.pk = row.pk, .project = std::move(row.info.project)};
  std::lock_guard lk(runs_mu_);
  if (runs_.size() >= 100000)
    runs_.clear();  // a bound, not an eviction policy: refilled on demand
  runs_.emplace(run_id, ref);
  return ref;
}

Result<std::string> Tracking::RunProject(const std::string& run_id) {
  ASSIGN_OR_RETURN(RunRef ref, ResolveRun(run_id));
  return std::move(ref.project);
}

std::optional<std::string> Tracking::CachedRunProject(const std::string& run_id) {
  std::optional<RunRef> ref = CachedRun(run_id);
  if (!ref)
    return std::nullopt;
  return std::move(ref->project);
}

Result<RunInfo> Tracking::UpdateRun(const std::string& run_id, const UpdateRunRequest& request,
                                    const store::CommandContext& ctx) {
  if (request.status &&
      std::find(kRunStatuses.begin(), kRunStatuses.end(), *request.status) == kRunStatuses.end()) {
    return core::InvalidArgument(
        fmt::format("Invalid value \"{}\" for parameter 'status': expected one of RUNNING, "
                    "SCHEDULED, FINISHED, FAILED, KILLED",
                    *request.status),
        "status");
  }
  if (request.run_name)
    RETURN_IF_ERROR(ValidateTag({std::string(kRunNameTag), *request.run_name}, "run_name"));
  RunInfo out;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(internal::RunRow run, RequireActiveRun(conn, run_id));
    Json changes = Json::object();
    RunInfo& info = run.info;
    if (request.status && *request.status != info.status) {
      changes["status"] = {{"from", info.status}, {"to", *request.status}};
      info.status = *request.status;
    }
    if (request.end_time && info.end_time != request.end_time) {
      changes["end_time"] = *request.end_time;
      info.end_time = request.end_time;
    }
    if (request.run_name && !request.run_name->empty() && *request.run_name != info.run_name) {
      changes["run_name"] = {{"from", info.run_name}, {"to", *request.run_name}};
      info.run_name = *request.run_name;
      RETURN_IF_ERROR(UpsertTags(conn, run.pk, {{std::string(kRunNameTag), info.run_name}}));
      RETURN_IF_ERROR(internal::RefreshRunData(conn, run.pk));
    }
    out = info;
    if (changes.empty())
      return core::Ok();
    RETURN_IF_ERROR(
        conn.Exec("UPDATE runs SET status = ?, end_time = ?, name = ? WHERE run_pk = ?",
                  {info.status, info.end_time ? Value(*info.end_time) : Value(std::monostate{}),
                   info.run_name, run.pk}));
    RETURN_IF_ERROR(AppendEvent(tx, kRunKind, run_id, "run.updated", ctx, info.project, changes));
    return core::Ok();
  });
  if (!done)
    return done.error();
  return out;
}

namespace {

Result<RunInfo> SetRunStage(store::EventLog& log, store::Lifecycles& lifecycles,
                            const std::string& run_id, bool deleting,
                            const store::CommandContext& ctx) {
  RunInfo out;
  auto done = log.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(internal::RunRow run, RequireRun(conn, run_id));
    const char* from = deleting ? "active" : "deleted";
    const char* to = deleting ? "deleted" : "active";
    if (run.info.lifecycle_stage != from) {
      return mlflow::WithCode(core::FailedPrecondition(fmt::format(
                                  "Cannot {} run {}: it is {}", deleting ? "delete" : "restore",
                                  run_id, run.info.lifecycle_stage)),
                              "INVALID_PARAMETER_VALUE");
    }
    core::TransitionRequest req{.transition = deleting ? "delete" : "restore"};
    RETURN_IF_ERROR(lifecycles.TransitionIn(tx, std::string(kRunKind), run_id, req,
                                            InProject(ctx, run.info.project)));
    RETURN_IF_ERROR(conn.Exec("UPDATE runs SET lifecycle_stage = ? WHERE run_pk = ?",
                              {std::string(to), run.pk}));
    run.info.lifecycle_stage = to;
    out = std::move(run.info);
    return core::Ok();
  });
  if (!done)
    return done.error();
  return out;
}

}  // namespace

Result<RunInfo> Tracking::DeleteRun(const std::string& run_id, const store::CommandContext& ctx) {
  return SetRunStage(log_, lifecycles_, run_id, true, ctx);
}

Result<RunInfo> Tracking::RestoreRun(const std::string& run_id, const store::CommandContext& ctx) {
  return SetRunStage(log_, lifecycles_, run_id, false, ctx);
}

Status Tracking::SetTag(const std::string& run_id, const std::string& key, const std::string& value,
                        const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateTag({key, value}, "key"));
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(internal::RunRow run, RequireActiveRun(conn, run_id));
    RETURN_IF_ERROR(UpsertTags(conn, run.pk, {{key, value}}));
    RETURN_IF_ERROR(internal::RefreshRunData(conn, run.pk));
    RETURN_IF_ERROR(AppendEvent(tx, kRunKind, run_id, "run.tag_set", ctx, run.info.project,
                                {{"key", key}, {"value", value}}));
    return core::Ok();
  });
  if (!done)
    return done.error();
  return core::Ok();
}

Status Tracking::DeleteTag(const std::string& run_id, const std::string& key,
                           const store::CommandContext& ctx) {
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(internal::RunRow run, RequireActiveRun(conn, run_id));
    ASSIGN_OR_RETURN(int64_t n,
                     conn.Exec("DELETE FROM run_tags WHERE run_pk = ? AND key = ?", {run.pk, key}));
    if (n == 0)
      return core::NotFound(fmt::format("No tag with name: {} in run with id {}", key, run_id));
    RETURN_IF_ERROR(internal::RefreshRunData(conn, run.pk));
    RETURN_IF_ERROR(AppendEvent(tx, kRunKind, run_id, "run.tag_deleted", ctx, run.info.project,
                                {{"key", key}}));
    return core::Ok();
  });
  if (!done)
    return done.error();
  return core::Ok();
}

Status Tracking::LogMetric(const std::string& run_id, const MetricPoint& point) {
  RETURN_IF_ERROR(ValidateMetric(point, "key"));
  ASSIGN_OR_RETURN(RunRef run, ResolveRun(run_id));
  return writer_->Write(run.pk, run_id, internal::EncodeChunks(run.pk, {point}));
}

bool Tracking::LogMetricAsync(const std::string& run_id, const MetricPoint& point,
                              std::function<void(Status)> done) {
  if (Status valid = ValidateMetric(point, "key"); !valid) {
    done(valid);
    return true;
  }
  return WriteCachedAsync(run_id, {point}, std::move(done));
}

bool Tracking::WriteCachedAsync(const std::string& run_id, const std::vector<MetricPoint>& points,
                                std::function<void(Status)> done) {
  std::optional<RunRef> run = CachedRun(run_id);
  if (!run)
    return false;
  writer_->WriteAsync(run->pk, run_id, internal::EncodeChunks(run->pk, points), std::move(done));
  return true;
}

Status Tracking::LogParam(const std::string& run_id, const std::string& key,
                          const std::string& value) {
  RETURN_IF_ERROR(ValidateParam({key, value}, "key"));
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(internal::RunRow run, RequireActiveRun(tx.conn(), run_id));
    RETURN_IF_ERROR(InsertParams(tx.conn(), run, {{key, value}}));
    return internal::RefreshRunData(tx.conn(), run.pk);
  });
  if (!done)
    return done.error();
  return core::Ok();
}

Status CheckBatchLimits(size_t metrics, size_t params, size_t tags) {
  auto too_many = [](size_t n, size_t limit, std::string_view what) {
    return core::InvalidArgument(
        fmt::format("A batch logging request can contain at most {} {}. Got {} {}. Please split "
                    "up {} across multiple requests and try again.",
                    limit, what, n, what, what),
        std::string(what));
  };
  if (metrics > kMaxMetricsPerBatch)
    return too_many(metrics, kMaxMetricsPerBatch, "metrics");
  if (params > kMaxParamsPerBatch)
    return too_many(params, kMaxParamsPerBatch, "params");
  if (tags > kMaxTagsPerBatch)
    return too_many(tags, kMaxTagsPerBatch, "tags");
  if (metrics + params + tags > kMaxEntitiesPerBatch) {
    return core::InvalidArgument(
        fmt::format("A batch logging request can contain at most {} total entities (metrics, "
                    "params and tags). Got {}.",
                    kMaxEntitiesPerBatch, metrics + params + tags),
        "metrics");
  }
  return core::Ok();
}

namespace {

// The batch's limits and metrics (what a batch of metrics alone needs).
Status ValidateBatchMetrics(const LogBatchRequest& request) {
  RETURN_IF_ERROR(
      CheckBatchLimits(request.metrics.size(), request.params.size(), request.tags.size()));
  for (size_t i = 0; i < request.metrics.size(); ++i) {
    // Per point: the field's name is formatted only for the error.
    if (!ValidateMetric(request.metrics[i], {}))
      return ValidateMetric(request.metrics[i], fmt::format("metrics[{}].key", i));
  }
  return core::Ok();
}

}  // namespace

bool Tracking::LogBatchAsync(const std::string& run_id, const LogBatchRequest& request,
                             std::function<void(Status)> done) {
  if (request.metrics.empty() || !request.params.empty() || !request.tags.empty())
    return false;
  if (Status valid = ValidateBatchMetrics(request); !valid) {
    done(valid);
    return true;
  }
  return WriteCachedAsync(run_id, request.metrics, std::move(done));
}

Status Tracking::LogBatch(const std::string& run_id, const LogBatchRequest& request,
                          const store::CommandContext& ctx) {
  RETURN_IF_ERROR(ValidateBatchMetrics(request));
  std::map<std::string, std::string> seen_params;
  for (size_t i = 0; i < request.params.size(); ++i) {
    const KeyValue& p = request.params[i];
    RETURN_IF_ERROR(ValidateParam(p, fmt::format("params[{}]", i)));
    auto [it, inserted] = seen_params.emplace(p.first, p.second);
    if (!inserted && it->second != p.second) {
      return core::InvalidArgument(
          fmt::format("Duplicate parameter keys have been submitted: '{}' with different values",
                      p.first),
          "params");
    }
  }
  for (size_t i = 0; i < request.tags.size(); ++i)
    RETURN_IF_ERROR(ValidateTag(request.tags[i], fmt::format("tags[{}]", i)));

  // Metrics alone are telemetry: the group-commit writer stores them (all
  // or nothing, as one request of its transaction).
  if (!request.metrics.empty() && request.params.empty() && request.tags.empty()) {
    ASSIGN_OR_RETURN(RunRef run, ResolveRun(run_id));
    return writer_->Write(run.pk, run_id, internal::EncodeChunks(run.pk, request.metrics));
  }
  std::vector<KeyValue> params(seen_params.begin(), seen_params.end());
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(internal::RunRow run, RequireActiveRun(conn, run_id));
    RETURN_IF_ERROR(InsertParams(conn, run, params));
    if (!request.metrics.empty()) {
      const std::vector<internal::PointChunk> chunks =
          internal::EncodeChunks(run.pk, request.metrics);
      std::vector<const internal::PointChunk*> rows;
      for (const internal::PointChunk& c : chunks)
        rows.push_back(&c);
      RETURN_IF_ERROR(internal::InsertChunks(conn, rows));
      RETURN_IF_ERROR(internal::UpdateLatest(conn, rows));
    }
    if (!request.tags.empty()) {
      RETURN_IF_ERROR(UpsertTags(conn, run.pk, request.tags));
      Json tags = Json::object();
      for (const auto& [k, v] : request.tags)
        tags[k] = v;
      RETURN_IF_ERROR(AppendEvent(tx, kRunKind, run_id, "run.tags_set", ctx, run.info.project,
                                  {{"tags", tags}}));
    }
    if (!params.empty() || !request.tags.empty())
      RETURN_IF_ERROR(internal::RefreshRunData(conn, run.pk));
    return core::Ok();
  });
  if (!done)
    return done.error();
  return core::Ok();
}

Status Tracking::LogInputs(const std::string& run_id, const std::vector<DatasetInput>& inputs,
                           const store::CommandContext& ctx) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Json& d = inputs[i].dataset;
    for (std::string_view f : {"name", "digest", "source_type", "source"}) {
      if (!d.is_object() || !d.contains(f) || !d[f].is_string() ||
          d[f].get_ref<const std::string&>().empty()) {
        return core::InvalidArgument(
            fmt::format("Missing value for required parameter 'datasets[{}].dataset.{}'", i, f),
            fmt::format("datasets[{}].dataset.{}", i, f));
      }
    }
    for (const auto& tag : inputs[i].tags)
      RETURN_IF_ERROR(ValidateTag(tag, fmt::format("datasets[{}].tags", i)));
  }
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(internal::RunRow run, RequireActiveRun(conn, run_id));
    ASSIGN_OR_RETURN(Rows max, conn.Query("SELECT COALESCE(MAX(position), 0) FROM run_inputs WHERE "
                                          "run_pk = ?",
                                          {run.pk}));
    int64_t position = max[0].Int(0);
    Json logged = Json::array();
    for (const DatasetInput& in : inputs) {
      std::string context;
      Json tags = Json::object();
      for (const auto& [k, v] : in.tags) {
        tags[k] = v;
        if (k == "mlflow.data.context")
          context = v;
      }
      std::string name = in.dataset["name"].get<std::string>();
      std::string digest = in.dataset["digest"].get<std::string>();
      ASSIGN_OR_RETURN(
          int64_t n,
          conn.Exec("INSERT INTO run_inputs (run_pk, name, digest, context, "
                    "dataset, tags, position) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    {run.pk, name, digest, context, in.dataset.dump(), tags.dump(), position + 1}));
      if (n > 0) {
        ++position;
        logged.push_back({{"name", name}, {"digest", digest}, {"context", context}});
      }
    }
    if (logged.empty())
      return core::Ok();
    RETURN_IF_ERROR(internal::RefreshRunData(conn, run.pk));
    RETURN_IF_ERROR(AppendEvent(tx, kRunKind, run_id, "run.inputs_logged", ctx, run.info.project,
                                {{"datasets", logged}}));
    return core::Ok();
  });
  if (!done)
    return done.error();
  return core::Ok();
}

Status Tracking::LogModel(const std::string& run_id, const Json& model_json,
                          const store::CommandContext& ctx) {
  if (!model_json.is_object())
    return core::InvalidArgument("model_json must be a JSON object", "model_json");
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(internal::RunRow run, RequireActiveRun(conn, run_id));
    ASSIGN_OR_RETURN(Rows rows,
                     conn.Query("SELECT value FROM run_tags WHERE run_pk = ? AND key = ?",
                                {run.pk, std::string(kLogModelHistoryTag)}));
    Json history = rows.empty() ? Json::array() : Json::parse(rows[0].Text(0), nullptr, false);
    if (!history.is_array())
      history = Json::array();
    history.push_back(model_json);
    std::string value = history.dump();
    if (value.size() > kMaxTagValueLength) {
      return core::InvalidArgument(fmt::format("The {} tag would exceed {} characters",
                                               kLogModelHistoryTag, kMaxTagValueLength),
                                   "model_json");
    }
    RETURN_IF_ERROR(UpsertTags(conn, run.pk, {{std::string(kLogModelHistoryTag), value}}));
    RETURN_IF_ERROR(internal::RefreshRunData(conn, run.pk));
    RETURN_IF_ERROR(AppendEvent(tx, kRunKind, run_id, "run.model_logged", ctx, run.info.project,
                                {{"model", model_json}}));
    return core::Ok();
  });
  if (!done)
    return done.error();
  return core::Ok();
}

Result<std::optional<int64_t>> Tracking::ForEachHistoryPoint(
    const std::string& run_id, const std::string& key, int64_t offset, int64_t max_results,
    const std::function<void(const MetricPoint&, size_t total)>& fn) {
  ASSIGN_OR_RETURN(RunRef run, ResolveRun(run_id));
  std::vector<internal::StoredPoint> points;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    RETURN_IF_ERROR(internal::ReadHistory(*conn, run.pk, key, points));
  }  // the connection goes back before the caller formats the points
  const size_t begin = std::min(points.size(), static_cast<size_t>(std::max<int64_t>(0, offset)));
  size_t end = points.size();
  if (max_results > 0)
    end = std::min(end, begin + static_cast<size_t>(max_results));
  MetricPoint point{.key = key};
  for (size_t i = begin; i < end; ++i) {
    point.value = points[i].value;
    point.timestamp = points[i].timestamp;
    point.step = points[i].step;
    fn(point, end - begin);
  }
  // A full page has a next page token, as with LIMIT/OFFSET before.
  if (max_results > 0 && end - begin == static_cast<size_t>(max_results))
    return std::optional<int64_t>(offset + max_results);
  return std::optional<int64_t>();
}

Result<HistoryPage> Tracking::GetMetricHistory(const std::string& run_id, const std::string& key,
                                               int64_t offset, int64_t max_results) {
  HistoryPage page;
  ASSIGN_OR_RETURN(page.next_offset, ForEachHistoryPoint(run_id, key, offset, max_results,
                                                         [&](const MetricPoint& p, size_t total) {
                                                           page.points.reserve(total);
                                                           page.points.push_back(p);
                                                         }));
  return page;
}

Result<std::map<std::string, double>> Tracking::LatestMetrics(const std::string& run_id) {
  ASSIGN_OR_RETURN(Run run, GetRun(run_id));
  std::map<std::string, double> out;
  for (const auto& m : run.metrics)
    out[m.key] = m.value;
  return out;
}

}  // namespace kervan::tracking
