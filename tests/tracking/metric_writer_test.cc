// The group-commit writer for metric points, on both store backends:
// concurrent callers all land (acknowledged only once their points are
// visible to other connections), and a request that fails (a run that is
// deleted or missing, a row the database refuses) fails alone, writing
// nothing, while the rest of its group commits.
#include "tracking/metric_writer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"

namespace kervan::tracking::internal {
namespace {

using store::testing::BackendTest;

class MetricWriterTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    Migrated();
    auto conn = db_->Acquire();
    ASSERT_TRUE(conn);
    for (auto [pk, stage] : {std::pair<int64_t, const char*>{1, "active"}, {2, "deleted"}}) {
      auto r = (*conn)->Exec(
          "INSERT INTO runs (run_pk, run_uuid, experiment_id, name, user_id, status, "
          "start_time, lifecycle_stage, artifact_uri, project) VALUES (?, ?, 0, 'r', 'u', "
          "'RUNNING', 0, ?, 'a', 'default')",
          {pk, "run" + std::to_string(pk), std::string(stage)});
      ASSERT_TRUE(r) << r.error().ToString();
    }
  }

  // Points stored in metric_chunks and metric_batches (any run), of `key`
  // (every key if empty) and with `step` if given, decoded from the rows;
  // each row's n must match its text.
  int64_t Count(const std::string& key = "", std::optional<int64_t> step = {}) {
    auto conn = db_->Acquire();
    EXPECT_TRUE(conn);
    int64_t count = 0;
    auto add = [&](std::string_view k, std::string_view text) -> Status {
      std::vector<StoredPoint> points;
      RETURN_IF_ERROR(DecodePoints(text, points));
      for (const StoredPoint& p : points)
        count += (key.empty() || k == key) && (!step || p.step == *step);
      return core::Ok();
    };
    auto chunks = (*conn)->Query("SELECT key, n, points FROM metric_chunks");
    EXPECT_TRUE(chunks) << chunks.error().ToString();
    for (const store::Row& r : chunks ? *chunks : std::vector<store::Row>{}) {
      std::vector<StoredPoint> all;
      EXPECT_TRUE(DecodePoints(r.Text(2), all));
      EXPECT_EQ(static_cast<int64_t>(all.size()), r.Int(1));
      EXPECT_TRUE(add(r.Text(0), r.Text(2)));
    }
    auto batches = (*conn)->Query("SELECT n, points FROM metric_batches");
    EXPECT_TRUE(batches) << batches.error().ToString();
    for (const store::Row& r : batches ? *batches : std::vector<store::Row>{}) {
      int64_t n = 0;
      Status s = ForEachSection(r.Text(1), [&](std::string_view k, std::string_view text) {
        n += std::count(text.begin(), text.end(), ';');
        return add(k, text);
      });
      EXPECT_TRUE(s) << s.error().ToString();
      EXPECT_EQ(n, r.Int(0));
    }
    return count;
  }

  // (batch rows, chunk rows) of run 1.
  std::pair<int64_t, int64_t> Rows() {
    auto conn = db_->Acquire();
    EXPECT_TRUE(conn);
    auto b = (*conn)->Query("SELECT count(*) FROM metric_batches WHERE run_pk = 1");
    auto c = (*conn)->Query("SELECT count(*) FROM metric_chunks WHERE run_pk = 1");
    EXPECT_TRUE(b && c);
    return {b ? (*b)[0].Int(0) : -1, c ? (*c)[0].Int(0) : -1};
  }
};

TEST_P(MetricWriterTest, ConcurrentWritesLandAndAreVisibleWhenAcknowledged) {
  MetricWriter writer(*db_);
  constexpr int kThreads = 8, kWrites = 20;
  const std::string run_id = "run1";
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        const int64_t step = t * 1000 + i;
        std::vector<MetricPoint> points{{.key = "loss", .value = 1.0, .timestamp = 1, .step = step},
                                        {.key = "acc", .value = 0.5, .timestamp = 1, .step = step}};
        if (!writer.Write(1, run_id, EncodeChunks(1, points))) {
          ++failures;
          continue;
        }
        // Acknowledged means committed: another connection sees it now.
        if (Count("", step) != 2)
          ++failures;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Count(), 2 * kThreads * kWrites);
  MetricWriter::Stats stats = writer.stats();
  EXPECT_EQ(stats.requests, static_cast<uint64_t>(kThreads * kWrites));
  EXPECT_EQ(stats.points, static_cast<uint64_t>(2 * kThreads * kWrites));
  EXPECT_LE(stats.commits, stats.requests);
  auto conn = db_->Acquire();
  auto latest = (*conn)->Query("SELECT step FROM latest_metrics WHERE run_pk = 1 AND key = 'loss'");
  ASSERT_TRUE(latest && latest->size() == 1u);
  EXPECT_EQ((*latest)[0].Int(0), (kThreads - 1) * 1000 + kWrites - 1);
}

