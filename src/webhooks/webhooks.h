// webhooks: tells other systems what happened in Kervan. A subscription names
// an http:// URL, the event types (exact, "prefix.*" or "*") and optionally
// one project it wants; every committed event that matches becomes a
// delivery, POSTed with an HMAC-SHA256 signature, retried with exponential
// backoff until the receiver answers 2xx or the attempts run out
// (at-least-once). Deliveries and their attempts are rows, so pending ones
// survive a restart, and they are readable through the API.
//
// Creating, pausing, resuming, pinging and deleting a subscription are
// commands on the event log ("webhook.created", ...). Deliveries and attempts
// are operational data in the module's own tables, not events.
//
// webhooks depends on store (event log, database), http (client, router) and
// core; nothing depends on it but app/ wiring. This is its one public header.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "store/store.h"

namespace kervan::webhooks {

using core::Json;
using core::Result;
using core::Status;

using SubscriptionId = core::StrongId<struct SubscriptionIdTag>;
using DeliveryId = core::StrongId<struct DeliveryIdTag>;

// ---------------------------------------------------------------------------
// Pure building blocks (exposed for receivers written in C++ and for tests)

// The X-Kervan-Signature value for `body` sent at `unix_seconds`:
//   "t=<unix_seconds>,v1=<hex HMAC-SHA256(secret, "<unix_seconds>.<body>")>"
std::string SignatureHeader(std::string_view secret, std::string_view body, int64_t unix_seconds);

// What a receiver does: parses `header`, recomputes the v1 signature over
// `body` in constant time, and rejects a timestamp more than `tolerance` away
// from `now_unix_seconds` (replays). kUnauthenticated naming what is wrong.
Status VerifySignature(std::string_view secret, std::string_view header, std::string_view body,
                       int64_t now_unix_seconds,
                       std::chrono::seconds tolerance = std::chrono::minutes(5));

// Whether `type` is selected by one pattern: "*" (everything), "prefix.*"
// (every type starting with "prefix.") or an exact type.
bool TypeMatches(std::string_view pattern, std::string_view type);

// A pattern is "*", or dot-separated segments of [A-Za-z0-9_] optionally
// ending in ".*". kInvalidArgument naming `field` otherwise.
Status ValidateTypePattern(std::string_view pattern, const std::string& field);

// An http:// URL split into what http::Client takes.
struct TargetUrl {
  std::string base;    // "http://host:port" (port as given, default 80)
  std::string target;  // "/path?query", "/" when the URL has none
};
// Accepts http://host[:port][/path][?query]: a DNS name, IPv4 or [IPv6]
// host, port 1..65535, printable ASCII only, no userinfo, no fragment, at most
// 2048 characters. kInvalidArgument with field "url" naming the problem
// (https is refused until the client speaks TLS).
Result<TargetUrl> ParseTargetUrl(std::string_view url);

struct RetryPolicy {
  std::chrono::milliseconds base{1000};   // delay after the first failed attempt
  std::chrono::milliseconds max{600000};  // cap on any one delay
  int max_attempts = 8;                   // attempts before a delivery is failed
  double jitter = 0.2;                    // each delay shrinks by up to this fraction
};

// Delay before attempt `failed_attempts + 1`: min(max, base * 2^(failed_attempts-1))
// scaled by (1 - jitter * u). REQUIRES: failed_attempts >= 1, 0 <= u < 1.
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int failed_attempts, double u);

// ---------------------------------------------------------------------------
// The service

struct WebhooksOptions {
  // 32-byte key that seals subscription secrets at rest (core::SealSecret).
  // The server loads it from a 0600 file; it is never logged.
  std::string secret_key;
  RetryPolicy retry;
  std::chrono::milliseconds request_timeout{10000};  // connect + send + response
  std::chrono::milliseconds poll_interval{200};      // due-delivery scan when idle
  int workers = 2;                                   // concurrent deliveries
  // Name of the durable event-log subscription (cursor row) doing fan-out.
  std::string subscriber_name = "webhooks";
};

struct Subscription {
  SubscriptionId id;
  std::string url;
  std::vector<std::string> event_types;
  std::string project;  // "" = events of every project (and global ones)
  std::string description;
  bool active = true;
  std::string created_by;
  int64_t created_seq = 0;  // seq of its webhook.created event
  int64_t created_us = 0, updated_us = 0;

  // Whether the filters select an event of `type` in `event_project` (fan-out
  // also requires the event to be newer than created_seq).
  bool Wants(std::string_view type, std::string_view event_project) const;
  // The API form; never holds the secret.
  Json ToJson() const;
};

struct NewSubscription {
  std::string url;
  std::vector<std::string> event_types;  // at least one pattern
  std::string project;
  std::string description;
  std::string secret;  // empty: one is generated
  bool active = true;
};

// What Create returns: the only time the secret is shown in clear.
struct CreatedSubscription {
  Subscription subscription;
  std::string secret;
  Json ToJson() const;  // the subscription plus "secret"
};

enum class DeliveryStatus { kPending, kDelivered, kFailed };
std::string_view DeliveryStatusName(DeliveryStatus status);
std::optional<DeliveryStatus> ParseDeliveryStatus(std::string_view name);

