// The MLflow REST wire conventions; see mlflow_wire.h.
#include "tracking/mlflow_wire.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

namespace kervan::tracking::mlflow {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

core::Error MissingField(std::string_view field) {
  return core::InvalidArgument(
      fmt::format("Missing value for required parameter '{}'. See the API docs for more "
                  "information about request parameters.",
                  field),
      std::string(field));
}

core::Error BadField(std::string_view field, std::string_view what, const Json& value) {
  return core::InvalidArgument(
      fmt::format("Invalid value {} for parameter '{}' supplied: {}", value.dump(), field, what),
      std::string(field));
}

Result<Json> ArgsFrom(const http::Request& req, const std::vector<std::string>& repeated) {
  if (req.method == "GET" || req.method == "HEAD") {
    Json args = Json::object();
    for (const auto& [key, value] : req.query) {
      std::string name = key;
      if (auto bracket = name.find('['); bracket != std::string::npos && name.back() == ']')
        name.resize(bracket);
      bool is_list = std::find(repeated.begin(), repeated.end(), name) != repeated.end();
      if (!is_list) {
        args[name] = value;
      } else if (!args.contains(name)) {
        Json list = Json::array();
        if (name == key) {
          for (auto& v : req.QueryAll(key))
            list.push_back(v);
        }
        args[name] = std::move(list);
      }
      if (is_list && name != key)
        args[name].push_back(value);
    }
    return args;
  }
  // MLflow checks POST and PUT whatever the body (server/validation.py), and
  // other methods only when they carry one.
  const bool checked = req.method == "POST" || req.method == "PUT" || !req.body.empty();
  if (checked && !ContentTypeIsJson(req)) {
    return core::InvalidArgument("Content-Type must be one of ['application/json']",
                                 "Content-Type");
  }
  if (req.body.empty())
    return Json::object();
  Json body = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded())
    return core::InvalidArgument("Malformed request body: not valid JSON", "body");
  if (body.is_string()) {  // double-encoded, as some clients send
    body = Json::parse(body.get<std::string>(), nullptr, false);
    if (body.is_discarded())
      return core::InvalidArgument("Malformed request body: not valid JSON", "body");
  }
  if (!body.is_object())
    return core::InvalidArgument("Malformed request body: expected a JSON object", "body");
  return body;
}

}  // namespace

bool ContentTypeIsJson(const http::Request& req) {
  std::string type = Lower(req.Header("Content-Type"));
  if (auto semi = type.find(';'); semi != std::string::npos)
    type.resize(semi);
  while (!type.empty() && type.back() == ' ')
    type.pop_back();
  return type == "application/json";
}

std::string ErrorCodeName(const core::Error& error) {
  if (error.details.is_object()) {
    auto it = error.details.find("mlflow_error_code");
    if (it != error.details.end() && it->is_string())
      return it->get<std::string>();
  }
  switch (error.code) {
    case core::ErrorCode::kInvalidArgument:
      return "INVALID_PARAMETER_VALUE";
    case core::ErrorCode::kNotFound:
      return "RESOURCE_DOES_NOT_EXIST";
    case core::ErrorCode::kAlreadyExists:
      return "RESOURCE_ALREADY_EXISTS";
    case core::ErrorCode::kFailedPrecondition:
    case core::ErrorCode::kAborted:
      return "INVALID_STATE";
    case core::ErrorCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case core::ErrorCode::kUnauthenticated:
      return "UNAUTHENTICATED";
    case core::ErrorCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case core::ErrorCode::kUnavailable:
      return "TEMPORARILY_UNAVAILABLE";
    case core::ErrorCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case core::ErrorCode::kInternal:
      break;
  }
  return "INTERNAL_ERROR";
}

