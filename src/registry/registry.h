// The model registry: registered models (owned by a project), their
// versions and the version lifecycle
//
//   Registered -> Validating -> DeploymentReady | Rejected;
//   DeploymentReady | Rejected -> Archived;
//   manual approve (Validating | Rejected -> DeploymentReady), reject
//   (Validating | DeploymentReady -> Rejected) and archive, each with a reason,
//
// validation gates that decide Validating -> DeploymentReady | Rejected
// automatically, with evidence, as actor system:registry; aliases that move
// atomically with an audited history; and lineage.
//
// Every change is an event appended in the same transaction as the
// registry's tables and the entities projection (kind "model_version",
// id "<model>:<version>").
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "store/store.h"

namespace kervan::registry {

using core::Json;
using core::Result;
using core::Status;

inline constexpr std::string_view kSystemActor = "system:registry";
inline constexpr std::string_view kVersionKind = "model_version";

// Model names: 1-128 characters [A-Za-z0-9._-], starting with a letter or
// digit. Alias names: 1-64 characters [a-z0-9_-], starting with a letter,
// and not "latest" (reserved for "the newest version").
Status ValidateModelName(std::string_view name, std::string_view field = "name");
Status ValidateAliasName(std::string_view alias, std::string_view field = "alias");

// One check of a validation gate. Two kinds:
//   threshold:  metrics.<metric> <op> <threshold>        ("auc" ">=" 0.85)
//   champion:   the candidate's metric is not worse than the version holding
//               the `champion` alias by more than max_regression (absolute),
//               in the direction given by higher_is_better.
struct GateCheck {
  enum class Kind { kThreshold, kChampion };
  Kind kind = Kind::kThreshold;
  std::string name;  // defaults to a description of the check
  std::string metric;
  std::string op;  // threshold: ">=", ">", "<=", "<", "==", "!="
  double threshold = 0;
  double max_regression = 0;  // champion
  bool higher_is_better = true;

  Json ToJson() const;
  // Strict: unknown fields, missing metric, bad op are kInvalidArgument
  // naming the field under `prefix` ("validation.checks[0].op").
  static Result<GateCheck> FromJson(const Json& json, const std::string& prefix);
};

// The outcome of one check on one candidate: the evidence in a decision event.
struct CheckOutcome {
  std::string name;
  bool passed = false;
  Json evidence;  // {"metric", "value", "op", "threshold"} or champion fields; "detail"
};

// Pure: evaluates `checks` for a candidate's metrics; `champion` is the
// metrics of the version the `champion` alias points to (nullopt: none).
std::vector<CheckOutcome> EvaluateGate(const std::vector<GateCheck>& checks,
                                       const std::map<std::string, double>& candidate,
                                       const std::optional<std::map<std::string, double>>& champion,
                                       int64_t champion_version);

struct RegisteredModel {
  std::string name;
  std::string project;
  std::string description;
  std::map<std::string, std::string> tags;
  std::vector<GateCheck> checks;  // the validation gate
  std::map<std::string, int64_t> aliases;
  int64_t latest_version = 0;
  int64_t created_us = 0, updated_us = 0;
  std::string created_by;
  Json ToJson() const;
};

struct ModelVersion {
  std::string model;
  int64_t version = 0;
  std::string project;
  std::string state;
  std::string source_run_id;
  std::string artifact_uri;
  std::map<std::string, double> metrics;
  Json signature;  // null when not given
  std::map<std::string, std::string> tags;
  std::string description;
  Json validation;  // the last gate decision: {"decision", "checks": [...]}, null before
  std::vector<std::string> aliases;
  int64_t created_us = 0, updated_us = 0;
  std::string created_by;
  std::string entity_id() const;  // "<model>:<version>"
  Json ToJson() const;
};

struct AliasChange {
  std::string alias;
  int64_t version = 0;           // 0: the alias was deleted
  int64_t previous_version = 0;  // 0: it did not exist
  int64_t seq = 0;               // the event that moved it
  int64_t time_us = 0;
  std::string actor, reason;
  Json ToJson() const;
};

struct CreateModelRequest {
  std::string name;
  std::string project;
  std::string description;
  std::map<std::string, std::string> tags;
  std::vector<GateCheck> checks;
};

struct RegisterVersionRequest {
  std::string source_run_id;
  std::string artifact_uri;
  std::map<std::string, double> metrics;
  Json signature;  // null when not given
  std::map<std::string, std::string> tags;
  std::string description;
};

struct ListModelsRequest {
  // nullopt: every project; otherwise only these (the caller's readable ones).
  std::optional<std::set<std::string>> projects;
  std::string after;  // name to continue after
  int limit = 100;
};

// A manual version transition: approve | reject | archive.
enum class ManualTransition { kApprove, kReject, kArchive };

class Registry {
 public:
  // Registers the model_version lifecycle with `lifecycles`.
  static Result<std::unique_ptr<Registry>> Open(store::Database& db, store::EventLog& log,
                                                store::Lifecycles& lifecycles);

