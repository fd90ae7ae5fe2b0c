// The pipelines service: versioned specs, runs and their step runs, the
// orchestration loop (steps as jobs, built-in validate and register steps,
// the step cache) and datasets. Triggers and webhooks: triggers.cc.
#include "pipelines/pipelines.h"

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "core/crypto.h"
#include "core/filter.h"
#include "core/sha256.h"
#include "jobs/jobs.h"
#include "pipelines/internal.h"
#include "registry/registry.h"
#include "tracking/tracking.h"

namespace kervan::pipelines {
namespace {

namespace fs = std::filesystem;
using store::CommandContext;
using store::CommandTx;
using store::Row;

constexpr std::string_view kOrchestrate = "pipeline.orchestrate";
// Output files larger than this are kept on disk but not uploaded.
constexpr uintmax_t kMaxUploadBytes = 64ull << 20;

Result<core::StateMachine> RunMachine() {
  const std::string o(kOrchestrate);
  return core::StateMachine::Build(
      std::string(kRunKind),
      {std::string(kPending), std::string(kRunning), std::string(kSucceeded), std::string(kFailed),
       std::string(kCancelled)},
      std::string(kPending),
      {
          {.name = "start",
           .from = {"Pending"},
           .to = "Running",
           .event = "started",
           .permission = o},
          {.name = "succeed",
           .from = {"Running"},
           .to = "Succeeded",
           .event = "succeeded",
           .permission = o},
          {.name = "fail",
           .from = {"Pending", "Running"},
           .to = "Failed",
           .event = "failed",
           .permission = o},
          {.name = "cancel",
           .from = {"Pending", "Running"},
           .to = "Cancelled",
           .event = "cancelled",
           .permission = "pipeline.cancel",
           .reason_required = true},
      });
}

Result<core::StateMachine> StepMachine() {
  const std::string o(kOrchestrate);
  return core::StateMachine::Build(
      std::string(kStepKind),
      {std::string(kPending), std::string(kRunning), std::string(kSucceeded), std::string(kFailed),
       std::string(kCancelled)},
      std::string(kPending),
      {
          {.name = "start",
           .from = {"Pending"},
           .to = "Running",
           .event = "started",
           .permission = o},
          {.name = "succeed",
           .from = {"Running"},
           .to = "Succeeded",
           .event = "succeeded",
           .permission = o},
          {.name = "cache_hit",
           .from = {"Pending"},
           .to = "Succeeded",
           .event = "cache_hit",
           .permission = o},
          {.name = "fail", .from = {"Running"}, .to = "Failed", .event = "failed", .permission = o},
          {.name = "restart",
           .from = {"Running"},
           .to = "Pending",
           .event = "restarted",
           .permission = o},
          {.name = "cancel",
           .from = {"Pending", "Running"},
           .to = "Cancelled",
           .event = "cancelled",
           .permission = o,
           .reason_required = true},
      });
}

std::map<std::string, std::string> StringMap(const Json& j) {
  std::map<std::string, std::string> out;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items())
      out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  return out;
}

std::string StepEntityId(const std::string& run_id, const std::string& step) {
  return run_id + ":" + step;
}

Result<std::string> ReadFile(const fs::path& path, uintmax_t max_bytes) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec)
    return core::NotFound(fmt::format("{}: {}", path.string(), ec.message()));
  if (size > max_bytes)
    return core::InvalidArgument(
        fmt::format("{} is {} bytes, more than {}", path.string(), size, max_bytes));
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  if (!in && !in.eof())
    return core::Internal(fmt::format("cannot read {}", path.string()));
  return s.str();
}

// A metrics output: a flat JSON object of numbers.
Result<std::map<std::string, double>> ReadMetricsFile(const fs::path& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1 << 20));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return core::InvalidArgument(
        fmt::format("{}: a metrics output must be a JSON object of numbers", path.string()));
  std::map<std::string, double> out;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_number())
      return core::InvalidArgument(
          fmt::format("{}: metric \"{}\" is not a number", path.string(), k));
    out[k] = v.get<double>();
  }
  return out;
}

// Pipelines and datasets share their columns: name, project,
// latest_version, created_us, updated_us.
template <typename T>
T NamedFromRow(const Row& r) {
  return T{.name = r.Text(0),
           .project = r.Text(1),
           .latest_version = r.Int(2),
           .created_us = r.Int(3),
           .updated_us = r.Int(4)};
}

// Copies a file or a directory tree (outputs reused from the cache).
Status CopyPath(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  fs::remove_all(to, ec);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec)
    return core::Internal(
        fmt::format("cannot copy {} to {}: {}", from.string(), to.string(), ec.message()));
  return core::Ok();
}

}  // namespace

// ---------------------------------------------------------------- JSON forms

Json PipelineVersion::ToJson() const {
  return {{"name", name},
          {"project", project},
          {"version", version},
          {"digest", digest},
          {"spec", spec.ToJson()},
          {"yaml", spec_yaml},
          {"created_by", created_by},
          {"created_at", core::FormatRfc3339(created_us)}};
}

