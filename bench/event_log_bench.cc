// Event-log benchmarks: how many events per second EventLog::Append makes
// durable with 1, 8 and 64 concurrent appenders (group commit), what one
// Append costs in latency, and — for context — what the disk's fdatasync
// costs, since a durable commit cannot be faster than one.
//
//   sqlite/append                  SQLite (WAL, synchronous=FULL) on a real
//                                  disk directory: KERVAN_BENCH_DIR, default
//                                  /var/tmp. Refuses tmpfs/ramfs.
//   postgres/append                PostgreSQL, only when KERVAN_BENCH_PG_DSN
//                                  (key=value libpq string of a user that may
//                                  CREATE DATABASE) is set; a fresh database
//                                  per run, dropped after.
//   sqlite_shm_NOT_DURABLE/append  SQLite on /dev/shm (tmpfs: fdatasync is a
//                                  no-op). NOT DURABLE — a reference for the
//                                  CPU cost of the log itself.
//   disk/fdatasync_4k_*            pwrite 4 KiB + fdatasync in a loop, in the
//                                  same directory as sqlite/append.
//   cpu/*                          what the writer thread spends per event
//                                  outside the database (id, canonical JSON,
//                                  hash, waking the appender), single-threaded.
//   */sql_batch_*, */round_trip_*  the writer's SQL alone (see BM_SqlBatch).
//
// Each run (Google Benchmark calls a benchmark several times while it sizes
// the iteration count) gets a fresh, migrated database and event log, set up
// before the clock starts and shared by all the run's threads. Counters:
//   items_per_second   events durably appended per second (all threads)
//   p50_us p99_us p999_us max_us   latency of one Append, every thread's calls
//   samples            how many Append calls the percentiles come from
//   events_per_commit  mean group-commit batch (from the log's own metrics)
//   writer_busy        share of the run the log's writer thread was on a CPU
//   writer_runq        share of the run it was runnable but waiting for a CPU
//   writer_cpu_us_per_event  its CPU time per appended event
//   process_cpu_us_per_event CPU time of the whole process (every thread,
//                            user + system) per appended event: what the log
//                            costs the machine, however the load is spread
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "store/store.h"

namespace kervan::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using core::Result;
using core::Status;

enum class Backend { kSqliteDisk, kSqliteShm, kPostgres };

constexpr long kTmpfsMagic = 0x01021994;
constexpr long kRamfsMagic = 0x858458f6;

std::string RandomSuffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng() % 1000000000);
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// The directory durable runs write to.
fs::path DiskDir() {
  std::string d = Env("KERVAN_BENCH_DIR");
  return d.empty() ? fs::path("/var/tmp") : fs::path(d);
}

bool IsMemoryFs(const fs::path& dir) {
  struct statfs st {};
  if (statfs(dir.c_str(), &st) != 0)
    return false;
  return static_cast<long>(st.f_type) == kTmpfsMagic || static_cast<long>(st.f_type) == kRamfsMagic;
}

Status RequireDisk(const fs::path& dir) {
  if (IsMemoryFs(dir)) {
    return core::FailedPrecondition(
        "KERVAN_BENCH_DIR=" + dir.string() +
        " is tmpfs/ramfs: fdatasync is a no-op there, so the result would not be durable; "
        "point KERVAN_BENCH_DIR at a directory on a real disk");
  }
  return core::Ok();
}

// Latency samples in microseconds -> percentile (nearest rank).
double Percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty())
    return 0;
  size_t rank = static_cast<size_t>(p * static_cast<double>(sorted.size()));
  return sorted[std::min(rank, sorted.size() - 1)];
}

void ReportLatency(benchmark::State& state, std::vector<double> samples_us) {
  std::sort(samples_us.begin(), samples_us.end());
  state.counters["p50_us"] = Percentile(samples_us, 0.50);
  state.counters["p99_us"] = Percentile(samples_us, 0.99);
  state.counters["p999_us"] = Percentile(samples_us, 0.999);
  state.counters["max_us"] = samples_us.empty() ? 0 : samples_us.back();
  state.counters["samples"] = static_cast<double>(samples_us.size());
}

