// Server-Sent Events and AsyncSignal.
#include <atomic>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "http/stream.h"
#include "test_util.h"

namespace kervan::http {
namespace {

using namespace std::chrono_literals;
using testing::BaseUrl;
using testing::StartServer;

// Publishes numbered "tick" events whenever the signal fires.
struct Feed {
  AsyncSignal signal;
  std::mutex mu;
  std::vector<std::string> items;  // GUARDED_BY(mu)
  std::atomic<int> handlers_running{0};
  std::atomic<int> handlers_finished{0};

  void Publish(std::string item) {
    {
      std::lock_guard lock(mu);
      items.push_back(std::move(item));
    }
    signal.Notify();
  }

  StreamRoute Route() {
    StreamRoute route;
    route.pattern = "/events";
    route.public_route = true;
    route.handler = [this](const Request& req, SseStream& stream) -> asio::awaitable<void> {
      ++handlers_running;
      if (req.QueryOr("fail", "") == "1") {
        stream.Fail(core::InvalidArgument("query parameter \"fail\": refused", "fail"));
        --handlers_running;
        ++handlers_finished;
        co_return;
      }
      size_t next = 0;
      uint64_t seen = signal.generation();
      while (stream.open()) {
        std::vector<std::string> batch;
        {
          std::lock_guard lock(mu);
          batch.assign(items.begin() + static_cast<std::ptrdiff_t>(next), items.end());
          next = items.size();
        }
        for (const std::string& item : batch) {
          if (!co_await stream.Send(std::to_string(next), "tick", item))
            break;
        }
        if (!co_await stream.Wait(signal, 10s, &seen) && stream.open()) {
          co_await stream.Comment("keep-alive");
        }
      }
      --handlers_running;
      ++handlers_finished;
    };
    return route;
  }
};

TEST(Sse, StreamDeliversEventsAndEndsAtShutdown) {
  Feed feed;
  feed.Publish("first");
  Router router;
  ASSERT_TRUE(router.AddStream(feed.Route()));
  auto server = StartServer(std::move(router));

  std::mutex mu;
  std::string received;
  std::atomic<bool> got_second{false};
  auto reader = std::async(std::launch::async, [&, base = BaseUrl(*server)] {
    return Client(base).ReadStream("/events", {}, [&](std::string_view chunk) {
      std::lock_guard lock(mu);
      received.append(chunk);
      if (received.find("second") != std::string::npos)
        got_second = true;
      return true;
    });
  });
  // Let the stream start, then publish from another thread.
  while (feed.handlers_running.load() == 0)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(50ms);
  feed.Publish("second\nline two");
  for (int i = 0; i < 200 && !got_second; ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(got_second);

  auto begin = std::chrono::steady_clock::now();
  server->Shutdown(2s);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 500ms) << "streams end promptly";
  ASSERT_EQ(reader.wait_for(2s), std::future_status::ready);
  core::Status status = reader.get();
  EXPECT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(feed.handlers_finished.load(), 1);

  std::lock_guard lock(mu);
  EXPECT_NE(received.find("id: 1\nevent: tick\ndata: first\n\n"), std::string::npos) << received;
  EXPECT_NE(received.find("event: tick\ndata: second\ndata: line two\n\n"), std::string::npos)
      << received;
}

TEST(Sse, ResponseHeadIsEventStream) {
  Feed feed;
  Router router;
  ASSERT_TRUE(router.AddStream(feed.Route()));
  auto server = StartServer(std::move(router));
  testing::RawConnection conn(server->port());
  conn.Write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head;
  char c;
  while (head.find("\r\n\r\n") == std::string::npos) {
    asio::read(conn.socket(), asio::buffer(&c, 1));
    head.push_back(c);
  }
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Type: text/event-stream\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Cache-Control: no-cache\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Request-Id: "), std::string::npos) << head;
}

TEST(Sse, HandlerEndsWhenClientDisconnects) {
  Feed feed;
  feed.Publish("hello");
  Router router;
  ASSERT_TRUE(router.AddStream(feed.Route()));
  auto server = StartServer(std::move(router));
  // Stop reading after the first piece: the client closes its connection.
  core::Status status =
      Client(BaseUrl(*server)).ReadStream("/events", {}, [](std::string_view) { return false; });
  EXPECT_TRUE(status);
  // The handler is waiting with a 10 s timeout; the disconnect must wake it.
  for (int i = 0; i < 200 && feed.handlers_finished.load() == 0; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(feed.handlers_finished.load(), 1);
}

TEST(Sse, FailAnswersWithErrorEnvelope) {
  Feed feed;
  Router router;
  ASSERT_TRUE(router.AddStream(feed.Route()));
  auto server = StartServer(std::move(router));
  core::Status status =
      Client(BaseUrl(*server)).ReadStream("/events?fail=1", {}, [](auto) { return true; });
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, core::ErrorCode::kInvalidArgument) << status.error().ToString();
  EXPECT_EQ(status.error().field, "fail");
}

// Runs `coro` on a private io_context and returns its result.
template <typename T>
T RunCoroutine(asio::awaitable<T> coro) {
  asio::io_context ioc(1);
  std::optional<T> result;
  asio::co_spawn(
      ioc, [&]() -> asio::awaitable<void> { result = co_await std::move(coro); }, asio::detached);
  ioc.run();
  return *result;
}

TEST(AsyncSignal, WaitTimesOutWithoutNotify) {
  AsyncSignal signal;
  auto begin = std::chrono::steady_clock::now();
  EXPECT_FALSE(RunCoroutine(signal.Wait(30ms)));
  EXPECT_GE(std::chrono::steady_clock::now() - begin, 30ms);
}

TEST(AsyncSignal, NotifyFromAnotherThreadWakesEveryWaiter) {
  AsyncSignal signal;
  asio::io_context a(1);
  asio::io_context b(1);
  std::atomic<int> woken{0};
  auto waiter = [&]() -> asio::awaitable<void> {
    if (co_await signal.Wait(5s))
      ++woken;
  };
  asio::co_spawn(a, waiter(), asio::detached);
  asio::co_spawn(b, waiter(), asio::detached);
  std::thread ta([&] { a.run(); });
  std::thread tb([&] { b.run(); });
  auto begin = std::chrono::steady_clock::now();
  // Notify repeatedly until both have registered and woken.
  while (woken.load() < 2 && std::chrono::steady_clock::now() - begin < 2s) {
    std::this_thread::sleep_for(10ms);
    signal.Notify();
  }
  ta.join();
  tb.join();
  EXPECT_EQ(woken.load(), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 2s);
}

TEST(AsyncSignal, NotifyBeforeWaitIsNotLostWithGeneration) {
  AsyncSignal signal;
  uint64_t seen = signal.generation();
  signal.Notify();  // nobody waiting yet
  EXPECT_TRUE(RunCoroutine(signal.Wait(5s, &seen)));
  EXPECT_EQ(seen, signal.generation());
  EXPECT_FALSE(RunCoroutine(signal.Wait(10ms, &seen)));
}

}  // namespace
}  // namespace kervan::http
