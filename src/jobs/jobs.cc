// The jobs service: submission, the lifecycle, and the scheduler loop that
// feeds the pure policy (policy.h) from the store and carries its decisions
// out through the executor.
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "jobs/internal.h"
#include "tracking/tracking.h"

namespace kervan::jobs {
namespace {

namespace fs = std::filesystem;
using store::CommandContext;
using store::CommandTx;
using store::Row;
using store::Value;

constexpr std::string_view kJobColumns =
    "id, name, project, user_name, priority_class, spec, state, attempts, preemptions, "
    "queued_us, not_before_us, first_started_us, finished_us, scratch_removed, "
    "tracking_run_id, failure, retry_pending, created_us, updated_us";

Job JobFromRow(const Row& row) {
  Job j;
  j.id = row.Text(0);
  Json spec = Json::parse(row.Text(5), nullptr, false);
  if (auto parsed = JobSpec::FromJson(spec))
    j.spec = std::move(*parsed);
  j.spec.name = row.Text(1);
  j.spec.project = row.Text(2);
  j.user = row.Text(3);
  j.spec.priority_class = row.Text(4);
  j.state = row.Text(6);
  j.attempts = static_cast<int>(row.Int(7));
  j.preemptions = static_cast<int>(row.Int(8));
  j.queued_us = row.Int(9);
  j.not_before_us = row.Int(10);
  j.first_started_us = row.Int(11);
  j.finished_us = row.Int(12);
  j.scratch_removed = row.Int(13) != 0;
  j.tracking_run_id = row.Text(14);
  j.failure = row.Text(15);
  j.created_us = row.Int(17);
  j.updated_us = row.Int(18);
  return j;
}

constexpr std::string_view kAttemptColumns =
    "job_id, attempt, executor, external_id, allocation, borrowed, admitted_us, started_us, "
    "ended_us, exit_kind, exit_code, signal, detail";

Attempt AttemptFromRow(const Row& row) {
  Attempt a;
  a.number = static_cast<int>(row.Int(1));
  a.executor = row.Text(2);
  a.external_id = row.Text(3);
  a.allocation = AllocationFromJson(Json::parse(row.Text(4), nullptr, false));
  a.borrowed = row.Int(5) != 0;
  a.admitted_us = row.Int(6);
  a.started_us = row.Int(7);
  a.ended_us = row.Int(8);
  a.exit_kind = row.Text(9);
  a.exit_code = static_cast<int>(row.Int(10));
  a.signal = static_cast<int>(row.Int(11));
  a.detail = row.Text(12);
  return a;
}

Result<core::StateMachine> JobMachine() {
  const std::string sched = "job.schedule";
  return core::StateMachine::Build(
      std::string(kJobKind),
      {std::string(kQueued), std::string(kAdmitted), std::string(kRunning), std::string(kSucceeded),
       std::string(kFailed), std::string(kPreempted), std::string(kCancelled)},
      std::string(kQueued),
      {
          {.name = "admit",
           .from = {"Queued"},
           .to = "Admitted",
           .event = "admitted",
           .permission = sched},
          {.name = "start",
           .from = {"Admitted"},
           .to = "Running",
           .event = "started",
           .permission = sched},
          {.name = "succeed",
           .from = {"Running"},
           .to = "Succeeded",
           .event = "succeeded",
           .permission = sched},
          {.name = "fail",
           .from = {"Admitted", "Running"},
           .to = "Failed",
           .event = "failed",
           .permission = sched},
          {.name = "preempt",
           .from = {"Admitted", "Running"},
           .to = "Preempted",
           .event = "preempted",
           .permission = sched},
          {.name = "requeue",
           .from = {"Preempted", "Admitted"},
           .to = "Queued",
           .event = "requeued",
           .permission = sched},
          {.name = "retry",
           .from = {"Failed"},
           .to = "Queued",
           .event = "retried",
           .permission = sched},
          {.name = "cancel",
           .from = {"Queued", "Admitted", "Running", "Preempted"},
           .to = "Cancelled",
           .event = "cancelled",
           .permission = "job.cancel",
           .reason_required = true},
      });
}

using core::StatusOf;

CommandContext SchedulerContext(const std::string& project) {
  return {.actor = std::string(kSchedulerActor), .project = project};
}

bool IsFinal(const Job& j) {
  return j.state == kSucceeded || j.state == kCancelled ||
         (j.state == kFailed && j.finished_us > 0);
}

int Gpus(const std::vector<NodeAllocation>& allocation) {
  int n = 0;
  for (const auto& a : allocation)
    n += static_cast<int>(a.gpu_indices.size());
  return n;
}

}  // namespace

struct Jobs::State {
  std::mutex mu;                              // one cycle or command at a time
  std::map<std::string, WaitReason> waiting;  // the last cycle's reasons
  int64_t last_cycle_us = 0;
  // Decayed GPU-seconds of ended attempts, as of usage_us.
  Usage usage;
  int64_t usage_us = 0;
  // Attempts asked to stop, by external id: "cancel", "preempt", "deadline".
  std::map<std::string, std::string> stopping;
  // Queued jobs waiting for their victims to stop: job id -> the victims'
  // external ids. Such a job sits out the policy until they have stopped,
  // so no cycle picks fresh victims for room that is already being made.
  std::map<std::string, std::set<std::string>> awaiting_victims;

