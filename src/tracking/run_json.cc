// MLflow's Run message written straight into a response buffer: the same
// JSON as Run::ToMlflow().dump() (keys in the same, sorted, order; numbers
// that read back as the same values), without building a Json tree per run.
// A runs/search page of 1000 runs is ~25,000 Json nodes otherwise.
#include <charconv>
#include <cmath>
#include <iterator>

#include <fmt/format.h>

#include "tracking/internal.h"

namespace kervan::tracking::internal {

// std::to_chars rather than fmt: fmt parses its format string on every call,
// which was a quarter of get-history's CPU (100,000 points, perf).
void AppendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round trip
  (void)ec;  // 32 bytes hold any double's shortest form (at most 24)
  out.append(buf, end);
  // Json writes a whole double as "1.0"; keep it a JSON float too.
  for (const char* c = buf; c != end; ++c) {
    if (*c != '-' && (*c < '0' || *c > '9'))
      return;
  }
  out += ".0";
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;  // 20 characters hold any int64
  out.append(buf, end);
}

namespace {

void AppendKeyValues(std::string& out, const std::vector<KeyValue>& pairs) {
  out += '[';
  for (size_t i = 0; i < pairs.size(); ++i) {
    out += i == 0 ? "{\"key\":" : ",{\"key\":";
    core::AppendJsonString(out, pairs[i].first);
    out += ",\"value\":";
    core::AppendJsonString(out, pairs[i].second);
    out += '}';
  }
  out += ']';
}

}  // namespace

void AppendRunJson(std::string& out, const Run& run) {
  out += "{\"data\":{";
  bool field = false;
  if (!run.metrics.empty()) {
    out += "\"metrics\":[";
    for (size_t i = 0; i < run.metrics.size(); ++i) {
      const MetricPoint& m = run.metrics[i];
      out += i == 0 ? "{\"key\":" : ",{\"key\":";
      core::AppendJsonString(out, m.key);
      out += ",\"step\":";
      AppendInt(out, m.step);
      out += ",\"timestamp\":";
      AppendInt(out, m.timestamp);
      out += ",\"value\":";
      AppendDouble(out, m.value);
      out += '}';
    }
    out += ']';
    field = true;
  }
  if (!run.params.empty()) {
    out += field ? ",\"params\":" : "\"params\":";
    AppendKeyValues(out, run.params);
    field = true;
  }
  if (!run.tags.empty()) {
    out += field ? ",\"tags\":" : "\"tags\":";
    AppendKeyValues(out, run.tags);
  }
  const RunInfo& info = run.info;
  out += "},\"info\":{\"artifact_uri\":";
  core::AppendJsonString(out, info.artifact_uri);
  if (info.end_time) {
    out += ",\"end_time\":";
    AppendInt(out, *info.end_time);
  }
  out += ",\"experiment_id\":";
  core::AppendJsonString(out, info.experiment_id);
  out += ",\"lifecycle_stage\":";
  core::AppendJsonString(out, info.lifecycle_stage);
  out += ",\"run_id\":";
  core::AppendJsonString(out, info.run_id);
  out += ",\"run_name\":";
  core::AppendJsonString(out, info.run_name);
  out += ",\"run_uuid\":";
  core::AppendJsonString(out, info.run_id);
  out += ",\"start_time\":";
  AppendInt(out, info.start_time);
  out += ",\"status\":";
  core::AppendJsonString(out, info.status);
  out += ",\"user_id\":";
  core::AppendJsonString(out, info.user_id);
  out += "},\"inputs\":{";
  if (!run.inputs.empty()) {
    // Rare and free-form (a dataset is any JSON object): through Json.
    Json list = Json::array();
    for (const auto& d : run.inputs)
      list.push_back(d.ToMlflow());
    out += "\"dataset_inputs\":";
    out += list.dump();
  }
  out += "}}";
}

}  // namespace kervan::tracking::internal