Json Pipeline::ToJson() const {
  return {{"name", name},
          {"project", project},
          {"latest_version", latest_version},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

Json ResolvedInput::ToJson() const {
  return {{"name", name}, {"source", source}, {"path", path}, {"digest", digest}};
}

Json ProducedOutput::ToJson() const {
  Json j = {{"name", name}, {"kind", kind}, {"path", path}, {"digest", digest}};
  if (!artifact.empty())
    j["artifact"] = artifact;
  return j;
}

namespace {
std::vector<ResolvedInput> InputsFromJson(const Json& j) {
  std::vector<ResolvedInput> out;
  if (!j.is_array())
    return out;
  for (const auto& i : j)
    out.push_back({.name = i.value("name", ""),
                   .source = i.value("source", ""),
                   .path = i.value("path", ""),
                   .digest = i.value("digest", "")});
  return out;
}
std::vector<ProducedOutput> OutputsFromJson(const Json& j) {
  std::vector<ProducedOutput> out;
  if (!j.is_array())
    return out;
  for (const auto& o : j)
    out.push_back({.name = o.value("name", ""),
                   .kind = o.value("kind", ""),
                   .path = o.value("path", ""),
                   .digest = o.value("digest", ""),
                   .artifact = o.value("artifact", "")});
  return out;
}
template <typename T>
Json ListJson(const std::vector<T>& items) {
  Json a = Json::array();
  for (const auto& i : items)
    a.push_back(i.ToJson());
  return a;
}
std::string TimeOrEmpty(int64_t us) {
  return us == 0 ? "" : core::FormatRfc3339(us);
}
}  // namespace

Json StepRun::ToJson() const {
  Json j = {{"step", step},
            {"type", type},
            {"state", state},
            {"depends_on", depends_on},
            {"inputs", ListJson(inputs)},
            {"code", code},
            {"outputs", ListJson(outputs)},
            {"result", result},
            {"cache_key", cache_key},
            {"cached", !cached_from.empty()},
            {"failure", failure},
            {"started_at", TimeOrEmpty(started_us)},
            {"finished_at", TimeOrEmpty(finished_us)}};
  if (!job_id.empty())
    j["job_id"] = job_id;
  if (!tracking_run_id.empty())
    j["tracking_run_id"] = tracking_run_id;
  if (!cached_from.empty())
    j["cached_from"] = cached_from;
  return j;
}

Json PipelineRun::ToJson() const {
  Json j = {{"id", id},
            {"pipeline", pipeline},
            {"version", version},
            {"project", project},
            {"state", state},
            {"params", params},
            {"no_cache", no_cache},
            {"no_cache_steps", no_cache_steps},
            {"trigger", trigger},
            {"tracking_run_id", tracking_run_id},
            {"dir", dir},
            {"failure", failure},
            {"created_by", created_by},
            {"created_at", core::FormatRfc3339(created_us)},
            {"started_at", TimeOrEmpty(started_us)},
            {"finished_at", TimeOrEmpty(finished_us)}};
  if (!steps.empty())
    j["steps"] = ListJson(steps);
  return j;
}

Json Dataset::ToJson() const {
  return {{"name", name},
          {"project", project},
          {"latest_version", latest_version},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

Json DatasetVersion::ToJson() const {
  return {{"name", name},
          {"version", version},
          {"uri", uri},
          {"profile", profile.ToJson()},
          {"source", source},
          {"created_by", created_by},
          {"created_at", core::FormatRfc3339(created_us)}};
}

// ---------------------------------------------------------------- state

struct Pipelines::State {
  std::mutex mu;  // guards the loop thread's lifetime and the cache below
  std::condition_variable cv;
  bool stop = false;
  bool wake = false;
  std::thread thread;
  std::unique_ptr<store::EventLog::Subscription> subscription;
  // Parsed specs by "<name>@<version>" (versions never change).
  std::map<std::string, std::shared_ptr<const PipelineVersion>> versions;
  std::mutex cycle_mu;  // one RunCycle (or trigger firing) at a time
};

Pipelines::Pipelines(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
                     Services services, Options options)
    : db_(db),
      log_(log),
      lifecycles_(lifecycles),
      services_(services),
      options_(std::move(options)),
      state_(std::make_unique<State>()) {}

Pipelines::~Pipelines() {
  Stop();
}

Result<std::unique_ptr<Pipelines>> Pipelines::Open(store::Database& db, store::EventLog& log,
                                                   store::Lifecycles& lifecycles, Services services,
                                                   Options options) {
  if (!services.jobs || !services.tracking)
    return core::InvalidArgument("pipelines need the jobs and tracking services");
  if (options.root.empty())
    return core::InvalidArgument("pipelines.root must be set", "pipelines.root");
  std::error_code ec;
  fs::create_directories(fs::path(options.root) / "runs", ec);
  if (ec)
    return core::Internal(fmt::format("cannot create {}: {}", options.root, ec.message()));
  ASSIGN_OR_RETURN(auto run_machine, RunMachine());
  ASSIGN_OR_RETURN(auto step_machine, StepMachine());
  RETURN_IF_ERROR(lifecycles.Register(std::move(run_machine)));
  RETURN_IF_ERROR(lifecycles.Register(std::move(step_machine)));
  return std::unique_ptr<Pipelines>(
      new Pipelines(db, log, lifecycles, services, std::move(options)));
}

// ---------------------------------------------------------------- specs

namespace {
constexpr std::string_view kVersionColumns =
    "name, version, digest, spec_yaml, spec_json, created_by, created_us";
}

Result<SubmitResult> Pipelines::Submit(std::string_view yaml, const CommandContext& ctx) {
  ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(yaml));
  RETURN_IF_ERROR(auth::ValidateProjectName(spec.project));
  Json canonical = spec.ToJson();
  std::string digest = "sha256:" + core::Sha256Hex(core::CanonicalJson(canonical));
  int64_t now = core::NowMicros();
  SubmitResult result;
  CommandContext c = ctx;
  c.project = spec.project;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    auto& conn = tx.conn();
    ASSIGN_OR_RETURN(auto rows, conn.Query("SELECT project, latest_version FROM pipelines "
                                           "WHERE name = ?",
                                           {spec.name}));
    int64_t version = 1;
    if (!rows.empty()) {
      if (rows[0].Text(0) != spec.project) {
        return core::InvalidArgument(
            fmt::format("field \"project\": pipeline \"{}\" belongs to project \"{}\"; a new "
                        "version cannot move it to \"{}\"",
                        spec.name, rows[0].Text(0), spec.project),
            "project");
      }
      int64_t latest = rows[0].Int(1);
      ASSIGN_OR_RETURN(auto prev, conn.Query("SELECT digest FROM pipeline_versions WHERE name = ? "
                                             "AND version = ?",
                                             {spec.name, latest}));
      if (!prev.empty() && prev[0].Text(0) == digest) {
        result.created = false;
        result.version.version = latest;
        return core::Ok();
      }
      version = latest + 1;
      RETURN_IF_ERROR(
          conn.Exec("UPDATE pipelines SET latest_version = ?, updated_us = ? WHERE name = ?",
                    {version, now, spec.name}));
    } else {
      RETURN_IF_ERROR(
          conn.Exec("INSERT INTO pipelines (name, project, latest_version, "
                    "created_us, updated_us) VALUES (?, ?, 1, ?, ?)",
                    {spec.name, spec.project, now, now}));
    }
    RETURN_IF_ERROR(conn.Exec(
        fmt::format("INSERT INTO pipeline_versions ({}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    kVersionColumns),
        {spec.name, version, digest, std::string(yaml), canonical.dump(), ctx.actor, now}));
    RETURN_IF_ERROR(StatusOf(tx.Append({.type = "pipeline.version_created",
                                        .subject_kind = "pipeline",
                                        .subject_id = spec.name,
                                        .actor = ctx.actor,
                                        .correlation_id = ctx.correlation_id,
                                        .causation_id = ctx.causation_id,
                                        .project = spec.project,
                                        .data = {{"version", version},
                                                 {"digest", digest},
                                                 {"steps", spec.steps.size()},
                                                 {"triggers", spec.triggers.size()}}})));
    result.created = true;
    result.version.version = version;
    return core::Ok();
  });
  if (!done)
    return done.error();
  ASSIGN_OR_RETURN(result.version, GetVersion(spec.name, result.version.version));
  return result;
}

Result<Pipeline> Pipelines::GetPipeline(const std::string& name) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT name, project, latest_version, created_us, "
                                          "updated_us FROM pipelines WHERE name = ?",
                                          {name}));
  if (rows.empty())
    return core::NotFound(fmt::format("pipeline \"{}\" does not exist", name));
  return NamedFromRow<Pipeline>(rows[0]);
}

Result<std::vector<Pipeline>> Pipelines::ListPipelines(
    const std::optional<std::set<std::string>>& projects) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT name, project, latest_version, created_us, "
                                          "updated_us FROM pipelines ORDER BY name"));
  std::vector<Pipeline> out;
  for (const auto& r : rows) {
    if (projects && !projects->count(r.Text(1)))
      continue;
    out.push_back(NamedFromRow<Pipeline>(r));
  }
  return out;
}

Result<PipelineVersion> Pipelines::GetVersion(const std::string& name, int64_t version) {
  ASSIGN_OR_RETURN(Pipeline p, GetPipeline(name));
  if (version <= 0)
    version = p.latest_version;
  std::string key = fmt::format("{}@{}", name, version);
  {
    std::lock_guard lock(state_->mu);
    if (auto it = state_->versions.find(key); it != state_->versions.end())
      return *it->second;
  }
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM pipeline_versions WHERE "
                                                      "name = ? AND version = ?",
                                                      kVersionColumns),
                                          {name, version}));
  if (rows.empty())
    return core::NotFound(fmt::format("pipeline \"{}\" has no version {}", name, version));
  PipelineVersion v{.name = rows[0].Text(0),
                    .project = p.project,
                    .version = rows[0].Int(1),
                    .digest = rows[0].Text(2),
                    .spec_yaml = rows[0].Text(3),
                    .created_us = rows[0].Int(6),
                    .created_by = rows[0].Text(5)};
  ASSIGN_OR_RETURN(v.spec, ParsePipelineSpec(v.spec_yaml));
  std::lock_guard lock(state_->mu);
  state_->versions[key] = std::make_shared<const PipelineVersion>(v);
  return v;
}

// ---------------------------------------------------------------- runs

