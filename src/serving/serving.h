// Model serving and progressive delivery: endpoints that serve a model's
// versions, rollouts that move a candidate version onto an endpoint (shadow,
// canary steps, blue/green, direct) under automated analysis with rollback,
// and the inference gateway that routes, answers, measures and samples.
//
// Two halves:
//   Serving  the control plane (in `kervan server`): endpoints, rollouts, the
//            rollout controller, stored samples, the routing table. Every
//            state change is an event; rollouts are entities.
//   Gateway  the data plane: in `kervan server`, and alone as `kervan
//            gateway` for scale-out. It holds no state of its own: it serves
//            the routing table it is given, loads the versions it names,
//            reports window statistics and samples back.
//
// Rollout lifecycle (entity kind "deployment", id = the rollout id):
//
//   Preparation -> Shadow -> GradualRollout (step n -> n+1) -> FullProduction
//   Preparation -> GradualRollout | FullProduction        (no shadow; direct)
//   Shadow | GradualRollout -> Paused -> Shadow | GradualRollout   (manual)
//   Shadow | GradualRollout | Paused -> RolledBack    (analysis failed, or manual)
//   FullProduction -> RolledBack                      (manual: back to the
//                                                      previous version, kept warm)
//   Preparation | Shadow | GradualRollout | Paused -> Aborted       (manual)
//
// Automated transitions carry actor "system:serving" (permission
// deployment.orchestrate, held by no role); manual ones need
// deployment.manage and a reason. Each analysis is an event
// (deployment.analysis_evaluated) with the numbers it saw and the action it
// led to. Promotion moves the model's `champion` alias to the candidate.
//
// This is the module's public header; rollout.h and runtime.h are its parts.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "serving/rollout.h"
#include "serving/runtime.h"
#include "store/store.h"

namespace kervan::artifacts {
class ArtifactStore;
}
namespace kervan::registry {
class Registry;
}

