// MLflow's Run message written straight into a response buffer: the same
// JSON as Run::ToMlflow().dump() (keys in the same, sorted, order; numbers
// that read back as the same values), without building a Json tree per run.
// A runs/search page of 1000 runs is ~25,000 Json nodes otherwise.
#include <cmath>
#include <iterator>

#include <fmt/format.h>

#include "tracking/internal.h"

namespace kervan::tracking::internal {
namespace {

void AppendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  const size_t start = out.size();
  fmt::format_to(std::back_inserter(out), "{}", v);
  // Json writes a whole double as "1.0"; keep it a JSON float too.
  bool integral = true;
  for (size_t i = start; i < out.size(); ++i) {
    if (out[i] != '-' && (out[i] < '0' || out[i] > '9')) {
      integral = false;
      break;
    }
  }
  if (integral)
    out += ".0";
}

void AppendKeyValues(std::string& out, const std::vector<KeyValue>& pairs) {
  out += '[';
  for (size_t i = 0; i < pairs.size(); ++i) {
    out += i == 0 ? "{\"key\":" : ",{\"key\":";
    AppendJsonString(out, pairs[i].first);
    out += ",\"value\":";
    AppendJsonString(out, pairs[i].second);
    out += '}';
  }
  out += ']';
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  size_t plain = 0;  // start of the run of characters that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
  }
  out.append(s.data() + plain, s.size() - plain);
  out += '"';
}

void AppendRunJson(std::string& out, const Run& run) {
  auto it = std::back_inserter(out);
  out += "{\"data\":{";
  bool field = false;
  if (!run.metrics.empty()) {
    out += "\"metrics\":[";
    for (size_t i = 0; i < run.metrics.size(); ++i) {
      const MetricPoint& m = run.metrics[i];
      out += i == 0 ? "{\"key\":" : ",{\"key\":";
      AppendJsonString(out, m.key);
      fmt::format_to(it, ",\"step\":{},\"timestamp\":{},\"value\":", m.step, m.timestamp);
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
  AppendJsonString(out, info.artifact_uri);
  if (info.end_time)
    fmt::format_to(it, ",\"end_time\":{}", *info.end_time);
  out += ",\"experiment_id\":";
  AppendJsonString(out, info.experiment_id);
  out += ",\"lifecycle_stage\":";
  AppendJsonString(out, info.lifecycle_stage);
  out += ",\"run_id\":";
  AppendJsonString(out, info.run_id);
  out += ",\"run_name\":";
  AppendJsonString(out, info.run_name);
  out += ",\"run_uuid\":";
  AppendJsonString(out, info.run_id);
  fmt::format_to(it, ",\"start_time\":{},\"status\":", info.start_time);
  AppendJsonString(out, info.status);
  out += ",\"user_id\":";
  AppendJsonString(out, info.user_id);
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
