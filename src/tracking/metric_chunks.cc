// Metric points stored as text: per-key chunks (metric_chunks, migration
// 0014) and per-write batches (metric_batches, migration 0015), compacted
// into chunks. See internal.h.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "tracking/internal.h"

namespace kervan::tracking::internal {
namespace {

using store::Connection;
using store::Value;

// Rows per multi-row INSERT, largest first (power-of-two sizes, so few
// distinct statements are prepared and cached). 256 rows x 6 columns stays
// far below both backends' parameter limits.
constexpr size_t kMaxChunkRows = 256;
constexpr size_t kMaxUpsertRows = 256;

uint64_t Magnitude(int64_t v) {
  return v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
}

// Writes `v`, or "+" and its difference from `prev` when that is shorter
// (see internal.h), and returns the end. At most 21 characters.
char* EncodeField(char* p, int64_t v, const int64_t* prev) {
  int64_t d = 0;
  if (prev != nullptr && !__builtin_sub_overflow(v, *prev, &d) &&
      Magnitude(d) < Magnitude(v) / 10) {
    *p++ = '+';
    return std::to_chars(p, p + 20, d).ptr;
  }
  return std::to_chars(p, p + 20, v).ptr;
}

// "step,timestamp,value;" with the value's shortest round-trip form and,
// after the first point of a text (`prev` set), the step and timestamp
// relative to the point before where that is shorter. Formatted on the
// stack and appended once.
void EncodePoint(std::string& out, const MetricPoint& m, const MetricPoint* prev) {
  // Each field gets the most characters it can take: an int64 with a "+"
  // 21, the shortest round-trip form of a double 24.
  char buf[21 + 1 + 21 + 1 + 24 + 1];
  char* p = EncodeField(buf, m.step, prev != nullptr ? &prev->step : nullptr);
  *p++ = ',';
  p = EncodeField(p, m.timestamp, prev != nullptr ? &prev->timestamp : nullptr);
  *p++ = ',';
  if (std::isnan(m.value)) {
    p = std::copy_n("nan", 3, p);
  } else if (std::isinf(m.value)) {
    p = m.value > 0 ? std::copy_n("inf", 3, p) : std::copy_n("-inf", 4, p);
  } else {
    p = std::to_chars(p, p + 24, m.value).ptr;
  }
  *p++ = ';';
  out.append(buf, p);
}

// MLflow's order for the latest point: the greatest (step, timestamp,
// value), NaN below every number.
bool Later(const StoredPoint& a, const StoredPoint& b) {
  if (a.step != b.step)
    return a.step > b.step;
  if (a.timestamp != b.timestamp)
    return a.timestamp > b.timestamp;
  if (std::isnan(b.value))
    return !std::isnan(a.value);
  return !std::isnan(a.value) && a.value > b.value;
}

core::Error Corrupt(std::string_view text, size_t at) {
  return core::Internal(
      fmt::format("metric_chunks: malformed points at offset {} of {} bytes", at, text.size()));
}

// History order: step, then timestamp, then value with NaN (stored as value
// 0 with is_nan 1 in metric_points) after the number 0: the order of the
// index metric_points_run_key, which get-history followed before chunks.
bool HistoryBefore(const StoredPoint& a, const StoredPoint& b) {
  if (a.step != b.step)
    return a.step < b.step;
  if (a.timestamp != b.timestamp)
    return a.timestamp < b.timestamp;
  const bool an = std::isnan(a.value), bn = std::isnan(b.value);
  const double av = an ? 0.0 : a.value, bv = bn ? 0.0 : b.value;
  if (av != bv)
    return av < bv;
  return !an && bn;
}

// A stored row is replaced only by a later point; NaN compares lowest
// through (1 - is_nan, value).
constexpr std::string_view kLatestOnConflict =
    " ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value, is_nan = "
    "excluded.is_nan, ts = excluded.ts, step = excluded.step WHERE (excluded.step, "
    "excluded.ts, 1 - excluded.is_nan, excluded.value) > (latest_metrics.step, "
    "latest_metrics.ts, 1 - latest_metrics.is_nan, latest_metrics.value)";

// The latest point of `chunks` per (run, key): a multi-row upsert may not
// touch a row twice. Sorted by (run, key): every upsert locks its rows in
// that one order, so concurrent ones (the metric writer's statement, a
// log-batch with params in the event log's transaction, another server's
// writer) wait for each other instead of deadlocking.
std::vector<const PointChunk*> LatestPerRunKey(const std::vector<const PointChunk*>& chunks) {
  struct RunKeyHash {
    size_t operator()(const std::pair<int64_t, std::string_view>& k) const {
      return std::hash<std::string_view>()(k.second) ^
             (static_cast<size_t>(k.first) * 0x9e3779b97f4a7c15ULL);
    }
  };
  std::unordered_map<std::pair<int64_t, std::string_view>, size_t, RunKeyHash> index;
  std::vector<const PointChunk*> rows;
  rows.reserve(chunks.size());
  for (const PointChunk* c : chunks) {
    auto [it, added] = index.try_emplace({c->run_pk, c->key}, rows.size());
    if (added)
      rows.push_back(c);
    else if (Later(c->latest, rows[it->second]->latest))
      rows[it->second] = c;
  }
  std::sort(rows.begin(), rows.end(), [](const PointChunk* a, const PointChunk* b) {
    return a->run_pk != b->run_pk ? a->run_pk < b->run_pk : a->key < b->key;
  });
  return rows;
}

// A PostgreSQL array literal's element, quoted.
void AppendArrayText(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    if (ch == '"' || ch == '\\')
      out += '\\';
    out += ch;
  }
  out += '"';
}

// PostgreSQL: latest_metrics rows as six array parameters, for
// "SELECT * FROM unnest(...)" (kLatestFromArrays): one statement for any
// number of rows, where VALUES lists of up to 1536 parameters were parsed
// and planned on every call.
constexpr std::string_view kLatestFromArrays =
    "SELECT * FROM unnest(CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS DOUBLE "
    "PRECISION[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]))";
std::vector<Value> LatestArrays(const std::vector<const PointChunk*>& rows) {
  std::string pks = "{", keys = "{", values = "{", nans = "{", tss = "{", steps = "{";
  for (size_t i = 0; i < rows.size(); ++i) {
    const PointChunk& c = *rows[i];
    if (i > 0) {
      for (std::string* a : {&pks, &keys, &values, &nans, &tss, &steps})
        *a += ',';
    }
    AppendInt(pks, c.run_pk);
    AppendArrayText(keys, c.key);
    const double v = c.latest.value;
    if (std::isnan(v)) {
      values += '0';  // stored as 0 with is_nan 1
    } else if (std::isinf(v)) {
      values += v > 0 ? "Infinity" : "-Infinity";
    } else {
      char buf[32];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
      (void)ec;  // any double's shortest form fits in 32 characters
      values.append(buf, end);
    }
    nans += std::isnan(v) ? '1' : '0';
    AppendInt(tss, c.latest.timestamp);
    AppendInt(steps, c.latest.step);
  }
  std::vector<Value> out;
  for (std::string* a : {&pks, &keys, &values, &nans, &tss, &steps}) {
    *a += '}';
    out.emplace_back(std::move(*a));
  }
  return out;
}

}  // namespace

