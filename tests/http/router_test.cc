#include <gtest/gtest.h>

#include "http/stream.h"

namespace kervan::http {
namespace {

Handler Returns(int status) {
  return [status](const Request&) { return Response::Text(status, "", "text/plain"); };
}

Route MakeRoute(std::string method, std::string pattern, std::string permission = "x.read") {
  Route r;
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  r.handler = Returns(200);
  r.permission = std::move(permission);
  return r;
}

TEST(Router, RejectsRouteWithoutPermissionUnlessPublic) {
  Router router;
  core::Status open = router.Add(MakeRoute("GET", "/api/v1/runs", ""));
  ASSERT_FALSE(open);
  EXPECT_EQ(open.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_NE(open.error().message.find("permission"), std::string::npos) << open.error().message;

  Route health = MakeRoute("GET", "/healthz", "");
  health.public_route = true;
  EXPECT_TRUE(router.Add(health));
  EXPECT_TRUE(router.Add(MakeRoute("GET", "/api/v1/runs")));
}

TEST(Router, RejectsDuplicatesIncludingRenamedParams) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/runs/{id}")));
  EXPECT_FALSE(router.Add(MakeRoute("GET", "/runs/{id}")));
  EXPECT_FALSE(router.Add(MakeRoute("GET", "/runs/{run_id}")));
  EXPECT_TRUE(router.Add(MakeRoute("DELETE", "/runs/{run_id}")));
  StreamRoute stream;
  stream.pattern = "/runs/{id}";
  stream.permission = "x.read";
  stream.handler = [](const Request&, SseStream&) -> asio::awaitable<void> { co_return; };
  EXPECT_FALSE(router.AddStream(stream));
}

TEST(Router, RejectsBadPatternsAndMethods) {
  const char* bad_patterns[] = {"",          "runs",        "/runs/",     "//runs",
                                "/runs/{}",  "/runs/{id",   "/runs/{1d}", "/a/{id}/b/{id}",
                                "/runs?x=1", "/runs/{id}x", "/ru ns"};
  for (const char* pattern : bad_patterns) {
    Router router;
    EXPECT_FALSE(router.Add(MakeRoute("GET", pattern))) << pattern;
  }
  Router router;
  EXPECT_FALSE(router.Add(MakeRoute("get", "/runs")));
  EXPECT_FALSE(router.Add(MakeRoute("", "/runs")));
  Route no_handler = MakeRoute("GET", "/runs");
  no_handler.handler = nullptr;
  EXPECT_FALSE(router.Add(no_handler));
}

TEST(Router, LiteralSegmentsBeatParamsWithBacktracking) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/runs/{id}")));
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/runs/search")));
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/runs/search/{id}/metrics")));
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/runs/{id}/artifacts")));

  RouteMatch search = router.Match("GET", "/runs/search");
  ASSERT_NE(search.route, nullptr);
  EXPECT_EQ(*search.pattern, "/runs/search");

  RouteMatch by_id = router.Match("GET", "/runs/42");
  ASSERT_NE(by_id.route, nullptr);
  EXPECT_EQ(*by_id.pattern, "/runs/{id}");
  EXPECT_EQ(by_id.params.at("id"), "42");

  // "search" literal leads nowhere for /artifacts; backtrack to {id}.
  RouteMatch artifacts = router.Match("GET", "/runs/search/artifacts");
  ASSERT_NE(artifacts.route, nullptr);
  EXPECT_EQ(*artifacts.pattern, "/runs/{id}/artifacts");
  EXPECT_EQ(artifacts.params.at("id"), "search");
}

TEST(Router, ParamsArePercentDecoded) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/api/v1/entities/{kind}/{id}")));
  RouteMatch m = router.Match("GET", "/api/v1/entities/model%20version/a%2Fb");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params.at("kind"), "model version");
  EXPECT_EQ(m.params.at("id"), "a/b");
}

TEST(Router, TrailingWildcardTakesTheRestOfThePath) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/files/{path...}")));
  ASSERT_TRUE(router.Add(MakeRoute("PUT", "/files/{path...}")));
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/files")));

  RouteMatch one = router.Match("GET", "/files/a.txt");
  ASSERT_NE(one.route, nullptr);
  EXPECT_EQ(*one.pattern, "/files/{path...}");
  EXPECT_EQ(one.params.at("path"), "a.txt");

  RouteMatch deep = router.Match("PUT", "/files/run%201/artifacts/model/MLmodel");
  ASSERT_NE(deep.route, nullptr);
  EXPECT_EQ(deep.route->method, "PUT");
  EXPECT_EQ(deep.params.at("path"), "run 1/artifacts/model/MLmodel");

  // "/files" itself is the literal route; "/files/" has nothing to match.
  EXPECT_EQ(*router.Match("GET", "/files").pattern, "/files");
  EXPECT_EQ(router.Match("GET", "/files/").route, nullptr);
  EXPECT_EQ(router.Match("DELETE", "/files/a").allow, "GET, HEAD, PUT");
  EXPECT_EQ(router.Match("HEAD", "/files/a/b").route->method, "GET");
}