TEST_P(MetricWriterTest, AFailingRequestFailsAloneAndWritesNothing) {
  {
    // A row the database refuses, to break a group's transaction.
    auto conn = db_->Acquire();
    ASSERT_TRUE(conn);
    auto r = GetParam() == store::Dialect::kSqlite
                 ? (*conn)->Exec(
                       "CREATE TRIGGER poison BEFORE INSERT ON metric_batches WHEN NEW.points LIKE "
                       "'%poison%' BEGIN SELECT RAISE(ABORT, 'poison'); END")
                 : (*conn)->Exec(
                       "ALTER TABLE metric_batches ADD CONSTRAINT poison CHECK (points NOT LIKE "
                       "'%poison%')");
    ASSERT_TRUE(r) << r.error().ToString();
  }
  MetricWriter writer(*db_);
  struct Case {
    int64_t pk;
    std::string run_id;
    std::string key;
    Status result = core::Ok();
  };
  std::vector<Case> cases = {{1, "run1", "good"},
                             {1, "run1", "poison"},
                             {2, "run2", "gone"},
                             {99, "run99", "missing"},
                             {1, "run1", "good2"}};
  // Started together so that they are likely to share a group; the outcome
  // must not depend on whether they do.
  std::vector<std::thread> threads;
  for (Case& c : cases) {
    threads.emplace_back([&writer, &c] {
      std::vector<MetricPoint> points{{.key = c.key, .value = 1, .timestamp = 1, .step = 0},
                                      {.key = c.key, .value = 2, .timestamp = 2, .step = 1}};
      c.result = writer.Write(c.pk, c.run_id, EncodeChunks(c.pk, points));
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_TRUE(cases[0].result);
  ASSERT_FALSE(cases[1].result);
  ASSERT_FALSE(cases[2].result);
  EXPECT_EQ(cases[2].result.error().code, core::ErrorCode::kFailedPrecondition);
  ASSERT_FALSE(cases[3].result);
  EXPECT_EQ(cases[3].result.error().code, core::ErrorCode::kNotFound);
  EXPECT_TRUE(cases[4].result);
  EXPECT_EQ(Count("good"), 2);
  EXPECT_EQ(Count("good2"), 2);
  EXPECT_EQ(Count(), 4);  // nothing from the failed requests
  // The writer keeps working after a failed transaction.
  std::vector<MetricPoint> after{{.key = "after", .value = 1, .timestamp = 1, .step = 0}};
  EXPECT_TRUE(writer.Write(1, "run1", EncodeChunks(1, after)));
  EXPECT_EQ(Count("after"), 1);
}

// WriteAsync: the same results as Write, each answered once, only after
// its points are visible to other connections, in groups shared with
// blocking writers; requests still queued when the writer is destroyed are
// written and answered too.
TEST_P(MetricWriterTest, AsyncWritesAreAnsweredOnceAfterTheCommit) {
  struct Answer {
    std::atomic<int> calls{0};
    Status result = core::Ok();
    int64_t visible = -1;  // points of its key that another connection saw
  };
  std::vector<std::pair<int64_t, std::string>> runs = {
      {1, "run1"}, {2, "run2"}, {99, "run99"}, {1, "run1"}};
  std::vector<Answer> answers(runs.size() * 10);
  std::optional<MetricWriter> writer(std::in_place, *db_);
  std::thread blocking([&] {  // shares groups with the async requests
    for (int i = 0; i < 10; ++i) {
      std::vector<MetricPoint> points{{.key = "sync", .value = 1, .timestamp = 1, .step = i}};
      EXPECT_TRUE(writer->Write(1, "run1", EncodeChunks(1, points)));
    }
  });
  for (size_t i = 0; i < answers.size(); ++i) {
    const auto& [pk, run_id] = runs[i % runs.size()];
    const std::string key = "k" + std::to_string(i);
    std::vector<MetricPoint> points{{.key = key, .value = 1, .timestamp = 1, .step = 0},
                                    {.key = key, .value = 2, .timestamp = 2, .step = 1}};
    Answer& a = answers[i];
    writer->WriteAsync(pk, run_id, EncodeChunks(pk, points), [this, &a, key](Status s) {
      a.result = std::move(s);
      a.visible = Count(key);
      ++a.calls;
    });
  }
  blocking.join();
  writer.reset();  // answers whatever is still queued, then stops
  for (size_t i = 0; i < answers.size(); ++i) {
    const Answer& a = answers[i];
    ASSERT_EQ(a.calls.load(), 1) << i;
    switch (runs[i % runs.size()].first) {
      case 1:
        EXPECT_TRUE(a.result) << i;
        EXPECT_EQ(a.visible, 2) << i;
        break;
      case 2:
        ASSERT_FALSE(a.result);
        EXPECT_EQ(a.result.error().code, core::ErrorCode::kFailedPrecondition) << i;
        EXPECT_EQ(a.visible, 0) << i;
        break;
      default:
        ASSERT_FALSE(a.result);
        EXPECT_EQ(a.result.error().code, core::ErrorCode::kNotFound) << i;
        EXPECT_EQ(a.visible, 0) << i;
    }
  }
  EXPECT_EQ(Count("sync"), 10);
  EXPECT_EQ(Count(), 10 + 2 * 20);
}

// Every value a metric may hold survives the chunk text exactly, and
// history order is restored for points written out of order, across
// chunks and together with points from before the chunk table.
TEST_P(MetricWriterTest, ChunksKeepEveryValueAndHistoryOrder) {
  const double kNan = std::numeric_limits<double>::quiet_NaN();
  const double kInf = std::numeric_limits<double>::infinity();
  std::vector<MetricPoint> first{
      {.key = "m", .value = 0.1, .timestamp = 5, .step = 3},
      {.key = "m", .value = -kInf, .timestamp = 1, .step = 9},
      {.key = "other", .value = 7, .timestamp = 1, .step = 0},
      {.key = "m", .value = 5e-324, .timestamp = -1, .step = -2},  // smallest denormal
  };
  std::vector<MetricPoint> second{
      {.key = "m", .value = kNan, .timestamp = 5, .step = 3},  // NaN after the number
      {.key = "m",
       .value = std::numeric_limits<double>::max(),
       .timestamp = std::numeric_limits<int64_t>::max(),
       .step = 3},
      {.key = "m", .value = kInf, .timestamp = 0, .step = std::numeric_limits<int64_t>::min()},
      {.key = "m", .value = -0.0, .timestamp = 5, .step = 3},  // before 0.1 at (3, 5)
  };
  MetricWriter writer(*db_);
  ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, first)));
  ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, second)));
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  // A point from before migration 0014, in the old table.
  ASSERT_TRUE(
      (*conn)->Exec("INSERT INTO metric_points (run_pk, key, value, is_nan, ts, step) "
                    "VALUES (1, 'm', 2.5, 0, 4, 3)"));
  EXPECT_EQ(Count("m"), 7);
  EXPECT_EQ(Count("other"), 1);

  std::vector<StoredPoint> h;
  ASSERT_TRUE(ReadHistory(**conn, 1, "m", h));
  ASSERT_EQ(h.size(), 8u);
  auto is = [&](size_t i, int64_t step, int64_t ts) {
    EXPECT_EQ(h[i].step, step) << i;
    EXPECT_EQ(h[i].timestamp, ts) << i;
  };
  is(0, std::numeric_limits<int64_t>::min(), 0);
  EXPECT_EQ(h[0].value, kInf);
  is(1, -2, -1);
  EXPECT_EQ(h[1].value, 5e-324);
  is(2, 3, 4);  // the old table's point
  EXPECT_EQ(h[2].value, 2.5);
  is(3, 3, 5);
  EXPECT_EQ(h[3].value, 0.0);
  EXPECT_TRUE(std::signbit(h[3].value));
  is(4, 3, 5);  // NaN is ordered as 0 and after it
  EXPECT_TRUE(std::isnan(h[4].value));
  is(5, 3, 5);
  EXPECT_EQ(h[5].value, 0.1);
  is(6, 3, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(h[6].value, std::numeric_limits<double>::max());
  is(7, 9, 1);
  EXPECT_EQ(h[7].value, -kInf);
  std::vector<StoredPoint> none;
  ASSERT_TRUE(ReadHistory(**conn, 1, "absent", none));
  EXPECT_TRUE(none.empty());
}

