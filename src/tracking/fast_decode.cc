// The DOM-free decoders of log-batch and log-metric bodies; see internal.h.
//
// Contract: each returns a result only for bodies the DOM route (ArgsFrom +
// routes.cc's field readers) would decode to exactly the same run id and
// points. Anything else (an unknown or repeated field, a type the readers
// would convert, a string where a number goes, params or tags, more points
// than MLflow allows, malformed JSON) declines, and the DOM route answers
// it, with its messages. So this file has no error text to keep in step.
#include <cstring>
#include <string>
#include <utility>

#include <simdjson.h>

#include "tracking/internal.h"

namespace kervan::tracking::internal {
namespace {

namespace od = simdjson::ondemand;

// Bodies above this size take the DOM route, so the per-thread buffers
// below stay small (a full 1000-point batch is about 70 KiB).
constexpr size_t kMaxFastBody = size_t{4} << 20;
// MLflow's limit on metrics per batch: a longer list is the DOM route's to
// reject.
constexpr size_t kMaxFastMetrics = 1000;

// Field names are compared as they are written, without unescaping them
// (a copy per field, most of the decoder's time after the numbers): a name
// spelled with escapes ("\u006bey") matches no field and declines.

// A JSON string without control characters: nlohmann rejects unescaped
// ones and simdjson does not; declining on escaped ones too keeps this
// simple (the validators reject them in keys anyway).
bool ReadString(od::value v, std::string& out) {
  std::string_view s;
  if (v.get_string().get(s))
    return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20)
      return false;
  }
  out.assign(s);
  return true;
}

bool ReadInt64(od::value v, int64_t& out) {
  return !v.get_int64().get(out);
}

// An integer read as its own type, then converted to double.
template <typename Int>
bool IntegerAsDouble(simdjson::simdjson_result<Int> read, double& out) {
  Int i = 0;
  if (std::move(read).get(i))
    return false;
  out = static_cast<double>(i);
  return true;
}

// A number as nlohmann's get<double>() sees it: integers convert from their
// integer value (so "-0" is 0, as there), others parse as doubles.
bool ReadDouble(od::value v, double& out) {
  od::number_type type;
  if (v.get_number_type().get(type))
    return false;
  switch (type) {
    case od::number_type::signed_integer:
      return IntegerAsDouble(v.get_int64(), out);
    case od::number_type::unsigned_integer:
      return IntegerAsDouble(v.get_uint64(), out);
    case od::number_type::floating_point_number:
      return !v.get_double().get(out);
    default:  // big integers: nlohmann's own rules apply
      return false;
  }
}

// The fields of one metric point, as read so far.
struct MetricFields {
  bool key = false, value = false, timestamp = false, step = false;
  // Sets an absent step to 0, as MLflow does; whether the required fields
  // were there.
  bool Finish(MetricPoint& m) const {
    if (!step)
      m.step = 0;
    return key && value && timestamp;
  }
};

// Reads the field `name` of a metric point into `m`; false when it is no
// such field, has the wrong type, or was read already.
bool ReadMetricField(const od::raw_json_string& name, od::value v, MetricPoint& m,
                     MetricFields& seen) {
  bool* flag = nullptr;
  bool ok = false;
  if (name == "key") {
    flag = &seen.key;
    ok = ReadString(v, m.key) && !m.key.empty();
  } else if (name == "value") {
    flag = &seen.value;
    ok = ReadDouble(v, m.value);
  } else if (name == "timestamp") {
    flag = &seen.timestamp;
    ok = ReadInt64(v, m.timestamp);
  } else if (name == "step") {
    flag = &seen.step;
    ok = ReadInt64(v, m.step);
  }
  if (!ok || *flag)
    return false;
  *flag = true;
  return true;
}

bool ReadMetric(od::value v, MetricPoint& m) {
  od::object object;
  if (v.get_object().get(object))
    return false;
  MetricFields seen;
  for (auto field : object) {
    od::raw_json_string name;
    if (field.key().get(name))
      return false;
    od::value fv;
    if (field.value().get(fv) || !ReadMetricField(name, fv, m, seen))
      return false;
  }
  return seen.Finish(m);
}

// An absent, null or empty list is fine; any entry declines.
bool EmptyList(od::value v) {
  bool null = false;
  if (v.is_null().get(null))
    return false;
  if (null)
    return true;
  od::array array;
  if (v.get_array().get(array))
    return false;
  bool empty = false;
  return !array.is_empty().get(empty) && empty;
}

// Starts iterating `body` as a document, in this thread's parser and
// padded copy; false when it is too large or simdjson refuses it.
bool Iterate(std::string_view body, od::document& doc) {
  if (body.empty() || body.size() > kMaxFastBody)
    return false;
  // simdjson reads up to SIMDJSON_PADDING bytes past the end.
  thread_local std::string padded;
  thread_local od::parser parser;
  padded.resize(body.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(padded.data(), body.data(), body.size());
  return !parser.iterate(padded.data(), body.size(), padded.size()).get(doc);
}

// Nothing may follow the top-level object (the DOM parse rejects trailing
// text).
bool AtEnd(od::document& doc) {
  return doc.current_location().error() == simdjson::OUT_OF_BOUNDS;
}

// Calls `field(name, value)` for each field of the body's top-level object,
// in order; true when every call did and nothing follows the object.
template <typename Field>
bool ForEachTopField(std::string_view body, Field field) {
  od::document doc;
  od::object top;
  if (!Iterate(body, doc) || doc.get_object().get(top))
    return false;
  for (auto f : top) {
    od::raw_json_string name;
    od::value v;
    if (f.key().get(name) || f.value().get(v) || !field(name, v))
      return false;
  }
  return AtEnd(doc);
}

// The "run_id" field, once and not empty.
bool ReadRunId(od::value v, std::string& out, bool& seen) {
  if (seen || !ReadString(v, out) || out.empty())
    return false;
  seen = true;
  return true;
}

}  // namespace

std::optional<DecodedLogMetric> DecodeLogMetricFast(std::string_view body) {
  DecodedLogMetric out;
  bool run_id = false;
  MetricFields seen;
  const bool read = ForEachTopField(body, [&](const od::raw_json_string& name, od::value v) {
    return name == "run_id" ? ReadRunId(v, out.run_id, run_id)
                            : ReadMetricField(name, v, out.metric, seen);
  });
  if (!read || !run_id || !seen.Finish(out.metric))
    return std::nullopt;
  return out;
}

std::optional<DecodedLogBatch> DecodeLogBatchFast(std::string_view body) {
  DecodedLogBatch out;
  bool run_id = false, metrics = false, params = false, tags = false;
  const bool read = ForEachTopField(body, [&](const od::raw_json_string& name, od::value v) {
    if (name == "run_id")
      return ReadRunId(v, out.run_id, run_id);
    if (name == "metrics") {
      od::array array;
      if (metrics || v.get_array().get(array))
        return false;
      metrics = true;
      out.batch.metrics.reserve(kMaxFastMetrics);
      for (auto item : array) {
        od::value iv;
        if (out.batch.metrics.size() == kMaxFastMetrics || item.get(iv))
          return false;
        if (!ReadMetric(iv, out.batch.metrics.emplace_back()))
          return false;
      }
      return true;
    }
    if (name == "params" || name == "tags") {
      bool& seen = name == "params" ? params : tags;
      if (seen || !EmptyList(v))
        return false;
      seen = true;
      return true;
    }
    return false;
  });
  if (!read || !run_id)
    return std::nullopt;
  return out;
}

}  // namespace kervan::tracking::internal
