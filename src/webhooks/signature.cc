// Signing and verifying webhook bodies.
#include <cstdlib>

#include <fmt/format.h>

#include "webhooks/webhooks.h"

namespace kervan::webhooks {

std::string SignatureHeader(std::string_view secret, std::string_view body, int64_t unix_seconds) {
  std::string t = std::to_string(unix_seconds);
  std::string signed_text;
  signed_text.reserve(t.size() + 1 + body.size());
  signed_text.append(t).append(".").append(body);
  return fmt::format("t={},v1={}", t, core::HmacSha256Hex(secret, signed_text));
}

Status VerifySignature(std::string_view secret, std::string_view header, std::string_view body,
                       int64_t now_unix_seconds, std::chrono::seconds tolerance) {
  std::string_view t;
  std::vector<std::string_view> candidates;
  // "t=<digits>,v1=<hex>[,v1=<hex>...]"; unknown keys are skipped so that a
  // later scheme (v2) can be added beside v1.
  std::string_view rest = header;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos)
      continue;
    std::string_view key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "t")
      t = value;
    else if (key == "v1")
      candidates.push_back(value);
  }
  if (t.empty() || t.size() > 18 || t.find_first_not_of("0123456789") != std::string_view::npos) {
    return core::Unauthenticated("signature header has no valid t=<unix seconds>");
  }
  if (candidates.empty())
    return core::Unauthenticated("signature header has no v1= signature");
  int64_t sent = std::strtoll(std::string(t).c_str(), nullptr, 10);
  if (std::llabs(now_unix_seconds - sent) > tolerance.count()) {
    return core::Unauthenticated(
        fmt::format("signature timestamp {} is more than {} s from now ({})", sent,
                    tolerance.count(), now_unix_seconds));
  }
  std::string expected = core::HmacSha256Hex(secret, std::string(t) + "." + std::string(body));
  for (std::string_view c : candidates) {
    if (core::ConstantTimeEquals(c, expected))
      return core::Ok();
  }
  return core::Unauthenticated("signature does not match the body");
}

}  // namespace kervan::webhooks
