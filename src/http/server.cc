// Server: accept loop, per-connection coroutines, middleware, SSE framing
// and graceful shutdown.
//
// Threading: one io_context per I/O thread (not one io_context run by N
// threads). The acceptor hands each new socket to the next context round-
// robin and the connection lives on that one thread for its whole life, so
// its state needs no locks or strands and its coroutine never migrates
// between cores. Blocking handlers hop to the worker pool and back (Offload).
#include <condition_variable>
#include <ctime>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/stream.h"
#include "http/stream_channel.h"
#include "http/wire.h"

namespace kervan::http {
namespace {

using tcp = asio::ip::tcp;
namespace bhttp = beast::http;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

constexpr size_t kReadChunk = size_t{8} * 1024;
constexpr uint32_t kHeaderLimit = 16 * 1024;
// Lingering close after an unread body: at most this long, this many bytes.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = size_t{4} << 20;
// After the grace period, how long closed connections get to unwind.
constexpr auto kForceCloseWait = std::chrono::milliseconds(200);

auto Redirect(ErrorCode& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

// Method label for metrics: bounded to the methods routes can declare.
std::string_view MethodLabel(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET",    "HEAD",    "POST",  "PUT",
                                                "DELETE", "OPTIONS", "PATCH", "TRACE"};
  for (std::string_view m : kKnown) {
    if (m == method)
      return m;
  }
  return "other";
}

std::string_view ReasonPhrase(int status) {
  std::string_view reason =
      ToStd(bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status))));
  return reason.empty() || reason.front() == '<' ? std::string_view("Unknown") : reason;
}

// "Date: <IMF-fixdate>\r\n", formatted at most once a second per thread.
std::string_view DateHeader() {
  thread_local std::time_t cached = -1;
  thread_local char buf[64];
  thread_local size_t len = 0;
  std::time_t now = std::time(nullptr);
  if (now != cached) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    len = std::strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    cached = now;
  }
  return {buf, len};
}

bool SafeHeaderText(std::string_view text) {
  return text.find_first_of("\r\n") == std::string_view::npos;
}

Response TransportError(int status, std::string_view code, std::string_view message,
                        std::string_view request_id) {
  Response r;
  r.status = status;
  r.body = wire::ErrorEnvelope(code, message, {}, nullptr, request_id);
  return r;
}

// The statuses whose counters are cached per route; others take the
// registry's lock.
constexpr int kCachedStatuses[] = {200, 201, 202, 204, 400, 401, 403, 404,
                                   405, 409, 413, 429, 500, 503, 504};
constexpr size_t kNumCachedStatuses = std::size(kCachedStatuses);

int CachedStatusSlot(int status) {
  for (size_t i = 0; i < kNumCachedStatuses; ++i) {
    if (kCachedStatuses[i] == status)
      return static_cast<int>(i);
  }
  return -1;
}

// Metric children for one (method, route) label pair, resolved once.
class RouteStats {
 public:
  RouteStats(std::string method, std::string route, core::Family<core::Counter>* requests,
             core::Family<core::Histogram>* durations)
      : method_(std::move(method)),
        route_(std::move(route)),
        requests_(requests),
        duration_(&durations->With({method_, route_})) {}

  void Record(int status, Clock::duration elapsed, bool observe_duration) {
    Requests(status).Inc();
    if (observe_duration)
      duration_->Observe(std::chrono::duration<double>(elapsed).count());
  }

 private:
  core::Counter& Requests(int status) {
    int slot = CachedStatusSlot(status);
    if (slot < 0)
      return requests_->With({method_, route_, std::to_string(status)});
    core::Counter* c = by_status_[slot].load(std::memory_order_acquire);
    if (c == nullptr) {
      c = &requests_->With({method_, route_, std::to_string(status)});
      by_status_[slot].store(c, std::memory_order_release);
    }
    return *c;
  }

  const std::string method_;
  const std::string route_;
  core::Family<core::Counter>* requests_;
  core::Histogram* duration_;
  std::array<std::atomic<core::Counter*>, kNumCachedStatuses> by_status_{};
};

enum class ConnState { kIdle, kReading, kHandling, kStreaming };

class Connection;

// Runs a callable when the scope ends, including when a forced stop destroys
// a suspended coroutine frame.
template <typename Fn>
class ScopeExit {
 public:
  explicit ScopeExit(Fn fn) : fn_(std::move(fn)) {}
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;
  ~ScopeExit() { fn_(); }

 private:
  Fn fn_;
};

}  // namespace

class Server::Impl {
 public:
  Impl(ServerOptions options, std::shared_ptr<const Router> router);
  ~Impl();

