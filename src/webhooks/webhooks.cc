// The webhooks service: subscriptions as event-log commands, fan-out from a
// durable event-log subscription, and delivery workers that claim due
// deliveries from the database.
#include "webhooks/webhooks.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>

namespace kervan::webhooks {
namespace {

using store::CommandContext;
using store::CommandTx;
using store::Event;
using store::EventDraft;
using store::Row;
using store::Rows;

constexpr std::string_view kSubscriptionColumns =
    "id, url, event_types, project, description, active, created_by, created_seq, created_us, "
    "updated_us";
constexpr std::string_view kDeliveryColumns =
    "id, subscription_id, event_seq, event_type, status, attempts, next_attempt_us, last_status, "
    "last_error, created_us, updated_us";

constexpr size_t kMaxEventTypes = 50;
constexpr size_t kMaxDescription = 1000;
constexpr size_t kMaxErrorChars = 500;
constexpr size_t kBodySnippetChars = 200;
// Extra time a claimed delivery stays invisible to other workers beyond the
// request timeout, so a slow database write after the call does not let a
// second worker send it again.
constexpr std::chrono::seconds kClaimMargin{30};
constexpr std::chrono::seconds kPendingGaugeEvery{1};
constexpr int kClaimCandidates = 8;

struct Metrics {
  core::Counter& delivered;
  core::Counter& retry;
  core::Counter& failed;
  core::Histogram& duration;
  core::Gauge& pending;

  static Metrics& Get() {
    auto& r = core::GlobalMetrics();
    auto& results =
        r.AddCounter("kervan_webhook_deliveries_total",
                     "Webhook delivery attempts by outcome: delivered (2xx), retry (scheduled "
                     "again), failed (attempts exhausted).",
                     {"result"});
    static Metrics m{
        results.With({"delivered"}),
        results.With({"retry"}),
        results.With({"failed"}),
        r.AddHistogram("kervan_webhook_delivery_duration_seconds",
                       "Time from connecting to a webhook receiver to its full response.",
                       core::LatencyBuckets())
            .With({}),
        r.AddGauge("kervan_webhook_pending", "Webhook deliveries waiting for an attempt.").With({}),
    };
    return m;
  }
};

// Keeps error text storable and safe to show: printable ASCII (PostgreSQL
// rejects invalid UTF-8 and a receiver's body may be anything), truncated.
std::string Printable(std::string_view text, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (char c : text) {
    if (out.size() >= max)
      break;
    auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : (c == '\n' || c == '\r' || c == '\t' ? ' ' : '?'));
  }
  if (text.size() > max && out.size() >= 3)
    out.replace(out.size() - 3, 3, "...");
  return out;
}

double RandomUnit() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

std::vector<std::string> TypesFromText(const std::string& text) {
  std::vector<std::string> out;
  Json parsed = Json::parse(text, nullptr, false);
  if (parsed.is_array()) {
    for (const auto& v : parsed) {
      if (v.is_string())
        out.push_back(v.get<std::string>());
    }
  }
  return out;
}

Subscription SubscriptionFromRow(const Row& r) {
  Subscription s;
  s.id = SubscriptionId(r.Text(0));
  s.url = r.Text(1);
  s.event_types = TypesFromText(r.Text(2));
  s.project = r.Text(3);
  s.description = r.Text(4);
  s.active = r.Int(5) != 0;
  s.created_by = r.Text(6);
  s.created_seq = r.Int(7);
  s.created_us = r.Int(8);
  s.updated_us = r.Int(9);
  return s;
}

Delivery DeliveryFromRow(const Row& r) {
  Delivery d;
  d.id = DeliveryId(r.Text(0));
  d.subscription_id = SubscriptionId(r.Text(1));
  d.event_seq = r.Int(2);
  d.event_type = r.Text(3);
  d.status = ParseDeliveryStatus(r.Text(4)).value_or(DeliveryStatus::kPending);
  d.attempts = static_cast<int>(r.Int(5));
  d.next_attempt_us = r.Int(6);
  d.last_status = static_cast<int>(r.Int(7));
  d.last_error = r.Text(8);
  d.created_us = r.Int(9);
  d.updated_us = r.Int(10);
  return d;
}

Result<std::optional<Subscription>> LoadSubscription(store::Connection& conn,
                                                     const SubscriptionId& id) {
  ASSIGN_OR_RETURN(Rows rows, conn.Query(fmt::format("SELECT {} FROM webhook_subscriptions "
                                                     "WHERE id = ?",
                                                     kSubscriptionColumns),
                                         {id.value()}));
  if (rows.empty())
    return std::optional<Subscription>();
  return std::optional<Subscription>(SubscriptionFromRow(rows[0]));
}

core::Error UnknownSubscription(const SubscriptionId& id) {
  return core::NotFound(fmt::format("webhook \"{}\" not found", id.value()));
}

Status ValidateProject(const std::string& project) {
  if (project.empty())
    return core::Ok();
  bool ok =
      project.size() <= 200 && std::all_of(project.begin(), project.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      });
  if (!ok) {
    return core::InvalidArgument(
        fmt::format("field \"project\": must be 1 to 200 letters, digits, '.', '_' or '-', got "
                    "\"{}\"",
                    Printable(project, 200)),
        "project");
  }
  return core::Ok();
}

