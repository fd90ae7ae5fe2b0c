// Shared helpers for the http tests: a server on an ephemeral port and a
// raw-socket client for what http::Client deliberately cannot do
// (keep-alive, malformed requests, partial sends).
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "core/log.h"
#include "http/asio.h"
#include "http/http.h"

namespace kervan::http::testing {

// Server start/stop lines at info would drown the test output.
inline const bool kQuietLogs = (core::SetLogLevel(core::LogLevel::kWarn), true);

inline ServerOptions TestOptions() {
  ServerOptions options;
  options.address = "127.0.0.1";
  options.port = 0;
  options.io_threads = 2;
  options.worker_threads = 2;
  options.access_log = false;
  return options;
}

// Starts a server for `router`; fails the test if it cannot.
inline std::unique_ptr<Server> StartServer(Router router, ServerOptions options = TestOptions()) {
  auto server =
      std::make_unique<Server>(options, std::make_shared<const Router>(std::move(router)));
  core::Status started = server->Start();
  EXPECT_TRUE(started) << (started ? "" : started.error().ToString());
  return server;
}

inline std::string BaseUrl(const Server& server) {
  return "http://127.0.0.1:" + std::to_string(server.port());
}

// A blocking TCP connection speaking raw bytes.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) : socket_(ioc_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }

  void Write(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }

  // Reads one HTTP response (Beast parser) from the connection.
  beast::http::response<beast::http::string_body> ReadResponse() {
    beast::http::response<beast::http::string_body> res;
    beast::http::read(socket_, buffer_, res);
    return res;
  }

  // Reads until the peer closes; returns everything received.
  std::string ReadToEnd() {
    std::string out(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    buffer_.consume(buffer_.size());
    char chunk[4096];
    boost::system::error_code ec;
    for (;;) {
      size_t n = socket_.read_some(asio::buffer(chunk), ec);
      if (ec)
        break;
      out.append(chunk, n);
    }
    return out;
  }

  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  asio::io_context ioc_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
};

inline Route PublicRoute(std::string method, std::string pattern, Handler handler,
                         bool blocking = false) {
  Route r;
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  r.handler = std::move(handler);
  r.blocking = blocking;
  r.public_route = true;
  return r;
}

}  // namespace kervan::http::testing