// A training loop that logs one point per request writes one batch row per
// request; every kCompactAfterRows of them become one chunk per key.
TEST_P(MetricWriterTest, BatchesAreCompactedIntoOneChunkPerKey) {
  MetricWriter writer(*db_);
  constexpr int kWrites = 300;
  for (int i = 0; i < kWrites; ++i) {
    std::vector<MetricPoint> one{
        {.key = i % 2 ? "b" : "a", .value = i * 0.5, .timestamp = 1, .step = i}};
    ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, one)));
  }
  // Sequential writes: each is its own group, so each writes one row.
  writer.WaitForCompactions();
  EXPECT_EQ(writer.stats().compactions, 1u);
  const auto [batches, chunks] = Rows();
  EXPECT_EQ(chunks, 2);
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  auto n = (*conn)->Query("SELECT key, n FROM metric_chunks WHERE run_pk = 1 ORDER BY key");
  ASSERT_TRUE(n && n->size() == 2u);
  if (GetParam() == store::Dialect::kSqlite) {
    // In the writer's transaction: exactly the first kCompactAfterRows rows.
    EXPECT_EQ(batches, kWrites - kCompactAfterRows);
    EXPECT_EQ((*n)[0].Int(1), kCompactAfterRows / 2);
  } else {
    // Beside the writes that follow: it may move a few of them too.
    EXPECT_LE(batches, kWrites - kCompactAfterRows);
    EXPECT_GE((*n)[0].Int(1), kCompactAfterRows / 2);
  }
  // Every point is in a chunk or in a batch row, once.
  EXPECT_EQ((*n)[0].Int(1) + (*n)[1].Int(1) + batches, kWrites);
  EXPECT_EQ(Count("a"), kWrites / 2);
  EXPECT_EQ(Count("b"), kWrites / 2);
  for (const char* key : {"a", "b"}) {
    std::vector<StoredPoint> h;
    ASSERT_TRUE(ReadHistory(**conn, 1, key, h));
    ASSERT_EQ(h.size(), static_cast<size_t>(kWrites / 2)) << key;
    for (size_t j = 0; j < h.size(); ++j) {
      const int i = static_cast<int>(2 * j) + (key[0] == 'b');
      EXPECT_EQ(h[j].step, i) << key;
      EXPECT_EQ(h[j].value, i * 0.5) << key;
    }
  }
}