  std::mutex loop_mu;
  std::condition_variable loop_cv;
  bool stop = false;
  std::thread loop;
};

Jobs::Jobs(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
           std::unique_ptr<Executor> executor, Options options, tracking::Tracking* tracking)
    : db_(db),
      log_(log),
      lifecycles_(lifecycles),
      executor_(std::move(executor)),
      options_(std::move(options)),
      tracking_(tracking),
      state_(std::make_unique<State>()) {}

Jobs::~Jobs() {
  Stop();
}

namespace {

// What one cycle works on, loaded from the store.
struct OpenAttempt {
  Attempt attempt;
  std::string job_id;
};

// One query on a pooled connection that is returned at once.
Result<store::Rows> QueryRows(store::Database& db, std::string_view sql,
                              const std::vector<Value>& params = {}) {
  ASSIGN_OR_RETURN(auto conn, db.Acquire());
  return conn->Query(sql, params);
}

Result<std::vector<OpenAttempt>> LoadOpenAttempts(store::Database& db) {
  ASSIGN_OR_RETURN(auto conn, db.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM job_attempts WHERE "
                                                      "ended_us = 0 ORDER BY job_id, attempt",
                                                      kAttemptColumns)));
  std::vector<OpenAttempt> out;
  for (const auto& row : rows)
    out.push_back({AttemptFromRow(row), row.Text(0)});
  return out;
}

}  // namespace

Result<std::unique_ptr<Jobs>> Jobs::Open(store::Database& db, store::EventLog& log,
                                         store::Lifecycles& lifecycles,
                                         std::unique_ptr<Executor> executor, Options options,
                                         tracking::Tracking* tracking) {
  if (!executor)
    return core::InvalidArgument("jobs: an executor is required");
  if (options.scratch_root.empty())
    return core::InvalidArgument("jobs: scratch_root is required");
  for (const auto& c : options.policy.priority_classes) {
    if (c.name.empty())
      return core::InvalidArgument("jobs: a priority class needs a name");
  }
  if (!lifecycles.Find(std::string(kJobKind))) {
    ASSIGN_OR_RETURN(auto machine, JobMachine());
    RETURN_IF_ERROR(lifecycles.Register(std::move(machine)));
  }
  std::unique_ptr<Jobs> jobs(
      new Jobs(db, log, lifecycles, std::move(executor), std::move(options), tracking));
  ASSIGN_OR_RETURN(jobs->nodes_, jobs->executor_->DiscoverNodes());
  RETURN_IF_ERROR(jobs->Recover());
  return jobs;
}

// Usage from ended attempts (decayed to now) and adoption of open ones.
Status Jobs::Recover() {
  int64_t now = core::NowMicros();
  int64_t half_life = options_.fair_share_half_life_s * 1000000;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows,
                     conn->Query("SELECT j.project, j.user_name, a.allocation, a.started_us, "
                                 "a.ended_us FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                                 "WHERE a.ended_us > 0 AND a.started_us > 0"));
    for (const auto& row : rows) {
      int gpus = Gpus(AllocationFromJson(Json::parse(row.Text(2), nullptr, false)));
      double seconds = static_cast<double>(row.Int(4) - row.Int(3)) / 1e6;
      double used = DecayUsage(gpus * std::max(0.0, seconds), now - row.Int(4), half_life);
      state_->usage.by_project[row.Text(0)] += used;
      state_->usage.by_user[row.Text(0) + "/" + row.Text(1)] += used;
    }
  }
  state_->usage_us = now;

  ASSIGN_OR_RETURN(auto open, LoadOpenAttempts(db_));
  for (const auto& o : open) {
    if (o.attempt.external_id.empty()) {
      // Admitted, but the server stopped before launching it.
      RETURN_IF_ERROR(EndAttempt(o.job_id, o.attempt.number,
                                 {.kind = ExitKind::kLost, .detail = "never launched"}, "requeue"));
      continue;
    }
    auto adopted = executor_->Adopt(o.job_id, o.attempt.number, o.attempt.external_id);
    if (adopted && *adopted) {
      core::LogInfo("adopted a running job attempt", {{"event.action", "job.adopted"},
                                                      {"job.id", o.job_id},
                                                      {"job.attempt", o.attempt.number},
                                                      {"job.external_id", o.attempt.external_id}});
      // An attempt that was being stopped when the server went down is
      // stopped again: the SIGKILL after the grace period is the new
      // server's to send.
      auto job = GetJob(o.job_id);
      if (job && (job->state == kPreempted || job->state == kCancelled)) {
        state_->stopping[o.attempt.external_id] = job->state == kPreempted ? "preempt" : "cancel";
        (void)executor_->Terminate(o.attempt.external_id, options_.termination_grace);
      }
      continue;
    }
    std::string why =
        adopted ? "the attempt's process is gone and left no exit status" : adopted.error().message;
    RETURN_IF_ERROR(EndAttempt(
        o.job_id, o.attempt.number,
        {.external_id = o.attempt.external_id, .kind = ExitKind::kLost, .detail = "lost: " + why},
        ""));
  }
  return core::Ok();
}

