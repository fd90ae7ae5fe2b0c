// The MLflow tracking REST API (/api/2.0/mlflow/... and /ajax-api/2.0/mlflow/...)
// and the native /api/v1/experiments and /api/v1/runs routes.
//
// Every handler re-checks the route's permission in the project of the
// experiment it touches (the access guard only knows the caller holds it
// somewhere); searches only see projects the caller can read.
#include <cmath>
#include <iterator>

#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "tracking/internal.h"
#include "tracking/tracking.h"

namespace kervan::tracking {
namespace {

using http::Request;
using mlflow::Args;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

// "run_id", falling back to the older "run_uuid" that clients still send.
Result<std::string> RunIdArg(const Json& args) {
  std::string id = mlflow::OptionalString(args, "run_id");
  if (id.empty())
    id = mlflow::OptionalString(args, "run_uuid");
  if (id.empty())
    return mlflow::RequiredString(args, "run_id");
  return id;
}

Result<std::vector<KeyValue>> KeyValueList(const Json& args, std::string_view field,
                                           bool value_required = true) {
  std::vector<KeyValue> out;
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return out;
  if (!it->is_array()) {
    return core::InvalidArgument(
        fmt::format("Invalid value for parameter '{}': expected a list of {{key, value}}", field),
        std::string(field));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& item = (*it)[i];
    std::string name = fmt::format("{}[{}]", field, i);
    if (!item.is_object())
      return core::InvalidArgument(fmt::format("{}: expected {{key, value}}", name), name);
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(item, "key"));
    auto v = item.find("value");
    if (v == item.end() || v->is_null()) {
      if (value_required) {
        return core::InvalidArgument(
            fmt::format("Missing value for required parameter '{}.value'", name), name + ".value");
      }
      out.emplace_back(key, "");
      continue;
    }
    if (v->is_string())
      out.emplace_back(key, v->get<std::string>());
    else if (v->is_number() || v->is_boolean())
      out.emplace_back(key, v->dump());
    else
      return core::InvalidArgument(fmt::format("{}.value: expected a string", name), name);
  }
  return out;
}

Result<MetricPoint> MetricFrom(const Json& args, std::string_view prefix) {
  MetricPoint m;
  ASSIGN_OR_RETURN(m.key, mlflow::RequiredString(args, "key"));
  ASSIGN_OR_RETURN(auto value, mlflow::OptionalDouble(args, "value"));
  if (!value) {
    return core::InvalidArgument(
        fmt::format("Missing value for required parameter '{}value'", prefix),
        std::string(prefix) + "value");
  }
  m.value = *value;
  ASSIGN_OR_RETURN(auto timestamp, mlflow::OptionalInt64(args, "timestamp"));
  if (!timestamp) {
    return core::InvalidArgument(
        fmt::format("Missing value for required parameter '{}timestamp'", prefix),
        std::string(prefix) + "timestamp");
  }
  m.timestamp = *timestamp;
  ASSIGN_OR_RETURN(auto step, mlflow::OptionalInt64(args, "step"));
  m.step = step.value_or(0);
  return m;
}

Result<int64_t> MaxResults(const Json& args, int64_t def, int64_t max) {
  ASSIGN_OR_RETURN(auto n, mlflow::OptionalInt64(args, "max_results"));
  int64_t v = n.value_or(def);
  if (v < 1 || v > max) {
    return core::InvalidArgument(
        fmt::format("Invalid value {} for parameter 'max_results' supplied. It must be between 1 "
                    "and {}.",
                    v, max),
        "max_results");
  }
  return v;
}

Result<int64_t> PageOffset(const Json& args) {
  std::string token = mlflow::OptionalString(args, "page_token");
  if (token.empty())
    return 0;
  return mlflow::DecodePageToken(token);
}

class Api {
 public:
  Api(Tracking& tracking, const auth::Auth& auth, artifacts::ArtifactStore* artifacts)
      : tracking_(tracking), auth_(auth), artifacts_(artifacts) {}