Status ExecMultiRow(Connection& conn, size_t rows, size_t width, size_t max_rows,
                    std::string_view head, std::string_view tail,
                    const std::function<void(std::vector<Value>&, size_t)>& append) {
  std::string tuple = "(";
  for (size_t c = 0; c < width; ++c)
    tuple += c == 0 ? "?" : ", ?";
  tuple += ')';
  std::vector<Value> params;
  std::string sql;
  size_t i = 0;
  while (i < rows) {
    size_t slice = max_rows;
    while (slice > rows - i)
      slice /= 2;
    sql.assign(head);
    params.clear();
    params.reserve(slice * width);
    for (size_t j = 0; j < slice; ++j) {
      if (j > 0)
        sql += ", ";
      sql += tuple;
      append(params, i + j);
    }
    sql += tail;
    RETURN_IF_ERROR(conn.Exec(sql, params));
    i += slice;
  }
  return core::Ok();
}

namespace {

// One integer field of a point: absolute, or "+" and the difference from
// the previous point's (`prev`, null for a text's first point). Returns
// the end of the field, or null when it is malformed or overflows.
const char* DecodeField(const char* p, const char* end, const int64_t* prev, int64_t& out) {
  const bool relative = p != end && *p == '+';
  if (relative && prev == nullptr)
    return nullptr;
  auto r = std::from_chars(p + (relative ? 1 : 0), end, out);
  if (r.ec != std::errc())
    return nullptr;
  if (relative && __builtin_add_overflow(*prev, out, &out))
    return nullptr;
  return r.ptr;
}

}  // namespace

