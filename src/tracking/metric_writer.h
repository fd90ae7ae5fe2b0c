// Private to src/tracking: the group-commit writer for metric points.
//
// Metric points are telemetry (DESIGN.md, principle 2), so they do not go
// through the event log's command path. Requests from concurrent callers
// queue here; one thread takes everything queued, writes it in ONE
// transaction on its own connection (multi-row INSERTs into metric_chunks,
// a multi-row upsert into latest_metrics) and commits, then wakes the
// callers. A caller returns only after its points are durable.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tracking/internal.h"

namespace kervan::tracking::internal {

class MetricWriter {
 public:
  // `db` must outlive the writer. Opens its connection on first use.
  // `max_group_points` bounds one transaction (a single larger request
  // still goes whole, alone).
  explicit MetricWriter(store::Database& db, size_t max_group_points = 16384);
  // Finishes what is queued, then stops the thread.
  ~MetricWriter();
  MetricWriter(const MetricWriter&) = delete;
  MetricWriter& operator=(const MetricWriter&) = delete;

  // Stores `points` of the run `run_pk` (named `run_id` in errors) and
  // returns once they are committed durably. The run must be active when
  // the transaction commits: otherwise the points are not written and the
  // result is MLflow's INVALID_PARAMETER_VALUE (kFailedPrecondition);
  // kNotFound if no run has that pk. One request's failure never fails the
  // others of its group: a group whose transaction fails is retried one
  // request per transaction. Thread-safe; blocks the caller.
  // `chunks` are the request's points, encoded by the caller (EncodeChunks).
  Status Write(int64_t run_pk, const std::string& run_id, const std::vector<PointChunk>& chunks);

  struct Stats {
    uint64_t commits = 0;       // transactions committed
    uint64_t requests = 0;      // requests answered OK
    uint64_t points = 0;        // points committed
    uint64_t chunk_merges = 0;  // (run, key)s whose small chunks were merged
  };
  Stats stats() const;

 private:
  struct Pending {
    int64_t run_pk;
    const std::string* run_id;
    const std::vector<PointChunk>* chunks;
    size_t points = 0;  // in chunks
    Status result = core::Ok();
    bool done = false;
  };

  void Loop();
  // Writes `group` in one transaction; sets each request's result (a
  // not-active run fails only its own requests). Returns non-OK when the
  // transaction itself failed (nothing written).
  Status WriteGroup(std::vector<Pending*>& group);
  // Counts the small chunks this group wrote per (run, key); where a
  // (run, key) has had kMergeAfterSmallChunks since its last merge, merges
  // them (MergeSmallChunks) in the group's transaction. A training loop
  // that calls log-metric once per step otherwise leaves one chunk per
  // point, and its history reads a row per point. Returns the merges made.
  Result<uint64_t> MergeWhereSmallChunksPiledUp(store::Connection& conn,
                                                const std::vector<const PointChunk*>& chunks);

  static constexpr int kMergeAfterSmallChunks = 256;
  static constexpr size_t kMaxTrackedKeys = 100000;

  store::Database& db_;
  const size_t max_group_points_;
  std::unique_ptr<store::Connection> conn_;  // the writer thread's only
  // (run_pk, key) -> small chunks written since the last merge. The writer
  // thread's only; lost on restart, which only delays a merge.
  std::map<std::pair<int64_t, std::string>, int> small_chunks_;

  mutable std::mutex mu_;
  std::condition_variable queued_cv_;  // the writer waits for work
  std::condition_variable done_cv_;    // callers wait for their result
  std::deque<Pending*> queue_;         // GUARDED_BY(mu_)
  bool stopping_ = false;              // GUARDED_BY(mu_)
  Stats stats_;                        // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace kervan::tracking::internal