  Result<Experiment> ExperimentFor(const Request& req, const std::string& id,
                                   std::string_view permission) {
    ASSIGN_OR_RETURN(Experiment e, tracking_.GetExperiment(id));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, e.project));
    return e;
  }

  Result<RunInfo> RunFor(const Request& req, const std::string& run_id,
                         std::string_view permission) {
    ASSIGN_OR_RETURN(RunInfo info, tracking_.GetRunInfo(run_id));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, info.project));
    return info;
  }

  // The run's project only (cached), for the hot telemetry routes.
  Status AuthorizeRun(const Request& req, const std::string& run_id, std::string_view permission) {
    ASSIGN_OR_RETURN(std::string project, tracking_.RunProject(run_id));
    return auth_.Authorize(req.actor, permission, project);
  }

  // --- experiments -------------------------------------------------------

  Result<Json> CreateExperiment(const Request& req, const Json& args) {
    CreateExperimentRequest c;
    ASSIGN_OR_RETURN(c.name, mlflow::RequiredString(args, "name"));
    c.artifact_location = mlflow::OptionalString(args, "artifact_location");
    ASSIGN_OR_RETURN(c.tags, KeyValueList(args, "tags"));
    c.project = "default";
    for (const auto& [k, v] : c.tags) {
      if (k == kProjectTag)
        c.project = v;
    }
    RETURN_IF_ERROR(CheckProject(c.project, "tags"));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.write", c.project));
    ASSIGN_OR_RETURN(Experiment e, tracking_.CreateExperiment(c, Context(req)));
    return Json{{"experiment_id", e.id}};
  }

  Status CheckProject(const std::string& project, std::string_view field) {
    RETURN_IF_ERROR(auth::ValidateProjectName(project, field));
    if (!auth_.GetProject(project)) {
      return core::InvalidArgument(fmt::format("project \"{}\" does not exist", project),
                                   std::string(field));
    }
    return core::Ok();
  }

  Result<Json> SearchExperiments(const Request& req, const Json& args) {
    SearchExperimentsRequest s;
    ASSIGN_OR_RETURN(s.max_results, MaxResults(args, 1000, kMaxSearchResults));
    ASSIGN_OR_RETURN(s.offset, PageOffset(args));
    s.filter = mlflow::OptionalString(args, "filter");
    ASSIGN_OR_RETURN(s.order_by, mlflow::StringList(args, "order_by"));
    ASSIGN_OR_RETURN(s.view, ParseViewType(mlflow::OptionalString(args, "view_type"), "view_type"));
    s.projects = auth_.ProjectsWith(req.actor, "tracking.read");
    ASSIGN_OR_RETURN(SearchExperimentsResult r, tracking_.SearchExperiments(s));
    Json out = Json::object();
    if (!r.experiments.empty()) {
      Json list = Json::array();
      for (const auto& e : r.experiments)
        list.push_back(e.ToMlflow());
      out["experiments"] = std::move(list);
    }
    if (r.next_offset)
      out["next_page_token"] = mlflow::EncodePageToken(*r.next_offset);
    return out;
  }

  Result<Json> GetExperiment(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string id, mlflow::RequiredString(args, "experiment_id"));
    ASSIGN_OR_RETURN(Experiment e, ExperimentFor(req, id, "tracking.read"));
    return Json{{"experiment", e.ToMlflow()}};
  }

  Result<Json> GetExperimentByName(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string name, mlflow::RequiredString(args, "experiment_name"));
    ASSIGN_OR_RETURN(Experiment e, tracking_.GetExperimentByName(name));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.read", e.project));
    return Json{{"experiment", e.ToMlflow()}};
  }

  Result<Json> DeleteExperiment(const Request& req, const Json& args, bool restore) {
    ASSIGN_OR_RETURN(std::string id, mlflow::RequiredString(args, "experiment_id"));
    ASSIGN_OR_RETURN(Experiment e, ExperimentFor(req, id, "tracking.write"));
    if (restore) {
      RETURN_IF_ERROR(tracking_.RestoreExperiment(e.id, Context(req)));
    } else {
      RETURN_IF_ERROR(tracking_.DeleteExperiment(e.id, Context(req)));
    }
    return Json::object();
  }

  Result<Json> UpdateExperiment(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string id, mlflow::RequiredString(args, "experiment_id"));
    // Required, as MLflow's handler has it (a rename is the only update).
    ASSIGN_OR_RETURN(std::string new_name, mlflow::RequiredString(args, "new_name"));
    ASSIGN_OR_RETURN(Experiment e, ExperimentFor(req, id, "tracking.write"));
    RETURN_IF_ERROR(tracking_.RenameExperiment(e.id, new_name, Context(req)));
    return Json::object();
  }

  Result<Json> SetExperimentTag(const Request& req, const Json& args, bool remove) {
    ASSIGN_OR_RETURN(std::string id, mlflow::RequiredString(args, "experiment_id"));
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "key"));
    ASSIGN_OR_RETURN(Experiment e, ExperimentFor(req, id, "tracking.write"));
    if (key == kProjectTag) {
      return core::InvalidArgument(
          fmt::format("Tag '{}' is set when the experiment is created and cannot change", key),
          "key");
    }
    if (remove) {
      RETURN_IF_ERROR(tracking_.DeleteExperimentTag(e.id, key, Context(req)));
    } else {
      RETURN_IF_ERROR(tracking_.SetExperimentTag(e.id, key, mlflow::OptionalString(args, "value"),
                                                 Context(req)));
    }
    return Json::object();
  }

  // --- runs --------------------------------------------------------------

  Result<Json> CreateRun(const Request& req, const Json& args) {
    CreateRunRequest c;
    c.experiment_id = mlflow::OptionalString(args, "experiment_id", "0");
    c.user_id = mlflow::OptionalString(args, "user_id");
    c.run_name = mlflow::OptionalString(args, "run_name");
    ASSIGN_OR_RETURN(c.start_time, mlflow::OptionalInt64(args, "start_time"));
    ASSIGN_OR_RETURN(c.tags, KeyValueList(args, "tags"));
    ASSIGN_OR_RETURN(Experiment e, ExperimentFor(req, c.experiment_id, "tracking.write"));
    (void)e;
    ASSIGN_OR_RETURN(Run run, tracking_.CreateRun(c, Context(req)));
    return Json{{"run", run.ToMlflow()}};
  }

  Result<Json> UpdateRun(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "tracking.write"));
    UpdateRunRequest u;
    if (std::string s = mlflow::OptionalString(args, "status"); !s.empty())
      u.status = s;
    ASSIGN_OR_RETURN(u.end_time, mlflow::OptionalInt64(args, "end_time"));
    if (args.contains("run_name") && args["run_name"].is_string())
      u.run_name = args["run_name"].get<std::string>();
    ASSIGN_OR_RETURN(info, tracking_.UpdateRun(run_id, u, Context(req)));
    return Json{{"run_info", info.ToMlflow()}};
  }

  Result<Json> DeleteRun(const Request& req, const Json& args, bool restore) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "tracking.write"));
    if (restore) {
      RETURN_IF_ERROR(tracking_.RestoreRun(run_id, Context(req)));
    } else {
      RETURN_IF_ERROR(tracking_.DeleteRun(run_id, Context(req)));
    }
    return Json::object();
  }

  Result<Json> GetRun(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(Run run, tracking_.GetRun(run_id));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.read", run.info.project));
    return Json{{"run", run.ToMlflow()}};
  }

  Result<Json> LogMetric(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(internal::DecodedLogMetric d, internal::DecodeLogMetric(args));
    RETURN_IF_ERROR(AuthorizeRun(req, d.run_id, "tracking.write"));
    RETURN_IF_ERROR(tracking_.LogMetric(d.run_id, d.metric));
    return Json::object();
  }

  // LogMetric's start on the I/O thread (mlflow::Start): the same checks in
  // the same order; it declines when the run is not cached.
  bool StartLogMetric(const Request& req, const mlflow::Done& done) {
    std::optional<internal::DecodedLogMetric> fast;
    if (!req.body.empty() && mlflow::ContentTypeIsJson(req))
      fast = internal::DecodeLogMetricFast(req.body);
    internal::DecodedLogMetric d;
    if (fast) {
      d = std::move(*fast);
    } else {
      Result<Json> args = mlflow::Args(req);
      if (!args)
        return Answer(done, args.error());
      Result<internal::DecodedLogMetric> decoded = internal::DecodeLogMetric(*args);
      if (!decoded)
        return Answer(done, decoded.error());
      d = std::move(*decoded);
    }
    std::optional<Status> allowed = AuthorizeCachedRun(req, d.run_id);
    if (!allowed)
      return false;
    if (!*allowed)
      return Answer(done, allowed->error());
    return tracking_.LogMetricAsync(d.run_id, d.metric, Written(done));
  }

  Result<Json> LogParam(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "key"));
    if (!args.contains("value") || args["value"].is_null())
      return mlflow::RequiredString(args, "value").error();
    std::string value =
        args["value"].is_string() ? args["value"].get<std::string>() : args["value"].dump();
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "tracking.write"));
    RETURN_IF_ERROR(tracking_.LogParam(run_id, key, value));
    return Json::object();
  }

  Result<Json> SetTag(const Request& req, const Json& args, bool remove) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "key"));
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "tracking.write"));
    if (remove) {
      RETURN_IF_ERROR(tracking_.DeleteTag(run_id, key, Context(req)));
    } else {
      RETURN_IF_ERROR(
          tracking_.SetTag(run_id, key, mlflow::OptionalString(args, "value"), Context(req)));
    }
    return Json::object();
  }

  Result<Json> LogBatch(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(internal::DecodedLogBatch decoded, internal::DecodeLogBatch(args));
    return StoreBatch(req, decoded.run_id, decoded.batch);
  }

  // The same as LogBatch for the bodies DecodeLogBatchFast takes (the hot
  // path of metric ingestion); nullopt for the others.
  std::optional<Result<Json>> LogBatchFast(const Request& req) {
    std::optional<internal::DecodedLogBatch> decoded = internal::DecodeLogBatchFast(req.body);
    if (!decoded)
      return std::nullopt;
    return StoreBatch(req, decoded->run_id, decoded->batch);
  }

  // LogBatchFast's start on the I/O thread: batches of metrics alone of a
  // cached run; it declines the others.
  bool StartLogBatch(const Request& req, const mlflow::Done& done) {
    if (req.body.empty() || !mlflow::ContentTypeIsJson(req))
      return false;
    std::optional<internal::DecodedLogBatch> decoded = internal::DecodeLogBatchFast(req.body);
    if (!decoded || decoded->batch.metrics.empty() || !decoded->batch.params.empty() ||
        !decoded->batch.tags.empty())
      return false;
    std::optional<Status> allowed = AuthorizeCachedRun(req, decoded->run_id);
    if (!allowed)
      return false;
    if (!*allowed)
      return Answer(done, allowed->error());
    return tracking_.LogBatchAsync(decoded->run_id, decoded->batch, Written(done));
  }

  // AuthorizeRun for "tracking.write" without a database read: nullopt when
  // the run is not cached (the start then declines).
  std::optional<Status> AuthorizeCachedRun(const Request& req, const std::string& run_id) {
    std::optional<std::string> project = tracking_.CachedRunProject(run_id);
    if (!project)
      return std::nullopt;
    return auth_.Authorize(req.actor, "tracking.write", *project);
  }

  // Answers a start's request with `error` (the request is taken).
  static bool Answer(const mlflow::Done& done, const core::Error& error) {
    done(error);
    return true;
  }
  // A write's callback answering the request: "{}" once durable.
  static std::function<void(Status)> Written(const mlflow::Done& done) {
    return [done](const Status& s) {
      if (s)
        done(Json::object());
      else
        done(s.error());
    };
  }

  Result<Json> StoreBatch(const Request& req, const std::string& run_id, const LogBatchRequest& b) {
    RETURN_IF_ERROR(AuthorizeRun(req, run_id, "tracking.write"));
    RETURN_IF_ERROR(tracking_.LogBatch(run_id, b, Context(req)));
    return Json::object();
  }

  Result<Json> LogInputs(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    std::vector<DatasetInput> inputs;
    auto it = args.find("datasets");
    if (it == args.end() || it->is_null())  // required, as MLflow's handler has it
      return mlflow::RequiredString(args, "datasets").error();
    if (!it->is_array())
      return core::InvalidArgument("Invalid value for parameter 'datasets': expected a list",
                                   "datasets");
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& item = (*it)[i];
      if (!item.is_object() || !item.contains("dataset") || !item["dataset"].is_object()) {
        return core::InvalidArgument(
            fmt::format("Missing value for required parameter 'datasets[{}].dataset'", i),
            fmt::format("datasets[{}].dataset", i));
      }
      DatasetInput d;
      d.dataset = item["dataset"];
      ASSIGN_OR_RETURN(d.tags, KeyValueList(item, "tags"));
      inputs.push_back(std::move(d));
    }
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "tracking.write"));
    RETURN_IF_ERROR(tracking_.LogInputs(run_id, inputs, Context(req)));
    return Json::object();
  }

  Result<Json> LogModel(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(std::string text, mlflow::RequiredString(args, "model_json"));
    Json model = Json::parse(text, nullptr, false);
    if (model.is_discarded() || !model.is_object()) {
      return core::InvalidArgument("Invalid value for parameter 'model_json': not a JSON object",
                                   "model_json");
    }
    // MLflow's handler refuses a model without these (Model.from_dict needs them).
    std::vector<std::string> missing;
    for (const char* field : {"artifact_path", "flavors", "utc_time_created", "run_id"}) {
      if (!model.contains(field))
        missing.emplace_back(field);
    }
    if (!missing.empty()) {
      return core::InvalidArgument(
          fmt::format("Model json is missing mandatory fields: {}", fmt::join(missing, ", ")),
          "model_json");
    }
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "tracking.write"));
    RETURN_IF_ERROR(tracking_.LogModel(run_id, model, Context(req)));
    return Json::object();
  }

  Result<std::string> SearchRuns(const Request& req, const Json& args) {
    SearchRunsRequest s;
    ASSIGN_OR_RETURN(s.experiment_ids, mlflow::StringList(args, "experiment_ids"));
    s.filter = mlflow::OptionalString(args, "filter");
    ASSIGN_OR_RETURN(s.view,
                     ParseViewType(mlflow::OptionalString(args, "run_view_type"), "run_view_type"));
    ASSIGN_OR_RETURN(s.max_results, MaxResults(args, 1000, kMaxSearchResults));
    ASSIGN_OR_RETURN(s.order_by, mlflow::StringList(args, "order_by"));
    ASSIGN_OR_RETURN(s.offset, PageOffset(args));
    for (const auto& id : s.experiment_ids) {
      auto e = ExperimentFor(req, id, "tracking.read");
      if (!e && e.error().code != core::ErrorCode::kNotFound)
        return e.error();
    }
    ASSIGN_OR_RETURN(SearchRunsResult r, tracking_.SearchRuns(s));
    // Written directly, as ToMlflow() would give it: a page may hold 50,000 runs.
    std::string out = "{";
    if (!r.runs.empty()) {
      out.reserve(r.runs.size() * 512);
      out += "\"runs\":[";
      for (size_t i = 0; i < r.runs.size(); ++i) {
        if (i > 0)
          out += ',';
        internal::AppendRunJson(out, r.runs[i]);
      }
      out += ']';
    }
    if (r.next_offset) {
      out += r.runs.empty() ? "\"next_page_token\":" : ",\"next_page_token\":";
      core::AppendJsonString(out, mlflow::EncodePageToken(*r.next_offset));
    }
    out += '}';
    return out;
  }

  // Written directly rather than through Json: a history of 100,000 points
  // is ~10 MB of text, and building a Json value per point costs more than
  // reading the points.
  Result<std::string> GetMetricHistory(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "metric_key"));
    RETURN_IF_ERROR(AuthorizeRun(req, run_id, "tracking.read"));
    ASSIGN_OR_RETURN(auto max, mlflow::OptionalInt64(args, "max_results"));
    int64_t max_results = 0;  // all points, as MLflow without paging
    if (max) {
      ASSIGN_OR_RETURN(max_results, MaxResults(args, 0, 1000000));
    }
    ASSIGN_OR_RETURN(int64_t offset, PageOffset(args));
    // Each point is formatted straight into the response, no Json per point.
    std::string out = "{\"metrics\":[";
    std::string key_json;
    core::AppendJsonString(key_json, key);
    bool first = true;
    HistoryPage page;
    ASSIGN_OR_RETURN(page.next_offset,
                     tracking_.ForEachHistoryPoint(
                         run_id, key, offset, max_results, [&](const MetricPoint& p, size_t total) {
                           if (first) {  // one allocation: about 60 bytes per point besides the key
                             out.reserve(out.size() + total * (key_json.size() + 64));
                             out += "{\"key\":";
                           } else {
                             out += ",{\"key\":";
                           }
                           first = false;
                           out += key_json;
                           out += ",\"value\":";
                           internal::AppendDouble(out, p.value);
                           out += ",\"timestamp\":";
                           internal::AppendInt(out, p.timestamp);
                           out += ",\"step\":";
                           internal::AppendInt(out, p.step);
                           out += '}';
                         }));
    if (first)
      out = "{";  // MLflow omits an empty list
    else
      out += "]";
    if (page.next_offset) {
      out += first ? "" : ",";
      out += "\"next_page_token\":" + Json(mlflow::EncodePageToken(*page.next_offset)).dump();
    }
    out += "}";
    return out;
  }

  Result<Json> ListArtifacts(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string run_id, RunIdArg(args));
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "artifact.read"));
    Json out = {{"root_uri", info.artifact_uri}};
    std::string path = mlflow::OptionalString(args, "path");
    std::string_view uri = info.artifact_uri;
    constexpr std::string_view kScheme = "mlflow-artifacts:";
    if (artifacts_ == nullptr || !uri.starts_with(kScheme))
      return out;  // stored elsewhere: the client lists it itself
    std::string base(uri.substr(kScheme.size()));
    while (!base.empty() && base.front() == '/')
      base.erase(0, 1);
    std::string rel;
    if (!path.empty()) {
      ASSIGN_OR_RETURN(rel, artifacts::NormalizePath(path, "path"));
    }
    std::string dir = rel.empty() ? base : base + "/" + rel;
    ASSIGN_OR_RETURN(auto files, artifacts_->List(dir));
    if (files.empty())
      return out;
    Json list = Json::array();
    for (const auto& f : files) {
      Json item = {{"path", rel.empty() ? f.path : rel + "/" + f.path}, {"is_dir", f.is_dir}};
      if (!f.is_dir)
        item["file_size"] = f.size;
      list.push_back(std::move(item));
    }
    out["files"] = std::move(list);
    return out;
  }

  // --- native /api/v1 ----------------------------------------------------

  Result<Json> NativeListExperiments(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"filter", "order_by", "view", "limit", "page_token"}));
    SearchExperimentsRequest s;
    ASSIGN_OR_RETURN(s.max_results, req.QueryInt("limit", 100, 1, 1000));
    Json args = {{"page_token", req.QueryOr("page_token", "")}};
    ASSIGN_OR_RETURN(s.offset, PageOffset(args));
    s.filter = req.QueryOr("filter", "");
    s.order_by = req.QueryAll("order_by");
    ASSIGN_OR_RETURN(s.view, ParseViewType(req.QueryOr("view", ""), "view"));
    s.projects = auth_.ProjectsWith(req.actor, "tracking.read");
    ASSIGN_OR_RETURN(SearchExperimentsResult r, tracking_.SearchExperiments(s));
    Json items = Json::array();
    for (const auto& e : r.experiments) {
      Json j = e.ToMlflow();
      j["project"] = e.project;
      items.push_back(std::move(j));
    }
    Json out = {{"items", items}};
    if (r.next_offset)
      out["next_page_token"] = mlflow::EncodePageToken(*r.next_offset);
    return out;
  }

  Result<Json> NativeCreateExperiment(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    CreateExperimentRequest c;
    ASSIGN_OR_RETURN(c.name, r.RequiredString("name"));
    ASSIGN_OR_RETURN(auto project, r.OptionalString("project"));
    c.project = project.value_or("default");
    ASSIGN_OR_RETURN(auto location, r.OptionalString("artifact_location"));
    c.artifact_location = location.value_or("");
    ASSIGN_OR_RETURN(Json tags, r.OptionalObject("tags"));
    RETURN_IF_ERROR(r.Finish());
    for (const auto& [k, v] : tags.items()) {
      if (!v.is_string()) {
        return core::InvalidArgument(fmt::format("field \"tags.{}\": must be a string", k),
                                     "tags." + k);
      }
      c.tags.emplace_back(k, v.get<std::string>());
    }
    RETURN_IF_ERROR(CheckProject(c.project, "project"));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.write", c.project));
    ASSIGN_OR_RETURN(Experiment e, tracking_.CreateExperiment(c, Context(req)));
    Json j = e.ToMlflow();
    j["project"] = e.project;
    return j;
  }

  Result<Json> NativeGetExperiment(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Experiment e, ExperimentFor(req, req.Param("id"), "tracking.read"));
    Json j = e.ToMlflow();
    j["project"] = e.project;
    return j;
  }

  Result<Json> NativeListRuns(const Request& req) {
    RETURN_IF_ERROR(
        req.CheckQuery({"experiment_id", "filter", "order_by", "view", "limit", "page_token"}));
    SearchRunsRequest s;
    s.experiment_ids = req.QueryAll("experiment_id");
    if (s.experiment_ids.empty()) {
      return core::InvalidArgument("query parameter \"experiment_id\": at least one is required",
                                   "experiment_id");
    }
    for (const auto& id : s.experiment_ids)
      RETURN_IF_ERROR(ExperimentFor(req, id, "tracking.read"));
    ASSIGN_OR_RETURN(s.max_results, req.QueryInt("limit", 100, 1, kMaxSearchResults));
    Json args = {{"page_token", req.QueryOr("page_token", "")}};
    ASSIGN_OR_RETURN(s.offset, PageOffset(args));
    s.filter = req.QueryOr("filter", "");
    s.order_by = req.QueryAll("order_by");
    ASSIGN_OR_RETURN(s.view, ParseViewType(req.QueryOr("view", ""), "view"));
    ASSIGN_OR_RETURN(SearchRunsResult r, tracking_.SearchRuns(s));
    Json items = Json::array();
    for (const auto& run : r.runs) {
      Json j = run.ToMlflow();
      j["info"]["project"] = run.info.project;
      items.push_back(std::move(j));
    }
    Json out = {{"items", items}};
    if (r.next_offset)
      out["next_page_token"] = mlflow::EncodePageToken(*r.next_offset);
    return out;
  }

  Result<Json> NativeGetRun(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Run run, tracking_.GetRun(req.Param("id")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.read", run.info.project));
    Json j = run.ToMlflow();
    j["info"]["project"] = run.info.project;
    return j;
  }

  Result<Json> NativeMetricHistory(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"limit", "page_token"}));
    const std::string& run_id = req.Param("id");
    ASSIGN_OR_RETURN(RunInfo info, RunFor(req, run_id, "tracking.read"));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 10000, 1, 1000000));
    Json args = {{"page_token", req.QueryOr("page_token", "")}};
    ASSIGN_OR_RETURN(int64_t offset, PageOffset(args));
    ASSIGN_OR_RETURN(HistoryPage page,
                     tracking_.GetMetricHistory(run_id, req.Param("key"), offset, limit));
    Json items = Json::array();
    for (const auto& p : page.points)
      items.push_back(p.ToMlflow());
    Json out = {{"items", items}};
    if (page.next_offset)
      out["next_page_token"] = mlflow::EncodePageToken(*page.next_offset);
    return out;
  }

 private:
  Tracking& tracking_;
  const auth::Auth& auth_;
  artifacts::ArtifactStore* artifacts_;
};

}  // namespace

