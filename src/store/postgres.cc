// The PostgreSQL backend: one Connection per libpq PGconn, parameters sent
// as text through the extended protocol (PQexecParams), results converted by
// column type.
#include "store/postgres.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <poll.h>

#include <libpq-fe.h>

namespace kervan::store {
namespace {

using core::Error;
using core::ErrorCode;

// Type OIDs from catalog/pg_type_d.h, a server header that libpq-dev lacks.
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kNumericOid = 1700;

constexpr std::string_view kMask = "*****";
constexpr const char* kDefaultConnectTimeoutS = "10";

// ---------------------------------------------------------------- SQL text

bool IsIdentChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '_' ||
         c == '$' || u >= 0x80;
}

// Length of the dollar-quote opening tag ("$$" or "$tag$") at sql[i], or 0
// when the '$' there does not open one ($1, or a '$' inside an identifier).
size_t DollarTagLength(std::string_view sql, size_t i) {
  if (i > 0 && IsIdentChar(sql[i - 1]))
    return 0;
  size_t j = i + 1;
  if (j < sql.size() && sql[j] >= '0' && sql[j] <= '9')
    return 0;
  while (j < sql.size() && sql[j] != '$' && IsIdentChar(sql[j]))
    ++j;
  return (j < sql.size() && sql[j] == '$') ? j - i + 1 : 0;
}

// End (one past) of the quoted run that starts at sql[i] with `quote`; a
// doubled quote stands for itself, and `backslash` also honours \x escapes.
size_t QuotedEnd(std::string_view sql, size_t i, char quote, bool backslash) {
  size_t j = i + 1;
  while (j < sql.size()) {
    if (backslash && sql[j] == '\\') {
      j += 2;
    } else if (sql[j] == quote) {
      if (j + 1 < sql.size() && sql[j + 1] == quote) {
        j += 2;
      } else {
        return j + 1;
      }
    } else {
      ++j;
    }
  }
  return sql.size();
}

// End (one past) of the /* */ comment starting at sql[i]; they nest in PostgreSQL.
size_t BlockCommentEnd(std::string_view sql, size_t i) {
  int depth = 0;
  size_t j = i;
  while (j + 1 < sql.size()) {
    if (sql[j] == '/' && sql[j + 1] == '*') {
      ++depth;
      j += 2;
    } else if (sql[j] == '*' && sql[j + 1] == '/') {
      j += 2;
      if (--depth == 0)
        return j;
    } else {
      ++j;
    }
  }
  return sql.size();
}

std::string Rewrite(std::string_view sql, size_t* placeholders) {
  std::string out;
  out.reserve(sql.size() + 8);
  size_t n = 0;
  size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    size_t end = i + 1;
    if (c == '?') {
      out += '$';
      out += std::to_string(++n);
      ++i;
      continue;
    }
    if (c == '\'') {
      const bool escape_string =
          i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') && (i < 2 || !IsIdentChar(sql[i - 2]));
      end = QuotedEnd(sql, i, '\'', escape_string);
    } else if (c == '"') {
      end = QuotedEnd(sql, i, '"', false);
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      end = sql.find('\n', i);
      if (end == std::string_view::npos)
        end = sql.size();
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      end = BlockCommentEnd(sql, i);
    } else if (c == '$') {
      if (const size_t tag_len = DollarTagLength(sql, i); tag_len > 0) {
        const size_t close = sql.find(sql.substr(i, tag_len), i + tag_len);
        end = close == std::string_view::npos ? sql.size() : close + tag_len;
      }
    }
    out.append(sql.substr(i, end - i));
    i = end;
  }
  *placeholders = n;
  return out;
}

// ---------------------------------------------------------------- DSN masking

