// Cron expressions: parsing into bit sets, and the next matching UTC time by
// civil-date arithmetic (no time zone database, no TZ variable).
#include "pipelines/cron.h"

#include <array>
#include <charconv>
#include <climits>
#include <vector>

#include <fmt/format.h>

namespace kervan::pipelines {
namespace {

constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t kMicrosPerSecond = 1'000'000;
// Next() gives up after this long (5 years, counting a leap day in each).
constexpr int64_t kSearchSeconds = 5 * 366 * kSecondsPerDay;

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kWeekdayNames = {"sun", "mon", "tue", "wed",
                                                           "thu", "fri", "sat"};

struct FieldSpec {
  std::string_view name;
  int min, max;
  const std::string_view* names;  // names[i] is the value min + i; null when none
  size_t name_count;
};

constexpr FieldSpec kSecond{"second", 0, 59, nullptr, 0};
constexpr FieldSpec kMinute{"minute", 0, 59, nullptr, 0};
constexpr FieldSpec kHour{"hour", 0, 23, nullptr, 0};
constexpr FieldSpec kDayOfMonth{"day-of-month", 1, 31, nullptr, 0};
constexpr FieldSpec kMonth{"month", 1, 12, kMonthNames.data(), kMonthNames.size()};
// 0-7: both 0 and 7 are Sunday.
constexpr FieldSpec kDayOfWeek{"day-of-week", 0, 7, kWeekdayNames.data(), kWeekdayNames.size()};

struct Shorthand {
  std::string_view name, expansion;
};
constexpr std::array<Shorthand, 7> kShorthands = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

char Lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i]))
      return false;
  }
  return true;
}

std::vector<std::string_view> SplitWhitespace(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t'))
      ++i;
    size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t')
      ++i;
    if (i > start)
      out.push_back(text.substr(start, i - start));
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

// Parses one cron field into a bit mask of its allowed values.
class FieldParser {
 public:
  FieldParser(const FieldSpec& spec, int position, std::string_view text)
      : spec_(spec), position_(position), text_(text) {}

  Result<uint64_t> Parse() const {
    uint64_t mask = 0;
    for (std::string_view item : Split(text_, ',')) {
      if (item.empty())
        return Fail(text_, "has an empty list item");
      ASSIGN_OR_RETURN(uint64_t bits, ParseItem(item));
      mask |= bits;
    }
    return mask;
  }

 private:
  core::Error Fail(std::string_view token, std::string_view what) const {
    return core::InvalidArgument(
        fmt::format("cron: field {} ({}) \"{}\" {}", position_, spec_.name, token, what), "cron");
  }

  Result<int> Value(std::string_view token) const {
    int v = 0;
    auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
    if (!token.empty() && ec == std::errc() && ptr == token.data() + token.size() &&
        token[0] != '-') {
      if (v < spec_.min || v > spec_.max)
        return Fail(token, fmt::format("is out of range {}-{}", spec_.min, spec_.max));
      return v;
    }
    if (ec == std::errc::result_out_of_range)
      return Fail(token, fmt::format("is out of range {}-{}", spec_.min, spec_.max));
    for (size_t i = 0; i < spec_.name_count; ++i) {
      if (EqualsIgnoreCase(token, spec_.names[i]))
        return spec_.min + static_cast<int>(i);
    }
    return Fail(token, spec_.names != nullptr ? fmt::format("is not a number or {} name",
                                                            spec_.name == "month" ? "month" : "day")
                                              : std::string("is not a number"));
  }

  Result<uint64_t> ParseItem(std::string_view item) const {
    std::vector<std::string_view> parts = Split(item, '/');
    if (parts.size() > 2)
      return Fail(item, "has more than one step");
    std::string_view base = parts[0];
    int step = 1;
    if (parts.size() == 2) {
      std::string_view s = parts[1];
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), step);
      if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || step < 1)
        return Fail(item, "has a bad step: must be a whole number of at least 1");
    }
    int lo = spec_.min, hi = spec_.max;
    if (base != "*") {
      size_t dash = base.find('-');
      if (dash == std::string_view::npos) {
        ASSIGN_OR_RETURN(lo, Value(base));
        // "a/n" runs from a to the field's end, as in cronie.
        hi = parts.size() == 2 ? spec_.max : lo;
      } else {
        if (dash == 0 || dash + 1 == base.size())
          return Fail(item, "is not a valid range");
        ASSIGN_OR_RETURN(lo, Value(base.substr(0, dash)));
        ASSIGN_OR_RETURN(hi, Value(base.substr(dash + 1)));
        if (lo > hi)
          return Fail(item, "is a backwards range");
      }
    }
    uint64_t mask = 0;
    for (int v = lo; v <= hi; v += step)
      mask |= uint64_t{1} << v;
    return mask;
  }

  const FieldSpec& spec_;
  int position_;
  std::string_view text_;
};

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

