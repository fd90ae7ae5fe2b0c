// Private to src/tracking: the group-commit writer for metric points.
//
// Metric points are telemetry (DESIGN.md, principle 2), so they do not go
// through the event log's command path. Requests from concurrent callers
// queue here; one thread takes everything queued, writes it in ONE
// transaction on its own connection (one metric_batches row per request and
// a multi-row upsert into latest_metrics) and commits, then wakes the
// callers. A caller returns only after its points are durable.
//
// Runs whose batch rows are due are compacted (CompactRun). On SQLite, which
// has one writer at a time, that happens inside the writer's transaction.
// On PostgreSQL the transaction is one statement (StoreForActiveRuns) and a
// second thread, on a second connection, compacts in transactions of its
// own, so the writer's connection (the bound on write throughput: one
// backend, one commit at a time) only stores. Compaction only moves points
// that are already durable and takes no lock the writer waits for.
//
// On PostgreSQL the writer's connection is pipelined: while one group's
// statement runs, the next group's is sent as soon as as many requests are
// queued, so the backend goes from one commit to the next without waiting
// for the answer to travel back and be handed out (PipelinedLoop).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
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
  // Write for a caller that must not block: queues the request and returns
  // at once; `done` is called exactly once with Write's result, on the
  // writer's thread after the commit (so it must be quick and not block:
  // post the answer somewhere). Requests queued before the writer is
  // destroyed are still written and answered.
  void WriteAsync(int64_t run_pk, std::string run_id, std::vector<PointChunk> chunks,
                  std::function<void(Status)> done);

  struct Stats {
    uint64_t commits = 0;      // transactions committed
    uint64_t requests = 0;     // requests answered OK
    uint64_t points = 0;       // points committed
    uint64_t compactions = 0;  // runs whose batches were compacted into chunks
    uint64_t pipelined = 0;    // groups sent while another group's statement ran
  };
  Stats stats() const;

  // Returns once every compaction scheduled so far has finished (at once on
  // SQLite, which compacts in the writer's transaction). For tests and
  // orderly shutdown.
  void WaitForCompactions();

 private:
  struct AsyncPending;
  struct Pending {
    int64_t run_pk;
    const std::string* run_id;
    const std::vector<PointChunk>* chunks;
    size_t points = 0;  // in chunks
    std::string batch;  // JoinChunks(*chunks), made by the caller
    Status result = core::Ok();
    bool done = false;  // GUARDED_BY(mu_)
    // The caller waits here, alone: waking every caller at each commit
    // woke the requests still queued for nothing (a herd contending for
    // mu_ on 2 vCPUs). Notified with mu_ held, so the caller cannot
    // return (and destroy it) before the notify is done.
    std::condition_variable done_cv;
    // Set for a WriteAsync request: the writer answers it through there
    // (and deletes it) instead of notifying done_cv.
    AsyncPending* async = nullptr;
  };
  // A WriteAsync request: owns what its Pending points to.
  struct AsyncPending {
    std::string run_id;
    std::vector<PointChunk> chunks;
    std::function<void(Status)> done;
    Pending pending;
  };

  // A group's batch rows and chunks, and each request's result.
  struct Classified {
    std::vector<BatchRow> rows;
    std::vector<const PointChunk*> chunks;
    std::vector<Status> results;
  };

  // Counts the request's points and joins its chunks into its batch text.
  static void Prepare(Pending& p);
  // The writer thread: PipelinedLoop on PostgreSQL, SerialLoop on SQLite.
  void Loop();
  // Takes the queue's oldest requests, up to max_group_points_ (mu_ held).
  std::vector<Pending*> TakeGroup();
  // One group at a time: written, then answered.
  void SerialLoop();
  // WriteGroup, and when the group's transaction fails, each request in a
  // transaction of its own; returns the commits.
  uint64_t WriteOrRetryAlone(std::vector<Pending*>& group);
  // Each of `requests` in a transaction of its own; returns the commits.
  uint64_t WriteEachAlone(std::vector<Pending*>& requests);
  // PostgreSQL: up to two groups' statements in flight on one pipelined
  // connection (see the function).
  void PipelinedLoop();
  // A group sent (SendStore) and not yet answered.
  struct InFlight {
    std::vector<Pending*> group;
    Classified classified;
    std::optional<core::Error> send_error;  // set when it could not be sent
  };
  void Send(InFlight& sent);
  // The answer to `sent`: sets each request's result, or returns the
  // statement's error (nothing of the group written).
  Status Receive(InFlight& sent);
  // Sets stats and answers every request of `group` (mu_ held by `lk`;
  // released while WriteAsync callbacks run).
  void Answer(std::vector<Pending*>& group, std::unique_lock<std::mutex>& lk);
  // After a request joins the queue (mu_ held): wakes the writer.
  void Enqueued();
  // PostgreSQL: the compaction thread. Takes the runs scheduled for
  // compaction, compacts up to kMaxRunsPerCompaction of them in one
  // transaction on compact_conn_, until stopping and nothing is left.
  void CompactLoop();
  // One compaction transaction; the number of runs whose rows moved.
  Result<uint64_t> CompactInTransaction(const std::vector<int64_t>& runs);
  // Writes `group` in one transaction; sets each request's result (a
  // not-active run fails only its own requests). Returns non-OK when the
  // transaction itself failed (nothing written).
  Status WriteGroup(std::vector<Pending*>& group);
  // SQLite: BEGIN, the runs' stages, the rows, due compactions, COMMIT.
  Status WriteInTransaction(std::vector<Pending*>& group, Classified& classified,
                            uint64_t& compactions);
  // PostgreSQL: StoreForActiveRuns; due runs go to the compaction thread.
  Status WriteInOneStatement(std::vector<Pending*>& group, Classified& classified);
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
  // A run seen for the first time is counted from the table on `conn`.
  Result<std::vector<int64_t>> DueForCompaction(store::Connection& conn,
                                                const std::vector<BatchRow>& rows);
  // PostgreSQL: DueForCompaction on count_conn_ for committed `rows`; the
  // due runs go to the compaction thread.
  void ScheduleCompactions(const std::vector<BatchRow>& rows);

  static constexpr size_t kMaxTrackedRuns = 100000;
  static constexpr size_t kMaxRunsPerCompaction = 16;

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
  std::unique_ptr<store::Connection> compact_conn_;  // the compaction thread's only
  std::unique_ptr<store::Connection> count_conn_;    // the writer thread's, PostgreSQL

  mutable std::mutex mu_;
  std::condition_variable queued_cv_;  // the writer waits for work
  std::deque<Pending*> queue_;         // GUARDED_BY(mu_)
  bool stopping_ = false;              // GUARDED_BY(mu_)
  Stats stats_;                        // GUARDED_BY(mu_)
  // PostgreSQL: runs due for compaction, for the compaction thread.
  std::set<int64_t> to_compact_;     // GUARDED_BY(mu_)
  bool compacting_ = false;          // GUARDED_BY(mu_): a transaction is running
  bool stopping_compactor_ = false;  // GUARDED_BY(mu_)
  // Runs whose compaction failed: the writer forgets their counts, so they
  // are counted from the table again on their next write.
  std::set<int64_t> recount_;             // GUARDED_BY(mu_)
  std::condition_variable compact_cv_;    // the compaction thread waits for work
  std::condition_variable compacted_cv_;  // WaitForCompactions waits for idle
  // PostgreSQL: PipelinedLoop waits for its answer or for wake_at_
  // queued requests, whichever comes first; Enqueued signals this eventfd.
  // -1 on SQLite, or when no eventfd could be made: then SerialLoop.
  static constexpr size_t kNoWake = static_cast<size_t>(-1);
  const int wake_fd_;
  size_t wake_at_ = kNoWake;  // GUARDED_BY(mu_)
  std::thread compactor_;     // PostgreSQL only; started before thread_
  std::thread thread_;
};

}  // namespace kervan::tracking::internal
