#include "app/cli.h"

#include <cstdlib>
#include <iostream>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "app/config.h"
#include "app/server.h"
#include "http/http.h"

namespace kervan::app {
namespace {

using core::Json;

// Options shared by every client command.
struct ClientOptions {
  std::string url;
  std::string output = "table";
  std::string actor;
};

std::string EnvOr(const char* name, std::string def) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : def;
}

// Renders rows as aligned columns; the last column is not padded.
std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i)
    width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += i + 1 == r.size() ? r[i] : fmt::format("{:<{}}  ", r[i], width[i]);
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows)
    out += line(r);
  return out;
}

std::string Str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// Runs one request; prints errors the way a person can act on them.
// Returns the parsed body, or nullopt after printing the error.
std::optional<Json> Call(const ClientOptions& o, const std::string& method,
                         const std::string& target, const std::optional<Json>& body = {}) {
  http::Client client(o.url);
  http::HeaderList headers = {{"X-Kervan-Actor", o.actor}, {"Accept", "application/json"}};
  if (body)
    headers.emplace_back("Content-Type", "application/json");
  auto resp = client.Send(method, target, body ? body->dump() : "", headers);
  if (!resp) {
    std::cerr << "error: " << resp.error().message
              << "\n  (is `kervan server` running? set KERVAN_URL or --url)\n";
    return std::nullopt;
  }
  Json parsed = Json::parse(resp->body, nullptr, false);
  if (resp->status >= 400) {
    if (!parsed.is_discarded() && parsed.contains("error")) {
      const Json& e = parsed["error"];
      std::cerr << fmt::format("error: {} ({}): {}\n", resp->status, Str(e, "code"),
                               Str(e, "message"));
      if (e.contains("current_state"))
        std::cerr << "  current state: " << Str(e, "current_state") << "\n";
      if (e.contains("allowed_transitions")) {
        std::string names;
        for (const auto& t : e["allowed_transitions"]) {
          names += (names.empty() ? "" : ", ") + Str(t, "name") + " -> " + Str(t, "to");
        }
        std::cerr << "  allowed transitions: " << (names.empty() ? "(none)" : names) << "\n";
      }
      if (!Str(parsed, "request_id").empty())
        std::cerr << "  request id: " << Str(parsed, "request_id") << "\n";
    } else {
      std::cerr << fmt::format("error: HTTP {}: {}\n", resp->status, resp->body);
    }
    return std::nullopt;
  }
  if (parsed.is_discarded()) {
    std::cerr << "error: server answered with something that is not JSON\n";
    return std::nullopt;
  }
  return parsed;
}

std::string Query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty())
      continue;
    q += (q.empty() ? "?" : "&") + k + "=" + http::PercentEncode(v);
  }
  return q;
}

std::vector<std::string> EventRow(const Json& e) {
  std::string time = Str(e, "time");
  if (time.size() > 23)
    time = time.substr(0, 23) + "Z";  // milliseconds are enough on screen
  return {Str(e, "seq"),   time,
          Str(e, "type"),  Str(e["subject"], "kind") + "/" + Str(e["subject"], "id"),
          Str(e, "actor"), Str(e, "reason")};
}

const std::vector<std::string> kEventHeader = {"SEQ", "TIME", "TYPE", "SUBJECT", "ACTOR", "REASON"};

int PrintEvents(const ClientOptions& o, const Json& events, const Json& whole) {
  if (o.output == "json") {
    std::cout << whole.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : events)
    rows.push_back(EventRow(e));
  std::cout << Table(kEventHeader, rows);
  return 0;
}

int PrintEntity(const ClientOptions& o, const Json& e) {
  if (o.output == "json") {
    std::cout << e.dump(2) << "\n";
    return 0;
  }
  std::cout << Table({"KIND", "ID", "STATE", "UPDATED_SEQ", "UPDATED_AT", "DATA"},
                     {{Str(e, "kind"), Str(e, "id"), Str(e, "state"), Str(e, "updated_seq"),
                       Str(e, "updated_at"), e.value("data", Json::object()).dump()}});
  return 0;
}

core::Result<Json> ParseDataFlag(const std::string& text) {
  if (text.empty())
    return Json::object();
  auto j = core::ParseJson(text);
  if (!j || !j->is_object()) {
    return core::InvalidArgument("--data: must be a JSON object, e.g. '{\"auc\":0.91}'", "data");
  }
  return *j;
}

