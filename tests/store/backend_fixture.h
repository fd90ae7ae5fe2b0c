// Runs a test suite against every store backend: SQLite in a temp dir and a
// real PostgreSQL server (DSN from KERVAN_TEST_PG_DSN, started by
// scripts/test.sh). Without a DSN the PostgreSQL cases skip loudly, unless
// KERVAN_REQUIRE_PG=1 (the test command sets it), where they fail.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "store/store.h"

namespace kervan::store::testing {

inline std::string RandomSuffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng() % 1000000000);
}

class BackendTest : public ::testing::TestWithParam<Dialect> {
 protected:
  void SetUp() override {
    if (GetParam() == Dialect::kSqlite) {
      dir_ = std::filesystem::temp_directory_path() / ("kervan-test-" + RandomSuffix());
      std::filesystem::create_directories(dir_);
      auto db = OpenSqlite({.path = (dir_ / "kervan.db").string(), .pool_size = 8});
      ASSERT_TRUE(db) << db.error().ToString();
      db_ = std::move(db).value();
      return;
    }
    const char* dsn = std::getenv("KERVAN_TEST_PG_DSN");
    if (dsn == nullptr || *dsn == '\0') {
      const char* req = std::getenv("KERVAN_REQUIRE_PG");
      if (req != nullptr && std::string(req) == "1") {
        FAIL() << "KERVAN_REQUIRE_PG=1 but KERVAN_TEST_PG_DSN is not set";
      }
      GTEST_SKIP() << "\n*** SKIPPING PostgreSQL conformance: KERVAN_TEST_PG_DSN not set. "
                      "Run scripts/test.sh (starts a real PostgreSQL) to include it. ***";
    }
    admin_dsn_ = dsn;
    dbname_ = "kervan_test_" + RandomSuffix();
    auto admin = OpenPostgres({.dsn = admin_dsn_, .pool_size = 1});
    ASSERT_TRUE(admin) << admin.error().ToString();
    {
      auto c = (*admin)->Acquire();
      ASSERT_TRUE(c);
      auto r = (*c)->Exec("CREATE DATABASE " + dbname_);
      ASSERT_TRUE(r) << r.error().ToString();
    }
    auto db = OpenPostgres({.dsn = admin_dsn_ + " dbname=" + dbname_, .pool_size = 8});
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(db).value();
  }

  void TearDown() override {
    db_.reset();
    if (!dir_.empty())
      std::filesystem::remove_all(dir_);
    if (!dbname_.empty()) {
      auto admin = OpenPostgres({.dsn = admin_dsn_, .pool_size = 1});
      if (admin) {
        auto c = (*admin)->Acquire();
        if (c)
          (void)(*c)->Exec("DROP DATABASE IF EXISTS " + dbname_ + " WITH (FORCE)");
      }
    }
  }

  // The database with migrations applied.
  Database& Migrated() {
    auto r = ApplyMigrations(*db_);
    EXPECT_TRUE(r) << r.error().ToString();
    return *db_;
  }

  std::unique_ptr<Database> db_;
  std::filesystem::path dir_;
  std::string admin_dsn_, dbname_;
};

inline std::string DialectParamName(const ::testing::TestParamInfo<Dialect>& info) {
  return std::string(DialectName(info.param));
}

#define KERVAN_INSTANTIATE_BACKENDS(Suite)                                                       \
  INSTANTIATE_TEST_SUITE_P(                                                                      \
      Backends, Suite,                                                                           \
      ::testing::Values(::kervan::store::Dialect::kSqlite, ::kervan::store::Dialect::kPostgres), \
      ::kervan::store::testing::DialectParamName)

}  // namespace kervan::store::testing
