// Serving commands:
//   kervan deploy MODEL --version N [strategy flags] [-w]
//   kervan rollout status|history|promote|pause|resume|abort|rollback ENDPOINT
//   kervan endpoints list|show
//   kervan predict ENDPOINT (--json BODY | -f FILE) [--preview] [--version N]
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

bool ActiveState(const std::string& s) {
  return s == "Preparation" || s == "Shadow" || s == "GradualRollout" || s == "Paused";
}

// "canary step 2/3 at 50%", "shadow (100% mirrored)", "preview", ...
std::string PhaseText(const Json& rollout) {
  const Json& p = rollout.value("progress", Json::object());
  std::string phase = Str(p, "phase");
  if (phase == "canary") {
    return fmt::format("canary step {}/{} at {}%", p.value("step", 0) + 1, Str(p, "steps"),
                       Num(p.value("weight", 0.0)));
  }
  if (phase == "shadow")
    return fmt::format("shadow ({}% mirrored)", Num(p.value("shadow_percent", 0.0)));
  if (phase == "preview")
    return "blue/green preview";
  return phase;
}

// One line per evaluation: verdict, action and each check's numbers.
std::string EvaluationLine(const Json& ev) {
  if (ev.is_null())
    return "";
  std::vector<std::string> checks;
  for (const auto& c : ev.value("checks", Json::array())) {
    if (Str(c, "name") == "sample_size") {  // not a failure: the verdict waits for it
      checks.push_back(fmt::format("{} candidate requests (need {})", Num(c.value("value", 0.0)),
                                   Num(c.value("threshold", 0.0))));
      continue;
    }
    checks.push_back(fmt::format("{}{} {} (limit {})", c.value("passed", false) ? "" : "FAILED ",
                                 Str(c, "name"), Num(c.value("value", 0.0)),
                                 Num(c.value("threshold", 0.0))));
  }
  return fmt::format("{} -> {}: {}", Str(ev, "verdict"), Str(ev, "action"),
                     fmt::join(checks, ", "));
}

// {"phase": "canary", "weight": 20, ...} -> "canary: 20% to the candidate".
std::string RoutingText(const Json& rule) {
  if (!rule.is_object())
    return "";
  std::string phase = Str(rule, "phase");
  std::string out;
  if (phase == "canary")
    out = fmt::format("canary: {}% to the candidate", Num(rule.value("weight", 0.0)));
  else if (phase == "shadow")
    out = fmt::format("shadow: {}% mirrored to the candidate",
                      Num(rule.value("shadow_percent", 0.0)));
  else if (phase == "preview")
    out = "blue/green: the candidate on the preview route only";
  else
    out = "all traffic to the stable version";
  for (const auto& h : rule.value("header_routes", Json::array()))
    out += fmt::format("; {}: {} -> {}", Str(h, "header"), Str(h, "value"), Str(h, "target"));
  return out;
}

std::string RolloutSummary(const Json& r) {
  std::string out =
      Fields({{"rollout", Str(r, "id")},
              {"endpoint", Str(r, "endpoint")},
              {"model", fmt::format("{} v{} (stable v{})", Str(r, "model"),
                                    Str(r, "candidate_version"), Str(r, "stable_version"))},
              {"strategy", Str(r["strategy"], "strategy")},
              {"state", Str(r, "state")},
              {"phase", ActiveState(Str(r, "state")) ? PhaseText(r) : ""},
              {"failures", fmt::format("{} of {}", Str(r["progress"], "failures"),
                                       Str(r["strategy"]["analysis"], "failure_limit"))},
              {"last analysis", EvaluationLine(r.value("last_evaluation", Json()))},
              {"outcome", Str(r, "outcome")},
              {"started", ShortTime(Str(r, "created_at"))},
              {"finished", ShortTime(Str(r, "finished_at"))}});
  return out;
}

