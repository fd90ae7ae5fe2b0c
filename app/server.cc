#include "app/server.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include "app/routes.h"
#include "artifacts/artifacts.h"
#include "auth/auth.h"
#include "http/http.h"
#include "jobs/jobs.h"
#include "monitoring/monitoring.h"
#include "pipelines/pipelines.h"
#include "registry/registry.h"
#include "rules/rules.h"
#include "serving/serving.h"
#include "tracking/tracking.h"
#include "webhooks/webhooks.h"

namespace kervan::app {

// The one place that names concrete store backends.
core::Result<std::unique_ptr<store::Database>> OpenStore(const Config& config) {
  std::unique_ptr<store::Database> db;
  if (config.store_backend == "postgres") {
    ASSIGN_OR_RETURN(
        db, store::OpenPostgres({.dsn = config.postgres_dsn,
                                 .pool_size = static_cast<size_t>(config.store_pool_size)}));
  } else {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(config.sqlite_path).parent_path(),
                                        ec);
    if (ec) {
      return core::Unavailable(
          fmt::format("cannot create data directory for {}: {}", config.sqlite_path, ec.message()));
    }
    ASSIGN_OR_RETURN(db,
                     store::OpenSqlite({.path = config.sqlite_path,
                                        .pool_size = static_cast<size_t>(config.store_pool_size),
                                        .mmap_bytes = config.sqlite_mmap_bytes}));
  }
  ASSIGN_OR_RETURN(auto applied, store::ApplyMigrations(*db));
  core::LogInfo(
      fmt::format("store ready: {} ({} new migrations)", db->description(), applied.size()),
      {{"event.action", "store.opened"}});
  return db;
}

// Writes `text` to a new file readable by its owner only. Fails rather than
// overwrite: a bootstrap token is never silently replaced.
core::Status WriteOwnerOnlyFile(const std::filesystem::path& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return core::Unavailable(fmt::format("cannot create {}: {}", path.string(), strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ::close(fd);
      return core::Unavailable(fmt::format("cannot write {}: {}", path.string(), strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    return core::Unavailable(fmt::format("cannot sync {}: {}", path.string(), strerror(errno)));
  return core::Ok();
}

// The 32-byte key that seals secrets at rest (webhook signing secrets):
// read from <data_dir>/secret.key, created (mode 0600) on first start.
// Servers sharing one PostgreSQL must share this file.
core::Result<std::string> LoadOrCreateSecretKey(const Config& config) {
  std::filesystem::path path = std::filesystem::path(config.data_dir) / "secret.key";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::filesystem::create_directories(config.data_dir, ec);
    auto written = WriteOwnerOnlyFile(path, core::HexEncode(core::RandomBytes(32)) + "\n");
    if (!written && !std::filesystem::exists(path, ec))  // lost a race: fine, read theirs
      return written.error();
  }
  std::ifstream in(path);
  std::string hex;
  std::getline(in, hex);
  if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return core::Unavailable(
        fmt::format("{}: expected 64 lowercase hex characters (a 32-byte key)", path.string()));
  }
  std::string key(32, '\0');
  for (size_t i = 0; i < 32; ++i)
    key[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return key;
}

// The artifact store named by artifacts.backend.
core::Result<std::unique_ptr<artifacts::ArtifactStore>> OpenArtifactStore(const Config& config) {
  if (config.artifacts_backend == "s3") {
    return artifacts::OpenS3({.endpoint = config.s3_endpoint,
                              .region = config.s3_region,
                              .bucket = config.s3_bucket,
                              .prefix = config.s3_prefix,
                              .access_key = config.s3_access_key,
                              .secret_key = config.s3_secret_key});
  }
  return artifacts::OpenLocal(config.artifacts_root);
}

// "a=b,c=d" -> {a: b, c: d} (config values like jobs.slurm.partitions).
core::Result<std::map<std::string, std::string>> KeyValueMap(const std::string& key,
                                                             const std::string& text) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos)
      end = text.size();
    std::string item = text.substr(start, end - start);
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      return core::InvalidArgument(
          fmt::format("config key \"{}\": expected name=value pairs, got \"{}\"", key, item), key);
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
    start = end + 1;
  }
  return out;
}

