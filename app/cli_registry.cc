// Client commands for the model registry: registered models and their
// validation gates, versions and their lifecycle, aliases.
//
// Gate checks on the command line:
//   --check 'METRIC OP NUMBER'        threshold, OP one of >= > <= < == !=
//                                     ('auc>=0.85', 'latency_ms < 50')
//   --champion METRIC[:MAX_REGRESSION][:lower]
//                                     not worse than the version holding the
//                                     `champion` alias by more than
//                                     MAX_REGRESSION (default 0); `lower` when
//                                     lower is better ('auc:0.02', 'rmse:0.5:lower')
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

std::string Trim(std::string s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::optional<double> ParseNumber(const std::string& text) {
  if (text.empty())
    return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

core::Result<Json> ParseThresholdCheck(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return core::InvalidArgument(
        fmt::format("--check \"{}\": {}; expected METRIC OP NUMBER with OP one of >= > <= < == "
                    "!=, e.g. --check 'auc>=0.85'",
                    text, why),
        "check");
  };
  size_t pos = text.find_first_of("<>=!");
  if (pos == std::string::npos)
    return bad("no comparison operator");
  std::string metric = Trim(text.substr(0, pos));
  if (metric.starts_with("metrics."))
    metric = metric.substr(8);
  if (metric.empty())
    return bad("no metric name before the operator");
  std::string op;
  for (std::string candidate : {">=", "<=", "==", "!=", ">", "<"}) {
    if (text.compare(pos, candidate.size(), candidate) == 0) {
      op = candidate;
      break;
    }
  }
  if (op.empty())
    return bad(fmt::format("\"{}\" is not an operator (equality is ==)", text.substr(pos, 1)));
  auto threshold = ParseNumber(Trim(text.substr(pos + op.size())));
  if (!threshold)
    return bad("the threshold is not a number");
  return Json{{"type", "threshold"}, {"metric", metric}, {"op", op}, {"threshold", *threshold}};
}

core::Result<Json> ParseChampionCheck(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return core::InvalidArgument(
        fmt::format("--champion \"{}\": {}; expected METRIC[:MAX_REGRESSION][:lower], e.g. "
                    "--champion auc:0.02 or --champion rmse:0.5:lower",
                    text, why),
        "champion");
  };
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t colon = text.find(':', start);
    parts.push_back(Trim(text.substr(start, colon - start)));
    if (colon == std::string::npos)
      break;
    start = colon + 1;
  }
  std::string metric = parts[0];
  if (metric.starts_with("metrics."))
    metric = metric.substr(8);
  if (metric.empty())
    return bad("no metric name");
  Json check = {{"type", "champion"},
                {"metric", metric},
                {"max_regression", 0.0},
                {"higher_is_better", true}};
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] == "lower" || parts[i] == "higher") {
      check["higher_is_better"] = parts[i] == "higher";
    } else if (auto v = ParseNumber(parts[i]); v && *v >= 0) {
      check["max_regression"] = *v;
    } else {
      return bad(fmt::format("\"{}\" is neither a non-negative number nor lower/higher", parts[i]));
    }
  }
  return check;
}

// The gate's checks from --check and --champion flags, or a usage error.
core::Result<Json> GateChecks(const std::vector<std::string>& thresholds,
                              const std::vector<std::string>& champions) {
  Json checks = Json::array();
  for (const auto& t : thresholds) {
    ASSIGN_OR_RETURN(Json c, ParseThresholdCheck(t));
    checks.push_back(std::move(c));
  }
  for (const auto& t : champions) {
    ASSIGN_OR_RETURN(Json c, ParseChampionCheck(t));
    checks.push_back(std::move(c));
  }
  return checks;
}

std::string Rule(const Json& c) {
  if (Str(c, "type") == "champion") {
    double max = c.value("max_regression", 0.0);
    bool higher = c.value("higher_is_better", true);
    return fmt::format("{} not worse than the champion's by more than {} ({} is better)",
                       Str(c, "metric"), Num(max), higher ? "higher" : "lower");
  }
  return fmt::format("{} {} {}", Str(c, "metric"), Str(c, "op"), Num(c.value("threshold", 0.0)));
}

