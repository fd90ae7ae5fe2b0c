// Client commands for identity and access: who am I, roles and routes,
// API tokens, projects, principals and their role bindings.
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

std::string Join(const Json& list, const char* sep = ", ") {
  std::string out;
  if (!list.is_array())
    return out;
  for (const auto& v : list)
    out += (out.empty() ? "" : sep) + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

// "engineer in risk, viewer (global)"
std::string Bindings(const Json& roles) {
  std::string out;
  if (!roles.is_array())
    return out;
  for (const auto& b : roles) {
    std::string project = Str(b, "project");
    out += (out.empty() ? "" : ", ") + Str(b, "role") +
           (project.empty() ? " (global)" : " in " + project);
  }
  return out;
}

std::vector<std::string> TokenRow(const Json& t) {
  return {Str(t, "id"),
          Str(t, "principal"),
          Str(t, "name"),
          Str(t, "state"),
          ShortTime(Str(t, "created")),
          Str(t, "expires").empty() ? "never" : ShortTime(Str(t, "expires")),
          Str(t, "created_by")};
}
const std::vector<std::string> kTokenHeader = {"ID",      "PRINCIPAL", "NAME",      "STATE",
                                               "CREATED", "EXPIRES",   "CREATED_BY"};

void PrintPrincipal(const ClientOptions& o, const Json& p) {
  if (PrintedJson(o, p))
    return;
  std::cout << Fields(
      {{"principal", Str(p, "name")},
       {"kind", Str(p, "kind")},
       {"display name", Str(p, "display_name")},
       {"status", p.value("disabled", false) ? "disabled since " + ShortTime(Str(p, "disabled_at"))
                                             : "active"},
       {"roles", Bindings(p.value("roles", Json::array()))},
       {"created", ShortTime(Str(p, "created")) + " by " + Str(p, "created_by")}});
}

void AddWhoami(CLI::App& app, ClientOptions& o, int& rc) {
  auto project = std::make_shared<std::string>();
  auto* whoami =
      app.add_subcommand("whoami", "Who the token belongs to, its role bindings and permissions");
  AddClientFlags(whoami, o);
  whoami->add_option("--project", *project, "permissions effective in this project");
  whoami->callback([&o, &rc, project] {
    auto r = Call(o, "GET", "/api/v1/whoami" + Query({{"project", *project}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << Fields({{"principal", Str(*r, "name")},
                         {"display name", Str(*r, "display_name")},
                         {"roles", Bindings(r->value("roles", Json::array()))},
                         {project->empty() ? "permissions (global)" : "permissions in " + *project,
                          Join(r->value("permissions", Json::array()))}});
  });

  auto* roles = app.add_subcommand("roles", "The built-in roles and the permissions each grants");
  AddClientFlags(roles, o);
  roles->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/roles");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& role : (*r)["items"])
      rows.push_back({Str(role, "name"), Str(role, "description")});
    std::cout << Table({"ROLE", "DESCRIPTION"}, rows) << "\n";
    for (const auto& role : (*r)["items"])
      std::cout << Str(role, "name") << ": " << Join(role["permissions"]) << "\n";
  });

  auto* permissions = app.add_subcommand(
      "permissions", "Every permission a route or transition can require, and the roles with it");
  AddClientFlags(permissions, o);
  permissions->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/permissions");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : (*r)["items"]) {
      std::string roles = Join(p["roles"]);
      rows.push_back({Str(p, "name"), roles.empty() ? "(none)" : roles, Str(p, "description")});
    }
    std::cout << Table({"PERMISSION", "ROLES", "DESCRIPTION"}, rows);
  });

  auto* routes = app.add_subcommand(
      "routes", "Every HTTP route the server serves and the permission it needs");
  AddClientFlags(routes, o);
  routes->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/routes");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& route : (*r)["items"]) {
      rows.push_back({Str(route, "method"), Str(route, "pattern"),
                      route.value("public", false) ? "(public)" : Str(route, "permission"),
                      route.value("stream", false) ? "stream" : ""});
    }
    std::cout << Table({"METHOD", "PATTERN", "PERMISSION", ""}, rows);
  });
}

