// The group-commit writer for metric points, on both store backends:
// concurrent callers all land (acknowledged only once their points are
// visible to other connections), and a request that fails (a run that is
// deleted or missing, a row the database refuses) fails alone, writing
// nothing, while the rest of its group commits.
#include "tracking/metric_writer.h"

#include <atomic>
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

  int64_t Count(const std::string& where = "1 = 1") {
    auto conn = db_->Acquire();
    EXPECT_TRUE(conn);
    auto rows = (*conn)->Query("SELECT COUNT(*) FROM metric_points WHERE " + where);
    EXPECT_TRUE(rows) << rows.error().ToString();
    return rows ? (*rows)[0].Int(0) : -1;
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
        if (!writer.Write(1, run_id, points)) {
          ++failures;
          continue;
        }
        // Acknowledged means committed: another connection sees it now.
        if (Count("step = " + std::to_string(step)) != 2)
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
                       "CREATE TRIGGER poison BEFORE INSERT ON metric_points WHEN NEW.key = "
                       "'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END")
                 : (*conn)->Exec(
                       "ALTER TABLE metric_points ADD CONSTRAINT poison CHECK (key <> 'poison')");
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
      c.result = writer.Write(c.pk, c.run_id, points);
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
  EXPECT_TRUE(writer.Write(1, "run1", after));
  EXPECT_EQ(Count("key = 'after'"), 1);
}

KERVAN_INSTANTIATE_BACKENDS(MetricWriterTest);

}  // namespace
}  // namespace kervan::tracking::internal
