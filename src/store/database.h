// The database seam: a small SQL interface with two backends (SQLite, the
// embedded default, and PostgreSQL through libpq), a connection pool, and
// transactions. Part of store's public header (store/store.h).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/core.h"

namespace kervan::store {

using core::Result;
using core::Status;

enum class Dialect { kSqlite, kPostgres };
std::string_view DialectName(Dialect d);

// A bound parameter or a column value. Integers are 64-bit; text is UTF-8.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

struct Row {
  std::vector<Value> cols;

  bool IsNull(size_t i) const { return std::holds_alternative<std::monostate>(cols.at(i)); }
  // Integer column (text holding an integer is converted; NULL gives 0).
  int64_t Int(size_t i) const;
  double Real(size_t i) const;
  // Text column (NULL gives ""; numbers are formatted).
  std::string Text(size_t i) const;
};
using Rows = std::vector<Row>;

// One connection. Not thread-safe: one thread at a time (the pool enforces it).
//
// SQL text uses '?' placeholders for both backends; the PostgreSQL backend
// rewrites them to $1..$n (outside quoted literals). Write portable SQL:
// INSERT ... ON CONFLICT, standard types, no backend-only functions.
//
// Errors: a unique/primary-key violation is kAlreadyExists; a lost or refused
// connection is kUnavailable; anything else is kInternal with the backend's
// message.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual Dialect dialect() const = 0;

  // Runs one statement; returns the number of rows it changed.
  virtual Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Runs one statement and returns all its rows.
  virtual Result<Rows> Query(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Runs one statement and calls `fn` with each row as it is read, without
  // materialising them all (large scans such as a metric's history). The Row
  // passed to `fn` is reused between calls: copy what must outlive the call.
  // Stops at the first error `fn` returns and returns it. The default
  // implementation reads all rows with Query() first.
  virtual Status QueryEach(std::string_view sql, const std::vector<Value>& params,
                           const std::function<Status(const Row&)>& fn);
  // Runs several ';'-separated statements without parameters (migrations).
  virtual Status ExecScript(std::string_view sql) = 0;

  // Pipelining. SendQuery queues
  // one statement, run as a transaction of its own (never call it between
  // Begin and Commit), and returns without waiting for it; ReceiveRows
  // returns the rows, or the error, of the oldest statement sent and not yet
  // received. Statements run in the order sent, and one's failure does not
  // stop the next. Until every sent statement is received, call nothing else
  // on the connection. A lost connection fails every statement not yet
  // received with kUnavailable, whether or not it committed.
  // PostgreSQL: libpq's pipeline mode, so the server runs a statement while
  // the caller builds the next one and while the previous answer travels,
  // and statements sent on two connections run at once. The default
  // (SQLite) runs the statement in SendQuery.
  virtual Status SendQuery(std::string_view sql, const std::vector<Value>& params);
  virtual Result<Rows> ReceiveRows();
  // Waits until ReceiveRows would return without waiting for the server
  // (true; also when the connection failed, which ReceiveRows then
  // reports), or until the file descriptor `wake_fd` (an eventfd, a pipe)
  // is readable (false; the caller drains it). For a caller that sends its
  // next statement when work arrives or the previous answer does, whichever
  // comes first. Call it only with a statement sent and not received. The
  // default (SQLite, whose SendQuery ran the statement) returns true.
  virtual Result<bool> WaitForAnswer(int wake_fd);

  // Transactions. Begin() takes the write lock where the backend has one
  // (SQLite: BEGIN IMMEDIATE) so a transaction never fails half-way on a
  // lock upgrade.
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual Status Rollback() = 0;
  // True between Begin() and Commit()/Rollback() (also after a failed
  // statement inside the transaction).
  virtual bool InTransaction() const = 0;

 private:
  std::deque<Result<Rows>> sent_;  // the default pipeline's answers, oldest first
};

class Database;

// A connection borrowed from a Database's pool; returned on destruction. A
// connection given back inside a transaction is rolled back first (and
// dropped if that fails), so the next borrower never inherits one.
class PooledConnection {
 public:
  PooledConnection(Database* owner, std::unique_ptr<Connection> conn)
      : owner_(owner), conn_(std::move(conn)) {}
  PooledConnection(PooledConnection&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)), conn_(std::move(other.conn_)) {}
  PooledConnection& operator=(PooledConnection&&) = delete;
  ~PooledConnection();

  Connection* operator->() { return conn_.get(); }
  Connection& operator*() { return *conn_; }
  // Drops the connection instead of returning it (after a connection error).
  void Discard() { conn_.reset(); }

 private:
  Database* owner_;
  std::unique_ptr<Connection> conn_;
};

using ConnectionFactory = std::function<Result<std::unique_ptr<Connection>>()>;

// A pool of connections to one database. Thread-safe. Backends are created
// by OpenSqlite/OpenPostgres (store.h); nothing else names a backend.
class Database {
 public:
  Database(Dialect dialect, std::string description, ConnectionFactory factory, size_t pool_size);
  ~Database();

  Dialect dialect() const { return dialect_; }
  // Where it points, secrets masked: "sqlite:/var/lib/kervan/kervan.db".
  const std::string& description() const { return description_; }

  // Borrows a connection, opening one when none is idle and fewer than
  // pool_size are out; otherwise waits for one to come back.
  Result<PooledConnection> Acquire();
  // Acquire without waiting: nullopt when it would have to wait. For work
  // that can use a second connection but must not wait for one (a request
  // already holding a connection would otherwise deadlock a full pool).
  Result<std::optional<PooledConnection>> TryAcquire();
  // Opens a connection outside the pool, owned by the caller (the event-log
  // writer keeps one for its whole life).
  Result<std::unique_ptr<Connection>> OpenDedicated() { return factory_(); }

 private:
  friend class PooledConnection;
  void Release(std::unique_ptr<Connection> conn);
  // With mu_ held by `lock` and one connection counted in out_: an idle one,
  // or a new one opened outside the lock.
  Result<PooledConnection> TakeReserved(std::unique_lock<std::mutex>& lock);

  Dialect dialect_;
  std::string description_;
  ConnectionFactory factory_;
  size_t pool_size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  size_t out_ = 0;
};

// Runs `fn` between Begin() and Commit(); rolls back when `fn` or the commit
// fails and returns that error.
Status InTransaction(Connection& conn, const std::function<Status(Connection&)>& fn);

}  // namespace kervan::store