Status ValidateSecret(const std::string& secret) {
  bool printable = std::all_of(secret.begin(), secret.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
  // The value itself never goes into the message.
  if (secret.size() < 16 || secret.size() > 256 || !printable) {
    return core::InvalidArgument(
        fmt::format("field \"secret\": must be 16 to 256 printable ASCII characters without "
                    "spaces, got {} characters",
                    secret.size()),
        "secret");
  }
  return core::Ok();
}

EventDraft Draft(std::string type, const Subscription& s, const CommandContext& ctx, Json data) {
  return {.type = std::move(type),
          .subject_kind = "webhook",
          .subject_id = s.id.value(),
          .actor = ctx.actor,
          .reason = "",
          .correlation_id = ctx.correlation_id,
          .causation_id = ctx.causation_id,
          .project = s.project,
          .data = std::move(data)};
}

}  // namespace

// ---------------------------------------------------------------------------
// Value types

bool Subscription::Wants(std::string_view type, std::string_view event_project) const {
  if (!project.empty() && project != event_project)
    return false;
  return std::any_of(event_types.begin(), event_types.end(),
                     [&](const std::string& p) { return TypeMatches(p, type); });
}

Json Subscription::ToJson() const {
  return {{"id", id.value()},
          {"url", url},
          {"event_types", event_types},
          {"project", project},
          {"description", description},
          {"active", active},
          {"created_by", created_by},
          {"created_seq", created_seq},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

Json CreatedSubscription::ToJson() const {
  Json j = subscription.ToJson();
  j["secret"] = secret;
  return j;
}

std::string_view DeliveryStatusName(DeliveryStatus status) {
  switch (status) {
    case DeliveryStatus::kPending:
      return "pending";
    case DeliveryStatus::kDelivered:
      return "delivered";
    case DeliveryStatus::kFailed:
      return "failed";
  }
  return "pending";
}

std::optional<DeliveryStatus> ParseDeliveryStatus(std::string_view name) {
  for (auto s : {DeliveryStatus::kPending, DeliveryStatus::kDelivered, DeliveryStatus::kFailed}) {
    if (DeliveryStatusName(s) == name)
      return s;
  }
  return std::nullopt;
}

Json Attempt::ToJson() const {
  return {{"attempt", number},
          {"time", core::FormatRfc3339(time_us)},
          {"http_status", http_status},
          {"latency_ms", static_cast<double>(latency_us) / 1000.0},
          {"error", error}};
}

Json Delivery::ToJson(bool with_attempts) const {
  Json j = {{"id", id.value()},
            {"subscription_id", subscription_id.value()},
            {"event_seq", event_seq},
            {"event_type", event_type},
            {"status", DeliveryStatusName(status)},
            {"attempts", attempts},
            {"last_status", last_status},
            {"last_error", last_error},
            {"created_at", core::FormatRfc3339(created_us)},
            {"updated_at", core::FormatRfc3339(updated_us)}};
  if (status == DeliveryStatus::kPending)
    j["next_attempt_at"] = core::FormatRfc3339(next_attempt_us);
  if (with_attempts) {
    Json list = Json::array();
    for (const auto& a : attempt_log)
      list.push_back(a.ToJson());
    j["attempt_log"] = list;
  }
  return j;
}

// ---------------------------------------------------------------------------
// Lifecycle

Result<std::unique_ptr<Webhooks>> Webhooks::Open(store::EventLog& log, WebhooksOptions options) {
  if (options.secret_key.size() != 32) {
    return core::InvalidArgument(
        fmt::format("webhooks secret key must be 32 bytes, got {}", options.secret_key.size()),
        "secret_key");
  }
  const RetryPolicy& r = options.retry;
  if (r.base.count() <= 0 || r.max < r.base || r.max_attempts < 1 || r.max_attempts > 100 ||
      r.jitter < 0 || r.jitter >= 1) {
    return core::InvalidArgument(
        "webhooks retry policy: need 0 < base <= max, 1 <= max_attempts <= 100, 0 <= jitter < 1",
        "retry");
  }
  if (options.request_timeout.count() <= 0 || options.poll_interval.count() <= 0 ||
      options.workers < 1 || options.workers > 64) {
    return core::InvalidArgument(
        "webhooks options: request_timeout and poll_interval must be positive, workers 1..64",
        "workers");
  }
  Metrics::Get();  // the families exist (at zero) before the first delivery
  return std::unique_ptr<Webhooks>(new Webhooks(log, std::move(options)));
}

Webhooks::Webhooks(store::EventLog& log, WebhooksOptions options)
    : log_(log), db_(log.database()), options_(std::move(options)) {}

Webhooks::~Webhooks() {
  Stop();
}

Status Webhooks::Start() {
  {
    std::lock_guard lock(mu_);
    if (started_)
      return core::FailedPrecondition("webhooks already started");
    started_ = true;
  }
  ASSIGN_OR_RETURN(subscription_,
                   log_.SubscribeDurable(options_.subscriber_name,
                                         [this](const Event& e) { return FanOut(e); }));
  for (int i = 0; i < options_.workers; ++i)
    workers_.emplace_back([this] { WorkerLoop(); });
  core::LogInfo("webhooks started",
                {{"event.action", "webhooks.started"}, {"webhooks.workers", options_.workers}});
  return core::Ok();
}

void Webhooks::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  subscription_.reset();  // joins the fan-out thread
  for (auto& t : workers_) {
    if (t.joinable())
      t.join();
  }
  workers_.clear();
}

// ---------------------------------------------------------------------------
// Commands

Result<CreatedSubscription> Webhooks::Create(NewSubscription request, const CommandContext& ctx) {
  RETURN_IF_ERROR(ParseTargetUrl(request.url));
  if (request.event_types.empty()) {
    return core::InvalidArgument(
        "field \"event_types\": must list at least one event type, \"prefix.*\" or \"*\"",
        "event_types");
  }
  if (request.event_types.size() > kMaxEventTypes) {
    return core::InvalidArgument(fmt::format("field \"event_types\": at most {} patterns, got {}",
                                             kMaxEventTypes, request.event_types.size()),
                                 "event_types");
  }
  for (size_t i = 0; i < request.event_types.size(); ++i)
    RETURN_IF_ERROR(ValidateTypePattern(request.event_types[i], fmt::format("event_types[{}]", i)));
  RETURN_IF_ERROR(ValidateProject(request.project));
  if (request.description.size() > kMaxDescription) {
    return core::InvalidArgument(fmt::format("field \"description\": at most {} characters, got {}",
                                             kMaxDescription, request.description.size()),
                                 "description");
  }
  std::string secret = request.secret;
  if (secret.empty())
    secret = "whsec_" + core::RandomAlphanumeric(32);
  else
    RETURN_IF_ERROR(ValidateSecret(secret));
  ASSIGN_OR_RETURN(std::string sealed, core::SealSecret(options_.secret_key, secret));

  Subscription s;
  s.id = SubscriptionId(core::NewUuidV7());
  s.url = request.url;
  s.event_types = request.event_types;
  s.project = request.project;
  s.description = request.description;
  s.active = request.active;
  s.created_by = ctx.actor;
  const std::string types_text = Json(s.event_types).dump();

  ASSIGN_OR_RETURN(auto events, log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(Event e, tx.Append(Draft("webhook.created", s, ctx,
                                              {{"url", s.url},
                                               {"event_types", s.event_types},
                                               {"project", s.project},
                                               {"description", s.description},
                                               {"active", s.active}})));
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO webhook_subscriptions (id, url, event_types, project, description, "
        "secret_sealed, active, created_by, created_seq, created_us, updated_us) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {s.id.value(), s.url, types_text, s.project, s.description, sealed,
         int64_t{s.active ? 1 : 0}, s.created_by, e.seq, e.time_us, e.time_us}));
    return core::Ok();
  }));
  s.created_seq = events.at(0).seq;
  s.created_us = s.updated_us = events.at(0).time_us;
  return CreatedSubscription{std::move(s), std::move(secret)};
}

