// Reference profiles: what monitoring remembers about a model's training or
// baseline data, so that later data can be compared with it without keeping
// the data itself. Pure (no I/O: CSV arrives as text), thread-safe, depends
// on core only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/json.h"
#include "core/result.h"

namespace kervan::monitoring {

using core::Json;
using core::Result;

// One column of tabular data: numeric values (NaN or any non-finite value =
// missing) or categorical strings (nullopt = missing).
struct Column {
  using Numeric = std::vector<double>;
  using Categorical = std::vector<std::optional<std::string>>;

  std::string name;
  std::variant<Numeric, Categorical> values;

  bool is_numeric() const { return values.index() == 0; }
  const Numeric& numeric() const { return std::get<0>(values); }
  const Categorical& categorical() const { return std::get<1>(values); }
  size_t size() const;
};

struct CsvOptions {
  // Columns read as categorical even when every cell is a number (integer
  // codes such as zip codes or class ids).
  std::vector<std::string> categorical;
  // Columns left out (the label, ids, timestamps).
  std::vector<std::string> skip;
};

// Parses RFC 4180 CSV text (quoted fields, "" inside quotes, LF or CRLF line
// ends, a final line end optional) whose first record is the header. A
// column is numeric when every non-empty cell parses completely as a finite
// number (std::from_chars: no spaces, no leading '+'), otherwise
// categorical; an empty cell (quoted or not) is missing in both. Blank lines
// are skipped (as pandas does). Columns keep header order.
// Errors are kInvalidArgument naming the row (the header is row 1) and the
// column: a record with the wrong number of fields, an unterminated or
// stray quote, an empty or duplicate header name, an option naming a column
// the header lacks.
Result<std::vector<Column>> ColumnsFromCsv(std::string_view text, const CsvOptions& options = {});

enum class FeatureType { kNumeric, kCategorical };
std::string_view FeatureTypeName(FeatureType t);  // "numeric" | "categorical"

// The quantiles a numeric profile keeps, in this order.
inline constexpr double kProfileQuantiles[] = {0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99};

struct FeatureProfile {
  std::string name;
  FeatureType type = FeatureType::kNumeric;
  int64_t count = 0;    // non-missing values
  int64_t missing = 0;  // count + missing = the reference's rows

  // Numeric; all zero / empty when count == 0.
  double min = 0, max = 0, mean = 0;
  double std = 0;                 // population standard deviation (ddof = 0, as numpy.std)
  std::vector<double> quantiles;  // at kProfileQuantiles, numpy.quantile (linear)
  // Histogram for PSI: inner edges at the reference deciles (bins-1 values,
  // stats::QuantileEdges) and the reference's count per bin.
  std::vector<double> histogram_edges;
  std::vector<int64_t> histogram_counts;
  // Sorted ascending. All reference values when count <= sample_limit;
  // otherwise sample_limit order statistics, the k-th being the value of
  // rank floor((k + 1/2) * count / sample_limit) (0-based): its ECDF is
  // within 1/(2 * sample_limit) of the full reference ECDF everywhere, so a
  // KS statistic computed from it is off by at most that much (a
  // deterministic approximation; Wasserstein and PSI shift by a similarly
  // bounded share of mass).
  std::vector<double> sample;

  // Categorical: category -> count for the most frequent categories (ties
  // broken by name), and the summed count of the categories left out.
  std::map<std::string, int64_t> frequencies;
  int64_t other_count = 0;

  bool sample_is_complete() const { return static_cast<int64_t>(sample.size()) == count; }
  Json ToJson() const;
  // Validates every field; errors name it with `prefix` ("features[3].std").
  static Result<FeatureProfile> FromJson(const Json& json, const std::string& prefix = "");
};

struct ProfileOptions {
  int64_t sample_limit = 5000;  // >= 1
  int histogram_bins = 10;      // >= 1
  int max_categories = 1000;    // >= 1
};

struct Profile {
  int64_t rows = 0;
  std::vector<FeatureProfile> features;

  const FeatureProfile* Find(std::string_view name) const;
  // {"rows": n, "features": [FeatureProfile...]}; FromJson(ToJson()) gives
  // an equal profile (numbers round-trip exactly).
  Json ToJson() const;
  static Result<Profile> FromJson(const Json& json);
};

// Profiles each column. kInvalidArgument when columns differ in length,
// two share a name, or an option is out of range.
Result<Profile> BuildProfile(std::span<const Column> columns, const ProfileOptions& options = {});

}  // namespace kervan::monitoring
