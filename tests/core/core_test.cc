#include "core/core.h"

#include <gtest/gtest.h>

namespace kervan::core {
namespace {

TEST(Result, CarriesValueOrError) {
  Result<int> ok = 3;
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 3);
  Result<int> bad = InvalidArgument("field \"x\": bad", "x");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "x");
  EXPECT_EQ(ErrorCodeName(bad.error().code), "invalid_argument");
}

Result<int> Twice(Result<int> in) {
  ASSIGN_OR_RETURN(int v, std::move(in));
  return v * 2;
}

TEST(Result, MacrosPropagate) {
  EXPECT_EQ(*Twice(4), 8);
  EXPECT_EQ(Twice(NotFound("gone")).error().code, ErrorCode::kNotFound);
}

TEST(Json, CanonicalSortsKeysWithoutSpaces) {
  Json a = Json::parse(R"({"b": 1, "a": {"d": [1, 2], "c": "x"}})");
  EXPECT_EQ(CanonicalJson(a), R"({"a":{"c":"x","d":[1,2]},"b":1})");
}

// The event log's hash chain relies on this: for ASCII text, AppendJsonString
// writes exactly what the JSON library writes.
TEST(Json, AppendJsonStringMatchesTheLibraryForEveryAsciiByte) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) {
    std::string one(1, static_cast<char>(c));
    std::string out;
    AppendJsonString(out, one);
    EXPECT_EQ(out, Json(one).dump()) << "byte " << c;
    all += one;
  }
  std::string out = "prefix:";
  AppendJsonString(out, all);
  EXPECT_EQ(out, "prefix:" + Json(all).dump());
  out.clear();
  AppendJsonString(out, "caf\xc3\xa9 \"q\"");  // UTF-8 passes through as the library writes it
  EXPECT_EQ(out, Json("caf\xc3\xa9 \"q\"").dump());
}

TEST(Json, NumberOutOfRangeIsAnErrorNotAnException) {
  // Found by fuzz/request_body_fuzz.cc: nlohmann throws out_of_range here.
  auto r = ParseJson(R"({"limit": 1.5e999})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().field, "body");
}

TEST(Json, ParseErrorNamesBodyAndOffset) {
  auto r = ParseJson("{\"a\": ");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "body");
  EXPECT_NE(r.error().message.find("malformed JSON at byte"), std::string::npos);
}

struct ReaderCase {
  const char* body;
  const char* field;  // expected offending field, "" for success
};

class ObjectReaderCases : public ::testing::TestWithParam<ReaderCase> {};

TEST_P(ObjectReaderCases, NamesTheOffendingField) {
  Json body = Json::parse(GetParam().body);
  auto check = [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, ObjectReader::Of(body));
    RETURN_IF_ERROR(r.RequiredString("name"));
    RETURN_IF_ERROR(r.OptionalInt("n", 0, 10));
    RETURN_IF_ERROR(r.OptionalObject("data"));
    return r.Finish();
  };
  Status s = check();
  if (std::string(GetParam().field).empty()) {
    EXPECT_TRUE(s) << s.error().message;
  } else {
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().field, GetParam().field) << s.error().message;
    EXPECT_NE(s.error().message.find(GetParam().field), std::string::npos);
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ObjectReaderCases,
                         ::testing::Values(ReaderCase{R"({"name":"a"})", ""},
                                           ReaderCase{R"({"name":"a","n":3,"data":{"k":1}})", ""},
                                           ReaderCase{R"({})", "name"},
                                           ReaderCase{R"({"name":5})", "name"},
                                           ReaderCase{R"({"name":"a","n":"3"})", "n"},
                                           ReaderCase{R"({"name":"a","n":11})", "n"},
                                           ReaderCase{R"({"name":"a","data":[1]})", "data"},
                                           ReaderCase{R"({"name":"a","extra":true})", "extra"},
                                           ReaderCase{R"([1,2])", "body"}));

TEST(Time, Rfc3339RoundTrips) {
  int64_t t = 1795772400123456;  // 2026-11-27T...
  std::string s = FormatRfc3339(t);
  EXPECT_EQ(s.size(), 27u);
  EXPECT_EQ(ParseRfc3339(s), t);
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:01Z"), 1000000);
  EXPECT_FALSE(ParseRfc3339("yesterday"));
}

TEST(Ids, UuidV7IsWellFormedAndOrdered) {
  std::string a = NewUuidV7();
  std::string b = NewUuidV7();
  EXPECT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '7');
  EXPECT_NE(a, b);
  EXPECT_LE(a.substr(0, 8), b.substr(0, 8));
}