// Large writes reach kCompactAfterPoints first.
TEST_P(MetricWriterTest, BatchesAreCompactedByPointsToo) {
  MetricWriter writer(*db_);
  const int writes = static_cast<int>(kCompactAfterPoints / 1000) + 1;
  for (int w = 0; w < writes; ++w) {
    std::vector<MetricPoint> points;
    for (int step = 0; step < 10; ++step) {
      for (int k = 0; k < 100; ++k)
        points.push_back(
            {.key = "m" + std::to_string(k), .value = 1, .timestamp = 1, .step = w * 10 + step});
    }
    ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, points)));
  }
  writer.WaitForCompactions();
  EXPECT_EQ(writer.stats().compactions, 1u);
  EXPECT_EQ(Rows(), std::make_pair(int64_t{0}, int64_t{100}));
  EXPECT_EQ(Count(), writes * 1000);
  EXPECT_EQ(Count("m7"), writes * 10);
}

// A new writer (a restarted server) counts the run's rows from the table,
// so a restart does not postpone compaction.
TEST_P(MetricWriterTest, ARestartedWriterCountsTheRowsAlreadyThere) {
  auto write = [](MetricWriter& writer, int step) {
    std::vector<MetricPoint> one{{.key = "k", .value = 1, .timestamp = 1, .step = step}};
    return writer.Write(1, "run1", EncodeChunks(1, one));
  };
  {
    MetricWriter before(*db_);
    for (int i = 0; i < 200; ++i)
      ASSERT_TRUE(write(before, i));
    before.WaitForCompactions();
    EXPECT_EQ(before.stats().compactions, 0u);
  }
  MetricWriter after(*db_);
  for (int i = 200; i < kCompactAfterRows; ++i)
    ASSERT_TRUE(write(after, i));
  after.WaitForCompactions();
  EXPECT_EQ(after.stats().compactions, 1u);
  EXPECT_EQ(Rows(), std::make_pair(int64_t{0}, int64_t{1}));
  EXPECT_EQ(Count("k"), kCompactAfterRows);
}