void AddTokens(CLI::App& app, ClientOptions& o, int& rc) {
  auto* token = app.add_subcommand("token", "Create, list and revoke API tokens");
  token->require_subcommand(1);
  struct Args {
    std::string name, principal, id, reason;
    int64_t expires_in_days = -1;
    bool all = false;
  };
  auto a = std::make_shared<Args>();

  auto* create = token->add_subcommand(
      "create", "Create a token (for yourself, or with auth.admin for someone else); printed once");
  AddClientFlags(create, o);
  create->add_option("--name", a->name, "what the token is for, e.g. laptop, ci");
  create->add_option("--for", a->principal, "whose token, e.g. user:alice (needs auth.admin)");
  create
      ->add_option("--expires-in-days", a->expires_in_days,
                   "lifetime in days; 0 = never expires (default: the server's, 90 days)")
      ->check(CLI::Range(int64_t{0}, int64_t{3650}));
  create->callback([&o, &rc, a] {
    Json body = Json::object();
    if (!a->name.empty())
      body["name"] = a->name;
    if (!a->principal.empty())
      body["principal"] = a->principal;
    if (a->expires_in_days >= 0)
      body["expires_in_days"] = a->expires_in_days;
    auto r = Call(o, "POST", "/api/v1/tokens", body);
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << Fields(
        {{"token id", Str(*r, "id")},
         {"principal", Str(*r, "principal")},
         {"name", Str(*r, "name")},
         {"expires", Str(*r, "expires").empty() ? "never" : ShortTime(Str(*r, "expires"))}});
    std::cout << "\n" << Str(*r, "token") << "\n\n";
    std::cerr << "warning: store this token now (e.g. in a 0600 file for --token-file); it is "
                 "shown only once and cannot be read back\n";
  });

  auto* list =
      token->add_subcommand("list", "List tokens: yours, someone's (--for) or all (--all)");
  AddClientFlags(list, o);
  auto* for_opt = list->add_option("--for", a->principal, "this principal's (needs auth.admin)");
  list->add_flag("--all", a->all, "every principal's (needs auth.admin)")->excludes(for_opt);
  list->callback([&o, &rc, a] {
    auto r = Call(
        o, "GET",
        "/api/v1/tokens" + Query({{"principal", a->principal}, {"all", a->all ? "true" : ""}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : (*r)["items"])
      rows.push_back(TokenRow(t));
    std::cout << Table(kTokenHeader, rows);
  });

  auto* revoke =
      token->add_subcommand("revoke", "Revoke a token at once (by its id, kvn_<id>_...)");
  AddClientFlags(revoke, o);
  revoke->add_option("id", a->id, "token id (see `kervan token list`)")->required();
  revoke->add_option("-r,--reason", a->reason, "why, recorded in the audit trail");
  revoke->callback([&o, &rc, a] {
    Json body = Json::object();
    if (!a->reason.empty())
      body["reason"] = a->reason;
    auto r = Call(o, "POST", "/api/v1/tokens/" + Seg(a->id) + "/revoke", body);
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << Table(kTokenHeader, {TokenRow(*r)});
  });
}

void AddProjects(CLI::App& app, ClientOptions& o, int& rc) {
  auto* project = app.add_subcommand("project", "Projects (teams) that own models and jobs");
  project->require_subcommand(1);
  struct Args {
    std::string name, description;
  };
  auto a = std::make_shared<Args>();
  auto print = [](const Json& items) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : items) {
      rows.push_back({Str(p, "name"), ShortTime(Str(p, "created")), Str(p, "created_by"),
                      Str(p, "description")});
    }
    std::cout << Table({"PROJECT", "CREATED", "CREATED_BY", "DESCRIPTION"}, rows);
  };

  auto* create = project->add_subcommand("create", "Create a project (needs project.write)");
  AddClientFlags(create, o);
  create->add_option("name", a->name, "1-63 characters [a-z0-9-]")->required();
  create->add_option("--description", a->description, "what the team works on");
  create->callback([&o, &rc, a, print] {
    Json body = {{"name", a->name}};
    if (!a->description.empty())
      body["description"] = a->description;
    auto r = Call(o, "POST", "/api/v1/projects", body);
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r))
      print(Json::array({*r}));
  });

  auto* list = project->add_subcommand("list", "List projects");
  AddClientFlags(list, o);
  list->callback([&o, &rc, print] {
    auto r = Call(o, "GET", "/api/v1/projects");
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r))
      print((*r)["items"]);
  });
}

