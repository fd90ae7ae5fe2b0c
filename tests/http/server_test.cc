// The server through real sockets on 127.0.0.1.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/log.h"
#include "core/metrics.h"
#include "http/stream.h"
#include "test_util.h"

namespace kervan::http {
namespace {

using namespace std::chrono_literals;
using testing::BaseUrl;
using testing::PublicRoute;
using testing::RawConnection;
using testing::StartServer;
using testing::TestOptions;

Router EchoRouter() {
  Router router;
  EXPECT_TRUE(router.Add(PublicRoute("GET", "/api/v1/entities/{kind}/{id}", [](const Request& r) {
    return Response::Json(200, {{"kind", r.params.at("kind")},
                                {"id", r.params.at("id")},
                                {"route", r.route},
                                {"actor", r.actor},
                                {"q", r.QueryOr("q", "")}});
  })));
  EXPECT_TRUE(router.Add(PublicRoute("DELETE", "/api/v1/entities/{kind}/{id}",
                                     [](const Request&) { return Response::Json(200, {}); })));
  EXPECT_TRUE(router.Add(PublicRoute("POST", "/echo", [](const Request& r) {
    auto body = r.JsonBody();
    if (!body)
      return Response::FromError(body.error());
    return Response::Json(201, *body);
  })));
  EXPECT_TRUE(router.Add(PublicRoute("GET", "/conflict", [](const Request&) {
    return Response::FromError(core::FailedPrecondition(
        "cannot promote from Shadow",
        {{"current_state", "Shadow"}, {"allowed_transitions", {"rollback", "step"}}}));
  })));
  EXPECT_TRUE(router.Add(PublicRoute(
      "GET", "/throws", [](const Request&) -> Response { throw std::runtime_error("boom"); })));
  return router;
}

TEST(Server, RoutesWithParamsQueryAndActor) {
  auto server = StartServer(EchoRouter());
  Client client(BaseUrl(*server));
  auto res = client.Send("GET", "/api/v1/entities/model%20version/v%2F7?q=a%20b");
  ASSERT_TRUE(res) << res.error().ToString();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->Header("content-type"), "application/json");
  core::Json body = core::Json::parse(res->body);
  EXPECT_EQ(body["kind"], "model version");
  EXPECT_EQ(body["id"], "v/7");
  EXPECT_EQ(body["route"], "/api/v1/entities/{kind}/{id}");
  EXPECT_EQ(body["q"], "a b");
  // Without an access guard nobody is authenticated.
  EXPECT_EQ(body["actor"], "anonymous");
}

// The access guard runs before plain and stream handlers, sets the actor,
// and its error is the response (401 with WWW-Authenticate); no handler runs.
TEST(Server, AccessGuardAuthenticatesAndDeniesBeforeHandlers) {
  std::atomic<int> handled{0};
  Router router;
  ASSERT_TRUE(router.Add({.method = "GET",
                          .pattern = "/who",
                          .handler =
                              [&handled](const Request& r) {
                                ++handled;
                                return Response::Json(200, {{"actor", r.actor}});
                              },
                          .permission = "who.read"}));
  ASSERT_TRUE(router.Add(PublicRoute("GET", "/open", [&handled](const Request& r) {
    ++handled;
    return Response::Json(200, {{"actor", r.actor}});
  })));
  std::vector<std::string> seen;  // permission|public per call
  std::mutex mu;
  ServerOptions options = TestOptions();
  options.access_guard = [&](Request& req, const std::string& permission,
                             bool public_route) -> core::Status {
    {
      std::lock_guard lock(mu);
      seen.push_back(permission + "|" + (public_route ? "public" : "private"));
    }
    if (public_route)
      return core::Ok();
    std::string auth = req.Header("Authorization");
    if (auth.empty())
      return core::Unauthenticated("missing credentials");
    if (auth != "Bearer good")
      return core::PermissionDenied("permission \"who.read\" required");
    req.actor = "user:ada";
    return core::Ok();
  };
  auto server = StartServer(std::move(router), options);
  Client client(BaseUrl(*server));

  auto missing = client.Send("GET", "/who");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(missing->Header("www-authenticate"), "Bearer realm=\"kervan\"");
  EXPECT_EQ(core::Json::parse(missing->body)["error"]["code"], "unauthenticated");

  auto forbidden = client.Send("GET", "/who", {}, {{"Authorization", "Bearer bad"}});
  ASSERT_TRUE(forbidden);
  EXPECT_EQ(forbidden->status, 403);
  EXPECT_EQ(forbidden->Header("www-authenticate"), "");
  EXPECT_EQ(handled.load(), 0);

  auto ok = client.Send("GET", "/who", {}, {{"Authorization", "Bearer good"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(core::Json::parse(ok->body)["actor"], "user:ada");

  auto open = client.Send("GET", "/open");
  ASSERT_TRUE(open);
  EXPECT_EQ(open->status, 200);
  EXPECT_EQ(handled.load(), 2);

  // Unknown routes never reach the guard.
  auto unknown = client.Send("GET", "/nope");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"who.read|private", "who.read|private",
                                            "who.read|private", "|public"}));
}

TEST(Server, UnknownRouteIs404EnvelopeWithRequestId) {
  auto server = StartServer(EchoRouter());
  Client client(BaseUrl(*server));
  auto res = client.Send("GET", "/api/v1/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  core::Json body = core::Json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "not_found");
  EXPECT_EQ(body["error"]["message"], "no route for GET /api/v1/nope");
  ASSERT_FALSE(res->Header("x-request-id").empty());
  EXPECT_EQ(body["request_id"], res->Header("x-request-id"));
}

TEST(Server, WrongMethodIs405WithAllowHeader) {
  auto server = StartServer(EchoRouter());
  auto res = Client(BaseUrl(*server)).Send("PUT", "/api/v1/entities/run/1", "{}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->Header("allow"), "DELETE, GET, HEAD");
  EXPECT_EQ(core::Json::parse(res->body)["error"]["code"], "method_not_allowed");
}

TEST(Server, ErrorEnvelopeMergesDetailsAndEchoesIncomingRequestId) {
  auto server = StartServer(EchoRouter());
  Client client(BaseUrl(*server));
  auto res = client.Send("GET", "/conflict", {}, {{"X-Request-Id", "trace-abc.1"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 409);
  EXPECT_EQ(res->Header("x-request-id"), "trace-abc.1");
  EXPECT_EQ(core::Json::parse(res->body), core::Json::parse(R"({
      "error": {"code": "failed_precondition", "message": "cannot promote from Shadow",
                "current_state": "Shadow", "allowed_transitions": ["rollback", "step"]},
      "request_id": "trace-abc.1"})"));

  // An unsafe incoming id is replaced by a generated UUIDv7.
  auto replaced = client.Send("GET", "/conflict", {}, {{"X-Request-Id", "bad id!"}});
  ASSERT_TRUE(replaced);
  std::string id = replaced->Header("x-request-id");
  EXPECT_EQ(id.size(), 36u) << id;
  EXPECT_EQ(id[14], '7') << id;
}

TEST(Server, MalformedJsonBodyIs400WithFieldBody) {
  auto server = StartServer(EchoRouter());
  Client client(BaseUrl(*server));
  auto res = client.Send("POST", "/echo", "{\"a\":");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  core::Json body = core::Json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "invalid_argument");
  EXPECT_EQ(body["error"]["field"], "body");

  auto ok = client.Send("POST", "/echo", R"({"a":1})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201);
  EXPECT_EQ(ok->body, R"({"a":1})");
}

TEST(Server, OversizedBodyIs413BeforeTheBodyIsReadAndHandlerNotCalled) {
  std::atomic<int> calls{0};
  Router router;
  ASSERT_TRUE(router.Add(PublicRoute("POST", "/upload", [&](const Request&) {
    ++calls;
    return Response::Json(200, {});
  })));
  ServerOptions options = TestOptions();
  options.max_body_bytes = 1024;
  auto server = StartServer(std::move(router), options);

  // Only the head is sent: the server must answer from Content-Length alone.
  RawConnection conn(server->port());
  conn.Write("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  auto res = conn.ReadResponse();
  EXPECT_EQ(res.result_int(), 413u);
  core::Json body = core::Json::parse(res.body());
  EXPECT_EQ(body["error"]["code"], "payload_too_large");
  EXPECT_EQ(body["error"]["message"], "request body exceeds the limit of 1024 bytes");
  EXPECT_FALSE(body["request_id"].get<std::string>().empty());

  // A chunked body only turns out too large on the way.
  RawConnection chunked(server->port());
  chunked.Write("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                std::string("320\r\n") + std::string(800, 'x') + "\r\n" + std::string("320\r\n") +
                std::string(800, 'x') + "\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.ReadResponse().result_int(), 413u);

  // A client that sends the whole oversized body still reads the answer.
  auto whole = Client(BaseUrl(*server)).Send("POST", "/upload", std::string(200000, 'x'));
  ASSERT_TRUE(whole) << whole.error().ToString();
  EXPECT_EQ(whole->status, 413);

  auto small = Client(BaseUrl(*server)).Send("POST", "/upload", "{}");
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200);
  EXPECT_EQ(calls.load(), 1);
}

TEST(Server, RouteBodyLimitOverridesTheServerDefault) {
  std::atomic<int> calls{0};
  Router router;
  Route upload = PublicRoute(
      "PUT", "/files/{path...}",
      [&](const Request& r) {
        ++calls;
        return Response::Json(200, {{"path", r.Param("path")}, {"size", r.body.size()}});
      },
      /*blocking=*/true);
  upload.max_body_bytes = 64 * 1024;
  ASSERT_TRUE(router.Add(upload));
  Route tiny = PublicRoute("POST", "/tiny", [&](const Request&) {
    ++calls;
    return Response::Json(200, {});
  });
  tiny.max_body_bytes = 16;
  ASSERT_TRUE(router.Add(tiny));
  ASSERT_TRUE(router.Add(PublicRoute("POST", "/echo", [&](const Request& r) {
    ++calls;
    return Response::Json(200, {{"size", r.body.size()}});
  })));
  ServerOptions options = TestOptions();
  options.max_body_bytes = 1024;
  auto server = StartServer(std::move(router), options);
  Client client(BaseUrl(*server));

  // Larger than the server default, within the route's own limit.
  auto big = client.Send("PUT", "/files/a/b.bin", std::string(60 * 1024, 'x'));
  ASSERT_TRUE(big) << big.error().ToString();
  EXPECT_EQ(big->status, 200) << big->body;
  EXPECT_EQ(core::Json::parse(big->body)["size"], 60 * 1024);

  // Past the route's limit: 413 envelope naming that limit, from the head alone.
  RawConnection conn(server->port());
  conn.Write("PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n");
  auto res = conn.ReadResponse();
  EXPECT_EQ(res.result_int(), 413u);
  core::Json body = core::Json::parse(res.body());
  EXPECT_EQ(body["error"]["code"], "payload_too_large");
  EXPECT_EQ(body["error"]["message"], "request body exceeds the limit of 65536 bytes");

  // Even past the largest limit of any route, the message names this route's.
  RawConnection huge(server->port());
  huge.Write("POST /tiny HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  auto huge_res = huge.ReadResponse();
  EXPECT_EQ(huge_res.result_int(), 413u);
  EXPECT_EQ(core::Json::parse(huge_res.body())["error"]["message"],
            "request body exceeds the limit of 16 bytes");

  // A route may also be stricter than the default, chunked bodies included.
  auto small = client.Send("POST", "/tiny", std::string(17, 'x'));
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 413);
  RawConnection chunked(server->port());
  chunked.Write(
      "PUT /files/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "8000\r\n" +
      std::string(0x8000, 'y') + "\r\n8000\r\n" + std::string(0x8000, 'y') + "\r\n10\r\n" +
      std::string(16, 'y') + "\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.ReadResponse().result_int(), 413u);

  // Routes without their own limit keep the server's.
  auto over_default = client.Send("POST", "/echo", std::string(2000, 'x'));
  ASSERT_TRUE(over_default);
  EXPECT_EQ(over_default->status, 413);
  auto within = client.Send("POST", "/echo", std::string(1000, 'x'));
  ASSERT_TRUE(within);
  EXPECT_EQ(within->status, 200);
  EXPECT_EQ(calls.load(), 2);
}

TEST(Server, WildcardParamReachesTheHandler) {
  Router router;
  ASSERT_TRUE(router.Add(PublicRoute("GET", "/files/{path...}", [](const Request& r) {
    return Response::Json(200, {{"path", r.Param("path")}, {"route", r.route}});
  })));
  auto server = StartServer(std::move(router));
  Client client(BaseUrl(*server));
  auto res = client.Send("GET", "/files/run%201/a%2Fb/c.txt?x=1");
  ASSERT_TRUE(res) << res.error().ToString();
  EXPECT_EQ(res->status, 200);
  core::Json body = core::Json::parse(res->body);
  EXPECT_EQ(body["path"], "run 1/a%2Fb/c.txt");
  EXPECT_EQ(body["route"], "/files/{path...}");
}

TEST(Server, MalformedHttpIs400) {
  auto server = StartServer(EchoRouter());
  RawConnection conn(server->port());
  conn.Write("GET /echo HTTP/1.1\r\nHost x-no-colon\r\n\r\n");
  std::string raw = conn.ReadToEnd();
  EXPECT_EQ(raw.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << raw;
  EXPECT_NE(raw.find("malformed HTTP request"), std::string::npos) << raw;
  EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;
}

TEST(Server, HandlerExceptionIs500Internal) {
  auto server = StartServer(EchoRouter());
  auto res = Client(BaseUrl(*server)).Send("GET", "/throws");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  core::Json body = core::Json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "internal");
  EXPECT_EQ(body["error"]["message"].get<std::string>().find("boom"), std::string::npos)
      << "exception text must not leak to clients";
}

TEST(Server, KeepAliveServesManyRequestsOnOneConnection) {
  auto server = StartServer(EchoRouter());
  RawConnection conn(server->port());
  for (int i = 0; i < 5; ++i) {
    beast::http::request<beast::http::string_body> req(
        beast::http::verb::get, "/api/v1/entities/run/" + std::to_string(i), 11);
    req.set(beast::http::field::host, "127.0.0.1");
    beast::http::write(conn.socket(), req);
    auto res = conn.ReadResponse();
    ASSERT_EQ(res.result_int(), 200u);
    EXPECT_TRUE(res.keep_alive());
    EXPECT_EQ(core::Json::parse(res.body())["id"], std::to_string(i));
  }
  // Two pipelined requests in one write are answered in order.
  conn.Write(
      "GET /api/v1/entities/a/1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /api/v1/entities/b/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(core::Json::parse(conn.ReadResponse().body())["kind"], "a");
  auto last = conn.ReadResponse();
  EXPECT_EQ(core::Json::parse(last.body())["kind"], "b");
  EXPECT_FALSE(last.keep_alive());
}

TEST(Server, HeadIsServedByGetWithoutBody) {
  auto server = StartServer(EchoRouter());
  RawConnection conn(server->port());
  conn.Write("HEAD /api/v1/entities/a/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string raw = conn.ReadToEnd();
  EXPECT_EQ(raw.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << raw;
  EXPECT_EQ(raw.substr(raw.size() - 4), "\r\n\r\n") << "no body after the head: " << raw;
}

TEST(Server, ExpectContinueGetsInterimResponse) {
  auto server = StartServer(EchoRouter());
  RawConnection conn(server->port());
  conn.Write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n");
  char buf[64];
  size_t n = conn.socket().read_some(asio::buffer(buf));
  EXPECT_EQ(std::string(buf, n), "HTTP/1.1 100 Continue\r\n\r\n");
  conn.Write(R"({"a":1})");
  auto res = conn.ReadResponse();
  EXPECT_EQ(res.result_int(), 201u);
}

TEST(Server, BlockingHandlersRunOffTheIoThread) {
  std::mutex mu;
  std::set<std::thread::id> inline_threads;
  std::set<std::thread::id> blocking_threads;
  Router router;
  ASSERT_TRUE(router.Add(PublicRoute(
      "GET", "/inline",
      [&](const Request&) {
        std::lock_guard lock(mu);
        inline_threads.insert(std::this_thread::get_id());
        return Response::Json(200, {});
      },
      /*blocking=*/false)));
  ASSERT_TRUE(router.Add(PublicRoute(
      "GET", "/blocking",
      [&](const Request&) {
        std::lock_guard lock(mu);
        blocking_threads.insert(std::this_thread::get_id());
        return Response::Json(200, {});
      },
      /*blocking=*/true)));
  ServerOptions options = TestOptions();
  options.io_threads = 1;
  auto server = StartServer(std::move(router), options);
  Client client(BaseUrl(*server));
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(client.Send("GET", "/inline")->status, 200);
    ASSERT_EQ(client.Send("GET", "/blocking")->status, 200);
  }
  std::lock_guard lock(mu);
  ASSERT_EQ(inline_threads.size(), 1u);  // the one I/O thread
  EXPECT_FALSE(blocking_threads.empty());
  EXPECT_FALSE(blocking_threads.contains(*inline_threads.begin()));
  EXPECT_FALSE(blocking_threads.contains(std::this_thread::get_id()));
}

// A route's `start` (Route::start) answers on the I/O thread, at once or
// later from another thread; what it declines, or throws on, goes to the
// handler on the pool.
TEST(Server, StartTakesRequestsOrDeclinesThemToTheHandler) {
  std::mutex mu;
  std::set<std::thread::id> start_threads;
  std::set<std::thread::id> handler_threads;
  std::vector<Respond> later;  // answered by `answerer`
  std::condition_variable later_cv;
  bool done = false;
  std::thread answerer([&] {
    std::unique_lock lock(mu);
    for (;;) {
      later_cv.wait(lock, [&] { return done || !later.empty(); });
      if (later.empty())
        return;
      Respond r = std::move(later.back());
      later.pop_back();
      lock.unlock();
      std::this_thread::sleep_for(20ms);
      r(Response::Json(200, {{"by", "answerer"}}));
      lock.lock();
    }
  });
  Route route = PublicRoute(
      "POST", "/s",
      [&](const Request& r) {
        std::lock_guard lock(mu);
        handler_threads.insert(std::this_thread::get_id());
        return Response::Json(200, {{"by", "handler"}, {"body", r.body}});
      },
      /*blocking=*/true);
  route.start = [&](const Request& r, Respond respond) {
    {
      std::lock_guard lock(mu);
      start_threads.insert(std::this_thread::get_id());
    }
    if (r.body == "now") {
      respond(Response::Json(201, {{"by", "start"}}));
      return true;
    }
    if (r.body == "later") {
      std::lock_guard lock(mu);
      later.push_back(std::move(respond));
      later_cv.notify_one();
      return true;
    }
    if (r.body == "throw")
      throw std::runtime_error("start broke");
    return false;
  };
  ASSERT_TRUE(route.start);
  Router router;
  ASSERT_TRUE(router.Add(std::move(route)));
  ServerOptions options = TestOptions();
  options.io_threads = 1;
  auto server = StartServer(std::move(router), options);
  Client client(BaseUrl(*server));  // one keep-alive connection for all
  auto send = [&](const std::string& body) {
    auto res = client.Send("POST", "/s", body, {{"Content-Type", "text/plain"}});
    EXPECT_TRUE(res) << res.error().ToString();
    return res ? std::make_pair(res->status, core::Json::parse(res->body)["by"].get<std::string>())
               : std::make_pair(0, std::string());
  };
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(send("now"), std::make_pair(201, std::string("start")));
    EXPECT_EQ(send("later"), std::make_pair(200, std::string("answerer")));
    EXPECT_EQ(send("decline"), std::make_pair(200, std::string("handler")));
    EXPECT_EQ(send("throw"), std::make_pair(200, std::string("handler")));
  }
  {
    std::lock_guard lock(mu);
    done = true;
    later_cv.notify_one();
  }
  answerer.join();
  std::lock_guard lock(mu);
  ASSERT_EQ(start_threads.size(), 1u);  // the one I/O thread
  EXPECT_FALSE(start_threads.contains(std::this_thread::get_id()));
  EXPECT_FALSE(handler_threads.empty());
  EXPECT_FALSE(handler_threads.contains(*start_threads.begin()));
}

// A started request answered after the grace period: Shutdown returns only
// once the answer is in (it is posted to a context that must still exist),
// and the late answer goes nowhere without harm.
TEST(Server, ShutdownWaitsForTheAnswersOfStartedRequests) {
  std::mutex mu;
  std::optional<Respond> held;
  std::atomic<bool> answered{false};
  Route route = PublicRoute(
      "POST", "/s", [](const Request&) { return Response::Json(200, {}); }, /*blocking=*/true);
  route.start = [&](const Request&, Respond respond) {
    std::lock_guard lock(mu);
    held = std::move(respond);
    return true;
  };
  Router router;
  ASSERT_TRUE(router.Add(std::move(route)));
  auto server = StartServer(std::move(router));
  auto pending = std::async(std::launch::async, [base = BaseUrl(*server)] {
    return Client(base).Send("POST", "/s", "x", {{"Content-Type", "text/plain"}});
  });
  for (int i = 0; i < 400; ++i) {
    std::lock_guard lock(mu);
    if (held)
      break;
    std::this_thread::sleep_for(5ms);
  }
  std::thread late([&] {
    std::this_thread::sleep_for(400ms);
    std::lock_guard lock(mu);
    answered = true;
    (*held)(Response::Json(200, {}));
  });
  server->Shutdown(50ms);
  EXPECT_TRUE(answered) << "Shutdown returned before the started request was answered";
  late.join();
  auto res = pending.get();
  EXPECT_FALSE(res) << "cut off after the grace period";
}

TEST(Server, ShutdownLetsInFlightRequestFinish) {
  std::atomic<bool> entered{false};
  Router router;
  ASSERT_TRUE(router.Add(PublicRoute(
      "GET", "/slow",
      [&](const Request&) {
        entered = true;
        std::this_thread::sleep_for(300ms);
        return Response::Json(200, {{"done", true}});
      },
      /*blocking=*/true)));
  auto server = StartServer(std::move(router));
  const std::string base = BaseUrl(*server);
  // An idle keep-alive connection must not hold the shutdown up.
  RawConnection idle(server->port());

  auto pending = std::async(std::launch::async, [&] { return Client(base).Send("GET", "/slow"); });
  while (!entered)
    std::this_thread::sleep_for(5ms);
  auto begin = std::chrono::steady_clock::now();
  server->Shutdown(5s);
  auto took = std::chrono::steady_clock::now() - begin;

  auto res = pending.get();
  ASSERT_TRUE(res) << res.error().ToString();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->Header("connection"), "close");
  EXPECT_EQ(core::Json::parse(res->body)["done"], true);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(idle.ReadToEnd(), "") << "idle connection is closed without a response";

  // Stopped: no longer accepting; Shutdown and Wait are idempotent.
  auto after = Client(base).Send("GET", "/slow", {}, {}, 1s);
  EXPECT_FALSE(after);
  server->Shutdown(1s);
  server->Wait();
}

TEST(Server, ShutdownClosesConnectionsThatOutliveTheGrace) {
  Router router;
  ASSERT_TRUE(router.Add(PublicRoute(
      "GET", "/slow",
      [&](const Request&) {
        std::this_thread::sleep_for(600ms);
        return Response::Json(200, {});
      },
      /*blocking=*/true)));
  auto server = StartServer(std::move(router));
  auto pending = std::async(
      std::launch::async, [base = BaseUrl(*server)] { return Client(base).Send("GET", "/slow"); });
  std::this_thread::sleep_for(100ms);
  server->Shutdown(100ms);
  auto res = pending.get();
  EXPECT_FALSE(res) << "cut off after the grace period";
}

TEST(Server, ClosesConnectionsIdleLongerThanIdleTimeout) {
  ServerOptions options = TestOptions();
  options.idle_timeout = std::chrono::seconds(1);
  auto server = StartServer(EchoRouter(), options);
  RawConnection conn(server->port());
  conn.Write("GET /api/v1/entities/a/1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(conn.ReadResponse().result_int(), 200u);
  auto begin = std::chrono::steady_clock::now();
  EXPECT_EQ(conn.ReadToEnd(), "");
  auto idle = std::chrono::steady_clock::now() - begin;
  EXPECT_GE(idle, 900ms);
  EXPECT_LT(idle, 3s);
}

TEST(Server, StartFailsWithUnavailableWhenPortIsTaken) {
  auto first = StartServer(EchoRouter());
  ServerOptions options = TestOptions();
  options.port = first->port();
  Server second(options, std::make_shared<const Router>(EchoRouter()));
  core::Status started = second.Start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, core::ErrorCode::kUnavailable);
  EXPECT_NE(started.error().message.find("127.0.0.1:" + std::to_string(first->port())),
            std::string::npos)
      << started.error().message;
}

TEST(Server, CountsRequestsByRoutePatternNotRawPath) {
  auto server = StartServer(EchoRouter());
  auto& family = core::GlobalMetrics().AddCounter("kervan_http_requests_total", "",
                                                  {"method", "route", "status"});
  core::Counter& ok = family.With({"GET", "/api/v1/entities/{kind}/{id}", "200"});
  core::Counter& unmatched = family.With({"GET", "unmatched", "404"});
  const double ok_before = ok.value();
  const double unmatched_before = unmatched.value();
  Client client(BaseUrl(*server));
  ASSERT_EQ(client.Send("GET", "/api/v1/entities/run/1")->status, 200);
  ASSERT_EQ(client.Send("GET", "/api/v1/entities/run/2")->status, 200);
  ASSERT_EQ(client.Send("GET", "/no/such/path")->status, 404);
  EXPECT_EQ(ok.value() - ok_before, 2);
  EXPECT_EQ(unmatched.value() - unmatched_before, 1);

  std::string text = core::GlobalMetrics().Render();
  EXPECT_NE(text.find("kervan_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/"
                      "v1/entities/{kind}/{id}\""),
            std::string::npos);
  EXPECT_EQ(text.find("/no/such/path"), std::string::npos);
}

TEST(Server, WritesOneAccessLogLinePerRequest) {
  std::FILE* log = std::tmpfile();
  ASSERT_NE(log, nullptr);
  core::SetLogOutput(log);
  core::SetLogLevel(core::LogLevel::kInfo);
  {
    ServerOptions options = TestOptions();
    options.access_log = true;
    auto server = StartServer(EchoRouter(), options);
    auto res = Client(BaseUrl(*server))
                   .Send("GET", "/api/v1/entities/run/9", {}, {{"X-Request-Id", "log-test-1"}});
    ASSERT_TRUE(res);
    server->Shutdown(1s);
  }
  core::SetLogOutput(stderr);
  core::SetLogLevel(core::LogLevel::kWarn);
  std::rewind(log);
  std::string all;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, log)) > 0)
    all.append(buf, n);
  std::fclose(log);

  core::Json line;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\n', start);
    core::Json j = core::Json::parse(all.substr(start, end - start));
    if (j.value("event.action", "") == "http.request")
      line = j;
    start = end + 1;
  }
  ASSERT_TRUE(line.is_object()) << all;
  EXPECT_EQ(line["http.request.method"], "GET");
  EXPECT_EQ(line["url.path"], "/api/v1/entities/run/9");
  EXPECT_EQ(line["http.response.status_code"], 200);
  EXPECT_EQ(line["trace.id"], "log-test-1");
  EXPECT_EQ(line["log.level"], "info");
  EXPECT_GT(line["event.duration"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace kervan::http