  core::Status Start();
  void Shutdown(std::chrono::milliseconds grace);
  void Wait();
  uint16_t port() const { return port_.load(); }

  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

 private:
  enum class Phase { kNew, kRunning, kStopping, kStopped };

  void Unregister(Connection* c);

  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Session(std::shared_ptr<Connection> c);
  asio::awaitable<void> Serve(Connection& c);
  // Reads one request into `parser`. On failure returns the error; a
  // response worth sending (400/413/431) is left in *reply.
  asio::awaitable<ErrorCode> ReadRequest(Connection& c,
                                         bhttp::request_parser<bhttp::string_body>& parser,
                                         std::optional<Response>* reply);
  // Serves one request; returns whether the connection may take another.
  asio::awaitable<bool> Handle(Connection& c, bhttp::request<bhttp::string_body>&& msg,
                               Clock::time_point start);
  asio::awaitable<void> ServeStream(Connection& c, Request& req, const StreamRoute& route,
                                    RouteStats* stats, Clock::time_point start);
  asio::awaitable<bool> WriteResponse(Connection& c, const Response& r, bool keep_alive,
                                      std::string_view request_id, unsigned version,
                                      bool head_only);
  // Answers a request that could not be read (`reply` from ReadRequest)
  // and closes the connection.
  asio::awaitable<void> Reject(Connection& c,
                               const bhttp::request_parser<bhttp::string_body>& parser,
                               Response reply, Clock::time_point start);
  // After answering a request whose body was not read: stop sending, then
  // discard what the client still sends for a moment, so that closing with
  // unread data does not reset the connection before the client has read
  // the answer.
  asio::awaitable<void> LingeringClose(Connection& c);
  Response Invoke(const Route& route, const Request& req);
  // Offers the request to route.start (on this I/O thread); resumes with
  // its answer, or with nullopt when it declined.
  asio::awaitable<std::optional<Response>> Start(const Route& route, const Request& req);
  // A started request was answered (or declined): one less to wait for.
  void EndStart();
  // The body limit of the route a request head is for.
  size_t BodyLimitFor(const bhttp::request<bhttp::string_body>& head) const;
  void Finish(RouteStats* stats, const Request& req, std::string_view method, int status,
              Clock::time_point start, bool observe_duration);

  const ServerOptions options_;
  const std::shared_ptr<const Router> router_;

  core::Family<core::Counter>* requests_;
  core::Family<core::Histogram>* durations_;
  core::Gauge* open_connections_;
  core::Gauge* open_streams_;
  std::vector<std::unique_ptr<RouteStats>> route_stats_;  // by route index
  // The parser starts with the largest body limit of any route and narrows
  // it to the matched route's once the head is in (only when some route has
  // a limit of its own).
  size_t largest_body_limit_ = 0;
  bool route_body_limits_ = false;
  std::map<std::string, std::unique_ptr<RouteStats>, std::less<>> unmatched_stats_;

  std::atomic<bool> stopping_{false};
  std::atomic<uint16_t> port_{0};
  // Requests taken by a route's `start` and not answered yet: Shutdown
  // waits for them before it stops the contexts their answers are posted to.
  std::atomic<int64_t> started_{0};

  // Declared before the contexts: connections unregister while the
  // contexts destroy coroutine frames left behind by a forced stop.
  std::mutex mu_;
  std::condition_variable cv_;
  Phase phase_ = Phase::kNew;                                       // GUARDED_BY(mu_)
  std::map<Connection*, std::shared_ptr<Connection>> connections_;  // GUARDED_BY(mu_)

  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  // Declared after the contexts so they go first: both hold work that
  // resumes on a context.
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::vector<std::thread> threads_;
  size_t next_context_ = 0;  // used only by the accept loop
};

