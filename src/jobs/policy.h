// The scheduling policy: which pending jobs start now, where, and which
// running jobs must make room. Pure and deterministic: the same inputs give
// the same Decision, with no clock, no I/O and no randomness, so the server's
// scheduler loop and the trace-driven simulator run the very same code.
//
// One cycle, in order (docs/scheduling.md explains each knob):
//  1. Order. Pending jobs by priority-class value (descending); inside one
//     class, projects take turns by fair share — the project with the lowest
//     (decayed GPU-seconds + GPU-seconds admitted so far in this cycle) /
//     weight goes next — and inside a project, users likewise; ties by
//     queued time, then id. Modes kFifo and kStrictPriority replace this with
//     queued time, or priority then queued time (the baselines of the
//     simulator's comparison table). Each admission charges its project and
//     user gpus × expected runtime (gpus × 3600 s when the runtime is
//     unknown) for the rest of the cycle, so projects take turns.
//  2. Quota (Kueue's cohort idea; the whole cluster is one cohort). A
//     project may use its nominal GPUs, and borrow idle GPUs beyond them up to
//     its borrowing limit. A job that would exceed nominal + limit waits with
//     reason kQuota. Projects without a quota entry have nominal 0 and an
//     unlimited borrowing limit (all they use is borrowed).
//  3. Gang placement. All of a job's GPUs at once: on one node (best fit:
//     the node with the fewest free GPUs that still fits; ties by name), or,
//     when the job asks for `nodes` > 1, gpus/nodes on each of that many
//     distinct nodes. CPUs and memory must fit too; gpu_type must match when
//     given. GPU indices are chosen lowest first.
//  4. Preemption, when a job does not fit. Victims are running preemptible
//     jobs that are either of a lower priority class (when the job's class
//     may preempt), or borrowing beyond their project's nominal share while
//     the job's project is within its nominal share (reclaim). As in Kueue,
//     a lower-priority victim of another project must itself be borrowing:
//     a project within its nominal share is never preempted by a borrower.
//     Classes with kNever preempt neither way. On the node
//     (or nodes) needing the fewest victims — lowest priority first, then
//     the most recently started — the victims are named in the Decision;
//     the job itself waits (kPreempting) until they are gone, and no GPU
//     they free is given to anyone else in this cycle.
//  5. Backfill (EASY). The first job in order that neither fits nor can
//     preempt holds a reservation: the earliest time at which, by the
//     running jobs' expected end times, enough GPUs free up on some node(s).
//     A later job may still start now if it fits and either ends (by its
//     runtime estimate, from ClusterState::now_us) before the reservation
//     starts or uses none of the reserved GPUs. Jobs without an estimate
//     only use unreserved GPUs; running jobs without expected_end_us count
//     as never ending.
//     With backfill off (and in the baseline modes), nothing behind the
//     blocked job starts (kBehindJob).
//
// The explanation of every job left waiting is a WaitReason: a code with the
// numbers behind it, formatted only when asked (Explain), so a cycle over
// 100,000 pending jobs stays cheap.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kervan::jobs {

// How a priority class treats lower classes.
enum class PreemptionPolicy { kPreemptLowerPriority, kNever };

struct PriorityClass {
  std::string name;  // "prod"
  int value = 0;     // higher goes first
  PreemptionPolicy preemption = PreemptionPolicy::kPreemptLowerPriority;
  bool preemptible_default =
      false;  // jobs of this class may be preempted unless they say otherwise
};

// The defaults: prod (1000, preempts, not preemptible), dev (100, preempts
// lower, preemptible), batch (10, never preempts, preemptible).
std::vector<PriorityClass> DefaultPriorityClasses();

struct ProjectQuota {
  std::string project;
  int nominal_gpus = 0;
  int borrowing_limit = -1;  // GPUs beyond nominal it may borrow; -1: no limit
  double weight = 1.0;       // fair-share weight (> 0)
};

enum class PolicyMode { kKervan, kFifo, kStrictPriority };

struct PolicyConfig {
  PolicyMode mode = PolicyMode::kKervan;
  std::vector<PriorityClass> priority_classes = DefaultPriorityClasses();
  std::vector<ProjectQuota> quotas;
  bool preemption = true;  // kFifo never preempts; kStrictPriority only by priority
  bool backfill = true;    // kKervan only
  // At most this many preemption searches per cycle (bounds the cost of a
  // cycle when many high-priority jobs wait on a full cluster).
  int max_preemption_searches = 64;
  // false: Decision.waiting is left empty (the simulator, which needs only
  // admissions and preemptions, saves the cost of 100,000 explanations).
  bool explain_waiting = true;
};

struct Node {
  std::string name;
  int gpus = 0;
  std::string gpu_type;   // "" when unknown
  int cpus = 0;           // 0: not tracked
  int64_t memory_mb = 0;  // 0: not tracked
  bool schedulable = true;
};

