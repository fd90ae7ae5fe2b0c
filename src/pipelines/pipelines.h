// Pipelines and continuous training: versioned DAG specs (spec.h), runs whose
// command steps are jobs on the scheduler, built-in validate and register
// steps, step caching by content, datasets with versions (checks.h), and
// triggers (manual, cron (cron.h), a new dataset version, any event matching
// a filter, an inbound CI webhook).
//
// Pipeline run lifecycle (entity kind "pipeline_run", id = the run id):
//
//   Pending -> Running -> Succeeded | Failed
//   Pending | Running -> Cancelled          (manual, reason required)
//
// Step run lifecycle (entity kind "pipeline_step", id "<run id>:<step>"):
//
//   Pending -> Running -> Succeeded | Failed
//   Pending -> Succeeded                     ("cache_hit": outputs reused)
//   Running -> Pending                       ("restart": a built-in step that
//                                             was running when the server stopped)
//   Pending | Running -> Cancelled           (the run was cancelled or an
//                                             upstream step failed)
//
// The orchestrator's transitions carry actor "system:pipelines" (permission
// pipeline.orchestrate, held by no role). A run's steps run in dependency
// order; independent branches run at the same time. A step whose cache key
// (type, command and env as written, the values of the params it uses, its
// image, the digests of its inputs and of its `code` paths, its declared
// outputs) matches an earlier succeeded step run gets that run's outputs
// copied instead of running: event pipeline_step.cache_hit naming the step
// run it reused. A restarted server carries on with the runs it left: jobs
// are adopted by the jobs module, built-in steps start again.
//
// This is the module's public header; spec.h, checks.h and cron.h are its parts.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "pipelines/checks.h"
#include "pipelines/cron.h"
#include "pipelines/spec.h"
#include "store/store.h"

namespace kervan::artifacts {
class ArtifactStore;
}
namespace kervan::jobs {
class Jobs;
}
namespace kervan::registry {
class Registry;
}
namespace kervan::tracking {
class Tracking;
}

namespace kervan::pipelines {

using core::Status;

inline constexpr std::string_view kRunKind = "pipeline_run";
inline constexpr std::string_view kStepKind = "pipeline_step";
inline constexpr std::string_view kPipelinesActor = "system:pipelines";

inline constexpr std::string_view kPending = "Pending";
inline constexpr std::string_view kRunning = "Running";
inline constexpr std::string_view kSucceeded = "Succeeded";
inline constexpr std::string_view kFailed = "Failed";
inline constexpr std::string_view kCancelled = "Cancelled";

struct PipelineVersion {
  std::string name, project;
  int64_t version = 0;
  std::string digest;  // sha256 of the canonical spec JSON
  std::string spec_yaml;
  PipelineSpec spec;
  int64_t created_us = 0;
  std::string created_by;
  Json ToJson() const;  // spec as canonical JSON plus "yaml"
};

struct Pipeline {
  std::string name, project;
  int64_t latest_version = 0;
  int64_t created_us = 0, updated_us = 0;
  Json ToJson() const;
};

// Where an input of a step run came from, and what it was.
struct ResolvedInput {
  std::string name, source;  // source: "steps.a.outputs.x", "datasets.d@3", "path:..."
  std::string path, digest;
  Json ToJson() const;
};
struct ProducedOutput {
  std::string name, kind, path, digest;
  std::string artifact;  // artifact store path ("" when not uploaded)
  Json ToJson() const;
};

struct StepRun {
  std::string run_id, step, type, state;
  std::string job_id;           // command steps
  std::string tracking_run_id;  // where its metrics are (the original's on a cache hit)
  std::string cache_key;
  std::string cached_from;  // "<run id>:<step>" on a cache hit
  std::vector<std::string> depends_on;
  std::vector<ResolvedInput> inputs;
  Json code = Json::object();  // {"train.py": "sha256:..."}: the code version it ran
  std::vector<ProducedOutput> outputs;
  Json result;  // validate: the report; register: the model version; metrics: the values
  std::string failure;
  int64_t started_us = 0, finished_us = 0, updated_us = 0;
  Json ToJson() const;
};

// What caused a run: {"kind": "manual" | "cron" | "dataset" | "event" |
// "webhook", ...details}; the event that caused it is the run's causation.
struct PipelineRun {
  std::string id, pipeline, project;
  int64_t version = 0;
  std::string state;
  std::map<std::string, std::string> params;  // resolved
  bool no_cache = false;
  std::set<std::string> no_cache_steps;
  Json trigger = Json::object();
  std::string tracking_run_id;  // the parent run of the steps' runs
  std::string dir;              // <root>/runs/<id>
  std::string failure;
  std::string created_by;
  int64_t created_us = 0, started_us = 0, finished_us = 0, updated_us = 0;
  std::vector<StepRun> steps;  // in the spec's topological order (GetRun)
  Json ToJson() const;
};

struct Dataset {
  std::string name, project;
  int64_t latest_version = 0;
  int64_t created_us = 0, updated_us = 0;
  Json ToJson() const;
};
struct DatasetVersion {
  std::string name;
  int64_t version = 0;
  std::string uri;  // an absolute local path
  DatasetProfile profile;
  Json source = Json::object();  // {"kind": "user"} or {"kind": "pipeline", "run_id", "step"}
  std::string created_by;
  int64_t created_us = 0;
  Json ToJson() const;
};

struct SubmitResult {
  PipelineVersion version;
  bool created = false;  // false: the same spec was already the latest version
};

struct StartRunRequest {
  std::string pipeline;
  int64_t version = 0;  // 0 = latest
  std::map<std::string, std::string> params;
  bool no_cache = false;
  std::set<std::string> no_cache_steps;
  Json trigger = Json{{"kind", "manual"}};
};

struct ListRunsRequest {
  std::string pipeline;  // "" = any
  std::string state;     // "" = any
  std::optional<std::set<std::string>> projects;
  int limit = 100;
};

struct Options {
  std::string root;  // runs' directories live under <root>/runs
  std::chrono::milliseconds cycle_interval{500};
  // The server key that seals webhook secrets at rest (core/crypto.h).
  std::string secret_key;
};

struct Services {
  jobs::Jobs* jobs = nullptr;                     // required
  tracking::Tracking* tracking = nullptr;         // required
  registry::Registry* registry = nullptr;         // register steps; nullptr: refused
  artifacts::ArtifactStore* artifacts = nullptr;  // outputs uploaded when set
};

class Pipelines {
 public:
  // Registers the "pipeline_run" and "pipeline_step" lifecycles and resumes
  // from the store (runs left Running are carried on by the next cycle).
  static Result<std::unique_ptr<Pipelines>> Open(store::Database& db, store::EventLog& log,
                                                 store::Lifecycles& lifecycles, Services services,
                                                 Options options);
  ~Pipelines();

