// One conformance suite for every store backend (SQLite and PostgreSQL).
#include <atomic>
#include <chrono>
#include <filesystem>
#include <latch>
#include <set>
#include <thread>

#include "backend_fixture.h"

namespace kervan::store {
namespace {

using core::ErrorCode;
using core::Json;
using testing::BackendTest;

// A small lifecycle for tests: draft -> review -> approved | rejected.
core::StateMachine ReviewMachine() {
  core::TransitionSpec submit{.name = "submit",
                              .from = {"Draft"},
                              .to = "InReview",
                              .event = "submitted",
                              .permission = "doc.edit"};
  core::TransitionSpec approve{.name = "approve",
                               .from = {"InReview"},
                               .to = "Approved",
                               .event = "approved",
                               .permission = "doc.approve",
                               .reason_required = true};
  core::TransitionSpec reject{.name = "reject",
                              .from = {"InReview"},
                              .to = "Rejected",
                              .event = "rejected",
                              .permission = "doc.approve",
                              .reason_required = true};
  core::TransitionSpec publish{
      .name = "publish",
      .from = {"Approved"},
      .to = "Published",
      .event = "published",
      .permission = "doc.edit",
      .guard = [](const core::GuardInput& in) -> core::Status {
        if (in.request_data.value("checks_passed", false))
          return core::Ok();
        return core::FailedPrecondition("guard: data.checks_passed must be true");
      },
      .guard_description = "data.checks_passed == true"};
  auto m =
      core::StateMachine::Build("doc", {"Draft", "InReview", "Approved", "Rejected", "Published"},
                                "Draft", {submit, approve, reject, publish});
  EXPECT_TRUE(m);
  return std::move(m).value();
}

EventDraft Draft(std::string subject, Json data = Json::object()) {
  return {.type = "thing.happened",
          .subject_kind = "thing",
          .subject_id = std::move(subject),
          .actor = "tester",
          .reason = "",
          .correlation_id = "req-1",
          .causation_id = "",
          .data = std::move(data)};
}

class Store : public BackendTest {};
KERVAN_INSTANTIATE_BACKENDS(Store);

TEST_P(Store, ValuesRoundTrip) {
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Exec("CREATE TABLE t (i BIGINT, d DOUBLE PRECISION, s TEXT)"));
  ASSERT_TRUE((*conn)->Exec("INSERT INTO t VALUES (?, ?, ?)",
                            {int64_t{INT64_MAX}, 0.125, std::string("h\u00e9llo 'q' ?")}));
  ASSERT_TRUE((*conn)->Exec("INSERT INTO t VALUES (?, ?, ?)", {Value{}, Value{}, Value{}}));
  auto rows = (*conn)->Query("SELECT i, d, s FROM t ORDER BY i IS NULL, i");
  ASSERT_TRUE(rows) << rows.error().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].Int(0), INT64_MAX);
  EXPECT_DOUBLE_EQ((*rows)[0].Real(1), 0.125);
  EXPECT_EQ((*rows)[0].Text(2), "h\u00e9llo 'q' ?");
  EXPECT_TRUE((*rows)[1].IsNull(0));
  EXPECT_TRUE((*rows)[1].IsNull(2));
}

TEST_P(Store, UniqueViolationIsAlreadyExists) {
  auto conn = db_->Acquire();
  ASSERT_TRUE((*conn)->Exec("CREATE TABLE u (k TEXT PRIMARY KEY)"));
  ASSERT_TRUE((*conn)->Exec("INSERT INTO u VALUES (?)", {std::string("a")}));
  auto r = (*conn)->Exec("INSERT INTO u VALUES (?)", {std::string("a")});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kAlreadyExists);
}

