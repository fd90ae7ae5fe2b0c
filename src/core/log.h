// Structured logs: one JSON object per line with ECS field names
// (@timestamp, log.level, message, event.action, trace.id, ...), so the lines
// can be shipped to Elasticsearch as they are. Thread-safe.
#pragma once

#include <cstdio>
#include <string_view>

#include "core/json.h"

namespace kervan::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Process-wide sink; defaults to stderr at info. Set once at start-up.
void SetLogOutput(std::FILE* out);
void SetLogLevel(LogLevel level);
bool ParseLogLevel(std::string_view text, LogLevel* out);

// `fields` is a flat object of ECS keys, e.g. {{"event.action", "server.started"}}.
void Log(LogLevel level, std::string_view message, const Json& fields = Json::object());

inline void LogInfo(std::string_view m, const Json& f = Json::object()) {
  Log(LogLevel::kInfo, m, f);
}
inline void LogWarn(std::string_view m, const Json& f = Json::object()) {
  Log(LogLevel::kWarn, m, f);
}
inline void LogError(std::string_view m, const Json& f = Json::object()) {
  Log(LogLevel::kError, m, f);
}

}  // namespace kervan::core