bool IsSecretKey(std::string_view key) {
  return key == "password" || key == "sslpassword";
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

struct Span {
  size_t begin, end;
};

std::string ReplaceSpans(std::string_view text, const std::vector<Span>& spans) {
  std::string out;
  size_t at = 0;
  for (const Span& s : spans) {
    out.append(text.substr(at, s.begin - at));
    out.append(kMask);
    at = s.end;
  }
  out.append(text.substr(at));
  return out;
}

// key = value pairs as libpq's conninfo_parse reads them: values are bare
// (backslash escapes) or single-quoted (\' and \\ escapes).
std::string MaskKeyValue(std::string_view dsn) {
  std::vector<Span> spans;
  size_t i = 0;
  const size_t size = dsn.size();
  while (i < size) {
    while (i < size && IsSpace(dsn[i]))
      ++i;
    const size_t key_begin = i;
    while (i < size && !IsSpace(dsn[i]) && dsn[i] != '=')
      ++i;
    const std::string_view key = dsn.substr(key_begin, i - key_begin);
    while (i < size && IsSpace(dsn[i]))
      ++i;
    if (i >= size || dsn[i] != '=') {
      // Malformed (libpq rejects it): the rest may hold a secret that cannot
      // be delimited, so hide all of it.
      if (key_begin < size)
        spans.push_back({key_begin, size});
      break;
    }
    ++i;
    while (i < size && IsSpace(dsn[i]))
      ++i;
    const size_t value_begin = i;
    if (i < size && dsn[i] == '\'') {
      ++i;
      while (i < size && dsn[i] != '\'')
        i += dsn[i] == '\\' ? 2 : 1;
      i = std::min(i + 1, size);
    } else {
      while (i < size && !IsSpace(dsn[i]))
        i += dsn[i] == '\\' ? 2 : 1;
      i = std::min(i, size);
    }
    if (IsSecretKey(key))
      spans.push_back({value_begin, i});
  }
  return ReplaceSpans(dsn, spans);
}

// postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]
// A password with an unencoded '@' or '/' is still masked: userinfo is taken
// to end at the last '@' (over-masking when a query value holds an '@').
std::string MaskUri(std::string_view dsn, size_t authority) {
  std::vector<Span> spans;
  const size_t at = dsn.find_last_of('@');
  if (at != std::string_view::npos && at >= authority) {
    const size_t colon = dsn.find(':', authority);
    if (colon < at)
      spans.push_back({colon + 1, at});
  }
  size_t q = dsn.find('?', at == std::string_view::npos ? authority : at);
  while (q != std::string_view::npos) {
    const size_t key_begin = q + 1;
    const size_t amp = dsn.find('&', key_begin);
    const size_t param_end = amp == std::string_view::npos ? dsn.size() : amp;
    const size_t eq = dsn.find('=', key_begin);
    if (eq < param_end && IsSecretKey(dsn.substr(key_begin, eq - key_begin))) {
      spans.push_back({eq + 1, param_end});
    }
    q = amp;
  }
  return ReplaceSpans(dsn, spans);
}

size_t UriAuthority(std::string_view dsn) {
  for (std::string_view scheme : {"postgresql://", "postgres://"}) {
    if (dsn.substr(0, scheme.size()) == scheme)
      return scheme.size();
  }
  return 0;
}

// ---------------------------------------------------------------- errors

// libpq messages end in "\n" and continue lines with "\n\t"; make one line.
std::string OneLine(const char* text) {
  std::string out;
  for (const char* p = text == nullptr ? "" : text; *p != '\0'; ++p) {
    if (*p == '\n' || *p == '\r' || *p == '\t') {
      if (!out.empty() && out.back() != ' ')
        out += ' ';
    } else {
      out += *p;
    }
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

// Defence in depth: libpq does not quote passwords in its messages, but a
// malformed option value could still end up there.
std::string Scrub(std::string message, const char* password) {
  const std::string_view secret = password == nullptr ? "" : password;
  if (secret.size() < 3)
    return message;
  for (size_t at = message.find(secret); at != std::string::npos;
       at = message.find(secret, at + kMask.size())) {
    message.replace(at, secret.size(), kMask);
  }
  return message;
}

// "host=127.0.0.1 port=5432 dbname=kervan user=kervan" for messages. These
// accessors work on a failed PGconn too and never expose the password.
std::string Target(PGconn* conn) {
  auto field = [](const char* v) { return std::string(v == nullptr || *v == '\0' ? "?" : v); };
  return "host=" + field(PQhost(conn)) + " port=" + field(PQport(conn)) +
         " dbname=" + field(PQdb(conn)) + " user=" + field(PQuser(conn));
}

Error WithSqlState(Error error, std::string_view sqlstate) {
  if (!sqlstate.empty())
    error.details = nlohmann::json{{"sqlstate", std::string(sqlstate)}};
  return error;
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// ---------------------------------------------------------------- values

Result<std::string> ParamText(const Value& value, size_t index) {
  if (const auto* i = std::get_if<int64_t>(&value))
    return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) {
    if (std::isnan(*d))
      return std::string("NaN");
    if (std::isinf(*d))
      return std::string(*d > 0 ? "Infinity" : "-Infinity");
    // Shortest text that reads back as the same double (at most 17 digits):
    // exact for float8 columns, and numeric columns get "0.1", not
    // "0.10000000000000001".
    char buf[32];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *d);
    return std::string(buf, end);
  }
  const auto& s = std::get<std::string>(value);
  if (s.find('\0') != std::string::npos) {
    return core::InvalidArgument("postgres: parameter " + std::to_string(index + 1) +
                                 " holds a NUL byte, which PostgreSQL text cannot store");
  }
  return s;
}

Value ColumnValue(const char* text, int length, Oid type) {
  const char* end = text + length;
  switch (type) {
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid: {
      int64_t v = 0;
      if (std::from_chars(text, end, v).ec == std::errc())
        return v;
      break;
    }
    case kFloat4Oid:
    case kFloat8Oid:
    case kNumericOid: {
      double v = 0;
      const auto [ptr, ec] = std::from_chars(text, end, v);
      if (ec == std::errc() && ptr == end)
        return v;
      // A numeric beyond double's range: strtod gives +-HUGE_VAL or 0.
      if (ec == std::errc::result_out_of_range)
        return std::strtod(text, nullptr);
      break;
    }
    default:
      break;
  }
  return std::string(text, static_cast<size_t>(length));
}

// ---------------------------------------------------------------- connection

class PostgresConnection final : public Connection {
 public:
  // Connects with `dsn` (already validated by OpenPostgres).
  static Result<std::unique_ptr<Connection>> Open(const std::string& dsn) {
    const char* keywords[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
    const char* values[] = {kDefaultConnectTimeoutS, "kervan", dsn.c_str(), nullptr};
    // expand_dbname=1: dsn is expanded in place of "dbname", so settings it
    // holds (connect_timeout included) override the defaults before it.
    PGconn* raw = PQconnectdbParams(keywords, values, 1);
    if (raw == nullptr)
      return core::Unavailable("postgres: cannot allocate a connection");
    std::unique_ptr<PostgresConnection> conn(new PostgresConnection(raw));
    if (PQstatus(raw) != CONNECTION_OK) {
      return core::Unavailable("postgres: cannot connect to " + Target(raw) + ": " +
                               Scrub(OneLine(PQerrorMessage(raw)), PQpass(raw)));
    }
    // NOTICEs (e.g. "relation already exists, skipping") are not errors and
    // would otherwise go to stderr.
    PQsetNoticeProcessor(
        raw, [](void*, const char*) {}, nullptr);
    RETURN_IF_ERROR(conn->Configure());
    return std::unique_ptr<Connection>(std::move(conn));
  }

  ~PostgresConnection() override { PQfinish(conn_); }
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;

  Dialect dialect() const override { return Dialect::kPostgres; }

  Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params) override {
    ASSIGN_OR_RETURN(ResultPtr res, Run(sql, params));
    const std::string_view affected = PQcmdTuples(res.get());
    int64_t n = 0;
    std::from_chars(affected.data(), affected.data() + affected.size(), n);
    return n;
  }

  Result<Rows> Query(std::string_view sql, const std::vector<Value>& params) override {
    ASSIGN_OR_RETURN(ResultPtr res, Run(sql, params));
    Rows rows;
    rows.reserve(static_cast<size_t>(PQntuples(res.get())));
    RETURN_IF_ERROR(EachRow(res.get(), [&rows](Row& row) -> Status {
      rows.push_back(std::move(row));
      return core::Ok();
    }));
    return rows;
  }

  Status QueryEach(std::string_view sql, const std::vector<Value>& params,
                   const std::function<Status(const Row&)>& fn) override {
    ASSIGN_OR_RETURN(ResultPtr res, Run(sql, params));
    return EachRow(res.get(), [&fn](Row& row) { return fn(row); });
  }

  // Pipeline mode is entered on the first SendQuery and left when the last
  // answer is received, so every other call sees a plain connection. Each
  // statement is followed by a Sync: it is a transaction of its own, and
  // its failure aborts nothing after it. A statement new to the session is
  // prepared in the same pipeline (PQsendPrepare) and then executed.
  Status SendQuery(std::string_view sql, const std::vector<Value>& params) override {
    if (pending_.empty()) {
      if (in_transaction_ || InTransaction())
        return core::Internal("postgres: SendQuery inside a transaction");
      RETURN_IF_ERROR(EnsureConnected());
      if (PQenterPipelineMode(conn_) != 1) {
        return core::Internal("postgres: cannot enter pipeline mode: " +
                              OneLine(PQerrorMessage(conn_)));
      }
    } else if (pipeline_broken_) {
      return core::Unavailable("postgres: connection to " + Target(conn_) +
                               " lost with statements pending");
    }
    ASSIGN_OR_RETURN(Bound b, Bind(sql, params));
    Pending sent;
    auto it = prepared_.find(b.text);
    if (it == prepared_.end() && prepared_.size() < kMaxPrepared) {
      std::string name = "kervan_" + std::to_string(next_prepared_++);
      if (PQsendPrepare(conn_, name.c_str(), b.text.c_str(), b.count(), nullptr) != 1)
        return FailSend();
      it = prepared_.emplace(b.text, std::move(name)).first;
      sent.prepared_text = b.text;
    }
    const int queued = it != prepared_.end()
                           ? PQsendQueryPrepared(conn_, it->second.c_str(), b.count(),
                                                 b.values.data(), nullptr, nullptr, 0)
                           // The session's prepared statements are all taken: unnamed.
                           : PQsendQueryParams(conn_, b.text.c_str(), b.count(), nullptr,
                                               b.values.data(), nullptr, nullptr, 0);
    if (queued != 1 || PQpipelineSync(conn_) != 1)
      return FailSend();
    pending_.push_back(std::move(sent));
    return core::Ok();
  }

  Result<Rows> ReceiveRows() override {
    if (pending_.empty())
      return core::Internal("postgres: ReceiveRows: no statement was sent");
    Pending sent = std::move(pending_.front());
    pending_.pop_front();
    Result<Rows> rows = pipeline_broken_ ? Result<Rows>(LostPipeline()) : ReceiveOne(sent);
    if (pending_.empty() && (pipeline_broken_ || PQexitPipelineMode(conn_) != 1))
      ResetAfterPipeline();
    return rows;
  }

  Result<bool> WaitForAnswer(int wake_fd) override {
    if (pending_.empty())
      return core::Internal("postgres: WaitForAnswer: no statement was sent");
    if (pipeline_broken_)
      return true;
    for (;;) {
      // PQisBusy: would PQgetResult wait? It reads nothing itself, so the
      // answer already buffered by PQconsumeInput is seen here.
      if (PQisBusy(conn_) == 0)
        return true;
      std::array<pollfd, 2> fds{{{.fd = PQsocket(conn_), .events = POLLIN, .revents = 0},
                                 {.fd = wake_fd, .events = POLLIN, .revents = 0}}};
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR)
          continue;
        return core::Internal(std::string("postgres: poll: ") + std::strerror(errno));
      }
      if (fds[0].revents != 0 && PQconsumeInput(conn_) != 1)
        return true;  // the connection failed: ReceiveRows reports it
      if (fds[1].revents != 0)
        return false;
    }
  }

  Status ExecScript(std::string_view sql) override {
    RETURN_IF_ERROR(EnsureConnected());
    // The simple-query protocol runs ';'-separated statements in one
    // implicit transaction (unless the script has its own BEGIN/COMMIT) and
    // stops at the first error, which is the result PQexec returns.
    const std::string text(sql);
    ASSIGN_OR_RETURN(ResultPtr res, Check(PQexec(conn_, text.c_str())));
    return core::Ok();
  }

  Status Begin() override { return Simple("BEGIN"); }

  Status Commit() override {
    RETURN_IF_ERROR(EnsureConnected());
    ASSIGN_OR_RETURN(ResultPtr res, Check(PQexec(conn_, "COMMIT")));
    // COMMIT of a transaction that an earlier error aborted "succeeds" with
    // the tag ROLLBACK: the caller must not believe its writes landed.
    if (std::string_view(PQcmdStatus(res.get())) == "ROLLBACK") {
      return core::Internal(
          "postgres: COMMIT rolled back: the transaction had been aborted by an earlier error");
    }
    return core::Ok();
  }

  bool InTransaction() const override {
    PGTransactionStatusType t = PQtransactionStatus(conn_);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
  }

  Status Rollback() override {
    if (PQstatus(conn_) != CONNECTION_OK) {
      // The server ends a lost session's transaction by itself; reconnect so
      // this connection is usable again, and report the rollback as done.
      in_transaction_ = false;
      (void)Reconnect();
      return core::Ok();
    }
    return Simple("ROLLBACK");
  }

 private:
  explicit PostgresConnection(PGconn* conn) : conn_(conn) {}

  Status Configure() {
    ResultPtr res(PQexec(conn_, "SET client_min_messages = warning; SET TIME ZONE 'UTC'"));
    if (res == nullptr || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
      return core::Unavailable("postgres: cannot configure the session on " + Target(conn_) + ": " +
                               OneLine(PQerrorMessage(conn_)));
    }
    return core::Ok();
  }

  Status Reconnect() {
    prepared_.clear();  // a new session has none of them
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK) {
      return core::Unavailable("postgres: cannot reconnect to " + Target(conn_) + ": " +
                               Scrub(OneLine(PQerrorMessage(conn_)), PQpass(conn_)));
    }
    return Configure();
  }

  // A connection that broke outside a transaction (say, the server restarted
  // while it sat in the pool) reconnects before its next statement. One that
  // broke inside a transaction does not: the transaction is gone, and running
  // the rest of it in autocommit would commit half of it. Rollback() resets.
  Status EnsureConnected() {
    if (PQstatus(conn_) == CONNECTION_OK)
      return core::Ok();
    if (in_transaction_) {
      return core::Unavailable("postgres: connection to " + Target(conn_) +
                               " was lost inside a transaction; roll back and retry");
    }
    return Reconnect();
  }

  Status Simple(const char* sql) {
    RETURN_IF_ERROR(EnsureConnected());
    ASSIGN_OR_RETURN(ResultPtr res, Check(PQexec(conn_, sql)));
    return core::Ok();
  }

  // Hands each row of `res` to `fn` in one Row, refilled per row (`fn` may
  // move the columns out).
  template <typename Fn>
  static Status EachRow(PGresult* res, Fn&& fn) {
    const int nrows = PQntuples(res);
    const int ncols = PQnfields(res);
    std::vector<Oid> types(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c)
      types[static_cast<size_t>(c)] = PQftype(res, c);
    Row row;
    for (int r = 0; r < nrows; ++r) {
      row.cols.clear();
      row.cols.reserve(static_cast<size_t>(ncols));
      for (int c = 0; c < ncols; ++c) {
        if (PQgetisnull(res, r, c)) {
          row.cols.emplace_back(std::monostate{});
        } else {
          row.cols.push_back(ColumnValue(PQgetvalue(res, r, c), PQgetlength(res, r, c),
                                         types[static_cast<size_t>(c)]));
        }
      }
      RETURN_IF_ERROR(fn(row));
    }
    return core::Ok();
  }

  // A statement's text ('?' rewritten to $n) and its parameters as text.
  // Types are left to the server (OID 0): it infers each from context, as
  // it does for a quoted literal, so an int64 can fill a boolean or text
  // column just as in SQLite. Where nothing gives a type (SELECT ?), the
  // value comes back as text; write CAST(? AS BIGINT) there.
  struct Bound {
    std::string text;
    std::vector<std::string> texts;   // reserved up front: values point into it
    std::vector<const char*> values;  // nullptr: SQL NULL
    int count() const { return static_cast<int>(values.size()); }
  };
  // Rewrite(), remembered per thread: the same few statements come back
  // again and again, and rewriting the metric writer's (2 KB) was 3% of
  // the server's CPU under log-metric load. Bounded: cleared when full.
  static void RewriteCached(std::string_view sql, std::string* text, size_t* placeholders) {
    struct Rewritten {
      std::string text;
      size_t placeholders = 0;
    };
    struct Hash {
      using is_transparent = void;
      size_t operator()(std::string_view v) const { return std::hash<std::string_view>{}(v); }
    };
    thread_local std::unordered_map<std::string, Rewritten, Hash, std::equal_to<>> cache;
    if (auto it = cache.find(sql); it != cache.end()) {
      *text = it->second.text;
      *placeholders = it->second.placeholders;
      return;
    }
    *text = Rewrite(sql, placeholders);
    if (cache.size() >= kMaxRewritten)
      cache.clear();
    cache.emplace(std::string(sql), Rewritten{*text, *placeholders});
  }
  static constexpr size_t kMaxRewritten = 256;

  static Result<Bound> Bind(std::string_view sql, const std::vector<Value>& params) {
    Bound b;
    size_t placeholders = 0;
    RewriteCached(sql, &b.text, &placeholders);
    if (placeholders != 0 && placeholders != params.size()) {
      return core::Internal("postgres: statement has " + std::to_string(placeholders) +
                            " '?' placeholders but " + std::to_string(params.size()) +
                            " parameters were bound: " + std::string(sql.substr(0, 200)));
    }
    b.texts.reserve(params.size());
    b.values.assign(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      if (std::holds_alternative<std::monostate>(params[i]))
        continue;  // SQL NULL
      ASSIGN_OR_RETURN(std::string t, ParamText(params[i], i));
      b.texts.push_back(std::move(t));
      b.values[i] = b.texts.back().c_str();
    }
    return b;
  }

  Result<ResultPtr> Run(std::string_view sql, const std::vector<Value>& params) {
    RETURN_IF_ERROR(EnsureConnected());
    ASSIGN_OR_RETURN(Bound b, Bind(sql, params));
    if (params.empty()) {
      return Check(PQexecParams(conn_, b.text.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0));
    }
    ASSIGN_OR_RETURN(const std::string* name, Prepared(b.text, params.size()));
    return Check(
        PQexecPrepared(conn_, name->c_str(), b.count(), b.values.data(), nullptr, nullptr, 0));
  }

  // The name of `text` prepared in this session (prepared now if new).
  // Statements with parameters are parsed and analyzed once per connection
  // instead of on every call, and PostgreSQL may settle on a generic plan
  // after five executions (plan_cache_mode): the metric writer's statements
  // spent more of the server's CPU in parse, analysis and planning than in
  // execution. At kMaxPrepared statements the session's are dropped
  // (DEALLOCATE ALL) and preparing starts over.
  Result<const std::string*> Prepared(const std::string& text, size_t params) {
    if (auto it = prepared_.find(text); it != prepared_.end())
      return &it->second;
    if (prepared_.size() >= kMaxPrepared) {
      ASSIGN_OR_RETURN(ResultPtr res, Check(PQexec(conn_, "DEALLOCATE ALL")));
      prepared_.clear();
    }
    std::string name = "kervan_" + std::to_string(next_prepared_++);
    ASSIGN_OR_RETURN(ResultPtr res, Check(PQprepare(conn_, name.c_str(), text.c_str(),
                                                    static_cast<int>(params), nullptr)));
    return &prepared_.emplace(text, std::move(name)).first->second;
  }

  // Takes ownership of `raw` and turns a failed result into an Error.
  Result<ResultPtr> Check(PGresult* raw) {
    ResultPtr res(raw);
    switch (PQtransactionStatus(conn_)) {
      case PQTRANS_IDLE:
        in_transaction_ = false;
        break;
      case PQTRANS_INTRANS:
      case PQTRANS_INERROR:
        in_transaction_ = true;
        break;
      default:  // unknown (connection lost) or busy: keep what we knew
        break;
    }
    if (res == nullptr || PQstatus(conn_) != CONNECTION_OK) {
      std::string message = OneLine(res != nullptr ? PQresultErrorMessage(res.get()) : "");
      if (message.empty())
        message = OneLine(PQerrorMessage(conn_));
      return core::Unavailable("postgres: connection to " + Target(conn_) + " lost: " + message);
    }
    const ExecStatusType status = PQresultStatus(res.get());
    switch (status) {
      case PGRES_COMMAND_OK:
      case PGRES_TUPLES_OK:
      case PGRES_EMPTY_QUERY:
        return res;
      case PGRES_COPY_IN:
      case PGRES_COPY_OUT:
      case PGRES_COPY_BOTH:
        AbandonCopy(status);
        return core::Internal("postgres: COPY FROM STDIN / TO STDOUT is not supported");
      default:
        return ErrorFromResult(res.get());
    }
  }

  Error ErrorFromResult(const PGresult* res) const {
    const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const std::string_view sqlstate = state == nullptr ? "" : state;
    const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    std::string message =
        "postgres: " + OneLine(primary != nullptr ? primary : PQresultErrorMessage(res));
    if (const char* detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL)) {
      message += " (" + OneLine(detail) + ")";
    }
    if (sqlstate == "23505")
      return WithSqlState(core::AlreadyExists(std::move(message)), sqlstate);
    // Class 08: connection exceptions; 57P01-57P03: the server is shutting
    // down or starting up.
    if (sqlstate.substr(0, 2) == "08" || sqlstate == "57P01" || sqlstate == "57P02" ||
        sqlstate == "57P03") {
      return WithSqlState(core::Unavailable(std::move(message)), sqlstate);
    }
    return WithSqlState(core::Internal(std::move(message)), sqlstate);
  }

  // Leaves the COPY sub-protocol so the connection stays usable.
  void AbandonCopy(ExecStatusType status) {
    if (status == PGRES_COPY_IN || status == PGRES_COPY_BOTH) {
      PQputCopyEnd(conn_, "COPY is not supported by this client");
    }
    if (status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      char* buf = nullptr;
      while (PQgetCopyData(conn_, &buf, 0) > 0)
        PQfreemem(buf);
    }
    while (PGresult* r = PQgetResult(conn_))
      PQclear(r);
  }

  // One sent, not yet received statement of the pipeline.
  struct Pending {
    std::string prepared_text;  // prepared along with it (its answer comes first)
  };

  // The answers to `sent`: its prepare's (if any), its own, and its Sync.
  Result<Rows> ReceiveOne(const Pending& sent) {
    std::optional<core::Error> prepare_error;
    if (!sent.prepared_text.empty()) {
      ResultPtr prep(PQgetResult(conn_));
      if (prep == nullptr)
        return BreakPipeline("no answer to a prepare");
      if (PQresultStatus(prep.get()) != PGRES_COMMAND_OK) {
        prepare_error = ErrorFromResult(prep.get());
        prepared_.erase(sent.prepared_text);
      }
      if (ResultPtr end(PQgetResult(conn_)); end != nullptr)
        return BreakPipeline("unexpected answer after a prepare");
    }
    ResultPtr res(PQgetResult(conn_));
    if (res == nullptr || PQstatus(conn_) != CONNECTION_OK)
      return BreakPipeline("no answer to a statement");
    Result<Rows> out = Rows{};
    switch (PQresultStatus(res.get())) {
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK: {
        Rows rows;
        rows.reserve(static_cast<size_t>(PQntuples(res.get())));
        Status read = EachRow(res.get(), [&rows](Row& row) -> Status {
          rows.push_back(std::move(row));
          return core::Ok();
        });
        out = read ? Result<Rows>(std::move(rows)) : Result<Rows>(read.error());
        break;
      }
      case PGRES_PIPELINE_ABORTED:
        out = prepare_error ? *prepare_error
                            : core::Internal("postgres: statement aborted in the pipeline");
        break;
      default:
        out = ErrorFromResult(res.get());
        break;
    }
    if (ResultPtr end(PQgetResult(conn_)); end != nullptr)
      return BreakPipeline("unexpected answer after a statement");
    ResultPtr sync(PQgetResult(conn_));
    if (sync == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC)
      return BreakPipeline("no end of a pipelined transaction");
    return out;
  }

  // The pipeline's state is unknown (lost connection, protocol surprise):
  // every statement not yet received fails, and the connection is reset
  // once the last is received.
  core::Error BreakPipeline(std::string_view what) {
    if (!pipeline_broken_) {
      pipeline_broken_ = true;
      lost_message_ = "postgres: connection to " + Target(conn_) + " lost in a pipeline (" +
                      std::string(what) + "): " + OneLine(PQerrorMessage(conn_));
    }
    return LostPipeline();
  }
  core::Error LostPipeline() const { return core::Unavailable(lost_message_); }

  // A statement that could not be sent is not pending: it fails alone, and
  // so does everything sent before it (the pipeline is broken).
  core::Error FailSend() {
    core::Error error = BreakPipeline("cannot send a statement");
    if (pending_.empty())
      ResetAfterPipeline();
    return error;
  }

  // Unusable as it is: a new session (prepared statements included).
  void ResetAfterPipeline() {
    pipeline_broken_ = false;
    (void)PQexitPipelineMode(conn_);
    (void)Reconnect();
  }

  PGconn* conn_;
  std::deque<Pending> pending_;  // sent in pipeline mode, oldest first
  bool pipeline_broken_ = false;
  std::string lost_message_;
  static constexpr size_t kMaxPrepared = 256;
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
  uint64_t next_prepared_ = 0;
  // Whether the session was inside a transaction block after the last
  // statement whose outcome is known.
  bool in_transaction_ = false;
};