namespace {

// One accepted socket. Lives on one io_context; every member is touched only
// from that context's thread, except where noted.
class Connection final : public detail::StreamChannel,
                         public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, const ServerOptions& options, const std::atomic<bool>& stopping)
      : stream(std::move(socket)), options_(options), server_stopping_(stopping) {}

  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  ConnState state = ConnState::kIdle;

  // Posted by Shutdown(): ends what can end now; a request being read or
  // handled finishes and is answered with Connection: close.
  void BeginClose() {
    ErrorCode ec;
    if (state == ConnState::kIdle)
      stream.socket().cancel(ec);
    if (state == ConnState::kStreaming)
      MarkClosed();
  }

  // Posted by Shutdown() after the grace period.
  void ForceClose() {
    MarkClosed();
    ErrorCode ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
  }

  // --- SSE (StreamChannel) ---

  void BeginStream(std::string head) {
    state = ConnState::kStreaming;
    stream_head_ = std::move(head);
    stream_open_ = !server_stopping_.load(std::memory_order_acquire);
  }

  bool head_sent() const { return head_sent_; }
  const std::optional<core::Error>& failure() const { return failure_; }

  asio::awaitable<bool> Write(std::string text) override {
    if (!stream_open_ || failure_)
      co_return false;
    std::string out;
    if (!head_sent_) {
      head_sent_ = true;
      out = std::move(stream_head_);
      // Learn about a client that goes away while the handler waits.
      asio::co_spawn(stream.get_executor(), WatchDisconnect(shared_from_this()), asio::detached);
    }
    if (!text.empty()) {
      out += fmt::format("{:x}\r\n", text.size());
      out += text;
      out += "\r\n";
    }
    if (out.empty())
      co_return true;
    stream.expires_after(options_.read_timeout);
    ErrorCode ec;
    co_await asio::async_write(stream, asio::buffer(out), Redirect(ec));
    if (ec) {
      MarkClosed();
      co_return false;
    }
    co_return stream_open_;
  }

  bool open() const override { return stream_open_ && !failure_; }
  AsyncSignal& closed_signal() override { return closed_; }
  void Fail(const core::Error& error) override {
    if (!head_sent_)
      failure_ = error;
  }

  void MarkClosed() {
    if (!stream_open_)
      return;
    stream_open_ = false;
    closed_.Notify();
  }

  void EndStream() { MarkClosed(); }

 private:
  static asio::awaitable<void> WatchDisconnect(std::shared_ptr<Connection> self) {
    char sink[512];
    for (;;) {
      // The raw socket, not the tcp_stream: this read must not be subject to
      // (or disturb) the write timeouts.
      ErrorCode ec;
      co_await self->stream.socket().async_read_some(asio::buffer(sink), Redirect(ec));
      if (ec) {
        self->MarkClosed();
        co_return;
      }
    }
  }

  const ServerOptions& options_;
  const std::atomic<bool>& server_stopping_;
  std::string stream_head_;
  bool stream_open_ = false;
  bool head_sent_ = false;
  std::optional<core::Error> failure_;
  AsyncSignal closed_;
};

}  // namespace

Server::Impl::Impl(ServerOptions options, std::shared_ptr<const Router> router)
    : options_(std::move(options)), router_(std::move(router)) {
  auto& metrics = core::GlobalMetrics();
  requests_ = &metrics.AddCounter("kervan_http_requests_total",
                                  "HTTP requests answered, by method, route pattern and status.",
                                  {"method", "route", "status"});
  durations_ = &metrics.AddHistogram(
      "kervan_http_request_duration_seconds",
      "Time from a request's first byte to its response written, by method and route pattern.",
      core::LatencyBuckets(), {"method", "route"});
  open_connections_ =
      &metrics.AddGauge("kervan_http_open_connections", "Open HTTP connections.").With({});
  open_streams_ =
      &metrics.AddGauge("kervan_http_open_streams", "Open Server-Sent Events streams.").With({});
  largest_body_limit_ = options_.max_body_bytes;
  for (const RouteInfo& info : router_->Routes()) {
    route_stats_.push_back(
        std::make_unique<RouteStats>(info.method, info.pattern, requests_, durations_));
    if (info.max_body_bytes != 0 && info.max_body_bytes != options_.max_body_bytes) {
      route_body_limits_ = true;
      largest_body_limit_ = std::max(largest_body_limit_, info.max_body_bytes);
    }
  }
  for (std::string_view m :
       {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "other"}) {
    unmatched_stats_.emplace(
        m, std::make_unique<RouteStats>(std::string(m), "unmatched", requests_, durations_));
  }
}

Server::Impl::~Impl() {
  Shutdown(std::chrono::milliseconds(0));
  // Everything that owns a socket or resumes on a context goes before the
  // contexts: the pool (queued work it dropped holds coroutine frames), the
  // acceptor, and connections whose session never got to run.
  pool_.reset();
  acceptor_.reset();
  std::map<Connection*, std::shared_ptr<Connection>> left;
  {
    std::lock_guard lock(mu_);
    left.swap(connections_);
  }
  left.clear();
  work_.clear();
  contexts_.clear();
}

