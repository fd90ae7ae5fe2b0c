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
    for (const PointChunk& c : *p->chunks)
      chunks.push_back(&c);
  }
  uint64_t merges = 0;
  if (!chunks.empty()) {
    if (Status s = InsertChunks(conn, chunks); !s)
      return fail(s.error());
    if (Status s = UpdateLatest(conn, chunks); !s)
      return fail(s.error());
    auto merged = MergeWhereSmallChunksPiledUp(conn, chunks);
    if (!merged)
      return fail(merged.error());
    merges = *merged;
  }
  if (Status s = conn.Commit(); !s)
    return fail(s.error());
  if (merges > 0) {
    std::lock_guard lk(mu_);
    stats_.chunk_merges += merges;
  }
  for (size_t i = 0; i < group.size(); ++i)
    group[i]->result = std::move(results[i]);
  return core::Ok();
}

Result<uint64_t> MetricWriter::MergeWhereSmallChunksPiledUp(
    Connection& conn, const std::vector<const PointChunk*>& chunks) {
  if (small_chunks_.size() > kMaxTrackedKeys)
    small_chunks_.clear();  // forget finished runs' counts; merging just starts later
  uint64_t merges = 0;
  for (const PointChunk* c : chunks) {
    if (c->n >= kSmallChunkPoints)
      continue;
    auto it = small_chunks_.try_emplace({c->run_pk, c->key}, 0).first;
    if (++it->second < kMergeAfterSmallChunks)
      continue;
    small_chunks_.erase(it);
    ASSIGN_OR_RETURN(int64_t merged, MergeSmallChunks(conn, c->run_pk, c->key));
    merges += merged > 0;
  }
  return merges;
}

}  // namespace kervan::tracking::internal
