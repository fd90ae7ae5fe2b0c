// Client commands for webhook subscriptions and their deliveries
// (/api/v1/webhooks, see docs/webhooks.md).
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

std::string JoinTypes(const Json& list) {
  std::string out;
  if (!list.is_array())
    return out;
  for (const auto& v : list)
    out += (out.empty() ? "" : ",") + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

std::vector<std::string> SubscriptionRow(const Json& s) {
  return {Str(s, "id"),
          Str(s, "url"),
          JoinTypes(s.value("event_types", Json::array())),
          Str(s, "project").empty() ? "(all)" : Str(s, "project"),
          s.value("active", true) ? "active" : "paused",
          Str(s, "created_by"),
          Str(s, "description")};
}
const std::vector<std::string> kSubscriptionHeader = {
    "ID", "URL", "EVENTS", "PROJECT", "STATUS", "CREATED_BY", "DESCRIPTION"};

void PrintSubscription(const ClientOptions& o, const Json& s) {
  if (PrintedJson(o, s))
    return;
  std::cout << Fields({{"webhook", Str(s, "id")},
                       {"url", Str(s, "url")},
                       {"events", JoinTypes(s.value("event_types", Json::array()))},
                       {"project", Str(s, "project").empty() ? "(all)" : Str(s, "project")},
                       {"status", s.value("active", true) ? "active" : "paused"},
                       {"description", Str(s, "description")},
                       {"created", ShortTime(Str(s, "created_at")) + " by " + Str(s, "created_by") +
                                       " (after event " + Str(s, "created_seq") + ")"}});
}

std::vector<std::string> DeliveryRow(const Json& d) {
  std::string status = Str(d, "status");
  if (status == "pending" && !Str(d, "next_attempt_at").empty())
    status += " (next " + ShortTime(Str(d, "next_attempt_at")) + ")";
  return {Str(d, "id"),         Str(d, "event_seq"),
          Str(d, "event_type"), status,
          Str(d, "attempts"),   d.value("last_status", 0) ? Str(d, "last_status") : "-",
          Str(d, "last_error")};
}
const std::vector<std::string> kDeliveryHeader = {"ID",       "EVENT_SEQ", "EVENT_TYPE", "STATUS",
                                                  "ATTEMPTS", "LAST_HTTP", "LAST_ERROR"};

}  // namespace