// The thread ids of this process (/proc/self/task).
std::vector<int> ThreadIds() {
  std::vector<int> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/self/task", ec)) {
    ids.push_back(std::atoi(entry.path().filename().c_str()));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// A thread's name (/proc/self/task/TID/comm), or "" if unknown.
std::string ThreadName(int tid) {
  std::string name;
  std::string path = "/proc/self/task/" + std::to_string(tid) + "/comm";
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f) != nullptr)
      name = buf;
    std::fclose(f);
  }
  if (!name.empty() && name.back() == '\n')
    name.pop_back();
  return name;
}

// A thread's scheduler accounting (/proc/self/task/TID/schedstat): time on a
// CPU and time runnable but waiting for one, in microseconds.
struct SchedTimes {
  double on_cpu_us = 0, runq_wait_us = 0;
  static SchedTimes Read(int tid) {
    SchedTimes t;
    if (tid <= 0)
      return t;
    std::string path = "/proc/self/task/" + std::to_string(tid) + "/schedstat";
    if (std::FILE* f = std::fopen(path.c_str(), "r")) {
      unsigned long long cpu_ns = 0, wait_ns = 0;
      if (std::fscanf(f, "%llu %llu", &cpu_ns, &wait_ns) == 2) {
        t.on_cpu_us = static_cast<double>(cpu_ns) / 1000;
        t.runq_wait_us = static_cast<double>(wait_ns) / 1000;
      }
      std::fclose(f);
    }
    return t;
  }
};

// CPU time of the whole process so far (all threads, user + system), in
// microseconds.
double ProcessCpuUs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
  };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

// The event log's own counters, to report the mean group-commit batch.
struct CommitCounters {
  double appends = 0, commits = 0;
  static CommitCounters Read() {
    auto& r = core::GlobalMetrics();
    return {r.AddCounter("kervan_event_log_appends_total", "").With({}).value(),
            r.AddCounter("kervan_event_log_commits_total", "").With({}).value()};
  }
};