// Prints the rollout's progress until it ends; 0 when it reached
// FullProduction, 1 otherwise.
int Watch(const ClientOptions& o, const std::string& endpoint, const std::string& rollout_id) {
  std::string last;
  std::string seen_eval;
  bool json = o.output == "json";
  while (true) {
    auto r = Call(o, "GET", "/api/v1/rollouts/" + Seg(rollout_id));
    if (!r) {
      std::cerr << fmt::format("  the rollout goes on; see `kervan rollout status {}`\n", endpoint);
      return 1;
    }
    std::string state = Str(*r, "state");
    if (!json) {
      std::string line = fmt::format("{}  {}", state, ActiveState(state) ? PhaseText(*r) : "");
      if (line != last) {
        std::cout << ShortTime(Str(*r, "updated_at")) << "  " << line << "\n" << std::flush;
        last = line;
      }
      const Json& ev = r->value("last_evaluation", Json());
      if (!ev.is_null() && Str(ev, "time") != seen_eval) {
        seen_eval = Str(ev, "time");
        std::cout << "    analysis: " << EvaluationLine(ev) << "\n" << std::flush;
      }
    }
    if (!ActiveState(state)) {
      if (PrintedJson(o, *r))
        return state == "FullProduction" ? 0 : 1;
      std::cout << fmt::format("rollout {} on {}: {}\n", rollout_id, endpoint, Str(*r, "outcome"));
      return state == "FullProduction" ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

std::vector<double> ParseWeights(const std::string& text, std::string* error) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stod(part, &used));
      if (used != part.size())
        throw std::invalid_argument(part);
    } catch (const std::exception&) {
      *error =
          fmt::format("--steps: \"{}\" is not a number (give percentages like 10,50,100)", part);
      return {};
    }
  }
  return out;
}

}  // namespace

