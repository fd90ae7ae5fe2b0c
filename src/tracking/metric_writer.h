// Private to src/tracking: the group-commit writer for metric points.
//
// Metric points are telemetry (DESIGN.md, principle 2), so they do not go
// through the event log's command path. Requests from concurrent callers
// queue here; one thread takes everything queued, writes it in ONE
// transaction on its own connection (one metric_batches row per request, a
// multi-row upsert into latest_metrics, and the compaction of runs whose
// batches are due) and commits, then wakes the callers. A caller returns
// only after its points are durable. On PostgreSQL the transaction is one
// statement (StoreForActiveRuns) and compaction a transaction of its own.
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
    uint64_t commits = 0;      // transactions committed
    uint64_t requests = 0;     // requests answered OK
    uint64_t points = 0;       // points committed
    uint64_t compactions = 0;  // runs whose batches were compacted into chunks
  };
  Stats stats() const;

 private:
  struct Pending {
    int64_t run_pk;
    const std::string* run_id;
    const std::vector<PointChunk>* chunks;
    size_t points = 0;  // in chunks
    std::string batch;  // JoinChunks(*chunks), made by the caller
    Status result = core::Ok();
    bool done = false;
  };

  // A group's batch rows and chunks, and each request's result.
  struct Classified {
    std::vector<BatchRow> rows;
    std::vector<const PointChunk*> chunks;
    std::vector<Status> results;
  };

  void Loop();
  // Writes `group` in one transaction; sets each request's result (a
  // not-active run fails only its own requests). Returns non-OK when the
  // transaction itself failed (nothing written).
  Status WriteGroup(std::vector<Pending*>& group);
  // SQLite: BEGIN, the runs' stages, the rows, due compactions, COMMIT.
  Status WriteInTransaction(std::vector<Pending*>& group, Classified& classified,
                            uint64_t& compactions);
  // PostgreSQL: StoreForActiveRuns, then due compactions in a transaction
  // of their own.
  Status WriteInOneStatement(std::vector<Pending*>& group, Classified& classified,
                             uint64_t& compactions);
  // The rows and chunks of the requests whose runs `stages` names active,
  // and the others' results; every request's row (even one of no points)
  // and no results when `stages` is null.
  static void Classify(std::vector<Pending*>& group, const std::map<int64_t, std::string>* stages,
                       Classified& out);
  // Rolls back, forgets the compaction counts (they may count rolled-back
  // rows) and drops a lost connection; returns `error`.
  Status Fail(core::Error error);
  // Adds the group's batch rows (committed, or in the caller's
  // transaction) to each run's count and returns the runs that reach
  // kCompactAfterRows or kCompactAfterPoints, counting them as compacted.
  Result<std::vector<int64_t>> DueForCompaction(store::Connection& conn,
                                                const std::vector<BatchRow>& rows);

  static constexpr size_t kMaxTrackedRuns = 100000;

  store::Database& db_;
  const size_t max_group_points_;
  std::unique_ptr<store::Connection> conn_;  // the writer thread's only
  // run_pk -> batch rows and points not yet compacted. The writer thread's
  // only; a run not in it is counted from the table on its first write (so
  // a restart does not postpone compaction).
  struct Uncompacted {
    int64_t rows = 0;
    int64_t points = 0;
  };
  std::map<int64_t, Uncompacted> uncompacted_;

  mutable std::mutex mu_;
  std::condition_variable queued_cv_;  // the writer waits for work
  std::condition_variable done_cv_;    // callers wait for their result
  std::deque<Pending*> queue_;         // GUARDED_BY(mu_)
  bool stopping_ = false;              // GUARDED_BY(mu_)
  Stats stats_;                        // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace kervan::tracking::internal
