#include "app/server.h"

#include <filesystem>
#include <fstream>

#include <signal.h>

#include <fmt/format.h>

#include "app/routes.h"
#include "http/http.h"

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
                                        .pool_size = static_cast<size_t>(config.store_pool_size)}));
  }
  ASSIGN_OR_RETURN(auto applied, store::ApplyMigrations(*db));
  core::LogInfo(
      fmt::format("store ready: {} ({} new migrations)", db->description(), applied.size()),
      {{"event.action", "store.opened"}});
  return db;
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
  if (auto s = RegisterLifecycles(lifecycles); !s)
    return fail(s.error(), "bad lifecycle");

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
  Services services{**db, **log, lifecycles, commits, stream_pool};
  auto router = std::make_shared<http::Router>();
  if (auto s = RegisterRoutes(*router, services); !s)
    return fail(s.error(), "bad route");

  http::Server server({.address = config.server_address,
                       .port = static_cast<uint16_t>(config.server_port),
                       .io_threads = config.io_threads,
                       .worker_threads = config.worker_threads,
                       .max_body_bytes = static_cast<size_t>(config.max_body_bytes),
                       .read_timeout = std::chrono::seconds(config.read_timeout_s),
                       .access_log = config.access_log},
                      router);
  if (auto s = server.Start(); !s)
    return fail(s.error(), "cannot start HTTP server");
  core::LogInfo(fmt::format("kervan serving on http://{}:{} (store {})", config.server_address,
                            server.port(), (*db)->description()),
                {{"event.action", "server.started"},
                 {"server.address", config.server_address},
                 {"server.port", server.port()}});
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
  stream_pool.join();
  event_shipper.reset();
  (*log)->Stop();
  core::LogInfo("stopped", {{"event.action", "server.stopped"}});
  return 0;
}

}  // namespace kervan::app
