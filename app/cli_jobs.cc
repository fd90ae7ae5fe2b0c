// Client commands for training jobs:
//   kervan jobs submit|list|show|cancel|explain|logs|nodes|policy
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "app/cli_commands.h"
#include "jobs/jobs.h"

namespace kervan::app {
namespace {

// A job spec file: JSON or YAML (jobs::ParseSpecDocument).
core::Result<Json> ReadSpecFile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return core::InvalidArgument(fmt::format("cannot read {}", path), "file");
  std::stringstream text;
  text << in.rdbuf();
  auto json = jobs::ParseSpecDocument(text.str());
  if (!json)
    return core::InvalidArgument(fmt::format("{}: {}", path, json.error().message), "file");
  return json;
}

std::string Allocation(const Json& attempt) {
  std::string out;
  for (const auto& a : attempt.value("allocation", Json::array())) {
    std::string gpus;
    for (const auto& g : a.value("gpus", Json::array()))
      gpus += (gpus.empty() ? "" : ",") + g.dump();
    out += (out.empty() ? "" : " ") + Str(a, "node") + (gpus.empty() ? "" : "[" + gpus + "]");
  }
  return out;
}

}  // namespace

void AddJobCommands(CLI::App& app, ClientOptions& o, int& rc) {
  auto* cmd = app.add_subcommand(
      "jobs", "Training jobs on the GPU scheduler: submit, list, show, cancel, explain, logs");
  cmd->require_subcommand(1);
  struct Args {
    std::string file, name, project, priority_class, gpu_type, state, reason, id, run_id,
        experiment_id;
    int gpus = -1, nodes = 0, backoff_limit = -1, attempt = 0, limit = 50;
    int64_t deadline = 0, ttl = 0, expected = 0;
    std::vector<std::string> env, command;
    bool follow = false, preemptible = false, not_preemptible = false;
  };
  auto a = std::make_shared<Args>();

  auto* submit = cmd->add_subcommand(
      "submit",
      "Submit a job from a spec file (YAML or JSON, docs/jobs.md) and/or flags; a command after "
      "-- replaces the file's");
  AddClientFlags(submit, o);
  submit->add_option("-f,--file", a->file, "job spec file (YAML or JSON)");
  submit->add_option("--name", a->name, "job name");
  submit->add_option("--project", a->project, "project (team) the job runs for");
  submit->add_option("--priority-class", a->priority_class, "prod, dev, batch (configurable)");
  submit->add_option("--gpus", a->gpus, "GPUs");
  submit->add_option("--gpu-type", a->gpu_type, "GPU model the job needs (default: any)");
  submit->add_option("--nodes", a->nodes, "spread the GPUs evenly over this many nodes");
  submit->add_option("--env", a->env, "KEY=VALUE for the job's environment; repeatable")
      ->allow_extra_args(false);
  submit->add_option("--backoff-limit", a->backoff_limit, "retries after a failure");
  submit->add_option("--deadline", a->deadline, "activeDeadlineSeconds: stop after this long");
  submit->add_option("--ttl", a->ttl, "remove the scratch directory this long after it ends (s)");
  submit->add_option("--expected-runtime", a->expected, "runtime estimate (s) for backfill");
  submit->add_flag("--preemptible", a->preemptible, "may be preempted");
  submit->add_flag("--not-preemptible", a->not_preemptible, "may not be preempted");
  submit->add_option("--run-id", a->run_id, "MLflow run the job logs to");
  submit->add_option("--experiment-id", a->experiment_id, "create an MLflow run for the job here");
  submit->add_option("command", a->command, "the program and its arguments (after --)");
  submit->callback([&o, &rc, a] {
    Json spec = Json::object();
    if (!a->file.empty()) {
      auto loaded = ReadSpecFile(a->file);
      if (!loaded)
        return void(rc = UsageError(loaded.error().message));
      if (!loaded->is_object())
        return void(rc = UsageError(a->file + ": the spec must be a mapping"));
      spec = std::move(*loaded);
    }
    if (!a->command.empty())
      spec["command"] = a->command;
    if (!a->name.empty())
      spec["name"] = a->name;
    if (!a->project.empty())
      spec["project"] = a->project;
    if (!a->priority_class.empty())
      spec["priority_class"] = a->priority_class;
    if (a->gpus >= 0)
      spec["resources"]["gpus"] = a->gpus;
    if (!a->gpu_type.empty())
      spec["resources"]["gpu_type"] = a->gpu_type;
    if (a->nodes > 0)
      spec["resources"]["nodes"] = a->nodes;
    auto env = ParsePairs(a->env, "--env");
    if (!env)
      return void(rc = UsageError(env.error().message));
    for (const auto& [k, v] : *env)
      spec["env"][k] = v;
    if (a->backoff_limit >= 0)
      spec["backoff_limit"] = a->backoff_limit;
    if (a->deadline > 0)
      spec["active_deadline_s"] = a->deadline;
    if (a->ttl > 0)
      spec["ttl_after_finished_s"] = a->ttl;
    if (a->expected > 0)
      spec["expected_runtime_s"] = a->expected;
    if (a->preemptible && a->not_preemptible)
      return void(rc = UsageError("--preemptible and --not-preemptible exclude each other"));
    if (a->preemptible || a->not_preemptible)
      spec["preemptible"] = a->preemptible;
    if (!a->run_id.empty())
      spec["tracking"] = {{"run_id", a->run_id}};
    if (!a->experiment_id.empty())
      spec["tracking"] = {{"experiment_id", a->experiment_id}};
    if (!spec.contains("command"))
      return void(rc = UsageError("no command: give -f FILE with a command, or one after --"));
    auto r = Call(o, "POST", "/api/v1/jobs", spec);
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format("job {} submitted ({}, {} GPUs, project {}): {}\n", Str(*r, "id"),
                             Str(*r, "priority_class"), (*r)["spec"]["resources"].value("gpus", 0),
                             Str(*r, "project"), Str(*r, "state"));
  });

  auto* list = cmd->add_subcommand("list", "List jobs (newest ids last)");
  AddClientFlags(list, o);
  list->add_option("--project", a->project, "only this project");
  list->add_option("--state", a->state, "only this state (Queued, Running, Failed, ...)");
  list->add_option("--limit", a->limit, "at most this many (default 50)");
  list->callback([&o, &rc, a] {
    auto r = Call(o, "GET",
                  "/api/v1/jobs" + Query({{"project", a->project},
                                          {"state", a->state},
                                          {"limit", std::to_string(a->limit)}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& j : (*r)["jobs"]) {
      rows.push_back({Str(j, "id"), Str(j, "name"), Str(j, "project"), Str(j, "priority_class"),
                      std::to_string(j["spec"]["resources"].value("gpus", 0)), Str(j, "state"),
                      std::to_string(j.value("attempts", 0)), ShortTime(Str(j, "created_time"))});
    }
    std::cout << Table({"JOB", "NAME", "PROJECT", "CLASS", "GPUS", "STATE", "ATTEMPTS", "CREATED"},
                       rows);
  });

  auto* show = cmd->add_subcommand("show", "Show a job: spec, state, attempts and their exits");
  AddClientFlags(show, o);
  show->add_option("job", a->id, "job id")->required();
  show->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/jobs/" + Seg(a->id));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    const Json& j = *r;
    std::string command;
    for (const auto& c : j["spec"].value("command", Json::array()))
      command += (command.empty() ? "" : " ") + c.get<std::string>();
    std::cout << Fields({{"job", Str(j, "id")},
                         {"name", Str(j, "name")},
                         {"project", Str(j, "project")},
                         {"user", Str(j, "user")},
                         {"priority class", Str(j, "priority_class")},
                         {"state", Str(j, "state")},
                         {"command", command},
                         {"resources", j["spec"]["resources"].dump()},
                         {"attempts", std::to_string(j.value("attempts", 0))},
                         {"preemptions", std::to_string(j.value("preemptions", 0))},
                         {"failure", Str(j, "failure")},
                         {"retry after", ShortTime(Str(j, "retry_after"))},
                         {"tracking run", Str(j, "tracking_run_id")},
                         {"created", ShortTime(Str(j, "created_time"))},
                         {"finished", ShortTime(Str(j, "finished_time"))}});
    std::vector<std::vector<std::string>> rows;
    for (const auto& at : j.value("attempt_list", Json::array())) {
      const Json exit = at.value("exit", Json::object());
      rows.push_back({std::to_string(at.value("attempt", 0)), Str(at, "executor"),
                      Str(at, "external_id"), Allocation(at), ShortTime(Str(at, "start_time")),
                      ShortTime(Str(at, "end_time")), Str(exit, "kind"), Str(exit, "detail")});
    }
    if (!rows.empty()) {
      std::cout << "\n"
                << Table(
                       {"ATTEMPT", "EXECUTOR", "ID", "GPUS", "STARTED", "ENDED", "EXIT", "DETAIL"},
                       rows);
    }
  });

  auto* cancel = cmd->add_subcommand("cancel", "Cancel a job (a reason is required)");
  AddClientFlags(cancel, o);
  cancel->add_option("job", a->id, "job id")->required();
  cancel->add_option("--reason", a->reason, "why (recorded in the audit log)")->required();
  cancel->callback([&o, &rc, a] {
    auto r = Call(o, "POST", "/api/v1/jobs/" + Seg(a->id) + "/cancel", Json{{"reason", a->reason}});
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format("job {}: {}\n", Str(*r, "id"), Str(*r, "state"));
  });

  auto* explain = cmd->add_subcommand(
      "explain",
      "Why a job waits (quota, fair share position, no node with N free GPUs, behind "
      "which job) or what it is doing");
  AddClientFlags(explain, o);
  explain->add_option("job", a->id, "job id")->required();
  explain->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/jobs/" + Seg(a->id) + "/explain");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << fmt::format("{} ({}): {}\n", a->id, Str(*r, "state"), Str(*r, "summary"));
  });

  auto* logs = cmd->add_subcommand("logs", "Print a job attempt's output (-f: follow)");
  AddClientFlags(logs, o);
  logs->add_option("job", a->id, "job id")->required();
  logs->add_option("--attempt", a->attempt, "attempt number (default: the latest)");
  logs->add_flag("-f,--follow", a->follow, "keep printing until the attempt ends");
  logs->callback([&o, &rc, a] {
    int64_t offset = 0;
    int attempt = a->attempt;
    while (true) {
      auto r = Call(o, "GET",
                    "/api/v1/jobs/" + Seg(a->id) + "/logs" +
                        Query({{"attempt", attempt ? std::to_string(attempt) : ""},
                               {"offset", std::to_string(offset)}}));
      if (!r)
        return void(rc = 1);
      std::string data = Str(*r, "data");
      std::cout << data << std::flush;
      offset = r->value("offset", offset);
      if (attempt == 0 && r->value("attempt", 0) > 0)
        attempt = r->value("attempt", 0);  // follow the attempt we started on
      if (!a->follow || (r->value("done", false) && data.empty()))
        return;
      if (data.empty())
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });

  auto* nodes = cmd->add_subcommand("nodes", "The nodes the scheduler places jobs on");
  AddClientFlags(nodes, o);
  nodes->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/nodes");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& n : (*r)["nodes"]) {
      rows.push_back({Str(n, "name"), Str(n, "gpus"), Str(n, "gpu_type"), Str(n, "cpus"),
                      Str(n, "memory_mb"), n.value("schedulable", false) ? "yes" : "no"});
    }
    std::cout << Table({"NODE", "GPUS", "GPU TYPE", "CPUS", "MEMORY MB", "SCHEDULABLE"}, rows);
  });

  auto* policy = cmd->add_subcommand("policy", "The scheduler's policy, priority classes, quotas");
  AddClientFlags(policy, o);
  policy->callback([&o, &rc] {
    auto r = Call(o, "GET", "/api/v1/scheduler");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::cout << Fields({{"policy", Str(*r, "policy")},
                         {"preemption", Str(*r, "preemption")},
                         {"backfill", Str(*r, "backfill")}});
    std::vector<std::vector<std::string>> rows;
    for (const auto& c : (*r)["priority_classes"]) {
      rows.push_back(
          {Str(c, "name"), Str(c, "value"), Str(c, "preemption"), Str(c, "preemptible_default")});
    }
    std::cout << "\n" << Table({"CLASS", "VALUE", "PREEMPTION", "PREEMPTIBLE"}, rows);
    rows.clear();
    for (const auto& q : (*r)["quotas"]) {
      int limit = q.value("borrowing_limit", -1);
      rows.push_back({Str(q, "project"), Str(q, "nominal_gpus"),
                      limit < 0 ? "no limit" : std::to_string(limit), Str(q, "weight")});
    }
    if (!rows.empty())
      std::cout << "\n" << Table({"PROJECT", "NOMINAL GPUS", "BORROWING LIMIT", "WEIGHT"}, rows);
  });
}

}  // namespace kervan::app
