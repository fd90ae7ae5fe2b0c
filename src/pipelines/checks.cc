// Data checks: the CSV reader, the validate step's expectations, digests and
// profiles.

// g++ 12 reports a false -Wmaybe-uninitialized inside libstdc++'s regex
// compiler (std::function in _StateT) when built with -O1 and sanitizers. The
// warning is located in std_function.h, which the first include already pulls
// in, so it has to be silenced before any include.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "pipelines/checks.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <system_error>
#include <unordered_set>

#include <fmt/format.h>

namespace kervan::pipelines {
namespace {

namespace fs = std::filesystem;
using core::ObjectReader;

constexpr size_t kMaxExamples = 5;
// Examples quote cells; a pathological cell must not blow up a report.
constexpr size_t kMaxExampleCellBytes = 80;

// ---- cells ----

enum class CellType { kNull, kInt, kFloat, kBool, kString };

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// A leading '+' is accepted for numbers (from_chars rejects it), so "+5" is an
// int like "5" is.
std::string_view WithoutPlus(std::string_view cell) {
  if (cell.size() > 1 && cell[0] == '+' && cell[1] != '-' && cell[1] != '+')
    cell.remove_prefix(1);
  return cell;
}

std::optional<int64_t> CellInt(std::string_view cell) {
  cell = WithoutPlus(cell);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (ec != std::errc() || ptr != cell.data() + cell.size())
    return std::nullopt;
  return v;
}

// Decimal numbers as strtod reads them, but through from_chars: no locale, no
// leading whitespace, no hex. "nan", "inf" and values that overflow a double
// are not finite and so count as strings, not floats: a column holding them
// is not something range checks can reason about.
std::optional<double> CellNumber(std::string_view cell) {
  cell = WithoutPlus(cell);
  if (cell.empty())
    return std::nullopt;
  double v = 0;
  auto [ptr, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (ec != std::errc() || ptr != cell.data() + cell.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

CellType Classify(std::string_view cell) {
  if (cell.empty())
    return CellType::kNull;
  if (CellInt(cell))
    return CellType::kInt;
  if (CellNumber(cell))
    return CellType::kFloat;
  if (EqualsIgnoreCase(cell, "true") || EqualsIgnoreCase(cell, "false"))
    return CellType::kBool;
  return CellType::kString;
}

// Whether a non-null cell of type `cell` is acceptable where `declared` is
// expected: ints are floats too, everything is a string.
bool Fits(CellType cell, std::string_view declared) {
  if (declared == "string")
    return true;
  if (declared == "float")
    return cell == CellType::kInt || cell == CellType::kFloat;
  if (declared == "int")
    return cell == CellType::kInt;
  if (declared == "bool")
    return cell == CellType::kBool;
  return false;
}

// The narrowest type every non-null cell fits; all-null columns are strings.
class TypeWidener {
 public:
  void Add(CellType t) {
    switch (t) {
      case CellType::kNull:
        break;
      case CellType::kInt:
        int_ = true;
        break;
      case CellType::kFloat:
        float_ = true;
        break;
      case CellType::kBool:
        bool_ = true;
        break;
      case CellType::kString:
        string_ = true;
        break;
    }
  }
  std::string Name() const {
    bool numeric = int_ || float_;
    if (string_ || (bool_ && numeric) || (!bool_ && !numeric))
      return "string";
    if (bool_)
      return "bool";
    return float_ ? "float" : "int";
  }

 private:
  bool int_ = false, float_ = false, bool_ = false, string_ = false;
};

// ---- files ----

Result<std::string> ReadFileBytes(const fs::path& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st))
    return core::NotFound(fmt::format("{}: no such file", path.string()));
  if (!fs::is_regular_file(st))
    return core::InvalidArgument(fmt::format("{}: not a regular file", path.string()));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return core::Internal(fmt::format("{}: cannot open", path.string()));
  std::string bytes;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0)
    bytes.append(buffer, static_cast<size_t>(in.gcount()));
  if (in.bad())
    return core::Internal(fmt::format("{}: read failed", path.string()));
  return bytes;
}

std::string DigestOfBytes(std::string_view bytes) {
  return "sha256:" + core::Sha256Hex(bytes);
}

struct DirectoryDigest {
  std::string digest;
  int64_t bytes = 0;
};

// Walks without following symlinks (the iterator's default), so a link to a
// directory outside the tree neither leaks it in nor loops.
Result<DirectoryDigest> DigestDirectory(const fs::path& root) {
  std::error_code ec;
  std::vector<std::pair<std::string, std::string>> entries;  // relative path, digest
  int64_t bytes = 0;
  fs::recursive_directory_iterator it(root, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::directory_entry& entry = *it;
    std::error_code st_ec;
    fs::file_status st = entry.symlink_status(st_ec);
    if (st_ec)
      return core::Internal(fmt::format("{}: {}", entry.path().string(), st_ec.message()));
    std::string relative = entry.path().lexically_relative(root).generic_string();
    if (fs::is_symlink(st)) {
      std::string target = fs::read_symlink(entry.path(), st_ec).string();
      if (st_ec)
        return core::Internal(fmt::format("{}: {}", entry.path().string(), st_ec.message()));
      entries.emplace_back(std::move(relative), DigestOfBytes(target));
    } else if (fs::is_regular_file(st)) {
      ASSIGN_OR_RETURN(std::string content, ReadFileBytes(entry.path()));
      bytes += static_cast<int64_t>(content.size());
      entries.emplace_back(std::move(relative), DigestOfBytes(content));
    }
    // Directories contribute through their files; sockets and FIFOs have no
    // content to hash.
  }
  if (ec)
    return core::Internal(fmt::format("{}: {}", root.string(), ec.message()));
  std::sort(entries.begin(), entries.end());
  std::string manifest;
  for (const auto& [relative, digest] : entries) {
    manifest += relative;
    manifest += '\0';
    manifest += digest;
    manifest += '\n';
  }
  return DirectoryDigest{DigestOfBytes(manifest), bytes};
}

// ---- expectations ----

const std::set<std::string, std::less<>>& ColumnKinds() {
  static const auto* kinds = new std::set<std::string, std::less<>>{
      "column_exists", "type", "not_null", "range", "allowed_values", "unique", "regex"};
  return *kinds;
}

// The keys each kind takes besides `expect` and `severity`.
const std::map<std::string, std::set<std::string>, std::less<>>& KindKeys() {
  static const auto* keys = new std::map<std::string, std::set<std::string>, std::less<>>{
      {"column_exists", {"column"}},
      {"type", {"column", "type"}},
      {"not_null", {"column"}},
      {"range", {"column", "min", "max"}},
      {"allowed_values", {"column", "values"}},
      {"unique", {"column"}},
      {"row_count", {"min", "max"}},
      {"regex", {"column", "pattern"}},
  };
  return *keys;
}

const std::set<std::string>& AllKeys() {
  static const auto* keys = new std::set<std::string>{"expect", "severity", "column", "type",
                                                      "min",    "max",      "values", "pattern"};
  return *keys;
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      out += sep;
    out += items[i];
  }
  return out;
}

std::string QuoteCell(std::string_view cell) {
  std::string shown(cell.substr(0, kMaxExampleCellBytes));
  std::string quoted = Json(shown).dump(-1, ' ', false, Json::error_handler_t::replace);
  if (cell.size() > kMaxExampleCellBytes)
    quoted += "...";
  return quoted;
}

// "outside [0, 1]", "below 0", "above 1".
std::string OutsideText(const std::optional<double>& min, const std::optional<double>& max) {
  if (min && max)
    return fmt::format("outside [{}, {}]", *min, *max);
  if (min)
    return fmt::format("below {}", *min);
  return fmt::format("above {}", *max);
}

// "between 1 and 10", "at least 1", "at most 10".
std::string ExpectedText(const std::optional<double>& min, const std::optional<double>& max) {
  if (min && max)
    return fmt::format("between {} and {}", *min, *max);
  if (min)
    return fmt::format("at least {}", *min);
  return fmt::format("at most {}", *max);
}

bool InBounds(double v, const std::optional<double>& min, const std::optional<double>& max) {
  return (!min || v >= *min) && (!max || v <= *max);
}

Result<std::regex> CompileRegex(const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return core::InvalidArgument(e.what());
  }
}