// The jobs service with the executor named by jobs.executor.
core::Result<std::unique_ptr<jobs::Jobs>> OpenJobs(const Config& config, store::Database& db,
                                                   store::EventLog& log,
                                                   store::Lifecycles& lifecycles,
                                                   tracking::Tracking& tracking) {
  std::unique_ptr<jobs::Executor> executor;
  if (config.jobs_executor == "slurm") {
    jobs::SlurmOptions slurm{.bin_dir = config.jobs_slurm_bin_dir,
                             .jobcomp_path = config.jobs_slurm_jobcomp,
                             .slurm_conf = config.jobs_slurm_conf};
    ASSIGN_OR_RETURN(slurm.partition_by_class,
                     KeyValueMap("jobs.slurm.partitions", config.jobs_slurm_partitions));
    ASSIGN_OR_RETURN(slurm.qos_by_class, KeyValueMap("jobs.slurm.qos", config.jobs_slurm_qos));
    ASSIGN_OR_RETURN(executor, jobs::MakeSlurmExecutor(std::move(slurm)));
  } else if (config.jobs_executor == "kubernetes") {
    jobs::KubernetesOptions k8s{.kubectl = config.jobs_kubectl,
                                .namespace_name = config.jobs_kubernetes_namespace,
                                .context = config.jobs_kubernetes_context,
                                .default_image = config.jobs_kubernetes_image};
    ASSIGN_OR_RETURN(
        k8s.priority_class_names,
        KeyValueMap("jobs.kubernetes.priority_classes", config.jobs_kubernetes_priority_classes));
    ASSIGN_OR_RETURN(executor, jobs::MakeKubernetesExecutor(std::move(k8s)));
  } else {
    executor = jobs::MakeLocalExecutor(
        {.virtual_gpus = config.jobs_virtual_gpus,
         .state_dir = (std::filesystem::path(config.jobs_scratch_dir) / ".attempts").string()});
  }
  jobs::Options options;
  options.policy.mode = config.jobs_policy == "fifo"     ? jobs::PolicyMode::kFifo
                        : config.jobs_policy == "strict" ? jobs::PolicyMode::kStrictPriority
                                                         : jobs::PolicyMode::kKervan;
  options.policy.preemption = config.jobs_preemption;
  options.policy.backfill = config.jobs_backfill;
  ASSIGN_OR_RETURN(options.policy.priority_classes,
                   jobs::ParsePriorityClasses(config.jobs_priority_classes));
  ASSIGN_OR_RETURN(options.policy.quotas, jobs::ParseQuotas(config.jobs_quotas));
  options.cycle_interval = std::chrono::milliseconds(config.jobs_cycle_ms);
  options.backoff_base = std::chrono::milliseconds(config.jobs_backoff_base_ms);
  options.backoff_cap = std::chrono::seconds(config.jobs_backoff_max_s);
  options.termination_grace = std::chrono::milliseconds(config.jobs_termination_grace_ms);
  options.fair_share_half_life_s = config.jobs_fair_share_half_life_h * 3600;
  options.scratch_root = config.jobs_scratch_dir;
  options.tracking_uri = config.jobs_tracking_uri;
  return jobs::Jobs::Open(db, log, lifecycles, std::move(executor), std::move(options), &tracking);
}

