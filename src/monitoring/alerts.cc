// Alerts: recorded in the `alerts` table, announced as events, sent to
// Alertmanager's API v2 (POST /api/v2/alerts) as firing (no endsAt) or
// resolved (endsAt = the resolution time).
#include <fmt/format.h>

#include "monitoring/monitoring.h"

namespace kervan::monitoring {
namespace {

Json ParseOr(const std::string& text, Json fallback) {
  auto parsed = core::ParseJson(text);
  return parsed ? std::move(*parsed) : fallback;
}

core::Family<core::Gauge>& FiringGauge() {
  static core::Family<core::Gauge>& g = core::GlobalMetrics().AddGauge(
      "kervan_alerts_firing", "Alerts raised by rules that are firing now", {});
  return g;
}

Alert AlertFromRow(const store::Row& r) {
  Alert a;
  a.key = r.Text(0);
  a.rule = r.Text(1);
  a.subject = r.Text(2);
  a.severity = r.Text(3);
  a.summary = r.Text(4);
  a.description = r.Text(5);
  const Json items_of = ParseOr(r.Text(6), Json::object());
  for (const auto& [k, v] : items_of.items()) {
    if (v.is_string())
      a.labels[k] = v.get<std::string>();
  }
  a.state = r.Text(7);
  a.starts_us = r.Int(8);
  a.ends_us = r.Int(9);
  a.last_sent_us = r.Int(10);
  a.send_error = r.Text(11);
  return a;
}

constexpr std::string_view kAlertColumns =
    "alert_key, rule, subject, severity, summary, description, labels, state, starts_us, "
    "ends_us, last_sent_us, send_error";

}  // namespace

Json Alert::ToJson() const {
  return {{"key", key},
          {"rule", rule},
          {"subject", subject},
          {"severity", severity},
          {"summary", summary},
          {"description", description},
          {"labels", labels},
          {"state", state},
          {"starts_at", core::FormatRfc3339(starts_us)},
          {"ends_at", ends_us ? Json(core::FormatRfc3339(ends_us)) : Json(nullptr)},
          {"last_sent_at", last_sent_us ? Json(core::FormatRfc3339(last_sent_us)) : Json(nullptr)},
          {"send_error", send_error}};
}

Alerts::Alerts(store::Database& db, store::EventLog& log, AlertsOptions options)
    : db_(db), log_(log), options_(std::move(options)) {
  CountFiring();
}

// The gauge counts the table, so a restart does not reset it.
void Alerts::CountFiring() {
  auto conn = db_.Acquire();
  if (!conn)
    return;
  auto rows = (*conn)->Query("SELECT COUNT(*) FROM alerts WHERE state = 'firing'");
  if (rows && !rows->empty())
    FiringGauge().With({}).Set(static_cast<double>((*rows)[0].Int(0)));
}

Status Alerts::Send(const Alert& alert, int64_t now_us) {
  if (options_.alertmanager_url.empty())
    return core::Ok();
  Json labels = {{"alertname", alert.rule},
                 {"severity", alert.severity},
                 {"subject", alert.subject},
                 {"source", "kervan"}};
  for (const auto& [k, v] : alert.labels)
    labels[k] = v;
  Json item = {{"labels", labels},
               {"annotations", {{"summary", alert.summary}, {"description", alert.description}}},
               {"startsAt", core::FormatRfc3339(alert.starts_us)}};
  if (!options_.generator_url.empty())
    item["generatorURL"] = options_.generator_url;
  if (alert.state == "resolved")
    item["endsAt"] = core::FormatRfc3339(alert.ends_us > 0 ? alert.ends_us : now_us);
  http::Client client(options_.alertmanager_url);
  ASSIGN_OR_RETURN(auto resp,
                   client.Send("POST", "/api/v2/alerts", Json::array({item}).dump(),
                               {{"Content-Type", "application/json"}}, options_.timeout));
  if (resp.status / 100 != 2) {
    return core::Error{
        .code = core::ErrorCode::kUnavailable,
        .message = fmt::format("Alertmanager at {} answered {}: {}", options_.alertmanager_url,
                               resp.status, resp.body.substr(0, 200))};
  }
  return core::Ok();
}

Result<Alert> Alerts::Fire(const AlertRequest& request, const store::CommandContext& ctx) {
  int64_t now = core::NowMicros();
  Alert a;
  bool was_firing = false;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM alerts WHERE alert_key = ?",
                                                        kAlertColumns),
                                            {request.key}));
    if (!rows.empty()) {
      a = AlertFromRow(rows[0]);
      was_firing = a.state == "firing";
    }
  }
  a.key = request.key;
  a.rule = request.rule;
  a.subject = request.subject;
  a.severity = request.severity;
  a.summary = request.summary;
  a.description = request.description;
  a.labels = request.labels;
  if (!was_firing) {
    a.starts_us = now;
    a.ends_us = 0;
  }
  a.state = "firing";
  Status sent = Send(a, now);
  a.last_sent_us = sent ? now : a.last_sent_us;
  a.send_error = sent ? "" : sent.error().message;
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    RETURN_IF_ERROR(tx.conn().Exec(
        "INSERT INTO alerts (alert_key, rule, subject, severity, summary, description, "
        "labels, state, starts_us, ends_us, last_sent_us, send_error) VALUES (?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_key) DO UPDATE SET rule = "
        "excluded.rule, subject = excluded.subject, severity = excluded.severity, "
        "summary = excluded.summary, description = excluded.description, labels = "
        "excluded.labels, state = excluded.state, starts_us = excluded.starts_us, "
        "ends_us = excluded.ends_us, last_sent_us = excluded.last_sent_us, send_error = "
        "excluded.send_error",
        {a.key, a.rule, a.subject, a.severity, a.summary, a.description, Json(a.labels).dump(),
         a.state, a.starts_us, a.ends_us, a.last_sent_us, a.send_error}));
    if (was_firing)
      return core::Ok();
    return core::StatusOf(tx.Append({.type = "alert.firing",
                                     .subject_kind = "alert",
                                     .subject_id = a.key,
                                     .actor = ctx.actor,
                                     .correlation_id = ctx.correlation_id,
                                     .causation_id = ctx.causation_id,
                                     .project = ctx.project,
                                     .data = a.ToJson()}));
  }));
  (void)events;
  CountFiring();
  if (!sent)
    return sent.error();
  return a;
}

