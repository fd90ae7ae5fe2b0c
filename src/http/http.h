// http: Kervan's HTTP/1.1 server, router, middleware and client.
//
// Modules describe their endpoints as Routes (method, pattern, handler and
// the permission the route needs) on a Router; app/ hands the finished Router
// to a Server. The server owns the sockets, the I/O threads and a worker pool:
// blocking handlers run on the pool, cheap in-memory ones inline on an I/O
// thread. Every error leaves the server in one JSON envelope whose status
// comes from HttpStatusFor(), the one ErrorCode -> HTTP status mapping.
// Server-Sent Events streams are coroutines (StreamRoute, SseStream) declared
// in http/stream.h, the one part that exposes Boost.Asio: everything else
// here compiles without it (most modules only register plain routes, and
// Asio/Beast cost ~4 s of compile time per translation unit).
// Client is a small synchronous client for the CLI, tests and tools.
//
// http depends only on core (and Boost.Asio/Beast); it must never depend on a
// domain module — modules depend on http to register their routes.
//
// This is the module's public header; http/stream.h adds streaming routes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/result.h"

namespace kervan::http {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// ---------------------------------------------------------------------------
// Requests and responses

struct Request {
  std::string method;                        // "GET"
  std::string path;                          // target without the query, as sent (not decoded)
  std::string query_string;                  // raw text after '?', empty when none
  std::map<std::string, std::string> query;  // percent-decoded; first value of a repeated key
  HeaderList headers;                        // as received; use Header() to look one up
  std::string body;
  std::map<std::string, std::string> params;  // {name} / {name...} values, decoded as Router says
  std::string request_id;                     // X-Request-Id (accepted or generated)
  std::string actor;  // the authenticated caller (set by the access guard), else "anonymous"
  std::string route;  // the matched pattern, e.g. "/api/v1/entities/{kind}/{id}"

  // Value of the first header named `name` (case-insensitive); "" when absent.
  std::string Header(std::string_view name) const;

  // The body parsed as JSON. kInvalidArgument with field "body" when the body
  // is empty or malformed.
  core::Result<core::Json> JsonBody() const;

  // Decoded query value, or `def` when the key is absent.
  std::string QueryOr(const std::string& key, std::string def) const;

  // Every decoded value of a repeated query key (?id=a&id=b), in order.
  std::vector<std::string> QueryAll(std::string_view key) const;

  // Integer query value in [min, max], or `def` when absent. kInvalidArgument
  // naming the parameter otherwise:
  //   query parameter "limit": must be an integer between 1 and 1000, got "abc"
  core::Result<int64_t> QueryInt(const std::string& key, int64_t def, int64_t min,
                                 int64_t max) const;

  // Param value for `name` ("" when the route has no such param).
  const std::string& Param(const std::string& name) const;

  // kInvalidArgument naming the first query parameter not in `allowed`, so
  // a typo ("limt=5") is an error rather than silently ignored.
  core::Status CheckQuery(std::initializer_list<std::string_view> allowed) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HeaderList headers;  // extra headers; names and values must not contain CR or LF
  // Set by FromError(): the server adds "request_id" to the envelope.
  bool error_envelope = false;