// Pipelined statements answer in the order sent, each its own transaction:
// a failing one fails alone, and the next sees what the earlier committed.
TEST_P(Store, PipelinedStatementsAnswerInOrderAndFailAlone) {
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Exec("CREATE TABLE p (k TEXT PRIMARY KEY, n BIGINT)"));
  for (int round = 0; round < 3; ++round) {  // a second round reuses the prepared statements
    const std::string a = "a" + std::to_string(round), b = "b" + std::to_string(round);
    ASSERT_TRUE((*conn)->SendQuery("INSERT INTO p VALUES (?, ?)", {a, int64_t{1}}));
    ASSERT_TRUE((*conn)->SendQuery("INSERT INTO p VALUES (?, ?)", {a, int64_t{2}}));  // duplicate
    ASSERT_TRUE((*conn)->SendQuery("INSERT INTO p VALUES (?, ?)", {b, int64_t{3}}));
    ASSERT_TRUE((*conn)->SendQuery("SELECT k, n FROM p WHERE k IN (?, ?) ORDER BY k", {a, b}));
    auto first = (*conn)->ReceiveRows();
    ASSERT_TRUE(first) << first.error().ToString();
    auto second = (*conn)->ReceiveRows();
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ErrorCode::kAlreadyExists) << second.error().ToString();
    auto third = (*conn)->ReceiveRows();
    ASSERT_TRUE(third) << third.error().ToString();
    auto rows = (*conn)->ReceiveRows();
    ASSERT_TRUE(rows) << rows.error().ToString();
    ASSERT_EQ(rows->size(), 2u);
    EXPECT_EQ((*rows)[0].Text(0), a);
    EXPECT_EQ((*rows)[0].Int(1), 1);
    EXPECT_EQ((*rows)[1].Text(0), b);
  }
  auto none = (*conn)->ReceiveRows();
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kInternal);
  // Afterwards the connection works as before, transactions included.
  ASSERT_TRUE((*conn)->Begin());
  ASSERT_TRUE((*conn)->Exec("INSERT INTO p VALUES ('c', 4)"));
  ASSERT_TRUE((*conn)->Commit());
  auto count = (*conn)->Query("SELECT COUNT(*) FROM p");
  ASSERT_TRUE(count);
  EXPECT_EQ((*count)[0].Int(0), 7);
}

// TryAcquire lends a connection only when Acquire would not wait (the
// fixture's pool holds 8).
TEST_P(Store, TryAcquireNeverWaits) {
  std::vector<PooledConnection> held;
  for (int i = 0; i < 8; ++i) {
    auto spare = db_->TryAcquire();
    ASSERT_TRUE(spare) << spare.error().ToString();
    ASSERT_TRUE(spare->has_value()) << i;
    held.push_back(std::move(**spare));
  }
  auto none = db_->TryAcquire();
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
  held.pop_back();  // back to the pool
  auto again = db_->TryAcquire();
  ASSERT_TRUE(again);
  ASSERT_TRUE(again->has_value());
  auto rows = (**again)->Query("SELECT 1");
  EXPECT_TRUE(rows) << rows.error().ToString();
}

TEST_P(Store, FailedTransactionLeavesNothing) {
  auto conn = db_->Acquire();
  ASSERT_TRUE((*conn)->Exec("CREATE TABLE u (k TEXT PRIMARY KEY)"));
  auto s = InTransaction(**conn, [](Connection& c) -> core::Status {
    RETURN_IF_ERROR(c.Exec("INSERT INTO u VALUES ('x')"));
    return core::Internal("boom");
  });
  EXPECT_FALSE(s);
  auto rows = (*conn)->Query("SELECT COUNT(*) FROM u");
  EXPECT_EQ((*rows)[0].Int(0), 0);
}