core::Status Server::Impl::Start() {
  std::lock_guard lock(mu_);
  if (phase_ != Phase::kNew)
    return core::FailedPrecondition("server was already started");
  const std::string where = fmt::format("{}:{}", options_.address, options_.port);
  const int io_threads = std::max(1, options_.io_threads);
  for (int i = 0; i < io_threads; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    work_.push_back(asio::make_work_guard(*contexts_.back()));
  }

  // Leaves the server as new, so Start() may be tried again.
  auto fail = [&](std::string_view reason) {
    work_.clear();
    contexts_.clear();
    return core::Unavailable(fmt::format("cannot listen on {}: {}", where, reason));
  };
  ErrorCode ec;
  tcp::endpoint endpoint;
  {
    tcp::resolver resolver(*contexts_[0]);
    auto endpoints = resolver.resolve(options_.address, std::to_string(options_.port),
                                      tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec)
      return fail(ec.message());
    if (endpoints.empty())
      return fail("the address did not resolve");
    endpoint = endpoints.begin()->endpoint();
  }
  {
    auto acceptor = std::make_unique<tcp::acceptor>(*contexts_[0]);
    if (acceptor->open(endpoint.protocol(), ec) ||
        acceptor->set_option(asio::socket_base::reuse_address(true), ec) ||
        acceptor->bind(endpoint, ec) ||
        acceptor->listen(asio::socket_base::max_listen_connections, ec)) {
      acceptor.reset();
      return fail(ec.message());
    }
    port_ = acceptor->local_endpoint().port();
    acceptor_ = std::move(acceptor);
  }

  pool_ = std::make_unique<asio::thread_pool>(
      static_cast<size_t>(std::max(1, options_.worker_threads)));
  asio::co_spawn(*contexts_[0], AcceptLoop(), asio::detached);
  for (auto& ctx : contexts_) {
    threads_.emplace_back([ctx = ctx.get()] {
      for (;;) {
        try {
          ctx->run();
          return;
        } catch (const std::exception& e) {
          // A handler that escaped every catch: log it and keep serving.
          core::LogError(
              "uncaught exception on an HTTP I/O thread",
              {{"event.action", "http.io_thread_exception"}, {"error.message", e.what()}});
        }
      }
    });
  }
  phase_ = Phase::kRunning;
  core::LogInfo(fmt::format("HTTP server listening on {}:{}", options_.address, port_.load()),
                {{"event.action", "http.server_started"},
                 {"server.address", options_.address},
                 {"server.port", port_.load()},
                 {"kervan.io_threads", io_threads},
                 {"kervan.worker_threads", options_.worker_threads}});
  return core::Ok();
}