namespace {
constexpr std::string_view kRunColumns =
    "id, pipeline, version, project, state, params, no_cache, no_cache_steps, trigger_info, "
    "tracking_run_id, dir, failure, created_by, created_us, started_us, finished_us, updated_us, "
    "datasets";

PipelineRun RunFromRow(const Row& r) {
  PipelineRun run;
  run.id = r.Text(0);
  run.pipeline = r.Text(1);
  run.version = r.Int(2);
  run.project = r.Text(3);
  run.state = r.Text(4);
  run.params = StringMap(ParseOr(r.Text(5), Json::object()));
  run.no_cache = r.Int(6) != 0;
  for (const auto& s : ParseOr(r.Text(7), Json::array()))
    if (s.is_string())
      run.no_cache_steps.insert(s.get<std::string>());
  run.trigger = ParseOr(r.Text(8), Json::object());
  run.tracking_run_id = r.Text(9);
  run.dir = r.Text(10);
  run.failure = r.Text(11);
  run.created_by = r.Text(12);
  run.created_us = r.Int(13);
  run.started_us = r.Int(14);
  run.finished_us = r.Int(15);
  run.updated_us = r.Int(16);
  return run;
}

constexpr std::string_view kStepColumns =
    "run_id, step, type, state, job_id, tracking_run_id, cache_key, cached_from, inputs, "
    "outputs, result, failure, started_us, finished_us, updated_us, code";

StepRun StepFromRow(const Row& r) {
  StepRun s;
  s.run_id = r.Text(0);
  s.step = r.Text(1);
  s.type = r.Text(2);
  s.state = r.Text(3);
  s.job_id = r.Text(4);
  s.tracking_run_id = r.Text(5);
  s.cache_key = r.Text(6);
  s.cached_from = r.Text(7);
  s.inputs = InputsFromJson(ParseOr(r.Text(8), Json::array()));
  s.outputs = OutputsFromJson(ParseOr(r.Text(9), Json::array()));
  s.result = ParseOr(r.Text(10), nullptr);
  s.failure = r.Text(11);
  s.started_us = r.Int(12);
  s.finished_us = r.Int(13);
  s.updated_us = r.Int(14);
  s.code = ParseOr(r.Text(15), Json::object());
  return s;
}
}  // namespace

Result<PipelineRun> Pipelines::StartRun(const StartRunRequest& request, const CommandContext& ctx) {
  ASSIGN_OR_RETURN(PipelineVersion version, GetVersion(request.pipeline, request.version));
  const PipelineSpec& spec = version.spec;
  ASSIGN_OR_RETURN(auto params, ResolveParams(spec, request.params));
  for (const auto& s : request.no_cache_steps) {
    if (!spec.FindStep(s))
      return core::InvalidArgument(
          fmt::format("field \"no_cache_steps\": pipeline \"{}\" has no step \"{}\"", spec.name, s),
          "no_cache_steps");
  }
  // Pin every dataset input to a version now, so a new version registered
  // while the run goes on does not change what it reads.
  Json datasets = Json::object();
  for (const auto& step : spec.steps) {
    for (const auto& in : step.inputs) {
      if (in.source != InputRef::Source::kDataset)
        continue;
      auto dv = GetDatasetVersion(in.dataset, in.dataset_version);
      if (!dv) {
        return core::InvalidArgument(
            fmt::format("field \"steps.{}.inputs.{}\": {}", step.name, in.name, dv.error().message),
            fmt::format("steps.{}.inputs.{}", step.name, in.name));
      }
      datasets[in.text] = dv->version;
    }
  }

  std::string id = core::NewUuidV7();
  std::string dir = (fs::path(options_.root) / "runs" / id).string();
  int64_t now = core::NowMicros();
  CommandContext c = ctx;
  c.project = spec.project;
  Json no_cache_steps = request.no_cache_steps;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    store::Event created;
    RETURN_IF_ERROR(StatusOf(lifecycles_.CreateIn(tx, std::string(kRunKind), id,
                                                  {{"pipeline", spec.name},
                                                   {"version", version.version},
                                                   {"params", params},
                                                   {"trigger", request.trigger}},
                                                  c, &created)));
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO pipeline_runs (id, pipeline, version, project, state, params, no_cache, "
        "no_cache_steps, trigger_info, datasets, dir, created_by, created_us, updated_us) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {id, spec.name, version.version, spec.project, std::string(kPending), Json(params).dump(),
         int64_t{request.no_cache ? 1 : 0}, no_cache_steps.dump(), request.trigger.dump(),
         datasets.dump(), dir, ctx.actor, now, now}));
    CommandContext sc = c;
    sc.causation_id = created.id;
    int position = 0;
    for (const auto& step : spec.steps) {
      RETURN_IF_ERROR(StatusOf(lifecycles_.CreateIn(
          tx, std::string(kStepKind), StepEntityId(id, step.name),
          {{"pipeline", spec.name}, {"run_id", id}, {"step", step.name}, {"type", step.type}},
          sc)));
      RETURN_IF_ERROR(tx.conn().Exec(
          "INSERT INTO pipeline_step_runs (run_id, step, position, type, state, updated_us) "
          "VALUES (?, ?, ?, ?, ?, ?)",
          {id, step.name, int64_t{position++}, step.type, std::string(kPending), now}));
    }
    return core::Ok();
  });
  if (!done)
    return done.error();
  {
    std::lock_guard lock(state_->mu);
    state_->wake = true;
  }
  state_->cv.notify_all();
  return GetRun(id);
}

Result<PipelineRun> Pipelines::GetRun(const std::string& id) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(
      auto rows,
      conn->Query(fmt::format("SELECT {} FROM pipeline_runs WHERE id = ?", kRunColumns), {id}));
  if (rows.empty())
    return core::NotFound(fmt::format("pipeline run \"{}\" does not exist", id));
  PipelineRun run = RunFromRow(rows[0]);
  ASSIGN_OR_RETURN(auto steps,
                   conn->Query(fmt::format("SELECT {} FROM pipeline_step_runs WHERE run_id = ? "
                                           "ORDER BY position",
                                           kStepColumns),
                               {id}));
  auto version = GetVersion(run.pipeline, run.version);
  for (const auto& r : steps) {
    StepRun s = StepFromRow(r);
    if (version) {
      if (const StepSpec* spec = version->spec.FindStep(s.step))
        s.depends_on = spec->depends_on;
    }
    run.steps.push_back(std::move(s));
  }
  return run;
}

Result<std::vector<PipelineRun>> Pipelines::ListRuns(const ListRunsRequest& request) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  std::string sql = fmt::format("SELECT {} FROM pipeline_runs WHERE 1 = 1", kRunColumns);
  std::vector<store::Value> args;
  if (!request.pipeline.empty()) {
    sql += " AND pipeline = ?";
    args.emplace_back(request.pipeline);
  }
  if (!request.state.empty()) {
    sql += " AND state = ?";
    args.emplace_back(request.state);
  }
  sql += " ORDER BY created_us DESC, id DESC";
  ASSIGN_OR_RETURN(auto rows, conn->Query(sql, args));
  std::vector<PipelineRun> out;
  for (const auto& r : rows) {
    PipelineRun run = RunFromRow(r);
    if (request.projects && !request.projects->count(run.project))
      continue;
    out.push_back(std::move(run));
    if (static_cast<int>(out.size()) >= request.limit)
      break;
  }
  return out;
}

namespace {
// Moves a step run to a new state with its projection columns, in one command.
struct StepUpdate {
  std::string transition;
  std::string reason;
  Json data = Json::object();
  std::optional<std::string> job_id, tracking_run_id, cache_key, cached_from, failure;
  std::optional<Json> inputs, outputs, result, code;
  bool started = false, finished = false;
};
}  // namespace

static Status ApplyStepUpdate(store::EventLog& log, store::Lifecycles& lifecycles,
                              const PipelineRun& run, const std::string& step, const StepUpdate& u,
                              const std::string& actor_project) {
  CommandContext c = System(actor_project, run.id);
  int64_t now = core::NowMicros();
  auto done = log.Execute([&](CommandTx& tx) -> Status {
    core::TransitionRequest t{
        .transition = u.transition, .reason = u.reason, .request_data = &u.data};
    ASSIGN_OR_RETURN(auto entity, lifecycles.TransitionIn(tx, std::string(kStepKind),
                                                          StepEntityId(run.id, step), t, c));
    std::string sql = "UPDATE pipeline_step_runs SET state = ?, updated_us = ?";
    std::vector<store::Value> args = {entity.state, now};
    auto set = [&](const char* column, const std::optional<std::string>& v) {
      if (v) {
        sql += fmt::format(", {} = ?", column);
        args.emplace_back(*v);
      }
    };
    set("job_id", u.job_id);
    set("tracking_run_id", u.tracking_run_id);
    set("cache_key", u.cache_key);
    set("cached_from", u.cached_from);
    set("failure", u.failure);
    if (u.inputs)
      set("inputs", u.inputs->dump());
    if (u.code)
      set("code", u.code->dump());
    if (u.outputs)
      set("outputs", u.outputs->dump());
    if (u.result)
      set("result", u.result->dump());
    if (u.started) {
      sql += ", started_us = ?";
      args.emplace_back(now);
    }
    if (u.finished) {
      sql += ", finished_us = ?";
      args.emplace_back(now);
    }
    sql += " WHERE run_id = ? AND step = ?";
    args.emplace_back(run.id);
    args.emplace_back(step);
    return StatusOf(tx.conn().Exec(sql, args));
  });
  return StatusOf(done);
}

