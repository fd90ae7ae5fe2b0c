// Training jobs and the GPU scheduler: the job spec, the job lifecycle, the
// server's scheduling loop that runs the pure policy (policy.h) and carries
// its decisions out through an executor (executor.h), and the HTTP API.
//
// Job lifecycle (entity kind "job"):
//
//   Queued -> Admitted -> Running -> Succeeded | Failed
//   Admitted | Running -> Preempted -> Queued    (requeued once it has stopped)
//   Admitted | Running -> Failed                 (launch failure, exit, lost, deadline)
//   Failed -> Queued                             (retry while attempts < backoffLimit+1,
//                                                 after an exponential backoff)
//   Admitted -> Queued                           (requeue: launch never happened)
//   Queued | Admitted | Running | Preempted -> Cancelled   (manual, reason required)
//
// Every transition is an event (actor "system:scheduler" for the loop's own
// decisions); a preemption event names the job that caused it and why
// (priority or quota reclaim). An attempt's GPUs stay allocated until its
// process has stopped, so a cancelled or preempted job never shares GPUs
// with its successor.
//
// This is the module's public header; policy.h (the pure policy),
// simulator.h (the trace-driven simulator) and executor.h are its parts.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "jobs/executor.h"
#include "jobs/policy.h"
#include "jobs/simulator.h"
#include "store/store.h"

namespace kervan::tracking {
class Tracking;
}

namespace kervan::jobs {

inline constexpr std::string_view kJobKind = "job";
inline constexpr std::string_view kSchedulerActor = "system:scheduler";

// States.
inline constexpr std::string_view kQueued = "Queued";
inline constexpr std::string_view kAdmitted = "Admitted";
inline constexpr std::string_view kRunning = "Running";
inline constexpr std::string_view kSucceeded = "Succeeded";
inline constexpr std::string_view kFailed = "Failed";
inline constexpr std::string_view kPreempted = "Preempted";
inline constexpr std::string_view kCancelled = "Cancelled";

// What a user submits (JSON through the API; the CLI also reads YAML).
struct JobSpec {
  std::string name;  // "" = the id
  std::string project = "default";
  std::string priority_class = "dev";
  std::vector<std::string> command;  // argv, required
  std::string working_dir;           // "" = the attempt's scratch directory
  std::map<std::string, std::string> env;
  // A config file for the command (e.g. the seed's dev.yaml): its content is
  // written to <scratch>/<config_file.name> and KERVAN_CONFIG_FILE points to it.
  std::string config_file_name;
  std::string config_file_content;
  std::string image;  // container image (Kubernetes executor)
  Resources resources;
  std::optional<bool> preemptible;     // nullopt: the priority class's default
  int backoff_limit = 0;               // retries after a failure
  int64_t active_deadline_s = 0;       // 0 = none; counted from the first start
  int64_t ttl_after_finished_s = 0;    // 0 = keep the scratch directory
  int64_t expected_runtime_s = 0;      // estimate for backfill; 0 = unknown
  std::string tracking_run_id;         // attach to this MLflow run ("" = none)
  std::string tracking_experiment_id;  // or create a run in this experiment