Status RegisterRoutes(http::Router& router, Tracking& tracking, const auth::Auth& auth,
                      artifacts::ArtifactStore* artifacts) {
  auto api = std::make_shared<Api>(tracking, auth, artifacts);
  using std::placeholders::_1;
  using std::placeholders::_2;
  auto add = [&](const char* method, std::string_view path, const char* permission, auto fn,
                 std::initializer_list<std::string_view> repeated = {}) {
    return mlflow::AddRoute(
        router, method, path, permission,
        [api, fn](const Request& req, const Json& args) { return fn(*api, req, args); }, repeated);
  };
  // Experiments.
  RETURN_IF_ERROR(
      add("POST", "experiments/create", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.CreateExperiment(r, j); }));
  for (const char* method : {"POST", "GET"}) {
    RETURN_IF_ERROR(
        add(method, "experiments/search", "tracking.read",
            [](Api& a, const Request& r, const Json& j) { return a.SearchExperiments(r, j); },
            {"order_by"}));
  }
  RETURN_IF_ERROR(
      add("GET", "experiments/get", "tracking.read",
          [](Api& a, const Request& r, const Json& j) { return a.GetExperiment(r, j); }));
  RETURN_IF_ERROR(
      add("GET", "experiments/get-by-name", "tracking.read",
          [](Api& a, const Request& r, const Json& j) { return a.GetExperimentByName(r, j); }));
  RETURN_IF_ERROR(
      add("POST", "experiments/delete", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.DeleteExperiment(r, j, false); }));
  RETURN_IF_ERROR(
      add("POST", "experiments/restore", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.DeleteExperiment(r, j, true); }));
  RETURN_IF_ERROR(
      add("POST", "experiments/update", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.UpdateExperiment(r, j); }));
  RETURN_IF_ERROR(
      add("POST", "experiments/set-experiment-tag", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.SetExperimentTag(r, j, false); }));
  RETURN_IF_ERROR(
      add("POST", "experiments/delete-experiment-tag", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.SetExperimentTag(r, j, true); }));
  // Runs.
  RETURN_IF_ERROR(add("POST", "runs/create", "tracking.write",
                      [](Api& a, const Request& r, const Json& j) { return a.CreateRun(r, j); }));
  RETURN_IF_ERROR(add("POST", "runs/update", "tracking.write",
                      [](Api& a, const Request& r, const Json& j) { return a.UpdateRun(r, j); }));
  RETURN_IF_ERROR(
      add("POST", "runs/delete", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.DeleteRun(r, j, false); }));
  RETURN_IF_ERROR(
      add("POST", "runs/restore", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.DeleteRun(r, j, true); }));
  RETURN_IF_ERROR(add("GET", "runs/get", "tracking.read",
                      [](Api& a, const Request& r, const Json& j) { return a.GetRun(r, j); }));
  RETURN_IF_ERROR(mlflow::AddRoute(
      router, "POST", "runs/log-metric", "tracking.write",
      [api](const Request& r, const Json& j) { return api->LogMetric(r, j); }, {}, nullptr,
      [api](const Request& r, const mlflow::Done& done) { return api->StartLogMetric(r, done); }));
  RETURN_IF_ERROR(add("POST", "runs/log-parameter", "tracking.write",
                      [](Api& a, const Request& r, const Json& j) { return a.LogParam(r, j); }));
  RETURN_IF_ERROR(
      add("POST", "runs/set-tag", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.SetTag(r, j, false); }));
  RETURN_IF_ERROR(
      add("POST", "runs/delete-tag", "tracking.write",
          [](Api& a, const Request& r, const Json& j) { return a.SetTag(r, j, true); }));
  RETURN_IF_ERROR(mlflow::AddRoute(
      router, "POST", "runs/log-batch", "tracking.write",
      [api](const Request& r, const Json& j) { return api->LogBatch(r, j); }, {},
      [api](const Request& r) { return api->LogBatchFast(r); },
      [api](const Request& r, const mlflow::Done& done) { return api->StartLogBatch(r, done); }));
  RETURN_IF_ERROR(add("POST", "runs/log-inputs", "tracking.write",
                      [](Api& a, const Request& r, const Json& j) { return a.LogInputs(r, j); }));
  RETURN_IF_ERROR(add("POST", "runs/log-model", "tracking.write",
                      [](Api& a, const Request& r, const Json& j) { return a.LogModel(r, j); }));
  RETURN_IF_ERROR(mlflow::AddTextRoute(
      router, "POST", "runs/search", "tracking.read",
      [api](const Request& r, const Json& j) { return api->SearchRuns(r, j); }));
  RETURN_IF_ERROR(mlflow::AddTextRoute(
      router, "GET", "metrics/get-history", "tracking.read",
      [api](const Request& r, const Json& j) { return api->GetMetricHistory(r, j); }));
  RETURN_IF_ERROR(
      add("GET", "artifacts/list", "artifact.read",
          [](Api& a, const Request& r, const Json& j) { return a.ListArtifacts(r, j); }));

  // Native API.
  auto native = [&](const char* method, const char* pattern, const char* permission, auto fn,
                    int ok = 200) {
    return router.Add(http::JsonRoute(
        method, pattern, permission, [api, fn](const Request& req) { return fn(*api, req); }, ok));
  };
  RETURN_IF_ERROR(native("GET", "/api/v1/experiments", "tracking.read",
                         [](Api& a, const Request& r) { return a.NativeListExperiments(r); }));
  RETURN_IF_ERROR(native(
      "POST", "/api/v1/experiments", "tracking.write",
      [](Api& a, const Request& r) { return a.NativeCreateExperiment(r); }, 201));
  RETURN_IF_ERROR(native("GET", "/api/v1/experiments/{id}", "tracking.read",
                         [](Api& a, const Request& r) { return a.NativeGetExperiment(r); }));
  RETURN_IF_ERROR(native("GET", "/api/v1/runs", "tracking.read",
                         [](Api& a, const Request& r) { return a.NativeListRuns(r); }));
  RETURN_IF_ERROR(native("GET", "/api/v1/runs/{id}", "tracking.read",
                         [](Api& a, const Request& r) { return a.NativeGetRun(r); }));
  RETURN_IF_ERROR(native("GET", "/api/v1/runs/{id}/metrics/{key}", "tracking.read",
                         [](Api& a, const Request& r) { return a.NativeMetricHistory(r); }));
  return core::Ok();
}