// A fresh migrated database, optionally with an open event log, and what it
// takes to remove it again.
class LogUnderTest {
 public:
  static Result<std::unique_ptr<LogUnderTest>> Create(Backend backend, bool open_log = true) {
    auto t = std::unique_ptr<LogUnderTest>(new LogUnderTest());
    if (backend == Backend::kPostgres) {
      t->admin_dsn_ = Env("KERVAN_BENCH_PG_DSN");
      if (t->admin_dsn_.empty())
        return core::FailedPrecondition("KERVAN_BENCH_PG_DSN is not set");
      std::string name = "kervan_bench_" + RandomSuffix();
      ASSIGN_OR_RETURN(auto admin, store::OpenPostgres({.dsn = t->admin_dsn_, .pool_size = 1}));
      {
        ASSIGN_OR_RETURN(auto conn, admin->Acquire());
        RETURN_IF_ERROR(conn->Exec("CREATE DATABASE " + name));
      }
      t->pg_database_ = name;
      // libpq takes the last value of a repeated key.
      ASSIGN_OR_RETURN(
          t->db_, store::OpenPostgres({.dsn = t->admin_dsn_ + " dbname=" + name, .pool_size = 2}));
    } else {
      fs::path base = backend == Backend::kSqliteShm ? fs::path("/dev/shm") : DiskDir();
      if (backend == Backend::kSqliteDisk)
        RETURN_IF_ERROR(RequireDisk(base));
      t->dir_ = base / ("kervan-bench-" + RandomSuffix());
      std::error_code ec;
      fs::create_directories(t->dir_, ec);
      if (ec)
        return core::Unavailable("cannot create " + t->dir_.string() + ": " + ec.message());
      ASSIGN_OR_RETURN(
          t->db_, store::OpenSqlite({.path = (t->dir_ / "kervan.db").string(), .pool_size = 2}));
    }
    RETURN_IF_ERROR(store::ApplyMigrations(*t->db_));
    if (open_log) {
      // The log starts a writer thread (named kervan-evlog): find it, to
      // account its CPU time.
      std::vector<int> before = ThreadIds();
      ASSIGN_OR_RETURN(t->log_, store::EventLog::Open(*t->db_));
      std::vector<int> after = ThreadIds(), added;
      std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                          std::back_inserter(added));
      for (int tid : added) {
        if (ThreadName(tid) == "kervan-evlog")
          t->writer_tid_ = tid;
      }
      if (t->writer_tid_ == 0 && added.size() == 1)
        t->writer_tid_ = added[0];
    }
    return t;
  }

  ~LogUnderTest() {
    if (log_)
      log_->Stop();
    log_.reset();
    db_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    if (!pg_database_.empty()) {
      auto admin = store::OpenPostgres({.dsn = admin_dsn_, .pool_size = 1});
      if (admin) {
        auto conn = (*admin)->Acquire();
        if (conn) {
          auto r = (*conn)->Exec("DROP DATABASE IF EXISTS " + pg_database_ + " WITH (FORCE)");
          if (!r)
            std::fprintf(stderr, "bench: cannot drop %s: %s\n", pg_database_.c_str(),
                         r.error().ToString().c_str());
        }
      }
    }
  }

  // REQUIRES: created with open_log.
  store::EventLog& log() { return *log_; }
  store::Database& database() { return *db_; }
  // The log's writer thread, or 0 when it could not be told apart.
  int writer_tid() const { return writer_tid_; }

 private:
  LogUnderTest() = default;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::EventLog> log_;
  fs::path dir_;
  std::string admin_dsn_, pg_database_;
  int writer_tid_ = 0;
};

// What one run shares between its threads. Written by Setup (before any
// thread starts) and by each thread into its own slot inside the timed loop;
// thread 0 reads every slot after the loop's closing barrier.
struct SharedRun {
  std::unique_ptr<LogUnderTest> target;
  std::string error;
  std::vector<std::vector<double>> latency_us;  // one per thread
  CommitCounters before;
  SchedTimes writer_before;
  double process_cpu_before_us = 0;
  Clock::time_point started;
};
SharedRun g_run;

template <Backend B, bool kOpenLog = true>
void SetupLog(const benchmark::State& state) {
  g_run = SharedRun{};
  g_run.latency_us.resize(static_cast<size_t>(state.threads()));
  auto t = LogUnderTest::Create(B, kOpenLog);
  if (!t) {
    g_run.error = t.error().ToString();
    return;
  }
  g_run.target = std::move(t).value();
  g_run.before = CommitCounters::Read();
  g_run.writer_before = SchedTimes::Read(g_run.target->writer_tid());
  g_run.process_cpu_before_us = ProcessCpuUs();
  g_run.started = Clock::now();
}

void TeardownLog(const benchmark::State&) {
  g_run = SharedRun{};
}

store::EventDraft Draft(int thread, int64_t i) {
  store::EventDraft d;
  d.type = "bench.appended";
  d.subject_kind = "bench";
  d.subject_id = "appender-" + std::to_string(thread);
  d.actor = "system:bench";
  d.reason = "throughput benchmark";
  d.correlation_id = "bench";
  d.data = core::Json{{"i", i}, {"payload", "0123456789abcdef0123456789abcdef"}};
  return d;
}