std::string Plural(int64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// Counts the failing cells of one column and keeps the first few as examples.
class Failures {
 public:
  void Add(size_t row_index, std::string_view cell) {
    ++count_;
    if (examples_.size() < kMaxExamples)
      examples_.push_back(fmt::format("row {}: {}", row_index + 1, QuoteCell(cell)));
  }
  int64_t count() const { return count_; }
  void MoveInto(ExpectationResult& result) {
    result.failing_rows = count_;
    result.passed = count_ == 0;
    result.examples = std::move(examples_);
  }

 private:
  int64_t count_ = 0;
  std::vector<std::string> examples_;
};

// Runs a column expectation over `column` (an index into the table's rows).
void CheckColumn(const CsvTable& table, size_t column, const Expectation& e,
                 ExpectationResult& result) {
  const auto& rows = table.rows;
  const int64_t total = static_cast<int64_t>(rows.size());
  Failures failures;
  int64_t non_null = 0;
  auto for_each_value = [&](auto&& fn) {
    for (size_t r = 0; r < rows.size(); ++r) {
      const std::string& cell = rows[r][column];
      if (cell.empty())
        continue;
      ++non_null;
      fn(r, cell);
    }
  };

  if (e.expect == "column_exists") {
    result.passed = true;
    result.detail = fmt::format("column \"{}\" is present", e.column);
    return;
  }
  if (e.expect == "not_null") {
    for (size_t r = 0; r < rows.size(); ++r) {
      if (rows[r][column].empty())
        failures.Add(r, rows[r][column]);
    }
    result.detail = fmt::format("{} of {} {} null", failures.count(), Plural(total, "row", "rows"),
                                failures.count() == 1 ? "is" : "are");
  } else if (e.expect == "type") {
    for_each_value([&](size_t r, const std::string& cell) {
      if (!Fits(Classify(cell), e.type))
        failures.Add(r, cell);
    });
    result.detail = fmt::format("{} of {} non-null values {} not {}", failures.count(), non_null,
                                failures.count() == 1 ? "is" : "are", e.type);
  } else if (e.expect == "range") {
    for_each_value([&](size_t r, const std::string& cell) {
      std::optional<double> v = CellNumber(cell);
      if (!v || !InBounds(*v, e.min, e.max))
        failures.Add(r, cell);
    });
    result.detail =
        fmt::format("{} of {} non-null values {} {} or not numbers", failures.count(), non_null,
                    failures.count() == 1 ? "is" : "are", OutsideText(e.min, e.max));
  } else if (e.expect == "allowed_values") {
    std::unordered_set<std::string_view> allowed(e.values.begin(), e.values.end());
    for_each_value([&](size_t r, const std::string& cell) {
      if (!allowed.contains(cell))
        failures.Add(r, cell);
    });
    result.detail =
        fmt::format("{} of {} non-null values {} not one of {}", failures.count(), non_null,
                    failures.count() == 1 ? "is" : "are", Join(e.values, ", "));
  } else if (e.expect == "unique") {
    std::unordered_set<std::string_view> seen;
    for_each_value([&](size_t r, const std::string& cell) {
      if (!seen.insert(cell).second)
        failures.Add(r, cell);
    });
    result.detail =
        fmt::format("{} of {} non-null values repeat an earlier value", failures.count(), non_null);
  } else if (e.expect == "regex") {
    // Compiled once per expectation; ExpectationFromJson has already rejected
    // bad patterns, but a hand-built Expectation may still carry one.
    Result<std::regex> re = CompileRegex(e.pattern);
    if (!re) {
      result.passed = false;
      result.detail =
          fmt::format("pattern {} does not compile: {}", QuoteCell(e.pattern), re.error().message);
      return;
    }
    std::string engine_error;
    for_each_value([&](size_t r, const std::string& cell) {
      bool matched = false;
      try {
        matched = std::regex_match(cell, *re);
      } catch (const std::regex_error& err) {
        // error_complexity / error_stack: the cell cannot be judged, so it fails.
        engine_error = err.what();
      }
      if (!matched)
        failures.Add(r, cell);
    });
    result.detail = fmt::format("{} of {} non-null values {} not match {}", failures.count(),
                                non_null, failures.count() == 1 ? "does" : "do", e.pattern);
    if (!engine_error.empty())
      result.detail += fmt::format(" (regex engine: {})", engine_error);
  }
  failures.MoveInto(result);
}

ExpectationResult Check(const CsvTable& table, const Expectation& e) {
  ExpectationResult result;
  result.expectation = e;
  const int64_t rows = static_cast<int64_t>(table.rows.size());
  if (e.expect == "row_count") {
    result.passed = InBounds(static_cast<double>(rows), e.min, e.max);
    result.detail =
        fmt::format("{}, expected {}", Plural(rows, "row", "rows"), ExpectedText(e.min, e.max));
    return result;
  }
  if (!ColumnKinds().contains(e.expect)) {
    result.detail = fmt::format("unknown expectation \"{}\"", e.expect);
    return result;
  }
  auto it = std::find(table.header.begin(), table.header.end(), e.column);
  if (it == table.header.end()) {
    result.detail =
        fmt::format("column \"{}\" is missing (columns: {})", e.column, Join(table.header, ", "));
    return result;
  }
  CheckColumn(table, static_cast<size_t>(it - table.header.begin()), e, result);
  return result;
}

}  // namespace

