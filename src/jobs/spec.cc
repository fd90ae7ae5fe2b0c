// The job spec: strict parsing with field-named errors, and the JSON forms
// of jobs, attempts and explanations.
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "jobs/internal.h"

namespace kervan::jobs {
namespace {

using core::ObjectReader;

// Upper bounds that catch typos ("gpus: 800") without limiting real jobs.
constexpr int64_t kMaxGpus = 1024;
constexpr int64_t kMaxNodes = 128;
constexpr int64_t kMaxCpus = 16384;
constexpr int64_t kMaxMemoryMb = 64LL * 1024 * 1024;  // 64 TiB
constexpr int64_t kMaxSeconds = 366LL * 24 * 3600;
constexpr int64_t kMaxBackoffLimit = 100;
constexpr size_t kMaxConfigFileBytes = 1 << 20;

bool IsEnvName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  }
  return true;
}

// Strings; numbers and booleans are taken as their text (YAML's `--lr 0.1`
// arrives as a number), anything else is an error.
Result<std::vector<std::string>> StringArray(const Json& value, const std::string& field) {
  std::vector<std::string> out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i].is_number() || value[i].is_boolean()) {
      out.push_back(value[i].dump());
      continue;
    }
    if (!value[i].is_string()) {
      return core::InvalidArgument(fmt::format("field \"{}[{}]\": must be a string, got {}", field,
                                               i, core::JsonTypeName(value[i])),
                                   fmt::format("{}[{}]", field, i));
    }
    out.push_back(value[i].get<std::string>());
  }
  return out;
}

Result<Resources> ResourcesFromJson(const Json& json) {
  ASSIGN_OR_RETURN(auto r, ObjectReader::Of(json, "resources."));
  Resources out;
  ASSIGN_OR_RETURN(auto gpus, r.OptionalInt("gpus", 0, kMaxGpus));
  ASSIGN_OR_RETURN(auto gpu_type, r.OptionalString("gpu_type"));
  ASSIGN_OR_RETURN(auto cpus, r.OptionalInt("cpus", 0, kMaxCpus));
  ASSIGN_OR_RETURN(auto memory, r.OptionalInt("memory_mb", 0, kMaxMemoryMb));
  ASSIGN_OR_RETURN(auto nodes, r.OptionalInt("nodes", 1, kMaxNodes));
  RETURN_IF_ERROR(r.Finish());
  out.gpus = static_cast<int>(gpus.value_or(0));
  out.gpu_type = gpu_type.value_or("");
  out.cpus = static_cast<int>(cpus.value_or(0));
  out.memory_mb = memory.value_or(0);
  out.nodes = static_cast<int>(nodes.value_or(1));
  if (out.nodes > 1 && (out.gpus == 0 || out.gpus % out.nodes != 0)) {
    return core::InvalidArgument(
        fmt::format("field \"resources.nodes\": {} GPUs cannot be split evenly over {} nodes",
                    out.gpus, out.nodes),
        "resources.nodes");
  }
  return out;
}

Json ResourcesToJson(const Resources& r) {
  Json out = {{"gpus", r.gpus}, {"cpus", r.cpus}, {"memory_mb", r.memory_mb}, {"nodes", r.nodes}};
  if (!r.gpu_type.empty())
    out["gpu_type"] = r.gpu_type;
  return out;
}

Json AllocationToJson(const std::vector<NodeAllocation>& allocation) {
  Json out = Json::array();
  for (const auto& a : allocation) {
    out.push_back(
        {{"node", a.node}, {"gpus", a.gpu_indices}, {"cpus", a.cpus}, {"memory_mb", a.memory_mb}});
  }
  return out;
}

}  // namespace

Json AllocationJson(const std::vector<NodeAllocation>& allocation) {
  return AllocationToJson(allocation);
}

std::vector<NodeAllocation> AllocationFromJson(const Json& json) {
  std::vector<NodeAllocation> out;
  if (!json.is_array())
    return out;
  for (const auto& a : json) {
    NodeAllocation n;
    n.node = a.value("node", "");
    if (a.contains("gpus") && a["gpus"].is_array()) {
      for (const auto& g : a["gpus"])
        n.gpu_indices.push_back(g.get<int>());
    }
    n.cpus = a.value("cpus", 0);
    n.memory_mb = a.value("memory_mb", int64_t{0});
    out.push_back(std::move(n));
  }
  return out;
}