static Status ApplyRunTransition(store::EventLog& log, store::Lifecycles& lifecycles,
                                 const std::string& run_id, const std::string& transition,
                                 const std::string& reason, const Json& data,
                                 const CommandContext& ctx, const std::string& failure = "") {
  int64_t now = core::NowMicros();
  auto done = log.Execute([&](CommandTx& tx) -> Status {
    core::TransitionRequest t{.transition = transition, .reason = reason, .request_data = &data};
    ASSIGN_OR_RETURN(auto entity,
                     lifecycles.TransitionIn(tx, std::string(kRunKind), run_id, t, ctx));
    // Running: when it started; any other state here is final.
    const char* stamp = entity.state == kRunning ? "started_us" : "finished_us";
    return StatusOf(tx.conn().Exec(
        fmt::format("UPDATE pipeline_runs SET state = ?, updated_us = ?, failure = ?, {} = ? "
                    "WHERE id = ?",
                    stamp),
        {entity.state, now, failure, now, run_id}));
  });
  return StatusOf(done);
}

Result<PipelineRun> Pipelines::CancelRun(const std::string& id, const std::string& reason,
                                         const CommandContext& ctx) {
  std::lock_guard cycle(state_->cycle_mu);
  ASSIGN_OR_RETURN(PipelineRun run, GetRun(id));
  CommandContext c = ctx;
  c.project = run.project;
  RETURN_IF_ERROR(ApplyRunTransition(log_, lifecycles_, id, "cancel", reason, Json::object(), c));
  for (const auto& s : run.steps) {
    if (s.state != kPending && s.state != kRunning)
      continue;
    if (!s.job_id.empty() && s.state == kRunning) {
      (void)services_.jobs->Cancel(s.job_id, "pipeline run cancelled: " + reason, ctx);
    }
    StepUpdate u{.transition = "cancel", .reason = "the pipeline run was cancelled: " + reason};
    u.finished = true;
    (void)ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project);
  }
  return GetRun(id);
}

Result<std::pair<std::string, int64_t>> Pipelines::ReadStepLog(const std::string& run_id,
                                                               const std::string& step,
                                                               int64_t offset, int64_t max_bytes) {
  ASSIGN_OR_RETURN(PipelineRun run, GetRun(run_id));
  for (const auto& s : run.steps) {
    if (s.step != step)
      continue;
    if (s.job_id.empty() && (s.state == kPending || s.state == kRunning)) {
      // No job yet (or a built-in step at work): nothing to read so far, and
      // the offset stays where it is for when the job's log begins.
      return std::pair<std::string, int64_t>{"", offset};
    }
    if (s.job_id.empty()) {
      std::string text = s.cached_from.empty()
                             ? fmt::format("step \"{}\" ({}) has no job log{}\n", step, s.type,
                                           s.result.is_null() ? "" : ": result " + s.result.dump())
                             : fmt::format("step \"{}\" reused the outputs of {} (cache hit)\n",
                                           step, s.cached_from);
      if (offset >= static_cast<int64_t>(text.size()))
        return std::pair<std::string, int64_t>{"", offset};
      return std::pair<std::string, int64_t>{text.substr(offset), text.size()};
    }
    return services_.jobs->ReadLog(s.job_id, 0, offset, max_bytes);
  }
  return core::NotFound(fmt::format("pipeline run \"{}\" has no step \"{}\"", run_id, step));
}

// ---------------------------------------------------------------- datasets

Result<DatasetVersion> Pipelines::RegisterDataset(const std::string& name,
                                                  const std::string& project,
                                                  const std::string& uri_in, Json source,
                                                  const CommandContext& ctx) {
  auto name_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  };
  if (name.empty() || name.size() > 100 || !std::all_of(name.begin(), name.end(), name_char) ||
      name[0] == '.' || name[0] == '_' || name[0] == '-') {
    return core::InvalidArgument(
        fmt::format("field \"name\": dataset names are 1-100 characters [a-z0-9._-] starting "
                    "with a letter or digit, got \"{}\"",
                    name),
        "name");
  }
  RETURN_IF_ERROR(auth::ValidateProjectName(project));
  std::string uri = uri_in;
  if (uri.rfind("file://", 0) == 0)
    uri = uri.substr(7);
  if (uri.empty() || uri[0] != '/') {
    return core::InvalidArgument(
        fmt::format("field \"uri\": a dataset is an absolute local path or file:// URI, got \"{}\"",
                    uri_in),
        "uri");
  }
  auto profile = ProfilePath(uri);
  if (!profile)
    return core::InvalidArgument(fmt::format("field \"uri\": {}", profile.error().message), "uri");
  int64_t now = core::NowMicros();
  DatasetVersion out;
  CommandContext c = ctx;
  c.project = project;
  bool created = false;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    auto& conn = tx.conn();
    ASSIGN_OR_RETURN(auto rows, conn.Query("SELECT project, latest_version FROM datasets WHERE "
                                           "name = ?",
                                           {name}));
    int64_t version = 1;
    created = false;
    if (!rows.empty()) {
      if (rows[0].Text(0) != project) {
        return core::InvalidArgument(
            fmt::format("field \"project\": dataset \"{}\" belongs to project \"{}\"", name,
                        rows[0].Text(0)),
            "project");
      }
      int64_t latest = rows[0].Int(1);
      ASSIGN_OR_RETURN(auto prev, conn.Query("SELECT digest FROM dataset_versions WHERE "
                                             "name = ? AND version = ?",
                                             {name, latest}));
      // Same content: no new version (wherever the file now lives).
      if (!prev.empty() && prev[0].Text(0) == profile->digest) {
        out.version = latest;
        return core::Ok();
      }
      version = latest + 1;
      RETURN_IF_ERROR(
          conn.Exec("UPDATE datasets SET latest_version = ?, updated_us = ? WHERE "
                    "name = ?",
                    {version, now, name}));
    } else {
      RETURN_IF_ERROR(
          conn.Exec("INSERT INTO datasets (name, project, latest_version, created_us, "
                    "updated_us) VALUES (?, ?, 1, ?, ?)",
                    {name, project, now, now}));
    }
    RETURN_IF_ERROR(conn.Exec(
        "INSERT INTO dataset_versions (name, version, uri, digest, profile, source, created_by, "
        "created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {name, version, uri, profile->digest, profile->ToJson().dump(), source.dump(), ctx.actor,
         now}));
    Json data = {{"version", version},
                 {"uri", uri},
                 {"digest", profile->digest},
                 {"bytes", profile->bytes},
                 {"source", source}};
    if (profile->rows)
      data["rows"] = *profile->rows;
    RETURN_IF_ERROR(StatusOf(tx.Append({.type = "dataset.version_created",
                                        .subject_kind = "dataset",
                                        .subject_id = name,
                                        .actor = ctx.actor,
                                        .correlation_id = ctx.correlation_id,
                                        .causation_id = ctx.causation_id,
                                        .project = project,
                                        .data = data})));
    out.version = version;
    created = true;
    return core::Ok();
  });
  if (!done)
    return done.error();
  (void)created;
  return GetDatasetVersion(name, out.version);
}

Result<Dataset> Pipelines::GetDataset(const std::string& name) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT name, project, latest_version, created_us, "
                                          "updated_us FROM datasets WHERE name = ?",
                                          {name}));
  if (rows.empty())
    return core::NotFound(fmt::format("dataset \"{}\" does not exist", name));
  return NamedFromRow<Dataset>(rows[0]);
}

Result<std::vector<Dataset>> Pipelines::ListDatasets(
    const std::optional<std::set<std::string>>& projects) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT name, project, latest_version, created_us, "
                                          "updated_us FROM datasets ORDER BY name"));
  std::vector<Dataset> out;
  for (const auto& r : rows) {
    if (projects && !projects->count(r.Text(1)))
      continue;
    out.push_back(NamedFromRow<Dataset>(r));
  }
  return out;
}