namespace kervan::serving {

inline constexpr std::string_view kRolloutKind = "deployment";
inline constexpr std::string_view kServingActor = "system:serving";

inline constexpr std::string_view kPreparation = "Preparation";
inline constexpr std::string_view kShadow = "Shadow";
inline constexpr std::string_view kGradualRollout = "GradualRollout";
inline constexpr std::string_view kPaused = "Paused";
inline constexpr std::string_view kFullProduction = "FullProduction";
inline constexpr std::string_view kRolledBack = "RolledBack";
inline constexpr std::string_view kAborted = "Aborted";

// The champion alias a promotion moves.
inline constexpr std::string_view kChampionAlias = "champion";

// Endpoint names: as model names (1-128 of [A-Za-z0-9._-], starting with a
// letter or digit).
Status ValidateEndpointName(std::string_view name, std::string_view field = "endpoint");

struct Endpoint {
  std::string name, project, model;
  int64_t stable_version = 0;    // 0: nothing deployed yet
  int64_t previous_version = 0;  // kept loaded for an instant rollback
  std::string rollout_id;        // the active rollout, "" when none
  double sample_percent = 10;    // share of requests stored as samples
  std::string created_by;
  int64_t created_us = 0, updated_us = 0;
  Json ToJson() const;
};

struct Rollout {
  std::string id, endpoint, model, project;
  int64_t candidate_version = 0, stable_version = 0;
  RolloutSpec spec;
  std::string state;
  Progress progress;     // where it stands; kept while Paused
  Json last_evaluation;  // null before the first
  std::string reason;    // why it was deployed
  std::string outcome;   // how it ended ("" while active)
  std::string created_by;
  int64_t created_us = 0, updated_us = 0, finished_us = 0;
  bool active() const;  // Preparation, Shadow, GradualRollout or Paused
  Json ToJson() const;
};

struct DeployRequest {
  std::string endpoint, model;
  int64_t version = 0;
  RolloutSpec spec;
  std::optional<double> sample_percent;  // nullopt: the endpoint's (default 10)
  std::string reason;
};

enum class ManualAction { kPromote, kPause, kResume, kAbort, kRollback };
std::optional<ManualAction> ParseManualAction(std::string_view name);

// ---------------------------------------------------------------------------
// What gateways serve

struct RouteEntry {
  std::string endpoint, model, project;
  int64_t stable = 0, candidate = 0, previous = 0;  // 0: none
  std::string rollout_id;                           // "" when no rollout is active
  RoutingRule rule;
  double sample_percent = 10;
  Json ToJson() const;
  static Result<RouteEntry> FromJson(const Json& j);
};

struct RoutingTable {
  int64_t revision = 0;  // the event-log head it was built at
  std::map<std::string, RouteEntry> endpoints;
  Json ToJson() const;
  static Result<RoutingTable> FromJson(const Json& j);
};

enum class Side { kStable, kCandidate };

// A gateway's statistics for one rollout and side since its last report.
struct StatsReport {
  std::string rollout_id;
  Side side = Side::kStable;
  SideStats stats;
  Json ToJson() const;
  static Result<StatsReport> FromJson(const Json& j);
};

// One stored request/response pair (for monitoring).
struct Sample {
  int64_t id = 0;  // assigned when stored
  std::string endpoint, model;
  int64_t version = 0;
  std::string rollout_id, side;  // side: "stable" | "candidate" | "shadow"
  std::string request_id;
  int64_t time_us = 0;
  Json input;   // the rows as sent to the model: [[...], ...]
  Json output;  // the predictions, or null on error
  int64_t latency_us = 0;
  std::string error;
  Json ToJson() const;
  static Result<Sample> FromJson(const Json& j);
};

// Loads the runtime for a model version. The server's loader reads the
// registry and the artifact store; a standalone gateway's asks the server.
using ModelLoader =
    std::function<Result<std::shared_ptr<ModelRuntime>>(const std::string& model, int64_t version)>;

// The server's loader: the version's artifact_uri from the registry;
// "mlflow-artifacts:/<path>" is read from `store`, "file://<path>" from disk
// (both an XGBoost model), "http://..." is an Open Inference Protocol
// upstream (its inputs come from the version's signature).
ModelLoader MakeRegistryLoader(registry::Registry& registry, artifacts::ArtifactStore* store,
                               std::chrono::milliseconds upstream_timeout);

// ---------------------------------------------------------------------------
// The gateway (data plane)

struct GatewayOptions {
  ModelLoader loader;
  int64_t max_rows = 1000;           // rows per request
  int mirror_threads = 1;            // shadow predictions run here, off the request path
  int64_t max_mirror_queue = 1000;   // mirrored requests waiting; more are not mirrored
  int64_t max_sample_queue = 10000;  // samples waiting for the sink; more are dropped
  std::chrono::milliseconds flush_interval{500};
  // Receives samples (batches) from the flusher thread; unset: not kept.
  std::function<void(std::vector<Sample>)> sample_sink;
  // Receives statistics from the flusher thread; unset: DrainStats() pulls.
  std::function<void(std::vector<StatsReport>)> stats_sink;
};

// One inference request as the routes hand it over.
struct InferRequest {
  enum class Format { kInstances, kOip };
  Format format = Format::kInstances;
  std::string endpoint;
  int64_t version = 0;                  // > 0: this version (it must be loaded for the endpoint)
  bool preview = false;                 // the candidate's preview route
  const http::Request* http = nullptr;  // headers, body, request id
};

struct InferResponse {
  http::Response response;
  int64_t version = 0;
  std::string side;  // "stable" | "candidate"
};

class Gateway {
 public:
  explicit Gateway(GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Installs a routing table: loads every version it names that is not
  // loaded yet, keeps the loaded ones, drops the rest. A version that fails
  // to load answers every request routed to it with 503 and the load error
  // (so a broken candidate counts as candidate errors). Serialized; callers
  // may call it from any thread.
  void Apply(const RoutingTable& table);
  int64_t revision() const;
  // {"endpoint": {"stable": {"version", "kind", "error"?}, ...}}
  Json Describe() const;

  InferResponse Infer(const InferRequest& request);
  // Whether every version the endpoint serves answers in-process (no HTTP
  // upstream), so its requests may run on an I/O thread. Never blocks.
  bool AnswersInProcess(const std::string& endpoint) const;
  // Server metadata and model metadata/readiness (OIP).
  Result<Json> ModelMetadata(const std::string& endpoint, int64_t version);
  bool ModelReady(const std::string& endpoint, int64_t version);

  // Statistics since the last call, per rollout and side.
  std::vector<StatsReport> DrainStats();
  // Starts the flusher (samples, and stats when stats_sink is set) and the
  // mirror pool; Stop() flushes what is queued and joins.
  void Start();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The inference routes: Open Inference Protocol v2 (/v2/health/live|ready,
// /v2, /v2/models/{name}[/versions/{v}][/ready|/infer]) and
// /v1/endpoints/{name}/predict (+ /preview/predict). Prediction needs
// serving.predict; health probes are public.
Status RegisterGatewayRoutes(http::Router& router, Gateway& gateway);

// ---------------------------------------------------------------------------
// The control plane

struct ServingOptions {
  std::chrono::milliseconds cycle_interval{1000};  // the controller's tick
  double default_sample_percent = 10;
};

class Serving {
 public:
  // Registers the "deployment" lifecycle. `loader` loads versions to check
  // them at deploy time; `gateway` (may be null) is the in-process gateway
  // that gets every new routing table and whose statistics feed analysis.
  static Result<std::unique_ptr<Serving>> Open(store::Database& db, store::EventLog& log,
                                               store::Lifecycles& lifecycles,
                                               registry::Registry& registry, ModelLoader loader,
                                               Gateway* gateway, ServingOptions options);
  ~Serving();

  // Starts a rollout of `version` on `endpoint` (created on first deploy,
  // owned by the model's project). Refused: a version not in
  // DeploymentReady (kFailedPrecondition), one that does not load or does
  // not match its declared inputs (kInvalidArgument), an endpoint serving
  // another model or with an active rollout, the version already stable.
  // The first deployment of an endpoint (nothing to compare with) and the
  // direct strategy without shadow promote at once.
  Result<Rollout> Deploy(const DeployRequest& request, const store::CommandContext& ctx);
  // The project owning a registered model (who may deploy it).
  Result<std::string> ModelProject(const std::string& model);
  Result<Endpoint> GetEndpoint(const std::string& name);
  Result<std::vector<Endpoint>> ListEndpoints(const std::optional<std::set<std::string>>& projects);
  Result<Rollout> GetRollout(const std::string& id);
  Result<std::vector<Rollout>> ListRollouts(const std::string& endpoint, int limit);
  // A person's intervention on the endpoint's active rollout (rollback also
  // on an endpoint whose last rollout reached FullProduction: back to the
  // previous version). Reason required.
  Result<Rollout> Act(const std::string& endpoint, ManualAction action, const std::string& reason,
                      const store::CommandContext& ctx);

  RoutingTable Table() const;
  // Statistics from gateways (the in-process one is drained every cycle).
  void Ingest(const std::vector<StatsReport>& reports);
  Status StoreSamples(const std::vector<Sample>& samples);
  Result<std::vector<Sample>> ListSamples(const std::string& endpoint, int64_t after_id, int limit);

  // One controller pass at `now_us`: evaluates every active rollout whose
  // interval is due and acts on the verdict. Start() runs it every
  // cycle_interval on its own thread; tests call it directly.
  Status RunCycle(int64_t now_us);
  void Start();
  void Stop();

 private:
  struct State;
  Serving(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
          registry::Registry& registry, ModelLoader loader, Gateway* gateway,
          ServingOptions options);
  Status Evaluate(Rollout& rollout, int64_t now_us);
  Status Finish(const Rollout& rollout, const std::string& transition, const std::string& reason,
                const Json& data, const store::CommandContext& ctx);
  Status Publish();
  Status ExportRolloutState();

  store::Database& db_;
  store::EventLog& log_;
  store::Lifecycles& lifecycles_;
  registry::Registry& registry_;
  ModelLoader loader_;
  Gateway* gateway_;
  ServingOptions options_;
  std::unique_ptr<State> state_;
};

// /api/v1/deployments, /api/v1/endpoints, /api/v1/rollouts and the gateway
// feeds /api/v1/serving/routing and /api/v1/serving/reports.
Status RegisterRoutes(http::Router& router, Serving& serving, const auth::Auth& auth);

}  // namespace kervan::serving
