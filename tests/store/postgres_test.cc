// The PostgreSQL backend: placeholder rewriting and DSN masking as pure
// functions, then behaviour against a real server (DSN from
// KERVAN_TEST_PG_DSN, e.g. from scripts/pg.sh start DIR). Without a DSN the
// server tests skip loudly, unless KERVAN_REQUIRE_PG=1, where they fail.
#include "store/postgres.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "store/database.h"

namespace kervan::store {
namespace {

using core::ErrorCode;

// ---------------------------------------------------------------- pure functions

struct RewriteCase {
  const char* name;
  const char* sql;
  const char* want;
};

TEST(PostgresPlaceholders, RewritesOnlyOutsideQuotesAndComments) {
  const RewriteCase cases[] = {
      {"no placeholders", "SELECT 1 FROM t", "SELECT 1 FROM t"},
      {"empty", "", ""},
      {"in order", "INSERT INTO t(a, b, c) VALUES (?, ?, ?)",
       "INSERT INTO t(a, b, c) VALUES ($1, $2, $3)"},
      {"adjacent", "SELECT ?+?", "SELECT $1+$2"},
      {"ten and more", "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
       "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"},
      {"single-quoted literal", "SELECT '?', ?", "SELECT '?', $1"},
      {"escaped quote in literal", "SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"},
      {"empty literal", "SELECT '', ?", "SELECT '', $1"},
      {"literal of one quote", "SELECT '''', ?", "SELECT '''', $1"},
      {"backslash is plain in standard literal", "SELECT 'a\\', ?", "SELECT 'a\\', $1"},
      {"E-string backslash escape", "SELECT E'\\'?', ?", "SELECT E'\\'?', $1"},
      {"e-string lowercase", "SELECT e'\\\\', ?", "SELECT e'\\\\', $1"},
      {"identifier ending in e is not an E-string", "SELECT name='a\\', ?",
       "SELECT name='a\\', $1"},
      {"quoted identifier", "SELECT \"?col\" FROM t WHERE a = ?",
       "SELECT \"?col\" FROM t WHERE a = $1"},
      {"escaped quote in identifier", "SELECT \"a\"\"?\" FROM t WHERE a = ?",
       "SELECT \"a\"\"?\" FROM t WHERE a = $1"},
      {"line comment", "SELECT ? -- why? because\nFROM t WHERE b = ?",
       "SELECT $1 -- why? because\nFROM t WHERE b = $2"},
      {"line comment at end", "SELECT ? -- ?", "SELECT $1 -- ?"},
      {"block comment", "SELECT /* ? */ ?", "SELECT /* ? */ $1"},
      {"nested block comment", "SELECT /* a /* ? */ ? */ ?", "SELECT /* a /* ? */ ? */ $1"},
      {"dollar quote", "SELECT $$ it's ? $$, ?", "SELECT $$ it's ? $$, $1"},
      {"tagged dollar quote", "SELECT $fn$ $$ ? $fn$, ?", "SELECT $fn$ $$ ? $fn$, $1"},
      {"existing $n left alone", "SELECT $1, ?", "SELECT $1, $1"},
      {"minus is not a comment", "SELECT ? - 1", "SELECT $1 - 1"},
      {"unterminated literal", "SELECT ?, 'oops ?", "SELECT $1, 'oops ?"},
      {"unicode around", "SELECT 'ğüş ?', ? -- ✓", "SELECT 'ğüş ?', $1 -- ✓"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(RewritePlaceholders(c.sql), c.want) << c.name;
  }
}

struct MaskCase {
  const char* name;
  const char* dsn;
  const char* want;
};

TEST(PostgresMaskDsn, HidesPasswordsAndKeepsTheRest) {
  const MaskCase cases[] = {
      {"key=value", "host=127.0.0.1 port=5433 dbname=postgres user=kervan password=s3cret",
       "host=127.0.0.1 port=5433 dbname=postgres user=kervan password=*****"},
      {"password first", "password=s3cret host=h", "password=***** host=h"},
      {"spaces around =", "host=h password = s3cret user=u", "host=h password = ***** user=u"},
      {"quoted value", "host=h password='s3 c\\'ret' user=u", "host=h password=***** user=u"},
      {"sslpassword too", "sslpassword=k password=p", "sslpassword=***** password=*****"},
      {"no password", "host=h port=1 user=u", "host=h port=1 user=u"},
      {"passfile is not a secret", "host=h passfile=/x/pgpass", "host=h passfile=/x/pgpass"},
      {"malformed tail hidden", "host=h password s3cret", "host=h *****"},
      {"bare dbname", "kervan", "kervan"},
      {"uri with password", "postgresql://kervan:s3cret@127.0.0.1:5432/kervan",
       "postgresql://kervan:*****@127.0.0.1:5432/kervan"},
      {"postgres scheme", "postgres://kervan:s3cret@h/db", "postgres://kervan:*****@h/db"},
      {"uri without password", "postgresql://kervan@h:5432/db", "postgresql://kervan@h:5432/db"},
      {"uri without userinfo", "postgresql://h:5432/db?sslmode=disable",
       "postgresql://h:5432/db?sslmode=disable"},
      {"percent-encoded password", "postgresql://u:p%40ss@h/db", "postgresql://u:*****@h/db"},
      {"raw @ and / in password", "postgresql://u:p@s/s@h/db", "postgresql://u:*****@h/db"},
      {"query password", "postgresql://h/db?user=u&password=s3cret&sslmode=disable",
       "postgresql://h/db?user=u&password=*****&sslmode=disable"},
      {"both", "postgresql://u:a@h/db?password=b", "postgresql://u:*****@h/db?password=*****"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(MaskDsn(c.dsn), c.want) << c.name;
  }
}

// ---------------------------------------------------------------- opening, no server needed

// A loopback port nothing listens on: bind an ephemeral port, then free it.
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 1;  // port 1 is closed on any sane test machine
  }
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(PostgresOpen, RejectsEmptyDsnAndZeroPool) {
  auto empty = OpenPostgres({.dsn = ""});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(empty.error().field, "dsn");

  auto zero = OpenPostgres({.dsn = "host=127.0.0.1", .pool_size = 0});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(zero.error().field, "pool_size");
}

TEST(PostgresOpen, UnparsableDsnIsInvalidArgumentWithoutPassword) {
  auto db = OpenPostgres({.dsn = "host=127.0.0.1 password=Hunter2Secret bogus"});
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(db.error().message.find("Hunter2Secret"), std::string::npos) << db.error().message;
}

TEST(PostgresOpen, ClosedPortIsUnavailableNamingHostPortNotPassword) {
  const std::string port = std::to_string(ClosedPort());
  const std::string dsns[] = {
      "host=127.0.0.1 port=" + port + " user=kervan password=Hunter2Secret dbname=kervan",
      "postgresql://kervan:Hunter2Secret@127.0.0.1:" + port + "/kervan",
  };
  for (const std::string& dsn : dsns) {
    auto db = OpenPostgres({.dsn = dsn});
    ASSERT_FALSE(db) << dsn;
    const std::string& message = db.error().message;
    EXPECT_EQ(db.error().code, ErrorCode::kUnavailable) << message;
    EXPECT_NE(message.find("host=127.0.0.1"), std::string::npos) << message;
    EXPECT_NE(message.find("port=" + port), std::string::npos) << message;
    EXPECT_EQ(message.find("Hunter2Secret"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

// ---------------------------------------------------------------- against a real server

std::string RandomSuffix() {
  std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng() % 1000000000000ULL);
}

// The value of `key` in a key=value DSN ("" when absent or quoted).
std::string DsnValue(const std::string& dsn, const std::string& key) {
  const std::string needle = key + "=";
  for (size_t at = dsn.find(needle); at != std::string::npos; at = dsn.find(needle, at + 1)) {
    if (at != 0 && dsn[at - 1] != ' ')
      continue;
    const size_t begin = at + needle.size();
    return dsn.substr(begin, dsn.find(' ', begin) - begin);
  }
  return "";
}

std::string SqlState(const core::Error& error) {
  return error.details.is_object() ? error.details.value("sqlstate", "") : "";
}

// One schema per test program run, so runs can share a server.
class PostgresServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* dsn = std::getenv("KERVAN_TEST_PG_DSN");
    if (dsn == nullptr || *dsn == '\0')
      return;
    dsn_ = dsn;
    auto db = OpenPostgres({.dsn = dsn_, .pool_size = 4});
    if (!db) {
      setup_error_ = db.error().ToString();
      return;
    }
    db_ = std::move(db).value();
    schema_ = "kervan_pgtest_" + RandomSuffix();
    auto conn = db_->Acquire();
    if (!conn) {
      setup_error_ = conn.error().ToString();
      return;
    }
    auto made = (*conn)->Exec("CREATE SCHEMA " + schema_);
    if (!made)
      setup_error_ = made.error().ToString();
  }

  static void TearDownTestSuite() {
    if (db_ != nullptr) {
      if (auto conn = db_->Acquire()) {
        (void)(*conn)->Exec("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
      }
    }
    db_.reset();
  }

  void SetUp() override {
    if (dsn_.empty()) {
      const char* require = std::getenv("KERVAN_REQUIRE_PG");
      if (require != nullptr && std::string(require) == "1") {
        FAIL() << "KERVAN_REQUIRE_PG=1 but KERVAN_TEST_PG_DSN is not set";
      }
      GTEST_SKIP() << "\n*** SKIPPING PostgreSQL server test: KERVAN_TEST_PG_DSN is not set. "
                      "Run: scripts/pg.sh start /tmp/pgtest && "
                      "KERVAN_TEST_PG_DSN=$(cat /tmp/pgtest/dsn) <this binary> ***";
    }
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    auto conn = db_->Acquire();
    ASSERT_TRUE(conn) << conn.error().ToString();
    conn_.emplace(std::move(conn).value());
  }

  void TearDown() override { conn_.reset(); }

  static std::string T(const std::string& table) { return schema_ + "." + table; }
  Connection& conn() { return **conn_; }

  void MustExec(const std::string& sql, const std::vector<Value>& params = {}) {
    auto r = conn().Exec(sql, params);
    ASSERT_TRUE(r) << sql << ": " << r.error().ToString();
  }

  Rows MustQuery(const std::string& sql, const std::vector<Value>& params = {}) {
    auto r = conn().Query(sql, params);
    EXPECT_TRUE(r) << sql << ": " << r.error().ToString();
    return r ? std::move(r).value() : Rows{};
  }

  int64_t Count(const std::string& table) {
    Rows rows = MustQuery("SELECT COUNT(*) FROM " + T(table));
    return rows.empty() ? -1 : std::get<int64_t>(rows[0].cols[0]);
  }

  static inline std::string dsn_;
  static inline std::string setup_error_;
  static inline std::string schema_;
  static inline std::unique_ptr<Database> db_;
  std::optional<PooledConnection> conn_;
};

TEST_F(PostgresServer, TypesRoundTrip) {
  MustExec("CREATE TABLE " + T("types") +
           " (id BIGINT PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, t TEXT, n TEXT)");
  const std::string text = "héllo 'single' \"double\" ? -- not a comment \\ 日本語 ✓\nline 2";
  const double third = 1.0 / 3.0;
  const std::vector<std::vector<Value>> inputs = {
      {int64_t{1}, std::numeric_limits<int64_t>::max(), 0.1, text, std::monostate{}},
      {int64_t{2}, std::numeric_limits<int64_t>::min(), third, std::string(), std::monostate{}},
      {int64_t{3}, int64_t{0}, -1e300, std::string("'"), std::monostate{}},
      {int64_t{4}, std::monostate{}, std::numeric_limits<double>::denorm_min(), std::monostate{},
       std::monostate{}},
      {int64_t{5}, int64_t{-1}, std::numeric_limits<double>::infinity(), std::string("x"),
       std::monostate{}},
  };
  for (const auto& params : inputs) {
    MustExec("INSERT INTO " + T("types") + " (id, i, d, t, n) VALUES (?, ?, ?, ?, ?)", params);
  }
  Rows rows = MustQuery("SELECT id, i, d, t, n FROM " + T("types") + " ORDER BY id");
  ASSERT_EQ(rows.size(), inputs.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    EXPECT_EQ(rows[r].cols, inputs[r]) << "row " << r;
  }

  MustExec("INSERT INTO " + T("types") + " (id, d) VALUES (?, ?)",
           {int64_t{6}, std::numeric_limits<double>::quiet_NaN()});
  rows = MustQuery("SELECT d FROM " + T("types") + " WHERE id = ?", {int64_t{6}});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(std::isnan(std::get<double>(rows[0].cols[0])));
}

TEST_F(PostgresServer, ColumnTypesMapToValueAlternatives) {
  Rows rows = MustQuery(
      "SELECT CAST(7 AS SMALLINT), CAST(-8 AS INTEGER), CAST(9 AS BIGINT), CAST(0.5 AS REAL), "
      "CAST(12345.678 AS NUMERIC), TRUE, CAST('2024-01-01 12:00:00+02' AS TIMESTAMPTZ), "
      "CAST(NULL AS BIGINT), CAST(? AS BIGINT), ?",
      {int64_t{42}, int64_t{43}});
  ASSERT_EQ(rows.size(), 1u);
  const std::vector<Value> want = {int64_t{7}, int64_t{-8}, int64_t{9}, 0.5, 12345.678,
                                   std::string("t"), std::string("2024-01-01 10:00:00+00"),
                                   std::monostate{}, int64_t{42},
                                   // No context gives the parameter a type: it comes back as text.
                                   std::string("43")};
  EXPECT_EQ(rows[0].cols, want);
}

TEST_F(PostgresServer, ParametersTakeTheirTypeFromContext) {
  MustExec("CREATE TABLE " + T("ctx") + " (flag BOOLEAN, label TEXT, amount NUMERIC)");
  MustExec("INSERT INTO " + T("ctx") + " VALUES (?, ?, ?)", {int64_t{1}, int64_t{7}, 0.1});
  Rows rows = MustQuery("SELECT flag, label, amount FROM " + T("ctx"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].cols, (std::vector<Value>{std::string("t"), std::string("7"), 0.1}));
  rows = MustQuery("SELECT CAST(amount AS TEXT) FROM " + T("ctx"));
  EXPECT_EQ(rows[0].Text(0), "0.1");  // not 0.10000000000000001
}

TEST_F(PostgresServer, QuestionMarksInLiteralsAreNotParameters) {
  Rows rows = MustQuery("SELECT '?' AS \"what?\", CAST(? AS TEXT) -- really?\n", {"yes"});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].cols, (std::vector<Value>{std::string("?"), std::string("yes")}));
}

TEST_F(PostgresServer, ExecReturnsRowsAffected) {
  MustExec("CREATE TABLE " + T("affected") + " (id BIGINT, v TEXT)");
  auto inserted =
      conn().Exec("INSERT INTO " + T("affected") + " VALUES (1, 'a'), (2, 'a'), (3, 'b')");
  ASSERT_TRUE(inserted) << inserted.error().ToString();
  EXPECT_EQ(*inserted, 3);
  auto updated = conn().Exec("UPDATE " + T("affected") + " SET v = ? WHERE v = ?", {"c", "a"});
  ASSERT_TRUE(updated) << updated.error().ToString();
  EXPECT_EQ(*updated, 2);
  auto none = conn().Exec("DELETE FROM " + T("affected") + " WHERE id > ?", {int64_t{100}});
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, 0);
  auto ddl = conn().Exec("CREATE INDEX ON " + T("affected") + " (v)");
  ASSERT_TRUE(ddl);
  EXPECT_EQ(*ddl, 0);
}

TEST_F(PostgresServer, UniqueViolationIsAlreadyExists) {
  MustExec("CREATE TABLE " + T("uniq") + " (name TEXT PRIMARY KEY)");
  MustExec("INSERT INTO " + T("uniq") + " VALUES (?)", {"credit"});
  auto again = conn().Exec("INSERT INTO " + T("uniq") + " VALUES (?)", {"credit"});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists) << again.error().ToString();
  EXPECT_NE(again.error().message.find("duplicate key"), std::string::npos);
  EXPECT_EQ(SqlState(again.error()), "23505");
  // ON CONFLICT is the portable way around it.
  auto upsert =
      conn().Exec("INSERT INTO " + T("uniq") + " VALUES (?) ON CONFLICT DO NOTHING", {"credit"});
  ASSERT_TRUE(upsert);
  EXPECT_EQ(*upsert, 0);
}

TEST_F(PostgresServer, BadSqlIsInternalWithTheServersMessage) {
  auto syntax = conn().Exec("SELEC 1");
  ASSERT_FALSE(syntax);
  EXPECT_EQ(syntax.error().code, ErrorCode::kInternal);
  EXPECT_EQ(syntax.error().message.rfind("postgres: ", 0), 0u) << syntax.error().message;
  EXPECT_NE(syntax.error().message.find("syntax error"), std::string::npos);
  EXPECT_NE(syntax.error().message.back(), '\n');

  auto missing = conn().Query("SELECT * FROM " + T("no_such_table"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kInternal);
  EXPECT_NE(missing.error().message.find("no_such_table"), std::string::npos);
  EXPECT_EQ(SqlState(missing.error()), "42P01");

  // The connection stays usable after an error outside a transaction.
  EXPECT_EQ(MustQuery("SELECT 1").size(), 1u);
}

TEST_F(PostgresServer, PlaceholderCountMismatchIsAnError) {
  auto r = conn().Query("SELECT CAST(? AS BIGINT), CAST(? AS BIGINT)", {int64_t{1}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInternal);
  EXPECT_NE(r.error().message.find("2 '?' placeholders but 1"), std::string::npos)
      << r.error().message;
}

TEST_F(PostgresServer, NulByteInTextIsInvalidArgument) {
  auto r = conn().Query("SELECT CAST(? AS TEXT)", {std::string("a\0b", 3)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(PostgresServer, WrongPasswordIsUnavailableWithoutThePassword) {
  if (DsnValue(dsn_, "password").empty())
    GTEST_SKIP() << "DSN has no password=";
  auto db = OpenPostgres({.dsn = dsn_ + " password=Wrong-Hunter2-Secret"});
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(db.error().message.find("password authentication failed"), std::string::npos)
      << db.error().message;
  EXPECT_EQ(db.error().message.find("Wrong-Hunter2-Secret"), std::string::npos);
  EXPECT_EQ(db.error().message.find(DsnValue(dsn_, "password")), std::string::npos);
}

TEST_F(PostgresServer, DescriptionMasksThePassword) {
  const std::string& description = db_->description();
  EXPECT_EQ(description.rfind("postgres:", 0), 0u) << description;
  EXPECT_EQ(db_->dialect(), Dialect::kPostgres);
  const std::string password = DsnValue(dsn_, "password");
  if (!password.empty()) {
    EXPECT_EQ(description.find(password), std::string::npos) << description;
    EXPECT_NE(description.find("password=*****"), std::string::npos) << description;
  }
}

TEST_F(PostgresServer, SessionRunsInUtcWithQuietNotices) {
  EXPECT_EQ(MustQuery("SHOW TimeZone").at(0).Text(0), "UTC");
  EXPECT_EQ(MustQuery("SHOW client_min_messages").at(0).Text(0), "warning");
  // Would raise a NOTICE ("already exists, skipping"); must not be an error.
  MustExec("CREATE TABLE IF NOT EXISTS " + T("quiet") + " (a INT)");
  MustExec("CREATE TABLE IF NOT EXISTS " + T("quiet") + " (a INT)");
}

TEST_F(PostgresServer, RollbackDiscardsAndCommitKeeps) {
  MustExec("CREATE TABLE " + T("tx") + " (id BIGINT)");
  ASSERT_TRUE(conn().Begin());
  MustExec("INSERT INTO " + T("tx") + " VALUES (?)", {int64_t{1}});
  ASSERT_TRUE(conn().Rollback());
  EXPECT_EQ(Count("tx"), 0);

  ASSERT_TRUE(conn().Begin());
  MustExec("INSERT INTO " + T("tx") + " VALUES (?)", {int64_t{2}});
  ASSERT_TRUE(conn().Commit());
  EXPECT_EQ(Count("tx"), 1);

  Status in_tx = InTransaction(conn(), [&](Connection& c) -> Status {
    auto r = c.Exec("INSERT INTO " + T("tx") + " VALUES (3)");
    if (!r)
      return std::move(r).error();
    return core::Internal("changed my mind");
  });
  ASSERT_FALSE(in_tx);
  EXPECT_EQ(Count("tx"), 1);
}

TEST_F(PostgresServer, SavepointRollbackDiscardsOnlyTheInnerWork) {
  MustExec("CREATE TABLE " + T("sp") + " (v TEXT)");
  ASSERT_TRUE(conn().Begin());
  MustExec("INSERT INTO " + T("sp") + " VALUES (?)", {"a"});
  MustExec("SAVEPOINT s");
  MustExec("INSERT INTO " + T("sp") + " VALUES (?)", {"b"});
  MustExec("ROLLBACK TO SAVEPOINT s");
  MustExec("RELEASE SAVEPOINT s");
  MustExec("INSERT INTO " + T("sp") + " VALUES (?)", {"c"});
  ASSERT_TRUE(conn().Commit());
  Rows rows = MustQuery("SELECT v FROM " + T("sp") + " ORDER BY v");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].Text(0), "a");
  EXPECT_EQ(rows[1].Text(0), "c");
}

TEST_F(PostgresServer, SavepointRecoversFromAnErrorInsideATransaction) {
  MustExec("CREATE TABLE " + T("sp_err") + " (v TEXT PRIMARY KEY)");
  ASSERT_TRUE(conn().Begin());
  MustExec("INSERT INTO " + T("sp_err") + " VALUES (?)", {"a"});
  MustExec("SAVEPOINT s");
  auto dup = conn().Exec("INSERT INTO " + T("sp_err") + " VALUES (?)", {"a"});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kAlreadyExists);
  MustExec("ROLLBACK TO SAVEPOINT s");
  MustExec("INSERT INTO " + T("sp_err") + " VALUES (?)", {"b"});
  ASSERT_TRUE(conn().Commit());
  EXPECT_EQ(Count("sp_err"), 2);
}

TEST_F(PostgresServer, CommitAfterAnUnhandledErrorFailsAndKeepsNothing) {
  MustExec("CREATE TABLE " + T("aborted") + " (v TEXT PRIMARY KEY)");
  ASSERT_TRUE(conn().Begin());
  MustExec("INSERT INTO " + T("aborted") + " VALUES ('a')");
  ASSERT_FALSE(conn().Exec("INSERT INTO " + T("aborted") + " VALUES ('a')"));
  // PostgreSQL answers COMMIT of an aborted transaction with "ROLLBACK", not an error.
  Status commit = conn().Commit();
  ASSERT_FALSE(commit);
  EXPECT_EQ(commit.error().code, ErrorCode::kInternal);
  EXPECT_NE(commit.error().message.find("rolled back"), std::string::npos);
  EXPECT_EQ(Count("aborted"), 0);
}

TEST_F(PostgresServer, ExecScriptRunsSeveralStatementsAndStopsAtAnError) {
  Status ok = conn().ExecScript("CREATE TABLE " + T("script") +
                                " (id BIGINT);\n"
                                "-- a comment; with a semicolon\n"
                                "INSERT INTO " +
                                T("script") + " VALUES (1);\nINSERT INTO " + T("script") +
                                " VALUES (2);\n");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(Count("script"), 2);

  Status bad =
      conn().ExecScript("INSERT INTO " + T("script") + " VALUES (3); SELEC 1; INSERT INTO " +
                        T("script") + " VALUES (4);");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInternal);
  // One implicit transaction: the statement before the error is undone too.
  EXPECT_EQ(Count("script"), 2);

  EXPECT_TRUE(conn().ExecScript("-- nothing but a comment\n"));
}

TEST_F(PostgresServer, LostConnectionIsUnavailableThenReconnects) {
  auto killed = conn().Query("SELECT pg_terminate_backend(pg_backend_pid())");
  ASSERT_FALSE(killed);
  EXPECT_EQ(killed.error().code, ErrorCode::kUnavailable) << killed.error().ToString();
  // Outside a transaction, the next statement reconnects.
  Rows rows = MustQuery("SHOW TimeZone");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Text(0), "UTC");  // session settings applied again
}

TEST_F(PostgresServer, ConnectionLostInsideATransactionIsNotSilentlyReplaced) {
  MustExec("CREATE TABLE " + T("lost") + " (id BIGINT)");
  ASSERT_TRUE(conn().Begin());
  MustExec("INSERT INTO " + T("lost") + " VALUES (1)");
  auto killed = conn().Query("SELECT pg_terminate_backend(pg_backend_pid())");
  ASSERT_FALSE(killed);
  EXPECT_EQ(killed.error().code, ErrorCode::kUnavailable);
  // Running the rest in autocommit would commit half a transaction.
  auto next = conn().Exec("INSERT INTO " + T("lost") + " VALUES (2)");
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(conn().Commit());
  ASSERT_TRUE(conn().Rollback());
  EXPECT_EQ(Count("lost"), 0);
}

// Statements with parameters are prepared once per session: the session
// holds them (pg_prepared_statements), a repeat runs the same one with new
// values, past the cap they are dropped and prepared again, and a
// reconnected session prepares afresh.
TEST_F(PostgresServer, StatementsWithParametersArePreparedOncePerSession) {
  MustExec("CREATE TABLE " + T("prep") + " (id BIGINT, name TEXT)");
  auto prepared = [&] {
    Rows rows = MustQuery("SELECT count(*) FROM pg_prepared_statements");
    return rows.empty() ? -1 : rows[0].Int(0);
  };
  const int64_t before = prepared();
  for (int i = 0; i < 10; ++i)
    MustExec("INSERT INTO " + T("prep") + " (id, name) VALUES (?, ?)",
             {int64_t{i}, "n" + std::to_string(i)});
  EXPECT_EQ(prepared(), before + 1);
  Rows rows = MustQuery("SELECT name FROM " + T("prep") + " WHERE id = ?", {int64_t{7}});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Text(0), "n7");
  EXPECT_EQ(prepared(), before + 2);
  // Many distinct statements: the session's set stays bounded and every
  // statement still answers.
  for (int i = 0; i < 300; ++i) {
    Rows one = MustQuery("SELECT CAST(? AS BIGINT) + " + std::to_string(i), {int64_t{1}});
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].Int(0), i + 1);
  }
  EXPECT_LE(prepared(), 256);
  rows = MustQuery("SELECT name FROM " + T("prep") + " WHERE id = ?", {int64_t{3}});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Text(0), "n3");
  // A new session (the server ended ours) has none: they are prepared again.
  auto killed = conn().Query("SELECT pg_terminate_backend(pg_backend_pid())");
  ASSERT_FALSE(killed);
  rows = MustQuery("SELECT name FROM " + T("prep") + " WHERE id = ?", {int64_t{5}});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Text(0), "n5");
  EXPECT_EQ(prepared(), 1);
}