asio::awaitable<void> Server::Impl::AcceptLoop() {
  for (;;) {
    asio::io_context& ctx = *contexts_[next_context_++ % contexts_.size()];
    ErrorCode ec;
    tcp::socket socket = co_await acceptor_->async_accept(ctx, Redirect(ec));
    if (ec) {
      if (stopping() || ec == asio::error::operation_aborted || !acceptor_->is_open())
        co_return;
      // Out of descriptors and the like: back off instead of spinning.
      core::LogWarn("accept failed",
                    {{"event.action", "http.accept_failed"}, {"error.message", ec.message()}});
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await pause.async_wait(Redirect(ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Connection>(std::move(socket), options_, stopping_);
    {
      std::lock_guard lock(mu_);
      if (stopping())
        continue;  // closes the socket
      connections_.emplace(conn.get(), conn);
    }
    open_connections_->Add(1);
    asio::co_spawn(ctx, Session(std::move(conn)), asio::detached);
  }
}

void Server::Impl::Unregister(Connection* c) {
  open_connections_->Add(-1);
  std::lock_guard lock(mu_);
  connections_.erase(c);
  if (connections_.empty())
    cv_.notify_all();
}

asio::awaitable<void> Server::Impl::Session(std::shared_ptr<Connection> c) {
  ScopeExit unregister([this, raw = c.get()] { Unregister(raw); });
  try {
    co_await Serve(*c);
  } catch (const std::exception& e) {
    core::LogError("HTTP connection failed",
                   {{"event.action", "http.connection_failed"}, {"error.message", e.what()}});
  }
  c->EndStream();
  ErrorCode ec;
  c->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  c->stream.socket().close(ec);
}

asio::awaitable<void> Server::Impl::Serve(Connection& c) {
  for (;;) {
    if (stopping())
      co_return;
    if (c.buffer.size() == 0) {
      // Between requests: wait up to idle_timeout for the next one.
      c.state = ConnState::kIdle;
      c.stream.expires_after(options_.idle_timeout);
      ErrorCode ec;
      size_t n = co_await c.stream.async_read_some(c.buffer.prepare(kReadChunk), Redirect(ec));
      if (ec)
        co_return;
      c.buffer.commit(n);
    }
    c.state = ConnState::kReading;
    const Clock::time_point start = Clock::now();
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(largest_body_limit_);
    c.stream.expires_after(options_.read_timeout);
    std::optional<Response> reply;
    ErrorCode ec = co_await ReadRequest(c, parser, &reply);
    if (ec) {
      if (reply)
        co_await Reject(c, parser, std::move(*reply), start);
      co_return;
    }
    c.state = ConnState::kHandling;
    if (!co_await Handle(c, parser.release(), start))
      co_return;
  }
}

asio::awaitable<void> Server::Impl::Reject(Connection& c,
                                           const bhttp::request_parser<bhttp::string_body>& parser,
                                           Response reply, Clock::time_point start) {
  Request req;
  if (parser.is_header_done()) {
    const auto& head = parser.get();
    req.method = std::string(ToStd(head.method_string()));
    std::string_view target = ToStd(head.target());
    req.path = std::string(target.substr(0, target.find('?')));
    req.request_id = std::string(ToStd(head["X-Request-Id"]));
  }
  if (!wire::ValidRequestId(req.request_id))
    req.request_id = core::NewUuidV7();
  wire::AppendRequestId(reply.body, req.request_id);
  // Counted before the write, so a client that has its answer can already see
  // it in /metrics (duration is time to a ready response).
  Finish(nullptr, req, req.method, reply.status, start, true);
  co_await WriteResponse(c, reply, /*keep_alive=*/false, req.request_id, 11, false);
  co_await LingeringClose(c);
}

asio::awaitable<ErrorCode> Server::Impl::ReadRequest(
    Connection& c, bhttp::request_parser<bhttp::string_body>& parser,
    std::optional<Response>* reply) {
  ErrorCode ec;
  bool header_seen = false;
  for (;;) {
    if (c.buffer.size() > 0) {
      size_t used = parser.put(c.buffer.data(), ec);
      c.buffer.consume(used);
      if (ec == bhttp::error::need_more) {
        ec = {};
      } else if (ec) {
        break;
      } else {
        if (parser.is_done())
          co_return ec;
        if (parser.is_header_done() && !header_seen) {
          header_seen = true;
          if (route_body_limits_ && (parser.content_length() || parser.chunked())) {
            // Before any body byte is parsed, so the parser may take it.
            const size_t limit = BodyLimitFor(parser.get());
            parser.body_limit(limit);
            auto length = parser.content_length();
            if (length && *length > limit) {
              ec = bhttp::error::body_limit;
              break;
            }
          }
          parser.eager(true);
          // curl and others wait for this before sending a large body.
          auto expect = parser.get().find(bhttp::field::expect);
          if (expect != parser.get().end() &&
              wire::EqualsIgnoreCase(ToStd(expect->value()), "100-continue")) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            co_await asio::async_write(c.stream, asio::buffer(kContinue), Redirect(ec));
            if (ec)
              co_return ec;
          }
          continue;
        }
        if (used > 0)
          continue;
      }
    }
    size_t n = co_await c.stream.async_read_some(c.buffer.prepare(kReadChunk), Redirect(ec));
    if (ec)
      co_return ec;  // timeout, reset, or a request cut short: nothing to answer
    c.buffer.commit(n);
  }
  if (ec == bhttp::error::body_limit) {
    const size_t limit = route_body_limits_ ? BodyLimitFor(parser.get()) : options_.max_body_bytes;
    *reply = TransportError(413, "payload_too_large",
                            fmt::format("request body exceeds the limit of {} bytes", limit), {});
  } else if (ec == bhttp::error::header_limit) {
    *reply = TransportError(
        431, "header_too_large",
        fmt::format("request header exceeds the limit of {} bytes", kHeaderLimit), {});
  } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category()) {
    *reply = TransportError(400, "invalid_argument",
                            fmt::format("malformed HTTP request: {}", ec.message()), {});
  }
  co_return ec;
}

asio::awaitable<void> Server::Impl::LingeringClose(Connection& c) {
  c.state = ConnState::kIdle;  // Shutdown() may cut this short
  ErrorCode ec;
  c.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec)
    co_return;
  const auto deadline = Clock::now() + kLingerTime;
  size_t discarded = 0;
  while (discarded < kLingerBytes && Clock::now() < deadline) {
    c.buffer.clear();
    c.stream.expires_at(deadline);
    size_t n = co_await c.stream.async_read_some(c.buffer.prepare(kReadChunk), Redirect(ec));
    if (ec)
      co_return;
    discarded += n;
  }
}

size_t Server::Impl::BodyLimitFor(const bhttp::request<bhttp::string_body>& head) const {
  std::string_view target = ToStd(head.target());
  return router_->BodyLimit(ToStd(head.method_string()), target.substr(0, target.find('?')),
                            options_.max_body_bytes);
}