// Rejects a connection string libpq cannot parse. libpq's message may quote
// the offending text, so it is shown only when the string holds no password.
Status ValidateDsn(const std::string& dsn) {
  if (dsn.empty())
    return core::InvalidArgument("postgres: dsn is empty", "dsn");
  // A string with no '=' and no URI scheme is a bare database name to libpq.
  if (dsn.find('=') == std::string::npos && UriAuthority(dsn) == 0)
    return core::Ok();
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &err);
  if (options != nullptr) {
    PQconninfoFree(options);
    return core::Ok();
  }
  const std::string masked = MaskDsn(dsn);
  std::string why = err == nullptr ? "out of memory" : OneLine(err);
  if (err != nullptr)
    PQfreemem(err);
  if (masked != dsn)
    why = "libpq's message is withheld as it may quote the password";
  return core::InvalidArgument("postgres: invalid dsn \"" + masked + "\": " + why, "dsn");
}

}  // namespace

std::string RewritePlaceholders(std::string_view sql) {
  size_t unused = 0;
  return Rewrite(sql, &unused);
}

std::string MaskDsn(std::string_view dsn) {
  const size_t authority = UriAuthority(dsn);
  if (authority > 0)
    return MaskUri(dsn, authority);
  // No '=': libpq takes the whole string as a database name.
  if (dsn.find('=') == std::string_view::npos)
    return std::string(dsn);
  return MaskKeyValue(dsn);
}

Result<std::unique_ptr<Database>> OpenPostgres(const PostgresOptions& options) {
  RETURN_IF_ERROR(ValidateDsn(options.dsn));
  if (options.pool_size == 0) {
    return core::InvalidArgument("postgres: pool_size must be at least 1, got 0", "pool_size");
  }
  { ASSIGN_OR_RETURN(std::unique_ptr<Connection> probe, PostgresConnection::Open(options.dsn)); }
  const std::string dsn = options.dsn;
  ConnectionFactory factory = [dsn]() { return PostgresConnection::Open(dsn); };
  return std::make_unique<Database>(Dialect::kPostgres, "postgres:" + MaskDsn(dsn),
                                    std::move(factory), options.pool_size);
}

}  // namespace kervan::store