ArtifactAuthorizer MakeArtifactAuthorizer(Tracking& tracking, const auth::Auth& auth) {
  return [&tracking, &auth](const http::Request& req, std::string_view path, bool write) -> Status {
    std::string_view permission = write ? "artifact.write" : "artifact.read";
    // "<experiment_id>/<run_id>/artifacts/...": the experiment's project.
    std::string_view first = path.substr(0, path.find('/'));
    if (!first.empty() && std::all_of(first.begin(), first.end(),
                                      [](unsigned char c) { return std::isdigit(c) != 0; })) {
      auto e = tracking.GetExperiment(std::string(first));
      if (e)
        return auth.Authorize(req.actor, permission, e->project);
    }
    // Anything else (e.g. registry-owned paths) needs the permission globally.
    return auth.AuthorizeIn(req.actor, permission, "");
  };
}

namespace internal {

Result<DecodedLogMetric> DecodeLogMetric(const Json& args) {
  DecodedLogMetric out;
  ASSIGN_OR_RETURN(out.run_id, RunIdArg(args));
  ASSIGN_OR_RETURN(out.metric, MetricFrom(args, ""));
  return out;
}

Result<DecodedLogBatch> DecodeLogBatch(const Json& args) {
  DecodedLogBatch out;
  ASSIGN_OR_RETURN(out.run_id, RunIdArg(args));
  LogBatchRequest& b = out.batch;
  if (auto it = args.find("metrics"); it != args.end() && !it->is_null()) {
    if (!it->is_array())
      return core::InvalidArgument("Invalid value for parameter 'metrics': expected a list",
                                   "metrics");
    // Limits first, so an oversized batch costs no parsing.
    RETURN_IF_ERROR(CheckBatchLimits(it->size(), 0, 0));
    b.metrics.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& item = (*it)[i];
      std::string prefix = fmt::format("metrics[{}].", i);
      if (!item.is_object())
        return core::InvalidArgument(fmt::format("metrics[{}]: expected an object", i), "metrics");
      ASSIGN_OR_RETURN(MetricPoint m, MetricFrom(item, prefix));
      b.metrics.push_back(std::move(m));
    }
  }
  ASSIGN_OR_RETURN(b.params, KeyValueList(args, "params"));
  ASSIGN_OR_RETURN(b.tags, KeyValueList(args, "tags"));
  return out;
}

}  // namespace internal
}  // namespace kervan::tracking