TEST_P(Store, ConnectionReturnedMidTransactionIsRolledBack) {
  {
    auto conn = db_->Acquire();
    ASSERT_TRUE((*conn)->Exec("CREATE TABLE r (k TEXT PRIMARY KEY)"));
    ASSERT_TRUE((*conn)->Begin());
    ASSERT_TRUE((*conn)->Exec("INSERT INTO r VALUES ('uncommitted')"));
    EXPECT_TRUE((*conn)->InTransaction());
  }  // returned to the pool without Commit()
  auto again = db_->Acquire();
  ASSERT_TRUE(again);
  EXPECT_FALSE((*again)->InTransaction());
  auto rows = (*again)->Query("SELECT COUNT(*) FROM r");
  ASSERT_TRUE(rows) << rows.error().ToString();
  EXPECT_EQ((*rows)[0].Int(0), 0);
}

TEST_P(Store, MigrationsApplyOnceAndAreRecorded) {
  auto first = ApplyMigrations(*db_);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(first->size(), EmbeddedMigrations(GetParam()).size());
  auto second = ApplyMigrations(*db_);
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->empty());
  auto current = MigrationsCurrent(*db_);
  ASSERT_TRUE(current);
  EXPECT_TRUE(*current);
  auto conn = db_->Acquire();
  auto applied = ListAppliedMigrations(**conn);
  ASSERT_TRUE(applied);
  EXPECT_EQ((*applied)[0].name, "0001_events.sql");
}

TEST_P(Store, MigrationChangedAfterApplyIsRefused) {
  ASSERT_TRUE(ApplyMigrations(*db_));
  auto conn = db_->Acquire();
  ASSERT_TRUE((*conn)->Exec("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1"));
  auto r = ApplyMigrations(*db_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("0001_events.sql"), std::string::npos);
}

TEST_P(Store, AppendAssignsGapFreeSeqAndChain) {
  auto log = EventLog::Open(Migrated());
  ASSERT_TRUE(log);
  for (int i = 0; i < 5; ++i) {
    auto e = (*log)->Append(Draft("a", {{"i", i}}));
    ASSERT_TRUE(e) << e.error().ToString();
    EXPECT_EQ(e->seq, i + 1);
  }
  auto events = (*log)->Read({.after_seq = 0, .limit = 100});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 5u);
  EXPECT_EQ((*events)[0].prev_hash, kGenesisHash);
  for (size_t i = 1; i < events->size(); ++i) {
    EXPECT_EQ((*events)[i].prev_hash, (*events)[i - 1].hash);
  }
  auto report = (*log)->Verify();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok);
  EXPECT_EQ(report->checked, 5);
}

TEST_P(Store, ConcurrentAppendersShareCommitsWithoutGaps) {
  auto log = EventLog::Open(Migrated());
  ASSERT_TRUE(log);
  constexpr int kThreads = 16, kPer = 100;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<int64_t> seqs;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        auto e = (*log)->Append(Draft("t" + std::to_string(t), {{"i", i}}));
        if (!e) {
          ++failures;
          continue;
        }
        std::lock_guard lock(mu);
        seqs.insert(e->seq);
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(seqs.size(), size_t{kThreads * kPer});
  EXPECT_EQ(*seqs.begin(), 1);
  EXPECT_EQ(*seqs.rbegin(), kThreads * kPer);
  EXPECT_EQ((*log)->head_seq(), kThreads * kPer);
  auto report = (*log)->Verify();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok) << report->problem;
  auto& commits = core::GlobalMetrics().AddCounter("kervan_event_log_commits_total", "").With({});
  EXPECT_GT(commits.value(), 0);
}