  // `value` serialized compactly; invalid UTF-8 is replaced, never thrown.
  static Response Json(int status, const core::Json& value);
  static Response Text(int status, std::string body, std::string content_type = "text/plain");
  // The error envelope with status HttpStatusFor(error.code):
  //   {"error":{"code":"not_found","message":"...","field":"..."(if set),
  //             <every key of error.details>},"request_id":"..."}
  static Response FromError(const core::Error& error);
  // Json(ok_status, value) on success, FromError(error) otherwise.
  static Response FromResult(const core::Result<core::Json>& result, int ok_status = 200);
};

// The one ErrorCode -> HTTP status mapping: invalid_argument 400, not_found
// 404, already_exists / failed_precondition / aborted 409, permission_denied
// 403, unauthenticated 401, resource_exhausted 429, unavailable 503,
// deadline_exceeded 504, internal 500.
int HttpStatusFor(core::ErrorCode code);

// Percent-encodes everything except RFC 3986 unreserved characters, for
// building request targets: "a b/c" -> "a%20b%2Fc".
std::string PercentEncode(std::string_view text);
// Decodes %XX escapes (and '+' as space when `plus_is_space`); a malformed
// escape is kept as is.
std::string PercentDecode(std::string_view text, bool plus_is_space = false);

// ---------------------------------------------------------------------------
// Routing

using Handler = std::function<Response(const Request&)>;
// Answers a request taken by a Route's `start`; see there.
using Respond = std::function<void(Response)>;

struct Route {
  std::string method;  // "GET", "POST", ...
  // Segments separated by '/': literals, {param} (one non-empty segment), and
  // as the LAST segment optionally {param...}: the rest of the path, one or
  // more segments ("/files/{path...}" matches "/files/a/b.txt" with path
  // "a/b.txt"). See Router for how values are decoded.
  std::string pattern;
  Handler handler;
  // true: runs on the worker pool, never on an I/O thread (anything touching
  // a database, a file or a lock held for long). false: a cheap in-memory
  // handler run inline on the I/O thread.
  bool blocking = true;
  std::string permission;     // the permission a caller needs, e.g. "registry.read"
  bool public_route = false;  // true: no permission needed (health probes)
  // Largest request body this route accepts, in bytes; 0 means the server's
  // ServerOptions::max_body_bytes. A larger body is answered 413 (from
  // Content-Length before the body is read, or as soon as a chunked body
  // passes the limit) and the handler never runs.
  size_t max_body_bytes = 0;
  // How the access guard's refusal (401/403) is written for this route;
  // unset: Kervan's error envelope (Response::FromError). Routes of a
  // foreign protocol (the MLflow API) answer in that protocol's form.
  std::function<Response(const core::Error&)> error_response;
  // A blocking route whose handler is cheap for some requests: when set and
  // it returns true for a request (after the access guard), that request's
  // handler runs inline on the I/O thread instead of the worker pool. It
  // runs on the I/O thread itself, so it must not block. The inference
  // routes use it for in-process models (no thread hop, fewer threads
  // competing for the cores: a shorter latency tail), while requests for an
  // HTTP upstream model still go to the pool.
  std::function<bool(const Request&)> run_inline_when;
  // A blocking route's non-blocking start, for requests whose work goes to
  // a thread of its own anyway (log-metric's group-commit writer): tried on
  // the I/O thread after the access guard (and instead of run_inline_when),
  // so it must not block. It either takes the request: returns true and
  // calls `respond` exactly once, at once or later and from any thread; or
  // declines: returns false without ever calling it, and `handler` serves
  // the request on the worker pool as usual (a cache miss that needs a
  // database read, say). `req` stays valid until `respond` is called.
  // Saves the two thread hops through the pool and back per request.
  std::function<bool(const Request&, Respond)> start;
};

// A blocking route whose handler returns JSON or an error:
// Response::FromResult(fn(req), ok_status).
Route JsonRoute(std::string method, std::string pattern, std::string permission,
                std::function<core::Result<core::Json>(const Request&)> fn, int ok_status = 200);

// A Server-Sent Events route; defined in http/stream.h, which stream handlers
// include (it brings in Boost.Asio).
struct StreamRoute;

struct RouteInfo {
  std::string method;
  std::string pattern;
  std::string permission;
  bool public_route = false;
  bool stream = false;
  size_t max_body_bytes = 0;  // Route::max_body_bytes; 0 for streams
};

// What Router::Match found for a method and path.
struct RouteMatch {
  const Route* route = nullptr;         // set when a plain route matched
  const StreamRoute* stream = nullptr;  // set when a stream route matched
  int index = -1;                       // dense id of the matched route (0..size()-1)
  const std::string* pattern = nullptr;
  std::map<std::string, std::string> params;  // decoded as Router describes
  // When nothing matched: the methods the path does support ("GET, POST"),
  // empty when the path is unknown (404) rather than the method (405).
  std::string allow;
};

// Routes by method and segment pattern. At the same position a literal
// segment beats {param}, which beats a trailing {param...}.
//
// Values: a {param} is its segment percent-decoded ("a%2Fb" -> "a/b"). A
// {param...} is the remaining segments, each percent-decoded, joined with
// '/'; an encoded slash stays encoded as "%2F" (upper-case), so it can never
// become a separator: "/files/a%2Fb/c" gives "a%2Fb/c". Empty segments are
// kept ("/files//etc/x" gives "/etc/x"), and "." or ".." segments are passed
// on as they are: a handler that treats the value as a path must validate it.
// A path of more than 64 segments matches nothing.
//
// Not thread-safe while routes are added; safe to share once built (the
// server takes a shared_ptr<const Router>).
class Router {
 public:
  Router();
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  // kInvalidArgument when the route has no handler, a bad method or pattern,
  // an empty permission without public_route (no route is open by
  // accident), or the same method and pattern shape as an existing route.
  core::Status Add(Route route);
  core::Status AddStream(StreamRoute route);

  RouteMatch Match(std::string_view method, std::string_view path) const;

  // Every route in registration order, for docs and tests.
  std::vector<RouteInfo> Routes() const;
  size_t size() const;

