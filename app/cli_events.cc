// Client commands over the foundation's read API: declared lifecycles, the
// entity projection and the raw event log.
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

const std::vector<std::string> kEventHeader = {"SEQ", "TIME", "TYPE", "SUBJECT", "ACTOR", "REASON"};

std::vector<std::string> EventRow(const Json& e) {
  Json subject = e.value("subject", Json::object());
  return {Str(e, "seq"),   ShortTime(Str(e, "time"), /*millis=*/true),
          Str(e, "type"),  Str(subject, "kind") + "/" + Str(subject, "id"),
          Str(e, "actor"), Str(e, "reason")};
}

void PrintEntity(const ClientOptions& o, const Json& e) {
  if (PrintedJson(o, e))
    return;
  std::cout << Table({"KIND", "ID", "STATE", "UPDATED_SEQ", "UPDATED_AT", "DATA"},
                     {{Str(e, "kind"), Str(e, "id"), Str(e, "state"), Str(e, "updated_seq"),
                       ShortTime(Str(e, "updated_at")), e.value("data", Json::object()).dump()}});
}

void PrintEvents(const ClientOptions& o, const Json& whole) {
  if (PrintedJson(o, whole))
    return;
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : whole.value("events", Json::array()))
    rows.push_back(EventRow(e));
  std::cout << Table(kEventHeader, rows);
}

}  // namespace

void AddEventCommands(CLI::App& app, ClientOptions& o, int& rc) {
  // ---- lifecycles -----------------------------------------------------------
  auto* lifecycles = app.add_subcommand(
      "lifecycles", "Show declared lifecycles (state machines): states, transitions, permissions");
  auto kind = std::make_shared<std::string>();
  AddClientFlags(lifecycles, o);
  lifecycles->add_option("kind", *kind, "show one kind's states and transitions");
  lifecycles->callback([&o, &rc, kind] {
    auto r =
        Call(o, "GET", kind->empty() ? "/api/v1/lifecycles" : "/api/v1/lifecycles/" + Seg(*kind));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<Json> machines =
        kind->empty() ? (*r)["items"].get<std::vector<Json>>() : std::vector<Json>{*r};
    for (const auto& m : machines) {
      std::cout << Str(m, "kind") << " (initial " << Str(m, "initial_state") << ")\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& t : m["transitions"]) {
        std::string from;
        for (const auto& f : t["from"])
          from += (from.empty() ? "" : ",") + f.get<std::string>();
        rows.push_back({Str(t, "name"), from, Str(t, "to"), Str(t, "event"),
                        t.value("reason_required", false) ? "yes" : "no", Str(t, "permission")});
      }
      std::cout << Table({"TRANSITION", "FROM", "TO", "EVENT", "REASON", "PERMISSION"}, rows)
                << "\n";
    }
  });

  // ---- entities (read only: each module owns its writes) --------------------
  auto* entity = app.add_subcommand(
      "entity", "Read any entity's current state and timeline (modules own the writes)");
  entity->require_subcommand(1);
  struct EntityArgs {
    std::string kind, id, state;
  };
  auto a = std::make_shared<EntityArgs>();

  auto* get = entity->add_subcommand("get", "Show one entity's current state");
  AddClientFlags(get, o);
  get->add_option("kind", a->kind, "entity kind, e.g. model_version")->required();
  get->add_option("id", a->id, "entity id, e.g. credit-risk:1")->required();
  get->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/entities/" + Seg(a->kind) + "/" + Seg(a->id));
    if (!r)
      return void(rc = 1);
    PrintEntity(o, *r);
  });

  auto* list = entity->add_subcommand("list", "List entities of a kind");
  AddClientFlags(list, o);
  list->add_option("kind", a->kind, "entity kind, e.g. model_version")->required();
  list->add_option("--state", a->state, "only entities in this state");
  list->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/entities/" + Seg(a->kind) + Query({{"state", a->state}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : (*r)["items"]) {
      rows.push_back(
          {Str(e, "id"), Str(e, "state"), Str(e, "updated_seq"), ShortTime(Str(e, "updated_at"))});
    }
    std::cout << Table({"ID", "STATE", "UPDATED_SEQ", "UPDATED_AT"}, rows);
  });

  auto* history =
      entity->add_subcommand("history", "The entity's timeline, read from the event log");
  AddClientFlags(history, o);
  history->add_option("kind", a->kind, "entity kind, e.g. model_version")->required();
  history->add_option("id", a->id, "entity id, e.g. credit-risk:1")->required();
  history->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  "/api/v1/entities/" + Seg(a->kind) + "/" + Seg(a->id) + "/events?limit=1000");
    if (!r)
      return void(rc = 1);
    PrintEvents(o, *r);
  });

  // ---- the raw event log -------------------------------------------------------
  auto* events = app.add_subcommand("events", "Read the event log");
  events->require_subcommand(1);
  struct EventArgs {
    int64_t after = 0, limit = 100, wait_s = 0;
    std::string kind, id, type, actor;
  };
  auto e = std::make_shared<EventArgs>();
  auto* events_list = events->add_subcommand(
      "list", "List events after a seq (oldest first); long-poll with --wait");
  AddClientFlags(events_list, o);
  events_list->add_option("--after", e->after, "only events with seq > N");
  events_list->add_option("--limit", e->limit, "at most N events (1..1000)");
  events_list->add_option("--kind", e->kind, "subject kind");
  events_list->add_option("--id", e->id, "subject id");
  events_list->add_option("--type", e->type, "event type, e.g. model_version.approved");
  events_list->add_option("--by", e->actor, "actor, e.g. user:alice");
  events_list->add_option("--wait", e->wait_s, "long-poll up to N seconds for new events");
  events_list->callback([&o, &rc, e] {
    auto r = Call(o, "GET",
                  "/api/v1/events" + Query({{"after", std::to_string(e->after)},
                                            {"limit", std::to_string(e->limit)},
                                            {"kind", e->kind},
                                            {"id", e->id},
                                            {"type", e->type},
                                            {"actor", e->actor},
                                            {"wait", e->wait_s ? std::to_string(e->wait_s) : ""}}));
    if (!r)
      return void(rc = 1);
    PrintEvents(o, *r);
  });
}

}  // namespace kervan::app
