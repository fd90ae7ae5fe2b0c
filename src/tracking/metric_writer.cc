// The group-commit writer for metric points; see metric_writer.h.
#include "tracking/metric_writer.h"

#include <map>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace kervan::tracking::internal {
namespace {

using store::Connection;
using store::Value;

}  // namespace

MetricWriter::MetricWriter(store::Database& db, size_t max_group_points)
    : db_(db), max_group_points_(max_group_points), thread_([this] { Loop(); }) {}

MetricWriter::~MetricWriter() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  queued_cv_.notify_one();
  thread_.join();
}

Status MetricWriter::Write(int64_t run_pk, const std::string& run_id,
                           const std::vector<PointChunk>& chunks) {
  Pending p{.run_pk = run_pk, .run_id = &run_id, .chunks = &chunks};
  for (const PointChunk& c : chunks)
    p.points += static_cast<size_t>(c.n);
  p.batch = JoinChunks(chunks);  // on the caller's thread, not the writer's
  std::unique_lock lk(mu_);
  queue_.push_back(&p);
  queued_cv_.notify_one();
  done_cv_.wait(lk, [&] { return p.done; });
  return p.result;
}

MetricWriter::Stats MetricWriter::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void MetricWriter::Loop() {
  std::unique_lock lk(mu_);
  for (;;) {
    queued_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty())
      return;  // stopping, nothing left
    std::vector<Pending*> group;
    size_t points = 0;
    while (!queue_.empty() &&
           (group.empty() || points + queue_.front()->points <= max_group_points_)) {
      points += queue_.front()->points;
      group.push_back(queue_.front());
      queue_.pop_front();
    }
    lk.unlock();
    uint64_t commits = 0;
    if (Status s = WriteGroup(group); s) {
      ++commits;
    } else if (group.size() == 1) {
      group[0]->result = s;
    } else {
      // Something in the group broke the transaction: give each request its
      // own, so only the culprit fails.
      for (Pending* p : group) {
        std::vector<Pending*> one{p};
        if (Status alone = WriteGroup(one); alone)
          ++commits;
        else
          p->result = alone;
      }
    }
    lk.lock();
    stats_.commits += commits;
    for (Pending* p : group) {
      if (p->result) {
        ++stats_.requests;
        stats_.points += p->points;
      }
      p->done = true;
    }
    done_cv_.notify_all();
  }
}

Status MetricWriter::WriteGroup(std::vector<Pending*>& group) {
  if (!conn_) {
    ASSIGN_OR_RETURN(conn_, db_.OpenDedicated());
  }
  Connection& conn = *conn_;
  auto fail = [&](core::Error e) -> Status {
    uncompacted_.clear();  // may count rows rolled back: count again from the table
    if (conn.InTransaction() && !conn.Rollback())
      conn_.reset();
    if (e.code == core::ErrorCode::kUnavailable)
      conn_.reset();  // reconnect for the next group
    return e;
  };
  if (Status s = conn.Begin(); !s)
    return fail(s.error());

  // The runs' lifecycle, read inside the transaction. On SQLite the
  // transaction holds the write lock, so no delete can commit before this
  // one; on PostgreSQL (read committed) a delete committing between this
  // read and our commit leaves these points on the just-deleted run, as
  // MLflow's own server does.
  std::vector<Value> pks;
  std::map<int64_t, std::string> stages;
  for (const Pending* p : group) {
    if (stages.emplace(p->run_pk, std::string()).second)
      pks.emplace_back(p->run_pk);
  }
  stages.clear();
  for (size_t i = 0; i < pks.size(); i += 256) {
    std::vector<Value> chunk(
        pks.begin() + static_cast<std::ptrdiff_t>(i),
        pks.begin() + static_cast<std::ptrdiff_t>(std::min(i + 256, pks.size())));
    auto rows =
        conn.Query(fmt::format("SELECT run_pk, lifecycle_stage FROM runs WHERE run_pk IN ({})",
                               Placeholders(chunk.size())),
                   chunk);
    if (!rows)
      return fail(rows.error());
    for (const store::Row& r : *rows)
      stages[r.Int(0)] = r.Text(1);
  }

  std::vector<const PointChunk*> chunks;
  std::vector<BatchRow> rows;
  std::vector<Status> results(group.size(), core::Ok());
  for (size_t i = 0; i < group.size(); ++i) {
    const Pending* p = group[i];
    auto it = stages.find(p->run_pk);
    if (it == stages.end()) {
      results[i] = core::NotFound(fmt::format("Run with id={} not found", *p->run_id));
      continue;
    }
    if (it->second != "active") {
      results[i] = RunNotActive(*p->run_id, it->second);
      continue;
    }
    if (p->chunks->empty())
      continue;
    rows.push_back({.run_pk = p->run_pk, .n = static_cast<int64_t>(p->points), .text = &p->batch});
    for (const PointChunk& c : *p->chunks)
      chunks.push_back(&c);
  }
  uint64_t compactions = 0;
  if (!rows.empty()) {
    if (Status s = InsertBatches(conn, rows); !s)
      return fail(s.error());
    if (Status s = UpdateLatest(conn, chunks); !s)
      return fail(s.error());
    auto compacted = CompactWhereDue(conn, rows);
    if (!compacted)
      return fail(compacted.error());
    compactions = *compacted;
  }
  if (Status s = conn.Commit(); !s)
    return fail(s.error());
  if (compactions > 0) {
    std::lock_guard lk(mu_);
    stats_.compactions += compactions;
  }
  for (size_t i = 0; i < group.size(); ++i)
    group[i]->result = std::move(results[i]);
  return core::Ok();
}

Result<uint64_t> MetricWriter::CompactWhereDue(Connection& conn,
                                               const std::vector<BatchRow>& rows) {
  if (uncompacted_.size() > kMaxTrackedRuns)
    uncompacted_.clear();  // finished runs; the others are counted again
  std::map<int64_t, Uncompacted> added;
  for (const BatchRow& r : rows) {
    ++added[r.run_pk].rows;
    added[r.run_pk].points += r.n;
  }
  uint64_t compactions = 0;
  for (const auto& [run_pk, more] : added) {
    auto [it, first] = uncompacted_.try_emplace(run_pk);
    Uncompacted& u = it->second;
    if (first) {
      // Counted from the table, which holds this group's rows already.
      RETURN_IF_ERROR(
          conn.QueryEach("SELECT count(*), CAST(coalesce(sum(n), 0) AS BIGINT) FROM metric_batches "
                         "WHERE run_pk = ?",
                         {run_pk}, [&u](const store::Row& r) -> Status {
                           u = {.rows = r.Int(0), .points = r.Int(1)};
                           return core::Ok();
                         }));
    } else {
      u.rows += more.rows;
      u.points += more.points;
    }
    if (u.rows < kCompactAfterRows && u.points < kCompactAfterPoints)
      continue;
    ASSIGN_OR_RETURN(int64_t moved, CompactRun(conn, run_pk));
    compactions += moved > 0;
    u = {};
  }
  return compactions;
}

}  // namespace kervan::tracking::internal
