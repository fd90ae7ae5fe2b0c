// The Kubernetes executor: one attempt = one batch/v1 Job, applied with
// kubectl. Kervan's scheduler decides admission; the PriorityClass in the
// manifest only orders and (if the cluster preempts) protects pods inside
// Kubernetes. The Job's end is read from `kubectl get jobs -o json` and the
// exit status from its pods.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>

#include <fmt/format.h>

#include "core/sha256.h"
#include "jobs/cluster_tools.h"

namespace kervan::jobs {
namespace internal {
namespace {

constexpr std::string_view kManagedBy = "app.kubernetes.io/managed-by";

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// A label value: at most 63 of [A-Za-z0-9._-], starting and ending with an
// alphanumeric character ("" is allowed).
std::string LabelValue(std::string_view s) {
  std::string out;
  for (char c : s) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    out += ok ? c : '_';
  }
  if (out.size() > 63)
    out.resize(63);
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  while (!out.empty() && !alnum(out.back()))
    out.pop_back();
  size_t first = 0;
  while (first < out.size() && !alnum(out[first]))
    ++first;
  return out.substr(first);
}

// "16Gi" -> 17179869184, "7800m" -> 7.8, "2" -> 2; nullopt when unreadable.
std::optional<double> ParseQuantity(std::string_view q) {
  if (q.empty())
    return std::nullopt;
  static constexpr std::pair<std::string_view, double> kSuffixes[] = {
      {"Ki", 1024.0},
      {"Mi", 1048576.0},
      {"Gi", 1073741824.0},
      {"Ti", 1099511627776.0},
      {"Pi", 1125899906842624.0},
      {"k", 1e3},
      {"M", 1e6},
      {"G", 1e9},
      {"T", 1e12},
      {"P", 1e15},
      {"m", 1e-3},
  };
  double scale = 1.0;
  for (const auto& [suffix, factor] : kSuffixes) {
    if (q.size() > suffix.size() && q.substr(q.size() - suffix.size()) == suffix) {
      scale = factor;
      q.remove_suffix(suffix.size());
      break;
    }
  }
  std::string number(q);
  char* end = nullptr;
  double value = std::strtod(number.c_str(), &end);
  if (end == number.c_str() || *end != '\0' || !std::isfinite(value))
    return std::nullopt;
  return value * scale;
}

std::string JsonStr(const Json& obj, std::initializer_list<const char*> path) {
  const Json* cur = &obj;
  for (const char* key : path) {
    if (!cur->is_object() || !cur->contains(key))
      return {};
    cur = &(*cur)[key];
  }
  if (cur->is_string())
    return cur->get<std::string>();
  if (cur->is_number())
    return cur->dump();
  return {};
}

}  // namespace

std::string KubernetesJobName(std::string_view job_id, int attempt) {
  std::string id;
  for (char c : job_id) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    id += IsLowerAlnum(l) ? l : '-';
  }
  // No runs of '-' (readability), none at the ends.
  id.erase(std::unique(id.begin(), id.end(), [](char a, char b) { return a == '-' && b == '-'; }),
           id.end());
  while (!id.empty() && id.front() == '-')
    id.erase(id.begin());
  while (!id.empty() && id.back() == '-')
    id.pop_back();
  const std::string suffix = fmt::format("-{}", attempt);
  // "kervan-" + id + suffix must fit 63; an id cut short (or changed by
  // the lowercasing) gets a hash of the original so names stay distinct.
  const bool changed = id != job_id;
  const size_t room = 63 - 7 - suffix.size();
  if (id.size() > room || changed) {
    std::string hash = core::Sha256Hex(job_id).substr(0, 8);
    size_t keep = std::min(id.size(), room - hash.size() - 1);
    id = id.substr(0, keep);
    while (!id.empty() && id.back() == '-')
      id.pop_back();
    id = id.empty() ? hash : id + "-" + hash;
  }
  return "kervan-" + id + suffix;
}