void AddWebhookCommands(CLI::App& app, ClientOptions& o, int& rc) {
  auto* webhook = app.add_subcommand(
      "webhook", "Webhook subscriptions: events POSTed to your URL, signed, retried with backoff");
  webhook->require_subcommand(1);
  struct Args {
    std::string url, project, description, secret, id, delivery_id, status;
    std::vector<std::string> events;
  };
  auto a = std::make_shared<Args>();
  auto path = [a] { return "/api/v1/webhooks/" + Seg(a->id); };

  auto* create = webhook->add_subcommand(
      "create", "Subscribe a URL to event types; the signing secret is printed once");
  AddClientFlags(create, o, "--server-url");
  create->add_option("--url", a->url, "http://host[:port]/path that receives the events")
      ->required();
  create
      ->add_option("--event", a->events,
                   "event type: exact (model_version.approved), prefix (model_version.*) or *; "
                   "repeatable")
      ->required()
      ->allow_extra_args(false);
  create->add_option("--project", a->project, "only this project's events (default: all)");
  create->add_option("--description", a->description, "what the receiver does");
  create->add_option("--secret", a->secret,
                     "HMAC signing secret (default: the server generates one)");
  create->callback([&o, &rc, a] {
    Json body = {{"url", a->url}, {"event_types", a->events}};
    if (!a->project.empty())
      body["project"] = a->project;
    if (!a->description.empty())
      body["description"] = a->description;
    if (!a->secret.empty())
      body["secret"] = a->secret;
    auto r = Call(o, "POST", "/api/v1/webhooks", body);
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    PrintSubscription(o, *r);
    std::cout << "\nsigning secret: " << Str(*r, "secret") << "\n";
    std::cerr << "warning: store the secret now; it is shown only once. Receivers verify the "
                 "X-Kervan-Signature header with it (docs/webhooks.md)\n";
  });

  auto* list = webhook->add_subcommand("list", "List webhook subscriptions");
  AddClientFlags(list, o);
  list->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/webhooks?limit=1000");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : (*r)["items"])
      rows.push_back(SubscriptionRow(s));
    std::cout << Table(kSubscriptionHeader, rows);
  });

  auto* get = webhook->add_subcommand("get", "Show one subscription");
  AddClientFlags(get, o);
  get->add_option("id", a->id, "subscription id")->required();
  get->callback([&o, &rc, path] {
    auto r = Call(o, "GET", path());
    if (!r)
      return void(rc = 1);
    PrintSubscription(o, *r);
  });

  auto* del = webhook->add_subcommand("delete", "Delete a subscription; nothing more is sent");
  AddClientFlags(del, o);
  del->add_option("id", a->id, "subscription id")->required();
  del->callback([&o, &rc, a, path] {
    auto r = Call(o, "DELETE", path());
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r))
      std::cout << "webhook " << a->id << " deleted\n";
  });

  for (std::string verb : {"pause", "resume"}) {
    auto* cmd = webhook->add_subcommand(
        verb, verb == "pause" ? "Stop sending (events are still recorded and sent on resume)"
                              : "Send again, including what was held while paused");
    AddClientFlags(cmd, o);
    cmd->add_option("id", a->id, "subscription id")->required();
    cmd->callback([&o, &rc, path, verb] {
      auto r = Call(o, "POST", path() + "/" + verb, Json::object());
      if (!r)
        return void(rc = 1);
      PrintSubscription(o, *r);
    });
  }

  auto* ping = webhook->add_subcommand(
      "ping", "Send a webhook.ping event to this subscription (see it with `webhook deliveries`)");
  AddClientFlags(ping, o);
  ping->add_option("id", a->id, "subscription id")->required();
  ping->callback([&o, &rc, a, path] {
    auto r = Call(o, "POST", path() + "/ping", Json::object());
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r)) {
      std::cout << fmt::format("ping queued as event {} for webhook {}\n",
                               Str(r->value("event", Json::object()), "seq"), a->id);
    }
  });

  auto* deliveries =
      webhook->add_subcommand("deliveries", "A subscription's deliveries and their status");
  AddClientFlags(deliveries, o);
  deliveries->add_option("id", a->id, "subscription id")->required();
  deliveries->add_option("--status", a->status, "pending, delivered or failed")
      ->check(CLI::IsMember({"pending", "delivered", "failed"}));
  deliveries->callback([&o, &rc, a, path] {
    auto r =
        Call(o, "GET", path() + "/deliveries" + Query({{"status", a->status}, {"limit", "1000"}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : (*r)["items"])
      rows.push_back(DeliveryRow(d));
    std::cout << Table(kDeliveryHeader, rows);
  });

  auto* delivery =
      webhook->add_subcommand("delivery", "One delivery with every attempt (HTTP status, error)");
  AddClientFlags(delivery, o);
  delivery->add_option("id", a->id, "subscription id")->required();
  delivery->add_option("delivery_id", a->delivery_id, "delivery id")->required();
  delivery->callback([&o, &rc, a, path] {
    auto r = Call(o, "GET", path() + "/deliveries/" + Seg(a->delivery_id));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << Table(kDeliveryHeader, {DeliveryRow(*r)}) << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& at : r->value("attempt_log", Json::array())) {
      rows.push_back({Str(at, "attempt"), ShortTime(Str(at, "time"), true),
                      at.value("http_status", 0) ? Str(at, "http_status") : "-",
                      Str(at, "latency_ms"), Str(at, "error")});
    }
    std::cout << Table({"ATTEMPT", "TIME", "HTTP", "LATENCY_MS", "ERROR"}, rows);
  });
}

}  // namespace kervan::app
