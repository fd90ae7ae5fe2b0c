// Internal: the server's side of one SSE response, seen by SseStream.
#pragma once

#include <string>

#include "http/stream.h"

namespace kervan::http::detail {

// Implemented by the server's connection. Used only from the connection's
// executor (the stream handler's coroutine).
class StreamChannel {
 public:
  virtual ~StreamChannel() = default;

  // Sends the response head if it has not gone out yet, then `text` as one
  // chunk (nothing more when `text` is empty). False once the stream is
  // closed; a failed write closes it.
  virtual asio::awaitable<bool> Write(std::string text) = 0;
  virtual bool open() const = 0;
  // Notified when the stream closes (client gone, server shutting down).
  virtual AsyncSignal& closed_signal() = 0;
  virtual void Fail(const core::Error& error) = 0;
};

}  // namespace kervan::http::detail
