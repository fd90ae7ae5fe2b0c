// Private to src/tracking: row loaders shared by tracking.cc and search.cc.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tracking/tracking.h"

namespace kervan::tracking::internal {

// Columns selected for a run, in RunFromRow's order.
inline constexpr std::string_view kRunColumns =
    "run_pk, run_uuid, experiment_id, name, user_id, status, start_time, end_time, "
    "lifecycle_stage, artifact_uri, project";

struct RunRow {
  int64_t pk = 0;
  RunInfo info;
};
RunRow RunFromRow(const store::Row& row, size_t first = 0);

inline constexpr std::string_view kExperimentColumns =
    "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time, "
    "project";
Experiment ExperimentFromRow(const store::Row& row);

// Fills params, tags, latest metrics and inputs of `runs` (by their pks)
// with one query per table.
Result<std::vector<Run>> LoadRunData(store::Connection& conn, std::vector<RunRow> rows);
// Fills the tags of `experiments`.
Status LoadExperimentTags(store::Connection& conn, std::vector<Experiment>& experiments);

// "?, ?, ?" for n placeholders.
std::string Placeholders(size_t n);

// A metric point of one run, for writes that span runs.
struct RunPoint {
  int64_t run_pk = 0;
  const MetricPoint* point = nullptr;
};
// Runs `head` + `rows` tuples of `width` placeholders + `tail`, in slices
// of at most `max_rows` tuples, each a power of two (so few distinct
// statements are prepared and cached); append(params, i) adds row i's
// `width` values. For multi-row INSERTs and upserts.
Status ExecMultiRow(store::Connection& conn, size_t rows, size_t width, size_t max_rows,
                    std::string_view head, std::string_view tail,
                    const std::function<void(std::vector<store::Value>&, size_t)>& append);
// Metric points are stored in chunks (metric_chunks.cc, migration 0014):
// InsertPoints writes one metric_chunks row per (run, key) of `points`, the
// points packed as text in the order given (multi-row INSERTs).
Status InsertPoints(store::Connection& conn, const std::vector<RunPoint>& points);
// Chunks of fewer points than this are "small": a run logged one
// log-metric at a time writes one per point.
inline constexpr int64_t kSmallChunkPoints = 64;
// Replaces the small chunks of (run_pk, key) by one chunk of their points
// (in the caller's transaction); returns how many were merged. Safe when
// several servers' writers merge the same key at once (PostgreSQL): each
// merges only the chunks its own DELETE removed. History order does not
// depend on chunk order, so nothing else changes.
Result<int64_t> MergeSmallChunks(store::Connection& conn, int64_t run_pk, const std::string& key);
// One stored point of a known (run, key).
struct StoredPoint {
  int64_t step = 0;
  int64_t timestamp = 0;
  double value = 0;  // NaN and +-Infinity as logged
};
// Appends the points of one chunk's text to `out`; Internal when malformed.
Status DecodePoints(std::string_view text, std::vector<StoredPoint>& out);
// Every point of (run_pk, key) in history order: step, timestamp, value
// (NaN after 0, as the metric_points index ordered it). Reads metric_points
// (points logged before migration 0014) and metric_chunks.
Status ReadHistory(store::Connection& conn, int64_t run_pk, const std::string& key,
                   std::vector<StoredPoint>& out);
// Raises latest_metrics to the latest of `points` per (run, key), MLflow's
// order: the greatest (step, timestamp, value), NaN below every number.
Status UpdateLatest(store::Connection& conn, const std::vector<RunPoint>& points);
// JSON text written straight into `out` (run_json.cc; strings with
// core::AppendJsonString).
// A metric value as MLflow writes it: a JSON float ("1.0", not "1"; shortest
// round trip), NaN and the infinities as the strings "NaN", "Infinity",
// "-Infinity".
void AppendDouble(std::string& out, double v);
void AppendInt(std::string& out, int64_t v);
// MLflow's Run message with the same content as Run::ToMlflow().
void AppendRunJson(std::string& out, const Run& run);

// MLflow's answer to a write to a run that is not active.
core::Error RunNotActive(std::string_view run_id, std::string_view stage);

}  // namespace kervan::tracking::internal
