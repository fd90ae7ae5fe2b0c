// Configuration: defaults, then a YAML file (config/dev.yaml, config/prod.yaml),
// then KERVAN_* environment variables, then command-line --set key=value.
// Every setting has one dotted key ("store.postgres.dsn"); its environment
// variable is KERVAN_ plus the key upper-cased with '.' -> '_'
// (KERVAN_STORE_POSTGRES_DSN). Unknown keys are errors, never ignored.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "core/core.h"

namespace kervan::app {

struct Config {
  std::string data_dir;
  std::string log_level;
  bool log_events = true;

  std::string server_address;
  int server_port = 8080;
  int io_threads = 2;
  int worker_threads = 8;
  int64_t max_body_bytes = 1 << 20;
  int read_timeout_s = 30;
  int shutdown_grace_s = 10;
  bool access_log = true;

  std::string store_backend;  // "sqlite" | "postgres"
  std::string sqlite_path;    // relative paths are under data_dir
  int64_t sqlite_mmap_bytes = int64_t{1} << 30;
  std::string postgres_dsn;
  int store_pool_size = 8;

  int auth_default_expiry_days = 90;  // 0 = tokens never expire by default
  int auth_refresh_s = 5;
  bool auth_protect_metrics = false;

  std::string artifacts_backend;  // "local" | "s3"
  std::string artifacts_root;     // relative paths are under data_dir
  std::string s3_endpoint, s3_region, s3_bucket, s3_prefix, s3_access_key, s3_secret_key;
  int64_t artifacts_max_upload_bytes = 256 << 20;

  int webhook_max_attempts = 8;
  int webhook_backoff_base_ms = 1000;
  int webhook_backoff_max_s = 600;
  int webhook_timeout_s = 10;
  std::string jobs_executor;  // "local" | "slurm"
  int jobs_virtual_gpus = 0;
  std::string jobs_scratch_dir;  // relative paths are under data_dir
  std::string jobs_policy;       // "kervan" | "fifo" | "strict"
  bool jobs_preemption = true;
  bool jobs_backfill = true;
  std::string jobs_priority_classes;  // jobs::ParsePriorityClasses syntax
  std::string jobs_quotas;            // jobs::ParseQuotas syntax
  int64_t jobs_cycle_ms = 1000;
  std::string pipelines_root;  // relative paths are under data_dir
  int64_t pipelines_cycle_ms = 500;
  int64_t serving_cycle_ms = 1000;
  int64_t serving_sample_percent = 10;
  int64_t serving_max_rows = 1000;
  int64_t serving_upstream_timeout_ms = 2000;
  int64_t serving_mirror_threads = 1;
  int64_t monitoring_cycle_ms = 2000;
  bool monitoring_auto = true;
  int64_t monitoring_window_rows = 500;
  int64_t monitoring_min_rows = 50;
  int64_t monitoring_window_s = 0;
  int64_t rules_cycle_ms = 1000;
  int64_t rules_max_attempts = 5;
  int64_t rules_retry_base_ms = 1000;
  std::string alerts_alertmanager_url;
  int64_t alerts_resend_s = 60;
  int64_t jobs_backoff_base_ms = 10000;
  int64_t jobs_backoff_max_s = 360;
  int64_t jobs_termination_grace_ms = 10000;
  int64_t jobs_fair_share_half_life_h = 168;
  std::string jobs_tracking_uri;
  std::string jobs_slurm_bin_dir, jobs_slurm_partitions, jobs_slurm_qos, jobs_slurm_jobcomp,
      jobs_slurm_conf;
  std::string jobs_kubectl, jobs_kubernetes_namespace, jobs_kubernetes_context,
      jobs_kubernetes_image, jobs_kubernetes_priority_classes;

  // Every key with its effective value and where it came from
  // ("default", "file:config/dev.yaml", "env:KERVAN_...", "flag").
  std::map<std::string, std::pair<std::string, std::string>> effective;
};

struct ConfigSources {
  std::string file;                    // empty: no file
  std::vector<std::string> overrides;  // "key=value" from --set and shorthand flags
  bool read_env = true;
};

// Loads and validates. Errors name the key and the source that set it.
core::Result<Config> LoadConfig(const ConfigSources& sources);

// The effective configuration as "key: value  # source" lines, secrets masked.
std::string RenderConfig(const Config& config);
core::Json ConfigToJson(const Config& config);

// The config keys, for --help and docs.
std::vector<std::string> ConfigKeys();

}  // namespace kervan::app