std::optional<ExitReport> KubernetesJobEnd(const Json& job, bool terminate_requested) {
  ExitReport report;
  report.external_id = JsonStr(job, {"metadata", "name"});
  const Json* conditions = nullptr;
  if (job.contains("status") && job["status"].is_object() && job["status"].contains("conditions"))
    conditions = &job["status"]["conditions"];
  if (conditions == nullptr || !conditions->is_array())
    return std::nullopt;
  for (const Json& c : *conditions) {
    if (!c.is_object() || JsonStr(c, {"status"}) != "True")
      continue;
    const std::string type = JsonStr(c, {"type"});
    const std::string reason = JsonStr(c, {"reason"});
    if (type == "Complete") {
      report.kind = ExitKind::kSucceeded;
      report.exit_code = 0;
      report.detail = "kubernetes Job Complete";
      return report;
    }
    if (type == "Failed") {
      if (terminate_requested) {
        report.kind = ExitKind::kTerminated;
        report.detail = fmt::format("terminated on request (kubernetes Job Failed: {})", reason);
      } else if (reason == "DeadlineExceeded") {
        report.kind = ExitKind::kFailed;
        report.detail = "deadline";
      } else {
        report.kind = ExitKind::kFailed;
        std::string message = JsonStr(c, {"message"});
        report.detail = fmt::format("kubernetes Job Failed: {}{}{}", reason,
                                    message.empty() ? "" : ": ", message);
      }
      return report;
    }
  }
  return std::nullopt;
}

Result<std::vector<Node>> ParseKubernetesNodes(const Json& list) {
  if (!list.is_object() || !list.contains("items") || !list["items"].is_array())
    return core::InvalidArgument("kubectl get nodes -o json: no \"items\" array");
  std::vector<Node> nodes;
  for (const Json& item : list["items"]) {
    Node node;
    node.name = JsonStr(item, {"metadata", "name"});
    if (node.name.empty())
      continue;
    const Json empty = Json::object();
    const Json& status = item.contains("status") ? item["status"] : empty;
    const Json& alloc =
        status.is_object() && status.contains("allocatable") ? status["allocatable"] : empty;
    auto quantity = [&](const char* key) -> std::optional<double> {
      if (!alloc.is_object() || !alloc.contains(key))
        return std::nullopt;
      const Json& v = alloc[key];
      return v.is_string()   ? ParseQuantity(v.get<std::string>())
             : v.is_number() ? std::optional<double>(v.get<double>())
                             : std::nullopt;
    };
    if (auto g = quantity("nvidia.com/gpu"))
      node.gpus = static_cast<int>(*g);
    if (auto c = quantity("cpu"))
      node.cpus = static_cast<int>(std::floor(*c + 1e-9));
    if (auto m = quantity("memory"))
      node.memory_mb = static_cast<int64_t>(*m / 1048576.0);
    node.gpu_type = JsonStr(item, {"metadata", "labels", "nvidia.com/gpu.product"});
    if (item.contains("spec") && item["spec"].is_object() &&
        item["spec"].value("unschedulable", false))
      node.schedulable = false;
    bool ready = false;
    if (status.is_object() && status.contains("conditions") && status["conditions"].is_array()) {
      for (const Json& c : status["conditions"])
        if (JsonStr(c, {"type"}) == "Ready" && JsonStr(c, {"status"}) == "True")
          ready = true;
    }
    if (!ready)
      node.schedulable = false;
    nodes.push_back(std::move(node));
  }
  return nodes;
}

}  // namespace internal