namespace {

std::vector<std::string> Split(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos)
      end = text.size();
    out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::optional<int64_t> ParseInt(const std::string& text) {
  if (text.empty())
    return std::nullopt;
  size_t used = 0;
  try {
    int64_t v = std::stoll(text, &used);
    if (used != text.size())
      return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

Result<std::vector<PriorityClass>> ParsePriorityClasses(std::string_view text) {
  std::vector<PriorityClass> out;
  std::set<std::string> names;
  for (const std::string& item : Split(text, ',')) {
    auto parts = Split(item, ':');
    auto eq = parts[0].find('=');
    PriorityClass c;
    c.name = parts[0].substr(0, eq);
    auto value = eq == std::string::npos ? std::nullopt : ParseInt(parts[0].substr(eq + 1));
    if (c.name.empty() || !value) {
      return core::InvalidArgument(
          fmt::format("priority class \"{}\": expected name=value[:never][:preemptible]", item));
    }
    c.value = static_cast<int>(*value);
    for (size_t i = 1; i < parts.size(); ++i) {
      if (parts[i] == "never")
        c.preemption = PreemptionPolicy::kNever;
      else if (parts[i] == "preemptible")
        c.preemptible_default = true;
      else
        return core::InvalidArgument(fmt::format(
            "priority class \"{}\": unknown flag \"{}\" (never, preemptible)", c.name, parts[i]));
    }
    if (!names.insert(c.name).second)
      return core::InvalidArgument(fmt::format("priority class \"{}\" given twice", c.name));
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::vector<ProjectQuota>> ParseQuotas(std::string_view text) {
  std::vector<ProjectQuota> out;
  if (text.empty())
    return out;
  std::set<std::string> names;
  for (const std::string& item : Split(text, ',')) {
    ASSIGN_OR_RETURN(ProjectQuota q, ParseQuotaSpec(item));  // the simulator's grammar
    if (!names.insert(q.project).second)
      return core::InvalidArgument(fmt::format("quota for project \"{}\" given twice", q.project));
    out.push_back(std::move(q));
  }
  return out;
}

namespace {

Json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (const auto& item : node)
        out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node)
        out[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return out;
    }
    case YAML::NodeType::Scalar:
      break;
  }
  const std::string& text = node.Scalar();
  if (node.Tag() != "?")
    return text;  // quoted
  if (text == "true" || text == "True" || text == "TRUE")
    return true;
  if (text == "false" || text == "False" || text == "FALSE")
    return false;
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    return nullptr;
  Json number = Json::parse(text, nullptr, false);
  if (number.is_number())
    return number;
  return text;
}

}  // namespace

Result<Json> ParseSpecDocument(std::string_view text) {
  if (text.empty())
    return core::InvalidArgument("the job spec is empty; expected a JSON or YAML document", "body");
  Json json = Json::parse(text, nullptr, false);
  if (!json.is_discarded())
    return json;
  try {
    return YamlToJson(YAML::Load(std::string(text)));
  } catch (const YAML::Exception& e) {
    return core::InvalidArgument(
        fmt::format("the job spec is neither JSON nor YAML: line {}, column {}: {}",
                    e.mark.line + 1, e.mark.column + 1, e.msg),
        "body");
  }
}

Result<JobSpec> JobSpec::FromJson(const Json& json) {
  ASSIGN_OR_RETURN(auto r, ObjectReader::Of(json));
  JobSpec s;
  ASSIGN_OR_RETURN(auto name, r.OptionalString("name"));
  s.name = name.value_or("");
  if (s.name.size() > 200)
    return core::InvalidArgument("field \"name\": at most 200 characters", "name");
  ASSIGN_OR_RETURN(auto project, r.OptionalString("project"));
  s.project = project.value_or("default");
  ASSIGN_OR_RETURN(auto priority_class, r.OptionalString("priority_class"));
  s.priority_class = priority_class.value_or("dev");

  if (!r.Has("command"))
    return core::InvalidArgument("field \"command\": required (the program and its arguments)",
                                 "command");
  ASSIGN_OR_RETURN(Json command, r.OptionalArray("command"));
  ASSIGN_OR_RETURN(s.command, StringArray(command, "command"));
  ASSIGN_OR_RETURN(Json args, r.OptionalArray("args"));
  ASSIGN_OR_RETURN(auto extra_args, StringArray(args, "args"));
  s.command.insert(s.command.end(), extra_args.begin(), extra_args.end());
  if (s.command.empty() || s.command[0].empty()) {
    return core::InvalidArgument("field \"command\": must name a program (a non-empty array)",
                                 "command");
  }
  for (size_t i = 0; i < s.command.size(); ++i) {
    if (s.command[i].find('\0') != std::string::npos) {
      return core::InvalidArgument(fmt::format("field \"command[{}]\": contains a NUL byte", i),
                                   fmt::format("command[{}]", i));
    }
  }

  ASSIGN_OR_RETURN(auto working_dir, r.OptionalString("working_dir"));
  s.working_dir = working_dir.value_or("");
  if (!s.working_dir.empty() && s.working_dir[0] != '/') {
    return core::InvalidArgument("field \"working_dir\": must be an absolute path", "working_dir");
  }
  ASSIGN_OR_RETURN(Json env, r.OptionalObject("env"));
  for (const auto& [k, v] : env.items()) {
    if (!IsEnvName(k)) {
      return core::InvalidArgument(
          fmt::format("field \"env\": \"{}\" is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                      k),
          "env." + k);
    }
    if (v.is_number() || v.is_boolean()) {
      s.env[k] = v.dump();
      continue;
    }
    if (!v.is_string()) {
      return core::InvalidArgument(
          fmt::format("field \"env.{}\": must be a string, got {}", k, core::JsonTypeName(v)),
          "env." + k);
    }
    s.env[k] = v.get<std::string>();
  }
  ASSIGN_OR_RETURN(Json config_file, r.OptionalObject("config_file"));
  if (!config_file.empty()) {
    ASSIGN_OR_RETURN(auto c, ObjectReader::Of(config_file, "config_file."));
    ASSIGN_OR_RETURN(s.config_file_name, c.RequiredString("name"));
    ASSIGN_OR_RETURN(s.config_file_content, c.RequiredString("content"));
    RETURN_IF_ERROR(c.Finish());
    if (s.config_file_name.empty() || s.config_file_name.find('/') != std::string::npos ||
        s.config_file_name == "." || s.config_file_name == "..") {
      return core::InvalidArgument("field \"config_file.name\": must be a plain file name (no '/')",
                                   "config_file.name");
    }
    if (s.config_file_content.size() > kMaxConfigFileBytes) {
      return core::InvalidArgument("field \"config_file.content\": at most 1 MiB",
                                   "config_file.content");
    }
  }
  ASSIGN_OR_RETURN(auto image, r.OptionalString("image"));
  s.image = image.value_or("");
  ASSIGN_OR_RETURN(Json resources, r.OptionalObject("resources"));
  ASSIGN_OR_RETURN(s.resources, ResourcesFromJson(resources));
  ASSIGN_OR_RETURN(s.preemptible, r.OptionalBool("preemptible"));
  ASSIGN_OR_RETURN(auto backoff, r.OptionalInt("backoff_limit", 0, kMaxBackoffLimit));
  s.backoff_limit = static_cast<int>(backoff.value_or(0));
  ASSIGN_OR_RETURN(auto deadline, r.OptionalInt("active_deadline_s", 1, kMaxSeconds));
  s.active_deadline_s = deadline.value_or(0);
  ASSIGN_OR_RETURN(auto ttl, r.OptionalInt("ttl_after_finished_s", 0, kMaxSeconds));
  s.ttl_after_finished_s = ttl.value_or(0);
  ASSIGN_OR_RETURN(auto expected, r.OptionalInt("expected_runtime_s", 1, kMaxSeconds));
  s.expected_runtime_s = expected.value_or(0);
  ASSIGN_OR_RETURN(Json tracking, r.OptionalObject("tracking"));
  if (!tracking.empty()) {
    ASSIGN_OR_RETURN(auto t, ObjectReader::Of(tracking, "tracking."));
    ASSIGN_OR_RETURN(auto run_id, t.OptionalString("run_id"));
    ASSIGN_OR_RETURN(auto experiment_id, t.OptionalString("experiment_id"));
    RETURN_IF_ERROR(t.Finish());
    s.tracking_run_id = run_id.value_or("");
    s.tracking_experiment_id = experiment_id.value_or("");
    if (s.tracking_run_id.empty() == s.tracking_experiment_id.empty()) {
      return core::InvalidArgument(
          "field \"tracking\": give exactly one of \"run_id\" (attach to a run) or "
          "\"experiment_id\" (create a run for the job)",
          "tracking");
    }
  }
  RETURN_IF_ERROR(r.Finish());
  return s;
}

Json JobSpec::ToJson() const {
  Json out = {{"name", name},
              {"project", project},
              {"priority_class", priority_class},
              {"command", command},
              {"env", env},
              {"resources", ResourcesToJson(resources)},
              {"backoff_limit", backoff_limit}};
  if (!working_dir.empty())
    out["working_dir"] = working_dir;
  if (!config_file_name.empty())
    out["config_file"] = {{"name", config_file_name}, {"content", config_file_content}};
  if (!image.empty())
    out["image"] = image;
  if (preemptible)
    out["preemptible"] = *preemptible;
  if (active_deadline_s > 0)
    out["active_deadline_s"] = active_deadline_s;
  if (ttl_after_finished_s > 0)
    out["ttl_after_finished_s"] = ttl_after_finished_s;
  if (expected_runtime_s > 0)
    out["expected_runtime_s"] = expected_runtime_s;
  if (!tracking_run_id.empty())
    out["tracking"] = {{"run_id", tracking_run_id}};
  else if (!tracking_experiment_id.empty())
    out["tracking"] = {{"experiment_id", tracking_experiment_id}};
  return out;
}

// Shared by the service and every executor.
std::string GpuList(const std::vector<NodeAllocation>& allocation) {
  std::string out;
  for (const auto& a : allocation) {
    for (int g : a.gpu_indices) {
      if (!out.empty())
        out += ',';
      out += std::to_string(g);
    }
  }
  return out;
}

std::string_view ExitKindName(ExitKind kind) {
  switch (kind) {
    case ExitKind::kSucceeded:
      return "succeeded";
    case ExitKind::kFailed:
      return "failed";
    case ExitKind::kTerminated:
      return "terminated";
    case ExitKind::kLost:
      return "lost";
  }
  return "unknown";
}

Json ExitReport::ToJson() const {
  return {{"job_id", job_id},
          {"attempt", attempt},
          {"external_id", external_id},
          {"kind", ExitKindName(kind)},
          {"exit_code", exit_code},
          {"signal", signal},
          {"detail", detail}};
}

Json Attempt::ToJson() const {
  Json out = {{"attempt", number},          {"executor", executor},
              {"external_id", external_id}, {"allocation", AllocationToJson(allocation)},
              {"borrowed", borrowed},       {"admitted_time", core::FormatRfc3339(admitted_us)}};
  if (started_us > 0)
    out["start_time"] = core::FormatRfc3339(started_us);
  if (ended_us > 0) {
    out["end_time"] = core::FormatRfc3339(ended_us);
    out["exit"] = {
        {"kind", exit_kind}, {"code", exit_code}, {"signal", signal}, {"detail", detail}};
  }
  return out;
}

Json Job::ToJson() const {
  Json out = {{"id", id},
              {"name", spec.name.empty() ? id : spec.name},
              {"project", spec.project},
              {"user", user},
              {"priority_class", spec.priority_class},
              {"state", state},
              {"attempts", attempts},
              {"preemptions", preemptions},
              {"spec", spec.ToJson()},
              {"created_time", core::FormatRfc3339(created_us)},
              {"updated_time", core::FormatRfc3339(updated_us)}};
  if (queued_us > 0)
    out["queued_time"] = core::FormatRfc3339(queued_us);
  if (not_before_us > 0 && state == kFailed)
    out["retry_after"] = core::FormatRfc3339(not_before_us);
  if (first_started_us > 0)
    out["first_start_time"] = core::FormatRfc3339(first_started_us);
  if (finished_us > 0)
    out["finished_time"] = core::FormatRfc3339(finished_us);
  if (!tracking_run_id.empty())
    out["tracking_run_id"] = tracking_run_id;
  if (!failure.empty())
    out["failure"] = failure;
  if (scratch_removed)
    out["scratch_removed"] = true;
  if (!attempt_list.empty()) {
    Json list = Json::array();
    for (const auto& a : attempt_list)
      list.push_back(a.ToJson());
    out["attempt_list"] = std::move(list);
  }
  return out;
}

Json Explanation::ToJson() const {
  Json out = {{"state", state}, {"summary", summary}};
  if (reason) {
    out["reason"] = {{"code", WaitCodeName(reason->code)},
                     {"position", reason->position},
                     {"fair_share_usage", reason->fair_share_usage}};
    if (!reason->other_job.empty())
      out["reason"]["job"] = reason->other_job;
    if (reason->code == WaitCode::kQuota) {
      out["reason"]["project_used_gpus"] = reason->project_used_gpus;
      out["reason"]["project_limit_gpus"] = reason->project_limit_gpus;
    }
    if (reason->code == WaitCode::kNoFit)
      out["reason"]["max_free_gpus"] = reason->max_free_gpus;
    if (reason->code == WaitCode::kReservation && reason->reservation_us > 0)
      out["reason"]["reservation_time"] = core::FormatRfc3339(reason->reservation_us);
  }
  return out;
}

}  // namespace kervan::jobs
