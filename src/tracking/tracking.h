// Experiment tracking: experiments, runs, params, metrics, tags, dataset
// inputs, and the MLflow REST API over them, so the standard MLflow client
// works against Kervan unchanged (docs/tracking.md).
//
// State changes are events (appended in the same transaction as the
// tracking tables): experiment and run lifecycles (active <-> deleted, kinds
// "experiment" and "run" in the entities projection), run status and name
// changes, experiment renames, tag changes and dataset inputs. Metric points
// and params are telemetry, not events: params (and batches carrying params
// or tags) are stored through the event log's writer; metric points have
// their own group-commit writer (metric_writer.h) that acknowledges a
// request once its points are durable.
//
// Ownership: every experiment belongs to a project (team); its runs belong
// to it too. MLflow has no projects: experiments created through the MLflow
// API go to the project named by their "kervan.project" tag, else "default".
//
// This is tracking's one public header; mlflow_wire.h is part of it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "store/store.h"
#include "tracking/mlflow_wire.h"

namespace kervan::artifacts {
class ArtifactStore;
}

namespace kervan::tracking {
namespace internal {
class MetricWriter;
}

using core::Json;
using core::Result;
using core::Status;

inline constexpr std::string_view kExperimentKind = "experiment";
inline constexpr std::string_view kRunKind = "run";
inline constexpr std::string_view kProjectTag = "kervan.project";
inline constexpr std::string_view kRunNameTag = "mlflow.runName";
inline constexpr std::string_view kParentRunTag = "mlflow.parentRunId";

// MLflow's limits (mlflow/utils/validation.py).
inline constexpr size_t kMaxMetricsPerBatch = 1000;
inline constexpr size_t kMaxParamsPerBatch = 100;
inline constexpr size_t kMaxTagsPerBatch = 100;
inline constexpr size_t kMaxEntitiesPerBatch = 1000;
inline constexpr size_t kMaxKeyLength = 250;
inline constexpr size_t kMaxParamValueLength = 6000;
inline constexpr size_t kMaxTagValueLength = 5000;
inline constexpr size_t kMaxExperimentTagValueLength = 5000;
inline constexpr int64_t kMaxSearchResults = 50000;

using KeyValue = std::pair<std::string, std::string>;

// ACTIVE_ONLY (1), DELETED_ONLY (2), ALL (3), as MLflow's ViewType.
enum class ViewType { kActiveOnly, kDeletedOnly, kAll };
Result<ViewType> ParseViewType(std::string_view text, std::string_view field);

struct Experiment {
  std::string id;  // decimal, "0" is "Default"
  std::string name;
  std::string artifact_location;
  std::string lifecycle_stage;  // "active" | "deleted"
  int64_t creation_time = 0;    // ms since the epoch
  int64_t last_update_time = 0;
  std::string project;
  std::vector<KeyValue> tags;  // sorted by key