TEST_P(Store, FailedCommandAppendsNothingAndKeepsItsBatchmates) {
  Database& db = Migrated();
  auto log = EventLog::Open(db);
  ASSERT_TRUE(log);
  {
    auto conn = db.Acquire();
    ASSERT_TRUE((*conn)->Exec("CREATE TABLE side (k TEXT PRIMARY KEY)"));
  }
  std::thread ok_thread([&] { ASSERT_TRUE((*log)->Append(Draft("ok"))); });
  auto failed = (*log)->Execute([](CommandTx& tx) -> core::Status {
    RETURN_IF_ERROR(tx.conn().Exec("INSERT INTO side VALUES ('written')"));
    RETURN_IF_ERROR(tx.Append(Draft("doomed")));
    return core::FailedPrecondition("refused after writing");
  });
  ok_thread.join();
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::kFailedPrecondition);
  auto events = (*log)->Read({.after_seq = 0, .limit = 10});
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].subject_id, "ok");
  EXPECT_EQ((*events)[0].seq, 1);
  auto conn = db.Acquire();
  EXPECT_EQ((*(*conn)->Query("SELECT COUNT(*) FROM side"))[0].Int(0), 0);
  EXPECT_TRUE((*log)->Verify()->ok);
}

// Appends and commands queued behind a busy writer share a batch; appends
// are inserted several rows per statement, but a command must still see
// every event ordered before it, and a failing command must not take the
// appends around it down (that batch is re-run with savepoints).
TEST_P(Store, CommandInABatchSeesEveryEarlierEventAndFailuresStayLocal) {
  Database& db = Migrated();
  auto log = EventLog::Open(db);
  ASSERT_TRUE(log);
  constexpr int kAppenders = 8, kCounters = 4;
  auto run_batch = [&](bool with_failing_command) {
    std::latch started(1), release(1);
    std::thread blocker([&] {
      auto r = (*log)->Execute([&](CommandTx&) -> core::Status {
        started.count_down();
        release.wait();
        return core::Ok();
      });
      EXPECT_TRUE(r);
    });
    started.wait();
    std::vector<std::thread> threads;
    std::atomic<int> append_failures{0};
    std::vector<std::pair<int64_t, int64_t>> seen(kCounters);  // (rows before, own seq)
    for (int i = 0; i < kAppenders + kCounters + (with_failing_command ? 1 : 0); ++i) {
      threads.emplace_back([&, i] {
        if (i < kAppenders) {
          if (!(*log)->Append(Draft("a" + std::to_string(i))))
            ++append_failures;
        } else if (i < kAppenders + kCounters) {
          auto r = (*log)->Execute([&, i](CommandTx& tx) -> core::Status {
            ASSIGN_OR_RETURN(Rows rows, tx.conn().Query("SELECT COUNT(*) FROM events"));
            ASSIGN_OR_RETURN(Event e, tx.Append(Draft("c")));
            seen[i - kAppenders] = {rows[0].Int(0), e.seq};
            return core::Ok();
          });
          EXPECT_TRUE(r) << r.error().ToString();
        } else {
          auto r = (*log)->Execute([](CommandTx& tx) -> core::Status {
            RETURN_IF_ERROR(tx.Append(Draft("doomed")));
            return core::FailedPrecondition("refused after appending");
          });
          EXPECT_FALSE(r);
        }
      });
      // Mostly lets each caller queue before the next, interleaving appends
      // and commands in the batch (the assertions hold whatever the order).
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    release.count_down();
    for (auto& t : threads)
      t.join();
    blocker.join();
    EXPECT_EQ(append_failures.load(), 0);
    for (const auto& [rows_before, seq] : seen)
      EXPECT_EQ(rows_before, seq - 1);
  };
  run_batch(false);
  run_batch(true);
  EXPECT_EQ((*log)->head_seq(), 2 * (kAppenders + kCounters));
  auto events = (*log)->Read({.after_seq = 0, .limit = 100});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), size_t{2 * (kAppenders + kCounters)});
  for (const Event& e : *events)
    EXPECT_NE(e.subject_id, "doomed");
  auto report = (*log)->Verify();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok) << report->problem;
}

