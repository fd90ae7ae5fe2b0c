// Client commands for experiment tracking and run artifacts:
//   kervan experiments list|get|create|delete|restore
//   kervan runs list|show|compare
//   kervan artifacts ls|get|put
// Reads use the native /api/v1 routes; lifecycle changes and artifacts use
// the MLflow API that MLflow clients use too (so both paths are exercised).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

constexpr std::string_view kMlflow = "/api/2.0/mlflow";
constexpr std::string_view kArtifactProxy = "/api/2.0/mlflow-artifacts/artifacts";

std::string MillisTime(const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer())
    return "";
  int64_t ms = j[key].get<int64_t>();
  return ShortTime(core::FormatRfc3339(ms * 1000));
}

// key -> value of a [{"key","value"}] list.
std::map<std::string, std::string> KeyValues(const Json& list) {
  std::map<std::string, std::string> out;
  if (!list.is_array())
    return out;
  for (const auto& kv : list) {
    const Json& v = kv.value("value", Json());
    out[Str(kv, "key")] = v.is_number() ? Num(v.get<double>()) : Str(kv, "value");
  }
  return out;
}

std::string Duration(const Json& info) {
  if (!info.contains("end_time") || !info.contains("start_time"))
    return "";
  double s = (info["end_time"].get<int64_t>() - info["start_time"].get<int64_t>()) / 1000.0;
  return s < 120 ? fmt::format("{:.1f}s", s) : fmt::format("{:.1f}m", s / 60);
}

// The artifact-proxy path of a run's artifact root, from its artifact_uri
// ("mlflow-artifacts:/1/<run>/artifacts" -> "1/<run>/artifacts").
std::optional<std::string> ProxyRoot(const ClientOptions& o, const std::string& run_id) {
  auto run = Call(o, "GET", "/api/v1/runs/" + Seg(run_id));
  if (!run)
    return std::nullopt;
  std::string uri = Str((*run)["info"], "artifact_uri");
  const std::string scheme = "mlflow-artifacts:";
  if (!uri.starts_with(scheme)) {
    std::cerr << "error: run " << run_id << " stores its artifacts at " << uri
              << ", not through Kervan's artifact proxy\n";
    return std::nullopt;
  }
  std::string root = uri.substr(scheme.size());
  while (!root.empty() && root.front() == '/')
    root.erase(0, 1);
  return root;
}

std::string EncodePath(const std::string& path) {
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    out += (start == 0 ? "" : "/") + Seg(path.substr(start, slash - start));
    if (slash == std::string::npos)
      return out;
    start = slash + 1;
  }
}