// First start: the bootstrap admin and its token (in <data_dir>/admin.token,
// mode 0600, never logged), and the "default" project.
core::Status Bootstrap(const Config& config, auth::Auth& auth) {
  store::CommandContext system{.actor = "system:auth", .correlation_id = core::NewUuidV7()};
  namespace fs = std::filesystem;
  fs::path path = fs::path(config.data_dir) / "admin.token";
  fs::path pending = fs::path(config.data_dir) / "admin.token.new";
  std::error_code ec;
  fs::create_directories(config.data_dir, ec);
  // The token reaches the disk (pending) before it is committed, and takes
  // its final name after: a crash in between leaves a pending file, which
  // the next start keeps if its token is valid (committed) and drops if not.
  bool persisted = false;
  ASSIGN_OR_RETURN(auto token,
                   auth.BootstrapIfEmpty(system, [&](const std::string& text) -> core::Status {
                     fs::remove(pending, ec);
                     RETURN_IF_ERROR(WriteOwnerOnlyFile(pending, text + "\n"));
                     persisted = true;
                     return core::Ok();
                   }));
  if (!token && fs::exists(pending, ec)) {
    std::ifstream in(pending);
    std::string text;
    std::getline(in, text);
    if (!persisted && auth.Authenticate("Bearer " + text)) {
      token.emplace();
      token->token = text;
    } else {
      fs::remove(pending, ec);
    }
  }
  if (token) {
    // Replaces a stale file left by an earlier, wiped database.
    fs::rename(pending, path, ec);
    if (ec) {
      return core::Unavailable(
          fmt::format("cannot rename {} to {}: {}", pending.string(), path.string(), ec.message()));
    }
    core::LogInfo(fmt::format("created bootstrap admin user:admin; its token is in {} (mode 0600)",
                              path.string()),
                  {{"event.action", "auth.bootstrapped"}, {"file.path", path.string()}});
  }
  if (!auth.GetProject("default")) {
    auto created = auth.CreateProject("default", "models and jobs without a team", system);
    if (!created && created.error().code != core::ErrorCode::kAlreadyExists)
      return created.error();
  }
  return core::Ok();
}