  Json ToMlflow() const;  // MLflow's Experiment message
};

struct MetricPoint {
  std::string key;
  double value = 0;  // NaN and +-Infinity are kept as given
  int64_t timestamp = 0;
  int64_t step = 0;
  Json ToMlflow() const;
};

struct DatasetInput {
  // {"name","digest","source_type","source","schema"?,"profile"?}
  Json dataset = Json::object();
  std::vector<KeyValue> tags;  // e.g. mlflow.data.context = "training"
  Json ToMlflow() const;
};

struct RunInfo {
  std::string run_id;  // 32 lowercase hex digits
  std::string experiment_id;
  std::string run_name;
  std::string user_id;
  std::string status;  // RUNNING | SCHEDULED | FINISHED | FAILED | KILLED
  int64_t start_time = 0;
  std::optional<int64_t> end_time;
  std::string artifact_uri;
  std::string lifecycle_stage;  // "active" | "deleted"
  std::string project;
  Json ToMlflow() const;  // MLflow's RunInfo (run_uuid = run_id)
};

struct Run {
  RunInfo info;
  std::vector<MetricPoint> metrics;  // the latest point of each key
  std::vector<KeyValue> params;      // sorted by key
  std::vector<KeyValue> tags;        // sorted by key
  std::vector<DatasetInput> inputs;
  Json ToMlflow() const;  // {"info", "data": {...}, "inputs": {...}}
};

struct CreateExperimentRequest {
  std::string name;
  std::string artifact_location;  // empty: <artifact root>/<id>
  std::vector<KeyValue> tags;
  std::string project;  // must exist (checked by the caller)
};

struct SearchExperimentsRequest {
  std::string filter;
  std::vector<std::string> order_by;
  ViewType view = ViewType::kActiveOnly;
  int64_t max_results = 1000;
  int64_t offset = 0;
  // nullopt: every project; otherwise only these (the caller's readable ones).
  std::optional<std::set<std::string>> projects;
};

struct SearchExperimentsResult {
  std::vector<Experiment> experiments;
  std::optional<int64_t> next_offset;  // set when the page is full
};

struct CreateRunRequest {
  std::string experiment_id;
  std::string user_id;
  std::string run_name;  // empty: from the mlflow.runName tag, else generated
  std::optional<int64_t> start_time;
  std::vector<KeyValue> tags;
};

struct UpdateRunRequest {
  std::optional<std::string> status;
  std::optional<int64_t> end_time;
  std::optional<std::string> run_name;
};

struct LogBatchRequest {
  std::vector<MetricPoint> metrics;
  std::vector<KeyValue> params;
  std::vector<KeyValue> tags;
};

struct SearchRunsRequest {
  std::vector<std::string> experiment_ids;
  std::string filter;
  std::vector<std::string> order_by;
  ViewType view = ViewType::kActiveOnly;
  int64_t max_results = 1000;
  int64_t offset = 0;
};

struct SearchRunsResult {
  std::vector<Run> runs;
  std::optional<int64_t> next_offset;
};

struct HistoryPage {
  std::vector<MetricPoint> points;
  std::optional<int64_t> next_offset;
};

struct Options {
  // Runs' artifact URIs are <experiment artifact_location>/<run_id>/artifacts;
  // an experiment's default location is <artifact_root>/<experiment_id>.
  // "mlflow-artifacts:" makes MLflow clients upload through Kervan's
  // artifact proxy (/api/2.0/mlflow-artifacts/...).
  std::string artifact_root = "mlflow-artifacts:";
};

class Tracking {
 public:
  // Registers the "experiment" and "run" lifecycles and ensures experiment
  // "0" ("Default", project "default") exists.
  static Result<std::unique_ptr<Tracking>> Open(store::Database& db, store::EventLog& log,
                                                store::Lifecycles& lifecycles,
                                                Options options = {});
  // Finishes the metric writes in flight.
  ~Tracking();

  // Experiments. Names: 1-500 characters, unique among all experiments
  // (kAlreadyExists otherwise). kNotFound for unknown ids/names.
  Result<Experiment> CreateExperiment(const CreateExperimentRequest& request,
                                      const store::CommandContext& ctx);
  Result<Experiment> GetExperiment(const std::string& id);
  // Prefers the active experiment when an active and a deleted one share it.
  Result<Experiment> GetExperimentByName(const std::string& name);
  Result<SearchExperimentsResult> SearchExperiments(const SearchExperimentsRequest& request);
  Result<Experiment> DeleteExperiment(const std::string& id, const store::CommandContext& ctx);
  Result<Experiment> RestoreExperiment(const std::string& id, const store::CommandContext& ctx);
  Result<Experiment> RenameExperiment(const std::string& id, const std::string& new_name,
                                      const store::CommandContext& ctx);
  Status SetExperimentTag(const std::string& id, const std::string& key, const std::string& value,
                          const store::CommandContext& ctx);
  Status DeleteExperimentTag(const std::string& id, const std::string& key,
                             const store::CommandContext& ctx);

  // Runs. Writes to a run need it (and its experiment) active: otherwise
  // kFailedPrecondition (MLflow: INVALID_PARAMETER_VALUE "must be in the
  // 'active' state"; see the error's mlflow code).
  Result<Run> CreateRun(const CreateRunRequest& request, const store::CommandContext& ctx);
  Result<Run> GetRun(const std::string& run_id);
  Result<RunInfo> GetRunInfo(const std::string& run_id);
  // The project of a run (what authorisation needs), from a cache: a run
  // never changes project. kNotFound for an unknown run.
  Result<std::string> RunProject(const std::string& run_id);
  // The same when this server knows it without a database read (cached);
  // nullopt otherwise. Never blocks for long: for callers on an I/O thread.
  std::optional<std::string> CachedRunProject(const std::string& run_id);
  Result<RunInfo> UpdateRun(const std::string& run_id, const UpdateRunRequest& request,
                            const store::CommandContext& ctx);
  Result<RunInfo> DeleteRun(const std::string& run_id, const store::CommandContext& ctx);
  Result<RunInfo> RestoreRun(const std::string& run_id, const store::CommandContext& ctx);
  Status SetTag(const std::string& run_id, const std::string& key, const std::string& value,
                const store::CommandContext& ctx);
  Status DeleteTag(const std::string& run_id, const std::string& key,
                   const store::CommandContext& ctx);

