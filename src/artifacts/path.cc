// NormalizePath: the one gate every client-supplied artifact path passes.
//
// The rules answer the path-traversal reports against MLflow's artifact
// server: ".." (CVE-2023-1177), absolute and "//" paths, backslashes and
// drive letters (CVE-2023-2780), percent-encoded traversal that a second
// decoding would revive and '#' fragments (CVE-2023-6909, CVE-2024-1483,
// CVE-2024-1594). Refusing is cheaper than proving a path harmless.
#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "artifacts/internal.h"

namespace kervan::artifacts {
namespace {

constexpr size_t kMaxPathBytes = 1024;
constexpr size_t kMaxSegmentBytes = 255;
constexpr size_t kMaxSegments = 48;

int HexValue(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool IsControl(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// Characters that must not appear after one more percent-decoding.
bool DangerousWhenDecoded(unsigned char c) {
  return IsControl(c) || c == '.' || c == '/' || c == '\\' || c == '%' || c == '#' || c == '?' ||
         c == ':';
}

}  // namespace

namespace internal {

bool ValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size())
      return false;
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF.
    if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

std::string Printable(std::string_view text) {
  constexpr size_t kMax = 200;
  std::string out;
  size_t i = 0;
  for (; i < text.size() && out.size() < kMax; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      // Valid UTF-8 stays readable; stray bytes are escaped.
      size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
      if (len > 1 && i + len <= text.size() && ValidUtf8(text.substr(i, len))) {
        out.append(text.substr(i, len));
        i += len - 1;
      } else {
        out += fmt::format("\\x{:02x}", c);
      }
    } else if (IsControl(c)) {
      out += fmt::format("\\x{:02x}", c);
    } else if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (i < text.size())
    out += "...";
  return out;
}

bool ValidSegment(std::string_view name, bool first) {
  if (name.empty() || name.find('/') != std::string_view::npos)
    return false;
  // Below the first segment a ':' is fine; check the name in that position.
  std::string path = first ? std::string(name) : "x/" + std::string(name);
  auto normal = NormalizePath(path);
  return normal && *normal == path;
}

}  // namespace internal

Result<std::string> NormalizePath(std::string_view raw, std::string_view field) {
  auto bad = [&](std::string_view why) {
    return core::InvalidArgument(fmt::format("{} \"{}\": {}", field, internal::Printable(raw), why),
                                 std::string(field));
  };
  if (raw.empty())
    return bad("must not be empty");
  if (raw.size() > kMaxPathBytes)
    return bad(fmt::format("must be at most {} bytes, got {}", kMaxPathBytes, raw.size()));
  if (!internal::ValidUtf8(raw))
    return bad("must be valid UTF-8");
  for (size_t i = 0; i < raw.size(); ++i) {
    auto c = static_cast<unsigned char>(raw[i]);
    if (IsControl(c))
      return bad("must not contain control characters");
    if (c == '\\')
      return bad("must not contain backslashes ('/' separates directories)");
    if (c == '#' || c == '?')
      return bad("must not contain '#' or '?'");
    if (c == '%' && i + 2 < raw.size()) {
      int hi = HexValue(raw[i + 1]);
      int lo = HexValue(raw[i + 2]);
      if (hi >= 0 && lo >= 0 && DangerousWhenDecoded(static_cast<unsigned char>(hi * 16 + lo))) {
        return bad(
            fmt::format("must not contain the percent-encoded character \"{}\"", raw.substr(i, 3)));
      }
    }
  }
  if (raw.front() == '/')
    return bad("must be a relative path, not an absolute one");
  std::string_view path = raw;
  if (path.back() == '/')
    path.remove_suffix(1);
  size_t count = 0;
  std::string_view rest = path;
  for (;;) {
    size_t slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    if (segment.empty())
      return bad("must not contain empty segments (\"//\")");
    if (segment == "." || segment == "..")
      return bad("must not contain \".\" or \"..\" segments");
    if (segment.size() > kMaxSegmentBytes) {
      return bad(
          fmt::format("has a segment longer than {} bytes ({})", kMaxSegmentBytes, segment.size()));
    }
    if (count == 0 && segment.find(':') != std::string_view::npos)
      return bad("must not start with a drive letter or URI scheme (':' in the first segment)");
    if (++count > kMaxSegments)
      return bad(fmt::format("must have at most {} segments", kMaxSegments));
    if (slash == std::string_view::npos)
      break;
    rest = rest.substr(slash + 1);
  }
  return std::string(path);
}

}  // namespace kervan::artifacts