struct Attempt {
  int number = 0;  // 1-based
  int64_t time_us = 0;
  int http_status = 0;  // 0: no response (connect error, timeout)
  int64_t latency_us = 0;
  std::string error;  // "" on success; truncated, printable ASCII

  Json ToJson() const;
};

struct Delivery {
  DeliveryId id;
  SubscriptionId subscription_id;
  int64_t event_seq = 0;
  std::string event_type;
  DeliveryStatus status = DeliveryStatus::kPending;
  int attempts = 0;
  int64_t next_attempt_us = 0;
  int last_status = 0;
  std::string last_error;
  int64_t created_us = 0, updated_us = 0;
  std::vector<Attempt> attempt_log;  // filled by GetDelivery only

  // The API form; `with_attempts` adds "attempt_log" (the attempts, oldest
  // first). For a pending delivery, "next_attempt_at" says when it is due (a
  // claimed one shows its claim's end).
  Json ToJson(bool with_attempts = false) const;
};

struct SubscriptionListQuery {
  std::string after_id;  // keyset pagination (ids sort by creation)
  int limit = 100;
};

struct DeliveryListQuery {
  std::optional<DeliveryStatus> status;
  std::string after_id;
  int limit = 100;
};

// Owns the fan-out subscriber and the delivery workers. Thread-safe.
//
// REQUIRES: the EventLog (and its Database, migrated) outlives this object.
class Webhooks {
 public:
  // kInvalidArgument when the secret key is not 32 bytes or an option is out
  // of range. Starts nothing; see Start().
  static Result<std::unique_ptr<Webhooks>> Open(store::EventLog& log, WebhooksOptions options);
  ~Webhooks();  // Stop()s
  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  // Starts the fan-out (durable event-log subscription, resuming from its
  // cursor) and the delivery workers, which pick up every pending delivery
  // left by an earlier run. kFailedPrecondition when called twice.
  Status Start();
  // Stops fan-out and workers; waits for attempts in flight (at most
  // request_timeout each). A delivery whose attempt was cut off by a crash
  // is retried once its claim lapses (request_timeout + 30 s). Idempotent.
  void Stop();

  // Validates and stores a subscription and appends "webhook.created" in
  // one transaction. Errors: kInvalidArgument naming the field.
  Result<CreatedSubscription> Create(NewSubscription request, const store::CommandContext& ctx);
  // Removes the subscription with its deliveries and attempts and appends
  // "webhook.deleted". kNotFound when unknown.
  Status Delete(const SubscriptionId& id, const store::CommandContext& ctx);
  // Pauses (no new deliveries, pending ones wait) or resumes a subscription;
  // "webhook.paused" / "webhook.resumed". Setting the current state again is
  // a no-op without an event. kNotFound when unknown.
  Result<Subscription> SetActive(const SubscriptionId& id, bool active,
                                 const store::CommandContext& ctx);
  // Appends "webhook.pinged" about the subscription; fan-out delivers it to
  // that subscription only, whatever its filters. kFailedPrecondition when
  // paused. Returns the event.
  Result<store::Event> Ping(const SubscriptionId& id, const store::CommandContext& ctx);

  Result<Subscription> Get(const SubscriptionId& id);
  Result<std::vector<Subscription>> List(const SubscriptionListQuery& query);
  // kNotFound when the subscription is unknown.
  Result<std::vector<Delivery>> ListDeliveries(const SubscriptionId& id,
                                               const DeliveryListQuery& query);
  // The delivery with its attempts. kNotFound when either id is unknown.
  Result<Delivery> GetDelivery(const SubscriptionId& id, const DeliveryId& delivery);

  // Turns one committed event into deliveries (what the subscriber runs).
  // Idempotent per event. Exposed for tests.
  Status FanOut(const store::Event& event);

 private:
  Webhooks(store::EventLog& log, WebhooksOptions options);
  void WorkerLoop();
  // Claims one due delivery and attempts it; false when none was due.
  bool DeliverOne();
  void RefreshPendingGauge();

  store::EventLog& log_;
  store::Database& db_;
  const WebhooksOptions options_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool started_ = false;   // GUARDED_BY(mu_)
  bool stopping_ = false;  // GUARDED_BY(mu_)
  uint64_t wakeups_ = 0;   // GUARDED_BY(mu_): new deliveries since start
  std::unique_ptr<store::EventLog::Subscription> subscription_;
  std::vector<std::thread> workers_;
  std::chrono::steady_clock::time_point gauge_refreshed_;  // GUARDED_BY(mu_)

  // Fan-out's view of the active subscriptions, reloaded whenever it passes
  // a webhook.* event. Events arrive in seq order and every subscription
  // change is such an event, so the view is never older than the event
  // being fanned out (created_seq screens out newer subscriptions).
  std::mutex fanout_mu_;
  std::optional<std::vector<Subscription>> active_;  // GUARDED_BY(fanout_mu_)
};

// Registers the /api/v1/webhooks routes (permissions webhook.read and
// webhook.write). `webhooks` must outlive the router's server.
// Route permissions are webhook.read / webhook.write, checked again in the
// subscription's project; a subscription without a project (every
// project's events) needs a global binding, and lists show only the
// caller's projects.
Status RegisterRoutes(http::Router& router, Webhooks& webhooks, const auth::Auth& auth);

}  // namespace kervan::webhooks
