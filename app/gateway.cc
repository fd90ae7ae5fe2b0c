// `kervan gateway`: the inference gateway alone, for scale-out. It keeps no
// state: it follows the server's rollout events (the SSE stream, kind
// "deployment") and refetches the routing table on each, loads the versions
// it names through the server's API, answers inference requests, and reports
// its statistics and samples back (POST /api/v1/serving/reports) so the
// server's rollout controller sees its traffic.
#include "app/gateway.h"

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <signal.h>

#include <fmt/format.h>

#include "serving/serving.h"

namespace kervan::app {
namespace {

using core::Json;
using core::Result;
using core::Status;

Result<Json> GetJson(const http::Client& client, const std::string& target) {
  ASSIGN_OR_RETURN(http::ClientResponse r, client.Send("GET", target));
  if (r.status != 200)
    return http::ErrorFromResponse(r);
  Json j = Json::parse(r.body, nullptr, false);
  if (j.is_discarded())
    return core::Internal(
        fmt::format("GET {}: the server answered something that is not JSON", target));
  return j;
}

// Loads versions through the server: the version's artifact URI and
// signature from the registry API, the model bytes from the artifact proxy.
serving::ModelLoader RemoteLoader(const http::Client& client, std::chrono::milliseconds timeout) {
  return [&client, timeout](const std::string& model,
                            int64_t version) -> Result<std::shared_ptr<serving::ModelRuntime>> {
    ASSIGN_OR_RETURN(Json v, GetJson(client, fmt::format("/api/v1/models/{}/versions/{}",
                                                         http::PercentEncode(model), version)));
    std::string uri = v.value("artifact_uri", "");
    Json signature = v.value("signature", Json());
    if (uri.rfind("http://", 0) == 0) {
      ASSIGN_OR_RETURN(auto rt,
                       serving::ConnectUpstream({.url = uri, .timeout = timeout}, signature));
      return std::shared_ptr<serving::ModelRuntime>(std::move(rt));
    }
    std::string bytes;
    constexpr std::string_view kArtifacts = "mlflow-artifacts:";
    if (uri.rfind(kArtifacts, 0) == 0) {
      std::string path = uri.substr(kArtifacts.size());
      while (!path.empty() && path[0] == '/')
        path.erase(0, 1);
      std::string target = "/api/2.0/mlflow-artifacts/artifacts";
      for (size_t start = 0; start <= path.size();) {
        size_t slash = path.find('/', start);
        std::string seg =
            path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        target += "/" + http::PercentEncode(seg);
        if (slash == std::string::npos)
          break;
        start = slash + 1;
      }
      ASSIGN_OR_RETURN(http::ClientResponse r, client.Send("GET", target));
      if (r.status != 200)
        return http::ErrorFromResponse(r);
      bytes = std::move(r.body);
    } else if (uri.rfind("file://", 0) == 0) {
      std::ifstream in(uri.substr(7), std::ios::binary);
      if (!in)
        return core::NotFound(fmt::format("cannot read the model file {}", uri));
      std::ostringstream ss;
      ss << in.rdbuf();
      bytes = ss.str();
    } else {
      return core::InvalidArgument(fmt::format("artifact URI \"{}\" cannot be served", uri),
                                   "artifact_uri");
    }
    ASSIGN_OR_RETURN(auto rt, serving::LoadXgboostModel(bytes, signature));
    return std::shared_ptr<serving::ModelRuntime>(std::move(rt));
  };
}

// Token checks through the server's /api/v1/whoami, cached per token.
class RemoteAuth {
 public:
  explicit RemoteAuth(std::string server) : server_(std::move(server)) {}

