// Monitoring and rule commands:
//   kervan monitors list|show|evaluations|configure|stop|resume|resolve
//   kervan feedback ENDPOINT --label REQUEST_ID=LABEL ...
//   kervan profile set|show MODEL VERSION
//   kervan rules apply|list|show|versions|actions|enable|disable|test
//   kervan approvals list|approve|reject
//   kervan alerts list
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

std::optional<std::string> ReadText(const std::string& path, int& rc) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    rc = UsageError("cannot read " + path);
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string MetricText(const Json& metrics, const char* key) {
  if (!metrics.is_object() || !metrics.contains(key) || !metrics[key].is_number())
    return "";
  return Num(metrics[key].get<double>());
}

std::string EvaluationSummary(const Json& e) {
  const Json& m = e.value("metrics", Json::object());
  std::string out =
      fmt::format("window {}: {} rows, {}", Str(e, "window"), Str(e, "rows"), Str(e, "decision"));
  if (!MetricText(m, "drift_share").empty()) {
    out += fmt::format(", drift share {} ({} features)", MetricText(m, "drift_share"),
                       MetricText(m, "drifted_features"));
  }
  for (const char* k : {"accuracy", "auc", "rmse"}) {
    if (!MetricText(m, k).empty())
      out += fmt::format(", {} {}", k, MetricText(m, k));
  }
  return out;
}

}  // namespace