// A statement new to the session is prepared inside the pipeline; if the
// prepare fails, that statement fails with the server's error (not "does
// not exist"), the next one runs, and a later send prepares it again.
TEST_F(PostgresServer, PipelinedPrepareFailureFailsOnlyItsStatement) {
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(conn().SendQuery("SELECT nosuchcolumn FROM " + T("nosuchtable") + " WHERE 1 = ?",
                                 {int64_t{1}}));
    ASSERT_TRUE(conn().SendQuery("SELECT CAST(? AS BIGINT) + 1", {int64_t{41}}));
    auto bad = conn().ReceiveRows();
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::kInternal);
    EXPECT_NE(bad.error().message.find("does not exist"), std::string::npos)
        << bad.error().ToString();
    EXPECT_NE(bad.error().message.find("nosuchtable"), std::string::npos) << bad.error().ToString();
    auto good = conn().ReceiveRows();
    ASSERT_TRUE(good) << good.error().ToString();
    ASSERT_EQ(good->size(), 1u);
    EXPECT_EQ((*good)[0].Int(0), 42);
  }
}

// The session ends with statements in the pipeline: each pending one fails
// with kUnavailable, and the connection then reconnects as after any loss.
TEST_F(PostgresServer, ConnectionLostInAPipelineFailsWhatIsPendingThenReconnects) {
  MustExec("CREATE TABLE " + T("piped") + " (id BIGINT)");
  ASSERT_TRUE(conn().SendQuery("INSERT INTO " + T("piped") + " VALUES (?)", {int64_t{1}}));
  ASSERT_TRUE(
      conn().SendQuery("SELECT pg_terminate_backend(pg_backend_pid()) AND ? = 1", {int64_t{1}}));
  // Sent before the server ends the session, or refused: either way it fails.
  Status third = conn().SendQuery("INSERT INTO " + T("piped") + " VALUES (?)", {int64_t{3}});
  auto first = conn().ReceiveRows();
  ASSERT_TRUE(first) << first.error().ToString();
  auto killed = conn().ReceiveRows();
  ASSERT_FALSE(killed);
  EXPECT_EQ(killed.error().code, ErrorCode::kUnavailable) << killed.error().ToString();
  if (third) {
    auto lost = conn().ReceiveRows();
    ASSERT_FALSE(lost);
    EXPECT_EQ(lost.error().code, ErrorCode::kUnavailable) << lost.error().ToString();
  } else {
    EXPECT_EQ(third.error().code, ErrorCode::kUnavailable) << third.error().ToString();
  }
  Rows rows = MustQuery("SELECT id FROM " + T("piped") + " ORDER BY id");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].Int(0), 1);
  // Pipelining works on the new session too.
  ASSERT_TRUE(conn().SendQuery("SELECT CAST(? AS BIGINT)", {int64_t{7}}));
  auto again = conn().ReceiveRows();
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ((*again)[0].Int(0), 7);
}