void AddClientFlags(CLI::App* cmd, ClientOptions& o) {
  cmd->add_option("--url", o.url, "Kervan server URL (env KERVAN_URL)")->capture_default_str();
  cmd->add_option("-o,--output", o.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->add_option("--actor", o.actor,
                  "who is acting, recorded in events (env KERVAN_ACTOR; until tokens arrive)")
      ->capture_default_str();
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{
      "Kervan: the MLOps control plane. One server and CLI for experiments, models, training "
      "jobs, pipelines, rollouts and monitoring, with every change in one tamper-evident event "
      "log.",
      "kervan"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kervan 0.1.0");
  int rc = 0;

  ClientOptions client;
  client.url = EnvOr("KERVAN_URL", "http://127.0.0.1:8080");
  client.actor = EnvOr("KERVAN_ACTOR", EnvOr("USER", "cli"));

  // ---- server and configuration -------------------------------------------
  ConfigSources sources;
  std::string port, data_dir, ready_file;
  auto add_config_flags = [&](CLI::App* cmd) {
    cmd->add_option("-c,--config", sources.file,
                    "YAML config file (config/dev.yaml, config/prod.yaml)");
    cmd->add_option("--set", sources.overrides,
                    "override a key: --set server.port=9090 (repeatable)");
    cmd->add_option("--port", port, "shorthand for --set server.port=N");
    cmd->add_option("--data-dir", data_dir, "shorthand for --set data_dir=DIR");
  };
  auto load = [&]() -> core::Result<Config> {
    if (!port.empty())
      sources.overrides.push_back("server.port=" + port);
    if (!data_dir.empty())
      sources.overrides.push_back("data_dir=" + data_dir);
    return LoadConfig(sources);
  };

  auto* server = app.add_subcommand("server", "Run the Kervan server until SIGTERM/SIGINT");
  add_config_flags(server);
  server->add_option("--ready-file", ready_file, "write the bound port here once serving");
  server->callback([&] {
    auto config = load();
    if (!config) {
      std::cerr << "error: " << config.error().message << "\n";
      rc = 2;
      return;
    }
    rc = RunServer({.config = *config, .ready_file = ready_file});
  });

  auto* config_cmd = app.add_subcommand("config", "Show the effective configuration");
  config_cmd->require_subcommand(1);
  std::string config_output = "table";
  auto* show = config_cmd->add_subcommand(
      "show", "Print every key, its value (secrets masked) and its source");
  add_config_flags(show);
  show->add_option("-o,--output", config_output, "output format")
      ->check(CLI::IsMember({"table", "json"}));
  show->callback([&] {
    auto config = load();
    if (!config) {
      std::cerr << "error: " << config.error().message << "\n";
      rc = 2;
      return;
    }
    std::cout << (config_output == "json" ? ConfigToJson(*config).dump(2) + "\n"
                                          : RenderConfig(*config));
  });
  config_cmd->add_subcommand("keys", "List every config key with its environment variable")
      ->callback([] {
        for (const auto& k : ConfigKeys())
          std::cout << k << "\n";
      });

  auto* migrate = app.add_subcommand("migrate", "Apply database migrations and exit");
  add_config_flags(migrate);
  migrate->callback([&] {
    auto config = load();
    if (!config) {
      std::cerr << "error: " << config.error().message << "\n";
      rc = 2;
      return;
    }
    auto db = OpenStore(*config);
    if (!db) {
      std::cerr << "error: " << db.error().message << "\n";
      rc = 1;
      return;
    }
    std::cout << "migrations current on " << (*db)->description() << "\n";
  });

  // ---- lifecycles and entities ----------------------------------------------
  auto* lifecycles = app.add_subcommand("lifecycles", "Show declared lifecycles (state machines)");
  std::string kind_arg;
  AddClientFlags(lifecycles, client);
  lifecycles->add_option("kind", kind_arg, "show one kind's states and transitions");
  lifecycles->callback([&] {
    auto r = Call(client, "GET",
                  kind_arg.empty() ? "/api/v1/lifecycles"
                                   : "/api/v1/lifecycles/" + http::PercentEncode(kind_arg));
    if (!r)
      return void(rc = 1);
    if (client.output == "json")
      return void(std::cout << r->dump(2) << "\n");
    std::vector<Json> machines =
        kind_arg.empty() ? (*r)["items"].get<std::vector<Json>>() : std::vector<Json>{*r};
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

  auto* entity =
      app.add_subcommand("entity", "Create, read and move entities through their lifecycle");
  entity->require_subcommand(1);
  std::string id_arg, data_arg, state_arg, transition_arg, reason_arg;

  auto* create = entity->add_subcommand("create", "Create an entity in its initial state");
  AddClientFlags(create, client);
  create->add_option("kind", kind_arg, "entity kind, e.g. model_version")->required();
  create->add_option("--id", id_arg, "id (default: a generated UUIDv7)");
  create->add_option("--data", data_arg, "JSON object stored with the entity");
  create->callback([&] {
    auto data = ParseDataFlag(data_arg);
    if (!data)
      return void((std::cerr << "error: " << data.error().message << "\n", rc = 2));
    Json body = {{"data", *data}};
    if (!id_arg.empty())
      body["id"] = id_arg;
    auto r = Call(client, "POST", "/api/v1/entities/" + http::PercentEncode(kind_arg), body);
    rc = r ? PrintEntity(client, *r) : 1;
  });

  auto* get = entity->add_subcommand("get", "Show one entity's current state");
  AddClientFlags(get, client);
  get->add_option("kind", kind_arg)->required();
  get->add_option("id", id_arg)->required();
  get->callback([&] {
    auto r = Call(
        client, "GET",
        "/api/v1/entities/" + http::PercentEncode(kind_arg) + "/" + http::PercentEncode(id_arg));
    rc = r ? PrintEntity(client, *r) : 1;
  });

  auto* list = entity->add_subcommand("list", "List entities of a kind");
  AddClientFlags(list, client);
  list->add_option("kind", kind_arg)->required();
  list->add_option("--state", state_arg, "only entities in this state");
  list->callback([&] {
    auto r =
        Call(client, "GET",
             "/api/v1/entities/" + http::PercentEncode(kind_arg) + Query({{"state", state_arg}}));
    if (!r)
      return void(rc = 1);
    if (client.output == "json")
      return void(std::cout << r->dump(2) << "\n");
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : (*r)["items"]) {
      rows.push_back({Str(e, "id"), Str(e, "state"), Str(e, "updated_seq"), Str(e, "updated_at")});
    }
    std::cout << Table({"ID", "STATE", "UPDATED_SEQ", "UPDATED_AT"}, rows);
  });

  auto* transition = entity->add_subcommand(
      "transition", "Apply a named transition; manual interventions need --reason");
  AddClientFlags(transition, client);
  transition->add_option("kind", kind_arg)->required();
  transition->add_option("id", id_arg)->required();
  transition->add_option("transition", transition_arg, "e.g. validate, approve, archive")
      ->required();
  transition->add_option("-r,--reason", reason_arg, "why (required for manual interventions)");
  transition->add_option("--data", data_arg, "JSON evidence recorded in the event");
  transition->callback([&] {
    auto data = ParseDataFlag(data_arg);
    if (!data)
      return void((std::cerr << "error: " << data.error().message << "\n", rc = 2));
    Json body = {{"transition", transition_arg}, {"data", *data}};
    if (!reason_arg.empty())
      body["reason"] = reason_arg;
    auto r = Call(client, "POST",
                  "/api/v1/entities/" + http::PercentEncode(kind_arg) + "/" +
                      http::PercentEncode(id_arg) + "/transitions",
                  body);
    rc = r ? PrintEntity(client, *r) : 1;
  });

  auto* history =
      entity->add_subcommand("history", "The entity's timeline, read from the event log");
  AddClientFlags(history, client);
  history->add_option("kind", kind_arg)->required();
  history->add_option("id", id_arg)->required();
  history->callback([&] {
    auto r = Call(client, "GET",
                  "/api/v1/entities/" + http::PercentEncode(kind_arg) + "/" +
                      http::PercentEncode(id_arg) + "/events?limit=1000");
    rc = r ? PrintEvents(client, (*r)["events"], *r) : 1;
  });

  // ---- events and audit ---------------------------------------------------
  auto* events = app.add_subcommand("events", "Read the event log");
  events->require_subcommand(1);
  int64_t after = 0, limit = 100, wait_s = 0;
  std::string type_arg, actor_arg;
  auto* events_list = events->add_subcommand("list", "List events after a seq (oldest first)");
  AddClientFlags(events_list, client);
  events_list->add_option("--after", after, "only events with seq > N");
  events_list->add_option("--limit", limit, "at most N events (1..1000)");
  events_list->add_option("--kind", kind_arg, "subject kind");
  events_list->add_option("--id", id_arg, "subject id");
  events_list->add_option("--type", type_arg, "event type, e.g. model_version.approved");
  events_list->add_option("--by", actor_arg, "actor");
  events_list->add_option("--wait", wait_s, "long-poll up to N seconds for new events");
  events_list->callback([&] {
    auto r = Call(client, "GET",
                  "/api/v1/events" + Query({{"after", std::to_string(after)},
                                            {"limit", std::to_string(limit)},
                                            {"kind", kind_arg},
                                            {"id", id_arg},
                                            {"type", type_arg},
                                            {"actor", actor_arg},
                                            {"wait", wait_s ? std::to_string(wait_s) : ""}}));
    rc = r ? PrintEvents(client, (*r)["events"], *r) : 1;
  });

  auto* audit = app.add_subcommand("audit", "Verify and read the tamper-evident audit trail");
  audit->require_subcommand(1);
  auto* verify =
      audit->add_subcommand("verify", "Recompute the event log's hash chain on the server's store");
  AddClientFlags(verify, client);
  verify->callback([&] {
    auto r = Call(client, "POST", "/api/v1/audit/verify");
    if (!r)
      return void(rc = 1);
    if (client.output == "json") {
      std::cout << r->dump(2) << "\n";
    } else if ((*r)["ok"] == true) {
      std::cout << fmt::format("audit verify: OK, {} events, chain intact up to seq {}\n",
                               Str(*r, "checked"), Str(*r, "head_seq"));
    } else {
      std::cout << fmt::format("audit verify: BROKEN at seq {}: {}\n", Str(*r, "first_bad_seq"),
                               Str(*r, "problem"));
    }
    rc = (*r)["ok"] == true ? 0 : 3;
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}

}  // namespace kervan::app
