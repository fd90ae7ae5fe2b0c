// Internal to the artifacts module: helpers shared by its .cc files.
#pragma once

#include <string>
#include <string_view>

#include "artifacts/artifacts.h"
#include "core/result.h"

namespace kervan::artifacts::internal {

// Whether `text` is well-formed UTF-8 (no overlong forms or surrogates).
bool ValidUtf8(std::string_view text);

// `text` quoted safely for an error message: control characters, stray
// bytes, '"' and '\' escaped; cut after about 200 bytes.
std::string Printable(std::string_view text);

// Whether `name` could be one segment of a path NormalizePath accepts, as
// the first segment or a later one. Listings leave out names that fail this
// (the store's own temporary files among them): a client could not address
// them anyway.
bool ValidSegment(std::string_view name, bool first);

// Like NormalizePath, but "" (the root) is allowed; for List.
inline core::Result<std::string> NormalizeDir(std::string_view raw, std::string_view field) {
  if (raw.empty())
    return std::string();
  return NormalizePath(raw, field);
}

}  // namespace kervan::artifacts::internal