// WaitForAnswer returns false when the wake descriptor is signalled first
// (the statement still runs), true once the answer is in, and the answer
// is then received as usual.
TEST_F(PostgresServer, WaitForAnswerReturnsOnTheWakeDescriptorOrTheAnswer) {
  const int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(wake, 0);
  ASSERT_TRUE(conn().SendQuery("SELECT CAST(? AS BIGINT) FROM pg_sleep(0.3)", {int64_t{5}}));
  const uint64_t one = 1;
  ASSERT_EQ(write(wake, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  auto woken = conn().WaitForAnswer(wake);
  ASSERT_TRUE(woken) << woken.error().ToString();
  EXPECT_FALSE(*woken);
  uint64_t drained = 0;
  ASSERT_EQ(read(wake, &drained, sizeof drained), static_cast<ssize_t>(sizeof drained));
  auto answered = conn().WaitForAnswer(wake);  // nothing signals now: waits for the answer
  ASSERT_TRUE(answered) << answered.error().ToString();
  EXPECT_TRUE(*answered);
  auto rows = conn().ReceiveRows();
  ASSERT_TRUE(rows) << rows.error().ToString();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Int(0), 5);
  auto none = conn().WaitForAnswer(wake);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kInternal);
  close(wake);
}

TEST_F(PostgresServer, PoolHandsOutIndependentSessions) {
  MustExec("CREATE TABLE " + T("iso") + " (id BIGINT)");
  auto other = db_->Acquire();
  ASSERT_TRUE(other) << other.error().ToString();
  ASSERT_TRUE(conn().Begin());
  MustExec("INSERT INTO " + T("iso") + " VALUES (1)");
  auto seen = (*other)->Query("SELECT COUNT(*) FROM " + T("iso"));
  ASSERT_TRUE(seen);
  EXPECT_EQ((*seen)[0].Int(0), 0);  // uncommitted work is invisible elsewhere
  ASSERT_TRUE(conn().Commit());
  seen = (*other)->Query("SELECT COUNT(*) FROM " + T("iso"));
  ASSERT_TRUE(seen);
  EXPECT_EQ((*seen)[0].Int(0), 1);
}

}  // namespace
}  // namespace kervan::store