Status Webhooks::Delete(const SubscriptionId& id, const CommandContext& ctx) {
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    store::Connection& c = tx.conn();
    ASSIGN_OR_RETURN(auto s, LoadSubscription(c, id));
    if (!s)
      return UnknownSubscription(id);
    RETURN_IF_ERROR(
        c.Exec("DELETE FROM webhook_attempts WHERE delivery_id IN "
               "(SELECT id FROM webhook_deliveries WHERE subscription_id = ?)",
               {id.value()}));
    RETURN_IF_ERROR(
        c.Exec("DELETE FROM webhook_deliveries WHERE subscription_id = ?", {id.value()}));
    RETURN_IF_ERROR(c.Exec("DELETE FROM webhook_subscriptions WHERE id = ?", {id.value()}));
    RETURN_IF_ERROR(tx.Append(Draft("webhook.deleted", *s, ctx, {{"url", s->url}})));
    return core::Ok();
  }));
  return core::Ok();
}

Result<Subscription> Webhooks::SetActive(const SubscriptionId& id, bool active,
                                         const CommandContext& ctx) {
  Subscription out;
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(auto s, LoadSubscription(tx.conn(), id));
    if (!s)
      return UnknownSubscription(id);
    out = *s;
    if (s->active == active)
      return core::Ok();  // nothing changes, so nothing is recorded
    ASSIGN_OR_RETURN(Event e, tx.Append(Draft(active ? "webhook.resumed" : "webhook.paused", *s,
                                              ctx, Json::object())));
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE webhook_subscriptions SET active = ?, updated_us = ? WHERE id = ?",
                       {int64_t{active ? 1 : 0}, e.time_us, id.value()}));
    out.active = active;
    out.updated_us = e.time_us;
    return core::Ok();
  }));
  if (active) {
    std::lock_guard lock(mu_);
    ++wakeups_;
    wake_.notify_all();
  }
  return out;
}

