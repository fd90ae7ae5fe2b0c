// Pipeline specs. The YAML tree is walked node by node (not converted to JSON
// first) so that every error can name its location path and its line and
// column in the text the user wrote.
#include "pipelines/spec.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "pipelines/cron.h"

namespace kervan::pipelines {
namespace {

using core::Status;

// The same upper bounds as job specs (jobs/spec.cc): a step becomes a job.
constexpr int64_t kMaxGpus = 1024;
constexpr int64_t kMaxNodes = 128;
constexpr int64_t kMaxCpus = 16384;
constexpr int64_t kMaxMemoryMb = 64LL * 1024 * 1024;
constexpr int64_t kMaxRetries = 100;
constexpr int64_t kMaxTimeoutS = 366LL * 24 * 3600;
// Expectations are small; these bound what an alias-heavy document can cost.
constexpr int kMaxJsonDepth = 64;
constexpr int64_t kMaxJsonNodes = 100000;

// ---- locations and errors ----

std::string Child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string Index(const std::string& path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

core::Error At(const std::string& path, const YAML::Mark& mark, std::string_view what) {
  if (mark.is_null())
    return core::InvalidArgument(fmt::format("{}: {}", path, what), path);
  return core::InvalidArgument(
      fmt::format("{} (line {}, column {}): {}", path, mark.line + 1, mark.column + 1, what), path);
}

core::Error At(const std::string& path, const YAML::Node& node, std::string_view what) {
  return At(path, node.Mark(), what);
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty())
      out += sep;
    out += item;
  }
  return out;
}

std::string_view Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "null";
  }
}

// ---- YAML 1.2 core schema for plain scalars ----

enum class ScalarKind { kNull, kBool, kInt, kFloat, kString };

bool AllOf(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
bool IsOctDigit(char c) {
  return c >= '0' && c <= '7';
}
bool IsHexDigit(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

std::string_view StripSign(std::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-'))
    s.remove_prefix(1);
  return s;
}

bool IsDecimalInt(std::string_view s) {
  return AllOf(StripSign(s), IsDigit);
}

bool IsCoreInt(std::string_view s) {
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o')
    return AllOf(s.substr(2), IsOctDigit);
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x')
    return AllOf(s.substr(2), IsHexDigit);
  return IsDecimalInt(s);
}

bool IsCoreFloat(std::string_view s) {
  s = StripSign(s);
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && IsDigit(s[i]))
      ++i;
    return i - start;
  };
  size_t whole = digits();
  size_t fraction = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    fraction = digits();
  }
  if (whole == 0 && fraction == 0)
    return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-'))
      ++i;
    if (digits() == 0)
      return false;
  }
  return i == s.size();
}

bool IsCoreBool(std::string_view s, bool* value) {
  if (s == "true" || s == "True" || s == "TRUE") {
    *value = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *value = false;
    return true;
  }
  return false;
}

// Quoted scalars (and any explicit tag) stay strings; infinities and NaN are
// left as strings too, since JSON cannot hold them.
ScalarKind Classify(const YAML::Node& node) {
  if (node.IsNull())
    return ScalarKind::kNull;
  if (!node.IsScalar() || node.Tag() != "?")
    return ScalarKind::kString;
  const std::string& s = node.Scalar();
  bool b = false;
  if (IsCoreBool(s, &b))
    return ScalarKind::kBool;
  if (IsCoreInt(s))
    return ScalarKind::kInt;
  if (IsCoreFloat(s))
    return ScalarKind::kFloat;
  return ScalarKind::kString;
}

std::optional<int64_t> ToInt64(std::string_view s) {
  int base = 10;
  bool negative = false;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
    base = s[1] == 'o' ? 8 : 16;
    s.remove_prefix(2);
  } else if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude, base);
  if (ec != std::errc() || end != s.data() + s.size())
    return std::nullopt;
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  if (negative) {
    if (magnitude > kMax + 1)
      return std::nullopt;
    return magnitude == kMax + 1 ? INT64_MIN : -static_cast<int64_t>(magnitude);
  }
  if (magnitude > kMax)
    return std::nullopt;
  return static_cast<int64_t>(magnitude);
}

// strtod over the whole text; finite only.
std::optional<double> ToFiniteDouble(const std::string& s) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0])))
    return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v))
    return std::nullopt;
  return v;
}

// YAML -> JSON by the core schema, for the parts of a spec handed on as JSON.
// Aliases may make a node contain itself, hence the depth and size bounds
// (reported at `top`, the location the conversion started from).
Result<Json> YamlToJson(const YAML::Node& node, const std::string& path, const std::string& top,
                        int depth, int64_t* budget) {
  if (depth > kMaxJsonDepth || --*budget < 0) {
    return At(top, node,
              fmt::format("nested too deeply or too large (at most {} levels and {} values)",
                          kMaxJsonDepth, kMaxJsonNodes));
  }
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        ASSIGN_OR_RETURN(Json item, YamlToJson(node[i], Index(path, i), top, depth + 1, budget));
        out.push_back(std::move(item));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar())
          return At(path, kv.first, "keys must be scalars");
        const std::string& key = kv.first.Scalar();
        if (out.contains(key))
          return At(Child(path, key), kv.first, fmt::format("key \"{}\" given twice", key));
        ASSIGN_OR_RETURN(out[key], YamlToJson(kv.second, Child(path, key), top, depth + 1, budget));
      }
      return out;
    }
    case YAML::NodeType::Scalar:
      break;
    default:
      return Json(nullptr);
  }
  const std::string& text = node.Scalar();
  switch (Classify(node)) {
    case ScalarKind::kNull:
      return Json(nullptr);
    case ScalarKind::kBool:
      return Json(text[0] == 't' || text[0] == 'T');
    case ScalarKind::kInt:
      if (auto v = ToInt64(text))
        return Json(*v);
      if (IsDecimalInt(text)) {
        if (auto d = ToFiniteDouble(text))
          return Json(*d);
      }
      return Json(text);
    case ScalarKind::kFloat:
      if (auto d = ToFiniteDouble(text))
        return Json(*d);
      return Json(text);
    case ScalarKind::kString:
      break;
  }
  return Json(text);
}

// ---- reading mappings and scalars ----

// yaml-cpp's Node::operator= writes through to the node referred to, so the
// structs below keep Marks; Nodes are only ever copy-constructed, or rebound
// with reset().
struct Entry {
  std::string key;
  YAML::Node key_node, value;
};

// A mapping's entries in document order. Null reads as an empty mapping;
// duplicate keys and (when `allowed` is given) unknown keys are errors.
class MapReader {
 public:
  static Result<MapReader> Of(const YAML::Node& node, std::string path,
                              std::vector<std::string_view> allowed, bool any_keys = false) {
    MapReader r(std::move(path));
    if (node.IsNull())
      return r;
    if (!node.IsMap())
      return At(r.path_, node, fmt::format("must be a mapping, got {}", Describe(node)));
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        return At(r.path_, kv.first, "keys must be scalars");
      std::string key = kv.first.Scalar();
      if (r.Find(key) != nullptr)
        return At(Child(r.path_, key), kv.first, fmt::format("key \"{}\" given twice", key));
      if (!any_keys && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::vector<std::string> names(allowed.begin(), allowed.end());
        return At(Child(r.path_, key), kv.first,
                  fmt::format("unknown key \"{}\" (allowed: {})", key, Join(names, ", ")));
      }
      r.entries_.push_back({std::move(key), kv.first, kv.second});
    }
    return r;
  }
  static Result<MapReader> AnyKeys(const YAML::Node& node, std::string path) {
    return Of(node, std::move(path), {}, true);
  }

  const Entry* Find(std::string_view key) const {
    for (const auto& e : entries_) {
      if (e.key == key)
        return &e;
    }
    return nullptr;
  }
  const std::vector<Entry>& entries() const { return entries_; }
  const std::string& path() const { return path_; }
  std::string PathOf(std::string_view key) const { return Child(path_, key); }

 private:
  explicit MapReader(std::string path) : path_(std::move(path)) {}

  std::string path_;
  std::vector<Entry> entries_;
};