std::string JoinMap(const Json& m, const char* sep = ", ") {
  std::string out;
  if (!m.is_object())
    return out;
  for (const auto& [k, v] : m.items()) {
    out += (out.empty() ? "" : sep) + k + "=" +
           (v.is_number()   ? Num(v.get<double>())
            : v.is_string() ? v.get<std::string>()
                            : v.dump());
  }
  return out;
}

std::string JoinList(const Json& list) {
  std::string out;
  if (!list.is_array())
    return out;
  for (const auto& v : list)
    out += (out.empty() ? "" : ", ") + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

std::string Aliases(const Json& aliases) {
  std::string out;
  if (!aliases.is_object())
    return out;
  for (const auto& [k, v] : aliases.items())
    out += (out.empty() ? "" : ", ") + k + " -> v" + v.dump();
  return out;
}

void PrintModel(const ClientOptions& o, const Json& m) {
  if (PrintedJson(o, m))
    return;
  Json checks = m.value("validation", Json::object()).value("checks", Json::array());
  std::cout << Fields({{"model", Str(m, "name")},
                       {"project", Str(m, "project")},
                       {"description", Str(m, "description")},
                       {"tags", JoinMap(m.value("tags", Json::object()))},
                       {"latest version", Str(m, "latest_version")},
                       {"aliases", Aliases(m.value("aliases", Json::object()))},
                       {"created", ShortTime(Str(m, "created")) + " by " + Str(m, "created_by")},
                       {"gate", checks.empty() ? "none: every version passes validation"
                                               : fmt::format("{} check(s), all must pass for "
                                                             "DeploymentReady",
                                                             checks.size())}});
  if (checks.empty())
    return;
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : checks)
    rows.push_back({Str(c, "type"), Rule(c)});
  std::cout << "\n" << Table({"CHECK", "RULE"}, rows);
}

// What a check compared against, as a person reads it.
std::string Threshold(const Json& c) {
  if (Str(c, "type") != "champion")
    return Str(c, "op") + " " + Num(c.value("threshold", 0.0));
  if (!c.contains("champion_version") || c["champion_version"].is_null())
    return "(no champion yet)";
  if (!c.contains("champion_value") || c["champion_value"].is_null())
    return fmt::format("(champion v{} lacks the metric)", Str(c, "champion_version"));
  double champion = c["champion_value"].get<double>();
  double max = c.value("max_regression", 0.0);
  bool higher = c.value("higher_is_better", true);
  return fmt::format("{} {} (champion v{}: {} {} {})",
                     higher ? ">=" : "<=", Num(higher ? champion - max : champion + max),
                     Str(c, "champion_version"), Num(champion), higher ? "-" : "+", Num(max));
}

void PrintVersion(const ClientOptions& o, const Json& v) {
  if (PrintedJson(o, v))
    return;
  const Json validation = v.value("validation", Json());
  std::string decision, note;
  if (validation.is_object()) {
    decision = Str(validation, "decision") + " (decided by system:registry)";
    if (!Str(validation, "detail").empty())
      decision += ": " + Str(validation, "detail");
    std::string state = Str(v, "state");
    if (Str(validation, "decision") == "failed" && state == "DeploymentReady")
      note = "approved by hand despite the failed gate (a manual override, in the audit log)";
    else if (Str(validation, "decision") == "passed" && state == "Rejected")
      note = "rejected by hand although the gate passed (in the audit log)";
  }
  std::cout << Fields({{"model", Str(v, "model")},
                       {"version", Str(v, "version")},
                       {"state", Str(v, "state")},
                       {"note", note},
                       {"project", Str(v, "project")},
                       {"metrics", JoinMap(v.value("metrics", Json::object()))},
                       {"run", Str(v, "source_run_id")},
                       {"artifact", Str(v, "artifact_uri")},
                       {"tags", JoinMap(v.value("tags", Json::object()))},
                       {"aliases", JoinList(v.value("aliases", Json::array()))},
                       {"description", Str(v, "description")},
                       {"registered", ShortTime(Str(v, "created")) + " by " + Str(v, "created_by")},
                       {"validation", decision}});
  Json checks = validation.is_object() ? validation.value("checks", Json::array()) : Json::array();
  if (checks.empty())
    return;
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : checks) {
    rows.push_back({Str(c, "name"),
                    c.contains("value") && c["value"].is_number() ? Num(c["value"].get<double>())
                                                                  : "(missing)",
                    Threshold(c), c.value("passed", false) ? "yes" : "NO"});
  }
  std::cout << "\n" << Table({"CHECK", "VALUE", "THRESHOLD", "PASSED"}, rows);
}

