#include "store/event_log.h"

#include <array>
#include <climits>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>
#include <linux/futex.h>

namespace kervan::store {
namespace {

using core::Error;

constexpr std::string_view kEventColumns =
    "seq, id, time_us, type, subject_kind, subject_id, actor, reason, correlation_id, "
    "causation_id, data, prev_hash, hash, project";

Event EventFromRow(const Row& r) {
  Event e;
  e.seq = r.Int(0);
  e.id = r.Text(1);
  e.time_us = r.Int(2);
  e.type = r.Text(3);
  e.subject_kind = r.Text(4);
  e.subject_id = r.Text(5);
  e.actor = r.Text(6);
  e.reason = r.Text(7);
  e.correlation_id = r.Text(8);
  e.causation_id = r.Text(9);
  e.data = r.Text(10);
  e.project = r.Text(13);
  e.prev_hash = r.Text(11);
  e.hash = r.Text(12);
  return e;
}

bool Matches(const Event& e, const EventQuery& q) {
  return (q.subject_kind.empty() || e.subject_kind == q.subject_kind) &&
         (q.subject_id.empty() || e.subject_id == q.subject_id) &&
         (q.type.empty() || e.type == q.type) && (q.actor.empty() || e.actor == q.actor) &&
         (q.project.empty() || e.project == q.project) &&
         (q.type_prefix.empty() || e.type.starts_with(q.type_prefix)) &&
         (q.since_us <= 0 || e.time_us >= q.since_us) &&
         (q.until_us <= 0 || e.time_us < q.until_us);
}

core::Status ValidateDraft(const EventDraft& d) {
  if (d.type.empty() || d.type.find('.') == std::string::npos) {
    return core::InvalidArgument(
        fmt::format("event type \"{}\" must look like subject.past_tense_verb", d.type), "type");
  }
  if (d.subject_kind.empty())
    return core::InvalidArgument("event subject_kind is empty", "subject_kind");
  if (d.subject_id.empty())
    return core::InvalidArgument("event subject_id is empty", "subject_id");
  if (d.actor.empty())
    return core::InvalidArgument("event actor is empty", "actor");
  if (!d.data.is_object())
    return core::InvalidArgument("event data must be a JSON object", "data");
  return core::Ok();
}

struct Metrics {
  core::Counter& appended;
  core::Counter& commits;
  core::Counter& failures;
  core::Histogram& batch_size;
  core::Histogram& commit_seconds;
  core::Gauge& head;
  core::Family<core::Gauge>& lag;

