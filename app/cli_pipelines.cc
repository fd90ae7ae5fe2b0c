// Client commands for pipelines and datasets:
//   kervan pipelines submit|run|list|show|runs|status|logs|cancel|webhook-secret
//   kervan datasets register|list|show
#include "app/cli_pipelines.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "app/cli_commands.h"

namespace kervan::app {

namespace fs = std::filesystem;

namespace {

// A YAML double-quoted scalar.
std::string YamlQuote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += std::string("\\") + c;
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\x{:02X}", static_cast<unsigned char>(c));
    else
      out += c;
  }
  return out + "\"";
}

// The document without its top-level workdir, as text to compare.
std::string DumpWithoutWorkdir(const YAML::Node& root) {
  YAML::Node copy = YAML::Clone(root);
  copy.remove("workdir");
  return YAML::Dump(copy);
}

// Whether `candidate` reads as `original` with workdir set to `want`.
bool SameWithWorkdir(const YAML::Node& original, const std::string& candidate,
                     const std::string& want) {
  try {
    const YAML::Node root = YAML::Load(candidate);
    if (!root.IsMap() || !root["workdir"].IsScalar() || root["workdir"].as<std::string>() != want)
      return false;
    return DumpWithoutWorkdir(root) == DumpWithoutWorkdir(original);
  } catch (const YAML::Exception&) {
    return false;
  }
}

}  // namespace

std::string WithWorkdir(const std::string& yaml, const std::string& dir) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception&) {
    return yaml;  // the server says where the syntax error is
  }
  if (!root.IsMap())
    return yaml;
  const YAML::Node& croot = root;  // const: reading a missing key must not add it
  const YAML::Node current = croot["workdir"];
  bool present = current.IsDefined();
  std::string want = dir;
  if (present && !current.IsNull()) {
    if (!current.IsScalar())
      return yaml;  // the server refuses it with its line and column
    std::string text = current.as<std::string>();
    if (!text.empty()) {
      if (fs::path(text).is_absolute())
        return yaml;
      want = (fs::path(dir) / text).lexically_normal().string();
      if (want.size() > 1 && want.back() == '/')
        want.pop_back();
    }
  }
  std::string line = "workdir: " + YamlQuote(want);

  std::string candidate;
  if (!present) {
    candidate = yaml;
    if (!candidate.empty() && candidate.back() != '\n')
      candidate += '\n';
    candidate += line + "\n";
  } else {
    // Replace the top-level `workdir:` line (a value on the same line).
    size_t pos = 0;
    while (pos < yaml.size()) {
      size_t end = yaml.find('\n', pos);
      if (end == std::string::npos)
        end = yaml.size();
      if (yaml.compare(pos, 8, "workdir:") == 0) {
        candidate = yaml.substr(0, pos) + line + yaml.substr(end);
        break;
      }
      pos = end + 1;
    }
  }
  if (!candidate.empty() && SameWithWorkdir(root, candidate, want))
    return candidate;

  YAML::Node copy = YAML::Clone(root);
  copy["workdir"] = want;
  YAML::Emitter out;
  out << copy;
  return std::string(out.c_str()) + "\n";
}

std::string RenderDag(const Json& run_or_spec) {
  const Json& doc =
      run_or_spec.is_object() && run_or_spec.contains("spec") && run_or_spec["spec"].is_object()
          ? run_or_spec["spec"]
          : run_or_spec;
  if (!doc.is_object() || !doc.contains("steps") || !doc["steps"].is_array())
    return "";
  struct Line {
    std::string label, name, deps;
  };
  std::vector<Line> lines;
  std::map<std::string, int> depth;
  size_t label_width = 0, name_width = 0;
  for (const auto& step : doc["steps"]) {
    if (!step.is_object())
      continue;
    std::string name = step.contains("step") ? Str(step, "step") : Str(step, "name");
    int d = 0;
    std::string deps;
    for (const auto& dep : step.value("depends_on", Json::array())) {
      if (!dep.is_string())
        continue;
      auto it = depth.find(dep.get<std::string>());
      d = std::max(d, it == depth.end() ? 1 : it->second + 1);
      deps += (deps.empty() ? "" : ", ") + dep.get<std::string>();
    }
    depth[name] = d;
    Line l{.label = step.contains("state") ? Str(step, "state") : Str(step, "type"),
           .name = std::string(2 * static_cast<size_t>(d), ' ') + name +
                   (step.value("cached", false) ? " (cached)" : ""),
           .deps = deps};
    label_width = std::max(label_width, l.label.size());
    name_width = std::max(name_width, l.name.size());
    lines.push_back(std::move(l));
  }
  std::string out;
  for (const auto& l : lines) {
    if (l.deps.empty())
      out += fmt::format("[{:<{}}] {}\n", l.label, label_width, l.name);
    else
      out +=
          fmt::format("[{:<{}}] {:<{}}  <- {}\n", l.label, label_width, l.name, name_width, l.deps);
  }
  return out;
}