void AddServingCommands(CLI::App& app, ClientOptions& o, int& rc) {
  struct Args {
    std::string model, endpoint, strategy = "canary", steps, reason, body, file, action;
    int64_t version = 0;
    int64_t step_seconds = 30, step_requests = 50, interval = 10, min_samples = 20;
    int64_t shadow_seconds = 30, shadow_requests = 50, failure_limit = 2;
    double shadow = 0, max_error_rate = 0.01, max_p99_ms = 0, max_p99_ratio = 2,
           sample_percent = -1;
    bool wait = false, preview = false;
    int limit = 20;
  };
  auto a = std::make_shared<Args>();

  // ---- deploy
  auto* deploy = app.add_subcommand(
      "deploy",
      "Deploy a DeploymentReady model version to an endpoint with a rollout strategy "
      "(docs/rollouts.md); the first deployment of an endpoint goes live at once");
  AddClientFlags(deploy, o);
  deploy->add_option("model", a->model, "registered model name")->required();
  deploy->add_option("--version", a->version, "model version to deploy")->required();
  deploy->add_option("--endpoint", a->endpoint, "endpoint name (default: the model name)");
  deploy->add_option("--strategy", a->strategy, "canary | bluegreen | direct")
      ->check(CLI::IsMember({"canary", "bluegreen", "direct"}));
  deploy->add_option("--steps", a->steps, "canary weights in percent, e.g. 10,50,100");
  deploy->add_option("--step-seconds", a->step_seconds,
                     "minimum duration of each canary step (or the blue/green preview)");
  deploy->add_option("--step-requests", a->step_requests,
                     "minimum candidate requests of each step (or the preview)");
  deploy->add_option("--shadow", a->shadow,
                     "mirror this percentage of traffic to the candidate first (0: no shadow)");
  deploy->add_option("--shadow-seconds", a->shadow_seconds, "minimum duration of the shadow phase");
  deploy->add_option("--shadow-requests", a->shadow_requests,
                     "minimum mirrored requests of the shadow phase");
  deploy->add_option("--interval", a->interval, "seconds between analyses");
  deploy->add_option("--min-samples", a->min_samples, "candidate requests an analysis needs");
  deploy->add_option("--failure-limit", a->failure_limit, "failed analyses before rollback");
  deploy->add_option("--max-error-rate", a->max_error_rate, "candidate error rate allowed (0-1)");
  deploy->add_option("--max-p99-ms", a->max_p99_ms, "candidate p99 latency allowed (0: no limit)");
  deploy->add_option("--max-p99-ratio", a->max_p99_ratio,
                     "candidate p99 / stable p99 allowed (0: no limit; default 2)");
  deploy->add_option("--sample-percent", a->sample_percent,
                     "share of requests stored as samples (default: the endpoint's)");
  deploy->add_option("--reason", a->reason, "why (kept with the rollout)");
  deploy->add_flag("-w,--wait", a->wait,
                   "follow the rollout until it ends; exit 0 only when it reaches full production");
  deploy->callback([&o, &rc, a] {
    Json strategy{{"strategy", a->strategy}};
    if (!a->steps.empty()) {
      std::string error;
      std::vector<double> weights = ParseWeights(a->steps, &error);
      if (!error.empty())
        return void(rc = UsageError(error));
      Json steps = Json::array();
      for (double w : weights) {
        steps.push_back({{"weight", w},
                         {"min_duration_s", a->step_seconds},
                         {"min_requests", a->step_requests}});
      }
      strategy["steps"] = steps;
    } else if (a->strategy == "canary") {
      Json steps = Json::array();
      for (double w : {10.0, 50.0, 100.0}) {
        steps.push_back({{"weight", w},
                         {"min_duration_s", a->step_seconds},
                         {"min_requests", a->step_requests}});
      }
      strategy["steps"] = steps;
    }
    if (a->strategy == "bluegreen")
      strategy["preview"] = {{"min_duration_s", a->step_seconds},
                             {"min_requests", a->step_requests}};
    if (a->shadow > 0) {
      strategy["shadow"] = {{"percent", a->shadow},
                            {"min_duration_s", a->shadow_seconds},
                            {"min_requests", a->shadow_requests}};
    }
    Json analysis{{"interval_s", a->interval},
                  {"window_s", std::max<int64_t>(60, a->interval)},
                  {"min_samples", a->min_samples},
                  {"failure_limit", a->failure_limit},
                  {"max_error_rate", a->max_error_rate}};
    if (a->max_p99_ms > 0)
      analysis["max_latency_p99_ms"] = a->max_p99_ms;
    analysis["max_latency_p99_ratio"] =
        a->max_p99_ratio > 0 ? Json(a->max_p99_ratio) : Json(nullptr);
    strategy["analysis"] = analysis;
    Json body{{"model", a->model}, {"version", a->version}, {"strategy", strategy}};
    if (!a->endpoint.empty())
      body["endpoint"] = a->endpoint;
    if (!a->reason.empty())
      body["reason"] = a->reason;
    if (a->sample_percent >= 0)
      body["sample_percent"] = a->sample_percent;
    auto r = Call(o, "POST", "/api/v1/deployments", body);
    if (!r)
      return void(rc = 1);
    std::string endpoint = Str(*r, "endpoint");
    if (a->wait) {
      if (o.output != "json") {
        std::cout << fmt::format("deploying {} v{} to endpoint {} ({})\n", a->model, a->version,
                                 endpoint, a->strategy);
      }
      rc = Watch(o, endpoint, Str(*r, "id"));
      return;
    }
    if (PrintedJson(o, *r))
      return;
    std::cout << RolloutSummary(*r);
    if (ActiveState(Str(*r, "state")))
      std::cout << fmt::format("follow it: kervan rollout status {} -w\n", endpoint);
  });

  // ---- rollout
  auto* rollout = app.add_subcommand(
      "rollout",
      "Rollouts of an endpoint: status [-w], history, promote, pause, resume, abort, "
      "rollback (docs/rollouts.md)");
  rollout->require_subcommand(1);
  auto* status = rollout->add_subcommand(
      "status", "Show the endpoint's active (or last) rollout; -w follows it until it ends");
  AddClientFlags(status, o);
  status->add_option("endpoint", a->endpoint, "endpoint name")->required();
  status->add_flag("-w,--watch", a->wait, "follow live progress until the rollout ends");
  status->callback([&o, &rc, a] {
    auto e = Call(o, "GET", "/api/v1/endpoints/" + Seg(a->endpoint));
    if (!e)
      return void(rc = 1);
    Json r = (*e)["rollout"].is_null() ? (*e)["last_rollout"] : (*e)["rollout"];
    if (r.is_null()) {
      if (PrintedJson(o, *e))
        return;
      std::cout << fmt::format("endpoint {} serves {} v{}; no rollout yet\n", a->endpoint,
                               Str(*e, "model"), Str(*e, "stable_version"));
      return;
    }
    if (a->wait && ActiveState(Str(r, "state"))) {
      rc = Watch(o, a->endpoint, Str(r, "id"));
      return;
    }
    if (PrintedJson(o, r))
      return;
    std::cout << RolloutSummary(r);
  });

  auto* history = rollout->add_subcommand("history", "List the endpoint's rollouts, newest first");
  AddClientFlags(history, o);
  history->add_option("endpoint", a->endpoint, "endpoint name")->required();
  history->add_option("--limit", a->limit, "how many (default 20)");
  history->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  "/api/v1/endpoints/" + Seg(a->endpoint) + "/rollouts" +
                      Query({{"limit", std::to_string(a->limit)}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : (*r)["rollouts"]) {
      rows.push_back({Str(x, "id"), "v" + Str(x, "candidate_version"),
                      "v" + Str(x, "stable_version"), Str(x["strategy"], "strategy"),
                      Str(x, "state"), ShortTime(Str(x, "created_at")), Str(x, "outcome")});
    }
    std::cout << Table(
        {"ROLLOUT", "CANDIDATE", "STABLE", "STRATEGY", "STATE", "STARTED", "OUTCOME"}, rows);
  });

  for (const char* action : {"promote", "pause", "resume", "abort", "rollback"}) {
    std::string help =
        std::string(action) == "promote"  ? "Promote the candidate to full production now"
        : std::string(action) == "pause"  ? "Pause the rollout: the candidate gets no traffic"
        : std::string(action) == "resume" ? "Resume a paused rollout at its step"
        : std::string(action) == "abort"  ? "Abort the rollout: the stable version keeps serving"
                                          : "Roll back: the active rollout, or the last promoted "
                                            "one to the version it replaced (kept warm)";
    auto* c = rollout->add_subcommand(action, help + " (needs --reason)");
    AddClientFlags(c, o);
    c->add_option("endpoint", a->endpoint, "endpoint name")->required();
    c->add_option("--reason", a->reason, "why (kept in the audit log)")->required();
    std::string name = action;
    c->callback([&o, &rc, a, name] {
      auto r = Call(o, "POST", "/api/v1/endpoints/" + Seg(a->endpoint) + "/rollout/" + name,
                    Json{{"reason", a->reason}});
      if (!r)
        return void(rc = 1);
      if (PrintedJson(o, *r))
        return;
      std::cout << RolloutSummary(*r);
    });
  }

  // ---- endpoints
  auto* endpoints = app.add_subcommand("endpoints", "Inference endpoints: list, show");
  endpoints->require_subcommand(1);
  auto* list = endpoints->add_subcommand("list", "List endpoints and the versions they serve");
  AddClientFlags(list, o);
  list->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/endpoints");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : (*r)["endpoints"]) {
      rows.push_back({Str(e, "name"), Str(e, "model"), "v" + Str(e, "stable_version"),
                      Str(e, "previous_version") == "0" ? "" : "v" + Str(e, "previous_version"),
                      Str(e, "rollout_id"), Str(e, "project")});
    }
    std::cout << Table({"ENDPOINT", "MODEL", "STABLE", "PREVIOUS", "ACTIVE ROLLOUT", "PROJECT"},
                       rows);
  });
  auto* show = endpoints->add_subcommand("show", "Show an endpoint, its routing and its rollout");
  AddClientFlags(show, o);
  show->add_option("endpoint", a->endpoint, "endpoint name")->required();
  show->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/endpoints/" + Seg(a->endpoint));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << Fields(
        {{"endpoint", Str(*r, "name")},
         {"model", Str(*r, "model")},
         {"stable", "v" + Str(*r, "stable_version")},
         {"previous", Str(*r, "previous_version") == "0" ? "" : "v" + Str(*r, "previous_version")},
         {"routing", RoutingText((*r)["routing"])},
         {"samples", Num(r->value("sample_percent", 0.0)) + "% of requests"},
         {"predict", fmt::format("POST /v1/endpoints/{}/predict, POST "
                                 "/v2/models/{}/infer",
                                 Str(*r, "name"), Str(*r, "name"))}});
    Json rollout = (*r)["rollout"].is_null() ? (*r)["last_rollout"] : (*r)["rollout"];
    if (!rollout.is_null())
      std::cout << "\n" << RolloutSummary(rollout);
  });

  // ---- predict
  auto* predict = app.add_subcommand(
      "predict", "Send one prediction request ({\"instances\": [...]}) to an endpoint");
  AddClientFlags(predict, o);
  predict->add_option("endpoint", a->endpoint, "endpoint name")->required();
  predict->add_option("--json", a->body, "request body, e.g. '{\"instances\": [[1, 2]]}'");
  predict->add_option("-f,--file", a->file, "read the request body from this file");
  predict->add_flag("--preview", a->preview, "send it to the candidate's preview route");
  predict->callback([&o, &rc, a] {
    if (a->body.empty() == a->file.empty())
      return void(rc = UsageError("give the request body with --json or -f FILE (one of them)"));
    std::string text = a->body;
    if (!a->file.empty()) {
      std::ifstream in(a->file);
      if (!in)
        return void(rc = UsageError("cannot read " + a->file));
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
    Json body = Json::parse(text, nullptr, false);
    if (body.is_discarded())
      return void(rc = UsageError("the request body is not valid JSON"));
    auto raw = CallRaw(
        o, "POST",
        "/v1/endpoints/" + Seg(a->endpoint) + (a->preview ? "/preview" : "") + "/predict", body);
    if (!raw)
      return void(rc = 1);
    Json r = Json::parse(raw->body, nullptr, false);
    if (PrintedJson(o, r))
      return;
    std::cout << fmt::format("{} v{} ({}): {}\n", Str(r, "model"), Str(r, "model_version"),
                             raw->Header("x-kervan-route"), r["predictions"].dump());
  });
}

}  // namespace kervan::app
