// Small helpers for HTTP-level tests: JSON calls, error-envelope checks,
// paging through the whole event log, and a Server-Sent Events parser.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "core/json.h"
#include "http/http.h"

namespace kervan::apitest {

using core::Json;

// One answered request. status 0: the call itself failed (transport error,
// described in `transport_error`).
struct Reply {
  int status = 0;
  Json body;        // parsed JSON; discarded value when the body is not JSON
  std::string raw;  // the body as received
  std::map<std::string, std::string> headers;
  std::string transport_error;

  std::string Describe() const {
    return status == 0 ? "transport error: " + transport_error
                       : "HTTP " + std::to_string(status) + ": " + raw.substr(0, 600);
  }
};

inline Reply Call(const http::Client& client, const std::string& method, const std::string& target,
                  const std::string& body = {}, http::HeaderList headers = {},
                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  bool has_type = false;
  for (const auto& [name, value] : headers)
    has_type |= name == "Content-Type";
  if (!body.empty() && !has_type)
    headers.emplace_back("Content-Type", "application/json");
  auto r = client.Send(method, target, body, std::move(headers), timeout);
  Reply out;
  if (!r) {
    out.transport_error = r.error().ToString();
    return out;
  }
  out.status = r->status;
  out.raw = r->body;
  out.headers = r->headers;
  out.body = Json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  return out;
}

inline Reply Get(const http::Client& client, const std::string& target,
                 http::HeaderList headers = {}) {
  return Call(client, "GET", target, {}, std::move(headers));
}

inline Reply Post(const http::Client& client, const std::string& target, const Json& body,
                  http::HeaderList headers = {}) {
  return Call(client, "POST", target, body.dump(), std::move(headers));
}

// Checks the error envelope: {"error":{"code","message","field"?...},"request_id"}.
// `field` empty: not checked.
inline ::testing::AssertionResult IsError(const Reply& r, int status, const std::string& code,
                                          const std::string& field = {}) {
  if (r.status != status) {
    return ::testing::AssertionFailure() << "want HTTP " << status << ", got " << r.Describe();
  }
  if (!r.body.is_object() || !r.body.contains("error") || !r.body["error"].is_object()) {
    return ::testing::AssertionFailure() << "not an error envelope: " << r.raw;
  }
  const Json& e = r.body["error"];
  if (e.value("code", "") != code) {
    return ::testing::AssertionFailure() << "want code " << code << ": " << r.raw;
  }
  if (!e.contains("message") || !e["message"].is_string() ||
      e["message"].get<std::string>().empty()) {
    return ::testing::AssertionFailure() << "error without a message: " << r.raw;
  }
  if (!field.empty() && e.value("field", "") != field) {
    return ::testing::AssertionFailure() << "want field \"" << field << "\": " << r.raw;
  }
  if (!r.body.contains("request_id") || !r.body["request_id"].is_string() ||
      r.body["request_id"].get<std::string>().empty()) {
    return ::testing::AssertionFailure() << "envelope without request_id: " << r.raw;
  }
  return ::testing::AssertionSuccess();
}

// Every event in the log, paged through GET /api/v1/events (1000 at a time).
// ADD_FAILUREs and returns what it got when a page fails.
inline std::vector<Json> AllEvents(const http::Client& client, int64_t* head_seq = nullptr) {
  std::vector<Json> out;
  int64_t after = 0;
  for (;;) {
    Reply r = Get(client, "/api/v1/events?limit=1000&after=" + std::to_string(after));
    if (r.status != 200) {
      ADD_FAILURE() << "GET /api/v1/events after=" << after << ": " << r.Describe();
      return out;
    }
    if (head_seq != nullptr)
      *head_seq = r.body.value("head_seq", int64_t{-1});
    const Json& events = r.body["events"];
    if (events.empty())
      return out;
    for (const auto& e : events)
      out.push_back(e);
    after = r.body.value("next_after", int64_t{0});
    if (after <= 0) {
      ADD_FAILURE() << "page without next_after: " << r.raw.substr(0, 300);
      return out;
    }
  }
}

// The log head as GET /api/v1/events reports it; -1 on failure.
inline int64_t HeadSeq(const http::Client& client) {
  Reply r = Get(client, "/api/v1/events?limit=1");
  if (r.status != 200) {
    ADD_FAILURE() << "GET /api/v1/events: " << r.Describe();
    return -1;
  }
  return r.body.value("head_seq", int64_t{-1});
}

// One Server-Sent Event.
struct SseEvent {
  std::string id, event, data;
};

// Feeds raw stream bytes; yields complete events (comments are dropped).
class SseParser {
 public:
  // Appends `chunk`; returns the events it completed.
  std::vector<SseEvent> Feed(std::string_view chunk) {
    buffer_.append(chunk);
    std::vector<SseEvent> out;
    for (;;) {
      size_t end = buffer_.find("\n\n");
      if (end == std::string::npos)
        break;
      std::string block = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      SseEvent ev;
      bool any = false;
      size_t pos = 0;
      while (pos <= block.size()) {
        size_t nl = block.find('\n', pos);
        if (nl == std::string::npos)
          nl = block.size();
        std::string_view line(block.data() + pos, nl - pos);
        pos = nl + 1;
        if (line.empty() || line[0] == ':')
          continue;
        size_t colon = line.find(':');
        std::string_view name = line.substr(0, colon);
        std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
        if (!value.empty() && value[0] == ' ')
          value.remove_prefix(1);
        if (name == "id") {
          ev.id = value, any = true;
        } else if (name == "event") {
          ev.event = value, any = true;
        } else if (name == "data") {
          if (!ev.data.empty())
            ev.data += "\n";
          ev.data += value;
          any = true;
        }
      }
      if (any)
        out.push_back(std::move(ev));
    }
    return out;
  }

 private:
  std::string buffer_;
};

}  // namespace kervan::apitest