  // Telemetry: validated, then stored durably before returning (metric
  // points through the group-commit writer: the run must be active when
  // they commit).
  Status LogMetric(const std::string& run_id, const MetricPoint& point);
  // LogMetric for a caller that must not block (an I/O thread). When the
  // run is cached (CachedRunProject), it validates, queues the point and
  // returns true; `done` is then called exactly once with LogMetric's
  // result: at once for invalid input, otherwise on the metric writer's
  // thread after the commit (so it must not block either). Returns false,
  // without calling `done`, when the answer needs a database read: call
  // LogMetric then.
  bool LogMetricAsync(const std::string& run_id, const MetricPoint& point,
                      std::function<void(Status)> done);
  // Params are immutable: logging the same value again is a no-op; a
  // different value is kInvalidArgument naming the key.
  Status LogParam(const std::string& run_id, const std::string& key, const std::string& value);
  // All or nothing: a batch over MLflow's limits, with an invalid item, or a
  // param conflicting with a stored one is refused whole. Tags in the batch
  // are a "run.tags_set" event.
  Status LogBatch(const std::string& run_id, const LogBatchRequest& request,
                  const store::CommandContext& ctx);
  // LogBatch for a caller that must not block, as LogMetricAsync: takes
  // only batches of metrics alone (no params, no tags) of a cached run.
  bool LogBatchAsync(const std::string& run_id, const LogBatchRequest& request,
                     std::function<void(Status)> done);
  Status LogInputs(const std::string& run_id, const std::vector<DatasetInput>& inputs,
                   const store::CommandContext& ctx);
  // Appends `model_json` to the run's mlflow.log-model.history tag (a JSON
  // array), as MLflow's log-model endpoint does.
  Status LogModel(const std::string& run_id, const Json& model_json,
                  const store::CommandContext& ctx);

  // Every point of `key`, ordered by step, then timestamp (max_results 0:
  // all of them).
  Result<HistoryPage> GetMetricHistory(const std::string& run_id, const std::string& key,
                                       int64_t offset, int64_t max_results);
  // The same points, handed to `fn` one at a time with the number of points
  // this call hands over in all (to size an output buffer once). They are
  // read into a compact array of 24 bytes per point first, not into
  // MetricPoints; the point passed is reused between calls. Returns the next
  // page's offset when the page is full.
  Result<std::optional<int64_t>> ForEachHistoryPoint(
      const std::string& run_id, const std::string& key, int64_t offset, int64_t max_results,
      const std::function<void(const MetricPoint&, size_t total)>& fn);
  Result<SearchRunsResult> SearchRuns(const SearchRunsRequest& request);

  // The latest value of each metric of a run (for the registry's gates).
  Result<std::map<std::string, double>> LatestMetrics(const std::string& run_id);

  const Options& options() const { return options_; }

 private:
  Tracking(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
           Options options);

  struct RunRef {
    int64_t pk = 0;
    std::string project;
  };
  // run_id -> (pk, project): both fixed for a run's life (runs are only ever
  // soft-deleted), so entries never go stale; lifecycle is checked where it
  // matters, inside the writing transaction.
  Result<RunRef> ResolveRun(const std::string& run_id);
  std::optional<RunRef> CachedRun(const std::string& run_id);
  // The async writes' common end: false (done not called) when the run is
  // not cached, else the points are queued to the writer.
  bool WriteCachedAsync(const std::string& run_id, const std::vector<MetricPoint>& points,
                        std::function<void(Status)> done);

  store::Database& db_;
  store::EventLog& log_;
  store::Lifecycles& lifecycles_;
  Options options_;
  std::unique_ptr<internal::MetricWriter> writer_;
  std::mutex runs_mu_;
  std::unordered_map<std::string, RunRef> runs_;  // GUARDED_BY(runs_mu_)
};

// MLflow's log-batch limits: kInvalidArgument naming the first one exceeded.
Status CheckBatchLimits(size_t metrics, size_t params, size_t tags);

// Decides whether a caller may read (or write) an artifact path of the
// MLflow artifact proxy: "<experiment_id>/<run_id>/artifacts/..." needs
// artifact.read|write in the experiment's project; any other path needs it
// globally.
using ArtifactAuthorizer =
    std::function<Status(const http::Request& req, std::string_view path, bool write)>;
ArtifactAuthorizer MakeArtifactAuthorizer(Tracking& tracking, const auth::Auth& auth);

// The MLflow tracking API (/api/2.0/mlflow/experiments|runs|metrics|artifacts
// and the /ajax-api aliases) and the native /api/v1/experiments and
// /api/v1/runs routes. Permissions: tracking.read / tracking.write checked in
// the experiment's project. `artifacts` (may be null) serves
// /mlflow/artifacts/list.
Status RegisterRoutes(http::Router& router, Tracking& tracking, const auth::Auth& auth,
                      artifacts::ArtifactStore* artifacts);

}  // namespace kervan::tracking