// The hash is defined over the canonical JSON of an array of the event's
// fields (docs/event-log.md); ComputeEventHash writes that text directly.
// Stored chains must keep verifying, so compare with the definition for
// every ASCII byte, UTF-8 text and invalid UTF-8.
// store.sqlite.mmap_bytes reaches every pooled connection (0 turns it off).
TEST(SqliteOptions, MmapSizeIsSetOnEveryConnection) {
  auto dir = std::filesystem::temp_directory_path() /
             ("kervan-mmap-" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::filesystem::create_directories(dir);
  for (int64_t bytes : {int64_t{0}, int64_t{1} << 24}) {
    auto db = OpenSqlite({.path = (dir / "m.db").string(), .pool_size = 2, .mmap_bytes = bytes});
    ASSERT_TRUE(db) << db.error().ToString();
    auto a = (*db)->Acquire();
    auto b = (*db)->Acquire();  // a second connection of the pool
    ASSERT_TRUE(a && b);
    for (auto* conn : {&a, &b}) {
      auto rows = (**conn)->Query("PRAGMA mmap_size");
      ASSERT_TRUE(rows && rows->size() == 1u);
      EXPECT_EQ((*rows)[0].Int(0), bytes);
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(EventHash, MatchesCanonicalJsonOfTheFieldArray) {
  auto reference = [](const Event& e) {
    Json canonical = Json::array({e.seq, e.id, e.time_us, e.type, e.subject_kind, e.subject_id,
                                  e.actor, e.reason, e.correlation_id, e.causation_id, e.data});
    if (!e.project.empty())
      canonical.push_back(e.project);
    return core::Sha256Hex(e.prev_hash + "\n" + core::CanonicalJson(canonical));
  };
  std::string every_ascii;
  for (int c = 0; c < 128; ++c)
    every_ascii += static_cast<char>(c);
  const std::vector<std::string> texts = {"",
                                          "plain",
                                          every_ascii,
                                          R"({"a":"q\"uote","b":[1,2]})",
                                          "caf\xc3\xa9 \xe2\x82\xac",
                                          "bad \xff\xfe utf-8 \xc3",
                                          std::string("nul\0inside", 11)};
  for (const std::string& t : texts) {
    Event e;
    e.seq = 42;
    e.id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    e.time_us = -17;
    e.type = t;
    e.subject_kind = "kind";
    e.subject_id = t;
    e.actor = "actor";
    e.reason = t;
    e.correlation_id = "";
    e.causation_id = t;
    e.data = t;
    e.prev_hash = std::string(kGenesisHash);
    EXPECT_EQ(ComputeEventHash(e), reference(e))
        << "text: " << Json(t).dump(-1, ' ', true, Json::error_handler_t::replace);
    // With a project it joins the array; moving an event between projects
    // (or out of one) changes the hash.
    std::string without = ComputeEventHash(e);
    e.project = t.empty() ? "risk" : t;
    EXPECT_EQ(ComputeEventHash(e), reference(e));
    EXPECT_NE(ComputeEventHash(e), without);
  }
}

TEST_P(Store, InvalidDraftIsRejected) {
  auto log = EventLog::Open(Migrated());
  EventDraft d = Draft("x");
  d.actor = "";
  auto r = (*log)->Append(d);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "actor");
  EXPECT_EQ((*log)->head_seq(), 0);
}

TEST_P(Store, ReopenedLogContinuesTheChain) {
  Database& db = Migrated();
  {
    auto log = EventLog::Open(db);
    ASSERT_TRUE((*log)->Append(Draft("a")));
    ASSERT_TRUE((*log)->Append(Draft("b")));
  }
  auto log = EventLog::Open(db);
  EXPECT_EQ((*log)->head_seq(), 2);
  auto e = (*log)->Append(Draft("c"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->seq, 3);
  EXPECT_TRUE((*log)->Verify()->ok);
}

TEST_P(Store, ReadFiltersAndPaginates) {
  auto log = EventLog::Open(Migrated());
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE((*log)->Append(Draft(i % 2 ? "odd" : "even")));
  auto odd =
      (*log)->Read({.after_seq = 0, .limit = 100, .subject_kind = "thing", .subject_id = "odd"});
  ASSERT_TRUE(odd);
  ASSERT_EQ(odd->size(), 3u);
  EXPECT_EQ((*odd)[0].seq, 2);
  auto page = (*log)->Read({.after_seq = 2, .limit = 2});
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].seq, 3);
  EXPECT_EQ((*page)[1].seq, 4);
}