int StatusFor(std::string_view code) {
  // mlflow/exceptions.py ERROR_CODE_TO_HTTP_STATUS.
  if (code == "RESOURCE_DOES_NOT_EXIST" || code == "ENDPOINT_NOT_FOUND" || code == "NOT_FOUND")
    return 404;
  if (code == "PERMISSION_DENIED")
    return 403;
  if (code == "UNAUTHENTICATED")
    return 401;
  if (code == "RESOURCE_CONFLICT" || code == "ALREADY_EXISTS" || code == "ABORTED")
    return 409;
  if (code == "REQUEST_LIMIT_EXCEEDED" || code == "RESOURCE_EXHAUSTED")
    return 429;
  if (code == "NOT_IMPLEMENTED")
    return 501;
  if (code == "TEMPORARILY_UNAVAILABLE")
    return 503;
  if (code == "DEADLINE_EXCEEDED")
    return 504;
  if (code == "INTERNAL_ERROR" || code == "DATA_LOSS")
    return 500;
  return 400;  // INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS, INVALID_STATE, BAD_REQUEST...
}

core::Error WithCode(core::Error error, std::string_view mlflow_error_code) {
  if (!error.details.is_object())
    error.details = Json::object();
  error.details["mlflow_error_code"] = std::string(mlflow_error_code);
  return error;
}

http::Response ToResponse(const Result<Json>& result) {
  if (result) {
    const Json& value = *result;
    return http::Response::Json(200, value.is_null() ? Json::object() : value);
  }
  const core::Error& error = result.error();
  std::string code = ErrorCodeName(error);
  return http::Response::Json(StatusFor(code),
                              Json{{"error_code", code}, {"message", error.message}});
}

Result<Json> Args(const http::Request& req, std::initializer_list<std::string_view> repeated) {
  return ArgsFrom(req, std::vector<std::string>(repeated.begin(), repeated.end()));
}

Result<std::string> RequiredString(const Json& args, std::string_view field) {
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return MissingField(field);
  if (it->is_number_integer())  // ids sent as numbers by some clients
    return std::to_string(it->get<int64_t>());
  if (!it->is_string())
    return BadField(field, "expected a string", *it);
  std::string value = it->get<std::string>();
  if (value.empty())
    return MissingField(field);
  return value;
}

std::string OptionalString(const Json& args, std::string_view field, std::string def) {
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return def;
  if (it->is_string())
    return it->get<std::string>();
  if (it->is_number_integer())
    return std::to_string(it->get<int64_t>());
  return def;
}

Result<std::optional<int64_t>> OptionalInt64(const Json& args, std::string_view field) {
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return std::optional<int64_t>();
  if (it->is_number_integer())
    return std::optional<int64_t>(it->get<int64_t>());
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18)
      return std::optional<int64_t>(static_cast<int64_t>(d));
    return BadField(field, "expected an integer", *it);
  }
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty())
      return std::optional<int64_t>(v);
  }
  return BadField(field, "expected an integer", *it);
}

Result<std::optional<double>> OptionalDouble(const Json& args, std::string_view field) {
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return std::optional<double>();
  if (it->is_number())
    return std::optional<double>(it->get<double>());
  if (it->is_string()) {
    std::string s = Lower(it->get<std::string>());
    if (s == "nan")
      return std::optional<double>(std::numeric_limits<double>::quiet_NaN());
    if (s == "infinity" || s == "inf" || s == "+infinity" || s == "+inf")
      return std::optional<double>(std::numeric_limits<double>::infinity());
    if (s == "-infinity" || s == "-inf")
      return std::optional<double>(-std::numeric_limits<double>::infinity());
    double v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty())
      return std::optional<double>(v);
  }
  return BadField(field, "expected a number", *it);
}

Result<std::vector<std::string>> StringList(const Json& args, std::string_view field) {
  std::vector<std::string> out;
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return out;
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
    return out;
  }
  if (!it->is_array())
    return BadField(field, "expected a list of strings", *it);
  for (const Json& v : *it) {
    if (v.is_string())
      out.push_back(v.get<std::string>());
    else if (v.is_number_integer())
      out.push_back(std::to_string(v.get<int64_t>()));
    else
      return BadField(field, "expected a list of strings", *it);
  }
  return out;
}