  static Metrics& Get() {
    auto& r = core::GlobalMetrics();
    static Metrics m{
        r.AddCounter("kervan_event_log_appends_total", "Events durably appended to the event log.")
            .With({}),
        r.AddCounter("kervan_event_log_commits_total",
                     "Group commits of the event log (one transaction each).")
            .With({}),
        r.AddCounter("kervan_event_log_commit_failures_total",
                     "Event-log transactions that failed to commit.")
            .With({}),
        r.AddHistogram("kervan_event_log_commit_batch_size", "Commands per group commit.",
                       {1, 2, 4, 8, 16, 32, 64, 128, 256, 512})
            .With({}),
        r.AddHistogram("kervan_event_log_commit_duration_seconds",
                       "Time from BEGIN to durable COMMIT of a group commit.",
                       core::LatencyBuckets())
            .With({}),
        r.AddGauge("kervan_event_log_head_seq", "Highest committed event seq.").With({}),
        r.AddGauge("kervan_event_subscriber_lag_events",
                   "Committed events a subscriber has not yet processed.", {"subscriber"}),
    };
    return m;
  }
};

// The event `d` becomes when appended after `seq` and `prev_hash`: seq, id,
// time and hash assigned. REQUIRES: ValidateDraft(d) is OK.
Event NewEvent(EventDraft d, int64_t seq, const std::string& prev_hash) {
  Event e;
  e.seq = seq + 1;
  e.id = core::NewUuidV7();
  e.time_us = core::NowMicros();
  e.type = std::move(d.type);
  e.subject_kind = std::move(d.subject_kind);
  e.subject_id = std::move(d.subject_id);
  e.actor = std::move(d.actor);
  e.reason = std::move(d.reason);
  e.correlation_id = std::move(d.correlation_id);
  e.causation_id = std::move(d.causation_id);
  e.project = std::move(d.project);
  e.data = core::CanonicalJson(d.data);
  e.prev_hash = prev_hash;
  e.hash = ComputeEventHash(e);
  return e;
}

// How InsertEvents treats a constraint violation.
enum class OnConflict {
  kAbortStatement,  // plain INSERT: the statement fails, the transaction goes on
  // The whole transaction is rolled back (SQLite: INSERT OR ROLLBACK;
  // PostgreSQL aborts the transaction on any error anyway). For multi-row
  // statements on SQLite this spares the statement journal, which copied
  // every page the statement touched to a temporary file.
  kRollbackTransaction,
};

// INSERT of `rows` events in one statement (rows = 1, 2, 4, ..., kMaxInsertRows).
constexpr size_t kMaxInsertRows = 32;
const std::string& InsertSql(size_t rows, bool or_rollback) {
  static const auto sql = [] {
    std::array<std::vector<std::string>, 2> out;
    for (int rollback = 0; rollback < 2; ++rollback) {
      out[rollback].resize(kMaxInsertRows + 1);
      for (size_t n = 1; n <= kMaxInsertRows; n *= 2) {
        std::string& q = out[rollback][n];
        q = rollback ? "INSERT OR ROLLBACK INTO" : "INSERT INTO";
        q += " events (seq, id, time_us, type, subject_kind, subject_id, actor, reason, "
             "correlation_id, causation_id, data, prev_hash, hash, project) VALUES ";
        for (size_t i = 0; i < n; ++i)
          q += i == 0 ? "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      : ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
      }
    }
    return out;
  }();
  return sql[or_rollback ? 1 : 0][rows];
}

// Inserts `events` (in seq order) with as few statements as the chunk sizes
// allow: one statement step inserts up to kMaxInsertRows rows, which costs
// the writer less than a statement per row (and on PostgreSQL saves a
// round trip per row).
Status InsertEvents(Connection& conn, const std::vector<const Event*>& events,
                    OnConflict on_conflict) {
  const bool or_rollback =
      on_conflict == OnConflict::kRollbackTransaction && conn.dialect() == Dialect::kSqlite;
  std::vector<Value> params;
  for (size_t done = 0; done < events.size();) {
    size_t rows = kMaxInsertRows;
    while (rows > events.size() - done)
      rows /= 2;
    params.clear();
    params.reserve(rows * 14);
    for (size_t i = done; i < done + rows; ++i) {
      const Event& e = *events[i];
      params.insert(params.end(), {e.seq, e.id, e.time_us, e.type, e.subject_kind, e.subject_id,
                                   e.actor, e.reason, e.correlation_id, e.causation_id, e.data,
                                   e.prev_hash, e.hash, e.project});
    }
    RETURN_IF_ERROR(conn.Exec(InsertSql(rows, or_rollback), params));
    done += rows;
  }
  return core::Ok();
}

// CommandTx over the writer connection; advances the batch's seq and chain.
class WriterTx final : public CommandTx {
 public:
  WriterTx(Connection& conn, int64_t& seq, std::string& prev)
      : conn_(conn), seq_(seq), prev_(prev) {}
  Connection& conn() override { return conn_; }

  Result<Event> Append(EventDraft d) override {
    RETURN_IF_ERROR(ValidateDraft(d));
    Event e = NewEvent(std::move(d), seq_, prev_);
    RETURN_IF_ERROR(InsertEvents(conn_, {&e}, OnConflict::kAbortStatement));
    seq_ = e.seq;
    prev_ = e.hash;
    events.push_back(e);
    return e;
  }

  std::vector<Event> events;