Result<Job> Jobs::GetJob(const std::string& id) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows,
                   conn->Query(fmt::format("SELECT {} FROM jobs WHERE id = ?", kJobColumns), {id}));
  if (rows.empty())
    return core::NotFound(fmt::format("job \"{}\" not found", id));
  Job job = JobFromRow(rows[0]);
  ASSIGN_OR_RETURN(auto attempts,
                   conn->Query(fmt::format("SELECT {} FROM job_attempts WHERE job_id = ? ORDER BY "
                                           "attempt",
                                           kAttemptColumns),
                               {id}));
  for (const auto& row : attempts)
    job.attempt_list.push_back(AttemptFromRow(row));
  return job;
}

Result<std::vector<Job>> Jobs::ListJobs(const ListJobsRequest& request) {
  std::string sql = fmt::format("SELECT {} FROM jobs WHERE id > ?", kJobColumns);
  std::vector<Value> params = {request.after};
  if (!request.state.empty()) {
    sql += " AND state = ?";
    params.push_back(request.state);
  }
  if (request.projects) {
    if (request.projects->empty())
      return std::vector<Job>{};
    sql += " AND project IN (";
    bool first = true;
    for (const auto& p : *request.projects) {
      sql += first ? "?" : ", ?";
      first = false;
      params.push_back(p);
    }
    sql += ")";
  }
  sql += " ORDER BY id LIMIT ?";
  params.push_back(static_cast<int64_t>(request.limit));
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(sql, params));
  std::vector<Job> out;
  for (const auto& row : rows)
    out.push_back(JobFromRow(row));
  return out;
}

const PriorityClass* Jobs::FindClass(const std::string& name) const {
  for (const auto& c : options_.policy.priority_classes) {
    if (c.name == name)
      return &c;
  }
  return nullptr;
}

Result<Job> Jobs::Submit(const JobSpec& spec_in, const CommandContext& ctx) {
  JobSpec spec = spec_in;
  const PriorityClass* cls = FindClass(spec.priority_class);
  if (!cls) {
    std::string known;
    for (const auto& c : options_.policy.priority_classes)
      known += (known.empty() ? "" : ", ") + c.name;
    return core::InvalidArgument(
        fmt::format("field \"priority_class\": unknown priority class \"{}\" (configured: {})",
                    spec.priority_class, known),
        "priority_class");
  }
  if (auto why = NeverFits(nodes_, spec.resources))
    return core::InvalidArgument(
        fmt::format("field \"resources\": the job can never run here: {}", *why), "resources");
  for (const auto& q : options_.policy.quotas) {
    if (q.project == spec.project && q.borrowing_limit >= 0 &&
        spec.resources.gpus > q.nominal_gpus + q.borrowing_limit) {
      return core::InvalidArgument(
          fmt::format("field \"resources.gpus\": the job can never run here: it asks for {} GPUs "
                      "but project \"{}\" may use at most {} (nominal {} + borrowing limit {})",
                      spec.resources.gpus, spec.project, q.nominal_gpus + q.borrowing_limit,
                      q.nominal_gpus, q.borrowing_limit),
          "resources.gpus");
    }
  }
  std::string run_id;
  if (!spec.tracking_run_id.empty() || !spec.tracking_experiment_id.empty()) {
    if (!tracking_)
      return core::InvalidArgument("field \"tracking\": tracking is not enabled on this server",
                                   "tracking");
    if (!spec.tracking_run_id.empty()) {
      auto run = tracking_->GetRunInfo(spec.tracking_run_id);
      if (!run) {
        return core::InvalidArgument(
            fmt::format("field \"tracking.run_id\": {}", run.error().message), "tracking.run_id");
      }
      run_id = spec.tracking_run_id;
    }
  }

  std::string id = core::NewUuidV7();
  if (!spec.tracking_experiment_id.empty()) {
    tracking::CreateRunRequest r{.experiment_id = spec.tracking_experiment_id,
                                 .user_id = ctx.actor,
                                 .run_name = spec.name.empty() ? "job-" + id : spec.name,
                                 .tags = {{"kervan.job_id", id}}};
    auto run = tracking_->CreateRun(r, ctx);
    if (!run) {
      return core::InvalidArgument(
          fmt::format("field \"tracking.experiment_id\": {}", run.error().message),
          "tracking.experiment_id");
    }
    run_id = run->info.run_id;
  }

  int64_t now = core::NowMicros();
  CommandContext c = ctx;
  c.project = spec.project;
  Json data = {{"project", spec.project},
               {"priority_class", spec.priority_class},
               {"gpus", spec.resources.gpus},
               {"user", ctx.actor}};
  if (!run_id.empty())
    data["tracking_run_id"] = run_id;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    RETURN_IF_ERROR(StatusOf(lifecycles_.CreateIn(tx, std::string(kJobKind), id, data, c)));
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO jobs (id, name, project, user_name, priority_class, spec, state, queued_us, "
        "tracking_run_id, created_us, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {id, spec.name.empty() ? id : spec.name, spec.project, ctx.actor, spec.priority_class,
         spec.ToJson().dump(), std::string(kQueued), now, run_id, now, now}));
    return core::Ok();
  });
  if (!done)
    return done.error();
  Wake();
  return GetJob(id);
}

