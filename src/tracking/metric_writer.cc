// The group-commit writer for metric points; see metric_writer.h.
#include "tracking/metric_writer.h"

#include <map>
#include <string_view>
#include <utility>

#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include "core/log.h"

namespace kervan::tracking::internal {
namespace {

using store::Connection;
using store::Value;

}  // namespace

MetricWriter::MetricWriter(store::Database& db, size_t max_group_points)
    : db_(db),
      max_group_points_(max_group_points),
      wake_fd_(db.dialect() == store::Dialect::kPostgres ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
                                                         : -1),
      compactor_(db.dialect() == store::Dialect::kPostgres ? std::thread([this] { CompactLoop(); })
                                                           : std::thread()),
      thread_([this] { Loop(); }) {}

MetricWriter::~MetricWriter() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  queued_cv_.notify_one();
  thread_.join();
  if (compactor_.joinable()) {
    {
      std::lock_guard lk(mu_);
      stopping_compactor_ = true;  // after the writer: it schedules compactions
    }
    compact_cv_.notify_one();
    compactor_.join();
  }
  if (wake_fd_ >= 0)
    close(wake_fd_);
}

void MetricWriter::WaitForCompactions() {
  std::unique_lock lk(mu_);
  compacted_cv_.wait(lk, [&] { return to_compact_.empty() && !compacting_; });
}

void MetricWriter::CompactLoop() {
  std::unique_lock lk(mu_);
  for (;;) {
    compact_cv_.wait(lk, [&] { return stopping_compactor_ || !to_compact_.empty(); });
    if (to_compact_.empty())
      return;  // stopping, nothing left
    std::vector<int64_t> runs;
    while (!to_compact_.empty() && runs.size() < kMaxRunsPerCompaction)
      runs.push_back(to_compact_.extract(to_compact_.begin()).value());
    compacting_ = true;
    lk.unlock();
    Result<uint64_t> moved = CompactInTransaction(runs);
    lk.lock();
    compacting_ = false;
    if (moved) {
      stats_.compactions += *moved;
    } else {
      // The points stay in their batch rows (reads see them there); the
      // runs are counted again and compacted on a later write.
      recount_.insert(runs.begin(), runs.end());
      core::LogWarn("metric compaction failed; the runs will be compacted later",
                    {{"event.action", "tracking.compaction_failed"},
                     {"error.message", moved.error().ToString()},
                     {"kervan.runs", runs.size()}});
    }
    compacted_cv_.notify_all();
  }
}

Result<uint64_t> MetricWriter::CompactInTransaction(const std::vector<int64_t>& runs) {
  if (!compact_conn_) {
    ASSIGN_OR_RETURN(compact_conn_, db_.OpenDedicated());
  }
  Connection& conn = *compact_conn_;
  auto fail = [&](core::Error error) -> core::Error {
    if (conn.InTransaction() && !conn.Rollback())
      compact_conn_.reset();
    else if (error.code == core::ErrorCode::kUnavailable)
      compact_conn_.reset();  // reconnect next time
    return error;
  };
  if (Status s = conn.Begin(); !s)
    return fail(s.error());
  // A plain index scan for the DELETE ... WHERE run_pk: it marks the index
  // entries of rows that earlier compactions deleted as dead (LP_DEAD),
  // which a bitmap scan never does, so until autovacuum each compaction of
  // a run walked all of them again: in a 10 s log-metric round that was a
  // tenth of PostgreSQL's CPU, and it grew with every second of logging.
  if (auto set = conn.Exec("SET LOCAL enable_bitmapscan = off"); !set)
    return fail(set.error());
  auto moved_runs = CompactRuns(conn, runs);
  if (!moved_runs)
    return fail(moved_runs.error());
  if (Status s = conn.Commit(); !s)
    return fail(s.error());
  return *moved_runs;
}

void MetricWriter::Prepare(Pending& p) {
  for (const PointChunk& c : *p.chunks)
    p.points += static_cast<size_t>(c.n);
  p.batch = JoinChunks(*p.chunks);  // on the caller's thread, not the writer's
}

Status MetricWriter::Write(int64_t run_pk, const std::string& run_id,
                           const std::vector<PointChunk>& chunks) {
  Pending p{.run_pk = run_pk, .run_id = &run_id, .chunks = &chunks};
  Prepare(p);
  std::unique_lock lk(mu_);
  queue_.push_back(&p);
  Enqueued();
  p.done_cv.wait(lk, [&] { return p.done; });
  return p.result;
}

