// NormalizePath, table-driven: what a client may name and what it may not.
#include <gtest/gtest.h>

#include "artifacts/artifacts.h"

namespace kervan::artifacts {
namespace {

TEST(NormalizePath, AcceptsRelativePathsAndDropsOneTrailingSlash) {
  const std::pair<const char*, const char*> cases[] = {
      {"model.pkl", "model.pkl"},
      {"1/0123abcd/artifacts/model/MLmodel", "1/0123abcd/artifacts/model/MLmodel"},
      {"dir/", "dir"},
      {"a b/c d.txt", "a b/c d.txt"},
      {"...", "..."},  // not a ".." segment
      {"..a/b..", "..a/b.."},
      {".hidden", ".hidden"},
      {"100%.txt", "100%.txt"},
      {"a%20b", "a%20b"},  // a literal "%20" in a name is harmless
      {"\xE1\x88\xB4/\xC3\xA9t\xC3\xA9.csv", "\xE1\x88\xB4/\xC3\xA9t\xC3\xA9.csv"},
      {"a/b:c", "a/b:c"},  // ':' only matters in the first segment
  };
  for (const auto& [raw, normal] : cases) {
    auto got = NormalizePath(raw);
    ASSERT_TRUE(got) << raw << ": " << got.error().ToString();
    EXPECT_EQ(*got, normal) << raw;
  }
}

struct Refused {
  std::string raw;
  const char* why;  // a piece of the message
};

TEST(NormalizePath, RefusesEveryTraversalVector) {
  const Refused cases[] = {
      {"", "must not be empty"},
      // ".." and "." (CVE-2023-1177 and friends).
      {"..", "\"..\" segments"},
      {"../etc/passwd", "\"..\" segments"},
      {"a/../../etc/passwd", "\"..\" segments"},
      {"a/..", "\"..\" segments"},
      {"./a", "\".\" or \"..\""},
      {"a/./b", "\".\" or \"..\""},
      // Absolute paths, "//" and empty segments (CVE-2023-2780).
      {"/etc/passwd", "relative"},
      {"//etc/passwd", "relative"},
      {"/", "relative"},
      {"a//b", "empty segments"},
      {"a/b//", "empty segments"},
      // Backslashes and Windows drive letters / UNC paths.
      {"..\\..\\etc\\passwd", "backslashes"},
      {"a\\b", "backslashes"},
      {"\\\\server\\share", "backslashes"},
      {"C:/Windows/win.ini", "drive letter"},
      {"c:", "drive letter"},
      // URI schemes, fragments and queries (CVE-2023-6909, CVE-2024-1483/1594).
      {"file:///etc/passwd", "drive letter or URI scheme"},
      {"http:/x", "drive letter or URI scheme"},
      {"a#/../../etc", "'#' or '?'"},
      {"x?path=../../etc", "'#' or '?'"},
      // Percent-encoded traversal that would survive one more decoding.
      {"%2e%2e/etc/passwd", "percent-encoded character \"%2e\""},
      {"%2E%2E%2Fetc", "percent-encoded character \"%2E\""},
      {"..%2fetc%2fpasswd", "percent-encoded character \"%2f\""},
      {"a%2F..%2F..%2Fetc", "percent-encoded character \"%2F\""},
      {"a%5c..%5cb", "percent-encoded character \"%5c\""},
      {"%252e%252e/x", "percent-encoded character \"%25\""},
      {"a%00b", "percent-encoded character \"%00\""},
      {"a%23b", "percent-encoded character \"%23\""},
      {"C%3a/x", "percent-encoded character \"%3a\""},
      // Control characters, NUL and invalid UTF-8.
      {std::string("a\0b", 3), "control characters"},
      {"a\nb", "control characters"},
      {"a\x7f", "control characters"},
      {"a\xff", "UTF-8"},
      {"\xC0\xAE\xC0\xAE/x", "UTF-8"},  // overlong "..": a classic decoder bypass
      {"\xED\xA0\x80", "UTF-8"},        // a surrogate
      // Length limits.
      {std::string(1025, 'a'), "at most 1024 bytes"},
      {std::string(256, 'a'), "longer than 255 bytes"},
  };
  for (const Refused& c : cases) {
    auto got = NormalizePath(c.raw, "artifact_path");
    ASSERT_FALSE(got) << "accepted: " << c.raw;
    EXPECT_EQ(got.error().code, core::ErrorCode::kInvalidArgument) << c.raw;
    EXPECT_EQ(got.error().field, "artifact_path") << c.raw;
    EXPECT_NE(got.error().message.find(c.why), std::string::npos)
        << c.raw << " -> " << got.error().message;
    EXPECT_EQ(got.error().message.rfind("artifact_path \"", 0), 0u) << got.error().message;
  }
}

TEST(NormalizePath, LimitsDepth) {
  std::string deep;
  for (int i = 0; i < 48; ++i)
    deep += (i ? "/" : "") + std::string("d");
  EXPECT_TRUE(NormalizePath(deep));
  auto too_deep = NormalizePath(deep + "/d");
  ASSERT_FALSE(too_deep);
  EXPECT_NE(too_deep.error().message.find("at most 48 segments"), std::string::npos);
}

TEST(NormalizePath, MessagesQuoteTheInputSafely) {
  auto got = NormalizePath(std::string("a\nb\"c"), "path");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message, "path \"a\\x0ab\\\"c\": must not contain control characters");
  auto long_one = NormalizePath(std::string(5000, 'x'));
  ASSERT_FALSE(long_one);
  EXPECT_LT(long_one.error().message.size(), 300u);
}

}  // namespace
}  // namespace kervan::artifacts