Result<Job> Jobs::Cancel(const std::string& id, const std::string& reason,
                         const CommandContext& ctx) {
  std::lock_guard lock(state_->mu);
  ASSIGN_OR_RETURN(Job job, GetJob(id));
  CommandContext c = ctx;
  c.project = job.spec.project;
  int64_t now = core::NowMicros();
  core::TransitionRequest request{.transition = "cancel", .reason = reason};
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    RETURN_IF_ERROR(StatusOf(lifecycles_.TransitionIn(tx, std::string(kJobKind), id, request, c)));
    return StatusOf(
        tx.conn().Exec("UPDATE jobs SET state = ?, finished_us = ?, retry_pending = 0, updated_us "
                       "= ? WHERE id = ?",
                       {std::string(kCancelled), now, now, id}));
  });
  if (!done)
    return done.error();
  for (const auto& a : job.attempt_list) {
    if (a.ended_us == 0 && !a.external_id.empty() && !state_->stopping.contains(a.external_id)) {
      state_->stopping[a.external_id] = "cancel";
      if (auto s = executor_->Terminate(a.external_id, options_.termination_grace); !s) {
        core::LogWarn("cannot stop a cancelled job's attempt",
                      {{"job.id", id}, {"error.message", s.error().message}});
      }
    }
  }
  state_->waiting.erase(id);
  state_->awaiting_victims.erase(id);
  return GetJob(id);
}

// Ends an attempt in the store and moves its job on: `transition` "" picks
// by the job's state and the exit (succeed, fail with retry, requeue after
// preemption); otherwise that transition is applied.
Status Jobs::EndAttempt(const std::string& job_id, int attempt, const ExitReport& exit,
                        const std::string& transition) {
  ASSIGN_OR_RETURN(Job job, GetJob(job_id));
  const Attempt* a = nullptr;
  for (const auto& x : job.attempt_list) {
    if (x.number == attempt)
      a = &x;
  }
  if (!a || a->ended_us != 0)
    return core::Ok();  // already recorded
  int64_t now = core::NowMicros();
  std::string stop_why;
  if (auto it = state_->stopping.find(a->external_id);
      !a->external_id.empty() && it != state_->stopping.end()) {
    stop_why = it->second;
    state_->stopping.erase(it);
  }

  // Fair-share usage: the attempt's GPU-seconds.
  if (a->started_us > 0) {
    double used = Gpus(a->allocation) * static_cast<double>(now - a->started_us) / 1e6;
    state_->usage.by_project[job.spec.project] += used;
    state_->usage.by_user[job.spec.project + "/" + job.user] += used;
  }

  std::string next = transition;
  std::string failure;
  bool retry = false;
  int64_t not_before = 0;
  if (next.empty()) {
    if (job.state == kPreempted) {
      next = "requeue";
    } else if (job.state == kRunning || job.state == kAdmitted) {
      if (exit.kind == ExitKind::kSucceeded && job.state == kRunning) {
        next = "succeed";
      } else {
        next = "fail";
        if (stop_why == "deadline" || exit.detail == "deadline") {
          failure =
              fmt::format("DeadlineExceeded: the job ran longer than active_deadline_s ({} s)",
                          job.spec.active_deadline_s);
        } else {
          failure = fmt::format("attempt {} {}: {}", attempt, ExitKindName(exit.kind),
                                exit.detail.empty() ? "no detail" : exit.detail);
          retry = job.attempts <= job.spec.backoff_limit;
        }
        if (retry) {
          int64_t base =
              std::chrono::duration_cast<std::chrono::microseconds>(options_.backoff_base).count();
          int64_t cap =
              std::chrono::duration_cast<std::chrono::microseconds>(options_.backoff_cap).count();
          int shift = std::min(job.attempts - 1, 30);
          not_before = now + std::min(cap, base << std::max(0, shift));
        }
      }
    }
  }

  Json details = {{"attempt", attempt}, {"exit", exit.ToJson()}};
  if (!stop_why.empty())
    details["stopped_for"] = stop_why;
  if (next == "fail") {
    details["failure"] = failure;
    details["retry"] = retry;
    if (retry) {
      details["retry_after"] = core::FormatRfc3339(not_before);
      details["retries_left"] = job.spec.backoff_limit - job.attempts + 1;
    }
  }
  CommandContext c = SchedulerContext(job.spec.project);
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    RETURN_IF_ERROR(tx.conn().Exec(
        "UPDATE job_attempts SET ended_us = ?, exit_kind = ?, exit_code = ?, signal = ?, "
        "detail = ?, external_id = CASE WHEN external_id = '' THEN ? ELSE external_id END "
        "WHERE job_id = ? AND attempt = ?",
        {now, std::string(ExitKindName(exit.kind)), static_cast<int64_t>(exit.exit_code),
         static_cast<int64_t>(exit.signal), exit.detail, exit.external_id, job_id,
         static_cast<int64_t>(attempt)}));
    if (next.empty())
      return core::Ok();  // the job already moved on (cancelled)
    core::TransitionRequest request{.transition = next, .request_data = &details};
    ASSIGN_OR_RETURN(store::Entity e,
                     lifecycles_.TransitionIn(tx, std::string(kJobKind), job_id, request, c));
    bool final = next == "succeed" || (next == "fail" && !retry);
    return StatusOf(tx.conn().Exec(
        "UPDATE jobs SET state = ?, failure = CASE WHEN ? = '' THEN failure ELSE ? END, "
        "retry_pending = ?, not_before_us = ?, finished_us = ?, updated_us = ? WHERE id = ?",
        {e.state, failure, failure, static_cast<int64_t>(retry ? 1 : 0), not_before,
         final ? now : int64_t{0}, now, job_id}));
  });
  if (!done)
    return done.error();
  if (tracking_ && !job.tracking_run_id.empty() && (next == "succeed" || next == "fail")) {
    // The job's tracking run ends with the job (a pending retry keeps it open).
    if (next == "succeed" || !retry) {
      tracking::UpdateRunRequest u{.status = next == "succeed" ? "FINISHED" : "FAILED",
                                   .end_time = now / 1000};
      (void)tracking_->UpdateRun(job.tracking_run_id, u, c);
    }
  }
  return core::Ok();
}