void AddMonitoringCommands(CLI::App& app, ClientOptions& o, int& rc) {
  struct Args {
    std::string endpoint, config, reason, model, file, name, replay, state, id, source;
    int64_t version = 0;
    int limit = 20;
    std::vector<std::string> labels;
    bool firing = false;
  };
  auto a = std::make_shared<Args>();

  // ---- monitors
  auto* monitors = app.add_subcommand(
      "monitors", "Monitors of endpoints' production traffic: drift, data quality, performance");
  monitors->require_subcommand(1);
  auto* list = monitors->add_subcommand("list", "List monitors, their state and last window");
  AddClientFlags(list, o);
  list->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/monitors");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : (*r)["monitors"]) {
      rows.push_back({Str(m, "id"), fmt::format("{} v{}", Str(m, "model"), Str(m, "version")),
                      Str(m, "state"), Str(m, "windows"),
                      m["last"].is_object() ? EvaluationSummary(m["last"]) : ""});
    }
    std::cout << Table({"ENDPOINT", "MODEL", "STATE", "WINDOWS", "LAST WINDOW"}, rows);
  });
  auto* show = monitors->add_subcommand("show", "Show a monitor and its configuration");
  AddClientFlags(show, o);
  show->add_option("endpoint", a->endpoint, "endpoint name")->required();
  show->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/monitors/" + Seg(a->endpoint));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << Fields(
        {{"monitor", Str(*r, "id")},
         {"model", fmt::format("{} v{}", Str(*r, "model"), Str(*r, "version"))},
         {"state", Str(*r, "state")},
         {"windows", Str(*r, "windows")},
         {"last window", (*r)["last"].is_object() ? EvaluationSummary((*r)["last"]) : ""},
         {"config", (*r)["config"].dump()}});
  });
  auto* evals = monitors->add_subcommand(
      "evaluations", "List a monitor's evaluated windows (drift, quality, performance)");
  AddClientFlags(evals, o);
  evals->add_option("endpoint", a->endpoint, "endpoint name")->required();
  evals->add_option("--limit", a->limit, "the latest N windows (oldest of them first)");
  evals->callback([&o, &rc, a] {
    // Pages through every window, keeping the latest N.
    Json latest = Json::array();
    std::string after = "0";
    while (true) {
      auto r = Call(o, "GET",
                    "/api/v1/monitors/" + Seg(a->endpoint) + "/evaluations" +
                        Query({{"after", after}, {"limit", "1000"}}));
      if (!r)
        return void(rc = 1);
      for (const auto& e : (*r)["evaluations"])
        latest.push_back(e);
      while (latest.size() > static_cast<size_t>(std::max(a->limit, 1)))
        latest.erase(latest.begin());
      if ((*r)["evaluations"].size() < 1000)
        break;
      after = Str(*r, "next_after");
    }
    Json out = {{"evaluations", latest}};
    if (PrintedJson(o, out))
      return;
    for (const auto& e : latest) {
      std::cout << ShortTime(Str(e, "ended_at")) << "  " << EvaluationSummary(e) << "\n";
      for (const auto& reason : e.value("reasons", Json::array()))
        std::cout << "    " << reason.get<std::string>() << "\n";
    }
  });
  auto* configure = monitors->add_subcommand(
      "configure", "Create or reconfigure an endpoint's monitor (docs/monitoring.md)");
  AddClientFlags(configure, o);
  configure->add_option("endpoint", a->endpoint, "endpoint name")->required();
  configure
      ->add_option("--config", a->config,
                   "JSON, e.g. '{\"window_rows\": 200, \"min_performance\": "
                   "{\"accuracy\": 0.9}}'")
      ->required();
  configure->callback([&o, &rc, a] {
    Json config = Json::parse(a->config, nullptr, false);
    if (config.is_discarded() || !config.is_object())
      return void(rc = UsageError("--config: not a JSON object"));
    auto r = Call(o, "PUT", "/api/v1/monitors/" + Seg(a->endpoint), Json{{"config", config}});
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r))
      std::cout << fmt::format("monitor {}: {}\n", Str(*r, "id"), Str(*r, "state"));
  });
  for (const char* action : {"stop", "resume", "resolve"}) {
    std::string help = std::string(action) == "stop"     ? "Stop evaluating the endpoint's traffic"
                       : std::string(action) == "resume" ? "Resume a stopped monitor from now on"
                                                         : "Close a RetrainDecision by hand";
    auto* c = monitors->add_subcommand(action, help + " (needs --reason)");
    AddClientFlags(c, o);
    c->add_option("endpoint", a->endpoint, "endpoint name")->required();
    c->add_option("--reason", a->reason, "why (kept in the audit log)")->required();
    std::string name = action;
    c->callback([&o, &rc, a, name] {
      auto r = Call(o, "POST", "/api/v1/monitors/" + Seg(a->endpoint) + "/" + name,
                    Json{{"reason", a->reason}});
      if (!r)
        return void(rc = 1);
      if (!PrintedJson(o, *r))
        std::cout << fmt::format("monitor {}: {}\n", Str(*r, "id"), Str(*r, "state"));
    });
  }

  // ---- feedback
  auto* feedback = app.add_subcommand(
      "feedback", "Send ground-truth labels for earlier predictions, by request id");
  AddClientFlags(feedback, o);
  feedback->add_option("endpoint", a->endpoint, "endpoint name")->required();
  feedback->add_option("--label", a->labels, "REQUEST_ID=LABEL (repeatable)")->required();
  feedback->callback([&o, &rc, a] {
    Json items = Json::array();
    for (const auto& pair : a->labels) {
      size_t eq = pair.rfind('=');
      if (eq == std::string::npos || eq == 0)
        return void(rc = UsageError("--label: expected REQUEST_ID=LABEL, got \"" + pair + "\""));
      try {
        items.push_back(
            {{"request_id", pair.substr(0, eq)}, {"label", std::stod(pair.substr(eq + 1))}});
      } catch (const std::exception&) {
        return void(rc = UsageError("--label: \"" + pair.substr(eq + 1) + "\" is not a number"));
      }
    }
    auto r = Call(o, "POST", "/api/v1/feedback", Json{{"endpoint", a->endpoint}, {"items", items}});
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r)) {
      std::cout << fmt::format("{} labels accepted, {} joined to stored predictions now\n",
                               Str(*r, "accepted"), Str(*r, "matched"));
    }
  });

  // ---- profile
  auto* profile = app.add_subcommand(
      "profile", "Reference profiles of model versions (their training data's statistics)");
  profile->require_subcommand(1);
  auto* pset = profile->add_subcommand("set", "Profile a model version's training data (CSV)");
  AddClientFlags(pset, o);
  pset->add_option("model", a->model, "registered model")->required();
  pset->add_option("version", a->version, "model version")->required();
  pset->add_option("-f,--file", a->file, "the training data, CSV with a header row")->required();
  pset->callback([&o, &rc, a] {
    auto text = ReadText(a->file, rc);
    if (!text)
      return;
    auto r = Call(o, "PUT",
                  fmt::format("/api/v1/models/{}/versions/{}/profile", Seg(a->model), a->version),
                  Json{{"csv", *text}, {"source", a->file}});
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r)) {
      std::cout << fmt::format("{} v{}: profiled {} rows, {} features\n", a->model, a->version,
                               Str(*r, "rows"), (*r)["features"].size());
    }
  });
  auto* pshow = profile->add_subcommand("show", "Show a model version's reference profile");
  AddClientFlags(pshow, o);
  pshow->add_option("model", a->model, "registered model")->required();
  pshow->add_option("version", a->version, "model version")->required();
  pshow->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  fmt::format("/api/v1/models/{}/versions/{}/profile", Seg(a->model), a->version));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : (*r)["features"]) {
      rows.push_back({Str(f, "name"), Str(f, "type"), Str(f, "count"), Str(f, "missing"),
                      Str(f, "min"), Str(f, "mean"), Str(f, "max")});
    }
    std::cout << Table({"FEATURE", "TYPE", "COUNT", "MISSING", "MIN", "MEAN", "MAX"}, rows);
  });

  // ---- rules
  auto* rules = app.add_subcommand(
      "rules", "Rules that decide when to retrain, roll back, alert or ask (docs/rules.md)");
  rules->require_subcommand(1);
  auto* apply = rules->add_subcommand("apply", "Submit a rule (a new version when it changed)");
  AddClientFlags(apply, o);
  apply->add_option("-f,--file", a->file, "the rule's YAML")->required();
  apply->callback([&o, &rc, a] {
    auto text = ReadText(a->file, rc);
    if (!text)
      return;
    auto r = Call(o, "POST", "/api/v1/rules", Json{{"yaml", *text}});
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    const Json& rule = (*r)["rule"];
    std::cout << fmt::format(
        "rule {} v{}{}\n", Str(rule, "name"), Str(rule, "version"),
        (*r).value("created_version", false) ? " (new version)" : " (unchanged)");
  });
  auto* rlist = rules->add_subcommand("list", "List rules");
  AddClientFlags(rlist, o);
  rlist->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/rules");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : (*r)["rules"]) {
      const Json& spec = x["spec"];
      rows.push_back({Str(x, "name"), "v" + Str(x, "version"),
                      x.value("enabled", false) ? "enabled" : "disabled",
                      spec.value("dry_run", false) ? "dry run" : "", Str(spec, "when")});
    }
    std::cout << Table({"RULE", "VERSION", "STATE", "MODE", "WHEN"}, rows);
  });
  auto* rshow = rules->add_subcommand("show", "Show a rule as submitted");
  AddClientFlags(rshow, o);
  rshow->add_option("name", a->name, "rule name")->required();
  rshow->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/rules/" + Seg(a->name));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format("# rule {} v{} ({})\n{}", Str(*r, "name"), Str(*r, "version"),
                             r->value("enabled", false) ? "enabled" : "disabled", Str(*r, "yaml"));
  });
  auto* rversions = rules->add_subcommand("versions", "List a rule's versions");
  AddClientFlags(rversions, o);
  rversions->add_option("name", a->name, "rule name")->required();
  rversions->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/rules/" + Seg(a->name) + "/versions");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& v : (*r)["versions"]) {
      rows.push_back({"v" + Str(v, "version"), Str(v, "digest").substr(0, 12), Str(v, "created_by"),
                      ShortTime(Str(v, "created_at"))});
    }
    std::cout << Table({"VERSION", "DIGEST", "BY", "CREATED"}, rows);
  });
  auto* ractions =
      rules->add_subcommand("actions", "List the actions a rule decided, newest first");
  AddClientFlags(ractions, o);
  ractions->add_option("name", a->name, "rule name")->required();
  ractions->add_option("--limit", a->limit, "at most this many");
  ractions->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  "/api/v1/rules/" + Seg(a->name) + "/actions" +
                      Query({{"limit", std::to_string(a->limit)}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : (*r)["actions"]) {
      rows.push_back({ShortTime(Str(x, "created_at")), "v" + Str(x, "rule_version"), Str(x, "type"),
                      Str(x, "state"), Str(x, "attempts"),
                      Str(x, "error").empty() ? Str(x, "result") : Str(x, "error")});
    }
    std::cout << Table({"DECIDED", "RULE", "ACTION", "STATE", "ATTEMPTS", "RESULT"}, rows);
  });
  for (const char* action : {"enable", "disable"}) {
    auto* c = rules->add_subcommand(action, std::string(action) == "enable"
                                                ? "Enable a rule (needs --reason)"
                                                : "Disable a rule (needs --reason)");
    AddClientFlags(c, o);
    c->add_option("name", a->name, "rule name")->required();
    c->add_option("--reason", a->reason, "why (kept in the audit log)")->required();
    std::string name = action;
    c->callback([&o, &rc, a, name] {
      auto r = Call(o, "POST", "/api/v1/rules/" + Seg(a->name) + "/" + name,
                    Json{{"reason", a->reason}});
      if (!r)
        return void(rc = 1);
      if (!PrintedJson(o, *r)) {
        std::cout << fmt::format("rule {}: {}\n", Str(*r, "name"),
                                 r->value("enabled", false) ? "enabled" : "disabled");
      }
    });
  }
  auto* rtest = rules->add_subcommand(
      "test",
      "Replay a rule over the stored events and monitor evaluations: when it would have fired");
  AddClientFlags(rtest, o);
  rtest->add_option("name", a->name, "rule name")->required();
  rtest
      ->add_option("--replay", a->replay,
                   "FROM..TO: RFC 3339 times or durations ago (2h..now, 1d..30m)")
      ->required();
  rtest->add_option("-f,--file", a->file, "test this YAML instead of the stored version");
  rtest->callback([&o, &rc, a] {
    size_t dots = a->replay.find("..");
    if (dots == std::string::npos)
      return void(rc = UsageError("--replay: expected FROM..TO, e.g. 2h..now"));
    Json body = Json::object();
    auto time_of = [](const std::string& text) -> core::Result<std::string> {
      if (text == "now")
        return core::FormatRfc3339(core::NowMicros());
      return TimeFlag(text, "--replay");
    };
    auto from = time_of(a->replay.substr(0, dots));
    auto to = time_of(a->replay.substr(dots + 2));
    if (!from)
      return void(rc = UsageError(from.error().message));
    if (!to)
      return void(rc = UsageError(to.error().message));
    body["from"] = *from;
    body["to"] = *to;
    if (!a->file.empty()) {
      auto text = ReadText(a->file, rc);
      if (!text)
        return;
      body["yaml"] = *text;
    }
    auto r = Call(o, "POST", "/api/v1/rules/" + Seg(a->name) + "/test", body);
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format("rule {} over {} .. {}: {} observations, {} evaluated, {} matched\n",
                             a->name, ShortTime(Str(*r, "from")), ShortTime(Str(*r, "to")),
                             Str(*r, "observations"), Str(*r, "evaluated"), Str(*r, "matched"));
    std::cout << fmt::format("would fire {} time(s):\n", (*r)["would_fire"].size());
    for (const auto& f : (*r)["would_fire"]) {
      std::cout << fmt::format(
          "  {}  {}  {}{}\n", ShortTime(Str(f, "time")), Str(f, "subject"), Str(f, "trigger"),
          f.contains("event_seq") ? " (event " + Str(f, "event_seq") + ")" : "");
    }
    std::cout << fmt::format("fired {} time(s) in that range:\n", (*r)["fired"].size());
    for (const auto& f : (*r)["fired"]) {
      std::cout << fmt::format(
          "  {}  {}  v{}{}\n", ShortTime(Str(f, "time")), Str(f, "subject"), Str(f, "rule_version"),
          f.contains("event_seq") ? " (event " + Str(f, "event_seq") + ")" : "");
    }
  });

  // ---- approvals
  auto* approvals = app.add_subcommand("approvals", "Actions rules ask a person to approve");
  approvals->require_subcommand(1);
  auto* alist = approvals->add_subcommand("list", "List approvals");
  AddClientFlags(alist, o);
  alist->add_option("--state", a->state, "Pending | Approved | Rejected");
  alist->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/approvals" + Query({{"state", a->state}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : (*r)["approvals"]) {
      rows.push_back({Str(x, "id"), Str(x, "state"), Str(x["data"], "rule"),
                      Str(x["data"], "summary"), ShortTime(Str(x, "created_at"))});
    }
    std::cout << Table({"APPROVAL", "STATE", "RULE", "SUMMARY", "REQUESTED"}, rows);
  });
  for (const char* action : {"approve", "reject"}) {
    auto* c = approvals->add_subcommand(
        action, std::string(action) == "approve" ? "Approve: the actions run now (needs --reason)"
                                                 : "Reject: nothing runs (needs --reason)");
    AddClientFlags(c, o);
    c->add_option("id", a->id, "approval id")->required();
    c->add_option("--reason", a->reason, "why (kept in the audit log)")->required();
    std::string name = action;
    c->callback([&o, &rc, a, name] {
      auto r = Call(o, "POST", "/api/v1/approvals/" + Seg(a->id) + "/" + name,
                    Json{{"reason", a->reason}});
      if (!r)
        return void(rc = 1);
      if (!PrintedJson(o, *r))
        std::cout << fmt::format("approval {}: {}\n", Str(*r, "id"), Str(*r, "state"));
    });
  }

  // ---- alerts
  auto* alerts = app.add_subcommand("alerts", "Alerts raised by rules");
  alerts->require_subcommand(1);
  auto* allist = alerts->add_subcommand("list", "List alerts, newest first");
  AddClientFlags(allist, o);
  allist->add_flag("--firing", a->firing, "only the ones firing now");
  allist->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/alerts" + Query({{"state", a->firing ? "firing" : ""}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : (*r)["alerts"]) {
      rows.push_back({Str(x, "key"), Str(x, "severity"), Str(x, "state"),
                      ShortTime(Str(x, "starts_at")), Str(x, "summary"), Str(x, "send_error")});
    }
    std::cout << Table({"ALERT", "SEVERITY", "STATE", "SINCE", "SUMMARY", "DELIVERY ERROR"}, rows);
  });
}

}  // namespace kervan::app