 private:
  Connection& conn_;
  int64_t& seq_;
  std::string& prev_;
};

}  // namespace

// Commands committed in one transaction, and their results. Callers block
// on `done`, a futex word: after the commit the writer wakes all of a
// batch's callers with one system call. (A promise per command cost a futex
// wake-up system call per caller, ~10 us each on a paravirtualised guest,
// and needed a second thread to keep that off the writer.)
struct EventLog::Batch {
  // One per caller: a command (Execute), or an already validated event with
  // no projection change (Append), which the writer can insert together
  // with its neighbours.
  std::vector<std::variant<Command, EventDraft>> items;
  std::vector<Result<std::vector<Event>>> results;  // filled by the writer
  std::atomic<uint32_t> done{0};

  // Blocks until Finish(). Thread-safe.
  void Wait() {
    while (done.load(std::memory_order_acquire) == 0) {
      // Returns at once if done is no longer 0; spurious returns loop.
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&done), FUTEX_WAIT_PRIVATE, 0, nullptr,
              nullptr, 0);
    }
  }
  // Publishes `results` to the waiting callers and wakes them.
  void Finish() {
    done.store(1, std::memory_order_release);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&done), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
            nullptr, 0);
  }
};
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
              std::atomic<uint32_t>::is_always_lock_free);

namespace {

// Appends `s` exactly as core::CanonicalJson (nlohmann::json::dump with
// ensure_ascii=false) writes a JSON string. ASCII text is escaped here;
// anything else goes through the JSON library, whose UTF-8 validation and
// replacement rules then apply unchanged.
void AppendCanonicalString(std::string& out, std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      // nlohmann's encoding of non-ASCII text (and its handling of invalid
      // UTF-8) is what stored hashes were computed with: keep it.
      out += core::CanonicalJson(Json(std::string(s)));
      return;
    }
  }
  core::AppendJsonString(out, s);  // the same bytes as nlohmann for ASCII
}

}  // namespace

// The hashed text is prev_hash, "\n", and the canonical JSON of the array
// [seq, id, time_us, type, subject_kind, subject_id, actor, reason,
// correlation_id, causation_id, data] (plus project when non-empty, see
// event_log.h); written directly rather than by
// building a Json array (a third of the hash's cost went to that).
std::string ComputeEventHash(const Event& e) {
  std::string text;
  text.reserve(e.prev_hash.size() + e.data.size() + 256);
  text += e.prev_hash;
  text += "\n[";
  text += std::to_string(e.seq);
  text += ',';
  AppendCanonicalString(text, e.id);
  text += ',';
  text += std::to_string(e.time_us);
  for (const std::string* field : {&e.type, &e.subject_kind, &e.subject_id, &e.actor, &e.reason,
                                   &e.correlation_id, &e.causation_id, &e.data}) {
    text += ',';
    AppendCanonicalString(text, *field);
  }
  if (!e.project.empty()) {
    text += ',';
    AppendCanonicalString(text, e.project);
  }
  text += ']';
  return core::Sha256Hex(text);
}

Json Event::ToJson() const {
  Json parsed = Json::parse(data, nullptr, false);
  return {{"seq", seq},
          {"id", id},
          {"time", core::FormatRfc3339(time_us)},
          {"type", type},
          {"subject", {{"kind", subject_kind}, {"id", subject_id}}},
          {"actor", actor},
          {"reason", reason},
          {"correlation_id", correlation_id},
          {"causation_id", causation_id},
          {"project", project},
          {"data", parsed.is_discarded() ? Json(data) : parsed},
          {"prev_hash", prev_hash},
          {"hash", hash}};
}

Json VerifyReport::ToJson() const {
  Json j = {{"ok", ok}, {"checked", checked}, {"head_seq", head_seq}};
  if (!ok) {
    j["first_bad_seq"] = first_bad_seq;
    j["problem"] = problem;
  }
  return j;
}