void MetricWriter::WriteAsync(int64_t run_pk, std::string run_id, std::vector<PointChunk> chunks,
                              std::function<void(Status)> done) {
  auto* a = new AsyncPending{.run_id = std::move(run_id),
                             .chunks = std::move(chunks),
                             .done = std::move(done),
                             .pending = {.run_pk = run_pk}};
  Pending& p = a->pending;
  p.run_id = &a->run_id;
  p.chunks = &a->chunks;
  p.async = a;  // the writer owns it from here
  Prepare(p);
  std::lock_guard lk(mu_);
  queue_.push_back(&p);
  Enqueued();
}

void MetricWriter::Enqueued() {
  queued_cv_.notify_one();
  if (queue_.size() >= wake_at_) {
    wake_at_ = kNoWake;
    const uint64_t one = 1;
    // Cannot fail but for an overflowing counter, which still wakes.
    (void)!write(wake_fd_, &one, sizeof one);
  }
}

MetricWriter::Stats MetricWriter::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void MetricWriter::Loop() {
  if (wake_fd_ >= 0)
    PipelinedLoop();
  else
    SerialLoop();
}

std::vector<MetricWriter::Pending*> MetricWriter::TakeGroup() {
  std::vector<Pending*> group;
  size_t points = 0;
  while (!queue_.empty() &&
         (group.empty() || points + queue_.front()->points <= max_group_points_)) {
    points += queue_.front()->points;
    group.push_back(queue_.front());
    queue_.pop_front();
  }
  return group;
}

void MetricWriter::SerialLoop() {
  std::unique_lock lk(mu_);
  for (;;) {
    queued_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty())
      return;  // stopping, nothing left
    std::vector<Pending*> group = TakeGroup();
    lk.unlock();
    const uint64_t commits = WriteOrRetryAlone(group);
    lk.lock();
    stats_.commits += commits;
    Answer(group, lk);
  }
}

uint64_t MetricWriter::WriteOrRetryAlone(std::vector<Pending*>& group) {
  Status s = WriteGroup(group);
  if (s)
    return 1;
  if (group.size() == 1) {
    group[0]->result = s;
    return 0;
  }
  // Something in the group broke the transaction: give each request its
  // own, so only the culprit fails.
  return WriteEachAlone(group);
}

uint64_t MetricWriter::WriteEachAlone(std::vector<Pending*>& requests) {
  uint64_t commits = 0;
  for (Pending* p : requests) {
    std::vector<Pending*> one{p};
    if (Status alone = WriteGroup(one); alone)
      ++commits;
    else
      p->result = alone;
  }
  return commits;
}

void MetricWriter::PipelinedLoop() {
  // Groups sent and not yet answered, oldest first: at most two, the one
  // PostgreSQL runs and the one it runs next. A second group is sent as
  // soon as as many requests are queued as the running group holds, so
  // the server starts it the moment the first commits instead of after
  // the first's answer has travelled back, woken this thread and been
  // answered; until then the writer waits for whichever comes first.
  // Sending fewer would split groups (more statements, each with its
  // commit's fsync); waiting for more would leave the server idle.
  std::deque<InFlight> in_flight;
  std::vector<Pending*> failed;  // groups whose statement failed, to retry alone
  std::unique_lock lk(mu_);
  for (;;) {
    if (in_flight.empty()) {
      if (!failed.empty()) {
        // Nothing in flight: the connection takes plain statements again.
        lk.unlock();
        const uint64_t commits = WriteEachAlone(failed);
        lk.lock();
        stats_.commits += commits;
        Answer(failed, lk);
        failed.clear();
        continue;
      }
      queued_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return;  // stopping, nothing left
    }
    if (failed.empty() && !queue_.empty() &&
        (in_flight.empty() ||
         (in_flight.size() == 1 && queue_.size() >= in_flight.front().group.size()))) {
      stats_.pipelined += !in_flight.empty();
      InFlight sent{.group = TakeGroup()};
      lk.unlock();
      Send(sent);
      lk.lock();
      in_flight.push_back(std::move(sent));
      continue;
    }
    if (in_flight.size() == 1 && !in_flight.front().send_error && failed.empty() && !stopping_) {
      wake_at_ = in_flight.front().group.size();
      lk.unlock();
      Result<bool> answered = conn_->WaitForAnswer(wake_fd_);
      uint64_t count = 0;
      (void)!read(wake_fd_, &count, sizeof count);  // drains it (non-blocking)
      lk.lock();
      wake_at_ = kNoWake;
      if (answered && !*answered)
        continue;  // requests came first: send them
    }
    InFlight done = std::move(in_flight.front());
    in_flight.pop_front();
    lk.unlock();
    Status received = Receive(done);
    lk.lock();
    if (received) {
      ++stats_.commits;
      Answer(done.group, lk);
    } else if (done.group.size() == 1) {
      done.group[0]->result = received;
      Answer(done.group, lk);
    } else {
      failed.insert(failed.end(), done.group.begin(), done.group.end());
    }
  }
}

