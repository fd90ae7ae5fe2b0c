// The group-commit writer for metric points, on both store backends:
// concurrent callers all land (acknowledged only once their points are
// visible to other connections), and a request that fails (a run that is
// deleted or missing, a row the database refuses) fails alone, writing
// nothing, while the rest of its group commits.
#include "tracking/metric_writer.h"

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

  // Points stored, decoded from every chunk that matches `where` (on
  // metric_chunks' columns), and with `step` if given.
  int64_t Count(const std::string& where = "1 = 1", std::optional<int64_t> step = {}) {
    auto conn = db_->Acquire();
    EXPECT_TRUE(conn);
    auto rows = (*conn)->Query("SELECT n, points FROM metric_chunks WHERE " + where);
    EXPECT_TRUE(rows) << rows.error().ToString();
    if (!rows)
      return -1;
    int64_t count = 0;
    for (const store::Row& r : *rows) {
      std::vector<StoredPoint> points;
      Status decoded = DecodePoints(r.Text(1), points);
      EXPECT_TRUE(decoded) << decoded.error().ToString();
      EXPECT_EQ(static_cast<int64_t>(points.size()), r.Int(0));
      for (const StoredPoint& p : points)
        count += !step || p.step == *step;
    }
    return count;
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
        if (Count("1 = 1", step) != 2)
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
                       "CREATE TRIGGER poison BEFORE INSERT ON metric_chunks WHEN NEW.key = "
                       "'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END")
                 : (*conn)->Exec(
                       "ALTER TABLE metric_chunks ADD CONSTRAINT poison CHECK (key <> 'poison')");
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
  EXPECT_EQ(Count("key = 'good'"), 2);
  EXPECT_EQ(Count("key = 'good2'"), 2);
  EXPECT_EQ(Count(), 4);  // nothing from the failed requests
  // The writer keeps working after a failed transaction.
  std::vector<MetricPoint> after{{.key = "after", .value = 1, .timestamp = 1, .step = 0}};
  EXPECT_TRUE(writer.Write(1, "run1", EncodeChunks(1, after)));
  EXPECT_EQ(Count("key = 'after'"), 1);
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
  EXPECT_EQ(Count("key = 'm'"), 7);
  EXPECT_EQ(Count("key = 'other'"), 1);

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

// A training loop that logs one point per request leaves one small chunk
// per point; every kMergeAfterSmallChunks of them are merged into one.
TEST_P(MetricWriterTest, SmallChunksOfOneKeyAreMerged) {
  MetricWriter writer(*db_);
  constexpr int kWrites = 300;
  for (int i = 0; i < kWrites; ++i) {
    std::vector<MetricPoint> one{{.key = "loop", .value = i * 0.5, .timestamp = 1, .step = i}};
    ASSERT_TRUE(writer.Write(1, "run1", EncodeChunks(1, one)));
  }
  // Sequential writes: each is its own group, so each writes one chunk.
  EXPECT_EQ(writer.stats().chunk_merges, 1u);
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  auto rows = (*conn)->Query(
      "SELECT n FROM metric_chunks WHERE run_pk = 1 AND key = 'loop' ORDER BY n DESC");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u + (kWrites - 256));  // the merged chunk and the rest
  EXPECT_EQ((*rows)[0].Int(0), 256);
  EXPECT_EQ(Count("key = 'loop'"), kWrites);
  std::vector<StoredPoint> h;
  ASSERT_TRUE(ReadHistory(**conn, 1, "loop", h));
  ASSERT_EQ(h.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(h[i].step, i);
    EXPECT_EQ(h[i].value, i * 0.5);
  }
}

// Two servers' writers merging the same key at once (PostgreSQL: both see
// the small chunks): the one that waits merges nothing, and no point is
// stored twice. On SQLite the second transaction waits for the first.
TEST_P(MetricWriterTest, ConcurrentMergesOfOneKeyStoreEachPointOnce) {
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
  auto merged_a = MergeSmallChunks(**a, 1, "k");
  ASSERT_TRUE(merged_a) << merged_a.error().ToString();
  EXPECT_EQ(*merged_a, 10);
  Result<int64_t> merged_b = int64_t{-1};
  std::thread other([&] {
    // Blocks on a's locks (PostgreSQL: the DELETE; SQLite: BEGIN IMMEDIATE).
    if (Status s = (*b)->Begin(); !s) {
      merged_b = s.error();
      return;
    }
    merged_b = MergeSmallChunks(**b, 1, "k");
    if (merged_b) {
      EXPECT_TRUE((*b)->Commit());
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE((*a)->Commit());
  other.join();
  ASSERT_TRUE(merged_b) << merged_b.error().ToString();
  EXPECT_EQ(*merged_b, 0);
  EXPECT_EQ(Count("key = 'k'"), 10);
  auto conn = db_->Acquire();
  auto rows = (*conn)->Query("SELECT n FROM metric_chunks WHERE run_pk = 1 AND key = 'k'");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Int(0), 10);
}

TEST(MetricChunks, MalformedTextIsAnErrorNotAGuess) {
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

KERVAN_INSTANTIATE_BACKENDS(MetricWriterTest);

}  // namespace
}  // namespace kervan::tracking::internal