// ---- CSV ----

// Blank lines between records are skipped (as pandas does); a null cell in a
// one-column file is written as "". A stray quote inside an unquoted field is
// kept as text; anything but a separator after a closing quote is an error.
Result<CsvTable> ParseCsv(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF"))  // UTF-8 byte order mark
    text.remove_prefix(3);
  CsvTable table;
  bool have_header = false;
  const size_t n = text.size();
  size_t i = 0;
  int64_t line = 1;
  auto at_line_break = [&](size_t at) { return at < n && (text[at] == '\n' || text[at] == '\r'); };
  auto skip_line_break = [&] {
    i += (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
    ++line;
  };

  while (i < n) {
    if (at_line_break(i)) {
      skip_line_break();
      continue;
    }
    const int64_t record_line = line;
    std::vector<std::string> record;
    for (;;) {
      std::string field;
      if (i < n && text[i] == '"') {
        const int64_t quote_line = line;
        ++i;
        for (;;) {
          if (i >= n) {
            return core::InvalidArgument(
                fmt::format("csv line {}: quoted field is never closed", quote_line));
          }
          char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n' || (c == '\r' && !(i + 1 < n && text[i + 1] == '\n')))
            ++line;
          field += c;
          ++i;
        }
        if (i < n && text[i] != ',' && !at_line_break(i)) {
          return core::InvalidArgument(fmt::format(
              "csv line {}: unexpected character '{}' after a closing quote", line, text[i]));
        }
      } else {
        size_t end = text.find_first_of(",\r\n", i);
        if (end == std::string_view::npos)
          end = n;
        field.assign(text.substr(i, end - i));
        i = end;
      }
      record.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      break;
    }
    if (i < n)
      skip_line_break();
    if (!have_header) {
      table.header = std::move(record);
      have_header = true;
    } else if (record.size() != table.header.size()) {
      return core::InvalidArgument(fmt::format("csv line {}: row has {} fields, the header has {}",
                                               record_line, record.size(), table.header.size()));
    } else {
      table.rows.push_back(std::move(record));
    }
  }
  if (!have_header)
    return core::InvalidArgument("csv: no header row");
  return table;
}

Result<CsvTable> ReadCsv(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  Result<CsvTable> table = ParseCsv(bytes);
  if (!table) {
    core::Error error = std::move(table).error();
    error.message = fmt::format("{}: {}", path.string(), error.message);
    return error;
  }
  return table;
}

// ---- expectations ----

Json Expectation::ToJson() const {
  Json out = {{"expect", expect}, {"severity", severity}};
  if (!column.empty())
    out["column"] = column;
  if (!type.empty())
    out["type"] = type;
  if (min)
    out["min"] = *min;
  if (max)
    out["max"] = *max;
  if (!values.empty())
    out["values"] = values;
  if (!pattern.empty())
    out["pattern"] = pattern;
  return out;
}

Result<Expectation> ExpectationFromJson(const Json& json, std::string_view location) {
  const std::string prefix = fmt::format("{}.", location);
  auto field = [&](std::string_view key) { return prefix + std::string(key); };
  ASSIGN_OR_RETURN(ObjectReader r, ObjectReader::Of(json, prefix));
  Expectation out;
  ASSIGN_OR_RETURN(out.expect, r.RequiredString("expect"));
  auto kind = KindKeys().find(out.expect);
  if (kind == KindKeys().end()) {
    std::vector<std::string> known;
    for (const auto& [name, _] : KindKeys())
      known.push_back(name);
    return core::InvalidArgument(fmt::format("field \"{}\": unknown expectation \"{}\" (one of {})",
                                             field("expect"), out.expect, Join(known, ", ")),
                                 field("expect"));
  }
  for (const auto& [key, _] : json.items()) {
    if (!AllKeys().contains(key)) {
      return core::InvalidArgument(fmt::format("field \"{}\": unknown field", field(key)),
                                   field(key));
    }
    if (key != "expect" && key != "severity" && !kind->second.contains(key)) {
      return core::InvalidArgument(
          fmt::format("field \"{}\": does not apply to expect: {}", field(key), out.expect),
          field(key));
    }
  }

  ASSIGN_OR_RETURN(auto severity, r.OptionalString("severity"));
  out.severity = severity.value_or("error");
  if (out.severity != "error" && out.severity != "warning") {
    return core::InvalidArgument(fmt::format("field \"{}\": must be error or warning, got \"{}\"",
                                             field("severity"), out.severity),
                                 field("severity"));
  }
  if (kind->second.contains("column")) {
    ASSIGN_OR_RETURN(out.column, r.RequiredString("column"));
  }
  if (out.expect == "type") {
    ASSIGN_OR_RETURN(out.type, r.RequiredString("type"));
    if (out.type != "int" && out.type != "float" && out.type != "bool" && out.type != "string") {
      return core::InvalidArgument(
          fmt::format("field \"{}\": must be int, float, bool or string, got \"{}\"", field("type"),
                      out.type),
          field("type"));
    }
  }
  if (kind->second.contains("min")) {
    ASSIGN_OR_RETURN(out.min, r.OptionalNumber("min"));
    ASSIGN_OR_RETURN(out.max, r.OptionalNumber("max"));
    if (!out.min && !out.max) {
      return core::InvalidArgument(
          fmt::format("field \"{}\": {} needs min, max or both", field("min"), out.expect),
          field("min"));
    }
    if (out.min && out.max && *out.min > *out.max) {
      return core::InvalidArgument(
          fmt::format("field \"{}\": {} is greater than max {}", field("min"), *out.min, *out.max),
          field("min"));
    }
  }
  if (out.expect == "allowed_values") {
    ASSIGN_OR_RETURN(Json values, r.OptionalArray("values"));
    if (values.empty()) {
      return core::InvalidArgument(
          fmt::format("field \"{}\": must list at least one value", field("values")),
          field("values"));
    }
    for (size_t i = 0; i < values.size(); ++i) {
      const Json& v = values[i];
      // YAML's `values: [0, 1]` arrives as numbers; compare them as their text.
      if (v.is_string()) {
        out.values.push_back(v.get<std::string>());
      } else if (v.is_number() || v.is_boolean()) {
        out.values.push_back(v.dump());
      } else {
        std::string f = fmt::format("{}[{}]", field("values"), i);
        return core::InvalidArgument(
            fmt::format("field \"{}\": must be a string, got {}", f, core::JsonTypeName(v)), f);
      }
    }
  }
  if (out.expect == "regex") {
    ASSIGN_OR_RETURN(out.pattern, r.RequiredString("pattern"));
    Result<std::regex> re = CompileRegex(out.pattern);
    if (!re) {
      return core::InvalidArgument(
          fmt::format("field \"{}\": not a valid ECMAScript regex {}: {}", field("pattern"),
                      QuoteCell(out.pattern), re.error().message),
          field("pattern"));
    }
  }
  RETURN_IF_ERROR(r.Finish());
  return out;
}

Json ExpectationResult::ToJson() const {
  return {{"expectation", expectation.ToJson()},
          {"passed", passed},
          {"failing_rows", failing_rows},
          {"examples", examples},
          {"detail", detail}};
}

Json ValidationReport::ToJson() const {
  Json results_json = Json::array();
  for (const auto& r : results)
    results_json.push_back(r.ToJson());
  return {{"passed", passed}, {"rows", rows}, {"columns", columns}, {"results", results_json}};
}

ValidationReport Validate(const CsvTable& table, const std::vector<Expectation>& expectations) {
  ValidationReport report;
  report.rows = static_cast<int64_t>(table.rows.size());
  report.columns = table.header;
  for (const auto& e : expectations) {
    ExpectationResult result = Check(table, e);
    if (!result.passed && e.severity != "warning")
      report.passed = false;
    report.results.push_back(std::move(result));
  }
  return report;
}

Result<ValidationReport> ValidateCsv(const std::filesystem::path& csv,
                                     const std::vector<Expectation>& expectations) {
  ASSIGN_OR_RETURN(CsvTable table, ReadCsv(csv));
  return Validate(table, expectations);
}

// ---- digests and profiles ----

// The path itself is followed when it is a symlink (a dataset path such as
// data/latest -> v3 names what it points at); links inside a directory are not.
Result<std::string> DigestPath(const std::filesystem::path& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st))
    return core::NotFound(fmt::format("{}: no such file or directory", path.string()));
  if (fs::is_directory(st)) {
    ASSIGN_OR_RETURN(DirectoryDigest d, DigestDirectory(path));
    return d.digest;
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  return DigestOfBytes(bytes);
}