void MetricWriter::Send(InFlight& sent) {
  if (!conn_) {
    auto opened = db_.OpenDedicated();
    if (!opened) {
      sent.send_error = opened.error();
      return;
    }
    conn_ = std::move(*opened);
  }
  Classify(sent.group, nullptr, sent.classified);
  if (Status s = SendStore(*conn_, sent.classified.rows, sent.classified.chunks); !s)
    sent.send_error = s.error();
}

Status MetricWriter::Receive(InFlight& sent) {
  if (sent.send_error)
    return *sent.send_error;
  auto stages = ReceiveStore(*conn_);
  if (!stages)
    return stages.error();  // failed, or unknown (a lost connection)
  Classify(sent.group, &*stages, sent.classified);
  ScheduleCompactions(sent.classified.rows);
  for (size_t i = 0; i < sent.group.size(); ++i)
    sent.group[i]->result = std::move(sent.classified.results[i]);
  return core::Ok();
}

void MetricWriter::Answer(std::vector<Pending*>& group, std::unique_lock<std::mutex>& lk) {
  std::vector<std::unique_ptr<AsyncPending>> answered;
  for (Pending* p : group) {
    if (p->result) {
      ++stats_.requests;
      stats_.points += p->points;
    }
    if (p->async != nullptr) {
      answered.emplace_back(p->async);
      continue;
    }
    p->done = true;
    p->done_cv.notify_one();  // with mu_ held: see Pending::done_cv
  }
  if (answered.empty())
    return;
  lk.unlock();  // `done` posts the answer: no need to hold the queue up
  for (const std::unique_ptr<AsyncPending>& a : answered) {
    try {
      a->done(std::move(a->pending.result));
    } catch (const std::exception& e) {  // `done` must not throw; the writer goes on
      core::LogError(
          "metric writer: an answer callback threw",
          {{"event.action", "tracking.writer_callback_failed"}, {"error.message", e.what()}});
    }
  }
  answered.clear();
  lk.lock();
}

Status MetricWriter::Fail(core::Error error) {
  uncompacted_.clear();  // may count rows rolled back: count again from the table
  if (conn_ && conn_->InTransaction() && !conn_->Rollback())
    conn_.reset();
  if (error.code == core::ErrorCode::kUnavailable)
    conn_.reset();  // reconnect for the next group
  return error;
}

void MetricWriter::Classify(std::vector<Pending*>& group,
                            const std::map<int64_t, std::string>* stages, Classified& out) {
  out.rows.clear();
  out.chunks.clear();
  out.results.assign(group.size(), core::Ok());
  for (size_t i = 0; i < group.size(); ++i) {
    const Pending* p = group[i];
    if (stages != nullptr) {
      auto it = stages->find(p->run_pk);
      if (it == stages->end()) {
        out.results[i] = core::NotFound(fmt::format("Run with id={} not found", *p->run_id));
        continue;
      }
      if (it->second != "active") {
        out.results[i] = RunNotActive(*p->run_id, it->second);
        continue;
      }
      if (p->chunks->empty())
        continue;
    }
    out.rows.push_back(
        {.run_pk = p->run_pk, .n = static_cast<int64_t>(p->points), .text = &p->batch});
    for (const PointChunk& c : *p->chunks)
      out.chunks.push_back(&c);
  }
}

Status MetricWriter::WriteGroup(std::vector<Pending*>& group) {
  if (!conn_) {
    ASSIGN_OR_RETURN(conn_, db_.OpenDedicated());
  }
  Classified classified;
  uint64_t compactions = 0;
  Status written = conn_->dialect() == store::Dialect::kPostgres
                       ? WriteInOneStatement(group, classified)
                       : WriteInTransaction(group, classified, compactions);
  if (!written)
    return written;
  if (compactions > 0) {
    std::lock_guard lk(mu_);
    stats_.compactions += compactions;
  }
  for (size_t i = 0; i < group.size(); ++i)
    group[i]->result = std::move(classified.results[i]);
  return core::Ok();
}

