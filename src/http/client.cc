// Client: one connection per call on a private io_context, driven by a
// coroutine so that one deadline covers connect, write and read.
#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "http/asio.h"
#include "http/http.h"

namespace kervan::http {
namespace {

using tcp = asio::ip::tcp;
namespace bhttp = beast::http;
using ErrorCode = boost::system::error_code;

constexpr std::string_view kUserAgent = "kervan-client/0.1";

auto Redirect(ErrorCode& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

core::Error DeadlineExceeded(std::string message) {
  return {core::ErrorCode::kDeadlineExceeded, std::move(message), {}, nullptr};
}

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Everything one call needs; lives in the calling frame for the whole call.
struct Call {
  std::string base_url;
  std::string host;
  std::string port;
  std::chrono::milliseconds timeout;
  bhttp::request<bhttp::string_body> request;
};

bool IsTimeout(const ErrorCode& ec) {
  return ec == beast::error::timeout;
}

// Resolves and connects; on failure returns the error for the caller.
asio::awaitable<std::optional<core::Error>> Connect(Call& call, beast::tcp_stream& stream) {
  ErrorCode ec;
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto endpoints = co_await resolver.async_resolve(call.host, call.port, Redirect(ec));
  if (ec) {
    co_return core::Unavailable(
        fmt::format("cannot reach Kervan server at {}: {}", call.base_url, ec.message()));
  }
  stream.expires_after(call.timeout);
  co_await stream.async_connect(endpoints, Redirect(ec));
  if (IsTimeout(ec)) {
    co_return DeadlineExceeded(
        fmt::format("cannot reach Kervan server at {}: no answer within {} ms", call.base_url,
                    call.timeout.count()));
  }
  if (ec) {
    co_return core::Unavailable(
        fmt::format("cannot reach Kervan server at {}: {}", call.base_url, ec.message()));
  }
  co_return std::nullopt;
}

core::Error Broken(const Call& call, const ErrorCode& ec) {
  if (IsTimeout(ec)) {
    return DeadlineExceeded(fmt::format("no response from Kervan server at {} within {} ms",
                                        call.base_url, call.timeout.count()));
  }
  return core::Unavailable(
      fmt::format("request to Kervan server at {} failed: {}", call.base_url, ec.message()));
}

template <typename Fields>
std::map<std::string, std::string> LowerHeaders(const Fields& fields) {
  std::map<std::string, std::string> out;
  for (const auto& f : fields) {
    auto [it, inserted] = out.emplace(Lower(ToStd(f.name_string())), std::string(ToStd(f.value())));
    if (!inserted)
      it->second += ", " + std::string(ToStd(f.value()));
  }
  return out;
}

asio::awaitable<void> Exchange(Call& call, core::Result<ClientResponse>* out) {
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  if (auto error = co_await Connect(call, stream)) {
    *out = std::move(*error);
    co_return;
  }
  ErrorCode ec;
  co_await bhttp::async_write(stream, call.request, Redirect(ec));
  if (ec) {
    *out = Broken(call, ec);
    co_return;
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  parser.skip(call.request.method() == bhttp::verb::head);
  co_await bhttp::async_read(stream, buffer, parser, Redirect(ec));
  if (ec) {
    *out = Broken(call, ec);
    co_return;
  }
  ClientResponse response;
  response.status = static_cast<int>(parser.get().result_int());
  response.headers = LowerHeaders(parser.get());
  response.body = std::move(parser.get().body());
  *out = std::move(response);
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

asio::awaitable<void> Stream(Call& call, const std::function<bool(std::string_view)>& on_data,
                             core::Status* out) {
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  if (auto error = co_await Connect(call, stream)) {
    *out = std::move(*error);
    co_return;
  }
  ErrorCode ec;
  stream.expires_after(call.timeout);
  co_await bhttp::async_write(stream, call.request, Redirect(ec));
  if (ec) {
    *out = Broken(call, ec);
    co_return;
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  stream.expires_after(call.timeout);
  co_await bhttp::async_read_header(stream, buffer, parser, Redirect(ec));
  if (ec) {
    *out = Broken(call, ec);
    co_return;
  }
  const int status = static_cast<int>(parser.get().result_int());
  const bool ok = status >= 200 && status < 300;
  std::string error_body;
  char chunk[8192];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    // The timeout bounds each silence, not the stream's length.
    stream.expires_after(call.timeout);
    co_await bhttp::async_read_some(stream, buffer, parser, Redirect(ec));
    if (ec == bhttp::error::need_buffer)
      ec = {};
    if (ec) {
      *out = Broken(call, ec);
      co_return;
    }
    std::string_view piece(chunk, sizeof chunk - parser.get().body().size);
    if (piece.empty())
      continue;
    if (!ok) {
      error_body.append(piece);
    } else if (!on_data(piece)) {
      break;
    }
  }
  if (!ok) {
    ClientResponse response;
    response.status = status;
    response.headers = LowerHeaders(parser.get());
    response.body = std::move(error_body);
    *out = ErrorFromResponse(response);
    co_return;
  }
  *out = core::Ok();
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

// Runs `coro` to completion on a private io_context.
template <typename Coro>
void RunToCompletion(Coro coro) {
  asio::io_context ioc(1);
  asio::co_spawn(ioc, std::move(coro), asio::detached);
  ioc.run();
}

}  // namespace

std::string ClientResponse::Header(const std::string& lowercase_name) const {
  auto it = headers.find(lowercase_name);
  return it == headers.end() ? std::string() : it->second;
}

Client::Client(std::string base_url, HeaderList default_headers) : Client(std::move(base_url)) {
  default_headers_ = std::move(default_headers);
}

Client::Client(std::string base_url) : base_url_(std::move(base_url)) {
  while (!base_url_.empty() && base_url_.back() == '/')
    base_url_.pop_back();
  auto bad = [&](std::string_view why) {
    url_error_ =
        core::InvalidArgument(fmt::format("server URL \"{}\": {}", base_url_, why), "server_url");
  };
  std::string_view url = base_url_;
  if (url.starts_with("https://")) {
    bad("https is not supported yet; use an http:// URL");
    return;
  }
  if (!url.starts_with("http://")) {
    bad("must start with http://, e.g. http://127.0.0.1:8080");
    return;
  }
  std::string_view authority = url.substr(7);
  if (authority.find('/') != std::string_view::npos) {
    bad("must not have a path; give scheme, host and port only");
    return;
  }
  std::string_view host = authority;
  std::string_view port = "80";
  if (!authority.empty() && authority.front() == '[') {  // [::1]:8080
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      bad("unterminated IPv6 address");
      return;
    }
    host = authority.substr(1, close - 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        bad("expected :port after the IPv6 address");
        return;
      }
      port = rest.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  const bool numeric_port =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (host.empty()) {
    bad("has no host");
    return;
  }
  if (!numeric_port || std::stoi(std::string(port)) > 65535) {
    bad("port must be a number between 0 and 65535");
    return;
  }
  host_ = std::string(host);
  port_ = std::string(port);
}

core::Result<ClientResponse> Client::Send(std::string method, std::string target, std::string body,
                                          HeaderList headers,
                                          std::chrono::milliseconds timeout) const {
  if (url_error_)
    return *url_error_;
  if (target.empty() || target.front() != '/') {
    return core::InvalidArgument(fmt::format("request target \"{}\": must start with '/'", target),
                                 "target");
  }
  Call call{base_url_, host_, port_, timeout, {}};
  auto& req = call.request;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(bhttp::field::host, host_ + ":" + port_);
  req.set(bhttp::field::user_agent, ToBeast(kUserAgent));
  req.keep_alive(false);
  for (auto& [name, value] : default_headers_)
    req.set(name, value);
  bool has_content_type = false;
  for (auto& [name, value] : headers) {
    if (Lower(name) == "content-type")
      has_content_type = true;
    req.set(name, value);
  }
  if (!body.empty() && !has_content_type)
    req.set(bhttp::field::content_type, "application/json");
  req.body() = std::move(body);
  req.prepare_payload();

  core::Result<ClientResponse> result = core::Internal("request did not run");
  RunToCompletion(
      [&call, &result]() -> asio::awaitable<void> { co_await Exchange(call, &result); });
  return result;
}

core::Status Client::ReadStream(std::string target, HeaderList headers,
                                const std::function<bool(std::string_view chunk)>& on_data,
                                std::chrono::milliseconds timeout) const {
  if (url_error_)
    return *url_error_;
  if (target.empty() || target.front() != '/') {
    return core::InvalidArgument(fmt::format("request target \"{}\": must start with '/'", target),
                                 "target");
  }
  Call call{base_url_, host_, port_, timeout, {}};
  auto& req = call.request;
  req.method(bhttp::verb::get);
  req.target(target);
  req.version(11);
  req.set(bhttp::field::host, host_ + ":" + port_);
  req.set(bhttp::field::user_agent, ToBeast(kUserAgent));
  req.set(bhttp::field::accept, "text/event-stream");
  for (auto& [name, value] : default_headers_)
    req.set(name, value);
  for (auto& [name, value] : headers)
    req.set(name, value);

  core::Status result = core::Internal("request did not run");
  RunToCompletion([&call, &on_data, &result]() -> asio::awaitable<void> {
    co_await Stream(call, on_data, &result);
  });
  return result;
}

core::Error ErrorFromResponse(const ClientResponse& response) {
  core::ErrorCode code = core::ErrorCode::kInternal;
  switch (response.status) {
    case 400:
    case 405:
    case 413:
    case 431:
      code = core::ErrorCode::kInvalidArgument;
      break;
    case 401:
      code = core::ErrorCode::kUnauthenticated;
      break;
    case 403:
      code = core::ErrorCode::kPermissionDenied;
      break;
    case 404:
      code = core::ErrorCode::kNotFound;
      break;
    case 409:
      code = core::ErrorCode::kFailedPrecondition;
      break;
    case 429:
      code = core::ErrorCode::kResourceExhausted;
      break;
    case 503:
      code = core::ErrorCode::kUnavailable;
      break;
    case 504:
      code = core::ErrorCode::kDeadlineExceeded;
      break;
    default:
      code = response.status >= 400 && response.status < 500 ? core::ErrorCode::kInvalidArgument
                                                             : core::ErrorCode::kInternal;
  }
  core::Error error{code, fmt::format("HTTP {}", response.status), {}, nullptr};
  core::Json body = core::Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object() || !body.contains("error") ||
      !body["error"].is_object()) {
    if (!response.body.empty())
      error.message += ": " + response.body.substr(0, 200);
    return error;
  }
  core::Json details = core::Json::object();
  for (const auto& [key, value] : body["error"].items()) {
    if (key == "code" && value.is_string()) {
      bool known = false;
      for (int c = 0; c <= static_cast<int>(core::ErrorCode::kInternal); ++c) {
        auto candidate = static_cast<core::ErrorCode>(c);
        if (core::ErrorCodeName(candidate) == value.get<std::string>()) {
          error.code = candidate;
          known = true;
        }
      }
      if (!known)
        details["code"] = value;  // a transport code, e.g. "method_not_allowed"
    } else if (key == "message" && value.is_string()) {
      error.message = value.get<std::string>();
    } else if (key == "field" && value.is_string()) {
      error.field = value.get<std::string>();
    } else {
      details[key] = value;
    }
  }
  if (!details.empty())
    error.details = std::move(details);
  return error;
}

}  // namespace kervan::http