Status DecodePoints(std::string_view text, std::vector<StoredPoint>& out) {
  const char* p = text.data();
  const char* const end = p + text.size();
  StoredPoint prev;
  bool first = true;  // of this text: its fields are absolute
  while (p != end) {
    StoredPoint s;
    const char* q = DecodeField(p, end, first ? nullptr : &prev.step, s.step);
    if (q == nullptr || q == end || *q != ',')
      return Corrupt(text, static_cast<size_t>(p - text.data()));
    q = DecodeField(q + 1, end, first ? nullptr : &prev.timestamp, s.timestamp);
    if (q == nullptr || q == end || *q != ',')
      return Corrupt(text, static_cast<size_t>(p - text.data()));
    // from_chars reads "nan", "inf" and "-inf" as well as numbers.
    auto r = std::from_chars(q + 1, end, s.value);
    if (r.ec != std::errc() || r.ptr == end || *r.ptr != ';')
      return Corrupt(text, static_cast<size_t>(p - text.data()));
    out.push_back(s);
    prev = s;
    first = false;
    p = r.ptr + 1;
  }
  return core::Ok();
}

std::vector<PointChunk> EncodeChunks(int64_t run_pk, const std::vector<MetricPoint>& points) {
  // First each point's chunk, then the texts, each reserved once. Clients
  // log either the points of one key together or one point of each key per
  // step, in the same key order every step: the last point's chunk, then
  // the chunk that followed that one the last time, are tried before the
  // hash map (half of this function's time with 100 keys per step).
  constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  std::vector<PointChunk> chunks;
  std::vector<uint32_t> chunk_of(points.size());
  std::vector<uint32_t> next;  // per chunk
  std::vector<size_t> counts;  // per chunk
  std::unordered_map<std::string_view, uint32_t> index;
  uint32_t prev = kNone;
  for (size_t i = 0; i < points.size(); ++i) {
    const std::string& key = points[i].key;
    uint32_t at = kNone;
    if (prev != kNone) {
      if (chunks[prev].key == key)
        at = prev;
      else if (next[prev] != kNone && chunks[next[prev]].key == key)
        at = next[prev];
    }
    if (at == kNone) {
      auto [it, added] = index.try_emplace(key, static_cast<uint32_t>(chunks.size()));
      if (added) {
        chunks.push_back({.run_pk = run_pk, .key = key});
        next.push_back(kNone);
        counts.push_back(0);
      }
      at = it->second;
    }
    if (prev != kNone)
      next[prev] = at;
    chunk_of[i] = at;
    ++counts[at];
    prev = at;
  }
  // Most points take fewer than 32 bytes.
  for (size_t c = 0; c < chunks.size(); ++c)
    chunks[c].text.reserve(counts[c] * 32);
  // Per chunk, its last point so far: the next one is written relative to it.
  std::vector<const MetricPoint*> last(chunks.size(), nullptr);
  for (size_t i = 0; i < points.size(); ++i) {
    const MetricPoint& m = points[i];
    PointChunk& c = chunks[chunk_of[i]];
    const StoredPoint p{.step = m.step, .timestamp = m.timestamp, .value = m.value};
    if (c.n == 0 || Later(p, c.latest))
      c.latest = p;
    ++c.n;
    EncodePoint(c.text, m, last[chunk_of[i]]);
    last[chunk_of[i]] = &m;
  }
  return chunks;
}