void AddExperiments(CLI::App& app, ClientOptions& o, int& rc) {
  auto* cmd = app.add_subcommand("experiments", "Tracking experiments (MLflow experiments)");
  cmd->require_subcommand(1);
  struct Args {
    std::string id, name, project, filter, view, reason;
    std::vector<std::string> tags, order_by;
    int limit = 100;
  };
  auto a = std::make_shared<Args>();

  auto* list = cmd->add_subcommand("list", "List the experiments you can read");
  AddClientFlags(list, o);
  list->add_option("--filter", a->filter, "MLflow filter, e.g. \"name LIKE 'churn%'\"");
  list->add_option("--order-by", a->order_by, "e.g. 'name ASC'; repeatable")
      ->allow_extra_args(false);
  list->add_option("--view", a->view, "ACTIVE_ONLY (default), DELETED_ONLY or ALL");
  list->add_option("--limit", a->limit, "at most this many (1-1000)");
  list->callback([&o, &rc, a] {
    std::vector<std::pair<std::string, std::string>> q = {
        {"filter", a->filter}, {"view", a->view}, {"limit", std::to_string(a->limit)}};
    for (const auto& ob : a->order_by)
      q.emplace_back("order_by", ob);
    auto r = Call(o, "GET", "/api/v1/experiments" + Query(q));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : (*r)["items"]) {
      rows.push_back({Str(e, "experiment_id"), Str(e, "name"), Str(e, "project"),
                      Str(e, "lifecycle_stage"), MillisTime(e, "creation_time"),
                      Str(e, "artifact_location")});
    }
    std::cout << Table({"ID", "NAME", "PROJECT", "STAGE", "CREATED", "ARTIFACTS"}, rows);
  });

  auto* get = cmd->add_subcommand("get", "Show one experiment");
  AddClientFlags(get, o);
  get->add_option("id", a->id, "experiment id")->required();
  get->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/experiments/" + Seg(a->id));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::string tags;
    for (const auto& [k, v] : KeyValues((*r).value("tags", Json::array())))
      tags += (tags.empty() ? "" : ", ") + k + "=" + v;
    std::cout << Fields({{"id", Str(*r, "experiment_id")},
                         {"name", Str(*r, "name")},
                         {"project", Str(*r, "project")},
                         {"stage", Str(*r, "lifecycle_stage")},
                         {"artifacts", Str(*r, "artifact_location")},
                         {"created", MillisTime(*r, "creation_time")},
                         {"updated", MillisTime(*r, "last_update_time")},
                         {"tags", tags}});
  });

  auto* create = cmd->add_subcommand("create", "Create an experiment (needs tracking.write)");
  AddClientFlags(create, o);
  create->add_option("name", a->name, "unique experiment name")->required();
  create->add_option("--project", a->project, "owning project (default: default)");
  create->add_option("--tag", a->tags, "KEY=VALUE; repeatable")->allow_extra_args(false);
  create->callback([&o, &rc, a] {
    auto tags = ParsePairs(a->tags, "--tag");
    if (!tags)
      return void(rc = UsageError(tags.error().message));
    Json body = {{"name", a->name}};
    if (!a->project.empty())
      body["project"] = a->project;
    if (!tags->empty())
      body["tags"] = *tags;
    auto r = Call(o, "POST", "/api/v1/experiments", body);
    if (!r)
      return void(rc = 1);
    if (!PrintedJson(o, *r))
      std::cout << "created experiment " << Str(*r, "experiment_id") << " (" << Str(*r, "name")
                << ") in project " << Str(*r, "project") << "\n";
  });

  for (const char* verb : {"delete", "restore"}) {
    bool deleting = std::string(verb) == "delete";
    auto* c = cmd->add_subcommand(verb, deleting ? "Delete an experiment and its runs (restorable)"
                                                 : "Restore a deleted experiment and its runs");
    AddClientFlags(c, o);
    c->add_option("id", a->id, "experiment id")->required();
    c->callback([&o, &rc, a, verb] {
      auto r = Call(o, "POST", fmt::format("{}/experiments/{}", kMlflow, verb),
                    Json{{"experiment_id", a->id}});
      if (!r)
        return void(rc = 1);
      std::cout << "experiment " << a->id
                << (std::string(verb) == "delete" ? " deleted" : " restored") << "\n";
    });
  }
}

