#include "core/ids.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>

namespace kervan::core {

std::string NewUuidV7() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  uint64_t r1 = rng();
  uint64_t r2 = rng();
  uint64_t hi = (ms << 16) | 0x7000 | (r1 & 0x0fff);                   // version 7
  uint64_t lo = (r2 & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

}  // namespace kervan::core