void BM_Append(benchmark::State& state) {
  if (!g_run.error.empty() || !g_run.target) {
    state.SkipWithError(g_run.error.empty() ? "no log" : g_run.error.c_str());
    for (auto _ : state) {
    }
    return;
  }
  store::EventLog& log = g_run.target->log();
  std::vector<double>& lat = g_run.latency_us[static_cast<size_t>(state.thread_index())];
  int64_t i = 0;
  for (auto _ : state) {
    store::EventDraft d = Draft(state.thread_index(), i++);
    auto t0 = Clock::now();
    auto r = log.Append(std::move(d));
    auto t1 = Clock::now();
    if (!r) {
      state.SkipWithError(r.error().ToString().c_str());
      break;
    }
    lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0 && !state.error_occurred()) {
    // Every thread has passed the closing barrier (or left the loop on an
    // error): no slot is written any more.
    std::vector<double> all;
    for (const auto& v : g_run.latency_us)
      all.insert(all.end(), v.begin(), v.end());
    ReportLatency(state, std::move(all));
    CommitCounters after = CommitCounters::Read();
    double commits = after.commits - g_run.before.commits;
    double appends = after.appends - g_run.before.appends;
    state.counters["events_per_commit"] = commits > 0 ? appends / commits : 0;
    if (appends > 0)
      state.counters["process_cpu_us_per_event"] =
          (ProcessCpuUs() - g_run.process_cpu_before_us) / appends;
    // The writer thread's share of the run: on a CPU (busy), waiting for one
    // (runq), and its CPU time per event. busy near 1 means the single
    // writer is the bottleneck; a large runq share means CPU contention.
    if (int tid = g_run.target->writer_tid(); tid > 0 && appends > 0) {
      SchedTimes w = SchedTimes::Read(tid);
      double wall_us =
          std::chrono::duration<double, std::micro>(Clock::now() - g_run.started).count();
      double cpu = w.on_cpu_us - g_run.writer_before.on_cpu_us;
      state.counters["writer_busy"] = cpu / wall_us;
      state.counters["writer_runq"] = (w.runq_wait_us - g_run.writer_before.runq_wait_us) / wall_us;
      state.counters["writer_cpu_us_per_event"] = cpu / appends;
    }
  }
}

// Raw cost of a durable 4 KiB write on the benchmark's disk.
struct SyncFile {
  int fd = -1;
  fs::path path;
  std::string error;
};
SyncFile g_sync;

void SetupSyncFile(const benchmark::State&) {
  g_sync = SyncFile{};
  fs::path dir = DiskDir();
  if (auto s = RequireDisk(dir); !s) {
    g_sync.error = s.error().ToString();
    return;
  }
  g_sync.path = dir / ("kervan-bench-fsync-" + RandomSuffix());
  g_sync.fd = ::open(g_sync.path.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
  if (g_sync.fd < 0)
    g_sync.error = "open " + g_sync.path.string() + ": " + std::strerror(errno);
}

void TeardownSyncFile(const benchmark::State&) {
  if (g_sync.fd >= 0)
    ::close(g_sync.fd);
  if (!g_sync.path.empty())
    ::unlink(g_sync.path.c_str());
  g_sync = SyncFile{};
}

// overwrite=true rewrites block 0 (like a WAL being reused after a
// checkpoint); false appends, so each sync also persists the new size.
void BM_Fdatasync(benchmark::State& state, bool overwrite) {
  if (!g_sync.error.empty()) {
    state.SkipWithError(g_sync.error.c_str());
    for (auto _ : state) {
    }
    return;
  }
  std::vector<char> block(4096, 'k');
  std::vector<double> lat;
  off_t offset = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    if (::pwrite(g_sync.fd, block.data(), block.size(), offset) !=
            static_cast<ssize_t>(block.size()) ||
        ::fdatasync(g_sync.fd) != 0) {
      state.SkipWithError(std::strerror(errno));
      break;
    }
    auto t1 = Clock::now();
    lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    if (!overwrite)
      offset += static_cast<off_t>(block.size());
  }
  state.SetItemsProcessed(state.iterations());
  ReportLatency(state, std::move(lat));
}