// Two servers' writers compacting one run at once (PostgreSQL: both see the
// rows): the one that waits moves nothing, and no point is stored twice. On
// SQLite the second transaction waits for the first.
TEST_P(MetricWriterTest, ConcurrentCompactionsOfOneRunStoreEachPointOnce) {
  {
    MetricWriter writer(*db_);
    for (int i = 0; i < 10; ++i) {
      std::vector<MetricPoint> one{{.key = "k", .value = 1, .timestamp = 1, .step = i}};
      ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, one)));
    }
  }
  auto a = db_->OpenDedicated();
  auto b = db_->OpenDedicated();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE((*a)->Begin());
  auto moved_a = CompactRun(**a, 1);
  ASSERT_TRUE(moved_a) << moved_a.error().ToString();
  EXPECT_EQ(*moved_a, 10);
  Result<int64_t> moved_b = int64_t{-1};
  std::thread other([&] {
    // Blocks on a's locks (PostgreSQL: the DELETE; SQLite: BEGIN IMMEDIATE).
    if (Status s = (*b)->Begin(); !s) {
      moved_b = s.error();
      return;
    }
    moved_b = CompactRun(**b, 1);
    if (moved_b) {
      EXPECT_TRUE((*b)->Commit());
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE((*a)->Commit());
  other.join();
  ASSERT_TRUE(moved_b) << moved_b.error().ToString();
  EXPECT_EQ(*moved_b, 0);
  EXPECT_EQ(Count("k"), 10);
  EXPECT_EQ(Rows(), std::make_pair(int64_t{0}, int64_t{1}));
}

// PostgreSQL: the writer's one statement, for groups of every padded size
// (the batch texts are a VALUES list padded to a power of two): each row
// lands once, on active runs only, and every named run's stage comes back.
TEST_P(MetricWriterTest, OneStatementStoresGroupsOfEverySize) {
  if (GetParam() != store::Dialect::kPostgres)
    GTEST_SKIP() << "PostgreSQL only";
  auto conn = db_->OpenDedicated();
  ASSERT_TRUE(conn);
  int64_t stored = 0;
  for (size_t size : {1u, 2u, 3u, 5u, 16u, 17u}) {
    std::vector<std::vector<PointChunk>> encoded;
    std::vector<std::string> texts;
    encoded.reserve(size);
    texts.reserve(size);
    std::vector<BatchRow> rows;
    std::vector<const PointChunk*> chunks;
    for (size_t i = 0; i < size; ++i) {
      // Run 2 is deleted and run 3 does not exist: their rows are skipped.
      const int64_t run_pk = i % 5 == 3 ? 2 : i % 5 == 4 ? 3 : 1;
      std::vector<MetricPoint> one{{.key = "s" + std::to_string(size),
                                    .value = static_cast<double>(i),
                                    .timestamp = 1,
                                    .step = static_cast<int64_t>(i)}};
      encoded.push_back(EncodeChunks(run_pk, one));
      texts.push_back(JoinChunks(encoded.back()));
      rows.push_back({.run_pk = run_pk, .n = 1, .text = &texts.back()});
      for (const PointChunk& c : encoded.back())
        chunks.push_back(&c);
      stored += run_pk == 1;
    }
    auto stages = StoreForActiveRuns(**conn, rows, chunks);
    ASSERT_TRUE(stages) << size << ": " << stages.error().ToString();
    EXPECT_EQ(stages->at(1), "active") << size;
    if (size > 3) {
      EXPECT_EQ(stages->at(2), "deleted") << size;
    }
    EXPECT_FALSE(stages->contains(3)) << size;
    EXPECT_EQ(Count(), stored) << size;
    auto latest = (*conn)->Query("SELECT step FROM latest_metrics WHERE run_pk = 1 AND key = ?",
                                 {"s" + std::to_string(size)});
    ASSERT_TRUE(latest && latest->size() == 1u) << size;
    int64_t last = 0;
    for (size_t i = 0; i < size; ++i)
      last = i % 5 < 3 ? static_cast<int64_t>(i) : last;
    EXPECT_EQ((*latest)[0].Int(0), last) << size;
  }
  auto deleted = (*conn)->Query("SELECT count(*) FROM metric_batches WHERE run_pk <> 1");
  ASSERT_TRUE(deleted);
  EXPECT_EQ((*deleted)[0].Int(0), 0);
}

// PostgreSQL: the writer's connection is pipelined. Its first group waits
// in PostgreSQL (on a row lock another session holds) while the next
// request arrives; that one is sent behind it at once, without waiting for
// the first answer, and both are answered once their statements commit.
// A pipelined group that fails fails alone, as any other.
class PipelinedWriterTest : public MetricWriterTest {
 protected:
  void SetUp() override {
    MetricWriterTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    if (GetParam() != store::Dialect::kPostgres)
      GTEST_SKIP() << "PostgreSQL only: SQLite's writer runs one group at a time";
    auto conn = db_->Acquire();
    ASSERT_TRUE(conn);
    ASSERT_TRUE(
        (*conn)->Exec("INSERT INTO latest_metrics (run_pk, key, value, is_nan, ts, step) VALUES "
                      "(1, 'held', 0, 0, 0, -1)"));
    ASSERT_TRUE((*conn)->Exec(
        "ALTER TABLE metric_batches ADD CONSTRAINT poison CHECK (points NOT LIKE '%poison%')"));
    auto blocker = db_->OpenDedicated();
    ASSERT_TRUE(blocker);
    blocker_ = std::move(*blocker);
  }

  // Holds the lock the first group's upsert of key "held" waits for.
  void Hold() {
    ASSERT_TRUE(blocker_->Begin());
    ASSERT_TRUE(
        blocker_->Query("SELECT 1 FROM latest_metrics WHERE run_pk = 1 AND key = 'held' FOR "
                        "UPDATE"));
  }
  void Release() { ASSERT_TRUE(blocker_->Rollback()); }

  // Waits until a statement of another session waits for the held lock;
  // returns that backend's pid. Only this test's database counts: other
  // tests share the cluster (and pg_locks) when ctest runs them at once.
  int64_t WaitForBlockedStatement() {
    auto conn = db_->Acquire();
    EXPECT_TRUE(conn);
    for (int i = 0; i < 1000; ++i) {
      auto waiting = (*conn)->Query(
          "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT "
          "l.granted AND a.datname = current_database() LIMIT 1");
      EXPECT_TRUE(waiting);
      if (waiting && !waiting->empty())
        return (*waiting)[0].Int(0);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "no statement waited for the lock";
    return 0;
  }

  struct Answer {
    std::atomic<int> calls{0};
    Status result = core::Ok();
  };
  void WriteAsync(MetricWriter& writer, const std::string& key, Answer& a) {
    std::vector<MetricPoint> one{{.key = key, .value = 1, .timestamp = 1, .step = 0}};
    writer.WriteAsync(1, "run1", EncodeChunks(1, one), [&a](Status s) {
      a.result = std::move(s);
      ++a.calls;
    });
  }
  static void WaitForAnswer(const Answer& a) {
    for (int i = 0; i < 1000 && a.calls.load() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  std::unique_ptr<store::Connection> blocker_;
};

TEST_P(PipelinedWriterTest, TheNextGroupIsSentWhileOneRunsAndEachIsAnsweredAfterItsCommit) {
  MetricWriter writer(*db_);
  Hold();
  Answer held, poison, after;
  WriteAsync(writer, "held", held);
  WaitForBlockedStatement();
  WriteAsync(writer, "poison", poison);
  // Sent behind the blocked group: the writer takes nothing else meanwhile.
  for (int i = 0; i < 1000 && writer.stats().pipelined == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(writer.stats().pipelined, 1u);
  WriteAsync(writer, "after", after);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Nothing is answered before the first statement commits.
  EXPECT_EQ(held.calls.load() + poison.calls.load() + after.calls.load(), 0);
  EXPECT_EQ(Count(), 0);
  Release();
  for (const Answer* a : {&held, &poison, &after})
    WaitForAnswer(*a);
  EXPECT_EQ(held.calls.load(), 1);
  EXPECT_TRUE(held.result) << held.result.error().ToString();
  EXPECT_EQ(poison.calls.load(), 1);
  ASSERT_FALSE(poison.result);
  EXPECT_EQ(after.calls.load(), 1);
  EXPECT_TRUE(after.result) << after.result.error().ToString();
  EXPECT_EQ(Count("held"), 1);
  EXPECT_EQ(Count("poison"), 0);
  EXPECT_EQ(Count("after"), 1);
  EXPECT_EQ(writer.stats().requests, 2u);
}

// A connection lost with two groups in flight fails both (their outcome is
// unknown to the writer); the writer reconnects for the next.
TEST_P(PipelinedWriterTest, AConnectionLostWithGroupsInFlightFailsThemAndTheNextReconnects) {
  MetricWriter writer(*db_);
  Hold();
  Answer held, second;
  WriteAsync(writer, "held", held);
  const int64_t writer_pid = WaitForBlockedStatement();
  WriteAsync(writer, "second", second);
  for (int i = 0; i < 1000 && writer.stats().pipelined == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(writer.stats().pipelined, 1u);
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Query("SELECT pg_terminate_backend(?)", {writer_pid}));
  for (const Answer* a : {&held, &second})
    WaitForAnswer(*a);
  Release();
  ASSERT_EQ(held.calls.load(), 1);
  ASSERT_FALSE(held.result);
  EXPECT_EQ(held.result.error().code, core::ErrorCode::kUnavailable)
      << held.result.error().ToString();
  ASSERT_EQ(second.calls.load(), 1);
  ASSERT_FALSE(second.result);
  EXPECT_EQ(second.result.error().code, core::ErrorCode::kUnavailable)
      << second.result.error().ToString();
  EXPECT_EQ(Count(), 0);
  std::vector<MetricPoint> one{{.key = "next", .value = 1, .timestamp = 1, .step = 0}};
  EXPECT_TRUE(writer.Write(1, "run1", EncodeChunks(1, one)));
  EXPECT_EQ(Count("next"), 1);
}

// PostgreSQL: compaction runs on its own connection, so writes go on while
// a compaction waits (here on row locks another session holds).
TEST_P(MetricWriterTest, WritesDoNotWaitForCompaction) {
  if (GetParam() != store::Dialect::kPostgres)
    GTEST_SKIP() << "SQLite compacts in the writer's transaction";
  MetricWriter writer(*db_);
  auto write = [&](int step) {
    std::vector<MetricPoint> one{{.key = "k", .value = 1, .timestamp = 1, .step = step}};
    return writer.Write(1, "run1", EncodeChunks(1, one));
  };
  for (int i = 0; i < kCompactAfterRows - 1; ++i)
    ASSERT_TRUE(write(i));
  auto blocker = db_->OpenDedicated();
  ASSERT_TRUE(blocker);
  ASSERT_TRUE((*blocker)->Begin());
  ASSERT_TRUE((*blocker)->Query("SELECT id FROM metric_batches WHERE run_pk = 1 FOR UPDATE"));
  ASSERT_TRUE(write(kCompactAfterRows - 1));  // due: the compaction now waits on the locks
  for (int i = kCompactAfterRows; i < kCompactAfterRows + 50; ++i)
    ASSERT_TRUE(write(i));  // would hang here if the writer compacted
  EXPECT_EQ(writer.stats().compactions, 0u);
  ASSERT_TRUE((*blocker)->Commit());
  writer.WaitForCompactions();
  EXPECT_EQ(writer.stats().compactions, 1u);
  EXPECT_EQ(Count("k"), kCompactAfterRows + 50);
  EXPECT_LE(Rows().first, 50);
}

// PostgreSQL (migration 0018): a 1000-point write's text is stored
// compressed with lz4 in the row, not in TOAST chunks, and reads back.
TEST_P(MetricWriterTest, PostgresKeepsABatchTextCompressedInTheRow) {
  if (GetParam() != store::Dialect::kPostgres)
    GTEST_SKIP() << "PostgreSQL only";
  MetricWriter writer(*db_);
  std::vector<MetricPoint> points;
  for (int step = 0; step < 10; ++step) {
    for (int k = 0; k < 100; ++k) {
      points.push_back({.key = "m" + std::to_string(k),
                        .value = (k + 1) / (step + 1.0),
                        .timestamp = 1700000000000 + step,
                        .step = step});
    }
  }
  ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, points)));
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  auto stored = (*conn)->Query(
      "SELECT pg_column_compression(points), pg_column_size(points), octet_length(points) FROM "
      "metric_batches");
  ASSERT_TRUE(stored) << stored.error().ToString();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].Text(0), "lz4");
  EXPECT_GT((*stored)[0].Int(2), 8192);                     // would not fit a page as it is
  EXPECT_LT((*stored)[0].Int(1), (*stored)[0].Int(2) / 2);  // compressed
  auto toast = (*conn)->Query(
      "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'metric_batches'");
  ASSERT_TRUE(toast && toast->size() == 1u);
  auto chunks = (*conn)->Query("SELECT count(*) FROM " + (*toast)[0].Text(0));
  ASSERT_TRUE(chunks) << chunks.error().ToString();
  EXPECT_EQ((*chunks)[0].Int(0), 0);  // nothing out of line
  EXPECT_EQ(Count(), 1000);
  EXPECT_EQ(Count("m7"), 10);
}

// PostgreSQL: a failed compaction fails no write; its rows stay readable
// in metric_batches, and the run is counted again from the table, so the
// next write compacts it.
TEST_P(MetricWriterTest, AFailedCompactionIsRetriedOnALaterWrite) {
  if (GetParam() != store::Dialect::kPostgres)
    GTEST_SKIP() << "SQLite compacts in the writer's transaction";
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Exec(
      "ALTER TABLE metric_chunks ADD CONSTRAINT no_chunks CHECK (run_pk < 0) NOT VALID"));
  MetricWriter writer(*db_);
  auto write = [&](int step) {
    std::vector<MetricPoint> one{{.key = "k", .value = 1, .timestamp = 1, .step = step}};
    return writer.Write(1, "run1", EncodeChunks(1, one));
  };
  for (int i = 0; i < kCompactAfterRows; ++i)
    ASSERT_TRUE(write(i));
  writer.WaitForCompactions();
  EXPECT_EQ(writer.stats().compactions, 0u);
  EXPECT_EQ(Rows(), std::make_pair(int64_t{kCompactAfterRows}, int64_t{0}));
  ASSERT_TRUE((*conn)->Exec("ALTER TABLE metric_chunks DROP CONSTRAINT no_chunks"));
  ASSERT_TRUE(write(kCompactAfterRows));
  writer.WaitForCompactions();
  EXPECT_EQ(writer.stats().compactions, 1u);
  EXPECT_EQ(Rows(), std::make_pair(int64_t{0}, int64_t{1}));
  EXPECT_EQ(Count("k"), kCompactAfterRows + 1);
}

