// Shared pieces of the webhooks integration tests: a real loopback receiver
// (an http::Server on an ephemeral port) and a fixture that runs the module
// over each store backend with fast retry timings.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "http/asio.h"
#include "webhooks/webhooks.h"

namespace kervan::webhooks::testing {

// Delivery failures are expected in these tests; keep their warnings quiet.
inline const bool kQuietLogs = (core::SetLogLevel(core::LogLevel::kError), true);

inline const std::string kSecretKey(32, 'k');

// What the receiver got in one request.
struct Received {
  std::string name;  // the {name} path segment
  std::string body;
  std::string event_header, delivery_header, signature_header, content_type;
  int answered = 0;
};

// POST /hook/{name}: records the request and answers with the next status
// scripted for `name` (200 once the script is used up).
class Receiver {
 public:
  // port 0: an ephemeral port.
  explicit Receiver(uint16_t port = 0) {
    http::Router router;
    auto st = router.Add({.method = "POST",
                          .pattern = "/hook/{name}",
                          .handler = [this](const http::Request& req) { return Handle(req); },
                          .blocking = false,
                          .public_route = true});
    EXPECT_TRUE(st);
    http::ServerOptions options;
    options.address = "127.0.0.1";
    options.port = port;
    options.io_threads = 1;
    options.worker_threads = 1;
    options.access_log = false;
    server_ = std::make_unique<http::Server>(
        options, std::make_shared<const http::Router>(std::move(router)));
    auto started = server_->Start();
    EXPECT_TRUE(started) << (started ? "" : started.error().ToString());
    port_ = server_->port();
  }
  ~Receiver() { server_->Shutdown(std::chrono::milliseconds(100)); }

  uint16_t port() const { return port_; }
  std::string Url(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/hook/" + name;
  }

  void Script(const std::string& name, std::vector<int> statuses) {
    std::lock_guard lock(mu_);
    scripts_[name] = std::deque<int>(statuses.begin(), statuses.end());
  }

  std::vector<Received> Got(const std::string& name = "") {
    std::lock_guard lock(mu_);
    std::vector<Received> out;
    for (const auto& r : received_) {
      if (name.empty() || r.name == name)
        out.push_back(r);
    }
    return out;
  }

 private:
  http::Response Handle(const http::Request& req) {
    std::lock_guard lock(mu_);
    Received r{.name = req.Param("name"),
               .body = req.body,
               .event_header = req.Header("X-Kervan-Event"),
               .delivery_header = req.Header("X-Kervan-Delivery"),
               .signature_header = req.Header("X-Kervan-Signature"),
               .content_type = req.Header("Content-Type")};
    int status = 200;
    auto& script = scripts_[r.name];
    if (!script.empty()) {
      status = script.front();
      script.pop_front();
    }
    r.answered = status;
    received_.push_back(std::move(r));
    return http::Response::Json(status, {{"ok", status < 300}});
  }

  std::unique_ptr<http::Server> server_;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::map<std::string, std::deque<int>> scripts_;
  std::vector<Received> received_;
};

// A port with nothing listening (bound once, then released).
inline uint16_t UnusedPort() {
  http::asio::io_context ioc;
  http::asio::ip::tcp::acceptor acceptor(
      ioc, {http::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(0)});
  return acceptor.local_endpoint().port();
}

inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

inline WebhooksOptions FastOptions() {
  WebhooksOptions o;
  o.secret_key = kSecretKey;
  o.retry = {.base = std::chrono::milliseconds(40),
             .max = std::chrono::milliseconds(160),
             .max_attempts = 3,
             .jitter = 0.2};
  o.request_timeout = std::chrono::milliseconds(2000);
  o.poll_interval = std::chrono::milliseconds(20);
  o.workers = 2;
  return o;
}

inline const store::CommandContext kAlice{.actor = "alice", .correlation_id = "req-1"};

class WebhooksTest : public store::testing::BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    Migrated();
    Open();
  }
  void TearDown() override {
    Close();
    BackendTest::TearDown();
  }

  void Open(WebhooksOptions options = FastOptions()) {
    auto log = store::EventLog::Open(*db_);
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    auto w = Webhooks::Open(*log_, std::move(options));
    ASSERT_TRUE(w) << w.error().ToString();
    webhooks_ = std::move(w).value();
    auto st = webhooks_->Start();
    ASSERT_TRUE(st) << st.error().ToString();
  }
  void Close() {
    webhooks_.reset();
    log_.reset();
  }

  CreatedSubscription MustCreate(NewSubscription request) {
    auto created = webhooks_->Create(std::move(request), kAlice);
    EXPECT_TRUE(created) << created.error().ToString();
    return created ? std::move(created).value() : CreatedSubscription{};
  }

  store::Event MustAppend(std::string type, std::string project = "") {
    auto e = log_->Append({.type = std::move(type),
                           .subject_kind = "thing",
                           .subject_id = "t1",
                           .actor = "bob",
                           .project = std::move(project),
                           .data = {{"n", 1}}});
    EXPECT_TRUE(e) << e.error().ToString();
    return e ? std::move(e).value() : store::Event{};
  }

  std::vector<Delivery> Deliveries(const SubscriptionId& id) {
    auto list = webhooks_->ListDeliveries(id, {.limit = 1000});
    EXPECT_TRUE(list) << list.error().ToString();
    return list ? std::move(list).value() : std::vector<Delivery>{};
  }

  // Waits until `id` has a delivery for `seq` in `status`; returns it with
  // its attempts.
  std::optional<Delivery> WaitForDelivery(const SubscriptionId& id, int64_t seq,
                                          DeliveryStatus status) {
    std::optional<Delivery> found;
    WaitFor([&] {
      for (const auto& d : Deliveries(id)) {
        if (d.event_seq == seq && d.status == status) {
          auto full = webhooks_->GetDelivery(id, d.id);
          if (full)
            found = std::move(full).value();
          return true;
        }
      }
      return false;
    });
    return found;
  }

  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<Webhooks> webhooks_;
};

}  // namespace kervan::webhooks::testing