Status Alerts::Resolve(const std::string& key, const store::CommandContext& ctx) {
  Alert a;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format("SELECT {} FROM alerts WHERE alert_key = ?",
                                                        kAlertColumns),
                                            {key}));
    if (rows.empty())
      return core::Ok();
    a = AlertFromRow(rows[0]);
  }
  if (a.state != "firing")
    return core::Ok();
  int64_t now = core::NowMicros();
  a.state = "resolved";
  a.ends_us = now;
  Status sent = Send(a, now);
  a.last_sent_us = sent ? now : a.last_sent_us;
  a.send_error = sent ? "" : sent.error().message;
  ASSIGN_OR_RETURN(auto events, log_.Execute([&](store::CommandTx& tx) -> Status {
    RETURN_IF_ERROR(
        tx.conn().Exec("UPDATE alerts SET state = ?, ends_us = ?, last_sent_us = ?, "
                       "send_error = ? WHERE alert_key = ?",
                       {a.state, a.ends_us, a.last_sent_us, a.send_error, a.key}));
    return core::StatusOf(tx.Append({.type = "alert.resolved",
                                     .subject_kind = "alert",
                                     .subject_id = a.key,
                                     .actor = ctx.actor,
                                     .correlation_id = ctx.correlation_id,
                                     .causation_id = ctx.causation_id,
                                     .project = ctx.project,
                                     .data = a.ToJson()}));
  }));
  (void)events;
  CountFiring();
  return sent;
}

Result<std::vector<Alert>> Alerts::List(bool firing_only) {
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(auto rows, conn->Query(fmt::format(
                                  "SELECT {} FROM alerts {} ORDER BY starts_us DESC", kAlertColumns,
                                  firing_only ? "WHERE state = 'firing'" : "")));
  std::vector<Alert> out;
  for (const auto& r : rows)
    out.push_back(AlertFromRow(r));
  return out;
}

Status Alerts::Resend(int64_t now_us) {
  if (options_.alertmanager_url.empty())
    return core::Ok();
  ASSIGN_OR_RETURN(auto all, List(false));
  int64_t due =
      now_us -
      std::chrono::duration_cast<std::chrono::microseconds>(options_.resend_interval).count();
  for (const auto& a : all) {
    bool failed = !a.send_error.empty();
    if (a.state == "resolved" && !failed)
      continue;
    if (!failed && a.last_sent_us > due)
      continue;
    Status sent = Send(a, now_us);
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    RETURN_IF_ERROR(conn->Exec(
        "UPDATE alerts SET last_sent_us = ?, send_error = ? WHERE "
        "alert_key = ?",
        {sent ? now_us : a.last_sent_us, sent ? std::string() : sent.error().message, a.key}));
  }
  return core::Ok();
}

}  // namespace kervan::monitoring
