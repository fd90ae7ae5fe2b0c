#include "store/event_log.h"

#include <future>

#include <fmt/format.h>

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
         (q.since_us <= 0 || e.time_us >= q.since_us) && (q.until_us <= 0 || e.time_us < q.until_us);
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

// CommandTx over the writer connection; advances the batch's seq and chain.
class WriterTx final : public CommandTx {
 public:
  WriterTx(Connection& conn, int64_t& seq, std::string& prev)
      : conn_(conn), seq_(seq), prev_(prev) {}
  Connection& conn() override { return conn_; }

  Result<Event> Append(EventDraft d) override {
    RETURN_IF_ERROR(ValidateDraft(d));
    Event e;
    e.seq = seq_ + 1;
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
    e.prev_hash = prev_;
    e.hash = ComputeEventHash(e);
    RETURN_IF_ERROR(conn_.Exec(
        "INSERT INTO events (seq, id, time_us, type, subject_kind, subject_id, actor, reason, "
        "correlation_id, causation_id, data, prev_hash, hash, project) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {e.seq, e.id, e.time_us, e.type, e.subject_kind, e.subject_id, e.actor, e.reason,
         e.correlation_id, e.causation_id, e.data, e.prev_hash, e.hash, e.project}));
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

struct EventLog::Pending {
  Command command;
  std::promise<Result<std::vector<Event>>> done;
};

std::string ComputeEventHash(const Event& e) {
  Json canonical = Json::array({e.seq, e.id, e.time_us, e.type, e.subject_kind, e.subject_id,
                                e.actor, e.reason, e.correlation_id, e.causation_id, e.data});
  if (!e.project.empty())
    canonical.push_back(e.project);
  return core::Sha256Hex(e.prev_hash + "\n" + core::CanonicalJson(canonical));
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
  ack_thread_ = std::thread([this] { AckLoop(); });
  writer_thread_ = std::thread([this] { WriterLoop(); });
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
  {
    std::lock_guard lock(ack_mu_);
    ack_stopping_ = true;
  }
  ack_cv_.notify_all();
  if (ack_thread_.joinable())
    ack_thread_.join();
}

Result<std::vector<Event>> EventLog::Execute(Command command) {
  auto pending = std::make_shared<Pending>();
  pending->command = std::move(command);
  auto future = pending->done.get_future();
  {
    std::lock_guard lock(mu_);
    if (stopping_)
      return core::Unavailable("event log is shutting down");
    queue_.push_back(pending);
  }
  queue_cv_.notify_one();
  return future.get();
}

Result<Event> EventLog::Append(EventDraft draft) {
  ASSIGN_OR_RETURN(auto events, Execute([&draft](CommandTx& tx) -> Status {
                     RETURN_IF_ERROR(tx.Append(std::move(draft)));
                     return core::Ok();
                   }));
  return std::move(events.front());
}

void EventLog::WriterLoop() {
  std::vector<std::shared_ptr<Pending>> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return;  // stopping and drained
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    CommitBatch(batch);
    batch.clear();
  }
}

void EventLog::CommitBatch(std::vector<std::shared_ptr<Pending>>& batch) {
  Metrics& m = Metrics::Get();
  auto started = std::chrono::steady_clock::now();
  auto fail_all = [&](const Error& e) {
    m.failures.Inc();
    core::LogError("event log commit failed: " + e.message,
                   {{"event.action", "event_log.commit_failed"}, {"batch.size", batch.size()}});
    for (auto& p : batch)
      p->done.set_value(e);
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
  // of the SQL per event). If one fails, roll everything back and run the
  // batch again with a SAVEPOINT around each command, so a failure undoes
  // only its own command. Commands are deterministic over the database (see
  // Command), so running one twice is safe.
  std::vector<Result<std::vector<Event>>> results;
  results.reserve(batch.size());
  for (auto& p : batch) {
    WriterTx tx(conn, seq, prev);
    Status st = p->command(tx);
    if (!st) {
      results.emplace_back(std::move(st).error());
      break;
    }
    results.emplace_back(std::move(tx.events));
  }
  bool fast_failed = results.size() < batch.size() || !results.back();
  if (fast_failed && batch.size() == 1) {
    // Alone in its transaction: nothing else to keep.
    (void)conn.Rollback();
    batch[0]->done.set_value(std::move(results[0]));
    return;
  }
  if (fast_failed) {
    results.clear();
    if (Status s = conn.Rollback(); !s)
      return fail_all(s.error());
    if (Status s = begin(); !s) {
      (void)conn.Rollback();
      return fail_all(s.error());
    }
    for (auto& p : batch) {
      if (auto s = conn.Exec("SAVEPOINT kervan_cmd"); !s) {
        (void)conn.Rollback();
        return fail_all(s.error());
      }
      int64_t seq_before = seq;
      std::string prev_before = prev;
      WriterTx tx(conn, seq, prev);
      Status st = p->command(tx);
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

  // Durable. Publish, then acknowledge.
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
  m.batch_size.Observe(static_cast<double>(batch.size()));
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
  // Waking each appender costs a futex wake-up (~10 µs here); hand that to
  // the acknowledger thread so the writer can start the next batch.
  {
    std::lock_guard lock(ack_mu_);
    acks_.push_back({std::move(batch), std::move(results)});
  }
  ack_cv_.notify_one();
}

void EventLog::AckLoop() {
  for (;;) {
    std::deque<Acknowledgement> work;
    {
      std::unique_lock lock(ack_mu_);
      ack_cv_.wait(lock, [&] { return ack_stopping_ || !acks_.empty(); });
      if (acks_.empty())
        return;  // stopping and drained
      work.swap(acks_);
    }
    for (auto& a : work) {
      for (size_t i = 0; i < a.batch.size(); ++i)
        a.batch[i]->done.set_value(std::move(a.results[i]));
    }
  }
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