Status Jobs::RunCycle() {
  std::lock_guard lock(state_->mu);
  int64_t now = core::NowMicros();

  // 1. Attempts that ended.
  for (const ExitReport& r : executor_->Poll()) {
    if (auto s = EndAttempt(r.job_id, r.attempt, r, ""); !s) {
      core::LogError("cannot record a job attempt's end",
                     {{"job.id", r.job_id}, {"error.message", s.error().message}});
    }
  }

  // 2. Deadlines, counted from the job's first start (as Kubernetes'
  //    activeDeadlineSeconds); a job past it fails without retry.
  ASSIGN_OR_RETURN(auto open, LoadOpenAttempts(db_));
  std::map<std::string, Job> open_jobs;
  for (const auto& o : open) {
    if (!open_jobs.contains(o.job_id)) {
      ASSIGN_OR_RETURN(Job j, GetJob(o.job_id));
      open_jobs.emplace(o.job_id, std::move(j));
    }
    const Job& j = open_jobs.at(o.job_id);
    if (j.state == kRunning && j.spec.active_deadline_s > 0 && j.first_started_us > 0 &&
        now - j.first_started_us > j.spec.active_deadline_s * 1000000 &&
        !state_->stopping.contains(o.attempt.external_id)) {
      state_->stopping[o.attempt.external_id] = "deadline";
      core::LogInfo("job passed its deadline; stopping it",
                    {{"event.action", "job.deadline"}, {"job.id", j.id}});
      (void)executor_->Terminate(o.attempt.external_id, options_.termination_grace);
    }
  }

  // 3. Retries whose backoff has passed.
  {
    ASSIGN_OR_RETURN(auto due, QueryRows(db_,
                                         "SELECT id, project FROM jobs WHERE state = ? AND "
                                         "retry_pending = 1 AND not_before_us <= ?",
                                         {std::string(kFailed), now}));
    for (const auto& row : due) {
      std::string id = row.Text(0);
      CommandContext c = SchedulerContext(row.Text(1));
      core::TransitionRequest request{.transition = "retry"};
      auto done = log_.Execute([&](CommandTx& tx) -> Status {
        RETURN_IF_ERROR(
            StatusOf(lifecycles_.TransitionIn(tx, std::string(kJobKind), id, request, c)));
        return StatusOf(
            tx.conn().Exec("UPDATE jobs SET state = ?, retry_pending = 0, queued_us = ?, "
                           "updated_us = ? WHERE id = ?",
                           {std::string(kQueued), now, now, id}));
      });
      if (!done)
        core::LogError("cannot requeue a job for retry", {{"job.id", id}});
    }
  }

  // 4. The policy's inputs.
  ClusterState cluster{.nodes = nodes_, .now_us = now};
  Usage usage;
  int64_t half_life = options_.fair_share_half_life_s * 1000000;
  for (const auto& [k, v] : state_->usage.by_project)
    usage.by_project[k] = DecayUsage(v, now - state_->usage_us, half_life);
  for (const auto& [k, v] : state_->usage.by_user)
    usage.by_user[k] = DecayUsage(v, now - state_->usage_us, half_life);
  state_->usage = usage;
  state_->usage_us = now;
  ASSIGN_OR_RETURN(open, LoadOpenAttempts(db_));
  std::map<std::string, std::string> external_of;  // job id -> its open attempt's external id
  for (const auto& o : open) {
    if (!open_jobs.contains(o.job_id)) {
      ASSIGN_OR_RETURN(Job j, GetJob(o.job_id));
      open_jobs.emplace(o.job_id, std::move(j));
    }
    const Job& j = open_jobs.at(o.job_id);
    const PriorityClass* cls = FindClass(j.spec.priority_class);
    bool stopping = j.state != kRunning && j.state != kAdmitted;
    // A stopping attempt holds its GPUs until it has ended, but no longer
    // counts toward its project's quota (it is leaving; counting it would make
    // the project look as if it still borrowed, and reclaim would go on).
    RunningJob r{.id = j.id,
                 .project = stopping ? std::string("(stopping)") : j.spec.project,
                 .user = j.user,
                 .priority_class = j.spec.priority_class,
                 // A job already on its way out is nobody's victim again.
                 .preemptible = !stopping &&
                                j.spec.preemptible.value_or(cls ? cls->preemptible_default : false),
                 .allocation = o.attempt.allocation,
                 .started_us = o.attempt.started_us ? o.attempt.started_us : o.attempt.admitted_us,
                 .borrowed = o.attempt.borrowed};
    if (j.spec.expected_runtime_s > 0)
      r.expected_end_us = r.started_us + j.spec.expected_runtime_s * 1000000;
    if (r.started_us > 0) {
      double so_far = Gpus(r.allocation) * static_cast<double>(now - r.started_us) / 1e6;
      usage.by_project[j.spec.project] += so_far;
      usage.by_user[j.spec.project + "/" + r.user] += so_far;
    }
    external_of[j.id] = o.attempt.external_id;
    cluster.running.push_back(std::move(r));
  }
  std::vector<PendingJob> pending;
  std::map<std::string, Job> queued;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(
        auto rows,
        conn->Query(fmt::format("SELECT {} FROM jobs WHERE state = ? ORDER BY id", kJobColumns),
                    {std::string(kQueued)}));
    for (const auto& row : rows) {
      Job j = JobFromRow(row);
      if (auto it = state_->awaiting_victims.find(j.id); it != state_->awaiting_victims.end()) {
        std::erase_if(it->second,
                      [&](const std::string& ext) { return !state_->stopping.contains(ext); });
        if (!it->second.empty()) {
          queued.emplace(j.id, std::move(j));  // keeps last cycle's reason (kPreempting)
          continue;
        }
        state_->awaiting_victims.erase(it);
      }
      const PriorityClass* cls = FindClass(j.spec.priority_class);
      pending.push_back(
          {.id = j.id,
           .project = j.spec.project,
           .user = j.user,
           .priority_class = j.spec.priority_class,
           .resources = j.spec.resources,
           .preemptible = j.spec.preemptible.value_or(cls ? cls->preemptible_default : false),
           .queued_us = j.queued_us,
           .expected_runtime_us = j.spec.expected_runtime_s * 1000000});
      queued.emplace(j.id, std::move(j));
    }
  }

  // 5. Decide.
  Decision decision = Schedule(options_.policy, cluster, pending, usage);

  // 6. Make room: the victims stop; their GPUs stay theirs until they have.
  for (const Preemption& p : decision.preempted) {
    auto it = open_jobs.find(p.victim_id);
    if (it == open_jobs.end())
      continue;
    const Job& victim = it->second;
    Json details = {{"preempted_by", p.for_job_id},
                    {"why", p.why == Preemption::Why::kPriority ? "priority" : "reclaim"}};
    CommandContext c = SchedulerContext(victim.spec.project);
    core::TransitionRequest request{.transition = "preempt", .request_data = &details};
    auto done = log_.Execute([&](CommandTx& tx) -> Status {
      RETURN_IF_ERROR(
          StatusOf(lifecycles_.TransitionIn(tx, std::string(kJobKind), victim.id, request, c)));
      return StatusOf(
          tx.conn().Exec("UPDATE jobs SET state = ?, preemptions = preemptions + 1, "
                         "updated_us = ? WHERE id = ?",
                         {std::string(kPreempted), now, victim.id}));
    });
    if (!done) {
      core::LogError("cannot preempt a job", {{"job.id", victim.id}});
      continue;
    }
    const std::string& ext = external_of[victim.id];
    if (!ext.empty()) {
      state_->stopping[ext] = "preempt";
      state_->awaiting_victims[p.for_job_id].insert(ext);
      (void)executor_->Terminate(ext, options_.termination_grace);
    }
  }

  // 7. Admit and launch.
  for (const Admission& a : decision.admitted) {
    auto it = queued.find(a.job_id);
    if (it == queued.end())
      continue;
    if (auto s = AdmitAndLaunch(it->second, a, now); !s) {
      core::LogError("cannot admit a job",
                     {{"job.id", a.job_id}, {"error.message", s.error().message}});
    }
  }
  for (auto& [id, reason] : decision.waiting)
    state_->waiting[id] = std::move(reason);
  std::erase_if(state_->waiting, [&](const auto& entry) { return !queued.contains(entry.first); });
  state_->last_cycle_us = now;

  // 8. TTL: remove finished jobs' scratch directories.
  RETURN_IF_ERROR(CleanUpFinished(now));
  return core::Ok();
}

