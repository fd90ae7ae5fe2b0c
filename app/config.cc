#include "app/config.h"

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "jobs/jobs.h"
#include "store/store.h"

namespace kervan::app {
namespace {

struct KeySpec {
  const char* key;
  const char* default_value;
  const char* help;
};

// The one list of settings. Order is the order `config show` prints.
constexpr KeySpec kKeys[] = {
    {"data_dir", "./var/kervan", "directory for the SQLite database and local files"},
    {"log.level", "info", "debug | info | warn | error"},
    {"log.events", "true", "also log every committed event (ECS) for shipping to ELK"},
    {"server.address", "127.0.0.1", "address to listen on"},
    {"server.port", "8080", "port to listen on (0 = any free port)"},
    {"server.io_threads", "2", "threads running network I/O"},
    {"server.worker_threads", "8", "threads running blocking request work"},
    {"server.max_body_bytes", "1048576", "largest request body accepted (413 above)"},
    {"server.read_timeout_s", "30", "seconds to receive a whole request"},
    {"server.shutdown_grace_s", "10", "seconds in-flight requests get on SIGTERM"},
    {"server.access_log", "true", "one JSON log line per request"},
    {"store.backend", "sqlite", "sqlite (embedded) | postgres"},
    {"store.sqlite.path", "kervan.db", "SQLite file; relative to data_dir"},
    {"store.sqlite.mmap_bytes", "1073741824",
     "bytes of the SQLite file read through a memory map (PRAGMA mmap_size); 0: off"},
    {"store.postgres.dsn", "", "libpq connection string (secret: masked in output)"},
    {"store.pool_size", "8", "database connections per server"},
    {"auth.default_expiry_days", "90", "lifetime of an API token created without one (days)"},
    {"auth.refresh_s", "5",
     "seconds between re-reads of identities and tokens (changes made by other servers)"},
    {"auth.protect_metrics", "false", "require a token with metrics.read for GET /metrics"},
    {"artifacts.backend", "local", "local (files under artifacts.root) | s3"},
    {"artifacts.root", "artifacts", "local artifact directory; relative to data_dir"},
    {"artifacts.s3.endpoint", "", "S3-compatible endpoint, e.g. http://127.0.0.1:9000"},
    {"artifacts.s3.region", "us-east-1", "region used in request signatures"},
    {"artifacts.s3.bucket", "", "bucket holding the artifacts"},
    {"artifacts.s3.prefix", "", "key prefix inside the bucket"},
    {"artifacts.s3.access_key", "",
     "access key id (default: AWS_ACCESS_KEY_ID from the environment)"},
    {"artifacts.s3.secret_key", "",
     "secret access key (default: AWS_SECRET_ACCESS_KEY; secret: masked in output)"},
    {"artifacts.max_upload_bytes", "268435456", "largest artifact upload accepted (413 above)"},
    {"webhooks.max_attempts", "8", "delivery attempts before a webhook delivery fails"},
    {"webhooks.backoff_base_ms", "1000", "delay before the first retry; doubles per attempt"},
    {"webhooks.backoff_max_s", "600", "longest delay between two attempts"},
    {"webhooks.timeout_s", "10", "seconds a receiver has to answer one delivery"},
    {"jobs.executor", "local",
     "where jobs run: local (processes on this host) | slurm | kubernetes"},
    {"jobs.virtual_gpus", "0",
     "local executor: GPUs to pretend the host has when nvidia-smi finds none"},
    {"jobs.scratch_dir", "jobs", "jobs' scratch directories and logs; relative to data_dir"},
    {"jobs.policy", "kervan", "scheduling policy: kervan | fifo | strict (docs/scheduling.md)"},
    {"jobs.preemption", "true", "let higher priority classes and quota owners preempt"},
    {"jobs.backfill", "true", "start small jobs that do not delay the head job's reservation"},
    {"jobs.priority_classes", "prod=1000,dev=100:preemptible,batch=10:never:preemptible",
     "name=value[:never][:preemptible], comma-separated"},
    {"jobs.quotas", "", "project=nominal_gpus[:borrowing_limit[:weight]], comma-separated"},
    {"jobs.cycle_ms", "1000", "milliseconds between scheduling cycles"},
    {"pipelines.root", "pipelines",
     "pipeline runs' directories (step outputs); relative to data_dir"},
    {"pipelines.cycle_ms", "500", "milliseconds between passes of the pipeline orchestrator"},
    {"serving.cycle_ms", "1000", "milliseconds between passes of the rollout controller"},
    {"serving.sample_percent", "10",
     "share of inference requests stored as samples (new endpoints; 0-100)"},
    {"serving.max_rows", "1000", "rows one inference request may carry"},
    {"serving.upstream_timeout_ms", "2000", "time an HTTP upstream model has to answer"},
    {"serving.mirror_threads", "1", "threads that run shadow (mirrored) predictions"},
    {"monitoring.cycle_ms", "2000", "milliseconds between passes of the monitors"},
    {"monitoring.auto", "true", "watch every endpoint that has a production version"},
    {"monitoring.window_rows", "500", "rows in a monitor's window (default for new monitors)"},
    {"monitoring.min_rows", "50", "rows a time-closed window needs (default for new monitors)"},
    {"monitoring.window_s", "0",
     "seconds after which a window closes with what it has (0: by rows only)"},
    {"rules.cycle_ms", "1000",
     "milliseconds between passes of periodic rules and retries of failed actions"},
    {"rules.max_attempts", "5", "attempts of a rule's action before it is marked failed"},
    {"rules.retry_base_ms", "1000", "delay before an action's first retry (doubles per attempt)"},
    {"alerts.alertmanager_url", "",
     "Alertmanager base URL (http://host:9093) alerts are sent to; empty: events only"},
    {"alerts.resend_s", "60", "seconds between re-sends of a firing alert to Alertmanager"},
    {"jobs.backoff_base_ms", "10000", "delay before a failed job's first retry; doubles per retry"},
    {"jobs.backoff_max_s", "360", "longest delay before a retry"},
    {"jobs.termination_grace_ms", "10000", "SIGTERM to SIGKILL on cancel and preemption"},
    {"jobs.fair_share_half_life_h", "168", "half-life of past GPU usage in fair share (hours)"},
    {"jobs.tracking_uri", "",
     "MLFLOW_TRACKING_URI given to jobs (default: http://<server.address>:<port>)"},
    {"jobs.slurm.bin_dir", "", "directory of sbatch/squeue/scontrol/scancel (default: PATH)"},
    {"jobs.slurm.partitions", "", "priority class -> partition, e.g. prod=prod,dev=dev"},
    {"jobs.slurm.qos", "", "priority class -> QOS, e.g. prod=high"},
    {"jobs.slurm.jobcomp", "", "JobCompLoc of Slurm's jobcomp/filetxt log (optional)"},
    {"jobs.slurm.conf", "", "SLURM_CONF for Slurm's commands (default: Slurm's own)"},
    {"jobs.kubernetes.kubectl", "kubectl", "the kubectl program"},
    {"jobs.kubernetes.namespace", "default", "namespace the Jobs are created in"},
    {"jobs.kubernetes.context", "", "kubeconfig context (default: the current one)"},
    {"jobs.kubernetes.image", "", "container image for jobs whose spec names none"},
    {"jobs.kubernetes.priority_classes", "",
     "Kervan priority class -> Kubernetes PriorityClass, e.g. prod=ml-prod (default: same name)"},
};

bool IsSecretKey(const std::string& key) {
  return key.find("dsn") != std::string::npos || key.find("password") != std::string::npos ||
         key.find("secret") != std::string::npos || key.find("token") != std::string::npos;
}

std::string EnvName(const std::string& key) {
  std::string out = "KERVAN_";
  for (char c : key)
    out += c == '.' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

core::Status Flatten(const YAML::Node& node, const std::string& prefix,
                     std::map<std::string, std::string>& out, const std::string& file) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      std::string key = kv.first.as<std::string>();
      RETURN_IF_ERROR(Flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out, file));
    }
    return core::Ok();
  }
  if (node.IsScalar()) {
    out[prefix] = node.as<std::string>();
    return core::Ok();
  }
  if (node.IsNull()) {
    out[prefix] = "";
    return core::Ok();
  }
  return core::InvalidArgument(fmt::format("{}: key \"{}\": must be a scalar", file, prefix),
                               prefix);
}