// What a job asks for. gpus may be 0 (a CPU-only job).
struct Resources {
  int gpus = 0;
  std::string gpu_type;  // "" = any
  int cpus = 0;
  int64_t memory_mb = 0;
  int nodes = 1;  // > 1: gpus (and cpus, memory) split evenly over that many nodes
};

struct PendingJob {
  std::string id;
  std::string project, user;
  std::string priority_class;  // must name a configured class
  Resources resources;
  bool preemptible = false;
  int64_t queued_us = 0;            // when it (last) entered the queue
  int64_t expected_runtime_us = 0;  // estimate for backfill; 0 = unknown
};

// GPUs of one node given to a job.
struct NodeAllocation {
  std::string node;
  std::vector<int> gpu_indices;
  int cpus = 0;
  int64_t memory_mb = 0;
};

struct RunningJob {
  std::string id;
  std::string project, user;
  std::string priority_class;
  bool preemptible = false;
  std::vector<NodeAllocation> allocation;
  int64_t started_us = 0;
  int64_t expected_end_us = 0;  // 0 = unknown
  // True when it was admitted beyond its project's nominal share; kept for
  // information — reclaim decisions recompute borrowing from current usage.
  bool borrowed = false;
};

// Decayed recent usage in GPU-seconds (Slurm's fair-share idea; the caller
// decays it, see DecayUsage).
struct Usage {
  std::map<std::string, double> by_project;
  std::map<std::string, double> by_user;  // key "<project>/<user>"
};

// usage × 2^(-elapsed/half_life): what the caller applies between cycles.
double DecayUsage(double usage, int64_t elapsed_us, int64_t half_life_us);

struct ClusterState {
  std::vector<Node> nodes;
  std::vector<RunningJob> running;  // includes jobs admitted but not yet started
  // The cycle's time, on the same clock as queued_us/expected_end_us. Backfill
  // compares now_us + expected_runtime_us with the reservation.
  int64_t now_us = 0;
};

enum class WaitCode {
  kQuota,         // would exceed nominal + borrowing limit
  kNoFit,         // no node (set) has the resources free now
  kPreempting,    // victims named in this cycle must go first
  kReservation,   // would delay the reserved head job
  kBehindJob,     // FIFO / strict priority / no backfill: behind a blocked job
  kNeverFits,     // no node could hold it even when empty
  kUnknownClass,  // priority class not configured
};

struct WaitReason {
  WaitCode code = WaitCode::kNoFit;
  std::string other_job;          // kPreempting: unused; kReservation/kBehindJob: the blocked job
  int64_t position = 0;           // 1-based position in this cycle's order
  int project_used_gpus = 0;      // kQuota: the project's GPUs in use (incl. admitted this cycle)
  int project_limit_gpus = 0;     // kQuota: nominal + borrowing limit
  int max_free_gpus = 0;          // kNoFit: the most free GPUs on one eligible node
  int64_t reservation_us = 0;     // kReservation: when the blocked job is expected to start
  double fair_share_usage = 0;    // the project's normalized usage when it was ordered
  int project_nominal_gpus = 0;   // kQuota: the nominal part of project_limit_gpus
  int victims = 0;                // kPreempting: how many running jobs are being stopped
  int64_t reservation_in_us = 0;  // kReservation: reservation_us - now_us (0: unknown)
  std::string detail;             // kNeverFits: NeverFits's sentence; kUnknownClass: the class
};

struct Admission {
  std::string job_id;
  std::vector<NodeAllocation> allocation;
  bool borrowed = false;  // admitted beyond its project's nominal share
};

struct Preemption {
  std::string victim_id;
  std::string for_job_id;  // the job that needs the room
  enum class Why { kPriority, kReclaim } why = Why::kPriority;
};

struct Decision {
  std::vector<Admission> admitted;  // in admission order
  std::vector<Preemption> preempted;
  std::map<std::string, WaitReason> waiting;  // every pending job not admitted
};

// One scheduling cycle. Pending jobs whose class is unknown wait with
// kUnknownClass; everything else as the header comment says.
Decision Schedule(const PolicyConfig& config, const ClusterState& cluster,
                  const std::vector<PendingJob>& pending, const Usage& usage);

// nullopt when some schedulable node set could hold `resources` when empty;
// otherwise a sentence naming why not ("asks for 16 GPUs on one node; the
// largest node has 8"). Used to refuse a job at submission.
std::optional<std::string> NeverFits(const std::vector<Node>& nodes, const Resources& resources);

// A sentence for people: "waits for quota: project risk uses 8 of 8 GPUs
// (nominal 4 + borrowing limit 4)".
std::string Explain(const WaitReason& reason, const PendingJob& job);

std::string_view WaitCodeName(WaitCode code);  // "quota", "no_fit", ...

}  // namespace kervan::jobs