// A history read while the writer compacts sees every point exactly once
// (chunks and batches are read in one statement).
TEST_P(MetricWriterTest, HistoryReadsDuringCompactionSeeEachPointOnce) {
  MetricWriter writer(*db_);
  constexpr int kWrites = 2 * kCompactAfterRows + 50;
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, bad{0};
  std::thread reader([&] {
    auto conn = db_->OpenDedicated();
    ASSERT_TRUE(conn);
    size_t seen = 0;
    while (!done.load()) {
      std::vector<StoredPoint> h;
      if (!ReadHistory(**conn, 1, "h", h)) {
        ++bad;
        continue;
      }
      ++reads;
      bool ok = h.size() >= seen;
      for (size_t i = 0; i < h.size(); ++i)
        ok = ok && h[i].step == static_cast<int64_t>(i);
      seen = h.size();
      bad += !ok;
    }
  });
  for (int i = 0; i < kWrites; ++i) {
    std::vector<MetricPoint> one{{.key = "h", .value = 1, .timestamp = 1, .step = i}};
    ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, one)));
  }
  writer.WaitForCompactions();
  done = true;
  reader.join();
  EXPECT_EQ(writer.stats().compactions, 2u);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(Count("h"), kWrites);
}

TEST(MetricChunks, MalformedTextIsAnErrorNotAGuess) {
  for (std::string_view bad : {"k", "k\t1,2,3;", "\t1,2,3;\n", "k1,2,3;\n"}) {
    Status s = ForEachSection(bad, [](std::string_view, std::string_view) { return core::Ok(); });
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, core::ErrorCode::kInternal) << bad;
  }
  std::vector<std::string> keys;
  ASSERT_TRUE(ForEachSection("a\t1,2,3;\nb c\t\n", [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return core::Ok();
  }));
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b c"}));
  std::vector<StoredPoint> out;
  EXPECT_TRUE(DecodePoints("", out));
  EXPECT_TRUE(DecodePoints("1,2,0.5;3,4,nan;", out));
  EXPECT_EQ(out.size(), 2u);
  for (std::string_view bad : {"1,2,0.5", "1,2;", "x,2,3;", "1,2,3;junk", "1,,3;", "1,2,3,4;"}) {
    std::vector<StoredPoint> v;
    Status s = DecodePoints(bad, v);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, core::ErrorCode::kInternal) << bad;
  }
}