Json KubernetesJobManifest(const LaunchSpec& spec, const KubernetesOptions& options) {
  using internal::LabelValue;
  const std::string name = internal::KubernetesJobName(spec.job_id, spec.attempt);
  const Resources& r = spec.resources;
  const int nodes = std::max(1, r.nodes);

  Json labels = {
      {std::string(internal::kManagedBy), "kervan"},
      {"kervan.dev/job-id", LabelValue(spec.job_id)},
      {"kervan.dev/attempt", std::to_string(spec.attempt)},
  };
  if (!spec.project.empty())
    labels["kervan.dev/project"] = LabelValue(spec.project);
  if (!spec.user.empty())
    labels["kervan.dev/user"] = LabelValue(spec.user);
  if (!spec.priority_class.empty())
    labels["kervan.dev/priority-class"] = LabelValue(spec.priority_class);
  // Labels are limited to 63 safe characters; the annotations keep the exact ids.
  Json annotations = {{"kervan.dev/job-id", spec.job_id}};
  if (!spec.name.empty())
    annotations["kervan.dev/name"] = spec.name;

  Json container = {{"name", "job"},
                    {"image", spec.image.empty() ? options.default_image : spec.image}};
  if (!spec.command.empty()) {
    container["command"] = Json::array({spec.command.front()});
    if (spec.command.size() > 1)
      container["args"] = std::vector<std::string>(spec.command.begin() + 1, spec.command.end());
  }
  if (!spec.env.empty()) {
    Json env = Json::array();
    for (const auto& [k, v] : spec.env)
      env.push_back({{"name", k}, {"value", v}});
    container["env"] = std::move(env);
  }
  if (!spec.working_dir.empty())
    container["workingDir"] = spec.working_dir;
  // Per pod: a multi-node job is one pod per node.
  Json limits = Json::object(), requests = Json::object();
  if (r.gpus > 0)
    limits["nvidia.com/gpu"] = std::to_string(r.gpus / nodes);
  if (r.cpus > 0) {
    requests["cpu"] = limits["cpu"] = std::to_string((r.cpus + nodes - 1) / nodes);
  }
  if (r.memory_mb > 0) {
    requests["memory"] = limits["memory"] = fmt::format("{}Mi", (r.memory_mb + nodes - 1) / nodes);
  }
  if (!limits.empty()) {
    container["resources"] = {{"limits", limits}};
    if (!requests.empty())
      container["resources"]["requests"] = requests;
  }

  Json pod_spec = {{"restartPolicy", "Never"}, {"containers", Json::array({container})}};
  if (!spec.priority_class.empty()) {
    auto it = options.priority_class_names.find(spec.priority_class);
    pod_spec["priorityClassName"] = it != options.priority_class_names.end() && !it->second.empty()
                                        ? it->second
                                        : spec.priority_class;
  }
  if (!r.gpu_type.empty())
    pod_spec["nodeSelector"] = {{"nvidia.com/gpu.product", r.gpu_type}};

  Json job_spec = {
      {"backoffLimit", spec.backoff_limit},
      {"template", {{"metadata", {{"labels", labels}}}, {"spec", pod_spec}}},
  };
  if (spec.active_deadline_s > 0)
    job_spec["activeDeadlineSeconds"] = spec.active_deadline_s;
  if (spec.ttl_after_finished_s > 0)
    job_spec["ttlSecondsAfterFinished"] = spec.ttl_after_finished_s;
  if (nodes > 1) {
    job_spec["parallelism"] = nodes;
    job_spec["completions"] = nodes;
    job_spec["completionMode"] = "Indexed";
  }

  Json metadata = {{"name", name}, {"labels", labels}, {"annotations", annotations}};
  if (!options.namespace_name.empty())
    metadata["namespace"] = options.namespace_name;
  return {{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"metadata", metadata}, {"spec", job_spec}};
}

namespace {

using internal::ToolRun;

class KubernetesExecutor final : public Executor {
 public:
  explicit KubernetesExecutor(KubernetesOptions options) : options_(std::move(options)) {}

  std::string_view name() const override { return "kubernetes"; }

