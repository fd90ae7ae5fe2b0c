// Cron schedules for pipeline triggers. Part of the pipelines module (public
// header pipelines.h). Pure and thread-safe.
//
//   minute hour day-of-month month day-of-week          (5 fields, as Vixie cron)
//   second minute hour day-of-month month day-of-week   (6 fields)
//
// Each field: "*", a number, a range "a-b", a list "a,b,c", a step "*/n" or
// "a-b/n"; months JAN-DEC and weekdays SUN-SAT by name (any case); weekday 7
// is Sunday. As Vixie cron: when both day-of-month and day-of-week are
// restricted (neither is "*"), a day matches if either does. Shorthands:
// @yearly @annually @monthly @weekly @daily @midnight @hourly. Times are UTC.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/core.h"

namespace kervan::pipelines {

using core::Result;

class CronSchedule {
 public:
  // kInvalidArgument (field "cron") naming the field and the bad token:
  //   cron: field 2 (hour) "25" is out of range 0-23
  static Result<CronSchedule> Parse(std::string_view text);

  // The first matching time strictly after `after_us` (µs since the epoch,
  // UTC), at a whole second (whole minute for 5 fields). Searches at most
  // 5 years ahead; returns 0 when nothing matches (e.g. "0 0 30 2 *").
  int64_t Next(int64_t after_us) const;

  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::bitset<60> seconds_, minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1-31
  std::bitset<13> months_;   // 1-12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool dom_restricted_ = false, dow_restricted_ = false;
};

}  // namespace kervan::pipelines
