#include <thread>

#include <gtest/gtest.h>

#include "http/http.h"
#include "test_util.h"

namespace kervan::http {
namespace {

using namespace std::chrono_literals;
using testing::BaseUrl;
using testing::PublicRoute;
using testing::StartServer;

// A port on 127.0.0.1 with nothing listening.
uint16_t ClosedPort() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();  // closed again when acceptor goes
}

TEST(Client, UnreachableServerIsUnavailableWithClearMessage) {
  const std::string base = "http://127.0.0.1:" + std::to_string(ClosedPort());
  auto res = Client(base).Send("GET", "/healthz");
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().code, core::ErrorCode::kUnavailable);
  EXPECT_EQ(res.error().message, "cannot reach Kervan server at " + base + ": Connection refused");
}

TEST(Client, RejectsHttpsAndMalformedUrls) {
  auto https = Client("https://kervan.example:8443").Send("GET", "/");
  ASSERT_FALSE(https);
  EXPECT_EQ(https.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_NE(https.error().message.find("https is not supported yet"), std::string::npos);
  for (const char* url :
       {"127.0.0.1:8080", "http://", "http://host:port", "http://h:99999", "http://h:80/prefix"}) {
    EXPECT_FALSE(Client(url).Send("GET", "/")) << url;
  }
}

TEST(Client, SendsBodyAndReadsLowercaseHeaders) {
  Router router;
  ASSERT_TRUE(router.Add(PublicRoute("POST", "/echo", [](const Request& r) {
    Response res = Response::Text(200, r.body, r.Header("Content-Type"));
    res.headers.emplace_back("X-Custom", "yes");
    return res;
  })));
  auto server = StartServer(std::move(router));
  auto res = Client(BaseUrl(*server) + "/").Send("POST", "/echo", R"({"x":1})");
  ASSERT_TRUE(res) << res.error().ToString();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, R"({"x":1})");
  EXPECT_EQ(res->Header("content-type"), "application/json");  // the client's default
  EXPECT_EQ(res->Header("x-custom"), "yes");
  EXPECT_TRUE(res->headers.contains("date"));
}

TEST(Client, TimeoutIsDeadlineExceeded) {
  Router router;
  ASSERT_TRUE(router.Add(PublicRoute(
      "GET", "/slow",
      [](const Request&) {
        std::this_thread::sleep_for(400ms);
        return Response::Json(200, {});
      },
      /*blocking=*/true)));
  auto server = StartServer(std::move(router));
  auto res = Client(BaseUrl(*server)).Send("GET", "/slow", {}, {}, 100ms);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().code, core::ErrorCode::kDeadlineExceeded);
}

TEST(Client, ErrorFromResponseRestoresTheError) {
  ClientResponse res;
  res.status = 409;
  res.body = R"({"error":{"code":"aborted","message":"retry","field":"version",
                 "current_state":"Shadow"},"request_id":"r1"})";
  core::Error error = ErrorFromResponse(res);
  EXPECT_EQ(error.code, core::ErrorCode::kAborted);
  EXPECT_EQ(error.message, "retry");
  EXPECT_EQ(error.field, "version");
  EXPECT_EQ(error.details["current_state"], "Shadow");

  ClientResponse transport;
  transport.status = 405;
  transport.body = R"({"error":{"code":"method_not_allowed","message":"no"}})";
  core::Error e405 = ErrorFromResponse(transport);
  EXPECT_EQ(e405.code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(e405.details["code"], "method_not_allowed");

  ClientResponse plain;
  plain.status = 502;
  plain.body = "Bad Gateway";
  EXPECT_EQ(ErrorFromResponse(plain).code, core::ErrorCode::kInternal);
  EXPECT_NE(ErrorFromResponse(plain).message.find("Bad Gateway"), std::string::npos);
}

}  // namespace
}  // namespace kervan::http
