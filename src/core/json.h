// JSON helpers: non-throwing parse, canonical encoding, strict object reading.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.h"

namespace kervan::core {

using Json = nlohmann::json;

// Parses `text`; a syntax error becomes kInvalidArgument naming the byte offset.
Result<Json> ParseJson(std::string_view text);

// Canonical encoding: object keys sorted, no insignificant whitespace, UTF-8
// as is. Stable across runs and backends, so it can be hashed.
std::string CanonicalJson(const Json& value);

// Appends `s` as a JSON string literal: `"` and `\` escaped, control
// characters as \n \r \t \b \f or \u00xx, every other byte as is (UTF-8
// passes through, as CanonicalJson writes it). For writers that build large
// documents as text instead of a Json tree. Does not validate UTF-8.
void AppendJsonString(std::string& out, std::string_view s);

// Reads a JSON object strictly: typed accessors name the field (with `prefix`)
// in their errors, and Finish() rejects any field that was not read.
//
//   ASSIGN_OR_RETURN(auto body, ObjectReader::Of(json));
//   ASSIGN_OR_RETURN(std::string name, body.RequiredString("name"));
//   RETURN_IF_ERROR(body.Finish());
class ObjectReader {
 public:
  static Result<ObjectReader> Of(const Json& value, std::string prefix = {});

  Result<std::string> RequiredString(const std::string& key);
  Result<std::optional<std::string>> OptionalString(const std::string& key);
  Result<std::optional<int64_t>> OptionalInt(const std::string& key, int64_t min, int64_t max);
  Result<std::optional<bool>> OptionalBool(const std::string& key);
  Result<std::optional<double>> OptionalNumber(const std::string& key);
  // Any JSON object (returned as is); absent gives an empty object.
  Result<Json> OptionalObject(const std::string& key);
  // Any JSON array (returned as is); absent gives an empty array.
  Result<Json> OptionalArray(const std::string& key);
  // Whether the object has `key` (does not mark it read).
  bool Has(const std::string& key) const;

  // Fails with kInvalidArgument naming the first field no accessor read.
  Status Finish() const;

 private:
  ObjectReader(const Json* value, std::string prefix) : value_(value), prefix_(std::move(prefix)) {}
  std::string FieldName(const std::string& key) const { return prefix_ + key; }
  const Json* Find(const std::string& key);

  const Json* value_;
  std::string prefix_;
  std::set<std::string> seen_;
};

// Name of a JSON value's type for messages: "string", "number", "object"...
std::string_view JsonTypeName(const Json& value);

}  // namespace kervan::core