// Any non-null scalar, as text (YAML's `1` and `true` are strings here too).
Result<std::string> ScalarText(const YAML::Node& node, const std::string& path,
                               std::string_view what = "a string") {
  if (!node.IsScalar())
    return At(path, node, fmt::format("must be {}, got {}", what, Describe(node)));
  if (node.Scalar().find('\0') != std::string::npos)
    return At(path, node, "contains a NUL byte");
  return node.Scalar();
}

Result<std::string> NonEmptyText(const YAML::Node& node, const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(node, path));
  if (text.empty())
    return At(path, node, "must not be empty");
  return text;
}

Result<int64_t> IntIn(const YAML::Node& node, const std::string& path, int64_t min, int64_t max) {
  std::string what = fmt::format("an integer between {} and {}", min, max);
  if (Classify(node) != ScalarKind::kInt || !IsDecimalInt(node.Scalar())) {
    return At(path, node,
              node.IsScalar() ? fmt::format("must be {}, got \"{}\"", what, node.Scalar())
                              : fmt::format("must be {}, got {}", what, Describe(node)));
  }
  auto v = ToInt64(node.Scalar());
  if (!v || *v < min || *v > max)
    return At(path, node, fmt::format("must be {}, got {}", what, node.Scalar()));
  return *v;
}

Result<bool> Bool(const YAML::Node& node, const std::string& path) {
  bool value = false;
  if (Classify(node) != ScalarKind::kBool || !IsCoreBool(node.Scalar(), &value)) {
    return At(path, node,
              node.IsScalar() ? fmt::format("must be true or false, got \"{}\"", node.Scalar())
                              : fmt::format("must be true or false, got {}", Describe(node)));
  }
  return value;
}

// A sequence of non-empty strings; with `allow_scalar`, one string reads as a
// sequence of one.
Result<std::vector<std::pair<std::string, YAML::Mark>>> StringList(const YAML::Node& node,
                                                                   const std::string& path,
                                                                   bool allow_scalar) {
  std::vector<std::pair<std::string, YAML::Mark>> out;
  if (node.IsNull())
    return out;
  if (allow_scalar && node.IsScalar()) {
    ASSIGN_OR_RETURN(std::string text, NonEmptyText(node, path));
    out.emplace_back(std::move(text), node.Mark());
    return out;
  }
  if (!node.IsSequence())
    return At(path, node, fmt::format("must be a sequence of strings, got {}", Describe(node)));
  for (size_t i = 0; i < node.size(); ++i) {
    ASSIGN_OR_RETURN(std::string text, NonEmptyText(node[i], Index(path, i)));
    out.emplace_back(std::move(text), node[i].Mark());
  }
  return out;
}

// ---- names ----

bool IsLower(char c) {
  return c >= 'a' && c <= 'z';
}
bool IsAlpha(char c) {
  return IsLower(c) || (c >= 'A' && c <= 'Z');
}

// [a-z0-9][a-z0-9._-]{0,99}
bool IsPipelineName(std::string_view s) {
  if (s.empty() || s.size() > 100 || !(IsLower(s[0]) || IsDigit(s[0])))
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return IsLower(c) || IsDigit(c) || c == '.' || c == '_' || c == '-';
  });
}
constexpr std::string_view kPipelineNameRule = "[a-z0-9][a-z0-9._-]{0,99}";

// [A-Za-z_][A-Za-z0-9_-]{0,63}: steps, inputs, outputs, params. No dots, so
// "steps.a.outputs.b" splits without ambiguity.
bool IsLocalName(std::string_view s) {
  if (s.empty() || s.size() > 64 || !(IsAlpha(s[0]) || s[0] == '_'))
    return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlpha(c) || IsDigit(c) || c == '_' || c == '-'; });
}
constexpr std::string_view kLocalNameRule = "[A-Za-z_][A-Za-z0-9_-]{0,63}";

// Registered models and datasets, as the registry names models.
bool IsResourceName(std::string_view s) {
  if (s.empty() || s.size() > 128 || !(IsAlpha(s[0]) || IsDigit(s[0])))
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return IsAlpha(c) || IsDigit(c) || c == '.' || c == '_' || c == '-';
  });
}
constexpr std::string_view kResourceNameRule = "[A-Za-z0-9][A-Za-z0-9._-]{0,127}";

bool IsEnvName(std::string_view s) {
  if (s.empty() || IsDigit(s[0]))
    return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlpha(c) || IsDigit(c) || c == '_'; });
}

Status CheckName(bool ok, std::string_view what, std::string_view name, std::string_view rule,
                 const std::string& path, const YAML::Node& node) {
  if (ok)
    return core::Ok();
  return At(path, node, fmt::format("{} \"{}\" must match {}", what, name, rule));
}

// ---- placeholders ----

enum class PlaceholderKind { kUnknown, kInput, kOutput, kParam, kRunId, kStepDir };

