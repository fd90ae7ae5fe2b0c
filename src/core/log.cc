#include "core/log.h"

#include <atomic>
#include <mutex>

#include "core/time.h"

namespace kervan::core {
namespace {

std::atomic<std::FILE*> g_out{nullptr};
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_write_mu;

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void SetLogOutput(std::FILE* out) {
  g_out.store(out);
}
void SetLogLevel(LogLevel level) {
  g_level.store(static_cast<int>(level));
}

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (text == LevelName(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

void Log(LogLevel level, std::string_view message, const Json& fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed))
    return;
  Json line = fields.is_object() ? fields : Json::object();
  line["@timestamp"] = FormatRfc3339(NowMicros());
  line["log.level"] = LevelName(level);
  line["message"] = message;
  line["ecs.version"] = "8.11.0";
  line["service.name"] = "kervan";
  std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace);
  text.push_back('\n');
  std::FILE* out = g_out.load();
  if (out == nullptr)
    out = stderr;
  std::lock_guard lock(g_write_mu);
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
}

}  // namespace kervan::core
