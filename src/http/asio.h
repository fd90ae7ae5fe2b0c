// The one way Kervan includes Boost.Asio and Boost.Beast.
//
// Boost 1.74's <boost/asio/awaitable.hpp> does not compile with g++ 12 unless
// <utility> is included first (upstream asio issue 944), so every file that
// uses Asio or Beast includes this header instead of including Boost directly.
#pragma once

// clang-format off
#include <utility>  // must precede every Asio header; see above
// clang-format on
#include <string_view>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace kervan::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

// Beast 1.74 speaks boost::string_view; these convert at the boundary.
inline std::string_view ToStd(beast::string_view s) {
  return {s.data(), s.size()};
}
inline beast::string_view ToBeast(std::string_view s) {
  return {s.data(), s.size()};
}

}  // namespace kervan::http
