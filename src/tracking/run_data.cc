// runs.data (migration 0016): a run's params, tags and dataset inputs as one
// JSON document, {"p": [[key, value], ...], "t": [[key, value], ...],
// "i": [[position, dataset, tags], ...]}, built by the database from the
// three tables and read back here. A page of 1000 runs then reads them with
// the runs' own rows: on PostgreSQL, the separate reads were about 4,000
// index probes, the larger part of runs/search's time (docs/performance.md).
#include <algorithm>
#include <cstring>

#include <simdjson.h>

#include <fmt/format.h>

#include "tracking/internal.h"

namespace kervan::tracking::internal {

namespace {

namespace od = simdjson::ondemand;

// The document of the row `runs` is at, in each dialect's JSON functions.
// Arrays are in no particular order: ParseRunData sorts.
constexpr std::string_view kPostgresDocument =
    "CAST(json_build_object("
    "'p', COALESCE((SELECT json_agg(json_build_array(key, value)) FROM run_params x "
    "WHERE x.run_pk = runs.run_pk), '[]'), "
    "'t', COALESCE((SELECT json_agg(json_build_array(key, value)) FROM run_tags x "
    "WHERE x.run_pk = runs.run_pk), '[]'), "
    "'i', COALESCE((SELECT json_agg(json_build_array(position, CAST(dataset AS JSON), "
    "CAST(tags AS JSON))) FROM run_inputs x WHERE x.run_pk = runs.run_pk), '[]')) AS TEXT)";
// json(): a subquery's result loses SQLite's JSON subtype, and would be
// embedded as a string without it.
constexpr std::string_view kSqliteDocument =
    "json_object("
    "'p', json((SELECT json_group_array(json_array(key, value)) FROM run_params x "
    "WHERE x.run_pk = runs.run_pk)), "
    "'t', json((SELECT json_group_array(json_array(key, value)) FROM run_tags x "
    "WHERE x.run_pk = runs.run_pk)), "
    "'i', json((SELECT json_group_array(json_array(position, json(dataset), json(tags))) "
    "FROM run_inputs x WHERE x.run_pk = runs.run_pk)))";

core::Error Malformed(std::string_view what) {
  return core::Internal(fmt::format("malformed runs.data document: {}", what));
}

// Calls fn on each element of the list `v`, each itself a list (of the
// `shape` that errors name).
template <typename Fn>
Status ForEachTuple(od::value v, std::string_view shape, Fn&& fn) {
  od::array list;
  if (v.get_array().get(list))
    return Malformed(fmt::format("a list of {} expected", shape));
  for (auto item : list) {
    od::array tuple;
    if (item.get_array().get(tuple))
      return Malformed(fmt::format("a list of {} expected", shape));
    RETURN_IF_ERROR(fn(tuple));
  }
  return core::Ok();
}

Status ReadPairs(od::value v, std::vector<KeyValue>& out) {
  return ForEachTuple(v, "[key, value] pairs", [&](od::array& pair) -> Status {
    std::string_view kv[2];
    size_t n = 0;
    for (auto part : pair) {
      if (n == 2 || part.get_string().get(kv[n]))
        return Malformed("a [key, value] pair of two strings expected");
      ++n;
    }
    if (n != 2)
      return Malformed("a [key, value] pair of two strings expected");
    out.emplace_back(std::string(kv[0]), std::string(kv[1]));
    return core::Ok();
  });
}

// An input's dataset or tags: a JSON object, parsed by nlohmann's DOM as
// it was stored (logged inputs are rare and small).
Result<Json> ReadObject(od::value v) {
  od::object object;
  std::string_view raw;
  if (v.get_object().get(object) || object.raw_json().get(raw))
    return Malformed("an input's dataset and tags must be JSON objects");
  Json parsed = Json::parse(raw, nullptr, false);
  if (!parsed.is_object())
    return Malformed("an input's dataset and tags must be JSON objects");
  return parsed;
}

struct PositionedInput {
  int64_t position = 0;
  DatasetInput input;
};

Status ReadInputs(od::value v, std::vector<PositionedInput>& out) {
  return ForEachTuple(v, "[position, dataset, tags] inputs", [&](od::array& triple) -> Status {
    PositionedInput& in = out.emplace_back();
    size_t n = 0;
    for (auto item : triple) {
      od::value part;
      if (n == 3 || item.get(part))
        return Malformed("an input has three parts");
      if (n == 0) {
        if (part.get_int64().get(in.position))
          return Malformed("an input's position must be an integer");
      } else {
        ASSIGN_OR_RETURN(Json object, ReadObject(part));
        if (n == 1) {
          in.input.dataset = std::move(object);
        } else {
          for (const auto& [k, tag] : object.items())
            in.input.tags.emplace_back(k, tag.is_string() ? tag.get<std::string>() : tag.dump());
        }
      }
      ++n;
    }
    if (n != 3)
      return Malformed("an input has three parts");
    return core::Ok();
  });
}

}  // namespace

Status RefreshRunData(store::Connection& conn, std::string_view where,
                      const std::vector<store::Value>& params) {
  const std::string_view document =
      conn.dialect() == store::Dialect::kPostgres ? kPostgresDocument : kSqliteDocument;
  RETURN_IF_ERROR(
      conn.Exec(fmt::format("UPDATE runs SET data = {} WHERE {}", document, where), params));
  return core::Ok();
}

Status RefreshRunData(store::Connection& conn, int64_t run_pk) {
  return RefreshRunData(conn, "run_pk = ?", {run_pk});
}

Status ParseRunData(std::string_view document, Run& run) {
  // simdjson reads up to SIMDJSON_PADDING bytes past the end.
  thread_local std::string padded;
  thread_local od::parser parser;
  padded.resize(document.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(padded.data(), document.data(), document.size());
  od::document doc;
  od::object top;
  if (parser.iterate(padded.data(), document.size(), padded.size()).get(doc) ||
      doc.get_object().get(top)) {
    return Malformed("an object expected");
  }
  std::vector<PositionedInput> inputs;
  for (auto field : top) {
    std::string_view name;
    od::value v;
    if (field.unescaped_key().get(name) || field.value().get(v))
      return Malformed("unreadable field");
    if (name == "p") {
      RETURN_IF_ERROR(ReadPairs(v, run.params));
    } else if (name == "t") {
      RETURN_IF_ERROR(ReadPairs(v, run.tags));
    } else if (name == "i") {
      RETURN_IF_ERROR(ReadInputs(v, inputs));
    } else {
      return Malformed(fmt::format("unknown field \"{}\"", name));
    }
  }
  // Keys in byte order on both backends; inputs in their logged order.
  auto by_key = [](const KeyValue& a, const KeyValue& b) { return a.first < b.first; };
  std::sort(run.params.begin(), run.params.end(), by_key);
  std::sort(run.tags.begin(), run.tags.end(), by_key);
  std::sort(inputs.begin(), inputs.end(), [](const PositionedInput& a, const PositionedInput& b) {
    return a.position < b.position;
  });
  run.inputs.reserve(inputs.size());
  for (PositionedInput& in : inputs)
    run.inputs.push_back(std::move(in.input));
  return core::Ok();
}

}  // namespace kervan::tracking::internal
