// The group-commit writer for metric points; see metric_writer.h.
#include "tracking/metric_writer.h"

#include <cmath>
#include <map>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace kervan::tracking::internal {
namespace {

using store::Connection;
using store::Value;

// Rows per multi-row upsert, largest first; every chunk is one of these
// sizes, so few distinct statements are prepared and cached. 256 rows x 6
// columns stays far below both backends' parameter limits.
constexpr size_t kMaxUpsertRows = 256;

void AppendPoint(std::vector<Value>& params, const RunPoint& p) {
  const MetricPoint& m = *p.point;
  const bool nan = std::isnan(m.value);
  params.emplace_back(p.run_pk);
  params.emplace_back(m.key);
  params.emplace_back(nan ? 0.0 : m.value);
  params.emplace_back(int64_t{nan});
  params.emplace_back(m.timestamp);
  params.emplace_back(m.step);
}

bool Later(const MetricPoint& a, const MetricPoint& b) {
  if (a.step != b.step)
    return a.step > b.step;
  if (a.timestamp != b.timestamp)
    return a.timestamp > b.timestamp;
  if (std::isnan(b.value))
    return !std::isnan(a.value);
  return !std::isnan(a.value) && a.value > b.value;
}

}  // namespace

Status UpdateLatest(Connection& conn, const std::vector<RunPoint>& points) {
  std::map<std::pair<int64_t, std::string_view>, RunPoint> latest;
  for (const RunPoint& p : points) {
    auto [it, inserted] = latest.try_emplace({p.run_pk, p.point->key}, p);
    if (!inserted && Later(*p.point, *it->second.point))
      it->second = p;
  }
  std::vector<RunPoint> rows;
  rows.reserve(latest.size());
  for (const auto& [_, p] : latest)
    rows.push_back(p);
  // A stored row is replaced only by a later point; NaN compares lowest
  // through (1 - is_nan, value).
  return ExecMultiRow(
      conn, rows.size(), 6, kMaxUpsertRows,
      "INSERT INTO latest_metrics (run_pk, key, value, is_nan, ts, step) VALUES ",
      " ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value, is_nan = "
      "excluded.is_nan, ts = excluded.ts, step = excluded.step WHERE (excluded.step, "
      "excluded.ts, 1 - excluded.is_nan, excluded.value) > (latest_metrics.step, "
      "latest_metrics.ts, 1 - latest_metrics.is_nan, latest_metrics.value)",
      [&rows](std::vector<Value>& params, size_t i) { AppendPoint(params, rows[i]); });
}

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
                           const std::vector<MetricPoint>& points) {
  Pending p{.run_pk = run_pk, .run_id = &run_id, .points = &points};
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
           (group.empty() || points + queue_.front()->points->size() <= max_group_points_)) {
      points += queue_.front()->points->size();
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
        stats_.points += p->points->size();
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

  std::vector<RunPoint> points;
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
    for (const MetricPoint& m : *p->points)
      points.push_back({.run_pk = p->run_pk, .point = &m});
  }
  uint64_t merges = 0;
  if (!points.empty()) {
    if (Status s = InsertPoints(conn, points); !s)
      return fail(s.error());
    if (Status s = UpdateLatest(conn, points); !s)
      return fail(s.error());
    auto merged = MergeWhereSmallChunksPiledUp(conn, points);
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

Result<uint64_t> MetricWriter::MergeWhereSmallChunksPiledUp(Connection& conn,
                                                            const std::vector<RunPoint>& points) {
  // This group's chunks: one per (run, key), of this many points.
  std::map<std::pair<int64_t, std::string_view>, int64_t> chunk_points;
  for (const RunPoint& p : points)
    ++chunk_points[{p.run_pk, p.point->key}];
  if (small_chunks_.size() > kMaxTrackedKeys)
    small_chunks_.clear();  // forget finished runs' counts; merging just starts later
  uint64_t merges = 0;
  for (const auto& [run_key, n] : chunk_points) {
    if (n >= kSmallChunkPoints)
      continue;
    auto it = small_chunks_.try_emplace({run_key.first, std::string(run_key.second)}, 0).first;
    if (++it->second < kMergeAfterSmallChunks)
      continue;
    small_chunks_.erase(it);
    ASSIGN_OR_RETURN(int64_t merged,
                     MergeSmallChunks(conn, run_key.first, std::string(run_key.second)));
    merges += merged > 0;
  }
  return merges;
}

}  // namespace kervan::tracking::internal
