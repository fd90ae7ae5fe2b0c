// http/stream.h: Server-Sent Events routes and the coroutine helpers they
// use (AsyncSignal, SseStream, StreamRoute, Offload). Part of the http
// module's public interface, kept out of http.h because it brings in
// Boost.Asio; include it only where a stream route is written or served.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "http/asio.h"
#include "http/http.h"

namespace kervan::http {

// ---------------------------------------------------------------------------
// Server-Sent Events

// Wakes coroutines waiting on it; the building block for streams that push
// "something changed" (e.g. the event log committed new events).
//
// Notify() may be called from any thread. Wait() may be awaited from any
// coroutine whose executor runs handlers one at a time (an io_context run by
// one thread, as every Kervan I/O thread is, or a strand). Thread-safe.
//
// A Notify() with nobody waiting is not lost when the waiter passes the
// generation it last saw:
//   uint64_t seen = signal.generation();
//   for (;;) { SendNewEvents(); co_await signal.Wait(15s, &seen); }
class AsyncSignal {
 public:
  AsyncSignal() = default;
  AsyncSignal(const AsyncSignal&) = delete;
  AsyncSignal& operator=(const AsyncSignal&) = delete;

  // Wakes every current waiter and advances the generation.
  void Notify();

  // Number of Notify() calls so far.
  uint64_t generation() const;

  // Returns true when notified, false when `timeout` passed first. With
  // `seen`: returns true at once if the generation moved past *seen, and
  // always leaves the current generation in *seen.
  asio::awaitable<bool> Wait(std::chrono::milliseconds timeout, uint64_t* seen = nullptr);

 private:
  friend class SseStream;
  struct Waiter;
  // Registers `w` unless the generation moved past *seen; false then.
  bool Register(const std::shared_ptr<Waiter>& w, uint64_t* seen);
  void Unregister(const Waiter* w);

  mutable std::mutex mu_;
  uint64_t generation_ = 0;                       // GUARDED_BY(mu_)
  std::vector<std::shared_ptr<Waiter>> waiters_;  // GUARDED_BY(mu_)
};

namespace detail {
class StreamChannel;  // the server's side of a stream; see stream_channel.h
}  // namespace detail

// One open SSE response, handed to a StreamRoute handler by the server. The
// response head (200, text/event-stream, no-cache, chunked) goes out with the
// first Send/Comment/Wait. Not thread-safe: use it only from the handler's
// coroutine. The server ends the stream (open() turns false, Wait returns
// false, Send/Comment return false) when the client disconnects or the server
// shuts down; the handler should then return promptly.
class SseStream {
 public:
  explicit SseStream(detail::StreamChannel& channel) : channel_(&channel) {}
  SseStream(const SseStream&) = delete;
  SseStream& operator=(const SseStream&) = delete;

  // Sends one event; `id` and `event` lines are left out when empty, and
  // every line of `data` becomes its own "data:" line. False when the stream
  // is closed (client gone, write timed out, server shutting down).
  asio::awaitable<bool> Send(std::string_view id, std::string_view event, std::string_view data);
  // Sends a comment line (": text"), e.g. as a keep-alive. False when closed.
  asio::awaitable<bool> Comment(std::string_view text);
  // Waits for `signal` (see AsyncSignal::Wait) or the stream closing. True
  // when the signal was notified; false on timeout or when the stream closed
  // (check open()).
  asio::awaitable<bool> Wait(AsyncSignal& signal, std::chrono::milliseconds timeout,
                             uint64_t* seen = nullptr);
  bool open() const;

  // Answers the request with `error`'s envelope instead of a stream.
  // REQUIRES: nothing was sent yet. The handler should return right after.
  void Fail(const core::Error& error);

 private:
  detail::StreamChannel* channel_;
};

using StreamHandler = std::function<asio::awaitable<void>(const Request&, SseStream&)>;

struct StreamRoute {
  std::string method = "GET";
  std::string pattern;
  StreamHandler handler;  // runs on the connection's I/O thread; must not block
  std::string permission;
  bool public_route = false;
};

// ---------------------------------------------------------------------------
// Worker pools

// Runs `fn` on `pool` and resumes the awaiting coroutine on its own executor
// with fn's result; an exception thrown by `fn` is rethrown in the coroutine.
// REQUIRES: fn returns a non-void, move-constructible value.
// REQUIRES: fn captures by reference only (its referents outlive the
// co_await). g++ 12 miscompiles a lambda temporary that captures strings by
// value when it is passed straight into `co_await Offload(...)`: the copy is
// bitwise and its destruction frees a pointer into the coroutine frame
// (seen as "free(): invalid pointer" from the SSE route).
template <typename Fn>
asio::awaitable<std::invoke_result_t<Fn&>> Offload(asio::thread_pool& pool, Fn fn) {
  using T = std::invoke_result_t<Fn&>;
  auto initiate = [&pool, fn = std::move(fn)](auto handler) mutable {
    asio::post(pool, [fn = std::move(fn), handler = std::move(handler)]() mutable {
      std::exception_ptr error;
      std::optional<T> value;
      try {
        value.emplace(fn());
      } catch (...) {
        error = std::current_exception();
      }
      // The handler resumes the coroutine wherever it is invoked: post it
      // back to the coroutine's executor rather than calling it here.
      auto ex = asio::get_associated_executor(handler);
      asio::post(ex, [handler = std::move(handler), error, value = std::move(value)]() mutable {
        std::move(handler)(error, std::move(value));
      });
    });
  };
  std::optional<T> result =
      co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                    void(std::exception_ptr, std::optional<T>)>(
          std::move(initiate), asio::use_awaitable);
  co_return std::move(*result);
}

}  // namespace kervan::http