Json DoubleToJson(double value) {
  if (std::isnan(value))
    return "NaN";
  if (std::isinf(value))
    return value > 0 ? "Infinity" : "-Infinity";
  return value;
}

Json KeyValues(const std::vector<std::pair<std::string, std::string>>& pairs) {
  Json out = Json::array();
  for (const auto& [k, v] : pairs)
    out.push_back({{"key", k}, {"value", v}});
  return out;
}

std::string EncodePageToken(int64_t offset) {
  return core::Base64Encode(Json{{"offset", offset}}.dump());
}

Result<int64_t> DecodePageToken(std::string_view token) {
  auto bad = [&] {
    return core::InvalidArgument(fmt::format("Invalid page token, could not base64-decode \"{}\"",
                                             std::string(token.substr(0, 64))),
                                 "page_token");
  };
  auto text = core::Base64Decode(token);
  if (!text)
    return bad();
  Json parsed = Json::parse(*text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("offset") ||
      !parsed["offset"].is_number_integer() || parsed["offset"].get<int64_t>() < 0) {
    return core::InvalidArgument("Invalid page token: expected {\"offset\": N}", "page_token");
  }
  return parsed["offset"].get<int64_t>();
}

Status AddRoute(http::Router& router, const std::string& method, std::string_view path,
                const std::string& permission, Handler handler,
                std::initializer_list<std::string_view> repeated, RawHandler raw, Start start) {
  auto shared = std::make_shared<Handler>(std::move(handler));
  auto shared_raw = raw ? std::make_shared<RawHandler>(std::move(raw)) : nullptr;
  auto shared_start = start ? std::make_shared<Start>(std::move(start)) : nullptr;
  std::vector<std::string> lists(repeated.begin(), repeated.end());
  for (std::string_view prefix : {"/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"}) {
    http::Route route;
    route.method = method;
    route.pattern = std::string(prefix) + std::string(path);
    route.permission = permission;
    route.error_response = [](const core::Error& e) { return ToResponse(e); };
    route.handler = [shared, shared_raw, lists](const http::Request& req) {
      if (shared_raw && req.method == "POST" && !req.body.empty() && ContentTypeIsJson(req)) {
        if (std::optional<Result<Json>> answer = (*shared_raw)(req))
          return ToResponse(*answer);
      }
      Result<Json> args = ArgsFrom(req, lists);
      if (!args)
        return ToResponse(args.error());
      return ToResponse((*shared)(req, *args));
    };
    if (shared_start) {
      route.start = [shared_start](const http::Request& req, http::Respond respond) {
        return (*shared_start)(req, [respond = std::move(respond)](const Result<Json>& answer) {
          respond(ToResponse(answer));
        });
      };
    }
    RETURN_IF_ERROR(router.Add(std::move(route)));
  }
  return core::Ok();
}

Status AddTextRoute(http::Router& router, const std::string& method, std::string_view path,
                    const std::string& permission, TextHandler handler) {
  auto shared = std::make_shared<TextHandler>(std::move(handler));
  for (std::string_view prefix : {"/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"}) {
    http::Route route;
    route.method = method;
    route.pattern = std::string(prefix) + std::string(path);
    route.permission = permission;
    route.error_response = [](const core::Error& e) { return ToResponse(e); };
    route.handler = [shared](const http::Request& req) {
      Result<Json> args = ArgsFrom(req, {});
      if (!args)
        return ToResponse(args.error());
      Result<std::string> text = (*shared)(req, *args);
      if (!text)
        return ToResponse(text.error());
      return http::Response::Text(200, std::move(text).value(), "application/json");
    };
    RETURN_IF_ERROR(router.Add(std::move(route)));
  }
  return core::Ok();
}

}  // namespace kervan::tracking::mlflow