struct Placeholder {
  PlaceholderKind kind = PlaceholderKind::kUnknown;
  std::string name;  // kInput, kOutput, kParam
  std::string text;  // as written, braces included
  size_t begin = 0, end = 0;
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Every "{{ ... }}" in `text`; an unclosed "{{" is literal text.
std::vector<Placeholder> FindPlaceholders(std::string_view text) {
  std::vector<Placeholder> out;
  size_t pos = 0;
  while ((pos = text.find("{{", pos)) != std::string_view::npos) {
    size_t close = text.find("}}", pos + 2);
    if (close == std::string_view::npos)
      break;
    Placeholder p;
    p.begin = pos;
    p.end = close + 2;
    p.text = std::string(text.substr(pos, p.end - pos));
    std::string_view inner = Trim(text.substr(pos + 2, close - pos - 2));
    if (inner == "run.id") {
      p.kind = PlaceholderKind::kRunId;
    } else if (inner == "step.dir") {
      p.kind = PlaceholderKind::kStepDir;
    } else {
      size_t dot = inner.find('.');
      std::string_view prefix = inner.substr(0, dot);
      std::string_view name = dot == std::string_view::npos ? "" : inner.substr(dot + 1);
      if (IsLocalName(name)) {
        p.name = std::string(name);
        if (prefix == "inputs")
          p.kind = PlaceholderKind::kInput;
        else if (prefix == "outputs")
          p.kind = PlaceholderKind::kOutput;
        else if (prefix == "params")
          p.kind = PlaceholderKind::kParam;
      }
    }
    out.push_back(std::move(p));
    pos = close + 2;
  }
  return out;
}

// A value as one shell word: as it is when it holds only characters the
// shell gives no meaning to, else single-quoted ('\'' for a quote).
std::string ShellWord(const std::string& value) {
  bool plain = !value.empty() && std::all_of(value.begin(), value.end(), [](unsigned char c) {
    return std::isalnum(c) || std::strchr("_./:=@,+-%", c) != nullptr;
  });
  if (plain)
    return value;
  std::string out = "'";
  for (char c : value) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// `shell`: the text is a shell script (a string command), so every value is
// substituted as one shell word and a parameter cannot inject shell syntax.
Result<std::string> Substitute(const std::string& text, const RenderContext& ctx,
                               const std::string& field, bool shell = false) {
  std::string out;
  size_t last = 0;
  for (const Placeholder& p : FindPlaceholders(text)) {
    out.append(text, last, p.begin - last);
    last = p.end;
    const std::string* value = nullptr;
    auto lookup = [&](const std::map<std::string, std::string>& m) {
      auto it = m.find(p.name);
      return it == m.end() ? nullptr : &it->second;
    };
    switch (p.kind) {
      case PlaceholderKind::kInput:
        value = lookup(ctx.inputs);
        break;
      case PlaceholderKind::kOutput:
        value = lookup(ctx.outputs);
        break;
      case PlaceholderKind::kParam:
        value = lookup(ctx.params);
        break;
      case PlaceholderKind::kRunId:
        value = ctx.run_id.empty() ? nullptr : &ctx.run_id;
        break;
      case PlaceholderKind::kStepDir:
        value = ctx.step_dir.empty() ? nullptr : &ctx.step_dir;
        break;
      case PlaceholderKind::kUnknown:
        break;
    }
    if (value == nullptr) {
      return core::InvalidArgument(fmt::format("{}: placeholder {} has no value", field, p.text),
                                   field);
    }
    out += shell ? ShellWord(*value) : *value;
  }
  out.append(text, last, std::string::npos);
  return out;
}

// ---- params ----

std::optional<ParamType> ParamTypeFromName(std::string_view name) {
  for (ParamType t : {ParamType::kString, ParamType::kInt, ParamType::kFloat, ParamType::kBool}) {
    if (ParamTypeName(t) == name)
      return t;
  }
  return std::nullopt;
}

// The canonical text of `value` as a `type`, or nullopt when it is not one.
std::optional<std::string> CanonicalParamValue(ParamType type, const std::string& value) {
  switch (type) {
    case ParamType::kString:
      return value;
    case ParamType::kInt: {
      if (!IsDecimalInt(value))
        return std::nullopt;
      auto v = ToInt64(value);
      if (!v)
        return std::nullopt;
      return std::to_string(*v);
    }
    case ParamType::kFloat:
      if (!ToFiniteDouble(value))
        return std::nullopt;
      return value;
    case ParamType::kBool: {
      std::string lower = value;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (lower == "true" || lower == "1" || lower == "yes")
        return std::string("true");
      if (lower == "false" || lower == "0" || lower == "no")
        return std::string("false");
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string_view ParamTypeRule(ParamType type) {
  switch (type) {
    case ParamType::kInt:
      return "an int (digits, optionally signed, within 64 bits)";
    case ParamType::kFloat:
      return "a finite float";
    case ParamType::kBool:
      return "a bool (true, false, 1, 0, yes, no)";
    case ParamType::kString:
      break;
  }
  return "a string";
}

ParamType InferParamType(const YAML::Node& node) {
  switch (Classify(node)) {
    case ScalarKind::kBool:
      return ParamType::kBool;
    case ScalarKind::kInt:
      return ToInt64(node.Scalar()) ? ParamType::kInt : ParamType::kFloat;
    case ScalarKind::kFloat:
      return ToFiniteDouble(node.Scalar()) ? ParamType::kFloat : ParamType::kString;
    default:
      return ParamType::kString;
  }
}

// A scalar's value as a `type`: plain ints in hex or octal are read by the
// core schema first, so `0x10` for an int param means 16.
Result<std::string> ParamValue(ParamType type, const YAML::Node& node, const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(node, path, "a scalar"));
  if (type == ParamType::kInt && Classify(node) == ScalarKind::kInt) {
    if (auto v = ToInt64(text))
      text = std::to_string(*v);
  }
  if (type == ParamType::kBool && Classify(node) == ScalarKind::kBool)
    text = text[0] == 't' || text[0] == 'T' ? "true" : "false";
  auto canonical = CanonicalParamValue(type, text);
  if (!canonical)
    return At(path, node, fmt::format("must be {}, got \"{}\"", ParamTypeRule(type), text));
  return *canonical;
}

Result<std::vector<ParamDecl>> ParseParams(const YAML::Node& node) {
  ASSIGN_OR_RETURN(MapReader r, MapReader::AnyKeys(node, "params"));
  std::vector<ParamDecl> out;
  for (const Entry& e : r.entries()) {
    const std::string path = r.PathOf(e.key);
    RETURN_IF_ERROR(
        CheckName(IsLocalName(e.key), "param name", e.key, kLocalNameRule, path, e.key_node));
    ParamDecl p;
    p.name = e.key;
    if (e.value.IsMap()) {
      ASSIGN_OR_RETURN(MapReader m, MapReader::Of(e.value, path, {"type", "default"}));
      const Entry* type = m.Find("type");
      const Entry* def = m.Find("default");
      if (type != nullptr) {
        ASSIGN_OR_RETURN(std::string name, ScalarText(type->value, m.PathOf("type")));
        auto t = ParamTypeFromName(name);
        if (!t) {
          return At(m.PathOf("type"), type->value,
                    fmt::format("unknown param type \"{}\" (int, float, string, bool)", name));
        }
        p.type = *t;
      } else if (def != nullptr && !def->value.IsNull()) {
        p.type = InferParamType(def->value);
      }
      if (def != nullptr && !def->value.IsNull()) {
        ASSIGN_OR_RETURN(p.default_value, ParamValue(p.type, def->value, m.PathOf("default")));
      }
    } else if (e.value.IsScalar()) {
      p.type = InferParamType(e.value);
      ASSIGN_OR_RETURN(p.default_value, ParamValue(p.type, e.value, path));
    } else {
      return At(path, e.value.IsNull() ? e.key_node : e.value,
                fmt::format("a param is a default value or {{type: ..., default: ...}}, got {}",
                            Describe(e.value)));
    }
    out.push_back(std::move(p));
  }
  return out;
}

const ParamDecl* FindParam(const std::vector<ParamDecl>& params, std::string_view name) {
  for (const auto& p : params) {
    if (p.name == name)
      return &p;
  }
  return nullptr;
}

std::vector<std::string> ParamNames(const std::vector<ParamDecl>& params) {
  std::vector<std::string> names;
  for (const auto& p : params)
    names.push_back(p.name);
  std::sort(names.begin(), names.end());
  return names;
}

// ---- resources and defaults ----

struct PartialResources {
  std::optional<int64_t> gpus, cpus, memory_mb, nodes;
  std::optional<std::string> gpu_type;
  YAML::Mark mark;
  std::string path;
  bool present = false;
};

Result<PartialResources> ParseResources(const YAML::Node& node, const std::string& path) {
  ASSIGN_OR_RETURN(MapReader r,
                   MapReader::Of(node, path, {"gpus", "gpu_type", "cpus", "memory_mb", "nodes"}));
  PartialResources out;
  out.mark = node.Mark();
  out.path = path;
  out.present = true;
  auto read_int = [&](std::string_view key, int64_t min, int64_t max,
                      std::optional<int64_t>* into) -> Status {
    if (const Entry* e = r.Find(key)) {
      ASSIGN_OR_RETURN(*into, IntIn(e->value, r.PathOf(key), min, max));
    }
    return core::Ok();
  };
  RETURN_IF_ERROR(read_int("gpus", 0, kMaxGpus, &out.gpus));
  RETURN_IF_ERROR(read_int("cpus", 0, kMaxCpus, &out.cpus));
  RETURN_IF_ERROR(read_int("memory_mb", 0, kMaxMemoryMb, &out.memory_mb));
  RETURN_IF_ERROR(read_int("nodes", 1, kMaxNodes, &out.nodes));
  if (const Entry* e = r.Find("gpu_type")) {
    ASSIGN_OR_RETURN(out.gpu_type, ScalarText(e->value, r.PathOf("gpu_type")));
  }
  return out;
}

struct EnvValue {
  std::string value;
  YAML::Mark mark;
  std::string path;
};

Result<std::map<std::string, EnvValue>> ParseEnv(const YAML::Node& node, const std::string& path) {
  ASSIGN_OR_RETURN(MapReader r, MapReader::AnyKeys(node, path));
  std::map<std::string, EnvValue> out;
  for (const Entry& e : r.entries()) {
    const std::string field = r.PathOf(e.key);
    if (!IsEnvName(e.key)) {
      return At(field, e.key_node,
                fmt::format("\"{}\" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", e.key));
    }
    if (e.value.IsNull())
      return At(field, e.key_node, "must be a string (write \"\" for an empty value)");
    ASSIGN_OR_RETURN(std::string value, ScalarText(e.value, field));
    out.emplace(e.key, EnvValue{std::move(value), e.value.Mark(), field});
  }
  return out;
}

// Fields a step and `defaults:` share; a step's own fields override the
// defaults (resources and env key by key).
struct CommonFields {
  std::optional<std::string> priority_class, image;
  std::optional<int64_t> retries, timeout_s;
  std::optional<bool> cache;
  PartialResources resources;
  std::map<std::string, EnvValue> env;
};

Result<CommonFields> ParseCommon(const MapReader& r) {
  CommonFields out;
  if (const Entry* e = r.Find("priority_class")) {
    ASSIGN_OR_RETURN(out.priority_class, NonEmptyText(e->value, r.PathOf("priority_class")));
  }
  if (const Entry* e = r.Find("image")) {
    ASSIGN_OR_RETURN(out.image, ScalarText(e->value, r.PathOf("image")));
  }
  if (const Entry* e = r.Find("retries")) {
    ASSIGN_OR_RETURN(out.retries, IntIn(e->value, r.PathOf("retries"), 0, kMaxRetries));
  }
  if (const Entry* e = r.Find("timeout_s")) {
    ASSIGN_OR_RETURN(out.timeout_s, IntIn(e->value, r.PathOf("timeout_s"), 0, kMaxTimeoutS));
  }
  if (const Entry* e = r.Find("cache")) {
    ASSIGN_OR_RETURN(out.cache, Bool(e->value, r.PathOf("cache")));
  }
  if (const Entry* e = r.Find("resources")) {
    ASSIGN_OR_RETURN(out.resources, ParseResources(e->value, r.PathOf("resources")));
  }
  if (const Entry* e = r.Find("env")) {
    ASSIGN_OR_RETURN(out.env, ParseEnv(e->value, r.PathOf("env")));
  }
  return out;
}

Result<jobs::Resources> MergeResources(const PartialResources& step,
                                       const PartialResources& defaults) {
  jobs::Resources out;
  auto pick = [](const std::optional<int64_t>& a, const std::optional<int64_t>& b, int64_t dflt) {
    return a ? *a : b ? *b : dflt;
  };
  out.gpus = static_cast<int>(pick(step.gpus, defaults.gpus, 0));
  out.cpus = static_cast<int>(pick(step.cpus, defaults.cpus, 0));
  out.memory_mb = pick(step.memory_mb, defaults.memory_mb, 0);
  out.nodes = static_cast<int>(pick(step.nodes, defaults.nodes, 1));
  out.gpu_type = step.gpu_type ? *step.gpu_type : defaults.gpu_type.value_or("");
  if (out.nodes > 1 && (out.gpus == 0 || out.gpus % out.nodes != 0)) {
    const PartialResources& where = step.present ? step : defaults;
    return At(where.path + ".nodes", where.mark,
              fmt::format("{} GPUs cannot be split evenly over {} nodes", out.gpus, out.nodes));
  }
  return out;
}

// ---- steps ----

constexpr std::string_view kStepKeys[] = {
    "type",           "command",      "env",   "inputs",  "outputs",   "after",
    "code",           "resources",    "image", "retries", "timeout_s", "cache",
    "priority_class", "expectations", "model"};

struct StepDraft {
  StepSpec spec;
  size_t index = 0;
  YAML::Mark key_mark;
  std::string path;
  std::vector<YAML::Mark> input_marks;  // parallel to spec.inputs
  std::string inputs_path;
  std::vector<YAML::Mark> after_marks;  // parallel to spec.after
  std::vector<size_t> deps;             // indices into the drafts, sorted, unique
};

// Path components without "" and "."; nullopt when one is "..".
std::optional<std::vector<std::string>> PathParts(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos)
      end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "..")
      return std::nullopt;
    if (!part.empty() && part != ".")
      parts.emplace_back(part);
    start = end + 1;
  }
  return parts;
}

Result<std::vector<OutputDecl>> ParseOutputs(const YAML::Node& node, const std::string& path) {
  ASSIGN_OR_RETURN(MapReader r, MapReader::AnyKeys(node, path));
  std::vector<OutputDecl> out;
  std::map<std::string, std::string> seen;  // normalised path -> output name
  for (const Entry& e : r.entries()) {
    const std::string field = r.PathOf(e.key);
    RETURN_IF_ERROR(
        CheckName(IsLocalName(e.key), "output name", e.key, kLocalNameRule, field, e.key_node));
    OutputDecl o;
    o.name = e.key;
    YAML::Node path_node = e.value;
    std::string path_field = field;
    if (e.value.IsMap()) {
      ASSIGN_OR_RETURN(MapReader m, MapReader::Of(e.value, field, {"path", "kind", "dataset"}));
      const Entry* p = m.Find("path");
      if (p == nullptr)
        return At(m.PathOf("path"), e.value, "required (relative to the step's output directory)");
      path_node.reset(p->value);
      path_field = m.PathOf("path");
      if (const Entry* k = m.Find("kind")) {
        ASSIGN_OR_RETURN(std::string kind, ScalarText(k->value, m.PathOf("kind")));
        bool known = false;
        for (OutputKind candidate :
             {OutputKind::kFile, OutputKind::kDirectory, OutputKind::kMetrics, OutputKind::kModel,
              OutputKind::kDataset}) {
          if (OutputKindName(candidate) == kind) {
            o.kind = candidate;
            known = true;
          }
        }
        if (!known) {
          return At(m.PathOf("kind"), k->value,
                    fmt::format("unknown output kind \"{}\" (file, directory, metrics, model, "
                                "dataset)",
                                kind));
        }
      }
      const Entry* d = m.Find("dataset");
      if (o.kind == OutputKind::kDataset) {
        if (d == nullptr)
          return At(m.PathOf("dataset"), e.value, "required for kind dataset (the dataset's name)");
        ASSIGN_OR_RETURN(o.dataset, ScalarText(d->value, m.PathOf("dataset")));
        RETURN_IF_ERROR(CheckName(IsResourceName(o.dataset), "dataset name", o.dataset,
                                  kResourceNameRule, m.PathOf("dataset"), d->value));
      } else if (d != nullptr) {
        return At(m.PathOf("dataset"), d->value, "only outputs of kind dataset name a dataset");
      }
    } else if (!e.value.IsScalar()) {
      return At(field, e.value.IsNull() ? e.key_node : e.value,
                fmt::format("an output is a path or {{path: ..., kind: ...}}, got {}",
                            Describe(e.value)));
    }
    ASSIGN_OR_RETURN(std::string written, ScalarText(path_node, path_field, "a path"));
    if (written.empty())
      return At(path_field, path_node, "must not be empty");
    if (written[0] == '/') {
      return At(path_field, path_node,
                fmt::format("\"{}\" is absolute; output paths are relative to the step's output "
                            "directory",
                            written));
    }
    auto parts = PathParts(written);
    if (!parts) {
      return At(path_field, path_node,
                fmt::format("\"{}\" contains \"..\"; outputs may not escape the step's output "
                            "directory",
                            written));
    }
    if (parts->empty()) {
      return At(path_field, path_node,
                fmt::format("\"{}\" names the output directory itself; name a file or directory "
                            "inside it",
                            written));
    }
    o.path = Join(*parts, "/");
    auto [it, inserted] = seen.emplace(o.path, o.name);
    if (!inserted) {
      return At(
          path_field, path_node,
          fmt::format("path \"{}\" is already the path of output \"{}\"", o.path, it->second));
    }
    out.push_back(std::move(o));
  }
  return out;
}

constexpr std::string_view kRefForms =
    "steps.<step>.outputs.<output>, datasets.<name>, datasets.<name>@<version> or {path: file}";

Result<InputRef> ParseInputRef(const Entry& e, const std::string& field) {
  InputRef in;
  in.name = e.key;
  if (e.value.IsMap()) {
    ASSIGN_OR_RETURN(MapReader m, MapReader::Of(e.value, field, {"path"}));
    const Entry* p = m.Find("path");
    if (p == nullptr)
      return At(m.PathOf("path"), e.value, "required (a file, relative to workdir or absolute)");
    ASSIGN_OR_RETURN(in.path, NonEmptyText(p->value, m.PathOf("path")));
    in.source = InputRef::Source::kPath;
    in.text = in.path;
    return in;
  }
  if (!e.value.IsScalar()) {
    return At(field, e.value.IsNull() ? e.key_node : e.value,
              fmt::format("an input is one of {}, got {}", kRefForms, Describe(e.value)));
  }
  in.text = e.value.Scalar();
  std::string_view text = in.text;
  auto bad_form = [&] {
    return At(field, e.value,
              fmt::format("unknown reference form \"{}\" (expected {})", in.text, kRefForms));
  };
  if (text.starts_with("steps.")) {
    std::string_view rest = text.substr(6);
    size_t dot = rest.find(".outputs.");
    if (dot == std::string_view::npos)
      return bad_form();
    in.step = std::string(rest.substr(0, dot));
    in.output = std::string(rest.substr(dot + 9));
    if (!IsLocalName(in.step) || !IsLocalName(in.output))
      return bad_form();
    in.source = InputRef::Source::kStepOutput;
    return in;
  }
  if (text.starts_with("datasets.")) {
    std::string_view rest = text.substr(9);
    size_t at = rest.find('@');
    in.dataset = std::string(rest.substr(0, at));
    if (!IsResourceName(in.dataset)) {
      return At(field, e.value,
                fmt::format("dataset name \"{}\" in \"{}\" must match {}", in.dataset, in.text,
                            kResourceNameRule));
    }
    if (at != std::string_view::npos) {
      std::string_view version = rest.substr(at + 1);
      auto v = AllOf(version, IsDigit) ? ToInt64(version) : std::nullopt;
      if (!v || *v < 1) {
        return At(field, e.value,
                  fmt::format("dataset version \"{}\" in \"{}\" must be a positive integer",
                              version, in.text));
      }
      in.dataset_version = *v;
    }
    in.source = InputRef::Source::kDataset;
    return in;
  }
  return bad_form();
}

Status CheckPlaceholders(const std::string& text, const YAML::Mark& mark, const std::string& path,
                         const StepSpec& step, const std::vector<ParamDecl>& params,
                         std::string_view context = "") {
  for (const Placeholder& p : FindPlaceholders(text)) {
    std::string problem;
    switch (p.kind) {
      case PlaceholderKind::kUnknown:
        problem = fmt::format(
            "unknown placeholder {} (known: {{{{inputs.X}}}}, {{{{outputs.X}}}}, "
            "{{{{params.X}}}}, {{{{run.id}}}}, {{{{step.dir}}}})",
            p.text);
        break;
      case PlaceholderKind::kInput:
        if (std::none_of(step.inputs.begin(), step.inputs.end(),
                         [&](const InputRef& in) { return in.name == p.name; })) {
          problem = fmt::format("placeholder {}: step \"{}\" has no input \"{}\"", p.text,
                                step.name, p.name);
        }
        break;
      case PlaceholderKind::kOutput:
        if (std::none_of(step.outputs.begin(), step.outputs.end(),
                         [&](const OutputDecl& o) { return o.name == p.name; })) {
          problem = fmt::format("placeholder {}: step \"{}\" has no output \"{}\"", p.text,
                                step.name, p.name);
        }
        break;
      case PlaceholderKind::kParam:
        if (FindParam(params, p.name) == nullptr) {
          problem = fmt::format("placeholder {}: no param \"{}\" is declared", p.text, p.name);
        }
        break;
      case PlaceholderKind::kRunId:
      case PlaceholderKind::kStepDir:
        break;
    }
    if (!problem.empty())
      return At(path, mark, fmt::format("{}{}", context, problem));
  }
  return core::Ok();
}

Result<std::vector<std::string>> ParseCommand(const YAML::Node& node, const std::string& path) {
  std::vector<std::string> argv;
  if (node.IsSequence()) {
    if (node.size() == 0)
      return At(path, node, "must name a program (an empty sequence)");
    for (size_t i = 0; i < node.size(); ++i) {
      if (node[i].IsNull())
        return At(Index(path, i), node[i], "must be a string, got null");
      ASSIGN_OR_RETURN(std::string arg, ScalarText(node[i], Index(path, i)));
      argv.push_back(std::move(arg));
    }
    if (argv[0].empty())
      return At(Index(path, 0), node[0], "the program must not be empty");
    return argv;
  }
  if (!node.IsScalar()) {
    return At(path, node,
              fmt::format("must be a string (run by /bin/sh -c) or a sequence (argv), got {}",
                          Describe(node)));
  }
  ASSIGN_OR_RETURN(std::string text, ScalarText(node, path));
  if (Trim(text).empty())
    return At(path, node, "must not be empty");
  return std::vector<std::string>{"/bin/sh", "-c", std::move(text)};
}

Result<StepDraft> ParseStep(const Entry& entry, const std::vector<ParamDecl>& params,
                            const CommonFields& defaults) {
  StepDraft d;
  d.key_mark = entry.key_node.Mark();
  d.path = Child("steps", entry.key);
  StepSpec& s = d.spec;
  s.name = entry.key;
  RETURN_IF_ERROR(
      CheckName(IsLocalName(s.name), "step name", s.name, kLocalNameRule, d.path, entry.key_node));
  ASSIGN_OR_RETURN(MapReader r, MapReader::Of(entry.value, d.path,
                                              std::vector<std::string_view>(std::begin(kStepKeys),
                                                                            std::end(kStepKeys))));
  // A step written as `name:` alone has no useful mark of its own.
  const YAML::Node& here = entry.value.IsNull() ? entry.key_node : entry.value;

  if (const Entry* e = r.Find("type")) {
    ASSIGN_OR_RETURN(s.type, ScalarText(e->value, r.PathOf("type")));
    if (s.type != kCommandStep && s.type != kValidateStep && s.type != kRegisterStep) {
      return At(r.PathOf("type"), e->value,
                fmt::format("unknown step type \"{}\" (command, validate, register)", s.type));
    }
  }
  const bool builtin = s.type != kCommandStep;
  for (std::string_view key : {"command", "env", "outputs", "image"}) {
    if (builtin && r.Find(key) != nullptr) {
      return At(r.PathOf(key), r.Find(key)->key_node,
                fmt::format("{} steps are built in and take no {}", s.type, key));
    }
  }
  if (s.type != kValidateStep && r.Find("expectations") != nullptr) {
    return At(r.PathOf("expectations"), r.Find("expectations")->key_node,
              "only validate steps have expectations");
  }
  if (s.type != kRegisterStep && r.Find("model") != nullptr) {
    return At(r.PathOf("model"), r.Find("model")->key_node,
              "only register steps name a model (use an output of kind model to produce one)");
  }

  ASSIGN_OR_RETURN(CommonFields own, ParseCommon(r));
  s.priority_class = own.priority_class.value_or(defaults.priority_class.value_or("dev"));
  s.image = builtin ? "" : own.image.value_or(defaults.image.value_or(""));
  s.retries = static_cast<int>(own.retries.value_or(defaults.retries.value_or(0)));
  s.timeout_s = own.timeout_s.value_or(defaults.timeout_s.value_or(0));
  s.cache = own.cache.value_or(defaults.cache.value_or(true));
  ASSIGN_OR_RETURN(s.resources, MergeResources(own.resources, defaults.resources));

  // Inputs and outputs first: placeholders are checked against them.
  d.inputs_path = r.PathOf("inputs");
  if (const Entry* e = r.Find("inputs")) {
    ASSIGN_OR_RETURN(MapReader m, MapReader::AnyKeys(e->value, d.inputs_path));
    for (const Entry& in : m.entries()) {
      const std::string field = m.PathOf(in.key);
      RETURN_IF_ERROR(
          CheckName(IsLocalName(in.key), "input name", in.key, kLocalNameRule, field, in.key_node));
      ASSIGN_OR_RETURN(InputRef ref, ParseInputRef(in, field));
      s.inputs.push_back(std::move(ref));
      d.input_marks.push_back(in.value.IsNull() ? in.key_node.Mark() : in.value.Mark());
    }
  }
  if (const Entry* e = r.Find("outputs")) {
    ASSIGN_OR_RETURN(s.outputs, ParseOutputs(e->value, r.PathOf("outputs")));
  }
  if (const Entry* e = r.Find("after")) {
    ASSIGN_OR_RETURN(auto after, StringList(e->value, r.PathOf("after"), true));
    for (auto& [name, mark] : after) {
      if (std::find(s.after.begin(), s.after.end(), name) != s.after.end()) {
        return At(Index(r.PathOf("after"), s.after.size()), mark,
                  fmt::format("step \"{}\" is listed twice", name));
      }
      s.after.push_back(name);
      d.after_marks.push_back(mark);
    }
  }
  if (const Entry* e = r.Find("code")) {
    ASSIGN_OR_RETURN(auto code, StringList(e->value, r.PathOf("code"), false));
    for (auto& item : code)
      s.code.push_back(std::move(item.first));
  }

  if (!builtin) {
    const Entry* e = r.Find("command");
    if (e == nullptr) {
      return At(r.PathOf("command"), here,
                "command steps need a command (a string run by /bin/sh -c, or a sequence: the "
                "program and its arguments)");
    }
    ASSIGN_OR_RETURN(s.command, ParseCommand(e->value, r.PathOf("command")));
    if (e->value.IsSequence()) {
      for (size_t i = 0; i < s.command.size(); ++i) {
        RETURN_IF_ERROR(CheckPlaceholders(s.command[i], e->value[i].Mark(),
                                          Index(r.PathOf("command"), i), s, params));
      }
    } else {
      RETURN_IF_ERROR(
          CheckPlaceholders(s.command[2], e->value.Mark(), r.PathOf("command"), s, params));
    }
    for (const auto& [name, v] : defaults.env) {
      if (own.env.contains(name))
        continue;
      RETURN_IF_ERROR(CheckPlaceholders(v.value, v.mark, v.path, s, params,
                                        fmt::format("in step \"{}\": ", s.name)));
      s.env[name] = v.value;
    }
    for (const auto& [name, v] : own.env) {
      RETURN_IF_ERROR(CheckPlaceholders(v.value, v.mark, v.path, s, params));
      s.env[name] = v.value;
    }
  }

  if (s.type == kValidateStep) {
    if (s.inputs.size() != 1) {
      return At(d.inputs_path, r.Find("inputs") ? r.Find("inputs")->value : here,
                fmt::format("validate steps take exactly one input (the data to check), got {}",
                            s.inputs.size()));
    }
    const Entry* e = r.Find("expectations");
    if (e == nullptr || (e->value.IsSequence() && e->value.size() == 0) || e->value.IsNull()) {
      return At(r.PathOf("expectations"), e ? e->value : here,
                "validate steps need at least one expectation");
    }
    if (!e->value.IsSequence()) {
      return At(r.PathOf("expectations"), e->value,
                fmt::format("must be a sequence, got {}", Describe(e->value)));
    }
    for (size_t i = 0; i < e->value.size(); ++i) {
      const YAML::Node item = e->value[i];
      const std::string location = Index(r.PathOf("expectations"), i);
      if (!item.IsMap())
        return At(location, item, fmt::format("must be a mapping, got {}", Describe(item)));
      int64_t budget = kMaxJsonNodes;
      ASSIGN_OR_RETURN(Json json, YamlToJson(item, location, location, 0, &budget));
      auto expectation = ExpectationFromJson(json, location);
      if (!expectation) {
        // Re-anchor the checker's error at the YAML node it is about.
        const core::Error& err = expectation.error();
        std::string field = err.field.empty() ? location : err.field;
        YAML::Node where = item;
        if (field.starts_with(location + ".")) {
          std::string key = field.substr(location.size() + 1);
          for (const auto& kv : item) {
            if (kv.first.IsScalar() && kv.first.Scalar() == key)
              where.reset(kv.second);
          }
        }
        std::string message = err.message;
        for (const std::string& prefix :
             {fmt::format("field \"{}\": ", field), fmt::format("{}: ", field)}) {
          if (message.starts_with(prefix)) {
            message = message.substr(prefix.size());
            break;
          }
        }
        return At(field, where, message);
      }
      s.expectations.push_back(std::move(expectation).value());
    }
  }

  if (s.type == kRegisterStep) {
    const Entry* e = r.Find("model");
    if (e == nullptr)
      return At(r.PathOf("model"), here, "register steps name the registered model (model: name)");
    ASSIGN_OR_RETURN(s.model, ScalarText(e->value, r.PathOf("model")));
    RETURN_IF_ERROR(CheckName(IsResourceName(s.model), "model name", s.model, kResourceNameRule,
                              r.PathOf("model"), e->value));
    if (std::none_of(s.inputs.begin(), s.inputs.end(),
                     [](const InputRef& in) { return in.name == "model"; })) {
      return At(Child(d.inputs_path, "model"), r.Find("inputs") ? r.Find("inputs")->value : here,
                "register steps need an input named \"model\" (the model to register)");
    }
  }
  return d;
}

// Resolves references to other steps into `deps`.
Status ResolveDependencies(std::vector<StepDraft>& drafts,
                           const std::map<std::string, size_t>& by_name) {
  for (StepDraft& d : drafts) {
    std::set<size_t> deps;
    for (size_t i = 0; i < d.spec.after.size(); ++i) {
      const std::string& name = d.spec.after[i];
      const std::string field = Index(d.path + ".after", i);
      if (name == d.spec.name)
        return At(field, d.after_marks[i], fmt::format("step \"{}\" depends on itself", name));
      auto it = by_name.find(name);
      if (it == by_name.end())
        return At(field, d.after_marks[i], fmt::format("unknown step \"{}\"", name));
      deps.insert(it->second);
    }
    for (size_t i = 0; i < d.spec.inputs.size(); ++i) {
      const InputRef& in = d.spec.inputs[i];
      if (in.source != InputRef::Source::kStepOutput)
        continue;
      const std::string field = Child(d.inputs_path, in.name);
      if (in.step == d.spec.name) {
        return At(field, d.input_marks[i],
                  fmt::format("step \"{}\" depends on itself: it cannot read its own output in "
                              "\"{}\"",
                              in.step, in.text));
      }
      auto it = by_name.find(in.step);
      if (it == by_name.end()) {
        return At(field, d.input_marks[i],
                  fmt::format("unknown step \"{}\" in \"{}\"", in.step, in.text));
      }
      const StepSpec& producer = drafts[it->second].spec;
      if (std::none_of(producer.outputs.begin(), producer.outputs.end(),
                       [&](const OutputDecl& o) { return o.name == in.output; })) {
        std::vector<std::string> names;
        for (const auto& o : producer.outputs)
          names.push_back(o.name);
        return At(
            field, d.input_marks[i],
            fmt::format("step \"{}\" has no output \"{}\" in \"{}\" (its outputs: {})", in.step,
                        in.output, in.text, names.empty() ? "none" : Join(names, ", ")));
      }
      deps.insert(it->second);
    }
    d.deps.assign(deps.begin(), deps.end());
    for (size_t dep : d.deps)
      d.spec.depends_on.push_back(drafts[dep].spec.name);
    std::sort(d.spec.depends_on.begin(), d.spec.depends_on.end());
  }
  return core::Ok();
}

// Kahn's algorithm; among the steps ready at once, the one written first.
Result<std::vector<size_t>> TopologicalOrder(const std::vector<StepDraft>& drafts) {
  const size_t n = drafts.size();
  std::vector<size_t> waiting(n);
  std::vector<std::vector<size_t>> dependents(n);
  std::set<size_t> ready;
  for (size_t i = 0; i < n; ++i) {
    waiting[i] = drafts[i].deps.size();
    for (size_t dep : drafts[i].deps)
      dependents[dep].push_back(i);
    if (waiting[i] == 0)
      ready.insert(i);
  }
  std::vector<size_t> order;
  std::vector<bool> done(n, false);
  while (!ready.empty()) {
    size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    done[i] = true;
    for (size_t next : dependents[i]) {
      if (--waiting[next] == 0)
        ready.insert(next);
    }
  }
  if (order.size() == n)
    return order;

  // Every step left waits for another step left: walking dependencies from
  // one must come back to a step already seen.
  size_t start = 0;
  while (done[start])
    ++start;
  std::vector<size_t> walk;
  std::map<size_t, size_t> position;
  size_t cur = start;
  while (!position.contains(cur)) {
    position[cur] = walk.size();
    walk.push_back(cur);
    for (size_t dep : drafts[cur].deps) {
      if (!done[dep]) {
        cur = dep;
        break;
      }
    }
  }
  // walk[k] waits for walk[k+1]; in run order the cycle goes the other way.
  std::vector<size_t> cycle(walk.begin() + static_cast<std::ptrdiff_t>(position[cur]), walk.end());
  std::reverse(cycle.begin(), cycle.end());
  std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
  std::vector<std::string> names;
  for (size_t i : cycle)
    names.push_back(drafts[i].spec.name);
  names.push_back(names.front());
  const StepDraft& first = drafts[cycle.front()];
  return At(first.path, first.key_mark, fmt::format("dependency cycle: {}", Join(names, " -> ")));
}

// ---- triggers ----

Result<TriggerSpec> ParseTrigger(const YAML::Node& node, const std::string& path,
                                 const std::vector<ParamDecl>& params) {
  ASSIGN_OR_RETURN(MapReader r,
                   MapReader::Of(node, path, {"cron", "dataset", "event", "webhook", "params"}));
  TriggerSpec t;
  const Entry* kind = nullptr;
  for (std::string_view key : {"cron", "dataset", "event", "webhook"}) {
    if (const Entry* e = r.Find(key)) {
      if (kind != nullptr) {
        return At(r.PathOf(key), e->key_node,
                  fmt::format("a trigger has one kind; \"{}\" and \"{}\" are both given", kind->key,
                              key));
      }
      kind = e;
    }
  }
  if (kind == nullptr)
    return At(path, node, "give one of cron, dataset, event, webhook");
  const std::string field = r.PathOf(kind->key);
  if (kind->key == "cron") {
    t.kind = TriggerSpec::Kind::kCron;
    ASSIGN_OR_RETURN(t.cron, NonEmptyText(kind->value, field));
    auto schedule = CronSchedule::Parse(t.cron);
    if (!schedule)
      return At(field, kind->value, schedule.error().message);
  } else if (kind->key == "dataset") {
    t.kind = TriggerSpec::Kind::kDataset;
    ASSIGN_OR_RETURN(t.dataset, ScalarText(kind->value, field));
    RETURN_IF_ERROR(CheckName(IsResourceName(t.dataset), "dataset name", t.dataset,
                              kResourceNameRule, field, kind->value));
  } else if (kind->key == "event") {
    t.kind = TriggerSpec::Kind::kEvent;
    YAML::Node type_node = kind->value;
    std::string type_field = field;
    if (kind->value.IsMap()) {
      ASSIGN_OR_RETURN(MapReader m, MapReader::Of(kind->value, field, {"type", "filter"}));
      const Entry* type = m.Find("type");
      if (type == nullptr)
        return At(m.PathOf("type"), kind->value,
                  "required (an event type or a prefix ending in .)");
      type_node.reset(type->value);
      type_field = m.PathOf("type");
      if (const Entry* f = m.Find("filter")) {
        ASSIGN_OR_RETURN(t.filter, ScalarText(f->value, m.PathOf("filter")));
        auto filter = core::filter::Parse(t.filter);
        if (!filter)
          return At(m.PathOf("filter"), f->value, filter.error().message);
      }
    }
    ASSIGN_OR_RETURN(t.event_type, NonEmptyText(type_node, type_field));
    bool ok = std::all_of(t.event_type.begin(), t.event_type.end(), [](char c) {
      return IsAlpha(c) || IsDigit(c) || c == '_' || c == '.' || c == '-';
    });
    if (!ok || t.event_type[0] == '.') {
      return At(type_field, type_node,
                fmt::format("\"{}\" is not an event type (subject.verb, or a prefix ending in .)",
                            t.event_type));
    }
  } else {
    t.kind = TriggerSpec::Kind::kWebhook;
    ASSIGN_OR_RETURN(MapReader m, MapReader::Of(kind->value, field, {"events", "branches"}));
    if (const Entry* e = m.Find("events")) {
      ASSIGN_OR_RETURN(auto events, StringList(e->value, m.PathOf("events"), true));
      for (auto& item : events)
        t.webhook_events.push_back(std::move(item.first));
    }
    if (const Entry* e = m.Find("branches")) {
      ASSIGN_OR_RETURN(auto branches, StringList(e->value, m.PathOf("branches"), true));
      for (auto& item : branches)
        t.branches.push_back(std::move(item.first));
    }
  }
  if (const Entry* e = r.Find("params")) {
    ASSIGN_OR_RETURN(MapReader m, MapReader::AnyKeys(e->value, r.PathOf("params")));
    for (const Entry& p : m.entries()) {
      const ParamDecl* decl = FindParam(params, p.key);
      if (decl == nullptr) {
        return At(m.PathOf(p.key), p.key_node,
                  fmt::format("unknown param \"{}\" (declared: {})", p.key,
                              params.empty() ? "none" : Join(ParamNames(params), ", ")));
      }
      if (p.value.IsNull())
        return At(m.PathOf(p.key), p.key_node, "must be a value, got null");
      ASSIGN_OR_RETURN(t.params[p.key], ParamValue(decl->type, p.value, m.PathOf(p.key)));
    }
  }
  return t;
}

// ---- the document ----

Result<PipelineSpec> ParseDocument(const YAML::Node& root) {
  if (!root.IsMap()) {
    // An empty document has no mark of its own: it is at its start.
    return At(
        "spec", root.Mark().is_null() ? YAML::Mark() : root.Mark(),
        fmt::format("a pipeline spec is a mapping (name, steps, ...), got {}", Describe(root)));
  }
  ASSIGN_OR_RETURN(MapReader r,
                   MapReader::Of(root, "",
                                 {"name", "description", "project", "experiment", "workdir",
                                  "params", "defaults", "steps", "triggers"}));
  PipelineSpec spec;
  const Entry* name = r.Find("name");
  if (name == nullptr)
    return At("name", root, "required (the pipeline's name)");
  ASSIGN_OR_RETURN(spec.name, ScalarText(name->value, "name"));
  RETURN_IF_ERROR(CheckName(IsPipelineName(spec.name), "pipeline name", spec.name,
                            kPipelineNameRule, "name", name->value));
  if (const Entry* e = r.Find("description")) {
    if (!e->value.IsNull()) {
      ASSIGN_OR_RETURN(spec.description, ScalarText(e->value, "description"));
    }
  }
  if (const Entry* e = r.Find("project")) {
    ASSIGN_OR_RETURN(spec.project, NonEmptyText(e->value, "project"));
  }
  if (const Entry* e = r.Find("experiment")) {
    ASSIGN_OR_RETURN(spec.experiment, NonEmptyText(e->value, "experiment"));
  }
  if (const Entry* e = r.Find("workdir")) {
    ASSIGN_OR_RETURN(spec.workdir, ScalarText(e->value, "workdir"));
  }
  if (const Entry* e = r.Find("params")) {
    ASSIGN_OR_RETURN(spec.params, ParseParams(e->value));
  }
  ASSIGN_OR_RETURN(
      MapReader defaults_map,
      MapReader::Of(
          r.Find("defaults") ? r.Find("defaults")->value : YAML::Node(), "defaults",
          {"priority_class", "retries", "timeout_s", "resources", "cache", "env", "image"}));
  ASSIGN_OR_RETURN(CommonFields defaults, ParseCommon(defaults_map));

  const Entry* steps = r.Find("steps");
  if (steps == nullptr)
    return At("steps", root, "required (at least one step)");
  ASSIGN_OR_RETURN(MapReader step_map, MapReader::AnyKeys(steps->value, "steps"));
  if (step_map.entries().empty())
    return At("steps", steps->value, "a pipeline needs at least one step");
  std::vector<StepDraft> drafts;
  std::map<std::string, size_t> by_name;
  for (const Entry& e : step_map.entries()) {
    ASSIGN_OR_RETURN(StepDraft d, ParseStep(e, spec.params, defaults));
    d.index = drafts.size();
    by_name[d.spec.name] = d.index;
    drafts.push_back(std::move(d));
  }
  RETURN_IF_ERROR(ResolveDependencies(drafts, by_name));
  ASSIGN_OR_RETURN(std::vector<size_t> order, TopologicalOrder(drafts));
  for (size_t i : order)
    spec.steps.push_back(std::move(drafts[i].spec));

  if (const Entry* e = r.Find("triggers")) {
    if (!e->value.IsNull() && !e->value.IsSequence()) {
      return At("triggers", e->value,
                fmt::format("must be a sequence, got {}", Describe(e->value)));
    }
    for (size_t i = 0; i < e->value.size(); ++i) {
      ASSIGN_OR_RETURN(TriggerSpec t, ParseTrigger(e->value[i], Index("triggers", i), spec.params));
      spec.triggers.push_back(std::move(t));
    }
  }
  return spec;
}

// ---- JSON ----

std::string_view InputSourceName(InputRef::Source source) {
  switch (source) {
    case InputRef::Source::kStepOutput:
      return "step_output";
    case InputRef::Source::kDataset:
      return "dataset";
    case InputRef::Source::kPath:
      break;
  }
  return "path";
}

Json StepToJson(const StepSpec& s) {
  Json inputs = Json::object();
  for (const InputRef& in : s.inputs) {
    Json j = Json::object();
    j["source"] = InputSourceName(in.source);
    j["step"] = in.step;
    j["output"] = in.output;
    j["dataset"] = in.dataset;
    j["dataset_version"] = in.dataset_version;
    j["path"] = in.path;
    inputs[in.name] = std::move(j);
  }
  Json outputs = Json::object();
  for (const OutputDecl& o : s.outputs) {
    Json j = Json::object();
    j["kind"] = OutputKindName(o.kind);
    j["path"] = o.path;
    j["dataset"] = o.dataset;
    outputs[o.name] = std::move(j);
  }
  Json expectations = Json::array();
  for (const Expectation& e : s.expectations)
    expectations.push_back(e.ToJson());
  Json resources = Json::object();
  resources["gpus"] = s.resources.gpus;
  resources["gpu_type"] = s.resources.gpu_type;
  resources["cpus"] = s.resources.cpus;
  resources["memory_mb"] = s.resources.memory_mb;
  resources["nodes"] = s.resources.nodes;

  Json out = Json::object();
  out["name"] = s.name;
  out["type"] = s.type;
  out["command"] = s.command;
  out["env"] = s.env;
  out["inputs"] = std::move(inputs);
  out["outputs"] = std::move(outputs);
  out["after"] = s.after;
  out["code"] = s.code;
  out["resources"] = std::move(resources);
  out["priority_class"] = s.priority_class;
  out["image"] = s.image;
  out["retries"] = s.retries;
  out["timeout_s"] = s.timeout_s;
  out["cache"] = s.cache;
  out["expectations"] = std::move(expectations);
  out["model"] = s.model;
  out["depends_on"] = s.depends_on;
  return out;
}

Json TriggerToJson(const TriggerSpec& t) {
  Json out = Json::object();
  out["kind"] = TriggerKindName(t.kind);
  out["cron"] = t.cron;
  out["dataset"] = t.dataset;
  out["event_type"] = t.event_type;
  out["filter"] = t.filter;
  out["webhook_events"] = t.webhook_events;
  out["branches"] = t.branches;
  out["params"] = t.params;
  return out;
}

}  // namespace

