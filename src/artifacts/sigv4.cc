// AWS Signature Version 4 (header-based), as described in AWS's "Create a
// signed AWS API request" and checked against its published test suite.
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "core/crypto.h"
#include "core/sha256.h"

namespace kervan::artifacts {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Trims the value and folds each run of spaces inside it into one.
std::string CanonicalValue(std::string_view value) {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!value.empty() && is_space(value.front()))
    value.remove_prefix(1);
  while (!value.empty() && is_space(value.back()))
    value.remove_suffix(1);
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (is_space(c)) {
      if (!out.empty() && out.back() == ' ')
        continue;
      c = ' ';
    }
    out.push_back(c);
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

// HMAC-SHA256 as raw bytes (core gives hex).
std::string Hmac(std::string_view key, std::string_view data) {
  std::string hex = core::HmacSha256Hex(key, data);
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>(HexValue(hex[2 * i]) * 16 + HexValue(hex[2 * i + 1]));
  return out;
}

struct Canonical {
  std::string request;
  std::string signed_headers;
};

Canonical Build(const SigV4Request& request) {
  std::vector<std::pair<std::string, std::string>> query;
  query.reserve(request.query.size());
  for (const auto& [key, value] : request.query)
    query.emplace_back(UriEncode(key, true), UriEncode(value, true));
  std::sort(query.begin(), query.end());

  std::map<std::string, std::string> headers;
  for (const auto& [name, value] : request.headers) {
    auto [it, inserted] = headers.emplace(Lower(name), CanonicalValue(value));
    if (!inserted)
      it->second += "," + CanonicalValue(value);
  }

  Canonical out;
  std::string& c = out.request;
  c += request.method;
  c += '\n';
  c += request.path.empty() ? std::string_view("/") : std::string_view(request.path);
  c += '\n';
  for (size_t i = 0; i < query.size(); ++i) {
    if (i > 0)
      c += '&';
    c += query[i].first;
    c += '=';
    c += query[i].second;
  }
  c += '\n';
  for (const auto& [name, value] : headers) {
    c += name;
    c += ':';
    c += value;
    c += '\n';
    if (!out.signed_headers.empty())
      out.signed_headers += ';';
    out.signed_headers += name;
  }
  c += '\n';
  c += out.signed_headers;
  c += '\n';
  c += request.payload_hash;
  return out;
}

}  // namespace

std::string UriEncode(std::string_view text, bool encode_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !encode_slash);
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

std::string SigV4CanonicalRequest(const SigV4Request& request) {
  return Build(request).request;
}

std::string SigV4Authorization(const SigV4Request& request, const SigV4Credentials& credentials,
                               std::string_view amz_date) {
  Canonical canonical = Build(request);
  std::string_view day = amz_date.substr(0, 8);
  std::string scope =
      fmt::format("{}/{}/{}/aws4_request", day, credentials.region, credentials.service);
  std::string to_sign = fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", amz_date, scope,
                                    core::Sha256Hex(canonical.request));
  std::string key = Hmac("AWS4" + credentials.secret_key, day);
  key = Hmac(key, credentials.region);
  key = Hmac(key, credentials.service);
  key = Hmac(key, "aws4_request");
  return fmt::format("AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
                     credentials.access_key, scope, canonical.signed_headers,
                     core::HmacSha256Hex(key, to_sign));
}

}  // namespace kervan::artifacts
