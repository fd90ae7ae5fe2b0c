// What a subscription selects, where it sends, and when it retries.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "webhooks/webhooks.h"

namespace kervan::webhooks {
namespace {

bool IsSegmentChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool IsHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-';
}

constexpr size_t kMaxUrlLength = 2048;

}  // namespace

bool TypeMatches(std::string_view pattern, std::string_view type) {
  if (pattern == "*")
    return true;
  if (pattern.ends_with(".*")) {
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // keeps the '.'
    return type.starts_with(prefix);
  }
  return pattern == type;
}

Status ValidateTypePattern(std::string_view pattern, const std::string& field) {
  auto bad = [&](std::string_view why) {
    return core::InvalidArgument(fmt::format("field \"{}\": {}, got \"{}\"", field, why, pattern),
                                 field);
  };
  if (pattern == "*")
    return core::Ok();
  if (pattern.empty() || pattern.size() > 200)
    return bad("must be 1..200 characters");
  std::string_view body = pattern.ends_with(".*") ? pattern.substr(0, pattern.size() - 2) : pattern;
  if (body.empty())
    return bad("must be \"*\", an event type or \"prefix.*\"");
  bool segment_empty = true;
  for (char c : body) {
    if (c == '.') {
      if (segment_empty)
        return bad("has an empty segment");
      segment_empty = true;
    } else if (IsSegmentChar(c)) {
      segment_empty = false;
    } else {
      return bad("must be \"*\", an event type (letters, digits, '_', '.') or \"prefix.*\"");
    }
  }
  if (segment_empty)
    return bad("has an empty segment");
  return core::Ok();
}

Result<TargetUrl> ParseTargetUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    std::string shown(url.substr(0, 200));
    return core::InvalidArgument(fmt::format("field \"url\": {}, got \"{}\"", why, shown), "url");
  };
  if (url.size() > kMaxUrlLength)
    return bad(fmt::format("must be at most {} characters", kMaxUrlLength));
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      return bad("must be printable ASCII without spaces (percent-encode the rest)");
  }
  if (url.starts_with("https://"))
    return bad("https is not supported yet; use an http:// URL");
  if (!url.starts_with("http://"))
    return bad("must be an http:// URL");
  std::string_view rest = url.substr(7);
  if (rest.find('#') != std::string_view::npos)
    return bad("must not have a fragment");
  size_t end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (authority.find('@') != std::string_view::npos)
    return bad("must not hold credentials (user@host); the signature authenticates Kervan");
  std::string_view host = authority, port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return bad("has an unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return bad("expected :port after the IPv6 address");
      port = after.substr(1);
      has_port = true;
    }
    if (host.empty() ||
        host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
      return bad("has an invalid IPv6 address");
  } else {
    if (size_t colon = authority.find(':'); colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (host.empty())
      return bad("has no host");
    if (!std::all_of(host.begin(), host.end(), IsHostChar) || host.front() == '.' ||
        host.front() == '-')
      return bad("has an invalid host");
  }
  if (has_port) {
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoi(std::string(port)) < 1 || std::stoi(std::string(port)) > 65535)
      return bad("port must be a number between 1 and 65535");
  }
  TargetUrl out;
  out.base = "http://" + std::string(authority);
  if (tail.empty())
    out.target = "/";
  else if (tail.front() == '?')
    out.target = "/" + std::string(tail);
  else
    out.target = std::string(tail);
  return out;
}

std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int failed_attempts, double u) {
  // Doubling stops once past the cap, so large attempt numbers cannot overflow.
  double delay = static_cast<double>(policy.base.count());
  const double cap = static_cast<double>(policy.max.count());
  for (int i = 1; i < failed_attempts && delay < cap; ++i)
    delay *= 2;
  delay = std::min(delay, cap);
  delay *= 1.0 - policy.jitter * std::clamp(u, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(delay)));
}

}  // namespace kervan::webhooks