  Json ToJson() const;
  // Strict: unknown fields and bad values are kInvalidArgument naming the
  // field ("resources.gpus: must be 0-1024, got -1").
  static Result<JobSpec> FromJson(const Json& json);
};

// A spec document as JSON: JSON text as it is, otherwise YAML (plain
// scalars read as YAML 1.2's core schema: true/false, numbers, null;
// quoted ones stay strings). kInvalidArgument (field "body") when it is
// neither, with the YAML parser's line and column.
Result<Json> ParseSpecDocument(std::string_view text);

// Priority classes as one config string: comma-separated
// "name=value[:never][:preemptible]" ("never": may not preempt lower classes;
// "preemptible": its jobs may be preempted unless they say otherwise).
// The default is DefaultPriorityClasses() in this form:
inline constexpr std::string_view kDefaultPriorityClasses =
    "prod=1000,dev=100:preemptible,batch=10:never:preemptible";
Result<std::vector<PriorityClass>> ParsePriorityClasses(std::string_view text);
// Quotas: comma-separated "project=nominal[:borrowing_limit[:weight]]";
// borrowing_limit -1 or absent = no limit; "" = no quotas.
Result<std::vector<ProjectQuota>> ParseQuotas(std::string_view text);

struct Attempt {
  int number = 0;
  std::string executor, external_id;
  std::vector<NodeAllocation> allocation;
  bool borrowed = false;
  int64_t admitted_us = 0, started_us = 0, ended_us = 0;
  std::string exit_kind;  // "" while it runs; ExitKindName otherwise
  int exit_code = -1;
  int signal = 0;
  std::string detail;
  Json ToJson() const;
};

struct Job {
  std::string id;
  JobSpec spec;
  std::string user;  // who submitted it
  std::string state;
  int attempts = 0;  // attempts started so far
  int preemptions = 0;
  int64_t queued_us = 0;      // when it last entered Queued
  int64_t not_before_us = 0;  // retry backoff: not admitted before
  int64_t first_started_us = 0;
  int64_t finished_us = 0;  // when it reached a final state
  bool scratch_removed = false;
  std::string tracking_run_id;
  std::string failure;  // last failure's description
  int64_t created_us = 0, updated_us = 0;
  std::vector<Attempt> attempt_list;  // filled by GetJob
  Json ToJson() const;
};

struct ListJobsRequest {
  std::optional<std::set<std::string>> projects;  // nullopt: all
  std::string state;                              // "" = any
  std::string after;                              // id to continue after
  int limit = 100;
};

struct Options {
  PolicyConfig policy;
  std::chrono::milliseconds cycle_interval{1000};
  // Retry backoff: base × 2^(retry-1), capped (Kubernetes: 10 s, 6 min).
  std::chrono::milliseconds backoff_base{10000};
  std::chrono::milliseconds backoff_cap{360000};
  std::chrono::milliseconds termination_grace{10000};  // SIGTERM -> SIGKILL
  int64_t fair_share_half_life_s = 7 * 24 * 3600;
  std::string scratch_root;  // attempts' scratch directories and logs
  std::string tracking_uri;  // MLFLOW_TRACKING_URI injected into jobs ("" = none)
};

// The explanation of a job's state for `kervan jobs explain`.
struct Explanation {
  std::string state;
  std::string summary;               // one sentence
  std::optional<WaitReason> reason;  // when it waits in the queue
  Json ToJson() const;
};

class Jobs {
 public:
  // Registers the "job" lifecycle, discovers the executor's nodes and takes
  // attempts left running by an earlier server back (Executor::Adopt): the
  // ones nothing is known of any more become Failed with "lost" — never
  // silently forgotten.
  static Result<std::unique_ptr<Jobs>> Open(store::Database& db, store::EventLog& log,
                                            store::Lifecycles& lifecycles,
                                            std::unique_ptr<Executor> executor, Options options,
                                            tracking::Tracking* tracking = nullptr);
  ~Jobs();

  // Validates (unknown priority class, a job no node could ever hold,
  // quota-free check of resources) and queues the job. Nothing is queued on
  // an error.
  Result<Job> Submit(const JobSpec& spec, const store::CommandContext& ctx);
  Result<Job> GetJob(const std::string& id);
  Result<std::vector<Job>> ListJobs(const ListJobsRequest& request);
  Result<Job> Cancel(const std::string& id, const std::string& reason,
                     const store::CommandContext& ctx);
  Result<Explanation> Explain(const std::string& id);

  // The attempt's log from byte `offset` (at most `max_bytes`); attempt 0 =
  // the latest. Returns the bytes and the offset after them.
  Result<std::pair<std::string, int64_t>> ReadLog(const std::string& id, int attempt,
                                                  int64_t offset, int64_t max_bytes);

  const std::vector<Node>& nodes() const { return nodes_; }
  const PolicyConfig& policy() const { return options_.policy; }
  // MLFLOW_TRACKING_URI for jobs launched from now on (the server knows its
  // port only once it listens). Call before Start().
  void set_tracking_uri(std::string uri) { options_.tracking_uri = std::move(uri); }

  // One pass of the loop: collect attempt ends, enforce deadlines, requeue,
  // schedule, launch, clean up after TTLs. Start() runs it every
  // cycle_interval on a thread of its own; tests call it directly.
  Status RunCycle();
  void Start();
  void Stop();

 private:
  struct State;
  Jobs(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
       std::unique_ptr<Executor> executor, Options options, tracking::Tracking* tracking);
  Status Recover();
  const PriorityClass* FindClass(const std::string& name) const;
  Status EndAttempt(const std::string& job_id, int attempt, const ExitReport& exit,
                    const std::string& transition);
  Status AdmitAndLaunch(const Job& job, const Admission& admission, int64_t now);
  Status CleanUpFinished(int64_t now);
  void Wake();

  store::Database& db_;
  store::EventLog& log_;
  store::Lifecycles& lifecycles_;
  std::unique_ptr<Executor> executor_;
  Options options_;
  tracking::Tracking* tracking_;
  std::vector<Node> nodes_;
  std::unique_ptr<State> state_;
};

// /api/v1/jobs, /api/v1/nodes, /api/v1/scheduler (docs/api.md, docs/scheduling.md).
// Permissions: job.read, job.submit, job.cancel in the job's project.
Status RegisterRoutes(http::Router& router, Jobs& jobs, const auth::Auth& auth);

// The supervisor the local executor runs each attempt under
// (`kervan job-shim`): runs argv after "--", records its exit status.
int RunJobShim(int argc, char** argv);

}  // namespace kervan::jobs