// Whatever order the keys come in (one key's points together, one point
// per key per step, a key order that changes, a new key midway), each key
// gets one chunk, in order of first appearance, with its points in the
// order logged and its latest point.
TEST(MetricChunks, EncodingGroupsPointsByKeyInAnyOrder) {
  std::vector<MetricPoint> points;
  auto add = [&](const std::string& key, int64_t step) {
    points.push_back({.key = key, .value = step * 0.5, .timestamp = 100 + step, .step = step});
  };
  for (int64_t step = 0; step < 3; ++step) {
    for (const char* key : {"a", "b", "c"})
      add(key, step);
  }
  for (const char* key : {"c", "a", "d", "b"})  // another order and a new key
    add(key, 3);
  for (int64_t step = 4; step < 6; ++step)
    add("b", step);  // one key's points together
  add("a", 1);       // an earlier step, logged last: not the latest
  const std::vector<PointChunk> chunks = EncodeChunks(7, points);
  ASSERT_EQ(chunks.size(), 4u);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> want{
      {"a", {0, 1, 2, 3, 1}}, {"b", {0, 1, 2, 3, 4, 5}}, {"c", {0, 1, 2, 3}}, {"d", {3}}};
  for (size_t i = 0; i < chunks.size(); ++i) {
    const PointChunk& c = chunks[i];
    EXPECT_EQ(c.run_pk, 7);
    EXPECT_EQ(c.key, want[i].first);
    EXPECT_EQ(c.n, static_cast<int64_t>(want[i].second.size())) << c.key;
    std::vector<StoredPoint> decoded;
    ASSERT_TRUE(DecodePoints(c.text, decoded)) << c.key;
    std::vector<int64_t> steps;
    for (const StoredPoint& p : decoded) {
      steps.push_back(p.step);
      EXPECT_EQ(p.timestamp, 100 + p.step);
      EXPECT_EQ(p.value, p.step * 0.5);
    }
    EXPECT_EQ(steps, want[i].second) << c.key;
    EXPECT_EQ(c.latest.step, *std::max_element(steps.begin(), steps.end())) << c.key;
  }
  EXPECT_EQ(JoinChunks(chunks).substr(0, 2), "a\t");
  EXPECT_TRUE(EncodeChunks(7, {}).empty());
}

