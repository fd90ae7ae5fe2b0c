#include "core/json.h"

#include <fmt/format.h>

namespace kervan::core {

Result<Json> ParseJson(std::string_view text) {
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    // Re-parse with exceptions only to recover the position for the message.
    std::string detail = "malformed JSON";
    try {
      [[maybe_unused]] Json probe = Json::parse(text);
    } catch (const Json::parse_error& e) {
      detail = fmt::format("malformed JSON at byte {}", e.byte);
    } catch (const Json::exception& e) {
      // e.g. out_of_range for a number beyond double (found by fuzzing):
      // still the client's input, still a 400.
      detail = fmt::format("invalid JSON ({})", e.what());
    }
    return InvalidArgument(detail + " in request body", "body");
  }
  return value;
}

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

std::string CanonicalJson(const Json& value) {
  // nlohmann::json stores objects in a std::map, so keys come out sorted.
  return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

std::string_view JsonTypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "object";
    case Json::value_t::array:
      return "array";
    case Json::value_t::string:
      return "string";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "integer";
    case Json::value_t::number_float:
      return "number";
    default:
      return "unknown";
  }
}

Result<ObjectReader> ObjectReader::Of(const Json& value, std::string prefix) {
  if (!value.is_object()) {
    std::string field = prefix.empty() ? "body" : prefix.substr(0, prefix.size() - 1);
    return InvalidArgument(
        fmt::format("field \"{}\": must be a JSON object, got {}", field, JsonTypeName(value)),
        field);
  }
  return ObjectReader(&value, std::move(prefix));
}

const Json* ObjectReader::Find(const std::string& key) {
  seen_.insert(key);
  auto it = value_->find(key);
  if (it == value_->end() || it->is_null())
    return nullptr;
  return &*it;
}

Result<std::string> ObjectReader::RequiredString(const std::string& key) {
  ASSIGN_OR_RETURN(std::optional<std::string> v, OptionalString(key));
  if (!v || v->empty()) {
    return InvalidArgument(fmt::format("field \"{}\": is required", FieldName(key)),
                           FieldName(key));
  }
  return *v;
}

Result<std::optional<std::string>> ObjectReader::OptionalString(const std::string& key) {
  const Json* v = Find(key);
  if (v == nullptr)
    return std::optional<std::string>();
  if (!v->is_string()) {
    return InvalidArgument(
        fmt::format("field \"{}\": must be a string, got {}", FieldName(key), JsonTypeName(*v)),
        FieldName(key));
  }
  return std::optional<std::string>(v->get<std::string>());
}

Result<std::optional<int64_t>> ObjectReader::OptionalInt(const std::string& key, int64_t min,
                                                         int64_t max) {
  const Json* v = Find(key);
  if (v == nullptr)
    return std::optional<int64_t>();
  if (!v->is_number_integer()) {
    return InvalidArgument(
        fmt::format("field \"{}\": must be an integer, got {}", FieldName(key), JsonTypeName(*v)),
        FieldName(key));
  }
  int64_t n = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)
                  ? INT64_MAX
                  : v->get<int64_t>();
  if (n < min || n > max) {
    return InvalidArgument(fmt::format("field \"{}\": must be between {} and {}, got {}",
                                       FieldName(key), min, max, v->dump()),
                           FieldName(key));
  }
  return std::optional<int64_t>(n);
}

Result<std::optional<bool>> ObjectReader::OptionalBool(const std::string& key) {
  const Json* v = Find(key);
  if (v == nullptr)
    return std::optional<bool>();
  if (!v->is_boolean()) {
    return InvalidArgument(
        fmt::format("field \"{}\": must be a boolean, got {}", FieldName(key), JsonTypeName(*v)),
        FieldName(key));
  }
  return std::optional<bool>(v->get<bool>());
}

Result<Json> ObjectReader::OptionalObject(const std::string& key) {
  const Json* v = Find(key);
  if (v == nullptr)
    return Json::object();
  if (!v->is_object()) {
    return InvalidArgument(
        fmt::format("field \"{}\": must be an object, got {}", FieldName(key), JsonTypeName(*v)),
        FieldName(key));
  }
  return *v;
}

Result<std::optional<double>> ObjectReader::OptionalNumber(const std::string& key) {
  const Json* v = Find(key);
  if (v == nullptr)
    return std::optional<double>();
  if (!v->is_number()) {
    return InvalidArgument(
        fmt::format("field \"{}\": must be a number, got {}", FieldName(key), JsonTypeName(*v)),
        FieldName(key));
  }
  return std::optional<double>(v->get<double>());
}

Result<Json> ObjectReader::OptionalArray(const std::string& key) {
  const Json* v = Find(key);
  if (v == nullptr)
    return Json::array();
  if (!v->is_array()) {
    return InvalidArgument(
        fmt::format("field \"{}\": must be an array, got {}", FieldName(key), JsonTypeName(*v)),
        FieldName(key));
  }
  return *v;
}

bool ObjectReader::Has(const std::string& key) const {
  return value_->contains(key);
}

Status ObjectReader::Finish() const {
  for (const auto& [key, _] : value_->items()) {
    if (!seen_.contains(key)) {
      return InvalidArgument(fmt::format("field \"{}\": unknown field", FieldName(key)),
                             FieldName(key));
    }
  }
  return Ok();
}

}  // namespace kervan::core