namespace {
DatasetVersion DatasetVersionFromRow(const Row& r) {
  DatasetVersion v;
  v.name = r.Text(0);
  v.version = r.Int(1);
  v.uri = r.Text(2);
  Json p = ParseOr(r.Text(4), Json::object());
  v.profile.digest = r.Text(3);
  v.profile.bytes = p.value("bytes", int64_t{0});
  if (p.contains("rows") && p["rows"].is_number_integer())
    v.profile.rows = p["rows"].get<int64_t>();
  if (p.contains("schema") && p["schema"].is_array()) {
    for (const auto& c : p["schema"])
      v.profile.columns.push_back({.name = c.value("name", ""),
                                   .type = c.value("type", ""),
                                   .missing = c.value("missing", int64_t{0})});
  }
  v.source = ParseOr(r.Text(5), Json::object());
  v.created_by = r.Text(6);
  v.created_us = r.Int(7);
  return v;
}
constexpr std::string_view kDatasetVersionColumns =
    "name, version, uri, digest, profile, source, created_by, created_us";
}  // namespace

Result<std::vector<DatasetVersion>> Pipelines::ListDatasetVersions(const std::string& name) {
  ASSIGN_OR_RETURN(Dataset d, GetDataset(name));
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM dataset_versions WHERE "
                                                      "name = ? ORDER BY version DESC",
                                                      kDatasetVersionColumns),
                                          {d.name}));
  std::vector<DatasetVersion> out;
  for (const auto& r : rows)
    out.push_back(DatasetVersionFromRow(r));
  return out;
}

Result<DatasetVersion> Pipelines::GetDatasetVersion(const std::string& name, int64_t version) {
  ASSIGN_OR_RETURN(Dataset d, GetDataset(name));
  if (version <= 0)
    version = d.latest_version;
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM dataset_versions WHERE "
                                                      "name = ? AND version = ?",
                                                      kDatasetVersionColumns),
                                          {name, version}));
  if (rows.empty())
    return core::NotFound(fmt::format("dataset \"{}\" has no version {}", name, version));
  return DatasetVersionFromRow(rows[0]);
}

// ---------------------------------------------------------------- the loop

namespace {

// What one cycle knows about a run while advancing it.
struct RunView {
  PipelineRun run;
  std::shared_ptr<const PipelineVersion> version;
  Json datasets;  // pinned dataset versions by reference text
  std::map<std::string, StepRun*> steps;
};

// The declared inputs of an XGBoost JSON model (learner.feature_names), as
// the version's signature {"inputs": [{"name", "type": "double"}...]}: what
// serving checks the model against and validates requests by. null when
// the file is not such a model or records no names.
Json ModelSignature(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return nullptr;
  Json model = Json::parse(in, nullptr, false);
  if (model.is_discarded() || !model.is_object() || !model.contains("learner") ||
      !model["learner"].is_object())
    return nullptr;
  const Json& names = model["learner"].value("feature_names", Json::array());
  if (!names.is_array() || names.empty())
    return nullptr;
  Json inputs = Json::array();
  for (const Json& n : names) {
    if (!n.is_string())
      return nullptr;
    inputs.push_back({{"name", n}, {"type", "double"}});
  }
  return Json{{"inputs", inputs}};
}

std::string ArtifactPathOf(const std::string& artifact_uri) {
  constexpr std::string_view kScheme = "mlflow-artifacts:";
  if (artifact_uri.rfind(kScheme, 0) != 0)
    return "";
  std::string rest = artifact_uri.substr(kScheme.size());
  while (!rest.empty() && rest[0] == '/')
    rest.erase(0, 1);
  return rest;
}

}  // namespace

Status Pipelines::RunCycle() {
  std::lock_guard cycle(state_->cycle_mu);
  int64_t now = core::NowMicros();
  if (auto s = FireCron(now); !s)
    core::LogWarn("pipelines: cron triggers: " + s.error().message);
  store::Rows rows;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(rows, conn->Query("SELECT id FROM pipeline_runs WHERE state IN "
                                       "('Pending', 'Running') ORDER BY created_us"));
  }
  for (const auto& r : rows) {
    if (auto s = AdvanceRun(r.Text(0)); !s)
      core::LogWarn(fmt::format("pipelines: run {}: {}", r.Text(0), s.error().message));
  }
  return core::Ok();
}