  // The body limit for a request to `method` `path`: the matched route's
  // max_body_bytes, or `default_limit` when it has none or nothing matches.
  size_t BodyLimit(std::string_view method, std::string_view path, size_t default_limit) const;

 private:
  struct Node;
  struct Entry;
  core::Status Insert(const std::string& method, const std::string& pattern,
                      const std::string& permission, bool public_route, bool has_handler,
                      size_t* entry);

  std::unique_ptr<Node> root_;
  std::vector<Entry> entries_;
};

// ---------------------------------------------------------------------------
// Server

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8080;  // 0 = an ephemeral port; see Server::port()
  int io_threads = 2;
  int worker_threads = 8;
  size_t max_body_bytes = 1 << 20;
  // Longest time to receive one request once its first byte arrived, and to
  // write one response (or one SSE write).
  std::chrono::seconds read_timeout{30};
  // Longest a keep-alive connection may wait for its next request.
  std::chrono::seconds idle_timeout{60};
  bool access_log = true;  // one ECS log line per request (benchmarks turn it off)
  // Decides whether a request may reach the route it matched, before any
  // plain or stream handler runs: authenticates the caller (setting
  // req.actor) and checks `permission` (empty for public routes). An error
  // becomes the response; a 401 also carries `WWW-Authenticate: Bearer`.
  // Runs on an I/O thread, so it must not block. Unset: every caller is
  // "anonymous" and every route is open (tests of this module).
  std::function<core::Status(Request& req, const std::string& permission, bool public_route)>
      access_guard;
};

// Serves a Router over HTTP/1.1 with keep-alive.
//
// Middleware on every request: a request id (X-Request-Id accepted when it is
// 1..128 characters of [A-Za-z0-9._-], otherwise a new UUIDv7; echoed in the
// response), the actor, the access log line and the metrics
// kervan_http_requests_total{method,route,status} and
// kervan_http_request_duration_seconds{method,route}.
//
// Start/Shutdown/Wait are thread-safe; Shutdown must not be called from a
// handler (it waits for handlers to finish).
class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router);
  ~Server();  // Shutdown(0) if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens and starts the I/O threads and the worker pool.
  // kUnavailable naming address:port when the address cannot be bound;
  // kFailedPrecondition when called twice.
  core::Status Start();

  // The bound port (the ephemeral one when options.port was 0).
  uint16_t port() const;

  // Graceful stop: stops accepting, closes idle keep-alive connections, ends
  // SSE streams, lets in-flight requests finish and send their responses
  // (with Connection: close) for up to `grace`, then closes what is left and
  // joins every thread. A blocking handler still running is waited for (it
  // cannot be interrupted). Idempotent; later calls wait for the first.
  void Shutdown(std::chrono::milliseconds grace);

  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// Client

struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lowercase names

  std::string Header(const std::string& lowercase_name) const;
};

// A synchronous HTTP/1.1 client for a Kervan server: one connection per call,
// its own io_context, thread-safe (calls share nothing).
class Client {
 public:
  // "http://host:port" (port defaults to 80). https is not supported yet; a
  // bad or https URL makes every call fail with kInvalidArgument.
  explicit Client(std::string base_url);
  // Headers sent with every request (e.g. Authorization: Bearer <token>);
  // a header of the same name given to a call replaces it.
  Client(std::string base_url, HeaderList default_headers);

  // Sends one request and reads the whole response. Errors:
  //  kUnavailable: "cannot reach Kervan server at <base_url>: <reason>" or
  //    the connection broke;
  //  kDeadlineExceeded: no complete response within `timeout`.
  // Any HTTP status is a successful call; see ErrorFromResponse().
  core::Result<ClientResponse> Send(
      std::string method, std::string target, std::string body = {}, HeaderList headers = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  // GETs `target` and hands each piece of the body to `on_data` as it
  // arrives, until the server ends the response or on_data returns false.
  // `timeout` bounds connecting and each silence between pieces. A non-2xx
  // status becomes its envelope's error (ErrorFromResponse).
  core::Status ReadStream(std::string target, HeaderList headers,
                          const std::function<bool(std::string_view chunk)>& on_data,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  const std::string& base_url() const { return base_url_; }

 private:
  std::string base_url_;
  std::string host_;
  std::string port_;
  std::optional<core::Error> url_error_;
  HeaderList default_headers_;
};

// The core::Error an error response carries (code, message, field and the
// other envelope keys as details); falls back to a code derived from the
// status when the body is not an envelope.
core::Error ErrorFromResponse(const ClientResponse& response);

}  // namespace kervan::http