std::vector<std::string> AliasChangeRow(const Json& c) {
  auto version = [](const Json& v) { return v.is_null() ? std::string("-") : v.dump(); };
  return {ShortTime(Str(c, "time")), version(c.value("version", Json())),
          version(c.value("previous_version", Json())), Str(c, "actor"), Str(c, "reason")};
}
const std::vector<std::string> kAliasHeader = {"TIME", "VERSION", "PREVIOUS", "ACTOR", "REASON"};

std::string VersionPath(const std::string& model, int64_t version) {
  return "/api/v1/models/" + Seg(model) + "/versions/" + std::to_string(version);
}

void AddModels(CLI::App& app, ClientOptions& o, int& rc) {
  auto* model = app.add_subcommand(
      "model", "Registered models: create, list, show, and configure their validation gate");
  model->require_subcommand(1);
  struct Args {
    std::string name, project, description, reason;
    std::vector<std::string> tags, checks, champions;
    bool clear = false;
  };
  auto a = std::make_shared<Args>();
  const std::string check_help =
      "threshold check METRIC OP NUMBER, OP one of >= > <= < == != (e.g. 'auc>=0.85'); "
      "repeatable";
  const std::string champion_help =
      "champion comparison METRIC[:MAX_REGRESSION][:lower]: not worse than the `champion` "
      "alias's version by more than MAX_REGRESSION (e.g. auc:0.02, rmse:0.5:lower); repeatable";

  auto* create = model->add_subcommand(
      "create",
      "Register a model in a project, optionally with its validation gate (needs "
      "registry.write; a gate also needs registry.configure)");
  AddClientFlags(create, o);
  create->add_option("name", a->name, "1-128 characters [A-Za-z0-9._-]")->required();
  create->add_option("--project", a->project, "owning project (default: default)");
  create->add_option("--description", a->description, "what the model predicts");
  create->add_option("--tag", a->tags, "KEY=VALUE; repeatable")->allow_extra_args(false);
  create->add_option("--check", a->checks, check_help)->allow_extra_args(false);
  create->add_option("--champion,--champion-check", a->champions, champion_help)
      ->allow_extra_args(false);
  create->callback([&o, &rc, a] {
    auto tags = ParsePairs(a->tags, "--tag");
    if (!tags)
      return void(rc = UsageError(tags.error().message));
    auto checks = GateChecks(a->checks, a->champions);
    if (!checks)
      return void(rc = UsageError(checks.error().message));
    Json body = {{"name", a->name}};
    if (!a->project.empty())
      body["project"] = a->project;
    if (!a->description.empty())
      body["description"] = a->description;
    if (!tags->empty())
      body["tags"] = *tags;
    if (!checks->empty())
      body["validation"] = {{"checks", *checks}};
    auto r = Call(o, "POST", "/api/v1/models", body);
    if (!r)
      return void(rc = 1);
    PrintModel(o, *r);
  });

  auto* list = model->add_subcommand("list", "List the models you can read");
  AddClientFlags(list, o);
  list->add_option("--project", a->project, "only this project's");
  list->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/models" + Query({{"project", a->project}, {"limit", "1000"}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : (*r)["items"]) {
      size_t checks = m.value("validation", Json::object()).value("checks", Json::array()).size();
      rows.push_back({Str(m, "name"), Str(m, "project"), Str(m, "latest_version"),
                      Aliases(m.value("aliases", Json::object())),
                      checks ? fmt::format("{} check(s)", checks) : "none", Str(m, "description")});
    }
    std::cout << Table({"MODEL", "PROJECT", "LATEST", "ALIASES", "GATE", "DESCRIPTION"}, rows);
  });

  auto* get = model->add_subcommand("get", "Show a model, its aliases and its validation gate");
  AddClientFlags(get, o);
  get->add_option("name", a->name, "model name")->required();
  get->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/models/" + Seg(a->name));
    if (!r)
      return void(rc = 1);
    PrintModel(o, *r);
  });

  auto* update = model->add_subcommand(
      "update", "Change a model's description and/or replace its tags (needs registry.write)");
  AddClientFlags(update, o);
  update->add_option("name", a->name, "model name")->required();
  auto* desc_opt = update->add_option("--description", a->description, "new description");
  auto* tag_opt = update->add_option("--tag", a->tags, "KEY=VALUE; replaces every tag; repeatable")
                      ->allow_extra_args(false);
  update->callback([&o, &rc, a, desc_opt, tag_opt] {
    auto tags = ParsePairs(a->tags, "--tag");
    if (!tags)
      return void(rc = UsageError(tags.error().message));
    Json body = Json::object();
    if (desc_opt->count() > 0)
      body["description"] = a->description;
    if (tag_opt->count() > 0)
      body["tags"] = *tags;
    if (body.empty())
      return void(rc = UsageError("nothing to change: give --description and/or --tag"));
    auto r = Call(o, "PATCH", "/api/v1/models/" + Seg(a->name), body);
    if (!r)
      return void(rc = 1);
    PrintModel(o, *r);
  });

  auto* gate = model->add_subcommand(
      "gate",
      "Replace a model's validation gate; applies to versions registered from now on (needs "
      "registry.configure and a reason)");
  AddClientFlags(gate, o);
  gate->add_option("name", a->name, "model name")->required();
  gate->add_option("--check", a->checks, check_help)->allow_extra_args(false);
  gate->add_option("--champion,--champion-check", a->champions, champion_help)
      ->allow_extra_args(false);
  gate->add_flag("--clear", a->clear, "remove every check: versions pass validation by default");
  gate->add_option("-r,--reason", a->reason, "why the gate changes, recorded in the audit trail");
  gate->callback([&o, &rc, a] {
    auto checks = GateChecks(a->checks, a->champions);
    if (!checks)
      return void(rc = UsageError(checks.error().message));
    if (checks->empty() && !a->clear)
      return void(rc = UsageError("give the new gate with --check/--champion, or --clear to "
                                  "remove every check"));
    if (!checks->empty() && a->clear)
      return void(rc = UsageError("--clear removes every check: do not combine it with "
                                  "--check/--champion"));
    Json body = {{"checks", *checks}};
    if (!a->reason.empty())
      body["reason"] = a->reason;
    auto r = Call(o, "PUT", "/api/v1/models/" + Seg(a->name) + "/validation", body);
    if (!r)
      return void(rc = 1);
    PrintModel(o, *r);
  });
}