Result<Event> Webhooks::Ping(const SubscriptionId& id, const CommandContext& ctx) {
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(auto s, LoadSubscription(tx.conn(), id));
    if (!s)
      return UnknownSubscription(id);
    if (!s->active) {
      return core::FailedPrecondition(
          fmt::format("webhook \"{}\" is paused; resume it before pinging", id.value()));
    }
    RETURN_IF_ERROR(tx.Append(Draft("webhook.pinged", *s, ctx, Json::object())));
    return core::Ok();
  }));
  return events.at(0);
}

// ---------------------------------------------------------------------------
// Queries

Result<Subscription> Webhooks::Get(const SubscriptionId& id) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto s, LoadSubscription(*conn, id));
  if (!s)
    return UnknownSubscription(id);
  return std::move(*s);
}

Result<std::vector<Subscription>> Webhooks::List(const SubscriptionListQuery& query) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(Rows rows, conn->Query(fmt::format("SELECT {} FROM webhook_subscriptions "
                                                      "WHERE id > ? ORDER BY id LIMIT ?",
                                                      kSubscriptionColumns),
                                          {query.after_id, int64_t{query.limit}}));
  std::vector<Subscription> out;
  for (const Row& r : rows)
    out.push_back(SubscriptionFromRow(r));
  return out;
}