TEST_P(Store, SubscriberSeesEventsInOrderAndResumes) {
  auto log = EventLog::Open(Migrated());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE((*log)->Append(Draft("s")));
  std::mutex mu;
  std::vector<int64_t> seen;
  {
    auto sub = (*log)->Subscribe("test", 1, [&](const Event& e) -> core::Status {
      std::lock_guard lock(mu);
      seen.push_back(e.seq);
      return core::Ok();
    });
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE((*log)->Append(Draft("s")));
    for (int i = 0; i < 200 && sub->cursor() < 6; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(sub->cursor(), 6);
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{2, 3, 4, 5, 6}));
}

TEST_P(Store, SubscriberRetriesAFailedEvent) {
  auto log = EventLog::Open(Migrated());
  ASSERT_TRUE((*log)->Append(Draft("r")));
  std::atomic<int> calls{0};
  auto sub = (*log)->Subscribe("flaky", 0, [&](const Event&) -> core::Status {
    if (calls++ == 0)
      return core::Unavailable("first try fails");
    return core::Ok();
  });
  for (int i = 0; i < 300 && sub->cursor() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(sub->cursor(), 1);
  EXPECT_EQ(calls.load(), 2);
}

TEST_P(Store, DurableSubscriberResumesAfterRestart) {
  Database& db = Migrated();
  auto log = EventLog::Open(db);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE((*log)->Append(Draft("p")));
  std::mutex mu;
  std::vector<int64_t> seen;
  auto handler = [&](const Event& e) -> core::Status {
    std::lock_guard lock(mu);
    seen.push_back(e.seq);
    return core::Ok();
  };
  auto wait_for = [](EventLog::Subscription& sub, int64_t seq) {
    for (int i = 0; i < 300 && sub.cursor() < seq; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  {
    auto sub = (*log)->SubscribeDurable("shipper", handler);
    ASSERT_TRUE(sub) << sub.error().ToString();
    wait_for(**sub, 3);
    EXPECT_EQ((*sub)->cursor(), 3);
  }
  ASSERT_TRUE((*log)->Append(Draft("p")));
  ASSERT_TRUE((*log)->Append(Draft("p")));
  auto again = (*log)->SubscribeDurable("shipper", handler);
  ASSERT_TRUE(again);
  wait_for(**again, 5);
  again->reset();
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4, 5}));
}

TEST_P(Store, WaitForNewerWakesOnCommit) {
  auto log = EventLog::Open(Migrated());
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE((*log)->Append(Draft("w")));
  });
  bool woke = (*log)->WaitForNewer(0, std::chrono::steady_clock::now() + std::chrono::seconds(5));
  t.join();
  EXPECT_TRUE(woke);
  EXPECT_FALSE(
      (*log)->WaitForNewer(1, std::chrono::steady_clock::now() + std::chrono::milliseconds(20)));
}

// Someone with database access edits an event: verify names the altered one.
TEST_P(Store, VerifyCatchesTamperedEvent) {
  Database& db = Migrated();
  auto log = EventLog::Open(db);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE((*log)->Append(Draft("v", {{"amount", i}})));
  auto conn = db.Acquire();
  // The append-only trigger refuses the edit ...
  EXPECT_FALSE((*conn)->Exec("UPDATE events SET data = '{\"amount\":1000}' WHERE seq = 3"));
  // ... so the tamperer drops it first.
  if (GetParam() == Dialect::kSqlite) {
    ASSERT_TRUE((*conn)->Exec("DROP TRIGGER events_no_update"));
  } else {
    ASSERT_TRUE((*conn)->Exec("DROP TRIGGER events_no_update ON events"));
  }
  ASSERT_TRUE((*conn)->Exec("UPDATE events SET data = '{\"amount\":1000}' WHERE seq = 3"));
  auto report = (*log)->Verify();
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->ok);
  EXPECT_EQ(report->first_bad_seq, 3);
  EXPECT_NE(report->problem.find("altered"), std::string::npos);
}