Response Server::Impl::Invoke(const Route& route, const Request& req) {
  try {
    return route.handler(req);
  } catch (const std::exception& e) {
    core::LogError("HTTP handler threw", {{"event.action", "http.handler_failed"},
                                          {"error.message", e.what()},
                                          {"http.request.method", req.method},
                                          {"url.path", req.path},
                                          {"trace.id", req.request_id}});
  } catch (...) {
    core::LogError("HTTP handler threw a non-exception", {{"event.action", "http.handler_failed"},
                                                          {"url.path", req.path},
                                                          {"trace.id", req.request_id}});
  }
  return TransportError(
      500, "internal",
      fmt::format("internal error; the server log has details under request id {}", req.request_id),
      {});
}

asio::awaitable<std::optional<Response>> Server::Impl::Start(const Route& route,
                                                             const Request& req) {
  auto initiate = [this, &route, &req](auto handler) {
    using Handler = decltype(handler);
    using Executor = asio::associated_executor_t<Handler>;
    struct Pending {
      Pending(Handler h, Executor e) : handler(std::move(h)), executor(std::move(e)) {}
      std::atomic<bool> settled{false};
      Handler handler;
      Executor executor;
    };
    Executor executor = asio::get_associated_executor(handler);
    auto pending = std::make_shared<Pending>(std::move(handler), std::move(executor));
    // The first answer wins; the coroutine resumes on its own thread. The
    // handler (which owns the coroutine) moves into the posted operation,
    // so it lives and dies with its context: a copy of `respond` kept
    // after the server is gone holds only a moved-from one.
    auto settle = [this, pending](std::optional<Response> answer) {
      if (pending->settled.exchange(true, std::memory_order_acq_rel))
        return;
      asio::post(pending->executor,
                 [handler = std::move(pending->handler), answer = std::move(answer)]() mutable {
                   std::move(handler)(std::move(answer));
                 });
      EndStart();
    };
    started_.fetch_add(1, std::memory_order_relaxed);
    bool taken = false;
    try {
      taken = route.start(req, [settle](Response r) { settle(std::move(r)); });
    } catch (const std::exception& e) {
      core::LogError("HTTP start threw; the handler serves the request",
                     {{"event.action", "http.handler_failed"},
                      {"error.message", e.what()},
                      {"url.path", req.path},
                      {"trace.id", req.request_id}});
    }
    if (!taken)
      settle(std::nullopt);
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                          void(std::optional<Response>)>(std::move(initiate),
                                                                         asio::use_awaitable);
}

void Server::Impl::EndStart() {
  if (started_.fetch_sub(1, std::memory_order_acq_rel) == 1 && stopping()) {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }
}

asio::awaitable<bool> Server::Impl::Handle(Connection& c, bhttp::request<bhttp::string_body>&& msg,
                                           Clock::time_point start) {
  const bool keep_alive = msg.keep_alive();
  const unsigned version = msg.version();
  Request req;
  req.method = std::string(ToStd(msg.method_string()));
  std::string_view target = ToStd(msg.target());
  size_t qmark = target.find('?');
  req.path = std::string(target.substr(0, qmark));
  if (qmark != std::string_view::npos) {
    req.query_string = std::string(target.substr(qmark + 1));
    wire::ParseQuery(req.query_string, &req.query);
  }
  req.headers.reserve(16);
  std::string_view incoming_id;
  for (const auto& field : msg) {
    std::string_view name = ToStd(field.name_string());
    if (wire::EqualsIgnoreCase(name, "X-Request-Id"))
      incoming_id = ToStd(field.value());
    req.headers.emplace_back(name, ToStd(field.value()));
  }
  req.request_id = wire::ValidRequestId(incoming_id) ? std::string(incoming_id) : core::NewUuidV7();
  req.actor = "anonymous";
  req.body = std::move(msg.body());

  RouteMatch match = router_->Match(req.method, req.path);
  RouteStats* stats = nullptr;
  if (match.index >= 0) {
    req.route = *match.pattern;
    req.params = std::move(match.params);
    // A HEAD served by a GET route is counted under its own method label.
    const std::string& route_method = match.route ? match.route->method : match.stream->method;
    if (route_method == req.method)
      stats = route_stats_[static_cast<size_t>(match.index)].get();
  }
  core::Status allowed = core::Ok();
  if (match.index >= 0 && options_.access_guard) {
    allowed =
        match.route != nullptr
            ? options_.access_guard(req, match.route->permission, match.route->public_route)
            : options_.access_guard(req, match.stream->permission, match.stream->public_route);
  }
  if (match.stream != nullptr && allowed) {
    co_await ServeStream(c, req, *match.stream, stats, start);
    co_return false;
  }

  Response resp;
  if (!allowed) {
    resp = match.route != nullptr && match.route->error_response
               ? match.route->error_response(allowed.error())
               : Response::FromError(allowed.error());
    if (allowed.error().code == core::ErrorCode::kUnauthenticated)
      resp.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"kervan\"");
  } else if (match.route == nullptr) {
    if (!req.path.empty() && req.path[0] != '/') {
      resp =
          TransportError(400, "invalid_argument",
                         "malformed HTTP request: the target must start with '/'", req.request_id);
    } else if (match.allow.empty()) {
      resp =
          TransportError(404, "not_found", fmt::format("no route for {} {}", req.method, req.path),
                         req.request_id);
    } else {
      resp = TransportError(405, "method_not_allowed",
                            fmt::format("method {} is not allowed on {}; allowed: {}", req.method,
                                        req.path, match.allow),
                            req.request_id);
      resp.headers.emplace_back("Allow", match.allow);
    }
  } else if (match.route->blocking && match.route->start) {
    std::optional<Response> answer = co_await Start(*match.route, req);
    if (answer) {
      resp = std::move(*answer);
    } else {
      const Route* route = match.route;
      resp = co_await Offload(*pool_, [this, route, &req] { return Invoke(*route, req); });
    }
  } else if (match.route->blocking &&
             !(match.route->run_inline_when && match.route->run_inline_when(req))) {
    const Route* route = match.route;
    resp = co_await Offload(*pool_, [this, route, &req] { return Invoke(*route, req); });
  } else {
    resp = Invoke(*match.route, req);
  }
  if (resp.error_envelope)
    wire::AppendRequestId(resp.body, req.request_id);

  const bool keep = keep_alive && !stopping();
  // Counted before the write, so a client that has its answer can already see
  // it in /metrics (duration is time to a ready response).
  Finish(stats, req, req.method, resp.status, start, true);
  const bool ok =
      co_await WriteResponse(c, resp, keep, req.request_id, version, req.method == "HEAD");
  co_return keep&& ok;
}