Json DatasetProfile::ToJson() const {
  Json out = {{"digest", digest}, {"bytes", bytes}};
  if (rows)
    out["rows"] = *rows;
  if (rows || !columns.empty()) {
    Json schema = Json::array();
    for (const auto& c : columns)
      schema.push_back({{"name", c.name}, {"type", c.type}, {"missing", c.missing}});
    out["schema"] = schema;
  }
  return out;
}

// A ".csv" (any case) that does not parse is an error rather than a profile
// without schema: whoever named it .csv meant it to be one.
Result<DatasetProfile> ProfilePath(const std::filesystem::path& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st))
    return core::NotFound(fmt::format("{}: no such file or directory", path.string()));
  DatasetProfile profile;
  if (fs::is_directory(st)) {
    ASSIGN_OR_RETURN(DirectoryDigest d, DigestDirectory(path));
    profile.digest = std::move(d.digest);
    profile.bytes = d.bytes;
    return profile;
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  profile.digest = DigestOfBytes(bytes);
  profile.bytes = static_cast<int64_t>(bytes.size());
  if (!EqualsIgnoreCase(path.extension().string(), ".csv"))
    return profile;
  Result<CsvTable> parsed = ParseCsv(bytes);
  if (!parsed) {
    core::Error error = std::move(parsed).error();
    error.message = fmt::format("{}: {}", path.string(), error.message);
    return error;
  }
  const CsvTable& table = *parsed;
  profile.rows = static_cast<int64_t>(table.rows.size());
  for (size_t c = 0; c < table.header.size(); ++c) {
    ColumnProfile column;
    column.name = table.header[c];
    TypeWidener widener;
    for (const auto& row : table.rows) {
      CellType t = Classify(row[c]);
      if (t == CellType::kNull)
        ++column.missing;
      widener.Add(t);
    }
    column.type = widener.Name();
    profile.columns.push_back(std::move(column));
  }
  return profile;
}

}  // namespace kervan::pipelines