TEST(Sha256, KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Metrics, RendersPrometheusText) {
  MetricsRegistry r;
  r.AddCounter("t_requests_total", "Requests.", {"route"}).With({"/a\"b"}).Inc(2);
  r.AddGauge("t_depth", "Depth.").With({}).Set(1.5);
  auto& h = r.AddHistogram("t_latency_seconds", "Latency.", {0.1, 1}).With({});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(5);
  std::string text = r.Render();
  EXPECT_NE(text.find("# TYPE t_requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("t_requests_total{route=\"/a\\\"b\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("t_depth 1.5\n"), std::string::npos);
  EXPECT_NE(text.find("t_latency_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("t_latency_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("t_latency_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("t_latency_seconds_count 3\n"), std::string::npos);
}

// --- State machines, table-driven -------------------------------------------

StateMachine Machine() {
  auto m = StateMachine::Build(
      "model_version", {"Registered", "Validating", "DeploymentReady", "Rejected", "Archived"},
      "Registered",
      {{.name = "validate",
        .from = {"Registered"},
        .to = "Validating",
        .event = "validation_started"},
       {.name = "approve",
        .from = {"Validating"},
        .to = "DeploymentReady",
        .event = "approved",
        .reason_required = true},
       {.name = "reject",
        .from = {"Validating"},
        .to = "Rejected",
        .event = "rejected",
        .reason_required = true},
       {.name = "archive",
        .from = {"DeploymentReady", "Rejected"},
        .to = "Archived",
        .event = "archived",
        .reason_required = true}});
  EXPECT_TRUE(m) << m.error().message;
  return std::move(m).value();
}

struct TransitionCase {
  const char* state;
  const char* transition;
  const char* reason;
  const char* expect;  // target state, or an error code name
};

class StateMachineCases : public ::testing::TestWithParam<TransitionCase> {};

TEST_P(StateMachineCases, DecidesLikeTheTable) {
  StateMachine m = Machine();
  const auto& c = GetParam();
  auto r = m.Check(c.state, {.transition = c.transition, .reason = c.reason}, Json::object());
  if (r) {
    EXPECT_EQ((*r)->to, c.expect);
  } else {
    EXPECT_EQ(ErrorCodeName(r.error().code), c.expect) << r.error().message;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, StateMachineCases,
    ::testing::Values(TransitionCase{"Registered", "validate", "", "Validating"},
                      TransitionCase{"Validating", "approve", "looks good", "DeploymentReady"},
                      TransitionCase{"Validating", "approve", "", "invalid_argument"},
                      TransitionCase{"Registered", "approve", "x", "failed_precondition"},
                      TransitionCase{"Rejected", "archive", "old", "Archived"},
                      TransitionCase{"Archived", "archive", "again", "failed_precondition"},
                      TransitionCase{"Registered", "teleport", "", "invalid_argument"}));

TEST(StateMachine, IllegalTransitionListsAllowedOnes) {
  auto r = Machine().Check("Validating", {.transition = "archive", .reason = "x"}, Json::object());
  ASSERT_FALSE(r);
  const Json& allowed = r.error().details["allowed_transitions"];
  ASSERT_EQ(allowed.size(), 2u);
  EXPECT_EQ(allowed[0]["name"], "approve");
  EXPECT_EQ(allowed[1]["name"], "reject");
  EXPECT_EQ(r.error().details["current_state"], "Validating");
}

TEST(StateMachine, BuildRejectsBadDeclarations) {
  EXPECT_FALSE(StateMachine::Build("k", {"A"}, "B", {}));
  EXPECT_FALSE(StateMachine::Build("k", {"A", "A"}, "A", {}));
  EXPECT_FALSE(StateMachine::Build("k", {"A"}, "A",
                                   {{.name = "go", .from = {"A"}, .to = "Z", .event = "went"}}));
  EXPECT_FALSE(StateMachine::Build("k", {"A"}, "A", {{.name = "go", .from = {"A"}, .to = "A"}}));
}

TEST(StateMachine, DescribeListsTransitions) {
  Json d = Machine().Describe();
  EXPECT_EQ(d["initial_state"], "Registered");
  EXPECT_EQ(d["transitions"][1]["event"], "model_version.approved");
  EXPECT_EQ(d["transitions"][1]["reason_required"], true);
}

}  // namespace
}  // namespace kervan::core

namespace kervan::core {
namespace {

TEST(Crypto, HmacSha256MatchesRfc4231TestCase2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, ConstantTimeEqualsComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST(Crypto, RandomAlphanumericHasLengthAlphabetAndVaries) {
  std::string a = RandomAlphanumeric(40), b = RandomAlphanumeric(40);
  EXPECT_EQ(a.size(), 40u);
  EXPECT_NE(a, b);
  for (char c : a)
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << c;
}

TEST(Crypto, SealedSecretRoundTripsAndDetectsTampering) {
  std::string key = RandomBytes(32);
  for (std::string plain : {std::string(), std::string("s"), std::string(1000, 'x')}) {
    auto sealed = SealSecret(key, plain);
    ASSERT_TRUE(sealed) << sealed.error().message;
    if (plain.size() > 8) {
      EXPECT_EQ(sealed->find(plain.substr(0, 8)), std::string::npos);  // not in clear
    }
    auto opened = OpenSecret(key, *sealed);
    ASSERT_TRUE(opened) << opened.error().message;
    EXPECT_EQ(*opened, plain);
  }
  auto sealed = SealSecret(key, "webhook-secret");
  ASSERT_TRUE(sealed);
  std::string altered = *sealed;
  altered[10] = altered[10] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(OpenSecret(key, altered));
  EXPECT_FALSE(OpenSecret(RandomBytes(32), *sealed));
  EXPECT_FALSE(OpenSecret(key, "v2:abcd"));
  EXPECT_FALSE(SealSecret("short", "x"));
}

}  // namespace
}  // namespace kervan::core