Status MetricWriter::WriteInTransaction(std::vector<Pending*>& group, Classified& classified,
                                        uint64_t& compactions) {
  Connection& conn = *conn_;
  if (Status s = conn.Begin(); !s)
    return Fail(s.error());
  // The runs' lifecycle, read inside the transaction, which holds SQLite's
  // write lock: no delete can commit between this read and our commit.
  std::vector<Value> pks;
  std::map<int64_t, std::string> stages;
  for (const Pending* p : group) {
    if (stages.emplace(p->run_pk, std::string()).second)
      pks.emplace_back(p->run_pk);
  }
  stages.clear();
  for (size_t i = 0; i < pks.size(); i += 256) {
    std::vector<Value> part(
        pks.begin() + static_cast<std::ptrdiff_t>(i),
        pks.begin() + static_cast<std::ptrdiff_t>(std::min(i + 256, pks.size())));
    auto found =
        conn.Query(fmt::format("SELECT run_pk, lifecycle_stage FROM runs WHERE run_pk IN ({})",
                               Placeholders(part.size())),
                   part);
    if (!found)
      return Fail(found.error());
    for (const store::Row& r : *found)
      stages[r.Int(0)] = r.Text(1);
  }
  Classify(group, &stages, classified);
  if (!classified.rows.empty()) {
    if (Status s = InsertBatches(conn, classified.rows); !s)
      return Fail(s.error());
    if (Status s = UpdateLatest(conn, classified.chunks); !s)
      return Fail(s.error());
    auto due = DueForCompaction(conn, classified.rows);
    if (!due)
      return Fail(due.error());
    auto moved_runs = CompactRuns(conn, *due);
    if (!moved_runs)
      return Fail(moved_runs.error());
    compactions = *moved_runs;
  }
  if (Status s = conn.Commit(); !s)
    return Fail(s.error());
  return core::Ok();
}

Status MetricWriter::WriteInOneStatement(std::vector<Pending*>& group, Classified& classified) {
  Connection& conn = *conn_;
  // One statement (its own transaction) stores the points of the runs that
  // are active when it runs. Read committed: a delete committing meanwhile
  // may leave these points on the just-deleted run, as MLflow's own server
  // does.
  Classify(group, nullptr, classified);
  auto stages = StoreForActiveRuns(conn, classified.rows, classified.chunks);
  if (!stages)
    return Fail(stages.error());
  Classify(group, &*stages, classified);
  ScheduleCompactions(classified.rows);  // durable now: moved later
  return core::Ok();
}

Result<std::vector<int64_t>> MetricWriter::DueForCompaction(Connection& conn,
                                                            const std::vector<BatchRow>& rows) {
  if (uncompacted_.size() > kMaxTrackedRuns)
    uncompacted_.clear();  // finished runs; the others are counted again
  {
    std::lock_guard lk(mu_);
    for (int64_t run_pk : recount_)
      uncompacted_.erase(run_pk);
    recount_.clear();
  }
  std::map<int64_t, Uncompacted> added;
  for (const BatchRow& r : rows) {
    ++added[r.run_pk].rows;
    added[r.run_pk].points += r.n;
  }
  std::vector<int64_t> due;
  for (const auto& [run_pk, more] : added) {
    auto [it, first] = uncompacted_.try_emplace(run_pk);
    Uncompacted& u = it->second;
    if (first) {
      // Counted from the table, which holds these rows already.
      RETURN_IF_ERROR(conn.QueryEach(
          "SELECT count(*), CAST(coalesce(sum(n), 0) AS BIGINT) FROM metric_batches WHERE "
          "run_pk = ?",
          {run_pk}, [&u](const store::Row& r) -> Status {
            u = {.rows = r.Int(0), .points = r.Int(1)};
            return core::Ok();
          }));
    } else {
      u.rows += more.rows;
      u.points += more.points;
    }
    if (u.rows >= kCompactAfterRows || u.points >= kCompactAfterPoints) {
      due.push_back(run_pk);
      u = {};
    }
  }
  return due;
}

void MetricWriter::ScheduleCompactions(const std::vector<BatchRow>& rows) {
  // Runs seen for the first time are counted on a connection of their own:
  // the writer's may have the next group's statement in flight.
  if (!count_conn_) {
    auto opened = db_.OpenDedicated();
    if (!opened) {
      uncompacted_.clear();  // counted again from the table later
      return;
    }
    count_conn_ = std::move(*opened);
  }
  auto due = DueForCompaction(*count_conn_, rows);
  if (!due) {
    uncompacted_.clear();
    if (due.error().code == core::ErrorCode::kUnavailable)
      count_conn_.reset();
    return;
  }
  if (due->empty())
    return;
  {
    std::lock_guard lk(mu_);
    to_compact_.insert(due->begin(), due->end());
  }
  compact_cv_.notify_one();
}

}  // namespace kervan::tracking::internal
