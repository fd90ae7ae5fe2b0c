// Executors run one attempt of a job somewhere: a local process group, a
// Slurm batch job, a Kubernetes Job. The scheduler decides what runs and
// where (policy.h); an executor only carries that out and reports how each
// attempt ended. One interface, so the same job spec runs unchanged on a
// laptop, on Slurm or on Kubernetes.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/core.h"
#include "jobs/policy.h"

namespace kervan::jobs {

using core::Json;
using core::Result;
using core::Status;

// One attempt of a job, fully resolved by the scheduler.
struct LaunchSpec {
  std::string job_id;
  int attempt = 1;  // 1-based; a retry or a requeue after preemption is a new attempt
  std::string name;
  std::string project, user;
  std::string priority_class;
  std::vector<std::string> command;  // argv; command[0] is looked up in PATH
  std::string working_dir;           // "" = the attempt's scratch dir
  // The job's env plus what Kervan injects (KERVAN_JOB_ID, KERVAN_ATTEMPT,
  // MLFLOW_TRACKING_URI, MLFLOW_RUN_ID, ...). Executors add their own
  // binding (CUDA_VISIBLE_DEVICES) from `allocation`.
  std::map<std::string, std::string> env;
  Resources resources;
  std::vector<NodeAllocation> allocation;  // empty for a CPU-only job
  std::string image;                       // container image (Kubernetes)
  int64_t active_deadline_s = 0;           // 0 = none; the executor enforces it where it can
  int backoff_limit = 0;                   // for manifests; Kervan itself retries
  int64_t ttl_after_finished_s = 0;        // for manifests
  std::string log_path;                    // stdout and stderr of the attempt, appended
  std::string scratch_dir;                 // created by the caller; removed after the TTL
};

// How an attempt ended.
enum class ExitKind {
  kSucceeded,   // exit status 0
  kFailed,      // non-zero exit status or killed by a signal nobody asked for
  kTerminated,  // stopped because Kervan asked (cancel, preemption, Kervan's deadline check)
  kLost,        // the executor cannot tell (process vanished without a status)
};
std::string_view ExitKindName(ExitKind kind);

struct ExitReport {
  std::string job_id;
  int attempt = 0;
  std::string external_id;
  ExitKind kind = ExitKind::kFailed;
  int exit_code = -1;  // -1 when unknown
  int signal = 0;      // the terminating signal, 0 when none
  // e.g. "killed by signal 9"; exactly "deadline" when the executor's own
  // time limit (Slurm's --time, Kubernetes' activeDeadlineSeconds) ended it.
  std::string detail;
  Json ToJson() const;
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual std::string_view name() const = 0;  // "local", "slurm", "kubernetes"

  // The nodes this executor can place jobs on.
  virtual Result<std::vector<Node>> DiscoverNodes() = 0;

  // Starts the attempt; returns the executor's id for it (local:
  // "<pid>", slurm: the job id, kubernetes: the Job name). The attempt
  // runs asynchronously; its end is reported by Poll.
  virtual Result<std::string> Launch(const LaunchSpec& spec) = 0;

  // Asks the attempt to stop: SIGTERM (scancel, delete) now, SIGKILL after
  // `grace`. Returns at once; Poll reports the end as kTerminated.
  virtual Status Terminate(const std::string& external_id, std::chrono::milliseconds grace) = 0;

  // Attempts that ended since the last call.
  virtual std::vector<ExitReport> Poll() = 0;

  // After a server restart: takes an attempt launched by an earlier server
  // back under watch. Returns true when it is still running (Poll reports
  // its end later) or has ended with a known outcome (Poll reports it);
  // false when nothing is known of it any more (the caller marks it lost).
  virtual Result<bool> Adopt(const std::string& job_id, int attempt,
                             const std::string& external_id) = 0;
};

// ---- The executors ----------------------------------------------------

struct LocalExecutorOptions {
  // The nodes: discovered with `nvidia-smi --query-gpu` when it is on PATH
  // and finds GPUs, else one node named after the host with
  // `virtual_gpus` GPUs (tests, laptops).
  int virtual_gpus = 0;
  std::string node_name;  // "" = the host name
  // The program run as the attempt's supervisor (`kervan job-shim`), which
  // records the exit status in a file so a restarted server can still read
  // it. "" = /proc/self/exe.
  std::string shim_path;
  std::string state_dir;  // where the supervisor files live (exit status, pid)
};
std::unique_ptr<Executor> MakeLocalExecutor(LocalExecutorOptions options);

struct SlurmOptions {
  std::string bin_dir;  // where sbatch, squeue, scontrol, scancel live; "" = PATH
  // Priority class -> partition (and QOS); a class without an entry uses
  // the cluster's default partition.
  std::map<std::string, std::string> partition_by_class;
  std::map<std::string, std::string> qos_by_class;
  std::string jobcomp_path;  // JobCompLoc of jobcomp/filetxt, "" = not read
  std::string slurm_conf;    // SLURM_CONF for the commands, "" = inherited
  // Appended to every sbatch call, e.g. "--account=ml".
  std::vector<std::string> extra_sbatch_args;
  // Limit for each sbatch/squeue/scontrol/scancel call.
  std::chrono::milliseconds command_timeout{30000};
};
Result<std::unique_ptr<Executor>> MakeSlurmExecutor(SlurmOptions options);

struct KubernetesOptions {
  std::string kubectl = "kubectl";
  std::string namespace_name = "default";
  std::string context;  // "" = kubectl's current context
  // Kervan priority class -> Kubernetes PriorityClass name ("" = same name).
  std::map<std::string, std::string> priority_class_names;
  // The container image when a LaunchSpec has none.
  std::string default_image;
  // Limit for each kubectl call.
  std::chrono::milliseconds command_timeout{30000};
};
// The batch/v1 Job manifest for an attempt: PriorityClass, nvidia.com/gpu
// limits, backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished and
// labels linking to Kervan's ids (kervan.dev/job-id, kervan.dev/attempt,
// kervan.dev/project).
Json KubernetesJobManifest(const LaunchSpec& spec, const KubernetesOptions& options);
Result<std::unique_ptr<Executor>> MakeKubernetesExecutor(KubernetesOptions options);

}  // namespace kervan::jobs