Status Pipelines::AdvanceRun(const std::string& run_id) {
  ASSIGN_OR_RETURN(PipelineRun run, GetRun(run_id));
  auto loaded = GetVersion(run.pipeline, run.version);
  if (!loaded) {
    // A spec this server cannot read any more (say, after an upgrade that
    // tightened the parser) fails the run rather than leaving it Running.
    if (loaded.error().code != core::ErrorCode::kInvalidArgument &&
        loaded.error().code != core::ErrorCode::kNotFound)
      return loaded.error();
    return ApplyRunTransition(log_, lifecycles_, run.id, "fail", "", Json::object(),
                              System(run.project, run.id),
                              "cannot read the pipeline version: " + loaded.error().message);
  }
  const PipelineVersion& version = *loaded;
  const PipelineSpec& spec = version.spec;
  Json datasets;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows,
                     conn->Query("SELECT datasets FROM pipeline_runs WHERE id = ?", {run_id}));
    datasets = rows.empty() ? Json::object() : ParseOr(rows[0].Text(0), Json::object());
  }
  tracking::Tracking& tracking = *services_.tracking;
  const CommandContext sys = System(run.project, run.id);

  if (run.state == kPending) {
    // The run's directory and its parent tracking run, then Running.
    std::error_code ec;
    fs::create_directories(fs::path(run.dir) / "steps", ec);
    if (ec) {
      return ApplyRunTransition(log_, lifecycles_, run.id, "fail", "", Json::object(), sys,
                                fmt::format("cannot create {}: {}", run.dir, ec.message()));
    }
    std::string experiment_name = spec.experiment.empty() ? spec.name : spec.experiment;
    auto exp = tracking.GetExperimentByName(experiment_name);
    if (!exp) {
      exp = tracking.CreateExperiment({.name = experiment_name, .project = run.project}, sys);
      if (!exp && exp.error().code == core::ErrorCode::kAlreadyExists)
        exp = tracking.GetExperimentByName(experiment_name);
    }
    if (!exp) {
      return ApplyRunTransition(
          log_, lifecycles_, run.id, "fail", "", Json::object(), sys,
          fmt::format("tracking experiment \"{}\": {}", experiment_name, exp.error().message));
    }
    auto parent =
        tracking.CreateRun({.experiment_id = exp->id,
                            .user_id = run.created_by,
                            .run_name = fmt::format("{}-v{}", spec.name, run.version),
                            .tags = {{"kervan.pipeline", spec.name},
                                     {"kervan.pipeline_run_id", run.id},
                                     {"kervan.pipeline_version", std::to_string(run.version)}}},
                           sys);
    if (!parent) {
      return ApplyRunTransition(log_, lifecycles_, run.id, "fail", "", Json::object(), sys,
                                "tracking run: " + parent.error().message);
    }
    for (const auto& [k, v] : run.params)
      (void)tracking.LogParam(parent->info.run_id, k, v);
    {
      ASSIGN_OR_RETURN(auto conn, db_.Acquire());
      RETURN_IF_ERROR(
          StatusOf(conn->Exec("UPDATE pipeline_runs SET tracking_run_id = ? WHERE id = ?",
                              {parent->info.run_id, run.id})));
    }
    RETURN_IF_ERROR(ApplyRunTransition(log_, lifecycles_, run.id, "start", "",
                                       Json{{"tracking_run_id", parent->info.run_id}}, sys));
    ASSIGN_OR_RETURN(run, GetRun(run_id));
  }

  std::map<std::string, StepRun*> steps;
  for (auto& s : run.steps)
    steps[s.step] = &s;
  std::string experiment_id;
  if (auto parent = tracking.GetRunInfo(run.tracking_run_id))
    experiment_id = parent->experiment_id;

  auto fail_step = [&](const StepRun& s, const std::string& why) -> Status {
    StepUpdate u{.transition = "fail", .data = {{"failure", why}}, .failure = why};
    u.finished = true;
    RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
    if (!s.tracking_run_id.empty() && s.job_id.empty()) {
      (void)tracking.UpdateRun(s.tracking_run_id,
                               {.status = "FAILED", .end_time = core::NowMicros() / 1000}, sys);
    }
    return core::Ok();
  };

  // Where the step's declared outputs live in this run.
  auto output_path = [&](const StepSpec& step, const OutputDecl& out) {
    return (fs::path(run.dir) / "steps" / step.name / out.path).lexically_normal();
  };

  // Outputs of a finished step: check, digest, upload, log metrics, register datasets.
  auto collect_outputs = [&](const StepSpec& step, const StepRun& s, Json& result) -> Result<Json> {
    Json outputs = Json::array();
    std::map<std::string, double> metrics;
    std::string artifact_base;
    if (services_.artifacts && !s.tracking_run_id.empty()) {
      if (auto info = tracking.GetRunInfo(s.tracking_run_id))
        artifact_base = ArtifactPathOf(info->artifact_uri);
    }
    for (const auto& out : step.outputs) {
      fs::path path = output_path(step, out);
      std::error_code ec;
      // A symlink could point anywhere the server may read; an output is
      // what the step wrote inside its directory.
      if (fs::is_symlink(path, ec)) {
        return core::FailedPrecondition(
            fmt::format("declared output \"{}\" ({}) is a symbolic link; outputs must be files or "
                        "directories the step wrote",
                        out.name, out.path));
      }
      bool is_dir = fs::is_directory(path, ec);
      if (!fs::exists(path, ec) || (out.kind == OutputKind::kDirectory) != is_dir) {
        return core::FailedPrecondition(
            fmt::format("declared output \"{}\" ({} {}) was not produced", out.name,
                        OutputKindName(out.kind), out.path));
      }
      ASSIGN_OR_RETURN(std::string digest, DigestPath(path));
      ProducedOutput po{.name = out.name,
                        .kind = std::string(OutputKindName(out.kind)),
                        .path = path.string(),
                        .digest = digest};
      if (!artifact_base.empty() && !is_dir && fs::file_size(path, ec) <= kMaxUploadBytes) {
        auto bytes = ReadFile(path, kMaxUploadBytes);
        std::string target =
            fmt::format("{}/outputs/{}/{}", artifact_base, out.name, path.filename().string());
        if (bytes && services_.artifacts->Put(target, *bytes))
          po.artifact = target;
      }
      if (out.kind == OutputKind::kMetrics) {
        ASSIGN_OR_RETURN(auto m, ReadMetricsFile(path));
        metrics.insert(m.begin(), m.end());
      }
      if (out.kind == OutputKind::kDataset) {
        CommandContext dc = sys;
        ASSIGN_OR_RETURN(auto dv, RegisterDataset(out.dataset, run.project, path.string(),
                                                  Json{{"kind", "pipeline"},
                                                       {"pipeline", run.pipeline},
                                                       {"run_id", run.id},
                                                       {"step", step.name}},
                                                  dc));
        po.digest = dv.profile.digest;
      }
      outputs.push_back(po.ToJson());
    }
    if (!metrics.empty()) {
      tracking::LogBatchRequest batch;
      int64_t ts = core::NowMicros() / 1000;
      for (const auto& [k, v] : metrics)
        batch.metrics.push_back({.key = k, .value = v, .timestamp = ts, .step = 0});
      if (!s.tracking_run_id.empty())
        RETURN_IF_ERROR(tracking.LogBatch(s.tracking_run_id, batch, sys));
      result["metrics"] = metrics;
    }
    return outputs;
  };

  // A step that failed in an earlier cycle: nothing new starts this one.
  bool any_failed = std::any_of(run.steps.begin(), run.steps.end(),
                                [](const StepRun& s) { return s.state == kFailed; });
  bool any_active = false, all_succeeded = true;
  for (const auto& step : spec.steps) {
    auto it = steps.find(step.name);
    if (it == steps.end())
      continue;
    StepRun& s = *it->second;

    // A running command step: follow its job.
    if (s.state == kRunning && !s.job_id.empty()) {
      auto job = services_.jobs->GetJob(s.job_id);
      if (!job) {
        RETURN_IF_ERROR(fail_step(s, "its job is gone: " + job.error().message));
        s.state = kFailed;
      } else if (job->state == jobs::kSucceeded) {
        Json result = Json::object();
        auto outputs = collect_outputs(step, s, result);
        if (!outputs) {
          RETURN_IF_ERROR(fail_step(s, outputs.error().message));
          s.state = kFailed;
        } else {
          StepUpdate u{.transition = "succeed",
                       .data = {{"outputs", *outputs}},
                       .outputs = *outputs,
                       .result = result};
          u.finished = true;
          RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
          s.state = kSucceeded;
          s.outputs = OutputsFromJson(*outputs);
        }
      } else if (job->state == jobs::kFailed || job->state == jobs::kCancelled) {
        // A Failed job with retries left goes back to Queued by itself; one
        // that reached a final state has finished_us set.
        bool final_failure = job->state == jobs::kCancelled || job->finished_us > 0;
        if (final_failure) {
          RETURN_IF_ERROR(
              fail_step(s, fmt::format("job {} {}: {}", s.job_id,
                                       job->state == jobs::kFailed ? "failed" : "was cancelled",
                                       job->failure.empty() ? "(no detail)" : job->failure)));
          s.state = kFailed;
        }
      }
    } else if (s.state == kRunning) {
      // A built-in step that was running when the server stopped: again.
      StepUpdate u{.transition = "restart",
                   .reason = "the server restarted while this built-in step ran"};
      RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
      s.state = kPending;
    }

    if (s.state == kPending) {
      bool blocked = false, waiting = false;
      std::string upstream;
      for (const auto& dep : step.depends_on) {
        const StepRun* d = steps.count(dep) ? steps[dep] : nullptr;
        if (!d)
          continue;
        if (d->state == kFailed || d->state == kCancelled) {
          blocked = true;
          upstream = dep;
        } else if (d->state != kSucceeded) {
          waiting = true;
        }
      }
      if (blocked || (any_failed && !waiting)) {
        // Nothing new starts once a step has failed.
        StepUpdate u{.transition = "cancel",
                     .reason = blocked
                                   ? fmt::format("upstream step \"{}\" did not succeed", upstream)
                                   : "another step of the run failed"};
        u.finished = true;
        RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
        s.state = kCancelled;
      } else if (!waiting && !any_failed) {
        if (auto st = LaunchStep(run, spec, step, s, datasets, experiment_id); !st) {
          RETURN_IF_ERROR(fail_step(s, st.error().message));
          s.state = kFailed;
        }
      }
    }

    if (s.state == kFailed)
      any_failed = true;
    if (s.state == kPending || s.state == kRunning)
      any_active = true;
    if (s.state != kSucceeded)
      all_succeeded = false;
  }

  if (any_failed) {
    // Stop the branches still running and everything still waiting: a
    // failed run does not wait for them.
    for (auto& s : run.steps) {
      if (s.state == kRunning || s.state == kPending) {
        if (!s.job_id.empty())
          (void)services_.jobs->Cancel(s.job_id, "another step of the pipeline run failed", sys);
        StepUpdate u{.transition = "cancel", .reason = "another step of the run failed"};
        u.finished = true;
        RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
        s.state = kCancelled;
      }
    }
    any_active = false;
  }
  if (any_active)
    return core::Ok();
  std::string failed_steps;
  for (const auto& s : run.steps) {
    if (s.state == kFailed)
      failed_steps += (failed_steps.empty() ? "" : ", ") + s.step;
  }
  bool ok = all_succeeded;
  std::string failure = ok ? "" : fmt::format("step(s) failed: {}", failed_steps);
  RETURN_IF_ERROR(ApplyRunTransition(log_, lifecycles_, run.id, ok ? "succeed" : "fail", "",
                                     ok ? Json::object() : Json{{"failed_steps", failed_steps}},
                                     sys, failure));
  if (!run.tracking_run_id.empty()) {
    (void)tracking.UpdateRun(
        run.tracking_run_id,
        {.status = ok ? "FINISHED" : "FAILED", .end_time = core::NowMicros() / 1000}, sys);
  }
  return core::Ok();
}