std::string_view OutputKindName(OutputKind kind) {
  switch (kind) {
    case OutputKind::kFile:
      return "file";
    case OutputKind::kDirectory:
      return "directory";
    case OutputKind::kMetrics:
      return "metrics";
    case OutputKind::kModel:
      return "model";
    case OutputKind::kDataset:
      return "dataset";
  }
  return "file";
}

std::string_view ParamTypeName(ParamType type) {
  switch (type) {
    case ParamType::kString:
      return "string";
    case ParamType::kInt:
      return "int";
    case ParamType::kFloat:
      return "float";
    case ParamType::kBool:
      return "bool";
  }
  return "string";
}

std::string_view TriggerKindName(TriggerSpec::Kind kind) {
  switch (kind) {
    case TriggerSpec::Kind::kCron:
      return "cron";
    case TriggerSpec::Kind::kDataset:
      return "dataset";
    case TriggerSpec::Kind::kEvent:
      return "event";
    case TriggerSpec::Kind::kWebhook:
      return "webhook";
  }
  return "cron";
}

const StepSpec* PipelineSpec::FindStep(std::string_view step_name) const {
  for (const StepSpec& s : steps) {
    if (s.name == step_name)
      return &s;
  }
  return nullptr;
}

Json PipelineSpec::ToJson() const {
  Json params_json = Json::object();
  for (const ParamDecl& p : params) {
    Json j = Json::object();
    j["type"] = ParamTypeName(p.type);
    j["default"] = p.default_value ? Json(*p.default_value) : Json(nullptr);
    params_json[p.name] = std::move(j);
  }
  Json steps_json = Json::array();
  for (const StepSpec& s : steps)
    steps_json.push_back(StepToJson(s));
  Json triggers_json = Json::array();
  for (const TriggerSpec& t : triggers)
    triggers_json.push_back(TriggerToJson(t));

  Json out = Json::object();
  out["name"] = name;
  out["description"] = description;
  out["project"] = project;
  out["experiment"] = experiment.empty() ? name : experiment;
  out["workdir"] = workdir;
  out["params"] = std::move(params_json);
  out["steps"] = std::move(steps_json);
  out["triggers"] = std::move(triggers_json);
  return out;
}

