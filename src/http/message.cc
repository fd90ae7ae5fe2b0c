// Request and Response helpers, the error envelope and the status mapping.
#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "http/http.h"
#include "http/wire.h"

namespace kervan::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

char LowerAscii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

namespace wire {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i]))
      return false;
  }
  return true;
}

std::string ErrorEnvelope(std::string_view code, std::string_view message, std::string_view field,
                          const core::Json& details, std::string_view request_id) {
  core::Json error = core::Json::object();
  if (details.is_object()) {
    for (const auto& [key, value] : details.items())
      error[key] = value;
  } else if (!details.is_null()) {
    error["details"] = details;
  }
  error["code"] = code;
  error["message"] = message;
  if (field.empty()) {
    error.erase("field");
  } else {
    error["field"] = field;
  }
  core::Json envelope = {{"error", std::move(error)}};
  if (!request_id.empty())
    envelope["request_id"] = request_id;
  return envelope.dump(-1, ' ', false, core::Json::error_handler_t::replace);
}

void AppendRequestId(std::string& envelope, std::string_view request_id) {
  // The envelope is a compact JSON object and the id needs no escaping
  // (ValidRequestId or a UUID), so the key can be spliced in before the
  // closing brace; "request_id" sorts after "error" as a dump would put it.
  if (request_id.empty() || envelope.empty() || envelope.back() != '}')
    return;
  envelope.pop_back();
  envelope += ",\"request_id\":\"";
  envelope += request_id;
  envelope += "\"}";
}

bool ValidRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128)
    return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

void ParseQuery(std::string_view query, std::map<std::string, std::string>* out) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty())
      continue;
    size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq), true);
    std::string value =
        eq == std::string_view::npos ? std::string() : PercentDecode(pair.substr(eq + 1), true);
    out->emplace(std::move(key), std::move(value));
  }
}

}  // namespace wire

std::string PercentDecode(std::string_view text, bool plus_is_space) {
  if (text.find('%') == std::string_view::npos &&
      (!plus_is_space || text.find('+') == std::string_view::npos)) {
    return std::string(text);
  }
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      int hi = HexValue(text[i + 1]);
      int lo = HexValue(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

int HttpStatusFor(core::ErrorCode code) {
  switch (code) {
    case core::ErrorCode::kInvalidArgument:
      return 400;
    case core::ErrorCode::kNotFound:
      return 404;
    case core::ErrorCode::kAlreadyExists:
      return 409;
    case core::ErrorCode::kFailedPrecondition:
      return 409;
    case core::ErrorCode::kAborted:
      return 409;
    case core::ErrorCode::kPermissionDenied:
      return 403;
    case core::ErrorCode::kUnauthenticated:
      return 401;
    case core::ErrorCode::kResourceExhausted:
      return 429;
    case core::ErrorCode::kUnavailable:
      return 503;
    case core::ErrorCode::kDeadlineExceeded:
      return 504;
    case core::ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

std::string Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (wire::EqualsIgnoreCase(key, name))
      return value;
  }
  return {};
}

core::Result<core::Json> Request::JsonBody() const {
  if (body.empty()) {
    return core::InvalidArgument("request body is empty; expected a JSON document", "body");
  }
  return core::ParseJson(body);
}

std::string Request::QueryOr(const std::string& key, std::string def) const {
  auto it = query.find(key);
  if (it == query.end())
    return def;
  return it->second;
}

std::vector<std::string> Request::QueryAll(std::string_view key) const {
  std::vector<std::string> values;
  std::string_view rest = query_string;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    if (PercentDecode(pair.substr(0, eq), true) != key)
      continue;
    values.push_back(eq == std::string_view::npos ? std::string()
                                                  : PercentDecode(pair.substr(eq + 1), true));
  }
  return values;
}

core::Result<int64_t> Request::QueryInt(const std::string& key, int64_t def, int64_t min,
                                        int64_t max) const {
  auto it = query.find(key);
  if (it == query.end())
    return def;
  const std::string& text = it->second;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min ||
      value > max) {
    return core::InvalidArgument(
        fmt::format("query parameter \"{}\": must be an integer between {} and {}, got \"{}\"", key,
                    min, max, text),
        key);
  }
  return value;
}

const std::string& Request::Param(const std::string& name) const {
  static const std::string kEmpty;
  auto it = params.find(name);
  return it == params.end() ? kEmpty : it->second;
}

Response Response::Json(int status, const core::Json& value) {
  Response r;
  r.status = status;
  r.body = value.dump(-1, ' ', false, core::Json::error_handler_t::replace);
  return r;
}

Response Response::Text(int status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

Response Response::FromError(const core::Error& error) {
  Response r;
  r.status = HttpStatusFor(error.code);
  r.body = wire::ErrorEnvelope(core::ErrorCodeName(error.code), error.message, error.field,
                               error.details, {});
  r.error_envelope = true;
  return r;
}

Response Response::FromResult(const core::Result<core::Json>& result, int ok_status) {
  return result ? Json(ok_status, *result) : FromError(result.error());
}

core::Status Request::CheckQuery(std::initializer_list<std::string_view> allowed) const {
  for (const auto& [key, _] : query) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end())
      continue;
    std::string names;
    for (auto a : allowed)
      names += (names.empty() ? "" : ", ") + std::string(a);
    return core::InvalidArgument(fmt::format("query parameter \"{}\": unknown (allowed: {})", key,
                                             names.empty() ? "none" : names),
                                 key);
  }
  return core::Ok();
}

Route JsonRoute(std::string method, std::string pattern, std::string permission,
                std::function<core::Result<core::Json>(const Request&)> fn, int ok_status) {
  return {.method = std::move(method),
          .pattern = std::move(pattern),
          .handler = [fn = std::move(fn), ok_status](
                         const Request& req) { return Response::FromResult(fn(req), ok_status); },
          .blocking = true,
          .permission = std::move(permission)};
}

}  // namespace kervan::http