Result<std::unique_ptr<EventLog>> EventLog::Open(Database& db, EventLogOptions options) {
  ASSIGN_OR_RETURN(auto writer, db.OpenDedicated());
  ASSIGN_OR_RETURN(Rows rows, writer->Query("SELECT MAX(seq) FROM events"));
  int64_t head = rows.empty() ? 0 : rows[0].Int(0);
  return std::unique_ptr<EventLog>(new EventLog(db, std::move(writer), options, head));
}

EventLog::EventLog(Database& db, std::unique_ptr<Connection> writer, EventLogOptions options,
                   int64_t head_seq)
    : db_(db), writer_(std::move(writer)), options_(options) {
  head_seq_.store(head_seq);
  Metrics::Get().head.Set(static_cast<double>(head_seq));
  writer_thread_ = std::thread([this] { WriterLoop(); });
  // Named for top/perf (at most 15 characters).
  pthread_setname_np(writer_thread_.native_handle(), "kervan-evlog");
}

EventLog::~EventLog() {
  Stop();
}

void EventLog::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !writer_thread_.joinable())
      return;
    stopping_ = true;
  }
  queue_cv_.notify_all();
  commit_cv_.notify_all();
  if (writer_thread_.joinable())
    writer_thread_.join();
}

Result<std::vector<Event>> EventLog::Execute(Command command) {
  return Enqueue(std::move(command));
}

Result<std::vector<Event>> EventLog::Enqueue(std::variant<Command, EventDraft> item) {
  std::shared_ptr<Batch> batch;
  size_t index = 0;
  bool was_idle = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_)
      return core::Unavailable("event log is shutting down");
    was_idle = queue_.empty();
    if (was_idle || queue_.back()->items.size() >= options_.max_batch)
      queue_.push_back(std::make_shared<Batch>());
    batch = queue_.back();
    index = batch->items.size();
    batch->items.push_back(std::move(item));
  }
  // The writer sleeps only on an empty queue.
  if (was_idle)
    queue_cv_.notify_one();
  batch->Wait();
  return std::move(batch->results[index]);
}

Result<Event> EventLog::Append(EventDraft draft) {
  // Validated here, so that in the writer only a database error can fail it.
  RETURN_IF_ERROR(ValidateDraft(draft));
  ASSIGN_OR_RETURN(auto events, Enqueue(std::move(draft)));
  return std::move(events.front());
}