Result<PipelineSpec> ParsePipelineSpec(std::string_view yaml_text) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return At("spec", e.mark, fmt::format("not valid YAML: {}", e.msg));
  }
  // A second document would otherwise be ignored without a word.
  if (documents.size() > 1) {
    return At("spec", documents[1].Mark(),
              "a pipeline spec is one YAML document; remove the second one (after \"---\")");
  }
  try {
    return ParseDocument(documents.empty() ? YAML::Node() : documents[0]);
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws on misuse of a node; the walk above should not get here.
    return At("spec", e.mark, fmt::format("could not read the spec: {}", e.msg));
  }
}

Result<std::map<std::string, std::string>> ResolveParams(
    const PipelineSpec& spec, const std::map<std::string, std::string>& given) {
  for (const auto& [name, value] : given) {
    if (FindParam(spec.params, name) == nullptr) {
      std::string field = Child("params", name);
      return core::InvalidArgument(
          fmt::format("{}: unknown parameter \"{}\" (declared: {})", field, name,
                      spec.params.empty() ? "none" : Join(ParamNames(spec.params), ", ")),
          field);
    }
  }
  std::map<std::string, std::string> out;
  for (const ParamDecl& p : spec.params) {
    std::string field = Child("params", p.name);
    auto it = given.find(p.name);
    if (it == given.end()) {
      if (!p.default_value) {
        return core::InvalidArgument(
            fmt::format("{}: required (a {} without a default)", field, ParamTypeName(p.type)),
            field);
      }
      out[p.name] = *p.default_value;
      continue;
    }
    auto canonical = CanonicalParamValue(p.type, it->second);
    if (!canonical) {
      return core::InvalidArgument(
          fmt::format("{}: must be {}, got \"{}\"", field, ParamTypeRule(p.type), it->second),
          field);
    }
    out[p.name] = std::move(*canonical);
  }
  return out;
}