Status Jobs::AdmitAndLaunch(const Job& job, const Admission& admission, int64_t now) {
  int attempt = job.attempts + 1;
  CommandContext c = SchedulerContext(job.spec.project);
  Json details = {{"attempt", attempt},
                  {"allocation", AllocationJson(admission.allocation)},
                  {"borrowed", admission.borrowed}};
  core::TransitionRequest admit{.transition = "admit", .request_data = &details};
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    RETURN_IF_ERROR(
        StatusOf(lifecycles_.TransitionIn(tx, std::string(kJobKind), job.id, admit, c)));
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO job_attempts (job_id, attempt, executor, allocation, borrowed, admitted_us) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        {job.id, static_cast<int64_t>(attempt), std::string(executor_->name()),
         AllocationJson(admission.allocation).dump(), static_cast<int64_t>(admission.borrowed),
         now}));
    return StatusOf(
        tx.conn().Exec("UPDATE jobs SET state = ?, attempts = ?, updated_us = ? WHERE id = ?",
                       {std::string(kAdmitted), static_cast<int64_t>(attempt), now, job.id}));
  });
  if (!done)
    return done.error();

  LaunchSpec spec{.job_id = job.id,
                  .attempt = attempt,
                  .name = job.spec.name.empty() ? job.id : job.spec.name,
                  .project = job.spec.project,
                  .user = job.user,
                  .priority_class = job.spec.priority_class,
                  .command = job.spec.command,
                  .working_dir = job.spec.working_dir,
                  .env = job.spec.env,
                  .resources = job.spec.resources,
                  .allocation = admission.allocation,
                  .image = job.spec.image,
                  .active_deadline_s = job.spec.active_deadline_s,
                  .backoff_limit = job.spec.backoff_limit,
                  .ttl_after_finished_s = job.spec.ttl_after_finished_s};
  std::string job_dir = fmt::format("{}/{}", options_.scratch_root, job.id);
  spec.scratch_dir = job_dir + "/scratch";
  spec.log_path = fmt::format("{}/attempt-{}.log", job_dir, attempt);
  std::error_code ec;
  fs::create_directories(spec.scratch_dir, ec);
  Result<std::string> launched = core::Internal("not launched");
  if (ec) {
    launched = core::Internal(fmt::format("cannot create {}: {}", spec.scratch_dir, ec.message()));
  } else {
    spec.env["KERVAN_JOB_ID"] = job.id;
    spec.env["KERVAN_JOB_NAME"] = spec.name;
    spec.env["KERVAN_ATTEMPT"] = std::to_string(attempt);
    spec.env["KERVAN_PROJECT"] = job.spec.project;
    spec.env["KERVAN_PRIORITY_CLASS"] = job.spec.priority_class;
    spec.env["KERVAN_SCRATCH_DIR"] = spec.scratch_dir;
    if (!job.spec.config_file_name.empty()) {
      std::string path = spec.scratch_dir + "/" + job.spec.config_file_name;
      std::ofstream(path, std::ios::binary | std::ios::trunc) << job.spec.config_file_content;
      spec.env["KERVAN_CONFIG_FILE"] = path;
    }
    if (!job.tracking_run_id.empty()) {
      spec.env["MLFLOW_RUN_ID"] = job.tracking_run_id;
      if (!options_.tracking_uri.empty())
        spec.env["MLFLOW_TRACKING_URI"] = options_.tracking_uri;
    }
    launched = executor_->Launch(spec);
  }
  now = core::NowMicros();
  if (!launched) {
    ExitReport r{.job_id = job.id,
                 .attempt = attempt,
                 .kind = ExitKind::kFailed,
                 .detail = "launch failed: " + launched.error().message};
    return EndAttempt(job.id, attempt, r, "");
  }
  Json started = {
      {"attempt", attempt}, {"external_id", *launched}, {"executor", executor_->name()}};
  core::TransitionRequest start{.transition = "start", .request_data = &started};
  auto ok = log_.Execute([&](CommandTx& tx) -> Status {
    RETURN_IF_ERROR(
        StatusOf(lifecycles_.TransitionIn(tx, std::string(kJobKind), job.id, start, c)));
    RETURN_IF_ERROR(tx.conn().Exec(
        "UPDATE job_attempts SET external_id = ?, started_us = ? WHERE job_id = ? AND attempt = ?",
        {*launched, now, job.id, static_cast<int64_t>(attempt)}));
    return StatusOf(tx.conn().Exec(
        "UPDATE jobs SET state = ?, first_started_us = CASE WHEN first_started_us = 0 THEN ? ELSE "
        "first_started_us END, updated_us = ? WHERE id = ?",
        {std::string(kRunning), now, now, job.id}));
  });
  if (!ok)
    return ok.error();
  if (tracking_ && !job.tracking_run_id.empty()) {
    tracking::UpdateRunRequest u{.status = "RUNNING"};
    (void)tracking_->UpdateRun(job.tracking_run_id, u, c);
  }
  return core::Ok();
}