void EventLog::WriterLoop() {
  for (;;) {
    std::shared_ptr<Batch> batch;
    {
      std::unique_lock lock(mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return;  // stopping and drained
      // Once taken off the queue, no caller adds to it any more.
      batch = std::move(queue_.front());
      queue_.pop_front();
    }
    CommitBatch(*batch);
    batch->Finish();
  }
}

// Fills batch.results; the caller then Finish()es the batch.
void EventLog::CommitBatch(Batch& batch) {
  Metrics& m = Metrics::Get();
  auto started = std::chrono::steady_clock::now();
  std::vector<Result<std::vector<Event>>>& results = batch.results;
  const auto& items = batch.items;
  auto fail_all = [&](const Error& e) {
    m.failures.Inc();
    core::LogError("event log commit failed: " + e.message,
                   {{"event.action", "event_log.commit_failed"}, {"batch.size", items.size()}});
    results.assign(items.size(), Result<std::vector<Event>>(e));
  };

  Connection& conn = *writer_;
  int64_t seq = 0;
  std::string prev;
  // Opens the transaction and reads the chain head inside it: with
  // PostgreSQL another server may have appended since our last commit. The
  // advisory lock serialises appenders across servers so seq stays gap-free
  // and the chain linear.
  auto begin = [&]() -> Status {
    RETURN_IF_ERROR(conn.Begin());
    if (conn.dialect() == Dialect::kPostgres) {
      RETURN_IF_ERROR(conn.Query("SELECT pg_advisory_xact_lock(7305180)"));
    }
    ASSIGN_OR_RETURN(Rows head,
                     conn.Query("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"));
    seq = head.empty() ? 0 : head[0].Int(0);
    prev = head.empty() ? std::string(kGenesisHash) : head[0].Text(1);
    return core::Ok();
  };
  if (Status s = begin(); !s) {
    (void)conn.Rollback();
    return fail_all(s.error());
  }
  if (seq != head_seq()) {
    // Another server sharing the database appended since our last commit:
    // the recent-events cache now has a hole, so drop it (reads fall back to
    // the database until it refills).
    std::lock_guard lock(mu_);
    recent_.clear();
  }

  // Fast pass: the commands back to back, no savepoints (they cost a third
  // of the SQL per event), and runs of plain appends inserted a chunk of
  // rows per statement (before the next command runs, so it sees them). If
  // anything fails, roll everything back and run the batch again with a
  // SAVEPOINT around each command and one INSERT per event, so a failure
  // undoes only its own command. Commands are deterministic over the
  // database (see Command), so running one twice is safe.
  results.clear();
  results.reserve(items.size());  // no reallocation: `unwritten` points into it
  std::vector<const Event*> unwritten;
  std::optional<Error> failure;
  for (const auto& item : items) {
    if (const auto* draft = std::get_if<EventDraft>(&item)) {
      auto& events = results.emplace_back(std::vector<Event>()).value();
      events.push_back(NewEvent(*draft, seq, prev));
      seq = events.back().seq;
      prev = events.back().hash;
      unwritten.push_back(&events.back());
      continue;
    }
    if (!unwritten.empty()) {
      if (Status s = InsertEvents(conn, unwritten, OnConflict::kRollbackTransaction); !s) {
        failure = std::move(s).error();
        break;
      }
      unwritten.clear();
    }
    WriterTx tx(conn, seq, prev);
    Status st = std::get<Command>(item)(tx);
    if (!st) {
      failure = st.error();
      results.emplace_back(std::move(st).error());
      break;
    }
    results.emplace_back(std::move(tx.events));
  }
  if (!failure && !unwritten.empty()) {
    if (Status s = InsertEvents(conn, unwritten, OnConflict::kRollbackTransaction); !s)
      failure = std::move(s).error();
  }
  bool fast_failed = failure.has_value();
  if (fast_failed && items.size() == 1) {
    // Alone in its transaction: nothing else to keep.
    (void)conn.Rollback();
    results.assign(1, Result<std::vector<Event>>(*failure));
    return;
  }
  if (fast_failed) {
    results.clear();
    // (An INSERT OR ROLLBACK may have ended the transaction already.)
    if (conn.InTransaction()) {
      if (Status s = conn.Rollback(); !s)
        return fail_all(s.error());
    }
    if (Status s = begin(); !s) {
      (void)conn.Rollback();
      return fail_all(s.error());
    }
    for (const auto& item : items) {
      if (auto s = conn.Exec("SAVEPOINT kervan_cmd"); !s) {
        (void)conn.Rollback();
        return fail_all(s.error());
      }
      int64_t seq_before = seq;
      std::string prev_before = prev;
      WriterTx tx(conn, seq, prev);
      Status st;
      if (const auto* draft = std::get_if<EventDraft>(&item)) {
        auto appended = tx.Append(*draft);
        if (!appended)
          st = std::move(appended).error();
      } else {
        st = std::get<Command>(item)(tx);
      }
      if (!st) {
        seq = seq_before;
        prev = std::move(prev_before);
        if (auto s = conn.Exec("ROLLBACK TO SAVEPOINT kervan_cmd"); !s) {
          (void)conn.Rollback();
          return fail_all(s.error());
        }
      }
      if (auto s = conn.Exec("RELEASE SAVEPOINT kervan_cmd"); !s) {
        (void)conn.Rollback();
        return fail_all(s.error());
      }
      if (st) {
        results.emplace_back(std::move(tx.events));
      } else {
        results.emplace_back(std::move(st).error());
      }
    }
  }

  if (Status s = conn.Commit(); !s) {
    (void)conn.Rollback();
    return fail_all(s.error());
  }

  // Durable. Publish; WriterLoop then wakes the callers.
  size_t appended = 0;
  {
    std::lock_guard lock(mu_);
    for (auto& r : results) {
      if (!r)
        continue;
      for (const Event& e : *r) {
        recent_.push_back(e);
        ++appended;
      }
    }
    while (recent_.size() > options_.recent_cache)
      recent_.pop_front();
    head_seq_.store(seq, std::memory_order_release);
  }
  commit_cv_.notify_all();
  m.commits.Inc();
  m.appended.Inc(static_cast<double>(appended));
  m.batch_size.Observe(static_cast<double>(items.size()));
  m.commit_seconds.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  m.head.Set(static_cast<double>(seq));
  std::vector<std::function<void(int64_t)>> listeners;
  {
    std::lock_guard lock(mu_);
    listeners = listeners_;
  }
  for (auto& l : listeners)
    l(seq);
}

void EventLog::AddCommitListener(std::function<void(int64_t)> listener) {
  std::lock_guard lock(mu_);
  listeners_.push_back(std::move(listener));
}

bool EventLog::WaitForNewer(int64_t after_seq, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  commit_cv_.wait_until(lock, deadline, [&] { return stopping_ || head_seq() > after_seq; });
  return head_seq() > after_seq;
}

Result<std::vector<Event>> EventLog::Read(const EventQuery& query) {
  int limit = std::clamp(query.limit, 1, 10000);
  {
    // Fast path: the recent cache covers everything after after_seq.
    std::lock_guard lock(mu_);
    if (!recent_.empty() && recent_.front().seq <= query.after_seq + 1) {
      std::vector<Event> out;
      for (const Event& e : recent_) {
        if (e.seq <= query.after_seq || !Matches(e, query))
          continue;
        out.push_back(e);
        if (static_cast<int>(out.size()) >= limit)
          break;
      }
      return out;
    }
  }
  std::string sql = fmt::format("SELECT {} FROM events WHERE seq > ?", kEventColumns);
  std::vector<Value> params{query.after_seq};
  auto add = [&](std::string_view column, const std::string& value) {
    if (value.empty())
      return;
    sql += fmt::format(" AND {} = ?", column);
    params.emplace_back(value);
  };
  add("subject_kind", query.subject_kind);
  add("subject_id", query.subject_id);
  add("type", query.type);
  add("actor", query.actor);
  add("project", query.project);
  if (!query.type_prefix.empty()) {
    // substr, not LIKE: LIKE's escaping and case rules differ between the
    // backends, and so does a range's collation.
    sql += fmt::format(" AND substr(type, 1, {}) = ?", query.type_prefix.size());
    params.emplace_back(query.type_prefix);
  }
  if (query.since_us > 0) {
    sql += " AND time_us >= ?";
    params.emplace_back(query.since_us);
  }
  if (query.until_us > 0) {
    sql += " AND time_us < ?";
    params.emplace_back(query.until_us);
  }
  sql += " ORDER BY seq LIMIT ?";
  params.emplace_back(int64_t{limit});
  ASSIGN_OR_RETURN(PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  std::vector<Event> out;
  out.reserve(rows.size());
  for (const Row& r : rows)
    out.push_back(EventFromRow(r));
  return out;
}

Result<VerifyReport> EventLog::Verify() {
  ASSIGN_OR_RETURN(PooledConnection conn, db_.Acquire());
  VerifyReport report;
  std::string prev(kGenesisHash);
  int64_t expected = 1;
  const std::string sql =
      fmt::format("SELECT {} FROM events WHERE seq >= ? ORDER BY seq LIMIT 2000", kEventColumns);
  for (;;) {
    ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, {expected}));
    if (rows.empty())
      break;
    for (const Row& r : rows) {
      Event e = EventFromRow(r);
      ++report.checked;
      report.head_seq = e.seq;
      auto broken = [&](std::string problem) {
        report.ok = false;
        report.first_bad_seq = e.seq;
        report.problem = std::move(problem);
      };
      if (e.seq != expected) {
        broken(fmt::format("gap: expected seq {}, found {}", expected, e.seq));
      } else if (e.prev_hash != prev) {
        broken(fmt::format("prev_hash does not match the hash of event {}", e.seq - 1));
      } else if (ComputeEventHash(e) != e.hash) {
        broken("stored hash does not match the event's contents (event was altered)");
      }
      if (!report.ok)
        return report;
      prev = e.hash;
      ++expected;
    }
  }
  return report;
}

