// Private to src/tracking: row loaders shared by tracking.cc and search.cc.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tracking/tracking.h"

namespace kervan::tracking::internal {

// A log-batch request's run id and batch, as the route decodes them.
struct DecodedLogBatch {
  std::string run_id;
  LogBatchRequest batch;
};
// From the request's arguments (mlflow::Args), with MLflow's messages
// (routes.cc).
Result<DecodedLogBatch> DecodeLogBatch(const Json& args);
// The same without a DOM (fast_decode.cc), for the hot path of metric
// ingestion, where parsing 1000 points into nlohmann's DOM cost more CPU
// than storing them. Returns nullopt unless `body` is a JSON object of
// exactly the common shape: "run_id" (a non-empty string), "metrics" (at
// most 1000 objects of "key" (non-empty string), "value" (number),
// "timestamp" (integer), "step" (integer, optional)), and "params"/"tags"
// only as empty lists; each field at most once, no other field. Those
// bodies decode exactly as DecodeLogBatch(Args(body)) does; every other
// body (including every malformed one) is declined, for the DOM route to
// answer with MLflow's messages.
std::optional<DecodedLogBatch> DecodeLogBatchFast(std::string_view body);

// A log-metric request's run id and point, as the route decodes them.
struct DecodedLogMetric {
  std::string run_id;
  MetricPoint metric;
};
// From the request's arguments (mlflow::Args), with MLflow's messages
// (routes.cc).
Result<DecodedLogMetric> DecodeLogMetric(const Json& args);
// The same without a DOM (fast_decode.cc): the DOM parse was half of the
// log-metric start's CPU. Returns nullopt unless `body` is a JSON object
// of exactly "run_id" (a non-empty string), "key" (a non-empty string),
// "value" (a number), "timestamp" (an integer) and optionally "step" (an
// integer), each at most once and no other field; those bodies decode
// exactly as DecodeLogMetric(Args(body)) does, every other one is
// declined for the DOM route to answer.
std::optional<DecodedLogMetric> DecodeLogMetricFast(std::string_view body);

// Columns selected for a run, in RunFromRow's order.
inline constexpr std::string_view kRunColumns =
    "run_pk, run_uuid, experiment_id, name, user_id, status, start_time, end_time, "
    "lifecycle_stage, artifact_uri, project, data";

struct RunRow {
  int64_t pk = 0;
  RunInfo info;
  std::optional<std::string> data;  // runs.data; NULL only before RefreshRunData
};
RunRow RunFromRow(const store::Row& row, size_t first = 0);

// runs.data (migration 0016, run_data.cc): the run's params, tags and
// dataset inputs as one JSON document the database builds from run_params,
// run_tags and run_inputs. Every command that changes those tables calls
// RefreshRunData for its run in the same transaction; Tracking::Open fills
// the documents still NULL.
Status RefreshRunData(store::Connection& conn, std::string_view where,
                      const std::vector<store::Value>& params);
Status RefreshRunData(store::Connection& conn, int64_t run_pk);
// Appends the params and tags (sorted by key, in byte order) and the inputs
// (in their logged order) of `document` to `run`; Internal when malformed.
Status ParseRunData(std::string_view document, Run& run);

inline constexpr std::string_view kExperimentColumns =
    "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time, "
    "project";
Experiment ExperimentFromRow(const store::Row& row);

// Runs with their params, tags and inputs (from each row's data) and latest
// metrics: one statement per 1000 runs on `conn`. `db`, when given and
// PostgreSQL, may lend a second connection for a page of at least
// kParallelRunData runs, which then reads half of the metrics at once.
inline constexpr size_t kParallelRunData = 200;
Result<std::vector<Run>> LoadRunData(store::Connection& conn, std::vector<RunRow> rows,
                                     store::Database* db = nullptr);
// Fills the tags of `experiments`.
Status LoadExperimentTags(store::Connection& conn, std::vector<Experiment>& experiments);

// "?, ?, ?" for n placeholders.
std::string Placeholders(size_t n);

// Runs `head` + `rows` tuples of `width` placeholders + `tail`, in slices
// of at most `max_rows` tuples, each a power of two (so few distinct
// statements are prepared and cached); append(params, i) adds row i's
// `width` values. For multi-row INSERTs and upserts.
Status ExecMultiRow(store::Connection& conn, size_t rows, size_t width, size_t max_rows,
                    std::string_view head, std::string_view tail,
                    const std::function<void(std::vector<store::Value>&, size_t)>& append);
// One stored point of a known (run, key).
struct StoredPoint {
  int64_t step = 0;
  int64_t timestamp = 0;
  double value = 0;  // NaN and +-Infinity as logged
};
// Metric points are stored as text (metric_chunks.cc):
//  - metric_batches (migration 0015): one row per (run, write) holding every
//    key's points, "key\tpoints\n" per key. Writes go here: one row at the
//    end of one run's index range, however many keys the write has.
//  - metric_chunks (migration 0014): one row per (run, key), "points" only.
//    The metric writer compacts a run's batches into chunks once they hold
//    kCompactAfterRows rows or kCompactAfterPoints points, so a history read
//    scans a bounded amount of batch text; a log-batch that also carries
//    params or tags writes chunks directly.
// "points" is "step,timestamp,value;" per point, the value in its shortest
// round-trip form or nan / inf / -inf. After a text's first point, a step
// or timestamp written as "+" and an integer is that much more than the
// point before's ("+-2": 2 less), written so where it is shorter: a
// 1000-point log-batch's text shrank by two fifths, and with it TOAST,
// WAL and compaction. Each text EncodeChunks makes starts with absolute
// fields, so texts still concatenate (CompactRun); texts written before
// this form contain no "+" and read as before.
//
// A PointChunk is one key's points of one write, encoded; callers encode
// their own request (EncodeChunks, JoinChunks), so the metric writer's
// thread, which every write waits for, only binds and inserts.
struct PointChunk {
  int64_t run_pk = 0;
  std::string key;
  int64_t n = 0;       // points in `text`
  std::string text;    // "step,timestamp,value;" per point, in the order logged
  StoredPoint latest;  // the greatest point in MLflow's order (see UpdateLatest)
};
// The points of the run `run_pk`, one chunk per key in order of first
// appearance.
std::vector<PointChunk> EncodeChunks(int64_t run_pk, const std::vector<MetricPoint>& points);
// One write's metric_batches text: "key\ttext\n" per chunk.
std::string JoinChunks(const std::vector<PointChunk>& chunks);
// Calls fn(key, points) for each section of a metric_batches text; Internal
// when the text is malformed, or what fn returns.
Status ForEachSection(std::string_view text,
                      const std::function<Status(std::string_view, std::string_view)>& fn);
struct BatchRow {
  int64_t run_pk = 0;
  int64_t n = 0;                      // points in *text
  const std::string* text = nullptr;  // JoinChunks
};
// Inserts one metric_batches row each (multi-row INSERTs).
Status InsertBatches(store::Connection& conn, const std::vector<BatchRow>& rows);
// Inserts one metric_chunks row per chunk (multi-row INSERTs).
Status InsertChunks(store::Connection& conn, const std::vector<const PointChunk*>& chunks);
// Raises latest_metrics to the latest point of `chunks` per (run, key),
// MLflow's order: the greatest (step, timestamp, value), NaN below every
// number.
Status UpdateLatest(store::Connection& conn, const std::vector<const PointChunk*>& chunks);
// PostgreSQL only: inserts `rows` and raises latest_metrics from `chunks`
// for the runs among them that are active, in ONE statement (its own
// transaction: call it outside one), and returns the lifecycle stage of
// every run `rows` name (a run absent from the map does not exist; rows of
// no points name a run without storing anything). One
// round trip where BEGIN, the lifecycle read, the two INSERTs and COMMIT
// were five, each waited for by every request of the group.
Result<std::map<int64_t, std::string>> StoreForActiveRuns(
    store::Connection& conn, const std::vector<BatchRow>& rows,
    const std::vector<const PointChunk*>& chunks);
// StoreForActiveRuns in two halves, for a pipelined caller: SendStore
// sends the statement (Connection::SendQuery) and ReceiveStore returns its
// answer (Connection::ReceiveRows). `rows` and `chunks` are read only
// while SendStore runs.
Status SendStore(store::Connection& conn, const std::vector<BatchRow>& rows,
                 const std::vector<const PointChunk*>& chunks);
Result<std::map<int64_t, std::string>> ReceiveStore(store::Connection& conn);
// When the metric writer compacts a run's batches (either bound).
inline constexpr int64_t kCompactAfterRows = 256;
inline constexpr int64_t kCompactAfterPoints = 65536;
// Moves every metric_batches row of `run_pk` into metric_chunks, one chunk
// per key (in the caller's transaction); returns the batch rows moved. Safe
// when several servers' writers compact one run at once (PostgreSQL): each
// moves only the rows its own DELETE removed.
Result<int64_t> CompactRun(store::Connection& conn, int64_t run_pk);
// CompactRun for each of `runs`; returns how many had rows to move.
Result<uint64_t> CompactRuns(store::Connection& conn, const std::vector<int64_t>& runs);
// Appends the points of one chunk's text to `out`; Internal when malformed.
Status DecodePoints(std::string_view text, std::vector<StoredPoint>& out);
// Every point of (run_pk, key) in history order: step, timestamp, value
// (NaN after 0, as the metric_points index ordered it). Reads metric_points
// (points logged before migration 0014), then metric_chunks and
// metric_batches in one statement (one snapshot, whatever compacts).
Status ReadHistory(store::Connection& conn, int64_t run_pk, const std::string& key,
                   std::vector<StoredPoint>& out);
// JSON text written straight into `out` (run_json.cc; strings with
// core::AppendJsonString).
// A metric value as MLflow writes it: a JSON float ("1.0", not "1"; shortest
// round trip), NaN and the infinities as the strings "NaN", "Infinity",
// "-Infinity".
void AppendDouble(std::string& out, double v);
void AppendInt(std::string& out, int64_t v);
// A PostgreSQL array literal of n integers, at(0)..at(n-1): "{1,2,3}", for
// one CAST(? AS BIGINT[]) parameter in place of n.
template <typename At>
std::string PgIntArray(size_t n, At at) {
  std::string out = "{";
  for (size_t i = 0; i < n; ++i) {
    if (i > 0)
      out += ',';
    AppendInt(out, at(i));
  }
  out += '}';
  return out;
}
// MLflow's Run message with the same content as Run::ToMlflow().
void AppendRunJson(std::string& out, const Run& run);

// MLflow's answer to a write to a run that is not active.
core::Error RunNotActive(std::string_view run_id, std::string_view stage);

}  // namespace kervan::tracking::internal