Status Jobs::CleanUpFinished(int64_t now) {
  ASSIGN_OR_RETURN(auto rows,
                   QueryRows(db_, fmt::format("SELECT {} FROM jobs WHERE finished_us > 0 AND "
                                              "scratch_removed = 0 ORDER BY finished_us LIMIT 100",
                                              kJobColumns)));
  for (const auto& row : rows) {
    Job j = JobFromRow(row);
    if (j.spec.ttl_after_finished_s <= 0 ||
        now < j.finished_us + j.spec.ttl_after_finished_s * 1000000 || !IsFinal(j))
      continue;
    std::string dir = fmt::format("{}/{}/scratch", options_.scratch_root, j.id);
    std::error_code ec;
    auto removed = fs::remove_all(dir, ec);
    if (ec) {
      core::LogWarn("cannot remove a finished job's scratch directory",
                    {{"job.id", j.id}, {"error.message", ec.message()}});
      continue;
    }
    CommandContext c = SchedulerContext(j.spec.project);
    auto done = log_.Execute([&](CommandTx& tx) -> Status {
      ASSIGN_OR_RETURN(auto ev,
                       tx.Append({.type = "job.scratch_removed",
                                  .subject_kind = std::string(kJobKind),
                                  .subject_id = j.id,
                                  .actor = c.actor,
                                  .project = j.spec.project,
                                  .data = {{"ttl_after_finished_s", j.spec.ttl_after_finished_s},
                                           {"files_removed", removed}}}));
      (void)ev;
      return StatusOf(tx.conn().Exec(
          "UPDATE jobs SET scratch_removed = 1, updated_us = ? WHERE id = ?", {now, j.id}));
    });
    if (!done)
      return done.error();
  }
  return core::Ok();
}