Result<std::vector<Delivery>> Webhooks::ListDeliveries(const SubscriptionId& id,
                                                       const DeliveryListQuery& query) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto s, LoadSubscription(*conn, id));
  if (!s)
    return UnknownSubscription(id);
  std::string sql = fmt::format(
      "SELECT {} FROM webhook_deliveries WHERE subscription_id = ? AND id > ?", kDeliveryColumns);
  std::vector<store::Value> params = {id.value(), query.after_id};
  if (query.status) {
    sql += " AND status = ?";
    params.emplace_back(std::string(DeliveryStatusName(*query.status)));
  }
  sql += " ORDER BY id LIMIT ?";
  params.emplace_back(int64_t{query.limit});
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  std::vector<Delivery> out;
  for (const Row& r : rows)
    out.push_back(DeliveryFromRow(r));
  return out;
}

Result<Delivery> Webhooks::GetDelivery(const SubscriptionId& id, const DeliveryId& delivery) {
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto s, LoadSubscription(*conn, id));
  if (!s)
    return UnknownSubscription(id);
  ASSIGN_OR_RETURN(Rows rows,
                   conn->Query(fmt::format("SELECT {} FROM webhook_deliveries WHERE id = ? AND "
                                           "subscription_id = ?",
                                           kDeliveryColumns),
                               {delivery.value(), id.value()}));
  if (rows.empty()) {
    return core::NotFound(
        fmt::format("delivery \"{}\" of webhook \"{}\" not found", delivery.value(), id.value()));
  }
  Delivery d = DeliveryFromRow(rows[0]);
  ASSIGN_OR_RETURN(Rows attempts,
                   conn->Query("SELECT attempt, time_us, http_status, latency_us, error FROM "
                               "webhook_attempts WHERE delivery_id = ? ORDER BY attempt",
                               {delivery.value()}));
  for (const Row& r : attempts) {
    d.attempt_log.push_back({.number = static_cast<int>(r.Int(0)),
                             .time_us = r.Int(1),
                             .http_status = static_cast<int>(r.Int(2)),
                             .latency_us = r.Int(3),
                             .error = r.Text(4)});
  }
  return d;
}

// ---------------------------------------------------------------------------
// Fan-out

Status Webhooks::FanOut(const Event& event) {
  std::lock_guard fanout_lock(fanout_mu_);
  // Events about webhooks are not sent to webhooks (a subscription for "*"
  // would otherwise learn about every other subscription's URL), except a
  // ping, which goes to the one subscription it names.
  const bool about_webhooks = event.type.starts_with("webhook.");
  const bool ping = event.type == "webhook.pinged";
  if (about_webhooks)
    active_.reset();
  if (about_webhooks && !ping)
    return core::Ok();
  if (!active_) {
    ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
    ASSIGN_OR_RETURN(Rows rows, conn->Query(fmt::format("SELECT {} FROM webhook_subscriptions "
                                                        "WHERE active = 1 ORDER BY id",
                                                        kSubscriptionColumns)));
    active_.emplace();
    for (const Row& r : rows)
      active_->push_back(SubscriptionFromRow(r));
  }
  std::vector<SubscriptionId> targets;
  for (const Subscription& s : *active_) {
    // Only subscriptions that existed when the event was committed: a
    // subscriber catching up must not send a new subscription old history.
    if (s.created_seq >= event.seq)
      continue;
    if (ping ? s.id.value() == event.subject_id : s.Wants(event.type, event.project))
      targets.push_back(s.id);
  }
  if (targets.empty())
    return core::Ok();
  const int64_t now = core::NowMicros();
  int64_t inserted = 0;
  ASSIGN_OR_RETURN(store::PooledConnection conn, db_.Acquire());
  RETURN_IF_ERROR(store::InTransaction(*conn, [&](store::Connection& c) -> Status {
    inserted = 0;
    for (const auto& id : targets) {
      ASSIGN_OR_RETURN(
          int64_t n,
          c.Exec("INSERT INTO webhook_deliveries (id, subscription_id, event_seq, event_type, "
                 "status, attempts, next_attempt_us, last_status, last_error, created_us, "
                 "updated_us) VALUES (?, ?, ?, ?, 'pending', 0, ?, 0, '', ?, ?) "
                 "ON CONFLICT (subscription_id, event_seq) DO NOTHING",
                 {core::NewUuidV7(), id.value(), event.seq, event.type, now, now, now}));
      inserted += n;
    }
    return core::Ok();
  }));
  if (inserted > 0) {
    std::lock_guard lock(mu_);
    ++wakeups_;
    wake_.notify_all();
  }
  return core::Ok();
}