Status InsertChunks(Connection& conn, const std::vector<const PointChunk*>& chunks) {
  return ExecMultiRow(conn, chunks.size(), 4, kMaxChunkRows,
                      "INSERT INTO metric_chunks (run_pk, key, n, points) VALUES ", "",
                      [&chunks](std::vector<Value>& params, size_t i) {
                        const PointChunk& c = *chunks[i];
                        params.emplace_back(c.run_pk);
                        params.emplace_back(c.key);
                        params.emplace_back(c.n);
                        params.emplace_back(c.text);
                      });
}

Status UpdateLatest(Connection& conn, const std::vector<const PointChunk*>& chunks) {
  const std::vector<const PointChunk*> rows = LatestPerRunKey(chunks);
  if (conn.dialect() == store::Dialect::kPostgres) {
    static const std::string sql =
        fmt::format("INSERT INTO latest_metrics (run_pk, key, value, is_nan, ts, step) {}{}",
                    kLatestFromArrays, kLatestOnConflict);
    RETURN_IF_ERROR(conn.Exec(sql, LatestArrays(rows)));
    return core::Ok();
  }
  return ExecMultiRow(conn, rows.size(), 6, kMaxUpsertRows,
                      "INSERT INTO latest_metrics (run_pk, key, value, is_nan, ts, step) VALUES ",
                      kLatestOnConflict, [&rows](std::vector<Value>& params, size_t i) {
                        const PointChunk& c = *rows[i];
                        const bool nan = std::isnan(c.latest.value);
                        params.emplace_back(c.run_pk);
                        params.emplace_back(c.key);
                        params.emplace_back(nan ? 0.0 : c.latest.value);
                        params.emplace_back(int64_t{nan});
                        params.emplace_back(c.latest.timestamp);
                        params.emplace_back(c.latest.step);
                      });
}

namespace {

// The statement of StoreForActiveRuns for `rows` and its parameters.
const std::string& StoreStatement(const std::vector<BatchRow>& rows,
                                  const std::vector<const PointChunk*>& chunks,
                                  std::vector<Value>& params) {
  // The batch texts are parameters of their own, in an ARRAY[...]
  // constructor padded with NULLs to a power of two (few distinct
  // statements to prepare): as elements of one TEXT[] literal they were
  // escaped here and parsed back by array_in, a tenth of the writer
  // backend's CPU under log-batch load. unnest pads the shorter arrays with
  // NULLs, and a NULL run_pk matches no active run.
  size_t slots = 1;
  while (slots < rows.size())
    slots *= 2;
  std::string pks = PgIntArray(rows.size(), [&](size_t i) { return rows[i].run_pk; });
  std::string ns = PgIntArray(rows.size(), [&](size_t i) { return rows[i].n; });
  params.clear();
  params.reserve(slots + 9);
  params.emplace_back(pks);  // the runs whose stage is read
  params.emplace_back(std::move(pks));
  params.emplace_back(std::move(ns));
  for (const BatchRow& r : rows)
    params.emplace_back(*r.text);
  params.resize(3 + slots);  // NULLs
  for (Value& v : LatestArrays(LatestPerRunKey(chunks)))
    params.push_back(std::move(v));
  // Data-modifying CTEs: all run in one snapshot, and the statement is its
  // own transaction. The runs' stages are read once ("stages"), so the
  // batches and the latest values go to the same runs, the ones answered
  // active. "= ANY(ARRAY(SELECT ...))" is an init plan evaluated once and
  // a filter: an IN subquery was planned as a hash join per insert, and
  // the texts joined to their rows by position as another, which together
  // cost the writer's backend about a third of its CPU per 4-row statement
  // (pgbench, synchronous_commit off: 0.21 against 0.15 ms).
  thread_local std::map<size_t, std::string> statements;  // by slots
  std::string& sql = statements[slots];
  if (sql.empty()) {
    std::string texts;
    for (size_t i = 0; i < slots; ++i)
      texts += i > 0 ? ", CAST(? AS TEXT)" : "CAST(? AS TEXT)";
    constexpr std::string_view kActive =
        "= ANY(ARRAY(SELECT run_pk FROM stages WHERE lifecycle_stage = 'active'))";
    sql = fmt::format(
        "WITH stages AS (SELECT run_pk, lifecycle_stage FROM runs WHERE run_pk = ANY(CAST(? AS "
        "BIGINT[]))), "
        "batches AS (INSERT INTO metric_batches (run_pk, n, points) SELECT g.run_pk, g.n, "
        "g.points FROM unnest(CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), ARRAY[{}]) AS g(run_pk, "
        "n, points) WHERE g.n > 0 AND g.run_pk {}), "
        "latest AS (INSERT INTO latest_metrics (run_pk, key, value, is_nan, ts, step) SELECT * "
        "FROM ({}) AS l(run_pk, key, value, is_nan, ts, step) WHERE l.run_pk {}{}) "
        "SELECT run_pk, lifecycle_stage FROM stages",
        texts, kActive, kLatestFromArrays, kActive, kLatestOnConflict);
  }
  return sql;
}

}  // namespace