void AddVersions(CLI::App& app, ClientOptions& o, int& rc) {
  auto* version = app.add_subcommand(
      "version",
      "Model versions: register (validated at once by the model's gate), list, show, and "
      "approve/reject/archive by hand with a reason");
  version->require_subcommand(1);
  struct Args {
    std::string model, run_id, artifact_uri, description, state, reason;
    std::vector<std::string> metrics, tags;
    int64_t version = 0;
  };
  auto a = std::make_shared<Args>();

  auto* reg = version->add_subcommand(
      "register",
      "Register the next version; the gate decides DeploymentReady or Rejected and the "
      "evidence is printed (needs registry.write)");
  AddClientFlags(reg, o);
  reg->add_option("model", a->model, "model name")->required();
  reg->add_option("--run-id", a->run_id, "the tracking run that produced it");
  reg->add_option("--artifact-uri", a->artifact_uri, "where the model files are");
  reg->add_option("--metric", a->metrics, "NAME=NUMBER, e.g. auc=0.91; repeatable")
      ->allow_extra_args(false);
  reg->add_option("--tag", a->tags, "KEY=VALUE; repeatable")->allow_extra_args(false);
  reg->add_option("--description", a->description, "what changed in this version");
  reg->callback([&o, &rc, a] {
    auto tags = ParsePairs(a->tags, "--tag");
    if (!tags)
      return void(rc = UsageError(tags.error().message));
    auto pairs = ParsePairs(a->metrics, "--metric");
    if (!pairs)
      return void(rc = UsageError(pairs.error().message));
    Json metrics = Json::object();
    for (const auto& [k, v] : *pairs) {
      auto n = ParseNumber(v);
      if (!n) {
        return void(
            rc = UsageError(fmt::format("--metric \"{}={}\": the value must be a number", k, v)));
      }
      metrics[k] = *n;
    }
    Json body = {{"metrics", metrics}};
    if (!a->run_id.empty())
      body["source_run_id"] = a->run_id;
    if (!a->artifact_uri.empty())
      body["artifact_uri"] = a->artifact_uri;
    if (!tags->empty())
      body["tags"] = *tags;
    if (!a->description.empty())
      body["description"] = a->description;
    auto r = Call(o, "POST", "/api/v1/models/" + Seg(a->model) + "/versions", body);
    if (!r)
      return void(rc = 1);
    PrintVersion(o, *r);
  });

  auto* list = version->add_subcommand("list", "List a model's versions (oldest first)");
  AddClientFlags(list, o);
  list->add_option("model", a->model, "model name")->required();
  list->add_option("--state", a->state,
                   "only versions in this state (Registered, Validating, DeploymentReady, "
                   "Rejected, Archived)");
  list->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  "/api/v1/models/" + Seg(a->model) + "/versions" +
                      Query({{"state", a->state}, {"limit", "1000"}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& v : (*r)["items"]) {
      rows.push_back({Str(v, "version"), Str(v, "state"), JoinList(v.value("aliases", Json())),
                      JoinMap(v.value("metrics", Json::object())), Str(v, "source_run_id"),
                      ShortTime(Str(v, "created")), Str(v, "created_by")});
    }
    std::cout << Table({"VERSION", "STATE", "ALIASES", "METRICS", "RUN", "CREATED", "CREATED_BY"},
                       rows);
  });

  auto* get = version->add_subcommand("get", "Show a version with its gate evidence");
  AddClientFlags(get, o);
  get->add_option("model", a->model, "model name")->required();
  get->add_option("version", a->version, "version number")->required();
  get->callback([&o, &rc, a] {
    auto r = Call(o, "GET", VersionPath(a->model, a->version));
    if (!r)
      return void(rc = 1);
    PrintVersion(o, *r);
  });

  struct Manual {
    const char* verb;
    const char* help;
  };
  for (Manual m : {Manual{"approve",
                          "Approve by hand (Validating|Rejected -> DeploymentReady): a manual "
                          "override; needs model_version.approve and a reason"},
                   Manual{"reject",
                          "Reject by hand (Validating|DeploymentReady -> Rejected); needs "
                          "model_version.approve and a reason"},
                   Manual{"archive",
                          "Archive (DeploymentReady|Rejected -> Archived); needs "
                          "model_version.archive and a reason"}}) {
    auto* cmd = version->add_subcommand(m.verb, m.help);
    AddClientFlags(cmd, o);
    cmd->add_option("model", a->model, "model name")->required();
    cmd->add_option("version", a->version, "version number")->required();
    cmd->add_option("-r,--reason", a->reason,
                    "why (the server requires one), recorded in the audit trail");
    std::string verb = m.verb;
    cmd->callback([&o, &rc, a, verb] {
      Json body = Json::object();
      if (!a->reason.empty())
        body["reason"] = a->reason;
      auto r = Call(o, "POST", VersionPath(a->model, a->version) + "/" + verb, body);
      if (!r)
        return void(rc = 1);
      PrintVersion(o, *r);
    });
  }

  auto* lineage = version->add_subcommand(
      "lineage", "Where a version came from (run, artifact) and every alias move involving it");
  AddClientFlags(lineage, o);
  lineage->add_option("model", a->model, "model name")->required();
  lineage->add_option("version", a->version, "version number")->required();
  lineage->callback([&o, &rc, a] {
    auto r = Call(o, "GET", VersionPath(a->model, a->version) + "/lineage");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& c : r->value("alias_history", Json::array())) {
      std::vector<std::string> row = AliasChangeRow(c);
      row.insert(row.begin() + 1, Str(c, "alias"));
      rows.push_back(std::move(row));
    }
    std::cout << Fields(
        {{"model", Str(*r, "model")},
         {"version", Str(*r, "version")},
         {"project", Str(*r, "project")},
         {"state", Str(*r, "state")},
         {"run", Str(*r, "source_run_id").empty() ? "(unknown)" : Str(*r, "source_run_id")},
         {"artifact", Str(*r, "artifact_uri")},
         {"registered", ShortTime(Str(*r, "created")) + " by " + Str(*r, "created_by")},
         {"aliases now", JoinList(r->value("current_aliases", Json::array()))},
         {"alias history", rows.empty() ? "none: no alias ever pointed here" : ""}});
    if (rows.empty())
      return;
    std::cout << "\nalias history:\n"
              << Table({"TIME", "ALIAS", "VERSION", "PREVIOUS", "ACTOR", "REASON"}, rows);
  });
}