  Result<std::vector<Node>> DiscoverNodes() override {
    ASSIGN_OR_RETURN(Json list, GetJson({"get", "nodes", "-o", "json"}));
    return internal::ParseKubernetesNodes(list);
  }

  Result<std::string> Launch(const LaunchSpec& spec) override {
    if (spec.image.empty() && options_.default_image.empty())
      return core::InvalidArgument("must be set for the Kubernetes executor", "image");
    if (spec.command.empty())
      return core::InvalidArgument("must not be empty", "command");
    Json manifest = KubernetesJobManifest(spec, options_);
    const std::string name = manifest["metadata"]["name"].get<std::string>();
    ToolRun run = Kubectl({"apply", "-f", "-"});
    run.input = manifest.dump();
    ASSIGN_OR_RETURN(std::string out, internal::RunToolChecked(run));
    (void)out;
    std::lock_guard lock(mu_);
    watched_[name] = Watched{spec.job_id, spec.attempt};
    return name;
  }

  Status Terminate(const std::string& external_id, std::chrono::milliseconds grace) override {
    {
      std::lock_guard lock(mu_);
      if (auto it = watched_.find(external_id); it != watched_.end())
        it->second.terminate_requested = true;
    }
    // The Job first (its pods orphaned, so the controller makes no new
    // ones), then its pods with the grace period: SIGTERM now, SIGKILL
    // after `grace`.
    auto job = internal::RunToolChecked(Kubectl(
        {"delete", "job", external_id, "--cascade=orphan", "--ignore-not-found", "--wait=false"}));
    if (!job)
      return job.error();
    const int64_t grace_s =
        std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(grace).count());
    auto pods = internal::RunToolChecked(
        Kubectl({"delete", "pods", "-l", "job-name=" + external_id,
                 fmt::format("--grace-period={}", grace_s), "--ignore-not-found", "--wait=false"}));
    if (!pods)
      return pods.error();
    return core::Ok();
  }

  std::vector<ExitReport> Poll() override {
    std::lock_guard lock(mu_);
    std::vector<ExitReport> reports;
    if (watched_.empty())
      return reports;
    const std::string selector = fmt::format("{}=kervan", internal::kManagedBy);
    auto jobs = GetJson({"get", "jobs", "-l", selector, "-o", "json"});
    auto pods = GetJson({"get", "pods", "-l", selector, "-o", "json"});
    if (!jobs || !pods) {
      core::LogWarn("kubernetes: cannot list jobs and pods",
                    {{"event.action", "kubernetes.poll_failed"},
                     {"error.message", !jobs ? jobs.error().message : pods.error().message}});
      return reports;
    }
    std::map<std::string, const Json*> by_name;
    if (jobs->contains("items") && (*jobs)["items"].is_array())
      for (const Json& j : (*jobs)["items"])
        by_name[internal::JsonStr(j, {"metadata", "name"})] = &j;
    for (auto it = watched_.begin(); it != watched_.end();) {
      const auto& [name, w] = *it;
      std::optional<ExitReport> report;
      if (auto found = by_name.find(name); found != by_name.end()) {
        report = internal::KubernetesJobEnd(*found->second, w.terminate_requested);
        if (report && report->kind != ExitKind::kSucceeded)
          AddPodExit(*pods, name, *report);
      } else if (!PodsLeft(*pods, name)) {
        ExitReport r;
        r.external_id = name;
        if (w.terminate_requested) {
          r.kind = ExitKind::kTerminated;
          r.detail = "deleted on request";
        } else {
          r.kind = ExitKind::kLost;
          r.detail = fmt::format("kubernetes has no Job {}", name);
        }
        report = r;
      }
      if (report) {
        report->job_id = w.job_id;
        report->attempt = w.attempt;
        reports.push_back(std::move(*report));
        it = watched_.erase(it);
      } else {
        ++it;
      }
    }
    return reports;
  }

