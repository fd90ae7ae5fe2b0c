// Wall-clock time as microseconds since the Unix epoch, and its RFC 3339 form.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kervan::core {

int64_t NowMicros();
// "2026-11-27T09:30:00.123456Z"
std::string FormatRfc3339(int64_t micros);
// Accepts "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"; nullopt on anything else.
std::optional<int64_t> ParseRfc3339(std::string_view text);

}  // namespace kervan::core