Status Pipelines::LaunchStep(const PipelineRun& run, const PipelineSpec& spec, const StepSpec& step,
                             StepRun& s, const Json& datasets, const std::string& experiment_id) {
  tracking::Tracking& tracking = *services_.tracking;
  const CommandContext sys = System(run.project, run.id);
  const fs::path workdir = spec.workdir;

  // Inputs: where each comes from and its content digest.
  std::vector<ResolvedInput> inputs;
  std::map<std::string, std::string> producer_runs;  // input -> producer's tracking run
  std::map<std::string, std::string> producer_artifacts;
  for (const auto& in : step.inputs) {
    ResolvedInput r{.name = in.name, .source = in.text};
    switch (in.source) {
      case InputRef::Source::kStepOutput: {
        ASSIGN_OR_RETURN(auto conn, db_.Acquire());
        ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT outputs, tracking_run_id FROM "
                                                "pipeline_step_runs WHERE run_id = ? AND step = ?",
                                                {run.id, in.step}));
        if (rows.empty())
          return core::Internal(fmt::format("input \"{}\": no step \"{}\"", in.name, in.step));
        for (const auto& o : OutputsFromJson(ParseOr(rows[0].Text(0), Json::array()))) {
          if (o.name == in.output) {
            r.path = o.path;
            producer_artifacts[in.name] = o.artifact;
          }
        }
        producer_runs[in.name] = rows[0].Text(1);
        if (r.path.empty())
          return core::FailedPrecondition(fmt::format(
              "input \"{}\": step \"{}\" recorded no output \"{}\"", in.name, in.step, in.output));
        break;
      }
      case InputRef::Source::kDataset: {
        int64_t version = datasets.value(in.text, int64_t{0});
        ASSIGN_OR_RETURN(auto dv, GetDatasetVersion(in.dataset, version));
        r.path = dv.uri;
        r.source = fmt::format("datasets.{}@{}", in.dataset, dv.version);
        break;
      }
      case InputRef::Source::kPath: {
        fs::path p = in.path;
        if (p.is_relative()) {
          if (workdir.empty())
            return core::FailedPrecondition(
                fmt::format("input \"{}\": the relative path \"{}\" needs the pipeline's workdir",
                            in.name, in.path));
          p = workdir / p;
        }
        r.path = p.lexically_normal().string();
        break;
      }
    }
    auto digest = DigestPath(r.path);
    if (!digest)
      return core::FailedPrecondition(
          fmt::format("input \"{}\" ({}): {}", in.name, r.path, digest.error().message));
    r.digest = *digest;
    inputs.push_back(std::move(r));
  }
  Json inputs_json = ListJson(inputs);

  // The cache key: everything that decides what the step produces.
  Json code = Json::object();
  for (const auto& c : step.code) {
    fs::path p = fs::path(c).is_absolute() || workdir.empty() ? fs::path(c) : workdir / c;
    auto digest = DigestPath(p);
    if (!digest)
      return core::FailedPrecondition(
          fmt::format("code path \"{}\" ({}): {}", c, p.string(), digest.error().message));
    code[c] = *digest;
  }
  Json used_params = Json::object();
  for (const auto& name : ParamsUsedBy(step)) {
    if (auto it = run.params.find(name); it != run.params.end())
      used_params[name] = it->second;
  }
  Json input_digests = Json::object();
  for (const auto& i : inputs)
    input_digests[i.name] = i.digest;
  Json outputs_decl = Json::array();
  for (const auto& o : step.outputs)
    outputs_decl.push_back({{"name", o.name},
                            {"kind", OutputKindName(o.kind)},
                            {"path", o.path},
                            {"dataset", o.dataset}});
  Json expectations = Json::array();
  for (const auto& e : step.expectations)
    expectations.push_back(e.ToJson());
  Json key_material = {
      {"type", step.type},   {"command", step.command}, {"env", step.env},
      {"image", step.image}, {"params", used_params},   {"inputs", input_digests},
      {"code", code},        {"outputs", outputs_decl}, {"expectations", expectations},
      {"model", step.model}};
  std::string cache_key = "sha256:" + core::Sha256Hex(core::CanonicalJson(key_material));

  const fs::path step_dir = fs::path(run.dir) / "steps" / step.name;
  std::map<std::string, std::string> output_paths;
  for (const auto& o : step.outputs)
    output_paths[o.name] = (step_dir / o.path).lexically_normal().string();

  // The cache: an earlier succeeded step run with the same key whose outputs
  // are still there, unchanged.
  bool use_cache = step.cache && !run.no_cache && !run.no_cache_steps.count(step.name);
  if (use_cache) {
    store::Rows rows;
    {
      ASSIGN_OR_RETURN(auto conn, db_.Acquire());
      ASSIGN_OR_RETURN(rows, conn->Query("SELECT run_id, step, outputs, tracking_run_id, result "
                                         "FROM pipeline_step_runs WHERE cache_key = ? AND "
                                         "state = 'Succeeded' AND run_id <> ? "
                                         "ORDER BY finished_us DESC LIMIT 5",
                                         {cache_key, run.id}));
    }
    for (const auto& row : rows) {
      auto previous = OutputsFromJson(ParseOr(row.Text(2), Json::array()));
      if (previous.size() != step.outputs.size())
        continue;
      bool intact = true;
      for (const auto& o : previous) {
        auto d = DigestPath(o.path);
        if (!d || *d != o.digest || !output_paths.count(o.name))
          intact = false;
      }
      if (!intact)
        continue;
      Json outputs = Json::array();
      for (const auto& o : previous) {
        RETURN_IF_ERROR(CopyPath(o.path, output_paths[o.name]));
        ProducedOutput copy = o;
        copy.path = output_paths[o.name];
        outputs.push_back(copy.ToJson());
      }
      std::string from = StepEntityId(row.Text(0), row.Text(1));
      StepUpdate u{.transition = "cache_hit",
                   .data = {{"cached_from", from}, {"cache_key", cache_key}},
                   .tracking_run_id = row.Text(3),
                   .cache_key = cache_key,
                   .cached_from = from,
                   .inputs = inputs_json,
                   .outputs = outputs,
                   .result = ParseOr(row.Text(4), nullptr),
                   .code = code};
      u.started = u.finished = true;
      RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
      s.state = kSucceeded;
      s.outputs = OutputsFromJson(outputs);
      return core::Ok();
    }
  }

  // Runs it: a tracking run of its own, nested under the pipeline run's.
  std::error_code ec;
  fs::create_directories(step_dir, ec);
  for (const auto& [name, path] : output_paths)
    fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec)
    return core::Internal(fmt::format("cannot create {}: {}", step_dir.string(), ec.message()));
  std::string tracking_run_id;
  if (!experiment_id.empty()) {
    auto tr = tracking.CreateRun({.experiment_id = experiment_id,
                                  .user_id = run.created_by,
                                  .run_name = step.name,
                                  .tags = {{"mlflow.parentRunId", run.tracking_run_id},
                                           {"kervan.pipeline", spec.name},
                                           {"kervan.pipeline_run_id", run.id},
                                           {"kervan.step", step.name},
                                           {"kervan.cache_key", cache_key}}},
                                 sys);
    if (!tr)
      return core::Internal("tracking run: " + tr.error().message);
    tracking_run_id = tr->info.run_id;
    for (const auto& [k, v] : used_params.items())
      (void)tracking.LogParam(tracking_run_id, k, v.get<std::string>());
  }
  s.tracking_run_id = tracking_run_id;

  auto finish_builtin = [&](bool ok, const Json& result, const std::string& failure) -> Status {
    StepUpdate u{
        .transition = ok ? "succeed" : "fail", .data = {{"result", result}}, .result = result};
    if (!ok)
      u.failure = failure;
    u.outputs = Json::array();
    u.finished = true;
    RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
    if (!tracking_run_id.empty()) {
      (void)tracking.UpdateRun(
          tracking_run_id,
          {.status = ok ? "FINISHED" : "FAILED", .end_time = core::NowMicros() / 1000}, sys);
    }
    s.state = ok ? std::string(kSucceeded) : std::string(kFailed);
    return core::Ok();
  };

  if (step.type == kCommandStep) {
    RenderContext rc{.params = run.params, .run_id = run.id, .step_dir = step_dir.string()};
    for (const auto& i : inputs)
      rc.inputs[i.name] = i.path;
    rc.outputs = output_paths;
    ASSIGN_OR_RETURN(auto argv, RenderCommand(step, rc));
    ASSIGN_OR_RETURN(auto env, RenderEnv(step, rc));
    env["KERVAN_PIPELINE"] = spec.name;
    env["KERVAN_PIPELINE_RUN_ID"] = run.id;
    env["KERVAN_STEP"] = step.name;
    env["KERVAN_STEP_DIR"] = step_dir.string();
    jobs::JobSpec job{.name = fmt::format("{}.{}", spec.name, step.name),
                      .project = run.project,
                      .priority_class = step.priority_class,
                      .command = argv,
                      .working_dir = workdir.empty() ? step_dir.string() : workdir.string(),
                      .env = env,
                      .image = step.image,
                      .resources = step.resources,
                      .backoff_limit = step.retries,
                      .active_deadline_s = step.timeout_s,
                      .tracking_run_id = tracking_run_id};
    // The job is the run's requester's: fair share counts it as theirs.
    CommandContext jc{.actor = run.created_by, .correlation_id = run.id, .project = run.project};
    auto submitted = services_.jobs->Submit(job, jc);
    if (!submitted)
      return core::FailedPrecondition("submitting its job: " + submitted.error().message);
    StepUpdate u{.transition = "start",
                 .data = {{"job_id", submitted->id}, {"cache_key", cache_key}, {"code", code}},
                 .job_id = submitted->id,
                 .tracking_run_id = tracking_run_id,
                 .cache_key = cache_key,
                 .inputs = inputs_json,
                 .code = code};
    u.started = true;
    RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, u, run.project));
    s.state = kRunning;
    s.job_id = submitted->id;
    return core::Ok();
  }

  // Built-in steps run here, at once.
  StepUpdate started{.transition = "start",
                     .data = {{"cache_key", cache_key}, {"code", code}},
                     .tracking_run_id = tracking_run_id,
                     .cache_key = cache_key,
                     .inputs = inputs_json,
                     .code = code};
  started.started = true;
  RETURN_IF_ERROR(ApplyStepUpdate(log_, lifecycles_, run, s.step, started, run.project));
  s.state = kRunning;

  if (step.type == kValidateStep) {
    if (inputs.size() != 1)
      return finish_builtin(false, nullptr, "a validate step reads exactly one input");
    auto report = ValidateCsv(inputs[0].path, step.expectations);
    if (!report)
      return finish_builtin(false, nullptr, report.error().message);
    Json result = report->ToJson();
    {
      std::ofstream f(step_dir / "validation.json");
      f << result.dump(2) << "\n";
    }
    int64_t failed = 0, failed_errors = 0;
    std::string names;
    for (const auto& r : report->results) {
      if (r.passed)
        continue;
      ++failed;
      if (r.expectation.severity == "error") {
        ++failed_errors;
        names += (names.empty() ? "" : "; ") + r.expectation.expect +
                 (r.expectation.column.empty() ? "" : " " + r.expectation.column) + ": " + r.detail;
      }
    }
    if (!tracking_run_id.empty()) {
      tracking::LogBatchRequest b;
      int64_t ts = core::NowMicros() / 1000;
      b.metrics = {
          {.key = "expectations_failed", .value = double(failed), .timestamp = ts},
          {.key = "expectations_total", .value = double(report->results.size()), .timestamp = ts},
          {.key = "rows", .value = double(report->rows), .timestamp = ts}};
      (void)tracking.LogBatch(tracking_run_id, b, sys);
    }
    return finish_builtin(
        report->passed, result,
        fmt::format("{} expectation(s) with severity error failed: {}", failed_errors, names));
  }

  // register: a model version from the `model` input, through the gate.
  if (!services_.registry)
    return finish_builtin(false, nullptr, "this server has no model registry");
  const ResolvedInput* model = nullptr;
  const ResolvedInput* metrics_in = nullptr;
  const ResolvedInput* reference = nullptr;
  for (const auto& i : inputs) {
    if (i.name == "model")
      model = &i;
    if (i.name == "metrics")
      metrics_in = &i;
    if (i.name == "reference")
      reference = &i;
  }
  if (!model)
    return finish_builtin(false, nullptr, "a register step needs an input named \"model\"");
  std::map<std::string, double> metrics;
  if (metrics_in) {
    auto m = ReadMetricsFile(metrics_in->path);
    if (!m)
      return finish_builtin(false, nullptr, "metrics input: " + m.error().message);
    metrics = *m;
  }
  registry::Registry& reg = *services_.registry;
  if (auto existing = reg.GetModel(step.model); !existing) {
    if (existing.error().code != core::ErrorCode::kNotFound)
      return finish_builtin(false, nullptr, existing.error().message);
    auto created =
        reg.CreateModel({.name = step.model,
                         .project = run.project,
                         .description = fmt::format("registered by pipeline {}", spec.name)},
                        sys);
    if (!created && created.error().code != core::ErrorCode::kAlreadyExists)
      return finish_builtin(false, nullptr, "creating the model: " + created.error().message);
  } else if (existing->project != run.project) {
    return finish_builtin(false, nullptr,
                          fmt::format("model \"{}\" belongs to project \"{}\", not \"{}\"",
                                      step.model, existing->project, run.project));
  }
  std::string artifact = producer_artifacts["model"];
  registry::RegisterVersionRequest rv{
      .source_run_id = producer_runs["model"],
      .artifact_uri = artifact.empty() ? "file://" + model->path : "mlflow-artifacts:/" + artifact,
      .metrics = metrics,
      .tags = {{"kervan.pipeline", spec.name},
               {"kervan.pipeline_run_id", run.id},
               {"kervan.model_digest", model->digest}},
      .description = fmt::format("pipeline {} v{}, run {}", spec.name, run.version, run.id)};
  rv.signature = ModelSignature(model->path);
  // The training data the version learned from: monitoring profiles it as
  // the reference its production traffic is compared with (the tag is
  // monitoring's kReferenceTag).
  if (reference) {
    std::string ref_artifact = producer_artifacts["reference"];
    rv.tags["kervan.reference_uri"] =
        ref_artifact.empty() ? "file://" + reference->path : "mlflow-artifacts:/" + ref_artifact;
    rv.tags["kervan.reference_digest"] = reference->digest;
  }
  auto version = reg.RegisterVersion(step.model, rv, sys);
  if (!version)
    return finish_builtin(false, nullptr, "registering the version: " + version.error().message);
  if (!tracking_run_id.empty()) {
    (void)tracking.SetTag(tracking_run_id, "kervan.model_version",
                          fmt::format("{}/{}", step.model, version->version), sys);
  }
  Json result = {{"model", step.model},
                 {"version", version->version},
                 {"state", version->state},
                 {"metrics", metrics},
                 {"artifact_uri", version->artifact_uri}};
  if (!version->validation.is_null())
    result["validation"] = version->validation;
  return finish_builtin(true, result, "");
}