TEST(Router, WildcardKeepsEncodedSlashesAndPassesDotSegmentsOn) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/files/{path...}")));
  auto value = [&](std::string_view path) {
    RouteMatch m = router.Match("GET", path);
    return m.route ? m.params.at("path") : std::string("<no match>");
  };
  // An encoded '/' never becomes a separator: it stays "%2F" (upper-case).
  EXPECT_EQ(value("/files/a%2Fb/c"), "a%2Fb/c");
  EXPECT_EQ(value("/files/..%2f..%2fetc%2Fpasswd"), "..%2F..%2Fetc%2Fpasswd");
  EXPECT_EQ(value("/files/%2e%2e%2F%2e%2e"), "..%2F..");
  // Other escapes are decoded once, per segment.
  EXPECT_EQ(value("/files/%252e%252e/x"), "%2e%2e/x");
  EXPECT_EQ(value("/files/a%20b/%E1%88%B4"), "a b/\xE1\x88\xB4");
  EXPECT_EQ(value("/files/100%/%2"), "100%/%2");
  // Dot and empty segments reach the handler, which must validate them.
  EXPECT_EQ(value("/files/../../etc/passwd"), "../../etc/passwd");
  EXPECT_EQ(value("/files//etc/passwd"), "/etc/passwd");
  EXPECT_EQ(value("/files/a//b/"), "a//b/");
}

TEST(Router, LiteralsAndParamsBeatTheWildcard) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/a/{rest...}")));
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/a/{id}/meta")));
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/a/list")));
  EXPECT_EQ(*router.Match("GET", "/a/list").pattern, "/a/list");
  EXPECT_EQ(*router.Match("GET", "/a/7/meta").pattern, "/a/{id}/meta");
  RouteMatch back = router.Match("GET", "/a/7/meta/x");  // {id} leads nowhere: backtrack
  ASSERT_NE(back.route, nullptr);
  EXPECT_EQ(*back.pattern, "/a/{rest...}");
  EXPECT_EQ(back.params.at("rest"), "7/meta/x");
  EXPECT_EQ(router.Match("GET", "/a/list/x").params.at("rest"), "list/x");
}

TEST(Router, WildcardMatchesDeepPathsUpToTheSegmentLimit) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/f/{p...}")));
  std::string path = "/f";
  for (int i = 0; i < 63; ++i)
    path += "/s";
  EXPECT_NE(router.Match("GET", path).route, nullptr);  // 64 segments
  EXPECT_EQ(router.Match("GET", path + "/s").route, nullptr);
}

TEST(Router, RejectsMisplacedOrDuplicateWildcards) {
  for (const char* pattern : {"/a/{p...}/b", "/{p...}/{q...}", "/a/{...}", "/a/{p..}", "/a/{p....}",
                              "/a/{id}/{id...}", "/a/x{p...}"}) {
    Router router;
    EXPECT_FALSE(router.Add(MakeRoute("GET", pattern))) << pattern;
  }
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/a/{p...}")));
  EXPECT_FALSE(router.Add(MakeRoute("GET", "/a/{q...}")));
  EXPECT_TRUE(router.Add(MakeRoute("GET", "/a/{q}")));  // a different shape
  EXPECT_TRUE(router.Add(MakeRoute("GET", "/{p...}")));
  EXPECT_EQ(*router.Match("GET", "/b/c").pattern, "/{p...}");
}

TEST(Router, BodyLimitIsTheMatchedRoutesOrTheDefault) {
  Router router;
  Route upload = MakeRoute("PUT", "/files/{path...}");
  upload.max_body_bytes = 64 << 20;
  ASSERT_TRUE(router.Add(upload));
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/files/{path...}")));
  EXPECT_EQ(router.BodyLimit("PUT", "/files/a/b", 1024), size_t{64} << 20);
  EXPECT_EQ(router.BodyLimit("GET", "/files/a/b", 1024), 1024u);
  EXPECT_EQ(router.BodyLimit("POST", "/nowhere", 1024), 1024u);
  EXPECT_EQ(router.Routes()[0].max_body_bytes, size_t{64} << 20);
  EXPECT_EQ(router.Routes()[1].max_body_bytes, 0u);
}

TEST(Router, UnknownPathHasNoAllowAndWrongMethodHasAllow) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/runs/{id}")));
  ASSERT_TRUE(router.Add(MakeRoute("DELETE", "/runs/{id}")));
  ASSERT_TRUE(router.Add(MakeRoute("POST", "/runs")));

  RouteMatch missing = router.Match("GET", "/nope");
  EXPECT_EQ(missing.route, nullptr);
  EXPECT_EQ(missing.allow, "");
  EXPECT_EQ(router.Match("GET", "/runs/").route, nullptr);  // empty segment
  EXPECT_EQ(router.Match("GET", "runs").route, nullptr);

  RouteMatch wrong = router.Match("PUT", "/runs/7");
  EXPECT_EQ(wrong.route, nullptr);
  EXPECT_EQ(wrong.allow, "DELETE, GET, HEAD");
  EXPECT_EQ(router.Match("GET", "/runs").allow, "POST");
}

TEST(Router, HeadFallsBackToGet) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/")));
  RouteMatch m = router.Match("HEAD", "/");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->method, "GET");
}

TEST(Router, RoutesListsEveryRouteInOrder) {
  Router router;
  ASSERT_TRUE(router.Add(MakeRoute("GET", "/a", "a.read")));
  Route pub = MakeRoute("GET", "/healthz", "");
  pub.public_route = true;
  ASSERT_TRUE(router.Add(pub));
  StreamRoute events;
  events.pattern = "/events";
  events.permission = "events.read";
  events.handler = [](const Request&, SseStream&) -> asio::awaitable<void> { co_return; };
  ASSERT_TRUE(router.AddStream(events));

  std::vector<RouteInfo> routes = router.Routes();
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[0].pattern, "/a");
  EXPECT_EQ(routes[0].permission, "a.read");
  EXPECT_FALSE(routes[0].public_route);
  EXPECT_TRUE(routes[1].public_route);
  EXPECT_TRUE(routes[2].stream);
  EXPECT_EQ(routes[2].method, "GET");
  EXPECT_NE(router.Match("GET", "/events").stream, nullptr);
}

}  // namespace
}  // namespace kervan::http