int RunServer(const ServerRunOptions& options) {
  const Config& config = options.config;
  core::LogLevel level = core::LogLevel::kInfo;
  core::ParseLogLevel(config.log_level, &level);
  core::SetLogLevel(level);

  // Block the stop signals before any thread starts, so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto fail = [](const core::Error& e, std::string_view what) {
    core::LogError(fmt::format("{}: {}", what, e.message),
                   {{"event.action", "server.start_failed"}});
    return 1;
  };
  auto db = OpenStore(config);
  if (!db)
    return fail(db.error(), "cannot open store");
  auto log = store::EventLog::Open(**db);
  if (!log)
    return fail(log.error(), "cannot open event log");
  store::Lifecycles lifecycles(**log);
  auto auth = auth::Auth::Open(
      **db, **log,
      {.default_token_ttl = std::chrono::hours(24 * config.auth_default_expiry_days),
       .refresh = std::chrono::seconds(config.auth_refresh_s)});
  if (!auth)
    return fail(auth.error(), "cannot open identities");
  if (auto s = Bootstrap(config, **auth); !s)
    return fail(s.error(), "cannot bootstrap identities");
  auto artifact_store = OpenArtifactStore(config);
  if (!artifact_store)
    return fail(artifact_store.error(), "cannot open the artifact store");
  auto tracking = tracking::Tracking::Open(**db, **log, lifecycles);
  if (!tracking)
    return fail(tracking.error(), "cannot open experiment tracking");
  auto registry = registry::Registry::Open(**db, **log, lifecycles);
  if (!registry)
    return fail(registry.error(), "cannot open the model registry");
  auto job_service = OpenJobs(config, **db, **log, lifecycles, **tracking);
  if (!job_service)
    return fail(job_service.error(), "cannot open the job scheduler");
  auto secret_key = LoadOrCreateSecretKey(config);
  if (!secret_key)
    return fail(secret_key.error(), "cannot load the secret key");
  webhooks::WebhooksOptions hook_options;
  hook_options.secret_key = *secret_key;
  hook_options.retry.base = std::chrono::milliseconds(config.webhook_backoff_base_ms);
  hook_options.retry.max = std::chrono::seconds(config.webhook_backoff_max_s);
  hook_options.retry.max_attempts = config.webhook_max_attempts;
  hook_options.request_timeout = std::chrono::seconds(config.webhook_timeout_s);
  auto hooks = webhooks::Webhooks::Open(**log, std::move(hook_options));
  if (!hooks)
    return fail(hooks.error(), "cannot open webhooks");
  if (auto s = (*hooks)->Start(); !s)
    return fail(s.error(), "cannot start webhook delivery");
  auto pipeline_service = pipelines::Pipelines::Open(
      **db, **log, lifecycles,
      {.jobs = job_service->get(),
       .tracking = tracking->get(),
       .registry = registry->get(),
       .artifacts = artifact_store->get()},
      {.root = config.pipelines_root,
       .cycle_interval = std::chrono::milliseconds(config.pipelines_cycle_ms),
       .secret_key = *secret_key});
  if (!pipeline_service)
    return fail(pipeline_service.error(), "cannot open pipelines");

  // Serving: the in-process gateway answers inference requests; the control
  // plane gives it every new routing table and feeds its statistics to the
  // rollout controller. Samples go straight to the store.
  serving::ModelLoader loader =
      serving::MakeRegistryLoader(**registry, artifact_store->get(),
                                  std::chrono::milliseconds(config.serving_upstream_timeout_ms));
  std::unique_ptr<serving::Serving>* serving_ref = nullptr;
  serving::Gateway gateway({.loader = loader,
                            .max_rows = config.serving_max_rows,
                            .mirror_threads = static_cast<int>(config.serving_mirror_threads),
                            .sample_sink = [&serving_ref](std::vector<serving::Sample> samples) {
                              if (serving_ref == nullptr || !*serving_ref)
                                return;
                              if (auto s = (*serving_ref)->StoreSamples(samples); !s)
                                core::LogWarn("serving: cannot store samples: " +
                                              s.error().message);
                            }});
  auto serving_service = serving::Serving::Open(
      **db, **log, lifecycles, **registry, loader, &gateway,
      {.cycle_interval = std::chrono::milliseconds(config.serving_cycle_ms),
       .default_sample_percent = static_cast<double>(config.serving_sample_percent)});
  if (!serving_service)
    return fail(serving_service.error(), "cannot open serving");
  serving_ref = &*serving_service;

  // Monitoring watches endpoints' production traffic; the rule engine acts
  // on events and monitors' numbers through the other modules.
  monitoring::MonitoringOptions monitor_options;
  monitor_options.cycle_interval = std::chrono::milliseconds(config.monitoring_cycle_ms);
  monitor_options.auto_monitor = config.monitoring_auto;
  monitor_options.defaults.window_rows = config.monitoring_window_rows;
  monitor_options.defaults.min_rows = config.monitoring_min_rows;
  monitor_options.defaults.window_seconds = config.monitoring_window_s;
  auto monitoring_service = monitoring::Monitoring::Open(
      **db, **log, lifecycles, **registry, artifact_store->get(), std::move(monitor_options));
  if (!monitoring_service)
    return fail(monitoring_service.error(), "cannot open monitoring");
  monitoring::Alerts alerts(**db, **log,
                            {.alertmanager_url = config.alerts_alertmanager_url,
                             .resend_interval = std::chrono::seconds(config.alerts_resend_s)});
  auto rules_service =
      rules::Rules::Open(**db, **log, lifecycles,
                         {.pipelines = pipeline_service->get(),
                          .serving = serving_service->get(),
                          .registry = registry->get(),
                          .monitoring = monitoring_service->get(),
                          .alerts = &alerts},
                         {.cycle_interval = std::chrono::milliseconds(config.rules_cycle_ms),
                          .max_attempts = static_cast<int>(config.rules_max_attempts),
                          .retry_base = std::chrono::milliseconds(config.rules_retry_base_ms)});
  if (!rules_service)
    return fail(rules_service.error(), "cannot open the rule engine");

  // Ship the audit trail with the logs: every committed event becomes an ECS
  // line. Durable cursor, so a restart neither repeats nor skips events.
  std::unique_ptr<store::EventLog::Subscription> event_shipper;
  if (config.log_events) {
    auto sub = (*log)->SubscribeDurable("log_shipper", [](const store::Event& e) -> core::Status {
      core::LogInfo(fmt::format("{} {}/{} by {}", e.type, e.subject_kind, e.subject_id, e.actor),
                    {{"event.action", e.type},
                     {"event.kind", "event"},
                     {"event.sequence", e.seq},
                     {"event.id", e.id},
                     {"event.reason", e.reason},
                     {"user.name", e.actor},
                     {"trace.id", e.correlation_id},
                     {"kervan.subject.kind", e.subject_kind},
                     {"kervan.subject.id", e.subject_id}});
      return core::Ok();
    });
    if (!sub)
      return fail(sub.error(), "cannot subscribe the event log shipper");
    event_shipper = std::move(sub).value();
  }

  http::AsyncSignal commits;
  (*log)->AddCommitListener([&commits](int64_t) { commits.Notify(); });
  http::asio::thread_pool stream_pool(2);
  Services services{**db, **log, lifecycles, **auth, commits, stream_pool};
  auto router = std::make_shared<http::Router>();
  if (auto s = RegisterRoutes(*router, services); !s)
    return fail(s.error(), "bad route");
  if (auto s = auth::RegisterRoutes(*router, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = tracking::RegisterRoutes(*router, **tracking, **auth, artifact_store->get()); !s)
    return fail(s.error(), "bad route");
  if (auto s = artifacts::RegisterRoutes(
          *router, **artifact_store,
          {.authorize = tracking::MakeArtifactAuthorizer(**tracking, **auth),
           .max_upload_bytes = static_cast<size_t>(config.artifacts_max_upload_bytes)});
      !s)
    return fail(s.error(), "bad route");
  if (auto s = registry::RegisterRoutes(*router, **registry, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = registry::RegisterMlflowRoutes(*router, **registry, tracking->get(), **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = webhooks::RegisterRoutes(*router, **hooks, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = jobs::RegisterRoutes(*router, **job_service, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = pipelines::RegisterRoutes(*router, **pipeline_service, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = serving::RegisterRoutes(*router, **serving_service, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = serving::RegisterGatewayRoutes(*router, gateway); !s)
    return fail(s.error(), "bad route");
  if (auto s = monitoring::RegisterRoutes(*router, **monitoring_service, &alerts, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = rules::RegisterRoutes(*router, **rules_service, **auth); !s)
    return fail(s.error(), "bad route");
  if (auto s = CheckRoutePermissions(*router); !s)
    return fail(s.error(), "bad route");

  http::Server server({.address = config.server_address,
                       .port = static_cast<uint16_t>(config.server_port),
                       .io_threads = config.io_threads,
                       .worker_threads = config.worker_threads,
                       .max_body_bytes = static_cast<size_t>(config.max_body_bytes),
                       .read_timeout = std::chrono::seconds(config.read_timeout_s),
                       .access_log = config.access_log,
                       .access_guard = auth::MakeAccessGuard(
                           **auth, {.protect_metrics = config.auth_protect_metrics})},
                      router);
  if (auto s = server.Start(); !s)
    return fail(s.error(), "cannot start HTTP server");
  core::LogInfo(fmt::format("kervan serving on http://{}:{} (store {})", config.server_address,
                            server.port(), (*db)->description()),
                {{"event.action", "server.started"},
                 {"server.address", config.server_address},
                 {"server.port", server.port()}});
  if (config.jobs_tracking_uri.empty()) {
    (*job_service)
        ->set_tracking_uri(fmt::format("http://{}:{}", config.server_address, server.port()));
  }
  (*job_service)->Start();
  (*pipeline_service)->Start();
  gateway.Start();
  (*serving_service)->Start();
  (*monitoring_service)->Start();
  (*rules_service)->Start();
  if (!options.ready_file.empty()) {
    std::string tmp = options.ready_file + ".tmp";
    std::ofstream(tmp) << server.port() << "\n";
    std::filesystem::rename(tmp, options.ready_file);
  }

  int sig = 0;
  sigwait(&stop_signals, &sig);
  core::LogInfo(fmt::format("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                {{"event.action", "server.stopping"}});
  // In-flight requests finish (their commands are already queued or done);
  // then the log drains its queue, so nothing acknowledged is lost.
  server.Shutdown(std::chrono::seconds(config.shutdown_grace_s));
  server.Wait();
  // Jobs keep running: a restarted server adopts them, and its pipelines
  // carry on with the runs they belong to.
  (*rules_service)->Stop();
  (*monitoring_service)->Stop();
  (*serving_service)->Stop();
  gateway.Stop();
  (*pipeline_service)->Stop();
  (*job_service)->Stop();
  stream_pool.join();
  (*hooks)->Stop();
  event_shipper.reset();
  (*log)->Stop();
  core::LogInfo("stopped", {{"event.action", "server.stopped"}});
  return 0;
}

}  // namespace kervan::app
