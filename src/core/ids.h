// Identifiers: time-ordered UUIDs and strong id types.
#pragma once

#include <compare>
#include <string>
#include <utility>

namespace kervan::core {

// A UUIDv7 (RFC 9562): 48-bit millisecond timestamp then random bits, so ids
// sort by creation time. Thread-safe.
std::string NewUuidV7();

// A string id that cannot be mixed up with another kind of id.
//   using EventId = StrongId<struct EventIdTag>;
template <typename Tag>
class StrongId {
 public:
  StrongId() = default;
  explicit StrongId(std::string value) : value_(std::move(value)) {}
  const std::string& value() const { return value_; }
  bool empty() const { return value_.empty(); }
  auto operator<=>(const StrongId&) const = default;

 private:
  std::string value_;
};

}  // namespace kervan::core
