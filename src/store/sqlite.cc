#include "store/sqlite.h"

#include <map>

#include <sqlite3.h>

#include <fmt/format.h>

#include "store/sqlite_wal_vfs.h"

namespace kervan::store {
namespace {

using core::Error;
using core::ErrorCode;

Error SqliteError(sqlite3* db, int rc, std::string_view what) {
  int ext = db ? sqlite3_extended_errcode(db) : rc;
  std::string msg =
      fmt::format("sqlite: {}: {}", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
    return core::AlreadyExists(msg);
  }
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
    return core::Unavailable(msg);
  return core::Internal(msg);
}

class SqliteConnection final : public Connection {
 public:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  ~SqliteConnection() override {
    for (auto& [_, stmt] : cache_)
      sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  Dialect dialect() const override { return Dialect::kSqlite; }

  Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params) override {
    int64_t changes = 0;
    RETURN_IF_ERROR(Run(sql, params, nullptr));
    changes = sqlite3_changes64(db_);
    return changes;
  }

  Result<Rows> Query(std::string_view sql, const std::vector<Value>& params) override {
    Rows rows;
    RETURN_IF_ERROR(Run(sql, params, &rows));
    return rows;
  }

  Status QueryEach(std::string_view sql, const std::vector<Value>& params,
                   const std::function<Status(const Row&)>& fn) override {
    return Run(sql, params, nullptr, &fn);
  }

  Status ExecScript(std::string_view sql) override {
    char* err = nullptr;
    std::string text(sql);
    int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return core::Internal("sqlite: script: " + msg);
    }
    return core::Ok();
  }

  Status Begin() override { return Run("BEGIN IMMEDIATE", {}, nullptr); }
  Status Commit() override { return Run("COMMIT", {}, nullptr); }
  Status Rollback() override { return Run("ROLLBACK", {}, nullptr); }
  bool InTransaction() const override { return sqlite3_get_autocommit(db_) == 0; }

 private:
  Result<sqlite3_stmt*> Prepare(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end())
      return it->second;
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK)
      return SqliteError(db_, rc, "prepare");
    if (cache_.size() > 256) {  // bound the cache; ad-hoc SQL should not grow it forever
      for (auto& [_, s] : cache_)
        sqlite3_finalize(s);
      cache_.clear();
    }
    cache_.emplace(std::string(sql), stmt);
    return stmt;
  }

  // Collects the rows into `rows`, or hands each to `each` (one Row reused),
  // or neither.
  Status Run(std::string_view sql, const std::vector<Value>& params, Rows* rows,
             const std::function<Status(const Row&)>* each = nullptr) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    struct Reset {
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{stmt};
    if (static_cast<int>(params.size()) != sqlite3_bind_parameter_count(stmt)) {
      return core::Internal(fmt::format("sqlite: statement wants {} parameters, got {}",
                                        sqlite3_bind_parameter_count(stmt), params.size()));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      int idx = static_cast<int>(i) + 1;
      int rc = std::visit(
          [&](const auto& v) -> int {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>)
              return sqlite3_bind_null(stmt, idx);
            else if constexpr (std::is_same_v<T, int64_t>)
              return sqlite3_bind_int64(stmt, idx, v);
            else if constexpr (std::is_same_v<T, double>)
              return sqlite3_bind_double(stmt, idx, v);
            else
              // SQLITE_STATIC: `params` outlives the statement's use of it
              // (Reset clears the bindings before Run returns).
              return sqlite3_bind_text64(stmt, idx, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
          },
          params[i]);
      if (rc != SQLITE_OK)
        return SqliteError(db_, rc, "bind");
    }
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE)
        return core::Ok();
      if (rc != SQLITE_ROW)
        return SqliteError(db_, rc, "step");
      if (rows == nullptr && each == nullptr)
        continue;
      Row row_storage;
      Row& row = each != nullptr ? reused_ : row_storage;
      row.cols.clear();
      int n = sqlite3_column_count(stmt);
      row.cols.reserve(n);
      for (int c = 0; c < n; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_NULL:
            row.cols.emplace_back(std::monostate{});
            break;
          case SQLITE_INTEGER:
            row.cols.emplace_back(int64_t{sqlite3_column_int64(stmt, c)});
            break;
          case SQLITE_FLOAT:
            row.cols.emplace_back(sqlite3_column_double(stmt, c));
            break;
          default: {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
            row.cols.emplace_back(std::string(p ? p : "", sqlite3_column_bytes(stmt, c)));
          }
        }
      }
      if (each != nullptr)
        RETURN_IF_ERROR((*each)(row));
      else
        rows->push_back(std::move(row));
    }
  }

  sqlite3* db_;
  Row reused_;  // QueryEach's row, kept to reuse its column vector
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

Result<std::unique_ptr<Connection>> Connect(const SqliteOptions& options) {
  sqlite3* db = nullptr;
  // WAL writes go through the coalescing VFS (one write() per commit instead
  // of two per page); see sqlite_wal_vfs.h.
  const char* vfs = CoalescingWalVfsName();
  int rc = sqlite3_open_v2(options.path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           *vfs == '\0' ? nullptr : vfs);
  if (rc != SQLITE_OK) {
    Error e = core::Unavailable(fmt::format("sqlite: cannot open {}: {}", options.path,
                                            db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close_v2(db);
    return e;
  }
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  auto conn = std::make_unique<SqliteConnection>(db);
  // WAL lets readers proceed while the writer commits; synchronous=FULL makes
  // each commit durable (fsync of the WAL) before it returns.
  RETURN_IF_ERROR(conn->ExecScript(
      fmt::format("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                  "PRAGMA mmap_size={};",
                  options.mmap_bytes)));
  return std::unique_ptr<Connection>(std::move(conn));
}

}  // namespace

Result<std::unique_ptr<Database>> OpenSqlite(const SqliteOptions& options) {
  if (options.path.empty() || options.path == ":memory:") {
    return core::InvalidArgument("store.sqlite.path: must be a file path", "store.sqlite.path");
  }
  // Open once now so a bad path fails at start-up, not on first use.
  ASSIGN_OR_RETURN(auto probe, Connect(options));
  probe.reset();
  SqliteOptions copy = options;
  return std::make_unique<Database>(
      Dialect::kSqlite, "sqlite:" + options.path, [copy] { return Connect(copy); },
      options.pool_size);
}

}  // namespace kervan::store
