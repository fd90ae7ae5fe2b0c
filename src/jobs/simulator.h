// The trace-driven scheduling simulator: replays a job trace on a virtual
// clock against a cluster, running the very same Schedule() the server runs,
// and reports completion times, queueing delays, utilization, preemptions and
// fairness, so policies can be compared on the same workload
// (docs/scheduling.md). Pure: depends on core/ and policy.h only — no store,
// no HTTP, no wall clock, no threads. Deterministic: the same trace, cluster,
// config and options give the same report.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/result.h"
#include "jobs/policy.h"

namespace kervan::jobs {

// One job of a trace. CSV columns (docs/scheduling.md, "Trace format"): a
// header row naming the columns, in any order:
//   job_id,submit_s,duration_s,gpus,nodes,project,user,priority_class,preemptible[,gpu_type]
// submit_s and duration_s are seconds (decimals allowed) from the trace's
// start; gpus >= 0; nodes >= 1 with gpus % nodes == 0; preemptible is
// true|false|1|0 or empty (the class's default); gpu_type may be empty.
// Fields are plain (no quoting): they may not contain commas. Blank lines
// and lines starting with '#' are skipped.
struct TraceJob {
  std::string id;
  int64_t submit_us = 0;
  int64_t duration_us = 0;
  int gpus = 1;
  int nodes = 1;
  std::string project, user, priority_class;
  std::optional<bool> preemptible;  // nullopt: the class's preemptible_default
  std::string gpu_type;
};

// Parses a CSV trace. kInvalidArgument naming the line (1-based) and the
// column (1-based, with its name) on the first error; duplicate job ids are
// an error. Jobs come back in file order.
core::Result<std::vector<TraceJob>> ParseTrace(std::string_view csv);
core::Result<std::vector<TraceJob>> ReadTraceFile(const std::string& path);
// The CSV text of `jobs` (with a header row); ParseTrace reads it back.
std::string FormatTrace(const std::vector<TraceJob>& jobs);

// A synthetic trace. Deterministic for a seed on every platform (its own
// distributions over std::mt19937_64, never std:: distributions).
struct TraceGenOptions {
  int jobs = 1000;
  uint64_t seed = 1;
  int projects = 6;           // "p1".."pN"; job share ∝ 1/rank (Zipf-like)
  int users_per_project = 4;  // "u1".."uN" inside each project
  double prod_share = 0.10;   // the rest after prod and dev is batch
  double dev_share = 0.40;
  // Poisson arrivals with this mean gap, modulated by a day/night cycle
  // (rate × (1 + 0.5·sin(2π·t/day))) when `diurnal`.
  double mean_interarrival_s = 25;
  bool diurnal = true;
  // Durations: log-normal (heavy-tailed), median and sigma of the log, capped.
  double median_duration_s = 1200;
  double duration_sigma = 1.5;
  double max_duration_s = 3 * 86400;
  // GPUs: 1/2/4/8 with these weights; `multi_node_share` of the 8-GPU jobs
  // become 16 GPUs on 2 nodes.
  std::vector<double> gpu_weights = {0.55, 0.2, 0.13, 0.12};
  double multi_node_share = 0.2;
  std::vector<std::string> gpu_types;  // non-empty: each job asks for one at random
  double typed_share = 0.3;            // of the jobs, when gpu_types is given
};
std::vector<TraceJob> GenerateTrace(const TraceGenOptions& options);

// "1000x8" (1000 nodes of 8 GPUs), "4x8:A100,2x4:V100" (typed groups).
// Nodes are named n0000, n0001, ... in spec order (zero-padded so name order
// is spec order). kInvalidArgument naming the offending group.
core::Result<std::vector<Node>> ParseClusterSpec(std::string_view spec);

// "risk=8" (nominal 8, unlimited borrowing), "risk=8:4" (borrow up to 4),
// "risk=8:4:2" (fair-share weight 2). Limit -1 means unlimited.
core::Result<ProjectQuota> ParseQuotaSpec(std::string_view spec);
// One quota spec per line; blank lines and '#' comments skipped.
core::Result<std::vector<ProjectQuota>> ParseQuotaFile(std::string_view text);

struct SimulationOptions {
  // Cycles run at event times (arrival, completion), at most one per period.
  int64_t cycle_us = 10'000'000;
  // Fair-share usage half-life (GPU-seconds decay continuously).
  int64_t usage_half_life_us = 86'400'000'000;
  // false: jobs tell the scheduler their true duration (the simulator's
  // default); true: no estimates (backfill then only uses unreserved GPUs).
  bool hide_runtime_estimates = false;
};

// Statistics of a set of completed jobs. Times in seconds. Percentiles are
// nearest-rank. queue = start of the run that completed − submission (it
// includes waits after preemptions and the work they threw away), so
// jct = queue + duration.
struct GroupStats {
  std::string name;
  int64_t jobs = 0;
  double avg_jct_s = 0, p50_jct_s = 0, p95_jct_s = 0, p99_jct_s = 0;
  double avg_queue_s = 0, p50_queue_s = 0, p95_queue_s = 0, p99_queue_s = 0;
  // Mean bounded slowdown: max(1, jct / max(duration, 10 s)).
  double mean_slowdown = 0;
};

struct SimulationReport {
  std::string policy;   // "kervan", "fifo", "strict"
  std::string cluster;  // "128 nodes, 1024 GPUs"
  int64_t jobs = 0;     // in the trace
  int64_t completed = 0;
  int64_t rejected = 0;    // never fit the cluster or name an unknown class
  int64_t unfinished = 0;  // still waiting when nothing could change (e.g. over quota forever)
  std::vector<std::string> rejected_examples;  // at most 5 "id: why"
  double makespan_s = 0;                       // first submission to last completion
  double gpu_utilization = 0;  // busy GPU-seconds (incl. preempted work) / (GPUs × makespan)
  double lost_gpu_hours = 0;   // work thrown away by preemption
  int64_t preemptions = 0;
  int64_t cycles = 0;
  // Jain's index over projects of x_p = 1 / mean bounded slowdown of p:
  // (Σx)² / (n·Σx²); 1 when every project is slowed down alike, 1/n at worst.
  double fairness = 0;
  GroupStats overall;
  std::vector<GroupStats> by_class;    // configured class order (value desc)
  std::vector<GroupStats> by_project;  // name order
};

// Replays `trace` on `nodes` with `config`. Each job enters the queue at
// submit time and runs for exactly its duration once admitted; a preempted
// job goes back to the queue (queued at the preemption time) and restarts
// from scratch; the GPUs of victims are free at once and a follow-up cycle
// runs at the same instant. Jobs that never fit, or name an unknown class,
// are rejected at submission (as the server does) and left out of the
// statistics. kInvalidArgument when the cluster is empty or the trace is.
core::Result<SimulationReport> Simulate(const std::vector<TraceJob>& trace,
                                        const std::vector<Node>& nodes, const PolicyConfig& config,
                                        const SimulationOptions& options);

// Jain's fairness index (Σx)²/(n·Σx²); 0 for an empty or all-zero input.
double JainIndex(const std::vector<double>& values);
// Nearest-rank percentile (p in (0, 100]) of `values` (sorted by the call).
double Percentile(std::vector<double> values, double p);

std::string_view PolicyModeName(PolicyMode mode);  // "kervan", "fifo", "strict"
core::Result<PolicyMode> ParsePolicyMode(std::string_view name);

// A text report (aligned tables) and its JSON form.
std::string FormatReport(const SimulationReport& report);
core::Json ReportToJson(const SimulationReport& report);
// One row per report: policy, avg JCT, p99 queueing delay of the first
// class (prod), utilization, fairness, preemptions.
std::string FormatComparison(const std::vector<SimulationReport>& reports);

}  // namespace kervan::jobs