void AddRuns(CLI::App& app, ClientOptions& o, int& rc) {
  auto* cmd = app.add_subcommand("runs", "Tracking runs: list, show and compare");
  cmd->require_subcommand(1);
  struct Args {
    std::vector<std::string> experiments, order_by, runs;
    std::string filter, view, run;
    int limit = 50;
  };
  auto a = std::make_shared<Args>();

  auto* list = cmd->add_subcommand("list", "Search runs of one or more experiments");
  AddClientFlags(list, o);
  list->add_option("-e,--experiment", a->experiments, "experiment id; repeatable")
      ->required()
      ->allow_extra_args(false);
  list->add_option("--filter", a->filter,
                   "MLflow filter, e.g. \"metrics.auc > 0.9 and params.lr = '0.1'\"");
  list->add_option("--order-by", a->order_by, "e.g. 'metrics.auc DESC'; repeatable")
      ->allow_extra_args(false);
  list->add_option("--view", a->view, "ACTIVE_ONLY (default), DELETED_ONLY or ALL");
  list->add_option("--limit", a->limit, "at most this many (default 50)");
  list->callback([&o, &rc, a] {
    std::vector<std::pair<std::string, std::string>> q = {
        {"filter", a->filter}, {"view", a->view}, {"limit", std::to_string(a->limit)}};
    for (const auto& e : a->experiments)
      q.emplace_back("experiment_id", e);
    for (const auto& ob : a->order_by)
      q.emplace_back("order_by", ob);
    auto r = Call(o, "GET", "/api/v1/runs" + Query(q));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& run : (*r)["items"]) {
      const Json& info = run["info"];
      std::string metrics;
      for (const auto& [k, v] : KeyValues(run["data"].value("metrics", Json::array())))
        metrics += (metrics.empty() ? "" : " ") + k + "=" + v;
      rows.push_back({Str(info, "run_id"), Str(info, "run_name"), Str(info, "status"),
                      MillisTime(info, "start_time"), Duration(info), metrics});
    }
    std::cout << Table({"RUN", "NAME", "STATUS", "STARTED", "DURATION", "METRICS"}, rows);
  });

  auto* show = cmd->add_subcommand("show", "Show a run: info, params, latest metrics, tags");
  AddClientFlags(show, o);
  show->add_option("run", a->run, "run id")->required();
  show->callback([&o, &rc, a] {
    auto r = Call(o, "GET", "/api/v1/runs/" + Seg(a->run));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    const Json& info = (*r)["info"];
    std::cout << Fields({{"run", Str(info, "run_id")},
                         {"name", Str(info, "run_name")},
                         {"experiment", Str(info, "experiment_id")},
                         {"project", Str(info, "project")},
                         {"status", Str(info, "status")},
                         {"stage", Str(info, "lifecycle_stage")},
                         {"user", Str(info, "user_id")},
                         {"started", MillisTime(info, "start_time")},
                         {"duration", Duration(info)},
                         {"artifacts", Str(info, "artifact_uri")}});
    const Json& data = (*r)["data"];
    for (const char* section : {"params", "metrics", "tags"}) {
      auto kv = KeyValues(data.value(section, Json::array()));
      if (kv.empty())
        continue;
      std::vector<std::vector<std::string>> rows;
      for (const auto& [k, v] : kv)
        rows.push_back({k, v});
      std::string title = section;
      for (char& c : title)
        c = static_cast<char>(std::toupper(c));
      std::cout << "\n" << Table({title, "VALUE"}, rows);
    }
  });

  auto* compare = cmd->add_subcommand(
      "compare", "Params and latest metrics of several runs side by side (differences marked *)");
  AddClientFlags(compare, o);
  compare->add_option("runs", a->runs, "two or more run ids")->required()->expected(2, 50);
  compare->callback([&o, &rc, a] {
    std::vector<Json> runs;
    for (const auto& id : a->runs) {
      auto r = Call(o, "GET", "/api/v1/runs/" + Seg(id));
      if (!r)
        return void(rc = 1);
      runs.push_back(std::move(*r));
    }
    if (o.output == "json") {
      std::cout << Json(runs).dump(2) << "\n";
      return;
    }
    std::vector<std::string> header = {"KEY"};
    for (const auto& r : runs) {
      std::string name = Str(r["info"], "run_name");
      header.push_back(name.empty() ? Str(r["info"], "run_id").substr(0, 8) : name);
    }
    std::vector<std::vector<std::string>> rows;
    for (const char* section : {"params", "metrics"}) {
      std::vector<std::map<std::string, std::string>> values;
      std::set<std::string> keys;
      for (const auto& r : runs) {
        values.push_back(KeyValues(r["data"].value(section, Json::array())));
        for (const auto& [k, v] : values.back())
          keys.insert(k);
      }
      for (const auto& k : keys) {
        std::vector<std::string> row = {std::string(section) + "." + k};
        std::set<std::string> distinct;
        for (const auto& v : values) {
          auto it = v.find(k);
          row.push_back(it == v.end() ? "-" : it->second);
          distinct.insert(row.back());
        }
        if (distinct.size() > 1)
          row[0] = "* " + row[0];
        rows.push_back(std::move(row));
      }
    }
    std::cout << Table(header, rows);
  });
}

