#include <gtest/gtest.h>

#include "http/http.h"
#include "http/wire.h"

namespace kervan::http {
namespace {

TEST(HttpStatusFor, MapsEveryErrorCode) {
  struct Case {
    core::ErrorCode code;
    int status;
  };
  const Case cases[] = {
      {core::ErrorCode::kInvalidArgument, 400}, {core::ErrorCode::kNotFound, 404},
      {core::ErrorCode::kAlreadyExists, 409},   {core::ErrorCode::kFailedPrecondition, 409},
      {core::ErrorCode::kAborted, 409},         {core::ErrorCode::kPermissionDenied, 403},
      {core::ErrorCode::kUnauthenticated, 401}, {core::ErrorCode::kResourceExhausted, 429},
      {core::ErrorCode::kUnavailable, 503},     {core::ErrorCode::kDeadlineExceeded, 504},
      {core::ErrorCode::kInternal, 500},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(HttpStatusFor(c.code), c.status) << core::ErrorCodeName(c.code);
  }
}

TEST(Response, FromErrorBuildsEnvelopeWithDetailsMerged) {
  core::Error error = core::FailedPrecondition(
      "cannot approve a version in state Rejected",
      {{"current_state", "Rejected"}, {"allowed_transitions", {"archive"}}});
  Response r = Response::FromError(error);
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_TRUE(r.error_envelope);
  core::Json body = core::Json::parse(r.body);
  EXPECT_EQ(body, core::Json::parse(R"({"error":{
      "code":"failed_precondition",
      "message":"cannot approve a version in state Rejected",
      "current_state":"Rejected",
      "allowed_transitions":["archive"]}})"));
}

TEST(Response, FromErrorIncludesFieldOnlyWhenSet) {
  core::Json with = core::Json::parse(
      Response::FromError(core::InvalidArgument("must be positive", "steps")).body);
  EXPECT_EQ(with["error"]["field"], "steps");
  core::Json without = core::Json::parse(Response::FromError(core::NotFound("no run 7")).body);
  EXPECT_FALSE(without["error"].contains("field"));
  EXPECT_EQ(without["error"]["code"], "not_found");
}

TEST(Response, DetailsNeverOverrideCodeOrMessage) {
  core::Error error = core::FailedPrecondition("real", {{"code", "fake"}, {"message", "fake"}});
  core::Json body = core::Json::parse(Response::FromError(error).body);
  EXPECT_EQ(body["error"]["code"], "failed_precondition");
  EXPECT_EQ(body["error"]["message"], "real");
}

TEST(Response, RequestIdIsSplicedIntoEnvelope) {
  Response r = Response::FromError(core::NotFound("gone"));
  wire::AppendRequestId(r.body, "req-1");
  core::Json body = core::Json::parse(r.body);
  EXPECT_EQ(body["request_id"], "req-1");
  EXPECT_EQ(body["error"]["message"], "gone");
}

TEST(Response, JsonReplacesInvalidUtf8InsteadOfThrowing) {
  Response r = Response::Json(200, {{"name", std::string("bad\xff")}});
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.body.empty());
}

TEST(Response, FromResultPicksValueOrError) {
  EXPECT_EQ(Response::FromResult(core::Json{{"a", 1}}, 201).status, 201);
  EXPECT_EQ(Response::FromResult(core::Result<core::Json>(core::NotFound("x"))).status, 404);
}

TEST(Request, HeaderLookupIgnoresCase) {
  Request req;
  req.headers = {{"Content-Type", "application/json"}, {"X-Trace", "ada"}};
  EXPECT_EQ(req.Header("content-type"), "application/json");
  EXPECT_EQ(req.Header("X-TRACE"), "ada");
  EXPECT_EQ(req.Header("missing"), "");
}

TEST(Request, JsonBodyRejectsEmptyAndMalformedBodies) {
  Request req;
  auto empty = req.JsonBody();
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(empty.error().field, "body");

  req.body = "{\"a\":";
  auto malformed = req.JsonBody();
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().field, "body");
  EXPECT_EQ(HttpStatusFor(malformed.error().code), 400);

  req.body = R"({"a":1})";
  auto ok = req.JsonBody();
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)["a"], 1);
}

TEST(Request, QueryIntValidatesAndNamesTheParameter) {
  Request req;
  wire::ParseQuery("limit=abc&offset=20&big=5000&neg=-3&empty=", &req.query);

  auto bad = req.QueryInt("limit", 100, 1, 1000);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message,
            "query parameter \"limit\": must be an integer between 1 and 1000, got \"abc\"");
  EXPECT_EQ(bad.error().field, "limit");

  EXPECT_FALSE(req.QueryInt("big", 100, 1, 1000));
  EXPECT_FALSE(req.QueryInt("neg", 0, 0, 10));
  EXPECT_FALSE(req.QueryInt("empty", 0, 0, 10));

  auto offset = req.QueryInt("offset", 0, 0, 1000000);
  ASSERT_TRUE(offset);
  EXPECT_EQ(*offset, 20);
  auto absent = req.QueryInt("page_size", 50, 1, 100);
  ASSERT_TRUE(absent);
  EXPECT_EQ(*absent, 50);
}

TEST(Request, QueryIsPercentDecodedAndFirstValueWins) {
  Request req;
  req.query_string = "filter=metrics.auc%20%3E%200.9&name=a+b&id=1&id=2&flag";
  wire::ParseQuery(req.query_string, &req.query);
  EXPECT_EQ(req.QueryOr("filter", ""), "metrics.auc > 0.9");
  EXPECT_EQ(req.QueryOr("name", ""), "a b");
  EXPECT_EQ(req.QueryOr("id", ""), "1");
  EXPECT_EQ(req.QueryOr("flag", "unset"), "");
  EXPECT_EQ(req.QueryOr("absent", "dflt"), "dflt");
  EXPECT_EQ(req.QueryAll("id"), (std::vector<std::string>{"1", "2"}));
}

TEST(PercentEncoding, RoundTripsAndKeepsMalformedEscapes) {
  EXPECT_EQ(PercentEncode("a b/c~"), "a%20b%2Fc~");
  EXPECT_EQ(PercentDecode(PercentEncode("ünï/cödé?&=")), "ünï/cödé?&=");
  EXPECT_EQ(PercentDecode("100%"), "100%");
  EXPECT_EQ(PercentDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(PercentDecode("a+b"), "a+b");
  EXPECT_EQ(PercentDecode("a+b", true), "a b");
}

TEST(RequestId, AcceptsOnlyShortSafeIds) {
  EXPECT_TRUE(wire::ValidRequestId("abc-123_X.y"));
  EXPECT_TRUE(wire::ValidRequestId(std::string(128, 'a')));
  EXPECT_FALSE(wire::ValidRequestId(std::string(129, 'a')));
  EXPECT_FALSE(wire::ValidRequestId(""));
  EXPECT_FALSE(wire::ValidRequestId("has space"));
  EXPECT_FALSE(wire::ValidRequestId("quote\""));
}

}  // namespace
}  // namespace kervan::http
