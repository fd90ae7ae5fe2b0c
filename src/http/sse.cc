// AsyncSignal and SseStream.
#include <fmt/format.h>

#include "http/stream.h"
#include "http/stream_channel.h"

namespace kervan::http {

// One suspended Wait(). The timer lives on the waiter's executor; Notify()
// expires it from there. Setting the expiry (rather than cancel()) also
// covers a wait that has been registered but not yet started.
struct AsyncSignal::Waiter {
  explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::atomic<bool> notified{false};
};

namespace {

// Removes a waiter from its signals when the wait ends, including when the
// coroutine frame is destroyed while suspended (server teardown).
class Registration {
 public:
  Registration() = default;
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ~Registration() {
    for (auto& undo : undo_)
      undo();
  }
  void Add(std::function<void()> undo) { undo_.push_back(std::move(undo)); }

 private:
  std::vector<std::function<void()>> undo_;
};

}  // namespace

void AsyncSignal::Notify() {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard lock(mu_);
    ++generation_;
    waiters.swap(waiters_);
  }
  for (const auto& w : waiters) {
    w->notified.store(true, std::memory_order_release);
    // Timers are not thread-safe: touch this one only on its own executor.
    asio::post(w->timer.get_executor(),
               [w] { w->timer.expires_at(asio::steady_timer::time_point::min()); });
  }
}

uint64_t AsyncSignal::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

bool AsyncSignal::Register(const std::shared_ptr<Waiter>& w, uint64_t* seen) {
  std::lock_guard lock(mu_);
  if (seen != nullptr && *seen != generation_) {
    *seen = generation_;
    return false;
  }
  waiters_.push_back(w);
  return true;
}

void AsyncSignal::Unregister(const Waiter* w) {
  std::lock_guard lock(mu_);
  std::erase_if(waiters_, [w](const std::shared_ptr<Waiter>& x) { return x.get() == w; });
}

asio::awaitable<bool> AsyncSignal::Wait(std::chrono::milliseconds timeout, uint64_t* seen) {
  auto w = std::make_shared<Waiter>(co_await asio::this_coro::executor);
  if (!Register(w, seen))
    co_return true;
  Registration registration;
  registration.Add([this, p = w.get()] { Unregister(p); });
  w->timer.expires_after(timeout);
  boost::system::error_code ec;
  co_await w->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (seen != nullptr)
    *seen = generation();
  co_return w->notified.load(std::memory_order_acquire);
}

asio::awaitable<bool> SseStream::Send(std::string_view id, std::string_view event,
                                      std::string_view data) {
  std::string text;
  text.reserve(data.size() + id.size() + event.size() + 32);
  // A field value must not contain a line break; cut it there.
  auto one_line = [](std::string_view v) { return v.substr(0, v.find_first_of("\r\n")); };
  if (!id.empty())
    fmt::format_to(std::back_inserter(text), "id: {}\n", one_line(id));
  if (!event.empty())
    fmt::format_to(std::back_inserter(text), "event: {}\n", one_line(event));
  // Every line of data becomes a data: line ("\r\n", "\r" and "\n" all end a line).
  for (;;) {
    size_t end = data.find_first_of("\r\n");
    text += "data: ";
    text += data.substr(0, end);
    text += '\n';
    if (end == std::string_view::npos)
      break;
    size_t next = end + 1;
    if (data[end] == '\r' && next < data.size() && data[next] == '\n')
      ++next;
    data = data.substr(next);
  }
  text += '\n';
  co_return co_await channel_->Write(std::move(text));
}

asio::awaitable<bool> SseStream::Comment(std::string_view text) {
  std::string out = ": ";
  out += text.substr(0, text.find_first_of("\r\n"));
  out += "\n\n";
  co_return co_await channel_->Write(std::move(out));
}

asio::awaitable<bool> SseStream::Wait(AsyncSignal& signal, std::chrono::milliseconds timeout,
                                      uint64_t* seen) {
  if (!co_await channel_->Write({}))
    co_return false;  // sends the head if still pending
  AsyncSignal& closed = channel_->closed_signal();
  auto w = std::make_shared<AsyncSignal::Waiter>(co_await asio::this_coro::executor);
  Registration registration;
  if (!signal.Register(w, seen))
    co_return true;
  registration.Add([&signal, p = w.get()] { signal.Unregister(p); });
  closed.Register(w, nullptr);
  registration.Add([&closed, p = w.get()] { closed.Unregister(p); });
  if (!channel_->open())
    co_return false;  // closed before we registered
  w->timer.expires_after(timeout);
  boost::system::error_code ec;
  co_await w->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (seen != nullptr)
    *seen = signal.generation();
  co_return channel_->open() && w->notified.load(std::memory_order_acquire);
}

bool SseStream::open() const {
  return channel_->open();
}

void SseStream::Fail(const core::Error& error) {
  channel_->Fail(error);
}

}  // namespace kervan::http
