#include "pipelines/cron.h"

#include <functional>
#include <string>
#include <vector>

#include <time.h>

#include <gtest/gtest.h>

namespace kervan::pipelines {
namespace {

using core::ErrorCode;

int64_t At(std::string_view rfc3339) {
  std::optional<int64_t> us = core::ParseRfc3339(rfc3339);
  EXPECT_TRUE(us.has_value()) << rfc3339;
  return us.value_or(0);
}

std::string Show(int64_t us) {
  return us == 0 ? "0 (no match)" : core::FormatRfc3339(us);
}

CronSchedule MustParse(std::string_view text) {
  Result<CronSchedule> s = CronSchedule::Parse(text);
  EXPECT_TRUE(s) << text << ": " << s.error().ToString();
  return s ? *s : *CronSchedule::Parse("* * * * *");
}

struct ParseErrorCase {
  std::string text;
  std::string message;  // a substring of the error message
};

TEST(CronParse, ErrorsNameTheFieldAndToken) {
  const std::vector<ParseErrorCase> cases = {
      {"", "cron: expected 5 or 6 fields, got 0"},
      {"* * * *", "cron: expected 5 or 6 fields, got 4"},
      {"* * * * * * *", "cron: expected 5 or 6 fields, got 7"},
      {"* 25 * * *", "cron: field 2 (hour) \"25\" is out of range 0-23"},
      {"0 * 25 * * *", "cron: field 3 (hour) \"25\" is out of range 0-23"},
      {"60 * * * * *", "cron: field 1 (second) \"60\" is out of range 0-59"},
      {"60 * * * *", "cron: field 1 (minute) \"60\" is out of range 0-59"},
      {"* * 0 * *", "cron: field 3 (day-of-month) \"0\" is out of range 1-31"},
      {"* * 32 * *", "cron: field 3 (day-of-month) \"32\" is out of range 1-31"},
      {"* * * 13 *", "cron: field 4 (month) \"13\" is out of range 1-12"},
      {"* * * 0 *", "cron: field 4 (month) \"0\" is out of range 1-12"},
      {"* * * * 8", "cron: field 5 (day-of-week) \"8\" is out of range 0-7"},
      {"* * * * 99999999999", "cron: field 5 (day-of-week) \"99999999999\" is out of range 0-7"},
      {"* * * FOO *", "cron: field 4 (month) \"FOO\" is not a number or month name"},
      {"* * * * FUNDAY", "cron: field 5 (day-of-week) \"FUNDAY\" is not a number or day name"},
      {"* * * MON *", "cron: field 4 (month) \"MON\" is not a number or month name"},
      {"JAN * * * *", "cron: field 1 (minute) \"JAN\" is not a number"},
      {"a * * * *", "cron: field 1 (minute) \"a\" is not a number"},
      {"+5 * * * *", "cron: field 1 (minute) \"+5\" is not a number"},
      {"*/0 * * * *", "cron: field 1 (minute) \"*/0\" has a bad step"},
      {"*/x * * * *", "cron: field 1 (minute) \"*/x\" has a bad step"},
      {"*/ * * * *", "cron: field 1 (minute) \"*/\" has a bad step"},
      {"1/2/3 * * * *", "cron: field 1 (minute) \"1/2/3\" has more than one step"},
      {"5-3 * * * *", "cron: field 1 (minute) \"5-3\" is a backwards range"},
      {"-5 * * * *", "cron: field 1 (minute) \"-5\" is not a valid range"},
      {"5- * * * *", "cron: field 1 (minute) \"5-\" is not a valid range"},
      {"1,,2 * * * *", "cron: field 1 (minute) \"1,,2\" has an empty list item"},
      {"1, * * * *", "cron: field 1 (minute) \"1,\" has an empty list item"},
      {"* * * * 1-9", "cron: field 5 (day-of-week) \"9\" is out of range 0-7"},
      {"0 0 L * *", "cron: field 3 (day-of-month) \"L\" is not a number"},
      {"@reboot", "cron: unknown shorthand \"@reboot\""},
      {"@daily 5", "cron: expected 5 or 6 fields, got 2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    Result<CronSchedule> s = CronSchedule::Parse(c.text);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(s.error().field, "cron");
    EXPECT_NE(s.error().message.find(c.message), std::string::npos) << s.error().message;
  }
}

TEST(CronParse, AcceptsTheGrammar) {
  for (const char* text :
       {"* * * * *", "0 3 * * *", "*/15 0-23/2 1,15,31 JAN-mar,Dec sun-SAT", "  0\t0  * *   7 ",
        "0 0 1 1 *", "59 59 23 31 12 7", "5/20 * * * *", "@yearly", "@annually", "@monthly",
        "@weekly", "@daily", "@midnight", "@hourly", "@DAILY"}) {
    SCOPED_TRACE(text);
    Result<CronSchedule> s = CronSchedule::Parse(text);
    ASSERT_TRUE(s) << s.error().ToString();
    EXPECT_EQ(s->text(), text);
  }
}

struct NextCase {
  std::string cron;
  std::string after;
  std::string want;  // empty: no match (0)
};

TEST(CronNext, Table) {
  const std::vector<NextCase> cases = {
      // every minute / every second; strictly after, at whole units
      {"* * * * *", "2025-03-10T10:20:30Z", "2025-03-10T10:21:00Z"},
      {"* * * * *", "2025-03-10T10:21:00Z", "2025-03-10T10:22:00Z"},
      {"* * * * *", "2025-03-10T10:20:59.999999Z", "2025-03-10T10:21:00Z"},
      {"* * * * * *", "2025-03-10T10:20:30Z", "2025-03-10T10:20:31Z"},
      {"* * * * * *", "2025-03-10T10:20:30.5Z", "2025-03-10T10:20:31Z"},
      {"* * * * * *", "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z"},
      // steps, ranges, lists
      {"*/15 * * * *", "2025-03-10T10:20:30Z", "2025-03-10T10:30:00Z"},
      {"*/15 * * * *", "2025-03-10T10:45:00Z", "2025-03-10T11:00:00Z"},
      {"*/15 * * * *", "2025-03-10T23:50:00Z", "2025-03-11T00:00:00Z"},
      {"5/20 * * * *", "2025-03-10T10:26:00Z", "2025-03-10T10:45:00Z"},
      {"0 8-18/4 * * *", "2025-03-10T10:00:00Z", "2025-03-10T12:00:00Z"},
      {"0 8-18/4 * * *", "2025-03-10T16:00:00Z", "2025-03-11T08:00:00Z"},
      {"5,10,50 * * * *", "2025-03-10T10:20:00Z", "2025-03-10T10:50:00Z"},
      {"*/20 30 9 * * *", "2025-03-10T09:30:40Z", "2025-03-11T09:30:00Z"},
      {"30 0 12 * * *", "2025-03-10T12:00:30Z", "2025-03-11T12:00:30Z"},
      // daily
      {"0 3 * * *", "2025-03-10T02:59:59Z", "2025-03-10T03:00:00Z"},
      {"0 3 * * *", "2025-03-10T03:00:00Z", "2025-03-11T03:00:00Z"},
      // month and weekday names (2025-03-14 is a Friday)
      {"0 0 1 JAN *", "2025-03-10T00:00:00Z", "2026-01-01T00:00:00Z"},
      {"0 0 1 jan *", "2025-03-10T00:00:00Z", "2026-01-01T00:00:00Z"},
      {"0 12 * MAR-may *", "2025-05-31T12:00:00Z", "2026-03-01T12:00:00Z"},
      {"0 9 * * MON-FRI", "2025-03-14T10:00:00Z", "2025-03-17T09:00:00Z"},
      {"0 9 * * MON-FRI", "2025-03-13T10:00:00Z", "2025-03-14T09:00:00Z"},
      {"0 9 * * sat,Sun", "2025-03-10T00:00:00Z", "2025-03-15T09:00:00Z"},
      // 0 and 7 are both Sunday (2025-03-10 is a Monday)
      {"0 0 * * 7", "2025-03-10T00:00:00Z", "2025-03-16T00:00:00Z"},
      {"0 0 * * 0", "2025-03-10T00:00:00Z", "2025-03-16T00:00:00Z"},
      {"0 0 * * SUN", "2025-03-10T00:00:00Z", "2025-03-16T00:00:00Z"},
      {"0 0 * * 5-7", "2025-03-10T00:00:00Z", "2025-03-14T00:00:00Z"},
      {"0 0 * * 6-7", "2025-03-15T12:00:00Z", "2025-03-16T00:00:00Z"},
      // Vixie's rule: both day fields restricted -> either matches
      {"0 0 13 * FRI", "2025-03-01T00:00:00Z", "2025-03-07T00:00:00Z"},
      {"0 0 13 * FRI", "2025-03-07T00:00:00Z", "2025-03-13T00:00:00Z"},
      {"0 0 13 * FRI", "2025-03-13T00:00:00Z", "2025-03-14T00:00:00Z"},
      {"0 0 1,15 * 3", "2025-03-01T00:00:00Z", "2025-03-05T00:00:00Z"},
      // ... and a day field starting with '*' is unrestricted, so it ANDs:
      // odd days that are Mondays (2025-03-03, then 2025-03-17).
      {"0 0 */2 * MON", "2025-03-01T00:00:00Z", "2025-03-03T00:00:00Z"},
      {"0 0 */2 * MON", "2025-03-03T00:00:00Z", "2025-03-17T00:00:00Z"},
      {"0 0 13 * *", "2025-03-01T00:00:00Z", "2025-03-13T00:00:00Z"},
      {"0 0 * * FRI", "2025-03-01T00:00:00Z", "2025-03-07T00:00:00Z"},
      // month and year rollover
      {"0 0 1 * *", "2025-12-15T00:00:00Z", "2026-01-01T00:00:00Z"},
      {"59 23 31 12 *", "2025-12-31T23:59:00Z", "2026-12-31T23:59:00Z"},
      {"0 0 31 * *", "2025-01-31T00:00:00Z", "2025-03-31T00:00:00Z"},
      {"0 0 31 * *", "2025-04-01T00:00:00Z", "2025-05-31T00:00:00Z"},
      // leap days
      {"0 0 29 2 *", "2025-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
      {"0 0 29 2 *", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"},
      {"0 0 29 2 *", "2024-01-01T00:00:00Z", "2024-02-29T00:00:00Z"},
      {"0 12 28-29 2 *", "2100-02-28T12:00:00Z", "2101-02-28T12:00:00Z"},  // 2100 is not leap
      {"0 0 29 2 *", "2097-03-01T00:00:00Z", ""},  // 2104 is more than 5 years away
      // never
      {"0 0 30 2 *", "2025-01-01T00:00:00Z", ""},
      {"0 0 31 4,6,9,11 *", "2025-01-01T00:00:00Z", ""},
      // shorthands
      {"@hourly", "2025-03-10T10:20:00Z", "2025-03-10T11:00:00Z"},
      {"@daily", "2025-03-10T10:20:00Z", "2025-03-11T00:00:00Z"},
      {"@midnight", "2025-03-10T10:20:00Z", "2025-03-11T00:00:00Z"},
      {"@weekly", "2025-03-10T10:20:00Z", "2025-03-16T00:00:00Z"},
      {"@monthly", "2025-03-10T10:20:00Z", "2025-04-01T00:00:00Z"},
      {"@yearly", "2025-03-10T10:20:00Z", "2026-01-01T00:00:00Z"},
      {"@annually", "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"},
      // before the epoch
      {"0 0 31 12 *", "1969-06-01T00:00:00Z", "1969-12-31T00:00:00Z"},
      {"*/10 * * * *", "1969-12-31T23:55:00Z", "1970-01-01T00:00:00Z"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.cron + " after " + c.after);
    CronSchedule s = MustParse(c.cron);
    int64_t got = s.Next(At(c.after));
    int64_t want = c.want.empty() ? 0 : At(c.want);
    EXPECT_EQ(got, want) << Show(got) << " != " << Show(want);
  }
}

TEST(CronNext, ExtremeInputsDoNotOverflow) {
  CronSchedule s = MustParse("* * * * * *");
  EXPECT_EQ(s.Next(INT64_MAX), 0);
  EXPECT_EQ(s.Next(INT64_MIN), (INT64_MIN / 1'000'000) * 1'000'000);
  EXPECT_EQ(MustParse("0 0 30 2 *").Next(INT64_MAX - 1), 0);
}

// Brute force over whole minutes with the C library's calendar as the oracle.
struct OracleCase {
  std::string cron;
  std::function<bool(const tm&)> matches;
};

TEST(CronNext, AgreesWithMinuteByMinuteSearch) {
  const std::vector<OracleCase> cases = {
      {"*/7 * * * *", [](const tm& t) { return t.tm_min % 7 == 0; }},
      {"0 */5 * * *", [](const tm& t) { return t.tm_min == 0 && t.tm_hour % 5 == 0; }},
      {"30 2 * * 1-5",
       [](const tm& t) {
         return t.tm_min == 30 && t.tm_hour == 2 && t.tm_wday >= 1 && t.tm_wday <= 5;
       }},
      {"0 0 10-12 * TUE",
       [](const tm& t) {
         return t.tm_min == 0 && t.tm_hour == 0 &&
                ((t.tm_mday >= 10 && t.tm_mday <= 12) || t.tm_wday == 2);
       }},
      {"15 6 29-31 * *",
       [](const tm& t) { return t.tm_min == 15 && t.tm_hour == 6 && t.tm_mday >= 29; }},
      {"0 12 * FEB,MAR 0",
       [](const tm& t) {
         return t.tm_min == 0 && t.tm_hour == 12 && (t.tm_mon == 1 || t.tm_mon == 2) &&
                t.tm_wday == 0;
       }},
  };
  const std::vector<std::string> starts = {"2024-02-27T13:07:00Z", "2023-12-30T23:59:00Z",
                                           "2025-06-15T00:00:00Z", "2000-02-28T06:15:00Z"};
  for (const auto& c : cases) {
    CronSchedule s = MustParse(c.cron);
    for (const auto& start : starts) {
      SCOPED_TRACE(c.cron + " after " + start);
      const int64_t after = At(start);
      int64_t want = 0;
      for (time_t t = after / 1'000'000 + 60; t < after / 1'000'000 + 400 * 86400; t += 60) {
        tm parts{};
        gmtime_r(&t, &parts);
        if (c.matches(parts)) {
          want = static_cast<int64_t>(t) * 1'000'000;
          break;
        }
      }
      ASSERT_NE(want, 0);
      int64_t got = s.Next(after);
      EXPECT_EQ(got, want) << Show(got) << " != " << Show(want);
      // Chained: the next after that is the next match of the search.
      int64_t second = s.Next(got);
      EXPECT_GT(second, got);
    }
  }
}

}  // namespace
}  // namespace kervan::pipelines