// ---------------------------------------------------------------------------
// Delivery

void Webhooks::WorkerLoop() {
  for (;;) {
    uint64_t seen;
    {
      std::lock_guard lock(mu_);
      if (stopping_)
        return;
      seen = wakeups_;
    }
    RefreshPendingGauge();
    if (DeliverOne())
      continue;
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, options_.poll_interval, [&] { return stopping_ || wakeups_ != seen; });
  }
}

void Webhooks::RefreshPendingGauge() {
  {
    std::lock_guard lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (now - gauge_refreshed_ < kPendingGaugeEvery)
      return;
    gauge_refreshed_ = now;
  }
  auto conn = db_.Acquire();
  if (!conn)
    return;
  auto rows = (*conn)->Query("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'");
  if (rows && !rows->empty())
    Metrics::Get().pending.Set(static_cast<double>((*rows)[0].Int(0)));
}

bool Webhooks::DeliverOne() {
  auto warn = [](std::string_view what, const core::Error& e) {
    core::LogWarn(fmt::format("webhook delivery: {}: {}", what, e.message),
                  {{"event.action", "webhooks.worker_error"}});
  };
  const int64_t now = core::NowMicros();
  const int64_t lease_us =
      std::chrono::duration_cast<std::chrono::microseconds>(options_.request_timeout + kClaimMargin)
          .count();

  // Claim: move next_attempt_us past the lease with a compare-and-set, so
  // exactly one worker (of any server sharing the database) owns the
  // attempt. If this process dies mid-attempt, the claim lapses and the
  // delivery is attempted again (at-least-once).
  std::string id, subscription_id, event_type, url, sealed;
  int64_t event_seq = 0;
  int attempts = 0;
  {
    auto conn = db_.Acquire();
    if (!conn) {
      warn("cannot get a connection", conn.error());
      return false;
    }
    auto due = (*conn)->Query(
        "SELECT d.id, d.next_attempt_us FROM webhook_deliveries d JOIN webhook_subscriptions s "
        "ON s.id = d.subscription_id WHERE d.status = 'pending' AND d.next_attempt_us <= ? AND "
        "s.active = 1 ORDER BY d.next_attempt_us LIMIT ?",
        {now, int64_t{kClaimCandidates}});
    if (!due) {
      warn("cannot read due deliveries", due.error());
      return false;
    }
    if (due->empty())
      return false;
    for (const Row& r : *due) {
      auto claimed = (*conn)->Exec(
          "UPDATE webhook_deliveries SET next_attempt_us = ? "
          "WHERE id = ? AND status = 'pending' AND next_attempt_us = ?",
          {now + lease_us, r.Text(0), r.Int(1)});
      if (!claimed) {
        warn("cannot claim a delivery", claimed.error());
        return false;
      }
      if (*claimed == 1) {
        id = r.Text(0);
        break;
      }
    }
    if (id.empty())
      return true;  // others won every candidate; look again at once
    auto row = (*conn)->Query(
        "SELECT d.subscription_id, d.event_seq, d.event_type, d.attempts, s.url, s.secret_sealed "
        "FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id "
        "WHERE d.id = ?",
        {id});
    if (!row || row->empty())
      return true;  // deleted meanwhile, or unreadable: the claim lapses
    const Row& r = row->front();
    subscription_id = r.Text(0);
    event_seq = r.Int(1);
    event_type = r.Text(2);
    attempts = static_cast<int>(r.Int(3));
    url = r.Text(4);
    sealed = r.Text(5);
  }  // the connection goes back to the pool before the (slow) HTTP call

  // The attempt. Anything that keeps it from reaching the receiver is
  // recorded like a receiver error and retried on the same schedule.
  int http_status = 0;
  std::string error;
  int64_t latency_us = 0;
  auto events = log_.Read({.after_seq = event_seq - 1, .limit = 1});
  auto secret = core::OpenSecret(options_.secret_key, sealed);
  auto target = ParseTargetUrl(url);
  if (!events || events->empty() || events->front().seq != event_seq) {
    error = events ? fmt::format("event {} not found in the event log", event_seq)
                   : "cannot read the event: " + events.error().message;
  } else if (!secret) {
    error = "cannot open the webhook's secret (was the secret key changed?)";
  } else if (!target) {
    error = target.error().message;
  } else {
    // Replace rather than throw on invalid UTF-8: an exception here would
    // end the worker thread (and the process).
    const std::string body =
        events->front().ToJson().dump(-1, ' ', false, Json::error_handler_t::replace);
    const int64_t unix_seconds = core::NowMicros() / 1000000;
    http::HeaderList headers = {
        {"Content-Type", "application/json"},
        {"X-Kervan-Event", event_type},
        {"X-Kervan-Delivery", id},
        {"X-Kervan-Signature", SignatureHeader(*secret, body, unix_seconds)},
    };
    auto started = std::chrono::steady_clock::now();
    auto response = http::Client(target->base)
                        .Send("POST", target->target, body, headers, options_.request_timeout);
    latency_us = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count();
    Metrics::Get().duration.Observe(static_cast<double>(latency_us) / 1e6);
    if (!response) {
      error = response.error().message;
    } else {
      http_status = response->status;
      if (http_status < 200 || http_status >= 300) {
        error = fmt::format("receiver answered HTTP {}", http_status);
        if (!response->body.empty())
          error += ": " + Printable(response->body, kBodySnippetChars);
      }
    }
  }
  error = Printable(error, kMaxErrorChars);

  const int attempt = attempts + 1;
  const int64_t finished = core::NowMicros();
  DeliveryStatus status = DeliveryStatus::kPending;
  int64_t next_attempt_us = finished;
  if (error.empty()) {
    status = DeliveryStatus::kDelivered;
  } else if (attempt >= options_.retry.max_attempts) {
    status = DeliveryStatus::kFailed;
  } else {
    next_attempt_us += std::chrono::duration_cast<std::chrono::microseconds>(
                           BackoffDelay(options_.retry, attempt, RandomUnit()))
                           .count();
  }

  auto conn = db_.Acquire();
  Status recorded = conn ? Status() : Status(conn.error());
  if (conn) {
    recorded = store::InTransaction(**conn, [&](store::Connection& c) -> Status {
      // `attempts = ?` keeps a late writer (whose claim lapsed and was taken
      // over) from overwriting a newer outcome.
      ASSIGN_OR_RETURN(
          int64_t changed,
          c.Exec("UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_us = ?, "
                 "last_status = ?, last_error = ?, updated_us = ? WHERE id = ? AND attempts = ?",
                 {std::string(DeliveryStatusName(status)), int64_t{attempt}, next_attempt_us,
                  int64_t{http_status}, error, finished, id, int64_t{attempts}}));
      if (changed == 0)
        return core::Ok();  // deleted meanwhile, or taken over
      RETURN_IF_ERROR(c.Exec(
          "INSERT INTO webhook_attempts (delivery_id, attempt, time_us, http_status, latency_us, "
          "error) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id, attempt) DO NOTHING",
          {id, int64_t{attempt}, finished, int64_t{http_status}, latency_us, error}));
      return core::Ok();
    });
  }
  if (!recorded) {
    // The claim lapses and the delivery is attempted again: at-least-once.
    warn("cannot record an attempt", recorded.error());
    return true;
  }
  Metrics& m = Metrics::Get();
  switch (status) {
    case DeliveryStatus::kDelivered:
      m.delivered.Inc();
      break;
    case DeliveryStatus::kPending:
      m.retry.Inc();
      core::Log(core::LogLevel::kDebug, "webhook delivery attempt failed; will retry",
                {{"event.action", "webhooks.delivery_retry"},
                 {"webhooks.delivery_id", id},
                 {"webhooks.subscription_id", subscription_id},
                 {"webhooks.attempt", attempt},
                 {"error.message", error}});
      break;
    case DeliveryStatus::kFailed:
      m.failed.Inc();
      core::LogWarn("webhook delivery failed after its last attempt",
                    {{"event.action", "webhooks.delivery_failed"},
                     {"webhooks.delivery_id", id},
                     {"webhooks.subscription_id", subscription_id},
                     {"event.sequence", event_seq},
                     {"webhooks.attempt", attempt},
                     {"error.message", error}});
      break;
  }
  return true;
}

}  // namespace kervan::webhooks