void AddPrincipals(CLI::App& app, ClientOptions& o, int& rc) {
  auto* principal = app.add_subcommand(
      "principal", "Users and service accounts and their role bindings (needs auth.admin)");
  principal->require_subcommand(1);
  struct Args {
    std::string name, display_name, role, project, reason;
  };
  auto a = std::make_shared<Args>();

  auto* create = principal->add_subcommand("create", "Create a user or service account");
  AddClientFlags(create, o);
  create->add_option("name", a->name, "user:<name> or service:<name>, e.g. user:alice")->required();
  create->add_option("--display-name", a->display_name, "e.g. \"Alice Smith\"");
  create->callback([&o, &rc, a] {
    Json body = {{"name", a->name}};
    if (!a->display_name.empty())
      body["display_name"] = a->display_name;
    auto r = Call(o, "POST", "/api/v1/principals", body);
    if (!r)
      return void(rc = 1);
    PrintPrincipal(o, *r);
  });

  auto* list = principal->add_subcommand("list", "List principals with their roles");
  AddClientFlags(list, o);
  list->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/principals");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : (*r)["items"]) {
      rows.push_back({Str(p, "name"), Str(p, "display_name"),
                      p.value("disabled", false) ? "disabled" : "active",
                      Bindings(p.value("roles", Json::array()))});
    }
    std::cout << Table({"PRINCIPAL", "DISPLAY_NAME", "STATUS", "ROLES"}, rows);
  });

  auto* get = principal->add_subcommand("get", "Show one principal");
  AddClientFlags(get, o);
  get->add_option("name", a->name, "e.g. user:alice")->required();
  get->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/principals/" + Seg(a->name));
    if (!r)
      return void(rc = 1);
    PrintPrincipal(o, *r);
  });

  auto* disable =
      principal->add_subcommand("disable", "Disable a principal: its tokens stop working at once");
  AddClientFlags(disable, o);
  disable->add_option("name", a->name, "e.g. user:alice")->required();
  disable->add_option("-r,--reason", a->reason, "why, recorded in the audit trail")->required();
  disable->callback([&o, &rc, a] {
    auto r = Call(o, "POST", "/api/v1/principals/" + Seg(a->name) + "/disable",
                  Json{{"reason", a->reason}});
    if (!r)
      return void(rc = 1);
    PrintPrincipal(o, *r);
  });

  auto* bind = principal->add_subcommand(
      "bind", "Grant a role globally or in one project (`kervan roles` lists them)");
  AddClientFlags(bind, o);
  bind->add_option("name", a->name, "e.g. user:alice")->required();
  bind->add_option("role", a->role, "viewer, scientist, engineer or admin")->required();
  bind->add_option("--project", a->project, "only in this project (default: global)");
  bind->add_option("-r,--reason", a->reason, "why, recorded in the audit trail");
  bind->callback([&o, &rc, a] {
    Json body = {{"role", a->role}};
    if (!a->project.empty())
      body["project"] = a->project;
    if (!a->reason.empty())
      body["reason"] = a->reason;
    auto r = Call(o, "POST", "/api/v1/principals/" + Seg(a->name) + "/roles", body);
    if (!r)
      return void(rc = 1);
    PrintPrincipal(o, *r);
  });

  auto* unbind = principal->add_subcommand("unbind", "Remove a role binding");
  AddClientFlags(unbind, o);
  unbind->add_option("name", a->name, "e.g. user:alice")->required();
  unbind->add_option("role", a->role, "the bound role")->required();
  unbind->add_option("--project", a->project, "the binding's project (default: the global one)");
  unbind->add_option("-r,--reason", a->reason, "why, recorded in the audit trail");
  unbind->callback([&o, &rc, a] {
    auto r = Call(o, "DELETE",
                  "/api/v1/principals/" + Seg(a->name) + "/roles/" + Seg(a->role) +
                      Query({{"project", a->project}, {"reason", a->reason}}));
    if (!r)
      return void(rc = 1);
    PrintPrincipal(o, *r);
  });
}

}  // namespace

void AddIdentityCommands(CLI::App& app, ClientOptions& o, int& rc) {
  AddWhoami(app, o, rc);
  AddTokens(app, o, rc);
  AddProjects(app, o, rc);
  AddPrincipals(app, o, rc);
}

}  // namespace kervan::app
