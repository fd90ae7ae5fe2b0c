// The event log: an append-only, hash-chained, gap-free sequence of events,
// written with group commit, readable and subscribable from any seq.
// Part of store's public header (store/store.h).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "core/core.h"
#include "store/database.h"

namespace kervan::store {

using core::Json;

// What a command wants recorded. seq, id, time and hashes are assigned by
// the log at append time.
struct EventDraft {
  std::string type;            // "model_version.approved"
  std::string subject_kind;    // "model_version"
  std::string subject_id;      // "credit/7"
  std::string actor;           // "alice", "system:registry"
  std::string reason;          // why (required for manual interventions)
  std::string correlation_id;  // the request that caused it
  std::string causation_id;    // the event that caused it, if any
  std::string project;         // owning project (team), "" for global subjects
  Json data = Json::object();  // evidence and details
};

struct Event {
  int64_t seq = 0;
  std::string id;
  int64_t time_us = 0;
  std::string type, subject_kind, subject_id, actor, reason, correlation_id, causation_id;
  std::string project;
  std::string data;  // canonical JSON text, exactly as hashed
  std::string prev_hash, hash;

  // The API form: time as RFC 3339, data as an object.
  Json ToJson() const;
};

// hash = SHA-256(prev_hash || canonical encoding of the event's other fields).
// The project joins the encoding only when non-empty, so events written
// before it existed keep their hashes (the array length differs, so moving an
// event into or out of a project still breaks the chain).
std::string ComputeEventHash(const Event& e);
// The prev_hash of the first event.
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Filters for reading the log. Empty strings match everything.
struct EventQuery {
  int64_t after_seq = 0;
  int limit = 100;
  std::string subject_kind, subject_id, type, actor, project;
  // Type prefix filter: "model_version." matches every model_version event.
  std::string type_prefix;
  int64_t since_us = 0;  // time_us >= since_us when > 0
  int64_t until_us = 0;  // time_us < until_us when > 0
};

struct VerifyReport {
  bool ok = true;
  int64_t checked = 0;        // events examined
  int64_t head_seq = 0;       // last seq seen
  int64_t first_bad_seq = 0;  // first broken link, 0 when ok
  std::string problem;        // what is wrong with it
  Json ToJson() const;
};

// The transaction a command runs in, on the log's writer thread. A command
// reads and updates projection tables through conn() and appends its events
// with Append(), which assigns seq, id, time and hashes at once so the
// projection can record them. If the command fails, its changes and events
// are rolled back (savepoint) and other commands in the same group commit
// are unaffected. A command may be run more than once for one Execute (the
// writer retries a batch with savepoints after a failure): it must decide
// only from what it reads through conn(), and touch nothing outside the
// transaction but its own output variables.
class CommandTx {
 public:
  virtual ~CommandTx() = default;
  virtual Connection& conn() = 0;
  // Validates and inserts the event; returns it as stored.
  virtual Result<Event> Append(EventDraft draft) = 0;
};
using Command = std::function<Status(CommandTx& tx)>;

struct EventLogOptions {
  size_t max_batch = 512;      // commands and appends per group commit
  size_t recent_cache = 8192;  // recent events kept in memory for readers
};

class EventLog {
 public:
  // Opens the log over `db` (migrated), with a dedicated writer connection,
  // and starts the writer thread.
  static Result<std::unique_ptr<EventLog>> Open(Database& db, EventLogOptions options = {});
  ~EventLog();  // Stop()s

  // Runs `command` and appends its events in ONE transaction, shared with
  // other concurrent commands (group commit). Blocks until the transaction is
  // durable; returns the appended events. Thread-safe.
  Result<std::vector<Event>> Execute(Command command);
  // Appends one event with no projection change.
  Result<Event> Append(EventDraft draft);

  // Reads committed events matching `query`, in seq order. Thread-safe.
  Result<std::vector<Event>> Read(const EventQuery& query);
  // Highest committed seq (0 when empty).
  int64_t head_seq() const { return head_seq_.load(std::memory_order_acquire); }
  // Blocks until head_seq() > after_seq, the deadline passes or the log stops.
  // Returns whether new events are available.
  bool WaitForNewer(int64_t after_seq, std::chrono::steady_clock::time_point deadline);

  // Called on the writer thread after each durable commit with the new head
  // seq. Must be quick and must not call back into the log (used to wake
  // asynchronous waiters such as SSE streams).
  void AddCommitListener(std::function<void(int64_t head_seq)> listener);

  // Recomputes the hash chain from seq 1 on a fresh read of the database.
  Result<VerifyReport> Verify();

  class Subscription;
  // Delivers every event with seq > after_seq to `handler`, in seq order, on a
  // thread owned by the subscription, after commit. `name` labels the lag
  // metric. Destroying the Subscription stops delivery. If the handler
  // returns an error, it is logged and retried after a pause (at-least-once).
  std::unique_ptr<Subscription> Subscribe(std::string name, int64_t after_seq,
                                          std::function<Status(const Event&)> handler);
  // Like Subscribe, but the cursor lives in the event_subscriptions table
  // under `name`: delivery resumes after the last event the handler
  // finished, across restarts (at-least-once: an event being handled at a
  // crash is delivered again).
  Result<std::unique_ptr<Subscription>> SubscribeDurable(
      std::string name, std::function<Status(const Event&)> handler);

  // Stops accepting commands, finishes the batch in flight, stops the writer.
  void Stop();

  Database& database() { return db_; }

 private:
  struct Batch;
  EventLog(Database& db, std::unique_ptr<Connection> writer, EventLogOptions options,
           int64_t head_seq);
  Result<std::vector<Event>> Enqueue(std::variant<Command, EventDraft> item);
  void WriterLoop();
  void CommitBatch(Batch& batch);

  Database& db_;
  std::unique_ptr<Connection> writer_;
  EventLogOptions options_;

  std::mutex mu_;
  std::condition_variable queue_cv_;   // writer waits for work
  std::condition_variable commit_cv_;  // readers wait for new events
  // Batches waiting for the writer; callers add to the last one until it
  // holds max_batch items.
  std::deque<std::shared_ptr<Batch>> queue_;
  std::deque<Event> recent_;  // last committed events, for fast reads
  std::vector<std::function<void(int64_t)>> listeners_;
  bool stopping_ = false;

  std::atomic<int64_t> head_seq_{0};
  std::thread writer_thread_;
};

class EventLog::Subscription {
 public:
  ~Subscription();
  int64_t cursor() const { return cursor_.load(); }

 private:
  friend class EventLog;
  Subscription(EventLog* log, std::string name, int64_t after,
               std::function<Status(const Event&)> handler, bool durable);
  void Run();
  void SaveCursor(int64_t seq);

  EventLog* log_;
  std::string name_;
  std::function<Status(const Event&)> handler_;
  std::atomic<int64_t> cursor_;
  std::atomic<bool> stop_{false};
  bool durable_ = false;
  std::thread thread_;
};

}  // namespace kervan::store