// ---------------------------------------------------------------- thread

void Pipelines::Start() {
  std::lock_guard lock(state_->mu);
  if (state_->thread.joinable())
    return;
  // Triggers follow events from now on: a first start does not replay history.
  if (auto conn = db_.Acquire()) {
    (void)(*conn)->Exec(
        "INSERT INTO event_subscriptions (name, cursor_seq, updated_us) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        {std::string(kTriggerSubscription), log_.head_seq(), core::NowMicros()});
  }
  auto sub = log_.SubscribeDurable(std::string(kTriggerSubscription),
                                   [this](const store::Event& e) { return OnEvent(e); });
  if (sub)
    state_->subscription = std::move(*sub);
  else
    core::LogError("pipelines: cannot follow the event log: " + sub.error().message);
  state_->stop = false;
  state_->thread = std::thread([this] {
    std::unique_lock lock(state_->mu);
    while (!state_->stop) {
      lock.unlock();
      if (auto s = RunCycle(); !s)
        core::LogWarn("pipelines: cycle: " + s.error().message);
      lock.lock();
      state_->cv.wait_for(lock, options_.cycle_interval,
                          [&] { return state_->stop || state_->wake; });
      state_->wake = false;
    }
  });
}

void Pipelines::Stop() {
  std::unique_ptr<store::EventLog::Subscription> sub;
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
    sub = std::move(state_->subscription);
  }
  sub.reset();
  state_->cv.notify_all();
  if (state_->thread.joinable())
    state_->thread.join();
}

}  // namespace kervan::pipelines