// Per-event CPU work the writer thread does before the INSERT.
store::Event SampleEvent() {
  store::Event e;
  e.seq = 123456;
  e.id = core::NewUuidV7();
  e.time_us = core::NowMicros();
  store::EventDraft d = Draft(3, 42);
  e.type = d.type;
  e.subject_kind = d.subject_kind;
  e.subject_id = d.subject_id;
  e.actor = d.actor;
  e.reason = d.reason;
  e.correlation_id = d.correlation_id;
  e.data = core::CanonicalJson(d.data);
  e.prev_hash = std::string(store::kGenesisHash);
  return e;
}

void BM_NewUuidV7(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(core::NewUuidV7());
}

void BM_CanonicalJson(benchmark::State& state) {
  core::Json data = Draft(3, 42).data;
  for (auto _ : state)
    benchmark::DoNotOptimize(core::CanonicalJson(data));
}

void BM_ComputeEventHash(benchmark::State& state) {
  store::Event e = SampleEvent();
  for (auto _ : state)
    benchmark::DoNotOptimize(store::ComputeEventHash(e));
}

void BM_Sha256Hex(benchmark::State& state) {
  std::string text(300, 'k');  // about the size of a canonical event
  for (auto _ : state)
    benchmark::DoNotOptimize(core::Sha256Hex(text));
}

// What the writer pays to acknowledge its appenders after a commit:
// std::promise::set_value waking a thread blocked in future::get()
// (EventLog::Execute's wait), for state.range(0) blocked threads at once as
// after a group commit. Only the set_value calls are timed (manual time);
// items_per_second is wake-ups per second of the waking thread.
void BM_WakeBlockedThreads(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<std::promise<int>> promises(n);
    std::atomic<size_t> waiting{0};
    std::vector<std::thread> waiters;
    waiters.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      waiters.emplace_back([&, i] {
        std::future<int> f = promises[i].get_future();
        waiting.fetch_add(1);
        benchmark::DoNotOptimize(f.get());
      });
    }
    while (waiting.load() < n)
      std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let them block in the kernel
    auto t0 = Clock::now();
    for (auto& p : promises)
      p.set_value(1);
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
    for (auto& t : waiters)
      t.join();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

// The SQL the writer runs per group commit, without the log around it: one
// transaction of state.range(0) event INSERTs, each wrapped in SAVEPOINT /
// RELEASE as CommitBatch does (savepoints=true) or bare (false). Shows the
// statements' own cost (CPU on SQLite; round trips on PostgreSQL).
// False (and the benchmark marked failed) when `r` is an error.
template <typename T>
bool Check(benchmark::State& state, const Result<T>& r) {
  if (!r)
    state.SkipWithError(r.error().ToString().c_str());
  return static_cast<bool>(r);
}