asio::awaitable<bool> Server::Impl::WriteResponse(Connection& c, const Response& r, bool keep_alive,
                                                  std::string_view request_id, unsigned version,
                                                  bool head_only) {
  const bool no_body = r.status < 200 || r.status == 204 || r.status == 304;
  std::string head;
  head.reserve(192 + r.content_type.size());
  head += "HTTP/1.1 ";
  head += std::to_string(r.status);
  head += ' ';
  head += ReasonPhrase(r.status);
  head += "\r\n";
  if (!no_body) {
    head += "Content-Type: ";
    head += SafeHeaderText(r.content_type) ? std::string_view(r.content_type)
                                           : std::string_view("application/octet-stream");
    head += "\r\nContent-Length: ";
    head += std::to_string(r.body.size());
    head += "\r\n";
  }
  head += "X-Request-Id: ";
  head += request_id;
  head += "\r\n";
  head += DateHeader();
  for (const auto& [name, value] : r.headers) {
    if (name.empty() || !SafeHeaderText(name) || !SafeHeaderText(value))
      continue;
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  if (!keep_alive) {
    head += "Connection: close\r\n";
  } else if (version == 10) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";

  c.stream.expires_after(options_.read_timeout);
  ErrorCode ec;
  if (no_body || head_only || r.body.empty()) {
    co_await asio::async_write(c.stream, asio::buffer(head), Redirect(ec));
  } else {
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::buffer(r.body)};
    co_await asio::async_write(c.stream, buffers, Redirect(ec));
  }
  co_return !ec;
}