  // The project must exist (checked by the caller, which knows projects).
  Result<RegisteredModel> CreateModel(const CreateModelRequest& request,
                                      const store::CommandContext& ctx);
  Result<RegisteredModel> GetModel(const std::string& name);
  Result<std::vector<RegisteredModel>> ListModels(const ListModelsRequest& request);
  // Replaces description and/or tags (nullopt: unchanged).
  Result<RegisteredModel> UpdateModel(const std::string& name,
                                      std::optional<std::string> description,
                                      std::optional<std::map<std::string, std::string>> tags,
                                      const store::CommandContext& ctx);
  Result<RegisteredModel> SetGate(const std::string& name, std::vector<GateCheck> checks,
                                  const std::string& reason, const store::CommandContext& ctx);

  // Creates version latest+1 in Registered, then, in the same transaction,
  // runs the model's gate as system:registry: Validating, then
  // DeploymentReady (every check passed; also with no checks configured) or
  // Rejected, the decision event carrying each check's evidence.
  Result<ModelVersion> RegisterVersion(const std::string& model,
                                       const RegisterVersionRequest& request,
                                       const store::CommandContext& ctx);
  Result<ModelVersion> GetVersion(const std::string& model, int64_t version);
  Result<std::vector<ModelVersion>> ListVersions(const std::string& model, const std::string& state,
                                                 int64_t after, int limit);
  // Manual transition by a person; a reason is required (kInvalidArgument
  // field "reason"), an illegal one is 409 with the allowed transitions.
  Result<ModelVersion> Transition(const std::string& model, int64_t version,
                                  ManualTransition transition, const std::string& reason,
                                  const store::CommandContext& ctx);

  // Points `alias` at `version` (which must exist and not be Archived);
  // returns the change. Reason required.
  Result<AliasChange> SetAlias(const std::string& model, const std::string& alias, int64_t version,
                               const std::string& reason, const store::CommandContext& ctx);
  Result<AliasChange> DeleteAlias(const std::string& model, const std::string& alias,
                                  const std::string& reason, const store::CommandContext& ctx);
  // Every move of `alias` (or of every alias when empty), oldest first.
  Result<std::vector<AliasChange>> AliasHistory(const std::string& model, const std::string& alias);
  // Which run produced the version, and which aliases pointed at it when.
  Result<Json> Lineage(const std::string& model, int64_t version);

 private:
  Registry(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles)
      : db_(db), log_(log), lifecycles_(lifecycles) {}

  store::Database& db_;
  store::EventLog& log_;
  store::Lifecycles& lifecycles_;
};

// The native registry API under /api/v1/models. Route permissions are
// checked by the access guard in any scope; each handler then checks the
// permission in the model's project.
Status RegisterRoutes(http::Router& router, Registry& registry, const auth::Auth& auth);

}  // namespace kervan::registry