TEST_P(Store, VerifyCatchesDeletedEvent) {
  Database& db = Migrated();
  auto log = EventLog::Open(db);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE((*log)->Append(Draft("d")));
  auto conn = db.Acquire();
  if (GetParam() == Dialect::kSqlite) {
    ASSERT_TRUE((*conn)->Exec("DROP TRIGGER events_no_delete"));
  } else {
    ASSERT_TRUE((*conn)->Exec("DROP TRIGGER events_no_update ON events"));
  }
  ASSERT_TRUE((*conn)->Exec("DELETE FROM events WHERE seq = 2"));
  auto report = (*log)->Verify();
  EXPECT_FALSE(report->ok);
  EXPECT_EQ(report->first_bad_seq, 3);
  EXPECT_NE(report->problem.find("gap"), std::string::npos);
}

class LifecycleStore : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto log = EventLog::Open(Migrated());
    ASSERT_TRUE(log);
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<Lifecycles>(*log_);
    ASSERT_TRUE(lifecycles_->Register(ReviewMachine()));
  }
  void TearDown() override {
    lifecycles_.reset();
    log_.reset();
    BackendTest::TearDown();
  }
  CommandContext Ctx(std::string actor = "alice") { return {std::move(actor), "req-9", ""}; }

  std::unique_ptr<EventLog> log_;
  std::unique_ptr<Lifecycles> lifecycles_;
};
KERVAN_INSTANTIATE_BACKENDS(LifecycleStore);

TEST_P(LifecycleStore, CreateAndTransitionRecordEvents) {
  auto e = lifecycles_->Create("doc", "d1", {{"title", "t"}}, Ctx());
  ASSERT_TRUE(e) << e.error().ToString();
  EXPECT_EQ(e->state, "Draft");
  auto moved = lifecycles_->Transition("doc", "d1", {.transition = "submit"}, Ctx());
  ASSERT_TRUE(moved) << moved.error().ToString();
  EXPECT_EQ(moved->state, "InReview");
  auto got = lifecycles_->Get("doc", "d1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, "InReview");
  EXPECT_EQ(got->updated_seq, 2);
  auto events =
      log_->Read({.after_seq = 0, .limit = 10, .subject_kind = "doc", .subject_id = "d1"});
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].type, "doc.created");
  EXPECT_EQ((*events)[1].type, "doc.submitted");
  EXPECT_EQ((*events)[1].actor, "alice");
  EXPECT_EQ((*events)[1].correlation_id, "req-9");
}

TEST_P(LifecycleStore, IllegalTransitionListsAllowedAndChangesNothing) {
  ASSERT_TRUE(lifecycles_->Create("doc", "d2", {}, Ctx()));
  auto r = lifecycles_->Transition("doc", "d2", {.transition = "approve", .reason = "ok"}, Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(r.error().details["current_state"], "Draft");
  ASSERT_EQ(r.error().details["allowed_transitions"].size(), 1u);
  EXPECT_EQ(r.error().details["allowed_transitions"][0]["name"], "submit");
  EXPECT_EQ(log_->head_seq(), 1);
  EXPECT_EQ(lifecycles_->Get("doc", "d2")->state, "Draft");
}

TEST_P(LifecycleStore, ManualInterventionNeedsAReason) {
  ASSERT_TRUE(lifecycles_->Create("doc", "d3", {}, Ctx()));
  ASSERT_TRUE(lifecycles_->Transition("doc", "d3", {.transition = "submit"}, Ctx()));
  auto r = lifecycles_->Transition("doc", "d3", {.transition = "reject", .reason = "  "}, Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "reason");
  auto ok = lifecycles_->Transition(
      "doc", "d3", {.transition = "reject", .reason = "numbers are wrong"}, Ctx("bob"));
  ASSERT_TRUE(ok);
  auto events = log_->Read({.after_seq = 0, .limit = 10, .type = "doc.rejected"});
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].reason, "numbers are wrong");
  EXPECT_EQ((*events)[0].actor, "bob");
}