namespace {

bool Terminal(const std::string& state) {
  return state == "Succeeded" || state == "Failed" || state == "Cancelled";
}

// The spec file's text, ready to submit (WithWorkdir against its directory).
core::Result<std::string> ReadSpecFile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return core::InvalidArgument(fmt::format("cannot read {}", path), "file");
  std::stringstream text;
  text << in.rdbuf();
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec)
    return core::InvalidArgument(fmt::format("{}: {}", path, ec.message()), "file");
  return WithWorkdir(text.str(), abs.lexically_normal().parent_path().string());
}

// "sha256:0123456789abcdef..." -> "0123456789ab".
std::string ShortDigest(const std::string& digest) {
  std::string d = digest.substr(digest.find(':') == std::string::npos ? 0 : digest.find(':') + 1);
  return d.substr(0, 12);
}

std::string Joined(const Json& values, const std::string& sep = ", ") {
  std::string out;
  if (!values.is_array())
    return out;
  for (const auto& v : values)
    out += (out.empty() ? "" : sep) + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

std::string ParamsText(const Json& params) {
  std::string out;
  if (!params.is_object())
    return out;
  for (const auto& [k, v] : params.items())
    out += (out.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

std::string TriggerText(const Json& t) {
  std::string kind = Str(t, "kind");
  std::string what;
  if (kind == "cron") {
    what = "cron \"" + Str(t, "cron") + "\"";
  } else if (kind == "dataset") {
    what = "dataset " + Str(t, "dataset") + " (a new version)";
  } else if (kind == "event") {
    what = "event " + Str(t, "event_type") +
           (Str(t, "filter").empty() ? "" : " where " + Str(t, "filter"));
  } else if (kind == "webhook") {
    std::string events = Joined(t.value("webhook_events", Json::array()));
    std::string branches = Joined(t.value("branches", Json::array()));
    what = "webhook events " + (events.empty() ? "any" : events) + ", branches " +
           (branches.empty() ? "any" : branches);
  } else if (kind == "manual") {
    what = "manual" + (Str(t, "actor").empty() ? "" : " by " + Str(t, "actor"));
  } else {
    what = t.dump();
  }
  std::string params = ParamsText(t.value("params", Json::object()));
  return what + (params.empty() ? "" : "; params " + params);
}

// What started a run, short: "manual (user:alice)", "cron", "webhook".
std::string TriggerShort(const Json& t) {
  if (!t.is_object())
    return "";
  std::string kind = Str(t, "kind");
  return kind == "manual" && !Str(t, "actor").empty() ? kind + " (" + Str(t, "actor") + ")" : kind;
}

// A number from the JSON as a person writes it: 1000, not 1000.0.
std::string NumText(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? Num(j[key].get<double>()) : Str(j, key);
}

// One expectation as written: "range mean_radius [0, 100]", "row_count >= 500".
std::string ExpectationText(const Json& e) {
  std::string out = Str(e, "expect");
  if (!Str(e, "column").empty())
    out += " " + Str(e, "column");
  if (e.contains("min") && e.contains("max"))
    out += " [" + NumText(e, "min") + ", " + NumText(e, "max") + "]";
  else if (e.contains("min"))
    out += " >= " + NumText(e, "min");
  else if (e.contains("max"))
    out += " <= " + NumText(e, "max");
  if (!Str(e, "type").empty())
    out += " " + Str(e, "type");
  if (e.contains("values"))
    out += " {" + Joined(e["values"]) + "}";
  if (!Str(e, "pattern").empty())
    out += " /" + Str(e, "pattern") + "/";
  return out;
}

// What a step produced, in a few words: a validate step's tally, a register
// step's model version, a command step's metrics.
std::string ResultSummary(const Json& step) {
  const Json result = step.value("result", Json::object());
  if (!result.is_object() || result.empty())
    return "";
  if (Str(step, "type") == "validate" && result.contains("results")) {
    int total = 0, passed = 0;
    std::string warnings;
    for (const auto& r : result["results"]) {
      ++total;
      if (r.value("passed", false)) {
        ++passed;
      } else if (r.contains("expectation") && Str(r["expectation"], "severity") == "warning") {
        warnings += (warnings.empty() ? "" : "; ") + ExpectationText(r["expectation"]);
      }
    }
    return fmt::format("{} of {} expectations passed on {} rows{}", passed, total,
                       Str(result, "rows"), warnings.empty() ? "" : "; warning: " + warnings);
  }
  if (Str(step, "type") == "register" && result.contains("version")) {
    return fmt::format("model {} version {}: {}", Str(result, "model"), Str(result, "version"),
                       Str(result, "state"));
  }
  std::string out;
  if (result.contains("metrics") && result["metrics"].is_object()) {
    for (const auto& [k, v] : result["metrics"].items())
      out += (out.empty() ? "" : " ") + k + "=" + (v.is_number() ? Num(v.get<double>()) : v.dump());
  }
  return out;
}

// The expectations of a validate step's report that did not pass, one line
// each: "  error   not_null target: 3 of 569 rows are null (row 17: \"\")".
std::string FailedExpectations(const Json& report, const std::string& indent) {
  std::string out;
  if (!report.is_object())
    return out;
  for (const auto& r : report.value("results", Json::array())) {
    if (r.value("passed", true))
      continue;
    const Json e = r.value("expectation", Json::object());
    std::string examples = Joined(r.value("examples", Json::array()), "; ");
    out += fmt::format("{}{:<7} {}: {}{}\n", indent, Str(e, "severity"), ExpectationText(e),
                       Str(r, "detail"), examples.empty() ? "" : " (" + examples + ")");
  }
  return out;
}

// Why a run did not succeed: its failure, then each failed step's failure
// and, for validate steps, the expectations that failed.
std::string FailureSummary(const Json& run) {
  std::string out;
  if (!Str(run, "failure").empty())
    out += "failure: " + Str(run, "failure") + "\n";
  for (const auto& s : run.value("steps", Json::array())) {
    if (Str(s, "state") != "Failed")
      continue;
    out += fmt::format("step {} failed: {}\n", Str(s, "step"),
                       Str(s, "failure").empty() ? "(no detail)" : Str(s, "failure"));
    if (Str(s, "type") == "validate")
      out += FailedExpectations(s.value("result", Json::object()), "  ");
    else if (!Str(s, "job_id").empty())
      out += fmt::format("  output: kervan pipelines logs {} {}\n", Str(run, "id"), Str(s, "step"));
  }
  return out;
}

// A step's line while waiting: "train     Running    job 0192..."
std::string ProgressLine(const Json& step, size_t width) {
  std::string line = fmt::format("  {:<{}}  {:<9}", Str(step, "step"), width, Str(step, "state"));
  if (step.value("cached", false))
    line += "  cached from " + Str(step, "cached_from");
  else if (!Str(step, "job_id").empty())
    line += "  job " + Str(step, "job_id");
  while (!line.empty() && line.back() == ' ')
    line.pop_back();
  return line;
}

// Polls the run until it ends, printing each step's line when it changes
// (nothing but the final JSON with -o json). Returns the exit status: 0 when
// the run succeeded, 1 otherwise.
int WaitForRun(const ClientOptions& o, const std::string& id) {
  std::map<std::string, std::string> shown;
  bool json = o.output == "json";
  while (true) {
    auto r = Call(o, "GET", "/api/v1/pipeline-runs/" + Seg(id));
    if (!r) {
      std::cerr << fmt::format("  the run goes on; see `kervan pipelines status {}`\n", id);
      return 1;
    }
    const Json& run = *r;
    std::string state = Str(run, "state");
    if (!json) {
      size_t width = 0;
      for (const auto& s : run.value("steps", Json::array()))
        width = std::max(width, Str(s, "step").size());
      for (const auto& s : run.value("steps", Json::array())) {
        std::string line = ProgressLine(s, width);
        bool waiting = Str(s, "state") == "Pending" && !shown.contains(Str(s, "step"));
        if (!waiting && shown[Str(s, "step")] != line) {
          std::cout << line << "\n" << std::flush;
          shown[Str(s, "step")] = line;
        }
      }
    }
    if (Terminal(state)) {
      if (PrintedJson(o, run))
        return state == "Succeeded" ? 0 : 1;
      std::cout << "\n" << RenderDag(run);
      std::cout << fmt::format("\npipeline run {}: {}\n", id, state);
      if (state != "Succeeded") {
        std::cout << FailureSummary(run);
        return 1;
      }
      for (const auto& s : run.value("steps", Json::array())) {
        if (Str(s, "type") == "register" && !ResultSummary(s).empty())
          std::cout << fmt::format("step {}: {}\n", Str(s, "step"), ResultSummary(s));
      }
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

}  // namespace

void AddPipelineCommands(CLI::App& app, ClientOptions& o, int& rc) {
  auto* cmd = app.add_subcommand(
      "pipelines",
      "Pipelines (DAGs of steps, docs/pipelines.md): submit, run, list, show, runs, status, logs, "
      "cancel, webhook-secret");
  cmd->require_subcommand(1);
  struct Args {
    std::string file, name, pipeline, state, id, step, reason, uri, project;
    int64_t version = 0;
    int limit = 50;
    std::vector<std::string> params, no_cache_steps;
    bool no_cache = false, wait = false, follow = false;
  };
  auto a = std::make_shared<Args>();

  auto* submit = cmd->add_subcommand(
      "submit",
      "Store a pipeline spec (YAML) as the pipeline's next version, unless it equals the latest. "
      "Without a workdir the spec gets the spec file's directory as its workdir");
  AddClientFlags(submit, o);
  submit->add_option("-f,--file", a->file, "pipeline spec file (YAML)")->required();
  submit->callback([&o, &rc, a] {
    auto text = ReadSpecFile(a->file);
    if (!text)
      return void(rc = UsageError(text.error().message));
    auto r = Call(o, "POST", "/api/v1/pipelines", Json{{"yaml", *text}});
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format("pipeline {} version {} ({})\n", Str(*r, "name"), Str(*r, "version"),
                             r->value("created", false) ? "new" : "unchanged");
  });

  auto* run = cmd->add_subcommand(
      "run",
      "Start a run of a pipeline (NAME, or -f SPEC.yaml to submit it first); -w waits and shows "
      "each step's progress, exiting 0 only when the run succeeds");
  AddClientFlags(run, o);
  run->add_option("pipeline", a->name, "pipeline name (or -f)");
  run->add_option("-f,--file", a->file, "submit this spec file first, then run that version");
  run->add_option("-p,--param", a->params, "KEY=VALUE run parameter; repeatable")
      ->allow_extra_args(false);
  run->add_flag("--no-cache", a->no_cache, "run every step, reusing no cached result");
  run->add_option("--no-cache-step", a->no_cache_steps, "run this step even if cached; repeatable")
      ->allow_extra_args(false);
  run->add_option("--version", a->version, "pipeline version (default: the latest)");
  run->add_flag("-w,--wait", a->wait, "wait for the run to end, showing its steps");
  run->callback([&o, &rc, a] {
    if (a->name.empty() && a->file.empty())
      return void(rc = UsageError("give a pipeline NAME, or -f SPEC.yaml to submit and run it"));
    if (!a->name.empty() && !a->file.empty())
      return void(rc = UsageError("give a pipeline NAME or -f SPEC.yaml, not both"));
    if (!a->file.empty() && a->version != 0)
      return void(rc = UsageError("--version and -f exclude each other: -f runs what it submits"));
    auto params = ParsePairs(a->params, "--param");
    if (!params)
      return void(rc = UsageError(params.error().message));
    std::string name = a->name;
    int64_t version = a->version;
    if (!a->file.empty()) {
      auto text = ReadSpecFile(a->file);
      if (!text)
        return void(rc = UsageError(text.error().message));
      auto s = Call(o, "POST", "/api/v1/pipelines", Json{{"yaml", *text}});
      if (!s)
        return void(rc = 1);
      name = Str(*s, "name");
      version = s->value("version", int64_t{0});
      if (o.output != "json") {
        std::cout << fmt::format("pipeline {} version {} ({})\n", name, version,
                                 s->value("created", false) ? "new" : "unchanged");
      }
    }
    Json body = Json::object();
    if (version > 0)
      body["version"] = version;
    if (!params->empty())
      body["params"] = *params;
    if (a->no_cache)
      body["no_cache"] = true;
    if (!a->no_cache_steps.empty())
      body["no_cache_steps"] = a->no_cache_steps;
    auto r = Call(o, "POST", "/api/v1/pipelines/" + Seg(name) + "/runs", body);
    if (!r)
      return void(rc = 1);
    std::string id = Str(*r, "id");
    if (!a->wait && PrintedJson(o, *r))
      return;
    std::string params_text = ParamsText(r->value("params", Json::object()));
    if (o.output != "json") {
      std::cout << fmt::format("pipeline run {} started: {} version {}{}\n", id, name,
                               Str(*r, "version"),
                               params_text.empty() ? "" : ", params " + params_text);
    }
    if (a->wait)
      rc = WaitForRun(o, id);
  });

  auto* list = cmd->add_subcommand("list", "List pipelines with their latest version");
  AddClientFlags(list, o);
  list->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/pipelines");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : (*r)["pipelines"]) {
      rows.push_back({Str(p, "name"), Str(p, "project"), Str(p, "latest_version"),
                      ShortTime(Str(p, "created_at")), ShortTime(Str(p, "updated_at"))});
    }
    std::cout << Table({"PIPELINE", "PROJECT", "LATEST", "CREATED", "UPDATED"}, rows);
  });

  auto* show = cmd->add_subcommand(
      "show", "Show a pipeline version: params, its steps as a DAG, and its triggers");
  AddClientFlags(show, o);
  show->add_option("pipeline", a->name, "pipeline name")->required();
  show->add_option("--version", a->version, "version (default: the latest)");
  show->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  "/api/v1/pipelines/" + Seg(a->name) +
                      Query({{"version", a->version > 0 ? std::to_string(a->version) : ""}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    const Json& v = *r;
    const Json spec = v.value("spec", Json::object());
    std::cout << Fields({{"pipeline", Str(v, "name")},
                         {"description", Str(spec, "description")},
                         {"project", Str(v, "project")},
                         {"version", Str(v, "version") + " of " + Str(v, "latest_version")},
                         {"digest", Str(v, "digest")},
                         {"experiment", Str(spec, "experiment")},
                         {"workdir", Str(spec, "workdir")},
                         {"created by", Str(v, "created_by")},
                         {"created", ShortTime(Str(v, "created_at"))}});
    std::vector<std::vector<std::string>> rows;
    const Json params = spec.value("params", Json::object());
    for (const auto& [name, p] : params.items()) {
      bool required = !p.is_object() || !p.contains("default") || p["default"].is_null();
      rows.push_back({name, Str(p, "type"), required ? "(required)" : Str(p, "default")});
    }
    if (!rows.empty())
      std::cout << "\n" << Table({"PARAM", "TYPE", "DEFAULT"}, rows);
    std::cout << "\nsteps:\n" << RenderDag(spec);
    std::cout << "\ntriggers:";
    const Json triggers = spec.value("triggers", Json::array());
    if (triggers.empty())
      std::cout << " none (runs start by hand)";
    std::cout << "\n";
    for (const auto& t : triggers)
      std::cout << "  " << TriggerText(t) << "\n";
  });

  auto* runs = cmd->add_subcommand("runs", "List pipeline runs (newest first)");
  AddClientFlags(runs, o);
  runs->add_option("--pipeline", a->pipeline, "only this pipeline's runs");
  runs->add_option("--state", a->state, "only this state")
      ->check(CLI::IsMember({"Pending", "Running", "Succeeded", "Failed", "Cancelled"}));
  runs->add_option("--limit", a->limit, "at most this many (default 50)");
  runs->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  "/api/v1/pipeline-runs" + Query({{"pipeline", a->pipeline},
                                                   {"state", a->state},
                                                   {"limit", std::to_string(a->limit)}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& run : (*r)["runs"]) {
      rows.push_back({Str(run, "id"), Str(run, "pipeline"), Str(run, "version"), Str(run, "state"),
                      TriggerShort(run.value("trigger", Json::object())),
                      ShortTime(Str(run, "created_at")), ShortTime(Str(run, "finished_at")),
                      Str(run, "failure")});
    }
    std::cout << Table(
        {"RUN", "PIPELINE", "VERSION", "STATE", "TRIGGER", "CREATED", "FINISHED", "FAILURE"}, rows);
  });

  auto* status = cmd->add_subcommand(
      "status", "Show a pipeline run: its state, params, trigger and every step's state as a DAG");
  AddClientFlags(status, o);
  status->add_option("run", a->id, "pipeline run id")->required();
  status->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/pipeline-runs/" + Seg(a->id));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    const Json& run = *r;
    std::cout << Fields({{"run", Str(run, "id")},
                         {"pipeline", Str(run, "pipeline") + " version " + Str(run, "version")},
                         {"project", Str(run, "project")},
                         {"state", Str(run, "state")},
                         {"params", ParamsText(run.value("params", Json::object()))},
                         {"trigger", TriggerText(run.value("trigger", Json::object()))},
                         {"no cache", run.value("no_cache", false)
                                          ? "every step"
                                          : Joined(run.value("no_cache_steps", Json::array()))},
                         {"tracking run", Str(run, "tracking_run_id")},
                         {"directory", Str(run, "dir")},
                         {"created by", Str(run, "created_by")},
                         {"created", ShortTime(Str(run, "created_at"))},
                         {"started", ShortTime(Str(run, "started_at"))},
                         {"finished", ShortTime(Str(run, "finished_at"))}});
    std::cout << "\n" << RenderDag(run);
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : run.value("steps", Json::array())) {
      std::string note = Str(s, "failure");
      if (note.empty()) {
        note = ResultSummary(s);
        if (s.value("cached", false))
          note = "cached from " + Str(s, "cached_from") + (note.empty() ? "" : "; " + note);
      }
      rows.push_back({Str(s, "step"), Str(s, "type"), Str(s, "job_id"),
                      ShortTime(Str(s, "started_at")), ShortTime(Str(s, "finished_at")), note});
    }
    if (!rows.empty())
      std::cout << "\n" << Table({"STEP", "TYPE", "JOB", "STARTED", "FINISHED", "NOTE"}, rows);
    if (std::string why = FailureSummary(run); !why.empty())
      std::cout << "\n" << why;
  });

  auto* logs = cmd->add_subcommand("logs", "Print a step's output (its job's; -f: follow)");
  AddClientFlags(logs, o);
  logs->add_option("run", a->id, "pipeline run id")->required();
  logs->add_option("step", a->step, "step name")->required();
  logs->add_flag("-f,--follow", a->follow, "keep printing until the step ends");
  logs->callback([&o, &rc, a] {
    int64_t offset = 0;
    while (true) {
      auto r = Call(o, "GET",
                    "/api/v1/pipeline-runs/" + Seg(a->id) + "/steps/" + Seg(a->step) + "/logs" +
                        Query({{"offset", std::to_string(offset)}}));
      if (!r)
        return void(rc = 1);
      if (a->follow && Str(*r, "state") == "Pending") {
        // Not started: the server's "has no job log" note is not the log,
        // and its offset is not one in the job's log.
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
      std::string data = Str(*r, "data");
      std::cout << data << std::flush;
      offset = r->value("offset", offset);
      if (!a->follow || (r->value("done", false) && data.empty()))
        return;
      if (data.empty())
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });

  auto* cancel = cmd->add_subcommand(
      "cancel", "Cancel a pipeline run and its running steps' jobs (a reason is required)");
  AddClientFlags(cancel, o);
  cancel->add_option("run", a->id, "pipeline run id")->required();
  cancel->add_option("--reason", a->reason, "why (recorded in the audit log)")->required();
  cancel->callback([&o, &rc, a] {
    auto r = Call(o, "POST", "/api/v1/pipeline-runs/" + Seg(a->id) + "/cancel",
                  Json{{"reason", a->reason}});
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format("pipeline run {}: {}\n", Str(*r, "id"), Str(*r, "state"));
  });

  auto* secret = cmd->add_subcommand(
      "webhook-secret",
      "Make a new secret for the pipeline's CI webhook (GitHub or GitLab); the old one stops "
      "working. Shown once");
  AddClientFlags(secret, o);
  secret->add_option("pipeline", a->name, "pipeline name")->required();
  secret->callback([&o, &rc, a] {
    auto r = Call(o, "POST", "/api/v1/pipelines/" + Seg(a->name) + "/webhook-secret");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::string url = o.url;
    while (!url.empty() && url.back() == '/')
      url.pop_back();
    std::cout << Fields({{"pipeline", Str(*r, "pipeline")},
                         {"secret", Str(*r, "secret")},
                         {"url", url + Str(*r, "url")},
                         {"note", Str(*r, "note")}});
  });

  // ---- datasets ----------------------------------------------------------------
  auto* ds = app.add_subcommand(
      "datasets",
      "Datasets: named files or directories with versions (content digest, rows, schema) that "
      "pipelines read and that can trigger them");
  ds->require_subcommand(1);

  auto* reg = ds->add_subcommand(
      "register",
      "Register a file or directory as the dataset's next version (unchanged content: the latest "
      "version stays); a relative path is made absolute");
  AddClientFlags(reg, o);
  reg->add_option("dataset", a->name, "dataset name")->required();
  reg->add_option("uri", a->uri, "the file or directory (a local path the server can read)")
      ->required();
  reg->add_option("--project", a->project, "project (default: the dataset's, or default)");
  reg->callback([&o, &rc, a] {
    std::string uri = a->uri;
    if (uri.find("://") == std::string::npos && !fs::path(uri).is_absolute()) {
      std::error_code ec;
      fs::path abs = fs::absolute(uri, ec);
      if (ec)
        return void(rc = UsageError(fmt::format("{}: {}", uri, ec.message())));
      uri = abs.lexically_normal().string();
    }
    Json body = {{"name", a->name}, {"uri", uri}};
    if (!a->project.empty())
      body["project"] = a->project;
    auto r = Call(o, "POST", "/api/v1/datasets", body);
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    const Json profile = r->value("profile", Json::object());
    std::string rows = profile.contains("rows") ? ", " + Str(profile, "rows") + " rows" : "";
    std::cout << fmt::format("dataset {} version {}: {} ({} bytes{}, digest {})\n", Str(*r, "name"),
                             Str(*r, "version"), Str(*r, "uri"), Str(profile, "bytes"), rows,
                             ShortDigest(Str(profile, "digest")));
  });

  auto* dlist = ds->add_subcommand("list", "List datasets with their latest version");
  AddClientFlags(dlist, o);
  dlist->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/datasets");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : (*r)["datasets"]) {
      rows.push_back({Str(d, "name"), Str(d, "project"), Str(d, "latest_version"),
                      ShortTime(Str(d, "created_at")), ShortTime(Str(d, "updated_at"))});
    }
    std::cout << Table({"DATASET", "PROJECT", "LATEST", "CREATED", "UPDATED"}, rows);
  });

  auto* dshow = ds->add_subcommand(
      "show", "Show a dataset: every version (where from, size, digest) and the latest's schema");
  AddClientFlags(dshow, o);
  dshow->add_option("dataset", a->name, "dataset name")->required();
  dshow->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/datasets/" + Seg(a->name));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    const Json& d = *r;
    std::cout << Fields({{"dataset", Str(d, "name")},
                         {"project", Str(d, "project")},
                         {"latest version", Str(d, "latest_version")},
                         {"created", ShortTime(Str(d, "created_at"))},
                         {"updated", ShortTime(Str(d, "updated_at"))}});
    std::vector<std::vector<std::string>> rows;
    Json latest;
    for (const auto& v : d.value("versions", Json::array())) {
      const Json profile = v.value("profile", Json::object());
      const Json source = v.value("source", Json::object());
      std::string from = Str(source, "kind");
      if (from == "pipeline")
        from = "run " + Str(source, "run_id") + " step " + Str(source, "step");
      else if (!Str(v, "created_by").empty())
        from += " (" + Str(v, "created_by") + ")";
      rows.push_back({Str(v, "version"), Str(profile, "rows"), Str(profile, "bytes"),
                      ShortDigest(Str(profile, "digest")), from, ShortTime(Str(v, "created_at")),
                      Str(v, "uri")});
      if (latest.is_null() || v.value("version", 0) > latest.value("version", 0))
        latest = v;
    }
    if (!rows.empty()) {
      std::cout << "\n"
                << Table({"VERSION", "ROWS", "BYTES", "DIGEST", "SOURCE", "CREATED", "URI"}, rows);
    }
    if (!latest.is_null()) {
      rows.clear();
      for (const auto& c : latest.value("profile", Json::object()).value("schema", Json::array()))
        rows.push_back({Str(c, "name"), Str(c, "type"), Str(c, "missing")});
      if (!rows.empty()) {
        std::cout << fmt::format("\nschema of version {}:\n", Str(latest, "version"))
                  << Table({"COLUMN", "TYPE", "MISSING"}, rows);
      }
    }
  });
}

}  // namespace kervan::app