  // The token's permissions in `project` (global ones included).
  Result<std::set<std::string>> Permissions(const std::string& authorization,
                                            const std::string& project) {
    auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mu_);
      auto it = cache_.find(authorization);
      if (it != cache_.end() && now - it->second.at < std::chrono::seconds(30))
        return Of(it->second.whoami, project);
    }
    http::Client client(server_, {{"Authorization", authorization}});
    ASSIGN_OR_RETURN(Json who, GetJson(client, "/api/v1/whoami"));
    std::lock_guard lock(mu_);
    cache_[authorization] = {now, who};
    return Of(who, project);
  }

 private:
  static std::set<std::string> Of(const Json& who, const std::string& project) {
    std::set<std::string> out;
    for (const auto& p : who.value("permissions", Json::array()))
      out.insert(p.get<std::string>());
    const Json& by = who.value("project_permissions", Json::object());
    if (by.contains(project)) {
      for (const auto& p : by[project])
        out.insert(p.get<std::string>());
    }
    return out;
  }

  struct Entry {
    std::chrono::steady_clock::time_point at;
    Json whoami;
  };
  std::string server_;
  std::mutex mu_;
  std::map<std::string, Entry> cache_;
};

// The endpoint a gateway path names: /v1/endpoints/{name}/..., /v2/models/{name}/...
std::string EndpointOf(const std::string& path) {
  for (std::string_view prefix : {"/v1/endpoints/", "/v2/models/"}) {
    if (path.rfind(prefix, 0) == 0) {
      size_t start = prefix.size();
      size_t end = path.find('/', start);
      return http::PercentDecode(
          path.substr(start, end == std::string::npos ? std::string::npos : end - start));
    }
  }
  return "";
}

}  // namespace