std::unique_ptr<EventLog::Subscription> EventLog::Subscribe(
    std::string name, int64_t after_seq, std::function<Status(const Event&)> handler) {
  return std::unique_ptr<Subscription>(
      new Subscription(this, std::move(name), after_seq, std::move(handler), false));
}

Result<std::unique_ptr<EventLog::Subscription>> EventLog::SubscribeDurable(
    std::string name, std::function<Status(const Event&)> handler) {
  ASSIGN_OR_RETURN(PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(
      Rows rows, conn->Query("SELECT cursor_seq FROM event_subscriptions WHERE name = ?", {name}));
  int64_t after = rows.empty() ? 0 : rows[0].Int(0);
  return std::unique_ptr<Subscription>(
      new Subscription(this, std::move(name), after, std::move(handler), true));
}

EventLog::Subscription::Subscription(EventLog* log, std::string name, int64_t after,
                                     std::function<Status(const Event&)> handler, bool durable)
    : log_(log),
      name_(std::move(name)),
      handler_(std::move(handler)),
      cursor_(after),
      durable_(durable) {
  thread_ = std::thread([this] { Run(); });
}

EventLog::Subscription::~Subscription() {
  stop_.store(true);
  log_->commit_cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void EventLog::Subscription::Run() {
  core::Gauge& lag = Metrics::Get().lag.With({name_});
  using Clock = std::chrono::steady_clock;
  while (!stop_.load()) {
    int64_t cursor = cursor_.load();
    lag.Set(static_cast<double>(log_->head_seq() - cursor));
    if (!log_->WaitForNewer(cursor, Clock::now() + std::chrono::milliseconds(200)))
      continue;
    auto events = log_->Read({.after_seq = cursor, .limit = 500});
    if (!events) {
      core::LogWarn(
          "subscription read failed: " + events.error().message,
          {{"event.action", "event_log.subscription_read_failed"}, {"subscriber", name_}});
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    for (const Event& e : *events) {
      while (!stop_.load()) {
        Status s = handler_(e);
        if (s)
          break;
        core::LogWarn("subscriber failed on event, will retry: " + s.error().message,
                      {{"event.action", "event_log.subscriber_failed"},
                       {"subscriber", name_},
                       {"event.sequence", e.seq}});
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      if (stop_.load())
        return;
      cursor_.store(e.seq);
      lag.Set(static_cast<double>(log_->head_seq() - e.seq));
    }
    // One write per delivered batch, not per event.
    if (durable_ && !events->empty())
      SaveCursor(events->back().seq);
  }
}

void EventLog::Subscription::SaveCursor(int64_t seq) {
  auto conn = log_->db_.Acquire();
  Status s = conn ? Status() : Status(conn.error());
  if (conn) {
    auto r = (*conn)->Exec(
        "INSERT INTO event_subscriptions (name, cursor_seq, updated_us) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET cursor_seq = excluded.cursor_seq, "
        "updated_us = excluded.updated_us",
        {name_, seq, core::NowMicros()});
    if (!r)
      s = r.error();
  }
  if (!s) {
    // Not fatal: the next batch saves again; a crash before then only means
    // those events are delivered once more.
    core::LogWarn("cannot save subscription cursor: " + s.error().message,
                  {{"event.action", "event_log.cursor_save_failed"}, {"subscriber", name_}});
  }
}

}  // namespace kervan::store