  // Parses and checks the YAML (ParsePipelineSpec), then stores it as the
  // pipeline's next version (event pipeline.version_created) unless it equals
  // the latest one. The pipeline's project cannot change between versions.
  Result<SubmitResult> Submit(std::string_view yaml, const store::CommandContext& ctx);
  Result<Pipeline> GetPipeline(const std::string& name);
  Result<std::vector<Pipeline>> ListPipelines(const std::optional<std::set<std::string>>& projects);
  Result<PipelineVersion> GetVersion(const std::string& name, int64_t version);  // 0 = latest

  // Resolves parameters and dataset inputs and creates the run and its step
  // runs, all Pending (nothing is started on an error).
  Result<PipelineRun> StartRun(const StartRunRequest& request, const store::CommandContext& ctx);
  Result<PipelineRun> GetRun(const std::string& id);
  Result<std::vector<PipelineRun>> ListRuns(const ListRunsRequest& request);
  Result<PipelineRun> CancelRun(const std::string& id, const std::string& reason,
                                const store::CommandContext& ctx);
  // A step's log (its job's), as jobs::Jobs::ReadLog.
  Result<std::pair<std::string, int64_t>> ReadStepLog(const std::string& run_id,
                                                      const std::string& step, int64_t offset,
                                                      int64_t max_bytes);

  // Datasets: a new version when the file's digest differs from the latest
  // (event dataset.version_created, which dataset triggers follow).
  Result<DatasetVersion> RegisterDataset(const std::string& name, const std::string& project,
                                         const std::string& uri, Json source,
                                         const store::CommandContext& ctx);
  Result<Dataset> GetDataset(const std::string& name);
  Result<std::vector<Dataset>> ListDatasets(const std::optional<std::set<std::string>>& projects);
  Result<std::vector<DatasetVersion>> ListDatasetVersions(const std::string& name);
  Result<DatasetVersion> GetDatasetVersion(const std::string& name, int64_t version);  // 0 = latest

  // Inbound CI webhooks. CreateWebhookSecret makes a new random secret for
  // the pipeline (returned once, stored sealed). HandleWebhook checks the
  // signature (GitHub X-Hub-Signature-256, or GitLab X-Gitlab-Token) and
  // starts a run when one of the pipeline's webhook triggers matches the
  // event and branch. kUnauthenticated on a bad or missing signature.
  Result<std::string> CreateWebhookSecret(const std::string& name,
                                          const store::CommandContext& ctx);
  struct WebhookOutcome {
    std::optional<PipelineRun> run;  // nullopt: no trigger matched
    std::string detail;
  };
  Result<WebhookOutcome> HandleWebhook(const std::string& name,
                                       const std::map<std::string, std::string>& headers,
                                       std::string_view body, const std::string& request_id);

  // One pass: fire due cron triggers, advance every active run. Start() runs
  // it every cycle_interval on its own thread (and follows the event log for
  // dataset and event triggers); tests call it directly.
  Status RunCycle();
  // Handles one committed event for dataset and event triggers (Start()
  // subscribes this; tests may call it).
  Status OnEvent(const store::Event& event);
  void Start();
  void Stop();

 private:
  struct State;
  Pipelines(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
            Services services, Options options);
  Status AdvanceRun(const std::string& run_id);
  // Starts one ready step (or reuses a cached result); errors fail the step.
  Status LaunchStep(const PipelineRun& run, const PipelineSpec& spec, const StepSpec& step,
                    StepRun& step_run, const Json& datasets, const std::string& experiment_id);
  Status FireCron(int64_t now);
  Result<PipelineRun> StartTriggered(const std::string& pipeline, const TriggerSpec& trigger,
                                     Json cause, const std::string& causation_id);

  store::Database& db_;
  store::EventLog& log_;
  store::Lifecycles& lifecycles_;
  Services services_;
  Options options_;
  std::unique_ptr<State> state_;
};

// /api/v1/pipelines, /api/v1/pipeline-runs, /api/v1/datasets and the public
// webhook receiver /api/v1/hooks/pipelines/{name} (docs/pipelines.md).
Status RegisterRoutes(http::Router& router, Pipelines& pipelines, const auth::Auth& auth);

}  // namespace kervan::pipelines