int RunGateway(const GatewayRunOptions& options) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  http::HeaderList auth_headers;
  if (!options.token.empty())
    auth_headers.push_back({"Authorization", "Bearer " + options.token});
  http::Client client(options.server_url, auth_headers);
  auto report = [&client](Json body) {
    auto r = client.Send("POST", "/api/v1/serving/reports", body.dump(),
                         {{"Content-Type", "application/json"}});
    if (!r || r->status != 200) {
      core::LogWarn(fmt::format("gateway: report to the server failed: {}",
                                r ? http::ErrorFromResponse(*r).message : r.error().message),
                    {{"event.action", "gateway.report_failed"}});
    }
  };
  serving::Gateway gateway(
      {.loader = RemoteLoader(client, std::chrono::milliseconds(options.upstream_timeout_ms)),
       .max_rows = options.max_rows,
       .sample_sink =
           [&report](std::vector<serving::Sample> samples) {
             Json list = Json::array();
             for (const auto& s : samples) {
               Json j = s.ToJson();
               j["time_us"] = s.time_us;
               list.push_back(std::move(j));
             }
             report({{"samples", list}});
           },
       .stats_sink =
           [&report](std::vector<serving::StatsReport> stats) {
             Json list = Json::array();
             for (const auto& s : stats)
               list.push_back(s.ToJson());
             report({{"stats", list}});
           }});

  // Endpoint -> project, for the access guard (from the routing table).
  std::mutex projects_mu;
  std::map<std::string, std::string> projects;
  auto refresh = [&]() -> Status {
    ASSIGN_OR_RETURN(Json j, GetJson(client, "/api/v1/serving/routing"));
    ASSIGN_OR_RETURN(serving::RoutingTable table, serving::RoutingTable::FromJson(j));
    if (table.revision == gateway.revision() && table.revision != 0)
      return core::Ok();
    gateway.Apply(table);
    std::lock_guard lock(projects_mu);
    projects.clear();
    for (const auto& [name, e] : table.endpoints)
      projects[name] = e.project;
    core::LogInfo(fmt::format("gateway: routing table at revision {} ({} endpoints)",
                              table.revision, table.endpoints.size()),
                  {{"event.action", "gateway.routing_applied"}});
    return core::Ok();
  };
  if (auto s = refresh(); !s) {
    core::LogError(fmt::format("gateway: cannot read the routing table from {}: {}",
                               options.server_url, s.error().message),
                   {{"event.action", "gateway.start_failed"}});
    return 1;
  }

  auto router = std::make_shared<http::Router>();
  if (auto s = serving::RegisterGatewayRoutes(*router, gateway); !s) {
    core::LogError("gateway: " + s.error().message);
    return 1;
  }
  // Its own traffic's metrics (kervan_inference_*), for Prometheus to scrape
  // (deploy/prometheus/prometheus.yml, job kervan-gateway). Public, as the
  // server's /metrics is by default.
  if (auto s = router->Add({.method = "GET",
                            .pattern = "/metrics",
                            .handler =
                                [](const http::Request&) {
                                  return http::Response::Text(
                                      200, core::GlobalMetrics().Render(),
                                      "text/plain; version=0.0.4; charset=utf-8");
                                },
                            .public_route = true});
      !s) {
    core::LogError("gateway: " + s.error().message);
    return 1;
  }
  RemoteAuth remote_auth(options.server_url);
  http::ServerOptions server_options{.address = options.address,
                                     .port = static_cast<uint16_t>(options.port),
                                     .io_threads = options.io_threads,
                                     .worker_threads = options.worker_threads,
                                     .access_log = options.access_log};
  server_options.access_guard = [&](http::Request& req, const std::string& permission,
                                    bool public_route) -> Status {
    if (public_route)
      return core::Ok();
    std::string authorization = req.Header("Authorization");
    if (authorization.empty())
      return core::Unauthenticated("this gateway needs a bearer token (Authorization: Bearer ...)");
    std::string project;
    {
      std::lock_guard lock(projects_mu);
      auto it = projects.find(EndpointOf(req.path));
      if (it != projects.end())
        project = it->second;
    }
    ASSIGN_OR_RETURN(auto perms, remote_auth.Permissions(authorization, project));
    if (!perms.count(permission)) {
      return core::PermissionDenied(fmt::format("permission {} is needed{}", permission,
                                                project.empty() ? "" : " in project " + project));
    }
    req.actor = "remote-token";  // checked by the server; the gateway logs no identities
    return core::Ok();
  };
  http::Server server(server_options, router);
  if (auto s = server.Start(); !s) {
    core::LogError("gateway: " + s.error().message, {{"event.action", "gateway.start_failed"}});
    return 1;
  }
  gateway.Start();

  // Follows rollout events; refetches the table on each, and every few
  // seconds whatever happens (a missed event costs at most that long).
  std::atomic<bool> stopping{false};
  std::thread follower([&] {
    while (!stopping) {
      auto status = client.ReadStream(
          "/api/v1/events/stream?kind=deployment&after=" + std::to_string(gateway.revision()), {},
          [&](std::string_view chunk) {
            if (chunk.find("deployment.") != std::string_view::npos) {
              if (auto s = refresh(); !s)
                core::LogWarn("gateway: refresh failed: " + s.error().message);
            }
            return !stopping.load();
          },
          std::chrono::seconds(5));
      (void)status;
      if (stopping)
        break;
      if (auto s = refresh(); !s)
        core::LogWarn("gateway: refresh failed: " + s.error().message);
      for (int i = 0; i < 10 && !stopping; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  core::LogInfo(fmt::format("kervan gateway serving on http://{}:{} for {}", options.address,
                            server.port(), options.server_url),
                {{"event.action", "gateway.started"}, {"server.port", server.port()}});
  if (!options.ready_file.empty()) {
    std::string tmp = options.ready_file + ".tmp";
    std::ofstream(tmp) << server.port() << "\n";
    std::rename(tmp.c_str(), options.ready_file.c_str());
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  stopping = true;
  server.Shutdown(std::chrono::seconds(5));
  server.Wait();
  follower.join();
  gateway.Stop();
  core::LogInfo("gateway stopped", {{"event.action", "gateway.stopped"}});
  return 0;
}

}  // namespace kervan::app