std::vector<std::string> ParamsUsedBy(const StepSpec& step) {
  std::set<std::string> used;
  auto scan = [&](const std::string& text) {
    for (const Placeholder& p : FindPlaceholders(text)) {
      if (p.kind == PlaceholderKind::kParam)
        used.insert(p.name);
    }
  };
  for (const std::string& arg : step.command)
    scan(arg);
  for (const auto& [_, value] : step.env)
    scan(value);
  return {used.begin(), used.end()};
}

Result<std::vector<std::string>> RenderCommand(const StepSpec& step, const RenderContext& ctx) {
  std::vector<std::string> out;
  const bool script =
      step.command.size() == 3 && step.command[0] == "/bin/sh" && step.command[1] == "-c";
  for (size_t i = 0; i < step.command.size(); ++i) {
    ASSIGN_OR_RETURN(std::string arg, Substitute(step.command[i], ctx,
                                                 Index(Child("steps", step.name) + ".command", i),
                                                 script && i == 2));
    out.push_back(std::move(arg));
  }
  return out;
}

Result<std::map<std::string, std::string>> RenderEnv(const StepSpec& step,
                                                     const RenderContext& ctx) {
  std::map<std::string, std::string> out;
  for (const auto& [name, value] : step.env) {
    ASSIGN_OR_RETURN(out[name], Substitute(value, ctx, Child("steps", step.name) + ".env." + name));
  }
  return out;
}

}  // namespace kervan::pipelines