  Result<bool> Adopt(const std::string& job_id, int attempt,
                     const std::string& external_id) override {
    ASSIGN_OR_RETURN(auto out,
                     internal::RunTool(Kubectl({"get", "job", external_id, "-o", "json"})));
    if (out.exit_code != 0) {
      if (out.err.find("NotFound") != std::string::npos ||
          out.err.find("not found") != std::string::npos)
        return false;
      return core::Unavailable(fmt::format("kubectl get job {} failed: {}", external_id, out.err));
    }
    Json job = Json::parse(out.out, nullptr, false);
    if (!job.is_object())
      return core::Unavailable(fmt::format("kubectl get job {} printed no JSON", external_id));
    std::string annotated =
        internal::JsonStr(job, {"metadata", "annotations", "kervan.dev/job-id"});
    std::string attempt_label =
        internal::JsonStr(job, {"metadata", "labels", "kervan.dev/attempt"});
    if (annotated != job_id || attempt_label != std::to_string(attempt))
      return false;
    std::lock_guard lock(mu_);
    watched_[external_id] = Watched{job_id, attempt};
    return true;
  }

 private:
  struct Watched {
    std::string job_id;
    int attempt = 0;
    bool terminate_requested = false;
  };

  ToolRun Kubectl(std::vector<std::string> args) const {
    ToolRun run;
    run.argv.push_back(options_.kubectl.empty() ? "kubectl" : options_.kubectl);
    if (!options_.context.empty())
      run.argv.push_back("--context=" + options_.context);
    if (!options_.namespace_name.empty())
      run.argv.push_back("--namespace=" + options_.namespace_name);
    for (auto& a : args)
      run.argv.push_back(std::move(a));
    run.timeout = options_.command_timeout;
    return run;
  }

  Result<Json> GetJson(std::vector<std::string> args) const {
    ASSIGN_OR_RETURN(std::string out, internal::RunToolChecked(Kubectl(std::move(args))));
    Json doc = Json::parse(out, nullptr, false);
    if (doc.is_discarded())
      return core::Unavailable("kubectl printed no JSON");
    return doc;
  }

  static bool OwnedBy(const Json& pod, const std::string& job) {
    return internal::JsonStr(pod, {"metadata", "labels", "job-name"}) == job;
  }

  static bool PodsLeft(const Json& pods, const std::string& job) {
    if (!pods.contains("items") || !pods["items"].is_array())
      return false;
    return std::any_of(pods["items"].begin(), pods["items"].end(),
                       [&](const Json& p) { return OwnedBy(p, job); });
  }

  // The exit status of the job's last terminated container.
  static void AddPodExit(const Json& pods, const std::string& job, ExitReport& report) {
    if (!pods.contains("items") || !pods["items"].is_array())
      return;
    for (const Json& pod : pods["items"]) {
      if (!OwnedBy(pod, job) || !pod.contains("status") || !pod["status"].is_object())
        continue;
      const Json& status = pod["status"];
      if (!status.contains("containerStatuses") || !status["containerStatuses"].is_array())
        continue;
      for (const Json& cs : status["containerStatuses"]) {
        if (!cs.is_object() || !cs.contains("state") || !cs["state"].contains("terminated"))
          continue;
        const Json& t = cs["state"]["terminated"];
        report.exit_code = t.value("exitCode", -1);
        report.signal = t.value("signal", 0);
        if (report.signal != 0)
          report.exit_code = -1;
      }
    }
  }

  const KubernetesOptions options_;
  std::mutex mu_;
  std::map<std::string, Watched> watched_;  // by Job name
};

}  // namespace

Result<std::unique_ptr<Executor>> MakeKubernetesExecutor(KubernetesOptions options) {
  if (options.kubectl.empty())
    return core::InvalidArgument("must name the kubectl program", "kubernetes.kubectl");
  return std::unique_ptr<Executor>(std::make_unique<KubernetesExecutor>(std::move(options)));
}

}  // namespace kervan::jobs
