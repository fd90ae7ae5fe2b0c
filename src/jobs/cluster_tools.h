// Internals of the Slurm and Kubernetes executors (slurm_executor.cc,
// kubernetes.cc): running their command-line tools, and the pure functions
// that build their input and parse their output. Only those two files and
// their tests include this header; the rest of Kervan sees executor.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jobs/executor.h"

namespace kervan::jobs::internal {

// ---- Running a tool (defined in slurm_executor.cc) ---------------------

struct ToolRun {
  std::vector<std::string> argv;  // argv[0] without a '/' is looked up in PATH
  std::string input;              // written to the tool's stdin
  // Set on top of this process's environment ("" removes a variable).
  std::map<std::string, std::string> env;
  // Replaces this process's environment entirely when true (env then is
  // all the tool gets).
  bool clear_env = false;
  std::chrono::milliseconds timeout{30000};
};

struct ToolOutput {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out, err;
};

// Runs the tool without a shell (posix_spawn, pipes). Fails when it cannot be
// started (kUnavailable) or does not finish within the timeout (it is then
// killed, kDeadlineExceeded); any exit status is a value.
Result<ToolOutput> RunTool(const ToolRun& run);

// Like RunTool, and a non-zero exit status is an error (kUnavailable) whose
// message names the command and quotes its stderr. Returns stdout.
Result<std::string> RunToolChecked(const ToolRun& run);

// ---- Slurm (slurm_executor.cc) ----------------------------------------

// `s` quoted for POSIX sh: 'it'\''s'. Always quotes; "" gives ''.
std::string ShellQuote(std::string_view s);

// The batch script of an attempt: exports the env (names must be shell
// identifiers), changes into the working directory and execs the command.
Result<std::string> SlurmBatchScript(const LaunchSpec& spec);

// sbatch's argv (without the program) for an attempt whose script is at
// `script_path`.
Result<std::vector<std::string>> SbatchArgs(const LaunchSpec& spec, const SlurmOptions& options,
                                            const std::string& script_path);

// What Slurm knows of one job.
struct SlurmJob {
  std::string id;
  std::string state;        // base state: "RUNNING", "COMPLETED", "TIMEOUT", ...
  bool completing = false;  // ended, processes still being cleaned up
  std::string reason;       // state_reason, "" when none
  std::string name, comment;
  int exit_code = -1;  // -1 when unknown or killed by a signal
  int signal = 0;
};

// "3:0" -> exit 3; "0:15" -> signal 15. Slurm's ExitCode field.
Result<SlurmJob> ParseSlurmExitCode(std::string_view text);

// `squeue --json` (OpenAPI v0.0.38 of Slurm 22.05, and the later shapes
// where job_state is a list and exit_code an object).
Result<std::vector<SlurmJob>> ParseSqueueJson(std::string_view text);

// The last record of job `id` in a jobcomp/filetxt file; nullopt when none.
std::optional<SlurmJob> FindJobcompRecord(std::string_view text, std::string_view id);

// Whether the state is final (the job no longer runs and will not again).
bool IsSlurmFinalState(std::string_view state);

// How an ended job maps to an ExitReport (job_id and attempt left empty).
ExitReport SlurmExitReport(const SlurmJob& job, bool terminate_requested);

// `scontrol -o show node`: one node per line.
Result<std::vector<Node>> ParseSlurmNodes(std::string_view text);

// ---- Kubernetes (kubernetes.cc) -----------------------------------------

// The Job's name: "kervan-<job id>-<attempt>", lowercased, DNS-1123 safe,
// at most 63 characters (a hash keeps long ids distinct).
std::string KubernetesJobName(std::string_view job_id, int attempt);

// How a batch/v1 Job (as `kubectl get job -o json` prints it) ended;
// nullopt while it has not.
std::optional<ExitReport> KubernetesJobEnd(const Json& job, bool terminate_requested);

// `kubectl get nodes -o json`.
Result<std::vector<Node>> ParseKubernetesNodes(const Json& list);

}  // namespace kervan::jobs::internal