void AddArtifacts(CLI::App& app, ClientOptions& o, int& rc) {
  auto* cmd = app.add_subcommand("artifacts", "A run's artifacts: list, download, upload");
  cmd->require_subcommand(1);
  struct Args {
    std::string run, path, file, out;
  };
  auto a = std::make_shared<Args>();

  auto* ls = cmd->add_subcommand("ls", "List a run's artifacts (under PATH)");
  AddClientFlags(ls, o);
  ls->add_option("run", a->run, "run id")->required();
  ls->add_option("path", a->path, "directory inside the run's artifacts");
  ls->callback([&o, &rc, a] {
    auto r = Call(
        o, "GET",
        std::string(kMlflow) + "/artifacts/list" + Query({{"run_id", a->run}, {"path", a->path}}));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : r->value("files", Json::array())) {
      bool dir = f.value("is_dir", false);
      rows.push_back({Str(f, "path") + (dir ? "/" : ""),
                      dir ? "-" : std::to_string(f.value("file_size", int64_t{0}))});
    }
    std::cout << "root: " << Str(*r, "root_uri") << "\n" << Table({"PATH", "BYTES"}, rows);
  });

  auto* get = cmd->add_subcommand("get", "Download one artifact (to stdout, or -f FILE)");
  AddClientFlags(get, o);
  get->add_option("run", a->run, "run id")->required();
  get->add_option("path", a->path, "artifact path inside the run's artifacts")->required();
  get->add_option("-f,--file", a->out, "write to this file instead of stdout");
  get->callback([&o, &rc, a] {
    auto root = ProxyRoot(o, a->run);
    if (!root)
      return void(rc = 1);
    auto resp =
        CallRaw(o, "GET", std::string(kArtifactProxy) + "/" + EncodePath(*root + "/" + a->path));
    if (!resp)
      return void(rc = 1);
    if (a->out.empty()) {
      std::cout << resp->body;
      return;
    }
    std::ofstream f(a->out, std::ios::binary);
    f << resp->body;
    if (!f) {
      std::cerr << "error: cannot write " << a->out << "\n";
      return void(rc = 1);
    }
    std::cerr << "wrote " << resp->body.size() << " bytes to " << a->out << "\n";
  });

  auto* put = cmd->add_subcommand("put", "Upload a local file as an artifact of a run");
  AddClientFlags(put, o);
  put->add_option("run", a->run, "run id")->required();
  put->add_option("file", a->file, "local file")->required()->check(CLI::ExistingFile);
  put->add_option("path", a->path,
                  "destination inside the run's artifacts (default: the file's name)");
  put->callback([&o, &rc, a] {
    std::ifstream f(a->file, std::ios::binary);
    std::stringstream bytes;
    bytes << f.rdbuf();
    if (!f)
      return void(rc = UsageError("cannot read " + a->file));
    std::string dest =
        a->path.empty() ? std::filesystem::path(a->file).filename().string() : a->path;
    auto root = ProxyRoot(o, a->run);
    if (!root)
      return void(rc = 1);
    auto token = ResolveToken(o);
    if (!token)
      return void(rc = UsageError(token.error().message));
    http::HeaderList headers = {{"Content-Type", "application/octet-stream"}};
    if (!token->empty())
      headers.emplace_back("Authorization", "Bearer " + *token);
    http::Client client(o.url);
    auto resp =
        client.Send("PUT", std::string(kArtifactProxy) + "/" + EncodePath(*root + "/" + dest),
                    bytes.str(), headers, std::chrono::minutes(10));
    if (!resp) {
      std::cerr << "error: " << resp.error().message << "\n";
      return void(rc = 1);
    }
    if (resp->status >= 400) {
      std::cerr << fmt::format("error: HTTP {}: {}\n", resp->status, resp->body);
      return void(rc = 1);
    }
    std::cout << "uploaded " << bytes.str().size() << " bytes to " << dest << "\n";
  });
}

}  // namespace

void AddTrackingCommands(CLI::App& app, ClientOptions& options, int& rc) {
  AddExperiments(app, options, rc);
  AddRuns(app, options, rc);
  AddArtifacts(app, options, rc);
}

}  // namespace kervan::app
