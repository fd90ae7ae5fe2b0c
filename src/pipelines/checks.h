// Data checks: CSV reading, the built-in `validate` step's expectations,
// content digests and dataset profiles. Part of the pipelines module (public
// header pipelines.h). Pure functions of their inputs (and the files they
// read); thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"

namespace kervan::pipelines {

using core::Json;
using core::Result;

// One expectation of a validate step, as declared in YAML/JSON:
//   {expect: column_exists, column: c}
//   {expect: type, column: c, type: int|float|bool|string}
//   {expect: not_null, column: c}                 empty cell = null
//   {expect: range, column: c, min: 0, max: 1}    min and/or max, inclusive
//   {expect: allowed_values, column: c, values: [a, b]}
//   {expect: unique, column: c}
//   {expect: row_count, min: 100, max: 1000000}   min and/or max
//   {expect: regex, column: c, pattern: "^[0-9]+$"}  ECMAScript, whole cell
// plus severity: error (default) | warning. Null cells are ignored by type,
// range, allowed_values, unique and regex (not_null is for them).
struct Expectation {
  std::string expect;  // the kind, as above
  std::string column;
  std::string type;
  std::optional<double> min, max;
  std::vector<std::string> values;
  std::string pattern;
  std::string severity = "error";
  Json ToJson() const;
};
// Strict: unknown keys, a missing column for a column kind, a bad type name,
// min > max, a regex that does not compile, an unknown kind or severity are
// kInvalidArgument with field `location` + "." + key
// ("steps.validate.expectations[2].pattern").
Result<Expectation> ExpectationFromJson(const Json& json, std::string_view location);

struct ExpectationResult {
  Expectation expectation;
  bool passed = false;
  int64_t failing_rows = 0;
  // Up to 5 examples: "row 17: \"abc\"" (rows count from 1 after the header).
  std::vector<std::string> examples;
  std::string detail;  // one sentence: "3 of 569 rows are null"
  Json ToJson() const;
};

struct ValidationReport {
  bool passed = true;  // no expectation with severity error failed
  int64_t rows = 0;
  std::vector<std::string> columns;
  std::vector<ExpectationResult> results;  // in declaration order
  Json ToJson() const;                     // {"passed", "rows", "columns", "results": [...]}
};

// RFC 4180 CSV: a header row, then rows; quoted fields with "" escapes and
// embedded newlines; CRLF or LF. kInvalidArgument names the line of a row
// with the wrong number of fields or an unterminated quote.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};
Result<CsvTable> ParseCsv(std::string_view text);
Result<CsvTable> ReadCsv(const std::filesystem::path& path);

// Runs every expectation over the CSV file (a missing column fails that
// expectation, it is not an error of the call).
Result<ValidationReport> ValidateCsv(const std::filesystem::path& csv,
                                     const std::vector<Expectation>& expectations);
ValidationReport Validate(const CsvTable& table, const std::vector<Expectation>& expectations);

// "sha256:<hex>" of a file's bytes, or of a directory: the SHA-256 over its
// files in path order, each as "<relative path>\0<file digest>\n" (symlinks
// are not followed; their target text is hashed). kNotFound when absent.
Result<std::string> DigestPath(const std::filesystem::path& path);

struct ColumnProfile {
  std::string name;
  std::string type;  // int | float | bool | string (the narrowest that fits every non-null cell)
  int64_t missing = 0;
};
struct DatasetProfile {
  std::string digest;  // DigestPath
  int64_t bytes = 0;
  std::optional<int64_t> rows;         // CSV only
  std::vector<ColumnProfile> columns;  // CSV only
  Json ToJson() const;  // {"digest", "bytes", "rows"?, "schema"?: [{"name","type","missing"}]}
};
// Profiles a file (a ".csv" is parsed for rows and schema) or a directory.
Result<DatasetProfile> ProfilePath(const std::filesystem::path& path);

}  // namespace kervan::pipelines
