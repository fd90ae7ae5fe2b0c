// libFuzzer target: untrusted search filters (runs/search, experiments/search,
// the registry searches and, later, rules all parse them). Checks that the
// parser never crashes, that Format() of anything it accepts parses back to
// the same clauses, that order_by parsing never crashes, and that LIKE
// matching stays total on arbitrary bytes.
// Build and run: fuzz/run.sh [seconds]
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/filter.h"

namespace filter = kervan::core::filter;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = filter::Parse(text);
  if (parsed) {
    std::string canonical = filter::Format(*parsed);
    auto again = filter::Parse(canonical);
    if (!again)
      std::abort();  // Format produced text Parse refuses
    if (again->clauses.size() != parsed->clauses.size())
      std::abort();
    for (size_t i = 0; i < parsed->clauses.size(); ++i) {
      filter::Comparison a = parsed->clauses[i], b = again->clauses[i];
      a.offset = b.offset = 0;  // offsets differ between the two texts
      if (!(a == b))
        std::abort();
    }
  }
  (void)filter::ParseOrderBy(text);
  // Split the input into a value and a pattern for LIKE / ILIKE.
  size_t half = size / 2;
  (void)filter::Like(text.substr(0, half), text.substr(half), false);
  (void)filter::Like(text.substr(0, half), text.substr(half), true);
  return 0;
}