void BM_SqlBatch(benchmark::State& state, bool savepoints) {
  if (!g_run.target) {
    state.SkipWithError(g_run.error.c_str());
    for (auto _ : state) {
    }
    return;
  }
  auto conn = g_run.target->database().Acquire();
  if (!Check(state, conn)) {
    for (auto _ : state) {
    }
    return;
  }
  store::Connection& c = **conn;
  const int64_t batch = state.range(0);
  const std::string hash(64, 'a');
  const std::string data = core::CanonicalJson(Draft(3, 42).data);
  int64_t seq = 0;
  bool ok = true;
  for (auto _ : state) {
    ok = Check(state, c.Begin());
    for (int64_t i = 0; i < batch && ok; ++i) {
      ++seq;
      if (savepoints)
        ok = Check(state, c.Exec("SAVEPOINT kervan_cmd"));
      ok = ok && Check(state, c.Exec("INSERT INTO events (seq, id, time_us, type, subject_kind, "
                                     "subject_id, actor, reason, correlation_id, causation_id, "
                                     "data, prev_hash, hash) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                     {seq, core::NewUuidV7(), core::NowMicros(),
                                      std::string("bench.appended"), std::string("bench"),
                                      std::string("appender-3"), std::string("system:bench"),
                                      std::string("throughput benchmark"), std::string("bench"),
                                      std::string(), data, hash, hash}));
      if (savepoints)
        ok = ok && Check(state, c.Exec("RELEASE SAVEPOINT kervan_cmd"));
    }
    ok = ok && Check(state, c.Commit());
    if (!ok)
      break;
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

// One statement's round trip ("SELECT 1") on a pooled connection.
void BM_RoundTrip(benchmark::State& state) {
  if (!g_run.target) {
    state.SkipWithError(g_run.error.c_str());
    for (auto _ : state) {
    }
    return;
  }
  auto conn = g_run.target->database().Acquire();
  if (!Check(state, conn)) {
    for (auto _ : state) {
    }
    return;
  }
  std::vector<double> lat;
  for (auto _ : state) {
    auto t0 = Clock::now();
    if (!Check(state, (*conn)->Query("SELECT 1")))
      break;
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  ReportLatency(state, std::move(lat));
}

void RegisterAppend(const char* name, void (*setup)(const benchmark::State&)) {
  benchmark::RegisterBenchmark(name, BM_Append)
      ->Setup(setup)
      ->Teardown(TeardownLog)
      ->Threads(1)
      ->Threads(8)
      ->Threads(64)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

void RegisterSql(const std::string& prefix, void (*setup)(const benchmark::State&)) {
  for (bool savepoints : {true, false}) {
    benchmark::RegisterBenchmark(
        (prefix + (savepoints ? "/sql_batch_with_savepoints" : "/sql_batch_plain_inserts")).c_str(),
        BM_SqlBatch, savepoints)
        ->Setup(setup)
        ->Teardown(TeardownLog)
        ->Arg(64)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark((prefix + "/round_trip_select_1").c_str(), BM_RoundTrip)
      ->Setup(setup)
      ->Teardown(TeardownLog)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

void RegisterAll() {
  benchmark::RegisterBenchmark("cpu/new_uuid_v7", BM_NewUuidV7);
  benchmark::RegisterBenchmark("cpu/canonical_json_data", BM_CanonicalJson);
  benchmark::RegisterBenchmark("cpu/sha256_hex_300B", BM_Sha256Hex);
  benchmark::RegisterBenchmark("cpu/compute_event_hash", BM_ComputeEventHash);
  benchmark::RegisterBenchmark("cpu/promise_wake_blocked_threads", BM_WakeBlockedThreads)
      ->Arg(1)
      ->Arg(64)
      ->Iterations(300)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("disk/fdatasync_4k_overwrite", BM_Fdatasync, true)
      ->Setup(SetupSyncFile)
      ->Teardown(TeardownSyncFile)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("disk/fdatasync_4k_append", BM_Fdatasync, false)
      ->Setup(SetupSyncFile)
      ->Teardown(TeardownSyncFile)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  const bool with_pg = !Env("KERVAN_BENCH_PG_DSN").empty();
  RegisterSql("sqlite_shm_NOT_DURABLE", SetupLog<Backend::kSqliteShm, false>);
  if (with_pg)
    RegisterSql("postgres", SetupLog<Backend::kPostgres, false>);
  RegisterAppend("sqlite/append", SetupLog<Backend::kSqliteDisk>);
  if (with_pg) {
    RegisterAppend("postgres/append", SetupLog<Backend::kPostgres>);
  } else {
    std::fprintf(stderr,
                 "bench: KERVAN_BENCH_PG_DSN not set: skipping postgres/append "
                 "(bench/run.sh starts a throwaway PostgreSQL)\n");
  }
  RegisterAppend("sqlite_shm_NOT_DURABLE/append", SetupLog<Backend::kSqliteShm>);
}

}  // namespace
}  // namespace kervan::bench

int main(int argc, char** argv) {
  // The log's per-commit logging stays quiet unless something fails.
  kervan::core::SetLogLevel(kervan::core::LogLevel::kWarn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  kervan::bench::RegisterAll();
  std::fprintf(stderr, "bench: durable runs write under %s\n", kervan::bench::DiskDir().c_str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