void AddAliases(CLI::App& app, ClientOptions& o, int& rc) {
  auto* alias = app.add_subcommand(
      "alias", "Named pointers to versions (champion, challenger, ...), moved with a reason");
  alias->require_subcommand(1);
  struct Args {
    std::string model, alias, reason;
    int64_t version = 0;
  };
  auto a = std::make_shared<Args>();
  auto path = [a] { return "/api/v1/models/" + Seg(a->model) + "/aliases/" + Seg(a->alias); };
  auto print_change = [&o, a](const Json& c) {
    if (PrintedJson(o, c))
      return;
    std::string previous =
        c.value("previous_version", Json()).is_null() ? "unset" : "v" + Str(c, "previous_version");
    std::string now = c.value("version", Json()).is_null() ? "deleted" : "v" + Str(c, "version");
    std::cout << fmt::format("{}@{}: {} -> {} by {} (event {})\n  reason: {}\n", a->model,
                             Str(c, "alias"), previous, now, Str(c, "actor"), Str(c, "seq"),
                             Str(c, "reason"));
  };

  auto* set = alias->add_subcommand(
      "set", "Point an alias at a version, atomically (needs registry.alias and a reason)");
  AddClientFlags(set, o);
  set->add_option("model", a->model, "model name")->required();
  set->add_option("alias", a->alias, "e.g. champion")->required();
  set->add_option("version", a->version, "version number")->required();
  set->add_option("-r,--reason", a->reason, "why it moves, recorded in the audit trail");
  set->callback([&o, &rc, a, path, print_change] {
    Json body = {{"version", a->version}};
    if (!a->reason.empty())
      body["reason"] = a->reason;
    auto r = Call(o, "PUT", path(), body);
    if (!r)
      return void(rc = 1);
    print_change(*r);
  });

  auto* del =
      alias->add_subcommand("delete", "Remove an alias (needs registry.alias and a reason)");
  AddClientFlags(del, o);
  del->add_option("model", a->model, "model name")->required();
  del->add_option("alias", a->alias, "e.g. challenger")->required();
  del->add_option("-r,--reason", a->reason, "why, recorded in the audit trail");
  del->callback([&o, &rc, a, path, print_change] {
    auto r = Call(o, "DELETE", path() + Query({{"reason", a->reason}}));
    if (!r)
      return void(rc = 1);
    print_change(*r);
  });

  auto* show = alias->add_subcommand(
      "show", "Where an alias points now, and every move it made (who, when, why)");
  AddClientFlags(show, o);
  show->add_option("model", a->model, "model name")->required();
  show->add_option("alias", a->alias, "e.g. champion")->required();
  show->callback([&o, &rc, a, path] {
    auto r = Call(o, "GET", path());
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format(
        "{}@{} -> {}\n\n", Str(*r, "model"), Str(*r, "alias"),
        r->value("version", Json()).is_null() ? "(deleted)" : "version " + Str(*r, "version"));
    std::vector<std::vector<std::string>> rows;
    for (const auto& c : r->value("history", Json::array()))
      rows.push_back(AliasChangeRow(c));
    std::cout << Table(kAliasHeader, rows);
  });
}

}  // namespace

void AddRegistryCommands(CLI::App& app, ClientOptions& o, int& rc) {
  AddModels(app, o, rc);
  AddVersions(app, o, rc);
  AddAliases(app, o, rc);
}

}  // namespace kervan::app