Result<std::map<int64_t, std::string>> StoreForActiveRuns(
    Connection& conn, const std::vector<BatchRow>& rows,
    const std::vector<const PointChunk*>& chunks) {
  std::vector<Value> params;
  const std::string& sql = StoreStatement(rows, chunks, params);
  std::map<int64_t, std::string> stages;
  RETURN_IF_ERROR(conn.QueryEach(sql, params, [&](const store::Row& r) -> Status {
    stages[r.Int(0)] = r.Text(1);
    return core::Ok();
  }));
  return stages;
}

Status SendStore(Connection& conn, const std::vector<BatchRow>& rows,
                 const std::vector<const PointChunk*>& chunks) {
  std::vector<Value> params;
  const std::string& sql = StoreStatement(rows, chunks, params);
  return conn.SendQuery(sql, params);
}

Result<std::map<int64_t, std::string>> ReceiveStore(Connection& conn) {
  ASSIGN_OR_RETURN(store::Rows rows, conn.ReceiveRows());
  std::map<int64_t, std::string> stages;
  for (const store::Row& r : rows)
    stages[r.Int(0)] = r.Text(1);
  return stages;
}

std::string JoinChunks(const std::vector<PointChunk>& chunks) {
  size_t size = 0;
  for (const PointChunk& c : chunks)
    size += c.key.size() + c.text.size() + 2;
  std::string out;
  out.reserve(size);
  for (const PointChunk& c : chunks) {
    out += c.key;
    out += '\t';
    out += c.text;
    out += '\n';
  }
  return out;
}

Status ForEachSection(std::string_view text,
                      const std::function<Status(std::string_view, std::string_view)>& fn) {
  size_t at = 0;
  while (at < text.size()) {
    const size_t tab = text.find('\t', at);
    const size_t end = tab == std::string_view::npos ? tab : text.find('\n', tab);
    if (end == std::string_view::npos || tab == at)
      return Corrupt(text, at);
    RETURN_IF_ERROR(fn(text.substr(at, tab - at), text.substr(tab + 1, end - tab - 1)));
    at = end + 1;
  }
  return core::Ok();
}

Status InsertBatches(Connection& conn, const std::vector<BatchRow>& rows) {
  return ExecMultiRow(conn, rows.size(), 3, kMaxChunkRows,
                      "INSERT INTO metric_batches (run_pk, n, points) VALUES ", "",
                      [&rows](std::vector<Value>& params, size_t i) {
                        params.emplace_back(rows[i].run_pk);
                        params.emplace_back(rows[i].n);
                        params.emplace_back(*rows[i].text);
                      });
}