Result<Explanation> Jobs::Explain(const std::string& id) {
  ASSIGN_OR_RETURN(Job job, GetJob(id));
  Explanation e{.state = job.state};
  std::lock_guard lock(state_->mu);
  const Attempt* last = job.attempt_list.empty() ? nullptr : &job.attempt_list.back();
  if (job.state == kQueued) {
    auto it = state_->waiting.find(id);
    if (it == state_->waiting.end()) {
      e.summary = "queued; waiting for the next scheduling cycle";
    } else {
      e.reason = it->second;
      PendingJob p{.id = job.id,
                   .project = job.spec.project,
                   .user = job.user,
                   .priority_class = job.spec.priority_class,
                   .resources = job.spec.resources};
      e.summary = jobs::Explain(it->second, p);
    }
  } else if (job.state == kAdmitted || job.state == kRunning) {
    std::string where;
    if (last) {
      for (const auto& a : last->allocation) {
        where +=
            (where.empty() ? "" : "; ") + fmt::format("node {} GPUs [{}]", a.node, GpuList({a}));
      }
    }
    e.summary = fmt::format("{} attempt {} on {}", job.state == kRunning ? "running" : "admitted",
                            job.attempts, where.empty() ? "the cluster (no GPUs)" : where);
  } else if (job.state == kPreempted) {
    e.summary = "preempted; stopping, then requeued with its original queue position";
  } else if (job.state == kFailed) {
    e.summary = job.finished_us > 0
                    ? fmt::format("failed after {} attempt(s): {}", job.attempts, job.failure)
                    : fmt::format("failed ({}); retry {} of {} at {}", job.failure, job.attempts,
                                  job.spec.backoff_limit, core::FormatRfc3339(job.not_before_us));
  } else if (job.state == kSucceeded) {
    e.summary = fmt::format("succeeded on attempt {}", job.attempts);
  } else {
    e.summary = "cancelled";
  }
  return e;
}

Result<std::pair<std::string, int64_t>> Jobs::ReadLog(const std::string& id, int attempt,
                                                      int64_t offset, int64_t max_bytes) {
  ASSIGN_OR_RETURN(Job job, GetJob(id));
  if (attempt == 0)
    attempt = job.attempts;
  if (attempt < 1 || attempt > job.attempts) {
    if (job.attempts == 0)
      return std::pair<std::string, int64_t>{"", 0};
    return core::InvalidArgument(
        fmt::format("query parameter \"attempt\": job \"{}\" has attempts 1-{}", id, job.attempts),
        "attempt");
  }
  std::string path = fmt::format("{}/{}/attempt-{}.log", options_.scratch_root, id, attempt);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::pair<std::string, int64_t>{"", offset};
  in.seekg(0, std::ios::end);
  int64_t size = in.tellg();
  if (offset > size)
    offset = size;
  in.seekg(offset);
  std::string bytes(static_cast<size_t>(std::min(max_bytes, size - offset)), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(in.gcount()));
  return std::pair<std::string, int64_t>{bytes, offset + static_cast<int64_t>(bytes.size())};
}

void Jobs::Wake() {
  state_->loop_cv.notify_all();
}

void Jobs::Start() {
  std::lock_guard lock(state_->loop_mu);
  if (state_->loop.joinable())
    return;
  state_->stop = false;
  state_->loop = std::thread([this] {
    std::unique_lock lock(state_->loop_mu);
    while (!state_->stop) {
      lock.unlock();
      if (auto s = RunCycle(); !s)
        core::LogError("scheduling cycle failed", {{"error.message", s.error().message}});
      lock.lock();
      state_->loop_cv.wait_for(lock, options_.cycle_interval);
    }
  });
}

void Jobs::Stop() {
  {
    std::lock_guard lock(state_->loop_mu);
    state_->stop = true;
  }
  state_->loop_cv.notify_all();
  if (state_->loop.joinable())
    state_->loop.join();
}

}  // namespace kervan::jobs
