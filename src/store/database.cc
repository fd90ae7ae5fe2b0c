#include "store/database.h"

#include <fmt/format.h>

namespace kervan::store {

std::string_view DialectName(Dialect d) {
  return d == Dialect::kSqlite ? "sqlite" : "postgres";
}

int64_t Row::Int(size_t i) const {
  const Value& v = cols.at(i);
  if (auto p = std::get_if<int64_t>(&v))
    return *p;
  if (auto p = std::get_if<double>(&v))
    return static_cast<int64_t>(*p);
  if (auto p = std::get_if<std::string>(&v))
    return std::strtoll(p->c_str(), nullptr, 10);
  return 0;
}

double Row::Real(size_t i) const {
  const Value& v = cols.at(i);
  if (auto p = std::get_if<double>(&v))
    return *p;
  if (auto p = std::get_if<int64_t>(&v))
    return static_cast<double>(*p);
  if (auto p = std::get_if<std::string>(&v))
    return std::strtod(p->c_str(), nullptr);
  return 0;
}

std::string Row::Text(size_t i) const {
  const Value& v = cols.at(i);
  if (auto p = std::get_if<std::string>(&v))
    return *p;
  if (auto p = std::get_if<int64_t>(&v))
    return std::to_string(*p);
  if (auto p = std::get_if<double>(&v))
    return fmt::format("{}", *p);
  return {};
}

PooledConnection::~PooledConnection() {
  if (owner_ != nullptr)
    owner_->Release(std::move(conn_));
}

Database::Database(Dialect dialect, std::string description, ConnectionFactory factory,
                   size_t pool_size)
    : dialect_(dialect),
      description_(std::move(description)),
      factory_(std::move(factory)),
      pool_size_(pool_size == 0 ? 1 : pool_size) {}

Database::~Database() = default;

Status Connection::QueryEach(std::string_view sql, const std::vector<Value>& params,
                             const std::function<Status(const Row&)>& fn) {
  ASSIGN_OR_RETURN(Rows rows, Query(sql, params));
  for (const Row& row : rows)
    RETURN_IF_ERROR(fn(row));
  return core::Ok();
}

Status Connection::SendQuery(std::string_view sql, const std::vector<Value>& params) {
  sent_.push_back(Query(sql, params));
  return core::Ok();
}

Result<Rows> Connection::ReceiveRows() {
  if (sent_.empty())
    return core::Internal("ReceiveRows: no statement was sent");
  Result<Rows> rows = std::move(sent_.front());
  sent_.pop_front();
  return rows;
}

Result<bool> Connection::WaitForAnswer(int /*wake_fd*/) {
  if (sent_.empty())
    return core::Internal("WaitForAnswer: no statement was sent");
  return true;
}

Result<std::optional<PooledConnection>> Database::TryAcquire() {
  std::unique_lock lock(mu_);
  if (idle_.empty() && out_ >= pool_size_)
    return std::optional<PooledConnection>();
  ++out_;
  ASSIGN_OR_RETURN(PooledConnection conn, TakeReserved(lock));
  return std::optional<PooledConnection>(std::move(conn));
}

Result<PooledConnection> Database::Acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !idle_.empty() || out_ < pool_size_; });
  ++out_;
  return TakeReserved(lock);
}

Result<PooledConnection> Database::TakeReserved(std::unique_lock<std::mutex>& lock) {
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return PooledConnection(this, std::move(conn));
  }
  lock.unlock();
  auto opened = factory_();
  if (!opened) {
    std::lock_guard relock(mu_);
    --out_;
    cv_.notify_one();
    return std::move(opened).error();
  }
  return PooledConnection(this, std::move(opened).value());
}

void Database::Release(std::unique_ptr<Connection> conn) {
  if (conn && conn->InTransaction() && !conn->Rollback())
    conn.reset();
  std::lock_guard lock(mu_);
  --out_;
  if (conn)
    idle_.push_back(std::move(conn));
  cv_.notify_one();
}

Status InTransaction(Connection& conn, const std::function<Status(Connection&)>& fn) {
  RETURN_IF_ERROR(conn.Begin());
  Status s = fn(conn);
  if (!s) {
    (void)conn.Rollback();
    return s;
  }
  Status c = conn.Commit();
  if (!c) {
    (void)conn.Rollback();
    return c;
  }
  return core::Ok();
}

}  // namespace kervan::store