struct CivilDate {
  int64_t year;
  int month;  // 1-12
  int day;    // 1-31
};

// Proleptic Gregorian calendar, counted in 400-year eras of 146097 days, with
// years starting on March 1 so the leap day is the last day of its year.
int64_t DaysFromCivil(int64_t year, int month, int day) {
  const int64_t y = month <= 2 ? year - 1 : year;
  const int64_t era = FloorDiv(y, 400);
  const int64_t year_of_era = y - era * 400;                               // [0, 399]
  const int64_t month_from_march = month <= 2 ? month + 9 : month - 3;     // [0, 11]
  const int64_t day_of_year = (153 * month_from_march + 2) / 5 + day - 1;  // [0, 365]
  const int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;  // [0, 146096]
  // 719468 days run from 0000-03-01 to 1970-01-01.
  return era * 146097 + day_of_era - 719468;
}

CivilDate CivilFromDays(int64_t days) {
  const int64_t z = days + 719468;
  const int64_t era = FloorDiv(z, 146097);
  const int64_t day_of_era = z - era * 146097;
  const int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t month_from_march = (5 * day_of_year + 2) / 153;
  const int day = static_cast<int>(day_of_year - (153 * month_from_march + 2) / 5 + 1);
  const int month =
      static_cast<int>(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
  const int64_t year = year_of_era + era * 400 + (month <= 2 ? 1 : 0);
  return {year, month, day};
}

// 0 = Sunday; 1970-01-01 was a Thursday.
int WeekdayFromDays(int64_t days) {
  return static_cast<int>(((days % 7) + 7 + 4) % 7);
}

template <size_t N>
int NextSet(const std::bitset<N>& bits, int from) {
  for (int i = from; i < static_cast<int>(N); ++i) {
    if (bits[static_cast<size_t>(i)])
      return i;
  }
  return -1;
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(std::string_view text) {
  CronSchedule out;
  out.text_ = std::string(text);
  std::vector<std::string_view> fields = SplitWhitespace(text);
  if (fields.size() == 1 && fields[0].starts_with('@')) {
    std::string_view expansion;
    for (const auto& s : kShorthands) {
      if (EqualsIgnoreCase(fields[0], s.name))
        expansion = s.expansion;
    }
    if (expansion.empty()) {
      return core::InvalidArgument(
          fmt::format("cron: unknown shorthand \"{}\" (one of @yearly, @annually, @monthly, "
                      "@weekly, @daily, @midnight, @hourly)",
                      fields[0]),
          "cron");
    }
    fields = SplitWhitespace(expansion);
  }
  if (fields.size() != 5 && fields.size() != 6) {
    return core::InvalidArgument(
        fmt::format("cron: expected 5 or 6 fields, got {} in \"{}\"", fields.size(), text), "cron");
  }
  const bool with_seconds = fields.size() == 6;
  const std::vector<const FieldSpec*> specs =
      with_seconds
          ? std::vector<const FieldSpec*>{&kSecond,     &kMinute, &kHour,
                                          &kDayOfMonth, &kMonth,  &kDayOfWeek}
          : std::vector<const FieldSpec*>{&kMinute, &kHour, &kDayOfMonth, &kMonth, &kDayOfWeek};
  std::vector<uint64_t> masks;
  for (size_t i = 0; i < fields.size(); ++i) {
    ASSIGN_OR_RETURN(uint64_t mask,
                     FieldParser(*specs[i], static_cast<int>(i + 1), fields[i]).Parse());
    masks.push_back(mask);
  }
  size_t f = 0;
  out.seconds_ = with_seconds ? std::bitset<60>(masks[f++]) : std::bitset<60>(1);
  out.minutes_ = std::bitset<60>(masks[f++]);
  out.hours_ = std::bitset<24>(masks[f++]);
  out.days_ = std::bitset<32>(masks[f]);
  // As Vixie cron: a day field counts as unrestricted when it starts with '*'
  // ("*" or "*/2"); only then does it AND with the other day field.
  out.dom_restricted_ = !fields[f++].starts_with('*');
  out.months_ = std::bitset<13>(masks[f++]);
  uint64_t weekdays = masks[f];
  if (weekdays & (uint64_t{1} << 7))
    weekdays |= 1;  // 7 is Sunday too
  out.weekdays_ = std::bitset<7>(weekdays & 0x7f);
  out.dow_restricted_ = !fields[f].starts_with('*');
  return out;
}

int64_t CronSchedule::Next(int64_t after_us) const {
  // Jumps to the start of the next candidate month, day, hour or minute
  // instead of stepping: each loop turn either returns or moves past a whole
  // non-matching unit, so a search costs at most a few thousand turns.
  int64_t t = FloorDiv(after_us, kMicrosPerSecond) + 1;
  const int64_t limit = t + kSearchSeconds;
  while (t <= limit) {
    const int64_t days = FloorDiv(t, kSecondsPerDay);
    const int64_t day_start = days * kSecondsPerDay;
    const int64_t second_of_day = t - day_start;
    const CivilDate date = CivilFromDays(days);
    if (!months_[static_cast<size_t>(date.month)]) {
      t = date.month == 12 ? DaysFromCivil(date.year + 1, 1, 1) * kSecondsPerDay
                           : DaysFromCivil(date.year, date.month + 1, 1) * kSecondsPerDay;
      continue;
    }
    const bool dom = days_[static_cast<size_t>(date.day)];
    const bool dow = weekdays_[static_cast<size_t>(WeekdayFromDays(days))];
    const bool day_matches = (dom_restricted_ && dow_restricted_) ? (dom || dow) : (dom && dow);
    if (!day_matches) {
      t = day_start + kSecondsPerDay;
      continue;
    }
    const int hour = static_cast<int>(second_of_day / 3600);
    const int minute = static_cast<int>(second_of_day / 60 % 60);
    const int second = static_cast<int>(second_of_day % 60);
    if (!hours_[static_cast<size_t>(hour)]) {
      const int next = NextSet(hours_, hour);
      t = next < 0 ? day_start + kSecondsPerDay : day_start + next * 3600;
      continue;
    }
    const int64_t hour_start = day_start + hour * 3600;
    if (!minutes_[static_cast<size_t>(minute)]) {
      const int next = NextSet(minutes_, minute);
      t = next < 0 ? hour_start + 3600 : hour_start + next * 60;
      continue;
    }
    const int64_t minute_start = hour_start + minute * 60;
    if (!seconds_[static_cast<size_t>(second)]) {
      const int next = NextSet(seconds_, second);
      t = next < 0 ? minute_start + 60 : minute_start + next;
      continue;
    }
    if (t > INT64_MAX / kMicrosPerSecond)
      return 0;
    return t * kMicrosPerSecond;
  }
  return 0;
}

}  // namespace kervan::pipelines