core::Result<int64_t> IntValue(const Config& c, const std::string& key, int64_t min, int64_t max) {
  const auto& [value, source] = c.effective.at(key);
  char* end = nullptr;
  errno = 0;
  long long n = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || n < min || n > max) {
    return core::InvalidArgument(fmt::format("config key \"{}\" (from {}): must be an integer "
                                             "between {} and {}, got \"{}\"",
                                             key, source, min, max, value),
                                 key);
  }
  return static_cast<int64_t>(n);
}

core::Result<bool> BoolValue(const Config& c, const std::string& key) {
  const auto& [value, source] = c.effective.at(key);
  if (value == "true" || value == "1" || value == "yes")
    return true;
  if (value == "false" || value == "0" || value == "no")
    return false;
  return core::InvalidArgument(
      fmt::format("config key \"{}\" (from {}): must be true or false, got \"{}\"", key, source,
                  value),
      key);
}

}  // namespace

std::vector<std::string> ConfigKeys() {
  std::vector<std::string> out;
  for (const auto& k : kKeys)
    out.push_back(fmt::format("{} (env {}): {}", k.key, EnvName(k.key), k.help));
  return out;
}

core::Result<Config> LoadConfig(const ConfigSources& sources) {
  Config c;
  for (const auto& k : kKeys)
    c.effective[k.key] = {k.default_value, "default"};
  auto set = [&](const std::string& key, const std::string& value,
                 const std::string& source) -> core::Status {
    auto it = c.effective.find(key);
    if (it == c.effective.end()) {
      return core::InvalidArgument(
          fmt::format("unknown config key \"{}\" (from {}); see `kervan config keys`", key, source),
          key);
    }
    it->second = {value, source};
    return core::Ok();
  };

  if (!sources.file.empty()) {
    std::map<std::string, std::string> flat;
    try {
      YAML::Node root = YAML::LoadFile(sources.file);
      if (!root.IsNull())
        RETURN_IF_ERROR(Flatten(root, "", flat, sources.file));
    } catch (const YAML::Exception& e) {
      return core::InvalidArgument(fmt::format("config file {}: {}", sources.file, e.what()),
                                   "config");
    }
    for (const auto& [key, value] : flat)
      RETURN_IF_ERROR(set(key, value, "file:" + sources.file));
  }
  if (sources.read_env) {
    for (const auto& k : kKeys) {
      if (const char* v = std::getenv(EnvName(k.key).c_str())) {
        RETURN_IF_ERROR(set(k.key, v, "env:" + EnvName(k.key)));
      }
    }
  }
  for (const auto& o : sources.overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos) {
      return core::InvalidArgument(fmt::format("--set \"{}\": expected key=value", o), "set");
    }
    RETURN_IF_ERROR(set(o.substr(0, eq), o.substr(eq + 1), "flag"));
  }

  auto str = [&](const char* key) { return c.effective.at(key).first; };
  c.data_dir = str("data_dir");
  c.log_level = str("log.level");
  core::LogLevel level;
  if (!core::ParseLogLevel(c.log_level, &level)) {
    return core::InvalidArgument(
        fmt::format("config key \"log.level\": must be debug, info, warn or error, got \"{}\"",
                    c.log_level),
        "log.level");
  }
  ASSIGN_OR_RETURN(c.log_events, BoolValue(c, "log.events"));
  c.server_address = str("server.address");
  ASSIGN_OR_RETURN(c.server_port, IntValue(c, "server.port", 0, 65535));
  ASSIGN_OR_RETURN(c.io_threads, IntValue(c, "server.io_threads", 1, 64));
  ASSIGN_OR_RETURN(c.worker_threads, IntValue(c, "server.worker_threads", 1, 256));
  ASSIGN_OR_RETURN(c.max_body_bytes, IntValue(c, "server.max_body_bytes", 1024, 1LL << 30));
  ASSIGN_OR_RETURN(c.read_timeout_s, IntValue(c, "server.read_timeout_s", 1, 3600));
  ASSIGN_OR_RETURN(c.shutdown_grace_s, IntValue(c, "server.shutdown_grace_s", 0, 3600));
  ASSIGN_OR_RETURN(c.access_log, BoolValue(c, "server.access_log"));
  c.store_backend = str("store.backend");
  if (c.store_backend != "sqlite" && c.store_backend != "postgres") {
    return core::InvalidArgument(
        fmt::format("config key \"store.backend\": must be sqlite or postgres, got \"{}\"",
                    c.store_backend),
        "store.backend");
  }
  c.sqlite_path = str("store.sqlite.path");
  if (!c.sqlite_path.empty() && std::filesystem::path(c.sqlite_path).is_relative()) {
    c.sqlite_path = (std::filesystem::path(c.data_dir) / c.sqlite_path).string();
  }
  ASSIGN_OR_RETURN(c.sqlite_mmap_bytes, IntValue(c, "store.sqlite.mmap_bytes", 0, 1LL << 40));
  c.postgres_dsn = str("store.postgres.dsn");
  if (c.store_backend == "postgres" && c.postgres_dsn.empty()) {
    return core::InvalidArgument(
        "config key \"store.postgres.dsn\": required when store.backend is postgres "
        "(set it in the file or KERVAN_STORE_POSTGRES_DSN)",
        "store.postgres.dsn");
  }
  ASSIGN_OR_RETURN(c.store_pool_size, IntValue(c, "store.pool_size", 1, 512));
  ASSIGN_OR_RETURN(c.auth_default_expiry_days, IntValue(c, "auth.default_expiry_days", 0, 3650));
  ASSIGN_OR_RETURN(c.auth_refresh_s, IntValue(c, "auth.refresh_s", 1, 3600));
  ASSIGN_OR_RETURN(c.auth_protect_metrics, BoolValue(c, "auth.protect_metrics"));
  c.artifacts_backend = str("artifacts.backend");
  if (c.artifacts_backend != "local" && c.artifacts_backend != "s3") {
    return core::InvalidArgument(
        fmt::format("config key \"artifacts.backend\": must be local or s3, got \"{}\"",
                    c.artifacts_backend),
        "artifacts.backend");
  }
  c.artifacts_root = str("artifacts.root");
  if (!c.artifacts_root.empty() && std::filesystem::path(c.artifacts_root).is_relative())
    c.artifacts_root = (std::filesystem::path(c.data_dir) / c.artifacts_root).string();
  c.s3_endpoint = str("artifacts.s3.endpoint");
  c.s3_region = str("artifacts.s3.region");
  c.s3_bucket = str("artifacts.s3.bucket");
  c.s3_prefix = str("artifacts.s3.prefix");
  c.s3_access_key = str("artifacts.s3.access_key");
  c.s3_secret_key = str("artifacts.s3.secret_key");
  if (c.s3_access_key.empty() && std::getenv("AWS_ACCESS_KEY_ID") != nullptr)
    c.s3_access_key = std::getenv("AWS_ACCESS_KEY_ID");
  if (c.s3_secret_key.empty() && std::getenv("AWS_SECRET_ACCESS_KEY") != nullptr)
    c.s3_secret_key = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (c.artifacts_backend == "s3" && (c.s3_endpoint.empty() || c.s3_bucket.empty())) {
    return core::InvalidArgument(
        "config keys \"artifacts.s3.endpoint\" and \"artifacts.s3.bucket\": required when "
        "artifacts.backend is s3",
        "artifacts.s3.endpoint");
  }
  ASSIGN_OR_RETURN(c.artifacts_max_upload_bytes,
                   IntValue(c, "artifacts.max_upload_bytes", 1024, 1LL << 36));
  ASSIGN_OR_RETURN(c.webhook_max_attempts, IntValue(c, "webhooks.max_attempts", 1, 100));
  ASSIGN_OR_RETURN(c.webhook_backoff_base_ms,
                   IntValue(c, "webhooks.backoff_base_ms", 10, 3600 * 1000));
  ASSIGN_OR_RETURN(c.webhook_backoff_max_s, IntValue(c, "webhooks.backoff_max_s", 1, 86400));
  ASSIGN_OR_RETURN(c.webhook_timeout_s, IntValue(c, "webhooks.timeout_s", 1, 600));

  c.jobs_executor = str("jobs.executor");
  if (c.jobs_executor != "local" && c.jobs_executor != "slurm" && c.jobs_executor != "kubernetes") {
    return core::InvalidArgument(
        fmt::format("config key \"jobs.executor\": must be local, slurm or kubernetes, got \"{}\"",
                    c.jobs_executor),
        "jobs.executor");
  }
  ASSIGN_OR_RETURN(c.jobs_virtual_gpus, IntValue(c, "jobs.virtual_gpus", 0, 1024));
  c.jobs_scratch_dir = str("jobs.scratch_dir");
  if (!c.jobs_scratch_dir.empty() && std::filesystem::path(c.jobs_scratch_dir).is_relative())
    c.jobs_scratch_dir = (std::filesystem::path(c.data_dir) / c.jobs_scratch_dir).string();
  c.jobs_policy = str("jobs.policy");
  if (c.jobs_policy != "kervan" && c.jobs_policy != "fifo" && c.jobs_policy != "strict") {
    return core::InvalidArgument(
        fmt::format("config key \"jobs.policy\": must be kervan, fifo or strict, got \"{}\"",
                    c.jobs_policy),
        "jobs.policy");
  }
  ASSIGN_OR_RETURN(c.jobs_preemption, BoolValue(c, "jobs.preemption"));
  ASSIGN_OR_RETURN(c.jobs_backfill, BoolValue(c, "jobs.backfill"));
  c.jobs_priority_classes = str("jobs.priority_classes");
  if (auto parsed = jobs::ParsePriorityClasses(c.jobs_priority_classes); !parsed) {
    return core::InvalidArgument(
        fmt::format("config key \"jobs.priority_classes\": {}", parsed.error().message),
        "jobs.priority_classes");
  }
  c.jobs_quotas = str("jobs.quotas");
  if (auto parsed = jobs::ParseQuotas(c.jobs_quotas); !parsed) {
    return core::InvalidArgument(
        fmt::format("config key \"jobs.quotas\": {}", parsed.error().message), "jobs.quotas");
  }
  ASSIGN_OR_RETURN(c.jobs_cycle_ms, IntValue(c, "jobs.cycle_ms", 10, 600000));
  c.pipelines_root = str("pipelines.root");
  if (c.pipelines_root.empty())
    return core::InvalidArgument("config key \"pipelines.root\": must not be empty",
                                 "pipelines.root");
  if (std::filesystem::path(c.pipelines_root).is_relative())
    c.pipelines_root = (std::filesystem::path(c.data_dir) / c.pipelines_root).string();
  ASSIGN_OR_RETURN(c.pipelines_cycle_ms, IntValue(c, "pipelines.cycle_ms", 10, 600000));
  ASSIGN_OR_RETURN(c.serving_cycle_ms, IntValue(c, "serving.cycle_ms", 10, 600000));
  ASSIGN_OR_RETURN(c.serving_sample_percent, IntValue(c, "serving.sample_percent", 0, 100));
  ASSIGN_OR_RETURN(c.serving_max_rows, IntValue(c, "serving.max_rows", 1, 100000));
  ASSIGN_OR_RETURN(c.serving_upstream_timeout_ms,
                   IntValue(c, "serving.upstream_timeout_ms", 1, 600000));
  ASSIGN_OR_RETURN(c.serving_mirror_threads, IntValue(c, "serving.mirror_threads", 1, 64));
  ASSIGN_OR_RETURN(c.monitoring_cycle_ms, IntValue(c, "monitoring.cycle_ms", 10, 600000));
  ASSIGN_OR_RETURN(c.monitoring_auto, BoolValue(c, "monitoring.auto"));
  ASSIGN_OR_RETURN(c.monitoring_window_rows, IntValue(c, "monitoring.window_rows", 1, 1000000));
  ASSIGN_OR_RETURN(c.monitoring_min_rows, IntValue(c, "monitoring.min_rows", 1, 1000000));
  ASSIGN_OR_RETURN(c.monitoring_window_s, IntValue(c, "monitoring.window_s", 0, 86400 * 365));
  ASSIGN_OR_RETURN(c.rules_cycle_ms, IntValue(c, "rules.cycle_ms", 10, 600000));
  ASSIGN_OR_RETURN(c.rules_max_attempts, IntValue(c, "rules.max_attempts", 1, 100));
  ASSIGN_OR_RETURN(c.rules_retry_base_ms, IntValue(c, "rules.retry_base_ms", 1, 3600 * 1000));
  c.alerts_alertmanager_url = str("alerts.alertmanager_url");
  if (!c.alerts_alertmanager_url.empty() && c.alerts_alertmanager_url.rfind("http://", 0) != 0) {
    return core::InvalidArgument("config key \"alerts.alertmanager_url\": must start with http://",
                                 "alerts.alertmanager_url");
  }
  ASSIGN_OR_RETURN(c.alerts_resend_s, IntValue(c, "alerts.resend_s", 1, 86400));
  ASSIGN_OR_RETURN(c.jobs_backoff_base_ms, IntValue(c, "jobs.backoff_base_ms", 1, 3600 * 1000));
  ASSIGN_OR_RETURN(c.jobs_backoff_max_s, IntValue(c, "jobs.backoff_max_s", 1, 86400));
  ASSIGN_OR_RETURN(c.jobs_termination_grace_ms,
                   IntValue(c, "jobs.termination_grace_ms", 0, 3600 * 1000));
  ASSIGN_OR_RETURN(c.jobs_fair_share_half_life_h,
                   IntValue(c, "jobs.fair_share_half_life_h", 1, 24 * 365));
  c.jobs_tracking_uri = str("jobs.tracking_uri");
  c.jobs_slurm_bin_dir = str("jobs.slurm.bin_dir");
  c.jobs_slurm_partitions = str("jobs.slurm.partitions");
  c.jobs_slurm_qos = str("jobs.slurm.qos");
  c.jobs_slurm_jobcomp = str("jobs.slurm.jobcomp");
  c.jobs_slurm_conf = str("jobs.slurm.conf");
  c.jobs_kubectl = str("jobs.kubernetes.kubectl");
  c.jobs_kubernetes_namespace = str("jobs.kubernetes.namespace");
  c.jobs_kubernetes_context = str("jobs.kubernetes.context");
  c.jobs_kubernetes_image = str("jobs.kubernetes.image");
  c.jobs_kubernetes_priority_classes = str("jobs.kubernetes.priority_classes");
  return c;
}

std::string RenderConfig(const Config& config) {
  std::string out;
  for (const auto& k : kKeys) {
    const auto& [value, source] = config.effective.at(k.key);
    std::string shown = value;
    if (IsSecretKey(k.key) && !value.empty()) {
      shown = k.key == std::string("store.postgres.dsn") ? store::MaskDsn(value) : "*****";
    }
    out +=
        fmt::format("{:<26} {:<40} # {}\n", std::string(k.key) + ":", "\"" + shown + "\"", source);
  }
  return out;
}

core::Json ConfigToJson(const Config& config) {
  core::Json j = core::Json::object();
  for (const auto& k : kKeys) {
    const auto& [value, source] = config.effective.at(k.key);
    std::string shown = value;
    if (IsSecretKey(k.key) && !value.empty()) {
      shown = k.key == std::string("store.postgres.dsn") ? store::MaskDsn(value) : "*****";
    }
    j[k.key] = {{"value", shown}, {"source", source}};
  }
  return j;
}

}  // namespace kervan::app