// After a text's first point, a step or timestamp is written relative to
// the point before where that is shorter; texts concatenate, and a
// relative field with nothing before it, or one that overflows, is
// corrupt rather than guessed.
TEST(MetricChunks, StepsAndTimestampsAreRelativeWhereShorter) {
  const std::vector<MetricPoint> points{
      {.key = "k", .value = 0.5, .timestamp = 1700000000000, .step = 1000000},
      {.key = "k", .value = 0.25, .timestamp = 1700000000007, .step = 999999},
      {.key = "k", .value = 1, .timestamp = 5, .step = 3},  // absolute where shorter
      {.key = "k",
       .value = 2,
       .timestamp = std::numeric_limits<int64_t>::min(),  // the difference overflows
       .step = 3},
  };
  const std::vector<PointChunk> chunks = EncodeChunks(1, points);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].text,
            "1000000,1700000000000,0.5;+-1,+7,0.25;3,5,1;3,-9223372036854775808,2;");
  std::vector<StoredPoint> decoded;
  ASSERT_TRUE(DecodePoints(chunks[0].text + "7,2000,1;8,+5,1;", decoded));
  ASSERT_EQ(decoded.size(), points.size() + 2);
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_EQ(decoded[i].step, points[i].step) << i;
    EXPECT_EQ(decoded[i].timestamp, points[i].timestamp) << i;
    EXPECT_EQ(decoded[i].value, points[i].value) << i;
  }
  EXPECT_EQ(decoded[5].step, 8);
  EXPECT_EQ(decoded[5].timestamp, 2005);
  for (std::string_view bad : {"+1,2,3;", "1,+2,3;", "1,9223372036854775807,0;2,+1,0;",
                               "1,2,3;+,2,3;", "1,2,3;++1,2,3;"}) {
    std::vector<StoredPoint> v;
    Status s = DecodePoints(bad, v);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, core::ErrorCode::kInternal) << bad;
  }
}

KERVAN_INSTANTIATE_BACKENDS(MetricWriterTest);
KERVAN_INSTANTIATE_BACKENDS(PipelinedWriterTest);

}  // namespace
}  // namespace kervan::tracking::internal