TEST_P(LifecycleStore, GuardRefusesWithoutEvidence) {
  ASSERT_TRUE(lifecycles_->Create("doc", "d4", {}, Ctx()));
  ASSERT_TRUE(lifecycles_->Transition("doc", "d4", {.transition = "submit"}, Ctx()));
  ASSERT_TRUE(
      lifecycles_->Transition("doc", "d4", {.transition = "approve", .reason = "fine"}, Ctx()));
  Json no = {{"checks_passed", false}};
  auto r =
      lifecycles_->Transition("doc", "d4", {.transition = "publish", .request_data = &no}, Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().details["guard"], "data.checks_passed == true");
  Json yes = {{"checks_passed", true}};
  EXPECT_TRUE(
      lifecycles_->Transition("doc", "d4", {.transition = "publish", .request_data = &yes}, Ctx()));
}

TEST_P(LifecycleStore, DuplicateAndBadIdsAreRejected) {
  ASSERT_TRUE(lifecycles_->Create("doc", "same", {}, Ctx()));
  auto dup = lifecycles_->Create("doc", "same", {}, Ctx());
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kAlreadyExists);
  auto bad = lifecycles_->Create("doc", "../etc", {}, Ctx());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "id");
  auto unknown = lifecycles_->Create("nope", "x", {}, Ctx());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(log_->head_seq(), 1);
}

TEST_P(LifecycleStore, RebuiltProjectionEqualsLiveProjection) {
  for (int i = 0; i < 20; ++i) {
    std::string id = "doc-" + std::to_string(i);
    ASSERT_TRUE(lifecycles_->Create("doc", id, {{"n", i}}, Ctx()));
    if (i % 2 == 0) {
      ASSERT_TRUE(lifecycles_->Transition("doc", id, {.transition = "submit"}, Ctx()));
    }
    if (i % 4 == 0) {
      ASSERT_TRUE(
          lifecycles_->Transition("doc", id, {.transition = "approve", .reason = "r"}, Ctx()));
    }
    if (i % 3 == 0) {  // illegal for some: must leave no trace
      (void)lifecycles_->Transition("doc", id, {.transition = "reject", .reason = "r"}, Ctx());
    }
  }
  auto before = lifecycles_->List({.kind = "doc", .limit = 1000});
  ASSERT_TRUE(before);
  auto replayed = lifecycles_->RebuildProjection();
  ASSERT_TRUE(replayed) << replayed.error().ToString();
  EXPECT_EQ(*replayed, log_->head_seq());
  auto after = lifecycles_->List({.kind = "doc", .limit = 1000});
  ASSERT_EQ(before->size(), after->size());
  for (size_t i = 0; i < before->size(); ++i) {
    EXPECT_EQ((*before)[i].ToJson(), (*after)[i].ToJson());
  }
  EXPECT_TRUE(log_->Verify()->ok);
}

TEST_P(LifecycleStore, ListFiltersByState) {
  ASSERT_TRUE(lifecycles_->Create("doc", "a", {}, Ctx()));
  ASSERT_TRUE(lifecycles_->Create("doc", "b", {}, Ctx()));
  ASSERT_TRUE(lifecycles_->Transition("doc", "b", {.transition = "submit"}, Ctx()));
  auto review = lifecycles_->List({.kind = "doc", .state = "InReview"});
  ASSERT_EQ(review->size(), 1u);
  EXPECT_EQ((*review)[0].id, "b");
}

}  // namespace
}  // namespace kervan::store
