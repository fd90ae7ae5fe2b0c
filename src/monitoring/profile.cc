// CSV columns and reference profiles (profile.h).
#include "monitoring/profile.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "monitoring/stats.h"

namespace kervan::monitoring {
namespace {

using core::InvalidArgument;

// ---------------------------------------------------------------------------
// CSV

class CsvReader {
 public:
  explicit CsvReader(std::string_view text) : text_(text) {}

  // Reads the next non-blank record into `fields`; false at the end.
  // `row` is the record's number (the header is 1), for messages.
  Result<bool> Next(std::vector<std::string>& fields, int64_t row) {
    while (pos_ < text_.size() && (text_[pos_] == '\n' || text_[pos_] == '\r'))
      pos_ += 1;  // blank lines
    if (pos_ >= text_.size())
      return false;
    fields.clear();
    while (true) {
      std::string field;
      if (text_[pos_] == '"') {
        ++pos_;
        while (true) {
          const size_t q = text_.find('"', pos_);
          if (q == std::string_view::npos) {
            return InvalidArgument(fmt::format("csv row {}, field {}: unterminated quoted field",
                                               row, fields.size() + 1),
                                   "csv");
          }
          field.append(text_.substr(pos_, q - pos_));
          pos_ = q + 1;
          if (pos_ < text_.size() && text_[pos_] == '"') {  // "" inside quotes
            field.push_back('"');
            ++pos_;
            continue;
          }
          break;
        }
        if (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n' &&
            text_[pos_] != '\r') {
          return InvalidArgument(fmt::format("csv row {}, field {}: characters after the closing "
                                             "quote",
                                             row, fields.size() + 1),
                                 "csv");
        }
      } else {
        const size_t end = text_.find_first_of(",\r\n", pos_);
        const std::string_view cell =
            text_.substr(pos_, end == std::string_view::npos ? std::string_view::npos : end - pos_);
        if (cell.find('"') != std::string_view::npos) {
          return InvalidArgument(
              fmt::format("csv row {}, field {}: a quote inside an unquoted field", row,
                          fields.size() + 1),
              "csv");
        }
        field.assign(cell);
        pos_ = end == std::string_view::npos ? text_.size() : end;
      }
      fields.push_back(std::move(field));
      if (pos_ >= text_.size())
        return true;
      if (text_[pos_] == ',') {
        ++pos_;
        if (pos_ >= text_.size()) {  // a trailing comma ends with an empty field
          fields.emplace_back();
          return true;
        }
        continue;
      }
      if (text_[pos_] == '\r')
        ++pos_;
      if (pos_ < text_.size() && text_[pos_] == '\n')
        ++pos_;
      return true;
    }
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

bool ParseFiniteNumber(std::string_view s, double& out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc() && ptr == end && std::isfinite(out);
}

// ---------------------------------------------------------------------------
// Profiles

FeatureProfile ProfileNumeric(const std::string& name, const Column::Numeric& values,
                              const ProfileOptions& options) {
  FeatureProfile f;
  f.name = name;
  f.type = FeatureType::kNumeric;
  std::vector<double> sorted;
  sorted.reserve(values.size());
  for (double v : values)
    if (std::isfinite(v))
      sorted.push_back(v);
  std::sort(sorted.begin(), sorted.end());
  f.count = static_cast<int64_t>(sorted.size());
  f.missing = static_cast<int64_t>(values.size()) - f.count;
  if (sorted.empty())
    return f;
  f.min = sorted.front();
  f.max = sorted.back();
  double sum = 0;
  for (double v : sorted)
    sum += v;
  f.mean = sum / static_cast<double>(f.count);
  double ss = 0;
  for (double v : sorted)
    ss += (v - f.mean) * (v - f.mean);
  f.std = std::sqrt(ss / static_cast<double>(f.count));
  for (double q : kProfileQuantiles)
    f.quantiles.push_back(stats::Quantile(sorted, q));
  f.histogram_edges = stats::QuantileEdges(sorted, options.histogram_bins);
  f.histogram_counts.assign(f.histogram_edges.size() + 1, 0);
  {
    size_t bin = 0;
    for (double v : sorted) {  // sorted: the bin only moves right
      while (bin < f.histogram_edges.size() && v >= f.histogram_edges[bin])
        ++bin;
      ++f.histogram_counts[bin];
    }
  }
  if (f.count <= options.sample_limit) {
    f.sample = std::move(sorted);
  } else {
    const int64_t m = options.sample_limit;
    f.sample.reserve(static_cast<size_t>(m));
    for (int64_t k = 0; k < m; ++k) {
      // floor((k + 1/2) * n / m) in integers: (2k + 1) * n / (2m).
      const auto idx = static_cast<size_t>((2 * k + 1) * f.count / (2 * m));
      f.sample.push_back(sorted[idx]);
    }
  }
  return f;
}

FeatureProfile ProfileCategorical(const std::string& name, const Column::Categorical& values,
                                  const ProfileOptions& options) {
  FeatureProfile f;
  f.name = name;
  f.type = FeatureType::kCategorical;
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& v : values) {
    if (!v) {
      ++f.missing;
      continue;
    }
    ++f.count;
    ++counts[*v];
  }
  std::vector<std::pair<std::string, int64_t>> ranked(counts.begin(), counts.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  for (size_t i = 0; i < ranked.size(); ++i) {
    if (static_cast<int64_t>(i) < options.max_categories)
      f.frequencies.emplace(std::move(ranked[i].first), ranked[i].second);
    else
      f.other_count += ranked[i].second;
  }
  return f;
}

Json NumbersToJson(const std::vector<double>& v) {
  Json out = Json::array();
  for (double x : v)
    out.push_back(x);
  return out;
}

Result<double> ReadFinite(core::ObjectReader& r, const std::string& key,
                          const std::string& prefix) {
  ASSIGN_OR_RETURN(std::optional<double> v, r.OptionalNumber(key));
  if (!v || !std::isfinite(*v)) {
    return InvalidArgument(fmt::format("field \"{}{}\": must be a finite number", prefix, key),
                           prefix + key);
  }
  return *v;
}

Result<int64_t> ReadCount(core::ObjectReader& r, const std::string& key,
                          const std::string& prefix) {
  ASSIGN_OR_RETURN(std::optional<int64_t> v, r.OptionalInt(key, 0, INT64_MAX));
  if (!v)
    return InvalidArgument(fmt::format("field \"{}{}\": is required", prefix, key), prefix + key);
  return *v;
}

Result<std::vector<double>> ReadNumbers(const Json& array, const std::string& field) {
  if (!array.is_array()) {
    return InvalidArgument(
        fmt::format("field \"{}\": must be an array, got {}", field, core::JsonTypeName(array)),
        field);
  }
  std::vector<double> out;
  out.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    if (!array[i].is_number() || !std::isfinite(array[i].get<double>())) {
      return InvalidArgument(fmt::format("field \"{}[{}]\": must be a finite number", field, i),
                             fmt::format("{}[{}]", field, i));
    }
    out.push_back(array[i].get<double>());
  }
  return out;
}

std::string QuantileKey(double q) {
  return fmt::format("p{}", static_cast<int>(std::lround(q * 100)));
}

}  // namespace

size_t Column::size() const {
  return is_numeric() ? numeric().size() : categorical().size();
}

std::string_view FeatureTypeName(FeatureType t) {
  return t == FeatureType::kNumeric ? "numeric" : "categorical";
}

Result<std::vector<Column>> ColumnsFromCsv(std::string_view text, const CsvOptions& options) {
  CsvReader reader(text);
  std::vector<std::string> header;
  ASSIGN_OR_RETURN(bool has_header, reader.Next(header, 1));
  if (!has_header)
    return InvalidArgument("csv: no header row", "csv");
  std::set<std::string> names;
  for (size_t c = 0; c < header.size(); ++c) {
    if (header[c].empty()) {
      return InvalidArgument(fmt::format("csv row 1: column {} has an empty name", c + 1), "csv");
    }
    if (!names.insert(header[c]).second) {
      return InvalidArgument(fmt::format("csv row 1: column \"{}\" appears twice", header[c]),
                             header[c]);
    }
  }
  for (const auto* list : {&options.categorical, &options.skip}) {
    for (const auto& name : *list) {
      if (!names.contains(name)) {
        return InvalidArgument(fmt::format("field \"{}\": column \"{}\" is not in the csv header",
                                           list == &options.skip ? "skip" : "categorical", name),
                               list == &options.skip ? "skip" : "categorical");
      }
    }
  }

  std::vector<std::vector<std::string>> cells(header.size());
  std::vector<std::string> fields;
  for (int64_t row = 2;; ++row) {
    ASSIGN_OR_RETURN(bool more, reader.Next(fields, row));
    if (!more)
      break;
    if (fields.size() != header.size()) {
      return InvalidArgument(
          fmt::format("csv row {}: expected {} fields, got {}", row, header.size(), fields.size()),
          "csv");
    }
    for (size_t c = 0; c < fields.size(); ++c)
      cells[c].push_back(std::move(fields[c]));
  }

  auto listed = [](const std::vector<std::string>& list, const std::string& name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  std::vector<Column> columns;
  for (size_t c = 0; c < header.size(); ++c) {
    if (listed(options.skip, header[c]))
      continue;
    Column col;
    col.name = header[c];
    bool numeric = !listed(options.categorical, header[c]);
    Column::Numeric numbers;
    if (numeric) {
      numbers.reserve(cells[c].size());
      for (const auto& cell : cells[c]) {
        double v = 0;
        if (cell.empty()) {
          numbers.push_back(std::nan(""));
        } else if (ParseFiniteNumber(cell, v)) {
          numbers.push_back(v);
        } else {
          numeric = false;
          break;
        }
      }
    }
    if (numeric) {
      col.values = std::move(numbers);
    } else {
      Column::Categorical strings;
      strings.reserve(cells[c].size());
      for (auto& cell : cells[c]) {
        if (cell.empty())
          strings.emplace_back();
        else
          strings.emplace_back(std::move(cell));
      }
      col.values = std::move(strings);
    }
    columns.push_back(std::move(col));
  }
  return columns;
}

// ---------------------------------------------------------------------------

Json FeatureProfile::ToJson() const {
  Json out{{"name", name}, {"type", FeatureTypeName(type)}, {"count", count}, {"missing", missing}};
  if (type == FeatureType::kNumeric) {
    out["min"] = min;
    out["max"] = max;
    out["mean"] = mean;
    out["std"] = std;
    Json q = Json::object();
    for (size_t i = 0; i < quantiles.size(); ++i)
      q[QuantileKey(kProfileQuantiles[i])] = quantiles[i];
    out["quantiles"] = q;
    Json counts = Json::array();
    for (int64_t c : histogram_counts)
      counts.push_back(c);
    out["histogram"] = {{"edges", NumbersToJson(histogram_edges)}, {"counts", counts}};
    out["sample"] = NumbersToJson(sample);
  } else {
    Json freq = Json::object();
    for (const auto& [k, v] : frequencies)
      freq[k] = v;
    out["frequencies"] = freq;
    out["other_count"] = other_count;
  }
  return out;
}

Result<FeatureProfile> FeatureProfile::FromJson(const Json& json, const std::string& prefix) {
  FeatureProfile f;
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(json, prefix));
  ASSIGN_OR_RETURN(f.name, r.RequiredString("name"));
  ASSIGN_OR_RETURN(std::string type, r.RequiredString("type"));
  if (type == "numeric") {
    f.type = FeatureType::kNumeric;
  } else if (type == "categorical") {
    f.type = FeatureType::kCategorical;
  } else {
    return InvalidArgument(
        fmt::format("field \"{}type\": must be numeric or categorical, got \"{}\"", prefix, type),
        prefix + "type");
  }
  ASSIGN_OR_RETURN(f.count, ReadCount(r, "count", prefix));
  ASSIGN_OR_RETURN(f.missing, ReadCount(r, "missing", prefix));

  if (f.type == FeatureType::kNumeric) {
    ASSIGN_OR_RETURN(f.min, ReadFinite(r, "min", prefix));
    ASSIGN_OR_RETURN(f.max, ReadFinite(r, "max", prefix));
    ASSIGN_OR_RETURN(f.mean, ReadFinite(r, "mean", prefix));
    ASSIGN_OR_RETURN(f.std, ReadFinite(r, "std", prefix));
    if (f.min > f.max || f.std < 0) {
      return InvalidArgument(
          fmt::format("field \"{}std\": min <= max and std >= 0 required", prefix),
          prefix + (f.std < 0 ? "std" : "min"));
    }
    ASSIGN_OR_RETURN(Json q, r.OptionalObject("quantiles"));
    if (f.count > 0) {
      const std::string qp = prefix + "quantiles.";
      ASSIGN_OR_RETURN(auto qr, core::ObjectReader::Of(q, qp));
      for (double level : kProfileQuantiles) {
        ASSIGN_OR_RETURN(double v, ReadFinite(qr, QuantileKey(level), qp));
        f.quantiles.push_back(v);
      }
      RETURN_IF_ERROR(qr.Finish());
    } else if (!q.empty()) {
      return InvalidArgument(
          fmt::format("field \"{}quantiles\": must be empty when count is 0", prefix),
          prefix + "quantiles");
    }

    ASSIGN_OR_RETURN(Json hist, r.OptionalObject("histogram"));
    const std::string hp = prefix + "histogram.";
    ASSIGN_OR_RETURN(auto hr, core::ObjectReader::Of(hist, hp));
    ASSIGN_OR_RETURN(Json edges, hr.OptionalArray("edges"));
    ASSIGN_OR_RETURN(f.histogram_edges, ReadNumbers(edges, hp + "edges"));
    ASSIGN_OR_RETURN(Json counts, hr.OptionalArray("counts"));
    int64_t total = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      if (!counts[i].is_number_integer() || counts[i].get<int64_t>() < 0) {
        return InvalidArgument(
            fmt::format("field \"{}counts[{}]\": must be a non-negative integer", hp, i),
            fmt::format("{}counts[{}]", hp, i));
      }
      f.histogram_counts.push_back(counts[i].get<int64_t>());
      total += f.histogram_counts.back();
    }
    RETURN_IF_ERROR(hr.Finish());
    if (!std::is_sorted(f.histogram_edges.begin(), f.histogram_edges.end())) {
      return InvalidArgument(fmt::format("field \"{}edges\": must be ascending", hp), hp + "edges");
    }
    if (f.count > 0 &&
        (f.histogram_counts.size() != f.histogram_edges.size() + 1 || total != f.count)) {
      return InvalidArgument(
          fmt::format("field \"{}counts\": must have one count more than edges, summing to count",
                      hp),
          hp + "counts");
    }

    ASSIGN_OR_RETURN(Json sample, r.OptionalArray("sample"));
    ASSIGN_OR_RETURN(f.sample, ReadNumbers(sample, prefix + "sample"));
    if (!std::is_sorted(f.sample.begin(), f.sample.end()) ||
        static_cast<int64_t>(f.sample.size()) > f.count || (f.count > 0 && f.sample.empty())) {
      return InvalidArgument(
          fmt::format("field \"{}sample\": must be ascending, non-empty and at most count values",
                      prefix),
          prefix + "sample");
    }
  } else {
    ASSIGN_OR_RETURN(Json freq, r.OptionalObject("frequencies"));
    int64_t total = 0;
    for (const auto& [k, v] : freq.items()) {
      if (!v.is_number_integer() || v.get<int64_t>() < 1) {
        return InvalidArgument(
            fmt::format("field \"{}frequencies.{}\": must be a positive integer", prefix, k),
            fmt::format("{}frequencies.{}", prefix, k));
      }
      f.frequencies.emplace(k, v.get<int64_t>());
      total += v.get<int64_t>();
    }
    ASSIGN_OR_RETURN(std::optional<int64_t> other, r.OptionalInt("other_count", 0, INT64_MAX));
    f.other_count = other.value_or(0);
    if (total + f.other_count != f.count) {
      return InvalidArgument(
          fmt::format("field \"{}frequencies\": counts sum to {}, expected count {}", prefix,
                      total + f.other_count, f.count),
          prefix + "frequencies");
    }
  }
  RETURN_IF_ERROR(r.Finish());
  return f;
}

const FeatureProfile* Profile::Find(std::string_view name) const {
  for (const auto& f : features)
    if (f.name == name)
      return &f;
  return nullptr;
}

Json Profile::ToJson() const {
  Json list = Json::array();
  for (const auto& f : features)
    list.push_back(f.ToJson());
  return {{"rows", rows}, {"features", list}};
}

Result<Profile> Profile::FromJson(const Json& json) {
  Profile p;
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(json, ""));
  ASSIGN_OR_RETURN(p.rows, ReadCount(r, "rows", ""));
  ASSIGN_OR_RETURN(Json features, r.OptionalArray("features"));
  std::set<std::string> names;
  for (size_t i = 0; i < features.size(); ++i) {
    const std::string prefix = fmt::format("features[{}].", i);
    ASSIGN_OR_RETURN(FeatureProfile f, FeatureProfile::FromJson(features[i], prefix));
    if (f.count + f.missing != p.rows) {
      return InvalidArgument(fmt::format("field \"{}missing\": count + missing must equal rows "
                                         "({} + {} != {})",
                                         prefix, f.count, f.missing, p.rows),
                             prefix + "missing");
    }
    if (!names.insert(f.name).second) {
      return InvalidArgument(
          fmt::format("field \"{}name\": feature \"{}\" appears twice", prefix, f.name),
          prefix + "name");
    }
    p.features.push_back(std::move(f));
  }
  RETURN_IF_ERROR(r.Finish());
  return p;
}

Result<Profile> BuildProfile(std::span<const Column> columns, const ProfileOptions& options) {
  if (options.sample_limit < 1 || options.histogram_bins < 1 || options.histogram_bins > 1000 ||
      options.max_categories < 1) {
    return InvalidArgument(
        "profile options: sample_limit and max_categories must be >= 1, histogram_bins in "
        "[1, 1000]",
        "options");
  }
  Profile p;
  std::set<std::string> names;
  for (size_t i = 0; i < columns.size(); ++i) {
    const Column& c = columns[i];
    if (i == 0)
      p.rows = static_cast<int64_t>(c.size());
    if (static_cast<int64_t>(c.size()) != p.rows) {
      return InvalidArgument(fmt::format("column \"{}\": has {} rows, column \"{}\" has {}", c.name,
                                         c.size(), columns[0].name, p.rows),
                             c.name);
    }
    if (!names.insert(c.name).second)
      return InvalidArgument(fmt::format("column \"{}\": appears twice", c.name), c.name);
    p.features.push_back(c.is_numeric() ? ProfileNumeric(c.name, c.numeric(), options)
                                        : ProfileCategorical(c.name, c.categorical(), options));
  }
  return p;
}

}  // namespace kervan::monitoring