asio::awaitable<void> Server::Impl::ServeStream(Connection& c, Request& req,
                                                const StreamRoute& route, RouteStats* stats,
                                                Clock::time_point start) {
  std::string head = "HTTP/1.1 200 OK\r\n";
  head += "Content-Type: text/event-stream\r\n";
  head += "Cache-Control: no-cache\r\n";
  head += "Transfer-Encoding: chunked\r\n";
  head += "Connection: close\r\n";
  head += "X-Accel-Buffering: no\r\n";  // proxies must not buffer the stream
  head += "X-Request-Id: " + req.request_id + "\r\n";
  head += DateHeader();
  head += "\r\n";
  c.BeginStream(std::move(head));
  open_streams_->Add(1);
  {
    SseStream sse(c);
    try {
      co_await route.handler(req, sse);
    } catch (const std::exception& e) {
      core::LogError("SSE handler threw", {{"event.action", "http.handler_failed"},
                                           {"error.message", e.what()},
                                           {"url.path", req.path},
                                           {"trace.id", req.request_id}});
      if (!c.head_sent())
        c.Fail(core::Internal("internal error"));
    }
  }
  open_streams_->Add(-1);
  int status = 200;
  if (!c.head_sent() && c.failure()) {
    Response resp = Response::FromError(*c.failure());
    wire::AppendRequestId(resp.body, req.request_id);
    status = resp.status;
    co_await WriteResponse(c, resp, false, req.request_id, 11, false);
  } else {
    co_await c.Write({});  // the head, if the handler never wrote
    if (c.head_sent() && c.stream.socket().is_open()) {
      // The last chunk tells the client the stream ended on purpose.
      static constexpr std::string_view kLastChunk = "0\r\n\r\n";
      ErrorCode ec;
      c.stream.expires_after(std::chrono::seconds(1));
      co_await asio::async_write(c.stream, asio::buffer(kLastChunk), Redirect(ec));
    }
  }
  c.EndStream();
  // A stream's length says nothing about latency: count it, don't time it.
  Finish(stats, req, req.method, status, start, false);
}

void Server::Impl::Finish(RouteStats* stats, const Request& req, std::string_view method,
                          int status, Clock::time_point start, bool observe_duration) {
  const Clock::duration elapsed = Clock::now() - start;
  if (stats == nullptr) {
    std::string_view label = MethodLabel(method);
    if (!req.route.empty()) {
      requests_->With({std::string(label), req.route, std::to_string(status)}).Inc();
      if (observe_duration) {
        durations_->With({std::string(label), req.route})
            .Observe(std::chrono::duration<double>(elapsed).count());
      }
    } else {
      unmatched_stats_.find(label)->second->Record(status, elapsed, observe_duration);
    }
  } else {
    stats->Record(status, elapsed, observe_duration);
  }
  if (!options_.access_log)
    return;
  core::LogInfo(
      fmt::format("{} {} {}", method, req.path, status),
      {{"event.action", "http.request"},
       {"http.request.method", method},
       {"url.path", req.path},
       {"http.response.status_code", status},
       {"event.duration", std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()},
       {"trace.id", req.request_id},
       {"user.name", req.actor},
       {"kervan.route", req.route.empty() ? std::string("unmatched") : req.route}});
}

void Server::Impl::Shutdown(std::chrono::milliseconds grace) {
  {
    std::unique_lock lock(mu_);
    if (phase_ == Phase::kNew) {
      phase_ = Phase::kStopped;
      cv_.notify_all();
      return;
    }
    if (phase_ != Phase::kRunning) {
      cv_.wait(lock, [&] { return phase_ == Phase::kStopped; });
      return;
    }
    phase_ = Phase::kStopping;
    stopping_.store(true, std::memory_order_release);
  }
  const auto deadline = Clock::now() + grace;
  asio::post(acceptor_->get_executor(), [this] {
    ErrorCode ec;
    acceptor_->close(ec);
  });

  auto post_to_all = [&](auto fn) {
    std::lock_guard lock(mu_);
    for (const auto& [raw, conn] : connections_) {
      asio::post(conn->stream.get_executor(), [conn = conn, fn] { fn(*conn); });
    }
  };
  post_to_all([](Connection& c) { c.BeginClose(); });
  bool drained = false;
  {
    std::unique_lock lock(mu_);
    drained = cv_.wait_until(lock, deadline, [&] { return connections_.empty(); });
  }
  if (!drained) {
    post_to_all([](Connection& c) { c.ForceClose(); });
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kForceCloseWait, [&] { return connections_.empty(); });
  }

  for (auto& w : work_)
    w.reset();
  for (auto& ctx : contexts_)
    ctx->stop();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  // Queued blocking work is dropped; work already running is waited for.
  pool_->stop();
  pool_->join();
  // So are the answers of started requests: they are posted to the
  // contexts, which must still exist then.
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return started_.load(std::memory_order_acquire) == 0; });
  }
  core::LogInfo("HTTP server stopped",
                {{"event.action", "http.server_stopped"}, {"server.port", port_.load()}});
  std::lock_guard lock(mu_);
  phase_ = Phase::kStopped;
  cv_.notify_all();
}

void Server::Impl::Wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return phase_ == Phase::kStopped; });
}

Server::Server(ServerOptions options, std::shared_ptr<const Router> router)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router))) {}
Server::~Server() = default;
core::Status Server::Start() {
  return impl_->Start();
}
uint16_t Server::port() const {
  return impl_->port();
}
void Server::Shutdown(std::chrono::milliseconds grace) {
  impl_->Shutdown(grace);
}
void Server::Wait() {
  impl_->Wait();
}

}  // namespace kervan::http