Result<int64_t> CompactRun(Connection& conn, int64_t run_pk) {
  // The chunks hold exactly the rows this transaction deleted: on
  // PostgreSQL another server's writer may compact the same run at the
  // same time, and its DELETE, waiting on our row locks, then returns
  // nothing of ours, so no point is written twice.
  std::vector<PointChunk> chunks;
  std::unordered_map<std::string, size_t> index;
  int64_t rows = 0;
  auto add = [&](std::string_view text) {
    return ForEachSection(text, [&](std::string_view key, std::string_view points) -> Status {
      auto [it, added] = index.try_emplace(std::string(key), chunks.size());
      if (added)
        chunks.push_back({.run_pk = run_pk, .key = std::string(key)});
      PointChunk& c = chunks[it->second];
      c.n += std::count(points.begin(), points.end(), ';');
      c.text += points;  // the text format concatenates
      return core::Ok();
    });
  };
  RETURN_IF_ERROR(conn.QueryEach("DELETE FROM metric_batches WHERE run_pk = ? RETURNING points",
                                 {run_pk}, [&](const store::Row& r) -> Status {
                                   ++rows;
                                   if (const auto* text = std::get_if<std::string>(&r.cols.at(0)))
                                     return add(*text);
                                   return add(r.Text(0));
                                 }));
  std::vector<const PointChunk*> pointers;
  pointers.reserve(chunks.size());
  for (const PointChunk& c : chunks)
    pointers.push_back(&c);
  RETURN_IF_ERROR(InsertChunks(conn, pointers));
  return rows;
}

Result<uint64_t> CompactRuns(Connection& conn, const std::vector<int64_t>& runs) {
  uint64_t moved_runs = 0;
  for (int64_t run_pk : runs) {
    ASSIGN_OR_RETURN(int64_t moved, CompactRun(conn, run_pk));
    moved_runs += moved > 0;
  }
  return moved_runs;
}

Status ReadHistory(Connection& conn, int64_t run_pk, const std::string& key,
                   std::vector<StoredPoint>& out) {
  out.clear();
  // Points from before migration 0014, already in history order.
  RETURN_IF_ERROR(conn.QueryEach(
      "SELECT value, is_nan, ts, step FROM metric_points WHERE run_pk = ? AND key = ? "
      "ORDER BY step, ts",
      {run_pk, key}, [&](const store::Row& r) -> Status {
        out.push_back({.step = r.Int(3),
                       .timestamp = r.Int(2),
                       .value = r.Int(1) ? std::numeric_limits<double>::quiet_NaN() : r.Real(0)});
        return core::Ok();
      }));
  // Chunks and batches in ONE statement, so one snapshot: a compaction
  // committing between two reads would show its points twice or not at all.
  auto add = [&](bool batch, std::string_view text) -> Status {
    if (!batch)
      return DecodePoints(text, out);
    return ForEachSection(text, [&](std::string_view k, std::string_view points) {
      return k == key ? DecodePoints(points, out) : core::Ok();
    });
  };
  RETURN_IF_ERROR(
      conn.QueryEach("SELECT 0 AS src, id, points FROM metric_chunks WHERE run_pk = ? AND key = ? "
                     "UNION ALL SELECT 1 AS src, id, points FROM metric_batches WHERE run_pk = ? "
                     "ORDER BY src, id",
                     {run_pk, key, run_pk}, [&](const store::Row& r) -> Status {
                       const bool batch = r.Int(0) == 1;
                       if (const auto* text = std::get_if<std::string>(&r.cols.at(2)))
                         return add(batch, *text);  // without copying the text
                       return add(batch, r.Text(2));
                     }));
  // Training loops log in step order, so the check usually saves the sort.
  if (!std::is_sorted(out.begin(), out.end(), HistoryBefore))
    std::stable_sort(out.begin(), out.end(), HistoryBefore);
  return core::Ok();
}

}  // namespace kervan::tracking::internal
