// Pure parts of webhooks: the signature scheme, type and project matching,
// URL validation and the retry schedule.
#include <gtest/gtest.h>

#include "webhooks/webhooks.h"

namespace kervan::webhooks {
namespace {

using std::chrono::milliseconds;

// Computed independently:
//   printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test_secret_0123
constexpr std::string_view kSecret = "whsec_test_secret_0123";
constexpr std::string_view kBody = R"({"a":1})";
constexpr std::string_view kExpectedHex =
    "b1e06771f9a20c020fc4b9be257996790d615bbe4d030159b6a5669fdada024c";

TEST(Signature, HeaderMatchesHandComputedHmac) {
  EXPECT_EQ(SignatureHeader(kSecret, kBody, 1700000000),
            "t=1700000000,v1=" + std::string(kExpectedHex));
}

TEST(Signature, VerifyAcceptsFreshAndRejectsOldTamperedOrMalformed) {
  std::string header = SignatureHeader(kSecret, kBody, 1700000000);
  EXPECT_TRUE(VerifySignature(kSecret, header, kBody, 1700000000));
  EXPECT_TRUE(VerifySignature(kSecret, header, kBody, 1700000000 + 299));
  // Replayed later than the tolerance.
  auto old = VerifySignature(kSecret, header, kBody, 1700000000 + 301);
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().code, core::ErrorCode::kUnauthenticated);
  EXPECT_NE(old.error().message.find("timestamp"), std::string::npos);
  // Body, secret or timestamp changed.
  EXPECT_FALSE(VerifySignature(kSecret, header, R"({"a":2})", 1700000000));
  EXPECT_FALSE(VerifySignature("another_secret_value", header, kBody, 1700000000));
  std::string moved = "t=1700000001,v1=" + std::string(kExpectedHex);
  EXPECT_FALSE(VerifySignature(kSecret, moved, kBody, 1700000000));
  // Malformed headers.
  for (std::string_view bad :
       {"", "v1=abc", "t=1700000000", "t=abc,v1=" /* no digits */, "t=-5,v1=00", "garbage"}) {
    EXPECT_FALSE(VerifySignature(kSecret, bad, kBody, 1700000000)) << bad;
  }
  // A second v1 (key rotation) and unknown keys are tolerated.
  std::string rotated = "t=1700000000,v1=deadbeef,v2=zzz,v1=" + std::string(kExpectedHex);
  EXPECT_TRUE(VerifySignature(kSecret, rotated, kBody, 1700000000));
}

TEST(TypeMatching, ExactPrefixAndStar) {
  struct Case {
    std::string_view pattern, type;
    bool want;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"*", "model_version.approved", true},
           {"model_version.*", "model_version.approved", true},
           {"model_version.*", "model_version.validation.failed", true},
           {"model_version.*", "model_versions.approved", false},
           {"model_version.*", "model_version", false},
           {"model.*", "model_version.approved", false},
           {"job.completed", "job.completed", true},
           {"job.completed", "job.completed_late", false},
           {"job.completed", "job.failed", false},
       }) {
    EXPECT_EQ(TypeMatches(c.pattern, c.type), c.want) << c.pattern << " vs " << c.type;
  }
}

TEST(TypeMatching, PatternValidation) {
  for (std::string_view ok : {"*", "job.completed", "model_version.*", "a.b.c.*", "run_1.x"})
    EXPECT_TRUE(ValidateTypePattern(ok, "event_types[0]")) << ok;
  for (std::string_view bad :
       {"", ".*", "job.", ".job", "job..done", "job.*.done", "job*", "jo b", "*.*", "job.**"}) {
    auto st = ValidateTypePattern(bad, "event_types[3]");
    ASSERT_FALSE(st) << bad;
    EXPECT_EQ(st.error().field, "event_types[3]");
  }
}

TEST(SubscriptionFilter, ProjectAndTypes) {
  Subscription all{.event_types = {"*"}};
  Subscription risk{.event_types = {"model_version.*", "job.failed"}, .project = "risk"};
  EXPECT_TRUE(all.Wants("job.failed", ""));
  EXPECT_TRUE(all.Wants("job.failed", "risk"));
  EXPECT_TRUE(risk.Wants("job.failed", "risk"));
  EXPECT_TRUE(risk.Wants("model_version.approved", "risk"));
  EXPECT_FALSE(risk.Wants("job.failed", "fraud"));
  EXPECT_FALSE(risk.Wants("job.failed", ""));  // global events are not a project's
  EXPECT_FALSE(risk.Wants("job.completed", "risk"));
}

TEST(TargetUrl, SplitsIntoBaseAndTarget) {
  struct Case {
    std::string_view url, base, target;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"http://example.com", "http://example.com", "/"},
           {"http://example.com/", "http://example.com", "/"},
           {"http://127.0.0.1:9000/hooks/kervan?x=1", "http://127.0.0.1:9000", "/hooks/kervan?x=1"},
           {"http://host:8080?token=a", "http://host:8080", "/?token=a"},
           {"http://[::1]:8080/h", "http://[::1]:8080", "/h"},
       }) {
    auto t = ParseTargetUrl(c.url);
    ASSERT_TRUE(t) << c.url << ": " << t.error().ToString();
    EXPECT_EQ(t->base, c.base);
    EXPECT_EQ(t->target, c.target);
  }
}

TEST(TargetUrl, RejectsWithFieldUrl) {
  for (std::string_view bad :
       {"", "example.com", "ftp://example.com/", "https://example.com/", "http://", "http://:80/",
        "http://host:0/", "http://host:65536/", "http://host:80x/", "http://user:pw@host/",
        "http://host/a b", "http://host/#frag", "http://ho_st/", "http://[::1/", "http://[zz]/",
        "http://host/\xc3\xa9"}) {
    auto t = ParseTargetUrl(bad);
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().field, "url") << bad;
    EXPECT_EQ(t.error().code, core::ErrorCode::kInvalidArgument);
  }
  EXPECT_NE(ParseTargetUrl("https://x/").error().message.find("https is not supported"),
            std::string::npos);
  EXPECT_FALSE(ParseTargetUrl("http://h/" + std::string(3000, 'a')));
}

TEST(Backoff, DoublesFromBaseUpToTheCap) {
  RetryPolicy p{
      .base = milliseconds(1000), .max = milliseconds(600000), .max_attempts = 8, .jitter = 0.2};
  // Without jitter (u = 0): 1, 2, 4, ... s, then the 10-minute cap.
  std::vector<int64_t> want = {1000,  2000,   4000,   8000,   16000,  32000,
                               64000, 128000, 256000, 512000, 600000, 600000};
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(BackoffDelay(p, static_cast<int>(i + 1), 0.0).count(), want[i]) << i + 1;
  // Jitter only shortens, by at most the fraction.
  EXPECT_EQ(BackoffDelay(p, 3, 0.5).count(), 3600);
  EXPECT_EQ(BackoffDelay(p, 3, 0.999999).count(), 3200);
  EXPECT_EQ(BackoffDelay(p, 40, 0.0).count(), 600000);  // no overflow far past the cap
  EXPECT_EQ(BackoffDelay(p, 1000, 0.0).count(), 600000);
}

TEST(DeliveryStatusNames, RoundTrip) {
  for (auto s : {DeliveryStatus::kPending, DeliveryStatus::kDelivered, DeliveryStatus::kFailed})
    EXPECT_EQ(ParseDeliveryStatus(DeliveryStatusName(s)), s);
  EXPECT_FALSE(ParseDeliveryStatus("dead"));
}

}  // namespace
}  // namespace kervan::webhooks
